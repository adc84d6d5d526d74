//! The single writer thread: takes every waiting job, applies them in one transaction,
//! commits once, answers each caller.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use bosun_core::{Event, next_state};
use bosun_proto::{Message, Millis, Outcome, State};
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use tokio::sync::oneshot;

use crate::records::{
    FleetRecord, HistoryEntry, InboxRecord, ProcessRecord, SentRecord, decode, encode,
};
use crate::{CHUNKS, FLEET, INBOX, INBOX_PENDING, META, OUTBOX, SENT, SINK_NEXT, StoreError, db};

/// The most jobs folded into one commit.
const MAX_BATCH: usize = 4096;

/// What became of a received message.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// New: recorded with this arrival seq.
    New(u64),
    /// Already in the inbox, in this state: ACK again, do not run again.
    Duplicate(State),
}

pub(crate) enum Op {
    Submit {
        messages: Vec<Message>,
        at: Millis,
    },
    SentEvent {
        id: String,
        event: Event,
        at: Millis,
        note: Option<String>,
        outcome: Option<Outcome>,
    },
    Notes {
        id: String,
        events: Vec<(Event, Millis, Option<String>)>,
    },
    Receive {
        message: Message,
        at: Millis,
    },
    Reject {
        message: Message,
        reason: String,
        at: Millis,
    },
    Start {
        id: String,
        at: Millis,
    },
    Finish {
        id: String,
        outcome: Outcome,
        reply: Option<Message>,
        at: Millis,
    },
    Absorb {
        message: Message,
        at: Millis,
        fleet: Option<FleetRecord>,
    },
    Prune {
        before: Millis,
    },
    SinkNext {
        id: String,
        next: Option<u64>,
    },
    Flush,
    Spawned {
        id: String,
        process: ProcessRecord,
    },
}

impl Op {
    /// Must this op be on disk before its caller hears back?
    fn durable(&self) -> bool {
        match self {
            Op::SentEvent { event, .. } => matches!(event, Event::Finished(_)),
            Op::Notes { .. } | Op::Prune { .. } | Op::SinkNext { .. } => false,
            _ => true,
        }
    }
}

pub(crate) enum OpResult {
    Done,
    Pruned(u64),
    Seqs(Vec<u64>),
    Receipt(Receipt),
}

type Reply = oneshot::Sender<Result<OpResult, StoreError>>;

pub(crate) enum Job {
    Op(Box<Op>, Reply),
    Close(oneshot::Sender<()>),
}

pub(crate) fn spawn(database: Arc<Database>, next_seq: u64) -> Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bosun-store".into())
        .spawn(move || run(database, rx, next_seq))
        .expect("spawn store writer thread");
    tx
}

struct Writer {
    next_seq: u64,
}

