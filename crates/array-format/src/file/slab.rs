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

/// An owned standard-layout copy of `src[ranges]`.
pub(crate) fn extract<T: Clone>(src: &ArrayViewD<'_, T>, ranges: &[(usize, usize)]) -> ArrayD<T> {
    src.slice_each_axis(|ax| {
        let (a, b) = ranges[ax.axis.index()];
        Slice::from(a..b)
    })
    .as_standard_layout()
    .into_owned()
}
