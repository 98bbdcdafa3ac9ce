//! Every bad input of SPEC §4 gets its typed error, never a panic, and leaves
//! committed data intact: after each error the test flushes, reopens and
//! compares the whole store with the state before.

use std::path::Path;
use std::sync::Arc;

use atlas_core::{
    Atlas, Attr, Error, FillValue, LocalStorage, MemoryStorage, MetaFormat, OpenOptions,
    StoreConfig, REGISTRY_FILE,
};

use crate::common::{
    arr, arr1, cells, create_mem, full, mem_root, newest_layer, no_grace, reopen_mem, snapshot,
    strings, used_bytes, Snapshot,
};

/// A store with committed data: `d1` (f32 `temp` 2×3, i32 `sal`, attribute)
/// and `d2` (f32 `temp`).
async fn seed(storage: &MemoryStorage) -> (Atlas, Snapshot) {
    let s = create_mem(storage, StoreConfig::default()).await;
    let d1 = s.create_dataset("d1").await.unwrap();
    d1.define_array::<f32>(
        "temp",
        strings(&["y", "x"]),
        vec![2, 3],
        Some(vec![1, 2]),
        Some(FillValue::Float32(-1.0)),
    )
    .await
    .unwrap();
    d1.write_array(
        "temp",
        vec![0, 0],
        arr(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view(),
    )
    .await
    .unwrap();
    d1.define_array::<i32>("sal", strings(&["z"]), vec![4], None, None)
        .await
        .unwrap();
    d1.write_array("sal", vec![1], arr1(vec![7i32, 8]).view())
        .await
        .unwrap();
    d1.set_attribute("title", Attr::from("first")).unwrap();
    let d2 = s.create_dataset("d2").await.unwrap();
    d2.define_array::<f32>("temp", strings(&["y", "x"]), vec![2, 3], None, None)
        .await
        .unwrap();
    d2.write_array("temp", vec![], full(&[2, 3], 9.5f32).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let snap = snapshot(&s).await;
    (s, snap)
}

/// After an error: the handle still flushes, and a fresh handle sees exactly
/// the state from before.
async fn assert_intact(s: &Atlas, storage: &MemoryStorage, before: &Snapshot, ctx: &str) {
    assert_eq!(
        &snapshot(s).await,
        before,
        "{ctx}: live state changed by a failed call"
    );
    s.flush()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: flush after the error failed: {e}"));
    let r = reopen_mem(storage, ctx).await;
    assert_eq!(
        &snapshot(&r).await,
        before,
        "{ctx}: committed state changed"
    );
}

fn is_array_error(
    r: &Result<impl std::fmt::Debug, Error>,
    pred: impl Fn(&array_format::Error) -> bool,
) -> bool {
    matches!(r, Err(Error::Array { error, .. }) if pred(error))
}

const BAD_NAMES: [(&str, &str); 6] = [
    ("", "empty"),
    ("/", "slash"),
    ("a/b", "slash inside"),
    ("a\0b", "NUL"),
    (".", "dot"),
    ("..", "dot-dot"),
];

#[tokio::test]
async fn invalid_dataset_and_array_names() {
    let storage = MemoryStorage::new();
    let (s, before) = seed(&storage).await;
    let long = "n".repeat(256);
    let max = "m".repeat(255);
    let mut bad: Vec<(String, &str)> = BAD_NAMES
        .iter()
        .map(|(n, why)| ((*n).to_owned(), *why))
        .collect();
    bad.push((long.clone(), "256 bytes"));
    // 128 two-byte characters = 256 bytes.
    bad.push(("é".repeat(128), "256 bytes of UTF-8"));
    let d1 = s.open_dataset("d1").await.unwrap();
    for (name, why) in &bad {
        match s.create_dataset(name).await {
            Err(Error::InvalidName { kind, name: n, .. }) => {
                assert_eq!(kind, "dataset", "{why}");
                assert_eq!(&n, name, "{why}");
            }
            other => panic!("create_dataset({why}) gave {other:?}"),
        }
        match d1
            .define_array::<f32>(name, strings(&["i"]), vec![2], None, None)
            .await
        {
            Err(Error::InvalidName { kind, .. }) => assert_eq!(kind, "array", "{why}"),
            other => panic!("define_array({why}) gave {other:?}"),
        }
        assert!(
            s.open_dataset(name).await.is_err(),
            "open_dataset({why}) must fail"
        );
        assert!(
            s.delete_dataset(name).await.is_err(),
            "delete_dataset({why}) must fail"
        );
    }
    // Array names are directories: reserved names are rejected too.
    for name in [".hidden", "atlas.json", "atlas.lock"] {
        assert!(
            matches!(
                d1.define_array::<f32>(name, strings(&["i"]), vec![2], None, None)
                    .await,
                Err(Error::InvalidName { kind: "array", .. })
            ),
            "array name {name:?}"
        );
    }
    assert!(matches!(
        d1.set_array_attribute("temp", "", Attr::Int64(1)),
        Err(Error::InvalidName {
            kind: "attribute",
            ..
        })
    ));
    assert_intact(&s, &storage, &before, "invalid names").await;

    // The longest valid names work, and survive a reopen.
    let ds = s.create_dataset(&max).await.unwrap();
    ds.define_array::<u8>(&max, strings(&["i"]), vec![1], None, None)
        .await
        .unwrap();
    ds.write_array(&max, vec![], arr1(vec![42u8]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "255-byte names").await;
    let got = r
        .open_dataset(&max)
        .await
        .unwrap()
        .read_array::<u8>(&max, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), vec![42]);
}

#[tokio::test]
async fn array_call_errors_are_typed_and_harmless() {
    let storage = MemoryStorage::new();
    let (s, before) = seed(&storage).await;
    let d1 = s.open_dataset("d1").await.unwrap();
    let ok = arr(&[2, 3], vec![0.5f32; 6]);

    // dtype mismatch on write and read.
    let r = d1
        .write_array("temp", vec![], arr(&[2, 3], vec![1i32; 6]).view())
        .await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::DTypeMismatch { stored, requested, .. }
                if *stored == atlas_core::DType::Float32 && *requested == atlas_core::DType::Int32
        )),
        "write i32 into f32: {r:?}"
    );
    let r = d1.read_array::<f64>("temp", vec![], vec![]).await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::DTypeMismatch { .. }
        )),
        "read f64 from f32: {r:?}"
    );
    let r = d1.read_array::<String>("sal", vec![], vec![]).await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::DTypeMismatch { .. }
        )),
        "read string from i32: {r:?}"
    );
    if let Err(Error::Array { dataset, array, .. }) = &r {
        assert_eq!((dataset.as_str(), array.as_str()), ("d1", "sal"));
    }

    // Wrong rank.
    let r = d1
        .write_array("temp", vec![], arr1(vec![1.0f32; 3]).view())
        .await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::RankMismatch {
                expected: 2,
                actual: 1,
                ..
            }
        )),
        "1-d data into 2-d: {r:?}"
    );
    let r = d1.read_array::<f32>("temp", vec![0], vec![1]).await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::RankMismatch { .. }
        )),
        "rank-1 region on 2-d: {r:?}"
    );
    let r = d1.read_array::<f32>("temp", vec![0, 0], vec![1]).await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::RankMismatch { .. }
        )),
        "start and count of different ranks: {r:?}"
    );
    let r = d1.write_array("temp", vec![0], ok.view()).await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::RankMismatch { .. }
        )),
        "start of rank 1 with 2-d data: {r:?}"
    );

    // Out-of-bounds start/count.
    for (start, count) in [
        (vec![2u64, 0], vec![1u64, 1]),
        (vec![0, 2], vec![1, 2]),
        (vec![0, 0], vec![3, 3]),
        (vec![u64::MAX, 0], vec![2, 1]),
        (vec![1, 1], vec![u64::MAX, 1]),
    ] {
        let r = d1
            .read_array::<f32>("temp", start.clone(), count.clone())
            .await;
        assert!(
            is_array_error(&r, |e| matches!(e, array_format::Error::OutOfBounds { .. })),
            "read {start:?}+{count:?}: {r:?}"
        );
    }
    let r = d1
        .write_array("temp", vec![1, 2], arr(&[1, 2], vec![1.0f32; 2]).view())
        .await;
    assert!(
        is_array_error(&r, |e| matches!(e, array_format::Error::OutOfBounds { .. })),
        "write past the edge: {r:?}"
    );
    let r = d1
        .write_array("temp", vec![u64::MAX, 0], arr(&[1, 1], vec![1.0f32]).view())
        .await;
    assert!(
        is_array_error(&r, |e| matches!(e, array_format::Error::OutOfBounds { .. })),
        "write at u64::MAX: {r:?}"
    );
    // Write data of the wrong (too large) shape.
    let r = d1
        .write_array("temp", vec![], full(&[3, 3], 1.0f32).view())
        .await;
    assert!(
        is_array_error(&r, |e| matches!(e, array_format::Error::OutOfBounds { .. })),
        "3x3 data into 2x3: {r:?}"
    );
    let r = d1
        .write_array("temp", vec![], full(&[2, 4], 1.0f32).view())
        .await;
    assert!(
        is_array_error(&r, |e| matches!(e, array_format::Error::OutOfBounds { .. })),
        "2x4 data into 2x3: {r:?}"
    );

    // Writes to arrays or datasets that do not exist.
    assert!(matches!(
        d1.write_array("nope", vec![], ok.view()).await,
        Err(Error::ArrayNotFound { dataset, array }) if dataset == "d1" && array == "nope"
    ));

    // Bad schemas.
    let r = d1
        .define_array::<f32>(
            "z",
            strings(&["y", "x"]),
            vec![4, 4],
            Some(vec![0, 2]),
            None,
        )
        .await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::InvalidSchema { .. }
        )),
        "zero chunk extent: {r:?}"
    );
    let r = d1
        .define_array::<f32>("z", strings(&["y", "x"]), vec![4, 4], Some(vec![2]), None)
        .await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::InvalidSchema { .. }
        )),
        "chunk shape of wrong rank: {r:?}"
    );
    let r = d1
        .define_array::<f32>("z", strings(&["y"]), vec![4, 4], None, None)
        .await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::InvalidSchema { .. }
        )),
        "dims of wrong rank: {r:?}"
    );
    let r = d1
        .define_array::<f32>(
            "z",
            strings(&["i"]),
            vec![4],
            None,
            Some(FillValue::Int8(1)),
        )
        .await;
    assert!(
        is_array_error(&r, |e| matches!(
            e,
            array_format::Error::FillMismatch { .. }
        )),
        "fill of another dtype: {r:?}"
    );
    // Defining an array twice, with the same or another schema.
    assert!(matches!(
        d1.define_array::<f32>("temp", strings(&["y", "x"]), vec![2, 3], None, None).await,
        Err(Error::ArrayExists { dataset, array }) if dataset == "d1" && array == "temp"
    ));
    assert!(matches!(
        d1.define_array::<u8>("sal", strings(&["q"]), vec![9], None, None)
            .await,
        Err(Error::ArrayExists { .. })
    ));
    assert!(
        d1.list_arrays().unwrap() == strings(&["temp", "sal"]),
        "failed defines add no array"
    );

    // Unknown datasets.
    assert!(matches!(
        s.open_dataset("ghost").await,
        Err(Error::DatasetNotFound { name }) if name == "ghost"
    ));
    assert!(matches!(
        s.delete_dataset("ghost").await,
        Err(Error::DatasetNotFound { name }) if name == "ghost"
    ));
    assert!(matches!(
        s.read_array_across::<f32>("temp", &["d1", "ghost"], vec![], vec![]).await,
        Err(Error::DatasetNotFound { name }) if name == "ghost"
    ));
    assert!(matches!(
        s.read_array_across_stacked::<f32>("temp", &["ghost"], vec![], vec![])
            .await,
        Err(Error::DatasetNotFound { .. })
    ));
    // A view on a dataset deleted since (in another clone) reports it.
    let d2 = s.open_dataset("d2").await.unwrap();
    let tmp = s.create_dataset("tmp").await.unwrap();
    s.delete_dataset("tmp").await.unwrap();
    assert!(matches!(
        tmp.set_attribute("k", Attr::Int64(1)),
        Err(Error::DatasetNotFound { .. })
    ));
    assert!(matches!(
        tmp.read_array::<f32>("temp", vec![], vec![]).await,
        Err(Error::DatasetNotFound { .. })
    ));
    assert!(matches!(
        tmp.define_array::<f32>("temp", strings(&["i"]), vec![1], None, None)
            .await,
        Err(Error::DatasetNotFound { .. })
    ));
    assert!(tmp.attributes().is_empty());
    drop(d2);
    assert_intact(&s, &storage, &before, "array call errors").await;
}

