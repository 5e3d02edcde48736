//! `avsense train --model sync`: fits the audio-visual sync head
//! ([`avsense_nn::models::sync`]) on real talking clips, contrastively.
//!
//! Recipe (every random choice from one seeded generator):
//!
//! 1. **Clips** — real videos of one person talking with their own voice (`--media DIR`,
//!    every `*.mp4` in it; see README "Sync head" for the clips the shipped head used). The
//!    pipeline runs each once (faces, MFCC); Light-ASD's audio and visual embeddings are
//!    kept per 25 fps tick. The face is the clip's longest face track.
//! 2. **Speaking ticks** — from the clip's own audio: a tick speaks when a 10 ms frame in it
//!    is above −40 dBFS, gaps shorter than 0.3 s merged (how `talking/labels.json` was
//!    made).
//! 3. **Groups** (windows of ± `half_window` ticks around each speaking tick of the face):
//!    the face with its own audio aligned (the true pairing), the same audio at every
//!    other offset of the spec (±0.2–1 s), and `others` other clips' voices at one of
//!    their speaking ticks (TalkSet's "TFAudio" idea).
//! 4. **Fit** — a softmax over each group's window scores `s` with the true pairing as
//!    the target, full batch, AdamW; then the calibration `α, β` by class-balanced
//!    logistic regression of the contrast `c` (own voice aligned: 1; own voice shifted by
//!    0.3–2 s and other voices: 0). Leave-one-clip-out first (the held-out clip's AUCs and
//!    acceptance rates are the reported numbers), then on every clip for the shipped head.
//!
//! The spec written beside the weights records the clips (names, sha256), their digest,
//! the command and the held-out metrics.

