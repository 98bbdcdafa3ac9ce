//! The real crash test: a writer process is killed with `SIGKILL` at random
//! instants, over and over, on one store; after every kill the store must open
//! and hold exactly the last committed state or the one being committed (SPEC
//! §2 "one commit point": never a mix, never a store that fails to open).
//!
//! The writer is this test binary re-invoked: the parent test
//! ([`sigkill_loop_keeps_store_at_a_commit`]) spawns `current_exe()` running only
//! [`child_main`] with [`CHILD_ENV`] naming the store. The child opens the store
//! (creating it the first time), rebuilds its model of the contents from the
//! store, then loops forever: a random batch of mutations applied to both the
//! store and the model, a check that the store reads back as the model, then a
//! `flush` or `compact`, sometimes followed by history commits (a tag, an
//! untag, `gc`; the store keeps 4 generations of history and no grace
//! period). Before each commit it appends
//! `pending <kind> <max generation step> <hash>` to `commits.log` (beside the
//! store directory, fsynced) and after it `committed <generation>`.
//!
//! After each kill the parent reopens the store read-only, hashes its canonical
//! dump (the same code the child uses), runs `verify`, and requires
//! (generation, hash) to be the last committed pair or the in-flight one, and
//! every generation its log lists to open with `open_at` and read whole.
//!
//! The same loop runs against S3 ([`sigkill_loop_on_s3_keeps_store_at_a_commit`]):
//! the parent hosts the in-process S3 server (`atlas-s3test`) and the child
//! writes to `s3://crash/<name>` over loopback, so kills land between and
//! inside HTTP requests (uploads cut off, manifests written but not answered).
//!
//! Knobs: `ATLAS_CRASH_KILLS` (default 120; the S3 loop runs a third of it),
//! `ATLAS_CRASH_SEED` (master seed; printed at the start, random when unset).

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atlas::array_format::LocalStorage;
use atlas::{
    ArraySchema, At, Atlas, Attr, DType, DatasetView, FillValue, OpenOptions, Policy, Storage,
    StoreConfig, TimestampNs,
};
use ndarray::{ArrayD, IxDyn};

/// Set in the child's environment to the store directory; absent, [`child_main`] is a no-op.
const CHILD_ENV: &str = "ATLAS_CRASH_CHILD";
/// Set in the child's environment to the S3 endpoint when the store is on S3.
const CHILD_S3_ENV: &str = "ATLAS_CRASH_CHILD_S3";
/// The bucket of the S3 crash loop.
const S3_BUCKET: &str = "crash";
/// The child's RNG seed.
const CHILD_SEED_ENV: &str = "ATLAS_CRASH_CHILD_SEED";
/// The parent's master seed.
const SEED_ENV: &str = "ATLAS_CRASH_SEED";
/// How many kills the parent performs.
const KILLS_ENV: &str = "ATLAS_CRASH_KILLS";
const DEFAULT_KILLS: u64 = 120;
/// Pending bytes per array before spilling to a scratch file: tiny, so flushes copy spills.
const PENDING_BUDGET: u64 = 4096;
/// Shortest and longest time the child runs before it is killed.
const MIN_DELAY_MS: u64 = 5;
const MAX_DELAY_MS: u64 = 300;
/// Every this many kills the store is removed and the child killed within
/// `FRESH_MAX_DELAY_MS`, to hit the creation of a store.
const FRESH_EVERY: u64 = 8;
const FRESH_MAX_DELAY_MS: u64 = 12;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------------------
// Deterministic randomness.

/// `SplitMix64`: tiny, deterministic, good enough to drive a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

// ---------------------------------------------------------------------------
// The model of a store's logical contents, and its canonical dump.

/// Cell values in row-major order, for the dtypes the workload uses.
#[derive(Clone, Debug, PartialEq)]
enum Cells {
    F32(Vec<f32>),
    I32(Vec<i32>),
    Str(Vec<String>),
}

#[derive(Clone, Debug)]
struct ArrayModel {
    schema: ArraySchema,
    attrs: Vec<(String, Attr)>,
    cells: Cells,
}

#[derive(Clone, Debug, Default)]
struct DatasetModel {
    attrs: Vec<(String, Attr)>,
    arrays: Vec<(String, ArrayModel)>,
}

/// Datasets, arrays and attributes in store order (insertion order).
#[derive(Clone, Debug, Default)]
struct Model {
    datasets: Vec<(String, DatasetModel)>,
}

/// Inserts or replaces `key`, keeping an existing key's position (like `IndexMap::insert`).
fn upsert<T>(v: &mut Vec<(String, T)>, key: &str, value: T) {
    if let Some(slot) = v.iter_mut().find(|(k, _)| k == key) {
        slot.1 = value;
    } else {
        v.push((key.to_owned(), value));
    }
}

/// Removes `key`, keeping the order of the rest (like `IndexMap::shift_remove`).
fn remove_key<T>(v: &mut Vec<(String, T)>, key: &str) -> Option<T> {
    let i = v.iter().position(|(k, _)| k == key)?;
    Some(v.remove(i).1)
}

