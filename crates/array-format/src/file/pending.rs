//! The pending (unflushed) layer: chunks written since the last flush.
//!
//! Chunks are held compressed. Past the memory budget they move to a scratch
//! file in the array directory, so pending data never grows RAM without bound.
//! The scratch file is never named by any registry, so after a crash it is
//! garbage like any other unnamed file.
//!
//! **Invariant:** a scratch file whose append failed is *poisoned*: nothing is
//! appended to it again (a partial write leaves its length unknown, so later
//! offsets would drift); the next spill starts a new file. Bytes read back
//! from a scratch file are checked against the chunk's CRC-32C before they are
//! decoded or copied into a layer, so a lost spill is an error, never a
//! corrupt block committed under a valid checksum.

use super::chunk_map::ChunkMap;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::layer::BlockMeta;
use crate::layer::RecordKind;
use crate::schema::ArraySchema;
use crate::storage::{Storage, WriteHandle};

/// Where a pending chunk's stored bytes are.
#[derive(Debug)]
pub(crate) enum PendingData {
    Mem(Vec<u8>),
    Scratch { file: usize, offset: u64, len: u64 },
}

#[derive(Debug)]
pub(crate) struct PendingChunk {
    pub data: PendingData,
    pub meta: BlockMeta,
}

impl PendingChunk {
    /// True when its bytes are in memory, not in a scratch file.
    pub(crate) fn is_in_memory(&self) -> bool {
        matches!(self.data, PendingData::Mem(_))
    }
}

#[derive(Debug)]
pub(crate) struct PendingArray {
    /// `Update` (on top of the committed array), `Define` (replaces it) or `Delete`.
    pub kind: RecordKind,
    /// `None` only for `Delete`. Shared with the layer footer a flush
    /// writes and the index it installs (no copy per array).
    pub schema: Option<Arc<ArraySchema>>,
    pub chunks: ChunkMap<PendingChunk>,
}

#[derive(Debug)]
struct Scratch {
    handle: Box<dyn WriteHandle>,
    path: PathBuf,
    storage: Arc<dyn Storage>,
    /// Pending chunks stored here; the file goes when this drops to 0.
    n_chunks: u64,
    /// An append failed: never append again.
    poisoned: bool,
}

impl Drop for Scratch {
    /// The scratch file lives exactly as long as some pending chunk is in it.
    fn drop(&mut self) {
        // Best effort: an unnamed file is garbage the store's writer removes later.
        let _ = self.storage.remove_file(&self.path);
    }
}

/// A memory budget for pending chunk bytes, shared by every array file of a
/// store (or private to one file): a 64-variable import holds at most about one
/// budget in memory, not 64.
///
/// When a write takes the shared total over the limit, the writing file spills
/// all of its in-memory chunks to its scratch file, so the total stays within
/// the limit plus one write per file.
#[derive(Debug)]
pub struct PendingBudget {
    limit_bytes: u64,
    used_bytes: AtomicU64,
}

impl PendingBudget {
    /// A budget of `limit_bytes` in memory.
    pub fn new(limit_bytes: u64) -> Self {
        PendingBudget {
            limit_bytes,
            used_bytes: AtomicU64::new(0),
        }
    }

    /// The limit.
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Pending bytes held in memory by every file sharing this budget.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.used_bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: u64) {
        self.used_bytes.fetch_sub(n, Ordering::Relaxed);
    }

    fn over(&self) -> bool {
        self.used_bytes() > self.limit_bytes
    }
}

impl Default for PendingBudget {
    fn default() -> Self {
        PendingBudget::new(u64::MAX)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The (possibly shared) budget `mem_bytes` counts against.
    budget: Arc<PendingBudget>,
    pub arrays: super::NameMap<PendingArray>,
    /// Scratch files by index (`PendingData::Scratch::file`); `None` once empty.
    scratch: Mutex<Vec<Option<Scratch>>>,
    mem_bytes: u64,
    /// Bumped on every mutation, so a prepared layer can tell it is still current.
    pub generation: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.budget.sub(self.mem_bytes);
    }
}