use crate::dataset::{run_windows, Rng};
use avsense::av_encode::AsdStage;
use avsense::core::settings::Toggle;
use avsense::core::window::Window;
use avsense::PipelineConfig;
use avsense_nn::models::lightasd::{LightAsd, EMBED};
use avsense_nn::models::sync::{SyncHead, SyncInput, SyncSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of training the sync head.
#[derive(Debug, thiserror::Error)]
pub enum SyncTrainError {
    /// A clip could not be run or read.
    #[error("train sync: {path}: {reason}")]
    Clip {
        /// The clip.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Too little data.
    #[error("train sync: {0}")]
    Data(String),
    /// A tensor operation failed.
    #[error("train sync: {stage}")]
    Tensor {
        /// Where.
        stage: &'static str,
        /// The error.
        #[source]
        source: candle_core::Error,
    },
    /// Writing the weights failed.
    #[error("train sync: writing {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn tensor(stage: &'static str) -> impl Fn(candle_core::Error) -> SyncTrainError {
    move |source| SyncTrainError::Tensor { stage, source }
}

type Emb = [f32; EMBED];

/// One clip's embeddings.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ClipEmbeddings {
    /// File name.
    pub name: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Audio embedding per tick.
    #[serde(with = "emb_map")]
    pub audio: BTreeMap<u64, Emb>,
    /// The longest face track's visual embedding per tick.
    #[serde(with = "emb_map")]
    pub face: BTreeMap<u64, Emb>,
    /// Ticks where the clip's own audio speaks.
    pub speaking: std::collections::BTreeSet<u64>,
}

/// Embeddings as `{tick: [f32; 128]}` in JSON (serde has no impl for arrays this long).
mod emb_map {
    use super::Emb;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<u64, Emb>, s: S) -> Result<S::Ok, S::Error> {
        let v: BTreeMap<u64, &[f32]> = m.iter().map(|(k, e)| (*k, &e[..])).collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, Emb>, D::Error> {
        let v: BTreeMap<u64, Vec<f32>> = BTreeMap::deserialize(d)?;
        v.into_iter()
            .map(|(k, e)| {
                <Emb>::try_from(e.as_slice())
                    .map(|e| (k, e))
                    .map_err(|_| serde::de::Error::custom("an embedding of 128 values"))
            })
            .collect()
    }
}

/// Embeds `clip`, or reads the embeddings cached beside it (`<clip>.sync-embeddings.json`,
/// valid while the clip's sha256 is the same).
pub fn embed_clip_cached(
    base: &PipelineConfig,
    model: &LightAsd,
    clip: &Path,
) -> Result<ClipEmbeddings, SyncTrainError> {
    let cache = clip.with_extension("sync-embeddings.json");
    let sha =
        avsense::model_files::verify::sha256_file(clip).map_err(|e| SyncTrainError::Clip {
            path: clip.to_path_buf(),
            reason: e.to_string(),
        })?;
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Ok(e) = serde_json::from_str::<ClipEmbeddings>(&text) {
            if e.sha256 == sha {
                return Ok(e);
            }
        }
    }
    let e = embed_clip(base, model, clip)?;
    if let Ok(text) = serde_json::to_string(&e) {
        let _ = std::fs::write(&cache, text);
    }
    Ok(e)
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct SyncTrainOptions {
    /// Rank of the head.
    pub rank: usize,
    /// Ticks either side of the centre.
    pub half_window: usize,
    /// Audio offsets the contrast compares, ticks (0 included).
    pub offsets: Vec<i64>,
    /// Other-voice competitors per positive.
    pub others: usize,
    /// Full-batch steps.
    pub steps: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seed.
    pub seed: u64,
}

impl Default for SyncTrainOptions {
    fn default() -> Self {
        Self {
            rank: 8,
            half_window: 12,
            offsets: vec![-25, -20, -15, -10, -5, 0, 5, 10, 15, 20, 25],
            others: 4,
            steps: 200,
            lr: 1e-2,
            weight_decay: 0.1,
            seed: 23,
        }
    }
}

const TICK_NS: u64 = 40_000_000;
/// A tick speaks when a 10 ms frame in it is above this level.
const SPEAKING_DBFS: f32 = -40.0;
/// Silences shorter than this many ticks (0.3 s) are merged into the speech around them.
const MERGE_TICKS: u64 = 7;
/// Shifts of the own-audio negatives, ticks (0.3–2 s).
const SHIFT_MIN: i64 = 8;
const SHIFT_MAX: i64 = 50;

/// Runs the pipeline on `clip` and keeps its Light-ASD embeddings.
pub fn embed_clip(
    base: &PipelineConfig,
    model: &LightAsd,
    clip: &Path,
) -> Result<ClipEmbeddings, SyncTrainError> {
    let err = |reason: String| SyncTrainError::Clip {
        path: clip.to_path_buf(),
        reason,
    };
    let mut cfg = base.clone();
    cfg.speaker.mode = Toggle::On;
    // The head being trained is not the one the pipeline would load.
    cfg.speaker.sync_head = Toggle::Off;
    let windows: Vec<Window> =
        run_windows(&cfg, clip, true, true).map_err(|e| err(e.to_string()))?;
    let mut stage = AsdStage::new("sync", model.clone(), cfg.speaker.duration_ticks(), true);
    stage.capture();
    let mut speaking = std::collections::BTreeSet::new();
    let mut seen_audio = std::collections::BTreeSet::new();
    for w in &windows {
        let _ = stage.process(w);
        for a in &w.audio {
            if !seen_audio.insert(a.pts.0) {
                continue;
            }
            for (i, &db) in a.level_db.iter().enumerate() {
                if db > SPEAKING_DBFS {
                    let t = a.pts.0 + i as u64 * a.hop.0 + a.window.0 / 2;
                    speaking.insert(t / TICK_NS);
                }
            }
        }
    }
    let _ = stage.finish();
    let cap = stage.take_captured();
    // Merge short silences.
    let ticks: Vec<u64> = speaking.iter().copied().collect();
    for w in ticks.windows(2) {
        if w[1] - w[0] <= MERGE_TICKS + 1 {
            speaking.extend(w[0]..w[1]);
        }
    }
    let mut by_track: BTreeMap<u64, BTreeMap<u64, Emb>> = BTreeMap::new();
    for (_, track, tick, e) in cap.visual {
        by_track.entry(track).or_default().insert(tick, e);
    }
    let face = by_track
        .into_values()
        .max_by_key(|m| m.len())
        .ok_or_else(|| err("no face was found in the clip".into()))?;
    let sha256 = avsense::model_files::verify::sha256_file(clip).map_err(|e| err(e.to_string()))?;
    Ok(ClipEmbeddings {
        name: clip
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256,
        audio: cap.audio.into_iter().collect(),
        face,
        speaking,
    })
}

/// Every clip's embeddings as rows of two tables, with the row of each (clip, tick).
struct Tables {
    audio: Vec<f32>,
    visual: Vec<f32>,
    audio_row: Vec<BTreeMap<u64, u32>>,
    visual_row: Vec<BTreeMap<u64, u32>>,
}

impl Tables {
    fn new(clips: &[&ClipEmbeddings]) -> Self {
        let mut t = Tables {
            audio: Vec::new(),
            visual: Vec::new(),
            audio_row: Vec::new(),
            visual_row: Vec::new(),
        };
        for c in clips {
            let mut ar = BTreeMap::new();
            for (tick, e) in &c.audio {
                ar.insert(*tick, (t.audio.len() / EMBED) as u32);
                t.audio.extend_from_slice(&e[..]);
            }
            let mut vr = BTreeMap::new();
            for (tick, e) in &c.face {
                vr.insert(*tick, (t.visual.len() / EMBED) as u32);
                t.visual.extend_from_slice(&e[..]);
            }
            t.audio_row.push(ar);
            t.visual_row.push(vr);
        }
        t
    }
}

/// Windows as index pairs into [`Tables`], grouped: each group's first window is the true
/// pairing, the rest are its competitors (shifted own audio, other voices).
#[derive(Debug, Default)]
struct Groups {
    width: usize,
    ai: Vec<u32>,
    vi: Vec<u32>,
    mask: Vec<f32>,
    groups: Vec<Vec<u32>>,
}

impl Groups {
    fn windows(&self) -> usize {
        self.mask.len() / self.width.max(1)
    }

    /// Adds the window of face `fc` around `centre` with the audio of clip `ac` around
    /// `audio_centre`; its index, or None when fewer than `min_ticks` pairs exist.
    fn window(
        &mut self,
        tables: &Tables,
        half: i64,
        min_ticks: usize,
        (fc, centre): (usize, u64),
        (ac, audio_centre): (usize, i64),
    ) -> Option<u32> {
        let mut rows = Vec::with_capacity(self.width);
        for k in -half..=half {
            let v = centre
                .checked_add_signed(k)
                .and_then(|t| tables.visual_row[fc].get(&t));
            let a = u64::try_from(audio_centre + k)
                .ok()
                .and_then(|t| tables.audio_row[ac].get(&t));
            match (v, a) {
                (Some(&v), Some(&a)) => rows.push((a, v, 1.0)),
                _ => rows.push((0, 0, 0.0)),
            }
        }
        if rows.iter().filter(|r| r.2 > 0.0).count() < min_ticks {
            return None;
        }
        let id = self.windows() as u32;
        for (a, v, m) in rows {
            self.ai.push(a);
            self.vi.push(v);
            self.mask.push(m);
        }
        Some(id)
    }
}

/// The contrastive groups of `clips` (indices into `tables` built from the same list):
/// per speaking centre of each face, its own audio at every offset of the spec (offset 0
/// first, the true pairing) and `others` other voices.
fn groups_of(
    tables: &Tables,
    clips: &[&ClipEmbeddings],
    opts: &SyncTrainOptions,
    spec: &SyncSpec,
    rng: &mut Rng,
) -> Groups {
    let half = spec.half_window as i64;
    let mut g = Groups {
        width: spec.window(),
        ..Default::default()
    };
    for (ci, c) in clips.iter().enumerate() {
        for &centre in c.speaking.iter().filter(|t| c.face.contains_key(t)) {
            let Some(pos) = g.window(
                tables,
                half,
                spec.min_ticks,
                (ci, centre),
                (ci, centre as i64),
            ) else {
                continue;
            };
            let mut group = vec![pos];
            for &d in spec.offsets.iter().filter(|&&d| d != 0) {
                group.extend(g.window(
                    tables,
                    half,
                    spec.min_ticks,
                    (ci, centre),
                    (ci, centre as i64 + d),
                ));
            }
            let others: Vec<usize> = (0..clips.len()).filter(|&j| j != ci).collect();
            for _ in 0..opts.others {
                if others.is_empty() {
                    break;
                }
                let o = others[rng.below(others.len())];
                let sp: Vec<u64> = clips[o].speaking.iter().copied().collect();
                if sp.is_empty() {
                    continue;
                }
                let u = sp[rng.below(sp.len())];
                group.extend(g.window(tables, half, spec.min_ticks, (ci, centre), (o, u as i64)));
            }
            if group.len() > 1 {
                g.groups.push(group);
            }
        }
    }
    g
}

/// Fits `W_a, W_v, w` by a softmax over each group (the true pairing must win).
fn fit(
    clips: &[&ClipEmbeddings],
    opts: &SyncTrainOptions,
    spec: &SyncSpec,
    rng: &mut Rng,
) -> Result<(VarMap, SyncHead), SyncTrainError> {
    let dev = Device::Cpu;
    let tables = Tables::new(clips);
    let g = groups_of(&tables, clips, opts, spec, rng);
    if g.groups.is_empty() {
        return Err(SyncTrainError::Data(
            "no speaking face window in the training clips".into(),
        ));
    }
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
    let head = SyncHead::new(vb, spec.clone()).map_err(tensor("init"))?;
    // Seeded Glorot-uniform init, biases zero.
    let mut init = Rng::new(opts.seed);
    {
        let vars = map
            .data()
            .lock()
            .map_err(|_| SyncTrainError::Data("var map poisoned".into()))?;
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let var = &vars[name];
            let dims = var.as_tensor().dims().to_vec();
            let n: usize = dims.iter().product();
            let vals: Vec<f32> = if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                let (fo, fi) = (dims[0] as f64, dims[dims.len() - 1] as f64);
                let lim = (6.0 / (fi + fo)).sqrt();
                (0..n).map(|_| init.uniform(-lim, lim) as f32).collect()
            };
            let t = Tensor::from_vec(vals, dims.as_slice(), &dev).map_err(tensor("init"))?;
            var.set(&t).map_err(tensor("init"))?;
        }
    }
    let a = Tensor::from_slice(&tables.audio, (tables.audio.len() / EMBED, EMBED), &dev)
        .map_err(tensor("tables"))?;
    let v = Tensor::from_slice(&tables.visual, (tables.visual.len() / EMBED, EMBED), &dev)
        .map_err(tensor("tables"))?;
    let ai = Tensor::from_slice(&g.ai, g.ai.len(), &dev).map_err(tensor("index"))?;
    let vi = Tensor::from_slice(&g.vi, g.vi.len(), &dev).map_err(tensor("index"))?;
    let mask =
        Tensor::from_slice(&g.mask, (g.windows(), g.width), &dev).map_err(tensor("index"))?;
    // Groups padded to one width: padding points at window 0 and is masked out by −1e4.
    let gw = g.groups.iter().map(Vec::len).max().unwrap_or(1);
    let mut gi = Vec::with_capacity(g.groups.len() * gw);
    let mut gm = Vec::with_capacity(g.groups.len() * gw);
    for grp in &g.groups {
        for k in 0..gw {
            gi.push(grp.get(k).copied().unwrap_or(0));
            gm.push(if k < grp.len() { 0f32 } else { -1e4 });
        }
    }
    let gi = Tensor::from_vec(gi, g.groups.len() * gw, &dev).map_err(tensor("groups"))?;
    let gm = Tensor::from_vec(gm, (g.groups.len(), gw), &dev).map_err(tensor("groups"))?;
    let mut opt = candle_nn::AdamW::new(
        map.all_vars(),
        candle_nn::ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..Default::default()
        },
    )
    .map_err(tensor("optimiser"))?;
    let n_groups = g.groups.len();
    for _ in 0..opts.steps {
        let loss = (|| {
            let ha = head.project_audio(&a)?;
            let hv = head.project_visual(&v)?;
            let s = head.window_scores(&ha, &hv, &ai, &vi, &mask)?;
            let logits = (s.index_select(&gi, 0)?.reshape((n_groups, gw))? + &gm)?;
            let lsm = candle_nn::ops::log_softmax(&logits, 1)?;
            lsm.narrow(1, 0, 1)?.mean_all()?.neg()
        })()
        .map_err(tensor("loss"))?;
        opt.backward_step(&loss).map_err(tensor("step"))?;
    }
    Ok((map, head))
}

