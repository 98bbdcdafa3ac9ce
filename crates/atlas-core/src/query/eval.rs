//! Three-valued evaluation: every term first over dataset-level statistics
//! (no / yes / maybe per dataset); then, only for datasets the whole
//! expression still leaves undecided, value terms over per-chunk statistics;
//! then only the chunks those leave undecided are decoded.
//!
//! **Invariant:** a "yes" is proven and a "no" is proven; only "maybe" reads
//! more. So pruning never drops a true match and never admits a false one.

use std::cmp::Ordering;
use std::collections::HashMap;

use roaring::RoaringBitmap;

use super::ast::{Quantifier, Stat, Test};
use super::bind::{cf_units, element, has_time_literal, value_set, Bound, Node, Term};
use super::error::{close_matches, Error as QueryError};
use super::result::TermExplain;
use super::source::{ChunkSource, StatsSource};
use super::value::{attr_class, attr_list, attr_scalar, Class, Num, Tri, Val, ValueSet};
use crate::attr::Attr;
use crate::error::{Error, Result};

/// One term's answer over all datasets: `yes` and `maybe` (the rest is no).
#[derive(Clone, Default)]
struct Answer {
    yes: RoaringBitmap,
    maybe: RoaringBitmap,
}

/// For a value term's undecided datasets: the set of cell values to look for,
/// and whether finding one makes the term true (`any`) or false (`all`).
struct Pending {
    array: String,
    look_for: HashMap<u32, ValueSet>,
    found_means: bool,
}

pub(crate) struct Outcome {
    pub matches: RoaringBitmap,
    pub terms: Vec<TermExplain>,
}

pub(crate) fn evaluate(
    bound: &Bound,
    stats: &dyn StatsSource,
    chunks: &dyn ChunkSource,
) -> Result<Outcome> {
    let mut universe = RoaringBitmap::new();
    universe.insert_range(0..stats.n_datasets());
    let mut answers = Vec::with_capacity(bound.terms.len());
    let mut pendings = Vec::with_capacity(bound.terms.len());
    let mut reports = Vec::with_capacity(bound.terms.len());
    for (term, text) in bound.terms.iter().zip(&bound.texts) {
        let mut report = TermExplain {
            term: text.clone(),
            ..TermExplain::default()
        };
        let (answer, pending) = dataset_level(term, text, stats, &universe, &mut report)?;
        report.yes = answer.yes.len();
        report.maybe = answer.maybe.len();
        report.exact = answer.maybe.is_empty();
        answers.push(answer);
        pendings.push(pending);
        reports.push(report);
    }
    // Resolve undecided datasets one term at a time, only where the whole
    // expression is still undecided.
    loop {
        let root = combine(&bound.root, &answers, &universe);
        if root.maybe.is_empty() {
            for (r, a) in reports.iter_mut().zip(&answers) {
                r.matched = a.yes.len();
            }
            return Ok(Outcome {
                matches: root.yes,
                terms: reports,
            });
        }
        let Some(i) = answers
            .iter()
            .position(|a| !a.maybe.is_disjoint(&root.maybe))
        else {
            unreachable!("an undecided expression has an undecided term");
        };
        let candidates = &answers[i].maybe & &root.maybe;
        let pending = pendings[i]
            .as_ref()
            .expect("only value terms are undecided");
        let mut yes = RoaringBitmap::new();
        for pos in &candidates {
            let set = &pending.look_for[&pos];
            let found = find_cell(chunks, &pending.array, pos, set, &mut reports[i])?;
            if found == pending.found_means {
                yes.insert(pos);
            }
        }
        answers[i].yes |= yes;
        answers[i].maybe -= &candidates;
    }
}

fn combine(node: &Node, answers: &[Answer], universe: &RoaringBitmap) -> Answer {
    match node {
        Node::Leaf(i) => answers[*i].clone(),
        Node::And(parts) => {
            let mut yes = universe.clone();
            let mut possible = universe.clone();
            for p in parts {
                let a = combine(p, answers, universe);
                possible &= &a.yes | &a.maybe;
                yes &= a.yes;
            }
            Answer {
                maybe: possible - &yes,
                yes,
            }
        }
        Node::Or(parts) => {
            let mut yes = RoaringBitmap::new();
            let mut maybe = RoaringBitmap::new();
            for p in parts {
                let a = combine(p, answers, universe);
                yes |= a.yes;
                maybe |= a.maybe;
            }
            Answer {
                maybe: maybe - &yes,
                yes,
            }
        }
        Node::Not(inner) => {
            let a = combine(inner, answers, universe);
            Answer {
                yes: universe - &a.yes - &a.maybe,
                maybe: a.maybe,
            }
        }
    }
}

