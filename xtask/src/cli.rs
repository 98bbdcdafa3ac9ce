//! The command line of `cargo xtask`, parsed without side effects: `--help`
//! and mistakes are answered before anything is built or run.

use std::fmt;

use crate::{DEFAULT_CRASH_KILLS, DEFAULT_FUZZ_SECONDS, FUZZ_TARGETS};

/// `cargo xtask --help`.
pub const USAGE: &str = "\
Project automation for ATLAS.

Usage: cargo xtask <COMMAND> [OPTIONS]

Commands:
  ci           Everything CI runs: format, clippy, tests, docs, crash loop
  bench        The workload benchmarks of SPEC §6 (or the Criterion benches)
  crash        The SIGKILL crash loop in release mode
  fuzz         Every cargo-fuzz target (or the named ones) for a while each
  fuzz-corpus  Regenerate the fuzz seed corpora from real stores
  outside-user Build and run the README quick start as an outside crate would
  help         Print this text, or a command's (`cargo xtask help bench`)

Run `cargo xtask <COMMAND> --help` for a command's options.
";

/// `cargo xtask ci --help`.
pub const CI_USAGE: &str = "\
Run exactly what CI runs: `cargo fmt --check`, clippy with warnings denied
(default and all features), every test (default and all features; the crash
loop with 200 kills, or $ATLAS_CRASH_KILLS), docs with warnings denied, the
Python package (built into .venv by maturin, then its pytest suite, mypy and
mypy.stubtest of its stubs; .venv comes from `bash .ci/setup`), and with ATLAS_CI_FUZZ=1 a 10 s smoke run of every fuzz
target.

Usage: cargo xtask ci

Options:
  -h, --help  Print this text
";

/// `cargo xtask bench --help`.
pub const BENCH_USAGE: &str = "\
Run the whole-workload benchmarks of SPEC §6 (crate atlas-bench, release build
with the peer stores), or with --criterion the per-component Criterion benches.

Usage: cargo xtask bench [--quick | --full] [--out PATH] [WORKLOAD...]
       cargo xtask bench --criterion [--quick]

Arguments:
  [WORKLOAD...]  Only these workloads (default: all; listed by
                 `cargo run -p atlas-bench -- --help`)

Options:
      --quick        Small sizes, about a minute (the default)
      --full         Adds the 1,000,000-dataset store; peaks at ~14 GB of RSS
      --out PATH     Results file (default: target/bench-results.json)
      --criterion    The Criterion benches of array-format instead
  -h, --help         Print this text
";

/// `cargo xtask crash --help`.
pub const CRASH_USAGE: &str = "\
Run the SIGKILL crash loop (tests/it/crash.rs) in release mode.

Usage: cargo xtask crash [--kills N]

Options:
      --kills N  Number of kills (default: 2000)
  -h, --help     Print this text
";

/// `cargo xtask fuzz --help`.
pub const FUZZ_USAGE: &str = "\
Run every cargo-fuzz target of fuzz/ (or the named ones) for N seconds each,
installing cargo-fuzz if missing, and print the executions per target.

Usage: cargo xtask fuzz [--seconds N] [TARGET...]

Arguments:
  [TARGET...]  footer, footer_blocked, block, chunk_cells, layer_file, manifest,
               segment_json, segment_binary, netcdf_classic, query, registry_run

Options:
      --seconds N  Seconds per target (default: 60)
  -h, --help       Print this text
";

/// `cargo xtask fuzz-corpus --help`.
pub const FUZZ_CORPUS_USAGE: &str = "\
Regenerate the seed corpora fuzz/corpus/*/seed-* from real stores.

Usage: cargo xtask fuzz-corpus

Options:
  -h, --help  Print this text
";

