//! The `history` workload (issue 15): the cost of keeping history.
//!
//! A store of 1,000 profile datasets gets `G` commits (1,000 quick, 10,000
//! full), each rewriting one dataset's TEMP with the commit's number in its
//! first cell, with a retention policy that keeps every generation. Beside
//! it, the same commits on a store without history (the default policy).
//! Reported, each checked against what was written:
//! - a commit's cost with and without history, early and late in the run;
//! - `open` + read one array against `open_at` (a generation in the middle)
//!   + read the same array (target: ≤ 1.1×);
//! - `log(20)` on an open handle, and `atlas log -n 20` end to end when the
//!   `atlas` binary is built beside this one (target: ≤ 5 ms at 10,000);
//! - the manifest's size and the history copies' bytes;
//! - `gc` after shortening the retention by `E` generations, on copies of
//!   the store, for several `E` (target: time proportional to `E`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use atlas::{At, Atlas, StoreConfig};
use serde_json::{json, Value};

use crate::query::time;
use crate::workloads::arr;
use crate::Timing;

const DATASETS: u64 = 1_000;
const LEVELS: usize = 50;

fn name(i: u64) -> String {
    format!("p{i:05}")
}

/// TEMP of dataset `i` as written by commit `c` (0: the first flush).
fn temp(i: u64, c: u64) -> Vec<f32> {
    (0..LEVELS)
        .map(|k| {
            if k == 0 {
                c as f32
            } else {
                (i * 7 + k as u64) as f32 * 0.01
            }
        })
        .collect()
}

/// Creates the store, then makes `gens` commits; returns the time of each
/// and the generation each left (index 0: the first flush; a flush that
/// also merges an array's layers makes two commits).
async fn build(path: &Path, gens: u64, history: bool) -> Result<(Vec<Duration>, Vec<u64>)> {
    let store = Atlas::create_path(path, StoreConfig::default()).await?;
    if history {
        store.set_retention(gens + 1_000, 0).await?;
    }
    for i in 0..DATASETS {
        let ds = store.create_dataset(&name(i)).await?;
        ds.define_array::<f32>(
            "TEMP",
            vec!["N_LEVELS".into()],
            vec![LEVELS as u64],
            None,
            None,
        )
        .await?;
        ds.write_array("TEMP", vec![], arr(temp(i, 0)).view())
            .await?;
    }
    store.flush().await?;
    let mut times = Vec::with_capacity(gens as usize);
    let mut generations = vec![store.generation()];
    for c in 1..=gens {
        let ds = store.open_dataset(&name(c % DATASETS)).await?;
        ds.write_array("TEMP", vec![], arr(temp(c % DATASETS, c)).view())
            .await?;
        let t = Instant::now();
        store.flush().await?;
        times.push(t.elapsed());
        generations.push(store.generation());
    }
    Ok((times, generations))
}

