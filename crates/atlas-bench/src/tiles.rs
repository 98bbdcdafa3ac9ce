//! The `tiles` workload: issue 17's second harness, rebuilt here so that its
//! figures come from the same run as the peers'. 2,000 datasets, each one
//! 64 × 128 `f32` array (32 KiB, one chunk), for ATLAS, zarrs and the
//! predecessor (atlas-rust 0.14), alternating system by system:
//!
//! - ingest + flush, through the per-dataset calls, and again through each
//!   system's call for many datasets (ATLAS's `create_datasets`; the peers
//!   have none);
//! - rewrite 1% of the datasets + flush;
//! - compaction after such updates (zarrs has none);
//! - a scan of every dataset on a fresh handle, open included;
//! - per-dataset reads of every dataset on a fresh handle (opened untimed),
//!   one at a time and with 8 in flight (8 threads, each reading its eighth);
//! - single-dataset reads of random datasets on a warm handle, each timed on
//!   its own: median and 99th percentile.
//!
//! Every value read is checked against the generator after the clock stops.
//! The 300 × 300 windows of the same harness are in `hyperslab` (they need a
//! grid larger than a tile).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use atlas::{Atlas, OpenOptions, StoreConfig};
use ndarray::{ArrayViewD, IxDyn};
use serde_json::{json, Value};
use tokio::runtime::Handle;

use crate::compare::{check, to_vec};
use crate::data::{grid, Rng};
use crate::fmt_dur;

/// Rows and columns of every tile.
const SHAPE: [usize; 2] = [64, 128];
/// The one array of every dataset.
const ARRAY: &str = "field";
/// Reads in flight in the concurrent form.
const IN_FLIGHT: usize = 8;

fn tile_name(i: u64) -> String {
    format!("tile_{i:05}")
}

/// The cells of tile `i` at version `v`.
fn tile(i: u64, v: u64) -> Vec<f32> {
    grid(i.wrapping_mul(31) ^ (v << 40), SHAPE[0], SHAPE[1])
}

/// Runs `f` to completion on `h`, from a runtime thread or any other.
fn on<F: std::future::Future>(h: &Handle, f: F) -> F::Output {
    if Handle::try_current().is_ok() {
        tokio::task::block_in_place(|| h.block_on(f))
    } else {
        h.block_on(f)
    }
}

/// One store under test, behind a synchronous interface. Tile `i` is the
/// dataset [`tile_name`]`(i)` holding the one array [`ARRAY`].
trait Tiles: Sync {
    /// Short name for tables.
    fn name(&self) -> &'static str;
    /// Creates a store at `root` holding tiles `0..n` at version 0, durable.
    fn ingest(&mut self, root: &Path, tiles: Vec<Vec<f32>>) -> Result<()>;
    /// [`Tiles::ingest`] through the system's call for many datasets at
    /// once, where it has one (ATLAS: `create_datasets`); the others
    /// ingest as [`Tiles::ingest`] does.
    fn ingest_batch(&mut self, root: &Path, tiles: Vec<Vec<f32>>) -> Result<()> {
        self.ingest(root, tiles)
    }
    /// Opens a writer on `root` (untimed).
    fn open_writer(&mut self, root: &Path) -> Result<()>;
    /// Rewrites tiles `ids` with version `v`, durable.
    fn update(&mut self, ids: &[u64], tiles: Vec<Vec<f32>>) -> Result<()>;
    /// Compacts the store opened by [`Tiles::open_writer`]; `false` when the
    /// system has no compaction.
    fn compact(&mut self) -> Result<bool>;
    /// Opens a reader on `root`: a fresh handle.
    fn open(&mut self, root: &Path) -> Result<()>;
    /// Reads tiles `ids` through the system's cross-dataset read.
    fn scan(&self, ids: &[u64]) -> Result<Vec<Vec<f32>>>;
    /// Reads tile `i` through the reader.
    fn read(&self, i: u64) -> Result<Vec<f32>>;
    /// Drops every handle.
    fn close(&mut self);
}

/// ATLAS, default configuration.
#[derive(Default)]
struct AtlasTiles {
    store: Option<Atlas>,
    rt: Option<Handle>,
}

impl AtlasTiles {
    fn store(&self) -> Result<(&Atlas, &Handle)> {
        Ok((
            self.store.as_ref().context("open first")?,
            self.rt.as_ref().context("open first")?,
        ))
    }
}

