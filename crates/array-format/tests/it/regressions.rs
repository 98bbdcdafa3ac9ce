//! Regressions: stale cached reads after compaction or across files sharing a
//! cache, deleted arrays coming back, repeated writes stored repeatedly, pending
//! data spilling to a scratch file, reads over many layers, and stale two-phase
//! installs.

use std::path::Path;
use std::sync::Arc;

use array_format::{
    ArrayFile, ArrayFileOptions, Codec, Compression, DeltaCache, Error, FillValue, LayerId,
    LocalStorage, MemoryStorage, Storage,
};

use crate::common::{dims, dump, mem_file, mem_open, nd, Rng, MEM_DIR};

fn read_f32(f: &ArrayFile, name: &str) -> Vec<f32> {
    f.read_array::<f32>(name, &[], &[])
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn stale_read_after_compact(storage: Arc<dyn Storage>, dir: &Path) {
    let cache = Arc::new(DeltaCache::default());
    let opts = ArrayFileOptions::default();
    let mut f = ArrayFile::create(storage.clone(), dir, opts, cache.clone()).unwrap();
    f.define_array::<f32>("a", dims(1), vec![4], Some(vec![4]), None)
        .unwrap();
    f.write_array("a", &[], nd(&[4], vec![1.0f32; 4]).view())
        .unwrap();
    f.flush().unwrap();
    let v1_layers = f.layers();
    assert_eq!(read_f32(&f, "a"), vec![1.0; 4]); // now cached
    f.write_array("a", &[], nd(&[4], vec![2.0f32; 4]).view())
        .unwrap();
    assert_eq!(read_f32(&f, "a"), vec![2.0; 4], "pending v2");
    f.flush().unwrap();
    assert_eq!(read_f32(&f, "a"), vec![2.0; 4], "flushed v2");
    f.compact().unwrap();
    assert_eq!(read_f32(&f, "a"), vec![2.0; 4], "compacted v2");
    // A partial write merges with the compacted chunk, not the cached v1.
    f.write_array("a", &[1], nd(&[1], vec![3.0f32]).view())
        .unwrap();
    assert_eq!(read_f32(&f, "a"), vec![2.0, 3.0, 2.0, 2.0]);
    f.flush().unwrap();
    f.compact().unwrap();
    let g = ArrayFile::open(storage.clone(), dir, &f.layers(), opts, cache.clone()).unwrap();
    assert_eq!(read_f32(&g, "a"), vec![2.0, 3.0, 2.0, 2.0], "reopened");
    // The old list is still a consistent snapshot (its files were not removed).
    let old = ArrayFile::open(storage, dir, &v1_layers, opts, cache).unwrap();
    assert_eq!(read_f32(&old, "a"), vec![1.0; 4], "old snapshot");
    assert_eq!(
        read_f32(&g, "a"),
        vec![2.0, 3.0, 2.0, 2.0],
        "after the old snapshot"
    );
}

#[test]
fn no_stale_read_after_compact_in_memory() {
    stale_read_after_compact(Arc::new(MemoryStorage::new()), Path::new(MEM_DIR));
}

#[test]
fn no_stale_read_after_compact_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    stale_read_after_compact(Arc::new(LocalStorage), tmp.path());
}

/// Two array files in different directories share one cache; the second one's
/// layer is renamed to the first one's layer name. Same name, same offsets,
/// different bytes: neither may see the other's data.
fn shared_cache_same_names(storage: &Arc<dyn Storage>, x: &Path, y: &Path) {
    let cache = Arc::new(DeltaCache::default());
    let opts = ArrayFileOptions::default();
    let write = |dir: &Path, v: f32| -> LayerId {
        let mut f = ArrayFile::create(storage.clone(), dir, opts, cache.clone()).unwrap();
        f.define_array::<f32>("a", dims(1), vec![8], None, None)
            .unwrap();
        f.write_array("a", &[], nd(&[8], vec![v; 8]).view())
            .unwrap();
        let id = f.flush().unwrap().unwrap();
        assert_eq!(read_f32(&f, "a"), vec![v; 8]);
        id
    };
    let id_x = write(x, 1.0);
    let id_y = write(y, 2.0);
    storage
        .rename(&y.join(id_y.as_str()), &y.join(id_x.as_str()))
        .unwrap();
    let list = std::slice::from_ref(&id_x);
    let fx = ArrayFile::open(storage.clone(), x, list, opts, cache.clone()).unwrap();
    let fy = ArrayFile::open(storage.clone(), y, list, opts, cache.clone()).unwrap();
    for _ in 0..2 {
        assert_eq!(read_f32(&fx, "a"), vec![1.0; 8], "file in {}", x.display());
        assert_eq!(read_f32(&fy, "a"), vec![2.0; 8], "file in {}", y.display());
    }
}

#[test]
fn files_sharing_a_cache_never_see_each_others_bytes() {
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    shared_cache_same_names(&mem, Path::new("/x"), Path::new("/y"));
    let tmp = tempfile::tempdir().unwrap();
    let local: Arc<dyn Storage> = Arc::new(LocalStorage);
    shared_cache_same_names(&local, &tmp.path().join("x"), &tmp.path().join("y"));
}

