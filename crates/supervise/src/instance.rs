//! One running copy of a workload: a process group or a container, how it ends, and
//! how it is signalled, stopped and checked.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::SuperviseError;
use crate::def::{Health, WorkloadDef};

/// The label that names a container's workload.
pub const WORKLOAD_LABEL: &str = "org.bosun.workload";
/// The label that names the node supervising it.
pub const NODE_LABEL: &str = "org.bosun.node";

/// A recorded process group (see `bosun_methods::process::Group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedGroup {
    /// Process group id.
    pub pgid: i32,
    /// The leader's start time in ticks after boot.
    pub start_time: u64,
    /// The boot it ran in.
    pub boot_id: String,
}

/// A running copy.
pub struct Instance {
    /// What it is.
    pub kind: Kind,
    /// Ends with its exit code (128 + signal for a signal).
    pub exit: Pin<Box<dyn Future<Output = Option<i32>> + Send>>,
}

/// A process group or a container.
#[derive(Debug, Clone)]
pub enum Kind {
    /// The group's id and its record.
    Process(SavedGroup),
    /// The container's id.
    Container {
        /// Its id.
        id: String,
        /// The engine.
        docker: Docker,
    },
}

impl Kind {
    /// The pid of a process workload.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Kind::Process(g) => Some(g.pgid as u32),
            Kind::Container { .. } => None,
        }
    }

    /// The id of a container workload.
    pub fn container(&self) -> Option<String> {
        match self {
            Kind::Container { id, .. } => Some(id.clone()),
            Kind::Process(_) => None,
        }
    }
}

/// Start a copy of `def` (or adopt the running container of an earlier node run).
pub async fn start(
    def: &WorkloadDef,
    owner: &str,
    spawner: &bosun_methods::process::Spawner,
    docker_socket: &std::path::Path,
) -> Result<Instance, SuperviseError> {
    if let Some(argv) = &def.command {
        let mut command = bosun_methods::process::Launch::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(&def.env)
            .stdin(bosun_methods::process::Io::Null);
        if let Some(cwd) = &def.cwd {
            command.current_dir(cwd);
        }
        let mut child = spawner
            .spawn(command)
            .await
            .map_err(|e| SuperviseError::Start {
                name: def.name.clone(),
                reason: format!("{}: {e}", argv[0]),
            })?;
        let pid = child.id().unwrap_or(0);
        let group = bosun_methods::process::group_of(pid).map_err(|e| SuperviseError::Start {
            name: def.name.clone(),
            reason: e.to_string(),
        })?;
        let exit = Box::pin(async move {
            child.wait().await.ok().map(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().or(s.signal().map(|n| 128 + n)).unwrap_or(-1)
            })
        });
        return Ok(Instance {
            kind: Kind::Process(SavedGroup {
                pgid: group.pgid,
                start_time: group.start_time,
                boot_id: group.boot_id,
            }),
            exit,
        });
    }
    let spec = def
        .container
        .as_ref()
        .ok_or_else(|| SuperviseError::Start {
            name: def.name.clone(),
            reason: "neither a command nor a container".into(),
        })?;
    let docker = docker(docker_socket).await?;
    let err = |e: bollard::errors::Error| SuperviseError::Docker(e.to_string());
    // Adopt what an earlier run of the node left: never a second copy.
    let mut existing = ours(&docker, owner, &def.name).await?;
    let running = existing.iter().position(|(_, running)| *running);
    let keep = running.or(if existing.is_empty() { None } else { Some(0) });
    let mut chosen = keep.map(|i| existing.swap_remove(i));
    for (extra, _) in existing {
        let _ = docker
            .remove_container(
                &extra,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    let id = match chosen.take() {
        Some((id, true)) => id,
        Some((id, false)) => {
            docker.start_container(&id, None).await.map_err(err)?;
            id
        }
        None => {
            let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
            labels.insert(WORKLOAD_LABEL.into(), def.name.clone());
            labels.insert(NODE_LABEL.into(), owner.to_string());
            let body = bollard::models::ContainerCreateBody {
                image: Some(spec.image.clone()),
                cmd: spec.cmd.clone(),
                env: (!spec.env.is_empty()).then(|| spec.env.clone()),
                labels: Some(labels),
                ..Default::default()
            };
            let created = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(format!("bosun-{owner}-{}", def.name)),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .map_err(err)?;
            docker
                .start_container(&created.id, None)
                .await
                .map_err(err)?;
            created.id
        }
    };
    let waiter = docker.clone();
    let wait_id = id.clone();
    let exit = Box::pin(async move {
        let mut stream = waiter.wait_container(&wait_id, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(r)) => Some(r.status_code as i32),
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Some(code as i32)
            }
            _ => None,
        }
    });
    Ok(Instance {
        kind: Kind::Container { id, docker },
        exit,
    })
}

