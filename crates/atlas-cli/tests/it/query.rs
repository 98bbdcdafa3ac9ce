//! `atlas query` and `atlas stats --where`: counts equal to a full read of
//! the demo store and of the real Argo profiles, every output form, and bad
//! queries reported at their column with exit code 2.

use std::path::Path;

use atlas::{Atlas, Attr, FillValue};
use serde_json::Value;

use super::{atlas, demo, ok, s};

/// The cells of a 1-d or n-d float array that are not null (NaN or fill).
async fn values_f32(a: &Atlas, ds: &str, array: &str) -> Option<Vec<f64>> {
    let d = a.open_dataset(ds).await.unwrap();
    let schema = d.array_schema(array).unwrap()?;
    let fill = match schema.fill_value {
        Some(FillValue::Float32(f)) => Some(f),
        _ => None,
    };
    let v = d.read_array::<f32>(array, vec![], vec![]).await.unwrap()?;
    Some(
        v.iter()
            .filter(|x| !x.is_nan() && Some(**x) != fill)
            .map(|x| f64::from(*x))
            .collect(),
    )
}

async fn values_f64(a: &Atlas, ds: &str, array: &str) -> Option<Vec<f64>> {
    let d = a.open_dataset(ds).await.unwrap();
    let schema = d.array_schema(array).unwrap()?;
    let fill = match schema.fill_value {
        Some(FillValue::Float64(f)) => Some(f),
        _ => None,
    };
    let v = d.read_array::<f64>(array, vec![], vec![]).await.unwrap()?;
    Some(
        v.iter()
            .filter(|x| !x.is_nan() && Some(**x) != fill)
            .copied()
            .collect(),
    )
}

async fn strings(a: &Atlas, ds: &str, array: &str) -> Option<Vec<String>> {
    let d = a.open_dataset(ds).await.unwrap();
    let schema = d.array_schema(array).unwrap()?;
    let fill = match schema.fill_value {
        Some(FillValue::String(f)) => Some(f),
        _ => None,
    };
    let v = d
        .read_array::<String>(array, vec![], vec![])
        .await
        .unwrap()?;
    Some(
        v.iter()
            .filter(|x| Some(*x) != fill.as_ref())
            .cloned()
            .collect(),
    )
}

fn any(v: Option<&Vec<f64>>, f: &dyn Fn(f64) -> bool) -> bool {
    v.is_some_and(|v| v.iter().any(|x| f(*x)))
}

/// JULD is in days since 1950-01-01: 2020 is [25567, 25933).
fn in_2020(p: &Profile) -> bool {
    any(p.juld.as_ref(), &|d| (25_567.0..25_933.0).contains(&d))
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

fn min(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::min)
}

fn count(store: &Path, q: &str) -> usize {
    ok(&["query", s(store), q, "--count"])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Reference = Box<dyn Fn(&Profile) -> bool>;

/// What the reference needs of one dataset, read in full.
#[derive(Default)]
struct Profile {
    temp: Option<Vec<f64>>,
    psal: Option<Vec<f64>>,
    pres: Option<Vec<f64>>,
    lat: Option<Vec<f64>>,
    lon: Option<Vec<f64>>,
    juld: Option<Vec<f64>>,
    platform: Option<Vec<String>>,
    mode: Option<Vec<String>>,
    attrs: indexmap::IndexMap<String, Attr>,
}

#[test]
fn demo_counts_equal_a_full_read() {
    let d = demo();
    let profiles: Vec<Profile> = rt().block_on(async {
        let a = Atlas::open_path(d).await.unwrap();
        let mut out = Vec::new();
        for n in a.list_datasets().unwrap() {
            out.push(Profile {
                temp: values_f32(&a, &n, "TEMP").await,
                psal: values_f32(&a, &n, "PSAL").await,
                attrs: a.dataset_meta(&n).unwrap().unwrap().attributes,
                ..Profile::default()
            });
        }
        out
    });
    let attr_f = |p: &Profile, k: &str| match p.attrs.get(k) {
        Some(Attr::Float64(v)) => Some(*v),
        _ => None,
    };
    let march = |p: &Profile| match p.attrs.get("time") {
        // 2020-03-01 and 2020-04-01 in ns since 1970.
        Some(Attr::Timestamp(t)) => {
            (1_583_020_800_000_000_000..1_585_699_200_000_000_000).contains(&t.0)
        }
        _ => false,
    };
    let cases: Vec<(&str, Reference)> = vec![
        (
            "TEMP.max > 15",
            Box::new(|p| p.temp.as_deref().and_then(max).is_some_and(|m| m > 15.0)),
        ),
        (
            "latitude between -20 and 20",
            Box::new(move |p| attr_f(p, "latitude").is_some_and(|v| (-20.0..=20.0).contains(&v))),
        ),
        ("time in 2020-03", Box::new(march)),
        (
            "any(TEMP between 10.5 and 10.6)",
            Box::new(|p| {
                p.temp
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|v| (10.5..=10.6).contains(v)))
            }),
        ),
        (
            "data_mode = 'D' and PSAL.min < 34.5",
            Box::new(|p| {
                matches!(p.attrs.get("data_mode"), Some(Attr::String(m)) if m == "D")
                    && p.psal.as_deref().and_then(min).is_some_and(|m| m < 34.5)
            }),
        ),
        (
            "not has(TEMP) or all(TEMP < 18)",
            Box::new(|p| p.temp.as_ref().is_none_or(|t| t.iter().all(|v| *v < 18.0))),
        ),
    ];
    for (q, reference) in &cases {
        let want = profiles.iter().filter(|p| reference(p)).count();
        assert_eq!(count(d, q), want, "{q}");
    }
}

