//! The predecessor: `atlas-rust` 0.14.0 from crates.io (library name `atlas`),
//! same API shape as ATLAS, and the version issue 17's second harness measured.
//! Its store is a directory with one `data.af` file per variable (plus its
//! deltas) and one `atlas.json` schema rewritten at every flush; dataset
//! attributes live in a `_global` file. It has LZ4 but no shuffle filter, so
//! it runs with LZ4 alone (its default is Zstd). Its 256 MiB decoded cache
//! cannot be turned off, so its W5 reads after the first are served from it.
//! (Before 2026-12-05 this peer was atlas-rust 0.10.)

use std::path::Path;

use anyhow::{Context, Result};
use atlas_rust::{Atlas, Attr, Codec, DatasetView, StoreConfig};
// atlas-rust 0.14 takes ndarray 0.17 views: the workspace's own ndarray.
use ndarray::{ArrayView, IxDyn};

use super::{block, ds_name, GridSpec, System};
use crate::data::{profile, Profiles};
use crate::workloads::{ARRAYS, LEVELS};

/// The predecessor peer.
#[derive(Default)]
pub struct AtlasRust {
    store: Option<Atlas>,
    probe: Option<DatasetView>,
    grid: Option<DatasetView>,
}

fn config() -> StoreConfig {
    StoreConfig {
        codec: Codec::Lz4,
        ..StoreConfig::default()
    }
}

fn write(ds: &mut DatasetView, array: &str, v: &[f32]) -> Result<()> {
    let view = ArrayView::from_shape(IxDyn(&[v.len()]), v)?;
    block(ds.write_array(array, vec![0], view))?;
    Ok(())
}

fn read(ds: &DatasetView, array: &str, start: Vec<usize>, count: Vec<usize>) -> Result<Vec<f32>> {
    let a = block(ds.read_array::<f32>(array, start, count))?.context("no such array")?;
    Ok(a.iter().copied().collect())
}

impl System for AtlasRust {
    fn name(&self) -> &'static str {
        "atlas-rust 0.14"
    }

    fn ingest(&mut self, root: &Path, data: &Profiles) -> Result<()> {
        let mut store = block(Atlas::create_path(root, config()))?;
        for i in 0..data.datasets() {
            let mut ds = block(store.create_dataset(&ds_name(i)))?;
            ds.set_attribute("cycle_number", Attr::Int64(i as i64))?;
            ds.set_attribute("latitude", Attr::Float64((i % 180) as f64 - 90.0))?;
            for (k, a) in ARRAYS.iter().enumerate() {
                block(ds.define_array::<f32>(
                    a,
                    vec!["N_LEVELS".into()],
                    vec![LEVELS],
                    None,
                    None,
                ))?;
                write(&mut ds, a, data.get(i, k))?;
            }
        }
        block(store.flush())?;
        Ok(())
    }

    fn reopen_read(&self, root: &Path, i: u64) -> Result<Vec<f32>> {
        let store = block(Atlas::open_path(root))?;
        let ds = block(store.open_dataset(&ds_name(i)))?;
        read(&ds, "TEMP", vec![], vec![])
    }

    fn open(&mut self, root: &Path, probe: u64) -> Result<()> {
        let store = block(Atlas::open_path(root))?;
        self.probe = Some(block(store.open_dataset(&ds_name(probe)))?);
        self.store = Some(store);
        Ok(())
    }

    fn scan(&self, array: &str, names: &[String]) -> Result<Vec<Vec<f32>>> {
        let store = self.store.as_ref().context("open first")?;
        let parts = block(store.read_array_across::<f32>(array, names, vec![], vec![]))?;
        parts
            .into_iter()
            .map(|p| Ok(p.context("missing array")?.iter().copied().collect()))
            .collect()
    }

    fn read_dataset(&self) -> Result<Vec<Vec<f32>>> {
        let ds = self.probe.as_ref().context("open first")?;
        ARRAYS.iter().map(|a| read(ds, a, vec![], vec![])).collect()
    }

    fn close(&mut self) {
        self.probe = None;
        self.grid = None;
        self.store = None;
    }

    fn open_writer(&mut self, root: &Path) -> Result<()> {
        self.store = Some(block(Atlas::open_path(root))?);
        Ok(())
    }

    fn update(&mut self, ids: &[u64], version: u64) -> Result<()> {
        let store = self.store.as_mut().context("open_writer first")?;
        for &i in ids {
            let mut ds = block(store.open_dataset(&ds_name(i)))?;
            write(&mut ds, "TEMP", &profile(i * 3, version, LEVELS))?;
        }
        block(store.flush())?;
        Ok(())
    }

    fn grid_write(&mut self, root: &Path, spec: GridSpec, data: &[f32]) -> Result<()> {
        let mut store = block(Atlas::create_path(root, config()))?;
        let mut ds = block(store.create_dataset("grid"))?;
        let shape = [spec.shape[0] as usize, spec.shape[1] as usize];
        block(ds.define_array::<f32>(
            "T",
            vec!["lat".into(), "lon".into()],
            shape.to_vec(),
            Some(vec![spec.chunk[0] as usize, spec.chunk[1] as usize]),
            None,
        ))?;
        let view = ArrayView::from_shape(IxDyn(&shape), data)?;
        block(ds.write_array("T", vec![0, 0], view))?;
        drop(ds);
        block(store.flush())?;
        Ok(())
    }

    fn grid_open(&mut self, root: &Path, _spec: GridSpec) -> Result<()> {
        let store = block(Atlas::open_path(root))?;
        self.grid = Some(block(store.open_dataset("grid"))?);
        self.store = Some(store);
        Ok(())
    }

    fn grid_read(&self, start: [u64; 2], count: [u64; 2]) -> Result<Vec<f32>> {
        let ds = self.grid.as_ref().context("grid_open first")?;
        read(
            ds,
            "T",
            start.iter().map(|&s| s as usize).collect(),
            count.iter().map(|&c| c as usize).collect(),
        )
    }
}
