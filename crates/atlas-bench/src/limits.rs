//! The physical limits of this machine, measured in the same run as the
//! workloads: memcpy, a page-cache read, and the codecs (LZ4 and Zstd-1, both
//! after a byte shuffle) on the same `f32` data the workloads store.
//!
//! Codecs are measured twice: on the 200-byte profile chunks that W1/W3 store
//! (one block per chunk, as ATLAS stores them, so the per-block cost of the codec
//! itself is part of the limit) and on 256 KiB grid chunks (the streaming rate).
//! Encoders and decoders reuse their buffers and contexts: the limit is what the
//! codec can do, not what an engine's allocations cost. LZ4 encodes with
//! `lz4_flex` and decodes with ATLAS's own decoder
//! ([`array_format::lz4_decompress_into`]), the faster of the two (`lz4_flex`'s
//! safe decoder copies overlapping matches a byte at a time): a limit measured
//! with the slower one would be no limit for ATLAS's reads.

use std::io::{Read, Write};
use std::sync::Mutex;

use anyhow::{ensure, Result};
use serde_json::{json, Value};

use crate::data::{grid, profile};
use crate::workloads::{ARRAYS, LEVELS};
use crate::Timing;

/// A rate in bytes per second: the median run and the spread.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Median.
    pub median: f64,
    /// Slowest run.
    pub min: f64,
    /// Fastest run.
    pub max: f64,
}

impl Rate {
    /// `bytes` processed per run, timed by `t`.
    pub fn of(bytes: f64, t: &Timing) -> Rate {
        Rate {
            median: bytes / t.median.as_secs_f64(),
            min: bytes / t.max.as_secs_f64(),
            max: bytes / t.min.as_secs_f64(),
        }
    }

    /// `11.2 GB/s (10.9–11.4)`.
    pub fn show(&self) -> String {
        format!(
            "{} ({:.2}–{:.2})",
            gbs(self.median),
            self.min / 1e9,
            self.max / 1e9
        )
    }

    /// As JSON bytes per second.
    pub fn json(&self) -> Value {
        json!({"median_bytes_s": self.median, "min_bytes_s": self.min, "max_bytes_s": self.max})
    }
}

/// `1.23 GB/s` (or MB/s below 1 GB/s).
pub fn gbs(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e9 {
        format!("{:.2} GB/s", bytes_per_s / 1e9)
    } else {
        format!("{:.0} MB/s", bytes_per_s / 1e6)
    }
}

/// Codec rates over raw bytes.
#[derive(Clone, Copy, Debug)]
pub struct CodecRates {
    /// Encoding (shuffle + compress).
    pub encode: Rate,
    /// Decoding (decompress + unshuffle).
    pub decode: Rate,
    /// Raw bytes / stored bytes.
    pub ratio: f64,
}

/// Everything measured.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// One thread copying a 256 MiB buffer.
    pub memcpy: Rate,
    /// Reading a 1 GiB file that is in the page cache.
    pub page_cache: Rate,
    /// LZ4 + shuffle on 200-byte profile chunks.
    pub lz4_small: CodecRates,
    /// Zstd-1 + shuffle on 200-byte profile chunks.
    pub zstd_small: CodecRates,
    /// LZ4 + shuffle on 256 KiB grid chunks.
    pub lz4_large: CodecRates,
    /// Zstd-1 + shuffle on 256 KiB grid chunks.
    pub zstd_large: CodecRates,
    /// The byte shuffle alone (encode) and its inverse (decode), 256 KiB chunks.
    pub shuffle_large: CodecRates,
}

static LIMITS: Mutex<Option<Limits>> = Mutex::new(None);

/// The limits, measured on first use and remembered for the rest of the run.
pub fn get() -> Result<Limits> {
    let mut g = LIMITS.lock().expect("limits lock");
    if let Some(l) = *g {
        return Ok(l);
    }
    eprintln!("   (measuring the physical limits: memcpy, page cache, codecs)");
    let l = Limits {
        memcpy: memcpy()?,
        page_cache: page_cache()?,
        lz4_small: codec(&small_blocks(), Codec::Lz4)?,
        zstd_small: codec(&small_blocks(), Codec::Zstd)?,
        lz4_large: codec(&large_blocks(), Codec::Lz4)?,
        zstd_large: codec(&large_blocks(), Codec::Zstd)?,
        shuffle_large: shuffle_only(&large_blocks())?,
    };
    *g = Some(l);
    Ok(l)
}

/// The limits if they were measured in this run.
pub fn measured() -> Option<Limits> {
    *LIMITS.lock().expect("limits lock")
}

