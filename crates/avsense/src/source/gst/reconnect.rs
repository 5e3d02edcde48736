//! `kind = "rtsp"`: one session after another until stopped, with backoff and `stream_gap`
//! events.

use super::{GstSource, SessionEnd};
use crate::core::edge::EdgeSender;
use crate::core::event::{Event, EventKind};
use crate::source::state::{LiveStats, Slot};
use crate::source::{AudioChunk, Frame, Modality, SourceError};

impl GstSource {
    /// `kind = "rtsp"`: sessions one after another until stopped. A session that errors,
    /// ends or stalls is torn down; the next connects after an exponential backoff
    /// (`reconnect_delay` doubling up to `reconnect_max_delay`). When data flows again a
    /// `stream_gap` event reports the outage; the timeline runs on across it.
    pub(super) fn run_reconnecting(
        &self,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        events: Option<&EdgeSender<Event>>,
        modalities: &mut Vec<Modality>,
        declared: &mut Option<f64>,
        live: &mut LiveStats,
    ) -> Result<(), SourceError> {
        struct Outage {
            start: f64,
            since: std::time::Instant,
            reason: String,
            attempts: u32,
        }
        let mut outage: Option<Outage> = None;
        let mut delay = self.cfg.reconnect_delay;
        let mut failures_in_a_row = 0u32;
        loop {
            let mut on_data = || {
                if let Some(o) = outage.take() {
                    let end = self.shared.times.position().as_secs_f64().max(o.start);
                    let recovery = o.since.elapsed().as_secs_f64();
                    live.gaps += 1;
                    live.gap_seconds += end - o.start;
                    live.recovery_seconds.push(recovery);
                    tracing::warn!(stream = %self.cfg.name, "stream back after {recovery:.2} s ({} attempts); gap {:.3}–{:.3} s", o.attempts, o.start, end);
                    if let Some(tx) = events {
                        let mut e =
                            Event::new(EventKind::StreamGap, &self.cfg.name, o.start, end, 1.0);
                        e.evidence.error = Some(o.reason);
                        e.evidence.attempts = Some(o.attempts);
                        let _ = tx.send(e);
                    }
                }
                delay = self.cfg.reconnect_delay;
                failures_in_a_row = 0;
            };
            let mut session_modalities = Vec::new();
            let end = self.run_session(
                video_slot,
                audio_slot,
                &mut session_modalities,
                declared,
                &mut on_data,
            );
            for m in session_modalities {
                if !modalities.contains(&m) {
                    modalities.push(m);
                }
            }
            let reason = match end {
                Ok(SessionEnd::Stopped) => return Ok(()),
                Ok(SessionEnd::Eos) => "the server ended the stream".to_string(),
                Err(e) => e.to_string(),
            };
            if self.shared.stop.is_set() {
                return Ok(());
            }
            failures_in_a_row += 1;
            if self.cfg.reconnect_attempts > 0 && failures_in_a_row > self.cfg.reconnect_attempts {
                return Err(SourceError::Lost {
                    stream: self.cfg.name.clone(),
                    input: self.input_name(),
                    attempts: failures_in_a_row - 1,
                    reason,
                });
            }
            match outage.as_mut() {
                Some(o) => o.attempts += 1,
                None => {
                    tracing::warn!(stream = %self.cfg.name, "stream lost: {reason}; reconnecting");
                    outage = Some(Outage {
                        start: self.shared.times.position().as_secs_f64(),
                        since: std::time::Instant::now(),
                        reason,
                        attempts: 1,
                    });
                }
            }
            live.reconnect_attempts += 1;
            // Back off, watching for a stop.
            let until = std::time::Instant::now() + std::time::Duration::from_secs_f64(delay);
            while std::time::Instant::now() < until {
                if self.shared.stop.is_set() {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            delay = (delay * 2.0).min(self.cfg.reconnect_max_delay);
        }
    }
}
