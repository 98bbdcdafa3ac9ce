//! The format-2 footer: records sorted by name in CRC-checked blocks of about
//! [`TARGET_BLOCK_BYTES`], and a small index (per block: offset, length, CRC,
//! record count, first and last name) that opening reads. Looking a name up
//! reads and decodes one block; listing every record decodes them all and
//! restores the order the writer emitted them in from each record's sequence
//! number.
//!
//! ```text
//! footer := block* index                  (the trailer points at the index)
//! index  := uid u128 | n_records u32 | data_end u64 | n_blocks u32 | block_ref*
//! block_ref := offset u64 | len u32 | crc u32 | n_records u32 | first str | last str
//! block  := n u32 | rec_offset u32 × n | (seq u32 | record) × n
//! ```
//!
//! **Invariant:** every count, offset and length is checked against the bytes
//! that hold it before it drives a loop or an allocation; a block's records
//! are checked against its index entry (count, first and last name), so a
//! block read at the wrong place is an error, not another block's records.

use std::path::Path;

use super::codec::{decode_record, encode_record, In, Out, SchemaMemo, MIN_RECORD};
use super::{ArrayRecord, HEADER_LEN};
use crate::error::{Error, Result};

/// A block is closed once its records reach this many encoded bytes (a single
/// record larger than this is a block of its own).
pub(crate) const TARGET_BLOCK_BYTES: usize = 64 << 10;

/// Smallest encoded block reference: offset, len, crc, count, two names of one byte.
const MIN_BLOCK_REF: usize = 8 + 4 + 4 + 4 + 2 * (4 + 1);
/// Smallest share of a block one record takes: its offset, its sequence number
/// and the smallest record.
const MIN_BLOCK_RECORD: usize = 4 + 4 + MIN_RECORD;
/// Fixed part of the index: uid, record count, data end, block count.
const INDEX_FIXED: usize = 16 + 4 + 8 + 4;

/// Where one footer block lives and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
    pub n_records: u32,
    /// The smallest name in the block.
    pub first: String,
    /// The largest name in the block.
    pub last: String,
}

/// The decoded index of a format-2 footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FooterIndex {
    pub uid: u128,
    /// Records in the layer (every block's together).
    pub n_records: u32,
    /// End of the data area: chunk blocks lie in `[HEADER_LEN, data_end)`,
    /// footer blocks start here.
    pub data_end: u64,
    /// Sorted by name; contiguous from `data_end` to the index.
    pub blocks: Vec<BlockRef>,
}

impl FooterIndex {
    /// The block that would hold `name`, if any block's name range covers it.
    pub(crate) fn block_for(&self, name: &str) -> Option<usize> {
        let i = self.blocks.partition_point(|b| b.last.as_str() < name);
        (i < self.blocks.len() && self.blocks[i].first.as_str() <= name).then_some(i)
    }
}

/// One encoded footer block and what its index entry says about it (the
/// offset is the writer's to give).
pub(crate) struct EncodedBlock {
    pub bytes: Vec<u8>,
    pub n_records: u32,
    pub first: String,
    pub last: String,
}

impl EncodedBlock {
    /// Its index entry once placed at `offset`.
    pub(crate) fn block_ref(&self, offset: u64) -> BlockRef {
        BlockRef {
            offset,
            len: u32::try_from(self.bytes.len()).expect("blocks are smaller than 4 GiB"),
            crc: crc32c::crc32c(&self.bytes),
            n_records: self.n_records,
            first: self.first.clone(),
            last: self.last.clone(),
        }
    }
}

/// Groups records pushed in increasing name order into footer blocks of
/// about [`TARGET_BLOCK_BYTES`]: the only state is the open block, so a
/// footer of any size is encoded in bounded memory.
#[derive(Default)]
pub(crate) struct BlockEncoder {
    /// The open block's records, encoded back to back (one buffer, not a
    /// vector per record: with a fresh vector per record, encoding W1's
    /// footers took 106 M instructions against 42 M now).
    data: Vec<u8>,
    /// Where each record starts in `data`.
    starts: Vec<usize>,
    first: String,
    last: String,
}

