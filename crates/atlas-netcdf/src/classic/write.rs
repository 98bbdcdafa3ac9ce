//! Writing CDF1, CDF2 and CDF5 files.
//!
//! Layout as the format specification and the C library have it: the header,
//! the fixed-size variables one after the other (each padded to 4 bytes), then
//! the records, each holding one slab of every record variable in definition
//! order (padded to 4 bytes, except when there is exactly one record variable).

use std::io::Write;

use crate::model::{NcAttr, NcFile, NcFormat, NcType, NcValues};

const NC_DIMENSION: u32 = 0x0A;
const NC_VARIABLE: u32 = 0x0B;
const NC_ATTRIBUTE: u32 = 0x0C;

/// Why a file cannot be written in the requested format.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The content does not fit the format (a type, a size, a shape).
    Invalid(String),
    /// Writing failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

type WResult<T> = std::result::Result<T, WriteError>;

fn invalid<T>(msg: impl Into<String>) -> WResult<T> {
    Err(WriteError::Invalid(msg.into()))
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

struct Enc {
    out: Vec<u8>,
    format: NcFormat,
}

impl Enc {
    fn wide(&self) -> bool {
        self.format == NcFormat::Cdf5
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn non_neg(&mut self, v: u64, what: &str) -> WResult<()> {
        if self.wide() {
            if v > i64::MAX as u64 {
                return invalid(format!("{what} {v} is too large"));
            }
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            let Ok(v) = i32::try_from(v) else {
                return invalid(format!(
                    "{what} {v} does not fit the {} format (use cdf5)",
                    self.format
                ));
            };
            self.u32(v as u32);
        }
        Ok(())
    }

    fn pad(&mut self, n: u64) {
        self.out.extend(std::iter::repeat_n(0u8, pad4(n) as usize));
    }

    fn name(&mut self, name: &str) -> WResult<()> {
        self.non_neg(name.len() as u64, "name length")?;
        self.out.extend_from_slice(name.as_bytes());
        self.pad(name.len() as u64);
        Ok(())
    }

    fn list(&mut self, tag: u32, n: usize) -> WResult<()> {
        if n == 0 {
            self.u32(0);
            self.non_neg(0, "count")
        } else {
            self.u32(tag);
            self.non_neg(n as u64, "count")
        }
    }

    fn nc_type(&mut self, t: NcType) -> WResult<()> {
        check_type(t, self.format)?;
        self.u32(t.code());
        Ok(())
    }

    fn attrs(&mut self, attrs: &[NcAttr]) -> WResult<()> {
        self.list(NC_ATTRIBUTE, attrs.len())?;
        for a in attrs {
            self.name(&a.name)?;
            self.nc_type(a.value.nc_type())?;
            self.non_neg(a.value.len() as u64, "attribute length")?;
            let start = self.out.len();
            encode(&a.value, &mut self.out);
            let n = (self.out.len() - start) as u64;
            self.pad(n);
        }
        Ok(())
    }
}

fn check_type(t: NcType, format: NcFormat) -> WResult<()> {
    let ok = match format {
        NcFormat::Classic | NcFormat::Offset64 => t.is_classic(),
        NcFormat::Cdf5 => t != NcType::String,
        NcFormat::Netcdf4 => false,
    };
    if ok {
        Ok(())
    } else {
        invalid(format!("type {t} cannot be stored in the {format} format"))
    }
}

/// Appends the big-endian bytes of `v`.
pub(crate) fn encode(v: &NcValues, out: &mut Vec<u8>) {
    macro_rules! be {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_be_bytes());
            }
        };
    }
    match v {
        NcValues::Byte(v) => out.extend(v.iter().map(|&b| b as u8)),
        NcValues::Char(v) | NcValues::UByte(v) => out.extend_from_slice(v),
        NcValues::Short(v) => be!(v),
        NcValues::UShort(v) => be!(v),
        NcValues::Int(v) => be!(v),
        NcValues::UInt(v) => be!(v),
        NcValues::Float(v) => be!(v),
        NcValues::Double(v) => be!(v),
        NcValues::Int64(v) => be!(v),
        NcValues::UInt64(v) => be!(v),
        NcValues::String(_) => {}
    }
}

