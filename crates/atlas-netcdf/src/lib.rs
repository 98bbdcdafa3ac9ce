//! # atlas-netcdf
//!
//! Brings NetCDF files into an ATLAS store and gets any dataset back out.
//!
//! - Each file becomes a dataset, each variable an array with its dimension
//!   names, shape, type and fill value; variable attributes become array
//!   attributes and global attributes dataset attributes.
//! - CDF1 (classic), CDF2 (64-bit offset) and CDF5 are read and written in
//!   pure Rust by this crate; NetCDF-4/HDF5 files are read through libnetcdf
//!   with the cargo feature `netcdf4`.
//! - Export writes a classic-family file that holds the same dimensions,
//!   variables, values (bit for bit) and attributes as the imported file.
//!
//! The mapping, including the reserved `_nc_*` attributes that make the round
//! trip exact, is documented in `docs/netcdf.md`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> atlas_netcdf::Result<()> {
//! use atlas::{Atlas, StoreConfig};
//! use atlas_netcdf::{model::*, ImportOptions};
//! let dir = tempfile::tempdir().unwrap();
//! // A tiny NetCDF file.
//! let nc = NcFile {
//!     format: NcFormat::Classic,
//!     dims: vec![NcDim { name: "level".into(), len: 3, unlimited: false }],
//!     attrs: vec![NcAttr { name: "title".into(), value: NcValues::Char(b"demo".to_vec()) }],
//!     vars: vec![NcVar {
//!         name: "TEMP".into(),
//!         dims: vec![0],
//!         attrs: vec![NcAttr { name: "_FillValue".into(), value: NcValues::Float(vec![99999.0]) }],
//!         values: NcValues::Float(vec![10.5, 11.0, 99999.0]),
//!     }],
//! };
//! let path = dir.path().join("profile_1.nc");
//! atlas_netcdf::write_file(&nc, &path, None)?;
//!
//! let store = Atlas::create_path(dir.path().join("store"), StoreConfig::default()).await?;
//! let name = atlas_netcdf::import_file(&store, &path, None, &ImportOptions::default()).await?;
//! assert_eq!(name, "profile_1");
//! store.flush().await?;
//! let t = store.open_dataset("profile_1").await?
//!     .read_array::<f32>("TEMP", vec![], vec![]).await?.unwrap();
//! assert_eq!(t.as_slice().unwrap(), &[10.5, 11.0, 99999.0]);
//!
//! let out = dir.path().join("out.nc");
//! atlas_netcdf::export_dataset(&store, "profile_1", &out, Default::default()).await?;
//! assert_eq!(atlas_netcdf::read_file(&out)?, nc);
//! # Ok(()) }
//! ```

pub mod bulk;
pub mod classic;
mod error;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "netcdf4")]
mod hdf5;
pub mod import;
pub mod model;
pub mod realdata;

use std::path::Path;

pub use bulk::{import_paths, BulkOptions, BulkReport, FileOutcome, DEFAULT_BATCH_BYTES};
pub use classic::ClassicReader;
pub use error::{Error, Result};
pub use export::{export_dataset, ExportOptions, ExportSummary};
pub use import::{plan, write_plan, DatasetPlan, ImportOptions};
pub use model::{NcFile, NcFormat, NcType, NcValues};

/// The HDF5 signature that NetCDF-4 files start with.
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// True when this build reads NetCDF-4/HDF5 files (feature `netcdf4`).
pub const NETCDF4: bool = cfg!(feature = "netcdf4");

/// A parser of a whole NetCDF file held in memory (`bytes`, named `path` in
/// errors): [`read_bytes`] or [`read_bytes_classic`].
///
/// Why a choice: a program links libnetcdf (and, through it, HDF5, curl and
/// some forty more shared libraries, about 7 ms of start-up on every run)
/// as soon as it references [`read_bytes`] in a build with the `netcdf4`
/// feature. A program whose code names only [`read_bytes_classic`] links
/// none of them. The `atlas` tool does that and hands NetCDF-4 imports to
/// its helper `atlas-netcdf4`, which passes [`read_bytes`].
pub type Reader = fn(&[u8], &Path) -> Result<NcFile>;

/// True when `bytes` start like a NetCDF-4 (HDF5) file.
pub fn is_netcdf4(bytes: &[u8]) -> bool {
    bytes.starts_with(HDF5_MAGIC)
}

/// Reads a whole NetCDF file: CDF1/CDF2/CDF5 in pure Rust, NetCDF-4 through
/// libnetcdf when the `netcdf4` feature is on.
pub fn read_file(path: impl AsRef<Path>) -> Result<NcFile> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    read_bytes(&bytes, path)
}

/// Parses a NetCDF file held in memory; `path` names it in errors (and is
/// opened again by libnetcdf for NetCDF-4 files).
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<NcFile> {
    #[cfg(feature = "netcdf4")]
    if bytes.starts_with(HDF5_MAGIC) {
        return hdf5::read(path);
    }
    read_bytes_classic(bytes, path)
}

/// Parses the classic formats (CDF1/CDF2/CDF5) only, whatever the build's
/// features: a NetCDF-4/HDF5 file is [`Error::Unsupported`]. Naming only this
/// parser keeps libnetcdf out of a program (see [`Reader`]).
pub fn read_bytes_classic(bytes: &[u8], path: &Path) -> Result<NcFile> {
    if classic::read::has_signature(bytes) {
        return classic::read::read_bytes(bytes, path);
    }
    if bytes.starts_with(HDF5_MAGIC) {
        return Err(Error::Unsupported {
            path: path.to_owned(),
            what: if NETCDF4 {
                "netcdf-4/hdf5 file (this reader reads the classic formats only; \
                 `atlas` imports NetCDF-4 through its helper `atlas-netcdf4`)"
                    .into()
            } else {
                "netcdf-4/hdf5 file (build with the `netcdf4` feature)".into()
            },
        });
    }
    Err(Error::NotNetcdf {
        path: path.to_owned(),
    })
}

/// Writes a model as a classic-family NetCDF file (see
/// [`ExportOptions::format`] for how `None` chooses the format).
pub fn write_file(
    nc: &NcFile,
    path: impl AsRef<Path>,
    format: Option<NcFormat>,
) -> Result<NcFormat> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    let f = export::write_nc(nc, format, &mut bytes).map_err(|reason| Error::Export {
        dataset: path.display().to_string(),
        reason,
    })?;
    std::fs::write(path, &bytes).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(f)
}

/// The dataset name a file gets by default: its stem (`R2901623_035.nc` →
/// `R2901623_035`).
pub fn default_dataset_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// Reads one file and imports it as a new dataset (named `name`, or after
/// the file's stem), returning the dataset name. Nothing is flushed.
pub async fn import_file(
    store: &atlas::Atlas,
    path: impl AsRef<Path>,
    name: Option<&str>,
    opts: &ImportOptions,
) -> Result<String> {
    let path = path.as_ref();
    let name = name.map_or_else(|| default_dataset_name(path), str::to_owned);
    let nc = read_file(path)?;
    // Planned straight into the batch entry: the file's values move into
    // it (a plan, then `write_plan`, held two more copies of them).
    let ds = import::plan_entry(nc, &name, opts, path, &mut import::Shared::default())?;
    store.create_datasets(std::slice::from_ref(&ds)).await?;
    Ok(name)
}
