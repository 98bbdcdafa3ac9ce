//! Time travel: history records, `open_at` by generation, tag and time,
//! tags, retention and `gc`, restore and diff; a random model of commits,
//! tags and GC; power loss and faults during history commits and GC; the
//! same scenario on S3; readers of old generations while GC runs; stores
//! written before history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use array_format::storage::{Fault, FaultKind};
use atlas_core::{
    At, Atlas, Attr, Error, ErrorKind, MemoryStorage, OpenOptions, Operation, Policy, Storage,
    StoreConfig,
};

use proptest::prelude::*;

use crate::common::{arr1, copy_dir, create_mem, mem_root, reopen_mem, snapshot, Snapshot};

/// No grace period, and history of the last `keep` generations.
fn keeping(keep: u64) -> StoreConfig {
    StoreConfig {
        policy: Policy {
            gc_grace_secs: 0,
            keep_generations: keep,
            ..Policy::default()
        },
        ..StoreConfig::default()
    }
}

async fn open_at(storage: &MemoryStorage, at: At) -> Result<Atlas, Error> {
    Atlas::open_at_with(
        Arc::new(storage.clone()),
        &mem_root(),
        at,
        OpenOptions::default(),
    )
    .await
}

/// Writes (creating if needed) dataset `name` with a TEMP profile from `seed`.
async fn put(s: &Atlas, name: &str, seed: f32) {
    let ds = if s.dataset_exists(name).unwrap() {
        s.open_dataset(name).await.unwrap()
    } else {
        let ds = s.create_dataset(name).await.unwrap();
        ds.define_array::<f32>("TEMP", vec!["N".into()], vec![4], Some(vec![2]), None)
            .await
            .unwrap();
        ds
    };
    ds.write_array(
        "TEMP",
        vec![],
        arr1(vec![seed, seed + 1.0, seed + 2.0, seed + 3.0]).view(),
    )
    .await
    .unwrap();
    ds.set_attribute("seed", Attr::Float64(f64::from(seed)))
        .unwrap();
}

/// Every generation from `from` to the handle's current one has `snap`.
async fn record(model: &mut BTreeMap<u64, Snapshot>, s: &Atlas, from: u64) {
    let snap = snapshot(s).await;
    for g in from..=s.generation() {
        model.insert(g, snap.clone());
    }
}

#[tokio::test]
async fn history_after_flush_and_compact_opens_every_generation() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(100)).await;
    let mut model = BTreeMap::new();
    record(&mut model, &s, 1).await;
    put(&s, "a", 1.0).await;
    put(&s, "b", 10.0).await;
    s.flush().await.unwrap();
    record(&mut model, &s, 2).await;
    let manifest2 = storage.contents(&mem_root().join("atlas.json")).unwrap();
    put(&s, "a", 2.0).await;
    s.delete_dataset("b").await.unwrap();
    s.flush().await.unwrap();
    record(&mut model, &s, 3).await;
    let before = s.generation();
    s.compact().await.unwrap();
    record(&mut model, &s, before + 1).await;
    assert!(s.generation() > before);

    let log = s.log(usize::MAX).await.unwrap();
    let gens: Vec<u64> = log.iter().map(|e| e.generation).collect();
    assert_eq!(gens, (1..=s.generation()).rev().collect::<Vec<_>>());
    // The history copy is the superseded manifest, byte for byte.
    let copy2 = mem_root().join(atlas_core::HISTORY_DIR).join("2.json");
    assert_eq!(storage.contents(&copy2).unwrap(), manifest2);
    assert_eq!(log.last().unwrap().operation, Some(Operation::Create));
    assert_eq!(log[0].operation, Some(Operation::Compact));
    let g2 = log.iter().find(|e| e.generation == 2).unwrap();
    assert_eq!(g2.operation, Some(Operation::Flush));
    assert_eq!((g2.n_added, g2.n_changed, g2.n_deleted), (2, 0, 0));
    assert!(g2.bytes_written > 0);
    let g3 = log.iter().find(|e| e.generation == 3).unwrap();
    assert_eq!((g3.n_added, g3.n_changed, g3.n_deleted), (0, 1, 1));
    assert_eq!(g3.parent, Some(2));
    for w in log.windows(2) {
        assert!(w[0].time > w[1].time, "commit times increase");
    }
    assert_eq!(s.log(2).await.unwrap().len(), 2);

    for (g, want) in &model {
        let r = open_at(&storage, At::Generation(*g)).await.unwrap();
        assert_eq!(r.generation(), *g);
        assert_eq!(r.opened_at(), Some(*g));
        assert_eq!(&snapshot(&r).await, want, "generation {g}");
    }
    // Reopened from storage, the current state is the newest generation.
    let r = reopen_mem(&storage, "reopen").await;
    assert_eq!(&snapshot(&r).await, model.values().last().unwrap());
}

#[tokio::test]
async fn writes_on_a_past_generation_are_refused() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(10)).await;
    put(&s, "a", 1.0).await;
    s.flush().await.unwrap();
    put(&s, "a", 5.0).await;
    s.flush().await.unwrap();
    let r = open_at(&storage, At::Generation(2)).await.unwrap();
    let ro = |e: Result<_, Error>| matches!(e, Err(Error::ReadOnly { generation: 2, .. }));
    assert!(ro(r.create_dataset("x").await.map(|_| ())));
    assert!(ro(r.delete_dataset("a").await));
    let a = r.open_dataset("a").await.unwrap();
    assert!(ro(a.set_attribute("k", Attr::Int64(1))));
    assert!(ro(a
        .write_array("TEMP", vec![], arr1(vec![0.0f32; 4]).view())
        .await));
    assert!(ro(r.compact().await));
    assert!(ro(r.tag("t", At::Generation(2), None).await.map(|_| ())));
    assert!(ro(r.gc(false).await.map(|_| ())));
    assert!(ro(r.restore(At::Generation(2), None).await.map(|_| ())));
    let e = r.create_dataset("x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    // Reads work, including statistics and cross-dataset reads.
    assert_eq!(
        a.read_array::<f32>("TEMP", vec![], vec![])
            .await
            .unwrap()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0]
    );
    let stats = r.catalog_array_stats("TEMP").await.unwrap();
    assert_eq!(stats.len(), 1);
    // Nothing changed on disk.
    let now = reopen_mem(&storage, "after refused writes").await;
    assert_eq!(now.generation(), 3);
}

