//! Element types, fill values and statistic values.

use std::fmt;

/// The element type of an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// `bool`, one byte per cell on disk (0 or 1).
    Bool,
    /// `i8`.
    Int8,
    /// `i16`.
    Int16,
    /// `i32`.
    Int32,
    /// `i64`.
    Int64,
    /// `u8`.
    UInt8,
    /// `u16`.
    UInt16,
    /// `u32`.
    UInt32,
    /// `u64`.
    UInt64,
    /// `f32`.
    Float32,
    /// `f64`.
    Float64,
    /// UTF-8 `String` of any length.
    String,
    /// [`TimestampNs`]: nanoseconds since the Unix epoch.
    Timestamp,
}

impl DType {
    /// Every dtype, in on-disk code order.
    pub const ALL: [DType; 13] = [
        DType::Bool,
        DType::Int8,
        DType::Int16,
        DType::Int32,
        DType::Int64,
        DType::UInt8,
        DType::UInt16,
        DType::UInt32,
        DType::UInt64,
        DType::Float32,
        DType::Float64,
        DType::String,
        DType::Timestamp,
    ];

    /// Width in bytes of one cell on disk, or `None` for variable-width strings.
    pub fn size_bytes(self) -> Option<usize> {
        Some(match self {
            DType::Bool | DType::Int8 | DType::UInt8 => 1,
            DType::Int16 | DType::UInt16 => 2,
            DType::Int32 | DType::UInt32 | DType::Float32 => 4,
            DType::Int64 | DType::UInt64 | DType::Float64 | DType::Timestamp => 8,
            DType::String => return None,
        })
    }

    /// The one-byte code used in layer files.
    pub fn code(self) -> u8 {
        match self {
            DType::Bool => 1,
            DType::Int8 => 2,
            DType::Int16 => 3,
            DType::Int32 => 4,
            DType::Int64 => 5,
            DType::UInt8 => 6,
            DType::UInt16 => 7,
            DType::UInt32 => 8,
            DType::UInt64 => 9,
            DType::Float32 => 10,
            DType::Float64 => 11,
            DType::String => 12,
            DType::Timestamp => 13,
        }
    }

    /// The dtype for an on-disk code.
    pub fn from_code(code: u8) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.code() == code)
    }

    /// The lowercase name used in messages, JSON and the CLI (`"f32"`, `"string"`…).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::Int8 => "i8",
            DType::Int16 => "i16",
            DType::Int32 => "i32",
            DType::Int64 => "i64",
            DType::UInt8 => "u8",
            DType::UInt16 => "u16",
            DType::UInt32 => "u32",
            DType::UInt64 => "u64",
            DType::Float32 => "f32",
            DType::Float64 => "f64",
            DType::String => "string",
            DType::Timestamp => "timestamp",
        }
    }

    /// The dtype for a name produced by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Nanoseconds since the Unix epoch (1970-01-01 00:00:00 UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimestampNs(pub i64);

impl fmt::Display for TimestampNs {
    /// Formats as an ISO-8601 UTC instant (`1970-01-01T00:00:00.000000000Z`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// ```
/// assert_eq!(array_format::civil_from_days(11_016), (2000, 2, 29));
/// ```
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's well-known era-based algorithm, restated.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A scalar fill value: what unwritten cells read as.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // one variant per dtype, named after it
pub enum FillValue {
    Bool(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt8(u8),
    UInt16(u16),
    UInt32(u32),
    UInt64(u64),
    Float32(f32),
    Float64(f64),
    String(String),
    Timestamp(TimestampNs),
}

impl FillValue {
    /// The dtype of this value.
    pub fn dtype(&self) -> DType {
        match self {
            FillValue::Bool(_) => DType::Bool,
            FillValue::Int8(_) => DType::Int8,
            FillValue::Int16(_) => DType::Int16,
            FillValue::Int32(_) => DType::Int32,
            FillValue::Int64(_) => DType::Int64,
            FillValue::UInt8(_) => DType::UInt8,
            FillValue::UInt16(_) => DType::UInt16,
            FillValue::UInt32(_) => DType::UInt32,
            FillValue::UInt64(_) => DType::UInt64,
            FillValue::Float32(_) => DType::Float32,
            FillValue::Float64(_) => DType::Float64,
            FillValue::String(_) => DType::String,
            FillValue::Timestamp(_) => DType::Timestamp,
        }
    }

