//! [`Atlas::create_datasets`]: many new datasets, with their attributes,
//! arrays and cells, in one call.
//!
//! Creating a dataset through [`crate::DatasetView`] takes a call per
//! attribute, per array definition and per write, and each call looks the
//! dataset up, takes the array file's lock and changes the registry's
//! record again. A batch checks everything first, takes each array file's
//! lock once, encodes the cells of different arrays on different cores
//! (past 256 KiB of cells), and
//! adds every record to the registry under one lock.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use array_format::{ArrayFile, ArraySchema, Compression, EncodedArray};
use indexmap::IndexMap;
use rayon::prelude::*;
use tokio::sync::OwnedRwLockWriteGuard;

use super::{Atlas, Inner};
use crate::attr::Attr;
use crate::data::{with_array_data, ArrayData};
use crate::error::{Error, Result};
use crate::name::{validate_array_name, validate_attribute_name, validate_dataset_name};
use crate::registry::{ArrayEntry, DatasetMeta, Record};

/// One array of a [`NewDataset`]: its definition, its attributes and,
/// optionally, all its cells.
#[derive(Clone, Debug)]
pub struct NewArray {
    /// Array name.
    pub name: String,
    /// The schema. Datasets whose arrays share one `Arc` share one copy in
    /// memory, and the batch checks it once.
    pub schema: Arc<ArraySchema>,
    /// Attributes of the array, kept as given (shared like the schema).
    pub attributes: Arc<IndexMap<String, Attr>>,
    /// Every cell of the array, written at the origin: its element type
    /// must be the schema's and its shape the schema's shape. `None` leaves
    /// every cell at the fill value.
    pub data: Option<ArrayData>,
}

impl NewArray {
    /// An array with no attributes.
    pub fn new(name: impl Into<String>, schema: Arc<ArraySchema>, data: Option<ArrayData>) -> Self {
        NewArray {
            name: name.into(),
            schema,
            attributes: Arc::default(),
            data,
        }
    }
}

/// One dataset of [`Atlas::create_datasets`].
#[derive(Clone, Debug, Default)]
pub struct NewDataset {
    /// Dataset name.
    pub name: String,
    /// Dataset attributes, in order.
    pub attributes: IndexMap<String, Attr>,
    /// Arrays, in definition order.
    pub arrays: Vec<NewArray>,
}

impl NewDataset {
    /// A dataset with no attribute and no array yet.
    pub fn new(name: impl Into<String>) -> Self {
        NewDataset {
            name: name.into(),
            ..NewDataset::default()
        }
    }
}

/// A [`NewDataset`] whose cells are encoded already
/// ([`Atlas::prepare_dataset`]), ready for [`Atlas::create_prepared`].
///
/// Encoding is most of the work of creating a dataset with cells, and it
/// needs no lock of the store: an importer prepares on its decoding
/// threads, and the writer only adds what they made, so encoding goes on
/// while the writer commits.
#[derive(Clone, Debug)]
pub struct PreparedDataset {
    /// The dataset, its arrays' `data` taken out (now in `cells`).
    dataset: NewDataset,
    /// Per array of `dataset`: its encoded cells, if it had data.
    cells: Vec<Option<EncodedArray>>,
}

impl PreparedDataset {
    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.dataset.name
    }

    /// The dataset: attributes and arrays, without their cells (every
    /// `data` is `None`; the encoded cells are kept apart).
    pub fn dataset(&self) -> &NewDataset {
        &self.dataset
    }

    /// Bytes of the cells before compression.
    pub fn raw_bytes(&self) -> u64 {
        self.cells
            .iter()
            .flatten()
            .map(EncodedArray::raw_bytes)
            .sum()
    }

    /// Bytes of the encoded (compressed) cells.
    pub fn stored_bytes(&self) -> u64 {
        self.cells
            .iter()
            .flatten()
            .map(EncodedArray::stored_bytes)
            .sum()
    }
}

