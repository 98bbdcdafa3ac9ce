//! ATLAS beside its peers on the same data, and the SPEC §6 summary.
//!
//! - `peers`: W1 (ingest + flush), W2 (reopen + read), W3 (scan), W4 (read one
//!   dataset, warm) and W6 (update 1% + flush) on 10,000 profile datasets, for
//!   ATLAS and every peer ([`crate::peers`]). Runs alternate system by system
//!   within each repetition (A B C A B C …) so machine drift hits all of them.
//! - `hyperslab`: W5, a 100 × 100 hyperslab of a 4096 × 4096 `f32` grid chunked
//!   256 × 256, against the whole-array read, with ATLAS's decoded-chunk count;
//!   then random 300 × 300 windows of the grid through each system's default
//!   handle (caches on), median and 99th percentile.
//! - [`summary`]: every SPEC §6 figure beside its physical limit and target.
//!
//! Every value read is checked against the generator after the clock stops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use atlas::array_format::LocalStorage;
use atlas::{Atlas, DatasetView, OpenOptions, StoreConfig};
use ndarray::{ArrayD, IxDyn};
use serde_json::{json, Value};

use crate::data::{grid, profile, Profiles};
use crate::limits::{self, gbs, Limits};
use crate::peers::{self, block, cut, ds_name, GridSpec, System};
use crate::workloads::{arr, ingest_with, ARRAYS, LEVELS};
use crate::{fmt_dur, Timing};

/// ATLAS behind the peers' interface.
#[derive(Default)]
struct AtlasSys {
    store: Option<Atlas>,
    probe: Option<DatasetView>,
    grid: Option<(Atlas, DatasetView)>,
}

pub(crate) fn to_vec(a: ArrayD<f32>) -> Vec<f32> {
    if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().copied().collect()
    }
}

