//! Reads: resolving chunks to their newest version, fetching and decoding
//! blocks (through the cache), and the one-pass scan of many arrays.

use super::{
    decode_cells, fill_of, slab, Arc, ArrayD, ArrayElement, ArrayFile, ArraySchema, BlockKey,
    ChunkEntry, DecodeError, Error, IxDyn, Layer, Loc, Path, RecordKind, Result, Source, View,
};
use crate::codec::{
    decompress_into, filter_error, undo_filter, unshuffle_buffers, unshuffle_into, DecodeBuffers,
    FILTER_SHUFFLE,
};

/// Largest read [`ArrayFile::read_is_in_memory`] calls cheap: 64 Ki cells
/// (assembled in well under a millisecond).
pub const IN_MEMORY_READ_CELLS: u64 = 64 << 10;

impl ArrayFile {
    /// Decoded raw bytes of a chunk's newest version.
    pub(super) fn chunk_raw(
        &self,
        src: &Source<'_>,
        width: usize,
        fill_cache: bool,
    ) -> Result<Arc<Vec<u8>>> {
        match src {
            Source::Layer(loc) => {
                let layer = &self.layers[loc.layer as usize];
                let e = &loc.entry;
                let key = self.key_of(loc);
                let read = || read_stored(layer, e);
                let decode = |stored: &[u8]| decode_entry(stored, e, width, &layer.path);
                if fill_cache {
                    self.cache
                        .decoded(key, || decode(&self.cache.raw(key, read)?))
                } else {
                    self.cache
                        .decoded_streaming(key, || decode(&self.cache.raw_streaming(key, read)?))
                }
            }
            Source::Pending(p) => {
                let stored = self.pending.stored_bytes(p)?;
                let m = &p.meta;
                decode_checked(
                    &stored, m.crc, m.codec, m.filter, width, m.raw_len, &self.dir, 0,
                )
                .map(Arc::new)
            }
        }
    }

    /// One chunk's cells as an array of its (edge-clipped) shape.
    pub(super) fn chunk_array<T: ArrayElement>(
        &self,
        src: &Source<'_>,
        shape: &[u64],
        fill_cache: bool,
    ) -> Result<ArrayD<T>> {
        // A committed block the decoded level will not keep (a streaming
        // read, or that level turned off) is decoded straight into the
        // result: the codec's output goes to this thread's reused buffers
        // and the cells are unshuffled as they are converted, instead of
        // two fresh buffers of the block's size and a copy of the cells.
        if let Source::Layer(loc) = src {
            if !fill_cache || !self.cache.decoded_enabled() {
                let layer = &self.layers[loc.layer as usize];
                let e = &loc.entry;
                let key = self.key_of(loc);
                return self.cache.decoded_or_else(
                    &key,
                    |raw| cells_array(&raw, shape, &layer.path, e.offset),
                    || {
                        let read = || read_stored(layer, e);
                        let stored = if fill_cache {
                            self.cache.raw(key, read)?
                        } else {
                            self.cache.raw_streaming(key, read)?
                        };
                        with_scratch(|bufs| {
                            decode_entry_array(&stored, e, shape, &layer.path, bufs)
                        })
                    },
                );
            }
        }
        let width = T::DTYPE.size_bytes().unwrap_or(0);
        let raw = self.chunk_raw(src, width, fill_cache)?;
        let (path, offset) = self.location(src);
        cells_array(&raw, shape, path, offset)
    }

    /// Where a chunk's bytes are, for errors: its layer file and offset,
    /// or the file's directory for a pending chunk.
    fn location(&self, src: &Source<'_>) -> (&Path, u64) {
        match src {
            Source::Layer(l) => (&self.layers[l.layer as usize].path, l.entry.offset),
            Source::Pending(_) => (&self.dir, 0),
        }
    }

    /// The cache key of a committed chunk's block.
    fn key_of(&self, loc: &Loc) -> BlockKey {
        BlockKey {
            layer_uid: self.layers[loc.layer as usize].uid,
            offset: loc.entry.offset,
        }
    }

    pub(super) fn check_dtype<T: ArrayElement>(name: &str, schema: &ArraySchema) -> Result<()> {
        if schema.dtype == T::DTYPE {
            Ok(())
        } else {
            Err(Error::DTypeMismatch {
                name: name.to_owned(),
                stored: schema.dtype,
                requested: T::DTYPE,
            })
        }
    }

