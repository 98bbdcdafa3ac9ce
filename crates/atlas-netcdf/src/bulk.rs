//! Importing many files: collecting them from directories, decoding in
//! parallel on worker threads (which also convert each file to a batch
//! entry and encode its cells, [`atlas::PreparedDataset::prepare`]), writing them
//! into the store in a fixed order, in groups of at least 1 MiB of files
//! (one [`Atlas::create_prepared_owned`] call each), and reporting every
//! file's outcome.
//!
//! A file that cannot be read or mapped is reported and skipped; its dataset
//! is never half-written (see [`crate::write_plan`]).
//!
//! The import is committed in batches of about [`BulkOptions::batch_bytes`]
//! of input, so it never holds every file's cells in memory (its memory
//! still grows slowly with the store: docs/netcdf.md): each batch is one
//! commit, in file order. An interrupted import keeps the batches it
//! committed, and running it again skips their datasets (unless `replace`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlas::Atlas;

use crate::error::{Error, Result};
use crate::import::{self, ImportOptions};

/// File extensions picked up when walking a directory (case-insensitive).
pub const EXTENSIONS: [&str; 5] = ["nc", "nc3", "nc4", "cdf", "netcdf"];

/// Options of a bulk import.
#[derive(Clone, Debug)]
pub struct BulkOptions {
    /// How each file is mapped.
    pub import: ImportOptions,
    /// Replace datasets that already exist (default: skip their files).
    pub replace: bool,
    /// Decoder threads (0 = one per CPU).
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

/// The default [`BulkOptions::batch_bytes`]: 32 MiB of input per commit.
/// The 3,000 real Argo profiles: 6 commits, peak RSS about 220 MB, against
/// 11 commits, 170 MB and 1.2× the time at 16 MiB (docs/BENCHMARKS.md).
pub const DEFAULT_BATCH_BYTES: u64 = 32 << 20;

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

type Decoded = (usize, u64, Result<atlas::PreparedDataset>);

/// Reads, decodes and plans one file, turns the plan into its batch entry
/// (sharing equal schemas and attribute sets through `shared`) and
/// prepares it (encodes its cells with `compression`, the store's).
fn decode(
    compression: atlas::Compression,
    path: &Path,
    name: &str,
    opts: &ImportOptions,
    reader: crate::Reader,
    shared: &mut import::Shared,
) -> (u64, Result<atlas::PreparedDataset>) {
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
        // What the entry does not keep (equal to what `shared` holds) is
        // freed here, by the thread that allocated it.
        let ds = import::plan_entry(nc, name, opts, path, shared)?;
        // Encoded here too: the writer, the import's critical path, then
        // only adds the chunks (and the cells are freed by this thread).
        Ok(atlas::PreparedDataset::prepare(ds, compression)?)
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
/// Errors only when the paths cannot be listed, or a commit or the store's
/// storage fails (the batches committed before it stay committed); a file
/// that fails is reported in [`BulkReport::files`] and skipped.
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
        // One per core: the writer (this task) only adds what the decoders
        // encoded and commits, and the commits' work goes to every core.
        // Leaving the writer a core made the one decoder of a 2-core
        // machine the import's critical path once it also encoded.
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    } else {
        opts.jobs
    }
    .clamp(1, todo.len().max(1));
    // Decoded files wait for the writer up to a budget of their files'
    // bytes (not a count of files: one may be a gigabyte), so decoding goes
    // on while the writer commits a batch.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Decoded>();
    let budget = Arc::new(Budget::new(
        if opts.batch_bytes == 0 {
            DEFAULT_BATCH_BYTES
        } else {
            opts.batch_bytes / 2
        }
        .clamp(4 << 20, 32 << 20),
    ));
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
        // The store's compression only, not the store: a decoder thread
        // that outlives a failed import holds nothing of it.
        let (compression, shared, next, stop, tx, budget) = (
            store.compression(),
            Arc::clone(&shared),
            Arc::clone(&next),
            Arc::clone(&stop),
            tx.clone(),
            Arc::clone(&budget),
        );
        workers.push(std::thread::spawn(move || {
            let (files, names, todo, iopts) = &*shared;
            // Each decoder turns its plans into batch entries itself (the
            // writer is the import's critical path), sharing equal schemas
            // and attribute sets between the files it decodes (so memory
            // holds up to one copy per decoder; the registry's dictionaries
            // still store one, found by content).
            let mut converted = import::Shared::default();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= todo.len() || stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = todo[k];
                let (len, r) = decode(
                    compression,
                    &files[i],
                    &names[i],
                    iopts,
                    reader,
                    &mut converted,
                );
                budget.take(len, &stop);
                if tx.send((k, len, r)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    // However this function ends (an error, a panic, or its future dropped
    // part-way), the decoder threads stop instead of waiting on the budget.
    let stopper = Stopper {
        stop: Arc::clone(&stop),
        budget: Arc::clone(&budget),
    };

    let mut pending: BTreeMap<usize, (u64, Result<atlas::PreparedDataset>)> = BTreeMap::new();
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
    let batch_full = |batch: u64| opts.flush && opts.batch_bytes > 0 && batch >= opts.batch_bytes;
    while written < todo.len() {
        let Some(first) = rx.recv().await else {
            break;
        };
        // What else is decoded already, so that the files ready in order
        // are written together; up to a group's worth of files' bytes, so
        // that what the writer holds while the decoders fill their budget
        // again stays about a group. Under MIN_GROUP_BYTES, the writer
        // waits for more (until the decoders are done).
        let mut drained = 0u64;
        let mut next = Some(first);
        while let Some((k, len, r)) = next {
            budget.give(len);
            drained += len;
            pending.insert(k, (len, r));
            next = if drained >= GROUP_CELLS {
                None
            } else {
                match rx.try_recv() {
                    Ok(d) => Some(d),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty)
                        if drained < MIN_GROUP_BYTES =>
                    {
                        rx.recv().await
                    }
                    Err(_) => None,
                }
            };
        }
        while pending.contains_key(&written) {
            // The next files in order, written as one group: up to
            // GROUP_CELLS of cells or GROUP_FILES files, and never past the
            // end of a commit's batch.
            let mut group = Group::default();
            while let Some((len, r)) = pending.remove(&written) {
                let i = todo[written];
                written += 1;
                match r {
                    Err(e) => outcomes[i] = Some(FileOutcome::Failed(e)),
                    Ok(ds) => group.push(i, len, ds),
                }
                if group.cells >= GROUP_CELLS
                    || group.files.len() >= GROUP_FILES
                    || batch_full(batch + group.bytes)
                {
                    break;
                }
            }
            // An error returns: `stopper`, dropped, stops the decoders.
            let results = group.write(store, opts.replace).await?;
            for ((i, len), r) in group.files.iter().zip(results) {
                outcomes[*i] = Some(match r {
                    Ok(()) => {
                        batch += len;
                        FileOutcome::Imported {
                            dataset: names[*i].clone(),
                            bytes: *len,
                        }
                    }
                    Err(e) => FileOutcome::Failed(e),
                });
            }
            // Report everything up to the next file still being decoded
            // (before a commit, as each file is reported once written).
            let upto = todo.get(written).copied().unwrap_or(files.len());
            emit(upto, &mut outcomes, &mut report, &mut emitted);
            if batch_full(batch) {
                store.flush().await?;
                report.commits += 1;
                batch = 0;
            }
        }
    }
    stopper.stop();
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

/// Cells (decoded bytes) at which a group of files is written (the file
/// that reaches it is the group's last): large enough that the store
/// adds the group's arrays on several cores. Also the files' bytes the
/// writer takes from the decoders at a time.
const GROUP_CELLS: u64 = 2 << 20;

/// Files' bytes the writer waits for before it writes a group (unless the
/// decoders are done): each group costs a check of its names and a lock of
/// every array file it writes. Taking only the files decoded when it asked,
/// the writer made 874 groups of 1,000 Argo profiles (one decoder, under
/// callgrind), and the import took 5% more instructions than with groups
/// of at least this size (66 groups; docs/BENCHMARKS.md, twenty-ninth
/// session).
const MIN_GROUP_BYTES: u64 = 1 << 20;

/// Files at which a group is written, however small they are.
const GROUP_FILES: usize = 256;

/// Consecutive decoded files written with one
/// [`Atlas::create_prepared_owned`] call: the store checks them together,
/// locks each array file once and takes the chunks the decoder threads
/// encoded.
#[derive(Default)]
struct Group {
    /// Per file: its index in the file list, and its size.
    files: Vec<(usize, u64)>,
    datasets: Vec<atlas::PreparedDataset>,
    /// Bytes of the files.
    bytes: u64,
    /// Bytes of their cells.
    cells: u64,
}

impl Group {
    fn push(&mut self, file: usize, len: u64, ds: atlas::PreparedDataset) {
        self.bytes += len;
        self.cells += ds.raw_bytes();
        self.files.push((file, len));
        self.datasets.push(ds);
    }

    /// Writes the group (first deleting existing datasets of the same names
    /// when replacing), its datasets moved into the store; the outcome of
    /// each file, in order. A batch is all or nothing: when a check refuses
    /// it, each dataset is written alone, and only the files whose dataset
    /// cannot be written fail. An error when storage failed after the store
    /// took the datasets (the store is as it was; the import stops).
    async fn write(&mut self, store: &Atlas, replace: bool) -> Result<Vec<Result<()>>> {
        let mut results: Vec<Result<()>> = Vec::with_capacity(self.datasets.len());
        for ds in &self.datasets {
            results.push(if replace {
                replace_existing(store, ds.name()).await
            } else {
                Ok(())
            });
        }
        let mut datasets = std::mem::take(&mut self.datasets);
        if results.iter().all(Result::is_ok) {
            match store.create_prepared_owned(datasets).await {
                Ok(()) => return Ok(results),
                Err(r) if r.datasets.is_empty() => return Err(r.error.into()),
                Err(r) => datasets = r.datasets,
            }
        }
        for (ds, result) in datasets.into_iter().zip(&mut results) {
            if result.is_ok() {
                *result = match store.create_prepared_owned(vec![ds]).await {
                    Ok(()) => Ok(()),
                    Err(r) if r.datasets.is_empty() => return Err(r.error.into()),
                    Err(r) => Err(r.error.into()),
                };
            }
        }
        Ok(results)
    }
}

/// Stops the decoder threads (and wakes those waiting on the budget) when
/// told to or dropped.
struct Stopper {
    stop: Arc<AtomicBool>,
    budget: Arc<Budget>,
}

impl Stopper {
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.budget.give(0);
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bytes of decoded files waiting in the channel for the writer (files
/// it has received but not yet written, when they arrive out of order, are
/// not counted), and the limit decoder threads wait under.
struct Budget {
    used: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
    limit: u64,
}

impl Budget {
    fn new(limit: u64) -> Budget {
        Budget {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            limit,
        }
    }

    /// Waits until `n` more bytes fit (always, when none are held) or the
    /// import stops, and takes them.
    fn take(&self, n: u64, stop: &AtomicBool) {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *used > 0 && *used + n > self.limit && !stop.load(Ordering::Relaxed) {
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *used += n;
    }

    /// Gives back `n` bytes (0: only wakes the waiting decoders, to see a stop).
    fn give(&self, n: u64) {
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

/// Deletes the dataset `name` if it exists, for a file that replaces it.
async fn replace_existing(store: &Atlas, name: &str) -> Result<()> {
    if store.dataset_exists(name)? {
        store.delete_dataset(name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of the tests' one array, `x`: `len` f64 cells.
    fn x_schema(len: u64) -> Arc<atlas::ArraySchema> {
        Arc::new(
            atlas::ArraySchema::new(
                "x",
                atlas::DType::Float64,
                vec!["n".into()],
                vec![len],
                None,
                None,
            )
            .unwrap(),
        )
    }

    /// A group whose batch fails is written dataset by dataset: only the
    /// file whose dataset cannot be written fails, in its place, and the
    /// others are imported. Replacing deletes each existing dataset first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_fails_as_a_batch_fails_only_its_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Atlas::create_path(dir.path().join("s"), atlas::StoreConfig::default())
            .await
            .unwrap();
        store.create_dataset("taken").await.unwrap();
        let schema = x_schema(3);
        let dataset = |name: &str, v: f64| {
            let mut ds = atlas::NewDataset::new(name);
            ds.arrays.push(atlas::NewArray {
                name: "x".into(),
                schema: Arc::clone(&schema),
                attributes: Arc::default(),
                data: Some(ndarray::ArrayD::from_elem(vec![3], v).into()),
            });
            ds
        };
        let group_of = |names: [&str; 3], base: f64| {
            let mut group = Group::default();
            for (i, name) in names.into_iter().enumerate() {
                group.push(
                    i,
                    10,
                    store
                        .prepare_dataset(dataset(name, base + i as f64))
                        .unwrap(),
                );
            }
            group
        };
        // Dataset `name`'s array x, if it has one.
        let x_of = |name: &'static str| {
            let store = &store;
            async move {
                store
                    .open_dataset(name)
                    .await
                    .unwrap()
                    .read_array::<f64>("x", vec![], vec![])
                    .await
                    .unwrap()
                    .map(|x| x.iter().copied().collect::<Vec<_>>())
            }
        };

        let mut group = group_of(["a", "taken", "b"], 0.0);
        assert_eq!((group.bytes, group.cells), (30, 72));
        let results = group.write(&store, false).await.unwrap();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(
            matches!(&results[1], Err(Error::Store(atlas::Error::DatasetExists { name })) if name == "taken"),
            "{results:?}"
        );
        assert_eq!(x_of("a").await, Some(vec![0.0; 3]));
        assert_eq!(x_of("b").await, Some(vec![2.0; 3]));
        assert_eq!(
            x_of("taken").await,
            None,
            "the existing dataset has no array x"
        );

        let results = group_of(["a", "taken", "c"], 10.0)
            .write(&store, true)
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(x_of("taken").await, Some(vec![11.0; 3]));
        assert_eq!(store.n_datasets(), 4);
    }

    /// Storage failing once the store took a group (a full disk while its
    /// chunks spill) is an error for the whole import, not a failure of
    /// its files; the store is as it was, and the same group goes in once
    /// there is room.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_that_storage_fails_ends_the_import() {
        let storage = atlas::array_format::MemoryStorage::new();
        let store = Atlas::create_with(
            Arc::new(storage.clone()),
            Path::new("/s"),
            atlas::StoreConfig {
                pending_budget_bytes: 1,
                ..atlas::StoreConfig::default()
            },
        )
        .await
        .unwrap();
        let schema = x_schema(64);
        let group = |n: usize| {
            let mut group = Group::default();
            for i in 0..n {
                let mut ds = atlas::NewDataset::new(format!("d{i}"));
                let cells: Vec<f64> = (0..64).map(|k| (i * 64 + k) as f64).collect();
                ds.arrays.push(atlas::NewArray::new(
                    "x",
                    Arc::clone(&schema),
                    Some(
                        ndarray::ArrayD::from_shape_vec(vec![64], cells)
                            .unwrap()
                            .into(),
                    ),
                ));
                group.push(i, 100, store.prepare_dataset(ds).unwrap());
            }
            group
        };
        let used: u64 = storage
            .files()
            .iter()
            .map(|p| storage.contents(p).map_or(0, |c| c.len() as u64))
            .sum();
        storage.set_capacity(Some(used + 200));
        let e = group(20).write(&store, false).await.unwrap_err();
        storage.set_capacity(None);
        assert!(
            matches!(&e, Error::Store(s) if matches!(
                s.kind(),
                atlas::ErrorKind::ResourceExhausted | atlas::ErrorKind::Io
            )),
            "{e:?}"
        );
        assert_eq!(store.n_datasets(), 0);
        let results = group(20).write(&store, false).await.unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        store.flush().await.unwrap();
        assert_eq!(store.n_datasets(), 20);
    }

    /// A file larger than the budget passes when nothing is held; a decoder
    /// waits while the budget is full until the writer takes bytes back or
    /// the import stops.
    #[test]
    fn the_decode_budget_blocks_until_bytes_come_back_or_the_import_stops() {
        let budget = Arc::new(Budget::new(100));
        let stop = Arc::new(AtomicBool::new(false));
        budget.take(500, &stop);
        budget.give(500);
        budget.take(60, &stop);
        for release in [true, false] {
            let (b, st) = (Arc::clone(&budget), Arc::clone(&stop));
            let waiter = std::thread::spawn(move || {
                let t = Instant::now();
                b.take(60, &st);
                t.elapsed()
            });
            std::thread::sleep(Duration::from_millis(200));
            assert!(!waiter.is_finished(), "60 + 60 bytes exceed the budget");
            if release {
                budget.give(60);
            } else {
                stop.store(true, Ordering::Relaxed);
                budget.give(0);
            }
            assert!(waiter.join().unwrap() >= Duration::from_millis(150));
        }
    }
}