/// Defines (when `define`) and writes the tile array of `ds`.
async fn put(ds: &atlas::DatasetView, cells: &[f32], define: bool) -> Result<()> {
    if define {
        ds.define_array::<f32>(
            ARRAY,
            vec!["y".into(), "x".into()],
            SHAPE.iter().map(|&s| s as u64).collect(),
            None,
            None,
        )
        .await?;
    }
    let view = ArrayViewD::from_shape(IxDyn(&SHAPE), cells)?;
    ds.write_array(ARRAY, vec![0, 0], view).await?;
    Ok(())
}

impl Tiles for AtlasTiles {
    fn name(&self) -> &'static str {
        "ATLAS"
    }

    fn ingest(&mut self, root: &Path, tiles: Vec<Vec<f32>>) -> Result<()> {
        let h = Handle::current();
        on(&h, async {
            let s = Atlas::create_path(root, StoreConfig::default()).await?;
            for (i, cells) in (0..).zip(&tiles) {
                let ds = s.create_dataset(&tile_name(i)).await?;
                put(&ds, cells, true).await?;
            }
            s.flush().await?;
            Ok(())
        })
    }

    fn ingest_batch(&mut self, root: &Path, tiles: Vec<Vec<f32>>) -> Result<()> {
        let h = Handle::current();
        on(&h, async {
            let s = Atlas::create_path(root, StoreConfig::default()).await?;
            let schema = std::sync::Arc::new(atlas::ArraySchema::new(
                ARRAY,
                atlas::DType::Float32,
                vec!["y".into(), "x".into()],
                SHAPE.iter().map(|&s| s as u64).collect(),
                None,
                None,
            )?);
            let batch = (0..)
                .zip(tiles)
                .map(|(i, cells)| {
                    let mut ds = atlas::NewDataset::new(tile_name(i));
                    let cells = atlas::ndarray::ArrayD::from_shape_vec(IxDyn(&SHAPE), cells)?;
                    ds.arrays.push(atlas::NewArray::new(
                        ARRAY,
                        std::sync::Arc::clone(&schema),
                        Some(cells.into()),
                    ));
                    Ok(ds)
                })
                .collect::<Result<Vec<_>>>()?;
            s.create_datasets(&batch).await?;
            s.flush().await?;
            Ok(())
        })
    }

    fn open_writer(&mut self, root: &Path) -> Result<()> {
        let h = Handle::current();
        let opts = OpenOptions {
            write: true,
            ..OpenOptions::default()
        };
        self.store = Some(on(
            &h,
            Atlas::open_with(
                std::sync::Arc::new(atlas::array_format::LocalStorage),
                root,
                opts,
            ),
        )?);
        self.rt = Some(h);
        Ok(())
    }

    fn update(&mut self, ids: &[u64], tiles: Vec<Vec<f32>>) -> Result<()> {
        let (s, h) = self.store()?;
        on(h, async {
            for (&i, cells) in ids.iter().zip(&tiles) {
                let ds = s.open_dataset(&tile_name(i)).await?;
                put(&ds, cells, false).await?;
            }
            s.flush().await?;
            Ok(())
        })
    }

    fn compact(&mut self) -> Result<bool> {
        let (s, h) = self.store()?;
        on(h, s.compact())?;
        Ok(true)
    }

    fn open(&mut self, root: &Path) -> Result<()> {
        let h = Handle::current();
        self.store = Some(on(&h, Atlas::open_path(root))?);
        self.rt = Some(h);
        Ok(())
    }

    fn scan(&self, ids: &[u64]) -> Result<Vec<Vec<f32>>> {
        let (s, _) = self.store()?;
        let names: Vec<String> = ids.iter().map(|&i| tile_name(i)).collect();
        // The blocking form, as the peers' synchronous calls.
        tokio::task::block_in_place(|| {
            s.read_array_across_blocking::<f32>(ARRAY, &names, &[], &[])?
                .into_iter()
                .map(|a| Ok(to_vec(a.context("missing array")?)))
                .collect()
        })
    }

    fn read(&self, i: u64) -> Result<Vec<f32>> {
        let (s, h) = self.store()?;
        on(h, async {
            let ds = s.open_dataset(&tile_name(i)).await?;
            let a = ds.read_array::<f32>(ARRAY, vec![], vec![]).await?;
            Ok(to_vec(a.context("missing array")?))
        })
    }

    fn close(&mut self) {
        self.store = None;
    }
}

#[cfg(feature = "peers")]
mod peers {
    //! zarrs and the predecessor behind [`Tiles`].

    use std::path::Path;
    use std::sync::Arc;

