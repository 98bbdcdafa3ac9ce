//! `atlas-netcdf4`: the `atlas` tool with the NetCDF-4/HDF5 reader (it links
//! libnetcdf). `atlas import` execs it when a file to import is NetCDF-4;
//! every command works the same in both.

fn main() -> std::process::ExitCode {
    atlas_cli::run(Some(atlas_netcdf::read_bytes))
}
