//! Object stores (S3 and S3-compatible servers, Google Cloud Storage, Azure
//! Blob Storage, and an in-memory store) through the `object_store` crate.
//!
//! Requests run on one process-wide I/O runtime (two worker threads, named
//! `atlas-io`); the synchronous [`Storage`] calls wait for them on the calling
//! thread, which the store makes sure is a blocking-pool thread or a plain
//! thread, never a runtime worker.
//!
//! **Invariant:** an object becomes visible whole or not at all: small objects
//! are one `PUT` (conditional on absence), large ones a multipart upload that
//! is completed only by [`WriteHandle::sync`] and aborted if the handle is
//! dropped first. The manifest is replaced only by a conditional `PUT`
//! (`If-Match` on its `ETag`, or `If-None-Match: *` when creating).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion, WriteMultipart,
};
use parking_lot::Mutex;

use super::{Entry, LockGuard, ReadHandle, Storage, Version, WriteHandle};
use crate::error::{Error, Result};

/// Bytes fetched from the end of an object on its first read: a layer's
/// trailer and (for most layers) its footer in one request.
const TAIL_BYTES: u64 = 256 << 10;

/// Objects larger than this are written as multipart uploads of parts this big.
const PART_BYTES: usize = 16 << 20;

/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("atlas-io")
            .enable_all()
            .build()
            .expect("the object-store I/O runtime starts")
    })
}

/// Runs `fut` on the I/O runtime and waits for it on this thread (any thread
/// but an I/O runtime worker).
fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("an object-store request task panicked")
}

/// Request counts of one [`ObjectStorage`] (and every handle it made).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectStoreStats {
    /// `GET` requests (whole or ranged; each range of a batch is one).
    pub gets: u64,
    /// `HEAD` requests.
    pub heads: u64,
    /// `PUT` requests, multipart parts and completions included.
    pub puts: u64,
    /// `LIST` requests.
    pub lists: u64,
    /// `DELETE` requests.
    pub deletes: u64,
    /// Bytes received.
    pub bytes_read: u64,
    /// Bytes sent.
    pub bytes_written: u64,
}

#[derive(Default)]
struct Counters {
    gets: AtomicU64,
    heads: AtomicU64,
    puts: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

struct Shared {
    store: Arc<dyn ObjectStore>,
    label: String,
    counters: Counters,
}

/// A [`Storage`] over an object store.
///
/// Paths are object keys (relative, `/`-separated); a store's root is its key
/// prefix. Directories do not exist (creating, syncing and removing them do
/// nothing), renames are refused, and locks are always granted: the store's
/// commit point is the conditional replace of its manifest.
#[derive(Clone)]
pub struct ObjectStorage {
    shared: Arc<Shared>,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("store", &self.shared.label)
            .finish_non_exhaustive()
    }
}

/// True when `location` names an object store (`s3://`, `s3a://`, `gs://`,
/// `az://`, `azure://`, `abfs://`, `abfss://`, `memory://`).
pub(crate) fn is_object_url(location: &str) -> bool {
    scheme_of(location).is_some_and(|s| {
        matches!(
            s.as_str(),
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" | "adl" | "memory"
        )
    })
}

fn scheme_of(location: &str) -> Option<String> {
    let (scheme, _) = location.split_once("://")?;
    Some(scheme.to_ascii_lowercase())
}

/// Named in-memory stores of this process (`memory://NAME/…`), so two handles
/// on the same URL see the same objects.
fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut m = STORES.get_or_init(Mutex::default).lock();
    Arc::clone(
        m.entry(name.to_owned())
            .or_insert_with(|| Arc::new(object_store::memory::InMemory::new())),
    )
}

fn invalid(location: &str, reason: impl fmt::Display) -> Error {
    Error::io(
        "open",
        location,
        std::io::Error::new(std::io::ErrorKind::InvalidInput, reason.to_string()),
    )
}

/// Options ATLAS reads itself (the rest go to the `object_store` builder).
#[derive(Clone, Copy, Debug)]
struct ClientKnobs {
    max_retries: usize,
    retry_timeout: Duration,
    request_timeout: Duration,
}

