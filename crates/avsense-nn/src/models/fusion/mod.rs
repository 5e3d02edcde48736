//! The learned fusion models and their three heads — per cross-modal pair *association*
//! (this track makes this sound), per audio segment *off-screen* (no visible source), per
//! window *audio-visual event class*:
//!
//! * [`FusionNet`] (`gnn`): GATv2 layers over the scene graph (cross-modal, temporal, scene
//!   and self edges), then the heads on the node states;
//! * [`AttentionNet`] (`attention`): cross-modal attention without the graph — each segment
//!   attends over the tracks of its window (scaled dot product plus an edge-feature term);
//!   no message passing, no temporal context;
//! * [`ConcatNet`] (`concat`): late fusion — an MLP on the concatenated segment, track and
//!   edge features per pair; the segment's verdict sees the mean of its pairs.
//!
//! Weights live in a safetensors file beside a JSON spec ([`ModelSpec`]); loading checks
//! every tensor's presence and shape against the spec and names the file and the tensor in
//! its errors, so a wrong or truncated file stops the pipeline at start.

pub mod batch;
pub mod gatv2;
pub mod weights;

pub use weights::{load_weights, Loaded};

use batch::GraphBatch;
use candle_core::{DType, Device, Module, Result as CResult, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use gatv2::{scatter_sum, segment_max, GatV2, GatV2Config};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Node feature size of the scene graphs the networks read.
pub const NODE_DIM: usize = 12;
/// Edge feature size of the scene graphs the networks read.
pub const EDGE_DIM: usize = 8;

/// The window-level audio-visual event classes, in the models' output order.
pub const EVENT_CLASSES: [&str; 5] = [
    "background",
    "speech_in_view",
    "speech_offscreen",
    "sound_in_view",
    "sound_offscreen",
];

/// Shape of the network (stored as JSON beside the weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionNetConfig {
    /// Node feature size.
    pub node_dim: usize,
    /// Edge feature size.
    pub edge_dim: usize,
    /// Hidden size per head.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// GATv2 layers (2–3).
    pub layers: usize,
    /// Window-level event classes.
    pub event_classes: usize,
}

impl Default for FusionNetConfig {
    fn default() -> Self {
        Self {
            node_dim: 12,
            edge_dim: 8,
            hidden: 16,
            heads: 2,
            layers: 2,
            event_classes: EVENT_CLASSES.len(),
        }
    }
}

/// Errors of loading fusion weights.
#[derive(Debug, thiserror::Error)]
pub enum FusionModelError {
    /// The file is missing, unreadable or not a safetensors file (e.g. truncated).
    #[error("fusion weights {path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor the config needs is absent.
    #[error("fusion weights {path}: tensor `{tensor}` is missing (expected shape {expected:?})")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its expected shape.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("fusion weights {path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shape found.
        found: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// Building the network failed.
    #[error("fusion weights {path}: {reason}")]
    Build {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What a model says about a batch of graphs (logits).
#[derive(Debug, Clone)]
pub struct FusionOutput {
    /// Association logit per cross-modal pair `[C]` (batch order).
    pub association: Tensor,
    /// Off-screen logit per segment `[S]` (batch order).
    pub offscreen: Tensor,
    /// Event class logits per graph `[B, event_classes]`.
    pub event: Tensor,
}

/// Which learned model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LearnedKind {
    /// GATv2 over the scene graph.
    Gnn,
    /// Cross-modal attention without the graph.
    Attention,
    /// Concatenation + MLP (late fusion).
    Concat,
}

impl LearnedKind {
    /// All three, in table order.
    pub const ALL: [LearnedKind; 3] = [
        LearnedKind::Gnn,
        LearnedKind::Attention,
        LearnedKind::Concat,
    ];

    /// The config / file name (`gnn`, `attention`, `concat`).
    pub fn name(self) -> &'static str {
        match self {
            LearnedKind::Gnn => "gnn",
            LearnedKind::Attention => "attention",
            LearnedKind::Concat => "concat",
        }
    }
}

