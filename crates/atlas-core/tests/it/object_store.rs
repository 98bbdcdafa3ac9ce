//! Object storage: the storage conformance suite on every backend (local,
//! memory, `memory://` object store, S3 through the in-process `s3s` server,
//! Google Cloud Storage through the same server speaking GCS's XML API, S3
//! through moto when `ATLAS_TEST_MOTO_ENDPOINT` names one, Azure through
//! Azurite when `ATLAS_TEST_AZURITE_CONTAINER` does), and the store on S3 and
//! GCS: the conditional-write commit, racing writers, lost responses, torn
//! uploads, request counts, readers beside a writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atlas_core::{Atlas, ErrorKind, OpenOptions, Storage, StoreConfig};
use atlas_s3test::{Fault, FaultAction, OpKind, Protocol, S3Server};
use ndarray::{ArrayD, IxDyn};

// ---------------------------------------------------------------------------
// Backends

/// Options for the in-process server (explicit, not from the environment),
/// with few retries so injected failures end quickly.
fn s3s_options(endpoint: &str) -> Vec<(String, String)> {
    let mut options = atlas_s3test::client_options(endpoint);
    options.push(("atlas_max_retries".into(), "3".into()));
    options.push(("atlas_retry_timeout_ms".into(), "10000".into()));
    options
}

/// The moto server CI starts (`ATLAS_TEST_MOTO_ENDPOINT`), with a fresh
/// bucket; `None` when unset (required when `ATLAS_REQUIRE_S3` is set).
fn moto() -> Option<(String, Vec<(String, String)>)> {
    let Ok(endpoint) = std::env::var("ATLAS_TEST_MOTO_ENDPOINT") else {
        assert!(
            std::env::var_os("ATLAS_REQUIRE_S3").is_none(),
            "ATLAS_REQUIRE_S3 is set but ATLAS_TEST_MOTO_ENDPOINT is not"
        );
        eprintln!("moto: ATLAS_TEST_MOTO_ENDPOINT unset, skipped");
        return None;
    };
    let bucket = format!("atlas-{:x}", array_format::random_uid() as u64);
    let mut opts = s3s_options(&endpoint);
    opts.retain(|(k, _)| !k.starts_with("aws_access") && !k.starts_with("aws_secret"));
    opts.push(("aws_access_key_id".into(), "moto".into()));
    opts.push(("aws_secret_access_key".into(), "moto".into()));
    // moto creates buckets on a signed PUT of the bucket.
    let status = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg(format!("{endpoint}/{bucket}"))
        .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "moto:moto"])
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(code, "200", "creating bucket {bucket} on moto");
    Some((format!("s3://{bucket}"), opts))
}

/// The Azurite (Azure Blob emulator) container CI starts and creates
/// (`ATLAS_TEST_AZURITE_CONTAINER`; `object_store` finds the server through
/// `AZURITE_BLOB_STORAGE_URL`), with a fresh prefix in it; `None` when unset
/// (required when `ATLAS_REQUIRE_AZURE` is set).
fn azurite(what: &str) -> Option<(String, Vec<(String, String)>)> {
    let Ok(container) = std::env::var("ATLAS_TEST_AZURITE_CONTAINER") else {
        assert!(
            std::env::var_os("ATLAS_REQUIRE_AZURE").is_none(),
            "ATLAS_REQUIRE_AZURE is set but ATLAS_TEST_AZURITE_CONTAINER is not"
        );
        eprintln!("azurite: ATLAS_TEST_AZURITE_CONTAINER unset, skipped");
        return None;
    };
    let prefix = format!("{what}-{:x}", array_format::random_uid() as u64);
    let opts = vec![
        ("azure_storage_use_emulator".into(), "true".into()),
        ("atlas_max_retries".into(), "3".into()),
        ("atlas_retry_timeout_ms".into(), "10000".into()),
    ];
    Some((format!("az://{container}/{prefix}"), opts))
}

/// The in-process server with one bucket, speaking S3 or (for `gs://`
/// stores) Google Cloud Storage's XML API.
struct S3 {
    server: S3Server,
    bucket: String,
    protocol: Protocol,
}

impl S3 {
    fn start() -> S3 {
        S3::start_with(Protocol::S3)
    }

