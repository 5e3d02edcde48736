//! What a running pipeline's live view reports ([`LiveStats`]): plain data, produced by
//! the pipeline's monitor, read by dashboards (the HTTP API) and embedding programs.

use crate::core::edge::EdgeStats;
use crate::core::latency::LatencyStats;
use crate::core::timing::ModelTime;

/// One stream now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveStream {
    /// Stream (source) name.
    pub name: String,
    /// Whether the source is live.
    pub live: bool,
    /// Frames decoded so far.
    pub frames: u64,
    /// Frames the detector ran on so far.
    pub detector_frames: u64,
    /// Seconds of audio decoded so far.
    pub audio_seconds: f64,
    /// How far every modality of the stream has been analysed, seconds of media.
    pub media_seconds: f64,
    /// The container's duration (files).
    pub duration: Option<f64>,
    /// Frames and audio chunks dropped on the stream's input edges (live sources drop the
    /// oldest when the encoders fall behind).
    pub skipped: u64,
    /// Live: capture → features latency over every frame.
    pub frame_latency: Option<LatencyStats>,
    /// Live: the same over the detector's frames.
    pub detect_latency: Option<LatencyStats>,
    /// Why the source failed, if it has.
    pub failure: Option<String>,
}

/// The pipeline now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveStats {
    /// Seconds since the pipeline started.
    pub uptime_seconds: f64,
    /// Per stream.
    pub streams: Vec<LiveStream>,
    /// Per edge.
    pub edges: Vec<EdgeStats>,
    /// Inference time per model (encoder).
    pub models: Vec<ModelTime>,
    /// The process's resident memory, bytes (Linux; None elsewhere).
    pub rss_bytes: Option<u64>,
}

/// Resident memory of this process (`/proc/self/statm`), bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
