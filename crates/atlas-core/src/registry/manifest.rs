//! The manifest (`atlas.json`): the commit point. Its JSON shape, decoding
//! with validation, the store policy, the retired list and directory ids.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
    /// (readers of older generations may still read them): the entries not
    /// in a sealed chunk. Empty until loaded when the list is in a side file.
    pub retired: Vec<Retired>,
    /// The rest of the retired list: sealed chunks, immutable side files
    /// of the oldest entries once the list is long (see [`Sealed`]).
    pub retired_sealed: Vec<Arc<Sealed>>,
    /// Sealed chunks the commit being prepared no longer names (dissolved
    /// by settling): deleted once it stands. Not stored.
    pub retired_dissolved: Vec<String>,
    /// The side file (in `atlas.history/`) holding the retired list, when it
    /// is too long to keep inline: only writers read it, so opening, `log`
    /// and `open_at` do not pay for files retired within the grace period.
    pub retired_file: Option<String>,
    /// Whether `retired` holds the whole list (inline, loaded, or built by a
    /// commit): only then may a commit or a sweep use it.
    pub retired_loaded: bool,
    /// A random id written with each commit, so a writer whose conditional
    /// write of the manifest timed out can read it back and tell whether its
    /// own commit landed. Absent in stores written before object storage.
    pub commit_id: Option<String>,
    /// The generation this one replaced (absent in the first commit and in
    /// stores written before history).
    pub parent: Option<u64>,
    /// What this commit did, when, and why (absent before history).
    pub commit: Option<CommitInfo>,
    /// The oldest generation the retention policy keeps: every generation
    /// from it to this one has its manifest (a history copy in
    /// `atlas.history/`, this one in `atlas.json`). `None`: a store written
    /// before history, which keeps none.
    pub history_from: Option<u64>,
    /// Live tags by name: each keeps its generation readable.
    pub tags: BTreeMap<String, TagEntry>,
    /// Names of deleted tags, never used again.
    pub dead_tags: BTreeSet<String>,
}

/// What one commit did (recorded in its manifest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommitInfo {
    /// Commit time, milliseconds since the Unix epoch; strictly greater than
    /// the parent's.
    pub time_ms: u64,
    /// The operation: `create`, `flush`, `compact`, `tag`, `untag`,
    /// `restore`, `gc` or `retention`.
    pub op: String,
    /// The user's message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Datasets created (including re-created under a new id).
    #[serde(default)]
    pub added: u64,
    /// Datasets whose record changed.
    #[serde(default)]
    pub changed: u64,
    /// Datasets deleted.
    #[serde(default)]
    pub deleted: u64,
    /// Bytes of new layer and run files this commit names.
    #[serde(default)]
    pub bytes_written: u64,
}

/// One tag: a name for a generation, kept in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagEntry {
    /// The tagged generation.
    pub generation: u64,
    /// Time of the commit that made the tag, ms since the Unix epoch.
    pub time_ms: u64,
    /// The user's message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The operations a commit records.
pub(crate) const OPERATIONS: [&str; 8] = [
    "create",
    "flush",
    "compact",
    "tag",
    "untag",
    "restore",
    "gc",
    "retention",
];

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
    /// History retention: the newest `keep_generations` generations
    /// (counting the current one; 0 reads as 1) stay readable with
    /// `Atlas::open_at`. Absent in older stores: 1 (no history).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub keep_generations: u64,
    /// History retention: generations committed less than this many seconds
    /// ago also stay readable (expired only by `Atlas::gc`, which reads
    /// their times). Absent in older stores: 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keep_secs: u64,
}

