//! W9 and W10 on real data: the 3,000 Argo profiles of
//! `../shared/data/argo_core_profiles_DR.tar.zst` (unpacked once into
//! `target/realdata/argo`).
//!
//! - W9: import every profile into a new store (decode in parallel, write,
//!   flush): time and bytes stored against the files' total, beside the time
//!   to decode alone (the part no store can avoid).
//! - W10: read `TEMP` of every profile: one cross-dataset read from the store
//!   against opening the 3,000 `.nc` files and reading `TEMP` from each
//!   (header parse plus the variable's bytes, with this crate's own reader).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use atlas::{Atlas, StoreConfig};
use atlas_netcdf::{BulkOptions, ClassicReader, NcValues};
use serde_json::{json, Value};

use crate::{fmt_dur, Timing};

/// The unpacked profiles, or `None` with a loud message.
fn argo() -> Result<Option<(PathBuf, Vec<PathBuf>)>> {
    let Some(dir) = atlas_netcdf::realdata::argo_dir()? else {
        eprintln!(
            "!!! the Argo archive ../shared/data/{} is absent: W9/W10 skipped",
            atlas_netcdf::realdata::ARGO_ARCHIVE
        );
        return Ok(None);
    };
    let files = atlas_netcdf::realdata::nc_files(&dir)?;
    ensure!(
        files.len() == atlas_netcdf::realdata::ARGO_FILES,
        "expected {} profiles in {}, found {}",
        atlas_netcdf::realdata::ARGO_FILES,
        dir.display(),
        files.len()
    );
    Ok(Some((dir, files)))
}

