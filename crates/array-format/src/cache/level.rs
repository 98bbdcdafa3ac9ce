//! One cache level: sharded entries, a byte budget shared by the shards, CLOCK
//! eviction one entry (and one shard lock) at a time, and single-flight misses.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use parking_lot::{Condvar, Mutex};

use super::shard::{Shard, Step};
use super::{BlockKey, LevelStats};
use crate::error::Result;

/// Bytes charged per entry on top of its payload (key, slot, index, `Arc`).
pub(super) const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// Shards per level (a power of two). Sixteen keeps two readers of different
/// blocks off each other's lock with high probability on machines of a few
/// dozen cores; the capacity is shared, so small levels lose nothing by it.
const SHARD_BITS: u32 = 4;

/// Used entries the hand clears in one eviction before it evicts the next entry
/// whatever its bit: bounds an insert's work when every entry is hot.
const PATIENCE: usize = 64;

/// Where a load stands.
#[derive(Debug)]
enum Outcome {
    Loading,
    Loaded(Arc<Vec<u8>>),
    /// The loader returned an error or panicked.
    Failed,
}

/// One load under way, which concurrent misses of the same key wait for.
#[derive(Debug)]
pub(super) struct Flight {
    /// The thread running the loader (a loader that re-enters the level for its
    /// own key must not wait for itself).
    owner: ThreadId,
    outcome: Mutex<Outcome>,
    done: Condvar,
    /// Threads that have started waiting (read by tests to line threads up
    /// without sleeping).
    waiters: AtomicUsize,
}

impl Flight {
    fn new() -> Self {
        Flight {
            owner: thread::current().id(),
            outcome: Mutex::new(Outcome::Loading),
            done: Condvar::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    /// Blocks until the owner finishes; `None` if its load failed or panicked.
    fn wait(&self) -> Option<Arc<Vec<u8>>> {
        let mut outcome = self.outcome.lock();
        // Counted under the lock: once the count includes us, `finish` cannot
        // slip in between our check and our wait.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        loop {
            match &*outcome {
                Outcome::Loading => self.done.wait(&mut outcome),
                Outcome::Loaded(v) => return Some(Arc::clone(v)),
                Outcome::Failed => return None,
            }
        }
    }

    fn finish(&self, value: Option<Arc<Vec<u8>>>) {
        *self.outcome.lock() = value.map_or(Outcome::Failed, Outcome::Loaded);
        self.done.notify_all();
    }
}

/// The claim on a key's load. Dropping it without [`Claim::complete`] (the
/// loader failed or panicked) releases the waiters with "failed", so no waiter
/// can outlive its loader.
struct Claim<'a> {
    level: &'a Level,
    key: BlockKey,
    flight: Arc<Flight>,
    completed: bool,
}

impl Claim<'_> {
    fn complete(mut self, value: Option<Arc<Vec<u8>>>) {
        self.completed = true;
        if let Some(v) = &value {
            self.level.insert(self.key, Arc::clone(v));
        }
        // Inserted first, so a lookup that no longer finds the flight hits.
        self.level
            .shard(&self.key)
            .lock()
            .inflight
            .remove(&self.key);
        self.flight.finish(value);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.completed {
            self.level
                .shard(&self.key)
                .lock()
                .inflight
                .remove(&self.key);
            self.flight.finish(None);
        }
    }
}

/// What a filling lookup found under the shard lock.
enum Role {
    Hit(Arc<Vec<u8>>),
    Wait(Arc<Flight>),
    Load(Arc<Flight>),
}

