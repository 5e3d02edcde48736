//! Audio-visual association: which visible track makes a sound, or whether it comes from
//! nothing in view.
//!
//! The stage keeps a bounded history of what was visible (per frame: each confirmed track's
//! class, box and the motion inside its box) and of the audio level (per 10 ms frame). When a
//! `sound` event closes, every track visible during it becomes a candidate with the edge
//! features of the fusion graph ([`EdgeFeatures`]):
//!
//! * **compatibility** — the AudioSet → COCO ontology map applied to the sound's mean YAMNet
//!   scores over its patches ([`ontology::Ontology::compatibility`]);
//! * **co-presence** — the fraction of the sound's frames in which the track is visible;
//! * **correlation** — Pearson correlation between the motion inside the track's box and the
//!   audio level, frame by frame over the sound (0 when either is constant);
//! * **offset** — seconds between the centre of the sound and the centre of the track's
//!   presence during it.
//!
//! The `rules` strategy (no learning) scores a candidate `compatibility × co-presence`; the
//! best one at or above `[fusion] min_score` is the source (`sound_source`), otherwise the
//! sound is `offscreen_sound`. A sound without tagger scores is not associated (nothing can
//! be said about what made it).

pub mod graph;
pub mod learned;
pub mod ontology;

use crate::core::event::{Association, Event, EventKind};
use crate::core::features::{AudioFeatures, VisionFeatures};
use crate::core::settings::{check, in_range, Invalid};
use crate::encode::video::motion::MotionFeatures;
use crate::encode::video::objects::Tracks;
use std::collections::VecDeque;
use std::sync::Arc;

use ontology::Ontology;

/// `[fusion]`: audio-visual association.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionConfig {
    /// `rules` (ontology × co-presence; default) or `off`.
    pub strategy: FusionStrategy,
    /// Smallest candidate score that makes a visible track the source.
    pub min_score: f32,
    /// A user ontology map (TOML, as `models/fusion/ontology.toml`); default: the shipped one.
    pub ontology: Option<std::path::PathBuf>,
    /// Seconds of visual and level history kept (bounds memory; sounds longer than this
    /// are judged on their last `history` seconds).
    pub history: f64,
    /// Most candidate tracks per sound, and track nodes per window graph (the most visible
    /// first); more are counted as capped.
    pub max_tracks: usize,
    /// Learned strategies: most audio segment nodes per window graph (the loudest first).
    pub max_segments: usize,
    /// Learned strategies: previous windows linked into each window's graph (K).
    pub context: usize,
    /// Learned strategies: directory with `<strategy>.safetensors` + `<strategy>.json`
    /// (as `avsense train` writes them); default: the weights built into the binary (from
    /// `models/fusion/`).
    pub weights: Option<std::path::PathBuf>,
    /// Learned strategies: an `av_event` opens when a class reaches this probability …
    pub event_on: f32,
    /// … and closes after two windows below this one.
    pub event_off: f32,
}

impl FusionConfig {
    /// Checks the keys of `[fusion]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let f = self;
        check(
            in_range(f64::from(f.min_score), 0.0, 1.0),
            "min_score",
            f.min_score,
            "0 to 1",
        )?;
        check(
            in_range(f.history, 1.0, 600.0),
            "history",
            f.history,
            "seconds, 1 to 600",
        )?;
        check(
            (1..=1024).contains(&f.max_tracks),
            "max_tracks",
            f.max_tracks,
            "1 to 1024",
        )?;
        check(
            (1..=256).contains(&f.max_segments),
            "max_segments",
            f.max_segments,
            "1 to 256",
        )?;
        check(f.context <= 16, "context", f.context, "0 to 16 windows")?;
        check(
            f.event_off > 0.0 && f.event_off <= f.event_on && f.event_on < 1.0,
            "event_on / event_off",
            format!("{} / {}", f.event_on, f.event_off),
            "0 < event_off ≤ event_on < 1",
        )
    }
}

/// Which fusion runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FusionStrategy {
    /// Ontology compatibility × co-presence, no learning.
    #[default]
    Rules,
    /// No association events.
    Off,
    /// GATv2 over the scene graph of each window (learned).
    Gnn,
    /// Cross-modal attention without the graph (learned baseline).
    Attention,
    /// Late fusion, concatenation + MLP (learned baseline).
    Concat,
}

