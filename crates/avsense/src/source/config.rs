//! `[[source]]`: what one input stream is and how to reach it.

use crate::core::edge::EdgePolicy;
use crate::core::settings::{check, check_endpoints, in_range, Invalid};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default edge capacity (items) between source and encoders.
pub const DEFAULT_EDGE_CAPACITY: usize = 32;

/// What kind of input a source is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A local media file (`path`).
    File,
    /// Any URI GStreamer can open (`uri`): `file://`, `http(s)://`, `rtsp://`, …
    Uri,
    /// GStreamer test sources: a moving ball and ticking audio (`duration`, `live`).
    Test,
    /// Any GStreamer launch description (`launch`) whose unlinked source pads give raw
    /// video and/or audio, e.g. `v4l2src device=/dev/video0 ! videoconvert` or
    /// `alsasrc ! audioconvert`; `live` says whether it runs in real time.
    Gst,
    /// An RTSP camera (`uri` = `rtsp://…`) with reconnection: when the stream breaks or
    /// stalls the source reconnects with exponential backoff and reports the gap.
    Rtsp,
    /// A V4L2 camera (`device`, default `/dev/video0`) with caps negotiation (`width`,
    /// `height`, `fps`, `format`).
    V4l2,
    /// A microphone through cpal (`device`: name, index or `default`); audio only.
    Microphone,
    /// Frames and audio an embedding program pushes ([`crate::Running::input`]);
    /// `live` says whether they come in real time (drop the oldest when behind) or from a
    /// recording (the push blocks while the pipeline is behind).
    Push,
    /// Frames and audio another process publishes over zenoh on `<key>/media`
    /// ([`crate::source::wire`] format; cargo feature `zenoh`); `listen` / `connect`
    /// endpoints, `live` as for `push`.
    Zenoh,
}

/// `[[source]] transport` of an RTSP source.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// RTP interleaved in the RTSP TCP connection (robust through NAT and firewalls).
    #[default]
    Tcp,
    /// RTP over UDP.
    Udp,
    /// Whatever the server offers (UDP first, then TCP).
    Auto,
}

/// `[[source]] format` of a V4L2 camera.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CameraFormat {
    /// Whatever the camera offers first for the asked size/rate.
    #[default]
    Any,
    /// Motion JPEG (decoded by `jpegdec`): most USB webcams give high rates only this way.
    Mjpeg,
    /// Raw YUYV (YUY2).
    Yuyv,
}

/// Default first reconnect delay of RTSP sources, seconds.
pub const DEFAULT_RECONNECT_DELAY_S: f64 = 0.25;
/// Default cap of the reconnect delay, seconds.
pub const DEFAULT_RECONNECT_MAX_DELAY_S: f64 = 1.0;
/// Default time without a buffer after which a live network source counts as lost.
pub const DEFAULT_STALL_TIMEOUT_S: f64 = 5.0;
/// Default RTSP jitter-buffer latency, seconds.
pub const DEFAULT_RTSP_LATENCY_S: f64 = 0.2;