impl System for AtlasSys {
    fn name(&self) -> &'static str {
        "ATLAS"
    }

    fn ingest(&mut self, root: &Path, data: &Profiles) -> Result<()> {
        block(ingest_with(root, data))?;
        Ok(())
    }

    fn reopen_read(&self, root: &Path, i: u64) -> Result<Vec<f32>> {
        let a = block(crate::workloads::open_read_temp(root, &ds_name(i)))?;
        Ok(to_vec(a.context("no TEMP")?))
    }

    fn open(&mut self, root: &Path, probe: u64) -> Result<()> {
        let s = block(Atlas::open_path(root))?;
        self.probe = Some(block(s.open_dataset(&ds_name(probe)))?);
        self.store = Some(s);
        Ok(())
    }

    fn scan(&self, array: &str, names: &[String]) -> Result<Vec<Vec<f32>>> {
        let s = self.store.as_ref().context("open first")?;
        let mut out = Vec::with_capacity(names.len());
        // This harness is synchronous code: the blocking form, as the other
        // systems' synchronous APIs (the async form's figures are in
        // docs/BENCHMARKS.md, fourteenth session).
        tokio::task::block_in_place(|| -> Result<()> {
            for batch in names.chunks(4096) {
                for p in s.read_array_across_blocking::<f32>(array, batch, &[], &[])? {
                    out.push(to_vec(p.context("missing array")?));
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn read_dataset(&self) -> Result<Vec<Vec<f32>>> {
        let ds = self.probe.as_ref().context("open first")?;
        block(async {
            let mut out = Vec::with_capacity(ARRAYS.len());
            for a in ARRAYS {
                out.push(to_vec(
                    ds.read_array::<f32>(a, vec![], vec![])
                        .await?
                        .context("missing")?,
                ));
            }
            Ok(out)
        })
    }

    fn close(&mut self) {
        self.probe = None;
        self.store = None;
        self.grid = None;
    }

    fn open_writer(&mut self, root: &Path) -> Result<()> {
        self.store = Some(block(Atlas::open_with(
            Arc::new(LocalStorage),
            root,
            OpenOptions {
                write: true,
                ..OpenOptions::default()
            },
        ))?);
        Ok(())
    }

    fn update(&mut self, ids: &[u64], version: u64) -> Result<()> {
        let s = self.store.as_ref().context("open_writer first")?;
        block(async {
            for &i in ids {
                let ds = s.open_dataset(&ds_name(i)).await?;
                ds.write_array("TEMP", vec![0], arr(profile(i * 3, version, LEVELS)).view())
                    .await?;
            }
            s.flush().await?;
            Ok(())
        })
    }

    fn grid_write(&mut self, root: &Path, spec: GridSpec, data: &[f32]) -> Result<()> {
        block(async {
            let s = Atlas::create_path(root, StoreConfig::default()).await?;
            let ds = s.create_dataset("grid").await?;
            ds.define_array::<f32>(
                "T",
                vec!["lat".into(), "lon".into()],
                spec.shape.to_vec(),
                Some(spec.chunk.to_vec()),
                None,
            )
            .await?;
            let shape = [spec.shape[0] as usize, spec.shape[1] as usize];
            let v = ndarray::ArrayViewD::from_shape(IxDyn(&shape), data)?;
            ds.write_array("T", vec![0, 0], v).await?;
            s.flush().await?;
            Ok(())
        })
    }

    fn grid_open(&mut self, root: &Path, _spec: GridSpec) -> Result<()> {
        // No cache: every read decodes the chunks it touches, and the decoded
        // level's miss counter counts exactly those decodes.
        let s = block(crate::workloads::open_uncached(root))?;
        let ds = block(s.open_dataset("grid"))?;
        self.grid = Some((s, ds));
        Ok(())
    }

    fn grid_open_default(&mut self, root: &Path, _spec: GridSpec) -> Result<()> {
        let s = block(Atlas::open_path(root))?;
        let ds = block(s.open_dataset("grid"))?;
        self.grid = Some((s, ds));
        Ok(())
    }

    fn grid_read(&self, start: [u64; 2], count: [u64; 2]) -> Result<Vec<f32>> {
        let (_, ds) = self.grid.as_ref().context("grid_open first")?;
        let a =
            block(ds.read_array::<f32>("T", start.to_vec(), count.to_vec()))?.context("no T")?;
        Ok(to_vec(a))
    }

    fn chunks_decoded(&self) -> Option<u64> {
        self.grid
            .as_ref()
            .map(|(s, _)| s.cache().decoded_stats().misses)
    }
}

/// ATLAS first, then every peer compiled in.
fn systems() -> Vec<Box<dyn System>> {
    let mut v: Vec<Box<dyn System>> = vec![Box::<AtlasSys>::default()];
    #[cfg(feature = "peers")]
    v.push(Box::<peers::zarrs::Zarrs>::default());
    v.push(Box::<peers::files::Files>::default());
    #[cfg(feature = "peers")]
    v.push(Box::<peers::atlas_rust::AtlasRust>::default());
    v
}

/// The systems of the grid workload: [`systems`] and, with the feature
/// `netcdf4`, the grid as NetCDF-4 files read through libnetcdf.
fn grid_systems() -> Vec<Box<dyn System>> {
    #[allow(unused_mut)]
    let mut v = systems();
    #[cfg(feature = "netcdf4")]
    v.extend(crate::large::nc_grid_systems());
    v
}

fn peers_note() {
    if !cfg!(feature = "peers") {
        println!(
            "note: zarrs and atlas-rust 0.14 are not compiled in; run \
             `cargo run --release -p atlas-bench --features peers -- …` to include them"
        );
    }
}

/// Runs `f` for every system in turn, `reps` times (plus `warm` untimed rounds),
/// and summarises each system's durations. `f` returns the duration of its own
/// timed region, so it can check results outside it.
fn alternate(
    systems: &mut [Box<dyn System>],
    reps: usize,
    warm: usize,
    mut f: impl FnMut(&mut dyn System, usize, usize) -> Result<Duration>,
) -> Result<Vec<Option<Timing>>> {
    alternate_some(systems, reps, warm, |s, k, rep| f(s, k, rep).map(Some))
}

/// Like [`alternate`], but `f` may skip a run by returning `None` (a system
/// that skipped every run has no timing).
fn alternate_some(
    systems: &mut [Box<dyn System>],
    reps: usize,
    warm: usize,
    mut f: impl FnMut(&mut dyn System, usize, usize) -> Result<Option<Duration>>,
) -> Result<Vec<Option<Timing>>> {
    let mut samples = vec![Vec::with_capacity(reps); systems.len()];
    for rep in 0..warm + reps {
        for (k, s) in systems.iter_mut().enumerate() {
            let d = f(s.as_mut(), k, rep)
                .with_context(|| format!("{} (repetition {rep})", s.name()))?;
            if let (true, Some(d)) = (rep >= warm, d) {
                samples[k].push(d);
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|v| (!v.is_empty()).then(|| Timing::from_samples(v)))
        .collect())
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed()))
}

pub(crate) fn check(what: &str, got: &[f32], want: &[f32]) -> Result<()> {
    ensure!(
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{what}: wrong data"
    );
    Ok(())
}

/// `30.4 ms (27.3–37.1)`: the spread in the median's unit.
fn compact(t: &Timing) -> String {
    let m = t.median.as_secs_f64();
    let (scale, unit) = if m < 1e-3 {
        (1e6, "µs")
    } else if m < 1.0 {
        (1e3, "ms")
    } else {
        (1.0, "s")
    };
    let p = |d: Duration| {
        let v = d.as_secs_f64() * scale;
        if v < 10.0 {
            format!("{v:.2}")
        } else if v < 100.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        }
    };
    format!("{} {unit} ({}–{})", p(t.median), p(t.min), p(t.max))
}

/// `2.35`, or `1/170` below 0.1 (a peer 170× faster than ATLAS).
fn ratio(x: f64) -> String {
    if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("1/{:.0}", 1.0 / x)
    }
}

/// A row of the peers tables: the workload, then one timing per system (ATLAS
/// first, always measured; `None` for a peer not run in this mode).
pub(crate) type Row = (String, Vec<Option<Timing>>);

/// ATLAS's timing of a row.
fn atlas_of(row: &Row) -> &Timing {
    row.1[0].as_ref().expect("ATLAS runs every workload")
}

/// One table row per workload, one column per system; peers get `×ratio` = peer / ATLAS.
pub(crate) fn print_table(title: &str, names: &[&str], rows: &[Row]) {
    print!("{title:<30}");
    for (k, n) in names.iter().enumerate() {
        if k == 0 {
            print!(" {n:>24}");
        } else {
            print!(" {n:>24} {:>7}", "×ATLAS");
        }
    }
    println!();
    for row in rows {
        let a = atlas_of(row);
        print!("{:<30} {:>24}", row.0, compact(a));
        for t in &row.1[1..] {
            match t {
                Some(t) => print!(" {:>24} {:>7}", compact(t), ratio(t.secs() / a.secs())),
                None => print!(" {:>24} {:>7}", "not run (--quick)", ""),
            }
        }
        println!();
    }
}

pub(crate) fn rows_json(names: &[&str], rows: &[Row]) -> Value {
    let mut out = serde_json::Map::new();
    for row in rows {
        let a = atlas_of(row);
        let mut m = serde_json::Map::new();
        for (n, t) in names.iter().zip(&row.1) {
            let v = t.as_ref().map_or(Value::Null, |t| {
                let mut v = t.json();
                v["ratio_to_atlas"] = json!(t.secs() / a.secs());
                v
            });
            m.insert((*n).to_owned(), v);
        }
        out.insert(row.0.clone(), Value::Object(m));
    }
    Value::Object(out)
}

#[allow(clippy::unused_async)] // every workload has the same async signature
/// The `peers` workload: W1, W2, W3, W4, W6 on 10,000 datasets for every system.
pub async fn peers(quick: bool) -> Result<Value> {
    const N: u64 = 10_000;
    let probe = N / 2;
    let (r_ingest, r_open, r_scan, r_read, r_update) = if quick {
        (3, 7, 3, 7, 3)
    } else {
        (3, 11, 7, 11, 5)
    };
    let mut sys = systems();
    let names: Vec<&str> = sys.iter().map(|s| s.name()).collect();
    let tmp = tempfile::tempdir()?;
    let mut rows: Vec<Row> = Vec::new();

    // W1: a fresh store per repetition; the newest one stays for the rest. A
    // system that fsyncs every file (zarrs: ~70,000 fsyncs, 33 s to 186 s here)
    // is not timed in --quick: its store is built once, untimed, on 16 threads.
    let mut kept: Vec<Option<PathBuf>> = vec![None; sys.len()];
    // The cells, made once before any clock: each system's W1 times its
    // writes, not the data generator.
    let data = crate::workloads::profiles(N);
    let w1 = alternate_some(&mut sys, r_ingest, 0, |s, k, rep| {
        let slow = quick && s.fsyncs_every_file();
        if slow && rep > 0 {
            return Ok(None);
        }
        let dir = tmp.path().join(format!("s{k}-{rep}"));
        let ((), d) = timed(|| {
            if slow {
                s.ingest_parallel(&dir, &data, 16)
            } else {
                s.ingest(&dir, &data)
            }
        })?;
        if let Some(old) = kept[k].replace(dir) {
            std::fs::remove_dir_all(old)?;
        }
        Ok((!slow).then_some(d))
    })?;
    rows.push(("W1 ingest+flush 10k".into(), w1));
    let kept: Vec<PathBuf> = kept.into_iter().map(|p| p.expect("ingested")).collect();
    let root = |k: usize| -> &Path { &kept[k] };
    let all: Vec<String> = (0..N).map(ds_name).collect();
    // What W1 wrote, checked in full (untimed).
    for (k, s) in sys.iter_mut().enumerate() {
        s.open(root(k), probe)?;
        for (j, a) in ARRAYS.iter().enumerate() {
            for (i, v) in s.scan(a, &all)?.iter().enumerate() {
                check(s.name(), v, &profile(i as u64 * 3 + j as u64, 0, LEVELS))?;
            }
        }
        s.close();
    }

    // W2: open from nothing, read one array (`ATLAS_BENCH_W2_REPS` more
    // repetitions, for a profiler).
    let r_open = std::env::var("ATLAS_BENCH_W2_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(r_open);
    let want = profile(probe * 3, 0, LEVELS);
    let w2 = alternate(&mut sys, r_open, 1, |s, k, _| {
        let (v, d) = timed(|| s.reopen_read(root(k), probe))?;
        check(s.name(), &v, &want)?;
        Ok(d)
    })?;
    rows.push(("W2 reopen+read 10k".into(), w2));

    for (k, s) in sys.iter_mut().enumerate() {
        s.open(root(k), probe)?;
    }
    // W3: scan TEMP across every dataset.
    let w3 = alternate(&mut sys, r_scan, 1, |s, _, _| {
        let (v, d) = timed(|| s.scan("TEMP", &all))?;
        ensure!(v.len() == all.len(), "scan length");
        for (i, p) in v.iter().enumerate() {
            check(s.name(), p, &profile(i as u64 * 3, 0, LEVELS))?;
        }
        Ok(d)
    })?;
    // W4: one whole dataset through a warm handle (per read: 100 reads per sample).
    let want4: Vec<Vec<f32>> = (0..ARRAYS.len() as u64)
        .map(|j| profile(probe * 3 + j, 0, LEVELS))
        .collect();
    let w4 = alternate(&mut sys, r_read, 1, |s, _, _| {
        let t = Instant::now();
        let mut last_read = Vec::new();
        for _ in 0..100 {
            last_read = s.read_dataset()?;
        }
        let d = t.elapsed() / 100;
        ensure!(last_read.len() == want4.len(), "arrays");
        for (g, w) in last_read.iter().zip(&want4) {
            check(s.name(), g, w)?;
        }
        Ok(d)
    })?;
    for s in &mut sys {
        s.close();
    }
    rows.push(("W3 scan TEMP 10k".into(), w3));
    rows.push(("W4 read 1 dataset (warm)".into(), w4));

    // ATLAS decodes only the dataset's own chunks on a cold read.
    let cold_decodes = block(async {
        let s = Atlas::open_path(root(0)).await?;
        let before = s.cache().decoded_stats().misses;
        let ds = s.open_dataset(&ds_name(probe)).await?;
        for a in ARRAYS {
            ds.read_array::<f32>(a, vec![], vec![]).await?;
        }
        anyhow::Ok(s.cache().decoded_stats().misses - before)
    })?;

    // W6: rewrite TEMP of 1% of the datasets (a different 1% each time) + flush.
    for (k, s) in sys.iter_mut().enumerate() {
        s.open_writer(root(k))?;
    }
    let w6 = alternate(&mut sys, r_update, 0, |s, _, rep| {
        let v = rep as u64 + 1;
        let ids: Vec<u64> = (v..N).step_by(100).collect();
        let ((), d) = timed(|| s.update(&ids, v))?;
        Ok(d)
    })?;
    rows.push(("W6 update 1% + flush 10k".into(), w6));
    for (k, s) in sys.iter_mut().enumerate() {
        s.close();
        // Every update is visible after reopening (untimed).
        s.open(root(k), probe)?;
        for (i, p) in s.scan("TEMP", &all)?.iter().enumerate() {
            let i = i as u64;
            let v = if (1..=r_update as u64).contains(&(i % 100)) {
                i % 100
            } else {
                0
            };
            check(s.name(), p, &profile(i * 3, v, LEVELS))?;
        }
        s.close();
    }

    // ATLAS's W3 on one core and on every core: the same scan in two fresh
    // processes, the first pinned with `taskset` (rayon sizes its pool to
    // the cores the process may use).
    let scaling = match crate::child::one_core() {
        Some(cpu) => {
            let reps = if quick { 100 } else { 300 };
            let dir = tmp.path().join("w3-cores");
            std::fs::create_dir_all(&dir)?;
            let one = crate::child::loop_median("w3blocking", &dir, N, reps, Some(&cpu))?;
            let all_cores = crate::child::loop_median("w3blocking", &dir, N, reps, None)?;
            // The stacked form: every array decoded into one result.
            let st_one = crate::child::loop_median("w3stacked", &dir, N, reps, Some(&cpu))?;
            let st_all = crate::child::loop_median("w3stacked", &dir, N, reps, None)?;
            Some(((one, all_cores), (st_one, st_all), reps))
        }
        None => None,
    };

    // ATLAS's W1 through one `create_datasets` batch (built before the
    // clock), in a fresh process, beside the per-call form above.
    let w1_batched = {
        let dir = tmp.path().join("w1-batched");
        std::fs::create_dir_all(&dir)?;
        crate::child::loop_median("w1batch", &dir, N, if quick { 5 } else { 9 }, None)?
    };

    peers_note();
    print_table("(10,000 datasets)", &names, &rows);
    println!(
        "ATLAS W1 through one create_datasets batch (built before the clock, median in a fresh process): {}",
        crate::fmt_dur(Duration::from_secs_f64(w1_batched))
    );
    println!("ATLAS: a cold read of one dataset decoded {cold_decodes} chunks (its own 3)");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    match scaling {
        Some(((one, all_cores), (st_one, st_all), reps)) => {
            for (form, one, all_cores) in [
                ("blocking form", one, all_cores),
                ("stacked, blocking form", st_one, st_all),
            ] {
                println!(
                    "ATLAS W3 (open handle, {form}, medians of {reps} in fresh processes): \
                     one core {} · {cores} cores {} ({:.2}× faster)",
                    crate::fmt_dur(Duration::from_secs_f64(one)),
                    crate::fmt_dur(Duration::from_secs_f64(all_cores)),
                    one / all_cores
                );
            }
        }
        None => println!("ATLAS W3 on one core: not measured (one core, or no `taskset`)"),
    }
    let mut out = rows_json(&names, &rows);
    let cores_json = |(one, all_cores): (f64, f64), reps: usize| json!({"one_core_s": one, "all_cores_s": all_cores, "cores": cores, "reps": reps});
    out["atlas_w3_cores"] = scaling.map_or(Value::Null, |(w3, _, reps)| cores_json(w3, reps));
    out["atlas_w3_stacked_cores"] =
        scaling.map_or(Value::Null, |(_, stacked, reps)| cores_json(stacked, reps));
    out["atlas_w1_batched_s"] = json!(w1_batched);
    out["datasets"] = json!(N);
    out["systems"] = json!(names);
    out["atlas_cold_read_decoded_chunks"] = json!(cold_decodes);
    out["repetitions"] =
        json!({"w1": r_ingest, "w2": r_open, "w3": r_scan, "w4": r_read, "w6": r_update});
    Ok(out)
}

/// Side of the random windows of the `hyperslab` workload (issue 17's second
/// harness read 300 × 300 windows).
const WINDOW: u64 = 300;

#[allow(clippy::unused_async)] // every workload has the same async signature
/// The `hyperslab` workload (W5), and random 300 × 300 windows of its grid
/// with percentiles.
pub async fn hyperslab(quick: bool) -> Result<Value> {
    let spec = GridSpec {
        shape: [4096, 4096],
        chunk: [256, 256],
    };
    let start = [1000, 2000];
    let count = [100, 100];
    let touched: u64 = (0..2)
        .map(|d| (start[d] + count[d] - 1) / spec.chunk[d] - start[d] / spec.chunk[d] + 1)
        .product();
    let all_chunks: u64 = (0..2)
        .map(|d| spec.shape[d].div_ceil(spec.chunk[d]))
        .product();
    let (r_slab, r_whole) = if quick { (11, 3) } else { (21, 5) };
    let data = grid(7, spec.shape[0] as usize, spec.shape[1] as usize);
    let want = cut(&data, spec.shape[1], start, count);
    let mut sys = grid_systems();
    let names: Vec<&str> = sys.iter().map(|s| s.name()).collect();
    let tmp = tempfile::tempdir()?;
    let mut writes = BTreeMap::new();
    for (k, s) in sys.iter_mut().enumerate() {
        let dir = tmp.path().join(format!("g{k}"));
        let ((), d) = timed(|| s.grid_write(&dir, spec, &data))?;
        writes.insert(s.name(), d.as_secs_f64());
        s.grid_open(&dir, spec)?;
    }
    let mut decoded = Vec::new();
    let slab = alternate(&mut sys, r_slab, 1, |s, _, _| {
        let before = s.chunks_decoded();
        let (v, d) = timed(|| s.grid_read(start, count))?;
        if let (Some(b), Some(a)) = (before, s.chunks_decoded()) {
            decoded.push(a - b);
        }
        check(s.name(), &v, &want)?;
        Ok(d)
    })?;
    let mut decoded_whole = Vec::new();
    let whole = alternate(&mut sys, r_whole, 1, |s, _, _| {
        let before = s.chunks_decoded();
        let (v, d) = timed(|| s.grid_read([0, 0], spec.shape))?;
        if let (Some(b), Some(a)) = (before, s.chunks_decoded()) {
            decoded_whole.push(a - b);
        }
        check(s.name(), &v, &data)?;
        Ok(d)
    })?;
    // Random 300 × 300 windows through each system's default handle
    // (caches on where it has them), each read timed on its own, the
    // systems interleaved window by window; no warm-up, so the first reads
    // of each chunk decode it and the tail shows it.
    let n_windows = if quick { 100 } else { 500 };
    let mut rng = crate::data::Rng(0x3030_0300);
    let windows: Vec<[u64; 2]> = (0..n_windows)
        .map(|_| {
            [
                rng.next_u64() % (spec.shape[0] - WINDOW + 1),
                rng.next_u64() % (spec.shape[1] - WINDOW + 1),
            ]
        })
        .collect();
    for (k, s) in sys.iter_mut().enumerate() {
        s.grid_open_default(&tmp.path().join(format!("g{k}")), spec)?;
    }
    let mut window_times = vec![Vec::with_capacity(windows.len()); sys.len()];
    for &at in &windows {
        let want = cut(&data, spec.shape[1], at, [WINDOW, WINDOW]);
        for (k, s) in sys.iter_mut().enumerate() {
            let (v, d) = timed(|| s.grid_read(at, [WINDOW, WINDOW]))?;
            check(s.name(), &v, &want)?;
            window_times[k].push(d);
        }
    }
    let window_dists: Vec<crate::tiles::Dist> = window_times
        .into_iter()
        .map(crate::tiles::Dist::of)
        .collect();
    drop(sys);
    let per_read = decoded.iter().copied().max().unwrap_or(0);
    let per_whole = decoded_whole.iter().copied().max().unwrap_or(0);
    let rows = vec![
        ("W5 hyperslab 100×100".to_owned(), slab),
        ("W5 whole 4096×4096 array".to_owned(), whole),
    ];
    peers_note();
    print_table("(f32 grid, 256×256 chunks)", &names, &rows);
    println!(
        "ATLAS chunks decoded: {per_read} per hyperslab read ({touched} touched), \
         {per_whole} per whole read (of {all_chunks}); hyperslab = {:.2}% of the whole-array time",
        atlas_of(&rows[0]).secs() / atlas_of(&rows[1]).secs() * 100.0
    );
    println!(
        "{n_windows} random {WINDOW}×{WINDOW} windows, default handles (caches on where a system has them), median / p99:"
    );
    let a = window_dists[0];
    for (name, d) in names.iter().zip(&window_dists) {
        println!(
            "  {name:<28} {} / {}   ×ATLAS {:.2} / {:.2}",
            fmt_dur(d.median),
            fmt_dur(d.p99),
            d.median.as_secs_f64() / a.median.as_secs_f64(),
            d.p99.as_secs_f64() / a.p99.as_secs_f64()
        );
    }
    let mut out = rows_json(&names, &rows);
    out["windows_300"] = names
        .iter()
        .zip(&window_dists)
        .map(|(n, d)| ((*n).to_owned(), d.json()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    out["chunks_touched"] = json!(touched);
    out["chunks_total"] = json!(all_chunks);
    out["atlas_chunks_decoded_hyperslab"] = json!(per_read);
    out["atlas_chunks_decoded_whole"] = json!(per_whole);
    out["write_s"] = json!(writes);
    out["hyperslab"] = json!({"start": start, "count": count});
    Ok(out)
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = match p.parse::<usize>() {
            Ok(i) if v.is_array() => v.get(i)?,
            _ => v.get(p)?,
        };
    }
    v.as_f64()
}

fn scale_row(r: &serde_json::Map<String, Value>, n: u64) -> Option<&Value> {
    r.get("scale")?
        .as_array()?
        .iter()
        .find(|row| row["datasets"].as_u64() == Some(n))
}

struct Line {
    spec: &'static str,
    measured: String,
    limit: String,
    fraction: String,
    target: String,
    met: Option<bool>,
}

fn secs(s: f64) -> String {
    fmt_dur(Duration::from_secs_f64(s))
}

/// Prints every SPEC §6 figure of this run beside its physical limit and its
/// target, and returns the same as JSON.
pub fn summary(r: &serde_json::Map<String, Value>) -> Value {
    let l: Option<Limits> = limits::measured();
    let mut lines = Vec::new();
    let frac = ratio;
    let row10k = scale_row(r, 10_000);
    let peers = r.get("peers").unwrap_or(&Value::Null);
    // W1.
    let raw_w1 = 10_000.0 * 3.0 * (LEVELS * 4) as f64;
    let w1 = num(peers, &["W1 ingest+flush 10k", "ATLAS", "median_s"]).or_else(|| {
        row10k.map(|v| v["ingest_s"].as_f64().unwrap_or(0.0) + v["flush_s"].as_f64().unwrap_or(0.0))
    });
    let w1_batched = num(peers, &["atlas_w1_batched_s"]);
    for (spec, t) in [
        ("W1 ingest 10k + flush", w1),
        ("W1 one batch 10k + flush", w1_batched),
    ] {
        let Some(t) = t else { continue };
        let enc = l.map(|l| l.lz4_small.encode.median);
        lines.push(Line {
            spec,
            measured: format!("{} = {}", secs(t), gbs(raw_w1 / t)),
            limit: enc.map_or("—".into(), |e| format!("lz4+shuf enc {}", gbs(e))),
            fraction: enc.map_or("—".into(), |e| frac(raw_w1 / t / e)),
            target: enc.map_or("≤ 2× codec".into(), |e| {
                format!("≤ 2× codec = {}", secs(2.0 * raw_w1 / e))
            }),
            met: enc.map(|e| t <= 2.0 * raw_w1 / e),
        });
    }
    // W2.
    for (n, target) in [(10_000u64, 5e-3), (1_000_000, 0.3)] {
        if let Some(t) = scale_row(r, n).and_then(|v| num(v, &["w2_reopen_read", "median_s"])) {
            let files = if n == 10_000 {
                num(peers, &["W2 reopen+read 10k", "files", "median_s"])
            } else {
                None
            };
            lines.push(Line {
                spec: if n == 10_000 {
                    "W2 reopen + read, 10k"
                } else {
                    "W2 reopen + read, 1M"
                },
                measured: secs(t),
                limit: files.map_or("—".into(), |f| format!("files {}", secs(f))),
                fraction: files.map_or("—".into(), |f| frac(f / t)),
                target: format!("≤ {}", secs(target)),
                met: Some(t <= target),
            });
        }
    }
    // W3.
    for n in [10_000u64, 100_000] {
        // The peers workload's median (after a warm-up) where it ran, else the
        // single scan of `scale`.
        let peers_rate = num(peers, &["W3 scan TEMP 10k", "ATLAS", "median_s"])
            .filter(|_| n == 10_000)
            .map(|t| 10_000.0 * (LEVELS * 4) as f64 / t / 1e6);
        let scale_rate = scale_row(r, n).and_then(|v| num(v, &["w3_scan_mb_s"]));
        if let Some(mbs) = peers_rate.or(scale_rate) {
            let rate = mbs * 1e6;
            let dec = l.map(|l| (l.lz4_small.decode.median, l.lz4_large.decode.median));
            lines.push(Line {
                spec: if n == 10_000 {
                    "W3 scan TEMP, 10k"
                } else {
                    "W3 scan TEMP, 100k"
                },
                measured: gbs(rate),
                limit: dec.map_or("—".into(), |(s, b)| {
                    format!("lz4+shuf dec {} (256K: {})", gbs(s), gbs(b))
                }),
                fraction: dec.map_or("—".into(), |(s, b)| {
                    format!("{} ({})", frac(rate / s), frac(rate / b))
                }),
                target: "≥ 0.5 of decode".into(),
                met: dec.map(|(s, _)| rate >= 0.5 * s),
            });
        }
    }
    // W3 on one core, per dataset and stacked (the peers workload's
    // loops in fresh processes): the goal is half the decode rate there.
    let dec = l.map(|l| l.lz4_small.decode.median);
    for (key, spec) in [
        ("atlas_w3_cores", "W3 scan TEMP 10k, one core"),
        ("atlas_w3_stacked_cores", "W3 stacked 10k, one core"),
    ] {
        if let Some(t) = num(peers, &[key, "one_core_s"]) {
            let rate = 10_000.0 * (LEVELS * 4) as f64 / t;
            lines.push(Line {
                spec,
                measured: gbs(rate),
                limit: dec.map_or("—".into(), |d| format!("lz4+shuf dec {}", gbs(d))),
                fraction: dec.map_or("—".into(), |d| frac(rate / d)),
                target: "≥ 0.5 of decode".into(),
                met: dec.map(|d| rate >= 0.5 * d),
            });
        }
    }
    // W4.
    if let Some(t) = row10k.and_then(|v| num(v, &["w4_read_dataset", "median_s"])) {
        let cold = peers["atlas_cold_read_decoded_chunks"].as_u64();
        let bytes = 3.0 * (LEVELS * 4) as f64;
        let mc = l.map(|l| l.memcpy.median);
        lines.push(Line {
            spec: "W4 read one dataset, warm",
            measured: format!(
                "{}{}",
                secs(t),
                cold.map_or(String::new(), |c| format!(", cold decodes {c}"))
            ),
            limit: mc.map_or("—".into(), |m| {
                format!("memcpy 600 B {}", secs(bytes / m))
            }),
            fraction: mc.map_or("—".into(), |m| frac(bytes / m / t)),
            target: "≤ 1 ms, own chunks only".into(),
            met: Some(t <= 1e-3 && cold.is_none_or(|c| c == 3)),
        });
    }
    // W5.
    if let Some(h) = r.get("hyperslab") {
        let t = num(h, &["W5 hyperslab 100×100", "ATLAS", "median_s"]).unwrap_or(0.0);
        let d = h["atlas_chunks_decoded_hyperslab"].as_u64().unwrap_or(0);
        let touched = h["chunks_touched"].as_u64().unwrap_or(0);
        let bytes = (touched * 256 * 256 * 4) as f64;
        let dec = l.map(|l| l.lz4_large.decode.median);
        lines.push(Line {
            spec: "W5 hyperslab 100×100 of 4096²",
            measured: format!("{}, {d} chunks decoded", secs(t)),
            limit: dec.map_or("—".into(), |e| {
                format!("{touched} chunks at lz4 dec {}", secs(bytes / e))
            }),
            fraction: dec.map_or("—".into(), |e| frac(bytes / e / t)),
            target: format!("decode only the {touched} touched"),
            met: Some(d == touched),
        });
    }
    // W6.
    if let (Some(a), Some(b)) = (row10k, scale_row(r, 100_000)) {
        let per = |v: &Value| {
            let n = v["datasets"].as_f64().unwrap_or(1.0);
            v["w6_flush_1pct_s"].as_f64().unwrap_or(0.0) / (n / 100.0)
        };
        let (pa, pb) = (per(a), per(b));
        lines.push(Line {
            spec: "W6 flush 1%: per changed ds",
            measured: format!("{} @10k, {} @100k", secs(pa), secs(pb)),
            limit: "—".into(),
            fraction: "—".into(),
            target: "∝ change (100k/10k ≤ 2)".into(),
            met: Some(pb <= 2.0 * pa),
        });
        let fa = a["flush_per_dataset_us"].as_f64().unwrap_or(0.0);
        let fb = b["flush_per_dataset_us"].as_f64().unwrap_or(0.0);
        lines.push(Line {
            spec: "W6 full flush: per dataset",
            measured: format!("{fa:.1} µs @10k, {fb:.1} µs @100k"),
            limit: "—".into(),
            fraction: "—".into(),
            target: "linear (100k/10k ≤ 2)".into(),
            met: Some(fb <= 2.0 * fa),
        });
    }
    // W7.
    if let Some(row) = r
        .get("layers")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["layers"].as_u64() == Some(100)))
    {
        let ratio = row["ratio"].as_f64().unwrap_or(0.0);
        lines.push(Line {
            spec: "W7 read, 100 layers",
            measured: format!(
                "{} vs {} compacted",
                secs(row["read_one_s"].as_f64().unwrap_or(0.0)),
                secs(row["compacted_read_one_s"].as_f64().unwrap_or(0.0))
            ),
            limit: "compacted store".into(),
            fraction: frac(1.0 / ratio),
            target: "≤ 1.5× compacted".into(),
            met: Some(ratio <= 1.5),
        });
    }
    // W8.
    if let Some(c) = r.get("compact") {
        let stored = c["stored_bytes"].as_f64().unwrap_or(0.0);
        let s = c["seconds"].as_f64().unwrap_or(1.0);
        let growth = c["rss_peak_bytes"].as_f64().unwrap_or(0.0)
            - c["rss_before_bytes"].as_f64().unwrap_or(0.0);
        let pc = l.map(|l| l.page_cache.median);
        lines.push(Line {
            spec: "W8 compaction",
            measured: format!(
                "{} stored, RSS +{:.0} MB on {:.0} MB",
                gbs(stored / s),
                growth / 1e6,
                stored / 1e6
            ),
            limit: pc.map_or("—".into(), |p| format!("page-cache read {}", gbs(p))),
            fraction: pc.map_or("—".into(), |p| frac(stored / s / p)),
            target: "RSS growth ≤ 64 MB".into(),
            met: Some(growth <= 64e6),
        });
    }
    if lines.is_empty() {
        return Value::Null;
    }
    println!("\n== SPEC §6 summary (medians; fraction = measured rate / limit rate)");
    println!(
        "{:<30} {:<34} {:<34} {:>13} {:<26} met",
        "workload", "measured", "limit", "fraction", "target"
    );
    let mut out = Vec::new();
    for x in &lines {
        let met = match x.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "—",
        };
        println!(
            "{:<30} {:<34} {:<34} {:>13} {:<26} {met}",
            x.spec, x.measured, x.limit, x.fraction, x.target
        );
        out.push(
            json!({"workload": x.spec, "measured": x.measured, "limit": x.limit,
            "fraction": x.fraction, "target": x.target, "met": x.met}),
        );
    }
    if let Some(l) = l {
        println!(
            "limits: memcpy {}, page-cache read {}, lz4+shuffle enc/dec {} / {} (200 B chunks), {} / {} (256 KiB)",
            gbs(l.memcpy.median),
            gbs(l.page_cache.median),
            gbs(l.lz4_small.encode.median),
            gbs(l.lz4_small.decode.median),
            gbs(l.lz4_large.encode.median),
            gbs(l.lz4_large.decode.median),
        );
    }
    json!(out)
}
