//! `atlas.Dataset`: one dataset of a store (arrays and attributes).

use atlas::{ArraySchema, DatasetView, Error};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::array;
use crate::convert::{
    attr_from_py, attrs_to_dict, fill_from_py, fill_to_py, numpy_name, parse_dtype, stats_to_dict,
};
use crate::errors::{raise, to_py, IntoPyResult};
use crate::runtime::{block_on, runtime};
use crate::store::Store;

/// A dataset: named N-d arrays with attributes. Obtained from
/// `Store.dataset(name)`, `store[name]` or `Store.create_dataset(name)`.
///
/// It holds the name and the `Store`, not a Rust dataset handle: each call
/// takes the store's live handle, so `Store.close()` really releases the store
/// (and its writer lock) even while `Dataset` objects are alive.
#[pyclass(frozen, module = "atlas._atlas", name = "Dataset")]
pub struct Dataset {
    name: String,
    store: Py<Store>,
}

impl Dataset {
    pub(crate) fn new(view: &DatasetView, store: Py<Store>) -> Self {
        Dataset {
            name: view.name().to_owned(),
            store,
        }
    }

    /// The dataset handle, after checking the store handle (fork, closed,
    /// read-only for `write`).
    fn view(&self, write: bool) -> PyResult<DatasetView> {
        let atlas = self.store.get().atlas(write)?;
        Python::attach(|py| block_on(py, atlas.open_dataset(&self.name)).py())
    }

    fn array_not_found(&self, array: &str) -> PyErr {
        to_py(&Error::ArrayNotFound {
            dataset: self.name.clone(),
            array: array.to_owned(),
        })
    }

    fn schema(&self, view: &DatasetView, name: &str) -> PyResult<ArraySchema> {
        view.array_schema(name)
            .py()?
            .ok_or_else(|| self.array_not_found(name))
    }
}

#[pymethods]
impl Dataset {
    /// The dataset's name.
    #[getter]
    fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The store this dataset belongs to.
    #[getter]
    fn store(&self, py: Python<'_>) -> Py<Store> {
        self.store.clone_ref(py)
    }

    /// Array names, in definition order.
    fn arrays(&self) -> PyResult<Vec<String>> {
        let view = self.view(false)?;
        view.list_arrays().py()
    }

    fn __contains__(&self, name: &str) -> PyResult<bool> {
        let view = self.view(false)?;
        Ok(view.array_schema(name).py()?.is_some())
    }

