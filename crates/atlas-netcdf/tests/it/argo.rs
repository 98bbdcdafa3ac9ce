//! The real corpus: 3,000 Argo profiles imported, checked against direct
//! reads of the files, exported back and compared.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use atlas::{Atlas, StoreConfig};
use atlas_netcdf::{import_paths, BulkOptions, FileOutcome};

use crate::common::{argo, assert_same_file, check_dataset, reference, Rng};

/// One store holding every profile, built once (in its own runtime) and
/// shared read-only by the tests below.
fn imported() -> Option<&'static Path> {
    static STORE: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let files = argo()?;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store");
            let build = path.clone();
            // A thread of its own: the callers are inside a runtime already.
            std::thread::spawn(move || build_store(files, &build))
                .join()
                .unwrap();
            Some((dir, path))
        })
        .as_ref()
        .map(|(_, p)| p.as_path())
}

fn build_store(files: &[PathBuf], path: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Atlas::create_path(path, StoreConfig::default())
            .await
            .unwrap();
        let root = files[0]
            .ancestors()
            .find(|p| p.ends_with("argo"))
            .unwrap()
            .to_owned();
        let t = Instant::now();
        let mut seen = 0;
        let report = import_paths(&store, &[root], &BulkOptions::default(), |_, o| {
            seen += 1;
            assert!(
                matches!(o, FileOutcome::Imported { .. }),
                "every profile imports: {o:?}"
            );
        })
        .await
        .unwrap();
        eprintln!(
            "imported {} profiles ({} bytes) in {:.1} s",
            report.imported,
            report.bytes_in,
            t.elapsed().as_secs_f64()
        );
        assert_eq!(seen, files.len());
        assert_eq!(report.imported, files.len());
        assert_eq!(report.failed, 0);
        assert_eq!(store.n_datasets(), files.len());
    });
}

fn name(p: &Path) -> String {
    atlas_netcdf::default_dataset_name(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_profiles_import_and_a_sample_matches_direct_reads() {
    let (Some(files), Some(store)) = (argo(), imported()) else {
        return;
    };
    let store = Atlas::open_path(store).await.unwrap();
    assert_eq!(store.n_datasets(), 3000);
    let mut rng = Rng::seeded(20_240_601);
    let sample = rng.sample(files, 300);
    let mut vars = 0;
    for f in &sample {
        let r = reference(f);
        // Our reader agrees with the independent one.
        let ours = atlas_netcdf::read_file(f).unwrap();
        assert_same_file(&ours, &r, &f.display().to_string());
        check_dataset(&store, &name(f), &r).await;
        vars += r.vars.len();
    }
    eprintln!("checked {} files, {vars} variables", sample.len());
    assert!(vars > 300 * 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_profiles_hold_what_the_originals_hold() {
    let (Some(files), Some(store)) = (argo(), imported()) else {
        return;
    };
    let store = Atlas::open_path(store).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut rng = Rng::seeded(77);
    for f in rng.sample(files, 60) {
        let n = name(&f);
        let path = out.path().join(format!("{n}.nc"));
        let s = atlas_netcdf::export_dataset(&store, &n, &path, Default::default())
            .await
            .unwrap();
        assert_eq!(s.format, atlas_netcdf::NcFormat::Classic);
        // Compared through the independent reader on both sides.
        assert_same_file(&reference(&path), &reference(&f), &n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimport_skips_existing_datasets_unless_replacing() {
    let Some(files) = argo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for f in &files[..20] {
        std::fs::copy(f, src.join(f.file_name().unwrap())).unwrap();
    }
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    let paths = [src.clone()];
    let r = import_paths(&store, &paths, &BulkOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (20, 0, 0));
    let r = import_paths(&store, &paths, &BulkOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (0, 20, 0));
    let opts = BulkOptions {
        replace: true,
        ..BulkOptions::default()
    };
    let r = import_paths(&store, &paths, &opts, |_, _| {})
        .await
        .unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (20, 0, 0));
    drop(store);
    let store = Atlas::open_path(dir.path().join("store")).await.unwrap();
    assert_eq!(store.n_datasets(), 20);
    for f in &files[..20] {
        check_dataset(&store, &name(f), &reference(f)).await;
    }
    crate::common::assert_verifies(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_commit_in_batches_and_a_rerun_resumes() {
    let Some(files) = argo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut sizes = 0u64;
    for f in &files[..12] {
        std::fs::copy(f, src.join(f.file_name().unwrap())).unwrap();
        sizes += std::fs::metadata(f).unwrap().len();
    }
    let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default())
        .await
        .unwrap();
    let g0 = store.generation();
    // About a third of the input per batch: three or four commits.
    let opts = BulkOptions {
        batch_bytes: sizes / 3,
        ..BulkOptions::default()
    };
    let r = import_paths(&store, std::slice::from_ref(&src), &opts, |_, _| {})
        .await
        .unwrap();
    assert_eq!((r.imported, r.failed), (12, 0));
    assert!((3..=4).contains(&r.commits), "{} commits", r.commits);
    assert!(store.generation() >= g0 + r.commits as u64);
    drop(store);

    // A batch committed before an interruption stays: remove the last
    // datasets as if the import had stopped after its first batches, and a
    // rerun imports only those.
    let store = Atlas::open_path(dir.path().join("store")).await.unwrap();
    for f in &files[8..12] {
        store.delete_dataset(&name(f)).await.unwrap();
    }
    store.flush().await.unwrap();
    let r = import_paths(&store, std::slice::from_ref(&src), &opts, |_, _| {})
        .await
        .unwrap();
    assert_eq!((r.imported, r.skipped, r.failed), (4, 8, 0));
    drop(store);
    let store = Atlas::open_path(dir.path().join("store")).await.unwrap();
    assert_eq!(store.n_datasets(), 12);
    for f in &files[..12] {
        check_dataset(&store, &name(f), &reference(f)).await;
    }
    crate::common::assert_verifies(&store);
}
