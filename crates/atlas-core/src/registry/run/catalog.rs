//! A run's catalog decoded for queries: typed statistic columns,
//! dictionary-encoded attribute columns, the variants (schema and attribute
//! set) of each array name, and `(id, name)` blocks for naming matches. Each
//! is decoded once per run and kept while the run is open; statistic and
//! attribute columns are bounded by [`MAX_CACHED_COLUMNS`] per run.
//!
//! A version-1 run has no variants and no list-attribute columns: both are
//! derived from its record blocks once (the whole run is read), then kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use array_format::{ArraySchema, StatValue};
use indexmap::IndexMap;
use parking_lot::Mutex;
use roaring::RoaringTreemap;

use super::typed::{Floats, Ints, StatBlock};
use super::{stat_from_repr, Attr, Result, Run, StatRow};

/// Statistic or attribute columns kept decoded per run (each kind).
const MAX_CACHED_COLUMNS: usize = 64;

/// One array name's datasets that share a schema and an attribute set.
#[derive(Debug)]
pub(crate) struct Variant {
    pub schema: Arc<ArraySchema>,
    pub attrs: Arc<IndexMap<String, Attr>>,
    /// The run's ids whose record has the array with this schema and set.
    pub ids: RoaringTreemap,
}

/// Minimum or maximum statistics of a column, typed when possible.
#[derive(Debug)]
pub(crate) enum Values {
    /// Every present value is a float other than NaN; NaN marks an absent one.
    F64(Vec<f64>),
    /// The same, every value an `f32` (statistics of `f32` arrays, whose
    /// runs store them so): half the bytes to keep and to test.
    F32(Vec<f32>),
    /// Anything else.
    Any(Vec<Option<StatValue>>),
}

impl Values {
    /// The value of row `i` (`None`: the statistic is undefined).
    pub(crate) fn get(&self, i: usize) -> Option<StatValue> {
        match self {
            Values::F64(v) => Some(v[i]).filter(|x| !x.is_nan()).map(StatValue::Float),
            Values::F32(v) => Some(f64::from(v[i]))
                .filter(|x| !x.is_nan())
                .map(StatValue::Float),
            Values::Any(v) => v[i].clone(),
        }
    }

    fn floats(f: Floats) -> Values {
        match f {
            Floats::F32(v) => Values::F32(v),
            Floats::F64(v) => Values::F64(v),
        }
    }
}

/// One array's catalog column in one run, row `i` for dataset `ids[i]`.
#[derive(Debug)]
pub(crate) struct StatColumn {
    /// Strictly ascending.
    pub ids: Ints,
    pub present: RoaringTreemap,
    pub min: Values,
    /// `None` when every row's maximum is its minimum, bit for bit (an
    /// array of one value per dataset: a latitude, a time): the column is
    /// then held once, and a range test of a row is a test of its value.
    pub max: Option<Values>,
    pub nulls: Ints,
    pub cells: Ints,
}

impl StatColumn {
    /// The maxima.
    pub(crate) fn max(&self) -> &Values {
        self.max.as_ref().unwrap_or(&self.min)
    }
}

/// One dataset attribute's column in one run (scalars and lists alike),
/// dictionary-encoded: each distinct value once, with the ids holding it.
#[derive(Debug, Default)]
pub(crate) struct AttrColumn {
    pub values: Vec<Attr>,
    /// `ids[starts[k]..starts[k + 1]]` hold `values[k]`, ascending.
    starts: Vec<usize>,
    ids: Vec<u64>,
    pub present: RoaringTreemap,
}

impl AttrColumn {
    /// The ids holding `values[k]`, ascending.
    pub(crate) fn ids_of(&self, k: usize) -> &[u64] {
        &self.ids[self.starts[k]..self.starts[k + 1]]
    }

