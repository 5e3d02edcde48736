//! `avsense train`: fits a learned fusion model ([`LearnedKind`]) on a dataset from
//! `avsense dataset build`, on the CPU with candle's AdamW, and writes
//! `<kind>.safetensors` + `<kind>.json` ([`ModelSpec`]).
//!
//! * Split by mix: mixes whose id is a multiple of `val_every` are validation, the rest
//!   train (windows of one mix never straddle the split).
//! * Loss: class-balanced binary cross-entropy on the labelled association pairs (positives
//!   weighted by negatives/positives, at most 20) and off-screen segments, plus
//!   class-weighted cross-entropy (inverse square-root frequency) on the window classes,
//!   weighted ½.
//! * Initial weights: Glorot-uniform from the seeded generator, biases zero, so a seed and
//!   a dataset give the same model.
//! * The epoch with the lowest validation loss is kept.

use crate::dataset::{GraphRecord, Rng};
use avsense_nn::models::fusion::batch::GraphBatch;
use avsense_nn::models::fusion::EVENT_CLASSES;
use avsense_nn::models::fusion::{FusionNetConfig, LearnedKind, LearnedModel, ModelSpec};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("train {kind}: {reason}")]
    Candle {
        /// Model.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The dataset cannot train this model.
    #[error("train: {0}")]
    Data(String),
    /// Writing the model failed.
    #[error("train: writing {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Which model.
    pub kind: LearnedKind,
    /// Its shape.
    pub net: FusionNetConfig,
    /// Passes over the training graphs.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Graphs per step.
    pub batch: usize,
    /// Seed (initial weights, batch order).
    pub seed: u64,
    /// Mixes with `mix % val_every == 0` validate.
    pub val_every: u32,
    /// Association threshold written into the spec.
    pub threshold: f32,
}

impl TrainOptions {
    /// Defaults for `kind`.
    pub fn new(kind: LearnedKind) -> Self {
        Self {
            kind,
            net: FusionNetConfig::default(),
            epochs: 40,
            lr: 3e-3,
            batch: 32,
            seed: 17,
            val_every: 5,
            threshold: 0.5,
        }
    }
}

/// Validation metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    /// Mean loss.
    pub loss: f64,
    /// Association: true positives, false positives, false negatives, labelled pairs.
    pub assoc_counts: [usize; 4],
    /// Association precision / recall / F1 at the threshold.
    pub assoc_prf: [f64; 3],
    /// The same over the pairs of segments inside a placed sound only (what the pipeline
    /// asks: it associates detected sounds, not room noise).
    pub assoc_prf_in_sounds: [f64; 3],
    /// Off-screen accuracy at 0.5 and labelled segments.
    pub offscreen: (f64, usize),
    /// Window class accuracy and labelled windows.
    pub event: (f64, usize),
    /// Per window class: recall and count.
    pub event_recall: Vec<(String, f64, usize)>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Model.
    pub kind: LearnedKind,
    /// Graphs used for training / validation.
    pub graphs: [usize; 2],
    /// Parameters.
    pub parameters: usize,
    /// Epochs run.
    pub epochs: usize,
    /// The kept epoch (lowest validation loss).
    pub best_epoch: usize,
    /// Training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Validation metrics of the kept epoch.
    pub validation: Metrics,
    /// Seconds.
    pub seconds: f64,
}

fn ce(kind: LearnedKind) -> impl Fn(candle_core::Error) -> TrainError {
    move |e| TrainError::Candle {
        kind: kind.name(),
        reason: e.to_string(),
    }
}

