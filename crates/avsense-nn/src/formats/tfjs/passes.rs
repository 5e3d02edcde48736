//! The load-time passes, run once in [`TfjsGraph::load`] after the graph is parsed and
//! ordered: they compute what does not depend on the fed inputs, and rewrite chains of
//! nodes into one pass over memory. Each pass records its decisions in [`Folds`]; the
//! nodes stay in the graph, and the executor and ops consult `Folds`:
//!
//! 1. [`fold_constants`](TfjsGraph::fold_constants): every node whose inputs are all
//!    constant is evaluated once (the ONNX→TF converter leaves shape arithmetic such as
//!    `SparseToDense` + `AddV2` in the graph).
//! 2. [`prepare_filters`](TfjsGraph::prepare_filters): convolution filters in candle's layout
//!    (and, for 3×3 stride-1 NHWC convolutions on the CPU, in Winograd's domain).
//! 3. [`fuse_conv_epilogues`](TfjsGraph::fuse_conv_epilogues): `Conv2D → Add(bias)
//!    [→ Transpose] → activation` into the conv's epilogue.
//! 4. [`fuse_add_activations`](TfjsGraph::fuse_add_activations): `Add → Relu|Relu6` into the add.
//! 5. [`fuse_pads`](TfjsGraph::fuse_pads): a spatial `Pad` [→ `Transpose`] into the VALID
//!    conv or max pool it feeds.

use super::kernels::{prepare_filter, Act, Epilogue};
use super::node::{Batch, Node};
use super::ops;
use super::value::{ints, scalar_f32, Val};
use super::{Result, TfjsError, TfjsGraph};
use crate::ops::{winograd_pays, WinogradFilter};
use candle_core::Tensor;
use std::collections::{HashMap, HashSet};

/// What the load-time passes decided, per node index.
#[derive(Default)]
pub(super) struct Folds {
    /// Convolution filters in candle's layout, per conv node.
    pub(super) kernels: HashMap<usize, Tensor>,
    /// Bias + activation folded into a plain conv from the nodes after it.
    pub(super) epilogues: HashMap<usize, Epilogue>,
    /// Nodes whose work a fold already did: they pass input 0 through.
    pub(super) passthrough: HashSet<usize>,
    /// Nodes inside a fused chain, whose own values no longer exist (cannot be fetched).
    pub(super) fused_inner: HashSet<usize>,
    /// `Add`s that also apply the activation after them.
    pub(super) add_acts: HashMap<usize, Act>,
    /// Zero padding `[top, bottom, left, right]` a conv applies itself, taken over from
    /// the `Pad` before it.
    pub(super) conv_pads: HashMap<usize, [usize; 4]>,
    /// The same for a `MaxPool`, with the `Pad`'s constant.
    pub(super) pool_pads: HashMap<usize, ([usize; 4], f32)>,
    /// 3×3 stride-1 NHWC convolutions on the CPU wide enough for Winograd
    /// ([`winograd_pays`]): their filters in Winograd's domain.
    pub(super) winograd: HashMap<usize, WinogradFilter>,
}

impl Folds {
    /// Records a fold: the nodes of `pass` now pass their input 0 through (their work is
    /// done by the node the chain was folded into), and the values of the nodes of `inner`
    /// no longer exist.
    fn record(
        &mut self,
        pass: impl IntoIterator<Item = usize>,
        inner: impl IntoIterator<Item = usize>,
    ) {
        self.passthrough.extend(pass);
        self.fused_inner.extend(inner);
    }
}

/// The ops of a regular convolution, a depthwise one, and their fused forms.
const CONV_OPS: [&str; 4] = [
    "Conv2D",
    "_FusedConv2D",
    "DepthwiseConv2dNative",
    "FusedDepthwiseConv2dNative",
];

/// The only user of node `i`'s outputs, if it has exactly one.
fn only_user(users: &[Vec<usize>], i: usize) -> Option<usize> {
    match users[i][..] {
        [u] => Some(u),
        _ => None,
    }
}

/// The activation a node computes, for the ops a fold can take over.
fn activation(node: &Node) -> Option<Act> {
    match node.op.as_str() {
        "Relu" => Some(Act::Relu),
        "Relu6" => Some(Act::Relu6),
        "Sigmoid" => Some(Act::Sigmoid),
        "LeakyRelu" => Some(Act::Leaky(node.attr_f("alpha").unwrap_or(0.2))),
        _ => None,
    }
}

impl TfjsGraph {
    /// Runs the passes in order (see the module doc); `users[i]`: the nodes reading node
    /// `i`'s outputs.
    pub(super) fn run_passes(&mut self, users: &[Vec<usize>]) -> Result<()> {
        self.fold_constants();
        self.prepare_filters()?;
        self.fuse_conv_epilogues(users);
        self.fuse_add_activations(users);
        self.fuse_pads(users);
        Ok(())
    }

