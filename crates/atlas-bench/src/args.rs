//! The command line of `atlas-bench`, parsed without side effects.

use std::path::PathBuf;

/// Where the results go unless `--out` says otherwise.
pub const DEFAULT_OUT: &str = "target/bench-results.json";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `--help` or `-h`: print [`usage`] and succeed.
    Help,
    /// Run the benchmarks.
    Run(Options),
}

/// The options of a run.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// `--full` (the default is `--quick`).
    pub full: bool,
    /// The results file.
    pub out: PathBuf,
    /// Only these workloads (empty: all).
    pub workloads: Vec<String>,
}

/// The usage text, listing the `workloads`.
pub fn usage(workloads: &[&str]) -> String {
    format!(
        "\
Whole-workload benchmarks of ATLAS (SPEC §6); `cargo xtask bench` runs them.

Usage: atlas-bench [--quick | --full] [--out PATH] [WORKLOAD...]

Arguments:
  [WORKLOAD...]  Only these workloads (default: all):
                 {}

Options:
      --quick     Small sizes, about a minute (the default)
      --full      Adds the 1,000,000-dataset store; peaks at ~14 GB of RSS
      --out PATH  Results file (default: {DEFAULT_OUT})
  -h, --help      Print this text
",
        workloads.join(", ")
    )
}

/// Parses the arguments after the program name; `workloads` are the names a
/// positional argument may take. The error is one line.
pub fn parse(args: &[String], workloads: &[&str]) -> Result<Parsed, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Parsed::Help);
    }
    let (mut quick, mut full) = (false, false);
    let mut out = None;
    let mut selected = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(path) = a.strip_prefix("--out=") {
            if path.is_empty() {
                return Err("--out needs a path".to_owned());
            }
            out = Some(PathBuf::from(path));
            continue;
        }
        match a.as_str() {
            "--quick" => quick = true,
            "--full" => full = true,
            "--out" => match it.next() {
                Some(path) if !path.starts_with('-') => out = Some(PathBuf::from(path)),
                _ => return Err("--out needs a path".to_owned()),
            },
            w if workloads.contains(&w) => selected.push(w.to_owned()),
            "cmip6" => {
                return Err("the cmip6 workload needs libnetcdf: build with \
                     `--features netcdf4` (or `peers`)"
                    .to_owned())
            }
            w if !w.starts_with('-') => {
                return Err(format!(
                    "no workload {w:?}; workloads: {}",
                    workloads.join(", ")
                ))
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if quick && full {
        return Err("--quick and --full exclude each other".to_owned());
    }
    Ok(Parsed::Run(Options {
        full,
        out: out.unwrap_or_else(|| PathBuf::from(DEFAULT_OUT)),
        workloads: selected,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOADS: [&str; 3] = ["compact", "scale", "w9_import"];

    fn parse_str(line: &str) -> Result<Parsed, String> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args, &WORKLOADS)
    }

    #[test]
    fn help_wins_anywhere() {
        for line in [
            "--help",
            "-h",
            "--quick -h",
            "scale --help",
            "--frobnicate --help",
        ] {
            assert_eq!(parse_str(line), Ok(Parsed::Help), "{line}");
        }
        let text = usage(&WORKLOADS);
        assert!(text.contains("Usage: atlas-bench"), "{text}");
        assert!(text.contains("compact, scale, w9_import"), "{text}");
    }

    #[test]
    fn options_and_workloads() {
        assert_eq!(
            parse_str(""),
            Ok(Parsed::Run(Options {
                full: false,
                out: PathBuf::from(DEFAULT_OUT),
                workloads: vec![],
            }))
        );
        assert_eq!(
            parse_str("--full --out r.json scale compact"),
            Ok(Parsed::Run(Options {
                full: true,
                out: PathBuf::from("r.json"),
                workloads: vec!["scale".into(), "compact".into()],
            }))
        );
        assert_eq!(
            parse_str("--quick --out=x/r.json"),
            Ok(Parsed::Run(Options {
                full: false,
                out: PathBuf::from("x/r.json"),
                workloads: vec![],
            }))
        );
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        for (line, expected) in [
            ("--frobnicate", "unknown option --frobnicate"),
            ("-x", "unknown option -x"),
            (
                "nosuch",
                "no workload \"nosuch\"; workloads: compact, scale, w9_import",
            ),
            ("--out", "--out needs a path"),
            ("--out --full", "--out needs a path"),
            ("--out=", "--out needs a path"),
            ("--quick --full", "--quick and --full exclude each other"),
        ] {
            let e = parse_str(line).expect_err(line);
            assert!(e.contains(expected), "{line}: {e}");
            assert!(!e.contains('\n'), "{line}: {e}");
        }
    }
}
