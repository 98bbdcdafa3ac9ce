//! A proptest model of the whole store: random sequences of structural
//! changes, hyperslab writes, attributes, flush, compact, drop-without-flush,
//! reopen and power cuts at a random step of a flush or compaction, checked
//! after every step against an in-memory model (a live model, and the
//! committed model a reopen falls back to).

use array_format::storage::{Fault, FaultKind};
use atlas_core::{Atlas, Attr, Error, FillValue, MemoryStorage, Storage, StoreConfig};
use indexmap::IndexMap;
use proptest::prelude::*;

use crate::common::{arr, cells, create_mem, reopen_mem, strings};

const DATASETS: [&str; 3] = ["alpha", "beta", "gamma"];
const ARRAYS: [&str; 2] = ["a", "b"];
const ATTR_KEYS: [&str; 3] = ["k0", "k1", "k2"];

/// Shape, chunk shape and fill of each array name.
fn spec(array: usize) -> (Vec<u64>, Vec<u64>, f32) {
    match array {
        0 => (vec![7], vec![3], -1.0),
        _ => (vec![4, 5], vec![2, 2], 0.0),
    }
}

fn n_cells(array: usize) -> usize {
    spec(array).0.iter().product::<u64>() as usize
}

#[derive(Clone, Debug)]
enum Op {
    CreateDataset(usize),
    DeleteDataset(usize),
    DefineArray(usize, usize),
    Write {
        ds: usize,
        array: usize,
        /// Per-axis seeds for start and count.
        region: [(u8, u8); 2],
    },
    DeleteArray(usize, usize),
    SetAttribute(usize, usize, i64),
    DeleteAttribute(usize, usize),
    /// Opens a read-only handle that must keep seeing the committed state of
    /// the moment, whatever the writer does afterwards.
    OpenReader,
    Flush,
    Compact,
    DropWithoutFlush,
    Reopen,
    /// Power loss at the `at`-th storage operation of a flush (or a compaction),
    /// or right after it returns: afterwards the store is at the previous
    /// commit or the new one, and at the new one if the call returned `Ok`.
    PowerCut {
        at: u8,
        compact: bool,
        keep_renames: bool,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let ds = 0..DATASETS.len();
    let array = 0..ARRAYS.len();
    prop_oneof![
        3 => ds.clone().prop_map(Op::CreateDataset),
        1 => ds.clone().prop_map(Op::DeleteDataset),
        3 => (ds.clone(), array.clone()).prop_map(|(d, a)| Op::DefineArray(d, a)),
        6 => (ds.clone(), array.clone(), any::<[(u8, u8); 2]>())
            .prop_map(|(ds, array, region)| Op::Write { ds, array, region }),
        1 => (ds.clone(), array).prop_map(|(d, a)| Op::DeleteArray(d, a)),
        2 => (ds.clone(), 0..ATTR_KEYS.len(), any::<i64>())
            .prop_map(|(d, k, v)| Op::SetAttribute(d, k, v)),
        1 => (ds, 0..ATTR_KEYS.len()).prop_map(|(d, k)| Op::DeleteAttribute(d, k)),
        1 => Just(Op::OpenReader),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::DropWithoutFlush),
        1 => Just(Op::Reopen),
        2 => (any::<u8>(), any::<bool>(), any::<bool>())
            .prop_map(|(at, compact, keep_renames)| Op::PowerCut { at, compact, keep_renames }),
    ]
}

#[derive(Clone, Debug, Default, PartialEq)]
struct DsModel {
    attrs: IndexMap<String, i64>,
    /// Array name → row-major cells.
    arrays: IndexMap<String, Vec<f32>>,
}

type Model = IndexMap<String, DsModel>;

/// Start and count of a write, derived from seeds, always in bounds and non-empty.
fn region(array: usize, seeds: [(u8, u8); 2]) -> (Vec<u64>, Vec<u64>) {
    let (shape, _, _) = spec(array);
    let mut start = Vec::new();
    let mut count = Vec::new();
    for (axis, &ext) in shape.iter().enumerate() {
        let (s, c) = seeds[axis];
        let st = u64::from(s) % ext;
        let n = 1 + u64::from(c) % (ext - st);
        start.push(st);
        count.push(n);
    }
    (start, count)
}