/// A deterministic, complete text form of a model. Two stores with the same
/// logical contents have the same dump.
fn dump(model: &Model) -> String {
    let mut s = String::new();
    for (name, ds) in &model.datasets {
        writeln!(s, "dataset {name:?}").unwrap();
        for (k, v) in &ds.attrs {
            writeln!(s, "  attr {k:?} = {v:?}").unwrap();
        }
        for (an, a) in &ds.arrays {
            let sc = &a.schema;
            writeln!(
                s,
                "  array {an:?} {:?} dims={:?} shape={:?} chunks={:?} fill={:?}",
                sc.dtype, sc.dims, sc.shape, sc.chunk_shape, sc.fill_value
            )
            .unwrap();
            for (k, v) in &a.attrs {
                writeln!(s, "    attr {k:?} = {v:?}").unwrap();
            }
            writeln!(s, "    cells {:?}", a.cells).unwrap();
        }
    }
    s
}

/// `DefaultHasher::new()` has fixed keys, so this is the same in every process
/// running this binary.
fn hash_dump(dump: &str) -> String {
    let mut h = DefaultHasher::new();
    h.write(dump.as_bytes());
    format!("{:016x}-{}", h.finish(), dump.len())
}

async fn read_all<T: atlas::ArrayElement>(
    ds: &DatasetView,
    array: &str,
) -> Res<(Vec<usize>, Vec<T>)> {
    let a = ds
        .read_array::<T>(array, vec![], vec![])
        .await?
        .ok_or_else(|| format!("{}/{array}: listed but read_array returned None", ds.name()))?;
    Ok((a.shape().to_vec(), a.iter().cloned().collect()))
}

/// Reads a store's whole logical contents through the public API.
async fn load_model(atlas: &Atlas) -> Res<Model> {
    let mut model = Model::default();
    for name in atlas.list_datasets().unwrap() {
        let ds = atlas.open_dataset(&name).await?;
        let meta = ds.meta()?;
        let mut dm = DatasetModel {
            attrs: meta
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            arrays: Vec::new(),
        };
        for (an, entry) in &meta.arrays {
            let schema = (*entry.schema).clone();
            let (shape, cells) = match schema.dtype {
                DType::Float32 => {
                    let (s, v) = read_all::<f32>(&ds, an).await?;
                    (s, Cells::F32(v))
                }
                DType::Int32 => {
                    let (s, v) = read_all::<i32>(&ds, an).await?;
                    (s, Cells::I32(v))
                }
                DType::String => {
                    let (s, v) = read_all::<String>(&ds, an).await?;
                    (s, Cells::Str(v))
                }
                other => return Err(format!("{name}/{an}: unexpected dtype {other:?}").into()),
            };
            let want: Vec<usize> = schema.shape.iter().map(|&n| n as usize).collect();
            if shape != want {
                return Err(format!("{name}/{an}: read shape {shape:?}, schema {want:?}").into());
            }
            dm.arrays.push((
                an.clone(),
                ArrayModel {
                    schema,
                    attrs: entry
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    cells,
                },
            ));
        }
        model.datasets.push((name, dm));
    }
    Ok(model)
}

// ---------------------------------------------------------------------------
// The commit log shared by child and parent.

/// Appends whole lines, each fsynced before the call returns.
struct Log(std::fs::File);

impl Log {
    fn open(path: &Path) -> Res<Log> {
        Ok(Log(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?))
    }

    fn line(&mut self, s: &str) -> Res<()> {
        self.0.write_all(format!("{s}\n").as_bytes())?;
        self.0.sync_data()?;
        Ok(())
    }
}

/// What a commit in flight was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Create,
    Flush,
    Compact,
    Tag,
    Gc,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Flush => "flush",
            Kind::Compact => "compact",
            Kind::Tag => "tag",
            Kind::Gc => "gc",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "create" => Kind::Create,
            "flush" => Kind::Flush,
            "compact" => Kind::Compact,
            "tag" => Kind::Tag,
            "gc" => Kind::Gc,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    kind: Kind,
    /// The commit may advance the generation by 1..=`max_step`
    /// (`compact` with pending changes commits twice).
    max_step: u64,
    hash: String,
}

/// The parsed log: the last committed (generation, hash) — `None` while no
/// store exists — and the commit in flight, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LogState {
    committed: Option<(u64, String)>,
    in_flight: Option<Pending>,
}

/// Parses `commits.log`. A torn last line (no newline: the writer was killed
/// mid-write) is ignored.
///
/// Lines: `absent` | `state <gen> <hash>` (written by the parent after a
/// check) | `pending <kind> <max step> <hash>` | `committed <gen>`.
fn parse_log(text: &str) -> LogState {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let mut st = LogState::default();
    for (no, line) in complete.lines().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        let bad = || -> ! { panic!("commits.log line {}: malformed {line:?}", no + 1) };
        match f.as_slice() {
            ["absent"] => st = LogState::default(),
            ["state", g, h] => {
                st = LogState {
                    committed: Some((g.parse().unwrap_or_else(|_| bad()), (*h).to_owned())),
                    in_flight: None,
                };
            }
            ["pending", k, step, h] => {
                st.in_flight = Some(Pending {
                    kind: Kind::parse(k).unwrap_or_else(|| bad()),
                    max_step: step.parse().unwrap_or_else(|_| bad()),
                    hash: (*h).to_owned(),
                });
            }
            ["committed", g] => {
                let p = st.in_flight.take().unwrap_or_else(|| bad());
                st.committed = Some((g.parse().unwrap_or_else(|_| bad()), p.hash));
            }
            _ => bad(),
        }
    }
    st
}

// ---------------------------------------------------------------------------
// The child: the writer that gets killed.

