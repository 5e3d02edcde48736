//! Fusion: aligned windows in, perception events out (the event stage).
//!
//! ```text
//! decoders/  single-modality events: motion, sound (+ AudioSet labels from tags), speech, objects
//! av/        audio-visual association of each closed sound: rules, or a learned model over a
//!            scene graph per window (GATv2 / attention / concat) → sound_source, offscreen_sound,
//!            av_event
//! speaker/   active speaker decisions from the Light-ASD scores (face graph, hysteresis) →
//!            active_speaker; speech events name their speakers
//! lifecycle  ids, start/end messages, links between related events
//! ```
//!
//! Windows overlap (hop < length), so each feature is taken once: the stage remembers how
//! far it has read each modality ([`ReadCursor`]).

pub mod av;
pub mod decoders;
pub mod lifecycle;
pub mod speaker;

use crate::av_encode::AsdScores;
use crate::core::edge::{EdgeReceiver, EdgeSender};
use crate::core::event::{Event, EventKind, SourceVerdict};
use crate::core::window::{ReadCursor, Window, WindowTap};
use crate::encode::audio::speech::SpeechProbs;
use crate::encode::audio::tagger::TagPatches;
use crate::encode::video::motion::MotionConfig;
use crate::encode::video::objects::Tracks;
use decoders::objects::object_event;
use decoders::{
    MotionDetector, SoundConfig, SoundDetector, SpeechConfig, SpeechDetector, TagTracker,
    TaggerConfig,
};

/// The per-stream event stage.
pub struct EventStage {
    stream: String,
    motion: Option<MotionDetector>,
    sound: Option<SoundDetector>,
    speech: SpeechDetector,
    tags: TagTracker,
    cursor: ReadCursor,
    /// Audio-visual association (`[fusion]`), when the tagger runs.
    av: Option<av::AvFusion>,
    /// Active speaker detection (`[speaker]`), when it runs.
    speaker: Option<speaker::SpeakerStage>,
    /// Events held until the speaker decisions over their span are final (`speech`, and
    /// `sound`s with their association), with the time they wait for.
    held: std::collections::VecDeque<(f64, Vec<Event>)>,
    /// `sound` events so far (their `evidence.sound_id`).
    sounds: u64,
}

impl EventStage {
    /// A stage for `stream` with the single-modality decoders: `motion` and `sound` when
    /// given their settings, `speech` and the sound labels always.
    pub fn new(
        stream: &str,
        motion: Option<MotionConfig>,
        sound: Option<SoundConfig>,
        speech: SpeechConfig,
        tagger: TaggerConfig,
    ) -> Self {
        Self {
            stream: stream.to_string(),
            motion: motion.map(MotionDetector::new),
            sound: sound.map(SoundDetector::new),
            speech: SpeechDetector::new(speech),
            tags: TagTracker::new(tagger),
            cursor: ReadCursor::default(),
            av: None,
            speaker: None,
            held: std::collections::VecDeque::new(),
            sounds: 0,
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
        ontology: std::sync::Arc<av::ontology::Ontology>,
        learned: Option<av::learned::Loaded>,
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
            self.sounds += 1;
            e.evidence.sound_id = Some(self.sounds);
            self.tags.label(&mut e);
            // A labelled sound's confidence is its label's (its loudness is in `audio`).
            if let Some(l) = e.labels.first() {
                e.confidence = l.score.clamp(0.0, 1.0);
            }
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
        let (vision, audio) = self.cursor.advance(w);
        for v in vision {
            if let Some(av) = &mut self.av {
                av.push_vision(v);
            }
            if let Some(m) = &mut self.motion {
                m.push(v, out);
            }
            for te in v.get::<Tracks>().map_or(&[][..], |t| &t.events) {
                out.push(object_event(&self.stream, te));
            }
        }
        for a in audio {
            let (read_before, a) = (a.read_before, a.run);
            // Tags and speech arrive with the run that completes them: each run once.
            for p in a.get::<TagPatches>().map_or(&[][..], |t| &t.0) {
                self.tags.push(p);
            }
            let mut speech = Vec::new();
            for sp in a.get::<SpeechProbs>().map_or(&[][..], |p| &p.0) {
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
                sp.push_audio(a);
            }
            if let Some(s) = &mut self.sound {
                let mut new = Vec::new();
                // Strictly after what was read: `from` is inclusive, so nudge by 1 ns.
                s.push(a, read_before + 1e-9, &mut new);
                self.finish_sounds(new, out);
            }
        }
        if let (Some(sp), Some(scores)) = (&mut self.speaker, w.ext.get::<AsdScores>()) {
            sp.push_scores(&self.stream, scores, out);
        }
        self.release_held(out);
    }

    /// The events going on now that their decoders have confirmed (`end`: the time so
    /// far), for their `start` messages ([`lifecycle`]).
    pub fn going(&self) -> Vec<Event> {
        let mut v = Vec::new();
        v.extend(self.motion.as_ref().and_then(|m| m.opened(&self.stream)));
        if let Some(mut e) = self.sound.as_ref().and_then(|s| s.opened(&self.stream)) {
            self.tags.label(&mut e);
            if let Some(l) = e.labels.first() {
                e.confidence = l.score.clamp(0.0, 1.0);
            }
            v.push(e);
        }
        v.extend(self.speech.opened(&self.stream));
        if let Some(sp) = &self.speaker {
            v.extend(sp.opened(&self.stream));
        }
        v
    }

    /// How far the stage has read, seconds.
    pub fn position(&self) -> f64 {
        self.cursor.position()
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

/// Runs the event stage until the window edge closes, then flushes open events; then the
/// source's verdict: `source_warning` events for what was incomplete and, if the source
/// failed, a `source_error` event, after the last events. `life` gives every message its
/// id and phase.
pub fn run_event_stage(
    mut stage: EventStage,
    mut life: lifecycle::Lifecycle,
    rx: EdgeReceiver<Window>,
    tx: EdgeSender<Event>,
    tap: Option<WindowTap>,
    verdict: impl FnOnce() -> SourceVerdict,
) -> EventStats {
    let mut stats = EventStats::default();
    let (mut done, mut out) = (Vec::new(), Vec::new());
    while let Some(w) = rx.recv() {
        stats.windows += 1;
        if let Some(tap) = &tap {
            tap(&w);
        }
        stage.process(&w, &mut done);
        life.stamp(done.drain(..), stage.going(), &mut out);
        for e in out.drain(..) {
            stats.events += u64::from(e.phase == crate::core::event::Phase::End);
            if tx.send(e).is_err() {
                stats.fusion = stage.fusion_stats();
                stats.speaker = stage.speaker_stats();
                return stats;
            }
        }
    }
    stage.finish(&mut done);
    stats.fusion = stage.fusion_stats();
    stats.speaker = stage.speaker_stats();
    let verdict = verdict();
    for w in verdict.warnings {
        let mut e = Event::new(EventKind::SourceWarning, &stage.stream, w.start, w.end, 1.0);
        e.evidence.warning = Some(w.message);
        done.push(e);
    }
    if let Some(msg) = verdict.error {
        let at = stage.position();
        let mut e = Event::new(EventKind::SourceError, &stage.stream, at, at, 1.0);
        e.evidence.error = Some(msg);
        done.push(e);
    }
    life.stamp(done.drain(..), Vec::new(), &mut out);
    for e in out.drain(..) {
        stats.events += u64::from(e.phase == crate::core::event::Phase::End);
        let _ = tx.send(e);
    }
    stats
}
