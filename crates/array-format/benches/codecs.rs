//! Codec benchmark: encode and decode throughput (GB/s of raw bytes) and the
//! compression ratio of every codec, with and without the byte-shuffle filter,
//! on a realistic smooth float32 field.
//!
//! The codec functions are crate-private, so everything goes through the public
//! API, as a store would use it:
//!
//! - **encode**: a fresh [`ArrayFile`] on [`MemoryStorage`], one
//!   `write_array` of the whole field (chunks are encoded there) and a `flush`
//!   (the layer file is written to memory). This includes the cell copy, the
//!   per-chunk statistics and the CRC-32C that every real write pays.
//! - **decode**: `read_array` of the whole field from a flushed file whose
//!   [`DeltaCache`] keeps stored blocks (so no storage read) but has a decoded
//!   level of capacity 0, so every read checks the CRC and decodes every chunk.
//!
//! The field is 512 × 1024 `f32` (2 MiB), chunked 64 × 1024 (256 KiB, 8 chunks):
//! a sea-surface-temperature-like field, 2–30 °C, smooth in latitude with
//! longitudinal eddies and small deterministic noise, rounded to 0.001 °C like
//! instrument data. The ratio (raw / stored block bytes) is printed once per
//! configuration on stderr.
//!
//! `codec_only/*` is a baseline: LZ4 and Zstd-1 alone (called directly, reused
//! buffers and context) on the same byte-shuffled data, in 256 KiB and 4 KiB
//! blocks, so the cost the read path adds on top of the codec is visible.
//!
//! `profile_encode/*` encodes 1,000 small profiles (50 `f32` cells each, one
//! chunk, as W1 and an Argo import write them) with [`EncodedArray::encode`]:
//! without compression, the per-chunk statistics scan, the CRC and the
//! buffers; with LZ4 and the shuffle, what W1 pays per array before any
//! lock.
//!
//! Run: `cargo bench -p array-format --bench codecs` (add `--features blosc2`
//! for Blosc2; `-- --test` runs every case once as a smoke test).

