//! Damaged and hostile layer files: truncation at every length, bit flips in
//! header, footer, trailer and blocks, wrong magic and future versions, and the
//! `fuzzing` entry points on pseudo-random and mutated valid inputs. Damage must
//! always surface as a corruption or I/O error: never a panic, never wrong data.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use array_format::{
    fuzzing, ArrayFile, ArrayFileOptions, Codec, Compression, DeltaCache, Error, FillValue,
    LayerId, LocalStorage, MemoryStorage, Storage, TimestampNs,
};
use ndarray::ArrayD;

use crate::common::{
    data_end, dims, dump, dump_bounded, footer_blocks, footer_span, fuzz_iters, is_damage_error,
    nd, reseal, Rng, CODECS, MEM_DIR,
};

/// Runs `f`, turning a panic into a test failure that names `what`.
fn no_panic<R>(what: &str, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what}: panicked (see the message above)"))
}

fn set_compression(f: &mut ArrayFile, codec: Codec, shuffle: bool) {
    f.set_options(ArrayFileOptions {
        compression: Compression { codec, shuffle },
        ..f.options()
    })
    .expect("codec available in this build");
}

/// Writes a one-layer file with several arrays, dtypes and codecs into `dir`;
/// returns the layer and the dump of its contents.
fn build_layer(storage: Arc<dyn Storage>, dir: &Path) -> (LayerId, String) {
    let mut f = ArrayFile::create(
        storage,
        dir,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
    .expect("create");
    f.define_array::<f64>(
        "grid",
        dims(2),
        vec![6, 5],
        Some(vec![4, 3]),
        Some(FillValue::Float64(-1.0)),
    )
    .unwrap();
    set_compression(&mut f, Codec::Lz4, true);
    let v: Vec<f64> = (0..20).map(|i| f64::from(i) * 1.25 - 3.0).collect();
    f.write_array("grid", &[1, 0], nd(&[5, 4], v).view())
        .unwrap();

    // Uncompressed strings put the trailer magic itself inside a block, so some
    // truncations end exactly on "AF-FOOTR".
    f.define_array::<String>("names", dims(1), vec![5], Some(vec![2]), None)
        .unwrap();
    set_compression(&mut f, Codec::None, false);
    let names: Vec<String> = ["", "AF-FOOTR", "日本", "x", "AF-FOOTR"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    f.write_array("names", &[], nd(&[5], names).view()).unwrap();

    f.define_array::<bool>("flags", dims(1), vec![3], None, None)
        .unwrap();
    f.write_array("flags", &[], nd(&[3], vec![true, false, true]).view())
        .unwrap();

    set_compression(&mut f, Codec::Zstd { level: 1 }, true);
    f.define_array::<i32>(
        "ints",
        dims(2),
        vec![4, 4],
        Some(vec![2, 2]),
        Some(FillValue::Int32(7)),
    )
    .unwrap();
    f.write_array("ints", &[1, 1], nd(&[3, 2], vec![1, 2, 3, 7, 5, 6]).view())
        .unwrap();
    f.define_array::<TimestampNs>("t", vec![], vec![], None, None)
        .unwrap();
    let t = ArrayD::from_elem(ndarray::IxDyn(&[]), TimestampNs(1_700_000_000_123_456_789));
    f.write_array("t", &[], t.view()).unwrap();
    f.define_array::<u8>("never_written", dims(1), vec![9], Some(vec![4]), None)
        .unwrap();
    let id = f.flush().unwrap().expect("a layer");
    let d = dump(&f).unwrap();
    (id, d)
}

/// The layer of [`build_layer`] in memory: (id, bytes, dump).
fn mem_layer() -> (LayerId, Vec<u8>, String) {
    let storage = Arc::new(MemoryStorage::new());
    let (id, d) = build_layer(storage.clone(), Path::new(MEM_DIR));
    let bytes = storage
        .contents(&Path::new(MEM_DIR).join(id.as_str()))
        .unwrap();
    (id, bytes, d)
}

/// Opens `bytes` as the single layer `id` (fresh storage and cache) and dumps it.
fn open_bytes(id: &LayerId, bytes: &[u8]) -> Result<String, Error> {
    let storage = Arc::new(MemoryStorage::new());
    storage.create_dir_all(Path::new(MEM_DIR)).unwrap();
    storage.overwrite(&Path::new(MEM_DIR).join(id.as_str()), bytes.to_vec());
    let f = ArrayFile::open(
        storage,
        Path::new(MEM_DIR),
        std::slice::from_ref(id),
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )?;
    dump(&f)
}

fn assert_damage(r: &Result<String, Error>, what: &str) {
    match r {
        Err(e) => assert!(is_damage_error(e), "{what}: unexpected error kind {e:?}"),
        Ok(d) => panic!("{what}: damaged file opened and read without error:\n{d}"),
    }
}

/// Offsets worth testing for truncation: structure boundaries of the file.
fn boundaries(bytes: &[u8]) -> Vec<usize> {
    let len = bytes.len();
    let (footer_off, _) = footer_span(bytes);
    let mut v = vec![
        0,
        1,
        8,
        12,
        16,
        31,
        32,
        33,
        63,
        64,
        footer_off - 1,
        footer_off,
        footer_off + 1,
        len - 33,
        len - 32,
        len - 31,
        len - 24,
        len - 16,
        len - 12,
        len - 8,
        len - 1,
    ];
    v.retain(|&c| c < len);
    v
}

#[test]
fn truncation_at_every_length_is_detected() {
    let (id, bytes, original) = mem_layer();
    assert_eq!(open_bytes(&id, &bytes).unwrap(), original, "intact file");
    for cut in 0..bytes.len() {
        let what = format!("truncated to {cut} of {} bytes", bytes.len());
        let r = no_panic(&what, || open_bytes(&id, &bytes[..cut]));
        assert_damage(&r, &what);
    }
}

#[test]
fn truncation_of_a_local_file_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (id, original) = build_layer(Arc::new(LocalStorage), &src);
    let bytes = std::fs::read(src.join(id.as_str())).unwrap();
    let dst = tmp.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    let open = |dir: &Path| {
        ArrayFile::open(
            Arc::new(LocalStorage),
            dir,
            std::slice::from_ref(&id),
            ArrayFileOptions::default(),
            Arc::new(DeltaCache::default()),
        )
        .and_then(|f| dump(&f))
    };
    assert_eq!(open(&src).unwrap(), original);
    let mut cuts = boundaries(&bytes);
    cuts.extend((0..bytes.len()).step_by(13));
    for cut in cuts {
        std::fs::write(dst.join(id.as_str()), &bytes[..cut]).unwrap();
        let what = format!("local file truncated to {cut} bytes");
        let r = no_panic(&what, || open(&dst));
        assert_damage(&r, &what);
    }
}

#[test]
fn every_bit_flip_in_footer_and_trailer_is_detected() {
    let (id, bytes, _) = mem_layer();
    let (footer_off, footer_len) = footer_span(&bytes);
    assert_eq!(footer_off + footer_len + 32, bytes.len());
    for pos in footer_off..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            let what = format!("bit {bit} of byte {pos} flipped (footer at {footer_off})");
            let r = no_panic(&what, || open_bytes(&id, &b));
            assert_damage(&r, &what);
        }
    }
}

