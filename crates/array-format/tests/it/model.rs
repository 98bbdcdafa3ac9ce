//! Model-based test: random sequences of define / write / delete / flush /
//! compact / reopen / read over three array names, checked after every step
//! against an in-memory model (cells, schema, list of arrays and statistics).
//!
//! The model keeps two states: `live` (what the open `ArrayFile` shows,
//! pending changes included) and `committed` (what its layer list holds).
//! A flush makes `committed = live`; a reopen from `f.layers()` discards pending
//! changes, so it makes `live = committed`; a compaction changes neither.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use array_format::{
    ArrayFile, ArrayFileOptions, ArrayStats, Codec, Compression, DType, DeltaCache,
    DeltaCacheConfig, Error, FillValue, MemoryStorage, StatValue,
};
use proptest::prelude::*;

use crate::common::{chunk_of, dims, nd, proptest_config, region_cells, region_from, Rng, MEM_DIR};

const NAMES: [&str; 3] = ["a", "b", "long name ∑ with spaces"];

#[derive(Clone, Debug)]
enum Op {
    Define {
        name: usize,
        int: bool,
        shape: Vec<u64>,
        chunk_seeds: Vec<u64>,
        /// -3..=3 is a value; 4 is NaN for float arrays.
        fill: Option<i8>,
    },
    Write {
        name: usize,
        region: Vec<u64>,
        data: u64,
    },
    Delete {
        name: usize,
    },
    /// `flush()`, or `write_pending()` + `install()` when `two_phase`.
    Flush {
        two_phase: bool,
    },
    /// `compact()`, or `compact_prepare()` + `install_compacted()` when `two_phase`.
    Compact {
        two_phase: bool,
    },
    Reopen,
    Read {
        name: usize,
        region: Vec<u64>,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        3 => (
            name.clone(),
            any::<bool>(),
            prop::collection::vec(0u64..=6, 0..=2),
            prop::collection::vec(any::<u64>(), 2),
            prop::option::of(-3i8..=4),
        )
            .prop_map(|(name, int, shape, chunk_seeds, fill)| Op::Define {
                name,
                int,
                shape,
                chunk_seeds,
                fill,
            }),
        6 => (name.clone(), prop::collection::vec(any::<u64>(), 4), any::<u64>())
            .prop_map(|(name, region, data)| Op::Write { name, region, data }),
        2 => name.clone().prop_map(|name| Op::Delete { name }),
        2 => any::<bool>().prop_map(|two_phase| Op::Flush { two_phase }),
        1 => any::<bool>().prop_map(|two_phase| Op::Compact { two_phase }),
        1 => Just(Op::Reopen),
        2 => (name, prop::collection::vec(any::<u64>(), 4))
            .prop_map(|(name, region)| Op::Read { name, region }),
    ]
}

/// One array of the model. Cells are `f32` for both dtypes (the `i32` values
/// used are small integers, exact in `f32`).
#[derive(Clone, Debug)]
struct MArr {
    int: bool,
    shape: Vec<u64>,
    chunk: Vec<u64>,
    fill: Option<f32>,
    cells: Vec<f32>,
    /// Chunks written since the array was (re)defined.
    written: BTreeSet<u64>,
}

impl MArr {
    fn fill_value(&self) -> Option<FillValue> {
        self.fill.map(|v| {
            if self.int {
                FillValue::Int32(v as i32)
            } else {
                FillValue::Float32(v)
            }
        })
    }

    fn stat(&self, v: f32) -> StatValue {
        if self.int {
            StatValue::Int(i64::from(v as i32))
        } else {
            StatValue::Float(f64::from(v))
        }
    }

    fn stats(&self) -> ArrayStats {
        let mut s = ArrayStats {
            row_count: self.cells.len() as u64,
            ..ArrayStats::default()
        };
        let (mut min, mut max): (Option<f32>, Option<f32>) = (None, None);
        for (lin, &v) in self.cells.iter().enumerate() {
            let unwritten = !self
                .written
                .contains(&chunk_of(&self.shape, &self.chunk, lin));
            #[allow(clippy::float_cmp)]
            let is_fill = self.fill.is_some_and(|f| f == v);
            if unwritten || v.is_nan() || is_fill {
                s.null_count += 1;
                continue;
            }
            min = Some(min.map_or(v, |m| m.min(v)));
            max = Some(max.map_or(v, |m| m.max(v)));
        }
        s.min = min.map(|v| self.stat(v));
        s.max = max.map(|v| self.stat(v));
        s
    }
}

