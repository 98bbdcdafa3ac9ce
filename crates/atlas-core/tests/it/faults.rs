//! Deterministic fault injection at every mutating storage operation of a
//! flush and of a compaction, with both fault kinds.
//!
//! For n = 0, 1, …: build the same store, arm `Fault { nth: n, kind }`, run the
//! operation. On error: a fresh handle on the same storage must see exactly the
//! previous commit — or, only when the failing handle is poisoned (error after
//! the rename), possibly the new one; and the failing handle must either commit
//! on retry (failure before the rename) or refuse writes with `Poisoned`. Stop
//! once the operation succeeds without reaching the fault.

use array_format::storage::{Fault, FaultKind};
use array_format::Storage;
use atlas_core::verify::verify;
use atlas_core::{Atlas, Attr, Error, FillValue, MemoryStorage, StoreConfig};

use crate::common::{arr, arr1, create_mem, full, reopen_mem, snapshot, strings, Snapshot};

/// Upper bound on the steps of one operation, so a bug cannot loop forever.
const MAX_STEPS: u64 = 500;

/// A committed store with several arrays and datasets; `temp` and `sal` have
/// two layers each so a compaction merges more than one file.
async fn seeded(storage: &MemoryStorage) -> Atlas {
    seeded_with(storage, StoreConfig::default()).await
}

async fn seeded_with(storage: &MemoryStorage, config: StoreConfig) -> Atlas {
    let s = create_mem(storage, config).await;
    for name in ["keep", "gone", "edit"] {
        let ds = s.create_dataset(name).await.unwrap();
        ds.define_array::<f32>(
            "temp",
            strings(&["y", "x"]),
            vec![4, 4],
            Some(vec![2, 2]),
            Some(FillValue::Float32(-1.0)),
        )
        .await
        .unwrap();
        ds.write_array("temp", vec![], full(&[4, 4], 1.0f32).view())
            .await
            .unwrap();
        ds.define_array::<i32>("sal", strings(&["z"]), vec![6], Some(vec![4]), None)
            .await
            .unwrap();
        ds.write_array("sal", vec![], arr1(vec![1i32, 2, 3, 4, 5, 6]).view())
            .await
            .unwrap();
        ds.set_attribute("n", Attr::from(name)).unwrap();
    }
    s.open_dataset("keep")
        .await
        .unwrap()
        .define_array::<String>("label", strings(&["k"]), vec![2], None, None)
        .await
        .unwrap();
    s.flush().await.unwrap();
    for name in ["keep", "edit"] {
        let ds = s.open_dataset(name).await.unwrap();
        ds.write_array("temp", vec![1, 1], full(&[2, 2], 2.0f32).view())
            .await
            .unwrap();
        ds.write_array("sal", vec![4], arr1(vec![50i32, 60]).view())
            .await
            .unwrap();
    }
    s.flush().await.unwrap();
    s
}

/// Pending changes of every kind: a new dataset with a new array file, a
/// deleted dataset, a deleted array (leaving `sal` with one user), writes,
/// attributes.
async fn mutate(s: &Atlas) {
    let new = s.create_dataset("new").await.unwrap();
    new.define_array::<u8>("fresh", strings(&["i"]), vec![5], Some(vec![2]), None)
        .await
        .unwrap();
    new.write_array("fresh", vec![1], arr1(vec![9u8, 8, 7]).view())
        .await
        .unwrap();
    new.define_array::<f32>("temp", strings(&["y", "x"]), vec![4, 4], None, None)
        .await
        .unwrap();
    new.write_array("temp", vec![0, 0], arr(&[1, 2], vec![3.0f32, 4.0]).view())
        .await
        .unwrap();
    s.delete_dataset("gone").await.unwrap();
    let edit = s.open_dataset("edit").await.unwrap();
    edit.delete_array("sal").await.unwrap();
    edit.write_array("temp", vec![0, 2], full(&[2, 2], 5.0f32).view())
        .await
        .unwrap();
    edit.set_attribute("n", Attr::from("edited")).unwrap();
    let keep = s.open_dataset("keep").await.unwrap();
    keep.set_array_attribute("temp", "units", Attr::from("K"))
        .unwrap();
    keep.write_array("label", vec![], arr1(strings(&["x", "y"])).view())
        .await
        .unwrap();
}