/// Weighted binary cross-entropy on logits: Σ w·(max(x,0) − x·y + log(1 + e^−|x|)) / Σ w.
fn bce(x: &Tensor, y: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let l = ((x.relu()? - (x * y)?)? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    (l * w)?.sum_all()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

/// Class-weighted cross-entropy.
fn weighted_ce(logits: &Tensor, target: &[u32], class_w: &[f32]) -> candle_core::Result<Tensor> {
    let dev = logits.device();
    let ls = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let t = Tensor::from_vec(target.to_vec(), (target.len(), 1), dev)?;
    let picked = ls.gather(&t, 1)?.squeeze(1)?;
    let w: Vec<f32> = target.iter().map(|c| class_w[*c as usize]).collect();
    let ws: f32 = w.iter().sum();
    let w = Tensor::from_vec(w, target.len(), dev)?;
    (picked * w)?.sum_all()?.neg()? / ws.max(1e-6) as f64
}

struct LossParts {
    total: Tensor,
    /// Per pair: logit, label, whether its segment lies inside a placed sound.
    assoc_logits: Vec<(f32, i8, bool)>,
    off_logits: Vec<(f32, i8)>,
    event_pred: Vec<(usize, i8)>,
}

fn batch_loss(
    model: &LearnedModel,
    recs: &[&GraphRecord],
    pos_w: f32,
    class_w: &[f32],
    dev: &Device,
    keep: bool,
) -> candle_core::Result<Option<LossParts>> {
    let parts: Vec<&avsense_nn::models::fusion::batch::GraphParts> =
        recs.iter().map(|r| &r.graph).collect();
    let b = GraphBatch::new(&parts, dev)?;
    let out = model.forward(&b)?;
    let assoc_l: Vec<i8> = recs.iter().flat_map(|r| r.assoc.iter().copied()).collect();
    let off_l: Vec<i8> = recs
        .iter()
        .flat_map(|r| r.offscreen.iter().copied())
        .collect();
    let mut terms: Vec<Tensor> = Vec::new();
    let mut binary = |logits: &Tensor, labels: &[i8], pw: f32| -> candle_core::Result<()> {
        let idx: Vec<u32> = (0..labels.len() as u32)
            .filter(|i| labels[*i as usize] >= 0)
            .collect();
        if idx.is_empty() {
            return Ok(());
        }
        let n = idx.len();
        let y: Vec<f32> = idx.iter().map(|i| f32::from(labels[*i as usize])).collect();
        let w: Vec<f32> = y.iter().map(|v| if *v > 0.5 { pw } else { 1.0 }).collect();
        let x = logits.index_select(&Tensor::from_vec(idx, n, dev)?, 0)?;
        terms.push(bce(
            &x,
            &Tensor::from_vec(y, n, dev)?,
            &Tensor::from_vec(w, n, dev)?,
        )?);
        Ok(())
    };
    binary(&out.association, &assoc_l, pos_w)?;
    binary(&out.offscreen, &off_l, 1.0)?;
    let ev: Vec<(u32, u32)> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.event >= 0)
        .map(|(i, r)| (i as u32, r.event as u32))
        .collect();
    if !ev.is_empty() {
        let rows = Tensor::from_vec(ev.iter().map(|e| e.0).collect::<Vec<_>>(), ev.len(), dev)?;
        let target: Vec<u32> = ev.iter().map(|e| e.1).collect();
        terms.push((weighted_ce(&out.event.index_select(&rows, 0)?, &target, class_w)? * 0.5)?);
    }
    if terms.is_empty() {
        return Ok(None);
    }
    let mut total = terms[0].clone();
    for t in &terms[1..] {
        total = (total + t)?;
    }
    let (assoc_logits, off_logits, event_pred) = if keep {
        let a: Vec<f32> = out.association.to_vec1()?;
        let o: Vec<f32> = out.offscreen.to_vec1()?;
        let e: Vec<u32> = out.event.argmax(D::Minus1)?.to_vec1()?;
        let in_sound = recs.iter().flat_map(|r| {
            r.graph.cross.iter().map(move |(_, s, _)| {
                r.graph
                    .segments
                    .iter()
                    .position(|q| q == s)
                    .is_some_and(|i| r.offscreen[i] >= 0)
            })
        });
        (
            a.into_iter()
                .zip(assoc_l)
                .zip(in_sound)
                .map(|((x, y), i)| (x, y, i))
                .collect(),
            o.into_iter().zip(off_l).collect(),
            e.into_iter()
                .map(|c| c as usize)
                .zip(recs.iter().map(|r| r.event))
                .collect(),
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    Ok(Some(LossParts {
        total,
        assoc_logits,
        off_logits,
        event_pred,
    }))
}

fn init_weights(vm: &VarMap, rng: &mut Rng) -> candle_core::Result<usize> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut count = 0;
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        count += n;
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; n]
        } else {
            let (fan_out, fan_in) = match dims.as_slice() {
                [o, i] => (*o, *i),
                [x] => (*x, *x),
                _ => (n, n),
            };
            let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
            (0..n).map(|_| rng.uniform(-b, b) as f32).collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(count)
}

fn snapshot(vm: &VarMap) -> candle_core::Result<HashMap<String, Tensor>> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock".into()))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(vm: &VarMap, snap: &HashMap<String, Tensor>) -> candle_core::Result<()> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("varmap lock".into()))?;
    for (k, v) in data.iter() {
        if let Some(t) = snap.get(k) {
            v.set(t)?;
        }
    }
    Ok(())
}

