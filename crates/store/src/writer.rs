//! The single writer thread: takes every waiting job, applies them in one transaction,
//! commits once, answers each caller.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use bosun_core::{Event, next_state};
use bosun_proto::{Message, Millis, Outcome, State};
use redb::{Database, Durability, ReadableTable};
use tokio::sync::{oneshot, watch};

use crate::health::{self, Fault, Health};
use crate::records::{
    FleetRecord, HistoryEntry, InboxRecord, ProcessRecord, ScheduleRecord, SentRecord, SinkDue,
    SinkWrite, decode, encode,
};
use crate::tables::Tables;
use crate::{
    AWAITING, CHUNKS, FLEET, INBOX, INBOX_PENDING, META, OUTBOX, SCHEDULES, SENT, SINK_COMPLETE,
    SINK_DUE, SINK_NEXT, SharedDb, StoreError, db,
};

/// The most jobs folded into one commit.
const MAX_BATCH: usize = 4096;

/// How long a run's process-group record ([`Op::Spawned`]) is held for the next durable
/// commit before the writer commits it alone. A short command's finish, durable anyway,
/// usually comes first and carries it: one fsynced commit fewer per command.
const SPAWNED_DURABLE_WITHIN: Duration = Duration::from_millis(50);

/// What became of a received message.
#[derive(Debug, Clone, PartialEq)]
pub enum Receipt {
    /// New: recorded with this arrival seq.
    New(u64),
    /// Already in the inbox, in this state: ACK again, do not run again.
    Duplicate(State),
}

/// What a destination knows of one message, for a sender's query.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Its state here; `None` when it never arrived.
    pub state: Option<State>,
    /// Its outcome, when final and still kept.
    pub outcome: Option<Outcome>,
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
        pull_at: Option<Millis>,
    },
    Receive {
        message: Message,
        at: Millis,
        /// Started at once, in the same commit.
        start: bool,
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
        /// The run's start, when it was not recorded before the run (a method without
        /// side effects): recorded now, with the finish, unless the message was settled
        /// meanwhile.
        unrecorded_start: Option<Millis>,
    },
    Absorb {
        message: Message,
        at: Millis,
        fleet: Option<FleetRecord>,
    },
    Prune {
        batch: Box<crate::prune::PruneBatch>,
    },
    Flush,
    SinkBegin {
        id: String,
        write: SinkWrite,
    },
    SinkDone {
        id: String,
        next: u64,
    },
    ScheduleRun {
        id: String,
        repeat: Message,
        at: Millis,
    },
    SettleHere {
        id: String,
        event: Event,
        at: Millis,
        note: Option<String>,
        outcome: Outcome,
    },
    Cancel {
        id: String,
        from: String,
        node: String,
        at: Millis,
    },
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
            Op::Notes { .. } | Op::Prune { .. } => false,
            // Held for the next durable commit (see [`SPAWNED_DURABLE_WITHIN`]).
            Op::Spawned { .. } => false,
            _ => true,
        }
    }
}

pub(crate) enum OpResult {
    Done,
    Started(bool),
    Answer(Answer),
    Pruned(u64),
    Seqs(Vec<u64>),
    Receipt(Receipt),
}

type Reply = oneshot::Sender<Result<OpResult, StoreError>>;

pub(crate) enum Job {
    Op(Box<Op>, Reply),
    Close(oneshot::Sender<()>),
}

/// What the writer needs besides the database: where the file is, the handle readers
/// share (swapped when the file is reopened), and where to tell its health.
pub(crate) struct WriterParts {
    pub path: PathBuf,
    pub shared: SharedDb,
    pub health: watch::Sender<Health>,
    pub cache_bytes: usize,
    pub backlog: Arc<Backlog>,
    pub queued: QueuedSinkSlot,
    pub commits: Arc<CommitCounts>,
}

/// Commits made since the store opened, counted by the writer after each succeeds.
#[derive(Default, Debug)]
pub(crate) struct CommitCounts {
    pub durable: std::sync::atomic::AtomicU64,
    pub lazy: std::sync::atomic::AtomicU64,
}

/// Told of the messages each commit newly queued in the outbox, with their seqs, in seq
/// order, on the writer thread right after the commit (see [`crate::Store::on_queued`]).
/// It must return at once: it holds up every write while it runs.
pub type QueuedSink = Box<dyn Fn(Vec<(u64, Message)>) + Send + Sync>;

/// Where the store keeps its [`QueuedSink`], shared by the handles and the writer.
pub(crate) type QueuedSinkSlot = Arc<std::sync::Mutex<Option<QueuedSink>>>;

