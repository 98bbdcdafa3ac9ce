//! [`DeltaCache`]: the two-level block cache shared by every layer file of a store.
//!
//! **Invariant:** keys carry the layer's random 128-bit uid (written into the
//! file at creation), never a path, so an entry can never answer for different
//! bytes even when a path is reused by another store or after a restore.
//!
//! **Invariant:** the map locks are `parking_lot` locks held only for map
//! operations; loading happens outside them, and concurrent misses for the same
//! key share one load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::error::Result;

/// Identity of one stored block: the layer's uid and the block's offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Random id of the layer file.
    pub layer_uid: u128,
    /// Byte offset of the block in the file.
    pub offset: u64,
}

/// Capacities of the two cache levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaCacheConfig {
    /// Bytes of stored (compressed) blocks kept, saving reads.
    pub raw_capacity_bytes: u64,
    /// Bytes of decoded chunks kept, saving decompression.
    pub decoded_capacity_bytes: u64,
}

impl Default for DeltaCacheConfig {
    fn default() -> Self {
        DeltaCacheConfig {
            raw_capacity_bytes: 64 << 20,
            decoded_capacity_bytes: 256 << 20,
        }
    }
}

/// Hit and miss counters of one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that loaded.
    pub misses: u64,
    /// Bytes held now.
    pub used_bytes: u64,
    /// Entries held now.
    pub entries: u64,
}

type Cell = Arc<OnceLock<Option<Arc<Vec<u8>>>>>;

#[derive(Debug)]
struct Entry {
    value: Arc<Vec<u8>>,
    last_used: AtomicU64,
}

