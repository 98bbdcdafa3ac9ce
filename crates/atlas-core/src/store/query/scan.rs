//! Row tests over one run's decoded catalog column, and over single
//! statistics rows (datasets changed since the last commit).
//!
//! A column of `f64` minima and maxima met by a set whose bounds are exact
//! `f64`s is tested with float comparisons (the common case: CF times,
//! latitudes, temperatures); anything else builds a typed value per row.
//! When the rows to test are a small part of the column they are found by
//! galloping through its sorted ids; otherwise every row is tested and the
//! answers are masked afterwards.

use array_format::{ArrayStats, StatValue};

use crate::query::source::{Ids, RowHits, RowTest};
use crate::query::value::{F64Set, Num, Tri, Val};
use crate::query::Stat;
use crate::registry::{par_map, Float, StatColumn, Values};

/// Below this share of a column's rows (1 / N), rows are found by id.
const SPARSE_SHARE: u64 = 16;

/// From this share of a contiguous column's rows (1 / N) in scope, a float
/// test of one closed interval tests every row into bit masks (about a
/// nanosecond a row) rather than the scoped rows one by one (tens of
/// nanoseconds each, with the bitmap iteration and inserts).
const DENSE_SHARE_CLOSED: u64 = 32;

/// Rows of a column tested as one part of a dense test (a multiple of 64):
/// a column of many parts is tested on every core, not only on the core of
/// its run (a run holding two thirds of the datasets otherwise kept one core
/// busy while the other waited).
/// (Two groups of 64 in unit tests, so their columns span several parts.)
const DENSE_PART: usize = if cfg!(test) { 128 } else { 1 << 17 };

/// Answers collected in row order (ascending ids).
#[derive(Default)]
struct Collect {
    yes: Vec<u64>,
    maybe: Vec<u64>,
    null: Vec<u64>,
}

impl Collect {
    fn into_hits(self, hits: &mut RowHits, mask: Option<&Ids>) {
        for (from, to) in [
            (self.yes, &mut hits.yes),
            (self.maybe, &mut hits.maybe),
            (self.null, &mut hits.null),
        ] {
            if from.is_empty() {
                continue;
            }
            let mut set = Ids::from_sorted_iter(from).expect("rows ascend by id");
            if let Some(m) = mask {
                set &= m;
            }
            *to |= set;
        }
    }
}

/// A row's statistic as a value (`None`: undefined).
fn stat_value(
    stat: Stat,
    min: Option<&StatValue>,
    max: Option<&StatValue>,
    nulls: u64,
    cells: u64,
) -> Option<Val> {
    match stat {
        Stat::Min => min.map(Val::from_stat),
        Stat::Max => max.map(Val::from_stat),
        Stat::Nulls => Some(Val::Num(Num::I(nulls.into()))),
        Stat::Cells => Some(Val::Num(Num::I(cells.into()))),
        Stat::Valid => Some(Val::Num(Num::I(i128::from(cells) - i128::from(nulls)))),
    }
}

/// The generic test of one row.
fn test_row(
    id: u64,
    test: RowTest<'_>,
    min: Option<StatValue>,
    max: Option<StatValue>,
    nulls: u64,
    cells: u64,
    out: &mut Collect,
) {
    match test {
        RowTest::Stat(stat, set) => {
            match stat_value(stat, min.as_ref(), max.as_ref(), nulls, cells) {
                None => out.null.push(id),
                Some(v) => {
                    if set.is_some_and(|s| s.member(&v)) {
                        out.yes.push(id);
                    }
                }
            }
        }
        RowTest::Range(set) => match (min, max) {
            (Some(lo), Some(hi)) => match set.any_in(&Val::from_stat(&lo), &Val::from_stat(&hi)) {
                Tri::Yes => out.yes.push(id),
                Tri::Maybe => out.maybe.push(id),
                Tri::No => {}
            },
            _ => out.null.push(id),
        },
    }
}

