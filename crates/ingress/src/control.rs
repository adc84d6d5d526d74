//! The local socket, `<data dir>/bosun.sock`.
//!
//! It speaks two things on one socket, told apart by the first JSON value sent:
//! - a steward message array (or a single message object), exactly as steward's
//!   `steward.sock` took it: `nc -U bosun.sock < msgs.json`. The answer is one JSON line
//!   with the ids queued, or the error. A YAML list of messages works too
//!   (`nc -U bosun.sock < msgs.yaml`): it ends at end of input, or when a complete line
//!   is followed by a pause of 300 ms;
//! - a control request from the CLI: an object with an `op` field, answered by one JSON
//!   line.
//!
//! The connection is closed after the answer, so `nc` exits on its own. Input is read
//! with the same reader as the TCP listener ([`crate::inputs`]); JSON ends when a whole
//! value has been read (no EOF needed). Input over the size limit, or neither JSON nor
//! YAML messages, gets an error line and never harms the node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_proto::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};

use crate::inputs::{
    Input, READ_TIMEOUT, error_line, messages_from_json, parse_messages_off_workers,
    read_message_input, submit_answer, timeout_error, write_answer,
};
use crate::ops;
use bosun_node::{FleetNode, Node, SentRecord, StatusReport, Submitted};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A request from the CLI.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum ControlRequest {
    /// Queue messages (JSON objects in steward's shape).
    Submit {
        /// The messages.
        messages: Vec<Value>,
    },
    /// Everything known about one id.
    Status {
        /// The message id.
        id: String,
    },
    /// Wait for ids to reach a final state.
    #[serde(rename_all = "camelCase")]
    Wait {
        /// The ids.
        ids: Vec<String>,
        /// Give up waiting after this long.
        timeout_ms: u64,
    },
    /// The most recent messages sent.
    Recent {
        /// How many.
        limit: usize,
    },
    /// Name, transport, connection and queue depths.
    Info,
    /// The configuration in effect.
    Config,
    /// The fleet registry.
    Nodes,
    /// Create (and start) containers, on named nodes or placed over the fleet.
    #[serde(rename_all = "camelCase")]
    ContainerRun {
        /// The container.
        spec: Box<bosun_proto::container::ContainerSpec>,
        /// Destination nodes (none: placement, or this node).
        #[serde(default)]
        nodes: Vec<String>,
        /// How many to place over the fleet.
        #[serde(default)]
        instances: Option<u32>,
        /// Node labels that must match.
        #[serde(default)]
        constraints: std::collections::BTreeMap<String, String>,
        /// Create without starting.
        #[serde(default)]
        create_only: bool,
    },
    /// Containers of this node, or of every live node.
    Containers {
        /// Ask every live node.
        cluster: bool,
        /// Include stopped containers.
        all: bool,
    },
    /// A container method on the node that has the container.
    #[serde(rename_all = "camelCase")]
    ContainerOp {
        /// The method, e.g. `containerKill`.
        method: String,
        /// Container id, prefix or name.
        id: String,
        /// More arguments (signal, timeout, `force`, `follow`).
        #[serde(default)]
        args: Vec<String>,
    },
    /// Take a node out of placement, or put it back (`nodeDrain`), and note it here at
    /// once, before that node's next hello tells it.
    Drain {
        /// The node.
        node: String,
        /// True to drain, false to put it back.
        drained: bool,
    },
    /// Cancel messages this node sent that have not run.
    Cancel {
        /// The ids.
        ids: Vec<String>,
    },
    /// Send one message and wait for its result.
    #[serde(rename_all = "camelCase")]
    Call {
        /// The message.
        message: Box<Message>,
        /// How long to wait.
        timeout_ms: u64,
    },
}

/// The answer to a [`ControlRequest`] or to a steward message array: one JSON line,
/// `{"ok": true, …}` with the fields of the variant, or `{"ok": false, "error": …}`.
/// The CLI reads each answer as the struct its request expects (see
/// [`crate::client::request`]).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ControlResponse {
    /// To `submit` and to message arrays.
    Queued(Queued),
    /// To `status`.
    Report(Report),
    /// To `wait`.
    Waited(Waited),
    /// To `recent`.
    Recent(Recent),
    /// To `info`.
    Info(Info),
    /// To `config`.
    Config(ConfigAnswer),
    /// To `nodes`.
    Nodes(Nodes),
    /// To `containerRun`.
    ContainersStarted(ContainersStarted),
    /// To `containers`.
    Containers(ops::ClusterList),
    /// To `containerOp`.
    ContainerOutput(ContainerOutput),
    /// To `call`.
    Called(Called),
    /// To `cancel`.
    Cancels(Cancels),
    /// To `drain`.
    Drained(Drained),
    /// Any request refused or failed.
    Error(ErrorAnswer),
}

impl ControlResponse {
    /// A refusal with its reason.
    pub fn error(reason: impl ToString) -> ControlResponse {
        ControlResponse::Error(ErrorAnswer {
            error: reason.to_string(),
        })
    }

