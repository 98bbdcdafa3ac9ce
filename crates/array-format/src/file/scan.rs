//! [`Scan`]: one hyperslab of many arrays, read in one pass per thread.
//!
//! A scan of one variable across every dataset reads thousands of small
//! arrays, each one block of a few hundred bytes: any per-array cost (a name
//! hashed again, a vector built and thrown away, an allocation in the
//! decoder) weighs as much as decoding the block. So each name is resolved
//! once (by position when the names come in the index's order, hashed
//! otherwise), the caller sees every schema before any block is read, and
//! each thread decodes a contiguous part of the names with one set of
//! reusable decoder buffers.
//!
//! **Invariant:** the result does not depend on the number of threads: parts
//! are contiguous, each result is computed from its own array alone, and the
//! parts are concatenated in order.

use std::ops::Range;

use rayon::prelude::*;

use super::read::{decode_entry_array, decode_entry_extend, decode_entry_like};
use super::{
    ArrayD, ArrayElement, ArrayFile, ArraySchema, Committed, Loc, Path, Result, Source, View,
};
use crate::codec::DecodeBuffers;

/// Below this many names the whole file index is not built: each name's
/// state is built alone from the footers.
const BUILD_INDEX_FROM: usize = 64;
/// Fewest arrays a parallel part of a scan is given (a task costs about as
/// much as decoding a few dozen small blocks); callers that split a scan
/// themselves use it too.
pub const SCAN_MIN_PART: usize = 256;
/// Blocks closer than this are fetched in one read (the gap is read too).
const MAX_GAP_BYTES: u64 = 64 << 10;
/// Largest single read.
const MAX_READ_BYTES: u64 = 8 << 20;
/// The stored bytes a scan fetches at a time from files that read cheaply
/// ([`crate::storage::ReadHandle::reads_cheaply`]): its read buffers are
/// then reused (see [`SPARE_BYTES`]) and still in the CPU's caches when
/// their blocks are decoded.
const SCAN_WINDOW_BYTES: u64 = 1 << 20;
/// Whole arrays smaller than this are decoded into a copy of a template
/// array of their shape: for thousands of small arrays, building a shape
/// per array cost more than their cells. Larger ones are decoded into new
/// memory: copying a 32 KiB template only to overwrite it was a tenth of a
/// scan of 2,000 such arrays.
const LIKE_MAX_BYTES: u64 = 4096;

/// How one name resolved.
enum Resolved<'a> {
    Found(View<'a>),
    Absent,
    /// Its committed records could not be read; the per-name paths report why.
    Failed,
}

/// Many arrays of one [`ArrayFile`], each resolved once: their schemas, then
/// one hyperslab of all of them read in parallel. See [`ArrayFile::scan`].
pub struct Scan<'a> {
    file: &'a ArrayFile,
    names: Vec<&'a str>,
    resolved: Vec<Resolved<'a>>,
}