impl ClientKnobs {
    fn take(options: &mut Vec<(String, String)>) -> Result<ClientKnobs> {
        let mut k = ClientKnobs {
            max_retries: 10,
            retry_timeout: Duration::from_mins(3),
            request_timeout: Duration::from_secs(30),
        };
        let mut rest = Vec::new();
        for (key, value) in options.drain(..) {
            let num = |what: &str| {
                value.parse::<u64>().map_err(|_| {
                    invalid(
                        &key,
                        format!("{what} must be a whole number, not {value:?}"),
                    )
                })
            };
            match key.to_ascii_lowercase().as_str() {
                "atlas_max_retries" => k.max_retries = num("atlas_max_retries")? as usize,
                "atlas_retry_timeout_ms" => {
                    k.retry_timeout = Duration::from_millis(num("atlas_retry_timeout_ms")?);
                }
                "atlas_request_timeout_ms" => {
                    k.request_timeout = Duration::from_millis(num("atlas_request_timeout_ms")?);
                }
                _ => rest.push((key, value)),
            }
        }
        *options = rest;
        Ok(k)
    }

    fn retry(self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
            ..object_store::RetryConfig::default()
        }
    }

    fn client(self) -> object_store::ClientOptions {
        object_store::ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(Duration::from_secs(5))
    }
}

/// Reads `ATLAS_`-free environment variables with `prefix` into options,
/// lower-cased as the builders expect.
fn env_options(prefixes: &[&str]) -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

fn has_any(options: &[(String, String)], keys: &[&str]) -> bool {
    options
        .iter()
        .any(|(k, v)| !v.is_empty() && keys.iter().any(|want| k.eq_ignore_ascii_case(want)))
}

impl ObjectStorage {
    /// Wraps any `object_store` store; `label` names it in messages.
    pub fn new(store: Arc<dyn ObjectStore>, label: impl Into<String>) -> ObjectStorage {
        ObjectStorage {
            shared: Arc::new(Shared {
                store,
                label: label.into(),
                counters: Counters::default(),
            }),
        }
    }

    /// True when `location` is an object-store URL this backend serves.
    pub fn handles(location: &str) -> bool {
        is_object_url(location)
    }

