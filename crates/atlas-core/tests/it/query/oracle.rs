//! The oracle: random stores (f32 with NaN and -0.0, u64 beyond i64, strings,
//! CF-time f64, timestamps, fill values or none, all-null and partly written
//! arrays, attributes and lists, deletes, re-creates, flushes, compactions,
//! reopens) and random queries. `Atlas::query` must equal a brute-force
//! evaluation over the public API — `array_stats`, attributes, and a full read
//! of every array for value terms — before and after a flush, a compaction and
//! a reopen. A single term's dataset-level "yes" never exceeds the truth and
//! its "yes" plus "maybe" never falls short of it: pruning never drops a true
//! match and a "yes" is always true.

use std::cmp::Ordering;
use std::collections::HashMap;

use atlas_core::query::{Error as QueryError, Query};
use atlas_core::{
    ArrayElement, Atlas, Attr, DType, Error, FillValue, MemoryStorage, StatValue, TimestampNs,
};
use indexmap::IndexMap;
use proptest::prelude::*;

use crate::common::{arr1, create_mem, no_grace, reopen_mem};

const DATASETS: [&str; 4] = ["d0", "d1", "d2", "d3"];
const ARRAYS: [&str; 5] = ["T", "U", "S", "J", "W"];
const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;
/// 2020-01-01 and 2021-01-01 in days since 1950-01-01.
const DAYS_2020: f64 = 25_567.0;
const DAYS_2021: f64 = 25_933.0;
/// The same instants in nanoseconds since 1970-01-01.
const NS_2020: i64 = 18_262 * NS_PER_DAY;
const NS_2021: i64 = 18_628 * NS_PER_DAY;
/// 1950-01-01 in nanoseconds since 1970-01-01.
const NS_1950: i64 = -7_305 * NS_PER_DAY;

const T_POOL: [f32; 7] = [f32::NAN, -0.0, 0.0, 1.5, 2.0, 30.5, -999.0];
const U_POOL: [u64; 4] = [0, 1, 1 << 63, u64::MAX];
const S_POOL: [&str; 5] = ["", "a", "B", "é", "ab"];
const J_POOL: [f64; 5] = [25_566.5, DAYS_2020, 25_932.5, DAYS_2021, f64::NAN];
const W_POOL: [i64; 4] = [NS_2020 - 1, NS_2020, NS_2021 - 1, NS_2021];