impl FusionStrategy {
    /// The learned model this strategy runs, if any.
    pub fn learned(self) -> Option<avsense_nn::models::fusion::LearnedKind> {
        match self {
            FusionStrategy::Gnn => Some(avsense_nn::models::fusion::LearnedKind::Gnn),
            FusionStrategy::Attention => Some(avsense_nn::models::fusion::LearnedKind::Attention),
            FusionStrategy::Concat => Some(avsense_nn::models::fusion::LearnedKind::Concat),
            FusionStrategy::Rules | FusionStrategy::Off => None,
        }
    }

    /// Parses `rules`, `off`, `gnn`, `attention` or `concat`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rules" => FusionStrategy::Rules,
            "off" => FusionStrategy::Off,
            "gnn" => FusionStrategy::Gnn,
            "attention" => FusionStrategy::Attention,
            "concat" => FusionStrategy::Concat,
            _ => return None,
        })
    }
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            strategy: FusionStrategy::Rules,
            min_score: 0.3,
            ontology: None,
            history: 30.0,
            max_tracks: 16,
            max_segments: 8,
            context: 2,
            weights: None,
            event_on: 0.6,
            event_off: 0.4,
        }
    }
}

/// The evidence between one sound and one visible track.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EdgeFeatures {
    /// Ontology compatibility of the sound's classes with the track's class, 0–1.
    pub compatibility: f32,
    /// Fraction of the sound's video frames in which the track is visible, 0–1.
    pub co_presence: f32,
    /// Correlation of the motion in the track's box with the audio level, −1–1.
    pub correlation: f32,
    /// Seconds between the sound's centre and the centre of the track's presence in it.
    pub offset: f32,
}

impl EdgeFeatures {
    /// The evidence from the video frames inside a sound's span: their times, the track's
    /// motion in each (None: not visible), the audio level at each, the sound's centre
    /// (seconds) and the ontology compatibility. Shared by the `rules` strategy and the
    /// scene graph, so both see the same numbers.
    pub fn from_frames(
        times: &[f64],
        motion: &[Option<f32>],
        levels: &[f32],
        centre: f64,
        compatibility: f32,
    ) -> Self {
        let present: Vec<f64> = times
            .iter()
            .zip(motion)
            .filter(|(_, m)| m.is_some())
            .map(|(t, _)| *t)
            .collect();
        let m: Vec<f32> = motion.iter().map(|m| m.unwrap_or(0.0)).collect();
        Self {
            compatibility,
            co_presence: present.len() as f32 / times.len().max(1) as f32,
            correlation: pearson(&m, levels),
            offset: if present.is_empty() {
                0.0
            } else {
                (present.iter().sum::<f64>() / present.len() as f64 - centre).abs() as f32
            },
        }
    }
}

#[derive(Debug, Clone)]
struct SeenTrack {
    track: u64,
    class: usize,
    /// Fraction of the motion grid's cells inside the box that changed (mean).
    motion: f32,
}

#[derive(Debug, Clone)]
struct SeenFrame {
    t: f64,
    tracks: Vec<SeenTrack>,
}

/// Per-stream association state.
#[derive(Debug)]
pub struct AvFusion {
    cfg: FusionConfig,
    ontology: Arc<Ontology>,
    frames: VecDeque<SeenFrame>,
    /// (time, level dBFS) per audio frame.
    level: VecDeque<(f64, f32)>,
    /// Sounds whose candidates were capped at `max_tracks`.
    pub capped: u64,
    /// The learned strategy's state (`gnn`, `attention`, `concat`).
    learned: Option<learned::LearnedFusion>,
}

impl AvFusion {
    /// Association with `cfg` and the ontology map.
    pub fn new(cfg: FusionConfig, ontology: Arc<Ontology>) -> Self {
        Self {
            cfg,
            ontology,
            frames: VecDeque::new(),
            level: VecDeque::new(),
            capped: 0,
            learned: None,
        }
    }

    /// Runs a learned model on every window (the strategy must be a learned one).
    pub fn with_learned(mut self, loaded: learned::Loaded) -> Self {
        let graph = graph::GraphConfig {
            context: self.cfg.context,
            max_tracks: self.cfg.max_tracks,
            max_segments: self.cfg.max_segments,
        };
        self.learned = Some(learned::LearnedFusion::new(
            loaded,
            graph,
            Arc::clone(&self.ontology),
            self.cfg.history,
            self.cfg.event_on,
            self.cfg.event_off,
        ));
        self
    }

