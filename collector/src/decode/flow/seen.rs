//! The order in which flows were last seen, kept beside a flow table so that "the least
//! recently seen flow" and "the flows idle since" cost O(log n) each instead of a scan over
//! every flow (a new flow arriving at a full table must not cost work proportional to the
//! table: issue 21).
//!
//! Ties between equal times fall to the flow touched first (a counter), so the order is total
//! and repeatable.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::{Duration, SystemTime};

/// Keys ordered by their last-seen time.
#[derive(Debug)]
pub struct SeenOrder<K> {
    order: BTreeSet<(SystemTime, u64, K)>,
    stamps: HashMap<K, (SystemTime, u64)>,
    tick: u64,
}

impl<K> Default for SeenOrder<K> {
    fn default() -> Self {
        SeenOrder {
            order: BTreeSet::new(),
            stamps: HashMap::new(),
            tick: 0,
        }
    }
}

impl<K: Copy + Ord + Hash> SeenOrder<K> {
    /// Records that `key` was seen at `at` (inserting it when new).
    pub fn touch(&mut self, key: K, at: SystemTime) {
        self.tick += 1;
        if let Some((old_at, old_tick)) = self.stamps.insert(key, (at, self.tick)) {
            self.order.remove(&(old_at, old_tick, key));
        }
        self.order.insert((at, self.tick, key));
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        if let Some((at, tick)) = self.stamps.remove(key) {
            self.order.remove(&(at, tick, *key));
        }
    }

    /// The least recently seen key.
    pub fn oldest(&self) -> Option<K> {
        self.order.first().map(|(_, _, k)| *k)
    }

    /// Keys last seen at or before `cutoff`, oldest first.
    pub fn seen_until(&self, cutoff: SystemTime) -> Vec<K> {
        self.order
            .iter()
            .take_while(|(at, _, _)| *at <= cutoff)
            .map(|(_, _, k)| *k)
            .collect()
    }

    /// Keys idle for `timeout` at `now` (`now - last seen >= timeout`; a time after `now`
    /// counts as just seen), oldest first.
    pub fn idle(&self, now: SystemTime, timeout: Duration) -> Vec<K> {
        if timeout.is_zero() {
            return self.order.iter().map(|(_, _, k)| *k).collect();
        }
        now.checked_sub(timeout)
            .map(|cutoff| self.seen_until(cutoff))
            .unwrap_or_default()
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn oldest_follows_touches_and_removals() {
        let mut o = SeenOrder::default();
        o.touch(1u32, t(10));
        o.touch(2, t(5));
        o.touch(3, t(5));
        assert_eq!(o.oldest(), Some(2), "ties: first touched");
        o.touch(2, t(20));
        assert_eq!(o.oldest(), Some(3));
        o.remove(&3);
        assert_eq!(o.oldest(), Some(1));
        assert_eq!(o.seen_until(t(10)), vec![1]);
        assert_eq!(o.idle(t(30), Duration::from_secs(20)), vec![1]);
        assert_eq!(o.idle(t(30), Duration::ZERO), vec![1, 2]);
        assert!(o.idle(t(30), Duration::from_secs(31)).is_empty());
        assert_eq!(o.len(), 2);
        o.remove(&1);
        o.remove(&2);
        assert!(o.is_empty() && o.oldest().is_none());
    }

    proptest! {
        /// Against a model (a plain map scanned for its minimum, as the flow table did).
        #[test]
        fn agrees_with_a_scan(ops in prop::collection::vec((0u8..3, 0u8..16, 0u64..50), 0..300)) {
            let mut o = SeenOrder::default();
            let mut model: HashMap<u8, (u64, u64)> = HashMap::new();
            let mut tick = 0;
            for (op, key, at) in ops {
                if op == 0 {
                    o.remove(&key);
                    model.remove(&key);
                } else {
                    tick += 1;
                    o.touch(key, t(at));
                    model.insert(key, (at, tick));
                }
                let expected = model.iter().min_by_key(|(_, v)| **v).map(|(k, _)| *k);
                prop_assert_eq!(o.oldest(), expected);
                prop_assert_eq!(o.len(), model.len());
                let mut idle: Vec<(u64, u64, u8)> = model
                    .iter()
                    .filter(|(_, (a, _))| *a <= 25)
                    .map(|(k, (a, tk))| (*a, *tk, *k))
                    .collect();
                idle.sort_unstable();
                let idle: Vec<u8> = idle.into_iter().map(|(_, _, k)| k).collect();
                prop_assert_eq!(o.seen_until(t(25)), idle);
            }
        }
    }
}