impl std::fmt::Debug for Scan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan")
            .field("dir", &self.file.dir)
            .field("n_arrays", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl ArrayFile {
    /// Resolves `names` for a scan. From 64 names on, the whole index of the
    /// committed layers is built first (every footer block read once, as a
    /// listing does), and its error, if any, is returned; below, each name's
    /// state is built alone. Names are found by position when they come in
    /// listing order, by hash otherwise.
    pub fn scan<'a>(&'a self, names: &[&'a str]) -> Result<Scan<'a>> {
        if names.len() >= BUILD_INDEX_FROM {
            self.all()?;
        }
        Ok(self.scan_resolved(names))
    }

    /// True when [`ArrayFile::scan`] of `names` names has nothing to build
    /// first (fewer than 64 names, or the whole index already built).
    pub fn scan_ready(&self, names: usize) -> bool {
        names < BUILD_INDEX_FROM || self.index.all.get().is_some()
    }

    /// Builds now what [`ArrayFile::scan`] of `names` names would build
    /// first (the whole index of the committed layers, from 64 names): a
    /// caller that splits a scan into parts calls this once before them,
    /// rather than have one part build it while the others wait for it.
    /// An error here is the one the scan returns.
    pub fn prepare_scan(&self, names: usize) -> Result<()> {
        if !self.scan_ready(names) {
            self.all()?;
        }
        Ok(())
    }

    /// [`ArrayFile::scan`] without building the whole index first: a name
    /// whose records cannot be read resolves as failed, and reading it gives
    /// the error.
    pub(super) fn scan_resolved<'a>(&'a self, names: &[&'a str]) -> Scan<'a> {
        let all = self.index.all.get();
        let mut next = 0usize;
        let mut committed = |name: &str| -> Result<Option<&'a Committed>> {
            let Some(all) = all else {
                return self.committed(name);
            };
            if let Some((k, c)) = all.get_index(next) {
                if crate::same_bytes(k.as_bytes(), name.as_bytes()) {
                    next += 1;
                    return Ok(Some(c));
                }
            }
            Ok(all.get_full(name).map(|(i, _, c)| {
                next = i + 1;
                c
            }))
        };
        let resolved = names
            .iter()
            .map(|&name| match self.view_with(name, || committed(name)) {
                Ok(Some(view)) => Resolved::Found(view),
                Ok(None) => Resolved::Absent,
                Err(_) => Resolved::Failed,
            })
            .collect();
        Scan {
            file: self,
            names: names.to_vec(),
            resolved,
        }
    }
}

impl<'a> Scan<'a> {
    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name was given.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The schema of the `k`-th name (as [`ArrayFile::try_schema`]).
    pub fn try_schema(&self, k: usize) -> Result<Option<&'a ArraySchema>> {
        match &self.resolved[k] {
            Resolved::Found(view) => Ok(Some(view.schema)),
            Resolved::Absent => Ok(None),
            Resolved::Failed => self.file.try_schema(self.names[k]),
        }
    }

    /// The file that gave the `k`-th name its schema (as
    /// [`ArrayFile::schema_origin`]).
    pub fn schema_origin(&self, k: usize) -> Option<&'a Path> {
        self.file.schema_origin(self.names[k])
    }

    /// Reads the same hyperslab of every name (empty `start` and `count`:
    /// whole arrays) on up to `threads` threads, each reading its
    /// contiguous part of the names in one pass over the file (blocks sorted
    /// by position, neighbours fetched together) without filling the cache.
    /// One result per name, in order, whatever the number of threads.
    pub fn read<T: ArrayElement>(
        &self,
        start: &[u64],
        count: &[u64],
        threads: usize,
    ) -> Vec<Result<ArrayD<T>>> {
        let n = self.names.len();
        let per = n.div_ceil(threads.max(1)).max(SCAN_MIN_PART);
        if n <= per {
            return self.read_part::<T>(0..n, start, count);
        }
        // On rayon's pool of persistent threads: contiguous parts, results
        // collected in part order.
        let parts: Vec<Range<usize>> = (0..n).step_by(per).map(|a| a..(a + per).min(n)).collect();
        let done: Vec<Vec<Result<ArrayD<T>>>> = parts
            .into_par_iter()
            .map(|part| self.read_part::<T>(part, start, count))
            .collect();
        done.into_iter().flatten().collect()
    }

    /// The stored bytes [`Scan::fetch_part`] fetches at a time:
    /// [`SCAN_WINDOW_BYTES`] when every layer reads cheaply, otherwise no
    /// limit (an object store's ranges are asked for all at once).
    fn window_bytes(&self) -> u64 {
        let cheap = self.file.layers.iter().all(|l| l.handle.reads_cheaply());
        if cheap {
            SCAN_WINDOW_BYTES
        } else {
            u64::MAX
        }
    }

    /// The one committed block holding all of the `k`-th array, when the
    /// read is of the whole array, the array is one chunk, and no pending
    /// write changed it: the common case of a scan, served without
    /// enumerating chunks or building regions.
    fn whole_block(&self, k: usize, start: &[u64], count: &[u64]) -> Option<&'a Loc> {
        let Resolved::Found(view) = &self.resolved[k] else {
            return None;
        };
        let s = view.schema;
        let whole = (start.is_empty() && count.is_empty())
            || (start.len() == s.rank()
                && start.iter().all(|&x| x == 0)
                && count == s.shape.as_slice());
        let one_chunk = s.shape.iter().zip(&s.chunk_shape).all(|(&n, &c)| n <= c);
        if !whole || !one_chunk || s.shape.contains(&0) || view.pending.is_some() {
            return None;
        }
        match view.source(0)? {
            Source::Layer(loc) => Some(loc),
            Source::Pending(_) => None,
        }
    }

    /// Reads the names in `part`: first every committed block they need, in
    /// a few coalesced reads, then each array.
    fn read_part<T: ArrayElement>(
        &self,
        part: Range<usize>,
        start: &[u64],
        count: &[u64],
    ) -> Vec<Result<ArrayD<T>>> {
        let mut bufs = DecodeBuffers::default();
        let mut out = Vec::with_capacity(part.len());
        let mut template: Option<ArrayD<T>> = None;
        let width = T::DTYPE.size_bytes().filter(|&w| w > 1).unwrap_or(0) as u64;
        let mut next = part.start;
        while next < part.end {
            let mut window = self.fetch_part::<T>(next..part.end, start, count);
            next = window.names.end;
            while let Some((k, block)) = window.next() {
                let r = match (block, &self.resolved[k]) {
                    (Some(loc), Resolved::Found(view)) => {
                        let shape = &view.schema.shape;
                        let like = like_template(&mut template, shape, width);
                        window.decode(self.file, loc, shape, like, &mut bufs)
                    }
                    _ => self.read_general(k, start, count, &mut window, &mut bufs),
                };
                out.push(r);
            }
        }
        out
    }

    /// Reads the same hyperslab of every name on this thread, in one pass
    /// over the file as [`Scan::read`] does, appending each one's cells in
    /// row-major order to `out`: a stacked read decodes every array straight
    /// into its place in one buffer, with no array built per name. Stops at
    /// the first name whose read fails: its position among the names, and
    /// the error [`Scan::read`] gives for it (`out` then holds the cells of
    /// the names before it).
    pub fn read_extend<T: ArrayElement>(
        &self,
        start: &[u64],
        count: &[u64],
        out: &mut Vec<T>,
    ) -> std::result::Result<(), (usize, crate::Error)> {
        let mut bufs = DecodeBuffers::default();
        let mut next = 0;
        while next < self.names.len() {
            let mut part = self.fetch_part::<T>(next..self.names.len(), start, count);
            next = part.names.end;
            while let Some((k, block)) = part.next() {
                if let (Some(loc), Resolved::Found(view)) = (block, &self.resolved[k]) {
                    if let Some(stored) = part.stored(loc) {
                        // A whole single-chunk array: its shape is its
                        // chunk's, with no zero extent, and its cells fit
                        // memory.
                        let n = view.schema.shape.iter().product::<u64>() as usize;
                        let layer = &self.file.layers[loc.layer as usize];
                        decode_entry_extend(stored, &loc.entry, n, &layer.path, &mut bufs, out)
                            .map_err(|e| (k, e))?;
                        continue;
                    }
                }
                let a = match (block, &self.resolved[k]) {
                    (Some(loc), Resolved::Found(view)) => {
                        part.decode(self.file, loc, &view.schema.shape, None, &mut bufs)
                    }
                    _ => self.read_general(k, start, count, &mut part, &mut bufs),
                }
                .map_err(|e| (k, e))?;
                // In logical (row-major) order: a slice's copy when
                // contiguous.
                out.extend(a.iter().cloned());
            }
        }
        Ok(())
    }

    /// The `k`-th name's hyperslab by the general path (any region, several
    /// chunks, pending writes), its committed blocks taken from `part`.
    fn read_general<T: ArrayElement>(
        &self,
        k: usize,
        start: &[u64],
        count: &[u64],
        part: &mut Part<'a>,
        bufs: &mut DecodeBuffers,
    ) -> Result<ArrayD<T>> {
        let file = self.file;
        file.read_with(self.names[k], start, count, None, |src, cshape| match src {
            Source::Layer(loc) => part.decode(file, loc, cshape, None, bufs),
            Source::Pending(_) => file.chunk_array(src, cshape, false),
        })
    }

    /// Fetches every committed block the first names of `part` need, in a
    /// few coalesced reads (errors are left to the reads of the arrays): as
    /// many names as [`Scan::window_bytes`] of blocks allows, one at least.
    /// The part returned holds those names; the whole-array blocks (the
    /// common case) are remembered per name.
    fn fetch_part<T: ArrayElement>(
        &self,
        part: Range<usize>,
        start: &[u64],
        count: &[u64],
    ) -> Part<'a> {
        let budget = self.window_bytes();
        let part_start = part.start;
        let mut whole: Vec<Option<&'a Loc>> = Vec::new();
        let mut wanted: Vec<(u32, u64, u64)> = Vec::new();
        let mut bytes = 0u64;
        let mut end = part.start;
        for k in part {
            if bytes >= budget {
                break;
            }
            end = k + 1;
            let block = self
                .whole_block(k, start, count)
                .filter(|_| view_dtype(&self.resolved[k]) == Some(T::DTYPE));
            whole.push(block);
            if let Some(loc) = block {
                wanted.push((loc.layer, loc.entry.offset, loc.entry.stored_len));
                bytes = bytes.saturating_add(loc.entry.stored_len);
                continue;
            }
            let Resolved::Found(view) = &self.resolved[k] else {
                continue;
            };
            let schema = view.schema;
            if schema.dtype != T::DTYPE {
                continue;
            }
            let Ok((st, ct)) = schema.resolve_region(self.names[k], start, count) else {
                continue;
            };
            if ct.contains(&0) {
                continue;
            }
            for idx in schema.chunks_touching(&st, &ct) {
                if let Some(Source::Layer(loc)) = view.source(idx) {
                    wanted.push((loc.layer, loc.entry.offset, loc.entry.stored_len));
                    bytes = bytes.saturating_add(loc.entry.stored_len);
                }
            }
        }
        // Blocks of names in listing order usually come sorted already.
        if !wanted.is_sorted() {
            wanted.sort_unstable();
        }
        wanted.dedup();
        let fetched = Fetched::read(self.file, &wanted);
        Part {
            names: part_start..end,
            whole: whole.into_iter(),
            wanted,
            fetched,
            cursor: 0,
        }
    }
}

