//! Round trips: every codec × shuffle × dtype × shape × chunk shape × region,
//! against a plain row-major `Vec` model, before and after flush, after reopen
//! and after compaction (cells and statistics).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use array_format::{
    ArrayElement, ArrayFile, ArrayFileOptions, ArrayStats, DeltaCache, DeltaCacheConfig,
    MemoryStorage, TimestampNs,
};
use proptest::prelude::*;

use crate::common::{
    assert_cells, chunk_of, dims, nd, options, proptest_config, region_cells, region_from,
    TestElem, CODECS, MEM_DIR,
};

/// One generated round-trip case; every field is raw randomness that
/// [`Case::plan`] maps into bounds.
#[derive(Clone, Debug)]
struct Case {
    dtype: usize,
    codec: usize,
    shuffle: bool,
    shape: Vec<u64>,
    /// Per axis: chunk, write-1 start/count, write-2 start/count, read start/count.
    seeds: Vec<u64>,
    fill: Option<u64>,
    data: u64,
    flush_between: bool,
    small_budget: bool,
}

/// The concrete plan of a case.
#[derive(Debug)]
struct Plan {
    chunk: Vec<u64>,
    writes: [(Vec<u64>, Vec<u64>); 2],
    read: (Vec<u64>, Vec<u64>),
}

impl Case {
    fn plan(&self) -> Plan {
        let rank = self.shape.len();
        let seed = |a: usize, k: usize| self.seeds[a * 7 + k];
        let chunk = (0..rank)
            .map(|a| 1 + seed(a, 0) % (self.shape[a] + 1))
            .collect();
        let region = |k: usize| {
            let s: Vec<u64> = (0..rank)
                .flat_map(|a| [seed(a, k), seed(a, k + 1)])
                .collect();
            region_from(&self.shape, &s)
        };
        Plan {
            chunk,
            writes: [region(1), region(3)],
            read: region(5),
        }
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        0..13usize,
        0..CODECS.len(),
        any::<bool>(),
        prop::collection::vec(0u64..=9, 0..=3),
        prop::collection::vec(any::<u64>(), 21),
        prop::option::of(any::<u64>()),
        any::<u64>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(dtype, codec, shuffle, shape, seeds, fill, data, flush_between, small_budget)| Case {
                dtype,
                codec,
                shuffle,
                shape,
                seeds,
                fill,
                data,
                flush_between,
                small_budget,
            },
        )
}

/// The model of one array: cells plus the set of chunks ever written.
struct Model<T> {
    shape: Vec<u64>,
    chunk: Vec<u64>,
    fill: Option<T>,
    cells: Vec<T>,
    written: BTreeSet<u64>,
}

impl<T: TestElem> Model<T> {
    fn write(&mut self, start: &[u64], count: &[u64], values: &[T]) {
        for (v, lin) in values.iter().zip(region_cells(&self.shape, start, count)) {
            self.cells[lin] = v.clone();
            self.written.insert(chunk_of(&self.shape, &self.chunk, lin));
        }
    }

    fn read(&self, start: &[u64], count: &[u64]) -> Vec<T> {
        region_cells(&self.shape, start, count)
            .into_iter()
            .map(|lin| self.cells[lin].clone())
            .collect()
    }

    /// Statistics as `stats.rs` defines them: null = in a never-written chunk,
    /// equal to the declared fill value, or NaN; min/max over the rest.
    fn stats(&self) -> ArrayStats {
        let mut s = ArrayStats {
            row_count: self.cells.len() as u64,
            ..ArrayStats::default()
        };
        let mut min: Option<&T> = None;
        let mut max: Option<&T> = None;
        for (lin, v) in self.cells.iter().enumerate() {
            let unwritten = !self
                .written
                .contains(&chunk_of(&self.shape, &self.chunk, lin));
            if unwritten || v.is_nan() || self.fill.as_ref().is_some_and(|f| f == v) {
                s.null_count += 1;
                continue;
            }
            if min.is_none_or(|m| v < m) {
                min = Some(v);
            }
            if max.is_none_or(|m| v > m) {
                max = Some(v);
            }
        }
        s.min = min.map(ArrayElement::to_stat);
        s.max = max.map(ArrayElement::to_stat);
        s
    }
}

fn check<T: TestElem>(f: &ArrayFile, m: &Model<T>, plan: &Plan, ctx: &str) {
    let (start, count) = &plan.read;
    let got = f.read_array::<T>("a", start, count).expect("read region");
    assert_cells(
        &got,
        count,
        &m.read(start, count),
        &format!("{ctx}: region"),
    );
    let all = f.read_array::<T>("a", &[], &[]).expect("read all");
    assert_cells(&all, &m.shape, &m.cells, &format!("{ctx}: whole array"));
    // Streaming reads decode blocks straight into the result (no cache fill).
    let got = f
        .read_array_streaming::<T>("a", start, count)
        .expect("streaming read region");
    assert_cells(
        &got,
        count,
        &m.read(start, count),
        &format!("{ctx}: region, streaming"),
    );
    let all = f
        .read_array_streaming::<T>("a", &[], &[])
        .expect("streaming read all");
    assert_cells(
        &all,
        &m.shape,
        &m.cells,
        &format!("{ctx}: whole array, streaming"),
    );
    // Each write region read back exactly (covers edge chunks and partial chunks).
    for (start, count) in &plan.writes {
        let got = f
            .read_array::<T>("a", start, count)
            .expect("read write region");
        assert_cells(
            &got,
            count,
            &m.read(start, count),
            &format!("{ctx}: write region"),
        );
    }
    assert_eq!(
        f.array_stats("a").expect("stats"),
        m.stats(),
        "{ctx}: statistics"
    );
}