/// `[[source]]`: one input stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Stream name used in events (`stream`); unique within the pipeline.
    pub name: String,
    /// `file`, `uri`, `test`, `gst`, `rtsp`, `v4l2` or `microphone` (see [`SourceKind`]).
    pub kind: SourceKind,
    /// File path (kind = "file"); relative paths are relative to the config file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// URI (kind = "uri").
    #[serde(default)]
    pub uri: Option<String>,
    /// GStreamer launch description (kind = "gst").
    #[serde(default)]
    pub launch: Option<String>,
    /// Length in seconds of a `test` source (required for a non-live test source).
    #[serde(default)]
    pub duration: Option<f64>,
    /// A recorded `file`/`uri` input: analyse from this time in the file (seconds; events
    /// keep the file's times). The decoder seeks to it, frame-accurately.
    #[serde(default)]
    pub start: Option<f64>,
    /// A recorded `file`/`uri` input: stop at this time in the file (seconds).
    #[serde(default)]
    pub end: Option<f64>,
    /// A live test source (runs in real time; edges drop the oldest by default).
    #[serde(default)]
    pub live: bool,
    /// Decode and analyse the video track.
    #[serde(default = "yes")]
    pub video: bool,
    /// Decode and analyse the audio track.
    #[serde(default = "yes")]
    pub audio: bool,
    /// Edge policy from this source to its encoders; files block, live sources drop oldest.
    #[serde(default)]
    pub policy: Option<EdgePolicy>,
    /// Capacity in items of the edges from this source.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Seconds added to this source's audio timestamps (A/V offset: positive when the
    /// audio is captured earlier than the video it belongs with, e.g. a microphone closer
    /// to the sound than the camera's own audio path is fast). −10 to 10.
    #[serde(default)]
    pub av_offset: f64,
    /// `v4l2`: the device path (default `/dev/video0`); `microphone`: the cpal input device
    /// by name, by index in `avsense devices`' list, or `default`.
    #[serde(default)]
    pub device: Option<String>,
    /// `v4l2`: the capture width to negotiate (pixels).
    #[serde(default)]
    pub width: Option<u32>,
    /// `v4l2`: the capture height to negotiate (pixels).
    #[serde(default)]
    pub height: Option<u32>,
    /// `v4l2`: the frame rate to negotiate (frames per second).
    #[serde(default)]
    pub fps: Option<u32>,
    /// `v4l2`: `any`, `mjpeg` or `yuyv`.
    #[serde(default)]
    pub format: CameraFormat,
    /// Any video source: take the audio from this cpal microphone (name, index or
    /// `default`) instead of the input's own audio, on the same clock.
    #[serde(default)]
    pub microphone: Option<String>,
    /// Microphone capture rate to ask the device for (Hz; default: the device's default).
    #[serde(default)]
    pub mic_rate: Option<u32>,
    /// Microphone channels to ask for (mixed down to mono; default: the device's default).
    #[serde(default)]
    pub mic_channels: Option<u16>,
    /// Microphone sample format to ask for: `i16`, `i32`, `f32`, `u8`, `u16` or `f64`
    /// (default: the device's default).
    #[serde(default)]
    pub mic_format: Option<String>,
    /// `rtsp`: `tcp` (default), `udp` or `auto`.
    #[serde(default)]
    pub transport: RtspTransport,
    /// `rtsp`: jitter-buffer latency in seconds.
    #[serde(default = "default_rtsp_latency")]
    pub latency: f64,
    /// `rtsp`: first reconnect delay in seconds (doubles after each failed attempt).
    #[serde(default = "default_reconnect_delay")]
    pub reconnect_delay: f64,
    /// `rtsp`: the cap of the reconnect delay in seconds.
    #[serde(default = "default_reconnect_max_delay")]
    pub reconnect_max_delay: f64,
    /// `rtsp`: give up after this many failed attempts in a row (0: never).
    #[serde(default)]
    pub reconnect_attempts: u32,
    /// `rtsp`: seconds without any buffer after which the stream counts as lost.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: f64,
    /// Recorded input: the real time (RFC 3339) at the start of the input; events get a
    /// `wall_time` = this + `start`. Unset: the container's creation time when it declares
    /// one (MP4 / QuickTime), else no `wall_time`.
    #[serde(default)]
    pub time_origin: Option<String>,
    /// `zenoh`: endpoints to listen on (e.g. `["tcp/127.0.0.1:7447"]`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// `zenoh`: endpoints to connect to (a router or a peer).
    #[serde(default)]
    pub connect: Vec<String>,
    /// `zenoh`: the key the frames and audio come on, as `<key>/media` (default
    /// `avsense/<name>`).
    #[serde(default)]
    pub key: Option<String>,
}

fn default_rtsp_latency() -> f64 {
    DEFAULT_RTSP_LATENCY_S
}
fn default_reconnect_delay() -> f64 {
    DEFAULT_RECONNECT_DELAY_S
}
fn default_reconnect_max_delay() -> f64 {
    DEFAULT_RECONNECT_MAX_DELAY_S
}
fn default_stall_timeout() -> f64 {
    DEFAULT_STALL_TIMEOUT_S
}

fn yes() -> bool {
    true
}
fn default_capacity() -> usize {
    DEFAULT_EDGE_CAPACITY
}

