//! Tensor ops that candle 0.11 lacks or runs slowly on the CPU: depthwise 2-D convolution.
//!
//! # `depthwise_conv2d` — signature and layouts
//!
//! ```text
//! pub fn depthwise_conv2d(
//!     x: &Tensor,                    // input, f32 (other float dtypes are converted and back)
//!     w: &Tensor,                    // filter, same dtype as x
//!     bias: Option<&Tensor>,         // [C·M] or None
//!     cfg: &DepthwiseConv2dConfig,   // layout, stride, dilation, padding
//! ) -> candle_core::Result<Tensor>
//! ```
//!
//! | `cfg.layout`        | `x`            | `w`                         | output              |
//! |---------------------|----------------|-----------------------------|---------------------|
//! | [`ConvLayout::Nhwc`] | `[B, H, W, C]` | `[KH, KW, C, M]` (TF, TF.js) | `[B, OH, OW, C·M]`  |
//! | [`ConvLayout::Nchw`] | `[B, C, H, W]` | `[C·M, 1, KH, KW]` (candle/PyTorch, `groups = C`) | `[B, C·M, OH, OW]` |
//!
//! `M` is the depth multiplier (1 in every MobileNet); output channel `o` reads input
//! channel `o / M` (TF's `c·M + m` order). A TFLite `DEPTHWISE_CONV_2D` filter
//! `[1, KH, KW, C·M]` is `w.reshape((KH, KW, C, M))`.
//!
//! Padding ([`Padding`]): `Same` is TensorFlow's (`OH = ⌈H / stride⌉`, total padding
//! `max((OH − 1)·stride + (KH − 1)·dilation + 1 − H, 0)`, the odd pixel at the bottom/right,
//! so a stride-2 layer on an even size pads 0 on top and 1 below); `Valid` pads nothing;
//! `Explicit { top, bottom, left, right }` pads zeros as given (TF.js explicit padding,
//! PyTorch's symmetric `padding = p`).
//!
//! On the CPU the op is a direct kernel over contiguous data (a candle [`CustomOp2`]): for
//! NHWC every tap is a multiply-add over a row of `C` contiguous channels, for NCHW over a
//! row of output pixels; rows are split over threads when the layer is large. candle's
//! `conv2d` with `groups = C` instead runs one convolution per channel (≈ 15× slower,
//! FACTS.md). On other devices the op falls back to candle's grouped `conv2d` (transposing
//! NHWC to NCHW and back, padding explicitly; there stride and dilation must be equal in
//! both directions).
//!
//! The summation order is: bias (or 0), then the taps row by row. Results agree with
//! candle's grouped `conv2d` to ~1e-6 (unit tests below assert ≤ 1e-5).

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

/// Memory order of the input and output tensors (see the module doc for the filter's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvLayout {
    /// `[B, C, H, W]`, candle's and PyTorch's order.
    #[default]
    Nchw,
    /// `[B, H, W, C]`, TensorFlow's, TF.js's and TFLite's order.
    Nhwc,
}

