//! Feature `netcdf4`: NetCDF-4/HDF5 files through libnetcdf, and libnetcdf
//! as a second independent reader of the files our writer makes.

use atlas::{Atlas, Attr, DType, FillValue, StoreConfig};
use atlas_netcdf::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};
use netcdf::types::{FloatType, IntType, NcVariableType};
use netcdf::AttributeValue;

use crate::common::argo;
use crate::roundtrip::everything;

/// Reads any file with libnetcdf into our model. `char` attributes come back
/// as the `netcdf` crate gives them (up to the first NUL, lossy UTF-8).
fn via_libnetcdf(path: &std::path::Path) -> NcFile {
    let f = netcdf::open(path).unwrap();
    let dims: Vec<NcDim> = f
        .dimensions()
        .map(|d| NcDim {
            name: d.name(),
            len: d.len() as u64,
            unlimited: d.is_unlimited(),
        })
        .collect();
    let attr = |a: netcdf::Attribute<'_>| NcAttr {
        name: a.name().to_owned(),
        value: match a.value().unwrap() {
            AttributeValue::Schar(x) => NcValues::Byte(vec![x]),
            AttributeValue::Schars(x) => NcValues::Byte(x),
            AttributeValue::Short(x) => NcValues::Short(vec![x]),
            AttributeValue::Shorts(x) => NcValues::Short(x),
            AttributeValue::Int(x) => NcValues::Int(vec![x]),
            AttributeValue::Ints(x) => NcValues::Int(x),
            AttributeValue::Float(x) => NcValues::Float(vec![x]),
            AttributeValue::Floats(x) => NcValues::Float(x),
            AttributeValue::Double(x) => NcValues::Double(vec![x]),
            AttributeValue::Doubles(x) => NcValues::Double(x),
            AttributeValue::Uchar(x) => NcValues::UByte(vec![x]),
            AttributeValue::Uchars(x) => NcValues::UByte(x),
            AttributeValue::Ushort(x) => NcValues::UShort(vec![x]),
            AttributeValue::Ushorts(x) => NcValues::UShort(x),
            AttributeValue::Uint(x) => NcValues::UInt(vec![x]),
            AttributeValue::Uints(x) => NcValues::UInt(x),
            AttributeValue::Longlong(x) => NcValues::Int64(vec![x]),
            AttributeValue::Longlongs(x) => NcValues::Int64(x),
            AttributeValue::Ulonglong(x) => NcValues::UInt64(vec![x]),
            AttributeValue::Ulonglongs(x) => NcValues::UInt64(x),
            AttributeValue::Str(x) => NcValues::Char(x.into_bytes()),
            AttributeValue::Strs(x) => NcValues::String(x),
        },
    };
    let vars = f
        .variables()
        .map(|v| NcVar {
            name: v.name(),
            dims: v
                .dimensions()
                .iter()
                .map(|d| dims.iter().position(|x| x.name == d.name()).unwrap())
                .collect(),
            attrs: v.attributes().map(attr).collect(),
            values: match v.vartype() {
                NcVariableType::Int(IntType::I8) => NcValues::Byte(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::I16) => NcValues::Short(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::I32) => NcValues::Int(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::I64) => NcValues::Int64(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::U8) => NcValues::UByte(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::U16) => NcValues::UShort(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::U32) => NcValues::UInt(v.get_values(..).unwrap()),
                NcVariableType::Int(IntType::U64) => NcValues::UInt64(v.get_values(..).unwrap()),
                NcVariableType::Float(FloatType::F32) => NcValues::Float(v.get_values(..).unwrap()),
                NcVariableType::Float(FloatType::F64) => {
                    NcValues::Double(v.get_values(..).unwrap())
                }
                NcVariableType::Char => NcValues::Char(v.get_raw_values(..).unwrap()),
                other => panic!("unexpected type {other:?}"),
            },
        })
        .collect();
    NcFile {
        format: NcFormat::Netcdf4,
        dims,
        attrs: f.attributes().map(attr).collect(),
        vars,
    }
}

