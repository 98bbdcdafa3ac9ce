//! One shard of a cache level: a CLOCK over a dense slab of entries, and the
//! level's in-flight loads of the keys that hash to it.
//!
//! Every operation is O(1): a hit sets a reference bit, an insert pushes onto the
//! slab, and one CLOCK step looks at exactly one entry (the level decides how
//! many steps to take, one shard lock at a time).

use std::collections::HashMap;
use std::sync::Arc;

use super::level::Flight;
use super::BlockKey;

/// One cached block.
#[derive(Debug)]
struct Slot {
    key: BlockKey,
    value: Arc<Vec<u8>>,
    /// What the entry costs against the level's capacity.
    size_bytes: u64,
    /// Set by every hit, cleared when the hand spares the entry.
    referenced: bool,
}

/// What one CLOCK step did.
#[derive(Debug)]
pub(super) enum Step {
    /// The shard holds nothing.
    Empty,
    /// The entry under the hand had been used since the last pass: its bit was
    /// cleared and the hand moved on.
    Spared,
    /// The entry under the hand was removed. Its bytes are handed back so the
    /// caller frees them after releasing the shard lock.
    Evicted {
        value: Arc<Vec<u8>>,
        size_bytes: u64,
    },
}

/// Entries and in-flight loads of one shard (always behind the shard's mutex).
#[derive(Debug, Default)]
pub(super) struct Shard {
    /// Position of each key in `slots`.
    index: HashMap<BlockKey, usize>,
    /// Dense: removal swaps the last entry into the hole, so the hand never
    /// walks over empty slots.
    slots: Vec<Slot>,
    hand: usize,
    /// Loads under way for keys of this shard (single-flight).
    pub(super) inflight: HashMap<BlockKey, Arc<Flight>>,
}

impl Shard {
    /// The cached bytes of `key`, marking the entry as recently used.
    pub(super) fn get(&mut self, key: &BlockKey) -> Option<Arc<Vec<u8>>> {
        let &i = self.index.get(key)?;
        let slot = &mut self.slots[i];
        slot.referenced = true;
        Some(Arc::clone(&slot.value))
    }

    /// Adds an entry; `false` (and nothing changes) if the key is present.
    ///
    /// The entry goes just behind the hand, unreferenced, as in CLOCK: it is
    /// looked at last in the current pass, and evicted then unless used since.
    /// (The entry that was under the hand moves to the end of the slab and is
    /// looked at later in this pass.)
    pub(super) fn insert(&mut self, key: BlockKey, value: Arc<Vec<u8>>, size_bytes: u64) -> bool {
        if self.index.contains_key(&key) {
            return false;
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        let last = self.slots.len();
        self.slots.push(Slot {
            key,
            value,
            size_bytes,
            referenced: false,
        });
        self.slots.swap(self.hand, last);
        self.index.insert(self.slots[last].key, last);
        self.index.insert(key, self.hand);
        self.hand += 1;
        true
    }

    /// One step of the hand. With `force`, the entry under the hand is evicted
    /// even if it was used (the level bounds how long it looks for a victim).
    pub(super) fn clock_step(&mut self, force: bool) -> Step {
        if self.slots.is_empty() {
            return Step::Empty;
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        let slot = &mut self.slots[self.hand];
        if slot.referenced && !force {
            slot.referenced = false;
            self.hand += 1;
            return Step::Spared;
        }
        // The last entry fills the hole and is looked at next.
        let slot = self.slots.swap_remove(self.hand);
        self.index.remove(&slot.key);
        if let Some(moved) = self.slots.get(self.hand) {
            self.index.insert(moved.key, self.hand);
        }
        Step::Evicted {
            value: slot.value,
            size_bytes: slot.size_bytes,
        }
    }

    /// Entries held.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Bytes held (as charged against the capacity). O(entries): tests only.
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> u64 {
        self.slots.iter().map(|s| s.size_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(offset: u64) -> BlockKey {
        BlockKey {
            layer_uid: 1,
            offset,
        }
    }

    fn evicted(step: Step) -> Option<u64> {
        match step {
            Step::Evicted { value, .. } => Some(u64::from(value[0])),
            _ => None,
        }
    }

    #[test]
    fn clock_evicts_unused_entries_and_spares_used_ones_once() {
        let mut s = Shard::default();
        // Each insert goes behind the hand: slots end up [0, 1, 2], hand past 2.
        for i in 0..3u8 {
            assert!(s.insert(key(u64::from(i)), Arc::new(vec![i]), 10));
        }
        assert!(!s.insert(key(0), Arc::new(vec![9]), 10));
        assert_eq!(s.held_bytes(), 30);
        assert!(s.get(&key(0)).is_some());
        // Key 0 was used: spared; key 1 was not: evicted, key 2 fills its slot.
        assert!(matches!(s.clock_step(false), Step::Spared));
        assert_eq!(evicted(s.clock_step(false)), Some(1));
        assert!(s.get(&key(1)).is_none());
        // A new entry is looked at last: key 2 (under the hand) moves to the end.
        assert!(s.insert(key(3), Arc::new(vec![3]), 10));
        assert_eq!(evicted(s.clock_step(false)), Some(2));
        // Key 0's bit was cleared by the pass, so it goes before the newer key 3.
        assert_eq!(evicted(s.clock_step(false)), Some(0));
        assert!(s.get(&key(3)).is_some());
        assert!(matches!(s.clock_step(false), Step::Spared));
        assert_eq!(evicted(s.clock_step(true)), Some(3));
        assert!(matches!(s.clock_step(true), Step::Empty));
        assert_eq!((s.len(), s.held_bytes()), (0, 0));
    }

    #[test]
    fn index_follows_swapped_entries() {
        let mut s = Shard::default();
        for i in 0..50u8 {
            s.insert(key(u64::from(i)), Arc::new(vec![i]), 1);
        }
        let mut gone = 0;
        while gone < 25 {
            if evicted(s.clock_step(true)).is_some() {
                gone += 1;
            }
        }
        let mut left = 0;
        for i in 0..50u8 {
            if let Some(v) = s.get(&key(u64::from(i))) {
                assert_eq!(v[0], i);
                left += 1;
            }
        }
        assert_eq!((left, s.len(), s.held_bytes()), (25, 25, 25));
    }
}
