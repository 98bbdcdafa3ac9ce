//! The query parser (`Query::parse`): nothing may panic or recurse without
//! bound, and every query that parses reads back equal from its display form.
//! Seeds: the examples of docs/query.md and edge cases of the grammar.
#![no_main]

use atlas_core::query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = Query::parse(text) {
        let shown = q.to_string();
        let again = Query::parse(&shown).expect("the display form parses");
        assert_eq!(q, again, "{text:?} → {shown:?}");
    }
});