/// One statistics row (a dataset changed since the last commit).
pub(super) fn row(id: u64, stats: &ArrayStats, test: RowTest<'_>, hits: &mut RowHits) {
    let mut out = Collect::default();
    hits.rows.insert(id);
    test_row(
        id,
        test,
        stats.min.clone(),
        stats.max.clone(),
        stats.null_count,
        stats.row_count,
        &mut out,
    );
    out.into_hits(hits, None);
}

/// The row indexes of `scope`'s ids in `ids` (both ascending), galloping.
fn rows_of(ids: &[u64], scope: &Ids) -> Vec<usize> {
    let mut out = Vec::with_capacity(scope.len() as usize);
    let mut at = 0;
    for id in scope {
        // Exponential then binary search from the last position.
        let mut step = 1;
        while at + step < ids.len() && ids[at + step] < id {
            step *= 2;
        }
        let end = (at + step + 1).min(ids.len());
        at += ids[at..end].partition_point(|x| *x < id);
        if at == ids.len() {
            break;
        }
        if ids[at] == id {
            out.push(at);
        }
    }
    out
}

/// Answer bits of consecutive rows, one bit per row (least significant
/// first), for a whole column at once.
struct Masks {
    yes: Vec<u8>,
    maybe: Vec<u8>,
    null: Vec<u8>,
}

impl Masks {
    /// The masks of every row of a float test whose set is one closed
    /// interval `[lo, hi]` (negated or not): the same answers as
    /// [`FloatRows::answer`], computed 64 rows at a time without branches
    /// (the compiler turns each group into vector compares).
    fn closed(rows: &FloatRows<'_>, lo: f64, hi: f64, negated: bool) -> Masks {
        let rows_n = rows.values.0.len();
        let len = rows_n.div_ceil(8);
        let mut masks = Masks {
            yes: Vec::with_capacity(len + 8),
            maybe: Vec::with_capacity(len + 8),
            null: Vec::with_capacity(len + 8),
        };
        // 64 rows at a time: every answer as a 0/1 byte (vectorized by the
        // compiler: see `stat_group`), then eight bytes at a time into mask
        // bits. The last group is padded with NaN rows, whose bits are cut
        // off at the end.
        let bounds = (lo, hi, negated);
        match rows.values {
            (FloatSlice::F64(v), None) => masks.stat_groups(v, bounds),
            (FloatSlice::F32(v), None) => masks.stat_groups(v, bounds),
            (FloatSlice::F64(a), Some(FloatSlice::F64(b))) => masks.range_groups(a, b, bounds),
            (FloatSlice::F32(a), Some(FloatSlice::F32(b))) => masks.range_groups(a, b, bounds),
            (FloatSlice::F64(a), Some(FloatSlice::F32(b))) => masks.range_groups(a, b, bounds),
            (FloatSlice::F32(a), Some(FloatSlice::F64(b))) => masks.range_groups(a, b, bounds),
        }
        for mask in [&mut masks.yes, &mut masks.maybe, &mut masks.null] {
            mask.truncate(len);
            if !rows_n.is_multiple_of(8) {
                mask[len - 1] &= (1u8 << (rows_n % 8)) - 1;
            }
        }
        masks
    }

    /// Statistic tests of every value, 64 at a time (the last group padded
    /// with NaN rows, whose bits are cut off afterwards).
    fn stat_groups<T: Float>(&mut self, values: &[T], bounds: (f64, f64, bool)) {
        let (mut yes, maybe, mut null) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        let mut groups = values.chunks_exact(64);
        for group in groups.by_ref() {
            let group = group.try_into().expect("64 rows");
            stat_group(group, bounds, &mut yes, &mut null);
            self.push(&yes, &maybe, &null);
        }
        let mut last = [T::NAN; 64];
        last[..groups.remainder().len()].copy_from_slice(groups.remainder());
        stat_group(&last, bounds, &mut yes, &mut null);
        self.push(&yes, &maybe, &null);
    }