const DATASETS: [&str; 10] = [
    "argo_0001",
    "argo_0002",
    "argo_0003",
    "station_A",
    "station_B",
    "member.01",
    "member.02",
    "granule-x",
    "granule-y",
    "ds10",
];
const ARRAYS: [&str; 4] = ["temp", "count", "label", "big"];
const ATTR_KEYS: [&str; 7] = [
    "title",
    "units",
    "valid_range",
    "history",
    "created",
    "flag",
    "missing_value",
];

fn random_schema(rng: &mut Rng, array: &str) -> ArraySchema {
    let (dtype, dims, shape, chunks, fill) = match array {
        "temp" => (
            DType::Float32,
            vec!["y", "x"],
            vec![1 + rng.below(12), 1 + rng.below(10)],
            Some(vec![1 + rng.below(5), 1 + rng.below(5)]),
            rng.chance(1, 2).then_some(FillValue::Float32(-999.5)),
        ),
        "count" => (
            DType::Int32,
            vec!["n"],
            vec![1 + rng.below(40)],
            rng.chance(2, 3).then(|| vec![1 + rng.below(16)]),
            rng.chance(1, 2).then_some(FillValue::Int32(-1)),
        ),
        "label" => (
            DType::String,
            vec!["n"],
            vec![1 + rng.below(20)],
            Some(vec![1 + rng.below(8)]),
            rng.chance(1, 2).then(|| FillValue::String("?".into())),
        ),
        // 48 × 64 f32 = 12 KiB in 12 chunks: well over the pending budget, so it spills.
        "big" => (
            DType::Float32,
            vec!["t", "z"],
            vec![48, 64],
            Some(vec![16, 16]),
            None,
        ),
        other => unreachable!("unknown array {other}"),
    };
    ArraySchema::new(
        array,
        dtype,
        dims.into_iter().map(String::from).collect(),
        shape,
        chunks,
        fill,
    )
    .expect("workload schemas are valid")
}

fn fill_cells(schema: &ArraySchema) -> Cells {
    let n = schema.shape.iter().product::<u64>() as usize;
    match (&schema.dtype, &schema.fill_value) {
        (DType::Float32, Some(FillValue::Float32(v))) => Cells::F32(vec![*v; n]),
        (DType::Float32, None) => Cells::F32(vec![0.0; n]),
        (DType::Int32, Some(FillValue::Int32(v))) => Cells::I32(vec![*v; n]),
        (DType::Int32, None) => Cells::I32(vec![0; n]),
        (DType::String, Some(FillValue::String(v))) => Cells::Str(vec![v.clone(); n]),
        (DType::String, None) => Cells::Str(vec![String::new(); n]),
        other => unreachable!("unexpected schema {other:?}"),
    }
}

fn random_attr(rng: &mut Rng, stamp: u64) -> Attr {
    match rng.below(10) {
        0 => Attr::Bool(rng.chance(1, 2)),
        1 => Attr::Int64(-(stamp as i64) * 3),
        2 => Attr::UInt64(stamp * 7),
        3 => Attr::Float64(stamp as f64 + 0.125),
        4 => Attr::Float64([f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.index(3)]),
        5 => Attr::String(format!("written at stamp {stamp}")),
        6 => Attr::String("2024-01-02T03:04:05Z".into()),
        7 => Attr::Float64List(vec![-2.5, stamp as f64, f64::NAN]),
        8 => Attr::StringList(vec!["a".into(), format!("s{stamp}")]),
        _ => Attr::Timestamp(TimestampNs(1_700_000_000_000_000_000 + stamp as i64)),
    }
}

/// Global row-major indices of the cells of the hyperslab, in slab order.
fn slab_indices(shape: &[u64], start: &[u64], count: &[u64]) -> Vec<usize> {
    let n: u64 = count.iter().product();
    let mut out = Vec::with_capacity(n as usize);
    for mut i in 0..n {
        let mut global = 0u64;
        let mut stride = 1u64;
        for axis in (0..shape.len()).rev() {
            let c = i % count[axis];
            i /= count[axis];
            global += (start[axis] + c) * stride;
            stride *= shape[axis];
        }
        out.push(global as usize);
    }
    out
}

/// Writes a hyperslab with values derived from (stamp, dataset, cell) to the
/// store and the model.
async fn write_slab(
    ds: &DatasetView,
    am: &mut ArrayModel,
    array: &str,
    start: Vec<u64>,
    count: Vec<u64>,
    stamp: u64,
    ds_idx: u64,
) -> Res<()> {
    let idx = slab_indices(&am.schema.shape, &start, &count);
    let dim = IxDyn(&count.iter().map(|&c| c as usize).collect::<Vec<_>>());
    match &mut am.cells {
        Cells::F32(cells) => {
            // Hash-like (so chunks compress poorly and the pending budget is
            // really exceeded) and exact in f32: an integer below 2^22 plus
            // quarters.
            let v: Vec<f32> = idx
                .iter()
                .map(|&g| {
                    let h = Rng(stamp << 32 ^ ds_idx << 24 ^ g as u64).next();
                    (h % (1 << 22)) as f32 + (ds_idx % 4) as f32 * 0.25
                })
                .collect();
            for (&g, &x) in idx.iter().zip(&v) {
                cells[g] = x;
            }
            let a = ArrayD::from_shape_vec(dim, v)?;
            ds.write_array(array, start, a.view()).await?;
        }
        Cells::I32(cells) => {
            let v: Vec<i32> = idx
                .iter()
                .map(|&g| {
                    (stamp as i32).wrapping_mul(100_000).wrapping_add(g as i32) ^ ds_idx as i32
                })
                .collect();
            for (&g, &x) in idx.iter().zip(&v) {
                cells[g] = x;
            }
            let a = ArrayD::from_shape_vec(dim, v)?;
            ds.write_array(array, start, a.view()).await?;
        }
        Cells::Str(cells) => {
            let v: Vec<String> = idx
                .iter()
                .map(|&g| format!("s{stamp}/d{ds_idx}/c{g}{}", "~".repeat(g % 5)))
                .collect();
            for (&g, x) in idx.iter().zip(&v) {
                cells[g].clone_from(x);
            }
            let a = ArrayD::from_shape_vec(dim, v)?;
            ds.write_array(array, start, a.view()).await?;
        }
    }
    Ok(())
}

