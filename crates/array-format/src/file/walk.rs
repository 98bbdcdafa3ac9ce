//! Streamed merges: compaction and tail merges as a k-way merge of the
//! layers' footers in name order, one dataset at a time.
//!
//! Every format-2 layer keeps its records sorted by name in footer blocks, so
//! a cursor per merged layer reads its blocks in order (a few at a time) and
//! the merge takes the smallest name among the cursors, folds that name's
//! records (older layers first, by the rules reads use: `index::fold`),
//! copies its live chunks and writes its record to a [`SortedLayerWriter`].
//! A tail merge also looks each such name up in the kept layers (whose blocks
//! are visited in order, each decoded at most once), for the state the tail
//! applies to. Nothing is kept per dataset: memory is a few footer blocks per
//! layer, one dataset's state and the writer's open block, whatever the
//! number of datasets.
//!
//! The listing order of a file (first definition, a redefinition moving a
//! name to the end) comes from the emission order of each layer's records,
//! which the footer keeps as sequence numbers. A merged record's place is the
//! place of the input record it stands for (its defining record, for a
//! `Define`), so the merged layer lists names as its inputs did: the merge
//! writes each record with that input's global number (its layer's first
//! number plus its sequence number), marks it in a bitmap of every input
//! record, and the writer maps each number to its rank among the marked ones
//! when it writes the footer out. The bitmap costs one bit per input record.
//!
//! Format-1 layers (their records all in memory since opening) are walked in
//! name order through a sorted list of their record positions.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::index::{fold, FOLD_LIMIT};
use super::{
    read_stored, ArrayFile, ArrayRecord, Committed, Error, Layer, Loc, Path, PreparedKind,
    PreparedLayer, Result,
};
use crate::layer::{decode_block_records, BlockMeta, LayerIndex, RecordKind, SortedLayerWriter};

/// Footer blocks a cursor reads in one batch of ranged reads (~1 MiB).
const BATCH_BLOCKS: usize = 16;
/// Footer bytes a merge holds in memory before moving them to a scratch file.
const SPILL_BYTES: usize = 8 << 20;

#[cfg(test)]
thread_local! {
    /// Test hook: the most input records (decoded footer records, records
    /// kept for installing) a merge on this thread held at once.
    pub(super) static PEAK_RECORDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Test hook: the largest footer bytes a merge on this thread held in memory.
    pub(super) static PEAK_FOOTER_BYTES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Test hook: overrides [`SPILL_BYTES`] for merges on this thread.
    pub(super) static SPILL_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(SPILL_BYTES) };
}

fn spill_at() -> usize {
    #[cfg(test)]
    return SPILL_AT.with(std::cell::Cell::get);
    #[cfg(not(test))]
    SPILL_BYTES
}

/// One layer's records in name order, each name's records grouped (in file
/// order: format 1 may hold several records of a name in one layer).
enum Cursor<'a> {
    Blocked {
        layer: &'a Layer,
        index: &'a crate::layer::FooterIndex,
        /// The next block to fetch.
        next: usize,
        /// Fetched blocks not decoded yet, with their numbers.
        raw: VecDeque<(usize, Vec<u8>)>,
        /// Decoded records of the current block not taken yet.
        records: VecDeque<(u32, ArrayRecord)>,
    },
    Whole {
        records: &'a [ArrayRecord],
        /// Record positions sorted by name (stable: file order within a name).
        order: Vec<usize>,
        at: usize,
    },
}

impl<'a> Cursor<'a> {
    fn new(layer: &'a Layer) -> Self {
        match &layer.index {
            LayerIndex::Blocked(index) => Cursor::Blocked {
                layer,
                index,
                next: 0,
                raw: VecDeque::new(),
                records: VecDeque::new(),
            },
            LayerIndex::Whole { records, .. } => {
                let mut order: Vec<usize> = (0..records.len()).collect();
                order.sort_by(|&a, &b| records[a].name.cmp(&records[b].name));
                Cursor::Whole {
                    records,
                    order,
                    at: 0,
                }
            }
        }
    }

