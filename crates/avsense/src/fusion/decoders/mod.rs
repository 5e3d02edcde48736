//! Single-modality event decoders with onset/offset hysteresis, so one sound is one event
//! and one walk through the room is one motion event, not thirty: [`motion`], [`sound`],
//! [`speech`] (from the VAD), [`tags`] (AudioSet labels of sounds), [`objects`] (track
//! changes).

pub mod motion;
pub mod objects;
pub mod sound;
pub mod speech;
pub mod tags;

/// A jump in audio time larger than this (seconds) is a gap in the input: sound and speech
/// events end at the last audio heard before it.
pub(crate) const INPUT_GAP_S: f64 = 0.25;

pub use motion::MotionDetector;
pub use sound::{SoundConfig, SoundDetector};
pub use speech::{SpeechConfig, SpeechDetector};
pub use tags::{TagTracker, TaggerConfig};
