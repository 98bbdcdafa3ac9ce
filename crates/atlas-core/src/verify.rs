//! Whole-store verification: every checksum, and registry ↔ files agreement.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use array_format::{ArrayFile, ArrayFileOptions, DeltaCache, DeltaCacheConfig};

use crate::error::ErrorKind;
use crate::store::{Atlas, REGISTRY_FILE};

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
    /// `Corrupt` or `Unsupported` for damage; `ResourceExhausted` or `Io` when
    /// the check itself could not run (out of descriptors, memory, a failing
    /// disk): the data may be fine.
    pub kind: ErrorKind,
}

impl Problem {
    /// True when the problem is damage to stored data (not a failure to check).
    pub fn is_damage(&self) -> bool {
        !matches!(self.kind, ErrorKind::ResourceExhausted | ErrorKind::Io)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Array files checked.
    pub n_arrays: u64,
    /// Layer files checked.
    pub n_layers: u64,
    /// Chunks whose checksum and decoding were checked.
    pub n_chunks: u64,
    /// Everything found wrong; empty means the store is sound.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when some stored data is damaged.
    pub fn is_damaged(&self) -> bool {
        self.problems.iter().any(Problem::is_damage)
    }

    /// True when some part could not be checked (resource or I/O failure)
    /// and nothing checked was damaged.
    pub fn is_incomplete(&self) -> bool {
        !self.is_damaged() && !self.problems.is_empty()
    }
}

/// Checks the committed state of the store at `atlas.root()`: decodes the
/// registry, opens every named layer (footer checksums), reads and decodes every
/// live chunk (block checksums), and checks that each dataset's arrays exist in
/// their files with the same schema and that files hold no unregistered arrays.
/// `progress` is called after each array file with (done, total).
pub fn verify(atlas: &Atlas, mut progress: impl FnMut(u64, u64)) -> Report {
    let root = atlas.root().to_owned();
    let storage = atlas.inner.storage.clone();
    let mut report = Report::default();
    let reg_path = root.join(REGISTRY_FILE);
    let loaded = crate::store::load(storage.as_ref(), &root)
        .and_then(|(m, _, l)| Ok((m, l.into_records()?)));
    let (manifest, datasets) = match loaded {
        Ok(r) => r,
        Err(e) => {
            report.problems.push(Problem {
                path: reg_path,
                message: e.to_string(),
                kind: e.kind(),
            });
            return report;
        }
    };
    // The manifest's counts must match the records.
    if manifest.version >= 3 {
        let mut users: HashMap<&str, u64> = HashMap::new();
        for rec in datasets.values() {
            for a in rec.meta.arrays.keys() {
                *users.entry(a.as_str()).or_insert(0) += 1;
            }
        }
        if manifest.n_datasets != datasets.len() as u64 {
            report.problems.push(Problem {
                path: reg_path.clone(),
                message: format!(
                    "manifest counts {} datasets, the registry runs hold {}",
                    manifest.n_datasets,
                    datasets.len()
                ),
                kind: ErrorKind::Corrupt,
            });
        }
        for (a, n) in &manifest.users {
            let found = users.get(a.as_str()).copied().unwrap_or(0);
            if *n != found {
                report.problems.push(Problem {
                    path: reg_path.clone(),
                    message: format!(
                        "manifest counts {n} datasets with array {a:?}, the runs hold {found}"
                    ),
                    kind: ErrorKind::Corrupt,
                });
            }
        }
    }
    let total = manifest.arrays.len() as u64;
    for (i, (array, layers)) in manifest.arrays.iter().enumerate() {
        let dir = root.join(&manifest.dirs[array]);
        report.n_arrays += 1;
        report.n_layers += layers.len() as u64;
        // A private cache with no decoded level, so every chunk is really read.
        let cache = std::sync::Arc::new(DeltaCache::new(DeltaCacheConfig {
            raw_capacity_bytes: 0,
            decoded_capacity_bytes: 0,
        }));
        let file = match ArrayFile::open(
            storage.clone(),
            &dir,
            layers,
            ArrayFileOptions::default(),
            cache,
        ) {
            Ok(f) => f,
            Err(e) => {
                report.problems.push(Problem {
                    path: dir,
                    message: format!("array {array:?}: {e}"),
                    kind: e.kind(),
                });
                progress(i as u64 + 1, total);
                continue;
            }
        };
        match file.verify() {
            Ok(n) => report.n_chunks += n,
            Err(e) => report.problems.push(Problem {
                path: dir.clone(),
                message: format!("array {array:?}: {e}"),
                kind: e.kind(),
            }),
        }
        let mut expected = HashSet::new();
        for (ds_name, rec) in &datasets {
            let Some(entry) = rec.meta.arrays.get(array) else {
                continue;
            };
            // The catalog's statistics must be the array file's.
            if let (Some(cat), Ok(real)) = (rec.stats.get(array), file.array_stats(ds_name)) {
                if !same_stats(cat, &real) {
                    report.problems.push(Problem {
                        path: reg_path.clone(),
                        message: format!(
                            "catalog statistics of {ds_name}/{array} differ from the array file's"
                        ),
                        kind: ErrorKind::Corrupt,
                    });
                }
            }
            expected.insert(ds_name.as_str());
            match file.schema(ds_name) {
                None => report.problems.push(Problem {
                    path: dir.clone(),
                    message: format!(
                        "registry lists {ds_name}/{array} but the array file lacks it"
                    ),
                    kind: ErrorKind::Corrupt,
                }),
                Some(s) if *s != *entry.schema => report.problems.push(Problem {
                    path: file.schema_origin(ds_name).unwrap_or(&dir).to_owned(),
                    message: format!(
                        "schema of {ds_name}/{array} differs between registry and array file"
                    ),
                    kind: ErrorKind::Corrupt,
                }),
                Some(_) => {}
            }
        }
        for name in file.list_arrays() {
            if !expected.contains(name.as_str()) {
                report.problems.push(Problem {
                    path: dir.clone(),
                    message: format!("array file holds {name:?}, which the registry does not list"),
                    kind: ErrorKind::Corrupt,
                });
            }
        }
        progress(i as u64 + 1, total);
    }
    report
}

/// Equal statistics (floats compared by bits, so NaN-free values compare
/// exactly and -0.0 differs from 0.0 only if stored so).
fn same_stats(a: &array_format::ArrayStats, b: &array_format::ArrayStats) -> bool {
    let v = |x: &Option<array_format::StatValue>| match x {
        Some(array_format::StatValue::Float(f)) => format!("f{}", f.to_bits()),
        other => format!("{other:?}"),
    };
    a.null_count == b.null_count
        && a.row_count == b.row_count
        && v(&a.min) == v(&b.min)
        && v(&a.max) == v(&b.max)
}
