//! Shared helpers: the Argo corpus, an independent reference reader (the
//! `netcdf3` crate), the documented mapping restated for checking, and a
//! seeded sampler.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atlas::{Atlas, Attr, DType, FillValue};
use atlas_netcdf::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};
use indexmap::IndexMap;

/// True when the real-data tests must run: when `ATLAS_REQUIRE_REALDATA` is
/// set (`.ci/run` sets it when it finds the data). Then missing data fails
/// the tests.
pub fn realdata_required() -> bool {
    std::env::var_os("ATLAS_REQUIRE_REALDATA").is_some_and(|x| !x.is_empty())
}

/// Reports that real-data tests cannot run: a panic when they are required
/// ([`realdata_required`]), else a loud message (the caller then skips),
/// written to stderr directly so the test harness does not capture it.
pub fn skip_or_fail(why: &str) {
    use std::io::Write as _;
    assert!(
        !realdata_required(),
        "real data required (ATLAS_REQUIRE_REALDATA is set) but {why}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: {why};\n\
         !!! the real-data tests did not run.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

/// The unpacked Argo profiles, or `None` (with a loud message) when the
/// archive is absent and [`realdata_required`] is false. Unpacking failures
/// panic: the archive is there, so the test must not pass silently.
pub fn argo() -> Option<&'static [PathBuf]> {
    static FILES: OnceLock<Option<Vec<PathBuf>>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let dir = atlas_netcdf::realdata::argo_dir().expect("unpack the Argo archive");
            let Some(dir) = dir else {
                skip_or_fail(&format!(
                    "the Argo archive {} is in none of {:?}",
                    atlas_netcdf::realdata::ARGO_ARCHIVE,
                    atlas_netcdf::realdata::data_dirs()
                ));
                return None;
            };
            let files = atlas_netcdf::realdata::nc_files(&dir).expect("list the Argo files");
            assert_eq!(
                files.len(),
                atlas_netcdf::realdata::ARGO_FILES,
                "{}",
                dir.display()
            );
            Some(files)
        })
        .as_deref()
}

/// A small xorshift generator: tests print their seed so a failure replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn seeded(default: u64) -> Rng {
        let seed = std::env::var("ATLAS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("seed {seed} (set ATLAS_TEST_SEED to replay)");
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `k` distinct items of `v`.
    pub fn sample<T: Clone>(&mut self, v: &[T], k: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        for i in 0..k.min(v.len()) {
            let j = i + self.below(v.len() - i);
            idx.swap(i, j);
        }
        idx[..k.min(v.len())]
            .iter()
            .map(|&i| v[i].clone())
            .collect()
    }
}

fn ref_values(d: &netcdf3::DataVector) -> NcValues {
    use netcdf3::DataVector as D;
    match d {
        D::I8(v) => NcValues::Byte(v.clone()),
        D::U8(v) => NcValues::Char(v.clone()),
        D::I16(v) => NcValues::Short(v.clone()),
        D::I32(v) => NcValues::Int(v.clone()),
        D::F32(v) => NcValues::Float(v.clone()),
        D::F64(v) => NcValues::Double(v.clone()),
    }
}

fn ref_attr(a: &netcdf3::Attribute) -> NcAttr {
    use netcdf3::DataType as T;
    let value = match a.data_type() {
        T::I8 => NcValues::Byte(a.get_i8().unwrap().to_vec()),
        T::U8 => NcValues::Char(a.get_u8().unwrap().to_vec()),
        T::I16 => NcValues::Short(a.get_i16().unwrap().to_vec()),
        T::I32 => NcValues::Int(a.get_i32().unwrap().to_vec()),
        T::F32 => NcValues::Float(a.get_f32().unwrap().to_vec()),
        T::F64 => NcValues::Double(a.get_f64().unwrap().to_vec()),
    };
    NcAttr {
        name: a.name().to_owned(),
        value,
    }
}

