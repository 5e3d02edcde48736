//! Per-modality encoders: frames → [`VisionFeatures`], audio chunks → [`AudioFeatures`].
//!
//! The runtime only knows the [`VideoEncoder`] and [`AudioEncoder`] traits, so neural
//! encoders slot in beside the cheap ones here without touching it. Video encoders get
//! every batch of frames that was waiting on the edge (one forward pass per batch); audio
//! runs the shared log-mel front end once and hands its output to every audio encoder.

pub mod audio;
pub mod coco;
pub mod faces;
pub mod mfcc;
pub mod mfcc_encoder;
pub mod models;
pub mod motion;
pub mod ops;
pub mod speech;
pub mod tagger;
pub mod tracker;
pub mod vision;

use crate::align::Feature;
use crate::channel::{EdgeReceiver, EdgeSender};
use crate::clock::{Duration, Timestamp};
use crate::source::{AudioChunk, Frame, Modality, VideoSpec};
use std::sync::Arc;

pub use audio::{LogMelFrontEnd, MEL_BINS};
pub use motion::{MotionEncoder, MotionFeatures};

/// Errors of an encoder; the message names the encoder, the stream and the input.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A model could not be loaded (missing, wrong or corrupt file; device unavailable).
    #[error("encoder {encoder}: cannot load its model: {reason}")]
    Load {
        /// Encoder name.
        encoder: &'static str,
        /// Why (names the file and tensor).
        reason: String,
    },
    /// The input does not have the shape or format the encoder expects.
    #[error("encoder {encoder} on stream {stream}: bad input at {pts}: {reason}")]
    BadInput {
        /// Encoder name.
        encoder: &'static str,
        /// Stream name.
        stream: String,
        /// Time of the offending input.
        pts: Timestamp,
        /// What was expected.
        reason: String,
    },
}

/// Everything the video encoders learnt from one frame.
#[derive(Debug, Clone)]
pub struct VisionFeatures {
    /// Stream name.
    pub stream: Arc<str>,
    /// Frame time.
    pub pts: Timestamp,
    /// Frame duration.
    pub duration: Duration,
    /// Frame number in the stream.
    pub index: u64,
    /// Motion grid (when the motion encoder runs).
    pub motion: Option<MotionFeatures>,
    /// Whether the detector ran on this frame (it runs `detector.fps` times a second; the
    /// frames in between carry the tracks of the last detection).
    pub detected: bool,
    /// Confirmed object tracks in this frame (when a detector runs): matched by this frame's
    /// detections, or carried from the last detected frame when `detected` is false.
    pub objects: Vec<tracker::TrackedObject>,
    /// Tracks that appeared or ended at this frame.
    pub track_events: Vec<tracker::TrackEvent>,
    /// Face tracks in this frame with their active-speaker crops (when the face encoder
    /// runs).
    pub faces: Vec<faces::FaceObservation>,
    /// The 25 fps ticks (`k` stands for `k × 40 ms`) this frame is the nearest frame of:
    /// one per frame at 25 fps, none or several at other rates (the face crops are
    /// resampled to the active-speaker model's rate this way). Empty when no face encoder
    /// runs.
    pub ticks: std::ops::Range<u64>,
}

impl VisionFeatures {
    /// Empty features for `frame`, to be filled by the encoders.
    pub fn for_frame(frame: &Frame) -> Self {
        Self {
            stream: Arc::clone(&frame.stream),
            pts: frame.pts,
            duration: frame.duration,
            index: frame.index,
            motion: None,
            detected: false,
            objects: Vec::new(),
            track_events: Vec::new(),
            faces: Vec::new(),
            ticks: 0..0,
        }
    }
    /// The end of the frame's display interval.
    pub fn end(&self) -> Timestamp {
        self.pts + self.duration
    }
}

