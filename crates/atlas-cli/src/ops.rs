//! Commands that work on the whole store: `scan`, `compact`, `verify`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use atlas::{Atlas, ErrorKind};

use crate::cells::with_dtype;
use crate::show::open;
use crate::util;

/// Datasets read per cross-dataset call (bounds memory on huge stores).
const SCAN_BATCH: usize = 2048;

/// `atlas scan`.
pub async fn scan(store: &Path, array: &str, quiet: bool) -> Result<ExitCode> {
    let atlas = open(store).await?;
    let names = atlas.datasets_with_array(array)?;
    let first = names
        .first()
        .with_context(|| format!("no dataset has an array {array:?}"))?;
    let dtype = atlas
        .dataset_meta(first)?
        .context("dataset vanished")?
        .arrays[array]
        .schema
        .dtype;
    let pb = util::progress(names.len() as u64, "scan", quiet);
    let t0 = Instant::now();
    let (mut cells, mut raw_bytes) = (0u64, 0u64);
    with_dtype!(dtype, T => {
        for batch in names.chunks(SCAN_BATCH) {
            let parts = atlas.read_array_across::<T>(array, batch, vec![], vec![]).await?;
            for p in parts.iter().flatten() {
                cells += p.len() as u64;
                raw_bytes += p.len() as u64 * dtype.size_bytes().unwrap_or(1) as u64;
            }
            pb.inc(batch.len() as u64);
        }
    });
    let dt = t0.elapsed();
    pb.finish_and_clear();
    say!(
        "scanned {array} across {} datasets: {cells} cells, {} in {} ({}, {:.0} datasets/s)",
        names.len(),
        util::bytes(raw_bytes),
        util::duration(dt),
        util::rate(raw_bytes, dt),
        names.len() as f64 / dt.as_secs_f64().max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn layer_count(atlas: &Atlas) -> usize {
    atlas
        .list_arrays()
        .iter()
        .map(|a| atlas.array_layers(a).len())
        .sum()
}

/// `atlas compact`.
pub async fn compact(store: &Path, quiet: bool) -> Result<ExitCode> {
    let atlas = open(store).await?;
    let before_layers = layer_count(&atlas);
    let before = util::disk_usage(store);
    let pb = util::progress(1, "compact", quiet);
    let t0 = Instant::now();
    atlas.compact().await.context("compaction failed")?;
    let dt = t0.elapsed();
    pb.finish_and_clear();
    let after = util::disk_usage(store);
    say!(
        "compacted {}: {before_layers} layers -> {}, {} -> {} on disk, in {}",
        store.display(),
        layer_count(&atlas),
        util::bytes(before),
        util::bytes(after),
        util::duration(dt)
    );
    Ok(ExitCode::SUCCESS)
}

/// `atlas verify`: exit 1 when anything is damaged, 2 when the check could
/// not run to the end (out of descriptors, memory, an I/O failure): running
/// out of a resource is never reported as damage.
pub async fn verify(store: &Path, quiet: bool) -> Result<ExitCode> {
    let atlas = match Atlas::open(&crate::util::location(store)).await {
        Ok(a) => a,
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported) => {
            say!("DAMAGED {}: {e}", store.display());
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => {
            say!("NOT CHECKED {}: {e} ({})", store.display(), e.kind());
            return Ok(ExitCode::from(2));
        }
    };
    let pb = util::progress(atlas.list_arrays().len() as u64, "verify", quiet);
    let t0 = Instant::now();
    let report = tokio::task::spawn_blocking({
        let atlas = atlas.clone();
        let pb = pb.clone();
        move || atlas::verify::verify(&atlas, |done, _| pb.set_position(done))
    })
    .await?;
    pb.finish_and_clear();
    if report.problems.is_empty() {
        say!(
            "ok: {} datasets, {} array files, {} layers, {} chunks checked in {}",
            atlas.list_datasets()?.len(),
            report.n_arrays,
            report.n_layers,
            report.n_chunks,
            util::duration(t0.elapsed())
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let damaged = report.is_damaged();
        say!(
            "{} {}: {} problem(s)",
            if damaged { "DAMAGED" } else { "NOT CHECKED" },
            store.display(),
            report.problems.len()
        );
        for p in &report.problems {
            say!("  {}: {} ({})", p.path.display(), p.message, p.kind);
        }
        Ok(if damaged {
            ExitCode::FAILURE
        } else {
            ExitCode::from(2)
        })
    }
}
