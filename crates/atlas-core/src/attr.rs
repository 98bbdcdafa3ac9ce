//! [`Attr`]: typed attribute values that round-trip exactly through every
//! registry format (NaN and ±Inf included; a date-like string stays a string).

use std::borrow::Cow;

use array_format::TimestampNs;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dataset or array attribute. `NetCDF` attributes such as `valid_range` are lists.
#[derive(Clone, Debug)]
pub enum Attr {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int64(i64),
    /// An unsigned integer.
    UInt64(u64),
    /// A float (NaN and ±Inf allowed).
    Float64(f64),
    /// A string.
    String(String),
    /// An instant.
    Timestamp(TimestampNs),
    /// A list of booleans.
    BoolList(Vec<bool>),
    /// A list of signed integers.
    Int64List(Vec<i64>),
    /// A list of unsigned integers.
    UInt64List(Vec<u64>),
    /// A list of floats.
    Float64List(Vec<f64>),
    /// A list of strings.
    StringList(Vec<String>),
    /// A list of instants.
    TimestampList(Vec<TimestampNs>),
}

impl Attr {
    /// True for a single value (not a list): what the registry catalog
    /// indexes per dataset attribute.
    pub fn is_scalar(&self) -> bool {
        !matches!(
            self,
            Attr::BoolList(_)
                | Attr::Int64List(_)
                | Attr::UInt64List(_)
                | Attr::Float64List(_)
                | Attr::StringList(_)
                | Attr::TimestampList(_)
        )
    }
}

