use super::level::ENTRY_OVERHEAD_BYTES;
use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

fn key(offset: u64) -> BlockKey {
    BlockKey {
        layer_uid: 7,
        offset,
    }
}

fn boom() -> crate::Error {
    crate::Error::io("read", "x", std::io::Error::other("boom"))
}

/// Spins (yielding) until `ready`; the thing awaited is always a step another
/// thread takes without waiting for us, so this cannot hang.
fn spin_until(ready: impl Fn() -> bool) {
    while !ready() {
        std::thread::yield_now();
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
    assert_eq!(c.decoded_stats().entries, 0);
}

#[test]
fn accounting_is_exact_and_oversized_entries_are_not_kept() {
    let entry = 1000 + ENTRY_OVERHEAD_BYTES;
    let c = DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: 5 * entry,
        decoded_capacity_bytes: entry,
    });
    for i in 0..5 {
        c.raw(key(i), || Ok(vec![0; 1000])).unwrap();
    }
    let s = c.raw_stats();
    assert_eq!((s.entries, s.used_bytes), (5, 5 * entry));
    assert_eq!(c.raw.held_bytes(), 5 * entry);
    // A sixth evicts exactly one.
    c.raw(key(5), || Ok(vec![0; 1000])).unwrap();
    let s = c.raw_stats();
    assert_eq!((s.entries, s.used_bytes), (5, 5 * entry));
    // An entry of exactly the capacity fits; one byte more does not.
    c.decoded(key(1), || Ok(vec![1; 1000])).unwrap();
    assert_eq!(c.decoded_stats().entries, 1);
    c.decoded(key(2), || Ok(vec![2; 1001])).unwrap();
    let s = c.decoded_stats();
    assert_eq!((s.entries, s.used_bytes), (1, entry));
    assert_eq!(
        *c.decoded(key(1), || panic!("must hit")).unwrap(),
        vec![1; 1000]
    );
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
fn a_used_entry_outlives_entries_read_once() {
    // Room for about ten entries; one is read between every insert of others.
    let c = DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: 10 * (100 + ENTRY_OVERHEAD_BYTES),
        decoded_capacity_bytes: 0,
    });
    let hot_loads = AtomicUsize::new(0);
    let hot = || {
        hot_loads.fetch_add(1, Ordering::SeqCst);
        Ok(vec![9; 100])
    };
    for i in 0..1000 {
        assert_eq!(*c.raw(key(0), hot).unwrap(), vec![9; 100]);
        c.raw(key(1 + i), || Ok(vec![0; 100])).unwrap();
    }
    assert_eq!(hot_loads.load(Ordering::SeqCst), 1);
    assert!(c.raw_stats().misses > 1000, "the others were evicted");
}

#[test]
fn concurrent_misses_load_once() {
    let c = Arc::new(DeltaCache::default());
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (c, loads, barrier) = (Arc::clone(&c), Arc::clone(&loads), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                c.raw(key(9), || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // Finish only once the seven others wait for this load, so
                    // all eight misses really overlap (or at once if another
                    // load started: the test then fails instead of hanging).
                    spin_until(|| {
                        c.raw.waiters(&key(9)) == Some(7) || loads.load(Ordering::SeqCst) > 1
                    });
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
    let s = c.raw_stats();
    assert_eq!((s.hits, s.misses, s.entries), (7, 1, 1));
    assert_eq!(c.raw.waiters(&key(9)), None);
}

#[test]
fn errors_are_not_cached() {
    let c = DeltaCache::default();
    assert!(c.raw(key(1), || Err(boom())).is_err());
    assert_eq!(*c.raw(key(1), || Ok(vec![4])).unwrap(), vec![4]);
}

/// A waiter is released when the load it waits for fails or panics, and then
/// loads for itself (uncached).
#[test]
fn a_failed_or_panicking_load_releases_its_waiter() {
    for panics in [false, true] {
        let c = DeltaCache::default();
        std::thread::scope(|s| {
            let owner = s.spawn(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    c.raw(key(1), || {
                        spin_until(|| c.raw.waiters(&key(1)) == Some(1));
                        assert!(!panics, "loader panics (expected by the test)");
                        Err(boom())
                    })
                }))
            });
            let waiter = s.spawn(|| {
                spin_until(|| c.raw.waiters(&key(1)).is_some());
                c.raw(key(1), || Ok(vec![5])).unwrap()
            });
            assert_eq!(*waiter.join().unwrap(), vec![5]);
            let outcome = owner.join().unwrap();
            assert_eq!(outcome.is_err(), panics);
            assert!(matches!(outcome, Err(_) | Ok(Err(_))));
        });
        assert_eq!(c.raw.waiters(&key(1)), None);
        assert_eq!(c.raw_stats().entries, 0);
        // The key is loadable (and cached) again afterwards.
        c.raw(key(1), || Ok(vec![6])).unwrap();
        assert_eq!(*c.raw(key(1), || panic!("must hit")).unwrap(), vec![6]);
    }
}

