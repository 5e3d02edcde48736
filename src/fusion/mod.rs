//! Fusion: aligned windows in, perception events out.
//!
//! Today this stage decodes the per-modality events (`motion`, `sound`) from the windows'
//! features; the scene graph and the GNN (issue "fusion") plug in here, on the same
//! windows. Windows overlap (hop < length), so each feature is taken once: the stage
//! remembers how far it has read each modality.

pub mod events;

use crate::align::Window;
use crate::channel::{EdgeReceiver, EdgeSender};
use crate::clock::Timestamp;
use crate::config::PipelineConfig;
use crate::encode::tracker::{TrackEvent, TrackSummary};
use crate::encode::TagPatch;
use crate::event::{Event, EventKind, Label};
pub use events::{MotionDetector, SoundDetector, SpeechConfig, SpeechDetector};
use std::collections::VecDeque;

/// Seconds of tagger patches kept to label sounds that end later.
const TAG_HISTORY_S: f64 = 30.0;
/// Labels attached to a `sound` event.
const SOUND_LABELS: usize = 3;
/// Lowest mean score for a class to label a sound.
const SOUND_LABEL_MIN: f32 = 0.05;

/// Labels `e` with the classes of the tagger patches that lie mostly inside its span: the
/// mean score of each class over the patches whose time is at least half inside the event
/// (or, for a sound shorter than that, the one patch that overlaps it most). Patches that
/// only graze the event are left out: YAMNet scores a patch that is half room noise and half
/// a phone ring as "Turkey" or "Frog", while the patches inside score "Telephone".
pub fn label_sound(e: &mut Event, patches: &VecDeque<TagPatch>) {
    let overlap = |p: &TagPatch| {
        let (s, t) = (p.start.as_secs_f64(), p.end.as_secs_f64());
        let o = (t.min(e.end) - s.max(e.start)).max(0.0);
        if t > s {
            o / (t - s)
        } else {
            0.0
        }
    };
    let mut over: Vec<&TagPatch> = patches.iter().filter(|p| overlap(p) >= 0.5).collect();
    if over.is_empty() {
        if let Some(best) = patches
            .iter()
            .filter(|p| overlap(p) > 0.0)
            .max_by(|a, b| overlap(a).total_cmp(&overlap(b)))
        {
            over.push(best);
        }
    }
    let Some(first) = over.first() else { return };
    let n = first.scores.len();
    let mut mean = vec![0f32; n];
    for p in &over {
        for (m, s) in mean.iter_mut().zip(p.scores.iter()) {
            *m += s / over.len() as f32;
        }
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|a, b| mean[*b].total_cmp(&mean[*a]));
    e.labels = idx
        .into_iter()
        .take(SOUND_LABELS)
        .filter(|&i| mean[i] >= SOUND_LABEL_MIN)
        .map(|i| Label {
            name: first
                .names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class_{i}")),
            score: mean[i],
        })
        .collect();
    e.evidence.patches = Some(over.len() as u32);
}

/// An `object` event for a track change.
pub fn object_event(stream: &str, ev: &TrackEvent) -> Event {
    let (s, phase, end): (&TrackSummary, &str, f64) = match ev {
        TrackEvent::Appeared(s) => (s, "appeared", s.last_seen),
        TrackEvent::Left(s) => (s, "left", s.last_seen),
    };
    let mut e = Event::new(EventKind::Object, stream, s.first_seen, end, s.max_score);
    e.labels.push(Label {
        name: crate::encode::coco::name(s.class_id),
        score: s.max_score,
    });
    e.objects.push(s.track_id);
    e.evidence.phase = Some(phase.into());
    e.evidence.bbox = Some(s.last_bbox);
    e.evidence.active_frames = Some(s.hits);
    e
}

/// The per-stream event stage.
pub struct EventStage {
    stream: String,
    motion: Option<MotionDetector>,
    sound: Option<SoundDetector>,
    speech: SpeechDetector,
    tags: VecDeque<TagPatch>,
    vision_read: Option<Timestamp>,
    audio_read: f64,
}

