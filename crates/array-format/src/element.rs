//! [`ArrayElement`]: the one generic interface over every stored element type.

use crate::dtype::{DType, FillValue, StatValue, TimestampNs};

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that can be stored as the cells of an array.
///
/// Implemented for `bool`, `i8`–`i64`, `u8`–`u64`, `f32`, `f64`, `String` and
/// [`TimestampNs`]; sealed, because the on-disk encoding of each is part of the
/// format.
pub trait ArrayElement:
    Clone + Default + PartialOrd + Send + Sync + std::fmt::Debug + 'static + sealed::Sealed
{
    /// The dtype recorded for arrays of this type.
    const DTYPE: DType;

    /// Appends the little-endian on-disk encoding of fixed-width `values` to `out`.
    /// Strings are encoded by the chunk codec, not here.
    fn encode_fixed(values: &[Self], out: &mut Vec<u8>);

    /// Decodes `n` cells from the on-disk encoding. `bytes` has exactly
    /// `n * width` bytes for fixed-width types. Returns `None` on invalid bytes.
    fn decode_fixed(bytes: &[u8], n: usize) -> Option<Vec<Self>>;

    /// Decodes `n` cells from their byte-shuffled encoding (byte `b` of cell
    /// `i` at `b * n + i`, see the shuffle filter) in one pass, without
    /// unshuffling into a buffer first. `None` for types the filter does not
    /// apply to (one byte or variable width), and for bytes that do not hold
    /// exactly `n` cells ([`ArrayElement::extend_shuffled`] into a new
    /// vector).
    fn decode_shuffled(planes: &[u8], n: usize) -> Option<Vec<Self>> {
        let mut out = Vec::new();
        Self::extend_shuffled(planes, n, &mut out).then_some(out)
    }

    /// [`ArrayElement::decode_shuffled`] into `dst`, which has room for
    /// exactly the cells (a scan fills a copy of an array of the right
    /// shape). False, with `dst` unchanged, where `decode_shuffled` gives
    /// `None` for `dst.len()` cells.
    fn fill_shuffled(_planes: &[u8], _dst: &mut [Self]) -> bool {
        false
    }

    /// Decodes `n` byte-shuffled cells (see [`ArrayElement::decode_shuffled`])
    /// appending them to `out` (a stacked read decodes every array into one
    /// buffer). False, with `out` unchanged, for types the filter does not
    /// apply to, bytes that do not hold exactly `n` cells, or when `out`
    /// cannot grow by `n` (checked in that order: nothing is reserved for
    /// bytes of the wrong length).
    fn extend_shuffled(_planes: &[u8], _n: usize, _out: &mut Vec<Self>) -> bool {
        false
    }

    /// Decodes `dst.len()` cells from their unshuffled on-disk encoding
    /// (exactly `dst.len()` times the width in `bytes`) into `dst`: a read
    /// copies each row of a cached chunk straight into its result. False,
    /// with `dst` unchanged, for types with byte patterns that are not
    /// cells (`bool`) or of variable width, and for bytes of another length.
    fn copy_le(_bytes: &[u8], _dst: &mut [Self]) -> bool {
        false
    }

    /// This value as a [`FillValue`].
    fn to_fill(&self) -> FillValue;

    /// The value of a [`FillValue`] of this type, `None` if it is another type.
    fn from_fill(fill: &FillValue) -> Option<Self>;

    /// This value as a [`StatValue`].
    fn to_stat(&self) -> StatValue;

    /// The statistics a stored chunk records of `values`: how many are
    /// null (NaN, or equal to `fill`), and the smallest and largest of the
    /// others, the first in order where several compare equal (`-0.0` and
    /// `0.0`). Numeric types scan in lanes the compiler vectorizes; the
    /// result is that of a scan in order.
    fn null_min_max(
        values: &[Self],
        fill: Option<&Self>,
    ) -> (u64, Option<StatValue>, Option<StatValue>) {
        crate::stats::scan_in_order(values, fill)
    }

    /// True for NaN floats (counted as nulls and skipped by min/max).
    fn is_nan(&self) -> bool {
        false
    }

    /// Borrows a string cell (only `String` returns `Some`).
    fn as_str(&self) -> Option<&str> {
        None
    }

    /// Builds a string cell (only `String` returns `Some`).
    fn from_string(_s: String) -> Option<Self> {
        None
    }
}

