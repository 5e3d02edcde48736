//! The op registry: [`OPS`], one table that both lists the supported ops and implements
//! them. Each entry is an op name, the number of inputs it needs at least, and the
//! function that evaluates a node of that op ([`OpFn`]); ops that share an implementation
//! (`Conv2D` and its fused and depthwise forms, the element-wise binaries) pass it what
//! tells them apart. [`SUPPORTED_OPS`](super::SUPPORTED_OPS) is derived from the table at
//! compile time, and each node's function is looked up once, at load ([`lookup`]).
//!
//! Every op implements TF's semantics on TF's logical axes; see the module doc of
//! [`super`] for how they meet permuted views.

use super::kernels::{
    apply_epilogues, cat_in_memory_order, depthwise_conv2d, epilogue_rows, host_act,
    in_memory_order, leaky_relu, pad_const, pad_spatial_nchw, prepare_filter, resize_bilinear_nhwc,
    Act, Bias,
};
use super::node::{Batch, Node, OpId};
use super::value::{
    broadcast_shape, float, ints, msg, norm_axis, resolve_shape, scalar_f32, scalar_int, to_usize,
    OpError, OpResult, Val,
};
use super::TfjsGraph;
use candle_core::{DType, Device, Tensor};

/// Evaluates one node: its inputs' values in, its outputs' values out.
type OpFn = fn(&OpCtx<'_>, &[&Val]) -> OpResult<Vec<Val>>;

/// An entry of the op registry.
pub(super) struct OpDef {
    /// The TensorFlow op name, as in the graph's `op` fields.
    pub(super) name: &'static str,
    /// How many inputs the op reads at least (checked before `eval` is called).
    min_inputs: usize,
    eval: OpFn,
}

const fn op(name: &'static str, min_inputs: usize, eval: OpFn) -> OpDef {
    OpDef {
        name,
        min_inputs,
        eval,
    }
}

/// The op registry: every op the executor implements, with its implementation.
pub(super) const OPS: &[OpDef] = &[
    // Values the executor provides: weights (at load) and feeds (at run time).
    op("Const", 0, provided),
    op("Placeholder", 0, provided),
    op("Identity", 1, |_, ins| Ok(vec![ins[0].clone()])),
    op("NoOp", 0, |_, _| Ok(Vec::new())),
    // Convolutions (`depthwise`, `fused`: bias and activations from the node's attributes).
    op("Conv2D", 2, |c, ins| conv(c, ins, false, false)),
    op("_FusedConv2D", 2, |c, ins| conv(c, ins, false, true)),
    op("DepthwiseConv2dNative", 2, |c, ins| {
        conv(c, ins, true, false)
    }),
    op("FusedDepthwiseConv2dNative", 2, |c, ins| {
        conv(c, ins, true, true)
    }),
    // Element-wise.
    op("BiasAdd", 2, bias_add),
    op("Add", 2, add),
    op("AddV2", 2, add),
    op("Sub", 2, |c, ins| binary(c, ins, &SUB)),
    op("Mul", 2, |c, ins| binary(c, ins, &MUL)),
    op("RealDiv", 2, |c, ins| binary(c, ins, &REAL_DIV)),
    op("Maximum", 2, |c, ins| binary(c, ins, &MAXIMUM)),
    op("Minimum", 2, |c, ins| binary(c, ins, &MINIMUM)),
    op("FloorDiv", 2, |c, ins| binary(c, ins, &FLOOR_DIV)),
    op("FloorMod", 2, |c, ins| binary(c, ins, &FLOOR_MOD)),
    op("Relu", 1, |c, ins| unary(c, ins, |x| x.relu())),
    op("Relu6", 1, |c, ins| unary(c, ins, |x| x.clamp(0f32, 6f32))),
    op("LeakyRelu", 1, leaky_relu_op),
    op("Sigmoid", 1, |c, ins| {
        unary(c, ins, candle_nn::ops::sigmoid)
    }),
    // Spatial.
    op("ResizeBilinear", 2, resize_bilinear),
    op("ConcatV2", 2, concat),
    op("Pad", 2, |c, ins| pad(c, ins, false)),
    op("PadV2", 2, |c, ins| pad(c, ins, true)),
    op("MaxPool", 1, |c, ins| pool(c, ins, true)),
    op("AvgPool", 1, |c, ins| pool(c, ins, false)),
    op("Mean", 2, mean),
    // Shapes and views.
    op("Reshape", 2, reshape),
    op("Transpose", 2, transpose),
    op("Squeeze", 1, squeeze),
    op("ExpandDims", 2, expand_dims),
    op("SplitV", 3, split_v),
    op("Split", 2, split),
    op("StridedSlice", 4, strided_slice),
    op("SparseToDense", 4, sparse_to_dense),
    op("Cast", 1, cast),
];

/// The names of `OPS`, in its order (a `const fn`, so that the list is a constant).
pub(super) const fn op_names<const N: usize>(ops: &[OpDef]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut k = 0;
    while k < N {
        names[k] = ops[k].name;
        k += 1;
    }
    names
}

/// The registry's index of `op`; `None`: not supported.
pub(super) fn lookup(op: &str) -> Option<OpId> {
    OPS.iter()
        .position(|d| d.name == op)
        .and_then(|i| u16::try_from(i).ok())
        .map(OpId)
}

/// Evaluates node `i` of `graph` on its inputs `ins` with its op's entry in the registry
/// (looked up at load); [`OpError::Unsupported`] for an op the registry does not have.
pub(super) fn eval(graph: &TfjsGraph, i: usize, ins: &[&Val], batch: Batch) -> OpResult<Vec<Val>> {
    let Some(def) = graph.nodes[i]
        .op_id
        .and_then(|id| OPS.get(usize::from(id.0)))
    else {
        return Err(OpError::Unsupported);
    };
    if ins.len() < def.min_inputs {
        return msg(format!("{} inputs, expected {}", ins.len(), def.min_inputs));
    }
    let ctx = OpCtx {
        graph,
        node: i,
        batch,
    };
    (def.eval)(&ctx, ins)
}

/// What an op sees besides its inputs: the graph (attributes, device, load-time folds),
/// the node, and the run's batch sizes.
pub(super) struct OpCtx<'g> {
    graph: &'g TfjsGraph,
    node: usize,
    batch: Batch,
}