    /// Opens the object store a URL names and returns it with the store's
    /// root (the key prefix, possibly empty).
    ///
    /// `s3://bucket/prefix` (also `s3a://`), `gs://bucket/prefix`,
    /// `az://container/prefix` (also `azure://`, `abfs[s]://`) and
    /// `memory://name/prefix` (a store in this process's memory). Settings
    /// come from the usual environment variables (`AWS_*`, `GOOGLE_*`,
    /// `AZURE_*`), then from `options` (the `object_store` builder keys, for
    /// example `aws_endpoint`, `aws_allow_http`, `aws_access_key_id`), plus
    /// ATLAS's own `atlas_max_retries`, `atlas_retry_timeout_ms` and
    /// `atlas_request_timeout_ms`.
    ///
    /// Without credentials in either place this fails at once with a message
    /// naming the variables to set (anonymous access: `aws_skip_signature=true`).
    pub fn from_url(
        location: &str,
        options: &[(String, String)],
    ) -> Result<(ObjectStorage, PathBuf)> {
        let scheme = scheme_of(location)
            .filter(|_| is_object_url(location))
            .ok_or_else(|| {
                invalid(
                    location,
                    "not an object-store URL (s3://, gs://, az://, memory://)",
                )
            })?;
        let rest = &location[scheme.len() + 3..];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid(location, "the URL names no bucket or container"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(invalid(
                location,
                "the prefix may not contain `.` or `..` segments",
            ));
        }
        let mut explicit: Vec<(String, String)> = options.to_vec();
        let knobs = ClientKnobs::take(&mut explicit)?;
        let store: Arc<dyn ObjectStore> = match scheme.as_str() {
            "memory" => memory_store(bucket),
            "s3" | "s3a" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut all = env_options(&["AWS_"]);
                all.extend(explicit);
                let anonymous = all.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("aws_skip_signature") && v.eq_ignore_ascii_case("true")
                });
                let has_keys = has_any(&all, &["aws_access_key_id", "access_key_id"]);
                let has_other = has_any(
                    &all,
                    &[
                        "aws_container_credentials_relative_uri",
                        "aws_container_credentials_full_uri",
                        "aws_web_identity_token_file",
                        "aws_imdsv1_fallback",
                        "aws_metadata_endpoint",
                    ],
                );
                if !anonymous && !has_keys && !has_other {
                    return Err(Error::io(
                        "open",
                        location,
                        std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                             (and AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true for a server other than \
                             AWS), or AWS_SKIP_SIGNATURE=true for a public bucket",
                        ),
                    ));
                }
                // Client options first: the keys below (allow_http, …) refine them.
                let mut b = AmazonS3Builder::new()
                    .with_retry(knobs.retry())
                    .with_client_options(knobs.client())
                    .with_bucket_name(bucket);
                for (k, v) in all {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                let b = b.with_bucket_name(bucket);
                Arc::new(b.build().map_err(|e| invalid(location, e))?)
            }
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut all = env_options(&["GOOGLE_"]);
                all.extend(explicit);
                // Client options first: the keys below (allow_http, …) refine them.
                let mut b = GoogleCloudStorageBuilder::new()
                    .with_retry(knobs.retry())
                    .with_client_options(knobs.client())
                    .with_bucket_name(bucket);
                for (k, v) in all {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<GoogleConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                let b = b.with_bucket_name(bucket);
                Arc::new(b.build().map_err(|e| {
                    invalid(
                        location,
                        format!(
                            "{e} (set GOOGLE_SERVICE_ACCOUNT or GOOGLE_APPLICATION_CREDENTIALS)"
                        ),
                    )
                })?)
            }
            _ => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut all = env_options(&["AZURE_"]);
                all.extend(explicit);
                // Client options first: the keys below (allow_http, …) refine them.
                let mut b = MicrosoftAzureBuilder::new()
                    .with_retry(knobs.retry())
                    .with_client_options(knobs.client())
                    .with_container_name(bucket);
                for (k, v) in all {
                    if let Ok(key) = k.to_ascii_lowercase().parse::<AzureConfigKey>() {
                        b = b.with_config(key, v);
                    }
                }
                let b = b.with_container_name(bucket);
                Arc::new(b.build().map_err(|e| {
                    invalid(
                        location,
                        format!(
                            "{e} (set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY, \
                             or AZURE_STORAGE_USE_EMULATOR=true)"
                        ),
                    )
                })?)
            }
        };
        let label = format!("{scheme}://{bucket}");
        Ok((ObjectStorage::new(store, label), PathBuf::from(prefix)))
    }

    /// Requests made so far through this storage and its handles.
    pub fn stats(&self) -> ObjectStoreStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ObjectStoreStats {
            gets: g(&c.gets),
            heads: g(&c.heads),
            puts: g(&c.puts),
            lists: g(&c.lists),
            deletes: g(&c.deletes),
            bytes_read: g(&c.bytes_read),
            bytes_written: g(&c.bytes_written),
        }
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.shared.store)
    }
}

/// The [`Version`] of an object from what the store reported: its `ETag`
/// (the version itself when there is none) and its version.
fn version_of(e_tag: Option<String>, version: Option<String>, path: &Path) -> Result<Version> {
    match (e_tag, version) {
        (Some(tag), version) => Ok(Version(tag, version)),
        (None, Some(version)) => Ok(Version(version.clone(), Some(version))),
        (None, None) => Err(Error::io(
            "read",
            path,
            std::io::Error::other("the object store returned no ETag"),
        )),
    }
}

fn key_of(path: &Path) -> Result<Key> {
    let s = path.to_str().ok_or_else(|| {
        Error::io(
            "name",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "object keys must be UTF-8",
            ),
        )
    })?;
    Key::parse(s.trim_matches('/')).map_err(|e| {
        Error::io(
            "name",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
        )
    })
}

