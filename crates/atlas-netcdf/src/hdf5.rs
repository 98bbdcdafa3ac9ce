//! NetCDF-4/HDF5 (and anything else libnetcdf opens) through the `netcdf`
//! crate (feature `netcdf4`). Only the root group is read: a file with
//! subgroups or user-defined types is reported as unsupported.
//!
//! Limits of this route (those of the `netcdf` crate): a `char` attribute is
//! read up to its first NUL and non-UTF-8 bytes are replaced.

use std::path::Path;

use netcdf::types::{FloatType, IntType, NcVariableType};
use netcdf::AttributeValue;

use crate::error::{Error, Result};
use crate::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};

fn lib(path: &Path, e: &netcdf::Error) -> Error {
    Error::Library {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn unsupported(path: &Path, what: String) -> Error {
    Error::Unsupported {
        path: path.to_owned(),
        what,
    }
}

fn attr_value(v: AttributeValue) -> NcValues {
    match v {
        AttributeValue::Uchar(x) => NcValues::UByte(vec![x]),
        AttributeValue::Uchars(x) => NcValues::UByte(x),
        AttributeValue::Schar(x) => NcValues::Byte(vec![x]),
        AttributeValue::Schars(x) => NcValues::Byte(x),
        AttributeValue::Ushort(x) => NcValues::UShort(vec![x]),
        AttributeValue::Ushorts(x) => NcValues::UShort(x),
        AttributeValue::Short(x) => NcValues::Short(vec![x]),
        AttributeValue::Shorts(x) => NcValues::Short(x),
        AttributeValue::Uint(x) => NcValues::UInt(vec![x]),
        AttributeValue::Uints(x) => NcValues::UInt(x),
        AttributeValue::Int(x) => NcValues::Int(vec![x]),
        AttributeValue::Ints(x) => NcValues::Int(x),
        AttributeValue::Ulonglong(x) => NcValues::UInt64(vec![x]),
        AttributeValue::Ulonglongs(x) => NcValues::UInt64(x),
        AttributeValue::Longlong(x) => NcValues::Int64(vec![x]),
        AttributeValue::Longlongs(x) => NcValues::Int64(x),
        AttributeValue::Float(x) => NcValues::Float(vec![x]),
        AttributeValue::Floats(x) => NcValues::Float(x),
        AttributeValue::Double(x) => NcValues::Double(vec![x]),
        AttributeValue::Doubles(x) => NcValues::Double(x),
        AttributeValue::Str(x) => NcValues::Char(x.into_bytes()),
        AttributeValue::Strs(x) => NcValues::String(x),
    }
}

fn attrs<'a>(path: &Path, it: impl Iterator<Item = netcdf::Attribute<'a>>) -> Result<Vec<NcAttr>> {
    it.map(|a| {
        Ok(NcAttr {
            name: a.name().to_owned(),
            value: attr_value(a.value().map_err(|e| lib(path, &e))?),
        })
    })
    .collect()
}

/// Reads a whole file through libnetcdf.
pub(crate) fn read(path: &Path) -> Result<NcFile> {
    let file = netcdf::open(path).map_err(|e| lib(path, &e))?;
    let root = file
        .root()
        .ok_or_else(|| unsupported(path, "a file without a root group".into()))?;
    if let Some(g) = root.groups().next() {
        return Err(unsupported(
            path,
            format!("netcdf-4 groups (found group {:?})", g.name()),
        ));
    }
    let dims: Vec<NcDim> = file
        .dimensions()
        .map(|d| NcDim {
            name: d.name(),
            len: d.len() as u64,
            unlimited: d.is_unlimited(),
        })
        .collect();
    let gattrs = attrs(path, file.attributes())?;
    let mut vars = Vec::new();
    for v in file.variables() {
        let name = v.name();
        let mut vdims = Vec::new();
        for d in v.dimensions() {
            let dn = d.name();
            let i = dims.iter().position(|x| x.name == dn).ok_or_else(|| {
                unsupported(
                    path,
                    format!("variable {name:?} uses dimension {dn:?} of another group"),
                )
            })?;
            vdims.push(i);
        }
        let l = |e: netcdf::Error| lib(path, &e);
        let values = match v.vartype() {
            NcVariableType::Int(IntType::I8) => NcValues::Byte(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::U8) => NcValues::UByte(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::I16) => NcValues::Short(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::U16) => NcValues::UShort(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::I32) => NcValues::Int(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::U32) => NcValues::UInt(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::I64) => NcValues::Int64(v.get_values(..).map_err(l)?),
            NcVariableType::Int(IntType::U64) => NcValues::UInt64(v.get_values(..).map_err(l)?),
            NcVariableType::Float(FloatType::F32) => NcValues::Float(v.get_values(..).map_err(l)?),
            NcVariableType::Float(FloatType::F64) => NcValues::Double(v.get_values(..).map_err(l)?),
            NcVariableType::Char => NcValues::Char(v.get_raw_values(..).map_err(l)?),
            NcVariableType::String => {
                let shape: Vec<usize> = v.dimensions().iter().map(netcdf::Dimension::len).collect();
                let n: usize = shape.iter().product();
                let mut out = Vec::with_capacity(n);
                let mut idx = vec![0usize; shape.len()];
                for _ in 0..n {
                    out.push(v.get_string(idx.as_slice()).map_err(l)?);
                    // Row-major increment.
                    for k in (0..idx.len()).rev() {
                        idx[k] += 1;
                        if idx[k] < shape[k] {
                            break;
                        }
                        idx[k] = 0;
                    }
                }
                NcValues::String(out)
            }
            other => {
                return Err(unsupported(
                    path,
                    format!("variable {name:?} has the user-defined type {other:?}"),
                ))
            }
        };
        vars.push(NcVar {
            attrs: attrs(path, v.attributes())?,
            name,
            dims: vdims,
            values,
        });
    }
    Ok(NcFile {
        format: NcFormat::Netcdf4,
        dims,
        attrs: gattrs,
        vars,
    })
}