#[test]
fn bit_flips_in_the_header_never_give_wrong_data() {
    let (id, bytes, original) = mem_layer();
    for pos in 0..32 {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            let what = format!("header bit {bit} of byte {pos} flipped");
            match no_panic(&what, || open_bytes(&id, &b)) {
                Err(e) => assert!(is_damage_error(&e), "{what}: {e:?}"),
                // Bytes 12..16 are reserved (written as zero); nothing reads them.
                Ok(d) => {
                    assert!((12..16).contains(&pos), "{what}: undetected");
                    assert_eq!(d, original, "{what}: wrong data");
                }
            }
        }
    }
}

/// A layer whose first block is array "one" (one chunk) and whose second
/// array "two" is stored after it: (id, bytes, end of the first block).
fn two_array_layer(codec: Codec) -> (LayerId, Vec<u8>, usize) {
    let storage = Arc::new(MemoryStorage::new());
    let mut f = ArrayFile::create(
        storage.clone(),
        Path::new(MEM_DIR),
        ArrayFileOptions {
            compression: Compression {
                codec,
                shuffle: true,
            },
            ..ArrayFileOptions::default()
        },
        Arc::new(DeltaCache::default()),
    )
    .unwrap();
    f.define_array::<f64>("one", dims(1), vec![8], None, None)
        .unwrap();
    let one: Vec<f64> = (0..8).map(|i| f64::from(i) + 0.5).collect();
    f.write_array("one", &[], nd(&[8], one).view()).unwrap();
    let id = f.flush().unwrap().unwrap();
    let first = storage
        .contents(&Path::new(MEM_DIR).join(id.as_str()))
        .unwrap();
    let block_end = data_end(&first);
    f.define_array::<i64>("two", dims(1), vec![3], None, None)
        .unwrap();
    f.write_array("two", &[], nd(&[3], vec![10i64, 20, 30]).view())
        .unwrap();
    f.flush().unwrap();
    f.compact().unwrap();
    let id = f.layers()[0].clone();
    let bytes = storage
        .contents(&Path::new(MEM_DIR).join(id.as_str()))
        .unwrap();
    (id, bytes, block_end)
}

