//! Single-modality event decoders with onset/offset hysteresis, so one sound is one event
//! and one walk through the room is one motion event, not thirty: [`motion`], [`sound`],
//! [`speech`] (from the VAD), [`tags`] (AudioSet labels of sounds), [`objects`] (track
//! changes).

pub mod motion;
pub mod objects;
pub mod sound;
pub mod speech;
pub mod tags;

pub use motion::MotionDetector;
pub use sound::{SoundConfig, SoundDetector};
pub use speech::{SpeechConfig, SpeechDetector};
pub use tags::{TagTracker, TaggerConfig};
