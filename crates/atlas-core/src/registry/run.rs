//! Registry runs (`atlas.meta/r-<uid>.run`): immutable, sorted, block-indexed
//! tables of dataset records, the registry's LSM.
//!
//! A run holds, for the datasets one flush (or one merge) wrote:
//! - **record blocks**, sorted by dataset name: each record is a dataset's id
//!   and either its metadata (attributes; per array a schema index, an
//!   attribute-set index and the array's statistics) or a tombstone;
//! - **id blocks**: `(id, name)` of the run's live records, sorted by id (the
//!   insertion order, for listing);
//! - the **dictionary**: the distinct schemas and per-array attribute sets the
//!   records reference, stored once per run;
//! - the **catalog**: per array name, `(id, statistics)` rows sorted by id; per
//!   scalar dataset attribute, `(id, value)` rows; each column in its own
//!   blocks, since version 3 in the typed layouts of `run/typed.rs` (id, count
//!   and value arrays, decoded in bulk) rather than `MessagePack` rows, and
//!   since version 4 with statistic blocks packed (consecutive ids and
//!   repeated counts in no bytes per row, `f32`-exact floats in four);
//! - `id_set` (the ids the run has a record for) and `killed` (committed ids
//!   this run's commit made dead: deleted, or re-created under a new id), as
//!   serialized roaring bitmaps;
//! - since version 2, per array name its **variants** (each distinct pair of
//!   schema and attribute set, with a bitmap of the ids using it), and the
//!   list-valued dataset attributes as columns like the scalar ones, so a
//!   query needs no record block (`run/catalog.rs`); version-1 runs derive
//!   both from their records once; since version 5 one block per array name
//!   holds all its variants' bitmaps (a bitmap each, in versions 2 to 4);
//! - the **index** (where every block is, the first key of each) and a fixed
//!   32-byte trailer pointing at it.
//!
//! Every block is a Zstandard frame (of a `MessagePack` array, or of a typed
//! catalog column), with its length,
//! decoded length and CRC-32C in the index. Opening a run reads the trailer and
//! the index (one ranged read of the file's tail); finding one dataset reads one
//! record block; listing streams the id blocks; a catalog column reads only its
//! own blocks.
//!
//! **Invariant:** decoding checks every length, CRC, order and index before
//! use: a damaged or hostile run is `CorruptRegistry`, never a panic, an
//! allocation past the caps, or a name outside the rules.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use array_format::{
    ArraySchema, ArrayStats, ReadHandle, StatValue, Storage, TimestampNs, WriteHandle,
};
use indexmap::IndexMap;
use parking_lot::RwLock;
use roaring::RoaringTreemap;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

mod catalog;
mod mpk;
mod typed;

pub(crate) use catalog::{par_map, StatColumn, Values};
pub(crate) use typed::{Float, Ints};

use super::segment::{schema_from_repr, schema_to_repr, SchemaRepr};
use super::{
    validate_array_name, validate_attribute_name, validate_dataset_name, ArrayEntry, Attr,
    DatasetMeta, Error, Result,
};

/// Magic at the start of a run file.
pub const RUN_MAGIC: [u8; 8] = *b"ATLASRUN";
/// Magic at the end of a run file's trailer.
pub const RUN_END_MAGIC: [u8; 8] = *b"ATLASRND";
/// The run format version this build writes (it reads 1 to 5).
pub const RUN_VERSION: u32 = 6;
/// The oldest run format version this build reads.
const OLDEST_RUN_VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const TRAILER_LEN: u64 = 32;
/// Uncompressed bytes after which a block is closed. A lookup of one name
/// decompresses and walks its whole record block, so smaller record blocks
/// make a point lookup cheaper, but they make the index, decoded whole when
/// a run opens, larger: 32 KiB record blocks made opening a 10,000-profile
/// store and reading one dataset 1.3–1.5× faster and the same at 1,000,000
/// profiles 1.4× slower (docs/BENCHMARKS.md, issue 17, twelfth session).
const BLOCK_TARGET: usize = 128 << 10;
/// Largest decoded block or index accepted.
const MAX_BLOCK_RAW: u32 = 256 << 20;
/// Bytes read from a run's end at open on an object store: the trailer and,
/// normally, the index, in one request.
const TAIL_READ: u64 = 256 << 10;
/// The same on a filesystem, where a second read costs a system call, not a
/// round trip: copying 256 KiB out of the page cache was most of opening a
/// small store's run.
const LOCAL_TAIL_READ: u64 = 16 << 10;
/// Decompressed record-block bytes all open runs of the process keep cached
/// together ([`CACHED_BYTES`]; each run evicts its least recently used
/// blocks while the total is over, and always keeps its newest). Records
/// are decoded from these bytes one at a time, on their first lookup, so the
/// cache costs its raw bytes plus the records actually looked up. The 3,000
/// real Argo profiles' records (215 blocks, 24.9 MB raw) fit, so a scan that
/// looks each of them up again and again decompresses every block once; a
/// registry several times larger is decompressed again on each pass.
const CACHE_BYTES: usize = 32 << 20;

/// The most decompressed bytes of record blocks one batched fetch of
/// [`Run::get_schemas`] brings in (also at most a quarter of the cache).
const PREFETCH_BYTES: usize = 8 << 20;

/// Record-block bytes cached by every open run of the process.
static CACHED_BYTES: AtomicUsize = AtomicUsize::new(0);
const INDEX_TAG: &str = "atlas-registry-run";

/// The name of one run file: `r-<32 lowercase hex>.run`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    /// Validates a run file name.
    pub fn new(name: impl Into<String>) -> Option<RunId> {
        let name = name.into();
        let b = name.as_bytes();
        let ok = b.len() == 38
            && b.starts_with(b"r-")
            && b.ends_with(b".run")
            && b[2..34]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        ok.then_some(RunId(name))
    }

    /// A fresh, never used name.
    pub(crate) fn fresh() -> RunId {
        RunId(format!("r-{:032x}.run", array_format::random_uid()))
    }

    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One dataset as the registry holds it: its id, metadata and, per array,
/// the statistics of the catalog.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Record {
    pub id: u64,
    pub meta: Arc<DatasetMeta>,
    /// Statistics per array of `meta`. In the live overlay, an array whose
    /// data changed since the last commit has none (recomputed at flush).
    pub stats: Arc<crate::FastMap<String, ArrayStats>>,
}

/// One array's schema in one dataset, as the registry has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SchemaOf {
    /// The dataset does not exist.
    NoDataset,
    /// The dataset has no such array.
    NoArray,
    /// The array's schema and attributes: position `k` in the lookup's
    /// [`Entries`].
    Schema(u32),
}

impl SchemaOf {
    /// `array`'s entry in `meta`, interned in `entries`.
    pub(crate) fn of(meta: &DatasetMeta, array: &str, entries: &mut Entries) -> SchemaOf {
        match meta.arrays.get(array) {
            Some(a) => SchemaOf::Schema(entries.intern(&a.schema, &a.attributes)),
            None => SchemaOf::NoArray,
        }
    }
}

/// The distinct array entries of one batch of schema lookups, each cloned
/// once; the answers ([`SchemaOf::Schema`]) name them by position. Datasets
/// share schema and attribute objects (the run's dictionary, the writer's
/// interning), so a scan of thousands of datasets finds the same pair again
/// and again: recognised by address, it costs no reference count per
/// dataset. (Counts of shared objects bumped from several cores at once
/// cost more than the rest of the lookup.)
#[derive(Debug, Default)]
pub(crate) struct Entries {
    /// The entries, in order of first appearance.
    pub(crate) list: Vec<ArrayEntry>,
    /// Addresses of each entry's schema and attributes, with its position.
    seen: AddrMap<(usize, usize), u32>,
    /// The last pair interned (the usual next one).
    last: Option<((usize, usize), u32)>,
}

impl Entries {
    /// The position of the entry `(schema, attributes)`, added if new.
    pub(crate) fn intern(
        &mut self,
        schema: &Arc<array_format::ArraySchema>,
        attributes: &Arc<IndexMap<String, Attr>>,
    ) -> u32 {
        let key = (
            Arc::as_ptr(schema) as usize,
            Arc::as_ptr(attributes) as usize,
        );
        if let Some((k, i)) = self.last {
            if k == key {
                return i;
            }
        }
        let i = if let Some(&i) = self.seen.get(&key) {
            i
        } else {
            let i = u32::try_from(self.list.len()).expect("fewer than 2^32 entries");
            self.list.push(ArrayEntry {
                schema: Arc::clone(schema),
                attributes: Arc::clone(attributes),
            });
            self.seen.insert(key, i);
            i
        };
        self.last = Some((key, i));
        i
    }

    /// The entry at position `k`.
    pub(crate) fn get(&self, k: u32) -> &ArrayEntry {
        &self.list[k as usize]
    }
}

/// What a run says about a name.
#[derive(Clone, Debug)]
pub(crate) enum Found {
    Live(Record),
    /// Deleted by this run's commit.
    Tombstone,
}

/// A record as a merge of runs carries it (see [`super::runs::merge`]).
pub(crate) enum MergeRec {
    /// One the handle holds (a change since the last commit).
    Held(Record),
    /// One as a run stores it: checked when its block was read, its
    /// dictionary indexes not yet resolved. A merge's writer re-encodes it
    /// without building a [`Record`] ([`RunWriter::record_stored`]).
    Stored(StoredRec),
}

impl MergeRec {
    /// The id of the dataset.
    #[cfg(test)]
    pub(crate) fn id(&self) -> u64 {
        match self {
            MergeRec::Held(r) => r.id,
            MergeRec::Stored(s) => s.id,
        }
    }

    /// The record it stands for.
    pub(crate) fn into_record(self) -> Record {
        match self {
            MergeRec::Held(r) => r,
            MergeRec::Stored(s) => s.into_record(),
        }
    }
}

/// A live record as its run stores it, with that run's dictionary.
pub(crate) struct StoredRec {
    id: u64,
    body: BodyRepr,
    dict: Arc<Dict>,
}

impl StoredRec {
    /// The record, its parts moved (the indexes were checked on reading).
    fn into_record(self) -> Record {
        let BodyRepr(attributes, arrs) = self.body;
        let mut arrays = IndexMap::with_capacity(arrs.len());
        let mut stats =
            crate::FastMap::with_capacity_and_hasher(arrs.len(), crate::FastState::default());
        for ArrRepr(aname, s, a, st) in arrs {
            let entry = self
                .dict
                .entry(s, a)
                .expect("a stored record's indexes are checked when its block is read");
            arrays.insert(aname.clone(), entry);
            stats.insert(aname, stats_of(st));
        }
        Record {
            id: self.id,
            meta: Arc::new(DatasetMeta { attributes, arrays }),
            stats: Arc::new(stats),
        }
    }
}

// ---- serialized forms -------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
struct BlockRef {
    off: u64,
    len: u32,
    raw: u32,
    crc: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum StatRepr {
    B(bool),
    I(i64),
    U(u64),
    F(f64),
    S(String),
    T(i64),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StatRow(Option<StatRepr>, Option<StatRepr>, u64, u64);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ArrRepr(String, u32, Option<u32>, StatRow);

#[derive(Clone, Debug, Serialize, Deserialize)]
struct BodyRepr(IndexMap<String, Attr>, Vec<ArrRepr>);

/// A record as stored: name, id, body (`None`: a tombstone).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RecRepr(String, u64, Option<BodyRepr>);

#[derive(Serialize, Deserialize, Default)]
struct DictRepr(Vec<SchemaRepr>, Vec<IndexMap<String, Attr>>);

#[derive(Serialize, Deserialize)]
struct IndexRepr {
    tag: String,
    version: u32,
    n_records: u64,
    n_tombstones: u64,
    dict: BlockRef,
    id_set: BlockRef,
    killed: BlockRef,
    /// First name of each record block.
    names: Vec<(String, BlockRef)>,
    /// First id of each `(id, name)` block.
    ids: Vec<(u64, BlockRef)>,
    /// Array name → blocks of `(id, statistics)` rows, by first id.
    arrays: Vec<(String, Vec<(u64, BlockRef)>)>,
    /// Dataset attribute → blocks of `(id, value)` rows, by first id.
    attrs: Vec<(String, Vec<(u64, BlockRef)>)>,
    /// Version 2: array name → its variants, `(schema index, attribute-set
    /// index, block of the ids' bitmap)`.
    #[serde(default)]
    variants: Vec<(String, Vec<VariantRef>)>,
    /// Version 2: list-valued dataset attribute → blocks of `(id, value)`.
    #[serde(default)]
    lists: Vec<Column>,
    /// Version 5 (instead of `variants`): array name → its variants'
    /// `(schema index, attribute-set index)` and one block holding every
    /// variant's bitmap of ids, in the same order, each as a `u32` byte
    /// length then the serialized bitmap.
    #[serde(default)]
    variant_blocks: Vec<VariantBlock>,
}

/// An array name's variants in a version-5 run (see `IndexRepr`).
type VariantBlock = (String, Vec<(u32, Option<u32>)>, BlockRef);

/// A catalog column: its name and its blocks, by first id.
type Column = (String, Vec<(u64, BlockRef)>);

/// One variant of an array name: schema index, attribute-set index, and the
/// block of the bitmap of ids using them.
type VariantRef = (u32, Option<u32>, BlockRef);

fn stat_to_repr(v: &StatValue) -> StatRepr {
    match v {
        StatValue::Bool(b) => StatRepr::B(*b),
        StatValue::Int(i) => StatRepr::I(*i),
        StatValue::UInt(u) => StatRepr::U(*u),
        StatValue::Float(f) => StatRepr::F(*f),
        StatValue::Str(s) => StatRepr::S(s.clone()),
        StatValue::Timestamp(t) => StatRepr::T(t.0),
    }
}

fn stat_from_repr(v: StatRepr) -> StatValue {
    match v {
        StatRepr::B(b) => StatValue::Bool(b),
        StatRepr::I(i) => StatValue::Int(i),
        StatRepr::U(u) => StatValue::UInt(u),
        StatRepr::F(f) => StatValue::Float(f),
        StatRepr::S(s) => StatValue::Str(s),
        StatRepr::T(t) => StatValue::Timestamp(TimestampNs(t)),
    }
}

fn row_of(s: &ArrayStats) -> StatRow {
    StatRow(
        s.min.as_ref().map(stat_to_repr),
        s.max.as_ref().map(stat_to_repr),
        s.null_count,
        s.row_count,
    )
}

fn stats_of(r: StatRow) -> ArrayStats {
    ArrayStats {
        min: r.0.map(stat_from_repr),
        max: r.1.map(stat_from_repr),
        null_count: r.2,
        row_count: r.3,
    }
}

// ---- writing ----------------------------------------------------------------

/// Estimated bytes of unspilled id and catalog rows a [`RunWriter`] holds
/// before it sorts them and spills them to a scratch file. At 8 MiB, a
/// commit of the Argo import (about 500 profiles, 34,000 catalog rows)
/// spilled about twice: 16 MiB took the import from 7.35 to 7.05 G
/// instructions, with the same range of peak RSS.
const SPILL_AT: usize = 16 << 20;
/// Estimated bytes of a block of a spilled piece. Writing a column holds one
/// decoded block of every piece at once, and there is a piece per
/// [`SPILL_AT`] of estimated rows (tens of pieces for `atlas demo`'s million
/// datasets), so these blocks are an eighth of the run's own
/// ([`BLOCK_TARGET`]), and so is what the merge holds.
const SPILL_BLOCK_TARGET: usize = 16 << 10;
/// Bytes read at a time when [`RunWriter::carry`] copies a run.
const COPY_READ: u64 = 8 << 20;

/// A value of the id list (`(id, name)`) or of a catalog column
/// (`(id, statistics)`, `(id, attribute)`).
trait ColumnValue: Serialize + DeserializeOwned {
    /// Estimated encoded bytes of a row holding this value (block sizes).
    fn est(&self) -> usize;

    /// A block of rows (ids ascending) as the run stores it, before
    /// compression: a `MessagePack` array of `[id, value]` unless the kind
    /// has a typed layout.
    fn encode_block(rows: &[(u64, Self)]) -> Vec<u8>
    where
        Self: Sized,
    {
        rmp_serde::to_vec(rows).expect("registry blocks serialize")
    }

    /// A block of rows as a scratch file holds it (read back by
    /// [`ColumnValue::unspill_block`] of the same process, never kept):
    /// `MessagePack` unless the kind has a cheaper layout.
    fn spill_block(rows: &[(u64, Self)]) -> Vec<u8>
    where
        Self: Sized,
    {
        rmp_serde::to_vec(rows).expect("registry blocks serialize")
    }

    /// The rows of a block [`ColumnValue::spill_block`] wrote, or why not.
    fn unspill_block(raw: &[u8]) -> std::result::Result<Vec<(u64, Self)>, String>
    where
        Self: Sized,
    {
        rmp_serde::from_slice(raw).map_err(|e| format!("msgpack: {e}"))
    }
}

impl ColumnValue for String {
    fn est(&self) -> usize {
        self.len() + 10
    }

    /// Version 6: the typed id block of `run/typed.rs`.
    fn encode_block(rows: &[(u64, Self)]) -> Vec<u8> {
        typed::encode_names(rows)
    }
}

impl ColumnValue for StatRow {
    fn est(&self) -> usize {
        // String statistics (char arrays) carry their min and max strings.
        let len = |v: &Option<StatRepr>| match v {
            Some(StatRepr::S(s)) => s.len(),
            _ => 0,
        };
        40 + len(&self.0) + len(&self.1)
    }

    /// Version 3: the typed layout of `run/typed.rs`.
    fn encode_block(rows: &[(u64, Self)]) -> Vec<u8> {
        typed::encode_stats(rows)
    }

    /// `typed::encode_spilled_stats`' layout (`MessagePack` through serde
    /// was most of the cost of spilling and reading back the Argo import's
    /// catalog rows).
    fn spill_block(rows: &[(u64, Self)]) -> Vec<u8> {
        typed::encode_spilled_stats(rows)
    }

    fn unspill_block(raw: &[u8]) -> std::result::Result<Vec<(u64, Self)>, String> {
        typed::decode_spilled_stats(raw)
    }
}

impl ColumnValue for Attr {
    fn est(&self) -> usize {
        approx_attr_len(self) + 10
    }

    /// Version 3: the typed layout of `run/typed.rs`.
    fn encode_block(rows: &[(u64, Self)]) -> Vec<u8> {
        typed::encode_attrs(rows)
    }
}

/// The id list or one catalog column while a run is written: the rows not
/// spilled yet, in arrival (name) order, and the pieces already spilled, each
/// sorted by id and stored as blocks of the scratch file.
struct ColumnBuf<T> {
    rows: Vec<(u64, T)>,
    pieces: Vec<Vec<BlockRef>>,
    /// Blocks of a carried run ([`RunWriter::carry`]), already in this
    /// run's file: they come first, their ids below every row's.
    carried: Vec<(u64, BlockRef)>,
}

impl<T> Default for ColumnBuf<T> {
    fn default() -> Self {
        ColumnBuf {
            rows: Vec::new(),
            pieces: Vec::new(),
            carried: Vec::new(),
        }
    }
}

impl<T: ColumnValue> ColumnBuf<T> {
    /// Adds a row; returns the estimated bytes it holds in memory.
    fn push(&mut self, id: u64, v: T) -> usize {
        let n = std::mem::size_of::<(u64, T)>() + v.est();
        self.rows.push((id, v));
        n
    }
}

/// Where a scratch file lives: the run's storage, or (object stores) the
/// local disk the storage names.
enum ScratchStore<'s> {
    Run(&'s dyn Storage),
    Local(Arc<dyn Storage>),
}

/// The scratch file of one [`RunWriter`]: sorted pieces of the id list and
/// catalog columns, read back and merged at [`RunWriter::finish`]. Removed
/// when dropped (a crash leaves it to the orphan sweep).
struct Scratch<'s> {
    store: ScratchStore<'s>,
    path: PathBuf,
    out: Option<Box<dyn WriteHandle>>,
}

impl Scratch<'_> {
    /// Reads back a block [`spill_column`] wrote (stored uncompressed).
    fn read_block<T: ColumnValue>(&mut self, r: &BlockRef) -> Result<Vec<(u64, T)>> {
        let mut stored = vec![0u8; r.len as usize];
        self.out().read_exact_at(r.off, &mut stored)?;
        check_stored(&stored, r, &self.path)?;
        T::unspill_block(&stored).map_err(|reason| Error::CorruptRegistry {
            path: self.path.clone(),
            reason: format!("block at {}: {reason}", r.off),
        })
    }