fn run(database: Arc<Database>, jobs: Receiver<Job>, next_seq: u64) {
    let mut writer = Writer { next_seq };
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        let first = match jobs.recv() {
            Ok(j) => j,
            Err(_) => break,
        };
        let mut batch: Vec<(Op, Reply)> = Vec::new();
        match first {
            Job::Op(op, reply) => batch.push((*op, reply)),
            Job::Close(done) => closing = Some(done),
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(Job::Op(op, reply)) => batch.push((*op, reply)),
                Ok(Job::Close(done)) => closing = Some(done),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let durable = closing.is_some() || batch.iter().any(|(op, _)| op.durable());
        writer.commit_batch(&database, batch, durable);
    }
    // Release the file before answering, so the caller may reopen it at once.
    drop(database);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

impl Writer {
    fn commit_batch(&mut self, database: &Database, batch: Vec<(Op, Reply)>, durable: bool) {
        let mut txn = match database.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let msg = e.to_string();
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Db(redb::Error::Corrupted(msg.clone()))));
                }
                return;
            }
        };
        if !durable {
            let _ = txn.set_durability(Durability::None);
        }
        let seq_before = self.next_seq;
        let mut results = Vec::with_capacity(batch.len());
        for (op, _) in &batch {
            results.push(self.apply(&txn, op));
        }
        let committed = (|| {
            txn.open_table(META)
                .map_err(db)?
                .insert("next_seq", self.next_seq)
                .map_err(db)?;
            txn.commit().map_err(db)
        })();
        match committed {
            Ok(()) => {
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                self.next_seq = seq_before;
                let msg = e.to_string();
                tracing::error!(error = %msg, "store commit failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(StoreError::Db(redb::Error::Corrupted(msg.clone()))));
                }
            }
        }
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn apply(&mut self, txn: &WriteTransaction, op: &Op) -> Result<OpResult, StoreError> {
        match op {
            Op::Submit { messages, at } => {
                let mut seqs = Vec::with_capacity(messages.len());
                for m in messages {
                    seqs.push(self.enqueue(txn, m, *at)?);
                }
                Ok(OpResult::Seqs(seqs))
            }
            Op::SentEvent {
                id,
                event,
                at,
                note,
                outcome,
            } => {
                apply_sent_event(txn, id, *event, *at, note.clone(), outcome.clone())?;
                Ok(OpResult::Done)
            }
            Op::Notes { id, events } => {
                for (event, at, note) in events {
                    apply_sent_event(txn, id, *event, *at, note.clone(), None)?;
                }
                Ok(OpResult::Done)
            }
            Op::Receive { message, at } => self.receive(txn, message, *at, None),
            Op::Reject {
                message,
                reason,
                at,
            } => self.receive(txn, message, *at, Some(reason)),
            Op::Start { id, at } => {
                update_inbox(txn, id, |r| {
                    push_state(&mut r.state, &mut r.history, Event::Started, *at, None);
                })?;
                Ok(OpResult::Done)
            }
            Op::Finish {
                id,
                outcome,
                reply,
                at,
            } => {
                let mut pending_seq = None;
                update_inbox(txn, id, |r| {
                    push_state(
                        &mut r.state,
                        &mut r.history,
                        Event::Finished(outcome.status),
                        *at,
                        outcome.error.clone(),
                    );
                    r.outcome = Some(outcome.clone());
                    pending_seq = Some(r.seq);
                })?;
                if let Some(seq) = pending_seq {
                    txn.open_table(INBOX_PENDING)
                        .map_err(db)?
                        .remove(seq)
                        .map_err(db)?;
                }
                let seqs = match reply {
                    Some(m) => vec![self.enqueue(txn, m, *at)?],
                    None => vec![],
                };
                Ok(OpResult::Seqs(seqs))
            }
            Op::Absorb {
                message: reply,
                at,
                fleet,
            } => {
                let receipt = {
                    let mut inbox = txn.open_table(INBOX).map_err(db)?;
                    let id = reply.id().to_string();
                    let existing = inbox
                        .get(id.as_str())
                        .map_err(db)?
                        .map(|v| decode::<InboxRecord>(&id, v.value()));
                    if let Some(rec) = existing {
                        let mut rec = rec?;
                        rec.arrivals += 1;
                        let state = rec.state;
                        inbox
                            .insert(id.as_str(), encode(&rec).as_slice())
                            .map_err(db)?;
                        return Ok(OpResult::Receipt(Receipt::Duplicate(state)));
                    }
                    let seq = self.take_seq();
                    let rec = InboxRecord {
                        seq,
                        message: reply.clone(),
                        state: State::Done,
                        history: vec![HistoryEntry {
                            state: State::Done,
                            at: *at,
                            note: None,
                        }],
                        arrivals: 1,
                        outcome: None,
                        process: None,
                    };
                    inbox
                        .insert(id.as_str(), encode(&rec).as_slice())
                        .map_err(db)?;
                    Receipt::New(seq)
                };
                if let (Some(prev), Some(n)) = (&reply.previous_message, reply.chunk) {
                    txn.open_table(CHUNKS)
                        .map_err(db)?
                        .insert((prev.as_str(), n), reply.data.concat().as_str())
                        .map_err(db)?;
                    // A chunk proves delivery too: the message is at least running.
                    apply_sent_event(txn, prev, Event::Started, *at, None, None)?;
                }
                if let (Some(prev), Some(outcome)) = (&reply.previous_message, &reply.result) {
                    apply_sent_event(
                        txn,
                        prev,
                        Event::Finished(outcome.status),
                        *at,
                        outcome.error.clone(),
                        Some(outcome.clone()),
                    )?;
                }
                if let Some(record) = fleet {
                    txn.open_table(FLEET)
                        .map_err(db)?
                        .insert(record.name.as_str(), encode(record).as_slice())
                        .map_err(db)?;
                }
                Ok(OpResult::Receipt(receipt))
            }
            Op::Prune { before } => Ok(OpResult::Pruned(prune(txn, *before)?)),
            Op::SinkNext { id, next } => {
                let mut table = txn.open_table(SINK_NEXT).map_err(db)?;
                match next {
                    Some(n) => table.insert(id.as_str(), *n).map_err(db)?,
                    None => table.remove(id.as_str()).map_err(db)?,
                };
                Ok(OpResult::Done)
            }
            Op::Flush => Ok(OpResult::Done),
            Op::Spawned { id, process } => {
                update_inbox(txn, id, |r| r.process = Some(process.clone()))?;
                Ok(OpResult::Done)
            }
        }
    }

    fn enqueue(
        &mut self,
        txn: &WriteTransaction,
        m: &Message,
        at: Millis,
    ) -> Result<u64, StoreError> {
        let id = m.id().to_string();
        // An id already queued (two submits of the same id at once) keeps its first entry.
        let existing = txn
            .open_table(SENT)
            .map_err(db)?
            .get(id.as_str())
            .map_err(db)?
            .map(|v| decode::<SentRecord>(&id, v.value()));
        if let Some(rec) = existing {
            return Ok(rec?.seq);
        }
        let seq = self.take_seq();
        let rec = SentRecord {
            seq,
            message: m.clone(),
            state: State::Queued,
            history: vec![HistoryEntry {
                state: State::Queued,
                at,
                note: None,
            }],
            sends: 0,
            in_outbox: true,
            outcome: None,
        };
        txn.open_table(SENT)
            .map_err(db)?
            .insert(id.as_str(), encode(&rec).as_slice())
            .map_err(db)?;
        txn.open_table(OUTBOX)
            .map_err(db)?
            .insert(seq, id.as_str())
            .map_err(db)?;
        Ok(seq)
    }

    fn receive(
        &mut self,
        txn: &WriteTransaction,
        message: &Message,
        at: Millis,
        rejected: Option<&String>,
    ) -> Result<OpResult, StoreError> {
        let id = message.id().to_string();
        let mut inbox = txn.open_table(INBOX).map_err(db)?;
        let existing = inbox
            .get(id.as_str())
            .map_err(db)?
            .map(|v| decode::<InboxRecord>(&id, v.value()));
        if let Some(rec) = existing {
            let mut rec = rec?;
            rec.arrivals += 1;
            let state = rec.state;
            inbox
                .insert(id.as_str(), encode(&rec).as_slice())
                .map_err(db)?;
            return Ok(OpResult::Receipt(Receipt::Duplicate(state)));
        }
        let seq = self.take_seq();
        let mut rec = InboxRecord {
            seq,
            message: message.clone(),
            state: State::Received,
            history: vec![HistoryEntry {
                state: State::Received,
                at,
                note: None,
            }],
            arrivals: 1,
            outcome: None,
            process: None,
        };
        if let Some(reason) = rejected {
            push_state(
                &mut rec.state,
                &mut rec.history,
                Event::Finished(bosun_proto::Status::Rejected),
                at,
                Some(reason.clone()),
            );
        } else {
            txn.open_table(INBOX_PENDING)
                .map_err(db)?
                .insert(seq, id.as_str())
                .map_err(db)?;
        }
        inbox
            .insert(id.as_str(), encode(&rec).as_slice())
            .map_err(db)?;
        Ok(OpResult::Receipt(Receipt::New(seq)))
    }
}

