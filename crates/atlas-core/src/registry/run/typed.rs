//! The typed block encodings of catalog columns: statistic blocks (run
//! format 3: layout 1, fixed-width; run format 4: layout 3, packed) and
//! attribute blocks (layout 2). One block holds `n` rows as contiguous
//! little-endian arrays, so a reader decodes it in a few bulk passes, never
//! row by row.
//!
//! ```text
//! layout u8 (= 1) | n u32 | min kind u8 | max kind u8
//! ids    n × u64   (strictly ascending)
//! nulls  n × u64
//! cells  n × u64
//! min    section of its kind
//! max    section of its kind
//! ```
//!
//! Layout 3 (what this build writes) stores `ids`, `nulls` and `cells` as
//! integer sections instead: `mode u8 | base u64`, then by mode `0` every row
//! is `base`, `1` row `i` is `base + i`, `2`–`5` row `i` is `base` plus an
//! unsigned offset of 1, 2, 4 or 8 bytes (`n` offsets follow). A run's ids
//! are usually consecutive and most arrays' null and cell counts repeat, so
//! those three columns, 24 of a row's 40 bytes in layout 1, usually cost
//! nothing; and a side whose every present value is an `f64` that an `f32`
//! holds exactly (statistics of `f32` arrays) is stored as kind `8`: the
//! bitmap then `n` × 4 bytes.
//!
//! A section is, by kind: `0` nothing (every value absent); `1` f64, `2` i64,
//! `3` u64, `4` timestamp (i64 ns): a presence bitmap (`ceil(n / 8)` bytes,
//! bit `i % 8` of byte `i / 8` set when row `i` has the value) then `n` × 8
//! bytes (an absent row's slot is 0); `5` bool: the bitmap then `n` bytes (0 or
//! 1); `6` rows: a `u32` byte length then a `MessagePack` array of `n` values,
//! each nil or a statistic value as in record blocks (strings, or kinds mixed
//! within the block); `8` (layout 3 only) f32-exact floats. The block must
//! end exactly after the max section.
//!
//! **Invariant:** decoding checks every length against the block's bytes
//! before allocating, and a layout-3 block holds at most [`MAX_PACKED_ROWS`]
//! rows (its integer sections can describe rows in no bytes); hostile bytes
//! give an error, never a panic.

use std::collections::HashMap;

use array_format::{StatValue, TimestampNs};

use crate::attr::Attr;

#[cfg(test)]
use super::stat_to_repr;
use super::{stat_from_repr, StatRepr, StatRow};

/// The layout byte of a fixed-width typed statistic block (run format 3).
const LAYOUT_STATS: u8 = 1;
/// The layout byte of a packed typed statistic block (run format 4).
const LAYOUT_STATS_PACKED: u8 = 3;
const HEADER: usize = 1 + 4 + 1 + 1;
/// Most rows a packed statistic block may hold. Writers close blocks at
/// about 128 KiB of estimated rows (about 3,300 rows); the bound keeps a
/// hostile row count from allocating more than a few tens of MiB.
pub(super) const MAX_PACKED_ROWS: usize = 1 << 20;

const KIND_NONE: u8 = 0;
const KIND_F64: u8 = 1;
const KIND_I64: u8 = 2;
const KIND_U64: u8 = 3;
const KIND_TS: u8 = 4;
const KIND_BOOL: u8 = 5;
const KIND_ROWS: u8 = 6;
/// Floats stored as `f32` (packed layout only).
const KIND_F32: u8 = 8;

/// Integer section modes (packed layout).
const INT_CONST: u8 = 0;
const INT_STEP: u8 = 1;
/// Offsets of 1, 2, 4 and 8 bytes: modes 2 to 5.
const INT_OFFSETS: u8 = 2;

/// Minima or maxima of one block, decoded.
#[derive(Debug, PartialEq)]
pub(super) enum Side {
    /// Every value absent.
    None,
    /// Presence bitmap and floats (an absent row holds 0).
    F64(Vec<u8>, Vec<f64>),
    /// The same for floats an `f32` holds exactly (kind 8), kept narrow.
    F32(Vec<u8>, Vec<f32>),
    I64(Vec<u8>, Vec<i64>),
    U64(Vec<u8>, Vec<u64>),
    Ts(Vec<u8>, Vec<i64>),
    Bool(Vec<u8>, Vec<bool>),
    /// Values of any kind.
    Rows(Vec<Option<StatValue>>),
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] & (1 << (i % 8)) != 0
}

impl Side {
    /// Row `i`'s value (`None`: absent).
    pub(super) fn get(&self, i: usize) -> Option<StatValue> {
        match self {
            Side::None => None,
            Side::F64(p, v) => bit(p, i).then(|| StatValue::Float(v[i])),
            Side::F32(p, v) => bit(p, i).then(|| StatValue::Float(f64::from(v[i]))),
            Side::I64(p, v) => bit(p, i).then(|| StatValue::Int(v[i])),
            Side::U64(p, v) => bit(p, i).then(|| StatValue::UInt(v[i])),
            Side::Ts(p, v) => bit(p, i).then(|| StatValue::Timestamp(TimestampNs(v[i]))),
            Side::Bool(p, v) => bit(p, i).then(|| StatValue::Bool(v[i])),
            Side::Rows(v) => v[i].clone(),
        }
    }

    /// Whether both sides are the same floats, bit for bit (a block of
    /// arrays holding one value each: every minimum is its maximum).
    pub(super) fn same_float_bits(&self, other: &Side) -> bool {
        match (self, other) {
            (Side::None, Side::None) => true,
            (Side::F64(p, v), Side::F64(q, w)) => p == q && same_bits(v, w),
            (Side::F32(p, v), Side::F32(q, w)) => p == q && same_bits(v, w),
            _ => false,
        }
    }
}

/// A float statistic in the width it is stored and kept in: `f64`, or `f32`
/// (statistics of `f32` arrays), read as the `f64` it widens to (exactly).
pub(crate) trait Float: Copy {
    /// NaN of this width (an absent value).
    const NAN: Self;
    /// The value as `f64`.
    fn wide(self) -> f64;
    /// The value's bits (for equality that tells NaNs and zeros apart).
    fn bits(self) -> u64;
}

impl Float for f64 {
    const NAN: f64 = f64::NAN;
    #[inline]
    fn wide(self) -> f64 {
        self
    }
    fn bits(self) -> u64 {
        self.to_bits()
    }
}

impl Float for f32 {
    const NAN: f32 = f32::NAN;
    #[inline]
    fn wide(self) -> f64 {
        f64::from(self)
    }
    fn bits(self) -> u64 {
        u64::from(self.to_bits())
    }
}

/// Whether two float slices hold the same values, bit for bit.
fn same_bits<T: Float>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.bits() == y.bits())
}

/// Whether the first `n` bits of a presence bitmap are all set.
fn all_present(p: &[u8], n: usize) -> bool {
    let full = n / 8;
    p[..full].iter().all(|b| *b == 0xff) && (n.is_multiple_of(8) || p[full] == (1u8 << (n % 8)) - 1)
}

/// A float side's values with NaN for an absent one, appended in the
/// narrowest width every value so far fits: `f32` while every block's side
/// was stored as `f32` (statistics of `f32` arrays: half the bytes to
/// decode, keep and test), `f64` from the first block that is not.
#[derive(Debug)]
pub(super) enum Floats {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Floats {
    /// Empty, `f32`, with room for `capacity` rows reserved (not touched).
    pub(super) fn with_capacity(capacity: usize) -> Floats {
        Floats::F32(Vec::with_capacity(capacity))
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Floats::F32(v) => v.len(),
            Floats::F64(v) => v.len(),
        }
    }

