//! Three-valued evaluation: every term first over dataset-level statistics
//! (no / yes / maybe per dataset); then, only for datasets the whole
//! expression still leaves undecided, value terms over per-chunk statistics;
//! then only the chunks those leave undecided are decoded.
//!
//! **Invariant:** a "yes" is proven and a "no" is proven; only "maybe" reads
//! more. So pruning never drops a true match and never admits a false one.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::ast::{Quantifier, Stat, Test};
use super::bind::{cf_units, element, has_time_literal, value_set, Bound, Node, Term};
use super::error::{close_matches, Error as QueryError};
use super::result::TermExplain;
use super::source::{ArrayEntry, ChunkSource, StatsSource};
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
    let mut pass = FirstPass {
        bound,
        src: stats,
        universe: &universe,
        answers: vec![Answer::default(); bound.terms.len()],
        pendings: (0..bound.terms.len()).map(|_| None).collect(),
        reports: bound
            .texts
            .iter()
            .map(|t| TermExplain {
                term: t.clone(),
                ..TermExplain::default()
            })
            .collect(),
    };
    pass.node(&bound.root, &universe)?;
    let FirstPass {
        mut answers,
        pendings,
        mut reports,
        ..
    } = pass;
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

/// The dataset-level pass. Each node is evaluated only over its candidates:
/// the datasets where its value can still change its parent's (for an `and`,
/// those every earlier operand left possible; for an `or`, those no earlier
/// operand proved). A term's answer outside its candidates is "no" and never
/// consulted: its parent is already decided there by an earlier operand, so
/// the root is exact everywhere. Type checks still cover the whole column.
struct FirstPass<'a> {
    bound: &'a Bound,
    src: &'a dyn StatsSource,
    universe: &'a RoaringBitmap,
    answers: Vec<Answer>,
    pendings: Vec<Option<Pending>>,
    reports: Vec<TermExplain>,
}

