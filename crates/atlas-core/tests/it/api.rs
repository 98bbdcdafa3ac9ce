//! Every public method of `Atlas` and `DatasetView`, with asserted results,
//! on `LocalStorage` (temp dir) and `MemoryStorage`; every dtype round trip;
//! statistics; layer bookkeeping; `verify` on healthy and damaged stores.

use std::path::Path;
use std::sync::Arc;

use atlas_core::verify::verify;
use atlas_core::{
    ArrayElement, ArraySchema, Atlas, Attr, Codec, DType, Error, FillValue, MemoryStorage,
    MetaFormat, OpenOptions, StatValue, StoreConfig, TimestampNs, REGISTRY_FILE,
};
use indexmap::IndexMap;

use crate::common::{
    arr, arr1, cells, create_mem, full, mem_root, newest_layer, no_grace, reopen_mem, snapshot,
    strings,
};

#[tokio::test]
async fn local_store_lifecycle_and_dataset_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("nested").join("store");
    let s = Atlas::create_path(&root, no_grace()).await.unwrap();
    assert!(
        root.join(REGISTRY_FILE).is_file(),
        "create_path writes atlas.json"
    );
    assert_eq!(s.root(), root.as_path());
    assert!(s.is_writer(), "the creator holds the writer lock");
    assert_eq!(s.generation(), 1);
    assert_eq!(s.meta_format(), MetaFormat::Json);
    assert_eq!(s.compression(), atlas_core::Compression::default());
    assert!(s.list_datasets().unwrap().is_empty());
    assert!(s.list_arrays().is_empty());
    assert_eq!(s.n_datasets(), 0);

    // Insertion order, deliberately not sorted.
    let names = ["zulu", "alpha", "mike", "bravo", "echo"];
    for n in names {
        let ds = s.create_dataset(n).await.unwrap();
        assert_eq!(ds.name(), n);
    }
    assert_eq!(s.list_datasets().unwrap(), strings(&names));
    assert_eq!(s.n_datasets(), names.len());
    assert!(s.dataset_exists("mike").unwrap());
    assert!(!s.dataset_exists("november").unwrap());
    assert!(matches!(
        s.create_dataset("alpha").await,
        Err(Error::DatasetExists { name }) if name == "alpha"
    ));

    let zulu = s.open_dataset("zulu").await.unwrap();
    zulu.define_array::<f32>("temp", strings(&["y", "x"]), vec![2, 3], None, None)
        .await
        .unwrap();
    zulu.define_array::<i32>("sal", strings(&["z"]), vec![4], Some(vec![2]), None)
        .await
        .unwrap();
    let alpha = s.open_dataset("alpha").await.unwrap();
    alpha
        .define_array::<i32>("sal", strings(&["z"]), vec![4], Some(vec![2]), None)
        .await
        .unwrap();
    alpha
        .define_array::<f64>("depth", strings(&["z"]), vec![3], None, None)
        .await
        .unwrap();
    assert_eq!(s.list_arrays(), strings(&["temp", "sal", "depth"]));
    assert_eq!(zulu.list_arrays().unwrap(), strings(&["temp", "sal"]));
    assert_eq!(alpha.list_arrays().unwrap(), strings(&["sal", "depth"]));
    let meta = s.dataset_meta("zulu").unwrap().unwrap();
    assert_eq!(
        meta.arrays.keys().cloned().collect::<Vec<_>>(),
        strings(&["temp", "sal"])
    );
    assert_eq!(meta.arrays["temp"].schema.shape, vec![2, 3]);
    assert!(s.dataset_meta("nope").unwrap().is_none());

    let t = arr(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
    zulu.write_array("temp", vec![0, 0], t.view())
        .await
        .unwrap();
    alpha
        .write_array("sal", vec![], arr1(vec![7i32, 8, 9, 10]).view())
        .await
        .unwrap();
    zulu.set_attribute("title", Attr::from("zulu data"))
        .unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.generation(), 2);
    // A flush with nothing to commit changes nothing.
    s.flush().await.unwrap();
    assert_eq!(s.generation(), 2, "an empty flush must not commit");

    let before = snapshot(&s).await;
    drop((zulu, alpha));
    drop(s);

    let r = Atlas::open_path(&root).await.unwrap();
    assert!(
        !r.is_writer(),
        "open_path is read-only until the first mutation"
    );
    assert_eq!(r.generation(), 2);
    assert_eq!(
        r.list_datasets().unwrap(),
        strings(&names),
        "order survives reopen"
    );
    assert_eq!(r.list_arrays(), strings(&["temp", "sal", "depth"]));
    assert_eq!(snapshot(&r).await, before);
    let z = r.open_dataset("zulu").await.unwrap();
    let got = z
        .read_array::<f32>("temp", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, t);
    assert!(
        r.cache().decoded_stats().misses + r.cache().decoded_stats().hits >= 1,
        "reads go through the handle's cache"
    );
    assert_eq!(z.get_attribute("title"), Some(Attr::from("zulu data")));

    // Mutating takes the writer lock.
    r.delete_dataset("mike").await.unwrap();
    assert!(r.is_writer());
    assert!(!r.dataset_exists("mike").unwrap());
    assert!(matches!(
        r.open_dataset("mike").await,
        Err(Error::DatasetNotFound { name }) if name == "mike"
    ));
    // Deleting the only user of `depth`... is `alpha`; delete it too.
    let depth_dir = r.array_dir("depth").expect("depth has a directory");
    r.delete_dataset("alpha").await.unwrap();
    assert_eq!(r.list_arrays(), strings(&["temp", "sal"]));
    r.flush().await.unwrap();
    assert!(
        r.array_layers("depth").is_empty(),
        "array no dataset uses is dropped from the registry"
    );
    drop((z, r));

    let r2 = Atlas::open_path(&root).await.unwrap();
    assert_eq!(
        r2.list_datasets().unwrap(),
        strings(&["zulu", "bravo", "echo"])
    );
    assert_eq!(r2.generation(), 3);
    assert!(
        !depth_dir.exists(),
        "the dropped array's directory is removed after the commit"
    );
}

#[tokio::test]
async fn memory_store_create_with_and_open_with_options() {
    let storage = MemoryStorage::new();
    let cfg = StoreConfig {
        codec: Codec::Zstd { level: 3 },
        shuffle: false,
        meta_format: MetaFormat::Binary,
        ..StoreConfig::default()
    };
    let s = create_mem(&storage, cfg).await;
    assert_eq!(s.root(), mem_root().as_path());
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<u16>("v", strings(&["i"]), vec![5], Some(vec![2]), None)
        .await
        .unwrap();
    ds.write_array("v", vec![1], arr1(vec![3u16, 4, 5]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    drop((ds, s));
    // Creating again over the same storage fails.
    assert!(matches!(
        Atlas::create_with(
            Arc::new(storage.clone()),
            &mem_root(),
            StoreConfig::default()
        )
        .await,
        Err(Error::StoreExists { .. })
    ));
    let w = Atlas::open_with(
        Arc::new(storage.clone()),
        &mem_root(),
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(w.is_writer(), "OpenOptions::write takes the lock at open");
    assert_eq!(
        w.compression(),
        atlas_core::Compression {
            codec: Codec::Zstd { level: 3 },
            shuffle: false
        },
        "codec persists in the store"
    );
    assert_eq!(
        w.meta_format(),
        MetaFormat::Binary,
        "format detected on open"
    );
    let d = w.open_dataset("d").await.unwrap();
    let v = d
        .read_array::<u16>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&v), vec![0, 3, 4, 5, 0]);
    // A second handle cannot take the lock while `w` has it.
    let other = reopen_mem(&storage, "second handle").await;
    assert!(!other.is_writer());
    assert!(matches!(
        other.create_dataset("x").await,
        Err(Error::Locked { path }) if path == mem_root()
    ));
}

/// Defines `name` of type `T` with shape `[6]`, chunk `[4]` (two chunks), writes
/// `vals` (two cells) at `[1..3]`, and checks reads before and after flush and
/// reopen: written cells round trip, unwritten ones read as the fill value
/// (the type's zero without one).
async fn dtype_round_trip<T: ArrayElement + PartialEq>(
    storage: &MemoryStorage,
    atlas: &Atlas,
    name: &str,
    fill: Option<T>,
    vals: [T; 2],
) {
    let ds = atlas.open_dataset("types").await.unwrap();
    ds.define_array::<T>(
        name,
        strings(&["i"]),
        vec![6],
        Some(vec![4]),
        fill.as_ref().map(ArrayElement::to_fill),
    )
    .await
    .unwrap_or_else(|e| panic!("define {name}: {e}"));
    let f = fill.clone().unwrap_or_default();
    let fresh = ds
        .read_array::<T>(name, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cells(&fresh),
        vec![f.clone(); 6],
        "{name}: unwritten reads as fill"
    );
    ds.write_array(name, vec![1], arr1(vals.to_vec()).view())
        .await
        .unwrap();
    let want = vec![
        f.clone(),
        vals[0].clone(),
        vals[1].clone(),
        f.clone(),
        f.clone(),
        f.clone(),
    ];
    let got = ds
        .read_array::<T>(name, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), want, "{name}: before flush");
    let part = ds
        .read_array::<T>(name, vec![2], vec![3])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&part), want[2..5].to_vec(), "{name}: hyperslab read");
    atlas.flush().await.unwrap();
    let got = ds
        .read_array::<T>(name, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), want, "{name}: after flush");
    let r = reopen_mem(storage, name).await;
    let rd = r.open_dataset("types").await.unwrap();
    let got = rd
        .read_array::<T>(name, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), want, "{name}: after reopen");
    let schema = rd.array_schema(name).unwrap().unwrap();
    assert_eq!(schema.dtype, T::DTYPE);
    assert_eq!(schema.fill_value, fill.as_ref().map(ArrayElement::to_fill));
    assert_eq!(schema.chunk_shape, vec![4]);
}

