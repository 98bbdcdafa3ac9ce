//! An in-memory backend with deterministic fault injection.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{LockGuard, ReadHandle, Storage, WriteHandle};
use crate::error::{Error, Result};

/// A mutating storage operation, as counted for fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `create_new`.
    Create,
    /// `append` on a write handle.
    Write,
    /// `sync` on a write handle.
    Sync,
    /// `rename`.
    Rename,
    /// `remove_file` / `remove_dir`.
    Remove,
    /// `sync_dir`.
    SyncDir,
}

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The operation fails and changes nothing.
    Fail,
    /// A write stores only its first half, then fails (other operations just fail).
    Tear,
    /// Power loss at this operation: the storage drops everything not yet
    /// durable (file bytes not fsynced, directory entries whose directory was
    /// not fsynced) and every later operation fails, as for a machine that
    /// went down, until [`MemoryStorage::power_on`].
    PowerLoss,
    /// A harsher power loss: renames not yet made durable by a directory
    /// fsync persist anyway (as a journal may commit them), while new files
    /// and directories whose entries were never fsynced are lost. Catches a
    /// commit that relies on a later directory fsync to make an earlier
    /// creation durable.
    PowerLossKeepRenames,
}

/// A fault armed on a [`MemoryStorage`]: the `nth` (0-based) mutating operation
/// counted from arming fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which mutating operation (0-based, counting every [`Op`]) fails.
    pub nth: u64,
    /// How it fails.
    pub kind: FaultKind,
}

type Inode = Arc<Mutex<Vec<u8>>>;

/// What survives a power loss: the directory entries made durable by
/// `sync_dir`, and for each file the bytes made durable by `sync`.
#[derive(Debug, Default)]
struct Durable {
    files: BTreeMap<PathBuf, Inode>,
    dirs: BTreeSet<PathBuf>,
    /// Durable bytes per inode (keyed by the inode's address).
    data: HashMap<usize, Vec<u8>>,
}

fn inode_key(f: &Inode) -> usize {
    Arc::as_ptr(f) as usize
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, Inode>,
    dirs: BTreeSet<PathBuf>,
    durable: Durable,
    /// After a power loss: every operation fails until `power_on`.
    down: bool,
    /// Bumped by each power loss: locks of the dead "process" are void.
    epoch: u64,
    /// Renames since the last fsync of their directory: (from, to, inode).
    unsynced_renames: Vec<(PathBuf, PathBuf, Inode)>,
    locks: BTreeSet<PathBuf>,
    ops: u64,
    fault: Option<Fault>,
    /// Total bytes the "disk" may hold; writes beyond it fail with `StorageFull`.
    capacity_bytes: Option<u64>,
    log: Vec<(Op, PathBuf)>,
}

impl State {
    fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.lock().len() as u64).sum()
    }

    /// Counts a mutating op and returns the fault to apply to it, if any. A
    /// power loss is applied here; the storage is down from then on.
    fn tick(&mut self, op: Op, path: &Path) -> Option<FaultKind> {
        if self.down {
            return Some(FaultKind::PowerLoss);
        }
        let n = self.ops;
        self.ops += 1;
        self.log.push((op, path.to_owned()));
        match self.fault {
            Some(f) if f.nth == n => {
                match f.kind {
                    FaultKind::PowerLoss => self.lose_power(),
                    FaultKind::PowerLossKeepRenames => {
                        for (from, to, inode) in std::mem::take(&mut self.unsynced_renames) {
                            if self.durable.files.remove(&from).is_some() {
                                self.durable.files.insert(to, inode);
                            } else {
                                // Renaming a file whose own entry was never
                                // durable: the entry appears under the new name.
                                self.durable.files.insert(to, inode);
                            }
                        }
                        self.lose_power();
                    }
                    FaultKind::Fail | FaultKind::Tear => {}
                }
                Some(f.kind)
            }
            _ => None,
        }
    }

    /// Drops everything not durable: the namespace becomes the durable one,
    /// each file holds its durable bytes, and files whose directory is not
    /// durable are gone.
    fn lose_power(&mut self) {
        let mut files = BTreeMap::new();
        for (path, inode) in &self.durable.files {
            let parent_ok = path
                .parent()
                .is_none_or(|p| p.as_os_str().is_empty() || self.durable.dirs.contains(p));
            if parent_ok {
                let bytes = self
                    .durable
                    .data
                    .get(&inode_key(inode))
                    .cloned()
                    .unwrap_or_default();
                files.insert(path.clone(), bytes);
            }
        }
        // Fresh inodes: handles of the dead "process" no longer reach them.
        self.files = files
            .into_iter()
            .map(|(p, b)| (p, Arc::new(Mutex::new(b))))
            .collect();
        self.dirs = self.durable.dirs.clone();
        self.durable = Durable::default();
        self.unsynced_renames.clear();
        self.make_all_durable();
        self.locks.clear();
        self.epoch += 1;
        self.down = true;
    }

    fn make_all_durable(&mut self) {
        self.durable.files = self.files.clone();
        self.durable.dirs = self.dirs.clone();
        self.durable.data = self
            .files
            .values()
            .map(|f| (inode_key(f), f.lock().clone()))
            .collect();
    }

    /// `sync_dir(dir)`: the current entries of `dir` become durable.
    fn sync_entries(&mut self, dir: &Path) {
        self.unsynced_renames
            .retain(|(_, to, _)| to.parent() != Some(dir));
        let State {
            files,
            dirs,
            durable,
            ..
        } = self;
        durable
            .files
            .retain(|p, _| p.parent() != Some(dir) || files.contains_key(p));
        for (p, f) in files.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            durable.files.insert(p.clone(), Arc::clone(f));
        }
        durable
            .dirs
            .retain(|d| d.parent() != Some(dir) || dirs.contains(d));
        for d in dirs.iter().filter(|d| d.parent() == Some(dir)) {
            durable.dirs.insert(d.clone());
        }
    }
}