fn one() -> u64 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_one(n: &u64) -> bool {
    *n == 1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_layers_per_array: 16,
            gc_grace_secs: 3600,
            keep_generations: 1,
            keep_secs: 0,
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
    /// Commit time that retired it, milliseconds since the Unix epoch (or
    /// the later commit that stopped a retained generation from naming it).
    pub since_ms: u64,
    /// The generation of the commit that retired it: only generations
    /// older than it may name the file. 0: retired before history existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

impl Retired {
    /// True when a grace period that started at `since_ms` is over at `now_ms`.
    pub(crate) fn grace_over(since_ms: u64, now_ms: u64, policy: Policy) -> bool {
        now_ms >= since_ms.saturating_add(policy.gc_grace_secs.saturating_mul(1000))
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
    /// Version 5: the retired list is in this side file of `atlas.history/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commit: Option<CommitInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history_from: Option<u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, TagEntry>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    dead_tags: BTreeSet<String>,
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
            retired_sealed: Vec::new(),
            retired_dissolved: Vec::new(),
            retired_file: None,
            retired_loaded: true,
            commit_id: None,
            parent: None,
            commit: None,
            history_from: None,
            tags: BTreeMap::new(),
            dead_tags: BTreeSet::new(),
        }
    }

    /// Encodes as (human-readable) JSON.
    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_with(true)
    }

    /// Encodes without the retired list or its side file (a history copy:
    /// only the current manifest's list is ever read).
    pub(crate) fn encode_without_retired(&self) -> Vec<u8> {
        self.encode_with(false)
    }

    fn encode_with(&self, with_retired: bool) -> Vec<u8> {
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
            retired: if self.retired_file.is_some() || !with_retired {
                Vec::new()
            } else {
                self.retired.clone()
            },
            retired_file: self.retired_file.clone().filter(|_| with_retired),
            commit_id: self.commit_id.clone(),
            parent: self.parent,
            commit: self.commit.clone(),
            history_from: self.history_from,
            tags: self.tags.clone(),
            dead_tags: self.dead_tags.clone(),
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
        // Versions 2 (segments, no ids) and 3 (no history) are read and
        // upgraded by the next commit.
        let version = if (2..=4).contains(&head.version) {
            head.version
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
        check_history(&repr, &corrupt)?;
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
        if version >= 3 && !segments.is_empty() {
            return Err(corrupt(format!(
                "a version {version} manifest names segments"
            )));
        }
        Ok(Manifest {
            parent: repr.parent,
            commit: repr.commit,
            history_from: repr.history_from,
            tags: repr.tags,
            dead_tags: repr.dead_tags,
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
            retired_loaded: repr.retired_file.is_none(),
            retired_file: match repr.retired_file {
                Some(f) if version < 5 => {
                    return Err(corrupt(format!(
                        "a version {version} manifest names a retired list {f:?}"
                    )))
                }
                Some(f) if !is_retired_file(&f) => {
                    return Err(corrupt(format!("bad retired list name {f:?}")))
                }
                f => f,
            },
            retired: check_retired(repr.retired, &corrupt)?,
            retired_sealed: Vec::new(),
            retired_dissolved: Vec::new(),
        })
    }

    /// True when a commit of `self` writes its retired list to a side file
    /// (long, or with sealed chunks) rather than inline.
    pub(crate) fn retired_in_side_file(&self) -> bool {
        self.retired.len() > inline_retired_limit() || !self.retired_sealed.is_empty()
    }

    /// Every retired entry: the sealed chunks' and the loose ones.
    pub(crate) fn retired_all(&self) -> impl Iterator<Item = &Retired> {
        self.retired_sealed
            .iter()
            .flat_map(|c| c.entries.iter())
            .chain(&self.retired)
    }
}

/// Checks each retired entry names a file the store could have written.
fn check_retired(list: Vec<Retired>, corrupt: &dyn Fn(String) -> Error) -> Result<Vec<Retired>> {
    list.into_iter()
        .map(|r| {
            let ok =
                (r.dir == META_DIR || is_dir_id(&r.dir) || validate_array_name(&r.dir).is_ok())
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
        .collect()
}

/// Retired lists longer than this go to a side file instead of the manifest
/// (about 4 KB of JSON inline; past it, one more small write per commit).
const INLINE_RETIRED: usize = 32;

/// The longest retired list a commit keeps inline: [`INLINE_RETIRED`], or
/// `ATLAS_TEST_INLINE_RETIRED` when set (the crash loop sets a small value in
/// its child processes, so that their commits go through the side file).
pub(crate) fn inline_retired_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("ATLAS_TEST_INLINE_RETIRED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(INLINE_RETIRED)
    })
}

/// Tag of a retired-list side file.
const RETIRED_FORMAT: &str = "atlas-retired";

/// Tag of a sealed chunk of the retired list.
const CHUNK_FORMAT: &str = "atlas-retired-chunk";

/// True for a retired-list side file name (`retired-` + 32 hex digits +
/// `.json`).
pub(crate) fn is_retired_file(name: &str) -> bool {
    name.strip_prefix("retired-")
        .and_then(|n| n.strip_suffix(".json"))
        .is_some_and(is_uid_hex)
}

