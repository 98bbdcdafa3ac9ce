//! Stores written by earlier builds open: a golden store of each registry
//! format version is checked in (`tests/golden/`) and read here.

use std::path::Path;

use atlas_core::{Atlas, Attr};

use crate::common::copy_dir;

fn golden(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// What `atlas stats golden TEMP` printed with the build that wrote the
/// store: (dataset, min, max, nulls, cells).
fn expected_stats() -> Vec<(String, f64, f64, u64, u64)> {
    stats_file("registry-v2.stats.txt")
}

/// The rows of an `atlas stats STORE ARRAY` output kept beside a golden store.
fn stats_file(name: &str) -> Vec<(String, f64, f64, u64, u64)> {
    let text = std::fs::read_to_string(golden(name)).unwrap();
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
    assert!(
        manifest.contains(&format!("\"version\": {}", atlas_core::REGISTRY_VERSION)),
        "{manifest}"
    );
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

/// Queries on the golden store with registry runs of format 1 (no variants,
/// no list-attribute columns: both derived from the records), with the
/// answers the build that wrote it gave; after a compaction rewrites the
/// registry as runs of the current format, the same answers.
#[tokio::test]
async fn runs_v1_store_answers_queries_before_and_after_rewriting_its_runs() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&golden("runs-v1"), tmp.path());
    assert_eq!(
        run_versions(tmp.path()),
        [1],
        "the golden store has one run of format 1"
    );
    let p = |i: u32| format!("argo_6900001_{i:03}");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("TEMP.max > 17.3", [6, 7, 9, 10, 11].map(p).to_vec()),
        (
            "TEMP@units = 'degree_Celsius' and cycle_number >= 10",
            [10, 11, 12].map(p).to_vec(),
        ),
        (
            "platform_number = '6900001' and not has(sst)",
            (1..=12).map(p).collect(),
        ),
        (
            "has(sst) or PSAL.nulls = 2",
            [1, 3, 5, 6, 7]
                .map(p)
                .into_iter()
                .chain(["sst_2024_01".to_owned()])
                .collect(),
        ),
        ("any(TEMP > 17.5)", vec![p(7)]),
    ];
    let check = |s: Atlas, when: &'static str| {
        let cases = cases.clone();
        async move {
            for (q, want) in &cases {
                let got = s
                    .query(&atlas_core::query::Query::parse(q).unwrap())
                    .await
                    .unwrap();
                assert_eq!(got.names(), want.as_slice(), "{q} ({when})");
            }
        }
    };
    check(Atlas::open_path(tmp.path()).await.unwrap(), "format 1").await;
    // A change leaves a second run; compaction merges both into one.
    let s = Atlas::open_path(tmp.path()).await.unwrap();
    s.open_dataset("sst_2024_01")
        .await
        .unwrap()
        .set_attribute("touched", Attr::Bool(true))
        .unwrap();
    s.flush().await.unwrap();
    check(s.clone(), "an old and a current run").await;
    s.compact().await.unwrap();
    drop(s);
    assert_eq!(
        run_versions(tmp.path()),
        [6],
        "compaction rewrote the runs in today's format"
    );
    check(
        Atlas::open_path(tmp.path()).await.unwrap(),
        "current format",
    )
    .await;
}

/// The format versions of the runs a store's manifest names, ascending.
fn run_versions(dir: &Path) -> Vec<u32> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("atlas.json")).unwrap()).unwrap();
    let mut v: Vec<u32> = manifest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let b = std::fs::read(dir.join("atlas.meta").join(r.as_str().unwrap())).unwrap();
            u32::from_le_bytes(b[8..12].try_into().unwrap())
        })
        .collect();
    v.sort_unstable();
    v
}

/// A store whose run is format 2 (statistic and attribute columns as
/// `MessagePack` rows; `atlas demo --datasets 24 --grids 2` with the build
/// before typed columns) answers queries and statistics as that build did;
/// after a compaction rewrites its run in today's format, the same.
#[tokio::test]
async fn runs_v2_store_answers_the_same_before_and_after_typed_columns() {
    old_run_store_answers_the_same("runs-v2", 2).await;
}