#[tokio::test]
async fn create_path_on_existing_store_fails_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    {
        let s = Atlas::create_path(root, StoreConfig::default())
            .await
            .unwrap();
        let ds = s.create_dataset("keep").await.unwrap();
        ds.define_array::<i16>("v", strings(&["i"]), vec![3], None, None)
            .await
            .unwrap();
        ds.write_array("v", vec![], arr1(vec![1i16, 2, 3]).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let reg_before = std::fs::read(root.join(REGISTRY_FILE)).unwrap();
    for fmt in [MetaFormat::Json, MetaFormat::Binary] {
        let cfg = StoreConfig {
            meta_format: fmt,
            ..StoreConfig::default()
        };
        match Atlas::create_path(root, cfg).await {
            Err(Error::StoreExists { path }) => assert_eq!(path, root),
            other => panic!("create over a store gave {other:?}"),
        }
    }
    assert_eq!(
        std::fs::read(root.join(REGISTRY_FILE)).unwrap(),
        reg_before,
        "atlas.json untouched"
    );
    let r = Atlas::open_path(root).await.unwrap();
    let v = r
        .open_dataset("keep")
        .await
        .unwrap()
        .read_array::<i16>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&v), vec![1, 2, 3], "existing data survives");
}

#[tokio::test]
async fn open_path_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    match Atlas::open_path(tmp.path()).await {
        Err(Error::StoreNotFound { path }) => assert_eq!(path, tmp.path()),
        other => panic!("empty dir gave {other:?}"),
    }
    let missing = tmp.path().join("does-not-exist");
    assert!(matches!(
        Atlas::open_path(&missing).await,
        Err(Error::StoreNotFound { .. })
    ));
    assert!(!missing.exists(), "open must not create the directory");
    let storage = MemoryStorage::new();
    assert!(matches!(
        Atlas::open_with(
            Arc::new(storage),
            Path::new("/nothing"),
            OpenOptions::default()
        )
        .await,
        Err(Error::StoreNotFound { .. })
    ));
}

