//! The merged index of the committed layers, materialised lazily.
//!
//! Opening a file decodes only each layer's footer index. The merged state of
//! one name ([`Committed`]: schema, chunk locations, defining layer) is built
//! on its first use from that name's record in each layer (one footer block
//! per layer whose name range covers it) and kept; operations over every name
//! (listing, compaction, merges) build the whole ordered map once, as opening
//! did before format 2. Both fold records with the same rules ([`fold`],
//! [`apply_record`]), so a name's state is the same whichever way it was built.
//!
//! **Invariant:** states are only added under `&self`, never changed or
//! dropped, so references handed out stay valid for the borrow; every change
//! of the layer list happens under `&mut self` and updates or drops them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::{
    ArrayFile, ArrayRecord, ArraySchema, BlockKey, Committed, Error, Layer, Loc, NameMap,
    RecordKind, Result,
};
use crate::layer::BlockRef;

/// Slots in the first arena segment; segment `k` holds `FIRST_SEGMENT << k`.
const FIRST_SEGMENT: usize = 64;
/// Segments: room for `FIRST_SEGMENT * (2^SEGMENTS - 1)` names, more than a
/// layer can hold.
const SEGMENTS: usize = 27;
/// Names whose states a new layer is folded into; past this, installing a
/// layer drops the built states instead, and they are rebuilt from the
/// footers on their next use. A writer's memory then stays bounded however
/// many datasets it adds, flush after flush.
pub(super) const FOLD_LIMIT: usize = 1024;

/// A name's merged state once built: `None` when no layer defines it.
type Slot = OnceLock<Option<Box<Committed>>>;

/// The committed layers' merged index: states of single names, and the whole
/// ordered map once something needed every name.
#[derive(Debug, Default)]
pub(super) struct MergedIndex {
    /// Every defined name in listing order (first definition, a redefinition
    /// moving the name to the end), once built. Takes precedence over `slots`.
    pub(super) all: OnceLock<NameMap<Committed>>,
    /// Held while `all` is built, so that threads needing it at once (the
    /// parallel parts of a scan) build it once, not once each.
    building: Mutex<()>,
    /// The slot of each name built alone. Hashed with foldhash (seeded per
    /// process): every read of a name looks it up, and `SipHash` was a tenth
    /// of a warm small read.
    pub(super) slot_of: Mutex<HashMap<String, usize, foldhash::fast::RandomState>>,
    /// Append-only slots whose addresses never move (segments are allocated
    /// once), so `&self` can hand out references into them.
    segments: [OnceLock<Box<[Slot]>>; SEGMENTS],
}

fn locate(slot: usize) -> (usize, usize) {
    let v = slot + FIRST_SEGMENT;
    let k =
        (usize::BITS - 1 - v.leading_zeros()) as usize - FIRST_SEGMENT.trailing_zeros() as usize;
    (k, v - (FIRST_SEGMENT << k))
}

impl MergedIndex {
    /// An index whose whole map is already known.
    pub(super) fn with_all(all: NameMap<Committed>) -> Self {
        let index = MergedIndex::default();
        index.all.set(all).expect("a new index is empty");
        index
    }

    fn slot(&self, name: &str) -> &Slot {
        let slot = {
            let mut slot_of = self.slot_of.lock();
            // Looked up first: a name already known costs no allocation.
            if let Some(&slot) = slot_of.get(name) {
                slot
            } else {
                let next = slot_of.len();
                slot_of.insert(name.to_owned(), next);
                next
            }
        };
        let (k, j) = locate(slot);
        let segment = self.segments[k]
            .get_or_init(|| (0..FIRST_SEGMENT << k).map(|_| OnceLock::new()).collect());
        &segment[j]
    }

    /// True when `name`'s state is known without reading a footer block:
    /// the whole index is built, or this name's state was built alone.
    pub(super) fn is_built(&self, name: &str) -> bool {
        if self.all.get().is_some() {
            return true;
        }
        let Some(slot) = self.slot_of.lock().get(name).copied() else {
            return false;
        };
        let (k, j) = locate(slot);
        self.segments[k]
            .get()
            .and_then(|segment| segment.get(j))
            .is_some_and(|s| s.get().is_some())
    }

