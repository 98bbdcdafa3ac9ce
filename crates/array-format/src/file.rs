//! [`ArrayFile`]: many named arrays in an ordered list of immutable layer files,
//! plus a pending in-memory layer.
//!
//! Reads resolve each chunk to its newest version: the pending layer, then the
//! committed layers through a merged index built when the file is opened (so a
//! lookup costs the same with 1 or 100 layers). `flush` writes the pending layer
//! as one new layer file; `compact` writes the merged state as one new base.
//!
//! **Invariant:** a layer file, once written, is never modified, and its name is
//! never used for other bytes: names carry a random 128-bit uid and are created
//! with `create_new`.
//!
//! **Invariant:** this module never lists a directory to find layers; the
//! caller passes the exact ordered list (the registry's commit point).

mod pending;
mod slab;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indexmap::IndexMap;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::cache::{BlockKey, DeltaCache};
use crate::codec::{decode_block, encode_block, Compression, DecodeError};
use crate::dtype::{DType, FillValue};
use crate::element::{decode_cells, encode_cells, ArrayElement};
use crate::error::{Error, Result};
use crate::layer::{
    open_layer_handle, BlockMeta, ChunkEntry, Footer, Layer, LayerWriter, RecordKind,
};
use crate::schema::{validate_array_name, ArraySchema, MAX_CHUNK_BYTES};
use crate::stats::{ArrayStats, ChunkStats};
use crate::storage::{ReadHandle, Storage};
pub use pending::PendingBudget;
use pending::{Pending, PendingChunk};

/// The name of one layer file inside an array file's directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(String);

