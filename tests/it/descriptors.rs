//! The descriptor probe (object-storage issue): a store whose array files hold
//! 1,200 layers in all opens, reads and verifies in a process limited to 256
//! open files (`ulimit -n 256`), and incremental imports keep every array's
//! layer count under the policy's threshold.
//!
//! The limited process is this test binary re-run as a child through
//! `sh -c 'ulimit -n 256; exec …'`, so the limit is real and applies to the
//! whole process, not to a simulated table.

// Stored values must come back bit for bit.
#![allow(clippy::float_cmp)]

use std::path::Path;
use std::process::Command;

use atlas::array_format::LocalStorage;
use atlas::ndarray::Array1;
use atlas::{Atlas, Policy, StoreConfig};

use crate::runtime;

const CHILD_ENV: &str = "ATLAS_DESCRIPTOR_PROBE_STORE";
const N_ARRAYS: usize = 60;
const N_FLUSHES: usize = 20;

/// 60 arrays × 20 flushes = 1,200 layers (merging disabled by the policy).
async fn build(root: &Path) {
    let config = StoreConfig {
        policy: Policy {
            max_layers_per_array: 10_000,
            ..Policy::default()
        },
        ..StoreConfig::default()
    };
    let s = Atlas::create_path(root, config).await.unwrap();
    for f in 0..N_FLUSHES {
        let ds = s.create_dataset(&format!("p{f:02}")).await.unwrap();
        for a in 0..N_ARRAYS {
            let name = format!("V{a:02}");
            ds.define_array::<f32>(&name, vec!["level".into()], vec![4], None, None)
                .await
                .unwrap();
            let v = Array1::from_elem(4, (f * 1000 + a) as f32).into_dyn();
            ds.write_array(&name, vec![0], v.view()).await.unwrap();
        }
        s.flush().await.unwrap();
    }
}

/// Run in the limited child: open, read every array of every dataset, verify.
#[test]
fn descriptor_probe_child() {
    let Some(store) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    runtime().block_on(async {
        let s = Atlas::open_path(Path::new(&store)).await.unwrap();
        let total: usize = s
            .list_arrays()
            .iter()
            .map(|a| s.array_layers(a).len())
            .sum();
        assert_eq!(total, N_ARRAYS * N_FLUSHES, "layers in the store");
        for f in 0..N_FLUSHES {
            let ds = s.open_dataset(&format!("p{f:02}")).await.unwrap();
            for a in 0..N_ARRAYS {
                let v = ds
                    .read_array::<f32>(&format!("V{a:02}"), vec![], vec![])
                    .await
                    .unwrap()
                    .unwrap();
                assert!(v.iter().all(|&x| x == (f * 1000 + a) as f32));
            }
        }
        let names = s.list_datasets().unwrap();
        let all = s
            .read_array_across::<f32>("V07", &names, vec![], vec![])
            .await
            .unwrap();
        assert_eq!(all.len(), N_FLUSHES);
        let report = atlas::verify::verify(&s, |_, _| {});
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.n_layers as usize, N_ARRAYS * N_FLUSHES);
        // The table's default is a quarter of the soft limit, and it holds no
        // more than that however many layers were read.
        assert_eq!(LocalStorage::max_open_files(), 64);
        assert!(LocalStorage::open_files() <= LocalStorage::max_open_files());
    });
    println!("descriptor probe child: ok");
}

#[test]
fn a_store_of_1200_layers_opens_reads_and_verifies_under_ulimit_256() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    runtime().block_on(build(&root));
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" descriptors::descriptor_probe_child --exact --nocapture --test-threads=1")
        .arg(&exe)
        .env(CHILD_ENV, &root)
        // The table's default: a quarter of the limit.
        .env_remove("ATLAS_MAX_OPEN_FILES")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("descriptor probe child: ok"),
        "child under ulimit -n 256 failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// 50 incremental imports (one flush each, 8 variables): with the default
/// policy no array ever holds more than `max_layers_per_array` layers.
#[test]
fn incremental_imports_keep_layer_counts_under_the_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    runtime().block_on(async {
        let max = Policy::default().max_layers_per_array as usize;
        let s = Atlas::create_path(&root, StoreConfig::default())
            .await
            .unwrap();
        for i in 0..50 {
            let ds = s.create_dataset(&format!("import{i:02}")).await.unwrap();
            for a in 0..8 {
                let name = format!("V{a}");
                ds.define_array::<f64>(&name, vec!["n".into()], vec![3], None, None)
                    .await
                    .unwrap();
                let v = Array1::from_elem(3, f64::from(i * 10 + a)).into_dyn();
                ds.write_array(&name, vec![0], v.view()).await.unwrap();
            }
            s.flush().await.unwrap();
            for a in s.list_arrays() {
                let n = s.array_layers(&a).len();
                assert!(n <= max, "import {i}: {a} has {n} layers (policy {max})");
            }
        }
        let r = Atlas::open_path(&root).await.unwrap();
        let v = r
            .open_dataset("import37")
            .await
            .unwrap()
            .read_array::<f64>("V5", vec![], vec![])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v[[2]], 375.0);
    });
}
