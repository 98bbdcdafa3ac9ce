//! A minimal `MessagePack` walker for record blocks: it skips values and
//! reads the few fields a lookup needs (a record's name, one array's schema
//! and attribute-set indexes) without building anything, where serde would
//! decode or at least visit every attribute and statistic of every record.
//!
//! Records are written by `rmp_serde` (tuple structs as arrays, `None` as
//! nil); this module reads that layout and nothing else. Every read is
//! bounds-checked and skipping is iterative: hostile bytes give an error
//! string, never a panic or deep recursion.

use std::ops::Range;

/// A position in `MessagePack` bytes.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Res<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("value at byte {} runs past the end", self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian unsigned integer of `n` ≤ 8 bytes.
    fn be(&mut self, n: usize) -> Res<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0_u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Res<usize> {
        usize::try_from(self.be(n)?).map_err(|e| e.to_string())
    }

    /// The next value is nil: consumes it.
    pub(super) fn nil(&mut self) -> bool {
        if self.bytes.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// An array header: the number of elements.
    pub(super) fn array(&mut self) -> Res<usize> {
        match self.byte()? {
            m @ 0x90..=0x9f => Ok(usize::from(m & 0x0f)),
            0xdc => self.len(2),
            0xdd => self.len(4),
            m => Err(format!("expected an array, found marker {m:#04x}")),
        }
    }

    /// A UTF-8 string, borrowed.
    pub(super) fn str(&mut self) -> Res<&'a str> {
        std::str::from_utf8(self.str_bytes()?).map_err(|e| e.to_string())
    }

    /// A string's bytes, not checked to be UTF-8 (for callers that check
    /// many strings at once).
    pub(super) fn str_bytes(&mut self) -> Res<&'a [u8]> {
        let n = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.len(1)?,
            0xda => self.len(2)?,
            0xdb => self.len(4)?,
            m => return Err(format!("expected a string, found marker {m:#04x}")),
        };
        self.take(n)
    }

    /// An unsigned integer (any non-negative integer encoding).
    pub(super) fn uint(&mut self) -> Res<u64> {
        let m = self.byte()?;
        let v: i128 = match m {
            0x00..=0x7f => i128::from(m),
            0xcc => i128::from(self.be(1)?),
            0xcd => i128::from(self.be(2)?),
            0xce => i128::from(self.be(4)?),
            0xcf => i128::from(self.be(8)?),
            0xd0 => i128::from(self.be(1)? as u8 as i8),
            0xd1 => i128::from(self.be(2)? as u16 as i16),
            0xd2 => i128::from(self.be(4)? as u32 as i32),
            0xd3 => i128::from(self.be(8)? as i64),
            0xe0..=0xff => i128::from(m as i8),
            m => return Err(format!("expected an integer, found marker {m:#04x}")),
        };
        u64::try_from(v).map_err(|_| format!("negative integer {v} where a count is expected"))
    }

    /// Skips one value of any type. Iterative: it counts the values still
    /// to skip instead of recursing, so nesting costs nothing and a hostile
    /// count fails at the end of the bytes (every value takes a byte).
    pub(super) fn skip(&mut self) -> Res<()> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let m = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| format!("value at byte {} runs past the end", self.pos))?;
            self.pos += 1;
            let (items, bytes): (u64, usize) = match m {
                0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => continue,
                0x80..=0x8f => (2 * u64::from(m & 0x0f), 0),
                0x90..=0x9f => (u64::from(m & 0x0f), 0),
                0xa0..=0xbf => (0, usize::from(m & 0x1f)),
                0xc4 | 0xd9 => (0, self.len(1)?),
                0xc5 | 0xda => (0, self.len(2)?),
                0xc6 | 0xdb => (0, self.len(4)?),
                0xc7 => (0, self.len(1)? + 1),
                0xc8 => (0, self.len(2)? + 1),
                0xc9 => (0, self.len(4)?.saturating_add(1)),
                // Fixed sizes: 1-, 2-, 4-, 8-byte numbers (float32/64, uint,
                // int) and fixext 1/2/4/8/16 (a type byte and the data).
                0xcc | 0xd0 => (0, 1),
                0xcd | 0xd1 | 0xd4 => (0, 2),
                0xd5 => (0, 3),
                0xca | 0xce | 0xd2 => (0, 4),
                0xd6 => (0, 5),
                0xcb | 0xcf | 0xd3 => (0, 8),
                0xd7 => (0, 9),
                0xd8 => (0, 17),
                0xdc => (self.be(2)?, 0),
                0xdd => (self.be(4)?, 0),
                0xde => (2 * self.be(2)?, 0),
                0xdf => (2 * self.be(4)?, 0),
                0xc1 => return Err("reserved marker 0xc1".into()),
            };
            if bytes > 0 {
                self.take(bytes)?;
            }
            pending = pending.saturating_add(items);
        }
        Ok(())
    }
}