#[tokio::test]
async fn errors_are_typed() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(1)).await;
    put(&s, "a", 1.0).await;
    s.flush().await.unwrap();
    put(&s, "a", 2.0).await;
    s.flush().await.unwrap();
    let cur = s.generation();
    assert!(matches!(
        open_at(&storage, At::Generation(cur + 5)).await,
        Err(Error::GenerationNotFound { generation, latest, .. }) if generation == cur + 5 && latest == cur
    ));
    assert!(matches!(
        open_at(&storage, At::Generation(0)).await,
        Err(Error::GenerationNotFound { .. })
    ));
    // Keeping one generation: the older ones have expired.
    let e = open_at(&storage, At::Generation(cur - 1))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::GenerationExpired { generation, oldest_retained, .. } if generation == cur - 1 && oldest_retained == cur),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(matches!(
        open_at(&storage, At::Tag("nope".into())).await,
        Err(Error::TagNotFound { name, .. }) if name == "nope"
    ));
    let later = SystemTime::now() + Duration::from_hours(1);
    let e = open_at(&storage, At::Time(later)).await.unwrap_err();
    assert!(matches!(e, Error::TimeAfterLatest { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(matches!(
        open_at(&storage, At::Time(SystemTime::UNIX_EPOCH)).await,
        Err(Error::GenerationExpired { .. })
    ));
    // Tag names: invalid, taken, deleted (never reused).
    assert!(matches!(
        s.tag("", At::Generation(cur), None).await,
        Err(Error::InvalidName { kind: "tag", .. })
    ));
    s.tag("v1", At::Generation(cur), Some("first"))
        .await
        .unwrap();
    assert!(matches!(
        s.tag("v1", At::Generation(cur + 1), None).await,
        Err(Error::TagExists { deleted: false, .. })
    ));
    s.untag("v1").await.unwrap();
    assert!(matches!(
        s.tag("v1", At::Generation(s.generation()), None).await,
        Err(Error::TagExists { deleted: true, .. })
    ));
    assert!(matches!(
        s.untag("v1").await,
        Err(Error::TagNotFound { .. })
    ));
    // Tagging an expired generation is refused with the typed error.
    assert!(matches!(
        s.tag("old", At::Generation(2), None).await,
        Err(Error::GenerationExpired { .. })
    ));
}

#[tokio::test]
async fn open_at_time_picks_the_newest_generation_at_or_before_it() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(50)).await;
    let mut model = BTreeMap::new();
    record(&mut model, &s, 1).await;
    for i in 0..4u8 {
        let from = s.generation() + 1;
        put(&s, "a", f32::from(i)).await;
        s.flush().await.unwrap();
        record(&mut model, &s, from).await;
    }
    let log = s.log(usize::MAX).await.unwrap();
    for e in &log {
        let t = e.time.unwrap();
        let r = open_at(&storage, At::Time(t)).await.unwrap();
        assert_eq!(r.generation(), e.generation);
        assert_eq!(snapshot(&r).await, model[&e.generation]);
        // Just before the next commit's time still gives this generation.
        let next = log.iter().find(|n| n.generation == e.generation + 1);
        if let Some(n) = next {
            let just_before = n.time.unwrap() - Duration::from_millis(1);
            let r = open_at(&storage, At::Time(just_before)).await.unwrap();
            assert_eq!(r.generation(), e.generation);
        }
    }
    // Before the store existed.
    let first = log.last().unwrap().time.unwrap();
    assert!(matches!(
        open_at(&storage, At::Time(first - Duration::from_millis(1))).await,
        Err(Error::GenerationNotFound { generation: 0, .. })
    ));
}

/// Layer and run files present in the store (not history copies, not the
/// manifest).
fn data_files(storage: &MemoryStorage) -> Vec<PathBuf> {
    storage
        .files()
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".af") || n.ends_with(".run")
        })
        .collect()
}

fn history_copies(storage: &MemoryStorage) -> Vec<u64> {
    let dir = mem_root().join(atlas_core::HISTORY_DIR);
    let mut out: Vec<u64> = storage
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(dir.as_path()))
        // Numbered copies; not the retired list's side files and chunks.
        .filter_map(|p| p.file_stem()?.to_string_lossy().parse::<u64>().ok())
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test]
async fn tags_survive_gc_and_untag_then_gc_expires() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(1)).await;
    put(&s, "a", 1.0).await;
    put(&s, "b", 2.0).await;
    s.flush().await.unwrap();
    let tagged = s.generation();
    let want = snapshot(&s).await;
    assert_eq!(
        s.tag("paper", At::Generation(tagged), Some("as published"))
            .await
            .unwrap(),
        tagged
    );
    for i in 0..3u8 {
        put(&s, "a", 10.0 + f32::from(i)).await;
        s.delete_dataset("b").await.ok();
        s.flush().await.unwrap();
    }
    s.compact().await.unwrap();
    let report = s.gc(false).await.unwrap();
    assert_eq!(report.oldest_retained, tagged);
    let r = open_at(&storage, At::Tag("paper".into())).await.unwrap();
    assert_eq!(r.generation(), tagged);
    assert_eq!(snapshot(&r).await, want);
    let tags = s.tags();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].message.as_deref(), Some("as published"));
    assert_eq!(history_copies(&storage), [tagged]);
    // The log lists the current generation and the tagged one.
    let log = s.log(usize::MAX).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].tags, ["paper"]);
    drop(r);

    let files_with_tag = data_files(&storage).len();
    s.untag("paper").await.unwrap();
    // Keeping one generation, the untag commit itself expires the tagged
    // one (its history copy and files); gc finds the rest.
    s.gc(false).await.unwrap();
    assert!(history_copies(&storage).is_empty());
    assert!(data_files(&storage).len() < files_with_tag);
    assert!(matches!(
        open_at(&storage, At::Generation(tagged)).await,
        Err(Error::GenerationExpired { .. })
    ));
    // Idempotent: a second gc finds nothing.
    let again = s.gc(false).await.unwrap();
    assert!(
        again.deleted_files.is_empty() && again.commit.is_none(),
        "{again:?}"
    );
    let r = reopen_mem(&storage, "after gc").await;
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
}

#[tokio::test]
async fn gc_expires_by_count_and_dry_run_changes_nothing() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(100)).await;
    let mut model = BTreeMap::new();
    for i in 0..6u8 {
        let from = s.generation() + 1;
        put(&s, &format!("d{i}"), f32::from(i)).await;
        s.flush().await.unwrap();
        record(&mut model, &s, from).await;
    }
    s.set_retention(3, 0).await.unwrap();
    assert_eq!(s.policy().keep_generations, 3);
    let cur = s.generation();
    // The retention commit already applies the count rule.
    assert!(matches!(
        open_at(&storage, At::Generation(cur - 3)).await,
        Err(Error::GenerationExpired { .. })
    ));
    let files = storage.files();
    let dry = s.gc(true).await.unwrap();
    assert_eq!(storage.files(), files, "a dry run deletes nothing");
    assert!(dry.commit.is_none());
    let report = s.gc(false).await.unwrap();
    let cur = s.generation();
    assert_eq!(report.oldest_retained, cur - 2);
    for g in cur - 2..cur {
        let r = open_at(&storage, At::Generation(g)).await.unwrap();
        if let Some(want) = model.get(&g) {
            assert_eq!(&snapshot(&r).await, want);
        }
    }
    assert_eq!(history_copies(&storage), [cur - 2, cur - 1]);
}

