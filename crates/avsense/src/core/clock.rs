//! Pipeline time.
//!
//! Every buffer that crosses a stage boundary carries a [`Timestamp`]: nanoseconds on the
//! pipeline clock. For files this is the container's PTS (which need not start at zero: an
//! H.264 stream with B-frames often starts at 66.7 ms); live sources map their capture time
//! onto one monotonic clock (issue "live sensors").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// Nanoseconds on the pipeline clock.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

/// One second in nanoseconds.
pub const NS_PER_SEC: u64 = 1_000_000_000;

impl Timestamp {
    /// The origin of the pipeline clock.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp from seconds; negative and non-finite values clamp to zero.
    pub fn from_secs_f64(secs: f64) -> Self {
        if secs.is_finite() && secs > 0.0 {
            Timestamp((secs * NS_PER_SEC as f64).round() as u64)
        } else {
            Timestamp(0)
        }
    }

    /// Seconds as a float (the unit events are reported in).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NS_PER_SEC as f64
    }

    /// Nanoseconds.
    pub fn nanos(self) -> u64 {
        self.0
    }

    /// The time `samples` samples after `self` at `rate` Hz, without accumulating rounding error.
    pub fn plus_samples(self, samples: u64, rate: u32) -> Self {
        let rate = u64::from(rate.max(1));
        Timestamp(self.0 + (samples as u128 * NS_PER_SEC as u128 / rate as u128) as u64)
    }

    /// `self - other`, or zero when `other` is later.
    pub fn saturating_sub(self, other: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }
}

/// A span of pipeline time in nanoseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Duration(pub u64);

impl Duration {
    /// A duration from seconds; negative and non-finite values clamp to zero.
    pub fn from_secs_f64(secs: f64) -> Self {
        Duration(Timestamp::from_secs_f64(secs).0)
    }
    /// Seconds as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NS_PER_SEC as f64
    }
    /// The duration of `samples` samples at `rate` Hz.
    pub fn of_samples(samples: u64, rate: u32) -> Self {
        Duration(Timestamp::ZERO.plus_samples(samples, rate).0)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_do_not_accumulate_rounding() {
        let t = Timestamp(66_666_667);
        // 16 kHz: one sample is 62.5 µs; a million samples must be exactly 62.5 s later.
        assert_eq!(
            t.plus_samples(1_000_000, 16_000).0,
            66_666_667 + 62_500_000_000
        );
    }

    #[test]
    fn seconds_round_trip_and_clamp() {
        assert_eq!(Timestamp::from_secs_f64(1.5).0, 1_500_000_000);
        assert_eq!(Timestamp::from_secs_f64(-3.0), Timestamp::ZERO);
        assert_eq!(Timestamp::from_secs_f64(f64::NAN), Timestamp::ZERO);
        assert!((Timestamp(2_250_000_000).as_secs_f64() - 2.25).abs() < 1e-12);
        assert_eq!(Timestamp(5).saturating_sub(Timestamp(9)), Duration(0));
    }
}