#[test]
fn query_output_forms_agree() {
    let d = demo();
    let q = "TEMP.max > 15 and latitude > 0";
    let text = ok(&["query", s(d), q]);
    let names: Vec<&str> = text.lines().collect();
    assert!(
        !names.is_empty(),
        "the demo store has warm northern profiles"
    );
    let json: Value =
        serde_json::from_str(&ok(&["query", s(d), q, "--json", "--explain"])).unwrap();
    assert_eq!(json["count"], names.len());
    let listed: Vec<&str> = json["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed, names);
    let terms = json["explain"]["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 2);
    assert_eq!(terms[0]["term"], "TEMP.max > 15");
    assert_eq!(terms[0]["exact"], true);
    assert_eq!(json["explain"]["matches"], names.len());
    // --read: the values `atlas cat` prints.
    let read: Value =
        serde_json::from_str(&ok(&["query", s(d), q, "--json", "--read", "TEMP,PSAL"])).unwrap();
    let first = &read["datasets"][0];
    assert_eq!(first["name"], names[0]);
    let cat: Value = serde_json::from_str(&ok(&["cat", s(d), names[0], "TEMP", "--json"])).unwrap();
    assert_eq!(first["arrays"]["TEMP"], cat["data"], "{cat}");
    assert!(first["arrays"]["PSAL"].is_array());
    let lines = ok(&["query", s(d), q, "--read", "TEMP"]);
    assert_eq!(lines.lines().count(), names.len());
    assert!(
        lines.starts_with(&format!("{} TEMP [", names[0])),
        "{lines}"
    );
    let explained = ok(&[
        "query",
        s(d),
        "any(TEMP between 10.5 and 10.6)",
        "--count",
        "--explain",
    ]);
    assert!(explained.contains("decoded"), "{explained}");
    assert!(explained.contains("data read"), "{explained}");
}

#[test]
fn bad_queries_exit_2_and_point_at_the_column() {
    let d = demo();
    let out = atlas(&["query", s(d), "TEMP.max >"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column 11"), "{err}");
    assert!(err.contains("\n  TEMP.max >\n            ^"), "{err}");
    let out = atlas(&["query", s(d), "TEPM.max > 3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean \"TEMP\""), "{err}");
    let out = atlas(&["query", s(d), "TEMP.max > 'warm'"]);
    assert_eq!(out.status.code(), Some(2));
    let out = atlas(&["stats", s(d), "TEMP", "--where", "time in 2020-13"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stats_where_totals_only_the_matches() {
    let d = demo();
    let q = "latitude > 0 and TEMP.max > 12";
    let n = count(d, &format!("has(TEMP) and {q}"));
    assert!(n > 0);
    let v: Value =
        serde_json::from_str(&ok(&["stats", s(d), "TEMP", "--where", q, "--json"])).unwrap();
    assert_eq!(v["total"]["datasets"], n);
    let rows = v["datasets"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["max"].as_f64().unwrap() > 12.0));
    let text = ok(&["stats", s(d), "TEMP", "--where", q]);
    assert!(text.contains(&format!("TOTAL ({n} datasets)")), "{text}");
}

/// The real Argo profiles: a fixed set of queries, each count equal to the
/// count found by reading every profile in full.
#[test]
fn argo_counts_equal_a_full_read() {
    let Some(dir) = atlas_netcdf::realdata::argo_dir().expect("unpack the Argo archive") else {
        let required = std::env::var_os("ATLAS_REQUIRE_REALDATA").is_some_and(|x| !x.is_empty());
        assert!(
            !required,
            "real data required but the Argo archive is absent"
        );
        eprintln!("!!! SKIPPED: the Argo archive is absent; the query real-data test did not run");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("argo");
    let out = ok(&["--quiet", "import", s(&store), s(&dir)]);
    assert!(
        out.contains(&format!(
            "imported {} files",
            atlas_netcdf::realdata::ARGO_FILES
        )),
        "{out}"
    );
    let profiles: Vec<Profile> = rt().block_on(async {
        let a = Atlas::open_path(&store).await.unwrap();
        let mut out = Vec::new();
        for n in a.list_datasets().unwrap() {
            out.push(Profile {
                temp: values_f32(&a, &n, "TEMP").await,
                psal: values_f32(&a, &n, "PSAL").await,
                pres: values_f32(&a, &n, "PRES").await,
                lat: values_f64(&a, &n, "LATITUDE").await,
                lon: values_f64(&a, &n, "LONGITUDE").await,
                juld: values_f64(&a, &n, "JULD").await,
                platform: strings(&a, &n, "PLATFORM_NUMBER").await,
                mode: strings(&a, &n, "DATA_MODE").await,
                attrs: indexmap::IndexMap::new(),
            });
        }
        out
    });
    assert_eq!(profiles.len(), atlas_netcdf::realdata::ARGO_FILES);
    // 2010-01-01 is day 21915 since 1950-01-01.
    let platform = profiles
        .iter()
        .find_map(|p| p.platform.as_ref().and_then(|v| v.first().cloned()))
        .expect("a profile with a platform number");
    let cases: Vec<(String, Reference)> = vec![
        (
            "TEMP.max > 30".into(),
            Box::new(|p| p.temp.as_deref().and_then(max).is_some_and(|m| m > 30.0)),
        ),
        (
            "LATITUDE between -10 and 10".into(),
            Box::new(|p| any(p.lat.as_ref(), &|x| (-10.0..=10.0).contains(&x))),
        ),
        ("JULD in 2020".into(), Box::new(in_2020)),
        (
            "TEMP.max > 25 and LATITUDE between -10 and 10 and JULD in 2020".into(),
            Box::new(|p| {
                p.temp.as_deref().and_then(max).is_some_and(|m| m > 25.0)
                    && any(p.lat.as_ref(), &|x| (-10.0..=10.0).contains(&x))
                    && in_2020(p)
            }),
        ),
        (
            "any(TEMP between 10 and 10.01)".into(),
            Box::new(|p| any(p.temp.as_ref(), &|x| (10.0..=10.01).contains(&x))),
        ),
        (
            "all(PRES >= 0)".into(),
            Box::new(|p| p.pres.as_ref().is_some_and(|v| v.iter().all(|x| *x >= 0.0))),
        ),
        (
            "PSAL.valid = 0 or not has(PSAL)".into(),
            Box::new(|p| p.psal.as_ref().is_none_or(Vec::is_empty)),
        ),
        (
            format!("PLATFORM_NUMBER = '{platform}'"),
            Box::new(move |p| p.platform.as_ref().is_some_and(|v| v.contains(&platform))),
        ),
        (
            "DATA_MODE = 'D' and TEMP.min < 0".into(),
            Box::new(|p| {
                p.mode.as_ref().is_some_and(|m| m.iter().any(|x| x == "D"))
                    && p.temp.as_deref().and_then(min).is_some_and(|m| m < 0.0)
            }),
        ),
        (
            "not JULD < 2010-01-01 and any(LONGITUDE > 0)".into(),
            Box::new(|p| {
                !any(p.juld.as_ref(), &|d| d < 21_915.0) && any(p.lon.as_ref(), &|x| x > 0.0)
            }),
        ),
    ];
    let mut nontrivial = 0;
    for (q, reference) in &cases {
        let want = profiles.iter().filter(|p| reference(p)).count();
        if want > 0 && want < profiles.len() {
            nontrivial += 1;
        }
        assert_eq!(count(&store, q), want, "{q}");
    }
    assert!(
        nontrivial >= 8,
        "the fixed queries should split the profiles"
    );
}

/// Splits a shell line into words: single and double quotes, no escapes
/// (all docs/query.md uses).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Every `atlas query` and `atlas stats` line of docs/query.md's first shell
/// block runs, on the demo store instead of /tmp/atlas-demo.
#[test]
fn docs_examples_run() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/query.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let block = doc
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a shell block");
    let mut ran = 0;
    for line in block.lines() {
        let mut words = shell_words(line);
        if words.len() < 3 || words[0] != "atlas" || !matches!(words[1].as_str(), "query" | "stats")
        {
            continue;
        }
        assert_eq!(words[2], "/tmp/atlas-demo", "{line}");
        words[2] = s(demo()).to_owned();
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let out = ok(&args);
        assert!(!out.is_empty(), "{line}");
        ran += 1;
    }
    assert!(ran >= 6, "{ran} examples found in {}", doc_path.display());
}