/// Encodes the cells of each array of `ds` that has data (`None` for the
/// others); errors name the dataset and the array.
fn encode_dataset(ds: &NewDataset, compression: Compression) -> Result<Vec<Option<EncodedArray>>> {
    ds.arrays
        .iter()
        .map(|a| {
            a.data
                .as_ref()
                .map(|data| {
                    with_array_data!(data, v => EncodedArray::encode(
                        &a.name,
                        Arc::clone(&a.schema),
                        compression,
                        v.view(),
                    ))
                    .map_err(|e| Error::array(&ds.name, &a.name, e))
                })
                .transpose()
        })
        .collect()
}

/// Cell bytes of a batch from which its arrays are encoded on several
/// cores. A chosen bound, not a measured crossover: a one-file import batch
/// (tens of KiB) stays on the calling thread, W1's 6 MB batch goes to the
/// pool.
const PARALLEL_BYTES: u64 = 256 << 10;

/// The datasets and arrays of a batch that use one array name (indexes into
/// the batch: dataset, then array within it), with the array's locked file.
struct Group<'a> {
    array: &'a str,
    /// Per dataset defining the array: the dataset's index in the batch,
    /// the array's index in the dataset, and its encoded cells if it has
    /// data.
    items: Vec<(usize, usize, Option<Cow<'a, EncodedArray>>)>,
    file: OwnedRwLockWriteGuard<ArrayFile>,
    /// For each of `items` the file defines, whether a deletion of that
    /// dataset's array was pending before (to undo after a failure).
    defined: Vec<bool>,
}