    /// The learned strategy's state, if one runs.
    pub fn learned(&self) -> Option<&learned::LearnedFusion> {
        self.learned.as_ref()
    }

    /// A new window (learned strategies score it; `av_event`s go to `out`).
    pub fn push_window(
        &mut self,
        stream: &str,
        w: &crate::core::window::Window,
        out: &mut Vec<Event>,
    ) {
        if let Some(l) = &mut self.learned {
            l.push_window(stream, w, out);
        }
    }

    /// End of stream: closes an open `av_event`.
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        if let Some(l) = &mut self.learned {
            l.finish(stream, out);
        }
    }

    /// Notes what frame `v` shows.
    pub fn push_vision(&mut self, v: &VisionFeatures) {
        let t = v.pts.as_secs_f64();
        let tracks = Tracks::objects_of(v)
            .iter()
            .map(|o| SeenTrack {
                track: o.track_id,
                class: o.class_id,
                motion: v
                    .get::<MotionFeatures>()
                    .map(|m| motion_in_box(m, o.bbox))
                    .unwrap_or(0.0),
            })
            .collect();
        self.frames.push_back(SeenFrame { t, tracks });
        while self
            .frames
            .front()
            .is_some_and(|f| t - f.t > self.cfg.history)
        {
            self.frames.pop_front();
        }
    }

    /// Notes the audio level of `a`'s frames.
    pub fn push_audio(&mut self, a: &AudioFeatures) {
        for k in 0..a.frames() {
            self.level
                .push_back((a.frame_time(k).as_secs_f64(), a.level_db[k]));
        }
        if let Some(&(t, _)) = self.level.back() {
            while self
                .level
                .front()
                .is_some_and(|(s, _)| t - s > self.cfg.history)
            {
                self.level.pop_front();
            }
        }
    }

    /// The edge features between a sound `[start, end]` with mean tagger scores `scores`
    /// and every track visible during it, most visible first (at most `max_tracks`).
    pub fn candidates(
        &mut self,
        start: f64,
        end: f64,
        scores: &[f32],
    ) -> Vec<(u64, usize, EdgeFeatures)> {
        let frames: Vec<&SeenFrame> = self
            .frames
            .iter()
            .filter(|f| f.t >= start && f.t <= end)
            .collect();
        if frames.is_empty() {
            return Vec::new();
        }
        let levels: Vec<f32> = frames.iter().map(|f| self.level_at(f.t)).collect();
        let mut ids: Vec<(u64, usize)> = Vec::new();
        for f in &frames {
            for s in &f.tracks {
                if !ids.iter().any(|(t, _)| *t == s.track) {
                    ids.push((s.track, s.class));
                }
            }
        }
        let centre = 0.5 * (start + end);
        let times: Vec<f64> = frames.iter().map(|f| f.t).collect();
        let mut out: Vec<(u64, usize, EdgeFeatures)> = ids
            .into_iter()
            .map(|(track, class)| {
                let motion: Vec<Option<f32>> = frames
                    .iter()
                    .map(|f| f.tracks.iter().find(|s| s.track == track).map(|s| s.motion))
                    .collect();
                let compat = self.ontology.compatibility(scores, class);
                let feats = EdgeFeatures::from_frames(&times, &motion, &levels, centre, compat);
                (track, class, feats)
            })
            .collect();
        out.sort_by(|a, b| b.2.co_presence.total_cmp(&a.2.co_presence));
        if out.len() > self.cfg.max_tracks {
            out.truncate(self.cfg.max_tracks);
            self.capped += 1;
        }
        out
    }

    fn level_at(&self, t: f64) -> f32 {
        // The audio frame nearest to t (levels are in time order).
        let i = self.level.partition_point(|(s, _)| *s < t);
        let after = self.level.get(i);
        let before = i.checked_sub(1).and_then(|j| self.level.get(j));
        match (before, after) {
            (Some(b), Some(a)) => {
                if t - b.0 <= a.0 - t {
                    b.1
                } else {
                    a.1
                }
            }
            (Some(x), None) | (None, Some(x)) => x.1,
            (None, None) => -100.0,
        }
    }

    /// The association event for a closed `sound` event whose mean tagger scores are
    /// `scores` (None: no tagger ran over it — no association).
    pub fn associate(&mut self, sound: &Event, scores: Option<&[f32]>) -> Option<Event> {
        if self.cfg.strategy == FusionStrategy::Off {
            return None;
        }
        let scores = scores?;
        let cands = self.candidates(sound.start, sound.end, scores);
        // The strategy's score per candidate, its name, its threshold, and (learned) the
        // off-screen probability.
        #[allow(clippy::type_complexity)]
        let (scored, strategy, threshold, offscreen, importance): (
            Vec<f32>,
            &str,
            f32,
            Option<f32>,
            Vec<Option<crate::core::event::EdgeImportance>>,
        ) = match &self.learned {
            None => (
                cands
                    .iter()
                    .map(|c| c.2.compatibility * c.2.co_presence)
                    .collect(),
                "rules",
                self.cfg.min_score,
                None,
                vec![None; cands.len()],
            ),
            Some(l) => {
                let v = l.verdict(sound.start, sound.end);
                let of = |track: u64| {
                    v.as_ref()
                        .and_then(|v| v.tracks.iter().find(|t| t.0 == track))
                };
                (
                    cands
                        .iter()
                        .map(|c| of(c.0).map(|t| t.1).unwrap_or(0.0))
                        .collect(),
                    l.name(),
                    l.threshold(),
                    v.as_ref().map(|v| v.offscreen),
                    cands
                        .iter()
                        .map(|c| {
                            of(c.0).map(|t| crate::core::event::EdgeImportance {
                                compatibility: t.2[0],
                                co_presence: t.2[1],
                                correlation: t.2[2],
                                offset: t.2[3],
                            })
                        })
                        .collect(),
                )
            }
        };
        let best = cands
            .iter()
            .zip(scored)
            .zip(importance)
            .map(|((c, s), i)| (c, s, i))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let assoc =
            |c: &(u64, usize, EdgeFeatures),
             score: f32,
             importance: Option<crate::core::event::EdgeImportance>| Association {
                strategy: strategy.into(),
                track: c.0,
                class: avsense_nn::models::coco::name(c.1),
                score,
                compatibility: c.2.compatibility,
                co_presence: c.2.co_presence,
                correlation: c.2.correlation,
                offset: c.2.offset,
                candidates: cands.len() as u32,
                importance,
            };
        let mut e = match best {
            Some((c, score, imp)) if score >= threshold => {
                let mut e = Event::new(
                    EventKind::SoundSource,
                    &sound.stream,
                    sound.start,
                    sound.end,
                    score,
                );
                e.objects.push(c.0);
                e.evidence.association = Some(assoc(c, score, imp));
                e
            }
            other => {
                let best_score = other.as_ref().map(|(_, s, _)| *s).unwrap_or(0.0);
                let mut e = Event::new(
                    EventKind::OffscreenSound,
                    &sound.stream,
                    sound.start,
                    sound.end,
                    offscreen.unwrap_or(1.0 - best_score),
                );
                // The strongest candidate, to show why it was not the source.
                e.evidence.association = other.map(|(c, s, imp)| assoc(c, s, imp));
                e
            }
        };
        e.labels = sound.labels.clone();
        e.audio = sound.audio.clone();
        e.evidence.sound_id = sound.evidence.sound_id;
        Some(e)
    }
}

