//! A live view of a running pipeline, for dashboards and metrics (the HTTP API): what the
//! closing summary prints, readable at any time and from any thread.

use super::chain::FrameLatency;
use super::report::StreamProbe;
use crate::core::edge::{EdgeProbe, EdgeStats};
use crate::core::live::{rss_bytes, LiveStats, LiveStream};
use crate::core::timing::ModelTimes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