macro_rules! fixed_element {
    ($t:ty, $dtype:ident, $stat:ident, $to_stat:expr $(, $planes:ident)?) => {
        impl sealed::Sealed for $t {}
        impl ArrayElement for $t {
            const DTYPE: DType = DType::$dtype;

            fn encode_fixed(values: &[Self], out: &mut Vec<u8>) {
                const W: usize = size_of::<$t>();
                // Sized first, then filled in place: a loop the compiler
                // turns into a copy (pushing cell by cell checked the
                // capacity on every cell).
                let start = out.len();
                out.resize(start + values.len() * W, 0);
                for (d, v) in out[start..].chunks_exact_mut(W).zip(values) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }

            fn decode_fixed(bytes: &[u8], n: usize) -> Option<Vec<Self>> {
                const W: usize = size_of::<$t>();
                // The size check comes first: `n` cells are reserved only
                // once the bytes are known to hold exactly that many.
                if bytes.len() != n.checked_mul(W)? {
                    return None;
                }
                let mut out = reserve_cells(n)?;
                out.extend(
                    bytes
                        .chunks_exact(W)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk"))),
                );
                Some(out)
            }

            fn copy_le(bytes: &[u8], dst: &mut [Self]) -> bool {
                const W: usize = size_of::<$t>();
                if Some(bytes.len()) != dst.len().checked_mul(W) {
                    return false;
                }
                for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(W)) {
                    *d = <$t>::from_le_bytes(c.try_into().expect("exact chunk"));
                }
                true
            }

            $(
            fn fill_shuffled(planes: &[u8], dst: &mut [Self]) -> bool {
                let n = dst.len();
                if Some(planes.len()) != n.checked_mul(size_of::<$t>()) {
                    return false;
                }
                for (d, c) in dst.iter_mut().zip($planes(planes, n)) {
                    *d = <$t>::from_le_bytes(c);
                }
                true
            }

            fn extend_shuffled(planes: &[u8], n: usize, out: &mut Vec<Self>) -> bool {
                if Some(planes.len()) != n.checked_mul(size_of::<$t>())
                    || out.try_reserve(n).is_err()
                {
                    return false;
                }
                out.extend($planes(planes, n).map(<$t>::from_le_bytes));
                true
            }
            )?

            fn to_fill(&self) -> FillValue {
                FillValue::$dtype(*self)
            }

            fn from_fill(fill: &FillValue) -> Option<Self> {
                match fill {
                    FillValue::$dtype(v) => Some(*v),
                    _ => None,
                }
            }

            fn to_stat(&self) -> StatValue {
                #[allow(clippy::redundant_closure_call)]
                StatValue::$stat(($to_stat)(*self))
            }

            fn null_min_max(
                values: &[Self],
                fill: Option<&Self>,
            ) -> (u64, Option<StatValue>, Option<StatValue>) {
                let (nulls, lo, hi) = crate::stats::scan_lanes(values, fill.copied());
                (nulls, lo.map(|v| v.to_stat()), hi.map(|v| v.to_stat()))
            }

            fn is_nan(&self) -> bool {
                #[allow(clippy::float_cmp, clippy::eq_op)]
                {
                    *self != *self
                }
            }
        }
    };
}

/// Cell `i` of `n` two-byte cells from their two byte planes (the shuffle
/// filter's layout). Zipped slices, so the loop has no bounds checks.
pub(crate) fn planes2(p: &[u8], n: usize) -> impl Iterator<Item = [u8; 2]> + '_ {
    let (a, b) = p.split_at(n);
    a.iter().zip(&b[..n]).map(|(&a, &b)| [a, b])
}

