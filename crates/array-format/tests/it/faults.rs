//! Injected storage faults: for flush and compaction (one-step and two-phase),
//! every mutating storage operation in turn fails or tears; afterwards the
//! previous layer list still opens with exactly the previous contents, the
//! in-memory file still reads its own state and can try again. Also a full
//! disk during flush and compaction, and faults while spilling pending data.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use array_format::storage::{Fault, FaultKind, Op};
use array_format::{ArrayFile, ArrayFileOptions, Error, FillValue, LayerId, MemoryStorage};

use crate::common::{dims, dump, mem_file, mem_layer_path, mem_open, nd};

struct Fixture {
    storage: Arc<MemoryStorage>,
    f: ArrayFile,
    /// The committed layer list before the operation under test.
    prev: Vec<LayerId>,
    /// Contents of `prev`.
    prev_dump: String,
    /// Contents of `f` (pending changes included).
    live_dump: String,
}

fn opts(budget: u64) -> ArrayFileOptions {
    ArrayFileOptions {
        pending_budget_bytes: budget,
        ..ArrayFileOptions::default()
    }
}

/// Defines and writes a first generation of arrays.
fn first_generation(f: &mut ArrayFile) {
    f.define_array::<f64>(
        "a",
        dims(2),
        vec![6, 4],
        Some(vec![2, 2]),
        Some(FillValue::Float64(f64::NAN)),
    )
    .unwrap();
    let v: Vec<f64> = (0..15).map(|i| f64::from(i) / 4.0).collect();
    f.write_array("a", &[1, 1], nd(&[5, 3], v).view()).unwrap();
    f.define_array::<String>("s", dims(1), vec![3], Some(vec![1]), None)
        .unwrap();
    let s: Vec<String> = ["x", "", "yz"].iter().map(|s| (*s).to_owned()).collect();
    f.write_array("s", &[], nd(&[3], s).view()).unwrap();
    f.define_array::<i32>("gone", dims(1), vec![4], Some(vec![2]), None)
        .unwrap();
    f.write_array("gone", &[], nd(&[4], vec![1, 2, 3, 4]).view())
        .unwrap();
}

/// Pending changes on top of [`first_generation`]: an update, a new array,
/// a delete and a redefinition.
fn second_generation(f: &mut ArrayFile, salt: i32) {
    f.write_array("a", &[0, 0], nd(&[2, 3], vec![9.5; 6]).view())
        .unwrap();
    let name = format!("b{salt}");
    f.define_array::<u16>(&name, dims(1), vec![5], Some(vec![2]), None)
        .unwrap();
    f.write_array(&name, &[1], nd(&[3], vec![7u16, 8, 9]).view())
        .unwrap();
    f.delete_array("gone").unwrap();
    f.define_array::<i32>(
        "gone",
        dims(2),
        vec![2, 2],
        None,
        Some(FillValue::Int32(-1)),
    )
    .unwrap();
    f.write_array("gone", &[1, 0], nd(&[1, 2], vec![5, 6]).view())
        .unwrap();
}

/// One committed layer plus pending changes.
fn flush_fixture(budget: u64) -> Fixture {
    let (storage, mut f) = mem_file(opts(budget));
    first_generation(&mut f);
    f.flush().unwrap();
    second_generation(&mut f, 0);
    finish_fixture(storage, f)
}

/// Three committed layers (with a delete and a redefinition among them) plus
/// pending changes.
fn compact_fixture(budget: u64) -> Fixture {
    let (storage, mut f) = mem_file(opts(budget));
    first_generation(&mut f);
    f.flush().unwrap();
    second_generation(&mut f, 0);
    f.flush().unwrap();
    f.write_array("s", &[1], nd(&[1], vec!["late".to_owned()]).view())
        .unwrap();
    f.flush().unwrap();
    second_generation(&mut f, 1);
    finish_fixture(storage, f)
}

fn finish_fixture(storage: Arc<MemoryStorage>, f: ArrayFile) -> Fixture {
    let prev = f.layers();
    let prev_dump = dump(&mem_open(&storage, &prev).unwrap()).unwrap();
    let live_dump = dump(&f).unwrap();
    assert_ne!(prev_dump, live_dump, "the fixture has pending changes");
    Fixture {
        storage,
        f,
        prev,
        prev_dump,
        live_dump,
    }
}

/// Layer files present in the storage.
fn layer_files(storage: &MemoryStorage) -> BTreeSet<PathBuf> {
    storage
        .files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "af"))
        .collect()
}