impl OpCtx<'_> {
    fn node(&self) -> &Node {
        &self.graph.nodes[self.node]
    }

    fn device(&self) -> &Device {
        &self.graph.device
    }

    fn on_cpu(&self) -> bool {
        matches!(self.device(), Device::Cpu)
    }

    /// A value as F32 on the graph's device.
    fn float(&self, v: &Val) -> OpResult<Tensor> {
        float(v, self.device())
    }
}

/// One F32 output.
fn one(t: Tensor) -> OpResult<Vec<Val>> {
    Ok(vec![Val::F(t)])
}

fn provided(_: &OpCtx<'_>, _: &[&Val]) -> OpResult<Vec<Val>> {
    msg("its value comes from the weights or the feeds, not from an evaluation")
}

// ---------------------------------------------------------------------------------------
// Element-wise

/// An element-wise binary op on both kinds of values.
struct Binary {
    /// On two integer tensors (shape arithmetic, on the CPU); `None`: not defined there.
    int: Option<fn(&Tensor, &Tensor) -> OpResult<Tensor>>,
    /// On two floats of one shape and memory order, in one pass over memory.
    same: Option<fn(f32, f32) -> f32>,
    /// On two float tensors, broadcasting.
    float: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
}

const ADD: Binary = Binary {
    int: Some(|x, y| Ok(x.broadcast_add(y)?)),
    same: Some(|p, q| p + q),
    float: |x, y| x.broadcast_add(y),
};
const SUB: Binary = Binary {
    int: Some(|x, y| Ok(x.broadcast_sub(y)?)),
    same: Some(|p, q| p - q),
    float: |x, y| x.broadcast_sub(y),
};
const MUL: Binary = Binary {
    int: Some(|x, y| Ok(x.broadcast_mul(y)?)),
    same: Some(|p, q| p * q),
    float: |x, y| x.broadcast_mul(y),
};
const REAL_DIV: Binary = Binary {
    int: None,
    same: Some(|p, q| p / q),
    float: |x, y| x.broadcast_div(y),
};
const MAXIMUM: Binary = Binary {
    int: Some(|x, y| Ok(x.broadcast_maximum(y)?)),
    same: None,
    float: |x, y| x.broadcast_maximum(y),
};
const MINIMUM: Binary = Binary {
    int: Some(|x, y| Ok(x.broadcast_minimum(y)?)),
    same: None,
    float: |x, y| x.broadcast_minimum(y),
};
const FLOOR_DIV: Binary = Binary {
    int: Some(|x, y| floor_div_mod(x, y, false)),
    same: None,
    float: |x, y| x.broadcast_div(y)?.floor(),
};
const FLOOR_MOD: Binary = Binary {
    int: Some(|x, y| floor_div_mod(x, y, true)),
    same: None,
    float: |x, y| {
        let q = x.broadcast_div(y)?.floor()?;
        x.broadcast_sub(&q.broadcast_mul(y)?)
    },
};

fn binary(c: &OpCtx<'_>, ins: &[&Val], op: &Binary) -> OpResult<Vec<Val>> {
    if let (Val::I(x), Val::I(y)) = (ins[0], ins[1]) {
        return match op.int {
            Some(f) => Ok(vec![Val::I(f(x, y)?)]),
            None => msg("not defined on integer tensors"),
        };
    }
    let (x, y) = (c.float(ins[0])?, c.float(ins[1])?);
    // Same shape, same memory order (NHWC buffers seen as NCHW): one pass over memory.
    if let Some(f) = op.same {
        if let Some(r) = crate::ops::zip_map_f32(&x, &y, f)? {
            return one(r);
        }
    }
    one((op.float)(&x, &y)?)
}

