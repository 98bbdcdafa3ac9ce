//! `atlas`, the command-line tool (see the crate's library for the commands).
//! It names only `atlas_netcdf::read_bytes_classic`, so it links no libnetcdf; NetCDF-4
//! imports are handed to `atlas-netcdf4`.

fn main() -> std::process::ExitCode {
    atlas_cli::run(None)
}
