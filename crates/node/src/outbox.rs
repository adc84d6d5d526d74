//! The sender loop: delivers the outbox, resends with backoff, gives up on ttl or
//! retries, and asks destinations about messages whose fate it does not know.
//!
//! Ordered messages to one (destination, method) go one at a time: the next is sent only
//! when the previous one is ACKed, refused, or settled for good. That keeps submit order
//! at the receiver even across resends. Unordered messages go together, up to
//! `max_in_flight` awaiting their ACK.
//!
//! A message is only given up as `failed` here when it surely never arrived (every try
//! found nobody listening, or none was made). When a send may have arrived (no ACK came)
//! the message becomes `unconfirmed` and the destination is asked, with a [`Query`], to
//! cancel it: it answers `cancelled` (it never ran and never will) or what really became
//! of it. An ordered stream stays held until then. Acknowledged messages whose result is
//! overdue are asked about the same way (without cancelling), so a reply lost or given
//! up on the way back never leaves a message waiting for ever.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bosun_bus::BusError;
use bosun_core::{Attempt, Delivery, Event, LaneItem, Lanes, RetryPolicy};
use bosun_proto::wire::{self, Query, QueryAnswer, WIRE_VERSION};
use bosun_proto::{Message, Millis, Outcome, State, Status};
use bosun_store::SentRecord;
use bytes::Bytes;
use tokio::sync::mpsc;

use bosun_bus::Transport;
use bosun_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::errorlog::ErrorEntry;
use crate::handles::{ErrorReporter, FinishedIds, RunningCount, SpillFlag};
use crate::metrics::Metrics;
use crate::node::now_millis;

/// Ordering stream of a sent message: destination and method.
type Stream = (String, String);

pub(crate) enum OutboxCmd {
    /// Newly queued messages with their outbox seqs.
    Deliver(Vec<(u64, Message)>),
    /// The message's result arrived: it was delivered, whatever became of its ACK.
    Settled(String),
    /// The operator asks to cancel a message this node sent; answered once what was
    /// decided is durable.
    Cancel(String, tokio::sync::oneshot::Sender<Cancelled>),
}

/// What became of an operator's cancel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Cancelled {
    /// It had not reached its destination: it is `cancelled` (durably) and will never
    /// be sent.
    Cancelled,
    /// It may have reached its destination: it is `unconfirmed`, and the destination was
    /// asked to cancel it. It ends `cancelled` if it had not started there, otherwise
    /// with its real outcome.
    AskedDestination {
        /// The destination.
        to: String,
    },
    /// Not cancelled, and why.
    Refused {
        /// Why, and what to do.
        reason: String,
    },
}

/// Where an outbox entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Being sent until it is ACKed.
    Sending,
    /// Given up after a send that may have arrived: asking the destination to cancel it.
    Unconfirmed,
    /// Its final state is being recorded; the lane is freed once that is durable.
    Ending,
}

/// Answers coming back to the loop from the tasks it spawned.
enum Answer {
    /// The ACK (or failure) of a send.
    Ack(String, Result<Bytes, BusError>),
    /// The answer to a batch of sends to `to`, the ids in the batch's order.
    Batch {
        to: String,
        ids: Vec<String>,
        result: Result<Bytes, BusError>,
    },
    /// The answer to a query; `cancel` says whether it asked to cancel.
    Query {
        id: String,
        cancel: bool,
        result: Result<Bytes, BusError>,
    },
    /// A final state decided here is durable: the entry may go.
    Recorded(String),
}

struct Entry {
    item: LaneItem<Stream>,
    message: Message,
    delivery: Delivery,
    payload: Bytes,
    subject: String,
    /// Why the next send is a resend, for the history.
    resend_note: Option<String>,
    /// The last send, not yet in the store: it is recorded together with its outcome
    /// (the ACK, or the reason for the next try), which saves a write per message.
    unrecorded_send: Option<(Millis, Option<String>)>,
    phase: Phase,
    /// A send went out that may have reached the destination (it was not refused for
    /// want of listeners): giving up then needs the destination's word.
    maybe_delivered: bool,
    /// Timing of the queries while unconfirmed.
    query: Delivery,
    /// An operator's cancel that waits for the answer of the send on the wire.
    cancel: Option<tokio::sync::oneshot::Sender<Cancelled>>,
}

/// What the outbox loop uses.
pub(crate) struct Sender {
    pub config: Arc<Config>,
    pub store: Store,
    pub transport: Arc<dyn Transport>,
    pub metrics: Metrics,
    pub finished: FinishedIds,
    pub reporter: ErrorReporter,
    /// Handlers running now: at shutdown the outbox drains until their replies are out.
    pub running: RunningCount,
    pub tracker: TaskTracker,
    /// Tells the store's writer not to hand over entries while new ones wait on disk.
    pub spilled: SpillFlag,
}

struct Outbox {
    sender: Sender,
    lanes: Lanes<Stream>,
    /// Boxed: the table stays small when it is sized for many entries.
    entries: HashMap<String, Box<Entry>>,
    timers: BinaryHeap<Reverse<(Millis, String)>>,
    results: mpsc::UnboundedSender<Answer>,
    in_flight: usize,
    /// Overdue results being asked for now.
    pulls_in_flight: std::collections::HashSet<String>,
    /// Ready to send, waiting for a place among `max_in_flight` requests on the wire.
    window_queue: std::collections::VecDeque<String>,
    /// Most entries in memory (`outbox_memory_entries`).
    capacity: usize,
    /// Entries with a seq above this wait on disk only (the memory was full): they are
    /// read in pages once room frees up, and new ones above it are left to that read.
    spilled_after: Option<u64>,
    /// The highest seq read from disk: a late `Deliver` at or below it was in that read
    /// already (or has ended since), so it is not taken again.
    read_upto: u64,
    /// Ids cancelled before their `Deliver` arrived: not taken when it does.
    cancelled: std::collections::HashSet<String>,
    /// Sends decided in this turn of the loop, put on the wire together by `flush`.
    outgoing: Vec<Outgoing>,
    /// Destinations that answered a batch with a refusal (a node that does not take
    /// batches), and until when they get one request per frame.
    unbatched: HashMap<String, Millis>,
}