fn run_case<T: TestElem>(c: &Case, plan: &Plan) {
    let codec = CODECS[c.codec];
    let mut opts = options(codec, c.shuffle);
    if c.small_budget {
        opts.pending_budget_bytes = 16;
    }
    let storage = Arc::new(MemoryStorage::new());
    let dir = Path::new(MEM_DIR);
    // A third of the cases share a tiny cache that evicts on almost every
    // insert, a third one whose decoded level is off (blocks are decoded
    // straight into each read), a third the default.
    let cache = Arc::new(match c.data % 3 {
        0 => DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 256,
            decoded_capacity_bytes: 512,
        }),
        1 => DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 1 << 20,
            decoded_capacity_bytes: 0,
        }),
        _ => DeltaCache::default(),
    });
    let mut f = ArrayFile::create(storage.clone(), dir, opts, cache.clone()).expect("create");
    let fill = c.fill.map(T::gen);
    let rank = c.shape.len();
    f.define_array::<T>(
        "a",
        dims(rank),
        c.shape.clone(),
        Some(plan.chunk.clone()),
        fill.as_ref().map(ArrayElement::to_fill),
    )
    .expect("define");
    let n: u64 = c.shape.iter().product();
    let mut m = Model {
        shape: c.shape.clone(),
        chunk: plan.chunk.clone(),
        fill: fill.clone(),
        cells: vec![fill.clone().unwrap_or_default(); n as usize],
        written: BTreeSet::new(),
    };
    check(&f, &m, plan, "fresh");
    let mut rng = crate::common::Rng::new(c.data);
    for (i, (start, count)) in plan.writes.iter().enumerate() {
        let k: u64 = count.iter().product();
        let values: Vec<T> = (0..k).map(|_| T::gen(rng.next_u64())).collect();
        let data = nd(count, values.clone());
        f.write_array("a", start, data.view()).expect("write");
        m.write(start, count, &values);
        check(&f, &m, plan, &format!("after write {i}"));
        if i == 0 && c.flush_between {
            f.flush().expect("flush between writes");
            check(&f, &m, plan, "after the first flush");
        }
    }
    f.flush().expect("flush");
    assert!(!f.has_pending());
    check(&f, &m, plan, "after flush");
    // Reopen from the committed list, with the shared cache and with a fresh one.
    let layers = f.layers();
    let g = ArrayFile::open(storage.clone(), dir, &layers, opts, cache.clone()).expect("reopen");
    check(&g, &m, plan, "after reopen (shared cache)");
    let g = ArrayFile::open(
        storage.clone(),
        dir,
        &layers,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
    .expect("reopen");
    check(&g, &m, plan, "after reopen (fresh cache)");
    let g = ArrayFile::open(
        storage.clone(),
        dir,
        &layers,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 0,
            decoded_capacity_bytes: 0,
        })),
    )
    .expect("reopen");
    check(&g, &m, plan, "after reopen (no cache)");
    f.compact().expect("compact");
    check(&f, &m, plan, "after compact");
    let g = ArrayFile::open(storage, dir, &f.layers(), opts, cache).expect("reopen compacted");
    check(&g, &m, plan, "after reopening the compacted file");
    assert!(g.verify().is_ok());
}

fn run(c: &Case, plan: &Plan) {
    match c.dtype {
        0 => run_case::<f32>(c, plan),
        1 => run_case::<f64>(c, plan),
        2 => run_case::<i8>(c, plan),
        3 => run_case::<i64>(c, plan),
        4 => run_case::<u16>(c, plan),
        5 => run_case::<bool>(c, plan),
        6 => run_case::<String>(c, plan),
        7 => run_case::<TimestampNs>(c, plan),
        8 => run_case::<i16>(c, plan),
        9 => run_case::<i32>(c, plan),
        10 => run_case::<u8>(c, plan),
        11 => run_case::<u32>(c, plan),
        12 => run_case::<u64>(c, plan),
        _ => unreachable!("dtype index out of range"),
    }
}

proptest! {
    #![proptest_config(proptest_config("roundtrip_random_regions", 256))]

    /// Random shape, chunking, fill, two region writes and a region read.
    #[test]
    fn roundtrip_random_regions(c in case_strategy()) {
        run(&c, &c.plan());
    }
}

/// Every dtype × codec × shuffle at least once, on a 2-d array with edge chunks
/// and partial-chunk writes (independent of proptest's sampling).
#[test]
fn roundtrip_every_dtype_codec_and_shuffle() {
    // Shape (5, 7) in chunks of (3, 4): the last row and column of chunks are
    // clipped. Both writes cover chunks only partly; the second overlaps the first.
    let plan = Plan {
        chunk: vec![3, 4],
        writes: [(vec![1, 2], vec![3, 5]), (vec![0, 0], vec![2, 3])],
        read: (vec![1, 1], vec![4, 5]),
    };
    for dtype in 0..13 {
        for codec in 0..CODECS.len() {
            for shuffle in [false, true] {
                let c = Case {
                    dtype,
                    codec,
                    shuffle,
                    shape: vec![5, 7],
                    seeds: Vec::new(),
                    fill: Some(dtype as u64 * 31 + 7),
                    data: 42 + dtype as u64,
                    flush_between: shuffle,
                    small_budget: codec == 0,
                };
                run(&c, &plan);
            }
        }
    }
}

/// Scalars (rank 0) and arrays with an empty axis, for every dtype.
#[test]
fn roundtrip_scalars_and_empty_axes() {
    for dtype in 0..13 {
        for shape in [vec![], vec![0], vec![3, 0, 2]] {
            let c = Case {
                dtype,
                codec: 1,
                shuffle: true,
                seeds: vec![1; 21],
                shape,
                fill: None,
                data: 9,
                flush_between: true,
                small_budget: false,
            };
            run(&c, &c.plan());
        }
    }
}

/// A write that is one whole chunk is encoded from the caller's cells when
/// they are in standard layout, and copied in order first when not (a
/// transposed view of a one-chunk array).
#[test]
fn whole_chunk_writes_from_standard_and_transposed_views() {
    use ndarray::Array2;
    let (_storage, mut f) = crate::common::mem_file(options(CODECS[0], true));
    f.define_array::<i32>("a", dims(2), vec![4, 6], None, None)
        .unwrap();
    let want: Vec<i32> = (0..4)
        .flat_map(|i| (0..6).map(move |j| 10 * i + j))
        .collect();
    let standard = Array2::from_shape_fn((4, 6), |(i, j)| (10 * i + j) as i32);
    let transposed = Array2::from_shape_fn((6, 4), |(j, i)| (10 * i + j) as i32);
    for (what, view) in [
        ("standard", standard.view().into_dyn()),
        ("transposed", transposed.t().into_dyn()),
    ] {
        f.write_array("a", &[], view).unwrap();
        let got: Vec<i32> = f
            .read_array::<i32>("a", &[], &[])
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got, want, "{what}");
        f.write_array("a", &[], Array2::<i32>::zeros((4, 6)).into_dyn().view())
            .unwrap();
    }
}

