//! The commit protocol.
//!
//! A flush (1) writes each changed array file's pending layer under a fresh
//! name and fsyncs it and its directory, (2) writes the new registry to a
//! temporary file and fsyncs it, (3) renames it over `atlas.json` and fsyncs the
//! root directory, and only then (4) installs the new layers in memory and
//! removes files the commit retired.
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

use array_format::{ArrayFile, LayerId, PreparedLayer, Storage};
use indexmap::IndexMap;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard};

use super::{Inner, REGISTRY_FILE};
use crate::error::{Error, Result};
use crate::registry::{
    encode_segment, now_ms, Manifest, Policy, Retired, SegmentId, MAX_SEGMENTS, META_DIR,
};

/// How a registry write failed.
pub(crate) enum CommitError {
    /// Before the rename: the previous commit stands.
    Before(array_format::Error),
    /// After the rename: the new commit may or may not be durable.
    Unknown(array_format::Error),
}

impl CommitError {
    pub(crate) fn into_error(self) -> Error {
        match self {
            CommitError::Before(e) | CommitError::Unknown(e) => e.into(),
        }
    }
}

/// Steps (2) and (3) of the protocol.
pub(crate) fn write_registry_bytes(
    storage: &dyn Storage,
    root: &Path,
    bytes: &[u8],
) -> Result<(), CommitError> {
    let tmp = root.join(format!(
        ".atlas.json.tmp-{:032x}",
        array_format::random_uid()
    ));
    if let Err(e) = storage.write_new_synced(&tmp, bytes) {
        let _ = storage.remove_file(&tmp);
        return Err(CommitError::Before(e));
    }
    if let Err(e) = storage.rename(&tmp, &root.join(REGISTRY_FILE)) {
        let _ = storage.remove_file(&tmp);
        return Err(CommitError::Before(e));
    }
    storage.sync_dir(root).map_err(CommitError::Unknown)
}

pub(crate) fn write_manifest(
    storage: &dyn Storage,
    root: &Path,
    m: &Manifest,
) -> Result<(), CommitError> {
    write_registry_bytes(storage, root, &m.encode())
}

fn is_store_file(name: &str) -> bool {
    LayerId::new(name).is_some()
        || (name.starts_with("scratch-")
            && std::path::Path::new(name)
                .extension()
                .is_some_and(|e| e == "tmp"))
}

/// Removes files no commit names: layers and scratch files left by crashed or
/// failed flushes, unnamed registry segments, temporary manifests, directories of
/// dropped arrays. Only a writer calls this; errors are ignored (garbage is
/// harmless, just retried later).
pub(crate) fn sweep_orphans(storage: &dyn Storage, root: &Path, manifest: &Manifest) {
    let Ok(entries) = storage.list_dir(root) else {
        return;
    };
    // Retired files are still live for readers of older generations until
    // their grace period passes.
    let retired: HashSet<(&str, &str)> = manifest
        .retired
        .iter()
        .map(|r| (r.dir.as_str(), r.file.as_str()))
        .collect();
    for name in entries {
        if name.starts_with(".atlas.json.tmp-") {
            let _ = storage.remove_file(&root.join(&name));
            continue;
        }
        if name == META_DIR {
            let live: HashSet<&str> = manifest
                .segments
                .iter()
                .map(SegmentId::as_str)
                .chain(
                    retired
                        .iter()
                        .filter(|(d, _)| *d == META_DIR)
                        .map(|(_, f)| *f),
                )
                .collect();
            sweep_segments(storage, &root.join(META_DIR), &live);
            continue;
        }
        let dir = root.join(&name);
        let Ok(files) = storage.list_dir(&dir) else {
            continue;
        };
        let array = manifest
            .dirs
            .iter()
            .find(|(_, d)| **d == name)
            .map(|(a, _)| a.as_str());
        let mut live: HashSet<&str> = array
            .and_then(|a| manifest.arrays.get(a))
            .map(|l| l.iter().map(LayerId::as_str).collect())
            .unwrap_or_default();
        live.extend(
            retired
                .iter()
                .filter(|(d, _)| *d == name.as_str())
                .map(|(_, f)| *f),
        );
        let mut remaining = files.len();
        for f in &files {
            if is_store_file(f)
                && !live.contains(f.as_str())
                && storage.remove_file(&dir.join(f)).is_ok()
            {
                remaining -= 1;
            }
        }
        if remaining == 0 && array.is_none() {
            let _ = storage.remove_dir(&dir);
        }
    }
}

