//! The im2col + gemm skeleton of both regular convolutions ([`conv2d_cpu`](super::conv2d_cpu),
//! NCHW out, and [`conv2d_nhwc_cpu`](super::conv2d_nhwc_cpu), NHWC out): the input is read
//! as NHWC, so the im2col row of an output pixel is `KH` runs of `KW·C` contiguous input
//! values (one copy each when inside the image), the reduction index is
//! `k = (ky·KW + kx)·C + c`, and the rows of a block of output pixels form an `[n, K]`
//! matrix that the caller multiplies with its filter, writing its own output layout. A 1×1
//! stride-1 unpadded convolution needs no copy: the NHWC input already is the `[HW, C]`
//! matrix. The two callers differ only in the filter's layout and where the product goes.

use super::cpu::{cpu_f32, parallel_parts};
use super::geometry::{axis, tap, AxisPad};
use super::matmul::MatRef;
use super::simd::{load_lanes, LANES};
use candle_core::{DType, Device, Tensor};

/// Padding `[top, bottom, left, right]`, stride and dilation `(rows, columns)` of one
/// convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConvParams {
    /// Zero padding `[top, bottom, left, right]`.
    pub(super) pad: [usize; 4],
    /// `(rows, columns)`.
    pub(super) stride: (usize, usize),
    /// `(rows, columns)`.
    pub(super) dilation: (usize, usize),
}

/// Resolved geometry of one regular convolution of NHWC data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConvGeometry {
    /// Batch.
    pub(super) b: usize,
    /// Input rows.
    h: usize,
    /// Input columns.
    w: usize,
    /// Input channels.
    c: usize,
    /// Filter rows.
    kh: usize,
    /// Filter columns.
    kw: usize,
    /// Output channels.
    pub(super) co: usize,
    /// Output rows.
    pub(super) oh: usize,
    /// Output columns.
    pub(super) ow: usize,
    /// Padding, stride, dilation.
    p: ConvParams,
}

impl ConvGeometry {
    /// Checks a convolution of an NHWC input `[B, H, W, C]` (`input`) with a filter of
    /// `KH × KW` taps from `C` to `CO` channels (`filter` = `[KH, KW, C, CO]`, in whatever
    /// order the caller holds it: `x` and `w` only name the tensors in errors), f32 on the
    /// CPU. `op` names the caller in errors.
    pub(super) fn new(
        op: &str,
        x: &Tensor,
        w: &Tensor,
        input: [usize; 4],
        filter: [usize; 4],
        p: ConvParams,
    ) -> candle_core::Result<Self> {
        let [b, h, wd, c] = input;
        let [kh, kw, ci, co] = filter;
        let ((sh, sw), (dh, dw)) = (p.stride, p.dilation);
        if ci != c || [sh, sw, dh, dw, kh, kw, co].contains(&0) {
            candle_core::bail!(
                "{op}: input {:?}, filter {:?}, stride {:?}, dilation {:?}",
                x.dims(),
                w.dims(),
                p.stride,
                p.dilation
            );
        }
        if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 || w.dtype() != DType::F32
        {
            candle_core::bail!("{op}: f32 tensors on the CPU only");
        }
        let [pt, pb, pl, pr] = p.pad;
        let (oh, ..) = axis(op, "height", h, kh, sh, dh, AxisPad::Explicit(pt, pb))?;
        let (ow, ..) = axis(op, "width", wd, kw, sw, dw, AxisPad::Explicit(pl, pr))?;
        Ok(Self {
            b,
            h,
            w: wd,
            c,
            kh,
            kw,
            co,
            oh,
            ow,
            p,
        })
    }

