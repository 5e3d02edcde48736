//! YAMNet (Google, Apache-2.0) on candle: AudioSet's 521 classes and a 1024-d embedding
//! per 0.96 s log-mel patch.
//!
//! # What it is
//! MobileNetV1 as upstream `research/audioset/yamnet/yamnet.py` defines it
//! (`_YAMNET_LAYER_DEFS`, [`LAYERS`]): a 3×3 convolution (stride 2, 32 filters), then 13
//! depthwise-separable blocks (3×3 depthwise + 1×1 pointwise), each convolution followed
//! by batch norm and **ReLU** (plain, not ReLU6); TF `SAME` padding (a stride-2 layer on an
//! even size pads one row/column at the bottom/right only); global average pooling of the
//! final 3×2×1024 map → the 1024-d embedding; a dense layer → 521 logits → sigmoid.
//!
//! # Input contract
//! Log-mel patches of [`PATCH_FRAMES`] = 96 frames × [`MEL_BANDS`] = 64 bands, as
//! the runtime's log-mel front end (`avsense::encode::audio::logmel`) computes them (`ln(mel(|STFT|) + 0.001)`, 25 ms / 10 ms
//! framing, TensorFlow's mel filterbank), frame-major: `patch[f * 64 + b]`. A batch is a
//! tensor `[B, 96, 64]`, `[B, 1, 96, 64]` or `[B, 96, 64, 1]`. Upstream cuts patches every
//! [`PATCH_HOP_FRAMES`] = 48 frames (0.48 s); patch `k` of a stream covers samples
//! `[7680 k, 7680 k + 15600)` ([`patch_starts`]).
//!
//! # Weights
//! From `yamnet.tflite` ([`Yamnet::from_tflite`]): the TFLite graph's operators are walked
//! backwards from the scores output (LOGISTIC ← FULLY_CONNECTED ← MEAN ← the chain of
//! CONV_2D/DEPTHWISE_CONV_2D ops), every op's kind, stride, padding, dilation, activation and
//! filter shape is checked against [`LAYERS`], and the tensors are taken from the ops that
//! use them (no tensor indices or names are assumed). Batch norm is folded into the
//! convolutions' weights and biases in that file. Int8 weights are dequantised as
//! `scale × (q − zero_point)`, so this model computes in f32 what the file's hybrid int8
//! kernels approximate (activations are never quantised here). [`Yamnet::new`] takes the
//! same tensors from a `VarBuilder` under the names of [`weight_names`].
//!
//! Parity (`tests/parity_yamnet.rs`, 30 patches of real sounds): on the same log-mel, our
//! scores are within 2.3e-6 of upstream's float graph run by LiteRT, and with our own front
//! end within 1.1e-5 (same top-5 everywhere). Against the shipped file run as is (hybrid
//! int8: LiteRT also quantises every activation entering a 1×1 convolution or the
//! classifier, and the front end's), the network alone is within 0.042 on the file's own
//! log-mel, and the whole model differs by up to 0.56 — the file's quantisation noise;
//! LiteRT's XNNPACK and builtin kernels differ from each other by up to 0.40.
//!
//! # Implementation
//! Channels-last (NHWC) throughout: the 1×1 convolutions and the classifier are matrix
//! products on `[B·H·W, C]`, the depthwise layers (and the first convolution, a depthwise
//! one with one input channel and multiplier 32) run [`crate::ops::depthwise_conv2d`]
//! (a direct CPU kernel; candle's grouped conv2d on other devices).

use crate::formats::tflite::{Activation, BuiltinOp, Options, TfliteError, TfliteModel};
use crate::ops::{depthwise_conv2d, ConvLayout, DepthwiseConv2dConfig, Padding};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::Path;

