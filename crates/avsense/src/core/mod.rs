//! The types every stage shares, and nothing else: this module imports no stage.
//!
//! ```text
//! clock     Timestamp, Duration (nanoseconds on the stream's timeline)
//! edge      bounded channels with a policy (block / drop-oldest) and counters
//! errors    an error and its sources as one line (reports, events)
//! media     Frame, AudioChunk, Modality, VideoSpec — what sources deliver
//! features  VisionFeatures, AudioFeatures (open, typed per-encoder results), Feature
//! window    Window — what the aligner delivers
//! event     Event — the public output (with its lifecycle Phase)
//! ids       UUIDv7 event ids (reproducible for a recorded file)
//! settings  Toggle (auto/on/off), Invalid (a config value out of bounds)
//! latency   capture → event latency recorder, wall-clock stamps
//! live      LiveStats — a running pipeline's counters now (for dashboards)
//! stop      StopFlag — a stream's stop request, seen by every stage behind its source
//! timing    ModelTimes — inference times per model, for the live stats and metrics
//! ```

pub mod clock;
pub mod edge;
pub mod errors;
pub mod event;
pub mod features;
pub mod ids;
pub mod latency;
pub mod live;
pub mod media;
pub mod settings;
pub mod stop;
pub mod timing;
pub mod window;
