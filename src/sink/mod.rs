//! Event sinks: where perception events go (JSON Lines on stdout or into a file today;
//! MQTT, overlays and callbacks later).

pub mod jsonl;

use crate::event::Event;
pub use jsonl::JsonlSink;

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
