//! Aligned windows: what the aligner hands the stages after it.

use super::clock::Timestamp;
use super::features::{AudioFeatures, Extensions, VisionFeatures};
use std::sync::Arc;

/// One aligned window of a stream.
#[derive(Debug, Clone)]
pub struct Window {
    /// Stream name.
    pub stream: Arc<str>,
    /// Sequence number (window k starts at k × hop).
    pub index: u64,
    /// Start (inclusive).
    pub start: Timestamp,
    /// End (exclusive).
    pub end: Timestamp,
    /// Frames whose PTS lies in `[start, end)`, in order.
    pub vision: Vec<Arc<VisionFeatures>>,
    /// Audio feature runs that overlap `[start, end)`, in order.
    pub audio: Vec<Arc<AudioFeatures>>,
    /// Some modality of the stream contributed nothing to this window.
    pub partial: bool,
    /// What stages between the aligner and the event stage added (e.g. the active-speaker
    /// model's per-face scores), by type.
    pub ext: Extensions,
}

/// A callback that sees every aligned window (for embedding applications and tests).
pub type WindowTap = Arc<dyn Fn(&Window) + Send + Sync>;

/// What a stage after the aligner has read of a stream. Windows overlap (hop < length), so
/// a frame or an audio run appears in several of them; each is to be taken once.
#[derive(Debug, Clone, Copy)]
pub struct ReadCursor {
    /// PTS of the last frame taken.
    vision: Option<Timestamp>,
    /// Time (seconds) of the last audio frame taken.
    audio: f64,
}

impl Default for ReadCursor {
    fn default() -> Self {
        Self {
            vision: None,
            audio: f64::NEG_INFINITY,
        }
    }
}

/// An audio run not read before, with how far the audio had been read before it (seconds;
/// `−∞` before the first).
pub struct NewAudio<'a> {
    /// Read position before this run.
    pub read_before: f64,
    /// The run.
    pub run: &'a Arc<AudioFeatures>,
}

impl ReadCursor {
    /// The frames and audio runs of `w` not taken from earlier windows, in order; marks them
    /// taken. Empty audio runs are skipped.
    pub fn advance<'a>(
        &mut self,
        w: &'a Window,
    ) -> (Vec<&'a Arc<VisionFeatures>>, Vec<NewAudio<'a>>) {
        let mut vision = Vec::new();
        for v in &w.vision {
            if self.vision.is_some_and(|r| v.pts <= r) {
                continue;
            }
            self.vision = Some(v.pts);
            vision.push(v);
        }
        let mut audio = Vec::new();
        for a in &w.audio {
            if a.frames() == 0 {
                continue;
            }
            let last = a.frame_time(a.frames() - 1).as_secs_f64();
            if last <= self.audio {
                continue;
            }
            audio.push(NewAudio {
                read_before: self.audio,
                run: a,
            });
            self.audio = last;
        }
        (vision, audio)
    }

    /// How far the stream has been read, seconds (the further modality).
    pub fn position(&self) -> f64 {
        let v = self.vision.map(|t| t.as_secs_f64()).unwrap_or(0.0);
        v.max(self.audio)
    }
}