    /// Reads a hyperslab; empty `start` and `count` read the whole array.
    /// Cells never written read as the fill value (the type's zero without one).
    pub fn read_array<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
    ) -> Result<ArrayD<T>> {
        self.read_array_with(name, start, count, true)
    }

    /// Like [`ArrayFile::read_array`], but blocks that miss the cache are not
    /// added to it: for scans, which would otherwise evict the point-read
    /// working set with blocks they never revisit.
    pub fn read_array_streaming<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
    ) -> Result<ArrayD<T>> {
        self.read_array_with(name, start, count, false)
    }

    pub(super) fn read_array_with<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
        fill_cache: bool,
    ) -> Result<ArrayD<T>> {
        let view = self.view_or_err(name)?;
        self.read_array_on(name, &view, start, count, fill_cache)
    }

    /// [`ArrayFile::read_array_with`] on `name`'s view, already resolved.
    fn read_array_on<T: ArrayElement>(
        &self,
        name: &str,
        view: &View<'_>,
        start: &[u64],
        count: &[u64],
        fill_cache: bool,
    ) -> Result<ArrayD<T>> {
        // On object stores every block fetched alone is a round trip: the
        // blocks of a read touching several stored chunks are fetched in one
        // batch of coalesced ranges first (into the cache, or, for streaming
        // reads and reads larger than a quarter of the cache, straight into
        // the read).
        if self.storage.is_object_store() {
            let missing = self.uncached_blocks(name, start, count);
            if missing.len() > 1 {
                let bytes: u64 = missing.iter().map(|(_, e)| e.stored_len).sum();
                if fill_cache && bytes <= self.cache.raw_capacity_bytes() / 4 {
                    self.prefetch_blocks(&missing);
                } else if let Some(r) = self.read_many_streaming(&[name], start, count).pop() {
                    return r;
                }
            }
        }
        self.read_with_view(name, view, start, count, Some(fill_cache), |src, cshape| {
            self.chunk_array(src, cshape, fill_cache)
        })
    }

    /// A large read touching several chunk rows on the first axis, on
    /// rayon's pool (for [`ArrayFile::read_with`], with the region resolved
    /// and its chunks `touched`, when its reads go through
    /// [`ArrayFile::chunk_array`]): the result is filled in parallel (its
    /// pages first touched by every core, not one), then each band of chunks
    /// sharing a first-axis chunk row is decoded and copied into its own
    /// contiguous part of the result by one task. The cells are those of the
    /// sequential path; the error, if any, is the first band's in order.
    /// `None` for reads that do not qualify (smaller than
    /// [`PARALLEL_READ_BYTES`], one band, one core).
    #[allow(clippy::too_many_arguments)]
    fn read_bands_parallel<T: ArrayElement>(
        &self,
        name: &str,
        view: &View<'_>,
        start: &[u64],
        count: &[u64],
        touched: &[u64],
        fill: &T,
        fill_cache: bool,
    ) -> Result<Option<ArrayD<T>>> {
        use rayon::prelude::*;
        let schema = view.schema;
        let cells: u64 = count.iter().product();
        if rayon::current_num_threads() < 2 {
            return Ok(None);
        }
        let large = cells.saturating_mul(size_of::<T>() as u64) >= PARALLEL_READ_BYTES;
        // A small region qualifies by the decoding it needs, where that
        // does not go to the decoded level (`decode_ahead` covers that).
        if !large
            && (fill_cache && self.cache.decoded_enabled()
                || touched
                    .iter()
                    .filter_map(|&idx| match view.source(idx) {
                        Some(Source::Layer(loc)) => Some(loc.entry.raw_len),
                        _ => None,
                    })
                    .sum::<u64>()
                    < PARALLEL_DECODE_MIN_BYTES)
        {
            return Ok(None);
        }
        let c0 = schema.chunk_shape[0];
        let (b_lo, b_hi) = (start[0] / c0, (start[0] + count[0] - 1) / c0);
        if b_hi == b_lo {
            return Ok(None);
        }
        let cells = usize::try_from(cells).expect("checked by region_fits");
        let mut out: Vec<T> = reserve_cells(name, cells)?;
        if large {
            (0..cells)
                .into_par_iter()
                .map(|_| fill.clone())
                .collect_into_vec(&mut out);
        } else {
            // Not worth a round trip to the pool.
            out.resize(cells, fill.clone());
        }
        // Each band's rows of the region, and its contiguous part of `out`.
        let line: usize = count[1..].iter().map(|&c| c as usize).product();
        let bands: Vec<(u64, u64)> = (b_lo..=b_hi)
            .map(|b| {
                let r0 = start[0].max(b * c0);
                let r1 = (start[0] + count[0]).min((b + 1) * c0);
                (r0, r1)
            })
            .collect();
        let mut parts = Vec::with_capacity(bands.len());
        let mut rest = out.as_mut_slice();
        for &(r0, r1) in &bands {
            let (part, tail) = rest.split_at_mut((r1 - r0) as usize * line);
            parts.push(part);
            rest = tail;
        }
        let per_band = touched.len() / bands.len();
        let items: Vec<_> = parts
            .into_iter()
            .zip(touched.chunks(per_band))
            .zip(bands)
            .map(|((part, chunks), (r0, r1))| (part, chunks, r0, r1))
            .collect();
        let band = |(part, chunks, r0, r1): (&mut [T], &[u64], u64, u64)| -> Result<()> {
            let mut bstart = start.to_vec();
            let mut bcount = count.to_vec();
            bstart[0] = r0;
            bcount[0] = r1 - r0;
            let dims: Vec<usize> = bcount.iter().map(|&c| c as usize).collect();
            let mut band = ndarray::ArrayViewMutD::from_shape(IxDyn(&dims), part)
                .expect("a band's part has its cells");
            for &idx in chunks {
                self.copy_chunk_of(view, idx, &bstart, &bcount, &mut band, fill_cache)?;
            }
            Ok(())
        };
        // A large read keeps every thread of the pool busy for long: the
        // caller waits (a third thread on the cores would only compete). A
        // small one is over in about the time it takes to wake a thread:
        // the caller works too.
        let results: Vec<Result<()>> = if large {
            items.into_par_iter().map(band).collect()
        } else {
            on_every_core(items, band)
        };
        for r in results {
            r?;
        }
        let dims: Vec<usize> = count.iter().map(|&c| c as usize).collect();
        Ok(Some(
            ArrayD::from_shape_vec(IxDyn(&dims), out).expect("cell count matches shape"),
        ))
    }

    /// True when a read of `name`'s region would not touch storage: the
    /// name's state is built (or only pending), every committed block the
    /// read touches is in the cache, and the read is at most
    /// [`IN_MEMORY_READ_CELLS`] cells. An async caller can then read on its
    /// own thread instead of handing a read of a few microseconds to a
    /// blocking thread, which costs tens. A read that will fail for its
    /// arguments (no such array, a region out of bounds) also counts: it
    /// fails without I/O.
    pub fn read_is_in_memory(&self, name: &str, start: &[u64], count: &[u64]) -> bool {
        if !self.state_in_memory(name) {
            return false;
        }
        let Some(view) = self.view(name) else {
            return true;
        };
        self.region_in_memory(name, &view, start, count)
    }

    /// A read of `name` that first checks its schema in this file equals
    /// `expected` (the registry's), resolving the name once for the check
    /// and the read. With `in_memory_only`, a read that would touch storage
    /// (see [`ArrayFile::read_is_in_memory`]) is not made:
    /// [`Expected::NotInMemory`], before the schema is looked at. Errors are
    /// those of [`ArrayFile::read_array`] (a footer block that cannot be
    /// read among them); a name this file does not define reads as
    /// [`Expected::SchemaDiffers`].
    pub fn read_array_expecting<T: ArrayElement>(
        &self,
        name: &str,
        expected: &ArraySchema,
        start: &[u64],
        count: &[u64],
        in_memory_only: bool,
    ) -> Result<Expected<T>> {
        if in_memory_only && !self.state_in_memory(name) {
            return Ok(Expected::NotInMemory);
        }
        let Some(view) = self.try_view(name)? else {
            return Ok(Expected::SchemaDiffers);
        };
        if **view.schema != *expected {
            return Ok(Expected::SchemaDiffers);
        }
        if in_memory_only && !self.region_in_memory(name, &view, start, count) {
            return Ok(Expected::NotInMemory);
        }
        self.read_array_on(name, &view, start, count, true)
            .map(Expected::Read)
    }

    /// True when `name`'s state is known without reading a footer block
    /// (the first half of [`ArrayFile::read_is_in_memory`]).
    fn state_in_memory(&self, name: &str) -> bool {
        let pending_define = self
            .pending
            .arrays
            .get(name)
            .is_some_and(|p| p.kind == RecordKind::Define);
        pending_define || self.index.is_built(name)
    }

    /// The second half of [`ArrayFile::read_is_in_memory`], on `name`'s view.
    fn region_in_memory(&self, name: &str, view: &View<'_>, start: &[u64], count: &[u64]) -> bool {
        if whole_of_one_chunk(view.schema, start, count) {
            return view.schema.n_cells() <= IN_MEMORY_READ_CELLS && self.chunk_in_memory(view, 0);
        }
        let Ok((st, ct)) = view.schema.resolve_region(name, start, count) else {
            return true;
        };
        let cells = ct
            .iter()
            .try_fold(1u64, |n, &c| n.checked_mul(c))
            .unwrap_or(u64::MAX);
        if cells > IN_MEMORY_READ_CELLS {
            return false;
        }
        if cells == 0 {
            return true;
        }
        // A region within one chunk (the usual small read): that chunk
        // alone, without the vectors of `uncached`.
        match view.schema.single_chunk(&st, &ct) {
            Some(idx) => self.chunk_in_memory(view, idx),
            None => self.uncached(view, &st, &ct).is_empty(),
        }
    }

    /// True when chunk `idx` of `view` is read without storage: pending,
    /// never written, or its committed block in a cache level.
    fn chunk_in_memory(&self, view: &View<'_>, idx: u64) -> bool {
        match view.source(idx) {
            Some(Source::Layer(loc)) => self.cache.contains(&self.key_of(loc)),
            _ => true,
        }
    }

    /// The committed blocks a read of `name`'s region needs that neither
    /// cache level holds, as (layer, entry); empty when the read is invalid
    /// (the read itself reports why).
    fn uncached_blocks(&self, name: &str, start: &[u64], count: &[u64]) -> Vec<(u32, ChunkEntry)> {
        let Some(view) = self.view(name) else {
            return Vec::new();
        };
        let Ok((st, ct)) = view.schema.resolve_region(name, start, count) else {
            return Vec::new();
        };
        if ct.contains(&0) {
            return Vec::new();
        }
        self.uncached(&view, &st, &ct)
            .into_iter()
            .map(|loc| (loc.layer, loc.entry.clone()))
            .collect()
    }

    /// The committed blocks of `view`'s resolved region (`st`, `ct`, no
    /// empty extent) that neither cache level holds.
    fn uncached<'a>(&self, view: &View<'a>, st: &[u64], ct: &[u64]) -> Vec<&'a Loc> {
        view.schema
            .chunks_touching(st, ct)
            .into_iter()
            .filter_map(|idx| match view.source(idx) {
                Some(Source::Layer(loc)) => Some(loc),
                _ => None,
            })
            .filter(|loc| !self.cache.contains(&self.key_of(loc)))
            .collect()
    }

    /// Prepares a small read of `name`'s region to be served from memory
    /// without waiting for a device: the committed blocks it needs that
    /// neither cache level holds are read and decoded into the decoded
    /// cache (into the raw cache when the decoded level is off) where storage
    /// has them at once ([`crate::ReadHandle::read_ranges_nowait`]: for a
    /// local file, the page cache). True when the read is now
    /// [`ArrayFile::read_is_in_memory`]. False leaves it to a blocking
    /// thread: no raw cache level, a region over [`IN_MEMORY_READ_CELLS`]
    /// cells, a footer block or chunk not in memory, or storage that cannot
    /// tell (what was fetched stays cached).
    pub fn fetch_nowait(&self, name: &str, start: &[u64], count: &[u64]) -> bool {
        // Without a raw level nothing fetched would be kept: the blocking
        // path would read it all again.
        if self.cache.raw_capacity_bytes() == 0 {
            return false;
        }
        if !self.state_nowait(name) {
            return false;
        }
        let Some(view) = self.view(name) else {
            return true;
        };
        let Ok((st, ct)) = view.schema.resolve_region(name, start, count) else {
            return true;
        };
        let cells = ct
            .iter()
            .try_fold(1u64, |n, &c| n.checked_mul(c))
            .unwrap_or(u64::MAX);
        if cells > IN_MEMORY_READ_CELLS {
            return false;
        }
        if cells == 0 {
            return true;
        }
        let missing = self.uncached(&view, &st, &ct);
        let decoded = self.cache.decoded_enabled();
        let width = view.schema.dtype.size_bytes().unwrap_or(0);
        let mut by_layer: std::collections::BTreeMap<u32, Vec<&ChunkEntry>> =
            std::collections::BTreeMap::new();
        for loc in &missing {
            by_layer.entry(loc.layer).or_default().push(&loc.entry);
        }
        for (layer, entries) in by_layer {
            let layer = &self.layers[layer as usize];
            let ranges: Option<Vec<(u64, usize)>> = entries
                .iter()
                .map(|e| usize::try_from(e.stored_len).ok().map(|n| (e.offset, n)))
                .collect();
            // Decoded blocks leave their read buffers free for the next read.
            let mut spare = if decoded {
                super::scan::take_spares()
            } else {
                Vec::new()
            };
            let Some(bufs) = ranges.and_then(|r| layer.handle.read_ranges_nowait(&r, &mut spare))
            else {
                super::scan::give_back_spares(spare);
                return false;
            };
            for (e, buf) in entries.into_iter().zip(bufs) {
                let key = BlockKey {
                    layer_uid: layer.uid,
                    offset: e.offset,
                };
                // Decoded straight into the decoded level, which is what
                // the read uses: keeping the stored bytes as well would
                // touch a second block of fresh memory per chunk (page
                // faults were a third of a fresh 32 KiB read), for a copy
                // the page cache keeps anyway. A block that fails to
                // decode is not kept; the read then reports why.
                if decoded {
                    let _ = self
                        .cache
                        .decoded(key, || decode_entry(&buf, e, width, &layer.path));
                    spare.push(buf);
                } else {
                    let _ = self.cache.raw(key, || Ok(buf));
                }
            }
            super::scan::give_back_spares(spare);
        }
        // Exact, not assumed: a raw level of no capacity keeps nothing.
        self.region_in_memory(name, &view, start, count)
    }

    /// True when `name`'s state is in memory or was built just now from
    /// footer blocks storage has at once (a fresh handle has read none),
    /// fetched into the raw level, which must then have room.
    pub(super) fn state_nowait(&self, name: &str) -> bool {
        self.state_in_memory(name)
            || (self.cache.raw_capacity_bytes() > 0
                && self.footer_blocks_nowait(name)
                && self.committed(name).is_ok()
                && self.state_in_memory(name))
    }

    /// Reads into the raw cache the footer blocks that building `name`'s
    /// state reads, where storage has them without waiting; true when every
    /// one is cached.
    fn footer_blocks_nowait(&self, name: &str) -> bool {
        for layer in &self.layers {
            let crate::layer::LayerIndex::Blocked(index) = &layer.index else {
                continue;
            };
            let Some(k) = index.block_for(name) else {
                continue;
            };
            let b = &index.blocks[k];
            let key = BlockKey {
                layer_uid: layer.uid,
                offset: b.offset,
            };
            if self.cache.raw_contains(&key) {
                continue;
            }
            let Some(buf) = layer
                .handle
                .read_ranges_nowait(&[(b.offset, b.len as usize)], &mut Vec::new())
                .and_then(|mut v| v.pop())
            else {
                return false;
            };
            layer
                .footer_blocks_read
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = self.cache.raw(key, || Ok(buf));
            if !self.cache.raw_contains(&key) {
                return false;
            }
        }
        true
    }

    /// Fetches `blocks` with one batch of ranged reads per layer into the raw
    /// cache. Best effort: a failed fetch leaves the blocks to the per-chunk
    /// path, which reports the error.
    fn prefetch_blocks(&self, blocks: &[(u32, ChunkEntry)]) {
        let mut by_layer: std::collections::BTreeMap<u32, Vec<&ChunkEntry>> =
            std::collections::BTreeMap::new();
        for (layer, e) in blocks {
            by_layer.entry(*layer).or_default().push(e);
        }
        for (layer, entries) in by_layer {
            let layer = &self.layers[layer as usize];
            let ranges: Option<Vec<(u64, usize)>> = entries
                .iter()
                .map(|e| usize::try_from(e.stored_len).ok().map(|n| (e.offset, n)))
                .collect();
            let Some(Ok(bufs)) = ranges.map(|r| layer.handle.read_ranges(&r)) else {
                continue;
            };
            for (e, buf) in entries.into_iter().zip(bufs) {
                let key = BlockKey {
                    layer_uid: layer.uid,
                    offset: e.offset,
                };
                let _ = self.cache.raw(key, || Ok(buf));
            }
        }
    }

    /// Assembles a hyperslab, getting each stored chunk from `load`.
    /// `parallel`: the chunks
    /// are read by [`ArrayFile::chunk_array`] with this `fill_cache`, so a
    /// large read may instead decode them on every core
    /// ([`ArrayFile::read_bands_parallel`]).
    pub(super) fn read_with<T: ArrayElement>(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
        parallel: Option<bool>,
        load: impl FnMut(&Source<'_>, &[u64]) -> Result<ArrayD<T>>,
    ) -> Result<ArrayD<T>> {
        let view = self.view_or_err(name)?;
        self.read_with_view(name, &view, start, count, parallel, load)
    }

    /// [`ArrayFile::read_with`] on `name`'s view, already resolved.
    fn read_with_view<T: ArrayElement>(
        &self,
        name: &str,
        view: &View<'_>,
        start: &[u64],
        count: &[u64],
        parallel: Option<bool>,
        mut load: impl FnMut(&Source<'_>, &[u64]) -> Result<ArrayD<T>>,
    ) -> Result<ArrayD<T>> {
        let schema = view.schema;
        Self::check_dtype::<T>(name, schema)?;
        if whole_of_one_chunk(schema, start, count) {
            // Every cell of a one-chunk array (the usual read of a small
            // dataset): chunk 0 as the general path below would load it,
            // without resolving the region into vectors first.
            region_fits::<T>(name, &schema.shape)?;
            if let Some(src) = view.source(0) {
                return load(&src, &schema.shape);
            }
            let dims: Vec<usize> = schema.shape.iter().map(|&c| c as usize).collect();
            return Ok(ArrayD::from_elem(IxDyn(&dims), fill_of(schema)));
        }
        let (start, count) = schema.resolve_region(name, start, count)?;
        let dims: Vec<usize> = count.iter().map(|&c| c as usize).collect();
        let fill: T = fill_of(schema);
        if count.contains(&0) {
            return Ok(ArrayD::from_elem(IxDyn(&dims), fill));
        }
        // A region must fit in memory: refuse it up front, before enumerating
        // its chunks, rather than aborting on an impossible allocation.
        region_fits::<T>(name, &count)?;
        let single = schema.single_chunk(&start, &count);
        // Fast path: the region is exactly one stored chunk.
        if let Some(only) = single.filter(|_| schema.is_whole_chunk(&start, &count)) {
            return match view.source(only) {
                Some(src) => load(&src, &count),
                None => Ok(ArrayD::from_elem(IxDyn(&dims), fill)),
            };
        }
        let touched = match single {
            Some(only) => vec![only],
            None => schema.chunks_touching(&start, &count),
        };
        if let Some(fill_cache) = parallel {
            if let Some(out) =
                self.read_bands_parallel(name, view, &start, &count, &touched, &fill, fill_cache)?
            {
                return Ok(out);
            }
        }
        if parallel == Some(true) {
            self.decode_ahead::<T>(view, &touched);
        }
        let mut out = filled_array(name, &dims, fill)?;
        for idx in touched {
            match parallel {
                Some(fill_cache) => {
                    self.copy_chunk_of(view, idx, &start, &count, &mut out.view_mut(), fill_cache)?;
                }
                None => copy_chunk(view, idx, &start, &count, &mut out.view_mut(), &mut load)?,
            }
        }
        Ok(out)
    }

    /// Decodes the committed chunks among `touched` (a read's, in order)
    /// that the decoded level does not hold into it, on every core, when
    /// there are at least two and [`PARALLEL_DECODE_MIN_BYTES`] of cells in
    /// them (at most a quarter of the level's budget, so the read finds
    /// them there): a read of a few large chunks (a window of a chunked
    /// grid) would otherwise decode them one after another on one core,
    /// and the read that follows copies from the level. An error is left
    /// for the read, which meets it again in order. Nothing is done on one
    /// core or without a decoded level.
    fn decode_ahead<T: ArrayElement>(&self, view: &View<'_>, touched: &[u64]) {
        if touched.len() < 2 || rayon::current_num_threads() < 2 || !self.cache.decoded_enabled() {
            return;
        }
        let committed: Vec<&Loc> = touched
            .iter()
            .filter_map(|&idx| match view.source(idx) {
                Some(Source::Layer(loc)) => Some(loc),
                _ => None,
            })
            .collect();
        // Too little to decode even if none is cached: no cache lookups.
        if committed.iter().map(|l| l.entry.raw_len).sum::<u64>() < PARALLEL_DECODE_MIN_BYTES {
            return;
        }
        let todo: Vec<&Loc> = committed
            .into_iter()
            .filter(|loc| !self.cache.decoded_contains(&self.key_of(loc)))
            .collect();
        let bytes: u64 = todo.iter().map(|l| l.entry.raw_len).sum();
        if todo.len() < 2
            || bytes < PARALLEL_DECODE_MIN_BYTES
            || bytes > self.cache.decoded_capacity_bytes() / 4
        {
            return;
        }
        let width = T::DTYPE.size_bytes().unwrap_or(0);
        on_every_core(todo, |loc| {
            let _ = self.chunk_raw(&Source::Layer(loc), width, true);
        });
    }

    /// [`copy_chunk`] with the chunk read by [`ArrayFile::chunk_array`]
    /// (`fill_cache`), except where the decoded level keeps the block: its
    /// cached bytes are then copied row by row into `dst` (standard layout)
    /// for types every byte pattern of which is a cell
    /// ([`ArrayElement::copy_le`]), instead of being converted whole into a
    /// chunk-sized array first and copied again. The cells and the errors
    /// are those of `chunk_array`.
    fn copy_chunk_of<T: ArrayElement>(
        &self,
        view: &View<'_>,
        idx: u64,
        start: &[u64],
        count: &[u64],
        dst: &mut ndarray::ArrayViewMutD<'_, T>,
        fill_cache: bool,
    ) -> Result<()> {
        let width = T::DTYPE.size_bytes().unwrap_or(0);
        let direct = fill_cache
            && self.cache.decoded_enabled()
            && width > 0
            && T::copy_le(&[], &mut [])
            && dst.is_standard_layout();
        if !direct {
            return copy_chunk(view, idx, start, count, dst, |src, cshape| {
                self.chunk_array(src, cshape, fill_cache)
            });
        }
        let Some(src) = view.source(idx) else {
            return Ok(());
        };
        let (origin, cshape) = view.schema.chunk_region(idx);
        let raw = self.chunk_raw(&src, width, true)?;
        let cells: u64 = cshape.iter().product();
        if Some(raw.len() as u64) != cells.checked_mul(width as u64) {
            let (path, offset) = self.location(&src);
            return Err(cells_error::<T>(path, offset));
        }
        let (cr, rr): (Vec<_>, Vec<_>) = slab::intersect(&origin, &cshape, start, count)
            .into_iter()
            .unzip();
        let dshape: Vec<usize> = dst.shape().to_vec();
        let out = dst.as_slice_mut().expect("standard layout checked");
        slab::copy_rows(&raw, width, &cshape, &cr, out, &dshape, &rr, T::copy_le);
        Ok(())
    }

    /// Reads the same hyperslab of many arrays in one pass: the stored blocks
    /// they need are sorted by file position and fetched with a few large reads
    /// (neighbouring blocks coalesced), then decoded. This is how a scan of one
    /// variable across many datasets reads the file: sequentially, once. Like
    /// [`ArrayFile::read_array_streaming`], it does not fill the cache. One
    /// result per name, in order. [`ArrayFile::scan`] does the same on
    /// several threads, and shows each array's schema first.
    pub fn read_many_streaming<T: ArrayElement>(
        &self,
        names: &[&str],
        start: &[u64],
        count: &[u64],
    ) -> Vec<Result<ArrayD<T>>> {
        self.scan_resolved(names).read(start, count, 1)
    }
}

/// What [`ArrayFile::read_array_expecting`] found.
#[derive(Debug)]
pub enum Expected<T> {
    /// The schemas agree; the cells read.
    Read(ArrayD<T>),
    /// Not read: it would touch storage (only with `in_memory_only`).
    NotInMemory,
    /// The file does not define the name with the expected schema.
    SchemaDiffers,
}

/// Reads of at least this many bytes (of cells) touching several chunk rows
/// are decoded on every core ([`ArrayFile::read_array`]'s bands).
pub(crate) const PARALLEL_READ_BYTES: u64 = 4 << 20;

/// `f` on every item, on the calling thread and on as many of rayon's
/// threads as help (the pool's size in all), each taking the next item
/// when it gets free; the results in item order. The caller starts at
/// once and does the work of a thread not yet awake: waking a sleeping
/// thread (of a virtual machine most of all) can cost as much as decoding
/// a chunk, and a read handed wholly to the pool would wait for it.
fn on_every_core<I: Send, R: Send>(items: Vec<I>, f: impl Fn(I) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let helpers = rayon::current_num_threads()
        .saturating_sub(1)
        .min(n.saturating_sub(1));
    let queue = parking_lot::Mutex::new(items.into_iter().enumerate());
    let done = parking_lot::Mutex::new(Vec::with_capacity(n));
    let work = || loop {
        let Some((k, item)) = queue.lock().next() else {
            return;
        };
        let r = f(item);
        done.lock().push((k, r));
    };
    let work = &work;
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(move |_| work());
        }
        work();
    });
    let mut done = done.into_inner();
    done.sort_unstable_by_key(|&(k, _)| k);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Fewest bytes of cells, in at least two chunks still to decode, that a
