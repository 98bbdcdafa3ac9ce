//! Where statistics come from: a small internal seam. The store answers it
//! from the registry's columnar catalog plus the handle's pending changes
//! (`store/query.rs`), reading exactly what the handle reads.
//!
//! **Invariant:** datasets are named by their ids, which are stable and
//! ascend in insertion order; a source is one consistent state of the store,
//! and its [`StatsSource::universe`] is exactly the live datasets of that
//! state. Every set a source returns is a subset of the universe.

use std::sync::Arc;

use array_format::{ChunkSummary, DType};
use indexmap::IndexMap;
use roaring::RoaringTreemap;

use super::ast::Stat;
use super::value::ValueSet;
use crate::attr::Attr;
use crate::error::Result;

/// A set of dataset ids.
pub(crate) type Ids = RoaringTreemap;

/// Datasets whose array of one name shares a dtype and an attribute set.
#[derive(Clone, Debug)]
pub(crate) struct ArrayGroup {
    pub ids: Ids,
    pub dtype: DType,
    /// Per-array attributes (CF `units` and `calendar` are read from here).
    pub attrs: Arc<IndexMap<String, Attr>>,
}

/// What [`StatsSource::test_rows`] tests in each dataset's statistics row.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RowTest<'a> {
    /// Is the statistic in the set? (`None`: presence and nullness only.)
    Stat(Stat, Option<&'a ValueSet>),
    /// Does some non-null cell lie in the set, judged from the minimum and
    /// maximum: yes, no or maybe?
    Range(&'a ValueSet),
}

/// The answer of [`StatsSource::test_rows`].
#[derive(Clone, Debug, Default)]
pub(crate) struct RowHits {
    /// Datasets that have a statistics row.
    pub rows: Ids,
    /// `Stat`: the statistic is in the set. `Range`: proven to hold a cell in it.
    pub yes: Ids,
    /// `Range` only: the minimum and maximum cannot decide.
    pub maybe: Ids,
    /// The statistic (for `Range`: the minimum) is undefined: no non-null cell.
    pub null: Ids,
}

/// The answer of [`StatsSource::attribute_hits`].
#[derive(Clone, Debug, Default)]
pub(crate) struct AttrHits {
    /// Datasets that have the attribute.
    pub present: Ids,
    /// Datasets whose value the decision accepted.
    pub yes: Ids,
}

/// Dataset-level statistics and attributes, one column per name.
pub(crate) trait StatsSource {
    /// The live datasets.
    fn universe(&self) -> &Ids;
    /// One dataset's name (for error messages).
    fn name(&self, id: u64) -> Result<String>;
    /// The names of `ids`, in id (insertion) order.
    fn names(&self, ids: &Ids) -> Result<Vec<String>>;
    /// True when some dataset has an array of this name.
    fn is_array(&self, name: &str) -> bool;
    /// True when some dataset has a dataset attribute of this name.
    fn is_attribute(&self, name: &str) -> bool;
    /// Every array name (for suggestions).
    fn array_names(&self) -> Vec<String>;
    /// Every dataset attribute name (for suggestions).
    fn attribute_names(&self) -> Vec<String>;
    /// The datasets that have the array, grouped by dtype and attribute set:
    /// enough to type-check a term over the whole column.
    fn array_groups(&self, array: &str) -> Result<Vec<ArrayGroup>>;
    /// Readies the statistics columns of `arrays` (a query about to test
    /// them), all at once so a cold query decodes them on every core.
    /// Errors are left for [`StatsSource::test_rows`] to report.
    fn prefetch_columns(&self, _arrays: &[&str]) {}
    /// Tests the statistics rows of the array in the datasets of `only`.
    fn test_rows(&self, array: &str, only: &Ids, test: RowTest<'_>) -> Result<RowHits>;
    /// Decides each distinct value of a dataset attribute once (`decide`
    /// gets the value and one dataset holding it, for messages) and returns
    /// the datasets that have it and those whose value was accepted.
    fn attribute_hits(
        &self,
        key: &str,
        decide: &mut dyn FnMut(&Attr, u64) -> Result<bool>,
    ) -> Result<AttrHits>;
}

/// Per-chunk statistics and chunk contents, for the datasets that
/// dataset-level statistics leave undecided.
pub(crate) trait ChunkSource {
    /// Statistics of the stored chunks of one dataset's array (chunks never
    /// written are all null and not listed).
    fn chunks(&self, array: &str, id: u64) -> Result<Vec<ChunkSummary>>;
    /// Decodes one chunk: does a non-null cell belong to `set`?
    fn chunk_has(&self, array: &str, id: u64, chunk_idx: u64, set: &ValueSet) -> Result<bool>;
}
