//! [`Atlas::query`]: the registry's columnar catalog, overlaid with the
//! handle's pending changes, as the query evaluator's source of statistics.
//!
//! Datasets are named by id. Per committed run, the ids whose rows count
//! (`RunSet::visible`: not held by a newer run, never killed) lose the ids
//! this handle killed or changed since the last commit; changed datasets
//! answer from their current records (statistics of arrays written since the
//! commit from the array files). A query decodes only the catalog columns
//! of the names it references, once per run (kept by the run), and names
//! only its matches.
//!
//! **Invariant:** a query reads exactly what the handle's reads see: the
//! registry view (committed runs plus this handle's changes, copied under one
//! lock) and the array files' merged indexes (pending chunks first), under
//! read locks held for the whole evaluation. It never reads statistics from
//! anywhere else, so they cannot be stale; it never materialises every
//! dataset's record.

mod chunks;
mod scan;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use array_format::ArrayFile;
use tokio::sync::OwnedRwLockReadGuard;

use super::{Atlas, Inner};
use crate::attr::Attr;
use crate::error::{Error, Result};
use crate::query::source::{ArrayGroup, AttrHits, Ids, RowHits, RowTest, StatsSource};
use crate::query::{Query, QueryIds, QueryResult};
use crate::registry::{par_map, Record, Run, RunSet, StatColumn};

impl Atlas {
    /// The datasets matching a query, in insertion order, with an
    /// [`Explain`](crate::query::Explain) of how each term was decided.
    ///
    /// Sees exactly what this handle reads: the committed generation plus its
    /// own pending writes. Reads only the registry catalog's columns of the
    /// names the query references (and array files for datasets changed
    /// since the last commit or left undecided by statistics). Read the
    /// matches with [`Atlas::read_array_across`]`(array, result.names(), …)`.
    pub async fn query(&self, query: &Query) -> Result<QueryResult> {
        self.run_query(query, true).await
    }

    /// Like [`Atlas::query`], without resolving the matches' names: the ids
    /// (stable, see [`Atlas::dataset_id`]), their count and the explain. What
    /// a count needs; naming the matches reads the registry's id blocks of
    /// every run that holds one.
    pub async fn query_ids(&self, query: &Query) -> Result<QueryIds> {
        self.run_query(query, false).await.map(QueryIds::from)
    }

    async fn run_query(&self, query: &Query, named: bool) -> Result<QueryResult> {
        let referenced = query.expr.names();
        let mut files = HashMap::new();
        let mut sorted: Vec<&String> = referenced.iter().collect();
        sorted.sort();
        // Locks taken in name order, as flush takes them.
        for name in sorted {
            if let Some(f) = self.inner.file_async(name).await? {
                files.insert(name.clone(), f.read_owned().await);
            }
        }
        let inner = Arc::clone(&self.inner);
        let generation = self.generation();
        let query = query.clone();
        tokio::task::spawn_blocking(move || {
            let source = CatalogSource::take(&inner, &referenced, files)?;
            crate::query::run(&query, &source, &source, generation, named)
        })
        .await
        .expect("query task panicked")
    }
}

type Guard = OwnedRwLockReadGuard<ArrayFile>;

/// The state a query runs on: the committed runs with the ids whose rows
/// count for this handle, the datasets changed since the last commit, and
/// read guards on the referenced array files.
struct CatalogSource {
    base: Arc<RunSet>,
    /// Per run (oldest first), the ids whose rows and names count.
    visible: Vec<Ids>,
    universe: Ids,
    /// Live datasets changed since the last commit, by id.
    pending: BTreeMap<u64, (String, Record)>,
    /// Array names some live dataset has.
    arrays: BTreeSet<String>,
    /// Referenced names some live dataset has as a dataset attribute.
    attributes: HashSet<String>,
    files: HashMap<String, Guard>,
}