    fn storage(&self) -> &dyn Storage {
        match &self.store {
            ScratchStore::Run(s) => *s,
            ScratchStore::Local(s) => s.as_ref(),
        }
    }

    fn out(&mut self) -> &mut dyn WriteHandle {
        self.out.as_deref_mut().expect("open until dropped")
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        drop(self.out.take());
        let _ = self.storage().remove_file(&self.path);
    }
}

/// Writes one run, streaming: records must come in strictly ascending name
/// order; record blocks go to storage as they fill; the id list and catalog
/// rows (sorted by id, not by name) are held until [`RunWriter::finish`]
/// writes them, or, past [`SPILL_AT`] estimated bytes, sorted and spilled to a
/// scratch file and merged back at the end, so memory stays bounded whatever
/// the run's size.
pub(crate) struct RunWriter<'s> {
    storage: &'s dyn Storage,
    out: Box<dyn WriteHandle>,
    path: PathBuf,
    pos: u64,
    /// The serialized records of the block being filled (each a
    /// `MessagePack` `RecRepr`, written straight from the caller's record)
    /// after [`BLOCK_HEAD`] bytes left for the block's array header, their
    /// count, their estimated size (what closes a block, as it always has)
    /// and the first one's name.
    block: Vec<u8>,
    block_len: u32,
    block_est: usize,
    block_first: Option<String>,
    names: Vec<(String, BlockRef)>,
    /// The last record's name (the order check; its buffer reused).
    last_name: Option<String>,
    ids: ColumnBuf<String>,
    id_set: RoaringTreemap,
    killed: RoaringTreemap,
    /// Per array name (in order of first appearance), its statistics rows
    /// and its variants' ids.
    arrays: Vec<(String, ArrayColumn)>,
    /// Positions in `arrays` by name.
    array_slots: crate::FastMap<String, usize>,
    /// Positions in `arrays` of the previous record's arrays, in its order:
    /// the records of a collection list the same arrays in the same order,
    /// so most are found with one comparison of names.
    layout: Vec<usize>,
    /// Scratch rows of the record being added.
    rows: Vec<(u32, Option<u32>, StatRow)>,
    attrs: BTreeMap<String, ColumnBuf<Attr>>,
    lists: BTreeMap<String, ColumnBuf<Attr>>,
    /// Estimated bytes of the unspilled rows of `ids` and the columns.
    held: usize,
    /// `held` at which the rows are spilled.
    spill_at: usize,
    /// Compresses the run's blocks (one context for the whole run, at the
    /// run's level: a context per block was 5% of writing a run).
    zstd: zstd::bulk::Compressor<'static>,
    scratch: Option<Scratch<'s>>,
    schemas: Vec<SchemaRepr>,
    schema_ptr: AddrMap<usize, u32>,
    attr_sets: Vec<IndexMap<String, Attr>>,
    attr_ptr: AddrMap<usize, u32>,
    /// Indexes of `schemas` by a hash of their content
    /// ([`schema_fingerprint`]), with the schema each was made from.
    schema_eq: AddrMap<u64, Vec<(Arc<ArraySchema>, u32)>>,
    /// Indexes of `attr_sets` by a hash of their keys, in order.
    attr_eq: AddrMap<u64, Vec<(AttrSet, u32)>>,
    n_records: u64,
    n_tombstones: u64,
    /// The largest id of a carried run ([`RunWriter::carry`]).
    carried_max: Option<u64>,
    /// Pointers of the schemas and attribute sets behind `*_ptr`, kept alive
    /// so an address is never reused for another value while writing.
    keep: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

/// One array name's catalog column and variants while a run is written.
#[derive(Default)]
struct ArrayColumn {
    rows: ColumnBuf<StatRow>,
    variants: BTreeMap<(u32, Option<u32>), RoaringTreemap>,
}

/// A record serialized as [`RecRepr`] is, from borrowed parts.
#[derive(Serialize)]
struct RecOut<'a>(&'a str, u64, Option<BodyOut<'a>>);

/// [`BodyRepr`] from borrowed parts.
#[derive(Serialize)]
struct BodyOut<'a>(&'a IndexMap<String, Attr>, &'a [ArrOut<'a>]);

/// [`ArrRepr`] from borrowed parts.
#[derive(Serialize)]
struct ArrOut<'a>(&'a str, u32, Option<u32>, &'a StatRow);

impl RecOut<'_> {
    /// Appends the record as `rmp_serde` serializes it (the same bytes,
    /// compared by the tests), writing the arrays' names, dictionary
    /// indexes and statistics directly: serde's path was most of the cost
    /// of adding a record to a run. The attributes still go through serde.
    fn write_mpk(&self, out: &mut Vec<u8>) {
        let RecOut(name, id, body) = self;
        mpk_write::array(out, 3);
        mpk_write::str(out, name);
        mpk_write::uint(out, *id);
        let Some(BodyOut(attributes, arrays)) = body else {
            mpk_write::nil(out);
            return;
        };
        mpk_write::array(out, 2);
        rmp_serde::encode::write(out, attributes).expect("attributes serialize");
        mpk_write::array(
            out,
            u32::try_from(arrays.len()).expect("a record holds fewer than 2^32 arrays"),
        );
        for ArrOut(aname, s, a, st) in *arrays {
            mpk_write::array(out, 4);
            mpk_write::str(out, aname);
            mpk_write::uint(out, u64::from(*s));
            match a {
                Some(a) => mpk_write::uint(out, u64::from(*a)),
                None => mpk_write::nil(out),
            }
            st.write_mpk(out);
        }
    }
}

impl StatRow {
    /// Appends the row as `rmp_serde` serializes it.
    fn write_mpk(&self, out: &mut Vec<u8>) {
        mpk_write::array(out, 4);
        mpk_write::stat(out, self.0.as_ref());
        mpk_write::stat(out, self.1.as_ref());
        mpk_write::uint(out, self.2);
        mpk_write::uint(out, self.3);
    }
}

/// The `MessagePack` values of the records' and statistics' hot paths,
/// written with `rmp` (the encoder `rmp_serde` writes them with, so the
/// same bytes) without serde's path; an enum variant is a one-entry map
/// from its name, as `rmp_serde` writes it.
mod mpk_write {
    use rmp::encode;

    use super::StatRepr;

    const INFALLIBLE: &str = "writing MessagePack to a vector";

    pub(super) fn nil(out: &mut Vec<u8>) {
        encode::write_nil(out).expect(INFALLIBLE);
    }

    pub(super) fn array(out: &mut Vec<u8>, n: u32) {
        encode::write_array_len(out, n).expect(INFALLIBLE);
    }

    pub(super) fn uint(out: &mut Vec<u8>, v: u64) {
        encode::write_uint(out, v).expect(INFALLIBLE);
    }

    pub(super) fn sint(out: &mut Vec<u8>, v: i64) {
        encode::write_sint(out, v).expect(INFALLIBLE);
    }

    pub(super) fn str(out: &mut Vec<u8>, s: &str) {
        encode::write_str(out, s).expect(INFALLIBLE);
    }

    /// An optional statistic: nil, or `{variant: value}`.
    pub(super) fn stat(out: &mut Vec<u8>, v: Option<&StatRepr>) {
        let Some(v) = v else {
            nil(out);
            return;
        };
        encode::write_map_len(out, 1).expect(INFALLIBLE);
        match v {
            StatRepr::B(b) => {
                str(out, "B");
                encode::write_bool(out, *b).expect(INFALLIBLE);
            }
            StatRepr::I(x) => {
                str(out, "I");
                sint(out, *x);
            }
            StatRepr::U(x) => {
                str(out, "U");
                uint(out, *x);
            }
            StatRepr::F(x) => {
                str(out, "F");
                encode::write_f64(out, *x).expect(INFALLIBLE);
            }
            StatRepr::S(x) => {
                str(out, "S");
                str(out, x);
            }
            StatRepr::T(x) => {
                str(out, "T");
                sint(out, *x);
            }
        }
    }
}

/// Hashes addresses (the writer's and the lookups' maps keyed by `Arc`
/// pointers): one multiply per word, where `SipHash` showed in profiles.
#[derive(Default, Clone, Copy)]
pub(crate) struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        // The product's high bits are the mixed ones; the table uses the low.
        self.0.rotate_left(26)
    }
}

/// A map keyed by addresses (or tuples of them).
pub(crate) type AddrMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<AddrHasher>>;

/// One sorted source of a column merge: the blocks of a spilled piece still
/// to read, and the rows of the block being read (or the unspilled rows).
struct Source<T> {
    refs: std::vec::IntoIter<BlockRef>,
    rows: std::vec::IntoIter<(u64, T)>,
}

/// The Zstandard level of a flush's run (until a compaction rewrites it at
/// [`LEVEL_FULL`]): it is on every commit's path. Level 1 against 3: the
/// six runs of importing the 3,000 Argo profiles took 3.46 MB against 3.38
/// MB, and creating and flushing 10,000 small datasets in one batch (the
/// `w1batch` loop) about a tenth less time in 3 alternating runs.
const LEVEL: i32 = 1;
/// The level of a compaction's run (and of the upgrade from segments),
/// which holds the whole registry: it is
/// read by every lookup until the next commit that merges every run. On the
/// 3,000 Argo profiles' compacted run: 2.11 MB at level 3, 1.94 MB at 7
/// (1.94 MB at 9), for 1.33 → 1.73 s of `atlas compact`. A flush that
/// merges every run keeps [`LEVEL`]: it is on the commit's path, and a bulk
/// import makes such a merge every few batches (at level 7 its compression
/// was a quarter of the import's run writing).
const LEVEL_FULL: i32 = 7;

impl<'s> RunWriter<'s> {
    /// Compresses the run's blocks harder: for a compaction's run, which
    /// holds the whole registry.
    pub(crate) fn whole_registry(&mut self) {
        self.zstd
            .set_compression_level(LEVEL_FULL)
            .expect("a valid Zstandard level");
    }

    /// Starts a run at `path` (a new file).
    pub(crate) fn create(storage: &'s dyn Storage, path: &Path) -> Result<RunWriter<'s>> {
        let mut out = storage.create_new(path)?;
        let mut head = Vec::with_capacity(HEADER_LEN as usize);
        head.extend_from_slice(&RUN_MAGIC);
        head.extend_from_slice(&RUN_VERSION.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        out.append(&head)?;
        Ok(RunWriter {
            storage,
            out,
            path: path.to_owned(),
            pos: HEADER_LEN,
            block: vec![0; BLOCK_HEAD],
            block_len: 0,
            block_est: 0,
            block_first: None,
            names: Vec::new(),
            last_name: None,
            ids: ColumnBuf::default(),
            id_set: RoaringTreemap::new(),
            killed: RoaringTreemap::new(),
            arrays: Vec::new(),
            array_slots: crate::FastMap::default(),
            layout: Vec::new(),
            rows: Vec::new(),
            attrs: BTreeMap::new(),
            lists: BTreeMap::new(),
            held: 0,
            spill_at: SPILL_AT,
            zstd: zstd::bulk::Compressor::new(LEVEL).expect("a Zstandard context"),
            scratch: None,
            schemas: Vec::new(),
            schema_ptr: AddrMap::default(),
            attr_sets: Vec::new(),
            attr_ptr: AddrMap::default(),
            schema_eq: AddrMap::default(),
            attr_eq: AddrMap::default(),
            n_records: 0,
            n_tombstones: 0,
            carried_max: None,
            keep: Vec::new(),
        })
    }

    /// Ids this run's commit makes dead.
    pub(crate) fn kill(&mut self, ids: &RoaringTreemap) {
        self.killed |= ids;
    }

    fn write_block<T: Serialize>(&mut self, items: &T) -> Result<BlockRef> {
        self.write_raw(&rmp_serde::to_vec(items).expect("registry blocks serialize"))
    }

    fn write_raw(&mut self, raw: &[u8]) -> Result<BlockRef> {
        let (packed, r) = pack(&mut self.zstd, raw, self.pos).ok_or_else(|| self.too_large())?;
        self.out.append(&packed)?;
        self.pos += packed.len() as u64;
        Ok(r)
    }

    fn too_large(&self) -> Error {
        Error::CorruptRegistry {
            path: self.path.clone(),
            reason: format!("a registry block would exceed {MAX_BLOCK_RAW} bytes"),
        }
    }

    fn flush_block(&mut self) -> Result<()> {
        let Some(first) = self.block_first.take() else {
            return Ok(());
        };
        // The block is a `MessagePack` array of its records: the header goes
        // right before them, in the room left for it.
        let mut head = Vec::with_capacity(BLOCK_HEAD);
        mpk_write::array(&mut head, self.block_len);
        let start = BLOCK_HEAD - head.len();
        let mut block = std::mem::take(&mut self.block);
        block[start..BLOCK_HEAD].copy_from_slice(&head);
        let written = self.write_raw(&block[start..]);
        block.truncate(BLOCK_HEAD);
        if block.capacity() > 4 * BLOCK_TARGET {
            // One huge record does not keep a huge buffer for the whole run.
            block.shrink_to(2 * BLOCK_TARGET);
        }
        self.block = block;
        self.block_len = 0;
        self.block_est = 0;
        self.names.push((first, written?));
        Ok(())
    }

    /// Appends a record to the block being filled, closing it past
    /// [`BLOCK_TARGET`] estimated bytes (`est`: this record's).
    fn push_record(&mut self, rec: &RecOut<'_>, est: usize) -> Result<()> {
        self.append_record(rec.0, est, |block| rec.write_mpk(block))
    }

    /// Appends a record named `name` (`est` estimated bytes) that `write`
    /// serializes to the block being filled, closing the block past
    /// [`BLOCK_TARGET`]. Names must ascend.
    fn append_record(
        &mut self,
        name: &str,
        est: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        if let Some(last) = &self.last_name {
            assert!(
                last.as_str() < name,
                "run records must come in ascending name order"
            );
        }
        self.set_last_name(name);
        write(&mut self.block);
        self.block_len += 1;
        self.block_est += est;
        if self.block_first.is_none() {
            self.block_first = Some(name.to_owned());
        }
        if self.block_est >= BLOCK_TARGET {
            self.flush_block()?;
        }
        Ok(())
    }

    /// The order check's last name, its buffer reused.
    fn set_last_name(&mut self, name: &str) {
        match &mut self.last_name {
            Some(last) => {
                last.clear();
                last.push_str(name);
            }
            None => self.last_name = Some(name.to_owned()),
        }
    }

    /// Starts this run, still empty, with every catalog row of `run`, as
    /// stored: its id and catalog column blocks are copied byte for byte
    /// (each block's CRC checked) and come first in their columns, its
    /// dictionary becomes the start of this run's, and its variants, ids and
    /// counts are merged in. Its records follow through the [`Carried`]
    /// returned, which [`RunWriter::carry_until`] interleaves with the
    /// merge's other records: a record block that no other name falls
    /// within is copied as stored, any other has its records' bytes copied
    /// one by one (their dictionary indexes are this run's too). So a merge
    /// that carries its oldest run neither decodes nor encodes that run's
    /// records and catalog rows again.
    ///
    /// `None`, with nothing written, when `run` is of another format
    /// version (the caller then merges it record by record). The caller
    /// guarantees what makes the copy right (`commit.rs`'s `carries`):
    /// every id the run is given afterwards is above `run`'s, none of
    /// `run`'s ids is killed (so none of its live records is replaced), and
    /// when tombstones must go (no older run remains) `run` has none.
    pub(crate) fn carry<'r>(&mut self, run: &'r Run) -> Result<Option<Carried<'r>>> {
        assert!(
            self.pos == HEADER_LEN && self.n_records == 0 && self.n_tombstones == 0,
            "a run is carried into an empty writer"
        );
        let ix = &run.index;
        if ix.version != RUN_VERSION || !ix.variants.is_empty() {
            return Ok(None);
        }
        let dict = run.dict()?;
        let mut variants = Vec::with_capacity(ix.variant_blocks.len());
        for (name, keys, r) in &ix.variant_blocks {
            variants.push((name, keys, run.bitmaps(r, keys.len())?));
        }
        // The column blocks, adjacent ones read together (up to
        // COPY_READ), each CRC checked, each at its new offset.
        let mut refs: Vec<BlockRef> = ix
            .ids
            .iter()
            .map(|(_, r)| *r)
            .chain(
                ix.arrays
                    .iter()
                    .chain(&ix.attrs)
                    .chain(&ix.lists)
                    .flat_map(|(_, blocks)| blocks.iter().map(|(_, r)| *r)),
            )
            .collect();
        refs.sort_unstable_by_key(|r| r.off);
        refs.dedup_by_key(|r| r.off);
        let mut moved: HashMap<u64, BlockRef> = HashMap::with_capacity(refs.len());
        let mut k = 0;
        while k < refs.len() {
            let start = refs[k].off;
            let mut end = start + u64::from(refs[k].len);
            let first = k;
            k += 1;
            while k < refs.len() && refs[k].off == end && end - start < COPY_READ {
                end += u64::from(refs[k].len);
                k += 1;
            }
            let bytes = run.handle.read_vec_at(start, (end - start) as usize)?;
            for r in &refs[first..k] {
                let at = (r.off - start) as usize;
                check_stored(&bytes[at..at + r.len as usize], r, &run.path)?;
                moved.insert(
                    r.off,
                    BlockRef {
                        off: self.pos + (r.off - start),
                        ..*r
                    },
                );
            }
            self.out.append(&bytes)?;
            self.pos += end - start;
        }
        let rebase = |blocks: &[(u64, BlockRef)]| -> Vec<(u64, BlockRef)> {
            blocks
                .iter()
                .map(|(key, r)| (*key, moved[&r.off]))
                .collect()
        };
        self.ids.carried = rebase(&ix.ids);
        for (name, blocks) in &ix.arrays {
            let k = self.slot_of(name);
            self.arrays[k].1.rows.carried = rebase(blocks);
        }
        for (name, blocks) in &ix.attrs {
            self.attrs.entry(name.clone()).or_default().carried = rebase(blocks);
        }
        for (name, blocks) in &ix.lists {
            self.lists.entry(name.clone()).or_default().carried = rebase(blocks);
        }
        for (name, keys, bitmaps) in variants {
            let k = self.slot_of(name);
            let col = &mut self.arrays[k].1;
            for (key, ids) in keys.iter().zip(bitmaps) {
                *col.variants.entry(*key).or_default() |= ids;
            }
        }
        // The dictionary, found by content as the writer's own entries are
        // (each schema encoded again as the writer encodes its own; its
        // index, which the copied records use, is the carried run's).
        for (i, schema) in dict.schemas.iter().enumerate() {
            self.schemas.push(schema_to_repr(schema));
            self.schema_eq
                .entry(schema_fingerprint(schema))
                .or_default()
                .push((Arc::clone(schema), i as u32));
        }
        for (i, shared) in dict.attr_sets.iter().enumerate() {
            self.attr_sets.push((**shared).clone());
            self.attr_eq
                .entry(attrs_fingerprint(shared))
                .or_default()
                .push((Arc::clone(shared), i as u32));
        }
        let ids = run.id_set()?;
        self.id_set |= ids;
        self.carried_max = ids.max();
        self.n_records = ix.n_records;
        self.n_tombstones = ix.n_tombstones;
        Ok(Some(Carried {
            run,
            next: 0,
            open: None,
        }))
    }