/// The sync input of face `c` at `centre` with the audio of `a` centred at `audio_centre`.
fn input(
    c: &ClipEmbeddings,
    centre: u64,
    a: &ClipEmbeddings,
    audio_centre: i64,
    spec: &SyncSpec,
) -> SyncInput {
    let h = spec.half_window as i64;
    let m = spec.reach() as i64;
    let visual = (-h..=h)
        .map(|k| {
            centre
                .checked_add_signed(k)
                .and_then(|t| c.face.get(&t).copied())
        })
        .collect();
    let audio = (-h - m..=h + m)
        .map(|k| {
            u64::try_from(audio_centre + k)
                .ok()
                .and_then(|t| a.audio.get(&t).copied())
        })
        .collect();
    SyncInput { visual, audio }
}

/// Contrasts (own voice aligned, shifted, other voices).
type Contrasts = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Contrasts of face `c`'s speaking ticks: with its own voice aligned, shifted by 0.3–2 s,
/// and with the voices of `others`.
fn contrasts(
    head: &SyncHead,
    c: &ClipEmbeddings,
    others: &[&ClipEmbeddings],
    rng: &mut Rng,
) -> Result<Contrasts, SyncTrainError> {
    let spec = head.spec();
    let (mut own, mut shifted, mut other) = (Vec::new(), Vec::new(), Vec::new());
    let centres: Vec<u64> = c
        .speaking
        .iter()
        .copied()
        .filter(|t| c.face.contains_key(t))
        .collect();
    let uncal = head.clone().with_calibration(1.0, 0.0);
    let logit = |p: f32| (p / (1.0 - p)).ln();
    let run = |inputs: Vec<SyncInput>, into: &mut Vec<f32>| -> Result<(), SyncTrainError> {
        let ps = uncal
            .score(&inputs)
            .map_err(|e| SyncTrainError::Data(e.to_string()))?;
        into.extend(
            ps.into_iter()
                .flatten()
                .map(|p| logit(p.clamp(1e-7, 1.0 - 1e-7))),
        );
        Ok(())
    };
    run(
        centres
            .iter()
            .map(|&t| input(c, t, c, t as i64, spec))
            .collect(),
        &mut own,
    )?;
    let mut sh = Vec::new();
    for &t in &centres {
        let mag = SHIFT_MIN + rng.below((SHIFT_MAX - SHIFT_MIN + 1) as usize) as i64;
        let d = if rng.unit() < 0.5 { -mag } else { mag };
        if c.speaking.contains(&(t as i64 + d).max(0).unsigned_abs()) {
            sh.push(input(c, t, c, t as i64 + d, spec));
        }
    }
    run(sh, &mut shifted)?;
    let mut ot = Vec::new();
    for &t in &centres {
        for o in others {
            let sp: Vec<u64> = o.speaking.iter().copied().collect();
            if let Some(&u) = sp.get(rng.below(sp.len().max(1))) {
                ot.push(input(c, t, o, u as i64, spec));
            }
        }
    }
    run(ot, &mut other)?;
    Ok((own, shifted, other))
}

