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