    /// The next name, after reading and decoding blocks as needed.
    fn head(&mut self) -> Result<Option<&str>> {
        match self {
            Cursor::Blocked {
                layer,
                index,
                next,
                raw,
                records,
            } => {
                while records.is_empty() {
                    if raw.is_empty() {
                        if *next == index.blocks.len() {
                            return Ok(None);
                        }
                        let end = (*next + BATCH_BLOCKS).min(index.blocks.len());
                        let ranges: Vec<(u64, usize)> = index.blocks[*next..end]
                            .iter()
                            .map(|b| (b.offset, b.len as usize))
                            .collect();
                        layer
                            .footer_blocks_read
                            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
                        raw.extend((*next..end).zip(layer.handle.read_ranges(&ranges)?));
                        *next = end;
                    }
                    let (k, bytes) = raw.pop_front().expect("filled above");
                    records.extend(decode_block_records(&bytes, index, k, &layer.path)?);
                }
                Ok(records.front().map(|(_, r)| r.name.as_str()))
            }
            Cursor::Whole { records, order, at } => {
                Ok(order.get(*at).map(|&k| records[k].name.as_str()))
            }
        }
    }

    /// Takes the records of `name` (the head), with their sequence numbers.
    fn take(&mut self, name: &str) -> Vec<(u32, ArrayRecord)> {
        let mut out = Vec::new();
        match self {
            Cursor::Blocked { records, .. } => {
                // Format 2: one record per name (checked at decode: names
                // strictly increase within a block, and blocks do not overlap).
                if records.front().is_some_and(|(_, r)| r.name == name) {
                    out.push(records.pop_front().expect("checked"));
                }
            }
            Cursor::Whole { records, order, at } => {
                while let Some(&k) = order.get(*at).filter(|&&k| records[k].name == name) {
                    let seq = u32::try_from(k).expect("fewer than 2^32 records per layer");
                    out.push((seq, records[k].clone()));
                    *at += 1;
                }
            }
        }
        out
    }

    /// Decoded records held.
    #[cfg(test)]
    fn held(&self) -> usize {
        match self {
            Cursor::Blocked { records, .. } => records.len(),
            Cursor::Whole { .. } => 0,
        }
    }
}

/// Looks names up, in increasing order, in one layer the merge keeps: each
/// footer block is decoded once, when the first name it covers is asked for.
struct Seeker<'a> {
    layer: &'a Layer,
    /// The decoded block and its number.
    block: Option<(usize, Vec<(u32, ArrayRecord)>)>,
}

impl Seeker<'_> {
    fn records_named(&mut self, file: &ArrayFile, name: &str) -> Result<Vec<ArrayRecord>> {
        let LayerIndex::Blocked(index) = &self.layer.index else {
            return self
                .layer
                .records_named(name, &|l, b| file.footer_block(l, b, false));
        };
        let Some(k) = index.block_for(name) else {
            return Ok(Vec::new());
        };
        if self.block.as_ref().is_none_or(|(at, _)| *at != k) {
            let bytes = file.footer_block(self.layer, &index.blocks[k], false)?;
            let records = decode_block_records(&bytes, index, k, &self.layer.path)?;
            self.block = Some((k, records));
        }
        let (_, records) = self.block.as_ref().expect("set above");
        Ok(records
            .binary_search_by(|(_, r)| r.name.as_str().cmp(name))
            .map(|i| vec![records[i].1.clone()])
            .unwrap_or_default())
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.block.as_ref().map_or(0, |(_, r)| r.len())
    }
}

/// Which input records the merged records stand for, one bit per input record
/// (numbered across layers), and their ranks once every one is marked.
struct Marks {
    bits: Vec<u64>,
    /// Marked bits before each word, once [`Marks::seal`]ed.
    before: Vec<u32>,
}

