//! The runtime: wires sources, encoders, aligner, the audio-visual encoder stage, the event
//! stage and the sinks with bounded edges, one thread per stage, and reports what happened.
//!
//! ```text
//! source ──frames──▶ video encoders ─┐
//!        ──audio───▶ audio encoders ─┴─features─▶ aligner ─windows─▶ [av_encode] ─▶ events ─┐
//! (one chain per [[source]]: `chain.rs`)                                                      ├─events─▶ sinks
//! ```
//!
//! [`encoders`] is the registry of the encoders a pipeline runs (one line each); [`report`]
//! what a run did.
//!
//! A source that fails is reported (an error in its [`StreamReport`] and a `source_error`
//! event); the other sources keep running. Shutdown is a closed channel: when a source
//! ends, each stage finishes its input, flushes, and drops its sender.

pub mod builder;
mod chain;
pub mod encoders;
pub mod monitor;
pub mod report;
pub mod sinks;

use crate::config::PipelineConfig;
use crate::core::edge::{edge, EdgePolicy, EdgeProbe, EdgeStats};
use crate::core::errors::one_line;
use crate::core::event::Event;
pub use crate::core::live::{LiveStats, LiveStream};
use crate::core::timing::ModelTimes;
use crate::core::window::WindowTap;
use crate::encode::video::faces::FaceStats;
use crate::encode::video::objects::DetectorStats;
use crate::fusion::av::learned::Loaded;
use crate::fusion::av::ontology::Ontology;
use crate::fusion::av::FusionStrategy;
use crate::sink::{EventSink, JsonlSink};
use crate::snapshot::{BestFrames, Snapshotter};
use crate::Error;
pub use builder::{PipelineBuilder, TracksTap};
pub use monitor::Monitor;
pub use report::{RunReport, SinkReport, SinkState, StreamProbe, StreamReport};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Capacity of the event edge into the sinks.
const INNER_CAPACITY: usize = 256;
/// Capacity of a stream's video-feature edge (frames: 2 s at 30 fps).
const VIDEO_FEATURE_CAPACITY: usize = 64;
/// Capacity of a stream's audio-feature edge (items of up to 0.5 s on recorded input, so
/// the aligner's skew bound is not undone by audio queued in front of it).
const AUDIO_FEATURE_CAPACITY: usize = 8;
/// Capacity of the window edges (aligner → active speaker → events: 16 s at the default hop).
const WINDOW_CAPACITY: usize = 32;

/// A configured pipeline, ready to start.
pub struct Pipeline {
    cfg: PipelineConfig,
    window_tap: Option<WindowTap>,
    tracks_tap: Option<TracksTap>,
    frame_tap: Option<crate::core::features::FrameTap>,
    /// Sinks the program gave the builder (beside the config's).
    own_sinks: Vec<Box<dyn EventSink>>,
    encoders: encoders::Registry,
    /// The AudioSet → COCO map, when association runs.
    ontology: Option<Arc<Ontology>>,
    learned: Option<Loaded>,
    times: ModelTimes,
    snapshots: Option<BestFrames>,
}

/// A started pipeline: watch it, stop it, wait for its report.
pub struct Running {
    started: Instant,
    chains: Vec<chain::Chain>,
    streams: Vec<StreamProbe>,
    edges: Vec<EdgeProbe>,
    sink: JoinHandle<sinks::SinkOutcome>,
    monitor: Monitor,
    models_off: Vec<String>,
}

fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, Error> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::Thread(format!("cannot start thread {name}: {e}")))
}

impl Pipeline {
    /// A pipeline for `cfg`: validates it (a config built in code is checked like a TOML
    /// one), loads every model it needs and checks the fusion's map and weights, so that a
    /// bad config or file refuses to start.
    pub fn new(cfg: PipelineConfig) -> Result<Self, Error> {
        cfg.validate(std::path::Path::new("<pipeline>"))?;
        avsense_nn::set_default_threads();
        crate::source::gst::init().map_err(Error::Init)?;
        let encoders = encoders::register(&cfg)?;
        // The ontology map is checked against YAMNet's classes now: a bad map refuses to
        // start rather than associate nonsense. Without the tagger there is nothing to map.
        let ontology = match (&encoders.tagger_names, cfg.fusion.strategy) {
            (Some(_), FusionStrategy::Off) | (None, _) => None,
            (Some(names), _) => Some(Arc::new(match &cfg.fusion.ontology {
                Some(p) => Ontology::load(p, names)?,
                None => Ontology::builtin(names)?,
            })),
        };
        // Learned fusion weights are checked now too (every tensor against the spec).
        let learned = match (cfg.fusion.strategy.learned(), &ontology) {
            (Some(kind), Some(_)) => {
                let device = cfg.models.device()?;
                Some(avsense_nn::models::fusion::load_weights(
                    kind,
                    cfg.fusion.weights.as_deref(),
                    &device,
                )?)
            }
            _ => None,
        };
        let snapshots = cfg
            .snapshots
            .enabled
            .then(|| BestFrames::new(cfg.snapshots.max_tracks));
        Ok(Self {
            cfg,
            window_tap: None,
            tracks_tap: None,
            frame_tap: None,
            own_sinks: Vec::new(),
            encoders,
            ontology,
            learned,
            times: ModelTimes::default(),
            snapshots,
        })
    }

