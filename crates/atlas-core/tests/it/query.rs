//! Queries (issue 14): evaluator tables on edge values (NaN, -0.0, u64 beyond
//! i64, empty arrays, nulls = cells, string byte order, the upper bound of
//! `in 2020`), typed errors, the chunk-level and decoding stages, results that
//! do not change across flush, compaction and reopen, and an oracle property
//! test ([`oracle`]).

mod oracle;

use atlas_core::query::{Error as QueryError, Query};
use atlas_core::{Atlas, Attr, DatasetView, ErrorKind, FillValue, MemoryStorage, TimestampNs};

use crate::common::{arr1, create_mem, no_grace, reopen_mem};

async fn run(a: &Atlas, q: &str) -> Vec<String> {
    let query = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    a.query(&query)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .into_names()
}

async fn f32s(ds: &DatasetView, name: &str, v: Vec<f32>, fill: Option<f32>, chunk: Option<u64>) {
    let n = v.len() as u64;
    ds.define_array::<f32>(
        name,
        vec!["n".into()],
        vec![n],
        chunk.map(|c| vec![c]),
        fill.map(FillValue::Float32),
    )
    .await
    .unwrap();
    if n > 0 {
        ds.write_array(name, vec![], arr1(v).view()).await.unwrap();
    }
}

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// 2021-01-01T00:00:00Z in days since 1950-01-01 (71 years, 18 leap days).
const DAYS_2021: f64 = 71.0 * 365.0 + 18.0;
/// 2020-01-01 in days since 1950-01-01.
const DAYS_2020: f64 = DAYS_2021 - 366.0;
/// 2021-01-01T00:00:00Z in nanoseconds since 1970 (51 years, 13 leap days).
const NS_2021: i64 = (51 * 365 + 13) * NS_PER_DAY;

/// One dataset per edge case of the evaluator tables.
async fn table_store(storage: &MemoryStorage) -> Atlas {
    let a = create_mem(storage, no_grace()).await;
    let ds = a.create_dataset("nan").await.unwrap();
    f32s(&ds, "TEMP", vec![f32::NAN, 1.0], None, None).await;
    ds.set_array_attribute("TEMP", "units", "degree_Celsius".into())
        .unwrap();
    ds.set_attribute("score", Attr::Float64(f64::NAN)).unwrap();
    let ds = a.create_dataset("negzero").await.unwrap();
    f32s(&ds, "TEMP", vec![-0.0], None, None).await;
    ds.set_attribute("score", Attr::Float64(-0.0)).unwrap();
    let ds = a.create_dataset("big").await.unwrap();
    ds.define_array::<u64>("U", vec!["n".into()], vec![1], None, None)
        .await
        .unwrap();
    ds.write_array("U", vec![], arr1(vec![u64::MAX]).view())
        .await
        .unwrap();
    ds.set_attribute("cycle", Attr::UInt64(u64::MAX)).unwrap();
    ds.set_attribute("flags", Attr::Int64List(vec![1, 2, 3]))
        .unwrap();
    let ds = a.create_dataset("small").await.unwrap();
    ds.define_array::<u64>("U", vec!["n".into()], vec![1], None, None)
        .await
        .unwrap();
    ds.write_array("U", vec![], arr1(vec![0u64]).view())
        .await
        .unwrap();
    ds.set_attribute("cycle", Attr::Int64(-1)).unwrap();
    ds.set_attribute("flags", Attr::Int64List(vec![])).unwrap();
    let ds = a.create_dataset("empty").await.unwrap();
    f32s(&ds, "TEMP", vec![], None, None).await;
    let ds = a.create_dataset("allnull").await.unwrap();
    f32s(&ds, "TEMP", vec![-999.0, -999.0], Some(-999.0), None).await;
    let ds = a.create_dataset("strings").await.unwrap();
    ds.define_array::<String>("S", vec!["n".into()], vec![3], Some(vec![1]), None)
        .await
        .unwrap();
    let words: Vec<String> = ["apple", "Zebra", "éclair"].map(String::from).to_vec();
    ds.write_array("S", vec![], arr1(words).view())
        .await
        .unwrap();
    ds.set_attribute("platform", "6903240".into()).unwrap();
    for (name, days, ns) in [
        ("t2019", DAYS_2020 - 0.001, NS_2021 - 367 * NS_PER_DAY),
        ("t2020lo", DAYS_2020, NS_2021 - 366 * NS_PER_DAY),
        ("t2020", DAYS_2021 - 0.5, NS_2021 - 1),
        ("t2021", DAYS_2021, NS_2021),
    ] {
        let ds = a.create_dataset(name).await.unwrap();
        ds.define_array::<f64>("JULD", vec!["n".into()], vec![1], None, None)
            .await
            .unwrap();
        ds.write_array("JULD", vec![], arr1(vec![days]).view())
            .await
            .unwrap();
        ds.set_array_attribute("JULD", "units", "days since 1950-01-01 00:00:00 UTC".into())
            .unwrap();
        ds.define_array::<TimestampNs>("W", vec!["n".into()], vec![1], None, None)
            .await
            .unwrap();
        ds.write_array("W", vec![], arr1(vec![TimestampNs(ns)]).view())
            .await
            .unwrap();
        ds.set_attribute("platform", "6903241".into()).unwrap();
    }
    a
}

