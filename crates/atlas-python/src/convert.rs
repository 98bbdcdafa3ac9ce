//! Conversions between Python values and ATLAS's dtypes, attributes, fill
//! values and statistics. Classifying a Python attribute value (bool before
//! int, numpy scalars, datetimes, homogeneous lists) is done in Python
//! (`atlas._convert.attr_to_wire`); this side only unpacks its tagged answer.

use atlas::{ArrayStats, Attr, DType, FillValue, StatValue, TimestampNs};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors::invalid;

/// The numpy name of a dtype (`"float32"`, `"str"` for strings,
/// `"datetime64[ns]"` for timestamps).
pub fn numpy_name(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "bool",
        DType::Int8 => "int8",
        DType::Int16 => "int16",
        DType::Int32 => "int32",
        DType::Int64 => "int64",
        DType::UInt8 => "uint8",
        DType::UInt16 => "uint16",
        DType::UInt32 => "uint32",
        DType::UInt64 => "uint64",
        DType::Float32 => "float32",
        DType::Float64 => "float64",
        DType::Timestamp => "datetime64[ns]",
        _ => "str",
    }
}

/// A dtype from a numpy dtype-like (`np.float32`, `"int16"`, `"<f8"`, `str`,
/// `"datetime64[ns]"`) or an ATLAS name (`"f32"`, `"string"`, `"timestamp"`).
pub fn parse_dtype(obj: &Bound<'_, PyAny>) -> PyResult<DType> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str()?;
        if let Some(d) = DType::from_name(s) {
            return Ok(d);
        }
        if matches!(s, "str" | "string" | "object" | "O") {
            return Ok(DType::String);
        }
    }
    let py = obj.py();
    let np = py.import("numpy")?;
    let dt = np
        .getattr("dtype")?
        .call1((obj,))
        .map_err(|e| invalid(format!("not a dtype: {e}")))?;
    let kind: String = dt.getattr("kind")?.extract()?;
    let size: usize = dt.getattr("itemsize")?.extract()?;
    Ok(match (kind.as_str(), size) {
        ("b", _) => DType::Bool,
        ("i", 1) => DType::Int8,
        ("i", 2) => DType::Int16,
        ("i", 4) => DType::Int32,
        ("i", 8) => DType::Int64,
        ("u", 1) => DType::UInt8,
        ("u", 2) => DType::UInt16,
        ("u", 4) => DType::UInt32,
        ("u", 8) => DType::UInt64,
        ("f", 4) => DType::Float32,
        ("f", 8) => DType::Float64,
        ("U" | "O" | "T", _) => DType::String,
        ("M", _) => DType::Timestamp,
        _ => {
            return Err(invalid(format!(
                "dtype {} has no ATLAS equivalent (bool, [u]int8..64, float32/64, str, datetime64)",
                dt.str()?
            )))
        }
    })
}

/// `numpy.datetime64(ns, "ns")`.
fn datetime64(py: Python<'_>, t: TimestampNs) -> PyResult<Bound<'_, PyAny>> {
    py.import("numpy")?
        .getattr("datetime64")?
        .call1((t.0, "ns"))
}

/// A Python value for an attribute.
pub fn attr_to_py<'py>(py: Python<'py>, a: &Attr) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a {
        Attr::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
        Attr::Int64(v) => v.into_pyobject(py)?.into_any(),
        Attr::UInt64(v) => v.into_pyobject(py)?.into_any(),
        Attr::Float64(v) => v.into_pyobject(py)?.into_any(),
        Attr::String(v) => PyString::new(py, v).into_any(),
        Attr::Timestamp(t) => datetime64(py, *t)?,
        Attr::BoolList(v) => PyList::new(py, v)?.into_any(),
        Attr::Int64List(v) => PyList::new(py, v)?.into_any(),
        Attr::UInt64List(v) => PyList::new(py, v)?.into_any(),
        Attr::Float64List(v) => PyList::new(py, v)?.into_any(),
        Attr::StringList(v) => PyList::new(py, v)?.into_any(),
        Attr::TimestampList(v) => {
            let items = v
                .iter()
                .map(|t| datetime64(py, *t))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        // `Attr` may grow; say so rather than guess.
        #[allow(unreachable_patterns)]
        other => PyString::new(py, &other.to_string()).into_any(),
    })
}

/// An attribute from a Python value (see `atlas._convert.attr_to_wire` for the
/// accepted types).
pub fn attr_from_py(value: &Bound<'_, PyAny>) -> PyResult<Attr> {
    let py = value.py();
    let (tag, payload): (String, Bound<'_, PyAny>) = py
        .import("atlas._convert")?
        .getattr("attr_to_wire")?
        .call1((value,))?
        .extract()?;
    Ok(match tag.as_str() {
        "bool" => Attr::Bool(payload.extract()?),
        "int" => Attr::Int64(payload.extract()?),
        "uint" => Attr::UInt64(payload.extract()?),
        "float" => Attr::Float64(payload.extract()?),
        "str" => Attr::String(payload.extract()?),
        "ts" => Attr::Timestamp(TimestampNs(payload.extract()?)),
        "bool_list" => Attr::BoolList(payload.extract()?),
        "int_list" => Attr::Int64List(payload.extract()?),
        "uint_list" => Attr::UInt64List(payload.extract()?),
        "float_list" => Attr::Float64List(payload.extract()?),
        "str_list" => Attr::StringList(payload.extract()?),
        "ts_list" => Attr::TimestampList(
            payload
                .extract::<Vec<i64>>()?
                .into_iter()
                .map(TimestampNs)
                .collect(),
        ),
        other => return Err(invalid(format!("unknown attribute tag {other:?}"))),
    })
}

/// A dict of attributes, in insertion order.
pub fn attrs_to_dict(
    py: Python<'_>,
    attrs: impl IntoIterator<Item = (String, Attr)>,
) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in attrs {
        d.set_item(k, attr_to_py(py, &v)?)?;
    }
    Ok(d)
}

