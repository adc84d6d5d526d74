//! Prometheus metrics of a node, in its own registry, encoded for the `/metrics`
//! endpoint (served by the ingress crate).
//!
//! Counters are moved by [`crate::events`], which writes the matching log line at the
//! same time; gauges are set from periodic readings (depths, fleet).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bosun_proto::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodState {
    method: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

struct Inner {
    registry: Registry,
    messages: Family<MethodState, Counter>,
    retries: Family<MethodLabel, Counter>,
    ack_timeouts: Family<MethodLabel, Counter>,
    latency: Histogram,
    outbox: Gauge,
    inbox_pending: Gauge,
    fleet: Family<StatusLabel, Gauge>,
    last_seen: Family<NodeLabel, Gauge<f64, AtomicU64>>,
    store_ok: Gauge,
    store_free: Gauge,
    refused: Family<ReasonLabel, Counter>,
    frames: Family<KindLabel, Counter>,
    batched: Counter,
    commits: Arc<StoreCommits>,
}

/// The store's commit counts, read at each scrape from the store the node gave.
#[derive(Default)]
struct StoreCommits(std::sync::OnceLock<bosun_store::Store>);

impl std::fmt::Debug for StoreCommits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCommits")
    }
}

impl prometheus_client::collector::Collector for StoreCommits {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let Some(store) = self.0.get() else {
            return Ok(());
        };
        let commits = store.commits();
        let mut family = encoder.encode_descriptor(
            "bosun_store_commits",
            "Commits of the node's database since it started, by whether they waited for \
             the disk (durable: fsync) or not (progress that can be rebuilt)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (durable, n) in [("true", commits.durable), ("false", commits.lazy)] {
            let labels = [("durable", durable)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A node's metrics; clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The canonical method name for a label: steward spellings are folded into bosun's, and
/// anything unknown becomes `unknown`, so that a peer cannot grow the label set at will.
fn method_label(method: &str) -> String {
    Method::parse(method)
        .map(|p| p.method.name())
        .unwrap_or("unknown")
        .to_string()
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Fresh metrics, all at zero, in a registry of their own.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let messages = Family::<MethodState, Counter>::default();
        registry.register(
            "bosun_messages",
            "Messages that reached a state, by method and state",
            messages.clone(),
        );
        let retries = Family::<MethodLabel, Counter>::default();
        registry.register(
            "bosun_retries",
            "Messages sent again, by method",
            retries.clone(),
        );
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "bosun_refused",
            "Arrivals refused before anything ran: by reason (unsigned, untrusted_issuer, \
             signature, clock, replay, sender, grants, policy, …)",
            refused.clone(),
        );
        let ack_timeouts = Family::<MethodLabel, Counter>::default();
        registry.register(
            "bosun_ack_timeouts",
            "Sends that got no ACK in time, by method",
            ack_timeouts.clone(),
        );
        // 1 ms to about 65 s: from a ping on a quiet LAN to a command near its timeout.
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "bosun_delivery_latency",
            "Time from submit to the result arriving back at the sender",
            Unit::Seconds,
            latency.clone(),
        );
        let outbox = Gauge::default();
        registry.register(
            "bosun_outbox_depth",
            "Messages in the outbox, not yet at a final state",
            outbox.clone(),
        );
        let inbox_pending = Gauge::default();
        registry.register(
            "bosun_inbox_pending",
            "Received messages waiting to run or running",
            inbox_pending.clone(),
        );
        let fleet = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "bosun_fleet_nodes",
            "Known nodes, by status (alive, suspect, down)",
            fleet.clone(),
        );
        let last_seen = Family::<NodeLabel, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "bosun_node_last_seen",
            "Seconds since the node's last hello",
            Unit::Seconds,
            last_seen.clone(),
        );
        let store_ok = Gauge::default();
        registry.register(
            "bosun_store_ok",
            "1 while the store takes writes, 0 while it refuses them (disk full, I/O error)",
            store_ok.clone(),
        );
        let store_free = Gauge::default();
        registry.register_with_unit(
            "bosun_store_free",
            "Free space on the filesystem of the node's database",
            Unit::Bytes,
            store_free.clone(),
        );
        let frames = Family::<KindLabel, Counter>::default();
        registry.register(
            "bosun_request_frames",
            "Request frames put on the wire, by kind: single (one message) or batch \
             (several messages to one node)",
            frames.clone(),
        );
        let batched = Counter::default();
        registry.register(
            "bosun_batched_requests",
            "Messages sent inside batches",
            batched.clone(),
        );
        let commits = Arc::new(StoreCommits::default());
        registry.register_collector(Box::new(commits.clone()));
        Metrics {
            inner: Arc::new(Inner {
                commits,
                frames,
                batched,
                store_ok,
                store_free,
                refused,
                registry,
                messages,
                retries,
                ack_timeouts,
                latency,
                outbox,
                inbox_pending,
                fleet,
                last_seen,
            }),
        }
    }

    /// Count a request frame put on the wire carrying `messages` messages.
    pub fn frame_sent(&self, messages: usize) {
        let kind = if messages > 1 { "batch" } else { "single" };
        self.inner.frames.get_or_create(&KindLabel { kind }).inc();
        if messages > 1 {
            self.inner.batched.inc_by(messages as u64);
        }
    }

    /// Count an arrival refused for `reason` (a short fixed label).
    pub fn refused(&self, reason: &'static str) {
        self.inner
            .refused
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Count a message reaching `state`.
    pub fn message_state(&self, method: &str, state: &str) {
        self.inner
            .messages
            .get_or_create(&MethodState {
                method: method_label(method),
                state: state.to_string(),
            })
            .inc();
    }

    /// Count a resend.
    pub fn retry(&self, method: &str) {
        self.inner
            .retries
            .get_or_create(&MethodLabel {
                method: method_label(method),
            })
            .inc();
    }

    /// Count a send whose ACK did not come in time.
    pub fn ack_timeout(&self, method: &str) {
        self.inner
            .ack_timeouts
            .get_or_create(&MethodLabel {
                method: method_label(method),
            })
            .inc();
    }

    /// Record the time from submit to result, in seconds. Negative values (a clock step)
    /// and non-finite ones are dropped rather than skewing the histogram.
    pub fn observe_latency(&self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.inner.latency.observe(seconds);
        }
    }

    /// Set the outbox depth and the number of inbox messages waiting or running.
    pub fn set_depths(&self, outbox: u64, inbox_pending: u64) {
        self.inner.outbox.set(gauge_value(outbox));
        self.inner.inbox_pending.set(gauge_value(inbox_pending));
    }

    /// Set how many known nodes are alive, suspect and down.
    pub fn set_fleet(&self, alive: u64, suspect: u64, down: u64) {
        for (status, n) in [("alive", alive), ("suspect", suspect), ("down", down)] {
            self.inner
                .fleet
                .get_or_create(&StatusLabel {
                    status: status.to_string(),
                })
                .set(gauge_value(n));
        }
    }

    /// Count the commits of `store` (from now on, at every scrape).
    pub fn watch_store(&self, store: &bosun_store::Store) {
        let _ = self.inner.commits.0.set(store.clone());
    }

    /// Set whether the store takes writes, and the free space beside it.
    pub fn set_store(&self, ok: bool, free_bytes: Option<u64>) {
        self.inner.store_ok.set(i64::from(ok));
        if let Some(free) = free_bytes {
            self.inner.store_free.set(gauge_value(free));
        }
    }

    /// Set the seconds since `node` last said hello.
    pub fn set_last_seen(&self, node: &str, seconds_ago: f64) {
        self.inner
            .last_seen
            .get_or_create(&NodeLabel {
                node: node.to_string(),
            })
            .set(seconds_ago);
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            // Only a failing fmt::Write can fail, and a String does not.
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The value of the sample line that starts with `series` (name and labels), if any.
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
    }

    #[test]
    fn counters_and_gauges_appear_with_their_labels() {
        let metrics = Metrics::new();
        let other = metrics.clone();
        metrics.message_state("ping", "done");
        other.message_state("REQPing", "done");
        metrics.message_state("cliCommand", "failed");
        metrics.message_state("nonsense", "failed");
        metrics.retry("REQCliCommand");
        metrics.ack_timeout("cliCommand");
        metrics.ack_timeout("cliCommand");
        metrics.observe_latency(0.003);
        metrics.observe_latency(-1.0);
        metrics.observe_latency(f64::NAN);
        metrics.set_depths(7, 2);
        metrics.set_fleet(3, 1, 0);
        metrics.set_last_seen("ship1", 4.5);
        let text = metrics.encode();

        let want = [
            (r#"bosun_messages_total{method="ping",state="done"}"#, 2.0),
            (
                r#"bosun_messages_total{method="cliCommand",state="failed"}"#,
                1.0,
            ),
            (
                r#"bosun_messages_total{method="unknown",state="failed"}"#,
                1.0,
            ),
            (r#"bosun_retries_total{method="cliCommand"}"#, 1.0),
            (r#"bosun_ack_timeouts_total{method="cliCommand"}"#, 2.0),
            ("bosun_delivery_latency_seconds_count", 1.0),
            (r#"bosun_delivery_latency_seconds_bucket{le="0.001"}"#, 0.0),
            (r#"bosun_delivery_latency_seconds_bucket{le="0.004"}"#, 1.0),
            ("bosun_outbox_depth", 7.0),
            ("bosun_inbox_pending", 2.0),
            (r#"bosun_fleet_nodes{status="alive"}"#, 3.0),
            (r#"bosun_fleet_nodes{status="suspect"}"#, 1.0),
            (r#"bosun_fleet_nodes{status="down"}"#, 0.0),
            (r#"bosun_node_last_seen_seconds{node="ship1"}"#, 4.5),
        ];
        for (series, value) in want {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE bosun_delivery_latency_seconds histogram"));
        assert!(text.trim_end().ends_with("# EOF"));

        metrics.set_depths(0, 0);
        assert_eq!(sample(&metrics.encode(), "bosun_outbox_depth"), Some(0.0));
    }

    #[test]
    fn registries_are_separate() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.retry("ping");
        assert_eq!(
            sample(&a.encode(), r#"bosun_retries_total{method="ping"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&b.encode(), r#"bosun_retries_total{method="ping"}"#),
            None
        );
    }
}
