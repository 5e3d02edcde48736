//! MFCC front end of the active-speaker model (Light-ASD): python_speech_features' `mfcc`.
//!
//! Light-ASD (Junhua-Liao/Light-ASD, `Columbia_test.py`) computes its audio input as
//! `python_speech_features.mfcc(audio, 16000, numcep=13, winlen=0.025, winstep=0.010)` on
//! the **int16** samples that scipy's `wavfile.read` returns. This module reproduces that
//! call (python_speech_features 0.6, `base.py` and `sigproc.py` are the source of truth)
//! on a stream of f32 samples, 16 kHz mono, in [-1, 1]:
//!
//! 1. Scale and quantise: `x = clamp(round_half_even(sample × 32768), −32768, 32767)`
//!    ([`INT16_SCALE`], [`to_int16`]). This gives back the int16 values upstream feeds:
//!    exactly the same values for audio that was int16 (`int16 / 32768` is what GStreamer's
//!    and ffmpeg's s16 → f32 conversions give), and for float audio (an AAC decoder's
//!    output) exactly ffmpeg's own f32 → s16 conversion (`lrintf(x · 32768)`, clipped):
//!    on the test clip's AAC track, ffmpeg's f32 decode quantised this way equals its s16
//!    decode in all 98304 samples. Both steps matter:
//!    * psf is not scale-invariant. Scaling the input by `a` multiplies every power by
//!      `a²`, which leaves c1…c12 unchanged (the DCT of a constant offset of the log
//!      filterbank is zero past c0) but moves c0 (the log frame energy) by `2 ln a`: with
//!      unscaled floats c0 would be 20.79 lower than what the model was trained on.
//!      Digital silence is the exception: there psf's eps floor takes over whatever the
//!      scale. (The dtype itself does not matter: psf's pre-emphasis computes in float64.)
//!    * The int16 rounding is part of upstream's features: AAC leaves the top bands nearly
//!      empty, the int16 quantisation noise fills them, and the lifter multiplies the high
//!      coefficients by up to 12. On the test clip's speech, MFCC of the unquantised float
//!      decode differ from upstream's by 0.05 (median frame) to 0.22, and by 0.58 in a
//!      nearly silent frame.
//! 2. Pre-emphasis: `y[0] = x[0]`, `y[n] = x[n] − 0.97 x[n−1]` ([`PREEMPHASIS`]), over the
//!    whole stream (the state crosses chunk boundaries).
//! 3. Framing (`sigproc.framesig`): frames of 400 samples ([`FRAME_LEN`], round-half-up of
//!    0.025 × 16000) every 160 ([`FRAME_STEP`]); rectangular window (psf's default
//!    `winfunc` is ones). For `len` samples psf makes `1` frame if `len ≤ 400`, else
//!    `1 + ceil((len − 400) / 160)`, zero-padding the pre-emphasised signal at the end: at
//!    most one frame more than the full ones, which [`Mfcc::finish`] gives.
//! 4. Power spectrum: `P[i] = |rfft(frame, 512)[i]|² / 512`, i = 0…256 (the 400 samples
//!    first, 112 zeros after).
//! 5. Frame energy `E = Σ P[i]`, replaced by f64's machine epsilon (numpy's
//!    `finfo(float).eps`, 2.22e-16) when exactly 0.
//! 6. Mel filterbank (`get_filterbanks`): 26 filters ([`NUM_FILTERS`]) between 0 Hz and
//!    8000 Hz; 28 points equally spaced in mel (`2595 log10(1 + f/700)`), mapped back to Hz
//!    and **quantised to FFT bins** as `b[m] = floor((512 + 1) · hz[m] / 16000)` (513, not
//!    512); filter j rises as `(i − b[j]) / (b[j+1] − b[j])` for `b[j] ≤ i < b[j+1]` and
//!    falls as `(b[j+2] − i) / (b[j+2] − b[j+1])` for `b[j+1] ≤ i < b[j+2]`; no area
//!    normalisation. Energies `F[j] = Σ P[i] w[j][i]`, exact zeros replaced by eps.
//! 7. `ln F`, DCT-II with `norm='ortho'` (scipy.fftpack: `c[k] = s_k Σ_n ln F[n]
//!    cos(π k (2n + 1) / 52)`, `s_0 = √(1/26)`, `s_k = √(2/26)`), first 13 kept.
//! 8. Lifter: `c[k] ×= 1 + 11 sin(π k / 22)` ([`CEP_LIFTER`] = 22).
//! 9. `c[0] = ln E` (appendEnergy).
//!
//! Everything runs in f64 (as numpy does) and the frames come out as f32.
//!
//! **Why not `mel_spec` for the filterbank.** `mel_spec::mel::mel(sr, n_fft, n_mels,
//! f_min, f_max, htk, norm)` (librosa's recipe; with `htk = true` it has the same mel scale
//! and the same 28 edge frequencies) evaluates each triangle *continuously in Hz* at the
//! FFT bin frequencies `i · 16000 / 512` and takes `min(rising, falling)` clipped to
//! [0, 1]. psf instead quantises the edges to bin indices with the `(nfft + 1)` factor
//! above and builds the triangles in bin units, so its peaks are exactly 1 at the bins
//! `b[j+1]` and its feet sit on whole bins. The two sets of weights differ by up to 0.25
//! (most in the low filters, 3–5 bins wide; still 0.02 in the top ones), and MFCC computed
//! with mel_spec's weights differ from psf's by up to 5.7 (c12) on the synthetic reference
//! signal (the test `mel_spec_filterbank_is_not_psfs` measures both). No option of `mel()`
//! (nor of its Kaldi-style `fbank` module, which has a Povey window, a DC-offset removal and
//! Kaldi's own mel bins) gives psf's quantised triangles, so the 26 triangles are built
//! here. They are applied over each filter's own bin range (3 to 46 bins), which is all
//! that `SparseMelFilterbank::from_dense` (how `audio.rs` applies its TF weights) would add.
//!
//! Parity: the unit tests compare with python_speech_features 0.6 on a formula signal
//! (`tests/reference/mfcc_reference.py` → `tests/reference/data/mfcc_synthetic.json`;
//! max |Δ| ≤ 1e-3 asserted on every coefficient; 2.7e-6 achieved, which is the f32
//! rounding of the output), and `tests/parity_mfcc.rs` on the real audio of Light-ASD's
//! reference (`tests/reference/lightasd_reference.py`; 1e-3 asserted, 6.3e-6 achieved from
//! both ffmpeg's s16 and its f32 decode, the 7 digits the reference stores).

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Sample rate the front end expects, Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Coefficients per frame (`numcep`).
pub const NUM_CEPS: usize = 13;
/// Mel filters (`nfilt`).
pub const NUM_FILTERS: usize = 26;
/// Frame length in samples (25 ms).
pub const FRAME_LEN: usize = 400;
/// Frame step in samples (10 ms).
pub const FRAME_STEP: usize = 160;
/// FFT size (`nfft`).
pub const N_FFT: usize = 512;
/// Pre-emphasis coefficient (`preemph`).
pub const PREEMPHASIS: f64 = 0.97;
/// Cepstral lifter (`ceplifter`).
pub const CEP_LIFTER: f64 = 22.0;
/// Factor from our f32 samples to the int16 values upstream feeds psf.
pub const INT16_SCALE: f32 = 32768.0;
/// numpy's `finfo(float).eps`, psf's replacement for energies that are exactly zero.
pub const EPS: f64 = f64::EPSILON;

