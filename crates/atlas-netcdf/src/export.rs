//! ATLAS → NetCDF: one dataset becomes an [`NcFile`], written as CDF1, CDF2
//! or CDF5. Reserved `_nc_*` attributes written by import restore the exact
//! dimensions and types; datasets made otherwise get the default mapping of
//! `docs/netcdf.md`.

use std::io::Write;
use std::path::Path;

use atlas::{Atlas, Attr, DType, DatasetView, FillValue};
use indexmap::IndexMap;

use crate::classic;
use crate::error::{Error, Result};
use crate::import::{default_attr_type, reserved, CHAR_LATIN1};
use crate::model::{NcAttr, NcDim, NcFile, NcFormat, NcType, NcValues, NcVar};

/// How to export.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    /// The output format. `None`: the dataset's recorded `_nc_format` when it
    /// is a classic one, else CDF1 (classic); CDF2 when offsets need it and
    /// CDF5 when a type needs it.
    pub format: Option<NcFormat>,
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// The format written.
    pub format: NcFormat,
    /// Variables written.
    pub variables: usize,
    /// Bytes of the file.
    pub bytes: u64,
}

fn err(dataset: &str, reason: impl Into<String>) -> Error {
    Error::Export {
        dataset: dataset.to_owned(),
        reason: reason.into(),
    }
}

/// Parses `_nc_attr_types` entries (`"type:name"`) into name → type tag.
fn attr_types(attrs: &IndexMap<String, Attr>) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    if let Some(Attr::StringList(v)) = attrs.get(reserved::ATTR_TYPES) {
        for e in v {
            if let Some((t, n)) = e.split_once(':') {
                out.insert(n.to_owned(), t.to_owned());
            }
        }
    }
    out
}

/// Converts one attribute to NetCDF values of type `t` (exactly, or an error).
pub fn attr_to_nc(a: &Attr, tag: Option<&str>) -> std::result::Result<NcValues, String> {
    let latin1 = tag == Some(CHAR_LATIN1);
    let t = match tag {
        Some(CHAR_LATIN1) => NcType::Char,
        Some(t) => NcType::from_name(t).ok_or_else(|| format!("unknown recorded type {t:?}"))?,
        None => default_attr_type(a),
    };
    // Every value as i128 (integers) or f64 (floats) first, then narrowed.
    let ints: Option<Vec<i128>> = match a {
        Attr::Bool(v) => Some(vec![i128::from(*v)]),
        Attr::BoolList(v) => Some(v.iter().map(|&x| i128::from(x)).collect()),
        Attr::Int64(v) => Some(vec![i128::from(*v)]),
        Attr::Int64List(v) => Some(v.iter().map(|&x| i128::from(x)).collect()),
        Attr::UInt64(v) => Some(vec![i128::from(*v)]),
        Attr::UInt64List(v) => Some(v.iter().map(|&x| i128::from(x)).collect()),
        Attr::Timestamp(v) => Some(vec![i128::from(v.0)]),
        Attr::TimestampList(v) => Some(v.iter().map(|x| i128::from(x.0)).collect()),
        _ => None,
    };
    let floats: Option<Vec<f64>> = match a {
        Attr::Float64(v) => Some(vec![*v]),
        Attr::Float64List(v) => Some(v.clone()),
        _ => ints.as_ref().map(|v| v.iter().map(|&x| x as f64).collect()),
    };
    macro_rules! narrow {
        ($variant:ident, $ty:ty) => {{
            let Some(v) = &ints else {
                return Err(format!("a {} value cannot be stored as {t}", kind(a)));
            };
            let out: std::result::Result<Vec<$ty>, _> =
                v.iter().map(|&x| <$ty>::try_from(x)).collect();
            NcValues::$variant(out.map_err(|_| format!("a value is out of range for {t}"))?)
        }};
    }
    Ok(match t {
        NcType::Byte => narrow!(Byte, i8),
        NcType::Short => narrow!(Short, i16),
        NcType::Int => narrow!(Int, i32),
        NcType::Int64 => narrow!(Int64, i64),
        NcType::UByte => narrow!(UByte, u8),
        NcType::UShort => narrow!(UShort, u16),
        NcType::UInt => narrow!(UInt, u32),
        NcType::UInt64 => narrow!(UInt64, u64),
        NcType::Float => {
            let v = floats.ok_or_else(|| format!("a {} value cannot be float", kind(a)))?;
            let out: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            if v.iter()
                .zip(&out)
                .any(|(x, y)| !x.is_nan() && f64::from(*y).to_bits() != x.to_bits())
            {
                return Err("a value is not exactly representable as float".into());
            }
            NcValues::Float(out)
        }
        NcType::Double => {
            NcValues::Double(floats.ok_or_else(|| format!("a {} value cannot be double", kind(a)))?)
        }
        NcType::Char => match a {
            Attr::String(s) => NcValues::Char(encode_text(s, latin1)?),
            Attr::Timestamp(ts) => NcValues::Char(ts.to_string().into_bytes()),
            _ => return Err(format!("a {} value cannot be char", kind(a))),
        },
        NcType::String => match a {
            Attr::String(s) => NcValues::String(vec![s.clone()]),
            Attr::StringList(v) => NcValues::String(v.clone()),
            _ => return Err(format!("a {} value cannot be string", kind(a))),
        },
    })
}

