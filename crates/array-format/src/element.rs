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

    /// This value as a [`FillValue`].
    fn to_fill(&self) -> FillValue;

    /// The value of a [`FillValue`] of this type, `None` if it is another type.
    fn from_fill(fill: &FillValue) -> Option<Self>;

    /// This value as a [`StatValue`].
    fn to_stat(&self) -> StatValue;

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
    ($t:ty, $dtype:ident, $stat:ident, $to_stat:expr) => {
        impl sealed::Sealed for $t {}
        impl ArrayElement for $t {
            const DTYPE: DType = DType::$dtype;

            fn encode_fixed(values: &[Self], out: &mut Vec<u8>) {
                out.reserve(values.len() * size_of::<$t>());
                for v in values {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }

            fn decode_fixed(bytes: &[u8], n: usize) -> Option<Vec<Self>> {
                const W: usize = size_of::<$t>();
                if bytes.len() != n.checked_mul(W)? {
                    return None;
                }
                Some(
                    bytes
                        .chunks_exact(W)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk")))
                        .collect(),
                )
            }

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

            fn is_nan(&self) -> bool {
                #[allow(clippy::float_cmp, clippy::eq_op)]
                {
                    *self != *self
                }
            }
        }
    };
}

fixed_element!(i8, Int8, Int, i64::from);
fixed_element!(i16, Int16, Int, i64::from);
fixed_element!(i32, Int32, Int, i64::from);
fixed_element!(i64, Int64, Int, |v| v);
fixed_element!(u8, UInt8, UInt, u64::from);
fixed_element!(u16, UInt16, UInt, u64::from);
fixed_element!(u32, UInt32, UInt, u64::from);
fixed_element!(u64, UInt64, UInt, |v| v);
fixed_element!(f32, Float32, Float, f64::from);
fixed_element!(f64, Float64, Float, |v| v);

impl sealed::Sealed for bool {}
impl ArrayElement for bool {
    const DTYPE: DType = DType::Bool;

    fn encode_fixed(values: &[Self], out: &mut Vec<u8>) {
        out.extend(values.iter().map(|&b| u8::from(b)));
    }

    fn decode_fixed(bytes: &[u8], n: usize) -> Option<Vec<Self>> {
        if bytes.len() != n {
            return None;
        }
        bytes
            .iter()
            .map(|&b| match b {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            })
            .collect()
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
pub(crate) fn decode_cells<T: ArrayElement>(bytes: &[u8], n: usize) -> Option<Vec<T>> {
    if T::DTYPE != DType::String {
        return T::decode_fixed(bytes, n);
    }
    let lens_end = n.checked_mul(4)?;
    let lens = bytes.get(..lens_end)?;
    let mut data = &bytes[lens_end..];
    let mut out = Vec::with_capacity(n);
    for l in lens.chunks_exact(4) {
        let len = u32::from_le_bytes(l.try_into().expect("exact chunk")) as usize;
        if len > data.len() {
            return None;
        }
        let (s, rest) = data.split_at(len);
        out.push(T::from_string(std::str::from_utf8(s).ok()?.to_owned())?);
        data = rest;
    }
    data.is_empty().then_some(out)
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