    /// Range tests of every (minimum, maximum) pair, 64 at a time.
    fn range_groups<A: Float, B: Float>(&mut self, a: &[A], b: &[B], bounds: (f64, f64, bool)) {
        let (mut yes, mut maybe, mut null) = ([0u8; 64], [0u8; 64], [0u8; 64]);
        let (mut ga, mut gb) = (a.chunks_exact(64), b.chunks_exact(64));
        for (mins, maxs) in ga.by_ref().zip(gb.by_ref()) {
            let mins = mins.try_into().expect("64 rows");
            let maxs = maxs.try_into().expect("64 rows");
            range_group(mins, maxs, bounds, [&mut yes, &mut maybe, &mut null]);
            self.push(&yes, &maybe, &null);
        }
        let (mut mins, mut maxs) = ([A::NAN; 64], [B::NAN; 64]);
        mins[..ga.remainder().len()].copy_from_slice(ga.remainder());
        maxs[..gb.remainder().len()].copy_from_slice(gb.remainder());
        range_group(&mins, &maxs, bounds, [&mut yes, &mut maybe, &mut null]);
        self.push(&yes, &maybe, &null);
    }

    /// Appends 64 answers given as 0/1 bytes to each mask.
    fn push(&mut self, yes: &[u8; 64], maybe: &[u8; 64], null: &[u8; 64]) {
        for (mask, bytes) in [
            (&mut self.yes, yes),
            (&mut self.maybe, maybe),
            (&mut self.null, null),
        ] {
            mask.extend(bytes.chunks_exact(8).map(|c| {
                let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
                // Each byte lands in its own bit of the top byte: no two
                // partial products share a bit, so nothing carries.
                (word.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
            }));
        }
    }

    /// The masks of rows `0..n`, row `i` answered by `answer(i)` (`YES`,
    /// `MAYBE`, `NULL` or `NO`). Eight rows make a byte of each mask,
    /// written once.
    fn build(n: usize, answer: impl Fn(usize) -> u8) -> Masks {
        let len = n.div_ceil(8);
        let mut masks = Masks {
            yes: Vec::with_capacity(len),
            maybe: Vec::with_capacity(len),
            null: Vec::with_capacity(len),
        };
        for byte in 0..len {
            let (mut yes, mut maybe, mut null) = (0u8, 0u8, 0u8);
            for bit in 0..(n - byte * 8).min(8) {
                let a = answer(byte * 8 + bit);
                yes |= u8::from(a == YES) << bit;
                maybe |= u8::from(a == MAYBE) << bit;
                null |= u8::from(a == NULL) << bit;
            }
            masks.yes.push(yes);
            masks.maybe.push(maybe);
            masks.null.push(null);
        }
        masks
    }
}

/// The answers of 64 values to a statistic test of the closed interval
/// `[lo, hi]` (negated or not) as 0/1 bytes: yes in `yes`, undefined (NaN)
/// in `null`. A plain function over fixed-size arrays with the bounds passed
/// by value, so that the compiler emits packed compares (a closure over the
/// same loop was left scalar, 3–4× slower).
#[inline]
#[expect(
    clippy::needless_bitwise_bool,
    reason = "branch-free on purpose: the loop vectorizes"
)]
fn stat_group<T: Float>(
    x: &[T; 64],
    (lo, hi, negated): (f64, f64, bool),
    yes: &mut [u8; 64],
    null: &mut [u8; 64],
) {
    for j in 0..64 {
        let v = x[j].wide();
        let nan = v.is_nan();
        // NaN is inside no interval: its answer is null alone.
        yes[j] = u8::from((((lo <= v) & (v <= hi)) != negated) & !nan);
        null[j] = u8::from(nan);
    }
}