fn is_poisoned<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Poisoned { .. }))
}

/// Asserts a poisoned handle refuses every kind of write.
async fn assert_refuses_writes(s: &Atlas, ctx: &str) {
    assert!(
        is_poisoned(&s.create_dataset("after").await),
        "{ctx}: create_dataset"
    );
    assert!(
        is_poisoned(&s.delete_dataset("keep").await),
        "{ctx}: delete_dataset"
    );
    let keep = s.open_dataset("keep").await.unwrap();
    assert!(
        is_poisoned(&keep.set_attribute("x", Attr::Int64(1))),
        "{ctx}: set_attribute"
    );
    assert!(
        is_poisoned(
            &keep
                .write_array("temp", vec![], full(&[4, 4], 0.0f32).view())
                .await
        ),
        "{ctx}: write_array"
    );
    assert!(is_poisoned(&s.flush().await), "{ctx}: flush");
    assert!(is_poisoned(&s.compact().await), "{ctx}: compact");
}

/// Asserts that the retired-list side file the manifest names, if it names
/// one, is in `atlas.history/` whole (a writer that opens the store reads
/// it; readers, and so `verify`, do not).
fn assert_side_file(storage: &MemoryStorage, ctx: &str) {
    let root = crate::common::mem_root();
    let bytes = storage.read_all(&root.join("atlas.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    if let Some(name) = manifest["retired_file"].as_str() {
        let side = storage
            .read_all(&root.join("atlas.history").join(name))
            .unwrap_or_else(|e| panic!("{ctx}: the manifest names {name}: {e}"));
        let side: serde_json::Value = serde_json::from_slice(&side)
            .unwrap_or_else(|e| panic!("{ctx}: the side file {name} is damaged: {e}"));
        assert!(side["retired"].is_array(), "{ctx}: {side}");
    }
}

fn assert_sound(s: &Atlas, ctx: &str) {
    let report = verify(s, |_, _| {});
    assert!(
        report.problems.is_empty(),
        "{ctx}: verify: {:?}",
        report.problems
    );
}

/// Describes which of two states a snapshot equals.
fn which(got: &Snapshot, old: &Snapshot, new: &Snapshot) -> &'static str {
    if got == old {
        "old"
    } else if got == new {
        "new"
    } else {
        "neither"
    }
}

#[tokio::test]
async fn fault_at_every_step_of_flush() {
    flush_faults(false).await;
}

/// The same with a retired list long enough for a side file, which the
/// commit writes beside the new manifest's temporary file: the faults land
/// in either, in whatever order the two threads reach storage.
#[tokio::test]
async fn fault_at_every_step_of_a_flush_with_a_retired_side_file() {
    flush_faults(true).await;
}

/// Rewrites `keep`'s `temp` and flushes, 40 times: a retired list past the
/// 32 entries a manifest holds inline.
async fn long_history(storage: &MemoryStorage, s: &Atlas) {
    let keep = s.open_dataset("keep").await.unwrap();
    for i in 0..40 {
        keep.write_array("temp", vec![0, 0], full(&[2, 2], i as f32).view())
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let manifest = storage
        .read_all(&crate::common::mem_root().join("atlas.json"))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&manifest).contains("\"retired_file\""),
        "the retired list is not in a side file"
    );
}

