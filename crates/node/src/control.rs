//! The local socket, `<data dir>/bosun.sock`.
//!
//! It speaks two things on one socket, told apart by the first JSON value sent:
//! - a steward message array (or a single message object), exactly as steward's
//!   `steward.sock` took it: `nc -U bosun.sock < msgs.json`. The answer is one JSON line
//!   with the ids queued, or the error;
//! - a control request from the CLI: an object with an `op` field, answered by one JSON
//!   line.
//!
//! The connection is closed after the answer, so `nc` exits on its own. Input is parsed
//! as it arrives; it ends when a whole JSON value has been read (no EOF needed). Input
//! over the size limit, or not JSON, gets an error line and never harms the node.

use std::path::Path;
use std::time::Duration;

use bosun_proto::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::node::Node;

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
}

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve the socket until `shutdown` becomes true. Removes a stale socket file first.
pub async fn serve(node: Node, path: &Path) -> std::io::Result<()> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
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
    let mut shutdown = node.shutdown_signal();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let node = node.clone();
                    tokio::spawn(async move { connection(node, stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = crate::node::until_true(&mut shutdown) => break,
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

async fn connection(node: Node, mut stream: UnixStream) {
    let limit = node
        .config()
        .max_message_bytes
        .saturating_mul(16)
        .max(1 << 20);
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_value(&mut stream, limit)).await {
        Err(_) => error_line("timed out waiting for a complete JSON value"),
        Ok(Err(reason)) => error_line(&reason),
        Ok(Ok(value)) => handle(&node, value).await,
    };
    let mut line = serde_json::to_vec(&answer).unwrap_or_default();
    line.push(b'\n');
    let _ = stream.write_all(&line).await;
    let _ = stream.shutdown().await;
}

fn error_line(reason: &str) -> Value {
    json!({ "ok": false, "error": reason })
}

/// Read until the buffer holds one complete JSON value.
async fn read_value(stream: &mut UnixStream, limit: usize) -> Result<Value, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n > 0 {
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > limit {
                return Err(format!("input is larger than the limit of {limit} bytes"));
            }
        }
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            if n == 0 {
                return Err("no input: send a JSON array of messages".into());
            }
            continue;
        }
        let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => return Ok(v),
            Some(Err(e)) if e.is_eof() && n > 0 => continue,
            Some(Err(e)) if e.is_eof() => return Err(format!("incomplete JSON: {e}")),
            Some(Err(e)) => return Err(format!("malformed JSON: {e}")),
            None => continue,
        }
    }
}

async fn handle(node: &Node, value: Value) -> Value {
    let is_control = value.as_object().is_some_and(|o| o.contains_key("op"));
    if !is_control {
        let messages: Vec<Value> = match value {
            Value::Array(a) => a,
            other => vec![other],
        };
        return submit(node, messages).await;
    }
    let request: ControlRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return error_line(&format!("bad control request: {e}")),
    };
    match request {
        ControlRequest::Submit { messages } => submit(node, messages).await,
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
        ControlRequest::Nodes => match node.fleet() {
            Ok(nodes) => json!({ "ok": true, "nodes": nodes }),
            Err(e) => error_line(&e.to_string()),
        },
    }
}

async fn submit(node: &Node, values: Vec<Value>) -> Value {
    let mut messages = Vec::with_capacity(values.len());
    for (index, v) in values.into_iter().enumerate() {
        match serde_json::from_value::<Message>(v) {
            Ok(m) => messages.push(m),
            Err(e) => return error_line(&format!("message {index}: malformed: {e}")),
        }
    }
    match node.submit(messages).await {
        Ok(receipts) => json!({ "ok": true, "queued": receipts }),
        Err(e) => error_line(&e.to_string()),
    }
}