/// Where one record lies in its block.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Span {
    /// Where the dataset name's bytes (checked to be UTF-8) lie in the block:
    /// a range, not a `String`, so finding a block's records allocates
    /// nothing per record ([`Span::name`]).
    name: Range<usize>,
    /// The record's bytes.
    pub(super) bytes: Range<usize>,
    /// Where the record's list of arrays starts, from the record's start;
    /// `None` for a tombstone.
    arrays: Option<usize>,
}

impl Span {
    /// The record's dataset name, in `raw`, the block this span was found in.
    pub(super) fn name<'a>(&self, raw: &'a [u8]) -> &'a str {
        // Checked by `record_spans`; a span used with another block would
        // be a bug, and its name then reads as empty (never a panic).
        raw.get(self.name.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Whether the record is a tombstone.
    pub(super) fn is_tombstone(&self) -> bool {
        self.arrays.is_none()
    }

    /// The name's bytes, for comparisons (byte order is `str` order).
    pub(super) fn name_bytes<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        raw.get(self.name.clone()).unwrap_or_default()
    }
}

/// Each record's [`Span`] in a record block (an array of `[name, id, body]`
/// records; body `nil` for a tombstone, else `[attributes, arrays]`).
pub(super) fn record_spans(raw: &[u8]) -> Res<Vec<Span>> {
    let mut c = Cursor::new(raw);
    let n = c.array()?;
    // A record takes at least 4 bytes: a hostile count allocates nothing.
    let mut out = Vec::with_capacity(n.min(raw.len() / 4));
    for _ in 0..n {
        let start = c.pos();
        if c.array()? != 3 {
            return Err(format!("record at byte {start} is not [name, id, body]"));
        }
        let name = c.str()?;
        let name_at = c.pos() - name.len()..c.pos();
        c.skip()?;
        let arrays = if c.nil() {
            None
        } else {
            if c.array()? != 2 {
                return Err(format!("record {name:?}: body is not [attributes, arrays]"));
            }
            c.skip()?;
            let at = c.pos() - start;
            c.skip()?;
            Some(at)
        };
        out.push(Span {
            name: name_at,
            bytes: start..c.pos(),
            arrays,
        });
    }
    if c.pos() != raw.len() {
        return Err("bytes after the last record".into());
    }
    Ok(out)
}

/// What one record says about one array.
#[derive(Debug, PartialEq)]
pub(super) enum ArrayRef {
    /// The record is a tombstone.
    Tombstone,
    /// The dataset has no such array.
    Absent,
    /// The array's schema index and attribute-set index.
    Present(u32, Option<u32>),
}

