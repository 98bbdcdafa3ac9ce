//! Typed values and exact comparisons between them: integers of any width
//! against floats without rounding, IEEE floats (`-0.0 == 0.0`, NaN unordered),
//! strings by bytes.

use std::cmp::Ordering;

use array_format::StatValue;

use crate::attr::Attr;

/// A number: every stored integer fits an `i128`; floats stay `f64`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    I(i128),
    F(f64),
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Num::I(a), Num::I(b)) => a == b,
            (Num::F(a), Num::F(b)) => a.to_bits() == b.to_bits(),
            _ => false,
        }
    }
}

/// 2^127: every `i128` is smaller in magnitude.
const LIMIT: f64 = 1.701_411_834_604_692_3e38;

/// Exact order of an integer and a float; `None` for NaN.
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Floats at or beyond ±2^127 order by sign alone.
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f < -LIMIT {
        return Some(Ordering::Greater);
    }
    let fl = f.floor();
    let fi = fl as i128; // exact: |fl| < 2^127 and fl is an integer
    match i.cmp(&fi) {
        Ordering::Equal if f > fl => Some(Ordering::Less),
        o => Some(o),
    }
}

impl Num {
    pub(crate) fn cmp_num(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::I(a), Num::I(b)) => Some(a.cmp(&b)),
            (Num::F(a), Num::F(b)) => a.partial_cmp(&b),
            (Num::I(a), Num::F(b)) => cmp_int_float(a, b),
            (Num::F(a), Num::I(b)) => cmp_int_float(b, a).map(Ordering::reverse),
        }
    }
}

/// A value of one comparable class.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Bool(bool),
    Num(Num),
    Str(String),
    Time(i64),
}

/// The class of a stored value, which decides the literals it may meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Bool,
    Num,
    Str,
    Time,
}

impl Class {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Class::Bool => "a boolean",
            Class::Num => "a number",
            Class::Str => "a string",
            Class::Time => "a timestamp",
        }
    }

    pub(crate) fn of_dtype(d: array_format::DType) -> Class {
        use array_format::DType;
        match d {
            DType::Bool => Class::Bool,
            DType::String => Class::Str,
            DType::Timestamp => Class::Time,
            _ => Class::Num,
        }
    }
}

