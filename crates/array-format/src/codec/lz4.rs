//! LZ4 blocks: compression of small blocks with a reused hash table, and a
//! block decoder.
//!
//! `lz4_flex::block::compress` allocates and zeroes a fresh 4,096-slot hash
//! table on every call; for the 200-byte chunks of profile data that
//! allocation cost several times the compression itself (`calloc` was 10% of
//! an ingest, LZ4 1.5%). The pinned `lz4_flex` (0.11) exposes no way to pass a
//! table in, so blocks shorter than [`SMALL_LIMIT`] are compressed here with
//! the same algorithm and a table kept per thread; longer blocks, where the
//! table is noise, still go to `lz4_flex`.
//!
//! **Invariant:** the output is byte-identical to `lz4_flex::block::compress`
//! of the same input (same hash, table size, step schedule and end-of-block
//! rules; the table of a new call reads as zeroed, see [`Table`]), so blocks
//! written before and after this module are the same bytes and any LZ4 block
//! decoder reads them. A test checks it against `lz4_flex` on random inputs.
//!
//! **Decoding** ([`decompress_into`]) is done here too. `lz4_flex`'s safe
//! decoder copies a match that overlaps its own output one byte at a time,
//! and byte-shuffled numbers are full of them (the planes of exponent bytes
//! repeat at short distances). In a scratch benchmark alternating the two
//! on the same blocks, this decoder ran 1.78× `lz4_flex`'s rate on the
//! bench's shuffled 32 KiB tiles, 1.73× on 256 × 256 globe chunks and
//! 1.04–1.06× on the smoother W5 grid's; on 200-byte profiles the two were
//! even (medians 0.96–1.02×), and on text and random bytes of a small
//! alphabet this one was 2% and 5–7% slower (docs/BENCHMARKS.md, the
//! twenty-eighth session). Here a match copies whole words: one
//! fixed-size move when its source ends before it starts, 8 bytes at a time
//! from a distance of at least 8 (the pattern's period times some whole
//! number) when it overlaps. The decoder is safe code and checks every
//! length and offset against the input and the output before copying, so a
//! damaged block is an error, never a panic or a read outside this call's
//! output; tests check it against `lz4_flex` on valid and on damaged blocks.

/// Blocks shorter than this use the 16-bit-position table (`lz4_flex` makes
/// the same choice: `input.len() < u16::MAX`).
pub(crate) const SMALL_LIMIT: usize = u16::MAX as usize;

/// Slots of the hash table (`lz4_flex`'s `HashTable4KU16`).
const SLOTS: usize = 4096;
/// A block shorter than this is stored as literals only (`MFLIMIT + 1`).
const MIN_LENGTH: usize = MFLIMIT + 1;
/// The last match starts at least this many bytes before the end.
const MFLIMIT: usize = 12;
/// Matches end at least this many bytes before the end (the last 5 bytes are
/// literals, plus one for the encoder's reads).
const END_OFFSET: usize = 6;
/// The minimum match length.
const MINMATCH: usize = 4;
/// Grow the search step after `1 << STEP_SHIFT` misses.
const STEP_SHIFT: usize = 5;

/// A hash table of input positions that needs no clearing between calls.
///
/// Each slot holds `epoch << 16 | position`; a slot written under another
/// epoch reads as position 0, exactly what a freshly zeroed table holds. Every
/// call starts a new epoch; only when the 16-bit epoch wraps is the table
/// really zeroed (once per 65,535 calls).
pub(crate) struct Table {
    slots: Box<[u32; SLOTS]>,
    epoch: u32,
}

impl Table {
    /// A table whose first call sees only zeroes.
    pub(crate) fn new() -> Self {
        Table {
            slots: Box::new([0; SLOTS]),
            epoch: 0,
        }
    }

    /// Starts a call: every slot now reads as 0.
    fn next_epoch(&mut self) {
        self.epoch += 1;
        if self.epoch > 0xFFFF {
            self.slots.fill(0);
            self.epoch = 1;
        }
    }

    #[inline]
    fn get(&self, slot: usize) -> usize {
        let v = self.slots[slot];
        if v >> 16 == self.epoch {
            (v & 0xFFFF) as usize
        } else {
            0
        }
    }