/// TF's `FloorDiv` (rounds toward −∞) or `FloorMod` (takes the divisor's sign) on small
/// integer tensors (shape arithmetic), on the host.
fn floor_div_mod(x: &Tensor, y: &Tensor, modulo: bool) -> OpResult<Tensor> {
    let shape = broadcast_shape(x.dims(), y.dims()).ok_or_else(|| {
        OpError::Msg(format!(
            "shapes {:?} and {:?} do not broadcast",
            x.dims(),
            y.dims()
        ))
    })?;
    let host = |t: &Tensor| -> OpResult<Vec<i64>> {
        Ok(t.broadcast_as(shape.clone())?
            .flatten_all()?
            .to_vec1::<i64>()?)
    };
    let (xs, ys) = (host(x)?, host(y)?);
    let mut out = Vec::with_capacity(xs.len());
    for (p, d) in xs.into_iter().zip(ys) {
        if d == 0 {
            return msg("integer division by zero");
        }
        let q = if p % d != 0 && ((p < 0) != (d < 0)) {
            p / d - 1
        } else {
            p / d
        };
        out.push(if modulo { p - q * d } else { q });
    }
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?)
}

/// `Add`/`AddV2`, with the activation after it where `fuse_add_activations` folded one in.
fn add(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let Some(act) = c.graph.folds.add_acts.get(&c.node) else {
        return binary(c, ins, &ADD);
    };
    let (a, b) = (c.float(ins[0])?, c.float(ins[1])?);
    let fused = match act {
        Act::Relu => crate::ops::zip_map_f32(&a, &b, |x, y| (x + y).max(0.0))?,
        Act::Relu6 => crate::ops::zip_map_f32(&a, &b, |x, y| (x + y).clamp(0.0, 6.0))?,
        _ => None,
    };
    if let Some(t) = fused {
        return one(t);
    }
    let s = a.broadcast_add(&b)?;
    one(match act {
        Act::Relu => s.relu()?,
        Act::Relu6 => s.clamp(0f32, 6f32)?,
        _ => s,
    })
}

fn bias_add(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = c.float(ins[0])?;
    let b = c.float(ins[1])?;
    let b = if c.node().nchw() && x.rank() >= 2 {
        let mut shape = vec![1usize; x.rank()];
        shape[1] = b.elem_count();
        b.reshape(shape)?
    } else {
        b
    };
    one(x.broadcast_add(&b)?)
}

/// An activation, in the input's memory order.
fn unary(
    c: &OpCtx<'_>,
    ins: &[&Val],
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> OpResult<Vec<Val>> {
    one(in_memory_order(&c.float(ins[0])?, f)?)
}

fn leaky_relu_op(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let alpha = c.node().attr_f("alpha").unwrap_or(0.2);
    if !c.on_cpu() {
        return one(leaky_relu(&c.float(ins[0])?, alpha as f32)?);
    }
    // TF.js: `x < 0 ? alpha · x : x`, alpha a JS double.
    unary(c, ins, |x| {
        let act = Act::Leaky(alpha);
        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
        v.iter_mut().for_each(|x| *x = host_act(&act, *x));
        Tensor::from_vec(v, x.dims(), x.device())
    })
}

fn cast(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0];
    let to = c.node().attr_type("DstT").unwrap_or("");
    match to {
        "DT_FLOAT" => one(c.float(x)?),
        "DT_INT32" | "DT_INT64" | "DT_BOOL" => {
            let t = x.tensor().to_device(&Device::Cpu)?;
            let t = match x {
                // TF truncates toward zero; candle's f32 → i64 is `as`, which does.
                Val::F(_) => t.to_dtype(DType::I64)?,
                Val::I(_) => t,
            };
            let t = if to == "DT_BOOL" {
                t.ne(0i64)?.to_dtype(DType::I64)?
            } else {
                t
            };
            Ok(vec![Val::I(t)])
        }
        other => msg(format!("cast to {other} is not supported")),
    }
}

// ---------------------------------------------------------------------------------------
// Convolutions and pools

/// A sliding window's size, stride and dilation, each (height, width).
struct Window {
    size: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
}

/// A conv/pool node's `key` attribute (strides, dilations, ksize) on the spatial axes of
/// its data format: ((h, w), nchw); (1, 1) when absent.
fn spatial_attr(node: &Node, key: &str) -> OpResult<((usize, usize), bool)> {
    let nchw = node.nchw();
    let v = node.attr_ints(key);
    if v.is_empty() {
        return Ok(((1, 1), nchw));
    }
    if v.len() != 4 {
        return msg(format!("{key} {v:?}, expected 4 values"));
    }
    let (h, w) = if nchw { (v[2], v[3]) } else { (v[1], v[2]) };
    Ok(((to_usize(h)?, to_usize(w)?), nchw))
}

