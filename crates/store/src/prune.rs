//! Pruning in bounded steps.
//!
//! Finding what is past retention means reading every record; doing that inside the
//! writer's transaction would hold up every ACK behind it. So a read transaction (any
//! thread; readers never block the writer) finds the next batch of candidates, and the
//! writer applies that batch as one small op, checking each record again, since it may
//! have changed in between. A batch holds at most [`PruneLimits::ids`] records and
//! [`PruneLimits::bytes`] bytes of records and chunks, so no op holds the writer long.
//!
//! # What goes
//! - A sent record: once it is final, out of the outbox and its last step is older than
//!   the retention; with its chunks and sink position.
//! - A received record past the retention shrinks to a tombstone (id, sender, method,
//!   ttl, arrival and final step), so a late resend is still refused as a duplicate.
//! - A tombstone is forgotten once its arrival + its ttl + a margin has passed
//!   ([`forget_at`]): the sender never resends past its ttl, and both times are this
//!   node's own clock, so clock skew between the nodes does not matter. Without a ttl
//!   the tombstone stays.

use std::ops::Bound;

use bosun_proto::{Message, Millis};
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::records::{HistoryEntry, InboxRecord, SentRecord, decode, encode};
use crate::{CHUNKS, INBOX, SENT, SINK_NEXT, Store, StoreError, db};

const DAY_MS: Millis = 24 * 3600 * 1000;

/// How long past its ttl a received id is still remembered: covers a sender whose clock
/// was set back and copies that were on their way when it gave up.
pub const TOMBSTONE_MARGIN_MS: Millis = DAY_MS;

/// How long past its ttl an id cancelled before it ever arrived is remembered. Its
/// reference time is the cancel, which the sender asks for only after its last send, so
/// this only covers copies still on their way.
pub const CANCELLED_MARGIN_MS: Millis = 3600 * 1000;

/// How much one prune op may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneLimits {
    /// Records per op.
    pub ids: usize,
    /// Bytes of records (and, for sent records, their chunks) per op. A single record
    /// larger than this goes in an op of its own.
    pub bytes: usize,
}

impl Default for PruneLimits {
    fn default() -> Self {
        PruneLimits {
            ids: 500,
            bytes: 4 * 1024 * 1024,
        }
    }
}

/// Where a prune stands: what it prunes (`before`, `now`) and how far it has read.
/// Feed it to [`Store::prune_scan`] until that answers `None`.
#[derive(Debug, Clone)]
pub struct PruneCursor {
    before: Millis,
    now: Millis,
    limits: PruneLimits,
    table: Table,
    /// The last key read in `table`.
    after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Sent,
    Inbox,
    Done,
}

impl PruneCursor {
    /// Prune what was last touched before `before` (the retention's start); forget
    /// tombstones whose time has passed at `now`.
    pub fn new(before: Millis, now: Millis, limits: PruneLimits) -> PruneCursor {
        PruneCursor {
            before,
            now,
            limits,
            table: Table::Sent,
            after: None,
        }
    }
}

/// Candidates for one prune op; [`Store::prune_batch`] checks each again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneBatch {
    before: Millis,
    now: Millis,
    sent: Vec<String>,
    inbox: Vec<String>,
    bytes: usize,
}

impl PruneBatch {
    /// How many records it names.
    pub fn len(&self) -> usize {
        self.sent.len() + self.inbox.len()
    }

    /// Names no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the records (and chunks) it names, when they were read.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ids it names: sent records first, then received ones.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.sent.iter().chain(&self.inbox).map(String::as_str)
    }
}

/// When a received id may be forgotten: its arrival (this node's clock) + its ttl + a
/// margin ([`CANCELLED_MARGIN_MS`] for an id cancelled before it arrived, else
/// [`TOMBSTONE_MARGIN_MS`]). `None` (kept for good) when the message has no ttl.
pub fn forget_at(record: &InboxRecord) -> Option<Millis> {
    let arrived = record.history.first()?.at;
    // An id that never arrived is one its sender cancelled: the sender never sends it
    // again, so only a copy already on its way can come, whatever its ttl.
    if record.arrivals == 0 {
        let ttl = record.message.ttl.unwrap_or(0);
        return Some(
            arrived
                .saturating_add(ttl.saturating_mul(1000))
                .saturating_add(CANCELLED_MARGIN_MS),
        );
    }
    let ttl = record.message.ttl.filter(|t| *t > 0)?;
    Some(
        arrived
            .saturating_add(ttl.saturating_mul(1000))
            .saturating_add(TOMBSTONE_MARGIN_MS),
    )
}

