//! Format compatibility: layer files written by an older build (checked in under
//! `tests/golden/`) still open and read exactly as they did.
//!
//! `tests/golden/v1/` holds three layers written by the format-1 writer (a base,
//! then two deltas with updates, a delete and a redefinition); `layers.txt`
//! lists them oldest first and `expected.txt` is what the format-1 build read:
//! the array names in listing order, then [`dump`] of every array.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use array_format::{ArrayFile, ArrayFileOptions, DeltaCache, FillValue, LayerId, LocalStorage};
use ndarray::{ArrayD, IxDyn};

use crate::common::dump;

fn golden_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(version)
}

/// What a reader sees in an array file: names in listing order, then the dump.
fn observed(f: &ArrayFile) -> String {
    format!(
        "{:?}\n{}",
        f.list_arrays(),
        dump(f).expect("the golden file reads")
    )
}

fn open_golden(version: &str) -> ArrayFile {
    let dir = golden_dir(version);
    let layers: Vec<LayerId> = std::fs::read_to_string(dir.join("layers.txt"))
        .expect("layers.txt")
        .lines()
        .map(|l| LayerId::new(l).expect("a layer id"))
        .collect();
    ArrayFile::open(
        Arc::new(LocalStorage),
        &dir,
        &layers,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
    .expect("the golden layers open")
}

#[test]
fn format_1_layers_open_and_read_as_before() {
    let f = open_golden("v1");
    let want = std::fs::read_to_string(golden_dir("v1").join("expected.txt")).expect("expected");
    assert_eq!(observed(&f), want);
}

/// Format-1 layers merge (tail merge and compaction, which walk them in name
/// order from their in-memory footer) into format-2 layers that read exactly
/// as the golden stack did, listing order included.
#[test]
fn format_1_layers_merge_and_compact_to_the_same_reads() {
    let want = std::fs::read_to_string(golden_dir("v1").join("expected.txt")).expect("expected");
    let layers = open_golden("v1").layers();
    for from in 0..layers.len() {
        let tmp = tempfile::tempdir().unwrap();
        for l in &layers {
            std::fs::copy(
                golden_dir("v1").join(l.as_str()),
                tmp.path().join(l.as_str()),
            )
            .unwrap();
        }
        let open = |layers: &[LayerId]| {
            ArrayFile::open(
                Arc::new(LocalStorage),
                tmp.path(),
                layers,
                ArrayFileOptions::default(),
                Arc::new(DeltaCache::default()),
            )
            .unwrap()
        };
        let mut f = open(&layers);
        if from == 0 {
            let p = f.compact_prepare().unwrap();
            f.install_compacted(p).unwrap();
        } else {
            let p = f.merge_tail_prepare(from).unwrap();
            f.install_merged(p).unwrap();
        }
        assert_eq!(f.layers().len(), from + 1);
        assert_eq!(observed(&f), want, "merged from {from}");
        assert_eq!(
            observed(&open(&f.layers())),
            want,
            "reopened, merged from {from}"
        );
    }
}

/// Writes the golden files with the current build (run once per format
/// version, by hand: `ATLAS_WRITE_GOLDEN=v1 cargo test -p array-format --test it golden`).
#[test]
fn write_golden_when_asked() {
    let Ok(version) = std::env::var("ATLAS_WRITE_GOLDEN") else {
        return;
    };
    let dir = golden_dir(&version);
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = ArrayFile::create(
        Arc::new(LocalStorage),
        &dir,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
    .unwrap();
    let x = |n: &str| vec![n.to_owned()];
    f.define_array::<f32>(
        "temp",
        x("z"),
        vec![6],
        Some(vec![2]),
        Some(FillValue::Float32(-1.0)),
    )
    .unwrap();
    f.write_array(
        "temp",
        &[0],
        ArrayD::from_shape_vec(IxDyn(&[4]), vec![1.0f32, 2.0, 3.0, 4.0])
            .unwrap()
            .view(),
    )
    .unwrap();
    f.define_array::<String>("label", x("n"), vec![3], None, None)
        .unwrap();
    f.write_array(
        "label",
        &[0],
        ArrayD::from_shape_vec(
            IxDyn(&[3]),
            vec!["a".to_owned(), String::new(), "ccc".to_owned()],
        )
        .unwrap()
        .view(),
    )
    .unwrap();
    f.define_array::<i64>("gone", x("n"), vec![2], None, None)
        .unwrap();
    f.write_array(
        "gone",
        &[0],
        ArrayD::from_shape_vec(IxDyn(&[2]), vec![7i64, 8])
            .unwrap()
            .view(),
    )
    .unwrap();
    f.define_array::<u8>("zeta", x("n"), vec![2], None, None)
        .unwrap();
    f.flush().unwrap();
    f.write_array(
        "temp",
        &[3],
        ArrayD::from_shape_vec(IxDyn(&[3]), vec![40.0f32, 50.0, 60.0])
            .unwrap()
            .view(),
    )
    .unwrap();
    f.delete_array("gone").unwrap();
    f.define_array::<f64>("added", x("t"), vec![2], None, None)
        .unwrap();
    f.write_array(
        "added",
        &[1],
        ArrayD::from_shape_vec(IxDyn(&[1]), vec![0.5f64])
            .unwrap()
            .view(),
    )
    .unwrap();
    f.flush().unwrap();
    f.delete_array("label").unwrap();
    f.flush().unwrap();
    f.define_array::<i32>("label", x("m"), vec![2], None, Some(FillValue::Int32(9)))
        .unwrap();
    f.write_array(
        "label",
        &[1],
        ArrayD::from_shape_vec(IxDyn(&[1]), vec![3i32])
            .unwrap()
            .view(),
    )
    .unwrap();
    f.write_array(
        "zeta",
        &[0],
        ArrayD::from_shape_vec(IxDyn(&[1]), vec![5u8])
            .unwrap()
            .view(),
    )
    .unwrap();
    f.flush().unwrap();
    let layers = f.layers();
    std::fs::write(
        dir.join("layers.txt"),
        layers
            .iter()
            .map(|l| l.as_str().to_owned() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(dir.join("expected.txt"), observed(&f)).unwrap();
}