/// FFT bins of the power spectrum.
const BINS: usize = N_FFT / 2 + 1;

/// One MFCC frame: c0 = log frame energy, then c1…c12.
pub type MfccFrame = [f32; NUM_CEPS];

/// psf's filterbank bin edges `floor((N_FFT + 1) · mel2hz(m) / SAMPLE_RATE)` for the
/// `NUM_FILTERS + 2` points equally spaced in mel from 0 Hz to `SAMPLE_RATE / 2`
/// (numpy's `linspace`: `start + i · step`, the last point exactly the stop).
pub fn filterbank_bins() -> [usize; NUM_FILTERS + 2] {
    let hz2mel = |hz: f64| 2595.0 * (1.0 + hz / 700.0).log10();
    let mel2hz = |mel: f64| 700.0 * (10f64.powf(mel / 2595.0) - 1.0);
    let sr = f64::from(SAMPLE_RATE);
    let (low, high) = (hz2mel(0.0), hz2mel(sr / 2.0));
    let step = (high - low) / (NUM_FILTERS + 1) as f64;
    let mut bins = [0usize; NUM_FILTERS + 2];
    for (m, b) in bins.iter_mut().enumerate() {
        let mel = if m == NUM_FILTERS + 1 {
            high
        } else {
            low + m as f64 * step
        };
        // Non-negative and at most (N_FFT + 1) / 2 by construction: the cast cannot wrap.
        *b = ((N_FFT + 1) as f64 * mel2hz(mel) / sr).floor().max(0.0) as usize;
    }
    bins
}

