//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: exactly what CI runs (format, lints with and without all
//!   features, every test with and without all features, the history tests again
//!   with small retired-list chunks, docs with warnings denied;
//!   the crash loop with 200 kills; with `ATLAS_CI_FUZZ=1`, 10 s per fuzz target).
//! - `cargo xtask bench [--quick|--full] [WORKLOAD…]`: the workloads of SPEC §6
//!   (`atlas-bench`); `cargo xtask bench --criterion` runs the Criterion benches.
//! - `cargo xtask crash [--kills N]`: the SIGKILL crash loop (`tests/it/crash.rs`)
//!   in release mode, `N` kills (default 2000).
//! - `cargo xtask fuzz [--seconds N] [TARGET…]`: every `cargo fuzz` target of
//!   `fuzz/` (or the named ones) for `N` seconds each (default 60), installing
//!   `cargo-fuzz` if missing; prints the executions per target.
//! - `cargo xtask fuzz-corpus`: regenerates the seed corpora `fuzz/corpus/*/seed-*`
//!   from real stores.
//! - `cargo xtask outside-user`: builds and runs the README quick start as an
//!   outside crate (`atlas` by path, ndarray from `cargo add`); part of `ci`.
//!
//! `cargo xtask --help` and `cargo xtask COMMAND --help` (or `-h`) print the
//! usage; a mistake on the command line is one line on stderr and exit 2.

mod cli;
mod outside;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn run(desc: &str, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    run_command(
        desc,
        Command::new(program).args(args).envs(envs.iter().copied()),
    )
}

/// As [`run`], in directory `dir`.
fn run_in(desc: &str, dir: &Path, program: &str, args: &[&str]) -> Result<()> {
    run_command(desc, Command::new(program).args(args).current_dir(dir))
}

fn run_command(desc: &str, cmd: &mut Command) -> Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    eprintln!("==> {desc}: {program} {}", args.join(" "));
    let t = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{desc} failed ({status}; {})", free_disk());
    }
    eprintln!(
        "    {desc} ok in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        free_disk()
    );
    Ok(())
}