/// Opens `at` (or the current generation) and reads the TEMP that commit
/// `c` wrote; checks its first cell.
async fn open_read(path: &Path, at: Option<u64>, c: u64) -> Result<()> {
    let store = match at {
        Some(g) => Atlas::open_path_at(path, At::Generation(g)).await?,
        None => Atlas::open_path(path).await?,
    };
    let ds = store.open_dataset(&name(c % DATASETS)).await?;
    let a = ds
        .read_array::<f32>("TEMP", vec![], vec![])
        .await?
        .context("TEMP missing")?;
    ensure!(
        a[[0]].to_bits() == (c as f32).to_bits(),
        "read {} where commit {c} wrote {c}",
        a[[0]]
    );
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<(u64, u64)> {
    let (mut n, mut bytes) = (0, 0);
    if dir.exists() {
        for e in std::fs::read_dir(dir)? {
            n += 1;
            bytes += e?.metadata()?.len();
        }
    }
    Ok((n, bytes))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// `atlas log STORE -n 20` end to end, with the `atlas` binary built beside
/// this one, and `atlas --version` (the process start alone) in alternation
/// with it; `None` when there is no binary.
fn cli_log(path: &Path, runs: usize) -> Result<Option<(Timing, Timing)>> {
    let exe = std::env::current_exe()?.with_file_name("atlas");
    if !exe.exists() {
        return Ok(None);
    }
    let run = || -> Result<Duration> {
        let t = Instant::now();
        let out = std::process::Command::new(&exe)
            .arg("log")
            .arg(path)
            .args(["-n", "20"])
            .output()?;
        let elapsed = t.elapsed();
        ensure!(out.status.success(), "atlas log failed: {out:?}");
        ensure!(
            String::from_utf8_lossy(&out.stdout).lines().count() >= 20,
            "atlas log printed fewer than 20 lines"
        );
        Ok(elapsed)
    };
    let start_only = || -> Result<Duration> {
        let t = Instant::now();
        let out = std::process::Command::new(&exe).arg("--version").output()?;
        let elapsed = t.elapsed();
        ensure!(out.status.success(), "atlas --version failed: {out:?}");
        Ok(elapsed)
    };
    run()?;
    let (mut logs, mut starts) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        logs.push(run()?);
        starts.push(start_only()?);
    }
    Ok(Some((
        Timing::from_samples(logs),
        Timing::from_samples(starts),
    )))
}

/// The `history` workload.
pub async fn workload(quick: bool) -> Result<Value> {
    let gens: u64 = if quick { 1_000 } else { 10_000 };
    let runs = 21;
    let dir = tempfile::tempdir()?;
    let with = dir.path().join("history");
    let without = dir.path().join("plain");
    let t = Instant::now();
    let (commits_h, at) = build(&with, gens, true).await?;
    eprintln!(
        "   {gens} commits with history in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (commits_p, _) = build(&without, gens, false).await?;
    let window = (gens as usize / 10).max(1);
    let early_h = median(&commits_h[..window]);
    let late_h = median(&commits_h[commits_h.len() - window..]);
    let early_p = median(&commits_p[..window]);
    let late_p = median(&commits_p[commits_p.len() - window..]);

    let current = Atlas::open_path(&with).await?.generation();
    ensure!(current == at[gens as usize], "generation {current}");
    let mid = gens / 2;
    let open = time(runs, || open_read(&with, None, gens)).await?;
    let open_at = time(runs, || open_read(&with, Some(at[mid as usize]), mid)).await?;
    let open_plain = time(runs, || open_read(&without, None, gens)).await?;
    let store = Atlas::open_path(&with).await?;
    let log = time(runs, || async {
        let l = store.log(20).await?;
        ensure!(l.len() == 20 && l[0].generation == current, "log is wrong");
        Ok(())
    })
    .await?;
    let open_log = time(runs, || async {
        let s = Atlas::open_path(&with).await?;
        ensure!(s.log(20).await?.len() == 20, "log is wrong");
        Ok(())
    })
    .await?;
    let cli = cli_log(&with, runs)?;
    let manifest = std::fs::metadata(with.join("atlas.json"))?.len();
    let manifest_plain = std::fs::metadata(without.join("atlas.json"))?.len();
    let (copies, copy_bytes) = dir_bytes(&with.join(atlas::HISTORY_DIR))?;
    // What a commit rewrites of the retired list (the side file the
    // manifest names) and what it only names (the sealed chunks).
    let manifest_json: Value = serde_json::from_slice(&std::fs::read(with.join("atlas.json"))?)?;
    let side_bytes = match manifest_json["retired_file"].as_str() {
        Some(f) => std::fs::metadata(with.join(atlas::HISTORY_DIR).join(f))?.len(),
        None => 0,
    };
    let (mut chunks, mut chunk_bytes) = (0u64, 0u64);
    for e in std::fs::read_dir(with.join(atlas::HISTORY_DIR))? {
        let e = e?;
        if e.file_name()
            .to_string_lossy()
            .starts_with("retired-chunk-")
        {
            chunks += 1;
            chunk_bytes += e.metadata()?.len();
        }
    }

    // GC: shorten the retention by `e` generations on a copy, then collect.
    let mut gc_rows = Vec::new();
    for e in [gens / 100, gens / 10, gens / 2] {
        let mut tries = Vec::new();
        for rep in 0..3 {
            let copy = dir.path().join(format!("gc-{e}-{rep}"));
            copy_dir(&with, &copy)?;
            // Opened for writing: the writer lock and its orphan sweep (a
            // cost of opening for writing, whatever gc does) come first.
            let (storage, root) = atlas::storage_for(&copy.to_string_lossy(), &[])?;
            let s = Atlas::open_with(
                storage,
                &root,
                atlas::OpenOptions {
                    write: true,
                    ..atlas::OpenOptions::default()
                },
            )
            .await?;
            // Every generation from the first flush on is retained; keep all
            // but the oldest `e` of them.
            let keep = current + 1 - at[0] - e;
            let t = Instant::now();
            s.set_retention(keep, 0).await?;
            let t_gc = Instant::now();
            let report = s.gc(false).await?;
            let took = t.elapsed();
            let gc_only = t_gc.elapsed();
            let k = gens as usize - 1;
            open_read(&copy, Some(at[k]), k as u64)
                .await
                .context("the newest history after gc")?;
            ensure!(
                Atlas::open_path_at(&copy, At::Generation(at[0] + e - 1))
                    .await
                    .is_err(),
                "generation {} should have expired",
                at[0] + e - 1
            );
            let (left, _) = dir_bytes(&copy.join(atlas::HISTORY_DIR))?;
            tries.push((took, gc_only, report.deleted_files.len(), left));
            std::fs::remove_dir_all(&copy)?;
        }
        // The median of three copies (each one run: GC changes the store).
        tries.sort_by_key(|t| t.0);
        let (took, gc_only, files, left) = tries[1];
        gc_rows.push((e, took, gc_only, files, left));
    }

    println!("history workload: {DATASETS} datasets, {gens} commits of one dataset each");
    println!(
        "commit (flush of one dataset), median: with history {} early / {} late; without {} early / {} late",
        crate::fmt_dur(early_h),
        crate::fmt_dur(late_h),
        crate::fmt_dur(early_p),
        crate::fmt_dur(late_p)
    );
    println!("{:<46} {:>26}", "", "time (min–max)");
    println!("{:<46} {:>26}", "open + read one array", open.show());
    println!(
        "{:<46} {:>26}  ({:.2}× open)",
        "open_at(generation in the middle) + read",
        open_at.show(),
        open_at.secs() / open.secs()
    );
    println!(
        "{:<46} {:>26}",
        "open + read, store without history",
        open_plain.show()
    );
    println!("{:<46} {:>26}", "log(20) on an open handle", log.show());
    println!("{:<46} {:>26}", "open + log(20)", open_log.show());
    match &cli {
        Some((t, start)) => {
            println!(
                "{:<46} {:>26}",
                "`atlas log STORE -n 20` end to end",
                t.show()
            );
            println!(
                "{:<46} {:>26}",
                "`atlas --version` (process start alone)",
                start.show()
            );
        }
        None => println!("`atlas log` end to end: skipped (no `atlas` binary beside this one)"),
    }
    println!(
        "manifest {manifest} B (without history {manifest_plain} B); {copies} history copies, {copy_bytes} B"
    );
    println!(
        "retired list: side file {side_bytes} B naming {chunks} sealed chunks ({chunk_bytes} B)"
    );
    for (e, took, gc_only, files, left) in &gc_rows {
        println!(
            "expiring {e:>5} generations: retention commit {:>10} + gc {:>10} = {:>10}, median of 3 ({files} files deleted by gc, {left} copies left)",
            crate::fmt_dur(took.saturating_sub(*gc_only)),
            crate::fmt_dur(*gc_only),
            crate::fmt_dur(*took)
        );
    }
    Ok(json!({
        "datasets": DATASETS,
        "generations": gens,
        "commit_history_early_s": early_h.as_secs_f64(),
        "commit_history_late_s": late_h.as_secs_f64(),
        "commit_plain_early_s": early_p.as_secs_f64(),
        "commit_plain_late_s": late_p.as_secs_f64(),
        "open_read": open.json(),
        "open_at_read": open_at.json(),
        "open_read_plain": open_plain.json(),
        "log20": log.json(),
        "open_log20": open_log.json(),
        "cli_log20": cli.as_ref().map(|(t, _)| t.json()),
        "cli_version": cli.as_ref().map(|(_, s)| s.json()),
        "manifest_bytes": manifest,
        "manifest_plain_bytes": manifest_plain,
        "history_copies": copies,
        "history_bytes": copy_bytes,
        "retired_side_file_bytes": side_bytes,
        "retired_chunks": chunks,
        "retired_chunk_bytes": chunk_bytes,
        "gc": gc_rows.iter().map(|(e, t, g, f, l)| json!({
            "expired": e, "time_s": t.as_secs_f64(), "gc_s": g.as_secs_f64(),
            "deleted_files": f, "copies_left": l
        })).collect::<Vec<_>>(),
    }))
}
