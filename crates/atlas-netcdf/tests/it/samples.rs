//! Real NetCDF-4 (and a few classic) files — the Iris and ESMValTool (CMIP6)
//! sample data — imported and compared, every variable's values, dimensions,
//! fill value and attributes and every global attribute, with an independent
//! reader: netCDF4-python (its own bundled libnetcdf), run as
//! `tests/nc_reference.py` by the interpreter `ATLAS_PYTHON` (default:
//! `<root>/.venv/bin/python`). The script reports facts only; the documented
//! mapping (`docs/netcdf.md`) is restated here and applied to them.
//!
//! What cannot import (groups, user-defined types) must be reported by name:
//! every group, variable and attribute the script finds of that kind must be
//! named in the file's error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use atlas::{Atlas, Attr, DType, FillValue, StoreConfig};
use atlas_netcdf::realdata;
use atlas_netcdf::{import_paths, BulkOptions, Error, FileOutcome};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Number;

use crate::common::skip_or_fail;

/// One file as netCDF4-python sees it (see `nc_reference.py`).
#[derive(Debug, Deserialize)]
struct FileFacts {
    path: PathBuf,
    data_model: String,
    dims: Vec<DimFacts>,
    attrs: Vec<AttrFacts>,
    groups: Vec<GroupFacts>,
    vars: Vec<VarFacts>,
}

#[derive(Debug, Deserialize)]
struct DimFacts {
    name: String,
    len: u64,
    unlimited: bool,
}