    /// Calls `tap` with every aligned window, on the stream's event thread, before its
    /// events are decoded. Keep it cheap: it runs inside the pipeline.
    pub fn with_window_tap(mut self, tap: WindowTap) -> Self {
        self.window_tap = Some(tap);
        self
    }

    /// A pipeline built in code: sources, sinks, taps, then [`PipelineBuilder::build`].
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// Sees every video frame with its features (a live view's source; see
    /// [`crate::core::features::FrameTap`]); several taps are called in the order given.
    pub fn with_frame_tap(mut self, tap: crate::core::features::FrameTap) -> Self {
        self.frame_tap = Some(match self.frame_tap.take() {
            None => tap,
            Some(first) => Arc::new(
                move |frame: &crate::core::media::Frame,
                      f: &crate::core::features::VisionFeatures| {
                    first(frame, f);
                    tap(frame, f);
                },
            ),
        });
        self
    }

    /// Calls `tap` with each frame's tracks as soon as the video encoders are done with it.
    pub fn with_tracks_tap(mut self, tap: TracksTap) -> Self {
        self.tracks_tap = Some(tap);
        self
    }

    /// Starts with the config's sinks and the builder's (stdout when there are none).
    pub fn spawn(mut self) -> Result<Running, Error> {
        let own = std::mem::take(&mut self.own_sinks);
        let mut sinks = if own.is_empty() || !self.cfg.sinks.is_empty() {
            self.configured_sinks()?
        } else {
            Vec::new()
        };
        sinks.extend(own);
        self.start(sinks)
    }

