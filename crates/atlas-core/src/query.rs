//! Queries over stored statistics and attributes: find the datasets that
//! match without reading their data, or reading only the chunks statistics
//! cannot decide.
//!
//! ```
//! use atlas_core::query::{col, Query};
//!
//! let q = Query::parse("TEMP.max > 30 and LATITUDE between -10 and 10 and JULD in 2020")?;
//! assert_eq!(
//!     q.to_string(),
//!     "TEMP.max > 30 and LATITUDE between -10 and 10 and JULD in 2020"
//! );
//! let e = Query::parse("TEMP.max >").unwrap_err();
//! assert_eq!(e.to_string(), "column 11: expected a literal (number, 'string', true/false, timestamp), found the end of the query");
//! # Ok::<(), atlas_core::query::Error>(())
//! ```
//!
//! Run one with [`crate::Atlas::query`]; the language, its semantics and the
//! evaluation are described in `docs/query.md`.
//!
//! A query is evaluated in three values per dataset (no, yes, maybe): first
//! from dataset-level statistics, then per-chunk statistics for datasets the
//! whole expression leaves undecided, then by decoding only the chunks still
//! undecided. Statistics come through an internal seam (`source.rs`),
//! answered by the registry's columnar catalog: a query reads only the
//! columns of the names it references, never every dataset's record.

mod ast;
mod bind;
mod builder;
mod error;
mod eval;
mod parser;
mod result;
pub(crate) mod source;
mod time;
pub(crate) mod value;

use std::fmt;
use std::str::FromStr;

pub use ast::{CmpOp, Literal, Quantifier, Stat};
pub use builder::{all, any, attr, col, has, Cells, Column, Operand};
pub use error::Error;
pub use result::{Explain, QueryIds, QueryResult, TermExplain};
pub use time::Calendar;

/// Deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 64;
/// Longest `in (…)` list.
pub const MAX_IN_LIST: usize = 4096;
/// Most terms (comparisons, `has`, …) in one query.
pub const MAX_TERMS: usize = 1024;
/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// A parsed or built query. Parsing and building give equal queries, and the
/// display form parses back to an equal query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub(crate) expr: ast::Expr,
}

impl Query {
    /// Parses a query; the error points at the column of the offending token.
    pub fn parse(text: &str) -> Result<Query, Error> {
        parser::parse(text).map(|expr| Query { expr })
    }

    /// Both this and `other`.
    #[must_use]
    pub fn and(self, other: Query) -> Query {
        Query {
            expr: match self.expr {
                ast::Expr::And(mut parts) => {
                    parts.push(other.expr);
                    ast::Expr::And(parts)
                }
                e => ast::Expr::And(vec![e, other.expr]),
            },
        }
    }

    /// This or `other`.
    #[must_use]
    pub fn or(self, other: Query) -> Query {
        Query {
            expr: match self.expr {
                ast::Expr::Or(mut parts) => {
                    parts.push(other.expr);
                    ast::Expr::Or(parts)
                }
                e => ast::Expr::Or(vec![e, other.expr]),
            },
        }
    }

    /// Not this.
    #[must_use]
    #[allow(clippy::should_implement_trait)] // also `impl Not`; the method reads better in chains
    pub fn not(self) -> Query {
        Query {
            expr: ast::Expr::Not(Box::new(self.expr)),
        }
    }

    /// Checks the limits a parsed query meets by construction (built queries
    /// can exceed them).
    pub(crate) fn check_limits(&self) -> Result<(), Error> {
        if self.expr.nesting() > MAX_DEPTH {
            return Err(Error::TooDeep {
                column: 0,
                limit: MAX_DEPTH,
            });
        }
        let (terms, longest) = self.expr.size();
        if terms > MAX_TERMS {
            return Err(Error::TooLarge {
                column: 0,
                what: "the number of terms",
                limit: MAX_TERMS,
            });
        }
        if longest > MAX_IN_LIST {
            return Err(Error::TooLarge {
                column: 0,
                what: "the `in` list",
                limit: MAX_IN_LIST,
            });
        }
        Ok(())
    }
}

impl std::ops::Not for Query {
    type Output = Query;
    fn not(self) -> Query {
        Query::not(self)
    }
}

impl FromStr for Query {
    type Err = Error;
    fn from_str(s: &str) -> Result<Query, Error> {
        Query::parse(s)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)
    }
}

/// Runs a query against a source of statistics (the store's, today); with
/// `with_names`, also resolves the matches' names (the result's `names` is empty
/// otherwise).
pub(crate) fn run(
    query: &Query,
    stats: &dyn source::StatsSource,
    chunks: &dyn source::ChunkSource,
    generation: u64,
    with_names: bool,
) -> crate::Result<QueryResult> {
    let started = std::time::Instant::now();
    query.check_limits()?;
    let bound = bind::bind(&query.expr, stats)?;
    let outcome = eval::evaluate(&bound, stats, chunks)?;
    let names = if with_names {
        stats.names(&outcome.matches)?
    } else {
        Vec::new()
    };
    let explain = Explain {
        query: query.to_string(),
        generation,
        datasets: stats.universe().len(),
        matches: outcome.matches.len(),
        terms: outcome.terms,
        elapsed_us: started.elapsed().as_micros() as u64,
    };
    Ok(QueryResult {
        names,
        ids: outcome.matches,
        explain,
    })
}

#[cfg(test)]
mod tests;
