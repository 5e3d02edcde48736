//! One stream's chain of stages, each on its own thread:
//!
//! ```text
//! source ──frames──▶ video encoders ─┐
//!        ──audio───▶ audio encoders ─┴─features─▶ aligner ─windows─▶ [av_encode] ─▶ events ─▶ (sink edge)
//! ```
//!
//! `av_encode` (Light-ASD) sits in the chain only when the active speaker runs.

use super::encoders::Registry;
use super::report::StreamProbe;
use super::{spawn, AUDIO_FEATURE_CAPACITY, VIDEO_FEATURE_CAPACITY, WINDOW_CAPACITY};
use crate::align::{run_align_stage, AlignConfig, AlignStats, Aligner};
use crate::av_encode::{run_av_encode_stage, AsdStage};
use crate::config::PipelineConfig;
use crate::core::clock::Duration;
use crate::core::edge::{edge, EdgePolicy, EdgeProbe, EdgeSender};
use crate::core::errors::one_line;
use crate::core::event::{Event, SourceVerdict};
use crate::core::features::Extensions;
use crate::core::latency::{clock_now_ns, LatencyRecorder};
use crate::core::media::{Modality, PixelFormat, VideoSpec};
use crate::core::timing::ModelTimes;
use crate::core::window::WindowTap;
use crate::encode::audio::logmel::LogMelFrontEnd;
use crate::encode::video::objects::Tracks;
use crate::encode::{
    negotiate, run_audio_stage, run_video_stage, Batching, EncodeError, StreamInfo,
};
use crate::fusion::av::learned::Loaded;
use crate::fusion::av::ontology::Ontology;
use crate::fusion::lifecycle::Lifecycle;
use crate::fusion::speaker::SpeakerStage;
use crate::fusion::{run_event_stage, EventStage, EventStats};
use crate::snapshot::BestFrames;
use crate::source::gst::SourceOutputs;
use crate::source::{GstSource, SourceConfig, SourceReport};
use crate::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Per-frame latency: (every frame, detector frames).
pub(super) type FrameLatency = Arc<Mutex<(LatencyRecorder, LatencyRecorder)>>;

/// The threads of one stream.
pub(super) struct Chain {
    pub name: String,
    pub source: JoinHandle<SourceReport>,
    pub video: Option<JoinHandle<Result<(), EncodeError>>>,
    pub audio: Option<JoinHandle<Result<(), EncodeError>>>,
    pub align: JoinHandle<AlignStats>,
    pub av_encode: Option<JoinHandle<()>>,
    pub events: JoinHandle<EventStats>,
    pub frame_latency: FrameLatency,
    /// Frames the detector ran on.
    pub detector_frames: Arc<AtomicU64>,
    /// A `push` source's handle.
    pub push: Option<crate::source::push::PushInput>,
    /// What the stream's encoders published (e.g. the face encoder's counters).
    pub counters: Arc<Mutex<Extensions>>,
}

/// What the chains of a pipeline share.
pub(super) struct Shared<'a> {
    pub cfg: &'a PipelineConfig,
    pub encoders: &'a Registry,
    pub ontology: Option<&'a Arc<Ontology>>,
    pub learned: Option<&'a Loaded>,
    pub window_tap: Option<&'a WindowTap>,
    /// Inference times per model.
    pub times: &'a ModelTimes,
    /// The tracks' best frames, when snapshots are on.
    pub snapshots: Option<&'a BestFrames>,
    /// The program's per-frame tracks callback.
    pub tracks_tap: Option<&'a super::TracksTap>,
    /// Sees every frame with its features.
    pub frame_tap: Option<&'a crate::core::features::FrameTap>,
}

