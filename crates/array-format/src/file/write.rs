//! Writes: cutting a hyperslab into chunks, merging partly covered chunks,
//! encoding and statistics, into the pending layer.

use super::{
    encode_block, encode_cells, fill_of, slab, ArrayD, ArrayElement, ArrayFile, ArraySchema,
    ArrayViewD, BlockMeta, ChunkStats, Error, IxDyn, RecordKind, Result, MAX_CHUNK_BYTES,
};

/// The largest write, in bytes of cells, that
/// [`ArrayFile::write_is_in_memory`] calls small: encoding it takes well under
/// a millisecond.
pub const IN_MEMORY_WRITE_BYTES: u64 = 256 << 10;

impl ArrayFile {
    /// True when writing `data` to `name` is small (at most
    /// [`IN_MEMORY_WRITE_BYTES`] of cells) and touches no storage: the array's
    /// pending record defines it (no committed layer is consulted), none of
    /// its pending chunks is in a scratch file (merging a partly covered chunk
    /// reads memory only), and the pending budget has room for the encoded
    /// chunks (the write does not spill). An async caller may then write on
    /// its own thread: handing a 200-byte write to a blocking pool costs many
    /// times its encoding. (Files sharing a budget and writing at the same
    /// moment may still spill; that is only slower, never wrong.)
    pub fn write_is_in_memory<T: ArrayElement>(
        &self,
        name: &str,
        data: &ArrayViewD<'_, T>,
    ) -> bool {
        let Some(p) = self.pending.arrays.get(name) else {
            return false;
        };
        if p.kind != RecordKind::Define {
            return false;
        }
        let raw_bytes = if let Some(w) = T::DTYPE.size_bytes() {
            (w as u64).saturating_mul(data.len() as u64)
        } else {
            let mut n = 0u64;
            for v in data {
                n += 4 + v.as_str().map_or(0, str::len) as u64;
                if n > IN_MEMORY_WRITE_BYTES {
                    return false;
                }
            }
            n
        };
        // Encoded chunks are at most about 1.1× the cells plus a few bytes
        // each (LZ4, Zstd bounds); twice the cells plus 64 KiB covers them.
        raw_bytes <= IN_MEMORY_WRITE_BYTES
            && p.chunks
                .values()
                .all(super::pending::PendingChunk::is_in_memory)
            && self.pending.has_room(2 * raw_bytes + (64 << 10))
    }

    /// Writes `data` at `start` (empty `start` means the origin). Chunks only
    /// partly covered are merged with their current contents.
    #[allow(clippy::needless_pass_by_value)] // views are cheap; by value matches `arr.view()` call sites
    pub fn write_array<T: ArrayElement>(
        &mut self,
        name: &str,
        start: &[u64],
        data: ArrayViewD<'_, T>,
    ) -> Result<()> {
        let view = self.view_or_err(name)?;
        let schema = view.schema;
        Self::check_dtype::<T>(name, schema)?;
        if data.ndim() != schema.rank() {
            return Err(Error::RankMismatch {
                name: name.to_owned(),
                expected: schema.rank(),
                actual: data.ndim(),
            });
        }
        let start = if start.is_empty() {
            vec![0; schema.rank()]
        } else {
            start.to_vec()
        };
        let count: Vec<u64> = data.shape().iter().map(|&s| s as u64).collect();
        let (start, count) = schema.resolve_region(name, &start, &count)?;
        if count.contains(&0) {
            return Ok(());
        }
        let fill: T = fill_of(schema);
        let mut encoded = Vec::new();
        for idx in schema.chunks_touching(&start, &count) {
            let (origin, cshape) = schema.chunk_region(idx);
            let ranges = slab::intersect(&origin, &cshape, &start, &count);
            let (cr, rr): (Vec<_>, Vec<_>) = ranges.into_iter().unzip();
            let covered = cr
                .iter()
                .zip(&cshape)
                .all(|(&(a, b), &s)| a == 0 && b as u64 == s);
            // A chunk that is the whole of standard-layout data (a small
            // array written at once) is encoded from the caller's cells.
            if covered
                && rr
                    .iter()
                    .zip(data.shape())
                    .all(|(&(a, b), &n)| a == 0 && b == n)
            {
                if let Some(values) = data.as_slice() {
                    encoded.push((idx, self.encode_chunk(name, schema, values)?));
                    continue;
                }
            }
            let chunk = if covered {
                slab::extract(&data, &rr)
            } else {
                let mut base = if let Some(src) = view.source(idx) {
                    self.chunk_array::<T>(&src, &cshape, true)?
                } else {
                    let d: Vec<usize> = cshape.iter().map(|&s| s as usize).collect();
                    ArrayD::from_elem(IxDyn(&d), fill.clone())
                };
                slab::copy_box(&mut base.view_mut(), &cr, &data, &rr);
                base
            };
            let values = chunk.as_slice().expect("standard layout");
            encoded.push((idx, self.encode_chunk(name, schema, values)?));
        }
        let created_record = !self.pending.arrays.contains_key(name);
        // The schema is copied only for a new record (a write over committed
        // data): a write into a pending array's record needs none.
        let record_schema = created_record.then(|| std::sync::Arc::clone(schema));
        if let Some(schema) = record_schema {
            self.pending
                .set_record(name, RecordKind::Update, Some(schema));
        }
        let chunks = encoded
            .into_iter()
            .map(|(idx, (stored, meta))| (idx, stored, meta))
            .collect();
        self.pending
            .put_chunks(name, chunks, created_record, &self.storage, &self.dir)
    }