/// Reads a CDF1/CDF2 file with the `netcdf3` crate, an implementation
/// independent of ours, into the same model.
pub fn reference(path: &Path) -> NcFile {
    let mut r =
        netcdf3::FileReader::open(path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let data = r.read_all_vars().unwrap();
    let format = match r.version() {
        netcdf3::Version::Classic => NcFormat::Classic,
        netcdf3::Version::Offset64Bit => NcFormat::Offset64,
    };
    let ds = r.data_set();
    let dims: Vec<NcDim> = ds
        .get_dims()
        .iter()
        .map(|d| NcDim {
            name: d.name(),
            len: d.size() as u64,
            unlimited: d.is_unlimited(),
        })
        .collect();
    let vars = ds
        .get_vars()
        .iter()
        .map(|v| NcVar {
            name: v.name().to_owned(),
            dims: v
                .dim_names()
                .iter()
                .map(|n| dims.iter().position(|d| &d.name == n).unwrap())
                .collect(),
            attrs: v.get_attrs().iter().map(|a| ref_attr(a)).collect(),
            values: ref_values(&data[v.name()]),
        })
        .collect();
    NcFile {
        format,
        dims,
        attrs: ds.get_global_attrs().iter().map(|a| ref_attr(a)).collect(),
        vars,
    }
}

/// Asserts two models are equal, floats compared by their bits.
pub fn assert_same_file(a: &NcFile, b: &NcFile, what: &str) {
    assert_eq!(a.dims, b.dims, "{what}: dimensions");
    assert_attrs_same(&a.attrs, &b.attrs, &format!("{what}: global attributes"));
    let an: Vec<&str> = a.vars.iter().map(|v| v.name.as_str()).collect();
    let bn: Vec<&str> = b.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(an, bn, "{what}: variables");
    for (x, y) in a.vars.iter().zip(&b.vars) {
        assert_eq!(x.dims, y.dims, "{what}: {} dims", x.name);
        assert_eq!(x.nc_type(), y.nc_type(), "{what}: {} type", x.name);
        assert!(x.values.same_bits(&y.values), "{what}: {} values", x.name);
        assert_attrs_same(
            &x.attrs,
            &y.attrs,
            &format!("{what}: {} attributes", x.name),
        );
    }
}

fn assert_attrs_same(a: &[NcAttr], b: &[NcAttr], what: &str) {
    let an: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
    let bn: Vec<&str> = b.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(an, bn, "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            x.value.same_bits(&y.value),
            "{what}: {:?}: {:?} vs {:?}",
            x.name,
            x.value,
            y.value
        );
    }
}

/// The documented attribute rule, restated: a 1-element number is a scalar,
/// more (or none) a list; integers are `Int64`, floats `Float64`, text a
/// `String` of all its bytes.
pub fn expected_attr(v: &NcValues) -> Attr {
    fn one_or_list<T: Copy>(v: &[T], s: fn(T) -> Attr, l: fn(Vec<T>) -> Attr) -> Attr {
        if v.len() == 1 {
            s(v[0])
        } else {
            l(v.to_vec())
        }
    }
    match v {
        NcValues::Byte(v) => one_or_list(
            &v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(),
            Attr::Int64,
            Attr::Int64List,
        ),
        NcValues::Short(v) => one_or_list(
            &v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(),
            Attr::Int64,
            Attr::Int64List,
        ),
        NcValues::Int(v) => one_or_list(
            &v.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(),
            Attr::Int64,
            Attr::Int64List,
        ),
        NcValues::Float(v) => one_or_list(
            &v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(),
            Attr::Float64,
            Attr::Float64List,
        ),
        NcValues::Double(v) => one_or_list(v, Attr::Float64, Attr::Float64List),
        NcValues::Char(v) => Attr::String(String::from_utf8(v.clone()).expect("utf-8 text")),
        other => panic!("not a classic attribute: {other:?}"),
    }
}