/// Checks that `a` reads as freshly defined (all fill) in `f`, after flush,
/// compaction and reopening of both lists.
fn assert_all_fill(
    f: &mut ArrayFile,
    storage: &Arc<MemoryStorage>,
    fill: f32,
    n: usize,
    ctx: &str,
) {
    let check = |f: &ArrayFile, when: &str| {
        assert_eq!(read_f32(f, "a"), vec![fill; n], "{ctx}: {when}");
        let st = f.array_stats("a").unwrap();
        assert_eq!(
            (st.null_count, st.row_count),
            (n as u64, n as u64),
            "{ctx}: {when}: stats"
        );
        assert_eq!(st.min, None, "{ctx}: {when}: min");
    };
    check(f, "before flush");
    f.flush().unwrap();
    check(f, "after flush");
    check(
        &mem_open(storage, &f.layers()).unwrap(),
        "reopened after flush",
    );
    f.compact().unwrap();
    check(f, "after compact");
    check(
        &mem_open(storage, &f.layers()).unwrap(),
        "reopened after compact",
    );
}

#[test]
fn delete_then_redefine_never_resurrects_chunks() {
    let old = || nd(&[6], vec![5.0f32; 6]);
    // Defined, written and flushed; deleted and redefined before the next flush.
    {
        let (storage, mut f) = mem_file(ArrayFileOptions::default());
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        f.write_array("a", &[], old().view()).unwrap();
        f.flush().unwrap();
        f.delete_array("a").unwrap();
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        assert_all_fill(&mut f, &storage, 0.0, 6, "redefined in the next batch");
    }
    // Delete and redefine in separate flushes, then a partial write (which must
    // merge with the fill value, not the old chunk).
    {
        let (storage, mut f) = mem_file(ArrayFileOptions::default());
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        f.write_array("a", &[], old().view()).unwrap();
        f.flush().unwrap();
        f.delete_array("a").unwrap();
        f.flush().unwrap();
        assert!(matches!(
            f.read_array::<f32>("a", &[], &[]),
            Err(Error::ArrayNotFound { .. })
        ));
        f.define_array::<f32>(
            "a",
            dims(1),
            vec![6],
            Some(vec![2]),
            Some(FillValue::Float32(-1.0)),
        )
        .unwrap();
        f.flush().unwrap();
        assert_all_fill(&mut f, &storage, -1.0, 6, "redefined in a later layer");
        f.write_array("a", &[1], nd(&[1], vec![7.0f32]).view())
            .unwrap();
        let want = vec![-1.0, 7.0, -1.0, -1.0, -1.0, -1.0];
        assert_eq!(read_f32(&f, "a"), want, "partial write after redefinition");
        f.flush().unwrap();
        assert_eq!(
            read_f32(&mem_open(&storage, &f.layers()).unwrap(), "a"),
            want
        );
    }
    // Everything within one pending batch, including pending chunks of the old
    // definition, and a redefinition with a different chunking.
    {
        let (storage, mut f) = mem_file(ArrayFileOptions::default());
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        f.write_array("a", &[], old().view()).unwrap();
        f.flush().unwrap();
        f.write_array("a", &[0], nd(&[3], vec![6.0f32; 3]).view())
            .unwrap();
        f.delete_array("a").unwrap();
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![3]), None)
            .unwrap();
        f.write_array("a", &[4], nd(&[1], vec![8.0f32]).view())
            .unwrap();
        f.delete_array("a").unwrap();
        assert!(!f.contains("a"));
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![4]), None)
            .unwrap();
        assert_all_fill(&mut f, &storage, 0.0, 6, "redefined twice in one batch");
    }
    // Across a reopen: the pending deletion is lost with the pending layer, and
    // a deletion that was flushed stays.
    {
        let (storage, mut f) = mem_file(ArrayFileOptions::default());
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        f.write_array("a", &[], old().view()).unwrap();
        f.flush().unwrap();
        f.delete_array("a").unwrap();
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        f.flush().unwrap();
        let mut g = mem_open(&storage, &f.layers()).unwrap();
        assert_all_fill(&mut g, &storage, 0.0, 6, "after reopen");
    }
}

#[test]
fn writing_one_chunk_many_times_stores_it_once() {
    let opts = ArrayFileOptions {
        compression: Compression {
            codec: Codec::None,
            shuffle: false,
        },
        ..ArrayFileOptions::default()
    };
    let size_after = |writes: u32, budget: u64| -> (u64, Vec<f64>) {
        let (storage, mut f) = mem_file(ArrayFileOptions {
            pending_budget_bytes: budget,
            ..opts
        });
        f.define_array::<f64>("a", dims(1), vec![16], Some(vec![16]), None)
            .unwrap();
        let mut last = Vec::new();
        for i in 0..writes {
            last = (0..16).map(|k| f64::from(i * 100 + k)).collect();
            f.write_array("a", &[], nd(&[16], last.clone()).view())
                .unwrap();
            assert!(
                f.pending_mem_bytes() <= 16 * 8,
                "pending memory grows with rewrites"
            );
        }
        let id = f.flush().unwrap().unwrap();
        let bytes = storage
            .contents(&Path::new(MEM_DIR).join(id.as_str()))
            .unwrap();
        let read: Vec<f64> = f
            .read_array::<f64>("a", &[], &[])
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(read, last);
        let reopened = mem_open(&storage, &f.layers()).unwrap();
        assert_eq!(dump(&reopened).unwrap(), dump(&f).unwrap());
        (bytes.len() as u64, read)
    };
    let (once, _) = size_after(1, 256 << 20);
    let (many, _) = size_after(1000, 256 << 20);
    let (many_spilled, _) = size_after(1000, 0);
    assert!(once < 16 * 8 + 400, "one chunk file is {once} bytes");
    assert_eq!(
        many, once,
        "1000 writes of one chunk: {many} bytes vs {once}"
    );
    assert_eq!(many_spilled, once, "1000 spilled writes of one chunk");
}