/// Files in memory. Cloning gives another handle to the same files.
///
/// Read handles are snapshots: a file replaced or removed after `open_read`
/// keeps reading its old bytes, like an open descriptor on Unix.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
}

fn injected(op: &'static str, path: &Path) -> Error {
    Error::io(op, path, std::io::Error::other("injected fault"))
}

fn not_found(op: &'static str, path: &Path) -> Error {
    Error::io(op, path, std::io::Error::from(std::io::ErrorKind::NotFound))
}

impl MemoryStorage {
    /// An empty in-memory storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a fault (replacing any armed one) and restarts the op counter.
    pub fn arm_fault(&self, fault: Fault) {
        let mut s = self.state.lock();
        s.fault = Some(fault);
        s.ops = 0;
    }

    /// Disarms faults.
    pub fn disarm(&self) {
        self.state.lock().fault = None;
    }

    /// Marks everything as durable now (as after a clean shutdown): the
    /// starting point of a power-loss test.
    pub fn sync_all(&self) {
        self.state.lock().make_all_durable();
    }

    /// True after a [`FaultKind::PowerLoss`] until [`MemoryStorage::power_on`].
    pub fn is_down(&self) -> bool {
        self.state.lock().down
    }

    /// Brings the storage back after a power loss (with what was durable) and
    /// disarms faults: the next process "boots".
    pub fn power_on(&self) {
        let mut s = self.state.lock();
        s.down = false;
        s.fault = None;
    }

    /// Mutating operations counted since the last [`MemoryStorage::arm_fault`] or
    /// [`MemoryStorage::reset_ops`].
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Restarts the op counter and clears the op log.
    pub fn reset_ops(&self) {
        let mut s = self.state.lock();
        s.ops = 0;
        s.log.clear();
    }

    /// The mutating operations since the last reset, in order.
    pub fn op_log(&self) -> Vec<(Op, PathBuf)> {
        self.state.lock().log.clone()
    }

    /// Limits the total bytes stored (a simulated full disk); `None` lifts it.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().capacity_bytes = bytes;
    }

    /// Every file path, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.lock().files.keys().cloned().collect()
    }

    /// Replaces a file's bytes (for corruption tests).
    pub fn overwrite(&self, path: &Path, bytes: Vec<u8>) {
        let mut s = self.state.lock();
        s.files.insert(path.to_owned(), Arc::new(Mutex::new(bytes)));
    }

    /// A file's current bytes.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.lock().files.get(path).map(|f| f.lock().clone())
    }
}

#[derive(Debug)]
struct MemRead {
    bytes: Arc<Vec<u8>>,
    path: PathBuf,
}

impl ReadHandle for MemRead {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::io(
                "read",
                &self.path,
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )),
        }
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

    fn read_ranges_nowait(
        &self,
        ranges: &[(u64, usize)],
        spare: &mut Vec<Vec<u8>>,
    ) -> Option<Vec<Vec<u8>>> {
        super::read_ranges_reusing(self, ranges, spare).ok()
    }
}

#[derive(Debug)]
struct MemWrite {
    file: Arc<Mutex<Vec<u8>>>,
    state: Arc<Mutex<State>>,
    path: PathBuf,
    /// Bytes appended successfully, as a real file handle counts them: after a
    /// torn write the file is longer than this, exactly as on disk.
    pos: u64,
    poisoned: bool,
    /// The power epoch it was created in; a handle of a "process" that died
    /// in a power loss fails.
    epoch: u64,
}