/// [`fault_at_every_step_of_flush`], on a store with a retired side file
/// when `side_file`.
async fn flush_faults(side_file: bool) {
    for kind in [FaultKind::Fail, FaultKind::Tear] {
        let mut n = 0;
        let mut poisoned = 0;
        loop {
            assert!(n < MAX_STEPS, "flush never completed");
            let ctx = format!("flush, Fault {{ nth: {n}, kind: {kind:?} }}, side file {side_file}");
            let storage = MemoryStorage::new();
            let s = seeded(&storage).await;
            if side_file {
                long_history(&storage, &s).await;
            }
            let old = snapshot(&s).await;
            mutate(&s).await;
            let new = snapshot(&s).await;
            assert_ne!(old, new);
            storage.arm_fault(Fault { nth: n, kind });
            let res = s.flush().await;
            let reached = storage.ops() > n;
            storage.disarm();
            match res {
                Ok(()) => {
                    let r = reopen_mem(&storage, &ctx).await;
                    let got = snapshot(&r).await;
                    assert!(
                        got == new,
                        "{ctx}: flush succeeded but the store is {}",
                        which(&got, &old, &new)
                    );
                    assert_sound(&r, &ctx);
                    assert_side_file(&storage, &ctx);
                    if !reached {
                        break;
                    }
                    // The fault hit best-effort cleanup; the handle goes on.
                    s.open_dataset("keep")
                        .await
                        .unwrap()
                        .set_attribute("more", Attr::Int64(1))
                        .unwrap();
                    s.flush()
                        .await
                        .unwrap_or_else(|e| panic!("{ctx}: next flush: {e}"));
                }
                Err(e) => {
                    assert!(reached, "{ctx}: flush failed without a fault: {e}");
                    let r = reopen_mem(&storage, &ctx).await;
                    let got = snapshot(&r).await;
                    assert_sound(&r, &ctx);
                    assert_side_file(&storage, &ctx);
                    drop(r);
                    let retry = s.flush().await;
                    if is_poisoned(&retry) {
                        assert!(
                            got == old || got == new,
                            "{ctx}: poisoned after {e}; store is {}",
                            which(&got, &old, &new)
                        );
                        assert_refuses_writes(&s, &ctx).await;
                        poisoned += 1;
                        // Once the poisoned handle is gone, a new one writes.
                        drop(s);
                        let w = reopen_mem(&storage, &ctx).await;
                        w.create_dataset("post").await.unwrap_or_else(|e| {
                            panic!("{ctx}: new handle after a poisoned one: {e}")
                        });
                        w.flush().await.unwrap();
                        let r = reopen_mem(&storage, &ctx).await;
                        assert!(r.dataset_exists("post").unwrap(), "{ctx}");
                        assert_sound(&r, &ctx);
                        assert_side_file(&storage, &ctx);
                    } else {
                        assert!(
                            got == old,
                            "{ctx}: failed with {e} (not poisoned) but the store is {}",
                            which(&got, &old, &new)
                        );
                        retry.unwrap_or_else(|e2| panic!("{ctx}: retry after {e} failed: {e2}"));
                        assert_eq!(snapshot(&s).await, new, "{ctx}: live state after retry");
                        let r = reopen_mem(&storage, &ctx).await;
                        let got = snapshot(&r).await;
                        assert!(
                            got == new,
                            "{ctx}: retried flush committed {}",
                            which(&got, &old, &new)
                        );
                        assert_sound(&r, &ctx);
                        assert_side_file(&storage, &ctx);
                    }
                }
            }
            n += 1;
        }
        eprintln!("flush with {kind:?}: {n} fault points covered, {poisoned} poisoned");
    }
}

#[tokio::test]
async fn fault_at_every_step_of_compact() {
    for kind in [FaultKind::Fail, FaultKind::Tear] {
        let mut n = 0;
        loop {
            assert!(n < MAX_STEPS, "compact never completed");
            let ctx = format!("compact, Fault {{ nth: {n}, kind: {kind:?} }}");
            let storage = MemoryStorage::new();
            let s = seeded(&storage).await;
            let old = snapshot(&s).await;
            assert!(s.array_layers("temp").len() > 1);
            storage.arm_fault(Fault { nth: n, kind });
            let res = s.compact().await;
            let reached = storage.ops() > n;
            storage.disarm();
            let r = reopen_mem(&storage, &ctx).await;
            let got = snapshot(&r).await;
            assert!(
                got == old,
                "{ctx}: compaction ({res:?}) changed the store's contents"
            );
            assert_sound(&r, &ctx);
            drop(r);
            match res {
                Ok(()) => {
                    for a in ["temp", "sal", "label"] {
                        assert_eq!(s.array_layers(a).len(), 1, "{ctx}: {a} compacted");
                    }
                    if !reached {
                        break;
                    }
                }
                Err(e) => {
                    assert!(reached, "{ctx}: compact failed without a fault: {e}");
                    let retry = s.compact().await;
                    if is_poisoned(&retry) {
                        assert_refuses_writes(&s, &ctx).await;
                    } else {
                        retry.unwrap_or_else(|e2| panic!("{ctx}: retry after {e} failed: {e2}"));
                        for a in ["temp", "sal", "label"] {
                            assert_eq!(s.array_layers(a).len(), 1, "{ctx}: {a} after retry");
                        }
                        let r = reopen_mem(&storage, &ctx).await;
                        assert_eq!(snapshot(&r).await, old, "{ctx}: after retry");
                        assert_eq!(r.array_layers("temp").len(), 1, "{ctx}");
                        assert_sound(&r, &ctx);
                    }
                }
            }
            // Whatever happened, the handle's view is still the old contents.
            assert_eq!(snapshot(&s).await, old, "{ctx}: live view");
            n += 1;
        }
        eprintln!("compact with {kind:?}: {n} fault points covered");
    }
}

