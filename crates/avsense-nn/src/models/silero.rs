//! Silero VAD v6 (16 kHz) on candle: one speech probability per 32 ms of audio.
//!
//! # What it is
//! Silero VAD (snakers4/silero-vad, MIT) is a small streaming voice-activity detector:
//! an STFT written as a 1-D convolution with a fixed basis (window 256, hop 128, 129
//! bins, magnitude), four 3-tap convolutions with ReLU (strides 1, 2, 2, 1), one LSTM
//! cell (hidden 128) whose state `(h, c)` runs on from chunk to chunk, then ReLU, a 1×1
//! convolution to one channel and a sigmoid.
//!
//! # Input contract
//! Mono f32 samples at **16 kHz** (nominally in [-1, 1]), fed in order. The model reads
//! chunks of [`CHUNK_SAMPLES`] = 512 samples (32 ms), each preceded by the
//! [`CONTEXT_SAMPLES`] = 64 samples before it (zeros before the first chunk) and
//! reflect-padded by 64 on the right, so one forward sees 640 samples. One probability
//! per chunk; chunk `k` (counted from the last [`SileroVad::reset`]) covers samples
//! `[512 k, 512 (k + 1))`. [`SileroVad::process`] takes slices of any length and keeps
//! the samples short of a whole chunk for the next call; [`SileroVad::flush`] zero-pads
//! and scores what is left at the end of a stream (as upstream's `audio_forward` does).
//! Non-finite samples are refused: one NaN would poison the recurrent state for good.
//!
//! # Weights
//! From the PyPI package `silero-vad` (6.2.3, MIT), either
//! * `silero_vad/data/silero_vad_16k.safetensors` ([`SileroVad::load`]), tensor names
//!   as in [`WEIGHTS`]. Beware: in 6.2.3 this file is **not** the checkpoint of the
//!   package's ONNX and TorchScript models (only the STFT basis is the same; upstream
//!   issue #768); it agrees with them on the speech/non-speech decision at 0.5 on about
//!   96–99.7 % of chunks of our test media; or
//! * `silero_vad/data/silero_vad.jit` ([`SileroVad::load_jit`], [`read_jit_weights`]):
//!   the 16 kHz weights of the official v6.2 model, bit-identical to the initializers
//!   of `silero_vad.onnx` / `silero_vad_16k_op15.onnx`.
//!
//! Parity with onnxruntime for both is in `tests/parity_silero.rs`.
//!
//! # Implementation
//! The STFT and the 3-tap convolutions run as matrix products over channels-last frames
//! cut on the host (candle 0.11's CPU `conv1d` costs about 7× that for one chunk). The
//! LSTM's input half is computed for all chunks of a call at once, its recurrent half
//! chunk by chunk. Every op used has a CUDA kernel in candle; a clone of a [`SileroVad`]
//! shares the weights, so streams are cheap.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// The sample rate the model reads, Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per chunk (32 ms): one probability each.
pub const CHUNK_SAMPLES: usize = 512;
/// Samples of the previous chunk fed before each chunk.
pub const CONTEXT_SAMPLES: usize = 64;
/// Width of the LSTM state.
pub const HIDDEN: usize = 128;

/// Reflect padding on the right of the context + chunk.
const RIGHT_PAD: usize = 64;
/// Samples one chunk's forward reads: context + chunk + right padding.
const WINDOW: usize = CONTEXT_SAMPLES + CHUNK_SAMPLES + RIGHT_PAD;
/// STFT window and hop (as a strided convolution).
const N_FFT: usize = 256;
const HOP: usize = 128;
/// Frequency bins of the one-sided STFT: N_FFT / 2 + 1.
const BINS: usize = N_FFT / 2 + 1;
/// STFT frames per chunk: (WINDOW − N_FFT) / HOP + 1.
const FRAMES: usize = (WINDOW - N_FFT) / HOP + 1;
/// Most chunks in one batched forward of the convolutional front end (memory bound:
/// 256 chunks ≈ 1 MB of STFT frames, ≈ 1 MB of spectra).
const MAX_BATCH_CHUNKS: usize = 256;

