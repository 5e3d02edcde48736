//! [`max_pool2d_nhwc_cpu`]: max pooling of channels-last data with TF's padding, in the
//! input's memory order.

use super::cpu::cpu_f32;
use super::geometry::{axis, AxisPad};
use candle_core::{DType, Device, Tensor};

/// Max pooling on logically channels-last data, f32 on the CPU: `x` `[B, H, W, C]`, window
/// and stride `(rows, columns)`, padding `[top, bottom, left, right]` whose positions hold
/// `pad_value` (−∞: TF's SAME, where padding takes no part; a finite value: a `PadV2` with
/// that constant folded in). Returns `[B, OH, OW, C]` in the input's memory order:
/// contiguous when `x` is physically NHWC, the NHWC view of a contiguous NCHW buffer when
/// `x` is such a view (an ONNX-converted graph's), so that neither case copies the input.
/// candle's `max_pool2d` wants NCHW and has no padding, so TF's needed a padded copy first.
pub fn max_pool2d_nhwc_cpu(
    x: &Tensor,
    window: (usize, usize),
    stride: (usize, usize),
    pad: [usize; 4],
    pad_value: f32,
) -> candle_core::Result<Tensor> {
    const OP: &str = "max_pool2d_nhwc_cpu";
    let (b, h, w, c) = x.dims4()?;
    let ((kh, kw), (sh, sw)) = (window, stride);
    let [pt, pb, pl, pr] = pad;
    let rows = axis(OP, "height", h, kh, sh, 1, AxisPad::Explicit(pt, pb));
    let cols = axis(OP, "width", w, kw, sw, 1, AxisPad::Explicit(pl, pr));
    let (Ok((oh, ..)), Ok((ow, ..))) = (rows, cols) else {
        candle_core::bail!(
            "{OP}: input {:?}, window {window:?}, stride {stride:?}, padding {pad:?}",
            x.dims()
        );
    };
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        candle_core::bail!("{OP}: f32 tensors on the CPU only");
    }
    // The window's start in the input and whether it reaches into the padding, per axis.
    let span = |o: usize, s: usize, p: usize, k: usize, n: usize| {
        let start = o * s;
        let lo = start.max(p) - p;
        let hi = (start + k).min(n + p).saturating_sub(p);
        (lo, hi.max(lo), start < p || start + k > n + p)
    };
    let planar = x.permute((0, 3, 1, 2))?;
    if !x.is_contiguous() && planar.is_contiguous() {
        // NCHW in memory: pool each channel's plane.
        let (xs, xl) = planar.storage_and_layout();
        let xv = cpu_f32(&xs, xl, OP, "input")?;
        let mut out = vec![0f32; b * c * oh * ow];
        for (plane, dst) in xv
            .chunks_exact((h * w).max(1))
            .zip(out.chunks_exact_mut((oh * ow).max(1)))
        {
            for (oy, drow) in dst.chunks_exact_mut(ow.max(1)).enumerate() {
                let (y0, y1, ypad) = span(oy, sh, pt, kh, h);
                for (ox, d) in drow.iter_mut().enumerate() {
                    let (x0, x1, xpad) = span(ox, sw, pl, kw, w);
                    let mut m = if ypad || xpad {
                        pad_value
                    } else {
                        f32::NEG_INFINITY
                    };
                    for row in plane[y0 * w..y1 * w].chunks_exact(w.max(1)) {
                        for &v in &row[x0..x1] {
                            m = m.max(v);
                        }
                    }
                    *d = m;
                }
            }
        }
        return Tensor::from_vec(out, (b, c, oh, ow), &Device::Cpu)?.permute((0, 2, 3, 1));
    }
    let xc = x.contiguous()?;
    let (xs, xl) = xc.storage_and_layout();
    let xv = cpu_f32(&xs, xl, OP, "input")?;
    let mut out = vec![f32::NEG_INFINITY; b * oh * ow * c];
    for (r, orow) in out.chunks_exact_mut((ow * c).max(1)).enumerate() {
        let (bi, oy) = (r / oh, r % oh);
        let image = &xv[bi * h * w * c..(bi + 1) * h * w * c];
        let (y0, y1, ypad) = span(oy, sh, pt, kh, h);
        for (ox, o) in orow.chunks_exact_mut(c.max(1)).enumerate() {
            let (x0, x1, xpad) = span(ox, sw, pl, kw, w);
            if ypad || xpad {
                o.fill(pad_value);
            }
            for iy in y0..y1 {
                let px = &image[(iy * w + x0) * c..(iy * w + x1) * c];
                for p in px.chunks_exact(c.max(1)) {
                    for (ov, &xv) in o.iter_mut().zip(p) {
                        *ov = ov.max(xv);
                    }
                }
            }
        }
    }
    Tensor::from_vec(out, (b, oh, ow, c), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{halves_jittered as ramp, max_abs_diff};

    #[test]
    fn max_pool_nhwc_matches_candle_on_padded_input_in_both_memory_orders() {
        let x = ramp(&[2, 7, 6, 5], 0.4);
        let cases = [
            (2, 2, [0, 1, 0, 0], f32::NEG_INFINITY),
            (3, 2, [1, 1, 1, 1], f32::NEG_INFINITY),
            (3, 2, [1, 1, 1, 1], 0.25), // a PadV2 constant that beats some inputs
            (2, 2, [0, 0, 0, 0], 0.0),
        ];
        for &(k, s, pad, value) in &cases {
            let xn = x.permute((0, 3, 1, 2)).unwrap();
            let mut xp = xn.clone();
            for (d, (a, b)) in [(2, (pad[0], pad[1])), (3, (pad[2], pad[3]))] {
                let mut parts = Vec::new();
                let mut shape = xp.dims().to_vec();
                if a > 0 {
                    shape[d] = a;
                    parts.push(Tensor::full(value, shape.clone(), &Device::Cpu).unwrap());
                }
                parts.push(xp.clone());
                if b > 0 {
                    shape[d] = b;
                    parts.push(Tensor::full(value, shape.clone(), &Device::Cpu).unwrap());
                }
                xp = Tensor::cat(&parts, d).unwrap();
            }
            let want = xp
                .max_pool2d_with_stride((k, k), (s, s))
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap()
                .contiguous()
                .unwrap();
            let got = max_pool2d_nhwc_cpu(&x, (k, k), (s, s), pad, value).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert!(got.is_contiguous());
            assert_eq!(max_abs_diff(&got, &want), 0.0, "k{k} s{s} {pad:?} {value}");
            // The NHWC view of an NCHW buffer: pooled per plane, returned in that order.
            let view = xn.contiguous().unwrap().permute((0, 2, 3, 1)).unwrap();
            let got = max_pool2d_nhwc_cpu(&view, (k, k), (s, s), pad, value).unwrap();
            assert!(got.permute((0, 3, 1, 2)).unwrap().is_contiguous());
            let got = got.contiguous().unwrap();
            assert_eq!(
                max_abs_diff(&got, &want),
                0.0,
                "NCHW k{k} s{s} {pad:?} {value}"
            );
        }
    }

    #[test]
    fn bad_windows_are_errors() {
        let x = ramp(&[1, 4, 4, 2], 0.0);
        for (k, s, pad) in [
            ((0, 2), (1, 1), [0; 4]),
            ((2, 2), (0, 1), [0; 4]),
            ((6, 2), (1, 1), [0, 1, 0, 0]),
        ] {
            let e = max_pool2d_nhwc_cpu(&x, k, s, pad, 0.0)
                .unwrap_err()
                .to_string();
            assert!(e.contains("max_pool2d_nhwc_cpu"), "{e}");
        }
    }
}
