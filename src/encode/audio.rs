//! The audio front end: YAMNet's log-mel framing plus level and onset strength.
//!
//! Framing is YAMNet's: 16 kHz mono, 25 ms windows (400 samples) every 10 ms (160
//! samples), a periodic Hann window, a 512-point FFT, the **magnitude** spectrum, 64 mel
//! bands from 125 to 7500 Hz on the HTK mel scale, and `ln(mel + 0.001)`.
//!
//! The mel filterbank comes from `mel_spec` ([`SparseMelFilterbank::from_mel`], HTK scale,
//! no Slaney normalisation), and so does the projection onto it. The STFT is our own
//! (`realfft`, which `mel_spec` uses too) because `mel_spec`'s batch front end makes three
//! choices YAMNet does not (see FACTS.md): it takes the power spectrum and `ln(power +
//! guard)`, a symmetric Hann window, and frames of `n_fft` = 512 samples. A streaming
//! front end also has to carry the samples of a partial window from one chunk to the next,
//! which the batch API does not do. Whether the filterbank matches YAMNet's own
//! (TensorFlow's `linear_to_mel_weight_matrix`) is measured in the encoders issue.

use super::{AudioFeatures, EncodeError};
use crate::clock::{Duration, Timestamp};
use crate::source::{AudioChunk, AUDIO_RATE};
use mel_spec::mel::SparseMelFilterbank;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Mel bands.
pub const MEL_BINS: usize = 64;
/// Window length in samples (25 ms at 16 kHz).
pub const WINDOW: usize = 400;
/// Hop in samples (10 ms at 16 kHz).
pub const HOP: usize = 160;
/// FFT size.
pub const N_FFT: usize = 512;
/// Lowest mel band edge, Hz.
pub const F_MIN: f64 = 125.0;
/// Highest mel band edge, Hz.
pub const F_MAX: f64 = 7500.0;
/// Offset inside the log.
pub const LOG_OFFSET: f32 = 0.001;
/// Level reported for digital silence, dBFS.
pub const SILENCE_DB: f32 = -120.0;

/// Streaming log-mel / level / onset front end (see the module doc).
pub struct LogMelFrontEnd {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    filters: SparseMelFilterbank,
    /// Samples not yet consumed by a full window, starting at `pending_pts`.
    pending: Vec<f32>,
    pending_pts: Option<Timestamp>,
    prev_mel: Option<[f32; MEL_BINS]>,
    // Scratch buffers, reused for every frame.
    fft_in: Vec<f32>,
    fft_out: Vec<realfft::num_complex::Complex<f32>>,
    fft_scratch: Vec<realfft::num_complex::Complex<f32>>,
    magnitude: Vec<f32>,
    mel: [f32; MEL_BINS],
}