    /// Evaluates, in topological order, every node whose inputs are all constant, at the
    /// declared batch. An op that cannot be folded is left for run time, where its error
    /// (if the requested outputs need it) names the node.
    fn fold_constants(&mut self) {
        let declared = self.declared_batch();
        let batch = Batch {
            fed: declared,
            declared,
            spatial: None,
        };
        for k in 0..self.order.len() {
            let i = self.order[k];
            let node = &self.nodes[i];
            if self.consts[i].is_some() || node.op == "Placeholder" || node.inputs.is_empty() {
                continue;
            }
            let ins: Option<Vec<&Val>> = node.inputs.iter().map(|&s| self.const_of(s)).collect();
            let folded = ins.and_then(|ins| ops::eval(self, i, &ins, batch).ok());
            self.consts[i] = folded;
        }
    }

    /// Converts each convolution's constant filter to candle's layout, once, and a 3×3
    /// stride-1 NHWC one on the CPU also to Winograd's domain when that pays
    /// ([`winograd_pays`]).
    fn prepare_filters(&mut self) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            let depthwise = match node.op.as_str() {
                "Conv2D" | "_FusedConv2D" => false,
                "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative" => true,
                _ => continue,
            };
            let filter = match node.inputs.get(1).and_then(|&s| self.const_of(s)) {
                Some(Val::F(filter)) => filter,
                _ => continue,
            };
            let err = |e: candle_core::Error| TfjsError::Node {
                path: self.path.clone(),
                node: node.name.clone(),
                op: node.op.clone(),
                reason: format!("filter: {e}"),
            };
            let prepared = prepare_filter(filter, depthwise).map_err(err)?;
            let unit = |key| node.attr_ints(key).iter().all(|&v| v == 1);
            let dims = filter.dims();
            let winograd = !depthwise
                && !node.nchw()
                && filter.device().is_cpu()
                && dims.len() == 4
                && dims[..2] == [3, 3]
                && winograd_pays(dims[2], dims[3])
                && unit("strides")
                && unit("dilations");
            let winograd = if winograd {
                Some(WinogradFilter::new(filter).map_err(err)?)
            } else {
                None
            };
            self.folds.kernels.insert(i, prepared);
            if let Some(f) = winograd {
                self.folds.winograd.insert(i, f);
            }
        }
        Ok(())
    }

    /// Folds `Conv2D → Add(const bias[C]) [→ Transpose] → Relu|Relu6|LeakyRelu|Sigmoid`
    /// chains (each link the only user of the previous) into the conv's epilogue, which
    /// runs in one pass over the result (over each block of output rows, on the CPU's NHWC
    /// path). The ONNX→TF converter emits exactly this for every conv layer; unfused, the
    /// bias add and the activation each run on a strided NHWC view, which costs as much as
    /// a third of the convolutions. The activation commutes with the transpose, so the
    /// chain's output is unchanged.
    fn fuse_conv_epilogues(&mut self, users: &[Vec<usize>]) {
        for conv in 0..self.nodes.len() {
            let node = &self.nodes[conv];
            if !matches!(node.op.as_str(), "Conv2D" | "DepthwiseConv2dNative") || node.nchw() {
                continue;
            }
            let Some(kernel) = self.folds.kernels.get(&conv) else {
                continue;
            };
            let c_out = kernel.dims()[0];
            let Some(add) = only_user(users, conv) else {
                continue;
            };
            let add_node = &self.nodes[add];
            if !matches!(add_node.op.as_str(), "Add" | "AddV2" | "BiasAdd")
                || add_node.inputs.len() != 2
            {
                continue;
            }
            let other = match (add_node.inputs[0], add_node.inputs[1]) {
                ((a, 0), b) if a == conv => b,
                (b, (a, 0)) if a == conv && add_node.op != "BiasAdd" => b,
                _ => continue,
            };
            let bias = match self.const_of(other) {
                Some(Val::F(t)) if t.dims() == [c_out] => t.clone(),
                _ => continue,
            };
            let Ok(bias_host) = bias.to_vec1::<f32>() else {
                continue;
            };
            let mut ep = Epilogue {
                bias: Some((bias, bias_host)),
                act: Act::None,
            };
            let mut inner = vec![conv];
            let mut pass = vec![add];
            // An activation right after, or after one Transpose.
            let mut chain = vec![add];
            if let Some(u) = only_user(users, add) {
                if self.nodes[u].op == "Transpose" && self.consts[u].is_none() {
                    if let Some(v) = only_user(users, u) {
                        chain.push(u);
                        chain.push(v);
                    }
                } else {
                    chain.push(u);
                }
            }
            if let Some(&act_node) = chain.last().filter(|&&a| a != add) {
                if let Some(act) = activation(&self.nodes[act_node]) {
                    ep.act = act;
                    inner.extend(&chain[..chain.len() - 1]);
                    pass.push(act_node);
                }
            }
            self.folds.epilogues.insert(conv, ep);
            self.folds.record(pass, inner);
        }
    }

    /// Folds `Add|AddV2 → Relu|Relu6` (the activation the add's only user) into the add,
    /// when neither operand is a constant: BlazeFace's residual blocks end this way 31
    /// times. The add then computes `act(a + b)` in the same pass (on the CPU, for two
    /// contiguous operands of one shape, one read of each and one write), instead of
    /// writing the sum and reading it back for the activation.
    fn fuse_add_activations(&mut self, users: &[Vec<usize>]) {
        for add in 0..self.nodes.len() {
            let node = &self.nodes[add];
            if !matches!(node.op.as_str(), "Add" | "AddV2")
                || node.inputs.len() != 2
                || self.consts[add].is_some()
                || self.folds.passthrough.contains(&add)
                || self.folds.fused_inner.contains(&add)
                || node.inputs.iter().any(|&(s, _)| self.consts[s].is_some())
            {
                continue;
            }
            let Some(act_node) = only_user(users, add) else {
                continue;
            };
            let act = match activation(&self.nodes[act_node]) {
                Some(act @ (Act::Relu | Act::Relu6)) => act,
                _ => continue,
            };
            if self.nodes[act_node].inputs[..] != [(add, 0)] {
                continue;
            }
            self.folds.add_acts.insert(add, act);
            self.folds.record([act_node], [add]);
        }
    }

    /// Folds a spatial `Pad` (constant paddings) into the VALID convolution (zero pad) or
    /// max pool (any constant) it feeds, directly on NHWC or through a `Transpose` NCHW →
    /// NHWC, each link the only user of the previous. NanoDet's ONNX→TF graph pads every
    /// 3×3 conv's input this way (28 times) and its max pool's with a `PadV2`; the padded
    /// copies (in NCHW, before the transpose) cost ≈ 10 % of the run, while the convs and
    /// the pool pad for free while gathering their input.
    fn fuse_pads(&mut self, users: &[Vec<usize>]) {
        for conv in 0..self.nodes.len() {
            let node = &self.nodes[conv];
            let pool = node.op == "MaxPool";
            if !(pool || CONV_OPS.contains(&node.op.as_str()))
                || node.nchw()
                || node.attr_s("padding").as_deref() != Some("VALID")
                || self.consts[conv].is_some()
            {
                continue;
            }
            let Some(&(src, 0)) = node.inputs.first() else {
                continue;
            };
            let feeds_only = |i: usize, u: usize| users[i][..] == [u];
            // Optional Transpose with permutation [0, 2, 3, 1]; then the spatial axes of
            // the padding are 2 and 3, else 1 and 2.
            let (pad_node, transpose, axes) = if self.nodes[src].op == "Transpose" {
                let perm = self.nodes[src]
                    .inputs
                    .get(1)
                    .and_then(|&s| self.const_of(s))
                    .and_then(|v| ints(v).ok());
                match (perm.as_deref(), self.nodes[src].inputs.first()) {
                    (Some([0, 2, 3, 1]), Some(&(p, 0))) if feeds_only(src, conv) => {
                        (p, Some(src), (2, 3))
                    }
                    _ => continue,
                }
            } else {
                (src, None, (1, 2))
            };
            let pnode = &self.nodes[pad_node];
            if !matches!(pnode.op.as_str(), "Pad" | "PadV2")
                || self.consts[pad_node].is_some()
                || !feeds_only(pad_node, transpose.unwrap_or(conv))
            {
                continue;
            }
            let konst = |k: usize| pnode.inputs.get(k).and_then(|&s| self.const_of(s));
            let value = if pnode.op == "PadV2" {
                match konst(2).map(scalar_f32) {
                    Some(Ok(v)) if pool || v == 0.0 => v,
                    _ => continue,
                }
            } else {
                0.0
            };
            let Some(Ok(p)) = konst(1).map(ints) else {
                continue;
            };
            if p.len() != 8 || p.iter().any(|&v| v < 0) {
                continue;
            }
            let mut other = (0..4).filter(|&d| d != axes.0 && d != axes.1);
            if other.any(|d| p[2 * d] != 0 || p[2 * d + 1] != 0) {
                continue;
            }
            let (a, b) = (2 * axes.0, 2 * axes.1);
            let pads = [p[a], p[a + 1], p[b], p[b + 1]].map(|v| v as usize);
            if pool {
                self.folds.pool_pads.insert(conv, (pads, value));
            } else {
                self.folds.conv_pads.insert(conv, pads);
            }
            self.folds
                .record([pad_node], std::iter::once(pad_node).chain(transpose));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::tfjs::fixtures::{
        assert_fails, fold_graph, host, load_tiny, naive_conv, t, vals,
    };
    use crate::formats::tfjs::TfjsGraph;
    use candle_core::Device;

    #[test]
    fn conv_add_activation_chains_fold_into_the_epilogue() {
        let g = load_tiny();
        let dconv = g.index["dconv"];
        let ep = g.folds.epilogues.get(&dconv);
        assert!(
            ep.is_some_and(
                |ep| ep.bias.is_some() && matches!(ep.act, super::Act::Leaky(a) if a == 0.1)
            ),
            "dconv's epilogue"
        );
        assert!(g.folds.passthrough.contains(&g.index["dadd"]));
        assert!(g.folds.passthrough.contains(&g.index["lrelu"]));
        assert!(g.folds.fused_inner.contains(&g.index["dadd"]));
        // The fused conv carries its own epilogue: nothing folded into it.
        assert!(!g.folds.epilogues.contains_key(&g.index["conv"]));
        assert!(g.folds.kernels.contains_key(&g.index["conv"]));
        assert!(g.folds.kernels.contains_key(&dconv));
    }

    /// NHWC input [1,5,6,2]: `Pad` (NHWC) → VALID conv, and `Transpose` to NCHW → `Pad`
    /// (NCHW) → `Transpose` back → VALID conv (the pads folded into the convs); the first
    /// conv's output added to itself → `Relu` (folded into the add); a `PadV2` (−1) →
    /// VALID 3×3/2 `MaxPool` (folded into the pool).
    #[test]
    fn folded_pads_and_add_activations_give_the_unfolded_values() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g =
            TfjsGraph::load(fold_graph(dir.path()), &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
        for (node, pads) in [("c1", [1, 1, 1, 1]), ("c2", [1, 1, 1, 1])] {
            assert_eq!(g.folds.conv_pads.get(&g.index[node]), Some(&pads), "{node}");
        }
        assert_eq!(
            g.folds.pool_pads.get(&g.index["pool"]),
            Some(&([1, 1, 0, 1], -1.0))
        );
        assert!(g.folds.add_acts.contains_key(&g.index["twice"]));

        let (h, w, c) = (5, 6, 2);
        let xs: Vec<f32> = (0..h * w * c).map(|i| ((i as f32) * 0.61).cos()).collect();
        let x = t(xs.clone(), &[1, h, w, c]);
        let out = g
            .run(&[("x", &x)], &["c1", "c2", "relu", "pool"])
            .unwrap_or_else(|e| panic!("{e}"));
        // Stride 1, 3×3, SAME = one pixel of zeros on every side.
        let (want, _, _) = naive_conv(&xs, (1, h, w, c), &vals(54, 0.1), 3, 1, false);
        for (k, name) in [(0, "c1"), (1, "c2")] {
            assert_eq!(out[k].dims(), [1, h, w, 3], "{name}");
            for (got, want) in host(&out[k]).iter().zip(&want) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5,
                    "{name}: {got} vs {want}"
                );
            }
        }
        for (got, c1) in host(&out[2]).iter().zip(host(&out[0])) {
            assert_eq!(*got, (c1 + c1).max(0.0));
        }
        // The pool over the −1-padded input: rows −1..5 (one row each side), columns
        // 0..6 (one column on the right), windows 3×3 at stride 2.
        assert_eq!(out[3].dims(), [1, 3, 3, 2]);
        let at = |y: i64, xx: i64, ch: usize| {
            if y < 0 || y >= h as i64 || xx >= w as i64 {
                -1.0
            } else {
                xs[((y as usize) * w + xx as usize) * c + ch]
            }
        };
        let pooled = host(&out[3]);
        for oy in 0..3 {
            for ox in 0..3 {
                for ch in 0..c {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            m = m.max(at((oy * 2 + ky) as i64 - 1, (ox * 2 + kx) as i64, ch));
                        }
                    }
                    assert_eq!(pooled[(oy * 3 + ox) * c + ch], m, "pool ({oy}, {ox}, {ch})");
                }
            }
        }
        // The folded pads' and the add's own values no longer exist.
        for name in ["p1", "p2", "t2", "twice"] {
            assert_fails(g.run(&[("x", &x)], &[name]), &[name, "fused"]);
        }
    }
}