fn scratch_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            n.starts_with("scratch-") && Path::new(n).extension().is_some_and(|e| e == "tmp")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn pending_data_spills_to_a_scratch_file_and_it_is_removed_after_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = ArrayFileOptions {
        pending_budget_bytes: 100,
        ..ArrayFileOptions::default()
    };
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage);
    let mut f =
        ArrayFile::create(storage.clone(), dir, opts, Arc::new(DeltaCache::default())).unwrap();
    f.define_array::<f64>(
        "a",
        dims(2),
        vec![10, 10],
        Some(vec![3, 3]),
        Some(FillValue::Float64(-9.0)),
    )
    .unwrap();
    let mut model = vec![-9.0f64; 100];
    let mut rng = Rng::new(7);
    assert!(scratch_files(dir).is_empty());
    for round in 0..2 {
        for _ in 0..30 {
            let (r, c) = (rng.below(9), rng.below(9));
            let (h, w) = (1 + rng.below(10 - r).min(3), 1 + rng.below(10 - c).min(3));
            let vals: Vec<f64> = (0..h * w).map(|_| rng.below(1000) as f64).collect();
            f.write_array("a", &[r, c], nd(&[h, w], vals.clone()).view())
                .unwrap();
            let mut it = vals.into_iter();
            for i in r..r + h {
                for j in c..c + w {
                    model[(i * 10 + j) as usize] = it.next().unwrap();
                }
            }
            assert!(f.pending_mem_bytes() <= 100, "pending memory over budget");
        }
        let scratch = scratch_files(dir);
        assert_eq!(
            scratch.len(),
            1,
            "round {round}: one scratch file: {scratch:?}"
        );
        let got: Vec<f64> = f
            .read_array::<f64>("a", &[], &[])
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got, model, "round {round}: reads before flush");
        f.flush().unwrap();
        assert!(
            scratch_files(dir).is_empty(),
            "round {round}: scratch left after flush"
        );
        let got: Vec<f64> = f
            .read_array::<f64>("a", &[], &[])
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got, model, "round {round}: reads after flush");
        let g = ArrayFile::open(
            storage.clone(),
            dir,
            &f.layers(),
            opts,
            Arc::new(DeltaCache::default()),
        )
        .unwrap();
        let got: Vec<f64> = g
            .read_array::<f64>("a", &[], &[])
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got, model, "round {round}: reads after reopen");
    }
}

#[test]
fn reads_over_1_10_and_100_layers_match_the_compacted_file() {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    f.define_array::<i32>(
        "a",
        dims(2),
        vec![10, 10],
        Some(vec![3, 3]),
        Some(FillValue::Int32(-1)),
    )
    .unwrap();
    f.define_array::<String>("s", dims(1), vec![7], Some(vec![2]), None)
        .unwrap();
    let mut model = vec![-1i32; 100];
    let mut rng = Rng::new(100);
    for layer in 1..=100u32 {
        let (r, c) = (rng.below(10), rng.below(10));
        let (h, w) = (1 + rng.below(10 - r), 1 + rng.below(10 - c));
        let vals: Vec<i32> = (0..h * w)
            .map(|k| (layer * 1000) as i32 + k as i32)
            .collect();
        f.write_array("a", &[r, c], nd(&[h, w], vals.clone()).view())
            .unwrap();
        let mut it = vals.into_iter();
        for i in r..r + h {
            for j in c..c + w {
                model[(i * 10 + j) as usize] = it.next().unwrap();
            }
        }
        let at = rng.below(7);
        f.write_array("s", &[at], nd(&[1], vec![format!("layer {layer}")]).view())
            .unwrap();
        f.flush().unwrap();
        assert_eq!(f.layers().len(), layer as usize);
        if [1, 10, 100].contains(&layer) {
            let layered = mem_open(&storage, &f.layers()).unwrap();
            let got: Vec<i32> = layered
                .read_array::<i32>("a", &[], &[])
                .unwrap()
                .iter()
                .copied()
                .collect();
            assert_eq!(got, model, "{layer} layers");
            let mut compacted = mem_open(&storage, &f.layers()).unwrap();
            compacted.compact().unwrap();
            assert_eq!(compacted.layers().len(), 1);
            assert_eq!(
                dump(&layered).unwrap(),
                dump(&compacted).unwrap(),
                "{layer} layers vs compacted"
            );
            // Same again for a few regions straddling chunk edges.
            for (start, count) in [
                ([2u64, 2u64], [5u64, 5u64]),
                ([9, 0], [1, 10]),
                ([0, 8], [10, 2]),
            ] {
                let a = layered.read_array::<i32>("a", &start, &count).unwrap();
                let b = compacted.read_array::<i32>("a", &start, &count).unwrap();
                assert_eq!(a, b, "{layer} layers: region {start:?}+{count:?}");
            }
            assert_eq!(
                layered.array_stats("a").unwrap(),
                compacted.array_stats("a").unwrap()
            );
        }
    }
}

