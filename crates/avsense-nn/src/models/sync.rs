//! The audio-visual sync head: an absolute score of whether one face's mouth makes the
//! sound heard, from Light-ASD's per-tick audio and visual embeddings.
//!
//! Light-ASD's back end decides *which* face speaks given that someone does; trained on
//! AVA, it rarely saw a talking face paired with another person's voice, so lips that move
//! while someone off-screen speaks score high. This head asks the absolute question: does
//! this face's mouth move *with* the audio, more than with the same audio a little earlier
//! or later?
//!
//! ```text
//! h_a(t) = tanh(W_a a_t + b_a),  h_v(t) = tanh(W_v v_t + b_v)      (rank R each)
//! s(δ)   = w · mean_k [ h_a(t + k + δ) ⊙ h_v(t + k) ],  k ∈ [−H, H]   (audio shifted by δ)
//! c      = s(0) − mean_{δ ∈ Δ, δ ≠ 0} s(δ)                         (the sync contrast)
//! p      = σ(α c + β)
//! ```
//!
//! `s` is a low-rank bilinear pooling of the two embeddings over a window; the contrast
//! against shifted copies of the *same* audio cancels what does not depend on timing (who
//! the face is, whose voice it is, how loud): a mouth that makes the sound peaks at δ = 0,
//! one that merely moves while someone else speaks does not (SyncNet's offset confidence,
//! learned here on Light-ASD's embeddings). `W_a, W_v, w` are trained by `avsense train
//! --model sync` with a softmax over the offsets Δ and other people's voices (the true
//! pairing must win); `α, β` are then fitted by logistic regression of own voices against
//! other voices.
//!
//! Weights: `sync.json` (the [`SyncSpec`]: rank, window, offsets, calibration, how it was
//! trained, the training data's digest) + `sync.safetensors` (`audio.weight`,
//! `audio.bias`, `visual.weight`, `visual.bias`, `out.weight`, `out.bias`). The shipped
//! pair is built into the binary ([`SyncHead::builtin`]).

use super::lightasd::EMBED;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};
use std::path::{Path, PathBuf};

/// Errors of the sync head.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A weights or spec file could not be read or is not what was expected.
    #[error("sync head: {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A tensor operation failed.
    #[error("sync head: {stage}")]
    Tensor {
        /// Where.
        stage: &'static str,
        /// The error.
        #[source]
        source: candle_core::Error,
    },
}

/// An embedding.
pub type Emb = [f32; EMBED];

/// What a sync head is: its shape, window, offsets, calibration and how it was trained
/// (`sync.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// Always `"avsense.sync/1"`.
    pub format: String,
    /// Rank of the bilinear pooling.
    pub rank: usize,
    /// Ticks (25 fps) either side of the scored tick in its window (`H`).
    pub half_window: usize,
    /// Fewest ticks with both embeddings for one offset's score.
    pub min_ticks: usize,
    /// Audio offsets in ticks (`Δ`, 0 included) the contrast compares.
    pub offsets: Vec<i64>,
    /// Fewest offsets besides 0 with a score for a contrast.
    pub min_offsets: usize,
    /// Calibration slope `α`.
    pub alpha: f32,
    /// Calibration intercept `β`.
    pub beta: f32,
    /// Probability below which a face is taken not to make the sound.
    pub threshold: f32,
    /// How it was trained: command, data (files and their sha256), the data's digest,
    /// held-out metrics.
    #[serde(default)]
    pub training: serde_json::Value,
}

/// The spec format tag.
pub const SYNC_FORMAT: &str = "avsense.sync/1";

impl SyncSpec {
    /// A spec of the given shape, uncalibrated (`α = 1, β = 0`).
    pub fn new(rank: usize, half_window: usize, offsets: Vec<i64>) -> Self {
        Self {
            format: SYNC_FORMAT.to_string(),
            rank,
            half_window,
            min_ticks: half_window.max(1),
            min_offsets: (offsets.len().saturating_sub(1) / 2).max(1),
            offsets,
            alpha: 1.0,
            beta: 0.0,
            threshold: 0.5,
            training: serde_json::Value::Null,
        }
    }

