//! The pending (unflushed) layer: chunks written since the last flush.
//!
//! Chunks are held compressed. Past the memory budget they move to a scratch
//! file in the array directory, so pending data never grows RAM without bound.
//! The scratch file is never named by any registry, so after a crash it is
//! garbage like any other unnamed file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
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
    Scratch { offset: u64, len: u64 },
}

#[derive(Debug)]
pub(crate) struct PendingChunk {
    pub data: PendingData,
    pub meta: BlockMeta,
}

#[derive(Debug)]
pub(crate) struct PendingArray {
    /// `Update` (on top of the committed array), `Define` (replaces it) or `Delete`.
    pub kind: RecordKind,
    /// `None` only for `Delete`.
    pub schema: Option<ArraySchema>,
    pub chunks: BTreeMap<u64, PendingChunk>,
}

#[derive(Debug)]
struct Scratch {
    handle: Box<dyn WriteHandle>,
    path: PathBuf,
    storage: Arc<dyn Storage>,
}

impl Drop for Scratch {
    /// The scratch file lives exactly as long as some pending chunk is in it.
    fn drop(&mut self) {
        // Best effort: an unnamed file is garbage the store's writer removes later.
        let _ = self.storage.remove_file(&self.path);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub arrays: IndexMap<String, PendingArray>,
    scratch: Mutex<Option<Scratch>>,
    mem_bytes: u64,
    /// Pending chunks stored in the scratch file; the file goes when this drops to 0.
    scratch_chunks: u64,
    /// Bumped on every mutation, so a prepared layer can tell it is still current.
    pub generation: u64,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.arrays.is_empty()
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
            PendingData::Mem(b) => self.mem_bytes -= b.len() as u64,
            PendingData::Scratch { .. } => {
                self.scratch_chunks -= 1;
                if self.scratch_chunks == 0 {
                    *self.scratch.lock() = None;
                }
            }
        }
    }

    /// Sets the record for `name`, dropping any pending chunks it had.
    pub(crate) fn set_record(&mut self, name: &str, kind: RecordKind, schema: Option<ArraySchema>) {
        self.touch();
        if let Some(old) = self.arrays.shift_remove(name) {
            for c in old.chunks.values() {
                self.forget(c);
            }
        }
        self.arrays.insert(
            name.to_owned(),
            PendingArray {
                kind,
                schema,
                chunks: BTreeMap::new(),
            },
        );
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
        budget_bytes: u64,
        storage: &Arc<dyn Storage>,
        dir: &Path,
    ) -> Result<()> {
        self.touch();
        // Replaced versions stay accounted for until the write is known to stick.
        let mut replaced: Vec<(u64, Option<PendingChunk>)> = Vec::with_capacity(chunks.len());
        for (idx, stored, meta) in chunks {
            self.mem_bytes += stored.len() as u64;
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
        if self.mem_bytes > budget_bytes {
            if let Err(e) = self.spill(storage, dir) {
                for (idx, prev) in replaced.into_iter().rev() {
                    let arr = self.arrays.get_mut(name).expect("record set before chunks");
                    let new = match prev {
                        Some(p) => arr.chunks.insert(idx, p),
                        None => arr.chunks.remove(&idx),
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

    /// Moves every in-memory chunk to the scratch file.
    fn spill(&mut self, storage: &Arc<dyn Storage>, dir: &Path) -> Result<()> {
        let mut guard = self.scratch.lock();
        if guard.is_none() {
            let path = dir.join(format!("scratch-{:032x}.tmp", crate::file::random_uid()));
            let handle = storage.create_new(&path)?;
            *guard = Some(Scratch {
                handle,
                path,
                storage: Arc::clone(storage),
            });
        }
        let scratch = guard.as_mut().expect("created above");
        for arr in self.arrays.values_mut() {
            for c in arr.chunks.values_mut() {
                if let PendingData::Mem(bytes) = &c.data {
                    let offset = scratch.handle.position();
                    scratch.handle.append(bytes)?;
                    let len = bytes.len() as u64;
                    self.mem_bytes -= len;
                    self.scratch_chunks += 1;
                    c.data = PendingData::Scratch { offset, len };
                }
            }
        }
        Ok(())
    }

    /// The stored bytes of a pending chunk.
    pub(crate) fn stored_bytes(&self, chunk: &PendingChunk) -> Result<Vec<u8>> {
        match &chunk.data {
            PendingData::Mem(b) => Ok(b.clone()),
            PendingData::Scratch { offset, len } => {
                let mut guard = self.scratch.lock();
                let s = guard.as_mut().expect("scratch exists for spilled chunks");
                let mut buf = vec![0u8; *len as usize];
                s.handle.read_exact_at(*offset, &mut buf)?;
                Ok(buf)
            }
        }
    }

    /// Clears everything (after a successful flush) and removes the scratch file.
    pub(crate) fn clear(&mut self) {
        self.arrays.clear();
        self.mem_bytes = 0;
        self.scratch_chunks = 0;
        self.touch();
        // Dropping the scratch handle removes the file.
        *self.scratch.lock() = None;
    }
}