/// The int16 value upstream would have for the f32 `sample` (see the module doc, step 1):
/// `clamp(round_half_even(sample × 32768), −32768, 32767)`, as f64. NaN stays NaN.
pub fn to_int16(sample: f32) -> f64 {
    // × 32768 is exact in f32 (a power of two), so this is ffmpeg's lrintf(x · 32768).
    f64::from(
        (sample * INT16_SCALE)
            .round_ties_even()
            .clamp(-32768.0, 32767.0),
    )
}

/// One triangular filter: its weights over the bins `start .. start + weights.len()`.
#[derive(Debug, Clone)]
struct Filter {
    start: usize,
    weights: Vec<f64>,
}

/// psf's `get_filterbanks(26, 512, 16000, 0, 8000)`, each row kept as its non-zero range.
fn psf_filters() -> Vec<Filter> {
    let b = filterbank_bins();
    (0..NUM_FILTERS)
        .map(|j| {
            let (lo, mid, hi) = (b[j], b[j + 1], b[j + 2].min(BINS));
            let mut weights = Vec::with_capacity(hi.saturating_sub(lo));
            for i in lo..mid {
                weights.push((i - lo) as f64 / (mid - lo) as f64);
            }
            for i in mid..hi {
                weights.push((b[j + 2] - i) as f64 / (b[j + 2] - mid) as f64);
            }
            Filter { start: lo, weights }
        })
        .collect()
}

/// The DCT-II (ortho) rows for c0…c12, each multiplied by its lifter gain.
fn liftered_dct() -> [[f64; NUM_FILTERS]; NUM_CEPS] {
    let n = NUM_FILTERS as f64;
    let mut m = [[0f64; NUM_FILTERS]; NUM_CEPS];
    for (k, row) in m.iter_mut().enumerate() {
        let scale = if k == 0 {
            (1.0 / n).sqrt()
        } else {
            (2.0 / n).sqrt()
        };
        let lift = 1.0 + CEP_LIFTER / 2.0 * (std::f64::consts::PI * k as f64 / CEP_LIFTER).sin();
        for (i, v) in row.iter_mut().enumerate() {
            let angle = std::f64::consts::PI * k as f64 * (2 * i + 1) as f64 / (2.0 * n);
            *v = lift * scale * angle.cos();
        }
    }
    m
}

/// Streaming MFCC (see the module doc): feed samples with [`Mfcc::push`] in chunks of any
/// size and get every frame they complete; [`Mfcc::finish`] gives psf's zero-padded last
/// frame, if the stream has one. Chunked input gives the same frames, bit for bit, as one
/// call with the whole stream; frame `k` covers the samples `[160 k, 160 k + 400)`.
pub struct Mfcc {
    fft: Arc<dyn RealToComplex<f64>>,
    filters: Vec<Filter>,
    dct: [[f64; NUM_FILTERS]; NUM_CEPS],
    /// The last scaled input sample (pre-emphasis state); None before the first sample.
    prev: Option<f64>,
    /// Pre-emphasised samples from the start of the next frame on.
    pending: Vec<f64>,
    samples: u64,
    frames: u64,
    // Scratch buffers, reused for every frame.
    fft_in: Vec<f64>,
    fft_out: Vec<Complex<f64>>,
    fft_scratch: Vec<Complex<f64>>,
    power: [f64; BINS],
}

