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
    Input, READ_TIMEOUT, error_line, messages_from_json, parse_messages, read_input, submit_answer,
    timeout_error, write_answer,
};
use bosun_node::Node;
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
    /// Send one message and wait for its result.
    #[serde(rename_all = "camelCase")]
    Call {
        /// The message.
        message: Box<Message>,
        /// How long to wait.
        timeout_ms: u64,
    },
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
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_input(&mut stream, limit)).await {
        Err(_) => timeout_error(),
        Ok(Err(reason)) => error_line(&reason),
        Ok(Ok(Input::Json(value))) => handle(&node, value).await,
        Ok(Ok(Input::Yaml(text))) => match parse_messages(&text) {
            Ok(messages) => submit_answer(&node, messages).await,
            Err(reason) => error_line(&reason),
        },
    };
    write_answer(&mut stream, &answer).await;
}

async fn handle(node: &Node, value: Value) -> Value {
    let is_control = value.as_object().is_some_and(|o| o.contains_key("op"));
    if !is_control {
        return submit(node, value).await;
    }
    let request: ControlRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return error_line(&format!("bad control request: {e}")),
    };
    match request {
        ControlRequest::Submit { messages } => submit(node, Value::Array(messages)).await,
        ControlRequest::Status { id } => match node.status(&id) {
            Ok(report) if report.sent.is_none() && report.received.is_none() => {
                error_line(&format!("no message with id {id} on node {}", node.name()))
            }
            Ok(report) => json!({ "ok": true, "report": report }),
            Err(e) => error_line(&e.to_string()),
        },
        ControlRequest::Wait { ids, timeout_ms } => {
            match node.wait(&ids, Duration::from_millis(timeout_ms)).await {
                Ok((all_done, reports)) => {
                    json!({ "ok": true, "allDone": all_done, "reports": reports })
                }
                Err(e) => error_line(&e.to_string()),
            }
        }
        ControlRequest::Recent { limit } => match node.recent(limit.min(10_000)) {
            Ok(records) => json!({ "ok": true, "records": records }),
            Err(e) => error_line(&e.to_string()),
        },
        ControlRequest::Info => {
            let depths = node.depths().unwrap_or_default();
            json!({
                "ok": true,
                "name": node.name(),
                "transport": node.transport_description(),
                "connected": node.is_connected(),
                "outbox": depths.outbox,
                "inboxPending": depths.inbox_pending,
                "version": env!("CARGO_PKG_VERSION"),
            })
        }
        ControlRequest::Config => json!({ "ok": true, "config": node.config() }),
        ControlRequest::ContainerRun {
            spec,
            nodes,
            instances,
            constraints,
            create_only,
        } => match crate::ops::run_containers(
            node,
            &spec,
            nodes,
            instances,
            constraints,
            create_only,
        )
        .await
        {
            Ok(started) => json!({ "ok": true, "containers": started }),
            Err(e) => error_line(&e.to_string()),
        },
        ControlRequest::Containers { cluster, all } => {
            let list =
                crate::ops::list_containers(node, cluster, all, Duration::from_secs(10)).await;
            json!({ "ok": true, "containers": list.containers, "missing": list.missing })
        }
        ControlRequest::ContainerOp { method, id, args } => {
            let Some(method) = bosun_proto::Method::parse(&method).map(|p| p.method) else {
                return error_line(&format!("unknown method {method:?}"));
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match crate::ops::on_container(node, method, &id, &args).await {
                Ok((owner, output)) => json!({ "ok": true, "node": owner, "output": output }),
                Err(e) => error_line(&e.to_string()),
            }
        }
        ControlRequest::Call {
            message,
            timeout_ms,
        } => {
            match crate::ops::call(node, vec![*message], Duration::from_millis(timeout_ms)).await {
                Ok(reports) => match crate::ops::stdout(&reports[0]) {
                    Ok(output) => json!({ "ok": true, "output": output, "report": reports[0] }),
                    Err(e) => error_line(&e.to_string()),
                },
                Err(e) => error_line(&e.to_string()),
            }
        }
        ControlRequest::Nodes => match node.fleet() {
            Ok(nodes) => json!({ "ok": true, "nodes": nodes }),
            Err(e) => error_line(&e.to_string()),
        },
    }
}

async fn submit(node: &Node, value: Value) -> Value {
    match messages_from_json(value) {
        Ok(messages) => submit_answer(node, messages).await,
        Err(reason) => error_line(&reason),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bosun_bus::{Hub, LocalTransport};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use bosun_node::Config;

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
        let config = Config {
            name: "n1".into(),
            data_dir: dir.path().join("n1"),
            log: "warn".into(),
            ..Config::default()
        };
        let node = Node::start(config, Arc::new(LocalTransport::new(Hub::new())), false)
            .await
            .unwrap();
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