/// read decodes on every core ([`ArrayFile::read_array`]; by bands of
/// chunk rows where the decoded level keeps nothing): below this,
/// handing the work to the pool costs about what it saves.
pub(crate) const PARALLEL_DECODE_MIN_BYTES: u64 = 128 << 10;

/// Checks that a region of `count` cells can be allocated (as `T` cells).
/// True for a read of every cell (`start` and `count` empty) of an array
/// of `schema` that is one chunk (so has cells): its region is chunk 0.
fn whole_of_one_chunk(schema: &ArraySchema, start: &[u64], count: &[u64]) -> bool {
    start.is_empty() && count.is_empty() && schema.n_chunks() == 1
}

pub(super) fn region_fits<T>(name: &str, count: &[u64]) -> Result<()> {
    let cells = count
        .iter()
        .try_fold(1u64, |a, &c| a.checked_mul(c))
        .ok_or_else(|| too_large(name))?;
    let cells = usize::try_from(cells).map_err(|_| too_large(name))?;
    // Small regions always fit; only probe the allocator for big ones.
    if cells.saturating_mul(size_of::<T>()) <= 64 << 20 {
        return Ok(());
    }
    reserve_cells::<T>(name, cells).map(drop)
}

/// The error of a read whose region cannot be allocated.
fn too_large(name: &str) -> Error {
    Error::Unrepresentable {
        name: name.to_owned(),
        reason: "the requested region does not fit in memory; read it in parts",
    }
}