/// Maps an `object_store` error onto the storage error the store understands
/// (not found, already exists, conflict, permission, other I/O).
fn map_err(op: &'static str, path: &Path, e: object_store::Error) -> Error {
    use std::io::ErrorKind as K;
    match e {
        object_store::Error::NotFound { .. } => {
            Error::io(op, path, std::io::Error::from(K::NotFound))
        }
        object_store::Error::AlreadyExists { .. } => {
            Error::io(op, path, std::io::Error::from(K::AlreadyExists))
        }
        object_store::Error::Precondition { .. } => Error::Conflict {
            path: path.to_owned(),
            expected: None,
            found: None,
        },
        other => {
            let text = other.to_string();
            let lower = text.to_ascii_lowercase();
            let denied = [
                "403",
                "access denied",
                "accessdenied",
                "invalidaccesskeyid",
                "signaturedoesnotmatch",
                "forbidden",
                "401",
                "unauthorized",
            ]
            .iter()
            .any(|w| lower.contains(w));
            if denied {
                Error::io(
                    op,
                    path,
                    std::io::Error::new(
                        K::PermissionDenied,
                        format!(
                            "{text} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, \
                             GOOGLE_SERVICE_ACCOUNT or AZURE_STORAGE_ACCOUNT_KEY)"
                        ),
                    ),
                )
            } else if lower.contains("timed out") || lower.contains("timeout") {
                Error::io(op, path, std::io::Error::new(K::TimedOut, text))
            } else {
                Error::io(op, path, std::io::Error::other(text))
            }
        }
    }
}

struct ObjectRead {
    shared: Arc<Shared>,
    key: Key,
    path: PathBuf,
    size: OnceLock<u64>,
    /// The object's last bytes, fetched by the first read: (offset, bytes).
    tail: OnceLock<(u64, bytes::Bytes)>,
}

impl fmt::Debug for ObjectRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectRead")
            .field("key", &self.key.as_ref())
            .field("size", &self.size.get())
            .finish_non_exhaustive()
    }
}

impl ObjectRead {
    fn fetch_tail(&self) -> Result<()> {
        if self.size.get().is_some() {
            return Ok(());
        }
        let store = Arc::clone(&self.shared.store);
        let key = self.key.clone();
        let r = block_on(async move {
            let opts = GetOptions {
                range: Some(GetRange::Suffix(TAIL_BYTES)),
                ..GetOptions::default()
            };
            match store.get_opts(&key, opts).await {
                Ok(got) => {
                    let size = got.meta.size;
                    let start = got.range.start;
                    let bytes = got.bytes().await?;
                    Ok::<_, object_store::Error>((size, start, bytes, 1))
                }
                // Azure Blob has no suffix ranges (object_store refuses them
                // before sending anything): the size first, then the range.
                Err(object_store::Error::NotSupported { .. }) => {
                    let size = store.head(&key).await?.size;
                    let start = size.saturating_sub(TAIL_BYTES);
                    let bytes = if size == 0 {
                        bytes::Bytes::new()
                    } else {
                        store.get_range(&key, start..size).await?
                    };
                    Ok((size, start, bytes, 2))
                }
                Err(e) => Err(e),
            }
        });
        let requests = r.as_ref().map_or(1, |(_, _, _, n)| *n);
        Counters::add(&self.shared.counters.gets, requests);
        let r = r.map(|(size, start, bytes, _)| (size, start, bytes));
        let (size, start, bytes) = r.map_err(|e| map_err("read", &self.path, e))?;
        Counters::add(&self.shared.counters.bytes_read, bytes.len() as u64);
        if start + bytes.len() as u64 != size {
            return Err(Error::io(
                "read",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "short read of the object's tail",
                ),
            ));
        }
        let _ = self.tail.set((start, bytes));
        let _ = self.size.set(size);
        Ok(())
    }

    fn cached_tail(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let (start, bytes) = self.tail.get()?;
        let end = offset.checked_add(len as u64)?;
        if offset >= *start && end <= start + bytes.len() as u64 {
            let at = (offset - start) as usize;
            Some(&bytes[at..at + len])
        } else {
            None
        }
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<()> {
        let size = self.try_len()?;
        if offset.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(Error::io(
                "read",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{len} bytes at {offset} run past the end of a {size}-byte object"),
                ),
            ));
        }
        Ok(())
    }
}