    /// The built state of `name`, if it was built alone.
    fn slot_mut(&mut self, name: &str) -> Option<&mut Option<Box<Committed>>> {
        let (k, j) = locate(*self.slot_of.get_mut().get(name)?);
        self.segments[k].get_mut()?.get_mut(j)?.get_mut()
    }

    /// Names whose states are built.
    fn n_built(&mut self) -> usize {
        match self.all.get() {
            Some(all) => all.len(),
            None => self.slot_of.get_mut().len(),
        }
    }

    /// Forgets the states built alone.
    fn clear_slots(&mut self) {
        self.slot_of.get_mut().clear();
        self.segments = Default::default();
    }
}

impl ArrayFile {
    /// A footer block's bytes through the raw cache (its key cannot meet a
    /// chunk's: chunks lie before the footer).
    pub(super) fn footer_block(
        &self,
        layer: &Layer,
        b: &BlockRef,
        fill_cache: bool,
    ) -> Result<Arc<Vec<u8>>> {
        let key = BlockKey {
            layer_uid: layer.uid,
            offset: b.offset,
        };
        let load = || layer.read_footer_block(b);
        if fill_cache {
            self.cache.raw(key, load)
        } else {
            self.cache.raw_streaming(key, load)
        }
    }

    /// Fetches the footer blocks that building `names`' states reads, in
    /// batches of ranged reads per layer, into the cache (on object stores
    /// one request per ~8 MiB instead of one per block; a flush computing the
    /// statistics of many changed datasets calls it first). Names whose
    /// state is hidden by a pending definition or deletion are skipped:
    /// their statistics read no footer. At most a quarter of the raw cache
    /// is fetched, in batches of at most 8 MiB, so the blocks are not
    /// evicted before they are used and the fetch never holds more than one
    /// batch beside the cache. Best effort: a failed fetch leaves the blocks
    /// to the per-name path, which reports it.
    pub fn prefetch_index(&self, names: &[&str]) {
        /// Bytes of footer blocks fetched by one ranged read.
        const BATCH_BYTES: u64 = 8 << 20;
        if self.index.all.get().is_some() {
            return;
        }
        let names: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| self.reads_committed(n))
            .collect();
        if names.len() < 2 {
            return;
        }
        let mut budget = self.cache.raw_capacity_bytes() / 4;
        for layer in &self.layers {
            let crate::layer::LayerIndex::Blocked(index) = &layer.index else {
                continue;
            };
            let cached = |k: usize| {
                self.cache.raw_contains(&BlockKey {
                    layer_uid: layer.uid,
                    offset: index.blocks[k].offset,
                })
            };
            let mut ks: Vec<usize> = names.iter().filter_map(|n| index.block_for(n)).collect();
            ks.sort_unstable();
            ks.dedup();
            ks.retain(|&k| !cached(k));
            if ks.len() < 2 {
                continue;
            }
            let mut at = 0;
            while at < ks.len() {
                let mut batch_bytes = 0u64;
                let mut end = at;
                while end < ks.len() && batch_bytes < BATCH_BYTES.min(budget) {
                    batch_bytes += u64::from(index.blocks[ks[end]].len);
                    end += 1;
                }
                if end == at {
                    return;
                }
                budget = budget.saturating_sub(batch_bytes);
                let batch = &ks[at..end];
                at = end;
                let ranges: Vec<(u64, usize)> = batch
                    .iter()
                    .map(|&k| (index.blocks[k].offset, index.blocks[k].len as usize))
                    .collect();
                let Ok(bufs) = layer.handle.read_ranges(&ranges) else {
                    break;
                };
                for (&k, buf) in batch.iter().zip(bufs) {
                    let key = BlockKey {
                        layer_uid: layer.uid,
                        offset: index.blocks[k].offset,
                    };
                    let _ = self.cache.raw(key, || Ok(buf));
                }
            }
        }
    }

    /// The committed state of `name`, built on first use. An error (a footer
    /// block that does not read or decode, layers that contradict each other
    /// about the name) is not kept: the next call tries again.
    pub(super) fn committed(&self, name: &str) -> Result<Option<&Committed>> {
        if let Some(all) = self.index.all.get() {
            return Ok(all.get(name));
        }
        let slot = self.index.slot(name);
        if slot.get().is_none() {
            let mut state = None;
            for (idx, layer) in self.layers.iter().enumerate() {
                let idx = u32::try_from(idx).expect("fewer than 2^32 layers");
                for rec in layer.records_named(name, &|l, b| self.footer_block(l, b, true))? {
                    fold(&mut state, rec, idx, &layer.path)?;
                }
            }
            // Another thread may have built it meanwhile: the same state.
            let _ = slot.set(state.map(Box::new));
        }
        Ok(slot.get().expect("set above").as_deref())
    }

    /// Every committed name's state in listing order, built on first use (every
    /// footer block of every layer decoded).
    pub(super) fn all(&self) -> Result<&NameMap<Committed>> {
        if let Some(all) = self.index.all.get() {
            return Ok(all);
        }
        let _building = self.index.building.lock();
        if let Some(all) = self.index.all.get() {
            return Ok(all);
        }
        let mut map = NameMap::default();
        let mut last = None;
        for (idx, layer) in self.layers.iter().enumerate() {
            let idx = u32::try_from(idx).expect("fewer than 2^32 layers");
            // Every block of every layer: fetched in batches, not one by one.
            let records = layer.all_records_batched()?;
            if map.is_empty() {
                // The first layer defines most names (a compacted base, or
                // the only layer): room for them at once, not by doubling.
                map.reserve(records.len());
            }
            for rec in records {
                apply_record(&mut map, rec, idx, &layer.path, &mut last)?;
            }
        }
        let _ = self.index.all.set(map);
        Ok(self.index.all.get().expect("set above"))
    }

    /// Folds the records of a layer just pushed as layer `idx` (its footer,
    /// known in memory) into whatever states were built; the others are built
    /// from the new layer list when first used. When more than
    /// [`FOLD_LIMIT`] names would then be held, every built state is dropped
    /// instead: the footers rebuild them on demand, by the same rules.
    pub(super) fn fold_new_layer(
        &mut self,
        records: Vec<ArrayRecord>,
        idx: u32,
        path: &Path,
    ) -> Result<()> {
        if self.index.n_built() + records.len() > FOLD_LIMIT {
            self.index = MergedIndex::default();
            return Ok(());
        }
        if let Some(all) = self.index.all.get_mut() {
            let mut last = None;
            for rec in records {
                apply_record(all, rec, idx, path, &mut last)?;
            }
            // `all` answers every name now.
            self.index.clear_slots();
            return Ok(());
        }
        for rec in records {
            if let Some(state) = self.index.slot_mut(&rec.name) {
                let mut s = state.take().map(|b| *b);
                let result = fold(&mut s, rec, idx, path);
                *state = s.map(Box::new);
                result?;
            }
        }
        Ok(())
    }
}