impl Pending {
    /// Empty, counting against `budget`.
    pub(crate) fn with_budget(budget: Arc<PendingBudget>) -> Self {
        let mut p = Pending::default();
        p.budget = budget;
        p
    }

    /// Moves this pending layer's memory to another budget.
    pub(crate) fn set_budget(&mut self, budget: Arc<PendingBudget>) {
        self.budget.sub(self.mem_bytes);
        budget.add(self.mem_bytes);
        self.budget = budget;
    }

    fn add_mem(&mut self, n: u64) {
        self.mem_bytes += n;
        self.budget.add(n);
    }

    fn sub_mem(&mut self, n: u64) {
        self.mem_bytes -= n;
        self.budget.sub(n);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.arrays.is_empty()
    }

    /// True when `n` more bytes in memory keep the (shared) budget within
    /// its limit, so storing them would not spill.
    pub(crate) fn has_room(&self, n: u64) -> bool {
        self.budget
            .used_bytes()
            .checked_add(n)
            .is_some_and(|total| total <= self.budget.limit_bytes())
    }

    /// Bytes of pending chunks held in memory.
    pub(crate) fn mem_bytes(&self) -> u64 {
        self.mem_bytes
    }

    pub(crate) fn touch(&mut self) {
        self.generation += 1;
    }

    fn forget(&mut self, chunk: &PendingChunk) {
        match &chunk.data {
            PendingData::Mem(b) => self.sub_mem(b.len() as u64),
            PendingData::Scratch { file, .. } => {
                let mut files = self.scratch.lock();
                let slot = &mut files[*file];
                let s = slot.as_mut().expect("a scratch file outlives its chunks");
                s.n_chunks -= 1;
                if s.n_chunks == 0 {
                    // Dropping the handle removes the file.
                    *slot = None;
                }
            }
        }
    }

    /// Sets the record for `name`, dropping any pending chunks it had.
    pub(crate) fn set_record(
        &mut self,
        name: &str,
        kind: RecordKind,
        schema: Option<Arc<ArraySchema>>,
    ) {
        self.touch();
        let record = |schema| PendingArray {
            kind,
            schema,
            chunks: ChunkMap::new(),
        };
        // A name with nothing pending (the usual definition) is hashed once.
        let old = match self.arrays.entry(name.to_owned()) {
            indexmap::map::Entry::Vacant(v) => {
                v.insert(record(schema));
                return;
            }
            indexmap::map::Entry::Occupied(o) => o.shift_remove(),
        };
        for c in old.chunks.values() {
            self.forget(c);
        }
        // At the end, as a new name would be.
        self.arrays.insert(name.to_owned(), record(schema));
    }

