//! The audio front end: YAMNet's log-mel framing plus level and onset strength.
//!
//! Framing is YAMNet's: 16 kHz mono, 25 ms windows (400 samples) every 10 ms (160
//! samples), a periodic Hann window, a 512-point FFT, the **magnitude** spectrum, 64 mel
//! bands from 125 to 7500 Hz on the HTK mel scale, and `ln(mel + 0.001)`. Frame `k` reads
//! samples `[160 k, 160 k + 400)` of the stream; nothing is padded or centred. A YAMNet
//! patch is 96 frames (0.96 s, from 15600 samples) and patches start every 48 frames.
//!
//! The mel filterbank is TensorFlow's `tf.signal.linear_to_mel_weight_matrix`
//! ([`tf_mel_weight_matrix`]), as upstream YAMNet (`features.py`) uses: the triangles are
//! linear **in mel** (`1127 ln(1 + f / 700)`) between band edges equally spaced in mel, the
//! FFT bins are placed by their mel value, the DC bin is zeroed, no area normalisation.
//! `mel_spec`/librosa build the triangles linear in Hz between the same edges; their
//! weights differ from TF's by up to 0.008, and the log-mel by up to 0.011 (measured on
//! espeak_sentence.wav), hence TF's weights; `mel_spec` still holds and applies them
//! (`SparseMelFilterbank::from_dense` + `project_power_f64`). `yamnet.tflite`'s int8 mel matrix is
//! TF's to within half a quantisation step (`tests/parity_yamnet.rs` checks it).
//!
//! The STFT is our own (`realfft`) because `mel_spec`'s batch front end makes three
//! choices YAMNet does not (see FACTS.md): it takes the power spectrum and `ln(power +
//! guard)`, a symmetric Hann window, and frames of `n_fft` = 512 samples. A streaming
//! front end also has to carry the samples of a partial window from one chunk to the next,
//! which the batch API does not do. Where the 400 samples sit in the 512-point FFT buffer
//! does not change the magnitude (YAMNet's TFLite graph centres them, 56 zeros each side;
//! here they come first).
//!
//! The STFT, the mel projection and the log run in f64 (the output is f32): ln(mel + 0.001)
//! magnifies absolute errors of quiet bands up to 1000×, and an f32 FFT of a loud frame
//! (phone-incoming-call.wav) moved them by 4e-3.
//!
//! Parity (`tests/parity_yamnet.rs`): against upstream's front-end formulas in float64,
//! max |Δ| 4.8e-7 on real sounds; against upstream's float front end run by LiteRT in f32,
//! 8e-4 (its own rounding). The shipped `yamnet.tflite` computes its own log-mel with int8
//! weights *and* int8 activations (hybrid kernels quantise every frame on the fly), which
//! moves quiet bands by up to ~6 in log units; that is the model file's quantisation, not
//! this front end (the test reproduces it by emulating the kernels).

