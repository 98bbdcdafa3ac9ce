//! [`Atlas::create_datasets`]: many new datasets, with their attributes,
//! arrays and cells, in one call.
//!
//! Creating a dataset through [`crate::DatasetView`] takes a call per
//! attribute, per array definition and per write, and each call looks the
//! dataset up, takes the array file's lock and changes the registry's
//! record again. A batch checks everything first, encodes its cells before
//! it takes any lock (an array per task on every core past 256 KiB of
//! cells; past 64 MiB, group by group under the locks), takes each array
//! file's lock once, and adds every record to the registry under one lock.
//! [`Atlas::prepare_dataset`] and [`Atlas::create_prepared`] (or
//! [`Atlas::create_prepared_owned`], which takes the datasets) are the two
//! halves apart: an importer encodes on its decoding threads.

use std::borrow::Cow;
use std::sync::Arc;

use array_format::{ArrayFile, ArraySchema, ArrayStats, Compression, EncodedArray};
use indexmap::IndexMap;
use rayon::prelude::*;
use tokio::sync::OwnedRwLockWriteGuard;

use super::{Atlas, Inner};
use crate::attr::Attr;
use crate::data::{with_array_data, ArrayData};
use crate::error::{Error, Result};
use crate::name::{validate_array_name, validate_attribute_name, validate_dataset_name};
use crate::registry::{ArrayEntry, DatasetMeta, Record};
use crate::{FastMap, FastSet};

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
            attributes: crate::registry::no_array_attributes(),
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
    /// The record's metadata ([`new_meta`]) and statistics, from `cells`
    /// ([`new_stats`]).
    record: NewRecord,
}

impl PreparedDataset {
    /// Checks `dataset` as [`Atlas::create_datasets`] checks each dataset
    /// of a batch (names, schemas, attribute names, the cells' element type
    /// and shape) and encodes its cells with `compression`, which must be
    /// the compression of the store that adds it ([`Atlas::compression`];
    /// [`Atlas::create_prepared`] refuses cells encoded otherwise).
    /// [`Atlas::prepare_dataset`] is this with the store's compression; this
    /// form holds no store, for threads that may outlive a task using it.
    ///
    /// Encoding is CPU work: from an async task, call it through
    /// `tokio::task::spawn_blocking` for anything but small datasets. A
    /// dataset with at least 256 KiB of cells encodes its arrays on every
    /// core (rayon's pool).
    pub fn prepare(mut dataset: NewDataset, compression: Compression) -> Result<PreparedDataset> {
        // What `check` checks of one dataset, without the map of its arrays
        // by name that a batch needs (building it was about half of
        // checking an Argo profile).
        validate_dataset_name(&dataset.name)?;
        check_contents(&dataset, &mut Shared::default())?;
        let arrays: Vec<NewArrayOf<'_>> = dataset
            .arrays
            .iter()
            .map(|a| (dataset.name.as_str(), a))
            .collect();
        let cells = encode_arrays(&arrays, data_bytes(&dataset.arrays), compression)?;
        for a in &mut dataset.arrays {
            a.data = None;
        }
        let record = (
            new_meta(&dataset),
            new_stats(&dataset, cells.iter().map(Option::as_ref)),
        );
        Ok(PreparedDataset {
            dataset,
            cells,
            record,
        })
    }

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

/// Encodes one array's cells; errors name the dataset and the array.
fn encode_array(ds: &NewArrayOf<'_>, compression: Compression) -> Result<Option<EncodedArray>> {
    let (name, a) = *ds;
    a.data
        .as_ref()
        .map(|data| {
            with_array_data!(data, v => EncodedArray::encode(
                &a.name,
                Arc::clone(&a.schema),
                compression,
                v.view(),
            ))
            .map_err(|e| Error::array(name, &a.name, e))
        })
        .transpose()
}

/// An array of a batch with its dataset's name.
type NewArrayOf<'a> = (&'a str, &'a NewArray);

/// Encodes the cells of every array of `arrays` that has data (`None` for
/// the others), in order: on every core once they hold `bytes` ≥
/// [`PARALLEL_BYTES`] of cells (an array per task), else on this thread.
/// The first error in `arrays`' order is returned.
fn encode_arrays(
    arrays: &[NewArrayOf<'_>],
    bytes: u64,
    compression: Compression,
) -> Result<Vec<Option<EncodedArray>>> {
    if bytes < PARALLEL_BYTES {
        return arrays
            .iter()
            .map(|a| encode_array(a, compression))
            .collect();
    }
    let encoded: Vec<Result<Option<EncodedArray>>> = super::writer::blocking(|| {
        arrays
            .par_iter()
            .map(|a| encode_array(a, compression))
            .collect()
    });
    encoded.into_iter().collect()
}

/// A record's statistics per array.
type Stats = Arc<FastMap<String, ArrayStats>>;

/// A new dataset's record but its id: its metadata ([`new_meta`]) and
/// statistics ([`new_stats`]).
type NewRecord = (Arc<DatasetMeta>, Stats);

/// A batch of at least this many datasets checks them and builds their
/// records on every core.
const PARALLEL_DATASETS: usize = 1024;

/// A new dataset's registry metadata: its attributes, and its arrays'
/// schemas and attributes (shared, not copied).
fn new_meta(ds: &NewDataset) -> Arc<DatasetMeta> {
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
}

/// The statistics a new dataset's record starts with, per array of `ds`:
/// from its encoded cells (`cells`, per array), or every cell null for an
/// array without data. An array with data not encoded yet (a batch too
/// large to encode ahead) has none: the flush computes those from its file,
/// as for any write.
fn new_stats<'c>(ds: &NewDataset, cells: impl Iterator<Item = Option<&'c EncodedArray>>) -> Stats {
    let stats = ds
        .arrays
        .iter()
        .zip(cells)
        .filter_map(|(a, c)| {
            let s = match c {
                Some(e) => e.stats(),
                None if a.data.is_none() => {
                    let n = a.schema.n_cells();
                    ArrayStats {
                        min: None,
                        max: None,
                        null_count: n,
                        row_count: n,
                    }
                }
                None => return None,
            };
            Some((a.name.clone(), s))
        })
        .collect();
    Arc::new(stats)
}

/// Bytes of cells of `arrays`.
fn data_bytes<'a>(arrays: impl IntoIterator<Item = &'a NewArray>) -> u64 {
    arrays
        .into_iter()
        .filter_map(|a| a.data.as_ref().map(ArrayData::data_bytes))
        .sum()
}

