//! The workloads. Each returns its figures as JSON and prints a table.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use array_format::{
    ArrayFile, ArrayFileOptions, DeltaCache, DeltaCacheConfig, LayerId, LocalStorage,
};
use atlas::{Atlas, Attr, OpenOptions, StoreConfig};
use ndarray::{ArrayD, ArrayView1, IxDyn};
use serde_json::{json, Value};

use crate::data::{grid, profile, Profiles, Rng};
use crate::{fmt_dur, peak_rss_bytes, reset_peak_rss, Timing};

type Workload = fn(bool) -> Pin<Box<dyn Future<Output = Result<Value>>>>;

/// Every workload, by name, in the order they run. `compact` runs first: its
/// peak-RSS figure needs a process that has not grown yet (the allocator keeps
/// freed memory, so resetting the peak counter after `scale` would start from
/// the earlier workloads' high-water mark).
pub const ALL: &[(&str, Workload)] = &[
    ("compact", |q| Box::pin(compact(q))),
    ("limits", |q| Box::pin(crate::limits::workload(q))),
    ("scale", |q| Box::pin(scale(q))),
    ("layers", |q| Box::pin(layers(q))),
    ("peers", |q| Box::pin(crate::compare::peers(q))),
    ("hyperslab", |q| Box::pin(crate::compare::hyperslab(q))),
    ("tiles", |q| Box::pin(crate::tiles::workload(q))),
    ("w9_import", |q| Box::pin(crate::netcdf::w9_import(q))),
    ("w10_read_temp", |q| {
        Box::pin(crate::netcdf::w10_read_temp(q))
    }),
    #[cfg(feature = "netcdf4")]
    ("cmip6", |q| Box::pin(crate::large::cmip6(q))),
    ("object_store", |q| Box::pin(crate::objects::workload(q))),
    ("query", |q| Box::pin(crate::query::workload(q))),
    ("history", |q| Box::pin(crate::history::workload(q))),
];

/// Levels of every profile array.
pub(crate) const LEVELS: usize = 50;
/// The arrays of every profile dataset.
pub(crate) const ARRAYS: [&str; 3] = ["TEMP", "PSAL", "PRES"];

pub(crate) fn arr(v: Vec<f32>) -> ArrayD<f32> {
    let n = v.len();
    ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("1-d")
}

/// W2's unit of work: opens the store at `path` from nothing and reads
/// `TEMP` of `dataset` (`None` when the dataset has no `TEMP`).
pub(crate) async fn open_read_temp(path: &Path, dataset: &str) -> Result<Option<ArrayD<f32>>> {
    let store = Atlas::open_path(path).await?;
    Ok(store
        .open_dataset(dataset)
        .await?
        .read_array::<f32>("TEMP", vec![], vec![])
        .await?)
}

/// W1: creates a store of `n` profile datasets and flushes it; returns the
/// store and the seconds of the writes and of the flush.
pub(crate) async fn ingest(path: &Path, n: u64) -> Result<(Atlas, f64, f64)> {
    ingest_with(path, &profiles(n)).await
}

/// W1's profiles of `n` datasets, made before a clock starts.
pub(crate) fn profiles(n: u64) -> Profiles {
    Profiles::new(n, ARRAYS.len(), LEVELS)
}

/// [`ingest`] of the datasets `data` holds, made already.
pub(crate) async fn ingest_with(path: &Path, data: &Profiles) -> Result<(Atlas, f64, f64)> {
    let store = Atlas::create_path(path, StoreConfig::default()).await?;
    let t = Instant::now();
    for i in 0..data.datasets() {
        let ds = store.create_dataset(&format!("profile_{i:07}")).await?;
        ds.set_attribute("cycle_number", Attr::Int64(i as i64))?;
        ds.set_attribute("latitude", Attr::Float64((i % 180) as f64 - 90.0))?;
        for (k, a) in ARRAYS.iter().enumerate() {
            ds.define_array::<f32>(a, vec!["N_LEVELS".into()], vec![LEVELS as u64], None, None)
                .await?;
            let cells = ArrayView1::from(data.get(i, k)).into_dyn();
            ds.write_array(a, vec![0], cells).await?;
        }
    }
    let t_ingest = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.flush().await?;
    Ok((store, t_ingest, t.elapsed().as_secs_f64()))
}