/// `cargo xtask outside-user --help`.
pub const OUTSIDE_USER_USAGE: &str = "\
Build and run the README's library quick start the way an outside user does:
a fresh crate in target/outside-user/ depending on `atlas` by path, with
ndarray, tokio and tempfile added by `cargo add` (today's releases). Part of
`cargo xtask ci`.

Usage: cargo xtask outside-user

Options:
  -h, --help  Print this text
";

/// What `cargo xtask` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Task {
    /// Print this usage text on stdout and succeed.
    Help(&'static str),
    /// `cargo xtask ci`.
    Ci,
    /// `cargo xtask outside-user`.
    OutsideUser,
    /// `cargo xtask bench`.
    Bench(Bench),
    /// `cargo xtask crash`.
    Crash {
        /// Number of SIGKILLs.
        kills: u64,
    },
    /// `cargo xtask fuzz`.
    Fuzz {
        /// Seconds per target.
        seconds: u64,
        /// The targets to run (empty: all).
        targets: Vec<String>,
    },
    /// `cargo xtask fuzz-corpus`.
    FuzzCorpus,
}

/// The options of `cargo xtask bench`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Bench {
    /// Run the Criterion benches instead of the workloads.
    pub criterion: bool,
    /// `--quick` was given.
    pub quick: bool,
    /// `--full` was given.
    pub full: bool,
    /// The results file, if not the default.
    pub out: Option<String>,
    /// Only these workloads (empty: all).
    pub workloads: Vec<String>,
}

impl Bench {
    /// The arguments for the `atlas-bench` binary.
    pub fn workload_args(&self) -> Vec<&str> {
        let mut args = Vec::new();
        if self.quick {
            args.push("--quick");
        }
        if self.full {
            args.push("--full");
        }
        if let Some(out) = &self.out {
            args.extend(["--out", out.as_str()]);
        }
        args.extend(self.workloads.iter().map(String::as_str));
        args
    }
}

/// A mistake on the command line, shown as one line.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The command whose usage explains it (`None`: the top level).
    pub command: Option<&'static str>,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.command {
            Some(c) => write!(f, "{c}: {} (see `cargo xtask {c} --help`)", self.message),
            None => write!(f, "{} (see `cargo xtask --help`)", self.message),
        }
    }
}

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Task, UsageError> {
    let Some((command, rest)) = args.split_first() else {
        return Err(UsageError {
            message: "a command is needed: ci, bench, crash, fuzz or fuzz-corpus".to_owned(),
            command: None,
        });
    };
    let top_error = |message: String| UsageError {
        message,
        command: None,
    };
    let (name, usage) = match command.as_str() {
        "-h" | "--help" => return Ok(Task::Help(USAGE)),
        "help" => {
            return match rest {
                [] => Ok(Task::Help(USAGE)),
                [c] => usage_of(c)
                    .map(Task::Help)
                    .ok_or_else(|| top_error(format!("no command {c:?}"))),
                _ => Err(top_error("help takes at most one command".to_owned())),
            }
        }
        c => COMMANDS
            .into_iter()
            .find(|(name, _)| *name == c)
            .ok_or_else(|| top_error(format!("no command {c:?}")))?,
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Task::Help(usage));
    }
    let mut args = Args::new(name, rest);
    match args.command {
        "ci" => {
            args.none()?;
            Ok(Task::Ci)
        }
        "bench" => parse_bench(args),
        "crash" => {
            let mut kills = DEFAULT_CRASH_KILLS;
            while let Some(arg) = args.next()? {
                match arg {
                    "--kills" => kills = args.number()?,
                    _ => return Err(args.unexpected()),
                }
            }
            Ok(Task::Crash { kills })
        }
        "fuzz" => {
            let mut seconds = DEFAULT_FUZZ_SECONDS;
            let mut targets = Vec::new();
            while let Some(arg) = args.next()? {
                match arg {
                    "--seconds" => seconds = args.number()?,
                    t if FUZZ_TARGETS.contains(&t) => targets.push(t.to_owned()),
                    t if !t.starts_with('-') => {
                        return Err(args.error(format!(
                            "no fuzz target {t:?}; targets: {}",
                            FUZZ_TARGETS.join(", ")
                        )))
                    }
                    _ => return Err(args.unexpected()),
                }
            }
            Ok(Task::Fuzz { seconds, targets })
        }
        "outside-user" => {
            args.none()?;
            Ok(Task::OutsideUser)
        }
        _ => {
            args.none()?;
            Ok(Task::FuzzCorpus)
        }
    }
}

/// The commands and their usage texts.
const COMMANDS: [(&str, &str); 6] = [
    ("ci", CI_USAGE),
    ("bench", BENCH_USAGE),
    ("crash", CRASH_USAGE),
    ("fuzz", FUZZ_USAGE),
    ("fuzz-corpus", FUZZ_CORPUS_USAGE),
    ("outside-user", OUTSIDE_USER_USAGE),
];

