//! The bytes of one layer file (see `docs/format.md`).
//!
//! ```text
//! header (32 B) | block | block | … | footer | trailer (32 B)
//! ```
//!
//! Format 2 (written by this build) splits the footer into blocks of records
//! sorted by name and an index of those blocks (`blocked.rs`); opening reads
//! the index only, and a name's records are decoded from its block on first
//! use. Format 1 (one footer body of every record) is still read, decoded
//! whole at open (`codec.rs`).
//!
//! **Invariant:** everything decoded here is bounds-checked against the file
//! length before use; hostile counts never drive allocations beyond what the
//! remaining footer bytes could hold.

mod blocked;
mod codec;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

pub(crate) use blocked::{decode_block_records, decode_index, BlockRef, FooterIndex};
pub(crate) use codec::decode_footer;
pub(crate) use writer::{BlockMeta, LayerWriter, SortedLayerWriter};

use crate::error::{Error, Result};
use crate::schema::ArraySchema;
use crate::stats::ChunkStats;
use crate::storage::{ReadHandle, Storage};

/// First 8 bytes of every layer file.
pub const MAGIC: [u8; 8] = *b"ATLAS-AF";
/// Last 8 bytes of every layer file.
pub const TRAILER_MAGIC: [u8; 8] = *b"AF-FOOTR";
/// The format version this build writes (2: the block-indexed footer).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads (1: one footer body).
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: u64 = 32;
/// Trailer length in bytes.
pub const TRAILER_LEN: u64 = 32;

/// Where one chunk's block lives and how to decode it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChunkEntry {
    pub chunk_idx: u64,
    pub offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
    pub codec: u8,
    pub filter: u8,
    pub crc: u32,
    pub stats: ChunkStats,
}

/// What a layer says about one array name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// Chunks written on top of the array as earlier layers leave it.
    Update,
    /// The array is (re)defined here: earlier layers' state for the name is void.
    Define,
    /// The array is deleted here.
    Delete,
}

impl RecordKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            RecordKind::Update => 0,
            RecordKind::Define => 1,
            RecordKind::Delete => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => RecordKind::Update,
            1 => RecordKind::Define,
            2 => RecordKind::Delete,
            _ => return None,
        })
    }
}

/// One array's record in a layer footer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ArrayRecord {
    pub name: String,
    pub kind: RecordKind,
    /// Present unless `kind` is `Delete`.
    pub schema: Option<Arc<ArraySchema>>,
    /// Sorted by `chunk_idx`, unique.
    pub chunks: Vec<ChunkEntry>,
}

/// A decoded footer: every record, in the order the writer emitted them.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Footer {
    pub uid: u128,
    pub records: Vec<ArrayRecord>,
}

/// What opening a layer decoded of its footer.
#[derive(Debug)]
pub(crate) enum LayerIndex {
    /// Format 1: every record (file order), and where each name's records are.
    Whole {
        records: Vec<ArrayRecord>,
        by_name: HashMap<String, Vec<usize>>,
    },
    /// Format 2: the block index only; records are read from their block.
    Blocked(FooterIndex),
}

impl LayerIndex {
    fn whole(records: Vec<ArrayRecord>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (k, r) in records.iter().enumerate() {
            by_name.entry(r.name.clone()).or_default().push(k);
        }
        LayerIndex::Whole { records, by_name }
    }
}

/// The fewest footer blocks [`Layer::all_records`] gives a thread of its
/// own (a block holds some hundreds of records).
pub(crate) const BLOCKS_PER_THREAD: usize = 4;

/// A [`FetchBlock`] that several threads may call at once.
pub(crate) type SharedFetchBlock<'a> =
    dyn Fn(&Layer, &BlockRef) -> Result<Arc<Vec<u8>>> + Sync + 'a;

/// Fetches a footer block's bytes (the caller decides whether through a cache).
pub(crate) type FetchBlock<'a> = dyn Fn(&Layer, &BlockRef) -> Result<Arc<Vec<u8>>> + 'a;