/// Frames per patch (0.96 s).
pub const PATCH_FRAMES: usize = 96;
/// Frames between patch starts (0.48 s).
pub const PATCH_HOP_FRAMES: usize = 48;
/// Mel bands per frame.
pub const MEL_BANDS: usize = 64;
/// Samples one patch reads at 16 kHz: 95 hops + one 400-sample window.
pub const PATCH_SAMPLES: usize = 15_600;
/// Samples between patch starts.
pub const PATCH_HOP_SAMPLES: usize = 7_680;
/// AudioSet classes.
pub const NUM_CLASSES: usize = 521;
/// Embedding width.
pub const EMBEDDING_DIM: usize = 1024;

/// One layer of upstream's `_YAMNET_LAYER_DEFS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Full 3×3 convolution.
    Conv,
    /// 3×3 depthwise then 1×1 pointwise.
    Separable,
}

/// Upstream's layer list: (kind, stride, filters); all kernels 3×3.
pub const LAYERS: [(LayerKind, usize, usize); 14] = [
    (LayerKind::Conv, 2, 32),
    (LayerKind::Separable, 1, 64),
    (LayerKind::Separable, 2, 128),
    (LayerKind::Separable, 1, 128),
    (LayerKind::Separable, 2, 256),
    (LayerKind::Separable, 1, 256),
    (LayerKind::Separable, 2, 512),
    (LayerKind::Separable, 1, 512),
    (LayerKind::Separable, 1, 512),
    (LayerKind::Separable, 1, 512),
    (LayerKind::Separable, 1, 512),
    (LayerKind::Separable, 1, 512),
    (LayerKind::Separable, 2, 1024),
    (LayerKind::Separable, 1, 1024),
];

/// Errors of YAMNet: each names the file, the tensor or the input.
#[derive(Debug, thiserror::Error)]
pub enum YamnetError {
    /// The model file cannot be read or parsed.
    #[error(transparent)]
    Tflite(#[from] TfliteError),
    /// The graph in the file is not the YAMNet this code implements.
    #[error("yamnet {origin}: unexpected graph: {reason}")]
    Graph {
        /// The file.
        origin: String,
        /// What differs (names the operator and tensor).
        reason: String,
    },
    /// A weight is missing or has the wrong shape.
    #[error("yamnet weights {origin}: tensor `{tensor}`: {reason}")]
    Weight {
        /// The file or `VarBuilder`.
        origin: String,
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The input is not a batch of log-mel patches.
    #[error("yamnet: bad input: {0}")]
    Input(String),
    /// The class map cannot be read.
    #[error("yamnet class map {path}: {reason}")]
    ClassMap {
        /// The file.
        path: String,
        /// What is wrong (with the line).
        reason: String,
    },
    /// A tensor operation failed while running the model.
    #[error("yamnet forward: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Model settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamnetConfig {
    /// Activation after every convolution (upstream: ReLU).
    pub activation: Act,
    /// Output classes.
    pub num_classes: usize,
}

impl Default for YamnetConfig {
    fn default() -> Self {
        Self {
            activation: Act::Relu,
            num_classes: NUM_CLASSES,
        }
    }
}

/// Activation after the convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    /// max(x, 0).
    #[default]
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
}

impl Act {
    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Act::Relu => x.relu(),
            Act::Relu6 => x.clamp(0f32, 6f32),
        }
    }
}

/// Names and shapes of every weight, in order (the `VarBuilder` layout of [`Yamnet::new`]):
/// `layer1.conv.weight` `[3, 3, 1, 32]` (kh, kw, in, out), `layerN.depthwise.weight`
/// `[3, 3, C, 1]`, `layerN.pointwise.weight` `[C_in, C_out]`, `logits.weight`
/// `[1024, classes]`, each with a `.bias` of its output width (batch norm folded in).
pub fn weight_names(num_classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut c = 1;
    for (i, &(kind, _, filters)) in LAYERS.iter().enumerate() {
        let n = i + 1;
        match kind {
            LayerKind::Conv => {
                out.push((format!("layer{n}.conv.weight"), vec![3, 3, c, filters]));
                out.push((format!("layer{n}.conv.bias"), vec![filters]));
            }
            LayerKind::Separable => {
                out.push((format!("layer{n}.depthwise.weight"), vec![3, 3, c, 1]));
                out.push((format!("layer{n}.depthwise.bias"), vec![c]));
                out.push((format!("layer{n}.pointwise.weight"), vec![c, filters]));
                out.push((format!("layer{n}.pointwise.bias"), vec![filters]));
            }
        }
        c = filters;
    }
    out.push(("logits.weight".into(), vec![EMBEDDING_DIM, num_classes]));
    out.push(("logits.bias".into(), vec![num_classes]));
    out
}

