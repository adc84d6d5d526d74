//! bosun's method handlers: one file per method, one closed `match` for dispatch.
//!
//! A handler gets a message and a [`Context`] and returns an [`Outcome`]. It never talks
//! to the bus or the store: the node records the start, runs the handler, and turns the
//! outcome into a durable reply.
//!
//! # Layout
//! - [`cli_command`]: run an argv (or a shell line when asked), with `methodTimeout`
//!   killing the whole process group.
//! - [`ping`]: answer at once.

pub mod cli_command;
pub mod ping;

use std::time::Duration;

use bosun_proto::{Message, Method, Millis, Outcome, Status};
use tokio::sync::watch;

/// What a handler may know about the node it runs on.
#[derive(Clone)]
pub struct Context {
    /// This node's name, put in every outcome.
    pub node: String,
    /// Most bytes kept of each of stdout and stderr.
    pub output_limit: usize,
    /// `methodTimeout` when the message gives none.
    pub default_method_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a run is ended.
    pub kill_grace: Duration,
    /// Becomes true when the node shuts down: handlers end their work and report
    /// `interrupted`.
    pub shutdown: watch::Receiver<bool>,
}

impl Context {
    /// The method timeout that applies to `message`.
    pub fn method_timeout(&self, message: &Message) -> Duration {
        message
            .method_timeout
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.default_method_timeout)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// True when this build has a handler for `method`.
pub fn is_served(method: Method) -> bool {
    matches!(method, Method::CliCommand | Method::Ping)
}

/// Run `message` with the handler for its method.
pub async fn run(method: Method, message: &Message, context: &Context) -> Outcome {
    match method {
        Method::CliCommand => cli_command::run(message, context).await,
        Method::Ping => ping::run(message, context).await,
        other => Outcome::bare(
            Status::Rejected,
            &context.node,
            format!("method {other} is not served by this node"),
            now_millis(),
        ),
    }
}