impl BlockEncoder {
    /// Adds one record with its sequence number; returns the block it closed, if any.
    pub(crate) fn push(&mut self, seq: u32, rec: &ArrayRecord) -> Option<EncodedBlock> {
        debug_assert!(
            self.starts.is_empty() || self.last < rec.name,
            "records come in increasing name order"
        );
        let start = self.data.len();
        let mut o = Out(std::mem::take(&mut self.data));
        o.u32(seq);
        encode_record(&mut o, rec);
        self.data = o.0;
        if self.starts.is_empty() {
            self.first.clone_from(&rec.name);
        }
        self.last.clone_from(&rec.name);
        self.starts.push(start);
        // The block's size once closed, but for its 4-byte record count.
        let bytes = self.data.len() + 4 * self.starts.len();
        (bytes >= TARGET_BLOCK_BYTES).then(|| self.close())
    }

    /// Closes the last block, if it holds any record.
    pub(crate) fn finish(&mut self) -> Option<EncodedBlock> {
        (!self.starts.is_empty()).then(|| self.close())
    }

    fn close(&mut self) -> EncodedBlock {
        let n = self.starts.len();
        let head = 4 + 4 * n;
        let mut o = Out(Vec::with_capacity(head + self.data.len()));
        o.u32(u32::try_from(n).expect("block record counts fit u32"));
        for &at in &self.starts {
            o.u32(u32::try_from(head + at).expect("blocks are smaller than 4 GiB"));
        }
        o.0.extend_from_slice(&self.data);
        self.data.clear();
        self.starts.clear();
        EncodedBlock {
            bytes: o.0,
            n_records: n as u32,
            first: std::mem::take(&mut self.first),
            last: std::mem::take(&mut self.last),
        }
    }
}

/// Rewrites the sequence number of every record of a block this build
/// encoded (through [`BlockEncoder`]) as `map(old)`.
pub(crate) fn map_seqs(block: &mut [u8], map: impl Fn(u32) -> u32) {
    let word = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let n = word(block, 0) as usize;
    for k in 0..n {
        let at = word(block, 4 + 4 * k) as usize;
        let seq = map(word(block, at));
        block[at..at + 4].copy_from_slice(&seq.to_le_bytes());
    }
}

/// Encodes `records` (in the order the writer emitted them) as footer blocks
/// starting at file offset `data_end`, and the index describing them.
pub(crate) fn encode_blocked(
    records: &[ArrayRecord],
    uid: u128,
    data_end: u64,
) -> (Vec<Vec<u8>>, FooterIndex) {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| records[a].name.cmp(&records[b].name));
    debug_assert!(
        order
            .windows(2)
            .all(|w| records[w[0]].name < records[w[1]].name),
        "names are unique within a layer"
    );
    let mut blocks = Vec::new();
    let mut refs = Vec::new();
    let mut offset = data_end;
    let mut encoder = BlockEncoder::default();
    let mut place = |b: EncodedBlock| {
        let r = b.block_ref(offset);
        offset += u64::from(r.len);
        refs.push(r);
        blocks.push(b.bytes);
    };
    for &i in &order {
        let seq = u32::try_from(i).expect("fewer than 2^32 arrays per layer");
        if let Some(b) = encoder.push(seq, &records[i]) {
            place(b);
        }
    }
    if let Some(b) = encoder.finish() {
        place(b);
    }
    let index = FooterIndex {
        uid,
        n_records: u32::try_from(records.len()).expect("fewer than 2^32 arrays per layer"),
        data_end,
        blocks: refs,
    };
    (blocks, index)
}

/// Encodes the index (its CRC goes in the trailer).
pub(crate) fn encode_index(index: &FooterIndex) -> Vec<u8> {
    let mut o = Out(Vec::new());
    o.0.extend_from_slice(&index.uid.to_le_bytes());
    o.u32(index.n_records);
    o.u64(index.data_end);
    o.u32(u32::try_from(index.blocks.len()).expect("fewer than 2^32 blocks"));
    for b in &index.blocks {
        o.u64(b.offset);
        o.u32(b.len);
        o.u32(b.crc);
        o.u32(b.n_records);
        o.str(&b.first);
        o.str(&b.last);
    }
    o.0
}

