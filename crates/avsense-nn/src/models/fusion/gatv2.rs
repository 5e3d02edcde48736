//! Graph attention on candle: a GATv2 layer with edge features, written with
//! `index_select` (gather node rows onto edges) and a scatter-add (sum edge messages into
//! their destination nodes, [`scatter_sum`]) — no dense N×N adjacency, so the cost is O(E).
//!
//! For an edge j → i with features e_ij, per head h:
//!
//! ```text
//! z_ij   = W_l x_j + W_r x_i + W_e e_ij            (C channels per head)
//! s_ij   = a_h · LeakyReLU(z_ij, slope)
//! α_ij   = exp(s_ij) / Σ_{k → i} exp(s_ik)          (softmax over i's incoming edges)
//! out_i  = Σ_{j → i} α_ij W_l x_j   (+ bias; heads concatenated or averaged)
//! ```
//!
//! The softmax subtracts each destination's maximum score first. That maximum is computed
//! on the host and enters as a constant: a per-segment shift cancels in the softmax, so the
//! gradient is exact. Nodes without incoming edges get the bias only — graphs built for
//! fusion give every node a self-loop.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// The edges of a graph (or of a batch of graphs: offset the node ids of each).
#[derive(Debug, Clone)]
pub struct EdgeIndex {
    /// Source node of each edge, `u32 [E]`.
    pub src: Tensor,
    /// Destination node of each edge, `u32 [E]`.
    pub dst: Tensor,
    dst_host: Vec<u32>,
    nodes: usize,
}

impl EdgeIndex {
    /// Edges `(src, dst)` among `nodes` nodes; every id must be `< nodes`.
    pub fn new(edges: &[(u32, u32)], nodes: usize, device: &Device) -> Result<Self> {
        if let Some((s, d)) = edges
            .iter()
            .find(|(s, d)| *s as usize >= nodes || *d as usize >= nodes)
        {
            candle_core::bail!("edge ({s}, {d}) names a node outside 0..{nodes}");
        }
        let src: Vec<u32> = edges.iter().map(|e| e.0).collect();
        let dst: Vec<u32> = edges.iter().map(|e| e.1).collect();
        Ok(Self {
            src: Tensor::from_vec(src, edges.len(), device)?,
            dst: Tensor::from_vec(dst.clone(), edges.len(), device)?,
            dst_host: dst,
            nodes,
        })
    }

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.dst_host.len()
    }

    /// Whether there are no edges.
    pub fn is_empty(&self) -> bool {
        self.dst_host.is_empty()
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }
}

/// Settings of one GATv2 layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatV2Config {
    /// Node feature size in.
    pub in_dim: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// Attention heads.
    pub heads: usize,
    /// Edge feature size (0: no edge features).
    pub edge_dim: usize,
    /// Concatenate the heads (`heads × head_dim` out) or average them (`head_dim` out).
    pub concat: bool,
    /// Negative slope of the LeakyReLU inside the attention.
    pub negative_slope: f64,
}

impl Default for GatV2Config {
    fn default() -> Self {
        Self {
            in_dim: 16,
            head_dim: 16,
            heads: 2,
            edge_dim: 0,
            concat: true,
            negative_slope: 0.2,
        }
    }
}

impl GatV2Config {
    /// Output feature size.
    pub fn out_dim(&self) -> usize {
        if self.concat {
            self.heads * self.head_dim
        } else {
            self.head_dim
        }
    }
}

/// One GATv2 layer (weights `lin_l`, `lin_r`, `lin_edge`, `att`, `bias`).
#[derive(Debug, Clone)]
pub struct GatV2 {
    lin_l: Linear,
    lin_r: Linear,
    lin_edge: Option<Linear>,
    /// `[heads, head_dim]`.
    att: Tensor,
    bias: Tensor,
    cfg: GatV2Config,
}