/// One random mutation, applied to the store and the model alike.
async fn mutate(atlas: &Atlas, model: &mut Model, rng: &mut Rng, stamp: u64) -> Res<()> {
    let roll = rng.below(100);
    let n_ds = model.datasets.len();
    if n_ds == 0 || roll < 10 {
        let free: Vec<&str> = DATASETS
            .iter()
            .copied()
            .filter(|d| !model.datasets.iter().any(|(n, _)| n == d))
            .collect();
        if !free.is_empty() {
            let name = free[rng.index(free.len())];
            atlas.create_dataset(name).await?;
            model
                .datasets
                .push((name.to_owned(), DatasetModel::default()));
            return Ok(());
        }
        if n_ds == 0 {
            return Ok(());
        }
    }
    let di = rng.index(model.datasets.len());
    let ds_name = model.datasets[di].0.clone();
    let ds_idx = DATASETS.iter().position(|d| *d == ds_name).unwrap() as u64;
    let ds = atlas.open_dataset(&ds_name).await?;
    let dm = &mut model.datasets[di].1;
    match roll {
        // Define an array this dataset lacks.
        10..=29 => {
            let missing: Vec<&str> = ARRAYS
                .iter()
                .copied()
                .filter(|a| !dm.arrays.iter().any(|(n, _)| n == a))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let array = missing[rng.index(missing.len())];
            let schema = random_schema(rng, array);
            ds.define_array_schema(array, schema.clone()).await?;
            dm.arrays.push((
                array.to_owned(),
                ArrayModel {
                    cells: fill_cells(&schema),
                    schema,
                    attrs: Vec::new(),
                },
            ));
        }
        // Write a hyperslab (sometimes the whole array).
        30..=69 => {
            if dm.arrays.is_empty() {
                return Ok(());
            }
            let ai = rng.index(dm.arrays.len());
            let (array, am) = &mut dm.arrays[ai];
            let shape = am.schema.shape.clone();
            let (start, count) = if rng.chance(1, 3) {
                (vec![0; shape.len()], shape)
            } else {
                let start: Vec<u64> = shape.iter().map(|&n| rng.below(n)).collect();
                let count = shape
                    .iter()
                    .zip(&start)
                    .map(|(&n, &s)| 1 + rng.below(n - s))
                    .collect();
                (start, count)
            };
            write_slab(&ds, am, array, start, count, stamp, ds_idx).await?;
        }
        // Delete an array.
        70..=74 => {
            if dm.arrays.is_empty() {
                return Ok(());
            }
            let array = dm.arrays[rng.index(dm.arrays.len())].0.clone();
            ds.delete_array(&array).await?;
            remove_key(&mut dm.arrays, &array);
        }
        // Delete the dataset.
        75..=79 => {
            atlas.delete_dataset(&ds_name).await?;
            remove_key(&mut model.datasets, &ds_name);
        }
        // Dataset attributes.
        80..=87 => {
            let key = ATTR_KEYS[rng.index(ATTR_KEYS.len())];
            if rng.chance(1, 4) {
                let got = ds.delete_attribute(key)?;
                let want = remove_key(&mut dm.attrs, key);
                if got != want {
                    return Err(format!(
                        "{ds_name}: delete_attribute({key}) gave {got:?}, model {want:?}"
                    )
                    .into());
                }
            } else {
                let v = random_attr(rng, stamp);
                ds.set_attribute(key, v.clone())?;
                upsert(&mut dm.attrs, key, v);
            }
        }
        // Array attributes.
        _ => {
            if dm.arrays.is_empty() {
                return Ok(());
            }
            let ai = rng.index(dm.arrays.len());
            let (array, am) = &mut dm.arrays[ai];
            let key = ATTR_KEYS[rng.index(ATTR_KEYS.len())];
            let v = random_attr(rng, stamp);
            ds.set_array_attribute(array, key, v.clone())?;
            upsert(&mut am.attrs, key, v);
        }
    }
    Ok(())
}

/// Fails with both dumps saved beside the log when the store does not read back as the model.
async fn check_matches(atlas: &Atlas, model: &Model, work: &Path, when: &str) -> Res<String> {
    let want = dump(model);
    let got = dump(&load_model(atlas).await?);
    if got != want {
        std::fs::write(work.join("mismatch-model.txt"), &want)?;
        std::fs::write(work.join("mismatch-store.txt"), &got)?;
        return Err(format!(
            "{when}: store reads back differently from the model (see {}/mismatch-*.txt)",
            work.display()
        )
        .into());
    }
    Ok(hash_dump(&want))
}