    /// Writes the carried run's records that sort before `name` (all that
    /// are left, with `None`): each record block that ends before `name`
    /// (the next block starts at or before it) is copied as stored, after
    /// the block being filled is closed; the records of the block `name`
    /// falls within, and of the run's last block, are copied one by one
    /// into the block being filled. A carried tombstone
    /// of `name` itself is dropped (the merge's newer record of `name`
    /// follows); a carried live record of `name` is an error (the caller's
    /// guarantees exclude it).
    pub(crate) fn carry_until(&mut self, c: &mut Carried<'_>, name: Option<&str>) -> Result<()> {
        let ix = &c.run.index;
        loop {
            if let Some((block, j)) = &mut c.open {
                while *j < block.recs.len() {
                    let rec = &block.recs[*j];
                    let rname = rec.name(&block.raw);
                    match name {
                        Some(n) if rname > n => return Ok(()),
                        Some(n) if rname == n => {
                            // A bug otherwise (the caller's guarantees):
                            // a panic in tests, an error in a release build.
                            debug_assert!(
                                rec.is_tombstone(),
                                "a carried live record {n:?} has a newer record"
                            );
                            if !rec.is_tombstone() {
                                return Err(Error::CorruptRegistry {
                                    path: c.run.path.clone(),
                                    reason: format!(
                                        "internal: carried record {n:?} has a newer record"
                                    ),
                                });
                            }
                            self.n_tombstones =
                                self.n_tombstones.checked_sub(1).ok_or_else(|| {
                                    Error::CorruptRegistry {
                                        path: c.run.path.clone(),
                                        reason: "more tombstones than the run's index counts"
                                            .into(),
                                    }
                                })?;
                        }
                        _ => {
                            let bytes = &block.raw[rec.bytes.clone()];
                            self.push_raw_record(rname, bytes)?;
                        }
                    }
                    *j += 1;
                }
                c.open = None;
            }
            let Some((first, r)) = ix.names.get(c.next) else {
                return Ok(());
            };
            if name.is_some_and(|n| first.as_str() > n) {
                return Ok(());
            }
            let ends_before = match (ix.names.get(c.next + 1), name) {
                (Some((next_first, _)), Some(n)) => next_first.as_str() <= n,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if ends_before {
                self.flush_block()?;
                let bytes = c.run.handle.read_vec_at(r.off, r.len as usize)?;
                check_stored(&bytes, r, &c.run.path)?;
                self.out.append(&bytes)?;
                let moved = BlockRef {
                    off: self.pos,
                    ..*r
                };
                self.pos += u64::from(r.len);
                self.names.push((first.clone(), moved));
                self.set_last_name(first);
            } else {
                c.open = Some((c.run.record_block(c.next)?, 0));
            }
            c.next += 1;
        }
    }

    /// Appends a carried record's bytes to the block being filled (no
    /// catalog rows: the carried run's are copied whole).
    fn push_raw_record(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.append_record(name, bytes.len(), |block| block.extend_from_slice(bytes))
    }

    /// The position in `arrays` of array `name`, added if new.
    fn slot_of(&mut self, name: &str) -> usize {
        if let Some(&k) = self.array_slots.get(name) {
            return k;
        }
        self.arrays.push((name.to_owned(), ArrayColumn::default()));
        self.array_slots
            .insert(name.to_owned(), self.arrays.len() - 1);
        self.arrays.len() - 1
    }

    /// Adds a tombstone: `name` no longer exists (its id is in `killed`).
    pub(crate) fn tombstone(&mut self, name: &str) -> Result<()> {
        self.n_tombstones += 1;
        self.push_record(&RecOut(name, 0, None), name.len() + 16)
    }

    /// The position in `arrays` of the record's `i`th array, `name`.
    fn array_slot(&mut self, i: usize, name: &str) -> usize {
        if let Some(&k) = self.layout.get(i) {
            if self.arrays[k].0 == name {
                return k;
            }
        }
        let k = self.slot_of(name);
        if i < self.layout.len() {
            self.layout[i] = k;
        } else {
            self.layout.push(k);
        }
        k
    }

    fn schema_index(&mut self, schema: &Arc<array_format::ArraySchema>) -> u32 {
        let ptr = Arc::as_ptr(schema) as usize;
        if let Some(i) = self.schema_ptr.get(&ptr) {
            return *i;
        }
        // Found by content: each new dataset defines its arrays with schema
        // objects of its own. Equal schemas (fill values compared by bits)
        // are the ones that serialize identically, so this is the dictionary
        // a key of serialized bytes would build, without serializing.
        let fp = schema_fingerprint(schema);
        let known = self
            .schema_eq
            .get(&fp)
            .and_then(|c| c.iter().find(|(s, _)| **s == **schema))
            .map(|(_, i)| *i);
        let i = known.unwrap_or_else(|| {
            self.schemas.push(schema_to_repr(schema));
            let i = (self.schemas.len() - 1) as u32;
            self.schema_eq
                .entry(fp)
                .or_default()
                .push((Arc::clone(schema), i));
            i
        });
        self.schema_ptr.insert(ptr, i);
        self.keep
            .push(Arc::clone(schema) as Arc<dyn std::any::Any + Send + Sync>);
        i
    }

    fn attr_index(&mut self, attributes: &Arc<IndexMap<String, Attr>>) -> Option<u32> {
        if attributes.is_empty() {
            return None;
        }
        let ptr = Arc::as_ptr(attributes) as usize;
        if let Some(i) = self.attr_ptr.get(&ptr) {
            return Some(*i);
        }
        // As for schemas: found by content (in order, values by bits).
        let fp = attrs_fingerprint(attributes);
        let known = self
            .attr_eq
            .get(&fp)
            .and_then(|c| c.iter().find(|(a, _)| same_attrs(a, attributes)))
            .map(|(_, i)| *i);
        let i = known.unwrap_or_else(|| {
            self.attr_sets.push((**attributes).clone());
            let i = (self.attr_sets.len() - 1) as u32;
            self.attr_eq
                .entry(fp)
                .or_default()
                .push((Arc::clone(attributes), i));
            i
        });
        self.attr_ptr.insert(ptr, i);
        self.keep
            .push(Arc::clone(attributes) as Arc<dyn std::any::Any + Send + Sync>);
        Some(i)
    }

    /// Adds a live record. Every array of `rec.meta` must have statistics.
    pub(crate) fn record(&mut self, name: &str, rec: &Record) -> Result<()> {
        let mut rows = std::mem::take(&mut self.rows);
        rows.clear();
        for (aname, e) in &rec.meta.arrays {
            let s = self.schema_index(&e.schema);
            let a = self.attr_index(&e.attributes);
            let st = rec
                .stats
                .get(aname)
                .map(row_of)
                .expect("every array of a record written to a run has statistics");
            rows.push((s, a, st));
        }
        let names: Vec<&str> = rec.meta.arrays.keys().map(String::as_str).collect();
        let r = self.put_record(name, rec.id, &rec.meta.attributes, &names, &mut rows);
        self.rows = rows;
        r
    }

    /// Adds a live record as a run stored it: its statistics and attributes
    /// are taken as they are, its dictionary indexes translated to this
    /// run's (no [`Record`] is built: in a merge, that was most of the cost
    /// of carrying an unchanged record over).
    pub(crate) fn record_stored(&mut self, name: &str, rec: StoredRec) -> Result<()> {
        let StoredRec {
            id,
            body: BodyRepr(attributes, arrs),
            dict,
        } = rec;
        let mut rows = std::mem::take(&mut self.rows);
        rows.clear();
        let mut names = Vec::with_capacity(arrs.len());
        for ArrRepr(aname, s, a, st) in arrs {
            let (schema, attrs) = dict
                .entry_ref(s, a)
                .expect("a stored record's indexes are checked when its block is read");
            let s = self.schema_index(schema);
            let a = self.attr_index(attrs);
            rows.push((s, a, st));
            names.push(aname);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let r = self.put_record(name, id, &attributes, &refs, &mut rows);
        self.rows = rows;
        r
    }

    /// The body of [`RunWriter::record`] and [`RunWriter::record_stored`]:
    /// the record (arrays `names` with `rows`' dictionary indexes and
    /// statistics) and its catalog rows. Drains `rows`.
    fn put_record(
        &mut self,
        name: &str,
        id: u64,
        attributes: &IndexMap<String, Attr>,
        names: &[&str],
        rows: &mut Vec<(u32, Option<u32>, StatRow)>,
    ) -> Result<()> {
        {
            let arrays: Vec<ArrOut<'_>> = names
                .iter()
                .zip(rows.iter())
                .map(|(aname, (s, a, st))| ArrOut(aname, *s, *a, st))
                .collect();
            let est = name.len()
                + 16
                + attributes
                    .iter()
                    .map(|(k, v)| k.len() + approx_attr_len(v))
                    .sum::<usize>()
                + arrays.iter().map(|a| a.0.len() + a.3.est()).sum::<usize>();
            self.push_record(&RecOut(name, id, Some(BodyOut(attributes, &arrays))), est)?;
        }
        for (i, (aname, (s, a, st))) in names.iter().zip(rows.drain(..)).enumerate() {
            let k = self.array_slot(i, aname);
            let col = &mut self.arrays[k].1;
            self.held += col.rows.push(id, st);
            col.variants.entry((s, a)).or_default().insert(id);
        }
        for (k, v) in attributes {
            let column = if v.is_scalar() {
                &mut self.attrs
            } else {
                &mut self.lists
            };
            let pushed = match column.get_mut(k.as_str()) {
                Some(c) => c.push(id, v.clone()),
                None => column.entry(k.clone()).or_default().push(id, v.clone()),
            };
            self.held += pushed;
        }
        self.held += self.ids.push(id, name.to_owned());
        self.id_set.insert(id);
        self.n_records += 1;
        if self.held >= self.spill_at {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the unspilled rows of the id list and of every column and
    /// appends them to the scratch file (created on first use), one sorted
    /// piece per column.
    fn spill(&mut self) -> Result<()> {
        if self.scratch.is_none() {
            let dir = self.path.parent().unwrap_or(Path::new(""));
            let (store, dir) = match self.storage.scratch_location(dir) {
                Some((s, d)) => (ScratchStore::Local(s), d),
                None => (ScratchStore::Run(self.storage), dir.to_owned()),
            };
            let path = dir.join(format!("scratch-{:032x}.tmp", array_format::random_uid()));
            let out = match &store {
                ScratchStore::Run(s) => s.create_new(&path)?,
                ScratchStore::Local(s) => s.create_new(&path)?,
            };
            self.scratch = Some(Scratch {
                store,
                path,
                out: Some(out),
            });
        }
        let scratch = self.scratch.as_mut().expect("created above");
        spill_column(scratch, &mut self.ids)?;
        for (_, col) in &mut self.arrays {
            spill_column(scratch, &mut col.rows)?;
        }
        for col in self.attrs.values_mut().chain(self.lists.values_mut()) {
            spill_column(scratch, col)?;
        }
        self.held = 0;
        Ok(())
    }

    /// Writes a column's blocks (rows sorted by id, about [`BLOCK_TARGET`]
    /// estimated bytes each): its unspilled rows merged with its spilled
    /// pieces, one decoded block per piece at a time. The blocks are the same
    /// whether or not anything was spilled.
    fn write_column<T: ColumnValue>(&mut self, col: ColumnBuf<T>) -> Result<Vec<(u64, BlockRef)>> {
        let ColumnBuf {
            mut rows,
            pieces,
            carried,
        } = col;
        rows.sort_unstable_by_key(|(id, _)| *id);
        // A carried run's rows come first ([`RunWriter::carry`]'s caller
        // guarantees it): its largest id is below every row here. A bug
        // otherwise: a panic in tests, an error in a release build (the
        // commit then writes the run again without carrying).
        let in_order = rows
            .first()
            .is_none_or(|(r, _)| self.carried_max.is_none_or(|m| m < *r));
        debug_assert!(in_order, "carried catalog rows must precede the run's own");
        if !in_order {
            return Err(Error::CorruptRegistry {
                path: self.path.clone(),
                reason: "internal: carried catalog rows do not precede the run's own".into(),
            });
        }
        let mut blocks = carried;
        if pieces.is_empty() {
            for chunk in chunks_by_size(&rows, BLOCK_TARGET, |(_, v)| v.est()) {
                let r = self.write_raw(&T::encode_block(chunk))?;
                blocks.push((chunk[0].0, r));
            }
            return Ok(blocks);
        }
        let mut sources: Vec<Source<T>> = pieces
            .into_iter()
            .map(|refs| Source {
                refs: refs.into_iter(),
                rows: Vec::new().into_iter(),
            })
            .collect();
        sources.push(Source {
            refs: Vec::new().into_iter(),
            rows: rows.into_iter(),
        });
        let mut heads: Vec<Option<T>> = Vec::with_capacity(sources.len());
        let mut queue = std::collections::BinaryHeap::new();
        for (i, src) in sources.iter_mut().enumerate() {
            let head = self.next_row(src)?;
            if let Some((id, _)) = &head {
                queue.push(std::cmp::Reverse((*id, i)));
            }
            heads.push(head.map(|(_, v)| v));
        }
        let (mut chunk, mut acc) = (Vec::new(), 0);
        while let Some(std::cmp::Reverse((id, i))) = queue.pop() {
            let v = heads[i].take().expect("a source in the queue has a head");
            if let Some((next, w)) = self.next_row(&mut sources[i])? {
                queue.push(std::cmp::Reverse((next, i)));
                heads[i] = Some(w);
            }
            acc += v.est();
            chunk.push((id, v));
            if acc >= BLOCK_TARGET {
                let r = self.write_raw(&T::encode_block(&chunk))?;
                blocks.push((chunk[0].0, r));
                chunk.clear();
                acc = 0;
            }
        }
        if !chunk.is_empty() {
            let r = self.write_raw(&T::encode_block(&chunk))?;
            blocks.push((chunk[0].0, r));
        }
        Ok(blocks)
    }

    /// The next row of a merge source, reading its next spilled block when
    /// the current one is exhausted.
    fn next_row<T: ColumnValue>(&mut self, src: &mut Source<T>) -> Result<Option<(u64, T)>> {
        loop {
            if let Some(row) = src.rows.next() {
                return Ok(Some(row));
            }
            let Some(r) = src.refs.next() else {
                return Ok(None);
            };
            let scratch = self
                .scratch
                .as_mut()
                .expect("spilled pieces have a scratch file");
            let rows: Vec<(u64, T)> = scratch.read_block(&r)?;
            src.rows = rows.into_iter();
        }
    }

    /// Writes the sections after the records, the index and the trailer, and
    /// makes the file durable (the tests' form: a flush syncs the run
    /// beside its other files).
    #[cfg(test)]
    pub(crate) fn finish(self) -> Result<()> {
        self.finish_unsynced()?.sync()?;
        Ok(())
    }

    /// [`RunWriter::finish`] up to the fsync: the file is whole (on a
    /// filesystem, readable through a new handle) but not yet durable; its
    /// handle, to sync before a commit names the run. An object store's
    /// handle uploads when synced: nothing is readable before.
    pub(crate) fn finish_unsynced(mut self) -> Result<Box<dyn WriteHandle>> {
        self.flush_block()?;
        let ids = std::mem::take(&mut self.ids);
        let id_blocks = self.write_column(ids)?;
        // Columns and variants in name order.
        let mut arrays = std::mem::take(&mut self.arrays);
        arrays.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut array_cols = Vec::new();
        let mut variants = Vec::with_capacity(arrays.len());
        for (name, col) in arrays {
            array_cols.push((name.clone(), self.write_column(col.rows)?));
            variants.push((name, col.variants));
        }
        let mut attr_cols = Vec::new();
        for (name, col) in std::mem::take(&mut self.attrs) {
            attr_cols.push((name, self.write_column(col)?));
        }
        let mut list_cols = Vec::new();
        for (name, col) in std::mem::take(&mut self.lists) {
            list_cols.push((name, self.write_column(col)?));
        }
        // The scratch file is no longer needed.
        self.scratch = None;
        // One block per array name for all its variants' bitmaps: a real
        // collection has thousands of variants (shapes differ per profile),
        // and a block each cost more in frames and index entries than the
        // bitmaps themselves.
        let mut variant_blocks = Vec::new();
        for (name, vs) in variants {
            let mut keys = Vec::with_capacity(vs.len());
            let mut raw = Vec::new();
            for ((s, a), ids) in vs {
                keys.push((s, a));
                let len = u32::try_from(ids.serialized_size()).map_err(|_| self.too_large())?;
                raw.extend_from_slice(&len.to_le_bytes());
                ids.serialize_into(&mut raw)
                    .expect("in-memory bitmap serializes");
            }
            variant_blocks.push((name, keys, self.write_raw(&raw)?));
        }
        let dict = DictRepr(
            std::mem::take(&mut self.schemas),
            std::mem::take(&mut self.attr_sets),
        );
        let dict = self.write_block(&dict)?;
        let id_set = self.write_bitmap(&self.id_set.clone())?;
        let killed = self.write_bitmap(&self.killed.clone())?;
        let index = IndexRepr {
            tag: INDEX_TAG.to_owned(),
            version: RUN_VERSION,
            n_records: self.n_records,
            n_tombstones: self.n_tombstones,
            dict,
            id_set,
            killed,
            names: std::mem::take(&mut self.names),
            ids: id_blocks,
            arrays: array_cols,
            attrs: attr_cols,
            variants: Vec::new(),
            lists: list_cols,
            variant_blocks,
        };
        let ix = self.write_block(&index)?;
        let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
        trailer.extend_from_slice(&ix.off.to_le_bytes());
        trailer.extend_from_slice(&u64::from(ix.len).to_le_bytes());
        trailer.extend_from_slice(&ix.raw.to_le_bytes());
        trailer.extend_from_slice(&ix.crc.to_le_bytes());
        trailer.extend_from_slice(&RUN_END_MAGIC);
        self.out.append(&trailer)?;
        self.out.release_buffer()?;
        Ok(self.out)
    }

    fn write_bitmap(&mut self, b: &RoaringTreemap) -> Result<BlockRef> {
        let mut bytes = Vec::with_capacity(b.serialized_size());
        b.serialize_into(&mut bytes)
            .expect("in-memory bitmap serializes");
        self.write_raw(&bytes)
    }
}

/// Compresses a block's bytes for offset `off`: the stored bytes and their
/// reference (`None` if it decodes larger than [`MAX_BLOCK_RAW`]).
fn pack(
    zstd: &mut zstd::bulk::Compressor<'_>,
    raw: &[u8],
    off: u64,
) -> Option<(Vec<u8>, BlockRef)> {
    let packed = zstd.compress(raw).expect("in-memory zstd");
    let r = block_ref(&packed, raw.len(), off)?;
    Some((packed, r))
}

/// The reference of a block stored as `stored` at `off` that decodes to
/// `raw_len` bytes (`None` if that is more than [`MAX_BLOCK_RAW`]).
fn block_ref(stored: &[u8], raw_len: usize, off: u64) -> Option<BlockRef> {
    Some(BlockRef {
        off,
        len: u32::try_from(stored.len()).ok()?,
        raw: u32::try_from(raw_len)
            .ok()
            .filter(|n| *n <= MAX_BLOCK_RAW)?,
        crc: crc32c::crc32c(stored),
    })
}

/// Sorts a column's unspilled rows by id and appends them to the scratch
/// file as one piece (blocks of [`SPILL_BLOCK_TARGET`]).
fn spill_column<T: ColumnValue>(scratch: &mut Scratch<'_>, col: &mut ColumnBuf<T>) -> Result<()> {
    if col.rows.is_empty() {
        return Ok(());
    }
    let mut rows = std::mem::take(&mut col.rows);
    rows.sort_unstable_by_key(|(id, _)| *id);
    let mut refs = Vec::new();
    for chunk in chunks_by_size(&rows, SPILL_BLOCK_TARGET, |(_, v)| v.est()) {
        let raw = T::spill_block(chunk);
        let pos = scratch.out().position();
        // Stored as they are, not compressed: the file is read once, then
        // removed, and compressing and decompressing it was about 3% of the
        // instructions of importing the 3,000 Argo profiles.
        let r = block_ref(&raw, raw.len(), pos).ok_or_else(|| Error::CorruptRegistry {
            path: scratch.path.clone(),
            reason: format!("a registry block would exceed {MAX_BLOCK_RAW} bytes"),
        })?;
        scratch.out().append(&raw)?;
        refs.push(r);
    }
    col.pieces.push(refs);
    Ok(())
}

fn approx_attr_len(a: &Attr) -> usize {
    match a {
        Attr::String(s) => s.len() + 2,
        Attr::StringList(l) => l.iter().map(|s| s.len() + 2).sum(),
        Attr::BoolList(l) => l.len(),
        Attr::Int64List(l) => l.len() * 9,
        Attr::UInt64List(l) => l.len() * 9,
        Attr::Float64List(l) => l.len() * 9,
        Attr::TimestampList(l) => l.len() * 9,
        _ => 9,
    }
}

/// A shared attribute set of an array.
type AttrSet = Arc<IndexMap<String, Attr>>;

/// A hash of the fields `ArraySchema`'s equality compares (the caller
/// still compares the schemas with the same fingerprint).
fn schema_fingerprint(s: &ArraySchema) -> u64 {
    use array_format::FillValue as F;
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = FINGERPRINT.build_hasher();
    s.dtype.hash(&mut h);
    s.dims.hash(&mut h);
    s.shape.hash(&mut h);
    s.chunk_shape.hash(&mut h);
    // The fill value as `ArraySchema`'s equality compares it (floats by
    // bits): the Argo profiles' arrays share a few shapes and differ by
    // their fill values, and without it each lookup compared about five
    // schemas.
    match &s.fill_value {
        None => h.write_u8(0),
        Some(f) => {
            h.write_u8(1);
            match f {
                F::Bool(v) => v.hash(&mut h),
                F::Int8(v) => v.hash(&mut h),
                F::Int16(v) => v.hash(&mut h),
                F::Int32(v) => v.hash(&mut h),
                F::Int64(v) => v.hash(&mut h),
                F::UInt8(v) => v.hash(&mut h),
                F::UInt16(v) => v.hash(&mut h),
                F::UInt32(v) => v.hash(&mut h),
                F::UInt64(v) => v.hash(&mut h),
                F::Float32(v) => v.to_bits().hash(&mut h),
                F::Float64(v) => v.to_bits().hash(&mut h),
                F::String(v) => v.hash(&mut h),
                F::Timestamp(v) => v.0.hash(&mut h),
            }
        }
    }
    h.finish()
}

/// The hasher of the dictionaries' fingerprints (in memory only, never
/// stored): foldhash with a fixed seed, so that one writer's fingerprints
/// agree.
const FINGERPRINT: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x41_54_4c_41_53);

/// A hash of an attribute set's keys, in order.
fn attrs_fingerprint(a: &IndexMap<String, Attr>) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = FINGERPRINT.build_hasher();
    for k in a.keys() {
        k.hash(&mut h);
    }
    h.finish()
}

/// Equal attribute sets in the same order (`IndexMap`'s own equality
/// ignores order, which their serialization keeps).
fn same_attrs(a: &IndexMap<String, Attr>, b: &IndexMap<String, Attr>) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Bytes left before a record block's records for its array header (at most
/// 5: a marker and a `u32` count).
const BLOCK_HEAD: usize = 5;

/// Splits `items` into runs of about `target` estimated bytes (at least one
/// item each).
fn chunks_by_size<T>(items: &[T], target: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, it) in items.iter().enumerate() {
        acc += size(it);
        if acc >= target {
            out.push(&items[start..=i]);
            start = i + 1;
            acc = 0;
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

// ---- reading ----------------------------------------------------------------

/// The decoded dictionary of one run.
struct Dict {
    schemas: Vec<Arc<array_format::ArraySchema>>,
    attr_sets: Vec<Arc<IndexMap<String, Attr>>>,
    /// The attributes of an array that has none, shared.
    no_attrs: Arc<IndexMap<String, Attr>>,
}

impl Dict {
    /// The array entry a record names by its schema and attribute-set
    /// indexes into this dictionary.
    fn entry(&self, schema: u32, attrs: Option<u32>) -> std::result::Result<ArrayEntry, String> {
        let (schema, attributes) = self.entry_ref(schema, attrs)?;
        Ok(ArrayEntry {
            schema: Arc::clone(schema),
            attributes: Arc::clone(attributes),
        })
    }

    /// [`Dict::entry`] borrowed: no reference count touched.
    #[allow(clippy::type_complexity)] // the two halves of an `ArrayEntry`
    fn entry_ref(
        &self,
        schema: u32,
        attrs: Option<u32>,
    ) -> std::result::Result<
        (
            &Arc<array_format::ArraySchema>,
            &Arc<IndexMap<String, Attr>>,
        ),
        String,
    > {
        let schema = self
            .schemas
            .get(schema as usize)
            .ok_or_else(|| format!("schema index {schema} out of range"))?;
        let attributes = match attrs {
            None => &self.no_attrs,
            Some(i) => self
                .attr_sets
                .get(i as usize)
                .ok_or_else(|| format!("attribute set index {i} out of range"))?,
        };
        Ok((schema, attributes))
    }
}

/// Records of one block with their names (`None`: tombstone).
type Block = Vec<(String, Option<Record>)>;
/// A record block as a merge reads it (tombstones as `None`).
pub(crate) type StoredBlock = Vec<(String, Option<MergeRec>)>;

/// A record block as cached: its decompressed bytes and each record's span;
/// a record is decoded (and converted to a [`Record`]) on its first lookup
/// only.
struct CachedBlock {
    /// The block decompressed: a `MessagePack` array of records.
    raw: Vec<u8>,
    /// Where each record lies in `raw`, in name order.
    recs: Vec<mpk::Span>,
    found: Vec<OnceLock<Found>>,
    /// Per array name a schema lookup asked for (at most [`MEMO_ARRAYS`],
    /// the oldest replaced), each record's answer as read from its bytes
    /// ([`pack_answer`]; 0: not yet read): a scan repeated on a warm handle
    /// walks no record bytes. 8 bytes per record and array, beside the
    /// record's few hundred in `raw`.
    answers: parking_lot::Mutex<Vec<(Box<str>, Answers)>>,
}

/// One array's remembered answers in a record block, one per record.
type Answers = Arc<[AtomicU64]>;

/// Arrays whose answers a cached record block remembers.
const MEMO_ARRAYS: usize = 4;

/// A record's answer for one array, packed for [`CachedBlock::answers`]:
/// 1 a tombstone, 2 no such array, else the high bit with the schema and
/// attribute-set indexes (`None` when they do not fit: not remembered).
fn pack_answer(a: &mpk::ArrayRef) -> Option<u64> {
    match *a {
        mpk::ArrayRef::Tombstone => Some(1),
        mpk::ArrayRef::Absent => Some(2),
        mpk::ArrayRef::Present(schema, attrs) => {
            let attrs = match attrs {
                None => 0,
                Some(i) if i < (1 << 31) => u64::from(i) + 1,
                Some(_) => return None,
            };
            (schema < (1 << 31)).then(|| (1 << 63) | u64::from(schema) << 32 | attrs)
        }
    }
}

/// The answer [`pack_answer`] packed (`None`: 0, none remembered).
fn unpack_answer(v: u64) -> Option<mpk::ArrayRef> {
    match v {
        0 => None,
        1 => Some(mpk::ArrayRef::Tombstone),
        2 => Some(mpk::ArrayRef::Absent),
        _ => {
            let schema = ((v >> 32) & 0x7fff_ffff) as u32;
            let attrs = (v & 0xffff_ffff) as u32;
            Some(mpk::ArrayRef::Present(schema, attrs.checked_sub(1)))
        }
    }
}

impl CachedBlock {
    /// The remembered answers of `array` in this block, made if new.
    fn answers(&self, array: &str) -> Answers {
        let mut all = self.answers.lock();
        if let Some((_, a)) = all.iter().find(|(n, _)| &**n == array) {
            return Arc::clone(a);
        }
        if all.len() >= MEMO_ARRAYS {
            all.remove(0);
        }
        let a: Answers = (0..self.recs.len()).map(|_| AtomicU64::new(0)).collect();
        all.push((array.into(), Arc::clone(&a)));
        a
    }

    /// The bytes of record `j`.
    fn bytes(&self, j: usize) -> &[u8] {
        &self.raw[self.recs[j].bytes.clone()]
    }

    /// The dataset name of record `j`.
    fn name(&self, j: usize) -> &str {
        self.recs[j].name(&self.raw)
    }
}

/// A run's cached record blocks by block number, each with the tick of its
/// last use (a hit takes the read lock only and stamps the tick; the least
/// recently used block is evicted first).
#[derive(Default)]
struct BlockCache {
    blocks: HashMap<usize, (Arc<CachedBlock>, AtomicU64)>,
    /// Raw bytes of `blocks`.
    bytes: usize,
}

/// The records of a run being carried into a merge ([`RunWriter::carry`]):
/// the next record block to write, and the block whose records are being
/// copied one by one with the next one's position.
pub(crate) struct Carried<'r> {
    run: &'r Run,
    next: usize,
    open: Option<(Arc<CachedBlock>, usize)>,
}

/// An opened run: its index decoded, its blocks read on demand.
pub(crate) struct Run {
    id: RunId,
    path: PathBuf,
    handle: Arc<dyn ReadHandle>,
    len: u64,
    index: IndexRepr,
    dict: OnceLock<Arc<Dict>>,
    id_set: OnceLock<RoaringTreemap>,
    blocks: RwLock<BlockCache>,
    /// Ticks for [`BlockCache`]'s recency.
    tick: AtomicU64,
    /// The raw bytes all runs' caches may hold ([`CACHE_BYTES`]; less in
    /// tests).
    cache_bytes: usize,
    /// Decoded catalog columns, variants and id blocks, for queries.
    catalog: catalog::Cache,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        CACHED_BYTES.fetch_sub(self.blocks.get_mut().bytes, Ordering::Relaxed);
    }
}

impl Run {
    /// Opens a run: reads its tail (trailer and index) and validates the index.
    pub(crate) fn open(storage: &dyn Storage, path: &Path, id: RunId) -> Result<Run> {
        let tail_read = if storage.is_object_store() {
            TAIL_READ
        } else {
            LOCAL_TAIL_READ
        };
        Self::open_reading_tail(storage, path, id, tail_read)
    }

    /// [`Run::open`], its first read taking the last `tail_read` bytes.
    fn open_reading_tail(
        storage: &dyn Storage,
        path: &Path,
        id: RunId,
        tail_read: u64,
    ) -> Result<Run> {
        let handle = storage.open_read(path)?;
        let len = handle.try_len()?;
        let corrupt = |reason: String| Error::CorruptRegistry {
            path: path.to_owned(),
            reason,
        };
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(corrupt(format!("{len} bytes is too short for a run")));
        }
        let tail_len = len.min(tail_read.max(TRAILER_LEN));
        let tail = handle.read_vec_at(len - tail_len, tail_len as usize)?;
        let t = &tail[tail.len() - TRAILER_LEN as usize..];
        if t[24..32] != RUN_END_MAGIC {
            return Err(corrupt("bad trailer magic (truncated run?)".into()));
        }
        let ix = BlockRef {
            off: u64::from_le_bytes(t[0..8].try_into().expect("8 bytes")),
            len: u32::try_from(u64::from_le_bytes(t[8..16].try_into().expect("8 bytes")))
                .map_err(|_| corrupt("index length out of range".into()))?,
            raw: u32::from_le_bytes(t[16..20].try_into().expect("4 bytes")),
            crc: u32::from_le_bytes(t[20..24].try_into().expect("4 bytes")),
        };
        let body_end = len - TRAILER_LEN;
        check_ref(&ix, body_end, path)?;
        let packed = if ix.off >= len - tail_len {
            let s = (ix.off - (len - tail_len)) as usize;
            tail[s..s + ix.len as usize].to_vec()
        } else {
            handle.read_vec_at(ix.off, ix.len as usize)?
        };
        // The header is checked when the tail read covers it; otherwise the
        // trailer magic and the index tag and version identify the run (one
        // request fewer on object stores).
        if tail_len == len {
            if tail[..8] != RUN_MAGIC {
                return Err(corrupt("not a registry run (bad magic)".into()));
            }
            let version = u32::from_le_bytes(tail[8..12].try_into().expect("4 bytes"));
            if !(OLDEST_RUN_VERSION..=RUN_VERSION).contains(&version) {
                return Err(Error::UnsupportedRegistry {
                    path: path.to_owned(),
                    version,
                    supported: RUN_VERSION,
                });
            }
        }
        let index: IndexRepr = decode_block(&packed, &ix, path)?;
        validate_index(&index, body_end, path)?;
        Ok(Run {
            id,
            path: path.to_owned(),
            handle,
            len,
            index,
            dict: OnceLock::new(),
            id_set: OnceLock::new(),
            blocks: RwLock::new(BlockCache::default()),
            tick: AtomicU64::new(0),
            cache_bytes: CACHE_BYTES,
            catalog: catalog::Cache::default(),
        })
    }

    /// Tombstones in this run.
    pub(crate) fn n_tombstones(&self) -> u64 {
        self.index.n_tombstones
    }

    /// The file's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Live records in this run.
    pub(crate) fn n_records(&self) -> u64 {
        self.index.n_records
    }

    fn read<T: DeserializeOwned>(&self, r: &BlockRef) -> Result<T> {
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        decode_block(&packed, r, &self.path)
    }

    /// Decodes a block with a seed (streaming into a caller's structure).
    fn read_seed<S>(&self, r: &BlockRef, seed: S) -> Result<()>
    where
        S: for<'de> serde::de::DeserializeSeed<'de, Value = ()>,
    {
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        let raw = decode_raw(&packed, r, &self.path)?;
        let mut de = rmp_serde::Deserializer::new(&raw[..]);
        seed.deserialize(&mut de)
            .map_err(|e| Error::CorruptRegistry {
                path: self.path.clone(),
                reason: format!("block at {}: msgpack: {e}", r.off),
            })
    }

    /// A typed statistic block (run format 3), decoded and checked.
    fn stat_block(&self, r: &BlockRef) -> Result<typed::StatBlock> {
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        let raw = decode_raw(&packed, r, &self.path)?;
        typed::decode_stats(&raw).map_err(|e| self.corrupt(format!("block at {}: {e}", r.off)))
    }

    /// An attribute column block: typed (run format 3) or `MessagePack` rows.
    fn attr_block(&self, r: &BlockRef) -> Result<Vec<(u64, Attr)>> {
        if self.index.version < 3 {
            return self.read(r);
        }
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        let raw = decode_raw(&packed, r, &self.path)?;
        typed::decode_attrs(&raw).map_err(|e| self.corrupt(format!("block at {}: {e}", r.off)))
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::CorruptRegistry {
            path: self.path.clone(),
            reason,
        }
    }

    fn dict(&self) -> Result<Arc<Dict>> {
        if let Some(d) = self.dict.get() {
            return Ok(Arc::clone(d));
        }
        let repr: DictRepr = self.read(&self.index.dict)?;
        let mut schemas = Vec::with_capacity(repr.0.len());
        for (i, s) in repr.0.into_iter().enumerate() {
            schemas.push(Arc::new(
                schema_from_repr(s).map_err(|e| self.corrupt(format!("schema {i}: {e}")))?,
            ));
        }
        let mut attr_sets = Vec::with_capacity(repr.1.len());
        for set in repr.1 {
            for k in set.keys() {
                validate_attribute_name(k).map_err(|e| self.corrupt(e.to_string()))?;
            }
            attr_sets.push(Arc::new(set));
        }
        let d = Arc::new(Dict {
            schemas,
            attr_sets,
            no_attrs: Arc::new(IndexMap::new()),
        });
        Ok(Arc::clone(self.dict.get_or_init(|| d)))
    }

    /// The file and the offset of this run's first id-column block (for
    /// tests that damage a block only a carry reads).
    #[cfg(test)]
    pub(crate) fn first_id_block(&self) -> Option<(&Path, u64)> {
        self.index
            .ids
            .first()
            .map(|(_, r)| (self.path.as_path(), r.off))
    }

    /// The ids this run has a live record for.
    pub(crate) fn id_set(&self) -> Result<&RoaringTreemap> {
        if let Some(s) = self.id_set.get() {
            return Ok(s);
        }
        let s = self.bitmap(&self.index.id_set)?;
        Ok(self.id_set.get_or_init(|| s))
    }

    /// The committed ids this run's commit made dead.
    pub(crate) fn killed(&self) -> Result<RoaringTreemap> {
        self.bitmap(&self.index.killed)
    }

    fn bitmap(&self, r: &BlockRef) -> Result<RoaringTreemap> {
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        let raw = decode_raw(&packed, r, &self.path)?;
        RoaringTreemap::deserialize_from(&raw[..]).map_err(|e| self.corrupt(format!("bitmap: {e}")))
    }

    /// The `n` bitmaps of a version-5 variant block, in order: each a `u32`
    /// length then exactly that many bytes of serialized bitmap.
    fn bitmaps(&self, r: &BlockRef, n: usize) -> Result<Vec<RoaringTreemap>> {
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        let raw = decode_raw(&packed, r, &self.path)?;
        let bad = |e: String| self.corrupt(format!("variant block at {}: {e}", r.off));
        let mut rest = &raw[..];
        let mut out = Vec::with_capacity(n.min(raw.len() / 4));
        for _ in 0..n {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(bad("a bitmap's length runs past the end".into()));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len > tail.len() {
                return Err(bad("a bitmap runs past the end".into()));
            }
            let (bytes, tail) = tail.split_at(len);
            let mut reader = bytes;
            let ids =
                RoaringTreemap::deserialize_from(&mut reader).map_err(|e| bad(e.to_string()))?;
            if !reader.is_empty() {
                return Err(bad("a bitmap is shorter than its length".into()));
            }
            out.push(ids);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad("bytes past the last bitmap".into()));
        }
        Ok(out)
    }