#[tokio::test]
async fn corrupt_registry_is_a_typed_error_naming_the_file() {
    for fmt in [MetaFormat::Json, MetaFormat::Binary] {
        let storage = MemoryStorage::new();
        let s = create_mem(
            &storage,
            StoreConfig {
                meta_format: fmt,
                ..StoreConfig::default()
            },
        )
        .await;
        let ds = s.create_dataset("d").await.unwrap();
        ds.define_array::<f32>("t", strings(&["i"]), vec![2], None, None)
            .await
            .unwrap();
        ds.set_attribute("a", Attr::from("x")).unwrap();
        s.flush().await.unwrap();
        drop((ds, s));
        // Damage the manifest (atlas.json) and, separately, the registry run
        // holding the datasets: each is a typed error naming the damaged file,
        // at open (manifest, run trailer and index) or at the first read of
        // the damaged block (runs are read lazily).
        let manifest = mem_root().join(REGISTRY_FILE);
        let run = crate::common::segment_files(&storage)[0].clone();
        for reg in [manifest, run] {
            let good = storage.contents(&reg).unwrap();
            let mut variants: Vec<(String, Vec<u8>)> = vec![
                ("empty".into(), Vec::new()),
                ("not json".into(), b"hello, I am not a registry".to_vec()),
                ("json array".into(), b"[1, 2, 3]".to_vec()),
                ("json null".into(), b"null".to_vec()),
                ("binary garbage".into(), vec![0xff, 0x00, 0x13, 0x37]),
                ("magic only".into(), b"ATLASSEG".to_vec()),
            ];
            for cut in [1, 8, 12, good.len() / 3, good.len() / 2, good.len() - 2] {
                variants.push((format!("truncated to {cut}"), good[..cut].to_vec()));
            }
            for (what, bytes) in variants {
                storage.overwrite(&reg, bytes);
                let opened = match crate::common::open_mem(&storage).await {
                    Ok(s) => s
                        .list_datasets()
                        .and_then(|_| s.dataset_meta("d"))
                        .map(|_| ()),
                    Err(e) => Err(e),
                };
                match opened {
                    Err(Error::CorruptRegistry { path, reason }) => {
                        assert_eq!(path, reg, "{fmt:?} {what}");
                        assert!(!reason.is_empty());
                        let msg = Error::CorruptRegistry { path, reason }.to_string();
                        assert!(msg.contains(reg.to_str().unwrap()), "{what}: {msg}");
                    }
                    Err(Error::UnsupportedRegistry { path, .. }) => {
                        // Acceptable for a damaged binary header.
                        assert_eq!(path, reg, "{fmt:?} {what}");
                    }
                    other => panic!("{fmt:?} {what}: expected CorruptRegistry, got {other:?}"),
                }
            }
            // An unknown version is its own typed error.
            if reg.ends_with(REGISTRY_FILE) {
                let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
                v["version"] = serde_json::json!(99);
                storage.overwrite(&reg, serde_json::to_vec(&v).unwrap());
                assert!(matches!(
                    crate::common::open_mem(&storage).await,
                    Err(Error::UnsupportedRegistry { version: 99, .. })
                ));
            } else {
                let mut b = good.clone();
                b[8..12].copy_from_slice(&99u32.to_le_bytes());
                storage.overwrite(&reg, b);
                assert!(matches!(
                    crate::common::open_mem(&storage).await,
                    Err(Error::UnsupportedRegistry { version: 99, .. })
                ));
            }
            storage.overwrite(&reg, good);
        }
    }
}

