//! The hostile-input table (SPEC §4 "bad input gets a typed error, never a
//! panic, and nothing committed is lost"), on real stores on the local disk.
//!
//! Each damaged-file test builds a small store with the public API
//! ([`Fixture::build`]: three datasets, arrays `TEMP` and `PSAL`, two commits),
//! damages exactly one file the way a disk, a bad copy or an attacker would,
//! and then checks the three promises:
//!
//! - **(a) typed error**: `Atlas::open_path`, or the first read of the damaged
//!   array, fails with the expected variant (never a panic), naming the file;
//! - **(b) `atlas verify` reports it**: [`atlas_verify`] does what the CLI's
//!   `atlas verify STORE` does (exit status 1 and a report), and the report names
//!   the damaged file; `atlas::verify::verify` on a handle opened before the
//!   damage also lists a problem naming it;
//! - **(c) nothing committed is lost**: every undamaged array still reads back
//!   exactly; where the store still opens, a writer can commit beside the damage
//!   and its commit sweeps nothing it should not; restoring the damaged file's
//!   bytes gives back the whole store, which then verifies clean.
//!
//! The API-misuse rows of SPEC §4 (bad names, dtype, rank, bounds, shapes,
//! chunk shapes, defining twice, unknown datasets) follow, each on a real store
//! that must read back unchanged afterwards.
//!
//! [`write_fuzz_seed_corpus`] (`cargo xtask fuzz-corpus` points it at `fuzz/corpus`) reuses
//! the layout helpers to write the seed corpora of the `fuzz/` targets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use atlas::array_format::Error as AfError;
use atlas::array_format::LocalStorage;
use atlas::{
    Atlas, Attr, Codec, DatasetView, Error, FillValue, MetaFormat, OpenOptions, StoreConfig,
    TimestampNs,
};
use ndarray::{ArrayD, IxDyn};

const DATASETS: [&str; 3] = ["argo_1", "argo_2", "argo_3"];
const ARRAYS: [&str; 2] = ["TEMP", "PSAL"];
/// Cells per array, and per chunk.
const N: usize = 8;
const CHUNK: u64 = 4;
const FILL: f32 = 99_999.0;

/// (dataset, array) → cells, row-major.
type Expected = BTreeMap<(String, String), Vec<f32>>;

// ---------------------------------------------------------------------------
// The store under test.

/// A real store in a temporary directory and what it must hold.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// What every array must read back as.
    expected: Expected,
}

fn values(ds: usize, array: usize, salt: f32) -> Vec<f32> {
    (0..N)
        .map(|k| 10.0 * ds as f32 + array as f32 + 0.25 * k as f32 + salt)
        .collect()
}

fn nd(v: Vec<f32>) -> ArrayD<f32> {
    let n = v.len();
    ArrayD::from_shape_vec(IxDyn(&[n]), v).unwrap()
}

impl Fixture {
    /// Three datasets with `TEMP` and `PSAL` (f32, 8 cells in chunks of 4, a
    /// fill value) and attributes, committed by a first flush; a second flush
    /// rewrites the first chunk of `argo_2/TEMP`. So `TEMP` has two layers (the
    /// first holds every dataset) and the registry two segments.
    async fn build(meta_format: MetaFormat) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let s = Atlas::create_path(
            &root,
            StoreConfig {
                meta_format,
                ..StoreConfig::default()
            },
        )
        .await
        .unwrap();
        let mut expected = BTreeMap::new();
        for (i, name) in DATASETS.iter().enumerate() {
            let ds = s.create_dataset(name).await.unwrap();
            ds.set_attribute("platform_number", Attr::Int64(6_900_000 + i as i64))
                .unwrap();
            for (j, a) in ARRAYS.iter().enumerate() {
                ds.define_array::<f32>(
                    a,
                    vec!["N_LEVELS".into()],
                    vec![N as u64],
                    Some(vec![CHUNK]),
                    Some(FillValue::Float32(FILL)),
                )
                .await
                .unwrap();
                ds.set_array_attribute(a, "units", Attr::from("degree_Celsius"))
                    .unwrap();
                let v = values(i, j, 0.0);
                ds.write_array(a, vec![], nd(v.clone()).view())
                    .await
                    .unwrap();
                expected.insert(((*name).to_owned(), (*a).to_owned()), v);
            }
        }
        s.flush().await.unwrap();
        let ds = s.open_dataset("argo_2").await.unwrap();
        let new = vec![-1.5f32; CHUNK as usize];
        ds.write_array("TEMP", vec![0], nd(new.clone()).view())
            .await
            .unwrap();
        expected
            .get_mut(&("argo_2".to_owned(), "TEMP".to_owned()))
            .unwrap()[..CHUNK as usize]
            .copy_from_slice(&new);
        ds.set_attribute("cycle_number", Attr::Int64(2)).unwrap();
        s.flush().await.unwrap();
        drop((ds, s));
        Fixture {
            _dir: dir,
            root,
            expected,
        }
    }

    fn manifest(&self) -> PathBuf {
        self.root.join("atlas.json")
    }

    fn manifest_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.manifest()).unwrap()).unwrap()
    }

    /// The layer files of `array`, oldest first, from the manifest.
    fn layers(&self, array: &str) -> Vec<PathBuf> {
        self.manifest_json()["arrays"][array]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let dir = self.manifest_json()["arrays"][array]["dir"]
                    .as_str()
                    .map_or_else(|| array.to_owned(), str::to_owned);
                self.root.join(dir).join(l.as_str().unwrap())
            })
            .collect()
    }

    /// The registry segments, oldest first. The store is first rewritten as
    /// a store of the format before registry runs (manifest version 2, a
    /// snapshot segment of every dataset then a delta segment of `argo_2`, in
    /// the manifest's `meta_format`), which this build still reads: these
    /// cases test the segment decoder.
    fn segments(&self) -> Vec<PathBuf> {
        if self.manifest_json().get("segments").is_none() {
            self.downgrade_to_segments();
        }
        self.manifest_json()["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| self.root.join("atlas.meta").join(s.as_str().unwrap()))
            .collect()
    }

    fn downgrade_to_segments(&self) {
        // Read through the API on a runtime of its own (callers are sync).
        let read = || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let s = Atlas::open_path(&self.root).await.unwrap();
                let mut schemas: Vec<serde_json::Value> = Vec::new();
                let mut sets: Vec<serde_json::Value> = Vec::new();
                let mut datasets = Vec::new();
                for name in s.list_datasets().unwrap() {
                    let meta = s.dataset_meta(&name).unwrap().unwrap();
                    let mut arrays = serde_json::Map::new();
                    for (a, e) in &meta.arrays {
                        let sc = &e.schema;
                        let fill = sc.fill_value.as_ref().map(|f| match f {
                            FillValue::Float32(v) => serde_json::json!({ "f64": f64::from(*v) }),
                            other => panic!("fixture fill {other:?}"),
                        });
                        let mut schema = serde_json::json!({
                            "dtype": sc.dtype.name(), "dims": sc.dims, "shape": sc.shape,
                            "chunk_shape": sc.chunk_shape,
                        });
                        if let Some(f) = fill {
                            schema["fill_value"] = f;
                        }
                        let si = schemas
                            .iter()
                            .position(|x| *x == schema)
                            .unwrap_or_else(|| {
                                schemas.push(schema);
                                schemas.len() - 1
                            });
                        let set = serde_json::to_value(&*e.attributes).unwrap();
                        let ai = sets.iter().position(|x| *x == set).unwrap_or_else(|| {
                            sets.push(set);
                            sets.len() - 1
                        });
                        arrays.insert(a.clone(), serde_json::json!({ "schema": si, "attrs": ai }));
                    }
                    datasets.push(serde_json::json!({
                        "name": name,
                        "attrs": serde_json::to_value(&meta.attributes).unwrap(),
                        "arrays": arrays,
                    }));
                }
                (schemas, sets, datasets)
            })
        };
        let (schemas, sets, datasets) = std::thread::scope(|sc| sc.spawn(read).join().unwrap());
        let doc = |snapshot: bool, ds: Vec<serde_json::Value>| {
            serde_json::json!({
                "format": "atlas-registry-segment", "version": 1, "snapshot": snapshot,
                "schemas": schemas, "attr_sets": sets, "datasets": ds,
            })
        };
        let mut m = self.manifest_json();
        let binary = m["meta_format"] == "binary";
        let encode = |v: &serde_json::Value| -> Vec<u8> {
            if binary {
                let packed = rmp_serde::to_vec_named(v).unwrap();
                let mut b = b"ATLASSEG".to_vec();
                b.extend_from_slice(&1u32.to_le_bytes());
                b.extend_from_slice(&zstd::bulk::compress(&packed, 3).unwrap());
                b
            } else {
                serde_json::to_vec(v).unwrap()
            }
        };
        let ext = if binary { "bin" } else { "json" };
        let argo_2: Vec<serde_json::Value> = datasets
            .iter()
            .filter(|d| d["name"] == "argo_2")
            .cloned()
            .collect();
        let names = [format!("s-{:032x}.{ext}", 1), format!("s-{:032x}.{ext}", 2)];
        let meta = self.root.join("atlas.meta");
        std::fs::write(meta.join(&names[0]), encode(&doc(true, datasets))).unwrap();
        std::fs::write(meta.join(&names[1]), encode(&doc(false, argo_2))).unwrap();
        for r in m["runs"].as_array().unwrap().clone() {
            std::fs::remove_file(meta.join(r.as_str().unwrap())).unwrap();
        }
        let o = m.as_object_mut().unwrap();
        o.remove("runs");
        o.remove("next_id");
        o.remove("n_datasets");
        o.remove("retired");
        o.insert("version".into(), 2.into());
        o.insert("segments".into(), serde_json::json!(names));
        std::fs::write(self.manifest(), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }

    /// Every file of the store but the lock file, with its bytes.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if !p.ends_with("atlas.lock") {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }
}

