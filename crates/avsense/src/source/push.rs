//! Push input (`kind = "push"`): an embedding program feeds its own frames and audio.
//!
//! ```text
//! PushInput::push_video(pts, w, h, format, bytes) ─▶ appsrc ─▶ (the video branch: scale, convert) ─▶ frames edge
//! PushInput::push_audio(pts, rate, channels, samples) ─▶ appsrc ─▶ (the audio branch: mix, resample) ─▶ audio edge
//! ```
//!
//! Pushed data goes through the same GStreamer branches as every other source, so the
//! encoders see exactly what they would see from a file. Timestamps are the caller's
//! (nanoseconds on any monotonic clock, video and audio on the same one): the stream's
//! timeline starts at the first pushed timestamp. A recorded (`live = false`) push input
//! blocks the caller while the pipeline is behind (nothing is lost); a live one drops the
//! oldest queued frames instead, and its timeline sits on the pipeline clock so that
//! capture → event latency is measured from the push.
//!
//! A bad push (a buffer whose length does not match its size and format, a timestamp going
//! back, a sample rate of 0) returns an error and changes nothing; the input goes on.

use gstreamer as gst;
use gstreamer_app as gst_app;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Pixel layouts a push input takes (tight rows, no padding; planes one after another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// Packed 8-bit R, G, B.
    Rgb,
    /// Packed 8-bit B, G, R (OpenCV's order).
    Bgr,
    /// 8-bit luma.
    Gray8,
    /// Y plane, then interleaved U/V at half resolution (cameras, hardware decoders).
    Nv12,
    /// Y, U, V planes, U and V at half resolution.
    I420,
}

impl PushFormat {
    fn gst(self) -> gstreamer_video::VideoFormat {
        use gstreamer_video::VideoFormat as F;
        match self {
            PushFormat::Rgb => F::Rgb,
            PushFormat::Bgr => F::Bgr,
            PushFormat::Gray8 => F::Gray8,
            PushFormat::Nv12 => F::Nv12,
            PushFormat::I420 => F::I420,
        }
    }

    /// Each plane's (bytes per row, rows) for a tight `w × h` image.
    fn planes(self, w: usize, h: usize) -> Vec<(usize, usize)> {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match self {
            PushFormat::Rgb | PushFormat::Bgr => vec![(w * 3, h)],
            PushFormat::Gray8 => vec![(w, h)],
            PushFormat::Nv12 => vec![(w, h), (cw * 2, ch)],
            PushFormat::I420 => vec![(w, h), (cw, ch), (cw, ch)],
        }
    }

    /// Bytes of a tight `w × h` image.
    pub fn size(self, width: u32, height: u32) -> usize {
        self.planes(width as usize, height as usize)
            .iter()
            .map(|(r, n)| r * n)
            .sum()
    }
}

/// Audio samples, interleaved by channel.
#[derive(Debug, Clone, Copy)]
pub enum PushSamples<'a> {
    /// 32-bit float in [-1, 1].
    F32(&'a [f32]),
    /// Signed 16-bit.
    I16(&'a [i16]),
}

impl PushSamples<'_> {
    fn len(&self) -> usize {
        match self {
            PushSamples::F32(s) => s.len(),
            PushSamples::I16(s) => s.len(),
        }
    }
}

/// Why a push was refused (the input goes on unless it has ended).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// The buffer's length does not match its size and format.
    #[error("input {stream}: a {what} of {got} bytes/samples, expected {expected}")]
    Length {
        /// The input.
        stream: String,
        /// What was pushed (`640×480 Rgb frame`, `2-channel audio buffer`).
        what: String,
        /// Its length.
        got: usize,
        /// The length expected.
        expected: usize,
    },
    /// A timestamp earlier than the last one of the same modality (or the first of the input).
    #[error("input {stream}: {modality} pts {got} ns goes back (last {last} ns); timestamps must not decrease")]
    PtsBackwards {
        /// The input.
        stream: String,
        /// `video` or `audio`.
        modality: &'static str,
        /// The refused timestamp.
        got: u64,
        /// The last accepted one.
        last: u64,
    },
    /// Something the pipeline cannot take (a zero size or rate, a modality the source does
    /// not have).
    #[error("input {stream}: {reason}")]
    Unsupported {
        /// The input.
        stream: String,
        /// Why.
        reason: String,
    },
    /// The input has ended ([`PushInput::finish`], a stop, or the pipeline has failed).
    #[error("input {stream}: the input has ended ({reason})")]
    Ended {
        /// The input.
        stream: String,
        /// Why.
        reason: String,
    },
}

