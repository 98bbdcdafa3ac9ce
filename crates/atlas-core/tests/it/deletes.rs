//! Deletes never resurrect: deleting a dataset or an array and re-creating the
//! same name — with the old data pending, flushed, compacted or reopened, with
//! or without a flush between delete and re-create, with or without another
//! dataset keeping the array file alive — reads the fill value, never an old
//! value, before and after flush, compact and reopen.

use atlas_core::{Atlas, Attr, FillValue, MemoryStorage, StoreConfig};

use crate::common::{arr1, cells, create_mem, full, reopen_mem, strings};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Pending,
    Flushed,
    Compacted,
    Reopened,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Array,
    Dataset,
}

const OLD: f32 = 42.0;
const FILL: f32 = -1.0;

async fn read_v(a: &Atlas, ds: &str) -> Vec<f32> {
    cells(
        &a.open_dataset(ds)
            .await
            .unwrap()
            .read_array::<f32>("v", vec![], vec![])
            .await
            .unwrap()
            .expect("v is defined"),
    )
}

async fn define_v(a: &Atlas, ds: &str, chunk: u64) {
    a.open_dataset(ds)
        .await
        .unwrap()
        .define_array::<f32>(
            "v",
            strings(&["i"]),
            vec![8],
            Some(vec![chunk]),
            Some(FillValue::Float32(FILL)),
        )
        .await
        .unwrap();
}

async fn scenario(stage: Stage, what: What, with_other: bool, flush_between: bool, chunk: u64) {
    let ctx = format!(
        "stage {stage:?}, delete {what:?}, other dataset {with_other}, \
         flush between {flush_between}, new chunk {chunk}"
    );
    let storage = MemoryStorage::new();
    let mut s = create_mem(&storage, StoreConfig::default()).await;
    let names: &[&str] = if with_other { &["d", "other"] } else { &["d"] };
    for name in names {
        let ds = s.create_dataset(name).await.unwrap();
        define_v(&s, name, 4).await;
        ds.write_array("v", vec![], full(&[8], OLD).view())
            .await
            .unwrap();
        ds.set_attribute("old", Attr::Bool(true)).unwrap();
        ds.set_array_attribute("v", "old", Attr::Bool(true))
            .unwrap();
    }
    match stage {
        Stage::Pending => {}
        Stage::Flushed => s.flush().await.unwrap(),
        Stage::Compacted => {
            s.flush().await.unwrap();
            // A second layer so compaction has something to merge.
            s.open_dataset("d")
                .await
                .unwrap()
                .write_array("v", vec![2], arr1(vec![OLD; 3]).view())
                .await
                .unwrap();
            s.flush().await.unwrap();
            s.compact().await.unwrap();
            assert_eq!(s.array_layers("v").len(), 1, "{ctx}");
        }
        Stage::Reopened => {
            s.flush().await.unwrap();
            drop(s);
            s = reopen_mem(&storage, &ctx).await;
        }
    }
    match what {
        What::Array => s
            .open_dataset("d")
            .await
            .unwrap()
            .delete_array("v")
            .await
            .unwrap(),
        What::Dataset => s.delete_dataset("d").await.unwrap(),
    }
    if flush_between {
        s.flush().await.unwrap();
        let r = reopen_mem(&storage, &ctx).await;
        match what {
            What::Array => assert!(
                r.open_dataset("d")
                    .await
                    .unwrap()
                    .read_array::<f32>("v", vec![], vec![])
                    .await
                    .unwrap()
                    .is_none(),
                "{ctx}: deleted array still listed after flush"
            ),
            What::Dataset => assert!(!r.dataset_exists("d").unwrap(), "{ctx}"),
        }
    }
    if what == What::Dataset {
        let ds = s.create_dataset("d").await.unwrap();
        assert!(
            ds.attributes().is_empty(),
            "{ctx}: old attributes came back"
        );
        assert!(
            ds.list_arrays().unwrap().is_empty(),
            "{ctx}: old arrays came back"
        );
    }
    define_v(&s, "d", chunk).await;
    let ds = s.open_dataset("d").await.unwrap();
    assert!(
        ds.array_attributes("v").unwrap().is_empty(),
        "{ctx}: old array attributes came back"
    );
    assert_eq!(read_v(&s, "d").await, vec![FILL; 8], "{ctx}: fresh define");
    let st = ds.array_stats("v").await.unwrap().unwrap();
    assert_eq!(
        (st.null_count, st.max.clone()),
        (8, None),
        "{ctx}: stats {st:?}"
    );
    // A partial write merges with fill, never with the old chunk.
    ds.write_array("v", vec![5], arr1(vec![7.0f32]).view())
        .await
        .unwrap();
    let mut want = vec![FILL; 8];
    want[5] = 7.0;
    let other_want = vec![OLD; 8];
    let check = |when: &'static str| {
        let want = want.clone();
        let other_want = other_want.clone();
        let ctx = ctx.clone();
        move |a: Atlas| async move {
            assert_eq!(read_v(&a, "d").await, want, "{ctx}: {when}");
            let st = a
                .open_dataset("d")
                .await
                .unwrap()
                .array_stats("v")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(st.null_count, 7, "{ctx}: {when}: stats {st:?}");
            assert_eq!(
                st.max,
                Some(atlas_core::StatValue::Float(7.0)),
                "{ctx}: {when}"
            );
            if with_other {
                assert_eq!(
                    read_v(&a, "other").await,
                    other_want,
                    "{ctx}: {when}: other"
                );
            }
            let across = a
                .read_array_across::<f32>("v", &["d"], vec![], vec![])
                .await
                .unwrap();
            assert_eq!(
                cells(across[0].as_ref().unwrap()),
                want,
                "{ctx}: {when}: across"
            );
        }
    };
    check("before flush")(s.clone()).await;
    s.flush().await.unwrap();
    check("after flush")(s.clone()).await;
    check("reopened after flush")(reopen_mem(&storage, &ctx).await).await;
    s.compact().await.unwrap();
    check("after compact")(s.clone()).await;
    check("reopened after compact")(reopen_mem(&storage, &ctx).await).await;
    let report = atlas_core::verify::verify(&s, |_, _| {});
    assert!(report.problems.is_empty(), "{ctx}: {:?}", report.problems);
}

