//! Containers and images through the Docker Engine API (bollard).
//!
//! One client per socket path, made on the first message and kept; its API version is
//! agreed with the daemon once (bollard speaks a newer API than many daemons do).
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
mod image;
mod lifecycle;
mod logs;
mod query;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

use bollard::errors::Error as DockerError;
use bollard::{API_DEFAULT_VERSION, Docker};
use bosun_proto::{Message, Method, Millis, Outcome, Status};

use crate::{ChunkSink, Context, done, failed, now_millis};

/// Seconds bollard waits for the daemon to answer one request (not for a stream to end).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// True for the methods this module serves.
pub fn handles(method: Method) -> bool {
    matches!(
        method,
        Method::ContainerRun
            | Method::ContainerCreate
            | Method::ContainerStart
            | Method::ContainerStop
            | Method::ContainerRestart
            | Method::ContainerKill
            | Method::ContainerPause
            | Method::ContainerUnpause
            | Method::ContainerRemove
            | Method::ContainerInspect
            | Method::ContainerList
            | Method::ContainerLogs
            | Method::ContainerStats
            | Method::ImagePull
            | Method::ImageList
    )
}

/// Run a container or image method.
pub async fn run(
    method: Method,
    message: &Message,
    context: &Context,
    chunks: &ChunkSink,
) -> Outcome {
    let started = now_millis();
    // Logs decide their own ending: a followed stream that reaches methodTimeout is done.
    if method == Method::ContainerLogs {
        return logs::run(message, context, chunks, started).await;
    }
    let work = async {
        let docker = client(context).await?;
        match method {
            Method::ContainerRun => create::run(&docker, message, context, true).await,
            Method::ContainerCreate => create::run(&docker, message, context, false).await,
            Method::ContainerInspect => query::inspect(&docker, message, context).await,
            Method::ContainerList => query::list(&docker, message, context).await,
            Method::ContainerStats => query::stats(&docker, message, context).await,
            Method::ImagePull => image::pull_method(&docker, message, context).await,
            Method::ImageList => image::list(&docker, context).await,
            other => lifecycle::run(other, &docker, message, context).await,
        }
    };
    match bounded(work, method, message, context, started).await {
        Ok(stdout) => capped(done(context, started, stdout), context.output_limit),
        Err(outcome) => outcome,
    }
}

/// Run `work` until it ends, `methodTimeout` passes or the node shuts down. An error
/// string becomes a `Failed` outcome.
async fn bounded<T>(
    work: impl Future<Output = Result<T, String>>,
    method: Method,
    message: &Message,
    context: &Context,
    started: Millis,
) -> Result<T, Outcome> {
    let timeout = context.method_timeout(message);
    let mut shutdown = context.shutdown.clone();
    let (status, error) = tokio::select! {
        r = work => return r.map_err(|e| failed(context, started, e)),
        _ = tokio::time::sleep(timeout) => (
            Status::Timeout,
            format!(
                "methodTimeout of {}s reached during {method}; the Docker daemon may still \
                 finish it, so check with containerList or containerInspect",
                timeout.as_secs()
            ),
        ),
        _ = wait_true(&mut shutdown) => (
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

/// Resolve when `rx` becomes true; never, if its sender is gone.
async fn wait_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
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

/// Clients by socket path. bollard's client is a cheap handle over a shared transport.
static CLIENTS: LazyLock<Mutex<HashMap<PathBuf, Docker>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The client for the context's socket, made on first use and kept. A client whose
/// daemon did not answer is not kept, so the next message tries again.
async fn client(context: &Context) -> Result<Docker, String> {
    let socket = context.docker_socket.as_path();
    let known = CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(socket)
        .cloned();
    if let Some(docker) = known {
        return Ok(docker);
    }
    let Some(path) = socket.to_str() else {
        return Err(format!(
            "the Docker socket path {} is not UTF-8; configure a plain path",
            socket.display()
        ));
    };
    let docker = Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        .map_err(|e| unreachable(socket, &e))?;
    // bollard asks for its own (newest) API version by default, which older daemons
    // refuse; agree on the lower of the two once, here.
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| unreachable(socket, &e))?;
    let version = docker.client_version();
    tracing::debug!(
        socket = %socket.display(),
        api = %format!("{}.{}", version.major_version, version.minor_version),
        "connected to the Docker daemon"
    );
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(clients
        .entry(socket.to_path_buf())
        .or_insert(docker)
        .clone())
}

/// The one error for a daemon that cannot be talked to, whatever the method.
fn unreachable(socket: &Path, e: &DockerError) -> String {
    format!(
        "cannot reach the Docker daemon at {}: {e}; start dockerd or point the node's \
         Docker socket setting at the right path",
        socket.display()
    )
}

/// True for errors that mean the daemon could not be talked to at all.
fn is_connection_error(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::SocketNotFoundError(_)
            | DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
    )
}

/// Words for a failed Docker call: `action` says what was tried ("stop", "pull alpine"),
/// `container` names the container it was tried on, if any.
fn failure(context: &Context, e: &DockerError, action: &str, container: Option<&str>) -> String {
    match (e, container) {
        (
            DockerError::DockerResponseServerError {
                status_code: 404, ..
            },
            Some(id),
        ) => {
            format!("no such container: {id}; list them with containerList (data [\"all\"])")
        }
        (DockerError::DockerResponseServerError { message, .. }, Some(id)) => {
            format!(
                "cannot {action} {id}: the Docker daemon said: {}",
                message.trim()
            )
        }
        (DockerError::DockerResponseServerError { message, .. }, None) => {
            format!(
                "cannot {action}: the Docker daemon said: {}",
                message.trim()
            )
        }
        (DockerError::DockerStreamError { error }, _) => {
            format!("cannot {action}: the Docker daemon said: {}", error.trim())
        }
        (e, _) if is_connection_error(e) => unreachable(&context.docker_socket, e),
        (e, Some(id)) => format!("cannot {action} {id}: {e}"),
        (e, None) => format!("cannot {action}: {e}"),
    }
}

/// True when the daemon answered 404 (no such container, image, …).
fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
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
fn container_arg(message: &Message) -> Result<&str, String> {
    let raw = arg(message, 0).ok_or(
        "no container given: data[0] must be a container id, id prefix or name".to_string(),
    )?;
    let name = raw.strip_prefix('/').unwrap_or(raw);
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(format!(
            "{raw:?} is not a container id or name: use letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(name)
}

/// `data[i]` as whole seconds, or `default` when not given.
fn seconds_arg(message: &Message, i: usize, default: i32) -> Result<i32, String> {
    match arg(message, i) {
        None => Ok(default),
        Some(s) => s
            .parse::<u16>()
            .map(i32::from)
            .map_err(|_| format!("data[{i}] {s:?} must be whole seconds (0 to 65535)")),
    }
}
