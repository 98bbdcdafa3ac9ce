//! Measures the first read of one array right after opening an array file that
//! holds `N` arrays (one per dataset, as a store's array file does): the open,
//! the first read, and their sum, with a cold `DeltaCache`.
//!
//! ```text
//! cargo run --release -p array-format --example first_read -- 1000 100000 1000000
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use array_format::{ArrayFile, ArrayFileOptions, DeltaCache, LayerId, LocalStorage};
use ndarray::{ArrayD, IxDyn};

/// Writes `n` arrays of 16 `f32` levels (one chunk each) as one base layer,
/// then a delta updating ten of them, as a store's flushes would.
fn build(dir: &Path, n: usize) -> Vec<LayerId> {
    let cache = Arc::new(DeltaCache::default());
    let mut f = ArrayFile::create(
        Arc::new(LocalStorage),
        dir,
        ArrayFileOptions::default(),
        cache,
    )
    .expect("create");
    let data: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
    let arr = ArrayD::from_shape_vec(IxDyn(&[16]), data).expect("shape");
    for i in 0..n {
        let name = format!("ds_{i:07}");
        f.define_array::<f32>(&name, vec!["level".into()], vec![16], None, None)
            .expect("define");
        f.write_array(&name, &[0], arr.view()).expect("write");
    }
    f.flush().expect("flush");
    for i in (0..n).step_by((n / 10).max(1)) {
        f.write_array(&format!("ds_{i:07}"), &[0], arr.view())
            .expect("update");
    }
    f.flush().expect("flush");
    f.layers()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a count of arrays"))
        .collect();
    for n in if sizes.is_empty() {
        vec![1000, 100_000]
    } else {
        sizes
    } {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        let layers = build(dir.path(), n);
        let build_s = t.elapsed().as_secs_f64();
        let bytes: u64 = layers
            .iter()
            .map(|l| std::fs::metadata(dir.path().join(l.as_str())).map_or(0, |m| m.len()))
            .sum();
        // The trailer's footer length: the footer index in format 2 (what
        // opening reads), the whole footer in format 1.
        let base = std::fs::read(dir.path().join(layers[0].as_str())).expect("read the base");
        let t = base.len() - 32;
        let footer_len = u64::from_le_bytes(base[t + 8..t + 16].try_into().expect("8 bytes"));
        let target = format!("ds_{:07}", n / 2 + 1);
        let mut best = (f64::MAX, f64::MAX);
        let (mut list_s, mut relist_s) = (f64::NAN, f64::NAN);
        for _ in 0..5 {
            let cache = Arc::new(DeltaCache::default());
            let t = Instant::now();
            let f = ArrayFile::open(
                Arc::new(LocalStorage),
                dir.path(),
                &layers,
                ArrayFileOptions::default(),
                cache,
            )
            .expect("open");
            let open_s = t.elapsed().as_secs_f64();
            let got = f.read_array::<f32>(&target, &[], &[]).expect("read");
            let total_s = t.elapsed().as_secs_f64();
            assert_eq!(got.len(), 16);
            if total_s < best.1 {
                best = (open_s, total_s);
            }
            if list_s.is_nan() {
                // Once: everything (the cost opening had before format 2).
                let t = Instant::now();
                assert_eq!(f.list_arrays().len(), n);
                list_s = t.elapsed().as_secs_f64();
                let t = Instant::now();
                assert_eq!(f.list_arrays().len(), n);
                relist_s = t.elapsed().as_secs_f64();
            }
        }
        println!(
            "{n:>9} arrays ({:.1} MiB in {} layers, base footer read at open {:.1} KiB, built in {build_s:.1} s): open {:.3} ms, first read {:.3} ms, open + first read {:.3} ms (best of 5); then listing every array {:.1} ms (again: {:.1} ms)",
            bytes as f64 / f64::from(1 << 20),
            layers.len(),
            footer_len as f64 / 1024.0,
            best.0 * 1e3,
            (best.1 - best.0) * 1e3,
            best.1 * 1e3,
            list_s * 1e3,
            relist_s * 1e3,
        );
    }
}