/// Writes from views that are not in standard layout (transposed, reversed,
/// strided) store the logical values, for covered and partly covered chunks.
#[test]
fn roundtrip_from_non_standard_layout_views() {
    use ndarray::{s, Array2};
    for codec in CODECS {
        let (storage, mut f) = crate::common::mem_file(options(*codec, true));
        f.define_array::<i32>("a", dims(2), vec![4, 6], Some(vec![2, 3]), None)
            .unwrap();
        // Logical value at (i, j) is 10 * i + j.
        let src = Array2::from_shape_fn((6, 4), |(j, i)| (10 * i + j) as i32);
        f.write_array("a", &[], src.t().into_dyn()).unwrap();
        let mut want: Vec<i32> = (0..4)
            .flat_map(|i| (0..6).map(move |j| 10 * i + j))
            .collect();
        // A reversed, strided view written at an offset (partly covered chunks).
        let big = Array2::from_shape_fn((6, 8), |(i, j)| (100 + 10 * i + j) as i32);
        let view = big.slice(s![..;-2, 1..;3]); // rows 5, 3, 1; columns 1, 4, 7
        f.write_array("a", &[1, 2], view.into_dyn()).unwrap();
        for (r, row) in [5usize, 3, 1].iter().enumerate() {
            for (c, col) in [1usize, 4, 7].iter().enumerate() {
                want[(1 + r) * 6 + 2 + c] = (100 + 10 * row + col) as i32;
            }
        }
        let read = |f: &ArrayFile| -> Vec<i32> {
            f.read_array::<i32>("a", &[], &[])
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        assert_eq!(read(&f), want, "{codec}: pending");
        f.flush().unwrap();
        assert_eq!(read(&f), want, "{codec}: flushed");
        let g = crate::common::mem_open(&storage, &f.layers()).unwrap();
        assert_eq!(read(&g), want, "{codec}: reopened");
    }
}

/// `read_is_in_memory` says yes only when a read would not touch storage:
/// pending arrays, and committed ones whose state is built and whose blocks
/// are cached; never for a fresh handle, an uncached block or a large read.
#[test]
fn read_is_in_memory_only_without_storage_access() {
    let (storage, mut f) = crate::common::mem_file(options(array_format::Codec::Lz4, true));
    f.define_array::<f32>("p", dims(1), vec![100], Some(vec![10]), None)
        .unwrap();
    let v = ndarray::Array1::from_iter((0..100).map(|i| i as f32)).into_dyn();
    f.write_array("p", &[], v.view()).unwrap();
    assert!(f.read_is_in_memory("p", &[], &[]), "pending");
    assert!(f.read_is_in_memory("nope", &[], &[]), "fails without I/O");
    f.flush().unwrap();
    let g = crate::common::mem_open(&storage, &f.layers()).unwrap();
    assert!(!g.read_is_in_memory("p", &[], &[]), "state not built");
    let part = g.read_array::<f32>("p", &[0], &[15]).unwrap();
    assert_eq!(part[[14]], 14.0);
    // Built now; chunks 0 and 1 cached, chunk 2 not.
    assert!(g.read_is_in_memory("p", &[0], &[20]));
    assert!(!g.read_is_in_memory("p", &[0], &[21]));
    // Regions within one chunk: a cached one, an uncached one.
    assert!(g.read_is_in_memory("p", &[13], &[5]));
    assert!(!g.read_is_in_memory("p", &[25], &[5]));
    assert!(
        g.read_is_in_memory("p", &[200], &[1]),
        "out of bounds fails fast"
    );
    assert_eq!(g.read_array::<f32>("p", &[], &[]).unwrap()[[99]], 99.0);
    assert!(g.read_is_in_memory("p", &[], &[]));

    // More cells than a read served in place may assemble.
    let n = array_format::IN_MEMORY_READ_CELLS + 1;
    f.define_array::<u8>("big", dims(1), vec![n], Some(vec![n]), None)
        .unwrap();
    assert!(!f.read_is_in_memory("big", &[], &[]));
    assert!(f.read_is_in_memory("big", &[0], &[16]));
}

/// `fetch_nowait` makes a small read of a fresh handle servable from
/// memory (its footer block and chunks fetched from storage that has them at
/// once, here in-memory files) and the read equals a blocking one; it
/// declines a read over the in-place bound and, with no raw cache level,
/// everything (nothing fetched would be kept).
#[test]
fn fetch_nowait_prepares_small_reads_and_declines_the_rest() {
    let (storage, mut f) = crate::common::mem_file(options(array_format::Codec::Lz4, true));
    f.define_array::<f32>("p", dims(1), vec![100], Some(vec![10]), None)
        .unwrap();
    let v = ndarray::Array1::from_iter((0..100).map(|i| i as f32 * 1.5)).into_dyn();
    f.write_array("p", &[], v.view()).unwrap();
    let n = array_format::IN_MEMORY_READ_CELLS + 1;
    f.define_array::<u8>("big", dims(1), vec![n], Some(vec![4096]), None)
        .unwrap();
    f.write_array(
        "big",
        &[],
        ndarray::Array1::from_elem(n as usize, 7u8)
            .into_dyn()
            .view(),
    )
    .unwrap();
    f.flush().unwrap();

    let g = crate::common::mem_open(&storage, &f.layers()).unwrap();
    assert!(!g.read_is_in_memory("p", &[5], &[20]));
    assert!(g.fetch_nowait("p", &[5], &[20]));
    assert!(g.read_is_in_memory("p", &[5], &[20]));
    assert!(
        !g.read_is_in_memory("p", &[], &[]),
        "only what the read needs"
    );
    assert_eq!(
        g.read_array::<f32>("p", &[5], &[20]).unwrap(),
        v.slice(ndarray::s![5..25]).into_dyn()
    );
    assert!(!g.fetch_nowait("big", &[], &[]), "over the in-place bound");
    assert!(g.fetch_nowait("big", &[0], &[16]));

    let no_raw = ArrayFile::open(
        storage.clone(),
        Path::new(crate::common::MEM_DIR),
        &f.layers(),
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 0,
            decoded_capacity_bytes: 1 << 20,
        })),
    )
    .unwrap();
    assert!(!no_raw.fetch_nowait("p", &[], &[]));
    assert_eq!(no_raw.read_array::<f32>("p", &[], &[]).unwrap(), v);
}

/// `fetch_nowait` decodes the chunks it fetches into the decoded level and
/// keeps their stored bytes out of the raw level, which holds only the
/// footer block it read: a fresh read touches one new buffer per chunk, not
/// two. With the decoded level off, the stored bytes are kept instead. A
/// damaged byte anywhere in the layer gives the same outcome (cells or
/// error) after `fetch_nowait` as a blocking read on a fresh handle.
#[test]
fn fetch_nowait_keeps_decoded_chunks_not_their_stored_bytes() {
    let (storage, mut f) = crate::common::mem_file(options(array_format::Codec::Lz4, true));
    f.define_array::<f32>("p", dims(1), vec![100], Some(vec![10]), None)
        .unwrap();
    let v = ndarray::Array1::from_iter((0..100).map(|i| i as f32 * 0.25)).into_dyn();
    f.write_array("p", &[], v.view()).unwrap();
    f.flush().unwrap();
    let layers = f.layers();
    let open =
        |raw: u64, decoded: u64| crate::common::mem_open_cached(&storage, &layers, raw, decoded);

    let (g, cache) = open(1 << 20, 1 << 20);
    let g = g.unwrap();
    assert!(g.fetch_nowait("p", &[5], &[20]));
    assert_eq!(cache.decoded_stats().entries, 3, "chunks 0, 1 and 2");
    assert_eq!(cache.raw_stats().entries, 1, "the footer block alone");
    assert!(g.read_is_in_memory("p", &[5], &[20]));
    assert_eq!(
        g.read_array::<f32>("p", &[5], &[20]).unwrap(),
        v.slice(ndarray::s![5..25]).into_dyn()
    );
    assert_eq!(
        cache.raw_stats().entries,
        1,
        "the read needed no stored bytes"
    );

    let (g, cache) = open(1 << 20, 0);
    let g = g.unwrap();
    assert!(g.fetch_nowait("p", &[5], &[20]));
    assert_eq!(
        cache.raw_stats().entries,
        4,
        "the footer block and 3 chunks"
    );
    assert_eq!(
        g.read_array::<f32>("p", &[5], &[20]).unwrap(),
        v.slice(ndarray::s![5..25]).into_dyn()
    );

    let path = crate::common::mem_layer_path(&layers[0]);
    let clean = storage.contents(&path).unwrap();
    let mut failed = 0;
    for at in 0..clean.len() {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x24;
        storage.overwrite(&path, bytes);
        let outcome = |fetch: bool| -> String {
            let (g, _) = open(1 << 20, 1 << 20);
            let g = match g {
                Ok(g) => g,
                Err(e) => return e.to_string(),
            };
            if fetch {
                let _ = g.fetch_nowait("p", &[], &[]);
            }
            match g.read_array::<f32>("p", &[], &[]) {
                Ok(a) => format!("{a:?}"),
                Err(e) => e.to_string(),
            }
        };
        let blocking = outcome(false);
        failed += usize::from(blocking != format!("{v:?}"));
        assert_eq!(outcome(true), blocking, "damage at byte {at}");
    }
    let len = clean.len();
    storage.overwrite(&path, clean);
    assert!(
        failed > len / 2,
        "most damage is detected: {failed} of {len}"
    );
}