type Model = BTreeMap<usize, MArr>;

fn same_cell(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Reads a region as `f32` whatever the dtype.
fn read_f32(f: &ArrayFile, name: &str, int: bool, start: &[u64], count: &[u64]) -> Vec<f32> {
    if int {
        let a = f.read_array::<i32>(name, start, count).expect("read i32");
        a.iter().map(|&v| v as f32).collect()
    } else {
        let a = f.read_array::<f32>(name, start, count).expect("read f32");
        a.iter().copied().collect()
    }
}

fn assert_same_cells(got: &[f32], want: &[f32], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: cell count");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(same_cell(g, w), "{ctx}: cell {i}: read {g}, expected {w}");
    }
}

/// Checks everything observable about `f` against `model`.
fn check(f: &ArrayFile, model: &Model, ctx: &str) {
    let mut listed = f.list_arrays();
    listed.sort();
    let mut expected: Vec<String> = model.keys().map(|&k| NAMES[k].to_owned()).collect();
    expected.sort();
    assert_eq!(listed, expected, "{ctx}: list_arrays");
    assert_eq!(f.len(), model.len(), "{ctx}: len");
    for (k, name) in NAMES.iter().enumerate() {
        let Some(m) = model.get(&k) else {
            assert!(!f.contains(name), "{ctx}: {name} should not exist");
            assert!(
                matches!(
                    f.read_array::<f32>(name, &[], &[]),
                    Err(Error::ArrayNotFound { .. })
                ),
                "{ctx}: reading deleted/undefined {name}"
            );
            assert!(matches!(
                f.array_stats(name),
                Err(Error::ArrayNotFound { .. })
            ));
            continue;
        };
        let ctx = format!("{ctx}: array {name:?}");
        let schema = f.schema(name).expect("schema of a defined array");
        assert_eq!(
            schema.dtype,
            if m.int { DType::Int32 } else { DType::Float32 },
            "{ctx}: dtype"
        );
        assert_eq!(schema.shape, m.shape, "{ctx}: shape");
        assert_eq!(schema.chunk_shape, m.chunk, "{ctx}: chunk shape");
        let same_fill = match (&schema.fill_value, m.fill_value()) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_as(&b),
            _ => false,
        };
        assert!(same_fill, "{ctx}: fill {:?}", schema.fill_value);
        let all = read_f32(f, name, m.int, &[], &[]);
        assert_same_cells(&all, &m.cells, &format!("{ctx}: whole array"));
        assert_eq!(
            f.array_stats(name).expect("stats"),
            m.stats(),
            "{ctx}: stats"
        );
        let meta = f.array_meta(name).expect("meta");
        assert_eq!(meta.stats, m.stats(), "{ctx}: meta stats");
        assert_eq!(
            meta.n_chunks_stored,
            m.written.len() as u64,
            "{ctx}: stored chunks"
        );
        let raw: u64 = m
            .written
            .iter()
            .map(|&c| chunk_cells(&m.shape, &m.chunk, c) * 4)
            .sum();
        assert_eq!(meta.raw_bytes, raw, "{ctx}: raw bytes");
    }
}

/// Cells of chunk `idx` (row-major over the chunk grid, edge chunks clipped).
fn chunk_cells(shape: &[u64], chunk: &[u64], idx: u64) -> u64 {
    let mut rem = idx;
    let mut cells = 1;
    for a in (0..shape.len()).rev() {
        let grid = shape[a].div_ceil(chunk[a]);
        let origin = (rem % grid) * chunk[a];
        rem /= grid;
        cells *= chunk[a].min(shape[a] - origin);
    }
    cells
}

fn values(int: bool, seed: u64, n: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|_| {
            let x = r.below(8);
            if x == 7 && !int {
                f32::NAN
            } else {
                (x % 7) as f32 - 3.0
            }
        })
        .collect()
}

