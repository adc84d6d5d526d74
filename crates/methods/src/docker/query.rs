//! `containerInspect`, `containerList` and `containerStats`: reading, never changing.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use bosun_proto::Message;
use futures::StreamExt;
use serde_json::{Value, json};

use super::image::to_json;
use super::{arg, container_arg, failure};
use crate::Context;

/// `containerInspect`: the daemon's inspect JSON, pretty.
pub(super) async fn inspect(
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, String> {
    let id = container_arg(message)?;
    let details = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| failure(context, &e, "inspect", Some(id)))?;
    to_json(&details)
}

/// `containerList`: running containers, or all with `data[0] = "all"`, optionally
/// filtered by `data[1] = "label=KEY=VALUE"` (or `label=KEY`).
pub(super) async fn list(
    docker: &Docker,
    message: &Message,
    context: &Context,
) -> Result<String, String> {
    let all = match arg(message, 0) {
        None | Some("running") => false,
        Some("all") => true,
        Some(other) => {
            return Err(format!(
                "data[0] {other:?} is not understood: give \"all\" to include stopped \
                 containers, or \"running\""
            ));
        }
    };
    let mut filters = HashMap::new();
    if let Some(filter) = arg(message, 1) {
        match filter.strip_prefix("label=").filter(|l| !l.is_empty()) {
            Some(label) => {
                filters.insert("label".to_string(), vec![label.to_string()]);
            }
            None => {
                return Err(format!(
                    "data[1] {filter:?} is not a filter: give label=KEY=VALUE or label=KEY"
                ));
            }
        }
    }
    let options = ListContainersOptions {
        all,
        filters: (!filters.is_empty()).then_some(filters),
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| failure(context, &e, "list containers", None))?;
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
) -> Result<String, String> {
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
        .ok_or_else(|| format!("the Docker daemon sent no stats for {id}"))?
        .map_err(|e| failure(context, &e, "read stats of", Some(id)))?;
    to_json(&summarize(id, &sample))
}

/// The figures `docker stats` shows, computed the same way.
pub(super) fn summarize(id: &str, s: &ContainerStatsResponse) -> Value {
    let cpu = s.cpu_stats.as_ref();
    let precpu = s.precpu_stats.as_ref();
    let total = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let system = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.system_cpu_usage).unwrap_or(0)
    };
    let online = cpu
        .and_then(|c| c.online_cpus)
        .filter(|n| *n > 0)
        .or_else(|| {
            cpu.and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|p| p.len() as u32)
        })
        .unwrap_or(1);
    let cpu_delta = total(cpu).saturating_sub(total(precpu));
    let system_delta = system(cpu).saturating_sub(system(precpu));
    let cpu_percent = if system_delta > 0 {
        cpu_delta as f64 / system_delta as f64 * f64::from(online) * 100.0
    } else {
        0.0
    };

    let memory = s.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    // Page cache the kernel can drop is not counted, as in `docker stats` (cgroup v1
    // reports it as total_inactive_file, v2 as inactive_file).
    let inactive = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("total_inactive_file")
                .or_else(|| st.get("inactive_file"))
                .copied()
        })
        .unwrap_or(0);
    let memory_bytes = usage.saturating_sub(inactive);
    let memory_limit = memory.and_then(|m| m.limit).unwrap_or(0);

    let (rx, tx) = s
        .networks
        .iter()
        .flatten()
        .fold((0u64, 0u64), |(rx, tx), (_, n)| {
            (
                rx.saturating_add(n.rx_bytes.unwrap_or(0)),
                tx.saturating_add(n.tx_bytes.unwrap_or(0)),
            )
        });
    let (read, write) = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref())
        .into_iter()
        .flatten()
        .fold((0u64, 0u64), |(r, w), e| {
            let v = e.value.unwrap_or(0);
            match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => (r.saturating_add(v), w),
                Some("write") => (r, w.saturating_add(v)),
                _ => (r, w),
            }
        });
    json!({
        "id": s.id.clone().unwrap_or_else(|| id.to_string()),
        "name": s.name.as_deref().map(|n| n.strip_prefix('/').unwrap_or(n)),
        "read": s.read,
        "cpuPercent": (cpu_percent * 100.0).round() / 100.0,
        "onlineCpus": online,
        "memoryBytes": memory_bytes,
        "memoryLimitBytes": memory_limit,
        "networkRxBytes": rx,
        "networkTxBytes": tx,
        "blockReadBytes": read,
        "blockWriteBytes": write,
        "pids": s.pids_stats.as_ref().and_then(|p| p.current),
    })
}
