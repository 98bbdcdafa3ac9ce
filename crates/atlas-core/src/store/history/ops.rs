//! The history operations on [`Atlas`]: opening the past, the log, tags,
//! restore, diff, retention and garbage collection.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use array_format::{
    ArrayFile, ArrayFileOptions, DeltaCache, DeltaCacheConfig, LocalStorage, Storage,
};
use indexmap::IndexMap;

use super::api::{At, Diff, GcReport, LogEntry, Operation, TagInfo};
use super::{
    copy_path, manifest_of, names, oldest_retained, retained, retained_generations, HistoryState,
    Step, HISTORY_DIR,
};
use crate::config::OpenOptions;
use crate::error::{Error, Result};
use crate::registry::{now_ms, tag_name_problem, Manifest, Policy, Record, Retired, TagEntry};
use crate::store::commit::{
    delete_expired, read_manifest, read_manifest_for_writer, sweep_orphans, write_manifest,
    CommitError,
};
use crate::store::open::load_registry;
use crate::store::{Atlas, Inner};

fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn commit_ms(m: &Manifest) -> Option<u64> {
    m.commit.as_ref().map(|c| c.time_ms)
}

/// Resolves `at` against the current manifest `cur` to a retained
/// generation, or the typed error saying why there is none.
pub(crate) fn resolve(storage: &dyn Storage, root: &Path, cur: &Manifest, at: &At) -> Result<u64> {
    let latest = cur.generation;
    let expired = |generation: u64| Error::GenerationExpired {
        path: root.to_owned(),
        generation,
        oldest_retained: oldest_retained(cur),
    };
    match at {
        At::Generation(g) => {
            if *g == 0 || *g > latest {
                return Err(Error::GenerationNotFound {
                    path: root.to_owned(),
                    generation: *g,
                    latest,
                });
            }
            if !retained(cur, *g) {
                return Err(expired(*g));
            }
            Ok(*g)
        }
        At::Tag(name) => {
            cur.tags
                .get(name)
                .map(|t| t.generation)
                .ok_or_else(|| Error::TagNotFound {
                    path: root.to_owned(),
                    name: name.clone(),
                })
        }
        At::Time(t) => {
            let t = to_ms(*t);
            let Some(latest_ms) = commit_ms(cur) else {
                // Written before history: no commit times at all.
                return Err(expired(latest));
            };
            if t > i64::try_from(latest_ms).unwrap_or(i64::MAX) {
                return Err(Error::TimeAfterLatest {
                    path: root.to_owned(),
                    time_ms: t,
                    latest_ms,
                });
            }
            let time_of = |g: u64| -> Result<i64> {
                let m = manifest_of(storage, root, cur, g)?;
                Ok(commit_ms(&m).map_or(i64::MIN, |x| i64::try_from(x).unwrap_or(i64::MAX)))
            };
            // The contiguous range [from, latest] is ordered by time: the
            // newest generation in it committed at or before t.
            let from = cur.history_from.unwrap_or(latest);
            if time_of(from)? <= t {
                let (mut lo, mut hi) = (from, latest); // time(lo) <= t
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    if time_of(mid)? <= t {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                return Ok(lo);
            }
            // Before the range: a tagged generation answers if its
            // successor is known to be later than t.
            let mut tagged: Vec<u64> = cur
                .tags
                .values()
                .map(|x| x.generation)
                .filter(|g| *g < from)
                .collect();
            tagged.sort_unstable();
            tagged.dedup();
            for g in tagged.into_iter().rev() {
                if time_of(g)? <= t {
                    let next_known_later =
                        g + 1 == from || (retained(cur, g + 1) && time_of(g + 1)? > t);
                    return if next_known_later {
                        Ok(g)
                    } else {
                        Err(expired(g + 1))
                    };
                }
            }
            if from == 1 {
                // Before the store's first commit.
                return Err(Error::GenerationNotFound {
                    path: root.to_owned(),
                    generation: 0,
                    latest,
                });
            }
            Err(expired(from - 1))
        }
    }
}

/// After a read of generation `g` found a file missing: the typed error if
/// a newer commit no longer retains `g` (it expired meanwhile), else `err`.
fn expired_or(storage: &dyn Storage, root: &Path, g: u64, err: Error) -> Error {
    match read_manifest(storage, root) {
        Ok((cur, _)) if !retained(&cur, g) => Error::GenerationExpired {
            path: root.to_owned(),
            generation: g,
            oldest_retained: oldest_retained(&cur),
        },
        _ => err,
    }
}

fn is_not_found(e: &Error) -> bool {
    match e {
        Error::Storage(s) => s.is_not_found(),
        _ => false,
    }
}

impl Atlas {
    /// Opens the store at `location` as it was at a retained generation: a
    /// read-only handle on which every read works (datasets, arrays,
    /// attributes, statistics, cross-dataset reads, queries) and every write
    /// returns [`Error::ReadOnly`].
    ///
    /// Errors: [`Error::GenerationExpired`] (with the oldest retained
    /// generation), [`Error::GenerationNotFound`], [`Error::TagNotFound`],
    /// [`Error::TimeAfterLatest`].
    pub async fn open_at(location: &str, at: At) -> Result<Atlas> {
        let (storage, root) = crate::storage_for(location, &[])?;
        Self::open_at_with(storage, &root, at, OpenOptions::default()).await
    }

    /// [`Atlas::open_at`] on a local directory.
    pub async fn open_path_at(path: impl AsRef<Path>, at: At) -> Result<Atlas> {
        Self::open_at_with(
            Arc::new(LocalStorage),
            path.as_ref(),
            at,
            OpenOptions::default(),
        )
        .await
    }

    /// [`Atlas::open_at`] on any storage backend.
    pub async fn open_at_with(
        storage: Arc<dyn Storage>,
        path: &Path,
        at: At,
        options: OpenOptions,
    ) -> Result<Atlas> {
        let root = path.to_owned();
        tokio::task::spawn_blocking(move || open_at_sync(storage, &root, &at, options))
            .await
            .expect("open task panicked")
    }

    /// The retained generations, newest first, at most `limit` of them:
    /// the current one, those the retention policy keeps, then tagged older
    /// ones. Reads one history copy per entry.
    pub async fn log(&self, limit: usize) -> Result<Vec<LogEntry>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let storage = inner.storage.as_ref();
            let (cur, _) = read_manifest(storage, &inner.root)?;
            let mut out = Vec::new();
            for g in retained_generations(&cur, limit) {
                match manifest_of(storage, &inner.root, &cur, g) {
                    Ok(m) => out.push(LogEntry::of(&m, &cur)),
                    // Expired by a commit since the manifest was read.
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
        .expect("log task panicked")
    }

    /// The live tags of the generation this handle reads, by name.
    pub fn tags(&self) -> Vec<TagInfo> {
        self.inner
            .committed
            .lock()
            .history
            .tags
            .iter()
            .map(|(name, t)| TagInfo {
                name: name.clone(),
                generation: t.generation,
                time: UNIX_EPOCH + Duration::from_millis(t.time_ms),
                message: t.message.clone(),
            })
            .collect()
    }

    /// The generation this handle was opened at with [`Atlas::open_at`]
    /// (`None`: a handle on the current state).
    pub fn opened_at(&self) -> Option<u64> {
        self.inner.at
    }

    /// Names a retained generation `at` with `name`, in a commit (so a tag
    /// and garbage collection never race). Tags are immutable: a name in use
    /// or used by a deleted tag is [`Error::TagExists`]. A tagged generation
    /// stays readable until the tag is deleted. Returns the tagged generation.
    pub async fn tag(&self, name: &str, at: At, message: Option<&str>) -> Result<u64> {
        if let Some(reason) = tag_name_problem(name) {
            return Err(Error::InvalidName {
                kind: "tag",
                name: name.to_owned(),
                reason,
            });
        }
        let (name, message) = (name.to_owned(), message.map(str::to_owned));
        let key = name.clone();
        let m = meta_commit(
            &self.inner,
            Operation::Tag,
            message.clone(),
            false,
            move |cur, inner| {
                if let Some(deleted) = cur
                    .tags
                    .contains_key(&name)
                    .then_some(false)
                    .or(cur.dead_tags.contains(&name).then_some(true))
                {
                    return Err(Error::TagExists { name, deleted });
                }
                let g = resolve(inner.storage.as_ref(), &inner.root, cur, &at)?;
                let mut next = cur.clone();
                next.tags.insert(
                    name,
                    TagEntry {
                        generation: g,
                        time_ms: now_ms(),
                        message,
                    },
                );
                Ok(Edit::of(next))
            },
        )
        .await?;
        Ok(m.tags[&key].generation)
    }

    /// Deletes a tag, in a commit; its name is never used again. Its
    /// generation expires at a later commit or `gc` unless retained
    /// otherwise.
    pub async fn untag(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        meta_commit(
            &self.inner,
            Operation::Untag,
            None,
            false,
            move |cur, inner| {
                let mut next = cur.clone();
                if next.tags.remove(&name).is_none() {
                    return Err(Error::TagNotFound {
                        path: inner.root.clone(),
                        name,
                    });
                }
                next.dead_tags.insert(name);
                Ok(Edit::of(next))
            },
        )
        .await?;
        Ok(())
    }

    /// Sets the history retention (stored in the manifest, followed by every
    /// later writer), in a commit: keep the newest `keep_generations`
    /// generations (counting the current one) and those committed less than
    /// `keep_secs` seconds ago.
    pub async fn set_retention(&self, keep_generations: u64, keep_secs: u64) -> Result<()> {
        meta_commit(
            &self.inner,
            Operation::Retention,
            None,
            false,
            move |cur, _| {
                let mut next = cur.clone();
                next.policy.keep_generations = keep_generations.max(1);
                next.policy.keep_secs = keep_secs;
                // A longer window cannot bring back what has expired; a shorter
                // one takes effect at this commit or at `gc`.
                Ok(Edit::of(next))
            },
        )
        .await?;
        Ok(())
    }

    /// The store policy in force (from the manifest this handle read).
    pub fn policy(&self) -> Policy {
        self.inner.committed.lock().policy
    }

    /// Makes a new commit whose state is generation `at`'s: its datasets,
    /// arrays and files (pending changes are flushed first, then replaced;
    /// writes made through this handle while the restore runs are
    /// discarded). History stays: the restored-over generations remain
    /// readable while retained. Returns the new generation.
    pub async fn restore(&self, at: At, message: Option<&str>) -> Result<u64> {
        self.inner.ensure_writer_async().await?;
        super::super::commit::flush_and_merge(&self.inner).await?;
        let message = message.map(str::to_owned);
        let m = meta_commit(
            &self.inner,
            Operation::Restore,
            message,
            true,
            move |cur, inner| {
                let storage = inner.storage.as_ref();
                let g = resolve(storage, &inner.root, cur, &at)?;
                let old = manifest_of(storage, &inner.root, cur, g)?;
                let mut next = cur.clone();
                next.arrays.clone_from(&old.arrays);
                next.dirs.clone_from(&old.dirs);
                next.users.clone_from(&old.users);
                next.runs.clone_from(&old.runs);
                next.segments.clone_from(&old.segments);
                next.n_datasets = old.n_datasets;
                next.next_id = cur.next_id.max(old.next_id);
                next.next_dir = cur.next_dir.max(old.next_dir);
                let now_named = names(cur);
                let then_named = names(&old);
                let retired: HashSet<String> = cur
                    .retired_all()
                    .map(|r| format!("{}/{}", r.dir, r.file))
                    .collect();
                if let Some(lost) = then_named
                    .iter()
                    .find(|f| !now_named.contains(*f) && !retired.contains(*f))
                {
                    return Err(Error::CorruptRegistry {
                        path: copy_path(&inner.root, g),
                        reason: format!(
                            "generation {g} names {lost}, which the store no longer keeps"
                        ),
                    });
                }
                let newly = now_named
                    .difference(&then_named)
                    .filter_map(|f| f.split_once('/'))
                    .map(|(dir, file)| Retired {
                        dir: dir.to_owned(),
                        file: file.to_owned(),
                        since_ms: now_ms(),
                        generation: cur.generation + 1,
                    })
                    .collect();
                Ok(Edit {
                    next,
                    newly,
                    unretire: then_named,
                    new_from: None,
                })
            },
        )
        .await?;
        Ok(m.generation)
    }

    /// Datasets added, changed and deleted from generation `a` to `b`.
    /// A dataset is changed when its id (deleted and re-created), schemas,
    /// attributes or statistics differ, or when an array's stored chunks
    /// differ (compared by each chunk's CRC-32C and length, from the array
    /// files' indexes, for the arrays whose layer lists differ): data
    /// rewritten with the same statistics is seen; data rewritten with
    /// identical bytes is not a change.
    pub async fn diff(&self, a: At, b: At) -> Result<Diff> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let storage = inner.storage.as_ref();
            let (cur, _) = read_manifest(storage, &inner.root)?;
            let state = |at: &At| -> Result<(Manifest, IndexMap<String, Record>)> {
                let g = resolve(storage, &inner.root, &cur, at)?;
                let m = manifest_of(storage, &inner.root, &cur, g)
                    .map_err(|e| expired_or(storage, &inner.root, g, e))?;
                let records = load_registry(storage, &inner.root, &m)
                    .map_err(|e| expired_or(storage, &inner.root, g, e))?
                    .into_records()?;
                Ok((m, records))
            };
            let ((ma, ra), (mb, rb)) = (state(&a)?, state(&b)?);
            let mut chunks = ChunkCompare::new(&inner, &ma, &mb);
            let mut d = Diff::default();
            for (name, rec) in &rb {
                match ra.get(name) {
                    None => d.added.push(name.clone()),
                    Some(old)
                        if old.id != rec.id
                            || old.meta != rec.meta
                            || (old.stats != rec.stats
                                && !old.stats.is_empty()
                                && !rec.stats.is_empty()) =>
                    {
                        d.changed.push(name.clone());
                    }
                    Some(_) => {
                        for array in rec.meta.arrays.keys() {
                            if chunks
                                .differ(array, name)
                                .map_err(|e| expired_or(storage, &inner.root, ma.generation, e))?
                            {
                                d.changed.push(name.clone());
                                break;
                            }
                        }
                    }
                }
            }
            d.deleted = ra
                .keys()
                .filter(|n| !rb.contains_key(*n))
                .cloned()
                .collect();
            d.added.sort();
            d.changed.sort();
            d.deleted.sort();
            Ok(d)
        })
        .await
        .expect("diff task panicked")
    }

    /// Garbage collection: expires the history the retention policy no
    /// longer keeps (in a commit recording the new oldest retained
    /// generation), then deletes the history copies and retired files no
    /// retained generation names whose grace period has passed, and sweeps
    /// orphans. Idempotent; a crash at any step leaves a consistent store
    /// (what is left is garbage the next `gc` removes). With `dry_run`,
    /// reports what it would do and changes nothing.
    pub async fn gc(&self, dry_run: bool) -> Result<GcReport> {
        self.inner.ensure_writer_async().await?;
        upgrade(&self.inner).await?;
        let _commit = self.inner.commit_lock.lock().await;
        let _structure = self.inner.structure.lock().await;
        let inner = Arc::clone(&self.inner);
        let r = tokio::task::spawn_blocking(move || gc_sync(&inner, dry_run))
            .await
            .expect("gc task panicked");
        self.inner.note_failure(&r);
        r
    }
}

