//! The runtime: wires sources, encoders, aligner, event stage and sinks with bounded edges,
//! one thread per stage, and reports what happened.
//!
//! ```text
//! source ──frames──▶ video encoders ─┐
//!        ──audio───▶ audio encoders ─┴─features─▶ aligner ─windows─▶ events ─┐
//! (one chain per [[source]])                                                  ├─events─▶ sinks
//! ```
//!
//! A source that fails is reported (an error in its [`StreamReport`] and a `source_error`
//! event); the other sources keep running. Shutdown is a closed channel: when a source
//! ends, each stage finishes its input, flushes, and drops its sender.

use crate::align::{run_align_stage, AlignConfig, AlignStats, Aligner};
use crate::channel::{edge, EdgePolicy, EdgeProbe, EdgeSender, EdgeStats};
use crate::clock::Duration;
use crate::config::{DeviceChoice, PipelineConfig, SinkKind, SourceConfig, Toggle};
use crate::encode::{
    run_audio_stage, run_video_stage, AudioEncoder, EncodeError, LogMelFrontEnd, MotionEncoder,
    VideoEncoder,
};
use crate::event::Event;
use crate::event::EventKind;
use crate::fusion::{run_event_stage, EventStage, EventStats};
use crate::sink::{EventSink, JsonlSink, SinkError};
use crate::source::gst::{SourceOutputs, SourceProbe};
use crate::source::{GstSource, Modality, SourceReport, VideoSpec};
use crate::Error;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Capacity of the edges downstream of the encoders (features, windows, events).
const INNER_CAPACITY: usize = 256;

/// What one stream did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamReport {
    /// Stream (source) name.
    pub name: String,
    /// Frames decoded and analysed.
    pub frames: u64,
    /// Seconds of audio decoded and analysed (16 kHz samples / 16000).
    pub audio_seconds: f64,
    /// Modalities the input had.
    pub modalities: Vec<Modality>,
    /// The container's declared duration, seconds.
    pub declared_duration: Option<f64>,
    /// How far the media got, seconds.
    pub media_seconds: f64,
    /// Aligner counters.
    pub align: AlignStats,
    /// Event stage counters.
    pub events: EventStats,
    /// Live streams: capture → event latency (None for files or without events).
    pub latency: Option<crate::latency::LatencyStats>,
    /// Live streams: capture of a frame → its features leaving the video encoders, every
    /// frame (None for files).
    pub frame_latency: Option<crate::latency::LatencyStats>,
    /// The same over the frames the detector ran on.
    pub detect_latency: Option<crate::latency::LatencyStats>,
    /// The face encoder's counters (when the active speaker runs).
    pub faces: Option<crate::encode::faces::FaceStats>,
    /// Why the stream failed, if it did.
    pub error: Option<String>,
    /// Live sources: outages, reconnects, the microphone's clock.
    pub live: crate::source::gst::LiveStats,
}

/// What a whole run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// Per stream.
    pub streams: Vec<StreamReport>,
    /// Per edge.
    pub edges: Vec<EdgeStats>,
    /// Events written to the sinks.
    pub events_written: u64,
    /// Wall-clock seconds from start to the last event flushed.
    pub wall_seconds: f64,
    /// A sink failure, if any (a closed stdout pipe is not one).
    pub sink_error: Option<String>,
}

impl RunReport {
    /// Media seconds processed per wall second (the longest stream counts).
    pub fn realtime_factor(&self) -> f64 {
        let media = self
            .streams
            .iter()
            .map(|s| s.media_seconds)
            .fold(0.0, f64::max);
        if self.wall_seconds > 0.0 {
            media / self.wall_seconds
        } else {
            0.0
        }
    }

    /// The first error of any stream or sink, as one line.
    pub fn first_error(&self) -> Option<String> {
        self.streams
            .iter()
            .find_map(|s| s.error.clone())
            .or_else(|| self.sink_error.clone())
    }

    /// Items dropped on all edges.
    pub fn dropped(&self) -> u64 {
        self.edges.iter().map(|e| e.dropped).sum()
    }
}

/// A live view of one stream while the pipeline runs.
#[derive(Debug, Clone)]
pub struct StreamProbe {
    /// Stream name.
    pub name: String,
    /// Whether it is a live source.
    pub live: bool,
    /// Its source's counters.
    pub source: SourceProbe,
}

