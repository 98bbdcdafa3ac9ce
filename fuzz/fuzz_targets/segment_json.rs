//! The registry segment decoder on JSON segments (`atlas.meta/s-….json`).
//! Seeds: JSON segments of real stores.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = atlas_core::fuzzing::decode_segment(data);
});
