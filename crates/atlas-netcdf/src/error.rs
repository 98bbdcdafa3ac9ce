//! The crate's error type.

use std::path::PathBuf;

/// Every error of `atlas-netcdf`, grouped by what the caller can do.
///
/// - *This input file cannot be imported* (skip it, report the reason):
///   [`Error::NotNetcdf`], [`Error::Truncated`], [`Error::Malformed`],
///   [`Error::Unsupported`], [`Error::Mapping`], [`Error::Library`].
/// - *The dataset cannot be exported as asked*: [`Error::Export`].
/// - *Environment*: [`Error::Io`] (a file could not be read or written).
/// - *The store refused an operation*: [`Error::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start with a NetCDF or HDF5 signature.
    #[error("{path}: not a netcdf file (no CDF or HDF5 signature)")]
    NotNetcdf {
        /// The file.
        path: PathBuf,
    },
    /// The file ends before the data its header describes.
    #[error("{path}: truncated netcdf file: needs {needed} bytes, has {len}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header says the file must have.
        needed: u64,
        /// Bytes the file has.
        len: u64,
    },
    /// The header is inconsistent or damaged.
    #[error("{path}: malformed netcdf header at offset {offset}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A valid NetCDF feature this build or ATLAS cannot represent (a type,
    /// groups, NetCDF-4 without the `netcdf4` feature, …).
    #[error("{path}: unsupported: {what}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        what: String,
    },
    /// The file is valid NetCDF but cannot become an ATLAS dataset (a name
    /// ATLAS rejects, an attribute that cannot be typed, …).
    #[error("{path}: cannot map to a dataset: {reason}")]
    Mapping {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// libnetcdf reported an error (feature `netcdf4`).
    #[error("{path}: libnetcdf: {message}")]
    Library {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// A dataset cannot be written as NetCDF.
    #[error("cannot export dataset {dataset:?}: {reason}")]
    Export {
        /// The dataset.
        dataset: String,
        /// Why.
        reason: String,
    },
    /// The store refused an operation.
    #[error(transparent)]
    Store(#[from] atlas::Error),
}

impl Error {
    /// True when the error concerns one input file only (so a bulk import
    /// reports it and goes on with the other files).
    pub fn is_input_error(&self) -> bool {
        !matches!(self, Error::Store(_) | Error::Export { .. })
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
