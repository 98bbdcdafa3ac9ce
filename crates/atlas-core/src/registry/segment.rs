//! Registry segments (`atlas.meta/s-….json|bin`): immutable batches of
//! dataset records, their JSON and `MessagePack` + Zstd encodings, schema and
//! attribute-set deduplication, and bounded, validated decoding.

use super::{
    check_head, validate_array_name, validate_attribute_name, validate_dataset_name, Arc,
    ArrayEntry, ArraySchema, Attr, DType, DatasetMeta, Deserialize, Error, FillValue, HashSet,
    IndexMap, Path, Result, Serialize, TimestampNs, MAX_DECODED_SEGMENT_BYTES, MAX_SEGMENT_RATIO,
    MIN_DECODED_SEGMENT_CAP, SEGMENT_MAGIC, SEGMENT_TAG, SEGMENT_VERSION,
};
#[cfg(test)]
use super::{Hash, HashMap, Hasher, MetaFormat};

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
pub(super) struct SchemaRepr {
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

/// The stored form of a schema.
pub(super) fn schema_to_repr(s: &ArraySchema) -> SchemaRepr {
    SchemaRepr {
        dtype: s.dtype.name().to_owned(),
        dims: s.dims.clone(),
        shape: s.shape.clone(),
        chunk_shape: s.chunk_shape.clone(),
        fill_value: s.fill_value.as_ref().map(fill_to_attr),
    }
}

/// A schema from its stored form, validated; the error is the reason.
pub(super) fn schema_from_repr(s: SchemaRepr) -> std::result::Result<ArraySchema, String> {
    let dtype = DType::from_name(&s.dtype).ok_or_else(|| format!("unknown dtype {:?}", s.dtype))?;
    let fill = match &s.fill_value {
        None => None,
        Some(a) => {
            Some(attr_to_fill(a, dtype).ok_or_else(|| format!("fill value {a} is not a {dtype}"))?)
        }
    };
    ArraySchema::new(
        "<registry>",
        dtype,
        s.dims,
        s.shape,
        Some(s.chunk_shape),
        fill,
    )
    .map_err(|e| e.to_string())
}

/// Hashes a schema by value (floats by bits) so equal schemas are stored once.
#[cfg(test)]
struct SchemaKey<'a>(&'a ArraySchema);

#[cfg(test)]
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

#[cfg(test)]
impl PartialEq for SchemaKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

#[cfg(test)]
impl Eq for SchemaKey<'_> {}

/// Encodes a segment: `deleted` tombstones, then `datasets` upserts in order.
/// (This build writes runs; segments are written only by tests, as stores
/// written before runs hold them.)
#[cfg(test)]
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
                    schemas.push(schema_to_repr(&entry.schema));
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
    check_head(
        &repr.format,
        repr.version,
        SEGMENT_TAG,
        SEGMENT_VERSION,
        path,
    )?;
    let mut schemas = Vec::with_capacity(repr.schemas.len());
    for (i, s) in repr.schemas.into_iter().enumerate() {
        let schema = schema_from_repr(s).map_err(|e| corrupt(format!("schema {i}: {e}")))?;
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
pub(super) fn decoded_segment_cap(len: u64) -> u64 {
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
