//! `atlas-bench`: whole-workload benchmarks, run by `cargo xtask bench`.
//!
//! Each workload builds deterministic, realistic data, checks every value it
//! reads against the generator (nothing is timed on wrong data), reports the
//! median of several runs with the min–max spread, and appends the figures to
//! a JSON results file.
//!
//! `atlas-bench --help` lists the options and workloads; a mistake on the
//! command line is one line on stderr and exit 2.

mod args;
mod child;
mod compare;
mod data;
mod history;
#[cfg(feature = "netcdf4")]
mod large;
mod limits;
mod netcdf;
mod objects;
mod peers;
mod query;
mod tiles;
mod workloads;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{json, Value};

/// Summary of repeated timings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Median.
    pub median: Duration,
    /// Fastest run.
    pub min: Duration,
    /// Slowest run.
    pub max: Duration,
}

impl Timing {
    /// Runs `f` `runs` times (after one warm-up unless `warm` is false).
    pub fn measure(runs: usize, warm: bool, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
        if warm {
            f()?;
        }
        let mut v = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed());
        }
        Ok(Timing::from_samples(v))
    }

    /// Summary of samples taken elsewhere (e.g. alternating runs of several systems).
    pub fn from_samples(mut v: Vec<Duration>) -> Timing {
        assert!(!v.is_empty(), "no samples");
        v.sort();
        Timing {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    /// Seconds of the median.
    pub fn secs(&self) -> f64 {
        self.median.as_secs_f64()
    }

    /// `12.3 ms (11.9–13.0)`.
    pub fn show(&self) -> String {
        format!(
            "{} ({}–{})",
            fmt_dur(self.median),
            fmt_dur(self.min),
            fmt_dur(self.max)
        )
    }

    /// As JSON seconds.
    pub fn json(&self) -> Value {
        json!({"median_s": self.median.as_secs_f64(), "min_s": self.min.as_secs_f64(), "max_s": self.max.as_secs_f64()})
    }
}

/// Human duration.
pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// Peak resident memory of this process in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM:")
}

/// Resident memory of this process now, in bytes (`VmRSS`).
pub fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// A size in kB from `/proc/self/status` (the line starting `key`), in
/// bytes; 0 where there is none.
fn status_bytes(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak-RSS counter (Linux `clear_refs` 5); false if unsupported.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn main() -> ExitCode {
    // The allocator is the `atlas` tool's: linking `atlas_cli` sets it
    // (mimalloc) for this process, so every system in a workload uses it.
    atlas_cli::tune_allocator();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // A measurement in a process of its own (see `child`).
    if argv.first().is_some_and(|a| a == "__child") {
        return match child::main(&argv[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let names: Vec<&str> = workloads::ALL.iter().map(|(name, _)| *name).collect();
    let opts = match args::parse(&argv, &names) {
        Ok(args::Parsed::Run(opts)) => opts,
        Ok(args::Parsed::Help) => {
            // A closed stdout (`atlas-bench --help | head -1`) is no failure.
            let _ =
                std::io::Write::write_all(&mut std::io::stdout(), args::usage(&names).as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e} (see `atlas-bench --help`)");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        // `{:#}`, not `{:?}`: one line of causes, never a backtrace.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the selected workloads and writes the results file.
fn run(opts: &args::Options) -> Result<()> {
    let full = opts.full;
    let quick = !full;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = serde_json::Map::new();
    results.insert("mode".into(), json!(if full { "full" } else { "quick" }));
    for (name, f) in workloads::ALL {
        if !opts.workloads.is_empty() && !opts.workloads.iter().any(|s| s == name) {
            continue;
        }
        eprintln!("== {name}");
        let t = Instant::now();
        let v = rt.block_on(f(quick))?;
        eprintln!("   ({name} took {:.1} s)", t.elapsed().as_secs_f64());
        results.insert((*name).to_owned(), v);
    }
    let summary = compare::summary(&results);
    if !summary.is_null() {
        results.insert("summary".into(), summary);
    }
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &opts.out,
        serde_json::to_string_pretty(&Value::Object(results))?,
    )?;
    eprintln!("results written to {}", opts.out.display());
    Ok(())
}
