//! Start, stop, restart, kill, pause, unpause and remove one container.

use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    KillContainerOptions, RemoveContainerOptions, RestartContainerOptions, StopContainerOptions,
};
use bosun_proto::{Message, Method};

use super::{REQUEST_TIMEOUT_SECS, arg, container_arg, failure, seconds_arg};
use crate::Context;

/// Seconds `containerStop` and `containerRestart` wait before SIGKILL, as `docker stop`.
const DEFAULT_STOP_SECS: i32 = 10;

/// Run one lifecycle method on the container in `data[0]`; stdout says what was done.
pub(super) async fn run(
    method: Method,
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, String> {
    let id = container_arg(message)?;
    let (verb, result) = match method {
        Method::ContainerStart => ("start", docker.start_container(id, None).await),
        Method::ContainerStop => {
            let t = seconds_arg(message, 1, DEFAULT_STOP_SECS)?;
            let options = StopContainerOptions {
                t: Some(t),
                signal: None,
            };
            let result = patient(docker, t).stop_container(id, Some(options)).await;
            ("stop", result)
        }
        Method::ContainerRestart => {
            let t = seconds_arg(message, 1, DEFAULT_STOP_SECS)?;
            let options = RestartContainerOptions {
                t: Some(t),
                signal: None,
            };
            let result = patient(docker, t)
                .restart_container(id, Some(options))
                .await;
            ("restart", result)
        }
        Method::ContainerKill => {
            let signal = signal_arg(message)?;
            let options = KillContainerOptions {
                signal: signal.to_string(),
            };
            ("kill", docker.kill_container(id, Some(options)).await)
        }
        Method::ContainerPause => ("pause", docker.pause_container(id).await),
        Method::ContainerUnpause => ("unpause", docker.unpause_container(id).await),
        Method::ContainerRemove => {
            let force = match arg(message, 1) {
                None => false,
                Some("force") => true,
                Some(other) => {
                    return Err(format!(
                        "data[1] {other:?} is not understood: give \"force\" to remove a \
                         running container, or nothing"
                    ));
                }
            };
            let options = RemoveContainerOptions {
                force,
                ..Default::default()
            };
            ("remove", docker.remove_container(id, Some(options)).await)
        }
        other => return Err(format!("{other} is not a container lifecycle method")),
    };
    result.map_err(|e| failure(context, &e, verb, Some(id)))?;
    Ok(match method {
        Method::ContainerKill => format!("sent {} to {id}\n", signal_arg(message)?),
        _ => format!("{} {id}\n", past_tense(verb)),
    })
}

/// A client that waits long enough for a stop of `t` seconds to end.
fn patient(docker: &Docker, t: i32) -> Docker {
    let needed = u64::try_from(t).unwrap_or(0) + 30;
    docker
        .clone()
        .with_timeout(Duration::from_secs(needed.max(REQUEST_TIMEOUT_SECS)))
}

/// `data[1]` as a signal name (`SIGKILL`, `KILL`, `SIGRTMIN+3`) or number; `SIGTERM`
/// when not given. The daemon judges whether the signal exists.
fn signal_arg(message: &Message) -> Result<&str, String> {
    let Some(signal) = arg(message, 1) else {
        return Ok("SIGTERM");
    };
    let valid = signal.len() <= 16
        && signal
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-');
    if !valid {
        return Err(format!(
            "data[1] {signal:?} is not a signal: give a name such as SIGKILL or a number \
             such as 9"
        ));
    }
    Ok(signal)
}

/// What the answer says was done.
fn past_tense(verb: &str) -> &'static str {
    match verb {
        "start" => "started",
        "stop" => "stopped",
        "restart" => "restarted",
        "pause" => "paused",
        "unpause" => "unpaused",
        "remove" => "removed",
        _ => "done:",
    }
}
