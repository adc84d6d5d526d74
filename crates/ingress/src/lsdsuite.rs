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

/// Run one command.
pub async fn command(node: &Node, request: &Value) -> Value {
    let Some(name) = request["command"].as_str() else {
        return err("missing \"command\"; send {\"command\": \"status\"}");
    };
    let params = &request["params"];
    let param = |key: &str| params[key].as_str().map(str::to_string);
    let (method, data) = match name {
        "status" => return ok(Some(bosun_methods::host::hostname())),
        "log" => (
            Method::CaptureFile,
            vec![param("file").unwrap_or_else(|| "default.log".into())],
        ),
        "kill" => {
            let Some(id) = param("id") else {
                return err("kill needs params.id");
            };
            let signal = match &params["signal"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => "SIGTERM".into(),
            };
            (Method::ContainerKill, vec![id, signal])
        }
        "pause" | "unpause" => {
            let Some(id) = param("id") else {
                return err(&format!("{name} needs params.id"));
            };
            let method = if name == "pause" {
                Method::ContainerPause
            } else {
                Method::ContainerUnpause
            };
            (method, vec![id])
        }
        "pull" => {
            let Some(image) = param("image") else {
                return err("pull needs params.image");
            };
            (Method::ImagePull, vec![image])
        }
        "mark" => (Method::Mark, vec![param("msg").unwrap_or_default()]),
        other => {
            return err(&format!(
                "unknown command {other:?}; use status, log, kill, pause, unpause, pull or mark"
            ));
        }
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
