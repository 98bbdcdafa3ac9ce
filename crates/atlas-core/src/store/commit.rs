//! The commit protocol.
//!
//! A flush (1) writes each changed array file's pending layer under a fresh
//! name and the registry's new run, and fsyncs them and their directories,
//! (2) meanwhile writes the new manifest to a temporary file and fsyncs it,
//! (3) once all of those are durable, renames it over `atlas.json` and fsyncs
//! the root directory, and only then (4) installs the new layers in memory. Files
//! the commit retires are listed in its manifest and deleted after the first
//! commit past their grace period (`commit/gc.rs`).
//!
//! **Invariant:** a failure before the rename leaves `atlas.json`, and so the
//! store, exactly at the previous commit, and this handle's pending changes
//! intact (the flush can be retried). A failure after the rename (the directory
//! fsync) leaves durability unknown: the handle is poisoned and refuses writes.
//!
//! **Invariant:** nothing named by the committed `atlas.json` is ever removed;
//! files are removed only after the commit that stopped naming them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use array_format::{
    ArrayFile, ArrayStats, LayerId, PreparedLayer, StagedReplace, Storage, UnsyncedLayer, Version,
    WriteHandle,
};
use indexmap::IndexMap;
use rayon::prelude::*;
use tokio::sync::OwnedRwLockWriteGuard;

mod compact;
mod gc;

pub(crate) use compact::{compact, flush_and_merge};
pub(crate) use gc::{delete_expired, sweep_orphans};

use super::{Inner, HISTORY_DIR, REGISTRY_FILE};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{
    decode_retired, decode_retired_chunk, encode_retired, encode_retired_chunk, merge_runs, now_ms,
    seal_retired, unseal_retired, Manifest, MergeRec, Record, Retired, Run, RunId, RunSet,
    RunWriter, Sealed, META_DIR,
};
use roaring::RoaringTreemap;

/// Runs after which a flush merges them all into one.
pub(crate) const MAX_RUNS: usize = 8;

/// How a registry write failed.
pub(crate) enum CommitError {
    /// Before the manifest was replaced: the previous commit stands.
    Before(array_format::Error),
    /// Another writer replaced the manifest first: the previous commit (of
    /// the other writer) stands, nothing of this one does.
    Conflict,
    /// The new manifest may or may not be durable.
    Unknown(array_format::Error),
}

impl CommitError {
    pub(crate) fn into_error(self, root: &Path) -> Error {
        match self {
            CommitError::Before(e) | CommitError::Unknown(e) => e.into(),
            CommitError::Conflict => Error::CommitConflict {
                path: root.to_owned(),
            },
        }
    }
}

/// Steps (2) and (3) of the protocol: replaces the manifest if it is still at
/// `expected` (`None`: creates it), with a fresh random commit id in it, and
/// returns the new version.
///
/// When the outcome is unknown (an error other than a conflict: a timeout, a
/// lost response, a failed directory fsync), the manifest is read back: if it
/// carries this commit's id the write landed (on object stores that is a
/// success; on filesystems the failed fsync leaves durability unknown, so it
/// stays `Unknown`), if it carries another the previous commit stands.
///
/// A retired list longer than `inline_retired_limit()` (32), or one with
/// sealed chunks, is first written to a side file of `atlas.history/`
/// (create-new, fsynced) that the manifest names; `m.retired_file` names, on
/// entry, the side file of the manifest being replaced, deleted once the new
/// manifest stands (only the current manifest's list is ever read). The
/// oldest loose entries are sealed first into immutable chunk files when
/// there are many (see [`crate::registry::Sealed`]), so the
/// side file holds only the loose entries and the chunks' names; chunks
/// dissolved by settling are deleted once the new manifest stands.
pub(crate) fn write_manifest(
    storage: &dyn Storage,
    root: &Path,
    m: &mut Manifest,
    expected: Option<&Version>,
) -> Result<Version, CommitError> {
    let staged = stage_manifest(storage, root, m).map_err(CommitError::Before)?;
    finish_manifest(storage, root, m, staged, expected)
}

/// A manifest [`stage_manifest`] made durable beside the current one,
/// with its retired list's side file (if any) written: the commit's
/// last step, [`finish_manifest`], or [`abandon_manifest`], is still to
/// come.
#[must_use = "a staged manifest is finished or abandoned"]
pub(crate) struct StagedManifest {
    staged: StagedReplace,
    path: PathBuf,
    commit_id: String,
    /// The side file of the manifest being replaced.
    previous: Option<String>,
    /// Retired-list chunks this commit sealed (new files).
    sealed: Vec<Arc<Sealed>>,
}

/// Step (2) of [`write_manifest`]: gives `m` a fresh commit id, writes
/// its retired list's side file and stages its bytes (durable, not yet
/// the manifest). On an error nothing of it is left and `m` names its
/// previous side file again.
pub(crate) fn stage_manifest(
    storage: &dyn Storage,
    root: &Path,
    m: &mut Manifest,
) -> std::result::Result<StagedManifest, array_format::Error> {
    debug_assert!(m.retired_loaded, "a commit needs the whole retired list");
    let commit_id = format!("{:032x}", array_format::random_uid());
    m.commit_id = Some(commit_id.clone());
    // Written in the current version, whatever version it was read in.
    m.version = crate::REGISTRY_VERSION;
    let previous = m.retired_file.take();
    let sealed = seal_retired(m);
    let path = root.join(REGISTRY_FILE);
    // The new manifest's bytes are made durable beside the old manifest
    // first (a synced temporary file on filesystems), and with a side file
    // both are written at once (the side file on a second thread): the
    // manifest replaces the old one only once both are durable, one round
    // of fsyncs instead of two.
    let staged = if m.retired_in_side_file() {
        let name = format!("retired-{commit_id}.json");
        m.retired_file = Some(name.clone());
        let bytes = m.encode();
        let manifest: &Manifest = m;
        let (side, staged) = beside(
            || write_retired(storage, root, &name, manifest, &sealed),
            || storage.stage_replace(&path, &bytes),
        );
        // The side file's error first when both fail (the order of the
        // old sequence).
        match (side, staged) {
            (Ok(()), staged) => staged,
            (Err(e), staged) => {
                if let Ok(staged) = staged {
                    storage.discard_staged(staged);
                }
                Err(e)
            }
        }
    } else {
        storage.stage_replace(&path, &m.encode())
    };
    match staged {
        Ok(staged) => Ok(StagedManifest {
            staged,
            path,
            commit_id,
            previous,
            sealed,
        }),
        Err(e) => {
            forget_staged(storage, root, m, previous, &sealed);
            Err(e)
        }
    }
}

/// Step (3) of [`write_manifest`]: the staged manifest replaces the current
/// one if that is still at `expected`. A failure other than an unknown
/// outcome leaves the previous commit and removes what the staging wrote.
pub(crate) fn finish_manifest(
    storage: &dyn Storage,
    root: &Path,
    m: &mut Manifest,
    s: StagedManifest,
    expected: Option<&Version>,
) -> Result<Version, CommitError> {
    let StagedManifest {
        staged,
        path,
        commit_id,
        previous,
        sealed,
    } = s;
    let outcome = replace_manifest(storage, &path, staged, expected, &commit_id);
    match &outcome {
        Ok(_) => {
            let history = root.join(HISTORY_DIR);
            if let Some(p) = previous {
                let _ = storage.remove_file(&history.join(p));
            }
            for c in std::mem::take(&mut m.retired_dissolved) {
                let _ = storage.remove_file(&history.join(c));
            }
        }
        // The manifest may name the new side file: it stays.
        Err(CommitError::Unknown(_)) => {}
        Err(_) => forget_staged(storage, root, m, previous, &sealed),
    }
    outcome
}

