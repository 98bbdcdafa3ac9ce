//! Figures that need a process of their own: the memory of opening a store
//! (the bench process itself has grown by then) and the `atlas` command line
//! end to end.
//!
//! `atlas-bench __child open STORE DATASET` is the child side of the first:
//! it opens the store, reads every array of one dataset, lists nothing else,
//! and prints its peak resident memory in bytes on stdout. `atlas-bench
//! __child query STORE QUERY` opens the store, runs the query once (cold),
//! then 20 times each through `query` and `query_ids` (warm), and prints
//! the timings as JSON: a query on a handle that has done nothing else.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use atlas::Atlas;

use crate::workloads::ARRAYS;

/// The hidden child entry point (`__child …`), run instead of the workloads.
pub fn main(args: &[String]) -> Result<()> {
    match args {
        [mode, store, dataset] if mode == "open" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let s = Atlas::open_path(Path::new(store)).await?;
                let ds = s.open_dataset(dataset).await?;
                for a in ARRAYS {
                    ensure!(
                        ds.read_array::<f32>(a, vec![], vec![]).await?.is_some(),
                        "{dataset} has no {a}"
                    );
                }
                Ok(())
            })?;
            println!("{}", crate::peak_rss_bytes());
            Ok(())
        }
        [mode, store, query] if mode == "query" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let q = atlas::query::Query::parse(query)?;
            let out = rt.block_on(async {
                let t = Instant::now();
                let s = Atlas::open_path(Path::new(store)).await?;
                let first = s.query(&q).await?;
                let cold = t.elapsed();
                let mut warm = Vec::new();
                let mut ids = Vec::new();
                // `ATLAS_BENCH_QUERY_RUNS=0` profiles the cold query alone.
                let runs = std::env::var("ATLAS_BENCH_QUERY_RUNS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(QUERY_RUNS);
                for _ in 0..runs {
                    let t = Instant::now();
                    ensure!(s.query(&q).await?.len() == first.len(), "answers differ");
                    warm.push(t.elapsed());
                    let t = Instant::now();
                    ensure!(
                        s.query_ids(&q).await?.len() == first.len() as u64,
                        "answers differ"
                    );
                    ids.push(t.elapsed());
                }
                let timing = |v: Vec<std::time::Duration>| {
                    (!v.is_empty()).then(|| crate::Timing::from_samples(v).json())
                };
                anyhow::Ok(serde_json::json!({
                    "matches": first.len(),
                    "cold_s": cold.as_secs_f64(),
                    "warm": timing(warm),
                    "warm_ids": timing(ids),
                }))
            })?;
            println!("{out}");
            Ok(())
        }
        [mode, work, dir, n, reps] if mode == "loop" => profile_loop(work, Path::new(dir), n, reps),
        _ => bail!(
            "usage: atlas-bench __child open STORE DATASET | query STORE QUERY \
             | loop w1|w1batch|w2|w3|w6|w3blocking|w3stacked|w3first|w10|w4|w5|w5win|tiles|tiles8|tileswarm|tilesscan|tilesupdate DIR DATASETS REPS"
        ),
    }
}

