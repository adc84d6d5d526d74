//! Start, stop, restart, kill, pause, unpause and remove one container.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    KillContainerOptions, RemoveContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use bosun_proto::Message;

use super::{
    DockerMethodError, Lifecycle, REQUEST_TIMEOUT, arg, container_arg, failure, seconds_arg,
};
use crate::Context;

/// Seconds `containerStop` and `containerRestart` wait before SIGKILL, as `docker stop`.
const DEFAULT_STOP_SECS: i32 = 10;

impl Lifecycle {
    /// The verb for what is tried, as in "cannot stop ID".
    fn verb(self) -> &'static str {
        match self {
            Lifecycle::Start => "start",
            Lifecycle::Stop => "stop",
            Lifecycle::Restart => "restart",
            Lifecycle::Kill => "kill",
            Lifecycle::Pause => "pause",
            Lifecycle::Unpause => "unpause",
            Lifecycle::Remove => "remove",
        }
    }
}

/// Make one lifecycle change to the container in `data[0]`; stdout says what was done.
pub(super) async fn run(
    change: Lifecycle,
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let id = container_arg(message)?;
    let result = match change {
        Lifecycle::Start => docker.start_container(id, None).await,
        Lifecycle::Stop => {
            let t = seconds_arg(message, 1, DEFAULT_STOP_SECS)?;
            let options = StopContainerOptions {
                t: Some(t),
                signal: None,
            };
            patient(docker, t).stop_container(id, Some(options)).await
        }
        Lifecycle::Restart => {
            let t = seconds_arg(message, 1, DEFAULT_STOP_SECS)?;
            let options = RestartContainerOptions {
                t: Some(t),
                signal: None,
            };
            patient(docker, t)
                .restart_container(id, Some(options))
                .await
        }
        Lifecycle::Kill => {
            let options = KillContainerOptions {
                signal: signal_arg(message)?.to_string(),
            };
            docker.kill_container(id, Some(options)).await
        }
        Lifecycle::Pause => docker.pause_container(id).await,
        Lifecycle::Unpause => docker.unpause_container(id).await,
        Lifecycle::Remove => {
            let force = match arg(message, 1) {
                None => false,
                Some("force") => true,
                Some(other) => {
                    return Err(DockerMethodError::NotUnderstood {
                        index: 1,
                        given: other.to_string(),
                        expected: "give \"force\" to remove a running container, or nothing",
                    });
                }
            };
            let options = RemoveContainerOptions {
                force,
                ..Default::default()
            };
            docker.remove_container(id, Some(options)).await
        }
    };
    result.map_err(|e| failure(context, e, change.verb(), Some(id)))?;
    Ok(match change {
        Lifecycle::Start => format!("started {id}\n"),
        Lifecycle::Stop => format!("stopped {id}\n"),
        Lifecycle::Restart => format!("restarted {id}\n"),
        Lifecycle::Kill => format!("sent {} to {id}\n", signal_arg(message)?),
        Lifecycle::Pause => format!("paused {id}\n"),
        Lifecycle::Unpause => format!("unpaused {id}\n"),
        Lifecycle::Remove => format!("removed {id}\n"),
    })
}

/// A client that waits long enough for a stop of `t` seconds to end.
fn patient(docker: &Docker, t: i32) -> Docker {
    let needed = u64::try_from(t).unwrap_or(0) + 30;
    docker
        .clone()
        .with_timeout(Duration::from_secs(needed).max(REQUEST_TIMEOUT))
}

/// `data[1]` as a signal name (`SIGKILL`, `KILL`, `SIGRTMIN+3`) or number; `SIGTERM`
/// when not given. The daemon judges whether the signal exists.
fn signal_arg(message: &Message) -> Result<&str, DockerMethodError> {
    let Some(signal) = arg(message, 1) else {
        return Ok("SIGTERM");
    };
    let valid = signal.len() <= 16
        && signal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-');
    if !valid {
        return Err(DockerMethodError::NotASignal {
            given: signal.to_string(),
        });
    }
    Ok(signal)
}