/// What a received record shrinks to: enough to refuse a resend and to know when to
/// forget it.
pub fn tombstone(record: &InboxRecord) -> InboxRecord {
    let mut history: Vec<HistoryEntry> = record.history.first().cloned().into_iter().collect();
    if record.history.len() > 1 {
        history.extend(record.history.last().cloned());
    }
    InboxRecord {
        seq: record.seq,
        message: Message {
            id: record.message.id.clone(),
            from_node: record.message.from_node.clone(),
            method: record.message.method.clone(),
            ttl: record.message.ttl,
            ..Default::default()
        },
        state: record.state,
        history,
        arrivals: record.arrivals,
        outcome: None,
        process: None,
    }
}

fn last_at(history: &[HistoryEntry]) -> Millis {
    history.iter().map(|h| h.at).max().unwrap_or(0)
}

fn sent_due(record: &SentRecord, before: Millis) -> bool {
    !record.in_outbox && record.state.is_terminal() && last_at(&record.history) < before
}

#[derive(Debug, PartialEq, Eq)]
enum InboxAction {
    Keep,
    Shrink,
    Forget,
}

fn inbox_action(record: &InboxRecord, before: Millis, now: Millis) -> InboxAction {
    if !record.state.is_terminal() || last_at(&record.history) >= before {
        InboxAction::Keep
    } else if forget_at(record).is_some_and(|at| now >= at) {
        InboxAction::Forget
    } else if tombstone(record) != *record {
        InboxAction::Shrink
    } else {
        InboxAction::Keep
    }
}