/// `[top, bottom, left, right]` zero padding of a conv/pool node on an (h, w) input, from
/// its `padding` attribute (VALID, SAME or EXPLICIT).
fn padding(node: &Node, (h, w): (usize, usize), win: &Window, nchw: bool) -> OpResult<[usize; 4]> {
    let mode = node.attr_s("padding").unwrap_or_else(|| "VALID".into());
    match mode.as_str() {
        "VALID" => Ok([0; 4]),
        "SAME" => {
            let same = |n: usize, k: usize, s: usize, d: usize| {
                let out = n.div_ceil(s);
                let eff = (k - 1) * d + 1;
                let total = ((out.saturating_sub(1)) * s + eff).saturating_sub(n);
                (total / 2, total - total / 2)
            };
            let (t, b) = same(h, win.size.0, win.stride.0, win.dilation.0);
            let (l, r) = same(w, win.size.1, win.stride.1, win.dilation.1);
            Ok([t, b, l, r])
        }
        "EXPLICIT" => {
            let p = node.attr_ints("explicit_paddings");
            if p.len() != 8 {
                return msg(format!("explicit_paddings {p:?}, expected 8 values"));
            }
            let (hh, ww) = if nchw { (4, 6) } else { (2, 4) };
            Ok([
                to_usize(p[hh])?,
                to_usize(p[hh + 1])?,
                to_usize(p[ww])?,
                to_usize(p[ww + 1])?,
            ])
        }
        other => msg(format!("padding `{other}` is not supported")),
    }
}

/// A conv node's padding: its own, plus the `Pad` that `fuse_pads` folded in.
fn conv_padding(
    c: &OpCtx<'_>,
    hw: (usize, usize),
    win: &Window,
    nchw: bool,
) -> OpResult<[usize; 4]> {
    let mut pad = padding(c.node(), hw, win, nchw)?;
    if let Some(extra) = c.graph.folds.conv_pads.get(&c.node) {
        for (p, e) in pad.iter_mut().zip(extra) {
            *p += e;
        }
    }
    Ok(pad)
}

/// `Conv2D` and `DepthwiseConv2dNative`, and their `_Fused`/`Fused` forms (`fused`: bias
/// and activations from the node's `fused_ops`).
fn conv(c: &OpCtx<'_>, ins: &[&Val], depthwise: bool, fused: bool) -> OpResult<Vec<Val>> {
    let x = c.float(ins[0])?;
    let kernel = match c.graph.folds.kernels.get(&c.node) {
        Some(k) => k.clone(),
        None => prepare_filter(&c.float(ins[1])?, depthwise)?,
    };
    let ((sh, sw), nchw) = spatial_attr(c.node(), "strides")?;
    let ((dh, dw), _) = spatial_attr(c.node(), "dilations")?;
    if sh != sw || dh != dw {
        return msg(format!(
            "strides ({sh},{sw}) / dilations ({dh},{dw}) differ between height and width"
        ));
    }
    if x.rank() != 4 {
        return msg(format!(
            "input of rank {} ({:?}), expected 4",
            x.rank(),
            x.dims()
        ));
    }
    let window = |size| Window {
        size,
        stride: (sh, sw),
        dilation: (dh, dw),
    };
    // Physically NHWC input of a regular conv on the CPU: convolve in that order.
    if let Val::F(w_tf) = ins[1] {
        let fits = !depthwise
            && !nchw
            && c.on_cpu()
            && x.dtype() == DType::F32
            && w_tf.rank() == 4
            && w_tf.dims()[2] == x.dims()[3]
            && w_tf.dims()[..2] == kernel.dims()[2..];
        if fits {
            let (_, h, w, _) = x.dims4()?;
            let win = window((w_tf.dims()[0], w_tf.dims()[1]));
            let pad = conv_padding(c, (h, w), &win, nchw)?;
            return one(conv_nhwc(c, ins, fused, &x, w_tf, pad, &win)?);
        }
    }
    // candle wants NCHW: a view for NHWC input.
    let xc = if nchw { x } else { x.permute((0, 3, 1, 2))? };
    let (_, ch, h, w) = xc.dims4()?;
    let win = window((kernel.dims()[2], kernel.dims()[3]));
    if !depthwise && ch != kernel.dims()[1] {
        return msg(format!(
            "input {:?} has {ch} channels, the filter {:?} expects {}",
            xc.dims(),
            kernel.dims(),
            kernel.dims()[1]
        ));
    }
    let pad = conv_padding(c, (h, w), &win, nchw)?;
    let y = if depthwise {
        if kernel.dims()[0] % ch.max(1) != 0 || kernel.dims()[1] != 1 {
            return msg(format!(
                "input has {ch} channels, the depthwise filter {:?}",
                kernel.dims()
            ));
        }
        let tf_filter = match ins[1] {
            Val::F(t) if t.rank() == 4 => Some(t),
            _ => None,
        };
        depthwise_conv2d(&xc, &kernel, tf_filter, pad, win.stride, win.dilation)?
    } else {
        let symmetric = pad[0] == pad[1] && pad[2] == pad[3] && pad[0] == pad[2];
        let (xc, p) = if symmetric {
            (xc, pad[0])
        } else {
            (pad_spatial_nchw(&xc, pad, 0.0)?, 0)
        };
        if c.on_cpu() && xc.dtype() == DType::F32 {
            crate::ops::conv2d_cpu(&xc, &kernel, p, sh, dh)?
        } else {
            xc.contiguous()?.conv2d(&kernel, p, sh, dh, 1)?
        }
    };
    // Bias and activation, on the result (any memory order; see `apply_epilogues`).
    let (bias, acts) = conv_epilogue(c, ins, fused)?;
    let y = apply_epilogues(y, bias.as_ref(), acts)?;
    one(if nchw { y } else { y.permute((0, 2, 3, 1))? })
}

