//! Active speaker decisions: which visible face is speaking.
//!
//! ```text
//! face encoder (video stage): BlazeFace → face tracker → person link → 112² gray crops at 25 fps ─┐
//! audio stage: MFCC (13, 25 ms / 10 ms) ───────────────────────────────────────────────────────────┤
//! av_encode stage: Light-ASD per face (crate::av_encode) → final logits per face-tick ──────────────┘
//! event stage (here): face graph ([`graph`]) → hysteresis → `active_speaker`
//! ```
//!
//! The event stage also holds back `speech` events and the association of speech-like
//! `sound`s until the speaker decisions over their span are final ([`SpeakerStage::settled`]),
//! so that a `speech` event lists the faces that spoke in it (`evidence.speakers`, `objects`:
//! their person tracks) and the `sound_source` of speech is the speaking person.

pub mod graph;
pub mod join;

use crate::av_encode::asd::{AsdStats, FaceTick};
use crate::av_encode::AsdScores;
use crate::core::event::{Event, EventKind, Label, SpeakerEvidence};
use crate::core::features::AudioFeatures;
use crate::core::settings::{check, in_range, Invalid, Toggle};
use crate::encode::audio::speech::SpeechProbs;
use crate::encode::video::faces::TICK_NS;
use avsense_nn::models::lightasd::LightAsdError;
use graph::{FaceGraph, FaceNode, GraphConfig};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Which Light-ASD weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AsdWeights {
    /// `pretrain_AVA_CVPR.model`: trained on AVA-ActiveSpeaker (movies); the paper's model
    /// and upstream's default.
    #[default]
    Ava,
    /// `finetuning_TalkSet.model`: fine-tuned on TalkSet (on this project's talking-head
    /// clips it scores every face as speaking, pauses included: see BENCHMARKS.md).
    Talkset,
}

impl AsdWeights {
    /// The file under the model directory.
    pub fn file(self) -> &'static str {
        match self {
            AsdWeights::Talkset => "lightasd/finetuning_TalkSet.model",
            AsdWeights::Ava => "lightasd/pretrain_AVA_CVPR.model",
        }
    }
}

/// `[speaker]`: faces, Light-ASD and the face graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeakerConfig {
    /// `auto` (runs when BlazeFace and Light-ASD are fetched and the source has video and
    /// audio), `on` (refuse to start without them), `off`.
    pub mode: Toggle,
    /// Light-ASD weights: `talkset` or `ava`.
    pub weights: AsdWeights,
    /// Width of the analysis frames while the active speaker runs (the crops are cut from
    /// them; at least the detector's 416).
    pub width: u32,
    /// Face detections per second while faces are in view (0: every frame; between
    /// detections faces move on with their smoothed velocity).
    pub face_fps: f64,
    /// Face detections per second while no face is in view.
    pub idle_fps: f64,
    /// Lowest BlazeFace score kept.
    pub face_score: f32,
    /// Most faces analysed per frame (the largest).
    pub max_faces: usize,
    /// Smallest face analysed, fraction of the frame width.
    pub min_face: f32,
    /// How faces are cropped: `columbia` (upstream's inference framing, the mouth-centred
    /// square) or `box` (the face box stretched, as AVA's training crops were cut).
    pub crop: crate::encode::video::faces::CropMode,
    /// Upstream's `cropScale` (context around the face in the `columbia` crop).
    pub crop_scale: f32,
    /// Scale of the face detector's box before cropping.
    pub box_scale: f32,
    /// Seconds a face the detector missed keeps its last box.
    pub hold: f64,
    /// Weight of the newest detection in a face's smoothed box (1: no smoothing).
    pub smoothing: f32,
    /// Back-end chunk lengths, seconds (each tick's logit is the mean over them; the
    /// longest is the decision delay).
    pub durations: Vec<f64>,
    /// Faces that may plausibly speak at once (face graph).
    pub max_speakers: usize,
    /// Face graph: pull of a face's neighbours in time (λ_t).
    pub temporal: f32,
    /// Face graph: push between faces speaking at once beyond `max_speakers` (λ_c).
    pub competition: f32,
    /// Face graph: weight of the voice-activity log-odds (β).
    pub vad_weight: f32,
    /// Face graph: weight of the mouth–audio synchrony statistic (γ).
    pub sync_weight: f32,
    /// Face graph: the synchrony statistic at which the evidence is neutral (z₀).
    pub sync_offset: f32,
    /// The learned audio-visual sync head: `auto` (the shipped head), `off`.
    pub sync_head: Toggle,
    /// Face graph: weight of the sync head's log-odds (η).
    pub sync_head_weight: f32,
    /// Face graph: the sync head's probability below which it speaks against a face (τ;
    /// 0.4 by default, chosen on the dev clips: README "Off-screen voices"; unset: the
    /// threshold in the head's `sync.json`).
    pub sync_head_threshold: Option<f32>,
    /// Seconds of a face's voice-active past over which the sync head's probability is
    /// averaged before it enters the face graph (with the graph's look-ahead ticks); 0: the
    /// tick's own probability. One tick's head is a noisy judge of one 40 ms mouth shape;
    /// over seconds of speech an own-voice mouth and a dubbed one separate far better
    /// (scripts/head-evidence.py).
    pub sync_head_window: f64,
    /// Probability that starts speaking.
    pub on: f32,
    /// Probability below which speaking may end.
    pub off: f32,
    /// Seconds below `off` before speaking ends.
    pub min_gap: f64,
    /// Shortest `active_speaker` event, seconds.
    pub min_duration: f64,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        let g = GraphConfig::default();
        Self {
            mode: Toggle::Auto,
            weights: AsdWeights::default(),
            width: 640,
            face_fps: 12.5,
            idle_fps: 2.0,
            face_score: avsense_nn::models::blazeface::DEFAULT_SCORE_THRESHOLD,
            max_faces: 4,
            min_face: 0.03,
            crop: crate::encode::video::faces::CropMode::Columbia,
            crop_scale: 0.4,
            box_scale: 1.0,
            hold: 0.25,
            smoothing: 0.5,
            durations: vec![1.0, 2.0, 3.0],
            max_speakers: g.max_speakers,
            temporal: g.temporal,
            competition: g.competition,
            vad_weight: g.vad_weight,
            sync_weight: g.sync_weight,
            sync_offset: g.sync_offset,
            sync_head: Toggle::Auto,
            sync_head_weight: g.head_weight,
            sync_head_threshold: Some(g.head_threshold),
            sync_head_window: 2.0,
            on: 0.5,
            off: 0.4,
            min_gap: 0.3,
            min_duration: 0.2,
        }
    }
}

