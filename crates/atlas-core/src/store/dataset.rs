//! [`DatasetView`]: a handle to one dataset.

use std::sync::Arc;

use array_format::{
    ArrayElement, ArrayFile, ArraySchema, ArrayStats, Expected, FillValue, MergedArrayMeta,
};
use indexmap::IndexMap;
use ndarray::{ArrayD, ArrayViewD};

use crate::attr::Attr;
use crate::error::{Error, Result};
use crate::name::{validate_array_name, validate_attribute_name};
use crate::registry::{ArrayEntry, DatasetMeta};
use crate::store::{ArraysChange, FileHandle, Inner, Memo};

/// A handle to one dataset within an [`crate::Atlas`]. Cheap to clone,
/// `Send + Sync`, and usable from many tasks at once.
pub struct DatasetView {
    inner: Arc<Inner>,
    name: String,
    /// The dataset's committed metadata as this view last found it.
    memo: Memo,
}

impl Clone for DatasetView {
    fn clone(&self) -> Self {
        DatasetView::new(Arc::clone(&self.inner), &self.name)
    }
}

impl std::fmt::Debug for DatasetView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatasetView")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DatasetView {
    pub(crate) fn new(inner: Arc<Inner>, name: &str) -> Self {
        DatasetView {
            inner,
            name: name.to_owned(),
            memo: Memo::default(),
        }
    }

    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn not_found(&self) -> Error {
        Error::DatasetNotFound {
            name: self.name.clone(),
        }
    }

    fn array_not_found(&self, array: &str) -> Error {
        Error::ArrayNotFound {
            dataset: self.name.clone(),
            array: array.to_owned(),
        }
    }

    fn with_meta<R>(&self, f: impl FnOnce(&DatasetMeta) -> R) -> Result<R> {
        self.inner
            .with_dataset_memo(&self.name, &self.memo, f)?
            .ok_or_else(|| self.not_found())
    }

    fn with_meta_mut<R>(&self, f: impl FnOnce(&mut DatasetMeta) -> Result<R>) -> Result<R> {
        self.inner.ensure_writer()?;
        self.inner
            .update_dataset(&self.name, None, f)?
            .ok_or_else(|| self.not_found())
    }

    /// As `with_meta_mut`, for a change that adds or removes one array.
    fn with_arrays_mut<R>(
        &self,
        change: ArraysChange<'_>,
        f: impl FnOnce(&mut DatasetMeta) -> Result<R>,
    ) -> Result<R> {
        self.inner.ensure_writer()?;
        self.inner
            .update_dataset(&self.name, Some(change), f)?
            .ok_or_else(|| self.not_found())
    }

    /// The array's file, if this dataset has the array (`Ok(None)` if not).
    async fn array_file(&self, array: &str) -> Result<Option<FileHandle>> {
        if !self.with_meta(|m| m.arrays.contains_key(array))? {
            return Ok(None);
        }
        self.inner.file_async(array).await
    }

    /// The registry's schema of `array` for this dataset (`None`: the
    /// dataset has no such array).
    fn registry_schema(&self, array: &str) -> Result<Option<Arc<ArraySchema>>> {
        self.with_meta(|m| m.arrays.get(array).map(|a| Arc::clone(&a.schema)))
    }

    /// The schema and the array file of `array` (`None`: no such array),
    /// from one registry lookup.
    async fn schema_and_file(&self, array: &str) -> Result<Option<(Arc<ArraySchema>, FileHandle)>> {
        let Some(schema) = self.registry_schema(array)? else {
            return Ok(None);
        };
        Ok(self.inner.file_async(array).await?.map(|f| (schema, f)))
    }

    /// Defines an array of element type `T`. `chunk_shape = None` means one chunk
    /// of the full shape; `fill_value = None` means unwritten cells read as zero.
    pub async fn define_array<T: ArrayElement>(
        &self,
        name: &str,
        dims: Vec<String>,
        shape: Vec<u64>,
        chunk_shape: Option<Vec<u64>>,
        fill_value: Option<FillValue>,
    ) -> Result<()> {
        validate_array_name(name)?;
        // `ArraySchema::new` checks the schema as `validate` does.
        let schema = ArraySchema::new(name, T::DTYPE, dims, shape, chunk_shape, fill_value)
            .map_err(|e| Error::array(&self.name, name, e))?;
        self.define_checked(name, schema).await
    }

    /// Defines an array from a ready schema (element type chosen at run time).
    pub async fn define_array_schema(&self, name: &str, schema: ArraySchema) -> Result<()> {
        validate_array_name(name)?;
        schema
            .validate(name)
            .map_err(|e| Error::array(&self.name, name, e))?;
        self.define_checked(name, schema).await
    }

    /// [`DatasetView::define_array_schema`] after its checks of the name
    /// and the schema (made once per definition, not once per caller).
    async fn define_checked(&self, name: &str, schema: ArraySchema) -> Result<()> {
        self.inner.ensure_writer_async().await?;
        let _s = self.inner.structure.lock().await;
        if self.with_meta(|m| m.arrays.contains_key(name))? {
            return Err(Error::ArrayExists {
                dataset: self.name.clone(),
                array: name.to_owned(),
            });
        }
        // Opens the existing file (if any) off the runtime threads first;
        // creates it only when there is none.
        let file = match self.inner.file_async(name).await? {
            Some(f) => f,
            None => self.inner.file_or_create(name)?,
        };
        let mut f = file.write().await;
        // The registry said the dataset has no such array, so the file is
        // not asked to look the name up in its committed layers (a footer
        // block per layer, for every new dataset): its `Define` record voids
        // whatever they hold.
        // One copy of the schema for the array file and the registry,
        // shared with the last dataset's when equal.
        let schema = f.share_schema(schema);
        f.define_new(&self.name, Arc::clone(&schema))
            .map_err(|e| Error::array(&self.name, name, e))?;
        self.with_arrays_mut(ArraysChange::Added(name), |m| {
            m.arrays.insert(
                name.to_owned(),
                ArrayEntry {
                    schema,
                    attributes: crate::registry::no_array_attributes(),
                },
            );
            Ok(())
        })
    }

    /// Writes a hyperslab at `start` (empty = the origin); chunks only partly
    /// covered are merged with their current contents.
    pub async fn write_array<T: ArrayElement>(
        &self,
        name: &str,
        start: Vec<u64>,
        data: ArrayViewD<'_, T>,
    ) -> Result<()> {
        self.inner.ensure_writer_async().await?;
        let (registry, file) = self
            .schema_and_file(name)
            .await?
            .ok_or_else(|| self.array_not_found(name))?;
        let mut f = file.write_owned().await;
        if f.write_is_in_memory(&self.name, &start, &data) {
            // A small write that reads and writes no storage (into an array
            // defined since the last flush, or of whole chunks of one whose
            // schema is known): encoded here, it costs a fraction of a
            // handoff to the blocking pool (which was most of an ingest of
            // small datasets, and half of an update of 20 tiles of 32 KiB).
            check_schema(&self.name, name, &registry, &f)?;
            f.write_array(&self.name, &start, data)
                .map_err(|e| Error::array(&self.name, name, e))?;
            drop(f);
            return self.inner.data_changed(&self.name, name);
        }
        // Checking the schema (which may read a footer block) and encoding
        // (and merging partly covered chunks, which may read chunks) run on
        // the blocking pool, never on a runtime worker thread. The view is
        // copied to move it there (a memcpy, ~10× faster than the encode).
        let data = data.to_owned();
        let (dataset, array) = (self.name.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            check_schema(&dataset, &array, &registry, &f)?;
            f.write_array(&dataset, &start, data.view())
                .map_err(|e| Error::array(&dataset, &array, e))
        })
        .await
        .expect("write task panicked")?;
        self.inner.data_changed(&self.name, name)
    }

    /// Reads a hyperslab; empty `start` and `count` read everything. `Ok(None)`
    /// when the dataset has no such array; unwritten cells read as the fill value.
    pub async fn read_array<T: ArrayElement>(
        &self,
        name: &str,
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<Option<ArrayD<T>>> {
        let Some((registry, file)) = self.schema_and_file(name).await? else {
            return Ok(None);
        };
        let f = file.read_owned().await;
        // A small read served from memory (the cache, pending writes) runs
        // here: a blocking-pool round trip costs more than it does.
        if let Some(a) = read_expecting(&self.name, name, &registry, &f, &start, &count, true)? {
            return Ok(Some(a));
        }
        // So does one whose blocks storage has without waiting (a local
        // file's page cache): they are fetched here, into the raw cache.
        if f.fetch_nowait(&self.name, &start, &count) {
            if let Some(a) = read_expecting(&self.name, name, &registry, &f, &start, &count, true)?
            {
                return Ok(Some(a));
            }
        }
        // Checking the schema, fetching and decoding run on the blocking pool.
        let (dataset, array) = (self.name.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            read_expecting(&dataset, &array, &registry, &f, &start, &count, false)
        })
        .await
        .expect("read task panicked")
    }

    /// [`DatasetView::read_array`] on the calling thread, for callers that
    /// are not in async code (a Python binding, a CLI, a thread of their
    /// own): no handoff to the blocking pool, which costs more than a small
    /// read itself.
    ///
    /// # Panics
    ///
    /// When called from async code (it waits for the array file's lock and
    /// does I/O, which would block a runtime thread), as tokio's own
    /// blocking calls do.
    pub fn read_array_blocking<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
    ) -> Result<Option<ArrayD<T>>> {
        let Some(registry) = self.registry_schema(name)? else {
            return Ok(None);
        };
        let Some(file) = self.inner.file(name)? else {
            return Ok(None);
        };
        let f = file.blocking_read();
        read_expecting(&self.name, name, &registry, &f, start, count, false)
    }

    /// Deletes an array of this dataset.
    pub async fn delete_array(&self, name: &str) -> Result<()> {
        self.inner.ensure_writer_async().await?;
        let _s = self.inner.structure.lock().await;
        let file = self
            .array_file(name)
            .await?
            .ok_or_else(|| self.array_not_found(name))?;
        let mut f = file.write().await;
        if f.contains(&self.name) {
            f.delete_array(&self.name)
                .map_err(|e| Error::array(&self.name, name, e))?;
        }
        self.with_arrays_mut(ArraysChange::Removed(name), |m| {
            m.arrays.shift_remove(name);
            Ok(())
        })
    }

    /// The dataset's array names, in definition order.
    pub fn list_arrays(&self) -> Result<Vec<String>> {
        self.with_meta(|m| m.arrays.keys().cloned().collect())
    }

    /// The schema of an array, `Ok(None)` if the dataset has no such array.
    pub fn array_schema(&self, name: &str) -> Result<Option<ArraySchema>> {
        self.with_meta(|m| m.arrays.get(name).map(|a| (*a.schema).clone()))
    }

    /// Statistics of an array from stored per-chunk statistics (no data is
    /// decoded); `Ok(None)` if the dataset has no such array.
    pub async fn array_stats(&self, name: &str) -> Result<Option<ArrayStats>> {
        Ok(self.array_meta(name).await?.map(|m| m.stats))
    }

    /// Merged metadata of an array: schema, statistics and storage sizes.
    pub async fn array_meta(&self, name: &str) -> Result<Option<MergedArrayMeta>> {
        let Some((registry, file)) = self.schema_and_file(name).await? else {
            return Ok(None);
        };
        let f = file.read_owned().await;
        // The schema check and the index may read footer blocks: on the
        // blocking pool.
        let (dataset, array) = (self.name.clone(), name.to_owned());
        let mut meta = tokio::task::spawn_blocking(move || {
            check_schema(&dataset, &array, &registry, &f)?;
            f.array_meta(&dataset)
                .map_err(|e| Error::array(&dataset, &array, e))
        })
        .await
        .expect("stats task panicked")?;
        // The array file keys arrays by dataset; callers know them by array name.
        name.clone_into(&mut meta.name);
        Ok(Some(meta))
    }

    /// A copy of the dataset's metadata.
    pub fn meta(&self) -> Result<DatasetMeta> {
        self.with_meta(Clone::clone)
    }

    /// Sets a dataset attribute (replacing any value, keeping its position).
    pub fn set_attribute(&self, key: &str, value: Attr) -> Result<()> {
        validate_attribute_name(key)?;
        self.with_meta_mut(|m| {
            m.attributes.insert(key.to_owned(), value);
            Ok(())
        })
    }

    /// A dataset attribute.
    pub fn get_attribute(&self, key: &str) -> Option<Attr> {
        self.with_meta(|m| m.attributes.get(key).cloned())
            .ok()
            .flatten()
    }

    /// Every dataset attribute, in insertion order (empty if the dataset is gone).
    pub fn attributes(&self) -> IndexMap<String, Attr> {
        self.with_meta(|m| m.attributes.clone()).unwrap_or_default()
    }

    /// Removes a dataset attribute, returning its value.
    pub fn delete_attribute(&self, key: &str) -> Result<Option<Attr>> {
        self.with_meta_mut(|m| Ok(m.attributes.shift_remove(key)))
    }

    /// Sets an attribute of one of the dataset's arrays.
    pub fn set_array_attribute(&self, array: &str, key: &str, value: Attr) -> Result<()> {
        validate_attribute_name(key)?;
        let missing = self.array_not_found(array);
        self.with_meta_mut(|m| {
            let a = m.arrays.get_mut(array).ok_or(missing)?;
            Arc::make_mut(&mut a.attributes).insert(key.to_owned(), value);
            Ok(())
        })
    }

    /// Replaces every attribute of one of the dataset's arrays by
    /// `attributes`, kept as given: arrays handed the same `Arc` share one
    /// copy in memory until one of them changes (bulk writers of many
    /// datasets with the same variables use this to keep their memory down).
    pub fn set_array_attributes(
        &self,
        array: &str,
        attributes: Arc<IndexMap<String, Attr>>,
    ) -> Result<()> {
        for key in attributes.keys() {
            validate_attribute_name(key)?;
        }
        let missing = self.array_not_found(array);
        self.with_meta_mut(|m| {
            m.arrays.get_mut(array).ok_or(missing)?.attributes = attributes;
            Ok(())
        })
    }

    /// An attribute of one of the dataset's arrays.
    pub fn get_array_attribute(&self, array: &str, key: &str) -> Option<Attr> {
        self.with_meta(|m| {
            m.arrays
                .get(array)
                .and_then(|a| a.attributes.get(key).cloned())
        })
        .ok()
        .flatten()
    }

    /// Every attribute of one array, in insertion order.
    pub fn array_attributes(&self, array: &str) -> Result<IndexMap<String, Attr>> {
        self.with_meta(|m| m.arrays.get(array).map(|a| (*a.attributes).clone()))?
            .ok_or_else(|| self.array_not_found(array))
    }

    /// Removes an attribute of one array, returning its value.
    pub fn delete_array_attribute(&self, array: &str, key: &str) -> Result<Option<Attr>> {
        let missing = self.array_not_found(array);
        self.with_meta_mut(|m| {
            Ok(
                Arc::make_mut(&mut m.arrays.get_mut(array).ok_or(missing)?.attributes)
                    .shift_remove(key),
            )
        })
    }
}

