//! The state a source shares between its bus loop, its appsink callbacks, its microphone
//! thread and its observers (progress, latency), and what it reports when it ends.

use super::{AudioChunk, Frame, Modality, SourceError};
use crate::core::clock::Timestamp;
use crate::core::edge::EdgeSender;
use crate::core::event::Event;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Now on GStreamer's system clock (monotonic ns), the clock live pipelines run on.
pub(crate) fn clock_now() -> u64 {
    gst::SystemClock::obtain().time().nseconds()
}

/// Initialises GStreamer once; safe to call from any thread, any number of times.
pub fn init() -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer failed to initialise: {e}"))
}

/// Per-modality end times seen so far (ns), shared with the progress display.
#[derive(Debug, Default)]
pub struct StreamTimes {
    ends: [AtomicU64; 2],
    ended: [AtomicBool; 2],
}

impl StreamTimes {
    pub(crate) const VIDEO: usize = 0;
    pub(crate) const AUDIO: usize = 1;

    pub(crate) fn note(&self, which: usize, end: Timestamp) {
        self.ends[which].fetch_max(end.0, Ordering::Relaxed);
    }
    pub(crate) fn end(&self, which: usize) {
        self.ended[which].store(true, Ordering::Relaxed);
    }
    /// How far the slowest modality has got: the least end time among the modalities that
    /// have delivered and not ended (the furthest one once all have ended). This is the
    /// progress of the run: nothing after it has been analysed with every modality.
    pub fn slowest(&self) -> Timestamp {
        let running = (0..2)
            .filter(|&i| !self.ended[i].load(Ordering::Relaxed))
            .map(|i| self.ends[i].load(Ordering::Relaxed))
            .filter(|&e| e > 0)
            .min();
        running.map(Timestamp).unwrap_or_else(|| self.position())
    }
    /// Where modality `which` got (0 before its first buffer).
    pub(crate) fn end_of(&self, which: usize) -> Timestamp {
        Timestamp(self.ends[which].load(Ordering::Relaxed))
    }
    /// The furthest media time any modality has reached.
    pub fn position(&self) -> Timestamp {
        Timestamp(
            self.ends[0]
                .load(Ordering::Relaxed)
                .max(self.ends[1].load(Ordering::Relaxed)),
        )
    }
}

/// State shared between the source's bus loop, its appsink callbacks and observers.
#[derive(Debug, Default)]
pub struct Shared {
    pub(crate) live: bool,
    pub(crate) times: StreamTimes,
    pub(crate) frames: AtomicU64,
    pub(crate) samples: AtomicU64,
    pub(crate) duration_ns: AtomicU64,
    pub(crate) stop: crate::core::stop::StopFlag,
    pub(crate) error: Mutex<Option<String>>,
    pub(crate) failure: Mutex<Option<String>>,
    /// Live sources: the pipeline's base time (ns on its clock), once a buffer arrived;
    /// 0 until then.
    pub(crate) base_time: AtomicU64,
    /// Added to audio timestamps (ns; `[[source]] av_offset`).
    pub(crate) av_offset_ns: i64,
    /// A reconnecting source: a session's end of stream does not close the edges.
    pub(crate) keep_edges: bool,
    /// The current session's base time (ns; 0 until its first buffer).
    pub(crate) session_base: AtomicU64,
    /// Where the current session's running time 0 sits on the source's timeline (ns):
    /// its base time minus the first session's, so time runs on across reconnects.
    pub(crate) session_offset: AtomicU64,
    /// Buffers delivered in the current session.
    pub(crate) session_buffers: AtomicU64,
    /// When the last buffer arrived (ns on GStreamer's system clock).
    pub(crate) last_arrival: AtomicU64,
    /// The modalities with an output edge (a bit per [`StreamTimes`] index).
    pub(crate) outputs: AtomicU8,
    /// The modalities whose downstream stage has stopped reading (same bits).
    pub(crate) gone: AtomicU8,
    /// Gaps inside the media (decoder skips, corrupt stretches), for the completeness check.
    pub(crate) gaps: Mutex<super::completeness::Gaps>,
    /// What the completeness check found once the input ended.
    pub(crate) warnings: Mutex<Vec<super::completeness::SourceWarning>>,
}