#[test]
fn a_loader_asking_for_its_own_key_does_not_wait_for_itself() {
    let c = DeltaCache::default();
    let v = c
        .decoded(key(3), || {
            c.decoded(key(3), || Ok(vec![7; 3]))
                .map(|inner| inner.to_vec())
        })
        .unwrap();
    assert_eq!(*v, vec![7; 3]);
    assert_eq!(
        *c.decoded(key(3), || panic!("must hit")).unwrap(),
        vec![7; 3]
    );
}

/// What the block `key` holds in the hammer test: its length and every byte
/// depend on the key, so bytes served for the wrong key are caught.
fn stored(key: BlockKey) -> Vec<u8> {
    let seed = (key.layer_uid as u64).wrapping_mul(131) ^ key.offset.wrapping_mul(7);
    (0..16 + (seed % 300))
        .map(|i| (seed.wrapping_add(i * 31) % 251) as u8)
        .collect()
}

fn decoded(stored: &[u8]) -> Vec<u8> {
    stored.iter().rev().map(|b| b ^ 0x5a).collect()
}

#[test]
fn hammering_threads_stay_within_capacity_and_never_see_wrong_bytes() {
    const RAW_CAP: u64 = 3_000;
    const DECODED_CAP: u64 = 5_000;
    const N_KEYS: usize = 96;
    let c = DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: RAW_CAP,
        decoded_capacity_bytes: DECODED_CAP,
    });
    // One flag per (level, key): set while a filling load of it runs. Filling
    // loads of one key must never overlap (streaming loads may).
    let loading: Vec<AtomicBool> = (0..2 * N_KEYS).map(|_| AtomicBool::new(false)).collect();
    let fill_loads = AtomicU64::new(0);
    let key_of = |i: usize| BlockKey {
        layer_uid: 1 + (i % 2) as u128 * (u128::MAX / 3),
        offset: (i / 2) as u64 * 4096,
    };
    let single_flight = |slot: usize, bytes: Vec<u8>| {
        assert!(
            !loading[slot].swap(true, Ordering::SeqCst),
            "two filling loads of one key at once"
        );
        fill_loads.fetch_add(1, Ordering::Relaxed);
        std::thread::yield_now();
        loading[slot].store(false, Ordering::SeqCst);
        Ok(bytes)
    };
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (c, key_of, single_flight) = (&c, &key_of, &single_flight);
            s.spawn(move || {
                let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for n in 0..20_000u32 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Skewed: low keys are hot.
                    let i = ((x % N_KEYS as u64) * ((x >> 32) % N_KEYS as u64)) as usize / N_KEYS;
                    let k = key_of(i);
                    let got = match (x >> 20) % 4 {
                        0 => c.raw(k, || single_flight(i, stored(k))).unwrap(),
                        1 => c.raw_streaming(k, || Ok(stored(k))).unwrap(),
                        2 => c
                            .decoded_streaming(k, || {
                                Ok(decoded(&c.raw_streaming(k, || Ok(stored(k)))?))
                            })
                            .unwrap(),
                        _ => c
                            .decoded(k, || {
                                let raw = c.raw(k, || single_flight(i, stored(k)))?;
                                single_flight(N_KEYS + i, decoded(&raw))
                            })
                            .unwrap(),
                    };
                    let want = if (x >> 20) % 4 < 2 {
                        stored(k)
                    } else {
                        decoded(&stored(k))
                    };
                    assert_eq!(*got, want, "wrong bytes for {k:?}");
                    if n % 64 == 0 {
                        assert!(c.raw_stats().used_bytes <= RAW_CAP);
                        assert!(c.decoded_stats().used_bytes <= DECODED_CAP);
                    }
                }
            });
        }
    });
    let (r, d) = (c.raw_stats(), c.decoded_stats());
    assert!(r.used_bytes <= RAW_CAP && d.used_bytes <= DECODED_CAP);
    // Quiet now: the budget is exactly what the shards hold.
    assert_eq!(c.raw.held_bytes(), r.used_bytes);
    assert_eq!(c.decoded.held_bytes(), d.used_bytes);
    assert!(r.entries > 0 && d.entries > 0);
    // Far more filling loads than keys: the levels evicted and reloaded.
    assert!(fill_loads.load(Ordering::Relaxed) > 4 * N_KEYS as u64);
}

