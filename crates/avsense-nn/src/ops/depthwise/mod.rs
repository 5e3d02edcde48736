//! [`depthwise_conv2d`]: its settings, its geometry, the candle op that runs it on the CPU
//! (generic NHWC rows and NCHW planes here, the register-blocked NHWC rows in `fast`), and
//! the fallback through candle's grouped `conv2d` on other devices. The layouts and padding
//! are described in the [`ops`](super) module doc.

mod fast;

use super::cpu::{cpu_storage_f32, parallel_chunks};
use super::geometry::{axis, tap, AxisPad};
use super::simd::Avx2;
use super::{ConvLayout, Padding};
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

/// Settings of [`depthwise_conv2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseConv2dConfig {
    /// Input/output layout.
    pub layout: ConvLayout,
    /// Stride `(rows, columns)`.
    pub stride: (usize, usize),
    /// Dilation `(rows, columns)`.
    pub dilation: (usize, usize),
    /// Padding.
    pub padding: Padding,
}

impl Default for DepthwiseConv2dConfig {
    fn default() -> Self {
        Self {
            layout: ConvLayout::Nchw,
            stride: (1, 1),
            dilation: (1, 1),
            padding: Padding::Same,
        }
    }
}

/// Resolved geometry of one depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    b: usize,
    c: usize,
    m: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pad_top: usize,
    pad_bottom: usize,
    pad_left: usize,
    pad_right: usize,
    layout: ConvLayout,
}

impl Geometry {
    fn co(&self) -> usize {
        self.c * self.m
    }

    fn out_dims(&self) -> Vec<usize> {
        match self.layout {
            ConvLayout::Nhwc => vec![self.b, self.oh, self.ow, self.co()],
            ConvLayout::Nchw => vec![self.b, self.co(), self.oh, self.ow],
        }
    }

    /// Multiply-adds of the whole op (for the threading decision).
    fn work(&self) -> usize {
        [self.oh, self.ow, self.co(), self.kh, self.kw]
            .iter()
            .fold(self.b, |a, &d| a.saturating_mul(d))
    }
}

/// The geometry of `x` and `w` under `cfg`, checked.
pub(super) fn geometry(
    x: &Tensor,
    w: &Tensor,
    cfg: &DepthwiseConv2dConfig,
) -> candle_core::Result<Geometry> {
    const OP: &str = "depthwise_conv2d";
    let (sh, sw) = cfg.stride;
    let (dh, dw) = cfg.dilation;
    if sh == 0 || sw == 0 || dh == 0 || dw == 0 {
        candle_core::bail!(
            "depthwise_conv2d: stride {:?} and dilation {:?} must be ≥ 1",
            cfg.stride,
            cfg.dilation
        );
    }
    let xd = x.dims();
    let wd = w.dims();
    if xd.len() != 4 || wd.len() != 4 {
        candle_core::bail!(
            "depthwise_conv2d ({:?}): input and filter must be 4-D, got input {xd:?}, filter {wd:?}",
            cfg.layout
        );
    }
    let (b, c, h, wi, kh, kw, m) = match cfg.layout {
        ConvLayout::Nhwc => {
            if wd[2] != xd[3] {
                candle_core::bail!(
                    "depthwise_conv2d (NHWC): filter {wd:?} must be [KH, KW, C, M] with C = {} (input {xd:?})",
                    xd[3]
                );
            }
            (xd[0], xd[3], xd[1], xd[2], wd[0], wd[1], wd[3])
        }
        ConvLayout::Nchw => {
            let c = xd[1];
            if wd[1] != 1 || c == 0 || !wd[0].is_multiple_of(c) {
                candle_core::bail!(
                    "depthwise_conv2d (NCHW): filter {wd:?} must be [C·M, 1, KH, KW] with C = {c} (input {xd:?})"
                );
            }
            (xd[0], c, xd[2], xd[3], wd[2], wd[3], wd[0] / c)
        }
    };
    if kh == 0 || kw == 0 || m == 0 {
        candle_core::bail!("depthwise_conv2d: empty filter {wd:?}");
    }
    let (rows, cols) = match cfg.padding {
        Padding::Same => (AxisPad::Same, AxisPad::Same),
        Padding::Valid => (AxisPad::Valid, AxisPad::Valid),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => (
            AxisPad::Explicit(top, bottom),
            AxisPad::Explicit(left, right),
        ),
    };
    let (oh, pad_top, pad_bottom) = axis(OP, "height", h, kh, sh, dh, rows)?;
    let (ow, pad_left, pad_right) = axis(OP, "width", wi, kw, sw, dw, cols)?;
    if [oh, ow, c, m]
        .iter()
        .try_fold(b, |a, &d| a.checked_mul(d))
        .is_none()
    {
        candle_core::bail!("depthwise_conv2d: output {b}×{oh}×{ow}×{c}·{m} overflows");
    }
    Ok(Geometry {
        b,
        c,
        m,
        h,
        w: wi,
        kh,
        kw,
        oh,
        ow,
        sh,
        sw,
        dh,
        dw,
        pad_top,
        pad_bottom,
        pad_left,
        pad_right,
        layout: cfg.layout,
    })
}