/// As [`stat_group`] for a range test of 64 (minimum, maximum) pairs: yes,
/// maybe and null bytes.
#[inline]
#[expect(
    clippy::needless_bitwise_bool,
    reason = "branch-free on purpose: the loop vectorizes"
)]
fn range_group<A: Float, B: Float>(
    a: &[A; 64],
    b: &[B; 64],
    (lo, hi, negated): (f64, f64, bool),
    [yes, maybe, null]: [&mut [u8; 64]; 3],
) {
    let nonempty = lo <= hi;
    for j in 0..64 {
        let (p, q) = (a[j].wide(), b[j].wide());
        let nan = p.is_nan() | q.is_nan();
        let (ip, iq) = ((lo <= p) & (p <= hi), (lo <= q) & (q <= hi));
        // An end in the set: yes. Negated, both ends inside the interval:
        // no, else yes; not negated, an overlap with neither end inside:
        // maybe.
        let is_yes = if negated { !(ip & iq) } else { ip | iq };
        let overlap = nonempty & (q >= lo) & (p <= hi);
        yes[j] = u8::from(is_yes & !nan);
        maybe[j] = u8::from(!negated & !is_yes & overlap & !nan);
        null[j] = u8::from(nan);
    }
}

/// Answers of a row to a test: no, yes, maybe (a range test the minimum
/// and maximum cannot decide), null (the statistic is undefined).
const NO: u8 = 0;
const YES: u8 = 1;
const MAYBE: u8 = 2;
const NULL: u8 = 3;

/// A column of float statistics in its stored width.
#[derive(Clone, Copy)]
enum FloatSlice<'a> {
    F64(&'a [f64]),
    F32(&'a [f32]),
}

impl<'a> FloatSlice<'a> {
    fn of(v: &'a Values) -> Option<FloatSlice<'a>> {
        match v {
            Values::F64(v) => Some(FloatSlice::F64(v)),
            Values::F32(v) => Some(FloatSlice::F32(v)),
            Values::Any(_) => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            FloatSlice::F64(v) => v.len(),
            FloatSlice::F32(v) => v.len(),
        }
    }

    #[inline]
    fn get(&self, i: usize) -> f64 {
        match self {
            FloatSlice::F64(v) => v[i],
            FloatSlice::F32(v) => f64::from(v[i]),
        }
    }

    fn slice(&self, rows: std::ops::Range<usize>) -> FloatSlice<'a> {
        match *self {
            FloatSlice::F64(v) => FloatSlice::F64(&v[rows]),
            FloatSlice::F32(v) => FloatSlice::F32(&v[rows]),
        }
    }
}

/// A float test on a column of float statistics: each row answered with two
/// comparisons per bound, no value built (the common case: CF times,
/// latitudes, temperatures).
struct FloatRows<'a> {
    set: F64Set,
    /// A statistic's column, or the minimum and maximum columns of a range.
    values: (FloatSlice<'a>, Option<FloatSlice<'a>>),
}

impl<'a> FloatRows<'a> {
    /// `None` when the test or the column is not all `f64`.
    fn new(col: &'a StatColumn, test: RowTest<'_>) -> Option<FloatRows<'a>> {
        let set = match test {
            RowTest::Stat(_, set) => set,
            RowTest::Range(set) => Some(set),
        };
        let set = set.and_then(F64Set::new)?;
        let values = match test {
            RowTest::Stat(Stat::Min, _) => (FloatSlice::of(&col.min)?, None),
            RowTest::Stat(Stat::Max, _) => (FloatSlice::of(col.max())?, None),
            // Every row's minimum is its maximum: whether a value in
            // [x, x] is in the set is whether x is (yes or no, never
            // maybe), a statistic test of the one column.
            RowTest::Range(_) if col.max.is_none() => (FloatSlice::of(&col.min)?, None),
            RowTest::Range(_) => (FloatSlice::of(&col.min)?, Some(FloatSlice::of(col.max())?)),
            RowTest::Stat(..) => return None,
        };
        Some(FloatRows { set, values })
    }

    /// The same test of rows `rows` alone (row `i` of the part is row
    /// `rows.start + i` of the column).
    fn part(&self, rows: std::ops::Range<usize>) -> FloatRows<'a> {
        FloatRows {
            set: self.set.clone(),
            values: (
                self.values.0.slice(rows.clone()),
                self.values.1.map(|v| v.slice(rows)),
            ),
        }
    }

    /// Row `i`'s answer.
    #[inline]
    fn answer(&self, i: usize) -> u8 {
        match self.values {
            (v, None) => {
                let x = v.get(i);
                if x.is_nan() {
                    NULL
                } else {
                    u8::from(self.set.member(x))
                }
            }
            (lo, Some(hi)) => {
                let (a, b) = (lo.get(i), hi.get(i));
                if a.is_nan() || b.is_nan() {
                    return NULL;
                }
                match self.set.any_in(a, b) {
                    Tri::Yes => YES,
                    Tri::Maybe => MAYBE,
                    Tri::No => NO,
                }
            }
        }
    }
}