/// Mean changed fraction of the motion cells whose centre lies inside `bbox` (normalised
/// `[x0, y0, x1, y1]`); the nearest cell when the box holds no centre.
pub(crate) fn motion_in_box(m: &MotionFeatures, bbox: [f32; 4]) -> f32 {
    let (cols, rows) = (m.grid[0].max(1) as usize, m.grid[1].max(1) as usize);
    let mut sum = 0.0;
    let mut n = 0usize;
    for r in 0..rows {
        for c in 0..cols {
            let cx = (c as f32 + 0.5) / cols as f32;
            let cy = (r as f32 + 0.5) / rows as f32;
            if cx >= bbox[0] && cx <= bbox[2] && cy >= bbox[1] && cy <= bbox[3] {
                sum += m.cells.get(r * cols + c).copied().unwrap_or(0.0);
                n += 1;
            }
        }
    }
    if n > 0 {
        return sum / n as f32;
    }
    let cx = ((bbox[0] + bbox[2]) * 0.5 * cols as f32).clamp(0.0, cols as f32 - 1.0) as usize;
    let cy = ((bbox[1] + bbox[3]) * 0.5 * rows as f32).clamp(0.0, rows as f32 - 1.0) as usize;
    m.cells.get(cy * cols + cx).copied().unwrap_or(0.0)
}

