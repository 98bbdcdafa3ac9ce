//! Format-1 footer decoding (one body holding every record), and the record
//! encoding and bounds-checked decoding both footer formats share.

use std::path::Path;
use std::sync::Arc;

use super::{ArrayRecord, ChunkEntry, Footer, RecordKind};
use crate::dtype::{DType, FillValue, StatValue, TimestampNs};
use crate::element::fixed_raw_len;
use crate::error::{Error, Result};
use crate::schema::{ArraySchema, MAX_CHUNK_BYTES, MAX_RANK};
use crate::stats::ChunkStats;

/// Smallest possible encoded chunk entry: idx, offset, stored, raw (4×8), codec,
/// filter (2), crc (4), null count (8), has-min/max flag (1).
const MIN_CHUNK_ENTRY: usize = 47;
/// Smallest possible record: name length (4) + kind (1).
pub(super) const MIN_RECORD: usize = 5;

/// A little-endian encoder.
pub(super) struct Out(pub(super) Vec<u8>);

impl Out {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn str(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).expect("names are validated to be short"));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn fill(&mut self, f: &FillValue) {
        match f {
            FillValue::Bool(v) => self.u8(u8::from(*v)),
            FillValue::Int8(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::Int16(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::Int32(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::Int64(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::UInt8(v) => self.u8(*v),
            FillValue::UInt16(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::UInt32(v) => self.u32(*v),
            FillValue::UInt64(v) => self.u64(*v),
            FillValue::Float32(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::Float64(v) => self.0.extend_from_slice(&v.to_le_bytes()),
            FillValue::String(v) => self.str(v),
            FillValue::Timestamp(v) => self.0.extend_from_slice(&v.0.to_le_bytes()),
        }
    }
    fn stat(&mut self, v: &StatValue) {
        match v {
            StatValue::Bool(b) => self.u8(u8::from(*b)),
            StatValue::Int(i) => self.0.extend_from_slice(&i.to_le_bytes()),
            StatValue::UInt(u) => self.u64(*u),
            StatValue::Float(f) => self.0.extend_from_slice(&f.to_le_bytes()),
            StatValue::Str(s) => self.str(s),
            StatValue::Timestamp(t) => self.0.extend_from_slice(&t.0.to_le_bytes()),
        }
    }
}

/// Encodes a format-1 footer body (without the trailer). This build writes
/// format 2; the format-1 encoder is kept to test the format-1 decoder.
#[cfg(test)]
pub(crate) fn encode_footer(footer: &Footer) -> Vec<u8> {
    let mut o = Out(Vec::new());
    o.0.extend_from_slice(&footer.uid.to_le_bytes());
    o.u32(u32::try_from(footer.records.len()).expect("fewer than 2^32 arrays per layer"));
    for r in &footer.records {
        encode_record(&mut o, r);
    }
    o.0
}

/// Appends one record (name, kind, schema, chunk entries).
pub(super) fn encode_record(o: &mut Out, r: &ArrayRecord) {
    o.str(&r.name);
    o.u8(r.kind.code());
    let Some(s) = &r.schema else { return };
    o.u8(s.dtype.code());
    o.u32(s.rank() as u32);
    for d in &s.dims {
        o.str(d);
    }
    for &x in &s.shape {
        o.u64(x);
    }
    for &x in &s.chunk_shape {
        o.u64(x);
    }
    match &s.fill_value {
        None => o.u8(0),
        Some(f) => {
            o.u8(1);
            o.fill(f);
        }
    }
    o.u64(r.chunks.len() as u64);
    for c in &r.chunks {
        o.u64(c.chunk_idx);
        o.u64(c.offset);
        o.u64(c.stored_len);
        o.u64(c.raw_len);
        o.u8(c.codec);
        o.u8(c.filter);
        o.u32(c.crc);
        o.u64(c.stats.null_count);
        match (&c.stats.min, &c.stats.max) {
            (Some(lo), Some(hi)) => {
                o.u8(1);
                o.stat(lo);
                o.stat(hi);
            }
            _ => o.u8(0),
        }
    }
}

/// A bounds-checked little-endian decoder over one footer region.
pub(super) struct In<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    /// File offset of `buf[0]`, for error messages.
    pub(super) base: u64,
    pub(super) path: &'a Path,
}

impl<'a> In<'a> {
    pub(super) fn err(&self, reason: impl Into<String>) -> Error {
        // Saturating: `base` comes from the file (a hostile one may be near 2^64).
        Error::corrupt(self.path, self.base.saturating_add(self.pos as u64), reason)
    }
    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!("footer ends inside a field of {n} bytes")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(super) fn arr<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("exact length"))
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    pub(super) fn str(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| self.err("string is not UTF-8"))
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.err(format!("boolean byte {b}"))),
        }
    }
    fn fill(&mut self, dtype: DType) -> Result<FillValue> {
        Ok(match dtype {
            DType::Bool => FillValue::Bool(self.bool()?),
            DType::Int8 => FillValue::Int8(i8::from_le_bytes(self.arr()?)),
            DType::Int16 => FillValue::Int16(i16::from_le_bytes(self.arr()?)),
            DType::Int32 => FillValue::Int32(i32::from_le_bytes(self.arr()?)),
            DType::Int64 => FillValue::Int64(i64::from_le_bytes(self.arr()?)),
            DType::UInt8 => FillValue::UInt8(self.u8()?),
            DType::UInt16 => FillValue::UInt16(u16::from_le_bytes(self.arr()?)),
            DType::UInt32 => FillValue::UInt32(self.u32()?),
            DType::UInt64 => FillValue::UInt64(self.u64()?),
            DType::Float32 => FillValue::Float32(f32::from_le_bytes(self.arr()?)),
            DType::Float64 => FillValue::Float64(f64::from_le_bytes(self.arr()?)),
            DType::String => FillValue::String(self.str()?),
            DType::Timestamp => FillValue::Timestamp(TimestampNs(i64::from_le_bytes(self.arr()?))),
        })
    }
    fn stat(&mut self, dtype: DType) -> Result<StatValue> {
        Ok(match dtype {
            DType::Bool => StatValue::Bool(self.bool()?),
            DType::Int8 | DType::Int16 | DType::Int32 | DType::Int64 => {
                StatValue::Int(i64::from_le_bytes(self.arr()?))
            }
            DType::UInt8 | DType::UInt16 | DType::UInt32 | DType::UInt64 => {
                StatValue::UInt(self.u64()?)
            }
            DType::Float32 | DType::Float64 => StatValue::Float(f64::from_le_bytes(self.arr()?)),
            DType::String => StatValue::Str(self.str()?),
            DType::Timestamp => StatValue::Timestamp(TimestampNs(i64::from_le_bytes(self.arr()?))),
        })
    }
}