/// A float test of a column whose ids are one contiguous range inside one
/// 2³² block (the common case: a flush or merge of consecutive datasets):
/// every row is tested into bit masks, which become bitmaps in bulk and are
/// then cut to `scope`, instead of collecting each answer's id one at a
/// time. Used when most of the column is in scope (a row test costs several
/// nanoseconds, so a sparse scope is cheaper tested row by row). `false`
/// (nothing done) when the ids do not fit one block.
fn dense(
    col: &StatColumn,
    scope: &Ids,
    all: bool,
    rows: &FloatRows<'_>,
    hits: &mut RowHits,
) -> bool {
    let n = col.ids.len();
    let (first, last) = (col.ids.get(0), col.ids.get(n - 1));
    // One 2³² block, with room for the masks' padding bits (bulk loading
    // refuses bits past the block).
    let padded_end = (first & 0xffff_ffff) + (n.div_ceil(8) as u64 + 1) * 8;
    if first >> 32 != last >> 32 || padded_end > 1 << 32 {
        return false;
    }
    let high = (first >> 32) as u32;
    let low = first as u32;
    let parts: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(DENSE_PART)
        .map(|a| a..(a + DENSE_PART).min(n))
        .collect();
    // Each part's yes, maybe and null rows as bitmaps (parts are disjoint
    // id ranges: their union only moves containers).
    let answers = par_map(&parts, |range| {
        let part = rows.part(range.clone());
        let masks = match part.set.closed() {
            Some((lo, hi, negated)) => Masks::closed(&part, lo, hi, negated),
            None => Masks::build(range.len(), |i| part.answer(i)),
        };
        let offset = low + range.start as u32;
        [masks.yes, masks.maybe, masks.null].map(|bytes| {
            (!bytes.iter().all(|b| *b == 0))
                .then(|| roaring::RoaringBitmap::from_lsb0_bytes(offset, &bytes))
        })
    });
    for (k, to) in [&mut hits.yes, &mut hits.maybe, &mut hits.null]
        .into_iter()
        .enumerate()
    {
        let mut bits = roaring::RoaringBitmap::new();
        for part in &answers {
            if let Some(b) = &part[k] {
                bits |= b;
            }
        }
        if bits.is_empty() {
            continue;
        }
        let mut ids = Ids::from_bitmaps([(high, bits)]);
        if !all {
            ids &= scope;
        }
        *to |= ids;
    }
    hits.rows |= scope;
    true
}

/// Calls `f` with each row of `rows`, or every row of `n`. Generic, not
/// `dyn`: the row test inlines into each loop.
fn each(rows: Option<&[usize]>, n: usize, mut f: impl FnMut(usize)) {
    match rows {
        Some(rows) => rows.iter().for_each(|i| f(*i)),
        None => (0..n).for_each(f),
    }
}

