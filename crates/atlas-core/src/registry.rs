//! The registry: which datasets exist, their arrays' schemas and attributes,
//! and for every array file the exact ordered list of layer files.
//!
//! It has two parts. `atlas.json` is the **manifest** and the store's only
//! commit point: codec, generation, every array file's layer list, and the
//! ordered list of registry **segments**. A segment (`atlas.meta/s-<uid>.json`
//! or `.bin`) is an immutable batch of dataset records: upserts of every dataset
//! changed since the previous flush and tombstones of deleted ones. Replaying the
//! segments in order gives the dataset map, so a flush writes only what changed
//! (plus the small manifest); every [`MAX_SEGMENTS`] flushes, and on compaction,
//! one *snapshot* segment replaces them all.
//!
//! **Invariant:** decoding validates every name, schema index, layer and
//! segment name, so a damaged or hostile registry is an error, never a panic
//! or a path outside the store.

#[cfg(test)]
use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::Hash;
#[cfg(test)]
use std::hash::Hasher;
use std::path::Path;
use std::sync::Arc;

use array_format::{ArraySchema, Codec, Compression, DType, FillValue, LayerId, TimestampNs};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::attr::Attr;
use crate::config::MetaFormat;
use crate::error::{Error, Result};
use crate::name::{validate_array_name, validate_attribute_name, validate_dataset_name};

mod manifest;
mod run;
mod runs;
mod segment;

pub use manifest::Policy;
pub(crate) use manifest::{
    decode_retired, decode_retired_chunk, dir_id, encode_retired, encode_retired_chunk,
    is_retired_chunk_file, is_retired_file, now_ms, seal_retired, tag_name_problem, unseal_retired,
    ChunkRef, CommitInfo, Manifest, Retired, Sealed, TagEntry,
};
pub(crate) use run::fuzz_run;
#[cfg(test)]
pub(crate) use run::Ints;
pub use run::RunId;
pub(crate) use run::{
    par_map, Entries, Float, MergeRec, Record, Run, RunWriter, SchemaOf, StatColumn, Values,
};
pub(crate) use runs::{merge as merge_runs, RunSet};
pub(crate) use segment::decode_segment;
#[cfg(test)]
pub(crate) use segment::encode_segment;

/// The manifest format version this build writes (5: a long retired list in
/// a side file). It also reads versions 4 (history, the retired list inline),
/// 3 (no history) and 2 (registry segments, no dataset ids), which its next
/// commit upgrades.
pub const REGISTRY_VERSION: u32 = 5;
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Magic at the start of a binary segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ATLASSEG";
/// Directory of registry segments inside the store.
pub const META_DIR: &str = "atlas.meta";
const FORMAT_TAG: &str = "atlas-registry";
const SEGMENT_TAG: &str = "atlas-registry-segment";
/// Largest decoded binary segment accepted, whatever its size.
const MAX_DECODED_SEGMENT_BYTES: u64 = 16 << 30;
/// Decoded size every binary segment may reach, whatever its compression ratio.
const MIN_DECODED_SEGMENT_CAP: u64 = 64 << 20;
/// Largest compression ratio accepted for a segment decoding past
/// [`MIN_DECODED_SEGMENT_CAP`].
const MAX_SEGMENT_RATIO: u64 = 4096;

/// The attributes of an array that has none: one map shared by every such
/// array (copied on its first attribute), not one allocation per array.
pub(crate) fn no_array_attributes() -> Arc<IndexMap<String, Attr>> {
    static EMPTY: std::sync::OnceLock<Arc<IndexMap<String, Attr>>> = std::sync::OnceLock::new();
    Arc::clone(EMPTY.get_or_init(Arc::default))
}

/// One array of a dataset: its schema and attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayEntry {
    /// The schema (shared between datasets with equal schemas).
    pub schema: Arc<ArraySchema>,
    /// Per-array attributes, in insertion order. Shared between datasets whose
    /// arrays carry the same attributes (copied on write).
    pub attributes: Arc<IndexMap<String, Attr>>,
}

/// Metadata for a single dataset: array schemas and per-dataset attributes.
/// Both maps preserve insertion order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatasetMeta {
    /// Per-dataset attributes.
    pub attributes: IndexMap<String, Attr>,
    /// Arrays by name.
    pub arrays: IndexMap<String, ArrayEntry>,
}

/// The name of one registry segment file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SegmentId(String);

