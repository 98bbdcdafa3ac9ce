//! zarrs with its filesystem store: one Zarr v3 group per dataset (holding the
//! two attributes), one array per dataset-array with the same chunking as ATLAS
//! (one chunk per profile; 256 × 256 for the W5 grid), and the comparable codec:
//! Blosc with LZ4 (level 5, the numcodecs default) after a byte shuffle of the
//! 4-byte cells. The filesystem store does not fsync.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;
use zarrs::array::codec::BloscCodec;
use zarrs::array::{data_type, Array, ArrayBuilder};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;
use zarrs::metadata_ext::codec::blosc::{BloscCompressionLevel, BloscCompressor, BloscShuffleMode};

use super::{ds_name, GridSpec, System};
use crate::data::{profile, Profiles};
use crate::workloads::{ARRAYS, LEVELS};

type Store = Arc<FilesystemStore>;

/// The zarrs peer.
#[derive(Default)]
pub struct Zarrs {
    store: Option<Store>,
    /// The probe dataset's arrays, opened once (a warm handle).
    probe: Vec<Array<FilesystemStore>>,
    grid: Option<Array<FilesystemStore>>,
}

pub(crate) fn blosc() -> Result<Arc<BloscCodec>> {
    Ok(Arc::new(BloscCodec::new(
        BloscCompressor::LZ4,
        BloscCompressionLevel::try_from(5u8).map_err(|l| anyhow::anyhow!("level {l}"))?,
        None,
        BloscShuffleMode::Shuffle,
        Some(4),
    )?))
}

fn open_store(root: &Path) -> Result<Store> {
    Ok(Arc::new(FilesystemStore::new(root)?))
}

fn array_path(i: u64, array: &str) -> String {
    format!("/{}/{array}", ds_name(i))
}

fn read_all(a: &Array<FilesystemStore>) -> Result<Vec<f32>> {
    Ok(a.retrieve_array_subset::<Vec<f32>>(&a.subset_all())?)
}

/// Writes datasets `ids`: a group with the attributes, then every array.
fn ingest_range(
    store: &Store,
    builder: &ArrayBuilder,
    data: &Profiles,
    ids: std::ops::Range<u64>,
) -> Result<()> {
    for i in ids {
        let mut attrs = serde_json::Map::new();
        attrs.insert("cycle_number".into(), json!(i));
        attrs.insert("latitude".into(), json!((i % 180) as f64 - 90.0));
        GroupBuilder::new()
            .attributes(attrs)
            .build(store.clone(), &format!("/{}", ds_name(i)))?
            .store_metadata()?;
        for (k, a) in ARRAYS.iter().enumerate() {
            let array = builder.build(store.clone(), &array_path(i, a))?;
            array.store_metadata()?;
            array.store_chunk(&[0], data.get(i, k))?;
        }
    }
    Ok(())
}

