//! Per-chunk statistics, merged into [`ArrayStats`] without rescanning data.

use crate::dtype::StatValue;
use crate::element::ArrayElement;

/// Statistics of one stored chunk, computed when it is written.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChunkStats {
    /// Cells equal to the declared fill value, or NaN.
    pub null_count: u64,
    /// Smallest non-null cell.
    pub min: Option<StatValue>,
    /// Largest non-null cell.
    pub max: Option<StatValue>,
}

/// Statistics of a whole array: every cell, written or not.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ArrayStats {
    /// Smallest non-null cell, `None` if every cell is null.
    pub min: Option<StatValue>,
    /// Largest non-null cell, `None` if every cell is null.
    pub max: Option<StatValue>,
    /// Cells that are null: in a chunk never written, equal to the declared fill
    /// value, or NaN. Without a declared fill value, the unwritten cells of a
    /// partly written chunk read as zero and count as values.
    pub null_count: u64,
    /// Number of cells in the array.
    pub row_count: u64,
}

/// One stored chunk of an array, as its index entry describes it (no data is read).
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkSummary {
    /// The chunk's index in the chunk grid (row-major).
    pub chunk_idx: u64,
    /// Cells in the chunk (edge chunks are clipped).
    pub n_cells: u64,
    /// The chunk's statistics.
    pub stats: ChunkStats,
    /// Bytes the chunk occupies as stored (compressed).
    pub stored_bytes: u64,
}

impl ChunkStats {
    /// Scans one chunk's cells.
    pub(crate) fn compute<T: ArrayElement>(values: &[T], fill: Option<&T>) -> ChunkStats {
        let mut nulls = 0u64;
        let mut min: Option<&T> = None;
        let mut max: Option<&T> = None;
        for v in values {
            if v.is_nan() || fill.is_some_and(|f| f == v) {
                nulls += 1;
                continue;
            }
            if min.is_none_or(|m| v < m) {
                min = Some(v);
            }
            if max.is_none_or(|m| v > m) {
                max = Some(v);
            }
        }
        ChunkStats {
            null_count: nulls,
            min: min.map(ArrayElement::to_stat),
            max: max.map(ArrayElement::to_stat),
        }
    }
}

impl ArrayStats {
    /// Starts from an array of `row_count` cells, all null.
    pub(crate) fn all_null(row_count: u64) -> Self {
        ArrayStats {
            min: None,
            max: None,
            null_count: row_count,
            row_count,
        }
    }

    /// Folds in one stored chunk of `n_cells` cells (which were counted as null).
    pub(crate) fn add_chunk(&mut self, n_cells: u64, chunk: &ChunkStats) {
        self.null_count = self.null_count - n_cells + chunk.null_count.min(n_cells);
        if let Some(m) = &chunk.min {
            if self
                .min
                .as_ref()
                .is_none_or(|cur| m.partial_cmp_same(cur) == Some(std::cmp::Ordering::Less))
            {
                self.min = Some(m.clone());
            }
        }
        if let Some(m) = &chunk.max {
            if self
                .max
                .as_ref()
                .is_none_or(|cur| m.partial_cmp_same(cur) == Some(std::cmp::Ordering::Greater))
            {
                self.max = Some(m.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_fill_or_nan() {
        let s = ChunkStats::compute(&[1.0f32, f32::NAN, -9.0, 3.5, -9.0], Some(&-9.0));
        assert_eq!(s.null_count, 3);
        assert_eq!(s.min, Some(StatValue::Float(1.0)));
        assert_eq!(s.max, Some(StatValue::Float(3.5)));
        let all = ChunkStats::compute(&[f64::NAN], None);
        assert_eq!((all.null_count, all.min), (1, None));
    }

    #[test]
    fn array_stats_merge_chunks_and_unwritten_cells() {
        let mut a = ArrayStats::all_null(10);
        a.add_chunk(4, &ChunkStats::compute(&[3i32, 1, 2, 0], None));
        a.add_chunk(4, &ChunkStats::compute(&[9i32, 9, 7, 5], Some(&9)));
        assert_eq!(a.null_count, 2 + 2);
        assert_eq!(a.min, Some(StatValue::Int(0)));
        assert_eq!(a.max, Some(StatValue::Int(7)));
        assert_eq!(a.row_count, 10);
    }
}