/// (query, the datasets it must match, in insertion order). The store holds,
/// in order: nan, negzero, big, small, empty, allnull, strings, t2019,
/// t2020lo, t2020, t2021.
const TABLE: &[(&str, &[&str])] = &[
    // NaN cells are null: they are neither the max nor a match.
    ("TEMP.max = 1", &["nan"]),
    ("any(TEMP > 0.5)", &["nan"]),
    ("TEMP.nulls = 1", &["nan"]),
    ("any(TEMP != 1)", &["negzero"]),
    // -0.0 equals 0.0 and is not below it.
    ("TEMP = 0", &["negzero"]),
    ("TEMP < 0", &[]),
    ("TEMP.min >= 0 and TEMP.max <= 0", &["negzero"]),
    ("score = 0", &["negzero"]),
    // A NaN attribute is unordered: only `!=` and negated tests hold.
    ("score = nan", &[]),
    ("score != 1", &["nan", "negzero"]),
    ("score not between 0 and 1", &["nan"]),
    ("score not in (5)", &["nan", "negzero"]),
    // u64 beyond i64, against integers and floats, exactly.
    ("U > 9223372036854775807", &["big"]),
    ("U.max = 18446744073709551615", &["big"]),
    ("U > -1", &["big", "small"]),
    ("U < 1.8446744073709552e19", &["big", "small"]),
    ("U = 1.8446744073709552e19", &[]),
    ("cycle > 9223372036854775807", &["big"]),
    ("cycle < 0", &["small"]),
    // Empty arrays and nulls = cells: no value, so `any` is false, `all`
    // vacuously true, min/max null.
    ("TEMP.valid = 0", &["empty", "allnull"]),
    ("TEMP.cells = 0", &["empty"]),
    ("has(TEMP) and TEMP.max is null", &["empty", "allnull"]),
    ("all(TEMP >= 0)", &["nan", "negzero", "empty", "allnull"]),
    ("any(TEMP >= 0)", &["nan", "negzero"]),
    ("TEMP.max > -1e30", &["nan", "negzero"]),
    // A missing array is null: every test is false but `is null`, so `not`
    // selects the datasets without it.
    (
        "not has(TEMP) and not has(S) and not has(JULD)",
        &["big", "small"],
    ),
    (
        "not TEMP.max > -1e30",
        &[
            "big", "small", "empty", "allnull", "strings", "t2019", "t2020lo", "t2020", "t2021",
        ],
    ),
    // Strings compare by bytes: "Zebra" < "apple" < "éclair".
    ("S.min = 'Zebra'", &["strings"]),
    ("S.max = 'éclair'", &["strings"]),
    ("any(S > 'zzz')", &["strings"]),
    ("any(S between 'a' and 'b')", &["strings"]),
    ("all(S < 'b')", &[]),
    ("any(S in ('Zebra', 'x'))", &["strings"]),
    // Calendar intervals are half-open, in each array's units.
    ("JULD in 2020", &["t2020lo", "t2020"]),
    ("JULD in 2021", &["t2021"]),
    ("JULD in 2019", &["t2019"]),
    ("JULD not in 2020", &["t2019", "t2021"]),
    ("JULD >= 2021-01-01", &["t2021"]),
    ("JULD < 2020-01-01T00:00:00Z", &["t2019"]),
    (
        "JULD between 2020-01-01 and 2020-12-31T12:00",
        &["t2020lo", "t2020"],
    ),
    ("W in 2020", &["t2020lo", "t2020"]),
    ("W in 2021", &["t2021"]),
    ("W in 2020-12-31", &["t2020"]),
    ("W.max < 2021-01-01", &["t2019", "t2020lo", "t2020"]),
    // Attributes: typed, lists by `contains`, per-array attributes.
    ("flags contains 2", &["big"]),
    ("flags not contains 2", &["small"]),
    (
        "not flags contains 2",
        &[
            "nan", "negzero", "small", "empty", "allnull", "strings", "t2019", "t2020lo", "t2020",
            "t2021",
        ],
    ),
    (
        "flags is null",
        &[
            "nan", "negzero", "empty", "allnull", "strings", "t2019", "t2020lo", "t2020", "t2021",
        ],
    ),
    ("TEMP@units = 'degree_Celsius'", &["nan"]),
    (
        "platform = '6903240' or platform in ('6903241') and JULD in 2021",
        &["strings", "t2021"],
    ),
    (
        "@platform > '6903240'",
        &["t2019", "t2020lo", "t2020", "t2021"],
    ),
];

