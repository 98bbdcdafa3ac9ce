//! The manifest (`atlas.json`): the commit point. Its JSON shape, decoding
//! with validation, the store policy, the retired list and directory ids.

use super::{
    check_head, validate_array_name, Codec, Compression, Deserialize, Error, IndexMap, LayerId,
    MetaFormat, Path, Result, RunId, SegmentId, Serialize, FORMAT_TAG, META_DIR, REGISTRY_VERSION,
};

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
    /// Registry segments, oldest first (stores written before runs; a commit
    /// by this build replaces them with a run).
    pub segments: Vec<SegmentId>,
    /// Registry runs, oldest first.
    pub runs: Vec<RunId>,
    /// The next dataset id to assign (ids are never reused).
    pub next_id: u64,
    /// Live datasets.
    pub n_datasets: u64,
    /// Array name → number of live datasets that have it (every array of
    /// `arrays` has at least one).
    pub users: IndexMap<String, u64>,
    /// The manifest format version it was read in (written: the current one).
    pub version: u32,
    /// The store's maintenance policy.
    pub policy: Policy,
    /// Files no longer named as live, kept until their grace period passes
    /// (readers of older generations may still read them).
    pub retired: Vec<Retired>,
    /// A random id written with each commit, so a writer whose conditional
    /// write of the manifest timed out can read it back and tell whether its
    /// own commit landed. Absent in stores written before object storage.
    pub commit_id: Option<String>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    runs: Vec<String>,
    #[serde(default)]
    next_id: u64,
    #[serde(default)]
    n_datasets: u64,
    /// Absent before directory ids: 0.
    #[serde(default)]
    next_dir: u64,
    /// Absent in stores written before the policy existed: the default.
    #[serde(default)]
    policy: Policy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired: Vec<Retired>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ArrayFileRepr {
    /// Absent in stores written before directory ids: the array's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir: Option<String>,
    layers: Vec<String>,
    /// Datasets that have the array (absent before runs).
    #[serde(default)]
    users: u64,
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
            runs: Vec::new(),
            next_id: 0,
            n_datasets: 0,
            users: IndexMap::new(),
            version: REGISTRY_VERSION,
            policy: Policy::default(),
            retired: Vec::new(),
            commit_id: None,
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
                    let users = self.users.get(k).copied().unwrap_or(0);
                    (k.clone(), ArrayFileRepr { dir, layers, users })
                })
                .collect(),
            segments: self.segments.iter().map(|s| s.0.clone()).collect(),
            runs: self.runs.iter().map(|r| r.as_str().to_owned()).collect(),
            next_id: self.next_id,
            n_datasets: self.n_datasets,
            next_dir: self.next_dir,
            policy: self.policy,
            retired: self.retired.clone(),
            commit_id: self.commit_id.clone(),
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
        // Version 2 (segments, no ids) is read and upgraded by the next commit.
        let version = if head.version == 2 {
            2
        } else {
            REGISTRY_VERSION
        };
        check_head(&head.format, head.version, FORMAT_TAG, version, path)?;
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
        let mut users = IndexMap::with_capacity(repr.arrays.len());
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
            users.insert(name.clone(), a.users);
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
        let runs = repr
            .runs
            .into_iter()
            .map(|r| RunId::new(r.clone()).ok_or_else(|| corrupt(format!("bad run name {r:?}"))))
            .collect::<Result<Vec<_>>>()?;
        if version == REGISTRY_VERSION && !segments.is_empty() {
            return Err(corrupt("a version 3 manifest names segments".into()));
        }
        Ok(Manifest {
            runs,
            next_id: repr.next_id,
            n_datasets: repr.n_datasets,
            users,
            version,
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
            commit_id: repr
                .commit_id
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_hexdigit())),
            retired: repr
                .retired
                .into_iter()
                .map(|r| {
                    let ok = (r.dir == META_DIR
                        || is_dir_id(&r.dir)
                        || validate_array_name(&r.dir).is_ok())
                        && !r.dir.contains('/')
                        && (LayerId::new(r.file.clone()).is_some()
                            || SegmentId::new(r.file.clone()).is_some()
                            || RunId::new(r.file.clone()).is_some());
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