#[derive(Default)]
struct State {
    video: Option<gst_app::AppSrc>,
    audio: Option<gst_app::AppSrc>,
    /// Whether the source thread has built (or given up building) its appsrcs.
    ready: bool,
    /// Why the input cannot take data any more.
    ended: Option<String>,
    /// The first pushed timestamp (caller's clock) and where it sits on the stream's
    /// timeline (0 for recorded input; the pipeline's running time for live input).
    origin: Option<(u64, u64)>,
    last_video: Option<u64>,
    last_audio: Option<u64>,
    video_caps: Option<gst::Caps>,
    audio_caps: Option<gst::Caps>,
}

pub(crate) struct Inner {
    /// The callers' handles share one of these: when the last is dropped, the input ends.
    users: Mutex<std::sync::Weak<Finisher>>,
    stream: String,
    live: bool,
    has_video: bool,
    has_audio: bool,
    state: Mutex<State>,
    cv: Condvar,
}

/// Ends the input when the last of the callers' handles goes away.
struct Finisher(Arc<Inner>);

impl Drop for Finisher {
    fn drop(&mut self) {
        finish(&self.0);
    }
}

/// The handle an embedding program pushes through (cheap to clone; thread-safe).
/// Get it with [`crate::Running::input`]. Dropping every handle ends the input like
/// [`PushInput::finish`].
#[derive(Clone)]
pub struct PushInput {
    inner: Arc<Inner>,
    _user: Option<Arc<Finisher>>,
}