/// Every weight tensor: name (as in `silero_vad_16k.safetensors`) and shape.
pub const WEIGHTS: [(&str, &[usize]); 15] = [
    ("stft_conv.weight", &[2 * BINS, 1, N_FFT]),
    ("conv1.weight", &[128, BINS, 3]),
    ("conv1.bias", &[128]),
    ("conv2.weight", &[64, 128, 3]),
    ("conv2.bias", &[64]),
    ("conv3.weight", &[64, 64, 3]),
    ("conv3.bias", &[64]),
    ("conv4.weight", &[128, 64, 3]),
    ("conv4.bias", &[128]),
    ("lstm_cell.weight_ih", &[4 * HIDDEN, 128]),
    ("lstm_cell.weight_hh", &[4 * HIDDEN, HIDDEN]),
    ("lstm_cell.bias_ih", &[4 * HIDDEN]),
    ("lstm_cell.bias_hh", &[4 * HIDDEN]),
    ("final_conv.weight", &[1, HIDDEN, 1]),
    ("final_conv.bias", &[1]),
];

/// In silero-vad 6.x's `silero_vad.jit`, the 16 kHz model's tensors are the storages
/// `data/2` … `data/16`, in the order of [`WEIGHTS`] (0 and 1 are the wrapper's state and
/// context; 17–31 are the 8 kHz model). Read from the archive's `data.pkl`; checked on
/// 6.2.3 by tensor sizes and by the parity test's weight digest.
const JIT_FIRST_STORAGE: usize = 2;