/// An empty vector with room for `cells` cells, allocated fallibly.
fn reserve_cells<T>(name: &str, cells: usize) -> Result<Vec<T>> {
    crate::element::reserve_cells(cells).ok_or_else(|| too_large(name))
}

/// Copies the part of chunk `idx` (got from `load`; nothing for an unstored
/// chunk) inside the region `start` + `count` into `dst`, the region's cells.
fn copy_chunk<T: ArrayElement>(
    view: &View<'_>,
    idx: u64,
    start: &[u64],
    count: &[u64],
    dst: &mut ndarray::ArrayViewMutD<'_, T>,
    load: impl FnOnce(&Source<'_>, &[u64]) -> Result<ArrayD<T>>,
) -> Result<()> {
    let Some(src) = view.source(idx) else {
        return Ok(());
    };
    let (origin, cshape) = view.schema.chunk_region(idx);
    let chunk = load(&src, &cshape)?;
    let (cr, rr): (Vec<_>, Vec<_>) = slab::intersect(&origin, &cshape, start, count)
        .into_iter()
        .unzip();
    slab::copy_box(dst, &rr, &chunk.view(), &cr);
    Ok(())
}

/// An array of `dims` filled with `fill`, allocated fallibly.
pub(super) fn filled_array<T: Clone>(name: &str, dims: &[usize], fill: T) -> Result<ArrayD<T>> {
    let cells: usize = dims.iter().product();
    let mut v = reserve_cells(name, cells)?;
    v.resize(cells, fill);
    Ok(ArrayD::from_shape_vec(IxDyn(dims), v).expect("cell count matches shape"))
}

/// Decoded chunk bytes as an array of `shape`.
pub(super) fn cells_array<T: ArrayElement>(
    raw: &[u8],
    shape: &[u64],
    path: &Path,
    offset: u64,
) -> Result<ArrayD<T>> {
    let n: u64 = shape.iter().product();
    let cells = decode_cells::<T>(raw, n as usize).ok_or_else(|| cells_error::<T>(path, offset))?;
    Ok(array_of(cells, shape))
}

/// The error of a chunk whose decoded bytes are not its cells.
fn cells_error<T: ArrayElement>(path: &Path, offset: u64) -> Error {
    Error::corrupt(
        path,
        offset,
        format!("chunk cells do not decode as {}", T::DTYPE),
    )
}

/// `cells` (as many as `shape` has) as an array of `shape`.
fn array_of<T>(cells: Vec<T>, shape: &[u64]) -> ArrayD<T> {
    if shape.len() == 1 {
        // The common case of a profile, without building a dynamic shape
        // from a slice (measurable per array in a scan of small arrays).
        return ndarray::Array1::from_vec(cells).into_dyn();
    }
    let dims: Vec<usize> = shape.iter().map(|&s| s as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&dims), cells).expect("cell count matches shape")
}

