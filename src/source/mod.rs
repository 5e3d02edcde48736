//! Capture: turns files, URIs and test sources into timestamped [`Frame`]s and
//! [`AudioChunk`]s on bounded edges.
//!
//! All conversion happens inside GStreamer (scaling and colour conversion for video;
//! channel mixdown, sample-format conversion and resampling for audio), so what reaches
//! Rust is already in the format the encoders asked for ([`VideoSpec`], [`AUDIO_RATE`]).

pub mod audio_gst;
pub mod gst;
pub mod mic;
pub mod resample;
pub mod video;

use crate::clock::{Duration, Timestamp};
use std::path::PathBuf;

pub use self::gst::{GstSource, SourceReport};

/// The sample rate every audio encoder reads (YAMNet and Silero both take 16 kHz mono).
pub const AUDIO_RATE: u32 = 16_000;

/// Which media a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Frames.
    Video,
    /// Audio samples.
    Audio,
}

/// Pixel formats the source can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 8-bit luma only (motion).
    Gray8,
    /// Packed 8-bit RGB (detectors).
    Rgb,
}

impl PixelFormat {
    /// GStreamer's name of the format.
    pub fn gst_name(self) -> &'static str {
        match self {
            PixelFormat::Gray8 => "GRAY8",
            PixelFormat::Rgb => "RGB",
        }
    }
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb => 3,
        }
    }
}

/// What the video encoders ask the source for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSpec {
    /// Output width in pixels.
    pub width: u32,
    /// Output height; `None` keeps the input's display aspect ratio.
    pub height: Option<u32>,
    /// Pixel format.
    pub format: PixelFormat,
}

/// One decoded video frame, in the format of the [`VideoSpec`].
///
/// The pixels stay in GStreamer's buffer (mapped read-only): no copy is made between the
/// decoder and the encoders.
pub struct Frame {
    /// The stream (source name).
    pub stream: std::sync::Arc<str>,
    /// Presentation time.
    pub pts: Timestamp,
    /// Frame duration.
    pub duration: Duration,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Pixel format.
    pub format: PixelFormat,
    /// Sequence number of the frame within its stream (from 0).
    pub index: u64,
    data: ::gstreamer::MappedBuffer<::gstreamer::buffer::Readable>,
}

impl Frame {
    /// A frame from pixels held in memory (tests, benches, embedding applications that
    /// decode themselves). `data` must hold `height` rows of `width × bpp` bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn from_pixels(
        stream: &str,
        pts: Timestamp,
        duration: Duration,
        width: u32,
        height: u32,
        format: PixelFormat,
        data: Vec<u8>,
        index: u64,
    ) -> Result<Frame, SourceError> {
        let bad = |reason: String| SourceError::Build {
            stream: stream.to_string(),
            reason,
        };
        let stride = width as usize * format.bytes_per_pixel();
        if data.len() != stride * height as usize {
            return Err(bad(format!(
                "frame data of {} bytes for {width}×{height} {format:?} (expected {})",
                data.len(),
                stride * height as usize
            )));
        }
        gst::init().map_err(bad)?;
        let data = ::gstreamer::Buffer::from_mut_slice(data)
            .into_mapped_buffer_readable()
            .map_err(|_| bad("cannot map the frame buffer".into()))?;
        Ok(Frame {
            stream: std::sync::Arc::from(stream),
            pts,
            duration,
            width,
            height,
            stride,
            format,
            index,
            data,
        })
    }

    /// The pixel rows (`height` rows of `stride` bytes; the last may be shorter).
    pub fn data(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// Row `y` (exactly `width × bytes_per_pixel` bytes), or `None` when out of range.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        let start = y as usize * self.stride;
        let len = self.width as usize * self.format.bytes_per_pixel();
        self.data().get(start..start + len)
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("stream", &self.stream)
            .field("pts", &self.pts)
            .field("size", &(self.width, self.height))
            .field("format", &self.format)
            .finish()
    }
}

/// A run of mono f32 samples at [`AUDIO_RATE`].
#[derive(Debug, Clone)]
pub struct AudioChunk {
    /// The stream (source name).
    pub stream: std::sync::Arc<str>,
    /// Time of the first sample.
    pub pts: Timestamp,
    /// Sample rate (always [`AUDIO_RATE`] after the source's resampler).
    pub sample_rate: u32,
    /// Interleaved channel count (always 1 after the source's mixdown).
    pub channels: u16,
    /// The samples, in [-1, 1].
    pub samples: Vec<f32>,
    /// Set when this chunk does not follow the previous one without a gap.
    pub discont: bool,
}

impl AudioChunk {
    /// The chunk's length in time.
    pub fn duration(&self) -> Duration {
        Duration::of_samples(
            self.samples.len() as u64 / u64::from(self.channels.max(1)),
            self.sample_rate,
        )
    }
}

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