/// Depthwise 2-D convolution; see the module doc for the layouts and padding.
///
/// Errors (candle errors, naming the shapes) when the ranks or channel counts do not fit
/// together, when the padded input is smaller than the kernel, or (off the CPU only) when
/// the stride or dilation differs between rows and columns.
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: &DepthwiseConv2dConfig,
) -> candle_core::Result<Tensor> {
    let g = geometry(x, w, cfg)?;
    if let Some(bias) = bias {
        if bias.dims() != [g.co()] {
            candle_core::bail!(
                "depthwise_conv2d: bias {:?} must be [{}] (filter {:?})",
                bias.dims(),
                g.co(),
                w.dims()
            );
        }
    }
    match x.device() {
        Device::Cpu => cpu_depthwise(x, w, bias, g),
        _ => fallback_depthwise(x, w, bias, g),
    }
}

fn cpu_depthwise(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: Geometry,
) -> candle_core::Result<Tensor> {
    let dtype = x.dtype();
    let x32 = x.to_dtype(DType::F32)?.contiguous()?;
    let w32 = w.to_dtype(DType::F32)?.contiguous()?;
    let bias = match bias {
        Some(b) => Some(b.to_dtype(DType::F32)?.to_vec1::<f32>()?),
        None => None,
    };
    let y = x32.apply_op2_no_bwd(&w32, &DepthwiseOp { g, bias })?;
    if dtype == DType::F32 {
        Ok(y)
    } else {
        y.to_dtype(dtype)
    }
}

/// Off the CPU: candle's grouped convolution on NCHW data, zero padding made explicit.
fn fallback_depthwise(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    g: Geometry,
) -> candle_core::Result<Tensor> {
    if g.sh != g.sw || g.dh != g.dw {
        candle_core::bail!(
            "depthwise_conv2d on {:?}: candle's conv2d needs equal stride and dilation in both directions, got stride ({}, {}), dilation ({}, {})",
            x.device(),
            g.sh,
            g.sw,
            g.dh,
            g.dw
        );
    }
    let (xn, wn) = match g.layout {
        ConvLayout::Nchw => (x.clone(), w.clone()),
        ConvLayout::Nhwc => (
            x.permute((0, 3, 1, 2))?,
            w.reshape((g.kh, g.kw, g.co()))?
                .permute((2, 0, 1))?
                .unsqueeze(1)?,
        ),
    };
    let xn = xn
        .pad_with_zeros(2, g.pad_top, g.pad_bottom)?
        .pad_with_zeros(3, g.pad_left, g.pad_right)?
        .contiguous()?;
    let mut y = xn.conv2d(&wn.contiguous()?, 0, g.sh, g.dh, g.c)?;
    // Explicit padding can leave rows the stride never reaches; conv2d already drops them.
    if let Some(b) = bias {
        y = y.broadcast_add(&b.reshape((1, g.co(), 1, 1))?)?;
    }
    match g.layout {
        ConvLayout::Nchw => Ok(y),
        ConvLayout::Nhwc => y.permute((0, 2, 3, 1))?.contiguous(),
    }
}

struct DepthwiseOp {
    g: Geometry,
    bias: Option<Vec<f32>>,
}