/// As [`planes2`], for four-byte cells.
pub(crate) fn planes4(planes: &[u8], n: usize) -> impl Iterator<Item = [u8; 4]> + '_ {
    let (b0, rest) = planes.split_at(n);
    let (b1, rest) = rest.split_at(n);
    let (b2, b3) = rest.split_at(n);
    b0.iter()
        .zip(b1)
        .zip(b2)
        .zip(&b3[..n])
        .map(|(((&x0, &x1), &x2), &x3)| [x0, x1, x2, x3])
}

/// As [`planes2`], for eight-byte cells.
pub(crate) fn planes8(p: &[u8], n: usize) -> impl Iterator<Item = [u8; 8]> + '_ {
    let (lo, hi) = p.split_at(4 * n);
    planes4(lo, n)
        .zip(planes4(hi, n))
        .map(|(l, h)| [l[0], l[1], l[2], l[3], h[0], h[1], h[2], h[3]])
}

// One-byte cells are never shuffled: no `decode_shuffled` for them.
fixed_element!(i8, Int8, Int, i64::from);
fixed_element!(i16, Int16, Int, i64::from, planes2);
fixed_element!(i32, Int32, Int, i64::from, planes4);
fixed_element!(i64, Int64, Int, |v| v, planes8);
fixed_element!(u8, UInt8, UInt, u64::from);
fixed_element!(u16, UInt16, UInt, u64::from, planes2);
fixed_element!(u32, UInt32, UInt, u64::from, planes4);
fixed_element!(u64, UInt64, UInt, |v| v, planes8);
fixed_element!(f32, Float32, Float, f64::from, planes4);
fixed_element!(f64, Float64, Float, |v| v, planes8);

impl sealed::Sealed for bool {}
impl ArrayElement for bool {
    const DTYPE: DType = DType::Bool;

    fn encode_fixed(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().map(|&b| u8::from(b)));
    }

    fn decode_fixed(bytes: &[u8], n: usize) -> Option<Vec<Self>> {
        // Validate every byte before reserving the cells.
        if bytes.len() != n || bytes.iter().any(|&b| b > 1) {
            return None;
        }
        let mut out = reserve_cells(n)?;
        out.extend(bytes.iter().map(|&b| b == 1));
        Some(out)
    }

    fn to_fill(&self) -> FillValue {
        FillValue::Bool(*self)
    }

    fn from_fill(fill: &FillValue) -> Option<Self> {
        match fill {
            FillValue::Bool(v) => Some(*v),
            _ => None,
        }
    }

    fn to_stat(&self) -> StatValue {
        StatValue::Bool(*self)
    }
}

impl sealed::Sealed for TimestampNs {}
impl ArrayElement for TimestampNs {
    const DTYPE: DType = DType::Timestamp;

    fn encode_fixed(values: &[Self], out: &mut Vec<u8>) {
        out.reserve(values.len() * 8);
        for v in values {
            out.extend_from_slice(&v.0.to_le_bytes());
        }
    }

    fn decode_fixed(bytes: &[u8], n: usize) -> Option<Vec<Self>> {
        i64::decode_fixed(bytes, n).map(|v| v.into_iter().map(TimestampNs).collect())
    }