impl Atlas {
    /// Creates every dataset of `datasets` with its attributes, arrays and
    /// cells: the same result as [`Atlas::create_dataset`], then
    /// [`crate::DatasetView::set_attribute`], `define_array_schema`,
    /// `write_array` and `set_array_attributes` for each, in less time for
    /// many small datasets (W1's 10,000 profiles: 114-116 ms against 178-183
    /// ms, flush included; the cells of different arrays are encoded on
    /// different cores once the batch passes 256 KiB). Nothing is committed until the next
    /// [`Atlas::flush`].
    ///
    /// All or nothing: everything is checked before the store changes (a
    /// name that is taken or given twice is `DatasetExists`; a dataset that
    /// names an array twice, `ArrayExists`; then invalid names, schemas, and
    /// data whose type or shape is not the schema's), and if writing the
    /// cells fails (the pending-memory spill's storage, for example) the
    /// arrays defined so far are removed again. The batch's own errors are
    /// reported first (the first in the order given), then the first name
    /// the store already has.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use atlas_core::{ArraySchema, Atlas, Attr, DType, NewArray, NewDataset, StoreConfig};
    /// # let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Atlas::create_path(dir.path(), StoreConfig::default()).await?;
    /// // One schema shared by every dataset: one copy in memory, checked once.
    /// let schema = Arc::new(
    ///     ArraySchema::new("TEMP", DType::Float32, vec!["N_LEVELS".into()], vec![3], None, None)
    ///         .unwrap(),
    /// );
    /// let batch: Vec<NewDataset> = (0..100)
    ///     .map(|i| {
    ///         let mut ds = NewDataset::new(format!("profile_{i:04}"));
    ///         ds.attributes.insert("cycle".into(), Attr::Int64(i));
    ///         let cells = ndarray::arr1(&[i as f32, 1.0, 2.0]).into_dyn();
    ///         ds.arrays.push(NewArray::new("TEMP", Arc::clone(&schema), Some(cells.into())));
    ///         ds
    ///     })
    ///     .collect();
    /// store.create_datasets(&batch).await?;
    /// store.flush().await?;
    /// let temp = store.open_dataset("profile_0042").await?;
    /// let t = temp.read_array::<f32>("TEMP", vec![], vec![]).await?.unwrap();
    /// assert_eq!(t.as_slice().unwrap(), &[42.0, 1.0, 2.0]);
    /// # Ok::<(), atlas_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn create_datasets(&self, datasets: &[NewDataset]) -> Result<()> {
        let refs: Vec<&NewDataset> = datasets.iter().collect();
        let by_array = check(&refs, true)?;
        if datasets.is_empty() {
            return Ok(());
        }
        // Encoded before any lock is taken, on every core past
        // PARALLEL_BYTES; the first error in the batch's order is returned.
        let compression = self.inner.compression;
        let bytes: u64 = datasets
            .iter()
            .flat_map(|d| &d.arrays)
            .filter_map(|a| a.data.as_ref().map(ArrayData::data_bytes))
            .sum();
        let encoded: Vec<Result<Vec<Option<EncodedArray>>>> = super::writer::blocking(|| {
            if bytes >= PARALLEL_BYTES {
                datasets
                    .par_iter()
                    .map(|d| encode_dataset(d, compression))
                    .collect()
            } else {
                datasets
                    .iter()
                    .map(|d| encode_dataset(d, compression))
                    .collect()
            }
        });
        let cells = encoded
            .into_iter()
            .map(|r| Ok(r?.into_iter().map(|c| c.map(Cow::Owned)).collect()))
            .collect::<Result<Vec<Vec<_>>>>()?;
        self.create_batch(&refs, by_array, cells, bytes).await
    }

    /// Checks `dataset` and encodes its cells with this store's compression,
    /// without taking any lock (so on any thread, while another task
    /// writes or commits): the work of [`Atlas::create_datasets`] that does
    /// not need the store. [`Atlas::create_prepared`] then adds it.
    ///
    /// Errors as `create_datasets` would for this dataset alone (invalid
    /// names or schemas, data of the wrong type or shape); whether the name
    /// is taken is checked by `create_prepared`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use atlas_core::{ArraySchema, Atlas, DType, NewArray, NewDataset, StoreConfig};
    /// # let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Atlas::create_path(dir.path(), StoreConfig::default()).await?;
    /// let schema = Arc::new(
    ///     ArraySchema::new("TEMP", DType::Float32, vec!["N_LEVELS".into()], vec![3], None, None)
    ///         .unwrap(),
    /// );
    /// // Prepared on other threads, as an importer's decoders would.
    /// let workers: Vec<_> = (0..4)
    ///     .map(|i| {
    ///         let (store, schema) = (store.clone(), Arc::clone(&schema));
    ///         std::thread::spawn(move || {
    ///             let mut ds = NewDataset::new(format!("profile_{i}"));
    ///             let cells = ndarray::arr1(&[i as f32, 1.0, 2.0]).into_dyn();
    ///             ds.arrays.push(NewArray::new("TEMP", schema, Some(cells.into())));
    ///             store.prepare_dataset(ds)
    ///         })
    ///     })
    ///     .collect();
    /// let prepared = workers
    ///     .into_iter()
    ///     .map(|w| w.join().unwrap())
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// store.create_prepared(&prepared).await?;
    /// store.flush().await?;
    /// let t = store.open_dataset("profile_3").await?;
    /// let t = t.read_array::<f32>("TEMP", vec![], vec![]).await?.unwrap();
    /// assert_eq!(t.as_slice().unwrap(), &[3.0, 1.0, 2.0]);
    /// # Ok::<(), atlas_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn prepare_dataset(&self, mut dataset: NewDataset) -> Result<PreparedDataset> {
        check(&[&dataset], true)?;
        let cells = encode_dataset(&dataset, self.inner.compression)?;
        for a in &mut dataset.arrays {
            a.data = None;
        }
        Ok(PreparedDataset { dataset, cells })
    }

    /// Creates every dataset of `datasets`, prepared by
    /// [`Atlas::prepare_dataset`]: the same result as
    /// [`Atlas::create_datasets`] of the datasets as they were given to
    /// `prepare_dataset`, all or nothing. Each dataset was checked alone
    /// when prepared; here, that no name is given twice or taken
    /// (`DatasetExists`), and that the cells were prepared with this
    /// handle's compression (`EncodedMismatch`, an invalid-input error,
    /// otherwise). The encoded cells
    /// are copied, so `datasets` can be created again, alone for example,
    /// after a batch fails.
    pub async fn create_prepared(&self, datasets: &[PreparedDataset]) -> Result<()> {
        let refs: Vec<&NewDataset> = datasets.iter().map(|p| &p.dataset).collect();
        let by_array = check(&refs, false)?;
        if datasets.is_empty() {
            return Ok(());
        }
        let bytes = datasets.iter().map(PreparedDataset::raw_bytes).sum();
        let cells = datasets
            .iter()
            .map(|p| {
                p.cells
                    .iter()
                    .map(|c| c.as_ref().map(Cow::Borrowed))
                    .collect()
            })
            .collect();
        self.create_batch(&refs, by_array, cells, bytes).await
    }

    /// The locked part of a batch: checks that no name is taken, defines
    /// every array and stores its encoded cells (`cells`: per dataset, per
    /// array), then adds the records; undoes the definitions on failure.
    /// `bytes` of cells decide whether the arrays go to several cores.
    async fn create_batch<'a>(
        &self,
        datasets: &[&'a NewDataset],
        by_array: BTreeMap<&'a str, Vec<(usize, usize)>>,
        mut cells: Vec<Vec<Option<Cow<'a, EncodedArray>>>>,
        bytes: u64,
    ) -> Result<()> {
        let inner = &self.inner;
        inner.ensure_writer_async().await?;
        // The commit lock first, as a flush and a compaction take it: a
        // batch locks several array files, and a compaction holds several
        // files' read locks (in its own order) outside the structure lock.
        let _c = inner.commit_lock.lock().await;
        let _s = inner.structure.lock().await;
        for ds in datasets {
            if inner.lookup(&ds.name)?.is_some() {
                return Err(Error::DatasetExists {
                    name: ds.name.clone(),
                });
            }
        }
        // Each array file locked once, in name order (as a flush locks them).
        let mut groups = Vec::with_capacity(by_array.len());
        for (array, items) in by_array {
            inner.file_async(array).await?;
            let file = inner.file_or_create(array)?.write_owned().await;
            let items = items
                .into_iter()
                .map(|(d, a)| (d, a, cells[d][a].take()))
                .collect();
            groups.push(Group {
                array,
                items,
                file,
                defined: Vec::new(),
            });
        }
        let written = super::writer::blocking(|| {
            if groups.len() > 1 && bytes >= PARALLEL_BYTES {
                let results: Vec<Result<()>> =
                    groups.par_iter_mut().map(|g| g.write(datasets)).collect();
                results.into_iter().collect::<Result<()>>()
            } else {
                groups.iter_mut().try_for_each(|g| g.write(datasets))
            }
        });
        let inserted = written.and_then(|()| inner.insert_datasets(datasets));
        if inserted.is_err() {
            for g in &mut groups {
                g.undo(datasets);
            }
        }
        inserted
    }
}

