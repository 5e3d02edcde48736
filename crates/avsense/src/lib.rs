//! # avsense
//!
//! A streaming audio-visual perception pipeline: GStreamer capture, per-modality encoders,
//! time alignment into windows, fusion, and perception events as JSON Lines.
//!
//! ```text
//! source (GStreamer) ─Frame─▶ encode: video ─┐
//!                    ─Chunk─▶ encode: audio ─┴─Feature─▶ align ─Window─▶ av_encode ─▶ fusion ─Event─▶ sink
//! ```
//!
//! The modules follow that flow, and their dependencies point one way: [`core`] (the types
//! every stage shares; imports no stage) ← the stages ([`source`], [`encode`], [`align`],
//! [`av_encode`], [`fusion`], [`sink`]; each owns its config and its `validate()`) ←
//! [`config`] (assembles the sections) ← [`pipeline`] (wires the stages with bounded
//! [`core::edge`]s, one thread per stage). The networks themselves live in the
//! `avsense-nn` crate, which knows nothing of GStreamer or the pipeline.
//!
//! Threads: the library runs one thread per stage and stream, and every model call on one
//! thread (candle's intra-op threads are set to 1 at start-up unless `RAYON_NUM_THREADS` is
//! set; see [`avsense_nn::set_default_threads`]). Nothing else
//! process-global is needed.
//!
//! ```no_run
//! use avsense::{Pipeline, PipelineConfig};
//! let cfg = PipelineConfig::for_input("clip.mp4", None)?;
//! let report = Pipeline::new(cfg)?.run()?;
//! println!("{} windows", report.streams[0].align.windows);
//! # Ok::<(), avsense::Error>(())
//! ```

pub mod align;
pub mod av_encode;
pub mod config;
pub mod core;
pub mod encode;
pub mod fusion;
pub mod http;
pub mod model_files;
pub mod pipeline;
pub mod rtsp_out;
pub mod sink;
pub mod snapshot;
pub mod source;

pub use crate::core::event::{Event, EventKind};
pub use config::{ConfigError, PipelineConfig};
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
    /// A model file or the device it runs on could not be used.
    #[error(transparent)]
    ModelFile(#[from] model_files::ModelFileError),
    /// A sink failed.
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    /// The fusion ontology map is invalid.
    #[error(transparent)]
    Ontology(#[from] fusion::av::ontology::OntologyError),
    /// Learned fusion weights could not be loaded.
    #[error(transparent)]
    FusionModel(#[from] avsense_nn::models::fusion::FusionModelError),
    /// GStreamer could not be initialised.
    #[error("{0}")]
    Init(String),
    /// A stage thread could not start or panicked.
    #[error("{0}")]
    Thread(String),
}