/// Errors of the Silero VAD: the message names the file, the tensor or the input.
#[derive(Debug, thiserror::Error)]
pub enum SileroError {
    /// The weights file cannot be read at all.
    #[error("silero weights {origin}: cannot read: {reason}")]
    Read {
        /// The file (or `VarBuilder`).
        origin: String,
        /// Why.
        reason: String,
    },
    /// One weight tensor is missing or has the wrong shape.
    #[error("silero weights {origin}: tensor `{tensor}`: {reason}")]
    Weight {
        /// The file (or `VarBuilder`).
        origin: String,
        /// The tensor's name.
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `process_chunk` was given something other than one chunk.
    #[error("silero: a chunk has {CHUNK_SAMPLES} samples at 16 kHz, got {got}")]
    ChunkLength {
        /// Samples given.
        got: usize,
    },
    /// `process_chunk` while `process` still holds samples of an unfinished chunk.
    #[error(
        "silero: {pending} samples of an unfinished chunk wait in the stream buffer; \
         feed whole chunks with process(), or call flush() or reset() before process_chunk()"
    )]
    Pending {
        /// Samples waiting.
        pending: usize,
    },
    /// A sample is NaN or infinite.
    #[error("silero: input sample {index} is {value}; samples must be finite")]
    NonFinite {
        /// Index in the slice given.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A tensor operation failed (device out of memory, backend error).
    #[error("silero forward ({stage})")]
    Forward {
        /// Which step.
        stage: &'static str,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
}

/// `map_err` helper for the forward pass.
fn fwd(stage: &'static str) -> impl FnOnce(candle_core::Error) -> SileroError {
    move |source| SileroError::Forward { stage, source }
}

/// What runs on from chunk to chunk of one stream: the LSTM state, the last 64 samples,
/// the samples of an unfinished chunk and the number of chunks scored.
#[derive(Debug, Clone)]
pub struct SileroState {
    h: Tensor,
    c: Tensor,
    context: [f32; CONTEXT_SAMPLES],
    pending: Vec<f32>,
    chunks: u64,
}

impl SileroState {
    /// The state at the start of a stream: zeros, nothing pending.
    pub fn new(device: &Device) -> Result<Self, SileroError> {
        let zeros = || Tensor::zeros((1, HIDDEN), DType::F32, device).map_err(fwd("zero state"));
        Ok(Self {
            h: zeros()?,
            c: zeros()?,
            context: [0.0; CONTEXT_SAMPLES],
            pending: Vec::with_capacity(CHUNK_SAMPLES),
            chunks: 0,
        })
    }
    /// LSTM hidden state, `(1, 128)`.
    pub fn h(&self) -> &Tensor {
        &self.h
    }
    /// LSTM cell state, `(1, 128)`.
    pub fn c(&self) -> &Tensor {
        &self.c
    }
    /// The last 64 samples of the last chunk scored (the next chunk's context).
    pub fn context(&self) -> &[f32] {
        &self.context
    }
    /// Samples held for an unfinished chunk.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
    /// Chunks scored since the start (or the last reset).
    pub fn chunks(&self) -> u64 {
        self.chunks
    }
}

/// One 3-tap convolution (padding 1) as a matrix over channels-last input: row
/// `k·C + c` of `w` holds the original weight `[o, c, k]`.
#[derive(Debug, Clone)]
struct Conv3 {
    /// `(3·C_in, C_out)`.
    w: Tensor,
    /// `(1, C_out)`.
    b: Tensor,
    stride: usize,
}

impl Conv3 {
    /// From PyTorch's layout: weight `(C_out, C_in, 3)`, bias `(C_out)`.
    fn new(weight: &Tensor, bias: &Tensor, stride: usize) -> candle_core::Result<Self> {
        let (c_out, c_in, k) = weight.dims3()?;
        let w = weight
            .permute((2, 1, 0))?
            .contiguous()?
            .reshape((k * c_in, c_out))?;
        let b = bias.reshape((1, c_out))?;
        Ok(Self { w, b, stride })
    }

    /// `(n, T, C_in)` → `(n, T_out, C_out)`, `T_out = (T − 1) / stride + 1`, as PyTorch's
    /// `Conv1d(kernel_size=3, padding=1, stride)` on the transposed input.
    /// im2col + one matmul: candle 0.11's CPU `conv1d` costs ~7× this at one chunk.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, t_in, c) = x.dims3()?;
        let t_out = t_in.saturating_sub(1) / self.stride + 1;
        let xp = x.pad_with_zeros(1, 1, 1)?;
        let cols = (0..t_out)
            .map(|t| xp.narrow(1, self.stride * t, 3)?.reshape((n, 1, 3 * c)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let col = Tensor::cat(&cols, 1)?.reshape((n * t_out, 3 * c))?;
        let y = col.matmul(&self.w)?.broadcast_add(&self.b)?;
        y.reshape((n, t_out, self.w.dim(1)?))
    }
}

/// The network's weights, shared by every stream (tensors are reference-counted).
#[derive(Debug, Clone)]
struct Net {
    /// STFT basis as a matrix, `(256, 258)`: columns 0..129 real parts, 129..258
    /// imaginary parts.
    stft: Tensor,
    encoder: [Conv3; 4],
    /// `W_ihᵀ`, `(128, 512)`; gate order i, f, g, o (PyTorch's).
    w_ih_t: Tensor,
    /// `W_hhᵀ`, `(128, 512)`.
    w_hh_t: Tensor,
    /// `b_ih + b_hh`, `(1, 512)`.
    bias: Tensor,
    /// 1×1 output convolution as a matrix, `(128, 1)`, and its bias `(1, 1)`.
    out_w: Tensor,
    out_b: Tensor,
    device: Device,
}

impl Net {
    fn new(vb: &VarBuilder, origin: &str) -> Result<Self, SileroError> {
        let mut w = HashMap::new();
        for (name, shape) in WEIGHTS {
            let t = vb
                .get(shape, name)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| SileroError::Weight {
                    origin: origin.to_string(),
                    tensor: name.to_string(),
                    reason: e.to_string(),
                })?;
            w.insert(name, t);
        }
        // Every tensor is in `w` with its checked shape; what can still fail below is a
        // tensor operation (e.g. out of device memory), reported with the tensor's name.
        let get = |name: &'static str| -> Result<&Tensor, SileroError> {
            w.get(name).ok_or_else(|| SileroError::Weight {
                origin: origin.to_string(),
                tensor: name.to_string(),
                reason: "missing".to_string(),
            })
        };
        let derived = |name: &'static str| {
            let origin = origin.to_string();
            move |e: candle_core::Error| SileroError::Weight {
                origin,
                tensor: name.to_string(),
                reason: e.to_string(),
            }
        };
        let conv = |i: usize, stride: usize| -> Result<Conv3, SileroError> {
            let (wn, bn) = match i {
                1 => ("conv1.weight", "conv1.bias"),
                2 => ("conv2.weight", "conv2.bias"),
                3 => ("conv3.weight", "conv3.bias"),
                _ => ("conv4.weight", "conv4.bias"),
            };
            Conv3::new(get(wn)?, get(bn)?, stride).map_err(derived(wn))
        };
        let encoder = [conv(1, 1)?, conv(2, 2)?, conv(3, 2)?, conv(4, 1)?];
        let stft = get("stft_conv.weight")?
            .reshape((2 * BINS, N_FFT))
            .and_then(|t| t.t())
            .and_then(|t| t.contiguous())
            .map_err(derived("stft_conv.weight"))?;
        let w_ih_t = get("lstm_cell.weight_ih")?
            .t()
            .and_then(|t| t.contiguous())
            .map_err(derived("lstm_cell.weight_ih"))?;
        let w_hh_t = get("lstm_cell.weight_hh")?
            .t()
            .and_then(|t| t.contiguous())
            .map_err(derived("lstm_cell.weight_hh"))?;
        let bias = (get("lstm_cell.bias_ih")? + get("lstm_cell.bias_hh")?)
            .and_then(|b| b.reshape((1, 4 * HIDDEN)))
            .map_err(derived("lstm_cell.bias_hh"))?;
        let out_w = get("final_conv.weight")?
            .reshape((1, HIDDEN))
            .and_then(|t| t.t())
            .and_then(|t| t.contiguous())
            .map_err(derived("final_conv.weight"))?;
        let out_b = get("final_conv.bias")?
            .reshape((1, 1))
            .map_err(derived("final_conv.bias"))?;
        Ok(Self {
            stft,
            encoder,
            w_ih_t,
            w_hh_t,
            bias,
            out_w,
            out_b,
            device: vb.device().clone(),
        })
    }

    /// Scores `n` chunks given as their STFT frames (`n × FRAMES × N_FFT` samples,
    /// row-major), running the LSTM from `(h, c)`; returns the probabilities and the
    /// final `(h, c)`.
    fn forward(
        &self,
        frames: Vec<f32>,
        n: usize,
        h: &Tensor,
        c: &Tensor,
    ) -> Result<(Vec<f32>, Tensor, Tensor), SileroError> {
        let x =
            Tensor::from_vec(frames, (n * FRAMES, N_FFT), &self.device).map_err(fwd("upload"))?;
        // STFT magnitude, channels-last: (n·4, 258) → (n, 4, 129).
        let mag = (|| {
            let spec = x.matmul(&self.stft)?;
            let re = spec.narrow(1, 0, BINS)?;
            let im = spec.narrow(1, BINS, BINS)?;
            (re.sqr()? + im.sqr()?)?.sqrt()?.reshape((n, FRAMES, BINS))
        })()
        .map_err(fwd("stft"))?;
        let mut feats = mag;
        for conv in &self.encoder {
            feats = conv
                .forward(&feats)
                .and_then(|t| t.relu())
                .map_err(fwd("encoder"))?;
        }
        // 4 STFT frames → strides 1, 2, 2, 1 → one time step per chunk.
        let steps = feats.dim(1).map_err(fwd("encoder"))?;
        if steps != 1 {
            return Err(SileroError::Forward {
                stage: "encoder",
                source: candle_core::Error::Msg(format!(
                    "encoder output has {steps} time steps per chunk, expected 1"
                )),
            });
        }
        // Input half of the LSTM gates for every chunk at once: (n, 512).
        let gx = feats
            .reshape((n, HIDDEN))
            .and_then(|f| f.matmul(&self.w_ih_t))
            .and_then(|g| g.broadcast_add(&self.bias))
            .map_err(fwd("lstm input"))?;
        let mut h = h.clone();
        let mut c = c.clone();
        let mut hs = Vec::with_capacity(n);
        for t in 0..n {
            let (h2, c2) = (|| {
                let g = (gx.narrow(0, t, 1)? + h.matmul(&self.w_hh_t)?)?;
                let s = candle_nn::ops::sigmoid(&g)?;
                let i = s.narrow(1, 0, HIDDEN)?;
                let f = s.narrow(1, HIDDEN, HIDDEN)?;
                let gg = g.narrow(1, 2 * HIDDEN, HIDDEN)?.tanh()?;
                let o = s.narrow(1, 3 * HIDDEN, HIDDEN)?;
                let c2 = ((f * &c)? + (i * gg)?)?;
                let h2 = (o * c2.tanh()?)?;
                Ok::<_, candle_core::Error>((h2, c2))
            })()
            .map_err(fwd("lstm step"))?;
            hs.push(h2.clone());
            h = h2;
            c = c2;
        }
        // Decoder: ReLU → 1×1 conv → sigmoid; the mean over one time step is itself.
        let probs = Tensor::cat(&hs, 0)
            .and_then(|hs| hs.relu())
            .and_then(|hs| hs.matmul(&self.out_w))
            .and_then(|z| z.broadcast_add(&self.out_b))
            .and_then(|z| candle_nn::ops::sigmoid(&z))
            .and_then(|p| p.flatten_all())
            .and_then(|p| p.to_vec1::<f32>())
            .map_err(fwd("decoder"))?;
        Ok((probs, h, c))
    }
}