#[test]
fn a_bit_flip_in_a_block_fails_that_chunk_with_path_and_offset() {
    for &codec in CODECS {
        let (id, bytes, block_end) = two_array_layer(codec);
        let path = Path::new(MEM_DIR).join(id.as_str());
        for pos in 32..block_end {
            let mut b = bytes.clone();
            b[pos] ^= 1 << (pos % 8);
            let what = format!("{codec}: bit flipped in block byte {pos}");
            let storage = Arc::new(MemoryStorage::new());
            storage.create_dir_all(Path::new(MEM_DIR)).unwrap();
            storage.overwrite(&path, b);
            let f = ArrayFile::open(
                storage,
                Path::new(MEM_DIR),
                std::slice::from_ref(&id),
                ArrayFileOptions::default(),
                Arc::new(DeltaCache::default()),
            )
            .unwrap_or_else(|e| panic!("{what}: the footer is intact, open must work: {e}"));
            // The other array is untouched.
            let two = f.read_array::<i64>("two", &[], &[]).unwrap();
            assert_eq!(two.iter().copied().collect::<Vec<_>>(), vec![10, 20, 30]);
            for attempt in 0..2 {
                let e = f.read_array::<f64>("one", &[2], &[3]).unwrap_err();
                check_block_error(&e, &path, 32, &what);
                assert!(
                    e.to_string().contains(&path.display().to_string())
                        && e.to_string().contains("offset 32"),
                    "{what} (attempt {attempt}): message {e}"
                );
            }
            check_block_error(&f.verify().unwrap_err(), &path, 32, &what);
            // A compaction must not copy a damaged block into a new base.
            let mut f = f;
            check_block_error(&f.compact().unwrap_err(), &path, 32, &what);
        }
    }
}

fn check_block_error(e: &Error, path: &Path, offset: u64, what: &str) {
    match e {
        Error::Corrupt {
            path: p, offset: o, ..
        } => {
            assert_eq!(p, path, "{what}: path in {e}");
            assert_eq!(*o, offset, "{what}: offset in {e}");
        }
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
}

#[test]
fn every_bit_flip_in_the_data_area_fails_some_read_and_never_lies() {
    let (id, bytes, original) = mem_layer();
    let path: PathBuf = Path::new(MEM_DIR).join(id.as_str());
    let (footer_off, _) = footer_span(&bytes);
    for pos in 32..footer_off {
        for bit in [0, 3, 7] {
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            let what = format!("bit {bit} of data byte {pos} flipped");
            match no_panic(&what, || open_bytes(&id, &b)) {
                Ok(d) => panic!("{what}: undetected; read\n{d}\nexpected\n{original}"),
                Err(e) => match &e {
                    Error::Corrupt {
                        path: p, offset, ..
                    } => {
                        assert_eq!(p, &path, "{what}: {e}");
                        assert!(
                            (32..=pos as u64).contains(offset),
                            "{what}: offset of the damaged block in {e}"
                        );
                        let msg = e.to_string();
                        assert!(msg.contains(&path.display().to_string()), "{msg}");
                        assert!(msg.contains(&format!("offset {offset}")), "{msg}");
                    }
                    other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
                },
            }
        }
    }
}

#[test]
fn local_block_damage_names_the_real_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, _) = build_layer(Arc::new(LocalStorage), tmp.path());
    let path = tmp.path().join(id.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x10;
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let f = ArrayFile::open(
        Arc::new(LocalStorage),
        tmp.path(),
        std::slice::from_ref(&id),
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
    .unwrap();
    let e = dump(&f).unwrap_err();
    assert!(
        matches!(&e, Error::Corrupt { path: p, .. } if *p == path),
        "{e:?}"
    );
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn wrong_magic_and_future_versions_are_rejected() {
    let (id, bytes, original) = mem_layer();
    let len = bytes.len();
    assert_eq!(&bytes[..8], b"ATLAS-AF");
    assert_eq!(&bytes[len - 8..], b"AF-FOOTR");

    let mut b = bytes.clone();
    b[..8].copy_from_slice(b"NOTALAYR");
    assert!(matches!(open_bytes(&id, &b), Err(Error::Corrupt { .. })));
    let mut b = bytes.clone();
    b[len - 8..].copy_from_slice(b"AF-FOOTX");
    assert!(matches!(open_bytes(&id, &b), Err(Error::Corrupt { .. })));
    assert!(matches!(
        open_bytes(&id, b"this is not a layer file at all, just text that is long enough to pass the length check"),
        Err(Error::Corrupt { .. })
    ));

    let patch =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    for version in [0u32, 3, 7, u32::MAX] {
        // Header and trailer both say `version` (a real future file).
        let mut b = bytes.clone();
        patch(&mut b, 8, version);
        patch(&mut b, len - 12, version);
        let e = open_bytes(&id, &b).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { version: v, supported: 2, .. } if v == version),
            "{e:?}"
        );
        assert!(e.is_corruption());
        // Only one of them patched.
        for at in [8, len - 12] {
            let mut b = bytes.clone();
            patch(&mut b, at, version);
            let e = open_bytes(&id, &b).unwrap_err();
            assert!(
                matches!(e, Error::UnsupportedVersion { version: v, .. } if v == version),
                "version {version} at {at}: {e:?}"
            );
        }
    }
    // A format-2 file whose header and trailer claim format 1 is read as
    // format 1, and its footer does not decode as one.
    let mut b = bytes.clone();
    patch(&mut b, 8, 1);
    patch(&mut b, len - 12, 1);
    assert!(matches!(open_bytes(&id, &b), Err(Error::Corrupt { .. })));
    // Header and trailer disagreeing is refused, whichever is older.
    let mut b = bytes.clone();
    patch(&mut b, 8, 1);
    assert!(open_bytes(&id, &b).is_err());
    assert_eq!(open_bytes(&id, &bytes).unwrap(), original);
}

