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
///
/// Every operation costs O(log n) per item moved, never a scan of the queue, so a
/// deep outbox (a node offline for a day) does not slow the others down.
#[derive(Debug)]
pub struct Lanes<K: Ord + Clone> {
    /// Unordered items waiting, by seq.
    unordered: BTreeMap<u64, LaneItem<K>>,
    /// Ordered items waiting, per stream, by seq.
    streams: BTreeMap<K, BTreeMap<u64, LaneItem<K>>>,
    /// Streams with an active item.
    busy: BTreeSet<K>,
    /// Streams with waiting items and no active one.
    ready: BTreeSet<K>,
    active_unordered: usize,
    limit: usize,
    pending: usize,
}

impl<K: Ord + Clone> Lanes<K> {
    /// Empty lanes allowing `limit` unordered items at once (at least one).
    pub fn new(limit: usize) -> Self {
        Lanes {
            unordered: BTreeMap::new(),
            streams: BTreeMap::new(),
            busy: BTreeSet::new(),
            ready: BTreeSet::new(),
            active_unordered: 0,
            limit: limit.max(1),
            pending: 0,
        }
    }

    /// Queue an item. Items are taken in `seq` order within their stream.
    pub fn push(&mut self, item: LaneItem<K>) {
        self.pending += 1;
        match item.stream.clone() {
            None => {
                self.unordered.insert(item.seq, item);
            }
            Some(k) => {
                if !self.busy.contains(&k) {
                    self.ready.insert(k.clone());
                }
                self.streams.entry(k).or_default().insert(item.seq, item);
            }
        }
    }

    /// Queued, not active.
    pub fn pending_len(&self) -> usize {
        self.pending
    }

    /// Take every item that may become active now, oldest first, and mark it active.
    pub fn take_ready(&mut self) -> Vec<LaneItem<K>> {
        let mut taken = Vec::new();
        while self.active_unordered < self.limit {
            let Some((_, item)) = self.unordered.pop_first() else {
                break;
            };
            self.active_unordered += 1;
            taken.push(item);
        }
        for k in std::mem::take(&mut self.ready) {
            let Some(queue) = self.streams.get_mut(&k) else {
                continue;
            };
            let Some((_, item)) = queue.pop_first() else {
                continue;
            };
            if queue.is_empty() {
                self.streams.remove(&k);
            }
            self.busy.insert(k);
            taken.push(item);
        }
        self.pending -= taken.len();
        taken.sort_by_key(|i| i.seq);
        taken
    }

    /// Make an item active at once, without queueing it, when it would be taken next
    /// with nothing ahead of it: an unordered item when no unordered item waits and a
    /// slot is free, an ordered one when its stream has neither an active nor a waiting
    /// item. True when it is active; give it back with [`Lanes::done`].
    pub fn try_start(&mut self, stream: Option<&K>) -> bool {
        match stream {
            None => {
                let free = self.unordered.is_empty() && self.active_unordered < self.limit;
                if free {
                    self.active_unordered += 1;
                }
                free
            }
            Some(k) => {
                let free = !self.busy.contains(k) && !self.streams.contains_key(k);
                if free {
                    self.busy.insert(k.clone());
                }
                free
            }
        }
    }

    /// An active item finished (or was given up): free its stream or its slot.
    pub fn done(&mut self, item: &LaneItem<K>) {
        match &item.stream {
            Some(k) => {
                if self.busy.remove(k) && self.streams.contains_key(k) {
                    self.ready.insert(k.clone());
                }
            }
            None => self.active_unordered = self.active_unordered.saturating_sub(1),
        }
    }

    /// Take a queued (not active) item out of the lanes. False when it was not queued.
    pub fn remove_pending(&mut self, item: &LaneItem<K>) -> bool {
        let removed = match &item.stream {
            None => self.unordered.remove(&item.seq).is_some(),
            Some(k) => {
                let Some(queue) = self.streams.get_mut(k) else {
                    return false;
                };
                let removed = queue.remove(&item.seq).is_some();
                if queue.is_empty() {
                    self.streams.remove(k);
                    self.ready.remove(k);
                }
                removed
            }
        };
        if removed {
            self.pending -= 1;
        }
        removed
    }

    /// Queued items, oldest first within each kind.
    pub fn pending(&self) -> impl Iterator<Item = &LaneItem<K>> {
        self.unordered
            .values()
            .chain(self.streams.values().flat_map(|q| q.values()))
    }
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
    fn an_item_starts_at_once_only_with_nothing_ahead_of_it() {
        let mut l = Lanes::new(2);
        // Ordered: a free stream starts; then its stream is busy until done.
        assert!(l.try_start(Some(&"a")));
        assert!(!l.try_start(Some(&"a")));
        l.push(item(5, Some("a")));
        assert!(l.take_ready().is_empty(), "a started item holds its stream");
        l.done(&item(0, Some("a")));
        // A waiting item of the stream goes first, even once the stream is free.
        assert!(!l.try_start(Some(&"a")));
        let next = l.take_ready();
        assert_eq!(ids(&next), vec![5]);
        l.done(&next[0]);
        assert!(l.try_start(Some(&"a")));
        // Unordered: up to the limit, and never past one that waits.
        assert!(l.try_start(None));
        assert!(l.try_start(None));
        assert!(!l.try_start(None), "limit reached");
        l.push(item(7, None));
        l.done(&item(0, None));
        assert!(!l.try_start(None), "item 7 waits and goes first");
        assert_eq!(ids(&l.take_ready()), vec![7]);
        assert_eq!(l.pending_len(), 0);
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
    fn a_removed_pending_item_is_gone_and_frees_nothing() {
        let mut l = Lanes::new(1);
        l.push(item(1, Some("a")));
        l.push(item(2, Some("a")));
        let first = l.take_ready();
        assert!(l.remove_pending(&item(2, Some("a"))));
        assert!(!l.remove_pending(&item(1, Some("a"))), "active, not queued");
        assert!(l.take_ready().is_empty(), "stream a is still busy with 1");
        l.done(&first[0]);
        assert!(l.take_ready().is_empty());
        assert_eq!(l.pending_len(), 0);
    }

    #[test]
    fn a_freed_stream_with_nothing_queued_stays_quiet() {
        let mut l = Lanes::new(1);
        l.push(item(1, Some("a")));
        let first = l.take_ready();
        l.done(&first[0]);
        assert!(l.take_ready().is_empty());
        l.push(item(2, Some("a")));
        assert_eq!(ids(&l.take_ready()), vec![2]);
        assert_eq!(l.pending_len(), 0);
    }

    #[test]
    fn a_deep_queue_drains_in_rounds() {
        let mut l = Lanes::new(10);
        for s in 0..200_000 {
            l.push(item(s, if s % 2 == 0 { None } else { Some("a") }));
        }
        for _ in 0..1000 {
            let taken = l.take_ready();
            for i in &taken {
                l.done(i);
            }
        }
        // Each round: ten unordered items and the head of stream "a".
        assert_eq!(l.pending_len(), 200_000 - 11_000);
    }
}
