//! [`ArraySchema`]: dtype, dimensions, shape, chunking and fill value, and the
//! chunk-grid arithmetic built on them.

use crate::dtype::{DType, FillValue};
use crate::error::{Error, Result};

/// Largest rank accepted.
pub const MAX_RANK: usize = 32;
/// Largest chunk accepted, in cells (and in raw bytes for fixed-width types).
pub const MAX_CHUNK_BYTES: u64 = 1 << 31;
/// Longest array or dimension name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// The schema of one array.
#[derive(Clone, Debug)]
pub struct ArraySchema {
    /// Element type.
    pub dtype: DType,
    /// Dimension names, one per axis.
    pub dims: Vec<String>,
    /// Extent of each axis.
    pub shape: Vec<u64>,
    /// Chunk extent of each axis (every entry ≥ 1).
    pub chunk_shape: Vec<u64>,
    /// What unwritten cells read as; `None` means the type's zero.
    pub fill_value: Option<FillValue>,
}

impl PartialEq for ArraySchema {
    fn eq(&self, other: &Self) -> bool {
        // One schema shared by the registry and the array file (the usual
        // case: see `ArrayFile::share_schema`) is equal to itself without a
        // look at its fields; fill values compare bit for bit, so a schema
        // always equals itself.
        std::ptr::eq(self, other)
            || self.dtype == other.dtype
                && self.dims == other.dims
                && self.shape == other.shape
                && self.chunk_shape == other.chunk_shape
                && match (&self.fill_value, &other.fill_value) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.same_as(b),
                    _ => false,
                }
    }
}