/// Deterministic mutations of `valid`.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = b.len() as u64;
        match rng.below(8) {
            0 | 1 if len > 0 => {
                let i = rng.below(len) as usize;
                b[i] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                let i = rng.below(len) as usize;
                b[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5) as usize];
            }
            3 if len > 8 => {
                // An integer field set to an extreme value.
                let i = rng.below(len - 8) as usize;
                let v: u64 =
                    [0, 1, u64::from(u32::MAX), u64::MAX, 1 << 40, 1 << 31][rng.below(6) as usize];
                let w = [1usize, 2, 4, 8][rng.below(4) as usize];
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            4 => b.truncate(rng.below(len + 1) as usize),
            5 => {
                let i = rng.below(len + 1) as usize;
                let n = 1 + rng.below(16) as usize;
                let extra = rng.bytes(n);
                b.splice(i..i, extra);
            }
            6 if len > 1 => {
                // Duplicate a slice somewhere else.
                let a = rng.below(len) as usize;
                let n = (rng.below(32) as usize).min(b.len() - a);
                let slice = b[a..a + n].to_vec();
                let at = rng.below(b.len() as u64 + 1) as usize;
                b.splice(at..at, slice);
            }
            _ if len > 0 => {
                let i = rng.below(len) as usize;
                b.remove(i);
            }
            _ => b.push(rng.next_u64() as u8),
        }
    }
    b
}

/// Mutations, random bytes and every truncation of a valid footer: `decode`
/// never panics, and no truncation decodes.
fn footer_decoder_never_panics(footer: &[u8], decode: fn(&[u8]) -> bool, seed: u64) {
    assert!(decode(footer), "the valid footer decodes");
    let mut rng = Rng::new(seed);
    for i in 0..fuzz_iters(4000) {
        let input = if i % 4 == 0 {
            let n = rng.below(300) as usize;
            rng.bytes(n)
        } else {
            mutate(&mut rng, footer)
        };
        no_panic(&format!("footer input {i} {input:?}"), || decode(&input));
    }
    for cut in 0..footer.len() {
        assert!(!decode(&footer[..cut]), "footer cut at {cut}");
    }
}

#[test]
fn decode_footer_never_panics() {
    // Format 1: the footer of a golden layer written by the format-1 build.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1");
    let first = std::fs::read_to_string(golden.join("layers.txt")).unwrap();
    let bytes = std::fs::read(golden.join(first.lines().next().unwrap())).unwrap();
    let (off, len) = footer_span(&bytes);
    footer_decoder_never_panics(&bytes[off..off + len], fuzzing::decode_footer, 0xf007);
}

#[test]
fn decode_blocked_footer_never_panics() {
    // Format 2: footer blocks, index, index length (the fuzz target's input).
    let (_, bytes, _) = mem_layer();
    let (off, len) = footer_span(&bytes);
    let mut footer = bytes[data_end(&bytes)..off + len].to_vec();
    footer.extend_from_slice(&(len as u32).to_le_bytes());
    footer_decoder_never_panics(&footer, fuzzing::decode_blocked_footer, 0xb10c);
}

