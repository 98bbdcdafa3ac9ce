//! History commands: `log`, `tag`, `tags`, `untag`, `diff`, `restore`, `gc`,
//! and the global `--at` that opens every read command on a past generation.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use atlas::{format_time, At, Atlas, LogEntry};
use serde_json::json;

use crate::{output, util};

/// The `--at` argument, set once by `main` before any command runs.
static AT: OnceLock<Option<String>> = OnceLock::new();

/// Records the `--at` argument for [`open`].
pub fn set_at(at: Option<String>) {
    let _ = AT.set(at);
}

/// The `--at` argument, if given.
pub fn at() -> Option<At> {
    AT.get().and_then(Option::as_deref).map(At::parse)
}

/// Opens the store: at the `--at` generation (read-only) when given.
pub async fn open(store: &Path) -> Result<Atlas> {
    let location = util::location(store);
    match at() {
        Some(at) => Atlas::open_at(&location, at.clone())
            .await
            .with_context(|| format!("cannot open store {} at {at}", store.display())),
        None => Atlas::open(&location)
            .await
            .with_context(|| format!("cannot open store {}", store.display())),
    }
}

/// Opens the current state for a command that writes (refusing `--at`).
async fn open_current(store: &Path, what: &str) -> Result<Atlas> {
    if at().is_some() {
        anyhow::bail!("`atlas {what}` works on the current state; --at does not apply");
    }
    Atlas::open(&util::location(store))
        .await
        .with_context(|| format!("cannot open store {}", store.display()))
}

fn entry_json(e: &LogEntry) -> serde_json::Value {
    json!({
        "generation": e.generation,
        "parent": e.parent,
        "time": e.time.map(format_time),
        "operation": e.operation.map(atlas::Operation::as_str),
        "message": e.message,
        "added": e.n_added,
        "changed": e.n_changed,
        "deleted": e.n_deleted,
        "bytes_written": e.bytes_written,
        "datasets": e.n_datasets,
        "tags": e.tags,
    })
}

/// `atlas log STORE [-n N] [--json]`: retained generations, newest first.
pub async fn log(store: &Path, n: usize, json: bool) -> Result<ExitCode> {
    let atlas = open_current(store, "log").await?;
    let entries = atlas.log(n).await.context("cannot read the history")?;
    let mut out = BufWriter::new(output::stdout());
    if json {
        let v: Vec<_> = entries.iter().map(entry_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for e in &entries {
            let time = e.time.map_or_else(|| "-".to_owned(), format_time);
            let op = e.operation.map_or("-", |o| o.as_str());
            let tags = if e.tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", e.tags.join(", "))
            };
            write!(
                out,
                "{:>6}  {time}  {op:<9} +{} ~{} -{} {}  {} datasets{tags}",
                e.generation,
                e.n_added,
                e.n_changed,
                e.n_deleted,
                util::bytes(e.bytes_written),
                e.n_datasets
            )?;
            if let Some(m) = &e.message {
                write!(out, "  {m}")?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `atlas tag STORE NAME [--at …] [-m MSG]`.
pub async fn tag(store: &Path, name: &str, message: Option<&str>) -> Result<ExitCode> {
    let atlas = Atlas::open(&util::location(store))
        .await
        .with_context(|| format!("cannot open store {}", store.display()))?;
    let target = at().unwrap_or(At::Generation(atlas.generation()));
    let g = atlas
        .tag(name, target, message)
        .await
        .with_context(|| format!("cannot tag {name:?}"))?;
    say!("tagged generation {g} as {name:?}");
    Ok(ExitCode::SUCCESS)
}

/// `atlas tags STORE [--json]`.
pub async fn tags(store: &Path, json: bool) -> Result<ExitCode> {
    let atlas = open(store).await?;
    let tags = atlas.tags();
    let mut out = BufWriter::new(output::stdout());
    if json {
        let v: Vec<_> = tags
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "generation": t.generation,
                    "time": format_time(t.time),
                    "message": t.message,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for t in &tags {
            write!(out, "{}\t{}\t{}", t.name, t.generation, format_time(t.time))?;
            if let Some(m) = &t.message {
                write!(out, "\t{m}")?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `atlas untag STORE NAME`.
pub async fn untag(store: &Path, name: &str) -> Result<ExitCode> {
    let atlas = open_current(store, "untag").await?;
    atlas
        .untag(name)
        .await
        .with_context(|| format!("cannot delete tag {name:?}"))?;
    say!("deleted tag {name:?} (the name is not reused)");
    Ok(ExitCode::SUCCESS)
}

/// `atlas diff STORE A B [--json]`.
pub async fn diff(store: &Path, a: &str, b: &str, json: bool) -> Result<ExitCode> {
    let atlas = open_current(store, "diff").await?;
    let d = atlas
        .diff(At::parse(a), At::parse(b))
        .await
        .with_context(|| format!("cannot compare {a} and {b}"))?;
    let mut out = BufWriter::new(output::stdout());
    if json {
        let v = json!({ "added": d.added, "changed": d.changed, "deleted": d.deleted });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for (sign, names) in [("+", &d.added), ("~", &d.changed), ("-", &d.deleted)] {
            for n in names {
                writeln!(out, "{sign} {n}")?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `atlas restore STORE --to … [-m MSG]`.
pub async fn restore(store: &Path, to: &str, message: Option<&str>) -> Result<ExitCode> {
    let atlas = open_current(store, "restore").await?;
    let g = atlas
        .restore(At::parse(to), message)
        .await
        .with_context(|| format!("cannot restore {to}"))?;
    say!("restored {} as generation {g}", At::parse(to));
    Ok(ExitCode::SUCCESS)
}

/// `atlas gc STORE [--dry-run] [--keep N] [--keep-secs T]`.
pub async fn gc(
    store: &Path,
    dry_run: bool,
    keep: Option<u64>,
    keep_secs: Option<u64>,
) -> Result<ExitCode> {
    let atlas = open_current(store, "gc").await?;
    if keep.is_some() || keep_secs.is_some() {
        anyhow::ensure!(!dry_run, "--dry-run cannot change the retention");
        let p = atlas.policy();
        atlas
            .set_retention(
                keep.unwrap_or(p.keep_generations),
                keep_secs.unwrap_or(p.keep_secs),
            )
            .await
            .context("cannot set the retention")?;
    }
    let r = atlas
        .gc(dry_run)
        .await
        .context("garbage collection failed")?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    let mut out = BufWriter::new(output::stdout());
    for f in &r.deleted_files {
        writeln!(out, "{verb} {f}")?;
    }
    writeln!(
        out,
        "{} {} generation(s), {verb} {} file(s); oldest retained: {}",
        if dry_run { "would expire" } else { "expired" },
        r.expired_generations.len(),
        r.deleted_files.len(),
        r.oldest_retained
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
