//! [`QueryResult`] and its [`Explain`].

use std::fmt;

use roaring::RoaringTreemap;
use serde::Serialize;

/// What one term cost and decided.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TermExplain {
    /// The term as written back by the query's display form.
    pub term: String,
    /// Dataset-level rows consulted: for statistic and value terms, the
    /// candidate datasets holding the array (their statistics were fetched;
    /// see docs/query.md on candidates); for `has` and attribute terms, every
    /// dataset holding the name.
    pub rows: u64,
    /// Datasets for which dataset-level statistics proved the term true.
    pub yes: u64,
    /// Datasets they left undecided ("maybe"), for value terms only.
    pub maybe: u64,
    /// Per-chunk statistics entries consulted for undecided datasets.
    pub chunk_rows: u64,
    /// Chunks decoded because their statistics could not decide.
    pub chunks_decoded: u64,
    /// Stored (compressed) bytes of those chunks: the data this term read.
    pub bytes_read: u64,
    /// True when dataset-level statistics decided every dataset.
    pub exact: bool,
    /// Datasets for which the term was finally true (undecided datasets the
    /// expression no longer needed are not counted).
    pub matched: u64,
}

/// How a query was answered: per term, and in total.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Explain {
    /// The query as written back by its display form.
    pub query: String,
    /// The generation of the last commit the handle had seen.
    pub generation: u64,
    /// Datasets the query ran over (the handle's state, pending writes included).
    pub datasets: u64,
    /// Datasets matched.
    pub matches: u64,
    /// One entry per term, in the order they appear in the query.
    pub terms: Vec<TermExplain>,
    /// Wall time of the evaluation, in microseconds (informational).
    pub elapsed_us: u64,
}

impl Explain {
    /// Data bytes read over all terms (statistics are held in memory).
    pub fn bytes_read(&self) -> u64 {
        self.terms.iter().map(|t| t.bytes_read).sum()
    }
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "generation {}   datasets {}   query {}",
            self.generation, self.datasets, self.query
        )?;
        for t in &self.terms {
            write!(
                f,
                "  {:<44} rows {:>8}  yes {:>8}  maybe {:>6}",
                t.term, t.rows, t.yes, t.maybe
            )?;
            if t.exact {
                writeln!(f, "  exact")?;
            } else {
                writeln!(
                    f,
                    "  chunk stats {} → decoded {} chunks, {} B",
                    t.chunk_rows, t.chunks_decoded, t.bytes_read
                )?;
            }
        }
        writeln!(
            f,
            "  → {} datasets; data read {} B; {} µs",
            self.matches,
            self.bytes_read(),
            self.elapsed_us
        )
    }
}

/// The datasets a query matched, in insertion order.
#[derive(Clone, Debug)]
pub struct QueryResult {
    pub(crate) names: Vec<String>,
    pub(crate) ids: RoaringTreemap,
    pub(crate) explain: Explain,
}

impl QueryResult {
    /// The matching dataset names, in insertion order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Consumes the result, returning the names.
    pub fn into_names(self) -> Vec<String> {
        self.names
    }

    /// Number of matches.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when nothing matched.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The matches' dataset ids (see [`crate::Atlas::dataset_id`]): stable,
    /// ascending in insertion order.
    pub fn ids(&self) -> &RoaringTreemap {
        &self.ids
    }

    /// How the query was answered.
    pub fn explain(&self) -> &Explain {
        &self.explain
    }
}

/// The datasets a query matched, by id only: what
/// [`crate::Atlas::query_ids`] returns when the names are not needed (a
/// count, a set operation with another query's ids). Skips resolving names,
/// which reads the registry's id blocks of every run holding a match.
#[derive(Clone, Debug)]
pub struct QueryIds {
    pub(crate) ids: RoaringTreemap,
    pub(crate) explain: Explain,
}

impl QueryIds {
    /// Number of matches.
    pub fn len(&self) -> u64 {
        self.ids.len()
    }

    /// True when nothing matched.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The matches' dataset ids, ascending in insertion order.
    pub fn ids(&self) -> &RoaringTreemap {
        &self.ids
    }

    /// Consumes the result, returning the ids.
    pub fn into_ids(self) -> RoaringTreemap {
        self.ids
    }

    /// How the query was answered.
    pub fn explain(&self) -> &Explain {
        &self.explain
    }
}

impl From<QueryResult> for QueryIds {
    fn from(r: QueryResult) -> QueryIds {
        QueryIds {
            ids: r.ids,
            explain: r.explain,
        }
    }
}
