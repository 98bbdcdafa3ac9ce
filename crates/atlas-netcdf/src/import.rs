//! NetCDF → ATLAS: turning an [`NcFile`] into a [`DatasetPlan`] (pure,
//! validated, no store access) and writing a plan into a store.
//!
//! The rules are documented in `docs/netcdf.md`; the reserved attribute
//! names are the constants of [`reserved`].

use std::path::Path;
use std::sync::Arc;

use atlas::{ArraySchema, Atlas, Attr, DType, FillValue, NewArray, NewDataset};
use indexmap::IndexMap;
use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};
use crate::model::{default_fill, NcAttr, NcFile, NcType, NcValues, NcVar};

/// Names of the reserved attributes that record what ATLAS's types cannot
/// (all start with `_nc_`; export never writes them to NetCDF).
pub mod reserved {
    /// Dataset: the source format (`classic`, `64bit_offset`, `cdf5`, `netcdf4`).
    pub const FORMAT: &str = "_nc_format";
    /// Dataset: every dimension's name, in file order.
    pub const DIMS: &str = "_nc_dims";
    /// Dataset: every dimension's length, parallel to [`DIMS`].
    pub const DIM_LENS: &str = "_nc_dim_lens";
    /// Dataset: names of the unlimited dimensions (absent when none).
    pub const UNLIMITED: &str = "_nc_unlimited";
    /// Array: the variable's NetCDF type (`float`, `char`, …, or `char_latin1`).
    pub const TYPE: &str = "_nc_type";
    /// Array: the name of the trailing `char` dimension folded into strings.
    pub const CHAR_DIM: &str = "_nc_char_dim";
    /// Dataset and array: `"type:name"` for every attribute whose NetCDF type
    /// is not the one export would choose by default.
    pub const ATTR_TYPES: &str = "_nc_attr_types";
    /// Prefix of every reserved name.
    pub const PREFIX: &str = "_nc_";
}

/// The pseudo type recorded for `char` data that is not UTF-8 (decoded as ISO-8859-1).
pub const CHAR_LATIN1: &str = "char_latin1";

/// Default chunk size target: a variable up to this size is one chunk.
pub const DEFAULT_CHUNK_BYTES: u64 = 1 << 20;

/// How files become datasets.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Also trim trailing spaces from strings made of `char` arrays (by
    /// default only trailing NULs are trimmed, which keeps export exact).
    pub trim_spaces: bool,
    /// Variables up to this many bytes are stored as one chunk; larger ones
    /// are split along their leading dimension(s).
    pub chunk_bytes: u64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            trim_spaces: false,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        }
    }
}

/// Typed values of one array, ready to write (ATLAS's own type).
pub use atlas::ArrayData;

/// One array of a [`DatasetPlan`].
#[derive(Clone, Debug)]
pub struct ArrayPlan {
    /// Array name (the variable's name).
    pub name: String,
    /// Validated schema.
    pub schema: ArraySchema,
    /// Attributes, reserved ones included.
    pub attrs: IndexMap<String, Attr>,
    /// Values.
    pub data: ArrayData,
}

/// Everything one file becomes, validated against ATLAS's rules before the
/// store is touched.
#[derive(Clone, Debug)]
pub struct DatasetPlan {
    /// Dataset name.
    pub name: String,
    /// Dataset attributes, reserved ones included.
    pub attrs: IndexMap<String, Attr>,
    /// Arrays in file order.
    pub arrays: Vec<ArrayPlan>,
}

impl DatasetPlan {
    /// Bytes of cell data (strings count their UTF-8 bytes).
    pub fn data_bytes(&self) -> u64 {
        self.arrays.iter().map(|a| a.data.data_bytes()).sum()
    }
}

/// The NetCDF type export chooses for an attribute value when no type is
/// recorded for it.
pub fn default_attr_type(a: &Attr) -> NcType {
    let int_fits = |v: i64| i32::try_from(v).is_ok();
    match a {
        Attr::Bool(_) | Attr::BoolList(_) => NcType::Byte,
        Attr::Int64(v) if int_fits(*v) => NcType::Int,
        Attr::Int64List(v) if v.iter().all(|&x| int_fits(x)) => NcType::Int,
        Attr::Int64(_) | Attr::Int64List(_) | Attr::Timestamp(_) | Attr::TimestampList(_) => {
            NcType::Int64
        }
        Attr::UInt64(v) if i32::try_from(*v).is_ok() => NcType::Int,
        Attr::UInt64List(v) if v.iter().all(|&x| i32::try_from(x).is_ok()) => NcType::Int,
        Attr::UInt64(_) | Attr::UInt64List(_) => NcType::UInt64,
        Attr::Float64(_) | Attr::Float64List(_) => NcType::Double,
        Attr::String(_) => NcType::Char,
        Attr::StringList(_) => NcType::String,
    }
}