#[allow(clippy::unused_async)] // every workload has the same async signature
/// The `limits` workload: measure (once) and print.
pub async fn workload(_quick: bool) -> Result<Value> {
    let l = get()?;
    println!("{:<44} {:>28} {:>28}", "limit", "rate (min–max)", "");
    println!(
        "{:<44} {:>28}",
        "memcpy, 256 MiB, one thread",
        l.memcpy.show()
    );
    println!(
        "{:<44} {:>28}",
        "page-cache read, 1 GiB file, 4 MiB reads",
        l.page_cache.show()
    );
    println!(
        "{:<44} {:>28} {:>28}",
        "codec (raw bytes/s)", "encode", "decode"
    );
    for (name, c) in [
        ("lz4 + shuffle, 200 B profile chunks", l.lz4_small),
        ("zstd-1 + shuffle, 200 B profile chunks", l.zstd_small),
        ("lz4 + shuffle, 256 KiB grid chunks", l.lz4_large),
        ("zstd-1 + shuffle, 256 KiB grid chunks", l.zstd_large),
        ("byte shuffle alone, 256 KiB grid chunks", l.shuffle_large),
    ] {
        println!(
            "{:<44} {:>28} {:>28}   ratio {:.2}",
            name,
            c.encode.show(),
            c.decode.show(),
            c.ratio
        );
    }
    Ok(json(&l))
}

/// The limits as JSON.
pub fn json(l: &Limits) -> Value {
    let c = |c: &CodecRates| json!({"encode": c.encode.json(), "decode": c.decode.json(), "ratio": c.ratio});
    json!({
        "memcpy": l.memcpy.json(),
        "page_cache_read": l.page_cache.json(),
        "lz4_shuffle_200B": c(&l.lz4_small),
        "zstd1_shuffle_200B": c(&l.zstd_small),
        "lz4_shuffle_256KiB": c(&l.lz4_large),
        "zstd1_shuffle_256KiB": c(&l.zstd_large),
        "shuffle_only_256KiB": c(&l.shuffle_large),
    })
}

fn memcpy() -> Result<Rate> {
    const N: usize = 256 << 20;
    let src: Vec<u8> = (0..N).map(|i| (i * 7 + (i >> 13)) as u8).collect();
    let mut dst = vec![1u8; N];
    let t = Timing::measure(5, true, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        Ok(())
    })?;
    ensure!(dst == src, "memcpy");
    Ok(Rate::of(N as f64, &t))
}

fn page_cache() -> Result<Rate> {
    const N: usize = 1 << 30;
    const BUF: usize = 4 << 20;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pagecache.bin");
    let block: Vec<u8> = (0..BUF).map(|i| (i * 31 + (i >> 11)) as u8).collect();
    {
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..N / BUF {
            f.write_all(&block)?;
        }
    }
    let mut buf = vec![0u8; BUF];
    // The warm-up run is the first read; the timed runs read it again from the cache.
    let t = Timing::measure(3, true, || {
        let mut f = std::fs::File::open(&path)?;
        let mut total = 0usize;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        ensure!(total == N, "short read");
        Ok(())
    })?;
    ensure!(buf == block, "page-cache data");
    Ok(Rate::of(N as f64, &t))
}

/// The raw bytes of every 200-byte profile chunk of a 10,000-dataset W1 store.
fn small_blocks() -> Vec<Vec<u8>> {
    (0..10_000u64)
        .flat_map(|i| (0..ARRAYS.len() as u64).map(move |k| (i, k)))
        .map(|(i, k)| f32_bytes(&profile(i * 3 + k, 0, LEVELS)))
        .collect()
}

/// 16 grid chunks of 256 × 256 `f32` (256 KiB each).
fn large_blocks() -> Vec<Vec<u8>> {
    (0..16).map(|i| f32_bytes(&grid(i, 256, 256))).collect()
}

/// Little-endian bytes of `v`.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `f32`s from little-endian bytes.
pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Cells per tile of the shuffle: both sides of the transposition stay in L1.
const TILE: usize = 1024;

/// Byte shuffle of 4-byte cells: byte `b` of cell `i` moves to `b * n + i`.
pub fn shuffle4(raw: &[u8], out: &mut [u8]) {
    let n = raw.len() / 4;
    for start in (0..n).step_by(TILE) {
        let end = (start + TILE).min(n);
        let cells = &raw[start * 4..end * 4];
        for b in 0..4 {
            for (d, c) in out[b * n + start..b * n + end]
                .iter_mut()
                .zip(cells.chunks_exact(4))
            {
                *d = c[b];
            }
        }
    }
}

/// Inverse of [`shuffle4`].
pub fn unshuffle4(shuffled: &[u8], out: &mut [u8]) {
    let n = shuffled.len() / 4;
    for start in (0..n).step_by(TILE) {
        let end = (start + TILE).min(n);
        let p: [&[u8]; 4] = std::array::from_fn(|b| &shuffled[b * n + start..b * n + end]);
        for (i, c) in out[start * 4..end * 4].chunks_exact_mut(4).enumerate() {
            c[0] = p[0][i];
            c[1] = p[1][i];
            c[2] = p[2][i];
            c[3] = p[3][i];
        }
    }
}

