//! Writes: cutting a hyperslab into chunks, merging partly covered chunks,
//! encoding and statistics, into the pending layer.

use std::borrow::Cow;
use std::sync::Arc;

use super::{
    encode_block, encode_cells, fill_of, slab, ArrayD, ArrayElement, ArrayFile, ArraySchema,
    ArrayStats, ArrayViewD, BlockMeta, ChunkStats, Compression, Error, IxDyn, RecordKind, Result,
    MAX_CHUNK_BYTES,
};

/// The largest write, in bytes of cells, that
/// [`ArrayFile::write_is_in_memory`] calls small: encoding it takes well under
/// a millisecond.
pub const IN_MEMORY_WRITE_BYTES: u64 = 256 << 10;

impl ArrayFile {
    /// True when writing `data` at `start` (empty: the origin) to `name` is
    /// small (at most [`IN_MEMORY_WRITE_BYTES`] of cells) and touches no
    /// storage, and the pending budget has room for the encoded chunks (the
    /// write does not spill). The write touches no storage when either
    /// - the array's pending record defines it (no committed layer is
    ///   consulted) and none of its pending chunks is in a scratch file
    ///   (merging a partly covered chunk reads memory only); or
    /// - the array is committed, its merged state is built or can be built
    ///   at once (from footer blocks in the cache or that storage has
    ///   without waiting, such as a local file's page cache: fetched into
    ///   the cache here, as [`ArrayFile::fetch_nowait`] does), and the
    ///   write covers each chunk it touches whole (nothing to merge with),
    ///   replacing no chunk that is in a scratch file.
    ///
    /// An async caller may then write on its own thread: handing a small
    /// write to a blocking pool costs many times its encoding. (Files
    /// sharing a budget and writing at the same moment may still spill;
    /// that is only slower, never wrong.) A write this answers `false` for
    /// (a missing array, a region out of bounds) gives its error from
    /// [`ArrayFile::write_array`].
    pub fn write_is_in_memory<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        data: &ArrayViewD<'_, T>,
    ) -> bool {
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
        if raw_bytes > IN_MEMORY_WRITE_BYTES || !self.pending.has_room(2 * raw_bytes + (64 << 10)) {
            return false;
        }
        if let Some(p) = self.pending.arrays.get(name) {
            // A spilled chunk would be merged with or replaced in the
            // scratch file.
            let spilled = !p
                .chunks
                .values()
                .all(super::pending::PendingChunk::is_in_memory);
            match p.kind {
                RecordKind::Define => return !spilled,
                RecordKind::Delete => return false,
                RecordKind::Update if spilled => return false,
                RecordKind::Update => {}
            }
        }
        if !self.state_nowait(name) {
            return false;
        }
        let Ok(Some(view)) = self.try_view(name) else {
            return false;
        };
        let schema = view.schema;
        let Ok((start, count)) = write_region(name, schema, start, data) else {
            return false;
        };
        // Every chunk touched is covered whole: the region starts on a chunk
        // boundary and ends on one or at the array's edge, on every axis.
        start
            .iter()
            .zip(&count)
            .zip(schema.chunk_shape.iter().zip(&schema.shape))
            .all(|((&s, &n), (&c, &ext))| s % c == 0 && ((s + n) % c == 0 || s + n == ext))
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
        let compression = self.options.compression;
        if let Some(values) = whole_single_chunk(schema, start, &data) {
            // The usual write of a small dataset: every cell of a one-chunk
            // array, in standard layout. Encoded as the general path below
            // would encode it (chunk 0, wholly covered), without its region
            // and range vectors (a fifth of such a write's instructions in
            // W1, under callgrind).
            let (stored, meta) = encode_chunk(compression, name, schema, values)?;
            let schema = Arc::clone(schema);
            return self.put_encoded(name, &schema, vec![(0, stored, meta)]);
        }
        let (start, count) = write_region(name, schema, start, &data)?;
        if count.contains(&0) {
            return Ok(());
        }
        let fill: T = fill_of(schema);
        let mut chunks = Vec::new();
        for idx in schema.chunks_touching(&start, &count) {
            let (origin, cshape) = schema.chunk_region(idx);
            let ranges = slab::intersect(&origin, &cshape, &start, &count);
            let (cr, rr): (Vec<_>, Vec<_>) = ranges.into_iter().unzip();
            let covered = cr
                .iter()
                .zip(&cshape)
                .all(|(&(a, b), &s)| a == 0 && b as u64 == s);
            let (stored, meta) = if covered {
                encode_covered(compression, name, schema, &data, &rr)?
            } else {
                let mut base = if let Some(src) = view.source(idx) {
                    self.chunk_array::<T>(&src, &cshape, true)?
                } else {
                    let d: Vec<usize> = cshape.iter().map(|&s| s as usize).collect();
                    ArrayD::from_elem(IxDyn(&d), fill.clone())
                };
                slab::copy_box(&mut base.view_mut(), &cr, &data, &rr);
                let values = base.as_slice().expect("standard layout");
                encode_chunk(compression, name, schema, values)?
            };
            chunks.push((idx, stored, meta));
        }
        let schema = Arc::clone(schema);
        self.put_encoded(name, &schema, chunks)
    }

    /// Stores `chunks` of `name` (whose current schema is `schema`) as
    /// pending, creating the array's pending record if it has none.
    fn put_encoded(
        &mut self,
        name: &str,
        schema: &Arc<ArraySchema>,
        chunks: Vec<(u64, Vec<u8>, BlockMeta)>,
    ) -> Result<()> {
        let created_record = !self.pending.arrays.contains_key(name);
        // The record shares the schema only when it is new (a write over
        // committed data): a write into a pending array's record needs none.
        if created_record {
            self.pending
                .set_record(name, RecordKind::Update, Some(Arc::clone(schema)));
        }
        self.pending
            .put_chunks(name, chunks, created_record, &self.storage, &self.dir)
    }

    /// Writes every cell of `name` from cells encoded ahead (see
    /// [`EncodedArray`]): the same pending chunks as
    /// [`ArrayFile::write_array`] of those cells at the origin. An owned
    /// value gives its chunks to the file; a borrowed one is copied.
    ///
    /// `EncodedMismatch` when the array's schema is not the one the cells
    /// were encoded for, or this file compresses with other options.
    pub fn write_encoded(&mut self, name: &str, cells: Cow<'_, EncodedArray>) -> Result<()> {
        let schema = Arc::clone(self.view_or_err(name)?.schema);
        let mismatch = |reason| Error::EncodedMismatch {
            name: name.to_owned(),
            reason,
        };
        if !Arc::ptr_eq(&schema, &cells.schema) && *schema != *cells.schema {
            return Err(mismatch("they were encoded for another schema"));
        }
        cells.check_compression(name, self.options.compression)?;
        if schema.shape.contains(&0) {
            // No cell to write: as `write_array`, no pending record either.
            return Ok(());
        }
        let chunks = match cells {
            Cow::Owned(c) => c.chunks,
            Cow::Borrowed(c) => c.chunks.clone(),
        };
        self.put_encoded(name, &schema, chunks)
    }
}