/// One committed block decoded into an array of `shape`: the checksum, the
/// codec into `bufs`, then the cells. Byte-shuffled cells are unshuffled as
/// they are converted, so a small block is copied once after the codec;
/// the errors are those of [`decode_checked_into`] then [`cells_array`].
pub(super) fn decode_entry_array<T: ArrayElement>(
    stored: &[u8],
    e: &ChunkEntry,
    shape: &[u64],
    path: &Path,
    bufs: &mut DecodeBuffers,
) -> Result<ArrayD<T>> {
    let width = T::DTYPE.size_bytes().unwrap_or(0);
    if e.filter != FILTER_SHUFFLE || width <= 1 {
        decode_checked_into(
            stored, e.crc, e.codec, e.filter, width, e.raw_len, path, e.offset, bufs,
        )?;
        return cells_array(&bufs.out, shape, path, e.offset);
    }
    decompress_shuffled(stored, e, width, path, bufs)?;
    let n: u64 = shape.iter().product();
    if let Some(cells) = usize::try_from(n)
        .ok()
        .and_then(|n| T::decode_shuffled(&bufs.out, n))
    {
        return Ok(array_of(cells, shape));
    }
    // Cells that do not fill the block: the general path says so.
    unshuffle_buffers(bufs, width);
    cells_array(&bufs.out, shape, path, e.offset)
}