/// What becomes of the sends in a batch, from its answer.
enum BatchFate {
    /// Each has its answer (empty: not acknowledged).
    Each(Vec<Bytes>),
    /// The frame failed: each send failed so.
    Failed(BusError),
    /// Nothing of it was recorded: each goes again, alone.
    Alone,
}

/// A send decided and counted in the window, not yet on the wire.
struct Outgoing {
    id: String,
    to: String,
    subject: String,
    payload: Bytes,
    timeout: Duration,
}

/// Most requests the sender puts in one batch, and most bytes: well under the broker's
/// usual `max_payload` (1 MiB by default).
const BATCH_MESSAGES: usize = 128;
const BATCH_BYTES: usize = 256 * 1024;

/// How long a destination that refused a batch is sent one request per frame before a
/// batch is tried again (it may have been upgraded meanwhile).
const UNBATCHED_FOR_MS: Millis = 10 * 60 * 1000;

pub(crate) async fn run(
    sender: Sender,
    mut commands: mpsc::UnboundedReceiver<OutboxCmd>,
    existing: Vec<(u64, SentRecord)>,
    shutdown: CancellationToken,
) {
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    let mut outbox = Outbox {
        // Unordered items may all be "active" (sent, or waiting on a retry timer); the cap
        // applies to requests actually on the wire, so messages waiting for an offline
        // node never hold back traffic to others.
        lanes: Lanes::new(usize::MAX),
        sender,
        entries: HashMap::new(),
        timers: BinaryHeap::new(),
        results: results_tx,
        in_flight: 0,
        pulls_in_flight: Default::default(),
        window_queue: Default::default(),
        capacity: 1,
        spilled_after: None,
        read_upto: 0,
        cancelled: Default::default(),
        outgoing: Vec::new(),
        unbatched: HashMap::new(),
    };
    outbox.capacity = outbox.sender.config.outbox_memory_entries.max(1);
    if existing.len() >= outbox.capacity {
        outbox.spilled_after = existing.last().map(|(seq, _)| *seq);
        outbox.sender.spilled.set(true);
    }
    outbox.read_upto = existing.last().map(|(seq, _)| *seq).unwrap_or(0);
    outbox.restore(existing);
    let mut pull_tick = tokio::time::interval(
        outbox
            .sender
            .config
            .ack_timeout()
            .min(Duration::from_secs(1)),
    );
    pull_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        outbox.refill();
        for item in outbox.lanes.take_ready() {
            outbox.send(&item.id);
        }
        // Everything decided since the last turn goes on the wire now, batched.
        outbox.flush();
        if let Some(until) = drain_until
            && (tokio::time::Instant::now() >= until
                || (outbox.in_flight == 0 && outbox.sender.running.count() == 0))
        {
            break;
        }
        let next_timer = outbox.timers.peek().map(|Reverse((at, _))| *at);
        let sleep = async {
            match next_timer {
                Some(at) => {
                    let wait = at.saturating_sub(now_millis());
                    tokio::time::sleep(Duration::from_millis(wait)).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(OutboxCmd::Deliver(list)) => {
                    for (seq, m) in list { outbox.deliver(seq, m); }
                }
                Some(OutboxCmd::Settled(id)) => outbox.finished(&id),
                Some(OutboxCmd::Cancel(id, reply)) => outbox.cancel(id, reply).await,
                None => break,
            },
            Some(answer) = results_rx.recv() => match answer {
                Answer::Ack(id, result) => outbox.on_result(id, result).await,
                Answer::Batch { to, ids, result } => outbox.on_batch_answer(to, ids, result).await,
                Answer::Query { id, cancel, result } => outbox.on_query_answer(id, cancel, result).await,
                Answer::Recorded(id) => outbox.finished(&id),
            },
            _ = sleep => outbox.fire_timers(),
            _ = pull_tick.tick(), if drain_until.is_none() => outbox.pull_overdue(),
            _ = tokio::time::sleep(Duration::from_millis(100)), if drain_until.is_some() => {}
            _ = shutdown.cancelled(), if drain_until.is_none() => {
                // Let replies of interrupted work and sends under way finish, briefly.
                drain_until = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
            }
        }
    }
}

impl Outbox {
    fn policy(&self, m: &Message) -> RetryPolicy {
        RetryPolicy {
            ack_timeout_ms: self.ack_timeout_ms(m),
            retries: m.retries.unwrap_or(self.sender.config.retries),
            ..RetryPolicy::default()
        }
    }

    fn ack_timeout_ms(&self, m: &Message) -> u64 {
        ack_timeout_ms(&self.sender.config, m)
    }

    /// Queries are tried until the destination answers: never given up, and spaced no
    /// more than one ACK timeout apart, so an answer comes soon after the destination is
    /// back.
    fn query_policy(&self, m: &Message) -> RetryPolicy {
        let ack_timeout_ms = self.ack_timeout_ms(m);
        RetryPolicy {
            ack_timeout_ms,
            retries: u32::MAX,
            backoff_max_ms: ack_timeout_ms.max(500),
            ..RetryPolicy::default()
        }
    }