impl SpeakerConfig {
    /// The face encoder's settings.
    pub fn face_config(&self) -> crate::encode::video::faces::FaceConfig {
        crate::encode::video::faces::FaceConfig {
            fps: self.face_fps,
            idle_fps: self.idle_fps,
            crop: self.crop,
            crop_scale: self.crop_scale,
            box_scale: self.box_scale,
            hold: self.hold,
            smoothing: self.smoothing,
            max_faces: self.max_faces,
            min_size: self.min_face,
            ..Default::default()
        }
    }

    /// The face graph's settings.
    pub fn graph_config(&self) -> GraphConfig {
        GraphConfig {
            max_speakers: self.max_speakers,
            temporal: self.temporal,
            competition: self.competition,
            vad_weight: self.vad_weight,
            sync_weight: self.sync_weight,
            sync_offset: self.sync_offset,
            head_weight: if self.sync_head == Toggle::Off {
                0.0
            } else {
                self.sync_head_weight
            },
            head_threshold: self.sync_head_threshold.unwrap_or(0.5),
            ..Default::default()
        }
    }

    /// The back end's chunk lengths in ticks.
    pub fn duration_ticks(&self) -> Vec<usize> {
        self.durations
            .iter()
            .map(|d| ((d * 1e9 / TICK_NS as f64).round() as usize).max(1))
            .collect()
    }
}

impl SpeakerConfig {
    /// Checks the keys of `[speaker]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let sp = self;
        check(
            (64..=4096).contains(&sp.width),
            "width",
            sp.width,
            "pixels, 64 to 4096",
        )?;
        for (k, v) in [("face_fps", sp.face_fps), ("idle_fps", sp.idle_fps)] {
            check(
                in_range(v, 0.0, 240.0),
                k,
                v,
                "detections per second, 0 (every frame) to 240",
            )?;
        }
        for (k, v) in [
            ("face_score", sp.face_score),
            ("min_face", sp.min_face),
            ("smoothing", sp.smoothing),
            ("on", sp.on),
            ("off", sp.off),
        ] {
            check(
                in_range(f64::from(v), 0.0, 1.0),
                k,
                v,
                "a value from 0 to 1",
            )?;
        }
        check(sp.off <= sp.on, "off", sp.off, "≤ speaker.on")?;
        if let Some(t) = sp.sync_head_threshold {
            check(
                t > 0.0 && t < 1.0,
                "sync_head_threshold",
                t,
                "a probability between 0 and 1 (exclusive)",
            )?;
        }
        check(
            (1..=32).contains(&sp.max_faces),
            "max_faces",
            sp.max_faces,
            "1 to 32 faces",
        )?;
        check(
            (1..=32).contains(&sp.max_speakers),
            "max_speakers",
            sp.max_speakers,
            "1 to 32 faces",
        )?;
        check(
            in_range(f64::from(sp.box_scale), 0.25, 4.0),
            "box_scale",
            sp.box_scale,
            "0.25 to 4",
        )?;
        check(
            in_range(f64::from(sp.crop_scale), 0.0, 2.0),
            "crop_scale",
            sp.crop_scale,
            "0 to 2 (upstream: 0.4)",
        )?;
        for (k, v) in [
            ("hold", sp.hold),
            ("min_gap", sp.min_gap),
            ("min_duration", sp.min_duration),
            ("sync_head_window", sp.sync_head_window),
        ] {
            check(in_range(v, 0.0, 60.0), k, v, "seconds, 0 to 60")?;
        }
        for (k, v) in [
            ("temporal", sp.temporal),
            ("competition", sp.competition),
            ("vad_weight", sp.vad_weight),
            ("sync_weight", sp.sync_weight),
            ("sync_offset", sp.sync_offset),
            ("sync_head_weight", sp.sync_head_weight),
        ] {
            check(
                in_range(f64::from(v), 0.0, 100.0),
                k,
                v,
                "a weight from 0 to 100",
            )?;
        }
        check(
            !sp.durations.is_empty() && sp.durations.len() <= 8,
            "durations",
            format!("{:?}", sp.durations),
            "1 to 8 chunk lengths in seconds, e.g. [1.0, 2.0, 3.0]",
        )?;
        for (i, d) in sp.durations.iter().enumerate() {
            check(
                in_range(*d, 0.04, 20.0),
                &format!("durations[{i}]"),
                d,
                "seconds, 0.04 (one frame at 25 fps) to 20",
            )?;
        }
        Ok(())
    }
}