/// Decodes NetCDF text: UTF-8 when valid, else ISO-8859-1 (`latin1` = true).
pub(crate) fn decode_text(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (bytes.iter().map(|&b| char::from(b)).collect(), true),
    }
}

/// An attribute's value as an [`Attr`] and the type tag to record (if any).
pub fn attr_from_nc(a: &NcAttr) -> (Attr, Option<String>) {
    fn ints<T: Copy + Into<i64>>(v: &[T]) -> Attr {
        match v {
            [x] => Attr::Int64((*x).into()),
            _ => Attr::Int64List(v.iter().map(|&x| x.into()).collect()),
        }
    }
    fn uints<T: Copy + Into<u64>>(v: &[T]) -> Attr {
        match v {
            [x] => Attr::UInt64((*x).into()),
            _ => Attr::UInt64List(v.iter().map(|&x| x.into()).collect()),
        }
    }
    fn floats<T: Copy + Into<f64>>(v: &[T]) -> Attr {
        match v {
            [x] => Attr::Float64((*x).into()),
            _ => Attr::Float64List(v.iter().map(|&x| x.into()).collect()),
        }
    }
    let mut latin1 = false;
    let attr = match &a.value {
        NcValues::Byte(v) => ints(v),
        NcValues::Short(v) => ints(v),
        NcValues::Int(v) => ints(v),
        NcValues::Int64(v) => ints(v),
        NcValues::UByte(v) => uints(v),
        NcValues::UShort(v) => uints(v),
        NcValues::UInt(v) => uints(v),
        NcValues::UInt64(v) => uints(v),
        NcValues::Float(v) => floats(v),
        NcValues::Double(v) => floats(v),
        NcValues::Char(v) => {
            let (s, l) = decode_text(v);
            latin1 = l;
            Attr::String(s)
        }
        NcValues::String(v) if v.len() == 1 => Attr::String(v[0].clone()),
        NcValues::String(v) => Attr::StringList(v.clone()),
    };
    let t = a.value.nc_type();
    let tag = if latin1 {
        Some(CHAR_LATIN1.to_owned())
    } else if default_attr_type(&attr) == t {
        None
    } else {
        Some(t.name().to_owned())
    };
    (attr, tag)
}

/// Converts a list of NetCDF attributes, returning the map and the
/// `_nc_attr_types` entries.
fn convert_attrs(
    attrs: &[NcAttr],
    path: &Path,
    owner: &dyn Fn() -> String,
) -> Result<(IndexMap<String, Attr>, Vec<String>)> {
    let mut map = IndexMap::with_capacity(attrs.len() + 3);
    let mut types = Vec::new();
    for a in attrs {
        if a.name.starts_with(reserved::PREFIX) {
            return Err(mapping(
                path,
                format!(
                    "{} attribute {:?} uses the reserved prefix {:?}",
                    owner(),
                    a.name,
                    reserved::PREFIX
                ),
            ));
        }
        atlas_core::validate_attribute_name(&a.name)
            .map_err(|e| mapping(path, format!("{}: {e}", owner())))?;
        let (attr, tag) = attr_from_nc(a);
        if let Some(t) = tag {
            types.push(format!("{t}:{}", a.name));
        }
        map.insert(a.name.clone(), attr);
    }
    Ok((map, types))
}