    /// Take entries read from disk (at start-up, or a page of a deep queue).
    fn restore(&mut self, records: Vec<(u64, SentRecord)>) {
        for (seq, record) in records {
            let id = record.message.id().to_string();
            self.add(seq, record.message);
            if let Some(entry) = self.entries.get_mut(&id) {
                // Across a restart, any recorded send may have arrived.
                entry.maybe_delivered = record.state != State::Queued;
                if record.state == State::Unconfirmed {
                    entry.phase = Phase::Unconfirmed;
                }
            }
        }
    }

    /// A newly queued entry, durable in the store already. Entries come in seq order
    /// (the store's writer hands them over after each commit), which the spill
    /// bookkeeping relies on: every entry below one that found the memory full has been
    /// seen already, so reading the disk from just below it misses none.
    fn deliver(&mut self, seq: u64, message: Message) {
        if self.cancelled.remove(message.id()) {
            // Cancelled (durably) while its hand-over was on the way.
            return;
        }
        if seq <= self.read_upto && !self.entries.contains_key(message.id()) {
            // Read from disk already, and ended since: not again.
            return;
        }
        if self.spilled_after.is_some_and(|after| seq > after) {
            return;
        }
        if self.entries.len() >= self.capacity {
            // Memory is full: this one and every later one wait on disk.
            let below = seq.saturating_sub(1);
            self.spilled_after = Some(self.spilled_after.map_or(below, |a| a.min(below)));
            self.sender.spilled.set(true);
            return;
        }
        self.add(seq, message);
    }

    /// With room for a good page, read the next entries waiting on disk.
    fn refill(&mut self) {
        let Some(after) = self.spilled_after else {
            return;
        };
        let room = self.capacity.saturating_sub(self.entries.len());
        if room < self.capacity / 2 {
            return;
        }
        // Cleared before the read: an entry committed after it is handed over again.
        self.sender.spilled.set(false);
        match self.sender.store.outbox_page(after, room) {
            Ok(page) => {
                let last = page.last().map(|(seq, _)| *seq);
                self.spilled_after = match last {
                    Some(last) if page.len() >= room => Some(last),
                    _ => None,
                };
                self.sender.spilled.set(self.spilled_after.is_some());
                if let Some(last) = last {
                    self.read_upto = self.read_upto.max(last);
                }
                self.restore(page);
            }
            Err(e) => {
                self.sender.spilled.set(true);
                tracing::warn!(error = %e, "cannot read the outbox; trying again later")
            }
        }
    }

    fn add(&mut self, seq: u64, message: Message) {
        let id = message.id().to_string();
        if self.entries.contains_key(&id) {
            return;
        }
        let created = message.created_at.unwrap_or_else(now_millis);
        let delivery = Delivery::new(self.policy(&message), created, message.ttl);
        let query = Delivery::new(self.query_policy(&message), created, None);
        let stream = message
            .is_ordered()
            .then(|| (message.destination().to_string(), message.method.clone()));
        let item = LaneItem {
            seq,
            id: id.clone(),
            stream,
        };
        let payload = Bytes::from(wire::encode_request(&message));
        let subject = wire::subject(
            &self.sender.config.subject_prefix,
            message.destination(),
            &message.method,
        );
        self.lanes.push(item.clone());
        self.entries.insert(
            id,
            Box::new(Entry {
                item,
                message,
                delivery,
                payload,
                subject,
                resend_note: None,
                unrecorded_send: None,
                phase: Phase::Sending,
                maybe_delivered: false,
                query,
                cancel: None,
            }),
        );
    }

    fn send(&mut self, id: &str) {
        let now = now_millis();
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        match entry.phase {
            Phase::Sending => {}
            Phase::Unconfirmed => return self.query(id, true),
            Phase::Ending => return,
        }
        if entry.delivery.expired(now) {
            self.give_up(id, "ttl expired before the message could be delivered");
            return;
        }
        if !self.sender.transport.is_connected() {
            // Not sent at all: the message stays `queued` and waits for the link.
            match entry.delivery.on_unreachable(now) {
                Attempt::RetryAt(at) => self.timers.push(Reverse((at, id.to_string()))),
                Attempt::GiveUp(reason) => self.give_up(id, reason),
            }
            return;
        }
        if self.in_flight >= self.sender.config.max_in_flight.max(1) {
            self.window_queue.push_back(id.to_string());
            return;
        }
        if let Some(reason) = &entry.resend_note {
            let event = crate::events::Resent {
                id,
                method: &entry.message.method,
                reason,
            };
            event.emit(&self.sender.metrics);
        }
        entry.unrecorded_send = Some((now, entry.resend_note.take()));
        self.outgoing.push(Outgoing {
            id: id.to_string(),
            to: entry.message.destination().to_string(),
            subject: entry.subject.clone(),
            payload: entry.payload.clone(),
            timeout: Duration::from_millis(entry.delivery.policy.ack_timeout_ms),
        });
        self.in_flight += 1;
    }

    /// Put the sends decided since the last flush on the wire: several for one
    /// destination (with one ACK timeout) go in batches, the others alone.
    fn flush(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let now = now_millis();
        self.unbatched.retain(|_, until| *until > now);
        let mut outgoing = std::mem::take(&mut self.outgoing);
        // Stable: each destination's sends keep their order.
        outgoing.sort_by(|a, b| (&a.to, a.timeout).cmp(&(&b.to, b.timeout)));
        let mut rest = outgoing.into_iter().peekable();
        while let Some(first) = rest.next() {
            let mut batch = vec![first];
            let mut bytes = batch[0].payload.len();
            if !self.unbatched.contains_key(&batch[0].to) {
                while let Some(next) = rest.peek() {
                    if next.to != batch[0].to
                        || next.timeout != batch[0].timeout
                        || batch.len() >= BATCH_MESSAGES
                        || bytes + next.payload.len() > BATCH_BYTES
                    {
                        break;
                    }
                    bytes += next.payload.len();
                    batch.push(rest.next().expect("peeked"));
                }
            }
            self.put_on_wire(batch);
        }
    }