/// `__child loop w1|w1batch|w2|w3|w6|w3blocking|w3stacked|w3first|w10|w4|w5|w5win|tiles|tiles8|tileswarm|tilesscan|tilesupdate DIR DATASETS REPS`: one workload repeated, for a
/// profiler (`perf record -- atlas-bench __child loop w3 …`) to see nothing
/// else. `w1` ingests and flushes DATASETS profiles (their cells made
/// before the clock) into a fresh store under DIR, REPS times (`w1batch`: through one `create_datasets` batch, built
/// before the clock; with `ATLAS_BENCH_PHASES` set, each repetition also
/// prints its creation and flush times and resident memory); `w3` builds
/// that store once (untimed) and scans `TEMP` across it REPS times through
/// one open handle (`w3blocking`: through `read_array_across_blocking`;
/// `w3stacked`: into one array, through
/// `read_array_across_stacked_blocking`); `w10` opens DIR, a store (an
/// `atlas import` of the Argo profiles: W10), and reads `TEMP` across every
/// dataset it lists, both timed, REPS times (DATASETS is ignored; the
/// listing is untimed); `w3first` times the first
/// scan on a freshly opened handle of that store (the open untimed), REPS
/// times; `w2` opens that store from
/// nothing and reads `TEMP` of one dataset, REPS times (or, when DIR is a
/// store, that store and the dataset `ATLAS_BENCH_W2_DATASET`); `w4` reads
/// every array of one dataset of that store through a warm handle, 1,000
/// times per repetition (the time printed is per read of the dataset); `w5`
/// reads the `hyperslab` workload's 100 × 100 box of its grid (built once
/// under DIR/w5) 100 times per repetition, without caches (the time printed
/// is per read; with `ATLAS_BENCH_W5_GAP_MS` set, each read follows a pause
/// of that many milliseconds); `w5win` reads that grid's 100 random 300 × 300 windows of
/// the `hyperslab` workload through a fresh default (cached) handle each
/// repetition, or one handle with `ATLAS_BENCH_W5WIN_WARM` set (per read); `tiles` and `tiles8` read every tile of the `tiles`
/// workload's store (built once under DIR/tiles) on a fresh handle, one at a
/// time or with 8 in flight; `tileswarm` reads 1,000 random tiles per
/// repetition on one warm handle (the time printed is per read);
/// `tilesscan` opens that store and reads every tile in one cross-dataset
/// read, both timed; `tilesupdate` rewrites and flushes 1% of the tiles of
/// a store of its own (DIR/tiles-update, rebuilt each run) per repetition
/// (with `ATLAS_BENCH_PHASES` set, each repetition also prints its writes'
/// and its flush's times). Prints each repetition's time and the median.
fn profile_loop(work: &str, dir: &Path, n: &str, reps: &str) -> Result<()> {
    let n: u64 = n.parse().context("DATASETS")?;
    let reps: usize = reps.parse().context("REPS")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut times = Vec::with_capacity(reps);
    match work {
        "w1" | "w1batch" => {
            for r in 0..reps {
                let path = dir.join(format!("w1-{r}"));
                // The batch is the input (built before the clock, as a
                // decoded file is an import's); its build is printed apart.
                if work == "w1batch" {
                    let t = Instant::now();
                    let batch = crate::workloads::profile_batch(n)?;
                    eprintln!("rep {r}: batch built in {}", crate::fmt_dur(t.elapsed()));
                    let t = Instant::now();
                    drop(rt.block_on(crate::workloads::ingest_batched(&path, &batch))?);
                    times.push(t.elapsed());
                } else {
                    let data = crate::workloads::profiles(n);
                    let t = Instant::now();
                    drop(rt.block_on(crate::workloads::ingest_with(&path, &data))?);
                    times.push(t.elapsed());
                }
                std::fs::remove_dir_all(&path)?;
            }
        }
        "w3" | "w3blocking" | "w3stacked" => {
            // `w3blocking`: through the blocking form (this thread reads a
            // part of each batch itself); `w3stacked`: the blocking form
            // of the stacked read.
            let names: Vec<String> = (0..n).map(crate::peers::ds_name).collect();
            let store = rt.block_on(crate::workloads::loop_store(dir, n))?;
            let form = match work {
                "w3" => Form::Async,
                "w3blocking" => Form::Blocking,
                _ => Form::Stacked,
            };
            for _ in 0..reps {
                let t = Instant::now();
                let cells = scan_cells(&rt, &store, "TEMP", &names, form)?;
                times.push(t.elapsed());
                ensure!(cells == names.len() * crate::workloads::LEVELS, "cells");
            }
        }
        "tiles" | "tiles8" | "tileswarm" | "tilesscan" | "tilesupdate" => {
            let _guard = rt.enter();
            let how = match work {
                "tiles" => crate::tiles::LoopReads::Fresh,
                "tiles8" => crate::tiles::LoopReads::InFlight,
                "tilesscan" => crate::tiles::LoopReads::Scan,
                "tilesupdate" => crate::tiles::LoopReads::Update,
                _ => crate::tiles::LoopReads::Warm,
            };
            times = crate::tiles::profile_loop(dir, n, reps, how)?;
        }
        "w6" => {
            // W6: a fresh store of DATASETS profiles (untimed), then per
            // repetition TEMP of 1% of them rewritten (another 1% each
            // time) and flushed, through one writer handle.
            let path = dir.join("w6");
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
            drop(rt.block_on(crate::workloads::ingest(&path, n))?);
            let store = rt.block_on(Atlas::open_path(&path))?;
            for r in 0..reps {
                let v = r as u64 + 1;
                let t = Instant::now();
                rt.block_on(async {
                    for i in (v % 100..n).step_by(100) {
                        let ds = store.open_dataset(&crate::peers::ds_name(i)).await?;
                        let cells = crate::data::profile(i * 3, v, crate::workloads::LEVELS);
                        ds.write_array("TEMP", vec![0], crate::workloads::arr(cells).view())
                            .await?;
                    }
                    store.flush().await
                })?;
                times.push(t.elapsed());
            }
        }
        "w3first" => {
            // The first scan on a fresh handle (the open untimed): what
            // `scale` measures as W3.
            let names: Vec<String> = (0..n).map(crate::peers::ds_name).collect();
            drop(rt.block_on(crate::workloads::loop_store(dir, n))?);
            for _ in 0..reps {
                let store = rt.block_on(Atlas::open_path(&crate::workloads::loop_path(dir)))?;
                let t = Instant::now();
                let cells = scan_cells(&rt, &store, "TEMP", &names, Form::Async)?;
                times.push(t.elapsed());
                ensure!(cells == names.len() * crate::workloads::LEVELS, "cells");
            }
        }
        "w10" => {
            let names = rt.block_on(Atlas::open_path(dir))?.list_datasets()?;
            ensure!(!names.is_empty(), "{} holds no dataset", dir.display());
            for _ in 0..reps {
                let t = Instant::now();
                let parts = rt.block_on(async {
                    let store = Atlas::open_path(dir).await?;
                    store
                        .read_array_across::<f32>("TEMP", &names, vec![], vec![])
                        .await
                })?;
                times.push(t.elapsed());
                ensure!(parts.iter().all(Option::is_some), "a dataset lacks TEMP");
            }
        }
        "w2" => {
            // DIR itself when it is a store (with `ATLAS_BENCH_W2_DATASET`
            // naming the dataset, e.g. in the query workload's 1M store),
            // whose `TEMP` may have any length.
            let (path, probe, cells_want) = if dir.join("atlas.json").exists() {
                let probe = std::env::var("ATLAS_BENCH_W2_DATASET")
                    .context("ATLAS_BENCH_W2_DATASET names the dataset to read")?;
                (dir.to_owned(), probe, None)
            } else {
                let probe = crate::peers::ds_name(n / 2);
                (
                    crate::workloads::loop_path(dir),
                    probe,
                    Some(crate::workloads::LEVELS),
                )
            };
            if !path.exists() {
                rt.block_on(crate::workloads::ingest(&path, n))?;
            }
            // `ATLAS_BENCH_W2_PAUSE_MS`: idle time before each repetition
            // (the peers workload runs other systems between ATLAS's runs).
            let pause = std::env::var("ATLAS_BENCH_W2_PAUSE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis);
            if std::env::var_os("ATLAS_BENCH_W2_SCAN_FIRST").is_some() {
                // As the peers workload does before W2: every array of every
                // dataset read through one handle, then the handle dropped.
                let names: Vec<String> = (0..n).map(crate::peers::ds_name).collect();
                let store = rt.block_on(Atlas::open_path(&path))?;
                for a in crate::workloads::ARRAYS {
                    scan_cells(&rt, &store, a, &names, Form::Async)?;
                }
            }
            for _ in 0..reps {
                if let Some(p) = pause {
                    std::thread::sleep(p);
                }
                let t = Instant::now();
                let a = rt.block_on(crate::workloads::open_read_temp(&path, &probe))?;
                times.push(t.elapsed());
                let cells = a.with_context(|| format!("{probe} has no TEMP"))?.len();
                ensure!(cells_want.is_none_or(|w| w == cells), "cells");
            }
        }
        "w4" => {
            // Each repetition: 1,000 reads of every array of one dataset
            // through one warm handle; the time printed is per read of the
            // dataset (as the peers workload's W4).
            let store = rt.block_on(crate::workloads::loop_store(dir, n))?;
            let ds = rt.block_on(store.open_dataset(&crate::peers::ds_name(n / 2)))?;
            for _ in 0..reps {
                let t = Instant::now();
                rt.block_on(async {
                    for _ in 0..1000 {
                        for a in crate::workloads::ARRAYS {
                            let got = ds.read_array::<f32>(a, vec![], vec![]).await?;
                            ensure!(
                                got.is_some_and(|g| g.len() == crate::workloads::LEVELS),
                                "cells"
                            );
                        }
                    }
                    anyhow::Ok(())
                })?;
                times.push(t.elapsed() / 1000);
            }
        }
        "w5" => {
            // The W5 grid (4096 × 4096 `f32`, 256 × 256 chunks) written
            // once under DIR/w5 (DATASETS is ignored), then the 100 × 100
            // hyperslab of the `hyperslab` workload read 100 times per
            // repetition through a handle without caches, as there.
            let path = dir.join("w5");
            if !path.join("atlas.json").exists() {
                let data = crate::data::grid(7, 4096, 4096);
                rt.block_on(async {
                    let s = Atlas::create_path(&path, atlas::StoreConfig::default()).await?;
                    let ds = s.create_dataset("grid").await?;
                    ds.define_array::<f32>(
                        "T",
                        vec!["lat".into(), "lon".into()],
                        vec![4096, 4096],
                        Some(vec![256, 256]),
                        None,
                    )
                    .await?;
                    let v = ndarray::ArrayViewD::from_shape(ndarray::IxDyn(&[4096, 4096]), &data)?;
                    ds.write_array("T", vec![0, 0], v).await?;
                    s.flush().await?;
                    anyhow::Ok(())
                })?;
            }
            let store = rt.block_on(crate::workloads::open_uncached(&path))?;
            let ds = rt.block_on(store.open_dataset("grid"))?;
            // A pause before each read (not timed): the threads a read
            // wakes have gone to sleep, as between a user's reads.
            let gap = std::env::var("ATLAS_BENCH_W5_GAP_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis);
            for _ in 0..reps {
                let mut tot = std::time::Duration::ZERO;
                for _ in 0..100 {
                    if let Some(gap) = gap {
                        std::thread::sleep(gap);
                    }
                    let t = Instant::now();
                    let got =
                        rt.block_on(ds.read_array::<f32>("T", vec![1000, 2000], vec![100, 100]))?;
                    tot += t.elapsed();
                    ensure!(got.is_some_and(|g| g.len() == 10_000), "cells");
                }
                times.push(tot / 100);
            }
        }
        "w5win" => {
            // The W5 grid as above (written by a `w5` loop first), read as
            // the `hyperslab` workload's random 300 × 300 windows through a
            // default handle (caches on), the same windows every repetition:
            // a fresh handle each time (as in the workload: a chunk's first
            // read decodes it), or one handle with ATLAS_BENCH_W5WIN_WARM set.
            let path = dir.join("w5");
            ensure!(path.join("atlas.json").exists(), "run the w5 loop first");
            let mut rng = crate::data::Rng(0x3030_0300);
            let windows: Vec<[u64; 2]> = (0..100)
                // The workload's draws: 4096 − 300 + 1 corners per axis.
                .map(|_| [rng.next_u64() % 3797, rng.next_u64() % 3797])
                .collect();
            let warm = std::env::var_os("ATLAS_BENCH_W5WIN_WARM").is_some();
            let mut store = rt.block_on(Atlas::open_path(&path))?;
            for _ in 0..reps {
                if !warm {
                    store = rt.block_on(Atlas::open_path(&path))?;
                }
                let ds = rt.block_on(store.open_dataset("grid"))?;
                let t = Instant::now();
                for &at in &windows {
                    let got =
                        rt.block_on(ds.read_array::<f32>("T", at.to_vec(), vec![300, 300]))?;
                    ensure!(got.is_some_and(|g| g.len() == 90_000), "cells");
                }
                times.push(t.elapsed() / 100);
            }
        }
        _ => bail!("loop: w1, w2, w3, w3blocking, w3first, w4, w5 or w5win, not {work:?}"),
    }
    for (r, t) in times.iter().enumerate() {
        eprintln!("rep {r}: {:.3} ms", t.as_secs_f64() * 1e3);
    }
    let med = crate::Timing::from_samples(times);
    println!("{}", med.json());
    Ok(())
}

/// Warm runs of each query call in `__child query`.
const QUERY_RUNS: usize = 20;

/// A query in a fresh process: open + first query (cold), then warm
/// `query` and `query_ids` timings, as JSON (see `main`).
pub fn query(store: &Path, query: &str) -> Result<serde_json::Value> {
    let out = run_child(None, &["query".as_ref(), store.as_os_str(), query.as_ref()])?;
    Ok(serde_json::from_slice(&out)?)
}

/// `exe`, pinned to the one core `cpu` names (`taskset -c CPU EXE`), or
/// free to use every core (`None`).
fn command(exe: &Path, cpu: Option<&str>) -> Command {
    match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.arg("-c").arg(c).arg(exe);
            t
        }
        None => Command::new(exe),
    }
}