/// The region a write of `data` at `start` (empty: the origin) covers in
/// `name` of `schema`, checked: the data's rank, then the bounds.
/// The cells of `data`, when writing it at `start` writes every cell of an
/// array of `schema` that is one chunk (so has cells, as
/// [`EncodedArray::encode`] takes it), and `data` is in standard layout;
/// `None` otherwise (the general path decides, errors included).
fn whole_single_chunk<'a, T>(
    schema: &ArraySchema,
    start: &[u64],
    data: &'a ArrayViewD<'_, T>,
) -> Option<&'a [T]> {
    let whole = schema.n_chunks() == 1
        && data.ndim() == schema.rank()
        && (start.is_empty() || start.len() == schema.rank())
        && start.iter().all(|&s| s == 0)
        && data
            .shape()
            .iter()
            .zip(&schema.shape)
            .all(|(&n, &s)| n as u64 == s);
    if whole {
        data.as_slice()
    } else {
        None
    }
}

fn write_region<T>(
    name: &str,
    schema: &ArraySchema,
    start: &[u64],
    data: &ArrayViewD<'_, T>,
) -> Result<(Vec<u64>, Vec<u64>)> {
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
    schema.resolve_region(name, &start, &count)
}

/// Every chunk of a whole array, encoded and summarised without a file
/// (and so without its lock): what [`ArrayFile::write_encoded`] stores.
/// An importer encodes on its decoding threads while the writer holds the
/// store's locks for other work.
#[derive(Clone, Debug)]
pub struct EncodedArray {
    schema: Arc<ArraySchema>,
    compression: Compression,
    chunks: Vec<(u64, Vec<u8>, BlockMeta)>,
}

