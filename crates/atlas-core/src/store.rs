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
mod batch;
mod commit;
mod dataset;
mod files;
mod history;
mod open;
mod query;
mod writer;

pub use batch::{NewArray, NewDataset, PreparedDataset, PreparedRefused};
pub use dataset::DatasetView;
pub(crate) use history::retained as history_retained;
pub use history::{format_time, At, Diff, GcReport, LogEntry, Operation, TagInfo, HISTORY_DIR};
pub(crate) use open::load;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use array_format::{
    ArrayFile, ArrayStats, Compression, DeltaCache, LayerId, LockGuard, ReadHandle, Storage,
};
use indexmap::IndexMap;
use parking_lot::{Mutex, RwLock};

use crate::attr::Attr;
use crate::config::{MetaFormat, OpenOptions};
use crate::error::{Error, Result};
use crate::name::validate_dataset_name;
use crate::registry::{
    ArrayEntry, DatasetMeta, Entries, Policy, Record, Retired, RunId, RunSet, SchemaOf, SegmentId,
};
use roaring::RoaringTreemap;

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

/// The one array a change to a dataset adds, removes or writes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ArraysChange<'a> {
    Added(&'a str),
    Removed(&'a str),
    /// Its data changed: its catalog statistics are recomputed at flush.
    Written(&'a str),
}

/// The handle's view of the registry: the committed runs plus the changes
/// since the last commit.
pub(crate) struct Live {
    /// The committed registry this handle reads.
    pub base: Arc<RunSet>,
    /// The committed generation's `next_id`: ids at or above it are new.
    pub base_next_id: u64,
    /// Datasets created, changed or deleted since the last commit, by name:
    /// the change's sequence number and the new record (`None`: deleted).
    pub changed: crate::FastIndexMap<String, (u64, Option<Record>)>,
    /// Committed ids made dead since the last commit (deleted or re-created).
    pub killed: RoaringTreemap,
    /// The next dataset id to assign.
    pub next_id: u64,
    /// Live datasets.
    pub n: u64,
    /// Array name → live datasets that have it, in order of first use.
    pub users: crate::FastIndexMap<String, u64>,
    /// Increases with every change (see `changed`).
    pub seq: u64,
}

impl Live {
    /// The current record of `name` as far as the changes know: `Some(x)`
    /// decides (`x = None`: deleted), `None`: ask the committed runs.
    #[allow(clippy::option_option)] // "no change" differs from "deleted"
    fn changed_record(&self, name: &str) -> Option<Option<&Record>> {
        self.changed.get(name).map(|(_, r)| r.as_ref())
    }

    /// The current record of `name`, reading the committed runs if needed.
    fn current(&self, name: &str) -> Result<Option<Record>> {
        match self.changed_record(name) {
            Some(r) => Ok(r.cloned()),
            None => self.base.get(name),
        }
    }

    fn count<'a>(&mut self, arrays: impl Iterator<Item = &'a str>, add: bool) {
        for a in arrays {
            match self.users.get_mut(a) {
                Some(n) if add => *n += 1,
                None if add => {
                    self.users.insert(a.to_owned(), 1);
                }
                Some(n) => {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        // Used again later, it lists last (order of first use).
                        self.users.shift_remove(a);
                    }
                }
                None => {}
            }
        }
    }

    fn put(&mut self, name: &str, rec: Option<Record>) {
        self.seq += 1;
        let seq = self.seq;
        self.changed.insert(name.to_owned(), (seq, rec));
    }
}

/// One view's memo of its dataset's committed metadata (see
/// [`Inner::with_dataset_memo`]).
#[derive(Default)]
pub(crate) struct Memo(parking_lot::Mutex<Option<(std::sync::Weak<RunSet>, Arc<DatasetMeta>)>>);

