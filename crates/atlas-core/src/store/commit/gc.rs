//! Garbage: the orphan sweep, and retired files kept for the grace period
//! then deleted after the commit that stops listing them.

use std::collections::HashSet;
use std::path::Path;

use array_format::{LayerId, Storage};

use crate::registry::{Manifest, Retired, RunId, SegmentId, META_DIR};
use crate::store::Inner;

fn is_scratch_file(name: &str) -> bool {
    name.starts_with("scratch-")
        && std::path::Path::new(name)
            .extension()
            .is_some_and(|e| e == "tmp")
}

fn is_store_file(name: &str) -> bool {
    LayerId::new(name).is_some() || is_scratch_file(name)
}

/// Removes files no commit names: layers and scratch files left by crashed or
/// failed flushes, unnamed registry segments, temporary manifests, directories of
/// dropped arrays. Only a writer calls this; errors are ignored (garbage is
/// harmless, just retried later).
///
/// On object stores other writers may be uploading files their next commit
/// will name, so only files older than the policy's grace period are removed
/// there (and files whose age the listing does not tell are kept).
///
/// `in_use` names the array directories of a handle that may hold pending
/// changes (`None` when it holds none): their scratch files are kept, and a
/// directory the manifest does not name yet (an array defined since the last
/// commit) is left alone.
pub(crate) fn sweep_orphans(
    storage: &dyn Storage,
    root: &Path,
    manifest: &Manifest,
    in_use: Option<&dyn Fn(&str) -> bool>,
) {
    debug_assert!(
        manifest.retired_loaded,
        "a sweep needs the whole retired list"
    );
    let Ok(entries) = storage.list_dir(root) else {
        return;
    };
    let grace = std::time::Duration::from_secs(manifest.policy.gc_grace_secs);
    let old_enough = |dir: &Path| -> Option<HashSet<String>> {
        if !storage.is_object_store() {
            return None;
        }
        let now = std::time::SystemTime::now();
        Some(
            storage
                .list_entries(dir)
                .unwrap_or_default()
                .into_iter()
                .filter(|e| {
                    e.modified
                        .and_then(|m| now.duration_since(m).ok())
                        .is_some_and(|age| age >= grace)
                })
                .map(|e| e.name)
                .collect(),
        )
    };
    // Retired files are still live for readers of older generations until
    // their grace period passes.
    let retired: HashSet<(&str, &str)> = manifest
        .retired_all()
        .map(|r| (r.dir.as_str(), r.file.as_str()))
        .collect();
    for name in entries {
        if name.starts_with(".atlas.json.tmp-") && !storage.is_object_store() {
            let _ = storage.remove_file(&root.join(&name));
            continue;
        }
        if name == crate::store::HISTORY_DIR {
            sweep_history(storage, &root.join(&name), manifest, old_enough);
            continue;
        }
        if name == META_DIR {
            let live: HashSet<&str> = manifest
                .segments
                .iter()
                .map(SegmentId::as_str)
                .chain(manifest.runs.iter().map(RunId::as_str))
                .chain(
                    retired
                        .iter()
                        .filter(|(d, _)| *d == META_DIR)
                        .map(|(_, f)| *f),
                )
                .collect();
            let old = old_enough(&root.join(META_DIR));
            sweep_segments(storage, &root.join(META_DIR), &live, old.as_ref());
            continue;
        }
        let array = manifest
            .dirs
            .iter()
            .find(|(_, d)| **d == name)
            .map(|(a, _)| a.as_str());
        let handle_uses = in_use.is_some_and(|f| f(&name));
        if handle_uses && array.is_none() {
            continue;
        }
        let dir = root.join(&name);
        let Ok(mut files) = storage.list_dir(&dir) else {
            continue;
        };
        if handle_uses {
            files.retain(|f| !is_scratch_file(f));
        }
        if let Some(old) = old_enough(&dir) {
            files.retain(|f| old.contains(f));
        }
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

/// History copies of generations the manifest does not retain (left by a
/// crash after the commit that expired them). Copies of the current
/// generation or newer are kept: a commit in flight may be about to supersede
/// it (and an extra copy is harmless).
fn sweep_history(
    storage: &dyn Storage,
    dir: &Path,
    manifest: &Manifest,
    old_enough: impl Fn(&Path) -> Option<HashSet<String>>,
) {
    let Ok(files) = storage.list_dir(dir) else {
        return;
    };
    let old = old_enough(dir);
    for f in files {
        // Retired-list side files: only the current manifest's is read,
        // with the sealed chunks it names.
        if crate::registry::is_retired_file(&f) || crate::registry::is_retired_chunk_file(&f) {
            if manifest.retired_file.as_deref() != Some(f.as_str())
                && !manifest.retired_sealed.iter().any(|c| c.file == f)
                && old.as_ref().is_none_or(|o| o.contains(&f))
            {
                let _ = storage.remove_file(&dir.join(f));
            }
            continue;
        }
        let Some(g) = f.strip_suffix(".json").and_then(|g| g.parse::<u64>().ok()) else {
            continue;
        };
        if g < manifest.generation
            && !crate::store::history_retained(manifest, g)
            && old.as_ref().is_none_or(|o| o.contains(&f))
        {
            let _ = storage.remove_file(&dir.join(f));
        }
    }
}

fn sweep_segments(
    storage: &dyn Storage,
    dir: &Path,
    live: &HashSet<&str>,
    old_enough: Option<&HashSet<String>>,
) {
    let Ok(files) = storage.list_dir(dir) else {
        return;
    };
    for f in files {
        // Scratch files: left by a run writer that crashed (one that finishes
        // or fails removes its own).
        if (SegmentId::new(f.clone()).is_some()
            || RunId::new(f.clone()).is_some()
            || is_scratch_file(&f))
            && !live.contains(f.as_str())
            && old_enough.is_none_or(|o| o.contains(&f))
        {
            let _ = storage.remove_file(&dir.join(f));
        }
    }
}

/// Deletes files a commit just dropped from the retired list (it is durable,
/// so no retained generation names them), then directories of arrays that no
/// longer exist and hold nothing. Best effort: what is left is an orphan the
/// next sweep removes.
pub(crate) fn delete_expired(inner: &Inner, expired: &[Retired]) {
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
            || committed.retired.iter().any(|r| r.dir == dir)
            || committed
                .retired_sealed
                .iter()
                .any(|c| c.entries.iter().any(|r| r.dir == dir));
        if !in_use {
            // Fails harmlessly if a scratch file or a new array is in it.
            let _ = storage.remove_dir(&inner.root.join(dir));
        }
    }
}
