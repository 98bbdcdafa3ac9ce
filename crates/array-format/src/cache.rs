//! [`DeltaCache`]: the two-level block cache shared by every layer file of a store.
//!
//! Each level (stored bytes, decoded bytes) is 16 shards, each a `parking_lot`
//! mutex over a CLOCK of entries and the shard's in-flight loads, plus one byte
//! budget shared by the shards (`cache/level.rs`, `cache/shard.rs`).
//!
//! **Invariant:** keys carry the layer's random 128-bit uid (written into the
//! file at creation), never a path, so an entry can never answer for different
//! bytes even when a path is reused by another store or after a restore.
//!
//! **Invariant:** no lock of the cache is held while loading or for more than
//! O(1) work. A hit, an insert and one CLOCK step each touch one entry under one
//! shard lock; eviction takes as many steps as it needs, one shard lock at a
//! time, so it never scans a level under a lock a reader needs.
//!
//! **Invariant:** a level's bytes never exceed its capacity: an insert reserves
//! its size (payload plus 64 bytes) from the level's budget before it publishes
//! the entry, evicting first, and is dropped if no room can be made. A capacity
//! of 0 disables the level: every lookup loads.
//!
//! **Invariant:** concurrent filling misses of one key share one load, and a
//! waiting miss waits only for a load that is running, synchronously, on another
//! thread. Lookups do run on async runtime threads (atlas-core calls point reads
//! and the merge of partly written chunks from its tasks; scans, flush,
//! compaction and verify run on the blocking pool), so this matters: a loader is
//! a plain closure that runs to completion on the thread that claimed the key,
//! holds no cache lock, and can only wait on a lower level (a decoded load reads
//! through the stored-bytes level, a stored-bytes load reads storage). Waits
//! therefore form no cycle, never depend on a task being scheduled, and last no
//! longer than the one load the waiter would otherwise run itself. A loader that
//! asks its own level for its own key loads again instead of waiting for itself,
//! and a loader that fails or panics releases its waiters, who then load for
//! themselves.

mod level;
mod shard;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::error::Result;
use level::Level;

/// Identity of one stored block: the layer's uid and the block's offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlockKey {
    /// Random id of the layer file.
    pub(crate) layer_uid: u128,
    /// Byte offset of the block in the file.
    pub(crate) offset: u64,
}

/// Capacities of the two cache levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaCacheConfig {
    /// Bytes of stored (compressed) blocks kept, saving reads; 0 disables the
    /// level. Each entry is charged its length plus 64 bytes.
    pub raw_capacity_bytes: u64,
    /// Bytes of decoded chunks kept, saving decompression; 0 disables the level.
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
    /// Lookups answered from the cache (or by another thread's load of the key).
    pub hits: u64,
    /// Lookups that loaded.
    pub misses: u64,
    /// Bytes held now, as charged against the capacity.
    pub used_bytes: u64,
    /// Entries held now.
    pub entries: u64,
}

/// Two-level cache shared across all delta layers (and all array files) of a store:
/// stored block bytes, and decoded chunk bytes. Both levels are bounded in bytes.
///
/// Its public surface is configuration and statistics; only this crate's reads
/// put bytes into it.
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
    /// True when the raw level holds `key`.
    pub(crate) fn raw_contains(&self, key: &BlockKey) -> bool {
        self.raw.contains(key)
    }

    /// True when the decoded level holds `key`.
    pub(crate) fn decoded_contains(&self, key: &BlockKey) -> bool {
        self.decoded.contains(key)
    }

    /// The decoded level's byte budget.
    pub(crate) fn decoded_capacity_bytes(&self) -> u64 {
        self.decoded.capacity_bytes()
    }

    /// True when either level holds `key`.
    pub(crate) fn contains(&self, key: &BlockKey) -> bool {
        self.decoded.contains(key) || self.raw.contains(key)
    }

    /// The raw level's byte budget.
    pub(crate) fn raw_capacity_bytes(&self) -> u64 {
        self.raw.capacity_bytes()
    }

    pub(crate) fn raw(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.raw.get_or_load(key, true, load)
    }

    /// Like [`DeltaCache::raw`], but a miss is not added to the cache (for scans).
    pub(crate) fn raw_streaming(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.raw.get_or_load(key, false, load)
    }

    /// The decoded bytes of a block, decoding with `load` on a miss.
    pub(crate) fn decoded(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.decoded.get_or_load(key, true, load)
    }

    /// Like [`DeltaCache::decoded`], but a miss is not added to the cache (for scans).
    pub(crate) fn decoded_streaming(
        &self,
        key: BlockKey,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        self.decoded.get_or_load(key, false, load)
    }

    /// True when the decoded level keeps anything (its budget is not zero).
    pub(crate) fn decoded_enabled(&self) -> bool {
        self.decoded.capacity_bytes() > 0
    }

    /// `hit` with the decoded bytes of `key` when the decoded level holds
    /// them, else `miss()`, which decodes on its own; nothing is added to
    /// the level (for reads that will not cache what they decode).
    pub(crate) fn decoded_or_else<R>(
        &self,
        key: &BlockKey,
        hit: impl FnOnce(Arc<Vec<u8>>) -> R,
        miss: impl FnOnce() -> R,
    ) -> R {
        self.decoded.get_or_else(key, hit, miss)
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
