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
use crate::registry::{StatColumn, Values};

/// Below this share of a column's rows (1 / N), rows are found by id.
const SPARSE_SHARE: u64 = 16;

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
    let contiguous = col.ids[n - 1] - col.ids[0] == n as u64 - 1;
    let sparse = !all && (contiguous || in_scope.len() * SPARSE_SHARE < n as u64);
    let rows: Option<Vec<usize>> = sparse.then(|| {
        if contiguous {
            let first = col.ids[0];
            in_scope.iter().map(|id| (id - first) as usize).collect()
        } else {
            rows_of(&col.ids, &in_scope)
        }
    });
    let mask = (!sparse && !all).then_some(&in_scope);
    let mut out = Collect::default();
    let rows = rows.as_deref();
    let set = match test {
        RowTest::Stat(_, set) => set,
        RowTest::Range(set) => Some(set),
    };
    let fast = set.and_then(F64Set::new);
    match (test, &col.min, &col.max, &fast) {
        (RowTest::Stat(Stat::Min, _), Values::F64(v), _, Some(f))
        | (RowTest::Stat(Stat::Max, _), _, Values::F64(v), Some(f)) => each(rows, n, |i| {
            let x = v[i];
            if x.is_nan() {
                out.null.push(col.ids[i]);
            } else if f.member(x) {
                out.yes.push(col.ids[i]);
            }
        }),
        (RowTest::Range(_), Values::F64(lo), Values::F64(hi), Some(f)) => each(rows, n, |i| {
            let (a, b) = (lo[i], hi[i]);
            if a.is_nan() || b.is_nan() {
                out.null.push(col.ids[i]);
                return;
            }
            match f.any_in(a, b) {
                Tri::Yes => out.yes.push(col.ids[i]),
                Tri::Maybe => out.maybe.push(col.ids[i]),
                Tri::No => {}
            }
        }),
        _ => each(rows, n, |i| {
            test_row(
                col.ids[i],
                test,
                col.min.get(i),
                col.max.get(i),
                col.nulls[i],
                col.cells[i],
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
