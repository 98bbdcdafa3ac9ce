//! `Atlas::create_datasets`: a batch gives exactly what the per-call API
//! gives, is checked whole before the store changes, and leaves nothing
//! behind when writing its cells fails; `prepare_dataset` and
//! `create_prepared` (and `create_prepared_owned`) give what a batch gives.

use std::sync::Arc;

use atlas_core::{
    ArrayData, ArraySchema, ArrayStats, Atlas, Attr, DType, DatasetView, Error, FillValue,
    MemoryStorage, NewArray, NewDataset, StatValue, StoreConfig, TimestampNs,
};
use indexmap::IndexMap;

use crate::common::{arr, create_mem, full, reopen_mem, snapshot, strings, used_bytes};

fn schema(
    name: &str,
    dtype: DType,
    shape: &[u64],
    chunk: Option<&[u64]>,
    fill: Option<FillValue>,
) -> Arc<ArraySchema> {
    let dims = (0..shape.len()).map(|i| format!("d{i}")).collect();
    Arc::new(
        ArraySchema::new(
            name,
            dtype,
            dims,
            shape.to_vec(),
            chunk.map(<[u64]>::to_vec),
            fill,
        )
        .unwrap(),
    )
}

/// `n` datasets named `{prefix}{i}` with every element type, arrays of one
/// chunk and of several, an array left at its fill value, shared and
/// unshared schemas and attribute sets, and `levels` cells in the `f64`
/// array (large enough, the batch is encoded on several cores).
fn batch(prefix: &str, n: usize, levels: usize) -> Vec<NewDataset> {
    let temp = schema("TEMP", DType::Float32, &[20], Some(&[7]), None);
    let units: Arc<IndexMap<String, Attr>> = Arc::new(
        [("units".to_owned(), Attr::from("degC"))]
            .into_iter()
            .collect(),
    );
    let grid = schema("grid", DType::Int64, &[3, 4], Some(&[2, 3]), None);
    (0..n)
        .map(|i| {
            let mut ds = NewDataset::new(format!("{prefix}{i:04}"));
            ds.attributes.insert("cycle".into(), Attr::Int64(i as i64));
            if i % 3 == 0 {
                ds.attributes
                    .insert("lat".into(), Attr::Float64(i as f64 / 7.0 - 30.0));
            }
            let f = i as f32;
            let mut t = NewArray::new(
                "TEMP",
                Arc::clone(&temp),
                Some(arr(&[20], (0..20).map(|k| f + k as f32 / 8.0).collect()).into()),
            );
            t.attributes = Arc::clone(&units);
            ds.arrays.push(t);
            ds.arrays.push(NewArray::new(
                "grid",
                Arc::clone(&grid),
                Some(arr(&[3, 4], (0..12).map(|k| k * i as i64 - 5).collect()).into()),
            ));
            // A schema of its own per dataset, and a per-dataset attribute set.
            let mut deep = NewArray::new(
                "DEEP",
                schema("DEEP", DType::Float64, &[levels as u64], None, None),
                Some(
                    arr(
                        &[levels],
                        (0..levels).map(|k| (k * (i + 1)) as f64 * 0.25).collect(),
                    )
                    .into(),
                ),
            );
            deep.attributes = Arc::new(
                [("id".to_owned(), Attr::Int64(i as i64))]
                    .into_iter()
                    .collect(),
            );
            ds.arrays.push(deep);
            let words: Vec<String> = (0..3).map(|k| format!("w{}", i * k)).collect();
            ds.arrays.push(NewArray::new(
                "label",
                schema("label", DType::String, &[3], None, None),
                Some(arr(&[3], words).into()),
            ));
            let small: Vec<(DType, ArrayData)> = vec![
                (DType::Bool, arr(&[2], vec![i % 2 == 0, true]).into()),
                (DType::Int8, arr(&[2], vec![-(i as i8 % 100), 7]).into()),
                (DType::Int16, arr(&[2], vec![i as i16, -300]).into()),
                (DType::Int32, arr(&[2], vec![i as i32 * 1000, 1]).into()),
                (DType::UInt8, arr(&[2], vec![i as u8, 255]).into()),
                (DType::UInt16, arr(&[2], vec![i as u16, 2]).into()),
                (DType::UInt32, arr(&[2], vec![i as u32, 3]).into()),
                (DType::UInt64, arr(&[2], vec![i as u64, u64::MAX]).into()),
                (
                    DType::Timestamp,
                    arr(
                        &[2],
                        vec![TimestampNs(i as i64 * 1_000_000_000), TimestampNs(-1)],
                    )
                    .into(),
                ),
            ];
            for (k, (dtype, data)) in small.into_iter().enumerate() {
                // Not every dataset has every array.
                if (i + k) % 4 != 3 {
                    let name = format!("s{k}");
                    ds.arrays.push(NewArray::new(
                        name.clone(),
                        schema(&name, dtype, &[2], None, None),
                        Some(data),
                    ));
                }
            }
            // Never written: reads as its fill value.
            ds.arrays.push(NewArray::new(
                "empty",
                schema(
                    "empty",
                    DType::Float64,
                    &[4],
                    None,
                    Some(FillValue::Float64(-9.5)),
                ),
                None,
            ));
            ds
        })
        .collect()
}