/// Configuration of one run: codec, pending budget (0 spills every write) and
/// whether the shared block cache is tiny (so it evicts all the time).
#[derive(Clone, Debug)]
struct RunConfig {
    codec: usize,
    budget: u64,
    tiny_cache: bool,
}

fn run(cfg: &RunConfig, ops: &[Op]) {
    let codecs = [Codec::None, Codec::Lz4, Codec::Zstd { level: 1 }];
    let opts = ArrayFileOptions {
        compression: Compression {
            codec: codecs[cfg.codec],
            shuffle: cfg.codec != 0,
        },
        pending_budget_bytes: cfg.budget,
    };
    let storage = Arc::new(MemoryStorage::new());
    let dir = Path::new(MEM_DIR);
    let cache = Arc::new(if cfg.tiny_cache {
        DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 200,
            decoded_capacity_bytes: 300,
        })
    } else {
        DeltaCache::default()
    });
    let mut f = ArrayFile::create(storage.clone(), dir, opts, cache.clone()).expect("create");
    let mut live = Model::new();
    let mut committed = Model::new();
    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} ({op:?})");
        match op {
            Op::Define {
                name,
                int,
                shape,
                chunk_seeds,
                fill,
            } => {
                let chunk: Vec<u64> = shape
                    .iter()
                    .zip(chunk_seeds)
                    .map(|(&e, &s)| 1 + s % (e + 1))
                    .collect();
                let fill = fill.map(|v| {
                    if v == 4 && !int {
                        f32::NAN
                    } else {
                        f32::from(v)
                    }
                });
                let m = MArr {
                    int: *int,
                    shape: shape.clone(),
                    chunk: chunk.clone(),
                    fill,
                    cells: vec![fill.unwrap_or(0.0); shape.iter().product::<u64>() as usize],
                    written: BTreeSet::new(),
                };
                let n = NAMES[*name];
                let r = if *int {
                    f.define_array::<i32>(
                        n,
                        dims(shape.len()),
                        shape.clone(),
                        Some(chunk),
                        m.fill_value(),
                    )
                } else {
                    f.define_array::<f32>(
                        n,
                        dims(shape.len()),
                        shape.clone(),
                        Some(chunk),
                        m.fill_value(),
                    )
                };
                if live.contains_key(name) {
                    assert!(matches!(r, Err(Error::ArrayExists { .. })), "{ctx}: {r:?}");
                } else {
                    r.expect("define");
                    live.insert(*name, m);
                }
            }
            Op::Write { name, region, data } => {
                let n = NAMES[*name];
                let Some(m) = live.get_mut(name) else {
                    let r = f.write_array(n, &[], nd(&[], vec![1.0f32]).view());
                    assert!(
                        matches!(r, Err(Error::ArrayNotFound { .. })),
                        "{ctx}: {r:?}"
                    );
                    continue;
                };
                let (start, count) = region_from(&m.shape, region);
                let k: u64 = count.iter().product();
                let vals = values(m.int, *data, k);
                if m.int {
                    let v: Vec<i32> = vals.iter().map(|&x| x as i32).collect();
                    f.write_array(n, &start, nd(&count, v).view())
                        .expect("write i32");
                } else {
                    f.write_array(n, &start, nd(&count, vals.clone()).view())
                        .expect("write f32");
                }
                for (v, lin) in vals.iter().zip(region_cells(&m.shape, &start, &count)) {
                    m.cells[lin] = *v;
                    m.written.insert(chunk_of(&m.shape, &m.chunk, lin));
                }
            }
            Op::Delete { name } => {
                let r = f.delete_array(NAMES[*name]);
                if live.remove(name).is_some() {
                    r.expect("delete");
                } else {
                    assert!(
                        matches!(r, Err(Error::ArrayNotFound { .. })),
                        "{ctx}: {r:?}"
                    );
                }
            }
            Op::Flush { two_phase } => {
                let had = f.has_pending();
                let before = f.layers();
                let r = if *two_phase {
                    let p = f.write_pending().expect("write_pending");
                    p.map(|p| {
                        let id = p.id();
                        assert_eq!(p.path(), dir.join(id.as_str()));
                        f.install(p).expect("install");
                        id
                    })
                } else {
                    f.flush().expect("flush")
                };
                assert_eq!(r.is_some(), had, "{ctx}: flush result vs has_pending");
                let after = f.layers();
                match r {
                    Some(id) => {
                        assert_eq!(after.len(), before.len() + 1);
                        assert_eq!(after.last(), Some(&id));
                        assert_eq!(after[..before.len()], before[..]);
                    }
                    None => assert_eq!(after, before),
                }
                assert!(!f.has_pending());
                committed = live.clone();
                let g = ArrayFile::open(storage.clone(), dir, &after, opts, cache.clone())
                    .expect("open the flushed list");
                check(&g, &committed, &format!("{ctx}: reopened after flush"));
            }
            Op::Compact { two_phase } => {
                let before = f.layers();
                let retired = if *two_phase {
                    let p = f.compact_prepare().expect("compact_prepare");
                    f.install_compacted(p).expect("install_compacted")
                } else {
                    f.compact().expect("compact")
                };
                assert_eq!(retired, before, "{ctx}: retired layers");
                assert_eq!(f.layers().len(), 1, "{ctx}: one base after compaction");
                let g = ArrayFile::open(storage.clone(), dir, &f.layers(), opts, cache.clone())
                    .expect("open the compacted list");
                check(&g, &committed, &format!("{ctx}: reopened after compaction"));
            }
            Op::Reopen => {
                f = ArrayFile::open(storage.clone(), dir, &f.layers(), opts, cache.clone())
                    .expect("reopen");
                live = committed.clone();
            }
            Op::Read { name, region } => {
                if let Some(m) = live.get(name) {
                    let (start, count) = region_from(&m.shape, region);
                    let got = read_f32(&f, NAMES[*name], m.int, &start, &count);
                    let want: Vec<f32> = region_cells(&m.shape, &start, &count)
                        .into_iter()
                        .map(|lin| m.cells[lin])
                        .collect();
                    assert_same_cells(&got, &want, &format!("{ctx}: region read"));
                }
            }
        }
        check(&f, &live, &ctx);
    }
}