impl ReadHandle for ObjectRead {
    /// The object's size; 0 until [`ReadHandle::try_len`] or a read fetched it.
    fn len(&self) -> u64 {
        self.try_len().unwrap_or(0)
    }

    fn try_len(&self) -> Result<u64> {
        self.fetch_tail()?;
        Ok(*self.size.get().expect("set by fetch_tail"))
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut out = self.read_ranges(&[(offset, buf.len())])?;
        buf.copy_from_slice(&out.pop().expect("one range"));
        Ok(())
    }

    fn read_ranges(&self, ranges: &[(u64, usize)]) -> Result<Vec<Vec<u8>>> {
        for &(offset, len) in ranges {
            self.check_range(offset, len)?;
        }
        let mut out: Vec<Option<Vec<u8>>> = ranges
            .iter()
            .map(|&(o, n)| self.cached_tail(o, n).map(<[u8]>::to_vec))
            .collect();
        let missing: Vec<(usize, std::ops::Range<u64>)> = ranges
            .iter()
            .enumerate()
            .filter(|(i, _)| out[*i].is_none())
            .map(|(i, &(o, n))| (i, o..o + n as u64))
            .collect();
        if !missing.is_empty() {
            let store = Arc::clone(&self.shared.store);
            let key = self.key.clone();
            let want: Vec<std::ops::Range<u64>> = missing.iter().map(|(_, r)| r.clone()).collect();
            // Neighbouring ranges (gaps under 64 KiB) are merged into requests
            // of at most 8 MiB, all in flight at once. Not `get_ranges`: it
            // merges ranges under 1 MiB apart with no size cap, far past the
            // 8–16 MiB sweet spot of object stores.
            let groups = coalesce(&want, 64 << 10, 8 << 20);
            let spans: Vec<std::ops::Range<u64>> = groups.iter().map(|g| g.0.clone()).collect();
            let n = spans.len();
            let fetched = block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for (j, r) in spans.into_iter().enumerate() {
                    let (store, key) = (Arc::clone(&store), key.clone());
                    set.spawn(async move { (j, store.get_range(&key, r).await) });
                }
                let mut out: Vec<Option<bytes::Bytes>> = vec![None; n];
                while let Some(done) = set.join_next().await {
                    let (j, got) = done.expect("a ranged read task panicked");
                    out[j] = Some(got?);
                }
                Ok::<_, object_store::Error>(out)
            })
            .map_err(|e| map_err("read", &self.path, e))?;
            Counters::add(&self.shared.counters.gets, n as u64);
            let mut got: Vec<bytes::Bytes> = vec![bytes::Bytes::new(); want.len()];
            for ((span, members), bytes) in groups.iter().zip(fetched) {
                let bytes = bytes.expect("every request answered");
                Counters::add(&self.shared.counters.bytes_read, bytes.len() as u64);
                for &k in members {
                    let r = &want[k];
                    let (a, b) = (r.start - span.start, r.end - span.start);
                    if b as usize > bytes.len() {
                        return Err(Error::io(
                            "read",
                            &self.path,
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "short ranged read",
                            ),
                        ));
                    }
                    got[k] = bytes.slice(a as usize..b as usize);
                }
            }
            for ((i, r), bytes) in missing.into_iter().zip(got) {
                if bytes.len() as u64 != r.end - r.start {
                    return Err(Error::io(
                        "read",
                        &self.path,
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short ranged read"),
                    ));
                }
                out[i] = Some(bytes.to_vec());
            }
        }
        Ok(out
            .into_iter()
            .map(|b| b.expect("every range filled"))
            .collect())
    }
}

