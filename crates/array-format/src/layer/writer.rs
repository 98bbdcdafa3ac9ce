//! Sequential writer of one new layer file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::blocked::{
    encode_blocked, encode_index, map_seqs, BlockEncoder, EncodedBlock, FooterIndex,
};
use super::{
    ArrayRecord, ChunkEntry, Footer, RecordKind, FORMAT_VERSION, HEADER_LEN, MAGIC, TRAILER_MAGIC,
};
use crate::error::Result;
use crate::schema::ArraySchema;
use crate::storage::{Storage, WriteHandle};

/// A stored block ready to be appended: compressed bytes and what decodes them.
#[derive(Clone, Debug)]
pub(crate) struct BlockMeta {
    pub raw_len: u64,
    pub codec: u8,
    pub filter: u8,
    pub crc: u32,
    pub stats: crate::stats::ChunkStats,
}

/// Writes header, blocks, footer (its blocks, then its index) and trailer, in
/// that order. Each name gets at most one record per layer.
pub(crate) struct LayerWriter {
    out: Box<dyn WriteHandle>,
    path: PathBuf,
    uid: u128,
    records: Vec<ArrayRecord>,
}

impl LayerWriter {
    /// Creates the file (it must not exist) and writes the header.
    pub(crate) fn create(storage: &dyn Storage, path: &Path, uid: u128) -> Result<Self> {
        let out = create_with_header(storage, path, uid)?;
        Ok(LayerWriter {
            out,
            path: path.to_owned(),
            uid,
            records: Vec::new(),
        })
    }

    /// Makes room for `records` more array records (a flush knows how many
    /// arrays it writes: one allocation instead of doubling).
    pub(crate) fn reserve(&mut self, records: usize) {
        self.records.reserve(records);
    }

    /// Starts the record of one array, with room for `chunks` chunks;
    /// chunks appended next belong to it.
    pub(crate) fn begin_array(
        &mut self,
        name: &str,
        kind: RecordKind,
        schema: Option<Arc<ArraySchema>>,
        chunks: usize,
    ) {
        self.records.push(ArrayRecord {
            name: name.to_owned(),
            kind,
            schema,
            chunks: Vec::with_capacity(chunks),
        });
    }

    /// Appends one chunk's stored bytes to the current array. Chunks of an array
    /// must come in increasing `chunk_idx` order.
    pub(crate) fn append_chunk(
        &mut self,
        chunk_idx: u64,
        stored: &[u8],
        meta: &BlockMeta,
    ) -> Result<()> {
        let rec = self
            .records
            .last_mut()
            .expect("begin_array before append_chunk");
        append_entry(self.out.as_mut(), rec, chunk_idx, stored, meta)
    }

    /// Writes footer and trailer, not yet fsynced: the caller syncs the
    /// returned handle, then the directory (a flush syncs its layers
    /// together, on more threads than cores). Returns the records (in the
    /// order they were begun) and the footer index as written.
    #[allow(clippy::type_complexity)] // the parts of a written layer
    pub(crate) fn finish_unsynced(
        mut self,
    ) -> Result<(PathBuf, u128, Footer, FooterIndex, Box<dyn WriteHandle>)> {
        let footer = Footer {
            uid: self.uid,
            records: std::mem::take(&mut self.records),
        };
        let data_end = self.out.position();
        let (blocks, index) = encode_blocked(&footer.records, self.uid, data_end);
        for b in &blocks {
            self.out.append(b)?;
        }
        write_index_and_trailer(self.out.as_mut(), &index)?;
        Ok((self.path, self.uid, footer, index, self.out))
    }
}

/// Creates a layer file (it must not exist) and writes its header.
fn create_with_header(
    storage: &dyn Storage,
    path: &Path,
    uid: u128,
) -> Result<Box<dyn WriteHandle>> {
    let mut out = storage.create_new(path)?;
    let mut header = Vec::with_capacity(HEADER_LEN as usize);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&uid.to_le_bytes());
    out.append(&header)?;
    Ok(out)
}

/// Appends one chunk's stored bytes and records its entry in `rec`.
fn append_entry(
    out: &mut dyn WriteHandle,
    rec: &mut ArrayRecord,
    chunk_idx: u64,
    stored: &[u8],
    meta: &BlockMeta,
) -> Result<()> {
    let offset = out.position();
    out.append(stored)?;
    debug_assert!(rec.chunks.last().is_none_or(|c| c.chunk_idx < chunk_idx));
    rec.chunks.push(ChunkEntry {
        chunk_idx,
        offset,
        stored_len: stored.len() as u64,
        raw_len: meta.raw_len,
        codec: meta.codec,
        filter: meta.filter,
        crc: meta.crc,
        stats: meta.stats.clone(),
    });
    Ok(())
}

