//! Integration tests of `atlas-netcdf`: real Argo profiles, the Iris and
//! ESMValTool sample files against netCDF4-python, synthetic files of every
//! type, hostile input, and (feature `netcdf4`) libnetcdf.

// Tests panic by design, are long, and name their values briefly.
#![allow(
    clippy::missing_panics_doc,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::default_trait_access
)]

mod argo;
mod common;
mod hostile;
#[cfg(feature = "netcdf4")]
mod netcdf4;
mod roundtrip;
mod samples;