/// True for a sealed chunk's file name (`retired-chunk-` + 32 hex digits +
/// `.json`).
pub(crate) fn is_retired_chunk_file(name: &str) -> bool {
    name.strip_prefix("retired-chunk-")
        .and_then(|n| n.strip_suffix(".json"))
        .is_some_and(is_uid_hex)
}

fn is_uid_hex(h: &str) -> bool {
    h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A sealed chunk of the retired list: an immutable side file in
/// `atlas.history/` that many generations' lists name.
///
/// A commit seals the oldest loose entries when there are many (see
/// [`seal_retired`]); later commits name the chunk without rewriting it, so
/// a commit rewrites only the loose entries and the list of chunk names,
/// not the whole list. The first commit at which one of its entries changes
/// (the window moves past it, its grace period ends, a restore makes its
/// file live again) dissolves it: its entries become loose again and its
/// file is deleted once that commit stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sealed {
    /// File name in `atlas.history/`.
    pub file: String,
    /// The smallest `generation` of its entries.
    pub min_generation: u64,
    /// Its entries, by generation.
    pub entries: Vec<Retired>,
}

/// A side file's reference to a sealed chunk.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChunkRef {
    pub file: String,
    pub entries: u64,
    pub min_generation: u64,
}

/// Entries per sealed chunk: 1,024 (`ATLAS_TEST_RETIRED_CHUNK` when set, so
/// tests reach sealing with short histories). A commit seals when more than
/// twice this many entries are loose.
pub(crate) fn retired_chunk_len() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("ATLAS_TEST_RETIRED_CHUNK")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1024)
    })
}

#[derive(Deserialize)]
struct RetiredRepr {
    format: String,
    version: u32,
    /// The generation whose manifest names this list.
    generation: u64,
    /// Version 2: sealed chunks, oldest first.
    #[serde(default)]
    chunks: Vec<ChunkRef>,
    retired: Vec<Retired>,
}

/// Encodes a retired-list side file for the manifest of `generation`:
/// version 1 when it has no sealed chunks, 2 when it names some.
pub(crate) fn encode_retired(generation: u64, sealed: &[Arc<Sealed>], list: &[Retired]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        format: &'a str,
        version: u32,
        generation: u64,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        chunks: Vec<ChunkRef>,
        retired: &'a [Retired],
    }
    let chunks: Vec<ChunkRef> = sealed
        .iter()
        .map(|c| ChunkRef {
            file: c.file.clone(),
            entries: c.entries.len() as u64,
            min_generation: c.min_generation,
        })
        .collect();
    let mut out = serde_json::to_vec(&Out {
        format: RETIRED_FORMAT,
        version: if chunks.is_empty() { 1 } else { 2 },
        generation,
        chunks,
        retired: list,
    })
    .expect("retired list serializes");
    out.push(b'\n');
    out
}

/// Decodes a retired-list side file, which must belong to `generation`:
/// the sealed chunks it names and its loose entries.
pub(crate) fn decode_retired(
    bytes: &[u8],
    generation: u64,
    path: &Path,
) -> Result<(Vec<ChunkRef>, Vec<Retired>)> {
    let corrupt = |reason: String| Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    };
    let repr: RetiredRepr =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("json: {e}")))?;
    if repr.format == RETIRED_FORMAT && repr.version == 2 {
        for c in &repr.chunks {
            if !is_retired_chunk_file(&c.file) {
                return Err(corrupt(format!("bad chunk name {:?}", c.file)));
            }
        }
    } else {
        check_head(&repr.format, repr.version, RETIRED_FORMAT, 1, path)?;
        if !repr.chunks.is_empty() {
            return Err(corrupt("a version 1 retired list names chunks".into()));
        }
    }
    if repr.generation != generation {
        return Err(corrupt(format!(
            "retired list of generation {}, named by generation {generation}",
            repr.generation
        )));
    }
    Ok((repr.chunks, check_retired(repr.retired, &corrupt)?))
}

/// Encodes a sealed chunk's file.
pub(crate) fn encode_retired_chunk(entries: &[Retired]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Out<'a> {
        format: &'a str,
        version: u32,
        retired: &'a [Retired],
    }
    let mut out = serde_json::to_vec(&Out {
        format: CHUNK_FORMAT,
        version: 1,
        retired: entries,
    })
    .expect("retired chunk serializes");
    out.push(b'\n');
    out
}

