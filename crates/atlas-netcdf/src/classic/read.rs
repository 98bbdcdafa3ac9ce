//! Reading CDF1, CDF2 and CDF5 files: a bounds-checked header parser and
//! big-endian value decoding. Every count and offset read from a file is
//! checked against the bytes that are really there before it drives an
//! allocation, so hostile input gives an error, never a panic or an abort.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::model::{NcAttr, NcDim, NcFile, NcFormat, NcType, NcValues, NcVar};

const NC_DIMENSION: u32 = 0x0A;
const NC_VARIABLE: u32 = 0x0B;
const NC_ATTRIBUTE: u32 = 0x0C;

/// Why the header parser stopped.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// The buffer ended: at least this many bytes (from the file start) are needed.
    Short(u64),
    /// The header is damaged at this offset.
    Bad(u64, String),
    /// A valid header using something this reader does not handle.
    Unsupported(String),
}

impl HeaderError {
    fn into_error(self, path: &Path, file_len: u64) -> Error {
        match self {
            HeaderError::Short(needed) => Error::Truncated {
                path: path.to_owned(),
                needed,
                len: file_len,
            },
            HeaderError::Bad(offset, reason) => Error::Malformed {
                path: path.to_owned(),
                offset,
                reason,
            },
            HeaderError::Unsupported(what) => Error::Unsupported {
                path: path.to_owned(),
                what,
            },
        }
    }
}

type HResult<T> = std::result::Result<T, HeaderError>;

/// One variable as the header describes it.
#[derive(Clone, Debug)]
pub(crate) struct VarHeader {
    pub name: String,
    pub dims: Vec<usize>,
    pub attrs: Vec<NcAttr>,
    pub nc_type: NcType,
    pub begin: u64,
}

/// A parsed header plus the data layout derived from it.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub format: NcFormat,
    pub dims: Vec<NcDim>,
    pub attrs: Vec<NcAttr>,
    pub vars: Vec<VarHeader>,
    /// Bytes per record (all record variables' slabs).
    pub recsize: u64,
}

impl Header {
    /// True when `dim` is the record dimension.
    fn is_record_dim(&self, dim: usize) -> bool {
        self.dims[dim].unlimited
    }

    fn is_record_var(&self, v: &VarHeader) -> bool {
        v.dims.first().is_some_and(|&d| self.is_record_dim(d))
    }

    /// Bytes of one record of `v` (for a fixed-size variable: all of it), unpadded.
    fn slab_bytes(&self, v: &VarHeader) -> u64 {
        let skip = usize::from(self.is_record_var(v));
        let cells: u64 = v.dims[skip..].iter().map(|&d| self.dims[d].len).product();
        cells * v.nc_type.size().unwrap_or(1) as u64
    }

    fn num_records(&self) -> u64 {
        self.dims.iter().find(|d| d.unlimited).map_or(0, |d| d.len)
    }
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// CDF5: sizes and counts are 64-bit.
    wide: bool,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn bad<T>(&self, reason: impl Into<String>) -> HResult<T> {
        Err(HeaderError::Bad(self.offset(), reason.into()))
    }