/// The usage text of `command`.
fn usage_of(command: &str) -> Option<&'static str> {
    COMMANDS
        .into_iter()
        .find(|(c, _)| *c == command)
        .map(|(_, usage)| usage)
}

fn parse_bench(mut args: Args<'_>) -> Result<Task, UsageError> {
    let mut b = Bench::default();
    while let Some(arg) = args.next()? {
        match arg {
            "--criterion" => b.criterion = true,
            "--quick" => b.quick = true,
            "--full" => b.full = true,
            "--out" => b.out = Some(args.value()?.to_owned()),
            w if !w.starts_with('-') => b.workloads.push(w.to_owned()),
            _ => return Err(args.unexpected()),
        }
    }
    if b.quick && b.full {
        return Err(args.error("--quick and --full exclude each other".to_owned()));
    }
    if b.criterion && (b.full || b.out.is_some() || !b.workloads.is_empty()) {
        return Err(
            args.error("--criterion takes only --quick (no --full, --out or workloads)".to_owned())
        );
    }
    Ok(Task::Bench(b))
}

/// The arguments of one command, walked once.
struct Args<'a> {
    command: &'static str,
    rest: std::slice::Iter<'a, String>,
    /// The argument being looked at, without the `=value` of an option.
    current: &'a str,
    /// The `=value` of the option being looked at, until taken.
    inline_value: Option<&'a str>,
}

impl<'a> Args<'a> {
    fn new(command: &'static str, args: &'a [String]) -> Self {
        Args {
            command,
            rest: args.iter(),
            current: "",
            inline_value: None,
        }
    }

