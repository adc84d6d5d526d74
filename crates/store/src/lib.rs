//! bosun's durable state: one redb file per node.
//!
//! # Layout
//! - [`records`]: what is stored ([`SentRecord`], [`InboxRecord`], history entries).
//! - [`writer`]: the single writer thread and its group commit.
//! - [`tables`]: the tables of one commit, each opened once for the whole batch.
//! - [`prune`]: pruning past retention in bounded batches, and when tombstones go.
//! - this file: the [`Store`] handle, its write calls (async, answered after commit) and
//!   its reads (direct, from any thread).
//!
//! # Tables
//! | table | key | value | what |
//! |---|---|---|---|
//! | `outbox` | seq | id | messages this node must still deliver, in submit order |
//! | `sent` | id | [`SentRecord`] | every message this node originated: history, outcome |
//! | `inbox` | id | [`InboxRecord`] | every message this node received: dedupe, history, outcome, the process group its run started |
//! | `inbox_pending` | seq | id | received messages not finished yet, in arrival order |
//! | `meta` | name | u64 | counters |
//! | `chunks` | (id, n) | text | streamed output of messages this node sent, by chunk number |
//! | `fleet` | node | [`FleetRecord`] | the nodes heard from (central), from their hellos |
//! | `sink_next` | id | u64 | the next chunk a reply sink writes ([`SINK_COMPLETE`] once the final result is written), so no chunk is written twice |
//! | `sink_due` | id | [`SinkDue`] | replies whose sink has work left, and a file write in progress; finished at start-up after a crash |
//! | `awaiting` | (pull at, id) | () | acknowledged messages whose result has not come, by when to ask for it |
//! | `schedules` | id | [`ScheduleRecord`] | active schedules: the message repeated, the next run time, the runs left |
//!
//! # Implementation note: group commit
//! All writes go through one thread. It takes every job waiting in its queue, applies
//! them in one write transaction and commits once, then answers each caller. Under load
//! many messages share one fsync; when idle a job commits alone at once. A job that only
//! records progress that can be rebuilt (a message was sent, an ACK arrived) commits with
//! `Durability::None`; it becomes durable with the next durable commit, and losing it in
//! a crash only causes a harmless resend. A run's process group ([`Store::spawned`]) is
//! held, unapplied, for the next durable commit, and committed alone if none comes
//! within 50 ms: a short command's finish carries it, one fsync fewer per command.

mod health;
mod prune;
mod records;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bosun_core::Event;
use bosun_proto::{Message, Millis, Outcome, State};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{oneshot, watch};

pub use health::{Fault, Health, LowSpace, free_bytes};
pub use prune::{
    CANCELLED_MARGIN_MS, PruneBatch, PruneCursor, PruneLimits, TOMBSTONE_MARGIN_MS, forget_at,
    tombstone,
};
pub use records::{
    BriefMessage, FleetRecord, HistoryEntry, InboxRecord, MessageView, ProcessRecord,
    ScheduleRecord, SentBrief, SentRecord, SinkDue, SinkWrite,
};
pub use writer::{Answer, QueuedSink, Receipt, same_submission};

use writer::{Job, Op, OpResult};

pub(crate) const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("outbox");
pub(crate) const SENT: TableDefinition<&str, &[u8]> = TableDefinition::new("sent");
pub(crate) const INBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("inbox");
pub(crate) const INBOX_PENDING: TableDefinition<u64, &str> = TableDefinition::new("inbox_pending");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const CHUNKS: TableDefinition<(&str, u64), &str> = TableDefinition::new("chunks");
pub(crate) const FLEET: TableDefinition<&str, &[u8]> = TableDefinition::new("fleet");
pub(crate) const SINK_NEXT: TableDefinition<&str, u64> = TableDefinition::new("sink_next");
pub(crate) const AWAITING: TableDefinition<(u64, &str), ()> = TableDefinition::new("awaiting");
pub(crate) const SINK_DUE: TableDefinition<&str, &[u8]> = TableDefinition::new("sink_due");
pub(crate) const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");