fn kind(a: &Attr) -> &'static str {
    match a {
        Attr::Bool(_) | Attr::BoolList(_) => "bool",
        Attr::Int64(_) | Attr::Int64List(_) => "int64",
        Attr::UInt64(_) | Attr::UInt64List(_) => "uint64",
        Attr::Float64(_) | Attr::Float64List(_) => "float64",
        Attr::String(_) | Attr::StringList(_) => "string",
        Attr::Timestamp(_) | Attr::TimestampList(_) => "timestamp",
    }
}

fn encode_text(s: &str, latin1: bool) -> std::result::Result<Vec<u8>, String> {
    if latin1 {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("{c:?} is not latin-1")))
            .collect()
    } else {
        Ok(s.as_bytes().to_vec())
    }
}

fn convert_attrs(
    dataset: &str,
    owner: &str,
    attrs: &IndexMap<String, Attr>,
) -> Result<Vec<NcAttr>> {
    let types = attr_types(attrs);
    let mut out = Vec::with_capacity(attrs.len());
    for (k, v) in attrs {
        if k.starts_with(reserved::PREFIX) {
            continue;
        }
        let value = match attr_to_nc(v, types.get(k).map(String::as_str)) {
            // The classic formats have no `string` type: one string is text.
            Ok(NcValues::String(mut one)) if one.len() == 1 => {
                NcValues::Char(one.pop().unwrap_or_default().into_bytes())
            }
            Ok(NcValues::String(_)) => Err(err(
                dataset,
                format!("{owner} attribute {k:?}: a list of strings has no netcdf classic type"),
            ))?,
            r => r.map_err(|e| err(dataset, format!("{owner} attribute {k:?}: {e}")))?,
        };
        out.push(NcAttr {
            name: k.clone(),
            value,
        });
    }
    Ok(out)
}

fn flat<T: Clone>(a: &ndarray::ArrayD<T>) -> Vec<T> {
    a.as_slice()
        .map_or_else(|| a.iter().cloned().collect(), <[T]>::to_vec)
}