impl SegmentId {
    /// Validates a segment file name: `s-<32 lowercase hex>.json` or `.bin`.
    pub fn new(name: impl Into<String>) -> Option<SegmentId> {
        let name = name.into();
        let b = name.as_bytes();
        let hex_ok = |h: &[u8]| {
            h.len() == 32
                && h.iter()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        };
        let ok = b.starts_with(b"s-")
            && ((b.len() == 39 && b.ends_with(b".json") && hex_ok(&b[2..34]))
                || (b.len() == 38 && b.ends_with(b".bin") && hex_ok(&b[2..34])));
        ok.then_some(SegmentId(name))
    }

    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks that every array a dataset uses has a file in the manifest.
/// Checks a registry file's format tag and version: another tag is damage,
/// another version is `UnsupportedRegistry`.
fn check_head(format: &str, version: u32, tag: &str, supported: u32, path: &Path) -> Result<()> {
    if format != tag {
        return Err(Error::CorruptRegistry {
            path: path.to_owned(),
            reason: format!("format tag {format:?} is not {tag:?}"),
        });
    }
    if version != supported {
        return Err(Error::UnsupportedRegistry {
            path: path.to_owned(),
            version,
            supported,
        });
    }
    Ok(())
}

pub(crate) fn check_arrays(
    datasets: &IndexMap<String, DatasetMeta>,
    manifest: &Manifest,
    path: &Path,
) -> Result<()> {
    for (name, ds) in datasets {
        for a in ds.arrays.keys() {
            if !manifest.arrays.contains_key(a) {
                return Err(Error::CorruptRegistry {
                    path: path.to_owned(),
                    reason: format!("dataset {name:?} uses array {a:?}, which has no file"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::segment::{decoded_segment_cap, Segment};
    use super::*;

    fn sample() -> IndexMap<String, DatasetMeta> {
        let schema = Arc::new(
            ArraySchema::new(
                "x",
                DType::Float32,
                vec!["z".into()],
                vec![10],
                None,
                Some(FillValue::Float32(f32::NAN)),
            )
            .unwrap(),
        );
        let attrs = Arc::new(IndexMap::from([("units".to_owned(), Attr::from("degC"))]));
        let mut map = IndexMap::new();
        for i in 0..3 {
            let mut ds = DatasetMeta::default();
            ds.attributes.insert("month".into(), Attr::Int64(i));
            ds.arrays.insert(
                "temp".into(),
                ArrayEntry {
                    schema: Arc::clone(&schema),
                    attributes: Arc::clone(&attrs),
                },
            );
            map.insert(format!("ds{i}"), ds);
        }
        map
    }

    #[test]
    fn segments_round_trip_in_both_formats_and_share_schemas() {
        let map = sample();
        for fmt in [MetaFormat::Json, MetaFormat::Binary] {
            let bytes = encode_segment(fmt, true, vec![], map.iter());
            let seg = decode_segment(&bytes, Path::new("s")).unwrap();
            let mut back = IndexMap::new();
            seg.apply(&mut back);
            assert_eq!(back, map);
            if fmt == MetaFormat::Json {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v["schemas"].as_array().unwrap().len(), 1);
                assert_eq!(v["attr_sets"].as_array().unwrap().len(), 1);
            }
        }
    }

    #[test]
    fn deltas_replay_to_the_live_order() {
        // Live history: ds0 ds1 ds2 committed; then ds1 deleted, ds0 changed,
        // ds1 re-created, ds3 created. Live order: ds0 ds2 ds1 ds3.
        let mut live = sample();
        let mut committed = live.clone();
        live.shift_remove("ds1");
        live.get_mut("ds0")
            .unwrap()
            .attributes
            .insert("x".into(), Attr::Bool(true));
        live.insert("ds1".into(), DatasetMeta::default());
        live.insert("ds3".into(), DatasetMeta::default());
        let dirty = ["ds0", "ds1", "ds3"];
        let bytes = encode_segment(
            MetaFormat::Json,
            false,
            vec!["ds1".into()],
            live.iter().filter(|(k, _)| dirty.contains(&k.as_str())),
        );
        decode_segment(&bytes, Path::new("s"))
            .unwrap()
            .apply(&mut committed);
        assert_eq!(committed, live);
        assert_eq!(
            committed.keys().collect::<Vec<_>>(),
            ["ds0", "ds2", "ds1", "ds3"]
        );
    }

    #[test]
    fn manifests_round_trip_and_reject_damage() {
        let mut m = Manifest::new(Compression::default(), MetaFormat::Binary);
        m.generation = 4;
        m.arrays.insert(
            "temp".into(),
            vec![LayerId::new(format!("d-{:032x}.af", 42)).unwrap()],
        );
        m.dirs.insert("temp".into(), dir_id(3));
        m.next_dir = 4;
        m.users.insert("temp".into(), 1);
        m.runs.push(RunId::fresh());
        m.next_id = 7;
        m.n_datasets = 5;
        m.parent = Some(3);
        m.history_from = Some(2);
        m.commit = Some(manifest::CommitInfo {
            time_ms: 1_796_161_234_567,
            op: "flush".into(),
            message: Some("delayed-mode QC".into()),
            added: 1,
            changed: 2,
            deleted: 3,
            bytes_written: 4096,
        });
        m.tags.insert(
            "paper-2026".into(),
            manifest::TagEntry {
                generation: 2,
                time_ms: 1_796_161_234_000,
                message: None,
            },
        );
        m.dead_tags.insert("draft".into());
        m.policy.keep_generations = 10;
        m.policy.keep_secs = 86_400;
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes, Path::new("a")).unwrap(), m);
        // Encoding is deterministic: a history copy re-encoded from the
        // decoded manifest has the same bytes.
        assert_eq!(
            Manifest::decode(&bytes, Path::new("a")).unwrap().encode(),
            bytes
        );
        // History fields that disagree are damage.
        for damage in [
            |m: &mut Manifest| m.parent = Some(4),
            |m: &mut Manifest| m.history_from = Some(5),
            |m: &mut Manifest| m.history_from = Some(0),
            |m: &mut Manifest| m.tags.get_mut("paper-2026").unwrap().generation = 9,
            |m: &mut Manifest| {
                m.dead_tags.insert("paper-2026".into());
            },
            |m: &mut Manifest| m.commit.as_mut().unwrap().op = "merge".into(),
        ] {
            let mut bad = m.clone();
            damage(&mut bad);
            assert!(matches!(
                Manifest::decode(&bad.encode(), Path::new("a")),
                Err(Error::CorruptRegistry { .. })
            ));
        }
        // A directory id at or past next_dir, or shared by two arrays, is damage.
        let mut bad = m.clone();
        bad.next_dir = 3;
        assert!(Manifest::decode(&bad.encode(), Path::new("a")).is_err());
        let mut shared = m.clone();
        shared.arrays.insert("sal".into(), Vec::new());
        shared.dirs.insert("sal".into(), dir_id(3));
        assert!(Manifest::decode(&shared.encode(), Path::new("a")).is_err());
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            assert!(matches!(
                Manifest::decode(&bytes[..cut], Path::new("a")),
                Err(Error::CorruptRegistry { .. })
            ));
        }
        let text = String::from_utf8(bytes).unwrap();
        let evil = text.replace("d-0000", "../../0");
        assert_ne!(evil, text);
        assert!(Manifest::decode(evil.as_bytes(), Path::new("a")).is_err());
        let current = format!("\"version\": {REGISTRY_VERSION}");
        // A retired-list side file: only version 5 names one, and only by a
        // well-formed name.
        let side = text.replacen(
            "\"policy\"",
            "\"retired_file\": \"retired-0123456789abcdef0123456789abcdef.json\",\n  \"policy\"",
            1,
        );
        assert_ne!(side, text);
        let m = Manifest::decode(side.as_bytes(), Path::new("a")).unwrap();
        assert!(!m.retired_loaded && m.retired_file.is_some());
        assert!(Manifest::decode(
            side.replace(&current, "\"version\": 4").as_bytes(),
            Path::new("a")
        )
        .is_err());
        let bad = side.replace("retired-0123", "../../0123");
        assert!(Manifest::decode(bad.as_bytes(), Path::new("a")).is_err());
        let future = text.replace(&current, "\"version\": 9");
        assert_ne!(future, text);
        assert!(matches!(
            Manifest::decode(future.as_bytes(), Path::new("a")),
            Err(Error::UnsupportedRegistry { version: 9, .. })
        ));
        assert!(SegmentId::new("s-../../etc/passwd.json").is_none());
    }

    #[test]
    fn damaged_segments_are_errors() {
        let map = sample();
        for fmt in [MetaFormat::Json, MetaFormat::Binary] {
            let bytes = encode_segment(fmt, true, vec![], map.iter());
            for cut in [0, 1, 8, 12, bytes.len() / 2, bytes.len() - 2] {
                assert!(
                    decode_segment(&bytes[..cut], Path::new("s")).is_err(),
                    "{fmt:?} cut {cut}"
                );
            }
        }
    }

    /// A binary segment holding `frame`.
    fn binary(frame: &[u8]) -> Vec<u8> {
        [&SEGMENT_MAGIC[..], &SEGMENT_VERSION.to_le_bytes(), frame].concat()
    }

    /// The reason of a `CorruptRegistry` error.
    fn corrupt_reason(r: Result<Segment>) -> String {
        match r {
            Err(Error::CorruptRegistry { reason, .. }) => reason,
            other => panic!("expected CorruptRegistry, got {other:?}"),
        }
    }

    #[test]
    fn the_decoded_size_cap_follows_the_segment_size() {
        assert_eq!(decoded_segment_cap(0), 64 << 20);
        assert_eq!(decoded_segment_cap(16 << 10), 64 << 20);
        assert_eq!(decoded_segment_cap((16 << 10) + 1), (64 << 20) + 4096);
        assert_eq!(decoded_segment_cap(1 << 20), 4 << 30);
        assert_eq!(decoded_segment_cap(4 << 20), 16 << 30);
        assert_eq!(decoded_segment_cap(u64::MAX), 16 << 30);
    }

    #[test]
    fn a_tiny_segment_claiming_a_huge_size_is_refused_before_decoding() {
        // A 33-byte segment: a frame header declaring the content size, then
        // one raw block of 5 bytes. The declared size alone is refused.
        for declared in [(64u64 << 20) + 1, 1 << 40, 1 << 62] {
            let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
            f.extend_from_slice(&declared.to_le_bytes());
            f.extend_from_slice(&[(5 << 3) | 1, 0, 0]);
            f.extend_from_slice(b"\x80\x80\x80\x80\x80");
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&f).ok(),
                Some(Some(declared))
            );
            let reason = corrupt_reason(decode_segment(&binary(&f), Path::new("s")));
            assert!(reason.contains("more than 67108864 bytes"), "{reason}");
        }
    }

    #[test]
    fn a_frame_producing_more_than_the_cap_is_cut_off_at_the_cap() {
        // A streaming encoder does not declare the size: the bounded read is
        // what stops it. 64 MiB of zeros fit in a few kilobytes.
        let cap = decoded_segment_cap(0);
        for (len, over) in [(cap + 1, true), (cap, false)] {
            let zeros = std::io::Read::take(std::io::repeat(0), len);
            let frame = zstd::stream::encode_all(zeros, 3).unwrap();
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&frame).ok(),
                Some(None)
            );
            assert!(frame.len() < 16 << 10, "{} bytes", frame.len());
            let reason = corrupt_reason(decode_segment(&binary(&frame), Path::new("s")));
            // At the cap the zeros decompress, and are no MessagePack map.
            assert_eq!(reason.contains("more than"), over, "{reason}");
        }
    }

    #[test]
    fn wide_registries_compressing_past_1000x_still_decode() {
        // 150 datasets of the same 1,000 arrays: each record after the first
        // costs zstd a few bytes, so the segment compresses about 2,000×
        // (a cap of 1,000× its size, over a 1 MiB floor, refused it).
        let one = sample();
        let entry = one["ds0"].arrays["temp"].clone();
        let mut map = IndexMap::new();
        for i in 0..150 {
            let mut ds = DatasetMeta::default();
            for a in 0..1000 {
                ds.arrays.insert(format!("VAR{a:04}"), entry.clone());
            }
            map.insert(format!("argo_{i:06}"), ds);
        }
        let bytes = encode_segment(MetaFormat::Binary, true, vec![], map.iter());
        let packed = zstd::stream::decode_all(&bytes[12..]).unwrap().len() as u64;
        assert!(packed > 1 << 20, "{packed} bytes");
        assert!(
            packed > 1000 * bytes.len() as u64,
            "{packed} bytes from {}",
            bytes.len()
        );
        let mut back = IndexMap::new();
        decode_segment(&bytes, Path::new("s"))
            .unwrap()
            .apply(&mut back);
        assert_eq!(back, map);
    }
}