/// The sink position of a message whose final result has been written: nothing more is
/// written for it, whatever arrives again.
pub const SINK_COMPLETE: u64 = u64::MAX;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened, read or written.
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    /// The database is already open, e.g. by another node on the same data dir.
    #[error(
        "database {path} is in use by another process; is a bosun node already running on this data dir?"
    )]
    Locked {
        /// The file.
        path: String,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The key of the record.
        key: String,
        /// The decode error.
        reason: String,
    },
    /// The writer thread has stopped (the store was closed).
    #[error("the store is closed")]
    Closed,
    /// The filesystem of the database is full. Nothing of the refused write was kept;
    /// the store reopens itself once space is freed.
    #[error(
        "disk full at {path}: {free_bytes} bytes free; writes resume by themselves once space is freed"
    )]
    DiskFull {
        /// The database file.
        path: String,
        /// Bytes free, when last looked.
        free_bytes: u64,
    },
    /// Reading or writing the database file failed (other than a full disk).
    #[error("I/O error on {path}: {reason}")]
    Io {
        /// The database file.
        path: String,
        /// What the operating system said.
        reason: String,
    },
    /// A message id submitted again with a different content.
    #[error(
        "id {id} is already used by a different message; give the new message a new id (the same message again is accepted once)"
    )]
    IdConflict {
        /// The id.
        id: String,
    },
}

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of redb's page cache: bounds the memory the store uses however deep the
    /// queues are.
    pub cache_bytes: usize,
    /// [`Store::below_reserve`] reports when fewer bytes than this are free; 0 never.
    pub reserve_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 16 * 1024 * 1024,
            reserve_bytes: 0,
        }
    }
}

pub(crate) fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// The database as readers share it: emptied by [`Store::close`] (so the file is released
/// even while clones of the handle live on) and swapped by the writer when it reopens the
/// file after an I/O error.
pub(crate) type SharedDb = Arc<std::sync::RwLock<Option<Arc<Database>>>>;

/// A handle on the node's database. Cheap to clone; all clones share one writer thread.
#[derive(Clone)]
pub struct Store {
    db: SharedDb,
    jobs: writer::JobQueue,
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    queued: writer::QueuedSinkSlot,
    reserve_bytes: u64,
    space: health::SpaceCache,
    health: watch::Receiver<Health>,
    commits: Arc<writer::CommitCounts>,
}

/// Commits made since the store opened: `durable` ones waited for the disk (fsync),
/// `lazy` ones (progress that can be rebuilt) did not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commits {
    pub durable: u64,
    pub lazy: u64,
}

/// Counts for status displays and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depths {
    /// Messages waiting to be delivered.
    pub outbox: u64,
    /// Received messages not yet finished.
    pub inbox_pending: u64,
}

