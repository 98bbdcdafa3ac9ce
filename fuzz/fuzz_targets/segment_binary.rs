//! The registry segment decoder on binary segments (`atlas.meta/s-….bin`:
//! `ATLASSEG`, a `u32` version, one Zstandard frame of MessagePack).
//!
//! The target writes the magic and version 1 itself, so every input reaches the
//! decompressor. The first input byte picks what the rest is:
//! - even: the Zstandard frame as stored (hostile frames, frame headers claiming
//!   huge contents, decompression bombs);
//! - odd: the MessagePack document, which the target compresses first, so
//!   mutations explore the MessagePack decoder and the segment validation
//!   rather than dying in the decompressor.
//!
//! Seeds: both forms of the binary segments of real stores.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// `ATLASSEG` followed by segment version 1 (docs/format.md).
const HEADER: [u8; 12] = *b"ATLASSEG\x01\x00\x00\x00";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut seg = HEADER.to_vec();
    if mode & 1 == 0 {
        seg.extend_from_slice(rest);
    } else {
        seg.extend_from_slice(&zstd::bulk::compress(rest, 1).expect("in-memory zstd"));
    }
    let _ = atlas_core::fuzzing::decode_segment(&seg);
});
