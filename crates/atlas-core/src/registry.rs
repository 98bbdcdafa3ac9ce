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

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use array_format::{ArraySchema, Codec, Compression, DType, FillValue, LayerId, TimestampNs};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::attr::Attr;
use crate::config::MetaFormat;
use crate::error::{Error, Result};
use crate::name::{validate_array_name, validate_attribute_name, validate_dataset_name};

/// The manifest format version this build writes and reads.
pub const REGISTRY_VERSION: u32 = 2;
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Magic at the start of a binary segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ATLASSEG";
/// Directory of registry segments inside the store.
pub const META_DIR: &str = "atlas.meta";
/// Segments after which a flush writes one snapshot segment instead of a delta.
pub const MAX_SEGMENTS: usize = 16;
const FORMAT_TAG: &str = "atlas-registry";
const SEGMENT_TAG: &str = "atlas-registry-segment";
/// Largest decoded binary segment accepted, whatever its size.
const MAX_DECODED_SEGMENT_BYTES: u64 = 16 << 30;
/// Decoded size every binary segment may reach, whatever its compression ratio.
const MIN_DECODED_SEGMENT_CAP: u64 = 64 << 20;
/// Largest compression ratio accepted for a segment decoding past
/// [`MIN_DECODED_SEGMENT_CAP`].
const MAX_SEGMENT_RATIO: u64 = 4096;

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

    /// A fresh, never used name for a segment in `format`.
    pub(crate) fn fresh(format: MetaFormat) -> SegmentId {
        let ext = match format {
            MetaFormat::Json => "json",
            MetaFormat::Binary => "bin",
        };
        SegmentId(format!("s-{:032x}.{ext}", array_format::random_uid()))
    }

    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The decoded manifest (`atlas.json`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Manifest {
    pub generation: u64,
    pub compression: Compression,
    pub meta_format: MetaFormat,
    /// Array name → layer files, oldest first.
    pub arrays: IndexMap<String, Vec<LayerId>>,
    /// Array name → its directory under the root: an id the manifest assigned
    /// (`atlas.a<N>`), or the array's own name in stores written before ids
    /// existed. Every array of `arrays` has one; no two share one.
    pub dirs: IndexMap<String, String>,
    /// The next directory id to assign (never reused).
    pub next_dir: u64,
    /// Registry segments, oldest first.
    pub segments: Vec<SegmentId>,
    /// The store's maintenance policy.
    pub policy: Policy,
    /// Files no longer named as live, kept until their grace period passes
    /// (readers of older generations may still read them).
    pub retired: Vec<Retired>,
}

/// The store's maintenance policy, kept in the manifest (`StoreConfig` sets it
/// at creation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// A flush that leaves an array file with more layers than this merges
    /// that file's layers into one base (an LSM's size trigger), so layer and
    /// descriptor counts stay bounded without the user running `compact`.
    pub max_layers_per_array: u32,
    /// Retired layers and registry segments are deleted only this long after
    /// the commit that retired them: readers that opened an older generation
    /// (in other processes or on other machines) keep working that long.
    pub gc_grace_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_layers_per_array: 16,
            gc_grace_secs: 3600,
        }
    }
}

/// A file retired by a commit, deleted once its grace period has passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Retired {
    /// Directory under the store root: an array's name, or `atlas.meta`.
    pub dir: String,
    /// File name in it (a layer or segment id).
    pub file: String,
    /// Commit time that retired it, milliseconds since the Unix epoch.
    pub since_ms: u64,
}