/// Checks a batch before anything changes; returns, per array name in name
/// order, the `(dataset, array)` positions that define it. With `each`
/// false, only that no name is given twice: every dataset was checked
/// alone already (by [`Atlas::prepare_dataset`]; a [`PreparedDataset`]
/// cannot change since).
fn check<'a>(
    datasets: &[&'a NewDataset],
    each: bool,
) -> Result<BTreeMap<&'a str, Vec<(usize, usize)>>> {
    let mut names = HashSet::with_capacity(datasets.len());
    // Schemas and attribute sets shared between datasets are checked once.
    let mut schemas_ok: HashSet<*const ArraySchema> = HashSet::new();
    let mut attrs_ok: HashSet<*const IndexMap<String, Attr>> = HashSet::new();
    let mut by_array: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    let mut arrays = HashSet::new();
    for (d, ds) in datasets.iter().enumerate() {
        if each {
            validate_dataset_name(&ds.name)?;
        }
        if !names.insert(ds.name.as_str()) {
            return Err(Error::DatasetExists {
                name: ds.name.clone(),
            });
        }
        if each {
            for k in ds.attributes.keys() {
                validate_attribute_name(k)?;
            }
        }
        arrays.clear();
        for (a, arr) in ds.arrays.iter().enumerate() {
            by_array.entry(arr.name.as_str()).or_default().push((d, a));
            if !each {
                continue;
            }
            validate_array_name(&arr.name)?;
            if !arrays.insert(arr.name.as_str()) {
                return Err(Error::ArrayExists {
                    dataset: ds.name.clone(),
                    array: arr.name.clone(),
                });
            }
            let schema = &arr.schema;
            if schemas_ok.insert(Arc::as_ptr(schema)) {
                if let Err(e) = schema.validate(&arr.name) {
                    return Err(Error::array(&ds.name, &arr.name, e));
                }
            }
            if attrs_ok.insert(Arc::as_ptr(&arr.attributes)) {
                for k in arr.attributes.keys() {
                    validate_attribute_name(k)?;
                }
            }
            if let Some(data) = &arr.data {
                check_data(&ds.name, &arr.name, schema, data)?;
            }
        }
    }
    Ok(by_array)
}