#[tokio::test]
async fn corrupt_registry_on_local_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Atlas::create_path(tmp.path(), StoreConfig::default())
        .await
        .unwrap();
    s.create_dataset("d").await.unwrap();
    s.flush().await.unwrap();
    drop(s);
    let reg = tmp.path().join(REGISTRY_FILE);
    let good = std::fs::read(&reg).unwrap();
    std::fs::write(&reg, &good[..good.len() / 2]).unwrap();
    match Atlas::open_path(tmp.path()).await {
        Err(e @ Error::CorruptRegistry { .. }) => {
            assert!(e.to_string().contains(&reg.display().to_string()), "{e}");
        }
        other => panic!("truncated atlas.json gave {other:?}"),
    }
    std::fs::write(&reg, b"\x00\x01garbage").unwrap();
    assert!(matches!(
        Atlas::open_path(tmp.path()).await,
        Err(Error::CorruptRegistry { .. })
    ));
}

#[tokio::test]
async fn registry_naming_a_missing_or_damaged_layer_errors_without_panic() {
    // Missing layer file.
    let storage = MemoryStorage::new();
    let (s, _) = seed(&storage).await;
    let layer = newest_layer(&s, &mem_root(), "sal");
    drop(s);
    let saved = storage.contents(&layer).unwrap();
    {
        use array_format::Storage as _;
        storage.remove_file(&layer).unwrap();
    }
    match crate::common::open_mem(&storage).await {
        Ok(r) => {
            let err = r
                .open_dataset("d1")
                .await
                .unwrap()
                .read_array::<i32>("sal", vec![], vec![])
                .await
                .expect_err("reading a missing layer must fail");
            let msg = err.to_string();
            assert!(
                msg.contains(layer.file_name().unwrap().to_str().unwrap()),
                "{msg}"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(layer.file_name().unwrap().to_str().unwrap()),
                "error should name the missing layer: {msg}"
            );
        }
    }
    storage.overwrite(&layer, saved.clone());
    reopen_mem(&storage, "layer restored").await;

    // Truncated layer file: open or first read errors, naming the file.
    for cut in [0, 10, saved.len() / 2, saved.len() - 1] {
        storage.overwrite(&layer, saved[..cut].to_vec());
        let res = match crate::common::open_mem(&storage).await {
            Err(e) => Err(e),
            Ok(r) => r
                .open_dataset("d1")
                .await
                .unwrap()
                .read_array::<i32>("sal", vec![], vec![])
                .await
                .map(|_| ()),
        };
        let err = res.expect_err("a truncated layer must not read");
        let msg = err.to_string();
        assert!(
            msg.contains(layer.file_name().unwrap().to_str().unwrap()),
            "cut {cut}: {msg}"
        );
    }
    // A layer from an unknown format version: a typed error naming the file.
    let mut future = saved.clone();
    future[8..12].copy_from_slice(&99u32.to_le_bytes());
    storage.overwrite(&layer, future);
    let res = match crate::common::open_mem(&storage).await {
        Err(e) => Err(e),
        Ok(r) => r
            .open_dataset("d1")
            .await
            .unwrap()
            .read_array::<i32>("sal", vec![], vec![])
            .await
            .map(|_| ()),
    };
    match res {
        Err(Error::Storage(e) | Error::Array { error: e, .. }) => {
            assert!(
                matches!(&*e, array_format::Error::UnsupportedVersion { version: 99, path, .. }
                    if *path == layer),
                "{e:?}"
            );
        }
        other => panic!("unknown layer version gave {other:?}"),
    }
    storage.overwrite(&layer, saved);
    // Other arrays were never affected; the restored store reads fully.
    let r = reopen_mem(&storage, "restored").await;
    let v = r
        .open_dataset("d1")
        .await
        .unwrap()
        .read_array::<i32>("sal", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&v), vec![0, 7, 8, 0]);
}