/// Silero VAD v6, 16 kHz, with the state of one audio stream.
///
/// Cloning shares the weights; use [`SileroVad::new_stream`] for another stream.
#[derive(Debug, Clone)]
pub struct SileroVad {
    net: Net,
    state: SileroState,
}

impl SileroVad {
    /// Builds the model from weights named as in [`WEIGHTS`] (`vb` at the file's root).
    pub fn new(vb: VarBuilder) -> Result<Self, SileroError> {
        Self::with_origin(vb, "<VarBuilder>")
    }

    fn with_origin(vb: VarBuilder, origin: &str) -> Result<Self, SileroError> {
        let net = Net::new(&vb, origin)?;
        let state = SileroState::new(&net.device)?;
        Ok(Self { net, state })
    }

    /// Loads `silero_vad_16k.safetensors` (or any safetensors file with [`WEIGHTS`]).
    pub fn load(path: &Path, device: &Device) -> Result<Self, SileroError> {
        let origin = path.display().to_string();
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| SileroError::Read {
                origin: origin.clone(),
                reason: e.to_string(),
            })?;
        Self::with_origin(
            VarBuilder::from_tensors(tensors, DType::F32, device),
            &origin,
        )
    }

    /// Loads the 16 kHz weights from silero-vad 6.x's `silero_vad.jit` (see
    /// [`read_jit_weights`]).
    pub fn load_jit(path: &Path, device: &Device) -> Result<Self, SileroError> {
        let tensors = read_jit_weights(path, device)?;
        let origin = path.display().to_string();
        Self::with_origin(
            VarBuilder::from_tensors(tensors, DType::F32, device),
            &origin,
        )
    }

    /// [`Self::load_jit`] from the archive's bytes in memory; `origin` names them in errors.
    pub fn load_jit_bytes(
        bytes: &[u8],
        origin: &str,
        device: &Device,
    ) -> Result<Self, SileroError> {
        let tensors = read_jit_archive(std::io::Cursor::new(bytes), origin, device)?;
        Self::with_origin(
            VarBuilder::from_tensors(tensors, DType::F32, device),
            origin,
        )
    }

    /// The same weights with a fresh state: for another stream.
    pub fn new_stream(&self) -> Result<Self, SileroError> {
        Ok(Self {
            net: self.net.clone(),
            state: SileroState::new(&self.net.device)?,
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.net.device
    }

    /// This stream's state.
    pub fn state(&self) -> &SileroState {
        &self.state
    }

    /// Back to the start of a stream: zero state, pending samples dropped, count 0.
    pub fn reset(&mut self) -> Result<(), SileroError> {
        self.state = SileroState::new(&self.net.device)?;
        Ok(())
    }

    /// Scores one chunk of exactly [`CHUNK_SAMPLES`] samples, the next of the stream.
    pub fn process_chunk(&mut self, chunk: &[f32]) -> Result<f32, SileroError> {
        if chunk.len() != CHUNK_SAMPLES {
            return Err(SileroError::ChunkLength { got: chunk.len() });
        }
        if !self.state.pending.is_empty() {
            return Err(SileroError::Pending {
                pending: self.state.pending.len(),
            });
        }
        check_finite(chunk)?;
        let probs = self.score(chunk)?;
        probs.first().copied().ok_or_else(|| SileroError::Forward {
            stage: "decoder",
            source: candle_core::Error::Msg("no output for one chunk".to_string()),
        })
    }

    /// Feeds samples of any length; returns the probabilities of the chunks they
    /// complete (possibly none) and keeps the rest for the next call.
    /// On error the stream's state is as before the call.
    pub fn process(&mut self, samples: &[f32]) -> Result<Vec<f32>, SileroError> {
        check_finite(samples)?;
        let pending = self.state.pending.len();
        let whole = (pending + samples.len()) / CHUNK_SAMPLES * CHUNK_SAMPLES;
        if whole == 0 {
            self.state.pending.extend_from_slice(samples);
            return Ok(Vec::new());
        }
        let mut input = Vec::with_capacity(whole);
        input.extend_from_slice(&self.state.pending);
        let from_new = whole - pending;
        input.extend_from_slice(&samples[..from_new]);
        let probs = self.score(&input)?;
        self.state.pending.clear();
        self.state.pending.extend_from_slice(&samples[from_new..]);
        Ok(probs)
    }

    /// End of stream: zero-pads the samples of an unfinished chunk to a whole chunk and
    /// scores it; `None` when nothing is pending.
    pub fn flush(&mut self) -> Result<Option<f32>, SileroError> {
        if self.state.pending.is_empty() {
            return Ok(None);
        }
        let mut chunk = self.state.pending.clone();
        chunk.resize(CHUNK_SAMPLES, 0.0);
        let probs = self.score(&chunk)?;
        self.state.pending.clear();
        Ok(probs.first().copied())
    }

    /// Scores whole chunks (`samples.len()` a multiple of 512) in batches, updating the
    /// state only when every batch succeeded.
    fn score(&mut self, samples: &[f32]) -> Result<Vec<f32>, SileroError> {
        let n_chunks = samples.len() / CHUNK_SAMPLES;
        let mut out = Vec::with_capacity(n_chunks);
        let mut h = self.state.h.clone();
        let mut c = self.state.c.clone();
        let mut context = self.state.context;
        for batch in samples.chunks(MAX_BATCH_CHUNKS * CHUNK_SAMPLES) {
            let n = batch.len() / CHUNK_SAMPLES;
            let mut frames = Vec::with_capacity(n * FRAMES * N_FFT);
            for chunk in batch.chunks_exact(CHUNK_SAMPLES) {
                push_frames(&mut frames, &context, chunk);
                context.copy_from_slice(&chunk[CHUNK_SAMPLES - CONTEXT_SAMPLES..]);
            }
            let (probs, h2, c2) = self.net.forward(frames, n, &h, &c)?;
            out.extend(probs);
            h = h2;
            c = c2;
        }
        self.state.h = h;
        self.state.c = c;
        self.state.context = context;
        self.state.chunks += n_chunks as u64;
        Ok(out)
    }
}

/// Appends one chunk's STFT frames (FRAMES × N_FFT samples, hop HOP) of its window:
/// context, chunk, then 64 samples reflected about the chunk's last sample
/// (PyTorch/ONNX "reflect": the edge itself is not repeated).
fn push_frames(out: &mut Vec<f32>, context: &[f32; CONTEXT_SAMPLES], chunk: &[f32]) {
    let mut window = [0.0f32; WINDOW];
    let n = CONTEXT_SAMPLES + CHUNK_SAMPLES;
    window[..CONTEXT_SAMPLES].copy_from_slice(context);
    window[CONTEXT_SAMPLES..n].copy_from_slice(chunk);
    for j in 0..RIGHT_PAD {
        window[n + j] = window[n - 2 - j];
    }
    for f in 0..FRAMES {
        out.extend_from_slice(&window[f * HOP..f * HOP + N_FFT]);
    }
}

fn check_finite(samples: &[f32]) -> Result<(), SileroError> {
    match samples.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(SileroError::NonFinite {
            index,
            value: samples[index],
        }),
        None => Ok(()),
    }
}

