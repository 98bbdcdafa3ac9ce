//! [`Atlas`]: the store handle.
//!
//! **Invariant:** the in-memory `committed` registry always equals the bytes of
//! the `atlas.json` this handle last read or wrote; the live dataset map may be
//! ahead of it by the mutations since the last flush.
//!
//! **Invariant:** a handle opened on a snapshot holds read handles on every
//! layer file that snapshot names, so the writer removing retired files never
//! breaks it.

mod commit;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use array_format::{
    ArrayElement, ArrayFile, ArrayFileOptions, Codec, Compression, DeltaCache, LayerId,
    LocalStorage, LockGuard, ReadHandle, Storage,
};
use indexmap::IndexMap;
use ndarray::{ArrayD, Axis};
use parking_lot::{Mutex, RwLock};

use crate::config::{MetaFormat, OpenOptions, StoreConfig};
use crate::dataset::DatasetView;
use crate::error::{Error, Result};
use crate::name::validate_dataset_name;
use crate::registry::{
    check_arrays, decode_segment, DatasetMeta, Manifest, Policy, Retired, SegmentId, META_DIR,
};

/// Name of the registry file, the store's commit point.
pub const REGISTRY_FILE: &str = "atlas.json";
/// Name of the writer lock file.
pub const LOCK_FILE: &str = "atlas.lock";

pub(crate) type FileHandle = Arc<tokio::sync::RwLock<ArrayFile>>;

/// Read handles on an array file's layers, oldest first.
type PinnedLayers = Vec<(LayerId, Arc<dyn ReadHandle>)>;

enum FileSlot {
    /// Layer handles pinned at open; the footers are decoded on first use.
    Unopened(PinnedLayers),
    Open(FileHandle),
}

pub(crate) struct Live {
    pub datasets: IndexMap<String, DatasetMeta>,
    /// Datasets created or changed since the last commit.
    pub dirty: std::collections::HashSet<String>,
    /// Datasets deleted since the last commit (they may exist again if re-created).
    pub deleted: std::collections::HashSet<String>,
}

impl Live {
    /// Marks a dataset as changed since the last commit.
    pub(crate) fn touch(&mut self, name: &str) {
        if !self.dirty.contains(name) {
            self.dirty.insert(name.to_owned());
        }
    }
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub cache: Arc<DeltaCache>,
    pub options: OpenOptions,
    pub compression: Compression,
    pub meta_format: MetaFormat,
    pub live: RwLock<Live>,
    /// Layer lists and generation of the last commit this handle knows.
    pub committed: Mutex<Committed>,
    files: Mutex<HashMap<String, FileSlot>>,
    /// Array name → directory, committed and assigned since.
    dirs: Mutex<DirTable>,
    writer: Mutex<Option<Box<dyn LockGuard>>>,
    pub poisoned: AtomicBool,
    /// Set by every mutation; cleared when a flush commits.
    pub dirty: AtomicBool,
    /// Serialises flush and compact.
    pub commit_lock: tokio::sync::Mutex<()>,
    /// One pending-memory budget for every array file of the store.
    pending_budget: Arc<array_format::PendingBudget>,
    /// Serialises structural changes (datasets and array definitions) so that
    /// registry and array files change together.
    pub structure: tokio::sync::Mutex<()>,
}

/// The directory of every array this handle knows, and the next id to assign.
pub(crate) struct DirTable {
    pub by_array: HashMap<String, String>,
    pub next: u64,
}

pub(crate) struct Committed {
    pub generation: u64,
    pub arrays: IndexMap<String, Vec<LayerId>>,
    pub segments: Vec<SegmentId>,
    pub policy: Policy,
    pub retired: Vec<Retired>,
}

/// Handle to an opened or newly created atlas store.
///
/// `Atlas` is cheap to clone (clones share the handle) and `Send + Sync`.
#[derive(Clone)]
pub struct Atlas {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Atlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Atlas")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Atlas>();
    assert_send_sync::<DatasetView>();
};

