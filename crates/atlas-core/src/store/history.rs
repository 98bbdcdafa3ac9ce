//! History: what each commit records, the history copies of superseded
//! manifests (`atlas.history/<generation>.json`), retention, tags, and which
//! retired files a retained generation still names.
//!
//! **Invariant:** every file a retained generation names is named by the
//! current manifest or listed in its `retired` list; a retired entry leaves
//! the list (and its file is deleted) only when no retained generation names
//! it. So the orphan sweep, which treats retired files as live, never
//! deletes a file of a retained generation, and needs no history reads.
//!
//! **Invariant:** the manifest is the only commit point. A history copy is
//! written (create-new, fsync, directory fsync) before the manifest that
//! supersedes its generation; a copy of a generation the current manifest
//! does not retain is garbage and is never read as history.

mod api;
mod ops;
mod time;

pub use api::{format_time, At, Diff, GcReport, LogEntry, Operation, TagInfo};

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use array_format::Storage;

use super::Inner;
use crate::error::{Error, Result};
use crate::registry::{CommitInfo, Manifest, Policy, Retired, Sealed, TagEntry, META_DIR};

/// Directory of the history copies.
pub const HISTORY_DIR: &str = "atlas.history";

/// The history part of the committed state a handle knows.
#[derive(Clone, Debug, Default)]
pub(crate) struct HistoryState {
    /// The oldest generation kept by the retention policy (`None`: a store
    /// written before history).
    pub from: Option<u64>,
    pub tags: BTreeMap<String, TagEntry>,
    pub dead_tags: BTreeSet<String>,
    /// The committed generation's commit time (0 before history).
    pub time_ms: u64,
    /// The committed manifest without its `retired` list: its history copy
    /// once superseded (empty for manifests written before history, which
    /// get none). Only the current manifest's list is ever read, and the
    /// list holds every file retired within the grace period, so copying it
    /// would make each copy grow with the commit rate.
    pub bytes: Arc<Vec<u8>>,
}

impl HistoryState {
    pub(crate) fn of(m: &Manifest) -> HistoryState {
        HistoryState {
            from: m.history_from,
            tags: m.tags.clone(),
            dead_tags: m.dead_tags.clone(),
            time_ms: m.commit.as_ref().map_or(0, |c| c.time_ms),
            bytes: Arc::new(if m.version >= 4 {
                m.encode_without_retired()
            } else {
                Vec::new()
            }),
        }
    }
}

/// `atlas.history/`, made (with its entry durable: the manifest about to be
/// written relies on a file in it) if it is missing on a filesystem.
pub(crate) fn history_dir(
    storage: &dyn Storage,
    root: &Path,
) -> std::result::Result<PathBuf, array_format::Error> {
    let dir = root.join(HISTORY_DIR);
    if !storage.is_object_store() && !storage.exists(&dir)? {
        storage.create_dir_all(&dir)?;
        storage.sync_dir(root)?;
    }
    Ok(dir)
}

/// The path of generation `g`'s history copy.
pub(crate) fn copy_path(root: &Path, g: u64) -> PathBuf {
    root.join(HISTORY_DIR).join(format!("{g}.json"))
}

/// Reads generation `g`'s history copy.
pub(crate) fn read_copy(storage: &dyn Storage, root: &Path, g: u64) -> Result<Manifest> {
    let path = copy_path(root, g);
    let bytes = storage.read_all(&path)?;
    let m = Manifest::decode(&bytes, &path)?;
    if m.generation != g {
        return Err(Error::CorruptRegistry {
            path,
            reason: format!("history copy holds generation {}", m.generation),
        });
    }
    Ok(m)
}

/// Generation `g`'s manifest: `current` itself or its history copy.
pub(crate) fn manifest_of(
    storage: &dyn Storage,
    root: &Path,
    current: &Manifest,
    g: u64,
) -> Result<Manifest> {
    if g == current.generation {
        Ok(current.clone())
    } else {
        read_copy(storage, root, g)
    }
}

/// True when `m` keeps generation `g` readable.
pub(crate) fn retained(m: &Manifest, g: u64) -> bool {
    g == m.generation
        || (g < m.generation && m.history_from.is_some_and(|h| g >= h))
        || m.tags.values().any(|t| t.generation == g)
}