/// Reads of a cached key complete while another thread inserts (and so evicts)
/// without pause: the inserter runs until the reader is done, so every read
/// below overlaps the insert storm. A design that evicted under a lock readers
/// need would still pass if it were merely slow; this checks progress and
/// correct bytes, and `hammering_threads…` checks the bounds.
#[test]
fn reads_progress_while_another_thread_evicts() {
    let c = DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: 20 * (500 + ENTRY_OVERHEAD_BYTES),
        decoded_capacity_bytes: 0,
    });
    let stop = AtomicBool::new(false);
    let inserts = AtomicU64::new(0);
    let hot = key(u64::MAX);
    c.raw(hot, || Ok(vec![1; 64])).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                c.raw(key(i), || Ok(vec![(i % 256) as u8; 500])).unwrap();
                i += 1;
                inserts.store(i, Ordering::SeqCst);
            }
        });
        // Start once the level is full and every insert evicts.
        spin_until(|| inserts.load(Ordering::SeqCst) > 40);
        for _ in 0..10_000 {
            assert_eq!(*c.raw(hot, || Ok(vec![1; 64])).unwrap(), vec![1; 64]);
        }
        stop.store(true, Ordering::SeqCst);
    });
    let s = c.raw_stats();
    assert!(s.used_bytes <= 20 * (500 + ENTRY_OVERHEAD_BYTES));
    assert!(s.hits >= 9_000, "the hot key stays cached: {s:?}");
}

/// `decoded_or_else` serves a cached block to `hit`, runs `miss` otherwise,
/// never caches, and counts like a streaming lookup; with the level off it
/// always misses.
#[test]
fn decoded_or_else_hits_misses_and_never_fills() {
    let c = DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: 0,
        decoded_capacity_bytes: 10_000,
    });
    assert!(c.decoded_enabled());
    let got = c.decoded_or_else(&key(1), |_| panic!("nothing cached yet"), || 7);
    assert_eq!(got, 7);
    assert_eq!(c.decoded_stats().entries, 0, "a miss is not cached");
    c.decoded(key(1), || Ok(vec![5; 10])).unwrap();
    let got = c.decoded_or_else(&key(1), |v| v.len(), || panic!("must hit"));
    assert_eq!(got, 10);
    let s = c.decoded_stats();
    assert_eq!((s.hits, s.misses), (1, 2));

    let off = DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: 0,
        decoded_capacity_bytes: 0,
    });
    assert!(!off.decoded_enabled());
    for _ in 0..3 {
        assert_eq!(off.decoded_or_else(&key(1), |_| 0, || 1), 1);
    }
    assert_eq!(off.decoded_stats().misses, 3);
}