/// A read spanning many chunks equals the cell-by-cell model: chunks
/// committed in two layers, pending ones over them, never-written ones as
/// the fill value; whole reads, hyperslabs cutting chunks, and the same after
/// reopen with and without the cache. A damaged file gives the same error
/// every time.
#[test]
fn reads_of_many_chunks_over_layers_and_pending_equal_the_model() {
    let (rows, cols) = (700_u64, 650_u64);
    let (storage, mut f) = crate::common::mem_file(options(array_format::Codec::Lz4, true));
    f.define_array::<f32>(
        "g",
        dims(2),
        vec![rows, cols],
        Some(vec![64, 48]),
        Some(array_format::FillValue::Float32(-1.0)),
    )
    .unwrap();
    let mut model = vec![-1.0_f32; (rows * cols) as usize];
    let mut write = |f: &mut ArrayFile, r0: u64, c0: u64, nr: u64, nc: u64, salt: f32| {
        let data: Vec<f32> = (0..nr * nc)
            .map(|k| salt + (k % 1013) as f32 * 0.5)
            .collect();
        for r in 0..nr {
            for c in 0..nc {
                model[((r0 + r) * cols + c0 + c) as usize] = data[(r * nc + c) as usize];
            }
        }
        let a = ndarray::Array2::from_shape_vec((nr as usize, nc as usize), data)
            .unwrap()
            .into_dyn();
        f.write_array("g", &[r0, c0], a.view()).unwrap();
    };
    write(&mut f, 0, 0, 400, 650, 1.0);
    f.flush().unwrap();
    write(&mut f, 300, 100, 390, 500, 5000.0);
    f.flush().unwrap();
    // Pending over committed; rows 690..700 of columns < 100 never written.
    write(&mut f, 100, 200, 250, 300, -7000.0);
    let check = |f: &ArrayFile, ctx: &str| {
        for (start, count) in [
            (vec![], vec![]),
            (vec![5, 7], vec![690, 600]),
            (vec![63, 47], vec![130, 98]),
        ] {
            let got = f.read_array::<f32>("g", &start, &count).unwrap();
            let (s, n) = if start.is_empty() {
                (vec![0, 0], vec![rows, cols])
            } else {
                (start.clone(), count.clone())
            };
            assert_eq!(got.shape(), [n[0] as usize, n[1] as usize], "{ctx}");
            for r in 0..n[0] {
                for c in 0..n[1] {
                    let want = model[((s[0] + r) * cols + s[1] + c) as usize];
                    assert_eq!(
                        got[[r as usize, c as usize]].to_bits(),
                        want.to_bits(),
                        "{ctx}: cell ({}, {})",
                        s[0] + r,
                        s[1] + c
                    );
                }
            }
        }
    };
    check(&f, "pending over two layers");
    f.flush().unwrap();
    check(&f, "flushed");
    let g = crate::common::mem_open(&storage, &f.layers()).unwrap();
    check(&g, "reopened");
    check(&g, "reopened, cached");

    // Damage two places of the newest layer: the same error every time.
    let layers = f.layers();
    let newest = layers.last().unwrap();
    let path = Path::new(MEM_DIR).join(newest.as_str());
    let mut bytes = storage.contents(&path).unwrap();
    for at in [200, bytes.len() / 2] {
        bytes[at] ^= 0xff;
    }
    storage.overwrite(&path, bytes);
    let first = crate::common::mem_open(&storage, &layers)
        .and_then(|h| h.read_array::<f32>("g", &[], &[]).map(|_| ()))
        .unwrap_err()
        .to_string();
    for _ in 0..5 {
        let again = crate::common::mem_open(&storage, &layers)
            .and_then(|h| h.read_array::<f32>("g", &[], &[]).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert_eq!(again, first);
    }
}

/// Reads touching hundreds of chunks, with chunks much longer on the first
/// axis than some regions (a row read decodes 2,048× what it yields), give
/// the model's cells, over unstored chunks too.
#[test]
fn reads_through_tall_chunks_equal_the_model() {
    let (rows, cols) = (2048u64, 600u64);
    let storage = Arc::new(MemoryStorage::new());
    let mut f = ArrayFile::create(
        storage,
        Path::new(MEM_DIR),
        options(CODECS[1], true),
        Arc::new(DeltaCache::default()),
    )
    .expect("create");
    f.define_array::<u16>("a", dims(2), vec![rows, cols], Some(vec![rows, 1]), None)
        .expect("define");
    // Every column but the last 100 written (those read as the fill, zero).
    let written = cols - 100;
    let cells: Vec<u16> = (0..rows * written)
        .map(|i| (i * 7 % 65_521) as u16)
        .collect();
    f.write_array("a", &[0, 0], nd(&[rows, written], cells.clone()).view())
        .expect("write");
    f.flush().expect("flush");
    let model = |r: u64, c: u64| {
        if c < written {
            cells[(r * written + c) as usize]
        } else {
            0
        }
    };
    for (start, count) in [
        // One row across every column: 600 chunks of 2048 cells.
        ([5, 0], [1, cols]),
        // Whole columns.
        ([0, 490], [rows, 20]),
        ([17, 3], [300, 250]),
    ] {
        let got = f.read_array::<u16>("a", &start, &count).expect("read");
        let want: Vec<u16> = (start[0]..start[0] + count[0])
            .flat_map(|r| (start[1]..start[1] + count[1]).map(move |c| (r, c)))
            .map(|(r, c)| model(r, c))
            .collect();
        assert_cells(&got, &count, &want, &format!("{start:?} + {count:?}"));
    }
}

/// Reads of 4 MiB and more touching several chunk rows are decoded a band
/// of chunks per task on every core: their cells equal the model's, over
/// edge chunks, unstored chunks (the fill value), committed layers and
/// pending writes, for a region and the whole array; with the decoded
/// cache on and off.
#[test]
fn large_reads_decoded_in_parallel_equal_the_model() {
    let (rows, cols) = (2500u64, 2100u64);
    for decoded_capacity_bytes in [0, 64 << 20] {
        let storage = Arc::new(MemoryStorage::new());
        let cache = Arc::new(DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 64 << 20,
            decoded_capacity_bytes,
        }));
        let mut f = ArrayFile::create(storage, Path::new(MEM_DIR), options(CODECS[1], true), cache)
            .expect("create");
        f.define_array::<u8>(
            "a",
            dims(2),
            vec![rows, cols],
            Some(vec![300, 700]),
            Some(7u8.to_fill()),
        )
        .expect("define");
        let mut model = vec![7u8; (rows * cols) as usize];
        let mut rng = crate::common::Rng::new(decoded_capacity_bytes + 1);
        // A committed block of rows, then pending writes over it and beside
        // it; the last rows stay unwritten.
        for (i, (start, count)) in [
            ([0u64, 0u64], [1800u64, 2100u64]),
            ([250, 650], [700, 900]),
            ([1700, 1500], [500, 600]),
        ]
        .into_iter()
        .enumerate()
        {
            let n = (count[0] * count[1]) as usize;
            let values: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            f.write_array("a", &start, nd(&count, values.clone()).view())
                .expect("write");
            for r in 0..count[0] {
                let at = ((start[0] + r) * cols + start[1]) as usize;
                let from = (r * count[1]) as usize;
                model[at..at + count[1] as usize]
                    .copy_from_slice(&values[from..from + count[1] as usize]);
            }
            if i == 0 {
                f.flush().expect("flush");
            }
        }
        for (start, count) in [([0u64, 0u64], [rows, cols]), ([123, 45], [2300, 2000])] {
            let got = f.read_array::<u8>("a", &start, &count).expect("read");
            let want: Vec<u8> = (start[0]..start[0] + count[0])
                .flat_map(|r| {
                    let at = (r * cols + start[1]) as usize;
                    model[at..at + count[1] as usize].to_vec()
                })
                .collect();
            assert_cells(
                &got,
                &count,
                &want,
                &format!("{start:?} + {count:?}, decoded cache {decoded_capacity_bytes}"),
            );
        }
    }
}