/// The storage and root of the store `work/<name>`: that directory, or with
/// an S3 endpoint the prefix `<name>` of bucket [`S3_BUCKET`].
fn storage_of(store: &Path, s3: Option<&str>) -> (Arc<dyn Storage>, PathBuf) {
    let Some(endpoint) = s3 else {
        return (Arc::new(LocalStorage), store.to_owned());
    };
    let name = store
        .file_name()
        .and_then(|n| n.to_str())
        .expect("store name");
    let mut options = atlas_s3test::client_options(endpoint);
    options.push(("atlas_max_retries".into(), "2".into()));
    atlas::storage_for(&format!("s3://{S3_BUCKET}/{name}"), &options).expect("s3 storage")
}

async fn child_loop(store: &Path, seed: u64, s3: Option<&str>) -> Res<()> {
    let work = store.parent().expect("store has a parent").to_owned();
    let mut log = Log::open(&work.join("commits.log"))?;
    let mut rng = Rng(seed);
    let (storage, root) = storage_of(store, s3);
    let opened = Atlas::open_with(
        Arc::clone(&storage),
        &root,
        OpenOptions {
            pending_budget_bytes: PENDING_BUDGET,
            write: true,
            ..OpenOptions::default()
        },
    )
    .await;
    let atlas = match opened {
        Ok(a) => a,
        Err(atlas::Error::StoreNotFound { .. }) => {
            log.line(&format!(
                "pending create 1 {}",
                hash_dump(&dump(&Model::default()))
            ))?;
            let a = Atlas::create_with(
                Arc::clone(&storage),
                &root,
                StoreConfig {
                    pending_budget_bytes: PENDING_BUDGET,
                    policy: Policy {
                        gc_grace_secs: 0,
                        keep_generations: 4,
                        ..Policy::default()
                    },
                    ..StoreConfig::default()
                },
            )
            .await?;
            log.line(&format!("committed {}", a.generation()))?;
            a
        }
        Err(e) => return Err(e.into()),
    };
    // Resync: the model is whatever the store holds now.
    let mut model = load_model(&atlas).await?;
    loop {
        let base = atlas.generation();
        for op in 0..=rng.below(6) {
            let stamp = (base + 1) * 16 + op;
            mutate(&atlas, &mut model, &mut rng, stamp).await?;
        }
        let hash = check_matches(&atlas, &model, &work, "before commit").await?;
        // Bias towards compaction so kills land inside it often.
        match rng.below(6) {
            0..=2 => {
                log.line(&format!("pending flush 1 {hash}"))?;
                atlas.flush().await?;
                log.line(&format!("committed {}", atlas.generation()))?;
            }
            3 | 4 => {
                log.line(&format!("pending flush 1 {hash}"))?;
                atlas.flush().await?;
                log.line(&format!("committed {}", atlas.generation()))?;
                // Compaction may commit twice even with nothing pending: a
                // registry snapshot, then the merged layer lists.
                log.line(&format!("pending compact 2 {hash}"))?;
                atlas.compact().await?;
                log.line(&format!("committed {}", atlas.generation()))?;
            }
            // Compact with changes pending: its own flush commits first.
            _ => {
                log.line(&format!("pending compact 2 {hash}"))?;
                atlas.compact().await?;
                log.line(&format!("committed {}", atlas.generation()))?;
            }
        }
        check_matches(&atlas, &model, &work, "after commit").await?;
        // History commits: the state (hash) stays; a gc with nothing to
        // expire commits nothing (step 0 is then the committed state).
        match rng.below(4) {
            0 => {
                log.line(&format!("pending tag 1 {hash}"))?;
                let g = atlas.generation();
                atlas.tag(&format!("t{g}"), At::Generation(g), None).await?;
                log.line(&format!("committed {}", atlas.generation()))?;
            }
            1 => {
                if let Some(t) = atlas.tags().first().map(|t| t.name.clone()) {
                    log.line(&format!("pending tag 1 {hash}"))?;
                    atlas.untag(&t).await?;
                    log.line(&format!("committed {}", atlas.generation()))?;
                }
            }
            2 => {
                log.line(&format!("pending gc 1 {hash}"))?;
                atlas.gc(false).await?;
                log.line(&format!("committed {}", atlas.generation()))?;
            }
            _ => {}
        }
    }
}

/// The writer process. A no-op unless [`CHILD_ENV`] is set, so it passes
/// instantly in ordinary test runs; the parent runs it alone in a child process.
#[test]
fn child_main() {
    let Some(store) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(CHILD_SEED_ENV)
        .expect("child seed set")
        .parse()
        .expect("child seed is a number");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s3 = std::env::var(CHILD_S3_ENV).ok().filter(|e| !e.is_empty());
    let r = rt.block_on(child_loop(Path::new(&store), seed, s3.as_deref()));
    // The loop only ends on an error: the parent reports our stderr.
    panic!("crash child stopped: {r:?}");
}

// ---------------------------------------------------------------------------
// The parent: kill, reopen, check.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Outcome {
    /// No store yet, none committed.
    Absent,
    /// The last committed state; `Some` names the commit that was in flight.
    Old(Option<Kind>),
    /// The in-flight commit landed.
    New(Kind),
}

