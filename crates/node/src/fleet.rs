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
    /// When the node began to take the inventory, on its own clock: what finished
    /// before it is counted in it.
    #[serde(default)]
    at: Millis,
}

/// The registry entry for a hello from `from`, signed by `peer`. A hello whose body
/// cannot be read still counts as a sign of life. The inventory's `identity` is what the
/// seal proved (issuer, grants, expiry), never what the node says of itself.
pub(crate) fn record_from_hello(
    from: &str,
    message: &Message,
    now: Millis,
    peer: &bosun_trust::Peer,
) -> FleetRecord {
    let body: Option<HelloBody> = message
        .data
        .first()
        .and_then(|d| serde_json::from_str(d).ok());
    let mut inventory = body
        .as_ref()
        .map(|b| b.inventory.clone())
        .unwrap_or(serde_json::Value::Null);
    if let Some(map) = inventory.as_object_mut() {
        match peer {
            bosun_trust::Peer::Node(id) => {
                map.insert(
                    "identity".into(),
                    serde_json::json!({
                        "key": id.claims.key,
                        "issuer": id.claims.iss,
                        "grants": id.claims.allow,
                        "expires": id.claims.exp,
                    }),
                );
            }
            _ => {
                map.remove("identity");
            }
        }
    }
    FleetRecord {
        name: from.to_string(),
        last_seen: now,
        hello_interval_secs: body.as_ref().map(|b| b.interval_secs).unwrap_or(0),
        inventory,
        unverified: matches!(peer, bosun_trust::Peer::Open),
        hello_at: body
            .as_ref()
            .map(|b| b.at)
            .filter(|at| *at > 0)
            .or(message.created_at)
            .unwrap_or(0),
    }
}

/// One row of `bosun nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Taken out of placement (`nodeDrain`, DockerMod's `unregister`): nothing new is
    /// placed on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
    /// When the node made its last hello, on its own clock (0: unknown).
    #[serde(default)]
    pub hello_at: Millis,
}

impl FleetNode {
    /// Its labels as `key=value` pairs joined by `separator`, in key order.
    pub fn labels_text(&self, separator: &str) -> String {
        self.inventory["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(separator)
            })
            .unwrap_or_default()
    }
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
        drained: record.inventory["drained"].as_bool().unwrap_or(false),
        inventory: record.inventory,
        unverified: record.unverified,
        hello_at: record.hello_at,
    }
}

/// Say hello every `hello_interval_secs`, starting at once, and at once when asked
/// (`hello_now`, after a drain): durably to central, and on the fleet subject, where
/// every node keeps its own view of the fleet from them (so any node can place work
/// and list the fleet). Each hello lives for two intervals: a stale hello is worth
/// nothing.
pub(crate) async fn hello_loop(
    config: Arc<Config>,
    submitter: Submitter,
    methods: bosun_methods::Context,
    transport: Option<Arc<dyn bosun_bus::Transport>>,
    workloads: Option<bosun_supervise::Supervisor>,
    hello_now: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let central = config.central_name().map(str::to_string);
    let Some(period) = config.hello_interval() else {
        return;
    };
    if central.is_none() && transport.is_none() {
        return;
    }
    let fleet_subject = bosun_proto::wire::fleet_subject(&config.subject_prefix);
    // The hello and its delivery options speak whole seconds.
    let interval = period.as_secs();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hello_now.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = now_millis();
        let mut inventory =
            serde_json::to_value(bosun_methods::hello::inventory(&methods)).unwrap_or_default();
        if let Some(map) = inventory.as_object_mut() {
            // Bounded by its own timeout; a shutdown does not wait for it.
            let counts = tokio::select! {
                counts = bosun_methods::docker::container_counts(&methods) => counts,
                _ = shutdown.cancelled() => return,
            };
            if let Some(counts) = counts {
                map.insert("containers".into(), counts.running.into());
                map.insert("placedContainers".into(), counts.placed.into());
                map.insert("placedRecently".into(), counts.recent.into());
            }
            if let Some(workloads) = &workloads {
                let rows: Vec<serde_json::Value> = workloads
                    .list()
                    .into_iter()
                    .map(|w| {
                        serde_json::json!({
                            "name": w.name,
                            "state": w.state,
                            "restarts": w.restarts,
                            "healthy": w.healthy,
                        })
                    })
                    .collect();
                map.insert("workloads".into(), rows.into());
            }
            if let Ok(depths) = submitter.store().depths() {
                map.insert(
                    "queue".into(),
                    serde_json::json!({
                        "outbox": depths.outbox,
                        "inbox": depths.inbox_pending,
                    }),
                );
            }
            if config.insecure_open {
                map.insert(
                    "insecureOpen".into(),
                    serde_json::Value::String(
                        "accepts unsigned messages from anyone on the broker (insecure_open)"
                            .into(),
                    ),
                );
            }
        }
        let body = HelloBody {
            interval_secs: interval,
            inventory,
            at: now,
        };
        let hello = Message {
            to_node: Some(central.clone().unwrap_or_else(|| config.name.to_string())),
            method: "hello".into(),
            data: vec![serde_json::to_string(&body).unwrap_or_default()],
            ordered: Some(false),
            ttl: Some((interval * 2).min(bosun_proto::message::MAX_SECONDS)),
            ack_timeout: Some(interval.clamp(1, 10)),
            created_at: Some(now),
            ..Default::default()
        };
        if let Some(transport) = &transport {
            let announced = Message {
                id: Some(bosun_proto::new_id()),
                from_node: Some(config.name.to_string()),
                ..hello.clone()
            };
            let frame = bosun_proto::wire::encode(&bosun_proto::wire::Request {
                v: bosun_proto::wire::WIRE_VERSION,
                msg: announced,
            });
            if let Err(e) = transport
                .publish(fleet_subject.clone(), bytes::Bytes::from(frame))
                .await
            {
                tracing::debug!(error = %e, "cannot announce a hello on the fleet subject");
            }
        }
        if central.is_some()
            && let Err(e) = submitter.submit(vec![hello]).await
        {
            tracing::warn!(error = %e, "cannot queue a hello");
        }
    }
}

