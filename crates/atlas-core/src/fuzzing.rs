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

/// Decodes `bytes` as each of the retired list's files of
/// `atlas.history/`: a side file (version 1 or 2) of generation 7, and a
/// sealed chunk (checked against the entry count and smallest generation
/// its first entries claim). True if either decoded.
pub fn decode_retired_files(bytes: &[u8]) -> bool {
    let dir = Path::new("<fuzz>/atlas.history");
    let side = crate::registry::decode_retired(bytes, 7, &dir.join("retired.json")).is_ok();
    // A chunk reference as a side file would write it, read off the bytes
    // (so the count and generation checks pass for well-formed chunks).
    let claimed: Option<(u64, u64)> = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            let list = v.get("retired")?.as_array()?;
            let min = list
                .iter()
                .filter_map(|r| r.get("generation")?.as_u64())
                .min();
            Some((list.len() as u64, min.unwrap_or(0)))
        });
    let (entries, min_generation) = claimed.unwrap_or((1, 1));
    let r = crate::registry::ChunkRef {
        file: "retired-chunk-00000000000000000000000000000000.json".into(),
        entries,
        min_generation,
    };
    let chunk = crate::registry::decode_retired_chunk(bytes, &r, &dir.join(&r.file)).is_ok();
    side || chunk
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

#[cfg(test)]
mod tests {
    /// The hand-written seeds of the retired list's files decode, and
    /// damaged copies of them do not.
    #[test]
    fn retired_list_seeds_decode() {
        let side = include_bytes!("../../../fuzz/corpus/manifest/seed-retired-side-v2");
        let chunk = include_bytes!("../../../fuzz/corpus/manifest/seed-retired-chunk");
        assert!(super::decode_retired_files(side));
        assert!(super::decode_retired_files(chunk));
        for bytes in [&side[..], &chunk[..]] {
            let text = String::from_utf8_lossy(bytes);
            for bad in [
                text.replace("\"version\":", "\"version\":9"),
                text.replace("retired-chunk-0123", "retired-chunk-x123"),
                text.replace("\"dir\":\"d0\"", "\"dir\":\"../d0\""),
                text.replace("\"dir\":\"atlas.meta\"", "\"dir\":\"a/b\""),
                text[..text.len() / 2].to_owned(),
            ] {
                if bad != text {
                    assert!(!super::decode_retired_files(bad.as_bytes()), "{bad}");
                }
            }
        }
    }
}