    fn copy_le(bytes: &[u8], dst: &mut [Self]) -> bool {
        if Some(bytes.len()) != dst.len().checked_mul(8) {
            return false;
        }
        for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(8)) {
            *d = TimestampNs(i64::from_le_bytes(c.try_into().expect("exact chunk")));
        }
        true
    }

    fn fill_shuffled(planes: &[u8], dst: &mut [Self]) -> bool {
        let Some(v) = i64::decode_shuffled(planes, dst.len()) else {
            return false;
        };
        for (d, c) in dst.iter_mut().zip(v) {
            *d = TimestampNs(c);
        }
        true
    }

    fn extend_shuffled(planes: &[u8], n: usize, out: &mut Vec<Self>) -> bool {
        let Some(v) = i64::decode_shuffled(planes, n) else {
            return false;
        };
        out.extend(v.into_iter().map(TimestampNs));
        true
    }

    fn to_fill(&self) -> FillValue {
        FillValue::Timestamp(*self)
    }

    fn from_fill(fill: &FillValue) -> Option<Self> {
        match fill {
            FillValue::Timestamp(v) => Some(*v),
            _ => None,
        }
    }

    fn to_stat(&self) -> StatValue {
        StatValue::Timestamp(*self)
    }
}

impl sealed::Sealed for String {}
impl ArrayElement for String {
    const DTYPE: DType = DType::String;

    fn encode_fixed(_values: &[Self], _out: &mut Vec<u8>) {
        unreachable!("strings are variable-width; the chunk codec encodes them")
    }

    fn decode_fixed(_bytes: &[u8], _n: usize) -> Option<Vec<Self>> {
        None
    }

    fn to_fill(&self) -> FillValue {
        FillValue::String(self.clone())
    }