/// The JSON written beside a model's weights: its kind, shape, event class names and how
/// it was trained (free-form, for people).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Which model.
    pub kind: LearnedKind,
    /// Its shape.
    pub net: FusionNetConfig,
    /// Names of the event classes, `net.event_classes` of them.
    pub event_names: Vec<String>,
    /// Decision threshold on the association probability.
    pub threshold: f32,
    /// How it was trained: command, dataset, metrics.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl ModelSpec {
    /// Reads and checks a spec file.
    pub fn load(path: &Path) -> Result<Self, FusionModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| FusionModelError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a spec (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, FusionModelError> {
        let bad = |reason: String| FusionModelError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let spec: ModelSpec = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if spec.event_names.len() != spec.net.event_classes {
            return Err(bad(format!(
                "{} event names for {} event classes",
                spec.event_names.len(),
                spec.net.event_classes
            )));
        }
        if spec.net.node_dim != NODE_DIM || spec.net.edge_dim != EDGE_DIM {
            return Err(bad(format!(
                "node/edge feature sizes {}/{}, but the scene graph has {}/{}",
                spec.net.node_dim, spec.net.edge_dim, NODE_DIM, EDGE_DIM
            )));
        }
        if !(spec.threshold > 0.0 && spec.threshold < 1.0) {
            return Err(bad(format!(
                "threshold {}: expected 0 < t < 1",
                spec.threshold
            )));
        }
        Ok(spec)
    }
}

/// One of the learned models.
#[derive(Debug, Clone)]
pub enum LearnedModel {
    /// `gnn`.
    Gnn(FusionNet),
    /// `attention`.
    Attention(AttentionNet),
    /// `concat`.
    Concat(ConcatNet),
}

impl LearnedModel {
    /// A model of `kind` with weights from `vb` (a VarMap's for training).
    pub fn new(vb: VarBuilder, kind: LearnedKind, cfg: FusionNetConfig) -> CResult<Self> {
        Ok(match kind {
            LearnedKind::Gnn => LearnedModel::Gnn(FusionNet::new(vb, cfg)?),
            LearnedKind::Attention => LearnedModel::Attention(AttentionNet::new(vb, cfg)?),
            LearnedKind::Concat => LearnedModel::Concat(ConcatNet::new(vb, cfg)?),
        })
    }

    /// Every tensor a model of this kind and shape has, with its shape.
    pub fn expected_tensors(
        kind: LearnedKind,
        cfg: FusionNetConfig,
    ) -> CResult<Vec<(String, Vec<usize>)>> {
        let vm = candle_nn::VarMap::new();
        Self::new(
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
            kind,
            cfg,
        )?;
        let data = vm
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap lock".into()))?;
        let mut v: Vec<(String, Vec<usize>)> = data
            .iter()
            .map(|(k, t)| (k.clone(), t.dims().to_vec()))
            .collect();
        v.sort();
        Ok(v)
    }

    /// Loads weights for `spec` from `path`, checking every tensor.
    pub fn load(path: &Path, spec: &ModelSpec, device: &Device) -> Result<Self, FusionModelError> {
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| FusionModelError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::from_tensors(tensors, path, spec, device)
    }