#[tokio::test]
async fn every_dtype_round_trips_with_and_without_fill() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    s.create_dataset("types").await.unwrap();
    dtype_round_trip(&storage, &s, "b", None, [true, false]).await;
    dtype_round_trip(&storage, &s, "b_fill", Some(true), [false, true]).await;
    dtype_round_trip(&storage, &s, "i8", None, [i8::MIN, 5]).await;
    dtype_round_trip(&storage, &s, "i8_fill", Some(-7i8), [i8::MAX, 0]).await;
    dtype_round_trip(&storage, &s, "i16", None, [i16::MIN, -1]).await;
    dtype_round_trip(&storage, &s, "i16_fill", Some(-300i16), [i16::MAX, 1]).await;
    dtype_round_trip(&storage, &s, "i32", None, [i32::MIN, 2]).await;
    dtype_round_trip(&storage, &s, "i32_fill", Some(-99_999i32), [i32::MAX, 3]).await;
    dtype_round_trip(&storage, &s, "i64", None, [i64::MIN, 4]).await;
    dtype_round_trip(&storage, &s, "i64_fill", Some(i64::MIN), [i64::MAX, 5]).await;
    dtype_round_trip(&storage, &s, "u8", None, [u8::MAX, 6]).await;
    dtype_round_trip(&storage, &s, "u8_fill", Some(255u8), [1, 7]).await;
    dtype_round_trip(&storage, &s, "u16", None, [u16::MAX, 8]).await;
    dtype_round_trip(&storage, &s, "u16_fill", Some(65_535u16), [2, 9]).await;
    dtype_round_trip(&storage, &s, "u32", None, [u32::MAX, 10]).await;
    dtype_round_trip(&storage, &s, "u32_fill", Some(4_000_000_000u32), [3, 11]).await;
    dtype_round_trip(&storage, &s, "u64", None, [u64::MAX, 12]).await;
    dtype_round_trip(&storage, &s, "u64_fill", Some(u64::MAX), [4, 13]).await;
    dtype_round_trip(&storage, &s, "f32", None, [-0.0f32, f32::INFINITY]).await;
    dtype_round_trip(&storage, &s, "f32_fill", Some(-9999.5f32), [1.5, f32::MIN]).await;
    dtype_round_trip(&storage, &s, "f64", None, [f64::MAX, f64::NEG_INFINITY]).await;
    dtype_round_trip(&storage, &s, "f64_fill", Some(1e300f64), [5e-324, -2.5]).await;
    dtype_round_trip(
        &storage,
        &s,
        "str",
        None,
        ["héllo wörld".to_owned(), String::new()],
    )
    .await;
    dtype_round_trip(
        &storage,
        &s,
        "str_fill",
        Some("<missing>".to_owned()),
        ["x".repeat(1000), "2024-01-01".to_owned()],
    )
    .await;
    dtype_round_trip(
        &storage,
        &s,
        "ts",
        None,
        [
            TimestampNs(i64::MIN),
            TimestampNs(1_704_067_200_000_000_000),
        ],
    )
    .await;
    dtype_round_trip(
        &storage,
        &s,
        "ts_fill",
        Some(TimestampNs(-1)),
        [TimestampNs(0), TimestampNs(i64::MAX)],
    )
    .await;
    // A NaN fill value survives the registry (compared bitwise).
    let ds = s.open_dataset("types").await.unwrap();
    ds.define_array::<f32>(
        "nanfill",
        strings(&["i"]),
        vec![3],
        None,
        Some(FillValue::Float32(f32::NAN)),
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "nan fill").await;
    let v = r
        .open_dataset("types")
        .await
        .unwrap()
        .read_array::<f32>("nanfill", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert!(
        v.iter().all(|x: &f32| x.is_nan()),
        "NaN fill reads as NaN: {v:?}"
    );
    assert_eq!(r.list_arrays().len(), 27);
    assert_eq!(snapshot(&r).await, snapshot(&s).await);
}

#[tokio::test]
async fn multi_dimensional_partial_hyperslabs_merge_into_chunks() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let ds = s.create_dataset("grid").await.unwrap();
    ds.define_array::<i32>(
        "g",
        strings(&["t", "y", "x"]),
        vec![3, 4, 5],
        Some(vec![2, 3, 2]),
        Some(FillValue::Int32(-1)),
    )
    .await
    .unwrap();
    let mut model = vec![-1i32; 60];
    let idx = |t: usize, y: usize, x: usize| (t * 4 + y) * 5 + x;
    // Three overlapping writes crossing chunk boundaries, two across a flush.
    let writes: [([u64; 3], [usize; 3], i32); 3] = [
        ([0, 1, 1], [2, 3, 3], 100),
        ([1, 0, 0], [2, 2, 5], 200),
        ([2, 3, 4], [1, 1, 1], 300),
    ];
    for (k, (start, shape, base)) in writes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let data: Vec<i32> = (0..n as i32).map(|i| base + i).collect();
        ds.write_array("g", start.to_vec(), arr(shape, data.clone()).view())
            .await
            .unwrap();
        let mut i = 0;
        for t in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    model[idx(
                        start[0] as usize + t,
                        start[1] as usize + y,
                        start[2] as usize + x,
                    )] = data[i];
                    i += 1;
                }
            }
        }
        if k == 1 {
            s.flush().await.unwrap();
        }
        let got = ds
            .read_array::<i32>("g", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cells(&got), model, "after write {k}");
    }
    // A hyperslab read crossing chunks.
    let got = ds
        .read_array::<i32>("g", vec![1, 1, 1], vec![2, 2, 3])
        .await
        .unwrap()
        .unwrap();
    let mut want = Vec::new();
    for t in 1..3 {
        for y in 1..3 {
            for x in 1..4 {
                want.push(model[idx(t, y, x)]);
            }
        }
    }
    assert_eq!(got.shape(), &[2, 2, 3]);
    assert_eq!(cells(&got), want);
    // Zero-sized reads are fine and empty.
    let empty = ds
        .read_array::<i32>("g", vec![0, 0, 0], vec![0, 2, 2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(empty.shape(), &[0, 2, 2]);
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "hyperslab").await;
    let got = r
        .open_dataset("grid")
        .await
        .unwrap()
        .read_array::<i32>("g", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), model, "after reopen");
}

#[tokio::test]
async fn dataset_view_attributes_schema_stats_meta_and_delete() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, no_grace()).await;
    let ds = s.create_dataset("d").await.unwrap();

    // Dataset attributes: order, replace-in-place, delete.
    ds.set_attribute("z_first", Attr::Int64(1)).unwrap();
    ds.set_attribute("a_second", Attr::from("two")).unwrap();
    ds.set_attribute("m_third", Attr::Float64(3.5)).unwrap();
    ds.set_attribute("z_first", Attr::Bool(true)).unwrap();
    let keys: Vec<String> = ds.attributes().keys().cloned().collect();
    assert_eq!(keys, strings(&["z_first", "a_second", "m_third"]));
    assert_eq!(ds.get_attribute("z_first"), Some(Attr::Bool(true)));
    assert_eq!(ds.get_attribute("missing"), None);
    assert_eq!(
        ds.delete_attribute("a_second").unwrap(),
        Some(Attr::from("two"))
    );
    assert_eq!(ds.delete_attribute("a_second").unwrap(), None);
    let keys: Vec<String> = ds.attributes().keys().cloned().collect();
    assert_eq!(keys, strings(&["z_first", "m_third"]));
    assert!(matches!(
        ds.set_attribute("", Attr::Int64(0)),
        Err(Error::InvalidName {
            kind: "attribute",
            ..
        })
    ));

    // define_array_schema with a schema built by hand.
    let schema = ArraySchema::new(
        "temp",
        DType::Float32,
        strings(&["i"]),
        vec![10],
        Some(vec![4]),
        Some(FillValue::Float32(-9.0)),
    )
    .unwrap();
    ds.define_array_schema("temp", schema.clone())
        .await
        .unwrap();
    assert_eq!(ds.array_schema("temp").unwrap(), Some(schema.clone()));
    assert_eq!(ds.array_schema("nope").unwrap(), None);

    // Array attributes.
    ds.set_array_attribute("temp", "units", Attr::from("degC"))
        .unwrap();
    ds.set_array_attribute("temp", "valid_range", Attr::Float64List(vec![-5.0, 40.0]))
        .unwrap();
    ds.set_array_attribute("temp", "long_name", Attr::from("temperature"))
        .unwrap();
    assert_eq!(
        ds.get_array_attribute("temp", "units"),
        Some(Attr::from("degC"))
    );
    assert_eq!(ds.get_array_attribute("temp", "nope"), None);
    assert_eq!(ds.get_array_attribute("nope", "units"), None);
    assert_eq!(
        ds.delete_array_attribute("temp", "long_name").unwrap(),
        Some(Attr::from("temperature"))
    );
    assert_eq!(
        ds.delete_array_attribute("temp", "long_name").unwrap(),
        None
    );
    let aattrs: IndexMap<String, Attr> = ds.array_attributes("temp").unwrap();
    assert_eq!(
        aattrs.keys().cloned().collect::<Vec<_>>(),
        strings(&["units", "valid_range"])
    );
    assert!(matches!(
        ds.set_array_attribute("nope", "k", Attr::Int64(1)),
        Err(Error::ArrayNotFound { array, .. }) if array == "nope"
    ));
    assert!(matches!(
        ds.array_attributes("nope"),
        Err(Error::ArrayNotFound { .. })
    ));
    assert!(matches!(
        ds.delete_array_attribute("nope", "k"),
        Err(Error::ArrayNotFound { .. })
    ));

    // Statistics: 10 cells in chunks of 4; write [1.0, NaN, -9.0 (fill), 3.5]
    // at 2..6 (chunks 0 and 1); chunk 2 (cells 8, 9) stays unwritten.
    // Nulls: cells 0, 1 (unwritten in a written chunk read as fill), NaN,
    // fill, cells 6, 7 (fill in chunk 1), 8, 9 (unwritten chunk) = 8.
    let stats0 = ds.array_stats("temp").await.unwrap().unwrap();
    assert_eq!(stats0.row_count, 10);
    assert_eq!(stats0.null_count, 10, "a fresh array is all null");
    assert_eq!((stats0.min, stats0.max), (None, None));
    ds.write_array(
        "temp",
        vec![2],
        arr1(vec![1.0f32, f32::NAN, -9.0, 3.5]).view(),
    )
    .await
    .unwrap();
    let check = |st: &atlas_core::ArrayStats, when: &str| {
        assert_eq!(st.row_count, 10, "{when}");
        assert_eq!(st.null_count, 8, "{when}: {st:?}");
        assert_eq!(st.min, Some(StatValue::Float(1.0)), "{when}");
        assert_eq!(st.max, Some(StatValue::Float(3.5)), "{when}");
    };
    check(&ds.array_stats("temp").await.unwrap().unwrap(), "pending");
    let meta = ds.array_meta("temp").await.unwrap().unwrap();
    assert_eq!(meta.n_chunks_stored, 2);
    assert_eq!(meta.schema, schema);
    check(&meta.stats, "array_meta");
    s.flush().await.unwrap();
    check(&ds.array_stats("temp").await.unwrap().unwrap(), "flushed");
    assert_eq!(ds.array_stats("nope").await.unwrap(), None);
    assert_eq!(ds.array_meta("nope").await.unwrap(), None);

    // Integer stats with no fill: zeros of unwritten chunks count as null.
    ds.define_array::<i64>("n", strings(&["i"]), vec![6], Some(vec![3]), None)
        .await
        .unwrap();
    ds.write_array("n", vec![0], arr1(vec![-4i64, 0, 9]).view())
        .await
        .unwrap();
    let st = ds.array_stats("n").await.unwrap().unwrap();
    assert_eq!(st.row_count, 6);
    assert_eq!(st.null_count, 3, "{st:?}");
    assert_eq!(st.min, Some(StatValue::Int(-4)));
    assert_eq!(st.max, Some(StatValue::Int(9)));

    // read_array of a missing array is Ok(None).
    assert!(ds
        .read_array::<f32>("absent", vec![], vec![])
        .await
        .unwrap()
        .is_none());

    // Everything survives reopen.
    s.flush().await.unwrap();
    let before = snapshot(&s).await;
    let r = reopen_mem(&storage, "attrs").await;
    assert_eq!(snapshot(&r).await, before);
    let rd = r.open_dataset("d").await.unwrap();
    assert_eq!(
        rd.attributes().keys().cloned().collect::<Vec<_>>(),
        strings(&["z_first", "m_third"])
    );
    assert_eq!(rd.array_attributes("temp").unwrap(), aattrs);
    drop((rd, r));

    // delete_array.
    ds.delete_array("n").await.unwrap();
    assert_eq!(ds.list_arrays().unwrap(), strings(&["temp"]));
    assert!(ds
        .read_array::<i64>("n", vec![], vec![])
        .await
        .unwrap()
        .is_none());
    assert_eq!(ds.array_schema("n").unwrap(), None);
    assert!(matches!(
        ds.delete_array("n").await,
        Err(Error::ArrayNotFound { array, .. }) if array == "n"
    ));
    let n_dir = s
        .array_dir("n")
        .expect("n still has its directory until the flush");
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "after delete_array").await;
    assert_eq!(
        r.open_dataset("d").await.unwrap().list_arrays().unwrap(),
        strings(&["temp"])
    );
    assert!(r.array_layers("n").is_empty());
    assert!(
        !storage.files().iter().any(|p| p.starts_with(&n_dir)),
        "files of a dropped array are removed: {:?}",
        storage.files()
    );
}