impl Marks {
    fn new(n: u64) -> Self {
        Marks {
            bits: vec![0; n.div_ceil(64) as usize],
            before: Vec::new(),
        }
    }

    /// Marks `g`; false if it was marked already.
    fn mark(&mut self, g: u32) -> bool {
        let (w, b) = (g as usize / 64, g % 64);
        let was = self.bits[w] & (1 << b) != 0;
        self.bits[w] |= 1 << b;
        !was
    }

    fn seal(&mut self) {
        let mut n = 0u32;
        self.before = self
            .bits
            .iter()
            .map(|w| {
                let at = n;
                n += w.count_ones();
                at
            })
            .collect();
    }

    /// The rank of a marked `g` among the marked numbers.
    fn rank(&self, g: u32) -> u32 {
        let (w, b) = (g as usize / 64, g % 64);
        self.before[w] + (self.bits[w] & ((1u64 << b) - 1)).count_ones()
    }
}

impl ArrayFile {
    /// Writes the combined effect of the committed layers from `from` on as
    /// one new layer, streaming (see the module doc). `from == 0` writes a
    /// base: a `Define` record for every live name. Otherwise a delta to lay
    /// on the layers before `from`: a `Define` for each name (re)defined in
    /// the tail, an `Update` with the tail's chunks for each name defined
    /// before it, a `Delete` for each name the tail mentions that ends up
    /// deleted.
    pub(super) fn write_merged(
        &self,
        path: &Path,
        uid: u128,
        from: usize,
    ) -> Result<PreparedLayer> {
        // Each layer's first global record number, and the total.
        let mut first_of = Vec::with_capacity(self.layers.len());
        let mut total = 0u64;
        for l in &self.layers {
            first_of.push(total);
            total += match &l.index {
                LayerIndex::Blocked(index) => u64::from(index.n_records),
                LayerIndex::Whole { records, .. } => records.len() as u64,
            };
        }
        if total > u64::from(u32::MAX) {
            return Err(Error::Unrepresentable {
                name: self.dir.display().to_string(),
                reason: "a merge of 2^32 records or more",
            });
        }
        let mut marks = Marks::new(total);
        let mut cursors: Vec<Cursor<'_>> =
            self.layers[from..].iter().map(|l| Cursor::new(l)).collect();
        let mut seekers: Vec<Seeker<'_>> = self.layers[..from]
            .iter()
            .map(|layer| Seeker { layer, block: None })
            .collect();
        let mut w =
            SortedLayerWriter::create(&self.storage, path, uid, &self.dir, spill_at(), FOLD_LIMIT)?;
        let from_u32 = u32::try_from(from).expect("fewer than 2^32 layers");
        loop {
            let mut name: Option<String> = None;
            for c in &mut cursors {
                if let Some(h) = c.head()? {
                    if name.as_deref().is_none_or(|n| h < n) {
                        name = Some(h.to_owned());
                    }
                }
            }
            let Some(name) = name else { break };
            #[cfg(test)]
            {
                let held = cursors.iter().map(Cursor::held).sum::<usize>()
                    + seekers.iter().map(Seeker::held).sum::<usize>()
                    + w.held().1;
                PEAK_RECORDS.with(|p| p.set(p.get().max(held)));
                PEAK_FOOTER_BYTES.with(|p| p.set(p.get().max(w.held().0)));
            }
            let mut state: Option<Committed> = None;
            for (idx, s) in seekers.iter_mut().enumerate() {
                let idx = u32::try_from(idx).expect("fewer than 2^32 layers");
                for rec in s.records_named(self, &name)? {
                    fold(&mut state, rec, idx, &s.layer.path)?;
                }
            }
            // The input record each kind of output stands for.
            let (mut defined_by, mut first, mut last) = (None, None, None);
            for (k, c) in cursors.iter_mut().enumerate() {
                let idx = from + k;
                let layer_idx = u32::try_from(idx).expect("fewer than 2^32 layers");
                for (seq, rec) in c.take(&name) {
                    let g = u32::try_from(first_of[idx] + u64::from(seq))
                        .expect("checked against the total");
                    first.get_or_insert(g);
                    last = Some(g);
                    match rec.kind {
                        RecordKind::Define => defined_by = Some(g),
                        RecordKind::Delete => defined_by = None,
                        RecordKind::Update => {}
                    }
                    fold(&mut state, rec, layer_idx, &self.layers[idx].path)?;
                }
            }
            let (kind, g, c) = match &state {
                None if from == 0 => continue,
                // The tail deleted the name (a harmless record where the
                // older layers never had it).
                None => (RecordKind::Delete, last, None),
                Some(c) if c.defined_in >= from_u32 => (RecordKind::Define, defined_by, Some(c)),
                Some(c) if c.chunks.values().any(|l| l.layer >= from_u32) => {
                    (RecordKind::Update, first, Some(c))
                }
                Some(_) => continue,
            };
            let g = g.expect("a record of the walked layers gave this output");
            if !marks.mark(g) {
                return Err(Error::corrupt(
                    &self.layers[from].path,
                    0,
                    format!("two merged records stand for one input record ({name:?})"),
                ));
            }
            w.begin_array(&name, kind, c.map(|c| Arc::clone(&c.schema)), g)?;
            for (&idx, loc) in c
                .iter()
                .flat_map(|c| c.chunks.iter())
                .filter(|(_, l)| l.layer >= from_u32)
            {
                let (stored, meta) = self.checked_chunk(loc)?;
                w.append_chunk(idx, &stored, &meta)?;
            }
        }
        marks.seal();
        let (path, uid, footer, index) = w.finish(|g| marks.rank(g))?;
        self.storage.sync_dir(&self.dir)?;
        let handle = self.storage.open_read(&path)?;
        let kind = if from == 0 {
            PreparedKind::Base {
                sources: self.layer_uids(),
            }
        } else {
            PreparedKind::Merge {
                sources: self.layer_uids(),
                from,
            }
        };
        Ok(PreparedLayer {
            layer: Arc::new(Layer::new(path, uid, handle, index)),
            footer,
            kind,
        })
    }