/// [`decode_entry_array`] into a copy of `template`, an array of `shape`:
/// a scan of thousands of small arrays of one shape clones one array per
/// block, where building each array's dynamic shape from a slice cost more
/// than decoding its cells. The result and errors are
/// `decode_entry_array`'s (blocks that do not decode straight into the copy
/// take its path).
pub(super) fn decode_entry_like<T: ArrayElement>(
    stored: &[u8],
    e: &ChunkEntry,
    shape: &[u64],
    template: &ArrayD<T>,
    path: &Path,
    bufs: &mut DecodeBuffers,
) -> Result<ArrayD<T>> {
    let width = T::DTYPE.size_bytes().unwrap_or(0);
    if e.filter == FILTER_SHUFFLE && width > 1 {
        decompress_shuffled(stored, e, width, path, bufs)?;
        let mut a = template.clone();
        if let Some(dst) = a.as_slice_mut() {
            if T::fill_shuffled(&bufs.out, dst) {
                return Ok(a);
            }
        }
    }
    decode_entry_array(stored, e, shape, path, bufs)
}

/// [`decode_entry_array`] appending the block's `n` cells to `out` (a
/// stacked read): byte-shuffled cells go from the codec's output straight
/// into `out`; the errors are the same, and `out` is unchanged on error.
pub(super) fn decode_entry_extend<T: ArrayElement>(
    stored: &[u8],
    e: &ChunkEntry,
    n: usize,
    path: &Path,
    bufs: &mut DecodeBuffers,
    out: &mut Vec<T>,
) -> Result<()> {
    let width = T::DTYPE.size_bytes().unwrap_or(0);
    if e.filter == FILTER_SHUFFLE && width > 1 {
        decompress_shuffled(stored, e, width, path, bufs)?;
        if T::extend_shuffled(&bufs.out, n, out) {
            return Ok(());
        }
        // Cells that do not fill the block: the general path says so.
        unshuffle_buffers(bufs, width);
    } else {
        decode_checked_into(
            stored, e.crc, e.codec, e.filter, width, e.raw_len, path, e.offset, bufs,
        )?;
    }
    let mut cells =
        decode_cells::<T>(&bufs.out, n).ok_or_else(|| cells_error::<T>(path, e.offset))?;
    out.append(&mut cells);
    Ok(())
}

