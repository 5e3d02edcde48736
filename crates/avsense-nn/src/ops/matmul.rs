//! Matrix products through the `gemm` crate, made safe: `gemm::gemm` takes raw pointers and
//! strides, so a wrong extent reads or writes outside the buffers. Here each operand is a
//! strided view over a slice, built by a constructor that checks that every element of the
//! view lies inside the slice, and [`gemm`] checks that the shapes fit together; the one
//! `unsafe` call then holds by construction.

use gemm::Parallelism;

/// Checks that a `rows × cols` view with the given strides stays inside `len` values and
/// that its strides fit `isize`; returns the strides as `isize`.
fn extent(
    len: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
) -> candle_core::Result<(isize, isize)> {
    let (Ok(rs), Ok(cs)) = (isize::try_from(row_stride), isize::try_from(col_stride)) else {
        candle_core::bail!("gemm: strides ({row_stride}, {col_stride}) overflow isize");
    };
    if rows > 0 && cols > 0 {
        // The furthest element: (rows − 1, cols − 1), strides being non-negative.
        let last = (rows - 1).checked_mul(row_stride).and_then(|a| {
            (cols - 1)
                .checked_mul(col_stride)
                .and_then(|b| a.checked_add(b))
        });
        if last.is_none_or(|last| last >= len) {
            candle_core::bail!(
                "gemm: a {rows}×{cols} view with strides ({row_stride}, {col_stride}) does not fit in {len} values"
            );
        }
    }
    Ok((rs, cs))
}

/// A `rows × cols` matrix over a slice `D` (`&[f32]` or `&mut [f32]`): element `(i, j)` is
/// `data[i·row_stride + j·col_stride]`, every one of them inside `data`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mat<D> {
    data: D,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

/// A read-only matrix view.
pub(super) type MatRef<'a> = Mat<&'a [f32]>;
/// A writable matrix view.
pub(super) type MatMut<'a> = Mat<&'a mut [f32]>;

impl<D: AsRef<[f32]>> Mat<D> {
    /// The view, or an error when an element would lie outside `data`.
    pub(super) fn new(
        data: D,
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> candle_core::Result<Self> {
        let len = data.as_ref().len();
        let (rs, cs) = extent(len, rows, cols, row_stride, col_stride)?;
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// Number of rows.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }
}

impl MatRef<'_> {
    /// The transposed view (the same elements, no copy).
    pub(super) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`, in f32 through `gemm::gemm`
/// (the same call, operand order and summation as before this wrapper existed). Errors when
/// the shapes do not fit together (`lhs` `m × k`, `rhs` `k × n`, `dst` `m × n`).
pub(super) fn gemm(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    accumulate: bool,
    parallelism: Parallelism,
) -> candle_core::Result<()> {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if lhs.rows != m || rhs.rows != k || rhs.cols != n {
        candle_core::bail!(
            "gemm: {}×{} = {}×{} · {}×{} does not fit together",
            dst.rows,
            dst.cols,
            lhs.rows,
            lhs.cols,
            rhs.rows,
            rhs.cols
        );
    }
    let alpha = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: `MatRef::new` / `MatMut::new` checked that every element (i, j) of each view,
    // at offset i·rs + j·cs with non-negative strides, lies inside its slice, and the check
    // above makes the m × k, k × n and m × n extents that gemm reads and writes those of the
    // views; `dst` is a unique borrow, so it overlaps neither input. With read_dst = false
    // gemm does not read dst: dst = 1 · lhs · rhs; with true, dst = 1 · dst + 1 · lhs · rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.cs,
            dst.rs,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs,
            lhs.rs,
            rhs.data.as_ptr(),
            rhs.cs,
            rhs.rs,
            alpha,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// Whether a product of `m·n·k` multiply-adds pays for `threads` threads; the parallelism
/// to ask gemm for.
pub(super) fn parallelism(work: usize, threads: usize) -> Parallelism {
    // Threads only pay for themselves on large products (as in `parallel_chunks`).
    if threads > 1 && work >= (1 << 20) {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_outside_their_slice_are_refused() {
        let v = vec![0f32; 12];
        assert!(MatRef::new(&v, 3, 4, 4, 1).is_ok());
        assert!(MatRef::new(&v, 4, 3, 1, 4).is_ok()); // the transposed 3 × 4
        assert!(MatRef::new(&v, 4, 4, 1, 4).is_err());
        assert!(MatRef::new(&v, 0, 100, 100, 100).is_ok());
        assert!(MatRef::new(&v, 2, 2, usize::MAX / 2, 1).is_err());
        assert!(MatRef::new(&v, 1, 1, usize::MAX, 0).is_err());
    }

    #[test]
    fn products_match_the_written_out_sum_and_shapes_must_fit() {
        // lhs 2×3, rhs 3×2 (stored transposed), dst 2×2 with a row stride of 3.
        let a = [1f32, 2., 3., 4., 5., 6.];
        let bt = [1f32, 0., -1., 2., 1., 0.];
        let mut d = vec![10f32; 6];
        let lhs = MatRef::new(&a, 2, 3, 3, 1).unwrap();
        let rhs = MatRef::new(&bt, 2, 3, 3, 1).unwrap().t();
        gemm(
            MatMut::new(&mut d, 2, 2, 3, 1).unwrap(),
            lhs,
            rhs,
            false,
            Parallelism::None,
        )
        .unwrap();
        assert_eq!(d, vec![-2., 4., 10., -2., 13., 10.]);
        gemm(
            MatMut::new(&mut d, 2, 2, 3, 1).unwrap(),
            lhs,
            rhs,
            true,
            Parallelism::None,
        )
        .unwrap();
        assert_eq!(d, vec![-4., 8., 10., -4., 26., 10.]);
        assert!(gemm(
            MatMut::new(&mut d, 2, 2, 3, 1).unwrap(),
            lhs,
            lhs,
            false,
            Parallelism::None
        )
        .is_err());
    }
}
