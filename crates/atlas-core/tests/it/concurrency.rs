//! Concurrency on a multi-threaded runtime: readers beside a writer that
//! rewrites, flushes and compacts in a loop never see a torn chunk set nor a
//! version going backwards, and the run ends (a timeout proves no deadlock);
//! readers on separate handles reopened in a loop see only committed
//! versions; structural changes racing a flush never commit a registry that
//! fails to open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atlas_core::{Atlas, MemoryStorage, StoreConfig};

use crate::common::{create_mem, full, reopen_mem, strings};

const ROUNDS: u32 = 30;
/// Generous bound proving the runs end (no deadlock).
const TIMEOUT: Duration = Duration::from_mins(1);
const READERS: usize = 8;
const SHAPE: [usize; 2] = [8, 8];

/// Checks one read: every cell the same version; returns it.
fn one_version(cells: &ndarray::ArrayD<f64>, ctx: &str) -> f64 {
    let first = cells[[0, 0]];
    assert!(
        cells.iter().all(|&c| c == first),
        "{ctx}: torn read, versions {:?}",
        {
            let mut v: Vec<f64> = cells.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            v.dedup();
            v
        }
    );
    first
}

async fn setup_array(s: &Atlas) {
    let ds = s.create_dataset("d").await.unwrap();
    // 4×4 = 16 chunks of 2×2.
    ds.define_array::<f64>(
        "v",
        strings(&["y", "x"]),
        vec![8, 8],
        Some(vec![2, 2]),
        None,
    )
    .await
    .unwrap();
    ds.write_array("v", vec![], full(&SHAPE, 0.0f64).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_never_see_torn_or_backward_versions() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    setup_array(&s).await;
    let done = Arc::new(AtomicBool::new(false));
    let run = async {
        let mut readers = Vec::new();
        for r in 0..READERS {
            let s = s.clone();
            let done = Arc::clone(&done);
            readers.push(tokio::spawn(async move {
                let ds = s.open_dataset("d").await.unwrap();
                let mut last = 0.0f64;
                let mut reads = 0u64;
                loop {
                    // Check the flag first so at least one read follows the
                    // writer's last round.
                    let finished = done.load(Ordering::SeqCst);
                    let ctx = format!("reader {r}, read {reads}");
                    let v = if r % 2 == 0 {
                        let a = ds
                            .read_array::<f64>("v", vec![], vec![])
                            .await
                            .unwrap()
                            .unwrap();
                        one_version(&a, &ctx)
                    } else {
                        let a = s
                            .read_array_across::<f64>("v", &["d"], vec![], vec![])
                            .await
                            .unwrap();
                        one_version(a[0].as_ref().unwrap(), &ctx)
                    };
                    assert!(v >= last, "{ctx}: version went back from {last} to {v}");
                    last = v;
                    reads += 1;
                    if finished {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                (last, reads)
            }));
        }
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                let ds = s.open_dataset("d").await.unwrap();
                for v in 1..=ROUNDS {
                    ds.write_array("v", vec![], full(&SHAPE, f64::from(v)).view())
                        .await
                        .unwrap();
                    s.flush().await.unwrap();
                    if v % 5 == 0 {
                        s.compact().await.unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        writer.await.expect("writer panicked");
        done.store(true, Ordering::SeqCst);
        let mut results = Vec::new();
        for r in readers {
            results.push(r.await.expect("reader panicked"));
        }
        results
    };
    let results = tokio::time::timeout(TIMEOUT, run)
        .await
        .expect("deadlock: readers and writer did not finish within 60 s");
    for (i, (last, reads)) in results.iter().enumerate() {
        assert_eq!(
            *last,
            f64::from(ROUNDS),
            "reader {i} ends on the last version"
        );
        assert!(*reads >= 1);
    }
    let r = reopen_mem(&storage, "end").await;
    let a = r
        .open_dataset("d")
        .await
        .unwrap()
        .read_array::<f64>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one_version(&a, "final"), f64::from(ROUNDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopened_readers_see_only_committed_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let s = Atlas::create_path(&root, StoreConfig::default())
        .await
        .unwrap();
    setup_array(&s).await;
    // Versions whose flush has started / completed.
    let started = Arc::new(AtomicU64::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let run = async {
        let mut readers = Vec::new();
        for r in 0..READERS {
            let (root, started, completed, done) = (
                root.clone(),
                Arc::clone(&started),
                Arc::clone(&completed),
                Arc::clone(&done),
            );
            readers.push(tokio::spawn(async move {
                let mut last = 0u64;
                let mut reads = 0u64;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let lo = completed.load(Ordering::SeqCst);
                    let h = Atlas::open_path(&root)
                        .await
                        .unwrap_or_else(|e| panic!("reader {r}: reopen failed: {e}"));
                    assert!(!h.is_writer());
                    let a = h
                        .open_dataset("d")
                        .await
                        .unwrap()
                        .read_array::<f64>("v", vec![], vec![])
                        .await
                        .unwrap_or_else(|e| panic!("reader {r}: read failed: {e}"))
                        .unwrap();
                    let hi = started.load(Ordering::SeqCst);
                    let ctx = format!("reader {r}, read {reads}");
                    let v = one_version(&a, &ctx) as u64;
                    assert!(
                        lo <= v && v <= hi,
                        "{ctx}: saw version {v}, but only {lo}..={hi} can be committed"
                    );
                    assert!(v >= last, "{ctx}: version went back from {last} to {v}");
                    // The snapshot holds while this handle lives, whatever the
                    // writer does meanwhile.
                    tokio::task::yield_now().await;
                    let again = h
                        .read_array_across::<f64>("v", &["d"], vec![], vec![])
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: second read failed: {e}"));
                    assert_eq!(
                        one_version(again[0].as_ref().unwrap(), &ctx) as u64,
                        v,
                        "{ctx}: snapshot changed under an open handle"
                    );
                    last = v;
                    reads += 1;
                    if finished {
                        break;
                    }
                }
                (last, reads)
            }));
        }
        let writer = {
            let s = s.clone();
            let (started, completed) = (Arc::clone(&started), Arc::clone(&completed));
            tokio::spawn(async move {
                let ds = s.open_dataset("d").await.unwrap();
                for v in 1..=u64::from(ROUNDS) {
                    ds.write_array("v", vec![], full(&SHAPE, v as f64).view())
                        .await
                        .unwrap();
                    started.store(v, Ordering::SeqCst);
                    s.flush().await.unwrap();
                    completed.store(v, Ordering::SeqCst);
                    if v % 3 == 0 {
                        s.compact().await.unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        writer.await.expect("writer panicked");
        done.store(true, Ordering::SeqCst);
        let mut results = Vec::new();
        for r in readers {
            results.push(r.await.expect("reader panicked"));
        }
        results
    };
    let results = tokio::time::timeout(TIMEOUT, run)
        .await
        .expect("deadlock: readers and writer did not finish within 60 s");
    for (i, (last, _)) in results.iter().enumerate() {
        assert_eq!(
            *last,
            u64::from(ROUNDS),
            "reader {i} ends on the last commit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn defining_new_arrays_while_a_flush_runs_keeps_the_store_openable() {
    // A flush snapshots the open array files, then writes their pending
    // layers, then encodes the live registry. An array file created (by
    // define_array of a new name) in between must not end up in a registry
    // that names no file for it.
    for round in 0..5u32 {
        let storage = MemoryStorage::new();
        let s = create_mem(&storage, StoreConfig::default()).await;
        let ds = s.create_dataset("d").await.unwrap();
        // Large pending data makes the flush's write phase long.
        ds.define_array::<u64>(
            "big",
            strings(&["i"]),
            vec![1 << 20],
            Some(vec![1 << 16]),
            None,
        )
        .await
        .unwrap();
        let data: Vec<u64> = (0..1u64 << 20)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        ds.write_array("big", vec![], crate::common::arr1(data).view())
            .await
            .unwrap();
        let flushing = Arc::new(AtomicBool::new(true));
        let definer = {
            let ds = ds.clone();
            let flushing = Arc::clone(&flushing);
            async move {
                let mut i = 0u32;
                // Define new arrays until the flush returns.
                while flushing.load(Ordering::SeqCst) || i == 0 {
                    ds.define_array::<u8>(&format!("new{i}"), strings(&["k"]), vec![2], None, None)
                        .await
                        .unwrap();
                    ds.write_array(
                        &format!("new{i}"),
                        vec![],
                        crate::common::arr1(vec![1u8, 2]).view(),
                    )
                    .await
                    .unwrap();
                    i += 1;
                    tokio::task::yield_now().await;
                }
                i
            }
        };
        let flush = async {
            let r = s.flush().await;
            flushing.store(false, Ordering::SeqCst);
            r
        };
        let (flushed, defined) =
            tokio::time::timeout(TIMEOUT, async { tokio::join!(flush, definer) })
                .await
                .expect("deadlock");
        flushed.unwrap();
        let ctx = format!("round {round}: {defined} arrays defined during the flush");
        // Whatever the first flush committed must open.
        let r = match crate::common::open_mem(&storage).await {
            Ok(r) => r,
            Err(e) => panic!("{ctx}: the committed registry does not open: {e}"),
        };
        let report = atlas_core::verify::verify(&r, |_, _| {});
        assert!(report.problems.is_empty(), "{ctx}: {:?}", report.problems);
        drop(r);
        // After a second flush everything is committed.
        s.flush().await.unwrap();
        let r = reopen_mem(&storage, &ctx).await;
        let rd = r.open_dataset("d").await.unwrap();
        assert_eq!(
            rd.list_arrays().unwrap().len(),
            1 + defined as usize,
            "{ctx}"
        );
        for i in 0..defined {
            let v = rd
                .read_array::<u8>(&format!("new{i}"), vec![], vec![])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(crate::common::cells(&v), vec![1, 2], "{ctx}: new{i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn structural_changes_to_unopened_files_racing_a_flush_stay_consistent() {
    // Like the test above, but the racing changes go to an array file that
    // is committed and not yet opened by this handle (so the flush did not
    // lock it): new datasets define `cold`, and a dataset using `cold` is
    // deleted. The first flush's commit must be consistent with the files.
    for round in 0..5u32 {
        let storage = MemoryStorage::new();
        {
            let s = create_mem(&storage, StoreConfig::default()).await;
            for name in ["victim", "other"] {
                let ds = s.create_dataset(name).await.unwrap();
                ds.define_array::<u8>("cold", strings(&["k"]), vec![2], None, None)
                    .await
                    .unwrap();
                ds.write_array("cold", vec![], crate::common::arr1(vec![5u8, 6]).view())
                    .await
                    .unwrap();
            }
            s.flush().await.unwrap();
        }
        let s = reopen_mem(&storage, "reopen").await;
        let ds = s.create_dataset("d").await.unwrap();
        ds.define_array::<u64>(
            "big",
            strings(&["i"]),
            vec![1 << 20],
            Some(vec![1 << 16]),
            None,
        )
        .await
        .unwrap();
        let data: Vec<u64> = (0..1u64 << 20)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        ds.write_array("big", vec![], crate::common::arr1(data).view())
            .await
            .unwrap();
        let flushing = Arc::new(AtomicBool::new(true));
        let changer = {
            let s = s.clone();
            let flushing = Arc::clone(&flushing);
            async move {
                s.delete_dataset("victim").await.unwrap();
                let mut i = 0u32;
                while flushing.load(Ordering::SeqCst) || i == 0 {
                    let n = s.create_dataset(&format!("n{i}")).await.unwrap();
                    n.define_array::<u8>("cold", strings(&["k"]), vec![2], None, None)
                        .await
                        .unwrap();
                    n.write_array("cold", vec![], crate::common::arr1(vec![7u8, 8]).view())
                        .await
                        .unwrap();
                    i += 1;
                    tokio::task::yield_now().await;
                }
                i
            }
        };
        let flush = async {
            let r = s.flush().await;
            flushing.store(false, Ordering::SeqCst);
            r
        };
        let (flushed, created) =
            tokio::time::timeout(TIMEOUT, async { tokio::join!(flush, changer) })
                .await
                .expect("deadlock");
        flushed.unwrap();
        let ctx = format!("round {round}: {created} datasets created during the flush");
        let r = match crate::common::open_mem(&storage).await {
            Ok(r) => r,
            Err(e) => panic!("{ctx}: the committed registry does not open: {e}"),
        };
        let report = atlas_core::verify::verify(&r, |_, _| {});
        assert!(
            report.problems.is_empty(),
            "{ctx}: first commit inconsistent: {:?}",
            report.problems
        );
        for name in r.list_datasets().unwrap() {
            let d = r.open_dataset(&name).await.unwrap();
            if d.list_arrays().unwrap().contains(&"cold".to_owned()) {
                d.read_array::<u8>("cold", vec![], vec![])
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: committed {name}/cold unreadable: {e}"));
            }
        }
        drop(r);
        s.flush().await.unwrap();
        let r = reopen_mem(&storage, &ctx).await;
        assert!(!r.dataset_exists("victim").unwrap(), "{ctx}");
        for i in 0..created {
            let v = r
                .open_dataset(&format!("n{i}"))
                .await
                .unwrap()
                .read_array::<u8>("cold", vec![], vec![])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(crate::common::cells(&v), vec![7, 8], "{ctx}: n{i}");
        }
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_async_call_is_send_and_spawnable() {
    // Each API future is spawned on the multi-threaded runtime, which needs
    // it to be `Send` (no lock guard held across an await).
    let storage = MemoryStorage::new();
    let s = assert_send(Atlas::create_with(
        Arc::new(storage.clone()),
        &crate::common::mem_root(),
        StoreConfig::default(),
    ))
    .await
    .unwrap();
    let s2 = s.clone();
    let ds = tokio::spawn(async move { s2.create_dataset("d").await })
        .await
        .unwrap()
        .unwrap();
    let d2 = ds.clone();
    tokio::spawn(async move {
        d2.define_array::<f32>("v", strings(&["i"]), vec![4], None, None)
            .await
            .unwrap();
        d2.define_array_schema(
            "w",
            atlas_core::ArraySchema::new(
                "w",
                atlas_core::DType::Int8,
                strings(&["i"]),
                vec![2],
                None,
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
        let data = crate::common::arr1(vec![1.0f32; 4]);
        d2.write_array("v", vec![], data.view()).await.unwrap();
        d2.read_array::<f32>("v", vec![], vec![]).await.unwrap();
        d2.array_stats("v").await.unwrap();
        d2.array_meta("v").await.unwrap();
        d2.delete_array("w").await.unwrap();
    })
    .await
    .unwrap();
    let s2 = s.clone();
    tokio::spawn(async move {
        s2.open_dataset("d").await.unwrap();
        s2.read_array_across::<f32>("v", &["d"], vec![], vec![])
            .await
            .unwrap();
        s2.read_array_across_stacked::<f32>("v", &["d"], vec![], vec![])
            .await
            .unwrap();
        s2.flush().await.unwrap();
        s2.compact().await.unwrap();
        s2.create_dataset("gone").await.unwrap();
        s2.delete_dataset("gone").await.unwrap();
        s2.flush().await.unwrap();
    })
    .await
    .unwrap();
    let st = storage.clone();
    let r = tokio::spawn(async move {
        Atlas::open_with(
            Arc::new(st),
            &crate::common::mem_root(),
            atlas_core::OpenOptions::default(),
        )
        .await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.list_datasets().unwrap(), strings(&["d"]));
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().to_owned();
    tokio::spawn(async move {
        Atlas::create_path(&p, StoreConfig::default())
            .await
            .unwrap();
    })
    .await
    .unwrap();
    let p = tmp.path().to_owned();
    tokio::spawn(async move { Atlas::open_path(&p).await.unwrap() })
        .await
        .unwrap();
}

/// A synchronous attribute setter that is a handle's first mutation waits
/// for the writer lock (up to 250 ms) without stalling its runtime worker:
/// on a one-worker multi-thread runtime, another task keeps running while
/// the setter waits on a lock another handle holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_sync_setter_waiting_for_the_lock_does_not_stall_the_worker() {
    let storage = MemoryStorage::new();
    let writer = create_mem(&storage, StoreConfig::default()).await;
    writer.create_dataset("d").await.unwrap();
    writer.flush().await.unwrap();
    let other = reopen_mem(&storage, "second handle").await;
    let ds = other.open_dataset("d").await.unwrap();

    let ticks = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (ticks, stop) = (Arc::clone(&ticks), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Let the ticker start.
    while ticks.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // Synchronous, in a task on the (only) worker, where the ticker runs
    // too: waits ~250 ms, then Locked. (The test body itself runs on the
    // test thread, not on the worker.)
    let setter = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            let before = ticks.load(Ordering::SeqCst);
            let r = ds.set_attribute("k", atlas_core::Attr::Int64(1));
            (r, ticks.load(Ordering::SeqCst) - before)
        })
    };
    let (r, during) = setter.await.unwrap();
    assert!(matches!(r, Err(atlas_core::Error::Locked { .. })), "{r:?}");
    assert!(
        during > 0,
        "the other task did not run while the setter waited for the lock"
    );
    stop.store(true, Ordering::SeqCst);
    ticker.await.unwrap();
}

/// A small read whose blocks a local file has in the page cache is served
/// on the caller's task, without the blocking pool: with the pool's only
/// thread held, reads of every dataset through a fresh handle (their footer
/// blocks and chunks not yet read; some datasets rewritten in a second
/// layer; whole arrays and a hyperslab) still finish and read what was
/// written. Before, each waited for the pool.
#[test]
fn small_reads_from_the_page_cache_need_no_blocking_thread() {
    use ndarray::{ArrayD, IxDyn};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cells = |i: u64, v: u64| -> ArrayD<f32> {
        ArrayD::from_shape_fn(IxDyn(&[64, 128]), |ix| {
            (i * 100_000 + v * 10_000) as f32 + (ix[0] * 128 + ix[1]) as f32 * 0.5
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s");
    rt.block_on(async {
        let s = Atlas::create_path(&path, StoreConfig::default())
            .await
            .unwrap();
        for i in 0..300u64 {
            let ds = s.create_dataset(&format!("d{i:03}")).await.unwrap();
            ds.define_array::<f32>("v", vec!["y".into(), "x".into()], vec![64, 128], None, None)
                .await
                .unwrap();
            ds.write_array("v", vec![0, 0], cells(i, 0).view())
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        for i in (0..300u64).step_by(7) {
            let ds = s.open_dataset(&format!("d{i:03}")).await.unwrap();
            ds.write_array("v", vec![0, 0], cells(i, 1).view())
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
    });
    let version = |i: u64| u64::from(i.is_multiple_of(7));
    rt.block_on(async {
        let s = Atlas::open_path(&path).await.unwrap();
        // The first read opens the array file, on the blocking pool.
        let first = s.open_dataset("d000").await.unwrap();
        let got = first.read_array::<f32>("v", vec![], vec![]).await.unwrap();
        assert_eq!(got.unwrap(), cells(0, 1));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let pool = tokio::task::spawn_blocking(move || held.recv());
        for i in 1..300u64 {
            let read = async {
                let ds = s.open_dataset(&format!("d{i:03}")).await.unwrap();
                if i % 50 == 0 {
                    ds.read_array::<f32>("v", vec![10, 20], vec![3, 40]).await
                } else {
                    ds.read_array::<f32>("v", vec![], vec![]).await
                }
            };
            let got = tokio::time::timeout(Duration::from_secs(20), read)
                .await
                .unwrap_or_else(|_| panic!("d{i:03}: the read waited for the blocking pool"))
                .unwrap()
                .unwrap();
            let want = cells(i, version(i));
            if i % 50 == 0 {
                assert_eq!(
                    got,
                    want.slice(ndarray::s![10..13, 20..60]).into_dyn(),
                    "d{i:03}"
                );
            } else {
                assert_eq!(got, want, "d{i:03}");
            }
        }
        release.send(()).unwrap();
        pool.await.unwrap().unwrap();
    });
}