    fn from_fill(fill: &FillValue) -> Option<Self> {
        match fill {
            FillValue::String(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn to_stat(&self) -> StatValue {
        StatValue::Str(self.clone())
    }

    fn as_str(&self) -> Option<&str> {
        Some(self)
    }

    fn from_string(s: String) -> Option<Self> {
        Some(s)
    }
}

/// Encodes cells to the raw (uncompressed) chunk layout: fixed-width little-endian
/// cells, or for strings `n` u32 byte lengths followed by the concatenated UTF-8.
/// Returns `None` when a string is longer than `u32::MAX` bytes.
pub(crate) fn encode_cells<T: ArrayElement>(values: &[T]) -> Option<Vec<u8>> {
    if T::DTYPE == DType::String {
        let total: usize = values.iter().map(|v| v.as_str().map_or(0, str::len)).sum();
        let mut out = Vec::with_capacity(values.len() * 4 + total);
        for v in values {
            let len = u32::try_from(v.as_str().map_or(0, str::len)).ok()?;
            out.extend_from_slice(&len.to_le_bytes());
        }
        for v in values {
            out.extend_from_slice(v.as_str().unwrap_or_default().as_bytes());
        }
        Some(out)
    } else {
        let mut out = Vec::new();
        T::encode_fixed(values, &mut out);
        Some(out)
    }
}

/// Decodes `n` cells from the raw chunk layout; `None` on any inconsistency.
///
/// `n` is the chunk's cell count from its schema (which the registry agreed
/// to); `bytes` are the decoded block. Nothing is allocated until the bytes are
/// known to hold exactly `n` cells: `n × width` bytes for fixed-width cells; for
/// strings `4n` bytes of lengths that add up to exactly the bytes after them.
/// So the cells are bounded by the schema and by the bytes at once (at most
/// `bytes.len() / 4` strings whose contents total at most `bytes.len()`), and
/// hostile lengths are `None` before any reservation. The reservation itself
/// is fallible: cells that cannot fit in memory are `None`, never an abort.
pub(crate) fn decode_cells<T: ArrayElement>(bytes: &[u8], n: usize) -> Option<Vec<T>> {
    if T::DTYPE != DType::String {
        return T::decode_fixed(bytes, n);
    }
    let (lens, mut data) = string_layout(bytes, n)?;
    let mut out = reserve_cells(n)?;
    for l in lens.chunks_exact(4) {
        let len = u32::from_le_bytes(l.try_into().expect("exact chunk")) as usize;
        // In range: `string_layout` checked that the lengths add up to `data`.
        let (s, rest) = (data.get(..len)?, data.get(len..)?);
        let s = std::str::from_utf8(s).ok()?;
        let mut owned = String::new();
        owned.try_reserve_exact(s.len()).ok()?;
        owned.push_str(s);
        out.push(T::from_string(owned)?);
        data = rest;
    }
    Some(out)
}

/// Splits the raw layout of `n` strings into its `4n` bytes of `u32` lengths
/// and the string bytes, if the bytes hold the lengths and the lengths add up
/// to exactly the bytes that follow them. Allocates nothing.
fn string_layout(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    let lens_end = n.checked_mul(4)?;
    if lens_end > bytes.len() {
        return None;
    }
    let (lens, data) = bytes.split_at(lens_end);
    let available = data.len() as u64;
    // Stops at the first length that reaches past the end.
    let total = lens.chunks_exact(4).try_fold(0u64, |sum, l| {
        let len = u32::from_le_bytes(l.try_into().expect("exact chunk"));
        Some(sum + u64::from(len)).filter(|&s| s <= available)
    })?;
    (total == available).then_some((lens, data))
}

/// An empty vector with room for `n` cells, or `None` if they cannot fit in
/// memory (a fallible reservation: never an abort).
pub(crate) fn reserve_cells<T>(n: usize) -> Option<Vec<T>> {
    let mut out = Vec::new();
    out.try_reserve_exact(n).ok()?;
    Some(out)
}

/// Size in bytes of the raw encoding of `n` fixed-width cells, `None` for strings.
pub(crate) fn fixed_raw_len(dtype: DType, n: u64) -> Option<u64> {
    dtype.size_bytes().and_then(|w| n.checked_mul(w as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_reject_damage() {
        let v = vec![String::new(), "héllo".to_owned(), "x".repeat(300)];
        let raw = encode_cells(&v).unwrap();
        assert_eq!(decode_cells::<String>(&raw, 3).unwrap(), v);
        assert!(decode_cells::<String>(&raw, 4).is_none());
        assert!(decode_cells::<String>(&raw[..raw.len() - 1], 3).is_none());
        let mut bad = raw.clone();
        bad[4] = 0xff; // length of the second string now points past the end
        assert!(decode_cells::<String>(&bad, 3).is_none());
    }

    #[test]
    fn string_lengths_must_add_up_to_exactly_the_bytes_that_follow() {
        let raw = encode_cells(&["ab".to_owned(), "é".to_owned()]).unwrap();
        assert_eq!(
            decode_cells::<String>(&raw, 2).unwrap(),
            ["ab".to_owned(), "é".to_owned()]
        );
        // One byte more than the lengths account for.
        assert!(decode_cells::<String>(&[&raw[..], b"x"].concat(), 2).is_none());
        // Lengths 3 and 1: the same total, but "é" is cut in the middle.
        let mut cut = raw.clone();
        cut[..8].copy_from_slice(&[3, 0, 0, 0, 1, 0, 0, 0]);
        assert!(decode_cells::<String>(&cut, 2).is_none());
        // Four lengths claiming 16 GiB in all, and no string bytes.
        let huge: Vec<u8> = std::iter::repeat_n(u32::MAX.to_le_bytes(), 4)
            .flatten()
            .collect();
        assert!(decode_cells::<String>(&huge, 4).is_none());
        // More cells than the bytes hold lengths for, and a count that
        // overflows `n × 4`.
        assert!(decode_cells::<String>(&raw, 3).is_none());
        assert!(decode_cells::<String>(&raw, usize::MAX / 2).is_none());
        assert_eq!(decode_cells::<String>(&[], 0), Some(vec![]));
    }

    #[test]
    fn fixed_cells_need_exactly_n_times_width_bytes() {
        assert_eq!(decode_cells::<u16>(&[1, 0, 2, 0], 2), Some(vec![1, 2]));
        assert!(decode_cells::<u16>(&[1, 0, 2], 2).is_none());
        assert!(decode_cells::<u16>(&[1, 0, 2, 0], 1).is_none());
        assert!(decode_cells::<f64>(&[0; 8], usize::MAX).is_none());
        assert_eq!(
            decode_cells::<TimestampNs>(&(-5i64).to_le_bytes(), 1),
            Some(vec![TimestampNs(-5)])
        );
    }

    /// Decoding shuffled planes directly equals unshuffling, then decoding,
    /// for every fixed-width type; wrong lengths are refused.
    #[test]
    fn shuffled_cells_decode_as_unshuffled_ones() {
        fn check<T: ArrayElement + PartialEq + std::fmt::Debug>(values: &[T]) {
            let raw = encode_cells(values).unwrap();
            let width = T::DTYPE.size_bytes().unwrap();
            let planes = crate::codec::shuffle(&raw, width);
            let n = values.len();
            assert_eq!(
                T::decode_shuffled(&planes, n).as_deref(),
                Some(values),
                "{}",
                T::DTYPE
            );
            assert!(T::decode_shuffled(&planes, n + 1).is_none());
            if n > 0 {
                assert!(T::decode_shuffled(&planes[1..], n).is_none());
            }
            // Into a slice of the cells' length; a refusal leaves it alone.
            let mut dst = vec![T::default(); n];
            assert!(T::fill_shuffled(&planes, &mut dst), "{}", T::DTYPE);
            assert_eq!(dst, values);
            if n > 0 {
                let mut short = vec![T::default(); n - 1];
                assert!(!T::fill_shuffled(&planes, &mut short));
                assert!(short.iter().all(|c| *c == T::default()));
            }
            // Appending: after what `out` held, which a refusal leaves alone.
            let mut out = values.to_vec();
            assert!(T::extend_shuffled(&planes, n, &mut out), "{}", T::DTYPE);
            assert_eq!(out, [values, values].concat());
            assert!(!T::extend_shuffled(&planes, n + 1, &mut out));
            if n > 0 {
                assert!(!T::extend_shuffled(&planes[1..], n, &mut out));
            }
            assert_eq!(out.len(), 2 * n);
        }
        for n in [0usize, 1, 3, 50, 1025] {
            let k = |i: usize| (i * 2_654_435_761) as u64;
            check(&(0..n).map(|i| k(i) as i16).collect::<Vec<_>>());
            check(&(0..n).map(|i| k(i) as u16).collect::<Vec<_>>());
            check(&(0..n).map(|i| k(i) as i32).collect::<Vec<_>>());
            check(&(0..n).map(|i| k(i) as u32).collect::<Vec<_>>());
            check(&(0..n).map(|i| k(i) as i64 - (1 << 40)).collect::<Vec<_>>());
            check(&(0..n).map(k).collect::<Vec<_>>());
            check(&(0..n).map(|i| k(i) as f32 * -0.37).collect::<Vec<_>>());
            check(&(0..n).map(|i| k(i) as f64 * 1e-3).collect::<Vec<_>>());
            check(&(0..n).map(|i| TimestampNs(k(i) as i64)).collect::<Vec<_>>());
        }
        // One-byte and variable-width types have no shuffled form.
        assert!(u8::decode_shuffled(&[1, 2], 2).is_none());
        assert!(!u8::extend_shuffled(&[1, 2], 2, &mut Vec::new()));
        assert!(bool::decode_shuffled(&[1, 0], 2).is_none());
        assert!(String::decode_shuffled(&[0; 8], 2).is_none());
    }

    #[test]
    fn bools_reject_values_other_than_0_and_1() {
        assert_eq!(decode_cells::<bool>(&[0, 1], 2), Some(vec![false, true]));
        assert!(decode_cells::<bool>(&[0, 2], 2).is_none());
    }

    #[test]
    fn floats_detect_nan() {
        assert!(f32::NAN.is_nan());
        assert!(!ArrayElement::is_nan(&1.0f64));
        assert!(!ArrayElement::is_nan(&3i32));
    }
}
