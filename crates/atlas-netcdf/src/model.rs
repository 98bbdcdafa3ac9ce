//! An in-memory NetCDF file: dimensions, attributes and variables with their
//! values, independent of the on-disk format it came from or goes to.

use std::fmt;

/// A NetCDF external type. The first six exist in every format; the rest
/// need CDF5 or NetCDF-4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NcType {
    /// `NC_BYTE`, signed 8-bit.
    Byte,
    /// `NC_CHAR`, one byte of text.
    Char,
    /// `NC_SHORT`, signed 16-bit.
    Short,
    /// `NC_INT`, signed 32-bit.
    Int,
    /// `NC_FLOAT`, 32-bit IEEE.
    Float,
    /// `NC_DOUBLE`, 64-bit IEEE.
    Double,
    /// `NC_UBYTE` (CDF5, NetCDF-4).
    UByte,
    /// `NC_USHORT` (CDF5, NetCDF-4).
    UShort,
    /// `NC_UINT` (CDF5, NetCDF-4).
    UInt,
    /// `NC_INT64` (CDF5, NetCDF-4).
    Int64,
    /// `NC_UINT64` (CDF5, NetCDF-4).
    UInt64,
    /// `NC_STRING`, variable-length text (NetCDF-4 only).
    String,
}

impl NcType {
    /// Every type, in `nc_type` code order.
    pub const ALL: [NcType; 12] = [
        NcType::Byte,
        NcType::Char,
        NcType::Short,
        NcType::Int,
        NcType::Float,
        NcType::Double,
        NcType::UByte,
        NcType::UShort,
        NcType::UInt,
        NcType::Int64,
        NcType::UInt64,
        NcType::String,
    ];

    /// The CDL name (`byte`, `char`, `short`, `int`, `float`, `double`,
    /// `ubyte`, `ushort`, `uint`, `int64`, `uint64`, `string`).
    pub fn name(self) -> &'static str {
        match self {
            NcType::Byte => "byte",
            NcType::Char => "char",
            NcType::Short => "short",
            NcType::Int => "int",
            NcType::Float => "float",
            NcType::Double => "double",
            NcType::UByte => "ubyte",
            NcType::UShort => "ushort",
            NcType::UInt => "uint",
            NcType::Int64 => "int64",
            NcType::UInt64 => "uint64",
            NcType::String => "string",
        }
    }

    /// The type with this CDL name.
    pub fn from_name(name: &str) -> Option<NcType> {
        NcType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The `nc_type` code of the C library (`NC_BYTE` = 1 … `NC_STRING` = 12).
    pub fn code(self) -> u32 {
        match self {
            NcType::Byte => 1,
            NcType::Char => 2,
            NcType::Short => 3,
            NcType::Int => 4,
            NcType::Float => 5,
            NcType::Double => 6,
            NcType::UByte => 7,
            NcType::UShort => 8,
            NcType::UInt => 9,
            NcType::Int64 => 10,
            NcType::UInt64 => 11,
            NcType::String => 12,
        }
    }

    /// The type of an `nc_type` code.
    pub fn from_code(code: u32) -> Option<NcType> {
        NcType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Bytes per value on disk in the classic formats (`None` for `string`).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            NcType::Byte | NcType::Char | NcType::UByte => 1,
            NcType::Short | NcType::UShort => 2,
            NcType::Int | NcType::UInt | NcType::Float => 4,
            NcType::Double | NcType::Int64 | NcType::UInt64 => 8,
            NcType::String => return None,
        })
    }

    /// True for the six types of the CDF1/CDF2 formats.
    pub fn is_classic(self) -> bool {
        matches!(
            self,
            NcType::Byte
                | NcType::Char
                | NcType::Short
                | NcType::Int
                | NcType::Float
                | NcType::Double
        )
    }
}

impl fmt::Display for NcType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Values of one variable or attribute, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum NcValues {
    /// `byte`.
    Byte(Vec<i8>),
    /// `char`: raw bytes, exactly as stored.
    Char(Vec<u8>),
    /// `short`.
    Short(Vec<i16>),
    /// `int`.
    Int(Vec<i32>),
    /// `float`.
    Float(Vec<f32>),
    /// `double`.
    Double(Vec<f64>),
    /// `ubyte`.
    UByte(Vec<u8>),
    /// `ushort`.
    UShort(Vec<u16>),
    /// `uint`.
    UInt(Vec<u32>),
    /// `int64`.
    Int64(Vec<i64>),
    /// `uint64`.
    UInt64(Vec<u64>),
    /// `string`.
    String(Vec<String>),
}