fn open_at_sync(
    storage: Arc<dyn Storage>,
    root: &Path,
    at: &At,
    options: OpenOptions,
) -> Result<Atlas> {
    let s = storage.as_ref();
    let (cur, _) = read_manifest(s, root)?;
    let g = resolve(s, root, &cur, at)?;
    let m = manifest_of(s, root, &cur, g).map_err(|e| expired_or(s, root, g, e))?;
    let loaded = load_registry(s, root, &m).map_err(|e| expired_or(s, root, g, e))?;
    let handles =
        Atlas::pin_layers(s, root, &m).map_err(|e| expired_or(s, root, g, Error::from(e)))?;
    let options = OpenOptions {
        write: false,
        ..options
    };
    let mut atlas = Atlas::from_parts(
        storage,
        root.to_owned(),
        (m, None),
        loaded,
        handles,
        options,
    );
    Arc::get_mut(&mut atlas.inner)
        .expect("a new handle is not shared")
        .at = Some(g);
    Ok(atlas)
}

/// What a manifest-only commit changes.
struct Edit {
    /// The next manifest before stamping (history fields are filled in).
    next: Manifest,
    /// Files this commit stops naming.
    newly: Vec<Retired>,
    /// Files (`dir/file`) named again: they leave the retired list.
    unretire: HashSet<String>,
    /// Retention start (`None`: the default rule).
    new_from: Option<u64>,
}

