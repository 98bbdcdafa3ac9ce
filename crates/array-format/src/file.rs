//! [`ArrayFile`]: many named arrays in an ordered list of immutable layer files,
//! plus a pending in-memory layer.
//!
//! Reads resolve each chunk to its newest version: the pending layer, then the
//! committed layers through a merged index (so a lookup costs the same with 1
//! or 100 layers). Opening decodes only each layer's footer index; a name's
//! merged state is built on its first use (`index.rs`), so the first read of
//! one array costs the same in a file of a thousand arrays or a million.
//! `flush` writes the pending layer as one new layer file; `compact` writes
//! the merged state as one new base.
//!
//! **Invariant:** a layer file, once written, is never modified, and its name is
//! never used for other bytes: names carry a random 128-bit uid and are created
//! with `create_new`.
//!
//! **Invariant:** this module never lists a directory to find layers; the
//! caller passes the exact ordered list (the registry's commit point).

mod chunk_map;
mod compact;
mod flush;
mod index;
mod merge;
mod pending;
mod read;
mod scan;
mod slab;
mod stats;
mod verify;
mod walk;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indexmap::IndexMap;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::cache::{BlockKey, DeltaCache};
use crate::codec::{encode_block, Compression, DecodeError};
use crate::dtype::{DType, FillValue};
use crate::element::{decode_cells, encode_cells, ArrayElement};
use crate::error::{Error, Result};
use crate::layer::{
    open_layer_handle, ArrayRecord, BlockMeta, ChunkEntry, Footer, Layer, LayerWriter, RecordKind,
};
use crate::schema::{validate_array_name, ArraySchema, MAX_CHUNK_BYTES};
use crate::stats::{ArrayStats, ChunkStats};
use crate::storage::{ReadHandle, Storage};
use chunk_map::ChunkMap;
use index::MergedIndex;

/// A map from array names (a file's datasets) in listing order, hashed with
/// foldhash (seeded per process): every write and read of a name looks it
/// up, and `SipHash` was a tenth of the instructions of creating 10,000
/// small datasets.
pub(crate) type NameMap<V> = IndexMap<String, V, foldhash::fast::RandomState>;
pub use flush::UnsyncedLayer;
pub use merge::MergePlan;
pub use pending::PendingBudget;
use pending::{Pending, PendingChunk};
use read::{decode_entry, read_stored};
pub use read::{Expected, IN_MEMORY_READ_CELLS};
pub use scan::{Scan, SCAN_MIN_PART};
pub use write::{EncodedArray, IN_MEMORY_WRITE_BYTES};

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
    /// Shared by consecutive definitions with equal schemas.
    schema: Arc<ArraySchema>,
    chunks: ChunkMap<Loc>,
    /// The layer whose `Define` record gave the schema.
    defined_in: u32,
}

/// A layer written to storage but not yet part of the file's state; see
/// [`ArrayFile::write_pending`] and [`ArrayFile::compact_prepare`].
#[derive(Debug)]
pub struct PreparedLayer {
    layer: Arc<Layer>,
    /// Its records, unless a merge wrote more than the index folds in
    /// (`index::FOLD_LIMIT`): installing it then leaves states to be built
    /// from the footers.
    footer: Option<Footer>,
    kind: PreparedKind,
}

/// What a prepared layer was built from, so it is installed only on that state.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PreparedKind {
    /// A delta of the pending changes at this pending generation.
    Delta { generation: u64 },
    /// A base merged from exactly these committed layers (by uid).
    Base { sources: Vec<u128> },
    /// A delta merging the layers from index `from` on, built on exactly these
    /// committed layers (by uid).
    Merge { sources: Vec<u128>, from: usize },
}