/// `read_ranges_nowait` answers from memory or not at all: a local file just
/// written is in the page cache, so on Linux every range reads (empty ones
/// too) and equals a normal read; a range past the end is refused, not read
/// short. In-memory files always answer.
#[test]
fn reads_that_cannot_wait_come_from_the_page_cache_or_not_at_all() {
    use array_format::{LocalStorage, Storage};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f.bin");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let ranges = [(0u64, 10usize), (4096, 30_000), (99_990, 10), (50, 0)];
    let want: Vec<Vec<u8>> = ranges
        .iter()
        .map(|&(at, n)| bytes[at as usize..at as usize + n].to_vec())
        .collect();
    let local = LocalStorage.open_read(&path).unwrap();
    let got = local.read_ranges_nowait(&ranges, &mut Vec::new());
    if cfg!(target_os = "linux") {
        assert_eq!(got.expect("a file just written is in the page cache"), want);
    } else {
        assert!(got.is_none());
    }
    assert_eq!(local.read_ranges(&ranges).unwrap(), want);
    assert!(local
        .read_ranges_nowait(&[(99_990, 20)], &mut Vec::new())
        .is_none());

    let mem = MemoryStorage::new();
    let mpath = Path::new("/mem/f.bin");
    mem.create_dir_all(Path::new("/mem")).unwrap();
    let mut w = mem.create_new(mpath).unwrap();
    w.append(&bytes).unwrap();
    w.sync().unwrap();
    drop(w);
    let mread = mem.open_read(mpath).unwrap();
    assert_eq!(
        mread.read_ranges_nowait(&ranges, &mut Vec::new()).unwrap(),
        want
    );
    assert!(mread
        .read_ranges_nowait(&[(99_990, 20)], &mut Vec::new())
        .is_none());
}

/// Windows of a grid of 64 KiB chunks (each touching two to six chunks)
/// read on pools of 1 and 3 threads, with the decoded cache on (the chunks
/// it lacks are decoded on every core into it first, then copied row by
/// row) and off (bands of chunk rows decoded on every core): the cells are
/// the model's (committed layers, pending writes, never-written chunks as
/// the fill value, `i16` and `f64` too), the parallel decode fills the
/// cache before the copy (every chunk of a fresh handle's first window is
/// then a hit), and a damaged file gives the same error on both pools.
#[test]
fn windows_decoded_on_every_core_equal_the_model_and_fail_alike() {
    let (rows, cols) = (600u64, 520u64);
    let (storage, mut f) = crate::common::mem_file(options(array_format::Codec::Lz4, true));
    f.define_array::<f32>(
        "g",
        dims(2),
        vec![rows, cols],
        Some(vec![128, 128]),
        Some(array_format::FillValue::Float32(-2.5)),
    )
    .unwrap();
    f.define_array::<i16>("h", dims(2), vec![rows, cols], Some(vec![128, 128]), None)
        .unwrap();
    f.define_array::<f64>("d", dims(2), vec![rows, cols], Some(vec![128, 128]), None)
        .unwrap();
    let mut model = vec![-2.5_f32; (rows * cols) as usize];
    let write = |f: &mut ArrayFile,
                 model: &mut [f32],
                 (r0, c0): (u64, u64),
                 (nr, nc): (u64, u64),
                 salt: f32| {
        let data: Vec<f32> = (0..nr * nc).map(|k| salt + (k % 997) as f32).collect();
        for r in 0..nr {
            for c in 0..nc {
                model[((r0 + r) * cols + c0 + c) as usize] = data[(r * nc + c) as usize];
            }
        }
        let a = nd(&[nr, nc], data);
        f.write_array("g", &[r0, c0], a.view()).unwrap();
    };
    // Columns 384.. of rows 0..256 are never written.
    write(&mut f, &mut model, (0, 0), (256, 384), 1.0);
    write(&mut f, &mut model, (256, 0), (rows - 256, cols), 3000.0);
    let h: Vec<i16> = (0..rows * cols)
        .map(|k| (k % 30_011) as i16 - 15_000)
        .collect();
    f.write_array("h", &[], nd(&[rows, cols], h.clone()).view())
        .unwrap();
    let d: Vec<f64> = (0..rows * cols).map(|k| k as f64 * 0.25).collect();
    f.write_array("d", &[], nd(&[rows, cols], d.clone()).view())
        .unwrap();
    f.flush().unwrap();
    write(&mut f, &mut model, (100, 300), (200, 150), -9000.0);
    f.flush().unwrap();
    let windows = [
        ([0u64, 0u64], [200u64, 200u64]),
        ([100, 250], [200, 200]),
        ([127, 127], [2, 2]),
        ([200, 300], [300, 220]),
        ([1, 380], [250, 140]),
        ([0, 0], [rows, cols]),
    ];
    let pool = |n: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let check_g = |g: &ArrayFile, model: &[f32], ctx: &str| {
        for (start, count) in &windows {
            let got = g.read_array::<f32>("g", start, count).unwrap();
            let want = window_of(model, cols, start, count);
            assert_cells(
                &got,
                count,
                &want,
                &format!("{ctx}: g {start:?} + {count:?}"),
            );
        }
    };
    // Pending writes over both layers, read through the writing handle.
    write(&mut f, &mut model, (250, 50), (100, 100), 7000.0);
    for threads in [1, 3] {
        pool(threads).install(|| check_g(&f, &model, &format!("pending, {threads} threads")));
    }
    f.flush().unwrap();
    let layers = f.layers();
    for decoded_capacity_bytes in [64 << 20, 0] {
        for threads in [1, 3] {
            let ctx = format!("{threads} threads, decoded level {decoded_capacity_bytes} bytes");
            let (g, cache) =
                crate::common::mem_open_cached(&storage, &layers, 64 << 20, decoded_capacity_bytes);
            let g = g.unwrap();
            pool(threads).install(|| {
                for (k, (start, count)) in windows.iter().enumerate() {
                    let got = g.read_array::<f32>("g", start, count).unwrap();
                    if k == 0 && decoded_capacity_bytes > 0 {
                        // Four committed chunks, no pending one: decoded
                        // ahead on three threads, so the copy hits them all.
                        let s = cache.decoded_stats();
                        assert_eq!(s.entries, 4, "{ctx}");
                        assert_eq!(s.hits, if threads > 1 { 4 } else { 0 }, "{ctx}");
                    }
                    let want = window_of(&model, cols, start, count);
                    assert_cells(
                        &got,
                        count,
                        &want,
                        &format!("{ctx}: g {start:?} + {count:?}"),
                    );
                    let got = g.read_array::<i16>("h", start, count).unwrap();
                    let want = window_of(&h, cols, start, count);
                    assert_cells(
                        &got,
                        count,
                        &want,
                        &format!("{ctx}: h {start:?} + {count:?}"),
                    );
                    let got = g.read_array::<f64>("d", start, count).unwrap();
                    let want = window_of(&d, cols, start, count);
                    assert_cells(
                        &got,
                        count,
                        &want,
                        &format!("{ctx}: d {start:?} + {count:?}"),
                    );
                }
            });
        }
    }

    // Damage in several places of the first layer: the same outcome for
    // every window on one thread and on three, cache on and off.
    let path = Path::new(MEM_DIR).join(layers[0].as_str());
    let clean = storage.contents(&path).unwrap();
    for at in [100, clean.len() / 5, clean.len() / 3, clean.len() / 2] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x5a;
        bytes[at + 70_000] ^= 0x5a;
        storage.overwrite(&path, bytes);
        for decoded_capacity_bytes in [64 << 20, 0] {
            let outcome = |threads: usize| -> Vec<String> {
                let g = ArrayFile::open(
                    storage.clone(),
                    Path::new(MEM_DIR),
                    &layers,
                    ArrayFileOptions::default(),
                    Arc::new(DeltaCache::new(DeltaCacheConfig {
                        raw_capacity_bytes: 64 << 20,
                        decoded_capacity_bytes,
                    })),
                );
                let Ok(g) = g else {
                    return vec![format!("{:?}", g.err())];
                };
                pool(threads).install(|| {
                    windows
                        .iter()
                        .flat_map(|(s, c)| {
                            [
                                g.read_array::<f32>("g", s, c).map(|a| a.sum().to_string()),
                                g.read_array::<i16>("h", s, c)
                                    .map(|a| format!("{:?}", a.first())),
                                g.read_array::<f64>("d", s, c).map(|a| a.sum().to_string()),
                            ]
                        })
                        .map(|r| r.unwrap_or_else(|e| e.to_string()))
                        .collect()
                })
            };
            let one = outcome(1);
            assert!(
                one.iter().any(|o| o.contains("offset")),
                "damage at {at} must fail some read: {one:?}"
            );
            assert_eq!(
                outcome(3),
                one,
                "damage at {at}, decoded level {decoded_capacity_bytes}"
            );
        }
    }
    storage.overwrite(&path, clean);
}