impl LayerId {
    /// Wraps a file name; `None` unless it looks like a layer name
    /// (`[db]-<32 hex>.af`), so a registry cannot point outside the directory.
    pub fn new(name: impl Into<String>) -> Option<LayerId> {
        let name = name.into();
        let ok = name.len() == 37
            && (name.starts_with("d-") || name.starts_with("b-"))
            && name.as_bytes()[34..] == *b".af"
            && name.as_bytes()[2..34]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        ok.then_some(LayerId(name))
    }

    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A random 128-bit id, unique across processes and time with overwhelming
/// probability (std's randomly keyed hasher over the clock, a counter and the pid).
pub fn random_uid() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(t);
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_u64(salt);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Write-side settings of an [`ArrayFile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayFileOptions {
    /// How new chunks are compressed.
    pub compression: Compression,
    /// Pending (unflushed) chunk bytes kept in memory before spilling to a scratch file.
    pub pending_budget_bytes: u64,
}

impl Default for ArrayFileOptions {
    fn default() -> Self {
        ArrayFileOptions {
            compression: Compression::default(),
            pending_budget_bytes: 256 << 20,
        }
    }
}

/// Where a committed chunk lives.
#[derive(Clone, Debug)]
struct Loc {
    layer: u32,
    entry: ChunkEntry,
}

#[derive(Clone, Debug)]
struct Committed {
    schema: ArraySchema,
    chunks: BTreeMap<u64, Loc>,
    /// The layer whose `Define` record gave the schema.
    defined_in: u32,
}

/// A layer written to storage but not yet part of the file's state; see
/// [`ArrayFile::write_pending`] and [`ArrayFile::compact_prepare`].
#[derive(Debug)]
pub struct PreparedLayer {
    layer: Arc<Layer>,
    footer: Footer,
    kind: PreparedKind,
}

/// What a prepared layer was built from, so it is installed only on that state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PreparedKind {
    /// A delta of the pending changes at this pending generation.
    Delta { generation: u64 },
    /// A base merged from exactly these committed layers (by uid).
    Base { sources: Vec<u128> },
}

impl PreparedLayer {
    /// The new layer's id.
    pub fn id(&self) -> LayerId {
        LayerId(self.layer.name.clone())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.layer.path
    }
}

/// The metadata of one array as seen after merging every layer and the pending changes.
#[derive(Clone, Debug, PartialEq)]
pub struct MergedArrayMeta {
    /// Array name.
    pub name: String,
    /// Its schema.
    pub schema: ArraySchema,
    /// Statistics over every cell.
    pub stats: ArrayStats,
    /// Chunks that hold data (the rest read as the fill value).
    pub n_chunks_stored: u64,
    /// Stored (compressed) bytes of those chunks.
    pub stored_bytes: u64,
    /// Raw (uncompressed) bytes of those chunks.
    pub raw_bytes: u64,
}

/// A chunk's newest version.
enum Source<'a> {
    Layer(&'a Loc),
    Pending(&'a PendingChunk),
}

impl Source<'_> {
    fn meta(&self) -> (u64, &ChunkStats) {
        match self {
            Source::Layer(l) => (l.entry.raw_len, &l.entry.stats),
            Source::Pending(p) => (p.meta.raw_len, &p.meta.stats),
        }
    }
}

/// How an array looks after merging.
struct View<'a> {
    schema: &'a ArraySchema,
    committed: Option<&'a Committed>,
    pending: Option<&'a BTreeMap<u64, PendingChunk>>,
}

impl<'a> View<'a> {
    fn source(&self, chunk_idx: u64) -> Option<Source<'a>> {
        if let Some(p) = self.pending.and_then(|p| p.get(&chunk_idx)) {
            return Some(Source::Pending(p));
        }
        self.committed
            .and_then(|c| c.chunks.get(&chunk_idx))
            .map(Source::Layer)
    }

    /// Every stored chunk index, ascending.
    fn stored_chunks(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .committed
            .map(|c| c.chunks.keys().copied().collect())
            .unwrap_or_default();
        if let Some(p) = self.pending {
            v.extend(p.keys().copied());
            v.sort_unstable();
            v.dedup();
        }
        v
    }
}

/// Many named N-d arrays stored as an ordered list of immutable layer files in
/// one directory, with a pending layer of unflushed writes.
///
/// ```
/// use std::sync::Arc;
/// use array_format::{ArrayFile, ArrayFileOptions, DeltaCache, MemoryStorage};
/// use ndarray::ArrayD;
///
/// let storage = Arc::new(MemoryStorage::new());
/// let cache = Arc::new(DeltaCache::default());
/// let mut f = ArrayFile::create(storage.clone(), "/t".as_ref(), ArrayFileOptions::default(), cache.clone())?;
/// f.define_array::<f32>("a", vec!["x".into()], vec![4], None, None)?;
/// f.write_array("a", &[1], ArrayD::from_elem(ndarray::IxDyn(&[2]), 7.0f32).view())?;
/// let layers = vec![f.flush()?.expect("something to flush")];
///
/// let g = ArrayFile::open(storage, "/t".as_ref(), &layers, ArrayFileOptions::default(), cache)?;
/// assert_eq!(g.read_array::<f32>("a", &[], &[])?.into_raw_vec_and_offset().0, vec![0.0, 7.0, 7.0, 0.0]);
/// # Ok::<(), array_format::Error>(())
/// ```
#[derive(Debug)]
pub struct ArrayFile {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: ArrayFileOptions,
    cache: Arc<DeltaCache>,
    layers: Vec<Arc<Layer>>,
    committed: IndexMap<String, Committed>,
    pending: Pending,
}

fn fill_of<T: ArrayElement>(schema: &ArraySchema) -> T {
    schema
        .fill_value
        .as_ref()
        .and_then(T::from_fill)
        .unwrap_or_default()
}

impl ArrayFile {
    /// An empty array file in `dir` (created if missing), with no layers.
    pub fn create(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: ArrayFileOptions,
        cache: Arc<DeltaCache>,
    ) -> Result<Self> {
        options.compression.codec.check_available(dir)?;
        storage.create_dir_all(dir)?;
        Ok(ArrayFile {
            storage,
            dir: dir.to_owned(),
            options,
            cache,
            layers: Vec::new(),
            committed: IndexMap::new(),
            pending: Pending::with_budget(Arc::new(PendingBudget::new(
                options.pending_budget_bytes,
            ))),
        })
    }

    /// Opens the file made of exactly `layers`, oldest first.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        layers: &[LayerId],
        options: ArrayFileOptions,
        cache: Arc<DeltaCache>,
    ) -> Result<Self> {
        let handles = Self::open_handles(storage.as_ref(), dir, layers)?;
        Self::open_with_handles(storage, dir, handles, options, cache)
    }

    /// Opens read handles on `layers` without decoding anything. Holding them
    /// pins a snapshot: the files stay readable even if they are removed later.
    pub fn open_handles(
        storage: &dyn Storage,
        dir: &Path,
        layers: &[LayerId],
    ) -> Result<Vec<(LayerId, Arc<dyn ReadHandle>)>> {
        layers
            .iter()
            .map(|id| Ok((id.clone(), storage.open_read(&dir.join(id.as_str()))?)))
            .collect()
    }

    /// Opens the file made of layers whose handles were opened earlier with
    /// [`ArrayFile::open_handles`], oldest first.
    pub fn open_with_handles(
        storage: Arc<dyn Storage>,
        dir: &Path,
        layers: Vec<(LayerId, Arc<dyn ReadHandle>)>,
        options: ArrayFileOptions,
        cache: Arc<DeltaCache>,
    ) -> Result<Self> {
        options.compression.codec.check_available(dir)?;
        let mut f = ArrayFile {
            storage,
            dir: dir.to_owned(),
            options,
            cache,
            layers: Vec::with_capacity(layers.len()),
            committed: IndexMap::new(),
            pending: Pending::with_budget(Arc::new(PendingBudget::new(
                options.pending_budget_bytes,
            ))),
        };
        for (id, handle) in layers {
            let (layer, footer) = open_layer_handle(handle, &dir.join(id.as_str()))?;
            f.apply(Arc::new(layer), footer)?;
        }
        Ok(f)
    }

    /// Folds one layer (the newest) into the merged index.
    fn apply(&mut self, layer: Arc<Layer>, footer: Footer) -> Result<()> {
        let idx = u32::try_from(self.layers.len()).expect("fewer than 2^32 layers");
        let path = layer.path.clone();
        self.layers.push(layer);
        for rec in footer.records {
            let locs = rec
                .chunks
                .into_iter()
                .map(|entry| (entry.chunk_idx, Loc { layer: idx, entry }));
            match rec.kind {
                RecordKind::Delete => {
                    self.committed.shift_remove(&rec.name);
                }
                RecordKind::Define => {
                    let schema = rec.schema.expect("decoded define records carry a schema");
                    let c = Committed {
                        schema,
                        chunks: locs.collect(),
                        defined_in: idx,
                    };
                    // A redefinition moves the name to the end, like a new array.
                    self.committed.shift_remove(&rec.name);
                    self.committed.insert(rec.name, c);
                }
                RecordKind::Update => {
                    let Some(c) = self.committed.get_mut(&rec.name) else {
                        return Err(Error::corrupt(
                            &path,
                            0,
                            format!(
                                "layer updates array {:?}, which earlier layers do not define",
                                rec.name
                            ),
                        ));
                    };
                    if rec.schema.as_ref() != Some(&c.schema) {
                        return Err(Error::corrupt(
                            &path,
                            0,
                            format!(
                                "layer changes the schema of array {:?} without redefining it",
                                rec.name
                            ),
                        ));
                    }
                    c.chunks.extend(locs);
                }
            }
        }
        Ok(())
    }

    /// The directory holding the layer files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committed layers, oldest first.
    pub fn layers(&self) -> Vec<LayerId> {
        self.layers
            .iter()
            .map(|l| LayerId(l.name.clone()))
            .collect()
    }

    /// Write-side settings.
    pub fn options(&self) -> ArrayFileOptions {
        self.options
    }

    /// Counts this file's pending memory against `budget`, shared with other
    /// files (a store shares one budget between all its array files), instead
    /// of the private budget of `ArrayFileOptions::pending_budget_bytes`.
    pub fn share_budget(&mut self, budget: Arc<PendingBudget>) {
        self.pending.set_budget(budget);
    }

    /// Changes the write-side settings (existing chunks keep their codec);
    /// `CodecUnavailable` for a codec this build lacks.
    /// A new `pending_budget_bytes` gives the file a private budget of that size.
    pub fn set_options(&mut self, options: ArrayFileOptions) -> Result<()> {
        options.compression.codec.check_available(&self.dir)?;
        if options.pending_budget_bytes != self.options.pending_budget_bytes {
            self.pending
                .set_budget(Arc::new(PendingBudget::new(options.pending_budget_bytes)));
        }
        self.options = options;
        Ok(())
    }

    /// True when there are unflushed changes.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Bytes of unflushed chunks held in memory (the rest are in the scratch file).
    pub fn pending_mem_bytes(&self) -> u64 {
        self.pending.mem_bytes()
    }

    fn view(&self, name: &str) -> Option<View<'_>> {
        match self.pending.arrays.get(name) {
            Some(p) => match p.kind {
                RecordKind::Delete => None,
                RecordKind::Define => Some(View {
                    schema: p.schema.as_ref().expect("define has a schema"),
                    committed: None,
                    pending: Some(&p.chunks),
                }),
                RecordKind::Update => self.committed.get(name).map(|c| View {
                    schema: &c.schema,
                    committed: Some(c),
                    pending: Some(&p.chunks),
                }),
            },
            None => self.committed.get(name).map(|c| View {
                schema: &c.schema,
                committed: Some(c),
                pending: None,
            }),
        }
    }