/// `α, β` of `p = σ(α c + β)`: class-balanced logistic regression of own (1) against
/// shifted and other voices (0), by gradient descent.
fn calibrate(own: &[f32], neg: &[f32]) -> (f32, f32) {
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let (wp, wn) = (0.5 / own.len().max(1) as f64, 0.5 / neg.len().max(1) as f64);
    for _ in 0..3000 {
        let (mut ga, mut gb) = (0.0, 0.0);
        for (xs, y, w) in [(own, 1.0, wp), (neg, 0.0, wn)] {
            for &x in xs {
                let x = f64::from(x);
                let p = 1.0 / (1.0 + (-(a * x + b)).exp());
                ga += w * (p - y) * x;
                gb += w * (p - y);
            }
        }
        a -= 0.5 * ga;
        b -= 0.5 * gb;
    }
    (a as f32, b as f32)
}

/// Held-out numbers of a fit.
#[derive(Debug, Clone, Serialize)]
pub struct Heldout {
    /// The held-out clip.
    pub clip: String,
    /// Scored ticks: own voice aligned, own voice shifted, other voices.
    pub ticks: (usize, usize, usize),
    /// AUC of own-aligned against other voices.
    pub auc_other: f64,
    /// AUC of own-aligned against own-shifted.
    pub auc_shifted: f64,
    /// Share of own-aligned ticks at p ≥ threshold.
    pub recall: f64,
    /// Share of other-voice ticks at p < threshold.
    pub other_rejected: f64,
    /// Share of shifted ticks at p < threshold.
    pub shifted_rejected: f64,
}

