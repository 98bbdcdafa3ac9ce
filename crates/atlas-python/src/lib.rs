//! Python bindings of ATLAS: the extension module `atlas._atlas` behind
//! `import atlas` (distribution `atlas-store`, built with maturin).
//!
//! The Python package (`python/atlas/`) re-exports `store::Store` and
//! `dataset::Dataset` and adds the pure-Python parts: the exception tree
//! (`atlas.errors`), value conversions (`atlas._convert`), the pickling recipe
//! (`atlas._pickle`), the xarray backend (`atlas.xarray_backend`), many
//! datasets as one xarray object (`atlas.stacked`, over the padded reads of
//! module `across`) and writes from xarray (`atlas.writing`).
//!
//! Every call is synchronous: it releases the GIL ([`Python::detach`]) and runs
//! the async Rust API on one tokio runtime per process (module `runtime`). Handles
//! record the pid that opened them and refuse to run in a `fork()`ed child,
//! where the runtime's threads do not exist.
//!
//! The crate needs no `unsafe` and no exemption from the workspace's
//! `unsafe_code = "deny"`: `PyO3` 0.30's macros mark their generated FFI glue so
//! the lint does not fire, and rust-numpy's constructors are safe wrappers.

mod across;
mod array;
mod batch;
mod convert;
mod dataset;
mod errors;
mod glob;
mod runtime;
mod store;

use pyo3::prelude::*;

/// The extension module `atlas._atlas`.
#[pymodule]
#[pyo3(name = "_atlas")]
fn atlas_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::Store>()?;
    m.add_class::<dataset::Dataset>()?;
    m.add_function(wrap_pyfunction!(errors::error_kinds, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