impl PartialEq for Attr {
    /// Same type and same value; floats compare by bits, so `NaN == NaN`.
    fn eq(&self, other: &Self) -> bool {
        use Attr::{
            Bool, BoolList, Float64, Float64List, Int64, Int64List, String, StringList, Timestamp,
            TimestampList, UInt64, UInt64List,
        };
        match (self, other) {
            (Bool(a), Bool(b)) => a == b,
            (Int64(a), Int64(b)) => a == b,
            (UInt64(a), UInt64(b)) => a == b,
            (Float64(a), Float64(b)) => a.to_bits() == b.to_bits(),
            (String(a), String(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (BoolList(a), BoolList(b)) => a == b,
            (Int64List(a), Int64List(b)) => a == b,
            (UInt64List(a), UInt64List(b)) => a == b,
            (Float64List(a), Float64List(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (StringList(a), StringList(b)) => a == b,
            (TimestampList(a), TimestampList(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for Attr {
    /// Formats like `ncdump` would show the value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn list<T: std::fmt::Display>(
            f: &mut std::fmt::Formatter<'_>,
            v: &[T],
        ) -> std::fmt::Result {
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{x}")?;
            }
            Ok(())
        }
        match self {
            Attr::Bool(v) => write!(f, "{v}"),
            Attr::Int64(v) => write!(f, "{v}"),
            Attr::UInt64(v) => write!(f, "{v}"),
            Attr::Float64(v) => write!(f, "{v}"),
            Attr::String(v) => write!(f, "{v:?}"),
            Attr::Timestamp(v) => write!(f, "{v}"),
            Attr::BoolList(v) => list(f, v),
            Attr::Int64List(v) => list(f, v),
            Attr::UInt64List(v) => list(f, v),
            Attr::Float64List(v) => list(f, v),
            Attr::StringList(v) => {
                let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
                list(f, &q)
            }
            Attr::TimestampList(v) => list(f, v),
        }
    }
}

impl From<&str> for Attr {
    fn from(v: &str) -> Self {
        Attr::String(v.to_owned())
    }
}
impl From<String> for Attr {
    fn from(v: String) -> Self {
        Attr::String(v)
    }
}
impl From<f64> for Attr {
    fn from(v: f64) -> Self {
        Attr::Float64(v)
    }
}
impl From<i64> for Attr {
    fn from(v: i64) -> Self {
        Attr::Int64(v)
    }
}
impl From<bool> for Attr {
    fn from(v: bool) -> Self {
        Attr::Bool(v)
    }
}

/// An `f64` that serializes non-finite values as the strings `"NaN"`, `"inf"`,
/// `"-inf"` (JSON has no literal for them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct F64(pub f64);

impl Serialize for F64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            // Keep the payload bits of unusual NaNs.
            if v.to_bits() == f64::NAN.to_bits() {
                s.serialize_str("NaN")
            } else {
                s.serialize_str(&format!("NaN:{:016x}", v.to_bits()))
            }
        } else if v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A direct visitor: serde's `untagged` enums buffer every value, which
        // made registry loading allocation-bound.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = F64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or one of \"NaN\", \"inf\", \"-inf\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<F64, E> {
                Ok(F64(v))
            }
            fn visit_f32<E: serde::de::Error>(self, v: f32) -> Result<F64, E> {
                Ok(F64(f64::from(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<F64, E> {
                Ok(F64(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<F64, E> {
                match s {
                    "NaN" => Ok(F64(f64::NAN)),
                    "inf" => Ok(F64(f64::INFINITY)),
                    "-inf" => Ok(F64(f64::NEG_INFINITY)),
                    other => other
                        .strip_prefix("NaN:")
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .map(|b| F64(f64::from_bits(b)))
                        .ok_or_else(|| E::custom(format!("bad float {other:?}"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The serialized form: a one-key object naming the type, e.g. `{"f64": 1.5}`,
/// `{"str": "2024-01-01"}`, `{"f64s": [1.0, "NaN"]}`. Written from borrowed
/// values (the registry serializes every dataset's attributes at every
/// commit that writes its record), read into owned ones.
#[derive(Serialize, Deserialize)]
enum AttrRepr<'a> {
    #[serde(rename = "bool")]
    Bool(bool),
    #[serde(rename = "i64")]
    Int64(i64),
    #[serde(rename = "u64")]
    UInt64(u64),
    #[serde(rename = "f64")]
    Float64(F64),
    #[serde(rename = "str")]
    String(Cow<'a, str>),
    #[serde(rename = "ts")]
    Timestamp(i64),
    #[serde(rename = "bools")]
    BoolList(Cow<'a, [bool]>),
    #[serde(rename = "i64s")]
    Int64List(Cow<'a, [i64]>),
    #[serde(rename = "u64s")]
    UInt64List(Cow<'a, [u64]>),
    #[serde(rename = "f64s")]
    Float64List(Floats<'a>),
    #[serde(rename = "strs")]
    StringList(Cow<'a, [String]>),
    #[serde(rename = "tss")]
    TimestampList(Instants<'a>),
}

/// A list of floats, each serialized as an [`F64`].
struct Floats<'a>(Cow<'a, [f64]>);

impl Serialize for Floats<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| F64(*v)))
    }
}

impl<'de> Deserialize<'de> for Floats<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<F64>::deserialize(d)?;
        Ok(Floats(Cow::Owned(v.into_iter().map(|x| x.0).collect())))
    }
}

/// A list of instants, each serialized as its nanoseconds.
struct Instants<'a>(Cow<'a, [TimestampNs]>);

impl Serialize for Instants<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| t.0))
    }
}

impl<'de> Deserialize<'de> for Instants<'_> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<i64>::deserialize(d)?;
        Ok(Instants(Cow::Owned(
            v.into_iter().map(TimestampNs).collect(),
        )))
    }
}

impl Serialize for Attr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = match self {
            Attr::Bool(v) => AttrRepr::Bool(*v),
            Attr::Int64(v) => AttrRepr::Int64(*v),
            Attr::UInt64(v) => AttrRepr::UInt64(*v),
            Attr::Float64(v) => AttrRepr::Float64(F64(*v)),
            Attr::String(v) => AttrRepr::String(Cow::Borrowed(v)),
            Attr::Timestamp(v) => AttrRepr::Timestamp(v.0),
            Attr::BoolList(v) => AttrRepr::BoolList(Cow::Borrowed(v)),
            Attr::Int64List(v) => AttrRepr::Int64List(Cow::Borrowed(v)),
            Attr::UInt64List(v) => AttrRepr::UInt64List(Cow::Borrowed(v)),
            Attr::Float64List(v) => AttrRepr::Float64List(Floats(Cow::Borrowed(v))),
            Attr::StringList(v) => AttrRepr::StringList(Cow::Borrowed(v)),
            Attr::TimestampList(v) => AttrRepr::TimestampList(Instants(Cow::Borrowed(v))),
        };
        r.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match AttrRepr::deserialize(d)? {
            AttrRepr::Bool(v) => Attr::Bool(v),
            AttrRepr::Int64(v) => Attr::Int64(v),
            AttrRepr::UInt64(v) => Attr::UInt64(v),
            AttrRepr::Float64(v) => Attr::Float64(v.0),
            AttrRepr::String(v) => Attr::String(v.into_owned()),
            AttrRepr::Timestamp(v) => Attr::Timestamp(TimestampNs(v)),
            AttrRepr::BoolList(v) => Attr::BoolList(v.into_owned()),
            AttrRepr::Int64List(v) => Attr::Int64List(v.into_owned()),
            AttrRepr::UInt64List(v) => Attr::UInt64List(v.into_owned()),
            AttrRepr::Float64List(v) => Attr::Float64List(v.0.into_owned()),
            AttrRepr::StringList(v) => Attr::StringList(v.into_owned()),
            AttrRepr::TimestampList(v) => Attr::TimestampList(v.0.into_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Attr> {
        vec![
            Attr::Bool(true),
            Attr::Int64(i64::MIN),
            Attr::UInt64(u64::MAX),
            Attr::Float64(f64::NAN),
            Attr::Float64(f64::from_bits(0x7ff8_0000_0000_0123)),
            Attr::Float64(f64::INFINITY),
            Attr::Float64(f64::NEG_INFINITY),
            Attr::Float64(-0.0),
            Attr::Float64(0.1),
            Attr::String("2024-01-01T00:00:00Z".into()),
            Attr::String("NaN".into()),
            Attr::Timestamp(TimestampNs(-5)),
            Attr::BoolList(vec![]),
            Attr::Int64List(vec![1, -2]),
            Attr::UInt64List(vec![3]),
            Attr::Float64List(vec![1.5, f64::NAN, f64::NEG_INFINITY]),
            Attr::StringList(vec!["a".into(), String::new()]),
            Attr::TimestampList(vec![TimestampNs(1)]),
        ]
    }

    #[test]
    fn json_round_trip_keeps_type_and_bits() {
        for a in samples() {
            let j = serde_json::to_string(&a).unwrap();
            let back: Attr = serde_json::from_str(&j).unwrap();
            assert_eq!(back, a, "{j}");
        }
        // A string that looks like a float stays a string.
        let j = serde_json::to_string(&Attr::String("NaN".into())).unwrap();
        assert_eq!(j, r#"{"str":"NaN"}"#);
    }

    /// Attributes are serialized from borrowed values: the bytes are the
    /// format's, pinned here as JSON for every sample, and in `MessagePack`
    /// (compact and named) those of the pinned JSON's value.
    #[test]
    fn borrowed_serialization_writes_the_formats_bytes() {
        let golden = [
            r#"{"bool":true}"#,
            r#"{"i64":-9223372036854775808}"#,
            r#"{"u64":18446744073709551615}"#,
            r#"{"f64":"NaN"}"#,
            r#"{"f64":"NaN:7ff8000000000123"}"#,
            r#"{"f64":"inf"}"#,
            r#"{"f64":"-inf"}"#,
            r#"{"f64":-0.0}"#,
            r#"{"f64":0.1}"#,
            r#"{"str":"2024-01-01T00:00:00Z"}"#,
            r#"{"str":"NaN"}"#,
            r#"{"ts":-5}"#,
            r#"{"bools":[]}"#,
            r#"{"i64s":[1,-2]}"#,
            r#"{"u64s":[3]}"#,
            r#"{"f64s":[1.5,"NaN","-inf"]}"#,
            r#"{"strs":["a",""]}"#,
            r#"{"tss":[1]}"#,
        ];
        let samples = samples();
        assert_eq!(samples.len(), golden.len());
        for (a, g) in samples.iter().zip(golden) {
            assert_eq!(serde_json::to_string(a).unwrap(), g);
            let v: serde_json::Value = serde_json::from_str(g).unwrap();
            assert_eq!(
                rmp_serde::to_vec(a).unwrap(),
                rmp_serde::to_vec(&v).unwrap(),
                "{g}"
            );
            assert_eq!(
                rmp_serde::to_vec_named(a).unwrap(),
                rmp_serde::to_vec_named(&v).unwrap(),
                "{g}"
            );
        }
    }

    #[test]
    fn msgpack_round_trip_keeps_type_and_bits() {
        for a in samples() {
            let b = rmp_serde::to_vec_named(&a).unwrap();
            let back: Attr = rmp_serde::from_slice(&b).unwrap();
            assert_eq!(back, a);
        }
    }
}