/// One part of a scan with its committed blocks fetched: the names still to
/// read, each with its whole-array block if it has one.
struct Part<'a> {
    names: Range<usize>,
    whole: std::vec::IntoIter<Option<&'a Loc>>,
    wanted: Vec<(u32, u64, u64)>,
    fetched: Fetched,
    /// Where the previous block was found in `wanted`.
    cursor: usize,
}

impl<'a> Part<'a> {
    /// The next name (its position in the scan) and its whole-array block.
    fn next(&mut self) -> Option<(usize, Option<&'a Loc>)> {
        Some((self.names.next()?, self.whole.next()?))
    }

    /// The stored bytes of `loc`'s block, if it was fetched.
    fn stored(&mut self, loc: &Loc) -> Option<&[u8]> {
        self.fetched.get(&self.wanted, loc, &mut self.cursor)
    }

    /// `loc`'s block decoded into an array of `shape` (into a copy of
    /// `like`, an array of that shape, when given: see
    /// `read::decode_entry_like`): from the fetched bytes, or read alone
    /// when they are not there (the per-chunk path then reports a failed
    /// read properly).
    fn decode<T: ArrayElement>(
        &mut self,
        file: &ArrayFile,
        loc: &Loc,
        shape: &[u64],
        like: Option<&ArrayD<T>>,
        bufs: &mut DecodeBuffers,
    ) -> Result<ArrayD<T>> {
        let Some(stored) = self.fetched.get(&self.wanted, loc, &mut self.cursor) else {
            return file.chunk_array(&Source::Layer(loc), shape, false);
        };
        let path = &file.layers[loc.layer as usize].path;
        match like {
            Some(t) => decode_entry_like(stored, &loc.entry, shape, t, path, bufs),
            None => decode_entry_array(stored, &loc.entry, shape, path, bufs),
        }
    }
}

