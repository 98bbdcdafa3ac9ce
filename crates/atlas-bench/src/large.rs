//! Large arrays against libnetcdf (feature `netcdf4`, part of `peers`).
//!
//! - [`NcGrid`]: the W5 grid written as a NetCDF-4 file with the same
//!   256 × 256 chunks (deflate level 1 + shuffle, the common choice in
//!   climate archives, and no filter), read back through libnetcdf; the
//!   hyperslab workload runs it beside ATLAS and the other peers.
//! - [`cmip6`]: the CMIP6 `ta` (air temperature) samples of
//!   `get-realdata.sh`, imported into ATLAS and written to zarrs with the
//!   chunk shapes ATLAS chose; whole-array, one-time-step and one-column
//!   reads of every file from each, against libnetcdf reading the original
//!   NetCDF-4 files, alternating in one run.
//!
//! libnetcdf runs with its chunk cache off (`nc_set_chunk_cache(0, 0, 0)`)
//! and ATLAS without its caches, so every read decodes what it touches.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use atlas::{Atlas, DatasetView, StoreConfig};
use atlas_netcdf::{BulkOptions, FileOutcome};
use serde_json::{json, Value};

use crate::compare::{check, print_table, rows_json, to_vec, Row};
use crate::peers::{GridSpec, System};
use crate::{fmt_dur, Timing};

/// The variable read from every CMIP6 sample.
const VAR: &str = "ta";

/// Turns libnetcdf's default chunk cache off for the files opened after it.
#[allow(unsafe_code)]
pub(crate) fn chunk_cache_off() -> Result<()> {
    let _lock = netcdf_sys::libnetcdf_lock.lock();
    // SAFETY: nc_set_chunk_cache only stores three numbers that later opens
    // read; calls into libnetcdf are serialised by the lock `netcdf` uses.
    let rc = unsafe { netcdf_sys::nc_set_chunk_cache(0, 0, 0.0) };
    ensure!(rc == 0, "nc_set_chunk_cache failed: {rc}");
    Ok(())
}

/// The W5 grid as one NetCDF-4 file read through libnetcdf.
pub struct NcGrid {
    name: &'static str,
    /// Deflate level (with shuffle), or `None` for no filter.
    deflate: Option<i32>,
    file: Option<netcdf::File>,
}

/// The NetCDF-4 grid peers: deflate level 1 + shuffle, and no filter.
pub fn nc_grid_systems() -> Vec<Box<dyn System>> {
    vec![
        Box::new(NcGrid {
            name: "libnetcdf zlib1+shuf",
            deflate: Some(1),
            file: None,
        }),
        Box::new(NcGrid {
            name: "libnetcdf no filter",
            deflate: None,
            file: None,
        }),
    ]
}

fn grid_only(name: &str) -> Result<()> {
    bail!("{name} runs the grid workloads only")
}

