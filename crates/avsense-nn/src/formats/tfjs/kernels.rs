//! Tensor kernels the ops share: convolution epilogues (bias + activation, in TF.js's order
//! and precision), filter layout, depthwise convolution, padding, bilinear resize, and the
//! helpers that run an element-wise op or a concatenation in a view's memory order.

use candle_core::{Device, Tensor};

/// Activations a conv epilogue applies.
#[derive(Clone, Debug)]
pub(super) enum Act {
    None,
    Relu,
    Relu6,
    /// TF.js multiplies by the attribute as a JS double: `alpha · x` in f64, stored as f32.
    Leaky(f64),
    Sigmoid,
    Elu,
    Prelu(Tensor),
}

/// A conv's bias: the device tensor, and its values on the host (empty off the CPU).
pub(super) type Bias = (Tensor, Vec<f32>);

/// A conv's bias and activation, folded in from the nodes after it (see
/// [`super::passes`]).
pub(super) struct Epilogue {
    pub(super) bias: Option<Bias>,
    pub(super) act: Act,
}

/// TF filter → candle: conv `[kh, kw, cin, cout]` → `[cout, cin, kh, kw]`; depthwise
/// `[kh, kw, c, m]` → `[c·m, 1, kh, kw]` (output channel `c·m + j`, as TF orders them).
pub(super) fn prepare_filter(f: &Tensor, depthwise: bool) -> candle_core::Result<Tensor> {
    let (kh, kw, c, m) = f.dims4()?;
    if depthwise {
        f.reshape((kh, kw, c * m))?
            .permute((2, 0, 1))?
            .unsqueeze(1)?
            .contiguous()
    } else {
        f.permute((3, 2, 0, 1))?.contiguous()
    }
}

/// Depthwise 2-D convolution of `xn`, a logical-NCHW view of any physical layout, with
/// [`crate::ops::depthwise_conv2d`] (a direct kernel on the CPU; candle's grouped
/// conv elsewhere). When the data is physically NHWC (on the CPU, every conv, add and
/// pool output of an NHWC graph) it runs the kernel's NHWC form with TF's filter `[kh, kw, C, M]`, so the
/// input is never transposed; otherwise the NCHW form with the `[C·M, 1, kh, kw]` filter.
/// Returns logical NCHW (a view when computed in NHWC). Bias and activation are left to
/// the epilogue, which adds them after the sum as TF.js does.
pub(super) fn depthwise_conv2d(
    xn: &Tensor,
    w_nchw: &Tensor,
    w_tf: Option<&Tensor>,
    pad: [usize; 4],
    stride: (usize, usize),
    dilation: (usize, usize),
) -> candle_core::Result<Tensor> {
    use crate::ops::{self, ConvLayout, DepthwiseConv2dConfig, Padding};
    let padding = Padding::Explicit {
        top: pad[0],
        bottom: pad[1],
        left: pad[2],
        right: pad[3],
    };
    let cfg = |layout| DepthwiseConv2dConfig {
        layout,
        stride,
        dilation,
        padding,
    };
    let nhwc = xn.permute((0, 2, 3, 1))?;
    if let Some(w_tf) = w_tf.filter(|_| !xn.is_contiguous() && nhwc.is_contiguous()) {
        return ops::depthwise_conv2d(&nhwc, w_tf, None, &cfg(ConvLayout::Nhwc))?
            .permute((0, 3, 1, 2));
    }
    ops::depthwise_conv2d(xn, w_nchw, None, &cfg(ConvLayout::Nchw))
}

/// The epilogue of a conv on its NCHW result `y`: `act₀(y + bias)`, then each further
/// activation in turn. Nothing to do (no bias, no activation): `y` as it is.
pub(super) fn apply_epilogues(
    y: Tensor,
    bias: Option<&Bias>,
    acts: Vec<Act>,
) -> candle_core::Result<Tensor> {
    if bias.is_none() && acts.iter().all(|a| matches!(a, Act::None)) {
        return Ok(y);
    }
    let mut acts = acts.into_iter();
    let mut y = apply_epilogue(&y, bias, &acts.next().unwrap_or(Act::None))?;
    for act in acts {
        y = apply_epilogue(&y, None, &act)?;
    }
    Ok(y)
}