fn mapping(path: &Path, reason: impl Into<String>) -> Error {
    Error::Mapping {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Chunk shape for an array: whole when it fits `target` bytes, else the
/// leading dimension is split (and, if one step of it is still too large, the
/// next one, and so on).
pub fn chunk_shape(shape: &[u64], cell_bytes: u64, target: u64) -> Vec<u64> {
    let mut chunk: Vec<u64> = shape.iter().map(|&s| s.max(1)).collect();
    let bytes = |c: &[u64]| {
        c.iter()
            .fold(cell_bytes.max(1), |a, &x| a.saturating_mul(x))
    };
    for i in 0..chunk.len() {
        if bytes(&chunk) <= target {
            break;
        }
        let inner = bytes(&chunk[i + 1..]);
        chunk[i] = (target / inner).clamp(1, chunk[i]);
    }
    chunk
}

/// Trims a `char` string as the import rule says: trailing NULs, and trailing
/// spaces too when `trim_spaces`.
fn trim_char(bytes: &[u8], trim_spaces: bool) -> &[u8] {
    let mut end = bytes.len();
    while end > 0 && (bytes[end - 1] == 0 || (trim_spaces && bytes[end - 1] == b' ')) {
        end -= 1;
    }
    &bytes[..end]
}

fn fill_of(var: &NcVar) -> Option<&NcValues> {
    var.attr("_FillValue")
        .map(|a| &a.value)
        .filter(|v| !v.is_empty())
}

/// The first value of a `_FillValue` attribute as `T`, when it converts exactly.
macro_rules! fill_num {
    ($fill:expr, $t:ty, $default:expr) => {{
        let v: Option<$t> = match $fill {
            None => Some($default),
            Some(NcValues::Byte(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::Short(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::Int(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::Int64(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::UByte(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::UShort(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::UInt(v)) => <$t>::try_from(v[0]).ok(),
            Some(NcValues::UInt64(v)) => <$t>::try_from(v[0]).ok(),
            _ => None,
        };
        v
    }};
}

fn float_fill(fill: Option<&NcValues>, is_f32: bool) -> Option<FillValue> {
    let v = match fill {
        None => {
            return Some(if is_f32 {
                FillValue::Float32(default_fill::FLOAT)
            } else {
                FillValue::Float64(default_fill::DOUBLE)
            })
        }
        Some(NcValues::Float(v)) => f64::from(v[0]),
        Some(NcValues::Double(v)) => v[0],
        _ => return None,
    };
    if is_f32 {
        let f = v as f32;
        (f64::from(f).to_bits() == v.to_bits() || v.is_nan()).then_some(FillValue::Float32(f))
    } else {
        Some(FillValue::Float64(v))
    }
}

fn shaped<T>(shape: &[u64], v: Vec<T>) -> ArrayD<T> {
    let shape: Vec<usize> = shape.iter().map(|&s| s as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), v).expect("value count checked against the shape")
}

/// Builds the plan for one file. Pure: validates names and shapes, converts
/// every variable; the store is not touched.
pub fn plan(nc: &NcFile, name: &str, opts: &ImportOptions, path: &Path) -> Result<DatasetPlan> {
    let (attrs, arrays) = plan_with(nc.clone(), name, opts, path, &mut Memo::default())?;
    Ok(DatasetPlan {
        name: name.to_owned(),
        attrs,
        arrays: arrays
            .into_iter()
            .map(|a| ArrayPlan {
                name: a.name,
                schema: a.schema,
                attrs: Arc::try_unwrap(a.attrs).unwrap_or_else(|shared| (*shared).clone()),
                data: a.data,
            })
            .collect(),
    })
}

/// An array of a plan, its attribute set shared through a [`Memo`].
struct Planned {
    name: String,
    schema: ArraySchema,
    attrs: Arc<IndexMap<String, Attr>>,
    data: ArrayData,
}

/// [`plan`], with each variable's attribute set taken from `memo` when the
/// previous file's variable of that name had the same attributes: the
/// dataset's attributes and its arrays, which take the file's values (not
/// a copy).
#[allow(clippy::too_many_lines)]
fn plan_with(
    mut nc: NcFile,
    name: &str,
    opts: &ImportOptions,
    path: &Path,
    memo: &mut Memo,
) -> Result<(IndexMap<String, Attr>, Vec<Planned>)> {
    atlas_core::validate_dataset_name(name).map_err(|e| mapping(path, e.to_string()))?;
    let (mut attrs, types) = convert_attrs(&nc.attrs, path, &|| "global".to_owned())?;
    attrs.insert(
        reserved::FORMAT.into(),
        Attr::String(nc.format.name().into()),
    );
    attrs.insert(
        reserved::DIMS.into(),
        Attr::StringList(nc.dims.iter().map(|d| d.name.clone()).collect()),
    );
    attrs.insert(
        reserved::DIM_LENS.into(),
        Attr::UInt64List(nc.dims.iter().map(|d| d.len).collect()),
    );
    let unlimited: Vec<String> = nc
        .dims
        .iter()
        .filter(|d| d.unlimited)
        .map(|d| d.name.clone())
        .collect();
    if !unlimited.is_empty() {
        attrs.insert(reserved::UNLIMITED.into(), Attr::StringList(unlimited));
    }
    if !types.is_empty() {
        attrs.insert(reserved::ATTR_TYPES.into(), Attr::StringList(types));
    }

    let mut arrays = Vec::with_capacity(nc.vars.len());
    let vars = std::mem::take(&mut nc.vars);
    for mut var in vars {
        // The values move into the plan; the rest is read in place.
        let values = std::mem::replace(&mut var.values, NcValues::Char(Vec::new()));
        let var = &var;
        atlas_core::validate_array_name(&var.name).map_err(|e| mapping(path, e.to_string()))?;
        // Named in errors only (formatting it for every variable showed in
        // profiles).
        let owner = || format!("variable {:?}", var.name);
        // Converted (and checked) here unless the same attributes were
        // converted for the previous file's variable of this name.
        let remembered = memo
            .get(&var.name)
            .filter(|m| same_attrs(&m.raw, &var.attrs));
        let converted = match remembered {
            Some(_) => None,
            None => Some(convert_attrs(&var.attrs, path, &owner)?),
        };
        let mut char_dim = None;
        let mut shape = nc.shape(var);
        let mut dims: Vec<String> = var.dims.iter().map(|&d| nc.dims[d].name.clone()).collect();
        let n: u64 = shape.iter().product();
        if n != values.len() as u64 {
            return Err(mapping(
                path,
                format!(
                    "{} has {} values for shape {shape:?}",
                    owner(),
                    values.len()
                ),
            ));
        }
        let t = values.nc_type();
        let mut type_tag = t.name().to_owned();
        let fill = fill_of(var);
        let mismatch = || {
            mapping(
                path,
                format!(
                    "{}: _FillValue does not convert to the variable's type",
                    owner()
                ),
            )
        };
        let (dtype, data, fill_value, cell_bytes) = match values {
            NcValues::Byte(v) => {
                let f = fill_num!(fill, i8, default_fill::BYTE).ok_or_else(mismatch)?;
                (
                    DType::Int8,
                    ArrayData::I8(shaped(&shape, v)),
                    FillValue::Int8(f),
                    1,
                )
            }
            NcValues::Short(v) => {
                let f = fill_num!(fill, i16, default_fill::SHORT).ok_or_else(mismatch)?;
                (
                    DType::Int16,
                    ArrayData::I16(shaped(&shape, v)),
                    FillValue::Int16(f),
                    2,
                )
            }
            NcValues::Int(v) => {
                let f = fill_num!(fill, i32, default_fill::INT).ok_or_else(mismatch)?;
                (
                    DType::Int32,
                    ArrayData::I32(shaped(&shape, v)),
                    FillValue::Int32(f),
                    4,
                )
            }
            NcValues::Int64(v) => {
                let f = fill_num!(fill, i64, default_fill::INT64).ok_or_else(mismatch)?;
                (
                    DType::Int64,
                    ArrayData::I64(shaped(&shape, v)),
                    FillValue::Int64(f),
                    8,
                )
            }
            NcValues::UByte(v) => {
                let f = fill_num!(fill, u8, default_fill::UBYTE).ok_or_else(mismatch)?;
                (
                    DType::UInt8,
                    ArrayData::U8(shaped(&shape, v)),
                    FillValue::UInt8(f),
                    1,
                )
            }
            NcValues::UShort(v) => {
                let f = fill_num!(fill, u16, default_fill::USHORT).ok_or_else(mismatch)?;
                (
                    DType::UInt16,
                    ArrayData::U16(shaped(&shape, v)),
                    FillValue::UInt16(f),
                    2,
                )
            }
            NcValues::UInt(v) => {
                let f = fill_num!(fill, u32, default_fill::UINT).ok_or_else(mismatch)?;
                (
                    DType::UInt32,
                    ArrayData::U32(shaped(&shape, v)),
                    FillValue::UInt32(f),
                    4,
                )
            }
            NcValues::UInt64(v) => {
                let f = fill_num!(fill, u64, default_fill::UINT64).ok_or_else(mismatch)?;
                (
                    DType::UInt64,
                    ArrayData::U64(shaped(&shape, v)),
                    FillValue::UInt64(f),
                    8,
                )
            }
            NcValues::Float(v) => (
                DType::Float32,
                ArrayData::F32(shaped(&shape, v)),
                float_fill(fill, true).ok_or_else(mismatch)?,
                4,
            ),
            NcValues::Double(v) => (
                DType::Float64,
                ArrayData::F64(shaped(&shape, v)),
                float_fill(fill, false).ok_or_else(mismatch)?,
                8,
            ),
            NcValues::String(v) => {
                let f = match fill {
                    None => String::new(),
                    Some(NcValues::String(f)) => f[0].clone(),
                    Some(NcValues::Char(f)) => decode_text(trim_char(f, false)).0,
                    Some(_) => return Err(mismatch()),
                };
                let width = v.iter().map(String::len).max().unwrap_or(1).max(1) as u64;
                (
                    DType::String,
                    ArrayData::Str(shaped(&shape, v)),
                    FillValue::String(f),
                    width,
                )
            }
            NcValues::Char(bytes) => {
                // A trailing char dimension folds into strings; a scalar char is
                // a one-character string.
                let strlen = if let Some(last) = dims.pop() {
                    char_dim = Some(last);
                    shape.pop().unwrap_or(1)
                } else {
                    1
                } as usize;
                let cells = shape.iter().product::<u64>() as usize;
                let trim = |s| trim_char(s, opts.trim_spaces);
                // ASCII text (nearly all of it) is checked once as a whole,
                // and each string is a slice of it: checking and converting
                // every string on its own was a tenth of an Argo import.
                let ascii = if bytes.is_ascii() {
                    std::str::from_utf8(&bytes).ok()
                } else {
                    None
                };
                let latin1 = ascii.is_none()
                    && strlen > 0
                    && bytes
                        .chunks(strlen)
                        .any(|s| std::str::from_utf8(trim(s)).is_err());
                let text = |s: &[u8]| -> String {
                    if latin1 {
                        s.iter().map(|&b| char::from(b)).collect()
                    } else {
                        String::from_utf8_lossy(s).into_owned()
                    }
                };
                let strings: Vec<String> = match ascii {
                    _ if strlen == 0 => vec![String::new(); cells],
                    Some(all) => bytes
                        .chunks(strlen)
                        .enumerate()
                        .map(|(i, s)| {
                            let at = i * strlen;
                            all[at..at + trim(s).len()].to_owned()
                        })
                        .collect(),
                    None => bytes.chunks(strlen).map(|s| text(trim(s))).collect(),
                };
                if latin1 {
                    CHAR_LATIN1.clone_into(&mut type_tag);
                }
                let fill_char = match fill {
                    None => default_fill::CHAR,
                    Some(NcValues::Char(f)) => f[0],
                    Some(_) => return Err(mismatch()),
                };
                let fill_bytes = vec![fill_char; strlen];
                let f = if latin1 || std::str::from_utf8(trim(&fill_bytes)).is_ok() {
                    text(trim(&fill_bytes))
                } else {
                    // A non-UTF-8 fill byte in UTF-8 text: no fill string.
                    String::new()
                };
                (
                    DType::String,
                    ArrayData::Str(shaped(&shape, strings)),
                    FillValue::String(f),
                    strlen.max(1) as u64,
                )
            }
        };
        let chunk = chunk_shape(&shape, cell_bytes, opts.chunk_bytes);
        let schema = ArraySchema::new(&var.name, dtype, dims, shape, Some(chunk), Some(fill_value))
            .map_err(|e| mapping(path, format!("{}: {e}", owner())))?;
        let array_attrs = match remembered {
            Some(m) if m.char_dim == char_dim && m.type_tag == type_tag => Arc::clone(&m.attrs),
            _ => {
                let (mut vattrs, vtypes) = match converted {
                    Some(c) => c,
                    // Remembered, so already checked: converting cannot fail.
                    None => convert_attrs(&var.attrs, path, &owner)?,
                };
                if let Some(d) = &char_dim {
                    vattrs.insert(reserved::CHAR_DIM.into(), Attr::String(d.clone()));
                }
                vattrs.insert(reserved::TYPE.into(), Attr::String(type_tag.clone()));
                if !vtypes.is_empty() {
                    vattrs.insert(reserved::ATTR_TYPES.into(), Attr::StringList(vtypes));
                }
                let vattrs = Arc::new(vattrs);
                memo.insert(
                    var.name.clone(),
                    AttrsMemo {
                        raw: var.attrs.clone(),
                        char_dim,
                        type_tag,
                        attrs: Arc::clone(&vattrs),
                    },
                );
                vattrs
            }
        };
        arrays.push(Planned {
            name: var.name.clone(),
            schema,
            attrs: array_attrs,
            data,
        });
    }
    Ok((attrs, arrays))
}

/// Whether two lists of NetCDF attributes convert to the same attributes:
/// the same names and values in the same order, floating-point values
/// compared by their bits (so `-0.0` is not `0.0`, and a NaN is itself).
fn same_attrs(a: &[NcAttr], b: &[NcAttr]) -> bool {
    fn bits<T: Copy, U: PartialEq>(x: &[T], y: &[T], f: impl Fn(T) -> U) -> bool {
        x.len() == y.len() && x.iter().zip(y).all(|(&p, &q)| f(p) == f(q))
    }
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && match (&x.value, &y.value) {
                    (NcValues::Float(p), NcValues::Float(q)) => bits(p, q, f32::to_bits),
                    (NcValues::Double(p), NcValues::Double(q)) => bits(p, q, f64::to_bits),
                    (p, q) => p == q,
                }
        })
}

/// A map keyed by array names, hashed with foldhash.
type NameMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

/// A variable's attribute set as a plan last made it, by array name: the
/// NetCDF attributes and the reserved entries it was made from.
#[derive(Debug)]
struct AttrsMemo {
    raw: Vec<NcAttr>,
    char_dim: Option<String>,
    type_tag: String,
    attrs: Arc<IndexMap<String, Attr>>,
}

/// What the plans of one decoder's files share, by array name: files of
/// one collection repeat their variables' attributes, which are converted
/// once, not once per file, while they do not change.
type Memo = NameMap<AttrsMemo>;

/// What one decoder's files share, by array name: the attribute sets (see
/// [`Memo`]) and the schemas of the arrays planned last. A dataset whose
/// array has the same attributes or the same schema as the previous one's
/// shares them instead of holding a copy (files of one collection repeat
/// their variables' attributes and mostly their shapes, and a batch holds
/// thousands; shared schemas are also checked once per batch and found by
/// address in the registry's dictionary).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    memo: Memo,
    schemas: NameMap<Arc<ArraySchema>>,
}

impl Shared {
    /// `schema`, or the equal one of the previous array of this name (then
    /// `schema` is freed here, by the thread that made it: on the import's
    /// critical path, freeing memory another thread allocated was slower
    /// than the batch write itself).
    fn schema(&mut self, array: &str, schema: ArraySchema) -> Arc<ArraySchema> {
        match self.schemas.get(array) {
            Some(s) if **s == schema => Arc::clone(s),
            _ => {
                let s = Arc::new(schema);
                self.schemas.insert(array.to_owned(), Arc::clone(&s));
                s
            }
        }
    }
}

/// The batch entry of one file, as [`plan`] makes it, with its arrays'
/// attribute sets and schemas shared with the files planned before through
/// `shared`.
pub(crate) fn plan_entry(
    nc: NcFile,
    name: &str,
    opts: &ImportOptions,
    path: &Path,
    shared: &mut Shared,
) -> Result<NewDataset> {
    let (attributes, arrays) = plan_with(nc, name, opts, path, &mut shared.memo)?;
    let arrays = arrays
        .into_iter()
        .map(|a| NewArray {
            attributes: a.attrs,
            schema: shared.schema(&a.name, a.schema),
            name: a.name,
            data: Some(a.data),
        })
        .collect();
    Ok(NewDataset {
        name: name.to_owned(),
        attributes,
        arrays,
    })
}

/// Writes a plan as a new dataset, all or nothing: if anything fails, the
/// store is as before (nothing is flushed here).
pub async fn write_plan(store: &Atlas, plan: &DatasetPlan) -> Result<()> {
    let plan = plan.clone();
    let ds = NewDataset {
        name: plan.name,
        attributes: plan.attrs,
        arrays: plan
            .arrays
            .into_iter()
            .map(|a| NewArray {
                attributes: Arc::new(a.attrs),
                schema: Arc::new(a.schema),
                name: a.name,
                data: Some(a.data),
            })
            .collect(),
    };
    store.create_datasets(std::slice::from_ref(&ds)).await?;
    Ok(())
}