/// Runs `atlas-bench __child ARGS` (pinned to `cpu`, see [`command`]) and
/// returns its standard output.
fn run_child(cpu: Option<&str>, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let out = command(&std::env::current_exe()?, cpu)
        .arg("__child")
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "atlas-bench __child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// The first CPU this process may run on (from `/proc/self/status`), for
/// pinning a child to one core with `taskset`; `None` when there is no
/// second core to compare with, or no `taskset` (util-linux).
pub fn one_core() -> Option<String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if cores < 2 {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let first: String = list.chars().take_while(char::is_ascii_digit).collect();
    let taskset = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!first.is_empty() && taskset).then_some(first)
}

/// The median seconds of `atlas-bench __child loop WORK DIR N REPS` in a
/// fresh process, pinned to the one core `cpu` names (`taskset -c`) or free
/// to use every core (`None`).
pub fn loop_median(work: &str, dir: &Path, n: u64, reps: usize, cpu: Option<&str>) -> Result<f64> {
    let (n, reps) = (n.to_string(), reps.to_string());
    let out = run_child(
        cpu,
        &[
            "loop".as_ref(),
            work.as_ref(),
            dir.as_os_str(),
            n.as_ref(),
            reps.as_ref(),
        ],
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out)?;
    v["median_s"].as_f64().context("the loop printed no median")
}