/// The free space of the disk holding the current directory, as `df` reports
/// it: CI runs have failed for want of disk, and this line after each step
/// shows which step took it.
fn free_disk() -> String {
    let out = Command::new("df").args(["-Pk", "."]).output();
    let avail_kib = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .nth(1)?
            .split_whitespace()
            .nth(3)?
            .parse::<u64>()
            .ok()
    });
    match avail_kib {
        Some(kib) => format!("disk free {:.1} GiB", kib as f64 / (1u64 << 20) as f64),
        None => "disk free unknown".to_owned(),
    }
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
            // The bench's `peers` feature builds zarrs and atlas-rust (~14 min):
            // product features only here; `cargo xtask bench` builds the peers.
            "--exclude",
            "atlas-bench",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // The crash loop runs 200 kills here (≈ 31 s in debug on the 2-core CI
    // machine, measured); `cargo xtask crash` runs thousands in release mode.
    let kills = std::env::var(CRASH_KILLS_ENV).unwrap_or_else(|_| CI_CRASH_KILLS.to_owned());
    run(
        "tests (default features)",
        "cargo",
        &["test", "--workspace"],
        &[(CRASH_KILLS_ENV, &kills)],
    )?;
    // The history tests again with the retired list in a side file from 3
    // entries on and sealed into chunks of 2: every history scenario (the
    // random model included) then runs through sealing and dissolving.
    run(
        "history tests (small retired-list chunks)",
        "cargo",
        &["test", "-p", "atlas-core", "--test", "it", "history::"],
        &[
            ("ATLAS_TEST_INLINE_RETIRED", "2"),
            ("ATLAS_TEST_RETIRED_CHUNK", "2"),
        ],
    )?;
    // The fault and power-loss tables again with a commit's syncs and its
    // side file on the committing thread, in a fixed order (the path taken
    // when the system refuses a thread): a rename that does not wait for a
    // sync fails them whatever the timing.
    run(
        "fault tests (no commit threads)",
        "cargo",
        &["test", "-p", "atlas-core", "--test", "it", "faults::"],
        &[("ATLAS_TEST_SYNC_LATER", "1")],
    )?;
    run(
        "tests (all features)",
        "cargo",
        &[
            "test",
            "--workspace",
            "--exclude",
            "atlas-bench",
            "--all-features",
        ],
        &[],
    )?;
    run(
        "docs",
        "cargo",
        &[
            "doc",
            "--workspace",
            "--exclude",
            "atlas-bench",
            "--no-deps",
            "--all-features",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    python_tests(&root())?;
    let t_outside = Instant::now();
    outside::run(&root())?;
    eprintln!(
        "    outside-user quick start ok in {:.1} s",
        t_outside.elapsed().as_secs_f64()
    );
    if std::env::var(CI_FUZZ_ENV).is_ok_and(|v| v == "1") {
        // Unoptimised fuzz builds in CI: a cold optimised build of every
        // target took ~17 min; 10 s smoke runs need coverage, not speed.
        fuzz(CI_FUZZ_SECONDS, &[], true)?;
    } else {
        eprintln!("==> fuzz smoke skipped (set {CI_FUZZ_ENV}=1 to run it)");
    }
    eprintln!("==> ci passed in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// The Python package `crates/atlas-python`: builds the extension into the
/// repository's `.venv` (`maturin develop`, in the dev profile: dependencies
/// are optimised there and share the test build's artifacts; a release build
/// added ~15 min to a cold CI run) and runs its pytest suite.
/// pytest's exit code 5 ("no tests collected") is a failure, so a suite that
/// silently stopped collecting cannot pass.
fn python_tests(root: &Path) -> Result<()> {
    let t = Instant::now();
    let bin = root.join(".venv").join("bin");
    let (python, maturin) = (bin.join("python"), bin.join("maturin"));
    if !python.is_file() || !maturin.is_file() {
        bail!(
            "the Python tests need {} with maturin (requirements-ci.txt): run `bash .ci/setup`",
            bin.display()
        );
    }
    let manifest = root.join("crates").join("atlas-python").join("Cargo.toml");
    run(
        "python extension (maturin develop)",
        &maturin.to_string_lossy(),
        &["develop", "--quiet", "-m", &manifest.to_string_lossy()],
        &[],
    )?;
    let tests = root.join("crates").join("atlas-python").join("tests");
    eprintln!("==> python tests: pytest {}", tests.display());
    let status = Command::new(&python)
        .args(["-m", "pytest", &tests.to_string_lossy(), "-q"])
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {}", python.display()))?;
    match status.code() {
        Some(0) => {}
        Some(5) => bail!("python tests: pytest collected no tests (exit 5)"),
        _ => bail!("python tests failed ({status})"),
    }
    // The package's types (mypy, strict enough to catch a wrong stub) and
    // the stubs against the built extension (stubtest).
    let package = root.join("crates").join("atlas-python");
    let python_s = python.to_string_lossy();
    run_in(
        "python types (mypy)",
        &package,
        &python_s,
        &["-m", "mypy", "python/atlas", "benchmarks"],
    )?;
    run_in(
        "python stubs (mypy.stubtest)",
        &package,
        &python_s,
        &[
            "-m",
            "mypy.stubtest",
            "atlas",
            "--allowlist",
            "stubtest-allowlist.txt",
        ],
    )?;
    eprintln!(
        "    python extension build + tests ok in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn bench(b: &cli::Bench) -> Result<()> {
    // `--criterion` runs the per-component Criterion benchmarks instead of the
    // whole workloads of SPEC §6.
    if b.criterion {
        let mut cargo_args = vec!["bench", "-p", "array-format"];
        if b.quick {
            cargo_args.extend(["--", "--quick"]);
        }
        return run("criterion benchmarks", "cargo", &cargo_args, &[]);
    }
    // The workloads time the `atlas` command line too (the binary beside
    // the bench's): build it first.
    run(
        "the atlas CLI (release)",
        "cargo",
        &["build", "--release", "-p", "atlas-cli"],
        &[],
    )?;
    let mut cargo_args = vec![
        "run",
        "--release",
        "-p",
        "atlas-bench",
        "--features",
        "peers",
        "--",
    ];
    cargo_args.extend(b.workload_args());
    run("workload benchmarks", "cargo", &cargo_args, &[])
}

/// The crash test's kill count (read by `tests/it/crash.rs`).
const CRASH_KILLS_ENV: &str = "ATLAS_CRASH_KILLS";
/// Kills in CI (debug build).
const CI_CRASH_KILLS: &str = "200";
/// Kills of `cargo xtask crash` (release build).
const DEFAULT_CRASH_KILLS: u64 = 2000;
/// Set to 1 to make `cargo xtask ci` run the fuzz smoke test (`.ci/run` does).
const CI_FUZZ_ENV: &str = "ATLAS_CI_FUZZ";
/// Seconds per fuzz target in CI.
const CI_FUZZ_SECONDS: u64 = 10;
/// Seconds per fuzz target of `cargo xtask fuzz`.
const DEFAULT_FUZZ_SECONDS: u64 = 60;
/// Every target in `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: [&str; 11] = [
    "footer",
    "footer_blocked",
    "block",
    "chunk_cells",
    "layer_file",
    "manifest",
    "segment_json",
    "segment_binary",
    "netcdf_classic",
    "query",
    "registry_run",
];

/// The workspace root (this crate lives in `ROOT/xtask`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// `cargo xtask crash [--kills N]`.
fn crash(kills: u64) -> Result<()> {
    run(
        &format!("crash loop, {kills} kills (release)"),
        "cargo",
        &[
            "test",
            "--release",
            "-p",
            "atlas-tests",
            // The S3 loop needs object storage; built alone, the tests
            // crate takes `atlas` without its default features (the
            // workspace's dependency line), so nothing else turns it on.
            "--features",
            "atlas/object-store",
            "--test",
            "it",
            "crash",
            "--",
            "--nocapture",
        ],
        &[(CRASH_KILLS_ENV, &kills.to_string())],
    )
}

/// `cargo xtask fuzz-corpus`: the generator test in `tests/it/hostile.rs`,
/// pointed at `fuzz/corpus`.
fn fuzz_corpus() -> Result<()> {
    let corpus = root().join("fuzz").join("corpus").display().to_string();
    run(
        "fuzz seed corpora",
        "cargo",
        &[
            "test",
            "-p",
            "atlas-tests",
            "--test",
            "it",
            "hostile::write_fuzz_seed_corpus",
            "--",
            "--exact",
            "--nocapture",
        ],
        &[("ATLAS_FUZZ_CORPUS", &corpus)],
    )
}

/// Installs `cargo-fuzz` unless `cargo fuzz` already runs.
fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    run(
        "install cargo-fuzz",
        "cargo",
        &["install", "cargo-fuzz", "--locked"],
        &[],
    )
}

/// What one fuzz target's run gave.
struct FuzzOutcome {
    target: &'static str,
    runs: u64,
    seconds: f64,
    /// libFuzzer's final coverage line (`#N DONE cov: … ft: … corp: …`).
    done: String,
    /// The failure, with the tail of libFuzzer's output, if it found one.
    failure: Option<String>,
}

/// Runs one target for `seconds`: new inputs go to `fuzz/target/corpus-work/`
/// (not committed), the committed seeds are read from `fuzz/corpus/TARGET/`.
/// Any crash, timeout (10 s per input), allocation over 256 MiB or RSS over
/// 2 GiB is a failure; its reproducer lands in `fuzz/artifacts/TARGET/`.
fn fuzz_target(target: &'static str, seconds: u64, dev: bool) -> Result<FuzzOutcome> {
    let fuzz_dir = root().join("fuzz");
    let work = fuzz_dir.join("target").join("corpus-work").join(target);
    let seeds = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&seeds)?;
    eprintln!("==> fuzz {target} for {seconds} s");
    let t = Instant::now();
    let mut child = Command::new("cargo")
        .current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target])
        .args(dev.then_some("--dev"))
        .arg(&work)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-timeout=10",
            "-malloc_limit_mb=256",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cargo fuzz")?;
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        lines.push(line?);
    }
    let status = child.wait()?;
    let runs = lines
        .iter()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let done = lines
        .iter()
        .rev()
        .find(|l| l.contains(" DONE ") || l.contains(" cov: "))
        .cloned()
        .unwrap_or_default();
    let failure = (!status.success()).then(|| {
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("{target} failed ({status}):\n{tail}")
    });
    Ok(FuzzOutcome {
        target,
        runs,
        seconds: t.elapsed().as_secs_f64(),
        done,
        failure,
    })
}

