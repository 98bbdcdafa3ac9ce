//! Bad calls give typed errors and change nothing: unknown arrays, wrong dtype,
//! wrong rank, out-of-bounds regions, bad schemas, duplicate definitions,
//! invalid names, mismatched fill values, bad layer lists.

use array_format::{ArrayFileOptions, DType, Error, FillValue, LayerId, MAX_NAME_BYTES};
use ndarray::{ArrayD, IxDyn};

use crate::common::{dims, dump, mem_file, mem_open, nd};

fn file_with_a() -> (
    std::sync::Arc<array_format::MemoryStorage>,
    array_format::ArrayFile,
) {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    f.define_array::<f32>("a", dims(2), vec![4, 6], Some(vec![2, 4]), None)
        .unwrap();
    f.write_array(
        "a",
        &[1, 1],
        nd(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).view(),
    )
    .unwrap();
    (storage, f)
}

#[test]
fn unknown_arrays_are_array_not_found() {
    let (_, mut f) = file_with_a();
    let nf = |r: &Result<_, Error>, name: &str| {
        assert!(
            matches!(r, Err(Error::ArrayNotFound { name: n }) if n == name),
            "{:?}",
            r.as_ref().err()
        );
    };
    nf(&f.read_array::<f32>("nope", &[], &[]).map(drop), "nope");
    nf(
        &f.write_array("nope", &[], nd(&[1], vec![1.0f32]).view()),
        "nope",
    );
    nf(&f.delete_array("nope"), "nope");
    nf(&f.array_stats("nope").map(drop), "nope");
    nf(&f.array_meta("nope").map(drop), "nope");
    assert!(f.schema("nope").is_none() && f.dtype("nope").is_none() && !f.contains("nope"));
    // Deleted arrays are unknown too, before and after a flush.
    f.delete_array("a").unwrap();
    nf(&f.read_array::<f32>("a", &[], &[]).map(drop), "a");
    nf(&f.delete_array("a"), "a");
    f.flush().unwrap();
    nf(&f.read_array::<f32>("a", &[], &[]).map(drop), "a");
}

#[test]
fn wrong_dtype_is_dtype_mismatch() {
    let (_, mut f) = file_with_a();
    let before = dump(&f).unwrap();
    let r = f.read_array::<f64>("a", &[], &[]);
    assert!(
        matches!(
            r,
            Err(Error::DTypeMismatch { ref name, stored: DType::Float32, requested: DType::Float64 }) if name == "a"
        ),
        "{r:?}"
    );
    let r = f.write_array("a", &[0, 0], nd(&[1, 1], vec![1i32]).view());
    assert!(
        matches!(
            r,
            Err(Error::DTypeMismatch {
                stored: DType::Float32,
                requested: DType::Int32,
                ..
            })
        ),
        "{r:?}"
    );
    let r = f.read_array::<String>("a", &[0, 0], &[1, 1]);
    assert!(matches!(r, Err(Error::DTypeMismatch { .. })), "{r:?}");
    f.flush().unwrap();
    let r = f.read_array::<bool>("a", &[], &[]);
    assert!(matches!(r, Err(Error::DTypeMismatch { .. })), "{r:?}");
    assert_eq!(dump(&f).unwrap(), before);
}

#[test]
fn wrong_rank_is_rank_mismatch() {
    let (_, mut f) = file_with_a();
    let before = dump(&f).unwrap();
    let rm = |r: Result<(), Error>, actual: usize| {
        assert!(
            matches!(r, Err(Error::RankMismatch { expected: 2, actual: a, .. }) if a == actual),
            "{r:?}"
        );
    };
    rm(f.read_array::<f32>("a", &[0], &[1]).map(drop), 1);
    rm(
        f.read_array::<f32>("a", &[0, 0, 0], &[1, 1, 1]).map(drop),
        3,
    );
    rm(f.read_array::<f32>("a", &[0, 0], &[1]).map(drop), 1);
    rm(f.write_array("a", &[0], nd(&[1], vec![1.0f32]).view()), 1);
    rm(
        f.write_array("a", &[], nd(&[1, 1, 1], vec![1.0f32]).view()),
        3,
    );
    rm(
        f.write_array("a", &[], ArrayD::from_elem(IxDyn(&[]), 1.0f32).view()),
        0,
    );
    // Data of rank 2 at a start of rank 3.
    rm(
        f.write_array("a", &[0, 0, 0], nd(&[1, 1], vec![1.0f32]).view()),
        3,
    );
    assert_eq!(dump(&f).unwrap(), before);
}