    /// Parses and checks a spec (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, SyncError> {
        let bad = |reason: String| SyncError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let spec: SyncSpec = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if spec.format != SYNC_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {SYNC_FORMAT:?}",
                spec.format
            )));
        }
        if !(1..=256).contains(&spec.rank) || !(1..=100).contains(&spec.half_window) {
            return Err(bad(format!(
                "rank {} / half_window {} out of range (1–256 / 1–100)",
                spec.rank, spec.half_window
            )));
        }
        if spec.min_ticks == 0 || spec.min_ticks > spec.window() {
            return Err(bad(format!(
                "min_ticks {} must be within 1..={}",
                spec.min_ticks,
                spec.window()
            )));
        }
        let nonzero = spec.offsets.iter().filter(|&&d| d != 0).count();
        if !spec.offsets.contains(&0)
            || spec.offsets.iter().any(|d| d.abs() > 250)
            || spec.min_offsets == 0
            || spec.min_offsets > nonzero
        {
            return Err(bad(format!(
                "offsets {:?} / min_offsets {}: 0 and at least min_offsets (≥ 1) others within ±250 ticks are needed",
                spec.offsets, spec.min_offsets
            )));
        }
        if !(spec.alpha.is_finite() && spec.beta.is_finite()) {
            return Err(bad("alpha and beta must be finite".into()));
        }
        if !(spec.threshold > 0.0 && spec.threshold < 1.0) {
            return Err(bad(format!(
                "threshold {} must be a probability in (0, 1)",
                spec.threshold
            )));
        }
        Ok(spec)
    }

    /// Ticks in a window.
    pub fn window(&self) -> usize {
        2 * self.half_window + 1
    }

    /// The largest offset either way.
    pub fn reach(&self) -> usize {
        self.offsets
            .iter()
            .map(|d| d.unsigned_abs() as usize)
            .max()
            .unwrap_or(0)
    }
}

/// One tick to score: the face's visual embeddings over `[t − H, t + H]` and the audio's
/// over `[t − H − M, t + H + M]` (`M` = [`SyncSpec::reach`]), `None` where missing.
#[derive(Debug, Clone, Default)]
pub struct SyncInput {
    /// `2H + 1` visual embeddings.
    pub visual: Vec<Option<Emb>>,
    /// `2H + 2M + 1` audio embeddings.
    pub audio: Vec<Option<Emb>>,
}

/// The sync head (see the module doc).
#[derive(Debug, Clone)]
pub struct SyncHead {
    audio: Linear,
    visual: Linear,
    out: Linear,
    spec: SyncSpec,
}

fn tensor(stage: &'static str) -> impl Fn(candle_core::Error) -> SyncError {
    move |source| SyncError::Tensor { stage, source }
}

impl SyncHead {
    /// Builds the head of `spec` from `vb` (`audio.*`, `visual.*`, `out.*`).
    pub fn new(vb: VarBuilder, spec: SyncSpec) -> candle_core::Result<Self> {
        let r = spec.rank;
        Ok(Self {
            audio: candle_nn::linear(EMBED, r, vb.pp("audio"))?,
            visual: candle_nn::linear(EMBED, r, vb.pp("visual"))?,
            out: candle_nn::linear(r, 1, vb.pp("out"))?,
            spec,
        })
    }

    /// Loads `sync.json` + `sync.safetensors` from `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, SyncError> {
        let json = dir.join("sync.json");
        let text = std::fs::read_to_string(&json).map_err(|e| SyncError::Read {
            path: json.clone(),
            reason: e.to_string(),
        })?;
        let spec = SyncSpec::parse(&text, &json)?;
        let weights = dir.join("sync.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| SyncError::Read {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(spec, &bytes, &weights, device)
    }