/// Reads a whole f32 array.
async fn read(s: &Atlas, ds: &str, array: &str) -> Result<Vec<f32>, Error> {
    let v = s
        .open_dataset(ds)
        .await?
        .read_array::<f32>(array, vec![], vec![])
        .await?
        .expect("the array exists");
    Ok(v.iter().copied().collect())
}

/// Every (dataset, array) not in `damaged` reads back exactly through `s`.
async fn assert_undamaged_read(
    s: &Atlas,
    expected: &Expected,
    damaged: &[(&str, &str)],
    ctx: &str,
) {
    for ((ds, a), want) in expected {
        if damaged.contains(&(ds.as_str(), a.as_str())) {
            continue;
        }
        match read(s, ds, a).await {
            Ok(got) => assert_eq!(&got, want, "{ctx}: {ds}/{a} changed"),
            Err(e) => panic!("{ctx}: undamaged {ds}/{a} does not read: {e}"),
        }
    }
}

/// What `atlas verify STORE` does (`crates/atlas-cli/src/ops.rs`): a store that
/// does not open is reported damaged with the open error; otherwise every
/// problem `atlas::verify::verify` finds is listed. Returns (exit status, report).
async fn atlas_verify(root: &Path) -> (i32, String) {
    let atlas = match Atlas::open_path(root).await {
        Ok(a) => a,
        Err(e) => return (1, format!("DAMAGED {}: {e}\n", root.display())),
    };
    let report = tokio::task::spawn_blocking(move || atlas::verify::verify(&atlas, |_, _| {}))
        .await
        .unwrap();
    if report.problems.is_empty() {
        return (0, "ok".into());
    }
    let mut text = format!(
        "DAMAGED {}: {} problem(s)\n",
        root.display(),
        report.problems.len()
    );
    for p in &report.problems {
        writeln!(text, "  {}: {}", p.path.display(), p.message).unwrap();
    }
    (1, text)
}

fn file_name(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}

/// (b): the CLI's verify exits 1 naming `damaged`, and `verify` on a handle
/// opened before the damage lists a problem naming it.
async fn assert_verify_names(before: &Atlas, root: &Path, damaged: &Path) {
    let name = file_name(damaged);
    let (code, text) = atlas_verify(root).await;
    assert_eq!(code, 1, "verify passed a store with {name} damaged: {text}");
    assert!(
        text.contains(name),
        "verify report does not name {name}:\n{text}"
    );
    let h = before.clone();
    let report = tokio::task::spawn_blocking(move || atlas::verify::verify(&h, |_, _| {}))
        .await
        .unwrap();
    assert!(
        report.problems.iter().any(|p| p.path.ends_with(name)
            || p.message.contains(name)
            || (p.path == damaged.parent().unwrap() && p.message.contains(name))),
        "verify::verify does not name {name}: {:#?}",
        report.problems
    );
}

/// (c) after the damage is repaired: the store reopens, holds `expected`
/// exactly, and verifies clean.
async fn assert_restored(root: &Path, expected: &Expected, damaged: &Path, good: &[u8]) {
    std::fs::write(damaged, good).unwrap();
    let s = Atlas::open_path(root)
        .await
        .unwrap_or_else(|e| panic!("store does not reopen after repairing: {e}"));
    assert_undamaged_read(&s, expected, &[], "after repair").await;
    assert_eq!(s.list_datasets().unwrap(), DATASETS);
    let (code, text) = atlas_verify(root).await;
    assert_eq!(code, 0, "repaired store does not verify: {text}");
}

/// The error inside an array or storage error.
fn inner(e: &Error) -> Option<&AfError> {
    match e {
        Error::Array { error, .. } | Error::Storage(error) => Some(error),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Damage to a layer file (the store opens; the damaged array does not read).

/// What a damaged layer must produce on first read.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `Corrupt` naming the file, at this byte offset if given.
    Corrupt(Option<u64>),
    /// `UnsupportedVersion` with this version.
    Version(u32),
}

fn check_layer_error(e: &Error, layer: &Path, expect: Expect, ctx: &str) {
    let Some(inner) = inner(e) else {
        panic!("{ctx}: expected a layer-file error, got {e:?}");
    };
    match (inner, expect) {
        (AfError::Corrupt { path, offset, .. }, Expect::Corrupt(at)) => {
            assert_eq!(path, layer, "{ctx}: {e}");
            if let Some(at) = at {
                assert_eq!(*offset, at, "{ctx}: wrong offset in {e}");
            }
        }
        (AfError::UnsupportedVersion { path, version, .. }, Expect::Version(v)) => {
            assert_eq!(path, layer, "{ctx}: {e}");
            assert_eq!(*version, v, "{ctx}: {e}");
        }
        _ => panic!("{ctx}: expected {expect:?}, got {inner:?}"),
    }
    assert!(
        e.to_string().contains(file_name(layer)),
        "{ctx}: message does not name the file: {e}"
    );
}

/// Applies `damage` to the bytes of `layer` and checks (a), (b) and (c).
/// `broken` are the (dataset, `TEMP`) reads that must fail with `expect`; every
/// other array must read exactly.
async fn layer_case(
    fx: &Fixture,
    layer: &Path,
    damage: impl FnOnce(&mut Vec<u8>),
    broken: &[(&str, &str)],
    expect: Expect,
) {
    let before = Atlas::open_path(&fx.root).await.unwrap();
    let good = std::fs::read(layer).unwrap();
    let mut bad = good.clone();
    damage(&mut bad);
    assert_ne!(bad, good, "the damage changed nothing");
    std::fs::write(layer, &bad).unwrap();

    // (a) A fresh handle opens (footers are decoded on first use); each broken
    // read is a typed error naming the file; everything else reads exactly.
    let s = Atlas::open_path(&fx.root).await.unwrap();
    for (ds, a) in broken {
        let e = read(&s, ds, a)
            .await
            .expect_err("a damaged array read succeeded");
        check_layer_error(&e, layer, expect, &format!("{ds}/{a}"));
    }
    assert_undamaged_read(&s, &fx.expected, broken, "beside the damage").await;
    drop(s);

    // (b)
    assert_verify_names(&before, &fx.root, layer).await;
    drop(before);

    // (c) A writer commits beside the damage: its open sweeps garbage, and must
    // keep the damaged (but committed) file; its flush must not touch it.
    let w = Atlas::open_with(
        Arc::new(LocalStorage),
        &fx.root,
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    let new = values(7, 7, 0.5);
    w.open_dataset("argo_3")
        .await
        .unwrap()
        .write_array("PSAL", vec![], nd(new.clone()).view())
        .await
        .unwrap();
    w.flush().await.unwrap();
    assert!(layer.exists(), "a writer removed the damaged layer");
    assert_eq!(
        std::fs::read(layer).unwrap(),
        bad,
        "a writer rewrote the layer"
    );
    // Compaction must read the damaged array: a typed error, or (when the
    // damage is inside one block) a copy of the stored bytes. Either way the
    // store stays readable.
    let compacted = w.compact().await;
    println!(
        "{}: compact beside the damage: {}",
        file_name(layer),
        compacted
            .as_ref()
            .map_or_else(ToString::to_string, |()| "ok".into())
    );
    if let Err(e) = &compacted {
        assert!(
            inner(e).is_some_and(AfError::is_corruption),
            "compact failed with an untyped error: {e:?}"
        );
    }
    drop(w);
    let mut expected = fx.expected.clone();
    expected.insert(("argo_3".into(), "PSAL".into()), new);
    let s = Atlas::open_path(&fx.root).await.unwrap();
    assert_undamaged_read(&s, &expected, broken, "after a writer's commits").await;
    for (ds, a) in broken {
        let e = read(&s, ds, a)
            .await
            .expect_err("damaged data came back as data after a commit");
        assert!(inner(&e).is_some_and(AfError::is_corruption), "{e:?}");
    }
    drop(s);
    if compacted.is_err() {
        // The failed compaction left the last commit: repairing the file
        // restores everything.
        assert_restored(&fx.root, &expected, layer, &good).await;
    }
}

#[tokio::test]
async fn truncated_layer() {
    // A few bytes short (inside the trailer), a block's worth, and half.
    for cut in [|_| 7usize, |_| 40, |len| len / 2] {
        let fx = Fixture::build(MetaFormat::Json).await;
        let layer = fx.layers("TEMP")[0].clone();
        let len = std::fs::metadata(&layer).unwrap().len() as usize;
        let keep = len - cut(len);
        layer_case(
            &fx,
            &layer,
            |b| b.truncate(keep),
            &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
            Expect::Corrupt(None),
        )
        .await;
    }
}

#[tokio::test]
async fn truncated_to_nothing_layer() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    layer_case(
        &fx,
        &layer,
        Vec::clear,
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Corrupt(Some(0)),
    )
    .await;
}

#[tokio::test]
async fn bit_flipped_block() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    let bytes = std::fs::read(&layer).unwrap();
    let lay = Layout::parse(&bytes);
    let e = &lay.record("argo_1").entries[0];
    let (at, len) = (e.offset as usize, e.stored_len as usize);
    // Only argo_1's first chunk is damaged: argo_1/TEMP fails at that block's
    // offset; argo_3/TEMP, in blocks of the same file, still reads.
    layer_case(
        &fx,
        &layer,
        |b| b[at + len / 2] ^= 0x08,
        &[("argo_1", "TEMP")],
        Expect::Corrupt(Some(at as u64)),
    )
    .await;
}