fn sweep_segments(storage: &dyn Storage, dir: &Path, live: &HashSet<&str>) {
    let Ok(files) = storage.list_dir(dir) else {
        return;
    };
    for f in files {
        if SegmentId::new(f.clone()).is_some() && !live.contains(f.as_str()) {
            let _ = storage.remove_file(&dir.join(f));
        }
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
    match write_manifest(storage, &inner.root, &manifest) {
        Ok(()) => {}
        Err(CommitError::Before(e)) => {
            let e = fail_before(e, segment.as_ref().map(|(id, _)| id));
            give_back(dirty, deleted);
            return Err(e.into());
        }
        Err(CommitError::Unknown(e)) => {
            inner.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
    }
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

/// Files retired by this commit: listed in the manifest until the grace period
/// passes, or (with a grace period of 0) deleted right after this commit.
fn retire(
    newly: impl Iterator<Item = Retired>,
    policy: Policy,
    kept: &mut Vec<Retired>,
    expired: &mut Vec<Retired>,
) {
    if policy.gc_grace_secs == 0 {
        expired.extend(newly);
    } else {
        kept.extend(newly);
    }
}

/// Splits retired files into those whose grace period has passed and the rest.
fn split_expired(retired: &[Retired], now: u64, policy: Policy) -> (Vec<Retired>, Vec<Retired>) {
    retired
        .iter()
        .cloned()
        .partition(|r| r.expired(now, policy))
}

/// Deletes files a commit just dropped from the retired list (it is durable,
/// so no retained generation names them), then directories of arrays that no
/// longer exist and hold nothing. Best effort: what is left is an orphan the
/// next sweep removes.
fn delete_expired(inner: &Inner, expired: &[Retired]) {
    if expired.is_empty() {
        return;
    }
    let storage = inner.storage.as_ref();
    for r in expired {
        let _ = storage.remove_file(&inner.root.join(&r.dir).join(&r.file));
    }
    let committed = inner.committed.lock();
    let dirs: HashSet<&str> = expired.iter().map(|r| r.dir.as_str()).collect();
    for dir in dirs {
        let in_use = dir == META_DIR
            || inner.dir_in_use(dir)
            || committed.retired.iter().any(|r| r.dir == dir);
        if !in_use {
            // Fails harmlessly if a scratch file or a new array is in it.
            let _ = storage.remove_dir(&inner.root.join(dir));
        }
    }
}

pub(crate) async fn compact(inner: &Arc<Inner>) -> Result<()> {
    // Commit pending changes and rewrite the registry as one snapshot segment.
    inner.ensure_writer_async().await?;
    flush_with(inner, true).await?;
    compact_over(inner, 1).await
}

/// Flushes, then merges the layers of every array file left with more than
/// the policy's `max_layers_per_array` (bounded layer and descriptor counts
/// without the user's help).
pub(crate) async fn flush_and_merge(inner: &Arc<Inner>) -> Result<()> {
    flush_with(inner, false).await?;
    if inner.writer_held() {
        let max = inner.committed.lock().policy.max_layers_per_array as usize;
        compact_over(inner, max.max(1)).await?;
    }
    Ok(())
}

/// Compacts every array file with more than `max_layers` layers.
async fn compact_over(inner: &Arc<Inner>, max_layers: usize) -> Result<()> {
    inner.ensure_writer_async().await?;
    let _commit = inner.commit_lock.lock().await;
    let targets: Vec<String> = inner
        .committed
        .lock()
        .arrays
        .iter()
        .filter(|(_, l)| l.len() > max_layers)
        .map(|(n, _)| n.clone())
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    // Phase 1: write new bases under read locks (readers keep going).
    let mut reads: Vec<(String, OwnedRwLockReadGuard<ArrayFile>)> = Vec::new();
    let mut handles = Vec::new();
    for name in targets {
        let f = inner.file(&name)?.expect("committed arrays have files");
        handles.push((name.clone(), Arc::clone(&f)));
        reads.push((name, f.read_owned().await));
    }
    let inner2 = Arc::clone(inner);
    let prepared = tokio::task::spawn_blocking(move || -> Result<Vec<(String, PreparedLayer)>> {
        let mut out: Vec<(String, PreparedLayer)> = Vec::new();
        for (name, g) in &reads {
            match g.compact_prepare() {
                Ok(p) => out.push((name.clone(), p)),
                Err(e) => {
                    for (_, p) in &out {
                        let _ = inner2.storage.remove_file(p.path());
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(out)
    })
    .await
    .expect("compaction task panicked")?;
    // Phase 2: commit the new layer lists; the datasets are the committed ones
    // (read back from atlas.json), not the live ones, which may hold
    // uncommitted changes.
    let inner2 = Arc::clone(inner);
    let new_ids: Vec<(String, LayerId)> =
        prepared.iter().map(|(n, p)| (n.clone(), p.id())).collect();
    let installed_ids = new_ids.clone();
    let paths: Vec<std::path::PathBuf> =
        prepared.iter().map(|(_, p)| p.path().to_owned()).collect();
    let (generation, retired_now, expired) =
        tokio::task::spawn_blocking(move || -> Result<(u64, Vec<Retired>, Vec<Retired>)> {
            let storage = inner2.storage.as_ref();
            let cleanup = || {
                for p in &paths {
                    let _ = storage.remove_file(p);
                }
            };
            // The manifest on disk is exactly this handle's last commit (it holds
            // the writer lock); only the compacted arrays' layer lists change.
            let reg_path = inner2.root.join(REGISTRY_FILE);
            let mut manifest = match storage
                .read_all(&reg_path)
                .map_err(Error::from)
                .and_then(|b| Manifest::decode(&b, &reg_path))
            {
                Ok(m) => m,
                Err(e) => {
                    cleanup();
                    return Err(e);
                }
            };
            if manifest.generation != inner2.committed.lock().generation {
                cleanup();
                inner2.poisoned.store(true, Ordering::SeqCst);
                return Err(Error::StaleHandle {
                    path: inner2.root.clone(),
                });
            }
            manifest.generation += 1;
            let now = now_ms();
            let (expired, kept) = split_expired(&manifest.retired, now, manifest.policy);
            let (mut expired, mut kept) = (expired, kept);
            for (name, id) in &new_ids {
                let old = manifest.arrays.insert(name.clone(), vec![id.clone()]);
                let dir = manifest.dirs[name].clone();
                let newly = old.into_iter().flatten().map(|l| Retired {
                    dir: dir.clone(),
                    file: l.as_str().to_owned(),
                    since_ms: now,
                });
                retire(newly, manifest.policy, &mut kept, &mut expired);
            }
            manifest.retired = kept;
            match write_manifest(storage, &inner2.root, &manifest) {
                Ok(()) => Ok((manifest.generation, manifest.retired, expired)),
                Err(CommitError::Before(e)) => {
                    cleanup();
                    Err(e.into())
                }
                Err(CommitError::Unknown(e)) => {
                    inner2.poisoned.store(true, Ordering::SeqCst);
                    Err(e.into())
                }
            }
        })
        .await
        .expect("compaction task panicked")?;
    // Phase 3: install; the old layers are retired (deleted after the grace
    // period by a later commit).
    for ((_, p), (_, f)) in prepared.into_iter().zip(handles) {
        let mut g = f.write().await;
        if let Err(e) = g.install_compacted(p) {
            inner.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
    }
    {
        let mut c = inner.committed.lock();
        c.generation = generation;
        for (name, id) in installed_ids {
            c.arrays.insert(name, vec![id]);
        }
        c.retired = retired_now;
    }
    if !expired.is_empty() {
        // Under the structure lock: no array directory is being created.
        let _structure = inner.structure.lock().await;
        delete_expired(inner, &expired);
    }
    Ok(())
}
