//! The manifest decoder (`atlas.json`). Seeds: manifests of real stores.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = atlas_core::fuzzing::decode_manifest(data);
});