/// The committed state a `Define` record of layer `idx` starts. Its schema
/// is shared with the previous definition's when equal (`last`), as the
/// arrays of one file mostly are: held once, and compared by address by a
/// caller that checked it once (a scan of many arrays).
fn defined(rec: ArrayRecord, idx: u32, last: &mut Option<Arc<ArraySchema>>) -> Committed {
    let schema = rec.schema.expect("decoded define records carry a schema");
    let schema = match last {
        Some(l) if Arc::ptr_eq(l, &schema) || **l == *schema => Arc::clone(l),
        _ => Arc::clone(last.insert(schema)),
    };
    Committed {
        schema,
        chunks: rec
            .chunks
            .into_iter()
            .map(|entry| (entry.chunk_idx, Loc { layer: idx, entry }))
            .collect(),
        defined_in: idx,
    }
}

fn update(c: Option<&mut Committed>, rec: ArrayRecord, path: &Path, idx: u32) -> Result<()> {
    let Some(c) = c else {
        return Err(Error::corrupt(
            path,
            0,
            format!(
                "layer updates array {:?}, which earlier layers do not define",
                rec.name
            ),
        ));
    };
    if rec.schema.as_deref() != Some(&*c.schema) {
        return Err(Error::corrupt(
            path,
            0,
            format!(
                "layer changes the schema of array {:?} without redefining it",
                rec.name
            ),
        ));
    }
    c.chunks.extend(
        rec.chunks
            .into_iter()
            .map(|entry| (entry.chunk_idx, Loc { layer: idx, entry })),
    );
    Ok(())
}