/// Writes the footer index and the trailer after the footer blocks (the
/// caller fsyncs).
fn write_index_and_trailer(out: &mut dyn WriteHandle, index: &FooterIndex) -> Result<()> {
    let body = encode_index(index);
    let index_offset = out.position();
    out.append(&body)?;
    let mut trailer = Vec::with_capacity(32);
    trailer.extend_from_slice(&index_offset.to_le_bytes());
    trailer.extend_from_slice(&(body.len() as u64).to_le_bytes());
    trailer.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    trailer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    trailer.extend_from_slice(&TRAILER_MAGIC);
    out.append(&trailer)
}

/// A scratch file: the storage holding it, its path, its handle.
type ScratchFile = (Arc<dyn Storage>, PathBuf, Box<dyn WriteHandle>);

/// Footer blocks held until the chunk data is written (they follow it in the
/// file): in memory up to a limit, then in a scratch file that is removed
/// when this drops.
struct HeldBlocks {
    storage: Arc<dyn Storage>,
    /// Where a scratch file is created on the first spill.
    scratch_dir: PathBuf,
    spill_at: usize,
    mem: Vec<u8>,
    scratch: Option<ScratchFile>,
    /// Per block: its length, record count and name range, in order.
    blocks: Vec<(usize, u32, String, String)>,
}

impl HeldBlocks {
    fn push(&mut self, b: EncodedBlock) -> Result<()> {
        if self.scratch.is_none() && self.mem.len() + b.bytes.len() > self.spill_at {
            // Object stores keep scratch data on local disk.
            let (storage, dir) = self
                .storage
                .scratch_location(&self.scratch_dir)
                .unwrap_or_else(|| (Arc::clone(&self.storage), self.scratch_dir.clone()));
            let path = dir.join(format!("scratch-{:032x}.tmp", crate::file::random_uid()));
            let handle = storage.create_new(&path)?;
            // Kept before the first append, so a failed one still removes it.
            let (_, _, h) = self.scratch.insert((storage, path, handle));
            h.append(&std::mem::take(&mut self.mem))?;
        }
        match &mut self.scratch {
            Some((_, _, h)) => h.append(&b.bytes)?,
            None => self.mem.extend_from_slice(&b.bytes),
        }
        self.blocks
            .push((b.bytes.len(), b.n_records, b.first, b.last));
        Ok(())
    }

    /// Bytes the held blocks take in memory (the test hook's measure).
    #[cfg(test)]
    fn mem_bytes(&self) -> usize {
        self.mem.len()
    }
}

impl Drop for HeldBlocks {
    fn drop(&mut self) {
        if let Some((storage, path, _)) = &self.scratch {
            // Best effort: an unnamed file is garbage the store's writer removes later.
            let _ = storage.remove_file(path);
        }
    }
}

/// Writes one new layer whose records arrive in increasing name order, each
/// with a provisional sequence number that [`SortedLayerWriter::finish`] maps
/// to its final one (merges know a record's place in the emission order only
/// once every record is known). Memory holds the open record, the open footer
/// block and the footer blocks below a limit (then a scratch file): not the
/// layer's records, which a tail merge or compaction of a file of a million
/// datasets could not afford.
pub(crate) struct SortedLayerWriter {
    out: Box<dyn WriteHandle>,
    path: PathBuf,
    uid: u128,
    /// The record being written and its provisional sequence number.
    open: Option<(u32, ArrayRecord)>,
    encoder: BlockEncoder,
    held: HeldBlocks,
    n_records: u32,
    /// Every record with its provisional sequence number while there are at
    /// most `keep_limit` of them (`None` past that).
    kept: Option<Vec<(u32, ArrayRecord)>>,
    keep_limit: usize,
}