impl System for NcGrid {
    fn name(&self) -> &'static str {
        self.name
    }

    fn ingest(&mut self, _: &Path, _: &crate::data::Profiles) -> Result<()> {
        grid_only(self.name)
    }

    fn reopen_read(&self, _: &Path, _: u64) -> Result<Vec<f32>> {
        grid_only(self.name).map(|()| Vec::new())
    }

    fn open(&mut self, _: &Path, _: u64) -> Result<()> {
        grid_only(self.name)
    }

    fn scan(&self, _: &str, _: &[String]) -> Result<Vec<Vec<f32>>> {
        grid_only(self.name).map(|()| Vec::new())
    }

    fn read_dataset(&self) -> Result<Vec<Vec<f32>>> {
        grid_only(self.name).map(|()| Vec::new())
    }

    fn close(&mut self) {
        self.file = None;
    }

    fn update(&mut self, _: &[u64], _: u64) -> Result<()> {
        grid_only(self.name)
    }

    fn open_writer(&mut self, _: &Path) -> Result<()> {
        grid_only(self.name)
    }

    fn grid_write(&mut self, root: &Path, spec: GridSpec, data: &[f32]) -> Result<()> {
        std::fs::create_dir_all(root)?;
        let mut f = netcdf::create(root.join("grid.nc"))?;
        f.add_dimension("y", spec.shape[0] as usize)?;
        f.add_dimension("x", spec.shape[1] as usize)?;
        let mut v = f.add_variable::<f32>("T", &["y", "x"])?;
        v.set_chunking(&[spec.chunk[0] as usize, spec.chunk[1] as usize])?;
        if let Some(level) = self.deflate {
            v.set_compression(level, true)?;
        }
        v.put_values(data, ..)?;
        f.close()?;
        Ok(())
    }

    fn grid_open(&mut self, root: &Path, _: GridSpec) -> Result<()> {
        chunk_cache_off()?;
        self.file = Some(netcdf::open(root.join("grid.nc"))?);
        Ok(())
    }

    fn grid_read(&self, start: [u64; 2], count: [u64; 2]) -> Result<Vec<f32>> {
        let f = self.file.as_ref().context("grid_open first")?;
        let v = f.variable("T").context("no T")?;
        let start = start.map(|s| s as usize);
        let count = count.map(|c| c as usize);
        Ok(v.get_values::<f32, _>((&start, &count))?)
    }
}

/// A read's `start` and `count`.
type Region = (Vec<u64>, Vec<u64>);

/// One CMIP6 sample: its file, its dataset in ATLAS, the shape of its `ta`
/// and the regions read (computed once, outside the timed reads).
struct Sample {
    path: PathBuf,
    dataset: String,
    shape: Vec<u64>,
    boxes: [Region; 3],
}

impl Sample {
    fn new(path: PathBuf, dataset: String, shape: Vec<u64>) -> Sample {
        let boxes = Sample::boxes(&shape);
        Sample {
            path,
            dataset,
            shape,
            boxes,
        }
    }

    /// `[start, count]` of the reads: everything, the middle time step, the
    /// column of every time at the first level and the middle cell.
    fn boxes(s: &[u64]) -> [Region; 3] {
        let whole = (vec![0; s.len()], s.to_vec());
        let mut step_start = vec![0; s.len()];
        let mut step_count = s.to_vec();
        step_start[0] = s[0] / 2;
        step_count[0] = 1;
        let mut col_start: Vec<u64> = s.iter().map(|&n| n / 2).collect();
        let mut col_count = vec![1; s.len()];
        col_start[0] = 0;
        col_count[0] = s[0];
        if s.len() == 4 {
            col_start[1] = 0;
        }
        [whole, (step_start, step_count), (col_start, col_count)]
    }
}

/// The read systems of the CMIP6 rows.
enum Reader {
    Atlas(Atlas),
    #[cfg(feature = "peers")]
    Zarrs(Vec<zarrs::array::Array<zarrs::filesystem::FilesystemStore>>),
    /// Opening each file, then reading.
    Nc,
    /// Every file opened beforehand (untimed), as ATLAS's handle is.
    NcOpen(Vec<netcdf::File>),
}

