//! The classic NetCDF reader (CDF1, CDF2 and CDF5): arbitrary bytes parsed as
//! a file held in memory, every variable read (`atlas_netcdf::fuzzing`).
//!
//! Beyond "no panic, no hang, no oversized allocation", a file that reads
//! must be consistent: every variable holds exactly the cells its dimensions
//! say, and the values decoded from the file are no more than its bytes (a
//! byte of the file belongs to at most one value, so overlapping variables
//! cannot multiply a small file into a huge read).
//!
//! Seeds: classic files written by the crate's own writer
//! (`atlas_netcdf::write_file`): CDF1, CDF2 and CDF5, fixed and record
//! variables, every type, attributes, a scalar, a single record variable (the
//! unpadded case), a streaming record count, and a file without variables.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(nc) = atlas_netcdf::fuzzing::read_classic(data) else {
        return;
    };
    let mut decoded = 0u64;
    for v in &nc.vars {
        let cells: u64 = nc.shape(v).iter().product();
        assert_eq!(v.values.len() as u64, cells, "variable {:?}", v.name);
        decoded += cells * v.nc_type().size().unwrap_or(1) as u64;
    }
    assert!(
        decoded <= data.len() as u64,
        "{decoded} bytes of values decoded from a file of {} bytes",
        data.len()
    );
});