/// The cells of the window `start` + `count` of a row-major model of
/// `cols` columns, in order.
fn window_of<T: Copy>(model: &[T], cols: u64, start: &[u64], count: &[u64]) -> Vec<T> {
    (start[0]..start[0] + count[0])
        .flat_map(|r| (start[1]..start[1] + count[1]).map(move |c| (r, c)))
        .map(|(r, c)| model[(r * cols + c) as usize])
        .collect()
}

/// Cells encoded ahead ([`array_format::EncodedArray`]) and written with
/// `write_encoded` give what `write_array` of the same cells at the origin
/// gives: the cells and the statistics, pending, flushed and reopened, for
/// every codec, with and without shuffle, edge chunks, a fill value, a
/// transposed view and strings; and they are refused, without a change,
/// for another schema or other compression options.
#[test]
fn cells_encoded_ahead_are_stored_as_a_write_stores_them() {
    use std::borrow::Cow;

    use array_format::{ArraySchema, Codec, DType, EncodedArray, ErrorKind, FillValue};
    use ndarray::Array2;

    fn both<T: TestElem>(
        opts: &ArrayFileOptions,
        schema: &Arc<ArraySchema>,
        cells: &ndarray::ArrayViewD<'_, T>,
        ctx: &str,
    ) {
        let (sa, mut a) = crate::common::mem_file(*opts);
        let (sb, mut b) = crate::common::mem_file(*opts);
        a.define_new("v", Arc::clone(schema)).unwrap();
        a.write_array("v", &[], cells.clone()).unwrap();
        let enc =
            EncodedArray::encode("v", Arc::clone(schema), opts.compression, cells.clone()).unwrap();
        if let Some(w) = T::DTYPE.size_bytes() {
            assert_eq!(enc.raw_bytes(), (cells.len() * w) as u64, "{ctx}");
        }
        // The statistics the encoded cells give are those the file gives
        // for the same cells written.
        let enc_stats = enc.stats();
        b.define_new("v", Arc::clone(schema)).unwrap();
        // A borrowed value is copied: it can be written again.
        b.write_encoded("v", Cow::Borrowed(&enc)).unwrap();
        b.write_encoded("v", Cow::Owned(enc)).unwrap();
        let want: Vec<T> = cells.iter().cloned().collect();
        // Cells compared bit for bit (NaN equals NaN), statistics as values.
        let check = |f: &ArrayFile, stats: &ArrayStats, what: &str| {
            let got = f.read_array::<T>("v", &[], &[]).unwrap();
            assert_eq!(got.len(), want.len(), "{ctx}: {what}");
            assert!(
                got.iter().zip(&want).all(|(g, w)| g.same(w)),
                "{ctx}: {what}: cells differ"
            );
            assert_eq!(&f.array_stats("v").unwrap(), stats, "{ctx}: {what}");
        };
        let stats = a.array_stats("v").unwrap();
        assert_eq!(enc_stats, stats, "{ctx}: EncodedArray::stats");
        check(&a, &stats, "write_array");
        check(&b, &stats, "pending");
        a.flush().unwrap();
        b.flush().unwrap();
        check(&a, &stats, "write_array flushed");
        check(&b, &stats, "flushed");
        check(
            &crate::common::mem_open(&sa, &a.layers()).unwrap(),
            &stats,
            "write_array reopened",
        );
        check(
            &crate::common::mem_open(&sb, &b.layers()).unwrap(),
            &stats,
            "reopened",
        );
    }

    for codec in CODECS {
        for shuffle in [false, true] {
            let opts = options(*codec, shuffle);
            let ctx = format!("{codec} shuffle {shuffle}");
            // 5 × 7 in 2 × 3 chunks: edge chunks on both axes; NaN cells
            // and cells equal to the fill value, which statistics skip.
            let schema = Arc::new(
                ArraySchema::new(
                    "v",
                    DType::Float32,
                    dims(2),
                    vec![5, 7],
                    Some(vec![2, 3]),
                    Some(FillValue::Float32(-1.0)),
                )
                .unwrap(),
            );
            let cells = Array2::from_shape_fn((7, 5), |(j, i)| match (i + j) % 6 {
                0 => f32::NAN,
                1 => -1.0,
                k => (10 * i + j) as f32 + k as f32 / 8.0,
            });
            both::<f32>(
                &opts,
                &schema,
                &cells.t().into_dyn(),
                &format!("{ctx} f32 transposed"),
            );
            let standard = cells.t().as_standard_layout().into_owned();
            both::<f32>(
                &opts,
                &schema,
                &standard.view().into_dyn(),
                &format!("{ctx} f32"),
            );
            // One chunk, from the caller's cells.
            let one = Arc::new(
                ArraySchema::new("v", DType::Int64, dims(1), vec![9], None, None).unwrap(),
            );
            let cells = ndarray::Array1::from_iter((0..9).map(|i: i64| i * i - 20)).into_dyn();
            both::<i64>(&opts, &one, &cells.view(), &format!("{ctx} i64"));
            // A scalar, and an array with an empty axis (no chunk at all).
            let scalar = Arc::new(
                ArraySchema::new("v", DType::Float64, vec![], vec![], None, None).unwrap(),
            );
            let cells = ndarray::arr0(2.5f64).into_dyn();
            both::<f64>(&opts, &scalar, &cells.view(), &format!("{ctx} scalar"));
            let empty = Arc::new(
                ArraySchema::new(
                    "v",
                    DType::Int32,
                    dims(2),
                    vec![0, 5],
                    Some(vec![1, 2]),
                    None,
                )
                .unwrap(),
            );
            let cells = ndarray::Array2::<i32>::zeros((0, 5)).into_dyn();
            both::<i32>(&opts, &empty, &cells.view(), &format!("{ctx} empty"));
            let strings = Arc::new(
                ArraySchema::new("v", DType::String, dims(1), vec![4], Some(vec![3]), None)
                    .unwrap(),
            );
            let cells =
                ndarray::Array1::from_iter(["", "é", "abc", "zz"].map(String::from)).into_dyn();
            both::<String>(&opts, &strings, &cells.view(), &format!("{ctx} strings"));
        }
    }

    // Refused: another schema (equal content passes), other options, and
    // cells that do not fit the schema; the file is unchanged.
    let opts = options(Codec::Lz4, true);
    let schema = Arc::new(
        ArraySchema::new("v", DType::Float32, dims(1), vec![6], Some(vec![2]), None).unwrap(),
    );
    let cells = ndarray::Array1::from_iter((0..6).map(|i| i as f32)).into_dyn();
    let enc =
        EncodedArray::encode("v", Arc::clone(&schema), opts.compression, cells.view()).unwrap();
    assert_eq!(enc.raw_bytes(), 24);
    assert!(enc.stored_bytes() > 0);
    let (_s, mut f) = crate::common::mem_file(opts);
    let other =
        ArraySchema::new("v", DType::Float32, dims(1), vec![6], Some(vec![3]), None).unwrap();
    f.define_new("v", other).unwrap();
    let e = f.write_encoded("v", Cow::Borrowed(&enc)).unwrap_err();
    assert!(
        matches!(e, array_format::Error::EncodedMismatch { .. }),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let (_s, mut g) = crate::common::mem_file(options(Codec::Zstd { level: 1 }, true));
    g.define_new("v", (*schema).clone()).unwrap();
    let e = g.write_encoded("v", Cow::Borrowed(&enc)).unwrap_err();
    assert!(
        matches!(e, array_format::Error::EncodedMismatch { .. }),
        "{e}"
    );
    let untouched: Vec<f32> = g
        .read_array::<f32>("v", &[], &[])
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(untouched, vec![0.0; 6], "nothing written");
    let (_s, mut h) = crate::common::mem_file(opts);
    h.define_new("v", (*schema).clone()).unwrap();
    h.write_encoded("v", Cow::Owned(enc)).unwrap();
    let back: Vec<f32> = h
        .read_array::<f32>("v", &[], &[])
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(back, (0..6).map(|i| i as f32).collect::<Vec<_>>());
    assert!(matches!(
        h.write_encoded(
            "missing",
            Cow::Owned(
                EncodedArray::encode("v", Arc::clone(&schema), opts.compression, cells.view())
                    .unwrap()
            )
        ),
        Err(array_format::Error::ArrayNotFound { .. })
    ));
    let short = ndarray::Array1::from_iter((0..5).map(|i| i as f32)).into_dyn();
    assert!(matches!(
        EncodedArray::encode("v", Arc::clone(&schema), opts.compression, short.view()),
        Err(array_format::Error::ShapeMismatch { .. })
    ));
    let ints = ndarray::Array1::from_iter(0..6i32).into_dyn();
    assert!(matches!(
        EncodedArray::encode("v", Arc::clone(&schema), opts.compression, ints.view()),
        Err(array_format::Error::DTypeMismatch { .. })
    ));
    let mut bad = (*schema).clone();
    bad.chunk_shape = vec![0];
    assert!(matches!(
        EncodedArray::encode("v", Arc::new(bad), opts.compression, cells.view()),
        Err(array_format::Error::InvalidSchema { .. })
    ));
}

/// Arrays defined one at a time with equal definitions share one schema
/// (`share_schema`); fill values that differ only in their bits (`0.0` and
/// `-0.0`, two NaN payloads) are not shared, and every array reads back its
/// own fill bits after a flush and a reopen.
#[test]
fn equal_definitions_share_one_schema_and_keep_their_fill_bits() {
    use array_format::{ArraySchema, DType, FillValue};
    let (storage, mut f) = crate::common::mem_file(ArrayFileOptions::default());
    let def = |bits: u32| {
        ArraySchema::new(
            "v",
            DType::Float32,
            crate::common::dims(1),
            vec![4],
            Some(vec![2]),
            Some(FillValue::Float32(f32::from_bits(bits))),
        )
        .unwrap()
    };
    let fills: [(&str, u32); 6] = [
        ("a", 0.0f32.to_bits()),
        ("b", 0.0f32.to_bits()),
        ("c", (-0.0f32).to_bits()),
        ("d", 0x7fc0_0001),
        ("e", 0x7fc0_0001),
        ("f", 0x7fc0_0002),
    ];
    let mut last: Option<(Arc<ArraySchema>, u32)> = None;
    for (name, bits) in fills {
        let schema = f.share_schema(def(bits));
        let shared = last.as_ref().is_some_and(|(l, _)| Arc::ptr_eq(l, &schema));
        let same_bits = last.as_ref().is_some_and(|(_, b)| *b == bits);
        assert_eq!(shared, same_bits, "{name}");
        f.define_new(name, Arc::clone(&schema)).unwrap();
        last = Some((schema, bits));
    }
    assert!(f.flush().unwrap().is_some());
    let g = crate::common::mem_open(&storage, &f.layers()).unwrap();
    for (name, bits) in fills {
        let cells = g.read_array::<f32>(name, &[], &[]).unwrap();
        assert!(
            cells.iter().all(|c| c.to_bits() == bits),
            "{name}: {:?}",
            cells.iter().map(|c| c.to_bits()).collect::<Vec<_>>()
        );
    }
}

/// A write of every cell of a one-chunk array in standard layout takes a
/// shorter path than other writes (no region or range vectors). It stores
/// what the general path stores for the same cells: written from a strided
/// view (which takes the general path) into a second file, the chunk's
/// stored and raw sizes, the statistics and the cells agree, pending,
/// flushed and reopened, for every codec, with and without shuffle, and for
/// a start given as zeros or left empty.
#[test]
fn a_whole_one_chunk_write_stores_what_the_general_path_stores() {
    use array_format::{ArraySchema, DType, FillValue};
    use ndarray::{s, Array2};

    let schema = Arc::new(
        ArraySchema::new(
            "v",
            DType::Float32,
            dims(2),
            vec![6, 5],
            None,
            Some(FillValue::Float32(-1.0)),
        )
        .unwrap(),
    );
    // Twice as wide as the array: every other column is the array's cells.
    let wide = Array2::from_shape_fn((6, 10), |(j, i)| match (i + 3 * j) % 7 {
        0 => f32::NAN,
        1 => -1.0,
        k => (j * 100 + i) as f32 - k as f32 / 4.0,
    });
    let strided = wide.slice(s![.., ..;2]);
    assert!(strided.as_slice().is_none(), "the general path's input");
    let standard = strided.as_standard_layout().into_owned();
    for codec in CODECS {
        for shuffle in [false, true] {
            for start in [&[][..], &[0, 0][..]] {
                let opts = options(*codec, shuffle);
                let ctx = format!("{codec} shuffle {shuffle} start {start:?}");
                let (sa, mut a) = crate::common::mem_file(opts);
                let (sb, mut b) = crate::common::mem_file(opts);
                a.define_new("v", Arc::clone(&schema)).unwrap();
                b.define_new("v", Arc::clone(&schema)).unwrap();
                a.write_array("v", start, standard.view().into_dyn())
                    .unwrap();
                b.write_array("v", start, strided.into_dyn()).unwrap();
                let same = |a: &ArrayFile, b: &ArrayFile, what: &str| {
                    let (ma, mb) = (a.array_meta("v").unwrap(), b.array_meta("v").unwrap());
                    assert_eq!(ma.n_chunks_stored, 1, "{ctx}: {what}");
                    assert_eq!(ma.stored_bytes, mb.stored_bytes, "{ctx}: {what}");
                    assert_eq!(ma.raw_bytes, mb.raw_bytes, "{ctx}: {what}");
                    assert_eq!(ma.stats, mb.stats, "{ctx}: {what}");
                    let (ca, cb) = (
                        a.read_array::<f32>("v", &[], &[]).unwrap(),
                        b.read_array::<f32>("v", &[], &[]).unwrap(),
                    );
                    assert!(
                        ca.iter().zip(&cb).all(|(x, y)| x.same(y)) && ca.len() == cb.len(),
                        "{ctx}: {what}: cells differ"
                    );
                    assert!(
                        ca.iter().zip(standard.iter()).all(|(x, y)| x.same(y)),
                        "{ctx}: {what}: not the cells written"
                    );
                };
                same(&a, &b, "pending");
                a.flush().unwrap();
                b.flush().unwrap();
                same(&a, &b, "flushed");
                same(
                    &crate::common::mem_open(&sa, &a.layers()).unwrap(),
                    &crate::common::mem_open(&sb, &b.layers()).unwrap(),
                    "reopened",
                );
            }
        }
    }
}

/// A read of every cell of a one-chunk array (`start` and `count` empty)
/// takes a shorter path than a read naming the same region. Both give the
/// same cells and the same answer to `read_is_in_memory`: unwritten (the
/// fill value), pending, committed before and after its block is cached,
/// for a 2-d array, one whose chunk is larger than it, and a scalar.
#[test]
fn a_whole_read_of_a_one_chunk_array_is_the_read_of_its_region() {
    use array_format::FillValue;

    let (storage, mut f) = crate::common::mem_file(options(array_format::Codec::Lz4, true));
    f.define_array::<f32>(
        "m",
        dims(2),
        vec![3, 4],
        None,
        Some(FillValue::Float32(-7.5)),
    )
    .unwrap();
    f.define_array::<f32>("w", dims(2), vec![3, 4], None, None)
        .unwrap();
    // One chunk larger than the array: one chunk too.
    f.define_array::<f32>("b", dims(2), vec![3, 4], Some(vec![4, 8]), None)
        .unwrap();
    f.define_array::<f64>("s", vec![], vec![], None, None)
        .unwrap();
    let cells = ndarray::Array2::from_shape_fn((3, 4), |(j, i)| (j * 10 + i) as f32 - 3.0);
    f.write_array("w", &[], cells.view().into_dyn()).unwrap();
    f.write_array("b", &[], cells.view().into_dyn()).unwrap();
    f.write_array("s", &[], ndarray::arr0(2.25f64).into_dyn().view())
        .unwrap();
    let same = |f: &ArrayFile, when: &str, cached: Option<bool>| {
        for name in ["m", "w", "b"] {
            let whole = f.read_array::<f32>(name, &[], &[]).unwrap();
            let region = f.read_array::<f32>(name, &[0, 0], &[3, 4]).unwrap();
            assert_eq!(whole.shape(), region.shape(), "{when}: {name}");
            assert!(
                whole.iter().zip(region.iter()).all(|(a, b)| a.same(b)),
                "{when}: {name}: cells differ"
            );
        }
        let m = f.read_array::<f32>("m", &[], &[]).unwrap();
        assert!(
            m.iter().all(|&v| v == -7.5),
            "{when}: unwritten reads the fill"
        );
        for name in ["w", "b"] {
            let got = f.read_array::<f32>(name, &[], &[]).unwrap();
            assert_eq!(got, cells.clone().into_dyn(), "{when}: {name}");
        }
        let s = f.read_array::<f64>("s", &[], &[]).unwrap();
        assert_eq!(s.shape(), &[] as &[usize], "{when}");
        assert_eq!(s[[]], 2.25, "{when}");
        if let Some(cached) = cached {
            assert_eq!(f.read_is_in_memory("w", &[], &[]), cached, "{when}");
            assert_eq!(
                f.read_is_in_memory("w", &[0, 0], &[3, 4]),
                cached,
                "{when}: the named region"
            );
        }
    };
    same(&f, "pending", Some(true));
    f.flush().unwrap();
    same(&f, "flushed", None);
    let g = crate::common::mem_open(&storage, &f.layers()).unwrap();
    assert!(!g.read_is_in_memory("w", &[], &[]), "state not built");
    // The statistics build "w"'s state without reading its block.
    g.array_stats("w").unwrap();
    assert!(!g.read_is_in_memory("w", &[], &[]), "block not cached");
    assert!(
        !g.read_is_in_memory("w", &[0, 0], &[3, 4]),
        "block not cached, named"
    );
    same(&g, "reopened", None);
    // The reads cached the block: both forms say so.
    assert!(g.read_is_in_memory("w", &[], &[]), "cached");
    assert!(g.read_is_in_memory("w", &[0, 0], &[3, 4]), "cached, named");
}