/// Spatial zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// TensorFlow's `SAME`: output size `⌈in / stride⌉`, extra pixel at the bottom/right.
    #[default]
    Same,
    /// No padding: output size `⌊(in − effective kernel) / stride⌋ + 1`.
    Valid,
    /// Explicit zero padding on each side.
    Explicit {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
}

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
struct Geometry {
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

/// One axis: output size and padding before/after.
fn axis(
    len: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    explicit: (usize, usize),
    name: &str,
) -> candle_core::Result<(usize, usize, usize)> {
    let overflow =
        || candle_core::Error::Msg(format!("depthwise_conv2d: {name} geometry overflows"));
    let eff = (k - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    match padding {
        Padding::Same => {
            let out = len.div_ceil(stride);
            let total = out
                .saturating_sub(1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(eff))
                .ok_or_else(overflow)?
                .saturating_sub(len);
            Ok((out, total / 2, total - total / 2))
        }
        Padding::Valid => {
            if len < eff {
                candle_core::bail!(
                    "depthwise_conv2d: VALID padding needs {name} ≥ effective kernel {eff}, got {len}"
                );
            }
            Ok(((len - eff) / stride + 1, 0, 0))
        }
        Padding::Explicit { .. } => {
            let (before, after) = explicit;
            let padded = len
                .checked_add(before)
                .and_then(|v| v.checked_add(after))
                .ok_or_else(overflow)?;
            if padded < eff {
                candle_core::bail!(
                    "depthwise_conv2d: padded {name} {padded} is smaller than the effective kernel {eff}"
                );
            }
            Ok(((padded - eff) / stride + 1, before, after))
        }
    }
}

fn geometry(x: &Tensor, w: &Tensor, cfg: &DepthwiseConv2dConfig) -> candle_core::Result<Geometry> {
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
            if wd[1] != 1 || c == 0 || wd[0] % c != 0 {
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
    let (top, bottom, left, right) = match cfg.padding {
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => (top, bottom, left, right),
        _ => (0, 0, 0, 0),
    };
    let (oh, pad_top, pad_bottom) = axis(h, kh, sh, dh, cfg.padding, (top, bottom), "height")?;
    let (ow, pad_left, pad_right) = axis(wi, kw, sw, dw, cfg.padding, (left, right), "width")?;
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

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("depthwise_conv2d: {what} must be f32 on the CPU path");
    };
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("depthwise_conv2d: {what} is not contiguous"),
    }
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
        let x = contiguous_f32(s1, l1, "input")?;
        let w = contiguous_f32(s2, l2, "filter")?;
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
                parallel_chunks(&mut out, row, g.work(), |r, dst| {
                    nhwc_row(x, w, bias, &g, r / g.oh, r % g.oh, dst)
                });
            }
            ConvLayout::Nchw => {
                // One unit of work: one output plane (OH·OW values) of one image/channel.
                let plane = g.oh * g.ow;
                parallel_chunks(&mut out, plane, g.work(), |p, dst| {
                    nchw_plane(x, w, bias, &g, p / g.co(), p % g.co(), dst)
                });
            }
        }
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

/// Runs `f(index, chunk)` over `out.chunks_mut(chunk)`, on several threads when `work`
/// (multiply-adds) is large enough to pay for them.
fn parallel_chunks<F>(out: &mut [f32], chunk: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    if chunk == 0 || out.is_empty() {
        return;
    }
    let n = out.len() / chunk;
    // Below ~1 M multiply-adds (< 1 ms) a thread costs more than it saves.
    let threads = if work < (1 << 20) {
        1
    } else {
        candle_core::utils::get_num_threads().clamp(1, n.max(1))
    };
    if threads <= 1 {
        for (i, dst) in out.chunks_mut(chunk).enumerate() {
            f(i, dst);
        }
        return;
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, part) in out.chunks_mut(per * chunk).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (i, dst) in part.chunks_mut(chunk).enumerate() {
                    f(t * per + i, dst);
                }
            });
        }
    });
}

/// Input index along one axis for output position `o` and tap `k`, if inside the input.
#[inline(always)]
fn tap(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    let i = (o * stride + k * dilation).checked_sub(pad)?;
    (i < len).then_some(i)
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

    /// Deterministic pseudo-random values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    pub(super) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .and_then(|d| d.abs())
            .and_then(|d| d.flatten_all())
            .and_then(|d| d.max(0))
            .and_then(|d| d.to_scalar::<f32>())
            .expect("difference of two tensors of one shape")
    }

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