#[tokio::test]
async fn fault_at_every_step_of_compact_with_pending_changes() {
    // compact() flushes first; with pending changes the store must end at the
    // old commit (flush part failed), or at the new contents.
    for kind in [FaultKind::Fail, FaultKind::Tear] {
        let mut n = 0;
        loop {
            assert!(n < MAX_STEPS, "compact never completed");
            let ctx = format!("compact+flush, Fault {{ nth: {n}, kind: {kind:?} }}");
            let storage = MemoryStorage::new();
            let s = seeded(&storage).await;
            let old = snapshot(&s).await;
            mutate(&s).await;
            let new = snapshot(&s).await;
            storage.arm_fault(Fault { nth: n, kind });
            let res = s.compact().await;
            let reached = storage.ops() > n;
            storage.disarm();
            let r = reopen_mem(&storage, &ctx).await;
            let got = snapshot(&r).await;
            assert_sound(&r, &ctx);
            drop(r);
            match &res {
                Ok(()) => {
                    assert!(got == new, "{ctx}: store is {}", which(&got, &old, &new));
                    if !reached {
                        break;
                    }
                }
                Err(e) => {
                    assert!(reached, "{ctx}: failed without a fault: {e}");
                    assert!(
                        got == old || got == new,
                        "{ctx}: {e}: store is {}",
                        which(&got, &old, &new)
                    );
                    let retry = s.compact().await;
                    if !is_poisoned(&retry) {
                        retry.unwrap_or_else(|e2| panic!("{ctx}: retry after {e}: {e2}"));
                        let r = reopen_mem(&storage, &ctx).await;
                        assert_eq!(snapshot(&r).await, new, "{ctx}: after retry");
                    }
                }
            }
            n += 1;
        }
        eprintln!("compact+flush with {kind:?}: {n} fault points covered");
    }
}

/// Power loss at every step of a flush, a compaction and a compaction with
/// pending changes (the redb-style durable/volatile model of `MemoryStorage`:
/// only fsynced bytes and fsynced directory entries survive). After power
/// comes back, a fresh handle sees exactly the previous commit or the new one,
/// verifies clean, and if the operation had returned `Ok` it sees the new one.
///
/// Deleting any one fsync of the commit path (the layer's `sync`, its
/// directory's `sync_dir`, the new-directory `sync_dir` of the root, the
/// registry temp file's `sync`, the root `sync_dir` after the rename) makes
/// this test fail.
async fn power_loss_table(what: &str, op: impl AsyncOp) {
    for kind in [FaultKind::PowerLoss, FaultKind::PowerLossKeepRenames] {
        power_loss_table_of(
            &format!("{what} ({kind:?})"),
            &op,
            kind,
            StoreConfig::default(),
        )
        .await;
    }
}