/// An open layer file.
#[derive(Debug)]
pub(crate) struct Layer {
    /// File name within the array directory (the layer's identity in the registry).
    pub name: String,
    pub path: PathBuf,
    /// Random id written at creation; part of every cache key.
    pub uid: u128,
    pub handle: Arc<dyn ReadHandle>,
    pub index: LayerIndex,
    /// Footer blocks read from storage so far (tests check lookups read one).
    pub footer_blocks_read: AtomicU64,
    /// Per footer block, the bytes (as the cache shares them) whose
    /// checksum and record table a lookup checked last: a lookup into the
    /// same bytes skips those checks, which cost more than the lookup (a
    /// whole block's CRC for one record). The `Weak` keeps the allocation
    /// from being reused, so equal addresses mean the same bytes; bytes
    /// read again after an eviction are checked again.
    checked: Vec<parking_lot::Mutex<Weak<Vec<u8>>>>,
}

impl Layer {
    /// A layer whose footer index is already known (one just written).
    pub(crate) fn new(
        path: PathBuf,
        uid: u128,
        handle: Arc<dyn ReadHandle>,
        index: FooterIndex,
    ) -> Self {
        let index = LayerIndex::Blocked(index);
        Layer {
            name: file_name(&path),
            path,
            uid,
            handle,
            checked: unchecked(&index),
            index,
            footer_blocks_read: AtomicU64::new(0),
        }
    }

    /// True when a lookup into footer block `k` checked these very bytes.
    fn checked_before(&self, k: usize, bytes: &Arc<Vec<u8>>) -> bool {
        self.checked
            .get(k)
            .is_some_and(|m| std::ptr::eq(m.lock().as_ptr(), Arc::as_ptr(bytes)))
    }

    /// Remembers that footer block `k`'s `bytes` passed the checks.
    fn remember_checked(&self, k: usize, bytes: &Arc<Vec<u8>>) {
        if let Some(m) = self.checked.get(k) {
            *m.lock() = Arc::downgrade(bytes);
        }
    }

    /// Reads one footer block's bytes (checked when decoded).
    pub(crate) fn read_footer_block(&self, b: &BlockRef) -> Result<Vec<u8>> {
        self.footer_blocks_read.fetch_add(1, Ordering::Relaxed);
        self.handle.read_vec_at(b.offset, b.len as usize)
    }

    /// This layer's records for `name` (at most one in format 2), in file
    /// order; `block` fetches a footer block's bytes (through a cache).
    pub(crate) fn records_named(
        &self,
        name: &str,
        block: &FetchBlock<'_>,
    ) -> Result<Vec<ArrayRecord>> {
        match &self.index {
            LayerIndex::Whole { records, by_name } => Ok(by_name
                .get(name)
                .map(|ks| ks.iter().map(|&k| records[k].clone()).collect())
                .unwrap_or_default()),
            LayerIndex::Blocked(index) => {
                let Some(k) = index.block_for(name) else {
                    return Ok(Vec::new());
                };
                let bytes = block(self, &index.blocks[k])?;
                let checked = self.checked_before(k, &bytes);
                let found = blocked::find_in_block(&bytes, index, k, name, &self.path, checked)?;
                if !checked {
                    self.remember_checked(k, &bytes);
                }
                Ok(found.into_iter().collect())
            }
        }
    }

    /// Every record of this layer in the order the writer emitted them
    /// (every footer block decoded and checked). Many blocks are decoded on
    /// helper threads beside the caller's ([`in_ranges`]): plain scoped
    /// threads, not rayon's, so a caller holding a lock never runs another
    /// rayon job while it waits. An error is the first failing block's, on
    /// any number of threads.
    pub(crate) fn all_records(&self, block: &SharedFetchBlock<'_>) -> Result<Vec<ArrayRecord>> {
        match &self.index {
            LayerIndex::Whole { records, .. } => Ok(records.clone()),
            LayerIndex::Blocked(index) => {
                let decode = |k: usize| {
                    let bytes = block(self, &index.blocks[k])?;
                    blocked::decode_block_records(&bytes, index, k, &self.path)
                };
                let blocks = in_ranges(index.blocks.len(), decode)?;
                blocked::in_emission_order(blocks, index, &self.path)
            }
        }
    }