impl FirstPass<'_> {
    fn node(&mut self, node: &Node, candidates: &RoaringBitmap) -> Result<Answer> {
        Ok(match node {
            Node::Leaf(i) => {
                let (term, text) = (&self.bound.terms[*i], &self.bound.texts[*i]);
                let report = &mut self.reports[*i];
                let (mut answer, pending) =
                    dataset_level(term, text, self.src, self.universe, candidates, report)?;
                answer.yes &= candidates;
                answer.maybe &= candidates;
                report.yes = answer.yes.len();
                report.maybe = answer.maybe.len();
                report.exact = answer.maybe.is_empty();
                self.answers[*i] = answer.clone();
                self.pendings[*i] = pending;
                answer
            }
            Node::And(parts) => {
                let mut possible = candidates.clone();
                let mut yes = candidates.clone();
                for p in parts {
                    let a = self.node(p, &possible)?;
                    possible &= &a.yes | &a.maybe;
                    yes &= a.yes;
                }
                Answer {
                    maybe: possible - &yes,
                    yes,
                }
            }
            Node::Or(parts) => {
                let mut open = candidates.clone();
                let mut yes = RoaringBitmap::new();
                let mut maybe = RoaringBitmap::new();
                for p in parts {
                    let a = self.node(p, &open)?;
                    open -= &a.yes;
                    yes |= a.yes;
                    maybe |= a.maybe;
                }
                Answer {
                    maybe: maybe - &yes,
                    yes,
                }
            }
            Node::Not(inner) => {
                let a = self.node(inner, candidates)?;
                Answer {
                    yes: candidates - &a.yes - &a.maybe,
                    maybe: a.maybe,
                }
            }
        })
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

/// The value sets of one term, built once per distinct (class, array
/// attribute set) rather than once per dataset: the registry shares attribute
/// sets between datasets, so CF units are parsed once per distinct set.
struct Sets {
    distinct: Vec<ValueSet>,
    by_key: HashMap<(Class, usize), u32>,
    /// Per dataset position, the index into `distinct` (`u32::MAX`: none).
    at: Vec<u32>,
}

impl Sets {
    fn new(n_datasets: u32) -> Sets {
        Sets {
            distinct: Vec::new(),
            by_key: HashMap::new(),
            at: vec![u32::MAX; n_datasets as usize],
        }
    }

    /// The set of `test` for one dataset's array, or the type mismatch.
    fn add(
        &mut self,
        e: &ArrayEntry,
        class: Class,
        uses_units: bool,
        test: &Test,
        mismatch_at: &dyn Fn(&str, u32) -> Error,
    ) -> Result<()> {
        // The attribute set matters only when a timestamp meets a number.
        let key = (
            class,
            if uses_units {
                Arc::as_ptr(&e.attrs) as usize
            } else {
                0
            },
        );
        let idx = if let Some(i) = self.by_key.get(&key) {
            *i
        } else {
            let units = if uses_units {
                cf_units(&e.attrs).map_err(|m| mismatch_at(&m, e.pos))?
            } else {
                None
            };
            let set = value_set(test, class, units).map_err(|m| mismatch_at(&m, e.pos))?;
            self.distinct.push(set);
            let i = (self.distinct.len() - 1) as u32;
            self.by_key.insert(key, i);
            i
        };
        self.at[e.pos as usize] = idx;
        Ok(())
    }

    fn get(&self, pos: u32) -> Option<&ValueSet> {
        let i = *self.at.get(pos as usize)?;
        self.distinct.get(i as usize)
    }
}

#[allow(clippy::too_many_lines)] // one arm per kind of term, each short
fn dataset_level(
    term: &Term,
    text: &str,
    src: &dyn StatsSource,
    universe: &RoaringBitmap,
    candidates: &RoaringBitmap,
    report: &mut TermExplain,
) -> Result<(Answer, Option<Pending>)> {
    let mut answer = Answer::default();
    let mismatch_at = |m: &str, pos: u32| mismatch(text, m, src.name(pos));
    match term {
        Term::Has(a) => {
            let entries = src.array_entries(a);
            report.rows = entries.len() as u64;
            answer.yes = entries.iter().map(|e| e.pos).collect();
        }
        Term::Stat { array, stat, test } => {
            // Types over the whole column; statistics for candidates only.
            let entries = src.array_entries(array);
            let mut sets = Sets::new(src.n_datasets());
            let mut present = RoaringBitmap::new();
            for e in &entries {
                present.insert(e.pos);
                let class = match stat {
                    Stat::Min | Stat::Max => Class::of_dtype(e.dtype),
                    Stat::Nulls | Stat::Cells | Stat::Valid => Class::Num,
                };
                match test {
                    Test::IsNull { .. } => continue,
                    Test::Contains { .. } => {
                        return Err(mismatch_at(
                            "`contains` needs a list attribute, not a statistic",
                            e.pos,
                        ));
                    }
                    _ => {}
                }
                let units = class == Class::Num
                    && matches!(stat, Stat::Min | Stat::Max)
                    && has_time_literal(test);
                sets.add(e, class, units, test, &mismatch_at)?;
            }
            let rows = src.array_stats(array, &(&present & candidates))?;
            report.rows = rows.len() as u64;
            let mut null_at = RoaringBitmap::new();
            for (pos, st) in &rows {
                let value = match stat {
                    Stat::Min => st.min.as_ref().map(Val::from_stat),
                    Stat::Max => st.max.as_ref().map(Val::from_stat),
                    Stat::Nulls => Some(Val::Num(Num::I(st.null_count.into()))),
                    Stat::Cells => Some(Val::Num(Num::I(st.row_count.into()))),
                    Stat::Valid => Some(Val::Num(Num::I(
                        i128::from(st.row_count) - i128::from(st.null_count),
                    ))),
                };
                match value {
                    None => {
                        null_at.insert(*pos);
                    }
                    Some(v) => {
                        if sets.get(*pos).is_some_and(|set| set.member(&v)) {
                            answer.yes.insert(*pos);
                        }
                    }
                }
            }
            if let Test::IsNull { negated } = test {
                // Without a row (no such array, or its file no longer holds it)
                // the statistic is null, as when it is undefined.
                let with_row: RoaringBitmap = rows.iter().map(|(p, _)| *p).collect();
                let null = (candidates - &with_row) | null_at;
                answer.yes = if *negated { candidates - &null } else { null };
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
            let entries = src.array_entries(array);
            report.rows = entries.len() as u64;
            if !entries.iter().any(|e| e.attrs.contains_key(key)) {
                let mut keys: Vec<&str> = entries
                    .iter()
                    .flat_map(|e| e.attrs.keys().map(String::as_str))
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
                entries.iter().map(|e| (e.pos, e.attrs.get(key))),
                src,
                universe,
            )?;
        }
        Term::Cells {
            array,
            quantifier,
            test,
        } => {
            let entries = src.array_entries(array);
            let time = has_time_literal(test);
            let mut sets = Sets::new(src.n_datasets());
            let mut present = RoaringBitmap::new();
            for e in &entries {
                present.insert(e.pos);
                let class = Class::of_dtype(e.dtype);
                sets.add(e, class, time && class == Class::Num, test, &mismatch_at)?;
            }
            let rows = src.array_stats(array, &(&present & candidates))?;
            report.rows = rows.len() as u64;
            let mut pending = Pending {
                array: array.clone(),
                look_for: HashMap::new(),
                found_means: *quantifier == Quantifier::Any,
            };
            for (pos, st) in rows {
                let Some(set) = sets.get(pos) else {
                    continue;
                };
                let (Some(min), Some(max)) = (&st.min, &st.max) else {
                    // No non-null cell: `any` is false, `all` vacuously true.
                    if *quantifier == Quantifier::All {
                        answer.yes.insert(pos);
                    }
                    continue;
                };
                let (min, max) = (Val::from_stat(min), Val::from_stat(max));
                let complement;
                let look_for = match quantifier {
                    Quantifier::Any => set,
                    Quantifier::All => {
                        complement = set.complement();
                        &complement
                    }
                };
                match (look_for.any_in(&min, &max), quantifier) {
                    (Tri::Yes, Quantifier::Any) | (Tri::No, Quantifier::All) => {
                        answer.yes.insert(pos);
                    }
                    (Tri::No, Quantifier::Any) | (Tri::Yes, Quantifier::All) => {}
                    (Tri::Maybe, _) => {
                        answer.maybe.insert(pos);
                        pending.look_for.insert(pos, look_for.clone());
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