/// Valid stored blocks with how to decode them: (bytes, codec, filter, width, raw length).
fn valid_blocks() -> Vec<(Vec<u8>, u8, u8, usize, usize)> {
    let mut out = Vec::new();
    for &codec in CODECS {
        let id = codec.id();
        for shuffle in [false, true] {
            let storage = Arc::new(MemoryStorage::new());
            let mut f = ArrayFile::create(
                storage.clone(),
                Path::new(MEM_DIR),
                ArrayFileOptions {
                    compression: Compression { codec, shuffle },
                    ..ArrayFileOptions::default()
                },
                Arc::new(DeltaCache::default()),
            )
            .unwrap();
            f.define_array::<f32>("x", dims(1), vec![64], None, None)
                .unwrap();
            let v: Vec<f32> = (0..64).map(|i| (i as f32 * 0.1).sin()).collect();
            f.write_array("x", &[], nd(&[64], v).view()).unwrap();
            let lid = f.flush().unwrap().unwrap();
            let bytes = storage
                .contents(&Path::new(MEM_DIR).join(lid.as_str()))
                .unwrap();
            let end = data_end(&bytes);
            out.push((bytes[32..end].to_vec(), id, u8::from(shuffle), 4, 256));
        }
    }
    out
}

#[test]
fn decode_block_never_panics() {
    let blocks = valid_blocks();
    for (b, codec, filter, width, raw) in &blocks {
        assert!(
            fuzzing::decode_block(b, *codec, *filter, *width, *raw),
            "valid block"
        );
    }
    let mut rng = Rng::new(0xb10c);
    for i in 0..fuzz_iters(4000) {
        let (input, codec, filter, width, raw_len) = if i % 3 == 0 {
            let n = rng.below(200) as usize;
            let raw_len = if rng.below(50) == 0 {
                rng.below(1 << 26) as usize
            } else {
                rng.below(600) as usize
            };
            (
                rng.bytes(n),
                rng.below(6) as u8,
                rng.below(4) as u8,
                [0usize, 1, 2, 3, 4, 8, 16][rng.below(7) as usize],
                raw_len,
            )
        } else {
            let (b, c, f, w, r) = &blocks[rng.below(blocks.len() as u64) as usize];
            let raw_len = match rng.below(4) {
                0 => rng.below(600) as usize,
                _ => *r,
            };
            let (c, f, w) = match rng.below(5) {
                0 => (rng.below(5) as u8, *f, *w),
                1 => (*c, rng.below(3) as u8, *w),
                2 => (*c, *f, [0usize, 1, 3, 8][rng.below(4) as usize]),
                _ => (*c, *f, *w),
            };
            (mutate(&mut rng, b), c, f, w, raw_len)
        };
        no_panic(
            &format!("decode_block input {i}: codec {codec} filter {filter} width {width} raw {raw_len} {input:?}"),
            || fuzzing::decode_block(&input, codec, filter, width, raw_len),
        );
    }
}

#[test]
fn open_layer_bytes_never_panics() {
    let (_, bytes, _) = mem_layer();
    assert!(fuzzing::open_layer_bytes(&bytes), "the valid layer opens");
    let mut rng = Rng::new(0x1a7e);
    for i in 0..fuzz_iters(3000) {
        let input = match i % 5 {
            0 => {
                let n = rng.below(200) as usize;
                let mut b = rng.bytes(n);
                if b.len() >= 64 && rng.below(2) == 0 {
                    let n = b.len();
                    b[..8].copy_from_slice(b"ATLAS-AF");
                    b[8..12].copy_from_slice(&1u32.to_le_bytes());
                    b[n - 8..].copy_from_slice(b"AF-FOOTR");
                    b[n - 12..n - 8].copy_from_slice(&1u32.to_le_bytes());
                }
                b
            }
            _ => mutate(&mut rng, &bytes),
        };
        no_panic(&format!("open_layer_bytes input {i}"), || {
            fuzzing::open_layer_bytes(&input)
        });
    }
}

/// Mutates the footer blocks of a valid layer in place and re-seals them
/// (block CRCs in the index, the index CRC in the trailer), so the mutation
/// reaches the record decoder, the merged index and the readers. Opening and
/// reading everything must not panic, and a file that still opens must either
/// fail reads with a typed error or read consistently.
#[test]
fn resealed_footer_mutations_never_panic() {
    let (id, bytes, _) = mem_layer();
    let (off, _) = footer_span(&bytes);
    let start = data_end(&bytes);
    let blocks = bytes[start..off].to_vec();
    let mut rng = Rng::new(0x5ea1);
    let (mut opened, mut read) = (0, 0);
    for i in 0..fuzz_iters(2500) {
        let mut body = mutate(&mut rng, &blocks);
        // In place: the index keeps every block's offset and length.
        body.resize(blocks.len(), 0);
        let mut file = bytes.clone();
        file[start..off].copy_from_slice(&body);
        reseal(&mut file);
        let what = format!("resealed footer mutation {i}");
        let r = no_panic(&what, || {
            let storage = Arc::new(MemoryStorage::new());
            storage.create_dir_all(Path::new(MEM_DIR)).unwrap();
            storage.overwrite(&Path::new(MEM_DIR).join(id.as_str()), file.clone());
            ArrayFile::open(
                storage,
                Path::new(MEM_DIR),
                std::slice::from_ref(&id),
                ArrayFileOptions::default(),
                Arc::new(DeltaCache::default()),
            )
            .map(|f| {
                let first = dump_bounded(&f, 1 << 16);
                let again = dump_bounded(&f, 1 << 16);
                let _ = f.verify();
                (first, again)
            })
        });
        match r {
            Err(e) => assert!(is_damage_error(&e), "{what}: {e:?}"),
            Ok((first, again)) => {
                opened += 1;
                match (&first, &again) {
                    (Ok(a), Ok(b)) => {
                        read += 1;
                        assert_eq!(a, b, "{what}: reads differ");
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        assert!(is_damage_error(e), "{what}: {e:?}");
                    }
                }
            }
        }
    }
    eprintln!("resealed mutations that opened: {opened}, read: {read}");
    // The CRC fix-up works: the index is intact, so every mutation opens.
    assert_eq!(opened, fuzz_iters(2500));
    // Sanity: re-sealing the unmodified file gives back the same file.
    let mut same = bytes.clone();
    reseal(&mut same);
    assert_eq!(same, bytes);
}

