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

/// Parses an RFC 3339 date-time (`2026-12-07T06:30:00Z`, `…T08:30:00.250+02:00`; `t` or a
/// space for `T` and `z` for `Z` too) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())).then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b[i] == b'.' {
        let j = i + 1 + s[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if j == i + 1 {
            return None;
        }
        frac = format!("0{}", &s[i..j]).parse().ok()?;
        i = j;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let v = oh * 3600 + om * 60;
            if &o[..1] == "-" {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
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
    fn rfc3339_parses_what_it_writes_and_offsets() {
        for t in [0.0, 951_782_400.5, 1_795_392_000.0, 1_796_625_000.25] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T02:00:00+02:00"),
            Some(1_795_392_000.0)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22t19:30:00-04:30"),
            Some(1_795_392_000.0)
        );
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-11-23T00:00:00",
            "2026-11-23T00:00:00.Z",
            "2026-11-23T00:00:00+2:00",
            "２026-11-23T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
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
