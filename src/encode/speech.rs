//! The speech encoder: Silero VAD over the audio stream, one probability per 32 ms chunk,
//! its recurrent state carried across the pipeline's chunks (which are not multiples of
//! 512 samples: the model buffers the remainder). A discontinuity restarts the state.

use super::models::silero::{SileroVad, CHUNK_SAMPLES};
use super::{AudioEncoder, AudioFeatures, EncodeError, SpeechProb};
use crate::clock::{Duration, Timestamp};
use crate::source::{AudioChunk, AUDIO_RATE};

/// Silero VAD as an [`AudioEncoder`].
pub struct SpeechEncoder {
    vad: SileroVad,
    /// Time of sample 0 of the current run and samples fed since.
    origin: Option<Timestamp>,
    chunks_out: u64,
}

impl SpeechEncoder {
    /// Wraps a loaded model (fresh state).
    pub fn new(vad: SileroVad) -> Self {
        Self {
            vad,
            origin: None,
            chunks_out: 0,
        }
    }
}

impl AudioEncoder for SpeechEncoder {
    fn name(&self) -> &'static str {
        "silero-vad"
    }

    fn encode(&mut self, chunk: &AudioChunk, feats: &mut AudioFeatures) -> Result<(), EncodeError> {
        let bad = |reason: String| EncodeError::BadInput {
            encoder: "silero-vad",
            stream: chunk.stream.to_string(),
            pts: chunk.pts,
            reason,
        };
        if chunk.discont || self.origin.is_none() {
            self.vad.reset().map_err(|e| bad(e.to_string()))?;
            self.origin = Some(chunk.pts);
            self.chunks_out = 0;
        }
        let origin = self.origin.unwrap_or(chunk.pts);
        // A NaN would poison the recurrent state for the rest of the stream: replace it.
        let probs = if chunk.samples.iter().all(|x| x.is_finite()) {
            self.vad.process(&chunk.samples)
        } else {
            let clean: Vec<f32> = chunk
                .samples
                .iter()
                .map(|x| if x.is_finite() { *x } else { 0.0 })
                .collect();
            self.vad.process(&clean)
        }
        .map_err(|e| bad(e.to_string()))?;
        let len = Duration::of_samples(CHUNK_SAMPLES as u64, AUDIO_RATE);
        for p in probs {
            let start = origin.plus_samples(self.chunks_out * CHUNK_SAMPLES as u64, AUDIO_RATE);
            feats.speech.push(SpeechProb {
                start,
                duration: len,
                prob: p,
            });
            self.chunks_out += 1;
        }
        Ok(())
    }
}