pub(crate) fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => du(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

async fn import_all(dir: &Path, store_path: &Path) -> Result<atlas_netcdf::BulkReport> {
    let store = Atlas::create_path(store_path, StoreConfig::default()).await?;
    let report = atlas_netcdf::import_paths(
        &store,
        &[dir.to_owned()],
        &BulkOptions::default(),
        |_, _| {},
    )
    .await?;
    ensure!(
        report.failed == 0 && report.imported == atlas_netcdf::realdata::ARGO_FILES,
        "import: {} imported, {} failed",
        report.imported,
        report.failed
    );
    Ok(report)
}

/// Decoding alone, on this thread: every file read, parsed and planned as
/// an import would (every variable). The time, and the decoded values'
/// bytes.
pub(crate) fn decode_only(files: &[PathBuf]) -> Result<(std::time::Duration, u64)> {
    let t = Instant::now();
    let mut bytes = 0u64;
    for f in files {
        let nc = atlas_netcdf::read_file(f)?;
        let plan = atlas_netcdf::plan(&nc, "x", &atlas_netcdf::ImportOptions::default(), f)?;
        bytes += plan.data_bytes();
    }
    Ok((t.elapsed(), bytes))
}

/// W9: import the 3,000 profiles.
pub async fn w9_import(quick: bool) -> Result<Value> {
    let Some((dir, files)) = argo()? else {
        return Ok(json!({"skipped": "argo archive absent"}));
    };
    let bytes_in: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    // Decoding alone (read, parse, map; one thread): the floor of any import.
    // The files are read once first, untimed: the imports below find them
    // in the page cache, and a cold first read here (a whole `--quick` run
    // evicts them) made the floor 0.6 s longer than the imports' own.
    for f in &files {
        std::hint::black_box(std::fs::read(f)?);
    }
    // The floor and the import are each the median of `runs` runs, the
    // two alternating: one import's time varied by up to 30% between whole
    // `--quick` runs on the 2-core VM (docs/BENCHMARKS.md, twenty-fifth
    // session), more than the changes the ratio was meant to show.
    let runs = if quick { 3 } else { 5 };
    let mut decode_times = Vec::with_capacity(runs);
    let mut cells = 0u64;
    let mut times = Vec::new();
    let mut stored = 0;
    let mut registry = 0;
    // Each run's store is kept until the last run ends, so that deleting
    // one (about 480 files) does not come just before the next import: in
    // a profile of this workload with the deletions in between, ext4's
    // search past recently deleted inodes (`recently_deleted`,
    // `find_inode_bit`, `find_get_block_common`) was 12% of the samples
    // (docs/BENCHMARKS.md, twenty-fifth session).
    let mut kept = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (t_decode, c) = decode_only(&files)?;
        decode_times.push(t_decode);
        cells = c;
        let tmp = tempfile::tempdir()?;
        let store_path = tmp.path().join("store");
        let t = Instant::now();
        import_all(&dir, &store_path).await?;
        times.push(t.elapsed());
        stored = du(&store_path);
        // The registry: the runs the manifest names, and the manifest (not
        // runs retired by merges and kept for the grace period, nor the
        // array directories `atlas.a<N>`).
        registry = Atlas::open_path(&store_path).await?.registry_bytes()
            + std::fs::metadata(store_path.join("atlas.json"))?.len();
        kept.push(tmp);
    }
    drop(kept);
    // `atlas import` end to end, for its peak memory (the CLI beside this
    // binary; the timed runs above are in this process, whose memory has
    // grown with the earlier workloads).
    // And pinned to one core (`taskset`), for the scaling from one core to
    // all of them.
    let (cli_import, cli_one_core) = match crate::child::cli() {
        Some(exe) => {
            let run = |cpu: Option<&str>| -> Result<(std::time::Duration, u64)> {
                let tmp = tempfile::tempdir()?;
                let store_path = tmp.path().join("store");
                let args = [
                    "-q".as_ref(),
                    "import".as_ref(),
                    store_path.as_os_str(),
                    dir.as_os_str(),
                ];
                tokio::task::block_in_place(|| crate::child::run_cli(&exe, cpu, &args))
            };
            let all_cores = run(None)?;
            let one = match crate::child::one_core() {
                Some(cpu) => Some(run(Some(&cpu))?.0),
                None => None,
            };
            (Some(all_cores), one)
        }
        None => (None, None),
    };
    times.sort();
    let median = times[times.len() / 2];
    decode_times.sort();
    let t_decode = decode_times[decode_times.len() / 2];
    let secs = median.as_secs_f64();
    println!(
        "{:>10} {:>10} {:>12} {:>12} {:>12} {:>10} {:>12}",
        "profiles", "import", "files/s", "in", "stored", "ratio", "decode only"
    );
    println!(
        "{:>10} {:>10} {:>12.0} {:>9.1} MB {:>9.1} MB {:>9.1}% {:>12}",
        files.len(),
        fmt_dur(median),
        files.len() as f64 / secs,
        mb(bytes_in),
        mb(stored),
        100.0 * stored as f64 / bytes_in as f64,
        fmt_dur(t_decode),
    );
    println!(
        "   import / decode only: {:.2}× (medians of {runs} runs each, alternating; decode only {}–{})",
        secs / t_decode.as_secs_f64(),
        fmt_dur(decode_times[0]),
        fmt_dur(decode_times[decode_times.len() - 1]),
    );
    println!(
        "   ({:.1} MB/s of files; registry (live runs + manifest) {:.2} MB of the stored bytes; {:.1} MB of decoded values)",
        mb(bytes_in) / secs,
        mb(registry),
        mb(cells)
    );
    match cli_import {
        Some((t, rss)) => {
            println!(
                "   `atlas import` of the same files: {} wall, peak RSS {:.0} MB (sampled every 5 ms)",
                fmt_dur(t),
                mb(rss)
            );
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            match cli_one_core {
                Some(one) => println!(
                    "   `atlas import` on one core (`taskset`): {} wall; on {cores} cores {:.2}× faster",
                    fmt_dur(one),
                    one.as_secs_f64() / t.as_secs_f64(),
                ),
                None => println!("   `atlas import` on one core: not measured (one core, or no `taskset`)"),
            }
        }
        None => println!(
            "   `atlas import`: no CLI beside this binary (cargo build --release -p atlas-cli)"
        ),
    }
    Ok(json!({
        "cli_import": cli_import.map(|(t, rss)| json!({"s": t.as_secs_f64(), "peak_rss_bytes": rss})),
        "cli_import_one_core_s": cli_one_core.map(|t| t.as_secs_f64()),
        "profiles": files.len(), "runs": runs,
        "import_s": {"median_s": secs, "min_s": times[0].as_secs_f64(), "max_s": times[times.len() - 1].as_secs_f64()},
        "files_per_s": files.len() as f64 / secs, "mb_per_s": mb(bytes_in) / secs,
        "bytes_in": bytes_in, "bytes_stored": stored, "bytes_registry": registry,
        "stored_ratio": stored as f64 / bytes_in as f64, "decoded_value_bytes": cells,
        "decode_only_s": t_decode.as_secs_f64(),
        "decode_only_min_s": decode_times[0].as_secs_f64(),
        "decode_only_max_s": decode_times[decode_times.len() - 1].as_secs_f64(),
        "import_over_decode": secs / t_decode.as_secs_f64(),
    }))
}