#[tokio::test]
async fn read_array_across_and_stacked() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    for (name, has_temp, base) in [("a", true, 0.0f32), ("b", false, 0.0), ("c", true, 100.0)] {
        let ds = s.create_dataset(name).await.unwrap();
        if has_temp {
            ds.define_array::<f32>(
                "temp",
                strings(&["y", "x"]),
                vec![2, 3],
                Some(vec![1, 2]),
                None,
            )
            .await
            .unwrap();
            let v: Vec<f32> = (0..6).map(|i| base + i as f32).collect();
            ds.write_array("temp", vec![], arr(&[2, 3], v).view())
                .await
                .unwrap();
            ds.define_array::<String>("label", strings(&["k"]), vec![2], None, None)
                .await
                .unwrap();
            ds.write_array(
                "label",
                vec![],
                arr1(vec![format!("{name}0"), format!("{name}1")]).view(),
            )
            .await
            .unwrap();
        } else {
            ds.define_array::<i8>("other", strings(&["k"]), vec![1], None, None)
                .await
                .unwrap();
        }
    }
    let d = s.create_dataset("d").await.unwrap();
    d.define_array::<f32>("temp", strings(&["y", "x"]), vec![3, 3], None, None)
        .await
        .unwrap();
    d.write_array("temp", vec![], full(&[3, 3], 7.0f32).view())
        .await
        .unwrap();

    for stage in ["pending", "flushed", "reopened"] {
        let h = match stage {
            "pending" => s.clone(),
            "flushed" => {
                s.flush().await.unwrap();
                s.clone()
            }
            _ => reopen_mem(&storage, stage).await,
        };
        let got = h
            .read_array_across::<f32>("temp", &["a", "b", "c"], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            cells(got[0].as_ref().unwrap()),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "{stage}"
        );
        assert!(got[1].is_none(), "{stage}: b lacks temp");
        assert_eq!(got[2].as_ref().unwrap()[[1, 2]], 105.0, "{stage}");
        // A hyperslab across datasets, order as requested.
        let got = h
            .read_array_across::<f32>("temp", &["c", "a"], vec![1, 1], vec![1, 2])
            .await
            .unwrap();
        assert_eq!(
            cells(got[0].as_ref().unwrap()),
            vec![104.0, 105.0],
            "{stage}"
        );
        assert_eq!(cells(got[1].as_ref().unwrap()), vec![4.0, 5.0], "{stage}");
        // Strings.
        let labels = h
            .read_array_across::<String>("label", &["a", "b", "c"], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(cells(labels[0].as_ref().unwrap()), strings(&["a0", "a1"]));
        assert!(labels[1].is_none());
        assert_eq!(cells(labels[2].as_ref().unwrap()), strings(&["c0", "c1"]));
        // An array no dataset has: all None.
        let none = h
            .read_array_across::<f32>("ghost", &["a", "b"], vec![], vec![])
            .await
            .unwrap();
        assert!(none.iter().all(Option::is_none));
        // Unknown dataset.
        assert!(matches!(
            h.read_array_across::<f32>("temp", &["a", "zz"], vec![], vec![]).await,
            Err(Error::DatasetNotFound { name }) if name == "zz"
        ));

        // Stacked: leading dataset axis.
        let st = h
            .read_array_across_stacked::<f32>("temp", &["c", "a"], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(st.shape(), &[2, 2, 3], "{stage}");
        assert_eq!(st[[0, 0, 0]], 100.0);
        assert_eq!(st[[1, 1, 2]], 5.0);
        // A hyperslab makes differing shapes stackable.
        let st = h
            .read_array_across_stacked::<f32>("temp", &["a", "d"], vec![0, 1], vec![2, 2])
            .await
            .unwrap();
        assert_eq!(st.shape(), &[2, 2, 2]);
        assert_eq!(cells(&st), vec![1.0, 2.0, 4.0, 5.0, 7.0, 7.0, 7.0, 7.0]);
        match h
            .read_array_across_stacked::<f32>("temp", &["a", "c", "d"], vec![], vec![])
            .await
        {
            Err(Error::ShapesDiffer {
                array,
                dataset,
                expected,
                actual,
            }) => {
                assert_eq!(array, "temp");
                assert_eq!(dataset, "d");
                assert_eq!(expected, vec![2, 3]);
                assert_eq!(actual, vec![3, 3]);
            }
            other => panic!("{stage}: expected ShapesDiffer, got {other:?}"),
        }
        assert!(matches!(
            h.read_array_across_stacked::<f32>("temp", &["a", "b"], vec![], vec![]).await,
            Err(Error::ArrayNotFound { dataset, array }) if dataset == "b" && array == "temp"
        ));
        let st = h
            .read_array_across_stacked::<String>("label", &["a", "c"], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(st.shape(), &[2, 2]);
        assert_eq!(cells(&st), strings(&["a0", "a1", "c0", "c1"]));
        // Mismatched dtype for a cross read is a typed error.
        assert!(matches!(
            h.read_array_across::<f64>("temp", &["a"], vec![], vec![]).await,
            Err(Error::Array { dataset, .. }) if dataset == "a"
        ));
    }
}

#[tokio::test]
async fn read_array_across_many_datasets_in_parallel_keeps_order() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let n = 300usize;
    let mut names = Vec::new();
    for i in 0..n {
        // Reverse-sorted names so order is insertion, not lexical.
        let name = format!("p{:04}", n - i);
        let ds = s.create_dataset(&name).await.unwrap();
        ds.define_array::<i64>("v", strings(&["k"]), vec![3], None, None)
            .await
            .unwrap();
        ds.write_array("v", vec![], arr1(vec![i as i64, 2 * i as i64, 7]).view())
            .await
            .unwrap();
        names.push(name);
    }
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "parallel").await;
    let got = r
        .read_array_across::<i64>("v", &names, vec![0], vec![2])
        .await
        .unwrap();
    assert_eq!(got.len(), n);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            cells(g.as_ref().unwrap()),
            vec![i as i64, 2 * i as i64],
            "dataset {i}"
        );
    }
    let st = r
        .read_array_across_stacked::<i64>("v", &names, vec![], vec![])
        .await
        .unwrap();
    assert_eq!(st.shape(), &[n, 3]);
    assert_eq!(st[[n - 1, 1]], 2 * (n as i64 - 1));
    let empty: [&str; 0] = [];
    let st = r
        .read_array_across_stacked::<i64>("v", &empty, vec![], vec![])
        .await
        .unwrap();
    assert_eq!(st.len(), 0);
}

