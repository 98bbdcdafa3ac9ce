//! Reads of one array across many datasets.

use array_format::{ArrayElement, ArrayFile, ArraySchema};
use ndarray::ArrayD;

use std::sync::Arc;

use super::{Atlas, Inner};
use crate::error::{Error, Result};
use crate::registry::{Entries, SchemaOf};

impl Atlas {
    /// Reads one array from many datasets, decoding in parallel. One result per
    /// dataset, `None` where a dataset lacks the array. Empty `start` and
    /// `count` read whole arrays.
    ///
    /// `datasets` is any slice of names (`&[String]`, `&[&str]`), so the one
    /// type argument reads as `read_array_across::<f32>(…)`.
    ///
    /// The work runs as one job on rayon's pool (parts of the names on
    /// every core); code that is not async can call
    /// [`Atlas::read_array_across_blocking`] instead, which saves the
    /// handoffs to and from the pool.
    pub async fn read_array_across<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<Vec<Option<ArrayD<T>>>> {
        self.on_rayon(array, datasets, move |inner, names, array, file| {
            across(inner, names, array, file, &start, &count)
        })
        .await
    }

    /// [`Atlas::read_array_across`] on the calling thread, for callers that
    /// are not in async code (a Python binding, a thread of their own): the
    /// calling thread reads the first part of the names itself and rayon's
    /// pool the others, with no handoff to start or finish (which costs a
    /// tenth of a scan of 10,000 small arrays). The same results and errors.
    ///
    /// # Panics
    ///
    /// When called from async code (it waits for the array file's lock and
    /// does I/O, which would block a runtime thread), as tokio's own
    /// blocking calls do.
    pub fn read_array_across_blocking<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: &[u64],
        count: &[u64],
    ) -> Result<Vec<Option<ArrayD<T>>>> {
        self.on_this_thread(array, datasets, |inner, names, array, file| {
            across(inner, names, array, file, start, count)
        })
    }

    /// Like [`Atlas::read_array_across`], stacked into one array with a leading
    /// dataset axis. Every dataset must have the array, with equal shapes
    /// (of the hyperslab, when `start` and `count` are given).
    ///
    /// A whole array stored as one block (the common case of a profile) is
    /// decoded straight into its place in one buffer per core, with no
    /// array built for it; other reads (several chunks, pending writes, a
    /// hyperslab) build the dataset's array and append its cells. The
    /// parts' buffers are joined (the first has room for all). The errors
    /// come in name order, all of the registry's first (an unknown dataset,
    /// then a dataset without the array or shapes that differ), then the
    /// array file's, then the reads', whatever the number of cores.
    pub async fn read_array_across_stacked<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: Vec<u64>,
        count: Vec<u64>,
    ) -> Result<ArrayD<T>> {
        self.on_rayon(array, datasets, move |inner, names, array, file| {
            stacked(inner, names, array, file, &start, &count)
        })
        .await
    }

    /// [`Atlas::read_array_across_stacked`] on the calling thread, as
    /// [`Atlas::read_array_across_blocking`] is to
    /// [`Atlas::read_array_across`]: the same result and errors.
    ///
    /// # Panics
    ///
    /// When called from async code, as [`Atlas::read_array_across_blocking`].
    pub fn read_array_across_stacked_blocking<T: ArrayElement>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        start: &[u64],
        count: &[u64],
    ) -> Result<ArrayD<T>> {
        self.on_this_thread(array, datasets, |inner, names, array, file| {
            stacked(inner, names, array, file, start, count)
        })
    }

    /// The async forms' common path: `work` as one job on rayon's pool, given
    /// the names and `array`'s file (read-locked; its error, if any, to be
    /// reported after the registry's). Registry lookups may read blocks, the
    /// rest decodes.
    async fn on_rayon<R: Send + 'static>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        work: impl FnOnce(&Inner, &[&str], &str, Result<Option<&ArrayFile>>) -> R + Send + 'static,
    ) -> R {
        let inner = Arc::clone(&self.inner);
        let names = Names::new(datasets);
        // The array file first (the registry lookups name the errors that
        // come first, so its error waits for theirs).
        let file = match self.inner.file_async(array).await {
            Ok(Some(f)) => Ok(Some(f.read_owned().await)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        let array = array.to_owned();
        run_on_rayon(move || {
            let (guard, file) = split(file);
            let file = file.map(|()| guard.as_deref());
            work(&inner, &names.refs(), &array, file)
        })
        .await
    }

    /// The blocking forms' common path: `work` on the calling thread, given
    /// the names and `array`'s file as [`Atlas::on_rayon`] gives them.
    fn on_this_thread<R>(
        &self,
        array: &str,
        datasets: &[impl AsRef<str>],
        work: impl FnOnce(&Inner, &[&str], &str, Result<Option<&ArrayFile>>) -> R,
    ) -> R {
        let (handle, file) = split(self.inner.file(array));
        let guard = handle.as_ref().map(|f| f.blocking_read());
        let file = file.map(|()| guard.as_deref());
        let names: Vec<&str> = datasets.iter().map(AsRef::as_ref).collect();
        work(&self.inner, &names, array, file)
    }
}

/// The work of [`Atlas::read_array_across`] on the calling thread:
/// contiguous parts of the names, one per core, each large enough to be
/// worth a task (the first on this thread, the others on rayon's pool),
/// each looked up in the registry then read; each part writes its results
/// into its own slice of the result, and the error reported is the first
/// in name order, registry answers before the array file's error and before
/// reads, so neither depends on the number of cores.
fn across<T: ArrayElement>(
    inner: &Inner,
    names: &[&str],
    array: &str,
    file: Result<Option<&ArrayFile>>,
    start: &[u64],
    count: &[u64],
) -> Result<Vec<Option<ArrayD<T>>>> {
    let n = names.len();
    let per = n
        .div_ceil(rayon::current_num_threads())
        .max(array_format::SCAN_MIN_PART);
    let first = names.first().copied().unwrap_or("");
    let lookup = |part: &[&str]| lookup(inner, part, array);
    let read = |part: &[&str], slots: &mut [Option<ArrayD<T>>], looked: &Looked| {
        let Ok(Some(file)) = &file else {
            return Ok(());
        };
        let region = (start, count);
        read_part(
            file, array, first, part, &looked.1, &looked.0, region, slots,
        )
    };
    // Each part writes its results into its own slice of the result.
    let mut out: Vec<Option<ArrayD<T>>> = Vec::with_capacity(n);
    out.resize_with(n, || None);
    let parts = check_then_read(
        names,
        &mut out,
        per,
        &file,
        |part| {
            let looked = lookup(part);
            let passed = looked.is_ok();
            (looked, passed)
        },
        |looked: &[Result<Looked>]| {
            looked
                .iter()
                .flatten()
                .map(|l| l.1.iter().flatten().count())
                .sum()
        },
        |_, part, slots, looked| read(part, slots, looked.as_ref().expect("passed")),
    );
    let mut reads = Vec::with_capacity(parts.len());
    for (looked, read) in parts {
        looked?;
        reads.push(read.unwrap_or(Ok(())));
    }
    if file?.is_none() {
        return Ok(vec![None; n]);
    }
    for r in reads {
        r?;
    }
    Ok(out)
}

/// The registry's answers for `part`: per name, its entry's position in
/// the answers' entries, `None` where the dataset lacks `array`; the first
/// unknown dataset is an error.
fn lookup(inner: &Inner, part: &[&str], array: &str) -> Result<Looked> {
    let (entries, found) = inner.lookup_schemas(part, array)?;
    let mut schemas = Vec::with_capacity(part.len());
    for (f, d) in found.into_iter().zip(part) {
        schemas.push(match f {
            SchemaOf::NoDataset => {
                return Err(Error::DatasetNotFound {
                    name: (*d).to_owned(),
                })
            }
            SchemaOf::NoArray => None,
            SchemaOf::Schema(k) => Some(k),
        });
    }
    Ok((entries, schemas))
}

/// The work of [`Atlas::read_array_across_stacked`] on the calling thread,
/// in parts as [`across`]: each part looks its names up, checks that each
/// has the array and that their shapes agree, then decodes its arrays into
/// one buffer; the parts' buffers are joined in order. Every part checks
/// before it reads, and errors are reported by kind (lookups, checks, the
/// file, each part's setup, reads), each kind in name order, so the error
/// reported is the one a single part would meet first, on any number of
/// cores.
fn stacked<T: ArrayElement>(
    inner: &Inner,
    names: &[&str],
    array: &str,
    file: Result<Option<&ArrayFile>>,
    start: &[u64],
    count: &[u64],
) -> Result<ArrayD<T>> {
    let n = names.len();
    if n == 0 {
        file?;
        return Ok(ArrayD::from_shape_vec(ndarray::IxDyn(&[0]), Vec::new()).expect("empty"));
    }
    let per = n
        .div_ceil(rayon::current_num_threads())
        .max(array_format::SCAN_MIN_PART);
    let check = |part: &[&str]| -> Result<(Looked, Checked)> {
        let looked = lookup(inner, part, array)?;
        let checked = check_shapes(part, &looked, array, start, count);
        Ok((looked, checked))
    };
    // A part's cells; the first part's buffer, which becomes the result,
    // has room for every part's. The outer error is the part's before any
    // read (its buffer, the array file's index and schemas), the inner one
    // a read's: every part's outer error is reported before any read's, as
    // one part would report them.
    let read = |k: usize, part: &[&str], (looked, c): &(Looked, Checked)| -> PartCells<T> {
        let mut out = Vec::new();
        let Ok(Some(file)) = &file else {
            return Ok(Ok(out));
        };
        let room = if k == 0 { n } else { part.len() };
        out.try_reserve_exact(c.cells.saturating_mul(room))
            .map_err(|_| too_large(part[0], array))?;
        let scan = file
            .scan(part)
            .map_err(|e| Error::array(part[0], array, e))?;
        agree(&scan, file, array, part, &looked.1, &looked.0)?;
        Ok(scan
            .read_extend(start, count, &mut out)
            .map(|()| out)
            .map_err(|(i, e)| Error::array(part[i], array, e)))
    };
    let mut slots = vec![(); n];
    let parts = check_then_read(
        names,
        &mut slots,
        per,
        &file,
        |part| {
            let checked = check(part);
            let passed = checked.as_ref().is_ok_and(|c| c.1.error.is_none());
            (checked, passed)
        },
        |_| n,
        |k, part, _, checked| read(k, part, checked.as_ref().expect("passed")),
    );
    // Errors in the order one part would meet them: the registry's answers
    // (an unknown dataset), then the checks of every part in name order
    // (each part's first shape against the first part's), then the array
    // file's error, then each part's error before its reads, then the
    // reads'.
    let mut checks = Vec::with_capacity(parts.len());
    let mut reads = Vec::with_capacity(parts.len());
    for (checked, cells) in parts {
        checks.push(checked?.1);
        reads.push(cells.unwrap_or(Ok(Ok(Vec::new()))));
    }
    let mut shape: Option<Vec<u64>> = None;
    for (c, part) in checks.into_iter().zip(names.chunks(per)) {
        let mut error = c.error;
        if let Some((0, e)) = error {
            return Err(e);
        }
        match &shape {
            None => shape = Some(c.shape),
            Some(s) if *s != c.shape => return Err(shapes_differ(array, part[0], s, &c.shape)),
            Some(_) => {}
        }
        if let Some((_, e)) = error.take() {
            return Err(e);
        }
    }
    let shape = shape.expect("one part at least");
    if file?.is_none() {
        return Err(Error::ArrayNotFound {
            dataset: names[0].to_owned(),
            array: array.to_owned(),
        });
    }
    let reads = reads.into_iter().collect::<Result<Vec<_>>>()?;
    let mut reads = reads.into_iter();
    let mut cells = reads.next().expect("one part at least")?;
    for r in reads {
        cells.append(&mut r?);
    }
    let mut dims = Vec::with_capacity(shape.len() + 1);
    dims.push(n);
    for &d in &shape {
        dims.push(usize::try_from(d).map_err(|_| too_large(names[0], array))?);
    }
    // Every part read its names' cells, of the one shape; ndarray still
    // refuses a shape whose extents multiply past `isize` (even with a
    // zero extent among them).
    ArrayD::from_shape_vec(ndarray::IxDyn(&dims), cells).map_err(|_| too_large(names[0], array))
}

/// One part's cells: the error before its reads (outer), or its reads'.
type PartCells<T> = Result<Result<Vec<T>>>;

/// One part's names checked for a stacked read: the shape of the first
/// one's read, its cell count, and the first name (by position in the
/// part) whose read cannot be stacked with it.
struct Checked {
    shape: Vec<u64>,
    cells: usize,
    error: Option<(usize, Error)>,
}

/// Checks `part`'s registry answers for a stacked read of the region
/// (`start`, `count`; empty: whole arrays): every name has the array, the
/// region is valid, and every name's read has the first one's shape.
fn check_shapes(
    part: &[&str],
    (entries, schemas): &Looked,
    array: &str,
    start: &[u64],
    count: &[u64],
) -> Checked {
    let whole = start.is_empty() && count.is_empty();
    let mut first: Option<Vec<u64>> = None;
    // Datasets share entries: the entry last found to agree is not
    // compared again.
    let mut agreed: Option<u32> = None;
    for (i, (&d, at)) in part.iter().zip(schemas).enumerate() {
        // An error at the part's first name leaves no shape (none is used).
        let fail =
            |first: Option<Vec<u64>>, e: Error| checked(first.unwrap_or_default(), Some((i, e)));
        let Some(at) = *at else {
            let e = Error::ArrayNotFound {
                dataset: d.to_owned(),
                array: array.to_owned(),
            };
            return fail(first, e);
        };
        if agreed == Some(at) && whole {
            continue;
        }
        let schema = &entries.get(at).schema;
        let shape = if whole {
            schema.shape.clone()
        } else {
            match schema.resolve_region(d, start, count) {
                Ok((_, c)) => c,
                Err(e) => return fail(first, Error::array(d, array, e)),
            }
        };
        match &first {
            None => first = Some(shape),
            Some(f) if *f != shape => {
                let e = shapes_differ(array, d, f, &shape);
                return fail(first, e);
            }
            Some(_) => {}
        }
        agreed = Some(at);
    }
    checked(first.unwrap_or_default(), None)
}

/// A part's [`Checked`] with its first shape.
fn checked(shape: Vec<u64>, error: Option<(usize, Error)>) -> Checked {
    let cells = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(usize::try_from(d).ok()?))
        .unwrap_or(usize::MAX);
    Checked {
        shape,
        cells,
        error,
    }
}