    /// The head of `spec` from safetensors `bytes` (`path` names them in errors): every
    /// tensor must have the spec's shape.
    pub fn from_bytes(
        spec: SyncSpec,
        bytes: &[u8],
        path: &Path,
        device: &Device,
    ) -> Result<Self, SyncError> {
        let vb = VarBuilder::from_buffered_safetensors(bytes.to_vec(), DType::F32, device)
            .map_err(|e| SyncError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::new(vb, spec).map_err(|e| SyncError::Read {
            path: path.to_path_buf(),
            reason: format!("not the weights of the spec's shape: {e}"),
        })
    }

    /// The shipped head (`models/sync/` at the repository's top, written by `avsense train
    /// --model sync`), built into the binary.
    pub fn builtin(device: &Device) -> Result<Self, SyncError> {
        let json = Path::new("models/sync/sync.json");
        let spec = SyncSpec::parse(BUILTIN_JSON, json)?;
        Self::from_bytes(
            spec,
            BUILTIN_WEIGHTS,
            Path::new("models/sync/sync.safetensors"),
            device,
        )
    }

    /// Its spec.
    pub fn spec(&self) -> &SyncSpec {
        &self.spec
    }

    /// A copy with another calibration (training).
    pub fn with_calibration(mut self, alpha: f32, beta: f32) -> Self {
        self.spec.alpha = alpha;
        self.spec.beta = beta;
        self
    }

    /// `h_a` of audio embeddings `[N, 128]` → `[N, R]`.
    pub fn project_audio(&self, a: &Tensor) -> candle_core::Result<Tensor> {
        self.audio.forward(a)?.tanh()
    }

    /// `h_v` of visual embeddings `[N, 128]` → `[N, R]`.
    pub fn project_visual(&self, v: &Tensor) -> candle_core::Result<Tensor> {
        self.visual.forward(v)?.tanh()
    }

    /// Window scores `s` `[W]` for training: rows of `ha` `[Na, R]` and `hv` `[Nv, R]`
    /// paired by the index tensors `ai`, `vi` `[W·T]` (u32), with `mask` `[W, T]` (1 where
    /// the pair counts).
    pub fn window_scores(
        &self,
        ha: &Tensor,
        hv: &Tensor,
        ai: &Tensor,
        vi: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (w, t) = mask.dims2()?;
        let r = self.spec.rank;
        let pa = ha.index_select(ai, 0)?.reshape((w, t, r))?;
        let pv = hv.index_select(vi, 0)?.reshape((w, t, r))?;
        let m = mask.unsqueeze(D::Minus1)?;
        let pooled = (pa * pv)?.broadcast_mul(&m)?.sum(1)?;
        let n = mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)?;
        self.out
            .forward(&pooled.broadcast_div(&n)?)?
            .squeeze(D::Minus1)
    }

    /// The sync contrast `c` of projected rows (plain arithmetic on `[R]` rows; `None`
    /// where too few ticks or offsets are there).
    pub fn contrast(&self, hv: &[Option<&[f32]>], ha: &[Option<&[f32]>]) -> Option<f32> {
        let (w, b) = self.out_weights()?;
        let m = self.spec.reach();
        let score = |d: i64| -> Option<f32> {
            let (mut acc, mut n) = (0f32, 0usize);
            for k in 0..self.spec.window() {
                let ai = (k + m) as i64 + d;
                let (Some(Some(v)), Some(Some(a))) =
                    (hv.get(k), usize::try_from(ai).ok().and_then(|i| ha.get(i)))
                else {
                    continue;
                };
                acc += v
                    .iter()
                    .zip(a.iter())
                    .zip(&w)
                    .map(|((x, y), z)| x * y * z)
                    .sum::<f32>();
                n += 1;
            }
            (n >= self.spec.min_ticks).then(|| acc / n as f32 + b)
        };
        let s0 = score(0)?;
        let others: Vec<f32> = self
            .spec
            .offsets
            .iter()
            .filter(|&&d| d != 0)
            .filter_map(|&d| score(d))
            .collect();
        if others.len() < self.spec.min_offsets {
            return None;
        }
        Some(s0 - others.iter().sum::<f32>() / others.len() as f32)
    }

    fn out_weights(&self) -> Option<(Vec<f32>, f32)> {
        let w = self
            .out
            .weight()
            .flatten_all()
            .ok()?
            .to_vec1::<f32>()
            .ok()?;
        let b = self
            .out
            .bias()
            .and_then(|b| b.flatten_all().ok())
            .and_then(|b| b.to_vec1::<f32>().ok())
            .and_then(|b| b.first().copied())
            .unwrap_or(0.0);
        Some((w, b))
    }

    /// The calibrated probability of a contrast.
    pub fn probability(&self, c: f32) -> f32 {
        let x = self.spec.alpha * c + self.spec.beta;
        1.0 / (1.0 + (-x).exp())
    }