    /// Drops every pending change to `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.touch();
        if let Some(old) = self.arrays.shift_remove(name) {
            for c in old.chunks.values() {
                self.forget(c);
            }
        }
    }

    /// Stores the chunks of one write (replacing earlier pending versions) and
    /// spills to the scratch file when over budget. All or nothing: if the
    /// spill fails, the earlier versions are restored and the error returned.
    pub(crate) fn put_chunks(
        &mut self,
        name: &str,
        chunks: Vec<(u64, Vec<u8>, BlockMeta)>,
        created_record: bool,
        storage: &Arc<dyn Storage>,
        dir: &Path,
    ) -> Result<()> {
        self.touch();
        // Replaced versions stay accounted for until the write is known to stick.
        let mut replaced: Vec<(u64, Option<PendingChunk>)> = Vec::with_capacity(chunks.len());
        for (idx, stored, meta) in chunks {
            self.add_mem(stored.len() as u64);
            let arr = self.arrays.get_mut(name).expect("record set before chunks");
            let prev = arr.chunks.insert(
                idx,
                PendingChunk {
                    data: PendingData::Mem(stored),
                    meta,
                },
            );
            replaced.push((idx, prev));
        }
        if self.budget.over() {
            if let Err(e) = self.spill(storage, dir) {
                for (idx, prev) in replaced.into_iter().rev() {
                    let arr = self.arrays.get_mut(name).expect("record set before chunks");
                    let new = match prev {
                        Some(p) => arr.chunks.insert(idx, p),
                        None => arr.chunks.remove(idx),
                    }
                    .expect("inserted above");
                    self.forget(&new);
                }
                if created_record {
                    self.arrays.shift_remove(name);
                }
                return Err(e);
            }
        }
        for (_, prev) in replaced {
            if let Some(p) = prev {
                self.forget(&p);
            }
        }
        Ok(())
    }

    /// Moves every in-memory chunk to the scratch file. A failed append
    /// poisons the file; chunks moved before the failure stay where they are
    /// (their bytes are checked on read-back).
    fn spill(&mut self, storage: &Arc<dyn Storage>, dir: &Path) -> Result<()> {
        let mut files = self.scratch.lock();
        let live = files
            .iter()
            .rposition(|f| f.as_ref().is_some_and(|s| !s.poisoned));
        let current = if let Some(i) = live {
            i
        } else {
            // Object stores keep scratch data on local disk.
            let (storage, dir) = storage
                .scratch_location(dir)
                .unwrap_or_else(|| (Arc::clone(storage), dir.to_owned()));
            let path = dir.join(format!("scratch-{:032x}.tmp", crate::file::random_uid()));
            let handle = storage.create_new(&path)?;
            files.push(Some(Scratch {
                handle,
                path,
                storage,
                n_chunks: 0,
                poisoned: false,
            }));
            files.len() - 1
        };
        let scratch = files[current].as_mut().expect("live scratch file");
        for arr in self.arrays.values_mut() {
            for c in arr.chunks.values_mut() {
                if let PendingData::Mem(bytes) = &c.data {
                    let offset = scratch.handle.position();
                    if let Err(e) = scratch.handle.append(bytes) {
                        scratch.poisoned = true;
                        return Err(e);
                    }
                    let len = bytes.len() as u64;
                    self.mem_bytes -= len;
                    self.budget.sub(len);
                    scratch.n_chunks += 1;
                    c.data = PendingData::Scratch {
                        file: current,
                        offset,
                        len,
                    };
                }
            }
        }
        if scratch.n_chunks == 0 {
            files[current] = None;
        }
        Ok(())
    }

    /// The stored bytes of a pending chunk (borrowed when in memory, so a
    /// flush copies each chunk once, into the layer); bytes read back from a
    /// scratch file must match the chunk's CRC-32C.
    pub(crate) fn stored_bytes<'a>(&self, chunk: &'a PendingChunk) -> Result<Cow<'a, [u8]>> {
        match &chunk.data {
            PendingData::Mem(b) => Ok(Cow::Borrowed(b)),
            PendingData::Scratch { file, offset, len } => {
                let mut files = self.scratch.lock();
                let s = files[*file]
                    .as_mut()
                    .expect("scratch exists for spilled chunks");
                let len = usize::try_from(*len).expect("a spilled chunk fitted in memory");
                let mut buf = vec![0u8; len];
                s.handle.read_exact_at(*offset, &mut buf)?;
                if crc32c::crc32c(&buf) != chunk.meta.crc {
                    return Err(crate::Error::corrupt(
                        &s.path,
                        *offset,
                        "a spilled pending chunk does not match its checksum \
                         (an earlier write to the scratch file failed); the unflushed \
                         changes are lost, reopen the store",
                    ));
                }
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// Clears everything (after a successful flush) and removes the scratch file.
    pub(crate) fn clear(&mut self) {
        self.arrays.clear();
        self.budget.sub(self.mem_bytes);
        self.mem_bytes = 0;
        self.touch();
        // Dropping the scratch handles removes the files.
        self.scratch.lock().clear();
    }
}
