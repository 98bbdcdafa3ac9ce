//! Registry runs (`atlas.meta/r-….run`): opening a run from hostile bytes and
//! reading everything in it (index, record blocks, id blocks, bitmaps and
//! catalog columns) must give typed errors, never a panic or an allocation
//! past the caps. Seeds: runs of real stores (`fuzz/corpus/registry_run`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    atlas_core::fuzzing::decode_run(data);
});
