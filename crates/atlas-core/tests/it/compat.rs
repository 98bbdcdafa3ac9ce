//! Stores written by earlier builds open: a golden store of each registry
//! format version is checked in (`tests/golden/`) and read here.

use std::path::Path;

use atlas_core::{Atlas, Attr};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// What `atlas stats golden TEMP` printed with the build that wrote the
/// store: (dataset, min, max, nulls, cells).
fn expected_stats() -> Vec<(String, f64, f64, u64, u64)> {
    let text = std::fs::read_to_string(golden("registry-v2.stats.txt")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.starts_with("TOTAL"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

async fn check_golden_content(s: &Atlas) {
    let names = s.list_datasets().unwrap();
    let mut want: Vec<String> = (1..=6).map(|i| format!("argo_6900001_{i:03}")).collect();
    want.push("sst_2024_01".into());
    assert_eq!(names, want);
    assert_eq!(s.n_datasets(), 7);
    for (name, min, max, nulls, cells) in expected_stats() {
        let ds = s.open_dataset(&name).await.unwrap();
        let st = ds.array_stats("TEMP").await.unwrap().unwrap();
        let f = |v: Option<atlas_core::StatValue>| match v {
            Some(atlas_core::StatValue::Float(x)) => x,
            other => panic!("{other:?}"),
        };
        assert!((f(st.min) - min).abs() < 1e-3, "{name}");
        assert!((f(st.max) - max).abs() < 1e-3, "{name}");
        assert_eq!((st.null_count, st.row_count), (nulls, cells), "{name}");
    }
    let t = s
        .open_dataset("argo_6900001_002")
        .await
        .unwrap()
        .read_array::<f32>("TEMP", vec![0], vec![3])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        t.iter().copied().collect::<Vec<_>>(),
        [16.819, 16.694, 16.575]
    );
}

/// A store written before registry runs (manifest version 2, one JSON
/// segment, no dataset ids) opens and reads; its next commit rewrites the
/// registry as a run (manifest version 3) and everything reads the same,
/// with ids in the old insertion order.
#[tokio::test]
async fn registry_v2_store_opens_and_upgrades_at_the_next_commit() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&golden("registry-v2"), tmp.path());
    let manifest = std::fs::read_to_string(tmp.path().join("atlas.json")).unwrap();
    assert!(
        manifest.contains("\"version\": 2"),
        "the golden store is v2"
    );
    let s = Atlas::open_path(tmp.path()).await.unwrap();
    check_golden_content(&s).await;
    assert_eq!(s.dataset_id("argo_6900001_001").unwrap(), Some(0));
    assert_eq!(s.dataset_id("sst_2024_01").unwrap(), Some(6));
    // The first commit upgrades.
    s.open_dataset("sst_2024_01")
        .await
        .unwrap()
        .set_attribute("upgraded", Attr::Bool(true))
        .unwrap();
    s.flush().await.unwrap();
    drop(s);
    let manifest = std::fs::read_to_string(tmp.path().join("atlas.json")).unwrap();
    assert!(manifest.contains("\"version\": 3"), "{manifest}");
    assert!(manifest.contains("\"runs\""), "{manifest}");
    assert!(!manifest.contains("\"segments\""), "{manifest}");
    let r = Atlas::open_path(tmp.path()).await.unwrap();
    check_golden_content(&r).await;
    assert_eq!(r.dataset_id("sst_2024_01").unwrap(), Some(6));
    let report = atlas_core::verify::verify(&r, |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // A new dataset continues the ids.
    r.create_dataset("new").await.unwrap();
    assert_eq!(r.dataset_id("new").unwrap(), Some(7));
}