/// Counters of the active-speaker stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SpeakerStats {
    /// Light-ASD's counters and time.
    pub asd: AsdStats,
    /// Face graph windows run.
    pub graph_windows: u64,
    /// Seconds in the face graph.
    pub graph_seconds: f64,
    /// `active_speaker` events.
    pub events: u64,
    /// Model failures (the stream goes on without speaker decisions there).
    pub failures: u64,
}

/// A decided tick of one face.
#[derive(Debug, Clone, Copy)]
struct Decided {
    tick: u64,
    track: u64,
    person: Option<u64>,
    prob: f32,
    logit: f32,
    bbox: [f32; 4],
    /// The sync head's probability at this tick.
    head: Option<f32>,
}

/// An open speaking interval of one face segment.
#[derive(Debug, Clone, Copy)]
struct Open {
    start: u64,
    last_on: u64,
    sum_p: f64,
    sum_logit: f64,
    n: u32,
    bbox: [f32; 4],
    sum_head: f64,
    n_head: u32,
}

#[derive(Debug, Clone)]
struct Decoder {
    track: u64,
    person: Option<u64>,
    open: Option<Open>,
}

/// One face over a span of time (see [`SpeakerStage::faces_during`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FaceInSpan {
    /// Its speaking evidence over the span (`overlap`: the fraction it spoke).
    pub evidence: SpeakerEvidence,
    /// Fraction of the span's ticks the face was in view and decided.
    pub visible: f32,
}

/// Seconds of decided ticks kept for the speech joins.
const HISTORY_SECONDS: f64 = 120.0;

/// The per-stream active-speaker stage (see the module doc).
pub struct SpeakerStage {
    cfg: SpeakerConfig,
    graph: GraphConfig,
    /// Final ticks not yet through the graph (and the last `radius` ticks before the
    /// decided frontier, as context).
    pending: Vec<FaceTick>,
    decided_until: u64,
    vad: VecDeque<(f64, f64, f32)>,
    has_vad: bool,
    decoders: HashMap<u64, Decoder>,
    ended_segments: Vec<u64>,
    history: VecDeque<Decided>,
    /// Per face segment: the sync head's probability at its decided voice-active ticks
    /// within the last `sync_head_window` seconds.
    head_past: HashMap<u64, VecDeque<(u64, f32)>>,
    stats: SpeakerStats,
    /// The Light-ASD stage's counters and failures, as of its latest scores.
    asd: (AsdStats, u64),
    /// The Light-ASD stage's last scores, which arrive when the stream ends.
    last: Option<crossbeam_channel::Receiver<AsdScores>>,
    ended: bool,
}

