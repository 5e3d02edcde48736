//! The pipeline configuration: TOML → serde structs (`deny_unknown_fields`), then validation
//! whose errors name the file, the key and the value that was expected.
//!
//! A config is data: every option the runtime reads is a typed field here. Defaults are the
//! `DEFAULT_*` constants so the README's reference and the code cannot drift apart.

use crate::channel::EdgePolicy;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default analysis window length in seconds.
pub const DEFAULT_WINDOW_S: f64 = 1.0;
/// Default hop between window starts in seconds.
pub const DEFAULT_HOP_S: f64 = 0.5;
/// Default bounded lateness in seconds.
pub const DEFAULT_LATENESS_S: f64 = 2.0;
/// Default edge capacity (items) between source and encoders.
pub const DEFAULT_EDGE_CAPACITY: usize = 32;
/// Default width of the frames the motion encoder analyses (height keeps the aspect ratio).
pub const DEFAULT_MOTION_WIDTH: u32 = 320;

/// Errors of loading or validating a pipeline config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown/mistyped key.
    #[error("config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// toml's message (names the key, the line and what was expected).
        message: String,
    },
    /// A key has a value outside what the runtime accepts.
    #[error("config {path}: `{key}` = {value}: expected {expected}")]
    Invalid {
        /// The config file (or `<command line>`).
        path: PathBuf,
        /// The dotted key, e.g. `pipeline.window`.
        key: String,
        /// The value found.
        value: String,
        /// What was expected.
        expected: String,
    },
}

/// A whole pipeline: sources, encoder settings, event detectors and sinks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Windowing and naming.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// One entry per input (`[[source]]`).
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// The motion encoder and its events.
    #[serde(default)]
    pub motion: MotionConfig,
    /// The audio front end (log-mel, level, onset).
    #[serde(default)]
    pub audio: AudioConfig,
    /// The `sound` event detector.
    #[serde(default)]
    pub sound: SoundConfig,
    /// Where model files are and which device runs them.
    #[serde(default)]
    pub models: ModelsConfig,
    /// The voice activity detector (Silero VAD).
    #[serde(default)]
    pub vad: EncoderToggle,
    /// The audio tagger (YAMNet): AudioSet labels on `sound` events.
    #[serde(default)]
    pub tagger: crate::fusion::TaggerConfig,
    /// `speech` events from the VAD.
    #[serde(default)]
    pub speech: crate::fusion::SpeechConfig,
    /// Audio-visual association (`sound_source` / `offscreen_sound`).
    #[serde(default)]
    pub fusion: crate::fusion::av::FusionConfig,
    /// The object detector (NanoDet, COCO-80) and how often it runs.
    #[serde(default)]
    pub detector: DetectorConfig,
    /// The multi-object tracker behind the detector.
    #[serde(default)]
    pub tracker: crate::encode::tracker::TrackerConfig,
    /// Active speaker detection: faces, Light-ASD, the face graph.
    #[serde(default)]
    pub speaker: crate::fusion::speaker::SpeakerConfig,
    /// Where events go (`[[sink]]`); stdout when none is given.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkConfig>,
}

/// `[pipeline]`: windowing for the aligner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// A name for logs and the summary.
    pub name: String,
    /// Window length in seconds (> 0).
    pub window: f64,
    /// Hop between window starts in seconds (0 < hop ≤ window).
    pub hop: f64,
    /// How far (seconds) one modality may lag the other before windows close without it.
    pub lateness: f64,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            name: "avsense".into(),
            window: DEFAULT_WINDOW_S,
            hop: DEFAULT_HOP_S,
            lateness: DEFAULT_LATENESS_S,
        }
    }
}

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
            SourceKind::Test | SourceKind::Gst => self.live,
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