#[tokio::test]
async fn deleted_data_never_comes_back() {
    for stage in [
        Stage::Pending,
        Stage::Flushed,
        Stage::Compacted,
        Stage::Reopened,
    ] {
        for what in [What::Array, What::Dataset] {
            for with_other in [false, true] {
                for flush_between in [false, true] {
                    for chunk in [4, 3] {
                        scenario(stage, what, with_other, flush_between, chunk).await;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn redefine_with_another_dtype_after_delete() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<f64>("v", strings(&["i"]), vec![4], None, None)
        .await
        .unwrap();
    ds.write_array("v", vec![], arr1(vec![1.5f64; 4]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    ds.delete_array("v").await.unwrap();
    ds.define_array::<String>("v", strings(&["i"]), vec![3], None, None)
        .await
        .unwrap();
    let got = ds
        .read_array::<String>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), vec![String::new(); 3]);
    ds.write_array("v", vec![1], arr1(vec!["new".to_owned()]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    s.compact().await.unwrap();
    let r = reopen_mem(&storage, "redefined dtype").await;
    let rd = r.open_dataset("d").await.unwrap();
    assert_eq!(
        rd.array_schema("v").unwrap().unwrap().dtype,
        atlas_core::DType::String
    );
    let got = rd
        .read_array::<String>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&got), strings(&["", "new", ""]));
    assert!(rd.read_array::<f64>("v", vec![], vec![]).await.is_err());
}

#[tokio::test]
async fn delete_and_recreate_repeatedly_between_flushes() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    for round in 0..6u8 {
        let ds = s.create_dataset("d").await.unwrap();
        ds.define_array::<u8>("v", strings(&["i"]), vec![4], Some(vec![2]), None)
            .await
            .unwrap();
        let got = ds
            .read_array::<u8>("v", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cells(&got), vec![0; 4], "round {round}: fresh array");
        ds.write_array(
            "v",
            vec![u64::from(round % 4)],
            arr1(vec![round + 1]).view(),
        )
        .await
        .unwrap();
        if round % 2 == 0 {
            s.flush().await.unwrap();
        }
        if round % 3 == 0 {
            s.compact().await.unwrap();
        }
        let mut want = vec![0u8; 4];
        want[usize::from(round % 4)] = round + 1;
        let r = reopen_mem(&storage, "repeat").await;
        if round % 2 == 0 || round % 3 == 0 {
            let got = r
                .open_dataset("d")
                .await
                .unwrap()
                .read_array::<u8>("v", vec![], vec![])
                .await
                .unwrap()
                .unwrap();
            assert_eq!(cells(&got), want, "round {round}: reopened");
        }
        s.delete_dataset("d").await.unwrap();
    }
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "end").await;
    assert!(r.list_datasets().unwrap().is_empty());
    assert!(r.array_layers("v").is_empty());
}
