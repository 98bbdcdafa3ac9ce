//! Blosc2 codec (feature `blosc2`): a thin safe wrapper over `blosc2-rs`.
//!
//! Only the context API of `blosc2-rs` is used (`compress_ctx`,
//! `decompress_into_ctx`): every call owns its own `blosc2_context`, so calls
//! from several threads never share state, and Blosc2's global state
//! (`blosc2_init`, the global compressor set by `blosc1_set_compressor`) is never
//! touched.
//!
//! Settings: the LZ4 codec inside Blosc2, one thread per call, and **no** Blosc2
//! filter (`Filter::NoFilter`, i.e. NOSHUFFLE): the caller byte-shuffles before
//! compressing. (c-blosc2 lets the `BLOSC_SHUFFLE`, `BLOSC_DELTA`,
//! `BLOSC_TYPESIZE`, `BLOSC_NTHREADS`, … environment variables override these
//! when a context is created; the chunk header records what was really done, so
//! output written under such overrides still decodes.)
//!
//! An empty input compresses to an empty output, not to a 32-byte Blosc2 chunk.
//!
//! **Hostile input.** Blosc2 chunks carry no checksum, and the C decoder trusts
//! a few header fields more than we want to, so [`decompress`] parses and
//! validates the 32-byte extended header in Rust before anything reaches C:
//! declared sizes must match the caller's `raw_len` and the stored length, and
//! only the built-in codecs and filters are accepted. That rejects lazy chunks
//! (which would make the C library read a frame file), dictionaries, and
//! user-defined or plugin codecs and filters (which would make it `dlopen` a
//! library and even run `python -c …` to locate one).

use ::blosc2::{CLevel, CParams, Codec, Context, DParams, Filter};

/// Length of the Blosc2 extended chunk header (`BLOSC_EXTENDED_HEADER_LENGTH`).
const HEADER_LEN: usize = 32;

/// Largest input Blosc2 accepts (`BLOSC2_MAX_BUFFERSIZE`): its sizes are `i32`s
/// and the header is counted in the compressed size.
const MAX_RAW_LEN: usize = i32::MAX as usize - HEADER_LEN;

/// Largest block size the C library accepts (`BLOSC2_MAXBLOCKSIZE`).
const MAX_BLOCKSIZE: u32 = 536_866_816;

/// Oldest chunk format with the extended header (`BLOSC2_VERSION_FORMAT_ALPHA`).
const MIN_FORMAT_VERSION: u8 = 3;

/// Newest chunk format this build of c-blosc2 reads (`BLOSC2_VERSION_FORMAT`).
const MAX_FORMAT_VERSION: u8 = 5;

/// `flags` bits `BLOSC_DOSHUFFLE | BLOSC_DOBITSHUFFLE`: both set marks an extended header.
const FLAGS_EXTENDED_HEADER: u8 = 0x05;

/// Header codec formats (`flags >> 5`) of the built-in codecs: blosclz, lz4/lz4hc, zlib, zstd.
/// Excluded: 2 and 5 (reserved), 6 (user-defined or plugin codec), 7 (defined by a super-chunk).
const BUILTIN_COMPFORMATS: [u8; 4] = [0, 1, 3, 4];

/// Filter ids below this (`BLOSC_LAST_FILTER`) are the built-in ones:
/// none, shuffle, bitshuffle, delta, truncate-precision.
const LAST_BUILTIN_FILTER: u8 = 5;

/// `blosc2_flags` bits a chunk may carry: 0x02 (data written on a big-endian host,
/// informational) and 0x70 (special-value chunk: zeros, NaNs, a repeated value,
/// uninitialized). Rejected: 0x01 (dictionary), 0x04 (codec defined elsewhere),
/// 0x08 (lazy chunk), 0x80 (instrumented codec).
const ALLOWED_BLOSC2_FLAGS: u8 = 0x72;

/// Highest special-value id (`BLOSC2_SPECIAL_LASTID`).
const MAX_SPECIAL_TYPE: u8 = 4;