/// `compact_prepare` copies the committed state; if a flush commits more
/// before `install_compacted`, installing the stale base would silently drop
/// the flushed layer. It must be refused (or keep the flushed data).
#[test]
fn a_stale_compacted_layer_never_drops_flushed_data() {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    f.define_array::<f32>("a", dims(1), vec![4], None, None)
        .unwrap();
    f.write_array("a", &[], nd(&[4], vec![1.0f32; 4]).view())
        .unwrap();
    f.flush().unwrap();
    let prepared = f.compact_prepare().unwrap();
    f.write_array("a", &[], nd(&[4], vec![2.0f32; 4]).view())
        .unwrap();
    f.define_array::<f32>("b", dims(1), vec![1], None, None)
        .unwrap();
    f.flush().unwrap();
    let before = dump(&f).unwrap();
    match f.install_compacted(prepared) {
        Err(e) => assert!(matches!(e, Error::StalePreparedLayer), "{e:?}"),
        Ok(_) => {
            assert_eq!(
                dump(&f).unwrap(),
                before,
                "installing a stale base lost flushed data"
            );
        }
    }
    assert_eq!(read_f32(&f, "a"), vec![2.0; 4]);
    assert_eq!(
        dump(&mem_open(&storage, &f.layers()).unwrap()).unwrap(),
        before
    );
}

/// A layer from `write_pending` is refused once the pending changes moved on.
#[test]
fn a_stale_pending_layer_is_refused() {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    f.define_array::<f32>("a", dims(1), vec![4], None, None)
        .unwrap();
    f.write_array("a", &[], nd(&[4], vec![1.0f32; 4]).view())
        .unwrap();
    let p = f.write_pending().unwrap().unwrap();
    f.write_array("a", &[0], nd(&[1], vec![2.0f32]).view())
        .unwrap();
    assert!(matches!(f.install(p), Err(Error::StalePreparedLayer)));
    // Two layers prepared from the same changes: only the first installs.
    let p1 = f.write_pending().unwrap().unwrap();
    let p2 = f.write_pending().unwrap().unwrap();
    assert_ne!(p1.id(), p2.id());
    f.install(p1).unwrap();
    assert!(matches!(f.install(p2), Err(Error::StalePreparedLayer)));
    assert_eq!(f.layers().len(), 1);
    assert_eq!(read_f32(&f, "a"), vec![2.0, 1.0, 1.0, 1.0]);
    // A compaction in between leaves the pending changes alone: the prepared
    // layer either installs on top of the new base or is refused as stale.
    f.flush().unwrap();
    f.write_array("a", &[3], nd(&[1], vec![4.0f32]).view())
        .unwrap();
    let p = f.write_pending().unwrap().unwrap();
    f.compact().unwrap();
    match f.install(p) {
        Ok(()) => assert!(!f.has_pending()),
        Err(e) => {
            assert!(matches!(e, Error::StalePreparedLayer), "{e:?}");
            f.flush().unwrap();
        }
    }
    let g = mem_open(&storage, &f.layers()).unwrap();
    assert_eq!(read_f32(&g, "a"), vec![2.0, 1.0, 1.0, 4.0]);
}

/// When the pending changes that spilled are dropped again (the only array
/// written was new and then deleted), a flush has nothing to write; the
/// scratch file holding the dropped data must not outlive it.
#[test]
fn no_scratch_file_remains_after_a_flush_with_nothing_left_to_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = ArrayFileOptions {
        pending_budget_bytes: 0,
        ..ArrayFileOptions::default()
    };
    let mut f = ArrayFile::create(
        Arc::new(LocalStorage),
        dir,
        opts,
        Arc::new(DeltaCache::default()),
    )
    .unwrap();
    f.define_array::<f64>("tmp", dims(1), vec![64], Some(vec![8]), None)
        .unwrap();
    f.write_array("tmp", &[], nd(&[64], vec![1.5f64; 64]).view())
        .unwrap();
    assert_eq!(scratch_files(dir).len(), 1, "the write spilled");
    f.delete_array("tmp").unwrap();
    assert!(!f.has_pending());
    assert_eq!(f.flush().unwrap(), None);
    assert!(
        scratch_files(dir).is_empty(),
        "scratch file left after flush: {:?}",
        scratch_files(dir)
    );
}

/// Several threads reading one file (pending, delta and base chunks) through a
/// small shared cache all see the right cells.
#[test]
fn concurrent_readers_see_the_right_cells() {
    let cache = Arc::new(DeltaCache::new(array_format::DeltaCacheConfig {
        raw_capacity_bytes: 2_000,
        decoded_capacity_bytes: 3_000,
    }));
    let storage = Arc::new(MemoryStorage::new());
    let mut f = ArrayFile::create(
        storage,
        Path::new(MEM_DIR),
        ArrayFileOptions::default(),
        cache,
    )
    .unwrap();
    f.define_array::<i64>("a", dims(2), vec![20, 20], Some(vec![4, 4]), None)
        .unwrap();
    let cell = |i: u64, j: u64, gen: u64| (gen * 1000 + i * 20 + j) as i64;
    let mut want = vec![0i64; 400];
    for (gen, rows) in [(1u64, 0..20u64), (2, 5..12), (3, 10..20)] {
        let vals: Vec<i64> = rows
            .clone()
            .flat_map(|i| (0..20).map(move |j| cell(i, j, gen)))
            .collect();
        let n = rows.end - rows.start;
        f.write_array("a", &[rows.start, 0], nd(&[n, 20], vals).view())
            .unwrap();
        for i in rows {
            for j in 0..20 {
                want[(i * 20 + j) as usize] = cell(i, j, gen);
            }
        }
        match gen {
            1 => {
                f.flush().unwrap();
                f.compact().unwrap();
            }
            2 => {
                f.flush().unwrap();
            }
            _ => {} // stays pending
        }
    }
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let f = &f;
            let want = &want;
            s.spawn(move || {
                let mut rng = Rng::new(t);
                for _ in 0..200 {
                    let (r, c) = (rng.below(20), rng.below(20));
                    let (h, w) = (1 + rng.below(20 - r), 1 + rng.below(20 - c));
                    let got = f.read_array::<i64>("a", &[r, c], &[h, w]).unwrap();
                    for (k, v) in got.iter().enumerate() {
                        let (i, j) = (r + k as u64 / w, c + k as u64 % w);
                        assert_eq!(
                            *v,
                            want[(i * 20 + j) as usize],
                            "thread {t} cell ({i}, {j})"
                        );
                    }
                }
            });
        }
    });
}