impl NcValues {
    /// The type of the values.
    pub fn nc_type(&self) -> NcType {
        match self {
            NcValues::Byte(_) => NcType::Byte,
            NcValues::Char(_) => NcType::Char,
            NcValues::Short(_) => NcType::Short,
            NcValues::Int(_) => NcType::Int,
            NcValues::Float(_) => NcType::Float,
            NcValues::Double(_) => NcType::Double,
            NcValues::UByte(_) => NcType::UByte,
            NcValues::UShort(_) => NcType::UShort,
            NcValues::UInt(_) => NcType::UInt,
            NcValues::Int64(_) => NcType::Int64,
            NcValues::UInt64(_) => NcType::UInt64,
            NcValues::String(_) => NcType::String,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            NcValues::Byte(v) => v.len(),
            NcValues::Char(v) | NcValues::UByte(v) => v.len(),
            NcValues::Short(v) => v.len(),
            NcValues::Int(v) => v.len(),
            NcValues::Float(v) => v.len(),
            NcValues::Double(v) => v.len(),
            NcValues::UShort(v) => v.len(),
            NcValues::UInt(v) => v.len(),
            NcValues::Int64(v) => v.len(),
            NcValues::UInt64(v) => v.len(),
            NcValues::String(v) => v.len(),
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bitwise equality: floats compare by their bits, so NaN equals NaN.
    pub fn same_bits(&self, other: &NcValues) -> bool {
        match (self, other) {
            (NcValues::Float(a), NcValues::Float(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (NcValues::Double(a), NcValues::Double(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            _ => self == other,
        }
    }
}

/// A dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NcDim {
    /// Name.
    pub name: String,
    /// Current length (for the unlimited dimension: the number of records).
    pub len: u64,
    /// True for an unlimited (record) dimension.
    pub unlimited: bool,
}

/// An attribute of a variable or of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct NcAttr {
    /// Name.
    pub name: String,
    /// Values (an attribute is always a 1-d list; text is `Char`).
    pub value: NcValues,
}

/// A variable with its values.
#[derive(Clone, Debug, PartialEq)]
pub struct NcVar {
    /// Name.
    pub name: String,
    /// Indices into [`NcFile::dims`], outermost first.
    pub dims: Vec<usize>,
    /// Attributes in file order.
    pub attrs: Vec<NcAttr>,
    /// All values, row-major; the type is the variable's type.
    pub values: NcValues,
}

impl NcVar {
    /// The variable's type.
    pub fn nc_type(&self) -> NcType {
        self.values.nc_type()
    }

    /// An attribute by name.
    pub fn attr(&self, name: &str) -> Option<&NcAttr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// The on-disk format of a NetCDF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NcFormat {
    /// CDF1, "classic": 32-bit offsets.
    Classic,
    /// CDF2, "64-bit offset".
    Offset64,
    /// CDF5, "64-bit data": 64-bit sizes and the unsigned and 64-bit types.
    Cdf5,
    /// NetCDF-4 (HDF5 based).
    Netcdf4,
}

impl NcFormat {
    /// `classic`, `64bit_offset`, `cdf5` or `netcdf4`, as recorded in `_nc_format`.
    pub fn name(self) -> &'static str {
        match self {
            NcFormat::Classic => "classic",
            NcFormat::Offset64 => "64bit_offset",
            NcFormat::Cdf5 => "cdf5",
            NcFormat::Netcdf4 => "netcdf4",
        }
    }

    /// The format with this name.
    pub fn from_name(name: &str) -> Option<NcFormat> {
        [
            NcFormat::Classic,
            NcFormat::Offset64,
            NcFormat::Cdf5,
            NcFormat::Netcdf4,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

impl fmt::Display for NcFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A whole NetCDF file in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct NcFile {
    /// The format it was read from (or is to be written as).
    pub format: NcFormat,
    /// Dimensions in definition order.
    pub dims: Vec<NcDim>,
    /// Global attributes in file order.
    pub attrs: Vec<NcAttr>,
    /// Variables in file order.
    pub vars: Vec<NcVar>,
}

impl NcFile {
    /// A variable by name.
    pub fn var(&self, name: &str) -> Option<&NcVar> {
        self.vars.iter().find(|v| v.name == name)
    }

    /// A global attribute by name.
    pub fn attr(&self, name: &str) -> Option<&NcAttr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// The shape of a variable (its dimensions' lengths).
    pub fn shape(&self, var: &NcVar) -> Vec<u64> {
        var.dims.iter().map(|&d| self.dims[d].len).collect()
    }
}

/// The default fill value of each type (`NC_FILL_BYTE` …), as the C library
/// uses for variables without `_FillValue`.
pub mod default_fill {
    /// `NC_FILL_BYTE`.
    pub const BYTE: i8 = -127;
    /// `NC_FILL_CHAR`.
    pub const CHAR: u8 = 0;
    /// `NC_FILL_SHORT`.
    pub const SHORT: i16 = -32767;
    /// `NC_FILL_INT`.
    pub const INT: i32 = -2_147_483_647;
    /// `NC_FILL_FLOAT`.
    pub const FLOAT: f32 = f32::from_bits(0x7cf0_0000); // 9.96921e36
    /// `NC_FILL_DOUBLE`.
    pub const DOUBLE: f64 = f64::from_bits(0x479e_0000_0000_0000); // 9.969209968386869e36
    /// `NC_FILL_UBYTE`.
    pub const UBYTE: u8 = 255;
    /// `NC_FILL_USHORT`.
    pub const USHORT: u16 = 65535;
    /// `NC_FILL_UINT`.
    pub const UINT: u32 = 4_294_967_295;
    /// `NC_FILL_INT64`.
    pub const INT64: i64 = -9_223_372_036_854_775_806;
    /// `NC_FILL_UINT64`.
    pub const UINT64: u64 = 18_446_744_073_709_551_614;
}
