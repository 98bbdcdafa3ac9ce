//! Sequential writer of one new layer file.

use std::path::{Path, PathBuf};

use super::blocked::{encode_blocked, encode_index, FooterIndex};
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
        let mut out = storage.create_new(path)?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(&MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&uid.to_le_bytes());
        out.append(&header)?;
        Ok(LayerWriter {
            out,
            path: path.to_owned(),
            uid,
            records: Vec::new(),
        })
    }

    /// Starts the record of one array; chunks appended next belong to it.
    pub(crate) fn begin_array(
        &mut self,
        name: &str,
        kind: RecordKind,
        schema: Option<ArraySchema>,
    ) {
        self.records.push(ArrayRecord {
            name: name.to_owned(),
            kind,
            schema,
            chunks: Vec::new(),
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
        let offset = self.out.position();
        self.out.append(stored)?;
        let rec = self
            .records
            .last_mut()
            .expect("begin_array before append_chunk");
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

    /// Writes footer and trailer and fsyncs the file. The caller fsyncs the
    /// directory. Returns the records (in the order they were begun) and the
    /// footer index as written.
    pub(crate) fn finish(mut self) -> Result<(PathBuf, u128, Footer, FooterIndex)> {
        let footer = Footer {
            uid: self.uid,
            records: std::mem::take(&mut self.records),
        };
        let data_end = self.out.position();
        let (blocks, index) = encode_blocked(&footer.records, self.uid, data_end);
        for b in &blocks {
            self.out.append(b)?;
        }
        let body = encode_index(&index);
        let index_offset = self.out.position();
        self.out.append(&body)?;
        let mut trailer = Vec::with_capacity(32);
        trailer.extend_from_slice(&index_offset.to_le_bytes());
        trailer.extend_from_slice(&(body.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        trailer.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        trailer.extend_from_slice(&TRAILER_MAGIC);
        self.out.append(&trailer)?;
        self.out.sync()?;
        Ok((self.path, self.uid, footer, index))
    }
}