/// Decodes a format-1 footer body; `base` is its file offset (for error messages).
pub(crate) fn decode_footer(buf: &[u8], base: u64, path: &Path) -> Result<Footer> {
    let mut i = In {
        buf,
        pos: 0,
        base,
        path,
    };
    let uid = u128::from_le_bytes(i.arr()?);
    let n_records = i.u32()? as usize;
    if n_records > i.remaining() / MIN_RECORD {
        return Err(i.err(format!("{n_records} records cannot fit in the footer")));
    }
    let mut records = Vec::with_capacity(n_records);
    let mut memo = SchemaMemo::default();
    for _ in 0..n_records {
        records.push(decode_record(&mut i, Some(&mut memo))?);
    }
    if i.remaining() != 0 {
        return Err(i.err("trailing bytes after the last record"));
    }
    Ok(Footer { uid, records })
}

pub(super) fn decode_record(
    i: &mut In<'_>,
    mut memo: Option<&mut SchemaMemo>,
) -> Result<ArrayRecord> {
    let name = i.str()?;
    crate::schema::validate_array_name(&name).map_err(|_| i.err("invalid array name"))?;
    let kind_code = i.u8()?;
    let kind = RecordKind::from_code(kind_code)
        .ok_or_else(|| i.err(format!("unknown record kind {kind_code}")))?;
    if kind == RecordKind::Delete {
        return Ok(ArrayRecord {
            name,
            kind,
            schema: None,
            chunks: Vec::new(),
        });
    }
    let at = i.pos;
    let schema = if let Some(schema) = memo.as_deref_mut().and_then(|m| m.reuse(i)) {
        schema
    } else {
        i.pos = at;
        let schema = Arc::new(decode_schema(i, &name)?);
        if let Some(m) = memo {
            m.remember(&i.buf[at..i.pos], &schema);
        }
        schema
    };
    let dtype = schema.dtype;
    let n_chunks = i.u64()?;
    if n_chunks > (i.remaining() / MIN_CHUNK_ENTRY) as u64 || n_chunks > schema.n_chunks() {
        return Err(i.err(format!("{n_chunks} chunk entries cannot fit")));
    }
    let mut chunks: Vec<ChunkEntry> = Vec::with_capacity(n_chunks as usize);
    for _ in 0..n_chunks {
        let at = i.pos;
        let chunk_idx = i.u64()?;
        let offset = i.u64()?;
        let stored_len = i.u64()?;
        let raw_len = i.u64()?;
        let codec = i.u8()?;
        let filter = i.u8()?;
        let crc = i.u32()?;
        let null_count = i.u64()?;
        let (min, max) = if i.bool()? {
            (Some(i.stat(dtype)?), Some(i.stat(dtype)?))
        } else {
            (None, None)
        };
        let bad = |reason: String| Error::corrupt(i.path, i.base.saturating_add(at as u64), reason);
        if chunk_idx >= schema.n_chunks() || chunks.last().is_some_and(|p| p.chunk_idx >= chunk_idx)
        {
            return Err(bad(format!(
                "chunk index {chunk_idx} out of order or out of range"
            )));
        }
        let cells = schema.chunk_cells(chunk_idx);
        let raw_ok = match fixed_raw_len(dtype, cells) {
            Some(expected) => raw_len == expected,
            None => raw_len >= cells.saturating_mul(4) && raw_len <= MAX_CHUNK_BYTES,
        };
        if !raw_ok {
            return Err(bad(format!(
                "raw length {raw_len} does not fit {cells} cells of {dtype}"
            )));
        }
        if crate::codec::Codec::name_of_id(codec).is_none() {
            return Err(bad(format!("unknown codec id {codec}")));
        }
        if null_count > cells {
            return Err(bad(format!(
                "{null_count} nulls in a chunk of {cells} cells"
            )));
        }
        chunks.push(ChunkEntry {
            chunk_idx,
            offset,
            stored_len,
            raw_len,
            codec,
            filter,
            crc,
            stats: ChunkStats {
                null_count,
                min,
                max,
            },
        });
    }
    Ok(ArrayRecord {
        name,
        kind,
        schema: Some(schema),
        chunks,
    })
}