#[tokio::test]
async fn bit_flipped_footer() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    let lay = Layout::parse(&std::fs::read(&layer).unwrap());
    let at = lay.footer_offset as usize + lay.footer_len as usize / 2;
    layer_case(
        &fx,
        &layer,
        |b| b[at] ^= 0x40,
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Corrupt(Some(lay.footer_offset)),
    )
    .await;
}

#[tokio::test]
async fn bit_flipped_trailer_crc() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[1].clone();
    let lay = Layout::parse(&std::fs::read(&layer).unwrap());
    let at = lay.trailer + 16;
    layer_case(
        &fx,
        &layer,
        |b| b[at] ^= 0x01,
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Corrupt(None),
    )
    .await;
}

#[tokio::test]
async fn wrong_header_magic() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    layer_case(
        &fx,
        &layer,
        |b| b[..8].copy_from_slice(b"PARQUET1"),
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Corrupt(Some(0)),
    )
    .await;
}

#[tokio::test]
async fn wrong_trailer_magic() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    let lay = Layout::parse(&std::fs::read(&layer).unwrap());
    let t = lay.trailer;
    layer_case(
        &fx,
        &layer,
        |b| b[t + 24..t + 32].copy_from_slice(b"NOTAFOOT"),
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Corrupt(Some(t as u64)),
    )
    .await;
}

#[tokio::test]
async fn future_layer_version_in_header() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    layer_case(
        &fx,
        &layer,
        |b| b[8..12].copy_from_slice(&3u32.to_le_bytes()),
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Version(3),
    )
    .await;
}

#[tokio::test]
async fn future_layer_version_in_trailer() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    let t = Layout::parse(&std::fs::read(&layer).unwrap()).trailer;
    layer_case(
        &fx,
        &layer,
        |b| b[t + 20..t + 24].copy_from_slice(&7u32.to_le_bytes()),
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
        Expect::Version(7),
    )
    .await;
}

/// A footer field set to a huge value, the footer checksum recomputed so only
/// the structural checks stand between the value and an allocation.
/// `broken` are the arrays whose records hold the field (the footer blocks
/// of the others still decode: their reads must work).
async fn huge_footer_field(
    field: impl FnOnce(&Layout) -> usize,
    value: u64,
    width: usize,
    broken: &[(&str, &str)],
) {
    huge_field(field, value, width, true, broken).await;
}

/// [`huge_footer_field`] for the trailer's fields (`reseal` false: the
/// checksum is not reached).
async fn huge_field(
    field: impl FnOnce(&Layout) -> usize,
    value: u64,
    width: usize,
    seal: bool,
    broken: &[(&str, &str)],
) {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    let lay = Layout::parse(&std::fs::read(&layer).unwrap());
    let at = field(&lay);
    layer_case(
        &fx,
        &layer,
        |b| {
            b[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            if seal {
                reseal(b);
            }
        },
        broken,
        Expect::Corrupt(None),
    )
    .await;
}

#[tokio::test]
async fn huge_declared_record_count() {
    // n_records is a u32: 2^32 - 1 records in a few hundred bytes. The index
    // does not decode, so no array of the layer reads.
    huge_footer_field(
        |l| l.n_records_at,
        u64::from(u32::MAX),
        4,
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
    )
    .await;
}

#[tokio::test]
async fn huge_declared_chunk_count() {
    huge_footer_field(
        |l| l.record("argo_1").n_chunks_at,
        1 << 40,
        8,
        &[("argo_1", "TEMP")],
    )
    .await;
}

#[tokio::test]
async fn huge_declared_raw_len() {
    huge_footer_field(
        |l| l.record("argo_1").entries[0].at + 24,
        1 << 40,
        8,
        &[("argo_1", "TEMP")],
    )
    .await;
}

#[tokio::test]
async fn huge_declared_stored_len() {
    huge_footer_field(
        |l| l.record("argo_1").entries[0].at + 16,
        1 << 40,
        8,
        &[("argo_1", "TEMP")],
    )
    .await;
}

#[tokio::test]
async fn huge_declared_block_offset() {
    huge_footer_field(
        |l| l.record("argo_1").entries[0].at + 8,
        u64::MAX - 3,
        8,
        &[("argo_1", "TEMP")],
    )
    .await;
}

/// A footer (checksums resealed) declaring that `argo_2/TEMP` has 2^62 cells
/// in chunks of 4, in the layer that updates it: the merge of the two layers
/// sees a schema change without a redefinition (when `argo_2` is first used;
/// the other arrays' records are intact).
#[tokio::test]
async fn huge_declared_shape() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[1].clone();
    let lay = Layout::parse(&std::fs::read(&layer).unwrap());
    let at = lay.record("argo_2").shape_at;
    layer_case(
        &fx,
        &layer,
        |b| {
            b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
            reseal(b);
        },
        &[("argo_2", "TEMP")],
        Expect::Corrupt(None),
    )
    .await;
}

/// BUG (reported to the lead): the same hostile shape in the *defining* layer
/// of `argo_1/TEMP` is accepted (the footer is self-consistent), and reading
/// the whole array enumerates 2^60 chunk indexes into a `Vec`
/// (`ArraySchema::chunks_touching` from `ArrayFile::read_with`): memory grows
/// without bound (over 600 MB within 15 s) instead of a typed error; now the
/// store checks the layer's schema against the registry's on every read.
#[tokio::test]
async fn huge_declared_shape_in_the_defining_layer() {
    // The footer still decodes (the edited record is self-consistent), so only
    // argo_1/TEMP is affected: its read is refused because the layer and the
    // registry disagree on its shape.
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[0].clone();
    let lay = Layout::parse(&std::fs::read(&layer).unwrap());
    let at = lay.record("argo_1").shape_at;
    layer_case(
        &fx,
        &layer,
        |b| {
            b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
            reseal(b);
        },
        &[("argo_1", "TEMP")],
        Expect::Corrupt(Some(0)),
    )
    .await;
}