    /// Row `i` as `f64` (NaN: absent).
    pub(super) fn get(&self, i: usize) -> f64 {
        match self {
            Floats::F32(v) => f64::from(v[i]),
            Floats::F64(v) => v[i],
        }
    }

    pub(super) fn truncate(&mut self, len: usize) {
        match self {
            Floats::F32(v) => v.truncate(len),
            Floats::F64(v) => v.truncate(len),
        }
    }

    /// The first `len` rows, copied.
    pub(super) fn prefix(&self, len: usize) -> Floats {
        match self {
            Floats::F32(v) => Floats::F32(v[..len].to_vec()),
            Floats::F64(v) => Floats::F64(v[..len].to_vec()),
        }
    }

    /// Whether both hold the same rows, bit for bit (in the same width).
    pub(super) fn same_bits(&self, other: &Floats) -> bool {
        match (self, other) {
            (Floats::F32(a), Floats::F32(b)) => same_bits(a, b),
            (Floats::F64(a), Floats::F64(b)) => same_bits(a, b),
            _ => false,
        }
    }

    /// To `f64` (exact: every `f32` is an `f64`).
    pub(super) fn widen(&mut self) -> &mut Vec<f64> {
        if let Floats::F32(v) = self {
            *self = Floats::F64(v.iter().map(|x| f64::from(*x)).collect());
        }
        match self {
            Floats::F64(v) => v,
            Floats::F32(_) => unreachable!("just widened"),
        }
    }

    /// Appends the `n` values of `side` with NaN for an absent one, when
    /// every present value is a float other than NaN; false (nothing
    /// appended) otherwise.
    pub(super) fn extend(&mut self, side: &Side, n: usize) -> bool {
        match (side, &mut *self) {
            (Side::None, Floats::F32(v)) => v.resize(v.len() + n, f32::NAN),
            (Side::None, Floats::F64(v)) => v.resize(v.len() + n, f64::NAN),
            (Side::F32(p, x), Floats::F32(v)) => return extend_side(p, x, v, |x| x),
            (Side::F32(p, x), Floats::F64(v)) => return extend_side(p, x, v, f64::from),
            (Side::F64(p, x), _) => return extend_side(p, x, self.widen(), |x| x),
            _ => return false,
        }
        true
    }
}

/// Appends a float side's values to `out` through `conv`, NaN for an absent
/// one; false (nothing appended) when a present value is NaN.
fn extend_side<T: Float, U: Float>(
    p: &[u8],
    x: &[T],
    out: &mut Vec<U>,
    conv: impl Fn(T) -> U,
) -> bool {
    let n = x.len();
    if all_present(p, n) {
        // The usual block: a bulk check and a bulk copy.
        if x.iter().any(|v| v.wide().is_nan()) {
            return false;
        }
        out.extend(x.iter().map(|v| conv(*v)));
        return true;
    }
    if x.iter()
        .enumerate()
        .any(|(i, v)| v.wide().is_nan() && bit(p, i))
    {
        return false;
    }
    out.extend(
        x.iter()
            .enumerate()
            .map(|(i, v)| if bit(p, i) { conv(*v) } else { U::NAN }),
    );
    true
}

/// A column of integers as decoded: `Affine` while row `i` is `base + step
/// × i` with a step of 0 or 1 (a run's consecutive ids, a null or cell
/// count every row shares: what packed sections usually hold), a list
/// otherwise. Keeps a million-row column of consecutive ids in three words
/// instead of 8 MB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ints {
    /// Row `i` is `base + step × i`; `step` is 0 or 1.
    Affine { base: u64, step: u64, len: usize },
    /// Any values.
    List(Vec<u64>),
}

impl Default for Ints {
    fn default() -> Ints {
        Ints::List(Vec::new())
    }
}

impl Ints {
    /// Rows.
    pub(crate) fn len(&self) -> usize {
        match self {
            Ints::Affine { len, .. } => *len,
            Ints::List(v) => v.len(),
        }
    }

    /// No rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` (panics past the end, as indexing does).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> u64 {
        match self {
            Ints::Affine { base, step, len } => {
                assert!(i < *len, "row {i} of {len}");
                base + step * i as u64
            }
            Ints::List(v) => v[i],
        }
    }

    /// The first row.
    pub(crate) fn first(&self) -> Option<u64> {
        (!self.is_empty()).then(|| self.get(0))
    }

    /// The last row.
    pub(crate) fn last(&self) -> Option<u64> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// `(first, len)` when the rows are consecutive integers. For strictly
    /// ascending rows (ids, checked when decoded), where the ends say it.
    pub(crate) fn consecutive(&self) -> Option<(u64, usize)> {
        match self {
            Ints::Affine { base, step, len } if *step == 1 || *len <= 1 => Some((*base, *len)),
            Ints::Affine { .. } => None,
            Ints::List(v) => match (v.first(), v.last()) {
                (Some(&a), Some(&b)) if b.checked_sub(a) == Some(v.len() as u64 - 1) => {
                    Some((a, v.len()))
                }
                _ => None,
            },
        }
    }

    /// Whether every row is greater than the one before.
    pub(crate) fn strictly_ascending(&self) -> bool {
        match self {
            Ints::Affine { step, len, .. } => *step == 1 || *len <= 1,
            Ints::List(v) => v.windows(2).all(|w| w[0] < w[1]),
        }
    }

    /// As a list (for rows used one by one).
    pub(crate) fn as_list(&self) -> std::borrow::Cow<'_, [u64]> {
        match self {
            Ints::List(v) => std::borrow::Cow::Borrowed(v),
            Ints::Affine { len, .. } => {
                std::borrow::Cow::Owned((0..*len).map(|i| self.get(i)).collect())
            }
        }
    }

    /// Appends `other`'s rows: still affine when both are and they line up
    /// (a one-row side takes the other's step), a list otherwise.
    pub(crate) fn append(&mut self, other: &Ints) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            *self = other.clone();
            return;
        }
        if let (
            Ints::Affine {
                base: a0,
                step: s0,
                len: n0,
            },
            Ints::Affine {
                base: a1,
                step: s1,
                len: n1,
            },
        ) = (&*self, other)
        {
            let step = if *n0 > 1 {
                Some(*s0)
            } else if *n1 > 1 {
                Some(*s1)
            } else {
                a1.checked_sub(*a0).filter(|d| *d <= 1)
            };
            if let Some(step) = step {
                let fits = (*n0 == 1 || *s0 == step)
                    && (*n1 == 1 || *s1 == step)
                    && (*n0 as u64)
                        .checked_mul(step)
                        .and_then(|d| a0.checked_add(d))
                        == Some(*a1);
                if fits {
                    *self = Ints::Affine {
                        base: *a0,
                        step,
                        len: n0 + n1,
                    };
                    return;
                }
            }
        }
        let mut v = match std::mem::take(self) {
            Ints::List(v) => v,
            affine @ Ints::Affine { .. } => affine.as_list().into_owned(),
        };
        match other {
            Ints::List(o) => v.extend_from_slice(o),
            Ints::Affine { len, .. } => v.extend((0..*len).map(|i| other.get(i))),
        }
        *self = Ints::List(v);
    }
}

/// One decoded typed statistic block.
#[derive(Debug, PartialEq)]
pub(super) struct StatBlock {
    /// Strictly ascending.
    pub ids: Ints,
    pub nulls: Ints,
    pub cells: Ints,
    pub min: Side,
    pub max: Side,
}