impl Edit {
    fn of(next: Manifest) -> Edit {
        Edit {
            next,
            newly: Vec::new(),
            unretire: HashSet::new(),
            new_from: None,
        }
    }
}

/// A store written before registry runs is upgraded (its datasets written
/// into a run, as a flush does) before a commit that rewrites only the
/// manifest.
async fn upgrade(inner: &Arc<Inner>) -> Result<()> {
    if inner.committed.lock().segments.is_empty() {
        return Ok(());
    }
    crate::store::commit::flush_with(inner, true).await
}

/// A commit that changes only the manifest (tag, untag, retention, restore,
/// gc): reads the manifest (it must be this handle's last commit), applies
/// `edit`, writes the superseded generation's history copy, commits, and
/// deletes what it expired. Returns the committed manifest.
///
/// With `reload`, the handle's state (registry view, array files) is then
/// replaced by the committed manifest's, under the commit and structure
/// locks (a restore).
async fn meta_commit(
    inner: &Arc<Inner>,
    op: Operation,
    message: Option<String>,
    reload_after: bool,
    edit: impl FnOnce(&Manifest, &Inner) -> Result<Edit> + Send + 'static,
) -> Result<Manifest> {
    inner.ensure_writer_async().await?;
    upgrade(inner).await?;
    let _commit = inner.commit_lock.lock().await;
    let _structure = if reload_after {
        Some(inner.structure.lock().await)
    } else {
        None
    };
    let inner2 = Arc::clone(inner);
    let r = tokio::task::spawn_blocking(move || {
        let (cur, version) = read_manifest_for_writer(&inner2)?;
        if cur.generation != inner2.committed.lock().generation {
            return Err(Error::StaleHandle {
                path: inner2.root.clone(),
            });
        }
        let e = edit(&cur, &inner2)?;
        let m = commit_edit(&inner2, &cur, &version, e, op, message)?;
        if reload_after {
            if let Err(e) = reload(&inner2, &m) {
                // Committed, but this handle cannot show it: reopen.
                inner2
                    .poisoned
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(m)
    })
    .await
    .expect("commit task panicked");
    inner.note_failure(&r);
    r
}

fn commit_edit(
    inner: &Inner,
    cur: &Manifest,
    version: &array_format::Version,
    e: Edit,
    op: Operation,
    message: Option<String>,
) -> Result<Manifest> {
    let storage = inner.storage.as_ref();
    let hist = inner.committed.lock().history.clone();
    let mut next = e.next;
    let policy = next.policy;
    let step = Step::plan(
        inner,
        &hist,
        cur.generation,
        policy,
        e.new_from,
        next.tags.clone(),
        next.dead_tags.clone(),
    )?;
    let now = now_ms();
    let unretired = |r: &Retired| e.unretire.contains(&format!("{}/{}", r.dir, r.file));
    // A chunk holding a file that is live again dissolves: its other
    // entries become loose.
    let (mut sealed, mut dissolved) = (Vec::new(), Vec::new());
    let mut base: Vec<Retired> = Vec::new();
    for c in &cur.retired_sealed {
        if c.entries.iter().any(unretired) {
            base.extend(c.entries.iter().filter(|r| !unretired(r)).cloned());
            dissolved.push(c.file.clone());
        } else {
            sealed.push(Arc::clone(c));
        }
    }
    base.extend(cur.retired.iter().filter(|r| !unretired(r)).cloned());
    let expired = step
        .settle(&sealed, &base, e.newly.into_iter(), now, policy)
        .apply(&mut next);
    next.retired_dissolved.extend(dissolved);
    step.stamp(&mut next, op.as_str(), message, [0; 4], now);
    step.write_copy(storage, &inner.root, &next)?;
    let v = match write_manifest(storage, &inner.root, &mut next, Some(version)) {
        Ok(v) => v,
        Err(CommitError::Unknown(err)) => {
            inner
                .poisoned
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(err.into());
        }
        Err(err) => return Err(err.into_error(&inner.root)),
    };
    {
        let mut c = inner.committed.lock();
        c.generation = next.generation;
        c.version = Some(v);
        c.retired.clone_from(&next.retired);
        c.retired_sealed.clone_from(&next.retired_sealed);
        c.retired_file.clone_from(&next.retired_file);
        c.retired_loaded = true;
        c.policy = next.policy;
        c.history = HistoryState::of(&next);
    }
    step.after(storage, &inner.root);
    delete_expired(inner, &expired);
    Ok(next)
}

/// Makes the handle's state the committed manifest `m` (after a restore).
fn reload(inner: &Inner, m: &Manifest) -> Result<()> {
    let storage = inner.storage.as_ref();
    let loaded = load_registry(storage, &inner.root, m)?;
    let handles = Atlas::pin_layers(storage, &inner.root, m)?;
    inner.replace_state(m, loaded, handles);
    Ok(())
}

fn gc_sync(inner: &Inner, dry_run: bool) -> Result<GcReport> {
    let storage = inner.storage.as_ref();
    let root = &inner.root;
    let (cur, version) = read_manifest_for_writer(inner)?;
    if cur.generation != inner.committed.lock().generation {
        return Err(Error::StaleHandle { path: root.clone() });
    }
    let new_gen = cur.generation + 1;
    let policy = cur.policy;
    let start = cur.history_from.unwrap_or(new_gen);
    let count_from = (new_gen + 1)
        .saturating_sub(policy.keep_generations.max(1))
        .max(1);
    // Generations older than the count window expire unless younger than
    // the time window; times increase with generations, so stop at the
    // first young one (reads proportional to what expires).
    let mut new_from = start.max(count_from);
    if policy.keep_secs > 0 {
        let cutoff = now_ms().saturating_sub(policy.keep_secs.saturating_mul(1000));
        new_from = start;
        while new_from < count_from {
            let m = manifest_of(storage, root, &cur, new_from)?;
            if commit_ms(&m).is_some_and(|t| t >= cutoff) {
                break;
            }
            new_from += 1;
        }
    }
    let tagged: HashSet<u64> = cur.tags.values().map(|t| t.generation).collect();
    // Superseded generations the retention stops keeping (each has a copy).
    let expired_gens: Vec<u64> = (start..new_from.min(cur.generation))
        .filter(|g| !tagged.contains(g))
        .collect();
    // Leftover copies: of generations no longer retained (a crash after a
    // commit that expired them) — never of a retained one or the current.
    let mut leftovers: Vec<u64> = storage
        .list_dir(&root.join(HISTORY_DIR))
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.strip_suffix(".json").and_then(|g| g.parse::<u64>().ok()))
        .filter(|g| *g < new_from.min(cur.generation) && !tagged.contains(g))
        .collect();
    leftovers.sort_unstable();
    let hist = inner.committed.lock().history.clone();
    let step = Step::plan(
        inner,
        &hist,
        cur.generation,
        policy,
        Some(new_from),
        cur.tags.clone(),
        cur.dead_tags.clone(),
    )?;
    let now = now_ms();
    let deletable = step
        .settle(
            &cur.retired_sealed,
            &cur.retired,
            std::iter::empty(),
            now,
            policy,
        )
        .expired;
    // A commit only when history with copies expires or files are freed:
    // a gc with nothing to do changes nothing (idempotent).
    let history_moves = !expired_gens.is_empty();
    let mut report = GcReport {
        expired_generations: expired_gens.clone(),
        oldest_retained: 0,
        deleted_files: Vec::new(),
        commit: None,
    };
    let copy_name = |g: u64| format!("{HISTORY_DIR}/{g}.json");
    if dry_run {
        let mut next = cur.clone();
        next.history_from = Some(new_from);
        next.generation = new_gen;
        report.oldest_retained = oldest_retained(&next).min(new_gen);
        let mut files: Vec<String> = deletable
            .iter()
            .map(|r| format!("{}/{}", r.dir, r.file))
            .collect();
        let mut copies: Vec<u64> = leftovers.clone();
        copies.extend(expired_gens.iter().copied());
        copies.sort_unstable();
        copies.dedup();
        files.extend(copies.into_iter().map(copy_name));
        report.deleted_files = files;
        return Ok(report);
    }
    let mut current = cur.clone();
    if history_moves || !deletable.is_empty() {
        let n_expired = expired_gens.len();
        let message = Some(format!(
            "expired {n_expired} generation{}, deleted {} retired file{}",
            if n_expired == 1 { "" } else { "s" },
            deletable.len(),
            if deletable.len() == 1 { "" } else { "s" },
        ));
        let e = Edit {
            next: cur.clone(),
            newly: Vec::new(),
            unretire: HashSet::new(),
            new_from: Some(new_from),
        };
        current = commit_edit(inner, &cur, &version, e, Operation::Gc, message)?;
        report.commit = Some(current.generation);
        report
            .deleted_files
            .extend(deletable.iter().map(|r| format!("{}/{}", r.dir, r.file)));
    }
    // The commit is durable: nothing retained names these copies.
    let mut copies: Vec<u64> = leftovers;
    copies.extend(expired_gens.iter().copied());
    copies.sort_unstable();
    copies.dedup();
    for g in copies {
        match storage.remove_file(&copy_path(root, g)) {
            Ok(()) => report.deleted_files.push(copy_name(g)),
            // Deleted by the commit's own clean-up.
            Err(e) if e.is_not_found() && expired_gens.contains(&g) => {
                report.deleted_files.push(copy_name(g));
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    report.deleted_files.sort();
    report.deleted_files.dedup();
    // Orphans (files no commit names, left by a crash or a failed write):
    // none can exist when this writer swept at its lock and nothing failed
    // since (see `Inner::swept`), so the store is not listed again and gc
    // costs what it expires. On object stores other writers may leave
    // some at any time: always swept.
    if storage.is_object_store() || !inner.swept.load(std::sync::atomic::Ordering::SeqCst) {
        sweep_orphans(
            storage,
            root,
            &current,
            Some(&|d: &str| inner.dir_in_use(d)),
        );
        if !storage.is_object_store() {
            inner.swept.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    report.oldest_retained = oldest_retained(&current);
    Ok(report)
}

/// Compares one dataset's stored chunks of an array between two
/// generations, opening each array file (index only) once, and only for
/// arrays whose layer lists differ.
struct ChunkCompare<'a> {
    inner: &'a Inner,
    a: &'a Manifest,
    b: &'a Manifest,
    files: std::collections::HashMap<String, Option<(ArrayFile, ArrayFile)>>,
}

impl<'a> ChunkCompare<'a> {
    fn new(inner: &'a Inner, a: &'a Manifest, b: &'a Manifest) -> Self {
        ChunkCompare {
            inner,
            a,
            b,
            files: std::collections::HashMap::new(),
        }
    }

    fn open(&self, m: &Manifest, array: &str) -> Result<ArrayFile> {
        let dir = self.inner.root.join(&m.dirs[array]);
        // No cache levels: nothing but the footer indexes is read.
        let cache = Arc::new(DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 0,
            decoded_capacity_bytes: 0,
        }));
        Ok(ArrayFile::open(
            Arc::clone(&self.inner.storage),
            &dir,
            &m.arrays[array],
            ArrayFileOptions::default(),
            cache,
        )?)
    }

    /// True when `dataset`'s chunks of `array` differ between the two
    /// generations (both name the array: the records say the dataset has it
    /// in both).
    fn differ(&mut self, array: &str, dataset: &str) -> Result<bool> {
        if !self.files.contains_key(array) {
            let same = self.a.arrays.get(array) == self.b.arrays.get(array)
                && self.a.dirs.get(array) == self.b.dirs.get(array);
            let pair =
                if same || !self.a.arrays.contains_key(array) || !self.b.arrays.contains_key(array)
                {
                    None
                } else {
                    Some((self.open(self.a, array)?, self.open(self.b, array)?))
                };
            self.files.insert(array.to_owned(), pair);
        }
        let Some((fa, fb)) = &self.files[array] else {
            return Ok(false);
        };
        let missing =
            |e: &array_format::Error| matches!(e, array_format::Error::ArrayNotFound { .. });
        match (
            fa.chunk_fingerprints(dataset),
            fb.chunk_fingerprints(dataset),
        ) {
            (Ok(x), Ok(y)) => Ok(x != y),
            (Err(x), Err(y)) if missing(&x) && missing(&y) => Ok(false),
            (Err(e), _) | (_, Err(e)) if missing(&e) => Ok(true),
            (Err(e), _) | (_, Err(e)) => Err(Error::array(dataset, array, e)),
        }
    }
}