/// `act(y + bias[c])` on an NCHW conv result: one host pass on the CPU; candle ops elsewhere.
fn apply_epilogue(y: &Tensor, bias: Option<&Bias>, act: &Act) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = y.dims4()?;
    let host_ok = matches!(y.device(), Device::Cpu)
        && !matches!(act, Act::Prelu(_) | Act::Elu)
        && bias.is_none_or(|b| b.1.len() == c);
    if host_ok {
        let f = |x: f32, b: f32| -> f32 { host_act(act, x + b) };
        let bias_of = |k: usize| bias.map_or(0.0, |b| b.1[k]);
        let nhwc = y.permute((0, 2, 3, 1))?;
        if !y.is_contiguous() && nhwc.is_contiguous() {
            // Physically NHWC (the depthwise kernel's NHWC form): channel = index mod C.
            let mut v = nhwc.flatten_all()?.to_vec1::<f32>()?;
            for px in v.chunks_mut(c.max(1)) {
                for (k, x) in px.iter_mut().enumerate() {
                    *x = f(*x, bias_of(k));
                }
            }
            return Tensor::from_vec(v, (n, h, w, c), y.device())?.permute((0, 3, 1, 2));
        }
        let mut v = y.flatten_all()?.to_vec1::<f32>()?;
        for (k, plane) in v.chunks_mut((h * w).max(1)).enumerate() {
            let b = bias_of(k % c.max(1));
            plane.iter_mut().for_each(|x| *x = f(*x, b));
        }
        return Tensor::from_vec(v, (n, c, h, w), y.device());
    }
    let y = match bias {
        Some((b, _)) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y.clone(),
    };
    match act {
        Act::None => Ok(y),
        Act::Relu => y.relu(),
        Act::Relu6 => y.clamp(0f32, 6f32),
        Act::Leaky(a) => leaky_relu(&y, *a as f32),
        Act::Sigmoid => candle_nn::ops::sigmoid(&y),
        Act::Elu => y.elu(1.0),
        Act::Prelu(a) => {
            let a = a.reshape((1, a.elem_count(), 1, 1))?;
            let neg = y.minimum(0f32)?.broadcast_mul(&a)?;
            y.relu()?.add(&neg)
        }
    }
}

/// A host activation on one value (TF.js's arithmetic; Elu/Prelu are device-side only and
/// pass the value through here).
#[inline(always)]
pub(super) fn host_act(act: &Act, t: f32) -> f32 {
    match act {
        Act::Relu => t.max(0.0),
        Act::Relu6 => t.clamp(0.0, 6.0),
        Act::Leaky(a) => {
            if t < 0.0 {
                (a * f64::from(t)) as f32
            } else {
                t
            }
        }
        Act::Sigmoid => (1.0 / (1.0 + (-f64::from(t)).exp())) as f32,
        Act::None | Act::Elu | Act::Prelu(_) => t,
    }
}

/// `act(x + bias[c])` in place on `[n, C]` rows of NHWC values (`bias` empty: 0), the
/// activation chosen once outside the loop so that each case is a plain vectorisable loop.
pub(super) fn epilogue_rows(rows: &mut [f32], bias: &[f32], act: &Act) {
    fn each(rows: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
        if bias.is_empty() {
            rows.iter_mut().for_each(|v| *v = f(*v + 0.0));
            return;
        }
        for px in rows.chunks_exact_mut(bias.len()) {
            for (v, &b) in px.iter_mut().zip(bias) {
                *v = f(*v + b);
            }
        }
    }
    match act {
        Act::None | Act::Elu | Act::Prelu(_) => each(rows, bias, |t| t),
        Act::Relu => each(rows, bias, |t| t.max(0.0)),
        Act::Relu6 => each(rows, bias, |t| t.clamp(0.0, 6.0)),
        other => each(rows, bias, |t| host_act(other, t)),
    }
}