/// Found by the crash loop: `gc` with pending changes swept the directory of
/// an array defined since the last commit, and the next flush failed.
#[tokio::test]
async fn gc_keeps_the_pending_changes_of_its_handle() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(2)).await;
    put(&s, "d0", 0.0).await;
    s.flush().await.unwrap();
    let ds = s.create_dataset("d1").await.unwrap();
    ds.define_array::<f32>("PSAL", vec!["N".into()], vec![4], Some(vec![2]), None)
        .await
        .unwrap();
    ds.write_array("PSAL", vec![], arr1(vec![1.0f32, 2.0, 3.0, 4.0]).view())
        .await
        .unwrap();
    s.gc(false).await.unwrap();
    s.flush().await.unwrap();
    let s = reopen_mem(&storage, "after gc and flush").await;
    let ds = s.open_dataset("d1").await.unwrap();
    let got = ds.read_array::<f32>("PSAL", vec![], vec![]).await.unwrap();
    assert_eq!(
        got.expect("written").iter().copied().collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0]
    );
}

#[tokio::test]
async fn restore_and_diff() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(20)).await;
    put(&s, "a", 1.0).await;
    put(&s, "b", 2.0).await;
    put(&s, "c", 3.0).await;
    s.flush().await.unwrap();
    let g1 = s.generation();
    let want = snapshot(&s).await;
    put(&s, "a", 7.0).await;
    s.delete_dataset("b").await.unwrap();
    s.delete_dataset("c").await.unwrap();
    s.create_dataset("c").await.unwrap(); // re-created: a new id
    put(&s, "d", 4.0).await;
    s.flush().await.unwrap();
    s.compact().await.unwrap();
    let g2 = s.generation();

    let d = s
        .diff(At::Generation(g1), At::Generation(g2))
        .await
        .unwrap();
    assert_eq!(d.added, ["d"]);
    assert_eq!(d.changed, ["a", "c"]);
    assert_eq!(d.deleted, ["b"]);
    let same = s
        .diff(At::Generation(g2), At::Generation(g2))
        .await
        .unwrap();
    assert_eq!(same, atlas_core::Diff::default());

    let restored = s.restore(At::Generation(g1), Some("undo")).await.unwrap();
    assert_eq!(restored, g2 + 1);
    assert_eq!(
        snapshot(&s).await,
        want,
        "the handle reads the restored state"
    );
    let r = reopen_mem(&storage, "after restore").await;
    assert_eq!(snapshot(&r).await, want);
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
    let log = s.log(1).await.unwrap();
    assert_eq!(log[0].operation, Some(Operation::Restore));
    assert_eq!(log[0].message.as_deref(), Some("undo"));
    // The restored-over generation is still there; new writes work.
    let r2 = open_at(&storage, At::Generation(g2)).await.unwrap();
    assert!(r2.dataset_exists("d").unwrap());
    put(&s, "e", 9.0).await;
    s.flush().await.unwrap();
    let r = reopen_mem(&storage, "after restore and flush").await;
    assert!(r.dataset_exists("e").unwrap() && r.dataset_exists("b").unwrap());
    assert!(!r.dataset_exists("d").unwrap());
    // Ids are never reused: a dataset made after the restore has a new one.
    let ids: Vec<u64> = r
        .list_datasets_with_ids()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut dedup = ids.clone();
    dedup.dedup();
    assert_eq!(ids, dedup);
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
}

/// A rewrite that keeps every statistic (a permutation of the values) is
/// a change; a rewrite with identical values, and compaction (which copies
/// stored bytes), are not.
#[tokio::test]
async fn diff_sees_rewrites_with_the_same_statistics() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(20)).await;
    put(&s, "a", 1.0).await;
    put(&s, "b", 5.0).await;
    s.flush().await.unwrap();
    let g1 = s.generation();
    let a = s.open_dataset("a").await.unwrap();
    a.write_array("TEMP", vec![], arr1(vec![4.0f32, 3.0, 2.0, 1.0]).view())
        .await
        .unwrap();
    let b = s.open_dataset("b").await.unwrap();
    b.write_array("TEMP", vec![], arr1(vec![5.0f32, 6.0, 7.0, 8.0]).view())
        .await
        .unwrap();
    s.flush().await.unwrap();
    let g2 = s.generation();
    let before = open_at(&storage, At::Generation(g1)).await.unwrap();
    let after = open_at(&storage, At::Generation(g2)).await.unwrap();
    for ds in ["a", "b"] {
        let old = before.open_dataset(ds).await.unwrap();
        let new = after.open_dataset(ds).await.unwrap();
        assert_eq!(
            old.array_stats("TEMP").await.unwrap(),
            new.array_stats("TEMP").await.unwrap(),
            "{ds}: same statistics"
        );
    }
    let d = s
        .diff(At::Generation(g1), At::Generation(g2))
        .await
        .unwrap();
    assert_eq!(
        d.changed,
        ["a"],
        "a permuted, b rewritten with its own values"
    );
    assert!(d.added.is_empty() && d.deleted.is_empty());
    s.compact().await.unwrap();
    let g3 = s.generation();
    assert_ne!(g3, g2);
    let d = s
        .diff(At::Generation(g2), At::Generation(g3))
        .await
        .unwrap();
    assert_eq!(d, atlas_core::Diff::default(), "compaction changes no data");
    let d = s
        .diff(At::Generation(g1), At::Generation(g3))
        .await
        .unwrap();
    assert_eq!(d.changed, ["a"]);
}

/// One step of the history model.
#[derive(Clone, Debug)]
enum Step {
    /// Write dataset `d{0}` with a profile from `{1}`, flush.
    Put(u8, u8),
    /// Delete dataset `d{0}` if it exists, flush.
    Delete(u8),
    Compact,
    /// Tag the retained generation at this position of the log (modulo).
    Tag(u8),
    /// Remove the oldest live tag (by name).
    Untag,
    /// Keep the newest `1 + {0}` generations.
    Retention(u8),
    Gc,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..5, any::<u8>()).prop_map(|(d, v)| Step::Put(d, v)),
        1 => (0u8..5).prop_map(Step::Delete),
        1 => Just(Step::Compact),
        1 => any::<u8>().prop_map(Step::Tag),
        1 => Just(Step::Untag),
        1 => (0u8..4).prop_map(Step::Retention),
        1 => Just(Step::Gc),
    ]
}

