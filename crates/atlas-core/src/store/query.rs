//! [`Atlas::query`]: the store as the query evaluator's source of statistics.
//!
//! **Invariant:** a query reads exactly what the handle's reads see: the
//! registry's live dataset map (committed state plus this handle's pending
//! changes) and the array files' merged indexes (pending chunks first), under
//! read locks held for the whole evaluation. It never reads statistics from
//! anywhere else, so they cannot be stale.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use array_format::{ArrayElement, ArrayFile, ArraySchema, ChunkSummary, DType, TimestampNs};
use indexmap::IndexMap;
use roaring::RoaringBitmap;
use tokio::sync::OwnedRwLockReadGuard;

use super::Atlas;
use crate::attr::Attr;
use crate::error::{Error, Result};
use crate::query::source::{ArrayRow, ChunkSource, StatsSource};
use crate::query::value::{Val, ValueSet};
use crate::query::{Query, QueryResult};

impl Atlas {
    /// The datasets matching a query, in insertion order, with an
    /// [`Explain`](crate::query::Explain) of how each term was decided.
    ///
    /// Sees exactly what this handle reads: the committed generation plus its
    /// own pending writes. Read the matches with
    /// [`Atlas::read_array_across`]`(array, result.names(), …)`.
    pub async fn query(&self, query: &Query) -> Result<QueryResult> {
        let referenced = query.expr.names();
        let mut files = HashMap::new();
        let mut sorted: Vec<&String> = referenced.iter().collect();
        sorted.sort();
        // Locks taken in name order, as flush takes them.
        for name in sorted {
            if let Some(f) = self.inner.file(name)? {
                files.insert(name.clone(), f.read_owned().await);
            }
        }
        let source = {
            let live = self.inner.live.read();
            Snapshot::take(&live.datasets, &referenced, files)
        };
        let generation = self.generation();
        let query = query.clone();
        tokio::task::spawn_blocking(move || crate::query::run(&query, &source, &source, generation))
            .await
            .expect("query task panicked")
    }
}

type Guard = OwnedRwLockReadGuard<ArrayFile>;

/// One array in one dataset, as the registry describes it.
struct Entry {
    pos: u32,
    schema: Arc<ArraySchema>,
    attrs: Arc<IndexMap<String, Attr>>,
}

/// The state a query runs on: the dataset order and the referenced columns,
/// copied from the registry under its lock, plus read guards on the
/// referenced array files.
struct Snapshot {
    names: Vec<String>,
    array_names: HashSet<String>,
    attribute_names: HashSet<String>,
    arrays: HashMap<String, Vec<Entry>>,
    attributes: HashMap<String, Vec<(u32, Attr)>>,
    files: HashMap<String, Guard>,
    rows: RefCell<HashMap<String, Vec<ArrayRow>>>,
}

impl Snapshot {
    fn take(
        datasets: &IndexMap<String, crate::registry::DatasetMeta>,
        referenced: &HashSet<String>,
        files: HashMap<String, Guard>,
    ) -> Snapshot {
        let mut s = Snapshot {
            names: Vec::with_capacity(datasets.len()),
            array_names: HashSet::new(),
            attribute_names: HashSet::new(),
            arrays: HashMap::new(),
            attributes: HashMap::new(),
            files,
            rows: RefCell::new(HashMap::new()),
        };
        for (pos, (name, meta)) in datasets.iter().enumerate() {
            let pos = pos as u32;
            s.names.push(name.clone());
            for (a, entry) in &meta.arrays {
                if !s.array_names.contains(a) {
                    s.array_names.insert(a.clone());
                }
                if referenced.contains(a) {
                    s.arrays.entry(a.clone()).or_default().push(Entry {
                        pos,
                        schema: Arc::clone(&entry.schema),
                        attrs: Arc::clone(&entry.attributes),
                    });
                }
            }
            for (k, v) in &meta.attributes {
                if !s.attribute_names.contains(k) {
                    s.attribute_names.insert(k.clone());
                }
                if referenced.contains(k) {
                    s.attributes
                        .entry(k.clone())
                        .or_default()
                        .push((pos, v.clone()));
                }
            }
        }
        s
    }

    /// The array file and the dataset's name, if the file still holds the
    /// dataset's array as the registry describes it.
    fn file(&self, array: &str, pos: u32) -> Option<(&ArrayFile, &str)> {
        let name = self.names[pos as usize].as_str();
        let f = self.files.get(array)?;
        f.contains(name).then_some((&**f, name))
    }
}

