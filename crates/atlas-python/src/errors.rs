//! Rust errors → the Python exception tree of `atlas.errors`.
//!
//! The classes are defined in Python (multiple inheritance from `KeyError`,
//! `ValueError`, `FileNotFoundError`… and pickling are simpler there); this
//! module picks the class for each error and raises it with the error's message.

use atlas::{Error, ErrorKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// Every error kind string, in `ErrorKind` order (the Python tests check the
/// Python tree covers each).
#[pyfunction]
pub fn error_kinds() -> Vec<&'static str> {
    [
        ErrorKind::NotFound,
        ErrorKind::AlreadyExists,
        ErrorKind::InvalidInput,
        ErrorKind::Conflict,
        ErrorKind::Corrupt,
        ErrorKind::Unsupported,
        ErrorKind::ResourceExhausted,
        ErrorKind::Io,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect()
}

/// The `atlas.errors` class for a kind.
fn class_of_kind(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::AlreadyExists => "AlreadyExistsError",
        ErrorKind::InvalidInput => "InvalidInputError",
        ErrorKind::Conflict => "ConflictError",
        ErrorKind::Corrupt => "CorruptError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::ResourceExhausted => "ResourceExhaustedError",
        ErrorKind::Io => "AtlasIOError",
        _ => "AtlasError",
    }
}

/// The most specific `atlas.errors` class for an error.
fn class_of(e: &Error) -> &'static str {
    match e {
        Error::StoreNotFound { .. } => "StoreNotFoundError",
        Error::StoreExists { .. } => "StoreExistsError",
        Error::DatasetNotFound { .. } => "DatasetNotFoundError",
        Error::ArrayNotFound { .. } => "ArrayNotFoundError",
        Error::Locked { .. } => "LockedError",
        Error::StaleHandle { .. } => "StaleHandleError",
        _ => class_of_kind(e.kind()),
    }
}

/// An `atlas.errors` exception of class `class` with `message`.
pub fn raise(class: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let cls = py
            .import("atlas.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from));
        match cls {
            Ok(cls) => PyErr::from_type(cls, (message,)),
            // Only if the package is broken: keep the message.
            Err(e) => PyRuntimeError::new_err(format!("{message} (and atlas.errors: {e})")),
        }
    })
}

/// The Python exception for an ATLAS error.
pub fn to_py(e: &Error) -> PyErr {
    // The message with its causes ("i/o error while trying to open s3://b/p:
    // no S3 credentials: set AWS_ACCESS_KEY_ID …"), as the CLI prints it.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    raise(class_of(e), message)
}

/// Converts ATLAS results to Python results.
pub trait IntoPyResult<T> {
    /// The value, or the mapped exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(|e| to_py(&e))
    }
}

/// `InvalidInputError` (also a `ValueError`).
pub fn invalid(message: impl Into<String>) -> PyErr {
    raise("InvalidInputError", message.into())
}
