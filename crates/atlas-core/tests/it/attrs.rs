//! Attributes round-trip exactly through flush and reopen in both registry
//! formats (the format is detected on open): the type is kept, NaN (with its
//! payload), ±Inf and -0.0 survive, extreme integers survive, a date-looking
//! string stays a string, empty lists and every list type survive.

use atlas_core::{Attr, MemoryStorage, MetaFormat, StoreConfig, TimestampNs, REGISTRY_FILE};
use indexmap::IndexMap;

use crate::common::{create_mem, mem_root, reopen_mem, snapshot, strings};

fn samples() -> Vec<(&'static str, Attr)> {
    vec![
        ("bool_t", Attr::Bool(true)),
        ("bool_f", Attr::Bool(false)),
        ("nan", Attr::Float64(f64::NAN)),
        (
            "nan_payload",
            Attr::Float64(f64::from_bits(0x7ff8_0000_dead_beef)),
        ),
        (
            "neg_nan",
            Attr::Float64(f64::from_bits(0xfff8_0000_0000_0000)),
        ),
        ("inf", Attr::Float64(f64::INFINITY)),
        ("ninf", Attr::Float64(f64::NEG_INFINITY)),
        ("neg_zero", Attr::Float64(-0.0)),
        ("zero", Attr::Float64(0.0)),
        ("tenth", Attr::Float64(0.1)),
        ("subnormal", Attr::Float64(5e-324)),
        ("fmax", Attr::Float64(f64::MAX)),
        ("fmin_pos", Attr::Float64(f64::MIN_POSITIVE)),
        ("whole_float", Attr::Float64(3.0)),
        ("u64max", Attr::UInt64(u64::MAX)),
        ("u64zero", Attr::UInt64(0)),
        ("i64min", Attr::Int64(i64::MIN)),
        ("i64max", Attr::Int64(i64::MAX)),
        ("date_string", Attr::String("2024-01-01T00:00:00Z".into())),
        ("date_only", Attr::String("2024-01-01".into())),
        ("nan_string", Attr::String("NaN".into())),
        ("inf_string", Attr::String("inf".into())),
        ("number_string", Attr::String("42".into())),
        ("empty_string", Attr::String(String::new())),
        (
            "unicode",
            Attr::String("température °C \u{1F30A} \"q\" \\ \n".into()),
        ),
        (
            "ts",
            Attr::Timestamp(TimestampNs(1_704_067_200_123_456_789)),
        ),
        ("ts_min", Attr::Timestamp(TimestampNs(i64::MIN))),
        ("ts_neg", Attr::Timestamp(TimestampNs(-1))),
        ("bools_empty", Attr::BoolList(vec![])),
        ("i64s_empty", Attr::Int64List(vec![])),
        ("u64s_empty", Attr::UInt64List(vec![])),
        ("f64s_empty", Attr::Float64List(vec![])),
        ("strs_empty", Attr::StringList(vec![])),
        ("tss_empty", Attr::TimestampList(vec![])),
        ("bools", Attr::BoolList(vec![true, false, true])),
        ("i64s", Attr::Int64List(vec![i64::MIN, -1, 0, i64::MAX])),
        ("u64s", Attr::UInt64List(vec![0, u64::MAX])),
        (
            "f64s",
            Attr::Float64List(vec![
                -0.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                1.5,
                f64::from_bits(0x7ff8_0000_0000_0001),
            ]),
        ),
        ("valid_range", Attr::Float64List(vec![-2.0, 40.0])),
        (
            "strs",
            Attr::StringList(vec!["2024-01-01".into(), String::new(), "NaN".into()]),
        ),
        (
            "tss",
            Attr::TimestampList(vec![
                TimestampNs(i64::MIN),
                TimestampNs(0),
                TimestampNs(i64::MAX),
            ]),
        ),
    ]
}

