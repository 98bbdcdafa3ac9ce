//! `atlas import` and `atlas export`: netcdf in and out (crate `atlas-netcdf`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use atlas::{Atlas, StoreConfig};
use atlas_netcdf::bulk::collect_files;
use atlas_netcdf::{BulkOptions, ExportOptions, FileOutcome, ImportOptions, NcFormat};

use crate::util;

/// Options of `atlas import`.
#[derive(Debug)]
pub struct Import {
    /// Replace datasets that already exist.
    pub replace: bool,
    /// Dataset name (one file only).
    pub name: Option<String>,
    /// Prefix of every dataset name.
    pub prefix: String,
    /// Decoder threads (0 = automatic).
    pub jobs: usize,
    /// Also trim trailing spaces of `char` strings.
    pub trim_spaces: bool,
    /// Commit after this many bytes of input (0: once at the end).
    pub batch_bytes: u64,
}

/// Opens the store, creating it when `store` holds none yet.
async fn open_or_create(store: &Path) -> Result<(Atlas, bool)> {
    match Atlas::open(&crate::util::location(store)).await {
        Ok(a) => Ok((a, false)),
        Err(atlas::Error::StoreNotFound { .. }) => {
            let a = Atlas::create(&crate::util::location(store), StoreConfig::default())
                .await
                .with_context(|| format!("cannot create store {}", store.display()))?;
            Ok((a, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot open store {}", store.display())),
    }
}

/// The NetCDF-4 helper: `atlas-netcdf4` beside this executable.
const HELPER: &str = "atlas-netcdf4";

/// True when any of `files` starts like a NetCDF-4 (HDF5) file (8 bytes
/// read from each; unreadable files are left to the import to report).
fn any_netcdf4(files: &[PathBuf]) -> bool {
    use std::io::Read as _;
    files.iter().any(|f| {
        let mut head = [0u8; 8];
        std::fs::File::open(f)
            .and_then(|mut h| h.read_exact(&mut head))
            .is_ok_and(|()| atlas_netcdf::is_netcdf4(&head))
    })
}

/// Replaces this process by the NetCDF-4 helper with the same arguments,
/// when it is installed beside this executable. Returns only when it is
/// not (or cannot be run): the import then goes on with the classic
/// reader, and each NetCDF-4 file fails with a message naming the helper.
fn exec_helper() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let helper = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(HELPER),
        Err(e) => return e,
    };
    if !helper.is_file() {
        return std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} not found", helper.display()),
        );
    }
    std::process::Command::new(&helper)
        .args(std::env::args_os().skip(1))
        .exec()
}

/// `atlas import STORE PATH…`: exit 1 when any file failed (the others are
/// imported and committed all the same). `netcdf4`: the NetCDF-4 parser,
/// when this binary has one; without it, NetCDF-4 files among `paths` make
/// this process exec the helper `atlas-netcdf4` before anything is opened.
pub async fn import(
    store: &Path,
    paths: &[PathBuf],
    opts: Import,
    netcdf4: Option<atlas_netcdf::Reader>,
    quiet: bool,
) -> Result<ExitCode> {
    let files = collect_files(paths)?;
    if files.is_empty() {
        bail!(
            "no netcdf files found (directories are searched for .nc, .nc3, .nc4, .cdf, .netcdf)"
        );
    }
    let reader = if let Some(r) = netcdf4 {
        r
    } else {
        if atlas_netcdf::NETCDF4 && any_netcdf4(&files) {
            let e = exec_helper();
            eprintln!("warning: NetCDF-4 files are not importable without {HELPER} ({e})");
        }
        atlas_netcdf::read_bytes_classic
    };
    let (atlas, created) = open_or_create(store).await?;
    let before = util::disk_usage(store);
    let pb = util::progress(files.len() as u64, "import", quiet);
    let bulk = BulkOptions {
        import: ImportOptions {
            trim_spaces: opts.trim_spaces,
            ..ImportOptions::default()
        },
        replace: opts.replace,
        jobs: opts.jobs,
        prefix: opts.prefix,
        name: opts.name,
        flush: true,
        batch_bytes: opts.batch_bytes,
        reader,
    };
    let report = atlas_netcdf::import_paths(&atlas, &files, &bulk, |_, outcome| {
        if let FileOutcome::Failed(e) = outcome {
            pb.suspend(|| eprintln!("skipped: {e}"));
        }
        pb.inc(1);
    })
    .await?;
    pb.finish_and_clear();
    let after = util::disk_usage(store);
    let secs = report.elapsed;
    say!(
        "imported {} file{} ({}) into {}{}{} in {} ({})",
        report.imported,
        if report.imported == 1 { "" } else { "s" },
        util::bytes(report.bytes_in),
        store.display(),
        if created { " (new store)" } else { "" },
        if report.commits > 1 {
            format!(" in {} commits", report.commits)
        } else {
            String::new()
        },
        util::duration(secs),
        util::rate(report.bytes_in, secs),
    );
    let grown = after.saturating_sub(before);
    if report.imported > 0 {
        say!(
            "stored {} for {} of netcdf ({:.1}%); the store now holds {} in {} datasets",
            util::bytes(grown),
            util::bytes(report.bytes_in),
            100.0 * grown as f64 / report.bytes_in.max(1) as f64,
            util::bytes(after),
            atlas.n_datasets()
        );
    }
    if report.skipped > 0 {
        say!(
            "skipped {} file{} whose dataset already exists (use --replace to overwrite)",
            report.skipped,
            if report.skipped == 1 { "" } else { "s" }
        );
    }
    if report.failed > 0 {
        say!(
            "failed {} file{}:",
            report.failed,
            if report.failed == 1 { "" } else { "s" }
        );
        for (_, e) in report.failures() {
            say!("  {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--format`.
pub fn parse_format(s: &str) -> Result<NcFormat, String> {
    match s {
        "classic" | "cdf1" => Ok(NcFormat::Classic),
        "cdf2" | "64bit_offset" | "64bit" => Ok(NcFormat::Offset64),
        "cdf5" | "64bit_data" => Ok(NcFormat::Cdf5),
        other => Err(format!("unknown format {other:?} (classic, cdf2 or cdf5)")),
    }
}

/// `atlas export STORE DATASET OUT.nc`.
pub async fn export(
    store: &Path,
    dataset: &str,
    out: &Path,
    format: Option<NcFormat>,
) -> Result<ExitCode> {
    let atlas = crate::show::open(store).await?;
    let s = atlas_netcdf::export_dataset(&atlas, dataset, out, ExportOptions { format })
        .await
        .with_context(|| format!("cannot export {dataset:?} to {}", out.display()))?;
    say!(
        "wrote {}: {} format, {} variables, {}",
        out.display(),
        s.format,
        s.variables,
        util::bytes(s.bytes)
    );
    Ok(ExitCode::SUCCESS)
}
