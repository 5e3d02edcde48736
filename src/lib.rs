//! # avsense
//!
//! A streaming audio-visual perception pipeline: GStreamer capture, per-modality encoders,
//! time alignment into windows, fusion, and perception events as JSON Lines.
//!
//! ```text
//! source (GStreamer) ─Frame─▶ video encoders ─┐
//!                    ─Chunk─▶ audio encoders ─┴─▶ aligner ─Window─▶ fusion ─Event─▶ sinks
//! ```
//!
//! Every arrow is a bounded [`channel`] edge with a policy (block or drop-oldest) and
//! counters; every stage runs on its own thread.
//!
//! Embedding note: candle 0.11 reads `/proc/cpuinfo` on every matrix multiply unless
//! `RAYON_NUM_THREADS` is set; set it at start-up (the `avsense` binary does).
//!
//! ```no_run
//! use avsense::{Pipeline, PipelineConfig};
//! let cfg = PipelineConfig::for_input("clip.mp4", None)?;
//! let report = Pipeline::new(cfg)?.run()?;
//! println!("{} windows", report.streams[0].align.windows);
//! # Ok::<(), avsense::Error>(())
//! ```

pub mod align;
pub mod channel;
pub mod clock;
pub mod config;
pub mod devices;
pub mod encode;
pub mod eval;
pub mod event;
pub mod example;
pub mod fusion;
pub mod latency;
pub mod models;
pub mod pipeline;
pub mod sink;
pub mod source;

pub use config::{ConfigError, PipelineConfig};
pub use event::{Event, EventKind};
pub use pipeline::{Pipeline, RunReport, Running, StreamReport};

/// Errors of the library. Each names the file, stage or key concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A source failed.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// An encoder failed.
    #[error(transparent)]
    Encode(#[from] encode::EncodeError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    /// The fusion ontology map is invalid.
    #[error(transparent)]
    Ontology(#[from] fusion::ontology::OntologyError),
    /// Learned fusion weights could not be loaded.
    #[error(transparent)]
    FusionModel(#[from] fusion::model::FusionModelError),
    /// GStreamer could not be initialised.
    #[error("{0}")]
    Init(String),
    /// A stage thread could not start or panicked.
    #[error("{0}")]
    Thread(String),
}