/// Cells of a batch [`Atlas::create_datasets`] encodes before it takes any
/// lock. A larger batch is encoded group by group under the array files'
/// locks instead, as the pending layer takes the chunks: encoding all of it
/// ahead would hold every chunk of the batch in memory at once, which the
/// pending budget (and its spill to scratch files) exists to bound.
const ENCODE_AHEAD_BYTES: u64 = 64 << 20;

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
    /// many small datasets (W1's 10,000 profiles: 51-62 ms against 124-143
    /// ms, flush included, docs/BENCHMARKS.md). The cells are encoded before
    /// any lock is taken, an array per task on every core once the batch
    /// holds 256 KiB of cells; a batch of more than 64 MiB of cells is
    /// encoded group by group under the array files' locks instead, so that
    /// the pending budget still bounds the encoded chunks held in memory.
    /// Nothing is committed until the next [`Atlas::flush`].
    ///
    /// All or nothing: everything is checked before the store changes (a
    /// name that is taken or given twice is `DatasetExists`; a dataset that
    /// names an array twice, `ArrayExists`; then invalid names, schemas, and
    /// data whose type or shape is not the schema's), and if writing the
    /// cells fails (the pending-memory spill's storage, for example) the
    /// arrays defined so far are removed again. A read-only handle is
    /// refused first; then the batch's own errors are reported (the first in
    /// the order given; a chunk that cannot be represented among them), then
    /// the first name the store already has.
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
        // A read-only handle is refused before any encoding.
        self.inner.ensure_writer_async().await?;
        // Encoded before any lock is taken, an array per task on every core
        // past PARALLEL_BYTES, unless the batch is larger than
        // ENCODE_AHEAD_BYTES (then each group encodes under its file's
        // lock). The first error in the batch's order is returned.
        let bytes = data_bytes(datasets.iter().flat_map(|d| &d.arrays));
        let cells: Vec<Vec<Option<Cow<'_, EncodedArray>>>> = if bytes <= ENCODE_AHEAD_BYTES {
            let arrays: Vec<NewArrayOf<'_>> = datasets
                .iter()
                .flat_map(|d| d.arrays.iter().map(|a| (d.name.as_str(), a)))
                .collect();
            let mut encoded = encode_arrays(&arrays, bytes, self.inner.compression)?.into_iter();
            datasets
                .iter()
                .map(|d| {
                    (&mut encoded)
                        .take(d.arrays.len())
                        .map(|c| c.map(Cow::Owned))
                        .collect()
                })
                .collect()
        } else {
            datasets
                .iter()
                .map(|d| d.arrays.iter().map(|_| None).collect())
                .collect()
        };
        // The records, before any lock (on every core for a large batch).
        let record = |(d, c): (&NewDataset, &Vec<Option<Cow<'_, EncodedArray>>>)| {
            (new_meta(d), new_stats(d, c.iter().map(Option::as_deref)))
        };
        let records = if datasets.len() >= PARALLEL_DATASETS {
            super::writer::blocking(|| datasets.par_iter().zip(&cells).map(record).collect())
        } else {
            datasets.iter().zip(&cells).map(record).collect()
        };
        self.create_batch(&refs, by_array, Cells::Ready(cells, records), bytes)
            .await
    }

    /// Checks `dataset` and encodes its cells with this store's compression,
    /// without taking any lock (so on any thread, while another task
    /// writes or commits): the work of [`Atlas::create_datasets`] that does
    /// not need the store ([`PreparedDataset::prepare`] with
    /// [`Atlas::compression`]). [`Atlas::create_prepared`] then adds it.
    /// It is CPU work: see [`PreparedDataset::prepare`].
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
    pub fn prepare_dataset(&self, dataset: NewDataset) -> Result<PreparedDataset> {
        PreparedDataset::prepare(dataset, self.inner.compression)
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
        self.inner.ensure_writer_async().await?;
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
        let records = datasets.iter().map(|p| p.record.clone()).collect();
        self.create_batch(&refs, by_array, Cells::Ready(cells, records), bytes)
            .await
    }

    /// [`Atlas::create_prepared`], taking the datasets: their encoded cells
    /// and records move into the store instead of being copied (an
    /// importer's writer, the part of an import that runs on one thread,
    /// then copies nothing).
    ///
    /// Every check that can refuse the batch comes before anything is
    /// taken: a name given twice or taken (`DatasetExists`), cells encoded
    /// with another compression than this store's (`EncodedMismatch`), a
    /// read-only handle. The datasets then come back in
    /// [`PreparedRefused::datasets`], to be created alone or elsewhere.
    /// Past those checks only storage can fail (opening or spilling an
    /// array file); the store is then as it was, and the datasets are gone
    /// (`datasets` is empty).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use atlas_core::{ArraySchema, Atlas, DType, NewArray, NewDataset, StoreConfig};
    /// # let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    /// # rt.block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Atlas::create_path(dir.path(), StoreConfig::default()).await?;
    /// let schema = Arc::new(
    ///     ArraySchema::new("TEMP", DType::Float32, vec!["N_LEVELS".into()], vec![2], None, None)
    ///         .unwrap(),
    /// );
    /// let prepare = |name: &str| {
    ///     let mut ds = NewDataset::new(name);
    ///     let cells = ndarray::arr1(&[1.5f32, 2.5]).into_dyn();
    ///     ds.arrays.push(NewArray::new("TEMP", Arc::clone(&schema), Some(cells.into())));
    ///     store.prepare_dataset(ds)
    /// };
    /// store.create_prepared_owned(vec![prepare("a")?]).await?;
    /// // "a" is taken: the batch is refused whole, and comes back.
    /// let refused = store
    ///     .create_prepared_owned(vec![prepare("b")?, prepare("a")?])
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(refused.error, atlas_core::Error::DatasetExists { .. }));
    /// let mut back = refused.datasets;
    /// assert_eq!(back.len(), 2);
    /// back.truncate(1);
    /// store.create_prepared_owned(back).await?;
    /// assert!(store.dataset_exists("b")?);
    /// # Ok::<(), atlas_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn create_prepared_owned(
        &self,
        datasets: Vec<PreparedDataset>,
    ) -> std::result::Result<(), PreparedRefused> {
        let n = datasets.len();
        let bytes = datasets.iter().map(PreparedDataset::raw_bytes).sum();
        let mut news = Vec::with_capacity(n);
        let mut cells = Vec::with_capacity(n);
        let mut records = Vec::with_capacity(n);
        for p in datasets {
            news.push(p.dataset);
            cells.push(p.cells);
            records.push(p.record);
        }
        let result = self
            .create_taking(&news, &mut cells, &mut records, bytes)
            .await;
        result.map_err(|error| PreparedRefused {
            error,
            // The cells are taken only after every check passed.
            datasets: if cells.len() == n {
                news.into_iter()
                    .zip(cells)
                    .zip(records)
                    .map(|((dataset, cells), record)| PreparedDataset {
                        dataset,
                        cells,
                        record,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    /// The body of [`Atlas::create_prepared_owned`] (`bytes` of cells):
    /// `cells` and `records` are left as they are unless every check passes.
    async fn create_taking(
        &self,
        datasets: &[NewDataset],
        cells: &mut Vec<Vec<Option<EncodedArray>>>,
        records: &mut Vec<NewRecord>,
        bytes: u64,
    ) -> Result<()> {
        let refs: Vec<&NewDataset> = datasets.iter().collect();
        let by_array = check(&refs, false)?;
        if datasets.is_empty() {
            return Ok(());
        }
        // Refused here rather than when the cells are stored (which would
        // be after they were taken).
        let compression = self.inner.compression;
        for (ds, arrays) in datasets.iter().zip(cells.iter()) {
            for (a, c) in ds.arrays.iter().zip(arrays) {
                if let Some(c) = c {
                    c.check_compression(&a.name, compression)
                        .map_err(|e| Error::array(&ds.name, &a.name, e))?;
                }
            }
        }
        self.inner.ensure_writer_async().await?;
        self.create_batch(&refs, by_array, Cells::Taken(cells, records), bytes)
            .await
    }

    /// The locked part of a batch (the caller made this handle the writer):
    /// checks that no name is taken, defines
    /// every array and stores its encoded cells (`cells`: per dataset, per
    /// array), then adds the records; undoes the definitions on failure.
    /// `bytes` of cells decide whether the arrays go to several cores.
    async fn create_batch<'a>(
        &self,
        datasets: &[&'a NewDataset],
        by_array: ByArray<'a>,
        cells: Cells<'a, '_>,
        bytes: u64,
    ) -> Result<()> {
        let inner = &self.inner;
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
        // Nothing can refuse the batch past here but storage.
        let (mut cells, records) = match cells {
            Cells::Ready(cells, records) => (cells, records),
            Cells::Taken(cells, records) => (
                std::mem::take(cells)
                    .into_iter()
                    .map(|d| d.into_iter().map(|c| c.map(Cow::Owned)).collect())
                    .collect(),
                std::mem::take(records),
            ),
        };
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
        let inserted = written.and_then(|()| inner.insert_datasets(datasets, records));
        if inserted.is_err() {
            for g in &mut groups {
                g.undo(datasets);
            }
        }
        inserted
    }
}

/// A batch's encoded cells (per dataset, per array) and records, for
/// [`Atlas::create_batch`].
enum Cells<'a, 'b> {
    /// Given: encoded for the batch, or borrowed from prepared datasets.
    Ready(Vec<Vec<Option<Cow<'a, EncodedArray>>>>, Vec<NewRecord>),
    /// Prepared datasets' own, taken (leaving the vectors empty) only once
    /// no name of the batch is taken, so that a refused batch keeps them.
    Taken(
        &'b mut Vec<Vec<Option<EncodedArray>>>,
        &'b mut Vec<NewRecord>,
    ),
}

/// A batch [`Atlas::create_prepared_owned`] did not create: why, and the
/// datasets when it was refused before any was taken.
#[derive(Debug)]
pub struct PreparedRefused {
    /// Why the batch was not created.
    pub error: Error,
    /// The datasets as they were given, when a check refused the batch (a
    /// name given twice or taken, cells of another compression, a read-only
    /// handle); empty when storage failed after they were taken.
    pub datasets: Vec<PreparedDataset>,
}

impl From<PreparedRefused> for Error {
    fn from(r: PreparedRefused) -> Error {
        r.error
    }
}

impl std::fmt::Display for PreparedRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for PreparedRefused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Per array name, in name order, the `(dataset, array)` positions of a
/// batch that define it.
type ByArray<'a> = Vec<(&'a str, Vec<(usize, usize)>)>;

/// Checks a batch before anything changes; returns its [`ByArray`]. With `each`
/// false, only that no name is given twice: every dataset was checked
/// alone already (by [`Atlas::prepare_dataset`]; a [`PreparedDataset`]
/// cannot change since).
fn check<'a>(datasets: &[&'a NewDataset], each: bool) -> Result<ByArray<'a>> {
    let mut names = FastSet::with_capacity_and_hasher(datasets.len(), crate::FastState::default());
    let mut shared = Shared::default();
    // Hashed, then sorted once: cheaper than searching a sorted map for
    // every array of every dataset.
    let mut by_array: crate::FastIndexMap<&str, Vec<(usize, usize)>> =
        crate::FastIndexMap::default();
    // Each dataset's contents, checked on every core for a large batch;
    // reported below in the batch's order, as a check in order would.
    let contents: Option<Vec<Result<()>>> =
        (each && datasets.len() >= PARALLEL_DATASETS).then(|| {
            super::writer::blocking(|| {
                datasets
                    .par_iter()
                    .map_init(Shared::default, |shared, ds| check_contents(ds, shared))
                    .collect()
            })
        });
    let mut contents = contents.map(Vec::into_iter);
    for (d, ds) in datasets.iter().enumerate() {
        if each {
            validate_dataset_name(&ds.name)?;
        }
        if !names.insert(ds.name.as_str()) {
            return Err(Error::DatasetExists {
                name: ds.name.clone(),
            });
        }
        match &mut contents {
            Some(checked) => checked.next().expect("one result per dataset")?,
            None if each => check_contents(ds, &mut shared)?,
            None => {}
        }
        for (a, arr) in ds.arrays.iter().enumerate() {
            by_array.entry(arr.name.as_str()).or_default().push((d, a));
        }
    }
    let mut by_array: ByArray<'a> = by_array.into_iter().collect();
    by_array.sort_unstable_by(|x, y| x.0.cmp(y.0));
    Ok(by_array)
}

/// Schemas and attribute sets a batch checked already: one shared between
/// datasets (by `Arc`) is checked once.
#[derive(Default)]
struct Shared {
    schemas: FastSet<*const ArraySchema>,
    attrs: FastSet<*const IndexMap<String, Attr>>,
}

/// Checks a dataset's attribute names and arrays: names valid and not
/// given twice, schemas and attribute sets valid, cells of the schema's
/// type and shape.
fn check_contents(ds: &NewDataset, shared: &mut Shared) -> Result<()> {
    for k in ds.attributes.keys() {
        validate_attribute_name(k)?;
    }
    let mut arrays =
        FastSet::with_capacity_and_hasher(ds.arrays.len(), crate::FastState::default());
    for arr in &ds.arrays {
        validate_array_name(&arr.name)?;
        if !arrays.insert(arr.name.as_str()) {
            return Err(Error::ArrayExists {
                dataset: ds.name.clone(),
                array: arr.name.clone(),
            });
        }
        let schema = &arr.schema;
        if shared.schemas.insert(Arc::as_ptr(schema)) {
            if let Err(e) = schema.validate(&arr.name) {
                return Err(Error::array(&ds.name, &arr.name, e));
            }
        }
        if shared.attrs.insert(Arc::as_ptr(&arr.attributes)) {
            for k in arr.attributes.keys() {
                validate_attribute_name(k)?;
            }
        }
        if let Some(data) = &arr.data {
            check_data(&ds.name, &arr.name, schema, data)?;
        }
    }
    Ok(())
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
    /// encoded cells (or encodes and writes them, for a batch too large to
    /// encode ahead).
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
            } else if let Some(data) = &ds.arrays[*a].data {
                // A batch too large to encode ahead.
                with_array_data!(data, v => self.file.write_array(&ds.name, &[], v.view()))
                    .map_err(fail)?;
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
    /// Adds a checked batch's records (fresh ids, in the order given): per
    /// dataset, its metadata ([`new_meta`]) and statistics ([`new_stats`]),
    /// built before any lock. Under one lock of the registry; the caller
    /// holds the structure lock, under which it found none of the names
    /// taken.
    fn insert_datasets(&self, datasets: &[&NewDataset], records: Vec<NewRecord>) -> Result<()> {
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
        for (ds, (meta, stats)) in datasets.iter().zip(records) {
            let id = live.next_id;
            live.next_id += 1;
            live.n += 1;
            live.count(ds.arrays.iter().map(|a| a.name.as_str()), true);
            live.put(&ds.name, Some(Record { id, meta, stats }));
        }
        self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