/// Runs `steps` on a fresh store against the model; after every GC (and
/// at the end) every retained generation opens and reads exactly what was
/// committed, expired ones give the typed error, the log lists exactly the
/// retained generations, and no layer is left that no retained generation
/// names.
async fn run_history_model(steps: Vec<Step>) {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(3)).await;
    let mut model: BTreeMap<u64, Snapshot> = BTreeMap::new();
    record(&mut model, &s, 1).await;
    let mut tags: BTreeMap<String, u64> = BTreeMap::new();
    // The operation of the last commit each step made.
    let mut ops: BTreeMap<u64, Operation> = BTreeMap::new();
    let mut n_tags = 0;
    for (i, step) in steps.iter().enumerate() {
        let from = s.generation() + 1;
        let op = match step {
            Step::Put(..) | Step::Delete(_) => Operation::Flush,
            Step::Compact => Operation::Compact,
            Step::Tag(_) => Operation::Tag,
            Step::Untag => Operation::Untag,
            Step::Retention(_) => Operation::Retention,
            Step::Gc => Operation::Gc,
        };
        match step {
            Step::Put(d, v) => {
                put(&s, &format!("d{d}"), f32::from(*v)).await;
                s.flush().await.unwrap();
            }
            Step::Delete(d) => {
                let name = format!("d{d}");
                if s.dataset_exists(&name).unwrap() {
                    s.delete_dataset(&name).await.unwrap();
                    s.flush().await.unwrap();
                }
            }
            Step::Compact => s.compact().await.unwrap(),
            Step::Tag(k) => {
                let log = s.log(usize::MAX).await.unwrap();
                let g = log[usize::from(*k) % log.len()].generation;
                n_tags += 1;
                let name = format!("t{n_tags}");
                s.tag(&name, At::Generation(g), None).await.unwrap();
                tags.insert(name, g);
            }
            Step::Untag => {
                if let Some(name) = tags.keys().next().cloned() {
                    s.untag(&name).await.unwrap();
                    tags.remove(&name);
                }
            }
            Step::Retention(k) => s.set_retention(1 + u64::from(*k), 0).await.unwrap(),
            Step::Gc => {
                s.gc(false).await.unwrap();
                if s.generation() >= from {
                    ops.insert(s.generation(), op);
                }
                record(&mut model, &s, from).await;
                let ctx = format!("step {i} of {steps:?}");
                check_model(&storage, &s, &model, &ops, &tags, &ctx).await;
            }
        }
        if s.generation() >= from {
            ops.insert(s.generation(), op);
            // A flush that leaves an array with too many layers merges them
            // in a second commit (operation `compact`).
            if op == Operation::Flush && s.generation() > from {
                ops.insert(s.generation(), Operation::Compact);
                for g in from..s.generation() {
                    ops.insert(g, Operation::Flush);
                }
            }
            record(&mut model, &s, from).await;
        }
    }
    let from = s.generation() + 1;
    s.gc(false).await.unwrap();
    if s.generation() >= from {
        ops.insert(s.generation(), Operation::Gc);
    }
    record(&mut model, &s, from).await;
    check_model(
        &storage,
        &s,
        &model,
        &ops,
        &tags,
        &format!("end of {steps:?}"),
    )
    .await;
}

/// Found by the model in CI: a compaction with nothing pending that only
/// rewrites the registry's runs as one was logged as a flush.
#[tokio::test]
async fn a_compaction_that_only_merges_registry_runs_is_logged_as_compact() {
    use Step::{Compact, Delete, Gc, Put};
    run_history_model(vec![
        Put(1, 19),
        Put(4, 67),
        Put(3, 100),
        Put(3, 184),
        Put(3, 15),
        Delete(3),
        Put(2, 253),
        Put(2, 106),
        Delete(4),
        Delete(1),
        Put(4, 8),
        Put(0, 120),
        Put(0, 174),
        Put(0, 127),
        Put(2, 124),
        Put(4, 121),
        Put(4, 47),
        Compact,
        Gc,
    ])
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random writes, deletes, flushes, compactions, tags, untags, retention
    /// changes and GC against the model (shrunk to a minimal sequence on
    /// failure).
    #[test]
    fn model_of_commits_tags_and_gc(steps in proptest::collection::vec(step_strategy(), 1..=60)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run_history_model(steps));
    }
}

async fn check_model(
    storage: &MemoryStorage,
    s: &Atlas,
    model: &BTreeMap<u64, Snapshot>,
    ops: &BTreeMap<u64, Operation>,
    tags: &BTreeMap<String, u64>,
    ctx: &str,
) {
    let cur = s.generation();
    let keep = s.policy().keep_generations.max(1);
    let log = s.log(usize::MAX).await.unwrap();
    let logged: Vec<u64> = log.iter().map(|e| e.generation).collect();
    // The log: newest first, each entry's parent the generation before it,
    // commit times increasing with the generation, each step's operation and
    // the tags that point at the entry.
    assert!(
        logged.windows(2).all(|w| w[0] > w[1]),
        "{ctx}: log order {logged:?}"
    );
    for e in &log {
        let g = e.generation;
        assert_eq!(
            e.parent,
            g.checked_sub(1).filter(|p| *p > 0),
            "{ctx}: parent of {g}"
        );
        if let Some(op) = ops.get(&g) {
            assert_eq!(e.operation, Some(*op), "{ctx}: operation of {g}");
        }
        let mut want: Vec<&str> = tags
            .iter()
            .filter(|(_, t)| **t == g)
            .map(|(n, _)| n.as_str())
            .collect();
        want.sort_unstable();
        let mut got: Vec<&str> = e.tags.iter().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, want, "{ctx}: tags of {g}");
    }
    for w in log.windows(2) {
        assert!(
            w[0].time > w[1].time,
            "{ctx}: commit times of {} and {}",
            w[0].generation,
            w[1].generation
        );
    }
    // The current generation and every tagged one are retained; anything
    // else retained is within the policy's window (a window widened later
    // does not bring expired generations back).
    assert!(logged.contains(&cur), "{ctx}: log {logged:?}");
    for g in tags.values() {
        assert!(
            logged.contains(g),
            "{ctx}: tagged {g} not in log {logged:?}"
        );
    }
    for g in &logged {
        assert!(
            *g + keep > cur || tags.values().any(|t| t == g),
            "{ctx}: {g} retained past the window (log {logged:?})"
        );
    }
    let mut named = std::collections::HashSet::new();
    for g in 1..=cur {
        match open_at(storage, At::Generation(g)).await {
            Ok(r) => {
                assert!(
                    logged.contains(&g),
                    "{ctx}: generation {g} opened but is not retained"
                );
                let want = model.get(&g).unwrap_or_else(|| {
                    panic!(
                        "{ctx}: generation {g} is not in the model {:?}",
                        model.keys()
                    )
                });
                assert_eq!(&snapshot(&r).await, want, "{ctx}: generation {g}");
                for a in r.list_arrays() {
                    for l in r.array_layers(&a) {
                        named.insert(l.as_str().to_owned());
                    }
                }
            }
            Err(Error::GenerationExpired { .. }) => {
                assert!(
                    !logged.contains(&g),
                    "{ctx}: retained generation {g} expired"
                );
            }
            Err(e) => panic!("{ctx}: generation {g}: {e}"),
        }
    }
    for (name, g) in tags {
        let r = open_at(storage, At::Tag(name.clone())).await.unwrap();
        assert_eq!(r.generation(), *g, "{ctx}: tag {name}");
    }
    // No layer is left that no retained generation names (grace 0).
    for f in data_files(storage) {
        let n = f.file_name().unwrap().to_string_lossy().to_string();
        if f.extension().is_some_and(|e| e == "af") {
            assert!(
                named.contains(&n),
                "{ctx}: {n} is named by no retained generation"
            );
        }
    }
    let r = reopen_mem(storage, ctx).await;
    assert!(
        atlas_core::verify::verify(&r, |_, _| {})
            .problems
            .is_empty(),
        "{ctx}: verify"
    );
}