/// Compresses `raw` (elements of `typesize` bytes) at compression level `clevel` (0–9).
///
/// Blosc2 only uses `typesize` to round its block size (its shuffle is off), so a
/// `typesize` other than 1, 2, 4, 8 or 16, or one that does not divide
/// `raw.len()`, is recorded as 1.
pub(crate) fn compress(raw: &[u8], typesize: usize, clevel: u8) -> Result<Vec<u8>, String> {
    if typesize == 0 {
        return Err(compress_error("typesize is zero"));
    }
    let level = CLevel::try_from(usize::from(clevel))
        .map_err(|_| compress_error(format!("level {clevel} is not in 0..=9")))?;
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if raw.len() > MAX_RAW_LEN {
        return Err(compress_error(format!(
            "{} bytes exceeds the {MAX_RAW_LEN}-byte limit",
            raw.len()
        )));
    }
    match typesize {
        2 => compress_as::<2>(raw, level),
        4 => compress_as::<4>(raw, level),
        8 => compress_as::<8>(raw, level),
        16 => compress_as::<16>(raw, level),
        _ => compress_as::<1>(raw, level),
    }
}

/// Compresses `raw` viewed as `N`-byte elements; falls back to `N = 1` if
/// `raw.len()` is not a multiple of `N`.
///
/// `blosc2::compress_ctx` takes a slice of elements and hands C
/// `len × context typesize` bytes, so it is only sound when the element type is
/// exactly `typesize` bytes: hence `[u8; N]`, and the check that the context kept
/// typesize `N` (the `BLOSC_TYPESIZE` environment variable can override it).
fn compress_as<const N: usize>(raw: &[u8], level: CLevel) -> Result<Vec<u8>, String> {
    let (elements, rest) = raw.as_chunks::<N>();
    if !rest.is_empty() {
        return compress_as::<1>(raw, level);
    }
    let params = CParams::from_typesize(N)
        .set_codec(Codec::LZ4)
        .set_clevel(level)
        .set_filter(Filter::NoFilter)
        .set_nthreads(1);
    let mut ctx = Context::from(params);
    let ctx_typesize = ctx
        .get_cparams()
        .map_err(|e| compress_error(describe(e)))?
        .get_typesize();
    if ctx_typesize != N {
        return Err(compress_error(format!(
            "context typesize is {ctx_typesize}, not {N} (is BLOSC_TYPESIZE set?)"
        )));
    }
    ::blosc2::compress_ctx(elements, &mut ctx).map_err(|e| compress_error(describe(e)))
}

/// Decompresses a Blosc2 frame/chunk produced by `compress`; `raw_len` is the expected decompressed length.
///
/// Returns `Err` on any input that is not a well-formed chunk of exactly
/// `raw_len` bytes, never panics, and allocates `raw_len` bytes for the output
/// only after the header has been validated (the C library adds temporaries of
/// a few block sizes, and a block is never larger than `raw_len`). Without a
/// checksum in the format, damage inside the compressed payload can still decode
/// to wrong bytes of the right length; the caller's block checksum catches that.
pub(crate) fn decompress(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    if stored.is_empty() {
        return if raw_len == 0 {
            Ok(Vec::new())
        } else {
            Err(decompress_error(format!(
                "empty input, expected {raw_len} bytes"
            )))
        };
    }
    check_header(stored, raw_len)?;
    if raw_len == 0 {
        return Ok(Vec::new());
    }
    let mut ctx = Context::from(DParams::default().set_nthreads(1));
    // `decompress_into_ctx` does not check for a null context; this does.
    ctx.get_dparams()
        .map_err(|e| decompress_error(describe(e)))?;
    let mut out = vec![0u8; raw_len];
    let n = ::blosc2::decompress_into_ctx(stored, &mut out, &mut ctx)
        .map_err(|e| decompress_error(describe(e)))?;
    if n != raw_len {
        return Err(decompress_error(format!(
            "produced {n} bytes, expected {raw_len}"
        )));
    }
    Ok(out)
}