impl StatBlock {
    /// Row `i` as stored in record blocks.
    #[cfg(test)]
    pub(super) fn row(&self, i: usize) -> StatRow {
        StatRow(
            self.min.get(i).as_ref().map(stat_to_repr),
            self.max.get(i).as_ref().map(stat_to_repr),
            self.nulls.get(i),
            self.cells.get(i),
        )
    }
}

// ---- encoding ---------------------------------------------------------------

fn kind_of(values: &[Option<&StatRepr>]) -> u8 {
    let mut kind = KIND_NONE;
    for v in values.iter().flatten() {
        let k = match v {
            StatRepr::F(_) => KIND_F64,
            StatRepr::I(_) => KIND_I64,
            StatRepr::U(_) => KIND_U64,
            StatRepr::T(_) => KIND_TS,
            StatRepr::B(_) => KIND_BOOL,
            StatRepr::S(_) => return KIND_ROWS,
        };
        if kind == KIND_NONE {
            kind = k;
        } else if kind != k {
            return KIND_ROWS;
        }
    }
    kind
}

fn put_section(out: &mut Vec<u8>, kind: u8, values: &[Option<&StatRepr>]) {
    let n = values.len();
    if kind == KIND_NONE {
        return;
    }
    if kind == KIND_ROWS {
        // What `rmp_serde::to_vec(values)` writes (an array of optional
        // statistics), without serde's path.
        let mut raw = Vec::with_capacity(5 + 16 * n);
        super::mpk_write::array(
            &mut raw,
            u32::try_from(n).expect("writers close blocks long before 2^32 rows"),
        );
        for v in values {
            super::mpk_write::stat(&mut raw, *v);
        }
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&raw);
        return;
    }
    let mut bits = vec![0u8; n.div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if v.is_some() {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    out.extend_from_slice(&bits);
    for v in values {
        match v {
            None if kind == KIND_BOOL => out.push(0),
            None if kind == KIND_F32 => out.extend_from_slice(&[0; 4]),
            None => out.extend_from_slice(&[0; 8]),
            Some(StatRepr::F(f)) if kind == KIND_F32 => {
                out.extend_from_slice(&(*f as f32).to_le_bytes());
            }
            Some(StatRepr::F(f)) => out.extend_from_slice(&f.to_le_bytes()),
            Some(StatRepr::I(x) | StatRepr::T(x)) => out.extend_from_slice(&x.to_le_bytes()),
            Some(StatRepr::U(x)) => out.extend_from_slice(&x.to_le_bytes()),
            Some(StatRepr::B(b)) => out.push(u8::from(*b)),
            Some(StatRepr::S(_)) => unreachable!("strings are stored as rows"),
        }
    }
}

/// An `f64` side whose every present value an `f32` holds exactly (bit for
/// bit, so NaN payloads and -0.0 survive) is stored as `f32`s.
fn narrow(kind: u8, values: &[Option<&StatRepr>]) -> u8 {
    let exact = |v: Option<&StatRepr>| match v {
        Some(StatRepr::F(f)) => f64::from(*f as f32).to_bits() == f.to_bits(),
        _ => true,
    };
    if kind == KIND_F64 && values.iter().all(|v| exact(*v)) {
        KIND_F32
    } else {
        kind
    }
}

/// An integer column in the narrowest packed form.
fn put_ints(out: &mut Vec<u8>, values: impl Iterator<Item = u64> + Clone) {
    let (mut lo, mut hi, mut n) = (u64::MAX, 0u64, 0u64);
    let mut first = None;
    let mut step = true;
    for (i, v) in values.clone().enumerate() {
        lo = lo.min(v);
        hi = hi.max(v);
        let f = *first.get_or_insert(v);
        step &= f.checked_add(i as u64) == Some(v);
        n += 1;
    }
    if n == 0 || lo == hi {
        out.push(INT_CONST);
        out.extend_from_slice(&(if n == 0 { 0 } else { lo }).to_le_bytes());
        return;
    }
    if step {
        out.push(INT_STEP);
        out.extend_from_slice(&first.expect("n > 0").to_le_bytes());
        return;
    }
    let span = hi - lo;
    let (mode, width) = if u8::try_from(span).is_ok() {
        (INT_OFFSETS, 1)
    } else if u16::try_from(span).is_ok() {
        (INT_OFFSETS + 1, 2)
    } else if u32::try_from(span).is_ok() {
        (INT_OFFSETS + 2, 4)
    } else {
        (INT_OFFSETS + 3, 8)
    };
    out.push(mode);
    out.extend_from_slice(&lo.to_le_bytes());
    for v in values {
        out.extend_from_slice(&(v - lo).to_le_bytes()[..width]);
    }
}

/// Encodes `(id, statistics)` rows, ids strictly ascending, as one packed
/// typed block (before compression).
pub(super) fn encode_stats(rows: &[(u64, StatRow)]) -> Vec<u8> {
    let n = rows.len();
    let mins: Vec<Option<&StatRepr>> = rows.iter().map(|(_, r)| r.0.as_ref()).collect();
    let maxs: Vec<Option<&StatRepr>> = rows.iter().map(|(_, r)| r.1.as_ref()).collect();
    let kmin = narrow(kind_of(&mins), &mins);
    let kmax = narrow(kind_of(&maxs), &maxs);
    let mut out = Vec::with_capacity(HEADER + 3 * 9 + n * 18);
    out.push(LAYOUT_STATS_PACKED);
    out.extend_from_slice(
        &u32::try_from(n)
            .ok()
            .filter(|n| *n as usize <= MAX_PACKED_ROWS)
            .expect("writers close blocks long before MAX_PACKED_ROWS rows")
            .to_le_bytes(),
    );
    out.push(kmin);
    out.push(kmax);
    put_ints(&mut out, rows.iter().map(|(id, _)| *id));
    put_ints(&mut out, rows.iter().map(|(_, r)| r.2));
    put_ints(&mut out, rows.iter().map(|(_, r)| r.3));
    put_section(&mut out, kmin, &mins);
    put_section(&mut out, kmax, &maxs);
    out
}

/// Encodes rows in the fixed-width layout 1 of run format 3 (what the build
/// before packed blocks wrote), for tests of the reader.
#[cfg(test)]
pub(super) fn encode_stats_fixed(rows: &[(u64, StatRow)]) -> Vec<u8> {
    let n = rows.len();
    let mins: Vec<Option<&StatRepr>> = rows.iter().map(|(_, r)| r.0.as_ref()).collect();
    let maxs: Vec<Option<&StatRepr>> = rows.iter().map(|(_, r)| r.1.as_ref()).collect();
    let (kmin, kmax) = (kind_of(&mins), kind_of(&maxs));
    let mut out = Vec::with_capacity(HEADER + n * 42);
    out.push(LAYOUT_STATS);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    out.push(kmin);
    out.push(kmax);
    for (id, _) in rows {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for (_, r) in rows {
        out.extend_from_slice(&r.2.to_le_bytes());
    }
    for (_, r) in rows {
        out.extend_from_slice(&r.3.to_le_bytes());
    }
    put_section(&mut out, kmin, &mins);
    put_section(&mut out, kmax, &maxs);
    out
}

/// Statistics rows as a run writer's scratch file holds them (read back by
/// [`decode_spilled_stats`] in the same process, never kept): per row the
/// id, null and cell counts (`u64` each), then min and max, each a tag byte
/// (0 none, 1 bool, 2 i64, 3 u64, 4 f64, 5 string, 6 timestamp) and its
/// little-endian value (a string: a `u64` length and its bytes).
pub(super) fn encode_spilled_stats(rows: &[(u64, StatRow)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 42);
    for (id, StatRow(min, max, nulls, cells)) in rows {
        for w in [*id, *nulls, *cells] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for v in [min, max] {
            let word = |out: &mut Vec<u8>, tag: u8, w: u64| {
                out.push(tag);
                out.extend_from_slice(&w.to_le_bytes());
            };
            match v {
                None => out.push(0),
                Some(StatRepr::B(b)) => out.extend_from_slice(&[1, u8::from(*b)]),
                Some(StatRepr::I(x)) => word(&mut out, 2, *x as u64),
                Some(StatRepr::U(x)) => word(&mut out, 3, *x),
                Some(StatRepr::F(x)) => word(&mut out, 4, x.to_bits()),
                Some(StatRepr::S(s)) => {
                    word(&mut out, 5, s.len() as u64);
                    out.extend_from_slice(s.as_bytes());
                }
                Some(StatRepr::T(x)) => word(&mut out, 6, *x as u64),
            }
        }
    }
    out
}

/// The rows [`encode_spilled_stats`] wrote, or why not.
pub(super) fn decode_spilled_stats(raw: &[u8]) -> Result<Vec<(u64, StatRow)>, String> {
    fn stat(c: &mut Cursor<'_>) -> Result<Option<StatRepr>, String> {
        Ok(Some(match c.u8("a spilled statistic's tag")? {
            0 => return Ok(None),
            1 => StatRepr::B(c.u8("a spilled bool")? != 0),
            2 => StatRepr::I(c.u64("a spilled i64")? as i64),
            3 => StatRepr::U(c.u64("a spilled u64")?),
            4 => StatRepr::F(f64::from_bits(c.u64("a spilled f64")?)),
            5 => {
                let len = usize::try_from(c.u64("a spilled string's length")?)
                    .map_err(|_| "spilled rows: a string longer than memory".to_owned())?;
                let bytes = c.take(len, "a spilled string")?;
                StatRepr::S(
                    std::str::from_utf8(bytes)
                        .map_err(|e| format!("spilled rows: {e}"))?
                        .to_owned(),
                )
            }
            6 => StatRepr::T(c.u64("a spilled timestamp")? as i64),
            t => return Err(format!("spilled rows: unknown statistic tag {t}")),
        }))
    }
    let mut c = Cursor(raw);
    let mut rows = Vec::new();
    while !c.0.is_empty() {
        let id = c.u64("a spilled id")?;
        let nulls = c.u64("a spilled null count")?;
        let cells = c.u64("a spilled cell count")?;
        let min = stat(&mut c)?;
        let max = stat(&mut c)?;
        rows.push((id, StatRow(min, max, nulls, cells)));
    }
    Ok(rows)
}

// ---- decoding ---------------------------------------------------------------

/// A cursor over a block's bytes; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!(
                "typed block: {what} needs {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    /// `n` little-endian 8-byte words (`n * 8` checked against the bytes left
    /// before anything is allocated).
    fn words<T>(
        &mut self,
        n: usize,
        what: &str,
        f: impl Fn([u8; 8]) -> T,
    ) -> Result<Vec<T>, String> {
        let len = n
            .checked_mul(8)
            .ok_or_else(|| format!("typed block: {what} too long"))?;
        let b = self.take(len, what)?;
        Ok(b.chunks_exact(8)
            .map(|c| f(c.try_into().expect("8 bytes")))
            .collect())
    }
}

impl Cursor<'_> {
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A packed integer section of `n` rows (`n` bounded by the caller).
    fn ints(&mut self, n: usize, what: &str) -> Result<Ints, String> {
        let mode = self.u8(what)?;
        let base = self.u64(what)?;
        match mode {
            INT_CONST => Ok(Ints::Affine {
                base,
                step: 0,
                len: n,
            }),
            INT_STEP => {
                if n > 0 && base.checked_add(n as u64 - 1).is_none() {
                    return Err(format!("typed block: {what} overflow"));
                }
                Ok(Ints::Affine {
                    base,
                    step: 1,
                    len: n,
                })
            }
            m if (INT_OFFSETS..INT_OFFSETS + 4).contains(&m) => {
                let width = 1usize << (m - INT_OFFSETS);
                let len = n
                    .checked_mul(width)
                    .ok_or_else(|| format!("typed block: {what} too long"))?;
                let bytes = self.take(len, what)?;
                let mut out = Vec::with_capacity(n);
                for offset in bytes.chunks_exact(width) {
                    let mut word = [0u8; 8];
                    word[..width].copy_from_slice(offset);
                    let v = base
                        .checked_add(u64::from_le_bytes(word))
                        .ok_or_else(|| format!("typed block: {what} overflow"))?;
                    out.push(v);
                }
                Ok(Ints::List(out))
            }
            m => Err(format!("typed block: unknown {what} mode {m}")),
        }
    }
}

