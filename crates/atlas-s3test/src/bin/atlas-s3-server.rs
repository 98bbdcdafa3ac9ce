//! `atlas-s3-server`: the in-memory S3 test server as a process, for benchmarks and
//! CI scripts.
//!
//! ```text
//! atlas-s3-server [--port P] [--bucket NAME]... [--latency-ms N] [--gcs]
//! ```
//!
//! Prints the endpoint (`http://127.0.0.1:PORT`) as the first line of stdout, then
//! serves until killed. `--port 0` (the default) picks a free port. Requests are
//! signed with access key `atlas-test`, secret `atlas-test-secret`, region
//! `us-east-1`, path-style. With `--gcs` it speaks Google Cloud Storage's XML API
//! instead: point a client at it with `GOOGLE_BASE_URL=<endpoint>`,
//! `GOOGLE_ALLOW_HTTP=true`, `GOOGLE_BEARER_TOKEN=atlas-test-token`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use atlas_s3test::{Protocol, S3Server};

const USAGE: &str = "usage: atlas-s3-server [--port P] [--bucket NAME]... [--latency-ms N] [--gcs]";

/// The command line, parsed.
struct Options {
    port: u16,
    buckets: Vec<String>,
    latency: Duration,
    protocol: Protocol,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        port: 0,
        buckets: Vec::new(),
        latency: Duration::ZERO,
        protocol: Protocol::S3,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => {
                let port = value()?;
                options.port = port.parse().map_err(|_| format!("bad --port {port:?}"))?;
            }
            "--bucket" => {
                let name = value()?;
                if !s3s::path::check_bucket_name(&name) {
                    return Err(format!("bad --bucket {name:?}: not a valid S3 bucket name"));
                }
                options.buckets.push(name);
            }
            "--latency-ms" => {
                let ms = value()?;
                let ms: u64 = ms.parse().map_err(|_| format!("bad --latency-ms {ms:?}"))?;
                options.latency = Duration::from_millis(ms);
            }
            "--gcs" => options.protocol = Protocol::Gcs,
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let server = match S3Server::start_with(options.protocol, options.port) {
        Ok(server) => server,
        Err(err) => {
            eprintln!(
                "atlas-s3-server: cannot listen on 127.0.0.1:{}: {err}",
                options.port
            );
            return ExitCode::FAILURE;
        }
    };
    for bucket in &options.buckets {
        server.create_bucket(bucket);
    }
    server.set_latency(options.latency);
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", server.endpoint())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    // Serve until killed; the server lives on its own thread.
    loop {
        std::thread::park();
    }
}
