//! Granularity benchmark: one variable stored for 10,000 small datasets
//! (temperature profiles of 1,000 levels, `f32`, 4 KB each) in one layer file on
//! [`LocalStorage`] in a temporary directory.
//!
//! ATLAS stores one compressed block per chunk. To inform that choice this
//! bench compares packing `G` profiles into one block, simulated with one array
//! of shape `[G, 1000]` (one chunk) per group, for `G` = 1 (per-chunk, 1-D
//! arrays of shape `[1000]`), 16 and 64:
//!
//! - `one_warm`: read one profile by name; the block's stored bytes are in the
//!   [`DeltaCache`] raw level, the decoded level has capacity 0, so each read
//!   checks the CRC and decodes the whole block (`G` × 4 KB).
//! - `one_cold`: read one profile (a different one each iteration) through a
//!   cache with both levels of capacity 0: a `pread` (page cache hot) plus a
//!   decode, exactly what a fresh [`DeltaCache`] does for its first read.
//! - `open_read_one`: a fresh [`DeltaCache`] and a freshly opened [`ArrayFile`]
//!   each iteration (the footer of every array is parsed) plus one read: the
//!   latency a new process pays.
//! - `scan`: read every array in order (GB/s of raw bytes), through the
//!   zero-capacity cache so each block is read from the page cache and decoded.
//!
//! Ratios (raw / stored block bytes, and raw / whole file, which includes the
//! per-array footer records) are printed once per configuration on stderr. Each
//! configuration is run for LZ4 + shuffle and Zstd-1 + shuffle. Fixtures are
//! built lazily, once, only for the benches that run, and removed afterwards.
//!
//! Run: `cargo bench -p array-format --bench granularity` (`-- --test` runs
//! every case once as a smoke test).

#![allow(
    missing_docs,
    reason = "`criterion_group!` generates an undocumented public function"
)]

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use array_format::{
    ArrayFile, ArrayFileOptions, Codec, Compression, DeltaCache, DeltaCacheConfig, LayerId,
    LocalStorage,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{s, Array2};

/// Number of profiles (datasets).
const N_PROFILES: usize = 10_000;
/// Levels per profile: 1,000 × 4 B = 4 KB.
const LEVELS: usize = 1_000;
/// Profiles per block compared.
const GROUP_SIZES: [usize; 3] = [1, 16, 64];

/// `SplitMix64`: a tiny deterministic generator for the profile parameters and noise.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 10,000 ocean temperature profiles (rows) of 1,000 levels: a warm mixed layer
/// over a thermocline decaying to 2 °C at depth, parameters varying from cast to
/// cast, small instrument noise, rounded to 0.001 °C.
fn profiles() -> Array2<f32> {
    let mut rng = SplitMix(0x9_F1E5_0001);
    let mut out = Array2::<f32>::zeros((N_PROFILES, LEVELS));
    for mut row in out.rows_mut() {
        let surface = 4.0 + 26.0 * rng.next_f64();
        let deep = 1.5 + 1.5 * rng.next_f64();
        let mixed = 10.0 + 90.0 * rng.next_f64();
        let scale = 80.0 + 400.0 * rng.next_f64();
        for (k, cell) in row.iter_mut().enumerate() {
            let depth = k as f64 * 2.0; // 2 m levels: 0 .. 2000 m
            let t = if depth < mixed {
                surface
            } else {
                deep + (surface - deep) * (-(depth - mixed) / scale).exp()
            };
            let noise = (rng.next_f64() - 0.5) * 0.01;
            *cell = (((t + noise).clamp(1.0, 31.0) * 1000.0).round() / 1000.0) as f32;
        }
    }
    out
}

/// One layer file holding every profile, `group` profiles per array (one block each).
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    layers: Vec<LayerId>,
    options: ArrayFileOptions,
    group: usize,
    /// Array names, in file order.
    names: Vec<String>,
    /// Profiles held by each array.
    rows: Vec<usize>,
    /// Reader whose raw level holds every block and whose decoded level is empty.
    warm: ArrayFile,
    /// Reader whose cache has no capacity at all.
    cold: ArrayFile,
}

fn cache(raw_capacity_bytes: u64) -> Arc<DeltaCache> {
    Arc::new(DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes,
        decoded_capacity_bytes: 0,
    }))
}