/// Serialises `f` as a CDF1 (`Classic`), CDF2 (`Offset64`) or CDF5 file.
pub(crate) fn write(f: &NcFile, format: NcFormat, out: &mut impl Write) -> WResult<()> {
    if format == NcFormat::Netcdf4 {
        return invalid("netcdf4 is not a classic format");
    }
    // Validate the model.
    let unlimited: Vec<usize> = (0..f.dims.len()).filter(|&d| f.dims[d].unlimited).collect();
    if unlimited.len() > 1 {
        return invalid("more than one unlimited dimension");
    }
    let numrecs = unlimited.first().map_or(0, |&d| f.dims[d].len);
    let mut is_rec = Vec::with_capacity(f.vars.len());
    let mut slabs = Vec::with_capacity(f.vars.len());
    for v in &f.vars {
        check_type(v.nc_type(), format)?;
        for (i, &d) in v.dims.iter().enumerate() {
            if d >= f.dims.len() {
                return invalid(format!("variable {:?} has an unknown dimension", v.name));
            }
            if f.dims[d].unlimited && i > 0 {
                return invalid(format!(
                    "variable {:?} uses the unlimited dimension other than first",
                    v.name
                ));
            }
        }
        let rec = v.dims.first().is_some_and(|&d| f.dims[d].unlimited);
        let skip = usize::from(rec);
        let cells = v.dims[skip..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(f.dims[d].len));
        let Some(cells) = cells else {
            return invalid(format!("variable {:?} is too large", v.name));
        };
        let total = if rec { cells * numrecs } else { cells };
        if v.values.len() as u64 != total {
            return invalid(format!(
                "variable {:?} has {} values for {} cells",
                v.name,
                v.values.len(),
                total
            ));
        }
        is_rec.push(rec);
        slabs.push(cells * v.nc_type().size().unwrap_or(1) as u64);
    }
    let n_rec = is_rec.iter().filter(|&&r| r).count();
    let padded_sum: u64 = is_rec
        .iter()
        .zip(&slabs)
        .filter(|(r, _)| **r)
        .map(|(_, s)| s + pad4(*s))
        .sum();
    let first_slab = is_rec
        .iter()
        .zip(&slabs)
        .find(|(r, _)| **r)
        .map(|(_, s)| *s);
    // The format's special case (as the C library decides it): when the first
    // record variable is the only one with data, records are not padded.
    let packed = first_slab.is_some_and(|s| padded_sum == s + pad4(s));
    let recsize = if packed {
        first_slab.unwrap_or(0)
    } else {
        padded_sum
    };

    // The header's length does not depend on the offsets it holds, so encode
    // it once with zero offsets to learn where data starts.
    let header = |begins: &[u64]| -> WResult<Vec<u8>> {
        let mut e = Enc {
            out: Vec::new(),
            format,
        };
        e.out.extend_from_slice(b"CDF");
        e.out.push(match format {
            NcFormat::Classic => 1,
            NcFormat::Offset64 => 2,
            _ => 5,
        });
        e.non_neg(numrecs, "record count")?;
        e.list(NC_DIMENSION, f.dims.len())?;
        for d in &f.dims {
            e.name(&d.name)?;
            e.non_neg(if d.unlimited { 0 } else { d.len }, "dimension length")?;
        }
        e.attrs(&f.attrs)?;
        e.list(NC_VARIABLE, f.vars.len())?;
        for (i, v) in f.vars.iter().enumerate() {
            e.name(&v.name)?;
            e.non_neg(v.dims.len() as u64, "rank")?;
            for &d in &v.dims {
                e.non_neg(d as u64, "dimension id")?;
            }
            e.attrs(&v.attrs)?;
            e.nc_type(v.nc_type())?;
            let vsize = slabs[i] + pad4(slabs[i]);
            if e.wide() {
                e.non_neg(vsize, "variable size")?;
            } else {
                // Variables of 4 GiB and more record 2^32-1, as the C library does.
                e.u32(u32::try_from(vsize).unwrap_or(u32::MAX));
            }
            if format == NcFormat::Classic {
                let Ok(b) = u32::try_from(begins[i]) else {
                    return invalid("data beyond 4 GiB needs the 64bit_offset format");
                };
                if b > i32::MAX as u32 {
                    return invalid("data beyond 2 GiB needs the 64bit_offset format");
                }
                e.u32(b);
            } else {
                e.out.extend_from_slice(&begins[i].to_be_bytes());
            }
        }
        Ok(e.out)
    };
    let header_len = header(&vec![0; f.vars.len()])?.len() as u64;
    let mut begins = vec![0u64; f.vars.len()];
    let mut at = header_len;
    for (i, s) in slabs.iter().enumerate() {
        if !is_rec[i] {
            begins[i] = at;
            at += s + pad4(*s);
        }
    }
    let mut rec_at = at;
    for (i, s) in slabs.iter().enumerate() {
        if is_rec[i] {
            begins[i] = rec_at;
            rec_at += s + pad4(*s);
        }
    }
    out.write_all(&header(&begins)?)?;

    let mut buf = Vec::new();
    for (i, v) in f.vars.iter().enumerate() {
        if !is_rec[i] {
            buf.clear();
            encode(&v.values, &mut buf);
            let n = buf.len() as u64;
            buf.extend(std::iter::repeat_n(0u8, pad4(n) as usize));
            out.write_all(&buf)?;
        }
    }
    if n_rec > 0 {
        let mut encoded: Vec<(usize, Vec<u8>)> = Vec::with_capacity(n_rec);
        for (i, v) in f.vars.iter().enumerate() {
            if is_rec[i] {
                let mut b = Vec::new();
                encode(&v.values, &mut b);
                encoded.push((slabs[i] as usize, b));
            }
        }
        let mut record = Vec::with_capacity(recsize as usize);
        for r in 0..numrecs as usize {
            record.clear();
            for (slab, bytes) in &encoded {
                record.extend_from_slice(&bytes[r * slab..(r + 1) * slab]);
                if !packed {
                    record.extend(std::iter::repeat_n(0u8, pad4(*slab as u64) as usize));
                }
            }
            out.write_all(&record)?;
        }
    }
    Ok(())
}