impl WriteHandle for MemWrite {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        if self.poisoned || self.state.lock().epoch != self.epoch {
            return Err(super::poisoned_error(&self.path));
        }
        let r = self.append_inner(buf);
        match r {
            Ok(()) => self.pos += buf.len() as u64,
            Err(_) => self.poisoned = true,
        }
        r
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn sync(&mut self) -> Result<()> {
        if self.poisoned || self.state.lock().epoch != self.epoch {
            return Err(super::poisoned_error(&self.path));
        }
        let r = {
            let mut s = self.state.lock();
            if s.tick(Op::Sync, &self.path).is_some() {
                Err(injected("fsync", &self.path))
            } else {
                let bytes = self.file.lock().clone();
                s.durable.data.insert(inode_key(&self.file), bytes);
                Ok(())
            }
        };
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_inner(offset, buf)
    }
}

impl MemWrite {
    fn append_inner(&mut self, buf: &[u8]) -> Result<()> {
        let mut s = self.state.lock();
        let fault = s.tick(Op::Write, &self.path);
        if let Some(cap) = s.capacity_bytes {
            if s.used_bytes() + buf.len() as u64 > cap {
                return Err(Error::io(
                    "write",
                    &self.path,
                    std::io::Error::from(std::io::ErrorKind::StorageFull),
                ));
            }
        }
        drop(s);
        match fault {
            Some(FaultKind::Fail | FaultKind::PowerLoss | FaultKind::PowerLossKeepRenames) => {
                Err(injected("write", &self.path))
            }
            Some(FaultKind::Tear) => {
                self.file.lock().extend_from_slice(&buf[..buf.len() / 2]);
                Err(injected("write", &self.path))
            }
            None => {
                self.file.lock().extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn read_inner(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let f = self.file.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buf.len())
            .and_then(|end| f.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::io(
                "read",
                &self.path,
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )),
        }
    }
}

#[derive(Debug)]
struct MemLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    epoch: u64,
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut s = self.state.lock();
        // A lock of a process that "died" in a power loss is already gone.
        if s.epoch == self.epoch {
            s.locks.remove(&self.path);
        }
    }
}

impl Storage for MemoryStorage {
    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadHandle>> {
        let s = self.state.lock();
        if s.down {
            return Err(injected("open", path));
        }
        let file = s.files.get(path).ok_or_else(|| not_found("open", path))?;
        let bytes = Arc::new(file.lock().clone());
        Ok(Arc::new(MemRead {
            bytes,
            path: path.to_owned(),
        }))
    }