fn auc(pos: &[f32], neg: &[f32]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for &a in pos {
        for &b in neg {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

/// Trains on `clips`: leave-one-clip-out numbers, then the head on every clip.
pub fn train_sync(
    clips: &[ClipEmbeddings],
    opts: &SyncTrainOptions,
    log: &dyn Fn(&str),
) -> Result<(VarMap, SyncSpec, Vec<Heldout>), SyncTrainError> {
    if clips.len() < 2 {
        return Err(SyncTrainError::Data(format!(
            "{} clip(s): at least 2 are needed (other voices are the negatives)",
            clips.len()
        )));
    }
    let spec0 = SyncSpec::new(opts.rank, opts.half_window, opts.offsets.clone());
    let mut rng = Rng::new(opts.seed ^ 0x5EED);
    // Out-of-fold contrasts of every clip (each from the head that did not see it).
    let mut folds = Vec::new();
    for (i, c) in clips.iter().enumerate() {
        let train: Vec<&ClipEmbeddings> = clips
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, c)| c)
            .collect();
        let (_, head) = fit(&train, opts, &spec0, &mut rng)?;
        let (own, shifted, other) = contrasts(&head, c, &train, &mut rng)?;
        folds.push((head, own, shifted, other));
    }
    // The calibration is fitted on the out-of-fold contrasts: a head's contrasts on the
    // clips it was trained on are larger than on clips it never saw.
    let (own_all, neg_all): (Vec<f32>, Vec<f32>) = {
        let own: Vec<f32> = folds.iter().flat_map(|f| f.1.iter().copied()).collect();
        let neg: Vec<f32> = folds
            .iter()
            .flat_map(|f| f.2.iter().chain(&f.3).copied())
            .collect();
        (own, neg)
    };
    let (alpha, beta) = calibrate(&own_all, &neg_all);
    let mut reports = Vec::new();
    for (c, (head, own, shifted, other)) in clips.iter().zip(folds) {
        let head = head.with_calibration(alpha, beta);
        let p = |x: &f32| head.probability(*x) >= spec0.threshold;
        let share = |v: &[f32], want: bool| {
            v.iter().filter(|x| p(x) == want).count() as f64 / v.len().max(1) as f64
        };
        let r = Heldout {
            clip: c.name.clone(),
            ticks: (own.len(), shifted.len(), other.len()),
            auc_other: auc(&own, &other),
            auc_shifted: auc(&own, &shifted),
            recall: share(&own, true),
            other_rejected: share(&other, false),
            shifted_rejected: share(&shifted, false),
        };
        log(&format!(
            "held out {} (calibrated out of fold): AUC own vs other voices {:.3}, vs shifted {:.3}; at p ≥ {}: own {:.3} accepted, other voices {:.3} and shifted {:.3} rejected ({} / {} / {} ticks)",
            r.clip, r.auc_other, r.auc_shifted, spec0.threshold, r.recall, r.other_rejected, r.shifted_rejected, r.ticks.0, r.ticks.1, r.ticks.2
        ));
        reports.push(r);
    }
    let all: Vec<&ClipEmbeddings> = clips.iter().collect();
    let (map, head) = fit(&all, opts, &spec0, &mut rng)?;
    let mut spec = head.with_calibration(alpha, beta).spec().clone();
    log(&format!(
        "trained on every clip: calibration α {:.3}, β {:.3}",
        spec.alpha, spec.beta
    ));
    let mut named: Vec<(String, String)> = clips
        .iter()
        .map(|c| (c.name.clone(), c.sha256.clone()))
        .collect();
    named.sort();
    let digest_text: String = named.iter().map(|(n, h)| format!("{h}  {n}\n")).collect();
    let digest = avsense::model_files::verify::sha256_bytes(digest_text.as_bytes());
    spec.training = serde_json::json!({
        "command": "avsense train --model sync --media <dir>",
        "clips": named.iter().map(|(n, h)| serde_json::json!({"name": n, "sha256": h})).collect::<Vec<_>>(),
        "data_digest": digest,
        "data_digest_of": "sha256 of the lines '<sha256>  <name>\\n' of the clips, sorted by name",
        "options": {
            "rank": opts.rank, "half_window": opts.half_window, "offsets": opts.offsets,
            "others": opts.others, "steps": opts.steps, "lr": opts.lr,
            "weight_decay": opts.weight_decay, "seed": opts.seed,
        },
        "leave_one_clip_out": reports,
    });
    Ok((map, spec, reports))
}

/// Writes `sync.safetensors` + `sync.json` into `dir`.
pub fn save_sync(dir: &Path, map: &VarMap, spec: &SyncSpec) -> Result<(), SyncTrainError> {
    let werr = |path: PathBuf, reason: String| SyncTrainError::Write { path, reason };
    std::fs::create_dir_all(dir).map_err(|e| werr(dir.to_path_buf(), e.to_string()))?;
    let w = dir.join("sync.safetensors");
    map.save(&w).map_err(|e| werr(w.clone(), e.to_string()))?;
    let j = dir.join("sync.json");
    let text = serde_json::to_string_pretty(spec).map_err(|e| werr(j.clone(), e.to_string()))?;
    std::fs::write(&j, text + "\n").map_err(|e| werr(j.clone(), e.to_string()))?;
    Ok(())
}