    /// The answer line as JSON, with `ok` set.
    pub fn to_value(&self) -> Value {
        let mut value =
            serde_json::to_value(self).unwrap_or_else(|e| json!({ "error": e.to_string() }));
        let ok = !matches!(self, ControlResponse::Error(_));
        if let Some(fields) = value.as_object_mut() {
            fields.insert("ok".into(), Value::Bool(ok));
        }
        value
    }
}

/// The deliveries queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queued {
    /// One per destination, in order.
    pub queued: Vec<Submitted>,
}

/// Everything known about one id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The report.
    pub report: StatusReport,
}

/// The reports after a wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waited {
    /// True when every id reached a final state in time.
    pub all_done: bool,
    /// One per id asked about, in order.
    pub reports: Vec<StatusReport>,
}

/// The most recent messages sent, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recent {
    /// The records.
    pub records: Vec<SentRecord>,
}

/// Name, transport, connection and queue depths of the node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Info {
    /// The node's name.
    pub name: String,
    /// The transport, described.
    pub transport: String,
    /// True when the transport is connected.
    pub connected: bool,
    /// Messages in the outbox.
    pub outbox: u64,
    /// Received messages waiting or running.
    pub inbox_pending: u64,
    /// bosun's version.
    pub version: String,
}

/// The configuration in effect, as JSON (the same fields as the TOML file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigAnswer {
    /// The configuration.
    pub config: Value,
}

/// The fleet registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nodes {
    /// One row per node.
    pub nodes: Vec<FleetNode>,
}

/// The containers created (and started).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainersStarted {
    /// One per container asked for.
    pub containers: Vec<ops::Started>,
}

/// The output of a container method, and the node that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerOutput {
    /// The node that has the container.
    pub node: String,
    /// The method's output.
    pub output: String,
}

/// A drain or undrain the node confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drained {
    /// The node.
    pub node: String,
    /// Drained (true) or taking placed work again (false).
    pub drained: bool,
    /// What the node said.
    pub output: String,
}

/// What became of each cancel, in the order asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cancels {
    /// One per id.
    pub cancels: Vec<CancelAnswer>,
}

/// What became of the cancel of one id.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CancelAnswer {
    /// The message id.
    pub id: String,
    /// What was decided: `cancelled`, `askedDestination` (with `to`) or `refused` (with
    /// `reason`).
    #[serde(flatten)]
    pub answer: bosun_node::Cancelled,
}

/// The output of one message sent and waited for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Called {
    /// Its stdout.
    pub output: String,
    /// Its report.
    pub report: StatusReport,
}

/// Why a request was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// The reason.
    pub error: String,
}

/// Submit and make the answer: the ids queued, or the error.
pub(crate) async fn submit_response(node: &Node, messages: Vec<Message>) -> ControlResponse {
    match node.submit(messages).await {
        Ok(queued) => ControlResponse::Queued(Queued { queued }),
        Err(e) => ControlResponse::error(e),
    }
}

/// Bind the socket at `path`, readable and writable by this user only. A socket file
/// left by an earlier run is removed first; one that still answers means another node
/// runs on this data dir, and is refused.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another bosun node running on this data dir?",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(listener)
}

