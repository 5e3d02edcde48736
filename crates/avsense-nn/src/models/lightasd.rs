//! Light-ASD (Liao et al., "A Light Weight Model for Active Speaker Detection", CVPR 2023;
//! github.com/Junhua-Liao/Light-ASD, MIT) on candle: a speaking score per face per video
//! frame from the face's crops and the audio's MFCC.
//!
//! # Input contract (the model's, as its code defines it)
//! * **Visual**: grayscale face crops 112×112 at **25 fps**, raw 0–255, `[B, T, 112, 112]`;
//!   normalised inside as `(x / 255 − 0.4161) / 0.1688`.
//! * **Audio**: 13 MFCC per 10 ms (25 ms windows; python_speech_features' recipe, see
//!   [`crate::dsp::mfcc`]), **4 MFCC frames per video frame**, `[B, 4T, 13]`.
//! * **Output**: per frame, the class-1 output of the audio-visual head (`lossAV.FC`): a
//!   logit, ≥ 0 means speaking. The visual-only head (`lossV.FC`, trained beside it as an
//!   auxiliary loss) is available too ([`LightAsd::visual_scores`]).
//!
//! # Architecture (layer order and shapes from the upstream code; BatchNorm eps 0.001)
//! * Visual encoder, three blocks on `[B, C, T, H, W]`: each block is two branches, a
//!   `(1,3,3)` spatial conv → BN → ReLU → `(3,1,1)` temporal conv → BN → ReLU, and the same
//!   with `(1,5,5)` / `(5,1,1)`; the branches are summed, then a `1×1×1` conv → BN → ReLU.
//!   Block 1 (1 → 32 channels) has spatial stride 2 (112 → 56), then a 3×3/2 max pool
//!   (→ 28); block 2 (32 → 64), pool (→ 14); block 3 (64 → 128); a global max over the
//!   14×14 positions gives 128 per frame.
//! * Audio encoder, three blocks on `[B, 1, 13, 4T]` (MFCC × time): the same two-branch
//!   shape with `(3,1)` / `(5,1)` convs along the MFCC axis then `(1,3)` / `(1,5)` along
//!   time; a max pool of 3, stride 2 along time after blocks 1 and 2 (4T → 2T → T); the mean
//!   over the MFCC axis gives 128 per video frame.
//! * Back end: `x = audio + visual`; a forward GRU (128), GELU, the sequence reversed
//!   through a second GRU (128) and reversed back, GELU (upstream's "BGRU": the backward
//!   GRU reads the forward GRU's output, it is not a standard bidirectional layer); the
//!   linear head `128 → 2`.
//!
//! # Implementation
//! No 3-D convolution exists in candle 0.11; none is needed: every kernel here is either
//! purely spatial (`(1,k,k)`: a 2-D convolution over the `B·T` frames) or purely temporal
//! (`(k,1,1)`: [`ops::temporal_conv`], a sum of per-tap matrix products over the frame
//! axis). So the visual data stays frame-major, `[B, T, C, H, W]`, and no transposes are
//! made between the two. BatchNorm is folded into each convolution's weights and bias at
//! load. On the CPU the spatial convolutions use [`ops::conv2d_cpu`] (candle's CPU
//! `conv2d` builds its im2col matrix element by element); elsewhere candle's `conv2d`. The
//! max pools follow ReLUs, so zero padding is the same as PyTorch's −∞ padding.
//!
//! # Streaming
//! The front ends only mix time through their temporal kernels: a visual embedding at
//! frame `t` depends on the crops of `t ± 6` ([`VISUAL_CONTEXT`]), an audio embedding on
//! MFCC frames `4t − 17 … 4t + 20` ([`AUDIO_CONTEXT`] video frames either side). Computed on
//! a stretch padded with that much real context they equal the embeddings of one pass over
//! the whole sequence (a unit test checks it), so a stream can compute each frame's
//! embeddings once and run only the cheap GRU back end over the chunks it scores.
//!
//! # Weights
//! `pretrain_AVA_CVPR.model` (AVA-ActiveSpeaker) and `finetuning_TalkSet.model` (TalkSet),
//! PyTorch zip state dicts of 192 tensors, read with candle's pickle reader; every tensor
//! is checked for presence and shape ([`LightAsd::load`] names the file and the tensor).
//! Parity with the upstream PyTorch model: `tests/parity_lightasd.rs`.

use crate::ops;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};

/// Face crop side, pixels.
pub const CROP: usize = 112;
/// Video frame rate the model was trained at.
pub const FPS: f64 = 25.0;
/// MFCC coefficients per audio frame.
pub const MFCC_DIM: usize = 13;
/// MFCC frames (10 ms) per video frame (40 ms).
pub const MFCC_PER_FRAME: usize = 4;
/// Width of the embeddings and of the GRU state.
pub const EMBED: usize = 128;
/// Video frames of context either side that make a visual embedding exact (3 blocks, each
/// with a 5-tap temporal kernel: ±2 frames per block).
pub const VISUAL_CONTEXT: usize = 6;
/// Video frames of context either side that make an audio embedding exact (±17 MFCC frames,
/// rounded up to whole video frames so that the pools keep their phase).
pub const AUDIO_CONTEXT: usize = 5;