    #[inline]
    fn put(&mut self, slot: usize, pos: usize) {
        debug_assert!(pos < SMALL_LIMIT);
        self.slots[slot] = (self.epoch << 16) | pos as u32;
    }
}

#[inline]
fn batch(input: &[u8], pos: usize) -> u32 {
    u32::from_ne_bytes(input[pos..pos + 4].try_into().expect("4 bytes"))
}

/// The slot of the 4 bytes at `pos` (`lz4_flex`: Knuth's multiplicative hash,
/// 16 bits, then the top 12 of those).
#[inline]
fn slot_at(input: &[u8], pos: usize) -> usize {
    ((batch(input, pos).wrapping_mul(2_654_435_761) >> 16) >> 4) as usize
}

/// LZ4's length continuation bytes for `n`.
fn push_length(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0xFF {
        out.push(0xFF);
        n -= 0xFF;
    }
    out.push(n as u8);
}

/// The final sequence: literals only.
fn push_last_literals(out: &mut Vec<u8>, literals: &[u8]) {
    let n = literals.len();
    out.push(if n < 0xF { (n as u8) << 4 } else { 0xF0 });
    if n >= 0xF {
        push_length(out, n - 0xF);
    }
    out.extend_from_slice(literals);
}

/// Length of the common prefix of `input[cur..len - END_OFFSET]` and
/// `input[candidate..]`.
#[inline]
fn common_prefix(input: &[u8], cur: usize, candidate: usize) -> usize {
    let a = &input[cur..input.len() - END_OFFSET];
    let b = &input[candidate..];
    let mut n = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let diff = u64::from_le_bytes(x.try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(y.try_into().expect("8 bytes"));
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + a[n..]
        .iter()
        .zip(&b[n..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Appends the LZ4 block of `input` (shorter than [`SMALL_LIMIT`]) to `out`.
pub(crate) fn compress_small(input: &[u8], table: &mut Table, out: &mut Vec<u8>) {
    assert!(input.len() < SMALL_LIMIT, "a small block");
    if input.len() < MIN_LENGTH {
        push_last_literals(out, input);
        return;
    }
    out.reserve(lz4_flex::block::get_maximum_output_size(input.len()));
    table.next_epoch();
    let end_pos_check = input.len() - MFLIMIT;
    let mut literal_start = 0;
    // A block may not start with a match.
    table.put(slot_at(input, 0), 0);
    let mut cur = 1;
    loop {
        // Search for a match, stepping faster after many misses.
        let mut misses = 1 << STEP_SHIFT;
        let mut next_cur = cur;
        let mut candidate;
        loop {
            let step = misses >> STEP_SHIFT;
            misses += 1;
            cur = next_cur;
            next_cur += step;
            if cur > end_pos_check {
                push_last_literals(out, &input[literal_start..]);
                return;
            }
            let slot = slot_at(input, cur);
            candidate = table.get(slot);
            table.put(slot, cur);
            // Offsets always fit 16 bits here; the table only holds earlier positions.
            if batch(input, candidate) == batch(input, cur) {
                break;
            }
        }
        let offset = (cur - candidate) as u16;
        // Extend the match backwards over the pending literals.
        while candidate > 0 && cur > literal_start && input[cur - 1] == input[candidate - 1] {
            cur -= 1;
            candidate -= 1;
        }
        let lit_len = cur - literal_start;
        cur += MINMATCH;
        let match_len = common_prefix(input, cur, candidate + MINMATCH);
        cur += match_len;
        table.put(slot_at(input, cur - 2), cur - 2);

        let token_lit = if lit_len < 0xF {
            (lit_len as u8) << 4
        } else {
            0xF0
        };
        let token_match = if match_len < 0xF {
            match_len as u8
        } else {
            0xF
        };
        out.push(token_lit | token_match);
        if lit_len >= 0xF {
            push_length(out, lit_len - 0xF);
        }
        out.extend_from_slice(&input[literal_start..literal_start + lit_len]);
        out.extend_from_slice(&offset.to_le_bytes());
        if match_len >= 0xF {
            push_length(out, match_len - 0xF);
        }
        literal_start = cur;
    }
}

/// Why a block did not decode ([`decompress_into`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeFailure {
    /// The block ends inside a sequence.
    Truncated,
    /// Literals run past the end of the block.
    Literals,
    /// A match refers to before the start of the output (or has offset 0).
    Offset,
    /// The output would be longer than the room given.
    OutputTooSmall,
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecodeFailure::Truncated => "the block ends inside a sequence",
            DecodeFailure::Literals => "literals run past the end of the block",
            DecodeFailure::Offset => "a match offset points before the output",
            DecodeFailure::OutputTooSmall => "the block decodes past its recorded length",
        })
    }
}

