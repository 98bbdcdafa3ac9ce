//! Chunk codecs: an optional byte-shuffle filter followed by a compressor.
//!
//! **Invariant:** every stored block records its own codec and filter ids, so a
//! reader never needs configuration; the write-side choice lives only in
//! [`Compression`].

#[cfg(feature = "blosc2")]
pub(crate) mod blosc2;
pub(crate) mod lz4;

use std::fmt;

/// A compressor for chunk blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is.
    None,
    /// LZ4 block format (`lz4_flex`): the fastest to decode.
    Lz4,
    /// Zstandard at the given level (1–22; negative levels are fast modes).
    Zstd {
        /// Compression level.
        level: i32,
    },
    /// Blosc2 (feature `blosc2`) at the given level (0–9).
    Blosc2 {
        /// Compression level.
        level: u8,
    },
}

impl Codec {
    /// `Err(CodecUnavailable)` when this build was compiled without the codec
    /// (Blosc2 without the `blosc2` feature). Checked wherever write options
    /// are accepted, so a request is never silently stored with another codec.
    pub fn check_available(self, path: &std::path::Path) -> crate::Result<()> {
        if matches!(self, Codec::Blosc2 { .. }) && !cfg!(feature = "blosc2") {
            return Err(crate::Error::CodecUnavailable {
                path: path.to_owned(),
                codec: "blosc2",
                feature: "blosc2",
            });
        }
        Ok(())
    }

    /// The on-disk codec id.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
            Codec::Zstd { .. } => 2,
            Codec::Blosc2 { .. } => 3,
        }
    }

    /// Name of an on-disk codec id, `None` for unknown ids.
    pub fn name_of_id(id: u8) -> Option<&'static str> {
        Some(match id {
            0 => "none",
            1 => "lz4",
            2 => "zstd",
            3 => "blosc2",
            _ => return None,
        })
    }

    /// Parses `none`, `lz4`, `zstd`, `zstd:LEVEL`, `blosc2`, `blosc2:LEVEL`.
    pub fn parse(s: &str) -> Option<Codec> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        match (name, level) {
            ("none", None) => Some(Codec::None),
            ("lz4", None) => Some(Codec::Lz4),
            ("zstd", None) => Some(Codec::Zstd { level: 1 }),
            ("zstd", Some(l)) => l.parse().ok().map(|level| Codec::Zstd { level }),
            ("blosc2", None) => Some(Codec::Blosc2 { level: 5 }),
            ("blosc2", Some(l)) => l
                .parse()
                .ok()
                .filter(|&l: &u8| l <= 9)
                .map(|level| Codec::Blosc2 { level }),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    /// Formats in the syntax [`Codec::parse`] accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::None => f.write_str("none"),
            Codec::Lz4 => f.write_str("lz4"),
            Codec::Zstd { level } => write!(f, "zstd:{level}"),
            Codec::Blosc2 { level } => write!(f, "blosc2:{level}"),
        }
    }
}

/// How new chunks are compressed: a codec and whether fixed-width cells are
/// byte-shuffled first (which groups the bytes of equal significance and makes
/// smooth numeric fields compress far better).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// The compressor.
    pub codec: Codec,
    /// Byte-shuffle cells wider than one byte before compressing.
    pub shuffle: bool,
}

impl Default for Compression {
    /// LZ4 with byte shuffle: chosen by the codec benchmark (`ARCHITECTURE.md`, "Default codec").
    fn default() -> Self {
        Compression {
            codec: Codec::Lz4,
            shuffle: true,
        }
    }
}

/// On-disk filter id: no filter.
pub(crate) const FILTER_NONE: u8 = 0;
/// On-disk filter id: byte shuffle with the element width of the array's dtype.
pub(crate) const FILTER_SHUFFLE: u8 = 1;

/// A failure to decode a block; the caller adds the path and offset.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// The bytes are damaged.
    Damaged(String),
    /// The codec is known but compiled out of this build.
    #[cfg_attr(feature = "blosc2", allow(dead_code))] // every codec is compiled in
    Unavailable {
        codec: &'static str,
        feature: &'static str,
    },
}