impl SourceConfig {
    /// A source with every optional key at its default.
    pub fn new(name: &str, kind: SourceKind) -> Self {
        Self {
            name: name.to_string(),
            kind,
            path: None,
            uri: None,
            launch: None,
            duration: None,
            start: None,
            end: None,
            live: false,
            video: kind != SourceKind::Microphone,
            audio: true,
            policy: None,
            capacity: DEFAULT_EDGE_CAPACITY,
            av_offset: 0.0,
            device: None,
            width: None,
            height: None,
            fps: None,
            format: CameraFormat::Any,
            microphone: None,
            mic_rate: None,
            mic_channels: None,
            mic_format: None,
            transport: RtspTransport::Tcp,
            latency: DEFAULT_RTSP_LATENCY_S,
            reconnect_delay: DEFAULT_RECONNECT_DELAY_S,
            reconnect_max_delay: DEFAULT_RECONNECT_MAX_DELAY_S,
            reconnect_attempts: 0,
            stall_timeout: DEFAULT_STALL_TIMEOUT_S,
            time_origin: None,
            listen: Vec::new(),
            connect: Vec::new(),
            key: None,
        }
    }

    /// The policy in force: the configured one, else `Block` for recorded input and
    /// `DropOldest` for live input.
    pub fn effective_policy(&self) -> EdgePolicy {
        self.policy.unwrap_or(if self.is_live() {
            EdgePolicy::DropOldest
        } else {
            EdgePolicy::Block
        })
    }

    /// The cpal device this source captures audio from: `device` for a microphone source,
    /// `microphone` for a video source with one; None when the audio is GStreamer's.
    pub fn microphone_name(&self) -> Option<&str> {
        match self.kind {
            SourceKind::Microphone => Some(
                self.device
                    .as_deref()
                    .or(self.microphone.as_deref())
                    .unwrap_or("default"),
            ),
            _ => self.microphone.as_deref(),
        }
    }

    /// Whether the source runs in real time.
    pub fn is_live(&self) -> bool {
        match self.kind {
            SourceKind::File => false,
            SourceKind::Rtsp | SourceKind::V4l2 | SourceKind::Microphone => true,
            SourceKind::Test | SourceKind::Gst | SourceKind::Push | SourceKind::Zenoh => self.live,
            SourceKind::Uri => self
                .uri
                .as_deref()
                .map(|u| {
                    let u = u.to_ascii_lowercase();
                    u.starts_with("rtsp") || u.starts_with("udp") || u.starts_with("srt")
                })
                .unwrap_or(false),
        }
    }
}