    pub(super) fn encode_chunk<T: ArrayElement>(
        &self,
        name: &str,
        schema: &ArraySchema,
        values: &[T],
    ) -> Result<(Vec<u8>, BlockMeta)> {
        let raw = encode_cells(values).ok_or_else(|| Error::Unrepresentable {
            name: name.to_owned(),
            reason: "a string longer than 4 GiB",
        })?;
        if raw.len() as u64 > MAX_CHUNK_BYTES {
            return Err(Error::Unrepresentable {
                name: name.to_owned(),
                reason: "a chunk whose encoding exceeds 2 GiB; use a smaller chunk shape",
            });
        }
        let width = T::DTYPE.size_bytes().unwrap_or(0);
        let (stored, codec, filter) = encode_block(&raw, width, self.options.compression);
        let fill: Option<T> = schema.fill_value.as_ref().and_then(T::from_fill);
        let meta = BlockMeta {
            raw_len: raw.len() as u64,
            codec,
            filter,
            crc: crc32c::crc32c(&stored),
            stats: ChunkStats::compute(values, fill.as_ref()),
        };
        Ok((stored, meta))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use super::IN_MEMORY_WRITE_BYTES;
    use crate::{ArrayFile, ArrayFileOptions, DeltaCache, MemoryStorage};

    fn file(pending_budget_bytes: u64) -> ArrayFile {
        ArrayFile::create(
            Arc::new(MemoryStorage::new()),
            Path::new("/f"),
            ArrayFileOptions {
                pending_budget_bytes,
                ..ArrayFileOptions::default()
            },
            Arc::new(DeltaCache::default()),
        )
        .unwrap()
    }

    fn cells(n: usize, v: f32) -> ArrayD<f32> {
        ArrayD::from_elem(IxDyn(&[n]), v)
    }

    #[test]
    fn only_small_writes_to_pending_definitions_are_in_memory() {
        let mut f = file(1 << 20);
        f.define_array::<f32>("a", vec!["x".into()], vec![50], None, None)
            .unwrap();
        assert!(f.write_is_in_memory("a", &cells(50, 1.0).view()));
        assert!(!f.write_is_in_memory("missing", &cells(50, 1.0).view()));
        let big = cells((IN_MEMORY_WRITE_BYTES / 4 + 1) as usize, 1.0);
        assert!(!f.write_is_in_memory("a", &big.view()));
        f.write_array("a", &[], cells(50, 2.0).view()).unwrap();
        // Still pending: a partly covering write merges with memory only.
        assert!(f.write_is_in_memory("a", &cells(10, 3.0).view()));
        f.write_array("a", &[5], cells(10, 3.0).view()).unwrap();
        f.flush().unwrap();
        let back: Vec<f32> = f
            .read_array::<f32>("a", &[], &[])
            .unwrap()
            .into_iter()
            .collect();
        let mut want = vec![2.0f32; 50];
        want[5..15].fill(3.0);
        assert_eq!(back, want);
        // Committed now: a write is an update, which may read the layers.
        assert!(!f.write_is_in_memory("a", &cells(50, 1.0).view()));
        // Strings count their bytes.
        f.define_array::<String>("s", vec!["x".into()], vec![2], None, None)
            .unwrap();
        let long = ArrayD::from_elem(IxDyn(&[2]), "y".repeat(IN_MEMORY_WRITE_BYTES as usize));
        assert!(!f.write_is_in_memory("s", &long.view()));
        let short = ArrayD::from_elem(IxDyn(&[2]), "y".to_owned());
        assert!(f.write_is_in_memory("s", &short.view()));
    }

    #[test]
    fn a_write_that_may_spill_or_merge_with_spilled_chunks_is_not_in_memory() {
        // No room in the budget: the write would spill.
        let mut f = file(64);
        f.define_array::<f32>("a", vec!["x".into()], vec![50], Some(vec![10]), None)
            .unwrap();
        assert!(!f.write_is_in_memory("a", &cells(50, 1.0).view()));
        f.write_array("a", &[], cells(50, 1.0).view()).unwrap();
        assert_eq!(f.pending_mem_bytes(), 0, "spilled");
        // Room again, but the array's chunks are in the scratch file.
        let mut options = f.options();
        options.pending_budget_bytes = 1 << 30;
        f.set_options(options).unwrap();
        assert!(!f.write_is_in_memory("a", &cells(5, 1.0).view()));
    }
}