    fn record_block(&self, i: usize) -> Result<Arc<CachedBlock>> {
        self.record_block_from(i, None)
    }

    fn record_block_cached(&self, i: usize) -> bool {
        self.blocks.read().blocks.contains_key(&i)
    }

    /// Record block `i` from the cache, else from `packed` (its stored bytes,
    /// fetched by the caller in a batch), else read from the run.
    fn record_block_from(&self, i: usize, packed: Option<Vec<u8>>) -> Result<Arc<CachedBlock>> {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        if let Some((block, used)) = self.blocks.read().blocks.get(&i) {
            used.store(now, Ordering::Relaxed);
            return Ok(Arc::clone(block));
        }
        let r = &self.index.names[i].1;
        let packed = match packed {
            Some(p) => p,
            None => self.handle.read_vec_at(r.off, r.len as usize)?,
        };
        let raw = decode_raw(&packed, r, &self.path)?;
        let recs = mpk::record_spans(&raw)
            .map_err(|e| self.corrupt(format!("block at {}: msgpack: {e}", r.off)))?;
        self.check_record_block(i, recs.len(), |j| recs[j].name(&raw))?;
        let found = (0..recs.len()).map(|_| OnceLock::new()).collect();
        let block = Arc::new(CachedBlock {
            raw,
            recs,
            found,
            answers: parking_lot::Mutex::new(Vec::new()),
        });
        let mut cache = self.blocks.write();
        if !cache.blocks.contains_key(&i) {
            cache.bytes += block.raw.len();
            CACHED_BYTES.fetch_add(block.raw.len(), Ordering::Relaxed);
            cache
                .blocks
                .insert(i, (Arc::clone(&block), AtomicU64::new(now)));
            while CACHED_BYTES.load(Ordering::Relaxed) > self.cache_bytes && cache.blocks.len() > 1
            {
                let oldest = cache
                    .blocks
                    .iter()
                    .filter(|(j, _)| **j != i)
                    .min_by_key(|(_, (_, used))| used.load(Ordering::Relaxed))
                    .map(|(j, _)| *j)
                    .expect("more than one block");
                let (old, _) = cache.blocks.remove(&oldest).expect("just found");
                cache.bytes -= old.raw.len();
                CACHED_BYTES.fetch_sub(old.raw.len(), Ordering::Relaxed);
            }
        }
        Ok(block)
    }