#[tokio::test]
async fn huge_declared_footer_len() {
    huge_field(
        |l| l.trailer + 8,
        1 << 40,
        8,
        false,
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
    )
    .await;
}

#[tokio::test]
async fn huge_declared_footer_offset() {
    huge_field(
        |l| l.trailer,
        1 << 40,
        8,
        false,
        &[("argo_1", "TEMP"), ("argo_2", "TEMP"), ("argo_3", "TEMP")],
    )
    .await;
}

/// A string chunk's `raw_len` may legitimately be anything from 4 bytes per
/// cell up to 2 GiB (`MAX_CHUNK_BYTES`), so a resealed footer can declare 2 GiB
/// for a 12-byte block: the read must fail with the block's offset after at
/// most reserving that bound (never touching it), and one byte more is
/// rejected by the footer check.
#[tokio::test]
async fn huge_declared_raw_len_of_a_string_chunk() {
    for (raw_len, at_block) in [(1u64 << 31, true), ((1 << 31) + 1, false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let s = Atlas::create_path(&root, StoreConfig::default())
            .await
            .unwrap();
        let ds = s.create_dataset("argo_1").await.unwrap();
        let names: Vec<String> = ["ARGO", "BUOY", "", "é"].map(String::from).into();
        ds.define_array::<String>("PLATFORM", vec!["N".into()], vec![4], None, None)
            .await
            .unwrap();
        ds.write_array(
            "PLATFORM",
            vec![],
            ArrayD::from_shape_vec(IxDyn(&[4]), names.clone())
                .unwrap()
                .view(),
        )
        .await
        .unwrap();
        ds.define_array::<f32>("TEMP", vec!["N".into()], vec![N as u64], None, None)
            .await
            .unwrap();
        ds.write_array("TEMP", vec![], nd(values(1, 0, 0.0)).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
        let layer = s
            .array_dir("PLATFORM")
            .unwrap()
            .join(s.array_layers("PLATFORM")[0].as_str());
        drop((ds, s));
        let mut b = std::fs::read(&layer).unwrap();
        let lay = Layout::parse(&b);
        let e = &lay.record("argo_1").entries[0];
        let block = e.offset;
        b[e.at + 24..e.at + 32].copy_from_slice(&raw_len.to_le_bytes());
        reseal(&mut b);
        std::fs::write(&layer, &b).unwrap();

        let s = Atlas::open_path(&root).await.unwrap();
        let err = s
            .open_dataset("argo_1")
            .await
            .unwrap()
            .read_array::<String>("PLATFORM", vec![], vec![])
            .await
            .expect_err("a chunk of the wrong size read");
        let at = at_block.then_some(block);
        check_layer_error(&err, &layer, Expect::Corrupt(at), "PLATFORM");
        assert_eq!(read(&s, "argo_1", "TEMP").await.unwrap(), values(1, 0, 0.0));
        let (code, text) = atlas_verify(&root).await;
        assert_eq!(code, 1, "{text}");
        assert!(text.contains(file_name(&layer)), "{text}");
    }
}

// ---------------------------------------------------------------------------
// Damage to the registry, or a missing file (the store does not open).

/// What opening the damaged store must give.
#[derive(Clone, Copy, Debug)]
enum OpenErr {
    /// `CorruptRegistry` naming this file.
    Corrupt,
    /// `UnsupportedRegistry` with this version, naming this file.
    Version(u32),
    /// An I/O "not found" error naming this file.
    Missing,
}

/// Replaces `file` by `bad` (`None` removes it) and checks (a), (b) and (c) for
/// a store that no longer opens.
async fn open_case(fx: &Fixture, file: &Path, bad: Option<Vec<u8>>, expect: OpenErr) {
    open_case_named(fx, file, file, bad, expect).await;
}

/// Like [`open_case`], where the error names `named` (the file the damaged
/// `file` points to, for a manifest naming a missing file).
async fn open_case_named(
    fx: &Fixture,
    file: &Path,
    named: &Path,
    bad: Option<Vec<u8>>,
    expect: OpenErr,
) {
    let before = Atlas::open_path(&fx.root).await.unwrap();
    let good = std::fs::read(file).unwrap();
    match &bad {
        Some(b) => std::fs::write(file, b).unwrap(),
        None => std::fs::remove_file(file).unwrap(),
    }
    let files_before = fx.files();

    // (a) Read-only and writer opens both fail with the typed error.
    for write in [false, true] {
        let Err(e) = Atlas::open_with(
            Arc::new(LocalStorage),
            &fx.root,
            OpenOptions {
                write,
                ..OpenOptions::default()
            },
        )
        .await
        else {
            panic!("a store with {} damaged opened", file_name(file));
        };
        let ctx = format!("open(write: {write}) with {}: {e:?}", file_name(file));
        match (&e, expect) {
            (Error::CorruptRegistry { path, reason }, OpenErr::Corrupt) => {
                assert_eq!(path, named, "{ctx}");
                assert!(!reason.is_empty(), "{ctx}");
            }
            (Error::UnsupportedRegistry { path, version, .. }, OpenErr::Version(v)) => {
                assert_eq!(path, named, "{ctx}");
                assert_eq!(*version, v, "{ctx}");
            }
            (Error::Storage(inner), OpenErr::Missing) => match &**inner {
                AfError::Io { path, source, .. } => {
                    assert_eq!(path, named, "{ctx}");
                    assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{ctx}");
                }
                other => panic!("{ctx}: expected a not-found i/o error, got {other:?}"),
            },
            _ => panic!("{ctx}: expected {expect:?}"),
        }
        assert!(e.to_string().contains(file_name(named)), "{ctx}: {e}");
    }
    // A failed writer open removed and changed nothing.
    assert_eq!(
        fx.files().keys().collect::<Vec<_>>(),
        files_before.keys().collect::<Vec<_>>(),
        "a failed open changed the store's files"
    );
    assert_eq!(fx.files(), files_before, "a failed open changed bytes");

    // (b)
    assert_verify_names(&before, &fx.root, named).await;

    // (c) The handle opened before the damage keeps its snapshot; repairing
    // the file gives the whole store back.
    assert_undamaged_read(
        &before,
        &fx.expected,
        &[],
        "snapshot opened before the damage",
    )
    .await;
    drop(before);
    assert_restored(&fx.root, &fx.expected, file, &good).await;
}

#[tokio::test]
async fn manifest_not_json() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    open_case(
        &fx,
        &m,
        Some(b"\x00\x01 this is not JSON".to_vec()),
        OpenErr::Corrupt,
    )
    .await;
}

#[tokio::test]
async fn manifest_truncated() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    let good = std::fs::read(&m).unwrap();
    open_case(
        &fx,
        &m,
        Some(good[..good.len() / 2].to_vec()),
        OpenErr::Corrupt,
    )
    .await;
}

#[tokio::test]
async fn manifest_empty() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    open_case(&fx, &m, Some(Vec::new()), OpenErr::Corrupt).await;
}

#[tokio::test]
async fn manifest_bit_flipped() {
    // A flipped bit in a structural character: `{` becomes `}`... or in a
    // name, which no longer matches the layer-name rules.
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    let mut b = std::fs::read(&m).unwrap();
    let at = b.windows(2).position(|w| w == b"d-").unwrap() + 1;
    b[at] ^= 0x40; // "d-" -> "dm": not a layer name
    open_case(&fx, &m, Some(b), OpenErr::Corrupt).await;
}

#[tokio::test]
async fn manifest_future_version() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    let mut v = fx.manifest_json();
    v["version"] = 99.into();
    open_case(
        &fx,
        &m,
        Some(serde_json::to_vec(&v).unwrap()),
        OpenErr::Version(99),
    )
    .await;
}

#[tokio::test]
async fn manifest_naming_a_missing_layer() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    let mut v = fx.manifest_json();
    let ghost = "d-0123456789abcdef0123456789abcdef.af";
    v["arrays"]["PSAL"]["layers"][0] = ghost.into();
    let named = fx
        .root
        .join(v["arrays"]["PSAL"]["dir"].as_str().unwrap())
        .join(ghost);
    open_case_named(
        &fx,
        &m,
        &named,
        Some(serde_json::to_vec(&v).unwrap()),
        OpenErr::Missing,
    )
    .await;
}

#[tokio::test]
async fn missing_layer_file() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let layer = fx.layers("TEMP")[1].clone();
    open_case(&fx, &layer, None, OpenErr::Missing).await;
}