    fn take(&mut self, n: u64) -> HResult<&'a [u8]> {
        let remaining = (self.buf.len() - self.pos) as u64;
        if n > remaining {
            return Err(HeaderError::Short(self.offset().saturating_add(n)));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u32(&mut self) -> HResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> HResult<u64> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A `NON_NEG`: 32-bit (CDF1/2) or 64-bit (CDF5) non-negative integer.
    fn non_neg(&mut self) -> HResult<u64> {
        let at = self.offset();
        let v = if self.wide {
            self.u64()?
        } else {
            u64::from(self.u32()?)
        };
        let limit = if self.wide {
            i64::MAX as u64
        } else {
            i32::MAX as u64
        };
        if v > limit {
            return Err(HeaderError::Bad(at, format!("negative count or size {v}")));
        }
        Ok(v)
    }

    fn skip_padding(&mut self, n: u64) -> HResult<()> {
        self.take(pad4(n)).map(|_| ())
    }

    fn name(&mut self, what: &str) -> HResult<String> {
        let at = self.offset();
        let n = self.non_neg()?;
        let bytes = self.take(n)?;
        self.skip_padding(n)?;
        if n == 0 {
            return Err(HeaderError::Bad(at, format!("empty {what} name")));
        }
        String::from_utf8(bytes.to_vec())
            .map_err(|_| HeaderError::Bad(at, format!("{what} name is not utf-8")))
    }

    fn nc_type(&mut self, format: NcFormat) -> HResult<NcType> {
        let code = self.u32()?;
        match NcType::from_code(code) {
            Some(t) if t.is_classic() => Ok(t),
            Some(t) if format == NcFormat::Cdf5 && t != NcType::String => Ok(t),
            Some(t) => Err(HeaderError::Unsupported(format!(
                "type {t} (nc_type {code}) in a {format} file"
            ))),
            None => Err(HeaderError::Unsupported(format!("unknown nc_type {code}"))),
        }
    }

    /// A list header: `ABSENT` (returns 0) or `tag nelems`.
    fn list(&mut self, tag: u32, what: &str) -> HResult<u64> {
        let at = self.offset();
        let t = self.u32()?;
        let n = self.non_neg()?;
        if t == 0 && n == 0 {
            return Ok(0);
        }
        if t != tag {
            return Err(HeaderError::Bad(
                at,
                format!("expected the {what} list tag {tag:#x}, found {t:#x}"),
            ));
        }
        Ok(n)
    }

    /// Checks that `n` items of at least `min_bytes` each can still follow.
    fn check_count(&self, n: u64, min_bytes: u64) -> HResult<()> {
        let remaining = (self.buf.len() - self.pos) as u64;
        match n.checked_mul(min_bytes) {
            Some(b) if b <= remaining => Ok(()),
            Some(b) => Err(HeaderError::Short(self.offset().saturating_add(b))),
            None => self.bad(format!("count {n} is impossibly large")),
        }
    }

    fn attrs(&mut self, format: NcFormat) -> HResult<Vec<NcAttr>> {
        let n = self.list(NC_ATTRIBUTE, "attribute")?;
        self.check_count(n, 12)?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = self.name("attribute")?;
            let t = self.nc_type(format)?;
            let count = self.non_neg()?;
            let size = t.size().unwrap_or(1) as u64;
            let at = self.offset();
            let nbytes = count
                .checked_mul(size)
                .ok_or_else(|| HeaderError::Bad(at, "attribute too large".into()))?;
            let bytes = self.take(nbytes)?;
            self.skip_padding(nbytes)?;
            out.push(NcAttr {
                name,
                value: decode(t, bytes),
            });
        }
        Ok(out)
    }
}

