//! The process-wide table of open layer-file descriptors.
//!
//! A store may name thousands of layer files; holding one descriptor per file
//! for a handle's whole life ran into the per-process limit (`ulimit -n`, 1,024
//! by default) and made healthy stores fail to open. Read handles therefore
//! borrow their descriptor from this bounded table: a descriptor evicted under
//! pressure is reopened by path on the next read, and the reopened file must be
//! the same file (device and inode), so a path replaced meanwhile is an error,
//! never a read of other bytes.
//!
//! **Invariant:** at most `capacity` descriptors are held by the table; reads
//! in flight may briefly hold an evicted descriptor until they finish.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Identity of an open file: reopening by path must find the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileIdentity {
    dev: u64,
    ino: u64,
}

impl FileIdentity {
    pub(super) fn of(file: &File, path: &Path) -> Result<(FileIdentity, u64)> {
        let m = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        Ok((
            FileIdentity {
                dev: m.dev(),
                ino: m.ino(),
            },
            m.len(),
        ))
    }
}

struct Entry {
    file: Arc<File>,
    last_use: u64,
}

struct Table {
    entries: HashMap<u64, Entry>,
    tick: u64,
}

/// The bounded descriptor table (one per process: the limit is per process).
pub(super) struct Descriptors {
    capacity: AtomicUsize,
    next_id: AtomicU64,
    table: Mutex<Table>,
}

/// Default capacity: a quarter of the soft `RLIMIT_NOFILE`, between 32 and
/// 4,096 (the rest is left to the application, sockets, scratch files…).
fn default_capacity() -> usize {
    if let Some(n) = std::env::var("ATLAS_MAX_OPEN_FILES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.max(1);
    }
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    (soft / 4).clamp(32, 4096)
}

pub(super) fn global() -> &'static Descriptors {
    static TABLE: OnceLock<Descriptors> = OnceLock::new();
    TABLE.get_or_init(|| Descriptors {
        capacity: AtomicUsize::new(default_capacity()),
        next_id: AtomicU64::new(1),
        table: Mutex::new(Table {
            entries: HashMap::new(),
            tick: 0,
        }),
    })
}

/// True for "too many open files" (per process or system-wide).
fn is_descriptor_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

impl Descriptors {
    pub(super) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    pub(super) fn set_capacity(&self, n: usize) {
        self.capacity.store(n.max(1), Ordering::Relaxed);
        let mut t = self.table.lock();
        Self::evict_to(&mut t, n.max(1));
    }

    /// Descriptors the table holds now.
    pub(super) fn open_count(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// A fresh id for a new read handle.
    pub(super) fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn evict_to(t: &mut Table, keep: usize) {
        while t.entries.len() > keep {
            let oldest = t
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| *k)
                .expect("non-empty");
            t.entries.remove(&oldest);
        }
    }

    /// Opens `path`, retrying once after shedding half the table when the
    /// process is out of descriptors; running out is a resource error.
    pub(super) fn open_file(&self, path: &Path) -> Result<File> {
        match File::open(path) {
            Ok(f) => Ok(f),
            Err(e) if is_descriptor_exhaustion(&e) => {
                {
                    let mut t = self.table.lock();
                    let keep = t.entries.len() / 2;
                    Self::evict_to(&mut t, keep);
                }
                File::open(path).map_err(|e| Error::io("open", path, e))
            }
            Err(e) => Err(Error::io("open", path, e)),
        }
    }

    /// Registers the descriptor of handle `id`.
    pub(super) fn insert(&self, id: u64, file: Arc<File>) {
        let cap = self.capacity();
        let mut t = self.table.lock();
        t.tick += 1;
        let last_use = t.tick;
        t.entries.insert(id, Entry { file, last_use });
        Self::evict_to(&mut t, cap);
    }

    /// The descriptor of handle `id` if it is open now (never opens one:
    /// an open can wait for a device).
    pub(super) fn open_now(&self, id: u64) -> Option<Arc<File>> {
        let mut t = self.table.lock();
        t.tick += 1;
        let tick = t.tick;
        let e = t.entries.get_mut(&id)?;
        e.last_use = tick;
        Some(Arc::clone(&e.file))
    }

    /// The descriptor of handle `id`, reopened (and checked to be the same
    /// file) if it was evicted.
    pub(super) fn get(&self, id: u64, path: &Path, identity: FileIdentity) -> Result<Arc<File>> {
        {
            let mut t = self.table.lock();
            t.tick += 1;
            let tick = t.tick;
            if let Some(e) = t.entries.get_mut(&id) {
                e.last_use = tick;
                return Ok(Arc::clone(&e.file));
            }
        }
        let file = self.open_file(path)?;
        let (found, _) = FileIdentity::of(&file, path)?;
        if found != identity {
            return Err(Error::io(
                "reopen",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the file was replaced since this handle opened it",
                ),
            ));
        }
        let file = Arc::new(file);
        self.insert(id, Arc::clone(&file));
        Ok(file)
    }

    /// Forgets handle `id` (its descriptor closes when no read holds it).
    pub(super) fn remove(&self, id: u64) {
        self.table.lock().entries.remove(&id);
    }
}
