//! The commit protocol.
//!
//! A flush (1) writes each changed array file's pending layer under a fresh
//! name and fsyncs it and its directory, (2) writes the new registry to a
//! temporary file and fsyncs it, (3) renames it over `atlas.json` and fsyncs the
//! root directory, and only then (4) installs the new layers in memory. Files
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
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use array_format::{ArrayFile, LayerId, PreparedLayer, Storage, Version};
use indexmap::IndexMap;
use tokio::sync::OwnedRwLockWriteGuard;

mod compact;
mod gc;

pub(crate) use compact::{compact, flush_and_merge};
pub(crate) use gc::sweep_orphans;
use gc::{delete_expired, retire, split_expired};

use super::{Inner, REGISTRY_FILE};
use crate::error::{Error, Result};
use crate::registry::{
    encode_segment, now_ms, Manifest, Retired, SegmentId, MAX_SEGMENTS, META_DIR,
};

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
pub(crate) fn write_manifest(
    storage: &dyn Storage,
    root: &Path,
    m: &mut Manifest,
    expected: Option<&Version>,
) -> Result<Version, CommitError> {
    let commit_id = format!("{:032x}", array_format::random_uid());
    m.commit_id = Some(commit_id.clone());
    let path = root.join(REGISTRY_FILE);
    let e = match storage.replace_if(&path, &m.encode(), expected) {
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
    let (bytes, v) = match storage.read_versioned(&path) {
        Ok(read) => read,
        Err(read_err) if read_err.is_not_found() && expected.is_none() => {
            return Err(CommitError::Before(e))
        }
        Err(_) => return Err(CommitError::Unknown(e)),
    };
    let ours = match Manifest::decode(&bytes, &path) {
        Ok(found) => found.commit_id.as_deref() == Some(commit_id.as_str()),
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

fn remove_prepared(storage: &dyn Storage, prepared: &[(usize, PreparedLayer)]) {
    for (_, p) in prepared {
        let _ = storage.remove_file(p.path());
    }
}

type WriteGuards = Vec<(String, OwnedRwLockWriteGuard<ArrayFile>)>;

/// Flushes; with `snapshot`, the registry is rewritten as one snapshot segment
/// even if nothing changed (compaction of the registry).
async fn flush_with(inner: &Arc<Inner>, snapshot: bool) -> Result<()> {
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
    let mut guards: WriteGuards = Vec::new();
    for (name, f) in inner.open_files() {
        guards.push((name, f.write_owned().await));
    }
    let inner2 = Arc::clone(inner);
    tokio::task::spawn_blocking(move || flush_sync(&inner2, guards, snapshot))
        .await
        .expect("flush task panicked")
}

fn flush_sync(inner: &Inner, mut guards: WriteGuards, force_snapshot: bool) -> Result<()> {
    let was_dirty = inner.dirty.swap(false, Ordering::SeqCst);
    let compact_registry = force_snapshot && inner.committed.lock().segments.len() > 1;
    if !was_dirty && !compact_registry && !guards.iter().any(|(_, g)| g.has_pending()) {
        return Ok(());
    }
    let storage = inner.storage.as_ref();
    // The datasets changed since the last commit; given back if the flush fails.
    let (dirty, deleted) = {
        let mut live = inner.live.write();
        (
            std::mem::take(&mut live.dirty),
            std::mem::take(&mut live.deleted),
        )
    };
    let give_back = |dirty: HashSet<String>, deleted: HashSet<String>| {
        let mut live = inner.live.write();
        live.dirty.extend(dirty);
        live.deleted.extend(deleted);
        inner.dirty.store(true, Ordering::SeqCst);
    };
    let mut prepared: Vec<(usize, PreparedLayer)> = Vec::new();
    for (i, (_, g)) in guards.iter().enumerate() {
        match g.write_pending() {
            Ok(Some(p)) => prepared.push((i, p)),
            Ok(None) => {}
            Err(e) => {
                remove_prepared(storage, &prepared);
                give_back(dirty, deleted);
                return Err(e.into());
            }
        }
    }
    let meta_dir = inner.root.join(META_DIR);
    let (manifest, dropped, segment, expired) = {
        let live = inner.live.read();
        let committed = inner.committed.lock();
        let used: HashSet<&str> = live
            .datasets
            .values()
            .flat_map(|d| d.arrays.keys().map(String::as_str))
            .collect();
        let mut arrays: IndexMap<String, Vec<LayerId>> = IndexMap::new();
        for (name, layers) in &committed.arrays {
            if used.contains(name.as_str()) {
                arrays.insert(name.clone(), layers.clone());
            }
        }
        // Layers written for arrays no dataset uses any more are never named
        // by a commit: deleted right after this one.
        let mut unnamed: Vec<Retired> = Vec::new();
        for (i, p) in &prepared {
            let name = &guards[*i].0;
            if used.contains(name.as_str()) {
                arrays.entry(name.clone()).or_default().push(p.id());
            } else {
                unnamed.push(Retired {
                    dir: inner.dir_or_assign(name),
                    file: p.id().as_str().to_owned(),
                    since_ms: 0,
                });
            }
        }
        let dropped: Vec<(String, Vec<LayerId>)> = committed
            .arrays
            .iter()
            .filter(|(n, _)| !arrays.contains_key(*n))
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect();
        // A delta segment of what changed, or a snapshot of everything when the
        // segment list is long (or compaction asks for it).
        // (A registry of one segment is already compact.)
        let snapshot = (force_snapshot && committed.segments.len() > 1)
            || committed.segments.len() >= MAX_SEGMENTS;
        let (segment, segments, retired) = if snapshot {
            let id = SegmentId::fresh(inner.meta_format);
            let bytes = encode_segment(inner.meta_format, true, Vec::new(), live.datasets.iter());
            (
                Some((id.clone(), bytes)),
                vec![id],
                committed.segments.clone(),
            )
        } else if dirty.is_empty() && deleted.is_empty() {
            (None, committed.segments.clone(), Vec::new())
        } else {
            let mut upserts: Vec<(usize, &String, &crate::registry::DatasetMeta)> = dirty
                .iter()
                .filter_map(|n| live.datasets.get_full(n))
                .collect();
            upserts.sort_unstable_by_key(|(i, _, _)| *i);
            let mut tombstones: Vec<String> = deleted.iter().cloned().collect();
            tombstones.sort_unstable();
            let id = SegmentId::fresh(inner.meta_format);
            let bytes = encode_segment(
                inner.meta_format,
                false,
                tombstones,
                upserts.into_iter().map(|(_, k, v)| (k, v)),
            );
            let mut segments = committed.segments.clone();
            segments.push(id.clone());
            (Some((id, bytes)), segments, Vec::new())
        };
        let now = now_ms();
        let (mut expired, mut kept) = split_expired(&committed.retired, now, committed.policy);
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
                })
            })
            .chain(retired.iter().map(|id| Retired {
                dir: META_DIR.to_owned(),
                file: id.as_str().to_owned(),
                since_ms: now,
            }));
        retire(newly, committed.policy, &mut kept, &mut expired);
        expired.extend(unnamed);
        let (dirs, next_dir) = inner.dirs_for(arrays.keys());
        let manifest = Manifest {
            commit_id: None,
            generation: committed.generation + 1,
            compression: inner.compression,
            meta_format: inner.meta_format,
            arrays,
            dirs,
            next_dir,
            segments,
            policy: committed.policy,
            retired: kept,
        };
        (manifest, dropped, segment, expired)
    };
    let fail_before = |e: array_format::Error, seg: Option<&SegmentId>| {
        remove_prepared(storage, &prepared);
        if let Some(id) = seg {
            let _ = storage.remove_file(&meta_dir.join(id.as_str()));
        }
        e
    };
    // A directory created by this flush (a new array's, or the first
    // `atlas.meta/`) must be durable before the manifest that names files in it:
    // its entry lives in the root directory, which the manifest's own directory
    // fsync covers only after the rename.
    let new_dirs = prepared
        .iter()
        .any(|(i, _)| !inner.committed.lock().arrays.contains_key(&guards[*i].0))
        || (segment.is_some() && inner.committed.lock().segments.is_empty());
    if let Some((id, bytes)) = &segment {
        let written = storage
            .create_dir_all(&meta_dir)
            .and_then(|()| storage.write_new_synced(&meta_dir.join(id.as_str()), bytes))
            .and_then(|()| storage.sync_dir(&meta_dir));
        if let Err(e) = written {
            let e = fail_before(e, Some(id));
            give_back(dirty, deleted);
            return Err(e.into());
        }
    }
    if new_dirs {
        if let Err(e) = storage.sync_dir(&inner.root) {
            let e = fail_before(e, segment.as_ref().map(|(id, _)| id));
            give_back(dirty, deleted);
            return Err(e.into());
        }
    }
    let mut manifest = manifest;
    let expected = inner.committed.lock().version.clone();
    let version = match write_manifest(storage, &inner.root, &mut manifest, expected.as_ref()) {
        Ok(v) => v,
        Err(CommitError::Before(e)) => {
            let e = fail_before(e, segment.as_ref().map(|(id, _)| id));
            give_back(dirty, deleted);
            return Err(e.into());
        }
        Err(CommitError::Conflict) => {
            // Another writer's commit stands: this handle's snapshot is stale
            // and its changes stay pending (nothing here is named by a commit).
            let _ = fail_before(
                array_format::Error::StalePreparedLayer,
                segment.as_ref().map(|(id, _)| id),
            );
            give_back(dirty, deleted);
            return Err(Error::CommitConflict {
                path: inner.root.clone(),
            });
        }
        Err(CommitError::Unknown(e)) => {
            inner.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
    };
    // Committed. Make memory match.
    for (i, p) in prepared {
        if let Err(e) = guards[i].1.install(p) {
            inner.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
    }
    {
        let mut c = inner.committed.lock();
        c.generation = manifest.generation;
        c.version = Some(version);
        c.arrays = manifest.arrays;
        c.segments = manifest.segments;
        c.retired = manifest.retired;
    }
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
    Ok(())
}
