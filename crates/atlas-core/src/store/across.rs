//! Reads of one array across many datasets.

use array_format::{ArrayElement, ArrayFile, ArraySchema};
use ndarray::{ArrayD, Axis};
use rayon::prelude::*;

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
        let inner = Arc::clone(&self.inner);
        let owned: Vec<String> = datasets.iter().map(|d| d.as_ref().to_owned()).collect();
        // Contiguous parts of the names, one per core (each large enough to
        // be worth a task): every step below runs per part, in parallel, and
        // the parts' results are concatenated in order, so the result and
        // the error reported (the first in name order, lookups before reads)
        // do not depend on the number of cores.
        let per = owned
            .len()
            .div_ceil(rayon::current_num_threads())
            .max(array_format::SCAN_MIN_PART);
        // Registry lookups may read blocks: on the blocking pool.
        let a = array.to_owned();
        let (owned, found) = tokio::task::spawn_blocking(move || {
            let found: Vec<Result<Vec<SchemaOf>>> = owned
                .par_chunks(per)
                .map(|part| {
                    let refs: Vec<&str> = part.iter().map(String::as_str).collect();
                    inner.lookup_schemas(&refs, &a)
                })
                .collect();
            (owned, found)
        })
        .await
        .expect("lookup task panicked");
        let mut schemas = Vec::with_capacity(owned.len());
        let mut names = owned.iter();
        for part in found {
            for found in part? {
                let d = names.next().expect("one answer per name");
                schemas.push(match found {
                    SchemaOf::NoDataset => return Err(Error::DatasetNotFound { name: d.clone() }),
                    SchemaOf::NoArray => None,
                    SchemaOf::Schema(e) => Some(e.schema),
                });
            }
        }
        let Some(file) = self.inner.file_async(array).await? else {
            return Ok(vec![None; owned.len()]);
        };
        let guard = file.read_owned().await;
        let array = array.to_owned();
        // Resolving names (building the file's whole index for many), the
        // schema check and the decoding: off the runtime.
        tokio::task::spawn_blocking(move || {
            let first = owned.first().map_or("", String::as_str);
            let parts: Vec<Result<Vec<Option<ArrayD<T>>>>> = owned
                .par_chunks(per)
                .zip(schemas.par_chunks(per))
                .map(|(names, schemas)| {
                    read_part(&guard, &array, first, names, schemas, &start, &count)
                })
                .collect();
            let mut out = Vec::with_capacity(owned.len());
            for part in parts {
                out.extend(part?);
            }
            Ok(out)
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

/// One part of [`Atlas::read_array_across`]: `names` with the registry's
/// schemas (`None`: no such array), resolved in the array file, checked
/// against the file's schemas, then read. `first` names the errors of the
/// file as a whole.
fn read_part<T: ArrayElement>(
    file: &ArrayFile,
    array: &str,
    first: &str,
    names: &[String],
    schemas: &[Option<Arc<ArraySchema>>],
    start: &[u64],
    count: &[u64],
) -> Result<Vec<Option<ArrayD<T>>>> {
    let present: Vec<&str> = names
        .iter()
        .zip(schemas)
        .filter(|(_, s)| s.is_some())
        .map(|(d, _)| d.as_str())
        .collect();
    let scan = file
        .scan(&present)
        .map_err(|e| Error::array(first, array, e))?;
    // As in `DatasetView::read_array`: never read with sizes the registry
    // did not agree to. Both sides share schema objects between datasets
    // (the registry's dictionary, the array file's consecutive equal
    // definitions), so a pair found equal once is not compared again.
    let mut agreed: Option<(&ArraySchema, &ArraySchema)> = None;
    for (k, registry) in schemas.iter().flatten().enumerate() {
        let d = present[k];
        let in_file = scan.try_schema(k).map_err(|e| Error::array(d, array, e))?;
        if let (Some(f), Some((r0, f0))) = (in_file, agreed) {
            if std::ptr::eq(Arc::as_ptr(registry), r0) && std::ptr::eq(f, f0) {
                continue;
            }
        }
        if let Some(f) = in_file.filter(|f| **registry == **f) {
            agreed = Some((&**registry, f));
            continue;
        }
        return Err(Error::array(
            d,
            array,
            array_format::Error::corrupt(
                scan.schema_origin(k).unwrap_or(file.dir()),
                0,
                format!("the array file's schema of {d:?} differs from the registry's"),
            ),
        ));
    }
    let mut got = scan.read::<T>(start, count, 1).into_iter();
    let mut out = Vec::with_capacity(names.len());
    let mut k = 0;
    for registry in schemas {
        if registry.is_none() {
            out.push(None);
            continue;
        }
        let r = got.next().expect("one result per name");
        out.push(Some(r.map_err(|e| Error::array(present[k], array, e))?));
        k += 1;
    }
    Ok(out)
}
