//! The storage seam: every byte `array-format` and the store read or write goes
//! through [`Storage`].
//!
//! Two backends ship: [`LocalStorage`] (the filesystem) and [`MemoryStorage`]
//! (in memory, with deterministic fault injection for tests).
//!
//! **Invariant:** a [`ReadHandle`] reads the bytes it was opened on or fails:
//! never other bytes. [`MemoryStorage`] handles are snapshots; [`LocalStorage`]
//! handles keep their descriptor unless the bounded descriptor table evicts it,
//! and then reopen the path only if it is still the same file (inode). A file
//! removed while evicted is an error, which is why the store deletes retired
//! files only after a grace period.

mod local;
mod memory;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

pub use local::LocalStorage;
pub use memory::{Fault, FaultKind, MemoryStorage, Op};

use crate::error::Result;

/// An open file for positional reads.
pub trait ReadHandle: Send + Sync + Debug {
    /// Length of the file in bytes when it was opened.
    fn len(&self) -> u64;

    /// True when the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Reads `len` bytes at `offset` into a new buffer.
    fn read_vec_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(offset, &mut buf)?;
        Ok(buf)
    }
}

/// The error of every call on a write handle after one of its writes failed.
pub(crate) fn poisoned_error(path: &Path) -> crate::Error {
    crate::Error::io(
        "write",
        path,
        std::io::Error::other("an earlier write to this file failed; it takes no more writes"),
    )
}

/// A new file being written sequentially (it can also read back what it wrote,
/// which the pending-data scratch file needs).
///
/// **Invariant:** after an `append` or `sync` fails, the handle is poisoned:
/// every later `append` and `sync` fails too. A partial write leaves the file
/// longer than [`WriteHandle::position`] says, so appending more would record
/// wrong offsets; callers start a new file instead.
pub trait WriteHandle: Send + Sync + Debug {
    /// Appends `buf`.
    fn append(&mut self, buf: &[u8]) -> Result<()>;

    /// Bytes appended successfully so far (after a failed append the file may
    /// hold more: part of the failed write).
    fn position(&self) -> u64;

    /// Makes everything appended durable (fsync).
    fn sync(&mut self) -> Result<()>;

    /// Reads back `buf.len()` bytes at `offset` of what was appended.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// A held exclusive lock; released on drop.
pub trait LockGuard: Send + Sync + Debug {}

/// Where files live. Paths are as the caller gives them (absolute for
/// [`LocalStorage`], any for [`MemoryStorage`]).
pub trait Storage: Send + Sync + Debug {
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadHandle>>;

    /// Creates a new file; fails if the path exists (so no path is ever reused).
    fn create_new(&self, path: &Path) -> Result<Box<dyn WriteHandle>>;

    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> Result<()>;

    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> Result<()>;

    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> Result<()>;

    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> Result<()>;

    /// True when a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> Result<bool>;

    /// Names of the entries of a directory (used only for garbage collection and
    /// verification, never to find layers: the registry names them).
    fn list_dir(&self, path: &Path) -> Result<Vec<String>>;

    /// Takes an exclusive lock on `path` (created if missing) without blocking;
    /// `Ok(None)` when another holder has it.
    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>>;

    /// Reads a whole file.
    fn read_all(&self, path: &Path) -> Result<Vec<u8>> {
        let h = self.open_read(path)?;
        let len = usize::try_from(h.len()).map_err(|_| {
            crate::Error::io(
                "read",
                path,
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, "file larger than memory"),
            )
        })?;
        h.read_vec_at(0, len)
    }

    /// Writes a whole new file and fsyncs it (fails if it exists).
    fn write_new_synced(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut h = self.create_new(path)?;
        h.append(bytes)?;
        h.sync()
    }
}