    /// [`Layer::all_records`] reading every block straight from storage.
    pub(crate) fn all_records_uncached(&self) -> Result<Vec<ArrayRecord>> {
        self.all_records(&|l, b| l.read_footer_block(b).map(Arc::new))
    }

    /// [`Layer::all_records`] fetching the footer blocks in batches of
    /// ranged reads (about 8 MiB each: on object stores one request per
    /// batch instead of one per block), not through the cache.
    pub(crate) fn all_records_batched(&self) -> Result<Vec<ArrayRecord>> {
        /// Footer blocks are ~64 KiB: about 8 MiB per batch.
        const BATCH: usize = 128;
        let LayerIndex::Blocked(index) = &self.index else {
            return self.all_records_uncached();
        };
        let mut fetched: std::collections::HashMap<u64, Arc<Vec<u8>>> =
            std::collections::HashMap::with_capacity(index.blocks.len());
        for batch in index.blocks.chunks(BATCH) {
            let ranges: Vec<(u64, usize)> =
                batch.iter().map(|b| (b.offset, b.len as usize)).collect();
            self.footer_blocks_read
                .fetch_add(ranges.len() as u64, Ordering::Relaxed);
            for (b, bytes) in batch.iter().zip(self.handle.read_ranges(&ranges)?) {
                fetched.insert(b.offset, Arc::new(bytes));
            }
        }
        self.all_records(&|l, b| match fetched.get(&b.offset) {
            Some(bytes) => Ok(Arc::clone(bytes)),
            None => l.read_footer_block(b).map(Arc::new),
        })
    }
}

/// The last component of `path` (a layer's name), empty if it has none.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

/// `f` of every index in `0..n`, in order: on the caller's thread, and
/// when there are [`BLOCKS_PER_THREAD`] items per thread or more, also on
/// scoped helper threads (as many threads in all as rayon's pool has), each
/// given a contiguous range. The error is the first in index order on any
/// number of threads: a range stops at its first error, and the ranges
/// before it run whole. A helper the system refuses (out of threads or
/// memory) has its range run on the caller's thread.
fn in_ranges<R: Send>(n: usize, f: impl Fn(usize) -> Result<R> + Sync) -> Result<Vec<R>> {
    let threads = rayon::current_num_threads().min(n / BLOCKS_PER_THREAD);
    if threads < 2 {
        return (0..n).map(f).collect();
    }
    let per = n.div_ceil(threads);
    let run = |from: usize| {
        let mut out = Vec::with_capacity(per);
        for k in from..n.min(from + per) {
            let r = f(k);
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        out
    };
    let all: Vec<Result<R>> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads)
            .map(|t| {
                let from = t * per;
                (
                    from,
                    std::thread::Builder::new().spawn_scoped(s, move || run(from)),
                )
            })
            .collect();
        let mut all = run(0);
        for (from, helper) in helpers {
            all.extend(match helper {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => run(from),
            });
        }
        all
    });
    all.into_iter().collect()
}

/// Opens a layer and validates its header, trailer and footer index (format
/// 2) or whole footer (format 1).
pub(crate) fn open_layer(storage: &dyn Storage, path: &Path) -> Result<Layer> {
    open_layer_handle(storage.open_read(path)?, path)
}

