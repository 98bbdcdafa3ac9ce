//! `atlas.Store`: a handle to one store.

use std::sync::{Mutex, PoisonError};

use atlas::{Atlas, OpenOptions, StoreConfig};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::across;
use crate::dataset::Dataset;
use crate::errors::{invalid, raise, IntoPyResult};
use crate::glob;
use crate::runtime::block_on;

/// A store opened read-only (`mode="r"`) or for appending (`mode="a"`, the
/// writer lock taken at open). Handles record the pid that opened them: used
/// in a `fork()`ed child they raise `ForkedHandleError` instead of hanging.
#[pyclass(frozen, module = "atlas._atlas", name = "Store")]
pub struct Store {
    /// `None` once closed.
    handle: Mutex<Option<Atlas>>,
    /// The absolute store directory.
    root: String,
    writable: bool,
    pid: u32,
}

/// A path argument: `str` or `os.PathLike`; also `file://` URLs.
fn location(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    obj.py()
        .import("os")?
        .getattr("fspath")?
        .call1((obj,))?
        .extract()
}

impl Store {
    /// `loc` is the location as the user gave it: an object-store URL is kept
    /// as is (workers reopen it by that URL), a path made absolute.
    fn new(atlas: Atlas, writable: bool, loc: &str) -> Self {
        let root = if atlas::ObjectStorage::handles(loc) {
            loc.to_owned()
        } else {
            std::path::absolute(atlas.root())
                .unwrap_or_else(|_| atlas.root().to_owned())
                .display()
                .to_string()
        };
        Store {
            handle: Mutex::new(Some(atlas)),
            root,
            writable,
            pid: std::process::id(),
        }
    }

    /// The live handle; errors in a forked child, after `close()`, and for a
    /// write (`write`) through a read-only handle.
    pub fn atlas(&self, write: bool) -> PyResult<Atlas> {
        // The pid first: after fork() nothing else may be touched.
        if std::process::id() != self.pid {
            return Err(raise(
                "ForkedHandleError",
                format!(
                    "this atlas.Store ({}) was opened in process {} and crossed fork() into process {}; \
                     open the store again in the child (or use the 'spawn' start method)",
                    self.root,
                    self.pid,
                    std::process::id()
                ),
            ));
        }
        let atlas = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| invalid(format!("store {} is closed", self.root)))?;
        if write && !self.writable {
            return Err(raise(
                "ReadOnlyError",
                format!(
                    "store {} is open read-only; use atlas.Store.open(path, mode=\"a\") to write",
                    self.root
                ),
            ));
        }
        Ok(atlas)
    }

    /// The absolute store directory.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Whether the handle was opened for writing.
    pub fn writable(&self) -> bool {
        self.writable
    }
}

