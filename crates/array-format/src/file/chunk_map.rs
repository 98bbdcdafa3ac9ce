//! [`ChunkMap`]: chunk index → value, ordered, without a tree for one chunk.
//!
//! Most arrays of a collection of profiles or station series have one chunk
//! per dataset. A `BTreeMap` with one entry still allocates a whole leaf
//! (room for eleven), which made the merged index and the pending chunks of
//! a 3,000-profile import cost about ten times their contents. This map keeps
//! a single entry inline and becomes a `BTreeMap` from the second one on.

use std::collections::{btree_map, BTreeMap};

/// An ordered map from chunk index to `V`, inline while it holds one entry.
#[derive(Clone, Debug, Default)]
pub(crate) enum ChunkMap<V> {
    /// No entry.
    #[default]
    Empty,
    /// Exactly one entry.
    One(u64, V),
    /// Two or more entries (or fewer, after removals).
    Many(BTreeMap<u64, V>),
}

impl<V> ChunkMap<V> {
    /// An empty map.
    pub(crate) fn new() -> Self {
        ChunkMap::Empty
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        match self {
            ChunkMap::Empty => 0,
            ChunkMap::One(..) => 1,
            ChunkMap::Many(m) => m.len(),
        }
    }

    /// Inserts, returning the value it replaced.
    pub(crate) fn insert(&mut self, key: u64, value: V) -> Option<V> {
        match self {
            ChunkMap::Empty => {
                *self = ChunkMap::One(key, value);
                None
            }
            ChunkMap::One(k, v) if *k == key => Some(std::mem::replace(v, value)),
            ChunkMap::One(..) => {
                let ChunkMap::One(k, v) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                let mut map = BTreeMap::new();
                map.insert(k, v);
                map.insert(key, value);
                *self = ChunkMap::Many(map);
                None
            }
            ChunkMap::Many(map) => map.insert(key, value),
        }
    }

    /// Removes an entry, returning its value.
    pub(crate) fn remove(&mut self, key: u64) -> Option<V> {
        match self {
            ChunkMap::One(k, _) if *k == key => {
                let ChunkMap::One(_, v) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                Some(v)
            }
            ChunkMap::Many(map) => map.remove(&key),
            _ => None,
        }
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: u64) -> Option<&V> {
        match self {
            ChunkMap::One(k, v) if *k == key => Some(v),
            ChunkMap::Many(map) => map.get(&key),
            _ => None,
        }
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> Iter<'_, V> {
        match self {
            ChunkMap::Empty => Iter::One(None),
            ChunkMap::One(k, v) => Iter::One(Some((k, v))),
            ChunkMap::Many(map) => Iter::Many(map.iter()),
        }
    }

    /// Entries in key order, values mutable.
    pub(crate) fn iter_mut(&mut self) -> IterMut<'_, V> {
        match self {
            ChunkMap::Empty => IterMut::One(None),
            ChunkMap::One(k, v) => IterMut::One(Some((&*k, v))),
            ChunkMap::Many(map) => IterMut::Many(map.iter_mut()),
        }
    }

    /// Keys in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &u64> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// Values in key order, mutable.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.iter_mut().map(|(_, v)| v)
    }
}

/// Iterator of [`ChunkMap::iter`].
pub(crate) enum Iter<'a, V> {
    One(Option<(&'a u64, &'a V)>),
    Many(btree_map::Iter<'a, u64, V>),
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::One(one) => one.take(),
            Iter::Many(it) => it.next(),
        }
    }
}

/// Iterator of [`ChunkMap::iter_mut`].
pub(crate) enum IterMut<'a, V> {
    One(Option<(&'a u64, &'a mut V)>),
    Many(btree_map::IterMut<'a, u64, V>),
}

impl<'a, V> Iterator for IterMut<'a, V> {
    type Item = (&'a u64, &'a mut V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            IterMut::One(one) => one.take(),
            IterMut::Many(it) => it.next(),
        }
    }
}

impl<'a, V> IntoIterator for &'a ChunkMap<V> {
    type Item = (&'a u64, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, V> IntoIterator for &'a mut ChunkMap<V> {
    type Item = (&'a u64, &'a mut V);
    type IntoIter = IterMut<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<V> Extend<(u64, V)> for ChunkMap<V> {
    fn extend<I: IntoIterator<Item = (u64, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V> FromIterator<(u64, V)> for ChunkMap<V> {
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(iter: I) -> Self {
        let mut map = ChunkMap::new();
        map.extend(iter);
        map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::ChunkMap;

    proptest! {
        /// Any sequence of inserts and removes leaves the same entries, in the
        /// same order, as a `BTreeMap`.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec((any::<bool>(), 0u64..6, any::<u32>()), 0..40)) {
            let mut ours = ChunkMap::new();
            let mut model = BTreeMap::new();
            for (insert, k, v) in ops {
                if insert {
                    prop_assert_eq!(ours.insert(k, v), model.insert(k, v));
                } else {
                    prop_assert_eq!(ours.remove(k), model.remove(&k));
                }
                prop_assert_eq!(ours.iter().count(), model.len());
                for k in 0..6 {
                    prop_assert_eq!(ours.get(k), model.get(&k));
                }
                let a: Vec<_> = ours.iter().map(|(k, v)| (*k, *v)).collect();
                let b: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(a, b);
            }
            for v in ours.values_mut() {
                *v = v.wrapping_add(1);
            }
            for v in model.values_mut() {
                *v = v.wrapping_add(1);
            }
            let a: Vec<_> = ours.values().copied().collect();
            let b: Vec<_> = model.values().copied().collect();
            prop_assert_eq!(a, b);
        }
    }
}
