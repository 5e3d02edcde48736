//! Live streams: capture → event latency, and the wall-clock time of events.
//!
//! A live GStreamer source timestamps each buffer with its running time; running time +
//! the pipeline's base time is the time on the pipeline clock (GStreamer's system clock,
//! `CLOCK_MONOTONIC`) at which the buffer was captured. Event times are stream times of the
//! same buffers, so an event ending at stream time `end` was complete at clock time
//! `origin + end`, and its latency is the clock time when it reaches the sinks minus that.
//! (The capture latency inside the source element, e.g. a camera's exposure and USB
//! transfer, is before the buffer's timestamp and not included.) The wall-clock time of
//! an event is the system's real-time clock read at the same moment, moved back by the
//! same difference.

use std::time::{SystemTime, UNIX_EPOCH};

/// Latency percentiles of one stream.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencyStats {
    /// Events measured.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// Collects latencies (kept exactly up to a cap, then as a reservoir of the most recent).
#[derive(Debug, Default, Clone)]
pub struct LatencyRecorder {
    samples: Vec<f64>,
    next: usize,
    count: u64,
    max: f64,
}

/// Most latencies kept per stream for the percentiles.
const KEEP: usize = 65_536;

impl LatencyRecorder {
    /// Adds one latency in ms.
    pub fn record(&mut self, ms: f64) {
        self.count += 1;
        self.max = self.max.max(ms);
        if self.samples.len() < KEEP {
            self.samples.push(ms);
        } else {
            self.samples[self.next] = ms;
            self.next = (self.next + 1) % KEEP;
        }
    }

    /// The percentiles so far (None before the first event).
    pub fn stats(&self) -> Option<LatencyStats> {
        if self.samples.is_empty() {
            return None;
        }
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some(LatencyStats {
            count: self.count,
            p50_ms: q(0.50),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: self.max,
        })
    }
}

/// Now on GStreamer's system clock, ns.
pub fn clock_now_ns() -> u64 {
    use gstreamer::prelude::ClockExt;
    gstreamer::SystemClock::obtain().time().nseconds()
}

/// `at` (seconds since the Unix epoch) as RFC 3339 UTC with milliseconds.
pub fn rfc3339(at: f64) -> String {
    let ms_total = (at * 1000.0).round() as i64;
    let (secs, ms) = (ms_total.div_euclid(1000), ms_total.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Fills `latency_ms` and `wall_time` of a live stream's event whose stream times start
/// at clock time `origin_ns`; returns the latency in ms.
pub fn stamp(e: &mut crate::core::event::Event, origin_ns: u64) -> f64 {
    let now_clock = clock_now_ns() as f64 / 1e9;
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let origin = origin_ns as f64 / 1e9;
    let latency_ms = ((now_clock - (origin + e.end)) * 1000.0 * 1000.0).round() / 1000.0;
    e.latency_ms = Some(latency_ms);
    e.wall_time = Some(rfc3339(now_wall - (now_clock - (origin + e.start))));
    latency_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500Z");
        assert_eq!(rfc3339(1_795_392_000.0), "2026-11-23T00:00:00.000Z");
    }

    #[test]
    fn percentiles_of_a_known_set() {
        let mut r = LatencyRecorder::default();
        assert!(r.stats().is_none());
        for i in 1..=100 {
            r.record(i as f64);
        }
        let s = r.stats().unwrap();
        assert_eq!((s.count, s.max_ms), (100, 100.0));
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (51.0, 95.0, 99.0));
    }
}