impl Val {
    pub(crate) fn cmp_val(&self, other: &Val) -> Option<Ordering> {
        match (self, other) {
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Num(a), Val::Num(b)) => a.cmp_num(*b),
            (Val::Str(a), Val::Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Val::Time(a), Val::Time(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    pub(crate) fn from_stat(s: &StatValue) -> Val {
        match s {
            StatValue::Bool(b) => Val::Bool(*b),
            StatValue::Int(i) => Val::Num(Num::I(i128::from(*i))),
            StatValue::UInt(u) => Val::Num(Num::I(i128::from(*u))),
            StatValue::Float(f) => Val::Num(Num::F(*f)),
            StatValue::Str(s) => Val::Str(s.clone()),
            StatValue::Timestamp(t) => Val::Time(t.0),
        }
    }
}

/// A scalar attribute's value; `None` for lists.
pub(crate) fn attr_scalar(a: &Attr) -> Option<Val> {
    Some(match a {
        Attr::Bool(b) => Val::Bool(*b),
        Attr::Int64(i) => Val::Num(Num::I(i128::from(*i))),
        Attr::UInt64(u) => Val::Num(Num::I(i128::from(*u))),
        Attr::Float64(f) => Val::Num(Num::F(*f)),
        Attr::String(s) => Val::Str(s.clone()),
        Attr::Timestamp(t) => Val::Time(t.0),
        _ => return None,
    })
}

/// The elements of a list attribute; `None` for scalars.
pub(crate) fn attr_list(a: &Attr) -> Option<Vec<Val>> {
    Some(match a {
        Attr::BoolList(v) => v.iter().map(|b| Val::Bool(*b)).collect(),
        Attr::Int64List(v) => v.iter().map(|i| Val::Num(Num::I(i128::from(*i)))).collect(),
        Attr::UInt64List(v) => v.iter().map(|i| Val::Num(Num::I(i128::from(*i)))).collect(),
        Attr::Float64List(v) => v.iter().map(|f| Val::Num(Num::F(*f))).collect(),
        Attr::StringList(v) => v.iter().map(|s| Val::Str(s.clone())).collect(),
        Attr::TimestampList(v) => v.iter().map(|t| Val::Time(t.0)).collect(),
        _ => return None,
    })
}

/// The class of an attribute (of its elements, for lists) and whether it is a list.
pub(crate) fn attr_class(a: &Attr) -> (Class, bool) {
    match a {
        Attr::Bool(_) => (Class::Bool, false),
        Attr::Int64(_) | Attr::UInt64(_) | Attr::Float64(_) => (Class::Num, false),
        Attr::String(_) => (Class::Str, false),
        Attr::Timestamp(_) => (Class::Time, false),
        Attr::BoolList(_) => (Class::Bool, true),
        Attr::Int64List(_) | Attr::UInt64List(_) | Attr::Float64List(_) => (Class::Num, true),
        Attr::StringList(_) => (Class::Str, true),
        Attr::TimestampList(_) => (Class::Time, true),
    }
}

/// One interval of a [`ValueSet`]; an absent bound is unbounded, the flag says
/// whether the bound itself belongs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Interval {
    pub lo: Option<(Val, bool)>,
    pub hi: Option<(Val, bool)>,
}

impl Interval {
    pub(crate) fn point(v: Val) -> Interval {
        Interval {
            lo: Some((v.clone(), true)),
            hi: Some((v, true)),
        }
    }

    /// True when `v` lies inside (unordered values, NaN, never do).
    pub(crate) fn contains(&self, v: &Val) -> bool {
        let lo_ok = match &self.lo {
            None => v.cmp_val(v).is_some(),
            Some((b, incl)) => match v.cmp_val(b) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => *incl,
                _ => false,
            },
        };
        lo_ok
            && match &self.hi {
                None => true,
                Some((b, incl)) => match v.cmp_val(b) {
                    Some(Ordering::Less) => true,
                    Some(Ordering::Equal) => *incl,
                    _ => false,
                },
            }
    }

    /// True when no value can lie inside (`between 5 and 1`).
    fn is_empty(&self) -> bool {
        match (&self.lo, &self.hi) {
            (Some((lo, lo_incl)), Some((hi, hi_incl))) => match lo.cmp_val(hi) {
                Some(Ordering::Greater) | None => true,
                Some(Ordering::Equal) => !(*lo_incl && *hi_incl),
                Some(Ordering::Less) => false,
            },
            _ => false,
        }
    }

    /// True when some value of `[min, max]` could lie inside (conservative).
    pub(crate) fn may_meet(&self, min: &Val, max: &Val) -> bool {
        if self.is_empty() {
            return false;
        }
        let lo_ok = match &self.lo {
            None => true,
            Some((b, incl)) => match max.cmp_val(b) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => *incl,
                _ => false,
            },
        };
        lo_ok
            && match &self.hi {
                None => true,
                Some((b, incl)) => match min.cmp_val(b) {
                    Some(Ordering::Less) => true,
                    Some(Ordering::Equal) => *incl,
                    _ => false,
                },
            }
    }
}

/// A set of values: a union of intervals, or its complement. A value belongs
/// to the complement when it lies in no interval, so under `!=` a NaN belongs
/// (IEEE: `NaN != x` holds) and under `=` it never does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ValueSet {
    pub intervals: Vec<Interval>,
    pub negated: bool,
}

/// What statistics say about a set of values: none, some or all of them, or
/// not known without the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tri {
    No,
    Yes,
    Maybe,
}