/// A fill value of `dtype` from a Python value.
pub fn fill_from_py(dtype: DType, value: &Bound<'_, PyAny>) -> PyResult<FillValue> {
    fn int<T: TryFrom<i128>>(value: &Bound<'_, PyAny>, dtype: DType) -> PyResult<T> {
        let v: i128 = value
            .call_method0("__index__")
            .and_then(|i| i.extract())
            .map_err(|_| invalid(format!("fill value {value} is not an integer")))?;
        T::try_from(v).map_err(|_| invalid(format!("fill value {v} does not fit {dtype}")))
    }
    let wrong = |e: PyErr| {
        invalid(format!(
            "fill value {value} does not suit dtype {dtype}: {e}"
        ))
    };
    Ok(match dtype {
        DType::Bool => FillValue::Bool(value.is_truthy()?),
        DType::Int8 => FillValue::Int8(int(value, dtype)?),
        DType::Int16 => FillValue::Int16(int(value, dtype)?),
        DType::Int32 => FillValue::Int32(int(value, dtype)?),
        DType::Int64 => FillValue::Int64(int(value, dtype)?),
        DType::UInt8 => FillValue::UInt8(int(value, dtype)?),
        DType::UInt16 => FillValue::UInt16(int(value, dtype)?),
        DType::UInt32 => FillValue::UInt32(int(value, dtype)?),
        DType::UInt64 => FillValue::UInt64(int(value, dtype)?),
        DType::Float32 => FillValue::Float32(value.extract::<f64>().map_err(wrong)? as f32),
        DType::Float64 => FillValue::Float64(value.extract().map_err(wrong)?),
        DType::Timestamp => match attr_from_py(value)? {
            Attr::Timestamp(t) => FillValue::Timestamp(t),
            Attr::Int64(v) => FillValue::Timestamp(TimestampNs(v)),
            _ => return Err(invalid(format!("fill value {value} is not a timestamp"))),
        },
        _ => FillValue::String(value.extract().map_err(wrong)?),
    })
}

/// A Python value for a fill value (numpy scalar of the array's type for
/// numbers, `str`, `numpy.datetime64`).
pub fn fill_to_py<'py>(py: Python<'py>, fill: &FillValue) -> PyResult<Bound<'py, PyAny>> {
    let np = py.import("numpy")?;
    let scalar = |name: &str, v: Bound<'py, PyAny>| np.getattr(name)?.call1((v,));
    Ok(match fill {
        FillValue::Bool(v) => scalar("bool_", v.into_pyobject(py)?.to_owned().into_any())?,
        FillValue::Int8(v) => scalar("int8", v.into_pyobject(py)?.into_any())?,
        FillValue::Int16(v) => scalar("int16", v.into_pyobject(py)?.into_any())?,
        FillValue::Int32(v) => scalar("int32", v.into_pyobject(py)?.into_any())?,
        FillValue::Int64(v) => scalar("int64", v.into_pyobject(py)?.into_any())?,
        FillValue::UInt8(v) => scalar("uint8", v.into_pyobject(py)?.into_any())?,
        FillValue::UInt16(v) => scalar("uint16", v.into_pyobject(py)?.into_any())?,
        FillValue::UInt32(v) => scalar("uint32", v.into_pyobject(py)?.into_any())?,
        FillValue::UInt64(v) => scalar("uint64", v.into_pyobject(py)?.into_any())?,
        FillValue::Float32(v) => scalar("float32", v.into_pyobject(py)?.into_any())?,
        FillValue::Float64(v) => scalar("float64", v.into_pyobject(py)?.into_any())?,
        FillValue::String(v) => PyString::new(py, v).into_any(),
        FillValue::Timestamp(t) => datetime64(py, *t)?,
    })
}

/// A Python value for a statistic.
fn stat_to_py<'py>(py: Python<'py>, v: &StatValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        StatValue::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
        StatValue::Int(v) => v.into_pyobject(py)?.into_any(),
        StatValue::UInt(v) => v.into_pyobject(py)?.into_any(),
        StatValue::Float(v) => v.into_pyobject(py)?.into_any(),
        StatValue::Str(v) => PyString::new(py, v).into_any(),
        StatValue::Timestamp(t) => datetime64(py, *t)?,
    })
}

/// `{"min", "max", "null_count", "row_count"}` (min and max `None` when every
/// cell is null).
pub fn stats_to_dict<'py>(py: Python<'py>, s: &ArrayStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let opt = |v: &Option<StatValue>| -> PyResult<Bound<'py, PyAny>> {
        match v {
            Some(v) => stat_to_py(py, v),
            None => Ok(py.None().into_bound(py)),
        }
    };
    d.set_item("min", opt(&s.min)?)?;
    d.set_item("max", opt(&s.max)?)?;
    d.set_item("null_count", s.null_count)?;
    d.set_item("row_count", s.row_count)?;
    Ok(d)
}
