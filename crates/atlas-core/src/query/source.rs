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

use super::value::ValueSet;
use crate::attr::Attr;
use crate::error::Result;

/// One dataset's array, as the evaluator sees it at the dataset level.
#[derive(Clone, Debug)]
pub(crate) struct ArrayRow {
    /// The dataset's position.
    pub pos: u32,
    pub dtype: DType,
    /// Exact statistics merged from the live chunks.
    pub stats: ArrayStats,
    /// Per-array attributes (CF `units` and `calendar` are read from here).
    pub attrs: Arc<IndexMap<String, Attr>>,
}

/// Dataset-level statistics and attributes (one column per name).
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
    /// The positions of the datasets that have the array (no statistics).
    fn array_positions(&self, array: &str) -> roaring::RoaringBitmap;
    /// The array's row in every dataset that has it, by position.
    fn array_rows(&self, array: &str) -> Result<Vec<ArrayRow>>;
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
