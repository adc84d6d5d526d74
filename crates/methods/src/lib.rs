//! bosun's method handlers: one file per method, one closed `match` for dispatch.
//!
//! A handler gets a message, a [`Context`], a [`ChunkSink`], a [`ProcessSink`] and a
//! [`SubmitSink`], and returns [`Handled`]: an [`Outcome`], plus any messages the node
//! should submit on its behalf once the run ends. Streaming handlers send their output
//! through the chunk sink as they go; a handler with much to send (a file copy's chunks)
//! hands it to the submit sink batch by batch, each queued durably before it reads more.
//! A handler never talks to the bus or the store: the node records the start, runs the
//! handler, turns chunks and the outcome into durable replies, and submits the
//! follow-ups.
//!
//! # Layout
//! - [`cli_command`]: run an argv (or a shell line when asked); `cliCommandCont` streams
//!   its output. `methodTimeout` kills the whole process group.
//! - [`ping`]: answer at once.
//! - [`tail_file`]: follow a file, through rotation, until `methodTimeout`.
//! - [`http_get`]: fetch a URL with a timeout and a size cap.
//! - [`hello`]: this host's inventory.
//! - [`copy`]: `copySrc` / `copyDst`, a chunked, hashed file copy.
//! - [`confine`]: where the file and network methods may reach (file roots, refused
//!   address ranges), and the checked opening of files and folders.
//! - [`op_process`]: which methods this node serves, and for whom.
//! - [`process`]: how commands are started so that they die with the node, the process
//!   group each run reports, and ending what a crashed node left running.
//! - [`docker`]: containers and images through the Docker Engine API; its
//!   [`docker::engine`] is the one way to reach the engine and sum up its stats.
//!
//! Shared with the rest of the node:
//! - [`host`]: `/proc` figures and the host name.
//! - [`clock`]: the wall clock in milliseconds, and RFC 3339 times.

pub mod cli_command;
pub mod clock;
pub mod confine;
pub mod copy;
pub mod docker;
pub mod hello;
pub mod host;
pub mod http_get;
pub mod op_process;
pub mod ping;
pub mod process;
pub mod spawn;
pub mod tail_file;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bosun_proto::{Message, Method, Millis, Outcome, Role, Status};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use clock::now_millis;
pub use confine::Confinement;
pub use op_process::{Served, ServedError};
pub use process::ProcessSink;

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
    /// Cancelled when the node shuts down: handlers end their work and report
    /// `interrupted`.
    pub shutdown: CancellationToken,
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
    /// Where the file and network methods may reach: file roots, the copy size limit,
    /// the address ranges `httpGet` may reach anyway.
    pub confine: Arc<Confinement>,
    /// What handlers keep between runs on this node (and only this node).
    pub state: Arc<HandlerState>,
}

/// What handlers keep between runs: one per node, so two nodes in one process share
/// nothing. Made empty with [`Default`]; handlers fill it as they go.
#[derive(Default)]
pub struct HandlerState {
    /// Per-path locks and finished copies of `copyDst`.
    pub(crate) copies: copy::CopyState,
    /// Docker Engine clients by socket path.
    pub(crate) docker: docker::engine::Clients,
    /// The `httpGet` client, whose connections are pooled between requests.
    pub(crate) http: http_get::HttpClient,
    /// The one thread that forks commands, so that they die with the node.
    pub(crate) spawner: process::Spawner,
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

/// Where a handler hands messages for the node to queue while it runs (a file copy's
/// chunks, read and sent batch by batch). [`SubmitSink::submit`] returns once the node
/// has queued the batch durably, so a handler that waits for it holds one batch in
/// memory, not the whole work. The handler still never touches the store: the node does
/// the queueing.
#[derive(Clone, Default)]
pub struct SubmitSink(Option<mpsc::Sender<FollowUps>>);

/// One batch of messages handed to the node, and where the node answers once they are
/// queued (or why they were not).
#[derive(Debug)]
pub struct FollowUps {
    /// The messages, their `toNode` set.
    pub messages: Vec<Message>,
    /// Told when the batch is durable in the outbox, or why it is not.
    pub queued: oneshot::Sender<Result<(), NotQueued>>,
}

/// Why the node did not queue a batch of follow-up messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotQueued {
    /// The node's reason.
    pub reason: String,
}

impl SubmitSink {
    /// A sink whose batches go to `tx`.
    pub fn new(tx: mpsc::Sender<FollowUps>) -> Self {
        SubmitSink(Some(tx))
    }

    /// A sink that queues nothing (for handlers run without a node).
    pub fn none() -> Self {
        SubmitSink(None)
    }

