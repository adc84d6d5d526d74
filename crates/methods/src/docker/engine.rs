//! The Docker Engine: connecting to its socket, summing up a stats sample as
//! `docker stats` does, and turning its errors into words a user can act on.
//!
//! Shared by the container methods and the node's event stream, so both connect, count
//! and explain the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCpuStats, ContainerStatsResponse};
use bollard::{API_DEFAULT_VERSION, Docker};
use serde::Serialize;

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// bollard takes the socket path as text.
    #[error("the Docker socket path {} is not UTF-8; configure a plain path", path.display())]
    SocketPathNotUtf8 {
        /// The path configured.
        path: PathBuf,
    },
    /// No daemon answered on the socket.
    #[error(
        "cannot reach the Docker daemon at {}: {source}; start dockerd or point the node's \
         Docker socket setting at the right path",
        socket.display()
    )]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// What the client saw.
        source: DockerError,
    },
    /// The daemon knows no container by that id or name.
    #[error("no such container: {container}; list them with containerList (data [\"all\"])")]
    NoSuchContainer {
        /// The id or name given.
        container: String,
    },
    /// The daemon answered with a refusal.
    #[error("cannot {action}{}: the Docker daemon said: {said}", on(target.as_deref()))]
    Refused {
        /// What was tried ("stop", "pull alpine").
        action: String,
        /// The container it was tried on, if any.
        target: Option<String>,
        /// The daemon's own words.
        said: String,
    },
    /// Any other failure of the call.
    #[error("cannot {action}{}: {source}", on(target.as_deref()))]
    Failed {
        /// What was tried.
        action: String,
        /// The container it was tried on, if any.
        target: Option<String>,
        /// What the client saw.
        source: DockerError,
    },
}

/// `" ID"` after an action when there is a container, else nothing.
fn on(target: Option<&str>) -> String {
    target.map(|t| format!(" {t}")).unwrap_or_default()
}

impl EngineError {
    /// Explain a failed call: `action` says what was tried ("stop", "pull alpine"),
    /// `container` names the container it was tried on, if any, and `socket` is where
    /// the daemon was expected.
    pub fn from_call(
        socket: &Path,
        error: DockerError,
        action: &str,
        container: Option<&str>,
    ) -> EngineError {
        let action = action.to_string();
        match (error, container) {
            (
                DockerError::DockerResponseServerError {
                    status_code: 404, ..
                },
                Some(id),
            ) => EngineError::NoSuchContainer {
                container: id.to_string(),
            },
            (DockerError::DockerResponseServerError { message, .. }, target) => {
                EngineError::Refused {
                    action,
                    target: target.map(str::to_string),
                    said: message.trim().to_string(),
                }
            }
            // A refusal in the middle of a stream names no container, as the daemon's
            // words already say what it refused.
            (DockerError::DockerStreamError { error }, _) => EngineError::Refused {
                action,
                target: None,
                said: error.trim().to_string(),
            },
            (error, _) if is_connection_error(&error) => EngineError::Unreachable {
                socket: socket.to_path_buf(),
                source: error,
            },
            (source, target) => EngineError::Failed {
                action,
                target: target.map(str::to_string),
                source,
            },
        }
    }
}

/// True for errors that mean the daemon could not be talked to at all.
pub fn is_connection_error(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::SocketNotFoundError(_)
            | DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
    )
}

