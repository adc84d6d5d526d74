//! Containers and images through the Docker Engine API (bollard).
//!
//! One client per socket path and node, made on the first message and kept in the
//! node's [`crate::HandlerState`]; its API version is agreed with the daemon once
//! (bollard speaks a newer API than many daemons do).
//!
//! # `data` conventions
//! - `containerRun` / `containerCreate`: `data[0]` = a [`ContainerSpec`] as JSON. stdout
//!   is the full container id and a newline.
//! - `containerStart|Stop|Restart|Kill|Pause|Unpause|Remove|Inspect|Stats|Logs`:
//!   `data[0]` = container id, id prefix or name. `containerStop` / `containerRestart`:
//!   `data[1]` = seconds before SIGKILL (default 10). `containerKill`: `data[1]` = signal
//!   name or number (default `SIGTERM`). `containerRemove`: `data[1] = "force"` removes a
//!   running one. `containerLogs`: `data[1] = "follow"` streams.
//! - `containerList`: `data[0]` = `all` (or `running`, the default); `data[1]` =
//!   `label=KEY=VALUE`.
//! - `imagePull`: `data[0]` = image reference, `data[1]` = base64 registry auth.
//! - `imageList`: no data.
//!
//! Every handler but a followed `containerLogs` is bounded by `methodTimeout` and ends
//! early when the node shuts down; the Docker daemon may still finish what it was asked.
//!
//! [`ContainerSpec`]: bosun_proto::container::ContainerSpec

mod create;
pub mod engine;
mod image;
mod lifecycle;
mod logs;
mod query;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bosun_proto::{Message, Method, Millis, Outcome, Status};

use crate::{ChunkSink, Context, done, failed, now_millis};
pub use engine::EngineError;

/// How long bollard waits for the daemon to answer one request (not for a stream to end).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What a container or image method does; the methods crate's dispatch picks one per
/// [`Method`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `containerRun` (`start: true`) or `containerCreate`.
    Create {
        /// Start the container once created.
        start: bool,
    },
    /// A change of one container's state.
    Lifecycle(Lifecycle),
    /// `containerInspect`.
    Inspect,
    /// `containerList`.
    List,
    /// `containerLogs`.
    Logs,
    /// `containerStats`.
    Stats,
    /// `imagePull`.
    ImagePull,
    /// `imageList`.
    ImageList,
}

/// A change of one container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// `containerStart`.
    Start,
    /// `containerStop`.
    Stop,
    /// `containerRestart`.
    Restart,
    /// `containerKill`.
    Kill,
    /// `containerPause`.
    Pause,
    /// `containerUnpause`.
    Unpause,
    /// `containerRemove`.
    Remove,
}

