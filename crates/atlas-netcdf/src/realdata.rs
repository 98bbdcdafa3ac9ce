//! Locating the real-data corpus used by tests and benchmarks.
//!
//! The Argo archive lives beside the repository in
//! `../shared/data/argo_core_profiles_DR.tar.zst` (relative to the workspace
//! root; see [`argo_archive`] for the other places searched). [`argo_dir`] unpacks it once into `target/realdata/argo` (with
//! `zstd -dc FILE | tar -x -C DEST`) and returns that directory; later calls
//! find it there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// File name of the Argo archive.
pub const ARGO_ARCHIVE: &str = "argo_core_profiles_DR.tar.zst";
/// Number of profiles in the archive.
pub const ARGO_FILES: usize = 3000;

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

/// The Argo archive, if present: `ATLAS_REALDATA_DIR/<archive>` when that
/// variable is set, else `<root>/../shared/data/<archive>`, else the workplace's
/// shared folder `/work/shared/data/<archive>` (for clones made elsewhere).
pub fn argo_archive() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("ATLAS_REALDATA_DIR") {
        candidates.push(PathBuf::from(dir).join(ARGO_ARCHIVE));
    }
    candidates.push(
        workspace_root()
            .join("..")
            .join("shared")
            .join("data")
            .join(ARGO_ARCHIVE),
    );
    candidates.push(Path::new("/work/shared/data").join(ARGO_ARCHIVE));
    candidates.into_iter().find(|p| p.is_file())
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
    if marker.is_file() {
        // Another process finished first.
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(Some(dest));
    }
    if dest.exists() {
        // An incomplete earlier attempt.
        std::fs::remove_dir_all(&dest)?;
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(Some(dest)),
        Err(_) if marker.is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(Some(dest))
        }
        Err(e) => Err(e),
    }
}

/// Every `.nc` file under `dir`, sorted.
pub fn nc_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::bulk::collect_files(&[dir.to_owned()]).map_err(std::io::Error::other)
}