async fn write_one(ds: &DatasetView, name: &str, data: &ArrayData) {
    let start = vec![];
    match data {
        ArrayData::Bool(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::I8(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::I16(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::I32(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::I64(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::U8(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::U16(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::U32(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::U64(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::F32(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::F64(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::Str(v) => ds.write_array(name, start, v.view()).await,
        ArrayData::Timestamp(v) => ds.write_array(name, start, v.view()).await,
        other => panic!("{:?} not handled by the test", other.dtype()),
    }
    .unwrap();
}

/// The batch written through the per-call API.
async fn per_call(s: &Atlas, batch: &[NewDataset]) {
    for d in batch {
        let ds = s.create_dataset(&d.name).await.unwrap();
        for (k, v) in &d.attributes {
            ds.set_attribute(k, v.clone()).unwrap();
        }
        for a in &d.arrays {
            ds.define_array_schema(&a.name, (*a.schema).clone())
                .await
                .unwrap();
            if let Some(data) = &a.data {
                write_one(&ds, &a.name, data).await;
            }
            if !a.attributes.is_empty() {
                ds.set_array_attributes(&a.name, Arc::clone(&a.attributes))
                    .unwrap();
            }
        }
    }
}

/// Every array's statistics as the catalog holds them (the registry's
/// records, which a batch fills from its encoded cells), per array name.
async fn catalog(s: &Atlas) -> Vec<(String, Vec<(String, ArrayStats)>)> {
    let mut all = Vec::new();
    for a in s.list_arrays() {
        let stats = s.catalog_array_stats(&a).await.unwrap();
        all.push((a, stats));
    }
    all
}

#[tokio::test]
async fn a_batch_creates_what_the_per_call_api_creates() {
    let (sa, sb) = (MemoryStorage::new(), MemoryStorage::new());
    let a = create_mem(&sa, StoreConfig::default()).await;
    let b = create_mem(&sb, StoreConfig::default()).await;
    // A committed dataset and a pending one before the batches.
    for s in [&a, &b] {
        let ds = s.create_dataset("before").await.unwrap();
        ds.define_array::<f32>("TEMP", strings(&["d0"]), vec![20], Some(vec![7]), None)
            .await
            .unwrap();
        ds.write_array("TEMP", vec![], full(&[20], 1.5f32).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
        s.create_dataset("pending").await.unwrap();
    }
    // Small (encoded on one core), then large enough for several cores
    // (300 × 2,000 f64 = 4.8 MB), then one more small one after a commit.
    let first = batch("a", 12, 8);
    let second = batch("b", 300, 2000);
    let third = batch("c", 5, 8);
    a.create_datasets(&first).await.unwrap();
    per_call(&b, &first).await;
    a.create_datasets(&second).await.unwrap();
    per_call(&b, &second).await;
    assert_eq!(snapshot(&a).await, snapshot(&b).await, "pending");
    assert_eq!(catalog(&a).await, catalog(&b).await, "pending statistics");
    assert_eq!(
        a.list_datasets_with_ids().unwrap(),
        b.list_datasets_with_ids().unwrap(),
        "ids"
    );
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    a.create_datasets(&third).await.unwrap();
    per_call(&b, &third).await;
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    let want = snapshot(&b).await;
    assert_eq!(want.datasets.len(), 2 + 12 + 300 + 5);
    assert_eq!(snapshot(&a).await, want, "committed");
    let stats = catalog(&b).await;
    assert_eq!(catalog(&a).await, stats, "committed statistics");
    drop((a, b));
    let (ra, rb) = (reopen_mem(&sa, "a").await, reopen_mem(&sb, "b").await);
    assert_eq!(snapshot(&ra).await, want, "reopened");
    assert_eq!(catalog(&ra).await, stats, "reopened statistics");
    assert_eq!(
        ra.list_datasets_with_ids().unwrap(),
        rb.list_datasets_with_ids().unwrap()
    );
    // A batch's arrays take later per-call writes like any other.
    let ds = ra.open_dataset("b0007").await.unwrap();
    ds.write_array("TEMP", vec![5], full(&[2], -1.0f32).view())
        .await
        .unwrap();
    let t = ds
        .read_array::<f32>("TEMP", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t[[4]], 7.5);
    assert_eq!(t[[5]], -1.0);
    assert_eq!(t[[7]], 7.875);
}

/// A valid batch with `bad` inserted before its last dataset.
fn with_bad(bad: NewDataset) -> Vec<NewDataset> {
    let mut b = batch("ok", 3, 4);
    b.insert(2, bad);
    b
}

#[tokio::test]
async fn a_batch_is_checked_whole_before_the_store_changes() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    s.create_datasets(&batch("old", 2, 4)).await.unwrap();
    s.flush().await.unwrap();
    s.create_datasets(&batch("pend", 2, 4)).await.unwrap();
    let before = snapshot(&s).await;
    let valid = || batch("x", 1, 4).pop().unwrap();
    let named = |name: &str| {
        let mut d = valid();
        d.name = name.to_owned();
        d
    };
    let mut cases: Vec<(&str, Vec<NewDataset>)> = vec![
        ("committed name", with_bad(named("old0001"))),
        ("pending name", with_bad(named("pend0000"))),
        ("name twice", with_bad(named("ok0000"))),
        ("bad dataset name", with_bad(named("a/b"))),
        ("empty dataset name", with_bad(named(""))),
    ];
    let mut d = valid();
    d.arrays.push(d.arrays[0].clone());
    cases.push(("array twice", with_bad(d)));
    let mut d = valid();
    d.arrays[1].name = "bad/name".into();
    cases.push(("bad array name", with_bad(d)));
    let mut d = valid();
    d.attributes.insert(String::new(), Attr::Int64(1));
    cases.push(("bad attribute name", with_bad(d)));
    let mut d = valid();
    d.arrays[0].attributes = Arc::new([(String::new(), Attr::Int64(1))].into_iter().collect());
    cases.push(("bad array attribute name", with_bad(d)));
    let mut d = valid();
    d.arrays[0].data = Some(arr(&[20], vec![1.0f64; 20]).into());
    cases.push(("element type", with_bad(d)));
    let mut d = valid();
    d.arrays[0].data = Some(arr(&[4, 5], vec![1.0f32; 20]).into());
    cases.push(("rank", with_bad(d)));
    let mut d = valid();
    d.arrays[0].data = Some(arr(&[19], vec![1.0f32; 19]).into());
    cases.push(("shape", with_bad(d)));
    let mut d = valid();
    let mut broken = (*d.arrays[0].schema).clone();
    broken.chunk_shape = vec![0];
    d.arrays[0].schema = Arc::new(broken);
    cases.push(("schema", with_bad(d)));
    for (what, b) in &cases {
        let e = s.create_datasets(b).await.unwrap_err();
        let ok = match *what {
            "committed name" | "pending name" | "name twice" => {
                matches!(e, Error::DatasetExists { .. })
            }
            "array twice" => matches!(e, Error::ArrayExists { .. }),
            "bad dataset name"
            | "empty dataset name"
            | "bad array name"
            | "bad attribute name"
            | "bad array attribute name" => matches!(e, Error::InvalidName { .. }),
            "element type" => matches!(&e, Error::Array { error, .. }
                if matches!(**error, array_format::Error::DTypeMismatch { .. })),
            "rank" => matches!(&e, Error::Array { error, .. }
                if matches!(**error, array_format::Error::RankMismatch { .. })),
            "shape" => matches!(&e, Error::Array { error, .. }
                if matches!(**error, array_format::Error::ShapeMismatch { .. })),
            "schema" => matches!(&e, Error::Array { error, .. }
                if matches!(**error, array_format::Error::InvalidSchema { .. })),
            other => panic!("case {other} has no expected error"),
        };
        assert!(ok, "{what}: unexpected error {e:?}");
        assert_eq!(snapshot(&s).await, before, "{what}: the store changed");
    }
    // Nothing of the refused batches is committed either, and the store
    // takes a valid batch after them.
    s.flush().await.unwrap();
    drop(s);
    let r = reopen_mem(&storage, "after refusals").await;
    assert_eq!(snapshot(&r).await, before);
    r.create_datasets(&batch("later", 2, 4)).await.unwrap();
    assert_eq!(r.list_datasets().unwrap().len(), before.datasets.len() + 2);
    // An empty batch changes nothing.
    r.create_datasets(&[]).await.unwrap();
}

/// A batch large enough to be checked on every core reports the error a
/// check in order reports: the first dataset with one, whatever the kind,
/// and nothing changes; a valid one (its records built on every core) gives
/// what the same datasets give in batches checked and built in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_reports_its_first_error_in_order() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let n = 1500;
    let twice = |b: &mut Vec<NewDataset>, d: usize| {
        let a = b[d].arrays[0].clone();
        b[d].arrays.push(a);
    };
    let misshaped = |b: &mut Vec<NewDataset>, d: usize| {
        b[d].arrays[0].data = Some(arr(&[19], vec![1.0f32; 19]).into());
    };
    let renamed = |b: &mut Vec<NewDataset>, d: usize, name: &str| name.clone_into(&mut b[d].name);
    // Contents (400) before a name given twice (900).
    let mut b = batch("big", n, 2);
    twice(&mut b, 400);
    misshaped(&mut b, 700);
    renamed(&mut b, 900, "big0010");
    let e = s.create_datasets(&b).await.unwrap_err();
    assert!(
        matches!(&e, Error::ArrayExists { dataset, .. } if dataset == "big0400"),
        "{e:?}"
    );
    // A name given twice (300) before contents (400, 700).
    renamed(&mut b, 300, "big0010");
    let e = s.create_datasets(&b).await.unwrap_err();
    assert!(
        matches!(&e, Error::DatasetExists { name } if name == "big0010"),
        "{e:?}"
    );
    // An invalid dataset name (1200) after contents (700), then alone.
    let mut b = batch("big", n, 2);
    renamed(&mut b, 1200, "a/b");
    let alone = s.create_datasets(&b).await.unwrap_err();
    misshaped(&mut b, 700);
    twice(&mut b, 1300);
    let e = s.create_datasets(&b).await.unwrap_err();
    assert!(
        matches!(&e, Error::Array { dataset, .. } if dataset == "big0700"),
        "{e:?}"
    );
    assert!(matches!(&alone, Error::InvalidName { .. }), "{alone:?}");
    assert!(s.list_datasets().unwrap().is_empty());

    // The valid batch against the same datasets in batches under the
    // threshold.
    let valid = batch("big", n, 2);
    s.create_datasets(&valid).await.unwrap();
    let t = create_mem(&MemoryStorage::new(), StoreConfig::default()).await;
    for part in valid.chunks(500) {
        t.create_datasets(part).await.unwrap();
    }
    let names = s.list_datasets_with_ids().unwrap();
    assert_eq!(names.len(), n);
    assert_eq!(names, t.list_datasets_with_ids().unwrap());
    for (_, name) in &names {
        assert_eq!(s.dataset_meta(name).unwrap(), t.dataset_meta(name).unwrap());
    }
    assert_eq!(catalog(&s).await, catalog(&t).await);
}

#[tokio::test]
async fn a_deleted_name_is_created_anew_by_a_batch() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    s.create_datasets(&batch("d", 3, 4)).await.unwrap();
    s.flush().await.unwrap();
    // One deleted and committed, one deleted pending: both come back as
    // new datasets (new ids) with only the batch's arrays.
    s.delete_dataset("d0000").await.unwrap();
    s.flush().await.unwrap();
    s.delete_dataset("d0001").await.unwrap();
    let old_ids: Vec<(u64, String)> = s.list_datasets_with_ids().unwrap();
    let mut again = Vec::new();
    for name in ["d0000", "d0001"] {
        let mut d = NewDataset::new(name);
        d.arrays.push(NewArray::new(
            "only",
            schema("only", DType::Int32, &[2], None, None),
            Some(arr(&[2], vec![4, 5]).into()),
        ));
        again.push(d);
    }
    s.create_datasets(&again).await.unwrap();
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "recreated").await;
    let ids = r.list_datasets_with_ids().unwrap();
    assert_eq!(ids.len(), 3);
    let max_old = old_ids.iter().map(|(id, _)| *id).max().unwrap();
    for name in ["d0000", "d0001"] {
        let (id, _) = ids.iter().find(|(_, n)| n == name).unwrap();
        assert!(*id > max_old, "{name} has a new id");
        let ds = r.open_dataset(name).await.unwrap();
        assert_eq!(ds.list_arrays().unwrap(), vec!["only".to_owned()]);
        assert!(ds
            .read_array::<f32>("TEMP", vec![], vec![])
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            ds.read_array::<i32>("only", vec![], vec![])
                .await
                .unwrap()
                .unwrap()
                .into_raw_vec_and_offset()
                .0,
            vec![4, 5]
        );
    }
}

/// A store whose pending chunks all spill to a scratch file as they are
/// written (a one-byte pending budget), holding two committed datasets.
async fn spilling_store() -> (MemoryStorage, Atlas) {
    let storage = MemoryStorage::new();
    let s = crate::common::create_mem_spilling(&storage).await;
    s.create_datasets(&batch("old", 2, 4)).await.unwrap();
    s.flush().await.unwrap();
    (storage, s)
}

/// Checks that `s` holds `n` datasets, flushes it, and that a handle
/// reopened on `storage` sees what `s` saw.
async fn flushed_and_reopened(s: Atlas, storage: &MemoryStorage, n: usize, ctx: &str) {
    let want = snapshot(&s).await;
    assert_eq!(want.datasets.len(), n, "{ctx}");
    s.flush().await.unwrap();
    drop(s);
    let r = reopen_mem(storage, ctx).await;
    assert_eq!(snapshot(&r).await, want, "{ctx}: the batch again, reopened");
}

#[tokio::test]
async fn a_batch_that_fails_while_writing_leaves_nothing() {
    // With a one-byte pending budget every chunk spills to a scratch file as
    // it is written: a full disk part-way through the batch fails it after
    // some arrays were defined and written, which must all be undone.
    let mut failures = 0;
    let b = batch("b", 40, 50);
    for step in 0..60u64 {
        let headroom = step * 600;
        let ctx = format!("headroom {headroom}");
        let (storage, s) = spilling_store().await;
        let before = snapshot(&s).await;
        storage.set_capacity(Some(used_bytes(&storage) + headroom));
        let res = s.create_datasets(&b).await;
        storage.set_capacity(None);
        match res {
            Ok(()) => {
                assert_eq!(s.n_datasets(), 42, "{ctx}");
                break;
            }
            Err(e) => {
                failures += 1;
                assert!(
                    matches!(
                        e.kind(),
                        atlas_core::ErrorKind::ResourceExhausted | atlas_core::ErrorKind::Io
                    ),
                    "{ctx}: {e:?}"
                );
                assert_eq!(
                    snapshot(&s).await,
                    before,
                    "{ctx}: a failed batch is visible"
                );
                if step % 2 == 0 {
                    s.flush().await.unwrap();
                    drop(s);
                    let r = reopen_mem(&storage, &ctx).await;
                    assert_eq!(
                        snapshot(&r).await,
                        before,
                        "{ctx}: a failed batch was committed"
                    );
                } else {
                    // Nothing of it is left in the array files either: the
                    // same batch goes through once there is room.
                    s.create_datasets(&b)
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: the batch again: {e}"));
                    flushed_and_reopened(s, &storage, 42, &ctx).await;
                }
            }
        }
    }
    assert!(failures > 0, "the disk never filled up");
}

#[tokio::test]
async fn a_read_only_handle_refuses_a_batch() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    s.create_datasets(&batch("d", 1, 4)).await.unwrap();
    s.flush().await.unwrap();
    let generation = s.generation();
    let path = crate::common::mem_root();
    let past = Atlas::open_at_with(
        Arc::new(storage.clone()),
        &path,
        atlas_core::At::Generation(generation),
        atlas_core::OpenOptions::default(),
    )
    .await
    .unwrap();
    let e = past.create_datasets(&batch("e", 1, 4)).await.unwrap_err();
    assert!(matches!(e, Error::ReadOnly { .. }), "{e:?}");
    // Prepared datasets given to it come back.
    let group: Vec<_> = batch("e", 2, 4)
        .into_iter()
        .map(|d| s.prepare_dataset(d).unwrap())
        .collect();
    let refused = past.create_prepared_owned(group).await.unwrap_err();
    assert!(matches!(refused.error, Error::ReadOnly { .. }), "{refused}");
    assert_eq!(refused.datasets.len(), 2);
    s.create_prepared_owned(refused.datasets).await.unwrap();
    assert!(s.dataset_exists("e0001").unwrap());
}

/// A batch beside a compaction: the batch locks array files for writing in
/// name order, and a compaction's first phase read-locks them in first-use
/// order (here the reverse). With more arrays than tokio's cooperative
/// budget, the compaction yields part-way through its locks; before the
/// batch took the commit lock, round 0 hung every time (a review's probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_beside_a_compaction_finishes() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let names: Vec<String> = (0..200).rev().map(|i| format!("a{i:03}")).collect();
    let batch = |prefix: &str| -> Vec<NewDataset> {
        let mut d = NewDataset::new(format!("{prefix}0"));
        for n in &names {
            d.arrays.push(NewArray::new(
                n.clone(),
                schema(n, DType::Int32, &[2], None, None),
                Some(arr(&[2], vec![1, 2]).into()),
            ));
        }
        vec![d]
    };
    s.create_datasets(&batch("seed")).await.unwrap();
    s.flush().await.unwrap();
    for i in 0..4 {
        s.create_datasets(&batch(&format!("p{i}_"))).await.unwrap();
        let c = {
            let s = s.clone();
            tokio::spawn(async move { s.compact().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let b = {
            let (s, batch) = (s.clone(), batch(&format!("q{i}_")));
            tokio::spawn(async move { s.create_datasets(&batch).await })
        };
        let both = async {
            c.await.unwrap().unwrap();
            b.await.unwrap().unwrap();
        };
        tokio::time::timeout(std::time::Duration::from_mins(1), both)
            .await
            .unwrap_or_else(|_| panic!("round {i}: compaction and batch deadlocked"));
    }
    s.flush().await.unwrap();
    assert_eq!(s.n_datasets(), 1 + 4 + 4);
}

/// Datasets prepared on other threads (`prepare_dataset`) and added with
/// `create_prepared` give exactly what `create_datasets` gives, pending
/// and committed; a dataset that cannot be prepared fails as it would in a
/// batch; cells prepared for other compression options are refused, the
/// store unchanged; and a prepared batch that fails can be added again,
/// dataset by dataset (its cells are copied, not taken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_datasets_create_what_a_batch_creates() {
    let (sa, sb) = (MemoryStorage::new(), MemoryStorage::new());
    let a = create_mem(&sa, StoreConfig::default()).await;
    let b = create_mem(&sb, StoreConfig::default()).await;
    for (prefix, n, levels) in [("p", 40, 8), ("q", 200, 2000)] {
        let datasets = batch(prefix, n, levels);
        a.create_datasets(&datasets).await.unwrap();
        // Prepared on two threads, half each, as an importer's decoders.
        let halves: Vec<Vec<NewDataset>> = datasets.chunks(n / 2).map(<[_]>::to_vec).collect();
        let workers: Vec<_> = halves
            .into_iter()
            .map(|half| {
                let b = b.clone();
                std::thread::spawn(move || {
                    half.into_iter()
                        .map(|d| b.prepare_dataset(d).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let prepared: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        assert_eq!(prepared.len(), n);
        assert_eq!(prepared[1].name(), datasets[1].name);
        assert!(prepared[1]
            .dataset()
            .arrays
            .iter()
            .all(|a| a.data.is_none()));
        let raw: u64 = datasets[1]
            .arrays
            .iter()
            .filter_map(|a| a.data.as_ref().map(ArrayData::data_bytes))
            .sum();
        assert!(
            raw > 0 && prepared[1].raw_bytes() >= raw,
            "strings count their lengths"
        );
        assert!(prepared[1].stored_bytes() > 0);
        b.create_prepared(&prepared).await.unwrap();
    }
    assert_eq!(snapshot(&a).await, snapshot(&b).await, "pending");
    assert_eq!(catalog(&a).await, catalog(&b).await, "pending statistics");
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    let want = snapshot(&a).await;
    assert_eq!(want.datasets.len(), 240);
    assert_eq!(snapshot(&b).await, want, "committed");
    assert_eq!(catalog(&a).await, catalog(&b).await, "committed statistics");

    // A dataset that cannot be prepared: the error a batch of it gives.
    let mut bad = batch("bad", 1, 4).remove(0);
    bad.arrays[0].data = Some(arr(&[3], vec![1.0f32, 2.0, 3.0]).into());
    let in_batch = a
        .create_datasets(std::slice::from_ref(&bad))
        .await
        .unwrap_err();
    let prepared = b.prepare_dataset(bad).unwrap_err();
    assert_eq!(prepared.to_string(), in_batch.to_string());

    // Other compression options: refused as invalid input, nothing added.
    let sc = MemoryStorage::new();
    let c = create_mem(
        &sc,
        StoreConfig {
            shuffle: !StoreConfig::default().shuffle,
            ..StoreConfig::default()
        },
    )
    .await;
    let other = b.prepare_dataset(batch("z", 1, 4).remove(0)).unwrap();
    let e = c
        .create_prepared(std::slice::from_ref(&other))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), atlas_core::ErrorKind::InvalidInput, "{e}");
    assert!(
        e.to_string().contains("compressed with other options"),
        "{e}"
    );
    assert_eq!(c.n_datasets(), 0);
    assert!(!c.dataset_exists("z0000").unwrap());

    // A batch with a taken name fails whole; its datasets can be added
    // again one by one, and only the taken one fails.
    let group: Vec<_> = ["r0", "p0001", "r1"]
        .into_iter()
        .map(|name| {
            let mut d = batch("x", 1, 4).remove(0);
            d.name = name.into();
            b.prepare_dataset(d).unwrap()
        })
        .collect();
    let n = b.n_datasets();
    assert!(matches!(
        b.create_prepared(&group).await,
        Err(Error::DatasetExists { .. })
    ));
    assert_eq!(b.n_datasets(), n);
    let alone: Vec<bool> = add_each_alone(&b, &group).await;
    assert_eq!(alone, [true, false, true]);
    b.flush().await.unwrap();
    let r1 = b.open_dataset("r1").await.unwrap();
    let t = r1
        .read_array::<f32>("TEMP", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t[[1]], 0.125);
}

/// Adds each of `group` alone; whether each was added.
async fn add_each_alone(s: &Atlas, group: &[atlas_core::PreparedDataset]) -> Vec<bool> {
    let mut out = Vec::new();
    for p in group {
        out.push(s.create_prepared(std::slice::from_ref(p)).await.is_ok());
    }
    out
}

/// A prepared batch that fails after some of its arrays were stored (the
/// cells of a later dataset prepared for other compression options), or
/// that names a dataset twice, leaves the store as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_batch_that_fails_late_leaves_nothing() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    s.create_datasets(&batch("old", 2, 4)).await.unwrap();
    s.flush().await.unwrap();
    let before = snapshot(&s).await;
    let other = atlas_core::Compression {
        shuffle: !s.compression().shuffle,
        ..s.compression()
    };
    let mut group: Vec<_> = batch("new", 3, 4)
        .into_iter()
        .map(|d| s.prepare_dataset(d).unwrap())
        .collect();
    group.push(atlas_core::PreparedDataset::prepare(batch("late", 1, 4).remove(0), other).unwrap());
    let e = s.create_prepared(&group).await.unwrap_err();
    assert_eq!(e.kind(), atlas_core::ErrorKind::InvalidInput, "{e}");
    let twice = [group[0].clone(), group[0].clone()];
    assert!(matches!(
        s.create_prepared(&twice).await,
        Err(Error::DatasetExists { .. })
    ));
    assert_eq!(snapshot(&s).await, before, "pending");
    s.flush().await.unwrap();
    assert_eq!(snapshot(&s).await, before, "committed");
    // The good ones still go in.
    s.create_prepared(&group[..3]).await.unwrap();
    assert_eq!(s.n_datasets(), 5);
}

/// `create_prepared_owned` creates what `create_prepared` creates. A batch
/// refused by a check (a taken or repeated name, cells of other
/// compression options; a read-only handle, in
/// `a_read_only_handle_refuses_a_batch`) gives its datasets back untouched, and they can
/// be created after; a batch that storage fails once they were taken
/// (a full disk while spilling) gives nothing back and leaves the store
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_prepared_datasets_come_back_when_refused() {
    let (sa, sb) = (MemoryStorage::new(), MemoryStorage::new());
    let a = create_mem(&sa, StoreConfig::default()).await;
    let b = create_mem(&sb, StoreConfig::default()).await;
    let prepare = |s: &Atlas, d: Vec<NewDataset>| -> Vec<atlas_core::PreparedDataset> {
        d.into_iter()
            .map(|d| s.prepare_dataset(d).unwrap())
            .collect()
    };
    a.create_prepared(&prepare(&a, batch("p", 30, 300)))
        .await
        .unwrap();
    b.create_prepared_owned(prepare(&b, batch("p", 30, 300)))
        .await
        .unwrap();
    assert_eq!(snapshot(&a).await, snapshot(&b).await, "pending");
    assert_eq!(catalog(&a).await, catalog(&b).await, "pending statistics");
    b.flush().await.unwrap();
    let before = snapshot(&b).await;

    // A taken name, a name given twice, cells of other options: refused
    // whole, the datasets back as they were, the store unchanged.
    let other = atlas_core::Compression {
        shuffle: !b.compression().shuffle,
        ..b.compression()
    };
    let mut late = prepare(&b, batch("q", 3, 4));
    late.push(atlas_core::PreparedDataset::prepare(batch("late", 1, 4).remove(0), other).unwrap());
    let mut twice = prepare(&b, batch("r", 2, 4));
    twice.push(b.prepare_dataset(batch("r", 1, 4).remove(0)).unwrap());
    for (group, kind) in [
        (
            prepare(&b, batch("p", 2, 4)),
            atlas_core::ErrorKind::AlreadyExists,
        ),
        (late, atlas_core::ErrorKind::InvalidInput),
        (twice, atlas_core::ErrorKind::AlreadyExists),
    ] {
        let names: Vec<String> = group.iter().map(|p| p.name().to_owned()).collect();
        let raw: Vec<u64> = group
            .iter()
            .map(atlas_core::PreparedDataset::raw_bytes)
            .collect();
        let refused = b.create_prepared_owned(group).await.unwrap_err();
        assert_eq!(refused.error.kind(), kind, "{names:?}: {refused}");
        let back: Vec<String> = refused
            .datasets
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        assert_eq!(back, names, "the datasets come back, in order");
        let back_raw: Vec<u64> = refused
            .datasets
            .iter()
            .map(atlas_core::PreparedDataset::raw_bytes)
            .collect();
        assert_eq!(back_raw, raw, "{names:?}: with their cells");
        assert_eq!(snapshot(&b).await, before, "{names:?}");
    }
    // What comes back can be created: the same cells as a batch of them.
    let refused = b
        .create_prepared_owned(
            prepare(&b, batch("s", 3, 40))
                .into_iter()
                .chain(prepare(&b, batch("p", 1, 4)))
                .collect(),
        )
        .await
        .unwrap_err();
    let mut back = refused.datasets;
    back.truncate(3);
    b.create_prepared_owned(back).await.unwrap();
    a.create_datasets(&batch("s", 3, 40)).await.unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(snapshot(&a).await, snapshot(&b).await, "committed");
    assert_eq!(catalog(&a).await, catalog(&b).await, "committed statistics");

    // Storage failing once the datasets were taken: every chunk spills to
    // a scratch file as it is stored, and the disk fills part-way.
    let mut taken = 0;
    for step in 0..60u64 {
        let headroom = step * 600;
        let ctx = format!("headroom {headroom}");
        let (storage, s) = spilling_store().await;
        let before = snapshot(&s).await;
        let group = prepare(&s, batch("b", 40, 50));
        storage.set_capacity(Some(used_bytes(&storage) + headroom));
        let res = s.create_prepared_owned(group).await;
        storage.set_capacity(None);
        let Err(refused) = res else {
            assert_eq!(s.n_datasets(), 42, "{ctx}");
            break;
        };
        assert!(
            matches!(
                refused.error.kind(),
                atlas_core::ErrorKind::ResourceExhausted | atlas_core::ErrorKind::Io
            ),
            "{ctx}: {:?}",
            refused.error
        );
        assert!(refused.datasets.is_empty(), "{ctx}: taken, not given back");
        taken += 1;
        assert_eq!(
            snapshot(&s).await,
            before,
            "{ctx}: a failed batch is visible"
        );
        // Nothing of it is left: the same datasets go in once there is room.
        s.create_prepared_owned(prepare(&s, batch("b", 40, 50)))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: the batch again: {e}"));
        flushed_and_reopened(s, &storage, 42, &ctx).await;
    }
    assert!(taken > 0, "the disk never filled up");
}

/// A batch of more than 64 MiB of cells is encoded group by group under the
/// array files' locks (not all ahead): the same cells come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_to_encode_ahead_writes_the_same_cells() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let n = 1 << 20; // 8 MiB of f64 per dataset, 9 datasets: 72 MiB.
    let big = schema("big", DType::Float64, &[n as u64], Some(&[1 << 18]), None);
    let value = |d: usize, k: usize| (d * 7 + k % 1000) as f64 * 0.5;
    let datasets: Vec<NewDataset> = (0..9)
        .map(|d| {
            let mut ds = NewDataset::new(format!("big{d}"));
            ds.arrays.push(NewArray::new(
                "big",
                Arc::clone(&big),
                Some(arr(&[n], (0..n).map(|k| value(d, k)).collect()).into()),
            ));
            ds
        })
        .collect();
    s.create_datasets(&datasets).await.unwrap();
    drop(datasets);
    // Statistics not computed ahead come from the files, as for a write.
    let from_files = |s: Atlas| async move {
        let mut all = Vec::new();
        for d in 0..9 {
            let name = format!("big{d}");
            let ds = s.open_dataset(&name).await.unwrap();
            all.push((name, ds.array_stats("big").await.unwrap().unwrap()));
        }
        all
    };
    let want = from_files(s.clone()).await;
    assert_eq!(want[8].1.max, Some(StatValue::Float(527.5)));
    let sorted = |mut v: Vec<(String, ArrayStats)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(sorted(s.catalog_array_stats("big").await.unwrap()), want);
    s.flush().await.unwrap();
    assert_eq!(sorted(s.catalog_array_stats("big").await.unwrap()), want);
    for d in [0, 8] {
        let got = s
            .open_dataset(&format!("big{d}"))
            .await
            .unwrap()
            .read_array::<f64>("big", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert!(
            got.iter().enumerate().all(|(k, v)| *v == value(d, k)),
            "big{d}"
        );
    }
}