/// Input normalisation (inside the upstream model).
const MEAN: f64 = 0.4161;
const STD: f64 = 0.1688;
const BN_EPS: f64 = 0.001;

/// Errors of the Light-ASD model; messages name the file, the tensor or the input.
#[derive(Debug, thiserror::Error)]
pub enum LightAsdError {
    /// The weights file cannot be read or lacks a tensor of the expected shape.
    #[error("light-asd weights {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why (names the tensor).
        reason: String,
    },
    /// The input does not have the expected shape.
    #[error("light-asd: bad input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error("light-asd {stage}")]
    Tensor {
        /// Where.
        stage: &'static str,
        /// candle's error.
        source: candle_core::Error,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, LightAsdError>;

fn at(stage: &'static str) -> impl Fn(candle_core::Error) -> LightAsdError {
    move |source| LightAsdError::Tensor { stage, source }
}

/// BatchNorm's inference affine `(scale, shift)` read from `vb` (`weight`, `bias`,
/// `running_mean`, `running_var`).
fn batch_norm(vb: &VarBuilder, c: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let gamma = vb.get(c, "weight")?;
    let beta = vb.get(c, "bias")?;
    let mean = vb.get(c, "running_mean")?;
    let var = vb.get(c, "running_var")?;
    let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
    let shift = (beta - (mean * &scale)?)?;
    Ok((scale, shift))
}

/// A 2-D convolution (no bias upstream) with the BatchNorm after it folded in.
#[derive(Debug, Clone)]
struct SpatialConv {
    /// `[CO, CI, KH, KW]`, scaled by BN.
    w: Tensor,
    /// `[1, CO, 1, 1]`: BN's shift.
    b: Tensor,
    /// Zero padding (rows, columns).
    pad: (usize, usize),
    stride: usize,
    /// On the CPU: the filter as `[KH, KW, CI, CO]` and the bias, for the channels-last
    /// path ([`ops::conv2d_nhwc_cpu`] with bias and ReLU fused).
    cpu: Option<(Tensor, Vec<f32>)>,
}

/// `v + bias[c]`, then ReLU, over whole pixels of `bias.len()` channels.
fn bias_relu(block: &mut [f32], bias: &[f32]) {
    for px in block.chunks_exact_mut(bias.len().max(1)) {
        for (v, b) in px.iter_mut().zip(bias) {
            *v = (*v + b).max(0.0);
        }
    }
}

/// The channels-last form of an `[CO, CI, KH, KW]` filter and its `[1, CO, 1, 1]` or
/// `[CO, 1]` bias, when the weights live on the CPU.
fn cpu_form(w: &Tensor, b: &Tensor) -> candle_core::Result<Option<(Tensor, Vec<f32>)>> {
    if !matches!(w.device(), Device::Cpu) {
        return Ok(None);
    }
    let tf = w.permute((2, 3, 1, 0))?.contiguous()?;
    Ok(Some((tf, b.flatten_all()?.to_vec1::<f32>()?)))
}

impl SpatialConv {
    /// `conv` is the convolution's prefix, `bn` its BatchNorm's; `shape` the upstream
    /// weight shape, whose kernel dimensions are `kdims` (the others are 1).
    fn new(
        vb: &VarBuilder,
        conv: &str,
        bn: &str,
        shape: &[usize],
        kernel: (usize, usize),
        pad: (usize, usize),
        stride: usize,
    ) -> candle_core::Result<Self> {
        let (co, ci) = (shape[0], shape[1]);
        let w = vb
            .pp(conv)
            .get(shape, "weight")?
            .reshape((co, ci, kernel.0, kernel.1))?;
        let (scale, shift) = batch_norm(&vb.pp(bn), co)?;
        let w = w.broadcast_mul(&scale.reshape((co, 1, 1, 1))?)?;
        let b = shift.reshape((1, co, 1, 1))?;
        Ok(Self {
            cpu: cpu_form(&w, &b)?,
            w,
            b,
            pad,
            stride,
        })
    }

    /// Channels-last on the CPU: `[N, H, W, CI]` → ReLU(BN(conv)) `[N, OH, OW, CO]`.
    fn forward_nhwc(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let Some((w, bias)) = &self.cpu else {
            candle_core::bail!("light-asd: channels-last path without CPU weights");
        };
        let (ph, pw) = self.pad;
        let s = self.stride;
        ops::conv2d_nhwc_cpu(x, w, [ph, ph, pw, pw], (s, s), (1, 1), &|blk| {
            bias_relu(blk, bias)
        })
    }

    /// `[N, CI, H, W]` → ReLU(BN(conv)) `[N, CO, OH, OW]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (ph, pw) = self.pad;
        let y = if matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 {
            if ph == pw {
                ops::conv2d_cpu(x, &self.w, ph, self.stride, 1)?
            } else {
                let xp = x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?;
                ops::conv2d_cpu(&xp, &self.w, 0, self.stride, 1)?
            }
        } else if ph == pw {
            x.conv2d(&self.w, ph, self.stride, 1, 1)?
        } else {
            let xp = x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?;
            xp.conv2d(&self.w, 0, self.stride, 1, 1)?
        };
        y.broadcast_add(&self.b)?.relu()
    }
}