fn apply_write(cells_: &mut [f32], array: usize, start: &[u64], count: &[u64], value: f32) {
    let (shape, _, _) = spec(array);
    match shape.len() {
        1 => {
            for i in start[0]..start[0] + count[0] {
                cells_[i as usize] = value;
            }
        }
        _ => {
            for y in start[0]..start[0] + count[0] {
                for x in start[1]..start[1] + count[1] {
                    cells_[(y * shape[1] + x) as usize] = value;
                }
            }
        }
    }
}

/// What a store holds, in the model's terms.
async fn observe(atlas: &Atlas) -> Model {
    let mut m = Model::new();
    for name in atlas.list_datasets().unwrap() {
        let ds = atlas.open_dataset(&name).await.unwrap();
        let attrs = ds
            .attributes()
            .into_iter()
            .map(|(k, v)| match v {
                Attr::Int64(i) => (k, i),
                other => panic!("unexpected attribute {other:?}"),
            })
            .collect();
        let mut arrays = IndexMap::new();
        for a in ds.list_arrays().unwrap() {
            let got = ds
                .read_array::<f32>(&a, vec![], vec![])
                .await
                .unwrap()
                .unwrap();
            arrays.insert(a, cells(&got));
        }
        m.insert(name, DsModel { attrs, arrays });
    }
    m
}

async fn check(atlas: &Atlas, model: &Model, ctx: &str) {
    let names: Vec<String> = model.keys().cloned().collect();
    assert_eq!(
        atlas.list_datasets().unwrap(),
        names,
        "{ctx}: dataset order"
    );
    let mut distinct: Vec<String> = Vec::new();
    for ds in model.values() {
        for a in ds.arrays.keys() {
            if !distinct.contains(a) {
                distinct.push(a.clone());
            }
        }
    }
    // The store lists arrays in order of first use (by time, which the
    // model does not track): compare as sets.
    let mut listed = atlas.list_arrays();
    listed.sort();
    distinct.sort();
    assert_eq!(listed, distinct, "{ctx}: store arrays");
    for d in DATASETS {
        assert_eq!(
            atlas.dataset_exists(d).unwrap(),
            model.contains_key(d),
            "{ctx}: exists {d}"
        );
    }
    for (name, m) in model {
        let ds = atlas
            .open_dataset(name)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: open {name}: {e}"));
        let attrs: IndexMap<String, Attr> = m
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), Attr::Int64(*v)))
            .collect();
        assert_eq!(ds.attributes(), attrs, "{ctx}: {name} attributes");
        let arrays: Vec<String> = m.arrays.keys().cloned().collect();
        assert_eq!(ds.list_arrays().unwrap(), arrays, "{ctx}: {name} arrays");
        for (i, a) in ARRAYS.iter().enumerate() {
            let got = ds
                .read_array::<f32>(a, vec![], vec![])
                .await
                .unwrap_or_else(|e| panic!("{ctx}: read {name}/{a}: {e}"));
            match (m.arrays.get(*a), got) {
                (None, None) => {}
                (Some(want), Some(got)) => {
                    let shape: Vec<usize> = spec(i).0.iter().map(|&s| s as usize).collect();
                    assert_eq!(got.shape(), shape.as_slice(), "{ctx}: {name}/{a} shape");
                    assert_eq!(&cells(&got), want, "{ctx}: {name}/{a} cells");
                    let st = ds.array_stats(a).await.unwrap().unwrap();
                    assert_eq!(st.row_count, n_cells(i) as u64, "{ctx}: {name}/{a} rows");
                    let fill = spec(i).2;
                    // With a declared fill value, null cells are exactly the
                    // cells equal to it (every write stores a value >= 1).
                    // Arrays without one are covered by a dedicated test.
                    if fill != 0.0 {
                        let nulls = want.iter().filter(|&&v| v == fill).count() as u64;
                        assert_eq!(st.null_count, nulls, "{ctx}: {name}/{a} null_count");
                        let max = want.iter().copied().filter(|&v| v != fill).reduce(f32::max);
                        assert_eq!(
                            st.max,
                            max.map(|m| atlas_core::StatValue::Float(f64::from(m))),
                            "{ctx}: {name}/{a} max"
                        );
                    }
                }
                (want, got) => panic!("{ctx}: {name}/{a}: model {want:?}, store {got:?}"),
            }
        }
    }
}