/// Applies one record of layer `idx` to one name's state.
pub(super) fn fold(
    state: &mut Option<Committed>,
    rec: ArrayRecord,
    idx: u32,
    path: &Path,
) -> Result<()> {
    match rec.kind {
        RecordKind::Delete => *state = None,
        RecordKind::Define => *state = Some(defined(rec, idx, &mut None)),
        RecordKind::Update => update(state.as_mut(), rec, path, idx)?,
    }
    Ok(())
}

/// Applies one record of layer `idx` to the ordered map of every name.
fn apply_record(
    map: &mut NameMap<Committed>,
    rec: ArrayRecord,
    idx: u32,
    path: &Path,
    last: &mut Option<Arc<ArraySchema>>,
) -> Result<()> {
    match rec.kind {
        RecordKind::Delete => {
            map.shift_remove(&rec.name);
        }
        RecordKind::Define => {
            // A redefinition moves the name to the end, like a new array
            // (one hash of the name: the usual define is of a new name).
            let mut rec = rec;
            let name = std::mem::take(&mut rec.name);
            let (i, old) = map.insert_full(name, defined(rec, idx, last));
            if old.is_some() {
                map.move_index(i, map.len() - 1);
            }
        }
        RecordKind::Update => update(map.get_mut(&rec.name), rec, path, idx)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_slots_tile_the_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(63), (0, 63));
        assert_eq!(locate(64), (1, 0));
        assert_eq!(locate(64 + 127), (1, 127));
        assert_eq!(locate(64 + 128), (2, 0));
        let last = FIRST_SEGMENT * ((1 << SEGMENTS) - 1) - 1;
        assert_eq!(
            locate(last),
            (SEGMENTS - 1, (FIRST_SEGMENT << (SEGMENTS - 1)) - 1)
        );
        assert!(last > u32::MAX as usize);
    }
}

#[cfg(test)]
mod lazy_tests {
    use std::path::Path;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use crate::{ArrayFile, ArrayFileOptions, DeltaCache, LayerId, MemoryStorage};

    const N: usize = 5000;

    fn name(k: usize) -> String {
        // Insertion order differs from name order.
        format!("ds_{:05}", (k * 7919) % N)
    }

    fn one(v: i32) -> ArrayD<i32> {
        ArrayD::from_elem(IxDyn(&[4]), v)
    }

    /// A base of `N` arrays, then a delta updating, deleting and redefining some.
    fn build() -> (Arc<MemoryStorage>, Vec<LayerId>, ArrayFile) {
        let storage = Arc::new(MemoryStorage::new());
        let mut f = ArrayFile::create(
            storage.clone(),
            Path::new("/f"),
            ArrayFileOptions::default(),
            Arc::new(DeltaCache::default()),
        )
        .unwrap();
        for k in 0..N {
            f.define_array::<i32>(&name(k), vec!["x".into()], vec![4], None, None)
                .unwrap();
            f.write_array(&name(k), &[0], one(k as i32).view()).unwrap();
        }
        f.flush().unwrap();
        for k in (0..N).step_by(7) {
            f.write_array(&name(k), &[0], one(-(k as i32)).view())
                .unwrap();
        }
        for k in (3..N).step_by(11) {
            f.delete_array(&name(k)).unwrap();
        }
        f.flush().unwrap();
        for k in (3..N).step_by(22) {
            f.define_array::<i32>(&name(k), vec!["y".into()], vec![4], None, None)
                .unwrap();
            f.write_array(&name(k), &[0], one(1_000_000 + k as i32).view())
                .unwrap();
        }
        f.flush().unwrap();
        let layers = f.layers();
        (storage, layers, f)
    }