#[tokio::test]
async fn manifest_naming_a_missing_segment() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let m = fx.manifest();
    let _ = fx.segments(); // a store of registry segments
    let mut v = fx.manifest_json();
    let ghost = "s-0123456789abcdef0123456789abcdef.json";
    v["segments"][1] = ghost.into();
    let named = fx.root.join("atlas.meta").join(ghost);
    open_case_named(
        &fx,
        &m,
        &named,
        Some(serde_json::to_vec(&v).unwrap()),
        OpenErr::Missing,
    )
    .await;
}

#[tokio::test]
async fn missing_segment_file() {
    for fmt in [MetaFormat::Json, MetaFormat::Binary] {
        let fx = Fixture::build(fmt).await;
        let seg = fx.segments()[0].clone();
        open_case(&fx, &seg, None, OpenErr::Missing).await;
    }
}

#[tokio::test]
async fn segment_not_json() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let seg = fx.segments()[0].clone();
    open_case(
        &fx,
        &seg,
        Some(b"{\"format\": \"atlas-registry-seg".to_vec()),
        OpenErr::Corrupt,
    )
    .await;
}

#[tokio::test]
async fn segment_future_version_json() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let seg = fx.segments()[1].clone();
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&seg).unwrap()).unwrap();
    v["version"] = 2.into();
    open_case(
        &fx,
        &seg,
        Some(serde_json::to_vec(&v).unwrap()),
        OpenErr::Version(2),
    )
    .await;
}

#[tokio::test]
async fn segment_future_version_binary() {
    let fx = Fixture::build(MetaFormat::Binary).await;
    let seg = fx.segments()[0].clone();
    let mut b = std::fs::read(&seg).unwrap();
    assert_eq!(&b[..8], b"ATLASSEG");
    b[8..12].copy_from_slice(&5u32.to_le_bytes());
    open_case(&fx, &seg, Some(b), OpenErr::Version(5)).await;
}

#[tokio::test]
async fn binary_segment_not_binary() {
    let fx = Fixture::build(MetaFormat::Binary).await;
    let seg = fx.segments()[0].clone();
    open_case(
        &fx,
        &seg,
        Some(vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2]),
        OpenErr::Corrupt,
    )
    .await;
}

#[tokio::test]
async fn binary_segment_truncated() {
    for keep in [8usize, 11, 20] {
        let fx = Fixture::build(MetaFormat::Binary).await;
        let seg = fx.segments()[0].clone();
        let b = std::fs::read(&seg).unwrap();
        open_case(&fx, &seg, Some(b[..keep].to_vec()), OpenErr::Corrupt).await;
    }
}

#[tokio::test]
async fn binary_segment_bit_flipped() {
    let fx = Fixture::build(MetaFormat::Binary).await;
    let seg = fx.segments()[0].clone();
    let mut b = std::fs::read(&seg).unwrap();
    // The zstd frame magic: the frame is no longer a frame.
    b[12] ^= 0x10;
    open_case(&fx, &seg, Some(b), OpenErr::Corrupt).await;
}

/// `ATLASSEG`, version 1, then `frame`.
fn binary_segment(frame: &[u8]) -> Vec<u8> {
    let mut b = b"ATLASSEG".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(frame);
    b
}

#[tokio::test]
async fn segment_zstd_frame_claiming_huge_content() {
    // Frame header: magic, descriptor with an 8-byte content size, then a
    // content size of 2^40, or one byte over the 64 MiB a segment this small
    // may decompress to, and one raw block of 5 bytes.
    let mut claims = Vec::new();
    for (single_segment, declared) in [(true, 1u64 << 40), (false, 1 << 40), (true, (64 << 20) + 1)]
    {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
        if single_segment {
            f.push(0xe0);
        } else {
            f.extend_from_slice(&[0xc0, 0x00]); // window descriptor: 1 KiB
        }
        f.extend_from_slice(&declared.to_le_bytes());
        f.extend_from_slice(&[(5 << 3) | 1, 0, 0]);
        f.extend_from_slice(b"\x80\x80\x80\x80\x80");
        claims.push(f);
    }
    for frame in claims {
        let fx = Fixture::build(MetaFormat::Binary).await;
        let seg = fx.segments()[0].clone();
        open_case(&fx, &seg, Some(binary_segment(&frame)), OpenErr::Corrupt).await;
    }
}

#[tokio::test]
async fn segment_zstd_decompression_bomb() {
    // 256 MiB of zeros in 8 KB, the size declared in the frame header: refused
    // before decoding, as more than a segment under 16 KiB may decompress to
    // (64 MiB). Then 64 MiB + 1 zeros from a streaming encoder, which declares
    // no size: decoding stops one byte past the cap instead of inflating it.
    let declared = zstd::bulk::compress(&vec![0u8; 256 << 20], 3).unwrap();
    let zeros = std::io::Read::take(std::io::repeat(0), (64 << 20) + 1);
    let streamed = zstd::stream::encode_all(zeros, 3).unwrap();
    for frame in [declared, streamed] {
        assert!(frame.len() < 16 << 10, "{} bytes", frame.len());
        let fx = Fixture::build(MetaFormat::Binary).await;
        let seg = fx.segments()[0].clone();
        open_case(&fx, &seg, Some(binary_segment(&frame)), OpenErr::Corrupt).await;
    }
}