impl Default for Mfcc {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Mfcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfcc")
            .field("samples", &self.samples)
            .field("frames", &self.frames)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Mfcc {
    /// A front end with Light-ASD's settings, at the start of a stream.
    pub fn new() -> Self {
        Self::with_filters(psf_filters())
    }

    fn with_filters(filters: Vec<Filter>) -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        Self {
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            fft,
            filters,
            dct: liftered_dct(),
            prev: None,
            pending: Vec::with_capacity(2 * FRAME_LEN),
            samples: 0,
            frames: 0,
            power: [0.0; BINS],
        }
    }

    /// Feeds samples (16 kHz mono, f32 in [-1, 1]; quantised to int16 values as upstream's
    /// are, see [`to_int16`]) and returns the frames they complete.
    pub fn push(&mut self, samples: &[f32]) -> Vec<MfccFrame> {
        let mut out = Vec::with_capacity(samples.len() / FRAME_STEP + 1);
        self.push_into(samples, &mut out);
        out
    }

    /// As [`Mfcc::push`], appending the frames to `out`.
    pub fn push_into(&mut self, samples: &[f32], out: &mut Vec<MfccFrame>) {
        for &s in samples {
            let x = to_int16(s);
            let y = match self.prev {
                Some(p) => x - PREEMPHASIS * p,
                None => x,
            };
            self.prev = Some(x);
            self.pending.push(y);
        }
        self.samples += samples.len() as u64;
        let mut start = 0;
        while self.pending.len() - start >= FRAME_LEN {
            out.push(self.frame(start, FRAME_LEN));
            start += FRAME_STEP;
        }
        self.pending.drain(..start);
    }

    /// Ends the stream: returns psf's last, zero-padded frame when the stream has one (its
    /// samples after the last full frame's start + 160 do not fill a frame, or the whole
    /// stream is shorter than a frame), and resets the front end for a new stream. An empty
    /// stream has no frame (psf itself fails on an empty signal).
    pub fn finish(&mut self) -> Option<MfccFrame> {
        // After k ≥ 1 full frames, `pending` holds the 240 samples they share with the
        // next frame plus the rest; a padded frame exists iff there is a rest. Before the
        // first full frame, any sample at all makes psf's single padded frame.
        let tail = if self.frames == 0 {
            !self.pending.is_empty()
        } else {
            self.pending.len() > FRAME_LEN - FRAME_STEP
        };
        let last = tail.then(|| self.frame(0, self.pending.len()));
        self.reset();
        last
    }

    /// Forgets the stream (pre-emphasis state, pending samples, counters).
    pub fn reset(&mut self) {
        self.prev = None;
        self.pending.clear();
        self.samples = 0;
        self.frames = 0;
    }

    /// Samples pushed since the start of the stream.
    pub fn samples_seen(&self) -> u64 {
        self.samples
    }

    /// Frames returned since the start of the stream (the index of the next frame).
    pub fn frames_done(&self) -> u64 {
        self.frames
    }

    /// The frame of `len` (≤ FRAME_LEN) pending samples from `start`, zero-padded.
    fn frame(&mut self, start: usize, len: usize) -> MfccFrame {
        let len = len
            .min(FRAME_LEN)
            .min(self.pending.len().saturating_sub(start));
        self.fft_in[..len].copy_from_slice(&self.pending[start..start + len]);
        self.fft_in[len..].iter_mut().for_each(|v| *v = 0.0);
        // The lengths are fixed at construction, so the FFT cannot fail; should it ever,
        // the frame is taken as silence rather than stopping the stream.
        if self
            .fft
            .process_with_scratch(&mut self.fft_in, &mut self.fft_out, &mut self.fft_scratch)
            .is_err()
        {
            self.fft_out
                .iter_mut()
                .for_each(|c| *c = Complex::default());
        }
        for (p, c) in self.power.iter_mut().zip(&self.fft_out) {
            *p = c.norm_sqr() / N_FFT as f64;
        }
        let energy = floor_zero(self.power.iter().sum());
        let mut log_fb = [0f64; NUM_FILTERS];
        for (l, f) in log_fb.iter_mut().zip(&self.filters) {
            let band = self.power.iter().skip(f.start).zip(&f.weights);
            *l = floor_zero(band.map(|(p, w)| p * w).sum()).ln();
        }
        let mut out = [0f32; NUM_CEPS];
        for (c, row) in out.iter_mut().zip(&self.dct) {
            *c = row.iter().zip(&log_fb).map(|(a, b)| a * b).sum::<f64>() as f32;
        }
        out[0] = energy.ln() as f32;
        self.frames += 1;
        out
    }
}