/// Tests the rows of `col` whose ids are in `scope`.
pub(super) fn column(col: &StatColumn, scope: &Ids, test: RowTest<'_>, hits: &mut RowHits) {
    if col.ids.is_empty() || scope.is_empty() {
        return;
    }
    let in_scope = &col.present & scope;
    if in_scope.is_empty() {
        return;
    }
    let n = col.ids.len();
    let all = in_scope.len() == n as u64;
    // A run's ids are usually one contiguous range (a flush or merge of
    // consecutive datasets): then a row is its id's offset, found in O(1).
    let contiguous = col.ids.consecutive().is_some();
    let float = FloatRows::new(col, test);
    // Enough of the column in scope: test every row into bit masks (below a
    // 1/DENSE_SHARE share, finding the scoped rows one by one is cheaper).
    if let Some(rows) = &float {
        let share = if rows.set.closed().is_some() {
            DENSE_SHARE_CLOSED
        } else {
            2
        };
        if contiguous
            && in_scope.len() * share >= n as u64
            && dense(col, &in_scope, all, rows, hits)
        {
            return;
        }
    }
    let sparse = !all && (contiguous || in_scope.len() * SPARSE_SHARE < n as u64);
    let rows: Option<Vec<usize>> = sparse.then(|| {
        if contiguous {
            let first = col.ids.get(0);
            in_scope.iter().map(|id| (id - first) as usize).collect()
        } else {
            rows_of(&col.ids.as_list(), &in_scope)
        }
    });
    let mask = (!sparse && !all).then_some(&in_scope);
    let mut out = Collect::default();
    let rows = rows.as_deref();
    match &float {
        Some(f) => each(rows, n, |i| {
            let to = match f.answer(i) {
                YES => &mut out.yes,
                MAYBE => &mut out.maybe,
                NULL => &mut out.null,
                _ => return,
            };
            to.push(col.ids.get(i));
        }),
        None => each(rows, n, |i| {
            test_row(
                col.ids.get(i),
                test,
                col.min.get(i),
                col.max().get(i),
                col.nulls.get(i),
                col.cells.get(i),
                &mut out,
            );
        }),
    }
    hits.rows |= &in_scope;
    out.into_hits(hits, mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::value::{Interval, ValueSet};
    use crate::registry::Ints;

    /// The bit-mask path answers as row-by-row tests do, for statistics and
    /// ranges, with undefined rows, any scope, and ids not starting at a
    /// byte boundary.
    #[test]
    fn dense_masks_answer_as_single_rows() {
        let n = 1_000_usize;
        let first = (3_u64 << 32) + 5;
        let ids: Vec<u64> = (first..first + n as u64).collect();
        let val = |i: usize| match i % 211 {
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => 7.25,
            _ => ((i * 37) % 101) as f64 * 0.25 - 12.5,
        };
        let lo: Vec<f64> = (0..n)
            .map(|i| if i % 13 == 0 { f64::NAN } else { val(i) })
            .collect();
        let hi: Vec<f64> = lo
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 7) as f64)
            .collect();
        // Both forms of integer columns: listed and affine.
        let col = StatColumn {
            ids: Ints::List(ids.clone()),
            present: ids.iter().copied().collect(),
            min: Values::F64(lo.clone()),
            max: Some(Values::F64(hi.clone())),
            nulls: Ints::List(vec![0; n]),
            cells: Ints::Affine {
                base: 10,
                step: 0,
                len: n,
            },
        };
        let num = |v: f64| Some((Val::Num(Num::F(v)), true));
        let sets = [
            ValueSet {
                intervals: vec![Interval {
                    lo: num(-10.0),
                    hi: num(10.0),
                }],
                negated: false,
            },
            ValueSet {
                intervals: vec![Interval {
                    lo: num(0.0),
                    hi: None,
                }],
                negated: true,
            },
            // Open bounds (moved inward to closed ones).
            ValueSet {
                intervals: vec![Interval {
                    lo: Some((Val::Num(Num::F(-5.0)), false)),
                    hi: Some((Val::Num(Num::F(0.0)), false)),
                }],
                negated: false,
            },
            // Bounds no f32 holds, against f32 columns too.
            ValueSet {
                intervals: vec![Interval {
                    lo: num(-9.1),
                    hi: num(7.3),
                }],
                negated: false,
            },
            // Two intervals: the general mask path.
            ValueSet {
                intervals: vec![
                    Interval {
                        lo: None,
                        hi: num(-30.0),
                    },
                    Interval {
                        lo: num(20.0),
                        hi: num(25.0),
                    },
                ],
                negated: false,
            },
        ];
        let scopes: Vec<Ids> = vec![
            ids.iter().copied().collect(),
            ids.iter().copied().step_by(3).collect(),
            ids.iter().copied().skip(500).take(10).collect(),
        ];
        // A column whose every maximum is its minimum, held once.
        let point = StatColumn {
            ids: Ints::Affine {
                base: first,
                step: 1,
                len: n,
            },
            present: ids.iter().copied().collect(),
            min: Values::F64(lo.clone()),
            max: None,
            nulls: Ints::Affine {
                base: 0,
                step: 0,
                len: n,
            },
            cells: Ints::List(vec![10; n]),
        };
        // The same columns with statistics stored as `f32` (every value
        // above is one), and with one side of each width.
        let narrow = |v: &[f64]| Values::F32(v.iter().map(|x| *x as f32).collect());
        let with = |like: &StatColumn, min: Values, max: Option<Values>| StatColumn {
            min,
            max,
            ids: like.ids.clone(),
            present: like.present.clone(),
            nulls: like.nulls.clone(),
            cells: like.cells.clone(),
        };
        let col32 = with(&col, narrow(&lo), Some(narrow(&hi)));
        let mixed = with(&col, narrow(&lo), Some(Values::F64(hi.clone())));
        let point32 = with(&point, narrow(&lo), None);
        for (col, hi) in [
            (&col, &hi),
            (&point, &lo),
            (&col32, &hi),
            (&mixed, &hi),
            (&point32, &lo),
        ] {
            for set in &sets {
                for scope in &scopes {
                    for test in [
                        RowTest::Stat(Stat::Max, Some(set)),
                        RowTest::Stat(Stat::Min, Some(set)),
                        RowTest::Range(set),
                    ] {
                        let mut dense = RowHits::default();
                        let all = scope.len() == n as u64;
                        let rows = FloatRows::new(col, test).expect("f64 column and set");
                        assert!(super::dense(col, scope, all, &rows, &mut dense));
                        let mut single = RowHits::default();
                        for id in scope {
                            let i = (id - first) as usize;
                            let stats = ArrayStats {
                                min: (!lo[i].is_nan()).then(|| StatValue::Float(lo[i])),
                                max: (!hi[i].is_nan()).then(|| StatValue::Float(hi[i])),
                                null_count: 0,
                                row_count: 10,
                            };
                            row(id, &stats, test, &mut single);
                        }
                        assert_eq!(dense.rows, single.rows);
                        assert_eq!(dense.yes, single.yes);
                        assert_eq!(dense.maybe, single.maybe);
                        assert_eq!(dense.null, single.null);
                    }
                }
            }
        }
    }

    #[test]
    fn galloping_finds_exactly_the_scoped_rows() {
        let ids: Vec<u64> = (0..1000u64).map(|i| i * 3).collect();
        for scope in [
            vec![0u64, 3, 4, 2997, 5000],
            vec![1, 2, 5],
            (0..3000).step_by(7).collect(),
            vec![],
        ] {
            let s: Ids = scope.iter().copied().collect();
            let got: Vec<u64> = rows_of(&ids, &s).into_iter().map(|i| ids[i]).collect();
            let want: Vec<u64> = scope
                .iter()
                .copied()
                .filter(|x| x % 3 == 0 && *x < 3000)
                .collect();
            assert_eq!(got, want);
        }
    }
}