/// A `(K,1,1)` convolution over frames with its BatchNorm folded in (ReLU after).
#[derive(Debug, Clone)]
struct TemporalConv {
    /// `[K, CO, CI]`.
    w: Tensor,
    /// `[CO]`.
    b: Tensor,
    pad: usize,
    /// `[K, CI, CO]` for the channels-last path.
    w_t: Tensor,
}

impl TemporalConv {
    fn new(vb: &VarBuilder, conv: &str, bn: &str, c: usize, k: usize) -> candle_core::Result<Self> {
        let w = vb
            .pp(conv)
            .get((c, c, k, 1, 1), "weight")?
            .reshape((c, c, k))?;
        let (scale, shift) = batch_norm(&vb.pp(bn), c)?;
        let w = w
            .broadcast_mul(&scale.reshape((c, 1, 1))?)?
            .permute((2, 0, 1))?
            .contiguous()?;
        let w_t = w.permute((0, 2, 1))?.contiguous()?;
        Ok(Self {
            w,
            b: shift,
            pad: k / 2,
            w_t,
        })
    }

    /// `[B, T, C, S]` → `[B, T, C, S]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::temporal_conv(x, &self.w, &self.b, self.pad, true)
    }
}

/// A 1×1 convolution with BatchNorm folded in (ReLU after), as a matrix product.
#[derive(Debug, Clone)]
struct Pointwise {
    /// `[CO, CI]`.
    w: Tensor,
    /// `[CO, 1]`.
    b: Tensor,
    /// On the CPU: `[1, 1, CI, CO]` and the bias, for the channels-last path.
    cpu: Option<(Tensor, Vec<f32>)>,
}

impl Pointwise {
    fn new(vb: &VarBuilder, shape: &[usize]) -> candle_core::Result<Self> {
        let c = shape[0];
        let w = vb.pp("last").get(shape, "weight")?.reshape((c, shape[1]))?;
        let (scale, shift) = batch_norm(&vb.pp("bn_last"), c)?;
        let w = w.broadcast_mul(&scale.reshape((c, 1))?)?;
        let b = shift.reshape((c, 1))?;
        let (co, ci) = w.dims2()?;
        Ok(Self {
            cpu: cpu_form(&w.reshape((co, ci, 1, 1))?, &b)?,
            w,
            b,
        })
    }

    /// Channels-last on the CPU: `[N, H, W, CI]` → `[N, H, W, CO]`.
    fn forward_nhwc(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let Some((w, bias)) = &self.cpu else {
            candle_core::bail!("light-asd: channels-last path without CPU weights");
        };
        ops::conv2d_nhwc_cpu(x, w, [0; 4], (1, 1), (1, 1), &|blk| bias_relu(blk, bias))
    }

    /// `[N, CI, S]` → `[N, CO, S]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.w.broadcast_matmul(x)?.broadcast_add(&self.b)?.relu()
    }
}

/// One visual block: spatial (3×3 and 5×5) then temporal (3 and 5) branches, summed, 1×1.
#[derive(Debug, Clone)]
struct VisualBlock {
    s3: SpatialConv,
    t3: TemporalConv,
    s5: SpatialConv,
    t5: TemporalConv,
    last: Pointwise,
}

impl VisualBlock {
    fn new(vb: VarBuilder, ci: usize, co: usize, stride: usize) -> candle_core::Result<Self> {
        Ok(Self {
            s3: SpatialConv::new(
                &vb,
                "s_3",
                "bn_s_3",
                &[co, ci, 1, 3, 3],
                (3, 3),
                (1, 1),
                stride,
            )?,
            t3: TemporalConv::new(&vb, "t_3", "bn_t_3", co, 3)?,
            s5: SpatialConv::new(
                &vb,
                "s_5",
                "bn_s_5",
                &[co, ci, 1, 5, 5],
                (5, 5),
                (2, 2),
                stride,
            )?,
            t5: TemporalConv::new(&vb, "t_5", "bn_t_5", co, 5)?,
            last: Pointwise::new(&vb, &[co, co, 1, 1, 1])?,
        })
    }

    /// `[B, T, CI, H, W]` → `[B, T, CO, OH, OW]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let frames = x.reshape((b * t, c, h, w))?;
        let mut size = (0, 0);
        let mut branch = |s: &SpatialConv, tc: &TemporalConv| -> candle_core::Result<Tensor> {
            let y = s.forward(&frames)?;
            let (_, co, oh, ow) = y.dims4()?;
            size = (oh, ow);
            tc.forward(&y.reshape((b, t, co, oh * ow))?)
        };
        let sum = (branch(&self.s3, &self.t3)? + branch(&self.s5, &self.t5)?)?;
        let (_, _, co, s) = sum.dims4()?;
        self.last
            .forward(&sum.reshape((b * t, co, s))?)?
            .reshape((b, t, co, size.0, size.1))
    }
}

impl VisualBlock {
    /// Channels-last on the CPU: `[B, T, H, W, CI]` → `[B, T, OH, OW, CO]`.
    fn forward_nhwc(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h, w, c) = x.dims5()?;
        let frames = x.reshape((b * t, h, w, c))?;
        let y3 = self.s3.forward_nhwc(&frames)?;
        let y5 = self.s5.forward_nhwc(&frames)?;
        let (_, oh, ow, co) = y3.dims4()?;
        let (y3, y5) = (
            y3.reshape((b, t, oh * ow, co))?,
            y5.reshape((b, t, oh * ow, co))?,
        );
        let sum = ops::temporal_conv_sum_nhwc(&[
            ops::TemporalBranch {
                x: &y3,
                w: &self.t3.w_t,
                bias: &self.t3.b,
                pad: self.t3.pad,
            },
            ops::TemporalBranch {
                x: &y5,
                w: &self.t5.w_t,
                bias: &self.t5.b,
                pad: self.t5.pad,
            },
        ])?;
        self.last
            .forward_nhwc(&sum.reshape((b * t, oh, ow, co))?)?
            .reshape((b, t, oh, ow, co))
    }
}

