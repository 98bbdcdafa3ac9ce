//! The crate's error type.

use std::path::PathBuf;

pub use array_format::ErrorKind;

/// Every error returned by `atlas-core`, grouped by what the caller can do.
///
/// - *Not found / already exists*: check names (`StoreNotFound`, `DatasetNotFound`,
///   `ArrayNotFound`, `StoreExists`, `DatasetExists`, `ArrayExists`).
/// - *Invalid input*: fix the call (`InvalidName`, `Array` with a caller error
///   inside, `ShapesDiffer`).
/// - *Concurrency*: another writer or a newer commit (`Locked`, `StaleHandle`).
/// - *History*: `GenerationExpired`, `GenerationNotFound`, `TagNotFound`
///   (not found), `TagExists`, `TimeAfterLatest`, `ReadOnly` (a handle on a
///   past generation refuses writes).
/// - *Durability in doubt*: reopen the store (`Poisoned`).
/// - *Damaged files*: `CorruptRegistry`, `UnsupportedRegistry`, or `Array` /
///   `Storage` holding an `array_format::Error::Corrupt`.
/// - *Environment*: `Storage` holding an `array_format::Error::Io`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `open_path` found no store.
    #[error("no atlas store at {path} (missing atlas.json)")]
    StoreNotFound {
        /// The directory.
        path: PathBuf,
    },
    /// `create_path` found a store already there.
    #[error("an atlas store already exists at {path}")]
    StoreExists {
        /// The directory.
        path: PathBuf,
    },
    /// The dataset does not exist.
    #[error("dataset {name:?} not found")]
    DatasetNotFound {
        /// Dataset name.
        name: String,
    },
    /// `create_dataset` with a name in use.
    #[error("dataset {name:?} already exists")]
    DatasetExists {
        /// Dataset name.
        name: String,
    },
    /// The dataset has no such array.
    #[error("dataset {dataset:?} has no array {array:?}")]
    ArrayNotFound {
        /// Dataset name.
        dataset: String,
        /// Array name.
        array: String,
    },
    /// `define_array` with a name the dataset already has.
    #[error("dataset {dataset:?} already has an array {array:?}")]
    ArrayExists {
        /// Dataset name.
        dataset: String,
        /// Array name.
        array: String,
    },
    /// A dataset, array or attribute name that cannot be used.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// `"dataset"`, `"array"` or `"attribute"`.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An array operation failed: a caller error (dtype, rank, bounds, shape,
    /// schema) or damaged data; `error` says which.
    #[error("{dataset}/{array}: {error}")]
    Array {
        /// Dataset name.
        dataset: String,
        /// Array name.
        array: String,
        /// What went wrong.
        error: Box<array_format::Error>,
    },
    /// A stacked cross-dataset read over arrays of different shapes.
    #[error(
        "cannot stack {array:?}: dataset {dataset:?} gives shape {actual:?}, others {expected:?}"
    )]
    ShapesDiffer {
        /// Array name.
        array: String,
        /// The first dataset whose shape differs.
        dataset: String,
        /// Shape of the earlier datasets.
        expected: Vec<usize>,
        /// Shape of this one.
        actual: Vec<usize>,
    },
    /// Another handle holds the store's writer lock.
    #[error("store {path} is locked by another writer")]
    Locked {
        /// The store.
        path: PathBuf,
    },
    /// This handle's snapshot is older than the store's last commit, so it may
    /// not write; reopen the store.
    #[error("store {path} was changed by another writer since this handle opened it; reopen it to write")]
    StaleHandle {
        /// The store.
        path: PathBuf,
    },
    /// Another writer committed first (object stores: the conditional write
    /// of the manifest lost the race). Nothing of this flush was committed;
    /// the handle keeps its pending changes and refuses further commits.
    #[error("another writer committed to store {path} first; nothing of this flush was committed (the changes are still pending in this handle): reopen the store and apply them again")]
    CommitConflict {
        /// The store.
        path: PathBuf,
    },
    /// A commit failed in a way that leaves its durability unknown; this handle
    /// refuses further writes. Reopen the store to see what was committed.
    #[error("store {path} refuses writes after a failed commit; reopen it")]
    Poisoned {
        /// The store.
        path: PathBuf,
    },
    /// `atlas.json` cannot be decoded.
    #[error("corrupt registry {path}: {reason}")]
    CorruptRegistry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `atlas.json` written by an unknown format version.
    #[error("registry {path} has version {version}; this build reads version {supported}")]
    UnsupportedRegistry {
        /// The registry file.
        path: PathBuf,
        /// Version found.
        version: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A storage or layer-file failure outside one dataset's array.
    #[error(transparent)]
    Storage(Box<array_format::Error>),
    /// A store location (URL) this build cannot open.
    #[error("cannot use {location:?}: {reason}")]
    UnsupportedLocation {
        /// The location as given.
        location: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// The store was created with a codec this build lacks.
    #[error("codec {codec} is not available in this build (enable the `{feature}` feature)")]
    CodecUnavailable {
        /// The codec.
        codec: String,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// The generation asked for is older than what the store keeps: the
    /// retention policy (or `gc`) expired it, or it was committed before the
    /// store had history.
    #[error(
        "generation {generation} of store {path} has expired (oldest retained: {oldest_retained})"
    )]
    GenerationExpired {
        /// The store.
        path: PathBuf,
        /// The generation asked for.
        generation: u64,
        /// The oldest generation that can still be opened.
        oldest_retained: u64,
    },
    /// The generation asked for was never committed (it is newer than the
    /// store's latest, or 0).
    #[error("store {path} has no generation {generation} (latest: {latest})")]
    GenerationNotFound {
        /// The store.
        path: PathBuf,
        /// The generation asked for.
        generation: u64,
        /// The store's latest generation.
        latest: u64,
    },
    /// No live tag has this name.
    #[error("store {path} has no tag {name:?}")]
    TagNotFound {
        /// The store.
        path: PathBuf,
        /// The tag name.
        name: String,
    },
    /// A tag name that is in use, or was used by a tag since deleted (tag
    /// names are never reused).
    #[error("tag {name:?} {}", if *.deleted { "was used by a deleted tag and cannot be reused" } else { "already exists" })]
    TagExists {
        /// The tag name.
        name: String,
        /// True when the name belonged to a deleted tag.
        deleted: bool,
    },
    /// A time later than the store's latest commit: a commit in flight could
    /// still land at or before it, so the answer would not be stable.
    #[error("time {time_ms} ms is after the latest commit of store {path} ({latest_ms} ms)")]
    TimeAfterLatest {
        /// The store.
        path: PathBuf,
        /// The time asked for, ms since the Unix epoch.
        time_ms: i64,
        /// The latest commit's time, ms since the Unix epoch.
        latest_ms: u64,
    },
    /// A write on a handle opened on a past generation (`Atlas::open_at`),
    /// which is read-only.
    #[error("store {path} is open read-only at generation {generation}")]
    ReadOnly {
        /// The store.
        path: PathBuf,
        /// The generation the handle reads.
        generation: u64,
    },
    /// A query that cannot run (see [`crate::query::Error`]).
    #[error(transparent)]
    Query(#[from] crate::query::Error),
}

impl Error {
    /// What the caller can do about this error; stable across releases (see
    /// [`ErrorKind`] for the table). Detailed variants may be added; kinds are
    /// the contract.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::StoreNotFound { .. }
            | Error::DatasetNotFound { .. }
            | Error::ArrayNotFound { .. }
            | Error::GenerationExpired { .. }
            | Error::GenerationNotFound { .. }
            | Error::TagNotFound { .. } => ErrorKind::NotFound,
            Error::StoreExists { .. }
            | Error::DatasetExists { .. }
            | Error::ArrayExists { .. }
            | Error::TagExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidName { .. }
            | Error::ShapesDiffer { .. }
            | Error::TimeAfterLatest { .. } => ErrorKind::InvalidInput,
            Error::Locked { .. }
            | Error::StaleHandle { .. }
            | Error::Poisoned { .. }
            | Error::CommitConflict { .. } => ErrorKind::Conflict,
            Error::CorruptRegistry { .. } => ErrorKind::Corrupt,
            Error::UnsupportedRegistry { .. }
            | Error::ReadOnly { .. }
            | Error::CodecUnavailable { .. }
            | Error::UnsupportedLocation { .. } => ErrorKind::Unsupported,
            Error::Array { error, .. } | Error::Storage(error) => error.kind(),
            Error::Query(e) => e.kind(),
        }
    }

    pub(crate) fn array(dataset: &str, array: &str, error: array_format::Error) -> Self {
        Error::Array {
            dataset: dataset.to_owned(),
            array: array.to_owned(),
            error: Box::new(error),
        }
    }
}

impl From<array_format::Error> for Error {
    fn from(e: array_format::Error) -> Self {
        Error::Storage(Box::new(e))
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