    fn build(rows: &[(u64, Attr)]) -> AttrColumn {
        let mut codes = Vec::with_capacity(rows.len());
        let mut first_row: Vec<usize> = Vec::new();
        {
            let mut strings: HashMap<&str, u32> = HashMap::new();
            // Scalars by kind and bits (NaN and -0.0 distinct, as stored).
            let mut scalars: HashMap<(u8, u64), u32> = HashMap::new();
            let mut others: HashMap<Vec<u8>, u32> = HashMap::new();
            for (i, (_, a)) in rows.iter().enumerate() {
                let next = first_row.len() as u32;
                let scalar = match a {
                    Attr::Bool(b) => Some((0, u64::from(*b))),
                    Attr::Int64(x) => Some((1, *x as u64)),
                    Attr::UInt64(x) => Some((2, *x)),
                    Attr::Float64(f) => Some((3, f.to_bits())),
                    Attr::Timestamp(t) => Some((4, t.0 as u64)),
                    _ => None,
                };
                let code = match (a, scalar) {
                    (Attr::String(s), _) => *strings.entry(s.as_str()).or_insert(next),
                    (_, Some(k)) => *scalars.entry(k).or_insert(next),
                    (other, None) => *others
                        .entry(rmp_serde::to_vec(other).expect("attributes serialize"))
                        .or_insert(next),
                };
                if code == next {
                    first_row.push(i);
                }
                codes.push(code);
            }
        }
        let mut starts = vec![0usize; first_row.len() + 1];
        for c in &codes {
            starts[*c as usize + 1] += 1;
        }
        for k in 1..starts.len() {
            starts[k] += starts[k - 1];
        }
        let mut fill = starts.clone();
        let mut ids = vec![0u64; rows.len()];
        for (row, c) in codes.iter().enumerate() {
            ids[fill[*c as usize]] = rows[row].0;
            fill[*c as usize] += 1;
        }
        let present = RoaringTreemap::from_sorted_iter(rows.iter().map(|(id, _)| *id))
            .expect("rows are sorted by id");
        let values = first_row.iter().map(|i| rows[*i].1.clone()).collect();
        AttrColumn {
            values,
            starts,
            ids,
            present,
        }
    }
}

type AnyValues = Vec<Option<StatValue>>;

/// A statistics column being decoded: float minima and maxima (`f32` while
/// every block stored them so) while every value is one, generic values
/// from the first that is not.
struct ColumnBuilder {
    ids: Ints,
    min_f: Floats,
    max_f: Floats,
    /// Minima and maxima, once some value is not an `f64`.
    any: Option<(AnyValues, AnyValues)>,
    nulls: Ints,
    cells: Ints,
    unsorted: bool,
    /// Every block so far had its maxima equal to its minima, bit for bit:
    /// `max_f` is then left empty (a point column's maxima are never
    /// decoded twice).
    point: bool,
}

fn as_f64(v: Option<&StatValue>) -> Option<f64> {
    match v {
        None => Some(f64::NAN),
        Some(StatValue::Float(f)) if !f.is_nan() => Some(*f),
        Some(_) => None,
    }
}

impl ColumnBuilder {
    fn new(capacity: usize) -> ColumnBuilder {
        // Capacity is only reserved: pages are touched as rows arrive.
        ColumnBuilder {
            ids: Ints::default(),
            min_f: Floats::with_capacity(capacity),
            max_f: Floats::with_capacity(capacity),
            any: None,
            nulls: Ints::default(),
            cells: Ints::default(),
            unsorted: false,
            point: true,
        }
    }

    /// Leaves point mode: the maxima of the first `rows` rows are their
    /// minima.
    fn unpoint(&mut self, rows: usize) {
        if self.point {
            self.max_f = self.min_f.prefix(rows);
            self.point = false;
        }
    }

    fn push(&mut self, id: u64, row: StatRow) {
        if self.ids.last().is_some_and(|last| last >= id) {
            self.unsorted = true;
        }
        let one = |v| Ints::Affine {
            base: v,
            step: 0,
            len: 1,
        };
        self.ids.append(&one(id));
        // Row by row (old runs): maxima always kept.
        self.unpoint(self.min_f.len());
        let StatRow(lo, hi, n, c) = row;
        let (lo, hi) = (lo.map(stat_from_repr), hi.map(stat_from_repr));
        self.nulls.append(&one(n));
        self.cells.append(&one(c));
        if self.any.is_none() {
            if let (Some(a), Some(b)) = (as_f64(lo.as_ref()), as_f64(hi.as_ref())) {
                self.min_f.widen().push(a);
                self.max_f.widen().push(b);
                return;
            }
            self.untype();
        }
        let (mins, maxs) = self.any.as_mut().expect("just set");
        mins.push(lo);
        maxs.push(hi);
    }