/// The channels-last max pool (3×3, stride 2, padding 1) per frame.
fn pool_frames_nhwc(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t, h, w, c) = x.dims5()?;
    let y = ops::max_pool2d_nhwc_cpu(
        &x.reshape((b * t, h, w, c))?,
        (3, 3),
        (2, 2),
        [1, 1, 1, 1],
        f32::NEG_INFINITY,
    )?;
    let (_, oh, ow, _) = y.dims4()?;
    y.reshape((b, t, oh, ow, c))
}

/// 3×3 max pool, stride 2, padding 1, per frame: `[B, T, C, H, W]` → `[B, T, C, ⌈H/2⌉, ⌈W/2⌉]`.
/// The input follows a ReLU (≥ 0), so zero padding equals PyTorch's −∞ padding.
fn pool_frames(x: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t, c, h, w) = x.dims5()?;
    let y = x
        .reshape((b * t, c, h, w))?
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 2)?;
    let (_, _, oh, ow) = y.dims4()?;
    y.reshape((b, t, c, oh, ow))
}

/// The visual front end: crops `[B, T, 112, 112]` (0–255) → `[B, T, 128]`.
#[derive(Debug, Clone)]
pub struct VisualEncoder {
    block1: VisualBlock,
    block2: VisualBlock,
    block3: VisualBlock,
}

impl VisualEncoder {
    /// From `model.visualEncoder.*`.
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            block1: VisualBlock::new(vb.pp("block1"), 1, 32, 2)?,
            block2: VisualBlock::new(vb.pp("block2"), 32, 64, 1)?,
            block3: VisualBlock::new(vb.pp("block3"), 64, 128, 1)?,
        })
    }
}

impl Module for VisualEncoder {
    fn forward(&self, crops: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h, w) = crops.dims4()?;
        if h != CROP || w != CROP {
            candle_core::bail!("visual encoder: crops {h}×{w}, expected {CROP}×{CROP}");
        }
        let x = ((crops.to_dtype(DType::F32)? / 255.0)? - MEAN)? / STD;
        let x = x?;
        // On the CPU the frames stay channels-last throughout (no transposes; bias, ReLU and
        // the branch sums fused into the convolutions).
        if matches!(x.device(), Device::Cpu) && self.block1.s3.cpu.is_some() {
            let x = x.reshape((b, t, h, w, 1))?;
            let x = pool_frames_nhwc(&self.block1.forward_nhwc(&x)?)?;
            let x = pool_frames_nhwc(&self.block2.forward_nhwc(&x)?)?;
            let x = self.block3.forward_nhwc(&x)?;
            let (_, _, oh, ow, c) = x.dims5()?;
            return x.reshape((b, t, oh * ow, c))?.max(2);
        }
        let x = x.reshape((b, t, 1, h, w))?;
        let x = pool_frames(&self.block1.forward(&x)?)?;
        let x = pool_frames(&self.block2.forward(&x)?)?;
        let x = self.block3.forward(&x)?;
        x.flatten_from(3)?.max(D::Minus1)
    }
}

/// One audio block on `[B, C, 13, W]`: `(3,1)`/`(5,1)` along MFCC then `(1,3)`/`(1,5)`
/// along time, summed, 1×1.
#[derive(Debug, Clone)]
struct AudioBlock {
    m3: SpatialConv,
    t3: SpatialConv,
    m5: SpatialConv,
    t5: SpatialConv,
    last: Pointwise,
}

impl AudioBlock {
    fn new(vb: VarBuilder, ci: usize, co: usize) -> candle_core::Result<Self> {
        Ok(Self {
            m3: SpatialConv::new(&vb, "m_3", "bn_m_3", &[co, ci, 3, 1], (3, 1), (1, 0), 1)?,
            t3: SpatialConv::new(&vb, "t_3", "bn_t_3", &[co, co, 1, 3], (1, 3), (0, 1), 1)?,
            m5: SpatialConv::new(&vb, "m_5", "bn_m_5", &[co, ci, 5, 1], (5, 1), (2, 0), 1)?,
            t5: SpatialConv::new(&vb, "t_5", "bn_t_5", &[co, co, 1, 5], (1, 5), (0, 2), 1)?,
            last: Pointwise::new(&vb, &[co, co, 1, 1])?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let a = self.t3.forward(&self.m3.forward(x)?)?;
        let b = self.t5.forward(&self.m5.forward(x)?)?;
        let sum = (a + b)?;
        let (n, c, h, w) = sum.dims4()?;
        self.last
            .forward(&sum.reshape((n, c, h * w))?)?
            .reshape((n, c, h, w))
    }
}

/// Max pool of 3, stride 2, padding 1 along the last (time) axis; input ≥ 0 (after ReLU).
fn pool_time(x: &Tensor) -> candle_core::Result<Tensor> {
    x.pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride((1, 3), (1, 2))
}

/// The audio front end: MFCC `[B, 4T, 13]` → `[B, T, 128]`.
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    block1: AudioBlock,
    block2: AudioBlock,
    block3: AudioBlock,
}

impl AudioEncoder {
    /// From `model.audioEncoder.*`.
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            block1: AudioBlock::new(vb.pp("block1"), 1, 32)?,
            block2: AudioBlock::new(vb.pp("block2"), 32, 64)?,
            block3: AudioBlock::new(vb.pp("block3"), 64, 128)?,
        })
    }
}

