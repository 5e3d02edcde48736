//! What a run did: per stream and per edge, for the summary and for embedding
//! applications.

use crate::align::AlignStats;
use crate::core::edge::EdgeStats;
use crate::core::latency::LatencyStats;
use crate::core::media::Modality;
use crate::encode::video::faces::FaceStats;
use crate::encode::video::objects::DetectorStats;
use crate::fusion::EventStats;
use crate::source::gst::{LiveStats, SourceProbe};

/// What one stream did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReport {
    /// Stream (source) name.
    pub name: String,
    /// Frames decoded and analysed.
    pub frames: u64,
    /// Seconds of audio decoded and analysed (16 kHz samples / 16000).
    pub audio_seconds: f64,
    /// Modalities the input had.
    pub modalities: Vec<Modality>,
    /// The container's declared duration, seconds.
    pub declared_duration: Option<f64>,
    /// How far the media got, seconds.
    pub media_seconds: f64,
    /// Aligner counters.
    pub align: AlignStats,
    /// Event stage counters.
    pub events: EventStats,
    /// Live streams: capture → event latency (None for files or without events).
    pub latency: Option<LatencyStats>,
    /// Live streams: capture of a frame → its features leaving the video encoders, every
    /// frame (None for files).
    pub frame_latency: Option<LatencyStats>,
    /// The same over the frames the detector ran on.
    pub detect_latency: Option<LatencyStats>,
    /// The face encoder's counters (when the active speaker runs).
    pub faces: Option<FaceStats>,
    /// The object detector's counters (when it runs): frames it ran on, due frames the
    /// motion gate held back.
    pub detector: Option<DetectorStats>,
    /// Why the stream failed, if it did.
    pub error: Option<String>,
    /// What was incomplete though the stream did not fail (gaps, a track ending early).
    pub warnings: Vec<crate::core::event::SourceWarning>,
    /// Live sources: outages, reconnects, the microphone's clock.
    pub live: LiveStats,
}

/// What a whole run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// Per edge.
    pub edges: Vec<EdgeStats>,
    /// Events written to the sinks.
    pub events_written: u64,
    /// Wall-clock seconds from start to the last event flushed.
    pub wall_seconds: f64,
    /// The first sink failure, if any (a closed stdout pipe is not one).
    pub sink_error: Option<String>,
    /// Per sink: events taken and how it ended.
    pub sinks: Vec<SinkReport>,
    /// Encoders an `auto` mode switched off because a model file is missing (one line each,
    /// with the file and the command that fetches it).
    pub models_off: Vec<String>,
}

impl RunReport {
    /// Media seconds processed per wall second (the longest stream counts).
    pub fn realtime_factor(&self) -> f64 {
        let media = self
            .streams
            .iter()
            .map(|s| s.media_seconds)
            .fold(0.0, f64::max);
        if self.wall_seconds > 0.0 {
            media / self.wall_seconds
        } else {
            0.0
        }
    }

    /// The first error of any stream or sink, as one line.
    pub fn first_error(&self) -> Option<String> {
        self.streams
            .iter()
            .find_map(|s| s.error.clone())
            .or_else(|| self.sink_error.clone())
    }

    /// Every stream's warnings, as `stream: message` lines.
    pub fn warnings(&self) -> Vec<String> {
        self.streams
            .iter()
            .flat_map(|s| {
                s.warnings
                    .iter()
                    .map(move |w| format!("{}: {}", s.name, w.message))
            })
            .collect()
    }

    /// Items dropped on all edges.
    pub fn dropped(&self) -> u64 {
        self.edges.iter().map(|e| e.dropped).sum()
    }
}

/// A live view of one stream while the pipeline runs.
#[derive(Debug, Clone)]
pub struct StreamProbe {
    /// Stream name.
    pub name: String,
    /// Whether it is a live source.
    pub live: bool,
    /// Its source's counters.
    pub source: SourceProbe,
}

/// How a sink ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// It received every event.
    Open,
    /// Its reader went away (a closed pipe): it stopped receiving, which is not a failure.
    Closed,
    /// It could not write; the error, one line.
    Failed(String),
}

/// What one sink did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SinkReport {
    /// The sink's target (`stdout`, a path, `callback`).
    pub target: String,
    /// Events it took.
    pub written: u64,
    /// How it ended.
    pub state: SinkState,
}