impl GatV2 {
    /// The layer's weights from `vb`.
    pub fn new(vb: VarBuilder, cfg: GatV2Config) -> Result<Self> {
        let hc = cfg.heads * cfg.head_dim;
        let lin_l = candle_nn::linear(cfg.in_dim, hc, vb.pp("lin_l"))?;
        let lin_r = candle_nn::linear(cfg.in_dim, hc, vb.pp("lin_r"))?;
        let lin_edge = if cfg.edge_dim > 0 {
            Some(candle_nn::linear_no_bias(
                cfg.edge_dim,
                hc,
                vb.pp("lin_edge"),
            )?)
        } else {
            None
        };
        let bound = (6.0 / (cfg.heads + cfg.head_dim) as f64).sqrt();
        let att = vb.get_with_hints(
            (cfg.heads, cfg.head_dim),
            "att",
            candle_nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let bias = vb.get_with_hints(cfg.out_dim(), "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self {
            lin_l,
            lin_r,
            lin_edge,
            att,
            bias,
            cfg,
        })
    }

    /// The layer's settings.
    pub fn config(&self) -> GatV2Config {
        self.cfg
    }

    /// Node features `x [N, in_dim]` and edge features `edge_attr [E, edge_dim]` (when
    /// configured) → `(out [N, out_dim], attention [E, heads])`.
    pub fn forward(
        &self,
        x: &Tensor,
        edges: &EdgeIndex,
        edge_attr: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (n, f) = x.dims2()?;
        let (h, c) = (self.cfg.heads, self.cfg.head_dim);
        let e = edges.len();
        if f != self.cfg.in_dim || n != edges.nodes() {
            candle_core::bail!(
                "GATv2: node features are [{n}, {f}], expected [{}, {}]",
                edges.nodes(),
                self.cfg.in_dim
            );
        }
        let xl = self.lin_l.forward(x)?.reshape((n, h, c))?;
        let xr = self.lin_r.forward(x)?.reshape((n, h, c))?;
        let xl_j = xl.index_select(&edges.src, 0)?; // [E, h, c]
        let mut z = (&xl_j + xr.index_select(&edges.dst, 0)?)?;
        match (&self.lin_edge, edge_attr) {
            (Some(lin), Some(ea)) => {
                let (ea_e, ea_f) = ea.dims2()?;
                if ea_e != e || ea_f != self.cfg.edge_dim {
                    candle_core::bail!(
                        "GATv2: edge features are [{ea_e}, {ea_f}], expected [{e}, {}]",
                        self.cfg.edge_dim
                    );
                }
                z = (z + lin.forward(ea)?.reshape((e, h, c))?)?;
            }
            (Some(_), None) => candle_core::bail!("GATv2: the layer expects edge features"),
            (None, Some(_)) => {
                candle_core::bail!("GATv2: edge features given to a layer without edge_dim")
            }
            (None, None) => {}
        }
        let z = leaky_relu(&z, self.cfg.negative_slope)?;
        let scores = z.broadcast_mul(&self.att.unsqueeze(0)?)?.sum(D::Minus1)?; // [E, h]

        // Softmax over each destination's incoming edges, shifted by its maximum.
        let shift = segment_max(&scores, &edges.dst_host, n)?.index_select(&edges.dst, 0)?;
        let ex = (scores - shift)?.exp()?;
        let denom = scatter_sum(&ex, &edges.dst, n)?;
        let alpha = ex.div(&denom.index_select(&edges.dst, 0)?)?;

        let msg = xl_j.broadcast_mul(&alpha.unsqueeze(2)?)?; // [E, h, c]
        let out = scatter_sum(&msg, &edges.dst, n)?;
        let out = if self.cfg.concat {
            out.reshape((n, h * c))?
        } else {
            out.mean(1)?
        };
        Ok((out.broadcast_add(&self.bias)?, alpha))
    }
}