/// Serve the bound socket at `path` until `shutdown` is cancelled, one task per
/// connection on `tracker`; then remove the socket file.
pub async fn serve(
    node: Node,
    listener: UnixListener,
    path: PathBuf,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let node = node.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            _ = connection(node, stream) => {}
                            _ = shutdown.cancelled() => {}
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn connection(node: Node, mut stream: UnixStream) {
    let limit = node
        .config()
        .max_message_bytes
        .saturating_mul(16)
        .max(1 << 20);
    let read = tokio::time::timeout(READ_TIMEOUT, read_message_input(&mut stream, limit)).await;
    let answer = match read {
        Err(_) => timeout_error(),
        Ok(Err(reason)) => error_line(&reason.to_string()),
        Ok(Ok(Input::Json(value))) => handle(&node, value).await.to_value(),
        Ok(Ok(Input::Yaml(text))) => match parse_messages_off_workers(text).await {
            Ok(messages) => submit_answer(&node, messages).await,
            Err(reason) => error_line(&reason.to_string()),
        },
    };
    write_answer(&mut stream, &answer).await;
}

async fn handle(node: &Node, value: Value) -> ControlResponse {
    let is_control = value.as_object().is_some_and(|o| o.contains_key("op"));
    if !is_control {
        return submit(node, value).await;
    }
    let request: ControlRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return ControlResponse::error(format!("bad control request: {e}")),
    };
    match request {
        ControlRequest::Submit { messages } => submit(node, Value::Array(messages)).await,
        ControlRequest::Status { id } => match node.status(&id) {
            Ok(report) if report.sent.is_none() && report.received.is_none() => {
                ControlResponse::error(format!("no message with id {id} on node {}", node.name()))
            }
            Ok(report) => ControlResponse::Report(Report { report }),
            Err(e) => ControlResponse::error(e),
        },
        ControlRequest::Wait { ids, timeout_ms } => {
            match node.wait(&ids, Duration::from_millis(timeout_ms)).await {
                Ok((all_done, reports)) => ControlResponse::Waited(Waited { all_done, reports }),
                Err(e) => ControlResponse::error(e),
            }
        }
        ControlRequest::Recent { limit } => match node.recent(limit.min(10_000)) {
            Ok(records) => ControlResponse::Recent(Recent { records }),
            Err(e) => ControlResponse::error(e),
        },
        ControlRequest::Info => {
            let depths = node.depths().unwrap_or_default();
            ControlResponse::Info(Info {
                name: node.name().to_string(),
                transport: node.transport_description(),
                connected: node.is_connected(),
                outbox: depths.outbox,
                inbox_pending: depths.inbox_pending,
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
        }
        ControlRequest::Config => match serde_json::to_value(node.config()) {
            Ok(config) => ControlResponse::Config(ConfigAnswer { config }),
            Err(e) => ControlResponse::error(e),
        },
        ControlRequest::ContainerRun {
            spec,
            nodes,
            instances,
            constraints,
            create_only,
        } => match ops::run_containers(node, &spec, nodes, instances, constraints, create_only)
            .await
        {
            Ok(containers) => ControlResponse::ContainersStarted(ContainersStarted { containers }),
            Err(e) => ControlResponse::error(e),
        },
        ControlRequest::Containers { cluster, all } => ControlResponse::Containers(
            ops::list_containers(node, cluster, all, Duration::from_secs(10)).await,
        ),
        ControlRequest::ContainerOp { method, id, args } => {
            let Some(method) = bosun_proto::Method::parse(&method).map(|p| p.method) else {
                return ControlResponse::error(format!("unknown method {method:?}"));
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match ops::on_container(node, method, &id, &args).await {
                Ok((node, output)) => {
                    ControlResponse::ContainerOutput(ContainerOutput { node, output })
                }
                Err(e) => ControlResponse::error(e),
            }
        }
        ControlRequest::Call {
            message,
            timeout_ms,
        } => match ops::call(node, vec![*message], Duration::from_millis(timeout_ms)).await {
            Ok(mut reports) => {
                let report = reports.swap_remove(0);
                match ops::stdout(&report) {
                    Ok(output) => ControlResponse::Called(Called { output, report }),
                    Err(e) => ControlResponse::error(e),
                }
            }
            Err(e) => ControlResponse::error(e),
        },
        ControlRequest::Drain {
            node: target,
            drained,
        } => match ops::drain(node, &target, drained).await {
            Ok(output) => ControlResponse::Drained(Drained {
                node: target,
                drained,
                output,
            }),
            Err(e) => ControlResponse::error(e),
        },
        ControlRequest::Cancel { ids } => {
            let mut cancels = Vec::with_capacity(ids.len());
            for id in ids {
                let answer = node.cancel(&id).await;
                cancels.push(CancelAnswer { id, answer });
            }
            ControlResponse::Cancels(Cancels { cancels })
        }
        ControlRequest::Nodes => match node.fleet() {
            Ok(nodes) => ControlResponse::Nodes(Nodes { nodes }),
            Err(e) => ControlResponse::error(e),
        },
    }
}

async fn submit(node: &Node, value: Value) -> ControlResponse {
    match messages_from_json(value) {
        Ok(messages) => submit_response(node, messages).await,
        Err(reason) => ControlResponse::error(reason),
    }
}

#[cfg(test)]
mod tests {

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn talk(socket: &Path, body: &[u8], close_write: bool) -> Value {
        let mut stream = UnixStream::connect(socket).await.unwrap();
        stream.write_all(body).await.unwrap();
        if close_write {
            stream.shutdown().await.unwrap();
        }
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        serde_json::from_slice(&answer).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_socket_takes_yaml_messages_as_well_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let node = crate::test_support::start(crate::test_support::config(dir.path(), "n1")).await;
        let socket = dir.path().join("n1/bosun.sock");
        let listener = bind(&socket).unwrap();
        let server = tokio::spawn(serve(
            node.clone(),
            listener,
            socket.clone(),
            node.shutdown_token(),
            node.tracker(),
        ));

        let yaml = talk(&socket, b"- toNode: n1\n  method: REQPing\n", true).await;
        assert_eq!(yaml["ok"], true, "{yaml}");
        let json = talk(&socket, br#"[{"toNode":"n1","method":"ping"}]"#, false).await;
        assert_eq!(json["ok"], true, "{json}");
        let bad = talk(
            &socket,
            b"- toNode: n1\n  method: ping\n  toHost: x\n",
            true,
        )
        .await;
        assert!(bad["error"].as_str().unwrap().contains("toHost"), "{bad}");
        let info = talk(&socket, br#"{"op":"info"}"#, false).await;
        assert_eq!(info["name"], "n1", "{info}");

        let ids = [&yaml, &json].map(|a| a["queued"][0]["id"].as_str().unwrap().to_string());
        let (all, _) = node.wait(&ids, Duration::from_secs(30)).await.unwrap();
        assert!(all);
        node.shutdown().await;
        server.await.unwrap();
        assert!(!socket.exists(), "the socket file goes at shutdown");
    }
}
