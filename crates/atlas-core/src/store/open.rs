//! Creating and opening stores: the manifest and segment replay, taking
//! read handles on every named layer, building the handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use array_format::{ArrayFile, Codec, DeltaCache, LocalStorage, Storage};
use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};

use super::writer::acquire_writer_lock;
use super::{
    commit, Atlas, Committed, DirTable, FileSlot, Inner, Live, PinnedLayers, REGISTRY_FILE,
};
use crate::config::{OpenOptions, StoreConfig};
use crate::error::{Error, Result};
use crate::registry::{
    check_arrays, decode_segment, DatasetMeta, Manifest, Record, RunSet, META_DIR,
};
use roaring::RoaringTreemap;

fn is_not_found(e: &array_format::Error) -> bool {
    matches!(e, array_format::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

impl Atlas {
    /// Creates a store at `location`: a path, a `file://` URL (the directory
    /// is made if missing), or an object-store URL (`s3://bucket/prefix`,
    /// `gs://…`, `az://…`, `memory://…`; settings from the environment, see
    /// [`crate::storage_for`]). Errors if a store already exists there.
    pub async fn create(location: &str, config: StoreConfig) -> Result<Atlas> {
        let (storage, root) = crate::storage_for(location, &[])?;
        Self::create_with(storage, &root, config).await
    }

    /// Opens the store at `location` (as for [`Atlas::create`]), read-only
    /// until the first mutation.
    pub async fn open(location: &str) -> Result<Atlas> {
        let (storage, root) = crate::storage_for(location, &[])?;
        Self::open_with(storage, &root, OpenOptions::default()).await
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
        manifest.history_from = Some(1);
        manifest.commit = Some(crate::registry::CommitInfo {
            time_ms: crate::registry::now_ms(),
            op: "create".to_owned(),
            message: None,
            added: 0,
            changed: 0,
            deleted: 0,
            bytes_written: 0,
        });
        let version = match commit::write_manifest(storage.as_ref(), &root, &mut manifest, None) {
            Ok(v) => v,
            // Another creator won the race (object stores: `If-None-Match`).
            Err(commit::CommitError::Conflict) => return Err(Error::StoreExists { path: root }),
            Err(e) => return Err(e.into_error(&root)),
        };
        let atlas = Self::from_parts(
            storage,
            root,
            (manifest, Some(version)),
            Loaded::Runs(RunSet::default()),
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
        let ((manifest, version), datasets, handles) = loop {
            // One read of the manifest, one per registry segment (no listing,
            // no probe first: object stores pay per request).
            let not_found = match load(storage.as_ref(), &root) {
                Ok((manifest, version, datasets)) => {
                    match Self::pin_layers(storage.as_ref(), &root, &manifest) {
                        Ok(h) => break ((manifest, version), datasets, h),
                        // A commit retired a file between reading the manifest and
                        // opening it: read the newer manifest.
                        Err(e) if is_not_found(&e) => Error::from(e),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(Error::Storage(e)) if is_not_found(&e) => Error::Storage(e),
                Err(e) => return Err(e),
            };
            if !storage.exists(&reg_path)? {
                return Err(Error::StoreNotFound { path: root });
            }
            if attempt >= 8 {
                return Err(not_found);
            }
            attempt += 1;
        };
        let atlas = Self::from_parts(
            storage,
            root,
            (manifest, Some(version)),
            datasets,
            handles,
            options,
        );
        if options.write {
            atlas.inner.ensure_writer()?;
        }
        Ok(atlas)
    }

    pub(super) fn pin_layers(
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

    pub(super) fn from_parts(
        storage: Arc<dyn Storage>,
        root: PathBuf,
        (manifest, version): (Manifest, Option<array_format::Version>),
        registry: Loaded,
        handles: HashMap<String, PinnedLayers>,
        options: OpenOptions,
    ) -> Atlas {
        let live = registry.into_live(&manifest);
        let history = super::history::HistoryState::of(&manifest);
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
                live: RwLock::new(live),
                committed: Mutex::new(Committed {
                    generation: manifest.generation,
                    version,
                    arrays: manifest.arrays,
                    segments: manifest.segments,
                    runs: manifest.runs,
                    policy: manifest.policy,
                    retired: manifest.retired,
                    retired_sealed: manifest.retired_sealed,
                    retired_file: manifest.retired_file,
                    retired_loaded: manifest.retired_loaded,
                    history,
                }),
                files: Mutex::new(files),
                dirs: Mutex::new(dirs),
                writer: Mutex::new(None),
                poisoned: AtomicBool::new(false),
                swept: AtomicBool::new(false),
                dirty: AtomicBool::new(false),
                commit_lock: tokio::sync::Mutex::new(()),
                pending_budget: Arc::new(array_format::PendingBudget::new(
                    options.pending_budget_bytes,
                )),
                structure: tokio::sync::Mutex::new(()),
                at: None,
                history_names: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    /// Makes this handle's state the committed manifest `m` (after a
    /// restore): the registry view, the array files and directories. Handles
    /// already given out keep reading what they read.
    pub(super) fn replace_state(
        &self,
        m: &Manifest,
        registry: Loaded,
        handles: HashMap<String, PinnedLayers>,
    ) {
        *self.live.write() = registry.into_live(m);
        *self.files.lock() = handles
            .into_iter()
            .map(|(k, v)| (k, FileSlot::Unopened(v)))
            .collect();
        *self.dirs.lock() = DirTable {
            by_array: m.dirs.iter().map(|(a, d)| (a.clone(), d.clone())).collect(),
            next: m.next_dir,
        };
        let mut c = self.committed.lock();
        c.arrays.clone_from(&m.arrays);
        c.segments.clone_from(&m.segments);
        c.runs.clone_from(&m.runs);
    }
}

/// A store's registry as read at open.
pub(crate) enum Loaded {
    /// The manifest's runs, opened (indexes only).
    Runs(RunSet),
    /// A store written before runs: every dataset, replayed from segments.
    Legacy(IndexMap<String, DatasetMeta>),
}

impl Loaded {
    /// Every dataset's record by name (the whole registry, for `verify`).
    /// Records of a store upgraded from segments carry no statistics.
    pub(crate) fn into_records(self) -> Result<IndexMap<String, Record>> {
        match self {
            Loaded::Runs(runs) => {
                let mut out = IndexMap::new();
                runs.for_each(|name, rec| {
                    out.insert(name.to_owned(), rec);
                    Ok(())
                })?;
                Ok(out)
            }
            Loaded::Legacy(map) => Ok(map
                .into_iter()
                .enumerate()
                .map(|(i, (n, meta))| {
                    (
                        n,
                        Record {
                            id: i as u64,
                            meta: Arc::new(meta),
                            stats: Arc::default(),
                        },
                    )
                })
                .collect()),
        }
    }

    /// The handle's registry view. A legacy store's datasets become changes
    /// (ids in insertion order, statistics recomputed): its next commit writes
    /// them all into one run and retires the segments.
    fn into_live(self, manifest: &Manifest) -> Live {
        match self {
            Loaded::Runs(runs) => Live {
                base: Arc::new(runs),
                base_next_id: manifest.next_id,
                changed: crate::FastIndexMap::default(),
                killed: RoaringTreemap::new(),
                next_id: manifest.next_id,
                n: manifest.n_datasets,
                users: manifest
                    .users
                    .iter()
                    .map(|(a, n)| (a.clone(), *n))
                    .collect(),
                seq: 0,
            },
            Loaded::Legacy(map) => {
                let mut users = crate::FastIndexMap::<String, u64>::default();
                let mut changed = crate::FastIndexMap::with_capacity_and_hasher(
                    map.len(),
                    crate::FastState::default(),
                );
                for (i, (name, meta)) in map.into_iter().enumerate() {
                    for a in meta.arrays.keys() {
                        *users.entry(a.clone()).or_insert(0) += 1;
                    }
                    let rec = Record {
                        id: i as u64,
                        meta: Arc::new(meta),
                        stats: Arc::default(),
                    };
                    changed.insert(name, (i as u64 + 1, Some(rec)));
                }
                let n = changed.len() as u64;
                Live {
                    base: Arc::new(RunSet::default()),
                    base_next_id: 0,
                    changed,
                    killed: RoaringTreemap::new(),
                    next_id: n,
                    n,
                    users,
                    seq: n,
                }
            }
        }
    }
}

/// Reads the manifest (with its storage version) and its registry: the runs'
/// indexes, or, for a store written before runs, every segment.
pub(crate) fn load(
    storage: &dyn Storage,
    root: &Path,
) -> Result<(Manifest, array_format::Version, Loaded)> {
    let reg_path = root.join(REGISTRY_FILE);
    let (bytes, version) = storage.read_versioned(&reg_path)?;
    let manifest = Manifest::decode(&bytes, &reg_path)?;
    let loaded = load_registry(storage, root, &manifest)?;
    Ok((manifest, version, loaded))
}

/// Reads the registry a manifest names: its runs' indexes, or, for a store
/// written before runs, every segment.
pub(crate) fn load_registry(
    storage: &dyn Storage,
    root: &Path,
    manifest: &Manifest,
) -> Result<Loaded> {
    let reg_path = root.join(REGISTRY_FILE);
    if manifest.version >= 3 {
        let runs = RunSet::open(storage, root, &manifest.runs)?;
        return Ok(Loaded::Runs(runs));
    }
    let mut datasets = IndexMap::new();
    for seg in &manifest.segments {
        let path = root.join(META_DIR).join(seg.as_str());
        decode_segment(&storage.read_all(&path)?, &path)?.apply(&mut datasets);
    }
    check_arrays(&datasets, manifest, &reg_path)?;
    Ok(Loaded::Legacy(datasets))
}
