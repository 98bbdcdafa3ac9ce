//! Importing many files: collecting them from directories, decoding in
//! parallel on worker threads, writing each into the store in a fixed order,
//! and reporting every file's outcome.
//!
//! A file that cannot be read or mapped is reported and skipped; its dataset
//! is never half-written (see [`crate::write_plan`]).
//!
//! The import is committed in batches of about [`BulkOptions::batch_bytes`]
//! of input, so memory stays bounded whatever the number of files: each batch
//! is one commit, in file order. An interrupted import keeps the batches it
//! committed, and running it again skips their datasets (unless `replace`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlas::Atlas;

use crate::error::{Error, Result};
use crate::import::{self, DatasetPlan, ImportOptions};

/// File extensions picked up when walking a directory (case-insensitive).
pub const EXTENSIONS: [&str; 5] = ["nc", "nc3", "nc4", "cdf", "netcdf"];

/// Options of a bulk import.
#[derive(Clone, Debug)]
pub struct BulkOptions {
    /// How each file is mapped.
    pub import: ImportOptions,
    /// Replace datasets that already exist (default: skip their files).
    pub replace: bool,
    /// Decoder threads (0 = one per CPU but one, at least one).
    pub jobs: usize,
    /// Prepended to every dataset name.
    pub prefix: String,
    /// Name of the dataset when exactly one file is imported.
    pub name: Option<String>,
    /// Commit the import (the default); off, the caller flushes and
    /// `batch_bytes` is ignored.
    pub flush: bool,
    /// Commit after each batch of this many bytes of imported files, and at
    /// the end (0: one commit at the end, holding the whole import in
    /// memory or the store's scratch files until then).
    pub batch_bytes: u64,
    /// Parses each file's bytes: [`crate::read_bytes`] by default (NetCDF-4
    /// too with the feature `netcdf4`), or [`crate::read_bytes_classic`] for
    /// a program that must not link libnetcdf (the `atlas` tool: see
    /// [`crate::Reader`]).
    pub reader: crate::Reader,
}

/// The default [`BulkOptions::batch_bytes`]: 16 MiB of input per commit.
pub const DEFAULT_BATCH_BYTES: u64 = 16 << 20;

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            import: ImportOptions::default(),
            replace: false,
            jobs: 0,
            prefix: String::new(),
            name: None,
            flush: true,
            batch_bytes: DEFAULT_BATCH_BYTES,
            reader: crate::read_bytes,
        }
    }
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileOutcome {
    /// Imported as this dataset.
    Imported {
        /// Dataset name.
        dataset: String,
        /// Size of the file.
        bytes: u64,
    },
    /// Not imported: the dataset already exists (and `replace` is off).
    Skipped {
        /// Dataset name.
        dataset: String,
    },
    /// Not imported: why.
    Failed(Error),
}

/// The outcome of a bulk import.
#[derive(Debug, Default)]
pub struct BulkReport {
    /// Every file and its outcome, in import order (sorted paths).
    pub files: Vec<(PathBuf, FileOutcome)>,
    /// Files imported.
    pub imported: usize,
    /// Files skipped because their dataset exists.
    pub skipped: usize,
    /// Files that failed.
    pub failed: usize,
    /// Bytes of the imported files.
    pub bytes_in: u64,
    /// Commits made (one per batch).
    pub commits: usize,
    /// Wall time, flush included.
    pub elapsed: Duration,
}

impl BulkReport {
    /// The failures, with their reasons.
    pub fn failures(&self) -> impl Iterator<Item = (&Path, &Error)> {
        self.files.iter().filter_map(|(p, o)| match o {
            FileOutcome::Failed(e) => Some((p.as_path(), e)),
            _ => None,
        })
    }
}

fn has_nc_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&p, out)?;
        } else if has_nc_extension(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// The files to import: each file argument as given, and the NetCDF files
/// (by extension, see [`EXTENSIONS`]) under each directory, recursively, in
/// sorted order. A path that does not exist is an error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let io = |source| Error::Io {
            path: p.clone(),
            source,
        };
        let meta = std::fs::metadata(p).map_err(io)?;
        if meta.is_dir() {
            walk(p, &mut out).map_err(io)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

type Decoded = (usize, u64, Result<DatasetPlan>);

fn decode(
    path: &Path,
    name: &str,
    opts: &ImportOptions,
    reader: crate::Reader,
) -> (u64, Result<DatasetPlan>) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(source) => {
            return (
                0,
                Err(Error::Io {
                    path: path.to_owned(),
                    source,
                }),
            )
        }
    };
    let len = bytes.len() as u64;
    // The decoder is ours and written not to panic; a panic would still be a
    // bug, so it is reported as this file's failure instead of ending the import.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let nc = reader(&bytes, path)?;
        import::plan(&nc, name, opts, path)
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Malformed {
            path: path.to_owned(),
            offset: 0,
            reason: format!("internal decoder error: {msg}"),
        })
    });
    (len, r)
}