/// W1's `n` profile datasets (attributes, arrays, cells) as one batch for
/// [`Atlas::create_datasets`], every dataset's arrays sharing one schema
/// per array name.
pub(crate) fn profile_batch(n: u64) -> Result<Vec<atlas::NewDataset>> {
    use atlas::{NewArray, NewDataset};
    let schemas: Vec<Arc<atlas::ArraySchema>> = ARRAYS
        .iter()
        .map(|a| {
            atlas::ArraySchema::new(
                a,
                atlas::DType::Float32,
                vec!["N_LEVELS".into()],
                vec![LEVELS as u64],
                None,
                None,
            )
            .map(Arc::new)
        })
        .collect::<std::result::Result<_, _>>()?;
    let batch: Vec<NewDataset> = (0..n)
        .map(|i| {
            let mut ds = NewDataset::new(format!("profile_{i:07}"));
            ds.attributes
                .insert("cycle_number".into(), Attr::Int64(i as i64));
            ds.attributes
                .insert("latitude".into(), Attr::Float64((i % 180) as f64 - 90.0));
            for (k, (a, schema)) in ARRAYS.iter().zip(&schemas).enumerate() {
                let cells = arr(profile(i * 3 + k as u64, 0, LEVELS));
                ds.arrays
                    .push(NewArray::new(*a, Arc::clone(schema), Some(cells.into())));
            }
            ds
        })
        .collect();
    Ok(batch)
}

/// W1 through [`Atlas::create_datasets`]: `batch` (from [`profile_batch`],
/// built before the clock starts: it is the input, as a decoded file is an
/// import's) created in one call into a new store, then flushed; returns
/// the store. With `ATLAS_BENCH_PHASES` set, prints the time of the
/// creation and of the flush, and the resident memory around them.
pub(crate) async fn ingest_batched(path: &Path, batch: &[atlas::NewDataset]) -> Result<Atlas> {
    let store = Atlas::create_path(path, StoreConfig::default()).await?;
    // The caller times this whole call: without the variable, nothing is
    // read or printed beside the work.
    if std::env::var_os("ATLAS_BENCH_PHASES").is_none() {
        store.create_datasets(batch).await?;
        store.flush().await?;
        return Ok(store);
    }
    let rss_before = crate::rss_bytes();
    let t = Instant::now();
    store.create_datasets(batch).await?;
    let created = t.elapsed();
    let rss_created = crate::rss_bytes();
    let t = Instant::now();
    store.flush().await?;
    eprintln!(
        "create_datasets {}, flush {}; RSS {} / {} / {} MB (before, created, flushed), peak {} MB",
        crate::fmt_dur(created),
        crate::fmt_dur(t.elapsed()),
        rss_before >> 20,
        rss_created >> 20,
        crate::rss_bytes() >> 20,
        crate::peak_rss_bytes() >> 20
    );
    Ok(store)
}