    /// Bitwise equality (so a NaN fill value equals itself), used for schema comparison.
    pub fn same_as(&self, other: &FillValue) -> bool {
        match (self, other) {
            (FillValue::Float32(a), FillValue::Float32(b)) => a.to_bits() == b.to_bits(),
            (FillValue::Float64(a), FillValue::Float64(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }
}

impl fmt::Display for FillValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FillValue::Bool(v) => write!(f, "{v}"),
            FillValue::Int8(v) => write!(f, "{v}"),
            FillValue::Int16(v) => write!(f, "{v}"),
            FillValue::Int32(v) => write!(f, "{v}"),
            FillValue::Int64(v) => write!(f, "{v}"),
            FillValue::UInt8(v) => write!(f, "{v}"),
            FillValue::UInt16(v) => write!(f, "{v}"),
            FillValue::UInt32(v) => write!(f, "{v}"),
            FillValue::UInt64(v) => write!(f, "{v}"),
            FillValue::Float32(v) => write!(f, "{v}"),
            FillValue::Float64(v) => write!(f, "{v}"),
            FillValue::String(v) => write!(f, "{v:?}"),
            FillValue::Timestamp(v) => write!(f, "{v}"),
        }
    }
}

/// A typed minimum or maximum in [`crate::ArrayStats`].
#[derive(Clone, Debug, PartialEq)]
pub enum StatValue {
    /// For `bool` arrays.
    Bool(bool),
    /// For signed integer arrays.
    Int(i64),
    /// For unsigned integer arrays.
    UInt(u64),
    /// For float arrays (never NaN).
    Float(f64),
    /// For string arrays (byte-wise order).
    Str(String),
    /// For timestamp arrays.
    Timestamp(TimestampNs),
}

impl StatValue {
    /// Orders two values of the same kind; `None` when the kinds differ.
    pub fn partial_cmp_same(&self, other: &StatValue) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (StatValue::Bool(a), StatValue::Bool(b)) => a.partial_cmp(b),
            (StatValue::Int(a), StatValue::Int(b)) => a.partial_cmp(b),
            (StatValue::UInt(a), StatValue::UInt(b)) => a.partial_cmp(b),
            (StatValue::Float(a), StatValue::Float(b)) => a.partial_cmp(b),
            (StatValue::Str(a), StatValue::Str(b)) => a.partial_cmp(b),
            (StatValue::Timestamp(a), StatValue::Timestamp(b)) => a.partial_cmp(b),
            _ => None,
        }
    }

    /// The value as `f64` where that makes sense (numbers, bools, timestamps).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            StatValue::Bool(b) => Some(f64::from(u8::from(*b))),
            StatValue::Int(v) => Some(*v as f64),
            StatValue::UInt(v) => Some(*v as f64),
            StatValue::Float(v) => Some(*v),
            StatValue::Timestamp(t) => Some(t.0 as f64),
            StatValue::Str(_) => None,
        }
    }
}

impl fmt::Display for StatValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatValue::Bool(v) => write!(f, "{v}"),
            StatValue::Int(v) => write!(f, "{v}"),
            StatValue::UInt(v) => write!(f, "{v}"),
            StatValue::Float(v) => write!(f, "{v}"),
            StatValue::Str(v) => write!(f, "{v:?}"),
            StatValue::Timestamp(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_codes_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()), Some(d));
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_code(0), None);
        assert_eq!(DType::from_code(200), None);
    }

    #[test]
    fn timestamp_formats_as_utc() {
        assert_eq!(TimestampNs(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            TimestampNs(1_704_067_200_000_000_001).to_string(),
            "2024-01-01T00:00:00.000000001Z"
        );
        assert_eq!(
            TimestampNs(-1).to_string(),
            "1969-12-31T23:59:59.999999999Z"
        );
    }
}