struct Chain {
    name: String,
    source: JoinHandle<SourceReport>,
    video: Option<JoinHandle<Result<(), EncodeError>>>,
    audio: Option<JoinHandle<Result<(), EncodeError>>>,
    align: JoinHandle<AlignStats>,
    events: JoinHandle<EventStats>,
    /// Per-frame latency: (every frame, detector frames).
    frame_latency: FrameLatency,
    /// The face encoder's counters (active speaker).
    faces: Option<Arc<Mutex<crate::encode::faces::FaceStats>>>,
}

type FrameLatency = Arc<
    Mutex<(
        crate::latency::LatencyRecorder,
        crate::latency::LatencyRecorder,
    )>,
>;

/// A callback that sees every aligned window (for embedding applications and tests).
pub type WindowTap = Arc<dyn Fn(&crate::align::Window) + Send + Sync>;

/// A configured pipeline, ready to start.
pub struct Pipeline {
    cfg: PipelineConfig,
    window_tap: Option<WindowTap>,
    models: LoadedModels,
    /// The AudioSet → COCO map, when association runs.
    ontology: Option<Arc<crate::fusion::ontology::Ontology>>,
    learned: Option<crate::fusion::learned::Loaded>,
}

/// The neural models, loaded once and shared by every stream (each stream gets its own
/// recurrent state).
#[derive(Default)]
struct LoadedModels {
    vad: Option<crate::encode::models::silero::SileroVad>,
    tagger: Option<(crate::encode::models::yamnet::Yamnet, Arc<Vec<String>>)>,
    detector: Option<crate::encode::models::nanodet::NanoDet>,
    /// BlazeFace and Light-ASD, when the active speaker runs.
    speaker: Option<(
        crate::encode::models::blazeface::BlazeFace,
        crate::encode::models::lightasd::LightAsd,
    )>,
}

/// The candle device the config asks for.
pub fn select_device(choice: DeviceChoice) -> Result<candle_core::Device, Error> {
    let load = |reason: String| {
        Error::Encode(EncodeError::Load {
            encoder: "device",
            reason,
        })
    };
    match choice {
        DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
        DeviceChoice::Auto => candle_core::Device::cuda_if_available(0).map_err(|e| load(e.to_string())),
        DeviceChoice::Cuda => candle_core::Device::new_cuda(0)
            .map_err(|e| load(format!("[models] device = \"cuda\": {e} (build with --features cuda on a machine with a GPU)"))),
    }
}

/// Resolves an encoder's model file under its toggle: `Some(path)` to load, `None` to skip.
fn model_file(
    cfg: &PipelineConfig,
    toggle: Toggle,
    encoder: &'static str,
    rel: &str,
) -> Result<Option<std::path::PathBuf>, Error> {
    if toggle == Toggle::Off {
        return Ok(None);
    }
    let dir = cfg
        .models
        .dir
        .clone()
        .unwrap_or_else(crate::models::default_dir);
    let path = dir.join(rel);
    if path.is_file() {
        return Ok(Some(path));
    }
    match toggle {
        Toggle::On => Err(Error::Encode(EncodeError::Load {
            encoder,
            reason: format!(
                "{} not found (run `avsense models fetch`, or set [models] dir)",
                path.display()
            ),
        })),
        _ => {
            tracing::warn!(
                "{encoder}: {} not found, the encoder is off (run `avsense models fetch`)",
                path.display()
            );
            Ok(None)
        }
    }
}

