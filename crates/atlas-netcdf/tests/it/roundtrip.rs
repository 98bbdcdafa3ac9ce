//! Synthetic files covering every type and layout: our writer checked by the
//! independent reader, files of the independent writer read by ours, and
//! import → export giving back the same file.

use atlas::{Atlas, Attr, DType, FillValue, StoreConfig};
use atlas_netcdf::import::chunk_shape;
use atlas_netcdf::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};
use atlas_netcdf::ImportOptions;

use crate::common::{assert_same_file, reference};

fn dim(name: &str, len: u64, unlimited: bool) -> NcDim {
    NcDim {
        name: name.into(),
        len,
        unlimited,
    }
}

fn attr(name: &str, value: NcValues) -> NcAttr {
    NcAttr {
        name: name.into(),
        value,
    }
}

fn var(name: &str, dims: &[usize], attrs: Vec<NcAttr>, values: NcValues) -> NcVar {
    NcVar {
        name: name.into(),
        dims: dims.to_vec(),
        attrs,
        values,
    }
}

/// Every classic type, scalars, strings (UTF-8, Latin-1, NUL-padded),
/// special floats, several record variables, attributes of every type.
pub fn everything(format: NcFormat) -> NcFile {
    let nan_payload = f64::from_bits(0x7ff8_0000_0000_0123);
    NcFile {
        format,
        dims: vec![
            dim("x", 3, false),
            dim("y", 2, false),
            dim("strlen", 4, false),
            dim("rec", 3, true),
        ],
        attrs: vec![
            attr("title", NcValues::Char("température ✓".as_bytes().to_vec())),
            attr("empty_text", NcValues::Char(vec![])),
            attr("ints", NcValues::Int(vec![1, -2, i32::MAX])),
            attr("one_int", NcValues::Int(vec![7])),
            attr("a_double", NcValues::Double(vec![-0.0])),
            attr("bytes", NcValues::Byte(vec![-128, 127])),
            attr("a_short", NcValues::Short(vec![-3])),
            attr(
                "floats",
                NcValues::Float(vec![1.5, f32::NAN, f32::INFINITY]),
            ),
            attr("no_doubles", NcValues::Double(vec![])),
        ],
        vars: vec![
            var(
                "b",
                &[0],
                vec![
                    attr("_FillValue", NcValues::Byte(vec![-1])),
                    attr("valid_range", NcValues::Byte(vec![-100, 100])),
                ],
                NcValues::Byte(vec![-128, 0, 127]),
            ),
            var("c_scalar", &[], vec![], NcValues::Char(b"Q".to_vec())),
            var(
                "names",
                &[0, 2],
                vec![attr("_FillValue", NcValues::Char(b" ".to_vec()))],
                NcValues::Char(b"ab\0\0abcd\0\0\0\0".to_vec()),
            ),
            var(
                "latin",
                &[1, 2],
                vec![attr("comment", NcValues::Char(b"caf\xe9".to_vec()))],
                NcValues::Char(b"\xe9a\0\0zz  ".to_vec()),
            ),
            var(
                "s",
                &[1, 0],
                vec![attr("scale", NcValues::Float(vec![0.5]))],
                NcValues::Short(vec![-32768, 0, 1, 2, 3, 32767]),
            ),
            var("i", &[], vec![], NcValues::Int(vec![42])),
            var(
                "f",
                &[0],
                vec![],
                NcValues::Float(vec![f32::NAN, -0.0, f32::NEG_INFINITY]),
            ),
            var(
                "d",
                &[0],
                vec![attr("_FillValue", NcValues::Double(vec![f64::NAN]))],
                NcValues::Double(vec![f64::MIN_POSITIVE, -1e300, nan_payload]),
            ),
            var(
                "rec_f",
                &[3, 1],
                vec![],
                NcValues::Float(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ),
            var(
                "rec_c",
                &[3, 2],
                vec![],
                NcValues::Char(b"one\0two\0thre".to_vec()),
            ),
            var("rec_b", &[3], vec![], NcValues::Byte(vec![1, 2, 3])),
        ],
    }
}

/// One record variable of 2-byte values: the format's unpadded special case.
fn single_record_var() -> NcFile {
    NcFile {
        format: NcFormat::Classic,
        dims: vec![dim("time", 5, true), dim("x", 3, false)],
        attrs: vec![],
        vars: vec![
            var("x", &[1], vec![], NcValues::Int(vec![7, 8, 9])),
            var("t", &[0], vec![], NcValues::Short(vec![10, 20, 30, 40, 50])),
        ],
    }
}

async fn import_export(nc: &NcFile) -> NcFile {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.nc");
    atlas_netcdf::write_file(nc, &src, Some(nc.format)).unwrap();
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    atlas_netcdf::import_file(&store, &src, Some("ds"), &ImportOptions::default())
        .await
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    let store = Atlas::open_path(dir.path().join("store")).await.unwrap();
    let out = dir.path().join("out.nc");
    let s = atlas_netcdf::export_dataset(&store, "ds", &out, Default::default())
        .await
        .unwrap();
    assert_eq!(s.format, nc.format);
    atlas_netcdf::read_file(&out).unwrap()
}

#[test]
fn our_files_read_the_same_with_the_independent_reader() {
    let dir = tempfile::tempdir().unwrap();
    // The `netcdf3` crate pads the records of a file with a single record
    // variable, which the format (and libnetcdf, see the `netcdf4` tests) does
    // not, so it cannot check that file.
    for (i, (nc, independent)) in [
        (everything(NcFormat::Classic), true),
        (everything(NcFormat::Offset64), true),
        (single_record_var(), false),
    ]
    .iter()
    .enumerate()
    {
        let p = dir.path().join(format!("{i}.nc"));
        atlas_netcdf::write_file(nc, &p, Some(nc.format)).unwrap();
        if *independent {
            assert_same_file(&reference(&p), nc, &format!("file {i}"));
        }
        assert_same_file(&atlas_netcdf::read_file(&p).unwrap(), nc, "own reader");
    }
    // Byte for byte what libnetcdf's `ncgen -b -k classic` writes for it.
    let mut b = Vec::new();
    atlas_netcdf::export::write_nc(&single_record_var(), None, &mut b).unwrap();
    assert_eq!(b.len(), 150);
    assert_eq!(&b[140..], &[0, 10, 0, 20, 0, 30, 0, 40, 0, 50]);
}

#[test]
fn files_of_the_independent_writer_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.nc");
    let mut ds = netcdf3::DataSet::new();
    ds.set_unlimited_dim("time", 4).unwrap();
    ds.add_fixed_dim("lat", 3).unwrap();
    ds.add_fixed_dim("name_len", 5).unwrap();
    ds.add_var_f64("lat", &["lat"]).unwrap();
    ds.add_var_f32("temp", &["time", "lat"]).unwrap();
    ds.add_var_u8("station", &["time", "name_len"]).unwrap();
    ds.add_var_i16("flag", &["time"]).unwrap();
    ds.add_var_i8("level", &["lat"]).unwrap();
    ds.add_var_i32("count", &["time"]).unwrap();
    ds.add_var_attr_f32("temp", "_FillValue", vec![-999.0])
        .unwrap();
    ds.add_var_attr_string("temp", "units", "K").unwrap();
    ds.add_global_attr_string("title", "written by netcdf3")
        .unwrap();
    ds.add_global_attr_i16("version", vec![1, 2]).unwrap();
    let mut w = netcdf3::FileWriter::create_new(&p).unwrap();
    w.set_def(&ds, netcdf3::Version::Offset64Bit, 0).unwrap();
    w.write_var_f64("lat", &[-10.0, 0.0, 10.5]).unwrap();
    w.write_var_f32("temp", &(0..12).map(|x| x as f32).collect::<Vec<_>>())
        .unwrap();
    w.write_var_u8("station", b"alphabeta\0gammadelta").unwrap();
    w.write_var_i16("flag", &[1, 2, 3, 4]).unwrap();
    w.write_var_i8("level", &[-1, 0, 1]).unwrap();
    w.write_var_i32("count", &[9, 8, 7, 6]).unwrap();
    w.close().unwrap();
    let ours = atlas_netcdf::read_file(&p).unwrap();
    assert_same_file(&ours, &reference(&p), "netcdf3-written file");
    assert_eq!(ours.format, NcFormat::Offset64);
    // The lazy reader gives the same values.
    let mut r = atlas_netcdf::ClassicReader::open(&p).unwrap();
    for v in &ours.vars {
        assert!(r.read_var(&v.name).unwrap().unwrap().same_bits(&v.values));
    }
    assert!(r.read_var("nope").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_export_gives_back_the_same_file() {
    for nc in [
        everything(NcFormat::Classic),
        everything(NcFormat::Offset64),
        single_record_var(),
    ] {
        let back = import_export(&nc).await;
        assert_same_file(&back, &nc, &format!("{:?}", nc.format));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdf5_types_round_trip() {
    let nc = NcFile {
        format: NcFormat::Cdf5,
        dims: vec![dim("n", 2, false), dim("r", 2, true)],
        attrs: vec![
            attr("u8s", NcValues::UByte(vec![0, 255])),
            attr("u16", NcValues::UShort(vec![65535])),
            attr("u32", NcValues::UInt(vec![4_000_000_000])),
            attr("i64", NcValues::Int64(vec![i64::MIN])),
            attr("u64s", NcValues::UInt64(vec![u64::MAX, 1])),
            attr("small_u64", NcValues::UInt64(vec![5])),
        ],
        vars: vec![
            var("a", &[0], vec![], NcValues::UByte(vec![1, 255])),
            var("b", &[0], vec![], NcValues::UShort(vec![1, 65535])),
            var(
                "c",
                &[1, 0],
                vec![],
                NcValues::UInt(vec![1, 2, 3, u32::MAX]),
            ),
            var(
                "d",
                &[0],
                vec![attr("_FillValue", NcValues::Int64(vec![-1]))],
                NcValues::Int64(vec![i64::MIN, i64::MAX]),
            ),
            var("e", &[1], vec![], NcValues::UInt64(vec![0, u64::MAX])),
        ],
    };
    let back = import_export(&nc).await;
    assert_same_file(&back, &nc, "cdf5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_maps_types_strings_and_fill_values() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("all.nc");
    atlas_netcdf::write_file(&everything(NcFormat::Classic), &src, None).unwrap();
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    let name = atlas_netcdf::import_file(&store, &src, None, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(name, "all");
    let ds = store.open_dataset("all").await.unwrap();
    let strings = |a: &'static str| {
        let ds = ds.clone();
        async move {
            ds.read_array::<String>(a, vec![], vec![])
                .await
                .unwrap()
                .unwrap()
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        }
    };
    // Trailing NULs are trimmed; spaces kept; a scalar char is a 1-char string.
    assert_eq!(strings("names").await, ["ab", "abcd", ""]);
    assert_eq!(strings("c_scalar").await, ["Q"]);
    assert_eq!(strings("latin").await, ["éa", "zz  "]);
    assert_eq!(strings("rec_c").await, ["one", "two", "thre"]);
    let s = ds.array_schema("names").unwrap().unwrap();
    assert_eq!(
        (s.dtype, s.dims.clone(), s.shape.clone()),
        (DType::String, vec!["x".to_owned()], vec![3])
    );
    assert!(s
        .fill_value
        .unwrap()
        .same_as(&FillValue::String("    ".into())));
    assert_eq!(
        ds.get_array_attribute("names", "_nc_char_dim"),
        Some(Attr::String("strlen".into()))
    );
    assert_eq!(
        ds.get_array_attribute("latin", "_nc_type"),
        Some(Attr::String("char_latin1".into()))
    );
    assert_eq!(
        ds.get_array_attribute("latin", "comment"),
        Some(Attr::String("café".into()))
    );
    assert_eq!(
        ds.get_array_attribute("latin", "_nc_attr_types"),
        Some(Attr::StringList(vec!["char_latin1:comment".into()]))
    );
    // Fill values: _FillValue, else the type's NetCDF default.
    let fill = |a: &str| ds.array_schema(a).unwrap().unwrap().fill_value.unwrap();
    assert!(fill("b").same_as(&FillValue::Int8(-1)));
    assert!(fill("s").same_as(&FillValue::Int16(-32767)));
    assert!(fill("i").same_as(&FillValue::Int32(-2_147_483_647)));
    assert!(fill("f").same_as(&FillValue::Float32(netcdf3::NC_FILL_F32)));
    assert!(fill("d").same_as(&FillValue::Float64(f64::NAN)));
    assert!(fill("rec_c").same_as(&FillValue::String(String::new())));
    assert_eq!(
        netcdf3::NC_FILL_F64.to_bits(),
        atlas_netcdf::model::default_fill::DOUBLE.to_bits()
    );
    assert_eq!(netcdf3::NC_FILL_I8, atlas_netcdf::model::default_fill::BYTE);
    assert_eq!(
        netcdf3::NC_FILL_I16,
        atlas_netcdf::model::default_fill::SHORT
    );
    assert_eq!(netcdf3::NC_FILL_I32, atlas_netcdf::model::default_fill::INT);
    // Scalars are rank-0 arrays; record variables keep the record dimension.
    let i = ds.array_schema("i").unwrap().unwrap();
    assert!(i.shape.is_empty());
    let r = ds.array_schema("rec_f").unwrap().unwrap();
    assert_eq!(
        (r.dims.clone(), r.shape.clone()),
        (vec!["rec".to_owned(), "y".to_owned()], vec![3, 2])
    );
    // Attributes: 1-element numbers are scalars, others lists; types recorded.
    let g = ds.attributes();
    assert_eq!(g["one_int"], Attr::Int64(7));
    assert_eq!(g["ints"], Attr::Int64List(vec![1, -2, i64::from(i32::MAX)]));
    assert_eq!(g["a_short"], Attr::Int64(-3));
    assert_eq!(g["no_doubles"], Attr::Float64List(vec![]));
    assert_eq!(g["empty_text"], Attr::String(String::new()));
    assert_eq!(g["title"], Attr::String("température ✓".into()));
    assert_eq!(
        g["_nc_attr_types"],
        Attr::StringList(vec![
            "byte:bytes".into(),
            "short:a_short".into(),
            "float:floats".into()
        ])
    );
    assert_eq!(g["_nc_unlimited"], Attr::StringList(vec!["rec".into()]));
    assert_eq!(g["_nc_format"], Attr::String("classic".into()));

    // The trim-spaces option also drops trailing spaces.
    let opts = ImportOptions {
        trim_spaces: true,
        ..ImportOptions::default()
    };
    atlas_netcdf::import_file(&store, &src, Some("trimmed"), &opts)
        .await
        .unwrap();
    let t = store.open_dataset("trimmed").await.unwrap();
    let latin: Vec<String> = t
        .read_array::<String>("latin", vec![], vec![])
        .await
        .unwrap()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(latin, ["éa", "zz"]);
}

#[test]
fn chunk_shapes_follow_the_size_rule() {
    // Up to 1 MiB: one chunk.
    assert_eq!(chunk_shape(&[1, 1000], 4, 1 << 20), [1, 1000]);
    assert_eq!(chunk_shape(&[512, 512], 4, 1 << 20), [512, 512]);
    // Larger: split the leading dimension.
    assert_eq!(chunk_shape(&[1024, 512], 4, 1 << 20), [512, 512]);
    assert_eq!(chunk_shape(&[100, 1000, 1000], 4, 1 << 20), [1, 262, 1000]);
    // Extent-0 axes get chunk extent 1; scalars have no axes.
    assert_eq!(chunk_shape(&[0, 8], 4, 1 << 20), [1, 8]);
    assert!(chunk_shape(&[], 8, 1 << 20).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_not_from_netcdf_export_with_default_types() {
    let dir = tempfile::tempdir().unwrap();
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    let ds = store.create_dataset("made_here").await.unwrap();
    ds.define_array::<f32>(
        "temp",
        vec!["level".into()],
        vec![3],
        None,
        Some(FillValue::Float32(-1.0)),
    )
    .await
    .unwrap();
    ds.write_array(
        "temp",
        vec![0],
        ndarray::arr1(&[1.0f32, 2.0, 3.0]).into_dyn().view(),
    )
    .await
    .unwrap();
    ds.define_array::<String>("station", vec!["level".into()], vec![3], None, None)
        .await
        .unwrap();
    let names = ndarray::arr1(&["a".to_owned(), "bcd".to_owned(), String::new()]).into_dyn();
    ds.write_array("station", vec![0], names.view())
        .await
        .unwrap();
    ds.set_attribute("count", Attr::Int64(3)).unwrap();
    ds.set_attribute("ok", Attr::Bool(true)).unwrap();
    ds.set_array_attribute("temp", "units", Attr::String("K".into()))
        .unwrap();
    let out = dir.path().join("made_here.nc");
    let s = atlas_netcdf::export_dataset(&store, "made_here", &out, Default::default())
        .await
        .unwrap();
    assert_eq!(s.format, NcFormat::Classic);
    let r = reference(&out);
    assert_eq!(
        r.dims,
        vec![dim("level", 3, false), dim("station_strlen", 3, false)]
    );
    assert_eq!(r.attrs[0], attr("count", NcValues::Int(vec![3])));
    assert_eq!(r.attrs[1], attr("ok", NcValues::Byte(vec![1])));
    let temp = r.var("temp").unwrap();
    assert_eq!(temp.values, NcValues::Float(vec![1.0, 2.0, 3.0]));
    assert_eq!(
        temp.attrs,
        vec![
            attr("units", NcValues::Char(b"K".to_vec())),
            attr("_FillValue", NcValues::Float(vec![-1.0]))
        ]
    );
    assert_eq!(
        r.var("station").unwrap().values,
        NcValues::Char(b"a\0\0bcd\0\0\0".to_vec())
    );
    // A type classic lacks raises the format to CDF5.
    ds.define_array::<u16>("flags", vec!["level".into()], vec![3], None, None)
        .await
        .unwrap();
    let s = atlas_netcdf::export_dataset(&store, "made_here", &out, Default::default())
        .await
        .unwrap();
    assert_eq!(s.format, NcFormat::Cdf5);
    let back = atlas_netcdf::read_file(&out).unwrap();
    assert_eq!(
        back.var("flags").unwrap().values,
        NcValues::UShort(vec![0, 0, 0])
    );
    // ... unless classic is asked for.
    let e = atlas_netcdf::export_dataset(
        &store,
        "made_here",
        &out,
        atlas_netcdf::ExportOptions {
            format: Some(NcFormat::Classic),
        },
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("ushort"), "{e}");
}

/// A bulk import converts a variable's attributes once while the files
/// repeat them; every dataset must still get exactly what planning its file
/// alone gives: not the previous file's set when a value differs only in
/// the sign of a zero, when the text turns Latin-1 (its type tag), or when
/// the char dimension is renamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_import_reuses_attributes_only_when_they_convert_the_same() {
    fn file(scale: f64, text: &[u8], strlen: &str, units: &str) -> NcFile {
        NcFile {
            format: NcFormat::Classic,
            dims: vec![dim("n", 2, false), dim(strlen, 3, false)],
            attrs: vec![attr("title", NcValues::Char(b"t".to_vec()))],
            vars: vec![
                var(
                    "temp",
                    &[0],
                    vec![
                        attr("units", NcValues::Char(units.as_bytes().to_vec())),
                        attr("scale", NcValues::Double(vec![scale])),
                        attr("nan", NcValues::Float(vec![f32::NAN])),
                    ],
                    NcValues::Float(vec![1.0, 2.0]),
                ),
                var(
                    "name",
                    &[0, 1],
                    vec![attr("long_name", NcValues::Char(b"a name".to_vec()))],
                    NcValues::Char(text.to_vec()),
                ),
            ],
        }
    }
    let ascii = b"ab\0cd\0";
    let files = [
        file(0.0, ascii, "strlen", "K"),
        file(0.0, ascii, "strlen", "K"),
        file(-0.0, ascii, "strlen", "K"),
        file(-0.0, b"\xe9b\0cd\0", "strlen", "K"),
        file(-0.0, ascii, "len", "K"),
        file(-0.0, ascii, "len", "degC"),
        file(0.0, ascii, "strlen", "K"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (i, nc) in files.iter().enumerate() {
        atlas_netcdf::write_file(nc, src.join(format!("f{i}.nc")), None).unwrap();
    }
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    // One decoder: every file after the first meets the previous one's sets.
    let opts = atlas_netcdf::BulkOptions {
        jobs: 1,
        ..Default::default()
    };
    let report = atlas_netcdf::import_paths(&store, std::slice::from_ref(&src), &opts, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.imported, files.len());
    for (i, nc) in files.iter().enumerate() {
        let name = format!("f{i}");
        let path = src.join(format!("{name}.nc"));
        let alone = atlas_netcdf::plan(nc, &name, &ImportOptions::default(), &path).unwrap();
        let ds = store.open_dataset(&name).await.unwrap();
        for a in &alone.arrays {
            // Debug text tells -0.0 from 0.0 (`==` does not) and shows NaNs.
            assert_eq!(
                format!("{:?}", ds.array_attributes(&a.name).unwrap()),
                format!("{:?}", a.attrs),
                "{name}/{}",
                a.name
            );
        }
    }
    let ds = store.open_dataset("f3").await.unwrap();
    assert_eq!(
        ds.get_array_attribute("name", "_nc_type"),
        Some(Attr::String("char_latin1".into()))
    );
    let ds = store.open_dataset("f4").await.unwrap();
    assert_eq!(
        ds.get_array_attribute("name", "_nc_char_dim"),
        Some(Attr::String("len".into()))
    );
}
