//! Array reads and writes with the element type chosen at run time: numeric
//! arrays move to and from numpy without a copy (reads hand the Rust buffer to
//! numpy; writes borrow numpy's buffer), timestamps are `datetime64[ns]` and
//! strings `object` arrays of `str`.

use atlas::{DType, DatasetView, Error, TimestampNs};
use ndarray::{ArrayD, IxDyn};
use numpy::{PyArray, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::convert::numpy_name;
use crate::errors::{invalid, to_py, IntoPyResult};
use crate::runtime::block_on;

/// An array read with the GIL released, before it becomes a numpy array.
pub use atlas::ArrayData as Read;

/// Reads a hyperslab (`start`/`count` empty = everything) of an array of
/// `dtype`, `Err(ArrayNotFound)` when the dataset lacks it. Runs on the
/// calling thread, which must not hold the GIL (a handoff to the runtime's
/// blocking pool cost more than a small read).
pub fn read(
    view: &DatasetView,
    name: &str,
    dtype: DType,
    start: &[u64],
    count: &[u64],
) -> PyResult<Read> {
    macro_rules! typed {
        ($t:ty, $v:ident) => {
            Read::$v(
                view.read_array_blocking::<$t>(name, start, count)
                    .py()?
                    .ok_or_else(|| {
                        to_py(&Error::ArrayNotFound {
                            dataset: view.name().to_owned(),
                            array: name.to_owned(),
                        })
                    })?,
            )
        };
    }
    Ok(match dtype {
        DType::Bool => typed!(bool, Bool),
        DType::Int8 => typed!(i8, I8),
        DType::Int16 => typed!(i16, I16),
        DType::Int32 => typed!(i32, I32),
        DType::Int64 => typed!(i64, I64),
        DType::UInt8 => typed!(u8, U8),
        DType::UInt16 => typed!(u16, U16),
        DType::UInt32 => typed!(u32, U32),
        DType::UInt64 => typed!(u64, U64),
        DType::Float32 => typed!(f32, F32),
        DType::Float64 => typed!(f64, F64),
        DType::Timestamp => typed!(TimestampNs, Timestamp),
        DType::String => typed!(String, Str),
        other => {
            return Err(invalid(format!(
                "dtype {other} is not supported by this build"
            )))
        }
    })
}

/// A read array as numpy: numbers without a copy, timestamps as
/// `datetime64[ns]`, strings as an `object` array of `str`.
pub fn to_numpy(py: Python<'_>, read: Read) -> PyResult<Bound<'_, PyAny>> {
    Ok(match read {
        Read::Bool(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::I8(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::I16(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::I32(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::I64(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::U8(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::U16(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::U32(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::U64(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::F32(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::F64(a) => PyArray::from_owned_array(py, a).into_any(),
        Read::Timestamp(a) => PyArray::from_owned_array(py, a.mapv(|t| t.0))
            .into_any()
            .call_method1("view", ("datetime64[ns]",))?,
        Read::Str(a) => {
            let objects = a.mapv(|s| PyString::new(py, &s).into_any().unbind());
            PyArray::from_owned_object_array(py, objects).into_any()
        }
        other => {
            return Err(invalid(format!(
                "dtype {} is not supported by this build",
                other.dtype()
            )))
        }
    })
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

/// `data` as owned cells of `dtype` (for a batch, which keeps them past the
/// call): numbers converted as [`write`] converts them, then copied once.
pub fn to_array_data(data: &Bound<'_, PyAny>, dtype: DType) -> PyResult<Read> {
    macro_rules! num {
        ($t:ty, $v:ident) => {{
            let ro: PyReadonlyArrayDyn<'_, $t> = match data.extract() {
                Ok(ro) => ro,
                Err(_) => coerce(data, dtype)?.extract()?,
            };
            Read::$v(ro.as_array().to_owned())
        }};
    }
    Ok(match dtype {
        DType::Bool => num!(bool, Bool),
        DType::Int8 => num!(i8, I8),
        DType::Int16 => num!(i16, I16),
        DType::Int32 => num!(i32, I32),
        DType::Int64 => num!(i64, I64),
        DType::UInt8 => num!(u8, U8),
        DType::UInt16 => num!(u16, U16),
        DType::UInt32 => num!(u32, U32),
        DType::UInt64 => num!(u64, U64),
        DType::Float32 => num!(f32, F32),
        DType::Float64 => num!(f64, F64),
        DType::Timestamp => {
            let ro: PyReadonlyArrayDyn<'_, i64> = coerce(data, dtype)?.extract()?;
            Read::Timestamp(ro.as_array().mapv(TimestampNs))
        }
        DType::String => {
            let (cells, shape): (Vec<String>, Vec<usize>) = coerce(data, dtype)?.extract()?;
            Read::Str(
                ArrayD::from_shape_vec(IxDyn(&shape), cells)
                    .map_err(|e| invalid(format!("string data: {e}")))?,
            )
        }
        other => {
            return Err(invalid(format!(
                "dtype {other} is not supported by this build"
            )))
        }
    })
}