impl CustomOp2 for DepthwiseOp {
    fn name(&self) -> &'static str {
        "depthwise_conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.g;
        let x = cpu_storage_f32(s1, l1, "depthwise_conv2d", "input")?;
        let w = cpu_storage_f32(s2, l2, "depthwise_conv2d", "filter")?;
        let out_dims = g.out_dims();
        let mut out = vec![0f32; out_dims.iter().product()];
        if x.len() != g.b * g.c * g.h * g.w || w.len() != g.kh * g.kw * g.co() {
            candle_core::bail!(
                "depthwise_conv2d: storage sizes {} / {} do not match the geometry {g:?}",
                x.len(),
                w.len()
            );
        }
        let bias = self.bias.as_deref();
        match g.layout {
            ConvLayout::Nhwc => {
                // One unit of work: one output row (OW·CO values) of one image.
                let row = g.ow * g.co();
                let (fast, avx2) = (fast::fits(&g), Avx2::detect());
                let image = g.h * g.w * g.c;
                parallel_chunks(&mut out, row, g.work(), |r, dst| {
                    let (bi, oy) = (r / g.oh, r % g.oh);
                    if fast {
                        let x = &x[bi * image..(bi + 1) * image];
                        let row = fast::Row {
                            image: x,
                            w,
                            bias,
                            g: &g,
                            oy,
                        };
                        fast::nhwc_row_fast(row, dst, avx2);
                    } else {
                        nhwc_row(x, w, bias, &g, bi, oy, dst);
                    }
                    Ok(())
                })?;
            }
            ConvLayout::Nchw => {
                // One unit of work: one output plane (OH·OW values) of one image/channel.
                let plane = g.oh * g.ow;
                parallel_chunks(&mut out, plane, g.work(), |p, dst| {
                    nchw_plane(x, w, bias, &g, p / g.co(), p % g.co(), dst);
                    Ok(())
                })?;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

/// One NHWC output row: `dst` is `[OW, CO]` of image `bi`, row `oy`.
fn nhwc_row(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    bi: usize,
    oy: usize,
    dst: &mut [f32],
) {
    let (c, co) = (g.c, g.co());
    let image = &x[bi * g.h * g.w * c..(bi + 1) * g.h * g.w * c];
    for (ox, o) in dst.chunks_exact_mut(co).enumerate() {
        match bias {
            Some(b) => o.copy_from_slice(b),
            None => o.fill(0.0),
        }
        for ky in 0..g.kh {
            let Some(iy) = tap(oy, ky, g.sh, g.dh, g.pad_top, g.h) else {
                continue;
            };
            for kx in 0..g.kw {
                let Some(ix) = tap(ox, kx, g.sw, g.dw, g.pad_left, g.w) else {
                    continue;
                };
                let xi = &image[(iy * g.w + ix) * c..(iy * g.w + ix + 1) * c];
                let wk = &w[(ky * g.kw + kx) * co..(ky * g.kw + kx + 1) * co];
                if g.m == 1 {
                    mul_add(o, xi, wk);
                } else {
                    for ((oc, wc), &xv) in o.chunks_exact_mut(g.m).zip(wk.chunks_exact(g.m)).zip(xi)
                    {
                        for (ov, &wv) in oc.iter_mut().zip(wc) {
                            *ov += xv * wv;
                        }
                    }
                }
            }
        }
    }
}

/// `o += x · w`, element-wise, in blocks of 8 so that it vectorises even lightly optimised.
#[inline(always)]
fn mul_add(o: &mut [f32], x: &[f32], w: &[f32]) {
    let n = o.len().min(x.len()).min(w.len());
    let (o, x, w) = (&mut o[..n], &x[..n], &w[..n]);
    let mut oc = o.chunks_exact_mut(8);
    let mut xc = x.chunks_exact(8);
    let mut wc = w.chunks_exact(8);
    for ((ob, xb), wb) in (&mut oc).zip(&mut xc).zip(&mut wc) {
        for i in 0..8 {
            ob[i] += xb[i] * wb[i];
        }
    }
    for ((ov, &xv), &wv) in oc
        .into_remainder()
        .iter_mut()
        .zip(xc.remainder())
        .zip(wc.remainder())
    {
        *ov += xv * wv;
    }
}

/// One NCHW output plane: `dst` is `[OH, OW]` of image `bi`, output channel `oc`.
fn nchw_plane(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    bi: usize,
    oc: usize,
    dst: &mut [f32],
) {
    let ci = oc / g.m;
    let plane = &x[(bi * g.c + ci) * g.h * g.w..(bi * g.c + ci + 1) * g.h * g.w];
    let wk = &w[oc * g.kh * g.kw..(oc + 1) * g.kh * g.kw];
    dst.fill(bias.map_or(0.0, |b| b[oc]));
    // Range of output columns whose input column is inside the row, per tap column.
    for (oy, orow) in dst.chunks_exact_mut(g.ow).enumerate() {
        for ky in 0..g.kh {
            let Some(iy) = tap(oy, ky, g.sh, g.dh, g.pad_top, g.h) else {
                continue;
            };
            let irow = &plane[iy * g.w..(iy + 1) * g.w];
            for kx in 0..g.kw {
                let wv = wk[ky * g.kw + kx];
                // ix = ox·sw + kx·dw − pad_left must lie in [0, W).
                let shift = kx * g.dw;
                let lo = g.pad_left.saturating_sub(shift).div_ceil(g.sw);
                let hi = (g.w + g.pad_left)
                    .checked_sub(shift)
                    .map_or(0, |v| v.div_ceil(g.sw))
                    .min(g.ow);
                if lo >= hi {
                    continue;
                }
                let start = lo * g.sw + shift - g.pad_left;
                if g.sw == 1 {
                    for (ov, &xv) in orow[lo..hi].iter_mut().zip(&irow[start..]) {
                        *ov += wv * xv;
                    }
                } else {
                    for (ov, &xv) in orow[lo..hi]
                        .iter_mut()
                        .zip(irow[start..].iter().step_by(g.sw))
                    {
                        *ov += wv * xv;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_abs_diff, values};

    /// candle's grouped conv2d with TF-style (possibly asymmetric) padding, NCHW.
    fn candle_grouped(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geometry) -> Tensor {
        let xp = x
            .pad_with_zeros(2, g.pad_top, g.pad_bottom)
            .unwrap()
            .pad_with_zeros(3, g.pad_left, g.pad_right)
            .unwrap();
        let mut y = xp.conv2d(w, 0, g.sh, g.dh, g.c).unwrap();
        if let Some(b) = bias {
            y = y
                .broadcast_add(&b.reshape((1, g.co(), 1, 1)).unwrap())
                .unwrap();
        }
        y
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        b: usize,
        c: usize,
        m: usize,
        h: usize,
        w: usize,
        k: usize,
        s: usize,
        d: usize,
        padding: Padding,
    ) {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(values(b * c * h * w, 1), (b, c, h, w), &dev).unwrap();
        let wt = Tensor::from_vec(values(c * m * k * k, 2), (c * m, 1, k, k), &dev).unwrap();
        let bias = Tensor::from_vec(values(c * m, 3), c * m, &dev).unwrap();
        let cfg = DepthwiseConv2dConfig {
            layout: ConvLayout::Nchw,
            stride: (s, s),
            dilation: (d, d),
            padding,
        };
        let g = geometry(&x, &wt, &cfg).unwrap();
        let want = candle_grouped(&x, &wt, Some(&bias), &g);
        let got = depthwise_conv2d(&x, &wt, Some(&bias), &cfg).unwrap();
        assert_eq!(got.dims(), want.dims());
        let e = max_abs_diff(&got, &want);
        assert!(
            e <= 1e-5,
            "NCHW {b}x{c}x{h}x{w} k{k} s{s} d{d} m{m} {padding:?}: {e}"
        );

        // The same in NHWC: x → [B, H, W, C], filter [C·M, 1, KH, KW] → [KH, KW, C, M].
        let xn = x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
        let wn = wt
            .reshape((c, m, k, k))
            .unwrap()
            .permute((2, 3, 0, 1))
            .unwrap()
            .contiguous()
            .unwrap();
        let cfg = DepthwiseConv2dConfig {
            layout: ConvLayout::Nhwc,
            ..cfg
        };
        let got = depthwise_conv2d(&xn, &wn, Some(&bias), &cfg).unwrap();
        let want = want.permute((0, 2, 3, 1)).unwrap();
        assert_eq!(got.dims(), want.dims());
        let e = max_abs_diff(&got, &want);
        assert!(
            e <= 1e-5,
            "NHWC {b}x{c}x{h}x{w} k{k} s{s} d{d} m{m} {padding:?}: {e}"
        );
    }

    #[test]
    fn matches_candle_grouped_conv() {
        for &(h, w) in &[(96, 64), (7, 5), (6, 4), (3, 2), (1, 1)] {
            for s in [1, 2] {
                for padding in [Padding::Same, Padding::Valid] {
                    if padding == Padding::Valid && (h < 3 || w < 3) {
                        continue;
                    }
                    check(2, 5, 1, h, w, 3, s, 1, padding);
                }
            }
        }
        check(1, 3, 2, 9, 8, 3, 1, 1, Padding::Same);
        check(1, 4, 1, 11, 10, 3, 1, 2, Padding::Same);
        check(1, 4, 1, 11, 10, 5, 2, 1, Padding::Same);
        check(
            1,
            4,
            1,
            8,
            8,
            3,
            2,
            1,
            Padding::Explicit {
                top: 1,
                bottom: 1,
                left: 1,
                right: 1,
            },
        );
        check(
            1,
            4,
            1,
            8,
            9,
            3,
            2,
            1,
            Padding::Explicit {
                top: 0,
                bottom: 2,
                left: 1,
                right: 0,
            },
        );
    }

    #[test]
    fn large_layer_uses_threads_and_still_matches() {
        // 1 × 32 × 48 × 32 × 9 ≈ 0.4 M MACs per image; 4 images pass the threading threshold.
        check(4, 64, 1, 48, 32, 3, 1, 1, Padding::Same);
        check(4, 64, 1, 48, 32, 3, 2, 1, Padding::Same);
    }

    #[test]
    fn tf_same_padding_is_asymmetric_for_stride_two() {
        let x = Tensor::zeros((1, 96, 64, 8), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 3, 8, 1), DType::F32, &Device::Cpu).unwrap();
        let cfg = DepthwiseConv2dConfig {
            layout: ConvLayout::Nhwc,
            stride: (2, 2),
            ..Default::default()
        };
        let g = geometry(&x, &w, &cfg).unwrap();
        assert_eq!(
            (g.oh, g.ow, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
            (48, 32, 0, 1, 0, 1)
        );
    }

    /// The non-CPU path (candle's grouped conv2d), run on the CPU: same results.
    #[test]
    fn fallback_path_matches_the_kernel() {
        let dev = Device::Cpu;
        for (layout, s, padding) in [
            (ConvLayout::Nhwc, 2, Padding::Same),
            (ConvLayout::Nhwc, 1, Padding::Same),
            (ConvLayout::Nchw, 2, Padding::Same),
            (ConvLayout::Nhwc, 2, Padding::Valid),
            (
                ConvLayout::Nchw,
                2,
                Padding::Explicit {
                    top: 0,
                    bottom: 2,
                    left: 1,
                    right: 0,
                },
            ),
        ] {
            let (x, w) = match layout {
                ConvLayout::Nhwc => (
                    Tensor::from_vec(values(2 * 9 * 8 * 6, 4), (2, 9, 8, 6), &dev).unwrap(),
                    Tensor::from_vec(values(3 * 3 * 6 * 2, 5), (3, 3, 6, 2), &dev).unwrap(),
                ),
                ConvLayout::Nchw => (
                    Tensor::from_vec(values(2 * 6 * 9 * 8, 4), (2, 6, 9, 8), &dev).unwrap(),
                    Tensor::from_vec(values(12 * 3 * 3, 5), (12, 1, 3, 3), &dev).unwrap(),
                ),
            };
            let bias = Tensor::from_vec(values(12, 6), 12, &dev).unwrap();
            let cfg = DepthwiseConv2dConfig {
                layout,
                stride: (s, s),
                dilation: (1, 1),
                padding,
            };
            let g = geometry(&x, &w, &cfg).unwrap();
            let want = depthwise_conv2d(&x, &w, Some(&bias), &cfg).unwrap();
            let got = fallback_depthwise(&x, &w, Some(&bias), g).unwrap();
            assert_eq!(got.dims(), want.dims(), "{layout:?} {padding:?}");
            let e = max_abs_diff(&got, &want);
            assert!(e <= 1e-5, "{layout:?} s{s} {padding:?}: {e}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 4, 4, 3), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((3, 3, 2, 1), DType::F32, &dev).unwrap();
        let cfg = DepthwiseConv2dConfig {
            layout: ConvLayout::Nhwc,
            ..Default::default()
        };
        assert!(depthwise_conv2d(&x, &w, None, &cfg).is_err());
        let w = Tensor::zeros((3, 3, 3, 1), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(depthwise_conv2d(&x, &w, Some(&b), &cfg).is_err());
        let cfg = DepthwiseConv2dConfig {
            padding: Padding::Valid,
            ..cfg
        };
        let x = Tensor::zeros((1, 2, 2, 3), DType::F32, &dev).unwrap();
        assert!(depthwise_conv2d(&x, &w, None, &cfg).is_err());
    }
}
