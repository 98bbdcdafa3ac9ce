//! An S3 server on 127.0.0.1 for tests and benchmarks, backed by memory.
//!
//! It speaks the real S3 protocol (through the [`s3s`] crate): `SigV4`-signed,
//! path-style requests for objects (get with ranges, head, put, delete, list v2 with
//! prefix, delimiter and pagination, multipart uploads) with conditional reads and
//! writes by `ETag`. What a hosted service cannot give a test, it adds:
//!
//! - **an oracle for races**: a conditional write (`If-None-Match: *`, `If-Match`) checks
//!   and writes under one lock, so of two writers racing from one version exactly one
//!   wins;
//! - **deterministic faults** ([`Fault`]): fail a request, delay it, apply it but drop
//!   the answer, or cut an upload half way;
//! - **a request log** ([`Request`]): every request with its operation, key, range,
//!   bytes and status, for asserting request counts rather than timings;
//! - **latency** added to every request, for benchmarks that model a remote store.
//!
//! The same server also speaks **Google Cloud Storage's XML API**
//! ([`S3Server::start_gcs`], [`Protocol::Gcs`]): the requests `object_store`'s GCS
//! client makes, with generations (`x-goog-if-generation-match`) as the versions of
//! conditional writes, over the same store, faults and request log. No emulator
//! of GCS that `object_store` can talk to installs on the build machines, so this
//! is how `gs://` stores are tested end to end.
//!
//! The binary `atlas-s3-server` runs the same server until killed, for scripts
//! (`--gcs` for the GCS protocol).
//!
//! # Example
//!
//! ```
//! use atlas_s3test::{Fault, FaultAction, OpKind, S3Server};
//!
//! let server = S3Server::start();
//! server.create_bucket("data");
//! server.put_object_direct("data", "a/1", b"hello".to_vec());
//! assert_eq!(server.object("data", "a/1").as_deref(), Some(&b"hello"[..]));
//! assert_eq!(server.keys("data"), ["a/1"]);
//! assert!(server.endpoint().starts_with("http://127.0.0.1:"));
//!
//! // The next PutObject on a key containing "manifest" lands but is answered 500.
//! server.inject(Fault::once(OpKind::Put, FaultAction::DropResponse).on_keys_containing("manifest"));
//! assert!(server.requests().is_empty(), "direct access is not logged");
//! ```
//!
//! Point an S3 client at [`S3Server::endpoint`] with [`ACCESS_KEY`], [`SECRET_KEY`],
//! [`REGION`], path-style requests and plain HTTP allowed.
//!
//! # What an `object_store` client sees
//!
//! Checked by `tests/it/faults.rs` with `object_store` 0.14.2 (`AmazonS3`). The
//! client retries 5xx answers always, and transport errors only for idempotent
//! requests (an overwriting put, an upload part, a complete; not a `PutMode::Create`).
//!
//! | fault | retries off (`max_retries: 0`) | default retries |
//! |---|---|---|
//! | [`FaultAction::Fail`] (503 `SlowDown`) | `Error::Generic`; nothing applied | retried; `Ok` once the fault is used up |
//! | [`FaultAction::Delay`] | `Ok`, late | `Ok`, late |
//! | [`FaultAction::DropResponse`] (applied, then 500) | `Error::Generic`, **but the write landed** | resent: an overwrite lands twice and reports `Ok`; `PutMode::Create` gets 412 and reports `AlreadyExists` (its own object); `PutMode::Update` gets 412 and reports `Precondition`; `CompleteMultipartUpload` gets 404 `NoSuchUpload` and reports `NotFound` although the object was published |
//! | [`FaultAction::TruncateUpload`] (connection cut, no answer) | `Error::Generic` ("error sending request"); nothing visible | an overwrite, a part or a complete is resent and reports `Ok`; `PutMode::Create` is not resent: `Error::Generic`, nothing visible |
//!
//! **Invariant:** nothing becomes visible before the `PutObject` or
//! `CompleteMultipartUpload` that publishes it succeeds; a failed or cut upload leaves
//! the bucket as it was.

mod backend;
mod fault;
mod gcs;
mod route;
mod server;
mod store;

pub use fault::{Fault, FaultAction, OpKind, Request};
pub use server::{Protocol, S3Server};

/// The access key id every request must be signed with.
pub const ACCESS_KEY: &str = "atlas-test";

/// The secret key every request must be signed with.
pub const SECRET_KEY: &str = "atlas-test-secret";

/// The region clients should sign for.
pub const REGION: &str = "us-east-1";

/// The `object_store` builder options of a client of the server at
/// `endpoint` (the keys `atlas_core::storage_for` takes): endpoint, plain
/// HTTP, path-style requests, this server's credentials and region.
pub fn client_options(endpoint: &str) -> Vec<(String, String)> {
    [
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", ACCESS_KEY),
        ("aws_secret_access_key", SECRET_KEY),
        ("aws_region", REGION),
        ("aws_virtual_hosted_style_request", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The bearer token every request to a [`Protocol::Gcs`] server must carry.
pub const BEARER_TOKEN: &str = "atlas-test-token";

/// The `object_store` builder options of a Google Cloud Storage client of the
/// [`Protocol::Gcs`] server at `endpoint`: its base URL, plain HTTP and this
/// server's bearer token.
pub fn gcs_client_options(endpoint: &str) -> Vec<(String, String)> {
    [
        ("google_base_url", endpoint),
        ("google_allow_http", "true"),
        ("google_bearer_token", BEARER_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The smallest part `CompleteMultipartUpload` accepts, except for the last part
/// (5 MiB, as in S3; smaller middle parts fail with `EntityTooSmall`).
pub const MIN_PART_SIZE_BYTES: usize = store::MIN_PART_SIZE_BYTES;