/// `ArrayFile::verify` is documented to read "every chunk of every committed
/// layer (live or not)": chunks shadowed by a newer layer and chunks of a
/// deleted array are still bytes of committed layers, and damage in them must
/// be reported (and counted).
#[test]
fn verify_checks_every_chunk_of_every_committed_layer() {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    f.define_array::<f32>("a", dims(1), vec![4], Some(vec![2]), None)
        .unwrap();
    f.write_array("a", &[], nd(&[4], vec![1.0f32; 4]).view())
        .unwrap();
    f.define_array::<f32>("c", dims(1), vec![2], None, None)
        .unwrap();
    f.write_array("c", &[], nd(&[2], vec![3.0f32; 2]).view())
        .unwrap();
    let first = f.flush().unwrap().unwrap(); // a#0, a#1, c#0
    f.write_array("a", &[0], nd(&[2], vec![2.0f32; 2]).view())
        .unwrap();
    f.delete_array("c").unwrap();
    f.flush().unwrap(); // a#0 again, and the deletion of c
                        // Damage the first layer's copy of a#0 (shadowed by the second layer).
    let path = Path::new(MEM_DIR).join(first.as_str());
    let mut bytes = storage.contents(&path).unwrap();
    bytes[33] ^= 0x40;
    storage.overwrite(&path, bytes);
    let g = mem_open(&storage, &f.layers()).unwrap();
    assert_eq!(
        read_f32(&g, "a"),
        vec![2.0, 2.0, 1.0, 1.0],
        "live data is intact"
    );
    let r = g.verify();
    assert!(
        matches!(&r, Err(Error::Corrupt { path: p, offset: 32, .. }) if *p == path),
        "damage in a shadowed chunk of a committed layer went unreported: {r:?}"
    );
    assert_eq!(f.verify().unwrap(), 4, "chunks in the committed layers");
}

/// An open file keeps reading after its layer files are removed (retired by
/// a compaction elsewhere): its read handles pin the bytes.
#[test]
fn an_open_file_survives_removal_of_its_layer_files() {
    let check = |storage: Arc<dyn Storage>, dir: &Path| {
        let cache = Arc::new(DeltaCache::default());
        let opts = ArrayFileOptions::default();
        let mut f = ArrayFile::create(storage.clone(), dir, opts, cache.clone()).unwrap();
        f.define_array::<f32>("a", dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        for i in 0..3u32 {
            let v = vec![i as f32; 2];
            f.write_array("a", &[u64::from(i) * 2], nd(&[2], v).view())
                .unwrap();
            f.flush().unwrap();
        }
        let reader = ArrayFile::open(storage.clone(), dir, &f.layers(), opts, cache).unwrap();
        let retired = f.compact().unwrap();
        for id in &retired {
            storage.remove_file(&dir.join(id.as_str())).unwrap();
        }
        let want = vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0];
        assert_eq!(read_f32(&reader, "a"), want, "reader of the retired layers");
        assert_eq!(reader.verify().unwrap(), 3);
        assert_eq!(read_f32(&f, "a"), want, "compacted writer");
    };
    check(Arc::new(MemoryStorage::new()), Path::new(MEM_DIR));
    let tmp = tempfile::tempdir().unwrap();
    check(Arc::new(LocalStorage), tmp.path());
}