/// Decodes a record's schema (after its kind) and checks it.
fn decode_schema(i: &mut In<'_>, name: &str) -> Result<ArraySchema> {
    let dcode = i.u8()?;
    let dtype =
        DType::from_code(dcode).ok_or_else(|| i.err(format!("unknown dtype code {dcode}")))?;
    let rank = i.u32()? as usize;
    if rank > MAX_RANK {
        return Err(i.err(format!("rank {rank} exceeds {MAX_RANK}")));
    }
    let dims = (0..rank).map(|_| i.str()).collect::<Result<Vec<_>>>()?;
    let shape = (0..rank).map(|_| i.u64()).collect::<Result<Vec<_>>>()?;
    let chunk_shape = (0..rank).map(|_| i.u64()).collect::<Result<Vec<_>>>()?;
    let fill = if i.bool()? {
        Some(i.fill(dtype)?)
    } else {
        None
    };
    ArraySchema::new(name, dtype, dims, shape, Some(chunk_shape), fill)
        .map_err(|e| i.err(format!("invalid schema: {e}")))
}

/// The last schema a run of [`decode_record`] calls decoded, with its
/// encoded bytes: a record whose schema is encoded in the same bytes
/// shares it (one `Arc`, nothing allocated or checked again), as the
/// records of one footer block mostly do. Identical bytes decode to the
/// same schema, so the records are those a fresh decoding gives.
#[derive(Default)]
pub(super) struct SchemaMemo {
    bytes: Vec<u8>,
    schema: Option<Arc<ArraySchema>>,
}

impl SchemaMemo {
    /// The remembered schema when the schema at `i` is encoded in the same
    /// bytes, `i` then past it; `None` otherwise (`i` anywhere: the caller
    /// rewinds and decodes).
    fn reuse(&self, i: &mut In<'_>) -> Option<Arc<ArraySchema>> {
        let schema = self.schema.as_ref()?;
        let bytes = i.take(self.bytes.len()).ok()?;
        (bytes == self.bytes.as_slice()).then(|| Arc::clone(schema))
    }

    fn remember(&mut self, bytes: &[u8], schema: &Arc<ArraySchema>) {
        self.bytes.clear();
        self.bytes.extend_from_slice(bytes);
        self.schema = Some(Arc::clone(schema));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        let schema = ArraySchema::new(
            "ds1",
            DType::Float32,
            vec!["x".into(), "y".into()],
            vec![4, 6],
            Some(vec![2, 3]),
            Some(FillValue::Float32(f32::NAN)),
        )
        .unwrap();
        Footer {
            uid: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            records: vec![
                ArrayRecord {
                    name: "ds1".into(),
                    kind: RecordKind::Define,
                    schema: Some(std::sync::Arc::new(schema)),
                    chunks: vec![ChunkEntry {
                        chunk_idx: 3,
                        offset: 32,
                        stored_len: 10,
                        raw_len: 24,
                        codec: 1,
                        filter: 1,
                        crc: 7,
                        stats: ChunkStats {
                            null_count: 1,
                            min: Some(StatValue::Float(-1.5)),
                            max: Some(StatValue::Float(2.0)),
                        },
                    }],
                },
                ArrayRecord {
                    name: "gone".into(),
                    kind: RecordKind::Delete,
                    schema: None,
                    chunks: vec![],
                },
            ],
        }
    }

    #[test]
    fn footer_round_trips() {
        let f = sample();
        let bytes = encode_footer(&f);
        let back = decode_footer(&bytes, 0, Path::new("x")).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn every_truncation_of_a_footer_is_an_error() {
        let bytes = encode_footer(&sample());
        for cut in 0..bytes.len() {
            assert!(
                decode_footer(&bytes[..cut], 0, Path::new("x")).is_err(),
                "cut at {cut}"
            );
        }
    }
}
