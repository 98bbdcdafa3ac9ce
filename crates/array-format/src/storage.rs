//! The storage seam: every byte `array-format` and the store read or write goes
//! through [`Storage`].
//!
//! The seam is object-shaped: whole-object reads with a version
//! ([`Storage::read_versioned`]), positional and batched ranged reads
//! ([`ReadHandle::read_exact_at`], [`ReadHandle::read_ranges`]), new objects
//! that exist only once complete ([`Storage::create_new`] + [`WriteHandle::sync`]),
//! a conditional replace ([`Storage::replace_if`], the commit point), listing
//! and deletion. Filesystem-only operations (directories, renames, locks) are
//! no-ops or unsupported on object stores, and the store does not rely on them
//! there ([`Storage::is_object_store`]).
//!
//! Backends: [`LocalStorage`] (the filesystem), [`MemoryStorage`] (in memory,
//! with deterministic fault injection for tests) and, with the `object-store`
//! feature, `ObjectStorage` (S3, GCS, Azure and in-memory object stores
//! through the `object_store` crate).
//!
//! Calls are synchronous and may block: the store makes them from tokio's
//! blocking pool, never from a runtime worker thread; `ObjectStorage` runs its
//! requests on its own I/O runtime.
//!
//! **Invariant:** a [`ReadHandle`] reads the bytes it was opened on or fails:
//! never other bytes. [`MemoryStorage`] handles are snapshots; [`LocalStorage`]
//! handles keep their descriptor unless the bounded descriptor table evicts it,
//! and then reopen the path only if it is still the same file (inode). A file
//! removed while evicted is an error, which is why the store deletes retired
//! files only after a grace period.

mod local;
mod memory;
#[cfg(feature = "object-store")]
mod object;

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub use local::LocalStorage;
pub use memory::{Fault, FaultKind, MemoryStorage, Op};
#[cfg(feature = "object-store")]
pub use object::{ObjectStorage, ObjectStoreStats};

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

    /// The length, fetching it if the handle was opened lazily (object
    /// stores learn it from the first read). [`ReadHandle::len`] is exact once
    /// this succeeded.
    fn try_len(&self) -> Result<u64> {
        Ok(self.len())
    }

    /// Reads several `(offset, len)` ranges; object stores issue them
    /// concurrently. The result is in the order of `ranges`.
    fn read_ranges(&self, ranges: &[(u64, usize)]) -> Result<Vec<Vec<u8>>> {
        ranges
            .iter()
            .map(|&(offset, len)| self.read_vec_at(offset, len))
            .collect()
    }

    /// [`ReadHandle::read_ranges`] only if no range has to wait for a device
    /// or a network: `None` when some range is not in memory already (for a
    /// local file, in the page cache), or when the handle cannot tell (the
    /// default; object stores). An async caller can then read on its own
    /// thread what would otherwise cost a round trip to a blocking thread,
    /// and hand only the reads that would wait to one. Buffers are taken
    /// from `spare` where the handle can, as in
    /// [`ReadHandle::read_ranges_reusing`]; on `None` they go back to it.
    fn read_ranges_nowait(
        &self,
        ranges: &[(u64, usize)],
        spare: &mut Vec<Vec<u8>>,
    ) -> Option<Vec<Vec<u8>>> {
        let _ = (ranges, spare);
        None
    }

    /// True when a read costs about its copy and little more (a local file,
    /// memory): a scan then fetches its blocks a window at a time, into
    /// buffers it reuses while they are still in the CPU's caches. False
    /// (the default) where each request waits a round trip (object stores):
    /// a scan then asks for all of its ranges at once.
    fn reads_cheaply(&self) -> bool {
        false
    }

    /// [`ReadHandle::read_ranges`], into buffers taken from `spare` where
    /// the handle can (their memory reused: a caller that reads again and
    /// again allocates, zeroes and faults in nothing new). Each buffer
    /// returned holds exactly its range. The default ignores `spare`; local
    /// and in-memory files reuse it.
    fn read_ranges_reusing(
        &self,
        ranges: &[(u64, usize)],
        spare: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>> {
        let _ = spare;
        self.read_ranges(ranges)
    }
}