/// `read_many_streaming` (the scan path) gives exactly what one `read_array`
/// per name gives: committed chunks from several layers, pending chunks,
/// unwritten chunks, partial regions, unknown names and wrong dtypes.
#[test]
fn read_many_streaming_matches_single_reads() {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    let names: Vec<String> = (0..40).map(|i| format!("a{i:02}")).collect();
    for (i, n) in names.iter().enumerate() {
        f.define_array::<f32>(n, dims(2), vec![6, 5], Some(vec![4, 2]), None)
            .unwrap();
        if i % 5 != 4 {
            let v: Vec<f32> = (0..30).map(|c| (i * 100 + c) as f32).collect();
            f.write_array(n, &[], nd(&[6, 5], v).view()).unwrap();
        }
        if i % 10 == 0 {
            f.flush().unwrap();
        }
    }
    f.flush().unwrap();
    // Some chunks rewritten in a later layer, some left pending.
    for n in names.iter().step_by(3) {
        f.write_array(n, &[1, 1], nd(&[2, 2], vec![-1.0f32; 4]).view())
            .unwrap();
    }
    f.flush().unwrap();
    for n in names.iter().step_by(7) {
        f.write_array(n, &[4, 3], nd(&[2, 2], vec![-2.0f32; 4]).view())
            .unwrap();
    }
    let mut asked: Vec<&str> = names.iter().map(String::as_str).collect();
    asked.push("missing");
    for (start, count) in [
        (vec![], vec![]),
        (vec![1, 1], vec![4, 3]),
        (vec![5, 4], vec![1, 1]),
    ] {
        let many = f.read_many_streaming::<f32>(&asked, &start, &count);
        assert_eq!(many.len(), asked.len());
        for (n, got) in asked.iter().zip(many) {
            match (f.read_array::<f32>(n, &start, &count), got) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{n} {start:?} {count:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("{n}: single {a:?} vs many {b:?}"),
            }
        }
    }
    // A region outside some arrays and a wrong dtype are per-name errors.
    let bad = f.read_many_streaming::<f32>(&["a00"], &[9, 9], &[1, 1]);
    assert!(matches!(bad[0], Err(Error::OutOfBounds { .. })));
    let wrong = f.read_many_streaming::<i32>(&["a00"], &[], &[]);
    assert!(matches!(wrong[0], Err(Error::DTypeMismatch { .. })));
    // A damaged block is a typed error for that array only.
    f.flush().unwrap();
    let layers = f.layers();
    let g = mem_open(&storage, &layers).unwrap();
    let victim = layers.last().unwrap();
    let path = std::path::Path::new(MEM_DIR).join(victim.as_str());
    let mut bytes = storage.contents(&path).unwrap();
    bytes[40] ^= 0xff;
    storage.overwrite(&path, bytes);
    let h = mem_open(&storage, &layers).unwrap();
    let got = h.read_many_streaming::<f32>(&asked[..40], &[], &[]);
    let n_err = got.iter().filter(|r| r.is_err()).count();
    assert!(n_err >= 1, "the damaged block must be reported");
    for (n, r) in asked.iter().zip(&got) {
        if let Ok(a) = r {
            assert_eq!(a, &g.read_array::<f32>(n, &[], &[]).unwrap(), "{n}");
        }
    }
}

/// `ArrayFile::scan` gives the same results, in the same order, on one
/// thread or many, and each equals a single `read_array`: single-chunk
/// arrays of varying sizes (the decoder's reused buffers grow and shrink),
/// multi-chunk arrays, pending writes, unwritten arrays, unknown names,
/// names in listing order and shuffled, every codec, and a damaged block.
#[test]
fn scan_on_many_threads_equals_one_thread_and_single_reads() {
    for codec in [Codec::Lz4, Codec::Zstd { level: 1 }, Codec::None] {
        let opts = ArrayFileOptions {
            compression: Compression {
                codec,
                shuffle: true,
            },
            ..ArrayFileOptions::default()
        };
        let (storage, mut f) = mem_file(opts);
        let names: Vec<String> = (0..1500).map(|i| format!("p{i:05}")).collect();
        for (i, n) in names.iter().enumerate() {
            let len = 1 + (i * 37) % 300;
            match i % 50 {
                // Several chunks.
                7 => {
                    f.define_array::<f32>(n, dims(1), vec![len as u64], Some(vec![16]), None)
                        .unwrap();
                }
                // Never written: reads as the fill value.
                11 => {
                    f.define_array::<f32>(
                        n,
                        dims(1),
                        vec![len as u64],
                        None,
                        Some(FillValue::Float32(-9.0)),
                    )
                    .unwrap();
                    continue;
                }
                _ => {
                    f.define_array::<f32>(n, dims(1), vec![len as u64], None, None)
                        .unwrap();
                }
            }
            let v: Vec<f32> = (0..len).map(|c| (i * 1000 + c) as f32 * 0.5).collect();
            f.write_array(n, &[0], nd(&[len as u64], v).view()).unwrap();
        }
        f.flush().unwrap();
        // A later layer, and pending writes over a few arrays.
        for n in names.iter().step_by(13) {
            f.write_array(n, &[0], nd(&[1], vec![-1.0f32]).view())
                .unwrap();
        }
        f.flush().unwrap();
        for n in names.iter().step_by(17) {
            f.write_array(n, &[0], nd(&[1], vec![-2.0f32]).view())
                .unwrap();
        }
        let listed: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut shuffled = listed.clone();
        let mut rng = Rng::new(7);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        shuffled.insert(500, "missing");
        for asked in [&listed, &shuffled] {
            let scan = f.scan(asked).unwrap();
            assert_eq!(scan.len(), asked.len());
            let one = scan.read::<f32>(&[], &[], 1);
            let many = scan.read::<f32>(&[], &[], 4);
            assert_eq!(one.len(), asked.len());
            for ((n, a), b) in asked.iter().zip(&one).zip(&many) {
                match (f.read_array::<f32>(n, &[], &[]), a, b) {
                    (Ok(s), Ok(a), Ok(b)) => {
                        assert_eq!(&s, a, "{codec:?} {n}");
                        assert_eq!(a, b, "{codec:?} {n}");
                    }
                    (Err(s), Err(a), Err(b)) => {
                        assert_eq!(s.to_string(), a.to_string());
                        assert_eq!(a.to_string(), b.to_string());
                    }
                    (s, a, b) => panic!("{n}: single {s:?}, one thread {a:?}, four {b:?}"),
                }
            }
            for (k, n) in asked.iter().enumerate() {
                assert_eq!(scan.try_schema(k).unwrap(), f.schema(n), "{n}");
            }
            // A region, and a wrong dtype, per name.
            let part = scan.read::<f32>(&[0], &[1], 3);
            for (n, r) in asked.iter().zip(&part) {
                match f.read_array::<f32>(n, &[0], &[1]) {
                    Ok(s) => assert_eq!(r.as_ref().unwrap(), &s, "{n}"),
                    Err(_) => assert!(r.is_err(), "{n}"),
                }
            }
            let wrong = scan.read::<i32>(&[], &[], 2);
            assert!(matches!(wrong[0], Err(Error::DTypeMismatch { .. })));
        }
        // A damaged block: an error for its array only, on any thread count.
        f.flush().unwrap();
        let layers = f.layers();
        let base = &layers[0];
        let path = std::path::Path::new(MEM_DIR).join(base.as_str());
        let mut bytes = storage.contents(&path).unwrap();
        bytes[5000] ^= 0xff;
        storage.overwrite(&path, bytes);
        let h = mem_open(&storage, &layers).unwrap();
        let scan = h.scan(&listed).unwrap();
        let one = scan.read::<f32>(&[], &[], 1);
        let many = scan.read::<f32>(&[], &[], 4);
        let failed: Vec<usize> = (0..one.len()).filter(|&k| one[k].is_err()).collect();
        assert!(
            !failed.is_empty(),
            "{codec:?}: the damaged block is reported"
        );
        assert!(failed.len() <= 2, "{codec:?}: {failed:?}");
        for (a, b) in one.iter().zip(&many) {
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => {
                    assert!(matches!(a, Error::Corrupt { .. }), "{a}");
                    assert_eq!(a.to_string(), b.to_string());
                }
                (a, b) => panic!("one thread {a:?}, four {b:?}"),
            }
        }
    }
}

