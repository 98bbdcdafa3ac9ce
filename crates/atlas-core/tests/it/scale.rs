//! Scale smoke test: 20,000 datasets with one small array each are created,
//! flushed, reopened and listed in insertion order, and their values read back
//! across all datasets at once.

use std::time::Instant;

use atlas_core::{Atlas, StoreConfig};

use crate::common::{arr1, cells};

const N: usize = 20_000;

/// A permutation of `0..N` (multiplication by a unit modulo N), so insertion
/// order differs from sorted order.
fn name(i: usize) -> String {
    format!("ds{:05}", (i * 7_919) % N)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_datasets() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let s = Atlas::create_path(tmp.path(), StoreConfig::default())
        .await
        .unwrap();
    let names: Vec<String> = (0..N).map(name).collect();
    for (i, n) in names.iter().enumerate() {
        let ds = s.create_dataset(n).await.unwrap();
        ds.define_array::<i32>("v", vec!["k".into()], vec![2], None, None)
            .await
            .unwrap();
        ds.write_array("v", vec![], arr1(vec![i as i32, -(i as i32)]).view())
            .await
            .unwrap();
    }
    let created = t0.elapsed();
    s.flush().await.unwrap();
    let flushed = t0.elapsed();
    drop(s);

    let r = Atlas::open_path(tmp.path()).await.unwrap();
    let opened = t0.elapsed();
    assert_eq!(r.n_datasets(), N);
    assert_eq!(
        r.list_datasets().unwrap(),
        names,
        "insertion order after reopen"
    );
    assert_eq!(r.list_arrays(), vec!["v".to_owned()]);
    assert_eq!(r.array_layers("v").len(), 1);
    let all = r
        .read_array_across::<i32>("v", &names, vec![], vec![])
        .await
        .unwrap();
    for (i, a) in all.iter().enumerate() {
        assert_eq!(
            cells(a.as_ref().expect("every dataset has v")),
            vec![i as i32, -(i as i32)],
            "dataset {}",
            names[i]
        );
    }
    // A single dataset reads on its own too.
    let one = r
        .open_dataset(&names[N / 2])
        .await
        .unwrap()
        .read_array::<i32>("v", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cells(&one)[0], (N / 2) as i32);
    eprintln!(
        "scale: created {created:?}, flushed {:?}, reopened {:?}, read all {:?}",
        flushed.saturating_sub(created),
        opened.saturating_sub(flushed),
        t0.elapsed().saturating_sub(opened)
    );
}

/// A writer that only adds datasets, flush after flush, puts nothing in the
/// block cache, however many layers its new names fall between: checking that
/// an array name is new (the registry answers) and the catalog statistics of
/// new arrays (their pending chunks answer) read no committed footer block,
/// and the tail merges that keep the layer count down stream theirs. When
/// every new name was looked up in every layer's footer, a bulk writer's
/// memory grew with the store, up to the cache's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_datasets_fills_no_cache() {
    const BATCHES: usize = 8;
    const PER_BATCH: usize = 400;
    let tmp = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        policy: atlas_core::Policy {
            max_layers_per_array: 3,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    let s = Atlas::create_path(tmp.path(), config).await.unwrap();
    // Batch `b` adds every BATCHES-th name from `b`: each new name sorts
    // between names of every earlier layer.
    let name = |b: usize, i: usize| format!("ds{:05}", i * BATCHES + b);
    for b in 0..BATCHES {
        for i in 0..PER_BATCH {
            let ds = s.create_dataset(&name(b, i)).await.unwrap();
            for a in ["u", "v"] {
                ds.define_array::<i32>(a, vec!["k".into()], vec![2], None, None)
                    .await
                    .unwrap();
                ds.write_array(a, vec![], arr1(vec![b as i32, i as i32]).view())
                    .await
                    .unwrap();
            }
        }
        s.flush().await.unwrap();
        let (raw, decoded) = (s.cache().raw_stats(), s.cache().decoded_stats());
        assert_eq!((raw.entries, decoded.entries), (0, 0), "after batch {b}");
    }
    assert!(s.array_layers("v").len() <= 3, "tail merges ran");
    drop(s);
    let r = Atlas::open_path(tmp.path()).await.unwrap();
    assert_eq!(r.n_datasets(), BATCHES * PER_BATCH);
    // The catalog's statistics, computed by the flushes, are the array's.
    let catalog: std::collections::HashMap<String, atlas_core::ArrayStats> = r
        .catalog_array_stats("u")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(catalog.len(), BATCHES * PER_BATCH);
    for (b, i) in [(0, 0), (3, 17), (BATCHES - 1, PER_BATCH - 1)] {
        let ds = r.open_dataset(&name(b, i)).await.unwrap();
        let v = ds.read_array::<i32>("v", vec![], vec![]).await.unwrap();
        assert_eq!(cells(&v.unwrap()), vec![b as i32, i as i32]);
        let stats = ds.array_stats("u").await.unwrap().unwrap();
        assert_eq!(catalog[&name(b, i)], stats);
        assert_eq!(stats.row_count, 2);
    }
}
