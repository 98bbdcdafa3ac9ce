//! [`Atlas::query`]: the store as the query evaluator's source of statistics.
//!
//! **Invariant:** a query reads exactly what the handle's reads see: the
//! registry's live dataset map (committed state plus this handle's pending
//! changes) and the array files' merged indexes (pending chunks first), under
//! read locks held for the whole evaluation. It never reads statistics from
//! anywhere else, so they cannot be stale.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use array_format::{
    ArrayElement, ArrayFile, ArraySchema, ArrayStats, ChunkSummary, DType, TimestampNs,
};
use indexmap::IndexMap;
use roaring::RoaringBitmap;
use tokio::sync::OwnedRwLockReadGuard;

use super::{Atlas, Inner};
use crate::attr::Attr;
use crate::error::{Error, Result};
use crate::query::source::{ArrayEntry, ChunkSource, StatsSource};
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
            if let Some(f) = self.inner.file_async(name).await? {
                files.insert(name.clone(), f.read_owned().await);
            }
        }
        let inner = Arc::clone(&self.inner);
        let records = tokio::task::spawn_blocking(move || inner.all_records())
            .await
            .expect("registry task panicked")?;
        let source = Snapshot::take(&self.inner, &records, &referenced, files);
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
    inner: Arc<Inner>,
    names: Vec<String>,
    /// Referenced names that some dataset has as an array / an attribute.
    arrays_seen: HashSet<String>,
    attributes_seen: HashSet<String>,
    arrays: HashMap<String, Vec<Entry>>,
    attributes: HashMap<String, Vec<(u32, Attr)>>,
    files: HashMap<String, Guard>,
}

impl Snapshot {
    /// One pass over the datasets, looking up only the referenced names.
    fn take(
        inner: &Arc<Inner>,
        datasets: &[(String, crate::registry::Record)],
        referenced: &HashSet<String>,
        files: HashMap<String, Guard>,
    ) -> Snapshot {
        let referenced: Vec<&String> = referenced.iter().collect();
        let mut arrays: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut attributes: HashMap<String, Vec<(u32, Attr)>> = HashMap::new();
        let mut names = Vec::with_capacity(datasets.len());
        for (pos, (name, rec)) in datasets.iter().enumerate() {
            let pos = pos as u32;
            let meta = &rec.meta;
            names.push(name.clone());
            for r in &referenced {
                if let Some(entry) = meta.arrays.get(r.as_str()) {
                    arrays.entry((*r).clone()).or_default().push(Entry {
                        pos,
                        schema: Arc::clone(&entry.schema),
                        attrs: Arc::clone(&entry.attributes),
                    });
                }
                if let Some(v) = meta.attributes.get(r.as_str()) {
                    attributes
                        .entry((*r).clone())
                        .or_default()
                        .push((pos, v.clone()));
                }
            }
        }
        Snapshot {
            inner: Arc::clone(inner),
            names,
            arrays_seen: arrays.keys().cloned().collect(),
            attributes_seen: attributes.keys().cloned().collect(),
            arrays,
            attributes,
            files,
        }
    }

    /// Sorted distinct names over the live map, for suggestions after an
    /// unknown name (the error path only).
    fn all_names(&self, arrays: bool) -> Vec<String> {
        let mut set = std::collections::BTreeSet::new();
        let records = self.inner.all_records().unwrap_or_default();
        {
            for (_, rec) in &records {
                let meta = &rec.meta;
                let keys: Box<dyn Iterator<Item = &String>> = if arrays {
                    Box::new(meta.arrays.keys())
                } else {
                    Box::new(meta.attributes.keys())
                };
                for k in keys {
                    if !set.contains(k) {
                        set.insert(k.clone());
                    }
                }
            }
        }
        set.into_iter().collect()
    }

    /// The array file and the dataset's name, if the file still holds the
    /// dataset's array.
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
        self.arrays_seen.contains(name)
    }

    fn is_attribute(&self, name: &str) -> bool {
        self.attributes_seen.contains(name)
    }

    fn array_names(&self) -> Vec<String> {
        self.all_names(true)
    }

    fn attribute_names(&self) -> Vec<String> {
        self.all_names(false)
    }

    fn array_entries(&self, array: &str) -> Vec<ArrayEntry> {
        self.arrays
            .get(array)
            .map(|es| {
                es.iter()
                    .map(|e| ArrayEntry {
                        pos: e.pos,
                        dtype: e.schema.dtype,
                        attrs: Arc::clone(&e.attrs),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn array_stats(&self, array: &str, only: &RoaringBitmap) -> Result<Vec<(u32, ArrayStats)>> {
        let (Some(entries), Some(file)) = (self.arrays.get(array), self.files.get(array)) else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::with_capacity(only.len() as usize);
        for e in entries.iter().filter(|e| only.contains(e.pos)) {
            let name = self.names[e.pos as usize].as_str();
            match file.schema(name) {
                // A dataset deleted while the query took its locks: not there.
                None => continue,
                Some(f) if *f == *e.schema => {}
                Some(_) => check_schema(file, name, array, &e.schema)?,
            }
            let stats = file
                .array_stats(name)
                .map_err(|err| Error::array(name, array, err))?;
            rows.push((e.pos, stats));
        }
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
