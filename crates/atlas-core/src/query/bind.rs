//! Binding: names resolved against the store (unknown names are errors with
//! close matches), and literals converted into the class of each stored value
//! (timestamps into an array's CF time units) or refused as type mismatches.

use super::ast::{CmpOp, Expr, Literal, Quantifier, Stat, Subject, Test};
use super::error::{close_matches, Error};
use super::source::StatsSource;
use super::time::{gregorian, Calendar, CfUnits};
use super::value::{Class, Interval, Num, Val, ValueSet};
use crate::attr::Attr;

/// A leaf of a bound query.
#[derive(Clone, Debug)]
pub(crate) enum Term {
    Has(String),
    Stat {
        array: String,
        stat: Stat,
        test: Test,
    },
    Cells {
        array: String,
        quantifier: Quantifier,
        test: Test,
    },
    DatasetAttr {
        key: String,
        test: Test,
    },
    ArrayAttr {
        array: String,
        key: String,
        test: Test,
    },
}

/// A bound query: the tree, over leaves by index.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Leaf(usize),
}

pub(crate) struct Bound {
    pub root: Node,
    pub terms: Vec<Term>,
    /// Each term as written back (for errors and `explain`).
    pub texts: Vec<String>,
}

pub(crate) fn bind(expr: &Expr, src: &dyn StatsSource) -> Result<Bound, Error> {
    let mut b = Bound {
        root: Node::And(Vec::new()),
        terms: Vec::new(),
        texts: Vec::new(),
    };
    b.root = node(expr, src, &mut b)?;
    Ok(b)
}

fn unknown(kind: &str, name: &str, candidates: &[String]) -> Error {
    Error::UnknownName {
        kind: kind.to_owned(),
        name: name.to_owned(),
        suggestions: close_matches(name, candidates.iter().map(String::as_str)),
    }
}

fn need_array(src: &dyn StatsSource, a: &str) -> Result<(), Error> {
    if src.is_array(a) {
        Ok(())
    } else {
        Err(unknown("array", a, &src.array_names()))
    }
}