impl System for Zarrs {
    fn name(&self) -> &'static str {
        "zarrs"
    }

    fn fsyncs_every_file(&self) -> bool {
        true
    }

    fn ingest(&mut self, root: &Path, data: &Profiles) -> Result<()> {
        self.ingest_parallel(root, data, 1)
    }

    fn ingest_parallel(&mut self, root: &Path, data: &Profiles, threads: u64) -> Result<()> {
        let n = data.datasets();
        std::fs::create_dir_all(root)?;
        let store = open_store(root)?;
        GroupBuilder::new()
            .build(store.clone(), "/")?
            .store_metadata()?;
        let mut builder = ArrayBuilder::new(
            vec![LEVELS as u64],
            vec![LEVELS as u64],
            data_type::float32(),
            f32::NAN,
        );
        builder
            .bytes_to_bytes_codecs(vec![blosc()?])
            .dimension_names(["N_LEVELS"].into());
        if threads <= 1 {
            return ingest_range(&store, &builder, data, 0..n);
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (store, builder) = (&store, &builder);
                    sc.spawn(move || {
                        ingest_range(store, builder, data, t * per..((t + 1) * per).min(n))
                    })
                })
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("ingest thread panicked"))
        })
    }

    fn reopen_read(&self, root: &Path, i: u64) -> Result<Vec<f32>> {
        let store = open_store(root)?;
        read_all(&Array::open(store, &array_path(i, "TEMP"))?)
    }

    fn open(&mut self, root: &Path, probe: u64) -> Result<()> {
        let store = open_store(root)?;
        self.probe = ARRAYS
            .iter()
            .map(|a| Array::open(store.clone(), &array_path(probe, a)))
            .collect::<Result<_, _>>()?;
        self.store = Some(store);
        Ok(())
    }

    fn scan(&self, array: &str, names: &[String]) -> Result<Vec<Vec<f32>>> {
        let store = self.store.as_ref().context("open first")?;
        names
            .iter()
            .map(|n| read_all(&Array::open(store.clone(), &format!("/{n}/{array}"))?))
            .collect()
    }

    fn read_dataset(&self) -> Result<Vec<Vec<f32>>> {
        self.probe.iter().map(read_all).collect()
    }

    fn close(&mut self) {
        self.store = None;
        self.probe.clear();
        self.grid = None;
    }

    fn open_writer(&mut self, root: &Path) -> Result<()> {
        self.store = Some(open_store(root)?);
        Ok(())
    }

    fn update(&mut self, ids: &[u64], version: u64) -> Result<()> {
        let store = self.store.as_ref().context("open_writer first")?;
        for &i in ids {
            let a = Array::open(store.clone(), &array_path(i, "TEMP"))?;
            a.store_chunk(&[0], profile(i * 3, version, LEVELS))?;
        }
        Ok(())
    }

    fn grid_write(&mut self, root: &Path, spec: GridSpec, data: &[f32]) -> Result<()> {
        write_array(root, "/T", &spec.shape, &spec.chunk, data)?;
        Ok(())
    }

    fn grid_open(&mut self, root: &Path, _spec: GridSpec) -> Result<()> {
        self.grid = Some(Array::open(open_store(root)?, "/T")?);
        Ok(())
    }

    fn grid_read(&self, start: [u64; 2], count: [u64; 2]) -> Result<Vec<f32>> {
        let a = self.grid.as_ref().context("grid_open first")?;
        Ok(a.retrieve_array_subset::<Vec<f32>>(&[
            start[0]..start[0] + count[0],
            start[1]..start[1] + count[1],
        ])?)
    }
}

/// Writes `data` (row-major, `shape`) as the array `path` of the store at
/// `root`, chunked `chunk`, with the same codec as every zarrs array here,
/// and returns it opened for reading.
pub fn write_array(
    root: &Path,
    path: &str,
    shape: &[u64],
    chunk: &[u64],
    data: &[f32],
) -> Result<Array<FilesystemStore>> {
    std::fs::create_dir_all(root)?;
    let store = open_store(root)?;
    GroupBuilder::new()
        .build(store.clone(), "/")?
        .store_metadata()?;
    let a = ArrayBuilder::new(
        shape.to_vec(),
        chunk.to_vec(),
        data_type::float32(),
        f32::NAN,
    )
    .bytes_to_bytes_codecs(vec![blosc()?])
    .build(store.clone(), path)?;
    a.store_metadata()?;
    a.store_array_subset(&a.subset_all(), data)?;
    Ok(Array::open(store, path)?)
}

/// Reads the box `start` + `count` of `a`, row-major.
pub fn read_box(a: &Array<FilesystemStore>, start: &[u64], count: &[u64]) -> Result<Vec<f32>> {
    let subset: Vec<std::ops::Range<u64>> =
        start.iter().zip(count).map(|(&s, &c)| s..s + c).collect();
    Ok(a.retrieve_array_subset::<Vec<f32>>(&subset)?)
}