/// Parses a header from the first bytes of a file. `Short` means more bytes
/// are needed (or the file is truncated, if `buf` is the whole file).
pub(crate) fn parse_header(buf: &[u8], file_len: u64) -> HResult<Header> {
    if buf.len() < 4 || &buf[..3] != b"CDF" {
        return Err(HeaderError::Bad(0, "no CDF signature".into()));
    }
    let format = match buf[3] {
        1 => NcFormat::Classic,
        2 => NcFormat::Offset64,
        5 => NcFormat::Cdf5,
        v => {
            return Err(HeaderError::Unsupported(format!(
                "netcdf classic format version {v}"
            )))
        }
    };
    let mut c = Cursor {
        buf,
        pos: 4,
        wide: format == NcFormat::Cdf5,
    };
    let numrecs_at = c.offset();
    let numrecs = if c.wide {
        c.u64()?
    } else {
        u64::from(c.u32()?)
    };
    let streaming = if c.wide {
        numrecs == u64::MAX
    } else {
        numrecs == u64::from(u32::MAX)
    };
    let limit = if c.wide {
        i64::MAX as u64
    } else {
        i32::MAX as u64
    };
    if !streaming && numrecs > limit {
        return Err(HeaderError::Bad(
            numrecs_at,
            format!("negative record count {numrecs}"),
        ));
    }

    // Dimensions.
    let n_dims = c.list(NC_DIMENSION, "dimension")?;
    c.check_count(n_dims, 8)?;
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let at = c.offset();
        let name = c.name("dimension")?;
        let len = c.non_neg()?;
        let unlimited = len == 0;
        if unlimited && dims.iter().any(|d: &NcDim| d.unlimited) {
            return Err(HeaderError::Bad(at, "a second unlimited dimension".into()));
        }
        if dims.iter().any(|d: &NcDim| d.name == name) {
            return Err(HeaderError::Bad(
                at,
                format!("duplicate dimension {name:?}"),
            ));
        }
        dims.push(NcDim {
            name,
            len: if unlimited && !streaming {
                numrecs
            } else {
                len
            },
            unlimited,
        });
    }

    let attrs = c.attrs(format)?;

    // Variables.
    let n_vars = c.list(NC_VARIABLE, "variable")?;
    c.check_count(n_vars, 24)?;
    let mut vars = Vec::with_capacity(n_vars as usize);
    for _ in 0..n_vars {
        let at = c.offset();
        let name = c.name("variable")?;
        if vars.iter().any(|v: &VarHeader| v.name == name) {
            return Err(HeaderError::Bad(at, format!("duplicate variable {name:?}")));
        }
        let rank = c.non_neg()?;
        c.check_count(rank, if c.wide { 8 } else { 4 })?;
        let mut vdims = Vec::with_capacity(rank as usize);
        for i in 0..rank {
            let id_at = c.offset();
            let id = c.non_neg()?;
            let d = usize::try_from(id).ok().filter(|&d| d < dims.len());
            let Some(d) = d else {
                return Err(HeaderError::Bad(
                    id_at,
                    format!("variable {name:?} uses dimension id {id} of {}", dims.len()),
                ));
            };
            if dims[d].unlimited && i > 0 {
                return Err(HeaderError::Bad(
                    id_at,
                    format!("variable {name:?} uses the unlimited dimension other than first"),
                ));
            }
            vdims.push(d);
        }
        let vattrs = c.attrs(format)?;
        let nc_type = c.nc_type(format)?;
        // vsize is recomputed by `layout` (writers store 2^32-1 for huge variables).
        let _vsize = if c.wide {
            c.u64()?
        } else {
            u64::from(c.u32()?)
        };
        let begin_at = c.offset();
        let begin = if format == NcFormat::Classic {
            u64::from(c.u32()?)
        } else {
            c.u64()?
        };
        if begin > i64::MAX as u64 || (format == NcFormat::Classic && begin > i32::MAX as u64) {
            return Err(HeaderError::Bad(
                begin_at,
                format!("variable {name:?} has a negative offset"),
            ));
        }
        vars.push(VarHeader {
            name,
            dims: vdims,
            attrs: vattrs,
            nc_type,
            begin,
        });
    }
    let header_len = c.offset();

    let mut h = Header {
        format,
        dims,
        attrs,
        vars,
        recsize: 0,
    };
    layout(&mut h, header_len, file_len, streaming)?;
    Ok(h)
}

/// Computes the record size and the record count of a streaming file, and
/// checks that every variable lies after the header and inside the file.
fn layout(h: &mut Header, header_len: u64, file_len: u64, streaming: bool) -> HResult<()> {
    let overflow = |name: &str| HeaderError::Bad(0, format!("variable {name:?} is too large"));
    let mut recsize = 0u64;
    let mut first_slab = None;
    for v in &h.vars {
        // Every product is checked: shapes come from the file.
        let skip = usize::from(h.is_record_var(v));
        let mut cells = 1u64;
        for &d in &v.dims[skip..] {
            cells = cells
                .checked_mul(h.dims[d].len)
                .ok_or_else(|| overflow(&v.name))?;
        }
        let slab = cells
            .checked_mul(v.nc_type.size().unwrap_or(1) as u64)
            .ok_or_else(|| overflow(&v.name))?;
        if skip == 1 {
            first_slab.get_or_insert(slab);
            recsize = recsize
                .checked_add(slab + pad4(slab))
                .ok_or_else(|| overflow(&v.name))?;
        }
    }
    // The format's special case (as the C library decides it): when the first
    // record variable is the only one with data, records are not padded.
    if let Some(first) = first_slab {
        if recsize == first + pad4(first) {
            recsize = first;
        }
    }
    h.recsize = recsize;
    if streaming {
        let first = h
            .vars
            .iter()
            .filter(|v| h.is_record_var(v))
            .map(|v| v.begin)
            .min();
        let n = match first {
            Some(b) if recsize > 0 => file_len.saturating_sub(b) / recsize,
            _ => 0,
        };
        if let Some(d) = h.dims.iter_mut().find(|d| d.unlimited) {
            d.len = n;
        }
    }
    let numrecs = h.num_records();
    for v in &h.vars {
        if v.begin < header_len {
            return Err(HeaderError::Bad(
                header_len,
                format!(
                    "variable {:?} starts at {} inside the header",
                    v.name, v.begin
                ),
            ));
        }
        let slab = h.slab_bytes(v);
        let end = if h.is_record_var(v) {
            if numrecs == 0 {
                v.begin
            } else {
                (numrecs - 1)
                    .checked_mul(recsize)
                    .and_then(|x| x.checked_add(v.begin))
                    .and_then(|x| x.checked_add(slab))
                    .ok_or_else(|| overflow(&v.name))?
            }
        } else {
            v.begin.checked_add(slab).ok_or_else(|| overflow(&v.name))?
        };
        if end > file_len {
            return Err(HeaderError::Short(end));
        }
    }
    check_no_overlap(h, numrecs)
}