impl EncodedArray {
    /// Encodes `data`, every cell of an array of `schema` (`name` is for
    /// errors), with `compression`: chunk by chunk, with each chunk's
    /// statistics, exactly as a write of `data` at the origin would.
    ///
    /// Errors when the element type is not the schema's
    /// (`DTypeMismatch`), the shape is not the schema's whole shape
    /// (`RankMismatch`, `ShapeMismatch`), or a chunk cannot be represented
    /// (`Unrepresentable`).
    ///
    /// ```
    /// use std::{borrow::Cow, path::Path, sync::Arc};
    /// use array_format::{
    ///     ArrayFile, ArrayFileOptions, ArraySchema, DType, DeltaCache, EncodedArray, MemoryStorage,
    /// };
    /// let schema = Arc::new(
    ///     ArraySchema::new("t", DType::Float32, vec!["x".into()], vec![4], Some(vec![2]), None)
    ///         .unwrap(),
    /// );
    /// let opts = ArrayFileOptions::default();
    /// // No file needed to encode.
    /// let cells = ndarray::arr1(&[1.0f32, 2.0, 3.0, 4.0]).into_dyn();
    /// let enc = EncodedArray::encode("t", Arc::clone(&schema), opts.compression, cells.view())?;
    /// assert_eq!(enc.raw_bytes(), 16);
    /// let mut f = ArrayFile::create(
    ///     Arc::new(MemoryStorage::new()),
    ///     Path::new("/f"),
    ///     opts,
    ///     Arc::new(DeltaCache::default()),
    /// )?;
    /// f.define_new("t", schema)?;
    /// f.write_encoded("t", Cow::Owned(enc))?;
    /// let back = f.read_array::<f32>("t", &[], &[])?;
    /// assert_eq!(back, cells);
    /// # Ok::<(), array_format::Error>(())
    /// ```
    #[allow(clippy::needless_pass_by_value)] // views are cheap; by value matches `arr.view()` call sites
    pub fn encode<T: ArrayElement>(
        name: &str,
        schema: Arc<ArraySchema>,
        compression: Compression,
        data: ArrayViewD<'_, T>,
    ) -> Result<EncodedArray> {
        schema.validate(name)?;
        ArrayFile::check_dtype::<T>(name, &schema)?;
        if data.ndim() != schema.rank() {
            return Err(Error::RankMismatch {
                name: name.to_owned(),
                expected: schema.rank(),
                actual: data.ndim(),
            });
        }
        if data
            .shape()
            .iter()
            .zip(&schema.shape)
            .any(|(&n, &s)| n as u64 != s)
        {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: schema.shape.clone(),
                actual: data.shape().iter().map(|&n| n as u64).collect(),
            });
        }
        let mut chunks = Vec::new();
        if schema.shape.contains(&0) {
            // No cell, no chunk.
        } else if schema.n_chunks() == 1 {
            // One chunk, which the data covers whole: no grid to walk (that
            // walk was a fifth of encoding a small array).
            let rr: Vec<(usize, usize)> = data.shape().iter().map(|&n| (0, n)).collect();
            let (stored, meta) = encode_covered(compression, name, &schema, &data, &rr)?;
            chunks.push((0, stored, meta));
        } else {
            let zero = vec![0; schema.rank()];
            for idx in schema.chunks_touching(&zero, &schema.shape) {
                let (origin, cshape) = schema.chunk_region(idx);
                let rr: Vec<(usize, usize)> =
                    slab::intersect(&origin, &cshape, &zero, &schema.shape)
                        .into_iter()
                        .map(|(_, r)| r)
                        .collect();
                let (stored, meta) = encode_covered(compression, name, &schema, &data, &rr)?;
                chunks.push((idx, stored, meta));
            }
        }
        Ok(EncodedArray {
            schema,
            compression,
            chunks,
        })
    }

    /// The schema the cells were encoded for.
    pub fn schema(&self) -> &Arc<ArraySchema> {
        &self.schema
    }

    /// `EncodedMismatch` unless the cells were encoded with `compression`:
    /// a file (array `name`) compressing otherwise does not store them
    /// ([`ArrayFile::write_encoded`] checks this; a caller can check before
    /// it gives the cells up).
    pub fn check_compression(&self, name: &str, compression: Compression) -> Result<()> {
        if self.compression == compression {
            Ok(())
        } else {
            Err(Error::EncodedMismatch {
                name: name.to_owned(),
                reason: "they were compressed with other options than this file's",
            })
        }
    }

    /// Bytes of the cells before compression (their raw encoding).
    pub fn raw_bytes(&self) -> u64 {
        self.chunks.iter().map(|(_, _, m)| m.raw_len).sum()
    }

    /// Bytes of the compressed chunks.
    pub fn stored_bytes(&self) -> u64 {
        self.chunks.iter().map(|(_, s, _)| s.len() as u64).sum()
    }

    /// Statistics of the whole array once these cells are stored in it:
    /// what [`ArrayFile::array_stats`] then returns, folded from the
    /// chunks' statistics (nothing is decoded).
    pub fn stats(&self) -> ArrayStats {
        let mut stats = ArrayStats::all_null(self.schema.n_cells());
        for (idx, _, meta) in &self.chunks {
            stats.add_chunk(self.schema.chunk_cells(*idx), &meta.stats);
        }
        stats
    }
}

