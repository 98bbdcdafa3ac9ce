//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: exactly what CI runs (format, lints with and without all
//!   features, every test with and without all features, docs with warnings denied).
//! - `cargo xtask bench [--quick|--full] [WORKLOAD…]`: the workloads of SPEC §6
//!   (`atlas-bench`); `cargo xtask bench --criterion` runs the Criterion benches.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn run(desc: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("==> {desc}: {program} {}", args.join(" "));
    let t = Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{desc} failed ({status})");
    }
    eprintln!("    {desc} ok in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn ci() -> Result<()> {
    let t = Instant::now();
    run("format", "cargo", &["fmt", "--all", "--check"], &[])?;
    run(
        "clippy (default features)",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run(
        "clippy (all features)",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    run(
        "tests (default features)",
        "cargo",
        &["test", "--workspace"],
        &[],
    )?;
    run(
        "tests (all features)",
        "cargo",
        &["test", "--workspace", "--all-features"],
        &[],
    )?;
    run(
        "docs",
        "cargo",
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    eprintln!("==> ci passed in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    // `--criterion` runs the per-component Criterion benchmarks instead of the
    // whole workloads of SPEC §6.
    if args.iter().any(|a| a == "--criterion") {
        let mut cargo_args = vec!["bench", "-p", "array-format"];
        if args.iter().any(|a| a == "--quick") {
            cargo_args.extend(["--", "--quick"]);
        }
        return run("criterion benchmarks", "cargo", &cargo_args, &[]);
    }
    let mut cargo_args = vec!["run", "--release", "-p", "atlas-bench", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    run("workload benchmarks", "cargo", &cargo_args, &[])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <ci | bench [--quick|--full|--criterion] [WORKLOAD...]>");
            std::process::exit(2);
        }
    }
}
