//! [`Atlas`]: the store handle.
//!
//! **Invariant:** the in-memory `committed` registry always equals the bytes of
//! the `atlas.json` this handle last read or wrote; the live dataset map may be
//! ahead of it by the mutations since the last flush.
//!
//! **Invariant:** a handle opened on a snapshot holds read handles on every
//! layer file that snapshot names, and retired files are deleted only after
//! the policy's grace period (`commit/gc.rs`), so the writer retiring files
//! does not break it within that period, even when the bounded descriptor
//! table has closed its descriptors.

mod across;
mod commit;
mod dataset;
mod files;
mod open;
mod query;
mod writer;

pub use dataset::DatasetView;
pub(crate) use open::load;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use array_format::{ArrayFile, Compression, DeltaCache, LayerId, LockGuard, ReadHandle, Storage};
use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};

use crate::config::{MetaFormat, OpenOptions};
use crate::error::{Error, Result};
use crate::name::validate_dataset_name;
use crate::registry::{DatasetMeta, Policy, Retired, SegmentId};

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
    fn touch(&mut self, name: &str) {
        if !self.dirty.contains(name) {
            self.dirty.insert(name.to_owned());
        }
    }
}

/// The live dataset map's rules, enforced here once: every mutation marks the
/// dataset changed (so the next flush writes it) and the handle dirty (so the
/// next flush commits), and a deleted dataset is remembered as a tombstone.
impl Inner {
    /// Reads one dataset's metadata.
    pub(crate) fn with_dataset<R>(
        &self,
        name: &str,
        f: impl FnOnce(&DatasetMeta) -> R,
    ) -> Option<R> {
        self.live.read().datasets.get(name).map(f)
    }

    /// Reads the whole dataset map.
    pub(crate) fn with_datasets<R>(
        &self,
        f: impl FnOnce(&IndexMap<String, DatasetMeta>) -> R,
    ) -> R {
        f(&self.live.read().datasets)
    }

    /// Changes one dataset's metadata; `None` if it does not exist. The caller
    /// must hold the writer lock.
    pub(crate) fn update_dataset<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut DatasetMeta) -> Result<R>,
    ) -> Option<Result<R>> {
        let mut live = self.live.write();
        let ds = live.datasets.get_mut(name)?;
        let r = f(ds);
        if r.is_ok() {
            live.touch(name);
            self.dirty.store(true, Ordering::SeqCst);
        }
        Some(r)
    }

    /// Adds an empty dataset; `DatasetExists` if the name is taken.
    pub(crate) fn insert_dataset(&self, name: &str) -> Result<()> {
        let mut live = self.live.write();
        if live.datasets.contains_key(name) {
            return Err(Error::DatasetExists {
                name: name.to_owned(),
            });
        }
        live.datasets
            .insert(name.to_owned(), DatasetMeta::default());
        live.touch(name);
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Removes a dataset, leaving a tombstone for the next flush.
    pub(crate) fn remove_dataset(&self, name: &str) {
        let mut live = self.live.write();
        live.datasets.shift_remove(name);
        live.dirty.remove(name);
        live.deleted.insert(name.to_owned());
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// Marks the handle as holding uncommitted changes (array data written).
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }
}

pub(crate) struct Inner {
    pub root: PathBuf,
    pub storage: Arc<dyn Storage>,
    pub cache: Arc<DeltaCache>,
    pub options: OpenOptions,
    pub compression: Compression,
    pub meta_format: MetaFormat,
    live: RwLock<Live>,
    /// Layer lists and generation of the last commit this handle knows.
    pub committed: Mutex<Committed>,
    files: Mutex<HashMap<String, FileSlot>>,
    /// Array name → directory, committed and assigned since.
    dirs: Mutex<DirTable>,
    writer: Mutex<Option<Box<dyn LockGuard>>>,
    pub poisoned: AtomicBool,
    /// Set by every mutation; cleared when a flush commits.
    dirty: AtomicBool,
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
    /// The storage version of the manifest this handle read or wrote last:
    /// the next commit replaces the manifest only if it is still this one.
    pub version: Option<array_format::Version>,
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

impl Atlas {
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
        self.inner.insert_dataset(name)?;
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
        let arrays: Vec<String> = self
            .inner
            .with_dataset(name, |ds| ds.arrays.keys().cloned().collect())
            .ok_or_else(|| Error::DatasetNotFound {
                name: name.to_owned(),
            })?;
        for array in &arrays {
            if let Some(file) = self.inner.file_async(array).await? {
                let mut f = file.write().await;
                if f.contains(name) {
                    f.delete_array(name)
                        .map_err(|e| Error::array(name, array, e))?;
                }
            }
        }
        self.inner.remove_dataset(name);
        Ok(())
    }

    /// Dataset names in insertion order.
    pub fn list_datasets(&self) -> Vec<String> {
        self.inner.with_datasets(|d| d.keys().cloned().collect())
    }

    /// Number of datasets.
    pub fn n_datasets(&self) -> usize {
        self.inner.with_datasets(IndexMap::len)
    }

    /// True when the dataset exists.
    pub fn dataset_exists(&self, name: &str) -> bool {
        self.inner.with_datasets(|d| d.contains_key(name))
    }

    /// A copy of one dataset's metadata (schemas and attributes).
    pub fn dataset_meta(&self, name: &str) -> Option<DatasetMeta> {
        self.inner.with_dataset(name, Clone::clone)
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
}
