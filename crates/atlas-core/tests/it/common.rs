//! Shared helpers: store constructors on `MemoryStorage`, array builders, and a
//! [`Snapshot`] of everything a store exposes (datasets in order, metadata,
//! every array's cells and statistics) so two states compare exactly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atlas_core::{
    Atlas, DType, DatasetMeta, DatasetView, Error, MemoryStorage, OpenOptions, StoreConfig,
    TimestampNs,
};
use ndarray::{ArrayD, IxDyn};

/// Root used for every in-memory store.
pub const MEM_ROOT: &str = "/store";

/// The in-memory root as a path.
/// The default config, but retired files are deleted right after the commit
/// that retires them (no grace period): for tests of file removal.
pub fn no_grace() -> StoreConfig {
    StoreConfig {
        policy: atlas_core::Policy {
            gc_grace_secs: 0,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    }
}

/// Copies a directory tree (a golden store into a scratch directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

pub fn mem_root() -> PathBuf {
    PathBuf::from(MEM_ROOT)
}

/// Creates a store on `storage` at [`MEM_ROOT`].
pub async fn create_mem(storage: &MemoryStorage, config: StoreConfig) -> Atlas {
    Atlas::create_with(Arc::new(storage.clone()), &mem_root(), config)
        .await
        .expect("create in-memory store")
}

/// Creates a store on `storage` at [`MEM_ROOT`] whose pending chunks all
/// spill to a scratch file as they are written (a one-byte pending
/// budget): a full disk then fails a write part-way.
pub async fn create_mem_spilling(storage: &MemoryStorage) -> Atlas {
    create_mem(
        storage,
        StoreConfig {
            pending_budget_bytes: 1,
            ..StoreConfig::default()
        },
    )
    .await
}

/// Opens (read-only until the first mutation) the store at [`MEM_ROOT`].
/// The registry segment files of the in-memory store, oldest name first.
pub fn segment_files(storage: &MemoryStorage) -> Vec<PathBuf> {
    let dir = mem_root().join("atlas.meta");
    storage
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(dir.as_path()))
        .collect()
}

pub async fn open_mem(storage: &MemoryStorage) -> Result<Atlas, Error> {
    Atlas::open_with(
        Arc::new(storage.clone()),
        &mem_root(),
        OpenOptions::default(),
    )
    .await
}

/// Opens a store on `storage` at `root` and panics with `ctx` on failure.
pub async fn reopen_mem(storage: &MemoryStorage, ctx: &str) -> Atlas {
    match open_mem(storage).await {
        Ok(a) => a,
        Err(e) => panic!("{ctx}: reopening the store failed: {e} ({e:?})"),
    }
}

/// A 1-d array from a vector.
pub fn arr1<T: Clone>(v: Vec<T>) -> ArrayD<T> {
    let n = v.len();
    ArrayD::from_shape_vec(IxDyn(&[n]), v).expect("1-d shape")
}

/// An array of `shape` from row-major values.
pub fn arr<T: Clone>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape matches values")
}

/// An array of `shape` filled with `v`.
pub fn full<T: Clone>(shape: &[usize], v: T) -> ArrayD<T> {
    ArrayD::from_elem(IxDyn(shape), v)
}

/// Cells of an array in row-major order.
pub fn cells<T: Clone>(a: &ArrayD<T>) -> Vec<T> {
    a.iter().cloned().collect()
}