/// Shape (1-d), chunk and dtype of each array name.
fn spec(array: usize) -> (u64, u64, DType) {
    match array {
        0 => (6, 2, DType::Float32),
        1 => (4, 2, DType::UInt64),
        2 => (3, 1, DType::String),
        3 => (2, 1, DType::Float64),
        _ => (2, 2, DType::Timestamp),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Delete(usize),
    Define {
        ds: usize,
        array: usize,
        fill: bool,
        start: u8,
        values: Vec<u8>,
    },
    Write {
        ds: usize,
        array: usize,
        start: u8,
        values: Vec<u8>,
    },
    DeleteArray(usize, usize),
    SetAttr(usize, usize, u8),
    DeleteAttr(usize, usize),
    SetUnits(usize, bool),
    Flush,
    Compact,
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let ds = 0..DATASETS.len();
    let array = 0..ARRAYS.len();
    let values = proptest::collection::vec(any::<u8>(), 0..=6);
    prop_oneof![
        3 => ds.clone().prop_map(Op::Create),
        1 => ds.clone().prop_map(Op::Delete),
        5 => (ds.clone(), array.clone(), any::<bool>(), any::<u8>(), values.clone())
            .prop_map(|(ds, array, fill, start, values)| Op::Define { ds, array, fill, start, values }),
        4 => (ds.clone(), array.clone(), any::<u8>(), values)
            .prop_map(|(ds, array, start, values)| Op::Write { ds, array, start, values }),
        1 => (ds.clone(), array).prop_map(|(d, a)| Op::DeleteArray(d, a)),
        3 => (ds.clone(), 0..4usize, any::<u8>()).prop_map(|(d, k, v)| Op::SetAttr(d, k, v)),
        1 => (ds.clone(), 0..4usize).prop_map(|(d, k)| Op::DeleteAttr(d, k)),
        1 => (ds, any::<bool>()).prop_map(|(d, k)| Op::SetUnits(d, k)),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Changes without a commit or reopen, so they stay pending.
fn later_op_strategy() -> impl Strategy<Value = Op> {
    op_strategy().prop_filter("stays pending", |op| {
        !matches!(op, Op::Flush | Op::Compact | Op::Reopen)
    })
}

const ATTR_KEYS: [&str; 4] = ["platform", "cycle", "score", "flags"];

fn attr_value(key: usize, v: u8) -> Attr {
    match key {
        0 => Attr::String(["6903240", "6903241"][v as usize % 2].to_owned()),
        1 => [Attr::Int64(-1), Attr::Int64(5), Attr::UInt64(u64::MAX)][v as usize % 3].clone(),
        2 => Attr::Float64([f64::NAN, -0.0, 1.5][v as usize % 3]),
        _ => Attr::Int64List((1..=3).filter(|b| v & (1 << b) != 0).collect()),
    }
}

/// Writes `values` (indexes into the array's pool) at `start`, clipped.
async fn write(a: &Atlas, ds: &str, array: usize, start: u8, values: &[u8]) {
    let (n, _, _) = spec(array);
    let start = u64::from(start) % n;
    let len = (values.len() as u64).min(n - start) as usize;
    if len == 0 {
        return;
    }
    let v = &values[..len];
    let d = a.open_dataset(ds).await.unwrap();
    let name = ARRAYS[array];
    let at = vec![start];
    match array {
        0 => {
            d.write_array(
                name,
                at,
                arr1(v.iter().map(|i| T_POOL[*i as usize % 7]).collect()).view(),
            )
            .await
        }
        1 => {
            d.write_array(
                name,
                at,
                arr1(v.iter().map(|i| U_POOL[*i as usize % 4]).collect()).view(),
            )
            .await
        }
        2 => {
            d.write_array(
                name,
                at,
                arr1(
                    v.iter()
                        .map(|i| S_POOL[*i as usize % 5].to_owned())
                        .collect(),
                )
                .view(),
            )
            .await
        }
        3 => {
            d.write_array(
                name,
                at,
                arr1(v.iter().map(|i| J_POOL[*i as usize % 5]).collect()).view(),
            )
            .await
        }
        _ => {
            d.write_array(
                name,
                at,
                arr1(
                    v.iter()
                        .map(|i| TimestampNs(W_POOL[*i as usize % 4]))
                        .collect(),
                )
                .view(),
            )
            .await
        }
    }
    .unwrap();
}

async fn apply(a: &mut Atlas, storage: &MemoryStorage, op: &Op) {
    let exists = |a: &Atlas, d: usize| a.dataset_exists(DATASETS[d]).unwrap();
    let has = |a: &Atlas, d: usize, arr: usize| {
        a.dataset_meta(DATASETS[d])
            .unwrap()
            .is_some_and(|m| m.arrays.contains_key(ARRAYS[arr]))
    };
    match op {
        Op::Create(d) if !exists(a, *d) => {
            a.create_dataset(DATASETS[*d]).await.unwrap();
        }
        Op::Delete(d) if exists(a, *d) => a.delete_dataset(DATASETS[*d]).await.unwrap(),
        Op::Define {
            ds,
            array,
            fill,
            start,
            values,
        } if exists(a, *ds) && !has(a, *ds, *array) => {
            let (n, chunk, dtype) = spec(*array);
            let fill_value = fill.then(|| match dtype {
                DType::Float32 => FillValue::Float32(-999.0),
                DType::UInt64 => FillValue::UInt64(0),
                DType::String => FillValue::String(String::new()),
                DType::Float64 => FillValue::Float64(99_999.0),
                _ => FillValue::Timestamp(TimestampNs(0)),
            });
            let schema = atlas_core::ArraySchema::new(
                ARRAYS[*array],
                dtype,
                vec!["n".into()],
                vec![n],
                Some(vec![chunk]),
                fill_value,
            )
            .unwrap();
            let d = a.open_dataset(DATASETS[*ds]).await.unwrap();
            d.define_array_schema(ARRAYS[*array], schema).await.unwrap();
            if *array == 3 {
                d.set_array_attribute("J", "units", "days since 1950-01-01".into())
                    .unwrap();
            }
            if *fill {
                write(a, DATASETS[*ds], *array, *start, values).await;
            } else {
                // Without a fill value unwritten cells read as zero but count
                // as null, so the oracle writes every cell at once.
                let full: Vec<u8> = (0..n as usize)
                    .map(|i| values.get(i).copied().unwrap_or(i as u8))
                    .collect();
                write(a, DATASETS[*ds], *array, 0, &full).await;
            }
        }
        Op::Write {
            ds,
            array,
            start,
            values,
        } if has(a, *ds, *array) => {
            write(a, DATASETS[*ds], *array, *start, values).await;
        }
        Op::DeleteArray(d, arr) if has(a, *d, *arr) => {
            let ds = a.open_dataset(DATASETS[*d]).await.unwrap();
            ds.delete_array(ARRAYS[*arr]).await.unwrap();
        }
        Op::SetAttr(d, k, v) if exists(a, *d) => {
            let ds = a.open_dataset(DATASETS[*d]).await.unwrap();
            ds.set_attribute(ATTR_KEYS[*k], attr_value(*k, *v)).unwrap();
        }
        Op::DeleteAttr(d, k) if exists(a, *d) => {
            let ds = a.open_dataset(DATASETS[*d]).await.unwrap();
            ds.delete_attribute(ATTR_KEYS[*k]).unwrap();
        }
        Op::SetUnits(d, k) if has(a, *d, 0) => {
            let ds = a.open_dataset(DATASETS[*d]).await.unwrap();
            let units = if *k { "degree_Celsius" } else { "K" };
            ds.set_array_attribute("T", "units", units.into()).unwrap();
        }
        Op::Flush => a.flush().await.unwrap(),
        Op::Compact => a.compact().await.unwrap(),
        Op::Reopen => {
            a.flush().await.unwrap();
            *a = reopen_mem(storage, "oracle reopen").await;
        }
        _ => {}
    }
}

// ---- queries: generated as a tree, printed as text, evaluated by brute force.

#[derive(Clone, Debug)]
enum Lit {
    F(f64),
    I(i128),
    S(&'static str),
    /// Nanoseconds since 1970, with its ISO text.
    T(i64, &'static str),
}

impl Lit {
    fn text(&self) -> String {
        match self {
            Lit::F(v) => format!("{v:?}"),
            Lit::I(v) => v.to_string(),
            Lit::S(s) => format!("'{s}'"),
            Lit::T(_, t) => (*t).to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
enum Subj {
    Stat(usize, &'static str),
    Any(usize),
    All(usize),
    Bare(usize),
    Attr(usize),
    Units,
}

#[derive(Clone, Debug)]
enum Test {
    Cmp(&'static str, Lit),
    Between(Lit, Lit, bool),
    In(Vec<Lit>, bool),
    Year(i32, bool),
    IsNull(bool),
    Contains(Lit, bool),
}

#[derive(Clone, Debug)]
enum G {
    And(Box<G>, Box<G>),
    Or(Box<G>, Box<G>),
    Not(Box<G>),
    Has(usize),
    Leaf(Subj, Test),
}

fn time_lits() -> Vec<Lit> {
    vec![
        Lit::T(NS_2020, "2020-01-01"),
        Lit::T(NS_2021, "2021-01-01T00:00:00Z"),
        Lit::T(NS_2021 - NS_PER_DAY / 2, "2020-12-31T12:00"),
        Lit::T(NS_2020 - NS_PER_DAY / 2, "2019-12-31T12:00:00+00:00"),
    ]
}

/// Literals of the class of an array's cells (and of its min/max).
fn lits_for(array: usize) -> Vec<Lit> {
    match array {
        0 => vec![
            Lit::F(-1.0),
            Lit::F(0.0),
            Lit::F(-0.0),
            Lit::F(1.5),
            Lit::I(2),
            Lit::F(30.0),
            Lit::F(f64::NAN),
        ],
        1 => vec![
            Lit::I(0),
            Lit::I(1),
            Lit::I(-1),
            Lit::I(1 << 63),
            Lit::I(i128::from(u64::MAX)),
            Lit::I((1 << 63) - 1),
        ],
        2 => vec![
            Lit::S(""),
            Lit::S("a"),
            Lit::S("B"),
            Lit::S("b"),
            Lit::S("é"),
        ],
        3 => {
            let mut v = time_lits();
            v.extend([Lit::F(25_567.0), Lit::I(25_933), Lit::F(25_932.5)]);
            v
        }
        _ => time_lits(),
    }
}

fn count_lits() -> Vec<Lit> {
    (0..=6).map(Lit::I).collect()
}

fn attr_lits(key: usize) -> Vec<Lit> {
    match key {
        0 => vec![Lit::S("6903240"), Lit::S("6903241"), Lit::S("7")],
        1 => vec![
            Lit::I(-1),
            Lit::I(5),
            Lit::I(i128::from(u64::MAX)),
            Lit::F(4.5),
        ],
        2 => vec![Lit::F(f64::NAN), Lit::F(0.0), Lit::F(1.5), Lit::I(0)],
        _ => vec![Lit::I(1), Lit::I(2), Lit::I(3)],
    }
}

fn pick(v: &[Lit], i: u8) -> Lit {
    v[i as usize % v.len()].clone()
}

const OPS: [&str; 6] = ["=", "!=", "<", "<=", ">", ">="];

fn value_test(lits: &[Lit], kind: u8, a: u8, b: u8, neg: bool) -> Test {
    match kind % 4 {
        0 | 1 => Test::Cmp(OPS[b as usize % 6], pick(lits, a)),
        2 => Test::Between(pick(lits, a), pick(lits, b), neg),
        _ => Test::In(vec![pick(lits, a), pick(lits, b)], neg),
    }
}

fn leaf_strategy() -> impl Strategy<Value = G> {
    (
        0u8..9,
        0..ARRAYS.len(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(kind, array, k, a, b, neg)| match kind {
            0 => G::Has(array),
            1 | 2 => {
                let stat = ["min", "max", "nulls", "cells", "valid"][a as usize % 5];
                let lits = if matches!(stat, "min" | "max") {
                    lits_for(array)
                } else {
                    count_lits()
                };
                let test = if k % 7 == 0 {
                    Test::IsNull(neg)
                } else {
                    value_test(&lits, k, a, b, neg)
                };
                G::Leaf(Subj::Stat(array, stat), test)
            }
            3..=5 => {
                let subj = [Subj::Any(array), Subj::All(array), Subj::Bare(array)]
                    [kind as usize - 3]
                    .clone();
                let test = if (array == 3 || array == 4) && k % 3 == 0 {
                    Test::Year(2019 + i32::from(a % 3), neg)
                } else {
                    value_test(&lits_for(array), k, a, b, neg)
                };
                G::Leaf(subj, test)
            }
            6 | 7 => {
                let key = array % 4;
                let test = match (key, k % 5) {
                    (_, 0) => Test::IsNull(neg),
                    (3, _) => Test::Contains(pick(&attr_lits(3), a), neg),
                    _ => value_test(&attr_lits(key), k, a, b, neg),
                };
                G::Leaf(Subj::Attr(key), test)
            }
            _ => {
                let test = if k % 3 == 0 {
                    Test::IsNull(neg)
                } else {
                    Test::Cmp(
                        ["=", "!="][a as usize % 2],
                        Lit::S(["K", "degree_Celsius"][b as usize % 2]),
                    )
                };
                G::Leaf(Subj::Units, test)
            }
        })
}

fn query_strategy() -> impl Strategy<Value = G> {
    leaf_strategy().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| G::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| G::Or(Box::new(a), Box::new(b))),
            inner.prop_map(|a| G::Not(Box::new(a))),
        ]
    })
}

fn text(g: &G) -> String {
    let not = |n: bool| if n { "not " } else { "" };
    let test = |t: &Test| match t {
        Test::Cmp(op, l) => format!("{op} {}", l.text()),
        Test::Between(a, b, n) => format!("{}between {} and {}", not(*n), a.text(), b.text()),
        Test::In(v, n) => format!(
            "{}in ({})",
            not(*n),
            v.iter().map(Lit::text).collect::<Vec<_>>().join(", ")
        ),
        Test::Year(y, n) => format!("{}in {y}", not(*n)),
        Test::IsNull(n) => format!("is {}null", not(*n)),
        Test::Contains(l, n) => format!("{}contains {}", not(*n), l.text()),
    };
    match g {
        G::And(a, b) => format!("({} and {})", text(a), text(b)),
        G::Or(a, b) => format!("({} or {})", text(a), text(b)),
        G::Not(a) => format!("not ({})", text(a)),
        G::Has(a) => format!("has({})", ARRAYS[*a]),
        G::Leaf(s, t) => match s {
            Subj::Stat(a, st) => format!("{}.{st} {}", ARRAYS[*a], test(t)),
            Subj::Any(a) => format!("any({} {})", ARRAYS[*a], test(t)),
            Subj::All(a) => format!("all({} {})", ARRAYS[*a], test(t)),
            Subj::Bare(a) => format!("{} {}", ARRAYS[*a], test(t)),
            Subj::Attr(k) => format!("{} {}", ATTR_KEYS[*k], test(t)),
            Subj::Units => format!("T@units {}", test(t)),
        },
    }
}

// ---- brute force over the public API.

#[derive(Clone, Debug)]
enum V {
    F(f64),
    I(i128),
    S(String),
    T(i64),
}

struct Arr {
    stats: atlas_core::ArrayStats,
    /// Non-null cells (NaN and the fill value are null).
    cells: Vec<V>,
    attrs: IndexMap<String, Attr>,
}

struct Ds {
    attrs: IndexMap<String, Attr>,
    arrays: HashMap<String, Arr>,
}

async fn non_null<T: ArrayElement>(
    a: &Atlas,
    ds: &str,
    array: &str,
    f: impl Fn(&T) -> V,
) -> Vec<V> {
    let d = a.open_dataset(ds).await.unwrap();
    let fill = d
        .array_schema(array)
        .unwrap()
        .unwrap()
        .fill_value
        .and_then(|f| T::from_fill(&f));
    let cells = d
        .read_array::<T>(array, vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    cells
        .iter()
        .filter(|v| !v.is_nan() && fill.as_ref() != Some(*v))
        .map(f)
        .collect()
}

async fn brute_state(a: &Atlas) -> Vec<(String, Ds)> {
    let mut out = Vec::new();
    for name in a.list_datasets().unwrap() {
        let meta = a.dataset_meta(&name).unwrap().unwrap();
        let d = a.open_dataset(&name).await.unwrap();
        let mut arrays = HashMap::new();
        for (an, entry) in &meta.arrays {
            let cells = match entry.schema.dtype {
                DType::Float32 => non_null::<f32>(a, &name, an, |v| V::F(f64::from(*v))).await,
                DType::UInt64 => non_null::<u64>(a, &name, an, |v| V::I(i128::from(*v))).await,
                DType::String => non_null::<String>(a, &name, an, |v| V::S(v.clone())).await,
                DType::Float64 => non_null::<f64>(a, &name, an, |v| V::F(*v)).await,
                _ => non_null::<TimestampNs>(a, &name, an, |v| V::T(v.0)).await,
            };
            let stats = d.array_stats(an).await.unwrap().unwrap();
            arrays.insert(
                an.clone(),
                Arr {
                    stats,
                    cells,
                    attrs: (*entry.attributes).clone(),
                },
            );
        }
        out.push((
            name,
            Ds {
                attrs: meta.attributes.clone(),
                arrays,
            },
        ));
    }
    out
}

fn stat_v(s: &StatValue) -> V {
    match s {
        StatValue::Int(i) => V::I(i128::from(*i)),
        StatValue::UInt(u) => V::I(i128::from(*u)),
        StatValue::Float(f) => V::F(*f),
        StatValue::Str(s) => V::S(s.clone()),
        StatValue::Timestamp(t) => V::T(t.0),
        StatValue::Bool(b) => V::I(i128::from(*b)),
    }
}

fn attr_v(a: &Attr) -> Option<V> {
    Some(match a {
        Attr::Int64(i) => V::I(i128::from(*i)),
        Attr::UInt64(u) => V::I(i128::from(*u)),
        Attr::Float64(f) => V::F(*f),
        Attr::String(s) => V::S(s.clone()),
        _ => return None,
    })
}

/// The oracle's own comparison. Test data keep it exact: integers met by
/// floats are small, and time literals fall on half days.
fn cmp(v: &V, l: &Lit) -> Option<Ordering> {
    match (v, l) {
        (V::F(a), Lit::F(b)) => a.partial_cmp(b),
        (V::F(a), Lit::I(b)) => a.partial_cmp(&(*b as f64)),
        (V::I(a), Lit::I(b)) => Some(a.cmp(b)),
        (V::I(a), Lit::F(b)) => (*a as f64).partial_cmp(b),
        (V::S(a), Lit::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (V::T(a), Lit::T(b, _)) => Some(a.cmp(b)),
        // CF days since 1950-01-01.
        (V::F(a), Lit::T(b, _)) => a.partial_cmp(&((b - NS_1950) as f64 / NS_PER_DAY as f64)),
        _ => panic!("the generator never mixes {v:?} with {l:?}"),
    }
}

fn holds(v: &V, t: &Test) -> bool {
    use Ordering::{Equal, Greater, Less};
    match t {
        Test::Cmp(op, l) => {
            let o = cmp(v, l);
            match *op {
                "=" => o == Some(Equal),
                "!=" => o != Some(Equal),
                "<" => o == Some(Less),
                "<=" => matches!(o, Some(Less | Equal)),
                ">" => o == Some(Greater),
                _ => matches!(o, Some(Greater | Equal)),
            }
        }
        Test::Between(lo, hi, n) => {
            let inside = matches!(cmp(v, lo), Some(Greater | Equal))
                && matches!(cmp(v, hi), Some(Less | Equal));
            inside != *n
        }
        Test::In(list, n) => list.iter().any(|l| cmp(v, l) == Some(Equal)) != *n,
        Test::Year(y, n) => {
            let start = NS_2020 + i64::from(*y - 2020) * 365 * NS_PER_DAY; // 2019, 2020, 2021 start
            let start = if *y == 2021 { NS_2021 } else { start };
            let end = match y {
                2019 => NS_2020,
                2020 => NS_2021,
                _ => NS_2021 + 365 * NS_PER_DAY,
            };
            let inside = matches!(cmp(v, &Lit::T(start, "")), Some(Greater | Equal))
                && cmp(v, &Lit::T(end, "")) == Some(Less);
            inside != *n
        }
        Test::IsNull(_) | Test::Contains(..) => unreachable!("handled by the caller"),
    }
}

/// A test on a value that may be null: only `is null` holds for null.
fn on(v: Option<V>, t: &Test) -> bool {
    match (t, v) {
        (Test::IsNull(n), v) => v.is_none() != *n,
        (_, None) => false,
        (t, Some(v)) => holds(&v, t),
    }
}

fn eval(g: &G, ds: &Ds) -> bool {
    match g {
        G::And(a, b) => eval(a, ds) && eval(b, ds),
        G::Or(a, b) => eval(a, ds) || eval(b, ds),
        G::Not(a) => !eval(a, ds),
        G::Has(a) => ds.arrays.contains_key(ARRAYS[*a]),
        G::Leaf(s, t) => match s {
            Subj::Stat(a, st) => {
                let v = ds.arrays.get(ARRAYS[*a]).and_then(|arr| match *st {
                    "min" => arr.stats.min.as_ref().map(stat_v),
                    "max" => arr.stats.max.as_ref().map(stat_v),
                    "nulls" => Some(V::I(i128::from(arr.stats.null_count))),
                    "cells" => Some(V::I(i128::from(arr.stats.row_count))),
                    _ => Some(V::I(
                        i128::from(arr.stats.row_count) - i128::from(arr.stats.null_count),
                    )),
                });
                on(v, t)
            }
            Subj::Any(a) | Subj::Bare(a) => ds
                .arrays
                .get(ARRAYS[*a])
                .is_some_and(|arr| arr.cells.iter().any(|c| holds(c, t))),
            Subj::All(a) => ds
                .arrays
                .get(ARRAYS[*a])
                .is_some_and(|arr| arr.cells.iter().all(|c| holds(c, t))),
            Subj::Attr(k) => match (ds.attrs.get(ATTR_KEYS[*k]), t) {
                (a, Test::IsNull(n)) => a.is_none() != *n,
                (Some(Attr::Int64List(list)), Test::Contains(l, n)) => {
                    list.iter()
                        .any(|x| cmp(&V::I(i128::from(*x)), l) == Some(Ordering::Equal))
                        != *n
                }
                (None, _) => false,
                (Some(a), t) => on(attr_v(a), t),
            },
            Subj::Units => on(
                ds.arrays
                    .get("T")
                    .and_then(|arr| match arr.attrs.get("units") {
                        Some(Attr::String(s)) => Some(V::S(s.clone())),
                        _ => None,
                    }),
                &match t {
                    Test::Cmp(op, Lit::S(s)) => Test::Cmp(op, Lit::S(s)),
                    other => other.clone(),
                },
            ),
        },
    }
}

/// The names the query needs that no dataset has (then the query must fail
/// with `UnknownName`).
fn missing_name(g: &G, state: &[(String, Ds)]) -> bool {
    let array = |a: usize| !state.iter().any(|(_, d)| d.arrays.contains_key(ARRAYS[a]));
    match g {
        G::And(a, b) | G::Or(a, b) => missing_name(a, state) || missing_name(b, state),
        G::Not(a) => missing_name(a, state),
        G::Has(a) => array(*a),
        G::Leaf(s, _) => match s {
            Subj::Stat(a, _) | Subj::Any(a) | Subj::All(a) | Subj::Bare(a) => array(*a),
            Subj::Attr(k) => !state
                .iter()
                .any(|(_, d)| d.attrs.contains_key(ATTR_KEYS[*k])),
            Subj::Units => !state.iter().any(|(_, d)| {
                d.arrays
                    .get("T")
                    .is_some_and(|t| t.attrs.contains_key("units"))
            }),
        },
    }
}

async fn check(a: &Atlas, queries: &[G], when: &str) {
    let state = brute_state(a).await;
    for g in queries {
        let q = text(g);
        let parsed = Query::parse(&q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let got = a.query(&parsed).await;
        if missing_name(g, &state) {
            assert!(
                matches!(got, Err(Error::Query(QueryError::UnknownName { .. }))),
                "{q} ({when}): expected an unknown name, got {got:?}"
            );
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{q} ({when}): {e}"));
        let want: Vec<String> = state
            .iter()
            .filter(|(_, d)| eval(g, d))
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(got.names(), want, "{q} ({when})");
        // The unnamed form counts and identifies the same datasets.
        let ids = a
            .query_ids(&parsed)
            .await
            .unwrap_or_else(|e| panic!("{q} ({when}), ids: {e}"));
        assert_eq!(ids.ids(), got.ids(), "{q} ({when}): ids");
        assert_eq!(ids.len(), want.len() as u64, "{q} ({when}): count");
        let named: Vec<u64> = want
            .iter()
            .map(|n| a.dataset_id(n).expect("lookup").expect("live"))
            .collect();
        assert_eq!(
            ids.ids().iter().collect::<Vec<_>>(),
            named,
            "{q} ({when}): ids are the named datasets'"
        );
        if let G::Leaf(..) | G::Has(_) = g {
            let t = &got.explain().terms[0];
            let n = want.len() as u64;
            assert!(
                t.yes <= n,
                "{q} ({when}): a dataset-level yes was false: {t:?}"
            );
            assert!(
                n <= t.yes + t.maybe,
                "{q} ({when}): pruning dropped a match: {t:?}"
            );
        }
    }
}

/// Every dataset with every array and attribute, before the random
/// operations delete, re-create and rewrite them: most names then exist, so
/// most queries run instead of failing on an unknown name.
fn prelude(seed: &[u8]) -> Vec<Op> {
    let mut ops: Vec<Op> = (0..DATASETS.len()).map(Op::Create).collect();
    let mut byte = seed.iter().copied().cycle();
    let mut next = move || byte.next().unwrap_or(0);
    for ds in 0..DATASETS.len() {
        for array in 0..ARRAYS.len() {
            let b = next();
            if b % 5 == 0 {
                continue; // some datasets lack some arrays
            }
            ops.push(Op::Define {
                ds,
                array,
                fill: b % 2 == 0,
                start: next(),
                values: (0..6).map(|_| next()).collect(),
            });
        }
        for key in 0..ATTR_KEYS.len() {
            let b = next();
            if b % 4 != 0 {
                ops.push(Op::SetAttr(ds, key, b / 4));
            }
        }
        ops.push(Op::SetUnits(ds, next() % 2 == 0));
        if next() % 3 == 0 {
            ops.push(Op::Flush);
        }
    }
    ops
}

async fn run(seed: Vec<u8>, ops: Vec<Op>, later: Vec<Op>, queries: Vec<G>) {
    let storage = MemoryStorage::new();
    let mut a = create_mem(&storage, no_grace()).await;
    for op in prelude(&seed).iter().chain(&ops) {
        apply(&mut a, &storage, op).await;
    }
    check(&a, &queries, "as written").await;
    a.flush().await.unwrap();
    check(&a, &queries, "flushed").await;
    a.compact().await.unwrap();
    check(&a, &queries, "compacted").await;
    drop(a);
    let mut a = reopen_mem(&storage, "oracle").await;
    check(&a, &queries, "reopened").await;
    // Pending changes (writes, deletes, re-creates) over the flushed catalog
    // of the reopened store; then once more after they are flushed.
    for op in &later {
        apply(&mut a, &storage, op).await;
    }
    check(&a, &queries, "pending over the reopened catalog").await;
    a.flush().await.unwrap();
    check(&a, &queries, "pending flushed").await;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn query_equals_brute_force(
        seed in proptest::collection::vec(any::<u8>(), 64),
        ops in proptest::collection::vec(op_strategy(), 0..=30),
        later in proptest::collection::vec(later_op_strategy(), 0..=10),
        queries in proptest::collection::vec(query_strategy(), 1..=12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(seed, ops, later, queries));
    }
}