/// Decodes and checks an index read from `index_offset` (where the blocks must
/// end). Block contents are not read here.
pub(crate) fn decode_index(buf: &[u8], index_offset: u64, path: &Path) -> Result<FooterIndex> {
    let mut i = In {
        buf,
        pos: 0,
        base: index_offset,
        path,
    };
    if buf.len() < INDEX_FIXED {
        return Err(i.err(format!("index of {} bytes is too short", buf.len())));
    }
    let uid = u128::from_le_bytes(i.arr()?);
    let n_records = i.u32()?;
    let data_end = i.u64()?;
    let n_blocks = i.u32()? as usize;
    if n_blocks > i.remaining() / MIN_BLOCK_REF {
        return Err(i.err(format!("{n_blocks} blocks cannot fit in the index")));
    }
    if data_end < HEADER_LEN || data_end > index_offset {
        return Err(i.err(format!(
            "data area ends at {data_end}, outside the file before the index at {index_offset}"
        )));
    }
    let mut blocks: Vec<BlockRef> = Vec::with_capacity(n_blocks);
    let mut at = data_end;
    let mut total: u64 = 0;
    for _ in 0..n_blocks {
        let start = i.pos;
        let b = BlockRef {
            offset: i.u64()?,
            len: i.u32()?,
            crc: i.u32()?,
            n_records: i.u32()?,
            first: i.str()?,
            last: i.str()?,
        };
        let bad = |reason: String| {
            Error::corrupt(path, index_offset.saturating_add(start as u64), reason)
        };
        if b.offset != at {
            return Err(bad(format!(
                "footer block at {} does not follow the previous one (at {at})",
                b.offset
            )));
        }
        at = at
            .checked_add(u64::from(b.len))
            .filter(|&e| e <= index_offset)
            .ok_or_else(|| {
                bad(format!(
                    "footer block of {} bytes overruns the index",
                    b.len
                ))
            })?;
        if b.n_records == 0
            || b.n_records as usize > (b.len as usize).saturating_sub(4) / MIN_BLOCK_RECORD
        {
            return Err(bad(format!(
                "{} records cannot fit in a footer block of {} bytes",
                b.n_records, b.len
            )));
        }
        for n in [&b.first, &b.last] {
            crate::schema::validate_array_name(n)
                .map_err(|_| bad(format!("invalid array name {n:?} in the index")))?;
        }
        let ordered = b.first <= b.last
            && blocks.last().is_none_or(|p| p.last < b.first)
            && (b.n_records > 1 || b.first == b.last);
        if !ordered {
            return Err(bad("footer block names out of order".into()));
        }
        total += u64::from(b.n_records);
        blocks.push(b);
    }
    if i.remaining() != 0 {
        return Err(i.err("trailing bytes after the last block reference"));
    }
    if at != index_offset {
        return Err(i.err(format!(
            "footer blocks end at {at}, not at the index ({index_offset})"
        )));
    }
    if total != u64::from(n_records) {
        return Err(i.err(format!(
            "the index counts {n_records} records but its blocks hold {total}"
        )));
    }
    Ok(FooterIndex {
        uid,
        n_records,
        data_end,
        blocks,
    })
}

/// A footer block's record table, checked against its index entry.
struct BlockTable<'a> {
    bytes: &'a [u8],
    /// Records in the block.
    n: usize,
}

impl BlockTable<'_> {
    /// Start of record `k` within the block; the block's length for `k == n`.
    /// Read from the offset table, which [`block_table`] checked.
    fn start(&self, k: usize) -> usize {
        if k == self.n {
            return self.bytes.len();
        }
        let at = 4 + 4 * k;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    fn span(&self, k: usize) -> (usize, usize) {
        (self.start(k), self.start(k + 1))
    }

    /// The name bytes of record `k`, without decoding the rest.
    fn name(&self, k: usize) -> Option<&[u8]> {
        let (start, end) = self.span(k);
        let rec = &self.bytes[start..end];
        let len = u32::from_le_bytes(rec.get(4..8)?.try_into().ok()?) as usize;
        rec.get(8..8usize.checked_add(len)?)
    }
}