    /// Leaves the typed `f64` form: the minima and maxima so far as values
    /// (NaN: absent), for a column whose later rows are not all `f64`.
    fn untype(&mut self) {
        let back = |v: &Floats| -> AnyValues {
            (0..v.len())
                .map(|i| Some(v.get(i)).filter(|x| !x.is_nan()).map(StatValue::Float))
                .collect()
        };
        self.any = Some((back(&self.min_f), back(&self.max_f)));
        self.min_f = Floats::with_capacity(0);
        self.max_f = Floats::with_capacity(0);
    }

    /// Appends a decoded typed block (run format 3): bulk copies, `f64`
    /// minima and maxima kept typed while every block's are.
    fn push_block(&mut self, b: &StatBlock) {
        if let (Some(last), Some(first)) = (self.ids.last(), b.ids.first()) {
            if first <= last {
                self.unsorted = true;
            }
        }
        let n = b.ids.len();
        self.ids.append(&b.ids);
        self.nulls.append(&b.nulls);
        self.cells.append(&b.cells);
        if self.any.is_none() {
            let at = self.min_f.len();
            if self.min_f.extend(&b.min, n) {
                if self.point && b.min.same_float_bits(&b.max) {
                    return;
                }
                self.unpoint(at);
                if self.max_f.extend(&b.max, n) {
                    return;
                }
                self.min_f.truncate(at);
            }
            self.unpoint(at);
            self.untype();
        }
        let (mins, maxs) = self.any.as_mut().expect("just set");
        mins.extend((0..n).map(|i| b.min.get(i)));
        maxs.extend((0..n).map(|i| b.max.get(i)));
    }

    fn finish(self) -> StatColumn {
        let present = match (&self.ids, self.ids.consecutive()) {
            (_, Some((_, 0))) => RoaringTreemap::new(),
            // One contiguous range (the usual run): built as a range.
            (_, Some((first, n))) => {
                let mut p = RoaringTreemap::new();
                p.insert_range(first..=first + (n as u64 - 1));
                p
            }
            (ids, None) => RoaringTreemap::from_sorted_iter(ids.as_list().iter().copied())
                .expect("checked sorted"),
        };
        let (min, max) = match self.any {
            None if self.point => (Values::floats(self.min_f), None),
            None => {
                let same = self.min_f.same_bits(&self.max_f);
                let max = (!same).then(|| Values::floats(self.max_f));
                (Values::floats(self.min_f), max)
            }
            Some((a, b)) => (Values::Any(a), Some(Values::Any(b))),
        };
        StatColumn {
            ids: self.ids,
            present,
            min,
            max,
            nulls: self.nulls,
            cells: self.cells,
        }
    }
}

/// Streams a block of `(id, statistics)` rows into a [`ColumnBuilder`].
struct RowsInto<'b>(&'b mut ColumnBuilder);

impl<'de> serde::de::DeserializeSeed<'de> for RowsInto<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowsInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of (id, statistics) rows")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        while let Some((id, row)) = seq.next_element::<(u64, StatRow)>()? {
            self.0.push(id, row);
        }
        Ok(())
    }
}

/// What a version-1 run's records say that version 2 stores beside them.
#[derive(Default)]
struct Derived {
    variants: HashMap<String, BTreeMap<(u32, Option<u32>), RoaringTreemap>>,
    lists: HashMap<String, Vec<(u64, Attr)>>,
}

/// A run's decoded catalog.
#[derive(Default)]
pub(super) struct Cache {
    stats: Mutex<HashMap<String, Arc<StatColumn>>>,
    attrs: Mutex<HashMap<String, Arc<AttrColumn>>>,
    variants: Mutex<HashMap<String, Arc<Vec<Variant>>>>,
    derived: OnceLock<Arc<Derived>>,
    id_blocks: Mutex<HashMap<usize, IdBlock>>,
}

/// One decoded block of `(id, name)` pairs, the names end to end in one
/// string (naming a few scattered datasets then touches their bytes, not
/// one heap allocation per name of the block).
pub(super) struct IdNames {
    /// Strictly ascending, never empty.
    pub(super) ids: Ints,
    /// Name `k` is `text[ends[k - 1]..ends[k]]` (from 0 for the first);
    /// empty when `width` is set.
    ends: Vec<u32>,
    text: String,
    /// The length of every name, when all have one (generated names like
    /// `argo_0000042`): name `k` then starts at `k * width`, and finding it
    /// reads no offset.
    width: Option<usize>,
}