/// Reopens the store and classifies it against the log, or explains what is wrong.
async fn check_store(
    store: &Path,
    st: &LogState,
    s3: Option<&str>,
) -> Result<(Outcome, Option<(u64, String)>), String> {
    let (storage, root) = storage_of(store, s3);
    if storage
        .read_all(&root.join("atlas.json"))
        .is_ok_and(|b| String::from_utf8_lossy(&b).contains("\"retired_file\""))
    {
        SIDE_FILES_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if storage
            .list_dir(&root.join("atlas.history"))
            .is_ok_and(|v| v.iter().any(|f| f.starts_with("retired-chunk-")))
        {
            CHUNKS_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let atlas = match Atlas::open_with(storage, &root, OpenOptions::default()).await {
        Ok(a) => a,
        Err(atlas::Error::StoreNotFound { .. }) if st.committed.is_none() => {
            let outcome = st
                .in_flight
                .as_ref()
                .map_or(Outcome::Absent, |p| Outcome::Old(Some(p.kind)));
            return Ok((outcome, None));
        }
        Err(e) => return Err(format!("open failed: {e} ({e:?})")),
    };
    let generation = atlas.generation();
    let model = load_model(&atlas)
        .await
        .map_err(|e| format!("reading the reopened store failed: {e}"))?;
    let text = dump(&model);
    let hash = hash_dump(&text);
    let report = atlas::verify::verify(&atlas, |_, _| {});
    if !report.problems.is_empty() {
        return Err(format!("verify found problems: {:#?}", report.problems));
    }
    // Retained generations open and read whole: the newest four, the
    // oldest and every tenth between (a bound, should the window grow).
    let log = atlas
        .log(usize::MAX)
        .await
        .map_err(|e| format!("log failed: {e}"))?;
    let last = log.len().saturating_sub(1);
    for (_, e) in log
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i < 4 || *i == last || i % 10 == 0)
    {
        let (storage, root) = storage_of(store, s3);
        let past = Atlas::open_at_with(
            storage,
            &root,
            At::Generation(e.generation),
            OpenOptions::default(),
        )
        .await
        .map_err(|err| format!("retained generation {} does not open: {err}", e.generation))?;
        load_model(&past)
            .await
            .map_err(|err| format!("retained generation {} does not read: {err}", e.generation))?;
    }
    let cg = st.committed.as_ref().map_or(0, |c| c.0);
    let in_flight = st.in_flight.as_ref();
    let outcome = if st.committed.as_ref() == Some(&(generation, hash.clone())) {
        Outcome::Old(in_flight.map(|p| p.kind))
    } else if let Some(p) =
        in_flight.filter(|p| p.hash == hash && generation > cg && generation <= cg + p.max_step)
    {
        Outcome::New(p.kind)
    } else {
        std::fs::write(store.with_file_name("reopened.txt"), &text).ok();
        return Err(format!(
            "reopened store is neither the committed nor the in-flight state: \
             generation {generation}, hash {hash}; log says committed {:?}, in flight {:?} \
             (dump in reopened.txt)",
            st.committed, st.in_flight
        ));
    };
    Ok((outcome, Some((generation, hash))))
}

/// After the last kill: a writer opening the store removes every file no commit
/// names (SPEC §2: "the writer removes them later"), so only the registry, the
/// lock file and the named layers remain.
async fn check_garbage_swept(store: &Path) -> Result<(), String> {
    if !store.join("atlas.json").exists() {
        return Ok(());
    }
    let atlas = Atlas::open_with(
        Arc::new(LocalStorage),
        store,
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        },
    )
    .await
    .map_err(|e| format!("final open for writing failed: {e}"))?;
    let mut left = Vec::new();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join("atlas.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    // Retired files stay, listed in the manifest or in the side file it
    // names, for the grace period.
    let side: Option<serde_json::Value> = match manifest["retired_file"].as_str() {
        Some(f) => Some(
            serde_json::from_slice(
                &std::fs::read(store.join("atlas.history").join(f))
                    .map_err(|e| format!("the retired list {f}: {e}"))?,
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    // The side file's sealed chunks hold the rest of the list.
    let chunk_names: Vec<String> = side
        .as_ref()
        .and_then(|s| s["chunks"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c["file"].as_str().map(str::to_owned))
        .collect();
    let mut retired_lists = vec![side
        .as_ref()
        .map_or(&manifest["retired"], |s| &s["retired"])
        .clone()];
    for c in &chunk_names {
        let chunk: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.join("atlas.history").join(c))
                .map_err(|e| format!("the retired chunk {c}: {e}"))?,
        )
        .map_err(|e| e.to_string())?;
        retired_lists.push(chunk["retired"].clone());
    }
    let retired_in = |dir: &str| -> Vec<String> {
        retired_lists
            .iter()
            .filter_map(serde_json::Value::as_array)
            .flatten()
            .filter(|r| r["dir"].as_str() == Some(dir))
            .filter_map(|r| r["file"].as_str().map(str::to_owned))
            .collect()
    };
    for e in std::fs::read_dir(store).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().is_dir() {
            if name != "atlas.json" && name != "atlas.lock" {
                left.push(name);
            }
            continue;
        }
        let mut live: Vec<String> = if name == "atlas.history" {
            // Copies of retained generations (and of the current or a newer
            // one, left by a commit killed before its manifest).
            let current = atlas.generation();
            let retained: Vec<u64> = atlas
                .log(usize::MAX)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|e| e.generation)
                .collect();
            std::fs::read_dir(e.path())
                .map_err(|e| e.to_string())?
                .filter_map(Result::ok)
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|f| {
                    f.strip_suffix(".json")
                        .and_then(|g| g.parse::<u64>().ok())
                        .is_some_and(|g| g >= current || retained.contains(&g))
                        || manifest["retired_file"].as_str() == Some(f.as_str())
                        || chunk_names.contains(f)
                })
                .collect()
        } else if name == "atlas.meta" {
            // Registry runs (and segments of older stores): live when the
            // manifest names them.
            ["runs", "segments"]
                .iter()
                .filter_map(|k| manifest[*k].as_array())
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        } else {
            // The array whose directory this is (directories are ids).
            manifest["arrays"]
                .as_object()
                .and_then(|arrays| {
                    arrays
                        .iter()
                        .find(|(a, v)| v["dir"].as_str().unwrap_or(a.as_str()) == name)
                })
                .map(|(a, _)| {
                    atlas
                        .array_layers(a)
                        .iter()
                        .map(|l| l.as_str().to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        live.extend(retired_in(&name));
        for f in std::fs::read_dir(e.path()).map_err(|e| e.to_string())? {
            let f = f.map_err(|e| e.to_string())?;
            let fname = f.file_name().to_string_lossy().into_owned();
            if !live.contains(&fname) {
                left.push(format!("{name}/{fname}"));
            }
        }
        if live.is_empty() && name != "atlas.meta" && name != "atlas.history" {
            left.push(format!("{name}/ (directory of no live array)"));
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "files no commit names survived a writer's open: {left:?}"
        ))
    }
}

/// Reopens after a kill that found the retired list in its side file
/// (printed with the summary: the loop must reach that state).
static SIDE_FILES_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Of those, reopens that found sealed chunks of the list.
static CHUNKS_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Cuts a torn last line off, so the next line the parent appends starts clean.
fn read_and_trim_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let keep = text.rfind('\n').map_or(0, |i| i + 1);
    if keep < text.len() {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(keep as u64).unwrap();
        f.sync_all().unwrap();
    }
    text[..keep].to_owned()
}

/// `scratch-*.tmp` files in the store's array directories.
fn count_scratch_files(store: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(store) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_dir(e.path()).ok())
        .flat_map(|d| d.filter_map(Result::ok))
        .filter(|f| {
            let n = f.file_name();
            let n = n.to_string_lossy();
            n.starts_with("scratch-") && n.ends_with(".tmp")
        })
        .count()
}

fn describe_store(store: &Path) -> String {
    let mut s = String::new();
    let mut stack = vec![store.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let p = e.path();
            let len = e.metadata().map_or(0, |m| m.len());
            writeln!(
                s,
                "  {} ({len} bytes)",
                p.strip_prefix(store).unwrap_or(&p).display()
            )
            .unwrap();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    let reg = std::fs::read_to_string(store.join("atlas.json"))
        .unwrap_or_else(|e| format!("<unreadable: {e}>"));
    let reg: String = reg.chars().take(4000).collect();
    write!(s, "atlas.json:\n{reg}").unwrap();
    s
}

#[test]
fn sigkill_loop_keeps_store_at_a_commit() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    sigkill_loop(None);
}

/// The loop against S3: the server runs in this (the parent) process.
#[test]
fn sigkill_loop_on_s3_keeps_store_at_a_commit() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let server = atlas_s3test::S3Server::start();
    server.create_bucket(S3_BUCKET);
    sigkill_loop(Some(&server));
    assert_eq!(
        server.open_multipart_uploads(),
        0,
        "multipart uploads were left open (every killed one is aborted or expires in S3; here none may be)"
    );
}