impl Retired {
    pub(crate) fn expired(&self, now_ms: u64, policy: Policy) -> bool {
        now_ms
            >= self
                .since_ms
                .saturating_add(policy.gc_grace_secs.saturating_mul(1000))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The first fields of a manifest, read first so a future version is reported as such.
#[derive(Deserialize)]
struct Head {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
struct ManifestRepr {
    format: String,
    version: u32,
    generation: u64,
    codec: String,
    shuffle: bool,
    meta_format: String,
    arrays: IndexMap<String, ArrayFileRepr>,
    segments: Vec<String>,
    /// Absent before directory ids: 0.
    #[serde(default)]
    next_dir: u64,
    /// Absent in stores written before the policy existed: the default.
    #[serde(default)]
    policy: Policy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired: Vec<Retired>,
}

#[derive(Serialize, Deserialize)]
struct ArrayFileRepr {
    /// Absent in stores written before directory ids: the array's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir: Option<String>,
    layers: Vec<String>,
}

/// Prefix of the directory ids the manifest assigns. Array names may not start
/// with `atlas.` (in any letter case), so an id never equals an array's name
/// nor, on a case-insensitive file system, collides with one.
pub(crate) const DIR_ID_PREFIX: &str = "atlas.a";

/// The directory name of id `n`.
pub(crate) fn dir_id(n: u64) -> String {
    format!("{DIR_ID_PREFIX}{n}")
}

/// True for a directory id (`atlas.a` + decimal digits).
pub(crate) fn is_dir_id(s: &str) -> bool {
    s.strip_prefix(DIR_ID_PREFIX)
        .is_some_and(|d| !d.is_empty() && d.len() <= 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Serialize, Deserialize)]
struct SegmentRepr {
    format: String,
    version: u32,
    /// True when this segment holds every dataset (earlier segments are void).
    snapshot: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deleted: Vec<String>,
    schemas: Vec<SchemaRepr>,
    /// Distinct per-array attribute sets, referenced by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attr_sets: Vec<IndexMap<String, Attr>>,
    datasets: Vec<DatasetRepr>,
}

#[derive(Serialize, Deserialize)]
struct SchemaRepr {
    dtype: String,
    dims: Vec<String>,
    shape: Vec<u64>,
    chunk_shape: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fill_value: Option<Attr>,
}

#[derive(Serialize, Deserialize)]
struct DatasetRepr {
    name: String,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    attrs: IndexMap<String, Attr>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    arrays: IndexMap<String, DsArrayRepr>,
}

#[derive(Serialize, Deserialize)]
struct DsArrayRepr {
    schema: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attrs: Option<usize>,
}

fn fill_to_attr(f: &FillValue) -> Attr {
    match f {
        FillValue::Bool(v) => Attr::Bool(*v),
        FillValue::Int8(v) => Attr::Int64(i64::from(*v)),
        FillValue::Int16(v) => Attr::Int64(i64::from(*v)),
        FillValue::Int32(v) => Attr::Int64(i64::from(*v)),
        FillValue::Int64(v) => Attr::Int64(*v),
        FillValue::UInt8(v) => Attr::UInt64(u64::from(*v)),
        FillValue::UInt16(v) => Attr::UInt64(u64::from(*v)),
        FillValue::UInt32(v) => Attr::UInt64(u64::from(*v)),
        FillValue::UInt64(v) => Attr::UInt64(*v),
        FillValue::Float32(v) => Attr::Float64(f64::from(*v)),
        FillValue::Float64(v) => Attr::Float64(*v),
        FillValue::String(v) => Attr::String(v.clone()),
        FillValue::Timestamp(v) => Attr::Timestamp(*v),
    }
}

fn attr_to_fill(a: &Attr, dtype: DType) -> Option<FillValue> {
    Some(match (dtype, a) {
        (DType::Bool, Attr::Bool(v)) => FillValue::Bool(*v),
        (DType::Int8, Attr::Int64(v)) => FillValue::Int8(i8::try_from(*v).ok()?),
        (DType::Int16, Attr::Int64(v)) => FillValue::Int16(i16::try_from(*v).ok()?),
        (DType::Int32, Attr::Int64(v)) => FillValue::Int32(i32::try_from(*v).ok()?),
        (DType::Int64, Attr::Int64(v)) => FillValue::Int64(*v),
        (DType::UInt8, Attr::UInt64(v)) => FillValue::UInt8(u8::try_from(*v).ok()?),
        (DType::UInt16, Attr::UInt64(v)) => FillValue::UInt16(u16::try_from(*v).ok()?),
        (DType::UInt32, Attr::UInt64(v)) => FillValue::UInt32(u32::try_from(*v).ok()?),
        (DType::UInt64, Attr::UInt64(v)) => FillValue::UInt64(*v),
        // f32 → f64 → f32 is exact, NaN payloads included.
        (DType::Float32, Attr::Float64(v)) => FillValue::Float32(*v as f32),
        (DType::Float64, Attr::Float64(v)) => FillValue::Float64(*v),
        (DType::String, Attr::String(v)) => FillValue::String(v.clone()),
        (DType::Timestamp, Attr::Timestamp(v)) => FillValue::Timestamp(TimestampNs(v.0)),
        _ => return None,
    })
}

/// Hashes a schema by value (floats by bits) so equal schemas are stored once.
struct SchemaKey<'a>(&'a ArraySchema);

impl Hash for SchemaKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let s = self.0;
        s.dtype.code().hash(h);
        s.dims.hash(h);
        s.shape.hash(h);
        s.chunk_shape.hash(h);
        s.fill_value.as_ref().map(ToString::to_string).hash(h);
    }
}

