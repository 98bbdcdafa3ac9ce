//! The committed registry: the manifest's runs, oldest first, read lazily.
//!
//! A name's newest record decides (a tombstone hides older records); an id is
//! live if some run holds a record for it and no run killed it (ids are never
//! reused, so a killed id never comes back). A catalog row of run *r* counts
//! only if no newer run holds a record for the same id.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use array_format::{ArrayStats, Storage};
use roaring::RoaringTreemap;

use super::run::{Entries, Found, MergeRec, Record, Run, RunId, SchemaOf};
use super::{Attr, Result, META_DIR};

/// The runs of one committed generation.
#[derive(Debug, Default)]
pub(crate) struct RunSet {
    /// Oldest first.
    pub runs: Vec<Arc<Run>>,
    killed: OnceLock<RoaringTreemap>,
    visible: OnceLock<Vec<RoaringTreemap>>,
}

impl RunSet {
    /// Opens the named runs (reads each one's trailer and index).
    pub(crate) fn open(storage: &dyn Storage, root: &Path, ids: &[RunId]) -> Result<RunSet> {
        let dir = root.join(META_DIR);
        let runs = ids
            .iter()
            .map(|id| {
                Ok(Arc::new(Run::open(
                    storage,
                    &dir.join(id.as_str()),
                    id.clone(),
                )?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RunSet::from_runs(runs))
    }

    /// A set of already opened runs, oldest first.
    pub(crate) fn from_runs(runs: Vec<Arc<Run>>) -> RunSet {
        RunSet {
            runs,
            killed: OnceLock::new(),
            visible: OnceLock::new(),
        }
    }

    /// The newest record of `name`, if it is live.
    pub(crate) fn get(&self, name: &str) -> Result<Option<Record>> {
        for run in self.runs.iter().rev() {
            match run.get(name)? {
                Some(Found::Live(r)) => return Ok(Some(r)),
                Some(Found::Tombstone) => return Ok(None),
                None => {}
            }
        }
        Ok(None)
    }

    /// `array`'s schema in the newest record of each of `names` (ascending),
    /// where `out` is still `None`; [`SchemaOf::NoDataset`] where no run
    /// has one. Each run's record blocks are read once, in order.
    pub(crate) fn get_schemas(
        &self,
        names: &[&str],
        array: &str,
        out: &mut [Option<SchemaOf>],
        entries: &mut Entries,
    ) -> Result<()> {
        for run in self.runs.iter().rev() {
            if out.iter().all(Option::is_some) {
                break;
            }
            run.get_schemas(names, array, out, entries)?;
        }
        for o in out.iter_mut().filter(|o| o.is_none()) {
            *o = Some(SchemaOf::NoDataset);
        }
        Ok(())
    }

    /// Every id some run's commit made dead.
    pub(crate) fn killed(&self) -> Result<&RoaringTreemap> {
        if let Some(k) = self.killed.get() {
            return Ok(k);
        }
        let mut k = RoaringTreemap::new();
        for run in &self.runs {
            k |= run.killed()?;
        }
        Ok(self.killed.get_or_init(|| k))
    }

    /// Per run (oldest first), the ids whose catalog rows and names count:
    /// the run's ids, minus those a newer run holds, minus every killed id.
    /// Computed once per set (bitmap operations only).
    pub(crate) fn visible(&self) -> Result<&[RoaringTreemap]> {
        if let Some(v) = self.visible.get() {
            return Ok(v);
        }
        let killed = self.killed()?;
        let mut newer = RoaringTreemap::new();
        let mut out = Vec::with_capacity(self.runs.len());
        for run in self.runs.iter().rev() {
            let ids = run.id_set()?;
            out.push(ids - &newer - killed);
            newer |= ids;
        }
        out.reverse();
        Ok(self.visible.get_or_init(|| out))
    }

    /// Live `(id, name)` pairs in id (insertion) order, streamed from the id
    /// blocks of every run.
    pub(crate) fn list(&self) -> Result<Vec<(u64, String)>> {
        let killed = self.killed()?;
        let mut all: Vec<(u64, String)> = Vec::new();
        for run in &self.runs {
            all.extend(
                run.ids()?
                    .into_iter()
                    .filter(|(id, _)| !killed.contains(*id)),
            );
        }
        if self.runs.len() > 1 {
            all.sort_by_key(|(id, _)| *id);
            all.dedup_by_key(|(id, _)| *id);
        }
        Ok(all)
    }

    /// Every live record in name order, newest version of each: a k-way
    /// merge of the runs, one decoded block per run at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, Record) -> Result<()>) -> Result<()> {
        merge(&self.runs, Vec::new(), |name, rec| match rec {
            Some(rec) => f(name, rec.into_record()),
            None => Ok(()),
        })
    }

    /// Catalog rows of an array, `(id, statistics)` sorted by id: each
    /// dataset's newest row, live datasets only.
    pub(crate) fn array_rows(&self, array: &str) -> Result<Vec<(u64, ArrayStats)>> {
        self.rows(|run| run.array_rows(array))
    }

    /// Catalog rows of a dataset attribute, `(id, value)` sorted by id.
    pub(crate) fn attribute_rows(&self, key: &str) -> Result<Vec<(u64, Attr)>> {
        self.rows(|run| run.attribute_rows(key))
    }

    fn rows<T>(&self, read: impl Fn(&Run) -> Result<Vec<(u64, T)>>) -> Result<Vec<(u64, T)>> {
        let killed = self.killed()?;
        let mut seen = RoaringTreemap::new();
        let mut out: Vec<(u64, T)> = Vec::new();
        for run in self.runs.iter().rev() {
            out.extend(
                read(run)?
                    .into_iter()
                    .filter(|(id, _)| !killed.contains(*id) && !seen.contains(*id)),
            );
            if self.runs.len() > 1 {
                seen |= run.id_set()?;
            }
        }
        if self.runs.len() > 1 {
            out.sort_by_key(|(id, _)| *id);
        }
        Ok(out)
    }

    /// Array names with a catalog column in some run.
    pub(crate) fn array_names(&self) -> BTreeSet<String> {
        self.runs
            .iter()
            .flat_map(|r| r.array_names().map(str::to_owned))
            .collect()
    }

    /// Dataset attribute names with a catalog column in some run.
    pub(crate) fn attribute_names(&self) -> BTreeSet<String> {
        self.runs
            .iter()
            .flat_map(|r| r.attribute_names().map(str::to_owned))
            .collect()
    }

    /// Bytes of all runs.
    pub(crate) fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.len()).sum()
    }
}