fn mismatch(text: &str, message: &str, dataset: &str) -> Error {
    Error::Query(QueryError::TypeMismatch {
        term: text.to_owned(),
        message: format!("{message} (dataset {dataset:?})"),
    })
}

/// `is null` over a column present at `present`; true where the value is
/// absent (not present, or present but null as `null_at` says).
fn is_null(
    negated: bool,
    present: &RoaringBitmap,
    null_at: &RoaringBitmap,
    u: &RoaringBitmap,
) -> Answer {
    let null = (u - present) | null_at;
    Answer {
        yes: if negated { u - &null } else { null },
        maybe: RoaringBitmap::new(),
    }
}

fn dataset_level(
    term: &Term,
    text: &str,
    src: &dyn StatsSource,
    universe: &RoaringBitmap,
    report: &mut TermExplain,
) -> Result<(Answer, Option<Pending>)> {
    let mut answer = Answer::default();
    match term {
        Term::Has(a) => {
            answer.yes = src.array_positions(a);
            report.rows = answer.yes.len();
        }
        Term::Stat { array, stat, test } => {
            let rows = src.array_rows(array)?;
            report.rows = rows.len() as u64;
            let mut present = RoaringBitmap::new();
            let mut null_at = RoaringBitmap::new();
            for row in &rows {
                present.insert(row.pos);
                let (value, class) = match stat {
                    Stat::Min | Stat::Max => {
                        let v = if *stat == Stat::Min {
                            &row.stats.min
                        } else {
                            &row.stats.max
                        };
                        (v.as_ref().map(Val::from_stat), Class::of_dtype(row.dtype))
                    }
                    Stat::Nulls => (
                        Some(Val::Num(Num::I(row.stats.null_count.into()))),
                        Class::Num,
                    ),
                    Stat::Cells => (
                        Some(Val::Num(Num::I(row.stats.row_count.into()))),
                        Class::Num,
                    ),
                    Stat::Valid => (
                        Some(Val::Num(Num::I(
                            i128::from(row.stats.row_count) - i128::from(row.stats.null_count),
                        ))),
                        Class::Num,
                    ),
                };
                if value.is_none() {
                    null_at.insert(row.pos);
                }
                if let Test::IsNull { .. } = test {
                    continue;
                }
                if let Test::Contains { .. } = test {
                    return Err(mismatch(
                        text,
                        "`contains` needs a list attribute, not a statistic",
                        src.name(row.pos),
                    ));
                }
                let units = if class == Class::Num
                    && matches!(stat, Stat::Min | Stat::Max)
                    && has_time_literal(test)
                {
                    cf_units(&row.attrs).map_err(|m| mismatch(text, &m, src.name(row.pos)))?
                } else {
                    None
                };
                let set = value_set(test, class, units)
                    .map_err(|m| mismatch(text, &m, src.name(row.pos)))?;
                if value.is_some_and(|v| set.member(&v)) {
                    answer.yes.insert(row.pos);
                }
            }
            if let Test::IsNull { negated } = test {
                answer = is_null(*negated, &present, &null_at, universe);
            }
        }
        Term::DatasetAttr { key, test } => {
            let rows = src.attribute_rows(key);
            report.rows = rows.len() as u64;
            answer = attribute_answer(
                text,
                test,
                rows.iter().map(|(p, a)| (*p, Some(a))),
                src,
                universe,
            )?;
        }
        Term::ArrayAttr { array, key, test } => {
            let rows = src.array_rows(array)?;
            report.rows = rows.len() as u64;
            if !rows.iter().any(|r| r.attrs.contains_key(key)) {
                let mut keys: Vec<&str> = rows
                    .iter()
                    .flat_map(|r| r.attrs.keys().map(String::as_str))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                return Err(Error::Query(QueryError::UnknownName {
                    kind: format!("attribute of {array}"),
                    name: key.clone(),
                    suggestions: close_matches(key, keys),
                }));
            }
            answer = attribute_answer(
                text,
                test,
                rows.iter().map(|r| (r.pos, r.attrs.get(key))),
                src,
                universe,
            )?;
        }
        Term::Cells {
            array,
            quantifier,
            test,
        } => {
            let rows = src.array_rows(array)?;
            report.rows = rows.len() as u64;
            let mut pending = Pending {
                array: array.clone(),
                look_for: HashMap::new(),
                found_means: *quantifier == Quantifier::Any,
            };
            let time = has_time_literal(test);
            for row in &rows {
                let class = Class::of_dtype(row.dtype);
                let units = if time && class == Class::Num {
                    cf_units(&row.attrs).map_err(|m| mismatch(text, &m, src.name(row.pos)))?
                } else {
                    None
                };
                let set = value_set(test, class, units)
                    .map_err(|m| mismatch(text, &m, src.name(row.pos)))?;
                let (Some(min), Some(max)) = (&row.stats.min, &row.stats.max) else {
                    // No non-null cell: `any` is false, `all` vacuously true.
                    if *quantifier == Quantifier::All {
                        answer.yes.insert(row.pos);
                    }
                    continue;
                };
                let (min, max) = (Val::from_stat(min), Val::from_stat(max));
                let look_for = match quantifier {
                    Quantifier::Any => set,
                    Quantifier::All => set.complement(),
                };
                match (look_for.any_in(&min, &max), quantifier) {
                    (Tri::Yes, Quantifier::Any) | (Tri::No, Quantifier::All) => {
                        answer.yes.insert(row.pos);
                    }
                    (Tri::No, Quantifier::Any) | (Tri::Yes, Quantifier::All) => {}
                    (Tri::Maybe, _) => {
                        answer.maybe.insert(row.pos);
                        pending.look_for.insert(row.pos, look_for);
                    }
                }
            }
            return Ok((answer, Some(pending)));
        }
    }
    Ok((answer, None))
}

