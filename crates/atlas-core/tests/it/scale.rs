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