async fn check_table(a: &Atlas, when: &str) {
    for (q, want) in TABLE {
        assert_eq!(run(a, q).await, *want, "{q} ({when})");
    }
}

#[tokio::test]
async fn evaluator_table_holds_pending_flushed_compacted_reopened() {
    let storage = MemoryStorage::new();
    let a = table_store(&storage).await;
    check_table(&a, "pending writes").await;
    a.flush().await.unwrap();
    check_table(&a, "flushed").await;
    a.compact().await.unwrap();
    check_table(&a, "compacted").await;
    drop(a);
    let b = reopen_mem(&storage, "query table").await;
    check_table(&b, "reopened").await;
}

#[tokio::test]
async fn bad_queries_are_typed_errors() {
    let storage = MemoryStorage::new();
    let a = table_store(&storage).await;
    let err = |q: &'static str| {
        let a = a.clone();
        async move {
            let e = a.query(&Query::parse(q).unwrap()).await.expect_err(q);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{q}: {e}");
            match e {
                atlas_core::Error::Query(inner) => inner,
                other => panic!("{q}: not a query error: {other:?}"),
            }
        }
    };
    for q in [
        "TEMP > 'x'",
        "TEMP in 2020",
        "S > 3",
        "cycle contains 1",
        "flags = 1",
        "W > 5",
        "U = true",
        "TEMP.nulls > 2020-01-01",
        "platform > 2020-01-01",
    ] {
        assert!(
            matches!(err(q).await, QueryError::TypeMismatch { .. }),
            "{q}"
        );
    }
    match err("TEPM.max > 3").await {
        QueryError::UnknownName {
            name, suggestions, ..
        } => {
            assert_eq!(name, "TEPM");
            assert_eq!(suggestions, ["TEMP"]);
        }
        other => panic!("{other:?}"),
    }
    match err("TEMP@unit = 'K'").await {
        QueryError::UnknownName {
            suggestions, kind, ..
        } => {
            assert_eq!(suggestions, ["units"]);
            assert_eq!(kind, "attribute of TEMP");
        }
        other => panic!("{other:?}"),
    }
    match err("plattform = 'x'").await {
        QueryError::UnknownName { suggestions, .. } => assert_eq!(suggestions, ["platform"]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        err("@TEMP = 1").await,
        QueryError::UnknownName { .. }
    ));
    assert!(matches!(
        err("has(nothing)").await,
        QueryError::UnknownName { .. }
    ));
    // The message names the dataset where the types met.
    let e = err("S > 3").await.to_string();
    assert!(e.contains("strings"), "{e}");
}