fn push_state(
    state: &mut State,
    history: &mut Vec<HistoryEntry>,
    event: Event,
    at: Millis,
    note: Option<String>,
) -> bool {
    match next_state(*state, event) {
        Some(next) => {
            *state = next;
            history.push(HistoryEntry {
                state: next,
                at,
                note,
            });
            true
        }
        None => {
            // A late note (the ACK is recorded after the "running" note overtook it):
            // the state stays, but the history gets the step, in lifecycle order.
            let late = match event {
                Event::Sent => Some(State::Sent),
                Event::Acked => Some(State::Acked),
                _ => None,
            };
            if let Some(step) = late
                && !history.iter().any(|h| h.state == step)
            {
                // In lifecycle order: clocks of two nodes need not agree.
                let rank = bosun_core::lifecycle::rank(step);
                let at_index = history
                    .iter()
                    .position(|h| bosun_core::lifecycle::rank(h.state) > rank)
                    .unwrap_or(history.len());
                history.insert(
                    at_index,
                    HistoryEntry {
                        state: step,
                        at,
                        note,
                    },
                );
            }
            false
        }
    }
}

fn update_inbox(
    txn: &WriteTransaction,
    id: &str,
    f: impl FnOnce(&mut InboxRecord),
) -> Result<(), StoreError> {
    let mut inbox = txn.open_table(INBOX).map_err(db)?;
    let mut rec: InboxRecord = match inbox.get(id).map_err(db)? {
        Some(v) => decode(id, v.value())?,
        None => return Ok(()),
    };
    f(&mut rec);
    inbox.insert(id, encode(&rec).as_slice()).map_err(db)?;
    Ok(())
}