/// How long a push waits for the source thread to have built its pipeline.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl PushInput {
    pub(crate) fn new(stream: &str, live: bool, has_video: bool, has_audio: bool) -> Self {
        PushInput {
            inner: Arc::new(Inner {
                users: Mutex::new(std::sync::Weak::new()),
                stream: stream.to_string(),
                live,
                has_video,
                has_audio,
                state: Mutex::default(),
                cv: Condvar::new(),
            }),
            _user: None,
        }
    }

    /// A caller's handle (the pipeline's own copies do not keep the input open).
    pub(crate) fn for_caller(&self) -> PushInput {
        let user = match self.inner.users.lock() {
            Ok(mut w) => match w.upgrade() {
                Some(u) => Some(u),
                None => {
                    let u = Arc::new(Finisher(Arc::clone(&self.inner)));
                    *w = Arc::downgrade(&u);
                    Some(u)
                }
            },
            Err(_) => None,
        };
        PushInput {
            inner: Arc::clone(&self.inner),
            _user: user,
        }
    }

    /// The input's (stream's) name.
    pub fn name(&self) -> &str {
        &self.inner.stream
    }

    fn ended(&self, reason: impl Into<String>) -> PushError {
        PushError::Ended {
            stream: self.inner.stream.clone(),
            reason: reason.into(),
        }
    }

    /// Called by the source thread with its appsrcs once built (None: it could not build).
    pub(crate) fn attach(&self, video: Option<gst_app::AppSrc>, audio: Option<gst_app::AppSrc>) {
        if let Ok(mut s) = self.inner.state.lock() {
            s.video = video;
            s.audio = audio;
            s.ready = true;
        }
        self.inner.cv.notify_all();
    }

    /// Called by the source thread when the input can take nothing more.
    pub(crate) fn close(&self, reason: &str) {
        if let Ok(mut s) = self.inner.state.lock() {
            s.ready = true;
            s.ended.get_or_insert_with(|| reason.to_string());
            s.video = None;
            s.audio = None;
        }
        self.inner.cv.notify_all();
    }

    /// The stream timeline's time of `pts`, checking it does not go back.
    fn timeline(
        &self,
        s: &mut State,
        pts: u64,
        video: bool,
        clock_now: impl FnOnce() -> u64,
    ) -> Result<u64, PushError> {
        let last = if video { s.last_video } else { s.last_audio };
        let floor = last.or(s.origin.map(|o| o.0));
        if let Some(l) = floor.filter(|l| pts < *l) {
            return Err(PushError::PtsBackwards {
                stream: self.inner.stream.clone(),
                modality: if video { "video" } else { "audio" },
                got: pts,
                last: l,
            });
        }
        let (first, at) = *s
            .origin
            .get_or_insert_with(|| (pts, if self.inner.live { clock_now() } else { 0 }));
        Ok(at + (pts - first))
    }

    /// Pushes one video frame: `data` holds tight rows of `format` (see [`PushFormat`]).
    /// `pts` is in nanoseconds on the caller's monotonic clock.
    pub fn push_video(
        &self,
        pts: u64,
        width: u32,
        height: u32,
        format: PushFormat,
        data: &[u8],
    ) -> Result<(), PushError> {
        if !self.inner.has_video {
            return Err(PushError::Unsupported {
                stream: self.inner.stream.clone(),
                reason: "this input has no video (video = false in its [[source]])".into(),
            });
        }
        if width == 0 || height == 0 || width > 16384 || height > 16384 {
            return Err(PushError::Unsupported {
                stream: self.inner.stream.clone(),
                reason: format!("a {width}×{height} frame (1 to 16384 pixels a side)"),
            });
        }
        let expected = format.size(width, height);
        if data.len() != expected {
            return Err(PushError::Length {
                stream: self.inner.stream.clone(),
                what: format!("{width}×{height} {format:?} frame"),
                got: data.len(),
                expected,
            });
        }
        let info = gstreamer_video::VideoInfo::builder(format.gst(), width, height)
            .build()
            .map_err(|e| PushError::Unsupported {
                stream: self.inner.stream.clone(),
                reason: format!("{width}×{height} {format:?}: {e}"),
            })?;
        let buffer = repack(&info, format, data).ok_or_else(|| PushError::Unsupported {
            stream: self.inner.stream.clone(),
            reason: "cannot lay the frame out for GStreamer".into(),
        })?;
        self.push(buffer, pts, true, info.to_caps().ok())
    }

    /// Pushes audio: `samples` interleaved by channel at `rate` Hz; `pts` of the first
    /// sample in nanoseconds on the caller's monotonic clock (the same as the video's).
    pub fn push_audio(
        &self,
        pts: u64,
        rate: u32,
        channels: u16,
        samples: PushSamples<'_>,
    ) -> Result<(), PushError> {
        if !self.inner.has_audio {
            return Err(PushError::Unsupported {
                stream: self.inner.stream.clone(),
                reason: "this input has no audio (audio = false in its [[source]])".into(),
            });
        }
        if !(1000..=384_000).contains(&rate) || channels == 0 || channels > 64 {
            return Err(PushError::Unsupported {
                stream: self.inner.stream.clone(),
                reason: format!("audio at {rate} Hz with {channels} channels (1 kHz to 384 kHz, 1 to 64 channels)"),
            });
        }
        let n = samples.len();
        if n == 0 || !n.is_multiple_of(channels as usize) {
            return Err(PushError::Length {
                stream: self.inner.stream.clone(),
                what: format!("{channels}-channel audio buffer"),
                got: n,
                expected: (n / channels as usize + 1) * channels as usize,
            });
        }
        let (format, bytes): (&str, Vec<u8>) = match samples {
            PushSamples::F32(s) => ("F32LE", s.iter().flat_map(|v| v.to_le_bytes()).collect()),
            PushSamples::I16(s) => ("S16LE", s.iter().flat_map(|v| v.to_le_bytes()).collect()),
        };
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", format)
            .field("layout", "interleaved")
            .field("rate", rate as i32)
            .field("channels", channels as i32)
            .build();
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        let frames = (n / channels as usize) as u64;
        if let Some(b) = buffer.get_mut() {
            b.set_duration(gst::ClockTime::from_nseconds(
                frames * 1_000_000_000 / rate as u64,
            ));
        }
        self.push(buffer, pts, false, Some(caps))
    }

    fn push(
        &self,
        mut buffer: gst::Buffer,
        pts: u64,
        video: bool,
        caps: Option<gst::Caps>,
    ) -> Result<(), PushError> {
        let guard = self
            .inner
            .state
            .lock()
            .map_err(|_| self.ended("poisoned"))?;
        // The source thread builds the appsrcs shortly after the pipeline starts.
        let (mut s, _) = self
            .inner
            .cv
            .wait_timeout_while(guard, READY_TIMEOUT, |st| !st.ready)
            .map_err(|_| self.ended("poisoned"))?;
        if !s.ready {
            return Err(self.ended("the pipeline did not start within 30 s"));
        }
        if let Some(why) = &s.ended {
            return Err(self.ended(why.clone()));
        }
        let src = if video {
            s.video.clone()
        } else {
            s.audio.clone()
        };
        let src = src.ok_or_else(|| PushError::Unsupported {
            stream: self.inner.stream.clone(),
            reason: format!(
                "this input has no {} (set video/audio = true in its [[source]])",
                if video { "video" } else { "audio" }
            ),
        })?;
        let at = self.timeline(&mut s, pts, video, || running_time(&src))?;
        if let Some(caps) = caps {
            let known = if video {
                &mut s.video_caps
            } else {
                &mut s.audio_caps
            };
            if known.as_ref() != Some(&caps) {
                src.set_caps(Some(&caps));
                *known = Some(caps);
            }
        }
        if video {
            s.last_video = Some(pts);
        } else {
            s.last_audio = Some(pts);
        }
        drop(s); // a full recorded input blocks here without holding the lock
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(at));
        }
        src.push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| self.ended(format!("the pipeline refused the buffer: {e:?}")))
    }

    /// Ends the input: what was pushed is analysed, open events close, the stream ends.
    pub fn finish(&self) {
        finish(&self.inner);
    }
}