/// Buffers one thread's block encodes reuse: the shuffled cells, the LZ4
/// hash table and the compressed output. Encoding a small chunk then
/// allocates only its result.
struct EncodeScratch {
    shuffled: Vec<u8>,
    lz4: lz4::Table,
    out: Vec<u8>,
}

thread_local! {
    static ENCODE: std::cell::RefCell<Option<EncodeScratch>> = const { std::cell::RefCell::new(None) };
}

/// Encodes `raw` cells of width `width` (0 for strings); returns (bytes, codec id, filter id).
pub(crate) fn encode_block(
    raw: &[u8],
    width: usize,
    compression: Compression,
) -> (Vec<u8>, u8, u8) {
    let shuffle_it = compression.shuffle && width > 1 && !raw.is_empty();
    let filter = if shuffle_it {
        FILTER_SHUFFLE
    } else {
        FILTER_NONE
    };
    if compression.codec == Codec::Lz4 && raw.len() < lz4::SMALL_LIMIT {
        let stored = ENCODE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let s = slot.get_or_insert_with(|| EncodeScratch {
                shuffled: Vec::new(),
                lz4: lz4::Table::new(),
                out: Vec::new(),
            });
            let input = if shuffle_it {
                // Grown, never cleared: the shuffle writes every byte of
                // the part it uses (zeroing it first was a third of the
                // shuffle's cost on the Argo import's small chunks).
                if s.shuffled.len() < raw.len() {
                    s.shuffled.resize(raw.len(), 0);
                }
                let buf = &mut s.shuffled[..raw.len()];
                shuffle_into(raw, width, buf);
                &buf[..]
            } else {
                raw
            };
            s.out.clear();
            lz4::compress_small(input, &mut s.lz4, &mut s.out);
            // An exact-size copy: the scratch keeps its capacity.
            s.out.clone()
        });
        return (stored, Codec::Lz4.id(), filter);
    }
    let shuffled;
    let input = if shuffle_it {
        shuffled = shuffle(raw, width);
        &shuffled[..]
    } else {
        raw
    };
    let stored = match compression.codec {
        Codec::None => input.to_vec(),
        Codec::Lz4 => lz4_flex::block::compress(input),
        Codec::Zstd { level } => {
            zstd::bulk::compress(input, level).expect("zstd compression of an in-memory buffer")
        }
        #[cfg(feature = "blosc2")]
        Codec::Blosc2 { level } => match blosc2::compress(input, width.max(1), level) {
            Ok(b) => b,
            // Blosc2 refusing a buffer is not a data problem: fall back to storing it.
            Err(_) => return (input.to_vec(), Codec::None.id(), filter),
        },
        // `ArrayFile` refuses such options (`Codec::check_available`) before
        // any block is encoded.
        #[cfg(not(feature = "blosc2"))]
        Codec::Blosc2 { .. } => unreachable!("blosc2 options are refused without the feature"),
    };
    (stored, compression.codec.id(), filter)
}

/// Decodes a stored block to exactly `raw_len` raw bytes.
pub(crate) fn decode_block(
    stored: &[u8],
    codec: u8,
    filter: u8,
    width: usize,
    raw_len: usize,
) -> Result<Vec<u8>, DecodeError> {
    let mut bufs = DecodeBuffers::default();
    decode_block_into(stored, codec, filter, width, raw_len, &mut bufs)?;
    Ok(bufs.out)
}

/// The buffers of [`decode_block_into`], kept by a caller that decodes many
/// blocks (a scan decodes one small block per dataset: allocating the
/// codec's output and the unshuffled copy for each cost more than LZ4).
#[derive(Debug, Default)]
pub(crate) struct DecodeBuffers {
    /// The decoded block, after a successful [`decode_block_into`].
    pub(crate) out: Vec<u8>,
    /// The codec's output while the shuffle filter is undone.
    spare: Vec<u8>,
}

impl DecodeBuffers {
    /// Frees a buffer whose capacity grew past `keep` bytes.
    pub(crate) fn trim(&mut self, keep: usize) {
        for b in [&mut self.out, &mut self.spare] {
            if b.capacity() > keep {
                *b = Vec::new();
            }
        }
    }
}