    /// Probabilities that each input's face makes the sound at its tick (`None` where too
    /// little of either stream is there). Every embedding is projected once, in one call
    /// per modality.
    pub fn score(&self, inputs: &[SyncInput]) -> Result<Vec<Option<f32>>, SyncError> {
        let dev = self.audio.weight().device().clone();
        let project = |rows: Vec<&Emb>, audio: bool| -> Result<Vec<Vec<f32>>, SyncError> {
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let n = rows.len();
            let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
            let x = Tensor::from_vec(flat, (n, EMBED), &dev).map_err(tensor("input"))?;
            let h = if audio {
                self.project_audio(&x)
            } else {
                self.project_visual(&x)
            };
            h.and_then(|h| h.to_vec2::<f32>())
                .map_err(tensor("projection"))
        };
        let va: Vec<&Emb> = inputs
            .iter()
            .flat_map(|i| i.visual.iter().flatten())
            .collect();
        let aa: Vec<&Emb> = inputs
            .iter()
            .flat_map(|i| i.audio.iter().flatten())
            .collect();
        let hv = project(va, false)?;
        let ha = project(aa, true)?;
        let (mut iv, mut ia) = (hv.iter(), ha.iter());
        let mut out = Vec::with_capacity(inputs.len());
        for inp in inputs {
            let v: Vec<Option<&[f32]>> = inp
                .visual
                .iter()
                .map(|e| e.as_ref().and_then(|_| iv.next().map(|r| r.as_slice())))
                .collect();
            let a: Vec<Option<&[f32]>> = inp
                .audio
                .iter()
                .map(|e| e.as_ref().and_then(|_| ia.next().map(|r| r.as_slice())))
                .collect();
            out.push(self.contrast(&v, &a).map(|c| self.probability(c)));
        }
        Ok(out)
    }
}

