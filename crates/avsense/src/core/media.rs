//! The media that cross stage boundaries: decoded [`Frame`]s and [`AudioChunk`]s, and what
//! the encoders ask the sources for ([`VideoSpec`]).

use super::clock::{Duration, Timestamp};

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
    /// A frame over a decoded GStreamer buffer, mapped read-only (the sources' way: no
    /// copy). `stride` is the distance between rows of the buffer's first plane, which must
    /// start at offset 0.
    #[allow(clippy::too_many_arguments)]
    pub fn from_mapped(
        stream: std::sync::Arc<str>,
        pts: Timestamp,
        duration: Duration,
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
        index: u64,
        data: ::gstreamer::MappedBuffer<::gstreamer::buffer::Readable>,
    ) -> Frame {
        Frame {
            stream,
            pts,
            duration,
            width,
            height,
            stride,
            format,
            index,
            data,
        }
    }

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
    ) -> Result<Frame, FrameError> {
        let bad = |reason: String| FrameError {
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
        ::gstreamer::init().map_err(|e| bad(format!("cannot initialise GStreamer: {e}")))?;
        let data = ::gstreamer::Buffer::from_mut_slice(data)
            .into_mapped_buffer_readable()
            .map_err(|_| bad("cannot map the frame buffer".into()))?;
        Ok(Frame::from_mapped(
            std::sync::Arc::from(stream),
            pts,
            duration,
            width,
            height,
            stride,
            format,
            index,
            data,
        ))
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

/// A frame could not be made from the pixels given.
#[derive(Debug, Clone, thiserror::Error)]
#[error("stream {stream}: cannot make a frame: {reason}")]
pub struct FrameError {
    /// Stream name.
    pub stream: String,
    /// Why.
    pub reason: String,
}