#![allow(
    missing_docs,
    reason = "`criterion_group!` generates an undocumented public function"
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use array_format::{
    ArrayFile, ArrayFileOptions, ArraySchema, Codec, Compression, DType, DeltaCache,
    DeltaCacheConfig, EncodedArray, MemoryStorage,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ndarray::Array2;

/// Field rows (latitude).
const ROWS: usize = 512;
/// Field columns (longitude).
const COLS: usize = 1024;
/// Chunk rows: 64 × 1024 × 4 B = 256 KiB per chunk.
const CHUNK_ROWS: u64 = 64;
/// Name of the benchmarked array.
const NAME: &str = "sst";

/// `SplitMix64`: a tiny deterministic generator for the noise.
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

/// The smooth ocean-temperature-like field, deterministic.
fn ocean_field() -> Array2<f32> {
    let mut rng = SplitMix(0x0A71_A5F1_E1D5);
    Array2::from_shape_fn((ROWS, COLS), |(r, c)| {
        let lat = (-80.0 + 160.0 * r as f64 / (ROWS - 1) as f64).to_radians();
        let lon = (360.0 * c as f64 / COLS as f64).to_radians();
        // Warm equator, cold poles: 2 °C .. 30 °C.
        let base = 2.0 + 28.0 * lat.cos().powi(2);
        // Basin-scale gyres and mesoscale eddies, strongest at mid latitudes.
        let gyres = 1.5 * (2.0 * lon + 3.0 * lat).sin() * (2.0 * lat).sin().abs();
        let eddies = 0.4 * (17.0 * lon).sin() * (23.0 * lat).cos();
        let noise = (rng.next_f64() - 0.5) * 0.02;
        let t = (base + gyres + eddies + noise).clamp(2.0, 30.0);
        ((t * 1000.0).round() / 1000.0) as f32
    })
}

/// Every benchmarked configuration, labelled.
fn configurations() -> Vec<(String, Compression)> {
    #[allow(unused_mut)] // extended only with the `blosc2` feature
    let mut codecs = vec![
        Codec::None,
        Codec::Lz4,
        Codec::Zstd { level: 1 },
        Codec::Zstd { level: 3 },
    ];
    #[cfg(feature = "blosc2")]
    codecs.push(Codec::Blosc2 { level: 5 });
    let mut out = Vec::new();
    for codec in codecs {
        for shuffle in [false, true] {
            let label = format!("{codec}{}", if shuffle { "+shuffle" } else { "" });
            out.push((label, Compression { codec, shuffle }));
        }
    }
    out
}

fn options(compression: Compression) -> ArrayFileOptions {
    ArrayFileOptions {
        compression,
        ..ArrayFileOptions::default()
    }
}

/// A new in-memory file with the array defined (nothing written yet).
fn defined_file(compression: Compression, cache: Arc<DeltaCache>) -> ArrayFile {
    let mut f = ArrayFile::create(
        Arc::new(MemoryStorage::new()),
        Path::new("/bench"),
        options(compression),
        cache,
    )
    .expect("create");
    f.define_array::<f32>(
        NAME,
        vec!["lat".into(), "lon".into()],
        vec![ROWS as u64, COLS as u64],
        Some(vec![CHUNK_ROWS, COLS as u64]),
        None,
    )
    .expect("define");
    f
}

/// The encode path: write every chunk and flush the layer.
fn write_and_flush(f: &mut ArrayFile, field: &Array2<f32>) {
    f.write_array(NAME, &[], field.view().into_dyn())
        .expect("write");
    f.flush().expect("flush").expect("something to flush");
}

fn bench_codecs(c: &mut Criterion) {
    let field = ocean_field();
    let raw_bytes = (ROWS * COLS * std::mem::size_of::<f32>()) as u64;
    let mut group = c.benchmark_group("codecs");
    group.throughput(Throughput::Bytes(raw_bytes));
    for (label, compression) in configurations() {
        // Decode fixture: stored blocks cached, decoded level of capacity 0.
        let cache = Arc::new(DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 1 << 30,
            decoded_capacity_bytes: 0,
        }));
        let mut f = defined_file(compression, cache);
        write_and_flush(&mut f, &field);
        let meta = f.array_meta(NAME).expect("meta");
        assert_eq!(meta.raw_bytes, raw_bytes);
        let back = f.read_array::<f32>(NAME, &[], &[]).expect("read");
        assert_eq!(back, field.clone().into_dyn(), "{label} round trip");
        eprintln!(
            "codecs/{label}: ratio {:.3} (raw {} B, stored {} B in {} chunks)",
            raw_bytes as f64 / meta.stored_bytes as f64,
            raw_bytes,
            meta.stored_bytes,
            meta.n_chunks_stored,
        );

        group.bench_function(format!("encode/{label}"), |b| {
            b.iter_batched(
                || defined_file(compression, Arc::new(DeltaCache::default())),
                |mut f| {
                    write_and_flush(&mut f, black_box(&field));
                    f
                },
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("decode/{label}"), |b| {
            b.iter(|| black_box(f.read_array::<f32>(NAME, &[], &[]).expect("read")));
        });
    }
    group.finish();
}

/// Byte shuffle of 4-byte cells (the same layout as the crate's filter).
fn shuffle4(raw: &[u8]) -> Vec<u8> {
    let n = raw.len() / 4;
    let mut out = vec![0u8; raw.len()];
    for (i, cell) in raw.chunks_exact(4).enumerate() {
        for (b, &byte) in cell.iter().enumerate() {
            out[b * n + i] = byte;
        }
    }
    out
}

/// Baseline: the codecs alone (no CRC, unshuffle, cell decoding or copies; reused
/// buffers and a reused zstd context) on the same shuffled bytes, in blocks of
/// 256 KiB (one chunk) and 4 KiB (one row, the size of a small per-dataset array).
/// The gap to `codecs/decode/*+shuffle` is what the read path adds. LZ4 is
/// decoded twice: by `lz4_flex` (`decode/lz4`) and by the decoder ATLAS reads
/// with (`decode/lz4-atlas`).
fn bench_codec_only(c: &mut Criterion) {
    let field = ocean_field();
    let raw: Vec<u8> = field.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut group = c.benchmark_group("codec_only");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    for (label, block_bytes) in [
        ("256KiB", CHUNK_ROWS as usize * COLS * 4),
        ("4KiB", COLS * 4),
    ] {
        let shuffled: Vec<Vec<u8>> = raw.chunks(block_bytes).map(shuffle4).collect();
        let lz4: Vec<Vec<u8>> = shuffled
            .iter()
            .map(|b| lz4_flex::block::compress(b))
            .collect();
        let zstd1: Vec<Vec<u8>> = shuffled
            .iter()
            .map(|b| zstd::bulk::compress(b, 1).expect("zstd"))
            .collect();
        let mut out = vec![0u8; block_bytes];
        group.bench_function(format!("decode/lz4/{label}"), |b| {
            b.iter(|| {
                for block in &lz4 {
                    let n = lz4_flex::block::decompress_into(block, &mut out).expect("lz4");
                    black_box(&out[..n]);
                }
            });
        });
        group.bench_function(format!("decode/lz4-atlas/{label}"), |b| {
            b.iter(|| {
                for block in &lz4 {
                    let n = array_format::lz4_decompress_into(block, &mut out).expect("lz4");
                    black_box(&out[..n]);
                }
            });
        });
        let mut dctx = zstd::bulk::Decompressor::new().expect("zstd context");
        let mut out = Vec::with_capacity(block_bytes);
        group.bench_function(format!("decode/zstd:1/{label}"), |b| {
            b.iter(|| {
                for block in &zstd1 {
                    out.clear();
                    dctx.decompress_to_buffer(block, &mut out).expect("zstd");
                    black_box(&out);
                }
            });
        });
    }
    group.finish();
}

/// Small profiles encoded one by one: the cost per array that does not
/// scale with its size (statistics, CRC, buffers) beside the codec's.
fn bench_profile_encode(c: &mut Criterion) {
    const CELLS: usize = 50;
    const PROFILES: usize = 1000;
    let schema = Arc::new(
        ArraySchema::new(
            "TEMP",
            DType::Float32,
            vec!["N_LEVELS".into()],
            vec![CELLS as u64],
            None,
            None,
        )
        .expect("schema"),
    );
    let mut rng = SplitMix(0x0000_500F_11E5);
    let profiles: Vec<ndarray::ArrayD<f32>> = (0..PROFILES)
        .map(|_| {
            let surface = 5.0 + 25.0 * rng.next_f64();
            let cells: Vec<f32> = (0..CELLS)
                .map(|k| {
                    let t = 2.0 + (surface - 2.0) * (-(k as f64) / 12.0).exp();
                    ((t * 1000.0).round() / 1000.0) as f32
                })
                .collect();
            ndarray::ArrayD::from_shape_vec(vec![CELLS], cells).expect("shape")
        })
        .collect();
    let mut group = c.benchmark_group("profile_encode");
    group.throughput(Throughput::Bytes((PROFILES * CELLS * 4) as u64));
    for (label, compression) in [
        (
            "none",
            Compression {
                codec: Codec::None,
                shuffle: false,
            },
        ),
        (
            "lz4+shuffle",
            Compression {
                codec: Codec::Lz4,
                shuffle: true,
            },
        ),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                for p in &profiles {
                    let enc =
                        EncodedArray::encode("TEMP", Arc::clone(&schema), compression, p.view())
                            .expect("encode");
                    black_box(enc);
                }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_codecs, bench_codec_only, bench_profile_encode
}
criterion_main!(benches);
