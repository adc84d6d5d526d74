//! `hello`: this host's inventory, sent to central with each heartbeat.
//!
//! Collecting it must stay cheap (it runs on every heartbeat): it reads a few files
//! under `/proc`, calls `uname` and `statvfs`, and starts no process. Anything it cannot
//! read is reported as zero or empty rather than failing the heartbeat.

use std::collections::BTreeMap;

use bosun_proto::{Message, Outcome};
use serde::{Deserialize, Serialize};

use crate::{Context, done, failed, host, now_millis};

/// What a node tells central about itself.
///
/// Fields a sender leaves out read as zero or empty, so nodes of different versions can
/// report to the same central.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Inventory {
    /// bosun's version.
    pub version: String,
    /// The host's name.
    pub hostname: String,
    /// The operating system, e.g. `linux`.
    pub os: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU architecture, e.g. `x86_64`.
    pub arch: String,
    /// Seconds since the host booted.
    pub uptime_secs: u64,
    /// CPUs this process may use.
    pub cpus: u64,
    /// Load average over 1 minute.
    pub load1: f64,
    /// Load average over 5 minutes.
    pub load5: f64,
    /// Load average over 15 minutes.
    pub load15: f64,
    /// Physical memory, in bytes.
    pub mem_total_bytes: u64,
    /// Memory available for new work without swapping, in bytes.
    pub mem_available_bytes: u64,
    /// Size of the filesystem holding the node's data folder, in bytes.
    pub disk_total_bytes: u64,
    /// Space on that filesystem available to the node, in bytes.
    pub disk_free_bytes: u64,
    /// The node's labels.
    pub labels: BTreeMap<String, String>,
    /// Running containers, when the Docker engine answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<u64>,
    /// Containers bosun placed here that still exist and are not stopped (created,
    /// running, paused, restarting): the load placement spreads by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placed_containers: Option<u64>,
    /// Taken out of placement (`nodeDrain`, DockerMod's `unregister`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
}

/// The file whose presence takes a node out of placement: `<data dir>/drained`.
pub fn drain_file(context: &Context) -> std::path::PathBuf {
    context.data_dir.join("drained")
}

/// `nodeDrain`: `["on"]` takes this node out of placement (containers already here keep
/// running), `["off"]` puts it back. Kept as a file in the data dir, so it outlasts
/// restarts, and told in every hello.
pub fn drain(message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    let path = drain_file(context);
    let result = match message.data.first().map(|s| s.trim()) {
        Some("on") => std::fs::write(
            &path,
            format!(
                "taken out of placement by {} (message {})\n",
                message.from_node.as_deref().unwrap_or("?"),
                message.id()
            ),
        )
        .map(|()| format!("{} is drained: nothing new is placed here\n", context.node)),
        Some("off") => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(format!("{} takes placed work again\n", context.node)),
        },
        other => {
            return failed(
                context,
                started,
                format!(
                    "nodeDrain takes [\"on\"] (take this node out of placement) or [\"off\"] (put it back), not {:?}",
                    other.unwrap_or("")
                ),
            );
        }
    };
    match result {
        Ok(text) => done(context, started, text),
        Err(e) => failed(
            context,
            started,
            format!("cannot write {}: {e}", path.display()),
        ),
    }
}

/// Collect this host's inventory.
pub fn inventory(context: &Context) -> Inventory {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let load = host::parse_loadavg(&host::read_proc("/proc/loadavg")).unwrap_or_default();
    let memory = host::parse_meminfo(&host::read_proc("/proc/meminfo")).unwrap_or_default();
    let (disk_total_bytes, disk_free_bytes) = disk(&context.data_dir);
    Inventory {
        version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: host::hostname(),
        os: std::env::consts::OS.to_string(),
        kernel,
        arch: std::env::consts::ARCH.to_string(),
        uptime_secs: host::parse_uptime(&host::read_proc("/proc/uptime")).unwrap_or(0),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        load1: load.one,
        load5: load.five,
        load15: load.fifteen,
        mem_total_bytes: memory.total_bytes,
        mem_available_bytes: memory.available_bytes,
        disk_total_bytes,
        disk_free_bytes,
        labels: context.labels.clone(),
        containers: None,
        placed_containers: None,
        drained: drain_file(context).exists(),
    }
}