/// W1/W2/W3/W4/W6 and the flush-scaling curve: stores of 10k, 30k, 100k datasets
/// (and 1M with `--full`).
async fn scale(quick: bool) -> Result<Value> {
    let mut rows = Vec::new();
    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "datasets",
        "ingest",
        "flush",
        "flush/ds",
        "reopen+read",
        "read ds",
        "scan TEMP",
        "flush 1%"
    );
    let sizes: &[u64] = if quick {
        &[10_000, 30_000, 100_000]
    } else {
        &[10_000, 30_000, 100_000, 1_000_000]
    };
    for &n in sizes {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store");
        let (store, t_ingest, t_flush) = ingest(&path, n).await?;
        drop(store);
        // W2: reopen and read one array (median of 5 fresh opens).
        let probe = format!("profile_{:07}", n / 2);
        let w2 = Timing::measure(5, true, || {
            let rt = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| {
                rt.block_on(async {
                    let a = open_read_temp(&path, &probe).await?;
                    ensure!(
                        a.is_some_and(|a| a.iter().copied().eq(profile((n / 2) * 3, 0, LEVELS))),
                        "wrong data"
                    );
                    Ok(())
                })
            })
        })?;
        // Open alone, and listing every dataset from a fresh handle.
        let t_open = Timing::measure(5, true, || {
            let rt = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| {
                rt.block_on(async { Atlas::open_path(&path).await.map(drop) })
            })?;
            Ok(())
        })?;
        let t_ls = Timing::measure(3, true, || {
            let rt = tokio::runtime::Handle::current();
            let s = tokio::task::block_in_place(|| rt.block_on(Atlas::open_path(&path)))?;
            ensure!(s.list_datasets()?.len() as u64 == n, "wrong listing");
            Ok(())
        })?;
        // Peak RSS of a fresh process that opens the store and reads one
        // dataset, and `atlas ls` end to end (with the CLI built beside).
        let open_rss = crate::child::open_rss(&path, &probe)?;
        let cli_ls = match crate::child::cli() {
            Some(exe) => {
                let runs = tokio::task::block_in_place(|| {
                    (0..3)
                        .map(|_| {
                            crate::child::run_cli(&exe, None, &["ls".as_ref(), path.as_os_str()])
                        })
                        .collect::<Result<Vec<_>>>()
                })?;
                let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
                Some((
                    Timing::from_samples(runs.into_iter().map(|r| r.0).collect()),
                    peak,
                ))
            }
            None => None,
        };
        // The registry: the runs the manifest names and the manifest (runs
        // retired by merges stay on disk for the grace period: not counted).
        let registry_bytes = Atlas::open_path(&path).await?.registry_bytes()
            + std::fs::metadata(path.join("atlas.json"))?.len();
        let registry_on_disk: u64 = std::fs::read_dir(path.join("atlas.meta"))?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum::<u64>()
            + std::fs::metadata(path.join("atlas.json"))?.len();
        println!(
            "{n:>8} open {} · ls {} · registry {:.1} MB ({:.1} MB in atlas.meta with retired runs) · open + read one dataset in a fresh process: peak RSS {:.1} MB · {}",
            fmt_dur(t_open.median),
            fmt_dur(t_ls.median),
            registry_bytes as f64 / 1e6,
            registry_on_disk as f64 / 1e6,
            open_rss as f64 / 1e6,
            cli_ls.as_ref().map_or_else(
                || "`atlas ls`: no CLI beside this binary".to_owned(),
                |(t, rss)| {
                    format!(
                        "`atlas ls` {} (peak RSS sampled every 5 ms, a lower bound: {:.1} MB)",
                        t.show(),
                        *rss as f64 / 1e6
                    )
                }
            ),
        );
        // W4: one whole small dataset, warm.
        let s = Atlas::open_path(&path).await?;
        let ds = s.open_dataset(&probe).await?;
        let w4 = Timing::measure(20, true, || {
            let rt = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| {
                rt.block_on(async {
                    for a in ARRAYS {
                        ensure!(
                            ds.read_array::<f32>(a, vec![], vec![]).await?.is_some(),
                            "missing"
                        );
                    }
                    Ok(())
                })
            })
        })?;
        // W3: scan TEMP across every dataset (checked after the clock stops).
        let names = s.list_datasets()?;
        let t = Instant::now();
        let mut parts = Vec::with_capacity(names.len());
        for batch in names.chunks(4096) {
            parts.extend(
                s.read_array_across::<f32>("TEMP", batch, vec![], vec![])
                    .await?,
            );
        }
        let t_scan = t.elapsed().as_secs_f64();
        let mut cells = 0usize;
        for (i, p) in parts.into_iter().enumerate() {
            let p = p.expect("every dataset has TEMP");
            ensure!(
                p.iter().copied().eq(profile(i as u64 * 3, 0, LEVELS)),
                "wrong scan data"
            );
            cells += p.len();
        }
        drop(s);
        // W6: change 1% of datasets, flush.
        let s = Atlas::open_with(
            Arc::new(LocalStorage),
            &path,
            OpenOptions {
                write: true,
                ..OpenOptions::default()
            },
        )
        .await?;
        for i in (0..n).step_by(100) {
            let ds = s.open_dataset(&format!("profile_{i:07}")).await?;
            ds.write_array("TEMP", vec![0], arr(profile(i * 3, 1, LEVELS)).view())
                .await?;
        }
        let t = Instant::now();
        s.flush().await?;
        let t_w6 = t.elapsed().as_secs_f64();
        let scan_bytes = (cells * 4) as f64;
        println!(
            "{n:>8} {:>10} {:>10} {:>10.2}µs {:>12} {:>12} {:>8.0} MB/s {:>12}",
            fmt_dur(std::time::Duration::from_secs_f64(t_ingest)),
            fmt_dur(std::time::Duration::from_secs_f64(t_flush)),
            t_flush / n as f64 * 1e6,
            fmt_dur(w2.median),
            fmt_dur(w4.median),
            scan_bytes / t_scan / 1e6,
            fmt_dur(std::time::Duration::from_secs_f64(t_w6)),
        );
        rows.push(json!({
            "datasets": n, "ingest_s": t_ingest, "flush_s": t_flush, "flush_per_dataset_us": t_flush / n as f64 * 1e6,
            "w2_reopen_read": w2.json(), "w4_read_dataset": w4.json(),
            "open": t_open.json(), "ls": t_ls.json(), "registry_bytes": registry_bytes, "registry_on_disk_bytes": registry_on_disk,
            "open_read_peak_rss_bytes": open_rss,
            "cli_ls": cli_ls.as_ref().map(|(t, rss)| json!({"time": t.json(), "peak_rss_bytes": rss})),
            "w3_scan_s": t_scan, "w3_scan_mb_s": scan_bytes / t_scan / 1e6, "w6_flush_1pct_s": t_w6,
        }));
    }
    Ok(json!(rows))
}