#[pymethods]
impl Store {
    /// Creates a store at `path` (a directory, made if missing, or an
    /// object-store URL such as `s3://bucket/prefix`) and returns it open for
    /// writing.
    #[staticmethod]
    fn create(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<Store> {
        let loc = location(path)?;
        let atlas = block_on(py, Atlas::create(&loc, StoreConfig::default())).py()?;
        Ok(Store::new(atlas, true, &loc))
    }

    /// Opens the store at `path`: `mode="r"` read-only, `mode="a"` for writing.
    /// `at` opens a retained past state, read-only: a generation (`int`), or
    /// a tag name, an ISO-8601 UTC time or `@<ms since the epoch>` (`str`).
    #[staticmethod]
    #[pyo3(signature = (path, mode = "r", at = None))]
    fn open(
        py: Python<'_>,
        path: &Bound<'_, PyAny>,
        mode: &str,
        at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Store> {
        let loc = location(path)?;
        if let Some(at) = at {
            if mode != "r" {
                return Err(invalid(
                    "a past state opens read-only: use mode=\"r\" with at=".to_owned(),
                ));
            }
            let at = if let Ok(g) = at.extract::<u64>() {
                atlas::At::Generation(g)
            } else if let Ok(s) = at.extract::<String>() {
                atlas::At::parse(&s)
            } else {
                return Err(invalid(format!(
                    "at= takes a generation (int) or a tag or time (str), not {}",
                    at.get_type().name()?
                )));
            };
            let atlas = block_on(py, Atlas::open_at(&loc, at)).py()?;
            return Ok(Store::new(atlas, false, &loc));
        }
        let writable = match mode {
            "r" => false,
            "a" => true,
            other => {
                return Err(invalid(format!(
                "mode must be \"r\" or \"a\", not {other:?} (atlas.Store.create makes a new store)"
            )))
            }
        };
        let atlas = if writable {
            let (storage, root) = atlas::storage_for(&loc, &[]).py()?;
            let options = OpenOptions {
                write: true,
                ..OpenOptions::default()
            };
            block_on(py, Atlas::open_with(storage, &root, options)).py()?
        } else {
            block_on(py, Atlas::open(&loc)).py()?
        };
        Ok(Store::new(atlas, writable, &loc))
    }

    /// The absolute store directory, or the object-store URL.
    #[getter]
    fn path(&self) -> String {
        self.root.clone()
    }

    /// `"r"` or `"a"`.
    #[getter]
    fn mode(&self) -> &'static str {
        if self.writable {
            "a"
        } else {
            "r"
        }
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// The commit generation this handle's snapshot holds.
    #[getter]
    fn generation(&self) -> PyResult<u64> {
        Ok(self.atlas(false)?.generation())
    }

    /// The dataset `name` (`DatasetNotFoundError`, a `KeyError`, if absent).
    fn dataset(slf: &Bound<'_, Self>, name: &str) -> PyResult<Dataset> {
        let py = slf.py();
        let atlas = slf.get().atlas(false)?;
        let view = block_on(py, atlas.open_dataset(name)).py()?;
        Ok(Dataset::new(&view, slf.clone().unbind()))
    }

    fn __getitem__(slf: &Bound<'_, Self>, name: &str) -> PyResult<Dataset> {
        Self::dataset(slf, name)
    }

    /// Creates an empty dataset `name`.
    fn create_dataset(slf: &Bound<'_, Self>, name: &str) -> PyResult<Dataset> {
        let py = slf.py();
        let atlas = slf.get().atlas(true)?;
        let view = block_on(py, atlas.create_dataset(name)).py()?;
        Ok(Dataset::new(&view, slf.clone().unbind()))
    }

    /// Creates many datasets in one call, all or nothing, and returns how
    /// many. Each item of `datasets` is a dict: `name`, `attrs` (optional,
    /// a dict) and `arrays` (optional), a dict from array name to a dict of
    /// `dims` (required), `data` (array-like: every cell, written at the
    /// origin), `dtype` (default: the data's), `shape` (default: the
    /// data's; required without `data`, whose cells then read as the fill
    /// value), `chunks`, `fill_value` and `attrs`, as `define_array` takes
    /// them. Everything is checked before anything is written: one bad
    /// item (a name that exists or repeats, a shape that does not match)
    /// raises and leaves the store unchanged. Like every write, the
    /// datasets are durable at the next `flush`. Much faster than
    /// `create_dataset` per dataset for many small ones: one lock of each
    /// array file and one registry update for the whole call.
    fn create_datasets(&self, py: Python<'_>, datasets: &Bound<'_, PyAny>) -> PyResult<usize> {
        let atlas = self.atlas(true)?;
        let batch = crate::batch::new_datasets(datasets)?;
        let n = batch.len();
        block_on(py, atlas.create_datasets(&batch)).py()?;
        // Freed without the GIL: a large batch's cells are many buffers.
        py.detach(move || drop(batch));
        Ok(n)
    }

    /// Deletes the dataset `name` and its arrays.
    fn delete_dataset(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let atlas = self.atlas(true)?;
        block_on(py, atlas.delete_dataset(name)).py()
    }

    /// Dataset names in creation order, those matching `pattern` (`*` any run
    /// of characters, `?` one character) when given.
    #[pyo3(signature = (pattern = None))]
    fn list(&self, pattern: Option<&str>) -> PyResult<Vec<String>> {
        let names = self.atlas(false)?.list_datasets().py()?;
        Ok(match pattern {
            None => names,
            Some(p) => names.into_iter().filter(|n| glob::matches(p, n)).collect(),
        })
    }

    /// Every array name used by some dataset.
    fn array_names(&self) -> PyResult<Vec<String>> {
        Ok(self.atlas(false)?.list_arrays())
    }

    fn __contains__(&self, name: &str) -> PyResult<bool> {
        self.atlas(false)?.dataset_exists(name).py()
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.atlas(false)?.n_datasets())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let names = self.atlas(false)?.list_datasets().py()?;
        PyList::new(py, names)?.call_method0("__iter__")
    }

    /// What the registry says about `array` in each of `datasets` (no data is
    /// read): `dtype`, `dims`, `fill_value`, `attrs` of the first dataset that
    /// has it, `differing_attrs`, `present` and `shapes` (see `atlas.open_stacked`).
    /// `differing_attrs` also names each key of `watch` that the first
    /// dataset lacks and another has.
    #[pyo3(signature = (array, datasets, watch = Vec::new()))]
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts owned arguments
    fn describe_across<'py>(
        &self,
        py: Python<'py>,
        array: &str,
        datasets: Vec<String>,
        watch: Vec<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        across::describe(py, &self.atlas(false)?, array, &datasets, &watch)
    }