/// Peak RSS of a fresh process that opens `store` and reads `dataset`.
pub fn open_rss(store: &Path, dataset: &str) -> Result<u64> {
    let out = run_child(
        None,
        &["open".as_ref(), store.as_os_str(), dataset.as_ref()],
    )?;
    String::from_utf8_lossy(&out)
        .trim()
        .parse()
        .context("child open printed no RSS")
}

/// The `atlas` binary built beside this one (`cargo build --release -p
/// atlas-cli`; `cargo xtask bench` builds it), if there is one.
pub fn cli() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?.with_file_name("atlas");
    exe.exists().then_some(exe)
}

/// Runs `atlas ARGS` (stdout discarded) and returns its wall time (to its
/// exit, waited for directly) and its peak resident memory, read from
/// `/proc/PID/status` every 5 ms by a second thread while it runs (a lower
/// bound for a process of a few milliseconds; 0 where `/proc` is missing).
/// Pinned to `cpu` (see [`command`]) when given. Blocks the calling thread:
/// call it from `block_in_place`.
pub fn run_cli(
    exe: &Path,
    cpu: Option<&str>,
    args: &[&std::ffi::OsStr],
) -> Result<(Duration, u64)> {
    // stderr into a file, not a pipe nobody drains while it runs.
    let mut err_file = tempfile::tempfile()?;
    let t = Instant::now();
    let mut child = command(exe, cpu)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_file.try_clone()?))
        .spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let done = std::sync::atomic::AtomicBool::new(false);
    let (status, elapsed, peak) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmHWM:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                }) {
                    peak = peak.max(kb * 1024);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let status = child.wait();
        let elapsed = t.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (status, elapsed, sampler.join().expect("sampler thread"))
    });
    let status = status?;
    if !status.success() {
        let mut err = String::new();
        std::io::Seek::rewind(&mut err_file)?;
        std::io::Read::read_to_string(&mut err_file, &mut err)?;
        bail!("atlas {args:?} failed ({status}): {err}");
    }
    Ok((elapsed, peak))
}

