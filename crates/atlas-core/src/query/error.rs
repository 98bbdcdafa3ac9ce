//! [`Error`]: everything that can be wrong with a query, before any data is read.

use array_format::ErrorKind;

/// A query that cannot run: it does not parse, exceeds a limit, names something
/// the store does not have, or compares values of different types. Every
/// variant is [`ErrorKind::InvalidInput`]: the caller fixes the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a query; `column` (1-based, in characters) points at the
    /// offending token.
    #[error("column {column}: {message}")]
    Parse {
        /// 1-based column of the offending token, in characters.
        column: usize,
        /// What was expected or found.
        message: String,
    },
    /// Parentheses and `not` nest deeper than [`super::MAX_DEPTH`].
    #[error("column {column}: the expression nests deeper than {limit} levels")]
    TooDeep {
        /// 1-based column where the limit was crossed (0 for built queries).
        column: usize,
        /// The limit.
        limit: usize,
    },
    /// An `in (…)` list longer than [`super::MAX_IN_LIST`], or an expression
    /// with more than [`super::MAX_TERMS`] terms.
    #[error("column {column}: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// 1-based column of the list or term (0 for built queries).
        column: usize,
        /// What is too large.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A name that no dataset of the store has.
    #[error("{}", unknown_message(.kind, .name, .suggestions))]
    UnknownName {
        /// `"array"`, `"attribute"`, `"array or attribute"`, or
        /// `"attribute of <array>"`.
        kind: String,
        /// The name as written.
        name: String,
        /// Names the store does have that are close to it, closest first.
        suggestions: Vec<String>,
    },
    /// A comparison between values of different types (a string literal
    /// against a number array, a timestamp against a number without CF time
    /// units, `contains` on a scalar…). Never silently false.
    #[error("{term}: {message}")]
    TypeMismatch {
        /// The term, as written back by the query's display form.
        term: String,
        /// What does not fit, naming the dataset where it was found.
        message: String,
    },
}

impl Error {
    /// Always [`ErrorKind::InvalidInput`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

fn unknown_message(kind: &str, name: &str, suggestions: &[String]) -> String {
    let mut s = format!("no dataset has an {kind} named {name:?}");
    if !suggestions.is_empty() {
        let q: Vec<String> = suggestions.iter().map(|x| format!("{x:?}")).collect();
        s.push_str("; did you mean ");
        s.push_str(&q.join(", "));
        s.push('?');
    }
    s
}

/// Up to 3 of `candidates` within a small edit distance of `name` (or sharing
/// its letters but for case), closest first.
pub(crate) fn close_matches<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let lower = name.to_lowercase();
    let max = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, String)> = candidates
        .into_iter()
        .filter_map(|c| {
            let d = if c.to_lowercase() == lower {
                0
            } else {
                levenshtein(&lower, &c.to_lowercase())
            };
            (d <= max).then(|| (d, c.to_owned()))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_matches_rank_by_distance_and_ignore_case() {
        let c = ["TEMP", "TEMP_QC", "PSAL", "temp", "PRES"];
        assert_eq!(close_matches("TEPM", c), vec!["TEMP", "temp"]);
        assert_eq!(close_matches("Temp", c)[..2], ["TEMP", "temp"]);
        assert!(close_matches("LONGITUDE", c).is_empty());
    }
}