    /// Its configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The sinks the config asks for (stdout when none).
    pub fn configured_sinks(&self) -> Result<Vec<Box<dyn EventSink>>, Error> {
        if self.cfg.sinks.is_empty() {
            return Ok(vec![Box::new(JsonlSink::stdout())]);
        }
        let ctx = crate::sink::SinkContext {
            pipeline: self.cfg.pipeline.name.clone(),
            streams: self.cfg.sources.iter().map(|s| s.name.clone()).collect(),
        };
        Ok(self
            .cfg
            .sinks
            .iter()
            .map(|s| s.open_for(&ctx))
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Starts every stage; events go to `sinks` (and to the builder's sinks, if any).
    pub fn start(mut self, mut sinks: Vec<Box<dyn EventSink>>) -> Result<Running, Error> {
        sinks.append(&mut self.own_sinks);
        let started = Instant::now();
        let (ev_tx, ev_rx, ev_probe) = edge::<Event>("events", INNER_CAPACITY, EdgePolicy::Block);
        let mut edges = vec![ev_probe];
        // The live streams' sources, to stamp their events with latency and wall time (set
        // once the chains exist; events wait on the edge until then).
        let all_streams: Arc<std::sync::OnceLock<Vec<StreamProbe>>> =
            Arc::new(std::sync::OnceLock::new());
        let sink_streams = Arc::clone(&all_streams);
        let snapshotter = self
            .snapshots
            .clone()
            .map(|b| Snapshotter::new(b, &self.cfg.snapshot_dir()));
        let sink = spawn("avsense-sink".into(), move || {
            sinks::run_sink_stage(sinks, ev_rx, sink_streams, snapshotter)
        })?;
        let mut chains = Vec::new();
        let mut streams = Vec::new();
        let tracks_tap = self.all_tracks_taps()?;
        let shared = chain::Shared {
            cfg: &self.cfg,
            encoders: &self.encoders,
            ontology: self.ontology.as_ref(),
            learned: self.learned.as_ref(),
            window_tap: self.window_tap.as_ref(),
            times: &self.times,
            snapshots: self.snapshots.as_ref(),
            tracks_tap: tracks_tap.as_ref(),
            frame_tap: self.frame_tap.as_ref(),
        };
        for src in self.cfg.sources.clone() {
            let (chain, probe) = chain::start(&shared, src, ev_tx.clone(), &mut edges)?;
            chains.push(chain);
            streams.push(probe);
        }
        drop(ev_tx);
        let _ = all_streams.set(streams.clone());
        let monitor = Monitor {
            started,
            streams: streams.clone(),
            edges: edges.clone(),
            latency: chains
                .iter()
                .map(|c| Arc::clone(&c.frame_latency))
                .collect(),
            detector_frames: chains
                .iter()
                .map(|c| Arc::clone(&c.detector_frames))
                .collect(),
            times: self.times.clone(),
        };
        Ok(Running {
            started,
            chains,
            streams,
            edges,
            sink,
            monitor,
            models_off: self.encoders.models_off.clone(),
        })
    }

    /// The program's tracks tap and those of the sinks that publish tracks (zenoh), as one.
    fn all_tracks_taps(&self) -> Result<Option<TracksTap>, Error> {
        let mut taps: Vec<TracksTap> = self.tracks_tap.iter().cloned().collect();
        #[cfg(feature = "zenoh")]
        for s in self
            .cfg
            .sinks
            .iter()
            .filter(|s| s.kind == crate::sink::SinkKind::Zenoh)
        {
            taps.push(crate::sink::zenoh::tracks_tap(&s.zenoh_settings())?);
        }
        Ok(match taps.len() {
            0 => None,
            1 => taps.pop(),
            _ => Some(Arc::new(
                move |stream: &str, t: f64, tr: &crate::encode::video::objects::Tracks| {
                    for tap in &taps {
                        tap(stream, t, tr);
                    }
                },
            )),
        })
    }

    /// Runs to completion with the configured sinks (and the builder's).
    pub fn run(self) -> Result<RunReport, Error> {
        self.spawn()?.wait()
    }
}

impl Running {
    /// The streams, to watch progress.
    pub fn streams(&self) -> &[StreamProbe] {
        &self.streams
    }

    /// A live view of the counters (fps, latency, model times), for dashboards; it stays
    /// readable after the run.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// The handle to feed the `push` source named `name` (None when there is no such
    /// push source). See [`crate::source::push`].
    pub fn input(&self, name: &str) -> Option<crate::source::push::PushInput> {
        self.chains
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.push.as_ref().map(|p| p.for_caller()))
    }

    /// Edge counters now.
    pub fn edge_stats(&self) -> Vec<EdgeStats> {
        self.edges.iter().map(EdgeProbe::stats).collect()
    }

    /// Asks every source to stop (end of stream): open events close, the report follows.
    pub fn stop(&self) {
        for s in &self.streams {
            s.source.stop();
        }
    }

    /// Whether every stage has finished.
    pub fn is_finished(&self) -> bool {
        self.sink.is_finished()
    }

    /// Waits for every stage and returns the report.
    pub fn wait(self) -> Result<RunReport, Error> {
        let mut reports: Vec<StreamReport> = Vec::new();
        for c in self.chains {
            let join_err = |stage: &str| {
                Error::Thread(format!("stream {}: the {stage} stage panicked", c.name))
            };
            let src = c.source.join().map_err(|_| join_err("source"))?;
            let mut error = src.result.as_ref().err().map(|e| one_line(e));
            for (stage, h) in [("video encoder", c.video), ("audio encoder", c.audio)] {
                if let Some(h) = h {
                    match h.join() {
                        Ok(Ok(())) => {}
                        // The encoder's error is the root cause of the source's flow error.
                        Ok(Err(e)) => error = Some(one_line(&e)),
                        Err(_) => error = Some(join_err(stage).to_string()),
                    }
                }
            }
            let align = c.align.join().map_err(|_| join_err("aligner"))?;
            if let Some(h) = c.av_encode {
                h.join().map_err(|_| join_err("av_encode"))?;
            }
            let events = c.events.join().map_err(|_| join_err("event"))?;
            reports.push(StreamReport {
                name: c.name,
                frames: src.frames,
                audio_seconds: src.audio_samples as f64 / crate::source::AUDIO_RATE as f64,
                modalities: src.modalities,
                declared_duration: src.declared_duration,
                media_seconds: src.media_end,
                align,
                events,
                latency: None,
                frame_latency: c.frame_latency.lock().ok().and_then(|l| l.0.stats()),
                detect_latency: c.frame_latency.lock().ok().and_then(|l| l.1.stats()),
                faces: c.counters.lock().ok().and_then(|c| {
                    c.get::<Arc<Mutex<FaceStats>>>()
                        .and_then(|f| f.lock().ok().map(|s| *s))
                }),
                detector: c.counters.lock().ok().and_then(|c| {
                    c.get::<Arc<Mutex<DetectorStats>>>()
                        .and_then(|f| f.lock().ok().map(|s| *s))
                }),
                error,
                warnings: src.warnings,
                live: src.live,
            });
        }
        let out = self
            .sink
            .join()
            .map_err(|_| Error::Thread("the sink stage panicked".into()))?;
        for r in reports.iter_mut() {
            r.latency = out.latency.get(&r.name).and_then(|l| l.stats());
        }
        let sink_error = out.sinks.iter().find_map(|s| match &s.state {
            SinkState::Failed(e) => Some(e.clone()),
            _ => None,
        });
        Ok(RunReport {
            streams: reports,
            edges: self.edges.iter().map(EdgeProbe::stats).collect(),
            events_written: out.written,
            wall_seconds: self.started.elapsed().as_secs_f64(),
            sink_error,
            sinks: out.sinks,
            models_off: self.models_off,
        })
    }
}
