//! Every command that prints ends quietly when its stdout pipe is closed, as
//! `ls` and `cat` do (`atlas stats STORE TEMP --json | head -c 10`).

use std::io::Read;
use std::process::{Command, Stdio};

use super::{demo, ok, s};

/// Runs `atlas ARGS` with stdout on a pipe whose reading end is closed after
/// `n_read` bytes (0: before the command writes anything, so its first write
/// fails), and asserts that it exits 0 with nothing on stderr.
fn ends_quietly(args: &[&str], n_read: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run atlas");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut buf = vec![0; n_read];
    let mut got = 0;
    while got < n_read {
        match stdout.read(&mut buf[got..]).expect("read stdout") {
            0 => break,
            n => got += n,
        }
    }
    drop(stdout);
    let out = child.wait_with_output().expect("wait for atlas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "atlas {args:?} with stdout closed after {n_read} bytes wrote to stderr: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "atlas {args:?} with stdout closed after {n_read} bytes: {}",
        out.status
    );
}

/// Both ways a reader goes away: before the first byte, and like `head -c 10`.
fn ends_quietly_both_ways(args: &[&str]) {
    ends_quietly(args, 0);
    ends_quietly(args, 10);
}

#[test]
fn read_only_commands_end_quietly_on_a_closed_pipe() {
    let d = s(demo());
    let commands: &[&[&str]] = &[
        &["ls", d],
        &["ls", d, "argo_*"],
        &["ls", d, "--arrays"],
        &["ls", d, "--json"],
        &["ls", d, "--arrays", "--json"],
        &["info", d],
        &["info", d, "--json"],
        &["info", d, "argo_6900001_001"],
        &["info", d, "argo_6900001_001", "--json"],
        &["cat", d, "argo_6900001_001", "TEMP"],
        &["cat", d, "argo_6900001_001", "TEMP", "--json"],
        // Far more than a pipe holds (64 KiB): the pipe closes mid-stream.
        &["cat", d, "sst_2024_01", "sst"],
        &["cat", d, "sst_2024_01", "sst", "--json"],
        &["stats", d, "TEMP"],
        &["stats", d, "TEMP", "--json"],
        &["scan", d, "TEMP"],
        &["verify", d],
        &["--help"],
        &["--version"],
        &["stats", "--help"],
    ];
    for args in commands {
        ends_quietly_both_ways(args);
    }
}

#[test]
fn writing_commands_end_quietly_on_a_closed_pipe() {
    let t = tempfile::tempdir().unwrap();
    let p = |name: &str| t.path().join(name);
    for (i, n_read) in [0, 10].into_iter().enumerate() {
        let store = p(&format!("demo{i}"));
        ends_quietly(
            &["demo", s(&store), "--datasets", "20", "--grids", "1"],
            n_read,
        );
        ends_quietly(&["compact", s(&store)], n_read);
        // What was printed into the closed pipe was done all the same.
        assert!(ok(&["verify", s(&store)]).starts_with("ok:"));
    }
    let nc = p("one.nc");
    atlas_netcdf::write_file(&super::netcdf::synthetic(7), &nc, None).unwrap();
    for (i, n_read) in [0, 10].into_iter().enumerate() {
        let store = p(&format!("imported{i}"));
        ends_quietly(&["import", s(&store), s(&nc)], n_read);
        let out = p(&format!("out{i}.nc"));
        ends_quietly(&["export", s(&store), "one", s(&out)], n_read);
        assert!(out.exists(), "{}", out.display());
    }
}