/// Merges `runs` (oldest first) and then `extra` (newest; sorted by name) by
/// name, the newest record winning: `f` gets each name in order with its
/// newest record (`None`: a tombstone), a run's as it is stored. Holds one
/// decoded block per run at a time.
pub(crate) fn merge(
    runs: &[Arc<Run>],
    extra: Vec<(String, Option<Record>)>,
    mut f: impl FnMut(&str, Option<MergeRec>) -> Result<()>,
) -> Result<()> {
    let extra = extra
        .into_iter()
        .map(|(n, r)| (n, r.map(MergeRec::Held)))
        .collect();
    let mut cursors: Vec<Cursor> = runs
        .iter()
        .map(|r| Cursor::new(Some(Arc::clone(r)), Vec::new()))
        .collect();
    cursors.push(Cursor::new(None, extra));
    for c in &mut cursors {
        c.fill()?;
    }
    loop {
        let Some(min) = cursors
            .iter()
            .filter_map(Cursor::peek)
            .min()
            .map(str::to_owned)
        else {
            return Ok(());
        };
        // Newest source holding `min` wins; every cursor at `min` advances.
        let mut winner: Option<Option<MergeRec>> = None;
        for c in cursors.iter_mut().rev() {
            if c.peek() == Some(min.as_str()) {
                let found = c.take()?;
                if winner.is_none() {
                    winner = Some(found);
                }
            }
        }
        f(&min, winner.expect("some cursor was at the minimum"))?;
    }
}

struct Cursor {
    run: Option<Arc<Run>>,
    next_block: usize,
    recs: std::vec::IntoIter<(String, Option<MergeRec>)>,
    head: Option<(String, Option<MergeRec>)>,
}

impl Cursor {
    fn new(run: Option<Arc<Run>>, recs: Vec<(String, Option<MergeRec>)>) -> Cursor {
        Cursor {
            run,
            next_block: 0,
            recs: recs.into_iter(),
            head: None,
        }
    }

    fn fill(&mut self) -> Result<()> {
        loop {
            if let Some(h) = self.recs.next() {
                self.head = Some(h);
                return Ok(());
            }
            let block = match &self.run {
                Some(run) => run.stored_block(self.next_block)?,
                None => None,
            };
            let Some(block) = block else {
                self.head = None;
                return Ok(());
            };
            self.next_block += 1;
            self.recs = block.into_iter();
        }
    }

    fn peek(&self) -> Option<&str> {
        self.head.as_ref().map(|(n, _)| n.as_str())
    }

    fn take(&mut self) -> Result<Option<MergeRec>> {
        let (_, rec) = self.head.take().expect("peeked");
        self.fill()?;
        Ok(rec)
    }
}
