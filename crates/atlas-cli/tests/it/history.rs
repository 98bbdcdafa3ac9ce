//! `atlas log`, `tag`, `tags`, `untag`, `diff`, `restore`, `gc` and `--at`
//! on the read commands.

use std::path::Path;

use atlas::{Atlas, Policy, StoreConfig};

use super::{atlas, ok, s};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn put(store: &Atlas, name: &str, v: f32) {
    let ds = if store.dataset_exists(name).unwrap() {
        store.open_dataset(name).await.unwrap()
    } else {
        let ds = store.create_dataset(name).await.unwrap();
        ds.define_array::<f32>("TEMP", vec!["N".into()], vec![3], None, None)
            .await
            .unwrap();
        ds
    };
    let a = atlas::ndarray::arr1(&[v, v + 1.0, v + 2.0]).into_dyn();
    ds.write_array("TEMP", vec![], a.view()).await.unwrap();
}

/// Generation 2: `a` (1, 2, 3) and `b`; the last generation: `a` (7, 8,
/// 9) and `c`.
fn build(dir: &Path) {
    runtime().block_on(async {
        let config = StoreConfig {
            policy: Policy {
                gc_grace_secs: 0,
                keep_generations: 10,
                ..Policy::default()
            },
            ..StoreConfig::default()
        };
        let store = Atlas::create_path(dir, config).await.unwrap();
        put(&store, "a", 1.0).await;
        put(&store, "b", 4.0).await;
        store.flush().await.unwrap();
        assert_eq!(store.generation(), 2);
    });
}

fn change(dir: &Path) {
    runtime().block_on(async {
        let store = Atlas::open_path(dir).await.unwrap();
        put(&store, "a", 7.0).await;
        store.delete_dataset("b").await.unwrap();
        put(&store, "c", 0.0).await;
        store.flush().await.unwrap();
    });
}

#[test]
fn log_tag_diff_restore_gc_and_at() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("store");
    build(&d);
    let out = ok(&["tag", s(&d), "v1", "-m", "as published"]);
    assert!(out.contains("tagged generation 2"), "{out}");
    change(&d);

    let log: serde_json::Value = serde_json::from_str(&ok(&["log", s(&d), "--json"])).unwrap();
    let entries = log.as_array().unwrap();
    let ops: Vec<&str> = entries
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["flush", "tag", "flush", "create"]);
    assert_eq!(entries[2]["tags"][0], "v1");
    assert_eq!(entries[0]["added"], 1);
    assert_eq!(entries[0]["changed"], 1);
    assert_eq!(entries[0]["deleted"], 1);
    let text = ok(&["log", s(&d), "-n", "2"]);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.trim_start().starts_with("4 "), "{text}");

    // Reads at the tag, the generation and the time of generation 2.
    let time2 = entries[2]["time"].as_str().unwrap().to_owned();
    for at in ["v1", "2", time2.as_str()] {
        let ls = ok(&["ls", s(&d), "--at", at]);
        assert_eq!(ls.lines().collect::<Vec<_>>(), ["a", "b"], "--at {at}");
        let cat = ok(&["cat", s(&d), "a", "TEMP", "--at", at]);
        assert!(cat.contains('1') && !cat.contains('7'), "--at {at}: {cat}");
    }
    assert_eq!(ok(&["ls", s(&d)]).lines().collect::<Vec<_>>(), ["a", "c"]);
    let stats = ok(&["stats", s(&d), "TEMP", "--at", "v1"]);
    assert!(stats.contains('b'), "{stats}");
    let info = ok(&["info", s(&d), "--at", "v1"]);
    assert!(info.contains('2'), "{info}");
    ok(&["query", s(&d), "TEMP.max > 5", "--count", "--at", "v1"]);
    ok(&["scan", s(&d), "TEMP", "--at", "v1"]);
    // `b` exists only in the tagged generation.
    let nc = t.path().join("b.nc");
    ok(&["export", s(&d), "b", s(&nc), "--at", "v1"]);
    assert!(nc.exists());
    let nc2 = t.path().join("b2.nc");
    assert!(!atlas(&["export", s(&d), "b", s(&nc2)]).status.success());

    let diff = ok(&["diff", s(&d), "v1", "4"]);
    assert_eq!(diff.lines().collect::<Vec<_>>(), ["+ c", "~ a", "- b"]);
    let tags = ok(&["tags", s(&d)]);
    assert!(
        tags.starts_with("v1\t2\t") && tags.contains("as published"),
        "{tags}"
    );

    // Writes and --at do not mix; a tag name is never reused.
    let out = atlas(&["compact", s(&d), "--at", "v1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    let out = atlas(&["verify", s(&d), "--at", "v1"]);
    assert_eq!(out.status.code(), Some(2));

    let out = ok(&["restore", s(&d), "--to", "v1", "-m", "undo"]);
    assert!(out.contains("as generation 5"), "{out}");
    assert_eq!(ok(&["ls", s(&d)]).lines().collect::<Vec<_>>(), ["a", "b"]);

    ok(&["untag", s(&d), "v1"]);
    let out = atlas(&["tag", s(&d), "v1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted tag"));

    let dry = ok(&["gc", s(&d), "--dry-run"]);
    assert!(dry.contains("oldest retained: 1"), "{dry}");
    let gc = ok(&["gc", s(&d), "--keep", "1"]);
    assert!(gc.contains("oldest retained: 7"), "{gc}");
    let out = atlas(&["ls", s(&d), "--at", "2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expired"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ok(&["ls", s(&d)]).lines().collect::<Vec<_>>(), ["a", "b"]);
    let verify = ok(&["verify", s(&d)]);
    assert!(!verify.is_empty());
}