/// True when the daemon answered 404 (no such container, image, …).
pub fn is_not_found(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Connect to the daemon on the unix socket at `socket`, waiting at most
/// `request_timeout` for any one answer, and agree on an API version with it.
pub async fn connect(socket: &Path, request_timeout: Duration) -> Result<Docker, EngineError> {
    let Some(path) = socket.to_str() else {
        return Err(EngineError::SocketPathNotUtf8 {
            path: socket.to_path_buf(),
        });
    };
    let unreachable = |source| EngineError::Unreachable {
        socket: socket.to_path_buf(),
        source,
    };
    let docker = Docker::connect_with_unix(path, request_timeout.as_secs(), API_DEFAULT_VERSION)
        .map_err(unreachable)?;
    // bollard asks for its own (newest) API version by default, which older daemons
    // refuse; agree on the lower of the two once, here.
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    let version = docker.client_version();
    tracing::debug!(
        socket = %socket.display(),
        api = %format!("{}.{}", version.major_version, version.minor_version),
        "connected to the Docker daemon"
    );
    Ok(docker)
}

/// Clients by socket path, made on first use and kept. bollard's client is a cheap
/// handle over a shared transport.
#[derive(Default)]
pub struct Clients(Mutex<HashMap<PathBuf, Docker>>);

impl Clients {
    /// The client for `socket`. A client whose daemon did not answer is not kept, so
    /// the next call tries again.
    pub async fn get(
        &self,
        socket: &Path,
        request_timeout: Duration,
    ) -> Result<Docker, EngineError> {
        let known = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(socket)
            .cloned();
        if let Some(docker) = known {
            return Ok(docker);
        }
        let docker = connect(socket, request_timeout).await?;
        let mut clients = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(clients
            .entry(socket.to_path_buf())
            .or_insert(docker)
            .clone())
    }
}

/// The figures `docker stats` shows for one sample, computed with its formulas.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSummary {
    /// CPU use since the previous reading, in percent of one CPU (so up to 100 × CPUs),
    /// rounded to two decimals.
    pub cpu_percent: f64,
    /// CPUs the container may use; at least 1.
    pub online_cpus: u32,
    /// Memory in use, without page cache the kernel can drop.
    pub memory_bytes: u64,
    /// The container's memory limit (the host's memory when it has none).
    pub memory_limit_bytes: u64,
    /// Bytes received over all networks.
    pub network_rx_bytes: u64,
    /// Bytes sent over all networks.
    pub network_tx_bytes: u64,
    /// Bytes read from block devices.
    pub block_read_bytes: u64,
    /// Bytes written to block devices.
    pub block_write_bytes: u64,
    /// Processes and threads in the container, when the daemon says.
    pub pids: Option<u64>,
}

/// True when `sample` carries a previous CPU reading to take a percentage from: the
/// first sample of a stream, and a stopped container's empty answer, do not.
pub fn has_cpu_baseline(sample: &ContainerStatsResponse) -> bool {
    let current = sample.cpu_stats.as_ref();
    total_usage(current).is_some()
        && current.and_then(|c| c.system_cpu_usage).is_some()
        && sample
            .precpu_stats
            .as_ref()
            .and_then(|p| p.system_cpu_usage)
            .is_some_and(|s| s > 0)
}