/// Imports files and directories into `store`. `on_file` is called once per
/// file, in order, as soon as its outcome is known (for progress bars).
///
/// Errors only when the paths cannot be listed or a commit fails (the
/// batches committed before it stay committed); a file that fails is
/// reported in [`BulkReport::files`] and skipped.
pub async fn import_paths(
    store: &Atlas,
    paths: &[PathBuf],
    opts: &BulkOptions,
    mut on_file: impl FnMut(&Path, &FileOutcome),
) -> Result<BulkReport> {
    let t0 = Instant::now();
    let files = collect_files(paths)?;
    let mut report = BulkReport::default();
    if opts.name.is_some() && files.len() != 1 {
        return Err(Error::Mapping {
            path: paths.first().cloned().unwrap_or_default(),
            reason: format!(
                "a dataset name can only be given for one file, not {}",
                files.len()
            ),
        });
    }

    // Names first: duplicates and existing datasets are known before decoding.
    let mut outcomes: Vec<Option<FileOutcome>> = Vec::with_capacity(files.len());
    let mut names = Vec::with_capacity(files.len());
    let mut seen = std::collections::HashMap::new();
    for (i, f) in files.iter().enumerate() {
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => format!("{}{}", opts.prefix, crate::default_dataset_name(f)),
        };
        let outcome = if let Some(&j) = seen.get(&name) {
            let first: &PathBuf = &files[j];
            Some(FileOutcome::Failed(Error::Mapping {
                path: f.clone(),
                reason: format!(
                    "dataset name {name:?} is already taken by {} in this import",
                    first.display()
                ),
            }))
        } else if store.dataset_exists(&name)? && !opts.replace {
            Some(FileOutcome::Skipped {
                dataset: name.clone(),
            })
        } else {
            None
        };
        seen.entry(name.clone()).or_insert(i);
        names.push(name);
        outcomes.push(outcome);
    }
    let todo: Vec<usize> = (0..files.len())
        .filter(|&i| outcomes[i].is_none())
        .collect();

    // Decoder threads take files in order and send plans back; the writer
    // below restores the order, so datasets appear in sorted-path order.
    let jobs = if opts.jobs == 0 {
        // The writer (this task) is busy too: leave it a core.
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1))
    } else {
        opts.jobs
    }
    .clamp(1, todo.len().max(1));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Decoded>(2 * jobs + 2);
    let reader = opts.reader;
    let shared = Arc::new((
        files.clone(),
        names.clone(),
        todo.clone(),
        opts.import.clone(),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let (shared, next, stop, tx) = (
            Arc::clone(&shared),
            Arc::clone(&next),
            Arc::clone(&stop),
            tx.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let (files, names, todo, iopts) = &*shared;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= todo.len() || stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = todo[k];
                let (len, r) = decode(&files[i], &names[i], iopts, reader);
                if tx.blocking_send((k, len, r)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);

    let mut pending: BTreeMap<usize, (u64, Result<DatasetPlan>)> = BTreeMap::new();
    let mut shared = import::SharedAttrs::default();
    // Bytes of the files written since the last commit.
    let mut batch = 0u64;
    let mut emitted = 0; // index into `files` of the next outcome to report
    let mut written = 0; // index into `todo` of the next plan to write
    let mut emit = |upto: usize,
                    outcomes: &mut Vec<Option<FileOutcome>>,
                    report: &mut BulkReport,
                    emitted: &mut usize| {
        while *emitted < upto {
            let o = outcomes[*emitted]
                .take()
                .expect("outcome decided before it is reported");
            on_file(&files[*emitted], &o);
            match &o {
                FileOutcome::Imported { bytes, .. } => {
                    report.imported += 1;
                    report.bytes_in += bytes;
                }
                FileOutcome::Skipped { .. } => report.skipped += 1,
                FileOutcome::Failed(_) => report.failed += 1,
            }
            report.files.push((files[*emitted].clone(), o));
            *emitted += 1;
        }
    };
    while written < todo.len() {
        let Some((k, len, r)) = rx.recv().await else {
            break;
        };
        pending.insert(k, (len, r));
        while let Some((len, r)) = pending.remove(&written) {
            let i = todo[written];
            let outcome = match r {
                Err(e) => FileOutcome::Failed(e),
                Ok(plan) => {
                    match replace_and_write(store, &plan, opts.replace, &mut shared).await {
                        Ok(()) => FileOutcome::Imported {
                            dataset: plan.name,
                            bytes: len,
                        },
                        Err(e) => FileOutcome::Failed(e),
                    }
                }
            };
            if matches!(outcome, FileOutcome::Imported { .. }) {
                batch += len;
            }
            outcomes[i] = Some(outcome);
            written += 1;
            if opts.flush && opts.batch_bytes > 0 && batch >= opts.batch_bytes {
                if let Err(e) = store.flush().await {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.into());
                }
                report.commits += 1;
                batch = 0;
            }
            // Report everything up to the next file still being decoded.
            let upto = todo.get(written).copied().unwrap_or(files.len());
            emit(upto, &mut outcomes, &mut report, &mut emitted);
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    for w in workers {
        let _ = w.join();
    }
    // Only if a decoder thread died outside its panic guard.
    for o in &mut outcomes {
        if o.is_none() && emitted < files.len() {
            *o = Some(FileOutcome::Failed(Error::Malformed {
                path: PathBuf::new(),
                offset: 0,
                reason: "internal error: the decoder thread stopped".into(),
            }));
        }
    }
    emit(files.len(), &mut outcomes, &mut report, &mut emitted);
    if opts.flush && batch > 0 {
        store.flush().await?;
        report.commits += 1;
    }
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// Writes a plan, first deleting an existing dataset of the same name when
/// replacing.
async fn replace_and_write(
    store: &Atlas,
    plan: &DatasetPlan,
    replace: bool,
    shared: &mut import::SharedAttrs,
) -> Result<()> {
    if replace && store.dataset_exists(&plan.name)? {
        store.delete_dataset(&plan.name).await?;
    }
    import::write_plan_shared(store, plan, shared).await
}