impl SortedLayerWriter {
    /// Creates the file (it must not exist) and writes the header. Footer
    /// blocks beyond `spill_at` bytes wait in a scratch file in `scratch_dir`
    /// (or the storage's scratch location); the records are kept for
    /// [`SortedLayerWriter::finish`] to return while there are at most
    /// `keep_limit`.
    pub(crate) fn create(
        storage: &Arc<dyn Storage>,
        path: &Path,
        uid: u128,
        scratch_dir: &Path,
        spill_at: usize,
        keep_limit: usize,
    ) -> Result<Self> {
        let out = create_with_header(storage.as_ref(), path, uid)?;
        Ok(SortedLayerWriter {
            out,
            path: path.to_owned(),
            uid,
            open: None,
            encoder: BlockEncoder::default(),
            held: HeldBlocks {
                storage: Arc::clone(storage),
                scratch_dir: scratch_dir.to_owned(),
                spill_at,
                mem: Vec::new(),
                scratch: None,
                blocks: Vec::new(),
            },
            n_records: 0,
            kept: Some(Vec::new()),
            keep_limit,
        })
    }

    /// Starts the record of one array, whose name must be greater than every
    /// earlier one's; chunks appended next belong to it.
    pub(crate) fn begin_array(
        &mut self,
        name: &str,
        kind: RecordKind,
        schema: Option<Arc<ArraySchema>>,
        provisional_seq: u32,
    ) -> Result<()> {
        self.close_record()?;
        self.open = Some((
            provisional_seq,
            ArrayRecord {
                name: name.to_owned(),
                kind,
                schema,
                chunks: Vec::new(),
            },
        ));
        Ok(())
    }

    /// Appends one chunk's stored bytes to the current array, in increasing
    /// `chunk_idx` order.
    pub(crate) fn append_chunk(
        &mut self,
        chunk_idx: u64,
        stored: &[u8],
        meta: &BlockMeta,
    ) -> Result<()> {
        let (_, rec) = self.open.as_mut().expect("begin_array before append_chunk");
        append_entry(self.out.as_mut(), rec, chunk_idx, stored, meta)
    }

    fn close_record(&mut self) -> Result<()> {
        let Some((seq, rec)) = self.open.take() else {
            return Ok(());
        };
        self.n_records = self
            .n_records
            .checked_add(1)
            .expect("fewer than 2^32 arrays per layer");
        if let Some(b) = self.encoder.push(seq, &rec) {
            self.held.push(b)?;
        }
        if let Some(kept) = &mut self.kept {
            if kept.len() < self.keep_limit {
                kept.push((seq, rec));
            } else {
                self.kept = None;
            }
        }
        Ok(())
    }

    /// Bytes of footer blocks held in memory, and records kept (the test
    /// hook's measures of what a merge holds).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (
            self.held.mem_bytes(),
            self.kept.as_ref().map_or(0, Vec::len),
        )
    }

    /// Writes the footer (every provisional sequence number `s` replaced by
    /// `seq(s)`, which must map them onto `0..n_records`), its index and the
    /// trailer, and fsyncs the file; the caller fsyncs the directory. Returns
    /// the footer index and, when at most `keep_limit` records were written,
    /// the footer (records in emission order).
    pub(crate) fn finish(
        mut self,
        seq: impl Fn(u32) -> u32,
    ) -> Result<(PathBuf, u128, Option<Footer>, FooterIndex)> {
        self.close_record()?;
        if let Some(b) = self.encoder.finish() {
            self.held.push(b)?;
        }
        let data_end = self.out.position();
        let mut refs = Vec::with_capacity(self.held.blocks.len());
        let mut at_mem = 0usize;
        let mut at_scratch = 0u64;
        for (len, n_records, first, last) in std::mem::take(&mut self.held.blocks) {
            let mut bytes = if let Some((_, _, h)) = &mut self.held.scratch {
                let mut buf = vec![0u8; len];
                h.read_exact_at(at_scratch, &mut buf)?;
                at_scratch += len as u64;
                buf
            } else {
                let buf = self.held.mem[at_mem..at_mem + len].to_vec();
                at_mem += len;
                buf
            };
            map_seqs(&mut bytes, &seq);
            let b = EncodedBlock {
                bytes,
                n_records,
                first,
                last,
            };
            let r = b.block_ref(self.out.position());
            self.out.append(&b.bytes)?;
            refs.push(r);
        }
        let index = FooterIndex {
            uid: self.uid,
            n_records: self.n_records,
            data_end,
            blocks: refs,
        };
        write_index_and_trailer(self.out.as_mut(), &index)?;
        self.out.sync()?;
        let footer = self.kept.take().map(|mut kept| {
            for (s, _) in &mut kept {
                *s = seq(*s);
            }
            kept.sort_unstable_by_key(|(s, _)| *s);
            Footer {
                uid: self.uid,
                records: kept.into_iter().map(|(_, r)| r).collect(),
            }
        });
        Ok((self.path.clone(), self.uid, footer, index))
    }
}