/// After a failed operation: nothing committed changed, nothing was left behind,
/// the open file still shows its own state.
fn check_after_failure(fx: &Fixture, what: &str) {
    assert_eq!(fx.f.layers(), fx.prev, "{what}: the layer list changed");
    let g = mem_open(&fx.storage, &fx.prev)
        .unwrap_or_else(|e| panic!("{what}: previous list no longer opens: {e}"));
    assert_eq!(dump(&g).unwrap(), fx.prev_dump, "{what}: previous contents");
    assert_eq!(
        dump(&fx.f).unwrap(),
        fx.live_dump,
        "{what}: in-memory contents"
    );
    let expected: BTreeSet<PathBuf> = fx.prev.iter().map(mem_layer_path).collect();
    assert_eq!(
        layer_files(&fx.storage),
        expected,
        "{what}: debris left behind"
    );
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Flush,
    WriteInstall,
    Compact,
    PrepareInstallCompacted,
}

fn act(f: &mut ArrayFile, action: Action) -> Result<(), Error> {
    match action {
        Action::Flush => f.flush().map(|id| assert!(id.is_some())),
        Action::WriteInstall => {
            let p = f.write_pending()?.expect("pending changes");
            f.install(p)
        }
        Action::Compact => f.compact().map(drop),
        Action::PrepareInstallCompacted => {
            let p = f.compact_prepare()?;
            f.install_compacted(p).map(drop)
        }
    }
}

fn is_compaction(action: Action) -> bool {
    matches!(action, Action::Compact | Action::PrepareInstallCompacted)
}

/// After a successful operation: the new list opens with the expected contents.
fn check_after_success(fx: &Fixture, action: Action, what: &str) {
    let layers = fx.f.layers();
    let reopened = dump(&mem_open(&fx.storage, &layers).unwrap()).unwrap();
    if is_compaction(action) {
        assert_eq!(layers.len(), 1, "{what}: one base");
        assert_eq!(reopened, fx.prev_dump, "{what}: compacted contents");
    } else {
        assert_eq!(layers.len(), fx.prev.len() + 1, "{what}: one more layer");
        assert_eq!(
            layers[..fx.prev.len()],
            fx.prev[..],
            "{what}: older layers kept"
        );
        assert_eq!(reopened, fx.live_dump, "{what}: flushed contents");
    }
    assert_eq!(
        dump(&fx.f).unwrap(),
        fx.live_dump,
        "{what}: in-memory contents"
    );
}

fn retry_and_finish(fx: &mut Fixture, action: Action, what: &str) {
    act(&mut fx.f, action).unwrap_or_else(|e| panic!("{what}: retry failed: {e}"));
    check_after_success(fx, action, &format!("{what}, retried"));
    // Whatever happened, flushing the rest persists exactly what the file shows.
    fx.f.flush().unwrap();
    let g = mem_open(&fx.storage, &fx.f.layers()).unwrap();
    assert_eq!(dump(&g).unwrap(), fx.live_dump, "{what}: final flush");
}

fn fault_loop(action: Action, budget: u64) {
    let make = || {
        if is_compaction(action) {
            compact_fixture(budget)
        } else {
            flush_fixture(budget)
        }
    };
    for kind in [FaultKind::Fail, FaultKind::Tear] {
        let mut n = 0u64;
        loop {
            let mut fx = make();
            fx.storage.reset_ops();
            fx.storage.arm_fault(Fault { nth: n, kind });
            let r = act(&mut fx.f, action);
            let ops = fx.storage.ops();
            let log = fx.storage.op_log();
            fx.storage.disarm();
            let what = format!(
                "{action:?} (budget {budget}) with {kind:?} at op {n} {:?}",
                log.get(n as usize)
            );
            if let Err(e) = r {
                assert!(matches!(e, Error::Io { .. }), "{what}: {e:?}");
                check_after_failure(&fx, &what);
                retry_and_finish(&mut fx, action, &what);
            } else {
                if ops > n {
                    // The fault hit, yet the operation succeeded: only a
                    // best-effort cleanup may swallow a failure.
                    assert_eq!(log[n as usize].0, Op::Remove, "{what}: fault swallowed");
                }
                check_after_success(&fx, action, &what);
                if ops <= n {
                    break;
                }
            }
            n += 1;
            assert!(n < 10_000, "{what}: the operation never completes");
        }
        eprintln!("{action:?} (budget {budget}), {kind:?}: {n} fault points");
        assert!(n >= 5, "{action:?}: only {n} faults were injected");
    }
}

#[test]
fn flush_survives_every_fault() {
    fault_loop(Action::Flush, 256 << 20);
}

#[test]
fn flush_from_spilled_pending_survives_every_fault() {
    fault_loop(Action::Flush, 0);
}

#[test]
fn write_pending_and_install_survive_every_fault() {
    fault_loop(Action::WriteInstall, 256 << 20);
}

#[test]
fn compact_survives_every_fault() {
    fault_loop(Action::Compact, 256 << 20);
}

#[test]
fn compact_prepare_and_install_survive_every_fault() {
    fault_loop(Action::PrepareInstallCompacted, 0);
}