    /// Record `j` of a cached block, decoded.
    fn record(&self, block: &CachedBlock, j: usize) -> Result<RecRepr> {
        rmp_serde::from_slice(block.bytes(j))
            .map_err(|e| self.corrupt(format!("record {:?}: msgpack: {e}", block.name(j))))
    }

    fn load_record_block(&self, i: usize) -> Result<Vec<RecRepr>> {
        let recs: Vec<RecRepr> = self.read(&self.index.names[i].1)?;
        self.check_record_block(i, recs.len(), |j| &recs[j].0)?;
        Ok(recs)
    }

    /// Checks the names of record block `i` (`n` records, the `j`-th named
    /// `name(j)`): it starts at its index key, ends before the next block's,
    /// and is sorted.
    fn check_record_block<'n>(
        &self,
        i: usize,
        n: usize,
        name: impl Fn(usize) -> &'n str,
    ) -> Result<()> {
        let first = &self.index.names[i].0;
        if n == 0 || name(0) != first {
            return Err(self.corrupt(format!("record block {i} does not start at its index key")));
        }
        if let Some((next, _)) = self.index.names.get(i + 1) {
            if name(n - 1) >= next.as_str() {
                return Err(self.corrupt(format!("record block {i} overlaps the next")));
            }
        }
        if (1..n).any(|j| name(j - 1) >= name(j)) {
            return Err(self.corrupt(format!("record block {i} is not sorted")));
        }
        Ok(())
    }

    /// `array`'s entry (schema and attributes) in each of `names`
    /// (ascending): `out[k]` is set where it is still `None` (no newer run
    /// answered) and this run has a record of `names[k]`. Names are walked
    /// in order beside the record blocks, so each block is found once; a
    /// record not yet built is decoded for its schema and attribute-set
    /// indexes only.
    pub(crate) fn get_schemas(
        &self,
        names: &[&str],
        array: &str,
        out: &mut [Option<SchemaOf>],
        entries: &mut Entries,
    ) -> Result<()> {
        // The record blocks the names fall in, each with the positions of
        // its names still unanswered.
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut k = 0;
        while k < names.len() {
            let i = self
                .index
                .names
                .partition_point(|(first, _)| first.as_str() <= names[k]);
            if i == 0 {
                k += 1;
                continue;
            }
            // The names that fall in block `i - 1`.
            let end = match self.index.names.get(i) {
                Some((next, _)) => k + names[k..].partition_point(|n| *n < next.as_str()),
                None => names.len(),
            };
            let open: Vec<usize> = (k..end).filter(|&j| out[j].is_none()).collect();
            k = end;
            if !open.is_empty() {
                groups.push((i - 1, open));
            }
        }
        // Blocks not cached are fetched in batches of ranged reads (on object
        // stores one round of concurrent requests per batch instead of one
        // request per block), each batch small beside the cache budget so
        // that its blocks are still cached when they are used.
        let budget = (self.cache_bytes / 4).clamp(1, PREFETCH_BYTES);
        let mut dict: Option<Arc<Dict>> = None;
        let mut g = 0;
        while g < groups.len() {
            let mut end = g;
            let mut raw = 0usize;
            while end < groups.len()
                && (end == g || raw + self.index.names[groups[end].0].1.raw as usize <= budget)
            {
                raw += self.index.names[groups[end].0].1.raw as usize;
                end += 1;
            }
            let missing: Vec<usize> = groups[g..end]
                .iter()
                .map(|(i, _)| *i)
                .filter(|&i| !self.record_block_cached(i))
                .collect();
            let mut fetched: HashMap<usize, Vec<u8>> = HashMap::new();
            if missing.len() > 1 {
                let ranges: Vec<(u64, usize)> = missing
                    .iter()
                    .map(|&i| {
                        let r = &self.index.names[i].1;
                        (r.off, r.len as usize)
                    })
                    .collect();
                fetched = missing
                    .into_iter()
                    .zip(self.handle.read_ranges(&ranges)?)
                    .collect();
            }
            for (i, open) in &groups[g..end] {
                let block = self.record_block_from(*i, fetched.remove(i))?;
                let memo = block.answers(array);
                // The names ascend (repeats allowed), so each is searched
                // for only from the previous one's place, and a name that is
                // the same or the next record (a scan of every dataset)
                // costs one or two comparisons.
                let mut from = 0usize;
                for &j in open {
                    let rest = &block.recs[from..];
                    let want = names[j].as_bytes();
                    let is = |p: usize| {
                        rest.get(p).is_some_and(|r| {
                            array_format::same_bytes(r.name_bytes(&block.raw), want)
                        })
                    };
                    let found = if is(0) {
                        Ok(0)
                    } else if is(1) {
                        Ok(1)
                    } else {
                        rest.binary_search_by(|r| r.name_bytes(&block.raw).cmp(want))
                    };
                    match found {
                        Ok(p) => {
                            out[j] = Some(self.schema_in(
                                &block,
                                from + p,
                                (array, &memo[from + p]),
                                &mut dict,
                                entries,
                            )?);
                            from += p;
                        }
                        Err(p) => from += p,
                    }
                }
            }
            g = end;
        }
        Ok(())
    }

    /// The record `r` decodes to (its parts moved, not copied).
    fn to_found(&self, r: RecRepr) -> Result<(String, Found)> {
        let (name, stored) = self.to_stored(r)?;
        let found = match stored {
            Some(s) => Found::Live(s.into_record()),
            None => Found::Tombstone,
        };
        Ok((name, found))
    }

    /// Checks a stored record (its names, its dictionary indexes, no array
    /// twice) without building a [`Record`]; `None`: a tombstone.
    fn to_stored(&self, r: RecRepr) -> Result<(String, Option<StoredRec>)> {
        let RecRepr(name, id, body) = r;
        validate_dataset_name(&name).map_err(|e| self.corrupt(e.to_string()))?;
        let Some(body) = body else {
            return Ok((name, None));
        };
        let dict = self.dict()?;
        for k in body.0.keys() {
            validate_attribute_name(k).map_err(|e| self.corrupt(e.to_string()))?;
        }
        let arrs = &body.1;
        // A few arrays are compared with the earlier ones; more, with a set.
        let mut seen: Option<std::collections::HashSet<&str>> =
            (arrs.len() > 8).then(|| std::collections::HashSet::with_capacity(arrs.len()));
        for (i, ArrRepr(aname, s, a, _)) in arrs.iter().enumerate() {
            validate_array_name(aname).map_err(|e| self.corrupt(e.to_string()))?;
            dict.entry_ref(*s, *a).map_err(|e| self.corrupt(e))?;
            let twice = match &mut seen {
                Some(set) => !set.insert(aname.as_str()),
                None => arrs[..i].iter().any(|o| o.0 == *aname),
            };
            if twice {
                return Err(self.corrupt(format!("array {aname:?} appears twice in {name:?}")));
            }
        }
        Ok((name, Some(StoredRec { id, body, dict })))
    }

    /// The record block holding `name` and its position there (`None`: this
    /// run has no record of it). Reads at most one record block.
    fn locate(&self, name: &str) -> Result<Option<(Arc<CachedBlock>, usize)>> {
        let i = self
            .index
            .names
            .partition_point(|(first, _)| first.as_str() <= name);
        if i == 0 {
            return Ok(None);
        }
        let block = self.record_block(i - 1)?;
        Ok(block
            .recs
            .binary_search_by(|r| r.name_bytes(&block.raw).cmp(name.as_bytes()))
            .ok()
            .map(|j| (block, j)))
    }

    /// What this run says about `name`: reads at most one record block.
    pub(crate) fn get(&self, name: &str) -> Result<Option<Found>> {
        let Some((block, j)) = self.locate(name)? else {
            return Ok(None);
        };
        if let Some(f) = block.found[j].get() {
            return Ok(Some(f.clone()));
        }
        let (_, f) = self.to_found(self.record(&block, j)?)?;
        Ok(Some(block.found[j].get_or_init(|| f).clone()))
    }

    /// `array`'s entry in record `j` of a cached block, interned in
    /// `entries`: the record's remembered answer `memo` if known, else from
    /// the record if it was built, else its schema and attribute-set indexes
    /// found in its bytes by the `MessagePack` walker (nothing else decoded)
    /// and remembered. `dict` is the run's dictionary once a record needed
    /// it.
    fn schema_in(
        &self,
        block: &CachedBlock,
        j: usize,
        (array, memo): (&str, &AtomicU64),
        dict: &mut Option<Arc<Dict>>,
        entries: &mut Entries,
    ) -> Result<SchemaOf> {
        let found = if let Some(a) = unpack_answer(memo.load(Ordering::Relaxed)) {
            a
        } else {
            if let Some(f) = block.found[j].get() {
                return Ok(match f {
                    Found::Live(r) => SchemaOf::of(&r.meta, array, entries),
                    Found::Tombstone => SchemaOf::NoDataset,
                });
            }
            let a = mpk::find_array(&block.raw, &block.recs[j], array)
                .map_err(|e| self.corrupt(format!("record {:?}: msgpack: {e}", block.name(j))))?;
            if let Some(v) = pack_answer(&a) {
                memo.store(v, Ordering::Relaxed);
            }
            a
        };
        Ok(match found {
            mpk::ArrayRef::Tombstone => SchemaOf::NoDataset,
            mpk::ArrayRef::Absent => SchemaOf::NoArray,
            mpk::ArrayRef::Present(schema, attrs) => {
                let dict = match dict {
                    Some(d) => d,
                    None => dict.insert(self.dict()?),
                };
                let (s, a) = dict.entry_ref(schema, attrs).map_err(|e| self.corrupt(e))?;
                SchemaOf::Schema(entries.intern(s, a))
            }
        })
    }

    /// Record block `i` decoded (tombstones as `None`); `None` past the last.
    pub(crate) fn decoded_block(&self, i: usize) -> Result<Option<Block>> {
        Ok(self.stored_block(i)?.map(|block| {
            block
                .into_iter()
                .map(|(name, rec)| (name, rec.map(MergeRec::into_record)))
                .collect()
        }))
    }

    /// Record block `i` (`None` past the last) with each record checked but
    /// left as stored (`None`: a tombstone), for a merge.
    pub(crate) fn stored_block(&self, i: usize) -> Result<Option<StoredBlock>> {
        if i >= self.index.names.len() {
            return Ok(None);
        }
        let recs = self.load_record_block(i)?;
        let mut out = Vec::with_capacity(recs.len());
        for r in recs {
            let (name, stored) = self.to_stored(r)?;
            out.push((name, stored.map(MergeRec::Stored)));
        }
        Ok(Some(out))
    }

    /// The run's `(id, name)` pairs, sorted by id.
    pub(crate) fn ids(&self) -> Result<Vec<(u64, String)>> {
        let mut out = Vec::with_capacity(self.index.n_records as usize);
        for i in 0..self.index.ids.len() {
            out.extend(self.id_names(i)?.pairs());
        }
        Ok(out)
    }

    /// Id block `i` as one string of names, checked: it starts at its index
    /// key, is sorted, ends before the next block's key, and holds valid
    /// names. Walked without serde, no allocation per name.
    fn id_names(&self, i: usize) -> Result<catalog::IdNames> {
        let (first, r) = &self.index.ids[i];
        let packed = self.handle.read_vec_at(r.off, r.len as usize)?;
        let raw = decode_raw(&packed, r, &self.path)?;
        let bad = |e: String| self.corrupt(format!("id block at {}: {e}", r.off));
        let names = if self.index.version >= 6 {
            let b = typed::decode_names(raw).map_err(bad)?;
            catalog::IdNames::from_typed(b)
        } else {
            self.id_names_mpk(&raw, r)?
        };
        if names.ids.first() != Some(*first) {
            return Err(self.corrupt("id block does not start at its index key".into()));
        }
        if let Some((next, _)) = self.index.ids.get(i + 1) {
            if names.ids.last().is_some_and(|last| last >= *next) {
                return Err(self.corrupt("id blocks are not sorted".into()));
            }
        }
        Ok(names)
    }

    /// An id block of run formats 1 to 5 (`MessagePack` `[id, name]` rows)
    /// as one string of names, checked: sorted, and every name valid.
    fn id_names_mpk(&self, raw: &[u8], r: &BlockRef) -> Result<catalog::IdNames> {
        let bad = |e: String| self.corrupt(format!("id block at {}: {e}", r.off));
        let mut c = mpk::Cursor::new(raw);
        let n = c.array().map_err(bad)?;
        // Every row takes at least 3 bytes: bounded before reserving.
        if n.saturating_mul(3) > raw.len() {
            return Err(bad(format!("{n} rows in {} bytes", raw.len())));
        }
        let mut ids: Vec<u64> = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        let mut text: Vec<u8> = Vec::with_capacity(raw.len());
        for _ in 0..n {
            if c.array().map_err(bad)? != 2 {
                return Err(bad("a row is not (id, name)".into()));
            }
            let id = c.uint().map_err(bad)?;
            let name = c.str_bytes().map_err(bad)?;
            // One pass over the bytes; the full check (and its message)
            // only for a name that fails it.
            let plain = !name.is_empty()
                && name.len() <= crate::name::MAX_NAME_LEN
                && name != b"."
                && name != b".."
                && !name.iter().any(|b| *b == 0 || *b == b'/' || *b == b'\\');
            if !plain {
                let name = std::str::from_utf8(name).map_err(|e| bad(e.to_string()))?;
                validate_dataset_name(name).map_err(|e| self.corrupt(e.to_string()))?;
            }
            if ids.last().is_some_and(|last| *last >= id) {
                return Err(self.corrupt("id block is not sorted".into()));
            }
            ids.push(id);
            text.extend_from_slice(name);
            ends.push(u32::try_from(text.len()).map_err(|_| bad("block too large".into()))?);
        }
        if c.pos() != raw.len() {
            return Err(bad("bytes past the rows".into()));
        }
        // UTF-8 checked once for the whole block: valid as a whole and cut
        // only at character boundaries, every name is valid on its own.
        let text = String::from_utf8(text).map_err(|e| bad(e.to_string()))?;
        if !ends.iter().all(|e| text.is_char_boundary(*e as usize)) {
            return Err(bad("a name is not UTF-8".into()));
        }
        Ok(catalog::IdNames::from_parts(Ints::List(ids), ends, text))
    }

    /// Array names with a catalog column in this run.
    pub(crate) fn array_names(&self) -> impl Iterator<Item = &str> {
        self.index.arrays.iter().map(|(n, _)| n.as_str())
    }

    /// Dataset attribute names with a catalog column in this run.
    pub(crate) fn attribute_names(&self) -> impl Iterator<Item = &str> {
        self.index.attrs.iter().map(|(n, _)| n.as_str())
    }

    /// The catalog rows of one array: `(id, statistics)`, sorted by id.
    pub(crate) fn array_rows(&self, array: &str) -> Result<Vec<(u64, ArrayStats)>> {
        let Some((_, blocks)) = self.index.arrays.iter().find(|(n, _)| n == array) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (_, r) in blocks {
            if self.index.version >= 3 {
                let b = self.stat_block(r)?;
                out.extend((0..b.ids.len()).map(|i| {
                    let stats = ArrayStats {
                        min: b.min.get(i),
                        max: b.max.get(i),
                        null_count: b.nulls.get(i),
                        row_count: b.cells.get(i),
                    };
                    (b.ids.get(i), stats)
                }));
            } else {
                let rows: Vec<(u64, StatRow)> = self.read(r)?;
                out.extend(rows.into_iter().map(|(id, s)| (id, stats_of(s))));
            }
        }
        Ok(out)
    }

    /// The catalog rows of one dataset attribute: `(id, value)`, sorted by id.
    pub(crate) fn attribute_rows(&self, key: &str) -> Result<Vec<(u64, Attr)>> {
        let Some((_, blocks)) = self.index.attrs.iter().find(|(n, _)| n == key) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (_, r) in blocks {
            out.extend(self.attr_block(r)?);
        }
        Ok(out)
    }
}

fn check_ref(r: &BlockRef, body_end: u64, path: &Path) -> Result<()> {
    let end = r.off.checked_add(u64::from(r.len));
    if r.off < HEADER_LEN || end.is_none_or(|e| e > body_end) || r.raw > MAX_BLOCK_RAW {
        return Err(Error::CorruptRegistry {
            path: path.to_owned(),
            reason: format!(
                "block at {} of {} bytes ({} decoded) is outside the run",
                r.off, r.len, r.raw
            ),
        });
    }
    Ok(())
}

