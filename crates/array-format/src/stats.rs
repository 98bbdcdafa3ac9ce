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
        let (null_count, min, max) = T::null_min_max(values, fill);
        ChunkStats {
            null_count,
            min,
            max,
        }
    }
}

/// [`ArrayElement::null_min_max`] cell by cell, in order: the definition
/// the lane scan must agree with, and the path of `bool`, timestamps and
/// strings.
pub(crate) fn scan_in_order<T: ArrayElement>(
    values: &[T],
    fill: Option<&T>,
) -> (u64, Option<StatValue>, Option<StatValue>) {
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
    (nulls, min.map(T::to_stat), max.map(T::to_stat))
}

/// Lanes of the scan in [`scan_lanes`]: wide enough for two vectors of
/// `f32` per comparison.
const LANES: usize = 8;

/// Cells the lanes scan before their null counts (`u32`s, which cannot
/// overflow within a block) are added to the `u64` total. Small in tests,
/// so that their chunks span several blocks.
const LANE_BLOCK: usize = if cfg!(test) { LANES * 4 } else { LANES << 24 };

/// The identities of a minimum and a maximum of numeric cells: no cell is
/// above `HIGH` or below `LOW`. A lane of [`scan_lanes`] starts from them,
/// and a null cell counts as them, so the scan needs no branch per cell.
pub(crate) trait LaneBounds: Copy {
    /// Not below any cell (the maximum, or positive infinity).
    const HIGH: Self;
    /// Not above any cell (the minimum, or negative infinity).
    const LOW: Self;
}

macro_rules! lane_bounds {
    ($($t:ty: $high:expr, $low:expr;)*) => {
        $(impl LaneBounds for $t {
            const HIGH: Self = $high;
            const LOW: Self = $low;
        })*
    };
}

lane_bounds! {
    i8: i8::MAX, i8::MIN;
    i16: i16::MAX, i16::MIN;
    i32: i32::MAX, i32::MIN;
    i64: i64::MAX, i64::MIN;
    u8: u8::MAX, u8::MIN;
    u16: u16::MAX, u16::MIN;
    u32: u32::MAX, u32::MIN;
    u64: u64::MAX, u64::MIN;
    f32: f32::INFINITY, f32::NEG_INFINITY;
    f64: f64::INFINITY, f64::NEG_INFINITY;
}

/// [`ArrayElement::null_min_max`] for numeric cells, as values: the cells
/// in blocks of at most [`LANE_BLOCK`], each scanned by [`scan_block`],
/// the blocks' results joined in order (a tie keeps the earlier block's
/// value, as a scan in order keeps the first).
pub(crate) fn scan_lanes<T: ArrayElement + LaneBounds>(
    values: &[T],
    fill: Option<T>,
) -> (u64, Option<T>, Option<T>) {
    let mut out = (0, None, None);
    for block in values.chunks(LANE_BLOCK) {
        let (nulls, lo, hi) = scan_block(block, fill);
        out.0 += nulls;
        if let Some(lo) = lo {
            if out.1.is_none_or(|m| lo < m) {
                out.1 = Some(lo);
            }
        }
        if let Some(hi) = hi {
            if out.2.is_none_or(|m| hi > m) {
                out.2 = Some(hi);
            }
        }
    }
    out
}