/// Writes asked for and not yet applied. Callers that can wait do, while it is past
/// [`Backlog::ROOM`] ([`crate::Store::room`]), so a writer that falls behind slows its
/// producers down instead of letting the queue grow without bound.
#[derive(Default)]
pub(crate) struct Backlog {
    queued: std::sync::atomic::AtomicUsize,
    room: tokio::sync::Notify,
}

impl Backlog {
    /// Past this many queued writes, producers that can wait do.
    pub const ROOM: usize = 4096;

    pub fn queued(&self) -> usize {
        self.queued.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn add(&self) {
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn done(&self, n: usize) {
        let before = self
            .queued
            .fetch_sub(n, std::sync::atomic::Ordering::SeqCst);
        if before.saturating_sub(n) < Self::ROOM {
            self.room.notify_waiters();
        }
    }

    /// Wait until the backlog is below [`Backlog::ROOM`].
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            if self.queued() < Self::ROOM {
                return;
            }
            notified.await;
        }
    }
}

/// The writer's queue, counting what waits in it.
#[derive(Clone)]
pub(crate) struct JobQueue {
    jobs: Sender<Job>,
    pub backlog: Arc<Backlog>,
}

impl JobQueue {
    pub fn send(&self, job: Job) -> Result<(), std::sync::mpsc::SendError<Job>> {
        if matches!(job, Job::Op(..)) {
            self.backlog.add();
        }
        let sent = self.jobs.send(job);
        if sent.is_err() {
            self.backlog.done(1);
        }
        sent
    }
}

/// A full disk is not retried before this much is free again.
pub(crate) const RECOVER_MIN_FREE: u64 = 1024 * 1024;
/// The first wait before reopening after a fault; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Open (or create) the database file, create the tables, and read the next seq.
pub(crate) fn open_database(
    path: &Path,
    cache_bytes: usize,
) -> Result<(Database, u64), StoreError> {
    let database = match Database::builder().set_cache_size(cache_bytes).create(path) {
        Ok(d) => d,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::Locked {
                path: path.display().to_string(),
            });
        }
        Err(e) => return Err(fault_or_db(e.into(), path)),
    };
    let txn = database
        .begin_write()
        .map_err(|e| fault_or_db(e.into(), path))?;
    let next_seq = {
        txn.open_table(OUTBOX).map_err(db)?;
        txn.open_table(SENT).map_err(db)?;
        txn.open_table(INBOX).map_err(db)?;
        txn.open_table(INBOX_PENDING).map_err(db)?;
        txn.open_table(CHUNKS).map_err(db)?;
        txn.open_table(FLEET).map_err(db)?;
        txn.open_table(SINK_NEXT).map_err(db)?;
        txn.open_table(SINK_DUE).map_err(db)?;
        txn.open_table(SCHEDULES).map_err(db)?;
        txn.open_table(AWAITING).map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        meta.get("next_seq")
            .map_err(db)?
            .map(|v| v.value())
            .unwrap_or(1)
    };
    txn.commit().map_err(|e| fault_or_db(e.into(), path))?;
    Ok((database, next_seq))
}

/// A redb error as the store reports it: a full disk or an I/O error said as such.
fn fault_or_db(e: redb::Error, path: &Path) -> StoreError {
    match health::classify(&e, path) {
        Some(fault) => fault.error(),
        None => StoreError::Db(e),
    }
}

/// The fault behind a store error, when it is a storage failure.
fn fault_of(e: &StoreError, path: &Path) -> Option<Fault> {
    match e {
        StoreError::Db(e) => health::classify(e, path),
        StoreError::DiskFull { path, free_bytes } => Some(Fault::DiskFull {
            path: path.clone(),
            free_bytes: *free_bytes,
        }),
        StoreError::Io { path, reason } => Some(Fault::Io {
            path: path.clone(),
            reason: reason.clone(),
        }),
        _ => None,
    }
}

pub(crate) fn spawn(database: Arc<Database>, next_seq: u64, parts: WriterParts) -> JobQueue {
    let (tx, rx) = std::sync::mpsc::channel();
    let backlog = parts.backlog.clone();
    std::thread::Builder::new()
        .name("bosun-store".into())
        .spawn(move || run(database, rx, next_seq, parts))
        .expect("spawn store writer thread");
    JobQueue { jobs: tx, backlog }
}