    /// Length of an im2col row: `KH·KW·C`.
    pub(super) fn k(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Output pixels per image.
    pub(super) fn hw(&self) -> usize {
        self.oh * self.ow
    }

    /// A 1×1 stride-1 unpadded convolution: the input itself is the im2col matrix.
    fn direct(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == (1, 1) && self.p.pad == [0; 4]
    }

    /// Writes the im2col rows of output pixels `t0 .. t0 + rows.len() / K` of image `xb`.
    fn rows(&self, xb: &[f32], t0: usize, rows: &mut [f32]) {
        let (c, kw, wd) = (self.c, self.kw, self.w);
        let ((sh, sw), (dh, dw)) = (self.p.stride, self.p.dilation);
        let [pt, _, pl, _] = self.p.pad;
        let run = kw * c;
        for (t, row) in rows.chunks_exact_mut(self.k()).enumerate() {
            let (oy, ox) = ((t0 + t) / self.ow, (t0 + t) % self.ow);
            for (ky, seg) in row.chunks_exact_mut(run).enumerate() {
                let Some(iy) = tap(oy, ky, sh, dh, pt, self.h) else {
                    seg.fill(0.0);
                    continue;
                };
                let line = &xb[iy * wd * c..(iy + 1) * wd * c];
                // The whole run of KW pixels inside the row: one copy.
                match (ox * sw).checked_sub(pl) {
                    Some(ix) if dw == 1 && ix + kw <= wd => {
                        copy_run(seg, &line[ix * c..(ix + kw) * c]);
                    }
                    _ => {
                        for (kx, px) in seg.chunks_exact_mut(c).enumerate() {
                            match tap(ox, kx, sw, dw, pl, wd) {
                                Some(ix) => px.copy_from_slice(&line[ix * c..(ix + 1) * c]),
                                None => px.fill(0.0),
                            }
                        }
                    }
                }
            }
        }
    }

    /// The input's values, checked against the geometry.
    fn input<'a>(&self, op: &str, xv: &'a [f32], x: &Tensor) -> candle_core::Result<&'a [f32]> {
        let image = self.h * self.w * self.c;
        if xv.len() != self.b * image {
            candle_core::bail!(
                "{op}: input holds {} values, not the {} of {:?}",
                xv.len(),
                self.b * image,
                x.dims()
            );
        }
        Ok(xv)
    }

    /// The `[n, K]` matrix of output pixels `t0 .. t0 + n` of image `xb`: built in `col`
    /// (at least `n·K` values), or the input itself for a direct convolution.
    fn block<'a>(
        &self,
        xb: &'a [f32],
        t0: usize,
        n: usize,
        col: &'a mut [f32],
    ) -> candle_core::Result<MatRef<'a>> {
        let k = self.k();
        if self.direct() {
            MatRef::new(&xb[t0 * self.c..], n, k, self.c, 1)
        } else {
            let block = &mut col[..n * k];
            self.rows(xb, t0, block);
            MatRef::new(block, n, k, k, 1)
        }
    }

    /// Runs the convolution of the NHWC input `x` block by block: for each image `bi` and
    /// each block of up to `tile` output pixels from `t0`, builds the block's `[n, K]`
    /// im2col matrix (or views the input as it for a direct convolution) and calls
    /// `product(bi, t0, matrix)`, which multiplies it with the filter into the output.
    pub(super) fn for_each_block(
        &self,
        op: &str,
        x: &Tensor,
        tile: usize,
        mut product: impl FnMut(usize, usize, MatRef<'_>) -> candle_core::Result<()>,
    ) -> candle_core::Result<()> {
        let xc = x.contiguous()?;
        let (xs, xl) = xc.storage_and_layout();
        let xv = self.input(op, cpu_f32(&xs, xl, op, "input")?, x)?;
        let (k, hw, image) = (self.k(), self.hw(), self.h * self.w * self.c);
        let tile = tile.max(1);
        let mut col = vec![0f32; if self.direct() { 0 } else { tile.min(hw) * k }];
        for (bi, xb) in xv.chunks_exact(image.max(1)).enumerate().take(self.b) {
            for t0 in (0..hw).step_by(tile) {
                let n = tile.min(hw - t0);
                product(bi, t0, self.block(xb, t0, n, &mut col)?)?;
            }
        }
        Ok(())
    }

    /// [`for_each_block`](Self::for_each_block) for an NHWC output `out` (`[B, OH, OW, CO]`,
    /// contiguous): `product(matrix, dst)` writes the block's `[n, CO]` rows into `dst`.
    /// The blocks of an image are shared out among the threads when the convolution is
    /// large enough ([`parallel_parts`]), each thread with its own im2col buffer, so that
    /// building rows, the products and the caller's epilogue all run in parallel (gemm's
    /// own threading inside one block did not pay: no faster at 2 threads than at 1 on
    /// NanoDet's layers).
    pub(super) fn par_blocks_nhwc(
        &self,
        op: &str,
        x: &Tensor,
        tile: usize,
        out: &mut [f32],
        product: impl Fn(MatRef<'_>, &mut [f32]) -> candle_core::Result<()> + Sync,
    ) -> candle_core::Result<()> {
        let xc = x.contiguous()?;
        let (xs, xl) = xc.storage_and_layout();
        let xv = self.input(op, cpu_f32(&xs, xl, op, "input")?, x)?;
        let (k, hw, co, image) = (self.k(), self.hw(), self.co, self.h * self.w * self.c);
        if out.len() != self.b * hw * co {
            candle_core::bail!("{op}: output of {} values for {:?}", out.len(), x.dims());
        }
        let work = hw * k * co;
        // With several threads, blocks small enough that each thread gets one.
        let threads = candle_core::utils::get_num_threads().max(1);
        let tile = match threads {
            1 => tile,
            t => tile.min(hw.div_ceil(t).max(16)),
        }
        .max(1);
        for (xb, ob) in xv
            .chunks_exact(image.max(1))
            .zip(out.chunks_exact_mut((hw * co).max(1)))
        {
            parallel_parts(ob, tile * co, work, |first, part| {
                let mut col = vec![0f32; if self.direct() { 0 } else { tile.min(hw) * k }];
                for (i, dst) in part.chunks_mut(tile * co).enumerate() {
                    let n = dst.len() / co;
                    product(self.block(xb, (first + i) * tile, n, &mut col)?, dst)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// `dst.copy_from_slice(src)` for the short runs of an im2col row (15 values for a 5×5
/// filter on RGB): in vectors of [`LANES`], the last one overlapping, instead of a call
/// to `memcpy` per run, which cost more than the copy itself (BlazeFace's first conv spent
/// ⅔ of its time building rows). Longer runs go to `copy_from_slice`.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    if n != src.len() || !(LANES..=8 * LANES).contains(&n) {
        dst.copy_from_slice(src);
        return;
    }
    let mut at = 0;
    while at + LANES <= n {
        dst[at..at + LANES].copy_from_slice(&load_lanes(src, at));
        at += LANES;
    }
    if at < n {
        let last = n - LANES;
        dst[last..].copy_from_slice(&load_lanes(src, last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::halves;

    #[test]
    fn copy_run_copies_every_length() {
        for n in 0..80 {
            let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut dst = vec![-1f32; n];
            copy_run(&mut dst, &src);
            assert_eq!(dst, src, "{n}");
        }
    }

    /// The im2col rows hold, for each output pixel and tap, the input pixel's channels or
    /// zeros where the tap falls in the padding.
    #[test]
    fn rows_are_the_taps_written_out() {
        let (h, w, c) = (5, 6, 3);
        let x = halves(&[1, h, w, c], 0.3);
        let wt = halves(&[3, 3, c, 2], 0.0);
        let p = ConvParams {
            pad: [1, 0, 2, 1],
            stride: (2, 1),
            dilation: (1, 2),
        };
        let g = ConvGeometry::new("t", &x, &wt, [1, h, w, c], [3, 3, c, 2], p).unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut rows = vec![f32::NAN; g.hw() * g.k()];
        g.rows(&xv, 0, &mut rows);
        for (t, row) in rows.chunks_exact(g.k()).enumerate() {
            let (oy, ox) = (t / g.ow, t % g.ow);
            for ky in 0..3 {
                for kx in 0..3 {
                    let iy = (oy * 2 + ky) as isize - 1;
                    let ix = (ox + kx * 2) as isize - 2;
                    for ch in 0..c {
                        let want = if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            0.0
                        } else {
                            xv[(iy as usize * w + ix as usize) * c + ch]
                        };
                        assert_eq!(row[(ky * 3 + kx) * c + ch], want, "pixel {t} tap {ky},{kx}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_geometry_is_an_error_naming_the_op() {
        let x = halves(&[1, 4, 4, 3], 0.0);
        let p = ConvParams {
            pad: [0; 4],
            stride: (1, 1),
            dilation: (1, 1),
        };
        for (filter, p) in [
            ([3, 3, 2, 4], p),
            ([5, 5, 3, 4], p),
            ([0, 3, 3, 4], p),
            (
                [3, 3, 3, 4],
                ConvParams {
                    stride: (0, 1),
                    ..p
                },
            ),
        ] {
            let w = halves(&filter, 0.0);
            let e = ConvGeometry::new("my_conv", &x, &w, [1, 4, 4, 3], filter, p)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("my_conv: "), "{e}");
        }
    }
}
