//! `atlas query` and the `--where` filter of `atlas stats`.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use atlas::query::{Query, QueryIds, QueryResult};
use atlas::{Atlas, DType};
use serde_json::{json, Value};

use crate::cells::{to_json, to_text, with_dtype};
use crate::{output, show};

/// What `atlas query` prints.
pub struct Options {
    /// Only the number of matches (nothing is read).
    pub count: bool,
    /// JSON instead of text.
    pub json: bool,
    /// How each term was decided.
    pub explain: bool,
    /// Arrays to read from every match.
    pub read: Vec<String>,
}

/// A query error on stderr, with a caret under the column when there is one.
fn report(expr: &str, e: &atlas::Error) {
    eprintln!("error: {e}");
    if let atlas::Error::Query(
        atlas::query::Error::Parse { column, .. }
        | atlas::query::Error::TooDeep { column, .. }
        | atlas::query::Error::TooLarge { column, .. },
    ) = e
    {
        if *column > 0 && !expr.contains('\n') {
            eprintln!("  {expr}");
            eprintln!("  {}^", " ".repeat(column - 1));
        }
    }
}

/// Parses and runs a query, naming the matches; `Err(code)` after reporting
/// a bad query (exit 2: bad usage, like any other invalid argument).
pub async fn matches(atlas: &Atlas, expr: &str) -> Result<Result<QueryResult, ExitCode>> {
    let Some(q) = parse(expr) else {
        return Ok(Err(ExitCode::from(2)));
    };
    checked(expr, atlas.query(&q).await)
}

/// Like [`matches()`], ids only (a count needs no names).
async fn matching_ids(atlas: &Atlas, expr: &str) -> Result<Result<QueryIds, ExitCode>> {
    let Some(q) = parse(expr) else {
        return Ok(Err(ExitCode::from(2)));
    };
    checked(expr, atlas.query_ids(&q).await)
}

/// The query, or `None` after reporting the parse error.
fn parse(expr: &str) -> Option<Query> {
    Query::parse(expr).map_err(|e| report(expr, &e.into())).ok()
}

/// A bad query is reported and exit 2; other errors propagate.
fn checked<T>(expr: &str, r: atlas::Result<T>) -> Result<Result<T, ExitCode>> {
    match r {
        Ok(r) => Ok(Ok(r)),
        Err(e) if e.kind() == atlas::ErrorKind::InvalidInput => {
            report(expr, &e);
            Ok(Err(ExitCode::from(2)))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn query(store: &Path, expr: &str, opts: Options) -> Result<ExitCode> {
    let atlas = show::open(store).await?;
    if opts.count {
        let r = match matching_ids(&atlas, expr).await? {
            Ok(r) => r,
            Err(code) => return Ok(code),
        };
        let mut out = BufWriter::new(output::stdout());
        if opts.json {
            let mut v = json!({ "query": r.explain().query, "count": r.len() });
            if opts.explain {
                v["explain"] = serde_json::to_value(r.explain())?;
            }
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", r.len())?;
            if opts.explain {
                write!(out, "{}", r.explain())?;
            }
        }
        out.flush()?;
        // As below: the process ends; the OS frees the handle.
        std::mem::forget(atlas);
        return Ok(ExitCode::SUCCESS);
    }
    let r = match matches(&atlas, expr).await? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let reads = read_matches(&atlas, r.names(), &opts.read).await?;
    let mut out = BufWriter::new(output::stdout());
    if opts.json {
        let mut v = json!({ "query": r.explain().query, "count": r.len() });
        v["datasets"] = if opts.read.is_empty() {
            json!(r.names())
        } else {
            Value::Array(
                r.names()
                    .iter()
                    .map(|n| {
                        let arrays: serde_json::Map<String, Value> = reads
                            .get(n.as_str())
                            .map(|m| m.iter().map(|(a, (j, _))| (a.clone(), j.clone())).collect())
                            .unwrap_or_default();
                        json!({ "name": n, "arrays": arrays })
                    })
                    .collect(),
            )
        };
        if opts.explain {
            v["explain"] = serde_json::to_value(r.explain())?;
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        for n in r.names() {
            match reads.get(n.as_str()) {
                None => writeln!(out, "{n}")?,
                Some(arrays) => {
                    for (a, (_, text)) in arrays {
                        writeln!(out, "{n} {a} {text}")?;
                    }
                }
            }
        }
        if opts.explain {
            write!(out, "{}", r.explain())?;
        }
    }
    out.flush()?;
    // The process ends right after this read-only command: freeing the
    // handle's decoded catalog columns and caches (an eighth of a cold
    // `atlas query` at 1,000,000 datasets, profiled) is left to the OS.
    std::mem::forget(atlas);
    Ok(ExitCode::SUCCESS)
}

/// Values read per dataset and array: (JSON, text).
type Reads = BTreeMap<String, BTreeMap<String, (Value, String)>>;

/// Reads each array from the matches that have it, one cross-dataset read
/// per array and dtype.
async fn read_matches(atlas: &Atlas, names: &[String], arrays: &[String]) -> Result<Reads> {
    let mut out = Reads::new();
    let known = atlas.list_arrays();
    for array in arrays {
        if !known.contains(array) {
            anyhow::bail!("--read: no dataset has an array {array:?}");
        }
        let mut by_dtype: BTreeMap<&'static str, (DType, Vec<&str>)> = BTreeMap::new();
        for n in names {
            let Some(schema) = atlas
                .dataset_meta(n)?
                .and_then(|m| m.arrays.get(array).map(|e| e.schema.dtype))
            else {
                continue;
            };
            by_dtype
                .entry(schema.name())
                .or_insert_with(|| (schema, Vec::new()))
                .1
                .push(n);
        }
        for (dtype, group) in by_dtype.into_values() {
            with_dtype!(dtype, T => {
                let got = atlas.read_array_across::<T>(array, &group, vec![], vec![]).await?;
                for (n, a) in group.iter().zip(got) {
                    if let Some(a) = a {
                        out.entry((*n).to_owned())
                            .or_default()
                            .insert(array.clone(), (to_json(&a), to_text(&a)));
                    }
                }
            });
        }
    }
    Ok(out)
}