#[test]
fn regions_outside_the_array_are_out_of_bounds() {
    let (_, mut f) = file_with_a();
    let before = dump(&f).unwrap();
    let oob = |r: Result<(), Error>| {
        assert!(
            matches!(&r, Err(Error::OutOfBounds { shape, .. }) if *shape == vec![4, 6]),
            "{r:?}"
        );
    };
    oob(f.read_array::<f32>("a", &[0, 0], &[5, 1]).map(drop));
    oob(f.read_array::<f32>("a", &[3, 5], &[1, 2]).map(drop));
    oob(f.read_array::<f32>("a", &[4, 0], &[1, 1]).map(drop));
    oob(f.read_array::<f32>("a", &[u64::MAX, 0], &[2, 1]).map(drop));
    oob(f.read_array::<f32>("a", &[5, 0], &[0, 1]).map(drop));
    oob(f.write_array("a", &[3, 0], nd(&[2, 1], vec![1.0f32; 2]).view()));
    oob(f.write_array("a", &[0, 6], nd(&[1, 1], vec![1.0f32]).view()));
    oob(f.write_array("a", &[0, 0], nd(&[4, 7], vec![1.0f32; 28]).view()));
    // Empty regions inside the bounds are fine.
    assert_eq!(f.read_array::<f32>("a", &[4, 6], &[0, 0]).unwrap().len(), 0);
    f.write_array("a", &[4, 0], nd(&[0, 6], Vec::<f32>::new()).view())
        .unwrap();
    assert_eq!(dump(&f).unwrap(), before);
}

#[test]
fn bad_schemas_are_invalid_schema() {
    let (_, mut f) = mem_file(ArrayFileOptions::default());
    let is = |r: Result<(), Error>| {
        assert!(matches!(r, Err(Error::InvalidSchema { .. })), "{r:?}");
    };
    is(f.define_array::<f32>("z", dims(2), vec![4, 4], Some(vec![0, 2]), None));
    is(f.define_array::<f32>("z", dims(2), vec![4, 4], Some(vec![2]), None));
    is(f.define_array::<f32>("z", dims(1), vec![4], Some(vec![2, 2]), None));
    is(f.define_array::<f32>("z", dims(1), vec![4, 4], None, None));
    is(f.define_array::<f32>("z", vec![String::new()], vec![4], None, None));
    is(f.define_array::<f32>("z", vec!["a\0b".into()], vec![4], None, None));
    is(f.define_array::<f64>("z", dims(1), vec![1 << 40], None, None));
    is(f.define_array::<u8>("z", dims(2), vec![u64::MAX, 4], Some(vec![1, 1]), None));
    is(f.define_array::<i8>("z", dims(33), vec![1; 33], None, None));
    assert!(!f.contains("z") && !f.has_pending());
}