/// A cache configuration with both levels off: every read decodes what it
/// touches.
const NO_CACHE: DeltaCacheConfig = DeltaCacheConfig {
    raw_capacity_bytes: 0,
    decoded_capacity_bytes: 0,
};

fn no_cache() -> Arc<DeltaCache> {
    Arc::new(DeltaCache::new(NO_CACHE))
}

/// The store at `path`, opened without caches.
pub(crate) async fn open_uncached(path: &Path) -> Result<Atlas> {
    Ok(Atlas::open_with(
        Arc::new(LocalStorage),
        path,
        OpenOptions {
            cache: NO_CACHE,
            ..OpenOptions::default()
        },
    )
    .await?)
}

/// Where the profiling loops keep their store under `dir`.
pub(crate) fn loop_path(dir: &Path) -> std::path::PathBuf {
    dir.join("w3")
}

/// The 10,000-profile store of the profiling loops ([`loop_path`]): opened
/// when it exists, else ingested.
pub(crate) async fn loop_store(dir: &Path, n: u64) -> Result<Atlas> {
    let path = loop_path(dir);
    if path.exists() {
        Ok(Atlas::open_path(&path).await?)
    } else {
        Ok(ingest(&path, n).await?.0)
    }
}

#[allow(clippy::unused_async)] // every workload has the same async signature
/// W7: read latency with 1, 10 and 100 layers against the compacted file.
async fn layers(quick: bool) -> Result<Value> {
    const N: u64 = 2_000;
    const LEN: usize = 1_000;
    let storage = Arc::new(LocalStorage);
    let mut out = Vec::new();
    println!(
        "{:>7} {:>16} {:>16} {:>16} {:>16}",
        "layers", "read one", "compacted", "ratio", "scan all"
    );
    let depths: &[u64] = if quick {
        &[1, 10, 100]
    } else {
        &[1, 10, 100, 300]
    };
    for &n_layers in depths {
        let dir = tempfile::tempdir()?;
        let mut f = ArrayFile::create(
            storage.clone(),
            dir.path(),
            ArrayFileOptions::default(),
            no_cache(),
        )?;
        let mut version = vec![0u64; N as usize];
        for i in 0..N {
            f.define_array::<f32>(
                &format!("p{i}"),
                vec!["z".into()],
                vec![LEN as u64],
                None,
                None,
            )?;
            f.write_array(&format!("p{i}"), &[0], arr(profile(i, 0, LEN)).view())?;
        }
        f.flush()?;
        // Spread updates over the remaining layers: each rewrites N/n_layers arrays.
        let mut rng = Rng(n_layers);
        for l in 1..n_layers {
            for _ in 0..(N / n_layers).max(1) {
                let i = rng.next_u64() % N;
                version[i as usize] = l;
                f.write_array(&format!("p{i}"), &[0], arr(profile(i, l, LEN)).view())?;
            }
            f.flush()?;
        }
        ensure!(f.layers().len() as u64 == n_layers, "layer count");
        let layers: Vec<LayerId> = f.layers();
        let opened = ArrayFile::open(
            storage.clone(),
            dir.path(),
            &layers,
            ArrayFileOptions::default(),
            no_cache(),
        )?;
        let read_one = |file: &ArrayFile, seed: u64| -> Result<()> {
            let mut r = Rng(seed);
            for _ in 0..200 {
                let i = r.next_u64() % N;
                let a = file.read_array::<f32>(&format!("p{i}"), &[], &[])?;
                ensure!(
                    a.iter().copied().eq(profile(i, version[i as usize], LEN)),
                    "wrong data"
                );
            }
            Ok(())
        };
        let stacked = Timing::measure(7, true, || read_one(&opened, 7))?;
        let mut c = ArrayFile::open(
            storage.clone(),
            dir.path(),
            &layers,
            ArrayFileOptions::default(),
            no_cache(),
        )?;
        c.compact()?;
        let compacted = Timing::measure(7, true, || read_one(&c, 7))?;
        let scan = Timing::measure(3, true, || {
            for i in 0..N {
                opened.read_array::<f32>(&format!("p{i}"), &[], &[])?;
            }
            Ok(())
        })?;
        let per_read = |t: &Timing| t.secs() / 200.0;
        println!(
            "{n_layers:>7} {:>16} {:>16} {:>16.2} {:>16}",
            fmt_dur(std::time::Duration::from_secs_f64(per_read(&stacked))),
            fmt_dur(std::time::Duration::from_secs_f64(per_read(&compacted))),
            stacked.secs() / compacted.secs(),
            scan.show()
        );
        out.push(json!({"layers": n_layers, "read_one_s": per_read(&stacked), "compacted_read_one_s": per_read(&compacted),
            "ratio": stacked.secs() / compacted.secs(), "scan": scan.json()}));
    }
    Ok(json!(out))
}