#[tokio::test]
async fn second_writer_gets_locked_and_reader_keeps_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let s = Atlas::create_path(root, no_grace()).await.unwrap();
    let ds = s.create_dataset("d").await.unwrap();
    for name in ["a", "b", "c"] {
        ds.define_array::<f64>(name, strings(&["i"]), vec![8], Some(vec![2]), None)
            .await
            .unwrap();
        ds.write_array(name, vec![], full(&[8], 1.0f64).view())
            .await
            .unwrap();
    }
    s.flush().await.unwrap();
    // More layers, so compaction retires several files.
    ds.write_array("a", vec![0], full(&[4], 2.0f64).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let old = [2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0];

    // The seed pattern: a read-only handle beside a live writer.
    let s2 = Atlas::open_path(root).await.unwrap();
    assert!(!s2.is_writer());
    let ds2 = s2.open_dataset("d").await.unwrap();
    let a = ds2
        .read_array::<f64>("a", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&a), old.to_vec());
    // `b` is not read before the writer moves on: only its pinned handles
    // keep the snapshot.

    // A second writer: its first mutation is refused, naming the store.
    match s2.create_dataset("x").await {
        Err(Error::Locked { path }) => assert_eq!(path, root),
        other => panic!("second writer got {other:?}"),
    }
    assert!(matches!(
        ds2.set_attribute("k", Attr::Int64(1)),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        ds2.write_array("a", vec![], full(&[8], 5.0f64).view())
            .await,
        Err(Error::Locked { .. })
    ));
    let msg = Error::Locked {
        path: root.to_owned(),
    }
    .to_string();
    assert!(msg.contains(&root.display().to_string()), "{msg}");
    assert!(!s2.is_writer());
    // flush on a handle that never mutated is a harmless no-op.
    s2.flush().await.unwrap();

    // The writer rewrites everything, flushes and compacts; retired files go.
    let layers_before: Vec<_> = ["a", "b"]
        .iter()
        .flat_map(|n| {
            s.array_layers(n)
                .into_iter()
                .map(|l| s.array_dir(n).unwrap().join(l.as_str()))
                .collect::<Vec<_>>()
        })
        .collect();
    for name in ["a", "b"] {
        ds.write_array(name, vec![], full(&[8], 7.0f64).view())
            .await
            .unwrap();
    }
    // `c` loses its only user: its whole directory is retired.
    let c_dir = s.array_dir("c").unwrap();
    ds.delete_array("c").await.unwrap();
    s.flush().await.unwrap();
    assert!(!c_dir.exists(), "dropped array directory removed");
    s.compact().await.unwrap();
    for p in &layers_before {
        assert!(!p.exists(), "retired layer {} must be removed", p.display());
    }
    // The reader still sees the old values, for the array it had read and the
    // one it had not.
    let a = ds2
        .read_array::<f64>("a", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&a), old.to_vec(), "reader keeps its snapshot of a");
    let b = ds2
        .read_array::<f64>("b", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&b), vec![1.0; 8], "reader keeps its snapshot of b");
    let across = s2
        .read_array_across::<f64>("b", &["d"], vec![0], vec![2])
        .await
        .unwrap();
    assert_eq!(cells(across[0].as_ref().unwrap()), vec![1.0, 1.0]);
    let c = ds2
        .read_array::<f64>("c", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cells(&c),
        vec![1.0; 8],
        "reader keeps its snapshot of a dropped array"
    );
    let stats = ds2.array_stats("b").await.unwrap().unwrap();
    assert_eq!(stats.max, Some(atlas_core::StatValue::Float(1.0)));

    // With the writer gone, the stale handle may not write.
    drop((ds, s));
    match s2.create_dataset("x").await {
        Err(Error::StaleHandle { path }) => assert_eq!(path, root),
        other => panic!("stale handle got {other:?}"),
    }
    assert!(matches!(
        ds2.write_array("a", vec![], full(&[8], 5.0f64).view())
            .await,
        Err(Error::StaleHandle { .. })
    ));
    assert!(!s2.is_writer(), "a stale handle must not keep the lock");
    // It still reads its snapshot.
    let a = ds2
        .read_array::<f64>("a", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&a), old.to_vec());
    drop((ds2, s2));
    // A fresh handle sees the new values and may write.
    let s3 = Atlas::open_path(root).await.unwrap();
    let d3 = s3.open_dataset("d").await.unwrap();
    let a = d3
        .read_array::<f64>("a", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&a), vec![7.0; 8]);
    d3.set_attribute("k", Attr::Int64(1)).unwrap();
    assert!(s3.is_writer());
    s3.flush().await.unwrap();
}