/// A conv node's bias and activations, in order: from a fused op's attributes (`fused_ops`,
/// the extra inputs after the filter), or from the nodes `fuse_conv_epilogues` folded in;
/// none otherwise.
fn conv_epilogue(c: &OpCtx<'_>, ins: &[&Val], fused: bool) -> OpResult<(Option<Bias>, Vec<Act>)> {
    if !fused {
        return Ok(match c.graph.folds.epilogues.get(&c.node) {
            Some(ep) => (ep.bias.clone(), vec![ep.act.clone()]),
            None => (None, Vec::new()),
        });
    }
    let node = c.node();
    let fused_ops: Vec<String> = node
        .attr_strs("fused_ops")
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut extra = ins.iter().skip(2);
    let mut next_input = |what: &str| {
        extra
            .next()
            .ok_or_else(|| OpError::Msg(format!("{what} without its input")))
            .and_then(|v| c.float(v))
    };
    let mut ops = fused_ops.iter().map(String::as_str).peekable();
    let mut bias = None;
    if ops.peek() == Some(&"biasadd") {
        ops.next();
        let b = next_input("BiasAdd")?;
        let host = if c.on_cpu() {
            b.flatten_all()?.to_vec1::<f32>()?
        } else {
            Vec::new()
        };
        bias = Some((b, host));
    } else if ops.peek() == Some(&"fusedbatchnorm") {
        return msg("fused batch norm is not supported");
    }
    let mut acts: Vec<Act> = Vec::new();
    for op in ops {
        acts.push(match op {
            "relu" => Act::Relu,
            "relu6" => Act::Relu6,
            "sigmoid" => Act::Sigmoid,
            "leakyrelu" => Act::Leaky(node.attr_f("leakyrelu_alpha").unwrap_or(0.2)),
            "elu" => Act::Elu,
            "prelu" => Act::Prelu(next_input("Prelu")?),
            other => return msg(format!("fused op `{other}` is not supported")),
        });
    }
    Ok((bias, acts))
}

/// A regular convolution of a physically NHWC input (contiguous in TF's order) on the
/// CPU: [`crate::ops::conv2d_nhwc_cpu`] with TF's filter as stored (or
/// [`crate::ops::conv3x3_winograd_nhwc`] where `prepare_filters` made a Winograd filter), and the
/// bias and a host activation applied to each block of output rows while it is in
/// cache. The result is contiguous NHWC, so the element-wise ops, depthwise convs and
/// pools after it read plain contiguous data.
fn conv_nhwc(
    c: &OpCtx<'_>,
    ins: &[&Val],
    fused: bool,
    x: &Tensor,
    w_tf: &Tensor,
    pad: [usize; 4],
    win: &Window,
) -> OpResult<Tensor> {
    use crate::ops::{conv2d_nhwc_cpu, conv3x3_winograd_nhwc};
    let co = w_tf.dims().get(3).copied().unwrap_or(0);
    let (bias, acts) = conv_epilogue(c, ins, fused)?;
    let bias_host = match &bias {
        Some((_, h)) if h.len() == co => Some(h.as_slice()),
        Some(_) => None,
        None => Some(&[][..]),
    };
    let one_host_act = match acts.as_slice() {
        [] => Some(&Act::None),
        [a] if !matches!(a, Act::Prelu(_) | Act::Elu) => Some(a),
        _ => None,
    };
    let winograd = c
        .graph
        .folds
        .winograd
        .get(&c.node)
        .filter(|_| win.stride == (1, 1) && win.dilation == (1, 1));
    if let (Some(b), Some(act)) = (bias_host, one_host_act) {
        let ep = |rows: &mut [f32]| epilogue_rows(rows, b, act);
        if let Some(f) = winograd {
            return Ok(conv3x3_winograd_nhwc(x, f, pad, &ep)?);
        }
        return Ok(conv2d_nhwc_cpu(
            x,
            w_tf,
            pad,
            win.stride,
            win.dilation,
            &ep,
        )?);
    }
    // Device-side activations (or a bias of an odd size): the generic epilogue on the
    // NCHW view of the NHWC result.
    let y =
        conv2d_nhwc_cpu(x, w_tf, pad, win.stride, win.dilation, &|_| {})?.permute((0, 3, 1, 2))?;
    Ok(apply_epilogues(y, bias.as_ref(), acts)?.permute((0, 2, 3, 1))?)
}