async fn read_values(ds: &DatasetView, name: &str, dtype: DType) -> Result<Values> {
    macro_rules! rd {
        ($t:ty) => {
            flat(
                &ds.read_array::<$t>(name, vec![], vec![])
                    .await?
                    .ok_or_else(|| err(ds.name(), format!("array {name:?} vanished")))?,
            )
        };
    }
    Ok(match dtype {
        DType::Bool => Values::Nc(NcValues::Byte(
            rd!(bool).into_iter().map(i8::from).collect(),
        )),
        DType::Int8 => Values::Nc(NcValues::Byte(rd!(i8))),
        DType::Int16 => Values::Nc(NcValues::Short(rd!(i16))),
        DType::Int32 => Values::Nc(NcValues::Int(rd!(i32))),
        DType::Int64 => Values::Nc(NcValues::Int64(rd!(i64))),
        DType::UInt8 => Values::Nc(NcValues::UByte(rd!(u8))),
        DType::UInt16 => Values::Nc(NcValues::UShort(rd!(u16))),
        DType::UInt32 => Values::Nc(NcValues::UInt(rd!(u32))),
        DType::UInt64 => Values::Nc(NcValues::UInt64(rd!(u64))),
        DType::Float32 => Values::Nc(NcValues::Float(rd!(f32))),
        DType::Float64 => Values::Nc(NcValues::Double(rd!(f64))),
        DType::String => Values::Strings(rd!(String)),
        DType::Timestamp => Values::Nc(NcValues::Int64(
            rd!(atlas::TimestampNs).into_iter().map(|t| t.0).collect(),
        )),
        other => return Err(err(ds.name(), format!("dtype {other} has no netcdf type"))),
    })
}

enum Values {
    Nc(NcValues),
    Strings(Vec<String>),
}

/// The file-wide dimension table being built.
struct Dims {
    dims: Vec<NcDim>,
}

impl Dims {
    fn find(&self, name: &str) -> Option<usize> {
        self.dims.iter().position(|d| d.name == name)
    }

    /// The index of `name` with length `len`, adding it if new.
    fn get(&mut self, dataset: &str, name: &str, len: u64) -> Result<usize> {
        if let Some(i) = self.find(name) {
            if self.dims[i].len != len {
                return Err(err(
                    dataset,
                    format!(
                        "dimension {name:?} has length {} and {len} in different arrays",
                        self.dims[i].len
                    ),
                ));
            }
            return Ok(i);
        }
        self.dims.push(NcDim {
            name: name.to_owned(),
            len,
            unlimited: false,
        });
        Ok(self.dims.len() - 1)
    }
}