    fn put_on_wire(&self, mut batch: Vec<Outgoing>) {
        self.sender.metrics.frame_sent(batch.len());
        let transport = self.sender.transport.clone();
        let results = self.results.clone();
        if batch.len() == 1 {
            let one = batch.pop().expect("one");
            tokio::spawn(async move {
                let result = transport
                    .request(one.subject, one.payload, one.timeout)
                    .await;
                let _ = results.send(Answer::Ack(one.id, result));
            });
            return;
        }
        let to = batch[0].to.clone();
        let subject = wire::subject(&self.sender.config.subject_prefix, &to, wire::BATCH_TOKEN);
        let timeout = batch[0].timeout;
        let payload = Bytes::from(wire::encode_batch(batch.iter().map(|o| &o.payload[..])));
        let ids = batch.into_iter().map(|o| o.id).collect();
        tokio::spawn(async move {
            let result = transport.request(subject, payload, timeout).await;
            let _ = results.send(Answer::Batch { to, ids, result });
        });
    }

    /// The answer to a batch: each ACK goes where the ACK of a single send goes. A
    /// failure of the whole frame is the failure of each send in it. A destination that
    /// refused the frame (it does not take batches, or could not read this one) recorded
    /// none of it: its sends go again at once, one per frame.
    async fn on_batch_answer(
        &mut self,
        to: String,
        ids: Vec<String>,
        result: Result<Bytes, BusError>,
    ) {
        let fate = match result {
            Ok(bytes) => match wire::decode_batch_ack(&bytes) {
                Ok(acks) if acks.len() == ids.len() => BatchFate::Each(
                    acks.into_iter()
                        // Not acknowledged: what a single send that got an empty answer
                        // makes of it.
                        .map(|a| a.map(Bytes::copy_from_slice).unwrap_or_default())
                        .collect(),
                ),
                Ok(acks) => {
                    // It was read there: each send may have arrived.
                    self.unbatch(&to, "a batch answer with another number of ACKs");
                    BatchFate::Failed(BusError::Other(format!(
                        "{to} answered a batch of {} with {} ACKs",
                        ids.len(),
                        acks.len()
                    )))
                }
                Err(_) => match wire::decode_ack(&bytes) {
                    // A refusal without an id: the frame was not read, nothing recorded.
                    Ok(ack) if ack.id.is_empty() && ack.rejected.is_some() => {
                        self.unbatch(&to, ack.rejected.as_deref().unwrap_or_default());
                        BatchFate::Alone
                    }
                    _ => {
                        self.unbatch(&to, "an answer that is no batch answer");
                        BatchFate::Failed(BusError::Other(format!(
                            "{to} answered a batch with something else"
                        )))
                    }
                },
            },
            // Too large for this broker, say, or lost after it went out: each may have
            // arrived, and the next try goes alone.
            Err(BusError::Other(e)) => {
                self.unbatch(&to, &e);
                BatchFate::Failed(BusError::Other(e))
            }
            Err(e) => BatchFate::Failed(e),
        };
        match fate {
            BatchFate::Each(acks) => {
                for (id, ack) in ids.into_iter().zip(acks) {
                    self.on_result(id, Ok(ack)).await;
                }
            }
            BatchFate::Failed(error) => {
                for id in ids {
                    self.on_result(id, Err(error.clone())).await;
                }
            }
            BatchFate::Alone => {
                for id in ids {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    let Some(entry) = self.entries.get_mut(&id) else {
                        continue;
                    };
                    // Nothing of it was recorded there: not a send, and its note waits
                    // for the next one.
                    if let Some((_, note)) = entry.unrecorded_send.take() {
                        entry.resend_note = note;
                    }
                    if let Some(reply) = entry.cancel.take() {
                        // A cancel waited for this send, which did not arrive: decide now.
                        let answer = self.cancel_entry(&id).await;
                        let _ = reply.send(answer);
                    } else {
                        // To a destination now unbatched: the next flush sends it alone.
                        self.send(&id);
                    }
                }
                self.fill_window();
            }
        }
    }

    /// Send `to` one request per frame for a while: it refused a batch, or a batch to
    /// it failed in a way a single request might not.
    fn unbatch(&mut self, to: &str, reason: &str) {
        if self.unbatched.contains_key(to) {
            return;
        }
        tracing::info!(
            to,
            reason,
            "batch not taken; sending one request per frame to this node for a while"
        );
        self.unbatched
            .insert(to.to_string(), now_millis() + UNBATCHED_FOR_MS);
    }

    /// Send waiting entries while the window has room. An entry that settled or expired
    /// meanwhile takes no place, so none waits for unrelated traffic.
    fn fill_window(&mut self) {
        while self.in_flight < self.sender.config.max_in_flight.max(1) {
            let Some(next) = self.window_queue.pop_front() else {
                return;
            };
            self.send(&next);
        }
    }

