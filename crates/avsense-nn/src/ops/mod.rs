//! Tensor ops that candle 0.11 lacks or runs slowly on the CPU: depthwise 2-D convolution,
//! regular convolution (NCHW [`conv2d_cpu`], channels-last [`conv2d_nhwc_cpu`]), channels-last
//! max pooling, and element-wise maps in a tensor's memory order.
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
//! row of output pixels; rows are split over threads when the layer is large. NHWC layers
//! with depth multiplier 1, `C` a multiple of 8 and a 3×3 or 5×5 filter (all of
//! BlazeFace's) take a register-blocked form of the same sum (`nhwc_row_fast`, AVX2 where
//! the CPU has it), ≈ 4× faster and equal bit for bit. candle's
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
                let (fast, avx2) = (nhwc_fast_fits(&g), has_avx2());
                let image = g.h * g.w * g.c;
                parallel_chunks(&mut out, row, g.work(), |r, dst| {
                    let (bi, oy) = (r / g.oh, r % g.oh);
                    if fast {
                        let x = &x[bi * image..(bi + 1) * image];
                        nhwc_row_fast(x, w, bias, &g, oy, dst, avx2)
                    } else {
                        nhwc_row(x, w, bias, &g, bi, oy, dst)
                    }
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

// ---------------------------------------------------------------------------------------
// Channels-last (NHWC) kernels: TF.js graphs kept in TF's memory order end to end.

/// Regular (groups = 1) 2-D convolution on channels-last data, f32 on the CPU: `x`
/// `[B, H, W, C]` (read in place when contiguous), `w` TF's filter `[KH, KW, C, CO]` as
/// stored in the graph, zero padding `[top, bottom, left, right]` (may differ per side),
/// stride and dilation `(rows, columns)`. Returns a contiguous `[B, OH, OW, CO]` after
/// `epilogue` has run, in place, over every block of output rows (`n × CO` values, whole
/// pixels) right after that block was computed, while it is still in cache.
///
/// Why beside [`conv2d_cpu`]: that one returns NCHW, so in a graph held as NHWC every
/// convolution's output is a permuted view, and each element-wise op after it (bias,
/// activation, a residual add) then either copies or mixes two memory orders, which
/// candle runs on its slow strided path (in BlazeFace the residual adds cost ⅓ as much
/// as the convolutions). Here nothing is transposed: TF's filter already is the `[K, CO]`
/// matrix for `k = (ky·KW + kx)·C + c`, the im2col row of an output pixel is `KH` runs of
/// `KW·C` contiguous input values (one copy each when inside the image), a 1×1 stride-1
/// convolution reads the input itself as the `[HW, C]` matrix, and one `gemm` per block of
/// output pixels writes the `[n, CO]` rows of the NHWC output directly. Asymmetric
/// padding (TF's SAME at stride 2) is applied while copying, never as a padded copy.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_nhwc_cpu(
    x: &Tensor,
    w: &Tensor,
    pad: [usize; 4],
    stride: (usize, usize),
    dilation: (usize, usize),
    epilogue: &dyn Fn(&mut [f32]),
) -> candle_core::Result<Tensor> {
    conv2d_nhwc_tiled(x, w, pad, stride, dilation, epilogue, None)
}

/// [`conv2d_nhwc_cpu`] with the number of output pixels per gemm given (`None`: chosen).
#[allow(clippy::too_many_arguments)]
fn conv2d_nhwc_tiled(
    x: &Tensor,
    w: &Tensor,
    pad: [usize; 4],
    stride: (usize, usize),
    dilation: (usize, usize),
    epilogue: &dyn Fn(&mut [f32]),
    tile: Option<usize>,
) -> candle_core::Result<Tensor> {
    let (b, h, wd, c) = x.dims4()?;
    let (kh, kw, ci, co) = w.dims4()?;
    let ((sh, sw), (dh, dw)) = (stride, dilation);
    if ci != c || sh == 0 || sw == 0 || dh == 0 || dw == 0 || kh == 0 || kw == 0 || co == 0 {
        candle_core::bail!(
            "conv2d_nhwc_cpu: input {:?}, filter {:?} ([KH, KW, C, CO]), stride {stride:?}, dilation {dilation:?}",
            x.dims(),
            w.dims()
        );
    }
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        candle_core::bail!("conv2d_nhwc_cpu: f32 tensors on the CPU only");
    }
    let [pt, pb, pl, pr] = pad;
    let (eh, ew) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
    let (ph, pw) = (h + pt + pb, wd + pl + pr);
    if ph < eh || pw < ew {
        candle_core::bail!(
            "conv2d_nhwc_cpu: padded input {ph}×{pw} smaller than the kernel's extent {eh}×{ew}"
        );
    }
    let (oh, ow) = ((ph - eh) / sh + 1, (pw - ew) / sw + 1);
    let xc = x.contiguous()?;
    let wc = w.contiguous()?;
    let (xs, xl) = xc.storage_and_layout();
    let (ws, wl) = wc.storage_and_layout();
    let xv = cpu_f32(&xs, xl)?;
    let wv = cpu_f32(&ws, wl)?;
    let k = kh * kw * c;
    let hw = oh * ow;
    let mut out = vec![0f32; b * hw * co];
    let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && pad == [0; 4];
    // Output pixels per gemm: 1024 as in `conv2d_cpu`, but 256 for long rows (K ≥ 1024,
    // NanoDet's 3×3 convs on 128–256 channels), whose 1024-row im2col block (≥ 4 MB) falls
    // out of L2 before the gemm reads it: measured 5–30 % faster on those layers, the same
    // elsewhere (`layer_timings`).
    let tile_px = tile.unwrap_or(if k >= 1024 { 256 } else { 1024 }).max(1);
    let threads = candle_core::utils::get_num_threads().max(1);
    let mut col = if direct {
        Vec::new()
    } else {
        vec![0f32; tile_px.min(hw) * k]
    };
    let run = kw * c;
    for bi in 0..b {
        let xb = &xv[bi * h * wd * c..(bi + 1) * h * wd * c];
        let ob = &mut out[bi * hw * co..(bi + 1) * hw * co];
        for t0 in (0..hw).step_by(tile_px) {
            let n = tile_px.min(hw - t0);
            let (lhs, lhs_rs): (&[f32], usize) = if direct {
                (&xb[t0 * c..], c)
            } else {
                for (t, row) in col[..n * k].chunks_exact_mut(k).enumerate() {
                    let (oy, ox) = ((t0 + t) / ow, (t0 + t) % ow);
                    for (ky, seg) in row.chunks_exact_mut(run).enumerate() {
                        let Some(iy) = tap(oy, ky, sh, dh, pt, h) else {
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
                (&col[..n * k], k)
            };
            let par = if threads > 1 && co * n * k >= (1 << 20) {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            };
            let dst = &mut ob[t0 * co..(t0 + n) * co];
            // SAFETY: dst is n × co (row stride co, column stride 1), exactly the slice
            // `dst`; lhs is n × k read as lhs[t, kk] = lhs_slice[t·lhs_rs + kk], inside the
            // slice (n rows of lhs_rs ≥ k values, the last one complete); rhs is k × co read
            // as wv[kk·co + j], all of `wv` (k·co values, checked by the filter's dims).
            // read_dst = false: dst = 1 · lhs · rhs.
            unsafe {
                gemm::gemm(
                    n,
                    co,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    co as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    lhs_rs as isize,
                    wv.as_ptr(),
                    1,
                    co as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
            epilogue(dst);
        }
    }
    Tensor::from_vec(out, (b, oh, ow, co), &Device::Cpu)
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
    let (b, h, w, c) = x.dims4()?;
    let ((kh, kw), (sh, sw)) = (window, stride);
    let [pt, pb, pl, pr] = pad;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || h + pt + pb < kh || w + pl + pr < kw {
        candle_core::bail!(
            "max_pool2d_nhwc_cpu: input {:?}, window {window:?}, stride {stride:?}, padding {pad:?}",
            x.dims()
        );
    }
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        candle_core::bail!("max_pool2d_nhwc_cpu: f32 tensors on the CPU only");
    }
    let (oh, ow) = ((h + pt + pb - kh) / sh + 1, (w + pl + pr - kw) / sw + 1);
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
        let xv = cpu_f32(&xs, xl)?;
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
    let xv = cpu_f32(&xs, xl)?;
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

/// The axis order in which `t`'s elements lie densely in memory: a permutation `p` with
/// `t.permute(p)` contiguous (the identity for a contiguous tensor, `[0, 2, 3, 1]` for the
/// NCHW view of an NHWC buffer), or `None` for a view with gaps or broadcast axes.
pub fn dense_order(t: &Tensor) -> Option<Vec<usize>> {
    let stride = t.stride();
    let mut p: Vec<usize> = (0..t.rank()).collect();
    p.sort_by_key(|&d| std::cmp::Reverse(stride[d]));
    let dense = t.permute(p.clone()).is_ok_and(|v| v.is_contiguous());
    dense.then_some(p)
}

/// The inverse of a permutation.
pub fn inverse_permutation(p: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; p.len()];
    for (i, &d) in p.iter().enumerate() {
        if let Some(slot) = inv.get_mut(d) {
            *slot = i;
        }
    }
    inv
}

/// `f(a, b)` element by element, in one pass over memory, when `a` and `b` are f32 CPU
/// tensors of one shape laid out densely in the same axis order (both contiguous, or both
/// the same permuted view of contiguous buffers); `Ok(None)` otherwise (the caller then
/// uses candle's broadcasting ops). The result has that same memory order. Why: candle's
/// binary ops take their fast path only for contiguous operands and index every element
/// through the strides otherwise (≈ 10× slower on the NCHW views of NHWC buffers that
/// TF.js graphs pass around), and this also lets an executor fuse an activation into the
/// op (a residual `Add` then `Relu`) instead of writing and re-reading the sum.
pub fn zip_map_f32(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32,
) -> candle_core::Result<Option<Tensor>> {
    let fits = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    if a.dims() != b.dims() || !fits(a) || !fits(b) {
        return Ok(None);
    }
    let Some(p) = dense_order(a) else {
        return Ok(None);
    };
    let (pa, pb) = (a.permute(p.clone())?, b.permute(p.clone())?);
    if !pb.is_contiguous() {
        return Ok(None);
    }
    let out: Vec<f32> = {
        let (sa, la) = pa.storage_and_layout();
        let (sb, lb) = pb.storage_and_layout();
        let (va, vb) = (cpu_f32(&sa, la)?, cpu_f32(&sb, lb)?);
        va.iter().zip(vb).map(|(&x, &y)| f(x, y)).collect()
    };
    Tensor::from_vec(out, pa.dims(), &Device::Cpu)?
        .permute(inverse_permutation(&p))
        .map(Some)
}

/// Channels per vector in the NHWC depthwise kernels.
const LANES: usize = 8;

#[inline(always)]
fn load_lanes(s: &[f32], at: usize) -> [f32; LANES] {
    let mut v = [0f32; LANES];
    v.copy_from_slice(&s[at..at + LANES]);
    v
}

/// [`load_lanes`] without the bounds test.
///
/// # Safety
///
/// `at + LANES <= s.len()`.
#[inline(always)]
unsafe fn load_lanes_unchecked(s: &[f32], at: usize) -> [f32; LANES] {
    debug_assert!(at + LANES <= s.len());
    // SAFETY: the caller guarantees that the LANES values from `at` are inside `s`;
    // [f32; LANES] has no alignment requirement beyond f32's, and read_unaligned has none.
    unsafe { s.as_ptr().add(at).cast::<[f32; LANES]>().read_unaligned() }
}

/// Whether [`nhwc_row_fast`] handles this geometry: depth multiplier 1, channels in whole
/// vectors, a 3×3 or 5×5 filter (every depthwise layer of BlazeFace, NanoDet-style and
/// MobileNet graphs).
fn nhwc_fast_fits(g: &Geometry) -> bool {
    g.m == 1 && g.c % LANES == 0 && matches!((g.kh, g.kw), (3, 3) | (5, 5))
}

/// One NHWC output row of a depthwise convolution, as [`nhwc_row`] computes it (bias,
/// then the taps row by row, each a multiply then an add: the same values bit for bit),
/// but vectorised over channels: for each group of [`LANES`] channels the filter's taps
/// stay in registers while the accumulators walk along the row, and the output columns
/// whose taps are all inside the image (all but the borders) run without bounds tests.
/// `nhwc_row` instead updates the whole channel row once per tap (a load and a store of
/// the accumulators each time) and tests every tap, which ran at ≈ 5 GFLOP/s.
///
/// `S` > 0 compiles the interior for stride `S` and dilation 1 (the caller checks that the
/// geometry has them), so that the tap offsets are constants; 0 reads them from `g`.
#[inline(always)]
fn nhwc_row_fast_body<const KH: usize, const KW: usize, const S: usize>(
    image: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    oy: usize,
    dst: &mut [f32],
) {
    let c = g.c;
    let mut rows = [None; KH];
    for (ky, r) in rows.iter_mut().enumerate() {
        *r = tap(oy, ky, g.sh, g.dh, g.pad_top, g.h);
    }
    let mut iys = [0usize; KH];
    let mut all_rows = true;
    for (iy, r) in iys.iter_mut().zip(&rows) {
        match r {
            Some(v) => *iy = *v,
            None => all_rows = false,
        }
    }
    // Columns ox with ox·sw ≥ pad_left and ox·sw − pad_left + (KW − 1)·dw < W.
    let hi = (g.w + g.pad_left)
        .checked_sub((KW - 1) * g.dw)
        .map_or(0, |v| v.div_ceil(g.sw))
        .min(g.ow);
    let lo = g.pad_left.div_ceil(g.sw).min(hi);
    let (lo, hi) = if all_rows { (lo, hi) } else { (0, 0) };
    // The interior reads unchecked (a bounds test per load cost more than the arithmetic):
    // its furthest value is the last channel of the last tap of column hi − 1 on the
    // lowest tap row. Checked here once; a geometry that failed it (none does) would run
    // every column through the checked edge path.
    let furthest =
        iys.iter().max().copied().unwrap_or(0) * g.w + (hi.max(1) - 1) * g.sw + (KW - 1) * g.dw;
    let (lo, hi) =
        if hi > lo && (furthest < g.pad_left || (furthest - g.pad_left + 1) * c > image.len()) {
            (0, 0)
        } else {
            (lo, hi)
        };
    for cc in (0..c).step_by(LANES) {
        let mut wk = [[[0f32; LANES]; KW]; KH];
        for (ky, wrow) in wk.iter_mut().enumerate() {
            for (kx, wt) in wrow.iter_mut().enumerate() {
                *wt = load_lanes(w, (ky * KW + kx) * c + cc);
            }
        }
        let b0 = bias.map_or([0f32; LANES], |b| load_lanes(b, cc));
        let edge = |ox: usize, acc: &mut [f32; LANES]| {
            for (ky, r) in rows.iter().enumerate() {
                let Some(iy) = *r else { continue };
                for (kx, wt) in wk[ky].iter().enumerate() {
                    let Some(ix) = tap(ox, kx, g.sw, g.dw, g.pad_left, g.w) else {
                        continue;
                    };
                    let xv = load_lanes(image, (iy * g.w + ix) * c + cc);
                    for l in 0..LANES {
                        acc[l] += xv[l] * wt[l];
                    }
                }
            }
        };
        let mut store = |ox: usize, acc: &[f32; LANES]| {
            dst[ox * c + cc..ox * c + cc + LANES].copy_from_slice(acc);
        };
        for ox in 0..lo {
            let mut acc = b0;
            edge(ox, &mut acc);
            store(ox, &acc);
        }
        // Interior, PIX output columns at a time: independent accumulators, so the
        // additions of one column do not wait on each other's latency.
        const PIX: usize = 4;
        let mut ox = lo;
        while ox + PIX <= hi {
            let mut acc = [b0; PIX];
            let (sw, dw) = if S > 0 { (S, 1) } else { (g.sw, g.dw) };
            let ix0 = ox * sw - g.pad_left;
            for (ky, &iy) in iys.iter().enumerate() {
                let base = (iy * g.w + ix0) * c + cc;
                for (kx, wt) in wk[ky].iter().enumerate() {
                    for (p, a) in acc.iter_mut().enumerate() {
                        // SAFETY: ox + p < hi, so this index is at most `furthest`'s
                        // channel group cc, checked to lie inside `image` above.
                        let xv =
                            unsafe { load_lanes_unchecked(image, base + (p * sw + kx * dw) * c) };
                        for l in 0..LANES {
                            a[l] += xv[l] * wt[l];
                        }
                    }
                }
            }
            for (p, a) in acc.iter().enumerate() {
                store(ox + p, a);
            }
            ox += PIX;
        }
        for ox in ox..hi {
            let mut acc = b0;
            let ix0 = ox * g.sw - g.pad_left;
            for (ky, &iy) in iys.iter().enumerate() {
                let base = (iy * g.w + ix0) * c + cc;
                for (kx, wt) in wk[ky].iter().enumerate() {
                    // SAFETY: ox < hi, as in the block loop above.
                    let xv = unsafe { load_lanes_unchecked(image, base + kx * g.dw * c) };
                    for l in 0..LANES {
                        acc[l] += xv[l] * wt[l];
                    }
                }
            }
            store(ox, &acc);
        }
        for ox in hi.max(lo)..g.ow {
            let mut acc = b0;
            edge(ox, &mut acc);
            store(ox, &acc);
        }
    }
}

/// [`nhwc_row_fast_body`] compiled for AVX2 (8 channels per instruction instead of
/// SSE2's 4 in the baseline x86-64 build). Multiplies and adds stay separate (Rust never
/// contracts them into FMAs), so the results equal the portable build's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn nhwc_row_avx2<const KH: usize, const KW: usize, const S: usize>(
    image: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    oy: usize,
    dst: &mut [f32],
) {
    nhwc_row_fast_body::<KH, KW, S>(image, w, bias, g, oy, dst)
}

/// Whether this CPU runs the AVX2 build of the fast kernels (detected once, cached by std).
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One NHWC output row through the fast kernel (only for geometries where
/// [`nhwc_fast_fits`] holds; `avx2` as [`has_avx2`] reported).
fn nhwc_row_fast(
    image: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    oy: usize,
    dst: &mut [f32],
    avx2: bool,
) {
    let s = match (g.sw, g.dw) {
        (1, 1) => 1,
        (2, 1) => 2,
        _ => 0,
    };
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the running CPU reported AVX2 (`has_avx2`).
        unsafe {
            match (g.kh, s) {
                (3, 1) => nhwc_row_avx2::<3, 3, 1>(image, w, bias, g, oy, dst),
                (3, 2) => nhwc_row_avx2::<3, 3, 2>(image, w, bias, g, oy, dst),
                (3, _) => nhwc_row_avx2::<3, 3, 0>(image, w, bias, g, oy, dst),
                (_, 1) => nhwc_row_avx2::<5, 5, 1>(image, w, bias, g, oy, dst),
                (_, 2) => nhwc_row_avx2::<5, 5, 2>(image, w, bias, g, oy, dst),
                _ => nhwc_row_avx2::<5, 5, 0>(image, w, bias, g, oy, dst),
            }
        }
        return;
    }
    let _ = avx2;
    match (g.kh, s) {
        (3, 1) => nhwc_row_fast_body::<3, 3, 1>(image, w, bias, g, oy, dst),
        (3, 2) => nhwc_row_fast_body::<3, 3, 2>(image, w, bias, g, oy, dst),
        (3, _) => nhwc_row_fast_body::<3, 3, 0>(image, w, bias, g, oy, dst),
        (_, 1) => nhwc_row_fast_body::<5, 5, 1>(image, w, bias, g, oy, dst),
        (_, 2) => nhwc_row_fast_body::<5, 5, 2>(image, w, bias, g, oy, dst),
        _ => nhwc_row_fast_body::<5, 5, 0>(image, w, bias, g, oy, dst),
    }
}

#[cfg(test)]
mod nhwc_tests {
    use super::tests::max_abs_diff;
    use super::*;

    fn ramp(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                ((i as f32 * 0.37 + seed).sin() * 1.7).round() / 2.0
                    + (i as f32 * 0.011).cos() * 0.1
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn conv2d_nhwc_matches_conv2d_cpu_with_asymmetric_padding_strides_and_dilation() {
        for &(c, co, k, pad, stride, dil, h, w) in &[
            (3, 24, 5, [1, 2, 1, 2], (2, 2), (1, 1), 20, 18),
            (24, 24, 1, [0, 0, 0, 0], (1, 1), (1, 1), 9, 11),
            (8, 5, 1, [0, 0, 0, 0], (2, 2), (1, 1), 7, 6),
            (16, 12, 3, [1, 1, 1, 1], (1, 1), (1, 1), 9, 7),
            (4, 6, 3, [2, 2, 2, 2], (1, 1), (2, 2), 10, 10),
            (5, 7, 3, [0, 1, 2, 0], (2, 1), (1, 1), 11, 9),
            (5, 7, 5, [0, 0, 0, 0], (1, 1), (1, 1), 40, 40), // more than one tile
        ] {
            let x = ramp(&[2, h, w, c], 0.1);
            let wt = ramp(&[k, k, c, co], 1.3);
            let bias = ramp(&[co], 2.0).to_vec1::<f32>().unwrap();
            let xn = x.permute((0, 3, 1, 2)).unwrap();
            let xp = xn
                .pad_with_zeros(2, pad[0], pad[1])
                .unwrap()
                .pad_with_zeros(3, pad[2], pad[3])
                .unwrap();
            let wn = wt.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
            let want = if stride.0 == stride.1 {
                conv2d_cpu(&xp, &wn, 0, stride.0, dil.0).unwrap()
            } else {
                xp.contiguous()
                    .unwrap()
                    .conv2d(&wn, 0, 1, dil.0, 1)
                    .unwrap()
                    .index_select(
                        &Tensor::new(
                            (0..xp.dims()[2] - (k - 1) * dil.0)
                                .step_by(stride.0)
                                .map(|v| v as u32)
                                .collect::<Vec<_>>(),
                            &Device::Cpu,
                        )
                        .unwrap(),
                        2,
                    )
                    .unwrap()
            };
            let want = want
                .broadcast_add(
                    &Tensor::new(&bias[..], &Device::Cpu)
                        .unwrap()
                        .reshape((1, co, 1, 1))
                        .unwrap(),
                )
                .unwrap()
                .relu()
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap();
            let ep = |rows: &mut [f32]| {
                for px in rows.chunks_exact_mut(co) {
                    for (v, b) in px.iter_mut().zip(&bias) {
                        *v = (*v + b).max(0.0);
                    }
                }
            };
            let got = conv2d_nhwc_cpu(&x, &wt, pad, stride, dil, &ep).unwrap();
            assert_eq!(
                got.dims(),
                want.dims(),
                "c{c} co{co} k{k} {pad:?} {stride:?}"
            );
            assert!(got.is_contiguous());
            let d = max_abs_diff(&got, &want.contiguous().unwrap());
            assert!(
                d <= 1e-4,
                "c{c} co{co} k{k} {pad:?} {stride:?} {dil:?}: max |Δ| {d}"
            );
        }
        let x = ramp(&[1, 4, 4, 3], 0.0);
        assert!(conv2d_nhwc_cpu(
            &x,
            &ramp(&[3, 3, 2, 4], 0.0),
            [0; 4],
            (1, 1),
            (1, 1),
            &|_| {}
        )
        .is_err());
        assert!(conv2d_nhwc_cpu(
            &x,
            &ramp(&[5, 5, 3, 4], 0.0),
            [0; 4],
            (1, 1),
            (1, 1),
            &|_| {}
        )
        .is_err());
    }

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
    fn zip_map_takes_equal_shapes_in_one_memory_order() {
        let a = ramp(&[2, 3, 4], 0.0);
        let b = ramp(&[2, 3, 4], 1.0);
        let got = zip_map_f32(&a, &b, |x, y| (x + y).max(0.0))
            .unwrap()
            .unwrap();
        let want = (&a + &b).unwrap().relu().unwrap();
        assert_eq!(max_abs_diff(&got, &want), 0.0);
        let t = b
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        assert!(zip_map_f32(&a, &t, |x, y| x + y).unwrap().is_none());
        // Both the same view of transposed buffers: computed in memory order, kept in it.
        let u = a
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        assert_eq!(dense_order(&u), Some(vec![0, 2, 1]));
        let got = zip_map_f32(&u, &t, |x, y| x - y).unwrap().unwrap();
        assert!(!got.is_contiguous() && got.transpose(1, 2).unwrap().is_contiguous());
        assert_eq!(max_abs_diff(&got, &(&a - &b).unwrap()), 0.0);
        assert_eq!(dense_order(&a.narrow(2, 0, 2).unwrap()), None);
        let c = ramp(&[2, 3, 1], 0.0);
        assert!(zip_map_f32(&a, &c, |x, y| x + y).unwrap().is_none());
    }

    /// The fast NHWC depthwise rows give exactly the generic rows' values.
    #[test]
    fn fast_depthwise_rows_equal_the_generic_ones_bit_for_bit() {
        for &(c, k, s, h, w, padding) in &[
            (24, 3, 1, 9, 11, Padding::Same),
            (24, 3, 2, 10, 12, Padding::Same),
            (16, 5, 1, 8, 7, Padding::Same),
            (8, 3, 2, 9, 9, Padding::Valid),
            (
                48,
                3,
                1,
                6,
                5,
                Padding::Explicit {
                    top: 2,
                    bottom: 0,
                    left: 0,
                    right: 3,
                },
            ),
            (8, 3, 1, 2, 2, Padding::Same), // smaller than the filter: no interior
            (8, 3, 3, 13, 14, Padding::Same), // stride 3: offsets read from the geometry
        ] {
            // Dilation 2 takes the interior with the offsets read from the geometry too.
            for d in [1, 2] {
                let x = ramp(&[2, h, w, c], 0.3);
                let wt = ramp(&[k, k, c, 1], 0.9);
                let bias = ramp(&[c], 1.7);
                let cfg = DepthwiseConv2dConfig {
                    layout: ConvLayout::Nhwc,
                    stride: (s, s),
                    dilation: (d, d),
                    padding,
                };
                let g = geometry(&x, &wt, &cfg).unwrap();
                assert!(nhwc_fast_fits(&g));
                let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let wv = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let bv = bias.to_vec1::<f32>().unwrap();
                let image = &xv[g.h * g.w * c..];
                for avx2 in [false, has_avx2()] {
                    for b in [None, Some(&bv[..])] {
                        for oy in 0..g.oh {
                            let mut want = vec![0f32; g.ow * c];
                            let mut got = vec![1f32; g.ow * c];
                            nhwc_row(&xv, &wv, b, &g, 1, oy, &mut want);
                            nhwc_row_fast(image, &wv, b, &g, oy, &mut got, avx2);
                            assert_eq!(
                                got, want,
                                "c{c} k{k} s{s} d{d} {padding:?} row {oy} avx2 {avx2}"
                            );
                        }
                    }
                }
                // And through the public op, against candle's grouped convolution.
                let want = depthwise_conv2d(
                    &x.permute((0, 3, 1, 2)).unwrap(),
                    &wt.reshape((k, k, c))
                        .unwrap()
                        .permute((2, 0, 1))
                        .unwrap()
                        .unsqueeze(1)
                        .unwrap()
                        .contiguous()
                        .unwrap(),
                    Some(&bias),
                    &DepthwiseConv2dConfig {
                        layout: ConvLayout::Nchw,
                        ..cfg
                    },
                )
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap();
                let got = depthwise_conv2d(&x, &wt, Some(&bias), &cfg).unwrap();
                assert!(max_abs_diff(&got, &want.contiguous().unwrap()) <= 1e-5);
            }
        }
    }

    /// Per-layer timings of BlazeFace-sized layers (prints; asserts nothing on time).
    /// `cargo test --release --lib nhwc_tests::layer_timings -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn layer_timings() {
        let time = |f: &dyn Fn()| {
            f();
            let mut v: Vec<f64> = (0..15)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        {
            let x = ramp(&[1, 256, 256, 3], 0.1);
            let w5 = ramp(&[5, 5, 3, 24], 0.2);
            let t = time(&|| {
                conv2d_nhwc_cpu(&x, &w5, [1, 2, 1, 2], (2, 2), (1, 1), &|_| {}).unwrap();
            });
            let w1 = ramp(&[5, 5, 3, 1], 0.2);
            let t1 = time(&|| {
                conv2d_nhwc_cpu(&x, &w1, [1, 2, 1, 2], (2, 2), (1, 1), &|_| {}).unwrap();
            });
            eprintln!("256²×3 → 5×5/2 → 128²×24: {t:.3} ms (1 output channel: {t1:.3} ms)");
        }
        // NanoDet-sized 3×3 convolutions, by pixels per gemm.
        for &(hw, c, co, s) in &[
            (416, 3, 32, 2),
            (104, 32, 32, 1),
            (104, 32, 16, 1),
            (52, 64, 64, 1),
            (52, 128, 128, 1),
            (26, 256, 128, 1),
            (26, 256, 256, 2),
        ] {
            let x = ramp(&[1, hw, hw, c], 0.1);
            let w3 = ramp(&[3, 3, c, co], 0.2);
            let pad = if s == 2 { [0, 1, 0, 1] } else { [1, 1, 1, 1] };
            let mut line = format!("{hw}²×{c} → 3×3/{s} → {co}:");
            for tile in [64, 128, 256, 512, 1024, 4096] {
                let t = time(&|| {
                    conv2d_nhwc_tiled(&x, &w3, pad, (s, s), (1, 1), &|_| {}, Some(tile)).unwrap();
                });
                line += &format!(" {tile}: {t:.3}");
            }
            eprintln!("{line} ms");
        }
        for &(hw, c) in &[(128, 24), (64, 48), (32, 96)] {
            let x = ramp(&[1, hw, hw, c], 0.1);
            let w1 = ramp(&[1, 1, c, c], 0.2);
            let wn = w1.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
            let xn = x.permute((0, 3, 1, 2)).unwrap();
            let t_nchw = time(&|| {
                conv2d_cpu(&xn, &wn, 0, 1, 1).unwrap();
            });
            let t_nhwc = time(&|| {
                conv2d_nhwc_cpu(&x, &w1, [0; 4], (1, 1), (1, 1), &|_| {}).unwrap();
            });
            let wd = ramp(&[3, 3, c, 1], 0.5);
            let cfg = DepthwiseConv2dConfig {
                layout: ConvLayout::Nhwc,
                ..Default::default()
            };
            let t_dw = time(&|| {
                depthwise_conv2d(&x, &wd, None, &cfg).unwrap();
            });
            let g = geometry(&x, &wd, &cfg).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let wv = wd.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut row = vec![0f32; g.ow * c];
            let t_dw_old = time(&|| {
                let mut row = row.clone();
                for oy in 0..g.oh {
                    nhwc_row(&xv, &wv, None, &g, 0, oy, &mut row);
                }
            });
            let avx2 = has_avx2();
            let t_dw_rows = time(&|| {
                let mut row = row.clone();
                for oy in 0..g.oh {
                    nhwc_row_fast(&xv, &wv, None, &g, oy, &mut row, avx2);
                }
            });
            let t_alloc = time(&|| {
                let v = vec![0f32; g.oh * g.ow * c];
                std::hint::black_box(&v);
            });
            eprintln!("  fast rows alone {t_dw_rows:.3} ms, zeroed output alloc {t_alloc:.3} ms");
            row.fill(0.0);
            let a = x.clone();
            let b = x.affine(0.5, 0.1).unwrap();
            let t_add = time(&|| {
                (&a + &b).unwrap().relu().unwrap();
            });
            let t_zip = time(&|| {
                zip_map_f32(&a, &b, |p, q| (p + q).max(0.0)).unwrap();
            });
            let t_mixed = time(&|| {
                a.broadcast_add(
                    &b.permute((0, 3, 1, 2))
                        .unwrap()
                        .contiguous()
                        .unwrap()
                        .permute((0, 2, 3, 1))
                        .unwrap(),
                )
                .unwrap();
            });
            eprintln!(
                "{hw}²×{c}: 1×1 conv NCHW-out {t_nchw:.3} ms, NHWC-out {t_nhwc:.3} ms; depthwise 3×3 {t_dw:.3} ms (generic rows {t_dw_old:.3} ms); add+relu candle {t_add:.3} ms, fused {t_zip:.3} ms, mixed-layout add {t_mixed:.3} ms"
            );
        }
    }
}

/// Temporal convolution over frames: `x` `[N, T, CI, S]` (N sequences of T frames, CI
/// channels of S = H·W pixels each), `w` `[K, CO, CI]` (tap-major), `bias` `[CO]`, `pad`
/// zero frames before and after (the same on both sides); returns `[N, T + 2·pad − K + 1,
/// CO, S]`, with ReLU applied when `relu` is set.
///
/// This is a 3-D convolution with a `(K, 1, 1)` kernel (PyTorch's `Conv3d` on `[N, C, T,
/// H, W]` data), held frame-major so that the spatial convolutions around it see plain
/// `[N·T, C, H, W]` images; candle 0.11 has no 3-D convolution. Every output frame is
/// `bias + Σ_k W_k · X[t + k − pad]`, computed as candle matrix products over shifted
/// views of the zero-padded input, so it runs on any device. (On the CPU Light-ASD takes
/// the channels-last [`temporal_conv_sum_nhwc`] instead, which also fuses the ReLU and the
/// sum of a block's two branches.)
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
    acc.reshape((n, ot, co, s))
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
    fn temporal_conv_matches_the_written_out_sum_in_f32_and_f64() {
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
                "f32 {n} {t} {ci} {co} {s} {k}"
            );
            // The same in f64.
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
            assert!(max_abs_diff(&g, &want) <= 1e-5, "f64");
        }
        let x = ramp(&[1, 2, 3, 4], 0.0);
        assert!(temporal_conv(&x, &ramp(&[5, 2, 3], 0.0), &ramp(&[2], 0.0), 1, false).is_err());
        assert!(temporal_conv(&x, &ramp(&[3, 2, 4], 0.0), &ramp(&[2], 0.0), 1, false).is_err());
    }
}

/// One branch of [`temporal_conv_sum_nhwc`]: its input `[N, T, S, CI]`, filter
/// `[K, CI, CO]` (tap-major, each tap the `CI × CO` matrix), bias `[CO]` and padding.
pub struct TemporalBranch<'a> {
    /// Input frames, channels last.
    pub x: &'a Tensor,
    /// Filter.
    pub w: &'a Tensor,
    /// Bias.
    pub bias: &'a Tensor,
    /// Zero frames before and after.
    pub pad: usize,
}