/// Many datasets read across (on several threads): the same as one read per
/// dataset, in the order asked, pending writes included; a damaged block is
/// an error naming its dataset. On a multi-threaded runtime (the calling
/// thread reads a part itself; the other tests here run the
/// current-thread runtime, where the read is one job on rayon's pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_array_across_equals_single_reads_and_names_a_damaged_dataset() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let n = 1200usize;
    let mut names = Vec::new();
    for i in 0..n {
        // Creation order differs from name order.
        let name = format!("q{:05}", (i * 7919) % n);
        let ds = s.create_dataset(&name).await.unwrap();
        let len = 1 + (i % 90) as u64;
        ds.define_array::<f32>("t", strings(&["k"]), vec![len], None, None)
            .await
            .unwrap();
        let v: Vec<f32> = (0..len).map(|c| (i * 100) as f32 + c as f32).collect();
        ds.write_array("t", vec![], arr1(v).view()).await.unwrap();
        names.push(name);
    }
    s.flush().await.unwrap();
    for name in names.iter().step_by(11) {
        let ds = s.open_dataset(name).await.unwrap();
        ds.write_array("t", vec![0], arr1(vec![-5.0f32]).view())
            .await
            .unwrap();
    }
    let mut asked = names.clone();
    asked.reverse();
    let got = s
        .read_array_across::<f32>("t", &asked, vec![], vec![])
        .await
        .unwrap();
    assert_eq!(got.len(), n);
    for (d, g) in asked.iter().zip(&got) {
        let one = s
            .open_dataset(d)
            .await
            .unwrap()
            .read_array::<f32>("t", vec![], vec![])
            .await
            .unwrap();
        assert_eq!(g.as_ref(), one.as_ref(), "{d}");
    }
    assert_eq!(got[n - 1].as_ref().unwrap()[[0]], -5.0, "a pending write");
    // The blocking form (the calling thread reads a part): the same.
    let (s2, asked2) = (s.clone(), asked.clone());
    let blocking = tokio::task::spawn_blocking(move || {
        s2.read_array_across_blocking::<f32>("t", &asked2, &[], &[])
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(blocking, got);

    s.flush().await.unwrap();
    let (r, bad) = damage_one_block(&storage, &s, "damaged", &names).await;
    match r
        .read_array_across::<f32>("t", &names, vec![], vec![])
        .await
    {
        Err(Error::Array { dataset, .. }) => assert_eq!(dataset, bad[0]),
        other => panic!("expected the damaged dataset's error, got {other:?}"),
    }
    // Registry answers come before reads: a missing dataset after the
    // damaged one (in another part) is the error reported.
    let mut with_ghost = names.clone();
    with_ghost.push("ghost".into());
    assert!(matches!(
        r.read_array_across::<f32>("t", &with_ghost, vec![], vec![]).await,
        Err(Error::DatasetNotFound { name }) if name == "ghost"
    ));
    // The blocking form reports the same errors, on a fresh handle too
    // (the array file's index built between the lookups and the reads).
    let fresh = reopen_mem(&storage, "damaged-blocking").await;
    let (bad0, names2) = (bad[0].clone(), names.clone());
    tokio::task::spawn_blocking(move || {
        match fresh.read_array_across_blocking::<f32>("t", &names2, &[], &[]) {
            Err(Error::Array { dataset, .. }) => assert_eq!(dataset, bad0),
            other => panic!("expected the damaged dataset's error, got {other:?}"),
        }
        assert!(matches!(
            fresh.read_array_across_blocking::<f32>("t", &with_ghost, &[], &[]),
            Err(Error::DatasetNotFound { name }) if name == "ghost"
        ));
    })
    .await
    .unwrap();
}

/// The stacked read decodes each array into its place: it equals the
/// per-dataset reads stacked, through every path (one block per array,
/// arrays of two chunks, pending writes, a hyperslab; an open handle and a
/// fresh one, whose array file index is built between lookups and reads),
/// on one core and on three; and its error is the first in name order of
/// the registry's checks, before any read error, whatever the number of
/// cores.
#[tokio::test]
async fn stacked_reads_decode_into_place_and_check_before_reading() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let n = 1100usize;
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("s{:05}", (i * 7919) % n);
        let ds = s.create_dataset(&name).await.unwrap();
        // Every 97th array is two chunks (read by the general path).
        let chunks = i.is_multiple_of(97).then(|| vec![4]);
        ds.define_array::<f32>("t", strings(&["k"]), vec![6], chunks, None)
            .await
            .unwrap();
        let v: Vec<f32> = (0..6u8).map(|c| (i * 10) as f32 + f32::from(c)).collect();
        ds.write_array("t", vec![], arr1(v).view()).await.unwrap();
        names.push(name);
    }
    // One dataset whose `t` has another shape, kept out of `names`.
    let odd = s.create_dataset("odd").await.unwrap();
    odd.define_array::<f32>("t", strings(&["k"]), vec![5], None, None)
        .await
        .unwrap();
    odd.write_array("t", vec![], arr1(vec![1.0f32; 5]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    for name in names.iter().step_by(11) {
        let ds = s.open_dataset(name).await.unwrap();
        ds.write_array("t", vec![2], arr1(vec![-5.0f32]).view())
            .await
            .unwrap();
    }
    let mut asked = names.clone();
    asked.reverse();
    // The per-dataset reads, stacked.
    let stack = |parts: Vec<Option<ndarray::ArrayD<f32>>>| -> Vec<f32> {
        parts
            .iter()
            .flat_map(|p| cells(p.as_ref().unwrap()))
            .collect()
    };
    let whole = stack(
        s.read_array_across::<f32>("t", &asked, vec![], vec![])
            .await
            .unwrap(),
    );
    let slab = stack(
        s.read_array_across::<f32>("t", &asked, vec![1], vec![3])
            .await
            .unwrap(),
    );
    assert!(whole.contains(&-5.0), "pending writes are read");
    let st = s
        .read_array_across_stacked::<f32>("t", &asked, vec![], vec![])
        .await
        .unwrap();
    assert_eq!(st.shape(), &[n, 6]);
    assert_eq!(cells(&st), whole);
    // The blocking form, on one core and on three, open and fresh handles.
    s.create_dataset("bare").await.unwrap();
    // Extents that multiply past `isize`, with none stored: an error, not a
    // panic building the result.
    for name in ["za", "zb"] {
        let ds = s.create_dataset(name).await.unwrap();
        let dims = strings(&["a", "b", "c"]);
        ds.define_array::<f32>(
            "z",
            dims,
            vec![0, 1 << 31, 1 << 31],
            Some(vec![1, 1, 1]),
            None,
        )
        .await
        .unwrap();
    }
    assert!(matches!(
        s.read_array_across_stacked::<f32>("z", &["za", "zb"], vec![], vec![])
            .await,
        Err(Error::Array { .. })
    ));
    s.flush().await.unwrap();
    // A fresh handle per pool: the array file's index is built between the
    // lookups and the reads on one core and on three.
    let fresh = [
        reopen_mem(&storage, "stacked-1").await,
        reopen_mem(&storage, "stacked-3").await,
    ];
    let (s2, asked2) = (s.clone(), asked.clone());
    tokio::task::spawn_blocking(move || {
        for (threads, fresh) in [1, 3].into_iter().zip(&fresh) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for h in [fresh, &s2] {
                let st = pool
                    .install(|| h.read_array_across_stacked_blocking::<f32>("t", &asked2, &[], &[]))
                    .unwrap();
                assert_eq!(cells(&st), whole, "{threads} threads");
                let st = pool
                    .install(|| {
                        h.read_array_across_stacked_blocking::<f32>("t", &asked2, &[1], &[3])
                    })
                    .unwrap();
                assert_eq!(st.shape(), &[n, 3]);
                assert_eq!(cells(&st), slab, "{threads} threads");
            }
        }
    })
    .await
    .unwrap();

    // Errors, in name order, the checks before the reads.
    let (r, bad) = damage_one_block(&storage, &s, "stacked-damaged", &names).await;
    let pos = names.iter().position(|d| *d == bad[0]).unwrap();
    // The damaged array first, a shape that differs last: the shape.
    let mut late_odd: Vec<String> = names[pos..].to_vec();
    late_odd.extend(names[..pos].iter().cloned());
    late_odd.push("odd".into());
    // A dataset without the array before a shape that differs.
    let mut late_bare = late_odd.clone();
    late_bare.insert(n / 2, "bare".into());
    // The odd shape first: every other dataset differs from it.
    let mut odd_first = vec!["odd".to_string()];
    odd_first.extend(names.iter().cloned());
    // The odd shape first in the second of three parts (1,101 names: parts
    // of 367): found comparing the parts' first shapes.
    let mut odd_part = names.clone();
    odd_part.insert(367, "odd".into());
    // A dataset without the array before an unknown one: the unknown one
    // (the registry's answers come first, as in `read_array_across`).
    let mut bare_nope = names.clone();
    bare_nope.insert(10, "bare".into());
    bare_nope.insert(500, "nope".into());
    let (r2, bad0) = (r.clone(), bad[0].clone());
    let expect = move |got: atlas_core::Result<ndarray::ArrayD<f32>>,
                       case: &str,
                       threads: usize| match (case, got) {
        ("damaged", Err(Error::Array { dataset, .. })) => assert_eq!(dataset, bad0),
        (
            "late_odd" | "odd_part",
            Err(Error::ShapesDiffer {
                dataset,
                expected,
                actual,
                ..
            }),
        ) => {
            assert_eq!(
                (dataset.as_str(), expected, actual),
                ("odd", vec![6], vec![5])
            );
        }
        ("late_bare", Err(Error::ArrayNotFound { dataset, .. })) => {
            assert_eq!(dataset, "bare");
        }
        (
            "odd_first",
            Err(Error::ShapesDiffer {
                expected, actual, ..
            }),
        ) => {
            assert_eq!((expected, actual), (vec![5], vec![6]));
        }
        ("bare_nope", Err(Error::DatasetNotFound { name })) => assert_eq!(name, "nope"),
        (case, other) => panic!("{case}, {threads} threads: got {other:?}"),
    };
    let cases = [
        ("damaged", names.clone()),
        ("late_odd", late_odd),
        ("late_bare", late_bare),
        ("odd_first", odd_first),
        ("odd_part", odd_part),
        ("bare_nope", bare_nope),
    ];
    for (case, asked) in &cases {
        let got = r2
            .read_array_across_stacked::<f32>("t", asked, vec![], vec![])
            .await;
        expect(got, case, 0);
    }
    tokio::task::spawn_blocking(move || {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for (case, asked) in &cases {
                let got = pool
                    .install(|| r2.read_array_across_stacked_blocking::<f32>("t", asked, &[], &[]));
                expect(got, case, threads);
            }
        }
    })
    .await
    .unwrap();
}

