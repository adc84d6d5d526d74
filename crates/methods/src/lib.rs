//! bosun's method handlers: one file per method, one closed `match` for dispatch.
//!
//! A handler gets a message, a [`Context`] and a [`ChunkSink`], and returns [`Handled`]:
//! an [`Outcome`], plus any messages the node should submit on its behalf (a file copy's
//! chunks). Streaming handlers send their output through the sink as they go. A handler
//! never talks to the bus or the store: the node records the start, runs the handler,
//! turns chunks and the outcome into durable replies, and submits the follow-ups.
//!
//! # Layout
//! - [`cli_command`]: run an argv (or a shell line when asked); `cliCommandCont` streams
//!   its output. `methodTimeout` kills the whole process group.
//! - [`ping`]: answer at once.
//! - [`tail_file`]: follow a file, through rotation, until `methodTimeout`.
//! - [`http_get`]: fetch a URL with a timeout and a size cap.
//! - [`hello`]: this host's inventory.
//! - [`copy`]: `copySrc` / `copyDst`, a chunked, hashed file copy.
//! - [`op_process`]: which methods this node serves, and for whom.
//! - [`docker`]: containers and images through the Docker Engine API.

pub mod cli_command;
pub mod copy;
pub mod docker;
pub mod hello;
pub mod http_get;
pub mod op_process;
pub mod ping;
pub mod tail_file;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bosun_proto::{Message, Method, Millis, Outcome, Status};
use tokio::sync::{mpsc, watch};

pub use op_process::Served;

/// What a handler may know about the node it runs on.
#[derive(Clone)]
pub struct Context {
    /// This node's name, put in every outcome.
    pub node: String,
    /// Most bytes kept of each of stdout and stderr (and of an HTTP body).
    pub output_limit: usize,
    /// `methodTimeout` when the message gives none.
    pub default_method_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a run is ended.
    pub kill_grace: Duration,
    /// Becomes true when the node shuts down: handlers end their work and report
    /// `interrupted`.
    pub shutdown: watch::Receiver<bool>,
    /// The node's data folder: handlers keep their working files under it.
    pub data_dir: PathBuf,
    /// The node's labels, reported by `hello`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Which methods this node serves, and from which senders.
    pub served: Arc<RwLock<Served>>,
    /// The Docker Engine socket.
    pub docker_socket: PathBuf,
    /// Folder of container templates (Docker create-container JSON, `NAME.json`).
    pub templates_dir: PathBuf,
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

/// Where a streaming handler sends its output, chunk by chunk, in order. The node
/// numbers the chunks and sends each back as a durable reply.
#[derive(Clone, Default)]
pub struct ChunkSink(Option<mpsc::Sender<String>>);

impl ChunkSink {
    /// A sink that forwards to `tx`.
    pub fn new(tx: mpsc::Sender<String>) -> Self {
        ChunkSink(Some(tx))
    }

    /// A sink that drops everything (for handlers run without streaming).
    pub fn none() -> Self {
        ChunkSink(None)
    }

    /// Send one chunk. False when nobody takes chunks any more.
    pub async fn send(&self, text: String) -> bool {
        match &self.0 {
            Some(tx) => tx.send(text).await.is_ok(),
            None => false,
        }
    }
}

/// What a handler produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// How the run ended.
    pub outcome: Outcome,
    /// Messages the node must submit on the handler's behalf (their `toNode` set).
    pub submit: Vec<Message>,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Self {
        Handled {
            outcome,
            submit: Vec::new(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// True when this build has a handler for `method`. Reply sinks, `hello` and
/// `errorLog` are handled by the node itself, which keeps results and the fleet.
pub fn has_handler(method: Method) -> bool {
    matches!(
        method,
        Method::CliCommand
            | Method::CliCommandCont
            | Method::Ping
            | Method::TailFile
            | Method::HttpGet
            | Method::CopySrc
            | Method::CopyDst
            | Method::OpCommand
            | Method::OpProcessList
            | Method::OpProcessStart
            | Method::OpProcessStop
    ) || docker::handles(method)
}

/// Run `message` with the handler for its method.
pub async fn run(
    method: Method,
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
) -> Handled {
    match method {
        Method::CliCommand => cli_command::run(message, context).await.into(),
        Method::CliCommandCont => cli_command::run_streaming(message, context, chunks)
            .await
            .into(),
        Method::Ping => ping::run(message, context).await.into(),
        Method::TailFile => tail_file::run(message, context, chunks).await.into(),
        Method::HttpGet => http_get::run(message, context).await.into(),
        Method::CopySrc => copy::run_src(message, context).await,
        Method::CopyDst => copy::run_dst(message, context).await.into(),
        Method::OpCommand => op_process::run_op_command(message, context).await.into(),
        Method::OpProcessList => op_process::run_list(message, context).await.into(),
        Method::OpProcessStart => op_process::run_start(message, context).await.into(),
        Method::OpProcessStop => op_process::run_stop(message, context).await.into(),
        m if docker::handles(m) => docker::run(m, message, context, chunks).await.into(),
        other => Outcome::bare(
            Status::Rejected,
            &context.node,
            format!("method {other} has no handler on this node"),
            now_millis(),
        )
        .into(),
    }
}

/// An outcome for a handler that failed before doing anything.
pub(crate) fn failed(context: &Context, started: Millis, error: impl Into<String>) -> Outcome {
    Outcome {
        started_at: Some(started),
        ..Outcome::bare(Status::Failed, &context.node, error, now_millis())
    }
}

/// An outcome for a handler that succeeded with `stdout`.
pub(crate) fn done(context: &Context, started: Millis, stdout: String) -> Outcome {
    Outcome {
        status: Status::Done,
        node: context.node.clone(),
        exit_code: None,
        stdout,
        stderr: String::new(),
        error: None,
        truncated: false,
        started_at: Some(started),
        finished_at: now_millis(),
        chunks: None,
    }
}

/// A context for handler tests: node `name`, a temporary data dir, 30 s default timeout.
#[cfg(test)]
pub(crate) fn test_context(name: &str, shutdown: watch::Receiver<bool>) -> Context {
    let data_dir =
        std::env::temp_dir().join(format!("bosun-methods-test-{}", bosun_proto::new_id()));
    std::fs::create_dir_all(&data_dir).expect("test data dir");
    Context {
        node: name.to_string(),
        output_limit: 64 * 1024,
        default_method_timeout: Duration::from_secs(30),
        kill_grace: Duration::from_secs(1),
        shutdown,
        data_dir,
        labels: Default::default(),
        served: Arc::new(RwLock::new(Served::default())),
        docker_socket: PathBuf::from("/var/run/docker.sock"),
        templates_dir: std::env::temp_dir(),
    }
}