/// `[motion]`: the motion encoder and `motion` events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Run the motion encoder.
    pub enabled: bool,
    /// Width of the grayscale frames GStreamer scales to for analysis (height keeps aspect).
    pub width: u32,
    /// Grid of cells `[columns, rows]` that motion is reported on.
    pub grid: [u32; 2],
    /// Luma difference (0–255) from the background that counts a pixel as changed.
    pub pixel_threshold: u8,
    /// Background update rate per frame (0 < alpha ≤ 1).
    pub background_alpha: f32,
    /// Fraction of a cell's pixels that must change for the cell to be active.
    pub cell_threshold: f32,
    /// Number of active cells needed for a frame to count as motion.
    pub min_cells: u32,
    /// Fraction of the frame that, changed at once, is a lighting change or a cut: the
    /// background is reset instead of reporting motion.
    pub global_change: f32,
    /// Seconds without motion before a `motion` event ends.
    pub hangover: f64,
    /// Minimum event length in seconds (shorter bursts are not reported).
    pub min_duration: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            width: DEFAULT_MOTION_WIDTH,
            grid: [8, 6],
            pixel_threshold: 25,
            background_alpha: 0.05,
            cell_threshold: 0.02,
            min_cells: 1,
            global_change: 0.8,
            hangover: 1.0,
            min_duration: 0.0,
        }
    }
}

/// Whether a neural encoder runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    /// Runs when its model files are present (`avsense models fetch`), else is skipped with a
    /// warning.
    #[default]
    Auto,
    /// Must run: the pipeline refuses to start without its model.
    On,
    /// Never runs.
    Off,
}

/// `[vad]` and the other neural encoders: on, off or auto.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderToggle {
    /// `auto` (default), `on` or `off`.
    pub mode: Toggle,
}

/// The compute device for the neural encoders.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when built with `--features cuda` and a GPU is present, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// CUDA GPU 0 (an error when unavailable).
    Cuda,
}

/// Default detections per second (the detector skips the frames in between; tracks carry).
pub const DEFAULT_DETECT_FPS: f64 = 5.0;

/// `[detector]`: the object detector.
///
/// Like Frigate's `detect.fps`, the detector runs on a subset of frames (`fps` per second,
/// 0 = every frame); motion still sees every frame, and the frames in between carry the
/// tracks of the last detection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// `auto` (runs when its model is fetched), `on` or `off`.
    pub mode: Toggle,
    /// Detections per second of video (0: every frame).
    pub fps: f64,
    /// Minimum detection score the detector reports (the tracker's `low_score` applies
    /// on top of it).
    pub score_threshold: f32,
    /// Class-aware NMS IoU threshold.
    pub iou_threshold: f32,
    /// COCO class names to keep (empty: all 80).
    pub classes: Vec<String>,
    /// Attach pooled backbone features to each detection (appearance embedding).
    pub embeddings: bool,
    /// `letterbox` (keep the aspect ratio; default) or `stretch` the frame into the
    /// detector's square input.
    pub resize: crate::encode::models::nanodet::Resize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        let n = crate::encode::models::nanodet::NanoDetConfig::default();
        Self {
            mode: Toggle::Auto,
            fps: DEFAULT_DETECT_FPS,
            score_threshold: n.score_threshold,
            iou_threshold: n.iou_threshold,
            classes: Vec::new(),
            embeddings: true,
            resize: n.resize,
        }
    }
}

impl DetectorConfig {
    /// The class ids of `classes` (None: all). Names were checked by `validate`.
    pub fn class_ids(&self) -> Option<Vec<usize>> {
        if self.classes.is_empty() {
            return None;
        }
        Some(
            self.classes
                .iter()
                .filter_map(|c| crate::encode::coco::id(c))
                .collect(),
        )
    }
}

/// `[models]`: model directory and device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Model directory (default: $AVSENSE_MODELS or models/cache, relative to the working
    /// directory).
    pub dir: Option<PathBuf>,
    /// `auto`, `cpu` or `cuda`.
    pub device: DeviceChoice,
}