async fn power_loss_table_of(what: &str, op: &impl AsyncOp, kind: FaultKind, config: StoreConfig) {
    let mut n = 0;
    let mut outcomes = [0u32; 2];
    let mut distinct = false;
    loop {
        assert!(n < MAX_STEPS, "{what} never completed");
        let ctx = format!("{what}, power loss at op {n}");
        let storage = MemoryStorage::new();
        let s = seeded_with(&storage, config).await;
        // Durable up to here (a clean shutdown); the pending changes below
        // create directories whose durability the operation must ensure.
        storage.sync_all();
        let old = snapshot(&s).await;
        op.prepare(&s).await;
        let new = op.expected(&s).await;
        storage.arm_fault(Fault { nth: n, kind });
        let res = op.run(&s).await;
        let lost = storage.is_down();
        drop(s);
        if !lost {
            // Power cut right after the operation returned: what it reported
            // as committed must already be durable.
            storage.arm_fault(Fault { nth: 0, kind });
            assert!(atlas_core::Storage::sync_dir(&storage, std::path::Path::new("/")).is_err());
        }
        storage.power_on();
        let r = reopen_mem(&storage, &ctx).await;
        let got = snapshot(&r).await;
        assert_sound(&r, &ctx);
        match &res {
            Ok(()) => assert!(
                got == new,
                "{ctx}: {what} returned Ok but after power loss the store is {}",
                which(&got, &old, &new)
            ),
            Err(e) => assert!(
                got == old || got == new,
                "{ctx}: {what} failed ({e}) and the store is {}",
                which(&got, &old, &new)
            ),
        }
        distinct |= old != new;
        outcomes[usize::from(got == new)] += 1;
        // The store takes writes again after the reboot.
        r.create_dataset("after_boot").await.unwrap();
        r.flush()
            .await
            .unwrap_or_else(|e| panic!("{ctx}: flush after reboot: {e}"));
        if !lost {
            break;
        }
        n += 1;
    }
    eprintln!(
        "{what}: {n} power-loss points, {} left the old state, {} the new",
        outcomes[0], outcomes[1]
    );
    // (A compaction without pending changes commits the same contents.)
    if distinct {
        assert!(
            outcomes[0] > 0 && outcomes[1] > 0,
            "{what}: both outcomes reached"
        );
    }
}

/// One operation of the power-loss table.
trait AsyncOp {
    /// Pending changes before the operation.
    fn prepare(&self, s: &Atlas) -> impl std::future::Future<Output = ()>;
    /// The snapshot a successful operation commits.
    fn expected(&self, s: &Atlas) -> impl std::future::Future<Output = Snapshot>;
    /// The operation.
    fn run(&self, s: &Atlas) -> impl std::future::Future<Output = Result<(), Error>>;
}

struct FlushOp;
impl AsyncOp for FlushOp {
    async fn prepare(&self, s: &Atlas) {
        mutate(s).await;
    }
    async fn expected(&self, s: &Atlas) -> Snapshot {
        snapshot(s).await
    }
    async fn run(&self, s: &Atlas) -> Result<(), Error> {
        s.flush().await
    }
}

struct CompactOp {
    pending: bool,
}
impl AsyncOp for CompactOp {
    async fn prepare(&self, s: &Atlas) {
        if self.pending {
            mutate(s).await;
        }
    }
    async fn expected(&self, s: &Atlas) -> Snapshot {
        snapshot(s).await
    }
    async fn run(&self, s: &Atlas) -> Result<(), Error> {
        s.compact().await
    }
}

#[tokio::test]
async fn power_loss_at_every_step_of_flush() {
    power_loss_table("flush", FlushOp).await;
}

#[tokio::test]
async fn power_loss_at_every_step_of_compact() {
    power_loss_table("compact", CompactOp { pending: false }).await;
    power_loss_table("compact with pending changes", CompactOp { pending: true }).await;
}

/// A flush that leaves `temp` and `sal` with 3 layers under a policy of 2
/// merges them (a tail merge: the tail is smaller than the base) in a second
/// commit; a power cut anywhere in it leaves the old state or the new one.
#[tokio::test]
async fn power_loss_at_every_step_of_a_merging_flush() {
    let config = StoreConfig {
        policy: atlas_core::Policy {
            max_layers_per_array: 2,
            ..atlas_core::Policy::default()
        },
        ..StoreConfig::default()
    };
    for kind in [FaultKind::PowerLoss, FaultKind::PowerLossKeepRenames] {
        power_loss_table_of(&format!("merging flush ({kind:?})"), &FlushOp, kind, config).await;
    }
    // And the merge does happen: layer counts stay within the policy.
    let storage = MemoryStorage::new();
    let s = seeded_with(&storage, config).await;
    mutate(&s).await;
    s.flush().await.unwrap();
    for a in s.list_arrays() {
        assert!(
            s.array_layers(&a).len() <= 2,
            "{a}: {:?}",
            s.array_layers(&a)
        );
    }
}

