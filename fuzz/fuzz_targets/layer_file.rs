//! A whole layer file (`.af`): header, trailer, footer CRC, footer (format 1:
//! the whole footer; format 2: the footer index, then every footer block), and
//! the chunk offsets checked against the file. Each input is opened twice: as
//! given, and "resealed" (the trailer's CRC recomputed), so mutations of the
//! footer (index) get past the checksum and reach the structural checks; the
//! `footer_blocked` target reaches the footer blocks past their CRCs.
//! Seeds: real layer files of both formats.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Header and trailer lengths (docs/format.md).
const HEADER: usize = 32;
const TRAILER: usize = 32;

fuzz_target!(|data: &[u8]| {
    let _ = array_format::fuzzing::open_layer_bytes(data);
    if data.len() < HEADER + TRAILER {
        return;
    }
    let t = data.len() - TRAILER;
    let footer_offset = u64::from_le_bytes(data[t..t + 8].try_into().unwrap());
    let footer_len = u64::from_le_bytes(data[t + 8..t + 16].try_into().unwrap());
    let Some(end) = footer_offset.checked_add(footer_len) else {
        return;
    };
    if footer_offset < HEADER as u64 || end != t as u64 {
        return;
    }
    let mut sealed = data.to_vec();
    let crc = crc32c::crc32c(&data[footer_offset as usize..t]);
    sealed[t + 16..t + 20].copy_from_slice(&crc.to_le_bytes());
    let _ = array_format::fuzzing::open_layer_bytes(&sealed);
});