/// [`ReadHandle::read_ranges_reusing`] by positional reads into `spare`'s
/// buffers (a buffer is zeroed only where it grows). On an error the
/// buffers go back to `spare`.
pub(crate) fn read_ranges_reusing<H: ReadHandle + ?Sized>(
    handle: &H,
    ranges: &[(u64, usize)],
    spare: &mut Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(ranges.len());
    for &(offset, len) in ranges {
        let mut buf = spare.pop().unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        } else {
            buf.truncate(len);
        }
        if let Err(e) = handle.read_exact_at(offset, &mut buf) {
            spare.push(buf);
            spare.append(&mut out);
            return Err(e);
        }
        out.push(buf);
    }
    Ok(out)
}

/// An opaque version of a stored object, for [`Storage::replace_if`] (an
/// `ETag` on object stores, a content hash on filesystems), with the
/// object's version where the store reports one (the generation on GCS,
/// which its conditional update needs; the version id on S3 buckets with
/// versioning).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub(crate) String, pub(crate) Option<String>);

impl Version {
    /// The version as text (for messages and logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version a filesystem backend gives `bytes`: a 128-bit hash of the
    /// content (compared only within one process).
    pub(crate) fn of_content(bytes: &[u8]) -> Version {
        let mut a = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut a);
        let mut b = std::collections::hash_map::DefaultHasher::new();
        0x000a_71a5_u32.hash(&mut b);
        bytes.hash(&mut b);
        Version(
            format!("{:016x}{:016x}-{}", a.finish(), b.finish(), bytes.len()),
            None,
        )
    }
}