impl Module for AudioEncoder {
    fn forward(&self, mfcc: &Tensor) -> candle_core::Result<Tensor> {
        let (_, frames, dim) = mfcc.dims3()?;
        if dim != MFCC_DIM || frames % MFCC_PER_FRAME != 0 {
            candle_core::bail!("audio encoder: MFCC [{frames}, {dim}], expected [4·T, {MFCC_DIM}]");
        }
        // [B, 4T, 13] → [B, 1, 13, 4T]: MFCC along rows, time along columns.
        let x = mfcc
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .transpose(2, 3)?
            .contiguous()?;
        let x = pool_time(&self.block1.forward(&x)?)?;
        let x = pool_time(&self.block2.forward(&x)?)?;
        let x = self.block3.forward(&x)?;
        // Mean over the MFCC axis → [B, 128, T] → [B, T, 128].
        x.mean(2)?.transpose(1, 2)?.contiguous()
    }
}

/// A single-layer GRU with PyTorch's gate order (`r`, `z`, `n`) and equations:
/// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
#[derive(Debug, Clone)]
struct Gru {
    /// `[128, 384]` (transposed for `x · W`).
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

impl Gru {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            w_ih: vb
                .get((3 * EMBED, EMBED), "weight_ih_l0")?
                .t()?
                .contiguous()?,
            w_hh: vb
                .get((3 * EMBED, EMBED), "weight_hh_l0")?
                .t()?
                .contiguous()?,
            b_ih: vb.get(3 * EMBED, "bias_ih_l0")?,
            b_hh: vb.get(3 * EMBED, "bias_hh_l0")?,
        })
    }

    /// `[B, T, 128]` → the hidden states `[B, T, 128]` (initial state zero).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        // The input half for every step at once.
        let gi = x
            .reshape((b * t, EMBED))?
            .matmul(&self.w_ih)?
            .broadcast_add(&self.b_ih)?
            .reshape((b, t, 3 * EMBED))?;
        let mut h = Tensor::zeros((b, EMBED), DType::F32, x.device())?;
        let mut out = Vec::with_capacity(t);
        for step in 0..t {
            let gi_t = gi.narrow(1, step, 1)?.squeeze(1)?;
            let gh = h.matmul(&self.w_hh)?.broadcast_add(&self.b_hh)?;
            let r =
                candle_nn::ops::sigmoid(&(gi_t.narrow(1, 0, EMBED)? + gh.narrow(1, 0, EMBED)?)?)?;
            let z = candle_nn::ops::sigmoid(
                &(gi_t.narrow(1, EMBED, EMBED)? + gh.narrow(1, EMBED, EMBED)?)?,
            )?;
            let n = (gi_t.narrow(1, 2 * EMBED, EMBED)? + (r * gh.narrow(1, 2 * EMBED, EMBED)?)?)?
                .tanh()?;
            // h' = n + z ⊙ (h − n)
            h = (&n + (z * (&h - &n)?)?)?;
            out.push(h.clone());
        }
        Tensor::stack(&out, 1)
    }
}

/// Upstream's "BGRU": forward GRU, GELU, a second GRU over the reversed sequence, reversed
/// back, GELU.
#[derive(Debug, Clone)]
pub struct Backend {
    forward: Gru,
    backward: Gru,
}

/// `[B, T, C]` with the time axis reversed.
fn flip_time(x: &Tensor) -> candle_core::Result<Tensor> {
    let t = x.dim(1)?;
    let idx: Vec<u32> = (0..t as u32).rev().collect();
    let idx = Tensor::from_vec(idx, t, x.device())?;
    x.index_select(&idx, 1)
}

impl Backend {
    /// From `model.GRU.*`.
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            forward: Gru::new(vb.pp("gru_forward"))?,
            backward: Gru::new(vb.pp("gru_backward"))?,
        })
    }
}

impl Module for Backend {
    /// `audio + visual` `[B, T, 128]` → `[B, T, 128]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.forward.forward(x)?.gelu_erf()?;
        let y = self.backward.forward(&flip_time(&y)?)?;
        flip_time(&y)?.gelu_erf()
    }
}

/// The whole model: front ends, back end, and the two linear heads.
#[derive(Debug, Clone)]
pub struct LightAsd {
    visual: VisualEncoder,
    audio: AudioEncoder,
    backend: Backend,
    /// `lossAV.FC` class-1 row: `[128, 1]` and its bias.
    av_w: Tensor,
    av_b: Tensor,
    /// `lossV.FC` class-1 row.
    v_w: Tensor,
    v_b: Tensor,
    device: Device,
}