use crate::core::clock::{Duration, Timestamp};
use crate::core::features::AudioFeatures;
use crate::core::media::{AudioChunk, AUDIO_RATE};
use crate::encode::EncodeError;
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
    fft: Arc<dyn RealToComplex<f64>>,
    window: Vec<f64>,
    filters: MelFilterbank,
    /// Samples not yet consumed by a full window, starting at `pending_pts`.
    pending: Vec<f32>,
    pending_pts: Option<Timestamp>,
    prev_mel: Option<[f32; MEL_BINS]>,
    // Scratch buffers, reused for every frame.
    fft_in: Vec<f64>,
    fft_out: Vec<realfft::num_complex::Complex<f64>>,
    fft_scratch: Vec<realfft::num_complex::Complex<f64>>,
    magnitude: Vec<f64>,
    mel_energy: [f64; MEL_BINS],
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
        // f64: ln(mel + 0.001) magnifies absolute errors of quiet bands by up to 1000×; an
        // f32 FFT of a loud frame (phone-incoming-call.wav) moved them by 4e-3.
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        // Periodic Hann: w[n] = 0.5 − 0.5·cos(2πn/N), as tf.signal.hann_window(periodic=True).
        let window = (0..WINDOW)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / WINDOW as f64).cos())
            .collect();
        let filters = MelFilterbank::yamnet();
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
            mel_energy: [0.0; MEL_BINS],
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
            ext: Default::default(),
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
            *dst = f64::from(x) * w;
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
        self.filters.project(&self.magnitude, &mut self.mel_energy);
        let mut flux = 0f32;
        for (i, (m, &e)) in self.mel.iter_mut().zip(&self.mel_energy).enumerate() {
            *m = (e + f64::from(LOG_OFFSET)).ln() as f32;
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

/// TensorFlow's `tf.signal.linear_to_mel_weight_matrix(num_mel_bins, num_spectrogram_bins,
/// sample_rate, lower_edge_hertz, upper_edge_hertz)`: row-major
/// `[num_spectrogram_bins, num_mel_bins]`, computed in f64 (TF computes in f32; the
/// weights agree to ~1e-7).
///
/// HTK mel `m(f) = 1127 ln(1 + f / 700)`; bin `i` sits at `m(i · nyquist / (bins − 1))`;
/// band `j` is the triangle over the mel edges `e[j], e[j+1], e[j+2]` of
/// `num_mel_bins + 2` edges equally spaced in mel from `m(lower)` to `m(upper)`:
/// `max(0, min((m − e[j]) / (e[j+1] − e[j]), (e[j+2] − m) / (e[j+2] − e[j+1])))`; the DC
/// bin's row is zero.
pub fn tf_mel_weight_matrix(
    num_mel_bins: usize,
    num_spectrogram_bins: usize,
    sample_rate: f64,
    lower_edge_hertz: f64,
    upper_edge_hertz: f64,
) -> Vec<f32> {
    let mel = |f: f64| 1127.0 * (f / 700.0).ln_1p();
    let nyquist = sample_rate / 2.0;
    let (lo, hi) = (mel(lower_edge_hertz), mel(upper_edge_hertz));
    let edge = |k: usize| lo + (hi - lo) * k as f64 / (num_mel_bins + 1) as f64;
    let mut w = vec![0f32; num_spectrogram_bins * num_mel_bins];
    for i in 1..num_spectrogram_bins {
        let m = mel(nyquist * i as f64 / (num_spectrogram_bins - 1) as f64);
        for j in 0..num_mel_bins {
            let (l, c, u) = (edge(j), edge(j + 1), edge(j + 2));
            let v = ((m - l) / (c - l)).min((u - m) / (u - c)).max(0.0);
            w[i * num_mel_bins + j] = v as f32;
        }
    }
    w
}

/// YAMNet's mel filterbank: TensorFlow's weights ([`tf_mel_weight_matrix`]) held and
/// applied by `mel_spec`'s sparse filterbank (per band, the run of non-zero FFT bins).
struct MelFilterbank(SparseMelFilterbank);

impl MelFilterbank {
    fn yamnet() -> Self {
        let bins = N_FFT / 2 + 1;
        let dense = tf_mel_weight_matrix(MEL_BINS, bins, AUDIO_RATE as f64, F_MIN, F_MAX);
        // mel_spec's layout is [bands, bins]; TF's is [bins, bands].
        let rows = ndarray::Array2::from_shape_fn((MEL_BINS, bins), |(j, i)| {
            f64::from(dense[i * MEL_BINS + j])
        });
        Self(SparseMelFilterbank::from_dense(&rows))
    }

    /// `out[j] = Σ_i magnitude[i] · w[i][j]` (lengths are fixed at construction: 257 bins,
    /// 64 bands).
    fn project(&self, magnitude: &[f64], out: &mut [f64; MEL_BINS]) {
        self.0.project_power_f64(magnitude, out);
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
    fn tf_mel_matrix_values() {
        // Values of the numpy transcription of tf.signal.linear_to_mel_weight_matrix(64, 257,
        // 16000, 125, 7500) in tests/reference/yamnet_reference.py. The end-to-end check is
        // in tests/parity_yamnet.rs: yamnet.tflite's own int8 mel matrix is this one to
        // within half a quantisation step.
        let w = tf_mel_weight_matrix(64, 257, 16000.0, 125.0, 7500.0);
        let at = |bin: usize, band: usize| w[bin * 64 + band];
        assert!(w[..64].iter().all(|&v| v == 0.0), "the DC row is zero");
        // Band 0: mel edges 185.17, 224.99, 264.81; only bin 5 (156.25 Hz) falls inside.
        assert_eq!(at(4, 0), 0.0);
        assert!(
            (f64::from(at(5, 0)) - 0.947_690_46).abs() < 1e-6,
            "{}",
            at(5, 0)
        );
        assert_eq!(at(6, 0), 0.0);
        assert!(
            (f64::from(at(5, 1)) - 0.052_309_54).abs() < 1e-6,
            "{}",
            at(5, 1)
        );
        assert!(
            (f64::from(at(6, 1)) - 0.933_106_35).abs() < 1e-6,
            "{}",
            at(6, 1)
        );
        for j in 0..64 {
            let peak = (0..257).map(|i| at(i, j)).fold(0f32, f32::max);
            assert!(peak > 0.4 && peak <= 1.0, "band {j} peak {peak}");
        }
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