impl SpeakerStage {
    /// A stage deciding on the scores of the Light-ASD stage; `has_vad`: VAD probabilities
    /// will come with the audio; `last`: where that stage sends its final scores.
    pub fn new(
        cfg: &SpeakerConfig,
        has_vad: bool,
        last: Option<crossbeam_channel::Receiver<AsdScores>>,
    ) -> Self {
        Self {
            cfg: cfg.clone(),
            graph: cfg.graph_config(),
            pending: Vec::new(),
            decided_until: 0,
            vad: VecDeque::new(),
            has_vad,
            decoders: HashMap::new(),
            ended_segments: Vec::new(),
            history: VecDeque::new(),
            head_past: HashMap::new(),
            stats: SpeakerStats::default(),
            asd: (AsdStats::default(), 0),
            last,
            ended: false,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SpeakerStats {
        let mut s = self.stats;
        s.asd = self.asd.0;
        s.failures += self.asd.1;
        s
    }

    /// One audio run's VAD probabilities.
    pub fn push_audio(&mut self, a: &AudioFeatures) {
        for sp in a.get::<SpeechProbs>().map_or(&[][..], |p| &p.0) {
            let s = sp.start.as_secs_f64();
            self.vad
                .push_back((s, s + sp.duration.as_secs_f64(), sp.prob));
        }
    }

    fn failed(&mut self, stream: &str, e: &LightAsdError) {
        self.stats.failures += 1;
        tracing::warn!("stream {stream}: active speaker: {e}");
    }

    /// Every face's per-tick decision before this time (seconds) is final, so
    /// [`SpeakerStage::speakers_during`] may be asked about any span ending before it. (An
    /// `active_speaker` event still open then is not waited for: a long monologue does not
    /// hold back the `speech` events inside it.)
    pub fn settled(&self) -> f64 {
        if self.ended {
            return f64::INFINITY;
        }
        self.decided_until as f64 * TICK_NS as f64 / 1e9
    }

    /// Takes the Light-ASD stage's scores for a window and decides what they make final;
    /// appends the `active_speaker` events that closed.
    pub fn push_scores(&mut self, stream: &str, scores: &AsdScores, out: &mut Vec<Event>) {
        self.asd = (scores.stats, scores.failures);
        self.pending.extend(scores.ticks.iter().copied());
        self.decide(stream, scores.frontier, &scores.ended, out);
    }

    /// The voice-activity probability at `tick` (the VAD chunk holding its centre).
    fn vad_at(&self, tick: u64) -> Option<f32> {
        if !self.has_vad {
            return None;
        }
        let t = (tick as f64 + 0.5) * TICK_NS as f64 / 1e9;
        self.vad
            .iter()
            .find(|(s, e, _)| *s <= t && t < *e)
            .map(|v| v.2)
    }

    /// Runs the face graph over the ticks before `frontier` that have their neighbours,
    /// decodes them, and ends the decoders of `ended` segments.
    fn decide(&mut self, stream: &str, frontier: u64, ended: &[u64], out: &mut Vec<Event>) {
        let r = self.graph.radius as u64;
        let target = if frontier == u64::MAX {
            self.pending
                .iter()
                .map(|f| f.tick + 1)
                .max()
                .unwrap_or(self.decided_until)
        } else {
            frontier.saturating_sub(r)
        };
        if target > self.decided_until {
            let lo = self.decided_until.saturating_sub(r);
            let hi = if frontier == u64::MAX {
                target
            } else {
                frontier
            };
            let window: Vec<&FaceTick> = self
                .pending
                .iter()
                .filter(|f| f.tick >= lo && f.tick < hi)
                .collect();
            let nodes: Vec<FaceNode> = window
                .iter()
                .filter_map(|f| {
                    f.logit.map(|logit| FaceNode {
                        face: f.segment,
                        tick: f.tick,
                        logit,
                        vad: self.vad_at(f.tick),
                        sync: f.sync.map(|s| s.z),
                        head: self.head_evidence(f, &window),
                    })
                })
                .collect();
            let started = std::time::Instant::now();
            let probs =
                FaceGraph::build(&nodes, &self.graph).infer(&self.graph, &candle_core::Device::Cpu);
            self.stats.graph_seconds += started.elapsed().as_secs_f64();
            self.stats.graph_windows += 1;
            let probs = match probs {
                Ok(p) => p,
                Err(e) => {
                    self.failed(
                        stream,
                        &LightAsdError::Tensor {
                            stage: "face graph",
                            source: e,
                        },
                    );
                    vec![0.0; nodes.len()]
                }
            };
            let p_of: HashMap<(u64, u64), f32> = nodes
                .iter()
                .zip(&probs)
                .map(|(n, &p)| ((n.face, n.tick), p))
                .collect();
            let mut todo: Vec<FaceTick> = self
                .pending
                .iter()
                .filter(|f| f.tick >= self.decided_until && f.tick < target)
                .copied()
                .collect();
            todo.sort_by_key(|f| (f.tick, f.segment));
            for f in todo {
                let p = p_of.get(&(f.segment, f.tick)).copied().unwrap_or(0.0);
                tracing::debug!(
                    target: "avsense::speaker",
                    "stream {stream} tick {} face {} logit {:?} head {:?} sync {:?} z {:?} vad {:?} p {p:.3}",
                    f.tick,
                    f.track,
                    f.logit,
                    f.av_sync,
                    f.sync.map(|s| s.r),
                    f.sync.map(|s| s.z),
                    self.vad_at(f.tick)
                );
                self.decode(stream, &f, p, out);
            }
            self.decided_until = target;
            let keep = target.saturating_sub(r);
            self.pending.retain(|f| f.tick >= keep);
            let t = keep as f64 * TICK_NS as f64 / 1e9 - 1.0;
            while self.vad.front().is_some_and(|v| v.1 < t) {
                self.vad.pop_front();
            }
        }
        // A segment that ended closes its interval once its last ticks are decoded.
        self.ended_segments.extend_from_slice(ended);
        let mut waiting = Vec::new();
        for seg in std::mem::take(&mut self.ended_segments) {
            if self
                .pending
                .iter()
                .any(|f| f.segment == seg && f.tick >= self.decided_until)
            {
                waiting.push(seg);
            } else {
                self.head_past.remove(&seg);
                if let Some(d) = self.decoders.remove(&seg) {
                    self.close(stream, &d, out);
                }
            }
        }
        self.ended_segments = waiting;
    }

    /// Whether the voice is active at `tick` (no VAD: always).
    fn voiced(&self, tick: u64) -> bool {
        self.vad_at(tick).is_none_or(|v| v >= 0.5)
    }

    /// The sync head's evidence for face tick `f`: its probability averaged over the face's
    /// voice-active ticks from `sync_head_window` seconds before `f` up to the newest tick in
    /// `window` (the graph's look-ahead), or `f`'s own probability when there are none.
    fn head_evidence(&self, f: &FaceTick, window: &[&FaceTick]) -> Option<f32> {
        let span = (self.cfg.sync_head_window * 1e9 / TICK_NS as f64).round() as u64;
        if span == 0 {
            return f.av_sync;
        }
        let from = f.tick.saturating_sub(span);
        let past = self
            .head_past
            .get(&f.segment)
            .into_iter()
            .flatten()
            .filter(|(t, _)| *t >= from && *t < self.decided_until)
            .map(|&(_, q)| q);
        let ahead = window
            .iter()
            .filter(|g| {
                g.segment == f.segment
                    && g.tick >= self.decided_until.max(from)
                    && g.tick <= f.tick + self.graph.radius as u64
                    && self.voiced(g.tick)
            })
            .filter_map(|g| g.av_sync);
        let (sum, n) = past
            .chain(ahead)
            .fold((0.0f64, 0u32), |(s, n), q| (s + f64::from(q), n + 1));
        if n == 0 {
            f.av_sync
        } else {
            Some((sum / f64::from(n)) as f32)
        }
    }

    /// One decided tick of one face segment through the hysteresis.
    fn decode(&mut self, stream: &str, f: &FaceTick, p: f32, out: &mut Vec<Event>) {
        if let Some(q) = f.av_sync.filter(|_| self.voiced(f.tick)) {
            let span = (self.cfg.sync_head_window * 1e9 / TICK_NS as f64).round() as u64;
            let past = self.head_past.entry(f.segment).or_default();
            past.push_back((f.tick, q));
            while past.front().is_some_and(|(t, _)| t + span < f.tick) {
                past.pop_front();
            }
        }
        let logit = f.logit.unwrap_or(f32::NEG_INFINITY);
        self.history.push_back(Decided {
            tick: f.tick,
            track: f.track,
            person: f.person,
            prob: p,
            logit,
            bbox: f.bbox,
            head: f.av_sync,
        });
        let horizon = (HISTORY_SECONDS * 1e9 / TICK_NS as f64) as u64;
        while self
            .history
            .front()
            .is_some_and(|h| h.tick + horizon < f.tick)
        {
            self.history.pop_front();
        }
        let gap = (self.cfg.min_gap * 1e9 / TICK_NS as f64).ceil() as u64;
        let (on, off) = (self.cfg.on, self.cfg.off);
        let d = self.decoders.entry(f.segment).or_insert(Decoder {
            track: f.track,
            person: f.person,
            open: None,
        });
        if f.person.is_some() {
            d.person = f.person;
        }
        let speaking_now = p >= off && d.open.is_some() || p >= on;
        match (&mut d.open, speaking_now) {
            (None, true) => {
                d.open = Some(Open {
                    start: f.tick,
                    last_on: f.tick,
                    sum_p: f64::from(p),
                    sum_logit: f64::from(logit),
                    n: 1,
                    bbox: f.bbox,
                    sum_head: f.av_sync.map_or(0.0, f64::from),
                    n_head: u32::from(f.av_sync.is_some()),
                })
            }
            (Some(o), true) => {
                o.last_on = f.tick;
                o.sum_p += f64::from(p);
                o.sum_logit += f64::from(logit);
                o.n += 1;
                o.bbox = f.bbox;
                if let Some(q) = f.av_sync {
                    o.sum_head += f64::from(q);
                    o.n_head += 1;
                }
            }
            (Some(o), false) if f.tick > o.last_on + gap => {
                let d = d.clone();
                if let Some(x) = self.decoders.get_mut(&f.segment) {
                    x.open = None;
                }
                self.close(stream, &d, out);
            }
            _ => {}
        }
    }

    /// Emits the open interval of `d`, if long enough.
    fn close(&mut self, stream: &str, d: &Decoder, out: &mut Vec<Event>) {
        if let Some(e) = self.interval_event(stream, d) {
            self.stats.events += 1;
            out.push(e);
        }
    }

    /// The `active_speaker` events going on now (long enough to be reported; `end`: the
    /// last speaking tick so far), for their `start` messages.
    pub fn opened(&self, stream: &str) -> Vec<Event> {
        let mut v: Vec<Event> = self
            .decoders
            .values()
            .filter_map(|d| self.interval_event(stream, d))
            .collect();
        v.sort_by(|a, b| a.start.total_cmp(&b.start));
        v
    }

    /// The event of `d`'s open interval (None: none open, or too short).
    fn interval_event(&self, stream: &str, d: &Decoder) -> Option<Event> {
        let o = d.open?;
        let secs = |t: u64| t as f64 * TICK_NS as f64 / 1e9;
        let (start, end) = (secs(o.start), secs(o.last_on + 1));
        if end - start < self.cfg.min_duration {
            return None;
        }
        let prob = (o.sum_p / f64::from(o.n.max(1))) as f32;
        let mut e = Event::new(EventKind::ActiveSpeaker, stream, start, end, prob);
        e.labels.push(Label {
            name: "speaking".into(),
            score: prob,
        });
        if let Some(p) = d.person {
            e.objects.push(p);
        }
        e.evidence.speaker = Some(SpeakerEvidence {
            face_track: d.track,
            person_track: d.person,
            overlap: 1.0,
            probability: prob,
            logit: (o.sum_logit / f64::from(o.n.max(1))) as f32,
            bbox: o.bbox,
            sync: (o.n_head > 0).then(|| (o.sum_head / f64::from(o.n_head)) as f32),
        });
        e.evidence.active_frames = Some(o.n);
        Some(e)
    }

    /// The faces that spoke during `[start, end)` (seconds), most overlap first; only
    /// meaningful once `settled()` has passed `end`. The means are over the ticks each face
    /// spoke.
    pub fn speakers_during(&self, start: f64, end: f64) -> Vec<SpeakerEvidence> {
        self.faces_in(start, end, true)
            .into_iter()
            .filter(|f| f.evidence.overlap > 0.0)
            .map(|f| f.evidence)
            .collect()
    }

    /// Every face decided during `[start, end)` (seconds), speaking or not, most overlap
    /// first, then most visible: what the face graph considered. The means are over all the
    /// face's ticks in the span.
    pub fn faces_during(&self, start: f64, end: f64) -> Vec<FaceInSpan> {
        self.faces_in(start, end, false)
    }

    /// Per face over the span: `overlap` = fraction of the span's ticks it spoke; the means
    /// over its speaking ticks (`speaking_only`) or over all its ticks in the span.
    fn faces_in(&self, start: f64, end: f64, speaking_only: bool) -> Vec<FaceInSpan> {
        #[derive(Default)]
        struct Acc {
            track: u64,
            person: Option<u64>,
            bbox: [f32; 4],
            seen: u32,
            spoke: u32,
            n: u32,
            prob: f64,
            logit: f64,
            head: f64,
            n_head: u32,
        }
        let t0 = (start * 1e9 / TICK_NS as f64).floor() as u64;
        let t1 = ((end * 1e9 / TICK_NS as f64).ceil() as u64).max(t0 + 1);
        let span = (t1 - t0) as f32;
        let mut per: Vec<Acc> = Vec::new();
        for h in self.history.iter().filter(|h| h.tick >= t0 && h.tick < t1) {
            let i = match per.iter().position(|p| p.track == h.track) {
                Some(i) => i,
                None => {
                    per.push(Acc {
                        track: h.track,
                        ..Acc::default()
                    });
                    per.len() - 1
                }
            };
            let a = &mut per[i];
            a.seen += 1;
            if h.person.is_some() {
                a.person = h.person;
            }
            let speaking = h.prob >= self.cfg.on;
            a.spoke += u32::from(speaking);
            if speaking || !speaking_only {
                a.n += 1;
                a.prob += f64::from(h.prob);
                a.logit += f64::from(h.logit);
                a.bbox = h.bbox;
                if let Some(q) = h.head {
                    a.head += f64::from(q);
                    a.n_head += 1;
                }
            }
        }
        let mut out: Vec<FaceInSpan> = per
            .into_iter()
            .map(|a| {
                let n = f64::from(a.n.max(1));
                FaceInSpan {
                    evidence: SpeakerEvidence {
                        face_track: a.track,
                        person_track: a.person,
                        overlap: a.spoke as f32 / span,
                        probability: (a.prob / n) as f32,
                        logit: (a.logit / n) as f32,
                        bbox: a.bbox,
                        sync: (a.n_head > 0).then(|| (a.head / f64::from(a.n_head)) as f32),
                    },
                    visible: a.seen as f32 / span,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.evidence
                .overlap
                .total_cmp(&a.evidence.overlap)
                .then(b.visible.total_cmp(&a.visible))
        });
        out
    }

    /// End of the stream: the Light-ASD stage's last scores are decided and everything
    /// open is closed.
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        let last = self
            .last
            .take()
            .and_then(|rx| rx.recv().ok())
            .unwrap_or(AsdScores {
                frontier: u64::MAX,
                ..AsdScores::default()
            });
        self.asd = (last.stats, last.failures);
        self.pending.extend(last.ticks.iter().copied());
        self.decide(stream, u64::MAX, &last.ended, out);
        let mut rest: Vec<(u64, Decoder)> = self.decoders.drain().collect();
        rest.sort_by_key(|(k, _)| *k);
        for (_, d) in rest {
            self.close(stream, &d, out);
        }
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> SpeakerStage {
        SpeakerStage::new(&SpeakerConfig::default(), false, None)
    }

    fn tick(segment: u64, tick: u64, logit: f32) -> FaceTick {
        FaceTick {
            track: segment * 10,
            person: Some(segment * 100),
            segment,
            tick,
            logit: Some(logit),
            sync: None,
            av_sync: None,
            bbox: [0.1, 0.1, 0.3, 0.4],
        }
    }

    /// The `rules` strategy's `sound_source` naming person `track` over `[start, end]`.
    fn rules_person_source(track: u64, start: f64, end: f64) -> Event {
        let mut e = Event::new(EventKind::SoundSource, "cam", start, end, 0.95);
        e.objects.push(track);
        e.evidence.association = Some(crate::core::event::Association {
            strategy: "rules".into(),
            track,
            class: "person".into(),
            score: 0.95,
            compatibility: 0.95,
            co_presence: 1.0,
            correlation: 0.0,
            offset: 0.0,
            candidates: 1,
            importance: None,
        });
        e
    }

    #[test]
    fn hysteresis_makes_one_event_per_stretch_and_names_the_person() {
        let mut s = stage();
        // Face 1 speaks ticks 10–49 with a one-tick dip at 30 and again 80–99; face 2 never.
        for t in 0..120u64 {
            let speaking = (10..50).contains(&t) && t != 30 || (80..100).contains(&t);
            s.pending
                .push(tick(1, t, if speaking { 4.0 } else { -4.0 }));
            s.pending.push(tick(2, t, -4.0));
        }
        let mut out = Vec::new();
        s.decide("cam", u64::MAX, &[1, 2], &mut out);
        s.finish("cam", &mut out);
        let ev: Vec<&Event> = out
            .iter()
            .filter(|e| e.kind == EventKind::ActiveSpeaker)
            .collect();
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(
            (ev[0].start - 0.40).abs() < 1e-9 && (ev[0].end - 2.0).abs() < 1e-9,
            "{:?}",
            ev[0]
        );
        assert!((ev[1].start - 3.2).abs() < 1e-9 && (ev[1].end - 4.0).abs() < 1e-9);
        assert_eq!(ev[0].objects, vec![100]);
        assert_eq!(ev[0].evidence.speaker.as_ref().unwrap().face_track, 10);
        // The speech joins: who spoke in 0.5–1.5 s, and nobody in 2.4–3.0 s.
        let who = s.speakers_during(0.5, 1.5);
        assert_eq!(who.len(), 1);
        assert!(who[0].overlap > 0.9 && who[0].person_track == Some(100));
        assert!(s.speakers_during(2.4, 3.0).is_empty());
        assert!(s.settled().is_infinite());
    }

    #[test]
    fn speech_events_list_their_speakers_and_speech_sounds_get_the_speaker_as_source() {
        let mut s = stage();
        for t in 0..100u64 {
            s.pending.push(tick(1, t, if t < 50 { 4.0 } else { -4.0 }));
        }
        let mut out = Vec::new();
        s.decide("cam", u64::MAX, &[1], &mut out);
        s.finish("cam", &mut out);
        let speech = Event::new(EventKind::Speech, "cam", 0.2, 1.8, 0.9);
        let mut sound = Event::new(EventKind::Sound, "cam", 0.25, 1.7, 0.8);
        sound.labels.push(Label {
            name: "Speech".into(),
            score: 0.9,
        });
        let offscreen = Event::new(EventKind::OffscreenSound, "cam", 0.25, 1.7, 0.6);
        let got = join::annotate(&s, vec![speech.clone()]);
        assert_eq!(got[0].objects, vec![100]);
        assert_eq!(got[0].evidence.speakers.as_ref().unwrap().len(), 1);
        let got = join::annotate(&s, vec![sound.clone(), offscreen]);
        assert_eq!(got[1].kind, EventKind::SoundSource);
        assert_eq!(got[1].objects, vec![100]);
        assert!(got[1].evidence.speaker.is_some());
        // A sound that is not speech keeps its association; a late speech nobody spoke
        // lists no speaker.
        let mut bell = sound.clone();
        bell.labels[0].name = "Bell".into();
        let off = Event::new(EventKind::OffscreenSound, "cam", 0.25, 1.7, 0.6);
        let got = join::annotate(&s, vec![bell, off]);
        assert_eq!(got[1].kind, EventKind::OffscreenSound);
        let late = Event::new(EventKind::Speech, "cam", 2.5, 3.5, 0.9);
        let got = join::annotate(&s, vec![late]);
        assert!(got[0].objects.is_empty() && got[0].evidence.speakers.as_ref().unwrap().is_empty());
    }

    /// Speech while a face is in view but silent: whatever strategy gave the sound to that
    /// face's person, the sound is off-screen, listing the face and its sync score; a
    /// person whose face was not judged keeps the strategy's verdict.
    #[test]
    fn a_silent_face_in_view_overrules_the_strategy_and_the_speech_is_offscreen() {
        let mut s = stage();
        for t in 0..100u64 {
            let mut f = tick(1, t, -3.0);
            f.av_sync = Some(0.1);
            s.pending.push(f);
        }
        let mut out = Vec::new();
        s.decide("cam", u64::MAX, &[1], &mut out);
        s.finish("cam", &mut out);
        assert!(out.iter().all(|e| e.kind != EventKind::ActiveSpeaker));
        let mut sound = Event::new(EventKind::Sound, "cam", 0.4, 3.6, 0.8);
        sound.labels.push(Label {
            name: "Speech".into(),
            score: 0.9,
        });
        sound.evidence.sound_id = Some(7);
        let to = |track: u64| {
            let mut e = rules_person_source(track, 0.4, 3.6);
            e.evidence.sound_id = Some(7);
            e
        };
        let got = join::annotate(&s, vec![sound.clone(), to(100)]);
        let off = &got[1];
        assert_eq!(off.kind, EventKind::OffscreenSound, "{off:?}");
        assert!(off.objects.is_empty());
        assert_eq!(off.evidence.sound_id, Some(7));
        assert_eq!(
            off.evidence.association.as_ref().map(|a| a.track),
            Some(100)
        );
        let faces = off.evidence.speakers.as_ref().expect("faces considered");
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].person_track, Some(100));
        assert_eq!(faces[0].overlap, 0.0);
        assert!((faces[0].sync.unwrap() - 0.1).abs() < 1e-6, "{faces:?}");
        assert!(off.confidence > 0.5, "{off:?}");
        // Another person (no face judged): the strategy's verdict stands, faces listed.
        let got = join::annotate(&s, vec![sound.clone(), to(200)]);
        assert_eq!(got[1].kind, EventKind::SoundSource);
        assert_eq!(got[1].objects, vec![200]);
        assert_eq!(got[1].evidence.speakers.as_ref().map(Vec::len), Some(1));
        // The face in view for only the last 0.4 s of a sound does not judge it.
        let mut late = sound.clone();
        (late.start, late.end) = (3.6, 7.6);
        let mut src = to(100);
        (src.start, src.end) = (3.6, 7.6);
        let got = join::annotate(&s, vec![late, src]);
        assert_eq!(got[1].kind, EventKind::SoundSource);
    }

    /// A face that spoke a little of a sound while in view for a small part of it is no
    /// evidence that its person was silent: the strategy's verdict stands.
    #[test]
    fn a_face_seen_briefly_does_not_overrule_the_strategy() {
        let mut s = stage();
        for t in 80..100u64 {
            s.pending.push(tick(1, t, 4.0));
        }
        let mut out = Vec::new();
        s.decide("cam", u64::MAX, &[1], &mut out);
        s.finish("cam", &mut out);
        let mut sound = Event::new(EventKind::Sound, "cam", 0.4, 3.6, 0.8);
        sound.labels.push(Label {
            name: "Speech".into(),
            score: 0.9,
        });
        let src = rules_person_source(100, 0.4, 3.6);
        let got = join::annotate(&s, vec![sound, src]);
        assert_eq!(got[1].kind, EventKind::SoundSource, "{:?}", got[1]);
        let faces = got[1]
            .evidence
            .speakers
            .as_ref()
            .expect("the face is listed");
        assert!(
            faces[0].overlap > 0.1 && faces[0].overlap < 0.3,
            "{faces:?}"
        );
    }
}