/// Which form of the read across datasets a scan calls.
#[derive(Clone, Copy)]
enum Form {
    /// `read_array_across`, from a runtime.
    Async,
    /// `read_array_across_blocking`.
    Blocking,
    /// `read_array_across_stacked_blocking`: one array of every dataset's.
    Stacked,
}

/// Reads `array` of every dataset in `names` through `store`, in batches of
/// 4,096, through the read `form`; the cells read.
fn scan_cells(
    rt: &tokio::runtime::Runtime,
    store: &Atlas,
    array: &str,
    names: &[String],
    form: Form,
) -> Result<usize> {
    let mut cells = 0;
    for batch in names.chunks(4096) {
        let parts = match form {
            Form::Blocking => store.read_array_across_blocking::<f32>(array, batch, &[], &[])?,
            Form::Async => {
                rt.block_on(store.read_array_across::<f32>(array, batch, vec![], vec![]))?
            }
            Form::Stacked => {
                let all =
                    store.read_array_across_stacked_blocking::<f32>(array, batch, &[], &[])?;
                ensure!(all.shape()[0] == batch.len(), "one row per dataset");
                cells += all.len();
                continue;
            }
        };
        for a in parts {
            cells += a.with_context(|| format!("missing {array}"))?.len();
        }
    }
    Ok(cells)
}