    fn fire_timers(&mut self) {
        let now = now_millis();
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, id)) = self.timers.pop().expect("peeked");
            self.send(&id);
        }
    }

    /// Ask `to` about message `id` (sent by this node), cancelling it there if `cancel`
    /// and it has not started.
    fn spawn_query(&self, id: &str, to: &str, cancel: bool, timeout: Duration) {
        let query = Query {
            v: WIRE_VERSION,
            id: id.to_string(),
            from: self.sender.config.name.to_string(),
            cancel,
        };
        let subject = wire::subject(&self.sender.config.subject_prefix, to, wire::QUERY_TOKEN);
        let payload = Bytes::from(wire::encode(&query));
        let transport = self.sender.transport.clone();
        let results = self.results.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let result = transport.request(subject, payload, timeout).await;
            let _ = results.send(Answer::Query { id, cancel, result });
        });
    }

    /// Ask the destination of an unconfirmed entry to cancel it.
    fn query(&mut self, id: &str, cancel: bool) {
        let now = now_millis();
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if !self.sender.transport.is_connected() {
            if let Attempt::RetryAt(at) = entry.query.on_unreachable(now) {
                self.timers.push(Reverse((at, id.to_string())));
            }
            return;
        }
        let timeout = Duration::from_millis(entry.query.policy.ack_timeout_ms);
        let to = entry.message.destination().to_string();
        self.spawn_query(id, &to, cancel, timeout);
    }

    /// Ask the destinations of acknowledged messages whose result is overdue what became
    /// of them.
    fn pull_overdue(&mut self) {
        if !self.sender.transport.is_connected() {
            return;
        }
        let due = match self.sender.store.due_pulls(now_millis(), 256) {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the overdue results");
                return;
            }
        };
        for id in due {
            if self.pulls_in_flight.contains(&id) || self.entries.contains_key(&id) {
                continue;
            }
            let Ok(Some(record)) = self.sender.store.sent(&id) else {
                continue;
            };
            let timeout = Duration::from_millis(self.ack_timeout_ms(&record.message));
            self.spawn_query(&id, record.message.destination(), false, timeout);
            self.pulls_in_flight.insert(id);
        }
    }

    async fn on_result(&mut self, id: String, result: Result<Bytes, BusError>) {
        // Each result is recorded: while the store is far behind, wait for it rather than
        // queue writes without bound (this slows sending down to what can be recorded).
        self.sender.store.room().await;
        self.in_flight = self.in_flight.saturating_sub(1);
        self.fill_window();
        let now = now_millis();
        let result = result.map(|bytes| wire::decode_ack(&bytes));
        let acked = matches!(&result, Ok(Ok(a)) if a.id == id && a.rejected.is_none());
        let Some(entry) = self.entries.get_mut(&id) else {
            // The result overtook this ACK: the message is settled, but its history
            // still gets the step.
            if acked {
                self.sender.store.note(&id, vec![(Event::Acked, now, None)]);
            }
            return;
        };
        let reached = !matches!(
            result,
            Err(BusError::NoResponders(_)) | Err(BusError::Disconnected)
        );
        let mut notes: Vec<(Event, Millis, Option<String>)> = Vec::new();
        if let Some((at, note)) = entry.unrecorded_send.take()
            && reached
        {
            // A try that found nobody listening was not a send: the history stays
            // `queued`, and giving up needs nobody's word.
            notes.push((Event::Sent, at, note));
            entry.maybe_delivered = true;
        }
        if acked {
            let event = crate::events::MessageState {
                id: &id,
                method: &entry.message.method,
                state: "acked",
            };
            event.emit(&self.sender.metrics);
            notes.push((Event::Acked, now, None));
            if let Ok(Ok(ack)) = &result
                && ack.duplicate
                && let Some(state) = ack.state.filter(|s| s.is_terminal())
            {
                // It had finished before: the ACK brings the real outcome.
                let outcome = ack.outcome.clone();
                self.sender.store.note(&id, notes);
                self.record_answer(
                    &id,
                    state,
                    outcome,
                    "resend of a message it had already run",
                );
                return;
            }
            // Events and sinks expect no reply: the ACK is the end of their road.
            let expects_reply = bosun_proto::Method::parse(&entry.message.method)
                .is_none_or(|p| p.method.expects_reply());
            if !expects_reply {
                notes.push((Event::Finished(Status::Done), now, None));
                self.sender.finished.announce(&id);
                self.sender.store.note(&id, notes);
            } else {
                let due = pull_at(&self.sender.config, &entry.message, now);
                self.sender.store.note_and_pull_at(&id, notes, Some(due));
            }
        } else if !notes.is_empty() {
            self.sender.store.note(&id, notes);
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let attempt = match result {
            Ok(decoded) => match decoded {
                // A refusal of a frame the receiver could not read carries no id; it
                // still answers this very request.
                Ok(ack) if ack.id == id || (ack.id.is_empty() && ack.rejected.is_some()) => {
                    match ack.rejected {
                        Some(reason) => self.refused(&id, &reason),
                        None => self.finished(&id),
                    }
                    return;
                }
                Ok(ack) => {
                    tracing::warn!(id, got = ack.id, reason = ?ack.rejected, "ACK for another id");
                    entry.delivery.on_ack_timeout(now)
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "unreadable ACK");
                    entry.delivery.on_ack_timeout(now)
                }
            },
            Err(BusError::Timeout(_)) => {
                let event = crate::events::AckTimedOut {
                    id: &id,
                    method: &entry.message.method,
                };
                event.emit(&self.sender.metrics);
                let attempt = entry.delivery.on_ack_timeout(now);
                entry.resend_note = Some(format!(
                    "resend #{} after no ACK in {} ms",
                    entry.delivery.timeouts, entry.delivery.policy.ack_timeout_ms
                ));
                attempt
            }
            Err(BusError::NoResponders(_)) | Err(BusError::Disconnected) => {
                entry.delivery.on_unreachable(now)
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "send failed");
                entry.delivery.on_ack_timeout(now)
            }
        };
        let pending_cancel = entry.cancel.take();
        match attempt {
            Attempt::RetryAt(at) => self.timers.push(Reverse((at, id.clone()))),
            Attempt::GiveUp(reason) => self.give_up(&id, reason),
        }
        if let Some(reply) = pending_cancel {
            // The send it waited for has its answer: decide now.
            let answer = self.cancel_entry(&id).await;
            let _ = reply.send(answer);
        }
    }

    /// An operator's cancel of `id`: see [`Cancelled`]. A message still in memory is
    /// decided here; one waiting on disk only (a deep queue) is cancelled in the store
    /// before the loop reads on, so no page read can take it after. The answer is sent
    /// once the decision is durable.
    async fn cancel(&mut self, id: String, reply: tokio::sync::oneshot::Sender<Cancelled>) {
        if let Some(entry) = self.entries.get_mut(&id) {
            if entry.phase == Phase::Sending && entry.unrecorded_send.is_some() {
                // A send is on the wire: whether it arrived decides, so wait for it.
                if let Some(earlier) = entry.cancel.replace(reply) {
                    let _ = earlier.send(Cancelled::Refused {
                        reason: "another cancel of it came since".into(),
                    });
                }
                return;
            }
            let answer = self.cancel_entry(&id).await;
            let _ = reply.send(answer);
            return;
        }
        let record = match self.sender.store.sent(&id) {
            Ok(Some(record)) => record,
            Ok(None) => {
                let _ = reply.send(Cancelled::Refused {
                    reason: format!("no message with id {id} was sent from this node"),
                });
                return;
            }
            Err(e) => {
                let _ = reply.send(Cancelled::Refused {
                    reason: format!("cannot read its record: {e}"),
                });
                return;
            }
        };
        let answer = if record.state == State::Queued && record.in_outbox {
            // Waiting on disk only, or its hand-over to this loop is on the way: never
            // sent, so it ends here.
            let to = record.message.destination().to_string();
            match self.settle_cancelled(&id, &to).await {
                Ok(()) => {
                    self.cancelled.insert(id.clone());
                    Cancelled::Cancelled
                }
                Err(e) => Cancelled::Refused {
                    reason: format!("cannot record the cancel: {e}"),
                },
            }
        } else {
            refusal(&record)
        };
        let _ = reply.send(answer);
    }

    /// Decide the cancel of an entry in memory, with no send on the wire.
    async fn cancel_entry(&mut self, id: &str) -> Cancelled {
        let Some(entry) = self.entries.get_mut(id) else {
            return match self.sender.store.sent(id) {
                Ok(Some(record)) => refusal(&record),
                _ => Cancelled::Refused {
                    reason: "it ended meanwhile; see `bosun status`".into(),
                },
            };
        };
        let to = entry.message.destination().to_string();
        match entry.phase {
            Phase::Ending => {
                return Cancelled::Refused {
                    reason: "its final state is being recorded; see `bosun status`".into(),
                };
            }
            Phase::Unconfirmed => return self.asked_destination(to).await,
            Phase::Sending => {}
        }
        if !entry.maybe_delivered {
            entry.phase = Phase::Ending;
            return match self.settle_cancelled(id, &to).await {
                Ok(()) => {
                    self.finished(id);
                    Cancelled::Cancelled
                }
                Err(e) => {
                    if let Some(entry) = self.entries.get_mut(id) {
                        entry.phase = Phase::Sending;
                    }
                    Cancelled::Refused {
                        reason: format!("cannot record the cancel: {e}"),
                    }
                }
            };
        }
        let method = entry.message.method.clone();
        let runs_there = bosun_proto::Method::parse(&method).is_some_and(|p| {
            matches!(
                p.method.role(),
                bosun_proto::Role::Handler(_) | bosun_proto::Role::Node
            )
        });
        if !runs_there {
            return Cancelled::Refused {
                reason: format!(
                    "it may have reached {to} already, and {method} takes effect on arrival"
                ),
            };
        }
        self.give_up(id, "cancelled by the operator");
        match self.entries.get(id).map(|e| e.phase) {
            Some(Phase::Unconfirmed) => self.asked_destination(to).await,
            _ => Cancelled::Refused {
                reason: format!("it has started on {to}; its result will come"),
            },
        }
    }

    /// The answer to a cancel left to the destination, given once the record says so:
    /// the `unconfirmed` step is queued to the store without a wait, and an operator who
    /// runs `bosun status` right after the answer must find it there.
    async fn asked_destination(&self, to: String) -> Cancelled {
        if let Err(e) = self.sender.store.flush().await {
            tracing::warn!(error = %e, "cannot record the cancel's step; the answer stands");
        }
        Cancelled::AskedDestination { to }
    }

    /// Record `id` as cancelled here, durably, and tell its waiters.
    async fn settle_cancelled(
        &mut self,
        id: &str,
        to: &str,
    ) -> Result<(), bosun_store::StoreError> {
        let now = now_millis();
        let note = "cancelled by the operator before it reached its destination";
        let outcome = Outcome::bare(Status::Cancelled, to, note, now);
        self.sender
            .store
            .settle_here(
                id,
                Event::Finished(Status::Cancelled),
                now,
                Some(note.to_string()),
                outcome,
            )
            .await?;
        let event = crate::events::MessageState {
            id,
            method: self
                .entries
                .get(id)
                .map(|e| e.message.method.as_str())
                .unwrap_or(""),
            state: "cancelled",
        };
        event.emit(&self.sender.metrics);
        self.sender.finished.announce(id);
        Ok(())
    }

    /// The destination answered a query about `id`.
    async fn on_query_answer(&mut self, id: String, cancel: bool, result: Result<Bytes, BusError>) {
        let now = now_millis();
        if !cancel {
            self.pulls_in_flight.remove(&id);
        }
        let answer: Option<QueryAnswer> = match result {
            Ok(bytes) => match wire::decode_query_answer(&bytes) {
                Ok(a) if a.id == id && a.refused.is_none() => Some(a),
                Ok(a) => {
                    tracing::warn!(id, refused = ?a.refused, "query not answered");
                    None
                }
                Err(e) => {
                    tracing::warn!(id, error = %e, "unreadable answer to a query");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(id, error = %e, "query unanswered; asking again later");
                None
            }
        };
        if !cancel {
            return self.on_pull_answer(&id, answer, now);
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if entry.phase != Phase::Unconfirmed {
            return;
        }
        let Some(answer) = answer else {
            if let Attempt::RetryAt(at) = entry.query.on_ack_timeout(now) {
                self.timers.push(Reverse((at, id)));
            }
            return;
        };
        match answer.state {
            Some(state) if state.is_terminal() => {
                let to = entry.message.destination().to_string();
                self.record_answer(&id, state, answer.outcome, &format!("answered by {to}"));
            }
            state => {
                // It is at the destination, durable and started or about to: from here
                // on it is an acknowledged message awaiting its result.
                let mut notes = vec![(Event::Acked, now, Some("it had arrived after all".into()))];
                if state == Some(State::Running) {
                    notes.push((Event::Started, now, None));
                }
                let due = pull_at(&self.sender.config, &entry.message, now);
                self.sender.store.note_and_pull_at(&id, notes, Some(due));
                self.finished(&id);
            }
        }
    }

    /// The answer to a question about an acknowledged message whose result is overdue.
    fn on_pull_answer(&mut self, id: &str, answer: Option<QueryAnswer>, now: Millis) {
        let Ok(Some(record)) = self.sender.store.sent(id) else {
            return;
        };
        if record.state.is_terminal() {
            return;
        }
        let interval = self.ack_timeout_ms(&record.message);
        match answer {
            Some(QueryAnswer {
                state: Some(state),
                outcome,
                ..
            }) if state.is_terminal() => {
                let to = record.message.destination().to_string();
                self.record_answer(
                    id,
                    state,
                    outcome,
                    &format!("asked {to} for the overdue result"),
                );
            }
            Some(QueryAnswer { state: None, .. }) => {
                let to = record.message.destination().to_string();
                let error = format!(
                    "{to} has no record of this message although it acknowledged it (its data was lost or reset)"
                );
                let outcome = Outcome::bare(Status::Failed, &to, error.clone(), now);
                let store = self.sender.store.clone();
                let finished = self.sender.finished.clone();
                let id = id.to_string();
                self.sender.tracker.spawn(async move {
                    let _ = store
                        .settle_here(
                            &id,
                            Event::Finished(Status::Failed),
                            now,
                            Some(error),
                            outcome,
                        )
                        .await;
                    finished.announce(&id);
                });
            }
            answer => {
                // Not finished yet (or no answer): ask again later, less often the longer
                // it has been.
                let acked_at = record
                    .history
                    .iter()
                    .find(|h| h.state == State::Acked)
                    .map(|h| h.at)
                    .unwrap_or(now);
                let wait = (now.saturating_sub(acked_at) / 4).clamp(interval, 300_000);
                let notes = match answer {
                    Some(QueryAnswer {
                        state: Some(State::Running),
                        ..
                    }) => vec![(Event::Started, now, None)],
                    _ => Vec::new(),
                };
                self.sender
                    .store
                    .note_and_pull_at(id, notes, Some(now + wait));
            }
        }
    }

    /// Record a final state the destination reported for `id` (from an ACK or an answer
    /// to a query), durably; then tell waiters and, for an outbox entry, free its lane.
    fn record_answer(&mut self, id: &str, state: State, outcome: Option<Outcome>, how: &str) {
        let to = self
            .entries
            .get(id)
            .map(|e| e.message.destination().to_string())
            .or_else(|| {
                self.sender
                    .store
                    .sent(id)
                    .ok()
                    .flatten()
                    .map(|r| r.message.destination().to_string())
            })
            .unwrap_or_default();
        let status = status_of(state);
        let outcome = outcome.unwrap_or_else(|| {
            Outcome::bare(
                status,
                &to,
                format!(
                    "{to} reports it {}; its output is no longer kept there",
                    state.name()
                ),
                now_millis(),
            )
        });
        if let Some(entry) = self.entries.get_mut(id) {
            entry.phase = Phase::Ending;
        }
        let store = self.sender.store.clone();
        let finished = self.sender.finished.clone();
        let results = self.results.clone();
        let id = id.to_string();
        let note = Some(how.to_string());
        self.sender.tracker.spawn(async move {
            let _ = store
                .sent_event(
                    &id,
                    Event::Finished(status),
                    now_millis(),
                    note,
                    Some(outcome),
                )
                .await;
            finished.announce(&id);
            let _ = results.send(Answer::Recorded(id));
        });
    }

    fn refused(&mut self, id: &str, reason: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        let event = crate::events::MessageState {
            id,
            method: &entry.message.method,
            state: "rejected",
        };
        event.emit(&self.sender.metrics);
        self.end(id, Status::Rejected, reason.to_string(), reason, "rejected");
    }

    fn give_up(&mut self, id: &str, reason: &str) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let runs_there = bosun_proto::Method::parse(&entry.message.method).is_some_and(|p| {
            matches!(
                p.method.role(),
                bosun_proto::Role::Handler(_) | bosun_proto::Role::Node
            )
        });
        let heard_running = self
            .sender
            .store
            .sent(id)
            .ok()
            .flatten()
            .is_some_and(|r| r.state == State::Running);
        if heard_running {
            // Its ACK never came, but the destination said it started: it arrived, and
            // its result will come (or be asked for).
            let due = pull_at(&self.sender.config, &entry.message, now_millis());
            let note =
                format!("{reason}; it had started at the destination, so its result is awaited");
            self.sender.store.note_and_pull_at(
                id,
                vec![(Event::Acked, now_millis(), Some(note))],
                Some(due),
            );
            self.finished(id);
            return;
        }
        if entry.maybe_delivered && runs_there {
            // It may be waiting at the destination (a frozen node, a lost ACK): only the
            // destination can say it will never run.
            entry.phase = Phase::Unconfirmed;
            let to = entry.message.destination().to_string();
            let note = format!(
                "{reason}; asked {to} to cancel it, and waiting for its answer (it may have arrived)"
            );
            let event = crate::events::MessageState {
                id,
                method: &entry.message.method,
                state: "unconfirmed",
            };
            event.emit(&self.sender.metrics);
            self.sender.store.note(
                id,
                vec![(Event::Unconfirmed, now_millis(), Some(note.clone()))],
            );
            self.log(id, "unconfirmed", &note);
            self.query(id, true);
            return;
        }
        let event = crate::events::Undelivered {
            id,
            method: &entry.message.method,
            reason,
        };
        event.emit(&self.sender.metrics);
        let error = format!("not delivered: {reason}");
        self.end(id, Status::Failed, error, reason, "undelivered");
    }

    /// A message ends here without a result from its destination: record the final
    /// state durably, then tell waiters and free its lane (only then, so an ordered
    /// stream never moves on before the end is on disk); write the error log.
    fn end(&mut self, id: &str, status: Status, error: String, reason: &str, kind: &str) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.phase = Phase::Ending;
        let outcome = Outcome::bare(status, entry.message.destination(), error, now_millis());
        let store = self.sender.store.clone();
        let finished = self.sender.finished.clone();
        let results = self.results.clone();
        let id_owned = id.to_string();
        let note = reason.to_string();
        // A refusal is the destination's word; a give-up is this node's alone.
        let here = status != Status::Rejected;
        self.sender.tracker.spawn(async move {
            let event = Event::Finished(status);
            let at = now_millis();
            let written = if here {
                store
                    .settle_here(&id_owned, event, at, Some(note), outcome)
                    .await
            } else {
                store
                    .sent_event(&id_owned, event, at, Some(note), Some(outcome))
                    .await
            };
            if let Err(e) = written {
                tracing::error!(id = id_owned, error = %e, "cannot record the end of a message");
            }
            finished.announce(&id_owned);
            let _ = results.send(Answer::Recorded(id_owned));
        });
        self.log(id, kind, reason);
    }

    fn finished(&mut self, id: &str) {
        if let Some(mut entry) = self.entries.remove(id) {
            if let Some(reply) = entry.cancel.take() {
                // A cancel waited for the send on the wire, and the answer was that it
                // got there (or it ended otherwise).
                let _ = reply.send(Cancelled::Refused {
                    reason: format!(
                        "{} answered meanwhile (acknowledged, or it ended); see `bosun status {id}`",
                        entry.message.destination()
                    ),
                });
            }
            if let Some((at, note)) = entry.unrecorded_send.take() {
                // The result overtook the ACK: the send still belongs in the history.
                self.sender.store.note(id, vec![(Event::Sent, at, note)]);
            }
            // An item still queued in its lane (a result overtook it after a restart)
            // leaves the queue; only an active one frees its stream or slot.
            if !self.lanes.remove_pending(&entry.item) {
                self.lanes.done(&entry.item);
            }
        }
    }

    fn log(&self, id: &str, kind: &str, reason: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        self.sender.reporter.report(&ErrorEntry {
            at: now_millis(),
            node: &self.sender.config.name,
            kind,
            message_id: Some(id),
            to_node: Some(entry.message.destination()),
            method: Some(&entry.message.method),
            reason,
        });
    }
}

