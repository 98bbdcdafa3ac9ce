//! Every command on a store in S3 (the in-process `s3s` server of
//! `atlas-s3test`), configured the way users do: `AWS_*` variables.

use std::process::{Command, Output};

use atlas_s3test::S3Server;

/// Runs the CLI with the variables starting with `prefix` replaced by `vars`
/// (none of the caller's own leaks in).
fn atlas_with(prefix: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atlas"));
    for (k, _) in std::env::vars() {
        if k.starts_with(prefix) {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied())
        .args(args)
        .output()
        .expect("run atlas")
}

fn atlas_s3(server: &S3Server, args: &[&str]) -> Output {
    atlas_with(
        "AWS_",
        &[
            ("AWS_ENDPOINT_URL", &server.endpoint()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", atlas_s3test::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", atlas_s3test::SECRET_KEY),
            ("AWS_REGION", atlas_s3test::REGION),
        ],
        args,
    )
}

fn ok(server: &S3Server, args: &[&str]) -> String {
    succeeded(args, atlas_s3(server, args))
}

/// The standard output of a run that must have succeeded.
fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "atlas {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn every_command_works_on_s3() {
    let server = S3Server::start();
    server.create_bucket("ocean");
    let url = "s3://ocean/stores/demo";
    ok(
        &server,
        &["demo", url, "--datasets", "40", "--grids", "1", "-q"],
    );
    assert!(
        server
            .keys("ocean")
            .iter()
            .any(|k| k == "stores/demo/atlas.json"),
        "the manifest is in the bucket"
    );
    let ls = ok(&server, &["ls", url]);
    assert_eq!(ls.lines().count(), 41, "{ls}");
    let info = ok(&server, &["info", url, "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["datasets"], 41, "{info}");
    // Sizes come from the bucket listing, not from a local directory.
    assert!(info["bytes_on_disk"].as_u64().unwrap() > 10_000, "{info}");
    assert!(info["registry_bytes"].as_u64().unwrap() > 100, "{info}");
    assert!(info["arrays"][0]["bytes"].as_u64().unwrap() > 0, "{info}");
    let first = ls.lines().next().unwrap().trim().to_owned();
    let cat = ok(&server, &["cat", url, &first, "TEMP", "--json"]);
    assert!(cat.contains("\"data\""), "{cat}");
    let stats = ok(&server, &["stats", url, "TEMP"]);
    assert!(stats.contains(&first), "{stats}");
    ok(&server, &["scan", url, "TEMP"]);
    ok(&server, &["compact", url]);
    let verify = ok(&server, &["verify", url]);
    assert!(verify.contains("OK") || verify.contains("ok"), "{verify}");

    // Export to a local NetCDF file, import it into a second store in S3.
    let t = tempfile::tempdir().unwrap();
    let nc = t.path().join("p.nc");
    ok(&server, &["export", url, &first, nc.to_str().unwrap()]);
    let url2 = "s3://ocean/stores/imported";
    ok(&server, &["import", url2, nc.to_str().unwrap(), "-q"]);
    let ls2 = ok(&server, &["ls", url2]);
    assert_eq!(ls2.trim(), "p");
    let data = |json: &str| {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v["data"].clone()
    };
    let a = ok(&server, &["cat", url, &first, "TEMP", "--json"]);
    let b = ok(&server, &["cat", url2, "p", "TEMP", "--json"]);
    assert_eq!(
        data(&a),
        data(&b),
        "the round trip through NetCDF and S3 keeps the values"
    );

    // A prefix with no store is "not found", not an empty store.
    let out = atlas_s3(&server, &["ls", "s3://ocean/nothing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no atlas store"));
}

/// The CLI on a store in Google Cloud Storage (the same in-process server
/// speaking GCS's XML API), configured by `GOOGLE_*` variables.
fn atlas_gcs(server: &S3Server, token: &str, args: &[&str]) -> Output {
    atlas_with(
        "GOOGLE_",
        &[
            ("GOOGLE_BASE_URL", &server.endpoint()),
            ("GOOGLE_ALLOW_HTTP", "true"),
            ("GOOGLE_BEARER_TOKEN", token),
        ],
        args,
    )
}

fn gcs_ok(server: &S3Server, args: &[&str]) -> String {
    succeeded(args, atlas_gcs(server, atlas_s3test::BEARER_TOKEN, args))
}

#[test]
fn every_command_works_on_gcs() {
    let server = S3Server::start_gcs();
    server.create_bucket("ocean");
    let url = "gs://ocean/stores/demo";
    gcs_ok(
        &server,
        &["demo", url, "--datasets", "40", "--grids", "1", "-q"],
    );
    assert!(server
        .keys("ocean")
        .iter()
        .any(|k| k == "stores/demo/atlas.json"));
    let ls = gcs_ok(&server, &["ls", url]);
    assert_eq!(ls.lines().count(), 41, "{ls}");
    let info: serde_json::Value =
        serde_json::from_str(&gcs_ok(&server, &["info", url, "--json"])).unwrap();
    assert_eq!(info["datasets"], 41, "{info}");
    assert!(info["bytes_on_disk"].as_u64().unwrap() > 10_000, "{info}");
    let first = ls.lines().next().unwrap().trim().to_owned();
    let cat = gcs_ok(&server, &["cat", url, &first, "TEMP", "--json"]);
    assert!(cat.contains("\"data\""), "{cat}");
    let stats = gcs_ok(&server, &["stats", url, "TEMP"]);
    assert!(stats.contains(&first), "{stats}");
    let count = gcs_ok(&server, &["query", url, "has(TEMP)", "--count"]);
    assert_eq!(count.trim(), "40", "{count}");
    gcs_ok(&server, &["scan", url, "TEMP"]);
    gcs_ok(&server, &["compact", url]);
    let verify = gcs_ok(&server, &["verify", url]);
    assert!(verify.contains("ok"), "{verify}");
    let t = tempfile::tempdir().unwrap();
    let nc = t.path().join("p.nc");
    gcs_ok(&server, &["export", url, &first, nc.to_str().unwrap()]);
    gcs_ok(
        &server,
        &["import", "gs://ocean/imported", nc.to_str().unwrap(), "-q"],
    );
    assert_eq!(gcs_ok(&server, &["ls", "gs://ocean/imported"]).trim(), "p");

    // A wrong token is refused by the server: an error, nothing changed.
    let out = atlas_gcs(&server, "wrong", &["ls", url]);
    assert_ne!(out.status.code(), Some(0));
    let out = atlas_gcs(&server, "wrong", &["demo", "gs://ocean/other", "-q"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!server.keys("ocean").iter().any(|k| k.starts_with("other/")));
    // A prefix with no store is "not found".
    let out = atlas_gcs(
        &server,
        atlas_s3test::BEARER_TOKEN,
        &["ls", "gs://ocean/nothing"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no atlas store"));
}