    fn start_gcs() -> S3 {
        S3::start_with(Protocol::Gcs)
    }

    fn start_with(protocol: Protocol) -> S3 {
        let server = S3Server::start_with(protocol, 0).expect("a server on 127.0.0.1");
        let bucket = "atlas".to_owned();
        server.create_bucket(&bucket);
        S3 {
            server,
            bucket,
            protocol,
        }
    }

    fn options(&self) -> Vec<(String, String)> {
        match self.protocol {
            Protocol::S3 => s3s_options(&self.server.endpoint()),
            Protocol::Gcs => {
                let mut options = atlas_s3test::gcs_client_options(&self.server.endpoint());
                options.push(("atlas_max_retries".into(), "3".into()));
                options.push(("atlas_retry_timeout_ms".into(), "10000".into()));
                options
            }
        }
    }

    fn url(&self, prefix: &str) -> String {
        let scheme = match self.protocol {
            Protocol::S3 => "s3",
            Protocol::Gcs => "gs",
        };
        format!("{scheme}://{}/{prefix}", self.bucket)
    }

    fn storage(&self, prefix: &str) -> (Arc<dyn Storage>, PathBuf) {
        atlas_core::storage_for(&self.url(prefix), &self.options()).expect("s3 storage")
    }

    fn count(&self, op: OpKind) -> usize {
        self.server.requests().iter().filter(|r| r.op == op).count()
    }
}