/// Names as owned strings.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Reads a whole array of any dtype and renders shape and cells as text
/// (floats by bit pattern, so `NaN`, `-0.0` and payloads compare exactly).
pub async fn render_array(ds: &DatasetView, name: &str, dtype: DType) -> String {
    macro_rules! read {
        ($t:ty) => {{
            let a = ds
                .read_array::<$t>(name, vec![], vec![])
                .await
                .unwrap_or_else(|e| panic!("read {}/{name}: {e}", ds.name()))
                .unwrap_or_else(|| panic!("{}/{name} listed but read gives None", ds.name()));
            (a.shape().to_vec(), a)
        }};
    }
    match dtype {
        DType::Bool => format!("{:?}", read!(bool)),
        DType::Int8 => format!("{:?}", read!(i8)),
        DType::Int16 => format!("{:?}", read!(i16)),
        DType::Int32 => format!("{:?}", read!(i32)),
        DType::Int64 => format!("{:?}", read!(i64)),
        DType::UInt8 => format!("{:?}", read!(u8)),
        DType::UInt16 => format!("{:?}", read!(u16)),
        DType::UInt32 => format!("{:?}", read!(u32)),
        DType::UInt64 => format!("{:?}", read!(u64)),
        DType::Float32 => {
            let (s, a) = read!(f32);
            format!(
                "{s:?} {:?}",
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            )
        }
        DType::Float64 => {
            let (s, a) = read!(f64);
            format!(
                "{s:?} {:?}",
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            )
        }
        DType::String => format!("{:?}", read!(String)),
        DType::Timestamp => format!("{:?}", read!(TimestampNs)),
        other => panic!("dtype {other} not handled by the test helper"),
    }
}

/// One array as seen through the API.
#[derive(Clone, Debug, PartialEq)]
pub struct ArraySnap {
    /// Array name.
    pub name: String,
    /// Shape and cells, rendered.
    pub values: String,
    /// `array_stats`, rendered.
    pub stats: String,
}

/// One dataset as seen through the API.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSnap {
    /// Dataset name.
    pub name: String,
    /// Attributes and array schemas/attributes.
    pub meta: DatasetMeta,
    /// Every array's contents.
    pub arrays: Vec<ArraySnap>,
}

/// Everything a store exposes, for exact comparison of two states.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Distinct array names, in order of first appearance.
    pub array_names: Vec<String>,
    /// Datasets in insertion order.
    pub datasets: Vec<DatasetSnap>,
}

/// Captures the whole visible state of `atlas` (pending changes included).
pub async fn snapshot(atlas: &Atlas) -> Snapshot {
    let mut datasets = Vec::new();
    for name in atlas.list_datasets().unwrap() {
        let ds = atlas
            .open_dataset(&name)
            .await
            .unwrap_or_else(|e| panic!("listed dataset {name:?} does not open: {e}"));
        let meta = atlas
            .dataset_meta(&name)
            .unwrap()
            .expect("listed dataset has meta");
        assert_eq!(ds.meta().expect("meta"), meta, "meta() vs dataset_meta()");
        let mut arrays = Vec::new();
        for (aname, entry) in &meta.arrays {
            let values = render_array(&ds, aname, entry.schema.dtype).await;
            let stats = ds
                .array_stats(aname)
                .await
                .unwrap_or_else(|e| panic!("stats {name}/{aname}: {e}"))
                .unwrap_or_else(|| panic!("stats {name}/{aname} missing"));
            arrays.push(ArraySnap {
                name: aname.clone(),
                values,
                stats: format!("{stats:?}"),
            });
        }
        datasets.push(DatasetSnap { name, meta, arrays });
    }
    Snapshot {
        array_names: atlas.list_arrays(),
        datasets,
    }
}

/// Total bytes held by an in-memory storage.
pub fn used_bytes(storage: &MemoryStorage) -> u64 {
    storage
        .files()
        .iter()
        .map(|p| storage.contents(p).map_or(0, |c| c.len() as u64))
        .sum()
}

/// The path of an array's newest committed layer file.
pub fn newest_layer(atlas: &Atlas, root: &Path, array: &str) -> PathBuf {
    let layers = atlas.array_layers(array);
    let last = layers
        .last()
        .unwrap_or_else(|| panic!("array {array} has no committed layer"));
    let dir = atlas.array_dir(array).expect("the array has a directory");
    assert!(
        dir.starts_with(root),
        "{} is under {}",
        dir.display(),
        root.display()
    );
    dir.join(last.as_str())
}