fn expected() -> IndexMap<String, Attr> {
    samples()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Compares attribute maps by key order, type and bits, naming the first
/// difference.
fn assert_same(got: &IndexMap<String, Attr>, want: &IndexMap<String, Attr>, ctx: &str) {
    let gk: Vec<&String> = got.keys().collect();
    let wk: Vec<&String> = want.keys().collect();
    assert_eq!(gk, wk, "{ctx}: key order");
    for (k, w) in want {
        let g = &got[k];
        assert_eq!(g, w, "{ctx}: attribute {k}: got {g:?}, want {w:?}");
        // Belt and braces: also compare bit patterns of floats directly.
        match (g, w) {
            (Attr::Float64(a), Attr::Float64(b)) => {
                assert_eq!(a.to_bits(), b.to_bits(), "{ctx}: {k} bits");
            }
            (Attr::Float64List(a), Attr::Float64List(b)) => {
                let a: Vec<u64> = a.iter().map(|x| x.to_bits()).collect();
                let b: Vec<u64> = b.iter().map(|x| x.to_bits()).collect();
                assert_eq!(a, b, "{ctx}: {k} bits");
            }
            _ => {}
        }
    }
}

async fn round_trip(format: MetaFormat) {
    let storage = MemoryStorage::new();
    let s = create_mem(
        &storage,
        StoreConfig {
            meta_format: format,
            ..StoreConfig::default()
        },
    )
    .await;
    let ds = s.create_dataset("d").await.unwrap();
    ds.define_array::<f32>("temp", strings(&["i"]), vec![2], None, None)
        .await
        .unwrap();
    for (k, v) in samples() {
        ds.set_attribute(k, v.clone()).unwrap();
        ds.set_array_attribute("temp", k, v).unwrap();
    }
    // A second dataset with the attributes in reverse order.
    let ds2 = s.create_dataset("rev").await.unwrap();
    for (k, v) in samples().into_iter().rev() {
        ds2.set_attribute(k, v).unwrap();
    }
    let want = expected();
    let want_rev: IndexMap<String, Attr> = samples()
        .into_iter()
        .rev()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_same(&ds.attributes(), &want, "live");
    s.flush().await.unwrap();

    // The manifest is always JSON; the registry run holding the datasets is
    // binary whatever the configured format (kept for stores written before
    // runs, whose segments it chose).
    let manifest = storage
        .contents(&mem_root().join(REGISTRY_FILE))
        .expect("atlas.json exists");
    let v: serde_json::Value = serde_json::from_slice(&manifest).expect("valid JSON manifest");
    assert_eq!(v["meta_format"], format.name());
    let runs = crate::common::segment_files(&storage);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = storage.contents(&runs[0]).unwrap();
    assert!(run.starts_with(b"ATLASRUN"), "run magic");

    let ctx = format.name();
    drop((ds, ds2, s));
    let r = reopen_mem(&storage, ctx).await;
    assert_eq!(r.meta_format(), format, "format detected on open");
    let rd = r.open_dataset("d").await.unwrap();
    assert_same(&rd.attributes(), &want, &format!("{ctx}: dataset attrs"));
    assert_same(
        &rd.array_attributes("temp").unwrap(),
        &want,
        &format!("{ctx}: array attrs"),
    );
    assert_same(
        &r.open_dataset("rev").await.unwrap().attributes(),
        &want_rev,
        &format!("{ctx}: reverse order"),
    );
    for (k, v) in samples() {
        assert_eq!(rd.get_attribute(k), Some(v.clone()), "{ctx}: get {k}");
        assert_eq!(
            rd.get_array_attribute("temp", k),
            Some(v),
            "{ctx}: get array {k}"
        );
    }
    assert!(matches!(
        rd.get_attribute("date_string"),
        Some(Attr::String(s)) if s == "2024-01-01T00:00:00Z"
    ));

    // A second generation (write through the reopened handle) keeps them too.
    rd.set_attribute("later", Attr::UInt64(u64::MAX)).unwrap();
    r.flush().await.unwrap();
    drop(rd);
    let r2 = reopen_mem(&storage, ctx).await;
    assert_eq!(
        r2.meta_format(),
        format,
        "the format persists across commits"
    );
    let mut want2 = want.clone();
    want2.insert("later".into(), Attr::UInt64(u64::MAX));
    assert_same(
        &r2.open_dataset("d").await.unwrap().attributes(),
        &want2,
        &format!("{ctx}: second generation"),
    );
    assert_eq!(snapshot(&r2).await.datasets.len(), 2);
}

#[tokio::test]
async fn attributes_round_trip_exactly_in_json() {
    round_trip(MetaFormat::Json).await;
}

#[tokio::test]
async fn attributes_round_trip_exactly_in_binary() {
    round_trip(MetaFormat::Binary).await;
}

/// Arrays defined without attributes share one empty map; an attribute set
/// on one of them is that array's alone, pending and after a flush and a
/// reopen.
#[tokio::test]
async fn an_attribute_of_one_array_stays_its_own() {
    let storage = MemoryStorage::new();
    let s = create_mem(&storage, StoreConfig::default()).await;
    for name in ["a", "b"] {
        let ds = s.create_dataset(name).await.unwrap();
        for array in ["x", "y"] {
            ds.define_array::<f32>(array, strings(&["i"]), vec![2], None, None)
                .await
                .unwrap();
        }
    }
    let a = s.open_dataset("a").await.unwrap();
    a.set_array_attribute("x", "units", Attr::String("K".into()))
        .unwrap();
    let check = |s: &atlas_core::Atlas, when: &str| {
        let s = s.clone();
        let when = when.to_owned();
        async move {
            for (name, array, n) in [("a", "x", 1), ("a", "y", 0), ("b", "x", 0), ("b", "y", 0)] {
                let ds = s.open_dataset(name).await.unwrap();
                let got = ds.array_attributes(array).unwrap();
                assert_eq!(got.len(), n, "{when}: {name}/{array}: {got:?}");
            }
        }
    };
    check(&s, "pending").await;
    s.flush().await.unwrap();
    check(&s, "flushed").await;
    let s = reopen_mem(&storage, "an attribute of one array").await;
    check(&s, "reopened").await;
}