#[tokio::test]
async fn second_writer_via_explicit_write_open_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Atlas::create_path(tmp.path(), StoreConfig::default())
        .await
        .unwrap();
    let res = Atlas::open_with(
        Arc::new(LocalStorage),
        tmp.path(),
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        },
    )
    .await;
    assert!(
        matches!(&res, Err(Error::Locked { path }) if path == tmp.path()),
        "{res:?}"
    );
    drop(s);
    let w = Atlas::open_with(
        Arc::new(LocalStorage),
        tmp.path(),
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(w.is_writer());
}

#[tokio::test]
async fn full_disk_during_flush_keeps_the_last_commit() {
    let storage = MemoryStorage::new();
    let (s, before) = seed(&storage).await;
    let d1 = s.open_dataset("d1").await.unwrap();
    // A large, poorly compressible change.
    d1.define_array::<u64>("big", strings(&["i"]), vec![65_536], Some(vec![8192]), None)
        .await
        .unwrap();
    let data: Vec<u64> = (0..65_536u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    d1.write_array("big", vec![], arr1(data.clone()).view())
        .await
        .unwrap();
    d1.set_attribute("title", Attr::from("second")).unwrap();
    let after = snapshot(&s).await;
    for headroom in [0u64, 100, 4096, 100_000] {
        storage.set_capacity(Some(used_bytes(&storage) + headroom));
        let res = s.flush().await;
        storage.set_capacity(None);
        let err = res.expect_err("flush onto a full disk must fail");
        let full_disk = matches!(
            &err,
            Error::Storage(e) if matches!(
                &**e,
                array_format::Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull
            )
        );
        assert!(full_disk, "headroom {headroom}: {err:?}");
        let r = reopen_mem(&storage, "full disk").await;
        assert_eq!(
            snapshot(&r).await,
            before,
            "headroom {headroom}: store not at its last commit"
        );
        assert_eq!(snapshot(&s).await, after, "pending changes kept");
    }
    // With space again, the same handle commits its pending work.
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "after full disk").await;
    assert_eq!(snapshot(&r).await, after);
    let big = r
        .open_dataset("d1")
        .await
        .unwrap()
        .read_array::<u64>("big", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&big), data);
}