fn sigkill_loop(s3: Option<&atlas_s3test::S3Server>) {
    let endpoint = s3.map(atlas_s3test::S3Server::endpoint);
    let endpoint = endpoint.as_deref();
    let kills: u64 = std::env::var(KILLS_ENV).ok().map_or(DEFAULT_KILLS, |v| {
        v.parse().expect("ATLAS_CRASH_KILLS is a number")
    });
    let kills = if s3.is_some() {
        kills.div_ceil(3)
    } else {
        kills
    };
    let seed: u64 = std::env::var(SEED_ENV).ok().map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().expect("ATLAS_CRASH_SEED is a number"),
    );
    println!("crash test: {kills} kills, seed {seed} (rerun with {SEED_ENV}={seed})");
    let dir = tempfile::Builder::new()
        .prefix("atlas-crash-")
        .tempdir()
        .unwrap();
    let work = dir.path().to_owned();
    let mut store: PathBuf = work.join("store");
    let log_path = work.join("commits.log");
    let err_path = work.join("child.stderr");
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Rng(seed);
    let mut counts: Vec<(Outcome, u64)> = Vec::new();
    let mut max_generation = 0;
    let mut kills_with_scratch = 0u64;
    let started = Instant::now();
    let fail = |dir: tempfile::TempDir, k: u64, msg: String| -> ! {
        let kept = dir.keep();
        panic!(
            "kill {k} (seed {seed}): {msg}\nwork dir kept at {}\nstore:\n{}",
            kept.display(),
            describe_store(&kept.join("store"))
        );
    };
    for k in 1..=kills {
        let child_seed = rng.next();
        // Every FRESH_EVERY kills, start over without a store and kill early,
        // so some kills land while the store is being created.
        let fresh = k % FRESH_EVERY == 1 && k > 1;
        if fresh && s3.is_some() {
            // A new prefix: the old one's objects stay, unreachable.
            store = work.join(format!("store-{k}"));
            Log::open(&log_path).unwrap().line("absent").unwrap();
        } else if fresh {
            std::fs::remove_dir_all(&store).unwrap();
            Log::open(&log_path).unwrap().line("absent").unwrap();
        }
        let delay = if k % FRESH_EVERY == 1 {
            Duration::from_millis(1 + rng.below(FRESH_MAX_DELAY_MS))
        } else {
            Duration::from_millis(MIN_DELAY_MS + rng.below(MAX_DELAY_MS - MIN_DELAY_MS + 1))
        };
        let mut child = Command::new(&exe)
            .args([
                "crash::child_main",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &store)
            .env(CHILD_S3_ENV, endpoint.unwrap_or_default())
            .env(CHILD_SEED_ENV, child_seed.to_string())
            // The child's commits keep at most 2 retired entries inline, so
            // they write and replace the side file (the parent's open for
            // writing and its checks use the default of 32).
            .env("ATLAS_TEST_INLINE_RETIRED", "2")
            // and seal protected entries into chunks of 2 past 4 of them.
            .env("ATLAS_TEST_RETIRED_CHUNK", "2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + delay;
        let mut early = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                early = Some(status);
                break;
            }
            std::thread::sleep(
                Duration::from_millis(2).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        if early.is_none() {
            // SIGKILL on Unix.
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        if status.signal() != Some(9) {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            fail(
                dir,
                k,
                format!("the writer exited by itself ({status}):\n{err}"),
            );
        }
        // Scratch files of the killed writer's spilled pending data, if any:
        // proof the spill path runs (they are garbage the next writer sweeps).
        if count_scratch_files(&store) > 0 {
            kills_with_scratch += 1;
        }
        let log_text = read_and_trim_log(&log_path);
        let st = parse_log(&log_text);
        let (outcome, state) = match rt.block_on(check_store(&store, &st, endpoint)) {
            Ok(r) => r,
            Err(msg) => fail(dir, k, msg),
        };
        let mut log = Log::open(&log_path).unwrap();
        match &state {
            Some((g, h)) => {
                max_generation = max_generation.max(*g);
                log.line(&format!("state {g} {h}")).unwrap();
            }
            None => log.line("absent").unwrap(),
        }
        println!(
            "kill {k:3}: after {:3} ms -> {outcome:?} (generation {})",
            delay.as_millis(),
            state.as_ref().map_or(0, |s| s.0)
        );
        match counts.iter_mut().find(|(o, _)| *o == outcome) {
            Some(c) => c.1 += 1,
            None => counts.push((outcome, 1)),
        }
    }
    let n = |f: &dyn Fn(Outcome) -> bool| -> u64 {
        counts.iter().filter(|(o, _)| f(*o)).map(|(_, c)| c).sum()
    };
    let old = n(&|o| matches!(o, Outcome::Old(_) | Outcome::Absent));
    let new = n(&|o| matches!(o, Outcome::New(_)));
    println!(
        "crash test: {kills} kills survived in {:.1} s, reaching generation {max_generation}; \
         {old} saw the previous commit, {new} saw the in-flight commit; \
         {kills_with_scratch} left spilled scratch files behind; {} reopens so far (in all loops of this process) found the retired \
         list in its side file, {} with sealed chunks",
        started.elapsed().as_secs_f64(),
        SIDE_FILES_SEEN.load(std::sync::atomic::Ordering::Relaxed),
        CHUNKS_SEEN.load(std::sync::atomic::Ordering::Relaxed)
    );
    counts.sort_by_key(|(o, _)| format!("{o:?}"));
    for (o, c) in &counts {
        let what = match o {
            Outcome::Absent => "no store yet".to_owned(),
            Outcome::Old(None) => "previous commit, nothing in flight".to_owned(),
            Outcome::Old(Some(kind)) => format!("previous commit, {} in flight", kind.name()),
            Outcome::New(kind) => format!("in-flight {} landed", kind.name()),
        };
        println!("  {c:4} × {what}");
    }
    // (On S3 a writer's open sweeps nothing: orphans go after the grace period.)
    if s3.is_none() {
        if let Err(msg) = rt.block_on(check_garbage_swept(&store)) {
            fail(dir, kills, msg);
        }
    }
    assert!(
        max_generation > 1,
        "the writer never committed: kills too early?"
    );
}

#[test]
fn commit_log_parsing() {
    assert_eq!(parse_log(""), LogState::default());
    let st = parse_log("pending create 1 h0\ncommitted 1\npending flush 1 h1\ncommitted 2\npending compact 2 h2\ncomm");
    assert_eq!(st.committed, Some((2, "h1".to_owned())));
    assert_eq!(
        st.in_flight,
        Some(Pending {
            kind: Kind::Compact,
            max_step: 2,
            hash: "h2".to_owned()
        })
    );
    let st = parse_log("pending create 1 h0\ncommitted 1\nstate 7 h7\npending flu");
    assert_eq!(st.committed, Some((7, "h7".to_owned())));
    assert_eq!(st.in_flight, None);
    assert_eq!(parse_log("state 3 h\nabsent\n"), LogState::default());
}

#[test]
fn slab_indices_are_row_major() {
    assert_eq!(slab_indices(&[3, 4], &[1, 2], &[2, 2]), vec![6, 7, 10, 11]);
    assert_eq!(slab_indices(&[5], &[4], &[1]), vec![4]);
}