/// One entry of [`Storage::list_entries`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name within the listed directory or prefix.
    pub name: String,
    /// Size in bytes (0 for directories and prefixes).
    pub len: u64,
    /// Last modification, where the backend knows it.
    pub modified: Option<SystemTime>,
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

    /// Hands what is buffered to the storage and frees the buffer, without
    /// making anything durable: for a writer that holds many handles open
    /// until it syncs them together. The default does nothing (a handle
    /// whose buffer is its upload keeps it).
    fn release_buffer(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A replacement staged by [`Storage::stage_replace`], not yet visible at
/// its path: give it to [`Storage::finish_replace`] or
/// [`Storage::discard_staged`] (dropped otherwise, a filesystem's temporary
/// file stays behind, as after a crash).
#[derive(Debug)]
#[must_use = "a staged replacement changes nothing until it is finished"]
pub struct StagedReplace {
    path: PathBuf,
    staged: Staged,
}

/// What a [`StagedReplace`] holds.
#[derive(Debug)]
enum Staged {
    /// A synced temporary file, and the version its bytes will have.
    File { tmp: PathBuf, version: Version },
    /// The bytes, for a storage whose replacement is one request.
    Bytes(Vec<u8>),
}

impl StagedReplace {
    /// A replacement that keeps `bytes` in memory until it is finished
    /// (object stores: their [`Storage::replace_if`] is one atomic request,
    /// which `finish_replace` then makes).
    pub(crate) fn in_memory(path: &Path, bytes: &[u8]) -> StagedReplace {
        StagedReplace {
            path: path.to_owned(),
            staged: Staged::Bytes(bytes.to_vec()),
        }
    }
}

/// Stages a replacement of `path` in a synced temporary file of its
/// directory (removed again if that fails).
fn stage_in_file<S: Storage + ?Sized>(
    storage: &S,
    path: &Path,
    bytes: &[u8],
) -> Result<StagedReplace> {
    let dir = path.parent().unwrap_or(Path::new(""));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let tmp = dir.join(format!(".{name}.tmp-{:032x}", crate::file::random_uid()));
    if let Err(e) = storage.write_new_synced(&tmp, bytes) {
        let _ = storage.remove_file(&tmp);
        return Err(e);
    }
    Ok(StagedReplace {
        path: path.to_owned(),
        staged: Staged::File {
            tmp,
            version: Version::of_content(bytes),
        },
    })
}

/// `Ok` when `path`'s current version (of its content; `None` when it does
/// not exist) is `expected`, else [`crate::Error::Conflict`].
fn check_current<S: Storage + ?Sized>(
    storage: &S,
    path: &Path,
    expected: Option<&Version>,
) -> Result<()> {
    let current = match storage.read_all(path) {
        Ok(b) => Some(Version::of_content(&b)),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    if current.as_ref() != expected {
        return Err(crate::Error::Conflict {
            path: path.to_owned(),
            expected: expected.map(|v| v.0.clone()),
            found: current.map(|v| v.0),
        });
    }
    Ok(())
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
    /// `Ok(None)` when another holder has it. Object stores have no locks and
    /// always grant it: there the conditional [`Storage::replace_if`] of the
    /// manifest is the correctness mechanism.
    fn try_lock(&self, path: &Path) -> Result<Option<Box<dyn LockGuard>>>;

    /// True for object stores: no directories, no renames, no locks, no
    /// descriptors pinning a snapshot, and other machines may write
    /// concurrently (so nothing unnamed may be deleted before a grace period).
    fn is_object_store(&self) -> bool {
        false
    }

    /// Entries of a directory (or prefix) with sizes and modification times.
    fn list_entries(&self, path: &Path) -> Result<Vec<Entry>> {
        Ok(self
            .list_dir(path)?
            .into_iter()
            .map(|name| Entry {
                name,
                len: 0,
                modified: None,
            })
            .collect())
    }

    /// Where scratch files (spilled pending data that never becomes part of
    /// the store) go instead of `dir`: `None` keeps them beside the data.
    /// Object stores put them on local disk.
    fn scratch_location(&self, _dir: &Path) -> Option<(Arc<dyn Storage>, PathBuf)> {
        None
    }

    /// Reads a whole object and its current [`Version`].
    fn read_versioned(&self, path: &Path) -> Result<(Vec<u8>, Version)> {
        let bytes = self.read_all(path)?;
        let v = Version::of_content(&bytes);
        Ok((bytes, v))
    }

    /// Replaces the object at `path` with `bytes` if its current version is
    /// `expected` (`None`: only if nothing is there), durably, and returns the
    /// new version. A different current version is [`crate::Error::Conflict`]
    /// and changes nothing. Any other error leaves the outcome unknown (the
    /// write may have landed): callers that must know read it back.
    ///
    /// On filesystems this is [`Storage::stage_replace`] then
    /// [`Storage::finish_replace`]: a temporary file, fsync, the version
    /// check, rename over `path` and a directory fsync; the check and the
    /// rename are atomic only against writers that hold the store's writer
    /// lock, which the store takes first.
    fn replace_if(&self, path: &Path, bytes: &[u8], expected: Option<&Version>) -> Result<Version> {
        let staged = stage_in_file(self, path, bytes)?;
        self.finish_replace(staged, expected)
    }

    /// The first half of [`Storage::replace_if`]: `bytes` made durable
    /// beside `path` without changing what `path` holds (on filesystems a
    /// temporary file in `path`'s directory, written and fsynced; object
    /// stores keep the bytes, since their replacement is one request).
    /// [`Storage::finish_replace`] then puts them in place, or
    /// [`Storage::discard_staged`] drops them. A caller with other files to
    /// make durable before the replacement (a side file the new manifest
    /// names) writes them while this runs.
    fn stage_replace(&self, path: &Path, bytes: &[u8]) -> Result<StagedReplace> {
        if self.is_object_store() {
            // Its `replace_if` is the one atomic request: no temporary
            // object and rename.
            return Ok(StagedReplace::in_memory(path, bytes));
        }
        stage_in_file(self, path, bytes)
    }

    /// The second half of [`Storage::replace_if`]: puts the staged bytes at
    /// their path if its current version is `expected`, with the same
    /// outcomes and errors as `replace_if` (a conflict changes nothing and
    /// removes the staged file).
    fn finish_replace(&self, staged: StagedReplace, expected: Option<&Version>) -> Result<Version> {
        let StagedReplace { path, staged } = staged;
        let (tmp, version) = match staged {
            Staged::Bytes(bytes) => return self.replace_if(&path, &bytes, expected),
            Staged::File { tmp, version } => (tmp, version),
        };
        if let Err(e) = check_current(self, &path, expected) {
            let _ = self.remove_file(&tmp);
            return Err(e);
        }
        if let Err(e) = self.rename(&tmp, &path) {
            let _ = self.remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir(path.parent().unwrap_or(Path::new("")))?;
        Ok(version)
    }

    /// Drops a [`Storage::stage_replace`] that will not be finished (its
    /// temporary file removed, best effort).
    fn discard_staged(&self, staged: StagedReplace) {
        if let Staged::File { tmp, .. } = staged.staged {
            let _ = self.remove_file(&tmp);
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries of `dir` that are temporary files of a replacement.
    fn temporaries(s: &dyn Storage, dir: &Path) -> Vec<String> {
        let mut t: Vec<String> = s
            .list_dir(dir)
            .unwrap()
            .into_iter()
            .filter(|n| n.contains(".tmp-"))
            .collect();
        t.sort();
        t
    }

    /// A staged replacement changes nothing until it is finished; finishing
    /// it is `replace_if` (same version, same conflict); a conflict or a
    /// discard leaves no temporary file behind.
    fn staged_replacements_on(s: &dyn Storage, dir: &Path) {
        s.create_dir_all(dir).unwrap();
        let path = dir.join("m.json");
        // Onto nothing: finished with `None` expected.
        let staged = s.stage_replace(&path, b"one").unwrap();
        assert!(!s.exists(&path).unwrap(), "staged bytes visible");
        assert_eq!(temporaries(s, dir).len(), 1);
        let v1 = s.finish_replace(staged, None).unwrap();
        assert_eq!(s.read_all(&path).unwrap(), b"one");
        assert!(temporaries(s, dir).is_empty());
        // Over a version: the old bytes stay until the finish.
        let staged = s.stage_replace(&path, b"two").unwrap();
        assert_eq!(s.read_all(&path).unwrap(), b"one");
        let v2 = s.finish_replace(staged, Some(&v1)).unwrap();
        assert_eq!(s.read_all(&path).unwrap(), b"two");
        assert_eq!(v2, Version::of_content(b"two"));
        // A stale version: a conflict, nothing changed, nothing left.
        let staged = s.stage_replace(&path, b"three").unwrap();
        let e = s.finish_replace(staged, Some(&v1)).unwrap_err();
        assert!(matches!(e, crate::Error::Conflict { .. }), "{e}");
        let staged = s.stage_replace(&path, b"three").unwrap();
        let e = s.finish_replace(staged, None).unwrap_err();
        assert!(matches!(e, crate::Error::Conflict { .. }), "{e}");
        assert_eq!(s.read_all(&path).unwrap(), b"two");
        assert!(temporaries(s, dir).is_empty());
        // Discarded: nothing changed, nothing left.
        let staged = s.stage_replace(&path, b"four").unwrap();
        s.discard_staged(staged);
        assert_eq!(s.read_all(&path).unwrap(), b"two");
        assert!(temporaries(s, dir).is_empty());
        // The version `replace_if` gives the same bytes.
        assert_eq!(s.replace_if(&path, b"five", Some(&v2)).unwrap(), {
            Version::of_content(b"five")
        });
    }

    #[test]
    fn staged_replacements_in_memory() {
        staged_replacements_on(&MemoryStorage::new(), Path::new("/store"));
    }

    #[test]
    fn staged_replacements_on_a_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        staged_replacements_on(&LocalStorage, &dir.path().join("store"));
    }
}
