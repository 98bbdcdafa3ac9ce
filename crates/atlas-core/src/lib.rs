//! # atlas-core
//!
//! The registry and store layer of ATLAS: [`Atlas`] keeps thousands to millions
//! of named datasets in one directory, each a set of named N-d arrays with
//! attributes, stored *variable-first*: every dataset's `temperature` lives in
//! one array file (`temperature/`), keyed by dataset name.
//!
//! `atlas.json` is the single commit point; [`Atlas::flush`] is the single
//! durability boundary. See `ARCHITECTURE.md` for the protocol and invariants.
//! Most users want the facade crate `atlas`, which re-exports this API.

mod attr;
mod config;
mod data;
mod error;
// Entry points for the fuzzers and the hostile-input tests, not an API.
#[doc(hidden)]
pub mod fuzzing;
mod location;
mod name;
pub mod query;
mod registry;
mod store;
pub mod verify;

/// The hasher of the in-memory maps keyed by dataset and array names:
/// foldhash, seeded per process. Creating 10,000 small datasets hashed
/// about 55 names per dataset, and `SipHash` was a tenth of its instructions.
pub(crate) type FastState = foldhash::fast::RandomState;
/// A `HashMap` with [`FastState`].
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;
/// A `HashSet` with [`FastState`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, FastState>;
/// An `IndexMap` with [`FastState`].
pub(crate) type FastIndexMap<K, V> = indexmap::IndexMap<K, V, FastState>;

pub use array_format::{
    ArrayElement, ArraySchema, ArrayStats, Codec, Compression, DType, DeltaCache, DeltaCacheConfig,
    FillValue, LayerId, LocalStorage, MemoryStorage, MergedArrayMeta, StatValue, Storage,
    TimestampNs, Version,
};
#[cfg(feature = "object-store")]
pub use array_format::{ObjectStorage, ObjectStoreStats};
pub use attr::Attr;
pub use config::{MetaFormat, OpenOptions, StoreConfig};
pub use data::ArrayData;
pub use error::{Error, ErrorKind, Result};
pub use location::{local_path, storage_for};
pub use name::{validate_array_name, validate_attribute_name, validate_dataset_name, MAX_NAME_LEN};
pub use registry::{ArrayEntry, DatasetMeta, Policy, REGISTRY_VERSION};
pub use store::{format_time, At, Diff, GcReport, LogEntry, Operation, TagInfo, HISTORY_DIR};
pub use store::{Atlas, LOCK_FILE, REGISTRY_FILE};
pub use store::{DatasetView, NewArray, NewDataset, PreparedDataset, PreparedRefused};