    use anyhow::{Context, Result};
    use atlas_rust::{Atlas, Codec, StoreConfig};
    use ndarray::{ArrayView, IxDyn};
    use tokio::runtime::Handle;
    use zarrs::array::{data_type, Array, ArrayBuilder};
    use zarrs::filesystem::FilesystemStore;
    use zarrs::group::GroupBuilder;

    use super::{on, tile_name, Tiles, ARRAY, SHAPE};

    /// zarrs: one group per tile, one array in it, one chunk, Blosc LZ4 + shuffle.
    #[derive(Default)]
    pub(super) struct ZarrsTiles {
        store: Option<Arc<FilesystemStore>>,
    }

    fn path(i: u64) -> String {
        format!("/{}/{ARRAY}", tile_name(i))
    }

    impl ZarrsTiles {
        fn store(&self) -> Result<&Arc<FilesystemStore>> {
            self.store.as_ref().context("open first")
        }
    }

    impl Tiles for ZarrsTiles {
        fn name(&self) -> &'static str {
            "zarrs"
        }

        fn ingest(&mut self, root: &Path, tiles: Vec<Vec<f32>>) -> Result<()> {
            std::fs::create_dir_all(root)?;
            let store = Arc::new(FilesystemStore::new(root)?);
            GroupBuilder::new()
                .build(store.clone(), "/")?
                .store_metadata()?;
            let shape: Vec<u64> = SHAPE.iter().map(|&s| s as u64).collect();
            let mut builder =
                ArrayBuilder::new(shape.clone(), shape, data_type::float32(), f32::NAN);
            builder
                .bytes_to_bytes_codecs(vec![crate::peers::zarrs::blosc()?])
                .dimension_names(["y", "x"].into());
            for (i, cells) in (0..).zip(tiles) {
                GroupBuilder::new()
                    .build(store.clone(), &format!("/{}", tile_name(i)))?
                    .store_metadata()?;
                let a = builder.build(store.clone(), &path(i))?;
                a.store_metadata()?;
                a.store_chunk(&[0, 0], cells)?;
            }
            Ok(())
        }

        fn open_writer(&mut self, root: &Path) -> Result<()> {
            self.open(root)
        }

        fn update(&mut self, ids: &[u64], tiles: Vec<Vec<f32>>) -> Result<()> {
            let store = self.store()?;
            for (&i, cells) in ids.iter().zip(tiles) {
                Array::open(store.clone(), &path(i))?.store_chunk(&[0, 0], cells)?;
            }
            Ok(())
        }

        fn compact(&mut self) -> Result<bool> {
            Ok(false)
        }

        fn open(&mut self, root: &Path) -> Result<()> {
            self.store = Some(Arc::new(FilesystemStore::new(root)?));
            Ok(())
        }

        fn scan(&self, ids: &[u64]) -> Result<Vec<Vec<f32>>> {
            ids.iter().map(|&i| self.read(i)).collect()
        }

        fn read(&self, i: u64) -> Result<Vec<f32>> {
            let a = Array::open(self.store()?.clone(), &path(i))?;
            Ok(a.retrieve_array_subset::<Vec<f32>>(&a.subset_all())?)
        }

