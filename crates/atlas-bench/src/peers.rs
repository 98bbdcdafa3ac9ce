//! Stores measured beside ATLAS on the same data, behind one synchronous
//! interface ([`System`]), so a workload can alternate them run by run.
//!
//! - [`files`]: one LZ4 + shuffle compressed file per dataset-array (always built);
//! - `zarrs`: zarrs with its filesystem store (feature `peers`);
//! - `atlas_rust`: the predecessor, `atlas-rust` 0.14 from crates.io (feature `peers`).
//!
//! Each method returns what it read; the caller checks it against the generator
//! after the clock stops.

pub mod files;

#[cfg(feature = "peers")]
pub mod atlas_rust;
#[cfg(feature = "peers")]
pub mod zarrs;

use std::future::Future;
use std::path::Path;

use anyhow::Result;

use crate::data::Profiles;

/// The shape of the W5 grid and of its chunks.
#[derive(Clone, Copy, Debug)]
pub struct GridSpec {
    /// Rows and columns.
    pub shape: [u64; 2],
    /// Chunk rows and columns.
    pub chunk: [u64; 2],
}

/// One store under test. Dataset `i` is named `profile_{i:07}` and holds the
/// arrays of [`crate::workloads::ARRAYS`], each `LEVELS` `f32`.
pub trait System {
    /// Short name for tables.
    fn name(&self) -> &'static str;

    /// W1: creates a store at `root` (a fresh directory) holding the
    /// datasets of `data` (their cells made before the clock), each with two
    /// attributes where the system has them, and makes it durable the way
    /// the system does.
    fn ingest(&mut self, root: &Path, data: &Profiles) -> Result<()>;

    /// W2: opens the store at `root` from nothing and reads `TEMP` of dataset `i`.
    fn reopen_read(&self, root: &Path, i: u64) -> Result<Vec<f32>>;

    /// Opens the handle that [`System::scan`] and [`System::read_dataset`] use,
    /// prepared to read dataset `probe` (not timed).
    fn open(&mut self, root: &Path, probe: u64) -> Result<()>;

    /// W3: reads `array` of every named dataset, in order.
    fn scan(&self, array: &str, names: &[String]) -> Result<Vec<Vec<f32>>>;

    /// W4: reads every array of dataset `probe` through the warm handle.
    fn read_dataset(&self) -> Result<Vec<Vec<f32>>>;

    /// Drops the handles opened by [`System::open`].
    fn close(&mut self);

    /// W6: rewrites `TEMP` of datasets `ids` with version `version` and makes
    /// the change durable the way the system does (the writer is opened first,
    /// untimed, by [`System::open_writer`]).
    fn update(&mut self, ids: &[u64], version: u64) -> Result<()>;

    /// Opens a writer on the store at `root` (not timed).
    fn open_writer(&mut self, root: &Path) -> Result<()>;

    /// W5: writes one `f32` grid as a chunked array at `root` and makes it durable.
    fn grid_write(&mut self, root: &Path, spec: GridSpec, data: &[f32]) -> Result<()>;

    /// Opens the grid for reading (not timed).
    fn grid_open(&mut self, root: &Path, spec: GridSpec) -> Result<()>;

    /// Opens the grid for reading as the system is used by default, caches
    /// on (not timed); the default is [`System::grid_open`], for systems
    /// whose caches cannot be turned off or that have none.
    fn grid_open_default(&mut self, root: &Path, spec: GridSpec) -> Result<()> {
        self.grid_open(root, spec)
    }

    /// W5: reads the hyperslab `start` + `count` of the grid, row-major.
    fn grid_read(&self, start: [u64; 2], count: [u64; 2]) -> Result<Vec<f32>>;

    /// Chunks decoded so far by grid reads, where the system counts them.
    fn chunks_decoded(&self) -> Option<u64> {
        None
    }

    /// Whether every file written is fsynced on its own (slow to ingest).
    fn fsyncs_every_file(&self) -> bool {
        false
    }

    /// [`System::ingest`] on `threads` threads, where the system supports it
    /// (used, untimed, to build a store quickly).
    fn ingest_parallel(&mut self, root: &Path, data: &Profiles, _threads: u64) -> Result<()> {
        self.ingest(root, data)
    }
}

/// Name of dataset `i`.
pub fn ds_name(i: u64) -> String {
    format!("profile_{i:07}")
}

/// Runs a future to completion from synchronous code inside the runtime.
pub fn block<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(f))
}

/// Copies the hyperslab `start` + `count` out of a row-major grid of `cols` columns.
pub fn cut(grid: &[f32], cols: u64, start: [u64; 2], count: [u64; 2]) -> Vec<f32> {
    let mut out = Vec::with_capacity((count[0] * count[1]) as usize);
    for r in start[0]..start[0] + count[0] {
        let at = (r * cols + start[1]) as usize;
        out.extend_from_slice(&grid[at..at + count[1] as usize]);
    }
    out
}
