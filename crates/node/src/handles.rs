//! The narrow handles the node's tasks share. Each task is given only the handles it
//! uses, so what a task can touch is written in its signature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bosun_proto::{Message, Millis};
use bosun_store::{FleetRecord, Store, StoreError};
use tokio::sync::{broadcast, mpsc};
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::errorlog::{ErrorEntry, ErrorLog, RefusalLimiter};
use crate::fleet::FleetNode;
use crate::outbox::OutboxCmd;
use crate::submit::Submitter;

/// Hands work to the outbox loop.
#[derive(Clone)]
pub(crate) struct OutboxHandle {
    commands: mpsc::UnboundedSender<OutboxCmd>,
    spilled: SpillFlag,
}

/// Set by the outbox loop while its memory is full and new entries wait on disk only:
/// then handing them over would only fill the channel, and the loop reads them from the
/// store in pages instead.
#[derive(Clone, Default)]
pub(crate) struct SpillFlag(Arc<std::sync::atomic::AtomicBool>);

impl SpillFlag {
    /// Is the outbox loop reading new entries from disk?
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Say whether the outbox loop reads new entries from disk. Cleared before the read
    /// that may reach the end of the outbox, so that an entry committed after that read
    /// is always handed over.
    pub fn set(&self, spilled: bool) {
        self.0.store(spilled, Ordering::SeqCst);
    }
}

impl OutboxHandle {
    /// A handle, the receiving end the outbox loop reads, and the loop's spill flag.
    pub fn channel() -> (OutboxHandle, mpsc::UnboundedReceiver<OutboxCmd>, SpillFlag) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let spilled = SpillFlag::default();
        (
            OutboxHandle {
                commands,
                spilled: spilled.clone(),
            },
            receiver,
            spilled,
        )
    }

    /// Deliver messages already durable in the outbox, with their outbox seqs. Only the
    /// store's writer calls this (`Store::on_queued`), right after each commit and in seq
    /// order, on its own thread: it must never block.
    pub fn deliver(&self, queued: Vec<(u64, Message)>) {
        if self.spilled.get() {
            // On disk already; the loop reads them when it has room.
            return;
        }
        // The loop only ends at shutdown; what it misses then is sent after a restart.
        let _ = self.commands.send(OutboxCmd::Deliver(queued));
    }

    /// The result of a sent message arrived: it was delivered, whatever its ACK did.
    pub fn settled(&self, id: String) {
        let _ = self.commands.send(OutboxCmd::Settled(id));
    }

    /// Ask the outbox loop to cancel `id`; false when the loop has ended (shutdown).
    pub fn cancel(
        &self,
        id: String,
        reply: tokio::sync::oneshot::Sender<crate::outbox::Cancelled>,
    ) -> bool {
        self.commands.send(OutboxCmd::Cancel(id, reply)).is_ok()
    }
}

/// The id of every sent message that reaches a final state, for waiters.
#[derive(Clone)]
pub(crate) struct FinishedIds(broadcast::Sender<String>);

impl FinishedIds {
    /// A broadcast that keeps up to `capacity` ids for slow waiters.
    pub fn new(capacity: usize) -> FinishedIds {
        FinishedIds(broadcast::channel(capacity).0)
    }

    /// Tell waiters that `id` reached a final state.
    pub fn announce(&self, id: &str) {
        // No waiter is fine: the state is in the store.
        let _ = self.0.send(id.to_string());
    }

