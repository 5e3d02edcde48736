//! The MFCC encoder: the active-speaker model's audio features on a 10 ms grid anchored at
//! the stream's time zero (see [`MfccRun`]), so that MFCC frames `4k … 4k + 3` line up with
//! the 25 fps video tick `k` whatever time the audio starts at.
//!
//! At the start of the stream and after each discontinuity the front end restarts
//! ([`Mfcc::reset`]: pre-emphasis and framing start anew, as upstream starts them at the
//! start of each clip) at the first sample on the grid; the samples before it are skipped
//! (less than 10 ms).

use crate::core::features::AudioFeatures;
use crate::core::media::{AudioChunk, AUDIO_RATE};
use crate::encode::{AudioEncoder, AudioEncoderKind, EncodeError, StreamInfo};
use avsense_nn::dsp::mfcc::Mfcc;

/// MFCC frames for the active-speaker model, on a grid of 10 ms steps anchored at the
/// stream's time zero: frame `m` is the 25 ms window starting at `m × 10 ms`, so the four
/// frames `4k … 4k + 3` belong to the 25 fps video tick `k` (see `Faces::ticks` of the face encoder).
#[derive(Debug, Clone, PartialEq)]
pub struct MfccRun {
    /// Grid index of the first frame.
    pub first: u64,
    /// The frames, 13 coefficients each (python_speech_features' recipe).
    pub frames: Vec<[f32; 13]>,
}

/// The MFCC hop, nanoseconds.
const HOP_NS: u64 = 10_000_000;

/// [`Mfcc`] as an [`AudioEncoder`].
pub struct MfccEncoder {
    mfcc: Mfcc,
    /// Grid index of the next frame, once a run has started.
    next: Option<u64>,
    frames: Vec<[f32; 13]>,
}

impl MfccEncoder {
    /// A fresh encoder.
    pub fn new() -> Self {
        Self {
            mfcc: Mfcc::new(),
            next: None,
            frames: Vec::new(),
        }
    }
}

impl Default for MfccEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl AudioEncoder for MfccEncoder {
    fn name(&self) -> &'static str {
        "mfcc"
    }

    fn encode(&mut self, chunk: &AudioChunk, feats: &mut AudioFeatures) -> Result<(), EncodeError> {
        if chunk.sample_rate != AUDIO_RATE || chunk.channels != 1 {
            return Err(EncodeError::BadInput {
                encoder: "mfcc",
                stream: chunk.stream.to_string(),
                pts: chunk.pts,
                reason: format!(
                    "{} Hz × {} channels, expected {AUDIO_RATE} Hz mono",
                    chunk.sample_rate, chunk.channels
                ),
            });
        }
        let mut samples: &[f32] = &chunk.samples;
        if chunk.discont || self.next.is_none() {
            // Restart on the grid: the first 10 ms boundary at or after the chunk's start.
            self.mfcc.reset();
            let first = chunk.pts.0.div_ceil(HOP_NS);
            let skip_ns = first * HOP_NS - chunk.pts.0;
            let skip =
                ((skip_ns as u128 * u128::from(AUDIO_RATE) + 500_000_000) / 1_000_000_000) as usize;
            samples = samples.get(skip..).unwrap_or(&[]);
            self.next = Some(first);
        }
        self.frames.clear();
        self.mfcc.push_into(samples, &mut self.frames);
        if self.frames.is_empty() {
            return Ok(());
        }
        let first = self.next.unwrap_or(0);
        self.next = Some(first + self.frames.len() as u64);
        feats.ext.insert(MfccRun {
            first,
            frames: std::mem::take(&mut self.frames),
        });
        Ok(())
    }
}

/// The MFCC encoder as the pipeline registers it (with the active speaker; nothing to load).
pub struct MfccKind;

impl AudioEncoderKind for MfccKind {
    fn name(&self) -> &'static str {
        "mfcc"
    }

    /// Runs on streams with video and audio (the active speaker's streams).
    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn AudioEncoder>>, EncodeError> {
        Ok((stream.video && stream.audio)
            .then(|| Box::new(MfccEncoder::new()) as Box<dyn AudioEncoder>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};
    use std::sync::Arc;

    fn chunk(pts_ns: u64, n: usize, discont: bool) -> AudioChunk {
        AudioChunk {
            stream: Arc::from("s"),
            pts: Timestamp(pts_ns),
            sample_rate: AUDIO_RATE,
            channels: 1,
            samples: (0..n).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect(),
            discont,
        }
    }

    fn feats() -> AudioFeatures {
        AudioFeatures {
            stream: Arc::from("s"),
            pts: Timestamp(0),
            hop: Duration(HOP_NS),
            window: Duration(25_000_000),
            log_mel: Vec::new(),
            level_db: Vec::new(),
            onset: Vec::new(),
            ext: Default::default(),
        }
    }

    #[test]
    fn frames_sit_on_the_10_ms_grid_and_runs_follow_each_other() {
        let mut enc = MfccEncoder::new();
        // Audio starting at 23 ms: the grid starts at 30 ms (frame 3), 112 samples later.
        let mut f = feats();
        enc.encode(&chunk(23_000_000, 1600, true), &mut f).unwrap();
        let run = f.get::<MfccRun>().cloned().unwrap();
        assert_eq!(run.first, 3);
        // 1600 − 112 = 1488 samples: 1 + ⌊(1488 − 400) / 160⌋ = 7 full frames.
        assert_eq!(run.frames.len(), 7);
        let mut g = feats();
        enc.encode(&chunk(23_000_000 + 100_000_000, 1600, false), &mut g)
            .unwrap();
        assert_eq!(g.get::<MfccRun>().unwrap().first, 10);
        // The same samples in one go give the same frames (the state crosses chunks).
        let mut one = MfccEncoder::new();
        let mut h = feats();
        let mut all = chunk(23_000_000, 3200, true);
        all.samples = chunk(0, 1600, true)
            .samples
            .into_iter()
            .chain(chunk(0, 1600, true).samples)
            .collect();
        one.encode(&all, &mut h).unwrap();
        let joined: Vec<[f32; 13]> = run
            .frames
            .iter()
            .chain(&g.get::<MfccRun>().unwrap().frames)
            .copied()
            .collect();
        assert_eq!(
            h.get::<MfccRun>().unwrap().frames[..joined.len()],
            joined[..]
        );
        // A discontinuity restarts on the grid.
        let mut d = feats();
        enc.encode(&chunk(1_000_000_000, 800, true), &mut d)
            .unwrap();
        assert_eq!(d.get::<MfccRun>().unwrap().first, 100);
    }

    #[test]
    fn stereo_or_another_rate_is_refused() {
        let mut enc = MfccEncoder::new();
        let mut c = chunk(0, 100, true);
        c.channels = 2;
        assert!(enc.encode(&c, &mut feats()).is_err());
    }
}
