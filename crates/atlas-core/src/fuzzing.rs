//! No-panic entry points for fuzzing the registry decoders.
//!
//! The manifest (`atlas.json`) and registry segment decoders are crate-private;
//! these wrappers expose them to the `cargo fuzz` targets in `fuzz/` without
//! widening the API. Each returns whether the bytes decoded; a panic, an abort
//! or an unbounded allocation on any input is a bug.

use std::path::Path;

/// Decodes `bytes` as a manifest (`atlas.json`); true if they are a valid one.
pub fn decode_manifest(bytes: &[u8]) -> bool {
    crate::registry::Manifest::decode(bytes, Path::new("<fuzz>/atlas.json")).is_ok()
}

/// Decodes `bytes` as a registry segment in either format (JSON, or the
/// `ATLASSEG` binary form); true if they are a valid one.
pub fn decode_segment(bytes: &[u8]) -> bool {
    crate::registry::decode_segment(bytes, Path::new("<fuzz>/atlas.meta/s.bin")).is_ok()
}

/// Opens `bytes` as a registry run and reads everything in it: the index,
/// every record block, the id blocks, bitmaps and catalog columns. Must never
/// panic, whatever the bytes.
pub fn decode_run(bytes: &[u8]) {
    crate::registry::fuzz_run(bytes);
}