/// [`decode_block`] into `bufs.out`, reusing the buffers' memory.
pub(crate) fn decode_block_into(
    stored: &[u8],
    codec: u8,
    filter: u8,
    width: usize,
    raw_len: usize,
    bufs: &mut DecodeBuffers,
) -> Result<(), DecodeError> {
    decompress_into(stored, codec, raw_len, bufs)?;
    undo_filter(filter, width, raw_len, bufs)
}

/// The filter stage of [`decode_block_into`] alone, on the `raw_len` bytes
/// the codec left in `bufs.out`.
pub(crate) fn undo_filter(
    filter: u8,
    width: usize,
    raw_len: usize,
    bufs: &mut DecodeBuffers,
) -> Result<(), DecodeError> {
    match filter {
        FILTER_NONE => Ok(()),
        FILTER_SHUFFLE if width > 1 && raw_len.is_multiple_of(width) => {
            unshuffle_buffers(bufs, width);
            Ok(())
        }
        other => Err(filter_error(other, raw_len, width)),
    }
}

/// Undoes the shuffle filter on `bufs.out` (cells of `width` bytes), in
/// place as far as the caller sees.
pub(crate) fn unshuffle_buffers(bufs: &mut DecodeBuffers, width: usize) {
    std::mem::swap(&mut bufs.out, &mut bufs.spare);
    unshuffle_into(&bufs.spare, width, &mut bufs.out);
}

/// Why `filter` cannot be undone on `raw_len` bytes of `width`-byte cells
/// (an unknown filter id, or a shuffle of cells that do not tile the block).
pub(crate) fn filter_error(filter: u8, raw_len: usize, width: usize) -> DecodeError {
    if filter == FILTER_SHUFFLE {
        DecodeError::Damaged(format!(
            "shuffle filter on {raw_len} bytes of {width}-byte cells"
        ))
    } else {
        DecodeError::Damaged(format!("unknown filter id {filter}"))
    }
}

/// The codec stage of [`decode_block_into`] alone: `bufs.out` holds exactly
/// `raw_len` bytes, still filtered, on success.
pub(crate) fn decompress_into(
    stored: &[u8],
    codec: u8,
    raw_len: usize,
    bufs: &mut DecodeBuffers,
) -> Result<(), DecodeError> {
    let decoded = &mut bufs.out;
    // The codecs below overwrite what they report writing and the length is
    // checked against `raw_len`, so a reused buffer of the right length is
    // not cleared first (zeroing it cost as much as decoding a small block).
    if codec == 0 || decoded.len() != raw_len {
        decoded.clear();
    }
    match codec {
        0 => decoded.extend_from_slice(stored),
        1 => {
            decoded.resize(raw_len, 0);
            let n = lz4::decompress_into(stored, decoded)
                .map_err(|e| DecodeError::Damaged(format!("lz4: {e}")))?;
            decoded.truncate(n);
        }
        2 => {
            thread_local! {
                // One decompression context per thread: creating one per block
                // dominated the decoding of small chunks.
                static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            // Exactly `raw_len` bytes of room, however large the reused
            // buffer grew: a block never decodes past what it recorded.
            decoded.resize(raw_len, 0);
            let n = ZSTD
                .with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot.is_none() {
                        *slot = Some(zstd::bulk::Decompressor::new()?);
                    }
                    slot.as_mut()
                        .expect("set above")
                        .decompress_to_buffer(stored, &mut decoded[..])
                })
                .map_err(|e| DecodeError::Damaged(format!("zstd: {e}")))?;
            decoded.truncate(n);
        }
        3 => {
            #[cfg(feature = "blosc2")]
            {
                *decoded = blosc2::decompress(stored, raw_len).map_err(DecodeError::Damaged)?;
            }
            #[cfg(not(feature = "blosc2"))]
            {
                return Err(DecodeError::Unavailable {
                    codec: "blosc2",
                    feature: "blosc2",
                });
            }
        }
        other => return Err(DecodeError::Damaged(format!("unknown codec id {other}"))),
    }
    if decoded.len() != raw_len {
        return Err(DecodeError::Damaged(format!(
            "decoded {} bytes where {raw_len} were recorded",
            decoded.len()
        )));
    }
    Ok(())
}