/// As the read paths: never trust sizes the registry did not agree to.
fn check_schema(
    file: &ArrayFile,
    dataset: &str,
    array: &str,
    registry: &ArraySchema,
) -> Result<()> {
    if file.schema(dataset).is_some_and(|f| f == registry) {
        return Ok(());
    }
    Err(Error::array(
        dataset,
        array,
        array_format::Error::corrupt(
            file.schema_origin(dataset).unwrap_or(file.dir()),
            0,
            format!("the array file's schema of {dataset:?} differs from the registry's"),
        ),
    ))
}

impl StatsSource for Snapshot {
    fn n_datasets(&self) -> u32 {
        self.names.len() as u32
    }

    fn name(&self, pos: u32) -> &str {
        &self.names[pos as usize]
    }

    fn is_array(&self, name: &str) -> bool {
        self.array_names.contains(name)
    }

    fn is_attribute(&self, name: &str) -> bool {
        self.attribute_names.contains(name)
    }

    fn array_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.array_names.iter().cloned().collect();
        v.sort();
        v
    }

    fn attribute_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.attribute_names.iter().cloned().collect();
        v.sort();
        v
    }

    fn array_positions(&self, array: &str) -> RoaringBitmap {
        self.arrays
            .get(array)
            .map(|es| {
                es.iter()
                    .filter(|e| self.file(array, e.pos).is_some())
                    .map(|e| e.pos)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn array_rows(&self, array: &str) -> Result<Vec<ArrayRow>> {
        if let Some(rows) = self.rows.borrow().get(array) {
            return Ok(rows.clone());
        }
        let mut rows = Vec::new();
        for e in self.arrays.get(array).map_or(&[][..], Vec::as_slice) {
            // A dataset deleted while the query took its locks: not there.
            let Some((file, name)) = self.file(array, e.pos) else {
                continue;
            };
            check_schema(file, name, array, &e.schema)?;
            let meta = file
                .array_meta(name)
                .map_err(|err| Error::array(name, array, err))?;
            rows.push(ArrayRow {
                pos: e.pos,
                dtype: e.schema.dtype,
                stats: meta.stats,
                attrs: Arc::clone(&e.attrs),
            });
        }
        self.rows
            .borrow_mut()
            .insert(array.to_owned(), rows.clone());
        Ok(rows)
    }

    fn attribute_rows(&self, key: &str) -> Vec<(u32, Attr)> {
        self.attributes.get(key).cloned().unwrap_or_default()
    }
}

impl ChunkSource for Snapshot {
    fn chunks(&self, array: &str, pos: u32) -> Result<Vec<ChunkSummary>> {
        let Some((file, name)) = self.file(array, pos) else {
            return Ok(Vec::new());
        };
        file.chunk_summaries(name)
            .map_err(|e| Error::array(name, array, e))
    }

    fn chunk_has(&self, array: &str, pos: u32, chunk_idx: u64, set: &ValueSet) -> Result<bool> {
        let Some((file, name)) = self.file(array, pos) else {
            return Ok(false);
        };
        let schema = file.schema(name).ok_or_else(|| Error::ArrayNotFound {
            dataset: name.to_owned(),
            array: array.to_owned(),
        })?;
        let (start, count) = schema.chunk_region(chunk_idx);
        let fv = schema.fill_value.clone();
        let r = match schema.dtype {
            DType::Bool => has::<bool>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int8 => has::<i8>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int16 => has::<i16>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int32 => has::<i32>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int64 => has::<i64>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt8 => has::<u8>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt16 => has::<u16>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt32 => has::<u32>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt64 => has::<u64>(file, name, &start, &count, fv.as_ref(), set),
            DType::Float32 => has::<f32>(file, name, &start, &count, fv.as_ref(), set),
            DType::Float64 => has::<f64>(file, name, &start, &count, fv.as_ref(), set),
            DType::String => has::<String>(file, name, &start, &count, fv.as_ref(), set),
            DType::Timestamp => has::<TimestampNs>(file, name, &start, &count, fv.as_ref(), set),
            other => unreachable!("dtype {other} has no query dispatch"),
        };
        r.map_err(|e| Error::array(name, array, e))
    }
}

/// Decodes one chunk's region and looks for a non-null cell in `set`. Nulls
/// are as the statistics count them: NaN, or equal to the fill value.
fn has<T: ArrayElement>(
    file: &ArrayFile,
    name: &str,
    start: &[u64],
    count: &[u64],
    declared: Option<&array_format::FillValue>,
    set: &ValueSet,
) -> array_format::Result<bool> {
    let null: Option<T> = declared.and_then(T::from_fill);
    let cells = file.read_array::<T>(name, start, count)?;
    Ok(cells
        .iter()
        .filter(|v| !v.is_nan() && null.as_ref() != Some(*v))
        .any(|v| set.member(&Val::from_stat(&v.to_stat()))))
}
