//! The registry (`atlas.json`): datasets, their arrays' schemas and attributes,
//! and for every array file the exact ordered list of layer files that make it
//! up. Replacing this file atomically is the store's only commit point.
//!
//! **Invariant:** decoding validates every name, schema index and layer name,
//! so a damaged or hostile registry is an error, never a panic or a path
//! outside the store.

use std::collections::HashMap;
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

/// The registry format version this build writes and reads.
pub const REGISTRY_VERSION: u32 = 1;
/// Magic at the start of a binary registry.
pub const BINARY_MAGIC: [u8; 8] = *b"ATLASREG";
const FORMAT_TAG: &str = "atlas-registry";
/// Largest decoded binary registry accepted (a bound against hostile frames).
const MAX_DECODED_REGISTRY_BYTES: u64 = 16 << 30;

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

/// The decoded registry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Registry {
    pub generation: u64,
    pub compression: Compression,
    pub meta_format: MetaFormat,
    /// Array name → layer files, oldest first.
    pub arrays: IndexMap<String, Vec<LayerId>>,
    pub datasets: IndexMap<String, DatasetMeta>,
}

#[derive(Serialize, Deserialize)]
struct FileRepr {
    format: String,
    version: u32,
    generation: u64,
    codec: String,
    shuffle: bool,
    arrays: IndexMap<String, ArrayFileRepr>,
    schemas: Vec<SchemaRepr>,
    /// Distinct per-array attribute sets, referenced by index (shared by the
    /// many datasets whose arrays carry the same units, names, ranges…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attr_sets: Vec<IndexMap<String, Attr>>,
    datasets: Vec<DatasetRepr>,
}

#[derive(Serialize, Deserialize)]
struct ArrayFileRepr {
    layers: Vec<String>,
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

impl Registry {
    pub(crate) fn new(compression: Compression, meta_format: MetaFormat) -> Self {
        Registry {
            generation: 0,
            compression,
            meta_format,
            arrays: IndexMap::new(),
            datasets: IndexMap::new(),
        }
    }

    /// Encodes in `self.meta_format`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_parts(
            self.generation,
            self.compression,
            self.meta_format,
            &self.arrays,
            &self.datasets,
        )
    }
}

