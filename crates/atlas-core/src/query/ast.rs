//! The expression tree that [`super::Query::parse`] and the builder both
//! produce, and its display form (which parses back to the same tree).

use std::fmt;

use array_format::TimestampNs;

use super::time::{format_instant, Calendar};

/// A literal value in a query.
#[derive(Clone, Debug)]
pub enum Literal {
    /// An integer (any value of `i64` or `u64`).
    Int(i128),
    /// A float (`nan`, `inf` and `-inf` included).
    Float(f64),
    /// A string (`'…'`, a quote doubled inside).
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// An ISO-8601 instant (`2020-01-01`, `2020-01-01T12:00:00Z`).
    Time(TimestampNs),
}

impl PartialEq for Literal {
    /// Floats compare by bits, so a query with `nan` equals itself.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Literal::Int(a), Literal::Int(b)) => a == b,
            (Literal::Float(a), Literal::Float(b)) => a.to_bits() == b.to_bits(),
            (Literal::Str(a), Literal::Str(b)) => a == b,
            (Literal::Bool(a), Literal::Bool(b)) => a == b,
            (Literal::Time(a), Literal::Time(b)) => a == b,
            _ => false,
        }
    }
}

macro_rules! literal_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Literal {
            fn from(v: $t) -> Self {
                Literal::Int(i128::from(v))
            }
        }
    )*};
}
literal_from_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl From<f64> for Literal {
    fn from(v: f64) -> Self {
        Literal::Float(v)
    }
}
impl From<f32> for Literal {
    fn from(v: f32) -> Self {
        Literal::Float(f64::from(v))
    }
}
impl From<&str> for Literal {
    fn from(v: &str) -> Self {
        Literal::Str(v.to_owned())
    }
}
impl From<String> for Literal {
    fn from(v: String) -> Self {
        Literal::Str(v)
    }
}
impl From<bool> for Literal {
    fn from(v: bool) -> Self {
        Literal::Bool(v)
    }
}
impl From<TimestampNs> for Literal {
    fn from(v: TimestampNs) -> Self {
        Literal::Time(v)
    }
}

impl Literal {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Literal::Int(_) | Literal::Float(_) => "a number",
            Literal::Str(_) => "a string",
            Literal::Bool(_) => "a boolean",
            Literal::Time(_) => "a timestamp",
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Float(v) if v.is_nan() => f.write_str("nan"),
            Literal::Float(v) if v.is_infinite() => {
                f.write_str(if *v > 0.0 { "inf" } else { "-inf" })
            }
            // `{:?}` is the shortest text that reads back to the same bits
            // (always with a `.` or an exponent, so it reads back as a float).
            Literal::Float(v) => write!(f, "{v:?}"),
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Time(t) => f.write_str(&format_instant(*t)),
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` (also `==`).
    Eq,
    /// `!=` (also `<>`).
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A dataset-level statistic of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Smallest non-null cell (null when every cell is null).
    Min,
    /// Largest non-null cell.
    Max,
    /// Null cells: fill value, NaN, or never written.
    Nulls,
    /// All cells.
    Cells,
    /// Non-null cells (`cells - nulls`).
    Valid,
}

impl Stat {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Nulls => "nulls",
            Stat::Cells => "cells",
            Stat::Valid => "valid",
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Stat> {
        Some(match s {
            "min" => Stat::Min,
            "max" => Stat::Max,
            "nulls" => Stat::Nulls,
            "cells" => Stat::Cells,
            "valid" => Stat::Valid,
            _ => return None,
        })
    }
}

/// `any(…)` or `all(…)` over an array's non-null cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantifier {
    /// Some non-null cell satisfies the test.
    Any,
    /// Every non-null cell satisfies it (true when there is none).
    All,
}

/// What a test is applied to.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Subject {
    /// A bare name: the array's cells (as `any`) if some dataset has such an
    /// array, else a dataset attribute.
    Name(String),
    /// `@name`: a dataset attribute, even where an array has the name.
    Attr(String),
    /// `ARRAY.stat`.
    Stat(String, Stat),
    /// `ARRAY@key`: a per-array attribute.
    ArrayAttr(String, String),
    /// `any(ARRAY …)` / `all(ARRAY …)`.
    Cells(Quantifier, String),
}

/// A test applied to a subject.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Test {
    Cmp(CmpOp, Literal),
    Between {
        lo: Literal,
        hi: Literal,
        negated: bool,
    },
    In {
        list: Vec<Literal>,
        negated: bool,
    },
    /// `in 2020`: the half-open calendar interval.
    Within {
        calendar: Calendar,
        negated: bool,
    },
    IsNull {
        negated: bool,
    },
    Contains {
        value: Literal,
        negated: bool,
    },
}

/// A query expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Has(String),
    Pred(Subject, Test),
}

const KEYWORDS: [&str; 15] = [
    "and", "or", "not", "in", "between", "is", "null", "has", "any", "all", "contains", "true",
    "false", "nan", "inf",
];

pub(crate) fn is_keyword(s: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
}

/// A name as the parser reads it back: bare when it is an identifier, else
/// double-quoted with `"` doubled.
pub(crate) struct NameFmt<'a>(pub &'a str);

