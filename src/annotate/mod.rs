//! `avsense run --annotate out.mp4`: the input file again, with what the run perceived drawn
//! on every frame — each track's box with class, id and score, the speaking person's box
//! highlighted, a caption strip with the sounds heard and a line from each to its source's
//! box (or "off-screen") — with its audio, as MP4.
//!
//! ```text
//! scene    the run's per-frame tracks (tracks tap) and events → what one frame shows
//! draw     a scene → a transparent BGRA overlay of the frame's size
//! render   GStreamer: decode → overlaycomposition (asks `draw`) → x264enc → mp4mux (+ AAC)
//! ```
//!
//! A second pass over the file after the run (the run's tracks are kept in memory, a few
//! dozen bytes per track per frame): the annotations come from the very frames they are
//! drawn on, by their timestamps.

pub mod draw;
pub mod render;
pub mod scene;

use std::path::PathBuf;

/// Why an annotated video could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    /// Annotation needs one recorded file.
    #[error("--annotate {out}: {why}")]
    Input {
        /// The output asked for.
        out: PathBuf,
        /// What is wrong with the pipeline for it.
        why: String,
    },
    /// The font for the labels.
    #[error(transparent)]
    Font(#[from] crate::timeline::TimelineError),
    /// GStreamer failed.
    #[error("--annotate {out}: rendering {input} failed: {what}")]
    Render {
        /// The input file.
        input: PathBuf,
        /// The output.
        out: PathBuf,
        /// What failed.
        what: String,
    },
}