/// A one-array, one-chunk layer ("x", f64, shape [8], no fill) and the offset of
/// its chunk entry's codec byte within the file.
fn single_chunk_layer(codec: Codec) -> (LayerId, Vec<u8>, usize) {
    let storage = Arc::new(MemoryStorage::new());
    let mut f = ArrayFile::create(
        storage.clone(),
        Path::new(MEM_DIR),
        ArrayFileOptions {
            compression: Compression {
                codec,
                shuffle: false,
            },
            ..ArrayFileOptions::default()
        },
        Arc::new(DeltaCache::default()),
    )
    .unwrap();
    f.define_array::<f64>("x", vec!["d0".into()], vec![8], None, None)
        .unwrap();
    let v: Vec<f64> = (0..8).map(f64::from).collect();
    f.write_array("x", &[], nd(&[8], v).view()).unwrap();
    let id = f.flush().unwrap().unwrap();
    let bytes = storage
        .contents(&Path::new(MEM_DIR).join(id.as_str()))
        .unwrap();
    let off = data_end(&bytes);
    // The only footer block: record count 4, record offset 4, then the record:
    // sequence number 4, name 4+1, kind 1, dtype 1, rank 4, dim 4+2, shape 8,
    // chunk shape 8, has_fill 1, n_chunks 8; then idx, offset, stored, raw (4×8).
    let codec_at = off + 4 + 4 + 4 + 5 + 1 + 1 + 4 + 6 + 8 + 8 + 1 + 8 + 32;
    (id, bytes, codec_at)
}