        fn close(&mut self) {
            self.store = None;
        }
    }

    /// atlas-rust 0.14 with LZ4 (it has no shuffle), its caches as they come.
    #[derive(Default)]
    pub(super) struct PredecessorTiles {
        store: Option<Atlas>,
        rt: Option<Handle>,
    }

    fn config() -> StoreConfig {
        StoreConfig {
            codec: Codec::Lz4,
            ..StoreConfig::default()
        }
    }

    impl PredecessorTiles {
        fn store(&self) -> Result<(&Atlas, &Handle)> {
            Ok((
                self.store.as_ref().context("open first")?,
                self.rt.as_ref().context("open first")?,
            ))
        }
    }

    impl Tiles for PredecessorTiles {
        fn name(&self) -> &'static str {
            "atlas-rust 0.14"
        }

        fn ingest(&mut self, root: &Path, tiles: Vec<Vec<f32>>) -> Result<()> {
            let h = Handle::current();
            on(&h, async {
                let mut s = Atlas::create_path(root, config()).await?;
                for (i, cells) in (0..).zip(&tiles) {
                    let mut ds = s.create_dataset(&tile_name(i)).await?;
                    ds.define_array::<f32>(
                        ARRAY,
                        vec!["y".into(), "x".into()],
                        SHAPE.to_vec(),
                        None,
                        None,
                    )
                    .await?;
                    ds.write_array(
                        ARRAY,
                        vec![0, 0],
                        ArrayView::from_shape(IxDyn(&SHAPE), cells)?,
                    )
                    .await?;
                }
                s.flush().await?;
                anyhow::Ok(())
            })
        }

        fn open_writer(&mut self, root: &Path) -> Result<()> {
            self.open(root)
        }

        fn update(&mut self, ids: &[u64], tiles: Vec<Vec<f32>>) -> Result<()> {
            let h = self.rt.clone().context("open first")?;
            let s = self.store.as_mut().context("open first")?;
            on(&h, async {
                for (&i, cells) in ids.iter().zip(&tiles) {
                    let mut ds = s.open_dataset(&tile_name(i)).await?;
                    ds.write_array(
                        ARRAY,
                        vec![0, 0],
                        ArrayView::from_shape(IxDyn(&SHAPE), cells)?,
                    )
                    .await?;
                }
                s.flush().await?;
                anyhow::Ok(())
            })
        }

        fn compact(&mut self) -> Result<bool> {
            let h = self.rt.clone().context("open first")?;
            let s = self.store.as_mut().context("open first")?;
            on(&h, s.compact())?;
            Ok(true)
        }

        fn open(&mut self, root: &Path) -> Result<()> {
            let h = Handle::current();
            self.store = Some(on(&h, Atlas::open_path(root))?);
            self.rt = Some(h);
            Ok(())
        }

        fn scan(&self, ids: &[u64]) -> Result<Vec<Vec<f32>>> {
            let (s, h) = self.store()?;
            let names: Vec<String> = ids.iter().map(|&i| tile_name(i)).collect();
            on(h, s.read_array_across::<f32>(ARRAY, &names, vec![], vec![]))?
                .into_iter()
                .map(|a| Ok(a.context("missing array")?.iter().copied().collect()))
                .collect()
        }

        fn read(&self, i: u64) -> Result<Vec<f32>> {
            let (s, h) = self.store()?;
            on(h, async {
                let ds = s.open_dataset(&tile_name(i)).await?;
                let a = ds.read_array::<f32>(ARRAY, vec![], vec![]).await?;
                Ok(a.context("missing array")?.iter().copied().collect())
            })
        }

        fn close(&mut self) {
            self.store = None;
        }
    }
}

fn systems() -> Vec<Box<dyn Tiles>> {
    #[allow(unused_mut)]
    let mut v: Vec<Box<dyn Tiles>> = vec![Box::<AtlasTiles>::default()];
    #[cfg(feature = "peers")]
    {
        v.push(Box::<peers::ZarrsTiles>::default());
        v.push(Box::<peers::PredecessorTiles>::default());
    }
    v
}

/// Median, 99th percentile and extremes of many samples.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dist {
    /// Median.
    pub(crate) median: Duration,
    /// 99th percentile (nearest rank).
    pub(crate) p99: Duration,
    min: Duration,
    max: Duration,
    n: usize,
}

impl Dist {
    /// The distribution of `v` (not empty).
    pub(crate) fn of(mut v: Vec<Duration>) -> Dist {
        assert!(!v.is_empty(), "no samples");
        v.sort();
        let n = v.len();
        // The nearest-rank percentile: the smallest sample at or above 99%.
        let p99 = v[(n * 99).div_ceil(100).max(1) - 1];
        Dist {
            median: v[n / 2],
            p99,
            min: v[0],
            max: v[n - 1],
            n,
        }
    }

    /// As JSON seconds.
    pub(crate) fn json(&self) -> Value {
        json!({
            "median_s": self.median.as_secs_f64(),
            "p99_s": self.p99.as_secs_f64(),
            "min_s": self.min.as_secs_f64(),
            "max_s": self.max.as_secs_f64(),
            "samples": self.n,
        })
    }
}

/// A row: the workload, then one distribution per system (`None` where the
/// system has no such operation).
type Row = (String, Vec<Option<Dist>>);