/// A reader holding an old generation keeps reading identical data while
/// the writer flushes, compacts and collects garbage (grace 0); a second
/// reader opening that generation in a loop gets it or "expired", never a
/// damaged read.
#[tokio::test]
async fn readers_of_an_old_generation_while_gc_runs() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(2)).await;
    put(&s, "a", 1.0).await;
    put(&s, "b", 2.0).await;
    s.flush().await.unwrap();
    let g = s.generation();
    let want = snapshot(&s).await;
    let held = open_at(&storage, At::Generation(g)).await.unwrap();
    assert_eq!(snapshot(&held).await, want);
    let mut expired_seen = false;
    for i in 0..8u8 {
        put(&s, "a", 20.0 + f32::from(i)).await;
        s.flush().await.unwrap();
        if i % 3 == 0 {
            s.compact().await.unwrap();
        }
        s.gc(false).await.unwrap();
        assert_eq!(snapshot(&held).await, want, "the held reader, round {i}");
        match open_at(&storage, At::Generation(g)).await {
            Ok(r) => {
                assert!(!expired_seen, "expired, then readable again");
                assert_eq!(snapshot(&r).await, want);
            }
            Err(Error::GenerationExpired { .. }) => expired_seen = true,
            Err(e) => panic!("round {i}: {e}"),
        }
    }
    assert!(expired_seen);
}

/// Checks a rebooted store: at `old_gen` or one commit later (required
/// when the operation returned `Ok` with the power on), reading what the
/// model says, every generation its log lists reading what was committed,
/// verifying clean, and taking commits and gc again.
async fn check_after_reboot(
    storage: &MemoryStorage,
    model: &mut BTreeMap<u64, Snapshot>,
    old_gen: u64,
    new_snap: &Snapshot,
    committed_ok: bool,
    ctx: &str,
) {
    let r = reopen_mem(storage, ctx).await;
    let got = r.generation();
    assert!(
        got == old_gen || got == old_gen + 1,
        "{ctx}: generation {got} (was {old_gen})"
    );
    if committed_ok {
        assert_eq!(got, old_gen + 1, "{ctx}: Ok but not durable");
    }
    if got == old_gen + 1 {
        model.insert(got, Snapshot::clone(new_snap));
    }
    assert_eq!(&snapshot(&r).await, &model[&got], "{ctx}: current state");
    for e in r.log(usize::MAX).await.unwrap() {
        let h = open_at(storage, At::Generation(e.generation))
            .await
            .unwrap_or_else(|err| panic!("{ctx}: generation {}: {err}", e.generation));
        assert_eq!(
            &snapshot(&h).await,
            &model[&e.generation],
            "{ctx}: generation {}",
            e.generation
        );
    }
    let report = atlas_core::verify::verify(&r, |_, _| {});
    assert!(report.problems.is_empty(), "{ctx}: {:?}", report.problems);
    put(&r, "after", 1.0).await;
    r.flush()
        .await
        .unwrap_or_else(|e| panic!("{ctx}: flush after: {e}"));
    r.gc(false)
        .await
        .unwrap_or_else(|e| panic!("{ctx}: gc after: {e}"));
}

/// A copy of a store's durable image on a fresh `MemoryStorage`.
fn clone_storage(from: &MemoryStorage) -> MemoryStorage {
    let to = MemoryStorage::new();
    for p in from.files() {
        to.create_dir_all(p.parent().unwrap()).unwrap();
        to.overwrite(&p, from.contents(&p).unwrap());
    }
    to.sync_all();
    to
}

const FAULT_KINDS: [FaultKind; 4] = [
    FaultKind::PowerLoss,
    FaultKind::PowerLossKeepRenames,
    FaultKind::Fail,
    FaultKind::Tear,
];

/// Power loss and failures at every step of a flush that writes a history
/// copy (the superseded generation is retained and tagged) and of a tag
/// commit: the store is at the old or the new state, and every generation
/// its log lists reads what was committed.
#[tokio::test]
async fn faults_during_commits_that_write_history() {
    for kind in FAULT_KINDS {
        for what in ["flush", "tag"] {
            let mut n = 0;
            loop {
                assert!(n < 400, "{what} never completed");
                let ctx = format!("{what}, {kind:?} at op {n}");
                let storage = MemoryStorage::new();
                let s = create_mem(&storage, keeping(3)).await;
                let mut model = BTreeMap::new();
                record(&mut model, &s, 1).await;
                for i in 0..3u8 {
                    let from = s.generation() + 1;
                    put(&s, "a", f32::from(i)).await;
                    put(&s, &format!("n{i}"), f32::from(i)).await;
                    s.flush().await.unwrap();
                    record(&mut model, &s, from).await;
                }
                let from = s.generation() + 1;
                s.tag("keep", At::Generation(2), None).await.unwrap();
                record(&mut model, &s, from).await;
                let old_gen = s.generation();
                if what == "flush" {
                    put(&s, "a", 50.0).await;
                }
                let new_snap = snapshot(&s).await;
                storage.sync_all();
                storage.arm_fault(Fault { nth: n, kind });
                let res = if what == "flush" {
                    s.flush().await
                } else {
                    s.tag("t2", At::Generation(old_gen), None).await.map(|_| ())
                };
                let lost = storage.is_down();
                let reached = storage.ops() > n;
                storage.disarm();
                drop(s);
                storage.power_on();
                check_after_reboot(
                    &storage,
                    &mut model,
                    old_gen,
                    &new_snap,
                    res.is_ok() && !lost,
                    &ctx,
                )
                .await;
                if !reached && !lost {
                    break;
                }
                n += 1;
            }
            eprintln!("{what} with {kind:?}: {n} fault points");
        }
    }
}

