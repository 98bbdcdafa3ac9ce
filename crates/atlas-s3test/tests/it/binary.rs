//! The `atlas-s3-server` binary: prints its endpoint, creates buckets, serves.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStoreExt, PutPayload, RetryConfig};

use crate::path;

/// Kills the child when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_prints_its_endpoint_and_serves_the_buckets() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atlas-s3-server"))
        .args([
            "--port",
            "0",
            "--bucket",
            "one",
            "--bucket",
            "two",
            "--latency-ms",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut endpoint = String::new();
    BufReader::new(stdout).read_line(&mut endpoint).unwrap();
    let endpoint = endpoint.trim().to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint:?}");

    for bucket in ["one", "two"] {
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(bucket)
            .with_region(atlas_s3test::REGION)
            .with_access_key_id(atlas_s3test::ACCESS_KEY)
            .with_secret_access_key(atlas_s3test::SECRET_KEY)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .unwrap();
        store
            .put(&path("k"), PutPayload::from_static(b"v"))
            .await
            .unwrap();
        assert_eq!(store.head(&path("k")).await.unwrap().size, 1);
    }
    drop(child);
}

#[test]
fn binary_rejects_unknown_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_atlas-s3-server"))
        .arg("--frobnicate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown argument"));
}
