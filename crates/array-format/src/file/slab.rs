//! Hyperslab copies between chunks and caller arrays.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Slice};

/// Per-axis intersection of a chunk `[origin, origin+shape)` with a region
/// `[start, start+count)`: (range in chunk coordinates, range in region coordinates).
pub(crate) fn intersect(
    origin: &[u64],
    shape: &[u64],
    start: &[u64],
    count: &[u64],
) -> Vec<((usize, usize), (usize, usize))> {
    (0..origin.len())
        .map(|a| {
            let lo = origin[a].max(start[a]);
            let hi = (origin[a] + shape[a]).min(start[a] + count[a]);
            (
                ((lo - origin[a]) as usize, (hi - origin[a]) as usize),
                ((lo - start[a]) as usize, (hi - start[a]) as usize),
            )
        })
        .collect()
}

/// Copies `src[src_ranges]` into `dst[dst_ranges]`.
pub(crate) fn copy_box<T: Clone>(
    dst: &mut ArrayViewMutD<'_, T>,
    dst_ranges: &[(usize, usize)],
    src: &ArrayViewD<'_, T>,
    src_ranges: &[(usize, usize)],
) {
    let s = src.slice_each_axis(|ax| {
        let (a, b) = src_ranges[ax.axis.index()];
        Slice::from(a..b)
    });
    let mut d = dst.slice_each_axis_mut(|ax| {
        let (a, b) = dst_ranges[ax.axis.index()];
        Slice::from(a..b)
    });
    d.assign(&s);
}

/// Copies the box `src_ranges` of a chunk of shape `src_shape`, given as
/// its cells' encoding (`width` bytes each, C order), into the box
/// `dst_ranges` of `dst`, the cells of a standard-layout array of
/// `dst_shape`, one row of the last axis at a time through `copy` (which
/// decodes a row's bytes into its cells). The boxes have the same extent
/// on every axis, and `src` holds exactly the chunk's cells.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_rows<T>(
    src: &[u8],
    width: usize,
    src_shape: &[u64],
    src_ranges: &[(usize, usize)],
    dst: &mut [T],
    dst_shape: &[usize],
    dst_ranges: &[(usize, usize)],
    copy: fn(&[u8], &mut [T]) -> bool,
) {
    let nd = src_shape.len();
    let Some(last) = nd.checked_sub(1) else {
        // A 0-dimensional array: its one cell.
        let done = copy(&src[..width], &mut dst[..1]);
        debug_assert!(done, "one cell's bytes");
        return;
    };
    // Strides in cells, C order.
    let mut src_stride = vec![1usize; nd];
    let mut dst_stride = vec![1usize; nd];
    for a in (0..last).rev() {
        src_stride[a] = src_stride[a + 1] * src_shape[a + 1] as usize;
        dst_stride[a] = dst_stride[a + 1] * dst_shape[a + 1];
    }
    let row = src_ranges[last].1 - src_ranges[last].0;
    if row == 0 || src_ranges.iter().any(|&(a, b)| b == a) {
        return;
    }
    // An odometer over every axis but the last, within the boxes.
    let mut at: Vec<usize> = src_ranges[..last].iter().map(|&(a, _)| a).collect();
    loop {
        let mut s = src_ranges[last].0;
        let mut d = dst_ranges[last].0;
        for a in 0..last {
            s += at[a] * src_stride[a];
            d += (at[a] - src_ranges[a].0 + dst_ranges[a].0) * dst_stride[a];
        }
        let done = copy(&src[s * width..(s + row) * width], &mut dst[d..d + row]);
        debug_assert!(done, "a row's bytes decode as its cells");
        let mut a = last;
        loop {
            if a == 0 {
                return;
            }
            a -= 1;
            at[a] += 1;
            if at[a] < src_ranges[a].1 {
                break;
            }
            at[a] = src_ranges[a].0;
        }
    }
}

/// An owned standard-layout copy of `src[ranges]`.
pub(crate) fn extract<T: Clone>(src: &ArrayViewD<'_, T>, ranges: &[(usize, usize)]) -> ArrayD<T> {
    src.slice_each_axis(|ax| {
        let (a, b) = ranges[ax.axis.index()];
        Slice::from(a..b)
    })
    .as_standard_layout()
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ArrayElement;
    use ndarray::IxDyn;

    /// `copy_rows` from a chunk's bytes puts every cell where `copy_box`
    /// from the chunk's cells does, on 0 to 4 axes and boxes of every
    /// position, and leaves the rest of the destination alone.
    #[test]
    fn rows_copied_from_bytes_land_where_cells_copied_from_an_array_do() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for case in 0..400 {
            let nd = (case % 5) as usize;
            let cshape: Vec<u64> = (0..nd).map(|_| 1 + next(6)).collect();
            let dshape: Vec<usize> = (0..nd).map(|_| 1 + next(7) as usize).collect();
            // A box no larger than either array on each axis.
            let mut cr = Vec::new();
            let mut rr = Vec::new();
            for a in 0..nd {
                let len = 1 + next(cshape[a].min(dshape[a] as u64)) as usize;
                let c0 = next(cshape[a] - len as u64 + 1) as usize;
                let d0 = next((dshape[a] - len + 1) as u64) as usize;
                cr.push((c0, c0 + len));
                rr.push((d0, d0 + len));
            }
            let n: u64 = cshape.iter().product();
            let cells: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut bytes = Vec::new();
            f32::encode_fixed(&cells, &mut bytes);
            let cdims: Vec<usize> = cshape.iter().map(|&s| s as usize).collect();
            let chunk = ArrayD::from_shape_vec(IxDyn(&cdims), cells).unwrap();
            let mut want = ArrayD::from_elem(IxDyn(&dshape), -1.0f32);
            copy_box(&mut want.view_mut(), &rr, &chunk.view(), &cr);
            let mut got = ArrayD::from_elem(IxDyn(&dshape), -1.0f32);
            copy_rows(
                &bytes,
                4,
                &cshape,
                &cr,
                got.as_slice_mut().unwrap(),
                &dshape,
                &rr,
                f32::copy_le,
            );
            assert_eq!(
                got, want,
                "case {case}: chunk {cshape:?} {cr:?} into {dshape:?} {rr:?}"
            );
        }
    }
}