    /// The dataset attributes of each of `datasets` (only `keys`, when given).
    #[pyo3(signature = (datasets, keys = None))]
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts owned arguments
    fn dataset_attrs<'py>(
        &self,
        py: Python<'py>,
        datasets: Vec<String>,
        keys: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyList>> {
        across::dataset_attrs(py, &self.atlas(false)?, &datasets, keys.as_deref())
    }

    /// Reads `array` from every one of `datasets` in one parallel pass and
    /// stacks the results along a new first axis: `(data, lengths)`, where
    /// `data` has shape `(len(datasets), *count)` and `lengths[i]` is the part
    /// of the box dataset `i` holds (zeros where it lacks the array). Cells
    /// beyond a dataset's extent hold `fill` (default: the array's fill value,
    /// else NaN for floats and zero otherwise). `count=None` reaches the
    /// largest extent of any dataset. Cells of a float array equal to one of
    /// `nan_where` read as NaN (CF masking of `_FillValue`/`missing_value`).
    #[pyo3(signature = (array, datasets, start = None, count = None, fill = None, nan_where = Vec::new()))]
    #[allow(clippy::needless_pass_by_value)] // PyO3 extracts owned arguments
    #[allow(clippy::too_many_arguments)] // the Python signature, one argument each
    fn read_across<'py>(
        &self,
        py: Python<'py>,
        array: &str,
        datasets: Vec<String>,
        start: Option<Vec<u64>>,
        count: Option<Vec<u64>>,
        fill: Option<&Bound<'py, PyAny>>,
        nan_where: Vec<f64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        across::read(
            py,
            &self.atlas(false)?,
            array,
            &datasets,
            start,
            count,
            fill,
            nan_where,
        )
    }

    /// Commits every change since the last flush (the durability boundary).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        if !self.writable {
            // Nothing to commit through a read-only handle.
            self.atlas(false)?;
            return Ok(());
        }
        let atlas = self.atlas(true)?;
        block_on(py, atlas.flush()).py()
    }

    /// Sets the history retention, in a commit: the newest `keep_generations`
    /// generations (counting the current one) and those younger than
    /// `keep_secs` seconds stay readable with `Store.open(path, at=...)`.
    #[pyo3(signature = (keep_generations, keep_secs = 0))]
    fn set_retention(&self, py: Python<'_>, keep_generations: u64, keep_secs: u64) -> PyResult<()> {
        let atlas = self.atlas(true)?;
        block_on(py, atlas.set_retention(keep_generations, keep_secs)).py()
    }

    /// Merges every array file's layers into new bases.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        let atlas = self.atlas(true)?;
        block_on(py, atlas.compact()).py()
    }

    /// Drops the handle: pending writes are abandoned and the writer lock is
    /// released (`Dataset` objects of this store then raise on use).
    fn close(&self) {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Flushes (writable handles) only when the block ended normally, then closes.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let result = if exc_type.is_none() && self.writable && !self.closed() {
            self.flush(py)
        } else {
            Ok(())
        };
        self.close();
        result.map(|()| false)
    }

    /// dask's token of this handle. A read-only handle is its location and
    /// generation: handles on the same state share dask task names, a newer
    /// generation never reuses an older one's results. A writable handle's
    /// state includes its unflushed changes, so every call gives a new
    /// random token (dask then reuses nothing).
    fn __dask_tokenize__(&self) -> PyResult<(&'static str, String, u64, u64)> {
        let atlas = self.atlas(false)?;
        if self.writable {
            use std::hash::{BuildHasher, Hasher};
            let random = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            return Ok(("atlas.Store", self.root.clone(), u64::MAX, random));
        }
        Ok(("atlas.Store", self.root.clone(), atlas.generation(), 0))
    }

    /// Read-only handles pickle as a recipe (path, generation) that reopens
    /// read-only in the receiving process; writable ones refuse.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let atlas = self.atlas(false)?;
        if self.writable {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "cannot pickle a writable atlas.Store ({}): flush it and pickle a read-only handle, \
                 atlas.Store.open(path, mode=\"r\")",
                self.root
            )));
        }
        let reopen = py.import("atlas._pickle")?.getattr("reopen_store")?;
        let args = (self.root.clone(), atlas.generation()).into_pyobject(py)?;
        PyTuple::new(py, [reopen, args.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "atlas.Store({:?}, mode={:?}{})",
            self.root,
            self.mode(),
            if self.closed() { ", closed" } else { "" }
        )
    }
}
