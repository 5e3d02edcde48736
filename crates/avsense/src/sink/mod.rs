//! Event sinks: where perception events go (JSON Lines on stdout or into a file today;
//! MQTT, overlays and callbacks later).

pub mod jsonl;

use crate::core::event::Event;
use crate::core::settings::{check, Invalid};
pub use jsonl::JsonlSink;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// Overwrite an existing file that is not an avsense JSON Lines file (default false:
    /// such a file is refused, so a typo cannot destroy a video or a config).
    #[serde(default)]
    pub force: bool,
}

/// Whether `a` and `b` name the same file (both exist and resolve to one path).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses to truncate `path` when it exists, is not empty and does not start like an
/// avsense JSON Lines file, unless `force`.
fn check_overwrite(path: &Path, force: bool) -> Result<(), SinkError> {
    if force {
        return Ok(());
    }
    let refused = |reason: &str| SinkError::Refused {
        target: path.display().to_string(),
        reason: reason.to_string(),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()), // nothing there yet
    };
    if meta.is_dir() {
        return Err(refused("it is a directory"));
    }
    if !meta.is_file() || meta.len() == 0 {
        return Ok(()); // a device (/dev/null, a FIFO) or an empty file
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|source| SinkError::Io {
            target: path.display().to_string(),
            source,
        })?;
    if head[..n].starts_with(b"{\"schema\":\"avsense.event/") {
        return Ok(());
    }
    Err(refused(
        "the file exists and is not an avsense JSON Lines file (pass --force, or force = true in its [[sink]], to overwrite it)",
    ))
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
            (SinkKind::Jsonl, Some(p)) => {
                check_overwrite(p, self.force)?;
                Box::new(JsonlSink::create(p)?)
            }
        })
    }
}

/// Errors of a sink; the message names the sink and its target.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output could not be opened or written.
    #[error("sink {target}")]
    Io {
        /// The target (`stdout` or the file path).
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The target exists and is not ours to overwrite.
    #[error("sink {target}: refusing to overwrite: {reason}")]
    Refused {
        /// The target.
        target: String,
        /// Why.
        reason: String,
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
    /// What the sink writes to (`stdout`, a path), for reports and errors.
    fn target(&self) -> String {
        "callback".into()
    }
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