fn validate_index(ix: &IndexRepr, body_end: u64, path: &Path) -> Result<()> {
    let corrupt = |reason: String| Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    };
    if ix.tag != INDEX_TAG || !(OLDEST_RUN_VERSION..=RUN_VERSION).contains(&ix.version) {
        return Err(corrupt(format!(
            "index tag {:?} version {} is not {INDEX_TAG:?} {OLDEST_RUN_VERSION}..={RUN_VERSION}",
            ix.tag, ix.version
        )));
    }
    for (n, vs) in &ix.variants {
        validate_array_name(n).map_err(|e| corrupt(e.to_string()))?;
        for (_, _, r) in vs {
            check_ref(r, body_end, path)?;
        }
    }
    for (n, _, r) in &ix.variant_blocks {
        validate_array_name(n).map_err(|e| corrupt(e.to_string()))?;
        check_ref(r, body_end, path)?;
    }
    for (n, blocks) in &ix.lists {
        validate_attribute_name(n).map_err(|e| corrupt(e.to_string()))?;
        for (_, r) in blocks {
            check_ref(r, body_end, path)?;
        }
    }
    for r in [&ix.dict, &ix.id_set, &ix.killed] {
        check_ref(r, body_end, path)?;
    }
    for w in ix.names.windows(2) {
        if w[0].0 >= w[1].0 {
            return Err(corrupt("record blocks are not sorted".into()));
        }
    }
    for (n, r) in &ix.names {
        validate_dataset_name(n).map_err(|e| corrupt(e.to_string()))?;
        check_ref(r, body_end, path)?;
    }
    for (_, r) in &ix.ids {
        check_ref(r, body_end, path)?;
    }
    for (n, blocks) in &ix.arrays {
        validate_array_name(n).map_err(|e| corrupt(e.to_string()))?;
        for (_, r) in blocks {
            check_ref(r, body_end, path)?;
        }
    }
    for (n, blocks) in &ix.attrs {
        validate_attribute_name(n).map_err(|e| corrupt(e.to_string()))?;
        for (_, r) in blocks {
            check_ref(r, body_end, path)?;
        }
    }
    Ok(())
}

/// Checks a block's CRC, decompresses it to exactly its recorded size (at
/// most [`MAX_BLOCK_RAW`]) and decodes it.
fn decode_block<T: DeserializeOwned>(packed: &[u8], r: &BlockRef, path: &Path) -> Result<T> {
    from_msgpack(&decode_raw(packed, r, path)?, r, path)
}

/// Decodes a block's `MessagePack` bytes.
fn from_msgpack<T: DeserializeOwned>(raw: &[u8], r: &BlockRef, path: &Path) -> Result<T> {
    rmp_serde::from_slice(raw).map_err(|e| Error::CorruptRegistry {
        path: path.to_owned(),
        reason: format!("block at {}: msgpack: {e}", r.off),
    })
}

/// Checks a block's stored bytes against its reference: length and CRC.
fn check_stored(stored: &[u8], r: &BlockRef, path: &Path) -> Result<()> {
    let reason = if stored.len() != r.len as usize {
        format!("block at {} is truncated", r.off)
    } else if crc32c::crc32c(stored) != r.crc {
        format!("block at {}: CRC mismatch", r.off)
    } else {
        return Ok(());
    };
    Err(Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    })
}

/// A block's bytes after the CRC check and decompression.
fn decode_raw(packed: &[u8], r: &BlockRef, path: &Path) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::CorruptRegistry {
        path: path.to_owned(),
        reason,
    };
    check_stored(packed, r, path)?;
    if r.raw > MAX_BLOCK_RAW {
        return Err(corrupt(format!("block at {} decodes too large", r.off)));
    }
    // Streamed, not `bulk::decompress` (which reserves the recorded size up
    // front): memory follows what the bytes really decode to, so a hostile
    // size field costs nothing, and one byte past the record is an error.
    // Each thread keeps one decompression context (creating one per block
    // was ~7% of a cold query). The output goes straight into the vector's
    // spare capacity (`std::io::Read` zero-filled every buffer first).
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    // Reserved up to 1 MiB whatever the ratio (highly compressible blocks,
    // such as id blocks of generated names, otherwise grew by doubling, each
    // step a copy into fresh pages), more only as the stored bytes justify.
    let reserve = packed.len().saturating_mul(8).max(1 << 20);
    let limit = r.raw as usize + 1;
    let mut raw = Vec::with_capacity((r.raw as usize).min(reserve));
    DCTX.with_borrow_mut(|ctx| {
        use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
        let ctx = ctx.get_or_insert_with(zstd::zstd_safe::DCtx::create);
        let zstd = |code: usize| zstd::zstd_safe::get_error_name(code).to_owned();
        ctx.reset(ResetDirective::SessionOnly).map_err(zstd)?;
        let mut input = InBuffer::around(packed);
        loop {
            if raw.len() == raw.capacity() {
                if raw.len() >= limit {
                    // Past the recorded size: reported below.
                    return Ok(());
                }
                raw.reserve_exact(raw.len().max(1 << 12).min(limit - raw.len()));
            }
            let (read, written) = (input.pos(), raw.len());
            let frame_left = ctx
                .decompress_stream(&mut OutBuffer::around_pos(&mut raw, written), &mut input)
                .map_err(zstd)?;
            if frame_left == 0 && input.pos() == packed.len() {
                return Ok(());
            }
            // With room for output and nothing read or written, the input
            // ended inside a frame.
            if input.pos() == read && raw.len() == written {
                return Err("incomplete frame".to_owned());
            }
        }
    })
    .map_err(|e| corrupt(format!("block at {}: zstd: {e}", r.off)))?;
    if raw.len() != r.raw as usize {
        return Err(corrupt(format!("block at {}: decoded size differs", r.off)));
    }
    Ok(raw)
}