/// `MaxPool` (`max`) or `AvgPool`.
fn pool(c: &OpCtx<'_>, ins: &[&Val], max: bool) -> OpResult<Vec<Val>> {
    let x = c.float(ins[0])?;
    let ((kh, kw), nchw) = spatial_attr(c.node(), "ksize")?;
    let ((sh, sw), _) = spatial_attr(c.node(), "strides")?;
    if x.rank() != 4 {
        return msg(format!("input of rank {}, expected 4", x.rank()));
    }
    let xc = if nchw {
        x.clone()
    } else {
        x.permute((0, 3, 1, 2))?
    };
    let (_, _, h, w) = xc.dims4()?;
    let win = Window {
        size: (kh, kw),
        stride: (sh, sw),
        dilation: (1, 1),
    };
    // Own padding (SAME: takes no part, −∞), or the `Pad` folded in with its constant.
    let (pad, value) = match c.graph.folds.pool_pads.get(&c.node) {
        Some(&(p, v)) if max => (p, v),
        _ => (padding(c.node(), (h, w), &win, nchw)?, f32::NEG_INFINITY),
    };
    if max && !nchw && c.on_cpu() && x.dtype() == DType::F32 {
        // NHWC, or an NHWC view of NCHW data: pooled in its memory order, padding
        // included, with no padded copy.
        return one(crate::ops::max_pool2d_nhwc_cpu(
            &x,
            (kh, kw),
            (sh, sw),
            pad,
            value,
        )?);
    }
    let padded = pad.iter().any(|&p| p > 0);
    let y = if max {
        let xc = if padded {
            pad_spatial_nchw(&xc, pad, value)?
        } else {
            xc
        };
        xc.max_pool2d_with_stride((kh, kw), (sh, sw))?
    } else {
        if padded {
            // TF's SAME average excludes the padding from the count; candle's does not.
            return msg("AvgPool with SAME padding is not supported");
        }
        xc.avg_pool2d_with_stride((kh, kw), (sh, sw))?
    };
    one(if nchw { y } else { y.permute((0, 2, 3, 1))? })
}

// ---------------------------------------------------------------------------------------
// Spatial and reductions

fn resize_bilinear(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = c.float(ins[0])?;
    let size = ints(ins[1])?;
    let [oh, ow] = size[..] else {
        return msg(format!("size {size:?}, expected [height, width]"));
    };
    let node = c.node();
    let align = node.attr_b("align_corners").unwrap_or(false);
    let half = node.attr_b("half_pixel_centers").unwrap_or(false);
    let (oh, ow) = (to_usize(oh)?, to_usize(ow)?);
    let Some((oh, ow)) = c.batch.resize_size(oh, ow) else {
        return msg(format!(
            "size [{oh}, {ow}] does not scale to whole numbers for the fed input size"
        ));
    };
    one(resize_bilinear_nhwc(&x, oh, ow, align, half)?)
}

fn concat(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let (axis_v, parts) = ins
        .split_last()
        .ok_or_else(|| OpError::Msg("no inputs".into()))?;
    let axis = scalar_int(axis_v)?;
    if parts.iter().all(|p| matches!(p, Val::I(_))) {
        let ts: Vec<&Tensor> = parts.iter().map(|p| p.tensor()).collect();
        let axis = norm_axis(axis, ts[0].rank())?;
        return Ok(vec![Val::I(Tensor::cat(&ts, axis)?)]);
    }
    let ts: Vec<Tensor> = parts.iter().map(|p| c.float(p)).collect::<OpResult<_>>()?;
    let axis = norm_axis(axis, ts[0].rank())?;
    one(cat_in_memory_order(&ts, axis)?)
}

/// `Pad`, or `PadV2` (`v2`: its third input is the constant).
fn pad(c: &OpCtx<'_>, ins: &[&Val], v2: bool) -> OpResult<Vec<Val>> {
    let x = c.float(ins[0])?;
    let pads = ints(ins[1])?;
    let value = match ins.get(2) {
        Some(v) if v2 => scalar_f32(v)?,
        _ => 0.0,
    };
    if pads.len() != 2 * x.rank() {
        return msg(format!("paddings {pads:?} for a rank-{} input", x.rank()));
    }
    let pads: Vec<(usize, usize)> = pads
        .chunks(2)
        .map(|p| Ok((to_usize(p[0])?, to_usize(p[1])?)))
        .collect::<OpResult<_>>()?;
    one(pad_const(&x, &pads, value)?)
}

