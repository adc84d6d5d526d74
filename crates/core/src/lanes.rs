//! Which queued items may go next.
//!
//! Items carry a submit sequence number and, when ordered, a stream key. Within one
//! stream only one item is active at a time, and it is always the oldest: later items of
//! that stream wait behind it even if they are ready. Unordered items (no stream) go as
//! soon as fewer than `limit` unordered items are active.
//!
//! The same structure orders both ends: the sender's outbox (stream = destination +
//! method, active = sent and not yet acknowledged) and the receiver's inbox (stream =
//! sender + method, active = running).

use std::collections::{BTreeMap, BTreeSet};

/// One queued item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneItem<K> {
    /// Submit order.
    pub seq: u64,
    /// The message id.
    pub id: String,
    /// The ordering stream; `None` for unordered items.
    pub stream: Option<K>,
}

/// Queued and active items, with the ordering rules above.
#[derive(Debug)]
pub struct Lanes<K: Ord + Clone> {
    pending: BTreeMap<u64, LaneItem<K>>,
    busy: BTreeSet<K>,
    active_unordered: usize,
    limit: usize,
}

impl<K: Ord + Clone> Lanes<K> {
    /// Empty lanes allowing `limit` unordered items at once (at least one).
    pub fn new(limit: usize) -> Self {
        Lanes {
            pending: BTreeMap::new(),
            busy: BTreeSet::new(),
            active_unordered: 0,
            limit: limit.max(1),
        }
    }

    /// Queue an item. Items are taken in `seq` order within their stream.
    pub fn push(&mut self, item: LaneItem<K>) {
        self.pending.insert(item.seq, item);
    }

    /// Queued, not active.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Take every item that may become active now, oldest first, and mark it active.
    pub fn take_ready(&mut self) -> Vec<LaneItem<K>> {
        let mut ready = Vec::new();
        let mut blocked: BTreeSet<K> = BTreeSet::new();
        for (seq, item) in &self.pending {
            match &item.stream {
                Some(k) => {
                    if self.busy.contains(k) || blocked.contains(k) {
                        continue;
                    }
                    blocked.insert(k.clone());
                    ready.push(*seq);
                }
                None => {
                    if self.active_unordered + ready_unordered(&ready, &self.pending) < self.limit {
                        ready.push(*seq);
                    }
                }
            }
        }
        let taken: Vec<LaneItem<K>> = ready
            .into_iter()
            .filter_map(|seq| self.pending.remove(&seq))
            .collect();
        for item in &taken {
            match &item.stream {
                Some(k) => {
                    self.busy.insert(k.clone());
                }
                None => self.active_unordered += 1,
            }
        }
        taken
    }

    /// An active item finished (or was given up): free its stream or its slot.
    pub fn done(&mut self, item: &LaneItem<K>) {
        match &item.stream {
            Some(k) => {
                self.busy.remove(k);
            }
            None => self.active_unordered = self.active_unordered.saturating_sub(1),
        }
    }

    /// Drop a queued item that will never become active (e.g. its ttl ran out while it
    /// waited). Returns it when it was queued.
    pub fn remove_pending(&mut self, seq: u64) -> Option<LaneItem<K>> {
        self.pending.remove(&seq)
    }

    /// Queued items, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &LaneItem<K>> {
        self.pending.values()
    }
}

fn ready_unordered<K>(ready: &[u64], pending: &BTreeMap<u64, LaneItem<K>>) -> usize {
    ready
        .iter()
        .filter(|s| pending.get(s).is_some_and(|i| i.stream.is_none()))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, stream: Option<&'static str>) -> LaneItem<&'static str> {
        LaneItem {
            seq,
            id: format!("m{seq}"),
            stream,
        }
    }

    fn ids(items: &[LaneItem<&'static str>]) -> Vec<u64> {
        items.iter().map(|i| i.seq).collect()
    }

    #[test]
    fn one_active_per_stream_in_seq_order() {
        let mut l = Lanes::new(4);
        for s in [3, 1, 2] {
            l.push(item(s, Some("a")));
        }
        let first = l.take_ready();
        assert_eq!(ids(&first), vec![1]);
        assert!(l.take_ready().is_empty(), "stream busy until done");
        l.done(&first[0]);
        let second = l.take_ready();
        assert_eq!(ids(&second), vec![2]);
        l.done(&second[0]);
        assert_eq!(ids(&l.take_ready()), vec![3]);
    }

    #[test]
    fn streams_are_independent() {
        let mut l = Lanes::new(4);
        l.push(item(1, Some("a")));
        l.push(item(2, Some("a")));
        l.push(item(3, Some("b")));
        assert_eq!(ids(&l.take_ready()), vec![1, 3]);
    }

    #[test]
    fn unordered_items_run_together_up_to_the_limit() {
        let mut l = Lanes::new(2);
        for s in 1..=5 {
            l.push(item(s, None));
        }
        let first = l.take_ready();
        assert_eq!(ids(&first), vec![1, 2]);
        assert!(l.take_ready().is_empty());
        l.done(&first[0]);
        assert_eq!(ids(&l.take_ready()), vec![3]);
        assert_eq!(l.pending_len(), 2);
    }

    #[test]
    fn unordered_limit_does_not_block_ordered_streams() {
        let mut l = Lanes::new(1);
        l.push(item(1, None));
        l.push(item(2, None));
        l.push(item(3, Some("a")));
        assert_eq!(ids(&l.take_ready()), vec![1, 3]);
    }

    #[test]
    fn removed_pending_item_unblocks_nothing_and_is_gone() {
        let mut l = Lanes::new(1);
        l.push(item(1, Some("a")));
        l.push(item(2, Some("a")));
        assert!(l.remove_pending(1).is_some());
        assert_eq!(ids(&l.take_ready()), vec![2]);
        assert!(l.remove_pending(1).is_none());
    }
}