// ---------------------------------------------------------------------------
// The conformance suite: one set of checks every backend passes.

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn conformance(storage: &dyn Storage, root: &Path) {
    storage.create_dir_all(root).unwrap();
    let a = root.join("a.bin");
    let data = bytes(100_000, 7);
    storage.write_new_synced(&a, &data).unwrap();
    assert!(storage.exists(&a).unwrap());
    assert_eq!(storage.read_all(&a).unwrap(), data);

    // A second object at the same name is refused (at creation or at sync),
    // and the first is unchanged.
    let again = storage
        .create_new(&a)
        .and_then(|mut w| w.append(b"other").and_then(|()| w.sync()));
    assert!(again.is_err(), "an existing object was overwritten");
    assert_eq!(storage.read_all(&a).unwrap(), data);

    // Positional and batched ranged reads.
    let h = storage.open_read(&a).unwrap();
    assert_eq!(h.try_len().unwrap(), data.len() as u64);
    assert_eq!(h.len(), data.len() as u64);
    assert_eq!(h.read_vec_at(10, 20).unwrap(), &data[10..30]);
    assert_eq!(h.read_vec_at(0, 3).unwrap(), &data[..3]);
    let ranges = [(0u64, 5usize), (50_000, 1000), (99_990, 10), (200, 0)];
    let got = h.read_ranges(&ranges).unwrap();
    for ((o, n), g) in ranges.iter().zip(&got) {
        assert_eq!(g.as_slice(), &data[*o as usize..*o as usize + n]);
    }
    assert!(h.read_vec_at(99_995, 10).is_err(), "read past the end");

    // A large object (several multipart parts on object stores).
    let big_path = root.join("big.bin");
    let big = bytes(40 << 20, 3);
    let mut w = storage.create_new(&big_path).unwrap();
    for piece in big.chunks(3 << 20) {
        w.append(piece).unwrap();
    }
    assert_eq!(w.position(), big.len() as u64);
    w.sync().unwrap();
    drop(w);
    let hb = storage.open_read(&big_path).unwrap();
    assert_eq!(hb.try_len().unwrap(), big.len() as u64);
    assert_eq!(
        hb.read_vec_at(17 << 20, 4096).unwrap(),
        &big[17 << 20..(17 << 20) + 4096]
    );
    assert_eq!(storage.read_all(&big_path).unwrap(), big);

    // An object whose writer never finished is never visible (object stores;
    // a filesystem shows the partial file, which the store never names).
    if storage.is_object_store() {
        let partial = root.join("partial.bin");
        let mut w = storage.create_new(&partial).unwrap();
        w.append(&bytes(20 << 20, 1)).unwrap();
        drop(w);
        assert!(
            !storage.exists(&partial).unwrap(),
            "an unfinished upload is visible"
        );
    }

    // The conditional replace: create-if-absent, then replace-if-version.
    let m = root.join("manifest.json");
    let v1 = storage.replace_if(&m, b"one", None).unwrap();
    let e = storage.replace_if(&m, b"two", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let (got, v) = storage.read_versioned(&m).unwrap();
    assert_eq!(got, b"one");
    assert_eq!(v, v1);
    let v2 = storage.replace_if(&m, b"two", Some(&v1)).unwrap();
    assert_ne!(v1, v2);
    let e = storage.replace_if(&m, b"three", Some(&v1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(
        storage.read_versioned(&m).unwrap(),
        (b"two".to_vec(), v2.clone())
    );
    let v3 = storage.replace_if(&m, b"three", Some(&v2)).unwrap();
    assert_eq!(storage.read_all(&m).unwrap(), b"three");
    assert_eq!(storage.read_versioned(&m).unwrap().1, v3);

    // Listing with sizes.
    let sub = root.join("sub");
    storage.create_dir_all(&sub).unwrap();
    storage.write_new_synced(&sub.join("x"), b"xx").unwrap();
    let entries = storage.list_entries(root).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    for want in ["a.bin", "big.bin", "manifest.json", "sub"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let a_entry = entries.iter().find(|e| e.name == "a.bin").unwrap();
    if storage.is_object_store() {
        assert_eq!(a_entry.len, data.len() as u64);
        assert!(a_entry.modified.is_some());
    }
    assert_eq!(storage.list_dir(&sub).unwrap(), vec!["x".to_owned()]);

    // Deletion.
    storage.remove_file(&a).unwrap();
    assert!(!storage.exists(&a).unwrap());
    let e = storage.read_all(&a).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(storage.open_read(&a).and_then(|h| h.try_len()).is_err());
}

#[test]
fn conformance_local() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&atlas_core::LocalStorage, &dir.path().join("root"));
}

#[test]
fn conformance_memory() {
    conformance(&atlas_core::MemoryStorage::new(), Path::new("/root"));
}

#[test]
fn conformance_memory_object_store() {
    let (storage, root) = atlas_core::storage_for("memory://conformance/root", &[]).unwrap();
    assert!(storage.is_object_store());
    conformance(storage.as_ref(), &root);
}

#[test]
fn conformance_s3s() {
    conformance_in_process(&S3::start());
}

/// Google Cloud Storage (its XML API, which `object_store` speaks): the
/// conditional replace by generation, create by generation 0, ranged reads
/// (suffix ranges included), multipart uploads, paginated listing.
#[test]
fn conformance_gcs() {
    conformance_in_process(&S3::start_gcs());
}

fn conformance_in_process(s3: &S3) {
    let (storage, root) = s3.storage("conformance");
    conformance(storage.as_ref(), &root);
    // A dropped, unfinished upload is aborted by a task the drop spawns:
    // wait for it (under a loaded test run it can lag the suite's end).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s3.server.open_multipart_uploads() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        s3.server.open_multipart_uploads(),
        0,
        "an upload was left open"
    );
}

#[test]
fn conformance_moto() {
    let Some((url, opts)) = moto() else { return };
    let (storage, root) = atlas_core::storage_for(&format!("{url}/conformance"), &opts).unwrap();
    conformance(storage.as_ref(), &root);
}

/// Azure Blob through Azurite: the same conformance suite (conditional
/// replace by `ETag`, put-if-absent, ranged and batched reads, listing).
#[test]
fn conformance_azurite() {
    let Some((url, opts)) = azurite("conformance") else {
        return;
    };
    let (storage, root) = atlas_core::storage_for(&url, &opts).unwrap();
    conformance(storage.as_ref(), &root);
}

// ---------------------------------------------------------------------------
// The store on object storage

fn profile(n: usize, seed: f32) -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[n]), |i| seed + i[0] as f32 * 0.5)
}

async fn put_profile(atlas: &Atlas, name: &str, seed: f32) {
    let ds = atlas.create_dataset(name).await.unwrap();
    ds.define_array::<f32>(
        "TEMP",
        vec!["N_LEVELS".into()],
        vec![64],
        Some(vec![16]),
        None,
    )
    .await
    .unwrap();
    ds.write_array("TEMP", vec![], profile(64, seed).view())
        .await
        .unwrap();
}

