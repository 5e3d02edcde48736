//! Capture: turns files, URIs and test sources into timestamped [`Frame`]s and
//! [`AudioChunk`]s on bounded edges.
//!
//! All conversion happens inside GStreamer (scaling and colour conversion for video;
//! channel mixdown, sample-format conversion and resampling for audio), so what reaches
//! Rust is already in the format the encoders asked for ([`VideoSpec`], [`AUDIO_RATE`]).

pub mod audio;
pub mod completeness;
pub mod config;
pub mod devices;
pub mod gst;
pub mod mic;
pub mod origin;
pub mod push;
pub mod resample;
pub mod state;
pub mod video;
pub mod wire;
#[cfg(feature = "zenoh")]
pub mod zenoh;

use std::path::PathBuf;

pub use self::config::{SourceConfig, SourceKind};
pub use self::gst::{GstSource, SourceReport};

pub use crate::core::media::{AudioChunk, Frame, Modality, PixelFormat, VideoSpec, AUDIO_RATE};

/// Errors of a source. Every message names the input and the stage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The input file does not exist or cannot be read.
    #[error("source {stream}: cannot open {path}: {reason}")]
    Open {
        /// Stream name.
        stream: String,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// GStreamer could not build the pipeline (a missing plugin, usually).
    #[error("source {stream}: cannot build the GStreamer pipeline: {reason}")]
    Build {
        /// Stream name.
        stream: String,
        /// Why.
        reason: String,
    },
    /// An element reported an error while running (bad data, unsupported codec, …).
    #[error(
        "source {stream} ({input}): GStreamer element `{element}` failed: {message} ({debug})"
    )]
    Stream {
        /// Stream name.
        stream: String,
        /// The input (path or URI).
        input: String,
        /// The element that posted the error.
        element: String,
        /// Its message.
        message: String,
        /// Its debug string.
        debug: String,
    },
    /// The stream ended well before the duration its container declares.
    #[error("source {stream} ({input}): truncated: media ends at {ended_at:.3} s but the container declares {declared:.3} s (expected a complete file)")]
    Truncated {
        /// Stream name.
        stream: String,
        /// The input.
        input: String,
        /// Where decoding stopped, seconds.
        ended_at: f64,
        /// The declared duration, seconds.
        declared: f64,
    },
    /// A microphone source failed (device missing, unplugged, or silent for too long).
    #[error("source {stream}: microphone: {reason}")]
    Microphone {
        /// Stream name.
        stream: String,
        /// Why.
        reason: String,
    },
    /// A live network stream delivered nothing for too long.
    #[error("source {stream} ({input}): no data for {seconds:.1} s (stall timeout)")]
    Stalled {
        /// Stream name.
        stream: String,
        /// The input.
        input: String,
        /// Seconds since the last buffer.
        seconds: f64,
    },
    /// A reconnecting source gave up after `reconnect_attempts` failed attempts.
    #[error("source {stream} ({input}): lost after {attempts} reconnect attempts: {reason}")]
    Lost {
        /// Stream name.
        stream: String,
        /// The input.
        input: String,
        /// Failed attempts.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The input decoded but yielded no video and no audio.
    #[error("source {stream} ({input}): no decodable video or audio stream (expected a media file with at least one track GStreamer can decode)")]
    NoStreams {
        /// Stream name.
        stream: String,
        /// The input.
        input: String,
    },
}