/// Power loss and failures at every step of a GC that expires history (a
/// time window), commits, deletes history copies and retired files.
#[tokio::test]
async fn faults_during_gc() {
    // Commits keep everything younger than 1 s; after the sleep, gc expires
    // all but the newest generation (time only moves forward: no race).
    let storage = MemoryStorage::new();
    let config = StoreConfig {
        policy: Policy {
            gc_grace_secs: 0,
            keep_generations: 1,
            keep_secs: 1,
            ..Policy::default()
        },
        ..StoreConfig::default()
    };
    let s = create_mem(&storage, config).await;
    let mut model = BTreeMap::new();
    record(&mut model, &s, 1).await;
    for i in 0..4u8 {
        let from = s.generation() + 1;
        put(&s, "a", f32::from(i)).await;
        put(&s, &format!("n{i}"), f32::from(i)).await;
        s.flush().await.unwrap();
        if i == 2 {
            s.compact().await.unwrap();
        }
        record(&mut model, &s, from).await;
    }
    let from = s.generation() + 1;
    s.tag("keep", At::Generation(3), None).await.unwrap();
    record(&mut model, &s, from).await;
    let old_gen = s.generation();
    let new_snap = snapshot(&s).await;
    drop(s);
    storage.sync_all();
    std::thread::sleep(Duration::from_millis(1100));
    let n_copies = history_copies(&storage).len();
    assert!(n_copies >= 5, "{n_copies}");
    for kind in FAULT_KINDS {
        let mut n = 0;
        loop {
            assert!(n < 400, "gc never completed");
            let ctx = format!("gc, {kind:?} at op {n}");
            let storage = clone_storage(&storage);
            let mut model = model.clone();
            let s = reopen_mem(&storage, &ctx).await;
            storage.reset_ops();
            storage.arm_fault(Fault { nth: n, kind });
            let res = s.gc(false).await;
            let lost = storage.is_down();
            let reached = storage.ops() > n;
            storage.disarm();
            if let Ok(report) = &res {
                assert!(report.commit.is_some(), "{ctx}: {report:?}");
            }
            drop(s);
            storage.power_on();
            check_after_reboot(
                &storage,
                &mut model,
                old_gen,
                &new_snap,
                res.is_ok() && !lost,
                &ctx,
            )
            .await;
            // Only the tagged and the newest generations are left.
            let r = reopen_mem(&storage, &ctx).await;
            let left: Vec<u64> = r
                .log(usize::MAX)
                .await
                .unwrap()
                .iter()
                .map(|e| e.generation)
                .collect();
            assert!(left.contains(&3), "{ctx}: {left:?}");
            assert!(
                left.iter().all(|g| *g == 3 || *g > old_gen),
                "{ctx}: {left:?}"
            );
            if !reached && !lost {
                break;
            }
            n += 1;
        }
        eprintln!("gc with {kind:?}: {n} fault points");
    }
}

/// A store written before history (the golden v2 fixture) opens with no
/// history, and its next commit starts it.
#[tokio::test]
async fn a_store_written_before_history_gains_it_at_the_next_commit() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/registry-v2"),
        tmp.path(),
    );
    let s = Atlas::open_path(tmp.path()).await.unwrap();
    let g0 = s.generation();
    let log = s.log(10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].generation, log[0].operation, log[0].time),
        (g0, None, None)
    );
    assert!(s.tags().is_empty());
    assert!(matches!(
        Atlas::open_path_at(tmp.path(), At::Time(SystemTime::now())).await,
        Err(Error::GenerationExpired { .. })
    ));
    // Restoring the pre-history generation: the registry is upgraded (a
    // commit), after which that generation is no longer retained.
    assert!(matches!(
        s.restore(At::Generation(g0), None).await,
        Err(Error::GenerationExpired { .. })
    ));
    let before = snapshot(&s).await;
    // The first commit upgrades the registry to runs (a flush), then sets
    // the retention.
    s.set_retention(5, 0).await.unwrap();
    let g1 = s.generation();
    assert!(g1 > g0);
    s.open_dataset("sst_2024_01")
        .await
        .unwrap()
        .set_attribute("upgraded", Attr::Bool(true))
        .unwrap();
    s.flush().await.unwrap();
    let log = s.log(10).await.unwrap();
    let gens: Vec<u64> = log.iter().map(|e| e.generation).collect();
    assert_eq!(
        gens,
        (g0 + 1..=g1 + 1).rev().collect::<Vec<_>>(),
        "history starts at the first commit"
    );
    assert!(log
        .iter()
        .all(|e| e.operation.is_some() && e.time.is_some()));
    assert_eq!(log[0].operation, Some(Operation::Flush));
    // The pre-history generation is not retained.
    assert!(matches!(
        Atlas::open_path_at(tmp.path(), At::Generation(g0)).await,
        Err(Error::GenerationExpired { .. })
    ));
    let r = Atlas::open_path_at(tmp.path(), At::Generation(g1))
        .await
        .unwrap();
    assert_eq!(snapshot(&r).await, before);
    let t = Atlas::open_path_at(tmp.path(), At::Time(log[1].time.unwrap()))
        .await
        .unwrap();
    assert_eq!(t.generation(), g1);
    assert!(tmp
        .path()
        .join("atlas.history")
        .join(format!("{g1}.json"))
        .exists());
}

