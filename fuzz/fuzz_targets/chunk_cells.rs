//! Chunk-cell decoding, as a read does it: a stored block through its codec
//! and filter, then split into the cells of one chunk, for every dtype
//! including strings (`u32` lengths, then the bytes). The first 11 input bytes
//! say what the schema and the footer entry would: dtype code, codec id,
//! filter id, the chunk's cell count (`u32`, little-endian) and `raw_len`
//! (`u32`, kept below 1 MiB: hostile raw lengths are the `block` target's
//! job, and zero-filling up to 16 MiB on every run cut the execution rate
//! fivefold). The rest is the stored block, or, when the codec byte's top bit
//! is set, the raw cells themselves (so mutations reach the cell decoder
//! without going through a codec).
//! Seeds: real blocks of every dtype with their entries and cell counts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<11>() else {
        return;
    };
    // Codes 1..=13 are the dtypes; 0, 14 and 15 are unknown.
    let dtype = head[0] % 16;
    let n_cells = u64::from(u32::from_le_bytes([head[3], head[4], head[5], head[6]]));
    if head[1] & 0x80 != 0 {
        let _ = array_format::fuzzing::decode_cells(rest, dtype, n_cells);
        return;
    }
    // Codec ids 0..=3 are known (3, Blosc2, may be compiled out); 4.. are unknown.
    let codec = head[1] % 6;
    // Filter 0 none, 1 shuffle, 2.. unknown.
    let filter = head[2] % 4;
    let declared = u32::from_le_bytes([head[7], head[8], head[9], head[10]]);
    let raw_len = (declared & 0x000F_FFFF) as usize;
    let _ = array_format::fuzzing::decode_chunk(rest, codec, filter, dtype, n_cells, raw_len);
});