fn mean(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = c.float(ins[0])?;
    let mut axes = axes(ins[1], x.rank())?;
    axes.sort_unstable();
    axes.dedup();
    let keep = c.node().attr_b("keep_dims").unwrap_or(false);
    let y = x.mean_keepdim(axes.clone())?;
    one(if keep { y } else { squeeze_axes(y, &axes)? })
}

// ---------------------------------------------------------------------------------------
// Shapes and views (on both kinds of values)

/// An integer value's elements as axes of a rank-`rank` tensor.
fn axes(v: &Val, rank: usize) -> OpResult<Vec<usize>> {
    ints(v)?.into_iter().map(|a| norm_axis(a, rank)).collect()
}

/// `t` without the size-1 axes `axes` (sorted ascending).
fn squeeze_axes(mut t: Tensor, axes: &[usize]) -> candle_core::Result<Tensor> {
    for &a in axes.iter().rev() {
        t = t.squeeze(a)?;
    }
    Ok(t)
}

fn reshape(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0].tensor();
    let mut target = ints(ins[1])?;
    let b = c.batch;
    if b.fed != b.declared
        && target.first() == Some(&(b.declared as i64))
        && x.dims().first() == Some(&b.fed)
    {
        target[0] = b.fed as i64;
    }
    let shape = resolve_shape(&target, x.elem_count())
        .ok_or_else(|| OpError::Msg(format!("cannot reshape {:?} to {target:?}", x.dims())))?;
    Ok(vec![ins[0].rewrap(x.reshape(shape)?)])
}

fn transpose(_: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0].tensor();
    let perm = axes(ins[1], x.rank())?;
    Ok(vec![ins[0].rewrap(x.permute(perm)?)])
}

fn squeeze(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0].tensor();
    let dims = c.node().attr_ints("squeeze_dims");
    let mut axes: Vec<usize> = if dims.is_empty() {
        (0..x.rank()).filter(|&d| x.dims()[d] == 1).collect()
    } else {
        dims.into_iter()
            .map(|a| norm_axis(a, x.rank()))
            .collect::<OpResult<_>>()?
    };
    axes.sort_unstable();
    Ok(vec![ins[0].rewrap(squeeze_axes(x.clone(), &axes)?)])
}

fn expand_dims(_: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0].tensor();
    let a = norm_axis(scalar_int(ins[1])?, x.rank() + 1)?;
    Ok(vec![ins[0].rewrap(x.unsqueeze(a)?)])
}

/// `x` cut along `axis` into consecutive parts of `sizes`.
fn split_sizes(x: &Val, axis: usize, sizes: &[usize]) -> OpResult<Vec<Val>> {
    let mut start = 0usize;
    let mut out = Vec::with_capacity(sizes.len());
    for &s in sizes {
        out.push(x.rewrap(x.tensor().narrow(axis, start, s)?));
        start += s;
    }
    Ok(out)
}

fn split_v(_: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0].tensor();
    let axis = norm_axis(scalar_int(ins[2])?, x.rank())?;
    let mut sizes = ints(ins[1])?;
    let dim = x.dims()[axis] as i64;
    if let Some(p) = sizes.iter().position(|&s| s < 0) {
        let rest: i64 = sizes.iter().filter(|&&s| s >= 0).sum();
        sizes[p] = dim - rest;
    }
    if sizes.iter().sum::<i64>() != dim || sizes.iter().any(|&s| s < 0) {
        return msg(format!(
            "size_splits {sizes:?} do not add up to {dim} on axis {axis}"
        ));
    }
    let sizes: Vec<usize> = sizes.into_iter().map(to_usize).collect::<OpResult<_>>()?;
    split_sizes(ins[0], axis, &sizes)
}

fn split(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[1].tensor();
    let axis = norm_axis(scalar_int(ins[0])?, x.rank())?;
    let n = c.node().attr_i("num_split").unwrap_or(1).max(1) as usize;
    let dim = x.dims()[axis];
    if !dim.is_multiple_of(n) {
        return msg(format!("axis {axis} of size {dim} does not split into {n}"));
    }
    split_sizes(ins[1], axis, &vec![dim / n; n])
}