/// A scan of more stored bytes than it fetches at a time (a window of
/// 1 MiB on files that read cheaply) reads every name once, in order, on
/// one thread or several: arrays of 32 KiB (decoded into new memory) and
/// small ones (into a copy of a template array), two axes and one, several
/// chunks, pending writes, a later layer, an unwritten array, and a
/// damaged block in a later window. The stacked
/// read gives the same cells and stops at the same name.
#[test]
fn scans_read_in_windows_equal_single_reads() {
    for codec in [Codec::None, Codec::Lz4] {
        let (storage, mut f) = mem_file(ArrayFileOptions {
            compression: Compression {
                codec,
                shuffle: true,
            },
            ..ArrayFileOptions::default()
        });
        let names: Vec<String> = (0..420).map(|i| format!("t{i:04}")).collect();
        let mut rng = Rng::new(11);
        for (i, n) in names.iter().enumerate() {
            let (shape, chunk): (Vec<u64>, Option<Vec<u64>>) = match i % 6 {
                // Tiles of 32 KiB, one chunk.
                0..=2 => (vec![64, 128], None),
                // Several chunks.
                3 => (vec![96, 128], Some(vec![32, 128])),
                // Under the size decoded into a copy, and just over it.
                4 => (vec![1 + (i as u64 * 7) % 900], None),
                _ => (vec![1024 + (i as u64 * 13) % 300], None),
            };
            let rank = shape.len();
            f.define_array::<f32>(
                n,
                dims(rank),
                shape.clone(),
                chunk,
                Some(FillValue::Float32(-9.0)),
            )
            .unwrap();
            if i % 37 == 5 {
                continue; // never written: the fill value
            }
            let cells = shape.iter().product::<u64>() as usize;
            // Noisy for LZ4: stored sizes vary, so windows end anywhere.
            let v: Vec<f32> = (0..cells)
                .map(|c| (i * 100_000 + c) as f32 + rng.below(1 << 23) as f32 * 1e-3)
                .collect();
            f.write_array(n, &vec![0; rank], nd(&shape, v).view())
                .unwrap();
        }
        f.flush().unwrap();
        for n in names.iter().step_by(11) {
            let rank = f.schema(n).unwrap().rank();
            f.write_array(n, &vec![0; rank], nd(&vec![1; rank], vec![-1.0f32]).view())
                .unwrap();
        }
        f.flush().unwrap();
        for n in names.iter().step_by(19) {
            let rank = f.schema(n).unwrap().rank();
            f.write_array(n, &vec![0; rank], nd(&vec![1; rank], vec![-2.0f32]).view())
                .unwrap();
        }
        let listed: Vec<&str> = names.iter().map(String::as_str).collect();
        let stored: u64 = f
            .layers()
            .iter()
            .map(|l| {
                storage
                    .contents(&Path::new(MEM_DIR).join(l.as_str()))
                    .unwrap()
                    .len() as u64
            })
            .sum();
        assert!(
            stored > 4 << 20,
            "{codec:?}: {stored} bytes is too few for several windows"
        );
        let scan = f.scan(&listed).unwrap();
        let one = scan.read::<f32>(&[], &[], 1);
        let many = scan.read::<f32>(&[], &[], 3);
        let mut cells = Vec::new();
        for ((n, a), b) in listed.iter().zip(&one).zip(&many) {
            let s = f.read_array::<f32>(n, &[], &[]).unwrap();
            assert_eq!(a.as_ref().unwrap(), &s, "{codec:?} {n}");
            assert_eq!(b.as_ref().unwrap(), &s, "{codec:?} {n}");
            cells.extend(s.iter().copied());
        }
        let mut stacked = Vec::new();
        scan.read_extend::<f32>(&[], &[], &mut stacked).unwrap();
        assert!(stacked == cells, "{codec:?}: the stacked read differs");
        // A damaged block in a later window of the first layer.
        f.flush().unwrap();
        let layers = f.layers();
        let path = Path::new(MEM_DIR).join(layers[0].as_str());
        let good = storage.contents(&path).unwrap();
        // The first byte from four fifths of the file on that is in a block
        // still read (a later layer replaced some).
        let (h, one, failed) = (0..40)
            .find_map(|step| {
                let mut bytes = good.clone();
                bytes[good.len() * 4 / 5 + step * 997] ^= 0xff;
                storage.overwrite(&path, bytes);
                let h = mem_open(&storage, &layers).unwrap();
                let one = h.scan(&listed).unwrap().read::<f32>(&[], &[], 1);
                let failed: Vec<usize> = (0..one.len()).filter(|&k| one[k].is_err()).collect();
                (!failed.is_empty()).then_some((h, one, failed))
            })
            .expect("a damaged block");
        assert!(
            failed.len() <= 2 && failed[0] > listed.len() / 2,
            "{codec:?}: {failed:?}"
        );
        let scan = h.scan(&listed).unwrap();
        let many = scan.read::<f32>(&[], &[], 3);
        for ((n, a), b) in listed.iter().zip(&one).zip(&many) {
            match (h.read_array::<f32>(n, &[], &[]), a, b) {
                (Ok(s), Ok(a), Ok(b)) => assert!(s == *a && a == b, "{codec:?} {n}"),
                (Err(s), Err(a), Err(b)) => {
                    assert!(matches!(a, Error::Corrupt { .. }), "{a}");
                    assert_eq!(s.to_string(), a.to_string());
                    assert_eq!(a.to_string(), b.to_string());
                }
                (s, a, b) => panic!("{n}: single {s:?}, one thread {a:?}, three {b:?}"),
            }
        }
        let mut stacked = Vec::new();
        let (k, e) = scan.read_extend::<f32>(&[], &[], &mut stacked).unwrap_err();
        assert_eq!(k, failed[0], "{codec:?}");
        assert_eq!(e.to_string(), one[k].as_ref().unwrap_err().to_string());
        let before: usize = one[..k].iter().map(|a| a.as_ref().unwrap().len()).sum();
        assert_eq!(stacked.len(), before, "{codec:?}");
    }
}

