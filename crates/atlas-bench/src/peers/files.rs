//! The "one file per dataset-array" baseline: `ROOT/profile_0000042.TEMP` holds
//! that array's cells, byte-shuffled and LZ4-compressed exactly as ATLAS stores a
//! chunk, and nothing else (no header, no attributes, no checksum, no fsync). It
//! is what the file system alone costs. The W5 grid is one file holding the whole
//! array as a single compressed block, so a hyperslab decodes everything.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};

use super::{cut, ds_name, GridSpec, System};
use crate::data::{profile, Profiles};
use crate::limits::{bytes_f32, f32_bytes, lz4_shuffle_decode, lz4_shuffle_encode};
use crate::workloads::{ARRAYS, LEVELS};

/// The baseline; holds only the paths it works on.
#[derive(Default)]
pub struct Files {
    root: PathBuf,
    probe: u64,
    grid: Option<(PathBuf, GridSpec)>,
}

fn path(root: &Path, i: u64, array: &str) -> PathBuf {
    root.join(format!("{}.{array}", ds_name(i)))
}

fn read(p: &Path, cells: usize) -> Result<Vec<f32>> {
    let stored = std::fs::read(p)?;
    Ok(bytes_f32(&lz4_shuffle_decode(&stored, cells * 4)?))
}

impl System for Files {
    fn name(&self) -> &'static str {
        "files"
    }

    fn ingest(&mut self, root: &Path, data: &Profiles) -> Result<()> {
        std::fs::create_dir_all(root)?;
        for i in 0..data.datasets() {
            for (k, a) in ARRAYS.iter().enumerate() {
                let raw = f32_bytes(data.get(i, k));
                std::fs::write(path(root, i, a), lz4_shuffle_encode(&raw))?;
            }
        }
        Ok(())
    }

    fn reopen_read(&self, root: &Path, i: u64) -> Result<Vec<f32>> {
        read(&path(root, i, "TEMP"), LEVELS)
    }

    fn open(&mut self, root: &Path, probe: u64) -> Result<()> {
        root.clone_into(&mut self.root);
        self.probe = probe;
        Ok(())
    }

    fn scan(&self, array: &str, names: &[String]) -> Result<Vec<Vec<f32>>> {
        names
            .iter()
            .map(|n| read(&self.root.join(format!("{n}.{array}")), LEVELS))
            .collect()
    }

    fn read_dataset(&self) -> Result<Vec<Vec<f32>>> {
        ARRAYS
            .iter()
            .map(|a| read(&path(&self.root, self.probe, a), LEVELS))
            .collect()
    }

    fn close(&mut self) {}

    fn open_writer(&mut self, root: &Path) -> Result<()> {
        root.clone_into(&mut self.root);
        Ok(())
    }

    fn update(&mut self, ids: &[u64], version: u64) -> Result<()> {
        for &i in ids {
            let raw = f32_bytes(&profile(i * 3, version, LEVELS));
            std::fs::write(path(&self.root, i, "TEMP"), lz4_shuffle_encode(&raw))?;
        }
        Ok(())
    }

    fn grid_write(&mut self, root: &Path, spec: GridSpec, data: &[f32]) -> Result<()> {
        ensure!(
            data.len() as u64 == spec.shape[0] * spec.shape[1],
            "grid size"
        );
        std::fs::create_dir_all(root)?;
        std::fs::write(root.join("grid.T"), lz4_shuffle_encode(&f32_bytes(data)))?;
        Ok(())
    }

    fn grid_open(&mut self, root: &Path, spec: GridSpec) -> Result<()> {
        self.grid = Some((root.join("grid.T"), spec));
        Ok(())
    }

    fn grid_read(&self, start: [u64; 2], count: [u64; 2]) -> Result<Vec<f32>> {
        let (p, spec) = self.grid.as_ref().expect("grid_open first");
        let all = read(p, (spec.shape[0] * spec.shape[1]) as usize)?;
        if count == spec.shape {
            return Ok(all);
        }
        Ok(cut(&all, spec.shape[1], start, count))
    }
}
