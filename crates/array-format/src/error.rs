//! The crate's error type.

use std::path::PathBuf;

use crate::DType;

/// Every error returned by `array-format`.
///
/// Variants are grouped by what the caller can do about them: fix the call
/// (`Array*`, `Invalid*`, `*Mismatch`, `OutOfBounds`), suspect the file
/// (`Corrupt`, `UnsupportedVersion`, `CodecUnavailable`), or look at the
/// environment (`Io`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The array is not defined in the file.
    #[error("array {name:?} not found")]
    ArrayNotFound {
        /// Array name.
        name: String,
    },
    /// `define_array` on a name that is already defined.
    #[error("array {name:?} is already defined")]
    ArrayExists {
        /// Array name.
        name: String,
    },
    /// An array name that cannot be stored.
    #[error("invalid array name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A schema that cannot be stored (zero chunk dims, rank mismatch, too large…).
    #[error("invalid schema for array {name:?}: {reason}")]
    InvalidSchema {
        /// Array name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The element type of the call does not match the array's dtype.
    #[error("array {name:?} holds {stored}, not {requested}")]
    DTypeMismatch {
        /// Array name.
        name: String,
        /// The dtype stored in the file.
        stored: DType,
        /// The dtype the caller asked for.
        requested: DType,
    },
    /// A start/count/data rank that differs from the array's rank.
    #[error("array {name:?} has rank {expected}, but the call has rank {actual}")]
    RankMismatch {
        /// Array name.
        name: String,
        /// Rank of the array.
        expected: usize,
        /// Rank the caller passed.
        actual: usize,
    },
    /// A region reaching outside the array.
    #[error("region start {start:?} count {count:?} is outside array {name:?} of shape {shape:?}")]
    OutOfBounds {
        /// Array name.
        name: String,
        /// Requested start.
        start: Vec<u64>,
        /// Requested count.
        count: Vec<u64>,
        /// Shape of the array.
        shape: Vec<u64>,
    },
    /// Write data whose shape does not match the region it is written to.
    #[error("data of shape {actual:?} written to array {name:?} where {expected:?} was expected")]
    ShapeMismatch {
        /// Array name.
        name: String,
        /// The expected shape.
        expected: Vec<u64>,
        /// The data's shape.
        actual: Vec<u64>,
    },
    /// A fill value whose type differs from the array's dtype.
    #[error("fill value of type {fill} does not match dtype {dtype} of array {name:?}")]
    FillMismatch {
        /// Array name.
        name: String,
        /// The fill value's type.
        fill: DType,
        /// The array's dtype.
        dtype: DType,
    },
    /// A value that the format cannot represent (for example a string over 4 GiB).
    #[error("value cannot be stored in array {name:?}: {reason}")]
    Unrepresentable {
        /// Array name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Cells encoded ahead ([`crate::EncodedArray`]) that do not fit the
    /// array they are written to: another schema, or other compression
    /// options than the file's.
    #[error("encoded cells do not fit array {name:?}: {reason}")]
    EncodedMismatch {
        /// Array name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The file's bytes are damaged or not a layer file.
    #[error("corrupt layer file {path}: {reason} (at byte offset {offset})")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What was found wrong.
        reason: String,
    },
    /// A layer file written by a newer (or unknown) version of the format.
    #[error(
        "layer file {path} has format version {version}; this build reads version {supported}"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        version: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A block compressed with a codec this build was compiled without.
    #[error("{path} uses codec {codec}, which this build lacks (enable the `{feature}` feature)")]
    CodecUnavailable {
        /// The file.
        path: PathBuf,
        /// The codec's name.
        codec: &'static str,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// A layer prepared before later changes was offered for installation.
    #[error("the prepared layer no longer matches the pending changes; flush again")]
    StalePreparedLayer,
    /// A conditional replace found another version than expected: another
    /// writer got there first. Nothing was changed.
    #[error("{path} changed since it was read (expected version {}, found {}): another writer committed first", expected.as_deref().unwrap_or("none"), found.as_deref().unwrap_or("none"))]
    Conflict {
        /// The object.
        path: PathBuf,
        /// The version the caller expected (`None`: absent).
        expected: Option<String>,
        /// The version found (`None`: absent).
        found: Option<String>,
    },
    /// The underlying storage failed.
    #[error("i/o error while trying to {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the storage reported that the file or object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// Builds an [`Error::Corrupt`].
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// What the caller can do about this error; stable across releases.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ArrayNotFound { .. } => ErrorKind::NotFound,
            Error::ArrayExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidName { .. }
            | Error::InvalidSchema { .. }
            | Error::DTypeMismatch { .. }
            | Error::RankMismatch { .. }
            | Error::OutOfBounds { .. }
            | Error::ShapeMismatch { .. }
            | Error::FillMismatch { .. }
            | Error::Unrepresentable { .. }
            | Error::EncodedMismatch { .. } => ErrorKind::InvalidInput,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnsupportedVersion { .. } | Error::CodecUnavailable { .. } => {
                ErrorKind::Unsupported
            }
            Error::StalePreparedLayer | Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Io { source, .. } => ErrorKind::of_io(source),
        }
    }

    /// True for errors that mean the stored bytes are damaged or unreadable by this build.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::UnsupportedVersion { .. }
                | Error::CodecUnavailable { .. }
        )
    }
}

/// What the caller can do about an error: the stable, coarse grouping under the
/// detailed variants (as `object_store` and `std::io::ErrorKind` do).
///
/// | kind | meaning | what to do |
/// |---|---|---|
/// | `NotFound` | a store, dataset, array, tag… does not exist | check the name |
/// | `AlreadyExists` | the name is in use | pick another name or open it |
/// | `InvalidInput` | the call is wrong (name, dtype, rank, bounds, schema) | fix the call |
/// | `Conflict` | another writer holds the store or committed first | reopen and retry |
/// | `Corrupt` | stored bytes are damaged | restore from a copy; run `atlas verify` |
/// | `Unsupported` | written by a newer version or needs a missing feature | upgrade or enable the feature |
/// | `ResourceExhausted` | out of descriptors, memory or disk | raise the limit, free space, retry |
/// | `Io` | any other storage failure | look at the environment, retry |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// The name is already in use.
    AlreadyExists,
    /// The caller passed something that cannot be used.
    InvalidInput,
    /// Another writer holds the store or committed first.
    Conflict,
    /// Stored bytes are damaged.
    Corrupt,
    /// Written by an unknown version, or needs a feature this build lacks.
    Unsupported,
    /// Out of file descriptors, memory or disk space: the data is fine.
    ResourceExhausted,
    /// Any other storage failure.
    Io,
}

impl ErrorKind {
    /// The kind of an operating-system error: running out of descriptors,
    /// memory or space is a resource error, never damage.
    pub fn of_io(e: &std::io::Error) -> ErrorKind {
        // EMFILE 24, ENFILE 23, ENOMEM 12, ENOSPC 28, EDQUOT 122 on Linux.
        if let Some(12 | 23 | 24 | 28 | 122) = e.raw_os_error() {
            return ErrorKind::ResourceExhausted;
        }
        match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::OutOfMemory
            | std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded => ErrorKind::ResourceExhausted,
            _ => ErrorKind::Io,
        }
    }

    /// A short stable name (`"not_found"`, `"corrupt"`, …) for logs, JSON and
    /// language bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Io => "io",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