/// The oldest generation `m` keeps readable.
pub(crate) fn oldest_retained(m: &Manifest) -> u64 {
    m.tags
        .values()
        .map(|t| t.generation)
        .chain(std::iter::once(m.history_from.unwrap_or(m.generation)))
        .min()
        .unwrap_or(m.generation)
}

/// The newest `limit` retained generations of `m`, newest first (lazily:
/// the range kept by the policy is never materialised).
pub(crate) fn retained_generations(m: &Manifest, limit: usize) -> Vec<u64> {
    let from = m.history_from.unwrap_or(m.generation).min(m.generation);
    let mut tagged: Vec<u64> = m
        .tags
        .values()
        .map(|t| t.generation)
        .filter(|g| *g < from)
        .collect();
    tagged.sort_unstable_by(|a, b| b.cmp(a));
    tagged.dedup();
    (from..=m.generation)
        .rev()
        .chain(tagged)
        .take(limit)
        .collect()
}

/// The key of a file in the name sets: `dir/file`.
fn key(dir: &str, file: &str) -> String {
    format!("{dir}/{file}")
}

/// Every file `m` names, as `dir/file`.
pub(crate) fn names(m: &Manifest) -> HashSet<String> {
    let mut out = HashSet::new();
    for (a, layers) in &m.arrays {
        let dir = m.dirs.get(a).map_or(a.as_str(), String::as_str);
        for l in layers {
            out.insert(key(dir, l.as_str()));
        }
    }
    for r in &m.runs {
        out.insert(key(META_DIR, r.as_str()));
    }
    for s in &m.segments {
        out.insert(key(META_DIR, s.as_str()));
    }
    out
}

/// Which retired files retained generations still name.
struct Protect {
    from: Option<u64>,
    /// Tagged generations below `from`, with the files each names.
    tagged: Vec<(u64, Arc<HashSet<String>>)>,
}

impl Protect {
    fn protects(&self, r: &Retired) -> bool {
        // A file retired by commit `r.generation` is named only by older
        // generations; every generation from `from` on is retained.
        self.from.is_some_and(|h| r.generation > h)
            || self
                .tagged
                .iter()
                .any(|(t, n)| *t < r.generation && n.contains(&key(&r.dir, &r.file)))
    }
}

/// What a commit does to one retired entry (see `Step::fate`).
enum Fate {
    /// Kept as it is.
    Kept,
    /// Kept, its grace period starting at this time (ms).
    Restarted(u64),
    /// Dropped: its file is deleted after the commit.
    Expired,
}

/// The retired list after a commit settles it.
#[derive(Default)]
pub(crate) struct Settled {
    /// Sealed chunks kept as they are.
    pub sealed: Vec<Arc<Sealed>>,
    /// Loose entries kept (with dissolved chunks' survivors).
    pub kept: Vec<Retired>,
    /// Entries dropped: their files are deleted after the commit.
    pub expired: Vec<Retired>,
    /// Chunks dissolved: their files are deleted after the commit.
    pub dissolved: Vec<String>,
}

impl Settled {
    /// Makes `m`'s retired list this one; returns the expired entries.
    pub(crate) fn apply(self, m: &mut Manifest) -> Vec<Retired> {
        m.retired = self.kept;
        m.retired_sealed = self.sealed;
        m.retired_dissolved = self.dissolved;
        m.retired_loaded = true;
        self.expired
    }
}

/// What one commit does to history, planned before it is written.
pub(crate) struct Step {
    new_gen: u64,
    parent_time_ms: u64,
    old: Protect,
    new: Protect,
    new_from: Option<u64>,
    tags: BTreeMap<String, TagEntry>,
    dead_tags: BTreeSet<String>,
    /// The superseded generation's copy, when it stays retained.
    copy: Option<(u64, Arc<Vec<u8>>)>,
    /// History copies this commit expires (deleted after it).
    expire: Vec<u64>,
}

/// Retention's default for the commit making `new_gen`: the count rule, when
/// the policy has no time window (a time window needs the generations' times:
/// only `gc` reads them).
pub(crate) fn default_from(old_from: Option<u64>, new_gen: u64, policy: Policy) -> u64 {
    let start = old_from.unwrap_or(new_gen);
    if policy.keep_secs > 0 {
        return start;
    }
    let count_from = (new_gen + 1)
        .saturating_sub(policy.keep_generations.max(1))
        .max(1);
    start.max(count_from)
}

