//! Format-2 layer footer decoder: arbitrary bytes as footer blocks, an index
//! and the index length (the index, every block, and name lookups in them).
//! Seeds: the footers of real layer files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = array_format::fuzzing::decode_blocked_footer(data);
});