#[test]
fn defining_twice_is_array_exists() {
    let (storage, mut f) = file_with_a();
    let ae = |r: Result<(), Error>| {
        assert!(
            matches!(&r, Err(Error::ArrayExists { name }) if name == "a"),
            "{r:?}"
        );
    };
    ae(f.define_array::<f32>("a", dims(2), vec![4, 6], Some(vec![2, 4]), None));
    ae(f.define_array::<i32>("a", dims(1), vec![1], None, None));
    f.flush().unwrap();
    ae(f.define_array::<f32>("a", dims(1), vec![1], None, None));
    let mut g = mem_open(&storage, &f.layers()).unwrap();
    ae(g.define_array::<f32>("a", dims(1), vec![1], None, None));
    // The original is unchanged.
    let got = g.read_array::<f32>("a", &[1, 1], &[2, 2]).unwrap();
    assert_eq!(
        got.iter().copied().collect::<Vec<_>>(),
        vec![1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn invalid_names_are_invalid_name() {
    let (_, mut f) = mem_file(ArrayFileOptions::default());
    let long = "n".repeat(MAX_NAME_BYTES + 1);
    let exact = "n".repeat(MAX_NAME_BYTES);
    for name in ["", "a\0b", "\0", long.as_str()] {
        let r = f.define_array::<f32>(name, dims(1), vec![2], None, None);
        assert!(
            matches!(&r, Err(Error::InvalidName { name: n, .. }) if n == name),
            "{name:?}: {r:?}"
        );
        assert!(matches!(
            array_format::validate_array_name(name),
            Err(Error::InvalidName { .. })
        ));
    }
    // 1024 bytes of multi-byte characters is still fine; 1025 bytes is not.
    f.define_array::<f32>(&exact, dims(1), vec![2], None, None)
        .unwrap();
    let multibyte = "é".repeat(MAX_NAME_BYTES / 2);
    f.define_array::<f32>(&multibyte, dims(1), vec![2], None, None)
        .unwrap();
    let over = format!("{multibyte}x");
    assert!(matches!(
        f.define_array::<f32>(&over, dims(1), vec![2], None, None),
        Err(Error::InvalidName { .. })
    ));
    f.flush().unwrap();
    assert_eq!(f.len(), 2);
}

#[test]
fn fill_values_of_another_type_are_fill_mismatch() {
    let (_, mut f) = mem_file(ArrayFileOptions::default());
    let fm = |r: Result<(), Error>, fill: DType, dtype: DType| {
        assert!(
            matches!(&r, Err(Error::FillMismatch { fill: a, dtype: b, .. }) if *a == fill && *b == dtype),
            "{r:?}"
        );
    };
    fm(
        f.define_array::<f32>("x", dims(1), vec![2], None, Some(FillValue::Int32(1))),
        DType::Int32,
        DType::Float32,
    );
    fm(
        f.define_array::<f64>("x", dims(1), vec![2], None, Some(FillValue::Float32(1.0))),
        DType::Float32,
        DType::Float64,
    );
    fm(
        f.define_array::<String>("x", dims(1), vec![2], None, Some(FillValue::Bool(true))),
        DType::Bool,
        DType::String,
    );
    fm(
        f.define_array::<u8>("x", vec![], vec![], None, Some(FillValue::Int8(1))),
        DType::Int8,
        DType::UInt8,
    );
    assert!(!f.contains("x"));
}

#[test]
fn bad_layer_lists_are_errors() {
    let (storage, mut f) = file_with_a();
    let first = f.flush().unwrap().unwrap();
    f.write_array("a", &[0, 0], nd(&[1, 1], vec![9.0f32]).view())
        .unwrap();
    let second = f.flush().unwrap().unwrap();
    // A missing file is an I/O error.
    let missing = LayerId::new(format!("d-{}.af", "0".repeat(32))).unwrap();
    assert!(matches!(
        mem_open(&storage, &[first.clone(), missing]),
        Err(Error::Io { .. })
    ));
    // A delta that updates an array no earlier layer defines is corrupt: the
    // name's state is built on first use, so that use fails (opening reads
    // only the footer indexes).
    let lone = mem_open(&storage, std::slice::from_ref(&second)).unwrap();
    assert!(matches!(
        lone.read_array::<f32>("a", &[], &[]),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(lone.try_list_arrays(), Err(Error::Corrupt { .. })));
    assert!(matches!(lone.verify(), Err(Error::Corrupt { .. })));
    // The right list opens.
    assert!(mem_open(&storage, &[first, second]).is_ok());
}

/// `docs/format.md`: layer names are `d-` or `b-`, 32 *lowercase* hex digits and
/// `.af`, and a reader must reject any other name (so a registry cannot point
/// outside the directory, nor at a second spelling of the same name on a
/// case-insensitive filesystem).
#[test]
fn layer_ids_follow_the_format_spec() {
    for good in [
        "d-00000000000000000000000000000000.af",
        "b-0123456789abcdef0123456789abcdef.af",
    ] {
        assert_eq!(
            LayerId::new(good).map(|id| id.to_string()),
            Some(good.to_owned())
        );
    }
    for bad in [
        "",
        "d-0.af",
        "../d-00000000000000000000000000000000.af",
        "d-00000000000000000000000000000000.af/",
        "x-00000000000000000000000000000000.af",
        "D-00000000000000000000000000000000.af",
        "d-0000000000000000000000000000000g.af",
        "d-00000000000000000000000000000000.afx",
        "d-00000000000000000000000000000000.AF",
        "d-00000000000000000000000000000000.tmp",
        "d-+0000000000000000000000000000000.af",
        "b-0123456789ABCDEF0123456789abcdef.af",
    ] {
        assert!(LayerId::new(bad).is_none(), "{bad:?} accepted");
    }
}

/// A hand-built schema (public fields) goes through the same validation as
/// `ArraySchema::new`: a zero chunk extent or a rank mismatch is `InvalidSchema`
/// at `define`, never a panic at the next write.
#[test]
fn hand_built_schemas_are_validated_at_define() {
    use array_format::ArraySchema;
    let (_, mut f) = mem_file(ArrayFileOptions::default());
    let good = ArraySchema::new(
        "a",
        DType::Float32,
        dims(2),
        vec![4, 6],
        Some(vec![2, 3]),
        None,
    )
    .unwrap();
    let mut zero = good.clone();
    zero.chunk_shape = vec![0, 3];
    let mut rank = good.clone();
    rank.chunk_shape = vec![2];
    let mut dims_short = good.clone();
    dims_short.dims.pop();
    let mut fill = good.clone();
    fill.fill_value = Some(FillValue::Int32(1));
    for (what, bad) in [("zero", zero), ("rank", rank), ("dims", dims_short)] {
        let r = f.define("a", bad);
        assert!(
            matches!(r, Err(Error::InvalidSchema { .. })),
            "{what}: {r:?}"
        );
        assert_eq!(r.unwrap_err().kind(), array_format::ErrorKind::InvalidInput);
    }
    assert!(matches!(
        f.define("a", fill),
        Err(Error::FillMismatch { .. })
    ));
    assert!(!f.contains("a"), "a refused schema defines nothing");
    f.define("a", good).unwrap();
    f.write_array("a", &[0, 0], nd(&[1, 1], vec![1.0f32]).view())
        .unwrap();
}

/// Blosc2 requested from a build without the `blosc2` feature is refused with
/// `CodecUnavailable` (it used to be stored as Zstd without a word).
#[cfg(not(feature = "blosc2"))]
#[test]
fn blosc2_without_the_feature_is_codec_unavailable() {
    use array_format::{Codec, Compression};
    let opts = ArrayFileOptions {
        compression: Compression {
            codec: Codec::Blosc2 { level: 5 },
            shuffle: true,
        },
        ..ArrayFileOptions::default()
    };
    let storage: std::sync::Arc<dyn array_format::Storage> =
        std::sync::Arc::new(array_format::MemoryStorage::new());
    let cache = std::sync::Arc::new(array_format::DeltaCache::new(
        array_format::DeltaCacheConfig::default(),
    ));
    let r = array_format::ArrayFile::create(storage, "/b".as_ref(), opts, cache);
    let e = r.expect_err("refused");
    assert!(
        matches!(
            e,
            Error::CodecUnavailable {
                codec: "blosc2",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), array_format::ErrorKind::Unsupported);
    let (_, mut f) = mem_file(ArrayFileOptions::default());
    let e = f.set_options(opts).unwrap_err();
    assert!(matches!(e, Error::CodecUnavailable { .. }), "{e:?}");
}