impl Step {
    /// Plans the commit that replaces the generation `old` describes (at
    /// `parent`) with `parent + 1`, keeping history from `new_from` (`None`:
    /// the default rule) with these tags.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan(
        inner: &Inner,
        old: &HistoryState,
        parent: u64,
        policy: Policy,
        new_from: Option<u64>,
        tags: BTreeMap<String, TagEntry>,
        dead_tags: BTreeSet<String>,
    ) -> Result<Step> {
        let new_gen = parent + 1;
        let new_from = new_from.unwrap_or_else(|| default_from(old.from, new_gen, policy));
        let protect = |from: Option<u64>, tags: &BTreeMap<String, TagEntry>| -> Result<Protect> {
            let mut tagged = Vec::new();
            let below: BTreeSet<u64> = tags
                .values()
                .map(|t| t.generation)
                .filter(|t| from.is_none_or(|h| *t < h))
                .collect();
            for t in below {
                tagged.push((t, names_of(inner, t, parent, &old.bytes)?));
            }
            Ok(Protect { from, tagged })
        };
        let old_protect = protect(old.from, &old.tags)?;
        let new_protect = protect(Some(new_from), &tags)?;
        let tagged = |g: u64| tags.values().any(|t| t.generation == g);
        let copy =
            (old.from.is_some() && !old.bytes.is_empty() && (parent >= new_from || tagged(parent)))
                .then(|| (parent, Arc::clone(&old.bytes)));
        let mut expire: Vec<u64> = match old.from {
            Some(h) => (h..new_from.min(parent)).filter(|g| !tagged(*g)).collect(),
            None => Vec::new(),
        };
        // Tags deleted by this commit release their generations.
        for t in old.tags.values() {
            let g = t.generation;
            if g < new_from && g < parent && !tagged(g) && !expire.contains(&g) {
                expire.push(g);
            }
        }
        Ok(Step {
            new_gen,
            parent_time_ms: old.time_ms,
            old: old_protect,
            new: new_protect,
            new_from: Some(new_from),
            tags,
            dead_tags,
            copy,
            expire,
        })
    }

    /// The commit's generation.
    pub(crate) fn generation(&self) -> u64 {
        self.new_gen
    }

    /// Splits the retired files (the committed list and those this commit
    /// retires) into those kept and those the commit drops (deleted after
    /// it): a file is dropped once no retained generation names it and its
    /// grace period has passed. A file a retained generation named until
    /// this commit starts its grace period now. A sealed chunk stays as it
    /// is (not even read entry by entry while the window is below it) unless
    /// one of its entries changes; then it dissolves into loose entries.
    pub(crate) fn settle(
        &self,
        sealed: &[Arc<Sealed>],
        retired: &[Retired],
        newly: impl Iterator<Item = Retired>,
        now: u64,
        policy: Policy,
    ) -> Settled {
        let mut out = Settled::default();
        let place = |r: &Retired, out: &mut Settled| match self.fate(r, now, policy) {
            Fate::Kept => out.kept.push(r.clone()),
            Fate::Restarted(since_ms) => out.kept.push(Retired {
                since_ms,
                ..r.clone()
            }),
            Fate::Expired => out.expired.push(r.clone()),
        };
        for c in sealed {
            // Below the window's reach: nothing in it can change.
            let reached = self.new.from.is_none_or(|h| c.min_generation <= h);
            if reached
                && c.entries
                    .iter()
                    .any(|r| !matches!(self.fate(r, now, policy), Fate::Kept))
            {
                for r in &c.entries {
                    place(r, &mut out);
                }
                out.dissolved.push(c.file.clone());
            } else {
                out.sealed.push(Arc::clone(c));
            }
        }
        for r in retired {
            place(r, &mut out);
        }
        for r in newly {
            place(&r, &mut out);
        }
        out
    }

    /// What this commit does to retired entry `r`: a file no retained
    /// generation names any more expires once its grace period has passed;
    /// one a retained generation named until this commit starts its grace
    /// period now; the rest stay as they are.
    fn fate(&self, r: &Retired, now: u64, policy: Policy) -> Fate {
        if self.new.protects(r) {
            return Fate::Kept;
        }
        let since_ms = if self.old.protects(r) {
            r.since_ms.max(now)
        } else {
            r.since_ms
        };
        if Retired::grace_over(since_ms, now, policy) {
            Fate::Expired
        } else if since_ms == r.since_ms {
            Fate::Kept
        } else {
            Fate::Restarted(since_ms)
        }
    }

    /// Fills the manifest's history fields: parent, commit record, retention
    /// start, tags.
    pub(crate) fn stamp(
        &self,
        m: &mut Manifest,
        op: &str,
        message: Option<String>,
        counts: [u64; 4],
        now: u64,
    ) {
        m.generation = self.new_gen;
        m.parent = Some(self.new_gen - 1);
        m.history_from = self.new_from;
        m.tags.clone_from(&self.tags);
        m.dead_tags.clone_from(&self.dead_tags);
        let [added, changed, deleted, bytes_written] = counts;
        m.commit = Some(CommitInfo {
            time_ms: now.max(self.parent_time_ms + 1),
            op: op.to_owned(),
            message,
            added,
            changed,
            deleted,
            bytes_written,
        });
    }

    /// Writes the superseded generation's history copy, durably, before the
    /// manifest that supersedes it. A copy already there (left by a commit
    /// that failed after writing it) is kept if it holds the same bytes.
    pub(crate) fn write_copy(
        &self,
        storage: &dyn Storage,
        root: &Path,
        next: &Manifest,
    ) -> Result<()> {
        let Some((g, bytes)) = &self.copy else {
            return Ok(());
        };
        let dir = history_dir(storage, root)?;
        let path = copy_path(root, *g);
        match storage.write_new_synced(&path, bytes) {
            Ok(()) => {}
            Err(e) if storage.exists(&path).unwrap_or(false) => {
                let same = storage.read_all(&path).is_ok_and(|b| b == **bytes);
                if !same {
                    // A torn copy of a failed commit: replace it.
                    storage.remove_file(&path)?;
                    storage.write_new_synced(&path, bytes).map_err(|_| e)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        // The commit writes its retired list's side file into the same
        // directory next and fsyncs it once for both: history adds no
        // directory fsync to such a commit, and one to the others.
        if !storage.is_object_store() && !next.retired_in_side_file() {
            storage.sync_dir(&dir)?;
        }
        Ok(())
    }

    /// After the commit is durable: deletes the history copies it expired.
    /// Best effort: a copy left behind is garbage `gc` removes.
    pub(crate) fn after(&self, storage: &dyn Storage, root: &Path) {
        for g in &self.expire {
            let _ = storage.remove_file(&copy_path(root, *g));
        }
    }
}

/// The files generation `g` names (cached: history copies never change).
/// `current` is the committed generation with its bytes.
fn names_of(
    inner: &Inner,
    g: u64,
    current: u64,
    current_bytes: &[u8],
) -> Result<Arc<HashSet<String>>> {
    if let Some(n) = inner.history_names.lock().get(&g) {
        return Ok(Arc::clone(n));
    }
    let m = if g == current && !current_bytes.is_empty() {
        Manifest::decode(current_bytes, &copy_path(&inner.root, g))?
    } else {
        read_copy(inner.storage.as_ref(), &inner.root, g)?
    };
    let n = Arc::new(names(&m));
    inner.history_names.lock().insert(g, Arc::clone(&n));
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetaFormat;
    use array_format::Compression;

    #[test]
    fn retained_generations_are_listed_lazily_newest_first() {
        let mut m = Manifest::new(Compression::default(), MetaFormat::Json);
        // A manifest claiming an enormous history lists only what is asked.
        m.generation = u64::MAX / 2;
        m.history_from = Some(1);
        let g = m.generation;
        assert_eq!(retained_generations(&m, 3), [g, g - 1, g - 2]);
        m.history_from = Some(g - 1);
        for (name, t) in [("a", 5), ("b", 9), ("c", 5), ("d", g)] {
            m.tags.insert(
                name.into(),
                TagEntry {
                    generation: t,
                    time_ms: 0,
                    message: None,
                },
            );
        }
        assert_eq!(retained_generations(&m, 10), [g, g - 1, 9, 5]);
        assert!(retained(&m, 9) && retained(&m, g - 1) && !retained(&m, 6));
        assert_eq!(oldest_retained(&m), 5);
    }
}