/// Checks that the array file describes `dataset`'s `array` as the registry
/// does (`registry`). A difference
/// means one of the two was damaged or tampered with: reading on would trust
/// sizes the registry never agreed to. May read a footer block: call it off
/// the runtime's worker threads.
pub(super) fn check_schema(
    dataset: &str,
    array: &str,
    registry: &ArraySchema,
    file: &ArrayFile,
) -> Result<()> {
    // A footer block that cannot be read is its own error (naming the file).
    let in_file = file
        .try_schema(dataset)
        .map_err(|e| Error::array(dataset, array, e))?;
    if in_file.is_some_and(|f| *f == *registry) {
        return Ok(());
    }
    Err(schema_differs(dataset, array, file))
}

/// The error of an array file whose schema of `dataset` is not the
/// registry's (or that does not define it).
fn schema_differs(dataset: &str, array: &str, file: &ArrayFile) -> Error {
    Error::array(
        dataset,
        array,
        array_format::Error::corrupt(
            file.schema_origin(dataset).unwrap_or(file.dir()),
            0,
            format!("the array file's schema of {dataset:?} differs from the registry's"),
        ),
    )
}

/// A read of `array` from its (locked) file, after checking the file's
/// schema against the registry's (the body of both read paths):
/// [`ArrayFile::read_array_expecting`] with this crate's errors. `None`
/// only when `in_memory_only` and the read would touch storage.
fn read_expecting<T: ArrayElement>(
    dataset: &str,
    array: &str,
    registry: &ArraySchema,
    file: &ArrayFile,
    start: &[u64],
    count: &[u64],
    in_memory_only: bool,
) -> Result<Option<ArrayD<T>>> {
    match file.read_array_expecting::<T>(dataset, registry, start, count, in_memory_only) {
        Ok(Expected::Read(a)) => Ok(Some(a)),
        Ok(Expected::NotInMemory) => {
            assert!(in_memory_only, "a read not limited to memory is made");
            Ok(None)
        }
        Ok(Expected::SchemaDiffers) => Err(schema_differs(dataset, array, file)),
        Err(e) => Err(Error::array(dataset, array, e)),
    }
}