/// LZ4 + shuffle of one buffer of `f32` bytes (the files baseline's encoding).
pub fn lz4_shuffle_encode(raw: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; raw.len()];
    shuffle4(raw, &mut s);
    lz4_flex::block::compress(&s)
}

/// Inverse of [`lz4_shuffle_encode`] for `raw_len` raw bytes (with ATLAS's
/// LZ4 decoder, as the limits: the files baseline differs from ATLAS in its
/// layout, not its codec).
pub fn lz4_shuffle_decode(stored: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    let mut s = vec![0u8; raw_len];
    let n = lz4_decode(stored, &mut s)?;
    ensure!(n == raw_len, "lz4: {n} bytes, expected {raw_len}");
    let mut out = vec![0u8; raw_len];
    unshuffle4(&s, &mut out);
    Ok(out)
}

/// An LZ4 block decoded into `out` by ATLAS's decoder: the decoded length.
fn lz4_decode(stored: &[u8], out: &mut [u8]) -> Result<usize> {
    array_format::lz4_decompress_into(stored, out)
        .ok_or_else(|| anyhow::anyhow!("lz4: damaged block"))
}

/// The byte shuffle and its inverse alone, between preallocated buffers.
fn shuffle_only(blocks: &[Vec<u8>]) -> Result<CodecRates> {
    let raw: usize = blocks.iter().map(Vec::len).sum();
    let mut shuffled: Vec<Vec<u8>> = blocks.iter().map(|b| vec![0u8; b.len()]).collect();
    let encode = Timing::measure(5, true, || {
        for (b, s) in blocks.iter().zip(shuffled.iter_mut()) {
            shuffle4(b, s);
        }
        Ok(())
    })?;
    let mut out: Vec<Vec<u8>> = blocks.iter().map(|b| vec![0u8; b.len()]).collect();
    let decode = Timing::measure(5, true, || {
        for (s, o) in shuffled.iter().zip(out.iter_mut()) {
            unshuffle4(s, o);
        }
        Ok(())
    })?;
    ensure!(out == blocks, "shuffle round trip");
    Ok(CodecRates {
        encode: Rate::of(raw as f64, &encode),
        decode: Rate::of(raw as f64, &decode),
        ratio: 1.0,
    })
}

#[derive(Clone, Copy)]
enum Codec {
    Lz4,
    Zstd,
}

fn codec(blocks: &[Vec<u8>], codec: Codec) -> Result<CodecRates> {
    let raw: usize = blocks.iter().map(Vec::len).sum();
    let max_len = blocks.iter().map(Vec::len).max().unwrap_or(0);
    let mut shuffled = vec![0u8; max_len];
    let cap = lz4_flex::block::get_maximum_output_size(max_len)
        .max(zstd::zstd_safe::compress_bound(max_len));
    let mut out = vec![0u8; cap];
    let mut comp = zstd::bulk::Compressor::new(1)?;
    let mut decomp = zstd::bulk::Decompressor::new()?;
    let mut stored: Vec<Vec<u8>> = Vec::with_capacity(blocks.len());
    let mut encode_one = |b: &[u8], out: &mut [u8]| -> Result<usize> {
        shuffle4(b, &mut shuffled[..b.len()]);
        Ok(match codec {
            Codec::Lz4 => lz4_flex::block::compress_into(&shuffled[..b.len()], out)?,
            Codec::Zstd => comp.compress_to_buffer(&shuffled[..b.len()], out)?,
        })
    };
    for b in blocks {
        let n = encode_one(b, &mut out)?;
        stored.push(out[..n].to_vec());
    }
    let encode = Timing::measure(5, true, || {
        for b in blocks {
            std::hint::black_box(encode_one(b, &mut out)?);
        }
        Ok(())
    })?;
    let stored_bytes: usize = stored.iter().map(Vec::len).sum();
    let mut plain = vec![0u8; max_len];
    let mut decoded = vec![0u8; raw];
    let decode = Timing::measure(5, true, || {
        let mut at = 0;
        for (s, b) in stored.iter().zip(blocks) {
            let len = b.len();
            let n = match codec {
                Codec::Lz4 => lz4_decode(s, &mut plain[..len])?,
                Codec::Zstd => decomp.decompress_to_buffer(s, &mut plain[..len])?,
            };
            ensure!(n == len, "short block");
            unshuffle4(&plain[..len], &mut decoded[at..at + len]);
            at += len;
        }
        Ok(())
    })?;
    // Checked outside the timed runs: the last decode reproduced the input.
    ensure!(decoded == blocks.concat(), "codec round trip");
    Ok(CodecRates {
        encode: Rate::of(raw as f64, &encode),
        decode: Rate::of(raw as f64, &decode),
        ratio: raw as f64 / stored_bytes as f64,
    })
}