/// An LZ4 length continuation (bytes of 255 then one below), at `ip`.
#[inline]
fn read_length(input: &[u8], ip: &mut usize) -> Result<usize, DecodeFailure> {
    let mut n = 0usize;
    loop {
        let b = *input.get(*ip).ok_or(DecodeFailure::Truncated)?;
        *ip += 1;
        n = n
            .checked_add(usize::from(b))
            .ok_or(DecodeFailure::Truncated)?;
        if b != 0xFF {
            return Ok(n);
        }
    }
}

/// Copies `src[s..s + N]` to `out[d..d + N]` as one move (read whole, then
/// written), of a size the compiler knows.
#[inline]
fn move_n<const N: usize>(out: &mut [u8], d: usize, src: &[u8], s: usize) {
    let word: [u8; N] = src[s..s + N].try_into().expect("N bytes");
    let dst: &mut [u8; N] = (&mut out[d..d + N]).try_into().expect("N bytes");
    *dst = word;
}

/// [`move_n`] within `out`: `out[s..s + N]` read whole, then written at `d`.
#[inline]
fn move_within<const N: usize>(out: &mut [u8], d: usize, s: usize) {
    let word: [u8; N] = out[s..s + N].try_into().expect("N bytes");
    let dst: &mut [u8; N] = (&mut out[d..d + N]).try_into().expect("N bytes");
    *dst = word;
}