/// Starts the stages of one stream; its events go to `ev_tx`.
pub(super) fn start(
    sh: &Shared<'_>,
    src: SourceConfig,
    ev_tx: EdgeSender<Event>,
    edges: &mut Vec<EdgeProbe>,
) -> Result<(Chain, StreamProbe), Error> {
    let cfg = sh.cfg;
    let name = src.name.clone();
    let policy = src.effective_policy();
    let want_audio = src.audio && cfg.audio.enabled;

    // One frame format for every video encoder of the stream, then the encoders.
    let specs: Vec<VideoSpec> = sh.encoders.video.iter().map(|k| k.input_spec()).collect();
    let spec = negotiate(&specs).unwrap_or(VideoSpec {
        width: cfg.motion.width,
        height: None,
        format: PixelFormat::Gray8,
    });
    let counters: Arc<Mutex<Extensions>> = Arc::default();
    let info = StreamInfo {
        name: &name,
        video: src.video,
        audio: want_audio,
        spec,
        counters: &counters,
    };
    let mut video_encoders = Vec::new();
    for k in &sh.encoders.video {
        video_encoders.extend(k.for_stream(&info)?);
    }
    let mut audio_encoders = Vec::new();
    if want_audio {
        for k in &sh.encoders.audio {
            audio_encoders.extend(k.for_stream(&info)?);
        }
    }
    // The active speaker runs where the face encoder does: video and audio together.
    let speaker = sh.encoders.asd.as_ref().filter(|_| src.video && want_audio);

    let want_video = !video_encoders.is_empty();
    let mut source_cfg = src.clone();
    source_cfg.video = want_video;
    source_cfg.audio = want_audio;
    if !want_video && !want_audio {
        return Err(Error::Config(crate::config::ConfigError::Invalid {
            path: "<pipeline>".into(),
            key: format!("source {name}"),
            value: "no enabled encoder".into(),
            expected: "video with [motion] or [detector] enabled, or audio with [audio] enabled"
                .into(),
        }));
    }

    let mut outputs = SourceOutputs {
        video: None,
        audio: None,
        events: Some(ev_tx.clone()),
    };
    let mut expect = Vec::new();
    let (mut video_features, mut audio_features) = (None, None);
    let gst_source = GstSource::new(source_cfg, spec);
    let push = gst_source.push_input();
    let stop = gst_source.probe().stop_flag();
    let batching = Batching {
        fixed: policy == EdgePolicy::Block,
        stop: stop.clone(),
        times: sh.times.clone(),
    };
    let frame_latency: FrameLatency = Arc::default();
    let detector_frames: Arc<AtomicU64> = Arc::default();
    let video = if want_video {
        let (tx, rx, p) = edge(format!("{name}/frames"), src.capacity, policy);
        edges.push(p);
        outputs.video = Some(tx);
        expect.push(Modality::Video);
        let (ftx, frx, p) = edge(
            format!("{name}/video-features"),
            VIDEO_FEATURE_CAPACITY,
            EdgePolicy::Block,
        );
        edges.push(p);
        video_features = Some(frx);
        let batching = batching.clone();
        let lat = Arc::clone(&frame_latency);
        let probe = gst_source.probe();
        let live = src.is_live();
        let best = sh.snapshots.cloned();
        let tracks_tap = sh.tracks_tap.cloned();
        let frame_tap = sh.frame_tap.cloned();
        let detected = Arc::clone(&detector_frames);
        Some(spawn(format!("{name}-video"), move || {
            let look = move |frame: &crate::core::media::Frame,
                             f: &crate::core::features::VisionFeatures| {
                if let Some(b) = &best {
                    b.offer(frame, f);
                }
                if let (Some(tap), Some(t)) = (&tracks_tap, f.get::<Tracks>()) {
                    tap(&frame.stream, frame.pts.as_secs_f64(), t);
                }
                if let Some(tap) = &frame_tap {
                    tap(frame, f);
                }
            };
            run_video_stage(video_encoders, rx, ftx, batching, look, move |f| {
                if f.get::<Tracks>().is_some_and(|t| t.detected) {
                    detected.fetch_add(1, Ordering::Relaxed);
                }
                // Live: capture (the frame's PTS on the pipeline clock) → features out.
                let Some(origin) = probe.clock_origin().filter(|_| live) else {
                    return;
                };
                let ms = (clock_now_ns() as f64 - (origin + f.pts.0) as f64) / 1e6;
                if let Ok(mut l) = lat.lock() {
                    l.0.record(ms);
                    if f.get::<Tracks>().is_some_and(|t| t.detected) {
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
        let (ftx, frx, p) = edge(
            format!("{name}/audio-features"),
            AUDIO_FEATURE_CAPACITY,
            EdgePolicy::Block,
        );
        edges.push(p);
        audio_features = Some(frx);
        Some(spawn(format!("{name}-audio"), move || {
            run_audio_stage(LogMelFrontEnd::new(), audio_encoders, rx, ftx, batching)
        })?)
    } else {
        None
    };

    let align_cfg = AlignConfig {
        window: Duration::from_secs_f64(cfg.pipeline.window),
        hop: Duration::from_secs_f64(cfg.pipeline.hop),
        lateness: Duration::from_secs_f64(cfg.pipeline.lateness),
        live: src.is_live(),
    };
    let aligner = Aligner::new(Arc::from(name.as_str()), align_cfg, &expect);
    let (win_tx, win_rx, p) = edge(
        format!("{name}/windows"),
        WINDOW_CAPACITY,
        EdgePolicy::Block,
    );
    edges.push(p);
    let align_stop = stop.clone();
    let align = spawn(format!("{name}-align"), move || {
        run_align_stage(aligner, video_features, audio_features, win_tx, align_stop)
    })?;

    // The active speaker's network stage between the aligner and the event stage.
    let (win_rx, av_encode, last_scores) = match speaker {
        Some(model) => {
            let (tx, rx, p) = edge(format!("{name}/scored"), WINDOW_CAPACITY, EdgePolicy::Block);
            edges.push(p);
            let (last_tx, last_rx) = crossbeam_channel::bounded(1);
            let mut stage = AsdStage::new(
                &name,
                model.clone(),
                cfg.speaker.duration_ticks(),
                want_audio,
            );
            if let Some(head) = &sh.encoders.sync {
                stage = stage.with_sync(head.clone());
            }
            let stop_asd = stop.clone();
            let times = sh.times.clone();
            let h = spawn(format!("{name}-av-encode"), move || {
                run_av_encode_stage(stage, win_rx, tx, last_tx, stop_asd, times)
            })?;
            (rx, Some(h), Some(last_rx))
        }
        None => (win_rx, None, None),
    };

    // The source's verdict reaches the event stage after its last window, so a failure
    // is reported after the events that came before it (GStreamer may close the edges
    // on end-of-stream before the source has checked the stream for truncation).
    let (verdict_tx, verdict_rx) = crossbeam_channel::bounded::<SourceVerdict>(1);
    let mut stage = EventStage::new(
        &name,
        cfg.motion.enabled.then(|| cfg.motion.clone()),
        (cfg.audio.enabled && cfg.sound.enabled).then(|| cfg.sound.clone()),
        cfg.speech,
        cfg.tagger,
    );
    if let Some(o) = sh.ontology {
        stage = stage.with_fusion(cfg.fusion.clone(), Arc::clone(o), sh.learned.cloned());
    }
    if let Some(last) = last_scores {
        let mut speaker_cfg = cfg.speaker.clone();
        if let Some(head) = &sh.encoders.sync {
            speaker_cfg
                .sync_head_threshold
                .get_or_insert(head.spec().threshold);
        }
        stage = stage.with_speaker(SpeakerStage::new(
            &speaker_cfg,
            sh.encoders.has_vad,
            Some(last),
        ));
    }
    let tap = sh.window_tap.cloned();
    let (ids, origin) = crate::source::origin::event_ids(&src);
    let life = Lifecycle::new(ids, origin);
    let events = spawn(format!("{name}-events"), move || {
        run_event_stage(stage, life, win_rx, ev_tx, tap, move || {
            verdict_rx.recv().unwrap_or_default()
        })
    })?;

    let probe = StreamProbe {
        name: name.clone(),
        live: src.is_live(),
        source: gst_source.probe(),
    };
    let source = spawn(format!("{name}-source"), move || {
        let report = gst_source.run(outputs);
        let _ = verdict_tx.send(SourceVerdict {
            error: report.result.as_ref().err().map(|e| one_line(e)),
            warnings: report.warnings.clone(),
        });
        report
    })?;
    Ok((
        Chain {
            name,
            source,
            video,
            audio,
            align,
            av_encode,
            events,
            frame_latency,
            detector_frames,
            push,
            counters,
        },
        probe,
    ))
}
