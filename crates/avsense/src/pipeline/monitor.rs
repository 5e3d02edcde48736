//! A live view of a running pipeline, for dashboards and metrics (the HTTP API): what the
//! closing summary prints, readable at any time and from any thread.

use super::chain::FrameLatency;
use super::report::StreamProbe;
use crate::core::edge::{EdgeProbe, EdgeStats};
use crate::core::latency::LatencyStats;
use crate::core::timing::{ModelTime, ModelTimes};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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

/// Reads a running pipeline's counters; cheap to clone, usable after the run has ended
/// (it then shows the final counts).
#[derive(Clone)]
pub struct Monitor {
    pub(super) started: Instant,
    pub(super) streams: Vec<StreamProbe>,
    pub(super) edges: Vec<EdgeProbe>,
    pub(super) latency: Vec<FrameLatency>,
    pub(super) detector_frames: Vec<Arc<AtomicU64>>,
    pub(super) times: ModelTimes,
}

impl Monitor {
    /// Everything now.
    pub fn stats(&self) -> LiveStats {
        let edges: Vec<EdgeStats> = self.edges.iter().map(EdgeProbe::stats).collect();
        let streams = self
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let lat = self
                    .latency
                    .get(i)
                    .and_then(|l| l.lock().ok().map(|l| (l.0.stats(), l.1.stats())));
                let inputs = [format!("{}/frames", s.name), format!("{}/audio", s.name)];
                LiveStream {
                    name: s.name.clone(),
                    live: s.live,
                    frames: s.source.frames(),
                    detector_frames: self
                        .detector_frames
                        .get(i)
                        .map_or(0, |d| d.load(Ordering::Relaxed)),
                    audio_seconds: s.source.audio_samples() as f64
                        / crate::core::media::AUDIO_RATE as f64,
                    media_seconds: s.source.progress().as_secs_f64(),
                    duration: s.source.duration().map(|d| d.as_secs_f64()),
                    skipped: edges
                        .iter()
                        .filter(|e| inputs.contains(&e.name))
                        .map(|e| e.dropped)
                        .sum(),
                    frame_latency: lat.and_then(|l| l.0),
                    detect_latency: lat.and_then(|l| l.1),
                    failure: s.source.failure(),
                }
            })
            .collect();
        LiveStats {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            streams,
            edges,
            models: self.times.snapshot(),
            rss_bytes: rss_bytes(),
        }
    }
}

/// Resident memory of this process (`/proc/self/statm`), bytes.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