/// Groups `ranges` into requests: ranges whose gap is under `max_gap` merge
/// while the request stays within `max_len` (a single longer range is one
/// request). Returns each request's span with the indices of its ranges.
fn coalesce(
    ranges: &[std::ops::Range<u64>],
    max_gap: u64,
    max_len: u64,
) -> Vec<(std::ops::Range<u64>, Vec<usize>)> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: Vec<(std::ops::Range<u64>, Vec<usize>)> = Vec::new();
    for i in order {
        let r = &ranges[i];
        match out.last_mut() {
            Some((span, members))
                if r.start <= span.end.saturating_add(max_gap)
                    && r.end.max(span.end) - span.start <= max_len =>
            {
                span.end = span.end.max(r.end);
                members.push(i);
            }
            _ => out.push((r.clone(), vec![i])),
        }
    }
    out
}

struct ObjectWrite {
    shared: Arc<Shared>,
    key: Key,
    path: PathBuf,
    /// Bytes not yet handed to an upload, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    pos: u64,
    /// The multipart upload once the object outgrew one part (in a mutex
    /// only because write handles are `Sync`).
    upload: Mutex<Option<WriteMultipart>>,
    done: bool,
    poisoned: bool,
}

impl fmt::Debug for ObjectWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectWrite")
            .field("key", &self.key.as_ref())
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl ObjectWrite {
    fn check(&self) -> Result<()> {
        if self.poisoned {
            return Err(super::poisoned_error(&self.path));
        }
        if self.done {
            return Err(Error::io(
                "write",
                &self.path,
                std::io::Error::other("the object is complete; it takes no more writes"),
            ));
        }
        Ok(())
    }

    /// Hands full parts to the multipart upload (starting it if needed).
    fn upload_parts(&mut self) -> Result<()> {
        if self.buf.len() < PART_BYTES {
            return Ok(());
        }
        let full = self.buf.len() / PART_BYTES * PART_BYTES;
        let chunk: Vec<u8> = self.buf.drain(..full).collect();
        self.buf_start += full as u64;
        let store = Arc::clone(&self.shared.store);
        let key = self.key.clone();
        let upload = self.upload.get_mut().take();
        let parts = (full / PART_BYTES) as u64;
        let r = block_on(async move {
            let mut w = match upload {
                Some(w) => w,
                None => WriteMultipart::new_with_chunk_size(
                    store.put_multipart(&key).await?,
                    PART_BYTES,
                ),
            };
            w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
            w.write(&chunk);
            Ok::<_, object_store::Error>(w)
        });
        Counters::add(&self.shared.counters.puts, parts);
        Counters::add(&self.shared.counters.bytes_written, full as u64);
        match r {
            Ok(w) => {
                *self.upload.get_mut() = Some(w);
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(map_err("write", &self.path, e))
            }
        }
    }
}

impl Drop for ObjectWrite {
    fn drop(&mut self) {
        if let Some(w) = self.upload.get_mut().take() {
            // Never completed: abort, so the parts are not kept (or billed).
            runtime().spawn(async move {
                let _ = w.abort().await;
            });
        }
    }
}

impl WriteHandle for ObjectWrite {
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        self.check()?;
        self.buf.extend_from_slice(buf);
        self.pos += buf.len() as u64;
        self.upload_parts()
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn sync(&mut self) -> Result<()> {
        self.check()?;
        let rest = std::mem::take(&mut self.buf);
        let n = rest.len() as u64;
        let store = Arc::clone(&self.shared.store);
        let key = self.key.clone();
        let r = if let Some(mut w) = self.upload.get_mut().take() {
            Counters::add(&self.shared.counters.puts, 2);
            block_on(async move {
                w.write(&rest);
                w.finish().await.map(|_| ())
            })
        } else {
            Counters::add(&self.shared.counters.puts, 1);
            block_on(async move {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                store
                    .put_opts(&key, PutPayload::from(rest), opts)
                    .await
                    .map(|_| ())
            })
        };
        Counters::add(&self.shared.counters.bytes_written, n);
        match r {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(map_err("write", &self.path, e))
            }
        }
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset + buf.len() as u64;
        if offset >= self.buf_start && end <= self.buf_start + self.buf.len() as u64 {
            let at = (offset - self.buf_start) as usize;
            buf.copy_from_slice(&self.buf[at..at + buf.len()]);
            return Ok(());
        }
        Err(Error::io(
            "read back",
            &self.path,
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "bytes already uploaded cannot be read back from an unfinished object",
            ),
        ))
    }
}