impl fmt::Display for NameFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let ident = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !is_keyword(s);
        if ident {
            f.write_str(s)
        } else {
            write!(f, "\"{}\"", s.replace('"', "\"\""))
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Name(n) => write!(f, "{}", NameFmt(n)),
            Subject::Attr(n) => write!(f, "@{}", NameFmt(n)),
            Subject::Stat(a, s) => write!(f, "{}.{}", NameFmt(a), s.name()),
            Subject::ArrayAttr(a, k) => write!(f, "{}@{}", NameFmt(a), NameFmt(k)),
            // The test goes inside the parentheses; see `Expr`'s display.
            Subject::Cells(_, a) => write!(f, "{}", NameFmt(a)),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |n: bool| if n { "not " } else { "" };
        match self {
            Test::Cmp(op, v) => write!(f, "{} {v}", op.symbol()),
            Test::Between { lo, hi, negated } => {
                write!(f, "{}between {lo} and {hi}", not(*negated))
            }
            Test::In { list, negated } => {
                write!(f, "{}in (", not(*negated))?;
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Test::Within { calendar, negated } => write!(f, "{}in {calendar}", not(*negated)),
            Test::IsNull { negated } => write!(f, "is {}null", not(*negated)),
            Test::Contains { value, negated } => write!(f, "{}contains {value}", not(*negated)),
        }
    }
}

impl fmt::Display for Expr {
    /// Parentheses only where precedence needs them (an `or` inside an `and`,
    /// an `and`/`or` under `not`, a group nested in the same operator), so the
    /// text nests no deeper than the query it was parsed from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Expr], op: &str| -> fmt::Result {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                let wrap = matches!(
                    (op, p),
                    ("or", Expr::Or(_)) | ("and", Expr::And(_) | Expr::Or(_))
                );
                if wrap {
                    write!(f, "({p})")?;
                } else {
                    write!(f, "{p}")?;
                }
            }
            Ok(())
        };
        match self {
            Expr::And(parts) => join(f, parts, "and"),
            Expr::Or(parts) => join(f, parts, "or"),
            Expr::Not(e) if matches!(**e, Expr::And(_) | Expr::Or(_)) => write!(f, "not ({e})"),
            Expr::Not(e) => write!(f, "not {e}"),
            Expr::Has(a) => write!(f, "has({})", NameFmt(a)),
            Expr::Pred(Subject::Cells(q, a), t) => {
                let q = match q {
                    Quantifier::Any => "any",
                    Quantifier::All => "all",
                };
                write!(f, "{q}({} {t})", NameFmt(a))
            }
            Expr::Pred(s, t) => write!(f, "{s} {t}"),
        }
    }
}

impl Expr {
    /// Nesting as the parser counts it (parentheses and `not`) of the
    /// display form; for a parsed query, at most what the parser counted.
    pub(crate) fn nesting(&self) -> usize {
        let grouped = |e: &Expr| usize::from(matches!(e, Expr::And(_) | Expr::Or(_)));
        match self {
            Expr::Or(p) => p
                .iter()
                .map(|e| e.nesting() + usize::from(matches!(e, Expr::Or(_))))
                .max()
                .unwrap_or(0),
            Expr::And(p) => p
                .iter()
                .map(|e| e.nesting() + grouped(e))
                .max()
                .unwrap_or(0),
            Expr::Not(e) => 1 + e.nesting() + grouped(e),
            Expr::Has(_) | Expr::Pred(..) => 0,
        }
    }

    /// Leaves and the largest `in` list.
    pub(crate) fn size(&self) -> (usize, usize) {
        match self {
            Expr::And(p) | Expr::Or(p) => p.iter().fold((0, 0), |(n, l), e| {
                let (n2, l2) = e.size();
                (n + n2, l.max(l2))
            }),
            Expr::Not(e) => e.size(),
            Expr::Pred(_, Test::In { list, .. }) => (1, list.len()),
            Expr::Has(_) | Expr::Pred(..) => (1, 0),
        }
    }

    /// Every name the expression mentions (arrays, attributes, bare names).
    pub(crate) fn names(&self) -> std::collections::HashSet<String> {
        let mut out = std::collections::HashSet::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names(&self, out: &mut std::collections::HashSet<String>) {
        match self {
            Expr::And(p) | Expr::Or(p) => p.iter().for_each(|e| e.collect_names(out)),
            Expr::Not(e) => e.collect_names(out),
            Expr::Has(a) => {
                out.insert(a.clone());
            }
            Expr::Pred(s, _) => match s {
                Subject::Name(n)
                | Subject::Attr(n)
                | Subject::Stat(n, _)
                | Subject::ArrayAttr(n, _)
                | Subject::Cells(_, n) => {
                    out.insert(n.clone());
                }
            },
        }
    }
}