#[tokio::test]
async fn undecided_datasets_read_chunk_statistics_then_only_undecided_chunks() {
    let storage = MemoryStorage::new();
    let a = create_mem(&storage, no_grace()).await;
    let ds = a.create_dataset("wide").await.unwrap();
    f32s(
        &ds,
        "X",
        vec![0.0, 10.0, 0.0, 10.0, 4.0, 6.0],
        None,
        Some(2),
    )
    .await;
    let ds = a.create_dataset("has5").await.unwrap();
    f32s(&ds, "X", vec![0.0, 10.0, 5.0, 5.0, 1.0, 2.0], None, Some(2)).await;
    let ds = a.create_dataset("narrow").await.unwrap();
    f32s(&ds, "X", vec![20.0, 30.0], None, Some(2)).await;
    a.flush().await.unwrap();

    let r = a.query(&Query::parse("any(X = 5)").unwrap()).await.unwrap();
    assert_eq!(r.names(), ["has5"]);
    let t = &r.explain().terms[0];
    // "narrow" is decided by its dataset statistics; "wide" and "has5" are not.
    assert_eq!((t.rows, t.yes, t.maybe, t.exact), (3, 0, 2, false));
    assert_eq!(t.chunk_rows, 6);
    // has5: its second chunk's statistics (min = max = 5) prove it, nothing
    // decoded; wide: every chunk spans 5 and is decoded.
    assert_eq!(t.chunks_decoded, 3);
    assert!(t.bytes_read > 0);

    // wide: its last chunk's max (6) proves it without decoding; has5: only
    // its first chunk spans 6, and is decoded.
    let r = a.query(&Query::parse("any(X = 6)").unwrap()).await.unwrap();
    assert_eq!(r.names(), ["wide"]);
    assert_eq!(r.explain().terms[0].chunks_decoded, 1);

    let r = a
        .query(&Query::parse("all(X != 5)").unwrap())
        .await
        .unwrap();
    assert_eq!(r.names(), ["wide", "narrow"]);

    // Statistics alone decide: nothing read.
    let r = a
        .query(&Query::parse("X.max > 25 or any(X > 9)").unwrap())
        .await
        .unwrap();
    assert_eq!(r.names(), ["wide", "has5", "narrow"]);
    assert_eq!(r.explain().bytes_read(), 0);
    assert!(r.explain().terms.iter().all(|t| t.exact));

    // A term the rest of the expression already decides is not resolved.
    let r = a
        .query(&Query::parse("X.max > 25 and any(X = 5)").unwrap())
        .await
        .unwrap();
    assert!(r.is_empty());
    assert_eq!(r.explain().terms[1].chunks_decoded, 0);
}

#[tokio::test]
async fn queries_see_pending_writes_and_never_deleted_or_replaced_data() {
    let storage = MemoryStorage::new();
    let a = create_mem(&storage, no_grace()).await;
    for (name, v) in [("a", 40.0), ("b", 10.0), ("c", 35.0)] {
        let ds = a.create_dataset(name).await.unwrap();
        f32s(&ds, "TEMP", vec![v, 1.0], Some(-1.0), Some(1)).await;
    }
    a.flush().await.unwrap();
    let q = Query::parse("TEMP.max > 30").unwrap();
    assert_eq!(a.query(&q).await.unwrap().names(), ["a", "c"]);

    // Pending: a delete, a re-created name with cool data, a rewrite.
    a.delete_dataset("a").await.unwrap();
    let ds = a.create_dataset("a").await.unwrap();
    f32s(&ds, "TEMP", vec![5.0, 6.0], Some(-1.0), Some(1)).await;
    let b = a.open_dataset("b").await.unwrap();
    b.write_array("TEMP", vec![1], arr1(vec![31.0f32]).view())
        .await
        .unwrap();
    a.delete_dataset("c").await.unwrap();
    let want = ["b"];
    assert_eq!(a.query(&q).await.unwrap().names(), want, "pending");
    // Another handle on the committed state sees the old answer.
    let reader = reopen_mem(&storage, "reader").await;
    assert_eq!(reader.query(&q).await.unwrap().names(), ["a", "c"]);
    a.flush().await.unwrap();
    assert_eq!(a.query(&q).await.unwrap().names(), want, "flushed");
    a.compact().await.unwrap();
    assert_eq!(a.query(&q).await.unwrap().names(), want, "compacted");
    drop(a);
    let a = reopen_mem(&storage, "reopen").await;
    assert_eq!(a.query(&q).await.unwrap().names(), want, "reopened");
    // Insertion order: the re-created "a" now comes after "b".
    let all = a.query(&Query::parse("has(TEMP)").unwrap()).await.unwrap();
    assert_eq!(all.names(), ["b", "a"]);
    assert_eq!(all.explain().datasets, 2);
}