impl SourceConfig {
    /// Checks this source's keys (named relative to the source, e.g. `uri`).
    pub fn validate(&self) -> Result<(), Invalid> {
        let s = self;
        check(
            !s.name.trim().is_empty(),
            "name",
            "\"\"",
            "a non-empty stream name",
        )?;
        match s.kind {
            SourceKind::File => {
                check(s.path.is_some(), "path", "(missing)", "a file path for kind = \"file\"")?;
            }
            SourceKind::Uri => check(
                matches!(&s.uri, Some(u) if u.contains("://")),
                "uri",
                format!("{:?}", s.uri),
                "a URI such as \"file:///x.mp4\" or \"rtsp://host/path\" for kind = \"uri\"",
            )?,
            SourceKind::Gst => check(
                s.launch.as_deref().is_some_and(|l| !l.trim().is_empty()),
                "launch",
                "(missing)",
                "a GStreamer launch description ending in raw video/audio for kind = \"gst\", e.g. \"v4l2src ! videoconvert\"",
            )?,
            SourceKind::Rtsp => {
                check(
                    matches!(&s.uri, Some(u) if u.to_ascii_lowercase().starts_with("rtsp") && u.contains("://")),
                    "uri",
                    format!("{:?}", s.uri),
                    "an rtsp:// or rtsps:// URL for kind = \"rtsp\"",
                )?;
                for (k, v, lo, hi) in [
                    ("latency", s.latency, 0.0, 10.0),
                    ("reconnect_delay", s.reconnect_delay, 0.01, 60.0),
                    ("reconnect_max_delay", s.reconnect_max_delay, 0.01, 600.0),
                    ("stall_timeout", s.stall_timeout, 0.5, 600.0),
                ] {
                    check(in_range(v, lo, hi), k, v, &format!("seconds, {lo} to {hi}"))?;
                }
                check(
                    s.reconnect_max_delay >= s.reconnect_delay,
                    "reconnect_max_delay",
                    s.reconnect_max_delay,
                    "seconds ≥ reconnect_delay",
                )?;
            }
            SourceKind::V4l2 => {
                for (k, v, hi) in [("width", s.width, 16384), ("height", s.height, 16384), ("fps", s.fps, 1000)] {
                    check(v.is_none_or(|v| (1..=hi).contains(&v)), k, format!("{v:?}"), &format!("1 to {hi}"))?;
                }
            }
            SourceKind::Microphone => {
                check(s.audio, "audio", "false", "true: a microphone source has audio only")?;
            }
            SourceKind::Push => check(
                s.video || s.audio,
                "video",
                "false",
                "video or audio (or both) to push for kind = \"push\"",
            )?,
            SourceKind::Zenoh => {
                check(
                    cfg!(feature = "zenoh"),
                    "kind",
                    "\"zenoh\"",
                    "a source this build has: rebuild with the cargo feature `zenoh` (on by default)",
                )?;
                check(
                    s.video || s.audio,
                    "video",
                    "false",
                    "video or audio (or both) for kind = \"zenoh\"",
                )?;
                check_endpoints([("listen", &s.listen), ("connect", &s.connect)])?;
                if let Some(k) = &s.key {
                    check(
                        !k.is_empty() && !k.contains(['*', '$', '#', '?']) && !k.ends_with('/') && !k.starts_with('/'),
                        "key",
                        format!("{k:?}"),
                        "a zenoh key without wildcards or a leading/trailing /",
                    )?;
                }
            }
            SourceKind::Test => check(
                match s.duration {
                    Some(d) => d.is_finite() && d > 0.0,
                    None => s.live,
                },
                "duration",
                format!("{:?}", s.duration),
                "seconds > 0 (required unless live = true)",
            )?,
        }
        let mic_ok = s.microphone.is_none()
            || matches!(
                s.kind,
                SourceKind::V4l2 | SourceKind::Rtsp | SourceKind::Gst | SourceKind::Test
            ) && s.is_live();
        check(
            mic_ok,
            "microphone",
            format!("{:?}", s.microphone),
            "a microphone only on a live video source (v4l2, rtsp, or gst/test with live = true)",
        )?;
        if let Some(f) = &s.mic_format {
            check(
                ["i16", "i32", "f32", "u8", "u16", "f64"].contains(&f.as_str()),
                "mic_format",
                format!("{f:?}"),
                "one of \"i16\", \"i32\", \"f32\", \"u8\", \"u16\", \"f64\"",
            )?;
        }
        check(
            s.mic_rate.is_none_or(|r| (8_000..=384_000).contains(&r)),
            "mic_rate",
            format!("{:?}", s.mic_rate),
            "8000 to 384000 Hz",
        )?;
        check(
            s.mic_channels.is_none_or(|c| (1..=64).contains(&c)),
            "mic_channels",
            format!("{:?}", s.mic_channels),
            "1 to 64",
        )?;
        if let Some(d) = s.duration {
            check(d.is_finite() && d > 0.0, "duration", d, "seconds > 0")?;
        }
        if s.start.is_some() || s.end.is_some() {
            let what = "a time in seconds on a recorded file or uri source (not live)";
            let recorded = matches!(s.kind, SourceKind::File | SourceKind::Uri) && !s.is_live();
            let key = if s.start.is_some() { "start" } else { "end" };
            check(recorded, key, format!("{:?}", s.start.or(s.end)), what)?;
            let start = s.start.unwrap_or(0.0);
            check(
                start.is_finite() && start >= 0.0,
                "start",
                start,
                "seconds ≥ 0",
            )?;
            if let Some(end) = s.end {
                check(
                    end.is_finite() && end > start,
                    "end",
                    end,
                    "seconds after start",
                )?;
            }
        }
        check(
            s.video || s.audio,
            "video",
            "false (and audio = false)",
            "at least one of video, audio enabled",
        )?;
        check(
            in_range(s.av_offset, -10.0, 10.0),
            "av_offset",
            s.av_offset,
            "seconds added to the audio timestamps, −10 to 10",
        )?;
        if let Some(t) = &s.time_origin {
            check(
                !s.is_live() && crate::core::latency::parse_rfc3339(t).is_some(),
                "time_origin",
                format!("{t:?}"),
                "an RFC 3339 date-time such as \"2026-12-07T06:30:00Z\", on recorded input only",
            )?;
        }
        check(
            (1..=4096).contains(&s.capacity),
            "capacity",
            s.capacity,
            "1 to 4096 items",
        )
    }
}
