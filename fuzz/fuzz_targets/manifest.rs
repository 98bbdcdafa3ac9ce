//! The manifest decoder (`atlas.json`) and the decoders of the retired
//! list's side files and sealed chunks (JSON too, in `atlas.history/`).
//! Seeds: manifests of real stores, a side file naming a chunk, a chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = atlas_core::fuzzing::decode_manifest(data);
    let _ = atlas_core::fuzzing::decode_retired_files(data);
});