impl ValueSet {
    pub(crate) fn member(&self, v: &Val) -> bool {
        self.intervals.iter().any(|i| i.contains(v)) != self.negated
    }

    /// As [`ValueSet::member`] for a string, without building a [`Val`].
    pub(crate) fn member_str(&self, v: &str) -> bool {
        let cmp = |b: &Val| match b {
            Val::Str(b) => Some(v.as_bytes().cmp(b.as_bytes())),
            _ => None,
        };
        let inside = |i: &Interval| {
            let lo_ok = match &i.lo {
                None => true,
                Some((b, incl)) => match cmp(b) {
                    Some(Ordering::Greater) => true,
                    Some(Ordering::Equal) => *incl,
                    _ => false,
                },
            };
            lo_ok
                && match &i.hi {
                    None => true,
                    Some((b, incl)) => match cmp(b) {
                        Some(Ordering::Less) => true,
                        Some(Ordering::Equal) => *incl,
                        _ => false,
                    },
                }
        };
        self.intervals.iter().any(inside) != self.negated
    }

    /// Does some value in a group whose smallest and largest values are `min`
    /// and `max` (both actual values of the group) belong?
    pub(crate) fn any_in(&self, min: &Val, max: &Val) -> Tri {
        if self.member(min) || self.member(max) {
            return Tri::Yes;
        }
        if self.negated {
            // Both ends lie in the intervals: one convex interval holding both
            // holds everything between them.
            if self
                .intervals
                .iter()
                .any(|i| i.contains(min) && i.contains(max))
            {
                Tri::No
            } else {
                Tri::Maybe
            }
        } else if self.intervals.iter().any(|i| i.may_meet(min, max)) {
            Tri::Maybe
        } else {
            Tri::No
        }
    }

    pub(crate) fn complement(&self) -> ValueSet {
        ValueSet {
            intervals: self.intervals.clone(),
            negated: !self.negated,
        }
    }
}

/// An [`Interval`] with `f64` bounds; an unbounded end is an infinite bound
/// that belongs, which answers the same for every value other than NaN (the
/// only values an [`F64Set`] is asked about).
#[derive(Clone, Copy, Debug)]
struct F64Interval {
    lo: f64,
    lo_incl: bool,
    hi: f64,
    hi_incl: bool,
}

/// A [`ValueSet`] of numbers whose every bound is exactly an `f64` (a float,
/// or an integer within ±2^53), for testing `f64` statistics (never NaN)
/// without building a [`Val`] per row. It answers exactly as the set does
/// for such values: the comparisons below are exact on purpose.
#[derive(Clone, Debug)]
pub(crate) struct F64Set {
    intervals: Vec<F64Interval>,
    negated: bool,
    /// A set of one interval as closed bounds `[lo, hi]` (an open bound
    /// moved to the next `f64` inward; an empty interval as `[inf, -inf]`):
    /// two comparisons per value, the common case of every scan.
    closed: Option<(f64, f64)>,
}

/// 2^53: every integer of at most this magnitude is exactly an `f64`.
const EXACT_F64: u128 = 1 << 53;

fn exact_f64(v: &Val) -> Option<f64> {
    match v {
        Val::Num(Num::F(f)) => Some(*f),
        Val::Num(Num::I(i)) if i.unsigned_abs() <= EXACT_F64 => Some(*i as f64),
        _ => None,
    }
}

/// A bound in `f64` form (`open`: the infinity standing for no bound).
fn f64_edge(b: Option<&(Val, bool)>, open: f64) -> Option<(f64, bool)> {
    match b {
        None => Some((open, true)),
        Some((v, incl)) => exact_f64(v).map(|f| (f, *incl)),
    }
}

/// `v` above (or at, when it belongs) the lower bound `b`.
#[allow(clippy::float_cmp)] // exact by design
#[inline]
fn above(v: f64, b: f64, incl: bool) -> bool {
    v > b || (incl && v == b)
}