impl Default for LogMelFrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMelFrontEnd {
    /// A front end with YAMNet's settings.
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        // Periodic Hann: w[n] = 0.5 − 0.5·cos(2πn/N), as tf.signal.hann_window(periodic=True).
        let window = (0..WINDOW)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / WINDOW as f32).cos())
            .collect();
        let filters = SparseMelFilterbank::from_mel(
            AUDIO_RATE as f64,
            N_FFT,
            MEL_BINS,
            Some(F_MIN),
            Some(F_MAX),
            true,
            false,
        );
        Self {
            fft_in: fft.make_input_vec(),
            fft_out: fft.make_output_vec(),
            fft_scratch: fft.make_scratch_vec(),
            magnitude: vec![0.0; N_FFT / 2 + 1],
            fft,
            window,
            filters,
            pending: Vec::new(),
            pending_pts: None,
            prev_mel: None,
            mel: [0.0; MEL_BINS],
        }
    }

    /// The hop as a duration.
    pub fn hop() -> Duration {
        Duration::of_samples(HOP as u64, AUDIO_RATE)
    }

    /// Feeds one chunk; returns the features of every window completed by it (`None` when
    /// the chunk completed none). A discontinuity restarts the framing at the chunk's time.
    pub fn push(&mut self, chunk: &AudioChunk) -> Result<Option<AudioFeatures>, EncodeError> {
        if chunk.sample_rate != AUDIO_RATE || chunk.channels != 1 {
            return Err(EncodeError::BadInput {
                encoder: "log-mel",
                stream: chunk.stream.to_string(),
                pts: chunk.pts,
                reason: format!(
                    "expected mono {AUDIO_RATE} Hz, got {} channel(s) at {} Hz",
                    chunk.channels, chunk.sample_rate
                ),
            });
        }
        if chunk.discont || self.pending_pts.is_none() {
            self.pending.clear();
            self.pending_pts = Some(chunk.pts);
            self.prev_mel = None;
        }
        self.pending.extend_from_slice(&chunk.samples);
        let Some(start) = self.pending_pts else {
            return Ok(None);
        };
        if self.pending.len() < WINDOW {
            return Ok(None);
        }
        let n_frames = (self.pending.len() - WINDOW) / HOP + 1;
        let mut feats = AudioFeatures {
            stream: Arc::clone(&chunk.stream),
            pts: start,
            hop: Self::hop(),
            window: Duration::of_samples(WINDOW as u64, AUDIO_RATE),
            log_mel: Vec::with_capacity(n_frames * MEL_BINS),
            level_db: Vec::with_capacity(n_frames),
            onset: Vec::with_capacity(n_frames),
            speech: Vec::new(),
            tags: Vec::new(),
        };
        for k in 0..n_frames {
            let off = k * HOP;
            self.frame(off, &mut feats);
        }
        let consumed = n_frames * HOP;
        self.pending.drain(..consumed);
        self.pending_pts = Some(start.plus_samples(consumed as u64, AUDIO_RATE));
        Ok(Some(feats))
    }

    fn frame(&mut self, off: usize, out: &mut AudioFeatures) {
        let samples = &self.pending[off..off + WINDOW];
        let mut sq = 0f64;
        for ((dst, &x), &w) in self.fft_in.iter_mut().zip(samples).zip(&self.window) {
            *dst = x * w;
            sq += f64::from(x) * f64::from(x);
        }
        for dst in self.fft_in[WINDOW..].iter_mut() {
            *dst = 0.0;
        }
        // Lengths are fixed at construction, so the FFT cannot fail here; if it ever did,
        // the frame's spectrum is reported as silence rather than stopping the stream.
        if self
            .fft
            .process_with_scratch(&mut self.fft_in, &mut self.fft_out, &mut self.fft_scratch)
            .is_err()
        {
            self.fft_out
                .iter_mut()
                .for_each(|c| *c = Default::default());
        }
        for (m, c) in self.magnitude.iter_mut().zip(&self.fft_out) {
            *m = c.norm();
        }
        self.filters
            .project_power_f32(&self.magnitude, &mut self.mel);
        let mut flux = 0f32;
        for (i, m) in self.mel.iter_mut().enumerate() {
            *m = (*m + LOG_OFFSET).ln();
            if let Some(prev) = &self.prev_mel {
                flux += (*m - prev[i]).max(0.0);
            }
        }
        out.log_mel.extend_from_slice(&self.mel);
        out.onset.push(flux / MEL_BINS as f32);
        self.prev_mel = Some(self.mel);
        let rms = (sq / WINDOW as f64).sqrt();
        // +3.01 dB so that a full-scale sine reads 0 dBFS (AES17).
        let db = if rms > 0.0 {
            (20.0 * rms.log10() + 3.0103) as f32
        } else {
            SILENCE_DB
        };
        out.level_db.push(db.max(SILENCE_DB));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(samples: Vec<f32>, pts: Timestamp) -> AudioChunk {
        AudioChunk {
            stream: Arc::from("t"),
            pts,
            sample_rate: AUDIO_RATE,
            channels: 1,
            samples,
            discont: false,
        }
    }

    #[test]
    fn framing_is_continuous_across_chunks() {
        let sig: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let mut whole = LogMelFrontEnd::new();
        let a = whole
            .push(&chunk(sig.clone(), Timestamp(0)))
            .unwrap()
            .unwrap();
        let mut parts = LogMelFrontEnd::new();
        let mut frames = Vec::new();
        let mut pts = Timestamp(0);
        for c in sig.chunks(333) {
            if let Some(f) = parts.push(&chunk(c.to_vec(), pts)).unwrap() {
                frames.extend_from_slice(&f.log_mel);
            }
            pts = pts.plus_samples(c.len() as u64, AUDIO_RATE);
        }
        // (16000 − 400) / 160 + 1 = 98 frames either way, identical values.
        assert_eq!(a.frames(), 98);
        assert_eq!(frames.len(), a.log_mel.len());
        let max = frames
            .iter()
            .zip(&a.log_mel)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-5, "{max}");
    }

    #[test]
    fn sine_level_and_mel_peak() {
        // A full-scale 1 kHz sine reads 0 dBFS and peaks in the mel band around 1 kHz.
        let sig: Vec<f32> = (0..4000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let f = LogMelFrontEnd::new()
            .push(&chunk(sig, Timestamp(0)))
            .unwrap()
            .unwrap();
        assert!((f.level_db[3] - 0.0).abs() < 0.05, "{}", f.level_db[3]);
        let row = &f.log_mel[3 * MEL_BINS..4 * MEL_BINS];
        let peak = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        // HTK mel: 125 Hz = 185, 7500 Hz = 2774, 65 steps of 39.8; 1000 Hz = 1000 mel → band ≈ 19.5.
        assert!((18..=21).contains(&peak), "peak band {peak}");
        assert_eq!(f.frame_time(0), Timestamp(12_500_000));
    }

    #[test]
    fn silence_is_floor_level_and_wrong_rate_is_an_error() {
        let f = LogMelFrontEnd::new()
            .push(&chunk(vec![0.0; 800], Timestamp(0)))
            .unwrap()
            .unwrap();
        assert!(f.level_db.iter().all(|&d| d == SILENCE_DB));
        assert!(f
            .log_mel
            .iter()
            .all(|&m| (m - LOG_OFFSET.ln()).abs() < 1e-6));
        let mut bad = chunk(vec![0.0; 800], Timestamp(0));
        bad.sample_rate = 44_100;
        assert!(LogMelFrontEnd::new().push(&bad).is_err());
    }
}
