//! Reads of one array across many datasets.

use array_format::ArrayElement;
use ndarray::{ArrayD, Axis};

use std::sync::Arc;

use super::Atlas;
use crate::error::{Error, Result};
use crate::registry::SchemaOf;

impl Atlas {
    /// Reads one array from many datasets, decoding in parallel. One result per
    /// dataset, `None` where a dataset lacks the array. Empty `start` and
    /// `count` read whole arrays.
    ///
    /// `datasets` is any slice of names (`&[String]`, `&[&str]`), so the one
    /// type argument reads as `read_array_across::<f32>(…)`.
    pub async fn read_array_across<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<Vec<Option<ArrayD<T>>>> {
        let names: Vec<&str> = datasets.iter().map(AsRef::as_ref).collect();
        let inner = Arc::clone(&self.inner);
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        // Registry lookups may read blocks: on the blocking pool.
        let a = array.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            inner.lookup_schemas(&refs, &a)
        })
        .await
        .expect("lookup task panicked")?;
        let mut has = Vec::with_capacity(datasets.len());
        let mut schemas = Vec::with_capacity(datasets.len());
        for (d, found) in names.iter().zip(found) {
            let schema = match found {
                SchemaOf::NoDataset => {
                    return Err(Error::DatasetNotFound {
                        name: (*d).to_owned(),
                    })
                }
                SchemaOf::NoArray => None,
                SchemaOf::Schema(s) => Some(s),
            };
            has.push(((*d).to_owned(), schema.is_some()));
            schemas.push(schema);
        }
        let Some(file) = self.inner.file_async(array).await? else {
            return Ok(vec![None; datasets.len()]);
        };
        let mut guard = file.read_owned().await;
        // Many datasets: build the file's whole index once (as a listing
        // does) instead of one dataset's state at a time; off the runtime.
        if has.len() >= 64 {
            let (g, built) = tokio::task::spawn_blocking(move || {
                let built = guard.try_list_arrays().map(drop);
                (guard, built)
            })
            .await
            .expect("index task panicked");
            guard = g;
            built.map_err(|e| Error::array(&has[0].0, array, e))?;
        }

        // As in `DatasetView::read_array`: never read with sizes the registry
        // did not agree to.
        for ((d, _), registry) in has.iter().zip(&schemas) {
            let Some(r) = registry else { continue };
            let in_file = guard.try_schema(d).map_err(|e| Error::array(d, array, e))?;
            if in_file.is_none_or(|f| **r != *f) {
                return Err(Error::array(
                    d,
                    array,
                    array_format::Error::corrupt(
                        guard.schema_origin(d).unwrap_or(guard.dir()),
                        0,
                        format!("the array file's schema of {d:?} differs from the registry's"),
                    ),
                ));
            }
        }
        let array = array.to_owned();
        tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let per = has.len().div_ceil(threads).max(64);
            // Each part is read in one pass over the file (blocks sorted by
            // position, neighbours fetched together).
            let read_part = |part: &[(String, bool)]| -> Result<Vec<Option<ArrayD<T>>>> {
                let names: Vec<&str> = part
                    .iter()
                    .filter(|(_, present)| *present)
                    .map(|(d, _)| d.as_str())
                    .collect();
                let mut got = guard
                    .read_many_streaming::<T>(&names, &start, &count)
                    .into_iter();
                part.iter()
                    .map(|(d, present)| {
                        if !present {
                            return Ok(None);
                        }
                        got.next()
                            .expect("one result per name")
                            .map(Some)
                            .map_err(|e| Error::array(d, &array, e))
                    })
                    .collect()
            };
            if has.len() <= per {
                return read_part(&has);
            }
            std::thread::scope(|s| {
                let handles: Vec<_> = has
                    .chunks(per)
                    .map(|part| s.spawn(move || read_part(part)))
                    .collect();
                let mut out = Vec::with_capacity(has.len());
                for h in handles {
                    out.extend(h.join().expect("reader thread panicked")?);
                }
                Ok(out)
            })
        })
        .await
        .expect("read task panicked")
    }

    /// Like [`Atlas::read_array_across`], stacked into one array with a leading
    /// dataset axis. Every dataset must have the array, with equal shapes.
    pub async fn read_array_across_stacked<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<ArrayD<T>> {
        let parts = self
            .read_array_across::<T>(array, datasets, start, count)
            .await?;
        let mut views = Vec::with_capacity(parts.len());
        for (d, p) in datasets.iter().zip(&parts) {
            let p = p.as_ref().ok_or_else(|| Error::ArrayNotFound {
                dataset: d.as_ref().to_owned(),
                array: array.to_owned(),
            })?;
            if let Some(first) = views.first() {
                let first: &ndarray::ArrayViewD<'_, T> = first;
                if first.shape() != p.shape() {
                    return Err(Error::ShapesDiffer {
                        array: array.to_owned(),
                        dataset: d.as_ref().to_owned(),
                        expected: first.shape().to_vec(),
                        actual: p.shape().to_vec(),
                    });
                }
            }
            views.push(p.view());
        }
        if views.is_empty() {
            return Ok(ArrayD::from_shape_vec(ndarray::IxDyn(&[0]), Vec::new()).expect("empty"));
        }
        Ok(ndarray::stack(Axis(0), &views).expect("shapes checked"))
    }
}