/// The array that a whole array of `shape` is decoded into a copy of
/// (`read::decode_entry_like`): `template`, rebuilt when the shape changes.
/// `None` (decoded into new memory) for cells that are not fixed-width
/// (`width` 0: strings are not decoded in place) and for arrays of
/// [`LIKE_MAX_BYTES`] or more.
fn like_template<'t, T: ArrayElement>(
    template: &'t mut Option<ArrayD<T>>,
    shape: &[u64],
    width: u64,
) -> Option<&'t ArrayD<T>> {
    let bytes = shape
        .iter()
        .try_fold(width, |n, &d| n.checked_mul(d))
        .unwrap_or(u64::MAX);
    if width == 0 || bytes >= LIKE_MAX_BYTES {
        return None;
    }
    let same = template.as_ref().is_some_and(|t| {
        t.ndim() == shape.len() && t.shape().iter().zip(shape).all(|(&a, &b)| a as u64 == b)
    });
    if !same {
        let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        *template = Some(ArrayD::from_elem(ndarray::IxDyn(&dims), T::default()));
    }
    template.as_ref()
}

fn view_dtype(r: &Resolved<'_>) -> Option<crate::dtype::DType> {
    match r {
        Resolved::Found(v) => Some(v.schema.dtype),
        _ => None,
    }
}