/// Names asked for more than once, out of order, some without the array:
/// the registry's ordered walk and the parallel parts answer each place.
#[tokio::test]
async fn read_array_across_repeated_names_and_missing_arrays() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let n = 700usize;
    for i in 0..n {
        let ds = s.create_dataset(&format!("r{i:04}")).await.unwrap();
        if !i.is_multiple_of(5) {
            ds.define_array::<f64>("x", strings(&["k"]), vec![4], None, None)
                .await
                .unwrap();
            let v: Vec<f64> = (0..4u8).map(|c| i as f64 + 0.25 * f64::from(c)).collect();
            ds.write_array("x", vec![], arr1(v).view()).await.unwrap();
        }
    }
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "repeats").await;
    // Each name twice in a row, then every third name again, backwards.
    let mut asked: Vec<String> = (0..n)
        .flat_map(|i| [format!("r{i:04}"), format!("r{i:04}")])
        .collect();
    asked.extend((0..n).rev().step_by(3).map(|i| format!("r{i:04}")));
    let got = r
        .read_array_across::<f64>("x", &asked, vec![], vec![])
        .await
        .unwrap();
    assert_eq!(got.len(), asked.len());
    for (d, g) in asked.iter().zip(&got) {
        let i: usize = d[1..].parse().unwrap();
        if i.is_multiple_of(5) {
            assert!(g.is_none(), "{d} has no x");
        } else {
            assert_eq!(cells(g.as_ref().unwrap())[3], i as f64 + 0.75, "{d}");
        }
    }
    // A missing dataset anywhere is an error naming it (the first of two,
    // in different parts).
    asked.insert(1500, "zzz".into());
    asked.insert(901, "nope".into());
    assert!(matches!(
        r.read_array_across::<f64>("x", &asked, vec![], vec![]).await,
        Err(Error::DatasetNotFound { name }) if name == "nope"
    ));
}

/// `t` of `view`, through the view itself (a clone would start with no
/// memo of its own).
async fn read_t(view: &atlas_core::DatasetView) -> atlas_core::Result<Vec<f32>> {
    view.read_array::<f32>("t", vec![], vec![])
        .await
        .map(|a| cells(&a.unwrap()))
}

/// A view remembers its dataset's committed metadata between reads; it must
/// never serve a stale schema: through a redefinition (pending, committed,
/// compacted), a delete and a re-creation, the same view reads what a fresh
/// view reads.
#[tokio::test]
async fn a_view_reads_its_datasets_newest_metadata() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let define = |len: u64, v: Vec<f32>| {
        let s = &s;
        async move {
            let ds = s.open_dataset("d").await.unwrap();
            ds.define_array::<f32>("t", strings(&["k"]), vec![len], None, None)
                .await
                .unwrap();
            ds.write_array("t", vec![], arr1(v).view()).await.unwrap();
        }
    };
    s.create_dataset("d").await.unwrap();
    define(2, vec![1.0, 2.0]).await;
    s.flush().await.unwrap();
    let view = s.open_dataset("d").await.unwrap();
    // Twice: the second read is served by the memo.
    for _ in 0..2 {
        assert_eq!(read_t(&view).await.ok(), Some(vec![1.0, 2.0]));
    }
    // Redefined with another shape: pending, then committed, then compacted.
    view.delete_array("t").await.unwrap();
    define(3, vec![5.0, 6.0, 7.0]).await;
    assert_eq!(read_t(&view).await.ok(), Some(vec![5.0, 6.0, 7.0]));
    s.flush().await.unwrap();
    for _ in 0..2 {
        assert_eq!(read_t(&view).await.ok(), Some(vec![5.0, 6.0, 7.0]));
        assert_eq!(view.array_schema("t").unwrap().unwrap().shape, vec![3]);
    }
    s.compact().await.unwrap();
    assert_eq!(read_t(&view).await.ok(), Some(vec![5.0, 6.0, 7.0]));
    // Deleted: pending and committed.
    s.delete_dataset("d").await.unwrap();
    assert!(matches!(
        read_t(&view).await,
        Err(Error::DatasetNotFound { .. })
    ));
    s.flush().await.unwrap();
    assert!(matches!(
        read_t(&view).await,
        Err(Error::DatasetNotFound { .. })
    ));
    // Re-created with one cell: the old view reads the new dataset.
    s.create_dataset("d").await.unwrap();
    define(1, vec![9.0]).await;
    assert_eq!(read_t(&view).await.unwrap(), vec![9.0]);
    s.flush().await.unwrap();
    for _ in 0..2 {
        assert_eq!(read_t(&view).await.unwrap(), vec![9.0]);
    }
    // Another handle's commits reach this one on reopen; a view of the
    // reopened handle reads them, the old handle's view its own snapshot.
    let r = reopen_mem(&storage, "memo").await;
    let rv = r.open_dataset("d").await.unwrap();
    assert_eq!(read_t(&rv).await.unwrap(), vec![9.0]);
}

#[tokio::test]
async fn array_layers_grow_per_touching_flush_and_compact_to_one() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, no_grace()).await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<u32>("a", strings(&["i"]), vec![8], Some(vec![2]), None)
        .await
        .unwrap();
    ds.define_array::<u32>("b", strings(&["i"]), vec![8], Some(vec![2]), None)
        .await
        .unwrap();
    assert!(s.array_layers("a").is_empty(), "nothing committed yet");
    s.flush().await.unwrap();
    assert_eq!(s.array_layers("a").len(), 1);
    assert_eq!(s.array_layers("b").len(), 1);
    let g = s.generation();
    for round in 0..4u32 {
        ds.write_array(
            "a",
            vec![u64::from(round) * 2],
            arr1(vec![round + 1; 2]).view(),
        )
        .await
        .unwrap();
        s.flush().await.unwrap();
        assert_eq!(
            s.array_layers("a").len(),
            2 + round as usize,
            "round {round}"
        );
        assert_eq!(s.array_layers("b").len(), 1, "b untouched in round {round}");
        assert_eq!(s.generation(), g + 1 + u64::from(round));
    }
    // An attribute-only flush commits but adds no layer.
    ds.set_attribute("k", Attr::Int64(1)).unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.array_layers("a").len(), 5);
    let before = snapshot(&s).await;
    let old_layers = s.array_layers("a");
    s.compact().await.unwrap();
    assert_eq!(s.array_layers("a").len(), 1, "compact leaves one base");
    assert_eq!(s.array_layers("b").len(), 1);
    assert!(
        !old_layers.contains(&s.array_layers("a")[0]),
        "a fresh name"
    );
    for l in &old_layers {
        assert!(
            storage
                .contents(&mem_root().join("a").join(l.as_str()))
                .is_none(),
            "retired layer {l} removed"
        );
    }
    assert_eq!(snapshot(&s).await, before, "compaction changes no value");
    let r = reopen_mem(&storage, "compact").await;
    assert_eq!(r.array_layers("a").len(), 1);
    assert_eq!(r.array_layers("a"), s.array_layers("a"));
    assert_eq!(r.generation(), s.generation());
    assert_eq!(snapshot(&r).await, before);
    let got = r
        .open_dataset("d")
        .await
        .unwrap()
        .read_array::<u32>("a", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), vec![1, 1, 2, 2, 3, 3, 4, 4]);
    // Compacting a compact store is a no-op.
    let g = s.generation();
    s.compact().await.unwrap();
    assert_eq!(s.generation(), g);
}

/// Flips a bit in the first block of `t`'s newest layer and reopens the
/// store: the handle, and the one dataset of `names` whose `t` no longer
/// reads.
async fn damage_one_block(
    storage: &MemoryStorage,
    s: &Atlas,
    label: &str,
    names: &[String],
) -> (Atlas, Vec<String>) {
    flip_bit(storage, &newest_layer(s, &mem_root(), "t"), 32 + 3);
    let r = reopen_mem(storage, label).await;
    let mut bad = Vec::new();
    for d in names {
        let ds = r.open_dataset(d).await.unwrap();
        if ds.read_array::<f32>("t", vec![], vec![]).await.is_err() {
            bad.push(d.clone());
        }
    }
    assert_eq!(bad.len(), 1, "{bad:?}");
    (r, bad)
}

fn flip_bit(storage: &MemoryStorage, path: &Path, offset: usize) {
    let mut bytes = storage.contents(path).expect("layer exists");
    bytes[offset] ^= 0x10;
    storage.overwrite(path, bytes);
}

