//! The public history types: what to open, log entries, tags, diffs, GC
//! reports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::registry::{CommitInfo, Manifest};

/// A generation to open or name: by number, by tag, or by time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// Generation `g` (the manifest's commit counter).
    Generation(u64),
    /// The generation a tag names.
    Tag(String),
    /// The newest generation committed at or before this time.
    Time(SystemTime),
}

impl At {
    /// Parses the command-line form: digits are a generation, an ISO-8601
    /// UTC time (`2026-12-02`, `2026-12-02T07:44:07Z`, with optional
    /// fraction) a time, `@<ms>` milliseconds since the Unix epoch, anything
    /// else a tag name.
    pub fn parse(s: &str) -> At {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(g) = s.parse() {
                return At::Generation(g);
            }
        }
        if let Some(ms) = s.strip_prefix('@').and_then(|m| m.parse::<u64>().ok()) {
            return At::Time(UNIX_EPOCH + Duration::from_millis(ms));
        }
        if let Some(t) = super::time::parse_utc(s) {
            return At::Time(t);
        }
        At::Tag(s.to_owned())
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Generation(g) => write!(f, "generation {g}"),
            At::Tag(t) => write!(f, "tag {t:?}"),
            At::Time(t) => write!(f, "time {}", super::time::format_utc(*t)),
        }
    }
}

/// Formats a time as ISO-8601 UTC with milliseconds
/// (`2026-12-02T07:44:07.123Z`), a form [`At::parse`] reads back.
pub fn format_time(t: SystemTime) -> String {
    super::time::format_utc(t)
}

/// The operation a commit performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// The store's creation.
    Create,
    /// `Atlas::flush`.
    Flush,
    /// `Atlas::compact`, or the layer merge after a flush.
    Compact,
    /// `Atlas::tag`.
    Tag,
    /// `Atlas::untag`.
    Untag,
    /// `Atlas::restore`.
    Restore,
    /// `Atlas::gc`.
    Gc,
    /// `Atlas::set_retention`.
    Retention,
}

impl Operation {
    /// The name recorded in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Flush => "flush",
            Operation::Compact => "compact",
            Operation::Tag => "tag",
            Operation::Untag => "untag",
            Operation::Restore => "restore",
            Operation::Gc => "gc",
            Operation::Retention => "retention",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Operation> {
        Some(match s {
            "create" => Operation::Create,
            "flush" => Operation::Flush,
            "compact" => Operation::Compact,
            "tag" => Operation::Tag,
            "untag" => Operation::Untag,
            "restore" => Operation::Restore,
            "gc" => Operation::Gc,
            "retention" => Operation::Retention,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One retained generation, as `Atlas::log` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The generation.
    pub generation: u64,
    /// The generation it replaced (`None`: the first, or written before
    /// history).
    pub parent: Option<u64>,
    /// Commit time (`None`: written before history).
    pub time: Option<SystemTime>,
    /// What the commit did (`None`: written before history).
    pub operation: Option<Operation>,
    /// The user's message.
    pub message: Option<String>,
    /// Datasets created (including re-created under a new id).
    pub n_added: u64,
    /// Datasets whose record changed.
    pub n_changed: u64,
    /// Datasets deleted.
    pub n_deleted: u64,
    /// Bytes of new layer and registry files.
    pub bytes_written: u64,
    /// Live tags naming this generation.
    pub tags: Vec<String>,
    /// Number of datasets.
    pub n_datasets: u64,
}

impl LogEntry {
    pub(crate) fn of(m: &Manifest, current: &Manifest) -> LogEntry {
        let c: Option<&CommitInfo> = m.commit.as_ref();
        LogEntry {
            generation: m.generation,
            parent: m.parent,
            time: c.map(|c| UNIX_EPOCH + Duration::from_millis(c.time_ms)),
            operation: c.and_then(|c| Operation::parse(&c.op)),
            message: c.and_then(|c| c.message.clone()),
            n_added: c.map_or(0, |c| c.added),
            n_changed: c.map_or(0, |c| c.changed),
            n_deleted: c.map_or(0, |c| c.deleted),
            bytes_written: c.map_or(0, |c| c.bytes_written),
            tags: current
                .tags
                .iter()
                .filter(|(_, t)| t.generation == m.generation)
                .map(|(n, _)| n.clone())
                .collect(),
            n_datasets: m.n_datasets,
        }
    }
}

/// A live tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagInfo {
    /// The tag's name.
    pub name: String,
    /// The generation it names.
    pub generation: u64,
    /// When the tag was made.
    pub time: SystemTime,
    /// The user's message.
    pub message: Option<String>,
}

/// Datasets that differ between two generations (names sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the second generation only.
    pub added: Vec<String>,
    /// In both, with a different record (schemas, attributes, array
    /// statistics) or a different id (deleted and re-created).
    pub changed: Vec<String>,
    /// In the first generation only.
    pub deleted: Vec<String>,
}

/// What `Atlas::gc` did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Generations whose history expired.
    pub expired_generations: Vec<u64>,
    /// The oldest generation still readable afterwards.
    pub oldest_retained: u64,
    /// Files deleted (`dir/file`, history copies included).
    pub deleted_files: Vec<String>,
    /// The generation of the commit recording the expiry (`None`: nothing
    /// needed a commit, or a dry run).
    pub commit: Option<u64>,
}