/// Answer with this host's inventory as pretty JSON.
pub async fn run(_message: &Message, context: &Context) -> Outcome {
    let started = now_millis();
    match serde_json::to_string_pretty(&inventory(context)) {
        Ok(json) => done(context, started, json),
        Err(e) => failed(
            context,
            started,
            format!("cannot encode the inventory: {e}"),
        ),
    }
}

/// Size and space available to unprivileged users of the filesystem holding `dir`.
// The statvfs field types differ by platform (u32 on some 32-bit targets).
#[allow(clippy::unnecessary_cast)]
fn disk(dir: &std::path::Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            // Block counts are in units of the fragment size (statvfs(3)).
            let unit = s.fragment_size() as u64;
            (
                (s.blocks() as u64).saturating_mul(unit),
                (s.blocks_available() as u64).saturating_mul(unit),
            )
        }
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_proto::Status;

    fn context() -> Context {
        let mut ctx = crate::test_context("n1", Default::default());
        ctx.labels.insert("site".into(), "north".into());
        ctx
    }

    #[test]
    fn values_are_plausible() {
        let inv = inventory(&context());
        assert_eq!(inv.version, env!("CARGO_PKG_VERSION"));
        assert!(!inv.hostname.is_empty());
        assert_eq!(inv.os, std::env::consts::OS);
        assert!(!inv.kernel.is_empty());
        assert!(!inv.arch.is_empty());
        assert!(inv.uptime_secs > 0);
        assert!(inv.cpus >= 1);
        assert!(inv.load1 >= 0.0 && inv.load5 >= 0.0 && inv.load15 >= 0.0);
        assert!(inv.mem_available_bytes > 0);
        assert!(inv.mem_total_bytes > inv.mem_available_bytes);
        assert!(inv.disk_total_bytes > 0);
        assert!(inv.disk_total_bytes >= inv.disk_free_bytes);
        assert_eq!(inv.labels.get("site").map(String::as_str), Some("north"));
        assert_eq!(inv.containers, None);
        assert!(!inv.drained);
    }

    #[test]
    fn json_uses_camel_case_names_and_round_trips() {
        // Exactly representable loads, so the round trip does not hinge on float parsing.
        let inv = Inventory {
            load1: 0.5,
            load5: 0.25,
            load15: 0.125,
            ..inventory(&context())
        };
        let value = serde_json::to_value(&inv).unwrap();
        let object = value.as_object().unwrap();
        for key in [
            "version",
            "hostname",
            "os",
            "kernel",
            "arch",
            "uptimeSecs",
            "cpus",
            "load1",
            "load5",
            "load15",
            "memTotalBytes",
            "memAvailableBytes",
            "diskTotalBytes",
            "diskFreeBytes",
            "labels",
        ] {
            assert!(object.contains_key(key), "missing {key}: {value}");
        }
        assert!(!object.contains_key("containers"), "None is left out");
        assert!(!object.keys().any(|k| k.contains('_')), "{value}");
        let back: Inventory = serde_json::from_value(value).unwrap();
        assert_eq!(back, inv);
        let with = Inventory {
            containers: Some(3),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&with).unwrap()["containers"], 3);
    }

    #[test]
    fn an_older_inventory_without_new_fields_parses() {
        let inv: Inventory = serde_json::from_str(r#"{"version":"0.0.9"}"#).unwrap();
        assert_eq!(inv.version, "0.0.9");
        assert_eq!(inv.mem_total_bytes, 0);
    }

    #[test]
    fn a_missing_data_dir_gives_zero_disk() {
        let mut ctx = context();
        ctx.data_dir = "/no/such/dir/for/bosun".into();
        let inv = inventory(&ctx);
        assert_eq!((inv.disk_total_bytes, inv.disk_free_bytes), (0, 0));
    }

    #[tokio::test]
    async fn run_answers_with_the_inventory_as_json() {
        let ctx = context();
        let o = run(&Message::default(), &ctx).await;
        assert_eq!(o.status, Status::Done);
        let inv: Inventory = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(inv.labels, ctx.labels);
        assert!(o.stdout.contains("\n  \"memTotalBytes\""), "pretty JSON");
    }
}