#[allow(clippy::unused_async)] // every workload has the same async signature
/// W8: compaction throughput and peak memory on a file larger than the cache.
async fn compact(quick: bool) -> Result<Value> {
    let (n_arrays, n_layers) = if quick { (400u64, 10u64) } else { (1_600, 20) };
    let (n_lat, n_lon) = (256usize, 256usize);
    let dir = tempfile::tempdir()?;
    let storage = Arc::new(LocalStorage);
    let cache = Arc::new(DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes: 8 << 20,
        decoded_capacity_bytes: 8 << 20,
    }));
    let opts = ArrayFileOptions {
        pending_budget_bytes: 32 << 20,
        ..ArrayFileOptions::default()
    };
    let mut f = ArrayFile::create(storage.clone(), dir.path(), opts, cache.clone())?;
    for l in 0..n_layers {
        for i in (l..n_arrays).step_by(n_layers as usize) {
            let name = format!("g{i}");
            f.define_array::<f32>(
                &name,
                vec!["lat".into(), "lon".into()],
                vec![n_lat as u64, n_lon as u64],
                Some(vec![64, 256]),
                None,
            )?;
            let v = ArrayD::from_shape_vec(IxDyn(&[n_lat, n_lon]), grid(i, n_lat, n_lon))?;
            f.write_array(&name, &[], v.view())?;
        }
        f.flush()?;
    }
    let raw = n_arrays * (n_lat * n_lon * 4) as u64;
    let on_disk: u64 = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let layers = f.layers();
    drop(f);
    let mut g = ArrayFile::open(storage.clone(), dir.path(), &layers, opts, cache)?;
    let rss_reset = reset_peak_rss();
    let rss_before = peak_rss_bytes();
    let t = Instant::now();
    g.compact()?;
    let secs = t.elapsed().as_secs_f64();
    let rss_peak = peak_rss_bytes();
    // Spot-check the compacted data.
    for i in [0, n_arrays / 2, n_arrays - 1] {
        let a = g.read_array::<f32>(&format!("g{i}"), &[], &[])?;
        ensure!(
            a.iter().copied().eq(grid(i, n_lat, n_lon)),
            "compacted data differs"
        );
    }
    println!(
        "compacted {n_layers} layers, {} arrays: {:.0} MB raw / {:.0} MB stored in {} = {:.0} MB/s stored ({:.0} MB/s raw); peak RSS {:.0} MB -> {:.0} MB{}",
        n_arrays,
        raw as f64 / 1e6,
        on_disk as f64 / 1e6,
        fmt_dur(std::time::Duration::from_secs_f64(secs)),
        on_disk as f64 / secs / 1e6,
        raw as f64 / secs / 1e6,
        rss_before as f64 / 1e6,
        rss_peak as f64 / 1e6,
        if rss_reset { "" } else { " (peak counter could not be reset)" }
    );
    Ok(
        json!({"arrays": n_arrays, "layers": n_layers, "raw_bytes": raw, "stored_bytes": on_disk, "seconds": secs,
        "stored_mb_s": on_disk as f64 / secs / 1e6, "rss_before_bytes": rss_before, "rss_peak_bytes": rss_peak, "rss_reset": rss_reset}),
    )
}
