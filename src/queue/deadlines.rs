//! The deadline index of a queue actor: every timed event of a queue (lease expiry,
//! delay expiry, message expiration, long-poll timeout) keyed by its deadline.
//!
//! The actor keeps one timer, for [`DeadlineIndex::next`]; when it fires it pops
//! the due entries with [`DeadlineIndex::pop_due`]. Insert, remove and each popped
//! entry cost O(log n); an idle queue with a million leases costs nothing per tick
//! because nothing scans the messages.

use std::collections::BTreeSet;

/// Entries ordered by `(deadline_ms, key)`; the key breaks ties between equal deadlines.
#[derive(Debug)]
pub struct DeadlineIndex<K: Ord + Copy> {
    entries: BTreeSet<(u64, K)>,
}

impl<K: Ord + Copy> Default for DeadlineIndex<K> {
    fn default() -> Self {
        DeadlineIndex {
            entries: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> DeadlineIndex<K> {
    /// An index holding `entries` (built in bulk: sorting then filling the tree is
    /// much faster than inserting one by one).
    pub fn from_entries(entries: Vec<(u64, K)>) -> Self {
        DeadlineIndex {
            entries: entries.into_iter().collect(),
        }
    }

    /// Adds `key` due at `deadline_ms`.
    pub fn insert(&mut self, deadline_ms: u64, key: K) {
        self.entries.insert((deadline_ms, key));
    }

    /// Removes the entry; returns whether it was there.
    pub fn remove(&mut self, deadline_ms: u64, key: K) -> bool {
        self.entries.remove(&(deadline_ms, key))
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<u64> {
        self.entries.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the earliest entry if it is due (`deadline <= now_ms`).
    pub fn pop_due(&mut self, now_ms: u64) -> Option<(u64, K)> {
        match self.entries.first() {
            Some((deadline, _)) if *deadline <= now_ms => self.entries.pop_first(),
            _ => None,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every entry for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|(_, key)| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn should_pop_in_deadline_order_and_only_when_due() {
        let mut index = DeadlineIndex::default();
        index.insert(30, 'c');
        index.insert(10, 'a');
        index.insert(20, 'b');
        assert_eq!(index.next(), Some(10));
        assert_eq!(index.pop_due(9), None);
        assert_eq!(index.pop_due(20), Some((10, 'a')));
        assert_eq!(index.pop_due(20), Some((20, 'b')));
        assert_eq!(index.pop_due(20), None);
        assert_eq!(index.next(), Some(30));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn should_keep_entries_with_equal_deadlines_apart() {
        let mut index = DeadlineIndex::default();
        index.insert(5, 2u64);
        index.insert(5, 1u64);
        assert_eq!(index.pop_due(5), Some((5, 1)));
        assert_eq!(index.pop_due(5), Some((5, 2)));
        assert!(index.is_empty());
    }

    #[test]
    fn should_forget_removed_entries() {
        let mut index = DeadlineIndex::default();
        index.insert(5, 1u64);
        index.insert(6, 2u64);
        assert!(index.remove(5, 1));
        assert!(!index.remove(5, 1));
        assert_eq!(index.pop_due(100), Some((6, 2)));
        assert_eq!(index.pop_due(100), None);
    }

    #[test]
    fn should_pop_many_due_entries_in_order() {
        let mut index = DeadlineIndex::default();
        for i in (0..1000u64).rev() {
            index.insert(i % 10, i);
        }
        let mut last = (0, 0);
        let mut popped = 0;
        while let Some(entry) = index.pop_due(9) {
            assert!(entry >= last);
            last = entry;
            popped += 1;
        }
        assert_eq!(popped, 1000);
    }
}