async fn run(ops: Vec<Op>) {
    let storage = MemoryStorage::new();
    // Flushes merge an array's layers past 3 (a tail merge or a new base), so
    // the model also checks those merges, under power cuts too.
    let config = StoreConfig {
        policy: atlas_core::Policy {
            max_layers_per_array: 3,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    let mut atlas = create_mem(&storage, config).await;
    // The store's creation is durable (a clean start); from here on only
    // what the store fsyncs survives a power cut.
    storage.sync_all();
    let mut live: Model = IndexMap::new();
    let mut committed: Model = IndexMap::new();
    // Read-only handles with the committed model they opened on.
    let mut readers: Vec<(Atlas, Model, usize)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} {op:?}");
        let value = (step + 1) as f32;
        match op {
            Op::CreateDataset(d) => {
                let name = DATASETS[*d];
                let r = atlas.create_dataset(name).await;
                if live.contains_key(name) {
                    assert!(
                        matches!(r, Err(Error::DatasetExists { .. })),
                        "{ctx}: {r:?}"
                    );
                } else {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    live.insert(name.to_owned(), DsModel::default());
                }
            }
            Op::DeleteDataset(d) => {
                let name = DATASETS[*d];
                let r = atlas.delete_dataset(name).await;
                if live.shift_remove(name).is_some() {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                } else {
                    assert!(
                        matches!(r, Err(Error::DatasetNotFound { .. })),
                        "{ctx}: {r:?}"
                    );
                }
            }
            Op::DefineArray(d, a) => {
                let (name, aname) = (DATASETS[*d], ARRAYS[*a]);
                let Some(m) = live.get_mut(name) else {
                    assert!(atlas.open_dataset(name).await.is_err(), "{ctx}");
                    continue;
                };
                let (shape, chunk, fill) = spec(*a);
                let dims = if shape.len() == 1 {
                    strings(&["i"])
                } else {
                    strings(&["y", "x"])
                };
                let fill_value = (fill != 0.0).then_some(FillValue::Float32(fill));
                let r = atlas
                    .open_dataset(name)
                    .await
                    .unwrap()
                    .define_array::<f32>(aname, dims, shape, Some(chunk), fill_value)
                    .await;
                if m.arrays.contains_key(aname) {
                    assert!(matches!(r, Err(Error::ArrayExists { .. })), "{ctx}: {r:?}");
                } else {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    m.arrays.insert(aname.to_owned(), vec![fill; n_cells(*a)]);
                }
            }
            Op::Write {
                ds,
                array,
                region: seeds,
            } => {
                let (name, aname) = (DATASETS[*ds], ARRAYS[*array]);
                let Some(m) = live.get_mut(name) else {
                    continue;
                };
                let (start, count) = region(*array, *seeds);
                let shape: Vec<usize> = count.iter().map(|&c| c as usize).collect();
                let n: usize = shape.iter().product();
                let data = arr(&shape, vec![value; n]);
                let r = atlas
                    .open_dataset(name)
                    .await
                    .unwrap()
                    .write_array(aname, start.clone(), data.view())
                    .await;
                match m.arrays.get_mut(aname) {
                    Some(c) => {
                        r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                        apply_write(c, *array, &start, &count, value);
                    }
                    None => assert!(
                        matches!(r, Err(Error::ArrayNotFound { .. })),
                        "{ctx}: {r:?}"
                    ),
                }
            }
            Op::DeleteArray(d, a) => {
                let (name, aname) = (DATASETS[*d], ARRAYS[*a]);
                let Some(m) = live.get_mut(name) else {
                    continue;
                };
                let r = atlas
                    .open_dataset(name)
                    .await
                    .unwrap()
                    .delete_array(aname)
                    .await;
                if m.arrays.shift_remove(aname).is_some() {
                    r.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                } else {
                    assert!(
                        matches!(r, Err(Error::ArrayNotFound { .. })),
                        "{ctx}: {r:?}"
                    );
                }
            }
            Op::SetAttribute(d, k, v) => {
                let name = DATASETS[*d];
                let Some(m) = live.get_mut(name) else {
                    continue;
                };
                atlas
                    .open_dataset(name)
                    .await
                    .unwrap()
                    .set_attribute(ATTR_KEYS[*k], Attr::Int64(*v))
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                m.attrs.insert(ATTR_KEYS[*k].to_owned(), *v);
            }
            Op::DeleteAttribute(d, k) => {
                let name = DATASETS[*d];
                let Some(m) = live.get_mut(name) else {
                    continue;
                };
                let got = atlas
                    .open_dataset(name)
                    .await
                    .unwrap()
                    .delete_attribute(ATTR_KEYS[*k])
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                let want = m.attrs.shift_remove(ATTR_KEYS[*k]).map(Attr::Int64);
                assert_eq!(got, want, "{ctx}: deleted value");
            }
            Op::OpenReader => {
                let r = reopen_mem(&storage, &ctx).await;
                check(&r, &committed, &format!("{ctx}: new reader")).await;
                if readers.len() == 2 {
                    readers.remove(0);
                }
                readers.push((r, committed.clone(), step));
            }
            Op::Flush => {
                atlas.flush().await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                committed = live.clone();
            }
            Op::Compact => {
                atlas
                    .compact()
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                committed = live.clone();
                for a in atlas.list_arrays() {
                    assert!(
                        atlas.array_layers(&a).len() <= 1,
                        "{ctx}: {a} not compacted"
                    );
                }
            }
            Op::DropWithoutFlush => {
                drop(atlas);
                atlas = reopen_mem(&storage, &ctx).await;
                live = committed.clone();
            }
            Op::Reopen => {
                atlas.flush().await.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                committed = live.clone();
                drop(atlas);
                atlas = reopen_mem(&storage, &ctx).await;
            }
            Op::PowerCut {
                at,
                compact,
                keep_renames,
            } => {
                let kind = if *keep_renames {
                    FaultKind::PowerLossKeepRenames
                } else {
                    FaultKind::PowerLoss
                };
                storage.arm_fault(Fault {
                    nth: u64::from(*at % 48),
                    kind,
                });
                let res = if *compact {
                    atlas.compact().await
                } else {
                    atlas.flush().await
                };
                if !storage.is_down() {
                    // The cut comes right after the call returned.
                    storage.arm_fault(Fault { nth: 0, kind });
                    assert!(storage.sync_dir(std::path::Path::new("/")).is_err());
                }
                // Every handle of the "machine" that lost power is gone.
                drop(atlas);
                readers.clear();
                storage.power_on();
                let fresh = reopen_mem(&storage, &ctx).await;
                let seen = observe(&fresh).await;
                match &res {
                    Ok(()) => assert!(
                        seen == live,
                        "{ctx}: returned Ok but the store lost it: {seen:?}"
                    ),
                    Err(e) => assert!(
                        seen == committed || seen == live,
                        "{ctx}: failed ({e}) and the store is neither state: {seen:?}"
                    ),
                }
                let report = atlas_core::verify::verify(&fresh, |_, _| {});
                assert!(report.problems.is_empty(), "{ctx}: {:?}", report.problems);
                committed = seen.clone();
                live = seen;
                atlas = fresh;
            }
        }
        check(&atlas, &live, &ctx).await;
        for (r, m, opened) in &readers {
            check(r, m, &format!("{ctx}: reader opened at step {opened}")).await;
        }
    }
    // Finally: whatever is committed is what a fresh handle sees.
    let fresh = reopen_mem(&storage, "final").await;
    check(&fresh, &committed, "final reopen").await;
    let report = atlas_core::verify::verify(&fresh, |_, _| {});
    assert!(
        report.problems.is_empty(),
        "final verify: {:?}",
        report.problems
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..=30)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(ops));
    }
}