/// Byte shuffle: byte `b` of cell `i` moves to `b * n + i`.
pub(crate) fn shuffle(raw: &[u8], width: usize) -> Vec<u8> {
    let mut out = vec![0u8; raw.len()];
    shuffle_into(raw, width, &mut out);
    out
}

/// [`shuffle`] into `out`, of `raw`'s length.
fn shuffle_into(raw: &[u8], width: usize, out: &mut [u8]) {
    match width {
        2 => shuffle2(raw, out),
        4 => shuffle4(raw, out),
        8 => shuffle8(raw, out),
        _ => shuffle_any(raw, width, out),
    }
}

/// Inverse of [`shuffle`].
#[cfg(test)]
pub(crate) fn unshuffle(shuffled: &[u8], width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    unshuffle_into(shuffled, width, &mut out);
    out
}

/// Inverse of [`shuffle`], into `out` (its memory reused).
pub(crate) fn unshuffle_into(shuffled: &[u8], width: usize, out: &mut Vec<u8>) {
    out.clear();
    // The common widths gather the cells a group at a time into a block on
    // the stack (a loop over zipped slices, which the compiler vectorizes)
    // and append the block: one write of each byte of `out`, so a fresh
    // buffer's pages are first touched by that write and never zeroed
    // first. Appending each cell as it was gathered (`extend`) was as fast
    // only where the compiler inlined its way to a loop without capacity
    // checks: one build of the bench unshuffled a 32 KiB tile in 396 M
    // instructions per 4,000 against another's 184 M, from the same source.
    match width {
        2 => unshuffle2(shuffled, out),
        4 => unshuffle4(shuffled, out),
        8 => unshuffle8(shuffled, out),
        _ => {
            out.resize(shuffled.len(), 0);
            unshuffle_any(shuffled, width, out);
        }
    }
}

/// Cells an unshuffle gathers per block (see [`unshuffle_into`]).
const UNSHUFFLE_GROUP: usize = 64;

/// Cells `at..at + len` of two byte planes.
fn gather2<'a>(p: &[&'a [u8]; 2], at: usize, len: usize) -> impl Iterator<Item = [u8; 2]> + 'a {
    let r = at..at + len;
    p[0][r.clone()].iter().zip(&p[1][r]).map(|(&a, &b)| [a, b])
}

/// Cells `at..at + len` of four byte planes.
fn gather4<'a>(p: &[&'a [u8]; 4], at: usize, len: usize) -> impl Iterator<Item = [u8; 4]> + 'a {
    let r = at..at + len;
    p[0][r.clone()]
        .iter()
        .zip(&p[1][r.clone()])
        .zip(&p[2][r.clone()])
        .zip(&p[3][r])
        .map(|(((&a, &b), &c), &d)| [a, b, c, d])
}

/// Cells `at..at + len` of eight byte planes.
fn gather8<'a>(p: &[&'a [u8]; 8], at: usize, len: usize) -> impl Iterator<Item = [u8; 8]> + 'a {
    gather4(&[p[0], p[1], p[2], p[3]], at, len)
        .zip(gather4(&[p[4], p[5], p[6], p[7]], at, len))
        .map(|(l, h)| [l[0], l[1], l[2], l[3], h[0], h[1], h[2], h[3]])
}

/// Unshuffles `W`-byte cells, appending them to `out` a block of
/// [`UNSHUFFLE_GROUP`] cells at a time, then the bytes past the last whole
/// cell.
macro_rules! unshuffle_blocked {
    ($name:ident, $w:literal, $gather:ident) => {
        fn $name(shuffled: &[u8], out: &mut Vec<u8>) {
            const W: usize = $w;
            out.reserve(shuffled.len());
            let n = shuffled.len() / W;
            let planes: [&[u8]; W] = std::array::from_fn(|b| &shuffled[b * n..(b + 1) * n]);
            let mut block = [0u8; W * UNSHUFFLE_GROUP];
            let mut at = 0;
            while at < n {
                let len = (n - at).min(UNSHUFFLE_GROUP);
                for (d, c) in block.chunks_exact_mut(W).zip($gather(&planes, at, len)) {
                    d.copy_from_slice(&c);
                }
                out.extend_from_slice(&block[..len * W]);
                at += len;
            }
            out.extend_from_slice(&shuffled[n * W..]);
        }
    };
}