/// Data written whole must have the schema's element type and shape.
fn check_data(dataset: &str, array: &str, schema: &ArraySchema, data: &ArrayData) -> Result<()> {
    let e = if data.dtype() != schema.dtype {
        array_format::Error::DTypeMismatch {
            name: array.to_owned(),
            stored: schema.dtype,
            requested: data.dtype(),
        }
    } else if data.shape().len() != schema.rank() {
        array_format::Error::RankMismatch {
            name: array.to_owned(),
            expected: schema.rank(),
            actual: data.shape().len(),
        }
    } else if data
        .shape()
        .iter()
        .zip(&schema.shape)
        .any(|(&n, &s)| n as u64 != s)
    {
        array_format::Error::ShapeMismatch {
            name: array.to_owned(),
            expected: schema.shape.clone(),
            actual: data.shape().iter().map(|&n| n as u64).collect(),
        }
    } else {
        return Ok(());
    };
    Err(Error::array(dataset, array, e))
}

impl Group<'_> {
    /// Defines the group's array in each of its datasets and stores its
    /// encoded cells.
    fn write(&mut self, datasets: &[&NewDataset]) -> Result<()> {
        self.file.reserve_pending(self.items.len());
        for (d, a, cells) in &mut self.items {
            let ds = datasets[*d];
            let fail = |e| Error::array(&ds.name, self.array, e);
            let deletion_pending = self.file.deletion_pending(&ds.name);
            self.file
                .define_new(&ds.name, Arc::clone(&ds.arrays[*a].schema))
                .map_err(fail)?;
            self.defined.push(deletion_pending);
            if let Some(c) = cells.take() {
                self.file.write_encoded(&ds.name, c).map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Takes back the definitions [`Group::write`] made (and their
    /// cells), reading no storage: what was pending before comes back.
    fn undo(&mut self, datasets: &[&NewDataset]) {
        for ((d, _, _), &deletion_pending) in self.items.iter().zip(&self.defined) {
            self.file
                .undo_define_new(&datasets[*d].name, deletion_pending);
        }
        self.defined.clear();
    }
}

impl Inner {
    /// Adds a checked batch's records (fresh ids, in the order given) under
    /// one lock of the registry. The caller holds the structure lock, under
    /// which it found none of the names taken.
    fn insert_datasets(&self, datasets: &[&NewDataset]) -> Result<()> {
        // The metadata is built before the lock: readers wait only for the
        // ids and the inserts.
        let metas: Vec<Arc<DatasetMeta>> = datasets
            .iter()
            .map(|ds| {
                let arrays: IndexMap<String, ArrayEntry> = ds
                    .arrays
                    .iter()
                    .map(|a| {
                        (
                            a.name.clone(),
                            ArrayEntry {
                                schema: Arc::clone(&a.schema),
                                attributes: Arc::clone(&a.attributes),
                            },
                        )
                    })
                    .collect();
                Arc::new(DatasetMeta {
                    attributes: ds.attributes.clone(),
                    arrays,
                })
            })
            .collect();
        let mut live = self.live.write();
        // Nothing can have taken a name since (creations take the structure
        // lock); the in-memory changes are checked again all the same.
        if let Some(ds) = datasets
            .iter()
            .find(|ds| live.changed_record(&ds.name).is_some_and(|r| r.is_some()))
        {
            return Err(Error::DatasetExists {
                name: ds.name.clone(),
            });
        }
        for (ds, meta) in datasets.iter().zip(metas) {
            let id = live.next_id;
            live.next_id += 1;
            live.n += 1;
            live.count(ds.arrays.iter().map(|a| a.name.as_str()), true);
            live.put(
                &ds.name,
                Some(Record {
                    id,
                    meta,
                    stats: Arc::default(),
                }),
            );
        }
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