/// The checksum and the codec of a byte-shuffled block of `width`-byte
/// cells into `bufs.out` (still shuffled); its length must hold whole cells.
fn decompress_shuffled(
    stored: &[u8],
    e: &ChunkEntry,
    width: usize,
    path: &Path,
    bufs: &mut DecodeBuffers,
) -> Result<()> {
    let raw_len = decompress_checked(stored, e.crc, e.codec, e.raw_len, path, e.offset, bufs)?;
    if !raw_len.is_multiple_of(width) {
        return Err(decode_error(
            filter_error(e.filter, raw_len, width),
            path,
            e.offset,
        ));
    }
    Ok(())
}

/// A codec error of the block at `offset` of `path` as this crate's error.
fn decode_error(e: DecodeError, path: &Path, offset: u64) -> Error {
    match e {
        DecodeError::Damaged(reason) => Error::corrupt(path, offset, reason),
        DecodeError::Unavailable { codec, feature } => Error::CodecUnavailable {
            path: path.to_owned(),
            codec,
            feature,
        },
    }
}

/// The stored (still compressed) bytes of one block.
pub(super) fn read_stored(layer: &Layer, e: &ChunkEntry) -> Result<Vec<u8>> {
    layer
        .handle
        .read_vec_at(e.offset, to_usize(e.stored_len, &layer.path, e.offset)?)
}