/// W10: read `TEMP` of every profile, store against files.
pub async fn w10_read_temp(quick: bool) -> Result<Value> {
    let Some((dir, files)) = argo()? else {
        return Ok(json!({"skipped": "argo archive absent"}));
    };
    let tmp = tempfile::tempdir()?;
    let store_path = tmp.path().join("store");
    import_all(&dir, &store_path).await?;
    let names: Vec<String> = files
        .iter()
        .map(|f| atlas_netcdf::default_dataset_name(f))
        .collect();

    // Every value checked once, outside the timings.
    let direct_read = |f: &Path| -> Result<Vec<f32>> {
        match ClassicReader::open(f)?.read_var("TEMP")? {
            Some(NcValues::Float(v)) => Ok(v),
            other => anyhow::bail!("{}: TEMP is {other:?}", f.display()),
        }
    };
    let store = Atlas::open_path(&store_path).await?;
    let all = store
        .read_array_across::<f32>("TEMP", &names, vec![], vec![])
        .await?;
    let mut cells = 0usize;
    for ((f, got), n) in files.iter().zip(&all).zip(&names) {
        let got = got.as_ref().with_context(|| format!("{n} has no TEMP"))?;
        let want = direct_read(f)?;
        ensure!(
            got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{n}: TEMP differs"
        );
        cells += want.len();
    }
    drop(store);
    let bytes = (cells * 4) as u64;

    let runs = if quick { 5 } else { 10 };
    let rt = tokio::runtime::Handle::current();
    // Open the store and read TEMP across every dataset (a fresh handle: no
    // decoded chunk cached, files in the page cache).
    let cold = Timing::measure(runs, true, || {
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let s = Atlas::open_path(&store_path).await?;
                let parts = s
                    .read_array_across::<f32>("TEMP", &names, vec![], vec![])
                    .await?;
                ensure!(parts.iter().all(Option::is_some), "missing TEMP");
                Ok(())
            })
        })
    })?;
    // The same read on an open handle.
    let s = Atlas::open_path(&store_path).await?;
    let warm = Timing::measure(runs, true, || {
        tokio::task::block_in_place(|| {
            rt.block_on(async {
                let parts = s
                    .read_array_across::<f32>("TEMP", &names, vec![], vec![])
                    .await?;
                ensure!(parts.len() == names.len(), "missing TEMP");
                Ok(())
            })
        })
    })?;
    // Opening every file and reading its TEMP.
    let files_t = Timing::measure(runs, true, || {
        let mut n = 0;
        for f in &files {
            n += direct_read(f)?.len();
        }
        ensure!(n == cells, "cell count");
        Ok(())
    })?;
    println!(
        "{:>28} {:>22} {:>12} {:>12}",
        "read TEMP of 3,000 profiles", "time (min–max)", "profiles/s", "MB/s"
    );
    for (what, t) in [
        ("store, open + read", &cold),
        ("store, open handle", &warm),
        ("3,000 .nc files", &files_t),
    ] {
        println!(
            "{what:>28} {:>22} {:>12.0} {:>12.1}",
            t.show(),
            files.len() as f64 / t.secs(),
            mb(bytes) / t.secs()
        );
    }
    println!(
        "   store is {:.1}× faster than the files (open + read), {:.1}× on an open handle",
        files_t.secs() / cold.secs(),
        files_t.secs() / warm.secs()
    );
    Ok(json!({
        "profiles": files.len(), "temp_cells": cells, "temp_bytes": bytes,
        "store_open_and_read": cold.json(), "store_open_handle": warm.json(), "nc_files": files_t.json(),
        "speedup_open_and_read": files_t.secs() / cold.secs(),
        "speedup_open_handle": files_t.secs() / warm.secs(),
    }))
}