/// Sums the rows of `src [E, …]` into `nodes` rows by destination id `dst [E]` (the
/// scatter-add of message passing).
///
/// Written with candle's `index_add` (a scatter-add along dim 0 with one id per row), not
/// `Tensor::scatter_add`: in candle 0.11 the backward pass of `scatter_add` builds its mask
/// with the shape of the input instead of the indices and fails whenever there are more
/// edges than nodes (`shape mismatch in scatter (indexes, src)`, found by the gradient test
/// below); `index_add`'s backward (input: the gradient; source: the gradient gathered with
/// `index_select`) is right.
pub fn scatter_sum(src: &Tensor, dst: &Tensor, nodes: usize) -> Result<Tensor> {
    let mut shape = src.dims().to_vec();
    if shape.is_empty() {
        candle_core::bail!("scatter_sum: a scalar has no rows");
    }
    shape[0] = nodes;
    Tensor::zeros(shape, src.dtype(), src.device())?.index_add(dst, src, 0)
}

/// `max(x, slope·x)` (LeakyReLU for 0 ≤ slope ≤ 1).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.maximum(&(x * slope)?)
}

/// Per destination node and head, the largest score of its incoming edges (0 where it has
/// none), as a constant `[nodes, heads]` tensor.
pub(crate) fn segment_max(scores: &Tensor, dst: &[u32], nodes: usize) -> Result<Tensor> {
    let (e, h) = scores.dims2()?;
    let host: Vec<f32> = scores.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut m = vec![f32::NEG_INFINITY; nodes * h];
    for k in 0..e {
        let d = dst[k] as usize;
        for j in 0..h {
            let v = host[k * h + j];
            if v > m[d * h + j] {
                m[d * h + j] = v;
            }
        }
    }
    for v in m.iter_mut() {
        if !v.is_finite() {
            *v = 0.0;
        }
    }
    Tensor::from_vec(m, (nodes, h), scores.device())?.to_dtype(scores.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    /// A layer whose weights are set from plain arrays (row-major `[out, in]` for linears).
    fn layer_with(
        cfg: GatV2Config,
        wl: &[f64],
        bl: &[f64],
        wr: &[f64],
        br: &[f64],
        we: &[f64],
        att: &[f64],
    ) -> (GatV2, VarMap) {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &dev);
        let layer = GatV2::new(vb, cfg).unwrap();
        let hc = cfg.heads * cfg.head_dim;
        let set = |name: &str, v: &[f64], shape: &[usize]| {
            let data = vm.data().lock().unwrap();
            data[name]
                .set(&Tensor::from_vec(v.to_vec(), shape, &dev).unwrap())
                .unwrap();
        };
        set("lin_l.weight", wl, &[hc, cfg.in_dim]);
        set("lin_l.bias", bl, &[hc]);
        set("lin_r.weight", wr, &[hc, cfg.in_dim]);
        set("lin_r.bias", br, &[hc]);
        if cfg.edge_dim > 0 {
            set("lin_edge.weight", we, &[hc, cfg.edge_dim]);
        }
        set("att", att, &[cfg.heads, cfg.head_dim]);
        (layer, vm)
    }

    /// Three nodes, a star into node 2 plus self-loops, one head, 2 channels, a 1-d edge
    /// feature. Expected attention and outputs computed by hand (below, step by step).
    #[test]
    fn matches_a_hand_computed_graph() {
        let cfg = GatV2Config {
            in_dim: 2,
            head_dim: 2,
            heads: 1,
            edge_dim: 1,
            concat: true,
            negative_slope: 0.2,
        };
        // W_l = I, b_l = 0; W_r = 0.5·I, b_r = 0; W_e = [1, −1]ᵀ; a = [1, 1].
        let (layer, _vm) = layer_with(
            cfg,
            &[1.0, 0.0, 0.0, 1.0],
            &[0.0, 0.0],
            &[0.5, 0.0, 0.0, 0.5],
            &[0.0, 0.0],
            &[1.0, -1.0],
            &[1.0, 1.0],
        );
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1.0f64, 0.0], [0.0, 2.0], [-1.0, 1.0]], &dev).unwrap();
        let edges = EdgeIndex::new(&[(0, 2), (1, 2), (2, 2), (0, 0), (1, 1)], 3, &dev).unwrap();
        let ea = Tensor::new(&[[0.5f64], [0.0], [1.0], [0.0], [0.0]], &dev).unwrap();
        let (out, alpha) = layer.forward(&x, &edges, Some(&ea)).unwrap();
        let alpha: Vec<f64> = alpha.flatten_all().unwrap().to_vec1().unwrap();
        let out: Vec<Vec<f64>> = out.to_vec2().unwrap();

        // Into node 2 (x_r·0.5 = [−0.5, 0.5]):
        //  0→2: z = [1,0] + [−0.5,0.5] + 0.5·[1,−1] = [1, 0]      → s = 1 + 0     = 1
        //  1→2: z = [0,2] + [−0.5,0.5]              = [−0.5, 2.5] → s = −0.1 + 2.5 = 2.4
        //  2→2: z = [−1,1] + [−0.5,0.5] + [1,−1]    = [−0.5, 0.5] → s = −0.1 + 0.5 = 0.4
        let (s0, s1, s2) = (1.0f64, 2.4f64, 0.4f64);
        let z = s0.exp() + s1.exp() + s2.exp();
        let (a0, a1, a2) = (s0.exp() / z, s1.exp() / z, s2.exp() / z);
        for (got, want) in alpha.iter().zip([a0, a1, a2, 1.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "alpha {alpha:?}");
        }
        // out_2 = a0·[1,0] + a1·[0,2] + a2·[−1,1]; nodes 0 and 1 only see themselves.
        let want2 = [a0 - a2, 2.0 * a1 + a2];
        assert!((out[2][0] - want2[0]).abs() < 1e-12 && (out[2][1] - want2[1]).abs() < 1e-12);
        assert_eq!(out[0], vec![1.0, 0.0]);
        assert_eq!(out[1], vec![0.0, 2.0]);
    }

    fn random(shape: (usize, usize), seed: u64) -> Tensor {
        let mut s = seed;
        let v: Vec<f64> = (0..shape.0 * shape.1)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn random_graph(n: usize, seed: u64) -> Vec<(u32, u32)> {
        let mut s = seed;
        let mut edges: Vec<(u32, u32)> = (0..n as u32).map(|i| (i, i)).collect();
        for _ in 0..3 * n {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let a = ((s >> 33) % n as u64) as u32;
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = ((s >> 33) % n as u64) as u32;
            if a != b {
                edges.push((a, b));
            }
        }
        edges
    }

    fn cfg2() -> GatV2Config {
        GatV2Config {
            in_dim: 3,
            head_dim: 4,
            heads: 2,
            edge_dim: 2,
            concat: true,
            negative_slope: 0.2,
        }
    }

    /// Relabelling the nodes (and listing the edges in another order) relabels the output
    /// and nothing else.
    #[test]
    fn node_and_edge_order_do_not_matter() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let layer = GatV2::new(VarBuilder::from_varmap(&vm, DType::F64, &dev), cfg2()).unwrap();
        let n = 7;
        let edges = random_graph(n, 3);
        let x = random((n, 3), 11);
        let ea = random((edges.len(), 2), 12);
        let ei = EdgeIndex::new(&edges, n, &dev).unwrap();
        let (out, _) = layer.forward(&x, &ei, Some(&ea)).unwrap();
        let out: Vec<Vec<f64>> = out.to_vec2().unwrap();

        let perm: Vec<usize> = vec![3, 6, 0, 5, 1, 4, 2]; // new id of old node i
        let mut inv = vec![0usize; n];
        for (old, new) in perm.iter().enumerate() {
            inv[*new] = old;
        }
        let xp = Tensor::stack(
            &(0..n)
                .map(|new| x.get(inv[new]).unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let order: Vec<usize> = (0..edges.len()).rev().collect();
        let edges_p: Vec<(u32, u32)> = order
            .iter()
            .map(|k| {
                (
                    perm[edges[*k].0 as usize] as u32,
                    perm[edges[*k].1 as usize] as u32,
                )
            })
            .collect();
        let ea_p = Tensor::stack(
            &order
                .iter()
                .map(|k| ea.get(*k).unwrap())
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let eip = EdgeIndex::new(&edges_p, n, &dev).unwrap();
        let (outp, _) = layer.forward(&xp, &eip, Some(&ea_p)).unwrap();
        let outp: Vec<Vec<f64>> = outp.to_vec2().unwrap();
        for old in 0..n {
            for (a, b) in out[old].iter().zip(&outp[perm[old]]) {
                assert!((a - b).abs() < 1e-12, "node {old}");
            }
        }
    }

    /// Backprop through index_select / scatter_add / the shifted softmax agrees with
    /// central finite differences (f64, h = 1e-6, relative error < 1e-6).
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let layer = GatV2::new(VarBuilder::from_varmap(&vm, DType::F64, &dev), cfg2()).unwrap();
        // Fixed weights (the varmap's initialisation is random).
        {
            let data = vm.data().lock().unwrap();
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for (i, name) in names.into_iter().enumerate() {
                let v = &data[name];
                let dims = v.as_tensor().dims().to_vec();
                let n: usize = dims.iter().product();
                let r = random((1, n), 100 + i as u64).reshape(dims).unwrap();
                v.set(&r).unwrap();
            }
        }
        let n = 5;
        let edges = random_graph(n, 5);
        let x = random((n, 3), 21);
        let ea = random((edges.len(), 2), 22);
        let ei = EdgeIndex::new(&edges, n, &dev).unwrap();
        let loss = |layer: &GatV2| -> Tensor {
            let (out, _) = layer.forward(&x, &ei, Some(&ea)).unwrap();
            out.sqr().unwrap().sum_all().unwrap()
        };
        let grads = loss(&layer).backward().unwrap();
        for name in ["lin_l.weight", "lin_r.weight", "lin_edge.weight", "att"] {
            let var = vm.data().lock().unwrap()[name].clone();
            let g: Vec<f64> = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"))
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let shape = var.as_tensor().shape().clone();
            for k in (0..base.len()).step_by(3) {
                let eval = |delta: f64| {
                    let mut v = base.clone();
                    v[k] += delta;
                    var.set(&Tensor::from_vec(v, shape.clone(), &dev).unwrap())
                        .unwrap();
                    let l: f64 = loss(&layer).to_scalar().unwrap();
                    l
                };
                let h = 1e-6;
                let num = (eval(h) - eval(-h)) / (2.0 * h);
                var.set(&Tensor::from_vec(base.clone(), shape.clone(), &dev).unwrap())
                    .unwrap();
                // Central differences in f64 at h = 1e-6 carry ~1e-9 of rounding noise
                // (loss ≈ 10): absolute 1e-7 plus relative 1e-6.
                let tol = 1e-7 + 1e-6 * g[k].abs();
                assert!(
                    (num - g[k]).abs() < tol,
                    "{name}[{k}]: analytic {} numeric {num}",
                    g[k]
                );
            }
        }
    }

    #[test]
    fn shape_errors_name_what_was_expected() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let layer = GatV2::new(VarBuilder::from_varmap(&vm, DType::F64, &dev), cfg2()).unwrap();
        let ei = EdgeIndex::new(&[(0, 1), (1, 1), (0, 0)], 2, &dev).unwrap();
        let err = layer
            .forward(&random((2, 5), 1), &ei, Some(&random((3, 2), 2)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[2, 5]") && err.contains("expected [2, 3]"),
            "{err}"
        );
        let err = layer
            .forward(&random((2, 3), 1), &ei, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expects edge features"), "{err}");
        assert!(EdgeIndex::new(&[(0, 9)], 2, &dev).is_err());
    }
}