/// Registry runs: a store of 40 datasets (one large run) then three flushes of
/// one dataset each (small runs); the last flush (a deletion, a re-creation
/// and an edit) merges the small runs but not the large one, keeping its
/// tombstone and killed id. A power cut at every step leaves the old state or
/// the new one, and the reopened store lists and counts exactly that.
#[tokio::test]
async fn power_loss_at_every_step_of_a_flush_merging_registry_runs() {
    async fn build(storage: &MemoryStorage) -> Atlas {
        let s = create_mem(storage, StoreConfig::default()).await;
        for i in 0..40 {
            let ds = s.create_dataset(&format!("d{i:02}")).await.unwrap();
            ds.define_array::<f32>("t", strings(&["i"]), vec![2], None, None)
                .await
                .unwrap();
            ds.write_array("t", vec![], arr1(vec![i as f32, 1.0]).view())
                .await
                .unwrap();
        }
        s.flush().await.unwrap();
        for i in 0..3 {
            s.open_dataset(&format!("d{i:02}"))
                .await
                .unwrap()
                .set_attribute("k", Attr::Int64(i))
                .unwrap();
            s.flush().await.unwrap();
        }
        s
    }
    async fn change(s: &Atlas) {
        s.delete_dataset("d05").await.unwrap();
        s.delete_dataset("d06").await.unwrap();
        let again = s.create_dataset("d06").await.unwrap();
        again
            .define_array::<f32>("t", strings(&["i"]), vec![2], None, None)
            .await
            .unwrap();
        s.open_dataset("d07")
            .await
            .unwrap()
            .write_array("t", vec![0], arr1(vec![70.0f32]).view())
            .await
            .unwrap();
    }
    let runs_of = |storage: &MemoryStorage| -> usize {
        let m = storage
            .contents(&crate::common::mem_root().join("atlas.json"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        v["runs"].as_array().map_or(0, Vec::len)
    };
    // The shape this test relies on: 4 runs before, 2 after (the large one
    // kept, the small ones merged with the change).
    let storage = MemoryStorage::new();
    let s = build(&storage).await;
    assert!(runs_of(&storage) >= 2, "{}", runs_of(&storage));
    change(&s).await;
    s.flush().await.unwrap();
    assert_eq!(runs_of(&storage), 2);
    let id6 = s.dataset_id("d06").unwrap().unwrap();
    assert!(id6 >= 40, "a re-created dataset gets a new id: {id6}");
    drop(s);
    for kind in [FaultKind::PowerLoss, FaultKind::PowerLossKeepRenames] {
        let mut n = 0;
        loop {
            let ctx = format!("run-merging flush ({kind:?}), power loss at op {n}");
            let storage = MemoryStorage::new();
            let s = build(&storage).await;
            storage.sync_all();
            let old = snapshot(&s).await;
            change(&s).await;
            let new = snapshot(&s).await;
            storage.arm_fault(Fault { nth: n, kind });
            let res = s.flush().await;
            let lost = storage.is_down();
            drop(s);
            storage.power_on();
            let r = reopen_mem(&storage, &ctx).await;
            let got = snapshot(&r).await;
            assert!(got == old || got == new, "{ctx}");
            if res.is_ok() {
                assert!(got == new, "{ctx}: flush returned Ok");
            }
            assert_eq!(r.n_datasets(), r.list_datasets().unwrap().len(), "{ctx}");
            let report = verify(&r, |_, _| {});
            assert!(report.problems.is_empty(), "{ctx}: {:?}", report.problems);
            if !lost {
                break;
            }
            n += 1;
            assert!(n < MAX_STEPS, "never completed");
        }
    }
}