/// The registry's rules, enforced here once: every mutation records the
/// dataset's new state (so the next flush writes it) and marks the handle
/// dirty (so the next flush commits), keeps the per-array user counts, and a
/// deleted dataset's id is killed for good.
impl Inner {
    /// After a failed flush, compaction or history commit: it may have left
    /// files no commit names, so the next `gc` sweeps orphans again.
    pub(crate) fn note_failure<T>(&self, r: &Result<T>) {
        if r.is_err() {
            self.swept.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// One dataset's current record (committed state plus changes).
    pub(crate) fn lookup(&self, name: &str) -> Result<Option<Record>> {
        let base = {
            let live = self.live.read();
            if let Some(r) = live.changed_record(name) {
                return Ok(r.cloned());
            }
            Arc::clone(&live.base)
        };
        base.get(name)
    }

    /// `array`'s schema in each of `names`, in the order given, from one
    /// view of the registry (the changes since the last commit first, then
    /// the committed runs), with the distinct entries the answers name.
    /// Looks them up in name order, walking each run's record blocks beside
    /// them, so each block is decoded once however the names come, and
    /// builds no dataset record.
    pub(crate) fn lookup_schemas(
        &self,
        names: &[&str],
        array: &str,
    ) -> Result<(Entries, Vec<SchemaOf>)> {
        // Names in order (a scan's usual case) are looked up as given.
        let order: Option<Vec<usize>> = (!names.is_sorted()).then(|| {
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_unstable_by_key(|i| names[*i]);
            order
        });
        let sorted: Vec<&str> = match &order {
            Some(order) => order.iter().map(|&i| names[i]).collect(),
            None => names.to_vec(),
        };
        let mut entries = Entries::default();
        let mut found: Vec<Option<SchemaOf>> = vec![None; names.len()];
        let base = {
            let live = self.live.read();
            if !live.changed.is_empty() {
                for (f, name) in found.iter_mut().zip(&sorted) {
                    if let Some(r) = live.changed_record(name) {
                        *f = Some(r.map_or(SchemaOf::NoDataset, |r| {
                            SchemaOf::of(&r.meta, array, &mut entries)
                        }));
                    }
                }
            }
            Arc::clone(&live.base)
        };
        base.get_schemas(&sorted, array, &mut found, &mut entries)?;
        let found = found.into_iter().map(|f| f.expect("every name answered"));
        let out = match order {
            None => found.collect(),
            Some(order) => {
                let mut out = vec![SchemaOf::NoDataset; names.len()];
                for (i, f) in order.into_iter().zip(found) {
                    out[i] = f;
                }
                out
            }
        };
        Ok((entries, out))
    }

    /// [`Inner::with_dataset`] through `memo`, the metadata a view last
    /// found with the committed registry state it came from: while that
    /// state is still the current one (a commit or refresh installs a new
    /// one) and the dataset has no pending change (looked up first), the
    /// registry is not searched again. The memo holds its state weakly, so
    /// it keeps no old run open, and that state's address cannot be reused
    /// while the memo names it. A memo busy in another task is passed by.
    pub(crate) fn with_dataset_memo<R>(
        &self,
        name: &str,
        memo: &Memo,
        f: impl FnOnce(&DatasetMeta) -> R,
    ) -> Result<Option<R>> {
        let base = {
            let live = self.live.read();
            if let Some(r) = live.changed_record(name) {
                return Ok(r.map(|r| f(&r.meta)));
            }
            Arc::clone(&live.base)
        };
        if let Some(m) = memo.0.try_lock() {
            if let Some((state, meta)) = m.as_ref() {
                if std::ptr::eq(state.as_ptr(), Arc::as_ptr(&base)) {
                    return Ok(Some(f(meta)));
                }
            }
        }
        let Some(rec) = base.get(name)? else {
            return Ok(None);
        };
        let r = f(&rec.meta);
        if let Some(mut m) = memo.0.try_lock() {
            *m = Some((Arc::downgrade(&base), rec.meta));
        }
        Ok(Some(r))
    }

    /// Reads one dataset's metadata.
    pub(crate) fn with_dataset<R>(
        &self,
        name: &str,
        f: impl FnOnce(&DatasetMeta) -> R,
    ) -> Result<Option<R>> {
        Ok(self.lookup(name)?.map(|r| f(&r.meta)))
    }

    /// Changes one dataset's metadata; `Ok(None)` if it does not exist. The
    /// caller must hold the writer lock. `arrays_change` names the array `f`
    /// adds or removes (its user count changes; an added array has no
    /// statistics until the next flush) or whose data was written (its
    /// statistics are dropped until the next flush), if any. The record is changed in place in
    /// the handle's changes (its first change copies the committed record
    /// there), so repeated small changes never copy the whole record.
    pub(crate) fn update_dataset<R>(
        &self,
        name: &str,
        arrays_change: Option<ArraysChange<'_>>,
        f: impl FnOnce(&mut DatasetMeta) -> Result<R>,
    ) -> Result<Option<R>> {
        let mut live = self.live.write();
        // The name is hashed once when the dataset has changed already (as
        // in every call after its first), twice on its first change.
        let at = match live.changed.get_index_of(name) {
            Some(i) if live.changed[i].1.is_none() => return Ok(None),
            Some(i) => i,
            None => {
                let Some(rec) = live.base.get(name)? else {
                    return Ok(None);
                };
                live.put(name, Some(rec));
                live.changed.len() - 1
            }
        };
        live.seq += 1;
        let seq = live.seq;
        let (_, (entry_seq, rec)) = live.changed.get_index_mut(at).expect("just ensured");
        let rec = rec.as_mut().expect("just ensured");
        let meta = Arc::make_mut(&mut rec.meta);
        let r = f(meta)?;
        *entry_seq = seq;
        if let Some(ArraysChange::Removed(a) | ArraysChange::Written(a)) = arrays_change {
            if rec.stats.contains_key(a) {
                Arc::make_mut(&mut rec.stats).remove(a);
            }
        }
        match arrays_change {
            Some(ArraysChange::Added(a)) => live.count(std::iter::once(a), true),
            Some(ArraysChange::Removed(a)) => live.count(std::iter::once(a), false),
            Some(ArraysChange::Written(_)) | None => {}
        }
        self.dirty.store(true, Ordering::SeqCst);
        Ok(Some(r))
    }

    /// Records that `array` of dataset `name` has new data: its statistics are
    /// recomputed at the next flush.
    pub(crate) fn data_changed(&self, name: &str, array: &str) -> Result<()> {
        self.update_dataset(name, Some(ArraysChange::Written(array)), |_| Ok(()))?;
        Ok(())
    }

    /// Adds an empty dataset with a fresh id; `DatasetExists` if the name is taken.
    pub(crate) fn insert_dataset(&self, name: &str) -> Result<()> {
        let mut live = self.live.write();
        if live.current(name)?.is_some() {
            return Err(Error::DatasetExists {
                name: name.to_owned(),
            });
        }
        let id = live.next_id;
        live.next_id += 1;
        live.n += 1;
        live.put(
            name,
            Some(Record {
                id,
                meta: Arc::new(DatasetMeta::default()),
                stats: Arc::default(),
            }),
        );
        self.dirty.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Removes a dataset: its id is killed, a tombstone goes to the next flush.
    pub(crate) fn remove_dataset(&self, name: &str) -> Result<()> {
        let mut live = self.live.write();
        if let Some(rec) = live.current(name)? {
            live.killed.insert(rec.id);
            live.n = live.n.saturating_sub(1);
            let arrays: Vec<String> = rec.meta.arrays.keys().cloned().collect();
            live.count(arrays.iter().map(String::as_str), false);
            live.put(name, None);
            self.dirty.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// One consistent view of the registry: the committed runs and a copy
    /// of the changes, taken under one lock.
    pub(crate) fn view(&self) -> RegistryView {
        let live = self.live.read();
        RegistryView {
            base: Arc::clone(&live.base),
            changed: live
                .changed
                .iter()
                .map(|(n, (_, r))| (n.clone(), r.clone()))
                .collect(),
            killed: live.killed.clone(),
            base_next_id: live.base_next_id,
        }
    }

    /// Live `(id, name)` pairs in insertion (id) order.
    pub(crate) fn list(&self) -> Result<Vec<(u64, String)>> {
        self.view().list()
    }
}

/// The registry as one handle sees it at one instant (see [`Inner::view`]).
pub(crate) struct RegistryView {
    pub base: Arc<RunSet>,
    /// The changes since the last commit (`None`: deleted).
    pub changed: crate::FastMap<String, Option<Record>>,
    killed: RoaringTreemap,
    base_next_id: u64,
}

/// A dataset's entry in a catalog column, as [`RegistryView::walk_column`]
/// gives it.
pub(crate) enum ColumnRow<'a, T> {
    /// An unchanged committed dataset's row.
    Committed(T),
    /// A dataset changed since the last commit: its current record decides.
    Changed(&'a Record),
}

impl RegistryView {
    /// Live `(id, name)` pairs in insertion (id) order.
    pub(crate) fn list(&self) -> Result<Vec<(u64, String)>> {
        let mut out = self.base.list()?;
        if !self.killed.is_empty() {
            out.retain(|(id, _)| !self.killed.contains(*id));
        }
        let mut new: Vec<(u64, String)> = self
            .changed
            .iter()
            .filter_map(|(n, r)| r.as_ref().map(|r| (r.id, n.clone())))
            .filter(|(id, _)| *id >= self.base_next_id)
            .collect();
        new.sort_unstable_by_key(|(id, _)| *id);
        out.extend(new);
        Ok(out)
    }

    /// Walks the live datasets in insertion order beside a committed catalog
    /// column (`rows` sorted by id): `f` gets every unchanged dataset that
    /// has a row, and every changed dataset with its current record.
    pub(crate) fn walk_column<T>(
        &self,
        rows: Vec<(u64, T)>,
        mut f: impl FnMut(u64, String, ColumnRow<'_, T>),
    ) -> Result<()> {
        let mut it = rows.into_iter().peekable();
        for (id, name) in self.list()? {
            while it.peek().is_some_and(|(r, _)| *r < id) {
                it.next();
            }
            match self.changed.get(&name) {
                Some(Some(rec)) => f(id, name, ColumnRow::Changed(rec)),
                Some(None) => {}
                None => {
                    if let Some((_, v)) = it.next_if(|(r, _)| *r == id) {
                        f(id, name, ColumnRow::Committed(v));
                    }
                }
            }
        }
        Ok(())
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
    files: Mutex<crate::FastMap<String, FileSlot>>,
    /// Array name → directory, committed and assigned since.
    dirs: Mutex<DirTable>,
    writer: Mutex<Option<Box<dyn LockGuard>>>,
    pub poisoned: AtomicBool,
    /// True while this writer (on a local filesystem, where its lock keeps
    /// other writers out) has swept orphans since it took the lock and none
    /// of its flushes, compactions or history commits has failed since: no
    /// orphan can exist, so `gc` need not list the store again.
    pub swept: AtomicBool,
    /// Set by every mutation; cleared when a flush commits.
    dirty: AtomicBool,
    /// Serialises flush and compact.
    pub commit_lock: tokio::sync::Mutex<()>,
    /// One pending-memory budget for every array file of the store.
    pending_budget: Arc<array_format::PendingBudget>,
    /// Serialises structural changes (datasets and array definitions) so that
    /// registry and array files change together.
    pub structure: tokio::sync::Mutex<()>,
    /// The generation a read-only handle on the past reads (`Atlas::open_at`).
    pub at: Option<u64>,
    /// Files named by tagged generations (history copies never change).
    pub history_names: Mutex<HashMap<u64, Arc<std::collections::HashSet<String>>>>,
}

/// The directory of every array this handle knows, and the next id to assign.
pub(crate) struct DirTable {
    pub by_array: crate::FastMap<String, String>,
    pub next: u64,
}

pub(crate) struct Committed {
    pub generation: u64,
    /// The storage version of the manifest this handle read or wrote last:
    /// the next commit replaces the manifest only if it is still this one.
    pub version: Option<array_format::Version>,
    pub arrays: IndexMap<String, Vec<LayerId>>,
    /// Registry segments of a store written before runs (retired by the
    /// first commit, which writes every dataset into a run).
    pub segments: Vec<SegmentId>,
    pub runs: Vec<RunId>,
    pub policy: Policy,
    /// The committed retired list: whole only when `retired_loaded` (the
    /// writer loads it when it takes the lock; readers never need it).
    pub retired: Vec<Retired>,
    /// Its sealed chunks (loaded with it).
    pub retired_sealed: Vec<Arc<crate::registry::Sealed>>,
    /// The committed manifest's retired-list side file, if it has one.
    pub retired_file: Option<String>,
    pub retired_loaded: bool,
    /// Retention start, tags, commit time and bytes of the committed manifest.
    pub history: history::HistoryState,
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
    pub async fn open_dataset(&self, name: &str) -> Result<DatasetView> {
        // Looking a dataset up may read one registry block: a request on
        // object stores, made off the runtime threads; a local read inline.
        let exists = if self.inner.storage.is_object_store() {
            let inner = Arc::clone(&self.inner);
            let n = name.to_owned();
            tokio::task::spawn_blocking(move || inner.lookup(&n).map(|r| r.is_some()))
                .await
                .expect("lookup task panicked")?
        } else {
            self.inner.lookup(name)?.is_some()
        };
        if !exists {
            return Err(Error::DatasetNotFound {
                name: name.to_owned(),
            });
        }
        Ok(DatasetView::new(Arc::clone(&self.inner), name))
    }

    /// Deletes a dataset and all its arrays. Re-creating the name later never
    /// brings the old data back (the new dataset gets a new id).
    pub async fn delete_dataset(&self, name: &str) -> Result<()> {
        self.inner.ensure_writer_async().await?;
        let _s = self.inner.structure.lock().await;
        let arrays: Vec<String> = self
            .inner
            .with_dataset(name, |ds| ds.arrays.keys().cloned().collect())?
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
        self.inner.remove_dataset(name)
    }

    /// Dataset names in insertion order. Streams the registry's id blocks:
    /// about 0.2 s per million datasets.
    pub fn list_datasets(&self) -> Result<Vec<String>> {
        Ok(self.inner.list()?.into_iter().map(|(_, n)| n).collect())
    }

    /// Dataset names with their ids, in insertion (id) order.
    pub fn list_datasets_with_ids(&self) -> Result<Vec<(u64, String)>> {
        self.inner.list()
    }

    /// Number of datasets (kept in the manifest: nothing is read).
    pub fn n_datasets(&self) -> usize {
        self.inner.live.read().n as usize
    }

    /// The schema of `array` in each of `datasets`, in the order given,
    /// from one pass over the registry: each record block is decoded once
    /// and no dataset record is built, so this costs far less than a
    /// lookup per dataset (`DatasetView::array_schema`) for many names.
    /// `None` where a dataset lacks the array; a missing dataset is
    /// [`Error::DatasetNotFound`].
    pub fn array_schemas(
        &self,
        array: &str,
        datasets: &[&str],
    ) -> Result<Vec<Option<array_format::ArraySchema>>> {
        Ok(self
            .array_entries(array, datasets)?
            .into_iter()
            .map(|e| e.map(|e| (*e.schema).clone()))
            .collect())
    }

    /// The schema and attributes of `array` in each of `datasets`, in the
    /// order given, from one pass over the registry like
    /// [`Atlas::array_schemas`]. Entries share their schema and attribute
    /// map with every other dataset of the same registry run that has equal
    /// ones (`Arc::ptr_eq` is a quick test of equality, though not the only
    /// one). `None` where a dataset lacks the array; a missing dataset is
    /// [`Error::DatasetNotFound`].
    pub fn array_entries(&self, array: &str, datasets: &[&str]) -> Result<Vec<Option<ArrayEntry>>> {
        let (entries, found) = self.inner.lookup_schemas(datasets, array)?;
        found
            .into_iter()
            .zip(datasets)
            .map(|(s, name)| match s {
                SchemaOf::Schema(k) => Ok(Some(entries.get(k).clone())),
                SchemaOf::NoArray => Ok(None),
                SchemaOf::NoDataset => Err(Error::DatasetNotFound {
                    name: (*name).to_owned(),
                }),
            })
            .collect()
    }

    /// True when the dataset exists (reads at most one registry block per run).
    pub fn dataset_exists(&self, name: &str) -> Result<bool> {
        Ok(self.inner.lookup(name)?.is_some())
    }

    /// A dataset's id: an integer assigned at creation from a counter in the
    /// manifest, never reused (a dataset deleted and re-created gets a new one).
    pub fn dataset_id(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.inner.lookup(name)?.map(|r| r.id))
    }

    /// A copy of one dataset's metadata (schemas and attributes).
    pub fn dataset_meta(&self, name: &str) -> Result<Option<DatasetMeta>> {
        Ok(self.inner.lookup(name)?.map(|r| (*r.meta).clone()))
    }

    /// Names of the datasets that have `array`, in dataset order. Reads the
    /// array's catalog column and the dataset list, not the records.
    pub fn datasets_with_array(&self, array: &str) -> Result<Vec<String>> {
        let view = self.inner.view();
        let rows = view.base.array_rows(array)?;
        let mut out = Vec::new();
        view.walk_column(rows, |_, name, row| {
            if match row {
                ColumnRow::Committed(_) => true,
                ColumnRow::Changed(rec) => rec.meta.arrays.contains_key(array),
            } {
                out.push(name);
            }
        })?;
        Ok(out)
    }

    /// Number of datasets that have `array` (kept in the manifest: nothing is
    /// read).
    pub fn n_datasets_with_array(&self, array: &str) -> usize {
        self.inner
            .live
            .read()
            .users
            .get(array)
            .copied()
            .unwrap_or(0) as usize
    }

    /// Distinct array names over all datasets, in order of first use (kept in
    /// the manifest; an array no dataset had any more lists last when used
    /// again).
    pub fn list_arrays(&self) -> Vec<String> {
        self.inner
            .live
            .read()
            .users
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Dataset-level statistics of `array` in every dataset that has it, in
    /// insertion order, from the registry's catalog: committed datasets cost
    /// only the array's catalog column (no array file is opened); datasets
    /// changed since the last commit read their array file's index.
    pub async fn catalog_array_stats(&self, array: &str) -> Result<Vec<(String, ArrayStats)>> {
        let view = self.inner.view();
        let a = array.to_owned();
        // The column is read on the blocking pool; datasets changed since
        // the last commit whose statistics are stale read their array file.
        let (mut out, pending) = tokio::task::spawn_blocking(move || {
            let rows = view.base.array_rows(&a)?;
            let (mut out, mut pending) = (Vec::new(), Vec::new());
            view.walk_column(rows, |id, name, row| match row {
                ColumnRow::Committed(st) => out.push((id, name, st)),
                ColumnRow::Changed(rec) if rec.meta.arrays.contains_key(&a) => {
                    match rec.stats.get(&a) {
                        Some(st) => out.push((id, name, st.clone())),
                        None => pending.push((id, name)),
                    }
                }
                ColumnRow::Changed(_) => {}
            })?;
            Ok::<_, Error>((out, pending))
        })
        .await
        .expect("catalog task panicked")?;
        for (id, name) in pending {
            let Some(file) = self.inner.file_async(array).await? else {
                continue;
            };
            let f = file.read().await;
            let st = f
                .array_stats(&name)
                .map_err(|e| Error::array(&name, array, e))?;
            out.push((id, name, st));
        }
        out.sort_by_key(|(id, _, _)| *id);
        Ok(out.into_iter().map(|(_, n, s)| (n, s)).collect())
    }

    /// The value of a scalar dataset attribute (not a list) in every dataset
    /// that has it, in insertion order, from the registry's catalog.
    pub fn catalog_attribute(&self, key: &str) -> Result<Vec<(String, Attr)>> {
        let view = self.inner.view();
        let rows = view.base.attribute_rows(key)?;
        let mut out = Vec::new();
        view.walk_column(rows, |_, name, row| match row {
            ColumnRow::Committed(v) => out.push((name, v)),
            ColumnRow::Changed(rec) => {
                if let Some(v) = rec.meta.attributes.get(key).filter(|v| v.is_scalar()) {
                    out.push((name, v.clone()));
                }
            }
        })?;
        Ok(out)
    }

    /// Bytes of the committed registry runs this handle reads.
    pub fn registry_bytes(&self) -> u64 {
        self.inner.live.read().base.bytes()
    }

    /// Array and scalar dataset-attribute names with a catalog column in the
    /// committed registry.
    pub fn catalog_names(&self) -> (Vec<String>, Vec<String>) {
        let base = Arc::clone(&self.inner.live.read().base);
        (
            base.array_names().into_iter().collect(),
            base.attribute_names().into_iter().collect(),
        )
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
        let r = commit::flush_and_merge(&self.inner).await;
        self.inner.note_failure(&r);
        r
    }

    /// Flushes, then merges each array's layers into one new base layer.
    /// Crash-safe and bounded in memory; open readers keep their snapshot.
    pub async fn compact(&self) -> Result<()> {
        let r = commit::compact(&self.inner).await;
        self.inner.note_failure(&r);
        r
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