/// `v` below (or at, when it belongs) the upper bound `b`.
#[allow(clippy::float_cmp)] // exact by design
#[inline]
fn below(v: f64, b: f64, incl: bool) -> bool {
    v < b || (incl && v == b)
}

impl F64Interval {
    #[inline]
    fn contains(&self, v: f64) -> bool {
        above(v, self.lo, self.lo_incl) && below(v, self.hi, self.hi_incl)
    }

    #[inline]
    fn is_empty(&self) -> bool {
        match self.lo.partial_cmp(&self.hi) {
            Some(Ordering::Greater) | None => true,
            Some(Ordering::Equal) => !(self.lo_incl && self.hi_incl),
            Some(Ordering::Less) => false,
        }
    }

    #[inline]
    fn may_meet(&self, min: f64, max: f64) -> bool {
        !self.is_empty() && above(max, self.lo, self.lo_incl) && below(min, self.hi, self.hi_incl)
    }
}

impl F64Set {
    /// The set in `f64` form, when every bound has one.
    pub(crate) fn new(set: &ValueSet) -> Option<F64Set> {
        let intervals = set
            .intervals
            .iter()
            .map(|i| {
                let (lo, lo_incl) = f64_edge(i.lo.as_ref(), f64::NEG_INFINITY)?;
                let (hi, hi_incl) = f64_edge(i.hi.as_ref(), f64::INFINITY)?;
                Some(F64Interval {
                    lo,
                    lo_incl,
                    hi,
                    hi_incl,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let closed = match intervals.as_slice() {
            [i] => {
                let lo = match (i.lo_incl, i.lo) {
                    (true, lo) => lo,
                    (false, f64::INFINITY) => f64::INFINITY,
                    (false, lo) => lo.next_up(),
                };
                let hi = match (i.hi_incl, i.hi) {
                    (true, hi) => hi,
                    (false, f64::NEG_INFINITY) => f64::NEG_INFINITY,
                    (false, hi) => hi.next_down(),
                };
                // Nothing lies above +inf or below -inf.
                if (!i.lo_incl && i.lo == f64::INFINITY)
                    || (!i.hi_incl && i.hi == f64::NEG_INFINITY)
                {
                    Some((f64::INFINITY, f64::NEG_INFINITY))
                } else {
                    Some((lo, hi))
                }
            }
            _ => None,
        };
        Some(F64Set {
            intervals,
            negated: set.negated,
            closed,
        })
    }

    /// The set as one closed interval `[lo, hi]` and whether it is negated,
    /// when it has that form (see the field).
    pub(crate) fn closed(&self) -> Option<(f64, f64, bool)> {
        self.closed.map(|(lo, hi)| (lo, hi, self.negated))
    }

    /// As [`ValueSet::member`].
    #[inline]
    pub(crate) fn member(&self, v: f64) -> bool {
        if let Some((lo, hi)) = self.closed {
            return (lo <= v && v <= hi) != self.negated;
        }
        self.intervals.iter().any(|i| i.contains(v)) != self.negated
    }

    /// As [`ValueSet::any_in`].
    #[inline]
    pub(crate) fn any_in(&self, min: f64, max: f64) -> Tri {
        if self.member(min) || self.member(max) {
            return Tri::Yes;
        }
        if let Some((lo, hi)) = self.closed {
            let inside = |v: f64| lo <= v && v <= hi;
            return if self.negated {
                if inside(min) && inside(max) {
                    Tri::No
                } else {
                    Tri::Maybe
                }
            } else if lo <= hi && max >= lo && min <= hi {
                Tri::Maybe
            } else {
                Tri::No
            };
        }
        if self.negated {
            if self
                .intervals
                .iter()
                .any(|i| i.contains(min) && i.contains(max))
            {
                Tri::No
            } else {
                Tri::Maybe
            }
        } else if self.intervals.iter().any(|i| i.may_meet(min, max)) {
            Tri::Maybe
        } else {
            Tri::No
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_compare_exactly() {
        let big = Num::I(i128::from(u64::MAX));
        assert_eq!(
            big.cmp_num(Num::F(1.844_674_407_370_955_2e19)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Num::I(-1).cmp_num(Num::I(i128::from(u64::MAX))),
            Some(Ordering::Less)
        );
        assert_eq!(Num::I(3).cmp_num(Num::F(3.5)), Some(Ordering::Less));
        assert_eq!(Num::I(-3).cmp_num(Num::F(-3.5)), Some(Ordering::Greater));
        assert_eq!(Num::I(0).cmp_num(Num::F(-0.0)), Some(Ordering::Equal));
        assert_eq!(Num::F(-0.0).cmp_num(Num::F(0.0)), Some(Ordering::Equal));
        assert_eq!(Num::I(1).cmp_num(Num::F(f64::NAN)), None);
        assert_eq!(
            Num::I(1).cmp_num(Num::F(f64::INFINITY)),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn the_f64_form_answers_as_the_set() {
        let vals = [
            f64::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            0.0_f64.next_up(), // the least f64 above an open bound 0
            1.0,
            2.5_f64.next_down(),
            2.5,
            2.5_f64.next_up(),
            3.0,
            9_007_199_254_740_992.0,
            f64::INFINITY,
        ];
        let bounds: Vec<Val> = vec![
            Val::Num(Num::I(0)),
            Val::Num(Num::I(3)),
            Val::Num(Num::F(-0.0)),
            Val::Num(Num::F(2.5)),
            Val::Num(Num::F(f64::NAN)),
            Val::Num(Num::F(f64::INFINITY)),
            Val::Num(Num::I(1 << 53)),
        ];
        let mut sets = Vec::new();
        for lo in &bounds {
            for hi in &bounds {
                for (li, hi_i) in [(true, true), (false, true), (true, false), (false, false)] {
                    for negated in [false, true] {
                        sets.push(ValueSet {
                            intervals: vec![Interval {
                                lo: Some((lo.clone(), li)),
                                hi: Some((hi.clone(), hi_i)),
                            }],
                            negated,
                        });
                        sets.push(ValueSet {
                            intervals: vec![
                                Interval {
                                    lo: None,
                                    hi: Some((lo.clone(), li)),
                                },
                                Interval::point(hi.clone()),
                            ],
                            negated,
                        });
                    }
                }
            }
        }
        for set in &sets {
            let f = F64Set::new(set).expect("every bound is exact");
            for a in vals {
                let va = Val::Num(Num::F(a));
                assert_eq!(f.member(a), set.member(&va), "{set:?} {a}");
                for b in vals.iter().filter(|b| **b >= a) {
                    let vb = Val::Num(Num::F(*b));
                    assert_eq!(f.any_in(a, *b), set.any_in(&va, &vb), "{set:?} [{a}, {b}]");
                }
            }
        }
        let big = ValueSet {
            intervals: vec![Interval::point(Val::Num(Num::I((1 << 53) + 1)))],
            negated: false,
        };
        assert!(F64Set::new(&big).is_none(), "not exactly an f64");
    }

    #[test]
    fn member_str_answers_as_member() {
        let words = ["", "a", "B", "ab", "é", "6903240"];
        let s = |w: &str| Val::Str(w.to_owned());
        for lo in words {
            for hi in words {
                for negated in [false, true] {
                    for set in [
                        ValueSet {
                            intervals: vec![Interval {
                                lo: Some((s(lo), true)),
                                hi: Some((s(hi), false)),
                            }],
                            negated,
                        },
                        ValueSet {
                            intervals: vec![
                                Interval::point(s(lo)),
                                Interval {
                                    lo: None,
                                    hi: Some((s(hi), true)),
                                },
                            ],
                            negated,
                        },
                    ] {
                        for w in words {
                            assert_eq!(set.member_str(w), set.member(&s(w)), "{set:?} {w:?}");
                        }
                    }
                }
            }
        }
    }
}