fn apply_sent_event(
    txn: &WriteTransaction,
    id: &str,
    event: Event,
    at: Millis,
    note: Option<String>,
    outcome: Option<Outcome>,
) -> Result<(), StoreError> {
    let mut sent = txn.open_table(SENT).map_err(db)?;
    let mut rec: SentRecord = match sent.get(id).map_err(db)? {
        Some(v) => decode(id, v.value())?,
        None => return Ok(()),
    };
    if event == Event::Sent {
        rec.sends += 1;
    }
    let moved = push_state(&mut rec.state, &mut rec.history, event, at, note.clone());
    // Resends after an ACK timeout are worth a history line; quiet resends to an
    // unreachable node only count, so a node offline for days does not grow the record.
    if !moved && event == Event::Sent && note.is_some() {
        rec.history.push(HistoryEntry {
            state: State::Sent,
            at,
            note,
        });
    }
    if moved && let Some(o) = outcome {
        rec.outcome = Some(o);
    }
    let leaves_outbox =
        matches!(event, Event::Acked | Event::Finished(_)) || rec.state.is_terminal();
    if leaves_outbox && rec.in_outbox {
        rec.in_outbox = false;
        txn.open_table(OUTBOX)
            .map_err(db)?
            .remove(rec.seq)
            .map_err(db)?;
    }
    sent.insert(id, encode(&rec).as_slice()).map_err(db)?;
    Ok(())
}

/// Forget finished messages last touched before `before`: sent records no longer in the
/// outbox and inbox records no longer pending, with their chunks. Returns how many.
fn prune(txn: &WriteTransaction, before: Millis) -> Result<u64, StoreError> {
    let last_at = |history: &[HistoryEntry]| history.iter().map(|h| h.at).max().unwrap_or(0);
    let mut old_sent = Vec::new();
    {
        let sent = txn.open_table(SENT).map_err(db)?;
        for entry in sent.iter().map_err(db)? {
            let (id, v) = entry.map_err(db)?;
            let rec: SentRecord = decode(id.value(), v.value())?;
            if !rec.in_outbox && rec.state.is_terminal() && last_at(&rec.history) < before {
                old_sent.push(id.value().to_string());
            }
        }
    }
    let mut old_inbox = Vec::new();
    {
        let inbox = txn.open_table(INBOX).map_err(db)?;
        for entry in inbox.iter().map_err(db)? {
            let (id, v) = entry.map_err(db)?;
            let rec: InboxRecord = decode(id.value(), v.value())?;
            let already_small =
                rec.outcome.is_none() && rec.message.data.is_empty() && rec.history.len() <= 1;
            if rec.state.is_terminal() && last_at(&rec.history) < before && !already_small {
                old_inbox.push(id.value().to_string());
            }
        }
    }
    let mut sent = txn.open_table(SENT).map_err(db)?;
    let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
    for id in &old_sent {
        sent.remove(id.as_str()).map_err(db)?;
        chunks
            .retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)
            .map_err(db)?;
    }
    // Received messages shrink to a tombstone instead of going: the id must still be
    // known, so a resend that arrives after a long outage is refused as a duplicate and
    // never runs twice.
    let mut inbox = txn.open_table(INBOX).map_err(db)?;
    for id in &old_inbox {
        let Some(bytes) = inbox
            .get(id.as_str())
            .map_err(db)?
            .map(|v| v.value().to_vec())
        else {
            continue;
        };
        let rec: InboxRecord = decode(id, &bytes)?;
        let tombstone = InboxRecord {
            seq: rec.seq,
            message: Message {
                id: rec.message.id.clone(),
                from_node: rec.message.from_node.clone(),
                method: rec.message.method.clone(),
                ..Default::default()
            },
            state: rec.state,
            history: rec.history.last().cloned().into_iter().collect(),
            arrivals: rec.arrivals,
            outcome: None,
            process: None,
        };
        inbox
            .insert(id.as_str(), encode(&tombstone).as_slice())
            .map_err(db)?;
    }
    Ok((old_sent.len() + old_inbox.len()) as u64)
}
