//! Locating the real-data corpora used by tests and benchmarks.
//!
//! The data is searched, in order, in the directory named by the environment
//! variable `ATLAS_REALDATA_DIR` when it is set, in `../shared/data` relative
//! to the workspace root (the workplace's shared folder), and in the
//! repository's `.ci/data`, which holds copies so CI tests real data wherever
//! its clone lives ([`data_dirs`]). Nothing else is searched.
//!
//! - The Argo archive `argo_core_profiles_DR.tar.zst`: [`argo_dir`] unpacks it
//!   once into `target/realdata/argo` (with `zstd -dc FILE | tar -x -C DEST`)
//!   and returns that directory; later calls find it there.
//! - The Iris and ESMValTool (CMIP6) sample files, NetCDF-4 mostly:
//!   [`samples_dir`] runs the download script `get-realdata.sh` found there
//!   (it fetches two hash-pinned wheels from PyPI) once into
//!   `target/realdata/samples`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// File name of the Argo archive.
pub const ARGO_ARCHIVE: &str = "argo_core_profiles_DR.tar.zst";
/// Number of profiles in the archive.
pub const ARGO_FILES: usize = 3000;
/// Number of `.nc` files the sample script fetches (Iris 2.5.2: 15,
/// ESMValTool sample data 0.0.4: 326; both pinned by hash in the script).
pub const SAMPLE_FILES: usize = 341;
/// File name of the script that downloads the Iris and ESMValTool samples.
pub const SAMPLES_SCRIPT: &str = "get-realdata.sh";
/// Environment variable naming the directory that holds the real data.
pub const DATA_DIR_VAR: &str = "ATLAS_REALDATA_DIR";

/// The workspace root (where this crate's sources were built from).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        Some(p) => workspace_root().join(p),
        None => workspace_root().join("target"),
    }
}

/// The directories searched for real data, in order: `ATLAS_REALDATA_DIR`
/// when set, then `<root>/../shared/data`.
pub fn data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os(DATA_DIR_VAR) {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(workspace_root().join("..").join("shared").join("data"));
    // The repository's own copy of the Argo archive (5.3 MB, EUPL-1.2, with
    // its licence) and of the sample-download script, so CI tests real data
    // wherever the clone lives.
    dirs.push(workspace_root().join(".ci").join("data"));
    dirs
}

/// The first of [`data_dirs`] holding a file named `name`.
fn find_data_file(name: &str) -> Option<PathBuf> {
    data_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Argo archive, if present in one of [`data_dirs`].
pub fn argo_archive() -> Option<PathBuf> {
    find_data_file(ARGO_ARCHIVE)
}

/// The unpacked Argo profiles, unpacking the archive on first use; `Ok(None)`
/// when the archive is absent. Safe to call from several processes at once:
/// each unpacks into its own temporary directory and renames it into place.
pub fn argo_dir() -> std::io::Result<Option<PathBuf>> {
    let Some(archive) = argo_archive() else {
        return Ok(None);
    };
    let base = target_dir().join("realdata");
    let dest = base.join("argo");
    let marker = dest.join(".complete");
    if marker.is_file() {
        return Ok(Some(dest));
    }
    std::fs::create_dir_all(&base)?;
    let tmp = base.join(format!("argo.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut zstd = Command::new("zstd")
        .arg("-dc")
        .arg(&archive)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = zstd
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("zstd has no stdout"))?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&tmp)
        .stdin(stdout)
        .status()?;
    let z = zstd.wait()?;
    if !z.success() || !tar.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(std::io::Error::other(format!(
            "unpacking {} failed (zstd: {z}, tar: {tar})",
            archive.display()
        )));
    }
    std::fs::write(tmp.join(".complete"), b"")?;
    install_dir(&tmp, &dest)
}

/// The Iris and ESMValTool sample files (`iris/…` and `esmvaltool/…` under
/// the returned directory), downloading them on first use with the script
/// [`SAMPLES_SCRIPT`] of [`data_dirs`]; `Ok(None)` when no such script exists.
///
/// The script runs `python3 -m pip download`; `python_bin`, when given, is
/// put first on its `PATH` (a virtual environment's `bin`, whose `python3`
/// has pip). A failed download is an error. Safe to call from several
/// processes at once, like [`argo_dir`].
pub fn samples_dir(python_bin: Option<&Path>) -> std::io::Result<Option<PathBuf>> {
    let base = target_dir().join("realdata");
    let dest = base.join("samples");
    if dest.join(".complete").is_file() {
        return Ok(Some(dest));
    }
    let Some(script) = find_data_file(SAMPLES_SCRIPT) else {
        return Ok(None);
    };
    std::fs::create_dir_all(&base)?;
    let tmp = base.join(format!("samples.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&tmp);
    if let Some(bin) = python_bin {
        let mut path = vec![bin.to_owned()];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        cmd.env(
            "PATH",
            std::env::join_paths(path).map_err(std::io::Error::other)?,
        );
    }
    let status = cmd.status()?;
    if !status.success() || !tmp.join(".complete").is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(std::io::Error::other(format!(
            "{} {} failed ({status})",
            script.display(),
            tmp.display()
        )));
    }
    install_dir(&tmp, &dest)
}

/// Renames the complete directory `tmp` to `dest` unless another process got
/// there first (then `tmp` is removed).
fn install_dir(tmp: &Path, dest: &Path) -> std::io::Result<Option<PathBuf>> {
    let marker = dest.join(".complete");
    if marker.is_file() {
        // Another process finished first.
        let _ = std::fs::remove_dir_all(tmp);
        return Ok(Some(dest.to_owned()));
    }
    if dest.exists() {
        // An incomplete earlier attempt.
        std::fs::remove_dir_all(dest)?;
    }
    match std::fs::rename(tmp, dest) {
        Ok(()) => Ok(Some(dest.to_owned())),
        Err(_) if marker.is_file() => {
            let _ = std::fs::remove_dir_all(tmp);
            Ok(Some(dest.to_owned()))
        }
        Err(e) => Err(e),
    }
}

/// Every `.nc` file under `dir`, sorted.
pub fn nc_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::bulk::collect_files(&[dir.to_owned()]).map_err(std::io::Error::other)
}