/// Encodes a chunk that `data` covers whole, its cells at `ranges` of
/// `data`: from the caller's cells when they are the whole of
/// standard-layout data (a small array written at once), else from a copy
/// in standard layout.
fn encode_covered<T: ArrayElement>(
    compression: Compression,
    name: &str,
    schema: &ArraySchema,
    data: &ArrayViewD<'_, T>,
    ranges: &[(usize, usize)],
) -> Result<(Vec<u8>, BlockMeta)> {
    let whole = ranges
        .iter()
        .zip(data.shape())
        .all(|(&(a, b), &n)| a == 0 && b == n);
    if let Some(values) = data.as_slice().filter(|_| whole) {
        return encode_chunk(compression, name, schema, values);
    }
    let copy = slab::extract(data, ranges);
    encode_chunk(
        compression,
        name,
        schema,
        copy.as_slice().expect("standard layout"),
    )
}

/// Encodes one chunk's cells with `compression`, with its statistics.
fn encode_chunk<T: ArrayElement>(
    compression: Compression,
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
    let (stored, codec, filter) = encode_block(&raw, width, compression);
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

    /// Every cell of `name`, in order.
    fn read_all(f: &ArrayFile, name: &str) -> Vec<f32> {
        f.read_array::<f32>(name, &[], &[])
            .unwrap()
            .into_iter()
            .collect()
    }

    #[test]
    fn only_small_writes_to_pending_definitions_are_in_memory() {
        let mut f = file(1 << 20);
        f.define_array::<f32>("a", vec!["x".into()], vec![50], None, None)
            .unwrap();
        assert!(f.write_is_in_memory("a", &[], &cells(50, 1.0).view()));
        assert!(!f.write_is_in_memory("missing", &[], &cells(50, 1.0).view()));
        let big = cells((IN_MEMORY_WRITE_BYTES / 4 + 1) as usize, 1.0);
        assert!(!f.write_is_in_memory("a", &[], &big.view()));
        f.write_array("a", &[], cells(50, 2.0).view()).unwrap();
        // Still pending: a partly covering write merges with memory only.
        assert!(f.write_is_in_memory("a", &[], &cells(10, 3.0).view()));
        f.write_array("a", &[5], cells(10, 3.0).view()).unwrap();
        f.flush().unwrap();
        let back = read_all(&f, "a");
        let mut want = vec![2.0f32; 50];
        want[5..15].fill(3.0);
        assert_eq!(back, want);
        // Committed now, its state built by the read: a write of the whole
        // chunk reads nothing; one of part of it merges with the layers.
        assert!(f.write_is_in_memory("a", &[], &cells(50, 1.0).view()));
        assert!(!f.write_is_in_memory("a", &[5], &cells(10, 1.0).view()));
        // Strings count their bytes.
        f.define_array::<String>("s", vec!["x".into()], vec![2], None, None)
            .unwrap();
        let long = ArrayD::from_elem(IxDyn(&[2]), "y".repeat(IN_MEMORY_WRITE_BYTES as usize));
        assert!(!f.write_is_in_memory("s", &[], &long.view()));
        let short = ArrayD::from_elem(IxDyn(&[2]), "y".to_owned());
        assert!(f.write_is_in_memory("s", &[], &short.view()));
    }

    #[test]
    fn a_write_that_may_spill_or_merge_with_spilled_chunks_is_not_in_memory() {
        // No room in the budget: the write would spill.
        let mut f = file(64);
        f.define_array::<f32>("a", vec!["x".into()], vec![50], Some(vec![10]), None)
            .unwrap();
        assert!(!f.write_is_in_memory("a", &[], &cells(50, 1.0).view()));
        f.write_array("a", &[], cells(50, 1.0).view()).unwrap();
        assert_eq!(f.pending_mem_bytes(), 0, "spilled");
        // Room again, but the array's chunks are in the scratch file.
        let mut options = f.options();
        options.pending_budget_bytes = 1 << 30;
        f.set_options(options).unwrap();
        assert!(!f.write_is_in_memory("a", &[], &cells(5, 1.0).view()));
    }

    #[test]
    fn whole_chunk_writes_over_built_committed_state_are_in_memory() {
        let storage: Arc<dyn crate::Storage> = Arc::new(MemoryStorage::new());
        let opts = ArrayFileOptions {
            pending_budget_bytes: 1 << 20,
            ..ArrayFileOptions::default()
        };
        let mut f = ArrayFile::create(
            Arc::clone(&storage),
            Path::new("/g"),
            opts,
            Arc::new(DeltaCache::default()),
        )
        .unwrap();
        // 45 cells in chunks of 10: the last chunk holds 5.
        f.define_array::<f32>("a", vec!["x".into()], vec![45], Some(vec![10]), None)
            .unwrap();
        f.write_array("a", &[], cells(45, 1.0).view()).unwrap();
        f.flush().unwrap();
        let layers = f.layers();
        drop(f);
        let open = |raw_capacity_bytes| {
            let cache = DeltaCache::new(crate::DeltaCacheConfig {
                raw_capacity_bytes,
                decoded_capacity_bytes: 1 << 20,
            });
            ArrayFile::open(
                Arc::clone(&storage),
                Path::new("/g"),
                &layers,
                opts,
                Arc::new(cache),
            )
            .unwrap()
        };
        // Opened afresh, without a raw cache level to fetch the footer block
        // into: the schema would be read from storage.
        let f = open(0);
        assert!(!f.write_is_in_memory("a", &[10], &cells(20, 2.0).view()));
        assert!(f.try_schema("a").unwrap().is_some());
        assert!(f.write_is_in_memory("a", &[10], &cells(20, 2.0).view()));
        // With one, the footer block storage has at once is fetched.
        let mut f = open(1 << 20);
        assert!(f.write_is_in_memory("a", &[10], &cells(20, 2.0).view()));
        assert!(
            f.write_is_in_memory("a", &[40], &cells(5, 2.0).view()),
            "the edge chunk"
        );
        assert!(f.write_is_in_memory("a", &[], &cells(45, 2.0).view()));
        assert!(
            !f.write_is_in_memory("a", &[5], &cells(10, 2.0).view()),
            "two partial chunks"
        );
        assert!(
            !f.write_is_in_memory("a", &[10], &cells(15, 2.0).view()),
            "ends inside a chunk"
        );
        assert!(
            !f.write_is_in_memory("a", &[40], &cells(6, 2.0).view()),
            "out of bounds"
        );
        assert!(!f.write_is_in_memory("a", &[], &ArrayD::from_elem(IxDyn(&[5, 9]), 1.0f32).view()));
        f.write_array("a", &[10], cells(20, 2.0).view()).unwrap();
        f.write_array("a", &[40], cells(5, 3.0).view()).unwrap();
        let back = read_all(&f, "a");
        let mut want = vec![1.0f32; 45];
        want[10..30].fill(2.0);
        want[40..].fill(3.0);
        assert_eq!(back, want);
        // An update whose pending chunks spilled: not in memory.
        let mut options = f.options();
        options.pending_budget_bytes = 0;
        f.set_options(options).unwrap();
        f.write_array("a", &[0], cells(10, 4.0).view()).unwrap();
        assert_eq!(f.pending_mem_bytes(), 0, "spilled");
        options.pending_budget_bytes = 1 << 30;
        f.set_options(options).unwrap();
        assert!(!f.write_is_in_memory("a", &[20], &cells(10, 2.0).view()));
        // A deleted array's writes are not.
        f.delete_array("a").unwrap();
        assert!(!f.write_is_in_memory("a", &[], &cells(45, 2.0).view()));
    }
}
