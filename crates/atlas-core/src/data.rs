//! [`ArrayData`]: the cells of one array whose element type is known only at
//! run time (a variable read from a file, a batch of new datasets).

use array_format::{ArrayElement, DType, TimestampNs};
use ndarray::ArrayD;

/// Typed values of one array, one variant per element type.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
#[allow(missing_docs)] // one variant per element type
pub enum ArrayData {
    Bool(ArrayD<bool>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    Str(ArrayD<String>),
    Timestamp(ArrayD<TimestampNs>),
}

/// Runs `$body` with `$v` bound to the typed array inside `$data` (any
/// variant): one expression for all thirteen element types.
macro_rules! with_array_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::ArrayData::Bool($v) => $body,
            $crate::ArrayData::I8($v) => $body,
            $crate::ArrayData::I16($v) => $body,
            $crate::ArrayData::I32($v) => $body,
            $crate::ArrayData::I64($v) => $body,
            $crate::ArrayData::U8($v) => $body,
            $crate::ArrayData::U16($v) => $body,
            $crate::ArrayData::U32($v) => $body,
            $crate::ArrayData::U64($v) => $body,
            $crate::ArrayData::F32($v) => $body,
            $crate::ArrayData::F64($v) => $body,
            $crate::ArrayData::Str($v) => $body,
            $crate::ArrayData::Timestamp($v) => $body,
        }
    };
}
pub(crate) use with_array_data;

impl ArrayData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        fn of<T: ArrayElement>(_: &ArrayD<T>) -> DType {
            T::DTYPE
        }
        with_array_data!(self, v => of(v))
    }

    /// The extent of each axis.
    pub fn shape(&self) -> &[usize] {
        with_array_data!(self, v => v.shape())
    }

    /// The number of cells.
    pub fn len(&self) -> usize {
        with_array_data!(self, v => v.len())
    }

    /// True when the array has no cell.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of cell data: the element size times the cells, or for
    /// strings the sum of their UTF-8 lengths.
    pub fn data_bytes(&self) -> u64 {
        match self {
            ArrayData::Str(v) => v.iter().map(|s| s.len() as u64).sum(),
            other => {
                let width = other.dtype().size_bytes().unwrap_or(0) as u64;
                width * other.len() as u64
            }
        }
    }
}

macro_rules! from_array {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(
            impl From<ArrayD<$t>> for ArrayData {
                fn from(a: ArrayD<$t>) -> Self {
                    ArrayData::$variant(a)
                }
            }
        )*
    };
}

from_array!(
    bool => Bool,
    i8 => I8,
    i16 => I16,
    i32 => I32,
    i64 => I64,
    u8 => U8,
    u16 => U16,
    u32 => U32,
    u64 => U64,
    f32 => F32,
    f64 => F64,
    String => Str,
    TimestampNs => Timestamp,
);

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn array_data_reports_its_type_shape_and_bytes() {
        let f = ArrayData::from(ArrayD::from_elem(IxDyn(&[2, 3]), 1.5f64));
        assert_eq!(f.dtype(), DType::Float64);
        assert_eq!(f.shape(), &[2, 3]);
        assert_eq!(f.len(), 6);
        assert_eq!(f.data_bytes(), 48);
        assert!(!f.is_empty());
        let s = ArrayData::from(
            ArrayD::from_shape_vec(IxDyn(&[2]), vec!["ab".to_owned(), "çd".to_owned()]).unwrap(),
        );
        assert_eq!(s.dtype(), DType::String);
        assert_eq!(s.data_bytes(), 5);
        let e = ArrayData::from(ArrayD::<bool>::from_elem(IxDyn(&[0]), false));
        assert!(e.is_empty());
        assert_eq!(e.dtype(), DType::Bool);
        assert_eq!(e.data_bytes(), 0);
    }
}
