//! Integration tests of the `atlas` binary: every command on a demo store.

#![allow(clippy::missing_panics_doc)] // tests panic by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod history;
mod netcdf;
mod pipe;
mod query;
mod s3;

fn atlas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(args)
        .output()
        .expect("run atlas")
}

fn ok(args: &[&str]) -> String {
    let out = atlas(args);
    assert!(
        out.status.success(),
        "atlas {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// One demo store shared by the read-only tests.
fn demo() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = DIR.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("store");
        let out = ok(&[
            "demo",
            p.to_str().unwrap(),
            "--datasets",
            "300",
            "--grids",
            "2",
        ]);
        assert!(out.contains("302 datasets"), "{out}");
        assert!(out.contains("try:"), "{out}");
        (t, p)
    });
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn ls_lists_and_filters() {
    let d = demo();
    let all = ok(&["ls", s(d)]);
    assert_eq!(all.lines().count(), 302);
    assert_eq!(all.lines().next(), Some("argo_6900001_001"));
    let some = ok(&["ls", s(d), "argo_6900002_00?"]);
    assert_eq!(some.lines().count(), 9);
    let with_arrays = ok(&["ls", s(d), "sst_*", "--arrays"]);
    assert!(
        with_arrays.contains("sst: f32 [lat=180, lon=360]"),
        "{with_arrays}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["ls", s(d), "sst_*", "--json"])).unwrap();
    assert_eq!(json, serde_json::json!(["sst_2024_01", "sst_2024_02"]));
}

#[test]
fn info_summarises_store_and_dataset() {
    let d = demo();
    let out = ok(&["info", s(d)]);
    assert!(out.contains("datasets     302"), "{out}");
    assert!(out.contains("TEMP"), "{out}");
    let ds = ok(&["info", s(d), "argo_6900001_001"]);
    assert!(ds.contains("float TEMP(N_LEVELS) ;"), "{ds}");
    assert!(ds.contains("TEMP:units = \"degree_Celsius\" ;"), "{ds}");
    assert!(ds.contains(":cycle_number = 1 ;"), "{ds}");
    let v: serde_json::Value = serde_json::from_str(&ok(&["info", s(d), "--json"])).unwrap();
    assert_eq!(v["datasets"], 302);
    assert_eq!(v["arrays"].as_array().unwrap().len(), 6);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["info", s(d), "sst_2024_02", "--json"])).unwrap();
    assert_eq!(v["arrays"]["sst"]["shape"], serde_json::json!([180, 360]));
    assert_eq!(
        v["arrays"]["sst"]["chunk_shape"],
        serde_json::json!([90, 180])
    );
}

#[test]
fn cat_prints_values_and_json() {
    let d = demo();
    let full: serde_json::Value =
        serde_json::from_str(&ok(&["cat", s(d), "sst_2024_01", "lat", "--json"])).unwrap();
    let lat = full["data"].as_array().unwrap();
    assert_eq!(lat.len(), 180);
    assert_eq!(lat[0], -89.5);
    assert_eq!(lat[179], 89.5);
    let part: serde_json::Value = serde_json::from_str(&ok(&[
        "cat",
        s(d),
        "sst_2024_01",
        "sst",
        "--start",
        "10,20",
        "--count",
        "2,3",
        "--json",
    ]))
    .unwrap();
    assert_eq!(part["shape"], serde_json::json!([2, 3]));
    assert_eq!(part["start"], serde_json::json!([10, 20]));
    assert_eq!(part["data"].as_array().unwrap().len(), 2);
    let text = ok(&[
        "cat",
        s(d),
        "argo_6900001_001",
        "PRES",
        "--start",
        "0",
        "--count",
        "3",
    ]);
    assert_eq!(text.trim(), "[5, 10, 15]");
}

#[test]
fn stats_come_from_stored_statistics() {
    let d = demo();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["stats", s(d), "PRES", "--json"])).unwrap();
    assert_eq!(v["total"]["datasets"], 300);
    assert_eq!(v["total"]["min"], 5.0);
    assert_eq!(v["datasets"][0]["name"], "argo_6900001_001");
    let cells: u64 = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row_count"].as_u64().unwrap())
        .sum();
    assert_eq!(v["total"]["row_count"].as_u64().unwrap(), cells);
    let text = ok(&["stats", s(d), "TEMP"]);
    assert!(text.contains("TOTAL (300 datasets)"), "{text}");
}

#[test]
fn scan_reports_throughput() {
    let out = ok(&["scan", s(demo()), "TEMP"]);
    assert!(out.contains("across 300 datasets"), "{out}");
}