/// Decodes the stored bytes of one committed block (checksum, codec, filter).
pub(super) fn decode_entry(
    stored: &[u8],
    e: &ChunkEntry,
    width: usize,
    path: &Path,
) -> Result<Vec<u8>> {
    decode_checked(
        stored, e.crc, e.codec, e.filter, width, e.raw_len, path, e.offset,
    )
}

pub(super) fn to_usize(n: u64, path: &Path, offset: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::corrupt(path, offset, "block larger than memory"))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn decode_checked(
    stored: &[u8],
    crc: u32,
    codec: u8,
    filter: u8,
    width: usize,
    raw_len: u64,
    path: &Path,
    offset: u64,
) -> Result<Vec<u8>> {
    if filter == FILTER_SHUFFLE && width > 1 {
        // The codec's output is only an intermediate here: it goes to this
        // thread's reused buffer, and the result is the one fresh buffer.
        return with_scratch(|bufs| {
            let raw_len = decompress_checked(stored, crc, codec, raw_len, path, offset, bufs)?;
            if !raw_len.is_multiple_of(width) {
                return Err(decode_error(
                    filter_error(filter, raw_len, width),
                    path,
                    offset,
                ));
            }
            let mut out = Vec::new();
            unshuffle_into(&bufs.out, width, &mut out);
            Ok(out)
        });
    }
    let mut bufs = DecodeBuffers::default();
    decode_checked_into(
        stored, crc, codec, filter, width, raw_len, path, offset, &mut bufs,
    )?;
    Ok(bufs.out)
}

/// Largest buffer a thread keeps between decodes (a block larger than this
/// gets fresh buffers, freed after it).
const SCRATCH_KEEP_BYTES: usize = 4 << 20;

/// Runs `f` with this thread's reusable decode buffers (fresh ones when the
/// thread's are in use further up the stack). Buffers grown past
/// [`SCRATCH_KEEP_BYTES`] are not kept.
pub(super) fn with_scratch<R>(f: impl FnOnce(&mut DecodeBuffers) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<DecodeBuffers> =
            std::cell::RefCell::new(DecodeBuffers::default());
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let r = f(&mut bufs);
            bufs.trim(SCRATCH_KEEP_BYTES);
            r
        }
        Err(_) => f(&mut DecodeBuffers::default()),
    })
}

/// [`decode_checked`] into `bufs.out`, reusing the buffers' memory.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_checked_into(
    stored: &[u8],
    crc: u32,
    codec: u8,
    filter: u8,
    width: usize,
    raw_len: u64,
    path: &Path,
    offset: u64,
    bufs: &mut DecodeBuffers,
) -> Result<()> {
    let raw_len = decompress_checked(stored, crc, codec, raw_len, path, offset, bufs)?;
    undo_filter(filter, width, raw_len, bufs).map_err(|e| decode_error(e, path, offset))
}

/// The checksum, then the codec into `bufs.out` (still filtered); the raw
/// length on success.
fn decompress_checked(
    stored: &[u8],
    crc: u32,
    codec: u8,
    raw_len: u64,
    path: &Path,
    offset: u64,
    bufs: &mut DecodeBuffers,
) -> Result<usize> {
    if crc32c::crc32c(stored) != crc {
        return Err(Error::corrupt(path, offset, "block checksum mismatch"));
    }
    let raw_len = to_usize(raw_len, path, offset)?;
    decompress_into(stored, codec, raw_len, bufs).map_err(|e| decode_error(e, path, offset))?;
    Ok(raw_len)
}