    fn create_new(&self, path: &Path) -> Result<Box<dyn WriteHandle>> {
        let mut s = self.state.lock();
        if s.tick(Op::Create, path).is_some() {
            return Err(injected("create", path));
        }
        if s.files.contains_key(path) || s.dirs.contains(path) {
            return Err(Error::io(
                "create",
                path,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !s.dirs.contains(parent) {
                return Err(not_found("create", path));
            }
        }
        let file = Arc::new(Mutex::new(Vec::new()));
        s.files.insert(path.to_owned(), Arc::clone(&file));
        let epoch = s.epoch;
        Ok(Box::new(MemWrite {
            file,
            state: Arc::clone(&self.state),
            path: path.to_owned(),
            pos: 0,
            poisoned: false,
            epoch,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut s = self.state.lock();
        if s.tick(Op::Rename, from).is_some() {
            return Err(injected("rename", from));
        }
        let file = s
            .files
            .remove(from)
            .ok_or_else(|| not_found("rename", from))?;
        s.unsynced_renames
            .push((from.to_owned(), to.to_owned(), Arc::clone(&file)));
        s.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let mut s = self.state.lock();
        if s.tick(Op::Remove, path).is_some() {
            return Err(injected("remove", path));
        }
        s.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found("remove", path))
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        let mut s = self.state.lock();
        if s.tick(Op::Remove, path).is_some() {
            return Err(injected("remove directory", path));
        }
        let busy = s.files.keys().any(|f| f.parent() == Some(path))
            || s.dirs.iter().any(|d| d.parent() == Some(path));
        if busy {
            return Err(Error::io(
                "remove directory",
                path,
                std::io::Error::from(std::io::ErrorKind::DirectoryNotEmpty),
            ));
        }
        if s.dirs.remove(path) {
            Ok(())
        } else {
            Err(not_found("remove directory", path))
        }
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut s = self.state.lock();
        if s.down {
            return Err(injected("create directory", path));
        }
        for anc in path.ancestors() {
            if !anc.as_os_str().is_empty() {
                s.dirs.insert(anc.to_owned());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        let mut s = self.state.lock();
        if s.tick(Op::SyncDir, path).is_some() {
            return Err(injected("fsync directory", path));
        }
        s.sync_entries(path);
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let s = self.state.lock();
        Ok(s.files.contains_key(path) || s.dirs.contains(path))
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        let s = self.state.lock();
        if !s.dirs.contains(path) {
            return Err(not_found("list", path));
        }
        let mut names: Vec<String> = s
            .files
            .keys()
            .chain(s.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>> {
        let mut s = self.state.lock();
        if s.down {
            return Err(injected("lock", path));
        }
        if !s.locks.insert(path.to_owned()) {
            return Ok(None);
        }
        let epoch = s.epoch;
        Ok(Some(Box::new(MemLock {
            state: Arc::clone(&self.state),
            path: path.to_owned(),
            epoch,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_handles_are_snapshots() {
        let s = MemoryStorage::new();
        let p = Path::new("/d/f");
        s.create_dir_all(Path::new("/d")).unwrap();
        s.write_new_synced(p, b"old").unwrap();
        let h = s.open_read(p).unwrap();
        s.remove_file(p).unwrap();
        assert_eq!(h.read_vec_at(0, 3).unwrap(), b"old");
        assert!(s.open_read(p).is_err());
    }

    /// Reads into spare buffers give exactly each range, whatever the
    /// spares held before (longer, shorter, stale bytes), and a failed read
    /// gives every buffer back.
    #[test]
    fn reads_into_spare_buffers_hold_exactly_their_ranges() {
        let s = MemoryStorage::new();
        let p = Path::new("/d/f");
        s.create_dir_all(Path::new("/d")).unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        s.write_new_synced(p, &bytes).unwrap();
        let h = s.open_read(p).unwrap();
        let mut spare = vec![vec![0xAA; 5000], vec![0x55; 3], Vec::with_capacity(64)];
        let ranges = [(10u64, 100usize), (9000, 1000), (0, 0), (4000, 4000)];
        for _ in 0..3 {
            let got = h.read_ranges_reusing(&ranges, &mut spare).unwrap();
            for (b, &(o, n)) in got.iter().zip(&ranges) {
                assert_eq!(b.as_slice(), &bytes[o as usize..o as usize + n]);
            }
            spare.extend(got);
        }
        let held = spare.len();
        let e = h.read_ranges_reusing(&[(0, 10), (9995, 10)], &mut spare);
        assert!(e.is_err(), "a range past the end fails");
        assert_eq!(spare.len(), held, "the buffers came back");
    }

    #[test]
    fn faults_hit_the_nth_op() {
        let s = MemoryStorage::new();
        s.create_dir_all(Path::new("/d")).unwrap();
        s.arm_fault(Fault {
            nth: 1,
            kind: FaultKind::Tear,
        });
        let mut h = s.create_new(Path::new("/d/f")).unwrap();
        assert!(h.append(b"abcd").is_err());
        assert_eq!(s.contents(Path::new("/d/f")).unwrap(), b"ab");
        // Like a real file: the torn bytes are there, the handle counts only
        // successful appends, and a poisoned handle takes no more writes.
        assert_eq!(h.position(), 0);
        assert!(h.append(b"ef").is_err());
        assert!(h.sync().is_err());
        assert_eq!(s.contents(Path::new("/d/f")).unwrap(), b"ab");
    }

    #[test]
    fn power_loss_keeps_only_what_was_made_durable() {
        let s = MemoryStorage::new();
        s.create_dir_all(Path::new("/d")).unwrap();
        s.sync_all();
        let mut a = s.create_new(Path::new("/d/a")).unwrap();
        a.append(b"synced").unwrap();
        a.sync().unwrap();
        s.sync_dir(Path::new("/d")).unwrap();
        a.append(b" and not").unwrap();
        let mut b = s.create_new(Path::new("/d/b")).unwrap();
        b.append(b"file synced, entry not").unwrap();
        b.sync().unwrap();
        s.rename(Path::new("/d/a"), Path::new("/d/c")).unwrap();
        s.arm_fault(Fault {
            nth: 0,
            kind: FaultKind::PowerLoss,
        });
        assert!(
            s.sync_dir(Path::new("/d")).is_err(),
            "power lost at this op"
        );
        assert!(s.is_down());
        assert!(
            s.create_new(Path::new("/d/x")).is_err(),
            "down until power_on"
        );
        s.power_on();
        // The rename was never made durable: `a` is back with its synced bytes.
        assert_eq!(s.files(), vec![PathBuf::from("/d/a")]);
        assert_eq!(s.contents(Path::new("/d/a")).unwrap(), b"synced");
        assert!(a.append(b"x").is_err(), "the dead process's handle is gone");
    }

    #[test]
    fn locks_are_exclusive_until_dropped() {
        let s = MemoryStorage::new();
        let g = s.try_lock(Path::new("/lock")).unwrap();
        assert!(g.is_some());
        assert!(s.try_lock(Path::new("/lock")).unwrap().is_none());
        drop(g);
        assert!(s.try_lock(Path::new("/lock")).unwrap().is_some());
    }
}