struct Writer {
    next_seq: u64,
    /// Messages the batch being applied queued in the outbox, for the [`QueuedSink`].
    queued: Vec<(u64, Message)>,
    database: Option<Arc<Database>>,
    parts: WriterParts,
    /// Set after a storage failure until the database is open again.
    fault: Option<Fault>,
    /// The database could not be reopened for a reason other than space.
    failed: Option<String>,
    backoff: Duration,
    next_try: Instant,
    /// Process-group records waiting for the next durable commit, not applied yet (so no
    /// reader sees one before it is durable), and when the writer commits them alone.
    held: Vec<(Op, Reply)>,
    held_until: Option<Instant>,
}

fn run(database: Arc<Database>, jobs: Receiver<Job>, next_seq: u64, parts: WriterParts) {
    let mut writer = Writer {
        next_seq,
        queued: Vec::new(),
        database: Some(database),
        parts,
        fault: None,
        failed: None,
        backoff: MIN_BACKOFF,
        next_try: Instant::now(),
        held: Vec::new(),
        held_until: None,
    };
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        if writer.held_until.is_some_and(|t| Instant::now() >= t) {
            // No durable commit came to carry them: commit them alone.
            writer.write(Vec::new(), true);
        }
        let retrying = writer.fault.is_some() && writer.failed.is_none();
        let wake = [retrying.then_some(writer.next_try), writer.held_until]
            .into_iter()
            .flatten()
            .min();
        let first = if let Some(wake) = wake {
            let wait = wake.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(j) => Some(j),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(j) => Some(j),
                Err(_) => break,
            }
        };
        if writer.fault.is_some() && writer.failed.is_none() && Instant::now() >= writer.next_try {
            writer.try_reopen();
        }
        let Some(first) = first else { continue };
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
        writer.write(batch, durable);
    }
    // A store dropped without `close` still gets what was held.
    if !writer.held.is_empty() {
        writer.write(Vec::new(), true);
    }
    // Release the file before answering, so the caller may reopen it at once.
    drop(writer);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

