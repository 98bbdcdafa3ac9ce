//! The local filesystem backend.

mod descriptors;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LockGuard, ReadHandle, Storage, WriteHandle};
use crate::error::{Error, Result};

/// Files on the local filesystem (Unix), with real `fsync`s.
///
/// Read handles share one bounded, process-wide descriptor table: any number
/// of layer files can be open as handles while at most
/// [`LocalStorage::max_open_files`] descriptors are held (a quarter of the
/// soft `ulimit -n` by default, or `ATLAS_MAX_OPEN_FILES`). A handle whose
/// descriptor was evicted reopens its file by path on the next read and checks
/// it is the same file.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalStorage;

impl LocalStorage {
    /// A handle to the local filesystem.
    pub fn new() -> Self {
        LocalStorage
    }

    /// Descriptors the process-wide table may hold.
    pub fn max_open_files() -> usize {
        descriptors::global().capacity()
    }

    /// Sets the process-wide descriptor budget (at least 1), closing the
    /// least recently used descriptors beyond it.
    pub fn set_max_open_files(n: usize) {
        descriptors::global().set_capacity(n);
    }

    /// Descriptors the table holds right now.
    pub fn open_files() -> usize {
        descriptors::global().open_count()
    }
}

struct LocalRead {
    id: u64,
    identity: descriptors::FileIdentity,
    len: u64,
    path: PathBuf,
}

impl std::fmt::Debug for LocalRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRead")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Drop for LocalRead {
    fn drop(&mut self) {
        descriptors::global().remove(self.id);
    }
}

impl ReadHandle for LocalRead {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file = descriptors::global().get(self.id, &self.path, self.identity)?;
        file.read_exact_at(buf, offset)
            .map_err(|e| Error::io("read", &self.path, e))
    }

    fn reads_cheaply(&self) -> bool {
        true
    }

    fn read_ranges_reusing(
        &self,
        ranges: &[(u64, usize)],
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>> {
        super::read_ranges_reusing(self, ranges, spare)
    }

    /// `preadv2` with `RWF_NOWAIT` (Linux 4.14+): the kernel answers from the
    /// page cache or refuses (`EAGAIN`, or a short read when only part is
    /// cached) instead of waiting for the disk. Only a descriptor already
    /// open is used: opening one can wait too. Elsewhere, and on file
    /// systems without the flag, `None`.
    fn read_ranges_nowait(
        &self,
        ranges: &[(u64, usize)],
        spare: &mut Vec<Vec<u8>>,
    ) -> Option<Vec<Vec<u8>>> {
        #[cfg(target_os = "linux")]
        {
            let file = descriptors::global().open_now(self.id)?;
            let mut out: Vec<Vec<u8>> = Vec::with_capacity(ranges.len());
            for &(offset, len) in ranges {
                // A spare buffer is zeroed only where it grows.
                let mut buf = spare.pop().unwrap_or_default();
                buf.resize(len, 0);
                let mut parts = [std::io::IoSliceMut::new(&mut buf)];
                let flags = rustix::io::ReadWriteFlags::NOWAIT;
                match rustix::io::preadv2(&*file, &mut parts, offset, flags) {
                    Ok(n) if n == len => out.push(buf),
                    _ => {
                        spare.push(buf);
                        spare.append(&mut out);
                        return None;
                    }
                }
            }
            Some(out)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (ranges, spare);
            None
        }
    }
}

struct LocalWrite {
    file: File,
    /// Appends not yet written to `file`; from [`WRITE_BUFFERS`], and back
    /// there when the handle drops or releases it. Capacity 0 once
    /// released: appends then go straight to the file.
    buf: Vec<u8>,
    pos: u64,
    path: PathBuf,
    /// An append or flush failed: the file's length is unknown, so nothing
    /// more may be appended (offsets computed from `pos` would drift).
    poisoned: bool,
}

