//! # array-format
//!
//! The `.af` layer file of ATLAS: many named, chunked N-dimensional arrays in
//! one self-describing, checksummed file, and [`ArrayFile`], which stacks such
//! files as immutable delta layers with a pending in-memory layer on top.
//!
//! - Every chunk is one compressed block, so reading one small array decodes
//!   only its own bytes, while blocks are laid out in array order so a scan is one
//!   sequential pass (see `ARCHITECTURE.md` for the measurements behind this).
//! - Each block records its codec, filter, lengths, CRC-32C and statistics in
//!   the footer; a reader needs no configuration.
//! - All I/O goes through the [`Storage`] trait ([`LocalStorage`],
//!   [`MemoryStorage`] with fault injection).
//!
//! ```
//! use std::sync::Arc;
//! use array_format::{ArrayFile, ArrayFileOptions, DeltaCache, LocalStorage};
//! use ndarray::Array2;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let cache = Arc::new(DeltaCache::default());
//! let mut f = ArrayFile::create(Arc::new(LocalStorage), dir.path(), ArrayFileOptions::default(), cache)?;
//! f.define_array::<f64>("profile_1", vec!["level".into(), "x".into()], vec![3, 2], None, None)?;
//! let data = Array2::from_shape_vec((3, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
//! f.write_array("profile_1", &[0, 0], data.view().into_dyn())?;
//! f.flush()?;
//! let got = f.read_array::<f64>("profile_1", &[1, 0], &[2, 2])?;
//! assert_eq!(got.into_raw_vec_and_offset().0, vec![3.0, 4.0, 5.0, 6.0]);
//! assert_eq!(f.array_stats("profile_1")?.null_count, 0);
//! # Ok::<(), array_format::Error>(())
//! ```

mod cache;
mod codec;
mod dtype;
mod element;
mod error;
mod file;
pub mod layer;
mod schema;
mod stats;
pub mod storage;

pub use cache::{DeltaCache, DeltaCacheConfig, LevelStats};
pub use codec::{Codec, Compression};
pub use dtype::{civil_from_days, DType, FillValue, StatValue, TimestampNs};
pub use element::ArrayElement;
pub use error::{Error, ErrorKind, Result};
pub use file::{
    random_uid, ArrayFile, ArrayFileOptions, EncodedArray, Expected, LayerId, MergePlan,
    MergedArrayMeta, PendingBudget, PreparedLayer, Scan, UnsyncedLayer, IN_MEMORY_READ_CELLS,
    IN_MEMORY_WRITE_BYTES, SCAN_MIN_PART,
};
pub use schema::{validate_array_name, ArraySchema, MAX_CHUNK_BYTES, MAX_NAME_BYTES, MAX_RANK};
pub use stats::{ArrayStats, ChunkStats, ChunkSummary};
pub use storage::{
    Entry, LocalStorage, LockGuard, MemoryStorage, ReadHandle, StagedReplace, Storage, Version,
    WriteHandle,
};
#[cfg(feature = "object-store")]
pub use storage::{ObjectStorage, ObjectStoreStats};

/// True when `a` and `b` hold the same bytes. Names of 8 to 16 bytes (most
/// dataset names) are compared as two overlapping 8-byte words, inline: a
/// scan of one array across thousands of datasets compares each name a few
/// times, and a call to `memcmp` per comparison cost more than decoding a
/// fifth of a small block.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word =
            |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

/// Decodes the LZ4 block `block` into the start of `out` with the decoder
/// ATLAS reads its blocks with, returning the decoded length (`out`'s bytes
/// past it are unspecified), or `None` for a block that is damaged or
/// decodes past `out`. Public for measuring the codec on its own (the
/// benchmark's decode limits) and for tools that read blocks themselves.
pub fn lz4_decompress_into(block: &[u8], out: &mut [u8]) -> Option<usize> {
    codec::lz4::decompress_into(block, out).ok()
}

/// Fuzzing and hostile-input entry points: decode untrusted bytes, never panic.
pub mod fuzzing {
    use std::path::Path;

    /// Decodes a format-1 footer body.
    pub fn decode_footer(bytes: &[u8]) -> bool {
        crate::layer::decode_footer(bytes, 0, Path::new("<fuzz>")).is_ok()
    }