/// Encodes a registry from its parts, so a flush encodes straight from the live
/// dataset map without copying it.
pub(crate) fn encode_parts(
    generation: u64,
    compression: Compression,
    meta_format: MetaFormat,
    arrays: &IndexMap<String, Vec<LayerId>>,
    datasets_in: &IndexMap<String, DatasetMeta>,
) -> Vec<u8> {
    let mut schemas: Vec<SchemaRepr> = Vec::new();
    let mut index: HashMap<SchemaKey<'_>, usize> = HashMap::new();
    let mut by_ptr: HashMap<*const ArraySchema, usize> = HashMap::new();
    let mut attr_sets: Vec<IndexMap<String, Attr>> = Vec::new();
    let mut attr_index: HashMap<String, usize> = HashMap::new();
    let mut attr_by_ptr: HashMap<*const IndexMap<String, Attr>, usize> = HashMap::new();
    let mut datasets = Vec::with_capacity(datasets_in.len());
    for (name, ds) in datasets_in {
        let mut arrays = IndexMap::with_capacity(ds.arrays.len());
        for (aname, entry) in &ds.arrays {
            let ptr = Arc::as_ptr(&entry.schema);
            let idx = *by_ptr.entry(ptr).or_insert_with(|| {
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
    let repr = FileRepr {
        format: FORMAT_TAG.to_owned(),
        version: REGISTRY_VERSION,
        generation,
        codec: compression.codec.to_string(),
        shuffle: compression.shuffle,
        arrays: arrays
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ArrayFileRepr {
                        layers: v.iter().map(|l| l.as_str().to_owned()).collect(),
                    },
                )
            })
            .collect(),
        schemas,
        attr_sets,
        datasets,
    };
    match meta_format {
        MetaFormat::Json => {
            let mut out = serde_json::to_vec(&repr).expect("registry serializes");
            out.push(b'\n');
            out
        }
        MetaFormat::Binary => {
            let packed = rmp_serde::to_vec_named(&repr).expect("registry serializes");
            let mut out = Vec::with_capacity(packed.len() / 3 + 16);
            out.extend_from_slice(&BINARY_MAGIC);
            out.extend_from_slice(&REGISTRY_VERSION.to_le_bytes());
            out.extend_from_slice(&zstd::bulk::compress(&packed, 3).expect("in-memory zstd"));
            out
        }
    }
}

impl Registry {
    /// Decodes either format (detected from the first bytes).
    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Registry> {
        let corrupt = |reason: String| Error::CorruptRegistry {
            path: path.to_owned(),
            reason,
        };
        let (repr, meta_format): (FileRepr, _) = if bytes.starts_with(&BINARY_MAGIC) {
            let v = bytes
                .get(8..12)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or_else(|| corrupt("truncated binary header".into()))?;
            if v != REGISTRY_VERSION {
                return Err(Error::UnsupportedRegistry {
                    path: path.to_owned(),
                    version: v,
                    supported: REGISTRY_VERSION,
                });
            }
            // Stream-decode with a bound, so a hostile frame cannot claim memory
            // beyond what a real registry could need.
            let mut packed = Vec::new();
            let limit = MAX_DECODED_REGISTRY_BYTES
                .min((bytes.len() as u64).saturating_mul(1000).max(1 << 20));
            zstd::stream::read::Decoder::new(&bytes[12..])
                .and_then(|d| {
                    std::io::Read::read_to_end(&mut std::io::Read::take(d, limit + 1), &mut packed)
                })
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            if packed.len() as u64 > limit {
                return Err(corrupt(format!("decompresses to more than {limit} bytes")));
            }
            let repr =
                rmp_serde::from_slice(&packed).map_err(|e| corrupt(format!("msgpack: {e}")))?;
            (repr, MetaFormat::Binary)
        } else {
            let repr = serde_json::from_slice(bytes).map_err(|e| corrupt(format!("json: {e}")))?;
            (repr, MetaFormat::Json)
        };
        if repr.format != FORMAT_TAG {
            return Err(corrupt(format!(
                "format tag {:?} is not {FORMAT_TAG:?}",
                repr.format
            )));
        }
        if repr.version != REGISTRY_VERSION {
            return Err(Error::UnsupportedRegistry {
                path: path.to_owned(),
                version: repr.version,
                supported: REGISTRY_VERSION,
            });
        }
        let codec = Codec::parse(&repr.codec)
            .ok_or_else(|| corrupt(format!("unknown codec {:?}", repr.codec)))?;
        let mut arrays = IndexMap::with_capacity(repr.arrays.len());
        for (name, a) in repr.arrays {
            validate_array_name(&name).map_err(|e| corrupt(e.to_string()))?;
            let layers = a
                .layers
                .into_iter()
                .map(|l| {
                    LayerId::new(l.clone()).ok_or_else(|| corrupt(format!("bad layer name {l:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            arrays.insert(name, layers);
        }
        let mut schemas = Vec::with_capacity(repr.schemas.len());
        for (i, s) in repr.schemas.into_iter().enumerate() {
            let dtype = DType::from_name(&s.dtype)
                .ok_or_else(|| corrupt(format!("unknown dtype {:?}", s.dtype)))?;
            let fill = match &s.fill_value {
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
        let mut datasets = IndexMap::with_capacity(repr.datasets.len());
        for d in repr.datasets {
            validate_dataset_name(&d.name).map_err(|e| corrupt(e.to_string()))?;
            for k in d.attrs.keys() {
                validate_attribute_name(k).map_err(|e| corrupt(e.to_string()))?;
            }
            let mut ds_arrays = IndexMap::with_capacity(d.arrays.len());
            for (aname, a) in d.arrays {
                if !arrays.contains_key(&aname) {
                    return Err(corrupt(format!(
                        "dataset {:?} uses array {aname:?}, which has no file",
                        d.name
                    )));
                }
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
            let prev = datasets.insert(
                d.name.clone(),
                DatasetMeta {
                    attributes: d.attrs,
                    arrays: ds_arrays,
                },
            );
            if prev.is_some() {
                return Err(corrupt(format!("dataset {:?} appears twice", d.name)));
            }
        }
        Ok(Registry {
            generation: repr.generation,
            compression: Compression {
                codec,
                shuffle: repr.shuffle,
            },
            meta_format,
            arrays,
            datasets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(fmt: MetaFormat) -> Registry {
        let mut r = Registry::new(Compression::default(), fmt);
        r.generation = 3;
        let layer = LayerId::new(format!("d-{:032x}.af", 42)).unwrap();
        r.arrays.insert("temp".into(), vec![layer]);
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
        for i in 0..3 {
            let mut ds = DatasetMeta::default();
            ds.attributes.insert("month".into(), Attr::Int64(i));
            ds.arrays.insert(
                "temp".into(),
                ArrayEntry {
                    schema: Arc::clone(&schema),
                    attributes: Arc::new(IndexMap::from([(
                        "units".to_owned(),
                        Attr::from("degC"),
                    )])),
                },
            );
            r.datasets.insert(format!("ds{i}"), ds);
        }
        r
    }

    #[test]
    fn both_formats_round_trip_and_share_schemas() {
        for fmt in [MetaFormat::Json, MetaFormat::Binary] {
            let r = sample(fmt);
            let bytes = r.encode();
            let back = Registry::decode(&bytes, Path::new("atlas.json")).unwrap();
            assert_eq!(back, r);
            if fmt == MetaFormat::Json {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(v["schemas"].as_array().unwrap().len(), 1);
            }
        }
    }

    #[test]
    fn damaged_registries_are_errors() {
        let bytes = sample(MetaFormat::Json).encode();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            assert!(matches!(
                Registry::decode(&bytes[..cut], Path::new("a")),
                Err(Error::CorruptRegistry { .. })
            ));
        }
        let text = String::from_utf8(bytes).unwrap();
        let evil = text.replace("d-0000", "../../0");
        assert_ne!(evil, text);
        assert!(Registry::decode(evil.as_bytes(), Path::new("a")).is_err());
        let future = text.replace("\"version\":1", "\"version\":9");
        assert_ne!(future, text);
        assert!(matches!(
            Registry::decode(future.as_bytes(), Path::new("a")),
            Err(Error::UnsupportedRegistry { version: 9, .. })
        ));
        let bin = sample(MetaFormat::Binary).encode();
        for cut in [8, 12, bin.len() - 1] {
            assert!(Registry::decode(&bin[..cut], Path::new("a")).is_err());
        }
    }
}