impl LightAsd {
    /// From a VarBuilder over the upstream state dict's names (`model.*`, `lossAV.*`,
    /// `lossV.*`).
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let head = |name: &str| -> candle_core::Result<(Tensor, Tensor)> {
            let fc = vb.pp(name).pp("FC");
            let w = fc.get((2, EMBED), "weight")?;
            let b = fc.get(2, "bias")?;
            Ok((w.get(1)?.reshape((EMBED, 1))?, b.narrow(0, 1, 1)?))
        };
        let (av_w, av_b) = head("lossAV")?;
        let (v_w, v_b) = head("lossV")?;
        let m = vb.pp("model");
        Ok(Self {
            visual: VisualEncoder::new(m.pp("visualEncoder"))?,
            audio: AudioEncoder::new(m.pp("audioEncoder"))?,
            backend: Backend::new(m.pp("GRU"))?,
            av_w,
            av_b,
            v_w,
            v_b,
            device: vb.device().clone(),
        })
    }

    /// Loads an upstream `.model` file (PyTorch zip state dict) onto `device`; every
    /// tensor is checked for presence and shape.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let load = |reason: String| LightAsdError::Load {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(load("not found (run `avsense models fetch`)".into()));
        }
        let file = std::fs::File::open(path).map_err(|e| load(e.to_string()))?;
        Self::read(std::io::BufReader::new(file), path, device)
    }

    /// [`Self::load`] from the `.model` file's bytes in memory; `origin` names them in
    /// errors.
    pub fn load_bytes(bytes: &[u8], origin: &Path, device: &Device) -> Result<Self> {
        Self::read(std::io::Cursor::new(bytes), origin, device)
    }

    fn read<R: std::io::Read + std::io::Seek>(
        reader: R,
        origin: &Path,
        device: &Device,
    ) -> Result<Self> {
        let load = |reason: String| LightAsdError::Load {
            path: origin.to_path_buf(),
            reason,
        };
        let mut map = crate::formats::torch::read_state_dict(reader, device)
            .map_err(|e| load(format!("not a readable PyTorch state dict: {e}")))?;
        map.retain(|k, _| !k.ends_with("num_batches_tracked"));
        let vb = VarBuilder::from_tensors(map, DType::F32, device);
        Self::new(vb).map_err(|e| load(e.to_string()))
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Visual embeddings: crops `[B, T, 112, 112]` (0–255) → `[B, T, 128]`.
    pub fn visual_embed(&self, crops: &Tensor) -> Result<Tensor> {
        self.visual.forward(crops).map_err(at("visual front end"))
    }

    /// Audio embeddings: MFCC `[B, 4T, 13]` → `[B, T, 128]`.
    pub fn audio_embed(&self, mfcc: &Tensor) -> Result<Tensor> {
        self.audio.forward(mfcc).map_err(at("audio front end"))
    }

    /// The GRU back end on `audio + visual` embeddings (`[B, T, 128]` each).
    pub fn backend(&self, audio: &Tensor, visual: &Tensor) -> Result<Tensor> {
        if audio.dims() != visual.dims() {
            return Err(LightAsdError::Input(format!(
                "audio embeddings {:?} and visual embeddings {:?} differ",
                audio.dims(),
                visual.dims()
            )));
        }
        (audio + visual)
            .and_then(|x| self.backend.forward(&x))
            .map_err(at("back end"))
    }

    /// Speaking logits `[B, T]` from back-end states `[B, T, 128]` (`lossAV.FC`, class 1).
    pub fn av_scores(&self, states: &Tensor) -> Result<Tensor> {
        head(states, &self.av_w, &self.av_b).map_err(at("audio-visual head"))
    }

    /// Visual-only speaking logits `[B, T]` from visual embeddings (`lossV.FC`, class 1).
    pub fn visual_scores(&self, visual: &Tensor) -> Result<Tensor> {
        head(visual, &self.v_w, &self.v_b).map_err(at("visual head"))
    }

    /// The whole model as upstream runs it on one chunk: MFCC `[B, 4T, 13]` and crops
    /// `[B, T, 112, 112]` → speaking logits `[B, T]`.
    pub fn forward(&self, mfcc: &Tensor, crops: &Tensor) -> Result<Tensor> {
        let (b, t, _, _) = crops
            .dims4()
            .map_err(|e| LightAsdError::Input(format!("crops: {e}")))?;
        let (ba, ta, _) = mfcc
            .dims3()
            .map_err(|e| LightAsdError::Input(format!("MFCC: {e}")))?;
        if ba != b || ta != MFCC_PER_FRAME * t {
            return Err(LightAsdError::Input(format!(
                "MFCC {:?} for crops {:?}: expected [{b}, {}, {MFCC_DIM}]",
                mfcc.dims(),
                crops.dims(),
                MFCC_PER_FRAME * t
            )));
        }
        let a = self.audio_embed(mfcc)?;
        let v = self.visual_embed(crops)?;
        let h = self.backend(&a, &v)?;
        self.av_scores(&h)
    }
}

/// `[B, T, 128] · [128, 1] + b` → `[B, T]`.
fn head(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (bt, t, c) = x.dims3()?;
    x.reshape((bt * t, c))?
        .matmul(w)?
        .broadcast_add(b)?
        .reshape((bt, t))
}