/// Listen to the hellos every node announces on the fleet subject and keep them in
/// `view`. A hello counts only from the node it names (its seal's identity), as on
/// every other way in; one whose seal fails, or that is not a hello, is dropped.
pub(crate) async fn listen_fleet(
    config: Arc<Config>,
    transport: Arc<dyn bosun_bus::Transport>,
    view: crate::handles::FleetView,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    let subject = bosun_proto::wire::fleet_subject(&config.subject_prefix);
    let mut subscription = match transport.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(subject, error = %e, "cannot listen to the fleet's hellos; placement and fleet lists see only central's registry");
            return;
        }
    };
    loop {
        let incoming = tokio::select! {
            next = subscription.next() => match next {
                Some(incoming) => incoming,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        if let Some(record) = announced_hello(config.name.as_str(), &incoming) {
            view.hear(record);
        }
    }
}

/// The registry entry an announced hello gives, when it is one and its seal proves the
/// node it names sent it.
fn announced_hello(own: &str, incoming: &bosun_bus::Incoming) -> Option<FleetRecord> {
    if let Some(refused) = &incoming.refused {
        tracing::debug!(reason = %refused, "announced hello refused");
        return None;
    }
    let request = bosun_proto::wire::decode_request(&incoming.payload).ok()?;
    let message = request.msg;
    if message.parsed_method().ok()? != bosun_proto::Method::Hello {
        return None;
    }
    let from = message.from_node.clone()?;
    bosun_proto::validate_node_name(&from).ok()?;
    let proven = match &incoming.peer {
        bosun_trust::Peer::Node(id) => id.name() == from,
        bosun_trust::Peer::Myself => from == own,
        bosun_trust::Peer::Unchecked | bosun_trust::Peer::Open => true,
    };
    if !proven {
        tracing::warn!(
            named = from,
            "an announced hello names another node than its signer; dropped"
        );
        return None;
    }
    Some(record_from_hello(
        &from,
        &message,
        now_millis(),
        &incoming.peer,
    ))
}

/// At central: append shipped event-stream lines under
/// `<results dir>/capture/<node>/<file>` (steward's result layout).
pub(crate) fn keep_shipped_capture(results: &Path, from: &str, data: &[String]) {
    let [file, text] = data else { return };
    if file.contains('/') || file.contains("..") || file.is_empty() {
        tracing::warn!(from, file, "shipped capture with a bad file name; dropped");
        return;
    }
    let path = results.join("capture").join(from).join(file);
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
            drained: self.drained,
            load: 0,
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
            hello_at: 0,
        };
        assert_eq!(liveness(&r, 15_000, 2, 5), Liveness::Alive);
        assert_eq!(liveness(&r, 25_000, 2, 5), Liveness::Suspect);
        assert_eq!(liveness(&r, 51_000, 2, 5), Liveness::Down);
    }
}