    fn view_or_err(&self, name: &str) -> Result<View<'_>> {
        self.view(name).ok_or_else(|| Error::ArrayNotFound {
            name: name.to_owned(),
        })
    }

    /// True when `name` is defined (pending changes included).
    pub fn contains(&self, name: &str) -> bool {
        self.view(name).is_some()
    }

    /// Names of the defined arrays: committed ones in file order, then new ones.
    pub fn list_arrays(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .committed
            .keys()
            .filter(|n| self.view(n).is_some())
            .cloned()
            .collect();
        out.extend(
            self.pending
                .arrays
                .iter()
                .filter(|(n, p)| p.kind == RecordKind::Define && !self.committed.contains_key(*n))
                .map(|(n, _)| n.clone()),
        );
        out
    }

    /// Number of defined arrays.
    pub fn len(&self) -> usize {
        self.list_arrays().len()
    }

    /// True when no array is defined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file that gave an array its schema: the layer holding its `Define`
    /// record, or the directory while the definition is still pending.
    pub fn schema_origin(&self, name: &str) -> Option<&Path> {
        let view = self.view(name)?;
        Some(match view.committed {
            Some(c)
                if view.pending.is_none_or(|_| {
                    self.pending
                        .arrays
                        .get(name)
                        .is_none_or(|p| p.kind != RecordKind::Define)
                }) =>
            {
                &self.layers[c.defined_in as usize].path
            }
            _ => &self.dir,
        })
    }

    /// The schema of an array.
    pub fn schema(&self, name: &str) -> Option<&ArraySchema> {
        self.view(name).map(|v| v.schema)
    }

    /// Defines a new array. `chunk_shape = None` means one chunk of the full shape.
    pub fn define_array<T: ArrayElement>(
        &mut self,
        name: &str,
        dims: Vec<String>,
        shape: Vec<u64>,
        chunk_shape: Option<Vec<u64>>,
        fill_value: Option<FillValue>,
    ) -> Result<()> {
        let schema = ArraySchema::new(name, T::DTYPE, dims, shape, chunk_shape, fill_value)?;
        self.define(name, schema)
    }

    /// Defines a new array from a ready schema (dtype chosen at run time).
    pub fn define(&mut self, name: &str, schema: ArraySchema) -> Result<()> {
        validate_array_name(name)?;
        schema.validate(name)?;
        if self.contains(name) {
            return Err(Error::ArrayExists {
                name: name.to_owned(),
            });
        }
        self.pending
            .set_record(name, RecordKind::Define, Some(schema));
        Ok(())
    }

    /// Deletes an array; its chunks can never come back, even if the name is
    /// defined again.
    pub fn delete_array(&mut self, name: &str) -> Result<()> {
        self.view_or_err(name)?;
        if self.committed.contains_key(name) {
            self.pending.set_record(name, RecordKind::Delete, None);
        } else {
            self.pending.remove(name);
        }
        Ok(())
    }

    /// Decoded raw bytes of a chunk's newest version.
    fn chunk_raw(&self, src: &Source<'_>, width: usize, fill_cache: bool) -> Result<Arc<Vec<u8>>> {
        match src {
            Source::Layer(loc) => {
                let layer = &self.layers[loc.layer as usize];
                let e = &loc.entry;
                let key = BlockKey {
                    layer_uid: layer.uid,
                    offset: e.offset,
                };
                let read = || read_stored(layer, e);
                let decode = |stored: &[u8]| {
                    decode_checked(
                        stored,
                        e.crc,
                        e.codec,
                        e.filter,
                        width,
                        e.raw_len,
                        &layer.path,
                        e.offset,
                    )
                };
                if fill_cache {
                    self.cache
                        .decoded(key, || decode(&self.cache.raw(key, read)?))
                } else {
                    self.cache
                        .decoded_streaming(key, || decode(&self.cache.raw_streaming(key, read)?))
                }
            }
            Source::Pending(p) => {
                let stored = self.pending.stored_bytes(p)?;
                let m = &p.meta;
                decode_checked(
                    &stored, m.crc, m.codec, m.filter, width, m.raw_len, &self.dir, 0,
                )
                .map(Arc::new)
            }
        }
    }

    /// One chunk's cells as an array of its (edge-clipped) shape.
    fn chunk_array<T: ArrayElement>(
        &self,
        src: &Source<'_>,
        shape: &[u64],
        fill_cache: bool,
    ) -> Result<ArrayD<T>> {
        let width = T::DTYPE.size_bytes().unwrap_or(0);
        let raw = self.chunk_raw(src, width, fill_cache)?;
        let (path, offset) = match src {
            Source::Layer(l) => (&self.layers[l.layer as usize].path, l.entry.offset),
            Source::Pending(_) => (&self.dir, 0),
        };
        cells_array(&raw, shape, path, offset)
    }

    fn check_dtype<T: ArrayElement>(name: &str, schema: &ArraySchema) -> Result<()> {
        if schema.dtype == T::DTYPE {
            Ok(())
        } else {
            Err(Error::DTypeMismatch {
                name: name.to_owned(),
                stored: schema.dtype,
                requested: T::DTYPE,
            })
        }
    }

    /// Reads a hyperslab; empty `start` and `count` read the whole array.
    /// Cells never written read as the fill value (the type's zero without one).
    pub fn read_array<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
    ) -> Result<ArrayD<T>> {
        self.read_array_with(name, start, count, true)
    }

    /// Like [`ArrayFile::read_array`], but blocks that miss the cache are not
    /// added to it: for scans, which would otherwise evict the point-read
    /// working set with blocks they never revisit.
    pub fn read_array_streaming<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
    ) -> Result<ArrayD<T>> {
        self.read_array_with(name, start, count, false)
    }

    fn read_array_with<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
        fill_cache: bool,
    ) -> Result<ArrayD<T>> {
        self.read_with(name, start, count, |src, cshape| {
            self.chunk_array(src, cshape, fill_cache)
        })
    }

    /// Assembles a hyperslab, getting each stored chunk from `load`.
    fn read_with<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
        mut load: impl FnMut(&Source<'_>, &[u64]) -> Result<ArrayD<T>>,
    ) -> Result<ArrayD<T>> {
        let view = self.view_or_err(name)?;
        let schema = view.schema;
        Self::check_dtype::<T>(name, schema)?;
        let (start, count) = schema.resolve_region(name, start, count)?;
        let dims: Vec<usize> = count.iter().map(|&c| c as usize).collect();
        let fill: T = fill_of(schema);
        if count.contains(&0) {
            return Ok(ArrayD::from_elem(IxDyn(&dims), fill));
        }
        // A region must fit in memory: refuse it up front, before enumerating
        // its chunks, rather than aborting on an impossible allocation.
        region_fits::<T>(name, &count)?;
        let touched = schema.chunks_touching(&start, &count);
        // Fast path: the region is exactly one stored chunk.
        if let [only] = touched[..] {
            let (origin, cshape) = schema.chunk_region(only);
            if origin == start && cshape == count {
                return match view.source(only) {
                    Some(src) => load(&src, &cshape),
                    None => Ok(ArrayD::from_elem(IxDyn(&dims), fill)),
                };
            }
        }
        let mut out = filled_array(name, &dims, fill)?;
        for idx in touched {
            let Some(src) = view.source(idx) else {
                continue;
            };
            let (origin, cshape) = schema.chunk_region(idx);
            let chunk = load(&src, &cshape)?;
            let ranges = slab::intersect(&origin, &cshape, &start, &count);
            let (cr, rr): (Vec<_>, Vec<_>) = ranges.into_iter().unzip();
            slab::copy_box(&mut out.view_mut(), &rr, &chunk.view(), &cr);
        }
        Ok(out)
    }

    /// Reads the same hyperslab of many arrays in one pass: the stored blocks
    /// they need are sorted by file position and fetched with a few large reads
    /// (neighbouring blocks coalesced), then decoded. This is how a scan of one
    /// variable across many datasets reads the file: sequentially, once. Like
    /// [`ArrayFile::read_array_streaming`], it does not fill the cache. One
    /// result per name, in order.
    #[allow(clippy::many_single_char_names)] // offsets and lengths of a coalescing loop
    pub fn read_many_streaming<T: ArrayElement>(
        &self,
        names: &[&str],
        start: &[u64],
        count: &[u64],
    ) -> Vec<Result<ArrayD<T>>> {
        /// Blocks closer than this are fetched in one read (the gap is read too).
        const MAX_GAP_BYTES: u64 = 64 << 10;
        /// Largest single read.
        const MAX_READ_BYTES: u64 = 8 << 20;
        // 1. Every committed block the reads need. Errors are left to step 3.
        let mut wanted: Vec<(u32, u64, u64)> = Vec::new();
        for name in names {
            let Some(view) = self.view(name) else {
                continue;
            };
            let schema = view.schema;
            if schema.dtype != T::DTYPE {
                continue;
            }
            let Ok((st, ct)) = schema.resolve_region(name, start, count) else {
                continue;
            };
            if ct.contains(&0) {
                continue;
            }
            for idx in schema.chunks_touching(&st, &ct) {
                if let Some(Source::Layer(loc)) = view.source(idx) {
                    wanted.push((loc.layer, loc.entry.offset, loc.entry.stored_len));
                }
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        // 2. Coalesced reads. A failed read leaves its blocks to the per-chunk
        // path, which reports the error properly.
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        let mut blocks: std::collections::HashMap<(u32, u64), (usize, usize, usize)> =
            std::collections::HashMap::with_capacity(wanted.len());
        let mut i = 0;
        while i < wanted.len() {
            let (layer, first, len) = wanted[i];
            let mut end = first + len;
            let mut j = i + 1;
            while j < wanted.len() {
                let (l, o, n) = wanted[j];
                if l != layer || o > end + MAX_GAP_BYTES || o + n - first > MAX_READ_BYTES {
                    break;
                }
                end = end.max(o + n);
                j += 1;
            }
            let handle = &self.layers[layer as usize].handle;
            if let Ok(buf) = usize::try_from(end - first)
                .map_err(|_| ())
                .and_then(|n| handle.read_vec_at(first, n).map_err(|_| ()))
            {
                let b = buffers.len();
                for &(_, o, n) in &wanted[i..j] {
                    blocks.insert((layer, o), (b, (o - first) as usize, n as usize));
                }
                buffers.push(buf);
            }
            i = j;
        }
        // 3. Decode and assemble.
        let width = T::DTYPE.size_bytes().unwrap_or(0);
        names
            .iter()
            .map(|name| {
                self.read_with(name, start, count, |src, cshape| match src {
                    Source::Layer(loc) => match blocks.get(&(loc.layer, loc.entry.offset)) {
                        Some(&(b, at, n)) => {
                            let layer = &self.layers[loc.layer as usize];
                            let e = &loc.entry;
                            let raw = decode_checked(
                                &buffers[b][at..at + n],
                                e.crc,
                                e.codec,
                                e.filter,
                                width,
                                e.raw_len,
                                &layer.path,
                                e.offset,
                            )?;
                            cells_array(&raw, cshape, &layer.path, e.offset)
                        }
                        None => self.chunk_array(src, cshape, false),
                    },
                    Source::Pending(_) => self.chunk_array(src, cshape, false),
                })
            })
            .collect()
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
        let schema = view.schema.clone();
        Self::check_dtype::<T>(name, &schema)?;
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
        let fill: T = fill_of(&schema);
        let mut encoded = Vec::new();
        for idx in schema.chunks_touching(&start, &count) {
            let (origin, cshape) = schema.chunk_region(idx);
            let ranges = slab::intersect(&origin, &cshape, &start, &count);
            let (cr, rr): (Vec<_>, Vec<_>) = ranges.into_iter().unzip();
            let covered = cr
                .iter()
                .zip(&cshape)
                .all(|(&(a, b), &s)| a == 0 && b as u64 == s);
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
            encoded.push((idx, self.encode_chunk(name, &schema, values)?));
        }
        let created_record = !self.pending.arrays.contains_key(name);
        if created_record {
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

    fn encode_chunk<T: ArrayElement>(
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

    /// Statistics of an array, merged from per-chunk statistics (no data is read).
    pub fn array_stats(&self, name: &str) -> Result<ArrayStats> {
        Ok(self.array_meta(name)?.stats)
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
            schema: schema.clone(),
            stats,
            n_chunks_stored: n,
            stored_bytes,
            raw_bytes,
        })
    }

    fn new_layer_path(&self, prefix: char) -> (PathBuf, u128) {
        let uid = random_uid();
        (self.dir.join(format!("{prefix}-{uid:032x}.af")), uid)
    }

    /// Writes the pending changes as a new layer file (fsynced, with its directory
    /// entry fsynced) without changing this file's state. `None` when nothing is pending.
    /// Install it with [`ArrayFile::install`] once the caller has committed it.
    pub fn write_pending(&self) -> Result<Option<PreparedLayer>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let (path, uid) = self.new_layer_path('d');
        let result = self.write_pending_to(&path, uid);
        if result.is_err() {
            // Best effort: an unnamed file is garbage either way.
            let _ = self.storage.remove_file(&path);
        }
        result.map(Some)
    }

    fn write_pending_to(&self, path: &Path, uid: u128) -> Result<PreparedLayer> {
        let mut w = LayerWriter::create(self.storage.as_ref(), path, uid)?;
        for (name, arr) in &self.pending.arrays {
            w.begin_array(name, arr.kind, arr.schema.clone());
            for (&idx, chunk) in &arr.chunks {
                let stored = self.pending.stored_bytes(chunk)?;
                w.append_chunk(idx, &stored, &chunk.meta)?;
            }
        }
        self.finish_layer(
            w,
            PreparedKind::Delta {
                generation: self.pending.generation,
            },
        )
    }

    fn finish_layer(&self, w: LayerWriter, kind: PreparedKind) -> Result<PreparedLayer> {
        let (path, uid, footer) = w.finish()?;
        self.storage.sync_dir(&self.dir)?;
        let handle = self.storage.open_read(&path)?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        Ok(PreparedLayer {
            layer: Arc::new(Layer {
                name,
                path,
                uid,
                handle,
            }),
            footer,
            kind,
        })
    }

    /// Makes a layer from [`ArrayFile::write_pending`] part of the file and clears
    /// the pending changes it holds.
    pub fn install(&mut self, prepared: PreparedLayer) -> Result<()> {
        if prepared.kind
            != (PreparedKind::Delta {
                generation: self.pending.generation,
            })
        {
            return Err(Error::StalePreparedLayer);
        }
        self.apply(prepared.layer, prepared.footer)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes and installs the pending changes; returns the new layer, or `None`
    /// when nothing was pending. The caller must record the new layer list
    /// ([`ArrayFile::layers`]) to reopen this state.
    pub fn flush(&mut self) -> Result<Option<LayerId>> {
        let Some(p) = self.write_pending()? else {
            return Ok(None);
        };
        let id = p.id();
        self.install(p)?;
        Ok(Some(id))
    }

    /// Writes the committed state (not the pending changes) as one new base layer.
    /// Stored chunks are copied as they are, one at a time, without decoding, so
    /// memory stays bounded whatever the file size. No input layer is changed.
    pub fn compact_prepare(&self) -> Result<PreparedLayer> {
        let (path, uid) = self.new_layer_path('b');
        let result = self.compact_to(&path, uid);
        if result.is_err() {
            let _ = self.storage.remove_file(&path);
        }
        result
    }

    fn compact_to(&self, path: &Path, uid: u128) -> Result<PreparedLayer> {
        let mut w = LayerWriter::create(self.storage.as_ref(), path, uid)?;
        for (name, c) in &self.committed {
            w.begin_array(name, RecordKind::Define, Some(c.schema.clone()));
            for (&idx, loc) in &c.chunks {
                let layer = &self.layers[loc.layer as usize];
                let e = &loc.entry;
                let stored = read_stored(layer, e)?;
                if crc32c::crc32c(&stored) != e.crc {
                    return Err(Error::corrupt(
                        &layer.path,
                        e.offset,
                        "block checksum mismatch",
                    ));
                }
                let meta = BlockMeta {
                    raw_len: e.raw_len,
                    codec: e.codec,
                    filter: e.filter,
                    crc: e.crc,
                    stats: e.stats.clone(),
                };
                w.append_chunk(idx, &stored, &meta)?;
            }
        }
        self.finish_layer(
            w,
            PreparedKind::Base {
                sources: self.layer_uids(),
            },
        )
    }

    fn layer_uids(&self) -> Vec<u128> {
        self.layers.iter().map(|l| l.uid).collect()
    }

    /// Replaces every committed layer by a base from [`ArrayFile::compact_prepare`];
    /// returns the retired layers, which the caller removes after committing.
    pub fn install_compacted(&mut self, prepared: PreparedLayer) -> Result<Vec<LayerId>> {
        // Only onto the exact layer list it was merged from: a base built before
        // a later flush would silently drop that flush's data.
        if prepared.kind
            != (PreparedKind::Base {
                sources: self.layer_uids(),
            })
        {
            return Err(Error::StalePreparedLayer);
        }
        let retired = self.layers();
        let old_layers = std::mem::take(&mut self.layers);
        let old_committed = std::mem::take(&mut self.committed);
        if let Err(e) = self.apply(prepared.layer, prepared.footer) {
            self.layers = old_layers;
            self.committed = old_committed;
            return Err(e);
        }
        Ok(retired)
    }

    /// Compacts and installs in one step; returns the retired layers.
    pub fn compact(&mut self) -> Result<Vec<LayerId>> {
        let p = self.compact_prepare()?;
        self.install_compacted(p)
    }

    /// Reads and decodes every chunk of every committed layer (live or
    /// shadowed by a newer layer), checking footers and block checksums again;
    /// returns the number of chunks checked.
    pub fn verify(&self) -> Result<u64> {
        let mut n = 0;
        for layer in &self.layers {
            let (_, footer) = open_layer_handle(Arc::clone(&layer.handle), &layer.path)?;
            for rec in &footer.records {
                let Some(schema) = &rec.schema else { continue };
                let width = schema.dtype.size_bytes().unwrap_or(0);
                for e in &rec.chunks {
                    let stored = read_stored(layer, e)?;
                    decode_checked(
                        &stored,
                        e.crc,
                        e.codec,
                        e.filter,
                        width,
                        e.raw_len,
                        &layer.path,
                        e.offset,
                    )?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The dtype of an array, if defined.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.schema(name).map(|s| s.dtype)
    }
}

/// Checks that a region of `count` cells can be allocated (as `T` cells).
fn region_fits<T>(name: &str, count: &[u64]) -> Result<()> {
    let too_large = || Error::Unrepresentable {
        name: name.to_owned(),
        reason: "the requested region does not fit in memory; read it in parts",
    };
    let cells = count
        .iter()
        .try_fold(1u64, |a, &c| a.checked_mul(c))
        .ok_or_else(too_large)?;
    let cells = usize::try_from(cells).map_err(|_| too_large())?;
    // Small regions always fit; only probe the allocator for big ones.
    if cells.saturating_mul(size_of::<T>()) <= 64 << 20 {
        return Ok(());
    }
    let mut probe: Vec<T> = Vec::new();
    probe.try_reserve_exact(cells).map_err(|_| too_large())?;
    Ok(())
}

/// An array of `dims` filled with `fill`, allocated fallibly.
fn filled_array<T: Clone>(name: &str, dims: &[usize], fill: T) -> Result<ArrayD<T>> {
    let cells: usize = dims.iter().product();
    let mut v = Vec::new();
    v.try_reserve_exact(cells)
        .map_err(|_| Error::Unrepresentable {
            name: name.to_owned(),
            reason: "the requested region does not fit in memory; read it in parts",
        })?;
    v.resize(cells, fill);
    Ok(ArrayD::from_shape_vec(IxDyn(dims), v).expect("cell count matches shape"))
}

/// Decoded chunk bytes as an array of `shape`.
fn cells_array<T: ArrayElement>(
    raw: &[u8],
    shape: &[u64],
    path: &Path,
    offset: u64,
) -> Result<ArrayD<T>> {
    let n: u64 = shape.iter().product();
    let cells = decode_cells::<T>(raw, n as usize).ok_or_else(|| {
        Error::corrupt(
            path,
            offset,
            format!("chunk cells do not decode as {}", T::DTYPE),
        )
    })?;
    let dims: Vec<usize> = shape.iter().map(|&s| s as usize).collect();
    Ok(ArrayD::from_shape_vec(IxDyn(&dims), cells).expect("cell count matches shape"))
}

/// The stored (still compressed) bytes of one block.
fn read_stored(layer: &Layer, e: &ChunkEntry) -> Result<Vec<u8>> {
    layer
        .handle
        .read_vec_at(e.offset, to_usize(e.stored_len, &layer.path, e.offset)?)
}

fn to_usize(n: u64, path: &Path, offset: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::corrupt(path, offset, "block larger than memory"))
}

#[allow(clippy::too_many_arguments)]
fn decode_checked(
    stored: &[u8],
    crc: u32,
    codec: u8,
    filter: u8,
    width: usize,
    raw_len: u64,
    path: &Path,
    offset: u64,
) -> Result<Vec<u8>> {
    if crc32c::crc32c(stored) != crc {
        return Err(Error::corrupt(path, offset, "block checksum mismatch"));
    }
    let raw_len = to_usize(raw_len, path, offset)?;
    decode_block(stored, codec, filter, width, raw_len).map_err(|e| match e {
        DecodeError::Damaged(reason) => Error::corrupt(path, offset, reason),
        DecodeError::Unavailable { codec, feature } => Error::CodecUnavailable {
            path: path.to_owned(),
            codec,
            feature,
        },
    })
}