fn used_bytes(storage: &MemoryStorage) -> u64 {
    storage
        .files()
        .iter()
        .map(|p| storage.contents(p).map_or(0, |c| c.len() as u64))
        .sum()
}

fn full_disk_loop(action: Action, budget: u64) {
    let mut failures = 0;
    for extra in (0u64..).step_by(7) {
        let mut fx = if is_compaction(action) {
            compact_fixture(budget)
        } else {
            flush_fixture(budget)
        };
        let base = used_bytes(&fx.storage);
        fx.storage.set_capacity(Some(base + extra));
        let r = act(&mut fx.f, action);
        fx.storage.set_capacity(None);
        let what = format!("{action:?} (budget {budget}) with {extra} bytes free");
        if let Err(e) = r {
            assert!(
                matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
                "{what}: {e:?}"
            );
            failures += 1;
            check_after_failure(&fx, &what);
            retry_and_finish(&mut fx, action, &what);
        } else {
            check_after_success(&fx, action, &what);
            break;
        }
        assert!(extra < 1 << 20, "{what}: never succeeds");
    }
    assert!(
        failures >= 3,
        "{action:?}: only {failures} full-disk failures"
    );
}

#[test]
fn flush_on_a_full_disk_keeps_the_previous_state() {
    full_disk_loop(Action::Flush, 256 << 20);
    full_disk_loop(Action::Flush, 0);
}

#[test]
fn compact_on_a_full_disk_keeps_the_previous_state() {
    full_disk_loop(Action::Compact, 256 << 20);
}

/// A fault while pending data spills to the scratch file fails the write with
/// an I/O error; whatever the file then shows is exactly what a flush persists,
/// and the committed state is untouched.
#[test]
fn faults_while_spilling_keep_the_file_consistent() {
    for kind in [FaultKind::Fail, FaultKind::Tear] {
        for n in 0..12 {
            let (storage, mut f) = mem_file(opts(64));
            first_generation(&mut f);
            f.flush().unwrap();
            let prev = f.layers();
            let prev_dump = dump(&f).unwrap();
            storage.reset_ops();
            storage.arm_fault(Fault { nth: n, kind });
            let mut errors = 0;
            for i in 0..6u32 {
                let v: Vec<f64> = (0..4).map(|k| f64::from(i * 10 + k)).collect();
                let row = u64::from(i % 3) * 2;
                match f.write_array("a", &[row, 0], nd(&[2, 2], v).view()) {
                    Ok(()) => {}
                    Err(e) => {
                        errors += 1;
                        assert!(matches!(e, Error::Io { .. }), "{kind:?} at {n}: {e:?}");
                    }
                }
            }
            let hit = storage.ops() > n;
            storage.disarm();
            let what = format!("spill with {kind:?} at op {n}");
            assert_eq!(
                dump(&mem_open(&storage, &prev).unwrap()).unwrap(),
                prev_dump,
                "{what}: committed state"
            );
            let shown = dump(&f).unwrap_or_else(|e| panic!("{what}: reads fail: {e}"));
            f.flush()
                .unwrap_or_else(|e| panic!("{what}: flush fails: {e}"));
            let g = mem_open(&storage, &f.layers()).unwrap();
            assert_eq!(
                dump(&g).unwrap(),
                shown,
                "{what}: flush persisted something else"
            );
            if hit {
                assert!(errors > 0, "{what}: fault hit but no write reported it");
            }
        }
    }
}

/// A flush and a compaction create the layer with `create_new`, fsync it, then
/// fsync the directory, and only then does the layer join the file.
#[test]
fn new_layers_are_fsynced_then_their_directory() {
    for action in [Action::Flush, Action::Compact] {
        let mut fx = if is_compaction(action) {
            compact_fixture(256 << 20)
        } else {
            flush_fixture(256 << 20)
        };
        fx.storage.reset_ops();
        act(&mut fx.f, action).unwrap();
        let log = fx.storage.op_log();
        let new = fx.f.layers().last().map(mem_layer_path).unwrap();
        let pos = |op: Op, path: &std::path::Path| {
            log.iter()
                .position(|(o, p)| *o == op && p == path)
                .unwrap_or_else(|| panic!("{action:?}: no {op:?} on {}: {log:?}", path.display()))
        };
        let create = pos(Op::Create, &new);
        let sync = pos(Op::Sync, &new);
        let sync_dir = pos(Op::SyncDir, std::path::Path::new(crate::common::MEM_DIR));
        assert!(
            create < sync && sync < sync_dir,
            "{action:?}: order in {log:?}"
        );
        let last_write = log
            .iter()
            .rposition(|(o, p)| *o == Op::Write && *p == new)
            .unwrap();
        assert!(
            last_write < sync,
            "{action:?}: a write after the fsync: {log:?}"
        );
    }
}