/// Regular (groups = 1) 2-D convolution on the CPU, f32: `x` `[B, C, H, W]` (any strides;
/// an NHWC buffer seen through a permuted view is read in place), `w` `[CO, C, KH, KW]`,
/// symmetric zero padding `pad`, equal stride and dilation in both directions; returns a
/// contiguous `[B, CO, OH, OW]`.
///
/// Why not candle's `conv2d`: its CPU path builds the im2col matrix one element at a time
/// into a `[K, tile]` layout (strided writes), which took ≈ 70 % of NanoDet's time, ahead
/// of the matrix products themselves. Here the input is read as NHWC, so each tap of an
/// output pixel is one contiguous run of `C` channels copied into a `[tile, K]` row, and
/// one `gemm` per tile of output pixels writes straight into the NCHW output. 1×1 stride-1
/// convolutions need no copy at all: the NHWC input already is the `[HW, C]` matrix.
pub fn conv2d_cpu(
    x: &Tensor,
    w: &Tensor,
    pad: usize,
    stride: usize,
    dilation: usize,
) -> candle_core::Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (co, ci, kh, kw) = w.dims4()?;
    if ci != c || stride == 0 || dilation == 0 {
        candle_core::bail!(
            "conv2d_cpu: input {:?}, filter {:?}, stride {stride}, dilation {dilation}",
            x.dims(),
            w.dims()
        );
    }
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        candle_core::bail!("conv2d_cpu: f32 tensors on the CPU only");
    }
    let (eh, ew) = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1);
    if h + 2 * pad < eh || wd + 2 * pad < ew {
        candle_core::bail!(
            "conv2d_cpu: padded input {}×{} smaller than the kernel's extent {eh}×{ew}",
            h + 2 * pad,
            wd + 2 * pad
        );
    }
    let oh = (h + 2 * pad - eh) / stride + 1;
    let ow = (wd + 2 * pad - ew) / stride + 1;
    // NHWC input (a no-op when `x` is a permuted view of NHWC data) and the filter as
    // [CO, KH, KW, C], so that the reduction index k = (ky·KW + kx)·C + c matches the rows.
    let xh = x.permute((0, 2, 3, 1))?.contiguous()?;
    let wk = w.permute((0, 2, 3, 1))?.contiguous()?;
    let (xs, xl) = xh.storage_and_layout();
    let (ws, wl) = wk.storage_and_layout();
    let xv = cpu_f32(&xs, xl)?;
    let wv = cpu_f32(&ws, wl)?;
    let k = kh * kw * c;
    let hw = oh * ow;
    let mut out = vec![0f32; b * co * hw];
    let one_by_one = kh == 1 && kw == 1 && stride == 1 && pad == 0;
    // Output pixels per gemm: big enough for the microkernels, small enough that the
    // copied rows stay in cache.
    const TILE: usize = 1024;
    let threads = candle_core::utils::get_num_threads().max(1);
    let mut col = if one_by_one {
        Vec::new()
    } else {
        vec![0f32; TILE.min(hw) * k]
    };
    for bi in 0..b {
        let xb = &xv[bi * h * wd * c..(bi + 1) * h * wd * c];
        let ob = &mut out[bi * co * hw..(bi + 1) * co * hw];
        for t0 in (0..hw).step_by(TILE) {
            let n = TILE.min(hw - t0);
            let (rhs, rhs_cs): (&[f32], usize) = if one_by_one {
                (&xb[t0 * c..], c)
            } else {
                for (t, row) in col[..n * k].chunks_exact_mut(k).enumerate() {
                    let (oy, ox) = ((t0 + t) / ow, (t0 + t) % ow);
                    for ky in 0..kh {
                        let iy = (oy * stride + ky * dilation) as isize - pad as isize;
                        for kx in 0..kw {
                            let ix = (ox * stride + kx * dilation) as isize - pad as isize;
                            let dst = &mut row[(ky * kw + kx) * c..(ky * kw + kx + 1) * c];
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= wd {
                                dst.fill(0.0);
                            } else {
                                let s = (iy as usize * wd + ix as usize) * c;
                                dst.copy_from_slice(&xb[s..s + c]);
                            }
                        }
                    }
                }
                (&col[..n * k], k)
            };
            // Threads only pay for themselves on large products (as in `parallel_chunks`).
            let par = if threads > 1 && co * n * k >= (1 << 20) {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: dst (co × n, row stride hw) lies inside `ob` from column t0; lhs is
            // co × k (row stride k) inside `wv`; rhs is k × n read as rhs[kk, t] =
            // rhs_slice[t·rhs_cs + kk], inside the slice (n rows of rhs_cs ≥ k values, the
            // last row complete). read_dst = false: dst = 1 · lhs · rhs.
            unsafe {
                gemm::gemm(
                    co,
                    n,
                    k,
                    ob.as_mut_ptr().add(t0),
                    1,
                    hw as isize,
                    false,
                    wv.as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    rhs_cs as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
    }
    Tensor::from_vec(out, (b, co, oh, ow), &Device::Cpu)
}

/// The values of a contiguous f32 CPU tensor's storage, in place.
fn cpu_f32<'a>(s: &'a candle_core::Storage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (candle_core::Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("conv2d_cpu: expected contiguous f32 CPU storage"),
    }
}

#[cfg(test)]
mod conv2d_tests {
    use super::tests::max_abs_diff;
    use super::*;

    fn ramp(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.37 + seed).sin() * 1.7).round() / 2.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn conv2d_cpu_matches_candle_on_strides_padding_dilation_and_nhwc_views() {
        for &(c, co, k, pad, stride, dil, h, w) in &[
            (3, 8, 3, 1, 2, 1, 17, 13),
            (16, 24, 3, 1, 1, 1, 9, 11),
            (8, 5, 1, 0, 1, 1, 7, 6),
            (8, 5, 1, 0, 2, 1, 7, 6),
            (4, 6, 3, 2, 1, 2, 10, 10),
            (5, 7, 5, 0, 1, 1, 40, 40), // more than one tile of output pixels
        ] {
            let x = ramp(&[2, c, h, w], 0.1);
            let wt = ramp(&[co, c, k, k], 1.3);
            let want = x.conv2d(&wt, pad, stride, dil, 1).unwrap();
            let got = conv2d_cpu(&x, &wt, pad, stride, dil).unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = max_abs_diff(&got, &want);
            assert!(
                d <= 1e-4,
                "{c}->{co} k{k} p{pad} s{stride} d{dil}: max |Δ| {d}"
            );
            // The same input held as NHWC and seen through a permuted view.
            let view = x
                .permute((0, 2, 3, 1))
                .unwrap()
                .contiguous()
                .unwrap()
                .permute((0, 3, 1, 2))
                .unwrap();
            let got2 = conv2d_cpu(&view, &wt, pad, stride, dil).unwrap();
            assert!(max_abs_diff(&got2, &want) <= 1e-4);
        }
    }
}

/// Temporal convolution over frames: `x` `[N, T, CI, S]` (N sequences of T frames, CI
/// channels of S = H·W pixels each, contiguous), `w` `[K, CO, CI]` (tap-major), `bias`
/// `[CO]`, `pad` zero frames before and after (the same on both sides); returns a
/// contiguous `[N, T + 2·pad − K + 1, CO, S]`, with ReLU applied when `relu` is set.
///
/// This is a 3-D convolution with a `(K, 1, 1)` kernel (PyTorch's `Conv3d` on `[N, C, T,
/// H, W]` data), held frame-major so that the spatial convolutions around it see plain
/// `[N·T, C, H, W]` images. candle 0.11 has no 3-D convolution; as a 1-D convolution over
/// `T` it would need the data transposed to `[N·S, C, T]` and back. Here every output frame
/// is `bias + Σ_k W_k · X[t + k − pad]`: one `gemm` per (frame, tap) of `CO × CI` by `CI × S`,
/// reading the input frames in place (no copy, no im2col). On other devices the same sum
/// runs as candle matrix products over shifted views.
pub fn temporal_conv(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    pad: usize,
    relu: bool,
) -> candle_core::Result<Tensor> {
    let (n, t, ci, s) = x.dims4()?;
    let (k, co, wci) = w.dims3()?;
    if wci != ci || bias.dims1()? != co || k == 0 {
        candle_core::bail!(
            "temporal_conv: input {:?}, filter {:?}, bias {:?}",
            x.dims(),
            w.dims(),
            bias.dims()
        );
    }
    if t + 2 * pad < k {
        candle_core::bail!(
            "temporal_conv: {t} frames + 2×{pad} padding is shorter than the kernel ({k})"
        );
    }
    let ot = t + 2 * pad - k + 1;
    let cpu = matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && bias.dtype() == DType::F32;
    if !cpu {
        // Generic path: pad the frame axis, then Σ_k W_k · X[shifted] as batched matmuls.
        let xp = if pad > 0 {
            x.pad_with_zeros(1, pad, pad)?
        } else {
            x.clone()
        };
        let mut acc = bias
            .reshape((1, co, 1))?
            .broadcast_as((n * ot, co, s))?
            .contiguous()?;
        for kk in 0..k {
            let xs = xp
                .narrow(1, kk, ot)?
                .contiguous()?
                .reshape((n * ot, ci, s))?;
            let wk = w.get(kk)?;
            acc = (acc + wk.broadcast_matmul(&xs)?)?;
        }
        let acc = if relu { acc.relu()? } else { acc };
        return acc.reshape((n, ot, co, s));
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let bias = bias.contiguous()?;
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let xv = cpu_f32(&xs, xl)?;
    let wv = cpu_f32(&ws, wl)?;
    let bv = cpu_f32(&bs, bl)?;
    let frame_out = co * s;
    let mut out = vec![0f32; n * ot * frame_out];
    let work = n * ot * k * co * ci * s;
    parallel_chunks(&mut out, frame_out, work, |idx, dst| {
        let (seq, of) = (idx / ot, idx % ot);
        for (c, row) in dst.chunks_exact_mut(s).enumerate() {
            row.fill(bv[c]);
        }
        for kk in 0..k {
            // Input frame of tap kk for output frame `of`: of + kk − pad, if inside.
            let Some(inf) = (of + kk).checked_sub(pad).filter(|&f| f < t) else {
                continue;
            };
            let src = &xv[(seq * t + inf) * ci * s..(seq * t + inf + 1) * ci * s];
            let wk = &wv[kk * co * ci..(kk + 1) * co * ci];
            // SAFETY: dst is co × s (row stride s) inside `dst`; lhs is co × ci (row stride
            // ci) inside `wk`; rhs is ci × s (row stride s) inside `src`. read_dst = true:
            // dst = 1 · dst + 1 · lhs · rhs.
            unsafe {
                gemm::gemm(
                    co,
                    s,
                    ci,
                    dst.as_mut_ptr(),
                    1,
                    s as isize,
                    true,
                    wk.as_ptr(),
                    1,
                    ci as isize,
                    src.as_ptr(),
                    1,
                    s as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
        if relu {
            for v in dst.iter_mut() {
                *v = v.max(0.0);
            }
        }
    });
    Tensor::from_vec(out, (n, ot, co, s), &Device::Cpu)
}

#[cfg(test)]
mod temporal_conv_tests {
    use super::tests::max_abs_diff;
    use super::*;

    fn ramp(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (i as f32 * 0.731 + seed).sin() * 1.3)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The same sum written out element by element.
    fn naive(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, relu: bool) -> Tensor {
        let (n, t, ci, s) = x.dims4().unwrap();
        let (k, co, _) = w.dims3().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.to_vec1::<f32>().unwrap();
        let ot = t + 2 * pad - k + 1;
        let mut out = vec![0f32; n * ot * co * s];
        for q in 0..n {
            for o in 0..ot {
                for c in 0..co {
                    for p in 0..s {
                        let mut acc = bv[c];
                        for kk in 0..k {
                            let f = o as isize + kk as isize - pad as isize;
                            if f < 0 || f as usize >= t {
                                continue;
                            }
                            for i in 0..ci {
                                acc += wv[(kk * co + c) * ci + i]
                                    * xv[((q * t + f as usize) * ci + i) * s + p];
                            }
                        }
                        out[((q * ot + o) * co + c) * s + p] =
                            if relu { acc.max(0.0) } else { acc };
                    }
                }
            }
        }
        Tensor::from_vec(out, (n, ot, co, s), &Device::Cpu).unwrap()
    }

    #[test]
    fn temporal_conv_matches_the_written_out_sum_on_the_fast_and_generic_paths() {
        for &(n, t, ci, co, s, k, pad, relu) in &[
            (1, 7, 3, 4, 5, 3, 1, false),
            (2, 9, 4, 6, 10, 5, 2, true),
            (1, 4, 2, 3, 3, 5, 2, false), // fewer frames than taps
            (3, 6, 5, 2, 4, 1, 0, true),
        ] {
            let x = ramp(&[n, t, ci, s], 0.3);
            let w = ramp(&[k, co, ci], 1.1);
            let b = ramp(&[co], 2.0);
            let want = naive(&x, &w, &b, pad, relu);
            let got = temporal_conv(&x, &w, &b, pad, relu).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert!(
                max_abs_diff(&got, &want) <= 1e-5,
                "fast path {n} {t} {ci} {co} {s} {k}"
            );
            // The generic path (what runs off the CPU), forced with f64 tensors.
            let g = temporal_conv(
                &x.to_dtype(DType::F64).unwrap(),
                &w.to_dtype(DType::F64).unwrap(),
                &b.to_dtype(DType::F64).unwrap(),
                pad,
                relu,
            )
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
            assert!(max_abs_diff(&g, &want) <= 1e-5, "generic path");
        }
        let x = ramp(&[1, 2, 3, 4], 0.0);
        assert!(temporal_conv(&x, &ramp(&[5, 2, 3], 0.0), &ramp(&[2], 0.0), 1, false).is_err());
        assert!(temporal_conv(&x, &ramp(&[3, 2, 4], 0.0), &ramp(&[2], 0.0), 1, false).is_err());
    }
}
