//! NetCDF-4/HDF5 (and anything else libnetcdf opens) through the `netcdf`
//! crate (feature `netcdf4`). Only the root group is read: a file with
//! subgroups, or with variables or attributes of user-defined types
//! (compound, opaque, enum, vlen), is reported as unsupported, and the error
//! names every such group, variable and attribute.
//!
//! Limits of this route (those of the `netcdf` crate): a `char` attribute is
//! read up to its first NUL and non-UTF-8 bytes are replaced.

use std::cell::Cell;
use std::path::Path;

use netcdf::types::{FloatType, IntType, NcVariableType};
use netcdf::AttributeValue;

use crate::error::{Error, Result};
use crate::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};

/// libnetcdf's `NC_EHDFERR`: an error inside HDF5.
const NC_EHDFERR: i32 = -101;

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

/// The kind and name of a user-defined type; `None` for the types ATLAS imports.
fn describe_type(t: &NcVariableType) -> Option<String> {
    match t {
        NcVariableType::Compound(c) => Some(format!("compound type {:?}", c.name)),
        NcVariableType::Opaque(o) => Some(format!("opaque type {:?}", o.name)),
        NcVariableType::Enum(e) => Some(format!("enum type {:?}", e.name)),
        NcVariableType::Vlen(v) => Some(format!("vlen type {:?}", v.name)),
        NcVariableType::String
        | NcVariableType::Int(_)
        | NcVariableType::Float(_)
        | NcVariableType::Char => None,
    }
}

/// Appends every group below `group` (depth first, as `/a`, `/a/b`) with
/// the variables it holds.
fn list_groups(group: &netcdf::Group<'_>, parent: &str, out: &mut Vec<String>) {
    for g in group.groups() {
        let path = format!("{parent}/{}", g.name());
        let vars: Vec<String> = g.variables().map(|v| format!("{:?}", v.name())).collect();
        out.push(if vars.is_empty() {
            format!("group {path:?}")
        } else {
            format!("group {path:?} (variables {})", vars.join(", "))
        });
        list_groups(&g, &path, out);
    }
}

/// Appends the attributes among `it` whose type libnetcdf's typed getters
/// do not know (user-defined types).
fn list_typed_attrs<'a>(
    owner: &str,
    it: impl Iterator<Item = netcdf::Attribute<'a>>,
    out: &mut Vec<String>,
) {
    for a in it {
        if let Err(netcdf::Error::TypeUnknown(t)) = a.value() {
            out.push(format!(
                "{owner} attribute {:?} (user-defined type id {t})",
                a.name()
            ));
        }
    }
}

/// Everything in `file` that ATLAS does not import: subgroups (with their
/// variables), root variables and attributes of user-defined types.
fn not_importable(file: &netcdf::File, root: &netcdf::Group<'_>) -> Vec<String> {
    let mut out = Vec::new();
    list_groups(root, "", &mut out);
    list_typed_attrs("global", file.attributes(), &mut out);
    for v in file.variables() {
        if let Some(t) = describe_type(&v.vartype()) {
            out.push(format!("variable {:?} of {t}", v.name()));
        }
        list_typed_attrs(
            &format!("variable {:?}", v.name()),
            v.attributes(),
            &mut out,
        );
    }
    out
}

/// Turns off HDF5's automatic printing of error stacks for the calling
/// thread, once per thread.
///
/// libnetcdf expects HDF5 calls to fail quietly (4.9.0 probes every variable
/// for the `_Quantize*` attributes with `H5Aopen_by_name`), and turns the
/// printing off when it initialises; but a thread-safe HDF5 keeps that
/// setting per thread, so without this every decoder thread but the first
/// printed thousands of `HDF5-DIAG` lines for ordinary CMIP6 files. Errors
/// are still returned to libnetcdf and from it to us.
#[allow(unsafe_code)]
fn quiet_hdf5_errors() {
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    QUIET.with(|quiet| {
        if !quiet.get() {
            let _lock = hdf5_sys::LOCK.lock();
            // SAFETY: H5Eset_auto2 with the default stack, no callback and no
            // client data is valid at any time (it initialises HDF5 when
            // needed); HDF5 calls are serialised by the lock `netcdf` uses.
            unsafe {
                hdf5_sys::h5e::H5Eset_auto2(hdf5_sys::h5e::H5E_DEFAULT, None, std::ptr::null_mut());
            }
            quiet.set(true);
        }
    });
}

/// Reads a whole file through libnetcdf.
pub(crate) fn read(path: &Path) -> Result<NcFile> {
    quiet_hdf5_errors();
    let file = netcdf::open(path).map_err(|e| match e {
        // HDF5 refuses to open a file another process holds an exclusive
        // lock on (a program writing it, or a child that inherited the
        // writer's descriptor), and libnetcdf reports only "HDF error".
        netcdf::Error::Netcdf(NC_EHDFERR) => Error::Library {
            path: path.to_owned(),
            message: format!(
                "{e} (if another program has the file open for writing, HDF5's file \
                 lock refuses readers: wait for it, or set HDF5_USE_FILE_LOCKING=FALSE \
                 to read it anyway)"
            ),
        },
        e => lib(path, &e),
    })?;
    let root = file
        .root()
        .ok_or_else(|| unsupported(path, "a file without a root group".into()))?;
    let rejected = not_importable(&file, &root);
    if !rejected.is_empty() {
        return Err(unsupported(
            path,
            format!(
                "netcdf-4 features ATLAS does not import: {}",
                rejected.join("; ")
            ),
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
                // Rejected by `not_importable` above.
                return Err(unsupported(
                    path,
                    format!(
                        "variable {name:?} of {}",
                        describe_type(&other).unwrap_or_default()
                    ),
                ));
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