    /// One committed chunk's stored bytes, checksum checked, and what decodes
    /// them (for copying them unchanged into a merged layer).
    fn checked_chunk(&self, loc: &Loc) -> Result<(Vec<u8>, BlockMeta)> {
        let layer = &self.layers[loc.layer as usize];
        let e = &loc.entry;
        let stored = read_stored(layer, e)?;
        if crc32c::crc32c(&stored) != e.crc {
            return Err(Error::corrupt(
                &layer.path,
                e.offset,
                "block checksum mismatch",
            ));
        }
        let meta = BlockMeta {
            raw_len: e.raw_len,
            codec: e.codec,
            filter: e.filter,
            crc: e.crc,
            stats: e.stats.clone(),
        };
        Ok((stored, meta))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use super::{PEAK_FOOTER_BYTES, PEAK_RECORDS, SPILL_AT};
    use crate::storage::Storage;
    use crate::{ArrayFile, ArrayFileOptions, DeltaCache, LayerId, MemoryStorage};

    fn create(storage: &Arc<MemoryStorage>) -> ArrayFile {
        ArrayFile::create(
            storage.clone(),
            Path::new("/f"),
            ArrayFileOptions::default(),
            Arc::new(DeltaCache::default()),
        )
        .unwrap()
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

    /// Everything a reader sees: names in listing order, then per name its
    /// schema, statistics, stored chunk counts and bytes, and cells.
    fn observed(f: &ArrayFile) -> Vec<String> {
        let names = f.try_list_arrays().unwrap();
        let mut out = vec![format!("{names:?}")];
        for n in names {
            let meta = f.array_meta(&n).unwrap();
            let cells = f.read_array::<i32>(&n, &[], &[]).unwrap();
            out.push(format!("{meta:?} {:?}", cells.iter().collect::<Vec<_>>()));
        }
        out
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// `n_layers` flushes of random changes over `n_names` names: new arrays,
    /// chunk overwrites, deletions (tombstones), redefinitions with another
    /// shape; names are defined in an order unlike their sorted order.
    fn random_file(seed: u64, n_names: u64, n_layers: usize) -> (Arc<MemoryStorage>, ArrayFile) {
        let storage = Arc::new(MemoryStorage::new());
        let mut f = create(&storage);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        for layer in 0..n_layers {
            for _ in 0..n_names {
                let name = format!("v{:04}", rng.below(n_names) * 7919 % n_names);
                let op = rng.below(10);
                let value = (layer as i32 + 1) * 1000 + rng.below(1000) as i32;
                if f.contains(&name) && op < 2 {
                    f.delete_array(&name).unwrap();
                } else if f.contains(&name) && op < 3 {
                    f.delete_array(&name).unwrap();
                    let len = 2 + rng.below(6);
                    f.define_array::<i32>(&name, vec!["y".into()], vec![len], Some(vec![2]), None)
                        .unwrap();
                    f.write_array(&name, &[0], ArrayD::from_elem(IxDyn(&[1]), value).view())
                        .unwrap();
                } else if f.contains(&name) {
                    let shape = f.schema(&name).unwrap().shape[0];
                    let at = rng.below(shape);
                    f.write_array(&name, &[at], ArrayD::from_elem(IxDyn(&[1]), value).view())
                        .unwrap();
                } else if op < 8 {
                    f.define_array::<i32>(&name, vec!["x".into()], vec![6], Some(vec![2]), None)
                        .unwrap();
                    if op < 6 {
                        f.write_array(&name, &[0], ArrayD::from_elem(IxDyn(&[3]), value).view())
                            .unwrap();
                    }
                }
            }
            f.flush().unwrap();
        }
        (storage, f)
    }

    #[test]
    fn streamed_merges_read_as_the_stack_they_replace() {
        for seed in 0..12 {
            let n_layers = 2 + (seed as usize % 4);
            let (storage, f) = random_file(seed, 40 + seed * 13, n_layers);
            let layers = f.layers();
            let want = observed(&f);
            for from in 0..n_layers {
                let mut g = open(&storage, &layers);
                let (retired, kind) = if from == 0 {
                    let p = g.compact_prepare().unwrap();
                    (g.install_compacted(p).unwrap(), "compacted")
                } else {
                    let p = g.merge_tail_prepare(from).unwrap();
                    (g.install_merged(p).unwrap(), "tail-merged")
                };
                assert_eq!(retired, layers[from..].to_vec());
                let ctx = format!("seed {seed}, {kind} from {from} of {n_layers}");
                assert_eq!(observed(&g), want, "{ctx}: installed");
                assert_eq!(
                    observed(&open(&storage, &g.layers())),
                    want,
                    "{ctx}: reopened"
                );
                g.verify().unwrap();
                // Installed on a file whose whole map was built: re-pointed.
                let mut h = open(&storage, &layers);
                let _ = h.list_arrays();
                if from == 0 {
                    let p = h.compact_prepare().unwrap();
                    h.install_compacted(p).unwrap();
                } else {
                    let p = h.merge_tail_prepare(from).unwrap();
                    h.install_merged(p).unwrap();
                }
                assert_eq!(observed(&h), want, "{ctx}: installed on a built map");
            }
        }
    }

    #[test]
    fn footer_blocks_past_the_limit_wait_in_a_scratch_file_that_is_removed() {
        let (storage, f) = random_file(99, 3000, 3);
        let want = observed(&f);
        let layers = f.layers();
        SPILL_AT.with(|s| s.set(1));
        PEAK_FOOTER_BYTES.with(|p| p.set(0));
        let mut tail = open(&storage, &layers);
        let p = tail.merge_tail_prepare(1).unwrap();
        tail.install_merged(p).unwrap();
        let mut g = open(&storage, &layers);
        let p = g.compact_prepare().unwrap();
        g.install_compacted(p).unwrap();
        SPILL_AT.with(|s| s.set(super::SPILL_BYTES));
        assert_eq!(
            PEAK_FOOTER_BYTES.with(std::cell::Cell::get),
            0,
            "spilled from the first block"
        );
        let reopened = open(&storage, &g.layers());
        match &reopened.layers[0].index {
            crate::layer::LayerIndex::Blocked(index) => assert!(index.blocks.len() > 2),
            crate::layer::LayerIndex::Whole { .. } => panic!("format 2 was written"),
        }
        assert_eq!(observed(&g), want);
        assert_eq!(observed(&reopened), want);
        assert_eq!(observed(&tail), want);
        assert_eq!(observed(&open(&storage, &tail.layers())), want);
        let left: Vec<String> = storage
            .list_dir(Path::new("/f"))
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("scratch-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// A base of `n` one-chunk arrays, a delta overwriting every third and a
    /// delta deleting every fifth.
    fn wide_file(n: usize) -> (Arc<MemoryStorage>, Vec<LayerId>) {
        let storage = Arc::new(MemoryStorage::new());
        let mut f = create(&storage);
        let one = |v: i32| ArrayD::from_elem(IxDyn(&[2]), v);
        for k in 0..n {
            let name = format!("d{:06}", (k * 7919) % n);
            f.define_array::<i32>(&name, vec!["x".into()], vec![2], None, None)
                .unwrap();
            f.write_array(&name, &[0], one(k as i32).view()).unwrap();
        }
        f.flush().unwrap();
        for k in (0..n).step_by(3) {
            f.write_array(&format!("d{k:06}"), &[0], one(-1).view())
                .unwrap();
        }
        f.flush().unwrap();
        for k in (0..n).step_by(5) {
            f.delete_array(&format!("d{k:06}")).unwrap();
        }
        f.flush().unwrap();
        (storage, f.layers())
    }

    /// The most records a merge holds at once, for a base and a tail merge of
    /// a fresh open of `wide_file(n)`, and what a bounded merge may hold: a
    /// footer block per layer and the records kept for installing. Also
    /// checks the merge built no state.
    fn peak_records(n: usize) -> (usize, usize, usize) {
        let (storage, layers) = wide_file(n);
        let blocks: usize = open(&storage, &layers)
            .layers
            .iter()
            .map(|l| match &l.index {
                crate::layer::LayerIndex::Blocked(index) => index
                    .blocks
                    .iter()
                    .map(|b| b.n_records as usize)
                    .max()
                    .unwrap_or(0),
                crate::layer::LayerIndex::Whole { .. } => panic!("format 2 was written"),
            })
            .sum();
        let mut peaks = Vec::new();
        for from in [0, 1] {
            let f = open(&storage, &layers);
            PEAK_RECORDS.with(|p| p.set(0));
            let p = if from == 0 {
                f.compact_prepare().unwrap()
            } else {
                f.merge_tail_prepare(from).unwrap()
            };
            peaks.push(PEAK_RECORDS.with(std::cell::Cell::get));
            assert!(f.index.all.get().is_none(), "no whole map was built");
            assert!(f.index.slot_of.lock().is_empty(), "no state was built");
            let _ = storage.remove_file(p.path());
        }
        (peaks[0], peaks[1], blocks + super::FOLD_LIMIT)
    }

    #[test]
    fn a_merge_holds_no_more_records_with_more_datasets() {
        let small = peak_records(2_000);
        let large = peak_records(40_000);
        // Holding every dataset would be 40 000 records; the bound is a
        // fraction of that.
        assert!(large.2 * 4 < 40_000, "{large:?}");
        for (n, (base, tail, bound)) in [(2_000, small), (40_000, large)] {
            assert!(
                base <= bound && tail <= bound,
                "{n}: {base} {tail} > {bound}"
            );
            assert!(base > 0 && tail > 0);
        }
    }
}