#[tokio::test]
async fn verify_reports_healthy_and_damaged_stores() {
    let storage = MemoryStorage::new();
    let s = create_mem(
        &storage,
        StoreConfig {
            codec: Codec::None,
            ..StoreConfig::default()
        },
    )
    .await;
    for name in ["x", "y"] {
        let ds = s.create_dataset(name).await.unwrap();
        ds.define_array::<f64>("temp", strings(&["i"]), vec![64], Some(vec![16]), None)
            .await
            .unwrap();
        ds.write_array(
            "temp",
            vec![],
            arr1((0..64).map(f64::from).collect()).view(),
        )
        .await
        .unwrap();
        ds.define_array::<u8>("flag", strings(&["i"]), vec![4], None, None)
            .await
            .unwrap();
        ds.write_array("flag", vec![], arr1(vec![1u8, 2, 3, 4]).view())
            .await
            .unwrap();
    }
    s.flush().await.unwrap();
    let mut calls = Vec::new();
    let report = verify(&s, |done, total| calls.push((done, total)));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.n_arrays, 2);
    assert_eq!(report.n_layers, 2);
    assert_eq!(report.n_chunks, 2 * 4 + 2);
    assert_eq!(calls.last(), Some(&(2, 2)));

    // Flip one bit in the first block of the `temp` layer.
    let layer = newest_layer(&s, &mem_root(), "temp");
    flip_bit(&storage, &layer, 32 + 3);
    let r = reopen_mem(&storage, "damaged").await;
    let report = verify(&r, |_, _| {});
    assert!(
        !report.problems.is_empty(),
        "a flipped bit must be reported"
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path.starts_with(s.array_dir("temp").unwrap())),
        "{:?}",
        report.problems
    );
    // Reading the damaged chunk is a typed error naming the file, not a panic.
    let err = r
        .open_dataset("x")
        .await
        .unwrap()
        .read_array::<f64>("temp", vec![], vec![])
        .await
        .expect_err("damaged chunk must not read");
    let msg = err.to_string();
    assert!(
        msg.contains(layer.file_name().unwrap().to_str().unwrap()),
        "{msg}"
    );
    // The other array is unaffected.
    let flag = r
        .open_dataset("y")
        .await
        .unwrap()
        .read_array::<u8>("flag", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&flag), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn array_meta_names_the_array() {
    // `MergedArrayMeta::name` is documented as the array name.
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<f32>("temp", strings(&["i"]), vec![4], None, None)
        .await
        .unwrap();
    let meta = ds.array_meta("temp").await.unwrap().unwrap();
    assert_eq!(
        meta.name, "temp",
        "DatasetView::array_meta(\"temp\") on dataset \"d\" names {:?}",
        meta.name
    );
}

#[tokio::test]
async fn stats_count_unwritten_cells_exactly_with_a_fill_value_and_per_chunk_without() {
    // SPEC §4: null_count = cells that are unwritten, equal to the fill value,
    // or NaN. With a declared fill value, unwritten cells hold the fill value
    // and are counted cell by cell. Without one, ATLAS tracks "unwritten" per
    // chunk (documented in ARCHITECTURE.md, "Null counts"): a never-written
    // chunk is all null, while the unwritten cells of a partly written chunk
    // read as zero and count as values.
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<f32>(
        "filled",
        strings(&["i"]),
        vec![8],
        Some(vec![4]),
        Some(FillValue::Float32(-1.0)),
    )
    .await
    .unwrap();
    ds.write_array("filled", vec![1], arr1(vec![5.0f32]).view())
        .await
        .unwrap();
    let st = ds.array_stats("filled").await.unwrap().unwrap();
    assert_eq!(
        (st.row_count, st.null_count, st.min.clone(), st.max.clone()),
        (
            8,
            7,
            Some(StatValue::Float(5.0)),
            Some(StatValue::Float(5.0))
        ),
        "one cell written with 5.0, seven never written: {st:?}"
    );
    ds.define_array::<f32>("plain", strings(&["i"]), vec![8], Some(vec![4]), None)
        .await
        .unwrap();
    ds.write_array("plain", vec![1], arr1(vec![5.0f32]).view())
        .await
        .unwrap();
    let st = ds.array_stats("plain").await.unwrap().unwrap();
    assert_eq!(
        (st.row_count, st.null_count, st.min.clone(), st.max.clone()),
        (
            8,
            4,
            Some(StatValue::Float(0.0)),
            Some(StatValue::Float(5.0))
        ),
        "chunk 1 never written (4 nulls); chunk 0 written, its other cells read as 0.0: {st:?}"
    );
}

fn scratch_files(storage: &MemoryStorage) -> Vec<std::path::PathBuf> {
    storage
        .files()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("scratch-"))
        })
        .collect()
}

/// The pending-memory budget is store-wide: 16 arrays of 512 bytes each stay
/// under a 2 KiB budget one by one, but not together, so the store spills.
#[tokio::test]
async fn the_pending_budget_is_store_wide() {
    let storage = MemoryStorage::new();
    let s = create_mem(
        &storage,
        StoreConfig {
            pending_budget_bytes: 2048,
            codec: Codec::None,
            ..StoreConfig::default()
        },
    )
    .await;
    let ds = s.create_dataset("d").await.unwrap();
    let data: Vec<f64> = (0..64).map(|i| f64::from(i) * 0.25).collect();
    for a in 0..16 {
        let name = format!("v{a}");
        ds.define_array::<f64>(&name, strings(&["i"]), vec![64], None, None)
            .await
            .unwrap();
        ds.write_array(&name, vec![], arr1(data.clone()).view())
            .await
            .unwrap();
    }
    assert!(
        !scratch_files(&storage).is_empty(),
        "16 × 512 B pending against a 2 KiB store-wide budget must spill"
    );
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "budget").await;
    let d = r.open_dataset("d").await.unwrap();
    for a in 0..16 {
        let got = d
            .read_array::<f64>(&format!("v{a}"), vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cells(&got), data);
    }
}

#[tokio::test]
async fn pending_data_spills_to_scratch_and_round_trips() {
    let storage = MemoryStorage::new();
    let s = create_mem(
        &storage,
        StoreConfig {
            pending_budget_bytes: 64,
            codec: Codec::None,
            ..StoreConfig::default()
        },
    )
    .await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<f64>("v", strings(&["i"]), vec![64], Some(vec![8]), None)
        .await
        .unwrap();
    let data: Vec<f64> = (0..64).map(|i| f64::from(i) * 0.5).collect();
    ds.write_array("v", vec![], arr1(data.clone()).view())
        .await
        .unwrap();
    assert!(
        !scratch_files(&storage).is_empty(),
        "over budget: data spilled"
    );
    // Overwrite part of a spilled chunk: merged with the spilled bytes.
    ds.write_array("v", vec![3], arr1(vec![-1.0f64, -2.0]).view())
        .await
        .unwrap();
    let mut want = data.clone();
    want[3] = -1.0;
    want[4] = -2.0;
    let got = ds
        .read_array::<f64>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), want, "reads see spilled pending data");
    s.flush().await.unwrap();
    assert!(
        scratch_files(&storage).is_empty(),
        "flush removes the scratch file"
    );
    let r = reopen_mem(&storage, "spilled").await;
    let got = r
        .open_dataset("d")
        .await
        .unwrap()
        .read_array::<f64>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), want);
    drop(r);
    // Spill again and abandon the handle: the data is not committed, and the
    // next writer removes the scratch file.
    ds.write_array("v", vec![], full(&[64], 9.0f64).view())
        .await
        .unwrap();
    assert!(!scratch_files(&storage).is_empty());
    drop((ds, s));
    let r = reopen_mem(&storage, "abandoned").await;
    let rd = r.open_dataset("d").await.unwrap();
    let got = rd
        .read_array::<f64>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), want, "abandoned pending data is not committed");
    rd.set_attribute("k", Attr::Int64(1)).unwrap();
    assert!(
        scratch_files(&storage).is_empty(),
        "the next writer sweeps abandoned scratch files: {:?}",
        scratch_files(&storage)
    );
}

#[tokio::test]
async fn unusual_fill_values_survive_the_registry_bit_for_bit() {
    let storage = MemoryStorage::new();
    for fmt in [MetaFormat::Json, MetaFormat::Binary] {
        let storage = if fmt == MetaFormat::Json {
            storage.clone()
        } else {
            MemoryStorage::new()
        };
        let s = create_mem(
            &storage,
            StoreConfig {
                meta_format: fmt,
                ..StoreConfig::default()
            },
        )
        .await;
        let ds = s.create_dataset("d").await.unwrap();
        let fills = [
            (
                "f32_payload_nan",
                FillValue::Float32(f32::from_bits(0x7fc0_0001)),
            ),
            ("f32_neg_zero", FillValue::Float32(-0.0)),
            ("f32_tenth", FillValue::Float32(0.1)),
            (
                "f64_payload_nan",
                FillValue::Float64(f64::from_bits(0x7ff8_0000_0000_0abc)),
            ),
            ("f64_neg_zero", FillValue::Float64(-0.0)),
            ("f64_inf", FillValue::Float64(f64::NEG_INFINITY)),
            ("str_fill", FillValue::String("NaN".into())),
        ];
        for (name, fill) in &fills {
            let dtype = fill.dtype();
            let schema = ArraySchema::new(
                name,
                dtype,
                strings(&["i"]),
                vec![3],
                None,
                Some(fill.clone()),
            )
            .unwrap();
            ds.define_array_schema(name, schema).await.unwrap();
        }
        // Same shapes with plain fills share nothing with the unusual ones.
        ds.define_array::<f32>(
            "f32_zero",
            strings(&["i"]),
            vec![3],
            None,
            Some(FillValue::Float32(0.0)),
        )
        .await
        .unwrap();
        s.flush().await.unwrap();
        let r = reopen_mem(&storage, fmt.name()).await;
        let rd = r.open_dataset("d").await.unwrap();
        for (name, fill) in &fills {
            let got = rd.array_schema(name).unwrap().unwrap().fill_value.unwrap();
            assert!(got.same_as(fill), "{fmt:?} {name}: {got:?} vs {fill:?}");
        }
        let z = rd
            .array_schema("f32_zero")
            .unwrap()
            .unwrap()
            .fill_value
            .unwrap();
        assert!(
            z.same_as(&FillValue::Float32(0.0)),
            "{fmt:?}: +0.0 fill became {z:?}"
        );
        let v = rd
            .read_array::<f32>("f32_neg_zero", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert!(
            v.iter().all(|x| x.to_bits() == (-0.0f32).to_bits()),
            "{v:?}"
        );
        let report = verify(&r, |_, _| {});
        assert!(report.problems.is_empty(), "{fmt:?}: {:?}", report.problems);
    }
}

/// Datasets defined one after another with the same array definition share
/// one schema (the array file's `share_schema`); a fill value that differs
/// only in its bits is its own, through the registry and the layer: each
/// dataset reads back its own fill after a flush and a reopen.
#[tokio::test]
async fn one_at_a_time_definitions_keep_each_fill_bit_for_bit() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let fills: [u32; 6] = [
        0.0f32.to_bits(),
        0.0f32.to_bits(),
        (-0.0f32).to_bits(),
        0x7fc0_0001,
        0x7fc0_0001,
        0x7fc0_0002,
    ];
    for (i, bits) in fills.iter().enumerate() {
        let ds = s.create_dataset(&format!("d{i}")).await.unwrap();
        ds.define_array::<f32>(
            "v",
            strings(&["i"]),
            vec![3],
            None,
            Some(FillValue::Float32(f32::from_bits(*bits))),
        )
        .await
        .unwrap();
    }
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "after flush").await;
    for (i, bits) in fills.iter().enumerate() {
        let ds = r.open_dataset(&format!("d{i}")).await.unwrap();
        let fill = ds.array_schema("v").unwrap().unwrap().fill_value.unwrap();
        assert!(
            fill.same_as(&FillValue::Float32(f32::from_bits(*bits))),
            "d{i}: {fill:?}"
        );
        let v = ds
            .read_array::<f32>("v", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert!(v.iter().all(|x| x.to_bits() == *bits), "d{i}: {v:?}");
    }
}

