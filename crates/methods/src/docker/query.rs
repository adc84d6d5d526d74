//! `containerInspect`, `containerList` and `containerStats`: reading, never changing.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use bosun_proto::Message;
use futures::StreamExt;
use serde_json::{Value, json};

use super::engine::{StatsSummary, summarize as summary_of};
use super::image::to_json;
use super::{DockerMethodError, arg, container_arg, failure};
use crate::Context;

/// `containerInspect`: the daemon's inspect JSON, pretty.
pub(super) async fn inspect(
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let id = container_arg(message)?;
    let details = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| failure(context, e, "inspect", Some(id)))?;
    to_json(&details)
}

/// `containerList`: running containers, or all with `data[0] = "all"`, optionally
/// filtered by `data[1] = "label=KEY=VALUE"` (or `label=KEY`; empty: none). Rows are
/// bosun's (`id`, `names`, …), or Docker's own list entries (`Id`, `Names`, `Image`,
/// `Command`, `Created`, `Ports`, `Labels`, `State`, `Status`, …) with
/// `data[2] = "docker"`, as DockerMod answered.
pub(super) async fn list(
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let all = match arg(message, 0) {
        None | Some("running") => false,
        Some("all") => true,
        Some(other) => {
            return Err(DockerMethodError::NotUnderstood {
                index: 0,
                given: other.to_string(),
                expected: "give \"all\" to include stopped containers, or \"running\"",
            });
        }
    };
    let mut filters = HashMap::new();
    if let Some(filter) = arg(message, 1) {
        match filter.strip_prefix("label=").filter(|l| !l.is_empty()) {
            Some(label) => {
                filters.insert("label".to_string(), vec![label.to_string()]);
            }
            None => {
                return Err(DockerMethodError::NotAFilter {
                    given: filter.to_string(),
                });
            }
        }
    }
    let native = match arg(message, 2) {
        None | Some("bosun") => false,
        Some("docker") => true,
        Some(other) => {
            return Err(DockerMethodError::NotUnderstood {
                index: 2,
                given: other.to_string(),
                expected: "give \"docker\" for Docker's own list entries, or \"bosun\"",
            });
        }
    };
    let options = ListContainersOptions {
        all,
        filters: (!filters.is_empty()).then_some(filters),
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| failure(context, e, "list containers", None))?;
    if native {
        return to_json(&containers);
    }
    let rows: Vec<Value> = containers
        .iter()
        .map(|c| {
            // Docker keeps names with a leading slash; callers use them without.
            let names: Vec<&str> = c
                .names
                .iter()
                .flatten()
                .map(|n| n.strip_prefix('/').unwrap_or(n))
                .collect();
            json!({
                "id": c.id,
                "names": names,
                "image": c.image,
                "state": c.state.map(|s| s.to_string()),
                "status": c.status,
                "labels": c.labels.clone().unwrap_or_default(),
                "node": context.node,
            })
        })
        .collect();
    to_json(&rows)
}

/// `containerStats`: one sample, summed up.
pub(super) async fn stats(
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, DockerMethodError> {
    let id = container_arg(message)?;
    // Not one-shot: the daemon then waits for a second reading, which the CPU share
    // needs.
    let options = StatsOptions {
        stream: false,
        one_shot: false,
    };
    let sample = docker
        .stats(id, Some(options))
        .next()
        .await
        .ok_or_else(|| DockerMethodError::NoStats {
            container: id.to_string(),
        })?
        .map_err(|e| failure(context, e, "read stats of", Some(id)))?;
    to_json(&summarize(id, &sample))
}

/// The figures `docker stats` shows, with the container's id and name and the time of
/// the sample.
pub(super) fn summarize(id: &str, sample: &ContainerStatsResponse) -> Value {
    let StatsSummary {
        cpu_percent,
        online_cpus,
        memory_bytes,
        memory_limit_bytes,
        network_rx_bytes,
        network_tx_bytes,
        block_read_bytes,
        block_write_bytes,
        pids,
    } = summary_of(sample);
    json!({
        "id": sample.id.clone().unwrap_or_else(|| id.to_string()),
        "name": sample.name.as_deref().map(|n| n.strip_prefix('/').unwrap_or(n)),
        "read": sample.read,
        "cpuPercent": cpu_percent,
        "onlineCpus": online_cpus,
        "memoryBytes": memory_bytes,
        "memoryLimitBytes": memory_limit_bytes,
        "networkRxBytes": network_rx_bytes,
        "networkTxBytes": network_tx_bytes,
        "blockReadBytes": block_read_bytes,
        "blockWriteBytes": block_write_bytes,
        "pids": pids,
    })
}
