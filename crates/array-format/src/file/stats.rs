//! Statistics and merged metadata, from stored per-chunk statistics only.

use super::{pending, ArrayFile, ArrayStats, MergedArrayMeta, Result, Source};
use crate::stats::ChunkSummary;

impl ArrayFile {
    /// Statistics of an array, merged from per-chunk statistics (no data is
    /// read). Cheaper than [`ArrayFile::array_meta`]: nothing is cloned.
    pub fn array_stats(&self, name: &str) -> Result<ArrayStats> {
        let view = self.view_or_err(name)?;
        let mut stats = ArrayStats::all_null(view.schema.n_cells());
        for idx in view.stored_chunks() {
            let src = view.source(idx).expect("listed chunks exist");
            stats.add_chunk(view.schema.chunk_cells(idx), src.meta().1);
        }
        Ok(stats)
    }

    /// Merged metadata of an array (schema, statistics, storage sizes).
    pub fn array_meta(&self, name: &str) -> Result<MergedArrayMeta> {
        let view = self.view_or_err(name)?;
        let schema = view.schema;
        let mut stats = ArrayStats::all_null(schema.n_cells());
        let (mut stored_bytes, mut raw_bytes, mut n) = (0, 0, 0);
        for idx in view.stored_chunks() {
            let src = view.source(idx).expect("listed chunks exist");
            let (raw_len, cs) = src.meta();
            stats.add_chunk(schema.chunk_cells(idx), cs);
            raw_bytes += raw_len;
            stored_bytes += match &src {
                Source::Layer(l) => l.entry.stored_len,
                Source::Pending(p) => match &p.data {
                    pending::PendingData::Mem(b) => b.len() as u64,
                    pending::PendingData::Scratch { len, .. } => *len,
                },
            };
            n += 1;
        }
        Ok(MergedArrayMeta {
            name: name.to_owned(),
            schema: (**schema).clone(),
            stats,
            n_chunks_stored: n,
            stored_bytes,
            raw_bytes,
        })
    }

    /// The stored chunks of an array with their statistics, in chunk order,
    /// from the merged index (pending chunks first, then the newest layer
    /// holding each); no data is read. Chunks never written are not listed:
    /// all their cells are null.
    pub fn chunk_summaries(&self, name: &str) -> Result<Vec<ChunkSummary>> {
        let view = self.view_or_err(name)?;
        let mut out = Vec::new();
        for idx in view.stored_chunks() {
            let src = view.source(idx).expect("listed chunks exist");
            let (_, cs) = src.meta();
            let stored_bytes = match &src {
                Source::Layer(l) => l.entry.stored_len,
                Source::Pending(p) => match &p.data {
                    pending::PendingData::Mem(b) => b.len() as u64,
                    pending::PendingData::Scratch { len, .. } => *len,
                },
            };
            out.push(ChunkSummary {
                chunk_idx: idx,
                n_cells: view.schema.chunk_cells(idx),
                stats: cs.clone(),
                stored_bytes,
            });
        }
        Ok(out)
    }

    /// A fingerprint of each committed chunk of an array, in chunk order:
    /// `(chunk index, CRC-32C of its stored bytes, stored length)`, from the
    /// merged index (no data is read). Two generations whose fingerprints of
    /// an array are equal hold the same bytes for it (compaction and layer
    /// merges copy stored bytes unchanged). Pending chunks are not listed.
    pub fn chunk_fingerprints(&self, name: &str) -> Result<Vec<(u64, u32, u64)>> {
        let view = self.view_or_err(name)?;
        let mut out = Vec::new();
        for idx in view.stored_chunks() {
            if let Some(Source::Layer(l)) = view.source(idx) {
                out.push((idx, l.entry.crc, l.entry.stored_len));
            }
        }
        Ok(out)
    }
}
