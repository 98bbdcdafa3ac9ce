//! Parser and builder unit tests; evaluation is tested against real stores in
//! `tests/it/query.rs`.

use super::*;

fn round_trip(text: &str) {
    let q = Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let again = Query::parse(&q.to_string()).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(q, again, "{text} → {q}");
}

#[test]
fn every_form_parses_and_reads_back() {
    for t in [
        "TEMP.max > 30",
        "TEMP.min <= -1.5e3 or TEMP.valid = 0",
        "TEMP.valid >= 0 and not has(DOXY)",
        "platform_number = '6903240'",
        "@TEMP = 'it''s'",
        "TEMP@units = 'degree_Celsius'",
        "any(TEMP > 30) and all(PRES >= 0)",
        "any(TEMP between 10 and 11) or all(PSAL not in (1, 2, 3))",
        "JULD in 2020 and JULD not in 2020-02 and JULD in 2020-02-29",
        "JULD between 2020-01-01 and 2020-06-30T12:00:00.25Z",
        "flags contains 3 and flags not contains 'x'",
        "comment is null or comment is not null",
        "\"odd name\".max != nan and \"and\" < inf and x > -inf",
        "a = true and b <> false and c == 1",
        "not not (a = 1)",
        "big = 18446744073709551615 and small = -9223372036854775808",
    ] {
        round_trip(t);
    }
}

#[test]
fn errors_point_at_the_column() {
    let col = |t: &str| match Query::parse(t) {
        Err(Error::Parse { column, .. }) => column,
        other => panic!("{t}: {other:?}"),
    };
    assert_eq!(col("TEMP.max >"), 11);
    assert_eq!(col("TEMP.mx > 3"), 6);
    assert_eq!(col("TEMP > 3 TEMP"), 10);
    assert_eq!(col("(TEMP > 3"), 10);
    assert_eq!(col("TEMP > 'x"), 8);
    assert_eq!(col("JULD in 2020-13"), 9);
    assert_eq!(col("x = 99999999999999999999"), 5);
    assert_eq!(col("any(TEMP is null)"), 10);
    assert_eq!(col("x ! 3"), 3);
    assert_eq!(col("é > 1 and ü ? 2"), 13);
}

#[test]
fn nesting_and_lists_are_bounded() {
    let deep = format!(
        "{}a = 1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(matches!(Query::parse(&deep), Err(Error::TooDeep { .. })));
    let ok = format!("{}a = 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Query::parse(&ok).is_ok());
    let nots = format!("{}a = 1", "not ".repeat(100_000));
    assert!(matches!(Query::parse(&nots), Err(Error::TooDeep { .. })));
    let list = |n: usize| format!("a in ({})", vec!["1"; n].join(","));
    assert!(Query::parse(&list(MAX_IN_LIST)).is_ok());
    assert!(matches!(
        Query::parse(&list(MAX_IN_LIST + 1)),
        Err(Error::TooLarge { column: 6, .. })
    ));
    let terms = vec!["a = 1"; MAX_TERMS + 1].join(" or ");
    assert!(matches!(Query::parse(&terms), Err(Error::TooLarge { .. })));
    // At the limit, with precedence doing the grouping, the display form
    // still parses: it adds no parentheses the input did not have.
    let implicit = format!(
        "{}a = 1 or b = 2 and not c = 3{}",
        "(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    round_trip(&implicit);
    let q = Query::parse("a = 1 or b = 2 and (c = 3 or d = 4)").unwrap();
    assert_eq!(q.to_string(), "a = 1 or b = 2 and (c = 3 or d = 4)");
    // Built queries meet the same limit when they run.
    let mut built = has("x");
    for _ in 0..=MAX_DEPTH {
        built = built.not();
    }
    assert!(matches!(built.check_limits(), Err(Error::TooDeep { .. })));
    let wide = col("x").is_in(0..=MAX_IN_LIST as u64);
    assert!(matches!(wide.check_limits(), Err(Error::TooLarge { .. })));
}

#[test]
fn builder_equals_parser() {
    let pairs = [
        (
            col("TEMP")
                .max()
                .gt(30.0)
                .and(col("LATITUDE").between(-10, 10))
                .and(col("JULD").in_year(2020)),
            "TEMP.max > 30.0 and LATITUDE between -10 and 10 and JULD in 2020",
        ),
        (
            attr("platform").eq("6903240").or(has("DOXY").not()),
            "@platform = '6903240' or not has(DOXY)",
        ),
        (
            any("TEMP").gt(30).and(all("PRES").ge(0)),
            "any(TEMP > 30) and all(PRES >= 0)",
        ),
        (
            col("TEMP").attr("units").eq("degree_Celsius"),
            "TEMP@units = 'degree_Celsius'",
        ),
        (col("flags").contains(3u8), "flags contains 3"),
        (col("x").is_in([1, 2, 3]), "x in (1, 2, 3)"),
        (col("JULD").in_month(2020, 2), "JULD in 2020-02"),
        (col("c").is_null(), "c is null"),
        (!col("c").valid().le(0), "not c.valid <= 0"),
    ];
    for (built, text) in pairs {
        assert_eq!(built, Query::parse(text).unwrap(), "{text}");
    }
}