    /// Checks `tensors` (read from `path`) against `spec` and builds the model.
    pub fn from_tensors(
        tensors: std::collections::HashMap<String, Tensor>,
        path: &Path,
        spec: &ModelSpec,
        device: &Device,
    ) -> Result<Self, FusionModelError> {
        let build = |reason: String| FusionModelError::Build {
            path: path.to_path_buf(),
            reason,
        };
        let expected =
            Self::expected_tensors(spec.kind, spec.net).map_err(|e| build(e.to_string()))?;
        for (name, expected) in expected {
            match tensors.get(&name) {
                None => {
                    return Err(FusionModelError::Missing {
                        path: path.to_path_buf(),
                        tensor: name,
                        expected,
                    })
                }
                Some(t) if t.dims() != expected.as_slice() => {
                    return Err(FusionModelError::Shape {
                        path: path.to_path_buf(),
                        tensor: name,
                        found: t.dims().to_vec(),
                        expected,
                    })
                }
                Some(t) if t.dtype() != DType::F32 => {
                    return Err(build(format!(
                        "tensor `{name}` is {:?}, expected F32",
                        t.dtype()
                    )))
                }
                Some(_) => {}
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(vb, spec.kind, spec.net).map_err(|e| build(e.to_string()))
    }

    /// Scores a batch.
    pub fn forward(&self, b: &GraphBatch) -> CResult<FusionOutput> {
        match self {
            LearnedModel::Gnn(m) => m.forward(b),
            LearnedModel::Attention(m) => m.forward(b),
            LearnedModel::Concat(m) => m.forward(b),
        }
    }
}

/// The GATv2 fusion network (`gnn`).
#[derive(Debug, Clone)]
pub struct FusionNet {
    layers: Vec<GatV2>,
    assoc: Linear,
    offscreen: Linear,
    event: Linear,
    cfg: FusionNetConfig,
}

impl FusionNet {
    /// A network with weights from `vb`: `gnn.{l}.*` per layer, `assoc`, `offscreen`,
    /// `event`.
    pub fn new(vb: VarBuilder, cfg: FusionNetConfig) -> CResult<Self> {
        let hc = cfg.heads * cfg.hidden;
        let layers = (0..cfg.layers)
            .map(|l| {
                GatV2::new(
                    vb.pp(format!("gnn.{l}")),
                    GatV2Config {
                        in_dim: if l == 0 { cfg.node_dim } else { hc },
                        head_dim: cfg.hidden,
                        heads: cfg.heads,
                        edge_dim: cfg.edge_dim,
                        concat: true,
                        negative_slope: 0.2,
                    },
                )
            })
            .collect::<CResult<Vec<_>>>()?;
        Ok(Self {
            layers,
            assoc: candle_nn::linear(2 * hc + cfg.edge_dim, 1, vb.pp("assoc"))?,
            offscreen: candle_nn::linear(2 * hc, 1, vb.pp("offscreen"))?,
            event: candle_nn::linear(2 * hc, cfg.event_classes, vb.pp("event"))?,
            cfg,
        })
    }

    /// The network's shape.
    pub fn config(&self) -> FusionNetConfig {
        self.cfg
    }

    /// Node states after the GATv2 layers `[N, heads·hidden]`.
    pub fn embed(&self, b: &GraphBatch) -> CResult<Tensor> {
        let mut h = b.x.clone();
        for layer in &self.layers {
            let (out, _) = layer.forward(&h, &b.edges, Some(&b.edge_attr))?;
            h = out.relu()?;
        }
        Ok(h)
    }

    /// Heads: association on `[h_segment, h_track, edge features]`; off-screen on
    /// `[h_segment, h_video_scene]` of the segment's graph; event class on
    /// `[h_video_scene, h_audio_scene]`.
    pub fn forward(&self, b: &GraphBatch) -> CResult<FusionOutput> {
        let h = self.embed(b)?;
        let association = if b.cross.is_empty() {
            Tensor::zeros(0, h.dtype(), h.device())?
        } else {
            let hs = h.index_select(&b.ids(b.cross.iter().map(|c| c.1))?, 0)?;
            let ht = h.index_select(&b.ids(b.cross.iter().map(|c| c.2))?, 0)?;
            let ea = b
                .edge_attr
                .index_select(&b.ids(b.cross.iter().map(|c| c.0))?, 0)?;
            self.assoc
                .forward(&Tensor::cat(&[&hs, &ht, &ea], D::Minus1)?)?
                .squeeze(D::Minus1)?
        };
        let offscreen = if b.segments.is_empty() {
            Tensor::zeros(0, h.dtype(), h.device())?
        } else {
            let hs = h.index_select(&b.ids(b.segments.iter().copied())?, 0)?;
            let hv = h.index_select(
                &b.ids(b.segment_graph.iter().map(|g| b.scenes[*g as usize].0))?,
                0,
            )?;
            self.offscreen
                .forward(&Tensor::cat(&[&hs, &hv], D::Minus1)?)?
                .squeeze(D::Minus1)?
        };
        let hv = h.index_select(&b.ids(b.scenes.iter().map(|s| s.0))?, 0)?;
        let ha = h.index_select(&b.ids(b.scenes.iter().map(|s| s.1))?, 0)?;
        let event = self.event.forward(&Tensor::cat(&[&hv, &ha], D::Minus1)?)?;
        Ok(FusionOutput {
            association,
            offscreen,
            event,
        })
    }
}

/// Rows of `x [C, d]` averaged per segment (`seg[c]` = the row's segment) → `[S, d]`;
/// segments without rows get zeros.
fn segment_mean(x: &Tensor, seg: &[u32], segments: usize) -> CResult<Tensor> {
    let d = x.dim(1)?;
    if seg.is_empty() {
        return Tensor::zeros((segments, d), x.dtype(), x.device());
    }
    let mut count = vec![0f32; segments];
    for s in seg {
        count[*s as usize] += 1.0;
    }
    let inv: Vec<f32> = count.iter().map(|c| 1.0 / c.max(1.0)).collect();
    let idx = Tensor::from_vec(seg.to_vec(), seg.len(), x.device())?;
    let sum = scatter_sum(x, &idx, segments)?;
    sum.broadcast_mul(&Tensor::from_vec(inv, (segments, 1), x.device())?)
}

/// Cross-modal attention without the graph (`attention`).
#[derive(Debug, Clone)]
pub struct AttentionNet {
    enc: Linear,
    q: Linear,
    k: Linear,
    k_edge: Linear,
    v: Linear,
    assoc: Linear,
    offscreen: Linear,
    event: Linear,
    dim: usize,
}

impl AttentionNet {
    /// A model with weights from `vb`; width `heads·hidden`.
    pub fn new(vb: VarBuilder, cfg: FusionNetConfig) -> CResult<Self> {
        let d = cfg.heads * cfg.hidden;
        Ok(Self {
            enc: candle_nn::linear(cfg.node_dim, d, vb.pp("enc"))?,
            q: candle_nn::linear(d, d, vb.pp("q"))?,
            k: candle_nn::linear(d, d, vb.pp("k"))?,
            k_edge: candle_nn::linear(cfg.edge_dim, d, vb.pp("k_edge"))?,
            v: candle_nn::linear(d, d, vb.pp("v"))?,
            assoc: candle_nn::linear(d + cfg.edge_dim, 1, vb.pp("assoc"))?,
            offscreen: candle_nn::linear(2 * d, 1, vb.pp("offscreen"))?,
            event: candle_nn::linear(2 * d, cfg.event_classes, vb.pp("event"))?,
            dim: d,
        })
    }

    /// Each segment's query attends over its window's tracks (keys from the track and the
    /// pair's edge features; softmax per segment); association on `[q ⊙ k, edge features]`,
    /// off-screen on `[segment, attended tracks]`, event on the encoded scene nodes.
    pub fn forward(&self, b: &GraphBatch) -> CResult<FusionOutput> {
        let h = self.enc.forward(&b.x)?.relu()?;
        let s = b.segments.len();
        let hs_all = if s == 0 {
            Tensor::zeros((0, self.dim), h.dtype(), h.device())?
        } else {
            h.index_select(&b.ids(b.segments.iter().copied())?, 0)?
        };
        let (association, ctx) = if b.cross.is_empty() {
            (
                Tensor::zeros(0, h.dtype(), h.device())?,
                Tensor::zeros((s, self.dim), h.dtype(), h.device())?,
            )
        } else {
            let q = self
                .q
                .forward(&h.index_select(&b.ids(b.cross.iter().map(|c| c.1))?, 0)?)?;
            let ht = h.index_select(&b.ids(b.cross.iter().map(|c| c.2))?, 0)?;
            let ea = b
                .edge_attr
                .index_select(&b.ids(b.cross.iter().map(|c| c.0))?, 0)?;
            let k = (self.k.forward(&ht)? + self.k_edge.forward(&ea)?)?;
            let v = self.v.forward(&ht)?;
            let qk = (&q * &k)?;
            let logits = (qk.sum_keepdim(D::Minus1)? / (self.dim as f64).sqrt())?; // [C, 1]
            let shift = segment_max(&logits, &b.cross_segment, s)?;
            let seg = b.ids(b.cross_segment.iter().copied())?;
            let ex = (logits - shift.index_select(&seg, 0)?)?.exp()?;
            let denom = scatter_sum(&ex, &seg, s)?;
            let alpha = ex.div(&denom.index_select(&seg, 0)?)?;
            let ctx = scatter_sum(&v.broadcast_mul(&alpha)?, &seg, s)?;
            let a = self
                .assoc
                .forward(&Tensor::cat(&[&qk, &ea], D::Minus1)?)?
                .squeeze(D::Minus1)?;
            (a, ctx)
        };
        let offscreen = if s == 0 {
            Tensor::zeros(0, h.dtype(), h.device())?
        } else {
            self.offscreen
                .forward(&Tensor::cat(&[&hs_all, &ctx], D::Minus1)?)?
                .squeeze(D::Minus1)?
        };
        let hv = h.index_select(&b.ids(b.scenes.iter().map(|s| s.0))?, 0)?;
        let ha = h.index_select(&b.ids(b.scenes.iter().map(|s| s.1))?, 0)?;
        let event = self.event.forward(&Tensor::cat(&[&hv, &ha], D::Minus1)?)?;
        Ok(FusionOutput {
            association,
            offscreen,
            event,
        })
    }
}

/// Late fusion by concatenation + MLP (`concat`).
#[derive(Debug, Clone)]
pub struct ConcatNet {
    pair: Linear,
    assoc: Linear,
    segment: Linear,
    offscreen: Linear,
    scene: Linear,
    event: Linear,
    dim: usize,
}

impl ConcatNet {
    /// A model with weights from `vb`; width `heads·hidden`.
    pub fn new(vb: VarBuilder, cfg: FusionNetConfig) -> CResult<Self> {
        let d = cfg.heads * cfg.hidden;
        Ok(Self {
            pair: candle_nn::linear(2 * cfg.node_dim + cfg.edge_dim, d, vb.pp("pair"))?,
            assoc: candle_nn::linear(d, 1, vb.pp("assoc"))?,
            segment: candle_nn::linear(cfg.node_dim, d, vb.pp("segment"))?,
            offscreen: candle_nn::linear(2 * d, 1, vb.pp("offscreen"))?,
            scene: candle_nn::linear(2 * cfg.node_dim, d, vb.pp("scene"))?,
            event: candle_nn::linear(d, cfg.event_classes, vb.pp("event"))?,
            dim: d,
        })
    }

    /// Pair MLP on `[segment, track, edge features]`; off-screen on `[MLP(segment), mean of
    /// its pairs' hidden]`; event on `MLP([video scene, audio scene])`.
    pub fn forward(&self, b: &GraphBatch) -> CResult<FusionOutput> {
        let x = &b.x;
        let s = b.segments.len();
        let (association, pooled) = if b.cross.is_empty() {
            (
                Tensor::zeros(0, x.dtype(), x.device())?,
                Tensor::zeros((s, self.dim), x.dtype(), x.device())?,
            )
        } else {
            let xs = x.index_select(&b.ids(b.cross.iter().map(|c| c.1))?, 0)?;
            let xt = x.index_select(&b.ids(b.cross.iter().map(|c| c.2))?, 0)?;
            let ea = b
                .edge_attr
                .index_select(&b.ids(b.cross.iter().map(|c| c.0))?, 0)?;
            let p = self
                .pair
                .forward(&Tensor::cat(&[&xs, &xt, &ea], D::Minus1)?)?
                .relu()?;
            (
                self.assoc.forward(&p)?.squeeze(D::Minus1)?,
                segment_mean(&p, &b.cross_segment, s)?,
            )
        };
        let offscreen = if s == 0 {
            Tensor::zeros(0, x.dtype(), x.device())?
        } else {
            let hs = self
                .segment
                .forward(&x.index_select(&b.ids(b.segments.iter().copied())?, 0)?)?
                .relu()?;
            self.offscreen
                .forward(&Tensor::cat(&[&hs, &pooled], D::Minus1)?)?
                .squeeze(D::Minus1)?
        };
        let xv = x.index_select(&b.ids(b.scenes.iter().map(|s| s.0))?, 0)?;
        let xa = x.index_select(&b.ids(b.scenes.iter().map(|s| s.1))?, 0)?;
        let event = self.event.forward(
            &self
                .scene
                .forward(&Tensor::cat(&[&xv, &xa], D::Minus1)?)?
                .relu()?,
        )?;
        Ok(FusionOutput {
            association,
            offscreen,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::batch::GraphParts;
    use super::*;
    use super::{EDGE_DIM, NODE_DIM};
    use candle_nn::VarMap;

    fn small() -> FusionNetConfig {
        FusionNetConfig {
            hidden: 4,
            heads: 2,
            layers: 2,
            event_classes: 3,
            ..FusionNetConfig::default()
        }
    }

    /// 0: segment, 1–2: tracks, 3: video scene, 4: audio scene; cross edges 0↔1, 0↔2;
    /// scene edges; self-loops.
    fn graph() -> GraphParts {
        let mut x = vec![[0f32; NODE_DIM]; 5];
        for (i, r) in x.iter_mut().enumerate() {
            for (j, v) in r.iter_mut().enumerate() {
                *v = ((i * 5 + j * 3) % 7) as f32 / 7.0;
            }
        }
        let edges = vec![
            (0, 1),
            (1, 0),
            (0, 2),
            (2, 0),
            (3, 1),
            (3, 2),
            (4, 0),
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
        ];
        let edge_attr = (0..edges.len())
            .map(|e| {
                let mut r = [0f32; EDGE_DIM];
                for (j, v) in r.iter_mut().enumerate() {
                    *v = ((e * 7 + j) % 5) as f32 / 5.0;
                }
                r
            })
            .collect();
        GraphParts {
            x,
            edges,
            edge_attr,
            cross: vec![(0, 0, 1), (2, 0, 2)],
            segments: vec![0],
            scenes: (3, 4),
        }
    }

    fn model(kind: LearnedKind, vm: &VarMap) -> LearnedModel {
        LearnedModel::new(
            VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu),
            kind,
            small(),
        )
        .unwrap()
    }

    fn v1(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn heads_have_the_shapes_of_the_batch() {
        let g = graph();
        g.check().unwrap();
        let two = GraphBatch::new(&[&g, &g], &Device::Cpu).unwrap();
        for kind in LearnedKind::ALL {
            let vm = VarMap::new();
            let out = model(kind, &vm).forward(&two).unwrap();
            assert_eq!(out.association.dims(), &[4], "{kind:?}");
            assert_eq!(out.offscreen.dims(), &[2], "{kind:?}");
            assert_eq!(out.event.dims(), &[2, 3], "{kind:?}");
            // Both copies score the same: batching keeps graphs apart.
            let a = v1(&out.association);
            assert!((a[0] - a[2]).abs() < 1e-6 && (a[1] - a[3]).abs() < 1e-6);
            // The varmap holds exactly the tensors the loader checks.
            let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
            names.sort();
            let want: Vec<String> = LearnedModel::expected_tensors(kind, small())
                .unwrap()
                .into_iter()
                .map(|t| t.0)
                .collect();
            assert_eq!(names, want);
        }
    }

    /// A saved model loads back to the same outputs; a wrong shape, a missing tensor and a
    /// truncated file are errors that name the file and the tensor.
    #[test]
    fn loading_checks_every_tensor_and_names_file_and_tensor() {
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("avsense-fusion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = |kind, net| ModelSpec {
            kind,
            net,
            event_names: vec!["a".into(), "b".into(), "c".into()],
            threshold: 0.5,
            training: serde_json::Value::Null,
        };
        let g = graph();
        let b = GraphBatch::new(&[&g], &dev).unwrap();
        for kind in LearnedKind::ALL {
            let vm = VarMap::new();
            let net = model(kind, &vm);
            let good = dir.join(format!("{}.safetensors", kind.name()));
            vm.save(&good).unwrap();
            let back = LearnedModel::load(&good, &spec(kind, small()), &dev).unwrap();
            assert_eq!(
                v1(&net.forward(&b).unwrap().association),
                v1(&back.forward(&b).unwrap().association)
            );
            let wider = FusionNetConfig {
                hidden: 8,
                ..small()
            };
            let err = LearnedModel::load(&good, &spec(kind, wider), &dev)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("{}.safetensors", kind.name()))
                    && err.contains("tensor `")
                    && err.contains("expected ["),
                "{err}"
            );
            let bytes = std::fs::read(&good).unwrap();
            let cut = dir.join("truncated.safetensors");
            std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
            let err = LearnedModel::load(&cut, &spec(kind, small()), &dev)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("truncated.safetensors") && err.contains("cannot read"),
                "{err}"
            );
        }
        let vm = VarMap::new();
        model(LearnedKind::Gnn, &vm);
        let good = dir.join("gnn.safetensors");
        vm.save(&good).unwrap();
        let deeper = FusionNetConfig {
            layers: 3,
            ..small()
        };
        let err = LearnedModel::load(&good, &spec(LearnedKind::Gnn, deeper), &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gnn.2.") && err.contains("missing"), "{err}");
        // A spec whose event names do not match its classes is refused.
        let bad = dir.join("bad.json");
        let mut s = spec(LearnedKind::Gnn, small());
        s.event_names.pop();
        std::fs::write(&bad, serde_json::to_string(&s).unwrap()).unwrap();
        let err = ModelSpec::load(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.json") && err.contains("event names"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Relabelling the nodes (and reordering the edges) leaves every output unchanged.
    #[test]
    fn outputs_do_not_depend_on_node_order() {
        let g = graph();
        let n = g.x.len() as u32;
        let p = |i: u32| n - 1 - i; // reverse the node order
        let mut x = g.x.clone();
        x.reverse();
        let mut order: Vec<usize> = (0..g.edges.len()).collect();
        order.reverse();
        let pos = |e: u32| order.iter().position(|o| *o == e as usize).unwrap() as u32;
        let r = GraphParts {
            x,
            edges: order
                .iter()
                .map(|e| (p(g.edges[*e].0), p(g.edges[*e].1)))
                .collect(),
            edge_attr: order.iter().map(|e| g.edge_attr[*e]).collect(),
            cross: g
                .cross
                .iter()
                .map(|(e, s, t)| (pos(*e), p(*s), p(*t)))
                .collect(),
            segments: g.segments.iter().map(|s| p(*s)).collect(),
            scenes: (p(g.scenes.0), p(g.scenes.1)),
        };
        r.check().unwrap();
        let dev = Device::Cpu;
        let (b, br) = (
            GraphBatch::new(&[&g], &dev).unwrap(),
            GraphBatch::new(&[&r], &dev).unwrap(),
        );
        for kind in LearnedKind::ALL {
            let vm = VarMap::new();
            let m = model(kind, &vm);
            let (o, or) = (m.forward(&b).unwrap(), m.forward(&br).unwrap());
            for (a, c) in [
                (&o.association, &or.association),
                (&o.offscreen, &or.offscreen),
                (&o.event, &or.event),
            ] {
                let (a, c) = (v1(a), v1(c));
                assert!(
                    a.iter().zip(&c).all(|(x, y)| (x - y).abs() < 1e-5),
                    "{kind:?}: {a:?} vs {c:?}"
                );
            }
        }
    }
}