unshuffle_blocked!(unshuffle2, 2, gather2);
unshuffle_blocked!(unshuffle4, 4, gather4);
unshuffle_blocked!(unshuffle8, 8, gather8);

/// Byte-shuffles `W`-byte cells (`W` the size of `$word`): the cells
/// are read as little-endian words, 16 at a time, and each word's byte `b`
/// taken with a shift. Written this way the compiler vectorizes the
/// transposition: 11–18 GB/s for four-byte cells on this machine, against
/// 2.6 GB/s for the byte-indexed loop it replaced (a scratch benchmark of
/// 200-byte and 32 KiB blocks); eight-byte cells gain less (1.5 → 3.3–4.2
/// GB/s). The cells past the last whole group of 16, and the bytes past the
/// last whole cell, are copied one at a time.
macro_rules! shuffle_words {
    ($name:ident, $word:ty) => {
        fn $name(raw: &[u8], out: &mut [u8]) {
            const W: usize = size_of::<$word>();
            const LANES: usize = 16;
            let n = raw.len() / W;
            let (body, tail) = raw.split_at(n * W);
            let (planes, out_tail) = out.split_at_mut(n * W);
            out_tail.copy_from_slice(tail);
            let whole = n / LANES * LANES;
            let mut words = [0 as $word; LANES];
            let mut bytes = [[0u8; LANES]; W];
            for i in (0..whole).step_by(LANES) {
                let cells = &body[i * W..(i + LANES) * W];
                for (w, c) in words.iter_mut().zip(cells.chunks_exact(W)) {
                    *w = <$word>::from_le_bytes(c.try_into().expect("a whole cell"));
                }
                for (b, plane) in bytes.iter_mut().enumerate() {
                    for (d, w) in plane.iter_mut().zip(&words) {
                        // Byte `b` of the cell: the truncation is the point.
                        #[allow(clippy::cast_possible_truncation)]
                        {
                            *d = (*w >> (8 * b)) as u8;
                        }
                    }
                }
                for (b, plane) in bytes.iter().enumerate() {
                    planes[b * n + i..b * n + i + LANES].copy_from_slice(plane);
                }
            }
            for (i, cell) in body.chunks_exact(W).enumerate().skip(whole) {
                for (b, &byte) in cell.iter().enumerate() {
                    planes[b * n + i] = byte;
                }
            }
        }
    };
}

shuffle_words!(shuffle2, u16);
shuffle_words!(shuffle4, u32);
shuffle_words!(shuffle8, u64);

fn shuffle_any(raw: &[u8], width: usize, out: &mut [u8]) {
    let n = raw.len() / width;
    for (i, cell) in raw[..n * width].chunks_exact(width).enumerate() {
        for (b, &byte) in cell.iter().enumerate() {
            out[b * n + i] = byte;
        }
    }
    out[n * width..].copy_from_slice(&raw[n * width..]);
}