/// Synthetic weights and inputs for tests here and in crates that use Light-ASD (enabled by
/// the `testing` feature; never used by the pipeline).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use std::collections::HashMap;

    /// Deterministic pseudo-random weights of every upstream shape (no file needed).
    pub fn synthetic_vb() -> VarBuilder<'static> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        let mut seed = 1u64;
        let mut rnd = |shape: &[usize], scale: f32, offset: f32| -> Tensor {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = ((seed >> 33) as f32) / (1u64 << 31) as f32; // [0, 1)
                    offset + scale * (u - 0.5)
                })
                .collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        };
        let bn = |map: &mut HashMap<String, Tensor>,
                  p: &str,
                  c: usize,
                  rnd: &mut dyn FnMut(&[usize], f32, f32) -> Tensor| {
            map.insert(format!("{p}.weight"), rnd(&[c], 0.4, 1.0));
            map.insert(format!("{p}.bias"), rnd(&[c], 0.2, 0.0));
            map.insert(format!("{p}.running_mean"), rnd(&[c], 0.2, 0.0));
            map.insert(format!("{p}.running_var"), rnd(&[c], 0.5, 1.0));
        };
        for (b, ci, co) in [(1, 1, 32), (2, 32, 64), (3, 64, 128)] {
            let p = format!("model.visualEncoder.block{b}");
            for (k, name) in [(3, "3"), (5, "5")] {
                let fan = (ci * k * k) as f32;
                map.insert(
                    format!("{p}.s_{name}.weight"),
                    rnd(&[co, ci, 1, k, k], 2.0 / fan.sqrt(), 0.0),
                );
                bn(&mut map, &format!("{p}.bn_s_{name}"), co, &mut rnd);
                let fan = (co * k) as f32;
                map.insert(
                    format!("{p}.t_{name}.weight"),
                    rnd(&[co, co, k, 1, 1], 2.0 / fan.sqrt(), 0.0),
                );
                bn(&mut map, &format!("{p}.bn_t_{name}"), co, &mut rnd);
            }
            map.insert(
                format!("{p}.last.weight"),
                rnd(&[co, co, 1, 1, 1], 2.0 / (co as f32).sqrt(), 0.0),
            );
            bn(&mut map, &format!("{p}.bn_last"), co, &mut rnd);
            let p = format!("model.audioEncoder.block{b}");
            for (k, name) in [(3, "3"), (5, "5")] {
                let fan = (ci * k) as f32;
                map.insert(
                    format!("{p}.m_{name}.weight"),
                    rnd(&[co, ci, k, 1], 2.0 / fan.sqrt(), 0.0),
                );
                bn(&mut map, &format!("{p}.bn_m_{name}"), co, &mut rnd);
                let fan = (co * k) as f32;
                map.insert(
                    format!("{p}.t_{name}.weight"),
                    rnd(&[co, co, 1, k], 2.0 / fan.sqrt(), 0.0),
                );
                bn(&mut map, &format!("{p}.bn_t_{name}"), co, &mut rnd);
            }
            map.insert(
                format!("{p}.last.weight"),
                rnd(&[co, co, 1, 1], 2.0 / (co as f32).sqrt(), 0.0),
            );
            bn(&mut map, &format!("{p}.bn_last"), co, &mut rnd);
        }
        for g in ["gru_forward", "gru_backward"] {
            let p = format!("model.GRU.{g}");
            map.insert(format!("{p}.weight_ih_l0"), rnd(&[384, 128], 0.2, 0.0));
            map.insert(format!("{p}.weight_hh_l0"), rnd(&[384, 128], 0.2, 0.0));
            map.insert(format!("{p}.bias_ih_l0"), rnd(&[384], 0.2, 0.0));
            map.insert(format!("{p}.bias_hh_l0"), rnd(&[384], 0.2, 0.0));
        }
        for h in ["lossAV", "lossV"] {
            map.insert(format!("{h}.FC.weight"), rnd(&[2, 128], 0.3, 0.0));
            map.insert(format!("{h}.FC.bias"), rnd(&[2], 0.3, 0.0));
        }
        VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
    }

    pub fn crops(t: usize) -> Tensor {
        let v: Vec<f32> = (0..t * CROP * CROP)
            .map(|i| {
                let (f, p) = (i / (CROP * CROP), i % (CROP * CROP));
                let (y, x) = (p / CROP, p % CROP);
                (128.0
                    + 100.0 * ((x as f32 * 0.11 + f as f32 * 0.7).sin() * (y as f32 * 0.07).cos()))
                .round()
            })
            .collect();
        Tensor::from_vec(v, (1, t, CROP, CROP), &Device::Cpu).unwrap()
    }

    pub fn mfcc(t: usize) -> Tensor {
        let v: Vec<f32> = (0..t * MFCC_PER_FRAME * MFCC_DIM)
            .map(|i| (i as f32 * 0.37).sin() * 8.0 + (i % 13) as f32)
            .collect();
        Tensor::from_vec(v, (1, t * MFCC_PER_FRAME, MFCC_DIM), &Device::Cpu).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{crops, mfcc, synthetic_vb};
    use super::*;
    use std::collections::HashMap;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn shapes_of_every_stage() {
        let m = LightAsd::new(synthetic_vb()).unwrap();
        let v = m.visual_embed(&crops(9)).unwrap();
        assert_eq!(v.dims(), &[1, 9, EMBED]);
        let a = m.audio_embed(&mfcc(9)).unwrap();
        assert_eq!(a.dims(), &[1, 9, EMBED]);
        let s = m.forward(&mfcc(9), &crops(9)).unwrap();
        assert_eq!(s.dims(), &[1, 9]);
        assert_eq!(m.visual_scores(&v).unwrap().dims(), &[1, 9]);
        assert!(m.forward(&mfcc(8), &crops(9)).is_err());
        let bad = Tensor::zeros((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
        assert!(m.visual_embed(&bad).is_err());
    }

    #[test]
    fn front_ends_on_a_stretch_with_context_equal_one_pass_over_the_sequence() {
        let m = LightAsd::new(synthetic_vb()).unwrap();
        let t = 30;
        let (c, f) = (crops(t), mfcc(t));
        let v_full = m.visual_embed(&c).unwrap();
        let a_full = m.audio_embed(&f).unwrap();
        // Frames [10, 18) from a stretch with exactly the documented context either side.
        let (s, e) = (10, 18);
        let (vs, ve) = (s - VISUAL_CONTEXT, e + VISUAL_CONTEXT);
        let v_part = m.visual_embed(&c.narrow(1, vs, ve - vs).unwrap()).unwrap();
        let d = max_diff(
            &v_part.narrow(1, s - vs, e - s).unwrap(),
            &v_full.narrow(1, s, e - s).unwrap(),
        );
        assert!(d <= 1e-5, "visual: max |Δ| {d}");
        let (as_, ae) = (s - AUDIO_CONTEXT, e + AUDIO_CONTEXT);
        let a_part = m
            .audio_embed(
                &f.narrow(1, as_ * MFCC_PER_FRAME, (ae - as_) * MFCC_PER_FRAME)
                    .unwrap(),
            )
            .unwrap();
        let d = max_diff(
            &a_part.narrow(1, s - as_, e - s).unwrap(),
            &a_full.narrow(1, s, e - s).unwrap(),
        );
        assert!(d <= 1e-5, "audio: max |Δ| {d}");
        // One frame less of context is not enough (the margins are tight, not generous).
        let v_short = m
            .visual_embed(&c.narrow(1, vs + 1, ve - vs - 2).unwrap())
            .unwrap();
        let d = max_diff(
            &v_short.narrow(1, s - vs - 1, e - s).unwrap(),
            &v_full.narrow(1, s, e - s).unwrap(),
        );
        assert!(
            d > 1e-4,
            "visual context of {} was already enough",
            VISUAL_CONTEXT - 1
        );
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn gru_matches_pytorch_equations_written_out() {
        let m = LightAsd::new(synthetic_vb()).unwrap();
        let g = &m.backend.forward;
        let x: Vec<f32> = (0..2 * 3 * EMBED)
            .map(|i| ((i as f32) * 0.05).sin())
            .collect();
        let x = Tensor::from_vec(x, (2, 3, EMBED), &Device::Cpu).unwrap();
        let got = g.forward(&x).unwrap();
        let wih = g.w_ih.to_vec2::<f32>().unwrap(); // [128, 384]
        let whh = g.w_hh.to_vec2::<f32>().unwrap();
        let bih = g.b_ih.to_vec1::<f32>().unwrap();
        let bhh = g.b_hh.to_vec1::<f32>().unwrap();
        let xv = x.to_vec3::<f32>().unwrap();
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for b in 0..2 {
            let mut h = vec![0f32; EMBED];
            for t in 0..3 {
                let gi: Vec<f32> = (0..384)
                    .map(|j| bih[j] + (0..EMBED).map(|i| xv[b][t][i] * wih[i][j]).sum::<f32>())
                    .collect();
                let gh: Vec<f32> = (0..384)
                    .map(|j| bhh[j] + (0..EMBED).map(|i| h[i] * whh[i][j]).sum::<f32>())
                    .collect();
                let mut nh = vec![0f32; EMBED];
                for u in 0..EMBED {
                    let r = sig(gi[u] + gh[u]);
                    let z = sig(gi[EMBED + u] + gh[EMBED + u]);
                    let n = (gi[2 * EMBED + u] + r * gh[2 * EMBED + u]).tanh();
                    nh[u] = (1.0 - z) * n + z * h[u];
                }
                h = nh;
                let row = got
                    .get(b)
                    .unwrap()
                    .get(t)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let d = row
                    .iter()
                    .zip(&h)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(d <= 1e-5, "b {b} t {t}: {d}");
            }
        }
    }

    #[test]
    fn a_missing_or_misshapen_file_names_the_file_and_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.model");
        let e = LightAsd::load(&missing, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.model") && e.contains("not found"), "{e}");
        let junk = dir.path().join("junk.model");
        std::fs::write(&junk, b"not a zip").unwrap();
        let e = LightAsd::load(&junk, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("junk.model"), "{e}");
        // A VarBuilder missing one tensor.
        let mut map: HashMap<String, Tensor> = HashMap::new();
        map.insert(
            "lossAV.FC.weight".into(),
            Tensor::zeros((2, 128), DType::F32, &Device::Cpu).unwrap(),
        );
        let e = LightAsd::new(VarBuilder::from_tensors(map, DType::F32, &Device::Cpu))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lossAV.FC.bias") || e.contains("bias"), "{e}");
    }
}
