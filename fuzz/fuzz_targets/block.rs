//! Block decoder (codec, then filter). The first 7 input bytes choose what a
//! footer entry would say about the block: codec id, filter id, element width
//! and `raw_len` (u32, little-endian; below 1 MiB unless its top bit is set);
//! the rest is the stored block.
//! Seeds: real blocks with their real entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, stored)) = data.split_first_chunk::<7>() else {
        return;
    };
    // Codec ids 0..=3 are known (3, Blosc2, may be compiled out); 4.. are unknown.
    let codec = head[0] % 6;
    // Filter 0 none, 1 shuffle, 2.. unknown.
    let filter = head[1] % 4;
    // Element widths of the dtypes are 1, 2, 4, 8; 0, 3 and 16 are hostile.
    let width = [1, 2, 4, 8, 0, 3, 16, 1][usize::from(head[2] % 8)];
    // Mostly plausible sizes (under 1 MiB, as real chunks), sometimes hostile
    // ones (the entry point caps them at 16 MiB): zero-filling 16 MiB on every
    // run would cut the execution rate a hundredfold.
    let declared = u32::from_le_bytes([head[3], head[4], head[5], head[6]]);
    let raw_len = if head[6] & 0x80 == 0 {
        declared & 0x000F_FFFF
    } else {
        declared
    } as usize;
    let _ = array_format::fuzzing::decode_block(stored, codec, filter, width, raw_len);
});
