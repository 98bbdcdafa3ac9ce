//! ATLAS (Aggregated Tensor Large Array Store) is a directory-based store for
//! thousands to millions of named datasets.
//!
//! Each dataset is a virtual collection of named N-dimensional arrays with
//! per-dataset and per-array attributes, backed by the `array-format` crate.
//! Datasets sharing an array name are co-located in the same physical array
//! file, keyed by dataset name, so scanning one variable across every dataset
//! opens one file, while any single dataset still reads back on its own.
//!
//! # Layout
//!
//! ```text
//! my_store/
//! ├── atlas.json      manifest: the live layer lists, the registry runs, the dataset-id counter (the commit point)
//! ├── atlas.lock      writer lock
//! ├── atlas.meta/     registry runs (dataset records, ids, catalog of statistics)
//! ├── atlas.a0/       the `temperature` array file (directories are ids the manifest assigns)
//! │   ├── b-<uid>.af  base layer: every dataset's `temperature`, keyed by dataset name
//! │   └── d-<uid>.af  delta layers written by later flushes, each under a fresh name
//! └── atlas.a1/       the `latitude` array file
//!     └── d-<uid>.af
//! ```
//!
//! # Quick start
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use atlas::{Atlas, Attr, StoreConfig};
//! use ndarray::Array2;
//! let tmp = tempfile::tempdir().unwrap();
//! // Create — codec persists in atlas.json so `open_path` doesn't need it.
//! let mut s = Atlas::create_path(tmp.path(), StoreConfig::default()).await.unwrap();
//! {
//! let mut ds = s.create_dataset("jan_2024").await.unwrap();
//! ds.define_array::<f32>(
//! "temperature",
//! vec!["lat".into(), "lon".into()],
//! vec![4, 8],
//! None, // chunk_shape — defaults to full shape (one chunk)
//! None, // fill_value
//! ).await.unwrap();
//! let data = Array2::<f32>::from_elem([4, 8], 20.0).into_dyn();
//! ds.write_array("temperature", vec![0, 0], data.view()).await.unwrap();
//! ds.set_attribute("month", Attr::Int64(1));
//! }
//! s.flush().await.unwrap(); // single durability boundary
//! // Reopen — no config needed.
//! let s2 = Atlas::open_path(tmp.path()).await.unwrap();
//! let ds2 = s2.open_dataset("jan_2024").await.unwrap();
//! let temp = ds2.read_array::<f32>("temperature", vec![], vec![]).await.unwrap().unwrap();
//! assert_eq!(temp.shape(), &[4, 8]);
//! assert_eq!(temp[[0, 0]], 20.0);
//! # }
//! ```
//!
//! # Reading one variable across datasets
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> atlas::Result<()> {
//! use atlas::{Atlas, StoreConfig};
//! use ndarray::Array1;
//! let tmp = tempfile::tempdir().unwrap();
//! let s = Atlas::create_path(tmp.path(), StoreConfig::default()).await?;
//! for i in 0..3 {
//!     let ds = s.create_dataset(&format!("profile_{i}")).await?;
//!     ds.define_array::<f32>("TEMP", vec!["level".into()], vec![5], None, None).await?;
//!     let t = Array1::from_elem(5, 10.0 + i as f32).into_dyn();
//!     ds.write_array("TEMP", vec![0], t.view()).await?;
//! }
//! s.flush().await?;
//! let names = s.list_datasets()?;
//! let all = s.read_array_across_stacked::<f32>("TEMP", &names, vec![], vec![]).await?;
//! assert_eq!(all.shape(), &[3, 5]);
//! assert_eq!(all[[2, 4]], 12.0);
//! # Ok(()) }
//! ```
//!
//! The stacked read decodes each dataset's array straight into its row of
//! the result, on every core; code that is not async calls
//! [`Atlas::read_array_across_stacked_blocking`], which reads a part on the
//! calling thread. [`Atlas::read_array_across`] returns one array per
//! dataset instead (`None` where one lacks the array; ragged shapes allowed).
//!
//! # Thread safety
//!
//! [`Atlas`] and [`DatasetView`] are `Send + Sync`. Each physical array file is
//! guarded by a `tokio::sync::RwLock`: concurrent reads (`read_array`,
//! `array_stats`) proceed in parallel, while writes (`write_array`,
//! `define_array`, `flush`, `compact`, …) take it exclusively. The cache map
//! uses `parking_lot` locks that are never held across an `.await`.
//!
//! # Durability
//!
//! `atlas.json` is loaded once when the store is opened or created; from then on
//! every mutation only touches memory (large pending data spills to scratch
//! files). Nothing persists until [`Atlas::flush`], which commits atomically: a
//! crash at any instant leaves the previous or the new state. Dropping an
//! `Atlas` without flushing abandons every pending write.
//!
//! Across processes there is one writer at a time (a lock taken at the first
//! mutation) and any number of readers, each keeping the snapshot it opened.

pub use atlas_core::{format_time, At, Diff, GcReport, LogEntry, Operation, TagInfo, HISTORY_DIR};
pub use atlas_core::{
    local_path, verify, ArrayData, ArrayElement, ArrayEntry, ArraySchema, ArrayStats, Atlas, Attr,
    Codec, Compression, DType, DatasetMeta, DatasetView, DeltaCache, DeltaCacheConfig, Error,
    ErrorKind, FillValue, LayerId, MergedArrayMeta, MetaFormat, NewArray, NewDataset, OpenOptions,
    Policy, PreparedDataset, PreparedRefused, Result, StatValue, StoreConfig, TimestampNs,
};
pub use atlas_core::{storage_for, Storage, Version};
#[cfg(feature = "object-store")]
pub use atlas_core::{ObjectStorage, ObjectStoreStats};

/// The `ndarray` release ATLAS takes and returns arrays of.
///
/// Array reads return `ndarray::ArrayD<T>` and writes take `ndarray::ArrayViewD<T>`
/// of exactly this release. Two releases of `ndarray` have different array types,
/// so a program that depends on another release gets type errors; name the
/// types through `atlas::ndarray` (or depend on the same release, 0.17) and they
/// always match:
///
/// ```
/// use atlas::ndarray::Array2;
/// let a = Array2::<f32>::zeros([2, 3]).into_dyn();
/// assert_eq!(a.shape(), &[2, 3]);
/// ```
pub use ndarray;

/// Queries over stored statistics and attributes: [`query::Query`], run by
/// [`Atlas::query`].
pub use atlas_core::query;

/// The layer-file crate, for direct use of `.af` files without a store.
pub use array_format;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The examples of `docs/object-storage.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/object-storage.md")]
pub struct ObjectStorageDoctests;

/// The examples of `docs/time-travel.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/time-travel.md")]
pub struct TimeTravelDoctests;

/// The examples of `docs/query.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/query.md")]
pub struct QueryDocDoctests;