impl Shared {
    pub(crate) fn count_frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.note_arrival();
    }
    pub(crate) fn count_samples(&self, n: u64) {
        self.samples.fetch_add(n, Ordering::Relaxed);
        self.note_arrival();
    }
    fn note_arrival(&self) {
        // The time first: the bus loop's stall watchdog reads the count, then the time.
        if self.live {
            self.last_arrival.store(clock_now(), Ordering::Release);
        }
        self.session_buffers.fetch_add(1, Ordering::Release);
    }
    /// Records the pipeline's base time from an element of it (first buffer of a live
    /// source's session): buffer running time + base time = the clock time the buffer was
    /// captured. The first session's base time is the source's clock origin; later sessions
    /// (reconnects) are placed after it on the same clock.
    pub(crate) fn note_base_time(&self, element: &gst::Element) {
        if self.live && self.session_base.load(Ordering::Relaxed) == 0 {
            if let Some(b) = element.base_time() {
                let b = b.nseconds();
                self.session_base.store(b, Ordering::Relaxed);
                let _ = self
                    .base_time
                    .compare_exchange(0, b, Ordering::Relaxed, Ordering::Relaxed);
                let origin = self.base_time.load(Ordering::Relaxed);
                self.session_offset
                    .store(b.saturating_sub(origin), Ordering::Relaxed);
            }
        }
    }
    /// Where the current session's time 0 sits on the source's timeline (ns).
    pub(crate) fn session_offset(&self) -> u64 {
        self.session_offset.load(Ordering::Relaxed)
    }
    pub(crate) fn new_session(&self) {
        self.session_base.store(0, Ordering::Relaxed);
        self.session_buffers.store(0, Ordering::Relaxed);
    }
    /// Whether every modality with an output edge has lost its downstream stage: nothing
    /// the source decodes can go anywhere, so it stops.
    pub(crate) fn downstream_gone(&self) -> bool {
        let outputs = self.outputs.load(Ordering::Relaxed);
        outputs != 0 && self.gone.load(Ordering::Relaxed) & outputs == outputs
    }

    /// Sends `item` on modality `which`'s edge in `slot`, from an appsink's streaming thread.
    /// An edge that is closed (end of stream) or whose receiver has gone (the downstream
    /// stage stopped: a failed encoder, every sink gone) ends this branch with `Eos` — never
    /// `Flushing`, which pauses the whole GStreamer pipeline without a message on the bus and
    /// so would leave the source waiting for ever. The other branches keep running.
    pub(crate) fn deliver<T>(
        &self,
        which: usize,
        slot: &Mutex<Option<EdgeSender<T>>>,
        item: T,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = slot.lock().map_err(|_| gst::FlowError::Error)?;
        let Some(tx) = guard.as_ref() else {
            return Err(gst::FlowError::Eos);
        };
        if tx.send(item).is_ok() {
            return Ok(gst::FlowSuccess::Ok);
        }
        guard.take();
        drop(guard);
        self.gone.fetch_or(1 << which, Ordering::Relaxed);
        self.times.end(which);
        Err(gst::FlowError::Eos)
    }

    pub(crate) fn note_error(&self, e: String) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(e);
        }
    }
}

/// A live view of a running source, for progress bars and metrics.
#[derive(Debug, Clone)]
pub struct SourceProbe {
    pub(crate) shared: Arc<Shared>,
}