/// `x < 0 ? alpha · x : x` with candle ops (any device).
pub(super) fn leaky_relu(x: &Tensor, alpha: f32) -> candle_core::Result<Tensor> {
    let scaled = x.affine(f64::from(alpha), 0.0)?;
    if (0.0..=1.0).contains(&alpha) {
        x.maximum(&scaled)
    } else {
        x.ge(0f32)?.where_cond(x, &scaled)
    }
}

/// An element-wise `f` applied to `x` seen in its memory order (axes sorted by stride),
/// the result returned in `x`'s logical order again (so in the same memory order). candle
/// runs unary ops on contiguous runs of the *logical* innermost axes, so on the NCHW view
/// of an NHWC buffer (or a channel slice of one) it would step one element at a time and
/// return a transposed copy.
pub(super) fn in_memory_order(
    x: &Tensor,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let stride = x.stride();
    let mut p: Vec<usize> = (0..x.rank()).collect();
    p.sort_by_key(|&d| std::cmp::Reverse(stride[d]));
    if x.is_contiguous() || p.iter().enumerate().all(|(i, &d)| i == d) {
        return f(x);
    }
    f(&x.permute(p.clone())?)?.permute(crate::ops::inverse_permutation(&p))
}

/// `Tensor::cat` along `axis`, done in the parts' memory order when they all share a
/// permuted one (the NCHW views of NHWC conv outputs that an ONNX-converted graph
/// concatenates on channels): then the result keeps that order and the copy is one run
/// per row, where candle's `cat` would gather the views element by element into a
/// contiguous NCHW result that the next convolution has to transpose back.
pub(super) fn cat_in_memory_order(ts: &[Tensor], axis: usize) -> candle_core::Result<Tensor> {
    use crate::ops::{dense_order, inverse_permutation};
    let order = ts
        .first()
        .filter(|t| !t.is_contiguous() && matches!(t.device(), Device::Cpu))
        .and_then(dense_order);
    if let Some(p) = order {
        let phys: Vec<Tensor> = ts
            .iter()
            .map(|t| t.permute(p.clone()))
            .collect::<candle_core::Result<_>>()?;
        let q = p.iter().position(|&d| d == axis);
        if let (Some(q), true) = (q, phys.iter().all(Tensor::is_contiguous)) {
            return Tensor::cat(&phys, q)?.permute(inverse_permutation(&p));
        }
    }
    Tensor::cat(ts, axis)
}

/// Pads every axis by (before, after) with `value` (zeros through candle's pad).
pub(super) fn pad_const(
    x: &Tensor,
    pads: &[(usize, usize)],
    value: f32,
) -> candle_core::Result<Tensor> {
    let mut y = x.clone();
    for (d, &(b, a)) in pads.iter().enumerate() {
        if b == 0 && a == 0 {
            continue;
        }
        if value == 0.0 {
            y = y.pad_with_zeros(d, b, a)?;
            continue;
        }
        let mut parts = Vec::with_capacity(3);
        let mut shape = y.dims().to_vec();
        if b > 0 {
            shape[d] = b;
            parts.push(Tensor::full(value, shape.clone(), y.device())?);
        }
        parts.push(y.clone());
        if a > 0 {
            shape[d] = a;
            parts.push(Tensor::full(value, shape.clone(), y.device())?);
        }
        y = Tensor::cat(&parts, d)?;
    }
    Ok(y)
}

/// [`pad_const`] on the two spatial axes of an NCHW tensor: `[top, bottom, left, right]`.
pub(super) fn pad_spatial_nchw(
    x: &Tensor,
    pad: [usize; 4],
    value: f32,
) -> candle_core::Result<Tensor> {
    pad_const(
        x,
        &[(0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])],
        value,
    )
}

/// TF's bilinear resize on NHWC, with TF.js's CPU kernel's arithmetic: source coordinate
/// `(o + 0.5)·scale − 0.5` with half-pixel centres or `o·scale` without, `scale` =
/// `(in − 1)/(out − 1)` with aligned corners or `in/out`; lower index `max(floor(src), 0)`,
/// upper `min(ceil(src), in − 1)`, weight `src − lower`; columns first, then rows.
pub fn resize_bilinear_nhwc(
    x: &Tensor,
    oh: usize,
    ow: usize,
    align_corners: bool,
    half_pixel: bool,
) -> candle_core::Result<Tensor> {
    let (rows, cols) = axis_tables(x, (oh, ow), align_corners, half_pixel)?;
    if matches!(x.device(), Device::Cpu) {
        resize_bilinear_nhwc_cpu(x, &rows, &cols)
    } else {
        resize_bilinear_nhwc_ops(x, rows, cols)
    }
}