/// The stored bytes of sorted, distinct blocks, fetched with coalesced reads
/// (batched per layer: object stores issue a layer's ranges concurrently).
/// Read buffers a thread keeps between scans (at most [`SPARE_BYTES`] of
/// them): a scan of thousands of small arrays reads a few hundred KiB to a
/// few MiB per part, and fresh buffers each time were zeroed, faulted in,
/// and with glibc made the heap shrink and grow again on every scan.
const SPARE_BYTES: usize = 8 << 20;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct Fetched {
    buffers: Vec<Vec<u8>>,
    /// Per wanted block: its buffer and offset in it; `None` when its read
    /// failed (the per-chunk path then reports the error properly).
    at: Vec<Option<(usize, usize)>>,
}

/// The thread's spare read buffers, taken (give them back with
/// [`give_back_spares`]).
pub(super) fn take_spares() -> Vec<Vec<u8>> {
    SPARE
        .try_with(|s| std::mem::take(&mut *s.borrow_mut()))
        .unwrap_or_default()
}

/// Puts read buffers back among the thread's spares, up to [`SPARE_BYTES`]
/// in all; the rest are freed.
pub(super) fn give_back_spares(buffers: impl IntoIterator<Item = Vec<u8>>) {
    let _ = SPARE.try_with(|s| {
        let mut spare = s.borrow_mut();
        let mut held: usize = spare.iter().map(Vec::capacity).sum();
        for b in buffers {
            if held + b.capacity() <= SPARE_BYTES {
                held += b.capacity();
                spare.push(b);
            }
        }
    });
}

impl Drop for Fetched {
    /// The buffers go back to the thread's spares, up to [`SPARE_BYTES`].
    fn drop(&mut self) {
        if !self.buffers.is_empty() {
            give_back_spares(self.buffers.drain(..));
        }
    }
}

impl Fetched {
    #[allow(clippy::many_single_char_names)] // offsets and lengths of a coalescing loop
    fn read(file: &ArrayFile, wanted: &[(u32, u64, u64)]) -> Fetched {
        let mut groups: Vec<(u32, u64, u64, Range<usize>)> = Vec::new();
        let mut i = 0;
        while i < wanted.len() {
            let (layer, first, len) = wanted[i];
            let mut end = first + len;
            let mut j = i + 1;
            while j < wanted.len() {
                let (l, o, n) = wanted[j];
                if l != layer || o > end + MAX_GAP_BYTES || o + n - first > MAX_READ_BYTES {
                    break;
                }
                end = end.max(o + n);
                j += 1;
            }
            groups.push((layer, first, end, i..j));
            i = j;
        }
        let mut out = Fetched {
            buffers: Vec::new(),
            at: vec![None; wanted.len()],
        };
        let mut g = 0;
        while g < groups.len() {
            let layer = groups[g].0;
            let mut h = g;
            while h < groups.len() && groups[h].0 == layer {
                h += 1;
            }
            let ranges: Option<Vec<(u64, usize)>> = groups[g..h]
                .iter()
                .map(|&(_, first, end, _)| usize::try_from(end - first).ok().map(|n| (first, n)))
                .collect();
            let handle = &file.layers[layer as usize].handle;
            let read = ranges.map(|r| {
                let mut spare = SPARE.with(|s| std::mem::take(&mut *s.borrow_mut()));
                let read = handle.read_ranges_reusing(&r, &mut spare);
                SPARE.with(|s| *s.borrow_mut() = spare);
                read
            });
            if let Some(Ok(bufs)) = read {
                for ((_, first, _, members), buf) in groups[g..h].iter().zip(bufs) {
                    let b = out.buffers.len();
                    for m in members.clone() {
                        out.at[m] = Some((b, (wanted[m].1 - first) as usize));
                    }
                    out.buffers.push(buf);
                }
            }
            g = h;
        }
        out
    }

    /// The stored bytes of `loc`'s block, if it was wanted and read.
    /// `cursor` is where the previous block was found: blocks asked for in
    /// file order are found there or next to it without a search.
    fn get(&self, wanted: &[(u32, u64, u64)], loc: &Loc, cursor: &mut usize) -> Option<&[u8]> {
        let key = (loc.layer, loc.entry.offset, loc.entry.stored_len);
        let m = if wanted.get(*cursor) == Some(&key) {
            *cursor
        } else if wanted.get(*cursor + 1) == Some(&key) {
            *cursor + 1
        } else {
            wanted.binary_search(&key).ok()?
        };
        *cursor = m;
        let (b, at) = self.at[m]?;
        self.buffers[b].get(at..at + usize::try_from(key.2).ok()?)
    }
}