    /// Decodes a format-2 footer: `bytes` is its blocks, then its index, then
    /// the index length (`u32` LE), as if the footer started right after a
    /// layer header. Block CRCs are not checked (they are recomputed), so
    /// mutated blocks reach the record decoder. True if the index and every
    /// block decode, and looking up each block's first and last name finds
    /// its record.
    pub fn decode_blocked_footer(bytes: &[u8]) -> bool {
        crate::layer::fuzz_blocked_footer(bytes)
    }

    /// Decodes a block with the given codec/filter/width/raw length.
    pub fn decode_block(bytes: &[u8], codec: u8, filter: u8, width: usize, raw_len: usize) -> bool {
        crate::codec::decode_block(bytes, codec, filter, width, raw_len.min(1 << 24)).is_ok()
    }

    /// Opens arbitrary bytes as a layer file (in memory) and decodes every
    /// record of its footer.
    pub fn open_layer_bytes(bytes: &[u8]) -> bool {
        let s = crate::MemoryStorage::new();
        let p = Path::new("/f/d-00000000000000000000000000000000.af");
        s.overwrite(p, bytes.to_vec());
        crate::layer::open_layer(&s, p)
            .and_then(|l| l.all_records_uncached())
            .is_ok()
    }

    /// Decodes raw chunk bytes (a block after its codec and filter) as
    /// `n_cells` cells of the dtype whose on-disk code is `dtype_code`, as a
    /// read does; true if they are exactly such cells. An unknown code is
    /// false. No size is capped here: the decoder must refuse, before any
    /// allocation, a cell count the bytes cannot hold.
    pub fn decode_cells(bytes: &[u8], dtype_code: u8, n_cells: u64) -> bool {
        fn cells<T: crate::ArrayElement>(bytes: &[u8], n: usize) -> bool {
            crate::element::decode_cells::<T>(bytes, n).is_some_and(|v| v.len() == n)
        }
        let (Some(dtype), Ok(n)) = (
            crate::DType::from_code(dtype_code),
            usize::try_from(n_cells),
        ) else {
            return false;
        };
        match dtype {
            crate::DType::Bool => cells::<bool>(bytes, n),
            crate::DType::Int8 => cells::<i8>(bytes, n),
            crate::DType::Int16 => cells::<i16>(bytes, n),
            crate::DType::Int32 => cells::<i32>(bytes, n),
            crate::DType::Int64 => cells::<i64>(bytes, n),
            crate::DType::UInt8 => cells::<u8>(bytes, n),
            crate::DType::UInt16 => cells::<u16>(bytes, n),
            crate::DType::UInt32 => cells::<u32>(bytes, n),
            crate::DType::UInt64 => cells::<u64>(bytes, n),
            crate::DType::Float32 => cells::<f32>(bytes, n),
            crate::DType::Float64 => cells::<f64>(bytes, n),
            crate::DType::String => cells::<String>(bytes, n),
            crate::DType::Timestamp => cells::<crate::TimestampNs>(bytes, n),
        }
    }

    /// Decodes a stored block into `n_cells` cells of the dtype whose code is
    /// `dtype_code`, as a read does: the codec and filter (with the dtype's
    /// width; `raw_len` capped at 16 MiB like [`decode_block`]), then the cells.
    pub fn decode_chunk(
        stored: &[u8],
        codec: u8,
        filter: u8,
        dtype_code: u8,
        n_cells: u64,
        raw_len: usize,
    ) -> bool {
        let width = crate::DType::from_code(dtype_code)
            .and_then(crate::DType::size_bytes)
            .unwrap_or(0);
        crate::codec::decode_block(stored, codec, filter, width, raw_len.min(1 << 24))
            .is_ok_and(|raw| decode_cells(&raw, dtype_code, n_cells))
    }
}

#[cfg(test)]
mod tests {
    /// `same_bytes` agrees with `==` for every length around its word path
    /// and a difference at every position.
    #[test]
    fn same_bytes_is_byte_equality() {
        for n in 0..24usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(super::same_bytes(&a, &a.clone()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!super::same_bytes(&a, &b), "{n} bytes, differing at {at}");
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(!super::same_bytes(&a, &longer), "{n}");
        }
    }
}
