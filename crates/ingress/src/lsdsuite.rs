//! The LSDSuite / FaultSee node manager's TCP command port (7000 in its document), off by
//! default. Each connection sends one `{"command": …, "params": {…}}` and gets one
//! `{"status": "ok|err", "msg": …}` back. Every command becomes a message to this node,
//! so it is recorded, run once and visible in `bosun status` like any other. Who may
//! connect is decided as for the steward port ([`crate::peer`]).

use std::time::Duration;

use bosun_proto::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::inputs::{Input, read_message_input};
use crate::ops;
use bosun_node::Node;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serve the command port until `shutdown` is cancelled, with the same admission as the
/// message listener: only this node's user or root on this host, or remote peers with
/// `tcp_allow_remote`; bounded connections and reading slots.
pub async fn serve(
    node: Node,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let port = crate::inputs::Port {
        what: "lsdsuite",
        refusal: err,
    };
    crate::inputs::accept_tcp(
        node,
        listener,
        shutdown,
        tracker,
        port,
        |node, stream, _| connection(node, stream),
    )
    .await
}

async fn connection(node: Node, mut stream: TcpStream) {
    let answer = match tokio::time::timeout(
        Duration::from_secs(30),
        read_message_input(&mut stream, 64 * 1024),
    )
    .await
    {
        Err(_) => err("timed out waiting for a JSON command"),
        Ok(Err(reason)) => err(&reason.to_string()),
        Ok(Ok(Input::Yaml(_))) => err("send a JSON object: {\"command\": \"status\"}"),
        Ok(Ok(Input::Json(v))) => command(&node, &v).await,
    };
    let mut line = answer.to_string().into_bytes();
    line.push(b'\n');
    let _ = stream.write_all(&line).await;
    let _ = stream.shutdown().await;
}

fn ok(msg: Option<String>) -> Value {
    match msg {
        Some(m) => json!({ "status": "ok", "msg": m }),
        None => json!({ "status": "ok" }),
    }
}

fn err(msg: &str) -> Value {
    json!({ "status": "err", "msg": msg })
}

/// What one command asks for, read from its JSON before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `status`: answered at once with the host name.
    Status,
    /// Every other command: one message to this node.
    Send {
        /// The method of the message.
        method: Method,
        /// Its arguments.
        data: Vec<String>,
    },
}

/// Why a command is refused before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No `command` string.
    #[error("missing \"command\"; send {{\"command\": \"status\"}}")]
    NoCommand,
    /// A command without a parameter it needs.
    #[error("{command} needs params.{param}")]
    MissingParam {
        /// The command.
        command: &'static str,
        /// The parameter missing (or not a string).
        param: &'static str,
    },
    /// A command this port does not know.
    #[error("unknown command {0:?}; use status, log, kill, pause, unpause, pull or mark")]
    Unknown(String),
}

/// Read one command's JSON: `{"command": …, "params": {…}}`.
pub fn plan(request: &Value) -> Result<Plan, CommandError> {
    let Some(name) = request["command"].as_str() else {
        return Err(CommandError::NoCommand);
    };
    let params = &request["params"];
    let param = |key: &str| params[key].as_str().map(str::to_string);
    let missing = |command, param| CommandError::MissingParam { command, param };
    let (method, data) = match name {
        "status" => return Ok(Plan::Status),
        "log" => (
            Method::CaptureFile,
            vec![param("file").unwrap_or_else(|| "default.log".into())],
        ),
        "kill" => {
            let id = param("id").ok_or(missing("kill", "id"))?;
            let signal = match &params["signal"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => "SIGTERM".into(),
            };
            (Method::ContainerKill, vec![id, signal])
        }
        "pause" => (
            Method::ContainerPause,
            vec![param("id").ok_or(missing("pause", "id"))?],
        ),
        "unpause" => (
            Method::ContainerUnpause,
            vec![param("id").ok_or(missing("unpause", "id"))?],
        ),
        "pull" => (
            Method::ImagePull,
            vec![param("image").ok_or(missing("pull", "image"))?],
        ),
        "mark" => (Method::Mark, vec![param("msg").unwrap_or_default()]),
        other => return Err(CommandError::Unknown(other.to_string())),
    };
    Ok(Plan::Send { method, data })
}

/// Run one command.
pub async fn command(node: &Node, request: &Value) -> Value {
    let (method, data) = match plan(request) {
        Ok(Plan::Status) => return ok(Some(bosun_methods::host::hostname())),
        Ok(Plan::Send { method, data }) => (method, data),
        Err(e) => return err(&e.to_string()),
    };
    let message = ops::message(node.name(), method, data);
    match ops::call(node, vec![message], Duration::from_secs(120)).await {
        Ok(reports) => match ops::stdout(&reports[0]) {
            Ok(_) => ok(None),
            Err(e) => err(&e.to_string()),
        },
        Err(e) => err(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_into_messages_or_refused_with_the_reason() {
        let send = |v: Value| match plan(&v) {
            Ok(Plan::Send { method, data }) => (method, data),
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(plan(&json!({"command": "status"})), Ok(Plan::Status));
        assert_eq!(
            send(json!({"command": "kill", "params": {"id": "abc", "signal": 9}})),
            (Method::ContainerKill, vec!["abc".into(), "9".into()])
        );
        assert_eq!(
            send(json!({"command": "kill", "params": {"id": "abc"}})),
            (Method::ContainerKill, vec!["abc".into(), "SIGTERM".into()])
        );
        assert_eq!(
            send(json!({"command": "log"})),
            (Method::CaptureFile, vec!["default.log".into()])
        );
        assert_eq!(
            send(json!({"command": "mark", "params": {"msg": "two"}})),
            (Method::Mark, vec!["two".into()])
        );
        for (bad, says) in [
            (json!({"params": {}}), "missing \"command\""),
            (json!({"command": 5}), "missing \"command\""),
            (json!({"command": "pause"}), "pause needs params.id"),
            (
                json!({"command": "unpause", "params": {"id": 1}}),
                "unpause needs params.id",
            ),
            (
                json!({"command": "pull", "params": []}),
                "pull needs params.image",
            ),
            (json!({"command": "fly"}), "unknown command \"fly\""),
            (json!([1, 2]), "missing"),
        ] {
            let err = plan(&bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad} → {err}");
        }
    }
}
