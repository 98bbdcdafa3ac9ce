//! Shared helpers: file constructors, a deterministic PRNG, a CRC-32C, row-major
//! region arithmetic, per-type value generators and a whole-file content dump.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use array_format::{
    ArrayElement, ArrayFile, ArrayFileOptions, Codec, Compression, DType, DeltaCache,
    DeltaCacheConfig, Error, LayerId, MemoryStorage, TimestampNs,
};
use ndarray::{ArrayD, IxDyn};
use proptest::test_runner::{Config, RngSeed};

/// The directory used for in-memory array files.
pub const MEM_DIR: &str = "/af";

/// The codecs every round trip covers.
#[cfg(not(feature = "blosc2"))]
pub const CODECS: &[Codec] = &[Codec::None, Codec::Lz4, Codec::Zstd { level: 1 }];
/// The codecs every round trip covers.
#[cfg(feature = "blosc2")]
pub const CODECS: &[Codec] = &[
    Codec::None,
    Codec::Lz4,
    Codec::Zstd { level: 1 },
    Codec::Blosc2 { level: 5 },
];

/// A proptest configuration with `cases` cases (unless `PROPTEST_CASES` is set),
/// no failure persistence, and a fixed seed that is printed so a failure can be
/// replayed with `PROPTEST_RNG_SEED=<seed>`.
pub fn proptest_config(test: &str, cases: u32) -> Config {
    let mut cfg = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        cfg.cases = cases;
    }
    let seed = match cfg.rng_seed {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            (t as u64) ^ ((t >> 64) as u64) ^ u64::from(std::process::id())
        }
    };
    eprintln!("{test}: proptest seed {seed} (replay with PROPTEST_RNG_SEED={seed})");
    cfg.rng_seed = RngSeed::Fixed(seed);
    cfg.failure_persistence = None;
    cfg
}

/// `base` scaled by the `AF_FUZZ_SCALE` environment variable (default 1), for
/// longer fuzz runs by hand.
pub fn fuzz_iters(base: u64) -> u64 {
    let scale = std::env::var("AF_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1);
    base * scale.max(1)
}

/// `SplitMix64`: a tiny deterministic PRNG for data and fuzz inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// CRC-32C (Castagnoli), bitwise; used to re-seal mutated footers.
pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `n` dimension names.
pub fn dims(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("d{i}")).collect()
}

/// Options with the given codec and shuffle flag.
pub fn options(codec: Codec, shuffle: bool) -> ArrayFileOptions {
    ArrayFileOptions {
        compression: Compression { codec, shuffle },
        ..ArrayFileOptions::default()
    }
}

/// A new, empty in-memory array file in [`MEM_DIR`].
pub fn mem_file(opts: ArrayFileOptions) -> (Arc<MemoryStorage>, ArrayFile) {
    let storage = Arc::new(MemoryStorage::new());
    let f = ArrayFile::create(
        storage.clone(),
        Path::new(MEM_DIR),
        opts,
        Arc::new(DeltaCache::default()),
    )
    .expect("create in-memory file");
    (storage, f)
}

/// Opens `layers` of the in-memory file with a fresh cache.
pub fn mem_open(storage: &Arc<MemoryStorage>, layers: &[LayerId]) -> Result<ArrayFile, Error> {
    ArrayFile::open(
        storage.clone(),
        Path::new(MEM_DIR),
        layers,
        ArrayFileOptions::default(),
        Arc::new(DeltaCache::default()),
    )
}

/// Opens `layers` of the in-memory file with a fresh cache of these
/// capacities; the cache too, for its statistics.
pub fn mem_open_cached(
    storage: &Arc<MemoryStorage>,
    layers: &[LayerId],
    raw_capacity_bytes: u64,
    decoded_capacity_bytes: u64,
) -> (Result<ArrayFile, Error>, Arc<DeltaCache>) {
    let cache = Arc::new(DeltaCache::new(DeltaCacheConfig {
        raw_capacity_bytes,
        decoded_capacity_bytes,
    }));
    let f = ArrayFile::open(
        storage.clone(),
        Path::new(MEM_DIR),
        layers,
        ArrayFileOptions::default(),
        cache.clone(),
    );
    (f, cache)
}

/// Path of a layer of the in-memory file.
pub fn mem_layer_path(id: &LayerId) -> PathBuf {
    Path::new(MEM_DIR).join(id.as_str())
}