/// Non-reserved attributes only.
pub fn user_attrs(m: &IndexMap<String, Attr>) -> IndexMap<String, Attr> {
    m.iter()
        .filter(|(k, _)| !k.starts_with("_nc_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The documented string rule, restated: split into `strlen`-byte strings,
/// drop trailing NULs.
pub fn expected_strings(bytes: &[u8], strlen: usize) -> Vec<String> {
    bytes
        .chunks(strlen)
        .map(|s| {
            let end = s.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            String::from_utf8(s[..end].to_vec()).unwrap()
        })
        .collect()
}

fn bits_eq<T: Copy, B: Eq>(a: &[T], b: &[T], f: impl Fn(T) -> B) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| f(*x) == f(*y))
}

/// Checks that the store's dataset `name` holds exactly what the reference
/// read of the file gives, under the documented mapping.
pub async fn check_dataset(store: &Atlas, name: &str, r: &NcFile) {
    let ds = store.open_dataset(name).await.unwrap();
    let gattrs = ds.attributes();
    let expected: IndexMap<String, Attr> = r
        .attrs
        .iter()
        .map(|a| (a.name.clone(), expected_attr(&a.value)))
        .collect();
    assert_eq!(user_attrs(&gattrs), expected, "{name}: global attributes");
    assert_eq!(
        gattrs.get("_nc_dims"),
        Some(&Attr::StringList(
            r.dims.iter().map(|d| d.name.clone()).collect()
        )),
        "{name}"
    );
    assert_eq!(
        gattrs.get("_nc_dim_lens"),
        Some(&Attr::UInt64List(r.dims.iter().map(|d| d.len).collect())),
        "{name}"
    );
    let arrays = ds.list_arrays().unwrap();
    let names: Vec<&str> = r.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(arrays, names, "{name}: arrays");
    for v in &r.vars {
        let what = format!("{name}/{}", v.name);
        let schema = ds.array_schema(&v.name).unwrap().unwrap();
        let attrs = ds.array_attributes(&v.name).unwrap();
        let expected: IndexMap<String, Attr> = v
            .attrs
            .iter()
            .map(|a| (a.name.clone(), expected_attr(&a.value)))
            .collect();
        assert_eq!(user_attrs(&attrs), expected, "{what}: attributes");
        assert_eq!(
            attrs.get("_nc_type"),
            Some(&Attr::String(v.nc_type().name().into())),
            "{what}"
        );
        // Attributes whose type export would not pick by default are recorded.
        for a in &v.attrs {
            let t = a.value.nc_type().name();
            let recorded = match attrs.get("_nc_attr_types") {
                Some(Attr::StringList(l)) => l.contains(&format!("{t}:{}", a.name)),
                _ => false,
            };
            let default = matches!(t, "int" | "double" | "char");
            assert_eq!(recorded, !default, "{what}: type of {}", a.name);
        }
        let mut dims: Vec<String> = v.dims.iter().map(|&d| r.dims[d].name.clone()).collect();
        let mut shape: Vec<u64> = v.dims.iter().map(|&d| r.dims[d].len).collect();
        let fill = v.attr("_FillValue").map(|a| &a.value);
        macro_rules! check {
            ($t:ty, $dt:ident, $vals:expr, $fill:expr, $key:expr) => {{
                assert_eq!(schema.dtype, DType::$dt, "{what}");
                assert_eq!(schema.dims, dims, "{what}");
                assert_eq!(schema.shape, shape, "{what}");
                let got = ds
                    .read_array::<$t>(&v.name, vec![], vec![])
                    .await
                    .unwrap()
                    .unwrap();
                let got: Vec<$t> = got.iter().cloned().collect();
                assert!(bits_eq(&got, $vals, $key), "{what}: values");
                assert!(
                    schema.fill_value.as_ref().unwrap().same_as(&$fill),
                    "{what}: fill {:?}",
                    schema.fill_value
                );
            }};
        }
        match &v.values {
            NcValues::Float(x) => {
                let f = match fill {
                    Some(NcValues::Float(f)) => f[0],
                    None => f32::from_bits(0x7cf0_0000),
                    other => panic!("{what}: fill {other:?}"),
                };
                check!(f32, Float32, x, FillValue::Float32(f), f32::to_bits);
            }
            NcValues::Double(x) => {
                let f = match fill {
                    Some(NcValues::Double(f)) => f[0],
                    None => 9.969_209_968_386_869e36,
                    other => panic!("{what}: fill {other:?}"),
                };
                check!(f64, Float64, x, FillValue::Float64(f), f64::to_bits);
            }
            NcValues::Int(x) => {
                let f = match fill {
                    Some(NcValues::Int(f)) => f[0],
                    None => -2_147_483_647,
                    other => panic!("{what}: fill {other:?}"),
                };
                check!(i32, Int32, x, FillValue::Int32(f), |x| x);
            }
            NcValues::Short(x) => {
                let f = match fill {
                    Some(NcValues::Short(f)) => f[0],
                    None => -32767,
                    other => panic!("{what}: fill {other:?}"),
                };
                check!(i16, Int16, x, FillValue::Int16(f), |x| x);
            }
            NcValues::Byte(x) => {
                let f = match fill {
                    Some(NcValues::Byte(f)) => f[0],
                    None => -127,
                    other => panic!("{what}: fill {other:?}"),
                };
                check!(i8, Int8, x, FillValue::Int8(f), |x| x);
            }
            NcValues::Char(bytes) => {
                let strlen = if let Some(d) = dims.pop() {
                    shape.pop();
                    assert_eq!(attrs.get("_nc_char_dim"), Some(&Attr::String(d)), "{what}");
                    v.dims.last().map(|&d| r.dims[d].len as usize).unwrap()
                } else {
                    1
                };
                let strings = if strlen == 0 {
                    vec![String::new(); shape.iter().product::<u64>() as usize]
                } else {
                    expected_strings(bytes, strlen)
                };
                let fill_char = match fill {
                    Some(NcValues::Char(f)) => f[0],
                    None => 0,
                    other => panic!("{what}: fill {other:?}"),
                };
                let fill_string = expected_strings(&vec![fill_char; strlen.max(1)], strlen.max(1))
                    .pop()
                    .unwrap();
                let fill_string = if strlen == 0 {
                    String::new()
                } else {
                    fill_string
                };
                assert_eq!(schema.dtype, DType::String, "{what}");
                assert_eq!(schema.dims, dims, "{what}");
                assert_eq!(schema.shape, shape, "{what}");
                let got = ds
                    .read_array::<String>(&v.name, vec![], vec![])
                    .await
                    .unwrap()
                    .unwrap();
                let got: Vec<String> = got.iter().cloned().collect();
                assert_eq!(got, strings, "{what}: values");
                assert!(
                    schema
                        .fill_value
                        .as_ref()
                        .unwrap()
                        .same_as(&FillValue::String(fill_string)),
                    "{what}: fill {:?}",
                    schema.fill_value
                );
            }
            other => panic!("{what}: not a classic type: {other:?}"),
        }
    }
}

/// Every checksum and the registry agree with the files.
pub fn assert_verifies(store: &Atlas) {
    let report = tokio::task::block_in_place(|| atlas::verify::verify(store, |_, _| {}));
    assert!(
        report.problems.is_empty(),
        "{:?}",
        report
            .problems
            .iter()
            .map(|p| &p.message)
            .collect::<Vec<_>>()
    );
}