fn is_not_found(e: &array_format::Error) -> bool {
    matches!(e, array_format::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

impl Atlas {
    /// Creates a store at `location` (a path or a `file://` URL; the directory
    /// is made if missing). Errors if a store already exists there, and with
    /// `UnsupportedLocation` for object-store URLs until that backend exists.
    pub async fn create(location: &str, config: StoreConfig) -> Result<Atlas> {
        Self::create_path(crate::local_path(location)?, config).await
    }

    /// Opens the store at `location` (a path or a `file://` URL; object-store
    /// URLs are refused with `UnsupportedLocation` until that backend exists),
    /// read-only until the first mutation.
    pub async fn open(location: &str) -> Result<Atlas> {
        Self::open_path(crate::local_path(location)?).await
    }

    /// Creates a store in `path` (made if missing) on the local filesystem.
    /// Errors if a store already exists there.
    pub async fn create_path(path: impl AsRef<Path>, config: StoreConfig) -> Result<Atlas> {
        Self::create_with(Arc::new(LocalStorage), path.as_ref(), config).await
    }

    /// Creates a store on any storage backend.
    pub async fn create_with(
        storage: Arc<dyn Storage>,
        path: &Path,
        config: StoreConfig,
    ) -> Result<Atlas> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::create_sync(storage, &path, config))
            .await
            .expect("create task panicked")
    }

    fn create_sync(storage: Arc<dyn Storage>, path: &Path, config: StoreConfig) -> Result<Atlas> {
        if matches!(config.codec, Codec::Blosc2 { .. }) && !cfg!(feature = "blosc2") {
            return Err(Error::CodecUnavailable {
                codec: config.codec.to_string(),
                feature: "blosc2",
            });
        }
        let root = path.to_owned();
        storage.create_dir_all(&root)?;
        let reg_path = root.join(REGISTRY_FILE);
        if storage.exists(&reg_path)? {
            return Err(Error::StoreExists { path: root });
        }
        let guard = acquire_writer_lock(storage.as_ref(), &root)?;
        // Re-check under the lock: another creator may have won the race.
        if storage.exists(&reg_path)? {
            return Err(Error::StoreExists { path: root });
        }
        storage.create_dir_all(&root.join(META_DIR))?;
        let mut manifest = Manifest::new(config.compression(), config.meta_format);
        manifest.generation = 1;
        manifest.policy = config.policy;
        commit::write_manifest(storage.as_ref(), &root, &manifest)
            .map_err(commit::CommitError::into_error)?;
        let atlas = Self::from_parts(
            storage,
            root,
            manifest,
            IndexMap::new(),
            HashMap::new(),
            config.open_options(),
        );
        *atlas.inner.writer.lock() = Some(guard);
        Ok(atlas)
    }

    /// Opens the store in `path` on the local filesystem, read-only until the
    /// first mutation. Errors if there is no store.
    pub async fn open_path(path: impl AsRef<Path>) -> Result<Atlas> {
        Self::open_with(
            Arc::new(LocalStorage),
            path.as_ref(),
            OpenOptions::default(),
        )
        .await
    }

    /// Opens a store on any storage backend with per-handle options.
    pub async fn open_with(
        storage: Arc<dyn Storage>,
        path: &Path,
        options: OpenOptions,
    ) -> Result<Atlas> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_sync(storage, &path, options))
            .await
            .expect("open task panicked")
    }

    fn open_sync(storage: Arc<dyn Storage>, path: &Path, options: OpenOptions) -> Result<Atlas> {
        let root = path.to_owned();
        let reg_path = root.join(REGISTRY_FILE);
        let mut attempt = 0;
        let (manifest, datasets, handles) = loop {
            if !storage.exists(&reg_path)? {
                return Err(Error::StoreNotFound { path: root });
            }
            match load(storage.as_ref(), &root) {
                Ok((manifest, datasets)) => {
                    match Self::pin_layers(storage.as_ref(), &root, &manifest) {
                        Ok(h) => break (manifest, datasets, h),
                        // A commit retired a file between reading the manifest and
                        // opening it: read the newer manifest.
                        Err(e) if is_not_found(&e) && attempt < 8 => attempt += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(Error::Storage(e)) if is_not_found(&e) && attempt < 8 => attempt += 1,
                Err(e) => return Err(e),
            }
        };
        let atlas = Self::from_parts(storage, root, manifest, datasets, handles, options);
        if options.write {
            atlas.inner.ensure_writer()?;
        }
        Ok(atlas)
    }

    fn pin_layers(
        storage: &dyn Storage,
        root: &Path,
        manifest: &Manifest,
    ) -> array_format::Result<HashMap<String, PinnedLayers>> {
        manifest
            .arrays
            .iter()
            .map(|(name, layers)| {
                Ok((
                    name.clone(),
                    ArrayFile::open_handles(storage, &root.join(&manifest.dirs[name]), layers)?,
                ))
            })
            .collect()
    }

    fn from_parts(
        storage: Arc<dyn Storage>,
        root: PathBuf,
        manifest: Manifest,
        datasets: IndexMap<String, DatasetMeta>,
        handles: HashMap<String, PinnedLayers>,
        options: OpenOptions,
    ) -> Atlas {
        let files = handles
            .into_iter()
            .map(|(k, v)| (k, FileSlot::Unopened(v)))
            .collect();
        let dirs = DirTable {
            by_array: manifest
                .dirs
                .iter()
                .map(|(a, d)| (a.clone(), d.clone()))
                .collect(),
            next: manifest.next_dir,
        };
        Atlas {
            inner: Arc::new(Inner {
                root,
                storage,
                cache: Arc::new(DeltaCache::new(options.cache)),
                options,
                compression: manifest.compression,
                meta_format: manifest.meta_format,
                live: RwLock::new(Live {
                    datasets,
                    dirty: std::collections::HashSet::new(),
                    deleted: std::collections::HashSet::new(),
                }),
                committed: Mutex::new(Committed {
                    generation: manifest.generation,
                    arrays: manifest.arrays,
                    segments: manifest.segments,
                    policy: manifest.policy,
                    retired: manifest.retired,
                }),
                files: Mutex::new(files),
                dirs: Mutex::new(dirs),
                writer: Mutex::new(None),
                poisoned: AtomicBool::new(false),
                dirty: AtomicBool::new(false),
                commit_lock: tokio::sync::Mutex::new(()),
                pending_budget: Arc::new(array_format::PendingBudget::new(
                    options.pending_budget_bytes,
                )),
                structure: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// How new chunks are compressed (persisted in the store).
    pub fn compression(&self) -> Compression {
        self.inner.compression
    }

    /// The registry encoding (persisted in the store).
    pub fn meta_format(&self) -> MetaFormat {
        self.inner.meta_format
    }

    /// The cache shared by this handle's array files.
    pub fn cache(&self) -> &DeltaCache {
        &self.inner.cache
    }

    /// The generation of the last commit this handle has seen (1 after create).
    pub fn generation(&self) -> u64 {
        self.inner.committed.lock().generation
    }

    /// True when this handle holds the writer lock.
    pub fn is_writer(&self) -> bool {
        self.inner.writer.lock().is_some()
    }

    /// Creates an empty dataset.
    pub async fn create_dataset(&self, name: &str) -> Result<DatasetView> {
        validate_dataset_name(name)?;
        self.inner.ensure_writer_async().await?;
        let _s = self.inner.structure.lock().await;
        let mut live = self.inner.live.write();
        if live.datasets.contains_key(name) {
            return Err(Error::DatasetExists {
                name: name.to_owned(),
            });
        }
        live.datasets
            .insert(name.to_owned(), DatasetMeta::default());
        live.touch(name);
        self.inner.dirty.store(true, Ordering::SeqCst);
        Ok(DatasetView::new(Arc::clone(&self.inner), name))
    }

    /// A handle to an existing dataset.
    #[allow(clippy::unused_async)] // async in the API contract, like every store call
    pub async fn open_dataset(&self, name: &str) -> Result<DatasetView> {
        if !self.dataset_exists(name) {
            return Err(Error::DatasetNotFound {
                name: name.to_owned(),
            });
        }
        Ok(DatasetView::new(Arc::clone(&self.inner), name))
    }

    /// Deletes a dataset and all its arrays. Re-creating the name later never
    /// brings the old data back.
    pub async fn delete_dataset(&self, name: &str) -> Result<()> {
        self.inner.ensure_writer_async().await?;
        let _s = self.inner.structure.lock().await;
        let arrays: Vec<String> = {
            let live = self.inner.live.read();
            let ds = live
                .datasets
                .get(name)
                .ok_or_else(|| Error::DatasetNotFound {
                    name: name.to_owned(),
                })?;
            ds.arrays.keys().cloned().collect()
        };
        for array in &arrays {
            if let Some(file) = self.inner.file(array)? {
                let mut f = file.write().await;
                if f.contains(name) {
                    f.delete_array(name)
                        .map_err(|e| Error::array(name, array, e))?;
                }
            }
        }
        {
            let mut live = self.inner.live.write();
            live.datasets.shift_remove(name);
            live.dirty.remove(name);
            live.deleted.insert(name.to_owned());
        }
        self.inner.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Dataset names in insertion order.
    pub fn list_datasets(&self) -> Vec<String> {
        self.inner.live.read().datasets.keys().cloned().collect()
    }

    /// Number of datasets.
    pub fn n_datasets(&self) -> usize {
        self.inner.live.read().datasets.len()
    }

    /// True when the dataset exists.
    pub fn dataset_exists(&self, name: &str) -> bool {
        self.inner.live.read().datasets.contains_key(name)
    }

    /// A copy of one dataset's metadata (schemas and attributes).
    pub fn dataset_meta(&self, name: &str) -> Option<DatasetMeta> {
        self.inner.live.read().datasets.get(name).cloned()
    }

    /// Names of the datasets that have `array`, in dataset order.
    pub fn datasets_with_array(&self, array: &str) -> Vec<String> {
        self.inner
            .live
            .read()
            .datasets
            .iter()
            .filter(|(_, d)| d.arrays.contains_key(array))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Distinct array names over all datasets, in order of first appearance.
    pub fn list_arrays(&self) -> Vec<String> {
        let live = self.inner.live.read();
        let mut seen = indexmap::IndexSet::new();
        for ds in live.datasets.values() {
            for a in ds.arrays.keys() {
                if !seen.contains(a) {
                    seen.insert(a.clone());
                }
            }
        }
        seen.into_iter().collect()
    }

    /// The committed layer files of one array, oldest first.
    pub fn array_layers(&self, array: &str) -> Vec<LayerId> {
        self.inner
            .committed
            .lock()
            .arrays
            .get(array)
            .cloned()
            .unwrap_or_default()
    }

    /// Commits every pending change atomically: the single durability boundary.
    ///
    /// An array file left with more layers than the store policy's
    /// `max_layers_per_array` then has its layers merged (a second commit), so
    /// repeated small flushes never pile up layers.
    pub async fn flush(&self) -> Result<()> {
        commit::flush_and_merge(&self.inner).await
    }

    /// Flushes, then merges each array's layers into one new base layer.
    /// Crash-safe and bounded in memory; open readers keep their snapshot.
    pub async fn compact(&self) -> Result<()> {
        commit::compact(&self.inner).await
    }

    /// The directory holding `array`'s layer files, if the array exists.
    ///
    /// Directories are named by ids the manifest assigns (`atlas.a<N>`), not by
    /// array names, so names that differ only in letter case (`TEMP`, `temp`)
    /// never share a directory on a case-insensitive file system. Stores
    /// written before ids existed keep their name-named directories.
    pub fn array_dir(&self, array: &str) -> Option<PathBuf> {
        self.inner.dir_of(array).map(|d| self.inner.root.join(d))
    }

    /// Reads one array from many datasets, decoding in parallel. One result per
    /// dataset, `None` where a dataset lacks the array. Empty `start` and
    /// `count` read whole arrays.
    ///
    /// `datasets` is any slice of names (`&[String]`, `&[&str]`), so the one
    /// type argument reads as `read_array_across::<f32>(…)`.
    pub async fn read_array_across<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<Vec<Option<ArrayD<T>>>> {
        let mut has = Vec::with_capacity(datasets.len());
        {
            let live = self.inner.live.read();
            for d in datasets {
                let d = d.as_ref();
                let ds = live
                    .datasets
                    .get(d)
                    .ok_or_else(|| Error::DatasetNotFound { name: d.to_owned() })?;
                has.push((d.to_owned(), ds.arrays.contains_key(array)));
            }
        }
        let Some(file) = self.inner.file(array)? else {
            return Ok(vec![None; datasets.len()]);
        };
        let guard = file.read_owned().await;
        // As in `DatasetView::read_array`: never read with sizes the registry
        // did not agree to.
        {
            let live = self.inner.live.read();
            for (d, present) in &has {
                if !present {
                    continue;
                }
                let registry = live
                    .datasets
                    .get(d)
                    .and_then(|m| m.arrays.get(array))
                    .map(|a| &a.schema);
                if registry.is_some_and(|r| guard.schema(d).is_none_or(|f| **r != *f)) {
                    return Err(Error::array(
                        d,
                        array,
                        array_format::Error::corrupt(
                            guard.schema_origin(d).unwrap_or(guard.dir()),
                            0,
                            format!("the array file's schema of {d:?} differs from the registry's"),
                        ),
                    ));
                }
            }
        }
        let array = array.to_owned();
        tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let per = has.len().div_ceil(threads).max(64);
            // Each part is read in one pass over the file (blocks sorted by
            // position, neighbours fetched together).
            let read_part = |part: &[(String, bool)]| -> Result<Vec<Option<ArrayD<T>>>> {
                let names: Vec<&str> = part
                    .iter()
                    .filter(|(_, present)| *present)
                    .map(|(d, _)| d.as_str())
                    .collect();
                let mut got = guard
                    .read_many_streaming::<T>(&names, &start, &count)
                    .into_iter();
                part.iter()
                    .map(|(d, present)| {
                        if !present {
                            return Ok(None);
                        }
                        got.next()
                            .expect("one result per name")
                            .map(Some)
                            .map_err(|e| Error::array(d, &array, e))
                    })
                    .collect()
            };
            if has.len() <= per {
                return read_part(&has);
            }
            std::thread::scope(|s| {
                let handles: Vec<_> = has
                    .chunks(per)
                    .map(|part| s.spawn(move || read_part(part)))
                    .collect();
                let mut out = Vec::with_capacity(has.len());
                for h in handles {
                    out.extend(h.join().expect("reader thread panicked")?);
                }
                Ok(out)
            })
        })
        .await
        .expect("read task panicked")
    }

    /// Like [`Atlas::read_array_across`], stacked into one array with a leading
    /// dataset axis. Every dataset must have the array, with equal shapes.
    pub async fn read_array_across_stacked<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<ArrayD<T>> {
        let parts = self
            .read_array_across::<T>(array, datasets, start, count)
            .await?;
        let mut views = Vec::with_capacity(parts.len());
        for (d, p) in datasets.iter().zip(&parts) {
            let p = p.as_ref().ok_or_else(|| Error::ArrayNotFound {
                dataset: d.as_ref().to_owned(),
                array: array.to_owned(),
            })?;
            if let Some(first) = views.first() {
                let first: &ndarray::ArrayViewD<'_, T> = first;
                if first.shape() != p.shape() {
                    return Err(Error::ShapesDiffer {
                        array: array.to_owned(),
                        dataset: d.as_ref().to_owned(),
                        expected: first.shape().to_vec(),
                        actual: p.shape().to_vec(),
                    });
                }
            }
            views.push(p.view());
        }
        if views.is_empty() {
            return Ok(ArrayD::from_shape_vec(ndarray::IxDyn(&[0]), Vec::new()).expect("empty"));
        }
        Ok(ndarray::stack(Axis(0), &views).expect("shapes checked"))
    }
}

impl Inner {
    pub(crate) fn file_options(&self) -> ArrayFileOptions {
        ArrayFileOptions {
            compression: self.compression,
            pending_budget_bytes: self.options.pending_budget_bytes,
        }
    }

    /// The array file for `array`, opened on first use; `None` if there is none.
    pub(crate) fn file(&self, array: &str) -> Result<Option<FileHandle>> {
        let mut files = self.files.lock();
        let Some(slot) = files.get_mut(array) else {
            return Ok(None);
        };
        match slot {
            FileSlot::Open(f) => Ok(Some(Arc::clone(f))),
            FileSlot::Unopened(handles) => {
                let dir = self
                    .dir_of(array)
                    .expect("a committed array has a directory");
                let mut f = ArrayFile::open_with_handles(
                    Arc::clone(&self.storage),
                    &self.root.join(dir),
                    handles.clone(),
                    self.file_options(),
                    Arc::clone(&self.cache),
                )?;
                f.share_budget(Arc::clone(&self.pending_budget));
                let f = Arc::new(tokio::sync::RwLock::new(f));
                *slot = FileSlot::Open(Arc::clone(&f));
                Ok(Some(f))
            }
        }
    }

    /// The array file for `array`, created empty if there is none.
    pub(crate) fn file_or_create(&self, array: &str) -> Result<FileHandle> {
        if let Some(f) = self.file(array)? {
            return Ok(f);
        }
        let dir = self.dir_or_assign(array);
        let mut f = ArrayFile::create(
            Arc::clone(&self.storage),
            &self.root.join(dir),
            self.file_options(),
            Arc::clone(&self.cache),
        )?;
        f.share_budget(Arc::clone(&self.pending_budget));
        let f = Arc::new(tokio::sync::RwLock::new(f));
        self.files
            .lock()
            .insert(array.to_owned(), FileSlot::Open(Arc::clone(&f)));
        Ok(f)
    }

    /// Open array files, sorted by name.
    pub(crate) fn open_files(&self) -> Vec<(String, FileHandle)> {
        let files = self.files.lock();
        let mut v: Vec<_> = files
            .iter()
            .filter_map(|(k, s)| match s {
                FileSlot::Open(f) => Some((k.clone(), Arc::clone(f))),
                FileSlot::Unopened(_) => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn forget_file(&self, array: &str) {
        self.files.lock().remove(array);
    }

    /// The directory of `array` (relative to the root), if it has one.
    pub(crate) fn dir_of(&self, array: &str) -> Option<String> {
        self.dirs.lock().by_array.get(array).cloned()
    }

    /// The directory of `array`, assigning a fresh id (never used before in
    /// this store) to a new array.
    pub(crate) fn dir_or_assign(&self, array: &str) -> String {
        let mut t = self.dirs.lock();
        if let Some(d) = t.by_array.get(array) {
            return d.clone();
        }
        let d = crate::registry::dir_id(t.next);
        t.next += 1;
        t.by_array.insert(array.to_owned(), d.clone());
        d
    }

    /// Forgets the directory of an array that was dropped: if the name is used
    /// again, it gets a new directory.
    pub(crate) fn forget_dir(&self, array: &str) {
        self.dirs.lock().by_array.remove(array);
    }

    /// True when some array this handle knows lives in `dir`.
    pub(crate) fn dir_in_use(&self, dir: &str) -> bool {
        self.dirs.lock().by_array.values().any(|d| d == dir)
    }

    /// Directories of `arrays` and the next id, for a new manifest.
    pub(crate) fn dirs_for<'a>(
        &self,
        arrays: impl Iterator<Item = &'a String>,
    ) -> (IndexMap<String, String>, u64) {
        let t = self.dirs.lock();
        let dirs = arrays
            .map(|a| {
                let d = t
                    .by_array
                    .get(a)
                    .expect("every array in a commit has a directory");
                (a.clone(), d.clone())
            })
            .collect();
        (dirs, t.next)
    }

    /// True when this handle holds the writer lock.
    pub(crate) fn writer_held(&self) -> bool {
        self.writer.lock().is_some()
    }

    /// [`Inner::ensure_writer`] for async callers: the lock wait (up to
    /// 250 ms, with sleeps) and the manifest read run on the blocking pool,
    /// never on a runtime worker thread.
    pub(crate) async fn ensure_writer_async(self: &Arc<Self>) -> Result<()> {
        if self.writer_held() && !self.poisoned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || inner.ensure_writer())
            .await
            .expect("writer-lock task panicked")
    }

    /// Takes the writer lock if this handle does not hold it yet. Fails if
    /// another writer holds it, if the store moved past this handle's snapshot,
    /// or after a commit whose durability is unknown.
    pub(crate) fn ensure_writer(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Poisoned {
                path: self.root.clone(),
            });
        }
        let mut w = self.writer.lock();
        if w.is_some() {
            return Ok(());
        }
        let guard = acquire_writer_lock(self.storage.as_ref(), &self.root)?;
        let reg_path = self.root.join(REGISTRY_FILE);
        let on_disk = Manifest::decode(&self.storage.read_all(&reg_path)?, &reg_path)?;
        if on_disk.generation != self.committed.lock().generation {
            return Err(Error::StaleHandle {
                path: self.root.clone(),
            });
        }
        commit::sweep_orphans(self.storage.as_ref(), &self.root, &on_disk);
        *w = Some(guard);
        Ok(())
    }
}

/// How long a would-be writer waits for the lock before reporting `Locked`.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes the store's writer lock, waiting up to [`LOCK_WAIT`]: a lock released
/// an instant ago can still look held (for example while a process spawned
/// concurrently briefly shares this process's descriptors before `exec`), and
/// a second writer should not fail on that. A lock held for longer is `Locked`.
fn acquire_writer_lock(
    storage: &dyn Storage,
    root: &Path,
) -> Result<Box<dyn array_format::LockGuard>> {
    let path = root.join(LOCK_FILE);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        if let Some(guard) = storage.try_lock(&path)? {
            return Ok(guard);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked {
                path: root.to_owned(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Reads the manifest and replays its segments into the dataset map.
pub(crate) fn load(
    storage: &dyn Storage,
    root: &Path,
) -> Result<(Manifest, IndexMap<String, DatasetMeta>)> {
    let reg_path = root.join(REGISTRY_FILE);
    let manifest = Manifest::decode(&storage.read_all(&reg_path)?, &reg_path)?;
    let mut datasets = IndexMap::new();
    for seg in &manifest.segments {
        let path = root.join(META_DIR).join(seg.as_str());
        decode_segment(&storage.read_all(&path)?, &path)?.apply(&mut datasets);
    }
    check_arrays(&datasets, &manifest, &reg_path)?;
    Ok((manifest, datasets))
}