/// A block's record table, after checking the block's checksum, its record
/// count and that its record offsets are in order and inside it. With
/// `checked`, these exact bytes passed those checks before (see
/// [`crate::layer::Layer`]'s memo), and only the record count is read.
fn block_table<'a>(
    bytes: &'a [u8],
    b: &BlockRef,
    path: &Path,
    checked: bool,
) -> Result<BlockTable<'a>> {
    let bad = |at: usize, reason: String| Error::corrupt(path, b.offset + at as u64, reason);
    if checked {
        return Ok(BlockTable {
            bytes,
            n: b.n_records as usize,
        });
    }
    if bytes.len() != b.len as usize || crc32c::crc32c(bytes) != b.crc {
        return Err(bad(0, "footer block checksum mismatch".into()));
    }
    let head = bytes
        .get(..4)
        .ok_or_else(|| bad(0, "footer block too short".into()))?;
    let n = u32::from_le_bytes(head.try_into().expect("4 bytes"));
    if n != b.n_records {
        return Err(bad(
            0,
            format!(
                "footer block holds {n} records, its index entry {}",
                b.n_records
            ),
        ));
    }
    // `n` was checked against the block length when the index was decoded.
    let n = n as usize;
    let table_end = 4 + 4 * n;
    let mut prev = 0;
    for k in 0..n {
        let at = 4 + 4 * k;
        let s = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let ok = if k == 0 {
            s == table_end
        } else {
            s >= prev + MIN_BLOCK_RECORD - 4
        };
        if !ok || s > bytes.len() {
            return Err(bad(
                at,
                format!("record offset {s} out of order or outside the block"),
            ));
        }
        prev = s;
    }
    Ok(BlockTable { bytes, n })
}

/// Decodes record `k` of a block: its sequence number and the record, whose
/// chunks must lie in the data area.
fn decode_at(
    t: &BlockTable<'_>,
    k: usize,
    b: &BlockRef,
    n_records: u32,
    data_end: u64,
    path: &Path,
    memo: Option<&mut SchemaMemo>,
) -> Result<(u32, ArrayRecord)> {
    let (start, end) = t.span(k);
    let mut i = In {
        buf: &t.bytes[start..end],
        pos: 0,
        base: b.offset + start as u64,
        path,
    };
    let seq = i.u32()?;
    if seq >= n_records {
        return Err(i.err(format!("sequence number {seq} of {n_records} records")));
    }
    let rec = decode_record(&mut i, memo)?;
    if i.remaining() != 0 {
        return Err(i.err("trailing bytes after a record"));
    }
    check_extents(&rec, data_end, path, i.base)?;
    Ok((seq, rec))
}

/// Every chunk of `rec` must lie between the header and `data_end`.
pub(crate) fn check_extents(rec: &ArrayRecord, data_end: u64, path: &Path, at: u64) -> Result<()> {
    for c in &rec.chunks {
        let end = c.offset.checked_add(c.stored_len);
        if c.offset < HEADER_LEN || end.is_none_or(|e| e > data_end) {
            return Err(Error::corrupt(
                path,
                at,
                format!(
                    "chunk {} of {:?} points outside the data area ({}+{})",
                    c.chunk_idx, rec.name, c.offset, c.stored_len
                ),
            ));
        }
    }
    Ok(())
}

/// The record named `name` in a block's bytes (binary search over the names,
/// then one record decoded), or `None`. `checked`: these exact bytes passed
/// [`block_table`]'s checks before (the record found is decoded and checked
/// all the same).
pub(crate) fn find_in_block(
    bytes: &[u8],
    index: &FooterIndex,
    block: usize,
    name: &str,
    path: &Path,
    checked: bool,
) -> Result<Option<ArrayRecord>> {
    let b = &index.blocks[block];
    let t = block_table(bytes, b, path, checked)?;
    let (mut lo, mut hi) = (0, b.n_records as usize);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let here = t.name(mid).ok_or_else(|| {
            Error::corrupt(
                path,
                b.offset + t.span(mid).0 as u64,
                "record name outside its record",
            )
        })?;
        match here.cmp(name.as_bytes()) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let (_, rec) = decode_at(&t, mid, b, index.n_records, index.data_end, path, None)?;
                return Ok(Some(rec));
            }
        }
    }
    Ok(None)
}