/// The core scenario on S3 (the in-process server): history copies are
/// objects, `open_at` by generation, tag and time, tags survive gc, untag and
/// gc expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_on_s3() {
    let server = atlas_s3test::S3Server::start();
    server.create_bucket("atlas");
    let mut options = atlas_s3test::client_options(&server.endpoint());
    options.push(("atlas_max_retries".into(), "3".into()));
    let (storage, root) = atlas_core::storage_for("s3://atlas/tt", &options).unwrap();
    let s = Atlas::create_with(Arc::clone(&storage), &root, keeping(3))
        .await
        .unwrap();
    let mut model = BTreeMap::new();
    for i in 0..4u8 {
        let from = s.generation() + 1;
        put(&s, "a", f32::from(i)).await;
        put(&s, &format!("n{i}"), f32::from(i)).await;
        s.flush().await.unwrap();
        record(&mut model, &s, from).await;
    }
    let tagged = s.generation() - 2;
    s.tag("paper", At::Generation(tagged), None).await.unwrap();
    record(&mut model, &s, s.generation()).await;
    let open = |at: At| {
        let storage = Arc::clone(&storage);
        let root = root.clone();
        async move { Atlas::open_at_with(storage, &root, at, OpenOptions::default()).await }
    };
    for e in s.log(usize::MAX).await.unwrap() {
        let r = open(At::Generation(e.generation)).await.unwrap();
        assert_eq!(
            snapshot(&r).await,
            model[&e.generation],
            "generation {}",
            e.generation
        );
        let t = open(At::Time(e.time.unwrap())).await.unwrap();
        assert_eq!(t.generation(), e.generation);
    }
    for i in 0..4u8 {
        put(&s, "a", 100.0 + f32::from(i)).await;
        s.flush().await.unwrap();
    }
    s.compact().await.unwrap();
    s.gc(false).await.unwrap();
    let r = open(At::Tag("paper".into())).await.unwrap();
    assert_eq!(snapshot(&r).await, model[&tagged]);
    drop(r);
    s.untag("paper").await.unwrap();
    s.gc(false).await.unwrap();
    assert!(matches!(
        open(At::Generation(tagged)).await,
        Err(Error::GenerationExpired { .. })
    ));
    let copies = storage
        .list_dir(&root.join(atlas_core::HISTORY_DIR))
        .unwrap();
    assert_eq!(copies.len(), 2, "{copies:?}");
    let r = Atlas::open_with(Arc::clone(&storage), &root, OpenOptions::default())
        .await
        .unwrap();
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
}

/// The retired-list side files of `atlas.history/`, by name.
fn retired_files(storage: &MemoryStorage) -> Vec<String> {
    let mut v: Vec<String> = storage
        .list_dir(&mem_root().join("atlas.history"))
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.starts_with("retired-") && !f.starts_with("retired-chunk-"))
        .collect();
    v.sort();
    v
}

/// The current manifest's retired list: the sealed chunks its side file
/// names, the side file's loose entries, and every entry (chunks' and
/// loose), as `dir/file`.
struct RetiredList {
    chunks: Vec<String>,
    chunk_entries: Vec<Vec<String>>,
    loose: Vec<String>,
    all: Vec<String>,
}

fn entry_names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["dir"].as_str().unwrap(),
                r["file"].as_str().unwrap()
            )
        })
        .collect()
}

fn retired_list(storage: &MemoryStorage) -> RetiredList {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&storage.read_all(&p).unwrap()).unwrap()
    };
    let manifest = read(mem_root().join("atlas.json"));
    let Some(name) = manifest["retired_file"].as_str() else {
        // Short lists are inline.
        let loose = match manifest.get("retired") {
            Some(l) => entry_names(l),
            None => Vec::new(),
        };
        return RetiredList {
            chunks: Vec::new(),
            chunk_entries: Vec::new(),
            all: loose.clone(),
            loose,
        };
    };
    let history = mem_root().join("atlas.history");
    let side = read(history.join(name));
    assert_eq!(side["generation"], manifest["generation"]);
    let loose = entry_names(&side["retired"]);
    let mut chunks = Vec::new();
    let mut chunk_entries = Vec::new();
    let mut all = Vec::new();
    for c in side["chunks"].as_array().into_iter().flatten() {
        let file = c["file"].as_str().unwrap().to_owned();
        let entries = entry_names(&read(history.join(&file))["retired"]);
        assert_eq!(c["entries"].as_u64(), Some(entries.len() as u64));
        all.extend(entries.iter().cloned());
        chunk_entries.push(entries);
        chunks.push(file);
    }
    all.extend(loose.iter().cloned());
    RetiredList {
        chunks,
        chunk_entries,
        loose,
        all,
    }
}

/// The retired entries of the current manifest's list, as `dir/file`.
fn retired_entries(storage: &MemoryStorage) -> Vec<String> {
    retired_list(storage).all
}

/// The chunk length the child test runs with (`ATLAS_TEST_RETIRED_CHUNK`).
fn chunk_len_under_test() -> Option<usize> {
    std::env::var("ATLAS_TEST_RETIRED_CHUNK").ok()?.parse().ok()
}