fn print_rows(names: &[&str], rows: &[Row]) {
    print!("{:<34}", "(median / p99)");
    for (k, n) in names.iter().enumerate() {
        if k == 0 {
            print!(" {n:>22}");
        } else {
            print!(" {n:>22} {:>13}", "×ATLAS");
        }
    }
    println!();
    for (what, ds) in rows {
        print!("{what:<34}");
        let a = ds[0].as_ref();
        for (k, d) in ds.iter().enumerate() {
            let cell = d.map_or("—".to_owned(), |d| {
                format!("{} / {}", fmt_dur(d.median), fmt_dur(d.p99))
            });
            print!(" {cell:>22}");
            if k > 0 {
                let r = match (a, d) {
                    (Some(a), Some(d)) => format!(
                        "{:.2} / {:.2}",
                        d.median.as_secs_f64() / a.median.as_secs_f64(),
                        d.p99.as_secs_f64() / a.p99.as_secs_f64()
                    ),
                    _ => String::new(),
                };
                print!(" {r:>13}");
            }
        }
        println!();
    }
}

/// Runs `f` for every system in turn, `reps` times after `warm` untimed
/// rounds; `f` returns its own timed duration, or `None` to skip.
fn alternate(
    sys: &mut [Box<dyn Tiles>],
    reps: usize,
    warm: usize,
    mut f: impl FnMut(&mut dyn Tiles, usize, usize) -> Result<Option<Duration>>,
) -> Result<Vec<Option<Dist>>> {
    let mut samples = vec![Vec::new(); sys.len()];
    for rep in 0..warm + reps {
        for (k, s) in sys.iter_mut().enumerate() {
            let d = f(s.as_mut(), k, rep).with_context(|| format!("{} (round {rep})", s.name()))?;
            if let (true, Some(d)) = (rep >= warm, d) {
                samples[k].push(d);
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|v| (!v.is_empty()).then(|| Dist::of(v)))
        .collect())
}

fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed())
}

