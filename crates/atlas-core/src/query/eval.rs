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

use super::ast::{Quantifier, Stat, Test};
use super::bind::{cf_units, element, has_time_literal, value_set, Bound, Node, Term};
use super::error::{close_matches, Error as QueryError};
use super::result::TermExplain;
use super::source::{ArrayGroup, ChunkSource, Ids, RowTest, StatsSource};
use super::value::{attr_class, attr_list, attr_scalar, Class, Tri, Val, ValueSet};
use crate::attr::Attr;
use crate::error::{Error, Result};

/// One term's answer over all datasets: `yes` and `maybe` (the rest is no).
#[derive(Clone, Default)]
struct Answer {
    yes: Ids,
    maybe: Ids,
}

/// For a value term's undecided datasets: the set of cell values to look for,
/// and whether finding one makes the term true (`any`) or false (`all`).
struct Pending {
    array: String,
    /// The undecided datasets, each with the set to look for.
    look_for: Vec<(Ids, ValueSet)>,
    found_means: bool,
}

pub(crate) struct Outcome {
    pub matches: Ids,
    pub terms: Vec<TermExplain>,
}

pub(crate) fn evaluate(
    bound: &Bound,
    stats: &dyn StatsSource,
    chunks: &dyn ChunkSource,
) -> Result<Outcome> {
    let universe = stats.universe().clone();
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
    let mut arrays: Vec<&str> = Vec::new();
    for term in &bound.terms {
        if let Term::Stat { array, .. } | Term::Cells { array, .. } = term {
            if !arrays.contains(&array.as_str()) {
                arrays.push(array);
            }
        }
    }
    stats.prefetch_columns(&arrays);
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
        let mut yes = Ids::new();
        for (ids, set) in &pending.look_for {
            for id in &(ids & &candidates) {
                let found = find_cell(chunks, &pending.array, id, set, &mut reports[i])?;
                if found == pending.found_means {
                    yes.insert(id);
                }
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
    universe: &'a Ids,
    answers: Vec<Answer>,
    pendings: Vec<Option<Pending>>,
    reports: Vec<TermExplain>,
}

impl FirstPass<'_> {
    fn node(&mut self, node: &Node, candidates: &Ids) -> Result<Answer> {
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
                let mut yes = Ids::new();
                let mut maybe = Ids::new();
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

fn combine(node: &Node, answers: &[Answer], universe: &Ids) -> Answer {
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
            let mut yes = Ids::new();
            let mut maybe = Ids::new();
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
/// absent.
fn is_null(negated: bool, present: &Ids, u: &Ids) -> Answer {
    let null = u - present;
    Answer {
        yes: if negated { u - &null } else { null },
        maybe: Ids::new(),
    }
}

/// The value sets of one term over an array's groups, built once per
/// distinct (class, attribute set when CF units matter): the registry shares
/// attribute sets between datasets, so units are parsed once per set.
struct Sets {
    /// Each set with the datasets it applies to.
    distinct: Vec<(ValueSet, Ids)>,
    by_key: HashMap<(Class, usize), usize>,
}

impl Sets {
    /// One set per distinct key over `groups`; `class_of` gives a group's
    /// class and whether CF units matter. The first mismatching group (by
    /// its first dataset) is the error.
    fn new(
        groups: &[ArrayGroup],
        test: &Test,
        class_of: impl Fn(&ArrayGroup) -> (Class, bool),
        mismatch_at: &dyn Fn(&str, u64) -> Error,
    ) -> Result<Sets> {
        let mut sets = Sets {
            distinct: Vec::new(),
            by_key: HashMap::new(),
        };
        let mut order: Vec<&ArrayGroup> = groups.iter().collect();
        order.sort_by_key(|g| g.ids.min());
        for g in order {
            let (class, uses_units) = class_of(g);
            let first = g.ids.min().unwrap_or(0);
            let key = (
                class,
                if uses_units {
                    Arc::as_ptr(&g.attrs) as usize
                } else {
                    0
                },
            );
            if let Some(i) = sets.by_key.get(&key) {
                sets.distinct[*i].1 |= &g.ids;
                continue;
            }
            let units = if uses_units {
                cf_units(&g.attrs).map_err(|m| mismatch_at(&m, first))?
            } else {
                None
            };
            let set = value_set(test, class, units).map_err(|m| mismatch_at(&m, first))?;
            sets.distinct.push((set, g.ids.clone()));
            sets.by_key.insert(key, sets.distinct.len() - 1);
        }
        Ok(sets)
    }
}

fn union_of(groups: &[ArrayGroup]) -> Ids {
    let mut all = Ids::new();
    for g in groups {
        all |= &g.ids;
    }
    all
}

#[allow(clippy::too_many_lines)] // one arm per kind of term, each short
fn dataset_level(
    term: &Term,
    text: &str,
    src: &dyn StatsSource,
    universe: &Ids,
    candidates: &Ids,
    report: &mut TermExplain,
) -> Result<(Answer, Option<Pending>)> {
    let mut answer = Answer::default();
    let mismatch_at = |m: &str, id: u64| match src.name(id) {
        Ok(name) => mismatch(text, m, &name),
        Err(e) => e,
    };
    match term {
        Term::Has(a) => {
            answer.yes = union_of(&src.array_groups(a)?);
            report.rows = answer.yes.len();
        }
        Term::Stat { array, stat, test } => {
            // Types over the whole column; statistics for candidates only.
            let groups = src.array_groups(array)?;
            match test {
                Test::IsNull { negated } => {
                    let only = union_of(&groups) & candidates;
                    let hits = src.test_rows(array, &only, RowTest::Stat(*stat, None))?;
                    report.rows = hits.rows.len();
                    // Without a row the statistic is null, as when undefined.
                    let null = (candidates - &hits.rows) | hits.null;
                    answer.yes = if *negated { candidates - &null } else { null };
                }
                Test::Contains { .. } => {
                    if let Some(first) = groups.iter().filter_map(|g| g.ids.min()).min() {
                        return Err(mismatch_at(
                            "`contains` needs a list attribute, not a statistic",
                            first,
                        ));
                    }
                }
                _ => {
                    let sets = Sets::new(
                        &groups,
                        test,
                        |g| {
                            let class = match stat {
                                Stat::Min | Stat::Max => Class::of_dtype(g.dtype),
                                Stat::Nulls | Stat::Cells | Stat::Valid => Class::Num,
                            };
                            let units = class == Class::Num
                                && matches!(stat, Stat::Min | Stat::Max)
                                && has_time_literal(test);
                            (class, units)
                        },
                        &mismatch_at,
                    )?;
                    for (set, ids) in &sets.distinct {
                        let only = ids & candidates;
                        let hits = src.test_rows(array, &only, RowTest::Stat(*stat, Some(set)))?;
                        report.rows += hits.rows.len();
                        answer.yes |= hits.yes;
                    }
                }
            }
        }
        Term::DatasetAttr { key, test } => {
            let mut decide = AttrDecider::new(text, test);
            let hits = src.attribute_hits(key, &mut |attr, id| decide.decide(attr, id, src))?;
            report.rows = hits.present.len();
            answer = match test {
                Test::IsNull { negated } => is_null(*negated, &hits.present, universe),
                _ => Answer {
                    yes: hits.yes,
                    maybe: Ids::new(),
                },
            };
        }
        Term::ArrayAttr { array, key, test } => {
            let mut decide = AttrDecider::new(text, test);
            let groups = src.array_groups(array)?;
            report.rows = groups.iter().map(|g| g.ids.len()).sum();
            if !groups.iter().any(|g| g.attrs.contains_key(key)) {
                let mut keys: Vec<&str> = groups
                    .iter()
                    .flat_map(|g| g.attrs.keys().map(String::as_str))
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                return Err(Error::Query(QueryError::UnknownName {
                    kind: format!("attribute of {array}"),
                    name: key.clone(),
                    suggestions: close_matches(key, keys),
                }));
            }
            let mut present = Ids::new();
            let mut order: Vec<&ArrayGroup> = groups.iter().collect();
            order.sort_by_key(|g| g.ids.min());
            for g in order {
                let (Some(attr), Some(first)) = (g.attrs.get(key), g.ids.min()) else {
                    continue;
                };
                present |= &g.ids;
                if !matches!(test, Test::IsNull { .. }) && decide.decide(attr, first, src)? {
                    answer.yes |= &g.ids;
                }
            }
            if let Test::IsNull { negated } = test {
                answer = is_null(*negated, &present, universe);
            }
        }
        Term::Cells {
            array,
            quantifier,
            test,
        } => {
            let groups = src.array_groups(array)?;
            let time = has_time_literal(test);
            let sets = Sets::new(
                &groups,
                test,
                |g| {
                    let class = Class::of_dtype(g.dtype);
                    (class, time && class == Class::Num)
                },
                &mismatch_at,
            )?;
            let mut pending = Pending {
                array: array.clone(),
                look_for: Vec::new(),
                found_means: *quantifier == Quantifier::Any,
            };
            for (set, ids) in sets.distinct {
                let only = &ids & candidates;
                let look_for = match quantifier {
                    Quantifier::Any => set,
                    Quantifier::All => set.complement(),
                };
                let hits = src.test_rows(array, &only, RowTest::Range(&look_for))?;
                report.rows += hits.rows.len();
                match quantifier {
                    // No non-null cell: `any` is false, `all` vacuously true.
                    Quantifier::Any => answer.yes |= &hits.yes,
                    Quantifier::All => answer.yes |= &hits.rows - &hits.yes - &hits.maybe,
                }
                if !hits.maybe.is_empty() {
                    answer.maybe |= &hits.maybe;
                    pending.look_for.push((hits.maybe, look_for));
                }
            }
            return Ok((answer, Some(pending)));
        }
    }
    Ok((answer, None))
}

/// Decides attribute values against one term's test, building the value set
/// once per class (an attribute column is decided once per distinct value,
/// and an identifier column has thousands).
struct AttrDecider<'a> {
    term: &'a str,
    test: &'a Test,
    sets: HashMap<Class, std::result::Result<ValueSet, String>>,
}

impl<'a> AttrDecider<'a> {
    fn new(term: &'a str, test: &'a Test) -> AttrDecider<'a> {
        AttrDecider {
            term,
            test,
            sets: HashMap::new(),
        }
    }

    /// Does one attribute value pass the test? (`is null` is decided by the
    /// caller from presence.) A type mismatch names the dataset `id`.
    fn decide(&mut self, attr: &Attr, id: u64, src: &dyn StatsSource) -> Result<bool> {
        let term = self.term;
        let fail = |m: &str| -> Error {
            match src.name(id) {
                Ok(name) => mismatch(term, m, &name),
                Err(e) => e,
            }
        };
        let (class, is_list) = attr_class(attr);
        Ok(match self.test {
            Test::IsNull { .. } => false,
            Test::Contains { value, negated } => {
                let Some(list) = attr_list(attr) else {
                    return Err(fail(
                        "`contains` needs a list attribute; this one is a scalar",
                    ));
                };
                let v = element(value, class).map_err(|m| fail(&m))?;
                list.iter().any(|x| x.cmp_val(&v) == Some(Ordering::Equal)) != *negated
            }
            _ if is_list => {
                return Err(fail("a list attribute takes `contains` or `is null`"));
            }
            cmp => {
                let set = self
                    .sets
                    .entry(class)
                    .or_insert_with(|| value_set(cmp, class, None))
                    .as_ref()
                    .map_err(|m| fail(m))?;
                match attr {
                    Attr::String(s) => set.member_str(s),
                    _ => attr_scalar(attr).is_some_and(|v| set.member(&v)),
                }
            }
        })
    }
}

/// Does a non-null cell of one dataset's array belong to `set`? Chunk
/// statistics first; only the chunks they leave undecided are decoded.
fn find_cell(
    chunks: &dyn ChunkSource,
    array: &str,
    id: u64,
    set: &ValueSet,
    report: &mut TermExplain,
) -> Result<bool> {
    let summaries = chunks.chunks(array, id)?;
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
        if chunks.chunk_has(array, id, c.chunk_idx, set)? {
            return Ok(true);
        }
    }
    Ok(false)
}