#[derive(Debug)]
struct NoLock;

impl LockGuard for NoLock {}

impl Storage for ObjectStorage {
    fn open_read(&self, path: &Path) -> Result<Arc<dyn ReadHandle>> {
        // No request: the size and the tail come with the first read.
        Ok(Arc::new(ObjectRead {
            shared: Arc::clone(&self.shared),
            key: key_of(path)?,
            path: path.to_owned(),
            size: OnceLock::new(),
            tail: OnceLock::new(),
        }))
    }

    fn create_new(&self, path: &Path) -> Result<Box<dyn WriteHandle>> {
        Ok(Box::new(ObjectWrite {
            shared: Arc::clone(&self.shared),
            key: key_of(path)?,
            path: path.to_owned(),
            buf: Vec::new(),
            buf_start: 0,
            pos: 0,
            upload: Mutex::new(None),
            done: false,
            poisoned: false,
        }))
    }

    fn rename(&self, from: &Path, _to: &Path) -> Result<()> {
        Err(Error::io(
            "rename",
            from,
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "object stores have no atomic rename",
            ),
        ))
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let store = self.store();
        let key = key_of(path)?;
        Counters::add(&self.shared.counters.deletes, 1);
        block_on(async move { store.delete(&key).await }).map_err(|e| map_err("remove", path, e))
    }

    fn remove_dir(&self, _path: &Path) -> Result<()> {
        Ok(())
    }

    fn create_dir_all(&self, _path: &Path) -> Result<()> {
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> Result<()> {
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        let store = self.store();
        let key = key_of(path)?;
        Counters::add(&self.shared.counters.heads, 1);
        match block_on(async move { store.head(&key).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(!self.list_entries(path)?.is_empty()),
            Err(e) => Err(map_err("stat", path, e)),
        }
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>> {
        Ok(self
            .list_entries(path)?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    fn list_entries(&self, path: &Path) -> Result<Vec<Entry>> {
        let store = self.store();
        let key = key_of(path)?;
        Counters::add(&self.shared.counters.lists, 1);
        let listed = block_on(async move {
            let prefix = if key.as_ref().is_empty() {
                None
            } else {
                Some(&key)
            };
            store.list_with_delimiter(prefix).await
        })
        .map_err(|e| map_err("list", path, e))?;
        let mut out: Vec<Entry> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .map(|name| Entry {
                name,
                len: 0,
                modified: None,
            })
            .chain(listed.objects.iter().filter_map(|m| {
                Some(Entry {
                    name: m.location.filename()?.to_owned(),
                    len: m.size,
                    modified: Some(SystemTime::from(m.last_modified)),
                })
            }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn try_lock(&self, _path: &Path) -> Result<Option<Box<dyn LockGuard>>> {
        Ok(Some(Box::new(NoLock)))
    }

    fn is_object_store(&self) -> bool {
        true
    }

    fn scratch_location(&self, _dir: &Path) -> Option<(Arc<dyn Storage>, PathBuf)> {
        let dir = std::env::temp_dir().join("atlas-scratch");
        std::fs::create_dir_all(&dir).ok()?;
        Some((Arc::new(super::LocalStorage), dir))
    }

    fn read_all(&self, path: &Path) -> Result<Vec<u8>> {
        Ok(self.read_versioned(path)?.0)
    }

    fn read_versioned(&self, path: &Path) -> Result<(Vec<u8>, Version)> {
        let store = self.store();
        let key = key_of(path)?;
        Counters::add(&self.shared.counters.gets, 1);
        let (bytes, meta) = block_on(async move {
            let got = store.get(&key).await?;
            let meta = got.meta.clone();
            Ok::<_, object_store::Error>((got.bytes().await?, meta))
        })
        .map_err(|e| map_err("read", path, e))?;
        Counters::add(&self.shared.counters.bytes_read, bytes.len() as u64);
        Ok((bytes.to_vec(), version_of(meta.e_tag, meta.version, path)?))
    }

    fn replace_if(&self, path: &Path, bytes: &[u8], expected: Option<&Version>) -> Result<Version> {
        let store = self.store();
        let key = key_of(path)?;
        let mode = match expected {
            None => PutMode::Create,
            // Both: S3 and Azure compare the ETag, GCS the generation.
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: v.1.clone(),
            }),
        };
        let payload = PutPayload::from(bytes.to_vec());
        Counters::add(&self.shared.counters.puts, 1);
        Counters::add(&self.shared.counters.bytes_written, bytes.len() as u64);
        let r = block_on(async move {
            store
                .put_opts(
                    &key,
                    payload,
                    PutOptions {
                        mode,
                        ..PutOptions::default()
                    },
                )
                .await
        });
        match r {
            Ok(put) => match put.e_tag {
                Some(_) => version_of(put.e_tag, put.version, path),
                None => Ok(self.read_versioned(path)?.1),
            },
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(Error::Conflict {
                path: path.to_owned(),
                expected: expected.map(|v| v.0.clone()),
                found: None,
            }),
            Err(e) => Err(map_err("replace", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GCS's conditional update needs the object's generation (its
    /// `version`), S3's and Azure's the `ETag`: a version keeps both, and a
    /// store that reports only a version uses it as the tag too.
    #[test]
    fn a_version_keeps_the_etag_and_the_generation() {
        let p = Path::new("atlas.json");
        let v = version_of(Some("\"e1\"".into()), Some("1712".into()), p).unwrap();
        assert_eq!((v.0.as_str(), v.1.as_deref()), ("\"e1\"", Some("1712")));
        let v = version_of(None, Some("1712".into()), p).unwrap();
        assert_eq!((v.0.as_str(), v.1.as_deref()), ("1712", Some("1712")));
        let v = version_of(Some("\"e1\"".into()), None, p).unwrap();
        assert_eq!((v.0.as_str(), v.1), ("\"e1\"", None));
        assert!(version_of(None, None, p).is_err());
    }

    #[test]
    fn neighbouring_ranges_merge_up_to_the_size_cap() {
        let spans = |g: Vec<(std::ops::Range<u64>, Vec<usize>)>| -> Vec<(u64, u64, Vec<usize>)> {
            g.into_iter().map(|(r, m)| (r.start, r.end, m)).collect()
        };
        // Unsorted input; 10..20 and 25..30 are 5 apart (merge), 100..110 is
        // 70 past 30 (gap cap 50: a new request).
        assert_eq!(
            spans(coalesce(&[25..30, 10..20, 100..110], 50, 1000)),
            [(10, 30, vec![1, 0]), (100, 110, vec![2])]
        );
        // Adjacent ranges stop merging at the length cap.
        let r: Vec<std::ops::Range<u64>> = (0..10).map(|i| i * 10..i * 10 + 10).collect();
        let g = coalesce(&r, 0, 30);
        assert_eq!(g.len(), 4);
        assert!(g.iter().all(|(s, _)| s.end - s.start <= 30));
        assert_eq!(g.iter().map(|(_, m)| m.len()).sum::<usize>(), 10);
        // One range above the cap is still one request; overlaps merge.
        let one = [std::ops::Range { start: 0, end: 500 }];
        assert_eq!(spans(coalesce(&one, 0, 100)), [(0, 500, vec![0])]);
        assert_eq!(
            spans(coalesce(&[0..500, 100..200], 0, 1000)),
            [(0, 500, vec![0, 1])]
        );
    }
}