/// Decodes a sealed chunk's file, which must hold what `r` says.
pub(crate) fn decode_retired_chunk(bytes: &[u8], r: &ChunkRef, path: &Path) -> Result<Sealed> {
    #[derive(Deserialize)]
    struct In {
        format: String,
        version: u32,
        retired: Vec<Retired>,
    }
    let corrupt = |reason: String| Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    };
    let repr: In = serde_json::from_slice(bytes).map_err(|e| corrupt(format!("json: {e}")))?;
    check_head(&repr.format, repr.version, CHUNK_FORMAT, 1, path)?;
    let entries = check_retired(repr.retired, &corrupt)?;
    if entries.len() as u64 != r.entries {
        return Err(corrupt(format!(
            "{} entries, the retired list says {}",
            entries.len(),
            r.entries
        )));
    }
    let min = entries.iter().map(|e| e.generation).min().unwrap_or(0);
    if entries.is_empty() || min != r.min_generation {
        return Err(corrupt(format!(
            "smallest generation {min}, the retired list says {}",
            r.min_generation
        )));
    }
    Ok(Sealed {
        file: r.file.clone(),
        min_generation: min,
        entries,
    })
}

/// Seals loose entries of `m` into new chunks when there are more than
/// twice [`retired_chunk_len`] of them: the oldest, by generation, in chunks
/// of that length (the newest stay loose). Entries the retention window
/// protects stay sealed until the window reaches them; those only in their
/// grace period until the first of a chunk expires. Returns the new chunks
/// (already appended to `m.retired_sealed`), whose files the caller writes.
pub(crate) fn seal_retired(m: &mut Manifest) -> Vec<Arc<Sealed>> {
    let len = retired_chunk_len();
    // A list short enough to stay inline is never sealed.
    if m.retired.len() <= (2 * len).max(inline_retired_limit()) {
        return Vec::new();
    }
    let mut candidates = std::mem::take(&mut m.retired);
    candidates.sort_by_key(|r| r.generation);
    // Keep at least `len` of the newest loose: the next commits add to them.
    let n_sealed = ((candidates.len() - len) / len) * len;
    m.retired = candidates.split_off(n_sealed);
    let mut new = Vec::new();
    while !candidates.is_empty() {
        let tail = candidates.split_off(len);
        let entries = std::mem::replace(&mut candidates, tail);
        let chunk = Arc::new(Sealed {
            file: format!("retired-chunk-{:032x}.json", array_format::random_uid()),
            min_generation: entries[0].generation,
            entries,
        });
        m.retired_sealed.push(Arc::clone(&chunk));
        new.push(chunk);
    }
    new
}

/// Undoes [`seal_retired`] (the commit that sealed them failed).
pub(crate) fn unseal_retired(m: &mut Manifest, new: &[Arc<Sealed>]) {
    m.retired_sealed
        .retain(|c| !new.iter().any(|n| Arc::ptr_eq(c, n)));
    for c in new {
        m.retired.extend(c.entries.iter().cloned());
    }
}

/// Longest tag name accepted.
pub(crate) const MAX_TAG_LEN: usize = 256;

/// Why a tag name cannot be used, if it cannot.
pub(crate) fn tag_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_TAG_LEN {
        Some("longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.trim() != name {
        Some("starts or ends with white space")
    } else {
        None
    }
}

/// The history fields agree with each other and with the generation.
fn check_history(repr: &ManifestRepr, corrupt: &dyn Fn(String) -> Error) -> Result<()> {
    let g = repr.generation;
    if repr.parent.is_some_and(|p| p >= g) {
        return Err(corrupt(format!(
            "parent {:?} is not below generation {g}",
            repr.parent
        )));
    }
    if repr.history_from.is_some_and(|h| h == 0 || h > g) {
        return Err(corrupt(format!(
            "history_from {:?} is not in 1..={g}",
            repr.history_from
        )));
    }
    if let Some(c) = &repr.commit {
        if !OPERATIONS.contains(&c.op.as_str()) {
            return Err(corrupt(format!("unknown commit operation {:?}", c.op)));
        }
    }
    for (name, t) in &repr.tags {
        if let Some(why) = tag_name_problem(name) {
            return Err(corrupt(format!("bad tag name {name:?}: {why}")));
        }
        if t.generation == 0 || t.generation > g {
            return Err(corrupt(format!(
                "tag {name:?} names generation {}",
                t.generation
            )));
        }
        if repr.dead_tags.contains(name) {
            return Err(corrupt(format!("tag {name:?} is both live and deleted")));
        }
    }
    Ok(())
}