proptest! {
    #![proptest_config(proptest_config("model_sequences", 256))]

    /// Random operation sequences agree with the model after every step.
    #[test]
    fn model_sequences(
        codec in 0..3usize,
        budget in prop_oneof![Just(256u64 << 20), Just(0u64), Just(100u64)],
        tiny_cache in any::<bool>(),
        ops in prop::collection::vec(op_strategy(), 1..=40),
    ) {
        run(&RunConfig { codec, budget, tiny_cache }, &ops);
    }
}

/// A fixed sequence that exercises delete-then-redefine across every state
/// change, so it runs whatever proptest samples.
#[test]
fn model_fixed_sequence() {
    let def = |name, int, shape: Vec<u64>, fill| Op::Define {
        name,
        int,
        shape,
        chunk_seeds: vec![1, 2],
        fill,
    };
    let write = |name, data| Op::Write {
        name,
        region: vec![0, 3, 1, 5],
        data,
    };
    let ops = vec![
        def(0, false, vec![5, 4], Some(-3)),
        write(0, 1),
        def(1, true, vec![3], None),
        write(1, 2),
        Op::Flush { two_phase: false },
        Op::Delete { name: 0 },
        def(0, true, vec![4, 4], Some(0)),
        write(0, 3),
        Op::Read {
            name: 0,
            region: vec![1, 1, 2, 2],
        },
        Op::Compact { two_phase: false },
        Op::Reopen,
        def(0, true, vec![4, 4], Some(0)),
        write(0, 4),
        Op::Flush { two_phase: true },
        Op::Delete { name: 0 },
        Op::Flush { two_phase: false },
        def(0, false, vec![5, 4], Some(4)),
        Op::Flush { two_phase: true },
        Op::Compact { two_phase: true },
        write(0, 5),
        Op::Reopen,
        Op::Delete { name: 1 },
        def(1, false, vec![], None),
        write(1, 6),
        Op::Flush { two_phase: false },
        Op::Compact { two_phase: false },
        Op::Reopen,
    ];
    for codec in 0..3 {
        for budget in [0, 100, 256 << 20] {
            for tiny_cache in [false, true] {
                run(
                    &RunConfig {
                        codec,
                        budget,
                        tiny_cache,
                    },
                    &ops,
                );
            }
        }
    }
}