/// One level of the cache, bounded in bytes.
#[derive(Debug)]
pub(super) struct Level {
    shards: Box<[Mutex<Shard>]>,
    capacity_bytes: u64,
    /// Bytes held plus bytes reserved by inserts under way; never above
    /// `capacity_bytes` (an insert reserves before it publishes).
    budget_used_bytes: AtomicU64,
    /// Which shard the next eviction starts from.
    hand: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Level {
    pub(super) fn new(capacity_bytes: u64) -> Self {
        Level {
            shards: (0..1usize << SHARD_BITS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            capacity_bytes,
            budget_used_bytes: AtomicU64::new(0),
            hand: AtomicUsize::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(super) fn shard(&self, key: &BlockKey) -> &Mutex<Shard> {
        // splitmix64's finaliser over the key's words; the top bits pick the shard.
        let mut h = (key.layer_uid as u64)
            ^ ((key.layer_uid >> 64) as u64).rotate_left(29)
            ^ key.offset.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        &self.shards[(h >> (64 - SHARD_BITS)) as usize]
    }

    /// The bytes of `key`, from the cache or from `load`. With `fill`, a miss is
    /// cached and concurrent misses of the key share one load; without (scans),
    /// a miss loads on its own and caches nothing.
    /// The byte budget.
    pub(super) fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// True when `key` is cached (a hit for the CLOCK, like a read).
    pub(super) fn contains(&self, key: &BlockKey) -> bool {
        self.capacity_bytes > 0 && self.shard(key).lock().get(key).is_some()
    }

    /// `hit` with the cached bytes of `key`, else `miss()`; nothing is cached
    /// either way. Counted like a non-filling [`Level::get_or_load`]: for a
    /// caller that decodes a missed block straight into its own result.
    pub(super) fn get_or_else<R>(
        &self,
        key: &BlockKey,
        hit: impl FnOnce(Arc<Vec<u8>>) -> R,
        miss: impl FnOnce() -> R,
    ) -> R {
        if self.capacity_bytes > 0 {
            // The shard's lock is released at the end of this statement.
            let found = self.shard(key).lock().get(key);
            if let Some(v) = found {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return hit(v);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        miss()
    }

    pub(super) fn get_or_load(
        &self,
        key: BlockKey,
        fill: bool,
        load: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Vec<u8>>> {
        // A disabled level (`verify` reads everything for real) and a lookup
        // that does not fill (scans) cache nothing.
        if self.capacity_bytes == 0 || !fill {
            return self.get_or_else(&key, Ok, || load().map(Arc::new));
        }
        let shard = self.shard(&key);
        // Looking up and claiming under one lock: a key is either cached, being
        // loaded by exactly one thread, or neither.
        let role = {
            let mut s = shard.lock();
            if let Some(v) = s.get(&key) {
                Role::Hit(v)
            } else if let Some(f) = s.inflight.get(&key) {
                Role::Wait(Arc::clone(f))
            } else {
                let f = Arc::new(Flight::new());
                s.inflight.insert(key, Arc::clone(&f));
                Role::Load(f)
            }
        };
        match role {
            Role::Hit(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(v)
            }
            Role::Wait(flight) => {
                // A loader that asks its own level for its own key would wait
                // for itself forever; it loads again instead.
                let loaded_by_owner = if flight.owner == thread::current().id() {
                    None
                } else {
                    flight.wait()
                };
                if let Some(v) = loaded_by_owner {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    Ok(v)
                } else {
                    // The shared load failed: load here for our own result, not
                    // cached (the failure may repeat).
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    load().map(Arc::new)
                }
            }
            Role::Load(flight) => {
                let claim = Claim {
                    level: self,
                    key,
                    flight,
                    completed: false,
                };
                self.misses.fetch_add(1, Ordering::Relaxed);
                // No lock of this level is held while the loader runs.
                match load() {
                    Ok(bytes) => {
                        let v = Arc::new(bytes);
                        claim.complete(Some(Arc::clone(&v)));
                        Ok(v)
                    }
                    Err(e) => {
                        claim.complete(None);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Caches `value` under `key` if room can be made for it.
    fn insert(&self, key: BlockKey, value: Arc<Vec<u8>>) {
        let size_bytes = value.len() as u64 + ENTRY_OVERHEAD_BYTES;
        if size_bytes > self.capacity_bytes || !self.reserve(size_bytes) {
            return;
        }
        let inserted = self.shard(&key).lock().insert(key, value, size_bytes);
        if !inserted {
            self.budget_used_bytes
                .fetch_sub(size_bytes, Ordering::AcqRel);
        }
    }

    /// Reserves `size_bytes` of the budget, evicting one entry at a time until it
    /// fits; `false` if nothing is left to evict (concurrent inserts hold the
    /// budget), in which case the value is simply not cached.
    fn reserve(&self, size_bytes: u64) -> bool {
        let mut used = self.budget_used_bytes.load(Ordering::Acquire);
        loop {
            if used + size_bytes <= self.capacity_bytes {
                match self.budget_used_bytes.compare_exchange_weak(
                    used,
                    used + size_bytes,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return true,
                    Err(now) => used = now,
                }
            } else if self.evict_one() {
                used = self.budget_used_bytes.load(Ordering::Acquire);
            } else {
                return false;
            }
        }
    }

    /// Evicts one entry. The level's hand walks the shards in turn, taking one
    /// CLOCK step in each non-empty one, under that shard's lock only; together
    /// the shards' hands act as one CLOCK over the level. `false` if every shard
    /// was found empty.
    fn evict_one(&self) -> bool {
        let n = self.shards.len();
        let mut at = self.hand.fetch_add(1, Ordering::Relaxed);
        let (mut spared, mut empty_in_a_row) = (0, 0);
        loop {
            let step = self.shards[at % n].lock().clock_step(spared >= PATIENCE);
            at = at.wrapping_add(1);
            match step {
                Step::Empty => {
                    empty_in_a_row += 1;
                    if empty_in_a_row == n {
                        return false;
                    }
                }
                Step::Spared => {
                    spared += 1;
                    empty_in_a_row = 0;
                }
                Step::Evicted { value, size_bytes } => {
                    // The next eviction goes on from here (a race with another
                    // evictor only shifts where it starts).
                    self.hand.store(at, Ordering::Relaxed);
                    self.budget_used_bytes
                        .fetch_sub(size_bytes, Ordering::AcqRel);
                    // Freed here, outside every lock.
                    drop(value);
                    return true;
                }
            }
        }
    }

    pub(super) fn stats(&self) -> LevelStats {
        let entries = self.shards.iter().map(|s| s.lock().len() as u64).sum();
        LevelStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            // The budget, not a sum over shards taken one after another (which
            // can count a moving entry twice): it bounds what is held, includes
            // inserts under way, and never exceeds the capacity.
            used_bytes: self.budget_used_bytes.load(Ordering::Acquire),
            entries,
        }
    }

    /// Test hook: bytes held by the shards (equal to the budget when no insert
    /// is under way).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().held_bytes()).sum()
    }

    /// Test hook: how many threads wait for the load of `key` under way
    /// (`None` if none is).
    #[cfg(test)]
    pub(super) fn waiters(&self, key: &BlockKey) -> Option<usize> {
        let s = self.shard(key).lock();
        Some(s.inflight.get(key)?.waiters.load(Ordering::Relaxed))
    }
}
