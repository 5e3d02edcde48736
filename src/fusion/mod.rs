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
use crate::event::{Event, EventKind};
pub use events::{MotionDetector, SoundDetector};

/// The per-stream event stage.
pub struct EventStage {
    stream: String,
    motion: Option<MotionDetector>,
    sound: Option<SoundDetector>,
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
            vision_read: None,
            audio_read: f64::NEG_INFINITY,
        }
    }

    /// Decodes the features of `w` not seen in earlier windows.
    pub fn process(&mut self, w: &Window, out: &mut Vec<Event>) {
        if let Some(m) = &mut self.motion {
            for v in &w.vision {
                if self.vision_read.is_some_and(|r| v.pts <= r) {
                    continue;
                }
                self.vision_read = Some(v.pts);
                m.push(v, out);
            }
        }
        if let Some(s) = &mut self.sound {
            for a in &w.audio {
                if a.frames() == 0 {
                    continue;
                }
                let last = a.frame_time(a.frames() - 1).as_secs_f64();
                if last <= self.audio_read {
                    continue;
                }
                // Strictly after what was read: `from` is inclusive, so nudge by 1 ns.
                s.push(a, self.audio_read + 1e-9, out);
                self.audio_read = last;
            }
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
            s.finish(&self.stream, out);
        }
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