fn section(c: &mut Cursor<'_>, kind: u8, n: usize, what: &str) -> Result<Side, String> {
    let bitmap = |c: &mut Cursor<'_>| -> Result<Vec<u8>, String> {
        let bits = c.take(n.div_ceil(8), what)?;
        if !n.is_multiple_of(8) && bits[n / 8] >> (n % 8) != 0 {
            return Err(format!("typed block: {what} bitmap has bits past the rows"));
        }
        Ok(bits.to_vec())
    };
    Ok(match kind {
        KIND_NONE => Side::None,
        KIND_F64 => {
            let p = bitmap(c)?;
            Side::F64(p, c.words(n, what, f64::from_le_bytes)?)
        }
        KIND_I64 => {
            let p = bitmap(c)?;
            Side::I64(p, c.words(n, what, i64::from_le_bytes)?)
        }
        KIND_U64 => {
            let p = bitmap(c)?;
            Side::U64(p, c.words(n, what, u64::from_le_bytes)?)
        }
        KIND_TS => {
            let p = bitmap(c)?;
            Side::Ts(p, c.words(n, what, i64::from_le_bytes)?)
        }
        KIND_BOOL => {
            let p = bitmap(c)?;
            let b = c.take(n, what)?;
            if b.iter().any(|x| *x > 1) {
                return Err(format!("typed block: {what} has a bool other than 0 or 1"));
            }
            Side::Bool(p, b.iter().map(|x| *x == 1).collect())
        }
        KIND_F32 => {
            let p = bitmap(c)?;
            let len = n
                .checked_mul(4)
                .ok_or_else(|| format!("typed block: {what} too long"))?;
            let floats = c
                .take(len, what)?
                .chunks_exact(4)
                .map(|x| f32::from_le_bytes(x.try_into().expect("4 bytes")))
                .collect();
            Side::F32(p, floats)
        }
        KIND_ROWS => {
            let len = c.u32(what)? as usize;
            let raw = c.take(len, what)?;
            let rows: Vec<Option<StatRepr>> = rmp_serde::from_slice(raw)
                .map_err(|e| format!("typed block: {what} rows: msgpack: {e}"))?;
            if rows.len() != n {
                return Err(format!(
                    "typed block: {what} holds {} rows, not {n}",
                    rows.len()
                ));
            }
            Side::Rows(rows.into_iter().map(|v| v.map(stat_from_repr)).collect())
        }
        k => return Err(format!("typed block: unknown {what} kind {k}")),
    })
}