impl Fixture {
    fn build(data: &Array2<f32>, compression: Compression, group: usize, label: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("var");
        let options = ArrayFileOptions {
            compression,
            ..ArrayFileOptions::default()
        };
        let storage = Arc::new(LocalStorage::new());
        let mut f =
            ArrayFile::create(storage.clone(), &dir, options, cache(0)).expect("create file");
        let (mut names, mut rows) = (Vec::new(), Vec::new());
        for (i, first) in (0..N_PROFILES).step_by(group).enumerate() {
            let n = group.min(N_PROFILES - first);
            let name = format!("temp_{i:05}");
            let block = data.slice(s![first..first + n, ..]);
            if group == 1 {
                f.define_array::<f32>(&name, vec!["level".into()], vec![LEVELS as u64], None, None)
                    .expect("define");
                f.write_array(&name, &[], block.row(0).into_dyn())
                    .expect("write");
            } else {
                f.define_array::<f32>(
                    &name,
                    vec!["profile".into(), "level".into()],
                    vec![n as u64, LEVELS as u64],
                    None,
                    None,
                )
                .expect("define");
                f.write_array(&name, &[], block.into_dyn()).expect("write");
            }
            names.push(name);
            rows.push(n);
        }
        f.flush().expect("flush").expect("something to flush");
        let layers = f.layers();
        let raw = (N_PROFILES * LEVELS * 4) as u64;
        let blocks: u64 = names
            .iter()
            .map(|n| f.array_meta(n).expect("meta").stored_bytes)
            .sum();
        let file_bytes: u64 = layers
            .iter()
            .map(|l| {
                std::fs::metadata(dir.join(l.as_str()))
                    .expect("layer file")
                    .len()
            })
            .sum();
        eprintln!(
            "granularity/{label}/g{group}: {} arrays; ratio {:.3} on blocks ({blocks} B), \
             {:.3} on the file ({file_bytes} B, {:.0} B of metadata per array)",
            names.len(),
            raw as f64 / blocks as f64,
            raw as f64 / file_bytes as f64,
            (file_bytes - blocks) as f64 / names.len() as f64,
        );
        drop(f);
        let open = |c| ArrayFile::open(storage.clone(), &dir, &layers, options, c).expect("open");
        let warm = open(cache(1 << 30));
        let cold = open(cache(0));
        Fixture {
            _tmp: tmp,
            dir,
            layers,
            options,
            group,
            names,
            rows,
            warm,
            cold,
        }
    }

    /// Reads profile `p` through `f`: the whole array for `group` 1, else one row
    /// of its group array (which decodes the whole group's block).
    fn read_profile(&self, f: &ArrayFile, p: usize) -> ndarray::ArrayD<f32> {
        let name = &self.names[p / self.group];
        if self.group == 1 {
            f.read_array::<f32>(name, &[], &[]).expect("read")
        } else {
            f.read_array::<f32>(name, &[(p % self.group) as u64, 0], &[1, LEVELS as u64])
                .expect("read")
        }
    }

    fn scan(&self) -> usize {
        let mut cells = 0;
        for name in &self.names {
            cells += black_box(self.cold.read_array::<f32>(name, &[], &[]).expect("read")).len();
        }
        cells
    }
}

fn bench_granularity(c: &mut Criterion) {
    let data: OnceCell<Array2<f32>> = OnceCell::new();
    let codecs = [
        ("lz4+shuffle", Codec::Lz4),
        ("zstd1+shuffle", Codec::Zstd { level: 1 }),
    ];
    for (label, codec) in codecs {
        let compression = Compression {
            codec,
            shuffle: true,
        };
        for group_size in GROUP_SIZES {
            let fixture: OnceCell<Fixture> = OnceCell::new();
            let fx = || {
                fixture.get_or_init(|| {
                    let d = data.get_or_init(profiles);
                    let fx = Fixture::build(d, compression, group_size, label);
                    // Sanity: a profile reads back as written.
                    let p = 4321;
                    let got = fx.read_profile(&fx.cold, p);
                    assert_eq!(
                        got.iter().copied().collect::<Vec<_>>(),
                        d.row(p).to_vec(),
                        "profile {p} round trip"
                    );
                    fx
                })
            };
            let mut group = c.benchmark_group(format!("granularity/{label}/g{group_size}"));
            group.bench_function("one_warm", |b| {
                let fx = fx();
                let p = 4321;
                b.iter(|| black_box(fx.read_profile(&fx.warm, black_box(p))));
            });
            group.bench_function("one_cold", |b| {
                let fx = fx();
                let mut p = 0usize;
                b.iter(|| {
                    p = (p + 7919) % N_PROFILES;
                    black_box(fx.read_profile(&fx.cold, p))
                });
            });
            group.bench_function("open_read_one", |b| {
                let fx = fx();
                let mut p = 0usize;
                b.iter(|| {
                    p = (p + 7919) % N_PROFILES;
                    let f = ArrayFile::open(
                        Arc::new(LocalStorage::new()),
                        Path::new(&fx.dir),
                        &fx.layers,
                        fx.options,
                        Arc::new(DeltaCache::default()),
                    )
                    .expect("open");
                    black_box(fx.read_profile(&f, p))
                });
            });
            group.throughput(Throughput::Bytes((N_PROFILES * LEVELS * 4) as u64));
            group.bench_function("scan", |b| {
                let fx = fx();
                assert_eq!(fx.rows.iter().sum::<usize>(), N_PROFILES);
                b.iter(|| assert_eq!(fx.scan(), N_PROFILES * LEVELS));
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_granularity
}
criterion_main!(benches);