fn attribute_answer<'a>(
    term_text: &str,
    test: &Test,
    rows: impl Iterator<Item = (u32, Option<&'a Attr>)>,
    src: &dyn StatsSource,
    universe: &RoaringBitmap,
) -> Result<Answer> {
    let mut present = RoaringBitmap::new();
    let mut yes = RoaringBitmap::new();
    for (pos, attr) in rows {
        let Some(attr) = attr else { continue };
        present.insert(pos);
        let (class, is_list) = attr_class(attr);
        let name = || src.name(pos);
        let hit = match test {
            Test::IsNull { .. } => continue,
            Test::Contains { value, negated } => {
                let Some(list) = attr_list(attr) else {
                    return Err(mismatch(
                        term_text,
                        "`contains` needs a list attribute; this one is a scalar",
                        name(),
                    ));
                };
                let v = element(value, class).map_err(|m| mismatch(term_text, &m, name()))?;
                list.iter().any(|x| x.cmp_val(&v) == Some(Ordering::Equal)) != *negated
            }
            _ if is_list => {
                return Err(mismatch(
                    term_text,
                    "a list attribute takes `contains` or `is null`",
                    name(),
                ));
            }
            _ => {
                let set =
                    value_set(test, class, None).map_err(|m| mismatch(term_text, &m, name()))?;
                attr_scalar(attr).is_some_and(|v| set.member(&v))
            }
        };
        if hit {
            yes.insert(pos);
        }
    }
    if let Test::IsNull { negated } = test {
        return Ok(is_null(*negated, &present, &RoaringBitmap::new(), universe));
    }
    Ok(Answer {
        yes,
        maybe: RoaringBitmap::new(),
    })
}

/// Does a non-null cell of one dataset's array belong to `set`? Chunk
/// statistics first; only the chunks they leave undecided are decoded.
fn find_cell(
    chunks: &dyn ChunkSource,
    array: &str,
    pos: u32,
    set: &ValueSet,
    report: &mut TermExplain,
) -> Result<bool> {
    let summaries = chunks.chunks(array, pos)?;
    report.chunk_rows += summaries.len() as u64;
    let mut undecided = Vec::new();
    for c in &summaries {
        let (Some(min), Some(max)) = (&c.stats.min, &c.stats.max) else {
            continue; // every cell null
        };
        match set.any_in(&Val::from_stat(min), &Val::from_stat(max)) {
            Tri::Yes => return Ok(true),
            Tri::No => {}
            Tri::Maybe => undecided.push(c),
        }
    }
    for c in undecided {
        report.chunks_decoded += 1;
        report.bytes_read += c.stored_bytes;
        if chunks.chunk_has(array, pos, c.chunk_idx, set)? {
            return Ok(true);
        }
    }
    Ok(false)
}