impl IdNames {
    /// From ids, each name's end in `text`, and the names end to end (the
    /// caller checks that `ends` ascend and cut `text` at character
    /// boundaries).
    pub(super) fn from_parts(ids: Ints, ends: Vec<u32>, text: String) -> IdNames {
        let w = ends.first().map(|w| *w as usize);
        let width = w.filter(|w| *w > 0).filter(|w| {
            ends.iter()
                .enumerate()
                .all(|(k, e)| *e as usize == (k + 1) * w)
        });
        IdNames {
            ids,
            ends: if width.is_some() { Vec::new() } else { ends },
            text,
            width,
        }
    }

    /// From a typed id block (run format 6), checked by its decoder.
    pub(super) fn from_typed(b: super::typed::Names) -> IdNames {
        IdNames {
            ids: b.ids,
            ends: b.ends,
            text: b.text,
            width: b.width,
        }
    }

    #[cfg(test)]
    fn new(block: Vec<(u64, String)>) -> IdNames {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(block.len());
        let mut ids = Vec::with_capacity(block.len());
        for (id, name) in block {
            ids.push(id);
            text.push_str(&name);
            ends.push(text.len() as u32);
        }
        IdNames::from_parts(Ints::List(ids), ends, text)
    }

    /// The `(id, name)` pairs, in order.
    pub(super) fn pairs(&self) -> Vec<(u64, String)> {
        (0..self.ids.len())
            .map(|k| (self.ids.get(k), self.name(k).to_owned()))
            .collect()
    }

    fn name(&self, k: usize) -> &str {
        if let Some(w) = self.width {
            return &self.text[k * w..(k + 1) * w];
        }
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.text[start..self.ends[k] as usize]
    }
}

type IdBlock = Arc<IdNames>;

/// Looks `key` up in a bounded map, loading it (outside the lock) on a miss.
fn cached<T>(
    map: &Mutex<HashMap<String, Arc<T>>>,
    key: &str,
    load: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    if let Some(v) = map.lock().get(key) {
        return Ok(Arc::clone(v));
    }
    let v = Arc::new(load()?);
    let mut m = map.lock();
    if m.len() >= MAX_CACHED_COLUMNS {
        m.clear();
    }
    m.insert(key.to_owned(), Arc::clone(&v));
    Ok(v)
}

/// `f` of each item, in order, computed on rayon's pool (its threads live
/// with the process: no thread is started per call): for independent
/// pieces of work such as decoding one column in each of many runs.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    items.par_iter().map(f).collect()
}

impl Run {
    fn derived(&self) -> Result<Arc<Derived>> {
        if let Some(d) = self.catalog.derived.get() {
            return Ok(Arc::clone(d));
        }
        let mut d = Derived::default();
        for i in 0..self.index.names.len() {
            for rec in self.load_record_block(i)? {
                let Some(body) = rec.2 else { continue };
                for a in &body.1 {
                    d.variants
                        .entry(a.0.clone())
                        .or_default()
                        .entry((a.1, a.2))
                        .or_default()
                        .insert(rec.1);
                }
                for (k, v) in body.0 {
                    if !v.is_scalar() {
                        d.lists.entry(k).or_default().push((rec.1, v));
                    }
                }
            }
        }
        for rows in d.lists.values_mut() {
            rows.sort_by_key(|(id, _)| *id);
        }
        Ok(Arc::clone(self.catalog.derived.get_or_init(|| Arc::new(d))))
    }

