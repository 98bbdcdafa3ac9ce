//! The classic NetCDF formats (CDF1 "classic", CDF2 "64-bit offset", CDF5
//! "64-bit data") in pure Rust.

pub(crate) mod read;
pub(crate) mod write;

pub use read::ClassicReader;