/// Checks that no byte of the file belongs to two variables (netCDF-C refuses
/// such files too, since 4.7: `NC_check_voffs`). Otherwise variables sharing
/// their bytes would let a small file decode to many times its size. Run after
/// every variable's extent has been checked against the file's length.
fn check_no_overlap(h: &Header, numrecs: u64) -> HResult<()> {
    // (start, end, name) of each extent; the record section is one extent.
    let mut fixed: Vec<(u64, u64, &str)> = Vec::new();
    let mut record: Vec<(u64, u64, &str)> = Vec::new();
    for v in &h.vars {
        // Sums `layout` checked (a record variable's only when it has records).
        let span = || (v.begin, v.begin + h.slab_bytes(v), v.name.as_str());
        if !h.is_record_var(v) {
            fixed.push(span());
        } else if numrecs > 0 {
            record.push(span());
        }
    }
    let overlap = |a: &str, b: &str, at: u64| {
        HeaderError::Bad(at, format!("variables {a:?} and {b:?} overlap"))
    };
    record.sort_unstable();
    for w in record.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(overlap(w[0].2, w[1].2, w[1].0));
        }
    }
    if let (Some(first), Some(last_end)) = (record.first(), record.iter().map(|r| r.1).max()) {
        // One record of every record variable fits in `recsize` bytes, so
        // records do not overlap each other; `layout` checked the last one
        // against the file's length.
        if last_end - first.0 > h.recsize {
            return Err(HeaderError::Bad(
                first.0,
                format!(
                    "record variables span {} bytes, more than a record of {}",
                    last_end - first.0,
                    h.recsize
                ),
            ));
        }
        let end = (numrecs - 1) * h.recsize + last_end;
        fixed.push((first.0, end, "(the records)"));
    }
    fixed.retain(|f| f.1 > f.0);
    fixed.sort_unstable();
    for w in fixed.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(overlap(w[0].2, w[1].2, w[1].0));
        }
    }
    Ok(())
}

/// Decodes big-endian values of type `t`. `bytes.len()` must be a multiple of
/// the type's size (it always is: callers slice whole values).
pub(crate) fn decode(t: NcType, bytes: &[u8]) -> NcValues {
    macro_rules! be {
        ($ty:ty, $n:literal) => {
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    <$ty>::from_be_bytes(a)
                })
                .collect()
        };
    }
    match t {
        NcType::Byte => NcValues::Byte(bytes.iter().map(|&b| b as i8).collect()),
        NcType::Char => NcValues::Char(bytes.to_vec()),
        NcType::UByte => NcValues::UByte(bytes.to_vec()),
        NcType::Short => NcValues::Short(be!(i16, 2)),
        NcType::UShort => NcValues::UShort(be!(u16, 2)),
        NcType::Int => NcValues::Int(be!(i32, 4)),
        NcType::UInt => NcValues::UInt(be!(u32, 4)),
        NcType::Float => NcValues::Float(be!(f32, 4)),
        NcType::Double => NcValues::Double(be!(f64, 8)),
        NcType::Int64 => NcValues::Int64(be!(i64, 8)),
        NcType::UInt64 => NcValues::UInt64(be!(u64, 8)),
        // Never in a classic file (rejected by the header parser).
        NcType::String => NcValues::String(Vec::new()),
    }
}