/// `char` attributes as the `netcdf` crate reads them.
fn as_libnetcdf_reads(mut nc: NcFile) -> NcFile {
    let fix = |a: &mut NcAttr| {
        if let NcValues::Char(b) = &a.value {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            a.value = NcValues::Char(String::from_utf8_lossy(&b[..end]).into_owned().into_bytes());
        }
    };
    nc.attrs.iter_mut().for_each(fix);
    for v in &mut nc.vars {
        v.attrs.iter_mut().for_each(fix);
    }
    nc
}

fn assert_same(a: &NcFile, b: &NcFile, what: &str) {
    assert_eq!(a.dims, b.dims, "{what}");
    let mut a = a.clone();
    a.format = b.format;
    crate::common::assert_same_file(&a, b, what);
}

#[test]
fn libnetcdf_reads_our_files_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let single = NcFile {
        format: NcFormat::Classic,
        dims: vec![
            NcDim {
                name: "time".into(),
                len: 5,
                unlimited: true,
            },
            NcDim {
                name: "x".into(),
                len: 3,
                unlimited: false,
            },
        ],
        attrs: vec![],
        vars: vec![
            NcVar {
                name: "x".into(),
                dims: vec![1],
                attrs: vec![],
                values: NcValues::Int(vec![7, 8, 9]),
            },
            NcVar {
                name: "t".into(),
                dims: vec![0],
                attrs: vec![],
                values: NcValues::Short(vec![10, 20, 30, 40, 50]),
            },
        ],
    };
    for (i, nc) in [
        everything(NcFormat::Classic),
        everything(NcFormat::Offset64),
        everything(NcFormat::Cdf5),
        single,
    ]
    .into_iter()
    .enumerate()
    {
        let p = dir.path().join(format!("{i}.nc"));
        atlas_netcdf::write_file(&nc, &p, Some(nc.format)).unwrap();
        assert_same(
            &as_libnetcdf_reads(nc),
            &via_libnetcdf(&p),
            &format!("file {i}"),
        );
    }
    if let Some(files) = argo() {
        for f in &files[..20] {
            assert_same(
                &as_libnetcdf_reads(atlas_netcdf::read_file(f).unwrap()),
                &via_libnetcdf(f),
                &f.display().to_string(),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netcdf4_files_import_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nc4.nc");
    {
        let mut f = netcdf::create(&p).unwrap();
        f.add_unlimited_dimension("time").unwrap();
        f.add_dimension("x", 3).unwrap();
        f.add_attribute("title", "a netcdf-4 file").unwrap();
        f.add_attribute("levels", vec![1u16, 2, 3]).unwrap();
        f.add_attribute("big", u64::MAX).unwrap();
        let mut t = f.add_variable::<f32>("temp", &["time", "x"]).unwrap();
        t.put_attribute("_FillValue", -999.0f32).unwrap();
        t.put_attribute("units", "K").unwrap();
        t.put_values(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (0..2, ..))
            .unwrap();
        let mut c = f.add_variable::<i64>("count", &["x"]).unwrap();
        c.put_values(&[i64::MIN, 0, i64::MAX], ..).unwrap();
        let mut u = f.add_variable::<u16>("flags", &["x"]).unwrap();
        u.put_values(&[0u16, 1, 65535], ..).unwrap();
        let mut s = f.add_string_variable("names", &["x"]).unwrap();
        for (i, n) in ["alpha", "", "γ"].iter().enumerate() {
            s.put_string(n, [i]).unwrap();
        }
    }
    let nc = atlas_netcdf::read_file(&p).unwrap();
    assert_eq!(nc.format, NcFormat::Netcdf4);

    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    atlas_netcdf::import_file(&store, &p, None, &Default::default())
        .await
        .unwrap();
    let ds = store.open_dataset("nc4").await.unwrap();
    let t = ds.array_schema("temp").unwrap().unwrap();
    assert_eq!((t.dtype, t.shape.clone()), (DType::Float32, vec![2, 3]));
    assert!(t.fill_value.unwrap().same_as(&FillValue::Float32(-999.0)));
    let names: Vec<String> = ds
        .read_array::<String>("names", vec![], vec![])
        .await
        .unwrap()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(names, ["alpha", "", "γ"]);
    assert_eq!(
        ds.get_array_attribute("names", "_nc_type"),
        Some(Attr::String("string".into()))
    );
    let flags = ds
        .read_array::<u16>("flags", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flags.as_slice().unwrap(), &[0, 1, 65535]);
    assert_eq!(ds.get_attribute("big"), Some(Attr::UInt64(u64::MAX)));
    assert_eq!(
        ds.get_attribute("levels"),
        Some(Attr::UInt64List(vec![1, 2, 3]))
    );
    assert_eq!(
        ds.get_attribute("_nc_format"),
        Some(Attr::String("netcdf4".into()))
    );

    // Export: the unsigned and 64-bit types need CDF5; strings become chars.
    let out = dir.path().join("out.nc");
    let s = atlas_netcdf::export_dataset(&store, "nc4", &out, Default::default())
        .await
        .unwrap();
    assert_eq!(s.format, NcFormat::Cdf5);
    let back = via_libnetcdf(&out);
    assert_eq!(
        back.var("names").unwrap().values,
        NcValues::Char("alpha\0\0\0\0\0γ\0\0\0".as_bytes().to_vec())
    );
    for v in ["temp", "count", "flags"] {
        assert!(
            back.var(v)
                .unwrap()
                .values
                .same_bits(&nc.var(v).unwrap().values),
            "{v}"
        );
    }
    assert_eq!(
        back.attr("levels").unwrap().value,
        NcValues::UShort(vec![1, 2, 3])
    );
    assert_eq!(
        back.attr("big").unwrap().value,
        NcValues::UInt64(vec![u64::MAX])
    );
}

#[test]
fn netcdf4_groups_are_reported_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("groups.nc");
    {
        let mut f = netcdf::create(&p).unwrap();
        f.add_dimension("x", 2).unwrap();
        f.add_group("inner")
            .unwrap()
            .add_variable::<f32>("t", &["x"])
            .unwrap();
        f.add_group("empty").unwrap();
    }
    let e = atlas_netcdf::read_file(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("unsupported: netcdf-4 features ATLAS does not import: "),
        "{msg}"
    );
    assert!(msg.contains(r#"group "/inner" (variables "t")"#), "{msg}");
    assert!(msg.contains(r#"group "/empty""#), "{msg}");
}

/// Set in the child process of the test below.
const CHILD: &str = "ATLAS_NETCDF_TEST_CHILD";

/// libnetcdf leaves HDF5's error printing on in every thread but the one
/// that initialised it; a bulk import decodes on several threads, and must
/// not print `HDF5-DIAG` stacks for ordinary files. Runs itself as a child
/// process to see the C library's stderr.
#[test]
fn reading_on_many_threads_prints_no_hdf5_diagnostics() {
    if std::env::var_os(CHILD).is_some() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plain.nc");
        {
            let mut f = netcdf::create(&p).unwrap();
            f.add_dimension("x", 3).unwrap();
            let mut v = f.add_variable::<f32>("t", &["x"]).unwrap();
            v.put_values(&[1.0f32, 2.0, 3.0], ..).unwrap();
        }
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || atlas_netcdf::read_file(&p).unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(
                t.join().unwrap().var("t").unwrap().values,
                NcValues::Float(vec![1.0, 2.0, 3.0])
            );
        }
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "netcdf4::reading_on_many_threads_prints_no_hdf5_diagnostics",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(!stderr.contains("HDF5-DIAG"), "{stderr}");
}
