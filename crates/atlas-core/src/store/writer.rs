//! The writer rule: one writer per store, the lock taken at the first
//! mutation, off the runtime threads.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use array_format::Storage;

use super::{commit, Inner, LOCK_FILE};
use crate::error::{Error, Result};

impl Inner {
    /// True when this handle holds the writer lock.
    pub(crate) fn writer_held(&self) -> bool {
        self.writer.lock().is_some()
    }

    /// [`Inner::ensure_writer`] for async callers: the lock wait (up to
    /// 250 ms, with sleeps) and the manifest read run on the blocking pool,
    /// never on a runtime worker thread.
    pub(crate) async fn ensure_writer_async(self: &Arc<Self>) -> Result<()> {
        if self.writer_held() && !self.poisoned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let inner = Arc::clone(self);
        tokio::task::spawn_blocking(move || inner.ensure_writer())
            .await
            .expect("writer-lock task panicked")
    }

    /// Takes the writer lock if this handle does not hold it yet. Fails if
    /// another writer holds it, if the store moved past this handle's snapshot,
    /// or after a commit whose durability is unknown.
    pub(crate) fn ensure_writer(&self) -> Result<()> {
        if let Some(generation) = self.at {
            return Err(Error::ReadOnly {
                path: self.root.clone(),
                generation,
            });
        }
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(Error::Poisoned {
                path: self.root.clone(),
            });
        }
        if self.writer_held() {
            return Ok(());
        }
        // The rest blocks (the lock wait, the manifest read, the orphan
        // sweep). Synchronous callers (the attribute setters) may be on a
        // runtime worker thread: there, tokio is told first, so the worker's
        // other tasks move to another thread meanwhile.
        blocking(|| self.take_writer())
    }

    /// The slow path of [`Inner::ensure_writer`]: takes the lock, checks the
    /// store did not move past this handle's snapshot, sweeps orphans.
    fn take_writer(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if w.is_some() {
            return Ok(());
        }
        let guard = acquire_writer_lock(self.storage.as_ref(), &self.root)?;
        // With the whole retired list (possibly in a side file): a writer's
        // commits and sweeps need all of it.
        let (on_disk, version) = commit::read_manifest_full(self.storage.as_ref(), &self.root)?;
        {
            let mut committed = self.committed.lock();
            if on_disk.generation != committed.generation {
                return Err(Error::StaleHandle {
                    path: self.root.clone(),
                });
            }
            committed.version = Some(version);
            committed.retired.clone_from(&on_disk.retired);
            committed.retired_sealed.clone_from(&on_disk.retired_sealed);
            committed.retired_file.clone_from(&on_disk.retired_file);
            committed.retired_loaded = true;
        }
        // On object stores other writers may be uploading right now and a
        // sweep lists every directory: orphans there are left to compaction,
        // which sweeps only files older than the grace period.
        if !self.storage.is_object_store() {
            commit::sweep_orphans(self.storage.as_ref(), &self.root, &on_disk, None);
            self.swept.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        *w = Some(guard);
        Ok(())
    }
}

/// Runs `f`, which blocks, under `tokio::task::block_in_place` when called
/// on a multi-thread runtime (on one of its workers, it hands the worker's
/// other tasks to another thread; elsewhere it just runs `f`). On a
/// current-thread runtime, or outside any runtime, `f` runs as is.
pub(super) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// How long a would-be writer waits for the lock before reporting `Locked`.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes the store's writer lock, waiting up to [`LOCK_WAIT`]: a lock released
/// an instant ago can still look held (for example while a process spawned
/// concurrently briefly shares this process's descriptors before `exec`), and
/// a second writer should not fail on that. A lock held for longer is `Locked`.
pub(super) fn acquire_writer_lock(
    storage: &dyn Storage,
    root: &Path,
) -> Result<Box<dyn array_format::LockGuard>> {
    let path = root.join(LOCK_FILE);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        if let Some(guard) = storage.try_lock(&path)? {
            return Ok(guard);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked {
                path: root.to_owned(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