    /// Hear every id announced from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

/// How many handlers run now; the outbox drains at shutdown until it is zero.
#[derive(Clone, Default)]
pub(crate) struct RunningCount(Arc<AtomicUsize>);

impl RunningCount {
    /// A handler starts.
    pub fn enter(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// A handler ended.
    pub fn leave(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// Handlers running now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// This node's view of the fleet: the durable registry (hellos sent to this node as
/// messages, at central) merged with the hellos every node announces on the fleet
/// subject (kept in memory), judged with the configured thresholds. It also remembers
/// the containers this node placed that the nodes' hellos may not count yet, and drains
/// it asked for that no hello has told yet, so that back-to-back placements never both
/// see the same stale figure.
#[derive(Clone)]
pub(crate) struct FleetView {
    store: Store,
    suspect_after: u64,
    down_after: u64,
    heard: Arc<Mutex<Heard>>,
}

/// Most nodes a view keeps announced hellos of.
const MAX_HEARD: usize = 100_000;

/// How long a placement is counted at most while no hello names it: as long as hellos
/// name recent placements.
const PLACED_FOR_MS: Millis = bosun_methods::docker::RECENT_PLACEMENT_SECS as Millis * 1000;

#[derive(Default)]
struct Heard {
    /// The last announced hello of each node.
    hellos: HashMap<String, FleetRecord>,
    /// Drains asked for by this node: drained or not, and when the node did it (its
    /// clock, the `nodeDrain` outcome's `finished_at`).
    drains: HashMap<String, (bool, Millis)>,
    /// Containers this node placed on each node: message id and when (this node's clock).
    placed: HashMap<String, Vec<(String, Millis)>>,
}

impl FleetView {
    /// A view over `store`'s registry with `config`'s thresholds.
    pub fn new(store: Store, config: &Config) -> FleetView {
        FleetView {
            store,
            suspect_after: config.suspect_after_missed,
            down_after: config.down_after_missed,
            heard: Arc::default(),
        }
    }

    /// Keep a hello announced on the fleet subject, unless an older one.
    pub fn hear(&self, record: FleetRecord) {
        let mut heard = self.heard.lock().expect("fleet view lock");
        if heard.hellos.len() >= MAX_HEARD && !heard.hellos.contains_key(&record.name) {
            return;
        }
        match heard.hellos.get(&record.name) {
            Some(old) if old.last_seen > record.last_seen => {}
            _ => {
                heard.hellos.insert(record.name.clone(), record);
            }
        }
    }

    /// Note that `node` was drained (or put back) at `at` on its own clock, until one of
    /// its hellos made after that tells it.
    pub fn drained(&self, node: &str, drained: bool, at: Millis) {
        let mut heard = self.heard.lock().expect("fleet view lock");
        heard.drains.insert(node.to_string(), (drained, at));
    }

    /// Note a container placed on `node` by message `id`, at `now`.
    pub fn placed(&self, node: &str, id: &str, now: Millis) {
        let mut heard = self.heard.lock().expect("fleet view lock");
        heard
            .placed
            .entry(node.to_string())
            .or_default()
            .push((id.to_string(), now));
    }

    /// Every node's latest record: the registry's or the announced one, whichever is
    /// newer, with the drains this node asked for that no hello has told yet.
    fn records(&self) -> Result<Vec<(FleetRecord, Option<bool>)>, StoreError> {
        let mut records: HashMap<String, FleetRecord> = self
            .store
            .fleet()?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();
        let mut heard = self.heard.lock().expect("fleet view lock");
        for (name, record) in &heard.hellos {
            match records.get(name) {
                Some(kept) if kept.last_seen >= record.last_seen => {}
                _ => {
                    records.insert(name.clone(), record.clone());
                }
            }
        }
        // A drain is told by the first hello the node made after it.
        heard.drains.retain(|name, (_, at)| {
            records
                .get(name)
                .is_none_or(|r| r.hello_at == 0 || r.hello_at <= *at)
        });
        let mut out: Vec<(FleetRecord, Option<bool>)> = records
            .into_values()
            .map(|r| {
                let hint = heard.drains.get(&r.name).map(|(d, _)| *d);
                (r, hint)
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    /// The fleet as rows, at `now`.
    pub fn at(&self, now: Millis) -> Result<Vec<FleetNode>, StoreError> {
        Ok(self
            .records()?
            .into_iter()
            .map(|(record, drained)| {
                let mut row = crate::fleet::row(record, now, self.suspect_after, self.down_after);
                if let Some(drained) = drained {
                    row.drained = drained;
                }
                row
            })
            .collect())
    }

    /// Each node's load for placement at `now`: the containers bosun placed there that
    /// its last hello counted, plus those this node placed that its last hello does not
    /// name yet (`placedRecently`). Placements that failed, that a hello names, or older
    /// than the hellos' memory of them, are forgotten.
    pub fn loads(&self, rows: &[FleetNode], now: Millis) -> HashMap<String, u64> {
        let mut loads: HashMap<String, u64> = rows
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.inventory["placedContainers"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let named: HashMap<&str, Vec<&str>> = rows
            .iter()
            .map(|r| {
                let ids = r.inventory["placedRecently"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                (r.name.as_str(), ids)
            })
            .collect();
        let mut heard = self.heard.lock().expect("fleet view lock");
        for (node, placed) in heard.placed.iter_mut() {
            let told = named.get(node.as_str());
            placed.retain(|(id, at)| {
                if now.saturating_sub(*at) > PLACED_FOR_MS
                    || told.is_some_and(|ids| ids.contains(&id.as_str()))
                {
                    return false;
                }
                match self.store.sent(id) {
                    Ok(Some(sent)) if sent.state.is_terminal() => sent
                        .outcome
                        .as_ref()
                        .is_some_and(|o| o.status == bosun_proto::Status::Done),
                    _ => true,
                }
            });
            *loads.entry(node.clone()).or_default() += placed.len() as u64;
        }
        heard.placed.retain(|_, placed| !placed.is_empty());
        loads
    }
}

/// Writes the error log and, unless this node is central, forwards each error to
/// central's error log too (as an `errorLog` message, durable like any other). Refusals
/// (kind `rejected`) are rate-limited per sender, in the file and towards central alike
/// ([`RefusalLimiter`]).
#[derive(Clone)]
pub(crate) struct ErrorReporter {
    config: Arc<Config>,
    submitter: Submitter,
    tracker: TaskTracker,
    log: Arc<ErrorLog>,
    refusals: Arc<RefusalLimiter>,
}

impl ErrorReporter {
    /// A reporter that writes `config`'s error log and forwards through `submitter`, on
    /// `tracker`.
    pub fn new(config: Arc<Config>, submitter: Submitter, tracker: TaskTracker) -> Self {
        let log = ErrorLog::open(
            config.error_log_path(),
            config.error_log_max_bytes,
            config.error_log_keep,
        );
        ErrorReporter {
            config,
            submitter,
            tracker,
            log: Arc::new(log),
            refusals: Arc::default(),
        }
    }

    /// Log an error locally and forward it to central; a refusal only while its sender
    /// is within its limit, with one summary line for those left out.
    pub fn report(&self, entry: &ErrorEntry<'_>) {
        for (sender, count) in self.refusals.expired(entry.at) {
            self.summarise(entry, &sender, count);
        }
        if entry.kind == "rejected" {
            let sender = entry.to_node.unwrap_or("unknown");
            let admission = self.refusals.admit(sender, entry.at);
            if admission.suppressed_before > 0 {
                self.summarise(entry, sender, admission.suppressed_before);
            }
            if !admission.write {
                return;
            }
        }
        self.write(entry);
    }

    /// Keep error reports another node sent, in this node's error log.
    pub fn append_remote(&self, from: &str, data: &[String]) {
        self.log.append_remote(from, data);
    }

    fn summarise(&self, like: &ErrorEntry<'_>, sender: &str, count: u64) {
        let reason = crate::errorlog::summary(sender, count);
        self.write(&ErrorEntry {
            at: like.at,
            node: like.node,
            kind: "rejected",
            message_id: None,
            to_node: Some(sender),
            method: None,
            reason: &reason,
        });
    }

    fn write(&self, entry: &ErrorEntry<'_>) {
        self.log.append(entry);
        let Some(central) = self.config.central_name() else {
            return;
        };
        if central == self.config.name || entry.method == Some("errorLog") {
            return;
        }
        let line = serde_json::to_string(entry).unwrap_or_default();
        let report = Message {
            to_node: Some(central.to_string()),
            method: "errorLog".into(),
            data: vec![line],
            ordered: Some(false),
            ttl: Some(24 * 3600),
            ..Default::default()
        };
        let submitter = self.submitter.clone();
        self.tracker.spawn(async move {
            if let Err(e) = submitter.submit(vec![report]).await {
                tracing::warn!(error = %e, "cannot forward an error to central");
            }
        });
    }
}
