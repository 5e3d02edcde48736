//! Building a pipeline in code: [`Pipeline::builder`].
//!
//! ```no_run
//! use avsense::source::{SourceConfig, SourceKind};
//! let mut cam = SourceConfig::new("cam", SourceKind::File);
//! cam.path = Some("clip.mp4".into());
//! let (builder, events) = avsense::Pipeline::builder().source(cam).event_channel(256);
//! let running = builder.build()?.spawn()?;
//! for e in events {
//!     println!("{}", e.to_json_line());
//! }
//! running.wait()?;
//! # Ok::<(), avsense::Error>(())
//! ```

use super::Pipeline;
use crate::config::PipelineConfig;
use crate::core::event::Event;
use crate::core::window::WindowTap;
use crate::encode::video::objects::Tracks;
use crate::fusion::av::FusionStrategy;
use crate::sink::{CallbackSink, EventSink, SinkError};
use crate::source::SourceConfig;
use crate::Error;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::encode::video::objects::TracksTap;

/// Builds a [`Pipeline`] in code.
pub struct PipelineBuilder {
    cfg: PipelineConfig,
    sinks: Vec<Box<dyn EventSink>>,
    window_tap: Option<WindowTap>,
    tracks_tap: Option<TracksTap>,
}

/// A sink that sends every message into a crossbeam channel (blocks when it is full, so
/// a slow reader slows the pipeline rather than losing events); a dropped receiver closes it.
struct ChannelSink(crossbeam_channel::Sender<Event>);

impl EventSink for ChannelSink {
    fn target(&self) -> String {
        "channel".into()
    }
    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        self.0.send(event.clone()).map_err(|_| SinkError::Closed {
            target: "channel".into(),
        })
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        Self::from_config(PipelineConfig::default())
    }
}

impl PipelineBuilder {
    /// Starts from `cfg` (e.g. one loaded from TOML) instead of the defaults.
    pub fn from_config(cfg: PipelineConfig) -> Self {
        Self {
            cfg,
            sinks: Vec::new(),
            window_tap: None,
            tracks_tap: None,
        }
    }

    /// Adds an input.
    pub fn source(mut self, source: SourceConfig) -> Self {
        self.cfg.sources.push(source);
        self
    }

    /// Adds a sink of the program's own.
    pub fn sink(mut self, sink: impl EventSink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Calls `f` with every lifecycle message (on the sink thread).
    pub fn on_event(self, f: impl FnMut(&Event) + Send + 'static) -> Self {
        self.sink(CallbackSink(f))
    }

    /// Every lifecycle message into a bounded channel; the receiver ends when the run has.
    pub fn event_channel(self, capacity: usize) -> (Self, crossbeam_channel::Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        (self.sink(ChannelSink(tx)), rx)
    }

    /// The association strategy (`rules`, `gnn`, …; `Off` for none).
    pub fn fusion(mut self, strategy: FusionStrategy) -> Self {
        self.cfg.fusion.strategy = strategy;
        self
    }

    /// Where the model files are (default: [`crate::model_files::default_dir`]).
    pub fn models_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.models.dir = Some(dir.into());
        self
    }

    /// Gives the model file `rel` (its path under the model directory, as
    /// `models/manifest.toml` names it: `human-models/nanodet.json`,
    /// `human-models/nanodet.bin`, `yamnet/yamnet.tflite`, …) as bytes, e.g. compiled into
    /// the program with `include_bytes!`: the encoders load it from memory instead of the
    /// disk, verified against the manifest's pin like a file. Files not given are still read
    /// from the model directory.
    pub fn model_bytes(
        mut self,
        rel: impl Into<String>,
        bytes: impl Into<std::sync::Arc<[u8]>>,
    ) -> Self {
        self.cfg.models.bytes.insert(rel, bytes);
        self
    }

    /// Changes anything else in the config.
    pub fn configure(mut self, f: impl FnOnce(&mut PipelineConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// Sees every aligned window (see [`Pipeline::with_window_tap`]).
    pub fn window_tap(mut self, tap: WindowTap) -> Self {
        self.window_tap = Some(tap);
        self
    }

    /// Sees every frame's tracks without waiting for a window (see [`TracksTap`]).
    pub fn tracks_tap(mut self, tap: impl Fn(&str, f64, &Tracks) + Send + Sync + 'static) -> Self {
        self.tracks_tap = Some(Arc::new(tap));
        self
    }

    /// Validates the config and loads the models (see [`Pipeline::new`]). Sinks given here
    /// go with it; when there are none and the config names none either, events go to stdout.
    pub fn build(self) -> Result<Pipeline, Error> {
        let mut p = Pipeline::new(self.cfg)?;
        p.own_sinks = self.sinks;
        p.window_tap = self.window_tap;
        p.tracks_tap = self.tracks_tap;
        Ok(p)
    }
}
