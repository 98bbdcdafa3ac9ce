//! LZ4 block compression of small blocks with a reused hash table.
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