/// Validates an already open layer file (see [`open_layer`]).
pub(crate) fn open_layer_handle(handle: Arc<dyn ReadHandle>, path: &Path) -> Result<Layer> {
    let len = handle.try_len()?;
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(Error::corrupt(
            path,
            0,
            format!("file of {len} bytes is too short to be a layer"),
        ));
    }
    let header = handle.read_vec_at(0, HEADER_LEN as usize)?;
    if header[..8] != MAGIC {
        return Err(Error::corrupt(path, 0, "not a layer file (bad magic)"));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    let header_uid = u128::from_le_bytes(header[16..32].try_into().expect("16 bytes"));
    let trailer_at = len - TRAILER_LEN;
    let trailer = handle.read_vec_at(trailer_at, TRAILER_LEN as usize)?;
    if trailer[24..32] != TRAILER_MAGIC {
        return Err(Error::corrupt(
            path,
            trailer_at,
            "bad trailer magic (truncated or incomplete file?)",
        ));
    }
    let footer_offset = u64::from_le_bytes(trailer[0..8].try_into().expect("8 bytes"));
    let footer_len = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    let footer_crc = u32::from_le_bytes(trailer[16..20].try_into().expect("4 bytes"));
    let trailer_version = u32::from_le_bytes(trailer[20..24].try_into().expect("4 bytes"));
    if trailer_version != version {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version: trailer_version,
            supported: FORMAT_VERSION,
        });
    }
    if footer_offset < HEADER_LEN || footer_offset.checked_add(footer_len) != Some(trailer_at) {
        return Err(Error::corrupt(
            path,
            trailer_at,
            format!("footer at {footer_offset} of {footer_len} bytes does not end at the trailer"),
        ));
    }
    let footer_len = usize::try_from(footer_len)
        .map_err(|_| Error::corrupt(path, trailer_at, "footer larger than memory"))?;
    let bytes = handle.read_vec_at(footer_offset, footer_len)?;
    if crc32c::crc32c(&bytes) != footer_crc {
        return Err(Error::corrupt(
            path,
            footer_offset,
            "footer checksum mismatch",
        ));
    }
    let index = if version == 1 {
        let footer = decode_footer(&bytes, footer_offset, path)?;
        if footer.uid != header_uid {
            return Err(Error::corrupt(
                path,
                16,
                "header and footer name different layers",
            ));
        }
        for rec in &footer.records {
            blocked::check_extents(rec, footer_offset, path, footer_offset)?;
        }
        LayerIndex::whole(footer.records)
    } else {
        let index = decode_index(&bytes, footer_offset, path)?;
        if index.uid != header_uid {
            return Err(Error::corrupt(
                path,
                16,
                "header and footer name different layers",
            ));
        }
        LayerIndex::Blocked(index)
    };
    Ok(Layer {
        name: file_name(path),
        path: path.to_owned(),
        uid: header_uid,
        handle,
        checked: unchecked(&index),
        index,
        footer_blocks_read: AtomicU64::new(0),
    })
}

/// One empty memo per footer block of `index` (see `Layer::checked`).
fn unchecked(index: &LayerIndex) -> Vec<parking_lot::Mutex<Weak<Vec<u8>>>> {
    match index {
        LayerIndex::Whole { .. } => Vec::new(),
        LayerIndex::Blocked(i) => i
            .blocks
            .iter()
            .map(|_| parking_lot::Mutex::new(Weak::new()))
            .collect(),
    }
}

/// See `fuzzing::decode_blocked_footer`.
pub(crate) fn fuzz_blocked_footer(bytes: &[u8]) -> bool {
    let path = Path::new("<fuzz>");
    let Some(split) = bytes.len().checked_sub(4) else {
        return false;
    };
    let index_len = u32::from_le_bytes(bytes[split..].try_into().expect("4 bytes")) as usize;
    let Some(index_at) = split.checked_sub(index_len) else {
        return false;
    };
    let index_bytes = &bytes[index_at..split];
    // The footer starts where the index says the data area ends.
    let Some(data_end) = index_bytes
        .get(20..28)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return false;
    };
    let Some(index_offset) = data_end.checked_add(index_at as u64) else {
        return false;
    };
    let Ok(mut index) = decode_index(index_bytes, index_offset, path) else {
        return false;
    };
    // Blocks lie in [data_end, index_offset): checked by `decode_index`.
    let block_at = |b: &BlockRef| {
        let start = (b.offset - data_end) as usize;
        &bytes[start..start + b.len as usize]
    };
    // Reseal: mutated blocks reach the record decoder, not just the CRC check.
    for k in 0..index.blocks.len() {
        index.blocks[k].crc = crc32c::crc32c(block_at(&index.blocks[k]));
    }
    let mut ok = true;
    for (k, b) in index.blocks.iter().enumerate() {
        ok &= blocked::decode_block_records(block_at(b), &index, k, path).is_ok();
        for name in [&b.first, &b.last] {
            ok &= matches!(
                blocked::find_in_block(block_at(b), &index, k, name, path, false),
                Ok(Some(r)) if &r.name == name
            );
        }
    }
    ok
}
