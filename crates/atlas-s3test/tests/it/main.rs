//! Integration tests: the server through a real S3 client (`object_store`'s
//! `AmazonS3`), as atlas-core will use it.

mod binary;
mod conditional;
mod faults;
mod objects;

use std::time::Duration;

use atlas_s3test::{OpKind, S3Server, ACCESS_KEY, REGION, SECRET_KEY};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{BackoffConfig, RetryConfig};

/// The bucket every test uses.
const BUCKET: &str = "atlas";

/// How the client retries.
#[derive(Clone, Copy, Debug)]
enum Retries {
    /// `max_retries: 0`: the client reports the first failure.
    None,
    /// `object_store`'s default policy (10 retries of 5xx and transport errors), with
    /// a short backoff so tests stay quick.
    Default,
}

/// A client for `bucket` on `server`, configured as atlas-core configures it.
fn client(server: &S3Server, retries: Retries) -> AmazonS3 {
    let retry = match retries {
        Retries::None => RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        },
        Retries::Default => RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                base: 2.0,
            },
            ..RetryConfig::default()
        },
    };
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_bucket_name(BUCKET)
        .with_region(REGION)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_retry(retry)
        .build()
        .expect("a valid client configuration")
}

/// A started server with the test bucket.
fn server() -> S3Server {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    server
}

fn path(key: &str) -> Path {
    Path::from(key)
}

/// How many logged requests were of kind `op`.
fn count(server: &S3Server, op: OpKind) -> usize {
    server.requests().iter().filter(|r| r.op == op).count()
}