fn strided_slice(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let x = ins[0].tensor();
    let (begin, end, strides) = (ints(ins[1])?, ints(ins[2])?, ints(ins[3])?);
    let mask = |k: &str| c.node().attr_i(k).unwrap_or(0);
    if mask("ellipsis_mask") != 0 || mask("new_axis_mask") != 0 {
        return msg("ellipsis_mask / new_axis_mask are not supported");
    }
    let (bm, em, sm) = (
        mask("begin_mask"),
        mask("end_mask"),
        mask("shrink_axis_mask"),
    );
    let mut y = x.clone();
    let mut shrink = Vec::new();
    for (d, &begin_d) in begin.iter().enumerate().take(x.rank()) {
        let n = x.dims()[d] as i64;
        let s = strides.get(d).copied().unwrap_or(1);
        if s <= 0 {
            return msg(format!("stride {s} on axis {d} is not supported"));
        }
        let fix = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
        let b = if bm >> d & 1 == 1 { 0 } else { fix(begin_d) };
        let e = if sm >> d & 1 == 1 {
            b + 1
        } else if em >> d & 1 == 1 {
            n
        } else {
            fix(end.get(d).copied().unwrap_or(n))
        };
        if sm >> d & 1 == 1 {
            shrink.push(d);
        }
        let len = (e - b).max(0);
        if s == 1 {
            y = y.narrow(d, b as usize, len as usize)?;
        } else {
            let idx: Vec<u32> = (0..len)
                .step_by(s as usize)
                .map(|k| (b + k) as u32)
                .collect();
            let idx = Tensor::from_vec(idx.clone(), idx.len(), y.device())?;
            y = y.contiguous()?.index_select(&idx, d)?;
        }
    }
    Ok(vec![ins[0].rewrap(squeeze_axes(y, &shrink)?)])
}

fn sparse_to_dense(c: &OpCtx<'_>, ins: &[&Val]) -> OpResult<Vec<Val>> {
    let indices = ins[0].tensor();
    let shape: Vec<usize> = ints(ins[1])?
        .into_iter()
        .map(to_usize)
        .collect::<OpResult<_>>()?;
    let n: usize = shape.iter().product();
    let rank = shape.len();
    let idx = ints(ins[0])?;
    let rows = if indices.rank() == 0 {
        1
    } else {
        indices.dims()[0]
    };
    let width = if indices.rank() <= 1 {
        1
    } else {
        indices.dims()[1]
    };
    if width != rank.max(1) && rows != 0 {
        return msg(format!(
            "indices {:?} for an output of rank {rank}",
            indices.dims()
        ));
    }
    let values = ins[2].tensor().elem_count();
    if values != 1 && values != rows {
        return msg(format!("{values} values for {rows} indices"));
    }
    let flat = |r: usize| -> OpResult<usize> {
        let mut off = 0usize;
        for d in 0..rank.max(1) {
            let v = to_usize(idx[r * width + d])?;
            let dim = shape.get(d).copied().unwrap_or(1);
            if v >= dim {
                return msg(format!("index {v} out of range {dim}"));
            }
            off = off * dim + v;
        }
        Ok(off)
    };
    /// `default` everywhere, `vals` (one, or one per row) at the indices.
    fn scatter<T: Copy>(
        n: usize,
        rows: usize,
        default: T,
        vals: &[T],
        flat: impl Fn(usize) -> OpResult<usize>,
    ) -> OpResult<Vec<T>> {
        let mut out = vec![default; n];
        for r in 0..rows {
            out[flat(r)?] = if vals.len() == 1 { vals[0] } else { vals[r] };
        }
        Ok(out)
    }
    let out = match (ins[2], ins[3]) {
        (Val::I(vals), Val::I(_)) => {
            let default = scalar_int(ins[3])?;
            let vals = vals.flatten_all()?.to_vec1::<i64>()?;
            let out = scatter(n, rows, default, &vals, flat)?;
            Val::I(Tensor::from_vec(out, shape, &Device::Cpu)?)
        }
        _ => {
            let default = scalar_f32(ins[3])?;
            let vals = c.float(ins[2])?.flatten_all()?.to_vec1::<f32>()?;
            let out = scatter(n, rows, default, &vals, flat)?;
            Val::F(Tensor::from_vec(out, shape, c.device())?)
        }
    };
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tfjs::SUPPORTED_OPS;
    use std::collections::HashSet;

    #[test]
    fn the_supported_list_is_the_registry() {
        let names: Vec<&str> = OPS.iter().map(|d| d.name).collect();
        assert_eq!(SUPPORTED_OPS, names.as_slice());
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "an op is registered twice");
        for name in SUPPORTED_OPS {
            assert!(lookup(name).is_some(), "{name}");
        }
        assert!(lookup("FancyOp").is_none());
        assert!(lookup("conv2d").is_none());
    }

    fn i(v: Vec<i64>) -> Tensor {
        let n = v.len();
        Tensor::from_vec(v, n, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn integer_floor_division_rounds_toward_minus_infinity() {
        let (p, d) = (i(vec![7, -7, 7, -7, 6]), i(vec![2, 2, -2, -2, 3]));
        let host = |t: OpResult<Tensor>| {
            t.and_then(|t| Ok(t.to_vec1::<i64>()?))
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        assert_eq!(host(floor_div_mod(&p, &d, false)), [3, -4, -4, 3, 2]);
        assert_eq!(host(floor_div_mod(&p, &d, true)), [1, 1, -1, -1, 0]);
        assert!(floor_div_mod(&p, &i(vec![0]), false).is_err());
        assert!(floor_div_mod(&p, &i(vec![1, 2]), false).is_err());
    }
}