const BUILTIN_JSON: &str = include_str!("../../../../models/sync/sync.json");
const BUILTIN_WEIGHTS: &[u8] = include_bytes!("../../../../models/sync/sync.safetensors");

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn head(rank: usize) -> (VarMap, SyncHead) {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let h = SyncHead::new(vb, SyncSpec::new(rank, 4, vec![-6, -3, 0, 3, 6])).expect("head");
        (map, h)
    }

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    fn idx(v: &[u32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).expect("idx")
    }

    /// `window_scores` (training) and `contrast` (runtime) compute the same `s(δ)`; masked
    /// pairs do not count.
    #[test]
    fn training_and_runtime_scores_agree_and_masks_hold() {
        let (_m, h) = head(6);
        let a = rand(&[40, EMBED], 1);
        let v = rand(&[20, EMBED], 2);
        let ha = h.project_audio(&a).expect("ha");
        let hv = h.project_visual(&v).expect("hv");
        let t = h.spec().window();
        // Window 0: visual rows 0..9 with audio rows 10+δ.. for δ in offsets; window 1 masks
        // its last 3 pairs.
        let offs = h.spec().offsets.clone();
        let mut ai = Vec::new();
        let mut vi = Vec::new();
        let mut mask = Vec::new();
        for &d in &offs {
            for k in 0..t {
                vi.push(k as u32);
                ai.push((16 + k as i64 + d) as u32);
                mask.push(1f32);
            }
        }
        let w = offs.len();
        let mt = Tensor::from_vec(mask, (w, t), &Device::Cpu).expect("mask");
        let s = h
            .window_scores(&ha, &hv, &idx(&ai), &idx(&vi), &mt)
            .expect("scores")
            .to_vec1::<f32>()
            .expect("vec");
        let hav = ha.to_vec2::<f32>().expect("ha");
        let hvv = hv.to_vec2::<f32>().expect("hv");
        let m = h.spec().reach();
        let vis: Vec<Option<&[f32]>> = (0..t).map(|k| Some(hvv[k].as_slice())).collect();
        let aud: Vec<Option<&[f32]>> = (0..t + 2 * m)
            .map(|k| Some(hav[16 - m + k].as_slice()))
            .collect();
        let c = h.contrast(&vis, &aud).expect("contrast");
        let zero = offs.iter().position(|&d| d == 0).expect("0");
        let others: Vec<f32> = (0..w).filter(|&i| i != zero).map(|i| s[i]).collect();
        let expect = s[zero] - others.iter().sum::<f32>() / others.len() as f32;
        assert!((c - expect).abs() < 1e-5, "{c} vs {expect}");
        // Masked pairs do not count: changing their rows changes nothing.
        let mut mask2 = vec![1f32; t];
        for m in mask2.iter_mut().skip(t - 3) {
            *m = 0.0;
        }
        let m2 = Tensor::from_vec(mask2, (1, t), &Device::Cpu).expect("m");
        let base = h
            .window_scores(&ha, &hv, &idx(&ai[..t]), &idx(&vi[..t]), &m2)
            .expect("s");
        let mut vi2 = vi[..t].to_vec();
        for x in vi2.iter_mut().skip(t - 3) {
            *x = 19;
        }
        let moved = h
            .window_scores(&ha, &hv, &idx(&ai[..t]), &idx(&vi2), &m2)
            .expect("s");
        let d = (base - moved)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("d");
        assert!(d < 1e-6);
        // Too few ticks: no contrast.
        let few: Vec<Option<&[f32]>> = (0..t)
            .map(|k| (k < h.spec().min_ticks - 1).then(|| hvv[k].as_slice()))
            .collect();
        assert!(h.contrast(&few, &aud).is_none());
    }

    /// The analytic gradient of a loss on the window scores matches a central finite
    /// difference (f32: a step of 1e-2 keeps the error within a few per cent).
    #[test]
    fn gradient_check() {
        let (map, h) = head(4);
        let a = rand(&[12, EMBED], 3);
        let v = rand(&[12, EMBED], 4);
        let t = h.spec().window();
        let ai: Vec<u32> = (0..2 * t).map(|k| (k % 12) as u32).collect();
        let vi: Vec<u32> = (0..2 * t).map(|k| ((k * 5) % 12) as u32).collect();
        let mask = Tensor::ones((2, t), DType::F32, &Device::Cpu).expect("mask");
        let loss = |h: &SyncHead| -> Tensor {
            let ha = h.project_audio(&a).expect("ha");
            let hv = h.project_visual(&v).expect("hv");
            h.window_scores(&ha, &hv, &idx(&ai), &idx(&vi), &mask)
                .and_then(|l| l.sqr())
                .and_then(|l| l.sum_all())
                .expect("loss")
        };
        let grads = loss(&h).backward().expect("backward");
        let vars = map.data().lock().expect("vars").clone();
        let w = vars.get("audio.weight").expect("audio.weight");
        let g = grads
            .get(w.as_tensor())
            .expect("grad")
            .to_vec2::<f32>()
            .expect("g");
        let eps = 1e-2f32;
        for &(i, j) in &[(0usize, 0usize), (1, 7), (3, 100)] {
            let orig = w.as_tensor().to_vec2::<f32>().expect("w");
            let mut plus = orig.clone();
            plus[i][j] += eps;
            let mut minus = orig.clone();
            minus[i][j] -= eps;
            let set = |m: &Vec<Vec<f32>>| {
                let t = Tensor::new(m.clone(), &Device::Cpu).expect("t");
                w.set(&t).expect("set");
            };
            set(&plus);
            let lp = loss(&h).to_scalar::<f32>().expect("lp");
            set(&minus);
            let lm = loss(&h).to_scalar::<f32>().expect("lm");
            set(&orig);
            let fd = (lp - lm) / (2.0 * eps);
            let an = g[i][j];
            assert!(
                (fd - an).abs() <= 0.05 * an.abs().max(1e-3),
                "d/dW[{i},{j}]: finite difference {fd}, backward {an}"
            );
        }
    }

    #[test]
    fn the_shipped_head_loads_and_a_wrong_shape_is_refused() {
        let h = SyncHead::builtin(&Device::Cpu).expect("builtin");
        assert!(h.spec().rank >= 1);
        let json = Path::new("models/sync/sync.json");
        let mut spec = SyncSpec::parse(BUILTIN_JSON, json).expect("spec");
        spec.rank += 1;
        let err = SyncHead::from_bytes(spec, BUILTIN_WEIGHTS, Path::new("w"), &Device::Cpu)
            .expect_err("rank mismatch");
        assert!(err.to_string().contains("shape"), "{err}");
        let bad = BUILTIN_JSON.replace("avsense.sync/1", "avsense.sync/9");
        assert!(SyncSpec::parse(&bad, json).is_err());
        // The shipped spec records its training data.
        let spec = SyncSpec::parse(BUILTIN_JSON, json).expect("spec");
        assert!(spec.training["data_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 64));
    }

    #[test]
    fn score_projects_once_and_needs_enough_ticks() {
        let h = SyncHead::builtin(&Device::Cpu).expect("builtin");
        let sp = h.spec().clone();
        let e = [0.1f32; EMBED];
        let full = SyncInput {
            visual: vec![Some(e); sp.window()],
            audio: vec![Some(e); sp.window() + 2 * sp.reach()],
        };
        let mut short = full.clone();
        for v in short.visual.iter_mut().skip(sp.min_ticks - 1) {
            *v = None;
        }
        let s = h.score(&[full, short]).expect("score");
        assert!(s[0].is_some_and(|p| (0.0..=1.0).contains(&p)));
        assert!(s[1].is_none());
    }
}