impl Writer {
    /// Commit `batch` (durably if asked), or refuse it while the store is down. A durable
    /// commit carries the held process-group records first (queued before anything in
    /// `batch`); a batch that need not be durable leaves its own held.
    fn write(&mut self, batch: Vec<(Op, Reply)>, durable: bool) {
        let batch = if durable {
            self.held_until = None;
            let mut all = std::mem::take(&mut self.held);
            all.extend(batch);
            all
        } else {
            let (spawned, rest): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|(op, _)| matches!(op, Op::Spawned { .. }));
            if !spawned.is_empty() {
                self.held.extend(spawned);
                self.held_until
                    .get_or_insert_with(|| Instant::now() + SPAWNED_DURABLE_WITHIN);
            }
            rest
        };
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        if let Some(error) = self.refusal() {
            for (_, reply) in batch {
                let _ = reply.send(Err(error()));
            }
        } else {
            self.commit_batch(batch, durable);
        }
        self.parts.backlog.done(n);
    }

    /// While the store is down, what every write is answered with.
    fn refusal(&self) -> Option<impl Fn() -> StoreError + '_> {
        if self.fault.is_none() && self.failed.is_none() {
            return None;
        }
        let free = self
            .fault
            .as_ref()
            .and_then(|f| {
                matches!(f, Fault::DiskFull { .. }).then(|| health::free_bytes(&self.parts.path))
            })
            .flatten();
        Some(move || match (&self.failed, &self.fault) {
            (Some(reason), _) => StoreError::Io {
                path: self.parts.path.display().to_string(),
                reason: format!("the database cannot be reopened: {reason}"),
            },
            (None, Some(Fault::DiskFull { path, free_bytes })) => StoreError::DiskFull {
                path: path.clone(),
                free_bytes: free.unwrap_or(*free_bytes),
            },
            (None, Some(fault)) => fault.error(),
            (None, None) => StoreError::Closed,
        })
    }

    /// A write failed in the storage: refuse writes from now on, tell it, and retry
    /// opening the database with backoff.
    fn enter_fault(&mut self, fault: Fault) {
        tracing::error!(error = %fault.error(), "store write failed; refusing writes until the database is reopened");
        self.backoff = MIN_BACKOFF;
        self.next_try = Instant::now() + self.backoff;
        self.parts
            .health
            .send_replace(Health::Faulted(fault.clone()));
        self.fault = Some(fault);
    }

    fn retry_later(&mut self) {
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.next_try = Instant::now() + self.backoff;
    }

    /// Close the database and open it again (redb wants that after an I/O error); on
    /// success writes go through again.
    fn try_reopen(&mut self) {
        let path = self.parts.path.clone();
        if let Some(Fault::DiskFull { .. }) = &self.fault {
            let free = health::free_bytes(&path).unwrap_or(0);
            if free < RECOVER_MIN_FREE {
                self.fault = Some(Fault::DiskFull {
                    path: path.display().to_string(),
                    free_bytes: free,
                });
                self.retry_later();
                return;
            }
        }
        // Readers get the fault while the file is closed.
        let old = self.parts.shared.write().expect("store lock").take();
        drop(old);
        if let Some(database) = self.database.take() {
            // A reader may still hold a clone for a moment; wait for it, briefly.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut database = database;
            loop {
                match Arc::try_unwrap(database) {
                    Ok(d) => {
                        drop(d);
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        database = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        // Keep it; the next attempt tries again.
                        self.database = Some(still_shared);
                        self.retry_later();
                        return;
                    }
                }
            }
        }
        match open_database(&path, self.parts.cache_bytes) {
            Ok((database, next_seq)) => {
                // Seqs handed out in commits that were lost are not reused either way.
                self.next_seq = self.next_seq.max(next_seq);
                let database = Arc::new(database);
                *self.parts.shared.write().expect("store lock") = Some(database.clone());
                self.database = Some(database);
                self.fault = None;
                self.backoff = MIN_BACKOFF;
                tracing::info!(path = %path.display(), "store reopened; writes go through again");
                self.parts.health.send_replace(Health::Ok);
            }
            Err(e) => match fault_of(&e, &path) {
                Some(fault @ Fault::DiskFull { .. }) => {
                    self.fault = Some(fault);
                    self.retry_later();
                }
                _ if matches!(e, StoreError::Locked { .. }) => self.retry_later(),
                _ => {
                    let reason = e.to_string();
                    tracing::error!(error = %reason, "the store cannot be reopened");
                    self.parts.health.send_replace(Health::Failed {
                        reason: reason.clone(),
                    });
                    self.failed = Some(reason);
                }
            },
        }
    }

    /// Apply the batch in one transaction and commit it. An op that fails leaves nothing
    /// behind: the transaction is dropped and the batch applied again without it. A
    /// storage failure fails the whole batch and puts the writer in its fault state.
    fn commit_batch(&mut self, batch: Vec<(Op, Reply)>, durable: bool) {
        let Some(database) = self.database.clone() else {
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Closed));
            }
            return;
        };
        let seq_before = self.next_seq;
        // Errors of ops left out of the batch, by position.
        let mut failed: Vec<Option<StoreError>> = batch.iter().map(|_| None).collect();
        let outcome = loop {
            self.next_seq = seq_before;
            self.queued.clear();
            let mut txn = match database.begin_write() {
                Ok(t) => t,
                Err(e) => break Err(fault_or_db(e.into(), &self.parts.path)),
            };
            if !durable {
                let _ = txn.set_durability(Durability::None);
            }
            let mut results: Vec<Option<Result<OpResult, StoreError>>> = Vec::new();
            let mut new_failure = false;
            let mut storage: Option<StoreError> = None;
            let mut seq_written: Result<(), StoreError> = Ok(());
            {
                // Each table is opened once for the whole batch, and closed before the
                // transaction is committed or aborted.
                let mut tables = Tables::new(&txn);
                for (i, (op, _)) in batch.iter().enumerate() {
                    if failed[i].is_some() {
                        results.push(None);
                        continue;
                    }
                    let result = self.apply(&mut tables, op);
                    if let Err(e) = &result {
                        if fault_of(e, &self.parts.path).is_some() {
                            storage = result.err();
                            break;
                        }
                        new_failure = true;
                    }
                    results.push(Some(result));
                }
                // Written only when this batch took seqs: the stored value always equals
                // the one in memory after a commit, and a commit that leaves META alone
                // writes a page fewer.
                if storage.is_none() && !new_failure && self.next_seq != seq_before {
                    seq_written = tables.meta().and_then(|meta| {
                        meta.insert("next_seq", self.next_seq).map_err(db)?;
                        Ok(())
                    });
                }
            }
            if let Some(e) = storage {
                let _ = txn.abort();
                break Err(e);
            }
            if new_failure {
                // Drop the partial writes of the failed ops with the whole transaction,
                // then apply the others again.
                let _ = txn.abort();
                for (i, r) in results.into_iter().enumerate() {
                    if let Some(Err(e)) = r {
                        failed[i] = Some(e);
                    }
                }
                continue;
            }
            let committed = seq_written.and_then(|()| txn.commit().map_err(db));
            if committed.is_ok() {
                let count = match durable {
                    true => &self.parts.commits.durable,
                    false => &self.parts.commits.lazy,
                };
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            break committed.map(|()| results);
        };
        match outcome {
            Ok(results) => {
                // One look at the sink per commit, none per message.
                let queued = std::mem::take(&mut self.queued);
                if !queued.is_empty()
                    && let Some(sink) = &*self.parts.queued.lock().expect("queued sink lock")
                {
                    sink(queued);
                }
                for (i, ((_, reply), result)) in batch.into_iter().zip(results).enumerate() {
                    let answer = match result {
                        Some(r) => r,
                        None => Err(failed[i].take().unwrap_or(StoreError::Closed)),
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                self.next_seq = seq_before;
                self.queued.clear();
                let fault = fault_of(&e, &self.parts.path);
                tracing::error!(error = %e, "store commit failed");
                let error = |i: usize| {
                    failed[i].take().unwrap_or_else(|| match &fault {
                        Some(f) => f.error(),
                        None => StoreError::Io {
                            path: self.parts.path.display().to_string(),
                            reason: e.to_string(),
                        },
                    })
                };
                let mut error = error;
                let answers: Vec<StoreError> = (0..batch.len()).map(&mut error).collect();
                // Health first, so a caller that hears of the failure sees the fault.
                if let Some(fault) = fault {
                    self.enter_fault(fault);
                }
                for ((_, reply), answer) in batch.into_iter().zip(answers) {
                    let _ = reply.send(Err(answer));
                }
            }
        }
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn apply(&mut self, t: &mut Tables<'_>, op: &Op) -> Result<OpResult, StoreError> {
        match op {
            Op::Submit { messages, at } => {
                // Every check before any write: a refused message leaves nothing behind.
                {
                    let sent = t.sent()?;
                    for m in messages {
                        let id = m.id();
                        if let Some(v) = sent.get(id).map_err(db)? {
                            let rec: SentRecord = decode(id, v.value())?;
                            if !same_submission(&rec.message, m) {
                                return Err(StoreError::IdConflict { id: id.to_string() });
                            }
                        }
                    }
                }
                let mut seqs = Vec::with_capacity(messages.len());
                for m in messages {
                    let fresh = self.next_seq;
                    let seq = self.enqueue(t, m, *at)?;
                    if seq >= fresh {
                        start_schedule(t, m, *at)?;
                    }
                    seqs.push(seq);
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
                update_sent(t, id, |t, rec| {
                    sent_event(t, rec, id, *event, *at, note.clone(), outcome.clone())
                })?;
                Ok(OpResult::Done)
            }
            Op::Notes {
                id,
                events,
                pull_at,
            } => {
                update_sent(t, id, |t, rec| {
                    for (event, at, note) in events {
                        sent_event(t, rec, id, *event, *at, note.clone(), None)?;
                    }
                    match pull_at {
                        Some(due) => schedule_pull(t, rec, id, *due),
                        None => Ok(()),
                    }
                })?;
                Ok(OpResult::Done)
            }
            Op::Receive { message, at, start } => {
                let arrival = if *start {
                    Arrival::Started
                } else {
                    Arrival::Queued
                };
                self.receive(t, message, *at, arrival)
            }
            Op::Reject {
                message,
                reason,
                at,
            } => self.receive(t, message, *at, Arrival::Rejected(reason)),
            Op::Start { id, at } => {
                let mut started = true;
                update_inbox(t, id, |r| {
                    if r.state.is_terminal() {
                        started = false;
                    } else {
                        push_state(&mut r.state, &mut r.history, Event::Started, *at, None);
                    }
                })?;
                Ok(OpResult::Started(started))
            }
            Op::Finish {
                id,
                outcome,
                reply,
                at,
                unrecorded_start,
            } => {
                let mut pending_seq = None;
                let mut settled = false;
                update_inbox(t, id, |r| {
                    if let Some(started) = unrecorded_start {
                        if r.state.is_terminal() {
                            // Cancelled by its sender while it ran: a run without side
                            // effects changed nothing, so the cancel stands.
                            settled = true;
                            return;
                        }
                        push_state(&mut r.state, &mut r.history, Event::Started, *started, None);
                    }
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
                if settled {
                    return Ok(OpResult::Started(false));
                }
                if let Some(seq) = pending_seq {
                    t.inbox_pending()?.remove(seq).map_err(db)?;
                }
                let seqs = match reply {
                    Some(m) => vec![self.enqueue(t, m, *at)?],
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
                    let inbox = t.inbox()?;
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
                    t.chunks()?
                        .insert((prev.as_str(), n), reply.data.concat().as_str())
                        .map_err(db)?;
                    // A chunk proves delivery too: the message is at least running.
                    update_sent(t, prev, |t, rec| {
                        sent_event(t, rec, prev, Event::Started, *at, None, None)
                    })?;
                }
                if let (Some(prev), Some(outcome)) = (&reply.previous_message, &reply.result) {
                    // A result proves the message arrived: its history gets the step even
                    // when the ACK was lost or overtaken.
                    update_sent(t, prev, |t, rec| {
                        sent_event(t, rec, prev, Event::Acked, *at, None, None)?;
                        // When it started, for a run too short to have sent a note.
                        if let Some(started) = outcome.started_at {
                            sent_event(t, rec, prev, Event::Started, started, None, None)?;
                        }
                        sent_event(
                            t,
                            rec,
                            prev,
                            Event::Finished(outcome.status),
                            *at,
                            outcome.error.clone(),
                            Some(outcome.clone()),
                        )
                    })?;
                }
                if reply.wants_sink() {
                    mark_sink_due(t, reply)?;
                }
                if let Some(record) = fleet {
                    t.fleet()?
                        .insert(record.name.as_str(), encode(record).as_slice())
                        .map_err(db)?;
                }
                Ok(OpResult::Receipt(receipt))
            }
            Op::Prune { batch } => {
                // Pruning opens the tables itself.
                t.close();
                Ok(OpResult::Pruned(crate::prune::apply(t.txn(), batch)?))
            }
            Op::Flush => Ok(OpResult::Done),
            Op::SinkBegin { id, write } => {
                let table = t.sink_due()?;
                let due: Option<SinkDue> = table
                    .get(id.as_str())
                    .map_err(db)?
                    .map(|v| decode(id, v.value()))
                    .transpose()?;
                if let Some(mut due) = due {
                    due.write = Some(write.clone());
                    table
                        .insert(id.as_str(), encode(&due).as_slice())
                        .map_err(db)?;
                }
                Ok(OpResult::Done)
            }
            Op::Spawned { id, process } => {
                update_inbox(t, id, |r| r.process = Some(process.clone()))?;
                Ok(OpResult::Done)
            }
            Op::SinkDone { id, next } => {
                sink_done(t, id, *next)?;
                Ok(OpResult::Done)
            }
            Op::ScheduleRun { id, repeat, at } => {
                let record: Option<ScheduleRecord> = t
                    .schedules()?
                    .get(id.as_str())
                    .map_err(db)?
                    .map(|v| decode(id, v.value()))
                    .transpose()?;
                let Some(mut record) = record.filter(|r| r.schedule.is_due(*at)) else {
                    return Ok(OpResult::Seqs(vec![]));
                };
                let seq = self.enqueue(t, repeat, *at)?;
                let schedules = t.schedules()?;
                if record.schedule.advance(*at) {
                    schedules
                        .insert(id.as_str(), encode(&record).as_slice())
                        .map_err(db)?;
                } else {
                    schedules.remove(id.as_str()).map_err(db)?;
                }
                Ok(OpResult::Seqs(vec![seq]))
            }
            Op::SettleHere {
                id,
                event,
                at,
                note,
                outcome,
            } => {
                update_sent(t, id, |t, rec| {
                    sent_event(t, rec, id, *event, *at, note.clone(), Some(outcome.clone()))?;
                    if rec.state.is_terminal() && rec.outcome.as_ref() == Some(outcome) {
                        rec.settled_here = true;
                    }
                    Ok(())
                })?;
                Ok(OpResult::Done)
            }
            Op::Cancel { id, from, node, at } => self.cancel(t, id, from, node, *at),
        }
    }

    /// See [`crate::Store::cancel`].
    fn cancel(
        &mut self,
        t: &mut Tables<'_>,
        id: &str,
        from: &str,
        node: &str,
        at: Millis,
    ) -> Result<OpResult, StoreError> {
        let inbox = t.inbox()?;
        let existing = inbox
            .get(id)
            .map_err(db)?
            .map(|v| decode::<InboxRecord>(id, v.value()));
        let cancelled = |why: &str| {
            Outcome::bare(
                bosun_proto::Status::Cancelled,
                node,
                format!("cancelled by its sender {from}: {why}"),
                at,
            )
        };
        match existing {
            Some(rec) => {
                let mut rec = rec?;
                if rec.state != State::Received {
                    return Ok(OpResult::Answer(Answer {
                        state: Some(rec.state),
                        outcome: rec.outcome,
                    }));
                }
                let outcome = cancelled("it had arrived but not started");
                push_state(
                    &mut rec.state,
                    &mut rec.history,
                    Event::Finished(bosun_proto::Status::Cancelled),
                    at,
                    outcome.error.clone(),
                );
                rec.outcome = Some(outcome.clone());
                inbox.insert(id, encode(&rec).as_slice()).map_err(db)?;
                t.inbox_pending()?.remove(rec.seq).map_err(db)?;
                Ok(OpResult::Answer(Answer {
                    state: Some(State::Cancelled),
                    outcome: Some(outcome),
                }))
            }
            None => {
                // Remembered, so that a copy still on its way never runs.
                let outcome = cancelled("it had not arrived");
                let seq = self.take_seq();
                let rec = InboxRecord {
                    seq,
                    message: Message {
                        id: Some(id.to_string()),
                        from_node: Some(from.to_string()),
                        ..Default::default()
                    },
                    state: State::Cancelled,
                    history: vec![HistoryEntry {
                        state: State::Cancelled,
                        at,
                        note: outcome.error.clone(),
                    }],
                    arrivals: 0,
                    outcome: Some(outcome.clone()),
                    process: None,
                };
                inbox.insert(id, encode(&rec).as_slice()).map_err(db)?;
                Ok(OpResult::Answer(Answer {
                    state: Some(State::Cancelled),
                    outcome: Some(outcome),
                }))
            }
        }
    }

    fn enqueue(&mut self, t: &mut Tables<'_>, m: &Message, at: Millis) -> Result<u64, StoreError> {
        let id = m.id().to_string();
        // An id already queued (two submits of the same id at once) keeps its first entry.
        let existing = t
            .sent()?
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
            settled_here: false,
            pull_at: None,
            disagreement: None,
        };
        t.sent()?
            .insert(id.as_str(), encode(&rec).as_slice())
            .map_err(db)?;
        t.outbox()?.insert(seq, id.as_str()).map_err(db)?;
        self.queued.push((seq, m.clone()));
        Ok(seq)
    }

    fn receive(
        &mut self,
        t: &mut Tables<'_>,
        message: &Message,
        at: Millis,
        arrival: Arrival<'_>,
    ) -> Result<OpResult, StoreError> {
        let id = message.id().to_string();
        let inbox = t.inbox()?;
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
        match arrival {
            Arrival::Rejected(reason) => {
                push_state(
                    &mut rec.state,
                    &mut rec.history,
                    Event::Finished(bosun_proto::Status::Rejected),
                    at,
                    Some(reason.clone()),
                );
            }
            Arrival::Queued | Arrival::Started => {
                if matches!(arrival, Arrival::Started) {
                    push_state(&mut rec.state, &mut rec.history, Event::Started, at, None);
                }
                t.inbox_pending()?.insert(seq, id.as_str()).map_err(db)?;
            }
        }
        t.inbox()?
            .insert(id.as_str(), encode(&rec).as_slice())
            .map_err(db)?;
        Ok(OpResult::Receipt(Receipt::New(seq)))
    }
}

/// What becomes of a message recorded on arrival.
enum Arrival<'a> {
    /// Waits in the inbox for its start.
    Queued,
    /// Starts at once: its start is in the same commit as its arrival.
    Started,
    /// Refused, for this reason; a resend is refused again.
    Rejected(&'a String),
}

/// The same message submitted twice: equal in all but the time the node stamped on it.
pub fn same_submission(stored: &Message, new: &Message) -> bool {
    let mut a = stored.clone();
    let mut b = new.clone();
    a.created_at = None;
    b.created_at = None;
    a == b
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
    t: &mut Tables<'_>,
    id: &str,
    f: impl FnOnce(&mut InboxRecord),
) -> Result<(), StoreError> {
    let inbox = t.inbox()?;
    let mut rec: InboxRecord = match inbox.get(id).map_err(db)? {
        Some(v) => decode(id, v.value())?,
        None => return Ok(()),
    };
    f(&mut rec);
    inbox.insert(id, encode(&rec).as_slice()).map_err(db)?;
    Ok(())
}

/// Read sent record `id`, change it with `change`, and write it back once: a message's
/// steps that arrive together (an ACK and its pull, a result's ACK and its end) cost
/// one decode and one encode. An unknown id is left alone.
fn update_sent(
    t: &mut Tables<'_>,
    id: &str,
    change: impl FnOnce(&mut Tables<'_>, &mut SentRecord) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut rec: SentRecord = match t.sent()?.get(id).map_err(db)? {
        Some(v) => decode(id, v.value())?,
        None => return Ok(()),
    };
    change(t, &mut rec)?;
    t.sent()?.insert(id, encode(&rec).as_slice()).map_err(db)?;
    Ok(())
}

/// Apply one step to sent record `rec` (and to the outbox and pull tables it leaves).
fn sent_event(
    t: &mut Tables<'_>,
    rec: &mut SentRecord,
    id: &str,
    event: Event,
    at: Millis,
    note: Option<String>,
    outcome: Option<Outcome>,
) -> Result<(), StoreError> {
    if event == Event::Sent {
        rec.sends += 1;
    }
    if let (Event::Finished(status), Some(o)) = (event, &outcome)
        && rec.state.is_terminal()
        && rec.settled_here
        && State::from_status(status) != rec.state
    {
        // The destination's word wins over a final state decided here without it.
        let was = rec.state;
        let said = State::from_status(status);
        let text = format!(
            "this node had recorded {} without word from {}, which then reported {}",
            was.name(),
            o.node,
            said.name()
        );
        rec.state = said;
        rec.history.push(HistoryEntry {
            state: said,
            at,
            note: Some(text.clone()),
        });
        rec.outcome = Some(o.clone());
        rec.settled_here = false;
        rec.disagreement = Some(text);
        return Ok(());
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
        t.outbox()?.remove(rec.seq).map_err(db)?;
    }
    if rec.state.is_terminal()
        && let Some(due) = rec.pull_at.take()
    {
        t.awaiting()?.remove((due, id)).map_err(db)?;
    }
    Ok(())
}

/// Ask for the result of sent message `rec` at `due`, unless it is final.
fn schedule_pull(
    t: &mut Tables<'_>,
    rec: &mut SentRecord,
    id: &str,
    due: Millis,
) -> Result<(), StoreError> {
    if rec.state.is_terminal() {
        return Ok(());
    }
    let awaiting = t.awaiting()?;
    if let Some(old) = rec.pull_at.take() {
        awaiting.remove((old, id)).map_err(db)?;
    }
    awaiting.insert((due, id), ()).map_err(db)?;
    rec.pull_at = Some(due);
    Ok(())
}

/// A new message with a `schedule` starts it: its record holds the message to repeat.
fn start_schedule(t: &mut Tables<'_>, m: &Message, at: Millis) -> Result<(), StoreError> {
    let Some(schedule) = m
        .schedule
        .as_deref()
        .and_then(|field| bosun_core::Schedule::from_field(field, at))
    else {
        return Ok(());
    };
    let record = ScheduleRecord {
        template: m.clone(),
        schedule,
    };
    t.schedules()?
        .insert(m.id(), encode(&record).as_slice())
        .map_err(db)?;
    Ok(())
}

/// An absorbed reply that asks for a sink leaves sink work behind, in the same commit:
/// a crash before the sink has written it leaves the work for the restart to finish.
fn mark_sink_due(t: &mut Tables<'_>, reply: &Message) -> Result<(), StoreError> {
    let Some(answered) = reply.previous_message.as_deref() else {
        return Ok(());
    };
    let table = t.sink_due()?;
    let existing: Option<SinkDue> = table
        .get(answered)
        .map_err(db)?
        .map(|v| decode(answered, v.value()))
        .transpose()?;
    let is_final = reply.result.is_some();
    let due = match existing {
        // A chunk after the result (a resend) changes nothing: the result says it all.
        Some(due) if !is_final => due,
        existing => SinkDue {
            reply: reply.id().to_string(),
            is_final,
            write: existing.and_then(|d| d.write),
        },
    };
    table
        .insert(answered, encode(&due).as_slice())
        .map_err(db)?;
    Ok(())
}

/// The sink of the message `id` answers has written up to `next`.
fn sink_done(t: &mut Tables<'_>, id: &str, next: u64) -> Result<(), StoreError> {
    t.sink_next()?.insert(id, next).map_err(db)?;
    let table = t.sink_due()?;
    let due: Option<SinkDue> = table
        .get(id)
        .map_err(db)?
        .map(|v| decode(id, v.value()))
        .transpose()?;
    let Some(mut due) = due else {
        return Ok(());
    };
    let chunks_waiting = next != SINK_COMPLETE
        && t.chunks()?
            .range((id, next)..=(id, u64::MAX))
            .map_err(db)?
            .next()
            .is_some();
    let table = t.sink_due()?;
    if next == SINK_COMPLETE || (!due.is_final && !chunks_waiting) {
        table.remove(id).map_err(db)?;
    } else {
        due.write = None;
        table.insert(id, encode(&due).as_slice()).map_err(db)?;
    }
    Ok(())
}
