//! Inference times per model (encoder), recorded by the encoder stages while a pipeline
//! runs, read by whoever watches it (the HTTP API's `/api/stats` and `/metrics`).
//!
//! Each model has a histogram over fixed buckets ([`BOUNDS`], seconds), its count, sum and
//! maximum: memory is constant whatever the run's length. A call is one encoder call on one
//! batch (the video stage batches up to 8 frames; the audio stage runs of chunks).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds of the histogram buckets, seconds (the last bucket is +∞).
pub const BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One model's times.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelTime {
    /// The model (encoder) name.
    pub model: String,
    /// Calls measured.
    pub count: u64,
    /// Sum of their times, seconds.
    pub sum_seconds: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median, ms (the upper bound of the bucket that holds it).
    pub p50_ms: f64,
    /// 95th percentile, ms (likewise).
    pub p95_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Calls per bucket (not cumulative): `buckets[i]` counts times ≤ `BOUNDS[i]` and
    /// above the bound before; the last entry counts those above the last bound.
    #[serde(skip)]
    pub buckets: Vec<u64>,
}

#[derive(Debug, Clone, Default)]
struct Hist {
    count: u64,
    sum: f64,
    max: f64,
    buckets: [u64; BOUNDS.len() + 1],
}

impl Hist {
    fn add(&mut self, s: f64) {
        self.count += 1;
        self.sum += s;
        self.max = self.max.max(s);
        let i = BOUNDS.iter().position(|&b| s <= b).unwrap_or(BOUNDS.len());
        self.buckets[i] += 1;
    }

    /// The bucket bound under which a fraction `q` of the calls fall (the maximum for the
    /// open last bucket).
    fn quantile(&self, q: f64) -> f64 {
        let want = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return BOUNDS.get(i).copied().unwrap_or(self.max).min(self.max);
            }
        }
        self.max
    }
}

/// The inference times of a pipeline's models; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ModelTimes(Arc<Mutex<BTreeMap<String, Hist>>>);

impl ModelTimes {
    /// Adds one call of `model` that took `took`.
    pub fn record(&self, model: &str, took: Duration) {
        if let Ok(mut m) = self.0.lock() {
            match m.get_mut(model) {
                Some(h) => h.add(took.as_secs_f64()),
                None => {
                    let mut h = Hist::default();
                    h.add(took.as_secs_f64());
                    m.insert(model.to_string(), h);
                }
            }
        }
    }

    /// Runs `f`, recording its time under `model`.
    pub fn time<T>(&self, model: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.record(model, t.elapsed());
        out
    }

    /// Every model's times so far, by name.
    pub fn snapshot(&self) -> Vec<ModelTime> {
        let Ok(m) = self.0.lock() else {
            return Vec::new();
        };
        m.iter()
            .map(|(name, h)| ModelTime {
                model: name.clone(),
                count: h.count,
                sum_seconds: h.sum,
                mean_ms: if h.count > 0 {
                    h.sum / h.count as f64 * 1e3
                } else {
                    0.0
                },
                p50_ms: h.quantile(0.5) * 1e3,
                p95_ms: h.quantile(0.95) * 1e3,
                max_ms: h.max * 1e3,
                buckets: h.buckets.to_vec(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_and_quantiles_follow_the_calls() {
        let t = ModelTimes::default();
        for ms in [0.3, 0.3, 0.3, 4.0, 40.0, 3000.0] {
            t.record("m", Duration::from_secs_f64(ms / 1e3));
        }
        t.record("a", Duration::from_millis(2));
        let s = t.snapshot();
        assert_eq!(
            s.iter().map(|m| m.model.as_str()).collect::<Vec<_>>(),
            ["a", "m"]
        );
        let m = &s[1];
        assert_eq!(m.count, 6);
        assert_eq!(m.buckets.iter().sum::<u64>(), 6);
        assert_eq!(m.buckets[2], 3); // 0.3 ms ≤ 0.5 ms
        assert_eq!(*m.buckets.last().unwrap(), 1); // 3 s > 2.5 s
        assert!((m.p50_ms - 0.5).abs() < 1e-9, "{}", m.p50_ms);
        assert!((m.max_ms - 3000.0).abs() < 1e-6);
        assert!(
            (m.p95_ms - 3000.0).abs() < 1e-6,
            "the open bucket reads as the max"
        );
        assert!((m.sum_seconds - 3.0449).abs() < 1e-9);
    }

    #[test]
    fn time_records_the_call_and_returns_its_value() {
        let t = ModelTimes::default();
        assert_eq!(t.time("x", || 7), 7);
        assert_eq!(t.snapshot()[0].count, 1);
    }
}
