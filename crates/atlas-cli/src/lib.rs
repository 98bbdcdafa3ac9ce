//! `atlas`: the command-line tool of the ATLAS store, as a library of two
//! binaries: `atlas` (`src/main.rs`), which links no libnetcdf and so starts
//! in about a millisecond, and `atlas-netcdf4` (`src/bin/atlas-netcdf4.rs`,
//! feature `netcdf4`), the same tool with the NetCDF-4 reader, which `atlas
//! import` hands itself over to (`exec`, same arguments) when a file to
//! import is NetCDF-4/HDF5. Both are installed side by side.
//!
//! Exit codes: 0 success, 1 failure (including damage found by `verify`),
//! 2 bad usage. A reader that closes stdout early (`atlas ls STORE | head`)
//! ends the command quietly with 0, as `ls` does.

// Every write to stdout goes through `output::stdout` (see `output.rs`).
#![deny(clippy::print_stdout)]

/// `println!` through [`output::stdout`]: returns an error instead of
/// panicking when stdout is gone (for example `atlas ls STORE | head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::output::stdout(), $($arg)*)?;
    }};
}

mod cells;
mod demo;
mod history_cmd;
mod netcdf_cmd;
mod ops;
mod output;
mod query_cmd;
mod show;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The tool's allocator (both binaries, and `atlas-bench`, link this
/// library): mimalloc. With it the import of the 3,000 Argo profiles took
/// about a quarter less CPU than with glibc's malloc (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`,
/// mimalloc 3's `mimalloc.h`; `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory before giving it back to the
/// kernel, in milliseconds (its default: 1,000).
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Makes mimalloc keep freed memory for 10 s (`PURGE_DELAY_MS`) before giving it
/// back to the kernel (`MADV_DONTNEED`), after which every reuse faults in
/// zeroed pages: on this project's 2-core VM, a loop of fresh-handle reads
/// of the bench's 2,000 tiles took 79-115 ms per pass with mimalloc's
/// default and 68-88 ms with this one (5 runs of 6 at 68-72); `atlas
/// import` of the 3,000 Argo profiles took the same time either way
/// (docs/BENCHMARKS.md).
/// `MIMALLOC_PURGE_DELAY` (or its old name `MIMALLOC_RESET_DELAY`) in the
/// environment still decides when it is set.
/// Call before other threads start.
#[allow(unsafe_code)]
pub fn tune_allocator() {
    if ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return;
    }
    // SAFETY: `mi_option_set` stores an option's value, and 15 is a valid
    // option; no other thread runs yet, and mimalloc reads the value at
    // each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// ATLAS: one store for thousands to millions of named N-d datasets.