#[tokio::test]
async fn edge_shapes_scalars_empty_axes_and_oversized_chunks() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let ds = s.create_dataset("d").await.unwrap();
    // A rank-0 scalar (NetCDF scalar variables are common).
    ds.define_array::<f64>(
        "scalar",
        vec![],
        vec![],
        None,
        Some(FillValue::Float64(-1.0)),
    )
    .await
    .unwrap();
    let v = ds
        .read_array::<f64>("scalar", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.ndim(), cells(&v)), (0, vec![-1.0]), "unwritten scalar");
    ds.write_array("scalar", vec![], ndarray::arr0(2.5f64).into_dyn().view())
        .await
        .unwrap();
    // An axis of extent zero.
    ds.define_array::<i32>("empty", strings(&["n", "k"]), vec![0, 3], None, None)
        .await
        .unwrap();
    ds.write_array("empty", vec![], arr(&[0, 3], Vec::<i32>::new()).view())
        .await
        .unwrap();
    // A chunk shape larger than the shape.
    ds.define_array::<u16>("wide", strings(&["i"]), vec![3], Some(vec![100]), None)
        .await
        .unwrap();
    ds.write_array("wide", vec![2], arr1(vec![9u16]).view())
        .await
        .unwrap();
    // String, bool and timestamp statistics.
    ds.define_array::<String>("s", strings(&["i"]), vec![3], None, None)
        .await
        .unwrap();
    ds.write_array("s", vec![], arr1(strings(&["b", "a", "c"])).view())
        .await
        .unwrap();
    ds.define_array::<bool>("b", strings(&["i"]), vec![2], None, None)
        .await
        .unwrap();
    ds.write_array("b", vec![], arr1(vec![true, false]).view())
        .await
        .unwrap();
    ds.define_array::<TimestampNs>("t", strings(&["i"]), vec![2], None, None)
        .await
        .unwrap();
    ds.write_array(
        "t",
        vec![],
        arr1(vec![TimestampNs(5), TimestampNs(-5)]).view(),
    )
    .await
    .unwrap();
    for stage in ["pending", "reopened"] {
        let h = if stage == "pending" {
            s.clone()
        } else {
            s.flush().await.unwrap();
            reopen_mem(&storage, stage).await
        };
        let d = h.open_dataset("d").await.unwrap();
        let v = d
            .read_array::<f64>("scalar", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((v.ndim(), cells(&v)), (0, vec![2.5]), "{stage}: scalar");
        let st = d.array_stats("scalar").await.unwrap().unwrap();
        assert_eq!(
            (st.row_count, st.null_count),
            (1, 0),
            "{stage}: scalar stats"
        );
        let e = d
            .read_array::<i32>("empty", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.shape(), &[0, 3], "{stage}: empty");
        let st = d.array_stats("empty").await.unwrap().unwrap();
        assert_eq!(
            (st.row_count, st.null_count),
            (0, 0),
            "{stage}: empty stats"
        );
        let w = d
            .read_array::<u16>("wide", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cells(&w), vec![0, 0, 9], "{stage}: oversized chunk");
        let st = d.array_stats("s").await.unwrap().unwrap();
        assert_eq!(
            (st.min, st.max),
            (
                Some(StatValue::Str("a".into())),
                Some(StatValue::Str("c".into()))
            ),
            "{stage}: string stats"
        );
        let st = d.array_stats("b").await.unwrap().unwrap();
        assert_eq!(
            (st.min, st.max),
            (Some(StatValue::Bool(false)), Some(StatValue::Bool(true))),
            "{stage}: bool stats"
        );
        let st = d.array_stats("t").await.unwrap().unwrap();
        assert_eq!(
            (st.min, st.max),
            (
                Some(StatValue::Timestamp(TimestampNs(-5))),
                Some(StatValue::Timestamp(TimestampNs(5)))
            ),
            "{stage}: timestamp stats"
        );
        let across = h
            .read_array_across_stacked::<f64>("scalar", &["d"], vec![], vec![])
            .await
            .unwrap();
        assert_eq!((across.shape(), cells(&across)), (&[1usize][..], vec![2.5]));
    }
    let report = verify(&s, |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn repeated_writes_are_written_once_and_flush_touches_only_changed_arrays() {
    async fn layer_size(writes: u32) -> usize {
        let storage = MemoryStorage::new();
        let s = create_mem(&storage, StoreConfig::default()).await;
        let ds = s.create_dataset("d").await.unwrap();
        for name in ["a", "b"] {
            ds.define_array::<i64>(name, strings(&["i"]), vec![256], Some(vec![64]), None)
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        for w in 0..writes {
            let v: Vec<i64> = (0..256)
                .map(|i| i * 7 + i64::from(w == writes - 1))
                .collect();
            ds.write_array("a", vec![], arr1(v).view()).await.unwrap();
        }
        storage.reset_ops();
        s.flush().await.unwrap();
        let log = storage.op_log();
        assert!(
            !log.iter().any(|(_, p)| p.starts_with(mem_root().join("b"))),
            "flush touched the unchanged array b: {log:?}"
        );
        let layer = newest_layer(&s, &mem_root(), "a");
        storage.contents(&layer).unwrap().len()
    }
    let one = layer_size(1).await;
    let many = layer_size(50).await;
    assert_eq!(
        one, many,
        "50 writes of the same chunks must flush the same bytes as one"
    );
}

/// Layer counts stay bounded without the user's help: a flush that leaves an
/// array file with more layers than the policy allows merges them.
#[tokio::test]
async fn flushes_merge_layers_past_the_policy_threshold() {
    let storage = MemoryStorage::new();
    let config = StoreConfig {
        policy: atlas_core::Policy {
            max_layers_per_array: 4,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    let s = create_mem(&storage, config).await;
    let mut max_seen = 0;
    for i in 0..50u32 {
        let ds = s.create_dataset(&format!("p{i}")).await.unwrap();
        ds.define_array::<u32>("v", strings(&["i"]), vec![3], None, None)
            .await
            .unwrap();
        ds.write_array("v", vec![], arr1(vec![i, i + 1, i + 2]).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
        let n = s.array_layers("v").len();
        assert!(n <= 4, "flush {i}: {n} layers, policy allows 4");
        max_seen = max_seen.max(n);
    }
    assert_eq!(max_seen, 4, "layers accumulate up to the threshold");
    let r = reopen_mem(&storage, "merged").await;
    for i in 0..50u32 {
        let got = r
            .open_dataset(&format!("p{i}"))
            .await
            .unwrap()
            .read_array::<u32>("v", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cells(&got), vec![i, i + 1, i + 2]);
    }
    let report = atlas_core::verify::verify(&r, |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Retired layers stay on storage, listed in the manifest, for the grace
/// period; a later commit past it deletes them, and the orphan sweep never
/// deletes a retired file early.
#[tokio::test]
async fn retired_layers_outlive_their_commit_by_the_grace_period() {
    let storage = MemoryStorage::new();
    let config = StoreConfig {
        policy: atlas_core::Policy {
            gc_grace_secs: 1,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    let s = create_mem(&storage, config).await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<u32>("v", strings(&["i"]), vec![4], Some(vec![2]), None)
        .await
        .unwrap();
    for k in 0..3u32 {
        ds.write_array("v", vec![0], arr1(vec![k, k]).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let old: Vec<_> = s.array_layers("v");
    let v_dir = s.array_dir("v").unwrap();
    assert_eq!(old.len(), 3);
    s.compact().await.unwrap();
    let files = storage.files();
    let root = mem_root();
    for l in &old {
        let p = v_dir.join(l.as_str());
        assert!(
            files.contains(&p),
            "retired {l} kept within the grace period"
        );
    }
    let manifest = String::from_utf8(storage.contents(&root.join(REGISTRY_FILE)).unwrap()).unwrap();
    assert!(manifest.contains("\"retired\""), "{manifest}");
    drop(ds);
    drop(s);
    // A new writer sweeps orphans: retired files are not orphans.
    let w = reopen_mem(&storage, "sweep").await;
    w.create_dataset("e").await.unwrap();
    for l in &old {
        assert!(storage.files().contains(&v_dir.join(l.as_str())));
    }
    // Past the grace period, the next commit deletes them.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    w.flush().await.unwrap();
    for l in &old {
        assert!(
            !storage.files().contains(&v_dir.join(l.as_str())),
            "{l} deleted after the grace period"
        );
    }
    // No retired layer is listed any more (the registry run the flush
    // replaced is, for its own grace period).
    let manifest = String::from_utf8(storage.contents(&root.join(REGISTRY_FILE)).unwrap()).unwrap();
    for l in &old {
        assert!(!manifest.contains(l.as_str()), "{manifest}");
    }
}

/// Array directories are ids the manifest assigns, never array names: `TEMP`
/// and `temp` (one directory on a case-insensitive file system if named by
/// name) get different directories, and a dropped array re-created under the
/// same name gets a new one, so the orphan sweep can never mix them up.
#[tokio::test]
async fn array_directories_are_manifest_ids_not_names() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, no_grace()).await;
    let ds = s.create_dataset("d").await.unwrap();
    for name in ["TEMP", "temp", "Temp"] {
        ds.define_array::<u8>(name, strings(&["i"]), vec![2], None, None)
            .await
            .unwrap();
        ds.write_array(name, vec![], arr1(vec![1u8, 2]).view())
            .await
            .unwrap();
    }
    s.flush().await.unwrap();
    let dirs: Vec<_> = ["TEMP", "temp", "Temp"]
        .iter()
        .map(|n| s.array_dir(n).unwrap())
        .collect();
    for d in &dirs {
        let name = d.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("atlas.a"), "{name}");
        assert_eq!(name, name.to_ascii_lowercase(), "ids are case-proof");
    }
    assert_ne!(dirs[0], dirs[1]);
    assert_ne!(dirs[1], dirs[2]);
    ds.delete_array("temp").await.unwrap();
    s.flush().await.unwrap();
    assert!(s.array_dir("temp").is_none());
    ds.define_array::<u8>("temp", strings(&["i"]), vec![3], None, None)
        .await
        .unwrap();
    ds.write_array("temp", vec![], arr1(vec![7u8, 8, 9]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let again = s.array_dir("temp").unwrap();
    assert!(
        !dirs.contains(&again),
        "a re-created array gets a new directory"
    );
    drop(ds);
    drop(s);
    let r = reopen_mem(&storage, "ids").await;
    r.create_dataset("w").await.unwrap(); // takes the writer lock: orphan sweep
    let d = r.open_dataset("d").await.unwrap();
    for (name, want) in [
        ("TEMP", vec![1u8, 2]),
        ("Temp", vec![1, 2]),
        ("temp", vec![7, 8, 9]),
    ] {
        let got = d
            .read_array::<u8>(name, vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cells(&got), want, "{name}");
    }
    assert_eq!(r.array_dir("temp").unwrap(), again);
    let report = atlas_core::verify::verify(&r, |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A store written before directory ids, the policy and the retired list
/// (arrays in directories named by the array, none of those manifest fields)
/// still opens, reads, takes writes (new arrays get id directories) and
/// verifies. The legacy layout is made from a current store by renaming each
/// array directory to the array's name and deleting the new manifest fields.
#[tokio::test]
async fn stores_without_directory_ids_still_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("legacy");
    {
        let s = Atlas::create_path(&root, StoreConfig::default())
            .await
            .unwrap();
        let ds = s.create_dataset("d").await.unwrap();
        ds.define_array::<i32>("TEMP", strings(&["z"]), vec![3], None, None)
            .await
            .unwrap();
        ds.write_array("TEMP", vec![], arr1(vec![1i32, 2, 3]).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let reg = root.join(REGISTRY_FILE);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&reg).unwrap()).unwrap();
    let obj = m.as_object_mut().unwrap();
    obj.remove("next_dir");
    obj.remove("policy");
    obj.remove("retired");
    for (name, a) in obj["arrays"].as_object_mut().unwrap() {
        let dir = a.as_object_mut().unwrap().remove("dir").unwrap();
        std::fs::rename(root.join(dir.as_str().unwrap()), root.join(name)).unwrap();
    }
    std::fs::write(&reg, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    let s = Atlas::open_path(&root).await.unwrap();
    assert_eq!(s.array_dir("TEMP").unwrap(), root.join("TEMP"));
    let ds = s.open_dataset("d").await.unwrap();
    let got = ds
        .read_array::<i32>("TEMP", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), vec![1, 2, 3]);
    ds.write_array("TEMP", vec![0], arr1(vec![9i32]).view())
        .await
        .unwrap();
    ds.define_array::<i32>("PSAL", strings(&["z"]), vec![1], None, None)
        .await
        .unwrap();
    s.flush().await.unwrap();
    s.compact().await.unwrap();
    drop(ds);
    drop(s);
    let r = Atlas::open_path(&root).await.unwrap();
    assert_eq!(
        r.array_dir("TEMP").unwrap(),
        root.join("TEMP"),
        "legacy directory kept"
    );
    assert!(r
        .array_dir("PSAL")
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("atlas.a"));
    let got = r
        .open_dataset("d")
        .await
        .unwrap()
        .read_array::<i32>("TEMP", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), vec![9, 2, 3]);
    let report = atlas_core::verify::verify(&r, |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// `array_schemas` answers many datasets in one pass, in the order asked,
/// with committed and pending definitions alike, `None` where the array is
/// absent and `DatasetNotFound` for a missing dataset; each answer equals
/// the per-dataset `array_schema`.
#[tokio::test]
async fn array_schemas_answer_many_datasets_at_once() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    for (i, name) in ["b", "a", "c"].iter().enumerate() {
        let ds = s.create_dataset(name).await.unwrap();
        if *name != "c" {
            ds.define_array::<f32>("T", strings(&["n"]), vec![i as u64 + 1], None, None)
                .await
                .unwrap();
        }
    }
    s.flush().await.unwrap();
    // A pending definition, after the commit.
    let d = s.create_dataset("d").await.unwrap();
    d.define_array::<f32>("T", strings(&["n"]), vec![9], None, None)
        .await
        .unwrap();
    let names = ["d", "c", "a", "b"];
    let got = s.array_schemas("T", &names).unwrap();
    let shapes: Vec<Option<Vec<u64>>> = got
        .iter()
        .map(|x| x.as_ref().map(|x| x.shape.clone()))
        .collect();
    assert_eq!(shapes, [Some(vec![9]), None, Some(vec![2]), Some(vec![1])]);
    for (name, schema) in names.iter().zip(&got) {
        let one = s
            .open_dataset(name)
            .await
            .unwrap()
            .array_schema("T")
            .unwrap();
        assert_eq!(&one, schema, "{name}");
    }
    assert!(matches!(
        s.array_schemas("T", &["a", "nope"]),
        Err(atlas_core::Error::DatasetNotFound { name }) if name == "nope"
    ));
}

/// `read_array_blocking` (the calling thread, no runtime) reads what
/// `read_array` reads, pending and flushed; `array_entries` gives each
/// dataset's schema and attributes from one pass, pending changes included,
/// and datasets with equal attributes share one map once flushed.
#[test]
fn blocking_reads_and_array_entries_match_the_async_api() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let storage = MemoryStorage::new();
    let s = rt.block_on(create_mem(&storage, StoreConfig::default()));
    for (i, name) in ["p0", "p1", "p2", "q"].iter().enumerate() {
        let ds = rt.block_on(s.create_dataset(name)).unwrap();
        if *name == "q" {
            continue;
        }
        rt.block_on(ds.define_array::<f64>(
            "t",
            strings(&["y", "x"]),
            vec![3, 4],
            Some(vec![2, 2]),
            None,
        ))
        .unwrap();
        let v: Vec<f64> = (0..12).map(|k| (i * 100 + k) as f64).collect();
        rt.block_on(ds.write_array("t", vec![], arr(&[3, 4], v).view()))
            .unwrap();
        ds.set_array_attribute("t", "units", Attr::String("K".into()))
            .unwrap();
    }
    let check = |when: &str| {
        for name in ["p0", "p1", "p2"] {
            let ds = rt.block_on(s.open_dataset(name)).unwrap();
            for (start, count) in [(vec![], vec![]), (vec![1, 1], vec![2, 3])] {
                let want = rt
                    .block_on(ds.read_array::<f64>("t", start.clone(), count.clone()))
                    .unwrap()
                    .unwrap();
                let got = ds
                    .read_array_blocking::<f64>("t", &start, &count)
                    .unwrap()
                    .unwrap();
                assert_eq!(got, want, "{name} {start:?} {count:?} {when}");
            }
            assert!(ds
                .read_array_blocking::<f64>("nope", &[], &[])
                .unwrap()
                .is_none());
            assert!(
                ds.read_array_blocking::<f32>("t", &[], &[]).is_err(),
                "a wrong element type is an error, as in read_array"
            );
        }
        let q = rt.block_on(s.open_dataset("q")).unwrap();
        assert!(q
            .read_array_blocking::<f64>("t", &[], &[])
            .unwrap()
            .is_none());
    };
    check("pending");
    rt.block_on(s.flush()).unwrap();
    check("flushed");

    let entries = s.array_entries("t", &["p2", "q", "p0"]).unwrap();
    let (p2, p0) = (entries[0].as_ref().unwrap(), entries[2].as_ref().unwrap());
    assert!(entries[1].is_none(), "q has no array t");
    assert_eq!(p2.schema.shape, vec![3, 4]);
    assert_eq!(p2.attributes.get("units"), Some(&Attr::String("K".into())));
    assert!(
        Arc::ptr_eq(&p2.attributes, &p0.attributes),
        "equal attribute sets are one map in the registry"
    );
    assert!(matches!(
        s.array_entries("t", &["p0", "missing"]),
        Err(Error::DatasetNotFound { name }) if name == "missing"
    ));
    // A pending change is what the next call sees.
    let p1 = rt.block_on(s.open_dataset("p1")).unwrap();
    p1.set_array_attribute("t", "units", Attr::String("degC".into()))
        .unwrap();
    let entries = s.array_entries("t", &["p0", "p1"]).unwrap();
    assert_eq!(
        entries[1].as_ref().unwrap().attributes.get("units"),
        Some(&Attr::String("degC".into()))
    );
    assert_eq!(
        s.array_schemas("t", &["p1"]).unwrap()[0]
            .as_ref()
            .unwrap()
            .shape,
        vec![3, 4]
    );
}