#[tokio::test]
async fn segment_msgpack_claiming_huge_lengths() {
    // { "datasets": array32 of 2^32 - 1 entries }, { "deleted": [str32 of
    // 2^32 - 1 bytes] }, { "schemas": map32 ... }: lengths the bytes cannot hold.
    let docs: Vec<Vec<u8>> = vec![
        [
            &[0x81, 0xa8][..],
            b"datasets",
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat(),
        [
            &[0x81, 0xa7][..],
            b"deleted",
            &[0x91, 0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        ]
        .concat(),
        [
            &[0x81, 0xa9][..],
            b"attr_sets",
            &[0x91, 0xdf, 0xff, 0xff, 0xff, 0xff],
        ]
        .concat(),
    ];
    for doc in docs {
        let fx = Fixture::build(MetaFormat::Binary).await;
        let seg = fx.segments()[0].clone();
        let frame = zstd::bulk::compress(&doc, 1).unwrap();
        open_case(&fx, &seg, Some(binary_segment(&frame)), OpenErr::Corrupt).await;
    }
}

/// A segment whose schema claims 2^64 - 1 cells (valid on its own: chunks of
/// one cell). The registry is not cross-checked against the layer files when a
/// store opens, so this opens; reads follow the layer files and return the
/// committed data exactly, and `verify` reports the disagreement for every
/// array that uses the schema. (It names the array files, not the segment: see
/// docs/reliability.md, "known gaps".)
#[tokio::test]
async fn segment_declaring_a_huge_schema() {
    let fx = Fixture::build(MetaFormat::Json).await;
    let seg = fx.segments()[0].clone();
    let good = std::fs::read(&seg).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["schemas"][0]["shape"] = serde_json::json!([u64::MAX]);
    v["schemas"][0]["chunk_shape"] = serde_json::json!([1]);
    std::fs::write(&seg, serde_json::to_vec(&v).unwrap()).unwrap();
    match Atlas::open_path(&fx.root).await {
        Err(Error::CorruptRegistry { path, .. }) => assert_eq!(path, seg),
        Err(e) => panic!("expected CorruptRegistry or an open store, got {e:?}"),
        Ok(s) => {
            // Reads refuse sizes the registry and the array file disagree on:
            // every array of argo_1 whose schema was edited is a typed
            // corruption error naming its layer; the others read back exactly.
            let mut refused = 0;
            for a in ARRAYS {
                let key = ("argo_1".to_owned(), a.to_owned());
                match read(&s, "argo_1", a).await {
                    Ok(got) => assert_eq!(Some(&got), fx.expected.get(&key), "argo_1/{a}"),
                    Err(e) => {
                        let layer = fx.layers(a)[0].clone();
                        check_layer_error(
                            &e,
                            &layer,
                            Expect::Corrupt(Some(0)),
                            &format!("argo_1/{a}"),
                        );
                        refused += 1;
                    }
                }
            }
            assert!(refused > 0, "the edited schema went unnoticed");
            // Statistics, merged metadata and writes refuse the disagreement
            // the same way (one check, every path).
            let ds = s.open_dataset("argo_1").await.unwrap();
            let mut refused_other = 0;
            for a in ARRAYS {
                if read(&s, "argo_1", a).await.is_ok() {
                    continue;
                }
                let stats = ds.array_stats(a).await;
                assert!(
                    matches!(&stats, Err(e) if e.kind() == atlas::ErrorKind::Corrupt),
                    "argo_1/{a} stats: {stats:?}"
                );
                let meta = ds.array_meta(a).await;
                assert!(
                    matches!(&meta, Err(e) if e.kind() == atlas::ErrorKind::Corrupt),
                    "argo_1/{a} meta: {:?}",
                    meta.err()
                );
                refused_other += 1;
            }
            assert_eq!(refused_other, refused);
            drop(ds);
            let (code, text) = atlas_verify(&fx.root).await;
            assert_eq!(code, 1, "{text}");
            for a in ARRAYS {
                assert!(
                    text.contains(&format!(
                        "argo_1/{a} differs between registry and array file"
                    )),
                    "{text}"
                );
            }
        }
    }
    assert_restored(&fx.root, &fx.expected, &seg, &good).await;
}

#[tokio::test]
async fn segment_with_a_deep_nesting_bomb() {
    // 100,000 nested arrays: the JSON parser's recursion limit, not the stack.
    let fx = Fixture::build(MetaFormat::Json).await;
    let seg = fx.segments()[0].clone();
    let mut b = b"{\"format\":".to_vec();
    b.extend(std::iter::repeat_n(b'[', 100_000));
    open_case(&fx, &seg, Some(b), OpenErr::Corrupt).await;
}

// ---------------------------------------------------------------------------
// API misuse (SPEC §4's list), each on a real store that must not change.

/// Runs `$body` (which may use the writer `$s` and the dataset `$ds` =
/// `argo_1`) on a fresh fixture, requires `Err($pat)`, then commits whatever is
/// pending and checks that the store still holds exactly what it held.
macro_rules! api_case {
    ($name:ident, |$s:ident, $ds:ident| $body:expr, $pat:pat) => {
        #[tokio::test]
        async fn $name() {
            let fx = Fixture::build(MetaFormat::Json).await;
            let $s = Atlas::open_with(
                Arc::new(LocalStorage),
                &fx.root,
                OpenOptions {
                    write: true,
                    ..OpenOptions::default()
                },
            )
            .await
            .unwrap();
            let $ds: DatasetView = $s.open_dataset("argo_1").await.unwrap();
            match $body {
                Err(e) => assert!(matches!(e, $pat), "wrong error: {e:?}"),
                Ok(_) => panic!("bad input was accepted"),
            }
            $s.flush().await.unwrap();
            drop(($ds, $s));
            let s = Atlas::open_path(&fx.root).await.unwrap();
            assert_eq!(s.list_datasets().unwrap(), DATASETS);
            assert_undamaged_read(&s, &fx.expected, &[], "after the rejected call").await;
            let (code, text) = atlas_verify(&fx.root).await;
            assert_eq!(code, 0, "{text}");
        }
    };
}

fn long_name() -> String {
    "x".repeat(10_000)
}

api_case!(
    empty_dataset_name,
    |s, ds| s.create_dataset("").await,
    Error::InvalidName { .. }
);
api_case!(
    dataset_name_with_slash,
    |s, ds| s.create_dataset("a/b").await,
    Error::InvalidName { .. }
);
api_case!(
    dataset_name_with_nul,
    |s, ds| s.create_dataset("a\0b").await,
    Error::InvalidName { .. }
);
api_case!(
    dataset_name_dot,
    |s, ds| s.create_dataset(".").await,
    Error::InvalidName { .. }
);
api_case!(
    dataset_name_dot_dot,
    |s, ds| s.create_dataset("..").await,
    Error::InvalidName { .. }
);
api_case!(
    dataset_name_too_long,
    |s, ds| s.create_dataset(&long_name()).await,
    Error::InvalidName { .. }
);
api_case!(
    array_name_dot_dot,
    |s, ds| ds
        .define_array::<f32>("..", vec!["x".into()], vec![2], None, None)
        .await,
    Error::InvalidName { .. }
);
api_case!(
    array_name_too_long,
    |s, ds| ds
        .define_array::<f32>(&long_name(), vec!["x".into()], vec![2], None, None)
        .await,
    Error::InvalidName { .. }
);
api_case!(
    dtype_mismatch_on_read,
    |s, ds| ds.read_array::<i32>("TEMP", vec![], vec![]).await,
    Error::Array { .. }
);
api_case!(
    dtype_mismatch_on_write,
    |s, ds| ds
        .write_array(
            "TEMP",
            vec![],
            ArrayD::from_elem(IxDyn(&[N]), 1.0f64).view()
        )
        .await,
    Error::Array { .. }
);
api_case!(
    wrong_rank_on_read,
    |s, ds| ds.read_array::<f32>("TEMP", vec![0, 0], vec![1, 1]).await,
    Error::Array { .. }
);
api_case!(
    wrong_rank_on_write,
    |s, ds| ds
        .write_array(
            "TEMP",
            vec![],
            ArrayD::from_elem(IxDyn(&[2, 4]), 1.0f32).view()
        )
        .await,
    Error::Array { .. }
);
api_case!(
    out_of_bounds_read,
    |s, ds| ds.read_array::<f32>("TEMP", vec![6], vec![4]).await,
    Error::Array { .. }
);
api_case!(
    out_of_bounds_read_overflowing,
    |s, ds| ds.read_array::<f32>("TEMP", vec![u64::MAX], vec![2]).await,
    Error::Array { .. }
);
api_case!(
    out_of_bounds_write,
    |s, ds| ds
        .write_array("TEMP", vec![6], nd(vec![1.0; 4]).view())
        .await,
    Error::Array { .. }
);
api_case!(
    write_data_of_the_wrong_shape,
    |s, ds| ds
        .write_array("TEMP", vec![], nd(vec![1.0; N + 1]).view())
        .await,
    Error::Array { .. }
);
api_case!(
    zero_chunk_shape,
    |s, ds| ds
        .define_array::<f32>("X", vec!["x".into()], vec![4], Some(vec![0]), None)
        .await,
    Error::Array { .. }
);
api_case!(
    mismatched_chunk_shape,
    |s, ds| ds
        .define_array::<f32>("X", vec!["x".into()], vec![4], Some(vec![2, 2]), None)
        .await,
    Error::Array { .. }
);
api_case!(
    fill_value_of_the_wrong_type,
    |s, ds| ds
        .define_array::<f32>(
            "X",
            vec!["x".into()],
            vec![4],
            None,
            Some(FillValue::String("x".into()))
        )
        .await,
    Error::Array { .. }
);
api_case!(
    array_defined_twice,
    |s, ds| ds
        .define_array::<f32>("TEMP", vec!["N_LEVELS".into()], vec![N as u64], None, None)
        .await,
    Error::ArrayExists { .. }
);
api_case!(
    dataset_created_twice,
    |s, ds| s.create_dataset("argo_2").await,
    Error::DatasetExists { .. }
);
api_case!(
    unknown_dataset_opened,
    |s, ds| s.open_dataset("argo_404").await,
    Error::DatasetNotFound { .. }
);
api_case!(
    unknown_dataset_deleted,
    |s, ds| s.delete_dataset("argo_404").await,
    Error::DatasetNotFound { .. }
);
api_case!(
    unknown_array_written,
    |s, ds| ds
        .write_array("DOXY", vec![], nd(vec![1.0; N]).view())
        .await,
    Error::ArrayNotFound { .. }
);
api_case!(
    unknown_dataset_in_a_cross_dataset_read,
    |s, ds| s
        .read_array_across::<f32>("TEMP", &["argo_1", "argo_404"], vec![], vec![])
        .await,
    Error::DatasetNotFound { .. }
);

// ---------------------------------------------------------------------------
// Layer layout (docs/format.md), for locating fields to damage.

/// One chunk entry of a footer record.
struct Entry {
    /// Absolute file offset of the entry.
    at: usize,
    chunk_idx: u64,
    offset: u64,
    stored_len: u64,
    raw_len: u64,
    codec: u8,
    filter: u8,
}

/// One footer record.
struct Record {
    name: String,
    dtype: u8,
    /// Absolute offset of the first shape entry (`u64`), if the record has one.
    shape_at: usize,
    /// The shape and the chunk shape (empty for a `Delete` record).
    shape: Vec<u64>,
    chunk_shape: Vec<u64>,
    /// Absolute offset of `n_chunks`.
    n_chunks_at: usize,
    entries: Vec<Entry>,
}

/// Where the parts of a layer file (format 2) are.
struct Layout {
    /// The footer index (what the trailer points at).
    footer_offset: u64,
    footer_len: u64,
    trailer: usize,
    /// The index's record count.
    n_records_at: usize,
    /// Footer blocks: (offset, length, where the index keeps the block's CRC).
    blocks: Vec<(usize, usize, usize)>,
    records: Vec<Record>,
}

/// A cursor over a valid layer file.
struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn str(&mut self) -> String {
        let n = self.u32() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    /// A fill value of dtype `code`.
    fn value(&mut self, code: u8) {
        match code {
            12 => {
                self.str();
            }
            c => {
                self.take(width_of(c));
            }
        }
    }
    /// A statistic of dtype `code`.
    fn stat(&mut self, code: u8) {
        match code {
            1 => {
                self.u8();
            }
            12 => {
                self.str();
            }
            _ => {
                self.u64();
            }
        }
    }
}

/// Cell width of a dtype code (strings: 1, the byte-shuffle width they use).
fn width_of(code: u8) -> usize {
    match code {
        3 | 7 => 2,
        4 | 8 | 10 => 4,
        5 | 9 | 11 | 13 => 8,
        _ => 1,
    }
}

impl Layout {
    fn parse(b: &[u8]) -> Layout {
        let (footer_offset, footer_len, n_records_at, blocks) = Layout::index(b);
        let trailer = b.len() - 32;
        let mut records = Vec::new();
        for &(offset, len, _) in &blocks {
            // Block: record count, record offsets, then per record its
            // sequence number and the record.
            let mut c = Cur { b, pos: offset };
            let n = c.u32();
            c.pos += 4 * n as usize;
            for _ in 0..n {
                c.u32();
                records.push(Self::record_at(&mut c));
            }
            assert_eq!(c.pos, offset + len, "footer block parsed to its end");
        }
        Layout {
            footer_offset,
            footer_len,
            trailer,
            n_records_at,
            blocks,
            records,
        }
    }

    /// The footer index only: its offset and length, where its record count
    /// is, and the footer blocks (offset, length, where their CRC is).
    #[allow(clippy::type_complexity)]
    fn index(b: &[u8]) -> (u64, u64, usize, Vec<(usize, usize, usize)>) {
        let trailer = b.len() - 32;
        let footer_offset = u64::from_le_bytes(b[trailer..trailer + 8].try_into().unwrap());
        let footer_len = u64::from_le_bytes(b[trailer + 8..trailer + 16].try_into().unwrap());
        // Index: uid, n_records, data_end, n_blocks, then per block offset,
        // len, crc, n_records, first name, last name.
        let mut c = Cur {
            b,
            pos: footer_offset as usize + 16,
        };
        let n_records_at = c.pos;
        c.u32();
        c.u64();
        let mut blocks = Vec::new();
        for _ in 0..c.u32() {
            let offset = c.u64() as usize;
            let len = c.u32() as usize;
            blocks.push((offset, len, c.pos));
            c.u32();
            c.u32();
            c.str();
            c.str();
        }
        assert_eq!(c.pos, trailer, "index parsed to its end");
        (footer_offset, footer_len, n_records_at, blocks)
    }

    fn record_at(c: &mut Cur<'_>) -> Record {
        let name = c.str();
        let kind = c.u8();
        let mut rec = Record {
            name,
            dtype: 0,
            shape_at: 0,
            shape: Vec::new(),
            chunk_shape: Vec::new(),
            n_chunks_at: 0,
            entries: Vec::new(),
        };
        if kind != 2 {
            rec.dtype = c.u8();
            let rank = c.u32() as usize;
            for _ in 0..rank {
                c.str();
            }
            rec.shape_at = c.pos;
            rec.shape = (0..rank).map(|_| c.u64()).collect();
            rec.chunk_shape = (0..rank).map(|_| c.u64()).collect();
            if c.u8() == 1 {
                c.value(rec.dtype);
            }
            rec.n_chunks_at = c.pos;
            for _ in 0..c.u64() {
                let at = c.pos;
                let chunk_idx = c.u64();
                let offset = c.u64();
                let stored_len = c.u64();
                let raw_len = c.u64();
                let codec = c.u8();
                let filter = c.u8();
                let _crc = c.u32();
                let _nulls = c.u64();
                if c.u8() == 1 {
                    c.stat(rec.dtype);
                    c.stat(rec.dtype);
                }
                rec.entries.push(Entry {
                    at,
                    chunk_idx,
                    offset,
                    stored_len,
                    raw_len,
                    codec,
                    filter,
                });
            }
        }
        rec
    }

    fn record(&self, name: &str) -> &Record {
        self.records.iter().find(|r| r.name == name).unwrap()
    }
}

impl Record {
    /// Cells of chunk `idx` (row-major over the chunk grid; edge chunks are
    /// clipped to the shape).
    fn chunk_cells(&self, mut idx: u64) -> u64 {
        let mut cells = 1;
        for (&s, &c) in self.shape.iter().zip(&self.chunk_shape).rev() {
            let n = s.div_ceil(c);
            let origin = (idx % n) * c;
            idx /= n;
            cells *= c.min(s - origin);
        }
        cells
    }
}

/// Recomputes the footer checksums: every footer block's in the index, then
/// the index's in the trailer.
fn reseal(b: &mut [u8]) {
    for (offset, len, crc_at) in Layout::index(b).3 {
        let crc = crc32c::crc32c(&b[offset..offset + len]);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let t = b.len() - 32;
    let off = u64::from_le_bytes(b[t..t + 8].try_into().unwrap()) as usize;
    let crc = crc32c::crc32c(&b[off..t]);
    b[t + 16..t + 20].copy_from_slice(&crc.to_le_bytes());
}

// ---------------------------------------------------------------------------
// Seed corpora for the fuzz targets.

/// Seed files per fuzz target, named by content hash.
#[derive(Default)]
struct Corpus {
    targets: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
}

impl Corpus {
    fn add(&mut self, target: &'static str, bytes: Vec<u8>) {
        let mut h = DefaultHasher::new();
        h.write(&bytes);
        self.targets
            .entry(target)
            .or_default()
            .insert(format!("seed-{:016x}", h.finish()), bytes);
    }

    /// Collects every file of the store at `root` (call after each commit:
    /// later commits remove retired files).
    fn harvest(&mut self, root: &Path, seen: &mut BTreeSet<PathBuf>) {
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let name = file_name(&p).to_owned();
                let bytes = std::fs::read(&p).unwrap();
                if name == "atlas.json" {
                    self.add("manifest", bytes);
                    continue;
                }
                if !seen.insert(p.clone()) {
                    continue;
                }
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                let segment = name.starts_with("s-");
                if ext == "af" {
                    self.add_layer(&bytes);
                } else if segment && ext == "json" {
                    self.add("segment_json", bytes);
                } else if segment && ext == "bin" {
                    let frame = bytes[12..].to_vec();
                    let packed = zstd::stream::decode_all(&frame[..]).unwrap();
                    self.add("segment_binary", [&[0u8][..], &frame].concat());
                    self.add("segment_binary", [&[1u8][..], &packed].concat());
                } else if name.starts_with("r-") && ext == "run" {
                    self.add("registry_run", bytes);
                }
            }
        }
    }

    fn add_layer(&mut self, bytes: &[u8]) {
        let lay = Layout::parse(bytes);
        // The format-2 footer as the footer_blocked target takes it: blocks,
        // index, index length. (The format-1 `footer` target keeps its seeds.)
        let blocks_at = lay
            .blocks
            .first()
            .map_or(lay.footer_offset as usize, |b| b.0);
        let mut footer = bytes[blocks_at..lay.trailer].to_vec();
        footer.extend_from_slice(&(lay.footer_len as u32).to_le_bytes());
        self.add("footer_blocked", footer);
        self.add("layer_file", bytes.to_vec());
        for r in &lay.records {
            // The block target's width byte indexes [1, 2, 4, 8, 0, 3, 16, 1].
            let w = match width_of(r.dtype) {
                2 => 1u8,
                4 => 2,
                8 => 3,
                _ => 0,
            };
            for e in &r.entries {
                let at = e.offset as usize;
                let stored = &bytes[at..at + e.stored_len as usize];
                let mut seed = vec![e.codec, e.filter, w];
                seed.extend_from_slice(&(e.raw_len as u32).to_le_bytes());
                seed.extend_from_slice(stored);
                self.add("block", seed);
                // The chunk_cells target: dtype, codec, filter, cells, raw_len.
                let mut seed = vec![r.dtype, e.codec, e.filter];
                seed.extend_from_slice(&(r.chunk_cells(e.chunk_idx) as u32).to_le_bytes());
                seed.extend_from_slice(&(e.raw_len as u32).to_le_bytes());
                seed.extend_from_slice(stored);
                self.add("chunk_cells", seed);
            }
        }
    }
}

/// Defines and writes one array of every dtype in `ds`, with fill values,
/// edge chunks and strings.
async fn write_every_dtype(ds: &DatasetView, salt: i64) {
    let d = |n: &str| vec![n.to_owned()];
    macro_rules! arr {
        ($t:ty, $name:expr, $fill:expr, $f:expr) => {{
            ds.define_array::<$t>($name, d("N"), vec![5], Some(vec![3]), $fill)
                .await
                .unwrap();
            let v: Vec<$t> = (0..5i64).map(|i| $f(i + salt)).collect();
            ds.write_array(
                $name,
                vec![],
                ArrayD::from_shape_vec(IxDyn(&[5]), v).unwrap().view(),
            )
            .await
            .unwrap();
        }};
    }
    arr!(bool, "b", None, |i: i64| i % 2 == 0);
    arr!(i8, "i8", Some(FillValue::Int8(-1)), |i: i64| i as i8);
    arr!(i16, "i16", None, |i: i64| (i * 300) as i16);
    arr!(
        i32,
        "i32",
        Some(FillValue::Int32(-9)),
        |i: i64| (i * 70_000) as i32
    );
    arr!(i64, "i64", None, |i: i64| i << 40);
    arr!(u8, "u8", None, |i: i64| i as u8);
    arr!(u16, "u16", Some(FillValue::UInt16(7)), |i: i64| i as u16);
    arr!(u32, "u32", None, |i: i64| i as u32);
    arr!(u64, "u64", None, |i: i64| (i as u64) << 50);
    arr!(f32, "f32", Some(FillValue::Float32(f32::NAN)), |i: i64| {
        if i == 2 {
            f32::NAN
        } else {
            i as f32 * 0.5
        }
    });
    arr!(f64, "f64", Some(FillValue::Float64(99_999.0)), |i: i64| i
        as f64
        / 3.0);
    arr!(
        String,
        "s",
        Some(FillValue::String("-".into())),
        |i: i64| "é".repeat(i as usize % 4)
    );
    arr!(TimestampNs, "ts", None, |i: i64| TimestampNs(
        i * 86_400_000_000_000
    ));
    // A smooth profile in chunks of 500 cells: blocks the codecs really work on.
    let profile: Vec<f64> = (0..1200)
        .map(|i| 20.0 - (f64::from(i) / 100.0).sqrt() + (salt as f64) * 0.01)
        .collect();
    ds.define_array::<f64>("profile", d("N_LEVELS"), vec![1200], Some(vec![500]), None)
        .await
        .unwrap();
    ds.write_array(
        "profile",
        vec![],
        ArrayD::from_shape_vec(IxDyn(&[1200]), profile)
            .unwrap()
            .view(),
    )
    .await
    .unwrap();
    let grid: Vec<f32> = (0..60).map(|i| (i as f32).sin()).collect();
    ds.define_array::<f32>(
        "grid",
        vec!["y".into(), "x".into()],
        vec![6, 10],
        Some(vec![4, 4]),
        None,
    )
    .await
    .unwrap();
    ds.write_array(
        "grid",
        vec![],
        ArrayD::from_shape_vec(IxDyn(&[6, 10]), grid)
            .unwrap()
            .view(),
    )
    .await
    .unwrap();
}

/// Writes the seed corpora of the `fuzz/` targets from real stores: several
/// codecs and both registry formats, every dtype, deletes, attributes of every
/// type, delta and snapshot segments, delta and compacted layers. Replaces the
/// `seed-*` files of `fuzz/corpus/<target>/` (other files, such as minimised
/// crash reproducers, are kept). Run by `cargo xtask fuzz-corpus`.
///
/// As a test it writes into a temporary directory and checks that every target
/// gets seeds; `cargo xtask fuzz-corpus` points `ATLAS_FUZZ_CORPUS` at
/// `fuzz/corpus` to regenerate the committed corpora.
#[tokio::test]
async fn write_fuzz_seed_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("ATLAS_FUZZ_CORPUS")
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    let mut corpus = Corpus::default();
    let configs = [
        (Codec::Lz4, true, MetaFormat::Json),
        (Codec::Zstd { level: 3 }, false, MetaFormat::Binary),
        (Codec::None, true, MetaFormat::Binary),
        (Codec::Zstd { level: 1 }, true, MetaFormat::Json),
    ];
    for (k, (codec, shuffle, meta_format)) in configs.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let mut seen = BTreeSet::new();
        let s = Atlas::create_path(
            &root,
            StoreConfig {
                codec,
                shuffle,
                meta_format,
                ..StoreConfig::default()
            },
        )
        .await
        .unwrap();
        for i in 0..3 {
            let ds = s.create_dataset(&format!("ds_{k}_{i}")).await.unwrap();
            write_every_dtype(&ds, i).await;
            ds.set_attribute("b", Attr::Bool(true)).unwrap();
            ds.set_attribute("i", Attr::Int64(-3)).unwrap();
            ds.set_attribute("u", Attr::UInt64(u64::MAX)).unwrap();
            ds.set_attribute("f", Attr::Float64(f64::NAN)).unwrap();
            ds.set_attribute("inf", Attr::Float64(f64::NEG_INFINITY))
                .unwrap();
            ds.set_attribute("date", Attr::from("2024-01-01")).unwrap();
            ds.set_attribute("t", Attr::Timestamp(TimestampNs(-1)))
                .unwrap();
            ds.set_attribute("bl", Attr::BoolList(vec![true, false]))
                .unwrap();
            ds.set_attribute("il", Attr::Int64List(vec![1, -2]))
                .unwrap();
            ds.set_attribute("ul", Attr::UInt64List(vec![3])).unwrap();
            ds.set_attribute("fl", Attr::Float64List(vec![0.5, f64::INFINITY]))
                .unwrap();
            ds.set_attribute("sl", Attr::StringList(vec!["a".into(), String::new()]))
                .unwrap();
            ds.set_attribute("tl", Attr::TimestampList(vec![TimestampNs(0)]))
                .unwrap();
            ds.set_array_attribute("f32", "units", Attr::from("K"))
                .unwrap();
        }
        s.flush().await.unwrap();
        corpus.harvest(&root, &mut seen);
        // A delta: rewrite part of one dataset, delete an array and a dataset.
        let ds = s.open_dataset(&format!("ds_{k}_0")).await.unwrap();
        ds.write_array(
            "f64",
            vec![1],
            ArrayD::from_elem(IxDyn(&[2]), -0.0f64).view(),
        )
        .await
        .unwrap();
        ds.delete_array("u8").await.unwrap();
        s.delete_dataset(&format!("ds_{k}_1")).await.unwrap();
        s.flush().await.unwrap();
        corpus.harvest(&root, &mut seen);
        s.compact().await.unwrap();
        corpus.harvest(&root, &mut seen);
    }
    for (target, files) in &corpus.targets {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if file_name(&p).starts_with("seed-") {
                std::fs::remove_file(&p).unwrap();
            }
        }
        // Keep the corpora small: at most 48 seeds per target, evenly spread
        // over the sizes (so small delete-only footers and whole compacted
        // layers are both in).
        let mut files: Vec<_> = files.iter().collect();
        files.sort_by_key(|(name, b)| (b.len(), (*name).clone()));
        let all = files.len();
        let step = all.div_ceil(48).max(1);
        let (mut kept, mut total) = (0, 0);
        for (name, bytes) in files.into_iter().step_by(step) {
            kept += 1;
            total += bytes.len();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        println!(
            "{target}: {kept} of {all} seeds, {total} bytes, in {}",
            dir.display()
        );
    }
    // `footer` (format 1) keeps its checked-in seeds: this build writes format 2.
    for target in [
        "footer_blocked",
        "block",
        "chunk_cells",
        "layer_file",
        "manifest",
        "registry_run",
    ] {
        let seeds = std::fs::read_dir(out.join(target))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("seed-"))
            })
            .count();
        assert!(seeds > 0, "no seeds for fuzz target {target}");
    }
}