/// Checks tiles `ids` as read against the versions in `ver`.
fn check_tiles(what: &str, ids: &[u64], got: &[Vec<f32>], ver: &[u64]) -> Result<()> {
    ensure!(
        got.len() == ids.len(),
        "{what}: {} tiles for {}",
        got.len(),
        ids.len()
    );
    let mut wrong = Vec::new();
    for (&i, g) in ids.iter().zip(got) {
        let v = ver[i as usize];
        if check(what, g, &tile(i, v)).is_err() {
            // Which version was read instead, if any (a stale read).
            let was = (0..=ver.iter().copied().max().unwrap_or(0)).find(|&w| *g == tile(i, w));
            wrong.push(format!("tile {i}: version {v} written, read {was:?}"));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{what}: {} of {} tiles wrong, e.g. {}",
        wrong.len(),
        ids.len(),
        wrong[..wrong.len().min(3)].join("; ")
    );
    Ok(())
}

/// Reads `ids` on [`IN_FLIGHT`] threads, each its contiguous share, and
/// returns the tiles in `ids`' order.
fn read_in_flight(s: &dyn Tiles, ids: &[u64]) -> Result<Vec<Vec<f32>>> {
    let per = ids.len().div_ceil(IN_FLIGHT);
    std::thread::scope(|sc| {
        let parts: Vec<_> = ids
            .chunks(per.max(1))
            .map(|part| {
                sc.spawn(move || part.iter().map(|&i| s.read(i)).collect::<Result<Vec<_>>>())
            })
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for p in parts {
            out.extend(p.join().expect("reader thread panicked")?);
        }
        Ok(out)
    })
}

/// Reads every tile through a fresh handle of every system and checks it;
/// returns, per system, `None` when all were right, or what was wrong.
fn verify(
    sys: &mut [Box<dyn Tiles>],
    root: &dyn Fn(usize) -> std::path::PathBuf,
    ids: &[u64],
    ver: &[u64],
    when: &str,
) -> Vec<Option<String>> {
    sys.iter_mut()
        .enumerate()
        .map(|(k, s)| {
            s.close();
            let r = s
                .open(&root(k))
                .and_then(|()| s.scan(ids))
                .and_then(|got| check_tiles(&format!("{} {when}", s.name()), ids, &got, ver));
            s.close();
            r.err().map(|e| {
                println!("WRONG DATA: {e:#}");
                format!("{e:#}")
            })
        })
        .collect()
}

/// One way of ingesting tiles: [`Tiles::ingest`] or [`Tiles::ingest_batch`].
type Ingest = fn(&mut dyn Tiles, &Path, Vec<Vec<f32>>) -> Result<()>;

/// The workload (async only to fit the workload table: its systems block).
#[allow(clippy::unused_async)]
pub async fn workload(quick: bool) -> Result<Value> {
    let n: u64 = 2000;
    let (r_ingest, r_update, r_compact, r_scan, r_single) = if quick {
        (3, 7, 3, 5, 1000)
    } else {
        (5, 15, 5, 11, 5000)
    };
    let mut sys = systems();
    let names: Vec<&str> = sys.iter().map(|s| s.name()).collect();
    let tmp = tempfile::tempdir()?;
    let dir = |k: usize, rep: usize| tmp.path().join(format!("s{k}_{rep}"));
    let ids: Vec<u64> = (0..n).collect();
    let mut ver = vec![0u64; n as usize];
    let bytes = n as f64 * (SHAPE[0] * SHAPE[1] * 4) as f64;

    // Ingest: a fresh store per round; the last round's is kept. Then the
    // same through each system's call for many datasets (ATLAS's
    // `create_datasets`; the peers have none and ingest as above), whose
    // stores are not kept.
    let fresh: Vec<Vec<f32>> = ids.iter().map(|&i| tile(i, 0)).collect();
    let batch_dir = |k: usize, rep: usize| tmp.path().join(format!("b{k}_{rep}"));
    let ingest_rounds = |sys: &mut [Box<dyn Tiles>],
                         at: &dyn Fn(usize, usize) -> std::path::PathBuf,
                         how: Ingest| {
        alternate(sys, r_ingest, 0, |s, k, rep| {
            if rep > 0 {
                std::fs::remove_dir_all(at(k, rep - 1))?;
            }
            // The cells are made before the clock (a copy per round, as
            // each system takes them by value); generating them cost about
            // as much as ATLAS's whole ingest.
            let cells = fresh.clone();
            timed(|| how(s, &at(k, rep), cells)).map(Some)
        })
    };
    let ingest = ingest_rounds(&mut sys, &dir, |s, p, c| s.ingest(p, c))?;
    let ingest_batch = ingest_rounds(&mut sys, &batch_dir, |s, p, c| s.ingest_batch(p, c))?;
    for k in 0..sys.len() {
        std::fs::remove_dir_all(batch_dir(k, r_ingest - 1))?;
    }
    let root = |k: usize| dir(k, r_ingest - 1);

    // A scan on a fresh handle, open included.
    let scan = alternate(&mut sys, r_scan, 1, |s, k, _| {
        let mut got = Vec::new();
        let d = timed(|| {
            s.open(&root(k))?;
            got = s.scan(&ids)?;
            Ok(())
        })?;
        s.close();
        check_tiles("scan", &ids, &got, &ver)?;
        Ok(Some(d))
    })?;

    // Per-dataset reads on a fresh handle (opened untimed): one at a time,
    // then IN_FLIGHT at a time.
    let per_dataset = |sys: &mut [Box<dyn Tiles>], threads: bool| {
        alternate(sys, r_scan, 1, |s, k, _| {
            s.open(&root(k))?;
            let mut got = Vec::new();
            let d = timed(|| {
                got = if threads {
                    read_in_flight(&*s, &ids)?
                } else {
                    ids.iter().map(|&i| s.read(i)).collect::<Result<_>>()?
                };
                Ok(())
            })?;
            s.close();
            check_tiles("reads", &ids, &got, &ver)?;
            Ok(Some(d))
        })
    };
    let sequential = per_dataset(&mut sys, false)?;
    let in_flight = per_dataset(&mut sys, true)?;

    // Single-dataset reads of random tiles on a warm handle.
    for (k, s) in sys.iter_mut().enumerate() {
        s.open(&root(k))?;
        for &i in &ids {
            s.read(i)?;
        }
    }
    let mut rng = Rng(0x0071_11e5);
    let picks: Vec<u64> = (0..r_single).map(|_| rng.next_u64() % n).collect();
    let single = alternate(&mut sys, r_single, 0, |s, _, rep| {
        let i = picks[rep];
        let mut got = Vec::new();
        let d = timed(|| {
            got = s.read(i)?;
            Ok(())
        })?;
        check("single read", &got, &tile(i, ver[i as usize]))?;
        Ok(Some(d))
    })?;
    for s in &mut sys {
        s.close();
    }

    // Rewrite 1% + flush; round r rewrites every 100th tile from r.
    let mut version = 0;
    let mut next_ids = |ver: &mut [u64]| {
        version += 1;
        let ids: Vec<u64> = (0..n / 100).map(|j| (j * 100 + version * 7) % n).collect();
        for &i in &ids {
            ver[i as usize] = version;
        }
        (ids, version)
    };
    for (k, s) in sys.iter_mut().enumerate() {
        s.open_writer(&root(k))?;
    }
    let mut update_rounds = Vec::new();
    for _ in 0..r_update {
        update_rounds.push(next_ids(&mut ver));
    }
    let update = alternate(&mut sys, r_update, 0, |s, _, rep| {
        let (ids, v) = &update_rounds[rep];
        let cells = ids.iter().map(|&i| tile(i, *v)).collect();
        timed(|| s.update(ids, cells)).map(Some)
    })?;

    // Everything written so far is read back through a fresh handle.
    let after_updates = verify(&mut sys, &root, &ids, &ver, "after the updates");
    for (k, s) in sys.iter_mut().enumerate() {
        s.open_writer(&root(k))?;
    }

    // Compaction after three more rounds of updates each time.
    let mut compact_rounds = Vec::new();
    for _ in 0..r_compact * 3 {
        compact_rounds.push(next_ids(&mut ver));
    }
    let compact = alternate(&mut sys, r_compact, 0, |s, _, rep| {
        for (ids, v) in &compact_rounds[rep * 3..rep * 3 + 3] {
            s.update(ids, ids.iter().map(|&i| tile(i, *v)).collect())?;
        }
        let t = Instant::now();
        Ok(s.compact()?.then(|| t.elapsed()))
    })?;
    let after_compaction = verify(&mut sys, &root, &ids, &ver, "after compaction");
    // A peer's wrong data is reported; ATLAS's fails the run.
    if let Some(e) = after_updates[0].as_ref().or(after_compaction[0].as_ref()) {
        anyhow::bail!("{e}");
    }
    let rows: Vec<Row> = vec![
        (format!("ingest + flush {n}"), ingest),
        (format!("ingest + flush {n}, batch API"), ingest_batch),
        ("update 1% + flush".into(), update),
        ("compact after 3 updates".into(), compact),
        ("scan, fresh handle".into(), scan),
        ("reads one at a time, fresh".into(), sequential),
        (format!("reads {IN_FLIGHT} in flight, fresh"), in_flight),
        ("single read, warm".into(), single),
    ];
    println!(
        "tiles: {n} datasets of one {}×{} f32 array (32 KiB, one chunk)",
        SHAPE[0], SHAPE[1]
    );
    print_rows(&names, &rows);
    let gbs = |d: &Option<Dist>| d.map(|d| bytes / d.median.as_secs_f64() / 1e9);
    for (k, name) in names.iter().enumerate() {
        let (s, q, f) = (gbs(&rows[4].1[k]), gbs(&rows[5].1[k]), gbs(&rows[6].1[k]));
        if let (Some(s), Some(q), Some(f)) = (s, q, f) {
            println!(
                "{name}: scan {s:.2} GB/s; per-dataset reads {q:.2} GB/s one at a time, {f:.2} GB/s with {IN_FLIGHT} in flight ({:.2}×)",
                f / q
            );
        }
    }
    let mut out = serde_json::Map::new();
    for (what, ds) in &rows {
        let mut m = serde_json::Map::new();
        for (name, d) in names.iter().zip(ds) {
            m.insert((*name).to_owned(), d.map_or(Value::Null, |d| d.json()));
        }
        out.insert(what.clone(), Value::Object(m));
    }
    let mut wrong = serde_json::Map::new();
    for (k, name) in names.iter().enumerate() {
        wrong.insert(
            (*name).to_owned(),
            json!({"after_updates": after_updates[k], "after_compaction": after_compaction[k]}),
        );
    }
    out.insert("wrong_data".into(), Value::Object(wrong));
    out.insert("datasets".into(), json!(n));
    out.insert("tile_shape".into(), json!(SHAPE));
    Ok(Value::Object(out))
}

/// How [`profile_loop`] reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoopReads {
    /// Every tile, one at a time, on a fresh handle.
    Fresh,
    /// Every tile, [`IN_FLIGHT`] at a time, on a fresh handle.
    InFlight,
    /// 1,000 random tiles per repetition on one warm handle.
    Warm,
    /// Every tile in one cross-dataset read, the open included, as the
    /// workload's fresh-handle scan.
    Scan,
    /// 1% of the tiles rewritten and flushed per repetition, through one
    /// writer handle on a store of its own (DIR/tiles-update, rebuilt each
    /// run), as the workload's update row.
    Update,
}