/// Flushes that append datasets in name order carry the oldest merged run
/// as it is stored; a flush whose changes sort after that run's names but
/// hold older ids (updates of datasets an older run holds) must not, or the
/// catalog's rows would come out of id order. Every flush here is checked
/// through a reopen: listing by id, each dataset's values and statistics, and
/// a query answered from the catalog columns.
#[tokio::test]
async fn merges_carry_only_runs_that_precede_everything_else() {
    let storage = MemoryStorage::new();
    let a = create_mem(&storage, no_grace()).await;
    let mut want: Vec<(String, f32)> = Vec::new();
    // 300 "x" datasets, then 30 "a" datasets (sorting before them), each
    // flush its own run; then updates of old "x" datasets (merged with the
    // "a" run, not carrying it); then three appends in name order ("y…"),
    // merged and carried.
    for (prefix, n) in [("x", 300u32), ("a", 30)] {
        for i in 0..n {
            let (name, v) = (format!("{prefix}{i:04}"), i as f32);
            let ds = a.create_dataset(&name).await.unwrap();
            f32s(&ds, "T", vec![v, v + 0.5], None, None).await;
            ds.set_attribute("n", Attr::Int64(i64::from(i))).unwrap();
            want.push((name, v));
        }
        a.flush().await.unwrap();
    }
    // Updates of 20 "x" datasets: their names sort after every "a", their
    // ids are below the "a" datasets' ids.
    for i in 0..20u32 {
        let name = format!("x{i:04}");
        let ds = a.open_dataset(&name).await.unwrap();
        let v = 1000.0 + i as f32;
        ds.write_array("T", vec![], arr1(vec![v, v + 0.5]).view())
            .await
            .unwrap();
        want.iter_mut().find(|(n, _)| *n == name).unwrap().1 = v;
    }
    a.flush().await.unwrap();
    for round in 0..3u32 {
        for i in 0..40u32 {
            let name = format!("y{round}{i:03}");
            let v = 500.0 + (round * 40 + i) as f32;
            let ds = a.create_dataset(&name).await.unwrap();
            f32s(&ds, "T", vec![v, v + 0.5], None, None).await;
            want.push((name, v));
        }
        a.flush().await.unwrap();
    }
    drop(a);
    let a = reopen_mem(&storage, "after the merges").await;
    let listed = a.list_datasets_with_ids().unwrap();
    assert_eq!(listed.len(), want.len());
    assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "ids in order");
    let names: Vec<&str> = listed.iter().map(|(_, n)| n.as_str()).collect();
    let wanted: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, wanted, "listed in creation order");
    for (name, v) in &want {
        let ds = a.open_dataset(name).await.unwrap();
        let back: Vec<f32> = ds
            .read_array::<f32>("T", vec![], vec![])
            .await
            .unwrap()
            .expect("T is defined")
            .into_iter()
            .collect();
        assert_eq!(back, [*v, *v + 0.5], "{name}");
        let stats = ds.array_stats("T").await.unwrap().unwrap();
        assert_eq!(
            format!("{:?} {:?}", stats.min, stats.max),
            format!(
                "{:?} {:?}",
                Some(atlas_core::StatValue::Float(f64::from(*v))),
                Some(atlas_core::StatValue::Float(f64::from(*v + 0.5)))
            ),
            "{name}"
        );
    }
    let mut big: Vec<String> = want
        .iter()
        .filter(|(_, v)| *v >= 500.0)
        .map(|(n, _)| n.clone())
        .collect();
    big.sort();
    let mut found: Vec<String> = a
        .query(&Query::parse("T.max > 400").unwrap())
        .await
        .unwrap()
        .names()
        .to_vec();
    found.sort();
    assert_eq!(found, big);
}
