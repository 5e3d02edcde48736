//! Fusion: aligned windows in, perception events out.
//!
//! The stage decodes the per-modality events (`motion`, `sound`, `speech`, `object`) from the
//! windows' features and associates each closed `sound` with a visible track or with nothing
//! in view ([`av`]: `sound_source` / `offscreen_sound`, `rules` strategy). The learned fusion
//! (scene graph per window through a GATv2 network, [`gnn`]) plugs in on the same windows.
//! Windows overlap (hop < length), so each feature is taken once: the stage remembers how
//! far it has read each modality.

pub mod av;
pub mod batch;
pub mod dataset;
pub mod events;
pub mod gnn;
pub mod graph;
pub mod learned;
pub mod model;
pub mod ontology;
pub mod speaker;
pub mod tags;
pub mod train;

use crate::align::Window;
use crate::channel::{EdgeReceiver, EdgeSender};
use crate::clock::Timestamp;
use crate::config::PipelineConfig;
use crate::encode::tracker::{TrackEvent, TrackSummary};
use crate::event::{Event, EventKind, Label};
pub use events::{MotionDetector, SoundDetector, SpeechConfig, SpeechDetector};
pub use tags::{TagTracker, TaggerConfig};

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
    tags: TagTracker,
    vision_read: Option<Timestamp>,
    audio_read: f64,
    /// Audio-visual association (`[fusion]`), when the tagger runs.
    av: Option<av::AvFusion>,
    /// Active speaker detection (`[speaker]`), when it runs.
    speaker: Option<speaker::SpeakerStage>,
    /// Events held until the speaker decisions over their span are final (`speech`, and
    /// `sound`s with their association), with the time they wait for.
    held: std::collections::VecDeque<(f64, Vec<Event>)>,
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
            tags: TagTracker::new(cfg.tagger),
            vision_read: None,
            audio_read: f64::NEG_INFINITY,
            av: None,
            speaker: None,
            held: std::collections::VecDeque::new(),
        }
    }

    /// Adds active speaker detection: `active_speaker` events, `speech` events that name
    /// their visible speakers, and the speaking person as the `sound_source` of speech.
    pub fn with_speaker(mut self, stage: speaker::SpeakerStage) -> Self {
        self.speaker = Some(stage);
        self
    }

    /// The active-speaker counters (None when it does not run).
    pub fn speaker_stats(&self) -> Option<speaker::SpeakerStats> {
        self.speaker.as_ref().map(|s| s.stats())
    }

    /// Passes on `group` now, or holds it until the speaker decisions reach `until`.
    fn hold_or_pass(&mut self, until: f64, group: Vec<Event>, out: &mut Vec<Event>) {
        if self.speaker.is_some() {
            self.held.push_back((until, group));
        } else {
            out.extend(group);
        }
    }

    /// Releases the held events whose span the speaker decisions now cover, each with the
    /// faces that spoke in it.
    fn release_held(&mut self, out: &mut Vec<Event>) {
        let Some(sp) = &self.speaker else {
            return;
        };
        let settled = sp.settled();
        while self.held.front().is_some_and(|(t, _)| *t <= settled) {
            let Some((_, group)) = self.held.pop_front() else {
                break;
            };
            out.extend(speaker::join::annotate(sp, group));
        }
    }

    /// Adds audio-visual association (`sound_source` / `offscreen_sound` after each
    /// `sound`) with the given settings and ontology map.
    pub fn with_fusion(
        mut self,
        cfg: av::FusionConfig,
        ontology: std::sync::Arc<ontology::Ontology>,
        learned: Option<learned::Loaded>,
    ) -> Self {
        if cfg.strategy != av::FusionStrategy::Off {
            let mut av = av::AvFusion::new(cfg, ontology);
            if let Some(l) = learned {
                av = av.with_learned(l);
            }
            self.av = Some(av);
        }
        self
    }

    /// The fusion counters (zero when no fusion runs).
    pub fn fusion_stats(&self) -> FusionStats {
        let Some(av) = &self.av else {
            return FusionStats::default();
        };
        let mut s = FusionStats {
            sounds_capped: av.capped,
            ..FusionStats::default()
        };
        if let Some(l) = av.learned() {
            s.windows_scored = l.windows_scored;
            s.capped_tracks = l.capped_tracks;
            s.capped_segments = l.capped_segments;
            s.model_failures = l.failures;
            s.seconds = l.busy.as_secs_f64();
        }
        s
    }

    /// Labels the `sound` events in `new` and passes each on with its association event
    /// (held together while the active speaker decides over the sound's span).
    fn finish_sounds(&mut self, new: Vec<Event>, out: &mut Vec<Event>) {
        for mut e in new {
            if e.kind != EventKind::Sound {
                out.push(e);
                continue;
            }
            self.tags.label(&mut e);
            let assoc = match &mut self.av {
                Some(av) => {
                    let scores = self.tags.mean_scores(e.start, e.end);
                    av.associate(&e, scores.as_deref())
                }
                None => None,
            };
            let until = e.end;
            let mut group = vec![e];
            group.extend(assoc);
            self.hold_or_pass(until, group, out);
        }
    }

    /// Decodes the features of `w` not seen in earlier windows.
    pub fn process(&mut self, w: &Window, out: &mut Vec<Event>) {
        if let Some(av) = &mut self.av {
            av.push_window(&self.stream, w, out);
        }
        for v in &w.vision {
            if self.vision_read.is_some_and(|r| v.pts <= r) {
                continue;
            }
            self.vision_read = Some(v.pts);
            if let Some(av) = &mut self.av {
                av.push_vision(v);
            }
            if let Some(sp) = &mut self.speaker {
                sp.push_vision(v);
            }
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
            for p in &a.tags {
                self.tags.push(p);
            }
            let mut speech = Vec::new();
            for sp in &a.speech {
                self.speech.push(
                    &self.stream,
                    sp.start.as_secs_f64(),
                    sp.duration.as_secs_f64(),
                    sp.prob,
                    &mut speech,
                );
            }
            for e in speech {
                self.hold_or_pass(e.end, vec![e], out);
            }
            if let Some(av) = &mut self.av {
                av.push_audio(a);
            }
            if let Some(sp) = &mut self.speaker {
                sp.push_audio(a, &self.stream);
            }
            if let Some(s) = &mut self.sound {
                let mut new = Vec::new();
                // Strictly after what was read: `from` is inclusive, so nudge by 1 ns.
                s.push(a, self.audio_read + 1e-9, &mut new);
                self.finish_sounds(new, out);
            }
            self.audio_read = last;
        }
        if let Some(sp) = &mut self.speaker {
            sp.window_done(w.end, &self.stream);
            sp.poll(&self.stream, out);
        }
        self.release_held(out);
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
            let mut new = Vec::new();
            s.finish(&self.stream, &mut new);
            self.finish_sounds(new, out);
        }
        let mut speech = Vec::new();
        self.speech.finish(&self.stream, &mut speech);
        for e in speech {
            self.hold_or_pass(e.end, vec![e], out);
        }
        if let Some(av) = &mut self.av {
            av.finish(&self.stream, out);
        }
        if let Some(sp) = &mut self.speaker {
            sp.finish(&self.stream, out);
        }
        self.release_held(out);
    }
}

/// Counters of the event stage.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EventStats {
    /// Windows processed.
    pub windows: u64,
    /// Events emitted.
    pub events: u64,
    /// Fusion counters.
    pub fusion: FusionStats,
    /// Active-speaker counters (when it runs).
    pub speaker: Option<speaker::SpeakerStats>,
}

/// Counters of the audio-visual fusion.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct FusionStats {
    /// Sounds whose candidate tracks were capped (`[fusion] max_tracks`).
    pub sounds_capped: u64,
    /// Windows run through a learned model (windows without audio segments are skipped).
    pub windows_scored: u64,
    /// Track nodes left out of window graphs (`max_tracks`), summed over windows.
    pub capped_tracks: u64,
    /// Segment nodes left out of window graphs (`max_segments`), summed over windows.
    pub capped_segments: u64,
    /// Windows the model failed on (skipped, counted; the stream goes on).
    pub model_failures: u64,
    /// Seconds spent building and scoring window graphs (learned strategies).
    pub seconds: f64,
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
                stats.fusion = stage.fusion_stats();
                stats.speaker = stage.speaker_stats();
                return stats;
            }
        }
    }
    stage.finish(&mut out);
    stats.fusion = stage.fusion_stats();
    stats.speaker = stage.speaker_stats();
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