    /// Hand `messages` to the node and wait until they are queued.
    pub async fn submit(&self, messages: Vec<Message>) -> Result<(), NotQueued> {
        let stopped = || NotQueued {
            reason: "the node stopped taking messages (shutting down?)".into(),
        };
        let Some(tx) = &self.0 else {
            return Err(NotQueued {
                reason: "this run cannot queue messages".into(),
            });
        };
        let (queued, answer) = oneshot::channel();
        tx.send(FollowUps { messages, queued })
            .await
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
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

/// True when this build has a handler for `method`. Reply sinks, `hello` and
/// `errorLog` are handled by the node itself, which keeps results and the fleet.
pub fn has_handler(method: Method) -> bool {
    matches!(method.role(), Role::Handler(_))
}

/// Run `message` with the handler for its method. Streamed output goes to `chunks`; the
/// process group of a started command is reported to `processes`; messages the node
/// must queue while the run goes on go to `follow_ups`.
pub async fn run(
    method: Method,
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
    processes: &ProcessSink,
    follow_ups: &SubmitSink,
) -> Handled {
    use docker::{Lifecycle, Operation};
    let container = |operation: Operation| docker::run(method, operation, message, context, chunks);
    match method {
        Method::CliCommand => cli_command::run(message, context, processes).await.into(),
        Method::CliCommandCont => cli_command::run_streaming(message, context, chunks, processes)
            .await
            .into(),
        Method::Ping => ping::run(message, context).await.into(),
        Method::TailFile => tail_file::run(message, context, chunks).await.into(),
        Method::HttpGet => http_get::run(message, context).await.into(),
        Method::CopySrc => copy::run_src(message, context, follow_ups).await.into(),
        Method::CopyDst => copy::run_dst(message, context).await.into(),
        Method::OpCommand => op_process::run_op_command(message, context).await.into(),
        Method::OpProcessList => op_process::run_list(message, context).await.into(),
        Method::OpProcessStart => op_process::run_start(message, context).await.into(),
        Method::OpProcessStop => op_process::run_stop(message, context).await.into(),
        Method::ContainerRun => container(Operation::Create { start: true }).await.into(),
        Method::ContainerCreate => container(Operation::Create { start: false }).await.into(),
        Method::ContainerStart => container(Operation::Lifecycle(Lifecycle::Start))
            .await
            .into(),
        Method::ContainerStop => container(Operation::Lifecycle(Lifecycle::Stop))
            .await
            .into(),
        Method::ContainerRestart => container(Operation::Lifecycle(Lifecycle::Restart))
            .await
            .into(),
        Method::ContainerKill => container(Operation::Lifecycle(Lifecycle::Kill))
            .await
            .into(),
        Method::ContainerPause => container(Operation::Lifecycle(Lifecycle::Pause))
            .await
            .into(),
        Method::ContainerUnpause => container(Operation::Lifecycle(Lifecycle::Unpause))
            .await
            .into(),
        Method::ContainerRemove => container(Operation::Lifecycle(Lifecycle::Remove))
            .await
            .into(),
        Method::ContainerInspect => container(Operation::Inspect).await.into(),
        Method::ContainerList => container(Operation::List).await.into(),
        Method::ContainerLogs => container(Operation::Logs).await.into(),
        Method::ContainerStats => container(Operation::Stats).await.into(),
        Method::ImagePull => container(Operation::ImagePull).await.into(),
        Method::ImageList => container(Operation::ImageList).await.into(),
        Method::NodeDrain => hello::drain(message, context).into(),
        // Run by the node itself, absorbed on arrival, or served by nobody: the receiver
        // never queues these, so reaching here means a caller skipped its checks.
        Method::Hello
        | Method::ErrorLog
        | Method::Pong
        | Method::ToConsole
        | Method::ToFile
        | Method::ToFileAppend
        | Method::Result
        | Method::Mark
        | Method::CaptureFile
        | Method::CaptureShip
        | Method::ChaosSchedule
        | Method::ChaosAbort
        | Method::ChaosList
        | Method::WorkloadAdd
        | Method::WorkloadRemove
        | Method::WorkloadRestart
        | Method::WorkloadList => Outcome::bare(
            Status::Rejected,
            &context.node,
            format!("method {method} has no handler on this node"),
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

/// Poll `done` every 10 ms until it holds; panic with `what` after `limit`. For tests
/// that wait on an observable event (a file, a state) rather than on time.
#[cfg(test)]
pub(crate) async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A context for handler tests: node `name`, a temporary data dir, 30 s default timeout.
#[cfg(test)]
pub(crate) fn test_context(name: &str, shutdown: CancellationToken) -> Context {
    let data_dir =
        std::env::temp_dir().join(format!("bosun-methods-test-{}", bosun_proto::new_id()));
    std::fs::create_dir_all(&data_dir).expect("test data dir");
    Context {
        node: name.to_string(),
        output_limit: 64 * 1024,
        default_method_timeout: Duration::from_secs(30),
        kill_grace: Duration::from_secs(1),
        shutdown,
        data_dir: data_dir.clone(),
        labels: Default::default(),
        served: Arc::new(RwLock::new(Served::default())),
        docker_socket: PathBuf::from("/var/run/docker.sock"),
        templates_dir: std::env::temp_dir(),
        confine: Arc::new(Confinement {
            file_roots: vec![data_dir.clone()],
            ..Confinement::default()
        }),
        state: Default::default(),
    }
}