/// Every record of a block with its sequence number, checked to be sorted by
/// name and to match the block's index entry.
pub(crate) fn decode_block_records(
    bytes: &[u8],
    index: &FooterIndex,
    block: usize,
    path: &Path,
) -> Result<Vec<(u32, ArrayRecord)>> {
    let b = &index.blocks[block];
    let t = block_table(bytes, b, path, false)?;
    let mut out: Vec<(u32, ArrayRecord)> = Vec::with_capacity(b.n_records as usize);
    let mut memo = SchemaMemo::default();
    for k in 0..b.n_records as usize {
        let (seq, rec) = decode_at(
            &t,
            k,
            b,
            index.n_records,
            index.data_end,
            path,
            Some(&mut memo),
        )?;
        let in_order = match out.last() {
            None => rec.name == b.first,
            Some((_, prev)) => prev.name < rec.name,
        };
        if !in_order || rec.name > b.last {
            return Err(Error::corrupt(
                path,
                b.offset + t.span(k).0 as u64,
                format!("record {:?} out of order in its footer block", rec.name),
            ));
        }
        out.push((seq, rec));
    }
    if out.last().is_some_and(|(_, r)| r.name != b.last) {
        return Err(Error::corrupt(
            path,
            b.offset,
            "footer block's last name differs from its index entry",
        ));
    }
    Ok(out)
}