    fn open(storage: &Arc<MemoryStorage>, layers: &[LayerId]) -> ArrayFile {
        ArrayFile::open(
            storage.clone(),
            Path::new("/f"),
            layers,
            ArrayFileOptions::default(),
            Arc::new(DeltaCache::default()),
        )
        .unwrap()
    }

    fn blocks_read(f: &ArrayFile) -> Vec<u64> {
        f.layers
            .iter()
            .map(|l| l.footer_blocks_read.load(Ordering::Relaxed))
            .collect()
    }

    fn state(f: &ArrayFile, n: &str) -> Option<(crate::ArraySchema, Vec<i32>)> {
        let schema = f.schema(n)?.clone();
        let cells = f.read_array::<i32>(n, &[], &[]).unwrap();
        Some((schema, cells.iter().copied().collect()))
    }

    /// `fetch_nowait` on a fresh handle reads one footer block per layer
    /// that records the name (as a lookup does) and builds its state; with
    /// no raw cache level it reads nothing at all (nothing would be kept).
    #[test]
    fn fetch_nowait_reads_footer_blocks_only_where_they_are_kept() {
        let (storage, layers, _) = build();
        let f = open(&storage, &layers);
        assert!(f.fetch_nowait("ds_00007", &[], &[]));
        let read = blocks_read(&f);
        assert_eq!(read[0], 1, "{read:?}");
        assert!(read.iter().all(|&n| n <= 1), "{read:?}");
        assert!(f.read_is_in_memory("ds_00007", &[], &[]));
        let want = open(&storage, &layers)
            .read_array::<i32>("ds_00007", &[], &[])
            .unwrap();
        assert_eq!(f.read_array::<i32>("ds_00007", &[], &[]).unwrap(), want);
        assert_eq!(blocks_read(&f), read, "the read itself read no footer");

        let no_raw = ArrayFile::open(
            storage.clone(),
            Path::new("/f"),
            &layers,
            ArrayFileOptions::default(),
            Arc::new(DeltaCache::new(crate::DeltaCacheConfig {
                raw_capacity_bytes: 0,
                decoded_capacity_bytes: 1 << 20,
            })),
        )
        .unwrap();
        assert!(!no_raw.fetch_nowait("ds_00007", &[], &[]));
        assert_eq!(blocks_read(&no_raw), vec![0, 0, 0]);
    }