fn evaluate(
    model: &LearnedModel,
    val: &[&GraphRecord],
    opts: &TrainOptions,
    pos_w: f32,
    class_w: &[f32],
    dev: &Device,
) -> candle_core::Result<Metrics> {
    let mut m = Metrics::default();
    let (mut loss, mut steps) = (0.0, 0);
    let mut pairs = PairCounts::default();
    let (mut oc, mut on) = (0, 0);
    let k = EVENT_CLASSES.len();
    let mut ev_hit = vec![0usize; k];
    let mut ev_n = vec![0usize; k];
    let thr_logit = (opts.threshold / (1.0 - opts.threshold)).ln();
    for chunk in val.chunks(opts.batch.max(1)) {
        let Some(p) = batch_loss(model, chunk, pos_w, class_w, dev, true)? else {
            continue;
        };
        loss += f64::from(p.total.to_scalar::<f32>()?);
        steps += 1;
        for (x, y, in_sound) in p.assoc_logits {
            if y >= 0 {
                pairs.add(x >= thr_logit, y == 1, in_sound);
            }
        }
        for (x, y) in p.off_logits {
            if y >= 0 {
                on += 1;
                oc += usize::from((x >= 0.0) == (y == 1));
            }
        }
        for (c, y) in p.event_pred {
            if y >= 0 {
                ev_n[y as usize] += 1;
                ev_hit[y as usize] += usize::from(c == y as usize);
            }
        }
    }
    m.loss = loss / steps.max(1) as f64;
    pairs.fill(&mut m);
    m.offscreen = (oc as f64 / on.max(1) as f64, on);
    let total: usize = ev_n.iter().sum();
    m.event = (
        ev_hit.iter().sum::<usize>() as f64 / total.max(1) as f64,
        total,
    );
    m.event_recall = (0..k)
        .map(|c| {
            (
                EVENT_CLASSES[c].to_string(),
                ev_hit[c] as f64 / ev_n[c].max(1) as f64,
                ev_n[c],
            )
        })
        .collect();
    Ok(m)
}

/// Association confusion counts, over all labelled pairs and over the pairs of segments
/// inside a placed sound.
#[derive(Debug, Default)]
struct PairCounts {
    all: [usize; 3],
    inside: [usize; 3],
    labelled: usize,
}

impl PairCounts {
    /// One labelled pair: predicted source?, labelled source?, segment inside a sound?
    fn add(&mut self, predicted: bool, positive: bool, in_sound: bool) {
        self.labelled += 1;
        let cell = match (predicted, positive) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => return,
        };
        self.all[cell] += 1;
        if in_sound {
            self.inside[cell] += 1;
        }
    }

    fn fill(&self, m: &mut Metrics) {
        let [tp, fp, fneg] = self.all;
        m.assoc_counts = [tp, fp, fneg, self.labelled];
        m.assoc_prf = prf(tp, fp, fneg);
        m.assoc_prf_in_sounds = prf(self.inside[0], self.inside[1], self.inside[2]);
    }
}