/// True when `bytes` start like a CDF1/CDF2/CDF5 file.
pub(crate) fn has_signature(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && &bytes[..3] == b"CDF"
}

/// Parses a whole file held in memory.
pub(crate) fn read_bytes(bytes: &[u8], path: &Path) -> Result<NcFile> {
    let len = bytes.len() as u64;
    if !has_signature(bytes) {
        return Err(Error::NotNetcdf {
            path: path.to_owned(),
        });
    }
    let mut h = parse_header(bytes, len).map_err(|e| e.into_error(path, len))?;
    let numrecs = h.num_records();
    // The header's variables move into the file (their names, dimensions
    // and attributes are not copied).
    let header_vars = std::mem::take(&mut h.vars);
    let mut vars = Vec::with_capacity(header_vars.len());
    for v in header_vars {
        let slab = h.slab_bytes(&v) as usize;
        let begin = v.begin as usize;
        // `layout` checked every range against the file length.
        let values = if h.is_record_var(&v) {
            let mut raw = Vec::with_capacity(slab * numrecs as usize);
            for r in 0..numrecs as usize {
                let at = begin + r * h.recsize as usize;
                raw.extend_from_slice(&bytes[at..at + slab]);
            }
            decode(v.nc_type, &raw)
        } else {
            decode(v.nc_type, &bytes[begin..begin + slab])
        };
        vars.push(NcVar {
            name: v.name,
            dims: v.dims,
            attrs: v.attrs,
            values,
        });
    }
    Ok(NcFile {
        format: h.format,
        dims: h.dims,
        attrs: h.attrs,
        vars,
    })
}

/// A CDF1/CDF2/CDF5 file opened for reading single variables: only the header
/// and the requested variables' bytes are read.
#[derive(Debug)]
pub struct ClassicReader {
    path: PathBuf,
    file: File,
    len: u64,
    header: Header,
}

impl ClassicReader {
    /// Opens a file and parses its header.
    pub fn open(path: impl AsRef<Path>) -> Result<ClassicReader> {
        let path = path.as_ref().to_owned();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut want = len.min(32 * 1024);
        let mut buf = vec![0; want as usize];
        loop {
            buf.resize(want as usize, 0);
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.read_exact(&mut buf).map_err(io)?;
            if !has_signature(&buf) {
                return Err(Error::NotNetcdf { path });
            }
            match parse_header(&buf, len) {
                Ok(header) => {
                    return Ok(ClassicReader {
                        path,
                        file,
                        len,
                        header,
                    })
                }
                Err(HeaderError::Short(n)) if want < len => {
                    want = n.max(want.saturating_mul(2)).min(len);
                }
                Err(e) => return Err(e.into_error(&path, len)),
            }
        }
    }

    /// The file's format.
    pub fn format(&self) -> NcFormat {
        self.header.format
    }

    /// The dimensions.
    pub fn dims(&self) -> &[NcDim] {
        &self.header.dims
    }

    /// The global attributes.
    pub fn attrs(&self) -> &[NcAttr] {
        &self.header.attrs
    }

    /// Variable names in file order.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.header.vars.iter().map(|v| v.name.as_str())
    }

    /// Reads one variable's values, or `Ok(None)` if there is no such variable.
    pub fn read_var(&mut self, name: &str) -> Result<Option<NcValues>> {
        let Some(v) = self.header.vars.iter().find(|v| v.name == name) else {
            return Ok(None);
        };
        let slab = self.header.slab_bytes(v);
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let (starts, step) = if self.header.is_record_var(v) {
            (self.header.num_records(), self.header.recsize)
        } else {
            (1, 0)
        };
        // `layout` checked every range against the file length (`self.len`).
        debug_assert!(v.begin + slab <= self.len || starts == 0);
        let mut raw = vec![0u8; (slab * starts) as usize];
        for (r, out) in raw.chunks_mut(slab.max(1) as usize).enumerate() {
            self.file
                .seek(SeekFrom::Start(v.begin + r as u64 * step))
                .map_err(io)?;
            self.file.read_exact(out).map_err(io)?;
        }
        Ok(Some(decode(v.nc_type, &raw)))
    }
}
