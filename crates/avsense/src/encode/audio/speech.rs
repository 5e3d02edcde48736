//! The speech encoder: Silero VAD over the audio stream, one probability per 32 ms chunk,
//! its recurrent state carried across the pipeline's chunks (which are not multiples of
//! 512 samples: the model buffers the remainder). A discontinuity restarts the state.

use crate::core::clock::{Duration, Timestamp};
use crate::core::features::AudioFeatures;
use crate::core::media::{AudioChunk, AUDIO_RATE};
use crate::core::settings::Toggle;
use crate::encode::{AudioEncoder, AudioEncoderKind, EncodeError, StreamInfo};
use crate::model_files::ModelsConfig;
use avsense_nn::models::silero::{SileroVad, CHUNK_SAMPLES};

/// Speech probability of one VAD chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechProb {
    /// Start of the chunk.
    pub start: Timestamp,
    /// Its length.
    pub duration: Duration,
    /// Probability of speech.
    pub prob: f32,
}

/// The speech probabilities of the VAD chunks completed with one audio run (the speech
/// encoder's result in [`AudioFeatures`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeechProbs(pub Vec<SpeechProb>);

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
        let mut out = Vec::with_capacity(probs.len());
        for p in probs {
            let start = origin.plus_samples(self.chunks_out * CHUNK_SAMPLES as u64, AUDIO_RATE);
            out.push(SpeechProb {
                start,
                duration: len,
                prob: p,
            });
            self.chunks_out += 1;
        }
        feats.ext.insert(SpeechProbs(out));
        Ok(())
    }
}

/// Silero VAD as the pipeline registers it: the weights loaded once, a fresh recurrent state
/// per stream.
pub struct SpeechKind {
    vad: SileroVad,
}

impl SpeechKind {
    /// Loads Silero VAD under `[vad] mode` (`None`: off, or `auto` without the file).
    pub fn load(mode: Toggle, models: &ModelsConfig) -> Result<Option<Self>, EncodeError> {
        let Some(file) = models.file(mode, "silero-vad", "silero-vad/silero_vad.jit")? else {
            return Ok(None);
        };
        let device = models.device()?;
        let origin = file.origin().display().to_string();
        let bytes = file
            .read()
            .map_err(|e| EncodeError::read("silero-vad", &origin, e))?;
        let vad = SileroVad::load_jit_bytes(&bytes, &origin, &device)
            .map_err(|e| EncodeError::load("silero-vad", e))?;
        Ok(Some(Self { vad }))
    }
}

impl AudioEncoderKind for SpeechKind {
    fn name(&self) -> &'static str {
        "silero-vad"
    }

    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn AudioEncoder>>, EncodeError> {
        if !stream.audio {
            return Ok(None);
        }
        let vad = self
            .vad
            .new_stream()
            .map_err(|e| EncodeError::load("silero-vad", e))?;
        Ok(Some(Box::new(SpeechEncoder::new(vad))))
    }
}