impl Store {
    /// Open (or create) the database file and start its writer thread, with the default
    /// [`StoreOptions`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// Open (or create) the database file and start its writer thread.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let (database, next_seq) = writer::open_database(path, options.cache_bytes)?;
        let db_arc = Arc::new(database);
        let shared_db: SharedDb = Arc::new(std::sync::RwLock::new(Some(db_arc.clone())));
        let (health_tx, health) = watch::channel(Health::Ok);
        let queued = writer::QueuedSinkSlot::default();
        let commits = Arc::new(writer::CommitCounts::default());
        let jobs = writer::spawn(
            db_arc,
            next_seq,
            writer::WriterParts {
                path: path.to_path_buf(),
                shared: shared_db.clone(),
                health: health_tx,
                cache_bytes: options.cache_bytes,
                backlog: Arc::default(),
                queued: queued.clone(),
                commits: commits.clone(),
            },
        );
        Ok(Store {
            db: shared_db,
            jobs,
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                queued,
                reserve_bytes: options.reserve_bytes,
                space: health::SpaceCache::new(),
                health,
                commits,
            }),
        })
    }

    /// Commits made since the store opened.
    pub fn commits(&self) -> Commits {
        use std::sync::atomic::Ordering::Relaxed;
        Commits {
            durable: self.shared.commits.durable.load(Relaxed),
            lazy: self.shared.commits.lazy.load(Relaxed),
        }
    }

    fn database(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(database) = self.db.read().expect("store lock").clone() {
            return Ok(database);
        }
        match &*self.shared.health.borrow() {
            Health::Ok => Err(StoreError::Closed),
            Health::Faulted(fault) => Err(fault.error()),
            Health::Failed { reason } => Err(StoreError::Io {
                path: self.shared.path.display().to_string(),
                reason: reason.clone(),
            }),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Hear of every message newly queued in the outbox (by [`Store::submit`],
    /// [`Store::finish`] with a reply, [`Store::schedule_run`]): `sink` is called on the
    /// writer thread right after each commit that queued some, with their seqs, in seq
    /// order, before the writers are answered. Commits happen in seq order, so the sink
    /// sees every queued message once and in order, which handing them over from each
    /// writer's task could not promise. A message submitted again under its id is not
    /// queued again and not told. Replaces an earlier sink.
    pub fn on_queued(&self, sink: QueuedSink) {
        *self.shared.queued.lock().expect("queued sink lock") = Some(sink);
    }

    /// Whether writes go through now.
    pub fn health(&self) -> Health {
        self.shared.health.borrow().clone()
    }

    /// Hear of every change of [`Store::health`].
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.shared.health.clone()
    }

    /// Bytes free on the database's filesystem (read at most every 200 ms).
    pub fn free_bytes(&self) -> Option<u64> {
        self.shared.space.free_bytes(&self.shared.path)
    }

    /// `Some` when fewer bytes than the reserve are free: new work from outside should be
    /// refused so that work already accepted can still record its results.
    pub fn below_reserve(&self) -> Option<LowSpace> {
        let reserve = self.shared.reserve_bytes;
        if reserve == 0 {
            return None;
        }
        let free = self.free_bytes()?;
        (free < reserve).then(|| LowSpace {
            path: self.shared.path.display().to_string(),
            free_bytes: free,
            reserve_bytes: reserve,
        })
    }

    async fn run(&self, op: Op) -> Result<OpResult, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Op(Box::new(op), tx))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Record new messages from this node: each goes into the outbox and gets a `queued`
    /// history. Returns after the commit is on disk, with each message's outbox seq.
    ///
    /// A message whose id is known already is not queued again: the same message (all
    /// but `createdAt` equal) answers its first seq; a different one refuses the whole
    /// batch with [`StoreError::IdConflict`], and nothing of the batch is kept.
    ///
    /// A new message with a `schedule` starts its schedule in the same commit.
    pub async fn submit(&self, messages: Vec<Message>, at: Millis) -> Result<Vec<u64>, StoreError> {
        match self.run(Op::Submit { messages, at }).await? {
            OpResult::Seqs(s) => Ok(s),
            _ => unreachable!("submit answers seqs"),
        }
    }

    /// Apply a lifecycle event to a message this node sent. Terminal events take it out of
    /// the outbox and are durable; `Sent`/`Acked` are recorded without waiting for disk.
    /// `Acked` also takes the message out of the outbox.
    pub async fn sent_event(
        &self,
        id: &str,
        event: Event,
        at: Millis,
        note: Option<String>,
        outcome: Option<Outcome>,
    ) -> Result<(), StoreError> {
        self.run(Op::SentEvent {
            id: id.to_string(),
            event,
            at,
            note,
            outcome,
        })
        .await
        .map(|_| ())
    }

    /// Record progress notes (`Sent`, `Acked`, `Started`) for a message this node sent,
    /// without waiting: they are queued behind every write already asked for, applied in
    /// order, and committed without fsync.
    pub fn note(&self, id: &str, events: Vec<(Event, Millis, Option<String>)>) {
        self.note_and_pull_at(id, events, None);
    }

    /// Like [`Store::note`], and (with `pull_at`) schedule asking the destination for the
    /// result at that time if it has not come by then, in the same commit. A message
    /// already final is not scheduled.
    pub fn note_and_pull_at(
        &self,
        id: &str,
        events: Vec<(Event, Millis, Option<String>)>,
        pull_at: Option<Millis>,
    ) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.jobs.send(Job::Op(
            Box::new(Op::Notes {
                id: id.to_string(),
                events,
                pull_at,
            }),
            tx,
        ));
    }

    /// Record a final state this node decided without word from the destination (the
    /// message was never delivered). Durable before it returns. A later outcome from the
    /// destination wins over it, and the disagreement is kept in the record.
    pub async fn settle_here(
        &self,
        id: &str,
        event: Event,
        at: Millis,
        note: Option<String>,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.run(Op::SettleHere {
            id: id.to_string(),
            event,
            at,
            note,
            outcome,
        })
        .await
        .map(|_| ())
    }

    /// A sender gave up message `id` and asks this node to cancel it: a received message
    /// that has not started is cancelled; an unknown id is remembered as cancelled, so the
    /// message never runs if it arrives later. Durable before it returns. Answers the
    /// message's state here and its outcome when it is final.
    pub async fn cancel(
        &self,
        id: &str,
        from: &str,
        node: &str,
        at: Millis,
    ) -> Result<Answer, StoreError> {
        match self
            .run(Op::Cancel {
                id: id.to_string(),
                from: from.to_string(),
                node: node.to_string(),
                at,
            })
            .await?
        {
            OpResult::Answer(a) => Ok(a),
            _ => unreachable!("cancel answers"),
        }
    }

    /// Sent messages whose result should be asked for by `now`, soonest first, at most
    /// `limit`.
    pub fn due_pulls(&self, now: Millis, limit: usize) -> Result<Vec<String>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let table = txn.open_table(AWAITING).map_err(db)?;
        let mut out = Vec::new();
        for entry in table
            .range((0, "")..(now.saturating_add(1), ""))
            .map_err(db)?
        {
            let (k, _) = entry.map_err(db)?;
            out.push(k.value().1.to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The earliest time a result is to be asked for, if any.
    pub fn next_pull(&self) -> Result<Option<Millis>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let table = txn.open_table(AWAITING).map_err(db)?;
        Ok(table.first().map_err(db)?.map(|(k, _)| k.value().0))
    }

    /// Record a message that arrived from another node (or this one). Durable before it
    /// returns. A message whose id is already in the inbox is not recorded again.
    pub async fn receive(&self, message: Message, at: Millis) -> Result<Receipt, StoreError> {
        self.arrive(message, at, false).await
    }

    /// Record a message that arrived and starts at once: its arrival and its start (both
    /// at `at`) in one durable commit, so that it runs after one fsync instead of two. A
    /// crash from then on reports it `interrupted`, as for [`Store::start`]. A message
    /// whose id is already in the inbox is neither recorded nor started again.
    pub async fn receive_started(
        &self,
        message: Message,
        at: Millis,
    ) -> Result<Receipt, StoreError> {
        self.arrive(message, at, true).await
    }

    async fn arrive(
        &self,
        message: Message,
        at: Millis,
        start: bool,
    ) -> Result<Receipt, StoreError> {
        match self.run(Op::Receive { message, at, start }).await? {
            OpResult::Receipt(r) => Ok(r),
            _ => unreachable!("receive answers a receipt"),
        }
    }

    /// Record a message that was refused on arrival, so a resend is refused again without
    /// running. Durable.
    pub async fn reject(
        &self,
        message: Message,
        reason: String,
        at: Millis,
    ) -> Result<Receipt, StoreError> {
        match self
            .run(Op::Reject {
                message,
                reason,
                at,
            })
            .await?
        {
            OpResult::Receipt(r) => Ok(r),
            _ => unreachable!("reject answers a receipt"),
        }
    }

    /// Mark a received message as started. Durable before it returns, so a crash after
    /// this point is reported as `interrupted`, never re-run silently. Answers `false`,
    /// recording nothing, when the message is already final (its sender cancelled it):
    /// it must not run.
    pub async fn start(&self, id: &str, at: Millis) -> Result<bool, StoreError> {
        match self
            .run(Op::Start {
                id: id.to_string(),
                at,
            })
            .await?
        {
            OpResult::Started(started) => Ok(started),
            _ => unreachable!("start answers whether it started"),
        }
    }

    /// Record the process group a received message's run started. Queued at once, so it
    /// is applied before any later write (the run's finish). It is held for the next
    /// durable commit (a short run's finish carries it) and committed alone if none comes
    /// within 50 ms; readers see it only once it is durable. The returned future ends
    /// then.
    pub fn spawned(
        &self,
        id: &str,
        process: ProcessRecord,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = self.jobs.send(Job::Op(
            Box::new(Op::Spawned {
                id: id.to_string(),
                process,
            }),
            tx,
        ));
        async move {
            queued.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?.map(|_| ())
        }
    }

    /// Record the outcome of a received message and, in the same commit, queue its reply
    /// in the outbox. Durable before it returns.
    pub async fn finish(
        &self,
        id: &str,
        outcome: Outcome,
        reply: Option<Message>,
        at: Millis,
    ) -> Result<Option<u64>, StoreError> {
        match self
            .run(Op::Finish {
                id: id.to_string(),
                outcome,
                reply,
                at,
                unrecorded_start: None,
            })
            .await?
        {
            OpResult::Seqs(s) => Ok(s.first().copied()),
            _ => Ok(None),
        }
    }

    /// Record the start at `started_at` and the outcome of a received message whose start
    /// was not recorded before its run (a method without side effects, which may run
    /// again after a crash), and queue its reply, all in one commit, durable before it
    /// returns. False, and nothing recorded, when the message was settled meanwhile (its
    /// sender cancelled it): the run changed nothing, so the cancel stands.
    pub async fn finish_unstarted(
        &self,
        id: &str,
        started_at: Millis,
        outcome: Outcome,
        reply: Option<Message>,
        at: Millis,
    ) -> Result<bool, StoreError> {
        match self
            .run(Op::Finish {
                id: id.to_string(),
                outcome,
                reply,
                at,
                unrecorded_start: Some(started_at),
            })
            .await?
        {
            OpResult::Started(false) => Ok(false),
            _ => Ok(true),
        }
    }

    /// Take in a message that needs no run: a reply (its outcome or output chunk is applied
    /// to the sent message it answers), or an event such as a hello (with `fleet`, the
    /// sender's registry entry is updated). Deduplicated by the message's own id, durable
    /// before it returns.
    pub async fn absorb(
        &self,
        message: Message,
        at: Millis,
        fleet: Option<FleetRecord>,
    ) -> Result<Receipt, StoreError> {
        match self.run(Op::Absorb { message, at, fleet }).await? {
            OpResult::Receipt(r) => Ok(r),
            _ => unreachable!("absorb answers a receipt"),
        }
    }

    /// Wait while the writer is far behind (more than a few thousand writes queued), so
    /// that a producer that can wait slows down instead of growing the queue.
    pub async fn room(&self) {
        self.jobs.backlog.room().await
    }

    /// Writes queued and not yet applied.
    pub fn backlog(&self) -> usize {
        self.jobs.backlog.queued()
    }

    /// Force everything committed so far onto disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.run(Op::Flush).await.map(|_| ())
    }

    /// Stop the writer thread after it has made everything durable.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.db.write().expect("store lock").take();
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Close(tx)).is_err() {
            return Ok(());
        }
        rx.await.map_err(|_| StoreError::Closed)
    }

    // === reads ===

    /// A message this node sent, by id.
    pub fn sent(&self, id: &str) -> Result<Option<SentRecord>, StoreError> {
        self.record(SENT, id)
    }

    /// A message this node received, by id.
    pub fn inbox(&self, id: &str) -> Result<Option<InboxRecord>, StoreError> {
        self.record(INBOX, id)
    }

    /// What this node knows of each of `ids`, read in one transaction: a waiter on
    /// many messages (a fan-out, a batch) reads them all at the cost of one.
    pub fn views<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<MessageView>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let sent = txn.open_table(SENT).map_err(db)?;
        let inbox = txn.open_table(INBOX).map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        let schedules = txn.open_table(SCHEDULES).map_err(db)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let id = id.as_ref();
            let sent: Option<SentRecord> = get_record(&sent, id)?;
            let chunks = match sent {
                Some(_) => chunk_range(&chunks, id, 1)?,
                None => Vec::new(),
            };
            out.push(MessageView {
                sent,
                inbox: get_record(&inbox, id)?,
                chunks,
                schedule: get_record(&schedules, id)?,
            });
        }
        Ok(out)
    }

    /// Whether each of `ids` this node sent is in a final state (false when unknown),
    /// in one transaction, reading no more of each record than its state.
    pub fn sent_final<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<bool>, StoreError> {
        #[derive(serde::Deserialize)]
        struct JustState {
            state: State,
        }
        let txn = self.database()?.begin_read().map_err(db)?;
        let sent = txn.open_table(SENT).map_err(db)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let id = id.as_ref();
            let state = sent
                .get(id)
                .map_err(db)?
                .map(|v| records::decode::<JustState>(id, v.value()))
                .transpose()?;
            out.push(state.is_some_and(|s| s.state.is_terminal()));
        }
        Ok(out)
    }

    /// The few fields of sent message `id` that a result's arrival needs, decoded
    /// without the rest of the record.
    pub fn sent_brief(&self, id: &str) -> Result<Option<SentBrief>, StoreError> {
        self.record(SENT, id)
    }

    /// Every record of a table keyed by id, with its id.
    fn records<T: for<'a> serde::Deserialize<'a>>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let table = txn.open_table(definition).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            out.push((
                k.value().to_string(),
                records::decode(k.value(), v.value())?,
            ));
        }
        Ok(out)
    }

    /// One record of a table keyed by id.
    fn record<T: for<'a> serde::Deserialize<'a>>(
        &self,
        definition: TableDefinition<&str, &[u8]>,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        get_record(&txn.open_table(definition).map_err(db)?, id)
    }

    /// The whole outbox, oldest first: each entry's seq and the record of the message.
    pub fn outbox(&self) -> Result<Vec<(u64, SentRecord)>, StoreError> {
        self.outbox_page(0, usize::MAX)
    }

    /// Up to `limit` outbox entries with a seq above `after`, oldest first: the outbox
    /// read in pages, so a deep queue is never all in memory.
    pub fn outbox_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, SentRecord)>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let outbox = txn.open_table(OUTBOX).map_err(db)?;
        let sent = txn.open_table(SENT).map_err(db)?;
        let mut out = Vec::new();
        for entry in outbox.range(after.saturating_add(1)..).map_err(db)? {
            let (seq, id) = entry.map_err(db)?;
            let id = id.value();
            if let Some(v) = sent.get(id).map_err(db)? {
                out.push((seq.value(), records::decode(id, v.value())?));
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Received messages not finished yet, in arrival order.
    pub fn inbox_pending(&self) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let pending = txn.open_table(INBOX_PENDING).map_err(db)?;
        let inbox = txn.open_table(INBOX).map_err(db)?;
        let mut out = Vec::new();
        for entry in pending.iter().map_err(db)? {
            let (seq, id) = entry.map_err(db)?;
            let id = id.value();
            if let Some(v) = inbox.get(id).map_err(db)? {
                out.push((seq.value(), records::decode(id, v.value())?));
            }
        }
        Ok(out)
    }

    /// The streamed output of a sent message: chunk number and text, in order.
    pub fn chunks(&self, id: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.chunks_from(id, 1)
    }

    /// Chunks numbered `from` and up, in order.
    pub fn chunks_from(&self, id: &str, from: u64) -> Result<Vec<(u64, String)>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        chunk_range(&txn.open_table(CHUNKS).map_err(db)?, id, from)
    }

    /// The next chunk number a reply sink will write for `id` (1 when none was written).
    pub fn sink_next(&self, id: &str) -> Result<u64, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let table = txn.open_table(SINK_NEXT).map_err(db)?;
        Ok(table.get(id).map_err(db)?.map(|v| v.value()).unwrap_or(1))
    }

    /// The sink work left for the message `id` answers, if any.
    pub fn sink_due(&self, id: &str) -> Result<Option<SinkDue>, StoreError> {
        self.record(SINK_DUE, id)
    }

    /// Every message with sink work left: what a restart finishes.
    pub fn sinks_due(&self) -> Result<Vec<(String, SinkDue)>, StoreError> {
        self.records(SINK_DUE)
    }

    /// Record, durably, a sink file write about to begin for the message `id` answers.
    pub async fn sink_begin(&self, id: &str, write: SinkWrite) -> Result<(), StoreError> {
        self.run(Op::SinkBegin {
            id: id.to_string(),
            write,
        })
        .await
        .map(|_| ())
    }

    /// Record, durably, that the sink of the message `id` answers has written up to
    /// `next` ([`SINK_COMPLETE`]: everything). Clears a write in progress, and the sink
    /// work itself when nothing is left: complete, or no chunk at `next` or beyond waits
    /// and the final result is not in.
    pub async fn sink_done(&self, id: &str, next: u64) -> Result<(), StoreError> {
        self.run(Op::SinkDone {
            id: id.to_string(),
            next,
        })
        .await
        .map(|_| ())
    }

    /// The active schedules, by the id of the message they repeat.
    pub fn schedules(&self) -> Result<Vec<(String, ScheduleRecord)>, StoreError> {
        self.records(SCHEDULES)
    }

    /// The active schedule of the message `id`, if any.
    pub fn schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        self.record(SCHEDULES, id)
    }

    /// Queue `repeat`, a run of the schedule of the message `id`, and advance the
    /// schedule, in one durable commit: a crash loses or doubles no run. Returns the
    /// repeat's outbox seq, or `None` (nothing queued) when no run of that schedule is
    /// due at `at`.
    pub async fn schedule_run(
        &self,
        id: &str,
        repeat: Message,
        at: Millis,
    ) -> Result<Option<u64>, StoreError> {
        match self
            .run(Op::ScheduleRun {
                id: id.to_string(),
                repeat,
                at,
            })
            .await?
        {
            OpResult::Seqs(s) => Ok(s.first().copied()),
            _ => unreachable!("a schedule run answers seqs"),
        }
    }

    /// Every node heard from, by name.
    pub fn fleet(&self) -> Result<Vec<FleetRecord>, StoreError> {
        Ok(self
            .records(FLEET)?
            .into_iter()
            .map(|(_, record)| record)
            .collect())
    }

    /// How much is waiting in each queue.
    pub fn depths(&self) -> Result<Depths, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let outbox = txn.open_table(OUTBOX).map_err(db)?.len().map_err(db)?;
        let inbox_pending = txn
            .open_table(INBOX_PENDING)
            .map_err(db)?
            .len()
            .map_err(db)?;
        Ok(Depths {
            outbox,
            inbox_pending,
        })
    }

    /// The most recent messages this node sent, newest first (ids are ULIDs, so id order
    /// is time order).
    /// Replies this node sent back, hellos and error reports are left out.
    pub fn recent_sent(&self, limit: usize) -> Result<Vec<SentRecord>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let sent = txn.open_table(SENT).map_err(db)?;
        let mut out = Vec::new();
        for entry in sent.iter().map_err(db)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (id, v) = entry.map_err(db)?;
            let record: SentRecord = records::decode(id.value(), v.value())?;
            let event = matches!(record.message.method.as_str(), "hello" | "errorLog");
            if record.message.previous_message.is_none() && !event {
                out.push(record);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

/// The record `id` of a table keyed by id, decoded.
fn get_record<T: for<'a> serde::Deserialize<'a>>(
    table: &redb::ReadOnlyTable<&str, &[u8]>,
    id: &str,
) -> Result<Option<T>, StoreError> {
    table
        .get(id)
        .map_err(db)?
        .map(|v| records::decode(id, v.value()))
        .transpose()
}

/// The chunks of `id` numbered `from` and up, in order.
fn chunk_range(
    table: &redb::ReadOnlyTable<(&str, u64), &str>,
    id: &str,
    from: u64,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut out = Vec::new();
    for entry in table.range((id, from)..=(id, u64::MAX)).map_err(db)? {
        let (k, v) = entry.map_err(db)?;
        out.push((k.value().1, v.value().to_string()));
    }
    Ok(out)
}