impl SourceProbe {
    /// Frames delivered so far.
    pub fn frames(&self) -> u64 {
        self.shared.frames.load(Ordering::Relaxed)
    }
    /// Audio samples (16 kHz mono) delivered so far.
    pub fn audio_samples(&self) -> u64 {
        self.shared.samples.load(Ordering::Relaxed)
    }
    /// The furthest media time reached.
    pub fn position(&self) -> Timestamp {
        self.shared.times.position()
    }
    /// The container's declared duration, once known.
    pub fn duration(&self) -> Option<Timestamp> {
        match self.shared.duration_ns.load(Ordering::Relaxed) {
            0 => None,
            d => Some(Timestamp(d)),
        }
    }
    /// Why the source failed, once it has (set before its edges close).
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().ok().and_then(|g| g.clone())
    }
    /// Live sources: the clock time (ns on GStreamer's system clock) that stream time 0
    /// stands for, so a stream time `t` was captured at `origin + t`. None for files and
    /// before the first buffer.
    pub fn clock_origin(&self) -> Option<u64> {
        match self.shared.base_time.load(Ordering::Relaxed) {
            0 => None,
            b => Some(b),
        }
    }
    /// How far the slowest modality has got (the run's progress; see
    /// [`StreamTimes::slowest`]).
    pub fn progress(&self) -> Timestamp {
        self.shared.times.slowest()
    }
    /// Asks the source to stop: it sends end-of-stream so open events close normally, and
    /// the stream's stages drop what is queued behind (see [`crate::core::stop::StopFlag`]).
    pub fn stop(&self) {
        self.shared.stop.set();
    }
    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.shared.stop.is_set()
    }
    /// The stream's stop flag, for the stages behind the source.
    pub fn stop_flag(&self) -> crate::core::stop::StopFlag {
        self.shared.stop.clone()
    }
}

/// What a source did, returned when it has finished.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// Frames delivered.
    pub frames: u64,
    /// Audio samples delivered (16 kHz mono).
    pub audio_samples: u64,
    /// Which modalities the input had (and were enabled).
    pub modalities: Vec<Modality>,
    /// The container's declared duration in seconds, if any.
    pub declared_duration: Option<f64>,
    /// Where the media ended, seconds.
    pub media_end: f64,
    /// `Err` when the source failed; everything before the failure was still delivered.
    pub result: Result<(), SourceError>,
    /// What was incomplete (gaps, tracks ending early) though the source did not fail.
    pub warnings: Vec<super::completeness::SourceWarning>,
    /// Live network sources: outages, reconnects and the microphone's clock.
    pub live: LiveStats,
}

/// What a live source went through.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LiveStats {
    /// Outages (each reported as a `stream_gap` event once the stream came back).
    pub gaps: u32,
    /// Seconds of stream time lost in outages.
    pub gap_seconds: f64,
    /// Connection attempts after the first.
    pub reconnect_attempts: u32,
    /// Wall seconds from each outage's start to the stream delivering again.
    pub recovery_seconds: Vec<f64>,
    /// The microphone, when one was captured.
    pub microphone: Option<MicReport>,
}

/// A microphone capture's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MicReport {
    /// The device's name.
    pub device: String,
    /// Its sample rate (resampled once to 16 kHz).
    pub rate: u32,
    /// Clock drift correction at the end, ppm.
    pub drift_ppm: f64,
    /// Device samples lost because the forwarder could not keep up.
    pub dropped_samples: u64,
    /// The device delivered faster than real time and was paced to the clock.
    pub paced: bool,
    /// Why it stopped, when it failed.
    pub failure: Option<String>,
}

/// The edges a source feeds.
pub struct SourceOutputs {
    /// Decoded frames (None: video disabled).
    pub video: Option<EdgeSender<Frame>>,
    /// Decoded audio (None: audio disabled).
    pub audio: Option<EdgeSender<AudioChunk>>,
    /// Events the source itself reports while running (`stream_gap`, a failed
    /// microphone's `source_error`), straight to the sinks.
    pub events: Option<EdgeSender<Event>>,
}

/// An edge a GStreamer branch sends on, held so that whoever ends the stream (end of
/// stream, no more pads, a failure) can close it: taking the sender out closes it.
pub(crate) type Slot<T> = Arc<Mutex<Option<EdgeSender<T>>>>;