#[derive(Debug, Deserialize)]
struct GroupFacts {
    path: String,
    variables: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct AttrFacts {
    name: String,
    #[serde(flatten)]
    value: AttrValue,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum AttrValue {
    /// `char` text with every NUL removed, or one NetCDF-4 `string`.
    Text { text: String },
    /// The raw bytes of a `char` `_FillValue`, hex.
    Bytes { hex: String },
    /// Several NetCDF-4 `string`s.
    Strings { strings: Vec<String> },
    /// Numbers: integers as such, floats as the bits of their f64 value.
    Num { dtype: String, values: Vec<Number> },
    /// A compound, vlen, enum or opaque value.
    UserDefined {},
}

#[derive(Debug, Deserialize)]
struct VarFacts {
    name: String,
    dims: Vec<String>,
    shape: Vec<u64>,
    attrs: Vec<AttrFacts>,
    /// `num`, `char`, `string`, or a user-defined kind.
    kind: String,
    dtype: Option<String>,
    /// Raw little-endian values, a file beside `index.json`.
    data: Option<String>,
    strings: Option<Vec<String>>,
    default_fill: Option<Vec<Number>>,
    default_fill_hex: Option<String>,
}

impl FileFacts {
    fn is_hdf5(&self) -> bool {
        self.data_model.starts_with("NETCDF4")
    }

    /// Names of everything ATLAS must report as not importable.
    fn not_importable(&self) -> Vec<String> {
        let mut out = Vec::new();
        for g in &self.groups {
            out.push(g.path.clone());
            out.extend(g.variables.iter().cloned());
        }
        let user_defined = |a: &AttrFacts| matches!(a.value, AttrValue::UserDefined {});
        out.extend(
            self.attrs
                .iter()
                .filter(|a| user_defined(a))
                .map(|a| a.name.clone()),
        );
        for v in &self.vars {
            if !matches!(v.kind.as_str(), "num" | "char" | "string") {
                out.push(v.name.clone());
            }
            out.extend(
                v.attrs
                    .iter()
                    .filter(|a| user_defined(a))
                    .map(|a| a.name.clone()),
            );
        }
        out
    }
}

/// The interpreter running the reference script: `ATLAS_PYTHON`, else the
/// repository's `.venv`.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATLAS_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = realdata::workspace_root().join(".venv/bin/python");
    venv.is_file().then_some(venv)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nc_reference.py")
}

/// Runs the reference script; its failure fails the test.
fn run_script(python: &Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new(python)
        .arg(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} {} {args:?}: {}\n{}",
        python.display(),
        script().display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dumps `files` with netCDF4-python into `out`, returning the facts.
fn dump(python: &Path, out: &Path, files: &[PathBuf]) -> Vec<FileFacts> {
    let mut args = vec![std::ffi::OsStr::new("dump"), out.as_os_str()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    run_script(python, &args);
    let index = std::fs::read(out.join("index.json")).unwrap();
    serde_json::from_slice(&index).unwrap()
}

/// The interpreter, when it can import netCDF4; else `None` after
/// [`skip_or_fail`].
fn reference_python() -> Option<PathBuf> {
    let Some(py) = python() else {
        skip_or_fail(
            "no Python for netCDF4-python (set ATLAS_PYTHON, or run \
             `python3 -m venv .venv && .venv/bin/pip install -r requirements-ci.txt`)",
        );
        return None;
    };
    let ok = Command::new(&py)
        .args(["-c", "import netCDF4, numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip_or_fail(&format!("{} cannot import netCDF4 and numpy", py.display()));
        return None;
    }
    Some(py)
}

/// The sample files and the reference reader's view of them, built once.
struct Samples {
    files: Vec<PathBuf>,
    facts: Vec<FileFacts>,
    /// Holds the raw values the facts point to.
    out: tempfile::TempDir,
}

fn samples() -> Option<&'static Samples> {
    static SAMPLES: OnceLock<Option<Samples>> = OnceLock::new();
    SAMPLES
        .get_or_init(|| {
            let python = reference_python()?;
            let dir = match realdata::samples_dir(python.parent()) {
                Ok(Some(dir)) => dir,
                Ok(None) => {
                    skip_or_fail(&format!(
                        "the script {} is in none of {:?}",
                        realdata::SAMPLES_SCRIPT,
                        realdata::data_dirs()
                    ));
                    return None;
                }
                Err(e) => {
                    skip_or_fail(&format!("fetching the sample files failed: {e}"));
                    return None;
                }
            };
            let files = realdata::nc_files(&dir).expect("list the sample files");
            assert_eq!(files.len(), realdata::SAMPLE_FILES, "{}", dir.display());
            let out = tempfile::tempdir().unwrap();
            let facts = dump(&python, out.path(), &files);
            assert_eq!(facts.len(), files.len());
            Some(Samples { files, facts, out })
        })
        .as_ref()
}

/// What the bulk import of one file is expected to give.
fn expect_failure(f: &FileFacts) -> Option<Vec<String>> {
    if f.is_hdf5() && !atlas_netcdf::NETCDF4 {
        return Some(vec!["build with the `netcdf4` feature".into()]);
    }
    let names = f.not_importable();
    (!names.is_empty()).then_some(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_file_imports_and_matches_netcdf4_python() {
    let Some(s) = samples() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    let root = s.files[0]
        .ancestors()
        .find(|p| p.ends_with("samples"))
        .unwrap()
        .to_owned();
    let report = import_paths(&store, &[root], &BulkOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.files.len(), s.files.len());
    let facts: HashMap<&Path, &FileFacts> = s.facts.iter().map(|f| (f.path.as_path(), f)).collect();
    let (mut files, mut vars, mut failed) = (0, 0, 0);
    for (path, outcome) in &report.files {
        let f = facts[path.as_path()];
        let what = path.display().to_string();
        match (expect_failure(f), outcome) {
            (None, FileOutcome::Imported { dataset, .. }) => {
                check_dataset(&store, dataset, f, s.out.path(), &what).await;
                files += 1;
                vars += f.vars.len();
            }
            (Some(names), FileOutcome::Failed(e)) => {
                assert!(matches!(e, Error::Unsupported { .. }), "{what}: {e}");
                let msg = e.to_string();
                for n in &names {
                    assert!(msg.contains(n.as_str()), "{what}: {n:?} not named in {msg}");
                }
                failed += 1;
            }
            (expected, got) => panic!("{what}: expected failure {expected:?}, got {got:?}"),
        }
    }
    eprintln!(
        "{files} sample files ({vars} variables) match netCDF4-python; \
         {failed} reported as not importable"
    );
    assert_eq!(report.imported, files);
    assert_eq!(report.failed, failed);
    if atlas_netcdf::NETCDF4 {
        assert_eq!(files, realdata::SAMPLE_FILES);
    } else {
        // Only the two classic-format files import without libnetcdf.
        assert_eq!(files, 2);
    }
}

#[cfg(feature = "netcdf4")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_netcdf4_features_are_named() {
    let Some(py) = reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let zoo = dir.path().join("src").join("zoo.nc");
    std::fs::create_dir(zoo.parent().unwrap()).unwrap();
    run_script(&py, &["make-unsupported".as_ref(), zoo.as_os_str()]);
    let out = dir.path().join("facts");
    let facts = dump(&py, &out, std::slice::from_ref(&zoo));
    let names = facts[0].not_importable();
    // The reference reader sees what the script made.
    assert_eq!(
        names,
        ["/obs", "u", "/obs/qc", "flag", "calm", "wind", "ragged", "cloud"]
    );

    let e = atlas_netcdf::read_file(&zoo).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    let msg = e.to_string();
    for n in names
        .iter()
        .chain(&["wind_t".into(), "ragged_t".into(), "cloud_t".into()])
    {
        assert!(msg.contains(&format!("{n:?}")), "{n:?} not named in {msg}");
    }

    // A bulk import reports it and writes nothing.
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    let report = import_paths(
        &store,
        &[zoo.parent().unwrap().to_owned()],
        &BulkOptions::default(),
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!((report.imported, report.failed), (0, 1));
    assert!(matches!(
        &report.files[0].1,
        FileOutcome::Failed(Error::Unsupported { .. })
    ));
    assert_eq!(store.n_datasets(), 0);
}

/// The store's dataset against the reference facts of its file.
async fn check_dataset(store: &Atlas, name: &str, f: &FileFacts, out: &Path, what: &str) {
    let ds = store.open_dataset(name).await.unwrap();
    let gattrs = ds.attributes();
    let format = match f.data_model.as_str() {
        "NETCDF3_CLASSIC" => "classic",
        "NETCDF3_64BIT_OFFSET" => "64bit_offset",
        "NETCDF3_64BIT_DATA" => "cdf5",
        "NETCDF4" | "NETCDF4_CLASSIC" => "netcdf4",
        other => panic!("{what}: data model {other}"),
    };
    assert_eq!(
        gattrs.get("_nc_format"),
        Some(&Attr::String(format.into())),
        "{what}"
    );
    let dim_names: Vec<String> = f.dims.iter().map(|d| d.name.clone()).collect();
    assert_eq!(
        gattrs.get("_nc_dims"),
        Some(&Attr::StringList(dim_names)),
        "{what}"
    );
    assert_eq!(
        gattrs.get("_nc_dim_lens"),
        Some(&Attr::UInt64List(f.dims.iter().map(|d| d.len).collect())),
        "{what}"
    );
    let unlimited: Vec<String> = f
        .dims
        .iter()
        .filter(|d| d.unlimited)
        .map(|d| d.name.clone())
        .collect();
    assert_eq!(
        gattrs.get("_nc_unlimited"),
        (!unlimited.is_empty())
            .then_some(Attr::StringList(unlimited))
            .as_ref(),
        "{what}"
    );
    check_attrs(&gattrs, &f.attrs, f.is_hdf5(), &format!("{what}: global"));
    let names: Vec<&str> = f.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(ds.list_arrays().unwrap(), names, "{what}: arrays");
    for v in &f.vars {
        let what = format!("{what}: {}", v.name);
        let schema = ds.array_schema(&v.name).unwrap().unwrap();
        let attrs = ds.array_attributes(&v.name).unwrap();
        check_attrs(&attrs, &v.attrs, f.is_hdf5(), &what);
        let fill_attr = v
            .attrs
            .iter()
            .find(|a| a.name == "_FillValue")
            .map(|a| &a.value);
        let nc_type = |t: &str| Some(Attr::String(t.into()));
        match v.kind.as_str() {
            "num" => {
                let dtype_name = v.dtype.as_deref().unwrap();
                let (dtype, t) = numeric_type(dtype_name);
                assert_eq!(schema.dtype, dtype, "{what}");
                assert_eq!(schema.dims, v.dims, "{what}");
                assert_eq!(schema.shape, v.shape, "{what}");
                assert_eq!(attrs.get("_nc_type").cloned(), nc_type(t), "{what}");
                let raw = std::fs::read(out.join(v.data.as_deref().unwrap())).unwrap();
                let got = read_le_bytes(&ds, &v.name, dtype).await;
                assert_eq!(got.len(), raw.len(), "{what}: value bytes");
                if let Some(i) = got.iter().zip(&raw).position(|(a, b)| a != b) {
                    panic!("{what}: values differ from byte {i} on");
                }
                // The fill: `_FillValue`'s first value, else the type's default.
                let expected = match fill_attr {
                    Some(AttrValue::Num { values, .. }) if !values.is_empty() => &values[0],
                    None | Some(AttrValue::Num { .. }) => &v.default_fill.as_ref().unwrap()[0],
                    Some(other) => panic!("{what}: _FillValue {other:?}"),
                };
                assert_eq!(
                    fill_key(schema.fill_value.as_ref().unwrap()),
                    int(expected),
                    "{what}: fill {:?}",
                    schema.fill_value
                );
            }
            "char" => {
                let mut dims = v.dims.clone();
                let mut shape = v.shape.clone();
                let strlen = match (dims.pop(), shape.pop()) {
                    (Some(d), Some(n)) => {
                        assert_eq!(attrs.get("_nc_char_dim"), Some(&Attr::String(d)), "{what}");
                        n as usize
                    }
                    _ => 1,
                };
                assert_eq!(schema.dtype, DType::String, "{what}");
                assert_eq!(schema.dims, dims, "{what}");
                assert_eq!(schema.shape, shape, "{what}");
                let raw = std::fs::read(out.join(v.data.as_deref().unwrap())).unwrap();
                let n: u64 = shape.iter().product();
                let (expected, latin1) = char_strings(&raw, strlen, n as usize);
                let t = if latin1 { "char_latin1" } else { "char" };
                assert_eq!(attrs.get("_nc_type").cloned(), nc_type(t), "{what}");
                assert_eq!(read_strings(&ds, &v.name).await, expected, "{what}");
                let fill_byte = match fill_attr {
                    Some(AttrValue::Bytes { hex }) if !hex.is_empty() => hex_bytes(hex)[0],
                    None | Some(AttrValue::Bytes { .. }) => {
                        hex_bytes(v.default_fill_hex.as_deref().unwrap())[0]
                    }
                    Some(other) => panic!("{what}: _FillValue {other:?}"),
                };
                let strlen = strlen.max(1);
                let fill = char_strings(&vec![fill_byte; strlen], strlen, 1)
                    .0
                    .remove(0);
                assert!(
                    schema
                        .fill_value
                        .as_ref()
                        .unwrap()
                        .same_as(&FillValue::String(fill)),
                    "{what}: fill {:?}",
                    schema.fill_value
                );
            }
            "string" => {
                assert_eq!(schema.dtype, DType::String, "{what}");
                assert_eq!(schema.dims, v.dims, "{what}");
                assert_eq!(schema.shape, v.shape, "{what}");
                assert_eq!(attrs.get("_nc_type").cloned(), nc_type("string"), "{what}");
                assert_eq!(
                    &read_strings(&ds, &v.name).await,
                    v.strings.as_ref().unwrap(),
                    "{what}"
                );
                let fill = match fill_attr {
                    Some(AttrValue::Text { text }) => text.clone(),
                    None => String::new(),
                    Some(other) => panic!("{what}: _FillValue {other:?}"),
                };
                assert!(
                    schema
                        .fill_value
                        .as_ref()
                        .unwrap()
                        .same_as(&FillValue::String(fill)),
                    "{what}: fill {:?}",
                    schema.fill_value
                );
            }
            other => panic!("{what}: a variable of kind {other} was imported"),
        }
    }
}

/// The documented dtype and NetCDF type name of a numeric numpy dtype.
fn numeric_type(numpy: &str) -> (DType, &'static str) {
    match numpy {
        "int8" => (DType::Int8, "byte"),
        "uint8" => (DType::UInt8, "ubyte"),
        "int16" => (DType::Int16, "short"),
        "uint16" => (DType::UInt16, "ushort"),
        "int32" => (DType::Int32, "int"),
        "uint32" => (DType::UInt32, "uint"),
        "int64" => (DType::Int64, "int64"),
        "uint64" => (DType::UInt64, "uint64"),
        "float32" => (DType::Float32, "float"),
        "float64" => (DType::Float64, "double"),
        other => panic!("numpy dtype {other}"),
    }
}

fn int(n: &Number) -> i128 {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .unwrap_or_else(|| panic!("not an integer: {n}"))
}

/// A fill value as the script writes numbers: integers as such, floats as
/// the bits of their f64 value.
fn fill_key(f: &FillValue) -> i128 {
    match f {
        FillValue::Int8(x) => (*x).into(),
        FillValue::Int16(x) => (*x).into(),
        FillValue::Int32(x) => (*x).into(),
        FillValue::Int64(x) => (*x).into(),
        FillValue::UInt8(x) => (*x).into(),
        FillValue::UInt16(x) => (*x).into(),
        FillValue::UInt32(x) => (*x).into(),
        FillValue::UInt64(x) => (*x).into(),
        FillValue::Float32(x) => f64::from(*x).to_bits().into(),
        FillValue::Float64(x) => x.to_bits().into(),
        other => panic!("not a numeric fill: {other:?}"),
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The documented `char` rule, restated: `strlen`-byte cells, trailing NULs
/// dropped, UTF-8, or Latin-1 for every cell when any is not UTF-8.
fn char_strings(raw: &[u8], strlen: usize, n: usize) -> (Vec<String>, bool) {
    if strlen == 0 {
        return (vec![String::new(); n], false);
    }
    let cells: Vec<&[u8]> = raw
        .chunks(strlen)
        .map(|c| &c[..c.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)])
        .collect();
    assert_eq!(cells.len(), n);
    if cells.iter().all(|c| std::str::from_utf8(c).is_ok()) {
        let s = cells
            .iter()
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        (s, false)
    } else {
        let s = cells
            .iter()
            .map(|c| c.iter().map(|&b| char::from(b)).collect())
            .collect();
        (s, true)
    }
}

async fn read_strings(ds: &atlas::DatasetView, name: &str) -> Vec<String> {
    let a = ds
        .read_array::<String>(name, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    a.iter().cloned().collect()
}

/// A numeric array read back through the public API, as little-endian bytes
/// in C order (what the script wrote).
async fn read_le_bytes(ds: &atlas::DatasetView, name: &str, dtype: DType) -> Vec<u8> {
    macro_rules! le {
        ($t:ty) => {{
            let a = ds
                .read_array::<$t>(name, vec![], vec![])
                .await
                .unwrap()
                .unwrap();
            a.iter().flat_map(|x| x.to_le_bytes()).collect()
        }};
    }
    match dtype {
        DType::Int8 => le!(i8),
        DType::UInt8 => le!(u8),
        DType::Int16 => le!(i16),
        DType::UInt16 => le!(u16),
        DType::Int32 => le!(i32),
        DType::UInt32 => le!(u32),
        DType::Int64 => le!(i64),
        DType::UInt64 => le!(u64),
        DType::Float32 => le!(f32),
        DType::Float64 => le!(f64),
        other => panic!("not numeric: {other:?}"),
    }
}

/// The bytes of an imported text attribute (Latin-1 text back to its bytes).
fn text_bytes(s: &str, latin1: bool) -> Vec<u8> {
    if latin1 {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap())
            .collect()
    } else {
        s.as_bytes().to_vec()
    }
}

/// The store's attributes (reserved ones aside) against the reference's,
/// names, order, values and NetCDF types, under the documented rules.
fn check_attrs(ours: &IndexMap<String, Attr>, theirs: &[AttrFacts], hdf5: bool, what: &str) {
    let names: Vec<&str> = ours
        .keys()
        .map(String::as_str)
        .filter(|k| !k.starts_with("_nc_"))
        .collect();
    let expected: Vec<&str> = theirs.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, expected, "{what}: attribute names");
    let recorded_types: Vec<String> = match ours.get("_nc_attr_types") {
        Some(Attr::StringList(l)) => l.clone(),
        None => Vec::new(),
        other => panic!("{what}: _nc_attr_types {other:?}"),
    };
    let recorded = |name: &str| {
        recorded_types
            .iter()
            .filter_map(|e| e.split_once(':'))
            .find(|(_, n)| *n == name)
            .map(|(t, _)| t)
    };
    for a in theirs {
        let what = format!("{what}: attribute {:?}", a.name);
        let ours = &ours[&a.name];
        let rec = recorded(&a.name);
        match &a.value {
            AttrValue::Num { dtype, values } => {
                let (_, t) = numeric_type(dtype);
                let got: Vec<i128> = match ours {
                    Attr::Int64(x) if !dtype.starts_with('u') => vec![(*x).into()],
                    Attr::Int64List(x) if !dtype.starts_with('u') => {
                        x.iter().map(|&v| v.into()).collect()
                    }
                    Attr::UInt64(x) if dtype.starts_with('u') => vec![(*x).into()],
                    Attr::UInt64List(x) if dtype.starts_with('u') => {
                        x.iter().map(|&v| v.into()).collect()
                    }
                    Attr::Float64(x) if dtype.starts_with("float") => vec![x.to_bits().into()],
                    Attr::Float64List(x) if dtype.starts_with("float") => {
                        x.iter().map(|v| v.to_bits().into()).collect()
                    }
                    other => panic!("{what}: {other:?} for {dtype}"),
                };
                let list = matches!(
                    ours,
                    Attr::Int64List(_) | Attr::UInt64List(_) | Attr::Float64List(_)
                );
                assert_eq!(list, values.len() != 1, "{what}: scalar or list");
                let expected: Vec<i128> = values.iter().map(int).collect();
                assert_eq!(got, expected, "{what}");
                // Recorded, or the type export picks by default.
                let default = if dtype.starts_with("float") {
                    "double"
                } else if expected.iter().all(|&v| i32::try_from(v).is_ok()) {
                    "int"
                } else if dtype.starts_with('u') {
                    "uint64"
                } else {
                    "int64"
                };
                assert_eq!(rec.unwrap_or(default), t, "{what}: type");
            }
            AttrValue::Text { text } => {
                let Attr::String(s) = ours else {
                    panic!("{what}: {ours:?}")
                };
                // netCDF4-python drops every NUL and replaces invalid UTF-8.
                let latin1 = rec == Some("char_latin1");
                let seen = String::from_utf8_lossy(&text_bytes(s, latin1)).replace('\0', "");
                assert_eq!(&seen, text, "{what}");
                // One NetCDF-4 `string` is recorded as such; the reference
                // reader cannot tell it from `char`.
                assert!(
                    matches!(rec, None | Some("string" | "char_latin1")),
                    "{what}: type {rec:?}"
                );
            }
            AttrValue::Bytes { hex } => {
                let Attr::String(s) = ours else {
                    panic!("{what}: {ours:?}")
                };
                let mut expected = hex_bytes(hex);
                if hdf5 {
                    // Read through the `netcdf` crate: up to the first NUL.
                    let end = expected.iter().position(|&b| b == 0);
                    expected.truncate(end.unwrap_or(expected.len()));
                }
                let latin1 = rec == Some("char_latin1");
                assert_eq!(text_bytes(s, latin1), expected, "{what}");
            }
            AttrValue::Strings { strings } => {
                assert_eq!(ours, &Attr::StringList(strings.clone()), "{what}");
                assert_eq!(rec, None, "{what}: type");
            }
            AttrValue::UserDefined {} => panic!("{what}: imported a user-defined value"),
        }
    }
}