/// The error of a stacked read whose `dataset` reads as `actual` where the
/// datasets before it read as `expected`.
fn shapes_differ(array: &str, dataset: &str, expected: &[u64], actual: &[u64]) -> Error {
    let usizes = |s: &[u64]| s.iter().map(|&d| d as usize).collect();
    Error::ShapesDiffer {
        array: array.to_owned(),
        dataset: dataset.to_owned(),
        expected: usizes(expected),
        actual: usizes(actual),
    }
}

/// The error of a stacked read too large for memory.
fn too_large(dataset: &str, array: &str) -> Error {
    Error::array(
        dataset,
        array,
        array_format::Error::Unrepresentable {
            name: array.to_owned(),
            reason: "the stacked read does not fit in memory; read it in parts",
        },
    )
}

/// A result holding a value (an array file or its guard) split into the
/// value and the result's error, so that the value can be borrowed and the
/// error, owned, still reported in its turn.
fn split<G>(r: Result<Option<G>>) -> (Option<G>, Result<()>) {
    match r {
        Ok(g) => (g, Ok(())),
        Err(e) => (None, Err(e)),
    }
}

/// Dataset names in one buffer: one allocation for thousands of names
/// (the rayon job needs owned names).
struct Names {
    buf: String,
    /// Where each name ends in `buf`.
    ends: Vec<usize>,
}