/// Decodes one typed statistic block (its bytes after decompression), of
/// either layout.
pub(super) fn decode_stats(raw: &[u8]) -> Result<StatBlock, String> {
    let mut c = Cursor(raw);
    let layout = c.u8("layout")?;
    if layout != LAYOUT_STATS && layout != LAYOUT_STATS_PACKED {
        return Err(format!("typed block: unknown layout {layout}"));
    }
    let n = c.u32("row count")? as usize;
    let (kmin, kmax) = (c.u8("min kind")?, c.u8("max kind")?);
    let (ids, nulls, cells) = if layout == LAYOUT_STATS {
        if kmin == KIND_F32 || kmax == KIND_F32 {
            return Err("typed block: f32 sides need the packed layout".into());
        }
        // Three 8-byte words per row at least: checked before any allocation.
        if n.saturating_mul(24) > c.0.len() {
            return Err(format!(
                "typed block: {n} rows do not fit in {} bytes",
                raw.len()
            ));
        }
        (
            Ints::List(c.words(n, "ids", u64::from_le_bytes)?),
            Ints::List(c.words(n, "null counts", u64::from_le_bytes)?),
            Ints::List(c.words(n, "cell counts", u64::from_le_bytes)?),
        )
    } else {
        // Integer sections can describe rows in no bytes: bounded instead.
        if n > MAX_PACKED_ROWS {
            return Err(format!(
                "typed block: {n} rows, more than {MAX_PACKED_ROWS}"
            ));
        }
        (
            c.ints(n, "ids")?,
            c.ints(n, "null counts")?,
            c.ints(n, "cell counts")?,
        )
    };
    if !ids.strictly_ascending() {
        return Err("typed block: ids are not strictly ascending".into());
    }
    let min = section(&mut c, kmin, n, "min")?;
    let max = section(&mut c, kmax, n, "max")?;
    if !c.0.is_empty() {
        return Err(format!("typed block: {} bytes past the end", c.0.len()));
    }
    Ok(StatBlock {
        ids,
        nulls,
        cells,
        min,
        max,
    })
}

// ---- attribute columns ------------------------------------------------------

/// The layout byte of a typed attribute block.
const LAYOUT_ATTRS: u8 = 2;
const ATTR_HEADER: usize = 1 + 4 + 1;
/// Attribute kinds besides the statistic ones: strings, dictionary-encoded.
const KIND_STRINGS: u8 = 7;

fn attr_kind(rows: &[(u64, Attr)]) -> u8 {
    let mut kind = KIND_NONE;
    for (_, v) in rows {
        let k = match v {
            Attr::Float64(_) => KIND_F64,
            Attr::Int64(_) => KIND_I64,
            Attr::UInt64(_) => KIND_U64,
            Attr::Timestamp(_) => KIND_TS,
            Attr::Bool(_) => KIND_BOOL,
            Attr::String(_) => KIND_STRINGS,
            _ => return KIND_ROWS,
        };
        if kind == KIND_NONE {
            kind = k;
        } else if kind != k {
            return KIND_ROWS;
        }
    }
    if kind == KIND_NONE {
        KIND_ROWS
    } else {
        kind
    }
}