/// Footer fields edited on purpose (footer CRCs re-sealed) give typed errors: an
/// unknown codec id is corruption when the record is decoded, a codec this build lacks is
/// `CodecUnavailable` on read, a mismatched codec is corruption on read.
#[test]
fn tampered_codec_ids_give_typed_errors() {
    let (id, bytes, codec_at) = single_chunk_layer(Codec::Lz4);
    assert_eq!(bytes[codec_at], 1, "the codec byte of an LZ4 block");
    assert!(open_bytes(&id, &bytes).is_ok());

    let mut b = bytes.clone();
    b[codec_at] = 9;
    reseal(&mut b);
    let r = open_bytes(&id, &b);
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");

    #[cfg(not(feature = "blosc2"))]
    {
        let mut b = bytes.clone();
        b[codec_at] = 3;
        reseal(&mut b);
        let r = open_bytes(&id, &b);
        assert!(
            matches!(
                r,
                Err(Error::CodecUnavailable {
                    codec: "blosc2",
                    feature: "blosc2",
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(r.unwrap_err().is_corruption());
    }

    // LZ4 bytes declared as Zstandard or as stored: the decoder rejects them.
    for other in [0u8, 2] {
        let mut b = bytes.clone();
        b[codec_at] = other;
        reseal(&mut b);
        let r = open_bytes(&id, &b);
        assert!(
            matches!(r, Err(Error::Corrupt { .. })),
            "codec {other}: {r:?}"
        );
    }
}

/// Valid raw chunks (the layout after codec and filter) of every dtype:
/// (dtype code, cells, bytes). Every bit pattern is a valid number, so the
/// fixed-width ones are random bytes of the right length.
fn valid_cells() -> Vec<(u8, u64, Vec<u8>)> {
    let mut rng = Rng::new(0xce11);
    let strings = ["", "a", "h\u{e9}llo", "\u{1f600}", ""];
    let mut s: Vec<u8> = strings
        .iter()
        .flat_map(|x| (x.len() as u32).to_le_bytes())
        .collect();
    s.extend(strings.iter().flat_map(|x| x.bytes()));
    let mut out = vec![(1, 4, vec![0, 1, 1, 0]), (12, 5, s)];
    for (code, width) in [
        (2u8, 1usize),
        (3, 2),
        (4, 4),
        (5, 8),
        (6, 1),
        (7, 2),
        (8, 4),
        (9, 8),
        (10, 4),
        (11, 8),
        (13, 8),
    ] {
        out.push((code, 3, rng.bytes(3 * width)));
    }
    out
}

#[test]
fn decode_cells_never_panics() {
    let valid = valid_cells();
    for (code, n, raw) in &valid {
        assert!(fuzzing::decode_cells(raw, *code, *n), "dtype {code}");
        // Stored as is (codec 0, no filter): the block is the raw bytes.
        assert!(
            fuzzing::decode_chunk(raw, 0, 0, *code, *n, raw.len()),
            "dtype {code} as a block"
        );
        assert!(!fuzzing::decode_cells(raw, *code, n + 1), "dtype {code}");
        assert!(!fuzzing::decode_cells(raw, *code, u64::MAX), "dtype {code}");
    }
    assert!(!fuzzing::decode_cells(&[], 0, 0), "an unknown dtype code");
    let mut rng = Rng::new(0xce12);
    for i in 0..fuzz_iters(4000) {
        let (code, n, raw) = &valid[rng.below(valid.len() as u64) as usize];
        let input = mutate(&mut rng, raw);
        let code = if rng.below(8) == 0 {
            rng.below(16) as u8
        } else {
            *code
        };
        let n = match rng.below(6) {
            0 => rng.below(64),
            1 => [u64::MAX, 1 << 62, 1 << 32, u64::from(u32::MAX)][rng.below(4) as usize],
            _ => *n,
        };
        let filter = rng.below(3) as u8;
        no_panic(
            &format!("decode_cells input {i}: dtype {code} cells {n} {input:?}"),
            || {
                fuzzing::decode_cells(&input, code, n);
                fuzzing::decode_chunk(&input, 0, filter, code, n, input.len());
            },
        );
    }
}

/// Set in the child process of
/// [`a_hostile_string_chunk_is_refused_without_a_huge_reservation`].
const HOSTILE_CELLS_CHILD: &str = "AF_HOSTILE_CELLS_CHILD";
/// Cells of the hostile string chunks: 16 Mi, so 64 MiB of lengths, and
/// 384 MiB to hold them as `String`s, more than the child may map.
const HOSTILE_STRINGS: u64 = 16 << 20;

/// The child half (does nothing unless [`HOSTILE_CELLS_CHILD`] is set): runs
/// under `ulimit -v` (address space 256 MiB; the test binary needs under
/// 64 MiB), where reserving the cells of the chunks below aborts the process.
#[test]
fn hostile_string_chunks_in_limited_memory() {
    if std::env::var_os(HOSTILE_CELLS_CHILD).is_none() {
        return;
    }
    let mut raw = vec![0u8; 4 * HOSTILE_STRINGS as usize];
    // The first string claims one byte, or 4 GiB; no string bytes follow.
    raw[0] = 1;
    assert!(!fuzzing::decode_cells(&raw, 12, HOSTILE_STRINGS));
    raw[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(!fuzzing::decode_cells(&raw, 12, HOSTILE_STRINGS));
    // Consistent (32 Mi empty strings), but their cells cannot fit in the
    // address space left: refused, not an abort.
    raw[..4].fill(0);
    assert!(!fuzzing::decode_cells(&raw, 12, HOSTILE_STRINGS));
    // A small chunk still decodes in the same process.
    assert!(fuzzing::decode_cells(&raw[..16], 12, 4));
    println!("hostile cells child: ok");
}

/// A block decoding to 64 MiB of string lengths that do not add up (or to
/// more cells than memory holds) is refused before the cells are reserved:
/// decoding used to reserve 24 bytes per cell (384 MiB here) first. Checked in
/// a child process whose address space is really limited (`ulimit -v`), where
/// such a reservation aborts.
#[test]
fn a_hostile_string_chunk_is_refused_without_a_huge_reservation() {
    if std::env::var_os(HOSTILE_CELLS_CHILD).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "ulimit -v 262144 && exec \"$0\" corruption::hostile_string_chunks_in_limited_memory \
             --exact --nocapture --test-threads=1",
        )
        .arg(&exe)
        .env(HOSTILE_CELLS_CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("hostile cells child: ok"),
        "child under ulimit -v failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// A file in `dir` of one layer holding 3,000 small arrays (so many
/// footer blocks), each `[1, 2]`; the layer and the arrays' names, in
/// order.
fn many_arrays(storage: Arc<dyn Storage>, dir: &Path) -> (array_format::LayerId, Vec<String>) {
    let mut f = ArrayFile::create(
        storage,
        dir,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
    .unwrap();
    let names: Vec<String> = (0..3000).map(|k| format!("array_{k:04}")).collect();
    for n in &names {
        f.define_array::<i32>(n, dims(1), vec![2], None, None)
            .unwrap();
        f.write_array(n, &[], nd(&[2], vec![1, 2]).view()).unwrap();
    }
    (f.flush().unwrap().unwrap(), names)
}

/// A layer of many arrays has many footer blocks; damage to one of them fails
/// exactly the arrays whose records it holds (with the block's path and
/// offset), and whatever needs every array, while the others still read.
#[test]
fn a_damaged_footer_block_fails_only_its_arrays() {
    let storage = Arc::new(MemoryStorage::new());
    let (id, names) = many_arrays(storage.clone(), Path::new(MEM_DIR));
    let path = Path::new(MEM_DIR).join(id.as_str());
    let bytes = storage.contents(&path).unwrap();
    let (_, blocks) = footer_blocks(&bytes);
    assert!(blocks.len() >= 3, "{} footer blocks", blocks.len());
    let damaged = &blocks[1];
    let mut b = bytes.clone();
    b[damaged.offset + damaged.len / 2] ^= 0x10;
    storage.overwrite(&path, b);
    let f = crate::common::mem_open(&storage, std::slice::from_ref(&id))
        .expect("the footer index is intact: the file opens");
    let (mut ok, mut failed) = (0, 0);
    for n in &names {
        match f.read_array::<i32>(n, &[], &[]) {
            Ok(a) => {
                assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
                ok += 1;
            }
            Err(e) => {
                check_block_error(&e, &path, damaged.offset as u64, n);
                assert!(!f.contains(n));
                failed += 1;
            }
        }
    }
    assert!(
        ok > 0 && failed > 0 && failed < names.len() / 2,
        "{ok} read, {failed} failed"
    );
    check_block_error(
        &f.try_list_arrays().unwrap_err(),
        &path,
        damaged.offset as u64,
        "list",
    );
    check_block_error(
        &f.verify().unwrap_err(),
        &path,
        damaged.offset as u64,
        "verify",
    );
}

/// A lookup skips the checksum of a footer block whose very bytes (as the
/// cache shares them) it checked before; bytes read again after the cache
/// evicted them are checked again. Damage made after a first good lookup
/// is found once the block leaves the cache (a memo of "block checked"
/// instead of "these bytes checked" would return the damaged records).
#[test]
fn a_footer_block_read_again_is_checked_again() {
    use std::os::unix::fs::FileExt;

    use array_format::{DeltaCacheConfig, LocalStorage};

    // Local files: damage written to the file is what an open handle reads.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage);
    let (id, names) = many_arrays(Arc::clone(&storage), &dir);
    let path = dir.join(id.as_str());
    let bytes = std::fs::read(&path).unwrap();
    let (_, blocks) = footer_blocks(&bytes);
    assert!(blocks.len() >= 3, "{} footer blocks", blocks.len());
    // A raw cache that holds about one footer block (no decoded level).
    let small = DeltaCacheConfig {
        raw_capacity_bytes: blocks[1].len as u64 + 1024,
        decoded_capacity_bytes: 0,
    };
    let g = ArrayFile::open(
        Arc::clone(&storage),
        &dir,
        std::slice::from_ref(&id),
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::new(small)),
    )
    .unwrap();
    // Names whose records block k holds: blocks are in name order, and each
    // starts with its record count.
    let count = |b: &crate::common::FooterBlock| {
        u32::from_le_bytes(bytes[b.offset..b.offset + 4].try_into().unwrap()) as usize
    };
    let in_block = |k: usize| -> Vec<&String> {
        let before: usize = blocks[..k].iter().map(count).sum();
        names[before..before + count(&blocks[k])].iter().collect()
    };
    let (ours, other) = (in_block(1), in_block(2));
    assert!(ours.len() > 2 && !other.is_empty());
    let read = |n: &str| g.read_array::<i32>(n, &[], &[]);
    // Checked once, then looked up again in the same cached bytes.
    for n in &ours[..2] {
        assert_eq!(read(n).unwrap().iter().copied().collect::<Vec<_>>(), [1, 2]);
    }
    let damaged = &blocks[1];
    let at = damaged.offset + damaged.len / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&[bytes[at] ^ 0x10], at as u64)
        .unwrap();
    // Another block's lookup evicts block 1; reading it again finds the damage.
    read(other[0]).unwrap();
    let e = read(ours[2]).unwrap_err();
    check_block_error(&e, &path, damaged.offset as u64, ours[2]);
}
