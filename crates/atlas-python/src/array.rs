//! Array reads and writes with the element type chosen at run time: numeric
//! arrays move to and from numpy without a copy (reads hand the Rust buffer to
//! numpy; writes borrow numpy's buffer), timestamps are `datetime64[ns]` and
//! strings `object` arrays of `str`.

use atlas::{ArrayElement, DType, DatasetView, Error, TimestampNs};
use ndarray::{ArrayD, IxDyn};
use numpy::{PyArray, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::convert::numpy_name;
use crate::errors::{invalid, to_py, IntoPyResult};
use crate::runtime::block_on;

/// Reads one array, `Err(ArrayNotFound)` when the dataset lacks it.
fn read_typed<T: ArrayElement>(
    py: Python<'_>,
    view: &DatasetView,
    name: &str,
    start: Vec<u64>,
    count: Vec<u64>,
) -> PyResult<ArrayD<T>> {
    block_on(py, view.read_array::<T>(name, start, count))
        .py()?
        .ok_or_else(|| {
            to_py(&Error::ArrayNotFound {
                dataset: view.name().to_owned(),
                array: name.to_owned(),
            })
        })
}

/// Reads a hyperslab (`start`/`count` empty = everything) as a numpy array.
pub fn read<'py>(
    py: Python<'py>,
    view: &DatasetView,
    name: &str,
    dtype: DType,
    start: Vec<u64>,
    count: Vec<u64>,
) -> PyResult<Bound<'py, PyAny>> {
    macro_rules! num {
        ($t:ty) => {{
            let a = read_typed::<$t>(py, view, name, start, count)?;
            Ok(PyArray::from_owned_array(py, a).into_any())
        }};
    }
    match dtype {
        DType::Bool => num!(bool),
        DType::Int8 => num!(i8),
        DType::Int16 => num!(i16),
        DType::Int32 => num!(i32),
        DType::Int64 => num!(i64),
        DType::UInt8 => num!(u8),
        DType::UInt16 => num!(u16),
        DType::UInt32 => num!(u32),
        DType::UInt64 => num!(u64),
        DType::Float32 => num!(f32),
        DType::Float64 => num!(f64),
        DType::Timestamp => {
            let a = read_typed::<TimestampNs>(py, view, name, start, count)?;
            PyArray::from_owned_array(py, a.mapv(|t| t.0))
                .into_any()
                .call_method1("view", ("datetime64[ns]",))
        }
        DType::String => {
            let a = read_typed::<String>(py, view, name, start, count)?;
            let objects = a.mapv(|s| PyString::new(py, &s).into_any().unbind());
            Ok(PyArray::from_owned_object_array(py, objects).into_any())
        }
        other => Err(invalid(format!(
            "dtype {other} is not supported by this build"
        ))),
    }
}

/// `data` as a numpy array of exactly `dtype` (see `atlas._convert.coerce_array`).
fn coerce<'py>(data: &Bound<'py, PyAny>, dtype: DType) -> PyResult<Bound<'py, PyAny>> {
    data.py()
        .import("atlas._convert")?
        .getattr("coerce_array")?
        .call1((data, numpy_name(dtype)))
}

/// Writes `data` at `start` (empty = the origin).
pub fn write(
    py: Python<'_>,
    view: &DatasetView,
    name: &str,
    dtype: DType,
    data: &Bound<'_, PyAny>,
    start: Vec<u64>,
) -> PyResult<()> {
    macro_rules! num {
        ($t:ty) => {{
            // Zero-copy borrow when the caller passes an array of the exact dtype;
            // otherwise one checked conversion in numpy.
            let ro: PyReadonlyArrayDyn<'_, $t> = match data.extract() {
                Ok(ro) => ro,
                Err(_) => coerce(data, dtype)?.extract()?,
            };
            let v = ro.as_array();
            block_on(py, view.write_array::<$t>(name, start, v)).py()
        }};
    }
    match dtype {
        DType::Bool => num!(bool),
        DType::Int8 => num!(i8),
        DType::Int16 => num!(i16),
        DType::Int32 => num!(i32),
        DType::Int64 => num!(i64),
        DType::UInt8 => num!(u8),
        DType::UInt16 => num!(u16),
        DType::UInt32 => num!(u32),
        DType::UInt64 => num!(u64),
        DType::Float32 => num!(f32),
        DType::Float64 => num!(f64),
        DType::Timestamp => {
            // `coerce_array` returns the int64 nanoseconds view.
            let ro: PyReadonlyArrayDyn<'_, i64> = coerce(data, dtype)?.extract()?;
            let a = ro.as_array().mapv(TimestampNs);
            block_on(py, view.write_array::<TimestampNs>(name, start, a.view())).py()
        }
        DType::String => {
            let (cells, shape): (Vec<String>, Vec<usize>) = coerce(data, dtype)?.extract()?;
            let a = ArrayD::from_shape_vec(IxDyn(&shape), cells)
                .map_err(|e| invalid(format!("string data: {e}")))?;
            block_on(py, view.write_array::<String>(name, start, a.view())).py()
        }
        other => Err(invalid(format!(
            "dtype {other} is not supported by this build"
        ))),
    }
}