/// `[audio]`: the log-mel / level / onset front end (YAMNet's framing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Run the audio encoders.
    pub enabled: bool,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[sound]`: `sound` events from level above a running noise floor, with hysteresis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SoundConfig {
    /// Emit `sound` events.
    pub enabled: bool,
    /// dB above the noise floor that starts a sound.
    pub on_db: f32,
    /// dB above the noise floor below which a sound may end.
    pub off_db: f32,
    /// Seconds below `off_db` before the sound ends (bridges gaps inside one sound).
    pub hangover: f64,
    /// Minimum sound length in seconds.
    pub min_duration: f64,
    /// Lowest noise floor assumed, in dBFS (digital silence is not a floor).
    pub floor_min_db: f32,
    /// Time constant in seconds with which the floor rises towards a louder background.
    pub floor_rise: f64,
    /// Seconds at the start of a stream that only learn the noise floor (no onsets), so
    /// an encoder's leading silence does not make the first noise look like a sound.
    pub warmup: f64,
}

impl Default for SoundConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            on_db: 10.0,
            off_db: 6.0,
            hangover: 0.75,
            min_duration: 0.02,
            floor_min_db: -80.0,
            floor_rise: 5.0,
            warmup: 0.5,
        }
    }
}

/// Where events go.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON Lines on standard output.
    Stdout,
    /// JSON Lines appended to a file (`path`).
    Jsonl,
}

/// `[[sink]]`: one event sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `stdout` or `jsonl`.
    pub kind: SinkKind,
    /// Output file for `jsonl`; relative paths are relative to the working directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl PipelineConfig {
    /// Reads, parses and validates `path`. Relative source paths are resolved against the
    /// config file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for s in &mut cfg.sources {
            if let Some(p) = &s.path {
                if p.is_relative() {
                    s.path = Some(base.join(p));
                }
            }
        }
        Ok(cfg)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut cfg: PipelineConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        // A microphone has no video track, whatever `video` says.
        for s in &mut cfg.sources {
            if s.kind == SourceKind::Microphone {
                s.video = false;
            }
        }
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// A one-source pipeline for `avsense run --input X`: a path or a URI.
    pub fn for_input(input: &str, events: Option<PathBuf>) -> Result<Self, ConfigError> {
        let is_uri = input.contains("://");
        let source = SourceConfig {
            name: "input".into(),
            kind: if is_uri {
                SourceKind::Uri
            } else {
                SourceKind::File
            },
            path: (!is_uri).then(|| PathBuf::from(input)),
            uri: is_uri.then(|| input.to_string()),
            ..SourceConfig::new("input", SourceKind::File)
        };
        let sinks = match events {
            Some(path) => vec![SinkConfig {
                kind: SinkKind::Jsonl,
                path: Some(path),
            }],
            None => vec![SinkConfig {
                kind: SinkKind::Stdout,
                path: None,
            }],
        };
        let cfg = PipelineConfig {
            pipeline: PipelineSection::default(),
            sources: vec![source],
            motion: MotionConfig::default(),
            audio: AudioConfig::default(),
            sound: SoundConfig::default(),
            models: ModelsConfig::default(),
            vad: EncoderToggle::default(),
            tagger: crate::fusion::TaggerConfig::default(),
            speech: crate::fusion::SpeechConfig::default(),
            fusion: crate::fusion::av::FusionConfig::default(),
            detector: DetectorConfig::default(),
            tracker: crate::encode::tracker::TrackerConfig::default(),
            speaker: crate::fusion::speaker::SpeakerConfig::default(),
            sinks,
        };
        cfg.validate(Path::new("<command line>"))?;
        Ok(cfg)
    }

    /// Checks every value the runtime relies on.
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, expected: &str| ConfigError::Invalid {
            path: origin.to_path_buf(),
            key: key.to_string(),
            value,
            expected: expected.to_string(),
        };
        let p = &self.pipeline;
        if !(p.window.is_finite() && p.window > 0.0 && p.window <= 3600.0) {
            return Err(bad(
                "pipeline.window",
                p.window.to_string(),
                "seconds, > 0 and ≤ 3600",
            ));
        }
        if !(p.hop.is_finite() && p.hop > 0.0 && p.hop <= p.window) {
            return Err(bad(
                "pipeline.hop",
                p.hop.to_string(),
                "seconds, > 0 and ≤ pipeline.window",
            ));
        }
        if !(p.lateness.is_finite() && p.lateness >= 0.0) {
            return Err(bad(
                "pipeline.lateness",
                p.lateness.to_string(),
                "seconds ≥ 0",
            ));
        }
        if self.sources.is_empty() {
            return Err(bad(
                "source",
                "(none)".into(),
                "at least one [[source]] table",
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("source[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(bad(&key("name"), "\"\"".into(), "a non-empty stream name"));
            }
            if self.sources[..i].iter().any(|o| o.name == s.name) {
                return Err(bad(
                    &key("name"),
                    format!("{:?}", s.name),
                    "a name no other source uses",
                ));
            }
            match s.kind {
                SourceKind::File => {
                    if s.path.is_none() {
                        return Err(bad(&key("path"), "(missing)".into(), "a file path for kind = \"file\""));
                    }
                }
                SourceKind::Uri => match &s.uri {
                    Some(u) if u.contains("://") => {}
                    other => {
                        return Err(bad(
                            &key("uri"),
                            format!("{other:?}"),
                            "a URI such as \"file:///x.mp4\" or \"rtsp://host/path\" for kind = \"uri\"",
                        ))
                    }
                },
                SourceKind::Gst => {
                    if s.launch.as_deref().map_or(true, |l| l.trim().is_empty()) {
                        return Err(bad(
                            &key("launch"),
                            "(missing)".into(),
                            "a GStreamer launch description ending in raw video/audio for kind = \"gst\", e.g. \"v4l2src ! videoconvert\"",
                        ));
                    }
                }
                SourceKind::Rtsp => {
                    match &s.uri {
                        Some(u) if u.to_ascii_lowercase().starts_with("rtsp") && u.contains("://") => {}
                        other => {
                            return Err(bad(
                                &key("uri"),
                                format!("{other:?}"),
                                "an rtsp:// or rtsps:// URL for kind = \"rtsp\"",
                            ))
                        }
                    }
                    for (k, v, lo, hi) in [
                        ("latency", s.latency, 0.0, 10.0),
                        ("reconnect_delay", s.reconnect_delay, 0.01, 60.0),
                        ("reconnect_max_delay", s.reconnect_max_delay, 0.01, 600.0),
                        ("stall_timeout", s.stall_timeout, 0.5, 600.0),
                    ] {
                        if !(v.is_finite() && (lo..=hi).contains(&v)) {
                            return Err(bad(
                                &key(k),
                                v.to_string(),
                                &format!("seconds, {lo} to {hi}"),
                            ));
                        }
                    }
                    if s.reconnect_max_delay < s.reconnect_delay {
                        return Err(bad(
                            &key("reconnect_max_delay"),
                            s.reconnect_max_delay.to_string(),
                            "seconds ≥ reconnect_delay",
                        ));
                    }
                }
                SourceKind::V4l2 => {
                    for (k, v, hi) in [("width", s.width, 16384), ("height", s.height, 16384), ("fps", s.fps, 1000)] {
                        if v.is_some_and(|v| v == 0 || v > hi) {
                            return Err(bad(
                                &key(k),
                                format!("{v:?}"),
                                &format!("1 to {hi}"),
                            ));
                        }
                    }
                }
                SourceKind::Microphone => {
                    if !s.audio {
                        return Err(bad(
                            &key("audio"),
                            "false".into(),
                            "true: a microphone source has audio only",
                        ));
                    }
                }
                SourceKind::Test => match s.duration {
                    Some(d) if d.is_finite() && d > 0.0 => {}
                    None if s.live => {}
                    other => {
                        return Err(bad(
                            &key("duration"),
                            format!("{other:?}"),
                            "seconds > 0 (required unless live = true)",
                        ))
                    }
                },
            }
            if s.microphone.is_some()
                && !matches!(
                    s.kind,
                    SourceKind::V4l2 | SourceKind::Rtsp | SourceKind::Gst | SourceKind::Test
                )
                || (s.microphone.is_some() && !s.is_live())
            {
                return Err(bad(
                    &key("microphone"),
                    format!("{:?}", s.microphone),
                    "a microphone only on a live video source (v4l2, rtsp, or gst/test with live = true)",
                ));
            }
            if let Some(f) = &s.mic_format {
                if !["i16", "i32", "f32", "u8", "u16", "f64"].contains(&f.as_str()) {
                    return Err(bad(
                        &key("mic_format"),
                        format!("{f:?}"),
                        "one of \"i16\", \"i32\", \"f32\", \"u8\", \"u16\", \"f64\"",
                    ));
                }
            }
            if s.mic_rate.is_some_and(|r| !(8_000..=384_000).contains(&r)) {
                return Err(bad(
                    &key("mic_rate"),
                    format!("{:?}", s.mic_rate),
                    "8000 to 384000 Hz",
                ));
            }
            if s.mic_channels.is_some_and(|c| c == 0 || c > 64) {
                return Err(bad(
                    &key("mic_channels"),
                    format!("{:?}", s.mic_channels),
                    "1 to 64",
                ));
            }
            if let Some(d) = s.duration {
                if !(d.is_finite() && d > 0.0) {
                    return Err(bad(&key("duration"), d.to_string(), "seconds > 0"));
                }
            }
            if !s.video && !s.audio {
                return Err(bad(
                    &key("video"),
                    "false (and audio = false)".into(),
                    "at least one of video, audio enabled",
                ));
            }
            if !(s.av_offset.is_finite() && (-10.0..=10.0).contains(&s.av_offset)) {
                return Err(bad(
                    &key("av_offset"),
                    s.av_offset.to_string(),
                    "seconds added to the audio timestamps, −10 to 10",
                ));
            }
            if s.capacity == 0 || s.capacity > 4096 {
                return Err(bad(
                    &key("capacity"),
                    s.capacity.to_string(),
                    "1 to 4096 items",
                ));
            }
        }
        let f = &self.fusion;
        if !(f.min_score.is_finite() && (0.0..=1.0).contains(&f.min_score)) {
            return Err(bad("fusion.min_score", f.min_score.to_string(), "0 to 1"));
        }
        if !(f.history.is_finite() && (1.0..=600.0).contains(&f.history)) {
            return Err(bad(
                "fusion.history",
                f.history.to_string(),
                "seconds, 1 to 600",
            ));
        }
        if !(1..=1024).contains(&f.max_tracks) {
            return Err(bad(
                "fusion.max_tracks",
                f.max_tracks.to_string(),
                "1 to 1024",
            ));
        }
        if !(1..=256).contains(&f.max_segments) {
            return Err(bad(
                "fusion.max_segments",
                f.max_segments.to_string(),
                "1 to 256",
            ));
        }
        if f.context > 16 {
            return Err(bad(
                "fusion.context",
                f.context.to_string(),
                "0 to 16 windows",
            ));
        }
        if !(f.event_off > 0.0 && f.event_off <= f.event_on && f.event_on < 1.0) {
            return Err(bad(
                "fusion.event_on / event_off",
                format!("{} / {}", f.event_on, f.event_off),
                "0 < event_off ≤ event_on < 1",
            ));
        }
        let m = &self.motion;
        if !(16..=3840).contains(&m.width) {
            return Err(bad(
                "motion.width",
                m.width.to_string(),
                "16 to 3840 pixels",
            ));
        }
        if m.grid[0] == 0 || m.grid[1] == 0 || m.grid[0] > 64 || m.grid[1] > 64 {
            return Err(bad(
                "motion.grid",
                format!("{:?}", m.grid),
                "[columns, rows], each 1 to 64",
            ));
        }
        if !(m.background_alpha > 0.0 && m.background_alpha <= 1.0) {
            return Err(bad(
                "motion.background_alpha",
                m.background_alpha.to_string(),
                "0 < alpha ≤ 1",
            ));
        }
        for (k, v) in [
            ("motion.cell_threshold", m.cell_threshold),
            ("motion.global_change", m.global_change),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad(k, v.to_string(), "a fraction, 0 < x ≤ 1"));
            }
        }
        if m.min_cells == 0 || m.min_cells > m.grid[0] * m.grid[1] {
            return Err(bad(
                "motion.min_cells",
                m.min_cells.to_string(),
                "1 to columns × rows of motion.grid",
            ));
        }
        for (k, v) in [
            ("motion.hangover", m.hangover),
            ("motion.min_duration", m.min_duration),
            ("sound.hangover", self.sound.hangover),
            ("sound.min_duration", self.sound.min_duration),
            ("sound.warmup", self.sound.warmup),
        ] {
            if !(v.is_finite() && (0.0..=600.0).contains(&v)) {
                return Err(bad(k, v.to_string(), "seconds, 0 to 600"));
            }
        }
        let snd = &self.sound;
        if !(snd.on_db.is_finite() && snd.on_db > 0.0) {
            return Err(bad("sound.on_db", snd.on_db.to_string(), "dB > 0"));
        }
        if !(snd.off_db.is_finite() && snd.off_db >= 0.0 && snd.off_db <= snd.on_db) {
            return Err(bad(
                "sound.off_db",
                snd.off_db.to_string(),
                "dB, 0 ≤ off_db ≤ sound.on_db",
            ));
        }
        if !(snd.floor_min_db.is_finite() && snd.floor_min_db < 0.0) {
            return Err(bad(
                "sound.floor_min_db",
                snd.floor_min_db.to_string(),
                "dBFS < 0",
            ));
        }
        if !(snd.floor_rise.is_finite() && snd.floor_rise > 0.0) {
            return Err(bad(
                "sound.floor_rise",
                snd.floor_rise.to_string(),
                "seconds > 0",
            ));
        }
        let tg = &self.tagger;
        for (k, v) in [
            ("tagger.on", tg.on),
            ("tagger.off", tg.off),
            ("tagger.smoothing", tg.smoothing),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(bad(k, v.to_string(), "a value from 0 to 1"));
            }
        }
        if tg.off > tg.on {
            return Err(bad("tagger.off", tg.off.to_string(), "≤ tagger.on"));
        }
        if tg.smoothing == 0.0 {
            return Err(bad(
                "tagger.smoothing",
                "0".into(),
                "> 0 (the weight of the newest patch; 1 = no smoothing)",
            ));
        }
        let d = &self.detector;
        if !(d.fps.is_finite() && (0.0..=240.0).contains(&d.fps)) {
            return Err(bad(
                "detector.fps",
                d.fps.to_string(),
                "detections per second, 0 (every frame) to 240",
            ));
        }
        for (k, v) in [
            ("detector.score_threshold", d.score_threshold),
            ("detector.iou_threshold", d.iou_threshold),
            ("tracker.high_score", self.tracker.high_score),
            ("tracker.low_score", self.tracker.low_score),
            ("tracker.new_track_score", self.tracker.new_track_score),
            ("tracker.match_iou", self.tracker.match_iou),
            ("tracker.low_match_iou", self.tracker.low_match_iou),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(bad(k, v.to_string(), "a value from 0 to 1"));
            }
        }
        for (i, c) in d.classes.iter().enumerate() {
            if crate::encode::coco::id(c).is_none() {
                return Err(bad(
                    &format!("detector.classes[{i}]"),
                    format!("{c:?}"),
                    "a COCO-80 class name such as \"person\", \"car\", \"dog\"",
                ));
            }
        }
        let t = &self.tracker;
        if t.low_score > t.high_score {
            return Err(bad(
                "tracker.low_score",
                t.low_score.to_string(),
                "≤ tracker.high_score",
            ));
        }
        if t.min_hits == 0 || t.min_hits > 100 {
            return Err(bad(
                "tracker.min_hits",
                t.min_hits.to_string(),
                "1 to 100 consecutive detections",
            ));
        }
        if !(t.lost_timeout.is_finite() && (0.0..=600.0).contains(&t.lost_timeout)) {
            return Err(bad(
                "tracker.lost_timeout",
                t.lost_timeout.to_string(),
                "seconds, 0 to 600",
            ));
        }
        self.validate_speaker(origin)?;
        for (i, s) in self.sinks.iter().enumerate() {
            if s.kind == SinkKind::Jsonl && s.path.is_none() {
                return Err(bad(
                    &format!("sink[{i}].path"),
                    "(missing)".into(),
                    "an output file for kind = \"jsonl\"",
                ));
            }
        }
        Ok(())
    }
}

impl PipelineConfig {
    /// Checks `[speaker]`.
    fn validate_speaker(&self, origin: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, value: String, expected: &str| ConfigError::Invalid {
            path: origin.to_path_buf(),
            key: format!("speaker.{key}"),
            value,
            expected: expected.to_string(),
        };
        let sp = &self.speaker;
        if !(64..=4096).contains(&sp.width) {
            return Err(bad("width", sp.width.to_string(), "pixels, 64 to 4096"));
        }
        for (k, v) in [("face_fps", sp.face_fps), ("idle_fps", sp.idle_fps)] {
            if !(v.is_finite() && (0.0..=240.0).contains(&v)) {
                return Err(bad(
                    k,
                    v.to_string(),
                    "detections per second, 0 (every frame) to 240",
                ));
            }
        }
        for (k, v) in [
            ("face_score", sp.face_score),
            ("min_face", sp.min_face),
            ("smoothing", sp.smoothing),
            ("on", sp.on),
            ("off", sp.off),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(bad(k, v.to_string(), "a value from 0 to 1"));
            }
        }
        if sp.off > sp.on {
            return Err(bad("off", sp.off.to_string(), "≤ speaker.on"));
        }
        if sp.max_faces == 0 || sp.max_faces > 32 {
            return Err(bad("max_faces", sp.max_faces.to_string(), "1 to 32 faces"));
        }
        if sp.max_speakers == 0 || sp.max_speakers > 32 {
            return Err(bad(
                "max_speakers",
                sp.max_speakers.to_string(),
                "1 to 32 faces",
            ));
        }
        if !(sp.box_scale.is_finite() && (0.25..=4.0).contains(&sp.box_scale)) {
            return Err(bad("box_scale", sp.box_scale.to_string(), "0.25 to 4"));
        }
        if !(sp.crop_scale.is_finite() && (0.0..=2.0).contains(&sp.crop_scale)) {
            return Err(bad(
                "crop_scale",
                sp.crop_scale.to_string(),
                "0 to 2 (upstream: 0.4)",
            ));
        }
        for (k, v) in [
            ("hold", sp.hold),
            ("min_gap", sp.min_gap),
            ("min_duration", sp.min_duration),
        ] {
            if !(v.is_finite() && (0.0..=60.0).contains(&v)) {
                return Err(bad(k, v.to_string(), "seconds, 0 to 60"));
            }
        }
        for (k, v) in [
            ("temporal", sp.temporal),
            ("competition", sp.competition),
            ("vad_weight", sp.vad_weight),
            ("sync_weight", sp.sync_weight),
            ("sync_offset", sp.sync_offset),
        ] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return Err(bad(k, v.to_string(), "a weight from 0 to 100"));
            }
        }
        if sp.durations.is_empty() || sp.durations.len() > 8 {
            return Err(bad(
                "durations",
                format!("{:?}", sp.durations),
                "1 to 8 chunk lengths in seconds, e.g. [1.0, 2.0, 3.0]",
            ));
        }
        for (i, d) in sp.durations.iter().enumerate() {
            if !(d.is_finite() && (0.04..=20.0).contains(d)) {
                return Err(bad(
                    &format!("durations[{i}]"),
                    d.to_string(),
                    "seconds, 0.04 (one frame at 25 fps) to 20",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaker_keys_are_checked_with_their_names() {
        for (text, key) in [
            ("[speaker]\ndurations = []\n", "speaker.durations"),
            (
                "[speaker]\ndurations = [1.0, -2.0]\n",
                "speaker.durations[1]",
            ),
            ("[speaker]\non = 0.3\noff = 0.4\n", "speaker.off"),
            ("[speaker]\nmax_speakers = 0\n", "speaker.max_speakers"),
            ("[speaker]\nwidth = 10\n", "speaker.width"),
        ] {
            let e = PipelineConfig::parse(&format!("{MIN}{text}"), Path::new("s.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("s.toml") && e.contains(key), "{text}: {e}");
        }
        let e = PipelineConfig::parse(
            &format!("{MIN}[speaker]\nweights = \"x\"\n"),
            Path::new("s.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("weights"), "{e}");
        let c = PipelineConfig::parse(
            &format!("{MIN}[speaker]\nweights = \"ava\"\n"),
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(c.speaker.weights, crate::fusion::speaker::AsdWeights::Ava);
    }

    const MIN: &str = "[[source]]\nname = \"a\"\nkind = \"test\"\nduration = 2.0\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = PipelineConfig::parse(MIN, Path::new("x.toml")).unwrap();
        assert_eq!(c.pipeline.window, DEFAULT_WINDOW_S);
        assert_eq!(c.sources[0].effective_policy(), EdgePolicy::Block);
        assert!(c.sinks.is_empty());
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = format!("{MIN}[motion]\ngird = [1, 2]\n");
        let e = PipelineConfig::parse(&text, Path::new("p/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p/x.toml") && e.contains("gird"), "{e}");
    }

    #[test]
    fn zero_window_is_rejected_with_key_and_expectation() {
        let text = format!("[pipeline]\nwindow = 0.0\n{MIN}");
        let e = PipelineConfig::parse(&text, Path::new("w.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("w.toml") && e.contains("pipeline.window") && e.contains("> 0"),
            "{e}"
        );
    }

    #[test]
    fn live_test_source_defaults_to_drop_oldest() {
        let text = "[[source]]\nname = \"l\"\nkind = \"test\"\nlive = true\n";
        let c = PipelineConfig::parse(text, Path::new("l.toml")).unwrap();
        assert_eq!(c.sources[0].effective_policy(), EdgePolicy::DropOldest);
    }

    #[test]
    fn duplicate_source_names_are_rejected() {
        let text = format!("{MIN}{MIN}");
        let e = PipelineConfig::parse(&text, Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("source[1].name"), "{e}");
    }
}