fn total_usage(cpu: Option<&ContainerCpuStats>) -> Option<u64> {
    cpu.and_then(|c| c.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
}

/// Sum up one stats sample as the Docker CLI does (`cli/command/container/stats_helpers.go`).
pub fn summarize(sample: &ContainerStatsResponse) -> StatsSummary {
    let cpu = sample.cpu_stats.as_ref();
    let precpu = sample.precpu_stats.as_ref();
    let system = |c: Option<&ContainerCpuStats>| c.and_then(|c| c.system_cpu_usage).unwrap_or(0);
    let online_cpus = cpu
        .and_then(|c| c.online_cpus)
        .filter(|n| *n > 0)
        .or_else(|| {
            cpu.and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.percpu_usage.as_ref())
                .and_then(|p| u32::try_from(p.len()).ok())
        })
        .unwrap_or(1)
        .max(1);
    let cpu_delta = total_usage(cpu)
        .unwrap_or(0)
        .saturating_sub(total_usage(precpu).unwrap_or(0));
    let system_delta = system(cpu).saturating_sub(system(precpu));
    let cpu_percent = if system_delta > 0 && cpu_delta > 0 {
        let percent = cpu_delta as f64 / system_delta as f64 * f64::from(online_cpus) * 100.0;
        (percent * 100.0).round() / 100.0
    } else {
        0.0
    };

    let memory = sample.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    // Page cache the kernel can drop is not use: cgroup v1 reports it as
    // total_inactive_file, v2 as inactive_file; a figure above the usage is ignored.
    let stat = |key: &str| {
        memory
            .and_then(|m| m.stats.as_ref())
            .and_then(|st| st.get(key).copied())
    };
    let memory_bytes = match (stat("total_inactive_file"), stat("inactive_file")) {
        (Some(cache), _) if cache < usage => usage - cache,
        (_, Some(cache)) if cache < usage => usage - cache,
        _ => usage,
    };

    let (network_rx_bytes, network_tx_bytes) =
        sample
            .networks
            .iter()
            .flatten()
            .fold((0u64, 0u64), |(rx, tx), (_, n)| {
                (
                    rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                    tx.saturating_add(n.tx_bytes.unwrap_or(0)),
                )
            });
    let (block_read_bytes, block_write_bytes) = sample
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref())
        .into_iter()
        .flatten()
        .fold((0u64, 0u64), |(read, write), entry| {
            let value = entry.value.unwrap_or(0);
            match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => (read.saturating_add(value), write),
                Some("write") => (read, write.saturating_add(value)),
                _ => (read, write),
            }
        });
    StatsSummary {
        cpu_percent,
        online_cpus,
        memory_bytes,
        memory_limit_bytes: memory.and_then(|m| m.limit).unwrap_or(0),
        network_rx_bytes,
        network_tx_bytes,
        block_read_bytes,
        block_write_bytes,
        pids: sample.pids_stats.as_ref().and_then(|p| p.current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(value: serde_json::Value) -> ContainerStatsResponse {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_first_sample_of_a_stream_has_no_cpu_baseline() {
        let first = sample(json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
        }));
        assert!(!has_cpu_baseline(&first));
        assert!(!has_cpu_baseline(&sample(json!({}))));
        let later = sample(json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
        }));
        assert!(has_cpu_baseline(&later));
    }

    #[test]
    fn memory_leaves_out_page_cache_as_the_docker_cli_does() {
        let memory = |stats: serde_json::Value| {
            summarize(&sample(
                json!({"memory_stats": {"usage": 5_000, "stats": stats}}),
            ))
            .memory_bytes
        };
        assert_eq!(memory(json!({"total_inactive_file": 1_000})), 4_000);
        assert_eq!(memory(json!({"inactive_file": 500})), 4_500);
        // A cache figure not below the usage is ignored, not subtracted to zero.
        assert_eq!(memory(json!({"inactive_file": 9_000})), 5_000);
        assert_eq!(
            memory(json!({"total_inactive_file": 9_000, "inactive_file": 1_000})),
            4_000
        );
    }

    #[test]
    fn an_empty_sample_sums_to_zero_with_one_cpu() {
        let s = summarize(&sample(json!({})));
        assert_eq!((s.cpu_percent, s.online_cpus, s.memory_bytes), (0.0, 1, 0));
        assert_eq!(s.pids, None);
    }

    #[test]
    fn call_errors_read_as_before() {
        let socket = Path::new("/run/docker.sock");
        let refused = |status_code| DockerError::DockerResponseServerError {
            status_code,
            message: " conflict \n".into(),
        };
        assert_eq!(
            EngineError::from_call(socket, refused(404), "stop", Some("web")).to_string(),
            "no such container: web; list them with containerList (data [\"all\"])"
        );
        assert_eq!(
            EngineError::from_call(socket, refused(409), "stop", Some("web")).to_string(),
            "cannot stop web: the Docker daemon said: conflict"
        );
        assert_eq!(
            EngineError::from_call(socket, refused(500), "list images", None).to_string(),
            "cannot list images: the Docker daemon said: conflict"
        );
        let stream = DockerError::DockerStreamError {
            error: "denied".into(),
        };
        assert_eq!(
            EngineError::from_call(socket, stream, "pull x", Some("web")).to_string(),
            "cannot pull x: the Docker daemon said: denied"
        );
        let gone = EngineError::from_call(
            socket,
            DockerError::SocketNotFoundError("/run/docker.sock".into()),
            "stop",
            Some("web"),
        )
        .to_string();
        assert!(
            gone.starts_with("cannot reach the Docker daemon at /run/docker.sock: ")
                && gone.ends_with(
                    "; start dockerd or point the node's Docker socket setting at the right path"
                ),
            "{gone}"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable() {
        let error = connect(Path::new("/no/such/docker.sock"), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(error, EngineError::Unreachable { .. }), "{error}");
    }
}