impl Names {
    fn new(names: &[impl AsRef<str>]) -> Names {
        let bytes = names.iter().map(|n| n.as_ref().len()).sum();
        let mut buf = String::with_capacity(bytes);
        let mut ends = Vec::with_capacity(names.len());
        for n in names {
            buf.push_str(n.as_ref());
            ends.push(buf.len());
        }
        Names { buf, ends }
    }

    fn refs(&self) -> Vec<&str> {
        let mut from = 0;
        self.ends
            .iter()
            .map(|&end| {
                let name = &self.buf[from..end];
                from = end;
                name
            })
            .collect()
    }
}

/// One part's registry answers: the entries, and per name the position of
/// its entry there (`None`: no such array).
type Looked = (Entries, Vec<Option<u32>>);

/// The fewest names for which [`check_then_read`] builds the array file's
/// index beside the checks: a call this large nearly always reads the 64
/// names from which a scan builds the whole index.
const EAGER_INDEX_FROM: usize = 1024;

/// Runs `check` then `read` on each contiguous part of `names` (`per` names
/// each, with its slots of `out`): `check` gives its answer and whether the
/// part may be read; `read` gets the part's number, names, slots and
/// answer. With the array file's index built (or no file), each part
/// checks then reads in one job. Otherwise the index is built once, then,
/// if every part passed, the parts read, so no part waits while another
/// builds it: for a call of [`EAGER_INDEX_FROM`] names or more, while the
/// parts check (the footers decoded beside the registry lookups, at the
/// cost of a build that a failed check, or a call that reads few of its
/// names, did not need); for a smaller call, after the checks, when they
/// leave enough names to read (`present` counts them from the answers).
/// One `(answer, read)` per part, in order; `None` where the part was not
/// read.
fn check_then_read<S: Send, C: Send + Sync, R: Send>(
    names: &[&str],
    out: &mut [S],
    per: usize,
    file: &Result<Option<&ArrayFile>>,
    check: impl Fn(&[&str]) -> (C, bool) + Sync,
    present: impl FnOnce(&[C]) -> usize,
    read: impl Fn(usize, &[&str], &mut [S], &C) -> R + Sync,
) -> Vec<(C, Option<R>)> {
    let index_built = match file {
        Ok(Some(f)) => f.scan_ready(names.len()),
        _ => true,
    };
    if index_built {
        return run_parts(names, out, per, |k, part, slots| {
            let (c, passed) = check(part);
            let r = passed.then(|| read(k, part, slots, &c));
            (c, r)
        });
    }
    // A call of EAGER_INDEX_FROM names or more builds the index while its
    // parts check (it reads only the file's footers; its error, if any, is
    // the first part's read error). A smaller call checks first and builds
    // the index only if its answers leave enough names to read (`present`).
    let eager = names.len() >= EAGER_INDEX_FROM;
    let build = |names: usize| {
        if let Ok(Some(f)) = file {
            let _ = f.prepare_scan(names);
        }
    };
    let mut checks = || run_parts(names, out, per, |_, part, _| check(part));
    let checked = if eager {
        rayon::join(checks, || build(names.len())).0
    } else {
        checks()
    };
    if !checked.iter().all(|c| c.1) {
        return checked.into_iter().map(|(c, _)| (c, None)).collect();
    }
    let answers: Vec<C> = checked.into_iter().map(|(c, _)| c).collect();
    if !eager {
        build(present(&answers));
    }
    let reads = run_parts(names, out, per, |k, part, slots| {
        read(k, part, slots, &answers[k])
    });
    answers
        .into_iter()
        .zip(reads.into_iter().map(Some))
        .collect()
}