/// [`scan_lanes`] of at most [`LANE_BLOCK`] cells: the scan runs in
/// [`LANES`] independent lanes with no branch per cell (a null cell counts
/// as [`LaneBounds::HIGH`] for the minimum and [`LaneBounds::LOW`] for the
/// maximum, which change nothing), so the compiler vectorizes it; whether
/// any cell is not null comes from the count of nulls. The lanes' minimum
/// and maximum are the scan in order's values; where that is a float zero,
/// whose two signs compare equal, the first non-null zero in order is
/// returned, as a scan in order keeps it. For writes of large chunks,
/// about a third of a 32 KiB tile's encode time went to the cell-by-cell
/// scan; the lanes before these bounds (each started from its first
/// non-null cell, choosing per cell between it and the cell, with `u64`
/// counts) took 3.5 times as long on a 50-cell profile, and the same loop
/// inside the loop over blocks 1.7 times as long.
fn scan_block<T: ArrayElement + LaneBounds>(
    values: &[T],
    fill: Option<T>,
) -> (u64, Option<T>, Option<T>) {
    debug_assert!(values.len() <= LANE_BLOCK);
    // The fill value compared as a plain value, `has_fill` masking it, so
    // that the test per cell is arithmetic only.
    let (has_fill, fill_value) = (fill.is_some(), fill.unwrap_or_default());
    // `|` and `&`, not `||` and `&&`: no branch per cell.
    #[allow(clippy::needless_bitwise_bool)]
    let null = |v: T| v.is_nan() | (has_fill & (v == fill_value));
    let mut lo = [T::HIGH; LANES];
    let mut hi = [T::LOW; LANES];
    let mut counts = [0u32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for cells in &mut chunks {
        for lane in 0..LANES {
            let v = cells[lane];
            let is_null = null(v);
            counts[lane] += u32::from(is_null);
            let for_min = if is_null { T::HIGH } else { v };
            lo[lane] = if for_min < lo[lane] {
                for_min
            } else {
                lo[lane]
            };
            let for_max = if is_null { T::LOW } else { v };
            hi[lane] = if for_max > hi[lane] {
                for_max
            } else {
                hi[lane]
            };
        }
    }
    let mut nulls: u64 = counts.iter().map(|&n| u64::from(n)).sum();
    let (mut min, mut max) = (T::HIGH, T::LOW);
    for lane in 0..LANES {
        if lo[lane] < min {
            min = lo[lane];
        }
        if hi[lane] > max {
            max = hi[lane];
        }
    }
    for &v in chunks.remainder() {
        if null(v) {
            nulls += 1;
        } else {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
    }
    if nulls == values.len() as u64 {
        return (nulls, None, None);
    }
    let float = matches!(T::DTYPE, crate::DType::Float32 | crate::DType::Float64);
    let in_order = |m: T| {
        if float && m == T::default() {
            values
                .iter()
                .copied()
                .find(|&v| !null(v) && v == m)
                .unwrap_or(m)
        } else {
            m
        }
    };
    (nulls, Some(in_order(min)), Some(in_order(max)))
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

    /// Zeros of both signs compare equal: across the lane scan's blocks
    /// too, the minimum and maximum are the first zero in order, as a scan
    /// in order keeps it (the blocks are [`LANE_BLOCK`] cells in tests).
    #[test]
    fn zero_ties_across_blocks_keep_the_first_zero() {
        for (first, then) in [(0.0f32, -0.0f32), (-0.0, 0.0)] {
            for split in [
                1,
                LANE_BLOCK - 1,
                LANE_BLOCK,
                LANE_BLOCK + 3,
                3 * LANE_BLOCK,
            ] {
                let mut values = vec![f32::NAN; split];
                values[split - 1] = first;
                values.extend(std::iter::repeat_n(then, 2 * LANE_BLOCK + 5));
                let (nulls, min, max) = scan_lanes(&values, None);
                assert_eq!(nulls, split as u64 - 1);
                for m in [min, max] {
                    assert_eq!(m.map(f32::to_bits), Some(first.to_bits()), "split {split}");
                }
                // The scan in order agrees, sign included.
                let want = scan_in_order(&values, None);
                for m in [want.1, want.2] {
                    let Some(StatValue::Float(m)) = m else {
                        panic!("split {split}: {m:?}")
                    };
                    assert_eq!(m.to_bits(), f64::from(first).to_bits(), "split {split}");
                }
            }
        }
    }

    /// The lane scan of every numeric type gives what a scan in order
    /// gives (the trait's default), bit for bit: NaN, fill values, signed
    /// zeros, infinities, extremes, all-null chunks, leading runs of nulls,
    /// every length around the lane width.
    #[test]
    fn lane_scans_equal_the_scan_in_order() {
        fn bits(s: &(u64, Option<StatValue>, Option<StatValue>)) -> String {
            let b = |v: &Option<StatValue>| match v {
                Some(StatValue::Float(f)) => format!("f{:x}", f.to_bits()),
                other => format!("{other:?}"),
            };
            format!("{} {} {}", s.0, b(&s.1), b(&s.2))
        }
        fn check<T: ArrayElement + Copy>(pool: &[T], fills: &[Option<T>], seed: u64) {
            let mut x = seed;
            let mut next = |n: usize| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % n as u64) as usize
            };
            for len in (0..40).chain([63, 64, 65, 1000]) {
                for _ in 0..30 {
                    let values: Vec<T> = (0..len).map(|_| pool[next(pool.len())]).collect();
                    // And with a run of fill values first (all of it, at
                    // times), which the scan skips lanes at a time.
                    let n_fill = next(len + 1).max(next(len + 1));
                    for fill in fills {
                        let mut filled = values.clone();
                        if let Some(f) = fill {
                            filled[..n_fill].fill(*f);
                        }
                        for values in [&values, &filled] {
                            let want = scan_in_order(values, fill.as_ref());
                            let got = T::null_min_max(values, fill.as_ref());
                            assert_eq!(bits(&got), bits(&want), "{values:?} fill {fill:?}");
                        }
                    }
                }
            }
        }
        let f = [
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -9999.0,
            f32::MAX,
            f32::MIN,
        ];
        check(&f, &[None, Some(-9999.0), Some(0.0), Some(f32::NAN)], 1);
        let d = [
            0.0f64,
            -0.0,
            7.0,
            -1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-310,
        ];
        check(&d, &[None, Some(7.0), Some(-0.0)], 2);
        check(
            &[0i32, -1, 5, i32::MIN, i32::MAX, 42],
            &[None, Some(42), Some(0)],
            3,
        );
        check(&[0u8, 1, 255, 128], &[None, Some(255)], 4);
        check(&[0i16, -7, 300, i16::MIN], &[None, Some(-7)], 5);
        check(&[0u64, 1, u64::MAX, 1 << 40], &[None, Some(1)], 6);
        check(&[0i64, -1, i64::MIN, i64::MAX], &[None, Some(i64::MIN)], 7);
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
