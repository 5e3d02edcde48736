//! Event sinks: where perception events go (JSON Lines on stdout or into a file today;
//! MQTT, overlays and callbacks later).

pub mod jsonl;

use crate::core::event::Event;
use crate::core::settings::{check, Invalid};
pub use jsonl::JsonlSink;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where events go.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON Lines on standard output.
    Stdout,
    /// JSON Lines appended to a file (`path`).
    Jsonl,
}

/// `[[sink]]`: one event sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `stdout` or `jsonl`.
    pub kind: SinkKind,
    /// Output file for `jsonl`; relative paths are relative to the working directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl SinkConfig {
    /// Checks this sink's keys (named relative to the sink, e.g. `path`).
    pub fn validate(&self) -> Result<(), Invalid> {
        check(
            self.kind != SinkKind::Jsonl || self.path.is_some(),
            "path",
            "(missing)",
            "an output file for kind = \"jsonl\"",
        )
    }

    /// Opens the sink.
    pub fn open(&self) -> Result<Box<dyn EventSink>, SinkError> {
        Ok(match (self.kind, &self.path) {
            (SinkKind::Stdout, _) | (SinkKind::Jsonl, None) => Box::new(JsonlSink::stdout()),
            (SinkKind::Jsonl, Some(p)) => Box::new(JsonlSink::create(p)?),
        })
    }
}

/// Errors of a sink; the message names the sink and its target.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output could not be opened or written.
    #[error("sink {target}: {source}")]
    Io {
        /// The target (`stdout` or the file path).
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The reader of stdout went away (`avsense … | head`): a normal stop, not a failure.
    #[error("sink {target}: the reader closed the pipe")]
    Closed {
        /// The target.
        target: String,
    },
}

/// Something that takes events.
pub trait EventSink: Send {
    /// Writes one event.
    fn write(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Flushes buffered output.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// A callback sink, for applications that embed the pipeline.
pub struct CallbackSink<F: FnMut(&Event) + Send>(pub F);

impl<F: FnMut(&Event) + Send> EventSink for CallbackSink<F> {
    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        (self.0)(event);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