fn load_models(cfg: &PipelineConfig) -> Result<LoadedModels, Error> {
    let mut m = LoadedModels::default();
    let wants_audio = cfg.audio.enabled && cfg.sources.iter().any(|s| s.audio);
    if wants_audio {
        if let Some(path) =
            model_file(cfg, cfg.vad.mode, "silero-vad", "silero-vad/silero_vad.jit")?
        {
            let device = select_device(cfg.models.device)?;
            let vad = crate::encode::models::silero::SileroVad::load_jit(&path, &device).map_err(
                |e| {
                    Error::Encode(EncodeError::Load {
                        encoder: "silero-vad",
                        reason: e.to_string(),
                    })
                },
            )?;
            m.vad = Some(vad);
        }
        if let Some(path) = model_file(cfg, cfg.tagger.mode, "yamnet", "yamnet/yamnet.tflite")? {
            let load = |reason: String| {
                Error::Encode(EncodeError::Load {
                    encoder: "yamnet",
                    reason,
                })
            };
            let device = select_device(cfg.models.device)?;
            let model = crate::encode::models::yamnet::Yamnet::from_tflite(&path, &device)
                .map_err(|e| load(e.to_string()))?;
            let names = crate::encode::models::yamnet::load_class_names(
                &path.with_file_name("yamnet_class_map.csv"),
            )
            .map_err(|e| load(e.to_string()))?;
            m.tagger = Some((model, Arc::new(names)));
        }
    }
    let wants_video = cfg.sources.iter().any(|s| s.video);
    if wants_video {
        if let Some(path) = model_file(
            cfg,
            cfg.detector.mode,
            "nanodet",
            "human-models/nanodet.json",
        )? {
            let device = select_device(cfg.models.device)?;
            let d = &cfg.detector;
            let ncfg = crate::encode::models::nanodet::NanoDetConfig {
                score_threshold: d.score_threshold,
                iou_threshold: d.iou_threshold,
                embeddings: d.embeddings,
                resize: d.resize,
                ..Default::default()
            };
            let det = crate::encode::models::nanodet::NanoDet::load_with(&path, &device, ncfg)
                .map_err(|e| {
                    Error::Encode(EncodeError::Load {
                        encoder: "nanodet",
                        reason: e.to_string(),
                    })
                })?;
            m.detector = Some(det);
        }
    }
    // The active speaker needs video and audio in one source, and both of its models.
    let av_source = cfg.sources.iter().any(|s| s.video && s.audio) && cfg.audio.enabled;
    if av_source && cfg.speaker.mode != Toggle::Off {
        let face = model_file(
            cfg,
            cfg.speaker.mode,
            "blazeface",
            "human-models/blazeface.json",
        )?;
        let asd = model_file(
            cfg,
            cfg.speaker.mode,
            "light-asd",
            cfg.speaker.weights.file(),
        )?;
        if let (Some(face), Some(asd)) = (face, asd) {
            let device = select_device(cfg.models.device)?;
            let bcfg = crate::encode::models::blazeface::BlazeFaceConfig {
                score_threshold: cfg.speaker.face_score,
                max_faces: cfg.speaker.max_faces.max(1) * 2,
                ..Default::default()
            };
            let bf = crate::encode::models::blazeface::BlazeFace::load_with(&face, &device, bcfg)
                .map_err(|e| {
                Error::Encode(EncodeError::Load {
                    encoder: "blazeface",
                    reason: e.to_string(),
                })
            })?;
            let model =
                crate::encode::models::lightasd::LightAsd::load(&asd, &device).map_err(|e| {
                    Error::Encode(EncodeError::Load {
                        encoder: "light-asd",
                        reason: e.to_string(),
                    })
                })?;
            m.speaker = Some((bf, model));
        }
    }
    Ok(m)
}

/// A started pipeline: watch it, stop it, wait for its report.
pub struct Running {
    started: Instant,
    chains: Vec<Chain>,
    streams: Vec<StreamProbe>,
    edges: Vec<EdgeProbe>,
    sink: JoinHandle<SinkOutcome>,
}