/// Decodes the LZ4 block `input` into the start of `out`, returning how
/// many bytes it decoded to; the bytes of `out` past those are unspecified
/// (the decoder writes ahead in whole words). The bytes decoded are those of
/// `lz4_flex::block::decompress_into` for every block that decoder accepts
/// (tests compare them); a block that refers outside what it decoded,
/// ends inside a sequence or decodes past `out` is an error.
pub(crate) fn decompress_into(input: &[u8], out: &mut [u8]) -> Result<usize, DecodeFailure> {
    let (ilen, olen) = (input.len(), out.len());
    // Invariants: ip <= ilen, op <= olen, and out[..op] is this block's.
    let (mut ip, mut op) = (0usize, 0usize);
    loop {
        let token = *input.get(ip).ok_or(DecodeFailure::Truncated)?;
        ip += 1;
        let mut literals = usize::from(token >> 4);
        if literals != 0xF && ip + 16 <= ilen && op + 16 <= olen {
            // At most 14 literals, moved as 16 bytes: the rest is written
            // over by what follows, or lies past the decoded length.
            move_n::<16>(out, op, input, ip);
        } else {
            if literals == 0xF {
                literals += read_length(input, &mut ip)?;
            }
            if literals > ilen - ip {
                return Err(DecodeFailure::Literals);
            }
            if literals > olen - op {
                return Err(DecodeFailure::OutputTooSmall);
            }
            out[op..op + literals].copy_from_slice(&input[ip..ip + literals]);
        }
        ip += literals;
        op += literals;
        // The last sequence has literals only.
        if ip == ilen {
            return Ok(op);
        }
        if ilen - ip < 2 {
            return Err(DecodeFailure::Truncated);
        }
        let offset = usize::from(u16::from_le_bytes([input[ip], input[ip + 1]]));
        ip += 2;
        let mut matched = usize::from(token & 0xF);
        if matched == 0xF {
            matched += read_length(input, &mut ip)?;
        }
        matched += MINMATCH;
        if offset == 0 || offset > op {
            return Err(DecodeFailure::Offset);
        }
        if matched > olen - op {
            return Err(DecodeFailure::OutputTooSmall);
        }
        let start = op - offset;
        if offset >= matched {
            // The source ends before the copy starts: one move of a fixed
            // size where there is room (its first `matched` bytes are the
            // match's), else an exact one.
            if matched <= 16 && op + 16 <= olen {
                move_within::<16>(out, op, start);
            } else if matched <= 32 && op + 32 <= olen {
                move_within::<32>(out, op, start);
            } else {
                out.copy_within(start..start + matched, op);
            }
        } else if offset == 1 {
            let b = out[start];
            out[op..op + matched].fill(b);
        } else {
            // The match repeats its last `offset` bytes, so it also repeats
            // with any multiple of that period: from an offset of 8 or more,
            // 8 bytes at a time from `offset` back; below 8, the first
            // `period` bytes (`period`: the smallest multiple of the offset
            // that is at least 8) one at a time, then 8 at a time from
            // `period` back. Every word read is already written.
            let (period, head) = if offset >= 8 {
                (offset, 0)
            } else {
                let period = offset * 8usize.div_ceil(offset);
                (period, period.min(matched))
            };
            for i in op..op + head {
                out[i] = out[i - offset];
            }
            if head < matched && op + head + (matched - head).next_multiple_of(8) <= olen {
                let mut done = head;
                while done < matched {
                    move_within::<8>(out, op + done, op + done - period);
                    done += 8;
                }
            } else {
                for i in op + head..op + matched {
                    out[i] = out[i - offset];
                }
            }
        }
        op += matched;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(input: &[u8], table: &mut Table) -> Vec<u8> {
        let mut out = Vec::new();
        compress_small(input, table, &mut out);
        out
    }

    /// Inputs with repeats at every distance, as real chunks have.
    fn input() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::collection::vec((0usize..4000, 0usize..300), 0..40),
        )
            .prop_map(|(seed, copies)| {
                let mut v = seed;
                for (back, len) in copies {
                    for _ in 0..len {
                        let b = if v.is_empty() {
                            7
                        } else {
                            v[v.len() - 1 - back % v.len()]
                        };
                        v.push(b);
                    }
                    v.push(back as u8);
                }
                v
            })
    }

    proptest! {
        #[test]
        fn equals_lz4_flex_and_decodes(inputs in proptest::collection::vec(input(), 1..6)) {
            // One table across calls, as a thread's encodes share it.
            let mut table = Table::new();
            for input in &inputs {
                let got = ours(input, &mut table);
                prop_assert_eq!(&got, &lz4_flex::block::compress(input));
                let back = lz4_flex::block::decompress(&got, input.len()).unwrap();
                prop_assert_eq!(&back, input);
            }
        }
    }

    /// `decompress_into` of `block` into `room` bytes that start out as
    /// junk: what it decoded, or its error.
    fn decode(block: &[u8], room: usize) -> Result<Vec<u8>, DecodeFailure> {
        let mut out = vec![0xA5; room];
        let n = decompress_into(block, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// `lz4_flex`'s answer for the same block and room, as `decode`'s.
    fn reference(block: &[u8], room: usize) -> Option<Vec<u8>> {
        let mut out = vec![0; room];
        let n = lz4_flex::block::decompress_into(block, &mut out).ok()?;
        out.truncate(n);
        Some(out)
    }

    proptest! {
        #[test]
        fn decodes_what_both_encoders_write(input in input(), extra in 0usize..40) {
            // (The strategy's inputs are all under `SMALL_LIMIT`.)
            let mut small = Vec::new();
            compress_small(&input, &mut Table::new(), &mut small);
            for block in [lz4_flex::block::compress(&input), small] {
                // Exact room (as a read gives it), and room to spare.
                prop_assert_eq!(decode(&block, input.len()), Ok(input.clone()));
                prop_assert_eq!(decode(&block, input.len() + extra), Ok(input.clone()));
                if !input.is_empty() {
                    prop_assert_eq!(
                        decode(&block, input.len() - 1),
                        Err(DecodeFailure::OutputTooSmall)
                    );
                }
            }
        }

        #[test]
        fn damaged_blocks_decode_as_lz4_flex_decodes_them(
            input in input(),
            damage in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in any::<usize>(),
            shorten in any::<bool>(),
        ) {
            let mut block = lz4_flex::block::compress(&input);
            for (at, b) in damage {
                let n = block.len();
                block[at % n] = b;
            }
            if shorten {
                block.truncate(cut % (block.len() + 1));
            }
            // Never a panic; where either decoder accepts the block, both
            // do, with the same bytes.
            let ours = decode(&block, input.len()).ok();
            prop_assert_eq!(ours, reference(&block, input.len()));
        }

        #[test]
        fn arbitrary_bytes_decode_as_lz4_flex_decodes_them(
            block in proptest::collection::vec(any::<u8>(), 0..200),
            room in 0usize..600,
        ) {
            prop_assert_eq!(decode(&block, room).ok(), reference(&block, room));
        }
    }

    /// Overlapping matches at every small offset and length, ending at the
    /// very end of the output (no room to write ahead) and well before it.
    #[test]
    fn overlapping_matches_at_every_offset_and_length() {
        for offset in 1..=20usize {
            for len in [
                4usize, 5, 7, 8, 9, 15, 16, 17, 19, 20, 31, 32, 33, 64, 100, 300,
            ] {
                for tail in [0usize, 5, 40] {
                    let mut input: Vec<u8> = (0..offset as u8)
                        .map(|b| b.wrapping_mul(37) ^ 0x5C)
                        .collect();
                    for _ in 0..len {
                        input.push(input[input.len() - offset]);
                    }
                    input.extend((0..tail).map(|i| (i * 13 + 1) as u8));
                    // Literals `0..offset`, one match, then the tail as
                    // literals: written by hand, so the match is exactly this.
                    let mut block = Vec::new();
                    let m = len - MINMATCH;
                    let mut token = ((offset.min(15)) as u8) << 4;
                    token |= m.min(15) as u8;
                    block.push(token);
                    if offset >= 15 {
                        push_length(&mut block, offset - 15);
                    }
                    block.extend_from_slice(&input[..offset]);
                    block.extend_from_slice(&(offset as u16).to_le_bytes());
                    if m >= 15 {
                        push_length(&mut block, m - 15);
                    }
                    push_last_literals(&mut block, &input[offset + len..]);
                    let want = Some(input.clone());
                    assert_eq!(
                        reference(&block, input.len()),
                        want,
                        "{offset} {len} {tail}"
                    );
                    assert_eq!(
                        decode(&block, input.len()).ok(),
                        want,
                        "{offset} {len} {tail}"
                    );
                    assert_eq!(
                        decode(&block, input.len() + 64).ok(),
                        want,
                        "{offset} {len} {tail}"
                    );
                }
            }
        }
    }

    #[test]
    fn equals_lz4_flex_on_float_chunks_and_long_runs() {
        let mut table = Table::new();
        let field: Vec<u8> = (0..50)
            .flat_map(|i| (20.0f32 + (i as f32 * 0.1).sin()).to_le_bytes())
            .collect();
        let shuffled = crate::codec::shuffle(&field, 4);
        let zeros = vec![0u8; 60_000];
        let ramp: Vec<u8> = (0..SMALL_LIMIT - 1).map(|i| (i / 300) as u8).collect();
        for input in [&field, &shuffled, &zeros, &ramp, &field[..13], &field[..12]] {
            assert_eq!(ours(input, &mut table), lz4_flex::block::compress(input));
        }
    }

    #[test]
    fn the_epoch_wrap_clears_the_table() {
        let mut table = Table::new();
        let a: Vec<u8> = (0..200u32).map(|i| (i % 17) as u8).collect();
        let b: Vec<u8> = (0..200u32).map(|i| (i * 31 % 23) as u8).collect();
        let want = lz4_flex::block::compress(&b);
        for _ in 0..0xFFFF + 3 {
            assert!(table.epoch <= 0xFFFF);
            let _ = ours(&a, &mut table);
            assert_eq!(ours(&b, &mut table), want);
        }
    }
}