fn finish(inner: &Inner) {
    let (video, audio) = match inner.state.lock() {
        Ok(mut s) => {
            s.ended.get_or_insert_with(|| "finished".into());
            (s.video.take(), s.audio.take())
        }
        Err(_) => (None, None),
    };
    for src in [video, audio].into_iter().flatten() {
        let _ = src.end_of_stream();
    }
    inner.cv.notify_all();
}

/// The pipeline's running time now (ns), for a live input's timeline.
fn running_time(src: &gst_app::AppSrc) -> u64 {
    use gst::prelude::*;
    match (src.clock(), src.base_time()) {
        (Some(c), Some(b)) => c.time().nseconds().saturating_sub(b.nseconds()),
        _ => 0,
    }
}

/// Copies tight planes into a buffer with GStreamer's default strides for `info`.
fn repack(
    info: &gstreamer_video::VideoInfo,
    format: PushFormat,
    data: &[u8],
) -> Option<gst::Buffer> {
    let planes = format.planes(info.width() as usize, info.height() as usize);
    let mut out = vec![0u8; info.size()];
    let mut at = 0usize;
    for (p, (row, rows)) in planes.iter().enumerate() {
        let stride = *info.stride().get(p)? as usize;
        let offset = *info.offset().get(p)?;
        for r in 0..*rows {
            let src = data.get(at + r * row..at + (r + 1) * row)?;
            out.get_mut(offset + r * stride..offset + r * stride + row)?
                .copy_from_slice(src);
        }
        at += row * rows;
    }
    Some(gst::Buffer::from_mut_slice(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_of_tight_frames() {
        assert_eq!(PushFormat::Rgb.size(33, 2), 198);
        assert_eq!(PushFormat::Gray8.size(5, 3), 15);
        assert_eq!(PushFormat::I420.size(5, 3), 15 + 2 * 3 * 2);
        assert_eq!(PushFormat::Nv12.size(4, 4), 16 + 8);
    }

    #[test]
    fn odd_widths_are_padded_to_gstreamers_strides() {
        gst::init().unwrap();
        let info = gstreamer_video::VideoInfo::builder(gstreamer_video::VideoFormat::Rgb, 3, 2)
            .build()
            .unwrap();
        let data: Vec<u8> = (0..18).collect();
        let b = repack(&info, PushFormat::Rgb, &data).unwrap();
        let m = b.map_readable().unwrap();
        assert_eq!(info.stride()[0], 12);
        assert_eq!(&m[..9], &data[..9]);
        assert_eq!(&m[12..21], &data[9..18]);
    }

    #[test]
    fn bad_pushes_are_errors_before_anything_is_sent() {
        let input = PushInput::new("cam", false, true, false);
        let e = input
            .push_video(0, 4, 4, PushFormat::Rgb, &[0u8; 10])
            .unwrap_err();
        assert!(
            matches!(
                e,
                PushError::Length {
                    expected: 48,
                    got: 10,
                    ..
                }
            ),
            "{e}"
        );
        let e = input.push_video(0, 0, 4, PushFormat::Rgb, &[]).unwrap_err();
        assert!(matches!(e, PushError::Unsupported { .. }), "{e}");
        let e = input
            .push_audio(0, 16000, 1, PushSamples::F32(&[0.0; 160]))
            .unwrap_err();
        assert!(e.to_string().contains("no audio"), "{e}");
        // Timestamps: the first sets the origin; one going back is refused.
        let mut s = State::default();
        assert_eq!(input.timeline(&mut s, 1_000, true, || 0).unwrap(), 0);
        s.last_video = Some(1_000);
        assert_eq!(input.timeline(&mut s, 1_500, true, || 0).unwrap(), 500);
        let e = input.timeline(&mut s, 900, true, || 0).unwrap_err();
        assert!(
            matches!(
                e,
                PushError::PtsBackwards {
                    got: 900,
                    last: 1_000,
                    ..
                }
            ),
            "{e}"
        );
        let e = input.timeline(&mut s, 999, false, || 0).unwrap_err();
        assert!(
            matches!(e, PushError::PtsBackwards { last: 1_000, .. }),
            "before the origin: {e}"
        );
    }
}