/// `cargo xtask fuzz`: builds the targets once (unoptimised with `dev`), runs
/// each, prints executions.
fn fuzz(seconds: u64, only: &[String], dev: bool) -> Result<()> {
    let t = Instant::now();
    ensure_cargo_fuzz()?;
    let targets: Vec<&'static str> = FUZZ_TARGETS
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
        .collect();
    if targets.is_empty() {
        bail!("no such fuzz target; targets: {}", FUZZ_TARGETS.join(", "));
    }
    let fuzz_dir = root().join("fuzz");
    eprintln!(
        "==> fuzz build: cargo fuzz build (in {})",
        fuzz_dir.display()
    );
    let tb = Instant::now();
    let status = Command::new("cargo")
        .current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build"])
        .args(dev.then_some("--dev"))
        .status()
        .context("cannot run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    eprintln!("    fuzz build ok in {:.1} s", tb.elapsed().as_secs_f64());
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(fuzz_target(target, seconds, dev)?);
    }
    eprintln!("==> fuzz results ({seconds} s per target):");
    for o in &outcomes {
        eprintln!(
            "    {:<15} {:>12} runs in {:>5.1} s ({:>9.0}/s){}  {}",
            o.target,
            o.runs,
            o.seconds,
            o.runs as f64 / o.seconds.max(0.001),
            if o.failure.is_some() { "  FAILED" } else { "" },
            o.done.trim()
        );
    }
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.failure.as_ref()).collect();
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("{f}");
        }
        bail!(
            "{} fuzz target(s) failed; reproducers are in fuzz/artifacts/",
            failures.len()
        );
    }
    eprintln!("    fuzz ok in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = match cli::parse(&args) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        cli::Task::Help(usage) => {
            // A closed stdout (`cargo xtask --help | head -1`) is no failure.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), usage.as_bytes());
            return ExitCode::SUCCESS;
        }
        cli::Task::Ci => ci(),
        cli::Task::OutsideUser => outside::run(&root()),
        cli::Task::Bench(b) => bench(&b),
        cli::Task::Crash { kills } => crash(kills),
        cli::Task::Fuzz { seconds, targets } => fuzz(seconds, &targets, false),
        cli::Task::FuzzCorpus => fuzz_corpus(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `{:#}`, not `{:?}`: one line of causes, never a backtrace.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