impl EventStage {
    /// A stage for `stream` with the detectors the config enables.
    pub fn new(stream: &str, cfg: &PipelineConfig) -> Self {
        Self {
            stream: stream.to_string(),
            motion: cfg
                .motion
                .enabled
                .then(|| MotionDetector::new(cfg.motion.clone())),
            sound: (cfg.audio.enabled && cfg.sound.enabled)
                .then(|| SoundDetector::new(cfg.sound.clone())),
            speech: SpeechDetector::new(cfg.speech),
            tags: VecDeque::new(),
            vision_read: None,
            audio_read: f64::NEG_INFINITY,
        }
    }

    /// Decodes the features of `w` not seen in earlier windows.
    pub fn process(&mut self, w: &Window, out: &mut Vec<Event>) {
        for v in &w.vision {
            if self.vision_read.is_some_and(|r| v.pts <= r) {
                continue;
            }
            self.vision_read = Some(v.pts);
            if let Some(m) = &mut self.motion {
                m.push(v, out);
            }
            for te in &v.track_events {
                out.push(object_event(&self.stream, te));
            }
        }
        for a in &w.audio {
            if a.frames() == 0 {
                continue;
            }
            let last = a.frame_time(a.frames() - 1).as_secs_f64();
            if last <= self.audio_read {
                continue;
            }
            // Tags and speech arrive with the run that completes them: each run once.
            self.tags.extend(a.tags.iter().cloned());
            while self
                .tags
                .front()
                .is_some_and(|p| last - p.end.as_secs_f64() > TAG_HISTORY_S)
            {
                self.tags.pop_front();
            }
            for sp in &a.speech {
                self.speech.push(
                    &self.stream,
                    sp.start.as_secs_f64(),
                    sp.duration.as_secs_f64(),
                    sp.prob,
                    out,
                );
            }
            if let Some(s) = &mut self.sound {
                let from = out.len();
                // Strictly after what was read: `from` is inclusive, so nudge by 1 ns.
                s.push(a, self.audio_read + 1e-9, out);
                for e in &mut out[from..] {
                    if e.kind == EventKind::Sound {
                        label_sound(e, &self.tags);
                    }
                }
            }
            self.audio_read = last;
        }
    }

    /// How far the stage has read, seconds.
    pub fn position(&self) -> f64 {
        let v = self.vision_read.map(|t| t.as_secs_f64()).unwrap_or(0.0);
        v.max(self.audio_read)
    }

    /// Closes open events at the end of the stream.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        if let Some(m) = &mut self.motion {
            m.finish(&self.stream, out);
        }
        if let Some(s) = &mut self.sound {
            let from = out.len();
            s.finish(&self.stream, out);
            for e in &mut out[from..] {
                label_sound(e, &self.tags);
            }
        }
        self.speech.finish(&self.stream, out);
    }
}

/// Counters of the event stage.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EventStats {
    /// Windows processed.
    pub windows: u64,
    /// Events emitted.
    pub events: u64,
}

/// Runs the event stage until the window edge closes, then flushes open events; if the
/// source failed (`failure` says why), a `source_error` event follows the last events.
pub fn run_event_stage(
    mut stage: EventStage,
    rx: EdgeReceiver<Window>,
    tx: EdgeSender<Event>,
    tap: Option<crate::pipeline::WindowTap>,
    failure: impl Fn() -> Option<String>,
) -> EventStats {
    let mut stats = EventStats::default();
    let mut out = Vec::new();
    while let Some(w) = rx.recv() {
        stats.windows += 1;
        if let Some(tap) = &tap {
            tap(&w);
        }
        stage.process(&w, &mut out);
        for e in out.drain(..) {
            stats.events += 1;
            if tx.send(e).is_err() {
                return stats;
            }
        }
    }
    stage.finish(&mut out);
    if let Some(msg) = failure() {
        let at = stage.position();
        let mut e = Event::new(EventKind::SourceError, &stage.stream, at, at, 1.0);
        e.evidence.error = Some(msg);
        out.push(e);
    }
    for e in out.drain(..) {
        stats.events += 1;
        let _ = tx.send(e);
    }
    stats
}
