//! Layer footer decoder: arbitrary bytes as a footer body (uid, records, chunk
//! entries). Seeds: the footers of real layer files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = array_format::fuzzing::decode_footer(data);
});