/// Reads the 16 kHz model's weights out of silero-vad 6.x's TorchScript archive
/// `silero_vad.jit` (a zip), named as in [`WEIGHTS`]: storages `data/2` … `data/16`
/// under the archive's root folder, little-endian f32. Each storage's size must match
/// its tensor's shape exactly; the error names the tensor and the entry otherwise.
pub fn read_jit_weights(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, SileroError> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| SileroError::Read {
        origin: origin.clone(),
        reason: e.to_string(),
    })?;
    read_jit_archive(std::io::BufReader::new(file), &origin, device)
}

/// [`read_jit_weights`] from any seekable reader; `origin` names it in errors.
pub fn read_jit_archive<R: std::io::Read + std::io::Seek>(
    reader: R,
    origin: &str,
    device: &Device,
) -> Result<HashMap<String, Tensor>, SileroError> {
    let origin = origin.to_string();
    let read_err = |reason: String| SileroError::Read {
        origin: origin.clone(),
        reason,
    };
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| read_err(format!("not a zip archive: {e}")))?;
    let root = zip
        .file_names()
        .find_map(|n| n.strip_suffix("data.pkl"))
        .filter(|r| r.is_empty() || r.ends_with('/'))
        .map(str::to_string)
        .ok_or_else(|| read_err("no data.pkl: not a TorchScript archive".to_string()))?;
    if let Ok(mut e) = zip.by_name(&format!("{root}byteorder")) {
        let mut order = String::new();
        e.read_to_string(&mut order)
            .map_err(|e| read_err(format!("{root}byteorder: {e}")))?;
        if order.trim() != "little" {
            return Err(read_err(format!(
                "byte order {:?}, expected \"little\"",
                order.trim()
            )));
        }
    }
    let mut out = HashMap::new();
    for (k, (name, shape)) in WEIGHTS.iter().enumerate() {
        let entry = format!("{root}data/{}", JIT_FIRST_STORAGE + k);
        let weight_err = |reason: String| SileroError::Weight {
            origin: origin.clone(),
            tensor: name.to_string(),
            reason: format!("{entry}: {reason}"),
        };
        let mut bytes = Vec::new();
        zip.by_name(&entry)
            .map_err(|e| weight_err(e.to_string()))?
            .read_to_end(&mut bytes)
            .map_err(|e| weight_err(e.to_string()))?;
        let expected = shape.iter().product::<usize>() * 4;
        if bytes.len() != expected {
            return Err(weight_err(format!(
                "{} bytes, expected {expected} for f32 {shape:?} (not the silero-vad 6.x layout?)",
                bytes.len()
            )));
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let t = Tensor::from_vec(values, *shape, device).map_err(|e| weight_err(e.to_string()))?;
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Random weights of the right shapes (small, so the outputs are not saturated).
    fn random_weights(seed: u64) -> HashMap<String, Tensor> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        };
        WEIGHTS
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n).map(|_| next()).collect();
                (
                    name.to_string(),
                    Tensor::from_vec(v, *shape, &Device::Cpu).unwrap(),
                )
            })
            .collect()
    }

    fn model(seed: u64) -> SileroVad {
        SileroVad::new(VarBuilder::from_tensors(
            random_weights(seed),
            DType::F32,
            &Device::Cpu,
        ))
        .unwrap()
    }

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin() * (3.0 * t).sin()
                    + 0.05 * (2.0 * std::f32::consts::PI * 1900.0 * t).sin()
            })
            .collect()
    }

    #[test]
    fn silero_conv3_matches_conv1d() {
        let d = Device::Cpu;
        for (n, t, c_in, c_out, stride) in [
            (1, 4, 129, 128, 1),
            (3, 4, 128, 64, 2),
            (2, 2, 64, 64, 2),
            (5, 1, 64, 128, 1),
            (2, 5, 7, 3, 2),
        ] {
            let x = Tensor::randn(0f32, 1., (n, c_in, t), &d).unwrap();
            let w = Tensor::randn(0f32, 1., (c_out, c_in, 3), &d).unwrap();
            let b = Tensor::randn(0f32, 1., c_out, &d).unwrap();
            let want = x
                .conv1d(&w, 1, stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, c_out, 1)).unwrap())
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let conv = Conv3::new(&w, &b, stride).unwrap();
            let got = conv
                .forward(&x.transpose(1, 2).unwrap().contiguous().unwrap())
                .unwrap();
            assert_eq!(got.dims(), want.dims(), "{n} {t} {c_in} {c_out} {stride}");
            let d = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-4, "{n} {t} {c_in} {c_out} {stride}: {d}");
        }
    }

    #[test]
    fn silero_bad_shape_names_file_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad_shape.safetensors");
        let mut w = random_weights(1);
        w.insert(
            "conv2.weight".to_string(),
            Tensor::zeros((64, 128, 5), DType::F32, &Device::Cpu).unwrap(),
        );
        candle_core::safetensors::save(&w, &path).unwrap();
        let err = SileroVad::load(&path, &Device::Cpu).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, SileroError::Weight { ref tensor, .. } if tensor == "conv2.weight"),
            "{msg}"
        );
        assert!(
            msg.contains("conv2.weight") && msg.contains("bad_shape.safetensors"),
            "{msg}"
        );
    }

    #[test]
    fn silero_missing_tensor_names_file_and_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.safetensors");
        let mut w = random_weights(2);
        w.remove("lstm_cell.weight_hh");
        candle_core::safetensors::save(&w, &path).unwrap();
        let msg = SileroVad::load(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("lstm_cell.weight_hh") && msg.contains("missing.safetensors"),
            "{msg}"
        );
    }

    #[test]
    fn silero_not_a_weights_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.safetensors");
        std::fs::write(&path, b"not safetensors at all").unwrap();
        let err = SileroVad::load(&path, &Device::Cpu).unwrap_err();
        assert!(matches!(err, SileroError::Read { .. }), "{err}");
        assert!(err.to_string().contains("garbage.safetensors"), "{err}");
        let err =
            SileroVad::load(&dir.path().join("absent.safetensors"), &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("absent.safetensors"), "{err}");
    }

    #[test]
    fn silero_streaming_is_independent_of_slicing() {
        let x = signal(CHUNK_SAMPLES * 7 + 300);
        let mut whole = model(3);
        let mut expected = whole.process(&x).unwrap();
        assert_eq!(expected.len(), 7);
        assert_eq!(whole.state().pending(), 300);
        expected.push(whole.flush().unwrap().unwrap());
        assert_eq!(whole.flush().unwrap(), None);

        for step in [1usize, 100, 511, 513, 1000] {
            let mut m = model(3);
            let mut got = Vec::new();
            for part in x.chunks(step) {
                got.extend(m.process(part).unwrap());
            }
            got.extend(m.flush().unwrap());
            assert_eq!(got.len(), expected.len(), "step {step}");
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-6, "step {step}: {a} vs {b}");
            }
        }
        // process_chunk over whole chunks gives the same; reset starts over.
        let mut m = model(3);
        for _ in 0..2 {
            for (k, chunk) in x.chunks_exact(CHUNK_SAMPLES).enumerate() {
                let p = m.process_chunk(chunk).unwrap();
                assert!(
                    (p - expected[k]).abs() < 1e-6,
                    "chunk {k}: {p} vs {}",
                    expected[k]
                );
            }
            assert_eq!(m.state().chunks(), 7);
            m.reset().unwrap();
        }
        // the state matters: a fresh stream scores chunk 3 differently from chunk 3 in context
        let mut fresh = whole.new_stream().unwrap();
        let p = fresh
            .process_chunk(&x[3 * CHUNK_SAMPLES..4 * CHUNK_SAMPLES])
            .unwrap();
        assert!((p - expected[3]).abs() > 1e-7);
    }

    #[test]
    fn silero_bad_input_leaves_state_alone() {
        let mut m = model(4);
        let x = signal(CHUNK_SAMPLES * 2);
        let err = m.process_chunk(&x[..100]).unwrap_err();
        assert!(
            matches!(err, SileroError::ChunkLength { got: 100 }),
            "{err}"
        );
        m.process(&x[..100]).unwrap();
        let err = m.process_chunk(&x[..CHUNK_SAMPLES]).unwrap_err();
        assert!(
            matches!(err, SileroError::Pending { pending: 100 }),
            "{err}"
        );
        let mut bad = x[100..].to_vec();
        bad[7] = f32::NAN;
        let err = m.process(&bad).unwrap_err();
        assert!(
            matches!(err, SileroError::NonFinite { index: 7, .. }),
            "{err}"
        );
        assert_eq!(m.state().pending(), 100);
        assert_eq!(m.state().chunks(), 0);
        let p = m.process(&x[100..]).unwrap();
        let mut clean = model(4);
        let q = clean.process(&x).unwrap();
        assert_eq!(p, q);
        assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    /// A TorchScript-like archive holding `weights` as silero-vad 6.x lays them out.
    fn write_jit(path: &Path, weights: &HashMap<String, Tensor>, skip: Option<&str>) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        zip.start_file("VADr/data.pkl", opts).unwrap();
        zip.write_all(b"\x80\x02.").unwrap();
        zip.start_file("VADr/byteorder", opts).unwrap();
        zip.write_all(b"little").unwrap();
        for (k, (name, _)) in WEIGHTS.iter().enumerate() {
            if skip == Some(*name) {
                continue;
            }
            let v = weights[*name]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            zip.start_file(format!("VADr/data/{}", JIT_FIRST_STORAGE + k), opts)
                .unwrap();
            for x in v {
                zip.write_all(&x.to_le_bytes()).unwrap();
            }
        }
        zip.finish().unwrap();
    }

    #[test]
    fn silero_jit_archive() {
        let dir = tempfile::tempdir().unwrap();
        let w = random_weights(5);
        let good = dir.path().join("good.jit");
        write_jit(&good, &w, None);
        let read = read_jit_weights(&good, &Device::Cpu).unwrap();
        for (name, _) in WEIGHTS {
            let a = read[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let b = w[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(a, b, "{name}");
        }
        let x = signal(CHUNK_SAMPLES * 3);
        let p = SileroVad::load_jit(&good, &Device::Cpu)
            .unwrap()
            .process(&x)
            .unwrap();
        assert_eq!(p, model(5).process(&x).unwrap());

        let bad = dir.path().join("bad.jit");
        write_jit(&bad, &w, Some("conv3.bias"));
        let msg = read_jit_weights(&bad, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("conv3.bias") && msg.contains("bad.jit") && msg.contains("data/8"),
            "{msg}"
        );

        let not_zip = dir.path().join("plain.jit");
        std::fs::write(&not_zip, b"hello").unwrap();
        let err = read_jit_weights(&not_zip, &Device::Cpu).unwrap_err();
        assert!(
            matches!(err, SileroError::Read { .. }) && err.to_string().contains("plain.jit"),
            "{err}"
        );
    }
}