    #[test]
    fn an_array_file_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<ArrayFile>();
    }

    #[test]
    fn opening_reads_no_footer_block_and_a_lookup_reads_one_per_layer() {
        let (storage, layers, _) = build();
        let f = open(&storage, &layers);
        match &f.layers[0].index {
            crate::layer::LayerIndex::Blocked(index) => {
                assert!(index.blocks.len() >= 4, "{} blocks", index.blocks.len());
            }
            crate::layer::LayerIndex::Whole { .. } => panic!("format 2 was written"),
        }
        assert_eq!(blocks_read(&f), vec![0, 0, 0]);
        // ds_00007 is updated by the second layer, untouched by the third.
        assert!(f.contains("ds_00007"));
        let read = blocks_read(&f);
        assert_eq!(read[0], 1, "the base: one block of many");
        assert!(read.iter().all(|&n| n <= 1), "{read:?}");
        // A second use of the name, and a read of its data, read no footer block.
        let _ = f.read_array::<i32>("ds_00007", &[], &[]).unwrap();
        assert_eq!(blocks_read(&f), read);
        // A neighbour in the same block is served by the cache.
        assert!(f.contains("ds_00008"));
        assert_eq!(blocks_read(&f)[0], 1);
        // Nothing was built for every name.
        assert!(f.index.all.get().is_none());
    }

    /// What `build` leaves in dataset `k`: `None` when deleted.
    fn expected(k: usize) -> Option<(&'static str, i32)> {
        let deleted = k >= 3 && (k - 3).is_multiple_of(11);
        let redefined = k >= 3 && (k - 3).is_multiple_of(22);
        if redefined {
            Some(("y", 1_000_000 + k as i32))
        } else if deleted {
            None
        } else if k.is_multiple_of(7) {
            Some(("x", -(k as i32)))
        } else {
            Some(("x", k as i32))
        }
    }

    #[test]
    fn a_writer_past_the_fold_limit_forgets_its_index_and_reads_the_same() {
        const { assert!(N > super::FOLD_LIMIT) };
        let (_, _, mut written) = build();
        // The first flushes went past the limit and dropped what was built;
        // the last one, small, folded into the few names it touched.
        assert!(written.index.all.get().is_none());
        assert!(written.index.n_built() <= super::FOLD_LIMIT);
        for k in 0..N {
            let n = name(k);
            match expected(k) {
                None => assert!(!written.contains(&n), "{n}"),
                Some((dim, v)) => {
                    let (schema, cells) = state(&written, &n).expect("defined");
                    assert_eq!(schema.dims, vec![dim.to_string()], "{n}");
                    assert_eq!(cells, vec![v; 4], "{n}");
                }
            }
        }
        // The lookups built every name again; a small flush drops them again.
        assert_eq!(written.index.n_built(), N);
        written.write_array(&name(1), &[0], one(42).view()).unwrap();
        written.flush().unwrap();
        assert_eq!(written.index.n_built(), 0);
        assert_eq!(state(&written, &name(1)).unwrap().1, vec![42; 4]);
        let live = (0..N).filter(|&k| expected(k).is_some()).count();
        assert_eq!(written.list_arrays().len(), live);
    }

    #[test]
    fn define_new_reads_no_footer_and_voids_what_the_layers_hold() {
        let (storage, layers, _) = build();
        let mut f = open(&storage, &layers);
        let schema = |dim: &str| {
            crate::ArraySchema::new(
                "a",
                crate::DType::Int32,
                vec![dim.into()],
                vec![4],
                None,
                None,
            )
            .unwrap()
        };
        // New names, spread over every footer block, and one the layers hold.
        for k in 0..N {
            f.define_new(&format!("new_{k:05}"), schema("n")).unwrap();
        }
        f.define_new("ds_00007", schema("z")).unwrap();
        assert_eq!(blocks_read(&f), vec![0, 0, 0]);
        assert_eq!(f.cache.raw_stats().entries, 0);
        // A pending definition is seen; a pending deletion is replaced.
        assert!(matches!(
            f.define_new("ds_00007", schema("z")),
            Err(crate::Error::ArrayExists { .. })
        ));
        // The statistics a flush computes for them read no footer either.
        let names: Vec<String> = (0..N).map(|k| format!("new_{k:05}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        f.prefetch_index(&refs);
        for n in &refs {
            assert_eq!(f.array_stats(n).unwrap().row_count, 4);
        }
        assert_eq!(blocks_read(&f), vec![0, 0, 0]);
        f.delete_array("ds_00008").unwrap();
        f.define_new("ds_00008", schema("z")).unwrap();
        f.write_array("ds_00007", &[0], one(5).view()).unwrap();
        f.flush().unwrap();
        let reopened = open(&storage, &f.layers());
        for g in [&f, &reopened] {
            let (schema, cells) = state(g, "ds_00007").unwrap();
            assert_eq!(schema.dims, vec!["z".to_owned()]);
            assert_eq!(cells, vec![5; 4], "the old chunks are voided");
            let (schema, cells) = state(g, "ds_00008").unwrap();
            assert_eq!(schema.dims, vec!["z".to_owned()]);
            assert_eq!(cells, vec![0; 4], "never written");
            assert!(g.contains("new_00000") && g.contains("ds_00009"));
        }
    }

    #[test]
    fn names_built_alone_equal_names_built_together() {
        let (storage, layers, written) = build();
        let lazy = open(&storage, &layers);
        let whole = open(&storage, &layers);
        let listed = whole.list_arrays();
        assert_eq!(
            listed,
            written.list_arrays(),
            "listing order survives reopening"
        );
        for k in 0..N {
            let n = name(k);
            let want = state(&written, &n);
            assert_eq!(state(&lazy, &n), want, "{n}");
            assert_eq!(state(&whole, &n), want, "{n}");
            assert_eq!(lazy.schema_origin(&n), whole.schema_origin(&n), "{n}");
        }
        assert_eq!(lazy.list_arrays(), listed);
    }

    /// The whole index built on 1 thread and on 4 (the base layer's footer
    /// blocks decoded on helper threads) is the same, and with two footer
    /// blocks damaged the error is the first one's on both.
    #[test]
    fn footer_blocks_decoded_on_helper_threads_build_the_same_index() {
        type Summary = Vec<(String, u32, Vec<(u64, u32, u64)>)>;
        let (storage, layers, _) = build();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let (one, four) = (pool(1), pool(4));
        let summary = |f: &ArrayFile| -> Summary {
            f.all()
                .unwrap()
                .iter()
                .map(|(n, c)| {
                    let chunks = c
                        .chunks
                        .iter()
                        .map(|(k, l)| (*k, l.layer, l.entry.offset))
                        .collect();
                    (n.clone(), c.defined_in, chunks)
                })
                .collect()
        };
        let serial = one.install(|| summary(&open(&storage, &layers)));
        let f = open(&storage, &layers);
        let crate::layer::LayerIndex::Blocked(base) = &f.layers[0].index else {
            panic!("format 2 layers are blocked");
        };
        let blocks = base.blocks.clone();
        assert!(
            blocks.len() >= 2 * crate::layer::BLOCKS_PER_THREAD,
            "{} blocks",
            blocks.len()
        );
        assert_eq!(four.install(|| summary(&f)), serial);
        assert_eq!(serial.len(), f.list_arrays().len());

        // Damage the second block and the last one (their CRCs then fail).
        let path = f.layers[0].path.clone();
        let mut bytes = storage.contents(&path).unwrap();
        for b in [&blocks[1], blocks.last().unwrap()] {
            bytes[(b.offset + u64::from(b.len) / 2) as usize] ^= 0x5a;
        }
        storage.overwrite(&path, bytes);
        let error = |pool: &rayon::ThreadPool| {
            pool.install(|| {
                open(&storage, &layers)
                    .all()
                    .map(|_| ())
                    .unwrap_err()
                    .to_string()
            })
        };
        let e1 = error(&one);
        assert_eq!(error(&four), e1);
        assert!(e1.contains(&blocks[1].offset.to_string()), "{e1}");
    }

    #[test]
    fn changes_after_a_lazy_lookup_see_the_merged_state() {
        let (storage, layers, _) = build();
        let mut f = open(&storage, &layers);
        // Built alone, then changed through the pending layer and flushed.
        assert!(f.contains("ds_00007") && f.contains("ds_00008"));
        assert!(f.index.all.get().is_none());
        f.write_array("ds_00007", &[0], one(77).view()).unwrap();
        f.delete_array("ds_00008").unwrap();
        f.flush().unwrap();
        assert_eq!(state(&f, "ds_00007").unwrap().1, vec![77; 4]);
        assert!(!f.contains("ds_00008"));
        let layers = f.layers();
        let reopened = open(&storage, &layers);
        assert_eq!(state(&reopened, "ds_00007").unwrap().1, vec![77; 4]);
        assert!(!reopened.contains("ds_00008"));
        // Compaction and a lookup on the compacted file agree with the listing.
        let listed = f.list_arrays();
        f.compact().unwrap();
        assert_eq!(f.list_arrays(), listed);
        let compacted = open(&storage, &f.layers());
        assert_eq!(compacted.list_arrays(), listed);
        assert_eq!(state(&compacted, "ds_00007").unwrap().1, vec![77; 4]);
    }
}