/// Audio features for a run of 10 ms hops (YAMNet's framing: 25 ms windows, 10 ms hop).
#[derive(Debug, Clone)]
pub struct AudioFeatures {
    /// Stream name.
    pub stream: Arc<str>,
    /// Start of the first analysis window.
    pub pts: Timestamp,
    /// Hop between frames.
    pub hop: Duration,
    /// Window length.
    pub window: Duration,
    /// Log-mel frames, `frames × MEL_BINS`, row-major: ln(mel(|STFT|) + 0.001).
    pub log_mel: Vec<f32>,
    /// RMS level per frame in dBFS (a full-scale sine is 0 dBFS).
    pub level_db: Vec<f32>,
    /// Onset strength per frame: mean positive log-mel flux.
    pub onset: Vec<f32>,
    /// Speech probabilities of the VAD chunks completed with this run (when a VAD runs).
    pub speech: Vec<SpeechProb>,
    /// Tagger patches completed with this run (when a tagger runs).
    pub tags: Vec<TagPatch>,
    /// MFCC frames completed with this run (when the active-speaker model runs).
    pub mfcc: Option<MfccRun>,
}

/// MFCC frames for the active-speaker model, on a grid of 10 ms steps anchored at the
/// stream's time zero: frame `m` is the 25 ms window starting at `m × 10 ms`, so the four
/// frames `4k … 4k + 3` belong to the 25 fps video tick `k` (see [`VisionFeatures::ticks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MfccRun {
    /// Grid index of the first frame.
    pub first: u64,
    /// The frames, 13 coefficients each (python_speech_features' recipe).
    pub frames: Vec<[f32; 13]>,
}

/// Speech probability of one VAD chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechProb {
    /// Start of the chunk.
    pub start: Timestamp,
    /// Its length.
    pub duration: Duration,
    /// Probability of speech.
    pub prob: f32,
}

/// Audio tags of one patch (YAMNet: 0.96 s every 0.48 s).
#[derive(Debug, Clone)]
pub struct TagPatch {
    /// Start of the patch.
    pub start: Timestamp,
    /// End of the patch.
    pub end: Timestamp,
    /// Scores of every class (index = class id).
    pub scores: Arc<Vec<f32>>,
    /// Class names (index = class id).
    pub names: Arc<Vec<String>>,
    /// The patch embedding (YAMNet: 1024-d).
    pub embedding: Arc<Vec<f32>>,
}

impl AudioFeatures {
    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.level_db.len()
    }
    /// The time a frame stands for: the centre of its window.
    pub fn frame_time(&self, k: usize) -> Timestamp {
        Timestamp(self.pts.0 + k as u64 * self.hop.0 + self.window.0 / 2)
    }
    /// The end of the span these frames cover (start of the first + frames × hop).
    pub fn end(&self) -> Timestamp {
        Timestamp(self.pts.0 + self.frames() as u64 * self.hop.0)
    }
}