impl PartialEq for SchemaKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for SchemaKey<'_> {}

impl Manifest {
    pub(crate) fn new(compression: Compression, meta_format: MetaFormat) -> Self {
        Manifest {
            generation: 0,
            compression,
            meta_format,
            arrays: IndexMap::new(),
            dirs: IndexMap::new(),
            next_dir: 0,
            segments: Vec::new(),
            policy: Policy::default(),
            retired: Vec::new(),
        }
    }

    /// Encodes as (human-readable) JSON.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let repr = ManifestRepr {
            format: FORMAT_TAG.to_owned(),
            version: REGISTRY_VERSION,
            generation: self.generation,
            codec: self.compression.codec.to_string(),
            shuffle: self.compression.shuffle,
            meta_format: self.meta_format.name().to_owned(),
            arrays: self
                .arrays
                .iter()
                .map(|(k, v)| {
                    let layers = v.iter().map(|l| l.as_str().to_owned()).collect();
                    let dir = self.dirs.get(k).cloned();
                    (k.clone(), ArrayFileRepr { dir, layers })
                })
                .collect(),
            segments: self.segments.iter().map(|s| s.0.clone()).collect(),
            next_dir: self.next_dir,
            policy: self.policy,
            retired: self.retired.clone(),
        };
        let mut out = serde_json::to_vec_pretty(&repr).expect("manifest serializes");
        out.push(b'\n');
        out
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let corrupt = |reason: String| Error::CorruptRegistry {
            path: path.to_owned(),
            reason,
        };
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("json: {e}")))?;
        if head.format != FORMAT_TAG {
            return Err(corrupt(format!(
                "format tag {:?} is not {FORMAT_TAG:?}",
                head.format
            )));
        }
        if head.version != REGISTRY_VERSION {
            return Err(Error::UnsupportedRegistry {
                path: path.to_owned(),
                version: head.version,
                supported: REGISTRY_VERSION,
            });
        }
        let repr: ManifestRepr =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("json: {e}")))?;
        let codec = Codec::parse(&repr.codec)
            .ok_or_else(|| corrupt(format!("unknown codec {:?}", repr.codec)))?;
        let meta_format = match repr.meta_format.as_str() {
            "json" => MetaFormat::Json,
            "binary" => MetaFormat::Binary,
            other => return Err(corrupt(format!("unknown metadata format {other:?}"))),
        };
        let mut arrays = IndexMap::with_capacity(repr.arrays.len());
        let mut dirs: IndexMap<String, String> = IndexMap::with_capacity(repr.arrays.len());
        let mut dirs_seen = std::collections::HashSet::new();
        for (name, a) in repr.arrays {
            validate_array_name(&name).map_err(|e| corrupt(e.to_string()))?;
            let dir = a.dir.unwrap_or_else(|| name.clone());
            if dir != name && !is_dir_id(&dir) {
                return Err(corrupt(format!("bad directory {dir:?} for array {name:?}")));
            }
            if is_dir_id(&dir)
                && dir[DIR_ID_PREFIX.len()..].parse::<u64>().ok() >= Some(repr.next_dir)
            {
                return Err(corrupt(format!(
                    "directory {dir:?} is not below next_dir {}",
                    repr.next_dir
                )));
            }
            if !dirs_seen.insert(dir.clone()) {
                return Err(corrupt(format!("two arrays share directory {dir:?}")));
            }
            dirs.insert(name.clone(), dir);
            let layers = a
                .layers
                .into_iter()
                .map(|l| {
                    LayerId::new(l.clone()).ok_or_else(|| corrupt(format!("bad layer name {l:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            arrays.insert(name, layers);
        }
        let segments = repr
            .segments
            .into_iter()
            .map(|s| {
                SegmentId::new(s.clone()).ok_or_else(|| corrupt(format!("bad segment name {s:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            generation: repr.generation,
            compression: Compression {
                codec,
                shuffle: repr.shuffle,
            },
            meta_format,
            arrays,
            dirs,
            next_dir: repr.next_dir,
            segments,
            policy: repr.policy,
            retired: repr
                .retired
                .into_iter()
                .map(|r| {
                    let ok = (r.dir == META_DIR
                        || is_dir_id(&r.dir)
                        || validate_array_name(&r.dir).is_ok())
                        && !r.dir.contains('/')
                        && (LayerId::new(r.file.clone()).is_some()
                            || SegmentId::new(r.file.clone()).is_some());
                    if ok {
                        Ok(r)
                    } else {
                        Err(corrupt(format!(
                            "bad retired file {:?}/{:?}",
                            r.dir, r.file
                        )))
                    }
                })
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

/// Encodes a segment: `deleted` tombstones, then `datasets` upserts in order.
pub(crate) fn encode_segment<'a>(
    meta_format: MetaFormat,
    snapshot: bool,
    deleted: Vec<String>,
    datasets_in: impl Iterator<Item = (&'a String, &'a DatasetMeta)>,
) -> Vec<u8> {
    let mut schemas: Vec<SchemaRepr> = Vec::new();
    let mut index: HashMap<SchemaKey<'_>, usize> = HashMap::new();
    let mut by_ptr: HashMap<*const ArraySchema, usize> = HashMap::new();
    let mut attr_sets: Vec<IndexMap<String, Attr>> = Vec::new();
    let mut attr_index: HashMap<String, usize> = HashMap::new();
    let mut attr_by_ptr: HashMap<*const IndexMap<String, Attr>, usize> = HashMap::new();
    let mut datasets = Vec::with_capacity(datasets_in.size_hint().0);
    for (name, ds) in datasets_in {
        let mut arrays = IndexMap::with_capacity(ds.arrays.len());
        for (aname, entry) in &ds.arrays {
            let idx = *by_ptr.entry(Arc::as_ptr(&entry.schema)).or_insert_with(|| {
                *index.entry(SchemaKey(&entry.schema)).or_insert_with(|| {
                    let s = &entry.schema;
                    schemas.push(SchemaRepr {
                        dtype: s.dtype.name().to_owned(),
                        dims: s.dims.clone(),
                        shape: s.shape.clone(),
                        chunk_shape: s.chunk_shape.clone(),
                        fill_value: s.fill_value.as_ref().map(fill_to_attr),
                    });
                    schemas.len() - 1
                })
            });
            let attrs = (!entry.attributes.is_empty()).then(|| {
                // Shared maps are recognised by pointer; equal unshared ones by content.
                *attr_by_ptr
                    .entry(Arc::as_ptr(&entry.attributes))
                    .or_insert_with(|| {
                        let key = serde_json::to_string(&*entry.attributes)
                            .expect("attributes serialize");
                        *attr_index.entry(key).or_insert_with(|| {
                            attr_sets.push((*entry.attributes).clone());
                            attr_sets.len() - 1
                        })
                    })
            });
            arrays.insert(aname.clone(), DsArrayRepr { schema: idx, attrs });
        }
        datasets.push(DatasetRepr {
            name: name.clone(),
            attrs: ds.attributes.clone(),
            arrays,
        });
    }
    let repr = SegmentRepr {
        format: SEGMENT_TAG.to_owned(),
        version: SEGMENT_VERSION,
        snapshot,
        deleted,
        schemas,
        attr_sets,
        datasets,
    };
    match meta_format {
        MetaFormat::Json => {
            let mut out = serde_json::to_vec(&repr).expect("segment serializes");
            out.push(b'\n');
            out
        }
        MetaFormat::Binary => {
            let packed = rmp_serde::to_vec_named(&repr).expect("segment serializes");
            let mut out = Vec::with_capacity(packed.len() / 3 + 16);
            out.extend_from_slice(&SEGMENT_MAGIC);
            out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
            out.extend_from_slice(&zstd::bulk::compress(&packed, 3).expect("in-memory zstd"));
            out
        }
    }
}

/// A decoded segment.
#[derive(Debug, PartialEq)]
pub(crate) struct Segment {
    pub snapshot: bool,
    pub deleted: Vec<String>,
    pub datasets: Vec<(String, DatasetMeta)>,
}

impl Segment {
    /// Replays this segment onto a dataset map: a snapshot replaces it; a delta
    /// removes the tombstoned names, then updates datasets in place or appends
    /// new ones, which reproduces the live insertion order.
    pub(crate) fn apply(self, map: &mut IndexMap<String, DatasetMeta>) {
        if self.snapshot {
            map.clear();
        }
        if !self.deleted.is_empty() {
            let gone: HashSet<&String> = self.deleted.iter().collect();
            map.retain(|k, _| !gone.contains(k));
        }
        for (name, meta) in self.datasets {
            map.insert(name, meta);
        }
    }
}

/// Decodes either segment format (detected from the first bytes).
pub(crate) fn decode_segment(bytes: &[u8], path: &Path) -> Result<Segment> {
    let corrupt = |reason: String| Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    };
    let repr: SegmentRepr = if bytes.starts_with(&SEGMENT_MAGIC) {
        let v = bytes
            .get(8..12)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or_else(|| corrupt("truncated binary header".into()))?;
        if v != SEGMENT_VERSION {
            return Err(Error::UnsupportedRegistry {
                path: path.to_owned(),
                version: v,
                supported: SEGMENT_VERSION,
            });
        }
        let cap = decoded_segment_cap(bytes.len() as u64);
        let packed = decompress_segment(&bytes[12..], cap, path)?;
        rmp_serde::from_slice(&packed).map_err(|e| corrupt(format!("msgpack: {e}")))?
    } else {
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("json: {e}")))?
    };
    if repr.format != SEGMENT_TAG {
        return Err(corrupt(format!(
            "format tag {:?} is not {SEGMENT_TAG:?}",
            repr.format
        )));
    }
    if repr.version != SEGMENT_VERSION {
        return Err(Error::UnsupportedRegistry {
            path: path.to_owned(),
            version: repr.version,
            supported: SEGMENT_VERSION,
        });
    }
    let mut schemas = Vec::with_capacity(repr.schemas.len());
    for (i, s) in repr.schemas.into_iter().enumerate() {
        let dtype = DType::from_name(&s.dtype)
            .ok_or_else(|| corrupt(format!("unknown dtype {:?}", s.dtype)))?;
        let fill =
            match &s.fill_value {
                None => None,
                Some(a) => Some(attr_to_fill(a, dtype).ok_or_else(|| {
                    corrupt(format!("schema {i}: fill value {a} is not a {dtype}"))
                })?),
            };
        let schema = ArraySchema::new(
            "<registry>",
            dtype,
            s.dims,
            s.shape,
            Some(s.chunk_shape),
            fill,
        )
        .map_err(|e| corrupt(format!("schema {i}: {e}")))?;
        schemas.push(Arc::new(schema));
    }
    let empty_attrs = Arc::new(IndexMap::new());
    let mut attr_sets = Vec::with_capacity(repr.attr_sets.len());
    for set in repr.attr_sets {
        for k in set.keys() {
            validate_attribute_name(k).map_err(|e| corrupt(e.to_string()))?;
        }
        attr_sets.push(Arc::new(set));
    }
    for d in &repr.deleted {
        validate_dataset_name(d).map_err(|e| corrupt(e.to_string()))?;
    }
    let mut seen = HashSet::with_capacity(repr.datasets.len());
    let mut datasets = Vec::with_capacity(repr.datasets.len());
    for d in repr.datasets {
        validate_dataset_name(&d.name).map_err(|e| corrupt(e.to_string()))?;
        for k in d.attrs.keys() {
            validate_attribute_name(k).map_err(|e| corrupt(e.to_string()))?;
        }
        let mut ds_arrays = IndexMap::with_capacity(d.arrays.len());
        for (aname, a) in d.arrays {
            validate_array_name(&aname).map_err(|e| corrupt(e.to_string()))?;
            let schema = schemas
                .get(a.schema)
                .cloned()
                .ok_or_else(|| corrupt(format!("schema index {} out of range", a.schema)))?;
            let attributes = match a.attrs {
                None => Arc::clone(&empty_attrs),
                Some(i) => attr_sets
                    .get(i)
                    .cloned()
                    .ok_or_else(|| corrupt(format!("attribute set index {i} out of range")))?,
            };
            ds_arrays.insert(aname, ArrayEntry { schema, attributes });
        }
        if !seen.insert(d.name.clone()) {
            return Err(corrupt(format!("dataset {:?} appears twice", d.name)));
        }
        datasets.push((
            d.name,
            DatasetMeta {
                attributes: d.attrs,
                arrays: ds_arrays,
            },
        ));
    }
    Ok(Segment {
        snapshot: repr.snapshot,
        deleted: repr.deleted,
        datasets,
    })
}

/// How many bytes the `MessagePack` document of a binary segment of `len` bytes
/// may decompress to: `min(16 GiB, max(64 MiB, 4096 × len))`.
///
/// The ratio is generous because real registries compress very well: a
/// dataset record that repeats the previous one but for its name costs zstd a
/// few bytes, whatever its length. Measured with this writer (`MessagePack`,
/// zstd level 3): 1,000,000 datasets of 20 arrays 204× (with two per-dataset
/// attributes) to 288× (without); 100,000 datasets of 100 arrays 650–720×;
/// 20,000 datasets of 1,000 arrays 4,006×. Refusing a segment makes the whole
/// store unopenable, so the cap must stay above what the writer produces;
/// every segment decoding to at most 64 MiB is accepted whatever its ratio.
/// A hostile segment can thus make the reader hold at most 64 MiB, or 4096
/// times its own size, never more than 16 GiB.
fn decoded_segment_cap(len: u64) -> u64 {
    len.saturating_mul(MAX_SEGMENT_RATIO)
        .clamp(MIN_DECODED_SEGMENT_CAP, MAX_DECODED_SEGMENT_BYTES)
}

/// Decompresses the Zstandard frame of a binary segment, holding at most
/// `cap` bytes: a frame whose header declares more is refused before anything
/// is decoded, and the stream is read through a bound (`take`), never
/// `decode_all`, so a frame that produces more is refused at `cap + 1` bytes.
/// Buffers grow only as real bytes arrive (or at once to the declared size,
/// which the writer always records), never past `cap`. Too much is
/// `CorruptRegistry`; memory the process cannot get is `ResourceExhausted`.
fn decompress_segment(frame: &[u8], cap: u64, path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let corrupt = |reason: String| Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    };
    let too_large = || {
        corrupt(format!(
            "decompresses to more than {cap} bytes, the cap for a segment of its size"
        ))
    };
    let out_of_memory = || {
        Error::Storage(Box::new(array_format::Error::io(
            "decompress",
            path,
            std::io::ErrorKind::OutOfMemory.into(),
        )))
    };
    let cap_len = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut packed = Vec::new();
    // An unknown or unreadable size is left to the decoder to judge.
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(frame) {
        if declared > cap {
            return Err(too_large());
        }
        // A failed reservation is not an error yet: the real bytes decide.
        let _ = packed.try_reserve_exact(declared as usize);
    }
    let mut stream = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| corrupt(format!("zstd: {e}")))?
        .take(cap.saturating_add(1));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(format!("zstd: {e}"))),
        };
        let len = packed.len() + n;
        if len > cap_len {
            return Err(too_large());
        }
        if len > packed.capacity() {
            let target = packed.capacity().saturating_mul(2).clamp(len, cap_len);
            packed
                .try_reserve_exact(target - packed.len())
                .map_err(|_| out_of_memory())?;
        }
        packed.extend_from_slice(&buf[..n]);
    }
    Ok(packed)
}

/// Checks that every array a dataset uses has a file in the manifest.
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
        m.segments.push(SegmentId::fresh(MetaFormat::Binary));
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes, Path::new("a")).unwrap(), m);
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
        let future = text.replace("\"version\": 2", "\"version\": 9");
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