/// Checks an array name: non-empty, at most [`MAX_NAME_BYTES`], no NUL.
pub fn validate_array_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_BYTES {
        "longer than 1024 bytes"
    } else if name.contains('\0') {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

impl ArraySchema {
    /// Validates and builds a schema. `chunk_shape = None` means one chunk of the
    /// full shape (axes of extent 0 get chunk extent 1).
    pub fn new(
        name: &str,
        dtype: DType,
        dims: Vec<String>,
        shape: Vec<u64>,
        chunk_shape: Option<Vec<u64>>,
        fill_value: Option<FillValue>,
    ) -> Result<Self> {
        let chunk_shape = chunk_shape.unwrap_or_else(|| shape.iter().map(|&s| s.max(1)).collect());
        Self::check(
            name,
            dtype,
            &dims,
            &shape,
            &chunk_shape,
            fill_value.as_ref(),
        )?;
        Ok(ArraySchema {
            dtype,
            dims,
            shape,
            chunk_shape,
            fill_value,
        })
    }

    /// The rules of [`ArraySchema::new`], on borrowed parts (`chunk_shape`
    /// already defaulted).
    fn check(
        name: &str,
        dtype: DType,
        dims: &[String],
        shape: &[u64],
        chunk_shape: &[u64],
        fill_value: Option<&FillValue>,
    ) -> Result<()> {
        let bad = |reason: String| Error::InvalidSchema {
            name: name.to_owned(),
            reason,
        };
        if shape.len() > MAX_RANK {
            return Err(bad(format!("rank {} exceeds {MAX_RANK}", shape.len())));
        }
        if dims.len() != shape.len() {
            return Err(bad(format!(
                "{} dimension names for a shape of rank {}",
                dims.len(),
                shape.len()
            )));
        }
        for d in dims {
            if d.is_empty() || d.len() > MAX_NAME_BYTES || d.contains('\0') {
                return Err(bad(format!("invalid dimension name {d:?}")));
            }
        }
        if chunk_shape.len() != shape.len() {
            return Err(bad(format!(
                "chunk shape {chunk_shape:?} has a different rank from shape {shape:?}"
            )));
        }
        if chunk_shape.contains(&0) {
            return Err(bad(format!(
                "chunk shape {chunk_shape:?} has a zero extent"
            )));
        }
        if shape
            .iter()
            .try_fold(1u64, |a, &s| a.checked_mul(s))
            .is_none()
        {
            return Err(bad(format!("shape {shape:?} has more than 2^64 cells")));
        }
        let chunk_cells = chunk_shape
            .iter()
            .try_fold(1u64, |a, &s| a.checked_mul(s))
            .ok_or_else(|| bad(format!("chunk shape {chunk_shape:?} is too large")))?;
        let width = dtype.size_bytes().unwrap_or(1) as u64;
        if chunk_cells.saturating_mul(width) > MAX_CHUNK_BYTES {
            return Err(bad(format!(
                "a chunk of {chunk_shape:?} exceeds {MAX_CHUNK_BYTES} bytes; choose a smaller chunk shape"
            )));
        }
        if let Some(f) = fill_value {
            if f.dtype() != dtype {
                return Err(Error::FillMismatch {
                    name: name.to_owned(),
                    fill: f.dtype(),
                    dtype,
                });
            }
        }
        Ok(())
    }

    /// Checks a schema built by hand (its fields are public) with exactly the
    /// rules of [`ArraySchema::new`]: every entry point that accepts a schema
    /// calls this, so a zero chunk extent or a rank mismatch is an
    /// `InvalidSchema` error, never a panic in the chunk grid or a registry
    /// that no longer opens.
    pub fn validate(&self, name: &str) -> Result<()> {
        Self::check(
            name,
            self.dtype,
            &self.dims,
            &self.shape,
            &self.chunk_shape,
            self.fill_value.as_ref(),
        )
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of cells.
    pub fn n_cells(&self) -> u64 {
        self.shape.iter().product()
    }

    /// Chunks along each axis.
    pub fn grid_shape(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunk_shape)
            .map(|(&s, &c)| s.div_ceil(c))
            .collect()
    }

    /// Number of chunks in the grid.
    pub fn n_chunks(&self) -> u64 {
        self.shape
            .iter()
            .zip(&self.chunk_shape)
            .map(|(&s, &c)| s.div_ceil(c))
            .product()
    }

    /// Origin and (edge-clipped) shape of chunk `chunk_idx` (row-major over the grid).
    pub fn chunk_region(&self, chunk_idx: u64) -> (Vec<u64>, Vec<u64>) {
        let grid = self.grid_shape();
        let mut rem = chunk_idx;
        let mut origin = vec![0; grid.len()];
        for axis in (0..grid.len()).rev() {
            origin[axis] = (rem % grid[axis]) * self.chunk_shape[axis];
            rem /= grid[axis];
        }
        let shape = origin
            .iter()
            .zip(&self.shape)
            .zip(&self.chunk_shape)
            .map(|((&o, &s), &c)| c.min(s - o))
            .collect();
        (origin, shape)
    }

    /// Cells in chunk `chunk_idx` (as [`ArraySchema::chunk_region`]'s shape,
    /// computed without building it: footers decode this per chunk).
    pub fn chunk_cells(&self, chunk_idx: u64) -> u64 {
        let mut rem = chunk_idx;
        let mut cells = 1u64;
        for (&s, &c) in self.shape.iter().zip(&self.chunk_shape).rev() {
            let g = s.div_ceil(c);
            if g == 0 {
                return 0;
            }
            let origin = (rem % g) * c;
            rem /= g;
            cells *= c.min(s - origin);
        }
        cells
    }

    /// The linear index of the one chunk the region lies in, if it lies in
    /// one (the usual small read), found without building the grid. The
    /// region must be in bounds and non-empty.
    pub(crate) fn single_chunk(&self, start: &[u64], count: &[u64]) -> Option<u64> {
        let mut idx = 0u64;
        for (((&s, &n), &c), &len) in start
            .iter()
            .zip(count)
            .zip(&self.chunk_shape)
            .zip(&self.shape)
        {
            let lo = s / c;
            if (s + n - 1) / c != lo {
                return None;
            }
            idx = idx * len.div_ceil(c) + lo;
        }
        Some(idx)
    }

    /// True when the region is exactly chunk `idx`'s cells (as
    /// [`ArraySchema::chunk_region`] gives them), checked without building
    /// it. The region must be in bounds and non-empty, in chunk `idx`.
    pub(crate) fn is_whole_chunk(&self, start: &[u64], count: &[u64]) -> bool {
        start
            .iter()
            .zip(count)
            .zip(&self.chunk_shape)
            .zip(&self.shape)
            .all(|(((&s, &n), &c), &len)| s % c == 0 && n == c.min(len - s))
    }

    /// Linear indexes of the chunks that intersect the region, in row-major order.
    /// The region must be in bounds and non-empty.
    pub(crate) fn chunks_touching(&self, start: &[u64], count: &[u64]) -> Vec<u64> {
        if let Some(idx) = self.single_chunk(start, count) {
            return vec![idx];
        }
        let grid = self.grid_shape();
        let lo: Vec<u64> = start
            .iter()
            .zip(&self.chunk_shape)
            .map(|(&s, &c)| s / c)
            .collect();
        let hi: Vec<u64> = start
            .iter()
            .zip(count)
            .zip(&self.chunk_shape)
            .map(|((&s, &n), &c)| (s + n - 1) / c)
            .collect();
        let mut out = Vec::new();
        let mut cur = lo.clone();
        loop {
            out.push(
                cur.iter()
                    .zip(&grid)
                    .fold(0u64, |acc, (&i, &g)| acc * g + i),
            );
            // Odometer increment, last axis fastest.
            let mut axis = cur.len();
            loop {
                if axis == 0 {
                    return out;
                }
                axis -= 1;
                if cur[axis] < hi[axis] {
                    cur[axis] += 1;
                    break;
                }
                cur[axis] = lo[axis];
            }
        }
    }

    /// Resolves a caller's (start, count): empty vectors mean the whole array.
    /// Checks rank and bounds.
    pub fn resolve_region(
        &self,
        name: &str,
        start: &[u64],
        count: &[u64],
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let (start, count) = if start.is_empty() && count.is_empty() {
            (vec![0; self.rank()], self.shape.clone())
        } else {
            (start.to_vec(), count.to_vec())
        };
        for len in [start.len(), count.len()] {
            if len != self.rank() {
                return Err(Error::RankMismatch {
                    name: name.to_owned(),
                    expected: self.rank(),
                    actual: len,
                });
            }
        }
        let inside = start
            .iter()
            .zip(&count)
            .zip(&self.shape)
            .all(|((&s, &n), &ext)| s.checked_add(n).is_some_and(|end| end <= ext));
        if !inside {
            return Err(Error::OutOfBounds {
                name: name.to_owned(),
                start,
                count,
                shape: self.shape.clone(),
            });
        }
        Ok((start, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(shape: Vec<u64>, chunk: Option<Vec<u64>>) -> ArraySchema {
        let dims = (0..shape.len()).map(|i| format!("d{i}")).collect();
        ArraySchema::new("a", DType::Float32, dims, shape, chunk, None).unwrap()
    }

    #[test]
    fn grid_and_regions() {
        let s = schema(vec![5, 7], Some(vec![2, 3]));
        assert_eq!(s.grid_shape(), vec![3, 3]);
        assert_eq!(s.chunk_region(0), (vec![0, 0], vec![2, 3]));
        assert_eq!(s.chunk_region(8), (vec![4, 6], vec![1, 1]));
        assert_eq!(s.chunks_touching(&[1, 2], &[2, 2]), vec![0, 1, 3, 4]);
        assert_eq!(s.chunks_touching(&[4, 6], &[1, 1]), vec![8]);
        // One chunk, found without the grid, and whether a region is it.
        assert_eq!(s.single_chunk(&[2, 3], &[2, 3]), Some(4));
        assert_eq!(s.single_chunk(&[1, 2], &[2, 2]), None);
        assert_eq!(s.chunks_touching(&[3, 4], &[1, 2]), vec![4]);
        assert!(s.is_whole_chunk(&[2, 3], &[2, 3]));
        assert!(s.is_whole_chunk(&[4, 6], &[1, 1]));
        assert!(!s.is_whole_chunk(&[3, 4], &[1, 2]));
        for idx in 0..s.n_chunks() {
            let (o, c) = s.chunk_region(idx);
            assert_eq!(s.chunk_cells(idx), c.iter().product::<u64>());
            assert_eq!(s.single_chunk(&o, &c), Some(idx));
            assert!(s.is_whole_chunk(&o, &c));
        }
    }

    #[test]
    fn scalars_and_empty_axes() {
        let s = schema(vec![], None);
        assert_eq!(s.n_chunks(), 1);
        assert_eq!(s.chunk_region(0), (vec![], vec![]));
        assert_eq!(s.chunks_touching(&[], &[]), vec![0]);
        let e = schema(vec![0, 4], None);
        assert_eq!(e.chunk_shape, vec![1, 4]);
        assert_eq!(e.n_chunks(), 0);
    }

    #[test]
    fn bad_schemas_are_rejected() {
        let new = |shape: Vec<u64>, chunk: Option<Vec<u64>>| {
            let dims = (0..shape.len()).map(|i| format!("d{i}")).collect();
            ArraySchema::new("a", DType::Float64, dims, shape, chunk, None)
        };
        assert!(new(vec![4], Some(vec![0])).is_err());
        assert!(new(vec![4, 4], Some(vec![2])).is_err());
        assert!(new(vec![1 << 40], None).is_err()); // one chunk of 8 TiB
        assert!(new(vec![u64::MAX, 4], Some(vec![1, 1])).is_err());
        assert!(ArraySchema::new(
            "a",
            DType::Int8,
            vec![],
            vec![],
            None,
            Some(FillValue::Int16(1))
        )
        .is_err());
    }

    #[test]
    fn regions_are_checked() {
        let s = schema(vec![4, 4], None);
        assert!(s.resolve_region("a", &[], &[]).is_ok());
        assert!(matches!(
            s.resolve_region("a", &[0], &[1]),
            Err(Error::RankMismatch { .. })
        ));
        assert!(matches!(
            s.resolve_region("a", &[3, 0], &[2, 1]),
            Err(Error::OutOfBounds { .. })
        ));
        assert!(matches!(
            s.resolve_region("a", &[u64::MAX, 0], &[2, 1]),
            Err(Error::OutOfBounds { .. })
        ));
    }
}