/// Row-major linear indexes (into an array of `shape`) of the cells of the
/// region `start`/`count`, in the region's own row-major order.
pub fn region_cells(shape: &[u64], start: &[u64], count: &[u64]) -> Vec<usize> {
    if count.contains(&0) {
        return Vec::new();
    }
    let rank = shape.len();
    let mut out = Vec::new();
    let mut idx = vec![0u64; rank];
    loop {
        let lin = (0..rank).fold(0u64, |acc, a| acc * shape[a] + start[a] + idx[a]);
        out.push(lin as usize);
        let mut axis = rank;
        loop {
            if axis == 0 {
                return out;
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < count[axis] {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// Linear index of the chunk holding the cell at linear index `lin`.
pub fn chunk_of(shape: &[u64], chunk: &[u64], lin: usize) -> u64 {
    let mut rem = lin as u64;
    let mut coord = vec![0u64; shape.len()];
    for a in (0..shape.len()).rev() {
        coord[a] = rem % shape[a];
        rem /= shape[a];
    }
    (0..shape.len()).fold(0u64, |acc, a| {
        acc * shape[a].div_ceil(chunk[a]) + coord[a] / chunk[a]
    })
}

/// A `(start, count)` region inside `shape` from random seeds (two per axis).
/// Counts are mostly non-zero.
pub fn region_from(shape: &[u64], seeds: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let mut start = Vec::new();
    let mut count = Vec::new();
    for (a, &ext) in shape.iter().enumerate() {
        let s = seeds[2 * a] % (ext + 1);
        let room = ext - s;
        let c = if room == 0 || seeds[2 * a + 1].is_multiple_of(16) {
            seeds[2 * a + 1] % (room + 1)
        } else {
            1 + (seeds[2 * a + 1] >> 4) % room
        };
        start.push(s);
        count.push(c);
    }
    (start, count)
}

/// An n-d array of `count`'s shape from row-major values.
pub fn nd<T: Clone>(count: &[u64], values: Vec<T>) -> ArrayD<T> {
    let d: Vec<usize> = count.iter().map(|&c| c as usize).collect();
    ArrayD::from_shape_vec(IxDyn(&d), values).expect("value count matches shape")
}

/// Element types the generic tests run over.
pub trait TestElem: ArrayElement {
    /// A value derived from random bits (floats include NaN, ±0, ±inf, subnormals).
    fn gen(x: u64) -> Self;

    /// Exact equality (bitwise for floats, so NaN equals NaN and -0 differs from +0).
    fn same(&self, other: &Self) -> bool;
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl TestElem for $t {
            fn gen(x: u64) -> Self {
                // Mostly small values (so fill collisions happen), sometimes extremes.
                match x % 8 {
                    0 => <$t>::MIN,
                    1 => <$t>::MAX,
                    _ => ((x >> 3) % 7) as $t,
                }
            }
            fn same(&self, other: &Self) -> bool {
                self == other
            }
        }
    )*};
}
int_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! float_elem {
    ($($t:ty),*) => {$(
        impl TestElem for $t {
            fn gen(x: u64) -> Self {
                match x % 16 {
                    0 => <$t>::NAN,
                    1 => -0.0,
                    2 => <$t>::INFINITY,
                    3 => <$t>::NEG_INFINITY,
                    4 => <$t>::MIN_POSITIVE / 4.0,
                    5 => <$t>::MAX,
                    _ => ((x >> 4) % 2001) as $t / 16.0 - 62.5,
                }
            }
            fn same(&self, other: &Self) -> bool {
                self.to_bits() == other.to_bits()
            }
        }
    )*};
}
float_elem!(f32, f64);

impl TestElem for bool {
    fn gen(x: u64) -> Self {
        x & 1 == 1
    }
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl TestElem for TimestampNs {
    fn gen(x: u64) -> Self {
        match x % 8 {
            0 => TimestampNs(i64::MIN),
            1 => TimestampNs(i64::MAX),
            _ => TimestampNs(((x >> 3) % 5) as i64 * 1_000_000_007 - 2_000_000_000),
        }
    }
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl TestElem for String {
    fn gen(x: u64) -> Self {
        const PIECES: [&str; 6] = ["", "a", "é", "日本", "x\u{0}y", "AF-FOOTR"];
        let mut r = Rng::new(x);
        let n = r.below(4);
        (0..n)
            .map(|_| PIECES[r.below(PIECES.len() as u64) as usize])
            .collect()
    }
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

/// Asserts that `got` has shape `count` and holds exactly `want` (row-major).
pub fn assert_cells<T: TestElem>(got: &ArrayD<T>, count: &[u64], want: &[T], ctx: &str) {
    let shape: Vec<u64> = got.shape().iter().map(|&s| s as u64).collect();
    assert_eq!(shape, count, "{ctx}: shape of the read");
    let got: Vec<&T> = got.iter().collect();
    assert_eq!(got.len(), want.len(), "{ctx}: cell count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.same(w), "{ctx}: cell {i}: read {g:?}, expected {w:?}");
    }
}

fn fmt_cells<T: ArrayElement>(a: &ArrayD<T>) -> String {
    format!("{:?} {:?}", a.shape(), a.iter().collect::<Vec<_>>())
}

/// Every array of `f` (sorted by name) with its schema, statistics and cells,
/// as text; arrays with more than `max_cells` cells are listed without cells.
/// Any error reading them is returned.
pub fn dump_bounded(f: &ArrayFile, max_cells: u64) -> Result<String, Error> {
    let mut names = f.try_list_arrays()?;
    names.sort();
    let mut out = String::new();
    for name in names {
        let schema = f
            .schema(&name)
            .expect("listed arrays have a schema")
            .clone();
        let stats = f.array_stats(&name)?;
        let cells = if schema.n_cells() > max_cells {
            "(not read)".to_owned()
        } else {
            let n = name.as_str();
            match schema.dtype {
                DType::Bool => fmt_cells(&f.read_array::<bool>(n, &[], &[])?),
                DType::Int8 => fmt_cells(&f.read_array::<i8>(n, &[], &[])?),
                DType::Int16 => fmt_cells(&f.read_array::<i16>(n, &[], &[])?),
                DType::Int32 => fmt_cells(&f.read_array::<i32>(n, &[], &[])?),
                DType::Int64 => fmt_cells(&f.read_array::<i64>(n, &[], &[])?),
                DType::UInt8 => fmt_cells(&f.read_array::<u8>(n, &[], &[])?),
                DType::UInt16 => fmt_cells(&f.read_array::<u16>(n, &[], &[])?),
                DType::UInt32 => fmt_cells(&f.read_array::<u32>(n, &[], &[])?),
                DType::UInt64 => fmt_cells(&f.read_array::<u64>(n, &[], &[])?),
                DType::Float32 => fmt_cells(&f.read_array::<f32>(n, &[], &[])?),
                DType::Float64 => fmt_cells(&f.read_array::<f64>(n, &[], &[])?),
                DType::String => fmt_cells(&f.read_array::<String>(n, &[], &[])?),
                DType::Timestamp => fmt_cells(&f.read_array::<TimestampNs>(n, &[], &[])?),
                other => panic!("dtype {other} is not covered by the test dump"),
            }
        };
        writeln!(out, "{name:?}: {schema:?} {stats:?} {cells}").expect("write to a String");
    }
    Ok(out)
}

/// [`dump_bounded`] without a size limit.
pub fn dump(f: &ArrayFile) -> Result<String, Error> {
    dump_bounded(f, u64::MAX)
}

/// True for the errors a damaged or unreadable file may produce.
pub fn is_damage_error(e: &Error) -> bool {
    e.is_corruption() || matches!(e, Error::Corrupt { .. } | Error::Io { .. })
}

/// Trailer fields of a layer file: (footer offset, footer length).
pub fn footer_span(bytes: &[u8]) -> (usize, usize) {
    let t = bytes.len() - 32;
    let off = u64::from_le_bytes(bytes[t..t + 8].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(bytes[t + 8..t + 16].try_into().expect("8 bytes"));
    (off as usize, len as usize)
}

/// One footer block of a format-2 layer file: where it is, and where the index
/// keeps its CRC.
pub struct FooterBlock {
    pub offset: usize,
    pub len: usize,
    pub crc_at: usize,
}

/// The end of the data area (where the footer blocks start) and the footer
/// blocks of a format-2 layer file, from its index.
pub fn footer_blocks(bytes: &[u8]) -> (usize, Vec<FooterBlock>) {
    let (off, _) = footer_span(bytes);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let data_end = u64_at(off + 20) as usize;
    let n_blocks = u32_at(off + 28) as usize;
    let mut at = off + 32;
    let mut blocks = Vec::new();
    for _ in 0..n_blocks {
        let b = FooterBlock {
            offset: u64_at(at) as usize,
            len: u32_at(at + 8) as usize,
            crc_at: at + 12,
        };
        at += 20;
        for _ in 0..2 {
            at += 4 + u32_at(at) as usize;
        }
        blocks.push(b);
    }
    (data_end, blocks)
}

/// The end of the data area of a format-2 layer file.
pub fn data_end(bytes: &[u8]) -> usize {
    footer_blocks(bytes).0
}

/// Recomputes every footer block's CRC in the index, then the index's CRC in
/// the trailer, so a deliberate footer edit gets past them.
pub fn reseal(bytes: &mut [u8]) {
    for b in footer_blocks(bytes).1 {
        let crc = crc32c(&bytes[b.offset..b.offset + b.len]);
        bytes[b.crc_at..b.crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let (off, len) = footer_span(bytes);
    let crc = crc32c(&bytes[off..off + len]);
    let at = bytes.len() - 16;
    bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}
