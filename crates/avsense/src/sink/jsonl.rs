//! JSON Lines: one event per line, flushed per event so a consumer sees it at once.

use super::{EventSink, Phases, SinkError};
use crate::core::event::Event;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::Path;

/// Writes events as JSON Lines to stdout or a file.
pub struct JsonlSink {
    target: String,
    out: Box<dyn Write + Send>,
    phases: Phases,
}

impl JsonlSink {
    /// A sink on standard output.
    pub fn stdout() -> Self {
        Self {
            target: "stdout".into(),
            out: Box::new(std::io::stdout()),
            phases: Phases::ALL,
        }
    }

    /// A sink that creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let target = path.display().to_string();
        let file = std::fs::File::create(path).map_err(|source| SinkError::Io {
            target: target.clone(),
            source,
        })?;
        Ok(Self {
            target,
            out: Box::new(BufWriter::new(file)),
            phases: Phases::ALL,
        })
    }

    /// A sink on any writer (tests, in-memory consumers).
    pub fn to_writer(name: &str, w: Box<dyn Write + Send>) -> Self {
        Self {
            target: name.into(),
            out: w,
            phases: Phases::ALL,
        }
    }

    /// Writes only the lifecycle messages in `phases`.
    pub fn with_phases(mut self, phases: Phases) -> Self {
        self.phases = phases;
        self
    }

    fn map(&self, source: std::io::Error) -> SinkError {
        if source.kind() == ErrorKind::BrokenPipe {
            SinkError::Closed {
                target: self.target.clone(),
            }
        } else {
            SinkError::Io {
                target: self.target.clone(),
                source,
            }
        }
    }
}

impl EventSink for JsonlSink {
    fn target(&self) -> String {
        self.target.clone()
    }

    fn takes(&self, event: &Event) -> bool {
        self.phases.takes(event.phase)
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        let line = event.to_json_line();
        let r = writeln!(self.out, "{line}").and_then(|_| self.out.flush());
        r.map_err(|e| self.map(e))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let r = self.out.flush();
        r.map_err(|e| self.map(e))
    }
}