/// A 3×3 convolution or depthwise convolution (NHWC), bias, activation.
#[derive(Debug, Clone)]
struct DepthwiseBlock {
    weight: Tensor,
    bias: Tensor,
    cfg: DepthwiseConv2dConfig,
    act: Act,
}

impl DepthwiseBlock {
    fn new(
        vb: &VarBuilder,
        name: &str,
        shape: [usize; 4],
        stride: usize,
        act: Act,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(shape.to_vec(), &format!("{name}.weight"))?,
            bias: vb.get(shape[2] * shape[3], &format!("{name}.bias"))?,
            cfg: DepthwiseConv2dConfig {
                layout: ConvLayout::Nhwc,
                stride: (stride, stride),
                dilation: (1, 1),
                padding: Padding::Same,
            },
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = depthwise_conv2d(x, &self.weight, Some(&self.bias), &self.cfg)?;
        self.act.apply(&y)
    }
}

/// A 1×1 convolution (NHWC) as a matrix product, bias, activation.
#[derive(Debug, Clone)]
struct Pointwise {
    weight: Tensor,
    bias: Tensor,
    act: Act,
}

impl Pointwise {
    fn new(
        vb: &VarBuilder,
        name: &str,
        cin: usize,
        cout: usize,
        act: Act,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((cin, cout), &format!("{name}.weight"))?,
            bias: vb.get(cout, &format!("{name}.bias"))?,
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let y = x
            .reshape((b * h * w, c))?
            .matmul(&self.weight)?
            .broadcast_add(&self.bias)?;
        self.act.apply(&y)?.reshape((b, h, w, self.bias.dim(0)?))
    }
}

/// One of the network's layers.
#[derive(Debug, Clone)]
enum Layer {
    Conv(DepthwiseBlock),
    Separable(DepthwiseBlock, Pointwise),
}

/// Scores and embeddings of a batch of patches.
#[derive(Debug, Clone)]
pub struct YamnetOutput {
    /// Class probabilities `[B, 521]` (sigmoid of the logits).
    pub scores: Tensor,
    /// Patch embeddings `[B, 1024]` (the pooled last feature map).
    pub embedding: Tensor,
}

/// The results of one patch, as plain vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOutput {
    /// Class probabilities (index = class id).
    pub scores: Vec<f32>,
    /// The 1024-d embedding.
    pub embedding: Vec<f32>,
}

/// YAMNet: see the module doc. Cloning shares the weights.
#[derive(Debug, Clone)]
pub struct Yamnet {
    layers: Vec<Layer>,
    logits_w: Tensor,
    logits_b: Tensor,
    cfg: YamnetConfig,
    device: Device,
}