/// Decodes a whole run from bytes and visits everything in it (for the fuzz
/// target): the index, every record, id block and catalog column.
pub(crate) fn fuzz_run(bytes: &[u8]) {
    let storage = array_format::MemoryStorage::new();
    let path = Path::new("/fuzz/r.run");
    storage
        .create_dir_all(Path::new("/fuzz"))
        .expect("in-memory directory");
    storage
        .write_new_synced(path, bytes)
        .expect("in-memory write");
    let Ok(run) = Run::open(&storage, path, RunId::fresh()) else {
        return;
    };
    let mut i = 0;
    let mut names = Vec::new();
    while let Ok(Some(block)) = run.decoded_block(i) {
        names.extend(block.into_iter().map(|(n, _)| n));
        i += 1;
    }
    // Lookups read records from cached block bytes (the `MessagePack` walker
    // for schemas, serde for whole records), a path apart from the above.
    // Each block's first name too, for blocks that did not decode whole.
    names.extend(run.index.names.iter().map(|(n, _)| n.clone()));
    names.sort_unstable();
    names.dedup();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut schemas = vec![None; refs.len()];
    let _ = run.get_schemas(&refs, "TEMP", &mut schemas, &mut Entries::default());
    for n in refs.iter().take(64) {
        let _ = run.get(n);
    }
    let _ = run.ids();
    if let Ok(set) = run.id_set() {
        // Naming query matches walks id blocks without serde.
        let _ = run.names_of(set);
    }
    let _ = run.id_set();
    let _ = run.killed();
    let names: Vec<String> = run.array_names().map(str::to_owned).collect();
    for n in names {
        let _ = run.array_rows(&n);
    }
    let mut keys: Vec<String> = run.attribute_names().map(str::to_owned).collect();
    keys.extend(run.list_attribute_names().unwrap_or_default());
    for k in &keys {
        let _ = run.attribute_rows(k);
        let _ = run.attr_column(k);
    }
    let arrays: Vec<String> = run.array_names().map(str::to_owned).collect();
    for a in &arrays {
        let _ = run.array_variants(a);
        let _ = run.stat_column(a);
    }
    if let Ok(ids) = run.id_set() {
        let ids = ids.clone();
        let _ = run.names_of(&ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `decode_raw`'s outcome against a reference (the `std::io::Read`
    /// decoder it replaced, at most the recorded size plus one byte): the
    /// same bytes, or an error for both, on valid blocks of many sizes,
    /// recorded sizes off by one, every truncation, trailing bytes, two
    /// frames back to back and bytes that are no frame.
    #[test]
    fn block_decompression_agrees_with_a_reader() {
        let reference = |packed: &[u8], raw: u32| -> Option<Vec<u8>> {
            let mut out = Vec::new();
            let decoder = zstd::stream::read::Decoder::new(packed).ok()?;
            std::io::Read::read_to_end(
                &mut std::io::Read::take(decoder, u64::from(raw) + 1),
                &mut out,
            )
            .ok()?;
            (out.len() == raw as usize).then_some(out)
        };
        let decode = |packed: &[u8], raw: u32| {
            let r = BlockRef {
                off: 7,
                len: packed.len() as u32,
                raw,
                crc: crc32c::crc32c(packed),
            };
            decode_raw(packed, &r, Path::new("run"))
        };
        let check = |packed: &[u8], raw: u32| {
            let got = decode(packed, raw).ok();
            assert_eq!(
                got,
                reference(packed, raw),
                "{} bytes, raw {raw}",
                packed.len()
            );
        };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for size in [0usize, 1, 100, 4095, 4096, 4097, 70_000, 3 << 20] {
            // Half text-like (compressible), half random.
            let data: Vec<u8> = (0..size)
                .map(|k| {
                    if k % 2 == 0 {
                        b'a' + (k % 7) as u8
                    } else {
                        next() as u8
                    }
                })
                .collect();
            let packed = zstd::bulk::compress(&data, 1).unwrap();
            let raw = size as u32;
            assert_eq!(decode(&packed, raw).unwrap(), data);
            check(&packed, raw);
            check(&packed, raw + 1);
            if raw > 0 {
                check(&packed, raw - 1);
            }
            if size <= 4097 {
                for end in 0..packed.len() {
                    check(&packed[..end], raw);
                }
            }
            let mut trailing = packed.clone();
            trailing.extend_from_slice(&[0, 1, 2]);
            check(&trailing, raw);
            let mut two = packed.clone();
            two.extend_from_slice(&packed);
            check(&two, raw);
            check(&two, 2 * raw);
        }
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            check(&bytes, (next() % 100) as u32);
        }
    }

    #[test]
    fn remembered_answers_round_trip() {
        use mpk::ArrayRef;
        let cases = [
            ArrayRef::Tombstone,
            ArrayRef::Absent,
            ArrayRef::Present(0, None),
            ArrayRef::Present(0, Some(0)),
            ArrayRef::Present(7, Some(3)),
            ArrayRef::Present((1 << 31) - 1, Some((1 << 31) - 1)),
        ];
        for a in cases {
            let v = pack_answer(&a).unwrap();
            assert_ne!(v, 0);
            assert_eq!(format!("{:?}", unpack_answer(v).unwrap()), format!("{a:?}"));
        }
        assert!(pack_answer(&ArrayRef::Present(1 << 31, None)).is_none());
        assert!(pack_answer(&ArrayRef::Present(0, Some(1 << 31))).is_none());
        assert!(unpack_answer(0).is_none());
    }
    use array_format::{ArraySchema, DType, FillValue, MemoryStorage};

    fn record(id: u64, temp: f64) -> Record {
        let schema = Arc::new(
            ArraySchema::new(
                "TEMP",
                DType::Float32,
                vec!["N_LEVELS".into()],
                vec![3],
                None,
                Some(FillValue::Float32(99999.0)),
            )
            .unwrap(),
        );
        let attrs = Arc::new(IndexMap::from([("units".to_owned(), Attr::from("degC"))]));
        let mut meta = DatasetMeta::default();
        meta.attributes
            .insert("cycle".into(), Attr::Int64(id as i64));
        meta.attributes
            .insert("tags".into(), Attr::StringList(vec!["a".into()]));
        meta.arrays.insert(
            "TEMP".into(),
            ArrayEntry {
                schema,
                attributes: attrs,
            },
        );
        let stats = crate::FastMap::from_iter([(
            "TEMP".to_owned(),
            ArrayStats {
                min: Some(StatValue::Float(temp - 1.0)),
                max: Some(StatValue::Float(temp)),
                null_count: 1,
                row_count: 3,
            },
        )]);
        Record {
            id,
            meta: Arc::new(meta),
            stats: Arc::new(stats),
        }
    }

    /// A run writer at `path`, its directory created.
    fn new_writer<'s>(storage: &'s MemoryStorage, path: &Path) -> RunWriter<'s> {
        storage.create_dir_all(path.parent().unwrap()).unwrap();
        RunWriter::create(storage, path).unwrap()
    }

    fn write(storage: &MemoryStorage, path: &Path, n: u64, tomb: &[&str], killed: &[u64]) {
        let mut w = new_writer(storage, path);
        let mut names: Vec<(String, Option<u64>)> =
            (0..n).map(|i| (format!("ds{i:06}"), Some(i))).collect();
        names.extend(tomb.iter().map(|t| ((*t).to_owned(), None)));
        names.sort();
        for (name, id) in names {
            match id {
                Some(id) => w.record(&name, &record(id, id as f64)).unwrap(),
                None => w.tombstone(&name).unwrap(),
            }
        }
        w.kill(&killed.iter().copied().collect());
        w.finish().unwrap();
    }

    /// Schemas and attribute sets are found by content: equal ones (from
    /// objects of their own) share an index; a fill value differing only in
    /// its sign bit, or the same attributes in another order, do not.
    #[test]
    fn dictionary_dedupes_by_content_keeping_order_and_bits() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/d.run");
        let mut w = new_writer(&storage, path);
        let attr = |keys: &[&str]| {
            Arc::new(
                keys.iter()
                    .map(|k| ((*k).to_owned(), Attr::from(*k)))
                    .collect::<IndexMap<_, _>>(),
            )
        };
        let variants = [
            (0.0f32, attr(&["units", "long_name"])),
            (0.0, attr(&["units", "long_name"])),
            (-0.0, attr(&["units", "long_name"])),
            (0.0, attr(&["long_name", "units"])),
        ];
        for (i, (fill, attributes)) in variants.iter().enumerate() {
            let mut rec = record(i as u64, 1.0);
            let e = Arc::make_mut(&mut rec.meta).arrays.get_mut("TEMP").unwrap();
            let mut schema = (*e.schema).clone();
            schema.fill_value = Some(FillValue::Float32(*fill));
            e.schema = Arc::new(schema);
            e.attributes = Arc::clone(attributes);
            w.record(&format!("v{i}"), &rec).unwrap();
        }
        w.finish().unwrap();
        let run = Run::open(&storage, path, RunId::fresh()).unwrap();
        assert_eq!(run.dict().unwrap().schemas.len(), 2, "0.0 and -0.0");
        assert_eq!(run.dict().unwrap().attr_sets.len(), 2, "two orders");
        for (i, (fill, attributes)) in variants.iter().enumerate() {
            let Some(Found::Live(r)) = run.get(&format!("v{i}")).unwrap() else {
                panic!("v{i}");
            };
            let e = &r.meta.arrays["TEMP"];
            assert!(e
                .schema
                .fill_value
                .as_ref()
                .unwrap()
                .same_as(&FillValue::Float32(*fill)));
            assert!(
                e.attributes.keys().eq(attributes.keys()),
                "v{i}: order kept"
            );
        }
    }

    /// Records are serialized from borrowed parts, block by block: the bytes
    /// are those of the owned forms the reader decodes.
    #[test]
    fn records_and_block_headers_serialize_as_the_owned_forms() {
        for n in [0usize, 1, 15, 16, 255, 65_535, 65_536] {
            let whole = rmp_serde::to_vec(&vec![0u8; n]).unwrap();
            let mut head = Vec::new();
            mpk_write::array(&mut head, n as u32);
            assert_eq!(head, whole[..whole.len() - n], "{n} items");
        }
        let rec = record(7, 20.5);
        let st = row_of(&rec.stats["TEMP"]);
        let owned = RecRepr(
            "ds7".into(),
            7,
            Some(BodyRepr(
                rec.meta.attributes.clone(),
                vec![ArrRepr("TEMP".into(), 3, Some(1), st.clone())],
            )),
        );
        let arrays = [ArrOut("TEMP", 3, Some(1), &st)];
        let borrowed = RecOut("ds7", 7, Some(BodyOut(&rec.meta.attributes, &arrays)));
        assert_eq!(
            rmp_serde::to_vec(&borrowed).unwrap(),
            rmp_serde::to_vec(&owned).unwrap()
        );
        assert_eq!(
            rmp_serde::to_vec(&RecOut("x", 0, None)).unwrap(),
            rmp_serde::to_vec(&RecRepr("x".into(), 0, None)).unwrap()
        );
    }

    /// The writer finds an array's column by the previous record's layout
    /// first: records whose arrays change order, appear and disappear still
    /// put every row in its own array's column and variant.
    #[test]
    fn catalog_rows_follow_array_names_whatever_the_order() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/o.run");
        let mut w = new_writer(&storage, path);
        let layouts: [&[&str]; 5] = [
            &["A", "B"],
            &["B", "A"],
            &["A", "C", "B"],
            &["C"],
            &["A", "B"],
        ];
        let mut expected: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
        for (i, layout) in layouts.iter().enumerate() {
            let base = record(i as u64, 0.0);
            let temp = base.meta.arrays["TEMP"].clone();
            let mut meta = (*base.meta).clone();
            meta.arrays.clear();
            let mut stats = crate::FastMap::default();
            for (j, a) in layout.iter().enumerate() {
                meta.arrays.insert((*a).to_owned(), temp.clone());
                let v = (i * 10 + j) as f64;
                stats.insert(
                    (*a).to_owned(),
                    ArrayStats {
                        min: Some(StatValue::Float(v)),
                        max: Some(StatValue::Float(v)),
                        null_count: 0,
                        row_count: 3,
                    },
                );
                expected.entry(a).or_default().push((i as u64, v));
            }
            let rec = Record {
                id: i as u64,
                meta: Arc::new(meta),
                stats: Arc::new(stats),
            };
            w.record(&format!("d{i}"), &rec).unwrap();
        }
        w.finish().unwrap();
        let run = Run::open(&storage, path, RunId::fresh()).unwrap();
        for (a, rows) in &expected {
            let got: Vec<(u64, f64)> = run
                .array_rows(a)
                .unwrap()
                .into_iter()
                .map(|(id, s)| match s.max {
                    Some(StatValue::Float(v)) => (id, v),
                    other => panic!("{a}: {other:?}"),
                })
                .collect();
            assert_eq!(&got, rows, "array {a}");
        }
        for (i, layout) in layouts.iter().enumerate() {
            let Some(Found::Live(r)) = run.get(&format!("d{i}")).unwrap() else {
                panic!("d{i}");
            };
            assert!(r.meta.arrays.keys().eq(layout.iter().copied()), "d{i}");
        }
    }

    #[test]
    fn runs_round_trip_lookups_listing_and_catalog() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/r.run");
        // Enough records for several blocks.
        write(&storage, path, 5000, &["gone"], &[77_777]);
        let run = Run::open(&storage, path, RunId::fresh()).unwrap();
        assert!(run.index.names.len() > 1, "several record blocks");
        assert_eq!(run.n_records(), 5000);
        match run.get("ds004321").unwrap() {
            Some(Found::Live(r)) => {
                assert_eq!(r, record(4321, 4321.0));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(run.get("gone").unwrap(), Some(Found::Tombstone)));
        assert!(run.get("nope").unwrap().is_none());
        assert!(run.get("").unwrap().is_none());
        let ids = run.ids().unwrap();
        assert_eq!(ids.len(), 5000);
        assert!(ids.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(run.killed().unwrap().iter().collect::<Vec<_>>(), [77_777]);
        assert_eq!(run.id_set().unwrap().len(), 5000);
        // Names of a set of ids: strided (within and across id blocks),
        // with ids the run does not list, as from a listing.
        for stride in [1_usize, 3, 97, 4999] {
            let want: Vec<(u64, String)> = ids.iter().step_by(stride).cloned().collect();
            let mut asked: RoaringTreemap = want.iter().map(|(id, _)| *id).collect();
            asked.extend([u64::MAX - 1, want[0].0 + 1_000_000]);
            assert_eq!(run.names_of(&asked).unwrap(), want, "stride {stride}");
        }
        let rows = run.array_rows("TEMP").unwrap();
        assert_eq!(rows.len(), 5000);
        assert_eq!(rows[10].1.max, Some(StatValue::Float(10.0)));
        // Scalar attributes only: lists have no column.
        assert_eq!(run.attribute_rows("cycle").unwrap()[7], (7, Attr::Int64(7)));
        assert!(run.attribute_rows("tags").unwrap().is_empty());
        // One schema and one attribute set, stored once.
        assert_eq!(run.dict().unwrap().schemas.len(), 1);
        assert_eq!(run.dict().unwrap().attr_sets.len(), 1);
    }

    /// Lookups of single records and of schemas agree with the records
    /// written, whether the block cache holds every block or only the last
    /// one (each lookup then decompresses its block again).
    #[test]
    fn lookups_agree_with_any_block_cache_budget() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/r.run");
        write(&storage, path, 6000, &["gone"], &[]);
        // Unbounded (every block stays, whatever other tests cache in this
        // process) and one byte (only the newest block stays).
        for budget in [usize::MAX, 1] {
            let mut run = Run::open(&storage, path, RunId::fresh()).unwrap();
            run.cache_bytes = budget;
            let n_blocks = run.index.names.len();
            assert!(n_blocks > 2, "several record blocks");
            // Strided, so consecutive lookups hit different blocks.
            for k in (0..6000_u64).step_by(3) {
                let i = (k * 977) % 6000;
                match run.get(&format!("ds{i:06}")).unwrap() {
                    Some(Found::Live(r)) => assert_eq!(r, record(i, i as f64)),
                    other => panic!("{i}: {other:?}"),
                }
            }
            let cached = run.blocks.read().blocks.len();
            assert_eq!(cached, if budget == 1 { 1 } else { n_blocks });
            let names: Vec<String> = (0..6000).step_by(7).map(|i| format!("ds{i:06}")).collect();
            let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
            all.extend(["gone", "nope"]);
            all.sort_unstable();
            let mut out = vec![None; all.len()];
            let mut entries = Entries::default();
            run.get_schemas(&all, "TEMP", &mut out, &mut entries)
                .unwrap();
            // Again: answered from the answers the first lookup remembered
            // (the same), for TEMP and for PSAL.
            let mut again = vec![None; all.len()];
            let mut again_entries = Entries::default();
            run.get_schemas(&all, "TEMP", &mut again, &mut again_entries)
                .unwrap();
            assert_eq!(again, out);
            assert_eq!(
                format!("{:?}", again_entries.list),
                format!("{:?}", entries.list)
            );
            let mut none = vec![None; all.len()];
            run.get_schemas(&all, "PSAL", &mut none, &mut Entries::default())
                .unwrap();
            let mut none_again = vec![None; all.len()];
            run.get_schemas(&all, "PSAL", &mut none_again, &mut Entries::default())
                .unwrap();
            assert_eq!(none_again, none);
            // A run with nothing cached fetches the blocks in batches of
            // ranged reads (several blocks per batch under a 256 KiB budget):
            // the same answers.
            let mut cold = Run::open(&storage, path, RunId::fresh()).unwrap();
            cold.cache_bytes = if budget == 1 { 1 } else { 1 << 20 };
            let mut cold_out = vec![None; all.len()];
            let mut cold_entries = Entries::default();
            cold.get_schemas(&all, "TEMP", &mut cold_out, &mut cold_entries)
                .unwrap();
            assert_eq!(cold_out, out);
            assert_eq!(
                format!("{:?}", cold_entries.list),
                format!("{:?}", entries.list)
            );
            // Every dataset shares one schema and attribute set: one entry.
            assert_eq!(entries.list.len(), 1);
            for ((name, got), absent) in all.iter().zip(&out).zip(&none) {
                match *name {
                    "gone" => {
                        assert!(matches!(got, Some(SchemaOf::NoDataset)));
                        assert!(matches!(absent, Some(SchemaOf::NoDataset)));
                    }
                    "nope" => assert!(got.is_none() && absent.is_none()),
                    _ => {
                        let Some(SchemaOf::Schema(k)) = got else {
                            panic!("{name}: {got:?}");
                        };
                        let e = entries.get(*k);
                        assert_eq!(e.schema.shape, vec![3]);
                        assert_eq!(e.attributes.get("units"), Some(&Attr::from("degC")));
                        assert!(matches!(absent, Some(SchemaOf::NoArray)), "{name}");
                    }
                }
            }
        }
    }

    /// A run opens whatever its first read from the end covers: the trailer
    /// only or part of the index (the index then read by itself), the index,
    /// all but the header, or the whole run (header checked); lookups agree.
    #[test]
    fn runs_open_whatever_the_tail_read_covers() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/t.run");
        write(&storage, path, 3000, &["gone"], &[]);
        let handle = storage.open_read(path).unwrap();
        let len = handle.len();
        let trailer = handle.read_vec_at(len - TRAILER_LEN, 8).unwrap();
        let index_at = u64::from_le_bytes(trailer.try_into().unwrap());
        let index = len - TRAILER_LEN - index_at;
        // The trailer only, part of the index, the index, all but the
        // header, the whole run, more than the run.
        for tail in [
            0,
            TRAILER_LEN + index / 2,
            TRAILER_LEN + index,
            len - 1,
            len,
            len + 9,
        ] {
            let run = Run::open_reading_tail(&storage, path, RunId::fresh(), tail).unwrap();
            for i in (0..3000_u64).step_by(97) {
                match run.get(&format!("ds{i:06}")).unwrap() {
                    Some(Found::Live(r)) => assert_eq!(r, record(i, i as f64)),
                    other => panic!("tail {tail}, {i}: {other:?}"),
                }
            }
            assert!(matches!(run.get("gone").unwrap(), Some(Found::Tombstone)));
            assert!(run.get("ds").unwrap().is_none(), "tail {tail}");
        }
        // The filesystem's tail read, on a store of this size, holds the index.
        assert!(!storage.is_object_store());
        assert!(index + TRAILER_LEN <= LOCAL_TAIL_READ);
    }

    /// Writes `n` records whose ids are not in name order, spilling the id
    /// list and catalog rows whenever they hold `spill_at` estimated bytes.
    fn write_shuffled(storage: &MemoryStorage, path: &Path, n: u64, spill_at: usize) -> bool {
        let mut w = new_writer(storage, path);
        w.spill_at = spill_at;
        for i in 0..n {
            let id = (i * 7919) % n;
            w.record(&format!("ds{i:06}"), &record(id, id as f64))
                .unwrap();
        }
        let spilled = w.scratch.is_some();
        w.finish().unwrap();
        spilled
    }

    #[test]
    fn spilled_catalog_rows_give_the_same_run_and_leave_no_scratch_file() {
        let storage = MemoryStorage::new();
        let whole = Path::new("/s/atlas.meta/a.run");
        let spilled = Path::new("/s/atlas.meta/b.run");
        // 7919 is prime: ids 0..n in a name order unlike the id order.
        assert!(!write_shuffled(&storage, whole, 6000, usize::MAX));
        assert!(write_shuffled(&storage, spilled, 6000, 20 << 10));
        assert_eq!(
            storage.contents(whole).unwrap(),
            storage.contents(spilled).unwrap(),
            "the same bytes, spilled or not"
        );
        let mut left = storage.list_dir(Path::new("/s/atlas.meta")).unwrap();
        left.sort();
        assert_eq!(left, ["a.run", "b.run"]);
        let run = Run::open(&storage, spilled, RunId::fresh()).unwrap();
        assert!(run.index.arrays[0].1.len() > 1, "several catalog blocks");
        let rows = run.array_rows("TEMP").unwrap();
        let ids: Vec<u64> = rows.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (0..6000).collect::<Vec<_>>());
        assert!(rows
            .iter()
            .all(|(id, s)| s.max == Some(StatValue::Float(*id as f64))));
        let listed = run.ids().unwrap();
        assert_eq!(listed.len(), 6000);
        assert_eq!(listed[1], (1, format!("ds{:06}", 1679)));
        assert_eq!(
            run.attribute_rows("cycle").unwrap()[42],
            (42, Attr::Int64(42))
        );
    }

    /// The hand-written `MessagePack` of records and statistics is byte for
    /// byte what `rmp_serde` writes: every integer and string length at the
    /// edges of each form, every kind of statistic, tombstones, records of
    /// many arrays, with and without attribute sets.
    #[test]
    fn records_and_statistics_are_written_as_rmp_serde_writes_them() {
        let uints = [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        for v in uints {
            let mut out = Vec::new();
            mpk_write::uint(&mut out, v);
            assert_eq!(out, rmp_serde::to_vec(&v).unwrap(), "{v}");
        }
        let sints = [
            0,
            5,
            127,
            128,
            300,
            70_000,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32_768,
            -32_769,
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
            i64::MIN,
        ];
        for v in sints {
            let mut out = Vec::new();
            mpk_write::sint(&mut out, v);
            assert_eq!(out, rmp_serde::to_vec(&v).unwrap(), "{v}");
        }
        for n in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            let text = "é".repeat(n / 2) + &"x".repeat(n % 2);
            let mut out = Vec::new();
            mpk_write::str(&mut out, &text);
            assert_eq!(out, rmp_serde::to_vec(&text).unwrap(), "{n}");
        }
        let mut stats: Vec<Option<StatRepr>> = vec![
            None,
            Some(StatRepr::B(true)),
            Some(StatRepr::B(false)),
            Some(StatRepr::F(-0.0)),
            Some(StatRepr::F(f64::from_bits(0x7ff8_0000_0000_0123))),
            Some(StatRepr::F(1e300)),
            Some(StatRepr::S(String::new())),
            Some(StatRepr::S(
                "a longer string of more than thirty-two bytes".into(),
            )),
        ];
        stats.extend(sints.iter().map(|&v| Some(StatRepr::I(v))));
        stats.extend(sints.iter().map(|&v| Some(StatRepr::T(v))));
        stats.extend(uints.iter().map(|&v| Some(StatRepr::U(v))));
        for v in &stats {
            let mut out = Vec::new();
            mpk_write::stat(&mut out, v.as_ref());
            assert_eq!(out, rmp_serde::to_vec(v).unwrap(), "{v:?}");
        }
        // A column section of string statistics (`typed::put_section`).
        let refs: Vec<Option<&StatRepr>> = stats.iter().map(Option::as_ref).collect();
        let mut section = Vec::new();
        mpk_write::array(&mut section, refs.len() as u32);
        for v in &refs {
            mpk_write::stat(&mut section, *v);
        }
        assert_eq!(section, rmp_serde::to_vec(&refs).unwrap());
        // Records: a tombstone, then bodies of 0, 3 and 40 arrays.
        let tomb = RecOut("gone", 7, None);
        let mut out = Vec::new();
        tomb.write_mpk(&mut out);
        assert_eq!(out, rmp_serde::to_vec(&tomb).unwrap());
        let attributes: IndexMap<String, Attr> = IndexMap::from([
            ("title".to_owned(), Attr::from("a profile")),
            ("cycle".to_owned(), Attr::Int64(-3)),
            ("levels".to_owned(), Attr::Float64List(vec![1.5, -0.0])),
        ]);
        let rows: Vec<(String, StatRow)> = (0..40)
            .map(|i| {
                let a = stats[i % stats.len()].clone();
                let b = stats[(i * 7 + 3) % stats.len()].clone();
                (
                    format!("ARRAY_{i}"),
                    StatRow(a, b, i as u64 * 1000, u64::MAX - i as u64),
                )
            })
            .collect();
        for n in [0, 3, 40] {
            let arrays: Vec<ArrOut<'_>> = rows[..n]
                .iter()
                .enumerate()
                .map(|(i, (name, st))| {
                    ArrOut(
                        name,
                        (i * 100_000) as u32,
                        (i % 3 != 0).then_some(i as u32 * 300),
                        st,
                    )
                })
                .collect();
            let rec = RecOut("ds000042", 1 << 40, Some(BodyOut(&attributes, &arrays)));
            let mut out = Vec::new();
            rec.write_mpk(&mut out);
            assert_eq!(out, rmp_serde::to_vec(&rec).unwrap(), "{n} arrays");
        }
    }

    /// Spilled statistics rows read back as they were written, every kind
    /// of value (floats by their bits), and a damaged block is an error, not
    /// a panic.
    #[test]
    fn spilled_statistics_rows_read_back_exactly() {
        let values = [
            None,
            Some(StatRepr::B(true)),
            Some(StatRepr::B(false)),
            Some(StatRepr::I(i64::MIN)),
            Some(StatRepr::U(u64::MAX)),
            Some(StatRepr::F(-0.0)),
            Some(StatRepr::F(f64::from_bits(0x7ff8_0000_0000_0123))),
            Some(StatRepr::S(String::new())),
            Some(StatRepr::S("température ✓".into())),
            Some(StatRepr::T(-5)),
        ];
        let rows: Vec<(u64, StatRow)> = values
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                values.iter().map(move |b| {
                    (
                        i as u64 * 1000 + 7,
                        StatRow(a.clone(), b.clone(), i as u64, u64::MAX - i as u64),
                    )
                })
            })
            .collect();
        let raw = StatRow::spill_block(&rows);
        let back = StatRow::unspill_block(&raw).unwrap();
        // Debug text tells -0.0 from 0.0 and shows a NaN's payload as NaN;
        // the bits are compared below.
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));
        let bits = |r: &[(u64, StatRow)]| -> Vec<Option<u64>> {
            r.iter()
                .flat_map(|(_, s)| [&s.0, &s.1])
                .map(|v| match v {
                    Some(StatRepr::F(f)) => Some(f.to_bits()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(bits(&back), bits(&rows));
        for cut in [1, 9, 25, raw.len() - 1] {
            assert!(StatRow::unspill_block(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = raw.clone();
        bad[24] = 9;
        assert!(StatRow::unspill_block(&bad).is_err());
    }

    /// A record of `arrays` arrays (statistics telling array and id apart),
    /// `scalars` scalar attributes and `lists` list attributes.
    fn wide_record(id: u64, arrays: usize, scalars: usize, lists: usize) -> Record {
        let mut meta = DatasetMeta::default();
        let mut stats = crate::FastMap::default();
        for a in 0..arrays {
            let name = format!("A{a:02}");
            let schema = Arc::new(
                ArraySchema::new(&name, DType::Float64, vec!["N".into()], vec![2], None, None)
                    .unwrap(),
            );
            meta.arrays.insert(
                name.clone(),
                ArrayEntry {
                    schema,
                    attributes: Arc::default(),
                },
            );
            let v = (id * 100 + a as u64) as f64;
            stats.insert(
                name,
                ArrayStats {
                    min: Some(StatValue::Float(-v)),
                    max: Some(StatValue::Float(v)),
                    null_count: 0,
                    row_count: 2,
                },
            );
        }
        for k in 0..scalars {
            meta.attributes
                .insert(format!("s{k}"), Attr::Int64((id * 10 + k as u64) as i64));
        }
        for k in 0..lists {
            meta.attributes
                .insert(format!("l{k}"), Attr::Int64List(vec![id as i64, k as i64]));
        }
        Record {
            id,
            meta: Arc::new(meta),
            stats: Arc::new(stats),
        }
    }

    /// A run of many catalog columns, spilled or not, has the same bytes,
    /// and every column holds its own rows (ids, each array's statistics,
    /// scalar and list attributes in their sections).
    #[test]
    fn many_columns_land_in_their_places_spilled_or_not() {
        let (arrays, scalars, lists) = (19, 8, 3);
        let storage = MemoryStorage::new();
        let write = |path: &Path, spill_at: usize| {
            let mut w = new_writer(&storage, path);
            w.spill_at = spill_at;
            let n = 3000u64;
            for i in 0..n {
                let id = (i * 7919) % n;
                w.record(
                    &format!("ds{i:06}"),
                    &wide_record(id, arrays, scalars, lists),
                )
                .unwrap();
            }
            let spilled = w.scratch.is_some();
            w.finish().unwrap();
            spilled
        };
        let whole = Path::new("/s/atlas.meta/w.run");
        let spilled = Path::new("/s/atlas.meta/p.run");
        assert!(!write(whole, usize::MAX));
        assert!(write(spilled, 64 << 10));
        assert_eq!(
            storage.contents(whole).unwrap(),
            storage.contents(spilled).unwrap(),
            "the same bytes, spilled or not"
        );
        let run = Run::open(&storage, spilled, RunId::fresh()).unwrap();
        let listed = run.ids().unwrap();
        assert_eq!(listed.len(), 3000);
        assert_eq!(listed[1], (1, format!("ds{:06}", 1679)));
        let array_names: Vec<&str> = run.index.arrays.iter().map(|(n, _)| n.as_str()).collect();
        let expected: Vec<String> = (0..arrays).map(|a| format!("A{a:02}")).collect();
        assert_eq!(array_names, expected);
        for (a, name) in expected.iter().enumerate() {
            let rows = run.array_rows(name).unwrap();
            assert_eq!(rows.len(), 3000, "{name}");
            for (id, st) in rows {
                assert_eq!(
                    st.max,
                    Some(StatValue::Float((id * 100 + a as u64) as f64)),
                    "{name}"
                );
            }
        }
        let attr_names: Vec<&str> = run.index.attrs.iter().map(|(n, _)| n.as_str()).collect();
        let mut scalar_keys: Vec<String> = (0..scalars).map(|k| format!("s{k}")).collect();
        scalar_keys.sort();
        assert_eq!(attr_names, scalar_keys);
        for key in &scalar_keys {
            let k: u64 = key[1..].parse().unwrap();
            let rows = run.attribute_rows(key).unwrap();
            assert_eq!(rows.len(), 3000);
            assert!(rows
                .iter()
                .all(|(id, v)| *v == Attr::Int64((id * 10 + k) as i64)));
        }
        let list_names: Vec<&str> = run.index.lists.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(list_names, ["l0", "l1", "l2"]);
        for (k, (_, blocks)) in run.index.lists.iter().enumerate() {
            let mut rows = Vec::new();
            for (_, r) in blocks {
                rows.extend(run.attr_block(r).unwrap());
            }
            assert_eq!(rows.len(), 3000);
            assert!(rows
                .iter()
                .all(|(id, v)| *v == Attr::Int64List(vec![*id as i64, k as i64])));
        }
    }

    /// A merge re-encodes the runs' records as they are stored
    /// (`record_stored`) byte for byte as it would from decoded records:
    /// mixed statistics (strings, absences), several schemas and attribute
    /// sets across three runs, a changed record, tombstones and killed ids.
    #[test]
    fn a_merge_of_stored_records_writes_what_decoded_records_write() {
        let storage = MemoryStorage::new();
        let dir = Path::new("/s/atlas.meta");
        let paths: Vec<PathBuf> = (0..3).map(|k| dir.join(format!("{k}.run"))).collect();
        for (k, path) in paths.iter().enumerate() {
            let mut w = new_writer(&storage, path);
            let k = k as u64;
            // Run k holds the names i ≡ k (mod 3), and the newest also
            // rewrites a sixth of the middle run's: records of both merged
            // runs survive, and each run's dictionary orders its entries
            // differently (a TEMP shape of its own per run).
            for i in (0..12_000u64).filter(|i| i % 3 == k || (k == 2 && i % 6 == 1)) {
                let name = format!("ds{i:06}");
                if i % 101 == 7 && k > 0 {
                    w.tombstone(&name).unwrap();
                    continue;
                }
                let mut rec = record(i, i as f64 + k as f64);
                if k == 1 && i % 4 == 1 {
                    let meta = Arc::make_mut(&mut rec.meta);
                    let mut e = meta.arrays["TEMP"].clone();
                    let mut schema = (*e.schema).clone();
                    schema.shape = vec![3 + k];
                    schema.chunk_shape = schema.shape.clone();
                    e.schema = Arc::new(schema);
                    meta.arrays.insert("TEMP".into(), e);
                }
                let stats = Arc::make_mut(&mut rec.stats);
                stats.insert("TEMP".into(), mixed_stats(i));
                if i % 3 == 0 {
                    // A second array with a schema and attributes of its own.
                    let meta = Arc::make_mut(&mut rec.meta);
                    let mut e = meta.arrays["TEMP"].clone();
                    let mut schema = (*e.schema).clone();
                    schema.shape = vec![i % 7 + 1];
                    schema.chunk_shape = schema.shape.clone();
                    e.schema = Arc::new(schema);
                    e.attributes = Arc::new(IndexMap::from([(
                        "k".to_owned(),
                        Attr::Int64((i % 5) as i64),
                    )]));
                    meta.arrays.insert("PSAL".into(), e);
                    meta.attributes
                        .insert("note".into(), Attr::from(format!("n{}", i % 11)));
                    stats.insert("PSAL".into(), mixed_stats(i * 2 + 9000));
                }
                w.record(&name, &rec).unwrap();
            }
            w.kill(&[k * 5 + 1, k * 5 + 2].into_iter().collect());
            w.finish().unwrap();
        }
        let set = super::super::RunSet::from_runs(
            paths
                .iter()
                .map(|p| Arc::new(Run::open(&storage, p, RunId::fresh()).unwrap()))
                .collect(),
        );
        let changes = vec![
            ("ds000004".to_owned(), Some(record(4, -1.0))),
            ("ds000010".to_owned(), None),
        ];
        let mut stored_seen = 0;
        let mut outs = Vec::new();
        for stored in [true, false] {
            let out = dir.join(format!("merged-{stored}.run"));
            let mut w = new_writer(&storage, &out);
            super::super::merge_runs(&set.runs[1..], changes.clone(), |name, rec| match rec {
                Some(MergeRec::Stored(r)) if stored => {
                    stored_seen += 1;
                    w.record_stored(name, r)
                }
                Some(r) => w.record(name, &r.into_record()),
                None => w.tombstone(name),
            })
            .unwrap();
            w.finish().unwrap();
            outs.push(storage.contents(&out).unwrap());
        }
        assert!(stored_seen > 7000, "{stored_seen} stored records merged");
        // Both merged runs contribute records (dictionaries in other orders).
        assert!(matches!(
            set.runs[1].get("ds000004").unwrap(),
            Some(Found::Live(_))
        ));
        assert!(outs[0] == outs[1], "the stored path wrote other bytes");
        // And the merged run reads back the newest of everything.
        let merged = Run::open(&storage, &dir.join("merged-true.run"), RunId::fresh()).unwrap();
        match merged.get("ds000004").unwrap() {
            Some(Found::Live(r)) => assert_eq!(r, record(4, -1.0)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            merged.get("ds000010").unwrap(),
            Some(Found::Tombstone)
        ));
        // One name only the middle run holds, one both hold (the newest wins).
        for name in ["ds000016", "ds000013", "ds000005"] {
            let newest = set.get(name).unwrap().unwrap();
            match merged.get(name).unwrap() {
                Some(Found::Live(r)) => assert_eq!(r, newest, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    /// Everything a reader asks of a run, in a comparable form.
    fn describe(run: &Run, names: &[String]) -> Vec<String> {
        let mut out = vec![format!(
            "{} records, ids {:?}, killed {:?}",
            run.n_records(),
            run.id_set().unwrap().iter().collect::<Vec<_>>(),
            run.killed().unwrap().iter().collect::<Vec<_>>()
        )];
        for n in names {
            out.push(match run.get(n).unwrap() {
                Some(Found::Live(r)) => {
                    let mut stats: Vec<String> =
                        r.stats.iter().map(|(a, s)| format!("{a} {s:?}")).collect();
                    stats.sort();
                    format!("{n}: {} {:?} {stats:?}", r.id, r.meta)
                }
                Some(Found::Tombstone) => format!("{n}: tombstone"),
                None => format!("{n}: absent"),
            });
        }
        out.push(format!("{:?}", run.ids().unwrap()));
        for a in run.array_names().map(str::to_owned).collect::<Vec<_>>() {
            out.push(format!("{a}: {:?}", run.array_rows(&a).unwrap()));
            let mut vs: Vec<String> = run
                .array_variants(&a)
                .unwrap()
                .iter()
                .map(|v| format!("{:?} {:?} {:?}", v.schema, v.attrs, v.ids))
                .collect();
            vs.sort();
            out.push(format!("{a} variants: {vs:?}"));
        }
        for k in run.attribute_names().map(str::to_owned).collect::<Vec<_>>() {
            out.push(format!("{k}: {:?}", run.attribute_rows(&k).unwrap()));
        }
        out.push(format!("lists {:?}", run.list_attribute_names().unwrap()));
        out
    }

    /// A merge that carries its oldest run as stored reads back exactly as
    /// one that decodes and writes every record again: records, tombstones,
    /// ids, statistics, variants, attribute columns and the dictionary
    /// shared between carried and new records, whether the new names come
    /// after the carried run's or fall among them (between its blocks and
    /// inside them), and when one re-creates a name the carried run holds a
    /// tombstone of. A carried block whose CRC does not match is an error,
    /// not copied.
    #[test]
    fn a_carried_run_reads_back_as_a_rewritten_one() {
        let storage = MemoryStorage::new();
        let dir = Path::new("/s/atlas.meta");
        let old = dir.join("old.run");
        // Records of several shapes (wide ones with attributes and lists,
        // TEMP ones with a schema of their own every fourth), tombstones,
        // killed ids, and enough of them for several blocks of every kind.
        let rec = |i: u64| {
            if i.is_multiple_of(3) {
                wide_record(i, 4, 3, 2)
            } else {
                let mut r = record(i, i as f64);
                if i % 4 == 1 {
                    let meta = Arc::make_mut(&mut r.meta);
                    let mut e = meta.arrays["TEMP"].clone();
                    let mut schema = (*e.schema).clone();
                    schema.shape = vec![5];
                    schema.chunk_shape = schema.shape.clone();
                    e.schema = Arc::new(schema);
                    meta.arrays.insert("TEMP".into(), e);
                }
                r
            }
        };
        // The old run: even names, ids 0..; every 97th a tombstone.
        let mut w = new_writer(&storage, &old);
        for i in 0..6_000u64 {
            let name = format!("ds{:06}", 2 * i);
            if i % 97 == 5 {
                w.tombstone(&name).unwrap();
            } else {
                w.record(&name, &rec(i)).unwrap();
            }
        }
        w.kill(&[100_000, 100_001].into_iter().collect());
        w.finish().unwrap();
        let old_run = Run::open(&storage, &old, RunId::fresh()).unwrap();
        assert!(
            old_run.index.names.len() > 4 && old_run.index.arrays.len() > 3,
            "{} record blocks",
            old_run.index.names.len()
        );
        assert_eq!(old_run.id_set().unwrap().max(), Some(5_999));
        assert!(old_run.n_tombstones() > 0);
        // New records (ids above the old run's, the same shapes, found in
        // the carried dictionary, and a new attribute): after the old
        // names, or odd names among them, or the name of an old tombstone.
        let after: Vec<u64> = (12_000..12_500).collect();
        let among: Vec<u64> = (0..12_000)
            .filter(|i| i % 2 == 1 && (i % 3_000 < 30 || i % 4_001 == 7))
            .collect();
        let recreated = 2 * 102; // i = 102: 102 % 97 == 5, a tombstone
        for (case, new_names) in [("after", after), ("among", among)] {
            let mut new_names = new_names;
            if case == "among" {
                new_names.push(recreated);
            }
            new_names.sort_unstable();
            let mut changes: Vec<(String, Option<Record>)> = new_names
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    let mut r = rec(i);
                    r.id = 10_000 + k as u64;
                    if k == 7 {
                        let meta = Arc::make_mut(&mut r.meta);
                        meta.attributes.insert("only_new".into(), Attr::from("x"));
                    }
                    (format!("ds{i:06}"), Some(r))
                })
                .collect();
            changes.push(("ds999999".into(), None));
            let mut names: Vec<String> = (0..12_600).map(|i| format!("ds{i:06}")).collect();
            names.push("ds999999".into());
            let mut described = Vec::new();
            for carry in [true, false] {
                let out = dir.join(format!("merged-{case}-{carry}.run"));
                let mut w = new_writer(&storage, &out);
                let all = [Arc::new(Run::open(&storage, &old, RunId::fresh()).unwrap())];
                let mut carried = None;
                let mut sources = &all[..];
                if carry {
                    carried = w.carry(&old_run).unwrap();
                    assert!(carried.is_some());
                    sources = &all[..0];
                }
                super::super::merge_runs(sources, changes.clone(), |name, rec| {
                    if let Some(c) = carried.as_mut() {
                        w.carry_until(c, Some(name))?;
                    }
                    match rec {
                        Some(MergeRec::Stored(r)) => w.record_stored(name, r),
                        Some(r) => w.record(name, &r.into_record()),
                        None => w.tombstone(name),
                    }
                })
                .unwrap();
                if let Some(c) = carried.as_mut() {
                    w.carry_until(c, None).unwrap();
                }
                w.kill(&old_run.killed().unwrap());
                w.finish().unwrap();
                let merged = Run::open(&storage, &out, RunId::fresh()).unwrap();
                described.push(describe(&merged, &names));
                if carry {
                    // Carried and new records share the dictionary's entries.
                    assert_eq!(
                        merged.dict().unwrap().schemas.len(),
                        old_run.dict().unwrap().schemas.len(),
                        "{case}"
                    );
                }
            }
            assert_eq!(described[0].len(), described[1].len());
            for (a, b) in described[0].iter().zip(&described[1]) {
                assert_eq!(a, b, "{case}");
            }
            assert!(described[0].iter().any(|l| l.contains("only_new")));
            let recreated = format!("ds{recreated:06}: ");
            let line = described[0].iter().find(|l| l.starts_with(&recreated));
            assert_eq!(
                line.is_some_and(|l| l.contains("tombstone")),
                case == "after",
                "{line:?}"
            );
        }

        // A damaged block of the carried run: an error, nothing carried.
        let mut bytes = storage.contents(&old).unwrap();
        let r = old_run.index.arrays[0].1[0].1;
        bytes[r.off as usize + 3] ^= 0x40;
        let bad = dir.join("bad.run");
        let mut h = storage.create_new(&bad).unwrap();
        h.append(&bytes).unwrap();
        h.sync().unwrap();
        drop(h);
        let bad_run = Run::open(&storage, &bad, RunId::fresh()).unwrap();
        let mut w = new_writer(&storage, &dir.join("from-bad.run"));
        assert!(matches!(
            w.carry(&bad_run),
            Err(Error::CorruptRegistry { .. })
        ));
    }

    #[test]
    fn newest_run_wins_and_killed_ids_are_not_listed() {
        let storage = MemoryStorage::new();
        let old = Path::new("/s/atlas.meta/a.run");
        let new = Path::new("/s/atlas.meta/b.run");
        write(&storage, old, 10, &[], &[]);
        storage.create_dir_all(new.parent().unwrap()).unwrap();
        // The newer run: ds000003 deleted (id 3 killed), ds000004 changed.
        let mut w = RunWriter::create(&storage, new).unwrap();
        w.tombstone("ds000003").unwrap();
        w.record("ds000004", &record(4, 100.0)).unwrap();
        w.kill(&[3u64].into_iter().collect());
        w.finish().unwrap();
        let set = super::super::RunSet::from_runs(vec![
            Arc::new(Run::open(&storage, old, RunId::fresh()).unwrap()),
            Arc::new(Run::open(&storage, new, RunId::fresh()).unwrap()),
        ]);
        assert!(set.get("ds000003").unwrap().is_none());
        assert_eq!(
            set.get("ds000004").unwrap().unwrap().stats["TEMP"].max,
            Some(StatValue::Float(100.0))
        );
        let listed: Vec<u64> = set.list().unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(listed, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        let rows = set.array_rows("TEMP").unwrap();
        assert_eq!(rows.len(), 9);
        let four = rows.iter().find(|(id, _)| *id == 4).unwrap();
        assert_eq!(four.1.max, Some(StatValue::Float(100.0)), "the newest row");
        let mut merged = Vec::new();
        super::super::merge_runs(&set.runs, vec![("ds000005".into(), None)], |n, r| {
            if let Some(r) = r {
                merged.push((n.to_owned(), r.id()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(merged.len(), 8, "{merged:?}");
    }

    /// The statistics of record `i` in [`typed_columns_decode_every_kind`]:
    /// floats, then ints, strings and absences, so blocks of several kinds.
    fn mixed_stats(i: u64) -> ArrayStats {
        let v = |x: u64| match i {
            _ if i.is_multiple_of(97) => None,
            0..=5999 => Some(StatValue::Float(x as f64 / 4.0)),
            6000..=7999 => Some(StatValue::Int(-(x as i64))),
            8000..=8999 => Some(StatValue::Timestamp(TimestampNs(x as i64))),
            _ => Some(StatValue::Str(format!("s{x}"))),
        };
        ArrayStats {
            min: v(i),
            max: v(i + 1),
            null_count: i % 5,
            row_count: 10 + i,
        }
    }

    #[test]
    fn typed_columns_decode_every_kind() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/r.run");
        let mut w = new_writer(&storage, path);
        let n = 10_000u64;
        for i in 0..n {
            let mut rec = record(i, 0.0);
            Arc::make_mut(&mut rec.stats).insert("TEMP".into(), mixed_stats(i));
            let meta = Arc::make_mut(&mut rec.meta);
            meta.attributes.insert(
                "mode".into(),
                Attr::from(if i % 3 == 0 { "D" } else { "R" }),
            );
            meta.attributes
                .insert("lat".into(), Attr::Float64(i as f64 / 8.0));
            w.record(&format!("ds{i:06}"), &rec).unwrap();
        }
        w.finish().unwrap();
        let run = Run::open(&storage, path, RunId::fresh()).unwrap();
        assert_eq!(run.index.version, RUN_VERSION);
        assert!(run.index.arrays[0].1.len() > 2, "several catalog blocks");
        let rows = run.array_rows("TEMP").unwrap();
        assert_eq!(rows.len(), n as usize);
        for (id, st) in &rows {
            assert_eq!(*st, mixed_stats(*id), "row {id}");
        }
        let col = run.stat_column("TEMP").unwrap();
        assert!(matches!(col.min, Values::Any(_)), "not every value is f64");
        assert_eq!(*col.ids.as_list(), (0..n).collect::<Vec<_>>());
        assert_eq!(col.present.len(), n);
        for i in 0..n as usize {
            let want = mixed_stats(i as u64);
            assert_eq!(col.min.get(i), want.min, "min {i}");
            assert_eq!(col.max().get(i), want.max, "max {i}");
            assert_eq!(
                (col.nulls.get(i), col.cells.get(i)),
                (want.null_count, want.row_count)
            );
        }
        let lat = run.attribute_rows("lat").unwrap();
        assert_eq!(lat[41], (41, Attr::Float64(41.0 / 8.0)));
        let mode = run.attr_column("mode").unwrap();
        assert_eq!(mode.values, [Attr::from("D"), Attr::from("R")]);
        assert_eq!(mode.ids_of(0).len(), 3334);
        assert_eq!(mode.ids_of(1)[..3], [1, 2, 4]);
        let tags = run.attr_column("tags").unwrap();
        assert_eq!(tags.values, [Attr::StringList(vec!["a".into()])]);
        assert_eq!(tags.present.len(), n);
    }

    #[test]
    #[allow(clippy::float_cmp)] // exact by design
    fn float_columns_stay_typed_across_blocks() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/r.run");
        write(&storage, path, 9000, &[], &[]);
        let run = Run::open(&storage, path, RunId::fresh()).unwrap();
        assert!(run.index.arrays[0].1.len() > 2, "several catalog blocks");
        let col = run.stat_column("TEMP").unwrap();
        // Whole numbers below 2^24: stored, kept and tested as `f32`.
        let (Values::F32(lo), Values::F32(hi)) = (&col.min, col.max()) else {
            panic!("f32-exact statistics decode as f32 columns");
        };
        let lo: Vec<f64> = lo.iter().map(|x| f64::from(*x)).collect();
        let hi: Vec<f64> = hi.iter().map(|x| f64::from(*x)).collect();
        assert_eq!(lo.len(), 9000);
        assert!((0..9000).all(|i| lo[i] == i as f64 - 1.0 && hi[i] == i as f64));
        assert_eq!(col.present.len(), 9000);
        assert!(col.present.contains(8999) && !col.present.contains(9000));
    }

    #[test]
    fn damaged_runs_are_typed_errors_never_panics() {
        let storage = MemoryStorage::new();
        let path = Path::new("/s/atlas.meta/r.run");
        write(&storage, path, 300, &["x"], &[5]);
        let good = storage.contents(path).unwrap();
        // Every truncation and a flipped byte at many positions.
        let step = (good.len() / 400).max(1);
        for cut in (0..good.len()).step_by(step) {
            fuzz_run(&good[..cut]);
        }
        for at in (0..good.len()).step_by(step) {
            let mut b = good.clone();
            b[at] ^= 0x5a;
            fuzz_run(&b);
            let p = Path::new("/s/atlas.meta/bad.run");
            let _ = storage.remove_file(p);
            storage.write_new_synced(p, &b).unwrap();
            if let Ok(run) = Run::open(&storage, p, RunId::fresh()) {
                for name in ["ds000000", "ds000150", "x"] {
                    match run.get(name) {
                        Ok(_) | Err(Error::CorruptRegistry { .. } | Error::Storage(_)) => {}
                        Err(e) => panic!("flip at {at}: {e:?}"),
                    }
                }
            }
        }
        // A future version is its own error.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&9u32.to_le_bytes());
        let p = Path::new("/s/atlas.meta/future.run");
        storage.write_new_synced(p, &b).unwrap();
        assert!(matches!(
            Run::open(&storage, p, RunId::fresh()),
            Err(Error::UnsupportedRegistry { version: 9, .. })
        ));
    }
}