/// Builds the NetCDF model of one dataset.
#[allow(clippy::too_many_lines)]
pub async fn dataset_to_nc(store: &Atlas, dataset: &str) -> Result<NcFile> {
    let ds = store.open_dataset(dataset).await?;
    let gattrs = ds.attributes();
    let format = match gattrs.get(reserved::FORMAT) {
        Some(Attr::String(f)) => NcFormat::from_name(f).unwrap_or(NcFormat::Classic),
        _ => NcFormat::Classic,
    };
    let mut dims = Dims { dims: Vec::new() };
    if let (Some(Attr::StringList(names)), Some(Attr::UInt64List(lens))) =
        (gattrs.get(reserved::DIMS), gattrs.get(reserved::DIM_LENS))
    {
        let unlimited: Vec<&String> = match gattrs.get(reserved::UNLIMITED) {
            Some(Attr::StringList(u)) => u.iter().collect(),
            _ => Vec::new(),
        };
        for (n, &l) in names.iter().zip(lens) {
            dims.dims.push(NcDim {
                name: n.clone(),
                len: l,
                unlimited: unlimited.contains(&n),
            });
        }
    }
    let mut vars = Vec::new();
    for name in ds.list_arrays()? {
        let schema = ds
            .array_schema(&name)?
            .ok_or_else(|| err(dataset, format!("array {name:?} vanished")))?;
        let attrs = ds.array_attributes(&name)?;
        let tag = match attrs.get(reserved::TYPE) {
            Some(Attr::String(t)) => Some(t.as_str()),
            _ => None,
        };
        let mut var_dims = Vec::with_capacity(schema.rank() + 1);
        for (d, &len) in schema.dims.iter().zip(&schema.shape) {
            var_dims.push(dims.get(dataset, d, len)?);
        }
        let mut nc_attrs = convert_attrs(dataset, &format!("array {name:?}"), &attrs)?;
        let values = match read_values(&ds, &name, schema.dtype).await? {
            Values::Nc(v) => {
                let v = retype(v, tag).map_err(|e| err(dataset, format!("array {name:?}: {e}")))?;
                if tag.is_none() {
                    add_fill_attr(&mut nc_attrs, schema.fill_value.as_ref(), &v);
                }
                v
            }
            Values::Strings(strings) => {
                // The classic formats have no `string` type: NetCDF-4 strings
                // become char arrays too (with a new `<name>_strlen` dimension).
                {
                    let latin1 = tag == Some(CHAR_LATIN1);
                    let mut encoded = Vec::with_capacity(strings.len());
                    for s in &strings {
                        encoded.push(
                            encode_text(s, latin1)
                                .map_err(|e| err(dataset, format!("array {name:?}: {e}")))?,
                        );
                    }
                    let char_dim = match attrs.get(reserved::CHAR_DIM) {
                        Some(Attr::String(d)) => Some(d.clone()),
                        _ if matches!(tag, Some("char" | CHAR_LATIN1)) => None,
                        _ => Some(format!("{name}_strlen")),
                    };
                    let longest = encoded.iter().map(Vec::len).max().unwrap_or(0) as u64;
                    let strlen = match &char_dim {
                        Some(d) => {
                            let len = dims.find(d).map_or(longest.max(1), |i| dims.dims[i].len);
                            var_dims.push(dims.get(dataset, d, len)?);
                            len
                        }
                        None => 1,
                    };
                    if longest > strlen {
                        return Err(err(
                            dataset,
                            format!(
                                "array {name:?} holds a string of {longest} bytes, \
                                 longer than its char dimension ({strlen})"
                            ),
                        ));
                    }
                    let mut bytes = Vec::with_capacity(encoded.len() * strlen as usize);
                    for e in encoded {
                        let pad = strlen as usize - e.len();
                        bytes.extend_from_slice(&e);
                        bytes.extend(std::iter::repeat_n(0u8, pad));
                    }
                    if tag.is_none() {
                        if let Some(FillValue::String(f)) = &schema.fill_value {
                            if let Some(&c) = f.as_bytes().first() {
                                nc_attrs.push(NcAttr {
                                    name: "_FillValue".into(),
                                    value: NcValues::Char(vec![c]),
                                });
                            }
                        }
                    }
                    NcValues::Char(bytes)
                }
            }
        };
        vars.push(NcVar {
            name,
            dims: var_dims,
            attrs: nc_attrs,
            values,
        });
    }
    // Record variables: the unlimited dimension must come first.
    for v in &vars {
        for (i, &d) in v.dims.iter().enumerate() {
            if dims.dims[d].unlimited && i > 0 {
                return Err(err(
                    dataset,
                    format!(
                        "array {:?} uses the unlimited dimension {:?} other than first",
                        v.name, dims.dims[d].name
                    ),
                ));
            }
        }
    }
    Ok(NcFile {
        format,
        dims: dims.dims,
        attrs: convert_attrs(dataset, "global", &gattrs)?,
        vars,
    })
}

/// Applies a recorded variable type to values read with the array's dtype
/// (only conversions that are exact: the tag came from the same file).
fn retype(v: NcValues, tag: Option<&str>) -> std::result::Result<NcValues, String> {
    let Some(tag) = tag else { return Ok(v) };
    let Some(t) = NcType::from_name(tag) else {
        return Err(format!("unknown recorded type {tag:?}"));
    };
    if t == v.nc_type() {
        return Ok(v);
    }
    Err(format!(
        "recorded type {t} does not match the stored {}",
        v.nc_type()
    ))
}