/// Validates the 32-byte extended chunk header of `stored` against `raw_len`.
///
/// After this, the header fields `blosc2::decompress_into_ctx` trusts blindly
/// (it reads 16 header bytes without a length, and tells C the output buffer has
/// the header's `nbytes`) are known to match the actual buffers.
fn check_header(stored: &[u8], raw_len: usize) -> Result<(), String> {
    let Some(header) = stored.first_chunk::<HEADER_LEN>() else {
        return Err(decompress_error(format!(
            "{} bytes is shorter than the {HEADER_LEN}-byte header",
            stored.len()
        )));
    };
    let le_u32 = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (version, flags, typesize) = (header[0], header[2], header[3]);
    let (nbytes, blocksize, cbytes) = (le_u32(4), le_u32(8), le_u32(12));
    let filters = &header[16..22];
    let blosc2_flags = header[31];

    if !(MIN_FORMAT_VERSION..=MAX_FORMAT_VERSION).contains(&version) {
        return Err(decompress_error(format!(
            "unsupported chunk format version {version}"
        )));
    }
    if flags & FLAGS_EXTENDED_HEADER != FLAGS_EXTENDED_HEADER {
        return Err(decompress_error("not a blosc2 extended-header chunk"));
    }
    let compformat = flags >> 5;
    if !BUILTIN_COMPFORMATS.contains(&compformat) {
        return Err(decompress_error(format!(
            "unsupported codec format {compformat}"
        )));
    }
    if let Some(f) = filters.iter().find(|&&f| f >= LAST_BUILTIN_FILTER) {
        return Err(decompress_error(format!("unsupported filter id {f}")));
    }
    if blosc2_flags & !ALLOWED_BLOSC2_FLAGS != 0 {
        return Err(decompress_error(format!(
            "unsupported chunk flags {blosc2_flags:#04x}"
        )));
    }
    let special = (blosc2_flags >> 4) & 0x07;
    if special > MAX_SPECIAL_TYPE {
        return Err(decompress_error(format!(
            "unsupported special value id {special}"
        )));
    }
    if typesize == 0 {
        return Err(decompress_error("typesize is zero"));
    }
    if usize::try_from(nbytes).ok() != Some(raw_len) || raw_len > MAX_RAW_LEN {
        return Err(decompress_error(format!(
            "header declares {nbytes} bytes, expected {raw_len}"
        )));
    }
    if usize::try_from(cbytes).ok() != Some(stored.len()) || stored.len() > i32::MAX as usize {
        return Err(decompress_error(format!(
            "header declares {cbytes} stored bytes, got {}",
            stored.len()
        )));
    }
    if blocksize == 0 || blocksize > MAX_BLOCKSIZE || (nbytes > 0 && blocksize > nbytes) {
        return Err(decompress_error(format!("invalid block size {blocksize}")));
    }
    Ok(())
}

/// Renders a `blosc2-rs` error as a short lowercase reason.
fn describe(e: ::blosc2::Error) -> String {
    match e {
        ::blosc2::Error::Blosc2(code) => format!("c-blosc2 error {code:?}").to_lowercase(),
        ::blosc2::Error::Other(msg) => msg.to_lowercase(),
    }
}

/// Formats a compression error.
fn compress_error(reason: impl std::fmt::Display) -> String {
    format!("blosc2 compression failed: {reason}")
}

/// Formats a decompression error.
fn decompress_error(reason: impl std::fmt::Display) -> String {
    format!("blosc2 decompression failed: {reason}")
}

/// Round trips and hostile-input tests.
#[cfg(test)]
mod tests {
    use super::{compress, decompress, HEADER_LEN};
    use std::time::Instant;

    /// Deterministic xorshift64* generator.
    struct XorShift(u64);

