//! Per-modality encoders: frames → [`VisionFeatures`], audio chunks → [`AudioFeatures`].
//!
//! ```text
//! video/   objects (detector schedule + tracker; NanoDet behind the Detector trait),
//!          faces (BlazeFace, face tracks, active-speaker crops), motion (grid)
//! audio/   logmel (the shared front end: log-mel, level, onset), speech (Silero VAD),
//!          tagger (YAMNet), mfcc (Light-ASD's audio features)
//! stage    the two encoder threads: batch what waits on the edge, run every encoder
//! ```
//!
//! The runtime only knows the [`VideoEncoder`] and [`AudioEncoder`] traits. Each encoder
//! adds its results to the features as its own type (see [`crate::core::features`]), so
//! adding an encoder means one new file here and one line where the pipeline registers the
//! encoders (`pipeline::chain`); no shared struct grows a field.

pub mod audio;
pub mod stage;
pub mod video;

use crate::core::clock::Timestamp;
use crate::core::features::{AudioFeatures, VisionFeatures};
use crate::core::media::{AudioChunk, Frame, VideoSpec};

pub use stage::{
    run_audio_stage, run_video_stage, Batching, FIXED_AUDIO_RUN, MAX_AUDIO_BATCH, MAX_VIDEO_BATCH,
};

/// Errors of an encoder; the message names the encoder, the stream and the input.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A model could not be loaded (wrong or corrupt file).
    #[error("encoder {encoder}: cannot load its model: {cause}")]
    Load {
        /// Encoder name.
        encoder: &'static str,
        /// Why (the model's own error: names the file and tensor).
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A model file is missing while its encoder must run, or its device is unavailable.
    #[error(transparent)]
    ModelFile(#[from] crate::model_files::ModelFileError),
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

impl EncodeError {
    /// A model of `encoder` that failed to load.
    pub fn load(
        encoder: &'static str,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Load {
            encoder,
            cause: Box::new(cause),
        }
    }

    /// A model file (on disk, or given as bytes) could not be read.
    pub fn read(encoder: &'static str, origin: &str, source: std::io::Error) -> Self {
        Self::ModelFile(crate::model_files::ModelFileError::Read {
            encoder,
            path: origin.into(),
            source,
        })
    }
}

/// What an encoder kind knows of a stream when it makes the stream's encoder.
#[derive(Clone, Copy)]
pub struct StreamInfo<'a> {
    /// Stream name.
    pub name: &'a str,
    /// The stream's video is analysed.
    pub video: bool,
    /// The stream's audio is analysed.
    pub audio: bool,
    /// The frames every video encoder of the stream gets (the negotiated [`VideoSpec`]).
    pub spec: VideoSpec,
    /// Where an encoder publishes live counters of its own type (e.g. the face encoder's
    /// `Arc<Mutex<FaceStats>>`) for the run's report.
    pub counters: &'a std::sync::Mutex<crate::core::features::Extensions>,
}

/// A video encoder as the pipeline registers it: its models loaded once and shared, one
/// encoder per stream.
pub trait VideoEncoderKind: Send + Sync {
    /// Its name.
    fn name(&self) -> &'static str;
    /// The frames it would like (the pipeline negotiates one spec for all the stream's
    /// video encoders: see [`negotiate`]).
    fn input_spec(&self) -> VideoSpec;
    /// The encoder for one stream, or `None` when it does not run on it.
    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn VideoEncoder>>, EncodeError>;
}

/// An audio encoder as the pipeline registers it (see [`VideoEncoderKind`]).
pub trait AudioEncoderKind: Send + Sync {
    /// Its name.
    fn name(&self) -> &'static str;
    /// The encoder for one stream, or `None` when it does not run on it.
    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn AudioEncoder>>, EncodeError>;
}

/// One frame format for all of a stream's video encoders: RGB when any of them wants RGB
/// (at the largest width asked for in RGB; on a tie the later encoder's spec, so its height
/// rule applies), else the first encoder's grayscale spec. `None` without encoders. Each
/// encoder reads what it needs from that (motion reads the luma of RGB frames).
pub fn negotiate(specs: &[VideoSpec]) -> Option<VideoSpec> {
    let rgb = specs
        .iter()
        .filter(|s| s.format == crate::core::media::PixelFormat::Rgb)
        .fold(None::<VideoSpec>, |best, s| match best {
            Some(b) if b.width > s.width => Some(b),
            _ => Some(*s),
        });
    rgb.or_else(|| specs.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::media::PixelFormat;

    fn spec(width: u32, height: Option<u32>, format: PixelFormat) -> VideoSpec {
        VideoSpec {
            width,
            height,
            format,
        }
    }

    #[test]
    fn rgb_wins_at_the_widest_width_and_ties_go_to_the_later_encoder() {
        let motion = spec(320, None, PixelFormat::Gray8);
        let det = spec(416, Some(416), PixelFormat::Rgb);
        let faces = spec(640, None, PixelFormat::Rgb);
        assert_eq!(negotiate(&[]), None);
        assert_eq!(negotiate(&[motion]), Some(motion));
        assert_eq!(negotiate(&[det, motion]), Some(det));
        assert_eq!(negotiate(&[det, faces, motion]), Some(faces));
        let narrow_faces = spec(416, None, PixelFormat::Rgb);
        assert_eq!(negotiate(&[det, narrow_faces]), Some(narrow_faces));
    }
}