impl Yamnet {
    /// Builds the model from tensors named as [`weight_names`] says (f32).
    pub fn new(vb: VarBuilder, cfg: YamnetConfig) -> Result<Self, YamnetError> {
        let weight_err = |tensor: String, e: candle_core::Error| YamnetError::Weight {
            origin: "VarBuilder".into(),
            tensor,
            reason: e.to_string(),
        };
        let mut layers = Vec::with_capacity(LAYERS.len());
        let mut c = 1;
        for (i, &(kind, stride, filters)) in LAYERS.iter().enumerate() {
            let n = i + 1;
            let layer = match kind {
                LayerKind::Conv => {
                    let name = format!("layer{n}.conv");
                    Layer::Conv(
                        DepthwiseBlock::new(
                            &vb,
                            &name,
                            [3, 3, c, filters / c],
                            stride,
                            cfg.activation,
                        )
                        .map_err(|e| weight_err(name, e))?,
                    )
                }
                LayerKind::Separable => {
                    let dw = format!("layer{n}.depthwise");
                    let pw = format!("layer{n}.pointwise");
                    Layer::Separable(
                        DepthwiseBlock::new(&vb, &dw, [3, 3, c, 1], stride, cfg.activation)
                            .map_err(|e| weight_err(dw, e))?,
                        Pointwise::new(&vb, &pw, c, filters, cfg.activation)
                            .map_err(|e| weight_err(pw, e))?,
                    )
                }
            };
            layers.push(layer);
            c = filters;
        }
        let logits_w = vb
            .get((EMBEDDING_DIM, cfg.num_classes), "logits.weight")
            .map_err(|e| weight_err("logits.weight".into(), e))?;
        let logits_b = vb
            .get(cfg.num_classes, "logits.bias")
            .map_err(|e| weight_err("logits.bias".into(), e))?;
        Ok(Self {
            layers,
            logits_w,
            logits_b,
            cfg,
            device: vb.device().clone(),
        })
    }

    /// Loads `yamnet.tflite` (see the module doc) onto `device`.
    pub fn from_tflite(path: &Path, device: &Device) -> Result<Self, YamnetError> {
        let model = TfliteModel::load(path)?;
        Self::from_tflite_model(&model, device)
    }

    /// Loads a `yamnet.tflite` held in memory; `origin` names it in errors.
    pub fn from_tflite_bytes(
        bytes: Vec<u8>,
        origin: &str,
        device: &Device,
    ) -> Result<Self, YamnetError> {
        let model = TfliteModel::from_bytes(bytes, origin)?;
        Self::from_tflite_model(&model, device)
    }

    /// Builds the model from a parsed TFLite graph.
    pub fn from_tflite_model(model: &TfliteModel, device: &Device) -> Result<Self, YamnetError> {
        let (tensors, cfg) = map_tflite(model, device)?;
        Self::new(VarBuilder::from_tensors(tensors, DType::F32, device), cfg)
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The settings.
    pub fn config(&self) -> YamnetConfig {
        self.cfg
    }

    /// Runs a batch of log-mel patches `[B, 96, 64]` (or `[B, 1, 96, 64]`, `[B, 96, 64, 1]`).
    pub fn forward(&self, log_mel: &Tensor) -> Result<YamnetOutput, YamnetError> {
        let dims = log_mel.dims();
        let b = match dims {
            [b, PATCH_FRAMES, MEL_BANDS] | [b, 1, PATCH_FRAMES, MEL_BANDS] | [b, PATCH_FRAMES, MEL_BANDS, 1] => *b,
            _ => {
                return Err(YamnetError::Input(format!(
                    "expected log-mel patches [B, {PATCH_FRAMES}, {MEL_BANDS}] (or with a unit channel axis), got {dims:?}"
                )))
            }
        };
        if b == 0 {
            return Err(YamnetError::Input("empty batch".into()));
        }
        let mut x = log_mel
            .to_dtype(DType::F32)?
            .to_device(&self.device)?
            .reshape((b, PATCH_FRAMES, MEL_BANDS, 1))?;
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(conv) => conv.forward(&x)?,
                Layer::Separable(dw, pw) => pw.forward(&dw.forward(&x)?)?,
            };
        }
        let embedding = x.mean((1, 2))?;
        let logits = embedding
            .matmul(&self.logits_w)?
            .broadcast_add(&self.logits_b)?;
        Ok(YamnetOutput {
            scores: candle_nn::ops::sigmoid(&logits)?,
            embedding,
        })
    }

    /// Runs patches given as one flat slice, `n × 96 × 64` values (frame-major), in one
    /// batch; returns one [`PatchOutput`] per patch.
    pub fn infer(&self, patches: &[f32]) -> Result<Vec<PatchOutput>, YamnetError> {
        let per = PATCH_FRAMES * MEL_BANDS;
        if patches.is_empty() || !patches.len().is_multiple_of(per) {
            return Err(YamnetError::Input(format!(
                "{} values is not a whole number of {PATCH_FRAMES}×{MEL_BANDS} patches",
                patches.len()
            )));
        }
        if let Some(i) = patches.iter().position(|v| !v.is_finite()) {
            return Err(YamnetError::Input(format!(
                "value {i} (patch {}, frame {}) is not finite",
                i / per,
                (i % per) / MEL_BANDS
            )));
        }
        let n = patches.len() / per;
        let x = Tensor::from_slice(patches, (n, PATCH_FRAMES, MEL_BANDS), &Device::Cpu)?;
        let out = self.forward(&x)?;
        let scores = out.scores.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        let emb = out.embedding.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        Ok(scores
            .into_iter()
            .zip(emb)
            .map(|(scores, embedding)| PatchOutput { scores, embedding })
            .collect())
    }
}