/// What the sink stage returns: events written, a failure, latency per live stream.
type SinkOutcome = (
    u64,
    Option<SinkError>,
    std::collections::HashMap<String, crate::latency::LatencyRecorder>,
);

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
    /// A pipeline for a validated config.
    pub fn new(cfg: PipelineConfig) -> Result<Self, Error> {
        crate::source::gst::init().map_err(Error::Init)?;
        let models = load_models(&cfg)?;
        // The ontology map is checked against YAMNet's classes now: a bad map refuses to
        // start rather than associate nonsense. Without the tagger there is nothing to map.
        let ontology = match (&models.tagger, cfg.fusion.strategy) {
            (Some(_), crate::fusion::av::FusionStrategy::Off) | (None, _) => None,
            (Some((_, names)), _) => Some(Arc::new(match &cfg.fusion.ontology {
                Some(p) => crate::fusion::ontology::Ontology::load(p, names)?,
                None => crate::fusion::ontology::Ontology::builtin(names)?,
            })),
        };
        // Learned fusion weights are checked now too (every tensor against the spec).
        let learned = match (cfg.fusion.strategy.learned(), &ontology) {
            (Some(kind), Some(_)) => {
                let device = select_device(cfg.models.device)?;
                Some(crate::fusion::train::load_weights(
                    kind,
                    cfg.fusion.weights.as_deref(),
                    &device,
                )?)
            }
            _ => None,
        };
        Ok(Self {
            cfg,
            window_tap: None,
            models,
            ontology,
            learned,
        })
    }

    /// Calls `tap` with every aligned window, on the stream's event thread, before its
    /// events are decoded. Keep it cheap: it runs inside the pipeline.
    pub fn with_window_tap(mut self, tap: WindowTap) -> Self {
        self.window_tap = Some(tap);
        self
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
        let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
        for s in &self.cfg.sinks {
            match (s.kind, &s.path) {
                (SinkKind::Stdout, _) => sinks.push(Box::new(JsonlSink::stdout())),
                (SinkKind::Jsonl, Some(p)) => sinks.push(Box::new(JsonlSink::create(p)?)),
                // `validate` rejects a jsonl sink without a path.
                (SinkKind::Jsonl, None) => {}
            }
        }
        Ok(sinks)
    }

    /// Starts every stage; events go to `sinks`.
    pub fn start(self, mut sinks: Vec<Box<dyn EventSink>>) -> Result<Running, Error> {
        let started = Instant::now();
        let (ev_tx, ev_rx, ev_probe) = edge::<Event>("events", INNER_CAPACITY, EdgePolicy::Block);
        let mut edges = vec![ev_probe];
        // The live streams' sources, to stamp their events with latency and wall time (set
        // once the chains exist; events wait on the edge until then).
        let live: Arc<std::sync::OnceLock<Vec<(String, crate::source::gst::SourceProbe)>>> =
            Arc::new(std::sync::OnceLock::new());
        let live_sink = Arc::clone(&live);
        let sink = spawn("avsense-sink".into(), move || {
            let mut written = 0u64;
            let mut latency: std::collections::HashMap<String, crate::latency::LatencyRecorder> =
                std::collections::HashMap::new();
            while let Some(mut e) = ev_rx.recv() {
                let origin = live_sink.get().and_then(|l| {
                    l.iter()
                        .find(|(n, _)| *n == e.stream)
                        .and_then(|(_, p)| p.clock_origin())
                });
                if let Some(origin) = origin {
                    let ms = crate::latency::stamp(&mut e, origin);
                    // Perception latency only: a source's own reports are not detections.
                    if !matches!(e.kind, EventKind::SourceError | EventKind::StreamGap) {
                        latency.entry(e.stream.clone()).or_default().record(ms);
                    }
                }
                for s in sinks.iter_mut() {
                    match s.write(&e) {
                        Ok(()) => {}
                        // The reader went away: stop writing, let the pipeline wind down.
                        Err(SinkError::Closed { .. }) => return (written, None, latency),
                        Err(err) => return (written, Some(err), latency),
                    }
                }
                written += 1;
            }
            for s in sinks.iter_mut() {
                if let Err(err) = s.flush() {
                    if !matches!(err, SinkError::Closed { .. }) {
                        return (written, Some(err), latency);
                    }
                }
            }
            (written, None, latency)
        })?;
        let mut chains = Vec::new();
        let mut streams = Vec::new();
        for src in self.cfg.sources.clone() {
            let (chain, probe) = self.start_chain(src, ev_tx.clone(), &mut edges)?;
            chains.push(chain);
            streams.push(probe);
        }
        drop(ev_tx);
        let _ = live.set(
            streams
                .iter()
                .filter(|p: &&StreamProbe| p.live)
                .map(|p| (p.name.clone(), p.source.clone()))
                .collect(),
        );
        Ok(Running {
            started,
            chains,
            streams,
            edges,
            sink,
        })
    }

    fn start_chain(
        &self,
        src: SourceConfig,
        ev_tx: EdgeSender<Event>,
        edges: &mut Vec<EdgeProbe>,
    ) -> Result<(Chain, StreamProbe), Error> {
        let cfg = &self.cfg;
        let name = src.name.clone();
        let stream: Arc<str> = Arc::from(name.as_str());
        let policy = src.effective_policy();

        let mut video_encoders: Vec<Box<dyn VideoEncoder>> = Vec::new();
        // The detector's input (fixed-size RGB) is the frame every video encoder gets when
        // it runs; motion reads its luma. Without it, motion's small grayscale frames.
        let mut spec = VideoSpec {
            width: cfg.motion.width,
            height: None,
            format: crate::source::PixelFormat::Gray8,
        };
        if src.video {
            if let Some(det) = &self.models.detector {
                let enc = crate::encode::vision::ObjectEncoder::new(
                    Box::new(det.clone()),
                    cfg.tracker,
                    cfg.detector.class_ids(),
                    Duration::from_secs_f64(if cfg.detector.fps > 0.0 {
                        1.0 / cfg.detector.fps
                    } else {
                        0.0
                    }),
                );
                spec = enc.input_spec();
                video_encoders.push(Box::new(enc));
            }
        }
        // The active speaker: faces and crops after the objects (faces are tied to person
        // tracks), on RGB frames wide enough for the crops.
        let speaker = match &self.models.speaker {
            Some((bf, asd)) if src.video && src.audio && cfg.audio.enabled => {
                let width = spec.width.max(cfg.speaker.width);
                let enc = crate::encode::faces::FaceEncoder::new(
                    Box::new(bf.clone()),
                    cfg.speaker.face_config(),
                    width,
                );
                spec = enc.input_spec();
                let stats = enc.stats();
                video_encoders.push(Box::new(enc));
                Some((asd.clone(), stats))
            }
            _ => None,
        };
        if src.video && cfg.motion.enabled {
            video_encoders.push(Box::new(MotionEncoder::new(cfg.motion.clone())));
        }
        let mut audio_encoders: Vec<Box<dyn AudioEncoder>> = Vec::new();
        if src.audio && cfg.audio.enabled {
            if let Some(vad) = &self.models.vad {
                let stream_vad = vad.new_stream().map_err(|e| {
                    Error::Encode(EncodeError::Load {
                        encoder: "silero-vad",
                        reason: e.to_string(),
                    })
                })?;
                audio_encoders.push(Box::new(crate::encode::speech::SpeechEncoder::new(
                    stream_vad,
                )));
            }
            if let Some((model, names)) = &self.models.tagger {
                audio_encoders.push(Box::new(crate::encode::tagger::TaggerEncoder::new(
                    model.clone(),
                    Arc::clone(names),
                )));
            }
            if speaker.is_some() {
                audio_encoders.push(Box::new(crate::encode::mfcc_encoder::MfccEncoder::new()));
            }
        }
        let want_video = !video_encoders.is_empty();
        let want_audio = src.audio && cfg.audio.enabled;
        let mut source_cfg = src.clone();
        source_cfg.video = want_video;
        source_cfg.audio = want_audio;
        if !want_video && !want_audio {
            return Err(Error::Config(crate::config::ConfigError::Invalid {
                path: "<pipeline>".into(),
                key: format!("source {name}"),
                value: "no enabled encoder".into(),
                expected:
                    "video with [motion] or [detector] enabled, or audio with [audio] enabled"
                        .into(),
            }));
        }

        let (feat_tx, feat_rx, p) = edge(
            format!("{name}/features"),
            INNER_CAPACITY,
            EdgePolicy::Block,
        );
        edges.push(p);
        let mut outputs = SourceOutputs {
            video: None,
            audio: None,
            events: Some(ev_tx.clone()),
        };
        let mut expect = Vec::new();
        let gst_source = GstSource::new(source_cfg, spec);
        let frame_latency: FrameLatency = Arc::default();
        let video = if want_video {
            let (tx, rx, p) = edge(format!("{name}/frames"), src.capacity, policy);
            edges.push(p);
            outputs.video = Some(tx);
            expect.push(Modality::Video);
            let ftx = feat_tx.clone();
            let lat = Arc::clone(&frame_latency);
            let probe = gst_source.probe();
            let live = src.is_live();
            Some(spawn(format!("{name}-video"), move || {
                run_video_stage(video_encoders, rx, ftx, move |f| {
                    // Live: capture (the frame's PTS on the pipeline clock) → features out.
                    let Some(origin) = probe.clock_origin().filter(|_| live) else {
                        return;
                    };
                    let now = crate::latency::clock_now_ns();
                    let ms = (now as f64 - (origin + f.pts.0) as f64) / 1e6;
                    if let Ok(mut l) = lat.lock() {
                        l.0.record(ms);
                        if f.detected {
                            l.1.record(ms);
                        }
                    }
                })
            })?)
        } else {
            None
        };
        let audio = if want_audio {
            let (tx, rx, p) = edge(format!("{name}/audio"), src.capacity, policy);
            edges.push(p);
            outputs.audio = Some(tx);
            expect.push(Modality::Audio);
            let ftx = feat_tx.clone();
            Some(spawn(format!("{name}-audio"), move || {
                run_audio_stage(LogMelFrontEnd::new(), audio_encoders, rx, ftx)
            })?)
        } else {
            None
        };
        drop(feat_tx);

        let align_cfg = AlignConfig {
            window: Duration::from_secs_f64(cfg.pipeline.window),
            hop: Duration::from_secs_f64(cfg.pipeline.hop),
            lateness: Duration::from_secs_f64(cfg.pipeline.lateness),
            live: src.is_live(),
        };
        let aligner = Aligner::new(Arc::clone(&stream), align_cfg, &expect);
        let (win_tx, win_rx, p) =
            edge(format!("{name}/windows"), INNER_CAPACITY, EdgePolicy::Block);
        edges.push(p);
        let align = spawn(format!("{name}-align"), move || {
            run_align_stage(aligner, feat_rx, win_tx)
        })?;

        // The source's verdict reaches the event stage after its last window, so a failure
        // is reported after the events that came before it (GStreamer may close the edges
        // on end-of-stream before the source has checked the stream for truncation).
        let (verdict_tx, verdict_rx) = crossbeam_channel::bounded::<Option<String>>(1);
        let mut stage = EventStage::new(&name, cfg);
        if let Some(o) = &self.ontology {
            stage = stage.with_fusion(cfg.fusion.clone(), Arc::clone(o), self.learned.clone());
        }
        let face_stats = speaker.as_ref().map(|(_, s)| Arc::clone(s));
        if let Some((asd, _)) = speaker {
            stage = stage.with_speaker(crate::fusion::speaker::SpeakerStage::new(
                asd,
                &cfg.speaker,
                want_audio,
                self.models.vad.is_some(),
            ));
        }
        let tap = self.window_tap.clone();
        let events = spawn(format!("{name}-events"), move || {
            run_event_stage(stage, win_rx, ev_tx, tap, move || {
                verdict_rx.recv().ok().flatten()
            })
        })?;

        let probe = StreamProbe {
            name: name.clone(),
            live: src.is_live(),
            source: gst_source.probe(),
        };
        let source = spawn(format!("{name}-source"), move || {
            let report = gst_source.run(outputs);
            let _ = verdict_tx.send(report.result.as_ref().err().map(|e| e.to_string()));
            report
        })?;
        Ok((
            Chain {
                name,
                source,
                video,
                audio,
                align,
                events,
                frame_latency,
                faces: face_stats,
            },
            probe,
        ))
    }

    /// Runs to completion with the configured sinks.
    pub fn run(self) -> Result<RunReport, Error> {
        let sinks = self.configured_sinks()?;
        self.start(sinks)?.wait()
    }
}

