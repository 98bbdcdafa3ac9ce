//! The chunk stage: per-chunk statistics and decoded chunks of the few
//! datasets dataset-level statistics leave undecided, read from the array
//! files under the read locks the query holds.

use array_format::{ArrayElement, ArrayFile, ChunkSummary, DType, TimestampNs};

use super::CatalogSource;
use crate::error::{Error, Result};
use crate::query::source::{ChunkSource, StatsSource};
use crate::query::value::{Val, ValueSet};

impl ChunkSource for CatalogSource {
    fn chunks(&self, array: &str, id: u64) -> Result<Vec<ChunkSummary>> {
        let name = self.name(id)?;
        let Some(file) = self.file(array, &name) else {
            return Ok(Vec::new());
        };
        file.chunk_summaries(&name)
            .map_err(|e| Error::array(&name, array, e))
    }

    fn chunk_has(&self, array: &str, id: u64, chunk_idx: u64, set: &ValueSet) -> Result<bool> {
        let name = self.name(id)?;
        let name = name.as_str();
        let Some(file) = self.file(array, name) else {
            return Ok(false);
        };
        let schema = file.schema(name).ok_or_else(|| Error::ArrayNotFound {
            dataset: name.to_owned(),
            array: array.to_owned(),
        })?;
        let (start, count) = schema.chunk_region(chunk_idx);
        let fv = schema.fill_value.clone();
        let r = match schema.dtype {
            DType::Bool => has::<bool>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int8 => has::<i8>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int16 => has::<i16>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int32 => has::<i32>(file, name, &start, &count, fv.as_ref(), set),
            DType::Int64 => has::<i64>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt8 => has::<u8>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt16 => has::<u16>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt32 => has::<u32>(file, name, &start, &count, fv.as_ref(), set),
            DType::UInt64 => has::<u64>(file, name, &start, &count, fv.as_ref(), set),
            DType::Float32 => has::<f32>(file, name, &start, &count, fv.as_ref(), set),
            DType::Float64 => has::<f64>(file, name, &start, &count, fv.as_ref(), set),
            DType::String => has::<String>(file, name, &start, &count, fv.as_ref(), set),
            DType::Timestamp => has::<TimestampNs>(file, name, &start, &count, fv.as_ref(), set),
            other => unreachable!("dtype {other} has no query dispatch"),
        };
        r.map_err(|e| Error::array(name, array, e))
    }
}

/// Decodes one chunk's region and looks for a non-null cell in `set`. Nulls
/// are as the statistics count them: NaN, or equal to the fill value.
fn has<T: ArrayElement>(
    file: &ArrayFile,
    name: &str,
    start: &[u64],
    count: &[u64],
    declared: Option<&array_format::FillValue>,
    set: &ValueSet,
) -> array_format::Result<bool> {
    let null: Option<T> = declared.and_then(T::from_fill);
    let cells = file.read_array::<T>(name, start, count)?;
    Ok(cells
        .iter()
        .filter(|v| !v.is_nan() && null.as_ref() != Some(*v))
        .any(|v| set.member(&Val::from_stat(&v.to_stat()))))
}