impl Reader {
    fn name(&self) -> &'static str {
        match self {
            Reader::Atlas(_) => "ATLAS",
            #[cfg(feature = "peers")]
            Reader::Zarrs(_) => "zarrs",
            Reader::Nc => "libnetcdf open+read",
            Reader::NcOpen(_) => "libnetcdf files open",
        }
    }

    /// Reads box `b` of every sample; the time of the reads alone.
    fn read_all(&self, samples: &[Sample], b: usize) -> Result<(Vec<Vec<f32>>, Duration)> {
        let t = Instant::now();
        let mut out = Vec::with_capacity(samples.len());
        match self {
            Reader::Atlas(store) => {
                for s in samples {
                    let (start, count) = &s.boxes[b];
                    let ds: DatasetView = crate::peers::block(store.open_dataset(&s.dataset))?;
                    let a = ds
                        .read_array_blocking::<f32>(VAR, start, count)?
                        .context("no ta")?;
                    out.push(to_vec(a));
                }
            }
            #[cfg(feature = "peers")]
            Reader::Zarrs(arrays) => {
                for (s, a) in samples.iter().zip(arrays) {
                    let (start, count) = &s.boxes[b];
                    out.push(crate::peers::zarrs::read_box(a, start, count)?);
                }
            }
            Reader::Nc => {
                for s in samples {
                    let (start, count) = &s.boxes[b];
                    out.push(nc_read(&netcdf::open(&s.path)?, start, count)?);
                }
            }
            Reader::NcOpen(files) => {
                for (s, f) in samples.iter().zip(files) {
                    let (start, count) = &s.boxes[b];
                    out.push(nc_read(f, start, count)?);
                }
            }
        }
        Ok((out, t.elapsed()))
    }
}

/// The region `start` + `count` of `ta` in an open `NetCDF` file.
fn nc_read(f: &netcdf::File, start: &[u64], count: &[u64]) -> Result<Vec<f32>> {
    let v = f.variable(VAR).context("no ta")?;
    let start: Vec<usize> = start.iter().map(|&x| x as usize).collect();
    let count: Vec<usize> = count.iter().map(|&x| x as usize).collect();
    Ok(v.get_values::<f32, _>((start, count))?)
}

/// Every CMIP6 sample whose `ta` is `f32`, or `None` when the samples
/// cannot be had.
fn samples() -> Result<Option<Vec<PathBuf>>> {
    let dir = match atlas_netcdf::realdata::samples_dir(None) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(None),
        Err(e) => {
            eprintln!("!!! the CMIP6 samples could not be fetched: {e}");
            return Ok(None);
        }
    };
    let mut out = Vec::new();
    for p in atlas_netcdf::realdata::nc_files(&dir.join("esmvaltool"))? {
        if !p.to_string_lossy().contains("/CMIP6/") {
            continue;
        }
        let f = netcdf::open(&p)?;
        if let Some(v) = f.variable(VAR) {
            if matches!(
                v.vartype(),
                netcdf::types::NcVariableType::Float(netcdf::types::FloatType::F32)
            ) {
                out.push(p);
            }
        }
    }
    Ok(Some(out))
}