/// `Σ_branches ReLU(bias + Σ_k X[t + k − pad] · W_k)` per output frame, channels last, on
/// the CPU (f32): every branch's input is `[N, T, S, CI]` (S = H·W pixels of CI channels,
/// contiguous), the result `[N, T, S, CO]` (all branches must give the same T).
///
/// This is the second half of a Light-ASD block — two `(K,1,1)` temporal convolutions
/// (K = 3 and 5), each followed by BatchNorm (folded into `w`, `bias`) and ReLU, summed —
/// done in one pass per output frame: each branch's `S × CO` frame is accumulated by one
/// `gemm` per tap into a scratch buffer (inputs read in place), then ReLU'd and added to
/// the output while both are in cache. Written as separate candle ops it would be two
/// convolutions, two bias adds, two ReLUs and an add over tensors of tens of MB.
pub fn temporal_conv_sum_nhwc(branches: &[TemporalBranch<'_>]) -> candle_core::Result<Tensor> {
    let Some(first) = branches.first() else {
        candle_core::bail!("temporal_conv_sum_nhwc: no branch");
    };
    let (n, t, s, _) = first.x.dims4()?;
    let co = first.w.dims3()?.2;
    let mut views = Vec::with_capacity(branches.len());
    let mut ot = None;
    for b in branches {
        let (bn, bt, bs, ci) = b.x.dims4()?;
        let (k, wci, wco) = b.w.dims3()?;
        if (bn, bs) != (n, s) || wci != ci || wco != co || b.bias.dims1()? != co || k == 0 {
            candle_core::bail!(
                "temporal_conv_sum_nhwc: input {:?}, filter {:?}, bias {:?} (first input {:?})",
                b.x.dims(),
                b.w.dims(),
                b.bias.dims(),
                first.x.dims()
            );
        }
        if bt + 2 * b.pad < k {
            candle_core::bail!(
                "temporal_conv_sum_nhwc: {bt} frames + 2×{} < kernel {k}",
                b.pad
            );
        }
        let this_ot = bt + 2 * b.pad - k + 1;
        if *ot.get_or_insert(this_ot) != this_ot {
            candle_core::bail!("temporal_conv_sum_nhwc: branches give {this_ot} and {ot:?} frames");
        }
        for tt in [b.x, b.w, b.bias] {
            if !matches!(tt.device(), Device::Cpu) || tt.dtype() != DType::F32 {
                candle_core::bail!("temporal_conv_sum_nhwc: f32 tensors on the CPU only");
            }
        }
        views.push((
            b.x.contiguous()?,
            b.w.contiguous()?,
            b.bias.contiguous()?,
            b.pad,
            bt,
            ci,
            k,
        ));
    }
    let ot = ot.unwrap_or(t);
    let held: Vec<_> = views
        .iter()
        .map(|(x, w, bias, ..)| {
            (
                x.storage_and_layout(),
                w.storage_and_layout(),
                bias.storage_and_layout(),
            )
        })
        .collect();
    let mut slices = Vec::with_capacity(held.len());
    for (((xs, xl), (ws, wl), (bs, bl)), v) in held.iter().zip(&views) {
        slices.push((
            cpu_f32(xs, xl)?,
            cpu_f32(ws, wl)?,
            cpu_f32(bs, bl)?,
            v.3,
            v.4,
            v.5,
            v.6,
        ));
    }
    let frame_out = s * co;
    let mut out = vec![0f32; n * ot * frame_out];
    let work: usize = slices.iter().map(|b| n * ot * b.6 * b.5 * co * s).sum();
    thread_local! {
        /// One branch's output frame, reused from frame to frame.
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    parallel_chunks(&mut out, frame_out, work, |idx, dst| {
        let (seq, of) = (idx / ot, idx % ot);
        SCRATCH.with(|scratch| {
            let mut acc = scratch.borrow_mut();
            acc.resize(frame_out, 0.0);
            for &(xv, wv, bv, pad, bt, ci, k) in &slices {
                for row in acc.chunks_exact_mut(co) {
                    row.copy_from_slice(bv);
                }
                for kk in 0..k {
                    let Some(inf) = (of + kk).checked_sub(pad).filter(|&f| f < bt) else {
                        continue;
                    };
                    let src = &xv[(seq * bt + inf) * s * ci..(seq * bt + inf + 1) * s * ci];
                    let wk = &wv[kk * ci * co..(kk + 1) * ci * co];
                    // SAFETY: dst is s × co (row stride co) inside `acc`; lhs is s × ci (row
                    // stride ci) inside `src`; rhs is ci × co (row stride co) inside `wk`.
                    // read_dst = true: acc = 1 · acc + 1 · lhs · rhs.
                    unsafe {
                        gemm::gemm(
                            s,
                            co,
                            ci,
                            acc.as_mut_ptr(),
                            1,
                            co as isize,
                            true,
                            src.as_ptr(),
                            1,
                            ci as isize,
                            wk.as_ptr(),
                            1,
                            co as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                for (d, a) in dst.iter_mut().zip(acc.iter()) {
                    *d += a.max(0.0);
                }
            }
        });
    });
    Tensor::from_vec(out, (n, ot, s, co), &Device::Cpu)
}

#[cfg(test)]
mod temporal_sum_tests {
    use super::tests::max_abs_diff;
    use super::*;

    fn ramp(shape: &[usize], seed: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.613 + seed).sin()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_fused_sum_equals_two_temporal_convs_relued_and_added() {
        let (n, t, s, ci, co) = (2, 7, 6, 3, 4);
        let x3 = ramp(&[n, t, s, ci], 0.1);
        let x5 = ramp(&[n, t, s, ci], 0.7);
        let w3 = ramp(&[3, ci, co], 1.2);
        let w5 = ramp(&[5, ci, co], 2.3);
        let b3 = ramp(&[co], 3.1);
        let b5 = ramp(&[co], 4.2);
        let got = temporal_conv_sum_nhwc(&[
            TemporalBranch {
                x: &x3,
                w: &w3,
                bias: &b3,
                pad: 1,
            },
            TemporalBranch {
                x: &x5,
                w: &w5,
                bias: &b5,
                pad: 2,
            },
        ])
        .unwrap();
        // The NCHW-style reference: [N, T, C, S] with filters [K, CO, CI].
        let reference = |x: &Tensor, w: &Tensor, b: &Tensor, pad| {
            let y = temporal_conv(
                &x.permute((0, 1, 3, 2)).unwrap().contiguous().unwrap(),
                &w.permute((0, 2, 1)).unwrap().contiguous().unwrap(),
                b,
                pad,
                true,
            )
            .unwrap();
            y.permute((0, 1, 3, 2)).unwrap().contiguous().unwrap()
        };
        let want = (reference(&x3, &w3, &b3, 1) + reference(&x5, &w5, &b5, 2)).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert!(max_abs_diff(&got, &want) <= 1e-5);
        let bad = ramp(&[n, t + 1, s, ci], 0.0);
        assert!(temporal_conv_sum_nhwc(&[
            TemporalBranch {
                x: &x3,
                w: &w3,
                bias: &b3,
                pad: 1
            },
            TemporalBranch {
                x: &bad,
                w: &w5,
                bias: &b5,
                pad: 2
            },
        ])
        .is_err());
    }
}
