//! A GStreamer source: builds the pipeline for the input (`build`: file, URI, RTSP, V4L2,
//! test sources, launch descriptions), links the decoded pads to the video/audio branches,
//! runs the bus loop (`session`) until end of stream, an error or a stop request,
//! reconnects live network streams (`reconnect`) and runs a microphone beside GStreamer
//! or alone (`microphone`).

mod build;
mod microphone;
mod reconnect;
mod session;

use super::config::{SourceConfig, SourceKind};
use super::state::{Shared, Slot};
use super::{AudioChunk, Frame, Modality, SourceError, VideoSpec};
use crate::core::edge::EdgeSender;
use crate::core::errors::one_line;
use crate::core::event::Event;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use super::state::{
    init, LiveStats, MicReport, SourceOutputs, SourceProbe, SourceReport, StreamTimes,
};

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// A stop was requested.
    Stopped,
    /// The input ended by itself.
    Eos,
}

/// A file / URI / test source on GStreamer.
pub struct GstSource {
    cfg: SourceConfig,
    spec: VideoSpec,
    shared: Arc<Shared>,
    push: Option<super::push::PushInput>,
}

impl GstSource {
    /// A source for `cfg` that delivers frames as `spec` asks.
    pub fn new(cfg: SourceConfig, spec: VideoSpec) -> Self {
        let shared = Arc::new(Shared {
            live: cfg.is_live(),
            av_offset_ns: (cfg.av_offset * 1e9).round() as i64,
            keep_edges: cfg.kind == SourceKind::Rtsp,
            ..Shared::default()
        });
        let push = matches!(cfg.kind, SourceKind::Push | SourceKind::Zenoh)
            .then(|| super::push::PushInput::new(&cfg.name, cfg.is_live(), cfg.video, cfg.audio));
        Self {
            cfg,
            spec,
            shared,
            push,
        }
    }

    /// The handle a `push` source is fed through (None for other kinds).
    pub fn push_input(&self) -> Option<super::push::PushInput> {
        self.push.clone()
    }

    /// A handle to watch and stop the source while it runs.
    pub fn probe(&self) -> SourceProbe {
        SourceProbe {
            shared: Arc::clone(&self.shared),
        }
    }

    pub(crate) fn input_name(&self) -> String {
        match self.cfg.kind {
            SourceKind::File => self
                .cfg
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            SourceKind::Uri => self.cfg.uri.clone().unwrap_or_default(),
            SourceKind::Test => "videotestsrc/audiotestsrc".into(),
            SourceKind::Gst => self.cfg.launch.clone().unwrap_or_default(),
            SourceKind::Rtsp => self.cfg.uri.clone().unwrap_or_default(),
            SourceKind::V4l2 => self.v4l2_device(),
            SourceKind::Push => "pushed frames and audio".into(),
            SourceKind::Zenoh => format!(
                "zenoh {}/media",
                self.cfg
                    .key
                    .clone()
                    .unwrap_or_else(|| format!("avsense/{}", self.cfg.name))
            ),
            SourceKind::Microphone => format!(
                "microphone {}",
                self.cfg.microphone_name().unwrap_or("default")
            ),
        }
    }

    fn v4l2_device(&self) -> String {
        self.cfg
            .device
            .clone()
            .unwrap_or_else(|| "/dev/video0".to_string())
    }