/// Puts the records of every block (from [`decode_block_records`]) back in
/// the order the writer emitted them; their sequence numbers must be exactly
/// `0..n_records`.
pub(crate) fn in_emission_order(
    blocks: Vec<Vec<(u32, ArrayRecord)>>,
    index: &FooterIndex,
    path: &Path,
) -> Result<Vec<ArrayRecord>> {
    let n = index.n_records as usize;
    let mut slots: Vec<Option<ArrayRecord>> = Vec::new();
    slots.resize_with(n, || None);
    for (seq, rec) in blocks.into_iter().flatten() {
        let slot = &mut slots[seq as usize];
        if slot.is_some() {
            return Err(Error::corrupt(
                path,
                index.data_end,
                format!("two records share sequence number {seq}"),
            ));
        }
        *slot = Some(rec);
    }
    // Counts match (checked at decode), and no number repeats, so none is missing.
    Ok(slots
        .into_iter()
        .map(|r| r.expect("every sequence number present"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::layer::{ChunkEntry, RecordKind};
    use crate::schema::ArraySchema;
    use crate::stats::ChunkStats;

    fn record(name: &str, n_chunks: u64) -> ArrayRecord {
        let schema = ArraySchema::new(
            name,
            DType::Int32,
            vec!["x".into()],
            vec![1000],
            Some(vec![1]),
            None,
        )
        .unwrap();
        ArrayRecord {
            name: name.into(),
            kind: RecordKind::Define,
            schema: Some(std::sync::Arc::new(schema)),
            chunks: (0..n_chunks)
                .map(|k| ChunkEntry {
                    chunk_idx: k,
                    offset: 32 + k,
                    stored_len: 1,
                    raw_len: 4,
                    codec: 0,
                    filter: 0,
                    crc: 0,
                    stats: ChunkStats::default(),
                })
                .collect(),
        }
    }

    /// Writes blocks then index at `data_end` as a file image would hold them.
    fn image(records: &[ArrayRecord]) -> (Vec<u8>, FooterIndex, u64) {
        let data_end = 10_000;
        let (blocks, index) = encode_blocked(records, 7, data_end);
        let mut bytes = vec![0u8; data_end as usize];
        for b in blocks {
            bytes.extend_from_slice(&b);
        }
        let index_offset = bytes.len() as u64;
        let decoded = decode_index(&encode_index(&index), index_offset, Path::new("x")).unwrap();
        assert_eq!(decoded, index);
        (bytes, index, index_offset)
    }

    fn block_bytes<'a>(bytes: &'a [u8], b: &BlockRef) -> &'a [u8] {
        &bytes[b.offset as usize..(b.offset + u64::from(b.len)) as usize]
    }

    #[test]
    fn blocks_round_trip_in_emission_order_and_find_every_name() {
        // Insertion order differs from name order; enough records for many blocks.
        let records: Vec<ArrayRecord> = (0..3000)
            .map(|k| record(&format!("n{:05}", (k * 7919) % 3000), k % 5))
            .collect();
        let (bytes, index, _) = image(&records);
        assert!(index.blocks.len() > 3, "{} blocks", index.blocks.len());
        let p = Path::new("x");
        let all = (0..index.blocks.len())
            .map(|k| decode_block_records(block_bytes(&bytes, &index.blocks[k]), &index, k, p))
            .collect::<Result<Vec<_>>>()
            .unwrap();
        assert_eq!(in_emission_order(all, &index, p).unwrap(), records);
        for r in records.iter().step_by(37) {
            let k = index.block_for(&r.name).unwrap();
            let got = find_in_block(
                block_bytes(&bytes, &index.blocks[k]),
                &index,
                k,
                &r.name,
                p,
                false,
            );
            assert_eq!(got.unwrap().as_ref(), Some(r));
        }
        for absent in ["a", "n00000x", "zz"] {
            if let Some(k) = index.block_for(absent) {
                let got = find_in_block(
                    block_bytes(&bytes, &index.blocks[k]),
                    &index,
                    k,
                    absent,
                    p,
                    false,
                );
                assert_eq!(got.unwrap(), None);
            }
        }
    }

    /// Records whose schemas are encoded in the same bytes share one
    /// schema within a block; any other schema is decoded afresh. Every
    /// record equals the one written, and every byte flip of a block gives
    /// the outcome that decoding each record alone (no memo) gives.
    #[test]
    fn records_with_the_bytes_of_the_last_schema_share_it() {
        use crate::dtype::FillValue;
        let schema = |shape: u64, dim: &str, fill: Option<FillValue>| {
            let s = ArraySchema::new(
                "a",
                DType::Float32,
                vec![dim.into()],
                vec![shape],
                Some(vec![1]),
                fill,
            );
            Some(std::sync::Arc::new(s.unwrap()))
        };
        // Runs of one schema, then others that differ in one field each.
        let kinds = [
            schema(50, "N", None),
            schema(50, "N", None),
            schema(50, "N", Some(FillValue::Float32(f32::NAN))),
            schema(50, "N", Some(FillValue::Float32(f32::NAN))),
            schema(50, "N", Some(FillValue::Float32(99999.0))),
            schema(51, "N", None),
            schema(50, "M", None),
            schema(50, "N", None),
        ];
        let records: Vec<ArrayRecord> = (0..600)
            .map(|k| {
                let mut r = record(&format!("n{k:05}"), 1);
                r.schema = kinds[(k / 3) % kinds.len()].clone();
                r
            })
            .collect();
        let (bytes, index, _) = image(&records);
        let p = Path::new("x");
        let mut decoded = Vec::new();
        for (k, b) in index.blocks.iter().enumerate() {
            let block = decode_block_records(block_bytes(&bytes, b), &index, k, p).unwrap();
            for w in block.windows(2) {
                let (a, b) = (w[0].1.schema.as_ref(), w[1].1.schema.as_ref());
                assert_eq!(
                    std::sync::Arc::ptr_eq(a.unwrap(), b.unwrap()),
                    a == b,
                    "{} / {}",
                    w[0].1.name,
                    w[1].1.name
                );
            }
            decoded.push(block);
        }
        assert_eq!(in_emission_order(decoded, &index, p).unwrap(), records);

        // Each record alone, without a memo: the reference outcome.
        let alone = |bytes: &[u8], index: &FooterIndex| -> Result<Vec<(u32, ArrayRecord)>> {
            let b = &index.blocks[0];
            let t = block_table(bytes, b, p, false)?;
            (0..b.n_records as usize)
                .map(|j| decode_at(&t, j, b, index.n_records, index.data_end, p, None))
                .collect()
        };
        let block = block_bytes(&bytes, &index.blocks[0]).to_vec();
        let (mut same, mut failed) = (0, 0);
        for at in 0..block.len().min(3000) {
            let mut bad = block.clone();
            bad[at] ^= 0x41;
            // The index vouches for the damaged block, so the damage
            // reaches the decoder.
            let mut index = index.clone();
            index.blocks[0].crc = crc32c::crc32c(&bad);
            match (
                decode_block_records(&bad, &index, 0, p),
                alone(&bad, &index),
            ) {
                (Ok(m), Ok(q)) => {
                    assert_eq!(m, q, "flip at {at}");
                    same += 1;
                }
                // A record out of name order is the block's check, not the
                // decoder's: the records decoded alone may all be fine.
                (Err(m), q) if m.to_string().contains("out of order in its footer block") => {
                    assert!(q.is_ok() || q.unwrap_err().to_string() == m.to_string());
                }
                (Err(m), Err(q)) => {
                    assert_eq!(m.to_string(), q.to_string(), "flip at {at}");
                    failed += 1;
                }
                (m, q) => panic!("flip at {at}: with memo {m:?}, alone {q:?}"),
            }
        }
        assert!(same > 0 && failed > 0, "{same} decoded, {failed} failed");
    }

    #[test]
    fn an_empty_footer_has_no_blocks() {
        let (_, index, off) = image(&[]);
        assert!(index.blocks.is_empty());
        assert_eq!(off, index.data_end);
        assert_eq!(index.block_for("a"), None);
    }

    #[test]
    fn every_truncation_and_bit_flip_of_an_index_is_an_error() {
        let records: Vec<ArrayRecord> = (0..400).map(|k| record(&format!("a{k:04}"), 3)).collect();
        let (_, index, off) = image(&records);
        let enc = encode_index(&index);
        let p = Path::new("x");
        for cut in 0..enc.len() {
            assert!(decode_index(&enc[..cut], off, p).is_err(), "cut at {cut}");
        }
        for pos in 0..enc.len() {
            for bit in 0..8 {
                let mut m = enc.clone();
                m[pos] ^= 1 << bit;
                // The uid and CRCs are not checked here (the header and the
                // blocks check them); everything else must be.
                let _ = decode_index(&m, off, p);
            }
        }
    }

    /// Found by the `footer_blocked` fuzz target: an error's file offset in an
    /// index placed near 2^64 overflowed.
    #[test]
    fn error_offsets_near_the_end_of_the_address_space_do_not_overflow() {
        let end = u64::MAX - 4;
        let mut enc = encode_index(&FooterIndex {
            uid: 0,
            n_records: 0,
            data_end: end,
            blocks: Vec::new(),
        });
        enc.push(0);
        let e = decode_index(&enc, end, Path::new("x")).unwrap_err();
        assert!(e.is_corruption(), "{e}");
    }

    #[test]
    fn hostile_blocks_give_corruption_errors() {
        let records: Vec<ArrayRecord> = (0..50).map(|k| record(&format!("a{k:04}"), 2)).collect();
        let (bytes, index, _) = image(&records);
        let b = &index.blocks[0];
        let good = block_bytes(&bytes, b).to_vec();
        let p = Path::new("x");
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut m = good.clone();
            let pos = (rng % m.len() as u64) as usize;
            m[pos] = (rng >> 32) as u8;
            // Re-seal so the mutation reaches the decoder.
            let mut idx = index.clone();
            idx.blocks[0].crc = crc32c::crc32c(&m);
            if let Err(e) = decode_block_records(&m, &idx, 0, p) {
                assert!(e.is_corruption(), "{e}");
            }
            let _ = find_in_block(&m, &idx, 0, "a0007", p, false);
        }
        let e = decode_block_records(&good[..good.len() - 1], &index, 0, p).unwrap_err();
        assert!(e.is_corruption());
    }
}
