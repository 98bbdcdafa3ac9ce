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
}