/// For arrays not imported from NetCDF: the schema's fill value as `_FillValue`.
fn add_fill_attr(attrs: &mut Vec<NcAttr>, fill: Option<&FillValue>, v: &NcValues) {
    if attrs.iter().any(|a| a.name == "_FillValue") {
        return;
    }
    let value = match (fill, v) {
        (Some(FillValue::Int8(f)), NcValues::Byte(_)) => NcValues::Byte(vec![*f]),
        (Some(FillValue::Bool(f)), NcValues::Byte(_)) => NcValues::Byte(vec![i8::from(*f)]),
        (Some(FillValue::Int16(f)), _) => NcValues::Short(vec![*f]),
        (Some(FillValue::Int32(f)), _) => NcValues::Int(vec![*f]),
        (Some(FillValue::Int64(f)), _) => NcValues::Int64(vec![*f]),
        (Some(FillValue::Timestamp(f)), _) => NcValues::Int64(vec![f.0]),
        (Some(FillValue::UInt8(f)), _) => NcValues::UByte(vec![*f]),
        (Some(FillValue::UInt16(f)), _) => NcValues::UShort(vec![*f]),
        (Some(FillValue::UInt32(f)), _) => NcValues::UInt(vec![*f]),
        (Some(FillValue::UInt64(f)), _) => NcValues::UInt64(vec![*f]),
        (Some(FillValue::Float32(f)), _) => NcValues::Float(vec![*f]),
        (Some(FillValue::Float64(f)), _) => NcValues::Double(vec![*f]),
        _ => return,
    };
    attrs.push(NcAttr {
        name: "_FillValue".into(),
        value,
    });
}

/// The format a model needs: the wanted one, raised to CDF5 when a type
/// needs it (an explicit request is never changed: writing then fails).
fn choose_format(nc: &NcFile, requested: Option<NcFormat>) -> NcFormat {
    if let Some(f) = requested {
        return f;
    }
    let base = match nc.format {
        NcFormat::Classic | NcFormat::Offset64 | NcFormat::Cdf5 => nc.format,
        NcFormat::Netcdf4 => NcFormat::Classic,
    };
    let needs_cdf5 = nc.vars.iter().any(|v| !v.nc_type().is_classic())
        || nc
            .vars
            .iter()
            .flat_map(|v| &v.attrs)
            .chain(&nc.attrs)
            .any(|a| !a.value.nc_type().is_classic());
    if needs_cdf5 {
        NcFormat::Cdf5
    } else {
        base
    }
}

/// Writes a model to `out` as a classic-family file; with `format = None` the
/// format is chosen as [`ExportOptions::format`] describes.
pub fn write_nc(
    nc: &NcFile,
    format: Option<NcFormat>,
    out: &mut impl Write,
) -> std::result::Result<NcFormat, String> {
    let mut f = choose_format(nc, format);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match classic::write::write(nc, f, &mut buf) {
            Ok(()) => break,
            // Offsets beyond 2 GiB: retry as CDF2, unless a format was asked for.
            Err(classic::write::WriteError::Invalid(m))
                if format.is_none() && f == NcFormat::Classic && m.contains("64bit_offset") =>
            {
                f = NcFormat::Offset64;
            }
            Err(classic::write::WriteError::Invalid(m)) => return Err(m),
            Err(classic::write::WriteError::Io(e)) => return Err(e.to_string()),
        }
    }
    out.write_all(&buf).map_err(|e| e.to_string())?;
    Ok(f)
}

/// Exports one dataset to a NetCDF file at `out` (written to a temporary
/// file beside it, then renamed, so a failed export leaves no partial file).
pub async fn export_dataset(
    store: &Atlas,
    dataset: &str,
    out: &Path,
    opts: ExportOptions,
) -> Result<ExportSummary> {
    let nc = dataset_to_nc(store, dataset).await?;
    let mut bytes = Vec::new();
    let format = write_nc(&nc, opts.format, &mut bytes).map_err(|e| err(dataset, e))?;
    let io = |source| Error::Io {
        path: out.to_owned(),
        source,
    };
    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(ExportSummary {
        format,
        variables: nc.vars.len(),
        bytes: bytes.len() as u64,
    })
}
