//! The microphone thread of a source: alone (`kind = "microphone"`) or as a video source's
//! audio, on the same clock.

use super::GstSource;
use crate::core::edge::EdgeSender;
use crate::core::errors::one_line;
use crate::core::event::{Event, EventKind};
use crate::source::mic::{self, MicEnd, MicError, MicStats};
use crate::source::state::{Slot, StreamTimes};
use crate::source::{AudioChunk, SourceError, SourceKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The microphone thread: how it ended and its figures.
pub(super) type MicThread = std::thread::JoinHandle<(Result<MicEnd, MicError>, MicStats)>;

impl GstSource {
    /// Starts the microphone thread. It stops on the source's stop, on `mic_stop` (the
    /// video side ended), after `duration`, or when the device fails; a failure beside
    /// video is reported at once as a `source_error` event and closes only the audio edge.
    pub(super) fn spawn_mic(
        &self,
        audio_slot: &Slot<AudioChunk>,
        events: Option<EdgeSender<Event>>,
        mic_stop: &Arc<AtomicBool>,
    ) -> Result<MicThread, SourceError> {
        let shared = Arc::clone(&self.shared);
        let slot = Arc::clone(audio_slot);
        let mic_stop = Arc::clone(mic_stop);
        let device = self.cfg.microphone_name().map(str::to_string);
        let stream: Arc<str> = Arc::from(self.cfg.name.as_str());
        let alone = self.cfg.kind == SourceKind::Microphone;
        let duration = self.cfg.duration;
        let stall = self.cfg.stall_timeout;
        let (rate, channels, format) = (
            self.cfg.mic_rate,
            self.cfg.mic_channels,
            self.cfg.mic_format.clone(),
        );
        std::thread::Builder::new()
            .name(format!("{}-mic", self.cfg.name))
            .spawn(move || {
                // Beside video, a failed microphone is reported at once and only the audio
                // edge closes; the video goes on.
                let reported = AtomicBool::new(false);
                let report = |why: &str| {
                    if reported.swap(true, Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(mut g) = slot.lock() {
                        g.take();
                    }
                    shared.times.end(StreamTimes::AUDIO);
                    if let (false, Some(tx)) = (alone, events.as_ref()) {
                        tracing::error!(stream = %stream, "microphone lost: {why}; the video goes on");
                        let t = shared.times.position().as_secs_f64();
                        let mut e = Event::new(EventKind::SourceError, &stream, t, t, 1.0);
                        e.evidence.error = Some(format!("microphone: {why}"));
                        let _ = tx.send(e);
                    }
                };
                let (end, stats) = mic::run(
                    mic::MicRun {
                        device: device.as_deref(),
                        stream: Arc::clone(&stream),
                        duration,
                        stall_timeout: stall,
                        origin_from_video: !alone,
                        stop: &mic_stop,
                        rate,
                        channels,
                        format: format.as_deref(),
                        on_failure: &report,
                    },
                    &shared,
                    &slot,
                );
                match &end {
                    Err(e) => report(&one_line(&e)),
                    Ok(_) => {
                        if let Ok(mut g) = slot.lock() {
                            g.take();
                        }
                        shared.times.end(StreamTimes::AUDIO);
                    }
                }
                (end, stats)
            })
            .map_err(|e| SourceError::Build {
                stream: self.cfg.name.clone(),
                reason: format!("cannot start the microphone thread: {e}"),
            })
    }
}