#[derive(Debug)]
struct Level {
    map: RwLock<HashMap<BlockKey, Entry>>,
    inflight: Mutex<HashMap<BlockKey, Cell>>,
    capacity: u64,
    used: AtomicU64,
    clock: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Level {
    fn new(capacity: u64) -> Self {
        Level {
            map: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            capacity,
            used: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lookup(&self, key: &BlockKey) -> Option<Arc<Vec<u8>>> {
        let map = self.map.read();
        let e = map.get(key)?;
        e.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(Arc::clone(&e.value))
    }

    fn get_or_load(
        &self,
        key: BlockKey,
        fill: bool,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(v) = self.lookup(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        if !fill {
            // Streaming reads (scans) use what is cached but never evict the
            // working set of point reads with blocks they will not revisit.
            self.misses.fetch_add(1, Ordering::Relaxed);
            return load().map(Arc::new);
        }
        let cell: Cell = Arc::clone(self.inflight.lock().entry(key).or_default());
        let mut own_error = None;
        let mut loaded_here = false;
        let mut load = Some(load);
        let value = cell.get_or_init(|| {
            loaded_here = true;
            // Another thread may have finished loading between our lookup and
            // joining the in-flight cell.
            if let Some(v) = self.lookup(&key) {
                return Some(v);
            }
            match (load.take().expect("called once"))() {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    own_error = Some(e);
                    None
                }
            }
        });
        let value = value.clone();
        if loaded_here {
            self.misses.fetch_add(1, Ordering::Relaxed);
            if let Some(v) = &value {
                self.insert(key, Arc::clone(v));
            }
            // Insert before leaving the in-flight map so later lookups hit.
            self.inflight.lock().remove(&key);
        } else {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        match (value, own_error) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(e),
            // The shared load failed in another thread: load here to get our own
            // result (not cached: the failure may repeat).
            (None, None) => (load.take().expect("not called"))().map(Arc::new),
        }
    }

    fn insert(&self, key: BlockKey, value: Arc<Vec<u8>>) {
        let size = value.len() as u64 + 64;
        if size > self.capacity {
            return;
        }
        let mut map = self.map.write();
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = map.insert(
            key,
            Entry {
                value,
                last_used: AtomicU64::new(tick),
            },
        ) {
            self.used
                .fetch_sub(old.value.len() as u64 + 64, Ordering::Relaxed);
        }
        let used = self.used.fetch_add(size, Ordering::Relaxed) + size;
        if used > self.capacity {
            // Evict the least recently used entries down to 3/4 of capacity, in one
            // batch so eviction costs O(1) amortised per insert.
            let mut ages: Vec<(u64, BlockKey)> = map
                .iter()
                .map(|(k, e)| (e.last_used.load(Ordering::Relaxed), *k))
                .collect();
            ages.sort_unstable_by_key(|(t, _)| *t);
            let target = self.capacity / 4 * 3;
            let mut now = used;
            for (_, k) in ages {
                if now <= target {
                    break;
                }
                if let Some(e) = map.remove(&k) {
                    now -= e.value.len() as u64 + 64;
                }
            }
            self.used.store(now, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> LevelStats {
        LevelStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            used_bytes: self.used.load(Ordering::Relaxed),
            entries: self.map.read().len() as u64,
        }
    }
}

/// Two-level cache shared across all delta layers (and all array files) of a store:
/// stored block bytes, and decoded chunk bytes. Both levels are bounded in bytes.
#[derive(Debug)]
pub struct DeltaCache {
    raw: Level,
    decoded: Level,
}

impl Default for DeltaCache {
    fn default() -> Self {
        Self::new(DeltaCacheConfig::default())
    }
}

impl DeltaCache {
    /// A cache with the given capacities.
    pub fn new(config: DeltaCacheConfig) -> Self {
        DeltaCache {
            raw: Level::new(config.raw_capacity_bytes),
            decoded: Level::new(config.decoded_capacity_bytes),
        }
    }

    /// The stored bytes of a block, loading them with `load` on a miss.
    pub fn raw(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.raw.get_or_load(key, true, load)
    }

    /// Like [`DeltaCache::raw`], but a miss is not added to the cache (for scans).
    pub fn raw_streaming(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.raw.get_or_load(key, false, load)
    }

    /// Like [`DeltaCache::decoded`], but a miss is not added to the cache (for scans).
    pub fn decoded_streaming(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.decoded.get_or_load(key, false, load)
    }

    /// The decoded bytes of a block, decoding with `load` on a miss.
    pub fn decoded(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.decoded.get_or_load(key, true, load)
    }

    /// Counters of the stored-bytes level.
    pub fn raw_stats(&self) -> LevelStats {
        self.raw.stats()
    }

    /// Counters of the decoded level.
    pub fn decoded_stats(&self) -> LevelStats {
        self.decoded.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(offset: u64) -> BlockKey {
        BlockKey {
            layer_uid: 7,
            offset,
        }
    }

    #[test]
    fn hits_after_a_miss_and_stays_bounded() {
        let c = DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 10_000,
            decoded_capacity_bytes: 0,
        });
        assert_eq!(*c.raw(key(1), || Ok(vec![1; 10])).unwrap(), vec![1; 10]);
        assert_eq!(*c.raw(key(1), || panic!("must hit")).unwrap(), vec![1; 10]);
        for i in 0..100 {
            c.raw(key(100 + i), || Ok(vec![0; 1000])).unwrap();
        }
        assert!(c.raw_stats().used_bytes <= 10_000);
        // The decoded level has no room: every lookup loads.
        let n = AtomicUsize::new(0);
        for _ in 0..3 {
            c.decoded(key(1), || {
                n.fetch_add(1, Ordering::SeqCst);
                Ok(vec![0; 4])
            })
            .unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn same_offset_in_another_layer_is_another_entry() {
        let c = DeltaCache::default();
        c.raw(key(5), || Ok(vec![1])).unwrap();
        let other = BlockKey {
            layer_uid: 8,
            offset: 5,
        };
        assert_eq!(*c.raw(other, || Ok(vec![2])).unwrap(), vec![2]);
    }

    #[test]
    fn concurrent_misses_load_once() {
        let c = Arc::new(DeltaCache::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, loads, barrier) =
                    (Arc::clone(&c), Arc::clone(&loads), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    c.raw(key(9), || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(vec![3; 100])
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(*t.join().unwrap(), vec![3; 100]);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn errors_are_not_cached() {
        let c = DeltaCache::default();
        assert!(c
            .raw(key(1), || Err(crate::Error::io(
                "read",
                "x",
                std::io::Error::other("boom")
            )))
            .is_err());
        assert_eq!(*c.raw(key(1), || Ok(vec![4])).unwrap(), vec![4]);
    }
}