/// Per output index along one axis: (lower, upper, weight), TF.js's arithmetic in f64.
type AxisTable = Vec<(usize, usize, f64)>;

/// The [`AxisTable`]s of the rows and columns of NHWC `x` resized to `(oh, ow)`.
fn axis_tables(
    x: &Tensor,
    (oh, ow): (usize, usize),
    align_corners: bool,
    half_pixel: bool,
) -> candle_core::Result<(AxisTable, AxisTable)> {
    let (_, h, w, _) = x.dims4()?;
    Ok((
        resize_axis(h, oh, align_corners, half_pixel),
        resize_axis(w, ow, align_corners, half_pixel),
    ))
}

/// The [`AxisTable`] of `n_in` → `n_out`.
fn resize_axis(n_in: usize, n_out: usize, align_corners: bool, half_pixel: bool) -> AxisTable {
    let scale = if align_corners && n_out > 1 {
        (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
    } else {
        n_in as f64 / n_out as f64
    };
    (0..n_out)
        .map(|o| {
            let src = if half_pixel {
                (o as f64 + 0.5) * scale - 0.5
            } else {
                o as f64 * scale
            };
            let l = src.floor().max(0.0);
            let u = src.ceil().min(n_in as f64 - 1.0).max(0.0);
            (
                (l as usize).min(n_in.saturating_sub(1)),
                u as usize,
                src - l,
            )
        })
        .collect()
}

/// The CPU kernel: TF.js's loop (values read as doubles, interpolated, stored as f32).
fn resize_bilinear_nhwc_cpu(
    x: &Tensor,
    rows: &[(usize, usize, f64)],
    cols: &[(usize, usize, f64)],
) -> candle_core::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    if h == 0 || w == 0 {
        candle_core::bail!("resize of an empty image {:?}", x.dims());
    }
    let v = x.flatten_all()?.to_vec1::<f32>()?;
    let (oh, ow) = (rows.len(), cols.len());
    let mut out = Vec::with_capacity(n * oh * ow * c);
    let at = |b: usize, y: usize, x: usize, ch: usize| f64::from(v[((b * h + y) * w + x) * c + ch]);
    for b in 0..n {
        for &(t, btm, fy) in rows {
            for &(l, r, fx) in cols {
                for ch in 0..c {
                    let top = at(b, t, l, ch) + (at(b, t, r, ch) - at(b, t, l, ch)) * fx;
                    let bottom = at(b, btm, l, ch) + (at(b, btm, r, ch) - at(b, btm, l, ch)) * fx;
                    out.push((top + (bottom - top) * fy) as f32);
                }
            }
        }
    }
    Tensor::from_vec(out, (n, oh, ow, c), x.device())
}

