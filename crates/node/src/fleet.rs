//! The fleet registry (kept by any node that receives hellos, normally central) and the
//! hello loop every node runs towards central.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use bosun_core::Liveness;
use bosun_proto::{Message, Millis};
use bosun_store::FleetRecord;
use serde::{Deserialize, Serialize};

use bosun_capture::Capture;
use bosun_store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::node::now_millis;
use crate::submit::Submitter;

/// What a hello carries in `data[0]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HelloBody {
    interval_secs: u64,
    inventory: serde_json::Value,
}

/// The registry entry for a hello from `from`. A hello whose body cannot be read still
/// counts as a sign of life.
pub(crate) fn record_from_hello(
    from: &str,
    message: &Message,
    now: Millis,
    unverified: bool,
) -> FleetRecord {
    let body: Option<HelloBody> = message
        .data
        .first()
        .and_then(|d| serde_json::from_str(d).ok());
    FleetRecord {
        name: from.to_string(),
        last_seen: now,
        hello_interval_secs: body.as_ref().map(|b| b.interval_secs).unwrap_or(0),
        inventory: body.map(|b| b.inventory).unwrap_or(serde_json::Value::Null),
        unverified,
    }
}

/// One row of `bosun nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetNode {
    /// The node.
    pub name: String,
    /// Alive, suspect or down.
    pub status: Liveness,
    /// When its last hello arrived.
    pub last_seen: Millis,
    /// Seconds since then.
    pub seconds_ago: f64,
    /// Its hello interval.
    pub hello_interval_secs: u64,
    /// Its last inventory.
    pub inventory: serde_json::Value,
    /// Its hellos are not signed by an identity (`insecure_open`): nothing is placed on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unverified: bool,
}

/// Judge a registry entry at `now`.
pub fn liveness(
    record: &FleetRecord,
    now: Millis,
    suspect_after: u64,
    down_after: u64,
) -> Liveness {
    bosun_core::liveness::liveness(
        record.last_seen,
        record.hello_interval_secs,
        now,
        suspect_after,
        down_after,
    )
}

/// One registry entry as a row, judged at `now`.
pub(crate) fn row(
    record: FleetRecord,
    now: Millis,
    suspect_after: u64,
    down_after: u64,
) -> FleetNode {
    FleetNode {
        status: liveness(&record, now, suspect_after, down_after),
        seconds_ago: now.saturating_sub(record.last_seen) as f64 / 1000.0,
        name: record.name,
        last_seen: record.last_seen,
        hello_interval_secs: record.hello_interval_secs,
        inventory: record.inventory,
        unverified: record.unverified,
    }
}

/// Send a hello to central every `hello_interval_secs`, starting at once. Each hello
/// lives for two intervals: a stale hello is worth nothing.
pub(crate) async fn hello_loop(
    config: Arc<Config>,
    submitter: Submitter,
    methods: bosun_methods::Context,
    shutdown: CancellationToken,
) {
    let (Some(central), Some(period)) = (
        config.central_name().map(str::to_string),
        config.hello_interval(),
    ) else {
        return;
    };
    // The hello and its delivery options speak whole seconds.
    let interval = period.as_secs();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let mut inventory =
            serde_json::to_value(bosun_methods::hello::inventory(&methods)).unwrap_or_default();
        if config.insecure_open
            && let Some(map) = inventory.as_object_mut()
        {
            map.insert(
                "insecureOpen".into(),
                serde_json::Value::String(
                    "accepts unsigned messages from anyone on the broker (insecure_open)".into(),
                ),
            );
        }
        let body = HelloBody {
            interval_secs: interval,
            inventory,
        };
        let hello = Message {
            to_node: Some(central.clone()),
            method: "hello".into(),
            data: vec![serde_json::to_string(&body).unwrap_or_default()],
            ordered: Some(false),
            ttl: Some((interval * 2).min(bosun_proto::message::MAX_SECONDS)),
            ack_timeout: Some(interval.clamp(1, 10)),
            ..Default::default()
        };
        if let Err(e) = submitter.submit(vec![hello]).await {
            tracing::warn!(error = %e, "cannot queue a hello");
        }
    }
}

/// At central: append shipped event-stream lines under
/// `<results dir>/<node>/capture/<file>`.
pub(crate) fn keep_shipped_capture(results: &Path, from: &str, data: &[String]) {
    let [file, text] = data else { return };
    if file.contains('/') || file.contains("..") || file.is_empty() {
        tracing::warn!(from, file, "shipped capture with a bad file name; dropped");
        return;
    }
    let path = results.join(from).join("capture").join(file);
    let written = path
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|_| {
            use std::io::Write;
            crate::files::open_private_append(&path)?.write_all(text.as_bytes())
        });
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot keep shipped capture");
    }
}

/// Ship new lines of this node's event stream to central every 5 s, in order (one
/// ordered stream of durable messages), when `capture_ship` is on.
pub(crate) async fn ship_capture(
    config: Arc<Config>,
    submitter: Submitter,
    capture: Capture,
    shutdown: CancellationToken,
) {
    let Some(central) = config.central_name().map(str::to_string) else {
        return;
    };
    if !config.capture_ship || central == config.name {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let (mut file, mut offset) = (capture.current_file(), 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now_file = capture.current_file();
        if now_file != file {
            (file, offset) = (now_file, 0);
        }
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        // Whole lines only; the rest waits for the next round.
        let end = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0) as u64;
        if end <= offset {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes[offset as usize..end as usize]).into_owned();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ship = Message {
            to_node: Some(central.clone()),
            method: "captureShip".into(),
            data: vec![name, text],
            ordered: Some(true),
            // As long as finished messages are kept here: central's record of the id
            // (refusing resends) can then go once that much has passed.
            ttl: Some(
                config
                    .retention()
                    .as_secs()
                    .clamp(1, bosun_proto::message::MAX_SECONDS),
            ),
            ..Default::default()
        };
        match submitter.submit(vec![ship]).await {
            Ok(_) => offset = end,
            Err(e) => tracing::warn!(error = %e, "cannot ship the event stream"),
        }
    }
}

/// Prune finished messages older than the retention, at start and then hourly, and
/// forget received ids whose time has passed. The store does it in small batches found
/// outside its writer, so deliveries go on meanwhile; a shutdown stops it between two
/// batches.
pub(crate) async fn prune_loop(config: Arc<Config>, store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let keep_ms = Millis::try_from(config.retention().as_millis()).unwrap_or(Millis::MAX);
        let now = now_millis();
        let go_on = || !shutdown.is_cancelled();
        match store.prune(now.saturating_sub(keep_ms), now, go_on).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "pruned finished messages past retention"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}

impl FleetNode {
    /// This node as placement sees it: labels and free memory from its inventory.
    pub fn candidate(&self) -> bosun_core::Candidate {
        let labels = self.inventory["labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        bosun_core::Candidate {
            name: self.name.clone(),
            liveness: self.status,
            labels,
            free_memory_mb: self.inventory["memAvailableBytes"].as_u64().unwrap_or(0)
                / (1024 * 1024),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_hellos_make_a_node_suspect_then_down() {
        let r = FleetRecord {
            name: "a".into(),
            last_seen: 0,
            hello_interval_secs: 10,
            inventory: serde_json::Value::Null,
            unverified: false,
        };
        assert_eq!(liveness(&r, 15_000, 2, 5), Liveness::Alive);
        assert_eq!(liveness(&r, 25_000, 2, 5), Liveness::Suspect);
        assert_eq!(liveness(&r, 51_000, 2, 5), Liveness::Down);
    }
}