fn node(e: &Expr, src: &dyn StatsSource, b: &mut Bound) -> Result<Node, Error> {
    Ok(match e {
        Expr::And(p) => Node::And(
            p.iter()
                .map(|x| node(x, src, b))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(p) => Node::Or(
            p.iter()
                .map(|x| node(x, src, b))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(x) => Node::Not(Box::new(node(x, src, b)?)),
        Expr::Has(a) => {
            need_array(src, a)?;
            leaf(b, e, Term::Has(a.clone()))
        }
        Expr::Pred(subject, test) => {
            if let Test::Within { calendar, .. } = test {
                if Calendar::new(calendar.year, calendar.month, calendar.day).is_none() {
                    return Err(Error::TypeMismatch {
                        term: e.to_string(),
                        message: format!("{calendar} is not a calendar interval"),
                    });
                }
            }
            let term = match subject {
                Subject::Name(n) => {
                    if src.is_array(n) {
                        Term::Cells {
                            array: n.clone(),
                            quantifier: Quantifier::Any,
                            test: test.clone(),
                        }
                    } else if src.is_attribute(n) {
                        Term::DatasetAttr {
                            key: n.clone(),
                            test: test.clone(),
                        }
                    } else {
                        let mut all = src.array_names();
                        all.extend(src.attribute_names());
                        return Err(unknown("array or attribute", n, &all));
                    }
                }
                Subject::Attr(n) => {
                    if !src.is_attribute(n) {
                        return Err(unknown("attribute", n, &src.attribute_names()));
                    }
                    Term::DatasetAttr {
                        key: n.clone(),
                        test: test.clone(),
                    }
                }
                Subject::Stat(a, s) => {
                    need_array(src, a)?;
                    Term::Stat {
                        array: a.clone(),
                        stat: *s,
                        test: test.clone(),
                    }
                }
                Subject::Cells(q, a) => {
                    need_array(src, a)?;
                    Term::Cells {
                        array: a.clone(),
                        quantifier: *q,
                        test: test.clone(),
                    }
                }
                Subject::ArrayAttr(a, k) => {
                    need_array(src, a)?;
                    Term::ArrayAttr {
                        array: a.clone(),
                        key: k.clone(),
                        test: test.clone(),
                    }
                }
            };
            if let Term::Cells { test, .. } = &term {
                if matches!(test, Test::IsNull { .. } | Test::Contains { .. }) {
                    return Err(Error::TypeMismatch {
                        term: e.to_string(),
                        message: "an array's cells take a comparison, `between` or `in`; \
                                  use has(ARRAY) or ARRAY.nulls for missing values"
                            .to_owned(),
                    });
                }
            }
            leaf(b, e, term)
        }
    })
}

fn leaf(b: &mut Bound, e: &Expr, t: Term) -> Node {
    b.terms.push(t);
    b.texts.push(e.to_string());
    Node::Leaf(b.terms.len() - 1)
}

/// A literal as a value of `class`; `units` converts timestamps for numbers.
fn convert(lit: &Literal, class: Class, units: Option<CfUnits>) -> Result<Val, String> {
    Ok(match (lit, class) {
        (Literal::Int(i), Class::Num) => Val::Num(Num::I(*i)),
        (Literal::Float(f), Class::Num) => Val::Num(Num::F(*f)),
        (Literal::Time(t), Class::Num) => match units {
            Some(u) => Val::Num(u.convert(*t)),
            None => {
                return Err(
                    "a timestamp meets a number without CF time units (`days since …`)".to_owned(),
                )
            }
        },
        (Literal::Str(s), Class::Str) => Val::Str(s.clone()),
        (Literal::Bool(v), Class::Bool) => Val::Bool(*v),
        (Literal::Time(t), Class::Time) => Val::Time(t.0),
        (l, c) => return Err(format!("{} meets {}", l.type_name(), c.name())),
    })
}

/// The set of values a test accepts, for values of `class`. `Err` is the
/// mismatch, to be reported with the term and the dataset.
pub(crate) fn value_set(
    test: &Test,
    class: Class,
    units: Option<CfUnits>,
) -> Result<ValueSet, String> {
    let c = |l: &Literal| convert(l, class, units);
    let one = |lo: Option<(Val, bool)>, hi: Option<(Val, bool)>, negated: bool| ValueSet {
        intervals: vec![Interval { lo, hi }],
        negated,
    };
    Ok(match test {
        Test::Cmp(op, l) => {
            let v = c(l)?;
            match op {
                CmpOp::Eq => one(Some((v.clone(), true)), Some((v, true)), false),
                CmpOp::Ne => one(Some((v.clone(), true)), Some((v, true)), true),
                CmpOp::Lt => one(None, Some((v, false)), false),
                CmpOp::Le => one(None, Some((v, true)), false),
                CmpOp::Gt => one(Some((v, false)), None, false),
                CmpOp::Ge => one(Some((v, true)), None, false),
            }
        }
        Test::Between { lo, hi, negated } => {
            one(Some((c(lo)?, true)), Some((c(hi)?, true)), *negated)
        }
        Test::In { list, negated } => ValueSet {
            intervals: list
                .iter()
                .map(|l| c(l).map(Interval::point))
                .collect::<Result<_, _>>()?,
            negated: *negated,
        },
        Test::Within { calendar, negated } => {
            let (s, e) = calendar.bounds();
            one(
                Some((c(&Literal::Time(s))?, true)),
                Some((c(&Literal::Time(e))?, false)),
                *negated,
            )
        }
        Test::IsNull { .. } | Test::Contains { .. } => {
            return Err("`is null` and `contains` are not value comparisons".to_owned())
        }
    })
}

/// The CF time units of an array, when its `units` attribute has them; an
/// error when its `calendar` is not the Gregorian one the conversion assumes.
pub(crate) fn cf_units(
    attrs: &indexmap::IndexMap<String, Attr>,
) -> Result<Option<CfUnits>, String> {
    let Some(Attr::String(u)) = attrs.get("units") else {
        return Ok(None);
    };
    let Some(units) = CfUnits::parse(u) else {
        return Ok(None);
    };
    if let Some(Attr::String(cal)) = attrs.get("calendar") {
        if !gregorian(cal) {
            return Err(format!(
                "calendar {cal:?} is not supported (only standard, gregorian, proleptic_gregorian)"
            ));
        }
    }
    Ok(Some(units))
}

/// Does the test need CF units (does it hold a timestamp literal)?
pub(crate) fn has_time_literal(test: &Test) -> bool {
    match test {
        Test::Cmp(_, l) | Test::Contains { value: l, .. } => matches!(l, Literal::Time(_)),
        Test::Between { lo, hi, .. } => {
            matches!(lo, Literal::Time(_)) || matches!(hi, Literal::Time(_))
        }
        Test::In { list, .. } => list.iter().any(|l| matches!(l, Literal::Time(_))),
        Test::Within { .. } => true,
        Test::IsNull { .. } => false,
    }
}

/// A literal as an element of a list attribute (for `contains`).
pub(crate) fn element(lit: &Literal, class: Class) -> Result<Val, String> {
    convert(lit, class, None)
}