/// Precision, recall, F1.
fn prf(tp: usize, fp: usize, fneg: usize) -> [f64; 3] {
    let p = tp as f64 / (tp + fp).max(1) as f64;
    let r = tp as f64 / (tp + fneg).max(1) as f64;
    [
        p,
        r,
        if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        },
    ]
}

/// Trains one model on `records`; `log` gets a line per epoch.
pub fn train(
    records: &[GraphRecord],
    opts: &TrainOptions,
    log: &dyn Fn(&str),
) -> Result<(VarMap, ModelSpec, TrainReport), TrainError> {
    let t0 = std::time::Instant::now();
    let err = ce(opts.kind);
    let dev = Device::Cpu;
    let (val, tr): (Vec<&GraphRecord>, Vec<&GraphRecord>) = records
        .iter()
        .partition(|r| r.mix % opts.val_every.max(1) == 0);
    if tr.is_empty() || val.is_empty() {
        return Err(TrainError::Data(format!(
            "{} training and {} validation graphs (mixes with id % {} == 0 validate): need both",
            tr.len(),
            val.len(),
            opts.val_every
        )));
    }
    let pos = tr
        .iter()
        .flat_map(|r| &r.assoc)
        .filter(|a| **a == 1)
        .count();
    let neg = tr
        .iter()
        .flat_map(|r| &r.assoc)
        .filter(|a| **a == 0)
        .count();
    let pos_w = if pos == 0 {
        1.0
    } else {
        (neg as f32 / pos as f32).clamp(1.0, 20.0)
    };
    let k = EVENT_CLASSES.len();
    let mut counts = vec![0usize; k];
    for r in &tr {
        if r.event >= 0 {
            counts[r.event as usize] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    let class_w: Vec<f32> = counts
        .iter()
        .map(|c| {
            if *c == 0 {
                0.0
            } else {
                (total as f32 / (k as f32 * *c as f32)).sqrt()
            }
        })
        .collect();
    let vm = VarMap::new();
    let model = LearnedModel::new(
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
        opts.kind,
        opts.net,
    )
    .map_err(&err)?;
    let mut rng = Rng::new(opts.seed);
    let parameters = init_weights(&vm, &mut rng).map_err(&err)?;
    let mut adam = candle_nn::AdamW::new(
        vm.all_vars(),
        candle_nn::ParamsAdamW {
            lr: opts.lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )
    .map_err(&err)?;
    log(&format!(
        "{}: {} train / {} validation graphs, {parameters} parameters, {pos} positive / {neg} negative pairs (positive weight {pos_w:.1})",
        opts.kind.name(),
        tr.len(),
        val.len()
    ));
    let mut order: Vec<usize> = (0..tr.len()).collect();
    let mut best: Option<(f64, usize, HashMap<String, Tensor>, Metrics)> = None;
    let mut train_loss = Vec::new();
    for epoch in 0..opts.epochs {
        rng.shuffle(&mut order);
        let (mut sum, mut steps) = (0.0, 0);
        for chunk in order.chunks(opts.batch.max(1)) {
            let recs: Vec<&GraphRecord> = chunk.iter().map(|i| tr[*i]).collect();
            let Some(p) = batch_loss(&model, &recs, pos_w, &class_w, &dev, false).map_err(&err)?
            else {
                continue;
            };
            adam.backward_step(&p.total).map_err(&err)?;
            sum += f64::from(p.total.to_scalar::<f32>().map_err(&err)?);
            steps += 1;
        }
        let tl = sum / steps.max(1) as f64;
        train_loss.push(tl);
        let m = evaluate(&model, &val, opts, pos_w, &class_w, &dev).map_err(&err)?;
        log(&format!(
            "{} epoch {:>3}: train {tl:.4}  val {:.4}  assoc P/R/F1 {:.2}/{:.2}/{:.2}  offscreen {:.3}  event {:.3}",
            opts.kind.name(),
            epoch + 1,
            m.loss,
            m.assoc_prf[0],
            m.assoc_prf[1],
            m.assoc_prf[2],
            m.offscreen.0,
            m.event.0
        ));
        if best.as_ref().is_none_or(|b| m.loss < b.0) {
            best = Some((m.loss, epoch + 1, snapshot(&vm).map_err(&err)?, m));
        }
    }
    let Some((_, best_epoch, snap, validation)) = best else {
        return Err(TrainError::Data("no epoch ran (epochs = 0?)".into()));
    };
    restore(&vm, &snap).map_err(&err)?;
    let report = TrainReport {
        kind: opts.kind,
        graphs: [tr.len(), val.len()],
        parameters,
        epochs: opts.epochs,
        best_epoch,
        train_loss,
        validation,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let spec = ModelSpec {
        kind: opts.kind,
        net: opts.net,
        event_names: EVENT_CLASSES.iter().map(|s| s.to_string()).collect(),
        threshold: opts.threshold,
        training: serde_json::json!({
            "lr": opts.lr, "batch": opts.batch, "seed": opts.seed, "epochs": opts.epochs,
            "val_every": opts.val_every, "positive_weight": pos_w,
            "report": report,
        }),
    };
    Ok((vm, spec, report))
}

/// Writes `dir/<kind>.safetensors` and `dir/<kind>.json`.
pub fn save(dir: &Path, vm: &VarMap, spec: &ModelSpec) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let w = dir.join(format!("{}.safetensors", spec.kind.name()));
    vm.save(&w).map_err(|e| TrainError::Write {
        path: w.clone(),
        reason: e.to_string(),
    })?;
    let j = dir.join(format!("{}.json", spec.kind.name()));
    let text = serde_json::to_string_pretty(spec).map_err(|e| TrainError::Write {
        path: j.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&j, text + "\n").map_err(|e| TrainError::Write {
        path: j,
        reason: e.to_string(),
    })
}

/// Scores a model on labelled graphs (e.g. a dataset built with another seed): the same
/// metrics as validation.
pub fn score(
    model: &LearnedModel,
    records: &[GraphRecord],
    threshold: f32,
) -> Result<Metrics, TrainError> {
    let opts = TrainOptions {
        threshold,
        ..TrainOptions::new(LearnedKind::Gnn)
    };
    let recs: Vec<&GraphRecord> = records.iter().collect();
    let class_w = vec![1.0f32; EVENT_CLASSES.len()];
    evaluate(model, &recs, &opts, 1.0, &class_w, &Device::Cpu).map_err(|e| TrainError::Candle {
        kind: "score",
        reason: e.to_string(),
    })
}

/// Scores the `rules` strategy on labelled graphs: a pair is the source when
/// `compatibility × co-presence ≥ min_score` (edge features 0 and 1); a segment is
/// off-screen when none of its pairs is. `rules` has no window classes.
pub fn score_rules(records: &[GraphRecord], min_score: f32) -> Metrics {
    let mut pairs = PairCounts::default();
    let (mut oc, mut on) = (0, 0);
    for r in records {
        let g = &r.graph;
        let pred: Vec<bool> = g
            .cross
            .iter()
            .map(|(e, _, _)| {
                let f = g.edge_attr[*e as usize];
                f[0] * f[1] >= min_score
            })
            .collect();
        for ((p, y), (_, s, _)) in pred.iter().zip(&r.assoc).zip(&g.cross) {
            if *y < 0 {
                continue;
            }
            let in_sound = g
                .segments
                .iter()
                .position(|q| q == s)
                .is_some_and(|i| r.offscreen[i] >= 0);
            pairs.add(*p, *y == 1, in_sound);
        }
        for (si, s) in g.segments.iter().enumerate() {
            let y = r.offscreen[si];
            if y < 0 {
                continue;
            }
            let any = g.cross.iter().zip(&pred).any(|(c, p)| c.1 == *s && *p);
            on += 1;
            oc += usize::from(any != (y == 1));
        }
    }
    let mut m = Metrics {
        loss: f64::NAN,
        offscreen: (oc as f64 / on.max(1) as f64, on),
        event: (f64::NAN, 0),
        event_recall: Vec::new(),
        ..Metrics::default()
    };
    pairs.fill(&mut m);
    m
}