/// Why a container or image method failed; its text is the outcome's error.
#[derive(Debug, thiserror::Error)]
pub enum DockerMethodError {
    /// The engine could not be reached or refused. Boxed: the client's errors are large.
    #[error(transparent)]
    Engine(Box<EngineError>),
    /// `data[0]` names no container.
    #[error("no container given: data[0] must be a container id, id prefix or name")]
    NoContainerGiven,
    /// `data[0]` cannot be a container id or name.
    #[error("{given:?} is not a container id or name: use letters, digits, '_', '.' and '-'")]
    NotAContainerName {
        /// What was given.
        given: String,
    },
    /// A seconds argument that is not whole seconds.
    #[error("data[{index}] {given:?} must be whole seconds (0 to 65535)")]
    NotSeconds {
        /// Which `data` item.
        index: usize,
        /// What was given.
        given: String,
    },
    /// A `data` item that is not one of the words the method takes.
    #[error("data[{index}] {given:?} is not understood: {expected}")]
    NotUnderstood {
        /// Which `data` item.
        index: usize,
        /// What was given.
        given: String,
        /// What to give instead.
        expected: &'static str,
    },
    /// A `containerList` filter that is not a label filter.
    #[error("data[1] {given:?} is not a filter: give label=KEY=VALUE or label=KEY")]
    NotAFilter {
        /// What was given.
        given: String,
    },
    /// A `containerKill` signal that cannot be one.
    #[error("data[1] {given:?} is not a signal: give a name such as SIGKILL or a number such as 9")]
    NotASignal {
        /// What was given.
        given: String,
    },
    /// The daemon ended a stats request without a sample.
    #[error("the Docker daemon sent no stats for {container}")]
    NoStats {
        /// The container asked about.
        container: String,
    },
    /// The answer could not be written as JSON.
    #[error("cannot write the answer as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// `data[0]` of `containerRun` / `containerCreate` is empty.
    #[error(
        r#"no container spec: data[0] must be the ContainerSpec JSON, e.g. {{"image":"alpine:3"}}"#
    )]
    NoSpec,
    /// `data[0]` is not a container spec.
    #[error("data[0] is not a valid container spec: {0}")]
    SpecNotJson(#[source] serde_json::Error),
    /// The spec breaks a rule of [`bosun_proto::container::ContainerSpec::validate`].
    #[error("invalid container spec: {reason}")]
    InvalidSpec {
        /// The rule broken, as the spec's check words it.
        reason: String,
    },
    /// A published port that is not `HOST:CONTAINER[/PROTOCOL]`.
    #[error("{reason}")]
    NotAPort {
        /// What is wrong, as the port parser words it.
        reason: String,
    },
    /// The spec's `memoryMb` does not fit in bytes.
    #[error("memoryMb {0} is too large")]
    MemoryTooLarge(u64),
    /// The spec's `restart` is not a restart policy.
    #[error(
        "restart {0:?} is not a policy; use no, always, unless-stopped, on-failure or \
         on-failure:N"
    )]
    NotARestartPolicy(String),
    /// The retry count of `on-failure:N` is not a number.
    #[error("restart {policy:?}: {count:?} is not a retry count")]
    NotARetryCount {
        /// The whole policy.
        policy: String,
        /// The count given.
        count: String,
    },
    /// No template file by that name.
    #[error(
        "template {name:?} not found: looked for {}; put the create-container JSON there \
         or fix `template`",
        path.display()
    )]
    TemplateNotFound {
        /// The template named.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The template file could not be read.
    #[error("cannot read template {}: {source}", path.display())]
    TemplateUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The template file is not Docker's create-container JSON.
    #[error("template {} is not Docker create-container JSON: {source}", path.display())]
    TemplateNotJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The raw spec (`raw`, DockerMod's `create-raw-container`) is not Docker's
    /// create-container JSON.
    #[error("raw is not Docker create-container JSON: {0}")]
    RawNotDocker(serde_json::Error),
    /// Neither the spec nor the template names an image.
    #[error("no image: give `image` in the spec or \"Image\" in template {template:?}")]
    NoImage {
        /// The template used, or empty.
        template: String,
    },
    /// `containerRun` created the container but could not start it.
    #[error(
        "{cause}; the created container {}",
        if *removed { "was removed".to_string() } else { format!("{id} remains") }
    )]
    NotStarted {
        /// Why it did not start.
        cause: Box<EngineError>,
        /// The container created.
        id: String,
        /// True when it was removed again.
        removed: bool,
    },
    /// `imagePull` names no image.
    #[error("no image given: data[0] must be an image reference, e.g. alpine:3")]
    NoImageGiven,
    /// An image reference with characters Docker does not allow.
    #[error("{0:?} is not an image reference: use NAME[:TAG] or NAME@DIGEST, e.g. alpine:3")]
    NotAnImageReference(String),
    /// An image reference with an empty part.
    #[error("{0:?} is not an image reference: the name, tag or digest is empty")]
    EmptyImageReferencePart(String),
    /// Registry auth that is not base64.
    #[error(
        "auth is not base64: give base64 of the Docker auth JSON \
         {{\"username\",\"password\",\"email\",\"serveraddress\"}}"
    )]
    AuthNotBase64,
    /// Registry auth that is base64 of something other than the auth JSON. Only the
    /// position is kept: the text may hold the secret.
    #[error(
        "auth is not base64 of the Docker auth JSON \
         {{\"username\",\"password\",\"email\",\"serveraddress\"}}: bad JSON at line {line} \
         column {column}"
    )]
    AuthNotJson {
        /// Line of the first error.
        line: usize,
        /// Column of the first error.
        column: usize,
    },
}

impl From<EngineError> for DockerMethodError {
    fn from(error: EngineError) -> Self {
        DockerMethodError::Engine(Box::new(error))
    }
}

/// Run a container or image method; `method` names it in the words of the outcome.
pub async fn run(
    method: Method,
    operation: Operation,
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
) -> Outcome {
    let started = now_millis();
    // Logs decide their own ending: a followed stream that reaches methodTimeout is done.
    if operation == Operation::Logs {
        return logs::run(message, context, chunks, started).await;
    }
    let work = async {
        let docker = client(context).await?;
        match operation {
            Operation::Create { start } => create::run(&docker, message, context, start).await,
            Operation::Inspect => query::inspect(&docker, message, context).await,
            Operation::List => query::list(&docker, message, context).await,
            Operation::Stats => query::stats(&docker, message, context).await,
            Operation::ImagePull => image::pull_method(&docker, message, context).await,
            Operation::ImageList => image::list(&docker, message, context).await,
            Operation::Lifecycle(change) => lifecycle::run(change, &docker, message, context).await,
            Operation::Logs => unreachable!("containerLogs returned above"),
        }
    };
    match bounded(work, method, message, context, started).await {
        Ok(stdout) => capped(done(context, started, stdout), context.output_limit),
        Err(outcome) => outcome,
    }
}