#[derive(Parser, Debug)]
#[command(name = "atlas", version, about, long_about = None)]
struct Cli {
    /// Print no progress bars or follow-up hints.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Read the store as it was at a retained generation: a number, a tag,
    /// or a UTC time (`2026-12-02T07:44:07Z`, `2026-12-02`, `@<ms>`). For
    /// `ls`, `info`, `cat`, `stats`, `scan`, `query`, `export`, `tags`;
    /// for `tag`, the generation to tag.
    #[arg(long, global = true, value_name = "GEN|TAG|TIME")]
    at: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// A store argument: a path, a `file://` URL or an object-store URL
/// (`s3://bucket/prefix`, `gs://…`, `az://…`), kept as given for URLs so
/// `s3://bucket/x` never becomes a local directory named `s3:`. Unknown URL
/// schemes are refused here, before anything runs.
fn store_location(s: &str) -> Result<PathBuf, String> {
    if atlas::ObjectStorage::handles(s) {
        return Ok(PathBuf::from(s));
    }
    atlas::local_path(s).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a realistic sample store: ocean profiles plus gridded fields.
    Demo {
        /// Directory or object-store URL to create the store in (must not hold a store yet).
        #[arg(value_parser = store_location)]
        dir: PathBuf,
        /// Number of ocean-profile datasets.
        #[arg(long, default_value_t = 3000)]
        datasets: usize,
        /// Number of gridded sea-surface-temperature datasets.
        #[arg(long, default_value_t = 12)]
        grids: usize,
    },
    /// List datasets (optionally matching a glob pattern with `*` and `?`).
    Ls {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Only datasets whose name matches this pattern.
        pattern: Option<String>,
        /// Also list each dataset's arrays with dtype and shape.
        #[arg(short, long)]
        arrays: bool,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
    /// Summarise the store, or show one dataset like `ncdump -h`.
    Info {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// A dataset to describe.
        dataset: Option<String>,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the values of one array (or a hyperslab of it).
    Cat {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Dataset name.
        dataset: String,
        /// Array name.
        array: String,
        /// Start of the hyperslab, comma-separated (default: the origin).
        #[arg(long, value_delimiter = ',')]
        start: Vec<u64>,
        /// Extent of the hyperslab, comma-separated (default: to the end).
        #[arg(long, value_delimiter = ',')]
        count: Vec<u64>,
        /// Output JSON (NaN and infinities as null).
        #[arg(long)]
        json: bool,
    },
    /// Per-dataset min/max/null counts of one array and the totals, from stored statistics.
    Stats {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Array name.
        array: String,
        /// Only the datasets matching this query (see `atlas query`).
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
    /// Datasets matching a query over stored statistics and attributes,
    /// e.g. 'TEMP.max > 30 and LATITUDE between -10 and 10 and JULD in 2020'
    /// (docs/query.md). Exit 2 for a query that does not parse or bind.
    Query {
        /// The store directory.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// The query.
        expr: String,
        /// Print only the number of matches.
        #[arg(long)]
        count: bool,
        /// Output JSON.
        #[arg(long)]
        json: bool,
        /// Also print how each term was decided (rows, yes/maybe, chunks decoded, bytes read).
        #[arg(long)]
        explain: bool,
        /// Read these arrays of every match (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "ARRAY,…")]
        read: Vec<String>,
    },
    /// Read one array across every dataset and report the throughput.
    Scan {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Array name.
        array: String,
    },
    /// Merge every array's delta layers into a new base.
    Compact {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
    },
    /// Check every checksum and that the registry and the files agree.
    Verify {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
    },
    /// Import netcdf files (and directories of them, recursively): one dataset
    /// per file. Creates the store if needed; exit 1 if any file failed.
    Import {
        /// The store: a directory or an object-store URL (created if it holds no store yet).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Files and directories to import.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Replace datasets that already exist (default: skip their files).
        #[arg(long)]
        replace: bool,
        /// Dataset name (when importing one file; default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// Prefix for every dataset name.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Decoder threads (default: one per CPU).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Also trim trailing spaces from strings of char variables (default:
        /// only trailing NULs, which keeps export exact).
        #[arg(long)]
        trim_spaces: bool,
        /// Commit after every SIZE MiB of imported files, which bounds memory
        /// (0: one commit for the whole import). An interrupted import keeps
        /// the batches it committed; run it again to import the rest.
        #[arg(long, value_name = "SIZE", default_value_t = 32)]
        batch_mib: u64,
    },
    /// Retained generations, newest first: time, operation, datasets added
    /// (+), changed (~), deleted (-), bytes written, tags, message.
    Log {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// At most this many generations.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
    /// Name a generation (default: the current one; `--at` another) with an
    /// immutable tag that keeps it readable.
    Tag {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// The tag's name (never reused once deleted).
        name: String,
        /// A message.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// List the tags.
    Tags {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tag (its generation may then expire).
    Untag {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// The tag's name.
        name: String,
    },
    /// Datasets added (+), changed (~) and deleted (-) from A to B
    /// (generations, tags or times).
    Diff {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// The older state.
        a: String,
        /// The newer state.
        b: String,
        /// Output JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a new commit whose state is a retained generation's.
    Restore {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// The generation, tag or time to restore.
        #[arg(long, value_name = "GEN|TAG|TIME")]
        to: String,
        /// A message.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Expire history the retention policy no longer keeps and delete files
    /// no retained generation names.
    Gc {
        /// The store.
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Print what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// First set the retention: keep the newest N generations.
        #[arg(long, value_name = "N")]
        keep: Option<u64>,
        /// First set the retention: also keep generations younger than this.
        #[arg(long, value_name = "SECS")]
        keep_secs: Option<u64>,
    },
    /// Export one dataset to a netcdf classic file.
    Export {
        /// The store: a directory or an object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
        #[arg(value_parser = store_location)]
        store: PathBuf,
        /// Dataset name.
        dataset: String,
        /// Output file.
        out: PathBuf,
        /// classic (cdf1), cdf2 (64-bit offset) or cdf5 (default: the imported
        /// file's format, raised to cdf5 only when a type needs it).
        #[arg(long, value_parser = netcdf_cmd::parse_format)]
        format: Option<atlas_netcdf::NcFormat>,
    },
}

/// Threads the runtime runs blocking store calls on: one per CPU, at least
/// two. The commands await store calls one or a few at a time, so more never
/// run at once usefully; tokio's default (up to 512, each kept 10 s after its
/// last task) let a sequential import or demo leave a trail of idle threads,
/// and with glibc every thread that allocates gets a malloc arena of its own
/// whose freed memory stays in the process (peak RSS about twice the heap).
fn blocking_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Runs the tool on the process's arguments. `netcdf4`: the parser of
/// NetCDF-4 files when this binary links libnetcdf (`atlas-netcdf4`), `None`
/// for `atlas` (which execs `atlas-netcdf4` for NetCDF-4 imports).
#[must_use]
pub fn run(netcdf4: Option<atlas_netcdf::Reader>) -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads())
        .enable_all()
        .build()
    {
        Ok(r) => r,
        // Out of descriptors or threads before any work: nothing was
        // checked or changed (exit 2, as for any other resource failure).
        Err(e) => {
            eprintln!("error: cannot start ({e}): nothing was checked or changed");
            return ExitCode::from(2);
        }
    };
    let quiet = cli.quiet;
    if cli.at.is_some()
        && matches!(
            cli.command,
            Command::Demo { .. } | Command::Import { .. } | Command::Verify { .. }
        )
    {
        eprintln!("error: --at applies to reading commands only");
        return ExitCode::from(2);
    }
    history_cmd::set_at(cli.at);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo {
                dir,
                datasets,
                grids,
            } => demo::run(&dir, datasets, grids, quiet).await,
            Command::Ls {
                store,
                pattern,
                arrays,
                json,
            } => show::ls(&store, pattern.as_deref(), arrays, json).await,
            Command::Info {
                store,
                dataset,
                json,
            } => show::info(&store, dataset.as_deref(), json).await,
            Command::Cat {
                store,
                dataset,
                array,
                start,
                count,
                json,
            } => show::cat(&store, &dataset, &array, start, count, json).await,
            Command::Stats {
                store,
                array,
                filter,
                json,
            } => show::stats(&store, &array, filter.as_deref(), json).await,
            Command::Query {
                store,
                expr,
                count,
                json,
                explain,
                read,
            } => {
                let opts = query_cmd::Options {
                    count,
                    json,
                    explain,
                    read,
                };
                query_cmd::query(&store, &expr, opts).await
            }
            Command::Scan { store, array } => ops::scan(&store, &array, quiet).await,
            Command::Compact { store } => ops::compact(&store, quiet).await,
            Command::Verify { store } => ops::verify(&store, quiet).await,
            Command::Import {
                store,
                paths,
                replace,
                name,
                prefix,
                jobs,
                trim_spaces,
                batch_mib,
            } => {
                let opts = netcdf_cmd::Import {
                    replace,
                    name,
                    prefix,
                    jobs,
                    trim_spaces,
                    batch_bytes: batch_mib.saturating_mul(1 << 20),
                };
                netcdf_cmd::import(&store, &paths, opts, netcdf4, quiet).await
            }
            Command::Export {
                store,
                dataset,
                out,
                format,
            } => netcdf_cmd::export(&store, &dataset, &out, format).await,
            Command::Log { store, n, json } => history_cmd::log(&store, n, json).await,
            Command::Tag {
                store,
                name,
                message,
            } => history_cmd::tag(&store, &name, message.as_deref()).await,
            Command::Tags { store, json } => history_cmd::tags(&store, json).await,
            Command::Untag { store, name } => history_cmd::untag(&store, &name).await,
            Command::Diff { store, a, b, json } => history_cmd::diff(&store, &a, &b, json).await,
            Command::Restore { store, to, message } => {
                history_cmd::restore(&store, &to, message.as_deref()).await
            }
            Command::Gc {
                store,
                dry_run,
                keep,
                keep_secs,
            } => history_cmd::gc(&store, dry_run, keep, keep_secs).await,
        }
    });
    // Output still buffered is written here, where its failure is handled
    // like any other write's (std would drop it silently at exit).
    let result = result.and_then(|code| {
        std::io::Write::flush(&mut output::stdout())?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // The reader closed the pipe (`atlas ls STORE | head`): not an error
        // of ours, whatever error the failed write became on its way up.
        Err(_) if output::closed() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