    /// The next argument, an option's name (`--out=x` gives `--out`) or a
    /// positional one; an `=value` the previous option did not take is an error.
    fn next(&mut self) -> Result<Option<&'a str>, UsageError> {
        if self.inline_value.is_some() {
            return Err(self.error(format!("{} takes no value", self.current)));
        }
        let Some(arg) = self.rest.next() else {
            return Ok(None);
        };
        self.current = arg;
        if let Some((flag, value)) = arg.split_once('=') {
            if flag.starts_with("--") {
                self.current = flag;
                self.inline_value = Some(value);
            }
        }
        Ok(Some(self.current))
    }

    /// Fails on any argument at all.
    fn none(&mut self) -> Result<(), UsageError> {
        match self.next()? {
            Some(_) => Err(self.unexpected()),
            None => Ok(()),
        }
    }

    /// The value of the current option (`--flag value` or `--flag=value`).
    fn value(&mut self) -> Result<&'a str, UsageError> {
        if let Some(v) = self.inline_value.take() {
            return Ok(v);
        }
        match self.rest.as_slice().first() {
            Some(v) if !v.starts_with('-') => {
                self.rest.next();
                Ok(v)
            }
            _ => Err(self.error(format!("{} needs a value", self.current))),
        }
    }

    /// The value of the current option, a positive whole number.
    fn number(&mut self) -> Result<u64, UsageError> {
        let v = self.value()?;
        match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.error(format!("{} {v}: not a positive whole number", self.current))),
        }
    }

    fn error(&self, message: String) -> UsageError {
        UsageError {
            message,
            command: Some(self.command),
        }
    }

    /// The error for an argument the command does not take.
    fn unexpected(&self) -> UsageError {
        if self.current.starts_with('-') {
            self.error(format!("unknown option {}", self.current))
        } else {
            self.error(format!("unexpected argument {:?}", self.current))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Task, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    fn error_of(line: &str) -> String {
        match parse_str(line) {
            Err(e) => e.to_string(),
            Ok(t) => panic!("`cargo xtask {line}` parsed as {t:?}"),
        }
    }

    #[test]
    fn every_command_answers_help() {
        for (line, usage) in [
            ("--help", USAGE),
            ("-h", USAGE),
            ("help", USAGE),
            ("help bench", BENCH_USAGE),
            ("ci --help", CI_USAGE),
            ("ci -h", CI_USAGE),
            ("bench --help", BENCH_USAGE),
            ("bench -h", BENCH_USAGE),
            ("bench --quick w9_import --help", BENCH_USAGE),
            ("bench --frobnicate -h", BENCH_USAGE),
            ("crash --help", CRASH_USAGE),
            ("crash -h", CRASH_USAGE),
            ("fuzz --help", FUZZ_USAGE),
            ("fuzz -h", FUZZ_USAGE),
            ("fuzz-corpus --help", FUZZ_CORPUS_USAGE),
            ("fuzz-corpus -h", FUZZ_CORPUS_USAGE),
        ] {
            assert_eq!(parse_str(line), Ok(Task::Help(usage)), "{line}");
        }
        for (name, usage) in COMMANDS {
            assert!(usage.contains(&format!("cargo xtask {name}")), "{name}");
            assert!(USAGE.contains(&format!("  {name} ")), "{name}");
        }
        for target in FUZZ_TARGETS {
            assert!(FUZZ_USAGE.contains(target), "{target}");
        }
    }

    #[test]
    fn commands_and_their_options() {
        assert_eq!(parse_str("ci"), Ok(Task::Ci));
        assert_eq!(parse_str("fuzz-corpus"), Ok(Task::FuzzCorpus));
        assert_eq!(
            parse_str("crash"),
            Ok(Task::Crash {
                kills: DEFAULT_CRASH_KILLS
            })
        );
        assert_eq!(parse_str("crash --kills 50"), Ok(Task::Crash { kills: 50 }));
        assert_eq!(parse_str("crash --kills=7"), Ok(Task::Crash { kills: 7 }));
        assert_eq!(
            parse_str("fuzz"),
            Ok(Task::Fuzz {
                seconds: DEFAULT_FUZZ_SECONDS,
                targets: vec![]
            })
        );
        assert_eq!(
            parse_str("fuzz footer --seconds 5 manifest"),
            Ok(Task::Fuzz {
                seconds: 5,
                targets: vec!["footer".into(), "manifest".into()]
            })
        );
        assert_eq!(parse_str("bench"), Ok(Task::Bench(Bench::default())));
        let Ok(Task::Bench(b)) = parse_str("bench --full --out=r.json scale peers") else {
            panic!("bench with options did not parse");
        };
        assert_eq!(
            b.workload_args(),
            ["--full", "--out", "r.json", "scale", "peers"]
        );
        let Ok(Task::Bench(b)) = parse_str("bench --quick --out r.json") else {
            panic!("bench --quick --out did not parse");
        };
        assert_eq!(b.workload_args(), ["--quick", "--out", "r.json"]);
        assert_eq!(
            parse_str("bench --criterion --quick"),
            Ok(Task::Bench(Bench {
                criterion: true,
                quick: true,
                ..Bench::default()
            }))
        );
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        for (line, expected) in [
            ("", "a command is needed"),
            ("frobnicate", "no command \"frobnicate\""),
            ("help frobnicate", "no command \"frobnicate\""),
            ("ci --all", "ci: unknown option --all"),
            ("ci now", "ci: unexpected argument \"now\""),
            ("bench --frobnicate", "bench: unknown option --frobnicate"),
            ("bench --quick --full", "exclude each other"),
            ("bench --criterion scale", "--criterion takes only --quick"),
            ("bench --out", "bench: --out needs a value"),
            ("bench --out --quick", "bench: --out needs a value"),
            ("bench --quick=yes", "bench: --quick takes no value"),
            ("crash --kills", "crash: --kills needs a value"),
            (
                "crash --kills many",
                "--kills many: not a positive whole number",
            ),
            ("crash --kills 0", "--kills 0: not a positive whole number"),
            ("crash 5", "crash: unexpected argument \"5\""),
            (
                "fuzz --seconds 0",
                "--seconds 0: not a positive whole number",
            ),
            ("fuzz nosuch", "no fuzz target \"nosuch\"; targets: footer"),
            ("fuzz --jobs 2", "fuzz: unknown option --jobs"),
            ("fuzz-corpus --out x", "fuzz-corpus: unknown option --out"),
        ] {
            let e = error_of(line);
            assert!(e.contains(expected), "`cargo xtask {line}`: {e}");
            assert!(e.contains("--help`)"), "`cargo xtask {line}`: {e}");
            assert!(!e.contains('\n'), "`cargo xtask {line}`: {e}");
        }
        assert!(error_of("bench --frobnicate").ends_with("(see `cargo xtask bench --help`)"));
    }
}