/// The containers of workload `name` of node `owner`: (id, running).
pub async fn ours(
    docker: &Docker,
    owner: &str,
    name: &str,
) -> Result<Vec<(String, bool)>, SuperviseError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{WORKLOAD_LABEL}={name}"),
            format!("{NODE_LABEL}={owner}"),
        ],
    )]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| SuperviseError::Docker(e.to_string()))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let running = c.state.map(|s| s.to_string() == "running").unwrap_or(false);
            c.id.map(|id| (id, running))
        })
        .collect())
}

/// A client for the engine.
pub async fn docker(socket: &std::path::Path) -> Result<Docker, SuperviseError> {
    bosun_methods::docker::engine::connect(socket, Duration::from_secs(60))
        .await
        .map_err(|e| SuperviseError::Docker(e.to_string()))
}

/// Send `signal` to the copy.
pub async fn signal(kind: &Kind, signal: i32) -> Result<(), SuperviseError> {
    match kind {
        Kind::Process(g) => {
            let sig = Signal::try_from(signal)
                .map_err(|e| SuperviseError::Docker(format!("signal {signal}: {e}")))?;
            killpg(Pid::from_raw(g.pgid), sig)
                .map_err(|e| SuperviseError::Docker(format!("kill group {}: {e}", g.pgid)))
        }
        Kind::Container { id, docker } => docker
            .kill_container(
                id,
                Some(KillContainerOptions {
                    signal: signal.to_string(),
                }),
            )
            .await
            .map_err(|e| SuperviseError::Docker(e.to_string())),
    }
}

/// Stop the copy: SIGTERM, then SIGKILL after 5 s; wait until it has ended.
pub async fn stop(instance: &mut Instance) {
    match &instance.kind {
        Kind::Process(g) => {
            let _ = killpg(Pid::from_raw(g.pgid), Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(5), &mut instance.exit)
                .await
                .is_err()
            {
                let _ = killpg(Pid::from_raw(g.pgid), Signal::SIGKILL);
                let _ = (&mut instance.exit).await;
            }
        }
        Kind::Container { id, docker } => {
            let _ = docker
                .stop_container(
                    id,
                    Some(StopContainerOptions {
                        t: Some(5),
                        signal: None,
                    }),
                )
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut instance.exit).await;
        }
    }
}

/// Remove a container copy (after [`stop`]).
pub async fn remove(kind: &Kind) {
    if let Kind::Container { id, docker } = kind {
        let _ = docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unhealthy(pub String);

/// One health check: `Ok` when healthy, else why not.
pub async fn check(health: &Health) -> Result<(), Unhealthy> {
    let timeout = Duration::from_secs_f64(health.timeout_secs);
    match tokio::time::timeout(timeout, check_once(health)).await {
        Ok(result) => result,
        Err(_) => Err(Unhealthy(format!("no answer within {timeout:?}"))),
    }
}

async fn check_once(health: &Health) -> Result<(), Unhealthy> {
    {
        if let Some(argv) = &health.command {
            let out = tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| Unhealthy(format!("{}: {e}", argv[0])))?;
            if out.status.success() {
                return Ok(());
            }
            return Err(Unhealthy(format!(
                "{} exited with {}",
                argv.join(" "),
                out.status
            )));
        }
        if let Some(address) = &health.tcp {
            return tokio::net::TcpStream::connect(address)
                .await
                .map(|_| ())
                .map_err(|e| Unhealthy(format!("tcp {address}: {e}")));
        }
        if let Some(url) = &health.http {
            return http_get(url).await;
        }
        Err(Unhealthy("no check".into()))
    }
}

/// A plain HTTP/1.0 GET: healthy on 2xx and 3xx.
async fn http_get(url: &str) -> Result<(), Unhealthy> {
    let fail = |e: String| Unhealthy(e);
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("not http://".into()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| fail(format!("GET {url}: {e}")))?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: bosun\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| fail(format!("GET {url}: {e}")))?;
    let mut head = vec![0u8; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| fail(format!("GET {url}: {e}")))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| fail(format!("GET {url}: not an HTTP answer")))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(fail(format!("GET {url}: status {code}")))
    }
}