    /// The variants of `array` in this run (none when no record has it).
    pub(crate) fn array_variants(&self, array: &str) -> Result<Arc<Vec<Variant>>> {
        cached(&self.catalog.variants, array, || {
            let dict = self.dict()?;
            let variant = |s: u32, a: Option<u32>, ids: RoaringTreemap| -> Result<Variant> {
                let schema = dict
                    .schemas
                    .get(s as usize)
                    .cloned()
                    .ok_or_else(|| self.corrupt(format!("schema index {s} out of range")))?;
                let attrs = match a {
                    None => Arc::new(IndexMap::new()),
                    Some(i) => dict.attr_sets.get(i as usize).cloned().ok_or_else(|| {
                        self.corrupt(format!("attribute set index {i} out of range"))
                    })?,
                };
                Ok(Variant { schema, attrs, ids })
            };
            let mut out = Vec::new();
            if self.index.version >= 5 {
                let found = self
                    .index
                    .variant_blocks
                    .iter()
                    .find(|(n, _, _)| n == array);
                if let Some((_, keys, r)) = found {
                    for ((s, a), ids) in keys.iter().zip(self.bitmaps(r, keys.len())?) {
                        out.push(variant(*s, *a, ids)?);
                    }
                }
            } else if self.index.version >= 2 {
                if let Some((_, vs)) = self.index.variants.iter().find(|(n, _)| n == array) {
                    for (s, a, r) in vs {
                        out.push(variant(*s, *a, self.bitmap(r)?)?);
                    }
                }
            } else if let Some(vs) = self.derived()?.variants.get(array) {
                for ((s, a), ids) in vs {
                    out.push(variant(*s, *a, ids.clone())?);
                }
            }
            Ok(out)
        })
    }

    /// Decodes the catalog columns of `arrays` in `runs` not decoded yet,
    /// every (run, array) pair a task on rayon's pool: a run of most of the
    /// datasets then no longer decodes its columns on one core while the
    /// others wait. Errors are dropped (not cached): the column's next use
    /// reports them.
    pub(crate) fn prefetch_stat_columns(runs: &[&Run], arrays: &[&str]) {
        use rayon::prelude::*;
        let missing: Vec<(&Run, &str)> = runs
            .iter()
            .flat_map(|r| arrays.iter().map(move |a| (*r, *a)))
            .filter(|(r, a)| !r.catalog.stats.lock().contains_key(*a))
            .collect();
        if missing.len() > 1 {
            missing.par_iter().for_each(|(r, a)| {
                let _ = r.stat_column(a);
            });
        }
    }

    /// The catalog columns of `array` in each of `runs`, in order: those not
    /// decoded yet are decoded on up to one thread per CPU (a cold query's
    /// cost is decompressing and decoding them, run by run, and every run's
    /// column is independent). Errors as [`Run::stat_column`]; the first in
    /// `runs`' order is returned.
    pub(crate) fn stat_columns(runs: &[&Run], array: &str) -> Result<Vec<Arc<StatColumn>>> {
        let mut out: Vec<Option<Arc<StatColumn>>> = runs
            .iter()
            .map(|r| r.catalog.stats.lock().get(array).cloned())
            .collect();
        let missing: Vec<usize> = (0..runs.len()).filter(|i| out[*i].is_none()).collect();
        for (i, col) in missing
            .iter()
            .zip(par_map(&missing, |i| runs[*i].stat_column(array)))
        {
            out[*i] = Some(col?);
        }
        Ok(out
            .into_iter()
            .map(|c| c.expect("every run's column"))
            .collect())
    }

    /// The catalog column of `array`, decoded (empty when no record has it).
    /// Typed blocks (format 3) are appended in bulk; older row blocks
    /// stream row by row into the same typed vectors.
    pub(crate) fn stat_column(&self, array: &str) -> Result<Arc<StatColumn>> {
        cached(&self.catalog.stats, array, || {
            let mut b = ColumnBuilder::new(self.index.n_records as usize);
            if let Some((_, blocks)) = self.index.arrays.iter().find(|(n, _)| n == array) {
                for (_, r) in blocks {
                    if self.index.version >= 3 {
                        b.push_block(&self.stat_block(r)?);
                    } else {
                        self.read_seed(r, RowsInto(&mut b))?;
                    }
                    if b.unsorted {
                        return Err(self.corrupt(format!("column {array:?} is not sorted")));
                    }
                }
            }
            Ok(b.finish())
        })
    }

