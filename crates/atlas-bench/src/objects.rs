//! `object_store`: W2, W3 and W6 on S3 and on Google Cloud Storage (its XML
//! API) over loopback with an injected per-request latency, beside the same
//! workloads on the local filesystem, in one run. The server is `atlas-s3test`
//! (in this process, in memory), so the figures show what the request pattern
//! costs at a given latency, not what a real bucket's bandwidth is.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use atlas::{Atlas, Attr, OpenOptions, Storage, StoreConfig};
use atlas_s3test::{Protocol, S3Server};
use serde_json::{json, Value};

use crate::data::profile;
use crate::fmt_dur;
use crate::workloads::{arr, ARRAYS, LEVELS};

/// The injected latency of every S3 request.
const LATENCY: Duration = Duration::from_millis(20);

async fn ingest(storage: &Arc<dyn Storage>, root: &Path, n: u64) -> Result<()> {
    let store = Atlas::create_with(Arc::clone(storage), root, StoreConfig::default()).await?;
    for i in 0..n {
        let ds = store.create_dataset(&format!("profile_{i:07}")).await?;
        ds.set_attribute("cycle_number", Attr::Int64(i as i64))?;
        for (k, a) in ARRAYS.iter().enumerate() {
            ds.define_array::<f32>(a, vec!["N_LEVELS".into()], vec![LEVELS as u64], None, None)
                .await?;
            ds.write_array(a, vec![0], arr(profile(i * 3 + k as u64, 0, LEVELS)).view())
                .await?;
        }
    }
    store.compact().await?;
    Ok(())
}

struct Figures {
    w2: Duration,
    w3: Duration,
    w6: Duration,
    requests: Option<(usize, usize, usize)>,
}

/// W2 (median of 3 fresh opens + one read), W3 (scan TEMP across every
/// dataset from a fresh handle), W6 (change 1%, flush); with the server, the
/// requests of each.
async fn measure(
    storage: &Arc<dyn Storage>,
    root: &Path,
    n: u64,
    server: Option<&S3Server>,
) -> Result<Figures> {
    let log_len = || server.map_or(0, |s| s.requests().len());
    let probe = format!("profile_{:07}", n / 2);
    let mut w2s = Vec::new();
    let mut w2_requests = 0;
    for _ in 0..3 {
        let before = log_len();
        let t = Instant::now();
        let s = Atlas::open_with(Arc::clone(storage), root, OpenOptions::default()).await?;
        let a = s
            .open_dataset(&probe)
            .await?
            .read_array::<f32>("TEMP", vec![], vec![])
            .await?;
        w2s.push(t.elapsed());
        w2_requests = log_len() - before;
        ensure!(
            a.is_some_and(|a| a.iter().copied().eq(profile((n / 2) * 3, 0, LEVELS))),
            "wrong data"
        );
    }
    w2s.sort();
    let s = Atlas::open_with(Arc::clone(storage), root, OpenOptions::default()).await?;
    let names = s.list_datasets().unwrap();
    let before = log_len();
    let t = Instant::now();
    let mut parts = Vec::with_capacity(names.len());
    for batch in names.chunks(4096) {
        parts.extend(
            s.read_array_across::<f32>("TEMP", batch, vec![], vec![])
                .await?,
        );
    }
    let w3 = t.elapsed();
    let w3_requests = log_len() - before;
    for (i, p) in parts.into_iter().enumerate() {
        let p = p.expect("every dataset has TEMP");
        ensure!(
            p.iter().copied().eq(profile(i as u64 * 3, 0, LEVELS)),
            "wrong scan data"
        );
    }
    drop(s);
    let s = Atlas::open_with(
        Arc::clone(storage),
        root,
        OpenOptions {
            write: true,
            ..OpenOptions::default()
        },
    )
    .await?;
    for i in (0..n).step_by(100) {
        let ds = s.open_dataset(&format!("profile_{i:07}")).await?;
        ds.write_array("TEMP", vec![0], arr(profile(i * 3, 1, LEVELS)).view())
            .await?;
    }
    let before = log_len();
    let t = Instant::now();
    s.flush().await?;
    let w6 = t.elapsed();
    let w6_requests = log_len() - before;
    Ok(Figures {
        w2: w2s[1],
        w3,
        w6,
        requests: server.map(|_| (w2_requests, w3_requests, w6_requests)),
    })
}

/// The workload.
pub async fn workload(quick: bool) -> Result<Value> {
    let n: u64 = if quick { 10_000 } else { 100_000 };
    let dir = tempfile::tempdir()?;
    let local_root: PathBuf = dir.path().join("store");
    let local: Arc<dyn Storage> = Arc::new(atlas::array_format::LocalStorage);
    ingest(&local, &local_root, n).await?;
    let local_fig = measure(&local, &local_root, n, None).await?;

    let mut remote = Vec::new();
    for protocol in [Protocol::S3, Protocol::Gcs] {
        let server = S3Server::start_with(protocol, 0)?;
        server.create_bucket("bench");
        let (url, options) = match protocol {
            Protocol::S3 => (
                "s3://bench/store",
                atlas_s3test::client_options(&server.endpoint()),
            ),
            Protocol::Gcs => (
                "gs://bench/store",
                atlas_s3test::gcs_client_options(&server.endpoint()),
            ),
        };
        let (storage, root) = atlas::storage_for(url, &options)?;
        ingest(&storage, &root, n).await?;
        server.set_latency(LATENCY);
        remote.push(measure(&storage, &root, n, Some(&server)).await?);
    }
    let (s3_fig, gcs_fig) = (&remote[0], &remote[1]);

    println!(
        "{n} datasets; S3 and GCS = in-process server on loopback, {} ms per request",
        LATENCY.as_millis()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "", "local", "S3", "req", "GCS", "req"
    );
    let (r2, r3, r6) = s3_fig.requests.unwrap_or_default();
    let (g2, g3, g6) = gcs_fig.requests.unwrap_or_default();
    for (what, l, s, r, g, gr) in [
        (
            "W2 open + read one array",
            local_fig.w2,
            s3_fig.w2,
            r2,
            gcs_fig.w2,
            g2,
        ),
        (
            "W3 scan TEMP, all datasets",
            local_fig.w3,
            s3_fig.w3,
            r3,
            gcs_fig.w3,
            g3,
        ),
        (
            "W6 flush after 1% change",
            local_fig.w6,
            s3_fig.w6,
            r6,
            gcs_fig.w6,
            g6,
        ),
    ] {
        println!(
            "{what:<28} {:>10} {:>10} {r:>8} {:>10} {gr:>8}",
            fmt_dur(l),
            fmt_dur(s),
            fmt_dur(g)
        );
    }
    Ok(json!({
        "datasets": n,
        "latency_ms": LATENCY.as_millis() as u64,
        "local": {"w2_s": local_fig.w2.as_secs_f64(), "w3_s": local_fig.w3.as_secs_f64(), "w6_s": local_fig.w6.as_secs_f64()},
        "s3": {"w2_s": s3_fig.w2.as_secs_f64(), "w3_s": s3_fig.w3.as_secs_f64(), "w6_s": s3_fig.w6.as_secs_f64(),
               "w2_requests": r2, "w3_requests": r3, "w6_requests": r6},
        "gcs": {"w2_s": gcs_fig.w2.as_secs_f64(), "w3_s": gcs_fig.w3.as_secs_f64(), "w6_s": gcs_fig.w6.as_secs_f64(),
               "w2_requests": g2, "w3_requests": g3, "w6_requests": g6},
    }))
}
