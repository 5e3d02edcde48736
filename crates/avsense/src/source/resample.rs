//! One streaming resampling step from a capture device's rate to the encoders' rate.
//!
//! A windowed-sinc interpolator (Blackman window, cut-off just below the lower of the two
//! Nyquist frequencies), evaluated at each output instant. It keeps a short history of
//! input samples between calls, so chunk boundaries leave no seams, and it tracks the
//! output position exactly (integer arithmetic on rates), so the sample count it produces
//! never drifts from `input × out_rate / in_rate`.

/// Half-width of the interpolation kernel, in samples of the lower rate.
const HALF_TAPS_AT_LOW_RATE: usize = 16;

/// A streaming resampler for one mono channel.
#[derive(Debug, Clone)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    /// Cut-off as a fraction of the input rate (≤ 0.5).
    cutoff: f64,
    /// Kernel half-width in input samples.
    half: usize,
    /// Input samples kept from earlier calls, and the absolute input index of `buf[0]`.
    buf: Vec<f32>,
    buf_start: u64,
    /// Output samples produced so far (the next output's index).
    produced: u64,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` Hz (both > 0).
    pub fn new(in_rate: u32, out_rate: u32) -> Self {
        let in_rate = in_rate.max(1);
        let out_rate = out_rate.max(1);
        let low = in_rate.min(out_rate) as f64;
        // 0.45 of the lower rate: a 10 % guard band below its Nyquist frequency.
        let cutoff = 0.45 * low / in_rate as f64;
        let half = ((HALF_TAPS_AT_LOW_RATE as f64) * in_rate as f64 / low).ceil() as usize;
        Self {
            in_rate,
            out_rate,
            cutoff,
            half: half.max(1),
            buf: Vec::new(),
            buf_start: 0,
            produced: 0,
        }
    }

    /// Whether the rates are equal (the samples pass through unchanged).
    pub fn is_identity(&self) -> bool {
        self.in_rate == self.out_rate
    }

    /// Output samples produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// The delay this resampler adds, in output samples (the kernel's look-ahead).
    pub fn delay_out_samples(&self) -> u64 {
        if self.is_identity() {
            0
        } else {
            (self.half as u64 * self.out_rate as u64).div_ceil(self.in_rate as u64)
        }
    }

    /// Feeds input samples and returns every output sample whose kernel is now complete.
    pub fn process(&mut self, input: &[f32]) -> Vec<f32> {
        if self.is_identity() {
            self.produced += input.len() as u64;
            return input.to_vec();
        }
        self.buf.extend_from_slice(input);
        let available_end = self.buf_start + self.buf.len() as u64; // exclusive
        let mut out = Vec::new();
        loop {
            // Output n sits at input position n·in/out (exact rational).
            let num = self.produced as u128 * self.in_rate as u128;
            let centre = (num / self.out_rate as u128) as u64;
            let frac = (num % self.out_rate as u128) as f64 / self.out_rate as f64;
            if centre + self.half as u64 + 1 > available_end {
                break;
            }
            out.push(self.sample_at(centre, frac));
            self.produced += 1;
        }
        // Keep what the next outputs still need.
        let num = self.produced as u128 * self.in_rate as u128;
        let next_centre = (num / self.out_rate as u128) as u64;
        let keep_from = next_centre.saturating_sub(self.half as u64);
        if keep_from > self.buf_start {
            let drop = ((keep_from - self.buf_start) as usize).min(self.buf.len());
            self.buf.drain(..drop);
            self.buf_start += drop as u64;
        }
        out
    }

    /// The interpolated value at input position `centre + frac`; samples before the first
    /// input count as zero.
    fn sample_at(&self, centre: u64, frac: f64) -> f32 {
        let half = self.half as i64;
        let mut acc = 0.0f64;
        let mut norm = 0.0f64;
        for k in -half + 1..=half {
            let idx = centre as i64 + k;
            let x = frac - k as f64; // distance from the output instant, input samples
            let w = kernel(x, self.cutoff, self.half as f64);
            norm += w;
            if idx < self.buf_start as i64 {
                continue;
            }
            let i = (idx - self.buf_start as i64) as usize;
            if let Some(v) = self.buf.get(i) {
                acc += w * f64::from(*v);
            }
        }
        // Normalising by the kernel's sum keeps DC gain exactly 1 at every phase.
        if norm.abs() > 1e-12 {
            (acc / norm) as f32
        } else {
            0.0
        }
    }
}

/// Blackman-windowed sinc with cut-off `fc` (fraction of the input rate) at distance `x`.
fn kernel(x: f64, fc: f64, half: f64) -> f64 {
    if x.abs() >= half {
        return 0.0;
    }
    let sinc = if x.abs() < 1e-9 {
        2.0 * fc
    } else {
        (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
    };
    let t = (x / half + 1.0) * 0.5; // 0..1 across the window
    let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * t).cos()
        + 0.08 * (4.0 * std::f64::consts::PI * t).cos();
    sinc * w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin() as f32)
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    /// A 1 kHz tone at 48 kHz comes out as the same tone at 16 kHz (amplitude and phase),
    /// whatever the chunking.
    #[test]
    fn passes_a_tone_in_band_with_its_amplitude_and_phase() {
        let input = sine(48_000, 1000.0, 48_000);
        let mut r = Resampler::new(48_000, 16_000);
        let mut out = Vec::new();
        for chunk in input.chunks(441) {
            out.extend(r.process(chunk));
        }
        assert!(
            out.len() >= 16_000 - 20 && out.len() <= 16_000,
            "{}",
            out.len()
        );
        let want = sine(16_000, 1000.0, out.len());
        // Skip the start (zeros before the first input); compare the rest.
        let err = out[200..]
            .iter()
            .zip(&want[200..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 2e-3, "max error {err}");
    }

    /// A 10 kHz tone at 44.1 kHz is above 16 kHz's Nyquist frequency: it must be removed,
    /// not folded back to 6 kHz.
    #[test]
    fn rejects_what_would_alias() {
        let input = sine(44_100, 10_000.0, 44_100);
        let mut r = Resampler::new(44_100, 16_000);
        let out = r.process(&input);
        let level = rms(&out[400..]);
        assert!(level < 0.707 * 0.01, "alias residue rms {level} (≥ −40 dB)");
    }

    /// Chunk sizes do not change the output, and the count matches the rate ratio.
    #[test]
    fn chunking_is_invisible_and_counts_are_exact() {
        let input = sine(44_100, 440.0, 44_100 * 2);
        let whole = Resampler::new(44_100, 16_000).process(&input);
        let mut r = Resampler::new(44_100, 16_000);
        let mut parts = Vec::new();
        for chunk in input.chunks(1024 + 7) {
            parts.extend(r.process(chunk));
        }
        assert_eq!(whole, parts);
        let exact = 2 * 16_000_u64;
        assert!(r.produced() <= exact && exact - r.produced() <= r.delay_out_samples() + 1);
    }

    #[test]
    fn same_rate_passes_through() {
        let mut r = Resampler::new(16_000, 16_000);
        assert_eq!(r.process(&[0.5, -0.25]), vec![0.5, -0.25]);
        assert_eq!(r.delay_out_samples(), 0);
    }
}