/// The same with candle ops (any device): gathers and lerps along W, then H.
fn resize_bilinear_nhwc_ops(
    x: &Tensor,
    rows: AxisTable,
    cols: AxisTable,
) -> candle_core::Result<Tensor> {
    let dev = x.device();
    let x = x.contiguous()?;
    let gather = |t: &Tensor, axis: usize, table: AxisTable| -> candle_core::Result<Tensor> {
        let n = table.len();
        let lo: Vec<u32> = table.iter().map(|e| e.0 as u32).collect();
        let hi: Vec<u32> = table.iter().map(|e| e.1 as u32).collect();
        let fr: Vec<f32> = table.iter().map(|e| e.2 as f32).collect();
        let a = t.index_select(&Tensor::from_vec(lo, n, dev)?, axis)?;
        let b = t.index_select(&Tensor::from_vec(hi, n, dev)?, axis)?;
        let mut shape = vec![1usize; 4];
        shape[axis] = n;
        let fr = Tensor::from_vec(fr, shape, dev)?;
        a.add(&b.sub(&a)?.broadcast_mul(&fr)?)
    };
    let cols = gather(&x, 2, cols)?;
    gather(&cols, 1, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tfjs::fixtures::t;

    /// Both resize kernels, checked against each other; the CPU one's result.
    fn resize_both(
        x: &Tensor,
        out: (usize, usize),
        align: bool,
        half: bool,
    ) -> candle_core::Result<Tensor> {
        let (rows, cols) = axis_tables(x, out, align, half)?;
        let a = resize_bilinear_nhwc_cpu(x, &rows, &cols)?;
        let b = resize_bilinear_nhwc_ops(x, rows, cols)?;
        let d = a
            .sub(&b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "cpu and ops resize differ by {d}");
        let public = resize_bilinear_nhwc(x, out.0, out.1, align, half)?;
        assert_eq!(a.dims(), public.dims());
        Ok(a)
    }

    fn host(y: candle_core::Result<Tensor>) -> Vec<f32> {
        y.and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn resize_matches_tf_half_pixel() {
        // 1×2×2×1 → 4×4, half-pixel centres: TF gives rows/cols weights 0, .25, .75, 1.
        let x = t(vec![0.0, 1.0, 2.0, 3.0], &[1, 2, 2, 1]);
        let y = host(resize_both(&x, (4, 4), false, true));
        let expect = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // Downscale 4 → 2 with half-pixel centres averages pairs.
        let x = t((0..4).map(|v| v as f32).collect(), &[1, 1, 4, 1]);
        assert_eq!(host(resize_both(&x, (1, 2), false, true)), vec![0.5, 2.5]);
        // Legacy (no half-pixel, no aligned corners): o·in/out.
        assert_eq!(host(resize_both(&x, (1, 2), false, false)), vec![0.0, 2.0]);
        // Aligned corners: 4 → 7 samples at steps of (4 − 1)/(7 − 1).
        assert_eq!(
            host(resize_both(&x, (1, 7), true, false)),
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
        );
    }

    #[test]
    fn pads_with_a_constant() {
        let x = t(vec![1.0, 2.0], &[1, 2]);
        assert_eq!(
            host(pad_const(&x, &[(0, 0), (1, 2)], -1.0)),
            vec![-1.0, 1.0, 2.0, -1.0, -1.0]
        );
    }

    #[test]
    fn host_and_device_epilogues_agree() {
        // NCHW [1, 2, 2, 2]: bias per channel, then each activation, on the host pass
        // (CPU, contiguous), on the NHWC-memory pass (a permuted view) and on candle ops.
        let vals: Vec<f32> = (0..8).map(|i| i as f32 - 4.5).collect();
        let y = t(vals.clone(), &[1, 2, 2, 2]);
        let y_nhwc = t(vals, &[1, 2, 2, 2])
            .permute((0, 3, 1, 2))
            .unwrap_or_else(|e| panic!("{e}"));
        let bias = t(vec![0.5, -1.0], &[2]);
        let bias = (bias, vec![0.5, -1.0]);
        for act in [
            Act::None,
            Act::Relu,
            Act::Relu6,
            Act::Leaky(0.1),
            Act::Sigmoid,
        ] {
            for y in [&y, &y_nhwc] {
                let host_pass = host(apply_epilogue(y, Some(&bias), &act));
                let ops = y
                    .broadcast_add(&t(vec![0.5, -1.0], &[1, 2, 1, 1]))
                    .and_then(|s| match act {
                        Act::None => Ok(s),
                        Act::Relu => s.relu(),
                        Act::Relu6 => s.clamp(0f32, 6f32),
                        Act::Leaky(a) => leaky_relu(&s, a as f32),
                        _ => candle_nn::ops::sigmoid(&s),
                    });
                for (a, b) in host_pass.iter().zip(host(ops)) {
                    assert!((a - b).abs() < 1e-6, "{act:?}: {a} vs {b}");
                }
            }
        }
        // No bias and no activation: the tensor itself, untouched.
        let same = apply_epilogues(y.clone(), None, vec![Act::None]);
        assert_eq!(host(same), host(Ok(y)));
    }
}