/// `__child loop tiles|tiles8|tileswarm|tilesscan|tilesupdate DIR N REPS`: ATLAS alone, a store of
/// N tiles under DIR/tiles (built once, untimed), then per repetition a
/// fresh handle (opened untimed) reads every tile one at a time (`tiles8`:
/// with 8 in flight; `tileswarm`: one handle, warmed first, reads 1,000
/// random tiles per repetition, the time printed per read; `tilesscan`: the
/// open timed too, then one cross-dataset read of every tile; `tilesupdate`:
/// a store of its own, rebuilt each run, 1% of its tiles rewritten and
/// flushed per repetition, every tile checked at the end), checked.
/// Returns each repetition's time.
pub(crate) fn profile_loop(
    dir: &Path,
    n: u64,
    reps: usize,
    how: LoopReads,
) -> Result<Vec<Duration>> {
    let root = dir.join("tiles");
    let mut s = AtlasTiles::default();
    if !root.exists() {
        s.ingest(&root, (0..n).map(|i| tile(i, 0)).collect())?;
    }
    let ids: Vec<u64> = (0..n).collect();
    let ver = vec![0; n as usize];
    let mut times = Vec::with_capacity(reps);
    if how == LoopReads::Warm {
        s.open(&root)?;
        for &i in &ids {
            s.read(i)?;
        }
        // Each read is checked and dropped before the next, as an
        // application would (keeping them all would time the allocator's
        // fresh pages instead).
        let want: Vec<Vec<f32>> = ids.iter().map(|&i| tile(i, 0)).collect();
        let mut rng = Rng(0x0071_11e5);
        for _ in 0..reps {
            let mut spent = Duration::ZERO;
            for _ in 0..1000 {
                let i = rng.next_u64() % n;
                let t = Instant::now();
                let got = s.read(i)?;
                spent += t.elapsed();
                check("warm read", &got, &want[i as usize])?;
            }
            times.push(spent / 1000);
        }
        return Ok(times);
    }
    if how == LoopReads::Update {
        let root = dir.join("tiles-update");
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        let mut writer = AtlasTiles::default();
        writer.ingest(&root, (0..n).map(|i| tile(i, 0)).collect())?;
        writer.open_writer(&root)?;
        let mut ver = ver;
        for r in 0..reps {
            let v = r as u64 + 1;
            let chosen: Vec<u64> = (v % 100..n).step_by(100).collect();
            let cells: Vec<Vec<f32>> = chosen.iter().map(|&i| tile(i, v)).collect();
            let t = Instant::now();
            if std::env::var_os("ATLAS_BENCH_PHASES").is_some() {
                // The writes and the flush timed apart.
                let (store, rt) = writer.store()?;
                on(rt, async {
                    for (&i, cells) in chosen.iter().zip(&cells) {
                        let ds = store.open_dataset(&tile_name(i)).await?;
                        put(&ds, cells, false).await?;
                    }
                    anyhow::Ok(())
                })?;
                let written = t.elapsed();
                on(rt, store.flush())?;
                eprintln!(
                    "rep {r}: writes {:.3} ms, flush {:.3} ms",
                    written.as_secs_f64() * 1e3,
                    t.elapsed().saturating_sub(written).as_secs_f64() * 1e3
                );
            } else {
                writer.update(&chosen, cells)?;
            }
            times.push(t.elapsed());
            for &i in &chosen {
                ver[i as usize] = v;
            }
        }
        writer.close();
        writer.open(&root)?;
        let got = writer.scan(&ids)?;
        check_tiles("updates", &ids, &got, &ver)?;
        return Ok(times);
    }
    // The tiles every repetition must read, generated once: generating them
    // for each check took several times as long as the reads themselves,
    // which buried the reads in a profile of the loop.
    let want: Vec<Vec<f32>> = ids.iter().map(|&i| tile(i, ver[i as usize])).collect();
    let checked = |what: &str, got: &[Vec<f32>]| {
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| check(what, g, w).is_ok());
        if same {
            Ok(())
        } else {
            // Names what is wrong (and which version was read instead).
            check_tiles(what, &ids, got, &ver)
        }
    };
    if how == LoopReads::Scan {
        for _ in 0..reps {
            let t = Instant::now();
            s.open(&root)?;
            let got = s.scan(&ids)?;
            times.push(t.elapsed());
            s.close();
            checked("scan", &got)?;
        }
        return Ok(times);
    }
    let in_flight = how == LoopReads::InFlight;
    for _ in 0..reps {
        s.open(&root)?;
        let t = Instant::now();
        let got = if in_flight {
            read_in_flight(&s, &ids)?
        } else {
            ids.iter().map(|&i| s.read(i)).collect::<Result<Vec<_>>>()?
        };
        times.push(t.elapsed());
        s.close();
        checked("reads", &got)?;
    }
    Ok(times)
}