/// Running out of descriptors is never reported as damage: under each
/// `ulimit -n` from 3 up, `atlas verify` of a healthy store either checks it
/// (exit 0) or says NOT CHECKED (exit 2), never DAMAGED (exit 1); some
/// small limit is enough to check it (the descriptor cache is bounded).
/// Limits too small for the dynamic loader to start the binary are skipped.
#[test]
fn verify_out_of_descriptors_is_not_damage() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("store");
    ok(&["demo", s(&d), "--datasets", "60", "--grids", "1", "-q"]);
    let mut not_checked = 0;
    let mut checked_at = None;
    for n in 3..=64 {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" verify \"$1\""))
            .arg(env!("CARGO_BIN_EXE_atlas"))
            .arg(&d)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => {
                assert!(text.starts_with("ok:"), "ulimit -n {n}: {text}");
                checked_at = Some(n);
                break;
            }
            Some(2) => {
                assert!(
                    text.contains("NOT CHECKED") || text.contains("cannot start"),
                    "ulimit -n {n}: {text}"
                );
                assert!(!text.contains("DAMAGED"), "ulimit -n {n}: {text}");
                not_checked += 1;
            }
            // Too few for the dynamic loader to start the binary at all.
            Some(127) if text.contains("error while loading shared libraries") => {}
            other => panic!("ulimit -n {n}: exit {other:?}: {text}"),
        }
    }
    let n = checked_at.expect("verify never ran to the end under ulimit -n 64");
    assert!(
        not_checked > 0,
        "verify passed even under ulimit -n 3: the test did not reach a shortage"
    );
    eprintln!("verify: NOT CHECKED below ulimit -n {n}, ok from {n}");
}

#[test]
fn verify_compact_and_damage_detection() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("store");
    ok(&["demo", s(&d), "--datasets", "50", "--grids", "1", "-q"]);
    assert!(ok(&["verify", s(&d)]).starts_with("ok:"));
    let out = ok(&["compact", s(&d)]);
    assert!(out.contains("compacted"), "{out}");
    // Flip one bit in the middle of a TEMP block.
    // The live layer, from the manifest (the directory is an id, and retired
    // layers stay beside it for the grace period).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("atlas.json")).unwrap()).unwrap();
    let temp = &manifest["arrays"]["TEMP"];
    let layer = d
        .join(temp["dir"].as_str().unwrap())
        .join(temp["layers"][0].as_str().unwrap());
    let mut bytes = std::fs::read(&layer).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&layer, &bytes).unwrap();
    let out = atlas(&["verify", s(&d)]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("DAMAGED"), "{report}");
    assert!(report.contains("checksum"), "{report}");
    // A truncated layer file.
    let psal = &manifest["arrays"]["PSAL"];
    let layer = d
        .join(psal["dir"].as_str().unwrap())
        .join(psal["layers"][0].as_str().unwrap());
    let len = std::fs::metadata(&layer).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&layer)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let out = atlas(&["verify", s(&d)]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("PSAL"), "{report}");
}

#[test]
fn bad_arguments_and_missing_store_fail_clearly() {
    let t = tempfile::tempdir().unwrap();
    let out = atlas(&["ls", s(t.path())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no atlas store"), "{err}");
    let out = atlas(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = atlas(&["cat", s(demo()), "nope", "TEMP"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = atlas(&[
        "cat",
        s(demo()),
        "argo_6900001_001",
        "TEMP",
        "--start",
        "1000",
        "--count",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside"));
    let out = atlas(&["demo", s(demo())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

/// An unknown URL scheme is refused by every command with a clear message, and
/// nothing is created locally (an `s3://` store used to become a directory
/// named `s3:`); S3 without credentials fails naming the variables to set.
#[test]
fn unknown_urls_are_refused_not_created_locally() {
    let t = tempfile::tempdir().unwrap();
    let nc = t.path().join("x.nc");
    std::fs::write(&nc, b"not read").unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["import", "ftp://host/store", s(&nc)],
        vec!["demo", "weird+x://bucket/demo"],
        vec!["ls", "http://host/store"],
        vec!["info", "gcs://bucket/store"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_atlas"))
            .args(&args)
            .current_dir(t.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("URL scheme") || err.contains("not available in this build"),
            "{args:?}: {err}"
        );
    }
    // S3 with no credentials anywhere: a clear error naming the variables.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atlas"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(["import", "s3://bucket/store", s(&nc)])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    let entries: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from("x.nc")],
        "nothing created"
    );
    // file:// URLs are local stores.
    let url = format!("file://{}", demo().display());
    let out = ok(&["ls", &url, "argo_6900001_00*"]);
    assert!(out.contains("argo_6900001_001"), "{out}");
}