/// Runs `history::sealed_retired_chunks_child` in a child process of this
/// test binary with chunks of 8 entries (the length is fixed per process),
/// unless this process already runs with a set length (then the child test
/// runs here directly).
#[test]
fn sealed_retired_chunks() {
    if chunk_len_under_test().is_some() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "history::sealed_retired_chunks_child"])
        .env("ATLAS_TEST_RETIRED_CHUNK", "8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With every generation retained, the retired list grows with each
/// commit; its protected entries are sealed into immutable chunk files, so
/// a commit rewrites only the loose entries. Chunks survive reopening, the
/// orphan sweep and restores; a restore that makes a sealed file live again
/// dissolves its chunk; shrinking the window dissolves the chunks it
/// reaches and deletes their files with the expired entries.
#[tokio::test]
async fn sealed_retired_chunks_child() {
    let Some(len) = chunk_len_under_test() else {
        return;
    };
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(1000)).await;
    let mut model = BTreeMap::new();
    let exists = |f: &str| storage.exists(&mem_root().join(f)).unwrap();
    for i in 0..80 {
        let from = s.generation() + 1;
        put(&s, &format!("d{}", i % 7), i as f32).await;
        s.flush().await.unwrap();
        record(&mut model, &s, from).await;
        if i % 10 == 9 {
            s.compact().await.unwrap();
            record(&mut model, &s, from).await;
        }
        // Lists that fit in the manifest (32 entries) are never sealed.
        let l = retired_list(&storage);
        assert!(
            l.loose.len() <= (2 * len).max(32),
            "{} loose",
            l.loose.len()
        );
    }
    let l = retired_list(&storage);
    assert!(l.chunks.len() >= 2, "{} chunks", l.chunks.len());
    assert!(l.all.iter().all(|f| exists(f)), "every retired file kept");
    let chunk_bytes = |names: &[String]| -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|c| {
                storage
                    .read_all(&mem_root().join("atlas.history").join(c))
                    .unwrap()
            })
            .collect()
    };
    let before = chunk_bytes(&l.chunks);
    // The next commit names the same chunks, untouched.
    put(&s, "d0", 500.0).await;
    s.flush().await.unwrap();
    record(&mut model, &s, s.generation()).await;
    let l2 = retired_list(&storage);
    assert_eq!(&l2.chunks[..l.chunks.len()], &l.chunks[..]);
    assert_eq!(chunk_bytes(&l.chunks), before);
    assert!(l.all.iter().all(|f| l2.all.contains(f)));
    drop(s);
    // A new writer loads the chunks: its sweep keeps their files and the
    // files they list, its commit carries them forward.
    let w = reopen_mem(&storage, "writer").await;
    put(&w, "d1", 600.0).await;
    w.flush().await.unwrap();
    record(&mut model, &w, w.generation()).await;
    let l3 = retired_list(&storage);
    assert!(l2.chunks.iter().all(|c| l3.chunks.contains(c)));
    assert!(l3.all.iter().all(|f| exists(f)), "a sweep deleted a file");
    for (g, want) in &model {
        let r = open_at(&storage, At::Generation(*g)).await.unwrap();
        assert_eq!(&snapshot(&r).await, want, "generation {g}");
    }
    // Restoring an early generation makes sealed files live again: the
    // chunks holding them dissolve, the others stay.
    let early = *model.keys().nth(3).unwrap();
    w.restore(At::Generation(early), None).await.unwrap();
    record(&mut model, &w, w.generation()).await;
    let l4 = retired_list(&storage);
    let mut dissolved = 0;
    for (c, entries) in l3.chunks.iter().zip(&l3.chunk_entries) {
        let revived = entries.iter().any(|f| !l4.all.contains(f));
        assert_eq!(l4.chunks.contains(c), !revived, "{c}");
        assert_eq!(exists(&format!("atlas.history/{c}")), !revived, "{c}");
        dissolved += usize::from(revived);
    }
    assert!(dissolved > 0, "the restore revived no sealed file");
    assert_eq!(snapshot(&w).await, model[&early]);
    // Shrinking the window dissolves every chunk; the restored files stay
    // live while the expired ones go.
    w.set_retention(2, 0).await.unwrap();
    let report = w.gc(false).await.unwrap();
    assert!(!report.deleted_files.is_empty());
    for c in &l4.chunks {
        assert!(!exists(&format!("atlas.history/{c}")), "{c} kept");
    }
    let manifest =
        String::from_utf8(storage.read_all(&mem_root().join("atlas.json")).unwrap()).unwrap();
    if manifest.contains("\"retired_file\"") {
        assert!(retired_list(&storage).chunks.is_empty());
    }
    drop(w);
    let r = reopen_mem(&storage, "after gc").await;
    assert_eq!(snapshot(&r).await, model[&early]);
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
    let left: Vec<String> = storage
        .list_dir(&mem_root().join("atlas.history"))
        .unwrap()
        .into_iter()
        .filter(|f| f.starts_with("retired-chunk-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Files retired within the grace period outgrow the manifest: the list
/// moves to one side file (the previous one deleted at each commit) that
/// readers never read; a new writer loads it, so its orphan sweep keeps
/// every retired file and its commits carry every entry forward.
#[tokio::test]
async fn a_long_retired_list_lives_in_a_side_file_that_writers_carry_forward() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    for i in 0..60 {
        put(&s, &format!("d{}", i % 7), i as f32).await;
        s.flush().await.unwrap();
    }
    let manifest =
        String::from_utf8(storage.read_all(&mem_root().join("atlas.json")).unwrap()).unwrap();
    assert!(manifest.contains("\"retired_file\""), "{manifest}");
    assert!(!manifest.contains("\"retired\""), "{manifest}");
    assert!(manifest.len() < 4096, "{} bytes", manifest.len());
    assert_eq!(retired_files(&storage).len(), 1, "one side file");
    let before = retired_entries(&storage);
    assert!(before.len() > 32, "{}", before.len());
    let exists = |f: &str| storage.exists(&mem_root().join(f)).unwrap();
    assert!(before.iter().all(|f| exists(f)), "every retired file kept");
    drop(s);
    // A reader opens and reads without the side file.
    let r = reopen_mem(&storage, "reader").await;
    assert_eq!(r.list_datasets().unwrap().len(), 7);
    // A new writer sweeps orphans when it takes the lock: the retired files
    // (live for older readers within the grace period) all stay.
    let w = reopen_mem(&storage, "writer").await;
    put(&w, "d0", 100.0).await;
    w.flush().await.unwrap();
    assert!(
        before.iter().all(|f| exists(f)),
        "a sweep deleted a retired file"
    );
    let after = retired_entries(&storage);
    assert!(
        before.iter().all(|f| after.contains(f)),
        "the commit dropped retired entries"
    );
    assert!(after.len() > before.len());
    assert_eq!(
        retired_files(&storage).len(),
        1,
        "the previous side file deleted"
    );
    // Compaction and a metadata commit (a tag) carry the list too.
    w.compact().await.unwrap();
    w.tag("v1", At::Generation(w.generation()), None)
        .await
        .unwrap();
    let last = retired_entries(&storage);
    assert!(after.iter().all(|f| last.contains(f)));
    assert_eq!(retired_files(&storage).len(), 1);
    let r = reopen_mem(&storage, "after compaction").await;
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
}

/// `gc` lists the store for orphans only when one may exist: a writer that
/// swept when it took the lock (its lock keeps other writers out) and has
/// not failed since skips the listing, so gc costs what it expires; after a
/// failed flush, gc sweeps what may have been left behind.
#[tokio::test]
async fn gc_sweeps_orphans_again_only_after_a_failure() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, keeping(1)).await;
    put(&s, "a", 1.0).await;
    s.flush().await.unwrap();
    // This handle created the store (no sweep at a lock): its first gc
    // sweeps.
    s.gc(false).await.unwrap();
    let dir = s.array_dir("TEMP").unwrap();
    // An unnamed layer file made behind the writer's back (which only a
    // writer that crashed before this one took the lock could have left).
    let stray = dir.join("d-0123456789abcdef0123456789abcdef.af");
    storage.write_new_synced(&stray, b"stray").unwrap();
    s.gc(false).await.unwrap();
    assert!(
        storage.exists(&stray).unwrap(),
        "gc listed the store although nothing failed since the writer's sweep"
    );
    // A flush that fails: gc sweeps again.
    put(&s, "b", 2.0).await;
    storage.reset_ops();
    storage.arm_fault(Fault {
        nth: 0,
        kind: FaultKind::Fail,
    });
    assert!(s.flush().await.is_err());
    storage.disarm();
    s.gc(false).await.unwrap();
    assert!(!storage.exists(&stray).unwrap(), "orphan kept");
    s.flush().await.unwrap();
    assert_eq!(s.list_datasets().unwrap(), ["a", "b"]);
    drop(s);
    let r = reopen_mem(&storage, "after gc").await;
    assert!(atlas_core::verify::verify(&r, |_, _| {})
        .problems
        .is_empty());
}