/// Why a message that is not in the outbox's memory cannot be cancelled.
fn refusal(record: &bosun_store::SentRecord) -> Cancelled {
    let to = record.message.destination();
    let reason = match record.state {
        s if s.is_terminal() => format!("it is {} already", s.name()),
        State::Acked | State::Received => {
            format!("{to} has it already (acknowledged); it runs there and its result will come")
        }
        State::Running => format!("it is running on {to}; its result will come"),
        State::Unconfirmed => return Cancelled::AskedDestination { to: to.to_string() },
        other => format!("it is {} and no longer in the outbox", other.name()),
    };
    Cancelled::Refused { reason }
}

fn ack_timeout_ms(config: &Config, m: &Message) -> u64 {
    m.ack_timeout
        .map(Duration::from_secs)
        .unwrap_or_else(|| config.ack_timeout())
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// When to ask for the result of a message ACKed at `now`: when it should have finished
/// (its `methodTimeout`) plus one ACK timeout.
fn pull_at(config: &Config, m: &Message, now: Millis) -> Millis {
    let method_timeout = m
        .method_timeout
        .map(Duration::from_secs)
        .unwrap_or_else(|| config.method_timeout());
    now.saturating_add(method_timeout.as_millis() as u64)
        .saturating_add(ack_timeout_ms(config, m))
}

/// The outcome status of a final state.
fn status_of(state: State) -> Status {
    match state {
        State::Failed => Status::Failed,
        State::Timeout => Status::Timeout,
        State::Interrupted => Status::Interrupted,
        State::Rejected => Status::Rejected,
        State::Cancelled => Status::Cancelled,
        _ => Status::Done,
    }
}