    /// `{"dtype", "dims", "shape", "chunks", "fill_value"}` of an array.
    fn array_info<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let view = self.view(false)?;
        let s = self.schema(&view, name)?;
        let d = PyDict::new(py);
        d.set_item("dtype", numpy_name(s.dtype))?;
        d.set_item("dims", PyTuple::new(py, &s.dims)?)?;
        d.set_item("shape", PyTuple::new(py, &s.shape)?)?;
        d.set_item("chunks", PyTuple::new(py, &s.chunk_shape)?)?;
        match &s.fill_value {
            Some(f) => d.set_item("fill_value", fill_to_py(py, f)?)?,
            None => d.set_item("fill_value", py.None())?,
        }
        Ok(d)
    }

    /// Defines an array. `dtype` is a numpy dtype-like (`"float32"`, `np.int16`,
    /// `str`, `"datetime64[ns]"`); `chunks=None` is one chunk of the whole
    /// shape; `fill_value=None` reads unwritten cells as zero (`""`, epoch).
    #[pyo3(signature = (name, dtype, dims, shape, chunks = None, fill_value = None))]
    #[allow(clippy::too_many_arguments)] // the Python signature, one argument each
    fn define_array(
        &self,
        py: Python<'_>,
        name: &str,
        dtype: &Bound<'_, PyAny>,
        dims: Vec<String>,
        shape: Vec<u64>,
        chunks: Option<Vec<u64>>,
        fill_value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let view = self.view(true)?;
        let dtype = parse_dtype(dtype)?;
        let fill = fill_value
            .filter(|f| !f.is_none())
            .map(|f| fill_from_py(dtype, f))
            .transpose()?;
        let schema = ArraySchema::new(name, dtype, dims, shape, chunks, fill).map_err(|e| {
            to_py(&Error::Array {
                dataset: self.name.as_str().to_owned(),
                array: name.to_owned(),
                error: Box::new(e),
            })
        })?;
        block_on(py, view.define_array_schema(name, schema)).py()
    }

    /// Writes `data` (anything numpy converts to the array's dtype without
    /// changing kind or overflowing) at `start` (default: the origin).
    #[pyo3(signature = (name, data, start = None))]
    fn write(
        &self,
        py: Python<'_>,
        name: &str,
        data: &Bound<'_, PyAny>,
        start: Option<Vec<u64>>,
    ) -> PyResult<()> {
        let view = self.view(true)?;
        let dtype = self.schema(&view, name)?.dtype;
        array::write(py, &view, name, dtype, data, start.unwrap_or_default())
    }

    /// Reads the hyperslab `start`/`count` (default: the whole array) as a
    /// numpy array.
    #[pyo3(signature = (name, start = None, count = None))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        start: Option<Vec<u64>>,
        count: Option<Vec<u64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let atlas = self.store.get().atlas(false)?;
        // Everything but the numpy conversion in one stretch without the
        // GIL: each release and re-acquisition costs about as much as the
        // Rust work of a small read, and two threads fight over it.
        let read = py.detach(|| -> PyResult<array::Read> {
            let view = runtime().block_on(atlas.open_dataset(&self.name)).py()?;
            let s = self.schema(&view, name)?;
            // A count without a start (or the reverse) means from the origin / to the end.
            let rank = s.shape.len();
            let start = start.unwrap_or_else(|| vec![0; rank]);
            let count = match count {
                Some(c) => c,
                None if start.len() == rank => s
                    .shape
                    .iter()
                    .zip(&start)
                    .map(|(n, a)| n.saturating_sub(*a))
                    .collect(),
                None => Vec::new(),
            };
            array::read(&view, name, s.dtype, &start, &count)
        })?;
        array::to_numpy(py, read)
    }

    /// Deletes an array of this dataset.
    fn delete_array(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let view = self.view(true)?;
        block_on(py, view.delete_array(name)).py()
    }

    /// Statistics of an array from stored per-chunk statistics:
    /// `{"min", "max", "null_count", "row_count"}`.
    fn stats<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let view = self.view(false)?;
        let s = block_on(py, view.array_stats(name))
            .py()?
            .ok_or_else(|| self.array_not_found(name))?;
        stats_to_dict(py, &s)
    }

    /// A copy of the dataset attributes, in insertion order.
    #[getter]
    fn attrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let view = self.view(false)?;
        attrs_to_dict(py, view.attributes())
    }

    /// A dataset attribute, `default` if absent.
    #[pyo3(signature = (key, default = None))]
    fn get_attr<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let view = self.view(false)?;
        match view.get_attribute(key) {
            Some(a) => crate::convert::attr_to_py(py, &a),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// Sets a dataset attribute (bool, int, float, str, datetime, or a list of one of them).
    fn set_attr(&self, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let view = self.view(true)?;
        let a = attr_from_py(value)?;
        view.set_attribute(key, a).py()
    }

    /// Removes a dataset attribute (`NotFoundError`, a `KeyError`, if absent).
    fn delete_attr(&self, key: &str) -> PyResult<()> {
        let view = self.view(true)?;
        match view.delete_attribute(key).py()? {
            Some(_) => Ok(()),
            None => Err(raise(
                "NotFoundError",
                format!("dataset {:?} has no attribute {key:?}", self.name.as_str()),
            )),
        }
    }

    /// A copy of one array's attributes, in insertion order.
    fn array_attrs<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let view = self.view(false)?;
        attrs_to_dict(py, view.array_attributes(name).py()?)
    }

    /// Sets an attribute of one array.
    fn set_array_attr(&self, name: &str, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let view = self.view(true)?;
        let a = attr_from_py(value)?;
        view.set_array_attribute(name, key, a).py()
    }

    /// Removes an attribute of one array (`NotFoundError` if absent).
    fn delete_array_attr(&self, name: &str, key: &str) -> PyResult<()> {
        let view = self.view(true)?;
        match view.delete_array_attribute(name, key).py()? {
            Some(_) => Ok(()),
            None => Err(raise(
                "NotFoundError",
                format!(
                    "array {name:?} of dataset {:?} has no attribute {key:?}",
                    self.name.as_str()
                ),
            )),
        }
    }

    /// dask's token: its store's (see `Store.__dask_tokenize__`) and its name.
    fn __dask_tokenize__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, String)> {
        let store = self.store.bind(py).call_method0("__dask_tokenize__")?;
        Ok((store, self.name.as_str().to_owned()))
    }

    /// Pickles as (store recipe, name); only datasets of read-only stores.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let store = self.store.bind(py);
        let (reopen_store, store_args): (Bound<'py, PyAny>, Bound<'py, PyAny>) =
            store.call_method0("__reduce__")?.extract()?;
        let reopen = py.import("atlas._pickle")?.getattr("reopen_dataset")?;
        let args = (reopen_store, store_args, self.name.as_str()).into_pyobject(py)?;
        PyTuple::new(py, [reopen, args.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "atlas.Dataset({:?} in {:?})",
            self.name.as_str(),
            self.store.get().root()
        )
    }
}