impl Store {
    /// Read the next batch of prune candidates after `cursor`, in a read transaction
    /// (call it off the async runtime: it may read many records). `None` when everything
    /// has been read.
    pub fn prune_scan(&self, cursor: &mut PruneCursor) -> Result<Option<PruneBatch>, StoreError> {
        let txn = self.database()?.begin_read().map_err(db)?;
        let mut batch = PruneBatch {
            before: cursor.before,
            now: cursor.now,
            sent: Vec::new(),
            inbox: Vec::new(),
            bytes: 0,
        };
        let limits = cursor.limits;
        let full = |batch: &PruneBatch| batch.len() >= limits.ids || batch.bytes >= limits.bytes;
        let mut overflow = false;
        while cursor.table != Table::Done && !full(&batch) && !overflow {
            let table_def = match cursor.table {
                Table::Sent => SENT,
                _ => INBOX,
            };
            let table = txn.open_table(table_def).map_err(db)?;
            let chunks = txn.open_table(CHUNKS).map_err(db)?;
            let from = match &cursor.after {
                Some(k) => Bound::Excluded(k.as_str()),
                None => Bound::Unbounded,
            };
            let mut reached_end = true;
            for entry in table.range::<&str>((from, Bound::Unbounded)).map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                let id = key.value();
                let bytes = value.value();
                let size = match cursor.table {
                    Table::Sent => match decode::<SentRecord>(id, bytes) {
                        Ok(r) if sent_due(&r, cursor.before) => {
                            let mut size = bytes.len();
                            for c in chunks.range((id, 0)..=(id, u64::MAX)).map_err(db)? {
                                size += c.map_err(db)?.1.value().len();
                            }
                            Some(size)
                        }
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "prune skips a record it cannot read");
                            None
                        }
                    },
                    _ => match decode::<InboxRecord>(id, bytes) {
                        Ok(r)
                            if inbox_action(&r, cursor.before, cursor.now) != InboxAction::Keep =>
                        {
                            Some(bytes.len())
                        }
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "prune skips a record it cannot read");
                            None
                        }
                    },
                };
                if let Some(size) = size {
                    // A record that would overflow a batch that has some waits for the
                    // next one: the cursor stays before it.
                    if !batch.is_empty() && batch.bytes + size > limits.bytes {
                        (reached_end, overflow) = (false, true);
                        break;
                    }
                    batch.bytes += size;
                    match cursor.table {
                        Table::Sent => batch.sent.push(id.to_string()),
                        _ => batch.inbox.push(id.to_string()),
                    }
                }
                cursor.after = Some(id.to_string());
                if full(&batch) {
                    reached_end = false;
                    break;
                }
            }
            if reached_end {
                cursor.table = match cursor.table {
                    Table::Sent => Table::Inbox,
                    _ => Table::Done,
                };
                cursor.after = None;
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// Apply one batch of [`Store::prune_scan`]: each record is checked again and only
    /// pruned if it still qualifies. Returns how many records were removed or shrunk.
    pub async fn prune_batch(&self, batch: PruneBatch) -> Result<u64, StoreError> {
        match self
            .run(crate::writer::Op::Prune {
                batch: Box::new(batch),
            })
            .await?
        {
            crate::writer::OpResult::Pruned(n) => Ok(n),
            _ => unreachable!("prune answers a count"),
        }
    }

    /// Prune everything past the retention (`before`) and forget tombstones whose time
    /// has passed at `now`, one bounded batch at a time with the default
    /// [`PruneLimits`], for as long as `go_on` says so (it is asked before each batch).
    /// Returns how many records were removed or shrunk.
    pub async fn prune(
        &self,
        before: Millis,
        now: Millis,
        go_on: impl Fn() -> bool,
    ) -> Result<u64, StoreError> {
        let mut cursor = PruneCursor::new(before, now, PruneLimits::default());
        let mut pruned = 0;
        while go_on() {
            let store = self.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                let batch = store.prune_scan(&mut cursor);
                (batch, cursor)
            })
            .await;
            let batch;
            (batch, cursor) = match scanned {
                Ok(done) => done,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => return Err(StoreError::Closed),
            };
            match batch? {
                Some(batch) => pruned += self.prune_batch(batch).await?,
                None => break,
            }
        }
        Ok(pruned)
    }
}

/// In the writer: prune what `batch` names and still qualifies.
pub(crate) fn apply(txn: &WriteTransaction, batch: &PruneBatch) -> Result<u64, StoreError> {
    let mut pruned = 0;
    {
        let mut sent = txn.open_table(SENT).map_err(db)?;
        let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
        let mut sink_next = txn.open_table(SINK_NEXT).map_err(db)?;
        let mut sink_due = txn.open_table(crate::SINK_DUE).map_err(db)?;
        for id in &batch.sent {
            let due = match sent.get(id.as_str()).map_err(db)? {
                Some(v) => sent_due(&decode::<SentRecord>(id, v.value())?, batch.before),
                None => false,
            };
            if !due {
                continue;
            }
            sent.remove(id.as_str()).map_err(db)?;
            chunks
                .retain_in((id.as_str(), 0)..=(id.as_str(), u64::MAX), |_, _| false)
                .map_err(db)?;
            sink_next.remove(id.as_str()).map_err(db)?;
            sink_due.remove(id.as_str()).map_err(db)?;
            pruned += 1;
        }
    }
    let mut inbox = txn.open_table(INBOX).map_err(db)?;
    for id in &batch.inbox {
        let Some(record) = inbox
            .get(id.as_str())
            .map_err(db)?
            .map(|v| decode::<InboxRecord>(id, v.value()))
            .transpose()?
        else {
            continue;
        };
        match inbox_action(&record, batch.before, batch.now) {
            InboxAction::Keep => continue,
            InboxAction::Forget => {
                inbox.remove(id.as_str()).map_err(db)?;
            }
            InboxAction::Shrink => {
                inbox
                    .insert(id.as_str(), encode(&tombstone(&record)).as_slice())
                    .map_err(db)?;
            }
        }
        pruned += 1;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests;