impl PreparedLayer {
    /// The index of the first committed layer this one replaces once
    /// installed: 0 for a base (it replaces all), the tail's start for a tail
    /// merge, the layer count for a delta (it replaces none).
    pub fn replaces_from(&self) -> usize {
        match &self.kind {
            PreparedKind::Base { .. } => 0,
            PreparedKind::Merge { from, .. } => *from,
            PreparedKind::Delta { .. } => usize::MAX,
        }
    }

    /// The new layer's id.
    pub fn id(&self) -> LayerId {
        LayerId(self.layer.name.clone())
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.layer.path
    }

    /// Its size in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.layer.handle.len()
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
    schema: &'a Arc<ArraySchema>,
    committed: Option<&'a Committed>,
    pending: Option<&'a ChunkMap<PendingChunk>>,
}

impl<'a> View<'a> {
    fn source(&self, chunk_idx: u64) -> Option<Source<'a>> {
        if let Some(p) = self.pending.and_then(|p| p.get(chunk_idx)) {
            return Some(Source::Pending(p));
        }
        self.committed
            .and_then(|c| c.chunks.get(chunk_idx))
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
    /// The committed layers' merged state, built lazily.
    index: MergedIndex,
    pending: Pending,
    /// The schema of the last [`ArrayFile::define`] or
    /// [`ArrayFile::define_new`], which
    /// [`ArrayFile::share_schema`] hands out again for an equal one.
    last_defined: Option<Arc<ArraySchema>>,
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
            index: MergedIndex::with_all(NameMap::default()),
            pending: Pending::with_budget(Arc::new(PendingBudget::new(
                options.pending_budget_bytes,
            ))),
            last_defined: None,
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
    /// pins a snapshot: the files stay readable even if they are removed later
    /// (on [`crate::LocalStorage`], while the descriptor table keeps their
    /// descriptors; see the storage module's invariant).
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
    /// [`ArrayFile::open_handles`], oldest first. Only each layer's header,
    /// trailer and footer index are read here (format 1 layers: their whole
    /// footer); an array's records are read and checked on its first use, so
    /// a damaged footer block surfaces as an error of the calls that need it.
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
            index: MergedIndex::default(),
            pending: Pending::with_budget(Arc::new(PendingBudget::new(
                options.pending_budget_bytes,
            ))),
            last_defined: None,
        };
        for (id, handle) in layers {
            let layer = open_layer_handle(handle, &dir.join(id.as_str()))?;
            f.layers.push(Arc::new(layer));
        }
        Ok(f)
    }

    /// Adds a new layer (the newest), folding its records into the built
    /// states when they are known in memory, else dropping those states.
    fn apply(&mut self, layer: Arc<Layer>, footer: Option<Footer>) -> Result<()> {
        let idx = u32::try_from(self.layers.len()).expect("fewer than 2^32 layers");
        let path = layer.path.clone();
        self.layers.push(layer);
        if let Some(footer) = footer {
            self.fold_new_layer(footer.records, idx, &path)
        } else {
            self.index = MergedIndex::default();
            Ok(())
        }
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

    /// How `name` looks after merging, or an error if its committed records
    /// cannot be read.
    fn try_view(&self, name: &str) -> Result<Option<View<'_>>> {
        self.view_with(name, || self.committed(name))
    }

    /// [`ArrayFile::try_view`] with the committed state of `name` looked up
    /// by `committed` (a scan finds it by position in the whole index).
    fn view_with<'a>(
        &'a self,
        name: &str,
        committed: impl FnOnce() -> Result<Option<&'a Committed>>,
    ) -> Result<Option<View<'a>>> {
        Ok(match self.pending.arrays.get(name) {
            Some(p) => match p.kind {
                RecordKind::Delete => None,
                RecordKind::Define => Some(View {
                    schema: p.schema.as_ref().expect("define has a schema"),
                    committed: None,
                    pending: Some(&p.chunks),
                }),
                RecordKind::Update => committed()?.map(|c| View {
                    schema: &c.schema,
                    committed: Some(c),
                    pending: Some(&p.chunks),
                }),
            },
            None => committed()?.map(|c| View {
                schema: &c.schema,
                committed: Some(c),
                pending: None,
            }),
        })
    }

    /// [`ArrayFile::try_view`] for the callers that cannot return an error: a
    /// name whose records cannot be read looks undefined (the reads of it
    /// report the error).
    fn view(&self, name: &str) -> Option<View<'_>> {
        self.try_view(name).ok().flatten()
    }

    fn view_or_err(&self, name: &str) -> Result<View<'_>> {
        self.try_view(name)?.ok_or_else(|| Error::ArrayNotFound {
            name: name.to_owned(),
        })
    }

    /// True when `name` is defined (pending changes included). A name whose
    /// committed records cannot be read (a damaged footer block) is reported
    /// absent; reading it gives the error.
    pub fn contains(&self, name: &str) -> bool {
        self.view(name).is_some()
    }

    /// Names of the defined arrays: committed ones in file order, then new ones.
    /// Reads every footer block of every layer the first time. Empty when a
    /// footer block cannot be read or decoded; [`ArrayFile::try_list_arrays`]
    /// gives that error, and [`ArrayFile::verify`] finds it.
    pub fn list_arrays(&self) -> Vec<String> {
        self.try_list_arrays().unwrap_or_default()
    }

    /// [`ArrayFile::list_arrays`], with the error of a footer block that
    /// cannot be read or decoded, or of layers that contradict each other.
    pub fn try_list_arrays(&self) -> Result<Vec<String>> {
        let all = self.all()?;
        let mut out: Vec<String> = all
            .keys()
            .filter(|n| self.view(n).is_some())
            .cloned()
            .collect();
        out.extend(
            self.pending
                .arrays
                .iter()
                .filter(|(n, p)| p.kind == RecordKind::Define && !all.contains_key(*n))
                .map(|(n, _)| n.clone()),
        );
        Ok(out)
    }

    /// Number of defined arrays (see [`ArrayFile::list_arrays`]).
    pub fn len(&self) -> usize {
        self.list_arrays().len()
    }

    /// True when no array is defined (see [`ArrayFile::list_arrays`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file that gave an array its schema: the layer holding its `Define`
    /// record, or the directory while the definition is still pending. When
    /// the array's committed records cannot be read ([`ArrayFile::schema`] is
    /// `None` then), the layer whose footer failed, so an error about the
    /// schema names the damaged file.
    pub fn schema_origin(&self, name: &str) -> Option<&Path> {
        let view = match self.try_view(name) {
            Ok(view) => view?,
            Err(e) => return self.layer_named_by(&e),
        };
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

    /// The committed layer an error names, if any.
    fn layer_named_by(&self, e: &Error) -> Option<&Path> {
        let (Error::Corrupt { path, .. } | Error::Io { path, .. }) = e else {
            return None;
        };
        self.layers
            .iter()
            .find(|l| l.path == *path)
            .map(|l| l.path.as_path())
    }

    /// The schema of an array; `None` also when its committed records cannot
    /// be read (see [`ArrayFile::try_schema`]).
    pub fn schema(&self, name: &str) -> Option<&ArraySchema> {
        self.view(name).map(|v| &**v.schema)
    }

    /// The schema of an array, or the error of reading its committed records
    /// (a damaged footer block, layers that contradict each other about it).
    pub fn try_schema(&self, name: &str) -> Result<Option<&ArraySchema>> {
        Ok(self.try_view(name)?.map(|v| &**v.schema))
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
    pub fn define(&mut self, name: &str, schema: impl Into<Arc<ArraySchema>>) -> Result<()> {
        let schema = schema.into();
        validate_array_name(name)?;
        schema.validate(name)?;
        if self.try_view(name)?.is_some() {
            return Err(Error::ArrayExists {
                name: name.to_owned(),
            });
        }
        self.last_defined = Some(Arc::clone(&schema));
        self.pending
            .set_record(name, RecordKind::Define, Some(schema));
        Ok(())
    }

    /// `schema` in an `Arc`: the last [`ArrayFile::define`]'s or
    /// [`ArrayFile::define_new`]'s when the two are equal (fill values compared bit for bit, so they encode
    /// alike), else a new one. Datasets defined one at a time with the same
    /// definition then share one schema, in memory, in the registry's
    /// dictionary and in the layer, as the datasets of a batch do.
    pub fn share_schema(&self, schema: ArraySchema) -> Arc<ArraySchema> {
        match &self.last_defined {
            Some(last) if **last == schema => Arc::clone(last),
            _ => Arc::new(schema),
        }
    }

    /// Defines an array whose name the caller knows to be new (atlas-core's
    /// registry lists every array of every dataset), checking only the
    /// pending changes, not the committed layers. The `Define` record voids
    /// whatever the committed layers say about the name, as after a delete,
    /// so nothing committed can show through even if the caller were wrong.
    ///
    /// [`ArrayFile::define`] looks the name up in every committed layer
    /// whose name range covers it: one footer block per layer, kept in the
    /// cache. For names spread like dataset names that is every layer, so a
    /// writer adding new datasets batch after batch would read, and fill the
    /// cache with, the footers of the whole store.
    ///
    /// A schema given as an `Arc` is kept as it is: arrays of many datasets
    /// can share one copy, through the flush's layer and the index.
    pub fn define_new(&mut self, name: &str, schema: impl Into<Arc<ArraySchema>>) -> Result<()> {
        let schema = schema.into();
        validate_array_name(name)?;
        schema.validate(name)?;
        if self
            .pending
            .arrays
            .get(name)
            .is_some_and(|p| p.kind != RecordKind::Delete)
        {
            return Err(Error::ArrayExists {
                name: name.to_owned(),
            });
        }
        self.last_defined = Some(Arc::clone(&schema));
        self.pending
            .set_record(name, RecordKind::Define, Some(schema));
        Ok(())
    }

    /// Makes room for `additional` more arrays with pending changes: a
    /// caller about to define many (a batch of new datasets) grows the
    /// table once instead of doubling it again and again.
    pub fn reserve_pending(&mut self, additional: usize) {
        self.pending.arrays.reserve(additional);
    }

    /// True when a deletion of `name` is pending (what
    /// [`ArrayFile::undo_define_new`] restores).
    pub fn deletion_pending(&self, name: &str) -> bool {
        self.pending
            .arrays
            .get(name)
            .is_some_and(|p| p.kind == RecordKind::Delete)
    }

    /// Takes back a [`ArrayFile::define_new`] of `name` and everything
    /// written to it since, reading no storage: the pending deletion comes
    /// back when there was one (`deletion_pending` before the definition),
    /// else nothing is pending for the name.
    pub fn undo_define_new(&mut self, name: &str, deletion_pending: bool) {
        if deletion_pending {
            self.pending.set_record(name, RecordKind::Delete, None);
        } else {
            self.pending.remove(name);
        }
    }

    /// True when `name`'s view needs its committed state: no pending
    /// change, or pending chunks over the committed array (a pending
    /// definition or deletion hides the committed layers).
    pub(super) fn reads_committed(&self, name: &str) -> bool {
        self.pending
            .arrays
            .get(name)
            .is_none_or(|p| p.kind == RecordKind::Update)
    }

    /// Deletes an array; its chunks can never come back, even if the name is
    /// defined again.
    pub fn delete_array(&mut self, name: &str) -> Result<()> {
        self.view_or_err(name)?;
        if self.committed(name)?.is_some() {
            self.pending.set_record(name, RecordKind::Delete, None);
        } else {
            self.pending.remove(name);
        }
        Ok(())
    }

    /// The dtype of an array, if defined.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.schema(name).map(|s| s.dtype)
    }
}