impl std::fmt::Debug for LocalWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The buffer by its length: its bytes would flood a log.
        f.debug_struct("LocalWrite")
            .field("file", &self.file)
            .field("path", &self.path)
            .field("pos", &self.pos)
            .field("buffered", &self.buf.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Bytes a [`LocalWrite`] gathers before it writes them to its file.
const WRITE_BUFFER: usize = 1 << 20;

/// Write buffers kept for the next [`LocalStorage::create_new`].
const KEPT_WRITE_BUFFERS: usize = 4;

/// Write buffers freed by dropped or synced-ahead handles, for the next
/// files. A fresh 1 MiB buffer per file cost a flush of a few small files
/// (a layer, the registry's run, the manifest) a zeroed page from the
/// kernel each, as allocators hand buffers that large back to it on free:
/// under `perf`, about a tenth of an update's CPU time.
static WRITE_BUFFERS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());

/// An empty buffer of [`WRITE_BUFFER`] bytes' capacity, reused if one is kept.
fn take_write_buffer() -> Vec<u8> {
    WRITE_BUFFERS
        .lock()
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER))
}

/// Keeps `buf` for the next file, unless enough are kept.
fn give_back_write_buffer(mut buf: Vec<u8>) {
    if buf.capacity() != WRITE_BUFFER {
        return;
    }
    buf.clear();
    let mut kept = WRITE_BUFFERS.lock();
    if kept.len() < KEPT_WRITE_BUFFERS {
        kept.push(buf);
    }
}

impl LocalWrite {
    /// Writes the buffered bytes to the file; poisons the handle on an error.
    fn flush_buffer(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = r {
            self.poisoned = true;
            return Err(Error::io("write", &self.path, e));
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            return Err(super::poisoned_error(&self.path));
        }
        Ok(())
    }
}

impl WriteHandle for LocalWrite {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        self.check()?;
        if self.buf.len() + buf.len() > self.buf.capacity() {
            self.flush_buffer()?;
        }
        if buf.len() < self.buf.capacity() {
            self.buf.extend_from_slice(buf);
        } else if let Err(e) = self.file.write_all(buf) {
            self.poisoned = true;
            return Err(Error::io("write", &self.path, e));
        }
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn release_buffer(&mut self) -> Result<()> {
        self.check()?;
        self.flush_buffer()?;
        // The buffer kept for the next file: appends from now on go to
        // the file directly.
        give_back_write_buffer(std::mem::take(&mut self.buf));
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.check()?;
        self.flush_buffer()?;
        self.file
            .sync_all()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if !self.poisoned {
            self.flush_buffer()?;
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io("read", &self.path, e))
    }
}

impl Drop for LocalWrite {
    fn drop(&mut self) {
        // As a `BufWriter` would: what was appended reaches the file (best
        // effort; only a sync reports errors).
        if !self.poisoned {
            let _ = self.flush_buffer();
        }
        give_back_write_buffer(std::mem::take(&mut self.buf));
    }
}

#[derive(Debug)]
struct LocalLock {
    _file: File,
}

impl LockGuard for LocalLock {}

impl Storage for LocalStorage {
    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadHandle>> {
        let table = descriptors::global();
        let file = table.open_file(path)?;
        let (identity, len) = descriptors::FileIdentity::of(&file, path)?;
        let id = table.new_id();
        table.insert(id, Arc::new(file));
        Ok(Arc::new(LocalRead {
            id,
            identity,
            len,
            path: path.to_owned(),
        }))
    }

    fn create_new(&self, path: &Path) -> Result<Box<dyn WriteHandle>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(Box::new(LocalWrite {
            file,
            buf: take_write_buffer(),
            pos: 0,
            path: path.to_owned(),
            poisoned: false,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        fs::remove_dir(path).map_err(|e| Error::io("remove directory", path, e))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        fs::create_dir_all(path).map_err(|e| Error::io("create directory", path, e))
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", path, e))
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        path.try_exists().map_err(|e| Error::io("stat", path, e))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| Error::io("list", path, e))? {
            let entry = entry.map_err(|e| Error::io("list", path, e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open lock file", path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(LocalLock { _file: file }))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
        }
    }
}