impl CatalogSource {
    /// Copies the registry view under one lock, then derives the visible
    /// sets (bitmap operations) and which referenced names are attributes.
    fn take(
        inner: &Inner,
        referenced: &HashSet<String>,
        files: HashMap<String, Guard>,
    ) -> Result<CatalogSource> {
        let (base, changed, killed, arrays) = {
            let live = inner.live.read();
            (
                Arc::clone(&live.base),
                live.changed
                    .iter()
                    .map(|(n, (_, r))| (n.clone(), r.clone()))
                    .collect::<Vec<_>>(),
                live.killed.clone(),
                live.users
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(a, _)| a.clone())
                    .collect::<BTreeSet<_>>(),
            )
        };
        // Committed rows that no longer count: killed, or changed since.
        let mut gone = killed;
        let mut pending = BTreeMap::new();
        for (name, rec) in changed {
            if let Some(rec) = rec {
                gone.insert(rec.id);
                pending.insert(rec.id, (name, rec));
            }
        }
        let visible: Vec<Ids> = base.visible()?.iter().map(|v| v - &gone).collect();
        let mut universe: Ids = pending.keys().copied().collect();
        for v in &visible {
            universe |= v;
        }
        let mut source = CatalogSource {
            base,
            visible,
            universe,
            pending,
            arrays,
            attributes: HashSet::new(),
            files,
        };
        for name in referenced {
            if source.has_attribute(name)? {
                source.attributes.insert(name.clone());
            }
        }
        Ok(source)
    }

    /// Does some live dataset have the dataset attribute `key`?
    fn has_attribute(&self, key: &str) -> Result<bool> {
        if self
            .pending
            .values()
            .any(|(_, r)| r.meta.attributes.contains_key(key))
        {
            return Ok(true);
        }
        for (run, vis) in self.base.runs.iter().zip(&self.visible) {
            if !run.attr_column(key)?.present.is_disjoint(vis) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The array file of `array`, if it still holds `dataset`'s array.
    fn file(&self, array: &str, dataset: &str) -> Option<&ArrayFile> {
        let f = self.files.get(array)?;
        f.contains(dataset).then_some(&**f)
    }

    /// Statistics of a changed dataset's array: from its record unless the
    /// array was written since the last commit, then from its array file.
    fn pending_stats(
        &self,
        name: &str,
        rec: &Record,
        array: &str,
    ) -> Result<Option<array_format::ArrayStats>> {
        let Some(entry) = rec.meta.arrays.get(array) else {
            return Ok(None);
        };
        if let Some(st) = rec.stats.get(array) {
            return Ok(Some(st.clone()));
        }
        let Some(file) = self.files.get(array) else {
            return Ok(None);
        };
        match file.schema(name) {
            // A dataset deleted while the query took its locks: not there.
            None => return Ok(None),
            Some(f) if *f == *entry.schema => {}
            // As the read paths: never trust sizes the registry did not agree to.
            Some(_) => super::dataset::check_schema(name, array, &entry.schema, file)?,
        }
        file.array_stats(name)
            .map(Some)
            .map_err(|e| Error::array(name, array, e))
    }
}

impl StatsSource for CatalogSource {
    fn universe(&self) -> &Ids {
        &self.universe
    }

    fn name(&self, id: u64) -> Result<String> {
        let one: Ids = std::iter::once(id).collect();
        Ok(self.names(&one)?.pop().unwrap_or_else(|| format!("#{id}")))
    }

    fn names(&self, ids: &Ids) -> Result<Vec<String>> {
        let mut out: Vec<(u64, String)> = Vec::with_capacity(ids.len() as usize);
        let mut work: Vec<(&Run, usize, Vec<u64>)> = Vec::new();
        for (run, vis) in self.base.runs.iter().zip(&self.visible) {
            let mine = ids & vis;
            if !mine.is_empty() {
                let parts = run.id_block_parts(&mine);
                work.extend(parts.into_iter().map(|(i, part)| (&**run, i, part)));
            }
        }
        // Id blocks named on every core (a cold query decodes every id
        // block the matches fall in; by block, a run holding most datasets
        // does not keep one core busy while the other waits).
        for names in par_map(&work, |(run, i, part)| run.names_in_block(*i, part)) {
            out.extend(names?);
        }
        for (id, (name, _)) in &self.pending {
            if ids.contains(*id) {
                out.push((*id, name.clone()));
            }
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        Ok(out.into_iter().map(|(_, n)| n).collect())
    }

    fn is_array(&self, name: &str) -> bool {
        self.arrays.contains(name)
    }

    fn is_attribute(&self, name: &str) -> bool {
        self.attributes.contains(name)
    }

    fn array_names(&self) -> Vec<String> {
        self.arrays.iter().cloned().collect()
    }

    fn attribute_names(&self) -> Vec<String> {
        let mut set = self.base.attribute_names();
        for run in &self.base.runs {
            set.extend(run.list_attribute_names().unwrap_or_default());
        }
        for (_, r) in self.pending.values() {
            set.extend(r.meta.attributes.keys().cloned());
        }
        set.into_iter().collect()
    }

    fn array_groups(&self, array: &str) -> Result<Vec<ArrayGroup>> {
        let mut groups: Vec<ArrayGroup> = Vec::new();
        for (run, vis) in self.base.runs.iter().zip(&self.visible) {
            for v in run.array_variants(array)?.iter() {
                let ids = &v.ids & vis;
                if !ids.is_empty() {
                    groups.push(ArrayGroup {
                        ids,
                        dtype: v.schema.dtype,
                        attrs: Arc::clone(&v.attrs),
                    });
                }
            }
        }
        for (id, (_, rec)) in &self.pending {
            let Some(e) = rec.meta.arrays.get(array) else {
                continue;
            };
            let same = groups.iter_mut().find(|g| {
                g.dtype == e.schema.dtype
                    && (Arc::ptr_eq(&g.attrs, &e.attributes) || *g.attrs == *e.attributes)
            });
            match same {
                Some(g) => {
                    g.ids.insert(*id);
                }
                None => groups.push(ArrayGroup {
                    ids: std::iter::once(*id).collect(),
                    dtype: e.schema.dtype,
                    attrs: Arc::clone(&e.attributes),
                }),
            }
        }
        Ok(groups)
    }

    fn prefetch_columns(&self, arrays: &[&str]) {
        let runs: Vec<&Run> = self
            .base
            .runs
            .iter()
            .zip(&self.visible)
            .filter(|(_, vis)| !vis.is_empty())
            .map(|(run, _)| &**run)
            .collect();
        Run::prefetch_stat_columns(&runs, arrays);
    }

    fn test_rows(&self, array: &str, only: &Ids, test: RowTest<'_>) -> Result<RowHits> {
        let mut hits = RowHits::default();
        let mut runs = Vec::new();
        let mut scopes = Vec::new();
        for (run, vis) in self.base.runs.iter().zip(&self.visible) {
            let scope = only & vis;
            if !scope.is_empty() {
                runs.push(&**run);
                scopes.push(scope);
            }
        }
        let cols = Run::stat_columns(&runs, array)?;
        // Each run's rows tested on every core, the answers (disjoint id
        // sets per run) merged in run order.
        let work: Vec<(&StatColumn, &Ids)> = cols.iter().map(|c| &**c).zip(&scopes).collect();
        for part in par_map(&work, |(col, scope)| {
            let mut part = RowHits::default();
            scan::column(col, scope, test, &mut part);
            part
        }) {
            hits.rows |= part.rows;
            hits.yes |= part.yes;
            hits.maybe |= part.maybe;
            hits.null |= part.null;
        }
        for (id, (name, rec)) in &self.pending {
            if !only.contains(*id) {
                continue;
            }
            if let Some(st) = self.pending_stats(name, rec, array)? {
                scan::row(*id, &st, test, &mut hits);
            }
        }
        Ok(hits)
    }

    fn attribute_hits(
        &self,
        key: &str,
        decide: &mut dyn FnMut(&Attr, u64) -> Result<bool>,
    ) -> Result<AttrHits> {
        let mut out = AttrHits::default();
        for (run, vis) in self.base.runs.iter().zip(&self.visible) {
            let col = run.attr_column(key)?;
            if col.values.is_empty() {
                continue;
            }
            let present = &col.present & vis;
            if present.is_empty() {
                continue;
            }
            let mut yes = Ids::new();
            for (k, value) in col.values.iter().enumerate() {
                let ids = col.ids_of(k);
                match decide(value, ids[0]) {
                    Ok(false) => {}
                    Ok(true) => {
                        yes |= Ids::from_sorted_iter(ids.iter().copied())
                            .expect("a value's ids ascend");
                    }
                    // A mismatch counts only if a live dataset holds the value;
                    // decided again for it, so the message names it.
                    Err(e) => {
                        if let Some(live) = ids.iter().find(|i| vis.contains(**i)) {
                            return Err(decide(value, *live).err().unwrap_or(e));
                        }
                    }
                }
            }
            out.yes |= yes & &present;
            out.present |= present;
        }
        for (id, (_, rec)) in &self.pending {
            if let Some(v) = rec.meta.attributes.get(key) {
                out.present.insert(*id);
                if decide(v, *id)? {
                    out.yes.insert(*id);
                }
            }
        }
        Ok(out)
    }
}
