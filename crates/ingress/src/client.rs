//! The CLI's side of `bosun.sock`: one request, one JSON answer.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::control::ControlRequest;

/// Why a request to the local node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node listens on the socket.
    #[error(
        "no bosun node is running on {path} ({reason}); start one with `bosun node --data-dir {dir}`, or point --data-dir / BOSUN_DATA_DIR at the node's data dir"
    )]
    NotRunning {
        /// The socket.
        path: String,
        /// The data dir.
        dir: String,
        /// The connect error.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{0}")]
    Refused(String),
    /// The conversation broke off.
    #[error("talking to the node: {0}")]
    Io(String),
}

/// Send one control request and read the node's answer as `T`, the answer struct of
/// that request in [`crate::control`] (e.g. [`crate::control::Waited`] for `Wait`).
pub async fn request<T: DeserializeOwned>(
    socket: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<T, ClientError> {
    let body = serde_json::to_vec(request).map_err(|e| ClientError::Io(e.to_string()))?;
    let answer = raw(socket, &body, timeout).await?;
    serde_json::from_value(answer).map_err(|e| ClientError::Io(format!("unreadable answer: {e}")))
}

/// Send raw bytes (e.g. a steward message file) and return the node's answer.
pub async fn raw(socket: &Path, body: &[u8], timeout: Duration) -> Result<Value, ClientError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| ClientError::NotRunning {
            path: socket.display().to_string(),
            dir: socket
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
                .display()
                .to_string(),
            reason: e.to_string(),
        })?;
    let exchange = async {
        let mut framed = Vec::with_capacity(body.len() + 1);
        framed.extend_from_slice(body);
        framed.push(b'\n');
        // The node answers as soon as it has read one whole JSON value and may close
        // before a trailing byte is taken, so a failed write still gets its answer read.
        let _ = stream.write_all(&framed).await;
        // End of input: YAML is read to the end, JSON needs no end but is not hurt by one.
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Io("no answer in time".into()))?
        .map_err(|e| ClientError::Io(e.to_string()))?;
    let value: Value = serde_json::from_slice(&answer)
        .map_err(|e| ClientError::Io(format!("unreadable answer: {e}")))?;
    if value["ok"] == Value::Bool(true) {
        Ok(value)
    } else {
        Err(ClientError::Refused(
            value["error"]
                .as_str()
                .unwrap_or("the node refused the request")
                .to_string(),
        ))
    }
}