    /// Runs until the input ends, fails or is stopped. The output edges are closed when
    /// this returns, whatever happened.
    pub fn run(self, out: SourceOutputs) -> SourceReport {
        let outputs = u8::from(out.video.is_some()) << StreamTimes::VIDEO
            | u8::from(out.audio.is_some()) << StreamTimes::AUDIO;
        self.shared.outputs.store(outputs, Ordering::Relaxed);
        let video_slot: Slot<Frame> = Arc::new(Mutex::new(out.video));
        let audio_slot: Slot<AudioChunk> = Arc::new(Mutex::new(out.audio));
        let mut modalities = Vec::new();
        let mut declared = None;
        let mut live = LiveStats::default();
        let result = self.run_inner(
            &video_slot,
            &audio_slot,
            out.events,
            &mut modalities,
            &mut declared,
            &mut live,
        );
        if let (Err(e), Ok(mut f)) = (&result, self.shared.failure.lock()) {
            *f = Some(one_line(e));
        }
        // Whatever GStreamer still holds, the edges close now: downstream must not wait.
        if let Ok(mut g) = video_slot.lock() {
            g.take();
        }
        if let Ok(mut g) = audio_slot.lock() {
            g.take();
        }
        SourceReport {
            frames: self.shared.frames.load(Ordering::Relaxed),
            audio_samples: self.shared.samples.load(Ordering::Relaxed),
            modalities,
            declared_duration: declared,
            media_end: self.shared.times.position().as_secs_f64(),
            result,
            warnings: self
                .shared
                .warnings
                .lock()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default(),
            live,
        }
    }

    fn run_inner(
        &self,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        events: Option<EdgeSender<Event>>,
        modalities: &mut Vec<Modality>,
        declared: &mut Option<f64>,
        live: &mut LiveStats,
    ) -> Result<(), SourceError> {
        let stream = self.cfg.name.clone();
        init().map_err(|reason| SourceError::Build {
            stream: stream.clone(),
            reason,
        })?;
        // The microphone runs on its own thread beside GStreamer (or alone).
        let mic_stop = Arc::new(AtomicBool::new(false));
        let mic = if self.cfg.audio
            && (self.cfg.kind == SourceKind::Microphone || self.cfg.microphone.is_some())
        {
            Some(self.spawn_mic(audio_slot, events.clone(), &mic_stop)?)
        } else {
            None
        };
        let result = match self.cfg.kind {
            SourceKind::Microphone => {
                modalities.push(Modality::Audio);
                Ok(())
            }
            SourceKind::Rtsp => self.run_reconnecting(
                video_slot,
                audio_slot,
                events.as_ref(),
                modalities,
                declared,
                live,
            ),
            #[cfg(feature = "zenoh")]
            SourceKind::Zenoh => {
                // The subscriber feeds the push input while the session runs.
                let input = self.push.clone().ok_or_else(|| SourceError::Build {
                    stream: stream.clone(),
                    reason: "no push input".into(),
                })?;
                let done = Arc::new(AtomicBool::new(false));
                let sub = super::zenoh::spawn(
                    &self.cfg,
                    input,
                    self.shared.stop.clone(),
                    Arc::clone(&done),
                )?;
                let r = self
                    .run_session(video_slot, audio_slot, modalities, declared, &mut || {})
                    .map(|_| ());
                done.store(true, Ordering::Relaxed);
                let _ = sub.join();
                r
            }
            _ => self
                .run_session(video_slot, audio_slot, modalities, declared, &mut || {})
                .map(|_| ()),
        };
        if let Some(p) = &self.push {
            p.close(match &result {
                Ok(()) => "the stream has ended",
                Err(_) => "the source failed",
            });
        }
        if let Some(handle) = mic {
            if self.cfg.kind != SourceKind::Microphone {
                mic_stop.store(true, Ordering::Relaxed);
                if !modalities.contains(&Modality::Audio) {
                    modalities.push(Modality::Audio);
                }
            }
            let (end, stats) = handle.join().map_err(|_| SourceError::Build {
                stream: stream.clone(),
                reason: "the microphone thread panicked".into(),
            })?;
            let failure = match end {
                Ok(super::mic::MicEnd::Stopped) => None,
                Ok(super::mic::MicEnd::Failed(why)) => Some(why),
                Err(e) => Some(one_line(&e)),
            };
            live.microphone = Some(MicReport {
                device: stats.device,
                rate: stats.rate,
                drift_ppm: stats.drift_ppm,
                dropped_samples: stats.dropped_samples,
                paced: stats.paced,
                failure: failure.clone(),
            });
            // Alone, a microphone's failure is the source's; beside video it was reported
            // as an event when it happened and the video went on.
            if self.cfg.kind == SourceKind::Microphone {
                if let Some(reason) = failure {
                    return Err(SourceError::Microphone { stream, reason });
                }
            }
        }
        result
    }
}
