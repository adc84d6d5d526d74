//! The sender loop: delivers the outbox, resends with backoff, gives up on ttl or
//! retries.
//!
//! Ordered messages to one (destination, method) go one at a time: the next is sent only
//! when the previous one is ACKed, refused or given up. That keeps submit order at the
//! receiver even across resends. Unordered messages go together, up to
//! `max_in_flight` awaiting their ACK.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bosun_bus::BusError;
use bosun_core::{Attempt, Delivery, Event, LaneItem, Lanes, RetryPolicy};
use bosun_proto::wire::{self, Request, WIRE_VERSION};
use bosun_proto::{Message, Millis, Outcome, Status};
use bosun_store::SentRecord;
use bytes::Bytes;
use tokio::sync::mpsc;

use bosun_bus::Transport;
use bosun_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::errorlog::ErrorEntry;
use crate::handles::{ErrorReporter, FinishedIds, RunningCount};
use crate::metrics::Metrics;
use crate::node::now_millis;

/// Ordering stream of a sent message: destination and method.
type Stream = (String, String);

pub(crate) enum OutboxCmd {
    /// Newly queued messages with their outbox seqs.
    Deliver(Vec<(u64, Message)>),
    /// The message's result arrived: it was delivered, whatever became of its ACK.
    Settled(String),
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
}

struct Outbox {
    sender: Sender,
    lanes: Lanes<Stream>,
    entries: HashMap<String, Entry>,
    timers: BinaryHeap<Reverse<(Millis, String)>>,
    results: mpsc::UnboundedSender<(String, Result<Bytes, BusError>)>,
    in_flight: usize,
    /// Ready to send, waiting for a place among `max_in_flight` requests on the wire.
    window_queue: std::collections::VecDeque<String>,
}

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
        window_queue: Default::default(),
    };
    for (seq, record) in existing {
        outbox.add(seq, record.message);
    }
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        for item in outbox.lanes.take_ready() {
            outbox.send(&item.id);
        }
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
                    for (seq, m) in list { outbox.add(seq, m); }
                }
                Some(OutboxCmd::Settled(id)) => outbox.finished(&id),
                None => break,
            },
            Some((id, result)) = results_rx.recv() => outbox.on_result(id, result).await,
            _ = sleep => outbox.fire_timers(),
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
            ack_timeout_ms: m
                .ack_timeout
                .map(Duration::from_secs)
                .unwrap_or_else(|| self.sender.config.ack_timeout())
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            retries: m.retries.unwrap_or(self.sender.config.retries),
            ..RetryPolicy::default()
        }
    }

    fn add(&mut self, seq: u64, message: Message) {
        let id = message.id().to_string();
        if self.entries.contains_key(&id) {
            return;
        }
        let created = message.created_at.unwrap_or_else(now_millis);
        let delivery = Delivery::new(self.policy(&message), created, message.ttl);
        let stream = message
            .is_ordered()
            .then(|| (message.destination().to_string(), message.method.clone()));
        let item = LaneItem {
            seq,
            id: id.clone(),
            stream,
        };
        let payload = Bytes::from(wire::encode(&Request {
            v: WIRE_VERSION,
            msg: message.clone(),
        }));
        let subject = wire::subject(
            &self.sender.config.subject_prefix,
            message.destination(),
            &message.method,
        );
        self.lanes.push(item.clone());
        self.entries.insert(
            id,
            Entry {
                item,
                message,
                delivery,
                payload,
                subject,
                resend_note: None,
                unrecorded_send: None,
            },
        );
    }

    fn send(&mut self, id: &str) {
        let now = now_millis();
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
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
        let transport = self.sender.transport.clone();
        let results = self.results.clone();
        let subject = entry.subject.clone();
        let payload = entry.payload.clone();
        let timeout = Duration::from_millis(entry.delivery.policy.ack_timeout_ms);
        let id = id.to_string();
        self.in_flight += 1;
        tokio::spawn(async move {
            let result = transport.request(subject, payload, timeout).await;
            let _ = results.send((id, result));
        });
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

    async fn on_result(&mut self, id: String, result: Result<Bytes, BusError>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(next) = self.window_queue.pop_front() {
            self.send(&next);
        }
        let now = now_millis();
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let mut notes: Vec<(Event, Millis, Option<String>)> = entry
            .unrecorded_send
            .take()
            .map(|(at, note)| (Event::Sent, at, note))
            .into_iter()
            .collect();
        let result = result.map(|bytes| wire::decode_ack(&bytes));
        let acked = matches!(&result, Ok(Ok(a)) if a.id == id && a.rejected.is_none());
        if acked {
            let event = crate::events::MessageState {
                id: &id,
                method: &entry.message.method,
                state: "acked",
            };
            event.emit(&self.sender.metrics);
            notes.push((Event::Acked, now, None));
            // Events and sinks expect no reply: the ACK is the end of their road.
            let expects_reply = bosun_proto::Method::parse(&entry.message.method)
                .is_none_or(|p| p.method.expects_reply());
            if !expects_reply {
                notes.push((Event::Finished(Status::Done), now, None));
                self.sender.finished.announce(&id);
            }
        }
        if !notes.is_empty() {
            self.sender.store.note(&id, notes);
        }
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
        match attempt {
            Attempt::RetryAt(at) => self.timers.push(Reverse((at, id))),
            Attempt::GiveUp(reason) => self.give_up(&id, reason),
        }
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
        let Some(entry) = self.entries.get(id) else {
            return;
        };
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
    /// state durably, then tell waiters; write the error log; free its lane.
    fn end(&mut self, id: &str, status: Status, error: String, reason: &str, kind: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        let outcome = Outcome::bare(status, entry.message.destination(), error, now_millis());
        let store = self.sender.store.clone();
        let finished = self.sender.finished.clone();
        let id_owned = id.to_string();
        let note = reason.to_string();
        self.sender.tracker.spawn(async move {
            let _ = store
                .sent_event(
                    &id_owned,
                    Event::Finished(status),
                    now_millis(),
                    Some(note),
                    Some(outcome),
                )
                .await;
            finished.announce(&id_owned);
        });
        self.log(id, kind, reason);
        self.finished(id);
    }

    fn finished(&mut self, id: &str) {
        if let Some(entry) = self.entries.remove(id) {
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