fn unshuffle_any(shuffled: &[u8], width: usize, out: &mut [u8]) {
    let n = shuffled.len() / width;
    for (i, cell) in out[..n * width].chunks_exact_mut(width).enumerate() {
        for (b, byte) in cell.iter_mut().enumerate() {
            *byte = shuffled[b * n + i];
        }
    }
    out[n * width..].copy_from_slice(&shuffled[n * width..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| (20.0f32 + (i as f32 * 0.01).sin()).to_le_bytes())
            .collect()
    }

    #[test]
    fn shuffle_round_trips() {
        for w in [2, 3, 4, 8, 16] {
            for n in [0, 1, 5, 1000, 3000] {
                let raw: Vec<u8> = (0..=(w * n)).map(|i| (i * 7 % 251) as u8).collect();
                let sh = shuffle(&raw, w);
                assert_eq!(unshuffle(&sh, w), raw);
                if n > 1 {
                    // Byte 1 of cell 0 lands at plane 1.
                    assert_eq!(sh[n], raw[1]);
                }
            }
        }
    }

    /// The word-wise shuffles of two-, four- and eight-byte cells lay out
    /// every byte where the byte-wise one does, at every length around the
    /// groups of 16 cells they work in (and with a partial last cell).
    #[test]
    fn word_shuffles_match_the_bytewise_shuffle() {
        for w in [2, 4, 8] {
            for len in 0..=(w * 16 * 3 + w + 1) {
                let raw: Vec<u8> = (0..len).map(|i| (i * 31 % 251 + 1) as u8).collect();
                let mut want = vec![0u8; len];
                shuffle_any(&raw, w, &mut want);
                assert_eq!(shuffle(&raw, w), want, "{w}-byte cells, {len} bytes");
            }
        }
    }

    #[test]
    fn every_codec_round_trips() {
        let raw = field(10_000);
        for codec in [
            Codec::None,
            Codec::Lz4,
            Codec::Zstd { level: 3 },
            Codec::Blosc2 { level: 5 },
        ] {
            if codec.check_available(std::path::Path::new("t")).is_err() {
                continue;
            }
            for shuffle in [false, true] {
                let (stored, c, f) = encode_block(&raw, 4, Compression { codec, shuffle });
                let back = decode_block(&stored, c, f, 4, raw.len()).unwrap();
                assert_eq!(back, raw, "{codec} shuffle={shuffle}");
            }
        }
    }

    /// Small LZ4 blocks go through the reused table (`codec/lz4.rs`), large
    /// ones through `lz4_flex`: both store exactly `lz4_flex`'s bytes.
    #[test]
    fn lz4_blocks_are_lz4_flex_bytes_at_every_size() {
        // Larger blocks, then smaller ones: the thread's reused buffers
        // hold a larger block's bytes when a smaller one is encoded.
        for n in [0, 3, 50, 1000, 16_383, 16_384, 40_000, 1001, 7, 16_383, 2] {
            let raw = field(n);
            for shuffle_on in [false, true] {
                let (stored, c, f) = encode_block(
                    &raw,
                    4,
                    Compression {
                        codec: Codec::Lz4,
                        shuffle: shuffle_on,
                    },
                );
                let input = if shuffle_on && n > 0 {
                    shuffle(&raw, 4)
                } else {
                    raw.clone()
                };
                assert_eq!(
                    stored,
                    lz4_flex::block::compress(&input),
                    "{n} {shuffle_on}"
                );
                assert_eq!(decode_block(&stored, c, f, 4, raw.len()).unwrap(), raw);
            }
        }
    }

    #[test]
    fn empty_blocks_round_trip() {
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd { level: 1 }] {
            let (stored, c, f) = encode_block(
                &[],
                4,
                Compression {
                    codec,
                    shuffle: true,
                },
            );
            assert!(decode_block(&stored, c, f, 4, 0).unwrap().is_empty());
        }
    }

    #[test]
    fn damaged_blocks_are_errors() {
        let raw = field(1000);
        for codec in [Codec::Lz4, Codec::Zstd { level: 1 }] {
            let (stored, c, f) = encode_block(
                &raw,
                4,
                Compression {
                    codec,
                    shuffle: true,
                },
            );
            // Wrong recorded length, truncation, unknown ids.
            assert!(decode_block(&stored, c, f, 4, raw.len() + 4).is_err());
            assert!(decode_block(&stored[..stored.len() / 2], c, f, 4, raw.len()).is_err());
            assert!(decode_block(&stored, 99, f, 4, raw.len()).is_err());
            assert!(decode_block(&stored, c, 9, 4, raw.len()).is_err());
        }
    }

    #[test]
    fn codec_names_parse() {
        for c in [
            Codec::None,
            Codec::Lz4,
            Codec::Zstd { level: 7 },
            Codec::Blosc2 { level: 3 },
        ] {
            assert_eq!(Codec::parse(&c.to_string()), Some(c));
        }
        assert_eq!(Codec::parse("zstd"), Some(Codec::Zstd { level: 1 }));
        assert_eq!(Codec::parse("gzip"), None);
        assert_eq!(Codec::parse("blosc2:12"), None);
    }
}