    /// The column of dataset attribute `key`, scalar and list values alike,
    /// dictionary-encoded (empty when no record has it).
    pub(crate) fn attr_column(&self, key: &str) -> Result<Arc<AttrColumn>> {
        cached(&self.catalog.attrs, key, || {
            let mut rows: Vec<(u64, Attr)> = Vec::new();
            if let Some((_, blocks)) = self.index.attrs.iter().find(|(n, _)| n == key) {
                for (_, r) in blocks {
                    rows.extend(self.attr_block(r)?);
                }
            }
            if self.index.version >= 2 {
                if let Some((_, blocks)) = self.index.lists.iter().find(|(n, _)| n == key) {
                    for (_, r) in blocks {
                        rows.extend(self.attr_block(r)?);
                    }
                }
            } else if let Some(l) = self.derived()?.lists.get(key) {
                rows.extend(l.iter().cloned());
            }
            rows.sort_by_key(|(id, _)| *id);
            if rows.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(self.corrupt(format!("attribute {key:?} has two rows for one id")));
            }
            Ok(AttrColumn::build(&rows))
        })
    }

    /// Names of the list-valued dataset attributes with a column here.
    pub(crate) fn list_attribute_names(&self) -> Result<Vec<String>> {
        Ok(if self.index.version >= 2 {
            self.index.lists.iter().map(|(n, _)| n.clone()).collect()
        } else {
            self.derived()?.lists.keys().cloned().collect()
        })
    }

    /// `ids` cut by the id block each falls in: `(block, its ids)`, blocks
    /// ascending; ids before the first block are left out. A unit of work
    /// for [`Run::names_in_block`], so naming spreads over cores by block,
    /// not by run.
    pub(crate) fn id_block_parts(&self, ids: &RoaringTreemap) -> Vec<(usize, Vec<u64>)> {
        let mut parts: Vec<(usize, Vec<u64>)> = Vec::new();
        let blocks = &self.index.ids;
        let mut i = 0;
        for id in ids {
            // Ids ascend: the block only moves forward.
            while i < blocks.len() && blocks[i].0 <= id {
                i += 1;
            }
            if i == 0 {
                continue;
            }
            match parts.last_mut() {
                Some((b, v)) if *b == i - 1 => v.push(id),
                _ => parts.push((i - 1, vec![id])),
            }
        }
        parts
    }

    /// The names of `ids` (ascending, all at or after id block `i`'s key)
    /// found in id block `i`, `(id, name)`; ids it does not list are
    /// skipped. The decoded block is kept.
    pub(crate) fn names_in_block(&self, i: usize, ids: &[u64]) -> Result<Vec<(u64, String)>> {
        let cached = self.catalog.id_blocks.lock().get(&i).cloned();
        let block = if let Some(b) = cached {
            b
        } else {
            let b = Arc::new(self.id_names(i)?);
            self.catalog.id_blocks.lock().insert(i, Arc::clone(&b));
            b
        };
        let mut out = Vec::with_capacity(ids.len());
        let (first, last) = (block.ids.get(0), block.ids.get(block.ids.len() - 1));
        // A block of consecutive ids (the usual case: a flush or merge of
        // datasets created in a row): an id is its position.
        if last - first == block.ids.len() as u64 - 1 {
            for id in ids {
                if (first..=last).contains(id) {
                    out.push((*id, block.name((id - first) as usize).to_owned()));
                }
            }
            return Ok(out);
        }
        // Where the previous id was found: ids ascend, so each search
        // starts there and gallops forward (a binary search of the whole
        // block missed the cache at nearly every step).
        let listed = block.ids.as_list();
        let mut at = 0;
        for id in ids {
            let mut step = 1;
            while at + step < listed.len() && listed[at + step] < *id {
                step *= 2;
            }
            let end = (at + step + 1).min(listed.len());
            at += listed[at..end].partition_point(|x| x < id);
            if listed.get(at) == Some(id) {
                out.push((*id, block.name(at).to_owned()));
            }
        }
        Ok(out)
    }

    /// The names of `ids` this run lists, `(id, name)` ascending; ids it does
    /// not list are skipped. Reads (and keeps) only the id blocks they fall in.
    pub(crate) fn names_of(&self, ids: &RoaringTreemap) -> Result<Vec<(u64, String)>> {
        let mut out = Vec::with_capacity(ids.len() as usize);
        for (i, part) in self.id_block_parts(ids) {
            out.extend(self.names_in_block(i, &part)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::IdNames;

    /// Names are found by offset, and by position when all share a length.
    #[test]
    fn id_names_find_each_name() {
        for names in [vec!["a", "bcd", "", "ef"], vec!["ab", "cd", "ef"]] {
            let block: Vec<(u64, String)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u64 + 7, (*n).to_owned()))
                .collect();
            let ids = IdNames::new(block);
            assert_eq!(ids.width.is_some(), names.len() == 3);
            for (k, n) in names.iter().enumerate() {
                assert_eq!(ids.name(k), *n);
            }
        }
    }
}
