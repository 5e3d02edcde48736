//! Audio encoders. Every stream's audio goes through the shared front end ([`logmel`]: log-mel
//! frames, level, onset on YAMNet's 25 ms / 10 ms framing) once; each encoder then adds its
//! own result to the front end's [`crate::core::features::AudioFeatures`]:
//!
//! - [`speech`]: Silero VAD → [`speech::SpeechProbs`]
//! - [`tagger`]: YAMNet → [`tagger::TagPatches`] (AudioSet scores + embedding per 0.96 s patch)
//! - [`mfcc`]: python_speech_features' MFCC for Light-ASD → [`mfcc::MfccRun`]

pub mod logmel;
pub mod mfcc;
pub mod speech;
pub mod tagger;

use serde::{Deserialize, Serialize};

/// `[audio]`: the log-mel / level / onset front end (YAMNet's framing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Run the audio encoders.
    pub enabled: bool,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}