async fn read_temp(atlas: &Atlas, name: &str) -> ArrayD<f32> {
    atlas
        .open_dataset(name)
        .await
        .unwrap()
        .read_array::<f32>("TEMP", vec![], vec![])
        .await
        .unwrap()
        .expect("TEMP is defined")
}

async fn open_on(storage: &Arc<dyn Storage>, root: &Path) -> Atlas {
    Atlas::open_with(Arc::clone(storage), root, OpenOptions::default())
        .await
        .unwrap()
}

/// The whole life of a store on one object-store location: create, write,
/// flush, reopen, compact, verify, delete.
async fn store_lifecycle(storage: Arc<dyn Storage>, root: &Path) {
    let cfg = StoreConfig {
        policy: atlas_core::Policy {
            max_layers_per_array: 3,
            gc_grace_secs: 0,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    let atlas = Atlas::create_with(Arc::clone(&storage), root, cfg)
        .await
        .unwrap();
    let e = Atlas::create_with(Arc::clone(&storage), root, cfg)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    for round in 0..6 {
        for i in 0..5 {
            put_profile(&atlas, &format!("r{round}-p{i}"), (round * 10 + i) as f32).await;
        }
        atlas.flush().await.unwrap();
        // Layer counts stay under the policy's threshold.
        assert!(atlas.array_layers("TEMP").len() <= 3, "round {round}");
    }
    let reader = open_on(&storage, root).await;
    assert_eq!(reader.n_datasets(), 30);
    for round in 0..6 {
        for i in 0..5 {
            assert_eq!(
                read_temp(&reader, &format!("r{round}-p{i}")).await,
                profile(64, (round * 10 + i) as f32)
            );
        }
    }
    atlas.delete_dataset("r0-p0").await.unwrap();
    atlas.compact().await.unwrap();
    let after = open_on(&storage, root).await;
    assert_eq!(after.n_datasets(), 29);
    assert!(!after.dataset_exists("r0-p0").unwrap());
    assert_eq!(read_temp(&after, "r5-p4").await, profile(64, 54.0));
    let report = atlas_core::verify::verify(&after, |_, _| {});
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The reader opened before compaction keeps reading its generation.
    assert_eq!(read_temp(&reader, "r3-p2").await, profile(64, 32.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_memory_object_store() {
    let (storage, root) = atlas_core::storage_for("memory://lifecycle/a/b", &[]).unwrap();
    store_lifecycle(storage, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_s3s() {
    let s3 = S3::start();
    let (storage, root) = s3.storage("stores/one");
    store_lifecycle(storage, &root).await;
    assert_eq!(s3.server.open_multipart_uploads(), 0);
}

/// The whole life of a store in a Google Cloud Storage bucket, opened by its
/// `gs://` URL (`storage_for`, the path `Atlas::open` and the CLI take).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_gcs() {
    let gcs = S3::start_gcs();
    let (storage, root) = gcs.storage("stores/one");
    store_lifecycle(storage, &root).await;
    assert_eq!(gcs.server.open_multipart_uploads(), 0);
    assert!(gcs
        .server
        .keys(&gcs.bucket)
        .iter()
        .any(|k| k == "stores/one/atlas.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_moto() {
    let Some((url, opts)) = moto() else { return };
    let (storage, root) = atlas_core::storage_for(&format!("{url}/life"), &opts).unwrap();
    store_lifecycle(storage, &root).await;
}

/// The whole life of a store in an Azure container (Azurite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_azurite() {
    let Some((url, opts)) = azurite("life") else {
        return;
    };
    let (storage, root) = atlas_core::storage_for(&url, &opts).unwrap();
    store_lifecycle(storage, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_open_through_atlas_open() {
    let atlas = Atlas::create("memory://urls/s", StoreConfig::default())
        .await
        .unwrap();
    put_profile(&atlas, "p", 1.0).await;
    atlas.flush().await.unwrap();
    let again = Atlas::open("memory://urls/s").await.unwrap();
    assert_eq!(read_temp(&again, "p").await, profile(64, 1.0));
    let e = Atlas::open("memory://urls/nothing-here").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(matches!(e, atlas_core::Error::StoreNotFound { .. }), "{e}");
}

#[test]
fn missing_credentials_name_the_variables() {
    if std::env::vars().any(|(k, _)| k.starts_with("AWS_")) {
        eprintln!("AWS_* variables set in this environment: skipped");
        return;
    }
    let e = atlas_core::storage_for("s3://some-bucket/store", &[]).unwrap_err();
    let text = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
    let e = atlas_core::storage_for("s3:///nobucket", &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_typed_error() {
    let s3 = S3::start();
    let mut opts = s3.options();
    for (k, v) in &mut opts {
        if k == "aws_secret_access_key" {
            *v = "wrong".into();
        }
    }
    opts.push(("atlas_max_retries".into(), "0".into()));
    let (storage, root) = atlas_core::storage_for(&s3.url("x"), &opts).unwrap();
    let e = Atlas::create_with(storage, &root, StoreConfig::default())
        .await
        .unwrap_err();
    let text = format!("{e:?}");
    assert!(
        text.contains("AWS_SECRET_ACCESS_KEY") || text.contains("AWS_ACCESS_KEY_ID"),
        "{text}"
    );
}

/// Two writers race from the same generation, 100 rounds: exactly one commit
/// lands each round, the loser gets a typed conflict with its changes still
/// pending, reopens, applies them again and lands. No commit is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_exactly_one_wins() {
    racing_writers(&S3::start()).await;
}

/// The race on Google Cloud Storage, where the manifest's version is its
/// generation (`x-goog-if-generation-match`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_exactly_one_wins_on_gcs() {
    racing_writers(&S3::start_gcs()).await;
}

async fn racing_writers(s3: &S3) {
    let (storage, root) = s3.storage("race");
    Atlas::create_with(Arc::clone(&storage), &root, StoreConfig::default())
        .await
        .unwrap();
    let rounds = 100;
    for round in 0..rounds {
        let a = open_on(&storage, &root).await;
        let b = open_on(&storage, &root).await;
        let generation = a.generation();
        put_profile(&a, &format!("a{round}"), round as f32).await;
        put_profile(&b, &format!("b{round}"), -(round as f32)).await;
        let (ra, rb) = tokio::join!(a.flush(), b.flush());
        let (winner, loser, loser_result, loser_name, seed) = match (&ra, &rb) {
            (Ok(()), Err(_)) => (&a, &b, rb, format!("b{round}"), -(round as f32)),
            (Err(_), Ok(())) => (&b, &a, ra, format!("a{round}"), round as f32),
            other => panic!("round {round}: exactly one must win, got {other:?}"),
        };
        let e = loser_result.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(matches!(e, atlas_core::Error::CommitConflict { .. }), "{e}");
        // (A flush may add a second commit: the policy's layer merge.)
        assert!(winner.generation() > generation);
        // The loser's change is still pending in its handle...
        assert_eq!(read_temp(loser, &loser_name).await, profile(64, seed));
        // ...and nothing of it is committed.
        let now = open_on(&storage, &root).await;
        assert!(!now.dataset_exists(&loser_name).unwrap());
        // Reopen and retry: lands.
        let retry = open_on(&storage, &root).await;
        put_profile(&retry, &loser_name, seed).await;
        retry.flush().await.unwrap();
        assert!(retry.generation() > winner.generation());
    }
    let last = open_on(&storage, &root).await;
    assert_eq!(last.n_datasets(), 2 * rounds);
    for round in 0..rounds {
        assert_eq!(
            read_temp(&last, &format!("a{round}")).await,
            profile(64, round as f32)
        );
        assert_eq!(
            read_temp(&last, &format!("b{round}")).await,
            profile(64, -(round as f32))
        );
    }
}

/// The manifest write lands but its response is lost: the client's retry
/// finds the version moved; the commit id read back shows the commit is ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_on_the_manifest_is_a_success() {
    lost_response(&S3::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_on_the_manifest_is_a_success_on_gcs() {
    lost_response(&S3::start_gcs()).await;
}

async fn lost_response(s3: &S3) {
    let (storage, root) = s3.storage("lost");
    let atlas = Atlas::create_with(Arc::clone(&storage), &root, StoreConfig::default())
        .await
        .unwrap();
    for (i, action) in [FaultAction::DropResponse, FaultAction::DropResponse]
        .into_iter()
        .enumerate()
    {
        put_profile(&atlas, &format!("p{i}"), i as f32).await;
        let before = atlas.generation();
        s3.server
            .inject(Fault::once(OpKind::Put, action).on_keys_containing("atlas.json"));
        atlas.flush().await.unwrap();
        assert_eq!(atlas.generation(), before + 1);
        let reopened = open_on(&storage, &root).await;
        assert_eq!(reopened.generation(), before + 1);
        assert_eq!(
            read_temp(&reopened, &format!("p{i}")).await,
            profile(64, i as f32)
        );
    }
    // And the handle keeps committing.
    put_profile(&atlas, "after", 9.0).await;
    atlas.flush().await.unwrap();
    assert!(open_on(&storage, &root)
        .await
        .dataset_exists("after")
        .unwrap());
}

/// A manifest write that fails before landing (every retry too) leaves the
/// previous commit and the pending changes; the flush succeeds once the
/// server recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_manifest_write_keeps_pending_changes() {
    failed_manifest_write(&S3::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_manifest_write_keeps_pending_changes_on_gcs() {
    failed_manifest_write(&S3::start_gcs()).await;
}

async fn failed_manifest_write(s3: &S3) {
    let (storage, root) = s3.storage("fail");
    let atlas = Atlas::create_with(Arc::clone(&storage), &root, StoreConfig::default())
        .await
        .unwrap();
    put_profile(&atlas, "p", 3.0).await;
    s3.server.inject(
        Fault::once(OpKind::Put, FaultAction::Fail)
            .on_keys_containing("atlas.json")
            .times(10),
    );
    let e = atlas.flush().await.unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Corrupt, "{e}");
    s3.server.clear_faults();
    assert!(!open_on(&storage, &root).await.dataset_exists("p").unwrap());
    atlas.flush().await.unwrap();
    assert_eq!(
        read_temp(&open_on(&storage, &root).await, "p").await,
        profile(64, 3.0)
    );
}

/// An upload cut off half way never becomes visible; the flush fails, the
/// store stays at its last commit, and a retry lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_upload_never_becomes_visible() {
    torn_upload(&S3::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_upload_never_becomes_visible_on_gcs() {
    torn_upload(&S3::start_gcs()).await;
}

async fn torn_upload(s3: &S3) {
    let (storage, root) = s3.storage("torn");
    let atlas = Atlas::create_with(Arc::clone(&storage), &root, StoreConfig::default())
        .await
        .unwrap();
    put_profile(&atlas, "base", 1.0).await;
    atlas.flush().await.unwrap();
    let keys_before = s3.server.keys(&s3.bucket);
    put_profile(&atlas, "p", 2.0).await;
    s3.server.inject(
        Fault::once(OpKind::Put, FaultAction::TruncateUpload)
            .on_keys_containing(".af")
            .times(10),
    );
    let e = atlas.flush().await.unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Corrupt, "{e}");
    s3.server.clear_faults();
    // Nothing new is visible but (possibly) a registry segment the failed
    // flush could not remove; no layer object, whole or partial.
    let keys_now = s3.server.keys(&s3.bucket);
    for k in &keys_now {
        if !keys_before.contains(k) {
            assert!(
                !std::path::Path::new(k)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("af")),
                "a torn layer {k} is visible"
            );
        }
    }
    let reader = open_on(&storage, &root).await;
    assert!(!reader.dataset_exists("p").unwrap());
    assert_eq!(read_temp(&reader, "base").await, profile(64, 1.0));
    atlas.flush().await.unwrap();
    assert_eq!(
        read_temp(&open_on(&storage, &root).await, "p").await,
        profile(64, 2.0)
    );
}

/// Requests per operation, counted by the server (not timed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts() {
    let s3 = S3::start();
    let (storage, root) = s3.storage("counts");
    // As many datasets as the real Argo collection.
    let n = 3_000;
    {
        let atlas = Atlas::create_with(Arc::clone(&storage), &root, StoreConfig::default())
            .await
            .unwrap();
        for i in 0..n {
            put_profile(&atlas, &format!("p{i:04}"), i as f32).await;
            let ds = atlas.open_dataset(&format!("p{i:04}")).await.unwrap();
            ds.define_array::<f32>("PSAL", vec!["N_LEVELS".into()], vec![64], None, None)
                .await
                .unwrap();
        }
        atlas.compact().await.unwrap();
    }
    let total = |s3: &S3| s3.server.requests().len();

    // Open: the manifest and the one registry segment; no listing, no layer.
    s3.server.reset_log();
    let atlas = open_on(&storage, &root).await;
    let open_requests = total(&s3);
    assert!(
        open_requests <= 2,
        "open made {open_requests} requests: {:?}",
        s3.server.requests()
    );
    assert_eq!(s3.count(OpKind::List), 0);

    // Read one array of one dataset: the layer's tail (trailer + footer),
    // its header, the chunks (coalesced).
    s3.server.reset_log();
    let _ = read_temp(&atlas, "p0150").await;
    let read_one = total(&s3);
    assert!(
        read_one <= 4,
        "one read made {read_one} requests: {:?}",
        s3.server.requests()
    );
    // Read again: every block comes from the handle's cache.
    s3.server.reset_log();
    let _ = read_temp(&atlas, "p0150").await;
    assert_eq!(total(&s3), 0, "a repeated read: {:?}", s3.server.requests());

    // Scan one variable across all datasets: bounded by the layers of that
    // one array file, not by the number of datasets.
    let fresh = open_on(&storage, &root).await;
    s3.server.reset_log();
    let names = fresh.datasets_with_array("TEMP").unwrap();
    assert_eq!(names.len(), n);
    let all = fresh
        .read_array_across::<f32>("TEMP", &names, vec![], vec![])
        .await
        .unwrap();
    assert!(all.iter().all(Option::is_some));
    let scan = total(&s3);
    assert!(scan <= 8, "scanning {n} datasets made {scan} requests");
    // The stacked scan (each array decoded into its row) on a fresh handle:
    // the same cells, within the same bound.
    let fresh = open_on(&storage, &root).await;
    s3.server.reset_log();
    let stacked = fresh
        .read_array_across_stacked::<f32>("TEMP", &names, vec![], vec![])
        .await
        .unwrap();
    let stacked_scan = total(&s3);
    assert!(
        stacked_scan <= 8,
        "a stacked scan of {n} datasets made {stacked_scan} requests"
    );
    assert_eq!(stacked.shape()[0], n);
    let flat: Vec<f32> = all
        .iter()
        .flat_map(|a| a.as_ref().expect("checked").iter().copied())
        .collect();
    assert_eq!(stacked.iter().copied().collect::<Vec<f32>>(), flat);

    // Change 1% of the datasets: each write checks the dataset's schema in
    // the array file, reading its footer block once (so at most one request
    // per changed dataset, fewer when they share blocks), after the layer's
    // tail and header and the writer's read of the manifest.
    let writer = open_on(&storage, &root).await;
    s3.server.reset_log();
    let changed = n / 100;
    for i in 0..changed {
        let ds = writer
            .open_dataset(&format!("p{:04}", i * 100))
            .await
            .unwrap();
        ds.write_array("TEMP", vec![], profile(64, -1.0).view())
            .await
            .unwrap();
    }
    let writes = total(&s3);
    assert!(
        writes <= changed + 3,
        "writing {changed} datasets made {writes} requests: {:?}",
        s3.server.requests()
    );
    // The flush: the new layer and registry run (PUT, then their tails read
    // to open them), the manifest (PUT); the statistics of the changed
    // datasets come from index blocks already read.
    s3.server.reset_log();
    writer.flush().await.unwrap();
    let puts = s3.count(OpKind::Put);
    let flush_total = total(&s3);
    assert_eq!(puts, 3, "flush after a 1% change made {puts} PUTs");
    assert!(
        flush_total <= 6,
        "flush after a 1% change made {flush_total} requests: {:?}",
        s3.server.requests()
    );
    eprintln!(
        "requests: open {open_requests}, open+read one array {}, scan {n} datasets {scan}, \
         writes of {changed} datasets {writes}, flush after 1% {flush_total} ({puts} PUTs)",
        open_requests + read_one
    );
}

/// Readers opening while a writer flushes, compacts and deletes retired
/// files always see a whole commit: dataset `counter` holds the number of
/// `d*` datasets. Readers on other machines cannot pin files, so retired
/// files are deleted only after the grace period (3 s here; the writer runs
/// about 5 s, so deletions happen while readers read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_mixed_state() {
    let s3 = S3::start();
    let (storage, root) = s3.storage("mixed");
    let cfg = StoreConfig {
        policy: atlas_core::Policy {
            max_layers_per_array: 2,
            gc_grace_secs: 3,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    let writer = Atlas::create_with(Arc::clone(&storage), &root, cfg)
        .await
        .unwrap();
    let c = writer.create_dataset("counter").await.unwrap();
    c.define_array::<f32>(
        "TEMP",
        vec!["N_LEVELS".into()],
        vec![64],
        Some(vec![16]),
        None,
    )
    .await
    .unwrap();
    c.write_array("TEMP", vec![], profile(64, 0.0).view())
        .await
        .unwrap();
    writer.flush().await.unwrap();
    let commits = 50;
    let w = async {
        for i in 1..=commits {
            put_profile(&writer, &format!("d{i}"), i as f32).await;
            let c = writer.open_dataset("counter").await.unwrap();
            c.write_array("TEMP", vec![], profile(64, i as f32).view())
                .await
                .unwrap();
            if i % 7 == 0 {
                writer.compact().await.unwrap();
            } else {
                writer.flush().await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let r = async {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
        loop {
            let reader = open_on(&storage, &root).await;
            let n = reader
                .list_datasets()
                .unwrap()
                .iter()
                .filter(|d| d.starts_with('d'))
                .count();
            let counter = read_temp(&reader, "counter").await;
            assert_eq!(
                counter,
                profile(64, n as f32),
                "mixed state at {n} datasets"
            );
            seen.push(n);
            if n == commits || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        seen
    };
    let ((), mut seen) = tokio::join!(w, r);
    seen.dedup();
    assert!(seen.len() > 5, "readers saw only {seen:?}");
    // Retired files were deleted while readers read.
    let deletes = s3.count(OpKind::Delete);
    assert!(deletes > 0, "no retired file was deleted during the test");
    eprintln!(
        "readers saw {} distinct commits; {deletes} delete requests",
        seen.len()
    );
}

/// A request that times out is retried with backoff; one that keeps timing
/// out becomes a typed I/O error once the retries are spent (never damage,
/// never a hang). The server holds the faulty answers back for 60 s: only
/// the client's 300 ms timeout can end those requests early (an abandoned
/// request never reaches the server's log, so the log cannot count them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_are_retried_then_reported() {
    let hold = std::time::Duration::from_mins(1);
    let s3 = S3::start();
    let mut options = s3.options();
    options.extend([
        ("atlas_request_timeout_ms".to_owned(), "300".to_owned()),
        ("atlas_max_retries".to_owned(), "2".to_owned()),
        ("atlas_retry_timeout_ms".to_owned(), "20000".to_owned()),
    ]);
    let (storage, root) = atlas_core::storage_for(&s3.url("timeouts"), &options).unwrap();
    {
        let atlas = Atlas::create_with(Arc::clone(&storage), &root, StoreConfig::default())
            .await
            .unwrap();
        put_profile(&atlas, "p1", 1.0).await;
        atlas.flush().await.unwrap();
    }

    // Once: the retry answers, long before the held answer would.
    s3.server.inject(
        Fault::once(OpKind::Get, FaultAction::Delay(hold)).on_keys_containing("atlas.json"),
    );
    let t = std::time::Instant::now();
    let atlas = open_on(&storage, &root).await;
    assert_eq!(read_temp(&atlas, "p1").await.len(), 64);
    assert!(
        t.elapsed() < hold / 2,
        "waited {:?} for a held answer",
        t.elapsed()
    );

    // Every time: an error of kind Io once the two retries are spent.
    s3.server.clear_faults();
    s3.server.inject(
        Fault::once(OpKind::Get, FaultAction::Delay(hold))
            .on_keys_containing("atlas.json")
            .times(100),
    );
    let t = std::time::Instant::now();
    let Err(err) = Atlas::open_with(Arc::clone(&storage), &root, OpenOptions::default()).await
    else {
        panic!("open must fail while every manifest GET times out");
    };
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        t.elapsed() < hold / 2,
        "gave up only after {:?}",
        t.elapsed()
    );
    s3.server.clear_faults();
}