/// Pearson correlation; 0 when either series is (nearly) constant.
pub(crate) fn pearson(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let ma = a[..n].iter().sum::<f32>() / n as f32;
    let mb = b[..n].iter().sum::<f32>() / n as f32;
    let (mut sab, mut saa, mut sbb) = (0.0f32, 0.0f32, 0.0f32);
    for i in 0..n {
        let (x, y) = (a[i] - ma, b[i] - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa < 1e-9 || sbb < 1e-9 {
        0.0
    } else {
        (sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};
    use crate::encode::video::tracker::TrackedObject;
    use std::path::Path;

    fn ontology() -> Arc<Ontology> {
        let names: Vec<String> = ["Speech", "Telephone", "Bell"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Arc::new(
            Ontology::parse(
                "[[map]]\ncoco = [\"person\"]\naudioset = [\"Speech\"]\n[[map]]\ncoco = [\"cell phone\"]\naudioset = [\"Telephone\"]\n",
                Path::new("o.toml"),
                &names,
            )
            .unwrap(),
        )
    }

    fn frame(t: f64, people: &[u64]) -> VisionFeatures {
        VisionFeatures {
            stream: Arc::from("s"),
            pts: Timestamp::from_secs_f64(t),
            duration: Duration(100_000_000),
            index: (t * 10.0) as u64,
            ext: Default::default(),
        }
        .with(crate::encode::video::objects::Tracks {
            detected: true,
            objects: people
                .iter()
                .map(|id| TrackedObject {
                    track_id: *id,
                    class_id: avsense_nn::models::coco::id("person").unwrap(),
                    score: 0.8,
                    bbox: [0.1, 0.1, 0.4, 0.9],
                    embedding: None,
                })
                .collect(),
            events: Vec::new(),
        })
    }

    fn sound(start: f64, end: f64) -> Event {
        Event::new(EventKind::Sound, "s", start, end, 1.0)
    }

    /// Speech with a person in view → that person; speech in an empty room, or a telephone
    /// with only a person in view → off-screen.
    #[test]
    fn rules_pick_the_compatible_visible_track_or_say_offscreen() {
        let mut f = AvFusion::new(FusionConfig::default(), ontology());
        for i in 0..100 {
            let t = i as f64 * 0.1;
            f.push_vision(&frame(t, if t < 5.0 { &[7] } else { &[] }));
        }
        let speech = [0.9, 0.05, 0.05];
        let e = f.associate(&sound(1.0, 3.0), Some(&speech)).unwrap();
        assert_eq!(e.kind, EventKind::SoundSource);
        assert_eq!(e.objects, vec![7]);
        let a = e.evidence.association.as_ref().unwrap();
        assert_eq!(a.class, "person");
        assert!((a.co_presence - 1.0).abs() < 1e-6 && a.compatibility > 0.9);

        let e = f.associate(&sound(6.0, 8.0), Some(&speech)).unwrap();
        assert_eq!(e.kind, EventKind::OffscreenSound);
        assert!(e.evidence.association.is_none(), "nobody in view");

        let phone = [0.05, 0.9, 0.05];
        let e = f.associate(&sound(1.0, 3.0), Some(&phone)).unwrap();
        assert_eq!(e.kind, EventKind::OffscreenSound);
        assert_eq!(
            e.evidence.association.as_ref().unwrap().track,
            7,
            "the person was the best, weak candidate"
        );

        // A person who walks in for the last 10 % of the sound is not its source.
        let e = f.associate(&sound(4.7, 6.7), Some(&speech)).unwrap();
        assert_eq!(e.kind, EventKind::OffscreenSound, "{e:?}");
        // No tagger scores: nothing is claimed.
        assert!(f.associate(&sound(1.0, 3.0), None).is_none());
    }

    #[test]
    fn candidates_are_capped_and_counted() {
        let cfg = FusionConfig {
            max_tracks: 2,
            ..FusionConfig::default()
        };
        let mut f = AvFusion::new(cfg, ontology());
        for i in 0..10 {
            f.push_vision(&frame(i as f64 * 0.1, &[1, 2, 3, 4]));
        }
        assert_eq!(f.candidates(0.0, 1.0, &[1.0, 0.0, 0.0]).len(), 2);
        assert_eq!(f.capped, 1);
    }

    #[test]
    fn pearson_of_known_series() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-6);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
    }
}