/// A staged manifest that will not be committed (the commit failed before
/// its last step): its staged bytes, side file and sealed chunks are
/// removed, and `m` names its previous side file again.
pub(crate) fn abandon_manifest(
    storage: &dyn Storage,
    root: &Path,
    m: &mut Manifest,
    s: StagedManifest,
) {
    storage.discard_staged(s.staged);
    forget_staged(storage, root, m, s.previous, &s.sealed);
}

/// Undoes what [`stage_manifest`] did to `m` and the files it wrote beside
/// the manifest (best effort: what is left is garbage no manifest names).
fn forget_staged(
    storage: &dyn Storage,
    root: &Path,
    m: &mut Manifest,
    previous: Option<String>,
    sealed: &[Arc<Sealed>],
) {
    let history = root.join(HISTORY_DIR);
    if let Some(new) = std::mem::replace(&mut m.retired_file, previous) {
        let _ = storage.remove_file(&history.join(new));
    }
    for c in sealed {
        let _ = storage.remove_file(&history.join(&c.file));
    }
    unseal_retired(m, sealed);
}

/// `ATLAS_TEST_SYNC_LATER` set (to anything): [`beside`] and
/// [`Background`] start no thread, as when the system refuses one, so a
/// commit's steps run one after the other in a fixed order. CI runs the
/// fault and power-loss tables so too: that path is tested, and a rename
/// that does not wait for a sync is lost to the first power cut after it,
/// whatever the timing.
fn threads_refused() -> bool {
    static REFUSED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REFUSED.get_or_init(|| std::env::var_os("ATLAS_TEST_SYNC_LATER").is_some())
}

/// Runs `a` on a thread of its own (scoped) while this thread runs `b`,
/// and gives both results. Not `rayon::join`: the commit runs outside
/// rayon's pool, and under `strace` the caller of such a join resumed
/// 0.65 ms after both halves had ended (a scoped thread's caller, at once).
/// A thread the system refuses: `a` runs here after `b`.
fn beside<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    // `a` stays here until a thread takes it: after a refused spawn it is
    // still in the slot.
    let slot = parking_lot::Mutex::new(Some(a));
    std::thread::scope(|s| {
        let spawned = if threads_refused() {
            None
        } else {
            std::thread::Builder::new()
                .name("atlas-commit".into())
                .spawn_scoped(s, || {
                    let a = slot.lock().take();
                    a.map(|a| a())
                })
                .ok()
        };
        let rb = b();
        let ra = match spawned {
            Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => None,
        };
        let ra = ra.unwrap_or_else(|| {
            let a = slot.lock().take();
            a.expect("`a` runs once")()
        });
        (ra, rb)
    })
}

/// Writes the new sealed chunks and the retired-list side file `name` of
/// `m`, then syncs `atlas.history/` once.
fn write_retired(
    storage: &dyn Storage,
    root: &Path,
    name: &str,
    m: &Manifest,
    new_chunks: &[Arc<Sealed>],
) -> std::result::Result<(), array_format::Error> {
    let dir = super::history::history_dir(storage, root)?;
    for c in new_chunks {
        storage.write_new_synced(&dir.join(&c.file), &encode_retired_chunk(&c.entries))?;
    }
    let bytes = encode_retired(m.generation, &m.retired_sealed, &m.retired);
    storage.write_new_synced(&dir.join(name), &bytes)?;
    if !storage.is_object_store() {
        storage.sync_dir(&dir)?;
    }
    Ok(())
}

/// Fills `m.retired` from its side file, if it names one and has not yet.
/// A side file that is gone means a newer commit replaced `m`: `StaleHandle`.
pub(crate) fn load_retired(storage: &dyn Storage, root: &Path, m: &mut Manifest) -> Result<()> {
    if m.retired_loaded {
        return Ok(());
    }
    let Some(name) = &m.retired_file else {
        m.retired_loaded = true;
        return Ok(());
    };
    let read = |path: &Path| match storage.read_all(path) {
        Ok(b) => Ok(b),
        Err(e) if e.is_not_found() => Err(Error::StaleHandle {
            path: root.to_owned(),
        }),
        Err(e) => Err(Error::from(e)),
    };
    let path = root.join(HISTORY_DIR).join(name);
    let (chunks, loose) = decode_retired(&read(&path)?, m.generation, &path)?;
    let mut sealed = Vec::with_capacity(chunks.len());
    for c in &chunks {
        let p = root.join(HISTORY_DIR).join(&c.file);
        sealed.push(Arc::new(decode_retired_chunk(&read(&p)?, c, &p)?));
    }
    m.retired = loose;
    m.retired_sealed = sealed;
    m.retired_loaded = true;
    Ok(())
}