#[tokio::test]
async fn full_disk_while_spilling_a_write_never_applies_part_of_it() {
    // With a tiny pending budget every chunk spills to a scratch file as it
    // is written; a full disk part-way through one write_array call must not
    // leave some of its chunks applied (a later flush would commit them).
    let mut failures = 0;
    for headroom in 0..400u64 {
        let ctx = format!("headroom {headroom}");
        let storage = MemoryStorage::new();
        let s = crate::common::create_mem_spilling(&storage).await;
        let ds = s.create_dataset("d").await.unwrap();
        ds.define_array::<f32>("v", strings(&["i"]), vec![8], Some(vec![1]), None)
            .await
            .unwrap();
        ds.write_array("v", vec![], full(&[8], 1.0f32).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
        storage.set_capacity(Some(used_bytes(&storage) + headroom));
        let res = ds.write_array("v", vec![], full(&[8], 2.0f32).view()).await;
        storage.set_capacity(None);
        let got = cells(
            &ds.read_array::<f32>("v", vec![], vec![])
                .await
                .unwrap()
                .unwrap(),
        );
        match res {
            Ok(()) => {
                assert_eq!(got, vec![2.0; 8], "{ctx}: successful write");
                break;
            }
            Err(e) => {
                failures += 1;
                assert_eq!(
                    got,
                    vec![1.0; 8],
                    "{ctx}: write_array failed ({e}) but part of it is visible"
                );
                s.flush().await.unwrap();
                let r = reopen_mem(&storage, &ctx).await;
                let got = cells(
                    &r.open_dataset("d")
                        .await
                        .unwrap()
                        .read_array::<f32>("v", vec![], vec![])
                        .await
                        .unwrap()
                        .unwrap(),
                );
                assert_eq!(
                    got,
                    vec![1.0; 8],
                    "{ctx}: a failed write was committed in part"
                );
            }
        }
    }
    assert!(failures > 0, "the disk never filled up");
}

#[tokio::test]
async fn hostile_registry_contents_are_corrupt_not_panics() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    for name in ["a", "b"] {
        let ds = s.create_dataset(name).await.unwrap();
        ds.define_array::<f32>("t", strings(&["i"]), vec![2], None, None)
            .await
            .unwrap();
        ds.set_array_attribute("t", "units", Attr::from("K"))
            .unwrap();
    }
    s.flush().await.unwrap();
    drop(s);
    // Fields of the manifest (atlas.json) are damaged. (Registry runs are
    // binary and CRC-checked: their hostile forms are tested in
    // `registry::run` and fuzzed by the `registry_run` target.)
    let manifest = mem_root().join(REGISTRY_FILE);
    let good_manifest: serde_json::Value =
        serde_json::from_slice(&storage.contents(&manifest).unwrap()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: Vec<(&str, Edit)> = vec![
        ("format tag", |v| v["format"] = "something-else".into()),
        ("unknown codec", |v| v["codec"] = "brotli".into()),
        ("layer outside the directory", |v| {
            v["arrays"]["t"]["layers"][0] = "../../etc/passwd".into();
        }),
        ("layer with a bad name", |v| {
            v["arrays"]["t"]["layers"][0] = "d-zz.af".into();
        }),
        ("array name with a slash", |v| {
            let t = v["arrays"]["t"].take();
            v["arrays"] = serde_json::json!({ "../t": t });
        }),
        ("negative generation", |v| v["generation"] = (-1).into()),
    ];
    for (what, edit) in edits {
        let mut v = good_manifest.clone();
        edit(&mut v);
        storage.overwrite(&manifest, serde_json::to_vec(&v).unwrap());
        match crate::common::open_mem(&storage).await {
            Err(Error::CorruptRegistry { path, .. }) => assert_eq!(path, manifest, "{what}"),
            other => panic!("{what}: expected CorruptRegistry, got {other:?}"),
        }
        storage.overwrite(&manifest, serde_json::to_vec(&good_manifest).unwrap());
    }
    let r = reopen_mem(&storage, "restored").await;
    assert_eq!(r.list_datasets().unwrap(), strings(&["a", "b"]));
}

/// A hand-built `ArraySchema` (its fields are public) with a zero chunk extent,
/// a rank mismatch or missing dimension names is refused by
/// `define_array_schema` with an invalid-input error; nothing is defined, the
/// next write does not panic, and the store still flushes and reopens.
#[tokio::test]
async fn hand_built_schemas_are_validated() {
    use atlas_core::{ArraySchema, DType, ErrorKind};
    let storage = MemoryStorage::new();
    let (s, before) = seed(&storage).await;
    let good = ArraySchema::new(
        "h",
        DType::Float64,
        strings(&["a", "b"]),
        vec![4, 4],
        None,
        None,
    )
    .unwrap();
    let mut zero = good.clone();
    zero.chunk_shape = vec![0, 4];
    let mut rank = good.clone();
    rank.chunk_shape = vec![4];
    let mut dims = good.clone();
    dims.dims = strings(&["a"]);
    let d1 = s.open_dataset("d1").await.unwrap();
    for (what, bad) in [("zero chunk", zero), ("chunk rank", rank), ("dims", dims)] {
        let e = d1.define_array_schema("h", bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
        assert!(
            matches!(&e, Error::Array { error, .. } if matches!(**error, array_format::Error::InvalidSchema { .. })),
            "{what}: {e:?}"
        );
        let w = d1
            .write_array("h", vec![0, 0], arr(&[1, 1], vec![1.0f64]).view())
            .await;
        assert!(
            matches!(w, Err(Error::ArrayNotFound { .. })),
            "{what}: nothing was defined: {w:?}"
        );
    }
    assert_intact(&s, &storage, &before, "hand-built schemas").await;
}

/// Every error has a stable kind grouped by what the caller can do.
#[tokio::test]
async fn errors_have_stable_kinds() {
    use atlas_core::ErrorKind;
    let storage = MemoryStorage::new();
    let (s, _) = seed(&storage).await;
    let nf = s.open_dataset("ghost").await.unwrap_err();
    assert_eq!(nf.kind(), ErrorKind::NotFound);
    assert_eq!(nf.kind().as_str(), "not_found");
    let ex = s.create_dataset("d1").await.unwrap_err();
    assert_eq!(ex.kind(), ErrorKind::AlreadyExists);
    let bad = s.create_dataset("").await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    let d1 = s.open_dataset("d1").await.unwrap();
    let dt = d1
        .read_array::<f64>("temp", vec![], vec![])
        .await
        .unwrap_err();
    assert_eq!(dt.kind(), ErrorKind::InvalidInput, "{dt}");
    let oob = d1
        .read_array::<f32>("temp", vec![5, 0], vec![1, 1])
        .await
        .unwrap_err();
    assert_eq!(oob.kind(), ErrorKind::InvalidInput, "{oob}");
    let gone = Atlas::open_with(
        Arc::new(storage.clone()),
        Path::new("/nowhere"),
        OpenOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    let full_disk = std::io::Error::from_raw_os_error(28);
    assert_eq!(ErrorKind::of_io(&full_disk), ErrorKind::ResourceExhausted);
    let emfile = std::io::Error::from_raw_os_error(24);
    assert_eq!(ErrorKind::of_io(&emfile), ErrorKind::ResourceExhausted);
}