/// The CMIP6 workload: import, then three reads of `ta` from every sample.
pub async fn cmip6(quick: bool) -> Result<Value> {
    chunk_cache_off()?;
    let Some(files) = samples()? else {
        eprintln!("!!! get-realdata.sh is absent: cmip6 skipped");
        return Ok(json!({"skipped": "samples absent"}));
    };
    ensure!(!files.is_empty(), "no CMIP6 `ta` sample found");
    let bytes_in: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();

    // Decoding alone (every variable of every file, one thread).
    let (t_decode, raw) = crate::netcdf::decode_only(&files)?;

    // Import (decoding on every core, then writing and committing).
    let tmp = tempfile::tempdir()?;
    let store_path = tmp.path().join("store");
    let store = Atlas::create_path(&store_path, StoreConfig::default()).await?;
    let t = Instant::now();
    let report =
        atlas_netcdf::import_paths(&store, &files, &BulkOptions::default(), |_, _| {}).await?;
    let t_import = t.elapsed();
    ensure!(
        report.failed == 0 && report.imported == files.len(),
        "import: {} of {} imported, {} failed",
        report.imported,
        files.len(),
        report.failed
    );
    let mut samples = Vec::new();
    for (path, outcome) in &report.files {
        let FileOutcome::Imported { dataset, .. } = outcome else {
            bail!("{} not imported", path.display());
        };
        let ds = store.open_dataset(dataset).await?;
        let schema = ds.array_schema(VAR)?.context("no ta")?;
        samples.push((
            Sample::new(path.clone(), dataset.clone(), schema.shape.clone()),
            schema.chunk_shape,
        ));
    }
    drop(store);
    let stored = crate::netcdf::du(&store_path);

    // zarrs: the same arrays with the chunk shapes ATLAS chose.
    let mut readers = vec![Reader::Atlas(
        crate::workloads::open_uncached(&store_path).await?,
    )];
    #[cfg(feature = "peers")]
    let zarrs_write = {
        let zroot = tmp.path().join("zarrs");
        let t = Instant::now();
        let mut arrays = Vec::new();
        for (k, (s, chunk)) in samples.iter().enumerate() {
            let f = netcdf::open(&s.path)?;
            let data = f.variable(VAR).context("no ta")?.get_values::<f32, _>(..)?;
            arrays.push(crate::peers::zarrs::write_array(
                &zroot,
                &format!("/s{k}"),
                &s.shape,
                chunk,
                &data,
            )?);
        }
        readers.push(Reader::Zarrs(arrays));
        t.elapsed()
    };
    let samples: Vec<Sample> = samples.into_iter().map(|(s, _)| s).collect();
    readers.push(Reader::Nc);
    let open = samples
        .iter()
        .map(|s| netcdf::open(&s.path))
        .collect::<Result<Vec<_>, _>>()?;
    readers.push(Reader::NcOpen(open));

    // The reference: libnetcdf's values.
    let mut want = Vec::new();
    for b in 0..3 {
        want.push(Reader::Nc.read_all(&samples, b)?.0);
    }
    let reps = if quick { 5 } else { 11 };
    let names: Vec<&str> = readers.iter().map(Reader::name).collect();
    let labels = [
        "CMIP6 ta whole, every file",
        "CMIP6 ta one time step",
        "CMIP6 ta one column, all times",
    ];
    let mut rows: Vec<Row> = Vec::new();
    for (b, label) in labels.iter().enumerate() {
        let mut times = vec![Vec::new(); readers.len()];
        for rep in 0..=reps {
            for (k, r) in readers.iter().enumerate() {
                let (got, d) =
                    tokio::task::block_in_place(|| r.read_all(&samples, b)).context(r.name())?;
                for (g, w) in got.iter().zip(&want[b]) {
                    check(r.name(), g, w)?;
                }
                if rep > 0 {
                    times[k].push(d);
                }
            }
        }
        rows.push((
            (*label).to_owned(),
            times
                .into_iter()
                .map(|v| Some(Timing::from_samples(v)))
                .collect(),
        ));
    }
    let cells: u64 = samples
        .iter()
        .map(|s| s.shape.iter().product::<u64>())
        .sum();
    let largest = samples
        .iter()
        .max_by_key(|s| s.shape.iter().product::<u64>())
        .map(|s| s.shape.clone())
        .unwrap_or_default();
    println!(
        "{} CMIP6 `ta` files, {:.1} MB on disk, {:.1} MB of `ta` (all variables {:.1} MB); \
         largest `ta` {largest:?}; decode alone {} (1 thread), import {} ({} commits), \
         stored {:.1} MB",
        samples.len(),
        bytes_in as f64 / 1e6,
        cells as f64 * 4.0 / 1e6,
        raw as f64 / 1e6,
        fmt_dur(t_decode),
        fmt_dur(t_import),
        report.commits,
        stored as f64 / 1e6,
    );
    print_table("(reads of every file)", &names, &rows);
    let mut out = rows_json(&names, &rows);
    out["files"] = json!(samples.len());
    out["largest_shape"] = json!(largest);
    out["bytes_in"] = json!(bytes_in);
    out["ta_bytes"] = json!(cells * 4);
    out["decode_s"] = json!(t_decode.as_secs_f64());
    out["import_s"] = json!(t_import.as_secs_f64());
    out["stored_bytes"] = json!(stored);
    #[cfg(feature = "peers")]
    {
        out["zarrs_write_s"] = json!(zarrs_write.as_secs_f64());
    }
    Ok(out)
}
