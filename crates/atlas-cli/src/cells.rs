//! Run-time dtype dispatch and cell formatting.

use atlas::{ArrayElement, TimestampNs};
use ndarray::ArrayD;
use serde_json::Value;

/// Formats one cell as text and as JSON.
pub trait Cell: ArrayElement {
    /// Text as `atlas cat` prints it.
    fn text(&self) -> String;
    /// JSON (non-finite floats become `null`).
    fn json(&self) -> Value;
}

macro_rules! int_cell {
    ($($t:ty),*) => {$(
        impl Cell for $t {
            fn text(&self) -> String { self.to_string() }
            fn json(&self) -> Value { Value::from(*self) }
        }
    )*};
}
int_cell!(i8, i16, i32, i64, u8, u16, u32, u64, bool);

macro_rules! float_cell {
    ($($t:ty),*) => {$(
        impl Cell for $t {
            fn text(&self) -> String { self.to_string() }
            fn json(&self) -> Value {
                serde_json::Number::from_f64(f64::from(*self)).map_or(Value::Null, Value::Number)
            }
        }
    )*};
}
impl Cell for f32 {
    fn text(&self) -> String {
        self.to_string()
    }
    fn json(&self) -> Value {
        // Through the shortest f32 text, so 17.048f32 prints as 17.048, not 17.0480003356933.
        self.to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    }
}

float_cell!(f64);

impl Cell for String {
    fn text(&self) -> String {
        format!("{self:?}")
    }
    fn json(&self) -> Value {
        Value::String(self.clone())
    }
}

impl Cell for TimestampNs {
    fn text(&self) -> String {
        self.to_string()
    }
    fn json(&self) -> Value {
        Value::String(self.to_string())
    }
}

/// Calls `$body` with `$T` bound to the Rust type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            atlas::DType::Bool => {
                type $T = bool;
                $body
            }
            atlas::DType::Int8 => {
                type $T = i8;
                $body
            }
            atlas::DType::Int16 => {
                type $T = i16;
                $body
            }
            atlas::DType::Int32 => {
                type $T = i32;
                $body
            }
            atlas::DType::Int64 => {
                type $T = i64;
                $body
            }
            atlas::DType::UInt8 => {
                type $T = u8;
                $body
            }
            atlas::DType::UInt16 => {
                type $T = u16;
                $body
            }
            atlas::DType::UInt32 => {
                type $T = u32;
                $body
            }
            atlas::DType::UInt64 => {
                type $T = u64;
                $body
            }
            atlas::DType::Float32 => {
                type $T = f32;
                $body
            }
            atlas::DType::Float64 => {
                type $T = f64;
                $body
            }
            atlas::DType::String => {
                type $T = String;
                $body
            }
            atlas::DType::Timestamp => {
                type $T = atlas::TimestampNs;
                $body
            }
            other => anyhow::bail!("dtype {other} is not supported by this tool"),
        }
    };
}
pub(crate) use with_dtype;

/// Nested JSON arrays in C order.
pub fn to_json<T: Cell>(a: &ArrayD<T>) -> Value {
    fn rec<T: Cell>(v: &ndarray::ArrayViewD<'_, T>) -> Value {
        if v.ndim() == 0 {
            return v.first().map_or(Value::Null, Cell::json);
        }
        Value::Array(v.outer_iter().map(|sub| rec(&sub)).collect())
    }
    rec(&a.view())
}

/// Nested bracketed text in C order, one innermost row per line.
pub fn to_text<T: Cell>(a: &ArrayD<T>) -> String {
    fn rec<T: Cell>(v: &ndarray::ArrayViewD<'_, T>, out: &mut String, depth: usize) {
        match v.ndim() {
            0 => out.push_str(&v.first().map(Cell::text).unwrap_or_default()),
            1 => {
                out.push('[');
                let cells: Vec<String> = v.iter().map(Cell::text).collect();
                out.push_str(&cells.join(", "));
                out.push(']');
            }
            _ => {
                out.push('[');
                for (i, sub) in v.outer_iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                        out.push_str(&" ".repeat(depth + 1));
                    }
                    rec(&sub, out, depth + 1);
                }
                out.push(']');
            }
        }
    }
    let mut s = String::new();
    rec(&a.view(), &mut s, 0);
    s
}