/// Reads the current manifest (its retired list not loaded when it is in a
/// side file) and its storage version.
pub(crate) fn read_manifest(storage: &dyn Storage, root: &Path) -> Result<(Manifest, Version)> {
    let path = root.join(REGISTRY_FILE);
    let (bytes, v) = match storage.read_versioned(&path) {
        Ok(x) => x,
        Err(e) if e.is_not_found() => {
            return Err(Error::StoreNotFound {
                path: root.to_owned(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    Ok((Manifest::decode(&bytes, &path)?, v))
}

/// Reads the current manifest with its whole retired list (for a commit or
/// a sweep), retrying when a commit replaced it between the two reads.
pub(crate) fn read_manifest_full(
    storage: &dyn Storage,
    root: &Path,
) -> Result<(Manifest, Version)> {
    let mut tries = 0;
    loop {
        let (mut m, v) = read_manifest(storage, root)?;
        match load_retired(storage, root, &mut m) {
            Ok(()) => return Ok((m, v)),
            Err(Error::StaleHandle { .. }) if tries < 3 => tries += 1,
            Err(Error::StaleHandle { .. }) => {
                return Err(Error::CorruptRegistry {
                    path: root.join(HISTORY_DIR),
                    reason: format!(
                        "the retired list {:?} that atlas.json names is missing",
                        m.retired_file.unwrap_or_default()
                    ),
                })
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the current manifest for a commit or sweep by the writer of
/// `inner`: when it is the handle's own last commit (same generation and
/// side file), its retired list comes from the handle (loaded when the
/// writer took the lock, carried forward by every commit since), so a
/// `gc`, tag or restore commit costs the same whatever the length of the
/// list; otherwise as [`read_manifest_full`].
pub(crate) fn read_manifest_for_writer(inner: &Inner) -> Result<(Manifest, Version)> {
    let storage = inner.storage.as_ref();
    let (mut m, v) = read_manifest(storage, &inner.root)?;
    if m.retired_loaded {
        return Ok((m, v));
    }
    {
        let c = inner.committed.lock();
        if c.retired_loaded && c.generation == m.generation && c.retired_file == m.retired_file {
            m.retired.clone_from(&c.retired);
            m.retired_sealed.clone_from(&c.retired_sealed);
            m.retired_loaded = true;
        }
    }
    if m.retired_loaded {
        #[cfg(debug_assertions)]
        {
            // The handle's copy is exactly the stored list.
            let mut stored = m.clone();
            stored.retired_loaded = false;
            load_retired(storage, &inner.root, &mut stored)?;
            debug_assert_eq!(stored.retired, m.retired, "loose retired entries");
            debug_assert_eq!(stored.retired_sealed, m.retired_sealed, "sealed chunks");
        }
        return Ok((m, v));
    }
    read_manifest_full(storage, &inner.root)
}

/// Replaces the manifest with the staged one (see [`write_manifest`]).
fn replace_manifest(
    storage: &dyn Storage,
    path: &Path,
    staged: StagedReplace,
    expected: Option<&Version>,
    commit_id: &str,
) -> Result<Version, CommitError> {
    let e = match storage.finish_replace(staged, expected) {
        Ok(v) => return Ok(v),
        Err(array_format::Error::Conflict { .. }) if !storage.is_object_store() => {
            return Err(CommitError::Conflict)
        }
        Err(e) => e,
    };
    let conflict = matches!(e, array_format::Error::Conflict { .. });
    // An object-store client retries a request whose response was lost; the
    // retry of a write that landed finds its own version and reports a
    // conflict. The commit id read back tells whether the write is ours.
    let (bytes, v) = match storage.read_versioned(path) {
        Ok(read) => read,
        Err(read_err) if read_err.is_not_found() && expected.is_none() => {
            return Err(CommitError::Before(e))
        }
        Err(_) => return Err(CommitError::Unknown(e)),
    };
    let ours = match Manifest::decode(&bytes, path) {
        Ok(found) => found.commit_id.as_deref() == Some(commit_id),
        Err(_) if conflict => false,
        Err(_) => return Err(CommitError::Unknown(e)),
    };
    match (ours, conflict) {
        (true, _) if storage.is_object_store() => Ok(v),
        // A filesystem's failed directory fsync: landed, durability unknown.
        (true, _) => Err(CommitError::Unknown(e)),
        (false, true) => Err(CommitError::Conflict),
        (false, false) => Err(CommitError::Before(e)),
    }
}

/// The layers a flush wrote, by the index of their array file in the
/// flush's write guards: those synced, and the last batch, being synced
/// on another thread ([`Background`], [`sync_layers`]) while the commit
/// goes on.
#[derive(Default)]
struct Written {
    prepared: Vec<(usize, PreparedLayer)>,
    /// Every layer's array-file index, id and size in bytes.
    ids: Vec<(usize, LayerId, u64)>,
    syncing: Option<Background<Result<Synced>>>,
    /// The registry's new run, being synced (with `atlas.meta/`).
    run_sync: Option<Background<Result<()>>>,
}

/// Layers synced, by the index of their array file.
type Synced = Vec<(usize, PreparedLayer)>;

/// Work on another thread (the fsyncs of a commit's files, while the
/// commit builds and stages its manifest), waited for later. It runs on
/// tokio's blocking pool when there is a runtime (a commit runs on it:
/// its threads outlive a commit, idle ones for 10 s by default, where a
/// new thread per sync cost a `clone3` and a thread's start on the
/// commit's path), else on a thread of its own. Work no thread has taken yet when it is
/// waited for (a pool with every thread busy, a refused thread, see
/// [`threads_refused`]) runs on the waiting thread, so the wait never
/// depends on a free thread. Dropped unwaited (a panic on the way), it
/// cancels work not yet started and waits for work running: no sync
/// outlives the flush that started it.
struct Background<T: Send + 'static>(Option<Arc<Job<T>>>);

/// The state [`Background`] shares with the thread that runs it.
struct Job<T> {
    state: parking_lot::Mutex<JobState<T>>,
    ended: parking_lot::Condvar,
}

enum JobState<T> {
    Queued(Box<dyn FnOnce() -> T + Send>),
    Running,
    Ended(std::thread::Result<T>),
    /// Taken by the waiter, or cancelled.
    Gone,
}

impl<T: Send + 'static> Background<T> {
    /// Starts `work` on `rt`'s blocking pool, or without a runtime on a
    /// thread of its own. (A rayon worker has no runtime of its own: a
    /// commit passes the one it runs on.)
    fn start(
        rt: Option<&tokio::runtime::Handle>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Background<T> {
        let job = Arc::new(Job {
            state: parking_lot::Mutex::new(JobState::Queued(Box::new(work))),
            ended: parking_lot::Condvar::new(),
        });
        if !threads_refused() {
            let runner = Arc::clone(&job);
            let run = move || runner.run();
            match rt {
                // Detached: the job's state says when it has ended. The
                // pool panics when the system refuses it a thread it needs
                // (tokio 1): the work then stays queued, for the waiter.
                Some(h) => {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        drop(h.spawn_blocking(run));
                    }));
                }
                None => {
                    let _ = std::thread::Builder::new()
                        .name("atlas-sync".into())
                        .spawn(run);
                }
            }
        }
        Background(Some(job))
    }

    /// The work's result, once it has ended (run here if no thread took
    /// it).
    fn wait(mut self) -> T {
        let job = self.0.take().expect("waited for once");
        let mut st = job.state.lock();
        let ended = loop {
            match std::mem::replace(&mut *st, JobState::Gone) {
                JobState::Queued(work) => {
                    drop(st);
                    break std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                }
                JobState::Running => {
                    *st = JobState::Running;
                    job.ended.wait(&mut st);
                }
                JobState::Ended(r) => break r,
                JobState::Gone => unreachable!("a job is waited for once"),
            }
        };
        ended.unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl<T> Job<T> {
    /// Runs the work unless the waiter took it or it was cancelled.
    fn run(&self) {
        let work = {
            let mut st = self.state.lock();
            match std::mem::replace(&mut *st, JobState::Running) {
                JobState::Queued(work) => work,
                other => {
                    *st = other;
                    return;
                }
            }
        };
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        *self.state.lock() = JobState::Ended(ended);
        self.ended.notify_all();
    }
}

impl<T: Send + 'static> Drop for Background<T> {
    fn drop(&mut self) {
        let Some(job) = self.0.take() else { return };
        let mut st = job.state.lock();
        loop {
            match &*st {
                JobState::Queued(_) => {
                    // Dropped after the lock: the work may own files.
                    let cancelled = std::mem::replace(&mut *st, JobState::Gone);
                    drop(st);
                    drop(cancelled);
                    return;
                }
                JobState::Running => job.ended.wait(&mut st),
                // A panic in the work ends here unraised: the waiter is
                // gone (this drop is most likely part of an unwinding).
                JobState::Ended(_) | JobState::Gone => return,
            }
        }
    }
}

impl Written {
    /// Adds synced layers.
    fn add(&mut self, prepared: Vec<(usize, PreparedLayer)>) {
        self.ids
            .extend(prepared.iter().map(|(i, p)| (*i, p.id(), p.len_bytes())));
        self.prepared.extend(prepared);
    }

    /// Waits for the last batch's syncs and the run's; on an error every
    /// layer's file is removed (the run's is the caller's).
    fn wait(&mut self, storage: &dyn Storage) -> Result<()> {
        let layers = self.syncing.take().map_or(Ok(Vec::new()), Background::wait);
        let run = self.run_sync.take().map_or(Ok(()), Background::wait);
        match (layers, run) {
            (Ok(p), Ok(())) => {
                self.prepared.extend(p);
                Ok(())
            }
            (Ok(p), Err(e)) => {
                self.prepared.extend(p);
                self.remove(storage);
                Err(e)
            }
            // The failed sync removed its own layers' files.
            (Err(e), _) => {
                self.remove(storage);
                Err(e)
            }
        }
    }

    /// The commit failed: every layer's file is removed (best effort), once
    /// the syncs still running have ended.
    fn discard(mut self, storage: &dyn Storage) {
        // A failed wait has removed them already.
        if self.wait(storage).is_ok() {
            self.remove(storage);
        }
    }

    fn remove(&self, storage: &dyn Storage) {
        for (_, p) in &self.prepared {
            let _ = storage.remove_file(p.path());
        }
    }
}

/// The values of `results` that are `Some`, in order, and the first error
/// (the later results are still taken: each may own a file to clean up).
fn somes_and_first_error<T, E>(
    results: impl IntoIterator<Item = std::result::Result<Option<T>, E>>,
) -> (Vec<T>, Option<E>) {
    let mut values = Vec::new();
    let mut failed = None;
    for r in results {
        match r {
            Ok(Some(v)) => values.push(v),
            Ok(None) => {}
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    (values, failed)
}

/// Makes layers durable: each file and each of their directories fsynced at once,
/// on more threads than cores when there are more than two (see
/// [`io_pool`]; one layer: its directory's on a [`Background`] thread, its
/// file's here): no fsync waits for another, the commit's rename waits for
/// all. On an error every one of the layers' files is removed.
fn sync_layers(
    storage: &Arc<dyn Storage>,
    rt: Option<&tokio::runtime::Handle>,
    unsynced: Vec<(usize, UnsyncedLayer)>,
) -> Result<Vec<(usize, PreparedLayer)>> {
    enum Sync<'a> {
        File(usize, Box<UnsyncedLayer>),
        Dir(&'a Path),
    }
    let mut dirs: Vec<PathBuf> = unsynced.iter().map(|(_, u)| u.dir().to_owned()).collect();
    dirs.sort_unstable();
    dirs.dedup();
    // One layer: its directory on another thread, its file here.
    if let ([(_, u)], [dir]) = (unsynced.as_slice(), dirs.as_slice()) {
        debug_assert_eq!(u.dir(), dir.as_path());
        let (st, dir) = (Arc::clone(storage), dir.clone());
        let dir_synced = Background::start(rt, move || st.sync_dir(&dir));
        let (i, u) = unsynced.into_iter().next().expect("one layer");
        let file = u.sync_file();
        let dir = dir_synced.wait();
        return match (file, dir) {
            (Ok(p), Ok(())) => Ok(vec![(i, p)]),
            (Ok(p), Err(e)) => {
                let _ = storage.remove_file(p.path());
                Err(e.into())
            }
            // A failed file sync removed its file.
            (Err(e), _) => Err(e.into()),
        };
    }
    let n = unsynced.len() + dirs.len();
    let mut tasks: Vec<Sync> = Vec::with_capacity(n);
    tasks.extend(
        unsynced
            .into_iter()
            .map(|(i, u)| Sync::File(i, Box::new(u))),
    );
    tasks.extend(dirs.iter().map(|d| Sync::Dir(d)));
    let one = |t: Sync| match t {
        Sync::File(i, u) => u.sync_file().map(|p| Some((i, p))),
        Sync::Dir(d) => storage.sync_dir(d).map(|()| None),
    };
    let run = |tasks: Vec<Sync>| {
        tasks
            .into_par_iter()
            .map(one)
            .collect::<Vec<array_format::Result<Option<(usize, PreparedLayer)>>>>()
    };
    let results = match io_pool() {
        Some(pool) if n > 2 => pool.install(|| run(tasks)),
        _ => run(tasks),
    };
    let (synced, failed) = somes_and_first_error(results);
    match failed {
        None => Ok(synced),
        Some(e) => {
            for (_, p) in &synced {
                let _ = storage.remove_file(p.path());
            }
            Err(e.into())
        }
    }
}

type WriteGuards = Vec<(String, OwnedRwLockWriteGuard<ArrayFile>)>;

/// Flushes; with `snapshot`, the registry is rewritten as one snapshot segment
/// even if nothing changed (compaction of the registry).
pub(crate) async fn flush_with(inner: &Arc<Inner>, snapshot: bool) -> Result<()> {
    let _commit = inner.commit_lock.lock().await;
    if inner.poisoned.load(Ordering::SeqCst) {
        return Err(Error::Poisoned {
            path: inner.root.clone(),
        });
    }
    if inner.writer.lock().is_none() {
        // Never mutated through this handle: nothing to commit.
        return Ok(());
    }
    // Hold the structure lock for the whole flush: a dataset or array defined or
    // deleted meanwhile (possibly opening an array file this flush did not
    // lock) must land wholly in this commit or wholly in the next.
    let _structure = inner.structure.lock().await;
    // Array files whose statistics the catalog needs (data written since the
    // last commit, or every array of a store upgraded from segments).
    let need: std::collections::BTreeSet<String> = {
        let live = inner.live.read();
        live.changed
            .values()
            .filter_map(|(_, r)| r.as_ref())
            .flat_map(|r| {
                r.meta
                    .arrays
                    .keys()
                    .filter(|a| !r.stats.contains_key(*a))
                    .cloned()
            })
            .collect()
    };
    for a in &need {
        inner.file_async(a).await?;
    }
    let mut guards: WriteGuards = Vec::new();
    for (name, f) in inner.open_files() {
        guards.push((name, f.write_owned().await));
    }
    let inner2 = Arc::clone(inner);
    tokio::task::spawn_blocking(move || flush_sync(&inner2, guards, snapshot))
        .await
        .expect("flush task panicked")
}

/// Threads that sync a flush's layer files: an `fsync` of each file and
/// one of its directory, which on a disk wait for the device, not for a
/// core. Writing 84 files of 100 kB, each synced with its
/// directory, on this project's 2-core VM's ext4 took 21–57 ms on 2 threads
/// and 11–34 ms on 8 (a scratch program, two runs of 3 rounds). `None` if the pool
/// cannot be made (the caller then uses rayon's own).
fn io_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(IO_THREADS)
            .thread_name(|i| format!("atlas-io-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Threads of [`io_pool`].
const IO_THREADS: usize = 8;

/// Layers a flush writes before it syncs them ([`io_pool`]): each unsynced
/// layer holds its file open, so a flush of thousands of arrays stays far
/// below the descriptor limit.
const SYNC_BATCH: usize = 64;

/// The registry changes one flush commits: a copy of the handle's changes
/// (they stay in the handle until the commit succeeds).
struct Snapshot {
    /// Sorted by name; `None`: deleted.
    changes: Vec<(String, Option<Record>)>,
    /// Sequence number of each change, to forget exactly these after the commit.
    seqs: crate::FastMap<String, u64>,
    killed: RoaringTreemap,
    next_id: u64,
    n: u64,
    users: crate::FastIndexMap<String, u64>,
    base: Arc<RunSet>,
    base_next_id: u64,
}

impl Snapshot {
    fn take(inner: &Inner) -> Snapshot {
        let live = inner.live.read();
        let mut changes: Vec<(String, Option<Record>)> = live
            .changed
            .iter()
            .map(|(n, (_, r))| (n.clone(), r.clone()))
            .collect();
        changes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            changes,
            seqs: live
                .changed
                .iter()
                .map(|(n, (seq, _))| (n.clone(), *seq))
                .collect(),
            killed: live.killed.clone(),
            next_id: live.next_id,
            n: live.n,
            users: live.users.clone(),
            base: Arc::clone(&live.base),
            base_next_id: live.base_next_id,
        }
    }
}

/// The first run of `runs` that a flush adding `new_records` merges with its
/// changes: the newest runs while each is at most twice the records merged so
/// far (size-tiered, so a record is rewritten O(log n) times), and all of them
/// when more than [`MAX_RUNS`] would remain.
fn merge_from(runs: &[Arc<crate::registry::Run>], new_records: u64) -> usize {
    let mut k = runs.len();
    let mut sum = new_records.max(1);
    while k > 0 && runs[k - 1].n_records() <= 2 * sum {
        sum += runs[k - 1].n_records();
        k -= 1;
    }
    if k + 1 > MAX_RUNS {
        0
    } else {
        k
    }
}

/// Writes the flush's run (not yet synced: its handle is returned, see
/// [`RunWriter::finish_unsynced`](crate::registry::RunWriter)): the changes merged with `runs[from..]`. From 0,
/// tombstones and killed ids are dropped (no older run remains for them to
/// hide); otherwise they are kept. `compacting`: the run is a compaction's,
/// compressed harder. When the oldest merged run can be carried
/// ([`carries`]) it is; if that finds the carried run damaged (the carry
/// reads blocks a rewrite would not), the run is written again record by
/// record. Any other failure fails the flush.
fn write_run(
    inner: &Inner,
    snap: &Snapshot,
    from: usize,
    compacting: bool,
    path: &Path,
) -> Result<Box<dyn WriteHandle>> {
    let runs = &snap.base.runs[from..];
    let may_carry = !compacting && !runs.is_empty();
    // The ids the changes and the merged runs kill, read once: a merge that
    // keeps older runs writes them, and a carry must not meet them.
    let killed = if from > 0 || may_carry {
        let mut killed = snap.killed.clone();
        for r in runs {
            killed |= r.killed()?;
        }
        Some(killed)
    } else {
        None
    };
    if may_carry {
        let all_killed = killed.as_ref().expect("read above");
        if carries(&runs[0], &runs[1..], snap, from == 0, all_killed)? {
            match write_run_with(inner, snap, from, compacting, path, killed.as_ref(), true) {
                Ok(out) => return Ok(out),
                // Only damage in what was carried is worked around: a
                // storage failure fails the flush as it would without the
                // carry (retrying it here would hide it from the caller).
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported) => {
                    let _ = inner.storage.remove_file(path);
                }
                Err(e) => return Err(e),
            }
        }
    }
    write_run_with(inner, snap, from, compacting, path, killed.as_ref(), false)
}

/// [`write_run`], carrying the oldest merged run or not (`killed`: what
/// the changes and the merged runs kill, when `from > 0`).
fn write_run_with(
    inner: &Inner,
    snap: &Snapshot,
    from: usize,
    compacting: bool,
    path: &Path,
    killed: Option<&RoaringTreemap>,
    carry: bool,
) -> Result<Box<dyn WriteHandle>> {
    let storage = inner.storage.as_ref();
    let mut w = RunWriter::create(storage, path)?;
    let runs = &snap.base.runs[from..];
    if from > 0 {
        w.kill(killed.expect("write_run reads the killed ids when from > 0"));
    }
    let full = from == 0;
    if compacting {
        w.whole_registry();
    }
    // The oldest merged run is copied as it is stored when every other
    // source follows it in ids and kills none of them (a compaction
    // rewrites everything, at its own level).
    let mut sources = runs;
    let mut carried = None;
    if carry {
        carried = w.carry(&runs[0])?;
        if carried.is_some() {
            sources = &runs[1..];
        }
    }
    merge_runs(sources, snap.changes.clone(), |name, rec| {
        if let Some(c) = carried.as_mut() {
            w.carry_until(c, Some(name))?;
        }
        match rec {
            Some(MergeRec::Held(rec)) => w.record(name, &rec),
            Some(MergeRec::Stored(rec)) => w.record_stored(name, rec),
            // Tombstones hide older runs' records; with no older run left,
            // none.
            None if full => Ok(()),
            None => w.tombstone(name),
        }
    })?;
    if let Some(c) = carried.as_mut() {
        w.carry_until(c, None)?;
    }
    w.finish_unsynced()
}

/// Whether a merge of `oldest`, then `newer` runs, then the changes of
/// `snap` can carry `oldest` ([`RunWriter::carry`]): every other source's
/// live records have ids above its largest (so its catalog rows come first,
/// and none of its live records is updated), and no other source kills one
/// of its ids (so none is deleted or re-created). Its records then all
/// survive the merge, each the newest of its name (a newer tombstone of a
/// name it holds only as a tombstone replaces it). `killed`: the ids the
/// changes and the merged runs kill. With `full` (no older run remains) its
/// tombstones would have to go: a run holding any is not carried.
fn carries(
    oldest: &Run,
    newer: &[Arc<Run>],
    snap: &Snapshot,
    full: bool,
    killed: &RoaringTreemap,
) -> Result<bool> {
    if oldest.n_records() + oldest.n_tombstones() == 0 || (full && oldest.n_tombstones() > 0) {
        return Ok(false);
    }
    let ids = oldest.id_set()?;
    if let Some(max) = ids.max() {
        if snap
            .changes
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .any(|r| r.id <= max)
        {
            return Ok(false);
        }
        for r in newer {
            if r.id_set()?.min().is_some_and(|m| m <= max) {
                return Ok(false);
            }
        }
    }
    Ok(ids.is_disjoint(killed))
}

fn flush_sync(inner: &Inner, mut guards: WriteGuards, force_snapshot: bool) -> Result<()> {
    let was_dirty = inner.dirty.swap(false, Ordering::SeqCst);
    // Compaction rewrites the registry as one run (and upgrades a store
    // written before runs).
    let compact_registry = force_snapshot && {
        let c = inner.committed.lock();
        c.runs.len() > 1 || !c.segments.is_empty()
    };
    let has_changes = was_dirty || guards.iter().any(|(_, g)| g.has_pending());
    if !has_changes && !compact_registry {
        return Ok(());
    }
    // A commit that only rewrites the registry (compaction with nothing
    // pending) is logged as a compaction, not a flush.
    let op = if has_changes { "flush" } else { "compact" };
    let storage = inner.storage.as_ref();
    // The changes stay in the handle until the commit succeeds; a failed
    // flush only marks the handle dirty again.
    let give_back = || inner.dirty.store(true, Ordering::SeqCst);
    let mut snap = Snapshot::take(inner);
    // Statistics of arrays whose data changed, for the catalog.
    {
        let by_name: crate::FastMap<&str, &ArrayFile> =
            guards.iter().map(|(n, g)| (n.as_str(), &**g)).collect();
        // The index blocks those statistics read, fetched per array file in
        // one batch (one request per ~8 MiB on object stores, not per block).
        let mut wanted: crate::FastMap<&str, Vec<&str>> = crate::FastMap::default();
        for (name, rec) in &snap.changes {
            let Some(rec) = rec else { continue };
            for a in rec
                .meta
                .arrays
                .keys()
                .filter(|a| !rec.stats.contains_key(*a))
            {
                wanted.entry(a.as_str()).or_default().push(name.as_str());
            }
        }
        for (a, names) in &wanted {
            if let Some(f) = by_name.get(a) {
                f.prefetch_index(names);
            }
        }
        // Computed on every core (per dataset and array; the index blocks
        // were fetched above), then stored in order: the first error in that
        // order is returned.
        let missing: Vec<(usize, String)> = snap
            .changes
            .iter()
            .enumerate()
            .filter_map(|(i, (_, rec))| Some((i, rec.as_ref()?)))
            .flat_map(|(i, rec)| {
                rec.meta
                    .arrays
                    .keys()
                    .filter(|a| !rec.stats.contains_key(*a))
                    .map(move |a| (i, a.clone()))
            })
            .collect();
        let computed: Vec<Result<ArrayStats>> = missing
            .par_iter()
            .map(|(i, a)| {
                let name = &snap.changes[*i].0;
                match by_name.get(a.as_str()) {
                    Some(f) => f.array_stats(name).map_err(|e| Error::array(name, a, e)),
                    None => Err(Error::CorruptRegistry {
                        path: inner.root.join(REGISTRY_FILE),
                        reason: format!("dataset {name:?} has array {a:?}, which has no file"),
                    }),
                }
            })
            .collect();
        for ((i, a), stats) in missing.into_iter().zip(computed) {
            match stats {
                Ok(s) => {
                    let rec = snap.changes[i].1.as_mut().expect("listed above");
                    Arc::make_mut(&mut rec.stats).insert(a, s);
                }
                Err(e) => {
                    give_back();
                    return Err(e);
                }
            }
        }
    }
    let meta_dir = inner.root.join(META_DIR);
    let (committed_runs, committed_segments) = {
        let c = inner.committed.lock();
        (c.runs.clone(), c.segments.clone())
    };
    // The registry's new run: the changes, merged with the newest runs.
    let registry_changed = !snap.changes.is_empty() || !snap.killed.is_empty();
    let run = if registry_changed || compact_registry || !committed_segments.is_empty() {
        let from = if force_snapshot || !committed_segments.is_empty() {
            0
        } else {
            merge_from(&snap.base.runs, snap.changes.len() as u64)
        };
        Some((RunId::fresh(), from))
    } else {
        None
    };
    let run_path = run.as_ref().map(|(id, _)| meta_dir.join(id.as_str()));
    // The runtime this commit runs on (its blocking pool runs the syncs
    // below; the closures run on rayon's workers, which have none).
    let rt = tokio::runtime::Handle::try_current().ok();
    // The new files, written in parallel: a layer per array file with
    // pending changes, and the registry's run beside them (neither reads
    // the other; the manifest that names them all replaces the current one
    // once both are durable).
    let (layers, written_run) = rayon::join(
        || {
            // In batches of SYNC_BATCH layers: each unsynced layer holds its
            // file open (and, on an object store, its unsent bytes) until
            // it is synced. The last batch is synced on another thread
            // ([`Background`]) while the commit builds and stages its
            // manifest.
            let mut w = Written::default();
            let n_batches = guards.len().div_ceil(SYNC_BATCH);
            for (k, batch) in guards.chunks(SYNC_BATCH).enumerate() {
                let written = batch
                    .par_iter()
                    .enumerate()
                    .map(|(j, (_, g))| {
                        Ok(g.write_pending_unsynced()?.map(|u| (k * SYNC_BATCH + j, u)))
                    })
                    .collect::<Vec<Result<Option<(usize, UnsyncedLayer)>>>>();
                let (unsynced, failed) = somes_and_first_error(written);
                if let Some(e) = failed {
                    // The commit fails: nothing more is written or synced.
                    for (_, u) in unsynced {
                        u.discard();
                    }
                    w.discard(storage);
                    return Err(e);
                }
                if k + 1 < n_batches {
                    match sync_layers(&inner.storage, rt.as_ref(), unsynced) {
                        Ok(p) => w.add(p),
                        Err(e) => {
                            w.discard(storage);
                            return Err(e);
                        }
                    }
                } else if !unsynced.is_empty() {
                    w.ids
                        .extend(unsynced.iter().map(|(i, u)| (*i, u.id(), u.len_bytes())));
                    let (storage, pool) = (Arc::clone(&inner.storage), rt.clone());
                    w.syncing = Some(Background::start(rt.as_ref(), move || {
                        sync_layers(&storage, pool.as_ref(), unsynced)
                    }));
                }
            }
            Ok(w)
        },
        || {
            let ((id, from), path) = run.as_ref().zip(run_path.as_ref())?;
            let written = storage
                .create_dir_all(&meta_dir)
                .map_err(Error::from)
                .and_then(|()| write_run(inner, &snap, *from, force_snapshot, path));
            // On a filesystem the run is read back before it is durable,
            // and synced (the file, then `atlas.meta/`) on another thread
            // ([`Background`]) while the commit goes on; an object store's
            // upload is its sync, and comes first.
            Some(written.and_then(|mut out| {
                if storage.is_object_store() {
                    out.sync()?;
                    storage.sync_dir(&meta_dir)?;
                    Ok((crate::registry::Run::open(storage, path, id.clone())?, None))
                } else {
                    let run = crate::registry::Run::open(storage, path, id.clone())?;
                    let (st, dir) = (Arc::clone(&inner.storage), meta_dir.clone());
                    let syncing = Background::start(rt.as_ref(), move || -> Result<()> {
                        let mut out = out;
                        out.sync()?;
                        drop(out);
                        st.sync_dir(&dir)?;
                        Ok(())
                    });
                    Ok((run, Some(syncing)))
                }
            }))
        },
    );
    let fail_before = |w: Written, e: Error| {
        w.discard(storage);
        if let Some(p) = &run_path {
            let _ = storage.remove_file(p);
        }
        give_back();
        e
    };
    let (mut written, new_run) = match (layers, written_run) {
        (Err(e), run) => {
            let mut w = Written::default();
            if let Some(Ok((_, run_sync))) = run {
                w.run_sync = run_sync;
            }
            return Err(fail_before(w, e));
        }
        (Ok(w), Some(Err(e))) => return Err(fail_before(w, e)),
        (Ok(mut w), Some(Ok((r, run_sync)))) => {
            w.run_sync = run_sync;
            (w, Some(r))
        }
        (Ok(w), None) => (w, None),
    };
    // What this commit does to history (reads tagged generations' copies).
    let step = {
        let (hist, parent, policy) = {
            let c = inner.committed.lock();
            (c.history.clone(), c.generation, c.policy)
        };
        let (tags, dead) = (hist.tags.clone(), hist.dead_tags.clone());
        match super::history::Step::plan(inner, &hist, parent, policy, None, tags, dead) {
            Ok(s) => s,
            Err(e) => return Err(fail_before(written, e)),
        }
    };
    let new_gen = step.generation();
    let (manifest, dropped, expired) = {
        let committed = inner.committed.lock();
        let used = |a: &str| snap.users.get(a).is_some_and(|n| *n > 0);
        let mut arrays: IndexMap<String, Vec<LayerId>> = IndexMap::new();
        for (name, layers) in &committed.arrays {
            if used(name) {
                arrays.insert(name.clone(), layers.clone());
            }
        }
        // Layers written for arrays no dataset uses any more are never named
        // by a commit: deleted right after this one.
        let mut unnamed: Vec<Retired> = Vec::new();
        for (i, id, _) in &written.ids {
            let (i, id) = (*i, id.clone());
            let name = &guards[i].0;
            if used(name) {
                arrays.entry(name.clone()).or_default().push(id);
            } else {
                unnamed.push(Retired {
                    dir: inner.dir_or_assign(name),
                    file: id.as_str().to_owned(),
                    since_ms: 0,
                    generation: 0,
                });
            }
        }
        // Arrays in order of first use (as `Atlas::list_arrays` lists them).
        arrays.sort_by_cached_key(|k, _| snap.users.get_index_of(k).unwrap_or(usize::MAX));
        let dropped: Vec<(String, Vec<LayerId>)> = committed
            .arrays
            .iter()
            .filter(|(n, _)| !arrays.contains_key(*n))
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect();
        let (runs, retired_meta): (Vec<RunId>, Vec<String>) = match &run {
            Some((id, from)) => {
                let mut runs = committed_runs[..*from].to_vec();
                runs.push(id.clone());
                let retired = committed_runs[*from..]
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .chain(committed_segments.iter().map(|s| s.as_str().to_owned()))
                    .collect();
                (runs, retired)
            }
            None => (committed_runs.clone(), Vec::new()),
        };
        let now = now_ms();
        let newly = dropped
            .iter()
            .flat_map(|(name, layers)| {
                let dir = inner
                    .dir_of(name)
                    .expect("a committed array has a directory");
                layers.iter().map(move |l| Retired {
                    dir: dir.clone(),
                    file: l.as_str().to_owned(),
                    since_ms: now,
                    generation: new_gen,
                })
            })
            .chain(retired_meta.into_iter().map(|file| Retired {
                dir: META_DIR.to_owned(),
                file,
                since_ms: now,
                generation: new_gen,
            }));
        debug_assert!(
            committed.retired_loaded,
            "the writer loads the retired list"
        );
        let settled = step.settle(
            &committed.retired_sealed,
            &committed.retired,
            newly,
            now,
            committed.policy,
        );
        let (dirs, next_dir) = inner.dirs_for(arrays.keys());
        let users = arrays
            .keys()
            .map(|a| (a.clone(), snap.users.get(a).copied().unwrap_or(0)))
            .collect();
        let mut manifest = Manifest::new(inner.compression, inner.meta_format);
        manifest.generation = committed.generation + 1;
        manifest.arrays = arrays;
        manifest.dirs = dirs;
        manifest.next_dir = next_dir;
        manifest.runs = runs;
        manifest.next_id = snap.next_id;
        manifest.n_datasets = snap.n;
        manifest.users = users;
        manifest.policy = committed.policy;
        let mut expired = settled.apply(&mut manifest);
        expired.extend(unnamed);
        manifest.retired_file.clone_from(&committed.retired_file);
        (manifest, dropped, expired)
    };
    // A directory created by this flush (a new array's, or `atlas.meta/` of a
    // store created elsewhere) must be durable before the manifest that names
    // files in it: its entry lives in the root directory, which the
    // manifest's own directory fsync covers only after the rename.
    let new_dirs = {
        let c = inner.committed.lock();
        written
            .ids
            .iter()
            .any(|(i, _, _)| !c.arrays.contains_key(&guards[*i].0))
    } || (run.is_some() && committed_runs.is_empty());
    let new_runs: Option<RunSet> = run.as_ref().zip(new_run).map(|((_, from), r)| {
        let mut runs = snap.base.runs[..*from].to_vec();
        runs.push(Arc::new(r));
        RunSet::from_runs(runs)
    });
    let mut manifest = manifest;
    // The commit's record: datasets added (new ids), changed, deleted, and
    // the bytes of the files it wrote.
    let counts = {
        let (mut added, mut changed, mut deleted) = (0, 0, 0);
        for (_, r) in &snap.changes {
            match r {
                Some(r) if r.id >= snap.base_next_id => added += 1,
                Some(_) => changed += 1,
                None => deleted += 1,
            }
        }
        let bytes = written.ids.iter().map(|(_, _, b)| b).sum::<u64>()
            + new_runs
                .as_ref()
                .and_then(|r| r.runs.last())
                .map_or(0, |r| r.len());
        [added, changed, deleted, bytes]
    };
    step.stamp(&mut manifest, op, None, counts, now_ms());
    // The last layers were being synced meanwhile (see `Written`): the
    // manifest is staged beside the current one while they finish, and
    // only the rename waits for them. A directory this commit made in the
    // root must be durable first too.
    let staged = (|| {
        if new_dirs {
            storage.sync_dir(&inner.root)?;
        }
        step.write_copy(storage, &inner.root, &manifest)?;
        stage_manifest(storage, &inner.root, &mut manifest).map_err(Error::from)
    })();
    let synced = written.wait(storage);
    let staged = match (synced, staged) {
        (Ok(()), Ok(staged)) => staged,
        (Ok(()), Err(e)) => return Err(fail_before(written, e)),
        (Err(e), staged) => {
            if let Ok(staged) = staged {
                abandon_manifest(storage, &inner.root, &mut manifest, staged);
            }
            return Err(fail_before(written, e));
        }
    };
    let expected = inner.committed.lock().version.clone();
    let version = match finish_manifest(
        storage,
        &inner.root,
        &mut manifest,
        staged,
        expected.as_ref(),
    ) {
        Ok(v) => v,
        Err(CommitError::Before(e)) => return Err(fail_before(written, e.into())),
        Err(CommitError::Conflict) => {
            // Another writer's commit stands: this handle's snapshot is stale
            // and its changes stay pending (nothing here is named by a commit).
            return Err(fail_before(
                written,
                Error::CommitConflict {
                    path: inner.root.clone(),
                },
            ));
        }
        Err(CommitError::Unknown(e)) => {
            inner.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
    };
    // Committed. Make memory match (the history state holds the manifest as
    // written, commit id included: its history copy once superseded).
    let history = super::history::HistoryState::of(&manifest);
    // Each array file installs its own layer, on every core.
    let mut layers: Vec<Option<PreparedLayer>> = (0..guards.len()).map(|_| None).collect();
    for (i, p) in written.prepared {
        layers[i] = Some(p);
    }
    let installed: Vec<array_format::Result<()>> = guards
        .par_iter_mut()
        .zip(layers)
        .filter_map(|((_, g), p)| Some(g.install(p?)))
        .collect();
    if let Some(e) = installed.into_iter().find_map(std::result::Result::err) {
        inner.poisoned.store(true, Ordering::SeqCst);
        return Err(e.into());
    }
    {
        let mut live = inner.live.write();
        if let Some(runs) = new_runs {
            live.base = Arc::new(runs);
        }
        live.base_next_id = snap.next_id;
        // Forget exactly the changes this commit wrote; later ones stay.
        live.changed
            .retain(|n, (seq, _)| snap.seqs.get(n) != Some(seq));
        live.killed -= &snap.killed;
    }
    {
        let mut c = inner.committed.lock();
        c.generation = manifest.generation;
        c.version = Some(version);
        c.arrays = manifest.arrays;
        c.segments = manifest.segments;
        c.runs = manifest.runs;
        c.retired = manifest.retired;
        c.retired_sealed = manifest.retired_sealed;
        c.retired_file = manifest.retired_file;
        c.retired_loaded = true;
        c.history = history;
    }
    step.after(storage, &inner.root);
    // Arrays no dataset uses any more: their layers are retired (deleted after
    // the grace period), their in-memory files forgotten now.
    let dropped_names: HashSet<&str> = dropped.iter().map(|(n, _)| n.as_str()).collect();
    guards.retain(|(n, _)| !dropped_names.contains(n.as_str()));
    drop(guards);
    for (name, _) in &dropped {
        inner.forget_file(name);
        inner.forget_dir(name);
    }
    delete_expired(inner, &expired);
    // The commit's copy of the changes (every changed record, with the
    // statistics computed above) is freed on the pool, not on the
    // committing thread: an import's writer waits for the flush, and the
    // drop was a third of what a flush does besides its files.
    rayon::spawn(move || drop(snap));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use array_format::MemoryStorage;
    use ndarray::{ArrayD, IxDyn};

    use crate::{Atlas, OpenOptions, StoreConfig};

    const ROOT: &str = "/store";

    /// `beside` runs its two halves at once (each waits for the other's
    /// message after sending its own: one after the other, in either
    /// order, the first would give up after 10 s) and gives back both
    /// results; a panic in the helper thread's half reaches the caller.
    #[test]
    fn beside_runs_both_halves_at_once() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        if super::threads_refused() {
            // One after the other, by design (`ATLAS_TEST_SYNC_LATER`).
            assert_eq!(super::beside(|| 1, || 2), (1, 2));
            return;
        }
        let (to_b, from_a) = channel();
        let (to_a, from_b) = channel();
        let (a, b) = super::beside(
            move || {
                to_b.send('a').unwrap();
                from_b.recv_timeout(Duration::from_secs(10))
            },
            move || {
                to_a.send('b').unwrap();
                from_a.recv_timeout(Duration::from_secs(10))
            },
        );
        assert_eq!(a, Ok('b'));
        assert_eq!(b, Ok('a'));
        let caught = std::panic::catch_unwind(|| {
            super::beside(|| -> u8 { panic!("in the helper") }, || 1u8)
        });
        assert!(caught.is_err());
    }

    /// `Background` runs its work on the runtime's blocking pool while the
    /// caller goes on (each side waits for the other's message); work no
    /// thread has taken runs on the waiter (a pool whose one thread is
    /// busy: no deadlock); work dropped before it started never runs; a
    /// panic in the work reaches the waiter.
    #[test]
    fn background_work_runs_beside_or_on_the_waiter() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc::channel;
        use std::time::Duration;
        // One blocking thread and no worker threads (a worker may count
        // against the blocking pool's limit in a multi-thread runtime).
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let h = rt.handle();
        if !super::threads_refused() {
            let (to_job, from_test) = channel();
            let (to_test, from_job) = channel();
            let job = super::Background::start(Some(h), move || {
                to_test.send(1).unwrap();
                from_test.recv_timeout(Duration::from_secs(10))
            });
            assert_eq!(from_job.recv_timeout(Duration::from_secs(10)), Ok(1));
            to_job.send(2).unwrap();
            assert_eq!(job.wait(), Ok(2));
        }
        // The pool's one thread busy: the work runs on the waiter.
        let (release, wait_release) = channel::<()>();
        let (started, is_busy) = channel();
        let occupant = h.spawn_blocking(move || {
            started.send(()).unwrap();
            wait_release.recv().unwrap();
        });
        is_busy.recv().unwrap();
        let here = std::thread::current().id();
        let job = super::Background::start(Some(h), || std::thread::current().id());
        assert_eq!(job.wait(), here);
        // A panic in work run on the waiter reaches the waiter.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::Background::start(Some(h), || -> u8 { panic!("on the waiter") }).wait()
        }));
        assert!(caught.is_err());
        // Dropped before any thread took it: it never runs, even once the
        // pool is free again (the empty task below ends after the pool's
        // thread has come to it; with tokio's queue in order, after it).
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        drop(super::Background::start(Some(h), move || {
            flag.store(true, Ordering::SeqCst);
        }));
        release.send(()).unwrap();
        rt.block_on(occupant).unwrap();
        rt.block_on(h.spawn_blocking(|| ())).unwrap();
        assert!(!ran.load(Ordering::SeqCst));
        // A panic on the pool's thread reaches the waiter: the work has
        // started (it sent its message) before the wait.
        if !super::threads_refused() {
            let (to_test, from_job) = channel();
            let job = super::Background::start(Some(h), move || -> u8 {
                to_test.send(()).unwrap();
                panic!("on the pool")
            });
            from_job.recv_timeout(Duration::from_secs(10)).unwrap();
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.wait()));
            assert!(caught.is_err());
        }
    }

    /// A store of 40 datasets `x000`… (`T` = [i, i + 0.5]) in one run.
    async fn forty(storage: &MemoryStorage) -> Atlas {
        let a = Atlas::create_with(
            Arc::new(storage.clone()),
            Path::new(ROOT),
            StoreConfig::default(),
        )
        .await
        .unwrap();
        for i in 0..40u16 {
            add(&a, &format!("x{i:03}"), f32::from(i)).await;
        }
        a.flush().await.unwrap();
        a
    }

    async fn reopen(storage: &MemoryStorage) -> Atlas {
        Atlas::open_with(
            Arc::new(storage.clone()),
            Path::new(ROOT),
            OpenOptions::default(),
        )
        .await
        .unwrap()
    }

    async fn add(a: &Atlas, name: &str, v: f32) {
        let ds = a.create_dataset(name).await.unwrap();
        ds.define_array::<f32>("T", vec!["N".into()], vec![2], None, None)
            .await
            .unwrap();
        let data = ArrayD::from_shape_vec(IxDyn(&[2]), vec![v, v + 0.5]).unwrap();
        ds.write_array("T", vec![], data.view()).await.unwrap();
    }

    /// A carry reads the oldest run's id and catalog blocks, which a merge
    /// record by record does not: when one of them is damaged, the flush
    /// writes its run again without carrying, and the new run (its columns
    /// built from the records) replaces the damaged one.
    #[tokio::test]
    async fn a_damaged_carried_run_is_merged_record_by_record() {
        let storage = MemoryStorage::new();
        let a = forty(&storage).await;
        let (path, off) = {
            let live = a.inner.live.read();
            let run = live.base.runs.last().expect("the flush wrote a run");
            let (p, off) = run.first_id_block().expect("the run has ids");
            (p.to_owned(), off)
        };
        drop(a);
        let mut bytes = storage.contents(&path).unwrap();
        bytes[off as usize + 2] ^= 0x5a;
        storage.overwrite(&path, bytes);
        let a = reopen(&storage).await;
        // New datasets' ids are above every one of the run's, and enough of
        // them that the flush merges the run: it is carried.
        for i in 0..20u16 {
            add(&a, &format!("y{i:03}"), 100.0 + f32::from(i)).await;
        }
        a.flush().await.expect("the flush works around the damage");
        {
            let live = a.inner.live.read();
            let runs = &live.base.runs;
            assert_eq!(runs.len(), 1, "the damaged run merged");
            let (p, _) = runs[0].first_id_block().unwrap();
            assert_ne!(p, path, "the damaged run replaced");
        }
        drop(a);
        let a = reopen(&storage).await;
        let listed = a.list_datasets_with_ids().unwrap();
        assert_eq!(listed.len(), 60);
        assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "ids in order");
        for (i, (_, name)) in listed.iter().enumerate() {
            let want = if i < 40 {
                format!("x{i:03}")
            } else {
                format!("y{:03}", i - 40)
            };
            assert_eq!(*name, want, "listed in creation order");
            let v = if i < 40 { i as f32 } else { 60.0 + i as f32 };
            let back = a
                .open_dataset(name)
                .await
                .unwrap()
                .read_array::<f32>("T", vec![], vec![])
                .await
                .unwrap()
                .expect("T is defined");
            assert_eq!(back.into_iter().collect::<Vec<_>>(), [v, v + 0.5], "{name}");
        }
        assert!(crate::verify::verify(&a, |_, _| {}).problems.is_empty());
    }

    /// A storage failure while a run is carried fails the flush (the
    /// fallback above is for damage only), and the changes stay pending.
    #[tokio::test]
    async fn a_storage_failure_in_a_carry_fails_the_flush() {
        use array_format::storage::{Fault, FaultKind};
        let storage = MemoryStorage::new();
        let a = forty(&storage).await;
        // Datasets with attributes only: the flush writes no layer, so its
        // first operation is the creation of its run, which carries the
        // first one.
        for i in 0..20i64 {
            let ds = a.create_dataset(&format!("y{i:03}")).await.unwrap();
            ds.set_attribute("n", crate::Attr::Int64(i)).unwrap();
        }
        storage.arm_fault(Fault {
            nth: 0,
            kind: FaultKind::Fail,
        });
        assert!(a.flush().await.is_err(), "the failed create is reported");
        storage.disarm();
        a.flush().await.unwrap();
        drop(a);
        let a = reopen(&storage).await;
        assert_eq!(a.list_datasets().unwrap().len(), 60);
        let ds = a.open_dataset("y019").await.unwrap();
        assert_eq!(ds.attributes().get("n"), Some(&crate::Attr::Int64(19)));
    }
}
