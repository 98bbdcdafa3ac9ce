//! The builder: Rust calls that produce the same [`Query`] the parser does.
//!
//! ```
//! use atlas_core::query::{col, has, Query};
//!
//! let built = col("TEMP").max().gt(30.0)
//!     .and(col("LATITUDE").between(-10.0, 10.0))
//!     .and(col("JULD").in_year(2020))
//!     .and(has("DOXY").not());
//! let parsed = Query::parse(
//!     "TEMP.max > 30.0 and LATITUDE between -10.0 and 10.0 and JULD in 2020 and not has(DOXY)",
//! )?;
//! assert_eq!(built, parsed);
//! # Ok::<(), atlas_core::query::Error>(())
//! ```

use super::ast::{CmpOp, Expr, Literal, Quantifier, Stat, Subject, Test};
use super::time::Calendar;
use super::Query;

/// A bare name: an array's cells (tested as `any`) when some dataset has an
/// array of that name, else a dataset attribute. Also the start of
/// `col("TEMP").max()` and `col("TEMP").attr("units")`.
pub fn col(name: impl Into<String>) -> Column {
    Column(name.into())
}

/// A dataset attribute (`@name`), even where an array has the same name.
pub fn attr(name: impl Into<String>) -> Operand {
    Operand(Subject::Attr(name.into()))
}

/// `any(ARRAY …)`: some non-null cell of the array passes the test.
pub fn any(array: impl Into<String>) -> Cells {
    Cells(Quantifier::Any, array.into())
}

/// `all(ARRAY …)`: every non-null cell passes (true when there is none).
pub fn all(array: impl Into<String>) -> Cells {
    Cells(Quantifier::All, array.into())
}

/// `has(ARRAY)`: the dataset has the array.
pub fn has(array: impl Into<String>) -> Query {
    Query {
        expr: Expr::Has(array.into()),
    }
}

/// A bare name; see [`col`].
#[derive(Clone, Debug)]
pub struct Column(String);

/// A statistic, attribute or bare name to test.
#[derive(Clone, Debug)]
pub struct Operand(Subject);

/// The cells of an array under a quantifier; see [`any`] and [`all`].
#[derive(Clone, Debug)]
pub struct Cells(Quantifier, String);

impl Column {
    fn stat(self, s: Stat) -> Operand {
        Operand(Subject::Stat(self.0, s))
    }
    /// `ARRAY.min`: the smallest non-null cell.
    pub fn min(self) -> Operand {
        self.stat(Stat::Min)
    }
    /// `ARRAY.max`: the largest non-null cell.
    pub fn max(self) -> Operand {
        self.stat(Stat::Max)
    }
    /// `ARRAY.nulls`: null cells (fill value, NaN, never written).
    pub fn nulls(self) -> Operand {
        self.stat(Stat::Nulls)
    }
    /// `ARRAY.cells`: all cells.
    pub fn cells(self) -> Operand {
        self.stat(Stat::Cells)
    }
    /// `ARRAY.valid`: non-null cells.
    pub fn valid(self) -> Operand {
        self.stat(Stat::Valid)
    }
    /// `ARRAY@key`: a per-array attribute.
    pub fn attr(self, key: impl Into<String>) -> Operand {
        Operand(Subject::ArrayAttr(self.0, key.into()))
    }
    fn test(self, t: Test) -> Query {
        Operand(Subject::Name(self.0)).test(t)
    }
}

impl Operand {
    fn test(self, t: Test) -> Query {
        Query {
            expr: Expr::Pred(self.0, t),
        }
    }
}

impl Cells {
    fn test(self, t: Test) -> Query {
        Query {
            expr: Expr::Pred(Subject::Cells(self.0, self.1), t),
        }
    }
}

macro_rules! comparisons {
    ($t:ty) => {
        impl $t {
            /// `= v`.
            pub fn eq(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Cmp(CmpOp::Eq, v.into()))
            }
            /// `!= v`.
            pub fn ne(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Cmp(CmpOp::Ne, v.into()))
            }
            /// `< v`.
            pub fn lt(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Cmp(CmpOp::Lt, v.into()))
            }
            /// `<= v`.
            pub fn le(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Cmp(CmpOp::Le, v.into()))
            }
            /// `> v`.
            pub fn gt(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Cmp(CmpOp::Gt, v.into()))
            }
            /// `>= v`.
            pub fn ge(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Cmp(CmpOp::Ge, v.into()))
            }
            /// `between lo and hi` (both included).
            pub fn between(self, lo: impl Into<Literal>, hi: impl Into<Literal>) -> Query {
                self.test(Test::Between {
                    lo: lo.into(),
                    hi: hi.into(),
                    negated: false,
                })
            }
            /// `not between lo and hi`.
            pub fn not_between(self, lo: impl Into<Literal>, hi: impl Into<Literal>) -> Query {
                self.test(Test::Between {
                    lo: lo.into(),
                    hi: hi.into(),
                    negated: true,
                })
            }
            /// `in (v, …)`.
            pub fn is_in<L: Into<Literal>>(self, list: impl IntoIterator<Item = L>) -> Query {
                self.test(Test::In {
                    list: list.into_iter().map(Into::into).collect(),
                    negated: false,
                })
            }
            /// `not in (v, …)`.
            pub fn not_in<L: Into<Literal>>(self, list: impl IntoIterator<Item = L>) -> Query {
                self.test(Test::In {
                    list: list.into_iter().map(Into::into).collect(),
                    negated: true,
                })
            }
            /// `in YEAR`: `[YEAR-01-01, YEAR+1-01-01)`; a year outside
            /// 1–9999 is an error when the query runs.
            pub fn in_year(self, year: i32) -> Query {
                self.within(Calendar {
                    year,
                    month: None,
                    day: None,
                })
            }
            /// `in YEAR-MM`: the half-open month.
            pub fn in_month(self, year: i32, month: u32) -> Query {
                self.within(Calendar {
                    year,
                    month: Some(month),
                    day: None,
                })
            }
            /// `in YEAR-MM-DD`: the half-open day.
            pub fn in_day(self, year: i32, month: u32, day: u32) -> Query {
                self.within(Calendar {
                    year,
                    month: Some(month),
                    day: Some(day),
                })
            }
            fn within(self, calendar: Calendar) -> Query {
                // Checked when the query is bound: a day or month that does
                // not exist is an error there, as it is in the parser.
                self.test(Test::Within {
                    calendar,
                    negated: false,
                })
            }
        }
    };
}

comparisons!(Column);
comparisons!(Operand);
comparisons!(Cells);

macro_rules! null_tests {
    ($t:ty) => {
        impl $t {
            /// `is null`: the value is absent (no such attribute or array,
            /// or a statistic that is undefined).
            pub fn is_null(self) -> Query {
                self.test(Test::IsNull { negated: false })
            }
            /// `is not null`.
            pub fn is_not_null(self) -> Query {
                self.test(Test::IsNull { negated: true })
            }
            /// `contains v`: a list attribute holds `v`.
            pub fn contains(self, v: impl Into<Literal>) -> Query {
                self.test(Test::Contains {
                    value: v.into(),
                    negated: false,
                })
            }
        }
    };
}

null_tests!(Column);
null_tests!(Operand);
