//! Compaction: every array file (or those past the policy's layer count)
//! rewritten as one base layer, committed like a flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use array_format::{ArrayFile, LayerId, MergePlan, PreparedLayer};
use tokio::sync::OwnedRwLockReadGuard;

use super::{delete_expired, flush_with, write_manifest, CommitError};
use crate::error::{Error, Result};
use crate::registry::{now_ms, Retired, Sealed};
use crate::store::history::{HistoryState, Step};
use crate::store::Inner;

/// What the commit phase of a compaction returns.
type Done = (
    u64,
    (Vec<Retired>, Vec<Arc<Sealed>>, Option<String>),
    Vec<Retired>,
    array_format::Version,
    HistoryState,
    Step,
);

pub(crate) async fn compact(inner: &Arc<Inner>) -> Result<()> {
    // Commit pending changes and rewrite the registry as one snapshot segment.
    inner.ensure_writer_async().await?;
    flush_with(inner, true).await?;
    compact_over(inner, 1).await?;
    if inner.storage.is_object_store() {
        // Object stores sweep orphans here, not when a writer starts: files
        // older than the grace period that no commit names.
        let inner2 = Arc::clone(inner);
        tokio::task::spawn_blocking(move || {
            if let Ok((m, _)) = super::read_manifest_for_writer(&inner2) {
                if m.generation == inner2.committed.lock().generation {
                    super::sweep_orphans(
                        inner2.storage.as_ref(),
                        &inner2.root,
                        &m,
                        Some(&|d: &str| inner2.dir_in_use(d)),
                    );
                }
            }
        })
        .await
        .expect("orphan sweep panicked");
    }
    Ok(())
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

/// Brings every array file with more than `max_layers` layers back to at most
/// that: a small tail of layers is merged into one delta (the base stays), a
/// tail as large as the base is compacted with it into a new base.
/// `max_layers == 1` (the explicit `compact`) always writes one base.
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
    // Phase 1: write new layers under read locks (readers keep going). Each
    // prepared layer replaces the layers from `keep` on (0: all of them).
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
            let made = match g.merge_plan(max_layers) {
                Some(MergePlan::Tail(from)) => g.merge_tail_prepare(from),
                _ => g.compact_prepare(),
            };
            match made {
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
    let new_ids: Vec<(String, LayerId, usize)> = prepared
        .iter()
        .map(|(n, p)| (n.clone(), p.id(), p.replaces_from()))
        .collect();
    let installed_ids = new_ids.clone();
    let paths: Vec<std::path::PathBuf> =
        prepared.iter().map(|(_, p)| p.path().to_owned()).collect();
    let bytes_written: u64 = prepared.iter().map(|(_, p)| p.len_bytes()).sum();
    let (generation, retired_now, expired, version, history, step) =
        tokio::task::spawn_blocking(move || -> Result<Done> {
            let storage = inner2.storage.as_ref();
            let cleanup = || {
                for p in &paths {
                    let _ = storage.remove_file(p);
                }
            };
            // The manifest on disk is exactly this handle's last commit (it holds
            // the writer lock); only the compacted arrays' layer lists change.
            let (mut manifest, on_disk_version) = match super::read_manifest_for_writer(&inner2) {
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
            let hist = inner2.committed.lock().history.clone();
            let (tags, dead) = (hist.tags.clone(), hist.dead_tags.clone());
            let step = match Step::plan(
                &inner2,
                &hist,
                manifest.generation,
                manifest.policy,
                None,
                tags,
                dead,
            ) {
                Ok(s) => s,
                Err(e) => {
                    cleanup();
                    return Err(e);
                }
            };
            let new_gen = step.generation();
            let now = now_ms();
            let mut newly = Vec::new();
            for (name, id, keep) in &new_ids {
                let Some(layers) = manifest.arrays.get_mut(name) else {
                    cleanup();
                    return Err(Error::StaleHandle {
                        path: inner2.root.clone(),
                    });
                };
                let old = layers.split_off((*keep).min(layers.len()));
                layers.push(id.clone());
                let dir = manifest.dirs[name].clone();
                newly.extend(old.into_iter().map(|l| Retired {
                    dir: dir.clone(),
                    file: l.as_str().to_owned(),
                    since_ms: now,
                    generation: new_gen,
                }));
            }
            let expired = step
                .settle(
                    &manifest.retired_sealed,
                    &manifest.retired,
                    newly.into_iter(),
                    now,
                    manifest.policy,
                )
                .apply(&mut manifest);
            step.stamp(
                &mut manifest,
                "compact",
                None,
                [0, 0, 0, bytes_written],
                now,
            );
            if let Err(e) = step.write_copy(storage, &inner2.root, &manifest) {
                cleanup();
                return Err(e);
            }
            match write_manifest(storage, &inner2.root, &mut manifest, Some(&on_disk_version)) {
                Ok(v) => {
                    let history = HistoryState::of(&manifest);
                    Ok((
                        manifest.generation,
                        (
                            manifest.retired,
                            manifest.retired_sealed,
                            manifest.retired_file,
                        ),
                        expired,
                        v,
                        history,
                        step,
                    ))
                }
                Err(CommitError::Before(e)) => {
                    cleanup();
                    Err(e.into())
                }
                Err(CommitError::Conflict) => {
                    cleanup();
                    Err(Error::CommitConflict {
                        path: inner2.root.clone(),
                    })
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
        let installed = if p.replaces_from() == 0 {
            g.install_compacted(p)
        } else {
            g.install_merged(p)
        };
        if let Err(e) = installed {
            inner.poisoned.store(true, Ordering::SeqCst);
            return Err(e.into());
        }
    }
    {
        let mut c = inner.committed.lock();
        c.generation = generation;
        c.version = Some(version);
        for (name, id, keep) in installed_ids {
            let layers = c.arrays.entry(name).or_default();
            layers.truncate(keep);
            layers.push(id);
        }
        (c.retired, c.retired_sealed, c.retired_file) = retired_now;
        c.retired_loaded = true;
        c.history = history;
    }
    step.after(inner.storage.as_ref(), &inner.root);
    if !expired.is_empty() {
        // Under the structure lock: no array directory is being created.
        let _structure = inner.structure.lock().await;
        delete_expired(inner, &expired);
    }
    Ok(())
}
