//! Readers of an old generation in one process while another process
//! flushes, compacts and collects garbage (no grace period): the reader
//! holding the generation reads identical values throughout; a reader
//! opening it again and again gets it whole or `GenerationExpired`, never a
//! damaged read.
//!
//! The writer is this test binary re-invoked running only [`writer_main`]
//! (a no-op unless [`WRITER_ENV`] names the store).

use std::path::Path;
use std::process::{Command, Stdio};

use atlas::{At, Atlas, Error, Policy, StoreConfig};

use crate::runtime;

/// Set in the writer process's environment to the store directory.
const WRITER_ENV: &str = "ATLAS_HISTORY_WRITER";
/// Rounds of flush (+ compact, + gc) the writer makes.
const ROUNDS: u32 = 40;

async fn put(store: &Atlas, name: &str, v: f32) {
    let ds = if store.dataset_exists(name).unwrap() {
        store.open_dataset(name).await.unwrap()
    } else {
        let ds = store.create_dataset(name).await.unwrap();
        ds.define_array::<f32>("TEMP", vec!["N".into()], vec![64], Some(vec![16]), None)
            .await
            .unwrap();
        ds
    };
    let a = ndarray::Array1::from_iter((0..64).map(|i| v + i as f32)).into_dyn();
    ds.write_array("TEMP", vec![], a.view()).await.unwrap();
}

/// Every dataset's TEMP values, in order.
async fn read_all(store: &Atlas) -> atlas::Result<Vec<(String, Vec<f32>)>> {
    let mut out = Vec::new();
    for name in store.list_datasets()? {
        let a = store
            .open_dataset(&name)
            .await?
            .read_array::<f32>("TEMP", vec![], vec![])
            .await?
            .unwrap();
        out.push((name, a.iter().copied().collect()));
    }
    Ok(out)
}

/// The writer process: flushes, compacts and collects garbage.
#[test]
fn writer_main() {
    let Some(store) = std::env::var_os(WRITER_ENV) else {
        return;
    };
    runtime().block_on(async {
        let s = Atlas::open_path(Path::new(&store)).await.unwrap();
        for round in 0..ROUNDS {
            put(&s, "a", 1000.0 * (round + 1) as f32).await;
            put(&s, &format!("n{round}"), round as f32).await;
            s.flush().await.unwrap();
            if round % 4 == 0 {
                s.compact().await.unwrap();
            }
            s.gc(false).await.unwrap();
        }
    });
}

#[test]
fn readers_of_an_old_generation_while_another_process_collects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rt = runtime();
    let (generation, want) = rt.block_on(async {
        let config = StoreConfig {
            policy: Policy {
                gc_grace_secs: 0,
                keep_generations: 3,
                ..Policy::default()
            },
            ..StoreConfig::default()
        };
        let s = Atlas::create_path(&store, config).await.unwrap();
        put(&s, "a", 1.0).await;
        put(&s, "b", 2.0).await;
        s.flush().await.unwrap();
        (s.generation(), read_all(&s).await.unwrap())
    });
    let held = rt
        .block_on(Atlas::open_path_at(&store, At::Generation(generation)))
        .unwrap();
    assert_eq!(rt.block_on(read_all(&held)).unwrap(), want);

    let mut writer = Command::new(std::env::current_exe().unwrap())
        .args([
            "history_procs::writer_main",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, &store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut opened, mut expired, mut rounds) = (0u32, 0u32, 0u32);
    loop {
        let done = writer.try_wait().unwrap();
        rounds += 1;
        assert_eq!(
            rt.block_on(read_all(&held)).unwrap(),
            want,
            "the held reader, round {rounds}"
        );
        match rt.block_on(Atlas::open_path_at(&store, At::Generation(generation))) {
            Ok(r) => match rt.block_on(read_all(&r)) {
                Ok(got) => {
                    assert_eq!(got, want, "a reopened reader, round {rounds}");
                    assert_eq!(expired, 0, "readable again after it expired");
                    opened += 1;
                }
                // Opened just before gc deleted its files: only ever a
                // missing file (never damaged bytes), and only once expired.
                Err(e) => {
                    assert_eq!(e.kind(), atlas::ErrorKind::NotFound, "round {rounds}: {e}");
                    let again =
                        rt.block_on(Atlas::open_path_at(&store, At::Generation(generation)));
                    assert!(
                        matches!(again, Err(Error::GenerationExpired { .. })),
                        "round {rounds}: {e}, then {again:?}"
                    );
                    expired += 1;
                }
            },
            Err(Error::GenerationExpired { .. }) => expired += 1,
            Err(e) => panic!("round {rounds}: {e} ({e:?})"),
        }
        if let Some(status) = done {
            let mut err = String::new();
            if let Some(mut e) = writer.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).ok();
            }
            assert!(status.success(), "the writer failed: {err}");
            break;
        }
    }
    assert!(expired > 0, "the generation never expired ({opened} opens)");
    eprintln!("{rounds} rounds: {opened} opened the old generation, {expired} found it expired");
}
