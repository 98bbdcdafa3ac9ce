//! Where statistics come from: a small internal seam. Today the store's
//! registry and array files answer it (`store/query.rs`, reading exactly what
//! the handle reads); the per-generation columnar catalog of issue 12 can
//! answer it later without changing the evaluator.
//!
//! **Invariant:** positions are dataset positions in insertion order
//! (`0..n_datasets`), fixed for the lifetime of one source; a source is one
//! consistent state of the store.

use std::sync::Arc;

use array_format::{ArrayStats, ChunkSummary, DType};
use indexmap::IndexMap;
use roaring::RoaringBitmap;

use super::value::ValueSet;
use crate::attr::Attr;
use crate::error::Result;

/// One dataset's array as the registry describes it (no statistics).
#[derive(Clone, Debug)]
pub(crate) struct ArrayEntry {
    /// The dataset's position.
    pub pos: u32,
    pub dtype: DType,
    /// Per-array attributes (CF `units` and `calendar` are read from here).
    pub attrs: Arc<IndexMap<String, Attr>>,
}

/// Dataset-level statistics and attributes, one column per name.
pub(crate) trait StatsSource {
    /// Datasets, positions `0..n`.
    fn n_datasets(&self) -> u32;
    /// The dataset at a position.
    fn name(&self, pos: u32) -> &str;
    /// True when some dataset has an array of this name.
    fn is_array(&self, name: &str) -> bool;
    /// True when some dataset has a dataset attribute of this name.
    fn is_attribute(&self, name: &str) -> bool;
    /// Every array name (for suggestions).
    fn array_names(&self) -> Vec<String>;
    /// Every dataset attribute name (for suggestions).
    fn attribute_names(&self) -> Vec<String>;
    /// The datasets that have the array, by position, with its dtype and
    /// attributes: enough to type-check a term over the whole column.
    fn array_entries(&self, array: &str) -> Vec<ArrayEntry>;
    /// Exact statistics of the array in the datasets of `only` that have it,
    /// by position: the expensive column, fetched only for candidates.
    fn array_stats(&self, array: &str, only: &RoaringBitmap) -> Result<Vec<(u32, ArrayStats)>>;
    /// The attribute's value in every dataset that has it, by position.
    fn attribute_rows(&self, key: &str) -> Vec<(u32, Attr)>;
}

/// Per-chunk statistics and chunk contents, for the datasets that
/// dataset-level statistics leave undecided.
pub(crate) trait ChunkSource {
    /// Statistics of the stored chunks of one dataset's array (chunks never
    /// written are all null and not listed).
    fn chunks(&self, array: &str, pos: u32) -> Result<Vec<ChunkSummary>>;
    /// Decodes one chunk: does a non-null cell belong to `set`?
    fn chunk_has(&self, array: &str, pos: u32, chunk_idx: u64, set: &ValueSet) -> Result<bool>;
}