/// Encodes `(id, value)` rows, ids strictly ascending, as one typed
/// attribute block (before compression).
pub(super) fn encode_attrs(rows: &[(u64, Attr)]) -> Vec<u8> {
    let n = rows.len();
    let kind = attr_kind(rows);
    let mut out = Vec::with_capacity(ATTR_HEADER + n * 16);
    out.push(LAYOUT_ATTRS);
    out.extend_from_slice(
        &u32::try_from(n)
            .expect("a block holds fewer than 2^32 rows")
            .to_le_bytes(),
    );
    out.push(kind);
    for (id, _) in rows {
        out.extend_from_slice(&id.to_le_bytes());
    }
    match kind {
        KIND_ROWS => {
            let values: Vec<&Attr> = rows.iter().map(|(_, v)| v).collect();
            let raw = rmp_serde::to_vec(&values).expect("attributes serialize");
            out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            out.extend_from_slice(&raw);
        }
        KIND_STRINGS => {
            let mut dict: HashMap<&str, u32> = HashMap::new();
            let mut order: Vec<&str> = Vec::new();
            let codes: Vec<u32> = rows
                .iter()
                .map(|(_, v)| {
                    let Attr::String(s) = v else {
                        unreachable!("a string block holds strings")
                    };
                    *dict.entry(s.as_str()).or_insert_with(|| {
                        order.push(s.as_str());
                        (order.len() - 1) as u32
                    })
                })
                .collect();
            out.extend_from_slice(&(order.len() as u32).to_le_bytes());
            for s in order {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            for c in codes {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        _ => {
            for (_, v) in rows {
                match v {
                    Attr::Float64(f) => out.extend_from_slice(&f.to_le_bytes()),
                    Attr::Int64(x) | Attr::Timestamp(TimestampNs(x)) => {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    Attr::UInt64(x) => out.extend_from_slice(&x.to_le_bytes()),
                    Attr::Bool(b) => out.push(u8::from(*b)),
                    _ => unreachable!("a typed block holds one scalar kind"),
                }
            }
        }
    }
    out
}

/// Decodes one typed attribute block (its bytes after decompression) into
/// its `(id, value)` rows, ids strictly ascending.
pub(super) fn decode_attrs(raw: &[u8]) -> Result<Vec<(u64, Attr)>, String> {
    let mut c = Cursor(raw);
    let layout = c.u8("layout")?;
    if layout != LAYOUT_ATTRS {
        return Err(format!("typed block: unknown layout {layout}"));
    }
    let n = c.u32("row count")? as usize;
    let kind = c.u8("kind")?;
    // One 8-byte id per row at least: checked before any allocation.
    if n.saturating_mul(8) > c.0.len() {
        return Err(format!(
            "typed block: {n} rows do not fit in {} bytes",
            raw.len()
        ));
    }
    let ids = c.words(n, "ids", u64::from_le_bytes)?;
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err("typed block: ids are not strictly ascending".into());
    }
    let values: Vec<Attr> = match kind {
        KIND_F64 => c.words(n, "values", |b| Attr::Float64(f64::from_le_bytes(b)))?,
        KIND_I64 => c.words(n, "values", |b| Attr::Int64(i64::from_le_bytes(b)))?,
        KIND_U64 => c.words(n, "values", |b| Attr::UInt64(u64::from_le_bytes(b)))?,
        KIND_TS => c.words(n, "values", |b| {
            Attr::Timestamp(TimestampNs(i64::from_le_bytes(b)))
        })?,
        KIND_BOOL => {
            let b = c.take(n, "values")?;
            if b.iter().any(|x| *x > 1) {
                return Err("typed block: a bool other than 0 or 1".into());
            }
            b.iter().map(|x| Attr::Bool(*x == 1)).collect()
        }
        KIND_STRINGS => {
            let n_dict = c.u32("dictionary size")? as usize;
            // Four length bytes per entry at least.
            if n_dict.saturating_mul(4) > c.0.len() {
                return Err(format!("typed block: {n_dict} strings do not fit"));
            }
            let mut dict = Vec::with_capacity(n_dict);
            for _ in 0..n_dict {
                let len = c.u32("string length")? as usize;
                let text = std::str::from_utf8(c.take(len, "string")?)
                    .map_err(|e| format!("typed block: string: {e}"))?;
                dict.push(text);
            }
            let codes = c.take(
                n.checked_mul(4).ok_or("typed block: codes too long")?,
                "codes",
            )?;
            let mut out = Vec::with_capacity(n);
            for word in codes.chunks_exact(4) {
                let code = u32::from_le_bytes(word.try_into().expect("4 bytes")) as usize;
                let text = dict
                    .get(code)
                    .ok_or_else(|| format!("typed block: string code {code} of {n_dict}"))?;
                out.push(Attr::String((*text).to_owned()));
            }
            out
        }
        KIND_ROWS => {
            let len = c.u32("rows length")? as usize;
            let raw = c.take(len, "rows")?;
            let rows: Vec<Attr> = rmp_serde::from_slice(raw)
                .map_err(|e| format!("typed block: rows: msgpack: {e}"))?;
            if rows.len() != n {
                return Err(format!("typed block: {} values for {n} rows", rows.len()));
            }
            rows
        }
        k => return Err(format!("typed block: unknown attribute kind {k}")),
    };
    if !c.0.is_empty() {
        return Err(format!("typed block: {} bytes past the end", c.0.len()));
    }
    Ok(ids.into_iter().zip(values).collect())
}

// ---- id blocks (run format 6) -----------------------------------------------

/// The layout byte of a typed id block.
const LAYOUT_NAMES: u8 = 4;

/// Encodes `(id, name)` rows, ids strictly ascending, as one typed id block
/// (before compression):
///
/// ```text
/// layout u8 (= 4) | n u32 | ids integer section | width u32
/// ends   n × u32 (only when width = 0): each name's end in the text
/// text   the names end to end (UTF-8)
/// ```
///
/// `width` is every name's byte length when all have one (generated names
/// such as `argo_0000042`), else 0.
pub(super) fn encode_names(rows: &[(u64, String)]) -> Vec<u8> {
    let n = rows.len();
    let text_len: usize = rows.iter().map(|(_, s)| s.len()).sum();
    let width = rows
        .first()
        .map(|(_, s)| s.len())
        // Width 0 means "see the ends": names of no bytes (never valid)
        // are written with ends like any others.
        .filter(|w| *w > 0 && rows.iter().all(|(_, s)| s.len() == *w));
    let ends_len = if width.is_some() { 0 } else { 4 * n };
    let mut out = Vec::with_capacity(1 + 4 + 9 + 4 + ends_len + text_len);
    out.push(LAYOUT_NAMES);
    let u32_of = |v: usize| {
        u32::try_from(v)
            .expect("writers close id blocks long before 4 GiB")
            .to_le_bytes()
    };
    out.extend_from_slice(&u32_of(n));
    put_ints(&mut out, rows.iter().map(|(id, _)| *id));
    out.extend_from_slice(&u32_of(width.unwrap_or(0)));
    if width.is_none() {
        let mut end = 0;
        for (_, s) in rows {
            end += s.len();
            out.extend_from_slice(&u32_of(end));
        }
    }
    for (_, s) in rows {
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// A decoded typed id block: the ids, and the names end to end in one
/// string (the block's own buffer, its head cut off: no copy per name).
#[derive(Debug)]
pub(super) struct Names {
    /// Strictly ascending, never empty.
    pub ids: Ints,
    /// Every name's length, when all have one.
    pub width: Option<usize>,
    /// Each name's end in `text` (empty when `width` is set).
    pub ends: Vec<u32>,
    pub text: String,
}

/// Decodes one typed id block (its bytes after decompression, taken so the
/// names stay in the same buffer). Checks the ids' order, every length
/// against the block, UTF-8 once for the whole text, and every name against
/// the dataset name rules.
pub(super) fn decode_names(mut raw: Vec<u8>) -> Result<Names, String> {
    let mut c = Cursor(&raw);
    let layout = c.u8("layout")?;
    if layout != LAYOUT_NAMES {
        return Err(format!("typed id block: unknown layout {layout}"));
    }
    let n = c.u32("row count")? as usize;
    if n == 0 || n > MAX_PACKED_ROWS {
        return Err(format!("typed id block: {n} rows"));
    }
    let ids = c.ints(n, "ids")?;
    if !ids.strictly_ascending() {
        return Err("typed id block: ids are not strictly ascending".into());
    }
    let width = c.u32("name width")? as usize;
    let ends: Vec<u32> = if width == 0 {
        let b = c.take(4 * n, "name ends")?;
        b.chunks_exact(4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
            .collect()
    } else {
        Vec::new()
    };
    let text_len = if width == 0 {
        ends[n - 1] as usize
    } else {
        width
            .checked_mul(n)
            .ok_or("typed id block: names too long")?
    };
    if text_len != c.0.len() {
        return Err(format!(
            "typed id block: {} bytes of names, {text_len} expected",
            c.0.len()
        ));
    }
    let head = raw.len() - text_len;
    raw.drain(..head);
    let text = String::from_utf8(raw).map_err(|e| format!("typed id block: names: {e}"))?;
    // Forbidden bytes anywhere in the text are in some name. Branch-free
    // over chunks, so the compiler compares many bytes at a time.
    let forbidden = |bytes: &[u8]| {
        bytes.chunks(4096).any(|c| {
            let hits = c.iter().fold(0u8, |n, b| {
                n | u8::from(*b == 0) | u8::from(*b == b'/') | u8::from(*b == b'\\')
            });
            hits != 0
        })
    };
    let plain = !forbidden(text.as_bytes());
    // Names of one ASCII length of 3 to 255 bytes, none with a forbidden
    // byte: every one is valid, and every cut is a character boundary.
    let all_valid = plain && (3..=crate::name::MAX_NAME_LEN).contains(&width) && text.is_ascii();
    if !all_valid {
        let end_of = |k: usize| {
            if width > 0 {
                (k + 1) * width
            } else {
                ends[k] as usize
            }
        };
        let mut start = 0;
        for k in 0..n {
            let end = end_of(k);
            let name = text.get(start..end).ok_or_else(|| {
                format!(
                    "typed id block: name {k} ({start}..{end}) ends before it starts or inside a character"
                )
            })?;
            if name.is_empty()
                || name.len() > crate::name::MAX_NAME_LEN
                || name == "."
                || name == ".."
                || (!plain && forbidden(name.as_bytes()))
            {
                return Err(match crate::name::validate_dataset_name(name) {
                    Err(e) => format!("typed id block: {e}"),
                    Ok(()) => format!("typed id block: invalid name {name:?}"),
                });
            }
            start = end;
        }
    }
    Ok(Names {
        ids,
        width: (width > 0).then_some(width),
        ends,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<(u64, StatRow)> {
        vec![
            (
                3,
                StatRow(Some(StatRepr::F(-1.5)), Some(StatRepr::F(2.0)), 1, 9),
            ),
            (4, StatRow(None, None, 9, 9)),
            (
                7,
                StatRow(Some(StatRepr::F(f64::NAN)), Some(StatRepr::I(5)), 0, 3),
            ),
            (
                9,
                StatRow(Some(StatRepr::F(0.0)), Some(StatRepr::S("z".into())), 0, 1),
            ),
        ]
    }

    fn same(a: &StatRow, b: &StatRow) -> bool {
        // Bit equality (NaN included), through the msgpack form.
        rmp_serde::to_vec(a).unwrap() == rmp_serde::to_vec(b).unwrap()
    }

    /// Appending keeps affine columns affine exactly when the rows line up,
    /// and the rows are the same as appending lists.
    #[test]
    fn ints_append_as_lists_do() {
        let aff = |base, step, len| Ints::Affine { base, step, len };
        let cases: Vec<Vec<Ints>> = vec![
            vec![aff(5, 1, 3), aff(8, 1, 4)],
            vec![aff(5, 1, 3), aff(9, 1, 4)],
            vec![aff(7, 0, 3), aff(7, 0, 2), aff(7, 0, 1)],
            vec![aff(7, 0, 3), aff(8, 0, 2)],
            vec![aff(1, 0, 1), aff(2, 0, 1), aff(3, 1, 5)],
            vec![aff(1, 0, 1), aff(1, 1, 1), aff(1, 0, 1)],
            vec![aff(4, 1, 2), aff(6, 0, 1), aff(7, 1, 2)],
            vec![aff(4, 1, 2), Ints::List(vec![6, 9]), aff(10, 1, 2)],
            vec![Ints::List(vec![]), aff(u64::MAX - 1, 1, 2)],
            vec![aff(u64::MAX, 0, 1), aff(0, 0, 1)],
        ];
        for parts in cases {
            let mut got = Ints::default();
            let mut want: Vec<u64> = Vec::new();
            for p in &parts {
                got.append(p);
                want.extend(p.as_list().iter());
            }
            assert_eq!(*got.as_list(), want, "{parts:?}");
            assert_eq!(got.len(), want.len());
            let affine = want.windows(2).all(|w| w[1] == w[0])
                || want.windows(2).all(|w| w[0].checked_add(1) == Some(w[1]));
            assert_eq!(matches!(got, Ints::Affine { .. }), affine, "{parts:?}");
            assert_eq!(
                got.strictly_ascending(),
                want.windows(2).all(|w| w[0] < w[1]),
                "{parts:?}"
            );
        }
    }

    #[test]
    fn typed_blocks_round_trip_every_kind() {
        let mut cases = vec![rows()];
        for v in [
            StatRepr::I(-4),
            StatRepr::U(u64::MAX),
            StatRepr::T(i64::MIN),
            StatRepr::B(true),
            StatRepr::F(3.25),
        ] {
            cases.push(
                (0..19u64)
                    .map(|i| {
                        let x = (i % 3 != 1).then(|| v.clone());
                        (i * 2, StatRow(x.clone(), x, i, 20))
                    })
                    .collect(),
            );
        }
        cases.push(Vec::new());
        // Consecutive ids, repeated and scattered counts, f32-exact floats.
        cases.push(
            (0..300u64)
                .map(|i| {
                    let f = Some(StatRepr::F(f64::from(i as f32) * 0.25));
                    (1000 + i, StatRow(f.clone(), f, 0, 50))
                })
                .collect(),
        );
        cases.push(
            (0..300u64)
                .map(|i| {
                    let f = Some(StatRepr::F(0.1 * i as f64));
                    (i * i, StatRow(f.clone(), f, i * 70_000, u64::MAX - i))
                })
                .collect(),
        );
        for rows in cases {
            for (layout, raw) in [
                ("packed", encode_stats(&rows)),
                ("fixed", encode_stats_fixed(&rows)),
            ] {
                let b = decode_stats(&raw).unwrap();
                assert_eq!(
                    *b.ids.as_list(),
                    rows.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                    "{layout}"
                );
                for (i, (_, r)) in rows.iter().enumerate() {
                    assert!(
                        same(&b.row(i), r),
                        "{layout} row {i}: {:?} vs {r:?}",
                        b.row(i)
                    );
                }
            }
        }
        let raw = encode_stats(&rows()[..2]);
        assert_eq!(raw[0], LAYOUT_STATS_PACKED);
        assert_eq!(raw[5], KIND_F32, "f32-exact floats and absences are f32");
        assert_eq!(raw[6], KIND_F32);
        let raw = encode_stats_fixed(&rows()[..2]);
        assert_eq!(raw[5], KIND_F64, "the fixed layout has no f32 kind");
        let raw = encode_stats(&rows());
        assert_eq!(raw[6], KIND_ROWS, "mixed kinds fall back to rows");
        let tenth = [(1, StatRow(Some(StatRepr::F(0.1)), None, 0, 1))];
        assert_eq!(encode_stats(&tenth)[5], KIND_F64, "0.1 is not an f32");
        // Consecutive ids and constant counts take no bytes per row.
        let rows: Vec<(u64, StatRow)> = (0..1000u64)
            .map(|i| (7 + i, StatRow(None, None, 3, 50)))
            .collect();
        assert_eq!(encode_stats(&rows).len(), HEADER + 3 * 9);
    }

    #[test]
    fn float_sides_extend_with_nan_for_absent_narrow_while_they_can_and_refuse_present_nan() {
        // Row 1's minimum is absent, row 0's (-1.5) is an f32: kind 8.
        let b = decode_stats(&encode_stats(&rows()[..2])).unwrap();
        assert!(matches!(b.min, Side::F32(..)));
        let mut out = Floats::F64(vec![7.0]);
        assert!(out.extend(&b.min, 2));
        let Floats::F64(v) = &out else {
            panic!("stays f64")
        };
        assert_eq!(v[..2], [7.0, -1.5]);
        assert!(v[2].is_nan());
        // f32 sides stay f32, through the bulk path (every row present) and
        // the bitmap path, and widen exactly at the first f64 side.
        let all: Vec<(u64, StatRow)> = (0..70u64)
            .map(|i| (i, StatRow(Some(StatRepr::F(i as f64 * 0.5)), None, 0, 1)))
            .collect();
        let b_all = decode_stats(&encode_stats(&all)).unwrap();
        let mut out = Floats::with_capacity(0);
        assert!(out.extend(&b_all.min, 70));
        assert!(out.extend(&b.min, 2));
        let Floats::F32(v) = &out else {
            panic!("f32 sides stay f32")
        };
        assert_eq!(v.len(), 72);
        assert_eq!((v[69], v[70]), (34.5, -1.5));
        assert!(v[71].is_nan());
        assert!(out.extend(&Side::None, 3));
        assert_eq!(out.len(), 75);
        let tenth = decode_stats(&encode_stats(&[(
            1,
            StatRow(Some(StatRepr::F(0.1)), None, 0, 1),
        )]))
        .unwrap();
        assert!(out.extend(&tenth.min, 1));
        let Floats::F64(v) = &out else {
            panic!("an f64 side widens")
        };
        assert_eq!((v[69], v[70], v[75]), (34.5, -1.5, 0.1));
        assert!(v[71].is_nan() && v[74].is_nan());
        // A present NaN (row 2's minimum) is not a float column.
        let b = decode_stats(&encode_stats(&rows()[..3])).unwrap();
        let mut out = Floats::with_capacity(0);
        assert!(!out.extend(&b.min, 3), "a present NaN is not a float");
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn hostile_typed_blocks_are_errors() {
        let scattered: Vec<(u64, StatRow)> = (0..40u64)
            .map(|i| (i * 3, StatRow(None, Some(StatRepr::U(i)), i * 300, 9)))
            .collect();
        for good in [
            encode_stats(&rows()),
            encode_stats_fixed(&rows()),
            encode_stats(&scattered),
        ] {
            assert!(decode_stats(&good).is_ok());
            for cut in 0..good.len() {
                assert!(decode_stats(&good[..cut]).is_err(), "cut at {cut}");
            }
            let mut long = good.clone();
            long.push(0);
            assert!(decode_stats(&long).is_err(), "trailing bytes");
            for at in 0..good.len() {
                for x in [0x01, 0x80, 0xff] {
                    let mut b = good.clone();
                    b[at] ^= x;
                    let _ = decode_stats(&b);
                }
            }
        }
        // A huge row count is refused before allocating, in both layouts.
        let mut b = encode_stats_fixed(&rows());
        b[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_stats(&b).unwrap_err().contains("do not fit"));
        let mut b = encode_stats(&rows());
        b[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_stats(&b).unwrap_err().contains("more than"));
        // Unsorted ids.
        let mut b = encode_stats_fixed(&rows());
        b[HEADER..HEADER + 8].copy_from_slice(&100u64.to_le_bytes());
        assert!(decode_stats(&b).unwrap_err().contains("ascending"));
        let consecutive: Vec<(u64, StatRow)> =
            (0..4u64).map(|i| (i, StatRow(None, None, 0, 1))).collect();
        let mut b = encode_stats(&consecutive);
        assert_eq!(b[HEADER], INT_STEP);
        b[HEADER] = INT_CONST;
        assert!(decode_stats(&b).unwrap_err().contains("ascending"));
        // A step past u64::MAX, an unknown mode, an f32 side in layout 1.
        let mut b = encode_stats(&consecutive);
        b[HEADER + 1..HEADER + 9].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        assert!(decode_stats(&b).unwrap_err().contains("overflow"));
        let mut b = encode_stats(&consecutive);
        b[HEADER] = 9;
        assert!(decode_stats(&b).unwrap_err().contains("mode"));
        let mut b = encode_stats_fixed(&rows()[..2]);
        b[5] = KIND_F32;
        assert!(decode_stats(&b).unwrap_err().contains("packed"));
    }

    fn names_of(b: &Names) -> Vec<(u64, String)> {
        let mut start = 0;
        (0..b.ids.len())
            .map(|k| {
                let end = match b.width {
                    Some(w) => (k + 1) * w,
                    None => b.ends[k] as usize,
                };
                let name = b.text[start..end].to_owned();
                start = end;
                (b.ids.get(k), name)
            })
            .collect()
    }

    #[test]
    fn typed_id_blocks_round_trip_and_refuse_hostile_bytes() {
        let fixed: Vec<(u64, String)> = (7..7 + 300).map(|i| (i, format!("argo_{i:07}"))).collect();
        let varied: Vec<(u64, String)> = vec![
            (3, "a".into()),
            (9, "é_ü".into()),
            (10, "..x".into()),
            (4000, "x".repeat(255)),
            (u64::MAX, "last".into()),
        ];
        let one = vec![(5, "ab".to_owned())];
        for rows in [&fixed, &varied, &one] {
            let raw = encode_names(rows);
            let b = decode_names(raw.clone()).unwrap();
            assert_eq!(&names_of(&b), rows);
            assert_eq!(b.width.is_some(), rows.len() != varied.len());
            // Every cut and every flipped byte is an error or decodes, never a panic.
            for cut in 0..raw.len() {
                assert!(decode_names(raw[..cut].to_vec()).is_err(), "cut at {cut}");
            }
            for i in 0..raw.len().min(200) {
                let mut bad = raw.clone();
                bad[i] ^= 0x5a;
                let _ = decode_names(bad);
            }
            let mut long = raw.clone();
            long.push(b'x');
            assert!(decode_names(long).is_err(), "a byte past the names");
        }
        let refused = |rows: Vec<(u64, &str)>| {
            let rows: Vec<(u64, String)> =
                rows.into_iter().map(|(i, s)| (i, s.to_owned())).collect();
            decode_names(encode_names(&rows)).unwrap_err()
        };
        assert!(refused(vec![(2, "a"), (1, "b")]).contains("ascending"));
        assert!(refused(vec![(1, "a"), (1, "b")]).contains("ascending"));
        // The message is the dataset-name rule the bad name breaks, about
        // that name (not about a valid name before it).
        let about = |e: String, name: &str| {
            assert!(e.contains(&format!("invalid dataset name {name:?}")), "{e}");
        };
        for name in ["", ".", "..", "a/b", "a\\b", "a\0b"] {
            about(refused(vec![(1, "ok_name"), (2, name)]), name);
            about(refused(vec![(1, name)]), name);
            about(refused(vec![(1, "aaa"), (2, name), (3, "bbb")]), name);
        }
        let long = "y".repeat(256);
        about(refused(vec![(1, long.as_str())]), &long);
        about(refused(vec![(1, long.as_str()), (2, "z")]), &long);
        // Not UTF-8, and names cut inside a character.
        let mut raw = encode_names(&[(1, "ab".to_owned())]);
        let at = raw.len() - 1;
        raw[at] = 0xff;
        assert!(decode_names(raw).is_err());
        let mut raw = encode_names(&[(1, "é".to_owned()), (2, "a".to_owned())]);
        // ends [2, 3] → [1, 3]: the first name ends inside `é`.
        let ends = raw.len() - 3 - 8;
        raw[ends] = 1;
        assert!(decode_names(raw)
            .unwrap_err()
            .contains("inside a character"));
        // Names of one width (2) over valid UTF-8 ("aéb") cut inside `é`.
        let mut raw = encode_names(&[(1, "ab".to_owned()), (2, "cd".to_owned())]);
        let at = raw.len() - 4;
        raw[at..].copy_from_slice("aéb".as_bytes());
        assert!(decode_names(raw)
            .unwrap_err()
            .contains("inside a character"));
        // Zero rows, and a row count beyond the bound.
        let mut raw = encode_names(&one);
        raw[1..5].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_names(raw.clone()).is_err());
        raw[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_names(raw).is_err());
    }

    #[test]
    fn typed_attribute_blocks_round_trip_and_refuse_hostile_bytes() {
        let kinds: Vec<Vec<Attr>> = vec![
            vec![
                Attr::Float64(1.5),
                Attr::Float64(f64::NAN),
                Attr::Float64(-0.0),
            ],
            vec![Attr::Int64(-3), Attr::Int64(i64::MAX)],
            vec![Attr::UInt64(u64::MAX), Attr::UInt64(0)],
            vec![
                Attr::Timestamp(TimestampNs(-5)),
                Attr::Timestamp(TimestampNs(9)),
            ],
            vec![Attr::Bool(true), Attr::Bool(false)],
            vec![
                Attr::from("R"),
                Attr::from("D"),
                Attr::from("R"),
                Attr::from(""),
            ],
            vec![
                Attr::from("R"),
                Attr::Int64(1),
                Attr::Float64List(vec![1.0]),
            ],
            vec![],
        ];
        let want = [
            KIND_F64,
            KIND_I64,
            KIND_U64,
            KIND_TS,
            KIND_BOOL,
            KIND_STRINGS,
            KIND_ROWS,
            KIND_ROWS,
        ];
        for (values, kind) in kinds.into_iter().zip(want) {
            let rows: Vec<(u64, Attr)> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i as u64 * 5 + 1, v))
                .collect();
            let raw = encode_attrs(&rows);
            assert_eq!(raw[5], kind, "{rows:?}");
            let back = decode_attrs(&raw).unwrap();
            let enc = |r: &[(u64, Attr)]| rmp_serde::to_vec(r).unwrap();
            assert_eq!(enc(&back), enc(&rows), "bit-exact, NaN included");
            for cut in 0..raw.len() {
                assert!(decode_attrs(&raw[..cut]).is_err(), "cut at {cut}");
            }
            for at in 0..raw.len() {
                let mut b = raw.clone();
                b[at] ^= 0xa5;
                let _ = decode_attrs(&b);
            }
        }
        // A dictionary code past the dictionary.
        let mut raw = encode_attrs(&[(1, Attr::from("a"))]);
        let end = raw.len();
        raw[end - 4..].copy_from_slice(&1u32.to_le_bytes());
        assert!(decode_attrs(&raw).unwrap_err().contains("code 1 of 1"));
    }
}