/// Finds `array` in the record at `span` of `raw` (arrays listed as
/// `[name, schema, attribute set, statistics]`), reading no further than
/// the array's entry.
pub(super) fn find_array(raw: &[u8], span: &Span, array: &str) -> Res<ArrayRef> {
    let Some(at) = span.arrays else {
        return Ok(ArrayRef::Tombstone);
    };
    let mut c = Cursor::new(&raw[span.bytes.start + at..span.bytes.end]);
    let n = c.array()?;
    for _ in 0..n {
        if c.array()? != 4 {
            return Err("an array entry is not [name, schema, attributes, statistics]".into());
        }
        if c.str()? != array {
            c.skip()?;
            c.skip()?;
            c.skip()?;
            continue;
        }
        let index = |v: u64| u32::try_from(v).map_err(|_| format!("index {v} out of range"));
        let schema = index(c.uint()?)?;
        let attrs = if c.nil() {
            None
        } else {
            Some(index(c.uint()?)?)
        };
        return Ok(ArrayRef::Present(schema, attrs));
    }
    Ok(ArrayRef::Absent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Arr(
        String,
        u32,
        Option<u32>,
        (Option<f64>, Option<i64>, u64, u64),
    );

    type Body = (IndexMap<String, Vec<f64>>, Vec<Arr>);

    #[derive(Serialize)]
    struct Rec(String, u64, Option<Body>);

    fn block() -> (Vec<u8>, Vec<Rec>) {
        let recs = vec![
            Rec(
                "a".into(),
                7,
                Some((
                    [("units".into(), vec![1.5, f64::NAN]), ("é".into(), vec![])]
                        .into_iter()
                        .collect(),
                    vec![
                        Arr("PRES".into(), 0, None, (Some(1.0), None, 0, 3)),
                        Arr("TEMP".into(), 70_000, Some(300), (None, Some(-5), 1, 2)),
                    ],
                )),
            ),
            Rec("b".into(), u64::MAX, None),
            Rec("c".repeat(300), 1 << 40, Some((IndexMap::new(), vec![]))),
        ];
        (rmp_serde::to_vec(&recs).unwrap(), recs)
    }

    #[test]
    fn spans_and_arrays_match_what_serde_wrote() {
        let (raw, recs) = block();
        let spans = record_spans(&raw).unwrap();
        assert_eq!(spans.len(), 3);
        for (span, rec) in spans.iter().zip(&recs) {
            assert_eq!(span.name(&raw), rec.0);
            assert_eq!(span.name_bytes(&raw), rec.0.as_bytes());
            assert_eq!(&raw[span.bytes.clone()], rmp_serde::to_vec(rec).unwrap());
        }
        let find = |i: usize, a: &str| find_array(&raw, &spans[i], a);
        assert_eq!(find(0, "PRES"), Ok(ArrayRef::Present(0, None)));
        assert_eq!(find(0, "TEMP"), Ok(ArrayRef::Present(70_000, Some(300))));
        assert_eq!(find(0, "DOXY"), Ok(ArrayRef::Absent));
        assert_eq!(find(1, "TEMP"), Ok(ArrayRef::Tombstone));
        assert_eq!(find(2, "TEMP"), Ok(ArrayRef::Absent));
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let (raw, _) = block();
        // Every truncation fails (the block's array count promises more).
        for end in 0..raw.len() {
            assert!(record_spans(&raw[..end]).is_err(), "cut at {end}");
        }
        let mut extra = raw.clone();
        extra.push(0xc0);
        assert!(record_spans(&extra).is_err());
        // A count far past the bytes, and deep nesting.
        assert!(record_spans(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x93]).is_err());
        let mut deep: Vec<u8> = std::iter::repeat_n(0x91, 100_000).collect();
        assert!(Cursor::new(&deep).skip().is_err());
        deep.push(0xc0);
        let mut c = Cursor::new(&deep);
        assert_eq!(c.skip(), Ok(()), "deep nesting is fine when complete");
        assert_eq!(c.pos(), deep.len());
        assert!(Cursor::new(&[0xc1]).skip().is_err());
        // A negative or oversized index.
        let neg = rmp_serde::to_vec(&Rec(
            "x".into(),
            1,
            Some((
                IndexMap::new(),
                vec![Arr("T".into(), 0, None, (None, None, 0, 0))],
            )),
        ))
        .unwrap();
        // As a one-record block: `0x91`, then the record.
        let good: Vec<u8> = [0x91].into_iter().chain(neg).collect();
        let at = good.iter().rposition(|&b| b == b'T').unwrap() + 1; // the schema index
        let mut bad = good.clone();
        assert_eq!(bad[at], 0x00);
        bad[at] = 0xff; // -1
        let spans = record_spans(&bad).unwrap();
        assert!(find_array(&bad, &spans[0], "T").is_err());
        let spans = record_spans(&good).unwrap();
        assert_eq!(
            find_array(&good, &spans[0], "T"),
            Ok(ArrayRef::Present(0, None))
        );
    }
}