/// First frames of the patches upstream cuts from `frames` log-mel frames: 0, 48, 96, …
/// while a whole patch fits.
pub fn patch_starts(frames: usize) -> impl Iterator<Item = usize> {
    (0..)
        .map(|k| k * PATCH_HOP_FRAMES)
        .take_while(move |s| s + PATCH_FRAMES <= frames)
}

/// Reads `yamnet_class_map.csv` (`index,mid,display_name`, names may be quoted): the
/// display names, index = class id.
pub fn load_class_names(path: &Path) -> Result<Vec<String>, YamnetError> {
    let origin = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| YamnetError::ClassMap {
        path: origin.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    parse_class_names(&text, &origin)
}

/// Parses a class map's bytes (see [`load_class_names`]); `origin` names it in errors.
pub fn parse_class_names(bytes: &[u8], origin: &str) -> Result<Vec<String>, YamnetError> {
    let err = |reason: String| YamnetError::ClassMap {
        path: origin.to_string(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8: {e}")))?;
    let mut names = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if n == 0 {
            if !line.starts_with("index,mid,display_name") {
                return Err(err(format!(
                    "line 1: expected the header `index,mid,display_name`, got {line:?}"
                )));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let fields = split_csv(line).map_err(|e| err(format!("line {}: {e}", n + 1)))?;
        let [index, _mid, name] = fields.as_slice() else {
            return Err(err(format!(
                "line {}: expected 3 fields, got {}",
                n + 1,
                fields.len()
            )));
        };
        if index.parse::<usize>().ok() != Some(names.len()) {
            return Err(err(format!(
                "line {}: index {index:?}, expected {}",
                n + 1,
                names.len()
            )));
        }
        names.push(name.clone());
    }
    if names.len() != NUM_CLASSES {
        return Err(err(format!(
            "{} classes, expected {NUM_CLASSES}",
            names.len()
        )));
    }
    Ok(names)
}

/// Splits one CSV line (RFC 4180 quoting, `""` inside quotes).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Walks the TFLite graph (see the module doc) and returns the weights under the names of
/// [`weight_names`], in the layouts [`Yamnet::new`] expects.
fn map_tflite(
    model: &TfliteModel,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, YamnetConfig), YamnetError> {
    let origin = model.origin().to_string();
    let graph = |reason: String| YamnetError::Graph {
        origin: origin.clone(),
        reason,
    };
    let tensor_name = |i: usize| model.tensors.get(i).map_or("?", |t| t.name.as_str());
    let input = |op: usize, k: usize| -> Result<usize, YamnetError> {
        model.operators[op]
            .inputs
            .get(k)
            .and_then(|&v| usize::try_from(v).ok())
            .ok_or_else(|| {
                graph(format!(
                    "operator {op} ({:?}) has no input {k}",
                    model.operators[op].op
                ))
            })
    };
    let shape = |i: usize| {
        model
            .tensors
            .get(i)
            .map(|t| t.shape.clone())
            .unwrap_or_default()
    };

    // Scores: a subgraph output written by LOGISTIC.
    let (logistic, scores_t) = model
        .outputs
        .iter()
        .find_map(|&o| {
            let p = model.producer(o)?;
            (model.operators[p].op == BuiltinOp::Logistic).then_some((p, o))
        })
        .ok_or_else(|| {
            graph("no subgraph output is written by a LOGISTIC op (the scores)".into())
        })?;
    let num_classes = *shape(scores_t).last().ok_or_else(|| {
        graph(format!(
            "scores tensor `{}` has no shape",
            tensor_name(scores_t)
        ))
    })?;
    let fc_out = input(logistic, 0)?;
    let fc = model
        .producer(fc_out)
        .filter(|&p| model.operators[p].op == BuiltinOp::FullyConnected)
        .ok_or_else(|| {
            graph(format!(
                "the LOGISTIC's input `{}` is not written by FULLY_CONNECTED",
                tensor_name(fc_out)
            ))
        })?;
    if let Options::FullyConnected { activation, .. } = model.operators[fc].options {
        if activation != Activation::None {
            return Err(graph(format!(
                "classifier FULLY_CONNECTED (op {fc}) has a fused {activation:?}"
            )));
        }
    }
    let (fc_w, fc_b) = (input(fc, 1)?, input(fc, 2)?);
    if shape(fc_w) != [num_classes, EMBEDDING_DIM] || shape(fc_b) != [num_classes] {
        return Err(graph(format!(
            "classifier weights `{}` {:?} / bias `{}` {:?}, expected [{num_classes}, {EMBEDDING_DIM}] / [{num_classes}]",
            tensor_name(fc_w),
            shape(fc_w),
            tensor_name(fc_b),
            shape(fc_b)
        )));
    }
    let pooled = input(fc, 0)?;
    let mean = model
        .producer(pooled)
        .filter(|&p| model.operators[p].op == BuiltinOp::Mean)
        .ok_or_else(|| {
            graph(format!(
                "the classifier's input `{}` is not written by MEAN (global average pooling)",
                tensor_name(pooled)
            ))
        })?;
    let axes = model.tensor_i64(input(mean, 1)?)?;
    if axes != [1, 2] {
        return Err(graph(format!(
            "MEAN (op {mean}) over axes {axes:?}, expected [1, 2]"
        )));
    }

    // The convolution chain, backwards from the pooled feature map.
    let mut chain = Vec::new();
    let mut t = input(mean, 0)?;
    while let Some(p) = model.producer(t) {
        match model.operators[p].op {
            BuiltinOp::Conv2d | BuiltinOp::DepthwiseConv2d => {
                chain.push(p);
                t = input(p, 0)?;
            }
            _ => break,
        }
    }
    chain.reverse();
    let expected_ops: usize = LAYERS
        .iter()
        .map(|l| if l.0 == LayerKind::Conv { 1 } else { 2 })
        .sum();
    if chain.len() != expected_ops {
        return Err(graph(format!(
            "{} convolutions feed the pooling, expected {expected_ops} (upstream's 14 layers)",
            chain.len()
        )));
    }
    let input_shape = shape(t);
    if input_shape != [1, PATCH_FRAMES, MEL_BANDS, 1] {
        return Err(graph(format!(
            "the first convolution reads `{}` {input_shape:?}, expected [1, {PATCH_FRAMES}, {MEL_BANDS}, 1]",
            tensor_name(t)
        )));
    }

    let mut act: Option<Activation> = None;
    let mut check = |op: usize,
                     want: BuiltinOp,
                     stride: usize,
                     layer: usize|
     -> Result<(), YamnetError> {
        let o = &model.operators[op];
        let (padding, st, dil, a, mult) = match (&o.op, &o.options) {
            (
                BuiltinOp::Conv2d,
                Options::Conv2d {
                    padding,
                    stride,
                    dilation,
                    activation,
                },
            ) => (*padding, *stride, *dilation, *activation, 1),
            (
                BuiltinOp::DepthwiseConv2d,
                Options::DepthwiseConv2d {
                    padding,
                    stride,
                    dilation,
                    depth_multiplier,
                    activation,
                },
            ) => (*padding, *stride, *dilation, *activation, *depth_multiplier),
            _ => (Padding::Valid, (0, 0), (0, 0), Activation::None, 0),
        };
        if o.op != want
            || padding != Padding::Same
            || st != (stride, stride)
            || dil != (1, 1)
            || mult != 1
        {
            return Err(graph(format!(
                "layer {layer}: op {op} is {:?} ({:?}), expected {want:?} stride {stride} SAME, dilation 1, multiplier 1",
                o.op, o.options
            )));
        }
        match act {
            None => act = Some(a),
            Some(prev) if prev != a => {
                return Err(graph(format!(
                    "layer {layer}: op {op} fuses {a:?}, earlier layers {prev:?}"
                )))
            }
            _ => {}
        }
        Ok(())
    };

    let mut out = HashMap::new();
    let mut put = |name: String, v: Tensor| {
        out.insert(name, v);
    };
    let weight = |op: usize, k: usize, want: &[usize]| -> Result<Tensor, YamnetError> {
        let ti = input(op, k)?;
        if shape(ti) != want {
            return Err(graph(format!(
                "op {op} ({:?}) input {k} `{}` has shape {:?}, expected {want:?}",
                model.operators[op].op,
                tensor_name(ti),
                shape(ti)
            )));
        }
        Ok(model.to_candle(ti, device)?)
    };
    let mut ops = chain.into_iter();
    let mut c = 1;
    for (i, &(kind, stride, filters)) in LAYERS.iter().enumerate() {
        let n = i + 1;
        let next = |ops: &mut std::vec::IntoIter<usize>| {
            ops.next()
                .ok_or_else(|| graph(format!("layer {n}: missing op")))
        };
        match kind {
            LayerKind::Conv => {
                let op = next(&mut ops)?;
                check(op, BuiltinOp::Conv2d, stride, n)?;
                // TFLite CONV_2D filters are [out, kh, kw, in]; here [kh, kw, in, out].
                let w = weight(op, 1, &[filters, 3, 3, c])?
                    .permute((1, 2, 3, 0))?
                    .contiguous()?;
                put(format!("layer{n}.conv.weight"), w);
                put(format!("layer{n}.conv.bias"), weight(op, 2, &[filters])?);
            }
            LayerKind::Separable => {
                let op = next(&mut ops)?;
                check(op, BuiltinOp::DepthwiseConv2d, stride, n)?;
                // DEPTHWISE_CONV_2D filters are [1, kh, kw, C]: the same bytes as [kh, kw, C, 1].
                let w = weight(op, 1, &[1, 3, 3, c])?.reshape((3, 3, c, 1))?;
                put(format!("layer{n}.depthwise.weight"), w);
                put(format!("layer{n}.depthwise.bias"), weight(op, 2, &[c])?);
                let op = next(&mut ops)?;
                check(op, BuiltinOp::Conv2d, 1, n)?;
                // 1×1 CONV_2D filters [out, 1, 1, in] → [in, out] for x · W.
                let w = weight(op, 1, &[filters, 1, 1, c])?
                    .reshape((filters, c))?
                    .t()?
                    .contiguous()?;
                put(format!("layer{n}.pointwise.weight"), w);
                put(
                    format!("layer{n}.pointwise.bias"),
                    weight(op, 2, &[filters])?,
                );
            }
        }
        c = filters;
    }
    put(
        "logits.weight".into(),
        weight(fc, 1, &[num_classes, EMBEDDING_DIM])?
            .t()?
            .contiguous()?,
    );
    put("logits.bias".into(), weight(fc, 2, &[num_classes])?);
    let activation = match act {
        Some(Activation::Relu) => Act::Relu,
        Some(Activation::Relu6) => Act::Relu6,
        other => {
            return Err(graph(format!(
                "the convolutions fuse {other:?}, expected RELU or RELU6"
            )))
        }
    };
    Ok((
        out,
        YamnetConfig {
            activation,
            num_classes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_starts_follow_upstream() {
        assert_eq!(patch_starts(95).count(), 0);
        assert_eq!(patch_starts(96).collect::<Vec<_>>(), vec![0]);
        assert_eq!(patch_starts(144).collect::<Vec<_>>(), vec![0, 48]);
        assert_eq!(patch_starts(191).collect::<Vec<_>>(), vec![0, 48]);
        // 15600 samples → 96 frames; every 7680 more samples → 48 more frames.
        assert_eq!((PATCH_SAMPLES - 400) / 160 + 1, PATCH_FRAMES);
        assert_eq!(PATCH_HOP_SAMPLES / 160, PATCH_HOP_FRAMES);
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            split_csv(r#"1,/m/0ytgt,"Child speech, kid speaking""#).unwrap(),
            vec!["1", "/m/0ytgt", "Child speech, kid speaking"]
        );
        assert_eq!(
            split_csv(r#"a,"b ""c""",d"#).unwrap(),
            vec!["a", r#"b "c""#, "d"]
        );
        assert!(split_csv(r#"a,"b"#).is_err());
    }

    /// Random weights of the right shapes: the forward runs, shapes and ranges are right,
    /// and patches in one batch give what they give alone.
    #[test]
    fn forward_shapes_and_batch_independence() {
        let dev = Device::Cpu;
        let mut map = HashMap::new();
        for (k, (name, shape)) in weight_names(NUM_CLASSES).into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let fan_in = if name.ends_with(".bias") {
                1
            } else {
                n / shape[shape.len() - 1]
            };
            let scale = (2.0 / fan_in as f32).sqrt();
            let v: Vec<f32> = (0..n)
                .map(|i| (((i * 7919 + k * 104_729) % 1000) as f32 / 1000.0 - 0.5) * scale)
                .collect();
            map.insert(name, Tensor::from_vec(v, shape, &dev).unwrap());
        }
        let model = Yamnet::new(
            VarBuilder::from_tensors(map, DType::F32, &dev),
            YamnetConfig::default(),
        )
        .unwrap();
        let patch = |s: usize| -> Vec<f32> {
            (0..PATCH_FRAMES * MEL_BANDS)
                .map(|i| (((i * 31 + s * 17) % 97) as f32 / 97.0) * 4.0 - 6.0)
                .collect()
        };
        let (a, b) = (patch(1), patch(2));
        let both = model.infer(&[a.clone(), b.clone()].concat()).unwrap();
        let alone = model.infer(&b).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].scores.len(), NUM_CLASSES);
        assert_eq!(both[0].embedding.len(), EMBEDDING_DIM);
        assert!(both[0].scores.iter().all(|s| (0.0..=1.0).contains(s)));
        let d = both[1]
            .scores
            .iter()
            .zip(&alone[0].scores)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "{d}");
        assert!(model.infer(&a[..100]).is_err());
        let mut nan = a.clone();
        nan[5] = f32::NAN;
        assert!(model.infer(&nan).is_err());
        let bad = Tensor::zeros((1, 95, 64), DType::F32, &dev).unwrap();
        assert!(model.forward(&bad).is_err());
    }
}