/// The same for format 3 (fixed-width typed statistic blocks; the same
/// `atlas demo` with the build before packed blocks: the demo is
/// deterministic, so the answers and statistics are the same).
#[tokio::test]
async fn runs_v3_store_answers_the_same_before_and_after_packed_blocks() {
    old_run_store_answers_the_same("runs-v3", 3).await;
}

/// The same for format 4 (a bitmap block per variant; the same `atlas
/// demo` with the build before variant blocks).
#[tokio::test]
async fn runs_v4_store_answers_the_same_before_and_after_variant_blocks() {
    old_run_store_answers_the_same("runs-v4", 4).await;
}

/// The same for format 5 (id blocks as `MessagePack` rows; the same `atlas
/// demo` with the build before typed id blocks).
#[tokio::test]
async fn runs_v5_store_answers_the_same_before_and_after_typed_id_blocks() {
    old_run_store_answers_the_same("runs-v5", 5).await;
}

async fn old_run_store_answers_the_same(dir: &str, version: u32) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&golden(dir), tmp.path());
    assert_eq!(
        run_versions(tmp.path()),
        [version],
        "the golden run's format"
    );
    let p = |i: u32| format!("argo_6900001_{i:03}");
    let sst = ["sst_2024_01".to_owned(), "sst_2024_02".to_owned()];
    // What `atlas query` printed with the build that wrote the store.
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "TEMP.max > 17",
            [
                1, 4, 5, 6, 7, 9, 10, 11, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            ]
            .map(p)
            .to_vec(),
        ),
        (
            "TEMP.nulls = 2 and PSAL.min < 34.6",
            [1, 3, 12, 17, 23, 24].map(p).to_vec(),
        ),
        (
            "cycle_number >= 20 and data_mode = 'R'",
            [20, 22, 23, 24].map(p).to_vec(),
        ),
        ("time < 2020-06-01", (1..=15).map(p).collect()),
        (
            "PRES.cells > 100 or sst.min < -1.5",
            [8, 16, 18, 23, 24]
                .map(p)
                .into_iter()
                .chain(sst.clone())
                .collect(),
        ),
        (
            "any(TEMP > 17.2)",
            [4, 6, 7, 9, 10, 11, 14, 16, 17, 18, 20, 21, 22, 23, 24]
                .map(p)
                .to_vec(),
        ),
        ("latitude > 11.9", vec![]),
    ];
    let check = |s: Atlas, when: &'static str| {
        let cases = cases.clone();
        async move {
            for (q, want) in &cases {
                let got = s
                    .query(&atlas_core::query::Query::parse(q).unwrap())
                    .await
                    .unwrap();
                assert_eq!(got.names(), want.as_slice(), "{q} ({when})");
            }
            let stats = stats_file("runs-v2.stats.txt");
            assert_eq!(stats.len(), 24);
            for (name, min, max, nulls, cells) in stats {
                let st = s
                    .open_dataset(&name)
                    .await
                    .unwrap()
                    .array_stats("TEMP")
                    .await
                    .unwrap()
                    .unwrap();
                let f = |v: Option<atlas_core::StatValue>| match v {
                    Some(atlas_core::StatValue::Float(x)) => x,
                    other => panic!("{other:?}"),
                };
                assert!((f(st.min) - min).abs() < 1e-3, "{name} ({when})");
                assert!((f(st.max) - max).abs() < 1e-3, "{name} ({when})");
                assert_eq!((st.null_count, st.row_count), (nulls, cells), "{name}");
            }
        }
    };
    check(
        Atlas::open_path(tmp.path()).await.unwrap(),
        "the old format",
    )
    .await;
    let s = Atlas::open_path(tmp.path()).await.unwrap();
    s.open_dataset("sst_2024_01")
        .await
        .unwrap()
        .set_attribute("touched", Attr::Bool(true))
        .unwrap();
    s.flush().await.unwrap();
    check(s.clone(), "an old and a new run").await;
    s.compact().await.unwrap();
    drop(s);
    assert_eq!(run_versions(tmp.path()), [6], "compaction rewrote the run");
    check(Atlas::open_path(tmp.path()).await.unwrap(), "format 6").await;
}