/// Run `work` until it ends, `methodTimeout` passes or the node shuts down. An error
/// becomes a `Failed` outcome.
async fn bounded<T>(
    work: impl Future<Output = Result<T, DockerMethodError>>,
    method: Method,
    message: &Message,
    context: &Context,
    started: Millis,
) -> Result<T, Outcome> {
    let timeout = context.method_timeout(message);
    let (status, error) = tokio::select! {
        r = work => return r.map_err(|e| failed(context, started, e.to_string())),
        _ = tokio::time::sleep(timeout) => (
            Status::Timeout,
            format!(
                "methodTimeout of {}s reached during {method}; the Docker daemon may still \
                 finish it, so check with containerList or containerInspect",
                timeout.as_secs()
            ),
        ),
        _ = context.shutdown.cancelled() => (
            Status::Interrupted,
            format!(
                "the node shut down during {method}; the Docker daemon may still finish it"
            ),
        ),
    };
    Err(Outcome {
        started_at: Some(started),
        ..Outcome::bare(status, &context.node, error, now_millis())
    })
}

/// Cut stdout at `limit` bytes (on a character boundary) and mark the outcome.
fn capped(mut outcome: Outcome, limit: usize) -> Outcome {
    if outcome.stdout.len() > limit {
        let mut cut = limit;
        while !outcome.stdout.is_char_boundary(cut) {
            cut -= 1;
        }
        outcome.stdout.truncate(cut);
        outcome.truncated = true;
    }
    outcome
}

/// This node's client for its Docker socket, made on first use and kept.
async fn client(context: &Context) -> Result<Docker, EngineError> {
    context
        .state
        .docker
        .get(&context.docker_socket, REQUEST_TIMEOUT)
        .await
}

/// Explain a failed Docker call: `action` says what was tried ("stop", "pull alpine"),
/// `container` names the container it was tried on, if any.
fn failure(
    context: &Context,
    error: DockerError,
    action: &str,
    container: Option<&str>,
) -> DockerMethodError {
    EngineError::from_call(&context.docker_socket, error, action, container).into()
}

/// `data[i]`, trimmed, when given and not empty.
fn arg(message: &Message, i: usize) -> Option<&str> {
    message
        .data
        .get(i)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

/// `data[0]` as a container id, id prefix or name. It goes into a URL path, so only the
/// characters Docker allows in names and ids pass.
fn container_arg(message: &Message) -> Result<&str, DockerMethodError> {
    let raw = arg(message, 0).ok_or(DockerMethodError::NoContainerGiven)?;
    let name = raw.strip_prefix('/').unwrap_or(raw);
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(DockerMethodError::NotAContainerName {
            given: raw.to_string(),
        });
    }
    Ok(name)
}

/// `data[i]` as whole seconds, or `default` when not given.
fn seconds_arg(message: &Message, i: usize, default: i32) -> Result<i32, DockerMethodError> {
    match arg(message, i) {
        None => Ok(default),
        Some(s) => s
            .parse::<u16>()
            .map(i32::from)
            .map_err(|_| DockerMethodError::NotSeconds {
                index: i,
                given: s.to_string(),
            }),
    }
}

/// What a hello tells of this node's containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerCounts {
    /// Containers running on the engine.
    pub running: u64,
    /// Containers bosun placed here (labelled with this node) that are not stopped:
    /// created, running, paused or restarting.
    pub placed: u64,
    /// The messages (`org.bosun.message`) of those created in the last
    /// [`RECENT_PLACEMENT_SECS`]: a placing node stops counting a placement on its own
    /// once a hello names it here.
    pub recent: Vec<String>,
}

/// How far back a hello names the placements it counts.
pub const RECENT_PLACEMENT_SECS: i64 = 600;

/// This node's [`ContainerCounts`], for the hello. None when the engine does not answer
/// within two seconds: a hello never waits on Docker for long.
pub async fn container_counts(context: &Context) -> Option<ContainerCounts> {
    let count = async {
        let docker = client(context).await.ok()?;
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let containers = docker.list_containers(Some(options)).await.ok()?;
        let state = |c: &bollard::models::ContainerSummary| {
            c.state.map(|s| s.to_string()).unwrap_or_default()
        };
        let since = crate::clock::since_epoch().as_secs() as i64 - RECENT_PLACEMENT_SECS;
        let mut counts = ContainerCounts {
            running: containers.iter().filter(|c| state(c) == "running").count() as u64,
            ..Default::default()
        };
        for c in &containers {
            let labels = c.labels.as_ref();
            let ours = labels.and_then(|l| l.get(bosun_proto::container::LABEL_NODE))
                == Some(&context.node);
            if !ours
                || !matches!(
                    state(c).as_str(),
                    "created" | "running" | "paused" | "restarting"
                )
            {
                continue;
            }
            counts.placed += 1;
            if c.created.unwrap_or(0) >= since
                && let Some(id) = labels.and_then(|l| l.get(bosun_proto::container::LABEL_MESSAGE))
            {
                counts.recent.push(id.clone());
            }
        }
        Some(counts)
    };
    tokio::time::timeout(std::time::Duration::from_secs(2), count)
        .await
        .ok()
        .flatten()
}
