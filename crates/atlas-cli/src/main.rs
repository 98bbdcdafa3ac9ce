//! `atlas`: the command-line tool of the ATLAS store.
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
mod netcdf_cmd;
mod ops;
mod output;
mod query_cmd;
mod show;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ATLAS: one store for thousands to millions of named N-d datasets.
#[derive(Parser, Debug)]
#[command(name = "atlas", version, about, long_about = None)]
struct Cli {
    /// Print no progress bars or follow-up hints.
    #[arg(short, long, global = true)]
    quiet: bool,
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
        /// Decoder threads (default: one per CPU but one).
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// Also trim trailing spaces from strings of char variables (default:
        /// only trailing NULs, which keeps export exact).
        #[arg(long)]
        trim_spaces: bool,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let quiet = cli.quiet;
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
            } => {
                let opts = netcdf_cmd::Import {
                    replace,
                    name,
                    prefix,
                    jobs,
                    trim_spaces,
                };
                netcdf_cmd::import(&store, &paths, opts, quiet).await
            }
            Command::Export {
                store,
                dataset,
                out,
                format,
            } => netcdf_cmd::export(&store, &dataset, &out, format).await,
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