    impl XorShift {
        /// Next pseudo-random value.
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Pseudo-random value in `0..n`.
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        /// `n` pseudo-random bytes.
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// `n` samples of a smooth field as little-endian f32 bytes.
    fn smooth_field(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                let x = i as f32 * 0.001;
                (x.sin() * 100.0 + (3.0 * x).cos()).to_le_bytes()
            })
            .collect()
    }

    /// Byte-shuffle, as the caller applies it before compressing.
    fn shuffle(raw: &[u8], width: usize) -> Vec<u8> {
        let n = raw.len() / width;
        let mut out = vec![0u8; raw.len()];
        for (i, element) in raw.chunks_exact(width).enumerate() {
            for (b, &byte) in element.iter().enumerate() {
                out[b * n + i] = byte;
            }
        }
        out
    }

    /// Overwrites the header's `cbytes` field so a mutated buffer passes the length check.
    fn patch_cbytes(buf: &mut [u8]) {
        if buf.len() >= HEADER_LEN {
            let len = u32::try_from(buf.len()).unwrap().to_le_bytes();
            buf[12..16].copy_from_slice(&len);
        }
    }

    /// Feeds `stored` to `decompress`: it must fail cleanly or return `raw_len` bytes.
    /// Returns whether it decoded to `expected`.
    fn probe(stored: &[u8], raw_len: usize, expected: Option<&[u8]>) -> Option<bool> {
        match decompress(stored, raw_len) {
            Err(e) => {
                assert!(e.starts_with("blosc2 decompression failed: "), "{e}");
                None
            }
            Ok(out) => {
                assert_eq!(out.len(), raw_len);
                Some(expected.is_some_and(|x| x == out.as_slice()))
            }
        }
    }

    /// Round trip of a smooth f32 field, raw and byte-shuffled; prints ratio and speed.
    #[test]
    fn round_trip_smooth_f32_field() {
        let raw = smooth_field(100_000);
        let started = Instant::now();
        let stored = compress(&raw, 4, 5).unwrap();
        let compress_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let back = decompress(&stored, raw.len()).unwrap();
        let decompress_s = started.elapsed().as_secs_f64();
        assert_eq!(back, raw);

        // The header records LZ4, typesize 4 and no Blosc2 filter.
        assert_eq!(stored[2] >> 5, 1, "codec format lz4");
        assert_eq!(stored[3], 4, "typesize");
        if std::env::var_os("BLOSC_SHUFFLE").is_none() && std::env::var_os("BLOSC_DELTA").is_none()
        {
            assert_eq!(&stored[16..22], &[0; 6], "no blosc2 filters");
        }

        let shuffled = shuffle(&raw, 4);
        let started = Instant::now();
        let stored_shuffled = compress(&shuffled, 4, 5).unwrap();
        let shuffled_compress_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let back = decompress(&stored_shuffled, raw.len()).unwrap();
        let shuffled_decompress_s = started.elapsed().as_secs_f64();
        assert_eq!(back, shuffled);

        let mb = raw.len() as f64 / 1e6;
        println!(
            "blosc2 lz4 clevel 5, {} bytes: unshuffled ratio {:.2}, compress {:.0} MB/s, decompress {:.0} MB/s; \
             byte-shuffled ratio {:.2}, compress {:.0} MB/s, decompress {:.0} MB/s",
            raw.len(),
            raw.len() as f64 / stored.len() as f64,
            mb / compress_s,
            mb / decompress_s,
            raw.len() as f64 / stored_shuffled.len() as f64,
            mb / shuffled_compress_s,
            mb / shuffled_decompress_s,
        );
    }

    /// Round trips across levels, typesizes (including unsupported ones) and data kinds.
    #[test]
    fn round_trip_levels_and_typesizes() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let inputs = [
            smooth_field(1_000),
            vec![0u8; 10_000],
            rng.bytes(3_001),
            vec![7u8; 1],
        ];
        for raw in &inputs {
            for typesize in [1, 2, 3, 4, 8, 16, 300] {
                for clevel in [0, 1, 5, 9] {
                    let stored = compress(raw, typesize, clevel).unwrap();
                    assert_eq!(decompress(&stored, raw.len()).unwrap(), *raw);
                    // A wrong expected length is refused before decoding.
                    assert!(decompress(&stored, raw.len() + 1).is_err());
                    assert!(decompress(&stored, raw.len() - 1).is_err());
                }
            }
        }
    }

    /// Empty input compresses to nothing and decodes only with `raw_len == 0`.
    #[test]
    fn empty_input() {
        let stored = compress(&[], 4, 5).unwrap();
        assert!(stored.is_empty());
        assert_eq!(decompress(&stored, 0).unwrap(), Vec::<u8>::new());
        assert!(decompress(&stored, 1).is_err());
        assert!(decompress(&[0u8; 3], 0).is_err());
    }

    /// Zero typesize and levels above 9 are refused.
    #[test]
    fn bad_parameters() {
        assert!(compress(b"abcd", 0, 5)
            .unwrap_err()
            .starts_with("blosc2 compression failed: "));
        assert!(compress(b"abcd", 4, 10).is_err());
    }

    /// Headers with bad sizes, versions, codecs, filters or flags never reach C.
    #[test]
    fn rejects_hostile_headers() {
        let raw = smooth_field(2_000);
        let good = compress(&raw, 4, 5).unwrap();
        let raw_len = raw.len();
        let with = |at: usize, value: u8| {
            let mut b = good.clone();
            b[at] = value;
            b
        };
        let with_u32 = |at: usize, value: u32| {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&value.to_le_bytes());
            b
        };
        let hostile = [
            with_u32(4, i32::MAX as u32),         // huge nbytes
            with_u32(4, u32::MAX),                // negative nbytes
            with_u32(12, i32::MAX as u32),        // huge cbytes
            with_u32(8, 0),                       // zero blocksize
            with_u32(8, u32::MAX),                // huge blocksize
            with(0, 6),                           // future format version
            with(0, 2),                           // blosc1 format version
            with(2, good[2] & !0x04),             // no extended header
            with(2, (good[2] & 0x1f) | (6 << 5)), // user-defined / plugin codec
            with(2, (good[2] & 0x1f) | (7 << 5)), // codec defined by a super-chunk
            with(3, 0),                           // zero typesize
            with(16, 5),                          // filter sentinel
            with(21, 32),                         // registered plugin filter
            with(21, 200),                        // user filter
            with(31, 0x01),                       // dictionary
            with(31, 0x08),                       // lazy chunk
            with(31, 0x80),                       // instrumented codec
            with(31, 0x50),                       // special value id 5
        ];
        for (i, stored) in hostile.iter().enumerate() {
            assert!(decompress(stored, raw_len).is_err(), "case {i} accepted");
        }
        // A header claiming 2 GiB is refused for a small expected length, and the
        // expected length is refused for a small header.
        let mut claim = good[..HEADER_LEN].to_vec();
        claim[4..8].copy_from_slice(&(i32::MAX as u32 - 32).to_le_bytes());
        patch_cbytes(&mut claim);
        assert!(decompress(&claim, raw_len).is_err());
        assert!(decompress(&good, i32::MAX as usize - 32).is_err());
        assert!(decompress(&good, usize::MAX).is_err());
    }

    /// Truncated, bit-flipped and random inputs fail cleanly or decode to `raw_len` bytes.
    #[test]
    fn hostile_input_never_panics() {
        let mut rng = XorShift(0x0123_4567_89AB_CDEF);
        let samples: Vec<(Vec<u8>, usize, u8)> = vec![
            (smooth_field(4_096), 4, 5),
            (shuffle(&smooth_field(4_096), 4), 4, 9),
            (rng.bytes(2_000), 1, 9),
            (vec![0u8; 5_000], 8, 5),
            (smooth_field(1_024), 4, 0),
            (
                (0..20_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect(),
                4,
                1,
            ),
        ];
        let (mut runs, mut ok_wrong) = (0usize, 0usize);
        for (raw, typesize, clevel) in &samples {
            let good = compress(raw, *typesize, *clevel).unwrap();
            let expected = Some(raw.as_slice());
            assert_eq!(probe(&good, raw.len(), expected), Some(true));

            // Truncations: refused by the length check, and, with `cbytes`
            // patched to match, by the C decoder.
            for cut in 0..good.len() {
                let mut t = good[..cut].to_vec();
                assert_eq!(
                    probe(&t, raw.len(), expected),
                    None,
                    "truncation to {cut} accepted"
                );
                patch_cbytes(&mut t);
                if probe(&t, raw.len(), expected) == Some(false) {
                    ok_wrong += 1;
                }
                runs += 2;
            }

            // Bit flips: every bit of the header and the first block offsets,
            // then random bits anywhere.
            let header_bits = good.len().min(64) * 8;
            let random_bits = (0..2_000).map(|_| rng.below(good.len() * 8));
            for bit in (0..header_bits).chain(random_bits) {
                let mut f = good.clone();
                f[bit / 8] ^= 1 << (bit % 8);
                if probe(&f, raw.len(), expected) == Some(false) {
                    ok_wrong += 1;
                }
                runs += 1;
            }

            // Random bytes after a valid header, with a random stored length.
            for _ in 0..300 {
                let len = HEADER_LEN + rng.below(good.len());
                let mut r = good[..HEADER_LEN].to_vec();
                r.extend(rng.bytes(len - HEADER_LEN));
                patch_cbytes(&mut r);
                probe(&r, raw.len(), expected);
                runs += 1;
            }
        }

        // Random buffers, and random buffers behind a random header that passes
        // the Rust checks, so the C decoder sees every codec, filter, special
        // value and block layout.
        for _ in 0..3_000 {
            let raw_len = rng.below(5_000);
            let len = rng.below(600);
            probe(&rng.bytes(len), raw_len, None);

            let mut r = rng.bytes(HEADER_LEN + len);
            r[0] = 3 + rng.below(3) as u8;
            r[2] = (r[2] & 0x1a) | 0x05 | ([0u8, 1, 3, 4][rng.below(4)] << 5);
            r[3] = 1 + rng.below(16) as u8;
            r[4..8].copy_from_slice(&(raw_len as u32).to_le_bytes());
            let blocksize = 1 + rng.below(raw_len.max(1)) as u32;
            r[8..12].copy_from_slice(&blocksize.to_le_bytes());
            for f in &mut r[16..22] {
                *f = if rng.below(3) == 0 {
                    rng.below(5) as u8
                } else {
                    0
                };
            }
            r[31] = match rng.below(4) {
                0 => 0,
                1 => 0x02,
                _ => (rng.below(5) as u8) << 4,
            };
            patch_cbytes(&mut r);
            probe(&r, raw_len, None);
            runs += 2;
        }
        println!("hostile inputs: {runs} decoded without panic; {ok_wrong} decoded to wrong bytes (no checksum in blosc2)");
    }
}