/// A local write handle whose buffer is released keeps every byte: what
/// was buffered reaches the file, later appends go straight to it, and a
/// sync and a read-back see all of it, in order.
#[test]
fn a_released_local_write_buffer_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = array_format::LocalStorage::new();
    let path = dir.path().join("f.bin");
    let mut out = storage.create_new(&path).unwrap();
    out.append(b"first ").unwrap();
    out.release_buffer().unwrap();
    out.append(b"second ").unwrap();
    out.append(&vec![b'x'; 3 << 20]).unwrap();
    out.release_buffer().unwrap();
    out.append(b" third").unwrap();
    out.sync().unwrap();
    let mut back = vec![0u8; 6];
    out.read_exact_at(0, &mut back).unwrap();
    assert_eq!(&back, b"first ");
    drop(out);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 6 + 7 + (3 << 20) + 6);
    assert!(bytes.starts_with(b"first second xxx"));
    assert!(bytes.ends_with(b"xxx third"));
}

/// Local write handles share kept buffers: files written one after another
/// and side by side, with appends below, at and above the 1 MiB buffer,
/// reads back in the middle and handles dropped without a sync, each hold
/// exactly their own bytes (a reused buffer carries nothing over).
#[test]
fn local_write_buffers_reused_across_files_carry_nothing_over() {
    let dir = tempfile::tempdir().unwrap();
    let storage = array_format::LocalStorage::new();
    let mut rng = Rng::new(0x00b0_ff3e);
    let sizes = [
        0usize,
        1,
        17,
        (1 << 20) - 1,
        1 << 20,
        (1 << 20) + 1,
        3 << 19,
        5,
    ];
    for round in 0..6u8 {
        // Three files open at once, their appends interleaved.
        let mut files = Vec::new();
        for k in 0..3u8 {
            let path = dir.path().join(format!("f{round}-{k}.bin"));
            files.push((storage.create_new(&path).unwrap(), path, Vec::new()));
        }
        for step in 0..12 {
            for (k, (out, _, want)) in files.iter_mut().enumerate() {
                let n = sizes[(rng.next_u64() as usize + k) % sizes.len()];
                let byte = round.wrapping_mul(31).wrapping_add(step * 7 + k as u8);
                let piece: Vec<u8> = (0..n).map(|i| byte.wrapping_add(i as u8)).collect();
                out.append(&piece).unwrap();
                want.extend_from_slice(&piece);
                assert_eq!(out.position(), want.len() as u64);
                if step == 5 && !want.is_empty() {
                    let mut back = vec![0u8; want.len().min(4096)];
                    let at = (want.len() - back.len()) as u64;
                    out.read_exact_at(at, &mut back).unwrap();
                    assert_eq!(back, want[at as usize..], "round {round} file {k}");
                }
            }
        }
        for (k, (out, path, want)) in files.into_iter().enumerate() {
            // Synced, dropped, or released then dropped.
            let mut out = out;
            match k {
                0 => out.sync().unwrap(),
                1 => {}
                _ => out.release_buffer().unwrap(),
            }
            drop(out);
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), want.len(), "round {round} file {k}");
            assert!(got == want, "round {round} file {k}: bytes differ");
        }
    }
}