/// Runs `f` on each contiguous part of `names` (`per` names each; `f` is
/// given the part's number, its names and its slots of `out`): the first
/// part on the calling thread, the others on rayon's pool. One answer per
/// part, in order.
fn run_parts<S: Send, R: Send>(
    names: &[&str],
    out: &mut [S],
    per: usize,
    f: impl Fn(usize, &[&str], &mut [S]) -> R + Sync,
) -> Vec<R> {
    let mut answers: Vec<Option<R>> = (0..names.len().div_ceil(per)).map(|_| None).collect();
    rayon::in_place_scope(|s| {
        let mut parts = names
            .chunks(per)
            .zip(out.chunks_mut(per))
            .zip(answers.iter_mut())
            .enumerate();
        let first = parts.next();
        let f = &f;
        for (k, ((part, slots), answer)) in parts {
            s.spawn(move |_| *answer = Some(f(k, part, slots)));
        }
        if let Some((k, ((part, slots), answer))) = first {
            *answer = Some(f(k, part, slots));
        }
    });
    answers
        .into_iter()
        .map(|a| a.expect("every part ran"))
        .collect()
}

/// Runs `f` on rayon's pool and waits for it without blocking the runtime:
/// one hop to a pool thread, which runs its share of `f`'s parallel work
/// itself. A panic in `f` is raised again here.
async fn run_on_rayon<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.await.expect("the rayon job always sends") {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// One part of [`Atlas::read_array_across`]: `names` with the registry's
/// answers (per name, its entry in `entries`; `None`: no such array),
/// resolved in the array file, checked against the file's schemas,
/// then read into `slots` (one per name, `None` on entry). `first` names the
/// errors of the file as a whole; `region` is the (start, count) read.
#[allow(clippy::too_many_arguments)] // one part's names, answers, region and slots
fn read_part<T: ArrayElement>(
    file: &ArrayFile,
    array: &str,
    first: &str,
    names: &[&str],
    schemas: &[Option<u32>],
    entries: &Entries,
    (start, count): (&[u64], &[u64]),
    slots: &mut [Option<ArrayD<T>>],
) -> Result<()> {
    let present: Vec<&str> = names
        .iter()
        .zip(schemas)
        .filter(|(_, s)| s.is_some())
        .map(|(d, _)| *d)
        .collect();
    let scan = file
        .scan(&present)
        .map_err(|e| Error::array(first, array, e))?;
    agree(&scan, file, array, &present, schemas, entries)?;
    let mut got = scan.read::<T>(start, count, 1).into_iter();
    let mut k = 0;
    for (at, slot) in schemas.iter().zip(slots) {
        if at.is_none() {
            continue;
        }
        let r = got.next().expect("one result per name");
        *slot = Some(r.map_err(|e| Error::array(present[k], array, e))?);
        k += 1;
    }
    Ok(())
}

/// Checks that the array file's schema of every name of `scan` (the names
/// `present`, their registry answers the `Some`s of `schemas`) is the
/// registry's: as in `DatasetView::read_array`, never read with sizes the
/// registry did not agree to. Both sides share schema objects between
/// datasets (the registry's dictionary, the array file's consecutive equal
/// definitions), so a pair found equal once is not compared again.
fn agree(
    scan: &array_format::Scan<'_>,
    file: &ArrayFile,
    array: &str,
    present: &[&str],
    schemas: &[Option<u32>],
    entries: &Entries,
) -> Result<()> {
    let mut agreed: Option<(u32, &ArraySchema)> = None;
    for (k, &at) in schemas.iter().flatten().enumerate() {
        let d = present[k];
        let in_file = scan.try_schema(k).map_err(|e| Error::array(d, array, e))?;
        if let (Some(f), Some((r0, f0))) = (in_file, agreed) {
            if at == r0 && std::ptr::eq(f, f0) {
                continue;
            }
        }
        if let Some(f) = in_file.filter(|f| *entries.get(at).schema == **f) {
            agreed = Some((at, f));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use array_format::MemoryStorage;
    use ndarray::{ArrayD, IxDyn};

    use crate::{Atlas, OpenOptions, StoreConfig};

    /// 2,000 datasets `d0000`… with `A`; the 200 whose number is a
    /// multiple of 10 also have `B`.
    async fn store(storage: &MemoryStorage) -> Vec<String> {
        let a = Atlas::create_with(
            Arc::new(storage.clone()),
            Path::new("/s"),
            StoreConfig::default(),
        )
        .await
        .unwrap();
        let names: Vec<String> = (0..2000).map(|i| format!("d{i:04}")).collect();
        for (i, n) in names.iter().enumerate() {
            let ds = a.create_dataset(n).await.unwrap();
            let arrays: &[&str] = if i % 10 == 0 { &["A", "B"] } else { &["A"] };
            for &arr in arrays {
                ds.define_array::<f32>(arr, vec!["N".into()], vec![2], None, None)
                    .await
                    .unwrap();
                let v = i as f32;
                let data = ArrayD::from_shape_vec(IxDyn(&[2]), vec![v, -v]).unwrap();
                ds.write_array(arr, vec![], data.view()).await.unwrap();
            }
        }
        a.flush().await.unwrap();
        names
    }

    async fn open(storage: &MemoryStorage) -> Atlas {
        Atlas::open_with(
            Arc::new(storage.clone()),
            Path::new("/s"),
            OpenOptions::default(),
        )
        .await
        .unwrap()
    }

    async fn index_built(a: &Atlas, array: &str) -> bool {
        let f = a.inner.file(array).unwrap().expect("the array has a file");
        let f = f.read().await;
        f.scan_ready(usize::MAX)
    }

    /// A call of fewer than `EAGER_INDEX_FROM` names builds the array
    /// file's whole index only when 64 or more of them have the array; a
    /// call of that many names builds it beside the checks, even when the
    /// check then fails. The cells read are the same either way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_index_is_built_early_only_for_large_calls() {
        let storage = MemoryStorage::new();
        let names = store(&storage).await;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let cells = |parts: Vec<Option<ArrayD<f32>>>| -> Vec<Option<Vec<f32>>> {
            parts
                .into_iter()
                .map(|p| p.map(|a| a.iter().copied().collect()))
                .collect()
        };
        let want = |range: std::ops::Range<usize>| -> Vec<Option<Vec<f32>>> {
            range
                .map(|i| (i % 10 == 0).then(|| vec![i as f32, -(i as f32)]))
                .collect()
        };

        // 500 names, 50 of them with `B`: read one by one, no whole index.
        let a = open(&storage).await;
        let got = a
            .read_array_across::<f32>("B", &refs[..500], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(cells(got), want(0..500));
        assert!(!index_built(&a, "B").await);
        // 700 names, 70 with `B`: built after the checks.
        let got = a
            .read_array_across::<f32>("B", &refs[..700], vec![], vec![])
            .await
            .unwrap();
        assert_eq!(cells(got), want(0..700));
        assert!(index_built(&a, "B").await);

        // All 2,000 on a fresh handle: built beside the checks.
        let a = open(&storage).await;
        let got = a
            .read_array_across::<f32>("B", &refs, vec![], vec![])
            .await
            .unwrap();
        assert_eq!(cells(got), want(0..2000));
        assert!(index_built(&a, "B").await);

        // 1,024 names, one unknown: the error, and the index built anyway.
        let a = open(&storage).await;
        let mut bad = refs[..1024].to_vec();
        bad[600] = "nope";
        let err = a
            .read_array_across::<f32>("B", &bad, vec![], vec![])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(index_built(&a, "B").await);
        // Fewer names with the same unknown one: no index.
        let a = open(&storage).await;
        let err = a
            .read_array_across::<f32>("B", &bad[..1000], vec![], vec![])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!index_built(&a, "B").await);
    }
}