/// A video encoder: fills its part of the features of a batch of frames.
pub trait VideoEncoder: Send {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;
    /// The frames it needs (size, format); the source scales and converts to this.
    fn input_spec(&self) -> VideoSpec;
    /// Encodes `frames` into `out` (same length, same order).
    fn encode(&mut self, frames: &[Frame], out: &mut [VisionFeatures]) -> Result<(), EncodeError>;
    /// End of stream: adds what is still open (e.g. tracks that end now) to the features of
    /// the last frame.
    fn finish(&mut self, _last: &mut VisionFeatures) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// An audio encoder: reads the raw chunk and the front end's features of it, and adds
/// its own results to them.
pub trait AudioEncoder: Send {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;
    /// Encodes one chunk; `feats` already holds the log-mel front end's output for it.
    fn encode(&mut self, chunk: &AudioChunk, feats: &mut AudioFeatures) -> Result<(), EncodeError>;
}

/// Most frames taken from the edge for one batch.
pub const MAX_VIDEO_BATCH: usize = 8;

/// The video encoder stage: batches what is waiting, runs every encoder, forwards the
/// features; at the end of the edge it tells the aligner that video has ended.
pub fn run_video_stage(
    mut encoders: Vec<Box<dyn VideoEncoder>>,
    rx: EdgeReceiver<Frame>,
    tx: EdgeSender<Feature>,
    mut observe: impl FnMut(&VisionFeatures),
) -> Result<(), EncodeError> {
    let mut batch = Vec::with_capacity(MAX_VIDEO_BATCH);
    let mut out = Vec::with_capacity(MAX_VIDEO_BATCH);
    // The newest frame's features wait for the next batch, so that at the end of the
    // stream the encoders can still add to them (tracks that end with the stream).
    let mut held: Option<VisionFeatures> = None;
    while let Some(first) = rx.recv() {
        batch.clear();
        batch.push(first);
        rx.drain_ready(MAX_VIDEO_BATCH, &mut batch);
        out.clear();
        out.extend(batch.iter().map(VisionFeatures::for_frame));
        for enc in encoders.iter_mut() {
            enc.encode(&batch, &mut out)?;
        }
        let newest = out.pop();
        for f in held.take().into_iter().chain(out.drain(..)) {
            observe(&f);
            if tx.send(Feature::Vision(Arc::new(f))).is_err() {
                return Ok(()); // downstream stopped: nothing left to do
            }
        }
        held = newest;
    }
    if let Some(mut last) = held {
        for enc in encoders.iter_mut() {
            enc.finish(&mut last)?;
        }
        let _ = tx.send(Feature::Vision(Arc::new(last)));
    }
    let _ = tx.send(Feature::End(Modality::Video));
    Ok(())
}

/// Most audio chunks joined into one batch.
pub const MAX_AUDIO_BATCH: usize = 64;

/// Joins runs of chunks that follow each other without a discontinuity.
fn join_contiguous(chunks: &mut Vec<AudioChunk>) -> Vec<AudioChunk> {
    let mut out: Vec<AudioChunk> = Vec::new();
    for c in chunks.drain(..) {
        match out.last_mut() {
            Some(last)
                if !c.discont
                    && last.sample_rate == c.sample_rate
                    && last.channels == c.channels =>
            {
                last.samples.extend_from_slice(&c.samples);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The audio encoder stage: log-mel front end, then every audio encoder, per chunk.
pub fn run_audio_stage(
    mut front: LogMelFrontEnd,
    mut encoders: Vec<Box<dyn AudioEncoder>>,
    rx: EdgeReceiver<AudioChunk>,
    tx: EdgeSender<Feature>,
) -> Result<(), EncodeError> {
    let mut waiting = Vec::with_capacity(MAX_AUDIO_BATCH);
    // Samples the front end took without completing a frame (small live chunks): the
    // encoders get them with the next chunk, so every sample reaches them exactly once and
    // their sample-count timelines stay true.
    let mut carry: Option<AudioChunk> = None;
    while let Some(first) = rx.recv() {
        // Batch what is waiting: GStreamer delivers ~20 ms buffers, and every encoder call
        // has a fixed cost (a VAD forward per call, tensor set-up), so contiguous chunks are
        // joined into one before encoding. A discontinuity starts a new batch.
        waiting.clear();
        waiting.push(first);
        rx.drain_ready(MAX_AUDIO_BATCH, &mut waiting);
        for chunk in join_contiguous(&mut waiting) {
            let feats = front.push(&chunk)?;
            let chunk = match carry.take() {
                Some(mut c) if !chunk.discont => {
                    c.samples.extend_from_slice(&chunk.samples);
                    c
                }
                _ => chunk,
            };
            let Some(mut feats) = feats else {
                carry = Some(chunk);
                continue;
            };
            for enc in encoders.iter_mut() {
                enc.encode(&chunk, &mut feats)?;
            }
            if tx.send(Feature::Audio(Arc::new(feats))).is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx.send(Feature::End(Modality::Audio));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: usize, pts: u64, discont: bool) -> AudioChunk {
        AudioChunk {
            stream: Arc::from("s"),
            pts: Timestamp(pts),
            sample_rate: crate::source::AUDIO_RATE,
            channels: 1,
            samples: vec![0.0; n],
            discont,
        }
    }

    #[test]
    fn contiguous_chunks_are_joined_and_a_discontinuity_splits() {
        let mut v = vec![
            chunk(100, 0, true),
            chunk(50, 1, false),
            chunk(30, 9, true),
            chunk(20, 10, false),
        ];
        let j = join_contiguous(&mut v);
        assert_eq!(
            j.iter().map(|c| c.samples.len()).collect::<Vec<_>>(),
            vec![150, 50]
        );
        assert_eq!(
            (j[0].pts, j[1].pts, j[1].discont),
            (Timestamp(0), Timestamp(9), true)
        );
    }
}