impl Running {
    /// The streams, to watch progress.
    pub fn streams(&self) -> &[StreamProbe] {
        &self.streams
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
            let mut error = src.result.as_ref().err().map(|e| e.to_string());
            for (stage, h) in [("video encoder", c.video), ("audio encoder", c.audio)] {
                if let Some(h) = h {
                    match h.join() {
                        Ok(Ok(())) => {}
                        // The encoder's error is the root cause of the source's flow error.
                        Ok(Err(e)) => error = Some(e.to_string()),
                        Err(_) => error = Some(join_err(stage).to_string()),
                    }
                }
            }
            let align = c.align.join().map_err(|_| join_err("aligner"))?;
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
                faces: c.faces.as_ref().and_then(|f| f.lock().ok().map(|s| *s)),
                error,
                live: src.live,
            });
        }
        let (written, sink_err, latency) = self
            .sink
            .join()
            .map_err(|_| Error::Thread("the sink stage panicked".into()))?;
        for r in reports.iter_mut() {
            r.latency = latency.get(&r.name).and_then(|l| l.stats());
        }
        Ok(RunReport {
            streams: reports,
            edges: self.edges.iter().map(EdgeProbe::stats).collect(),
            events_written: written,
            wall_seconds: self.started.elapsed().as_secs_f64(),
            sink_error: sink_err.map(|e| e.to_string()),
        })
    }
}