/// psf's `numpy.where(x == 0, eps, x)`.
fn floor_zero(x: f64) -> f64 {
    if x == 0.0 {
        EPS
    } else {
        x
    }
}

/// MFCC of a whole signal (16 kHz mono f32), as `python_speech_features.mfcc(int16,
/// 16000, numcep=13, winlen=0.025, winstep=0.010)` of its int16 values ([`to_int16`]):
/// every full frame plus psf's zero-padded last one. Empty input: no frames.
pub fn mfcc(samples: &[f32]) -> Vec<MfccFrame> {
    let mut m = Mfcc::new();
    let mut out = m.push(samples);
    out.extend(m.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../../../tests/reference/data/mfcc_synthetic.json");
    /// Stated tolerance against python_speech_features, on every coefficient.
    const TOLERANCE: f64 = 1e-3;

    fn reference() -> serde_json::Value {
        serde_json::from_str(REFERENCE).expect("mfcc_synthetic.json parses")
    }

    fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
        v.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|x| x.as_f64().expect("number"))
                    .collect()
            })
            .collect()
    }

    /// The formula signal of tests/reference/mfcc_reference.py, as int16 values.
    fn synthetic_signal(n_samples: usize) -> Vec<i16> {
        use std::f64::consts::PI;
        let mut lcg: u64 = 12345;
        (0..n_samples)
            .map(|n| {
                let t = n as f64 / 16000.0;
                let noise = lcg as f64 / 2f64.powi(30) - 1.0;
                lcg = (1103515245 * lcg + 12345) % (1 << 31);
                let env = 0.6 + 0.4 * (2.0 * PI * 1.5 * t).sin();
                let mut x = env
                    * (0.30 * (2.0 * PI * 440.0 * t).sin()
                        + 0.20 * (2.0 * PI * 1234.5 * t + 0.5).sin()
                        + 0.15 * (2.0 * PI * (200.0 * t + 1500.0 * t * t)).sin())
                    + 0.05 * noise;
                if (15000..16000).contains(&n) {
                    x *= 0.001;
                }
                if n < 800 || (9600..10400).contains(&n) {
                    x = 0.0;
                }
                (32767.0 * x + 0.5).floor().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn as_f32(s: &[i16]) -> Vec<f32> {
        s.iter().map(|&v| f32::from(v) / 32768.0).collect()
    }

    /// Max |Δ| over every coefficient, and where; the frame counts must agree.
    fn max_delta(ours: &[MfccFrame], theirs: &[Vec<f64>]) -> (f64, usize, usize) {
        assert_eq!(
            ours.len(),
            theirs.len(),
            "frame count vs python_speech_features"
        );
        let mut worst = (0.0, 0, 0);
        for (f, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert_eq!(b.len(), NUM_CEPS);
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                let d = (f64::from(*x) - y).abs();
                if d > worst.0 {
                    worst = (d, f, k);
                }
            }
        }
        worst
    }

    #[test]
    fn filterbank_bins_match_psf() {
        let doc = reference();
        let expected: Vec<usize> = doc["bins"]
            .as_array()
            .expect("bins")
            .iter()
            .map(|b| b.as_u64().expect("bin") as usize)
            .collect();
        assert_eq!(filterbank_bins().to_vec(), expected);
    }

    #[test]
    fn generator_matches_the_python_one() {
        let doc = reference();
        let n = doc["signal"]["samples"].as_u64().expect("samples") as usize;
        let s = synthetic_signal(n);
        let sum: i64 = s.iter().map(|&v| i64::from(v)).sum();
        let sum_sq: i64 = s.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
        assert_eq!(sum, doc["signal"]["sum"].as_i64().expect("sum"));
        assert_eq!(sum_sq, doc["signal"]["sum_sq"].as_i64().expect("sum_sq"));
    }

    #[test]
    fn synthetic_signal_matches_python_speech_features() {
        let doc = reference();
        let n = doc["signal"]["samples"].as_u64().expect("samples") as usize;
        let ours = mfcc(&as_f32(&synthetic_signal(n)));
        let expected = rows(&doc["mfcc"]);
        let (d, f, k) = max_delta(&ours, &expected);
        // In units of the f32 spacing at the reference value (at 1.0 for values below 1): a
        // few at most means the f64 pipelines agree and the rest is the f32 output.
        let ulps = ours
            .iter()
            .flatten()
            .zip(expected.iter().flatten())
            .map(|(&a, &b)| {
                let (r, m) = (b as f32, (b.abs() as f32).max(1.0));
                (a - r).abs() / (f32::from_bits(m.to_bits() + 1) - m)
            })
            .fold(0f32, f32::max);
        println!(
            "mfcc vs python_speech_features (synthetic, {} frames): max |Δ| = {d:.2e} (frame {f}, c{k}), max {ulps} f32 ulp",
            ours.len()
        );
        assert!(d <= TOLERANCE, "max |Δ| {d} at frame {f}, c{k}");
    }

    #[test]
    fn short_inputs_are_framed_as_psf_frames_them() {
        let doc = reference();
        let s = synthetic_signal(doc["signal"]["samples"].as_u64().expect("n") as usize);
        for case in doc["short"].as_array().expect("short") {
            let off = case["offset"].as_u64().expect("offset") as usize;
            let len = case["len"].as_u64().expect("len") as usize;
            let ours = mfcc(&as_f32(&s[off..off + len]));
            let (d, f, k) = max_delta(&ours, &rows(&case["mfcc"]));
            assert!(d <= TOLERANCE, "len {len}: max |Δ| {d} at frame {f}, c{k}");
        }
    }

    #[test]
    fn chunked_input_gives_the_one_shot_frames() {
        let x = as_f32(&synthetic_signal(20077));
        let whole = mfcc(&x);
        for sizes in [
            &[1usize][..],
            &[7, 160, 399, 1],
            &[400],
            &[401, 159],
            &[1000, 3],
        ] {
            let mut m = Mfcc::new();
            let mut got = Vec::new();
            let mut rest = &x[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                got.extend(m.push(&rest[..n]));
                assert_eq!(m.frames_done(), got.len() as u64);
                rest = &rest[n..];
                i += 1;
            }
            assert_eq!(m.samples_seen(), x.len() as u64);
            got.extend(m.finish());
            assert_eq!(got, whole, "chunk sizes {sizes:?}");
        }
    }

    #[test]
    fn finish_starts_a_new_stream() {
        let x = as_f32(&synthetic_signal(5000));
        let mut m = Mfcc::new();
        let mut first = m.push(&x[1000..3000]);
        first.extend(m.finish());
        assert_eq!((m.samples_seen(), m.frames_done()), (0, 0));
        let mut second = m.push(&x[..2345]);
        second.extend(m.finish());
        assert_eq!(first, mfcc(&x[1000..3000]));
        assert_eq!(second, mfcc(&x[..2345]));
    }

    #[test]
    fn frame_counts_follow_framesig() {
        // numframes = 1 if len <= 400 else 1 + ceil((len - 400) / 160); none for len 0.
        for len in [0usize, 1, 399, 400, 401, 559, 560, 561, 720, 721, 16000] {
            let expected = match len {
                0 => 0,
                l if l <= FRAME_LEN => 1,
                l => 1 + (l - FRAME_LEN).div_ceil(FRAME_STEP),
            };
            assert_eq!(mfcc(&vec![0.1; len]).len(), expected, "len {len}");
        }
    }

    #[test]
    fn digital_silence_takes_the_eps_floor() {
        let out = mfcc(&[0.0; 800]);
        for f in &out {
            assert_eq!(f[0], EPS.ln() as f32);
            // ln(eps) in every band: a constant, whose DCT is zero past c0.
            assert!(f[1..].iter().all(|c| c.abs() < 1e-4), "{f:?}");
        }
    }

    #[test]
    fn int16_values_come_back_exactly() {
        for v in i16::MIN..=i16::MAX {
            assert_eq!(to_int16(f32::from(v) / 32768.0), f64::from(v));
        }
        // Round half to even, as ffmpeg's lrintf; clipped at full scale.
        let lsb = 1.0 / 32768.0;
        assert_eq!(to_int16(0.5 * lsb), 0.0);
        assert_eq!(to_int16(1.5 * lsb), 2.0);
        assert_eq!(to_int16(-2.5 * lsb), -2.0);
        assert_eq!(to_int16(0.49 * lsb), 0.0);
        assert_eq!(to_int16(1.0), 32767.0);
        assert_eq!(to_int16(-1.5), -32768.0);
        assert!(to_int16(f32::NAN).is_nan());
    }

    #[test]
    fn input_scale_only_moves_c0() {
        // Doubling the input shifts c0 by 2 ln 2 and leaves c1..c12: why the f32 samples
        // must be scaled back to int16 values to give upstream's c0. (Both signals hold
        // whole int16 values, so the int16 rounding changes neither.)
        let half: Vec<i16> = synthetic_signal(4000).iter().map(|v| v / 2).collect();
        let double: Vec<i16> = half.iter().map(|v| v * 2).collect();
        let (a, b) = (mfcc(&as_f32(&half)), mfcc(&as_f32(&double)));
        for (fa, fb) in a.iter().zip(&b).skip(6) {
            assert!((fb[0] - fa[0] - 2.0 * 2f32.ln()).abs() < 1e-4);
            for k in 1..NUM_CEPS {
                assert!((fb[k] - fa[k]).abs() < 1e-4, "c{k}: {} vs {}", fa[k], fb[k]);
            }
        }
    }

    /// The module doc's claim: mel_spec's (librosa-style, HTK mel) filterbank is not psf's,
    /// by this much in weights and in the MFCC of the synthetic signal.
    #[test]
    fn mel_spec_filterbank_is_not_psfs() {
        let dense = mel_spec::mel::mel(16000.0, N_FFT, NUM_FILTERS, None, None, true, false);
        let ours = psf_filters();
        let mut max_w = 0f64;
        let mut theirs = Vec::new();
        for (j, f) in ours.iter().enumerate() {
            for i in 0..BINS {
                let w = i
                    .checked_sub(f.start)
                    .and_then(|o| f.weights.get(o))
                    .copied()
                    .unwrap_or(0.0);
                max_w = max_w.max((dense[[j, i]] - w).abs());
            }
            let start = (0..BINS).find(|&i| dense[[j, i]] != 0.0).unwrap_or(0);
            let end = (0..BINS)
                .rfind(|&i| dense[[j, i]] != 0.0)
                .map_or(start, |e| e + 1);
            theirs.push(Filter {
                start,
                weights: (start..end).map(|i| dense[[j, i]]).collect(),
            });
        }
        let doc = reference();
        let x = as_f32(&synthetic_signal(
            doc["signal"]["samples"].as_u64().expect("n") as usize,
        ));
        let mut m = Mfcc::with_filters(theirs);
        let mut with_mel_spec = m.push(&x);
        with_mel_spec.extend(m.finish());
        let (d, f, k) = max_delta(&with_mel_spec, &rows(&doc["mfcc"]));
        println!(
            "mel_spec's filterbank vs psf's: max |Δweight| = {max_w:.3}; MFCC with it: max |Δ| = {d:.2} (frame {f}, c{k})"
        );
        assert!(max_w > 0.1 && d > 0.1, "{max_w} {d}");
    }
}
