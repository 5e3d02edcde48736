//! A GStreamer source: builds the pipeline for a file, URI or test input, links the
//! decoded pads to the video/audio branches, and runs the bus loop until end of stream,
//! an error, or a stop request.

use super::{audio_gst, video, AudioChunk, Frame, Modality, SourceError, VideoSpec};
use crate::channel::EdgeSender;
use crate::clock::Timestamp;
use crate::config::{SourceConfig, SourceKind};
use crate::event::{Event, EventKind};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    frames: AtomicU64,
    samples: AtomicU64,
    duration_ns: AtomicU64,
    pub(crate) stop: AtomicBool,
    error: Mutex<Option<String>>,
    failure: Mutex<Option<String>>,
    /// Live sources: the pipeline's base time (ns on its clock), once a buffer arrived;
    /// 0 until then.
    pub(crate) base_time: AtomicU64,
    /// Added to audio timestamps (ns; `[[source]] av_offset`).
    pub(crate) av_offset_ns: i64,
    /// A reconnecting source: a session's end of stream does not close the edges.
    pub(crate) keep_edges: bool,
    /// The current session's base time (ns; 0 until its first buffer).
    session_base: AtomicU64,
    /// Where the current session's running time 0 sits on the source's timeline (ns):
    /// its base time minus the first session's, so time runs on across reconnects.
    session_offset: AtomicU64,
    /// Buffers delivered in the current session.
    session_buffers: AtomicU64,
    /// When the last buffer arrived (ns on GStreamer's system clock).
    last_arrival: AtomicU64,
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
        self.session_buffers.fetch_add(1, Ordering::Relaxed);
        if self.live {
            self.last_arrival.store(clock_now(), Ordering::Relaxed);
        }
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
    fn new_session(&self) {
        self.session_base.store(0, Ordering::Relaxed);
        self.session_buffers.store(0, Ordering::Relaxed);
    }
    pub(crate) fn note_error(&self, e: String) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(e);
        }
    }
}

/// How a session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// A stop was requested.
    Stopped,
    /// The input ended by itself.
    Eos,
}

/// A live view of a running source, for progress bars and metrics.
#[derive(Debug, Clone)]
pub struct SourceProbe {
    shared: Arc<Shared>,
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
    /// Asks the source to stop: it sends end-of-stream so open events close normally.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
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

type Slot<T> = Arc<Mutex<Option<EdgeSender<T>>>>;
type MicThread = std::thread::JoinHandle<(
    Result<super::mic::MicEnd, super::mic::MicError>,
    super::mic::MicStats,
)>;

/// A file / URI / test source on GStreamer.
pub struct GstSource {
    cfg: SourceConfig,
    spec: VideoSpec,
    shared: Arc<Shared>,
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
        Self { cfg, spec, shared }
    }

    /// A handle to watch and stop the source while it runs.
    pub fn probe(&self) -> SourceProbe {
        SourceProbe {
            shared: Arc::clone(&self.shared),
        }
    }

    fn input_name(&self) -> String {
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
            *f = Some(e.to_string());
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
            _ => self
                .run_session(video_slot, audio_slot, modalities, declared, &mut || {})
                .map(|_| ()),
        };
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
                Err(e) => Some(e.to_string()),
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

    /// Starts the microphone thread. It stops on the source's stop, on `mic_stop` (the
    /// video side ended), after `duration`, or when the device fails; a failure beside
    /// video is reported at once as a `source_error` event and closes only the audio edge.
    fn spawn_mic(
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
                let (end, stats) = super::mic::run(
                    super::mic::MicRun {
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
                    Err(e) => report(&e.to_string()),
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

    /// `kind = "rtsp"`: sessions one after another until stopped. A session that errors,
    /// ends or stalls is torn down; the next connects after an exponential backoff
    /// (`reconnect_delay` doubling up to `reconnect_max_delay`). When data flows again a
    /// `stream_gap` event reports the outage; the timeline runs on across it.
    fn run_reconnecting(
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
            if self.shared.stop.load(Ordering::Relaxed) {
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
                if self.shared.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            delay = (delay * 2.0).min(self.cfg.reconnect_max_delay);
        }
    }

    /// One GStreamer pipeline from start to end of stream, error, stall or stop.
    /// `on_data` is called once, when the session's first buffer has arrived.
    fn run_session(
        &self,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        modalities: &mut Vec<Modality>,
        declared: &mut Option<f64>,
        on_data: &mut dyn FnMut(),
    ) -> Result<SessionEnd, SourceError> {
        let stream = self.cfg.name.clone();
        let build_err = |reason: String| SourceError::Build {
            stream: stream.clone(),
            reason,
        };
        self.shared.new_session();
        let pipeline = gst::Pipeline::with_name(&format!("avsense-{}", self.cfg.name));
        let linked = Arc::new(Mutex::new(Vec::<Modality>::new()));

        match self.cfg.kind {
            SourceKind::File | SourceKind::Uri | SourceKind::Rtsp => {
                let uri = match self.cfg.kind {
                    SourceKind::File => {
                        let path = self.cfg.path.as_deref().unwrap_or(Path::new(""));
                        file_uri(&stream, path)?
                    }
                    _ => self.cfg.uri.clone().unwrap_or_default(),
                };
                let decode = gst::ElementFactory::make("uridecodebin")
                    .property("uri", &uri)
                    .build()
                    .map_err(|e| {
                        build_err(format!(
                            "uridecodebin: {e} (install gstreamer1.0-plugins-base)"
                        ))
                    })?;
                if self.cfg.kind == SourceKind::Rtsp {
                    self.configure_rtsp(&decode);
                }
                pipeline
                    .add(&decode)
                    .map_err(|e| build_err(e.to_string()))?;
                self.connect_decoder(&decode, &pipeline, video_slot, audio_slot, &linked);
            }
            SourceKind::V4l2 => {
                let decode = self.build_v4l2(&pipeline).map_err(build_err)?;
                self.connect_decoder(&decode, &pipeline, video_slot, audio_slot, &linked);
            }
            SourceKind::Microphone => return Ok(SessionEnd::Stopped),
            SourceKind::Test => {
                self.build_test(&pipeline, video_slot, audio_slot, &linked)
                    .map_err(|e| build_err(format!("test source: {e}")))?;
            }
            SourceKind::Gst => {
                self.build_launch(&pipeline, video_slot, audio_slot, &linked)
                    .map_err(build_err)?;
            }
        }

        let bus = pipeline
            .bus()
            .ok_or_else(|| build_err("the pipeline has no bus".into()))?;
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            // The bus usually holds the real reason (e.g. a missing file or plugin).
            let reason =
                bus.pop_filtered(&[gst::MessageType::Error])
                    .and_then(|m| match m.view() {
                        gst::MessageView::Error(err) => Some(self.stream_error(err)),
                        _ => None,
                    });
            let _ = pipeline.set_state(gst::State::Null);
            return Err(reason.unwrap_or_else(|| build_err(format!("cannot start: {e}"))));
        }

        let input = self.input_name();
        let mut result = Ok(());
        let mut eos_sent = false;
        let mut data_seen = false;
        let mut got_eos = false;
        let session_start = clock_now();
        let stall_ns = (self.cfg.stall_timeout * 1e9) as u64;
        loop {
            if !data_seen && self.shared.session_buffers.load(Ordering::Relaxed) > 0 {
                data_seen = true;
                on_data();
            }
            if self.cfg.kind == SourceKind::Rtsp && !eos_sent {
                // A network stream that stops delivering is lost even if no element says so
                // (a server that hangs, a cable pulled without a TCP reset).
                let since = if data_seen {
                    self.shared.last_arrival.load(Ordering::Relaxed)
                } else {
                    session_start + stall_ns // connecting may take one stall period more
                };
                let now = clock_now();
                if now > since && now - since > stall_ns {
                    result = Err(SourceError::Stalled {
                        stream: stream.clone(),
                        input: input.clone(),
                        seconds: (now - since) as f64 / 1e9,
                    });
                    break;
                }
            }
            if self.shared.stop.load(Ordering::Relaxed) && !eos_sent {
                // A stop is an end of stream: every element flushes, open events close.
                pipeline.send_event(gst::event::Eos::new());
                eos_sent = true;
            }
            if let Some(e) = self.shared.error.lock().ok().and_then(|mut g| g.take()) {
                result = Err(SourceError::Stream {
                    stream: stream.clone(),
                    input: input.clone(),
                    element: "appsink".into(),
                    message: e,
                    debug: String::new(),
                });
                break;
            }
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    got_eos = true;
                    break;
                }
                gst::MessageView::Error(err) => {
                    result = Err(self.stream_error(err));
                    break;
                }
                gst::MessageView::Warning(w) => {
                    tracing::warn!(stream = %stream, "GStreamer warning: {} ({:?})", w.error(), w.debug());
                }
                gst::MessageView::DurationChanged(_) | gst::MessageView::AsyncDone(_) => {
                    self.update_duration(&pipeline);
                }
                _ => {}
            }
        }
        self.update_duration(&pipeline);
        let _ = pipeline.set_state(gst::State::Null);

        if let Ok(l) = linked.lock() {
            modalities.extend(l.iter().copied());
        }
        let dur = self.shared.duration_ns.load(Ordering::Relaxed);
        *declared = (dur > 0).then(|| dur as f64 / 1e9);
        if result.is_ok() && modalities.is_empty() && !eos_sent {
            result = Err(SourceError::NoStreams {
                stream: stream.clone(),
                input: input.clone(),
            });
        }
        if result.is_ok() && !eos_sent && !self.cfg.is_live() {
            if let Some(declared) = *declared {
                let ended_at = self.shared.times.position().as_secs_f64();
                let slack = (0.02 * declared).max(1.0);
                if ended_at + slack < declared {
                    result = Err(SourceError::Truncated {
                        stream,
                        input,
                        ended_at,
                        declared,
                    });
                }
            }
        }
        let _ = got_eos;
        result.map(|()| {
            if eos_sent {
                SessionEnd::Stopped
            } else {
                SessionEnd::Eos
            }
        })
    }

    /// rtspsrc settings (transport, jitter-buffer latency, timeouts), applied when
    /// uridecodebin creates it.
    fn configure_rtsp(&self, decode: &gst::Element) {
        let transport = match self.cfg.transport {
            crate::config::RtspTransport::Tcp => "tcp",
            crate::config::RtspTransport::Udp => "udp",
            crate::config::RtspTransport::Auto => "udp+udp-mcast+tcp",
        };
        let latency_ms = (self.cfg.latency * 1000.0).round() as u32;
        let timeout_us = (self.cfg.stall_timeout * 1e6) as u64;
        decode.connect("source-setup", false, move |args| {
            let src = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
            if src.find_property("protocols").is_some() {
                src.set_property_from_str("protocols", transport);
            }
            if src.find_property("latency").is_some() {
                src.set_property("latency", latency_ms);
            }
            if src.find_property("timeout").is_some() {
                src.set_property("timeout", timeout_us);
            }
            if src.find_property("tcp-timeout").is_some() {
                src.set_property("tcp-timeout", timeout_us);
            }
            None
        });
    }

    /// `kind = "v4l2"`: the camera with the configured caps (size, rate, format) into a
    /// decodebin (MJPEG is decoded, raw passes through); returns the decodebin.
    fn build_v4l2(&self, pipeline: &gst::Pipeline) -> Result<gst::Element, String> {
        let device = self.v4l2_device();
        let mut structures = Vec::new();
        let raw = matches!(
            self.cfg.format,
            crate::config::CameraFormat::Any | crate::config::CameraFormat::Yuyv
        );
        let jpeg = matches!(
            self.cfg.format,
            crate::config::CameraFormat::Any | crate::config::CameraFormat::Mjpeg
        );
        let fill = |mut b: gst::structure::Builder| {
            if let Some(w) = self.cfg.width {
                b = b.field("width", w as i32);
            }
            if let Some(h) = self.cfg.height {
                b = b.field("height", h as i32);
            }
            if let Some(f) = self.cfg.fps {
                b = b.field("framerate", gst::Fraction::new(f as i32, 1));
            }
            b.build()
        };
        if raw {
            let mut b = gst::Structure::builder("video/x-raw");
            if self.cfg.format == crate::config::CameraFormat::Yuyv {
                b = b.field("format", "YUY2");
            }
            structures.push(fill(b));
        }
        if jpeg {
            structures.push(fill(gst::Structure::builder("image/jpeg")));
        }
        let caps = gst::Caps::from_iter(structures);
        let src = gst::ElementFactory::make("v4l2src")
            .property("device", &device)
            .build()
            .map_err(|e| format!("v4l2src: {e} (install gstreamer1.0-plugins-good)"))?;
        let filter = gst::ElementFactory::make("capsfilter")
            .property("caps", &caps)
            .build()
            .map_err(|e| format!("capsfilter: {e}"))?;
        let decode = gst::ElementFactory::make("decodebin")
            .build()
            .map_err(|e| format!("decodebin: {e}"))?;
        pipeline
            .add_many([&src, &filter, &decode])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&src, &filter, &decode])
            .map_err(|e| format!("camera {device} cannot give {caps}: {e}"))?;
        Ok(decode)
    }

    fn update_duration(&self, pipeline: &gst::Pipeline) {
        if let Some(d) = pipeline.query_duration::<gst::ClockTime>() {
            self.shared
                .duration_ns
                .store(d.nseconds(), Ordering::Relaxed);
        }
    }

    fn stream_error(&self, err: &gst::message::Error) -> SourceError {
        SourceError::Stream {
            stream: self.cfg.name.clone(),
            input: self.input_name(),
            element: err
                .src()
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| "?".into()),
            message: err.error().to_string(),
            debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
        }
    }

    /// Links each decoded pad to its branch as it appears; unwanted or duplicate tracks go
    /// to a fakesink (an unlinked pad would stop the decoder); modalities that never
    /// appear are closed when the decoder says it has no more pads.
    fn connect_decoder(
        &self,
        decode: &gst::Element,
        pipeline: &gst::Pipeline,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) {
        let weak = pipeline.downgrade();
        let spec = self.spec;
        let stream: Arc<str> = Arc::from(self.cfg.name.as_str());
        let (want_video, want_audio) = (self.cfg.video, self.gst_audio());
        let (vs, as_) = (Arc::clone(video_slot), Arc::clone(audio_slot));
        let shared = Arc::clone(&self.shared);
        let linked_pad = Arc::clone(linked);
        decode.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let name = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            let Ok(mut linked) = linked_pad.lock() else {
                return;
            };
            let modality = if name.starts_with("video/") {
                Some(Modality::Video)
            } else if name.starts_with("audio/") {
                Some(Modality::Audio)
            } else {
                None
            };
            let wanted = match modality {
                Some(Modality::Video) => want_video && !linked.contains(&Modality::Video),
                Some(Modality::Audio) => want_audio && !linked.contains(&Modality::Audio),
                None => false,
            };
            let head = if wanted {
                let r = match modality {
                    Some(Modality::Video) => video::add_branch(
                        &pipeline,
                        &spec,
                        Arc::clone(&stream),
                        Arc::clone(&vs),
                        Arc::clone(&shared),
                    ),
                    _ => audio_gst::add_branch(
                        &pipeline,
                        Arc::clone(&stream),
                        Arc::clone(&as_),
                        Arc::clone(&shared),
                    ),
                };
                match r {
                    Ok(h) => {
                        linked.extend(modality);
                        Some(h)
                    }
                    Err(e) => {
                        shared.note_error(format!("cannot build the {name} branch: {e}"));
                        None
                    }
                }
            } else {
                fakesink(&pipeline)
            };
            if let Some(head) = head {
                if let Some(sinkpad) = head.static_pad("sink") {
                    if let Err(e) = pad.link(&sinkpad) {
                        shared.note_error(format!("cannot link the decoded {name} pad: {e:?}"));
                    }
                }
            }
        });
        let (vs, as_) = (Arc::clone(video_slot), Arc::clone(audio_slot));
        let linked_nmp = Arc::clone(linked);
        let mic = self.cfg.microphone.is_some();
        let shared = Arc::clone(&self.shared);
        decode.connect_no_more_pads(move |_| {
            let Ok(linked) = linked_nmp.lock() else {
                return;
            };
            if !linked.contains(&Modality::Video) {
                if let Ok(mut g) = vs.lock() {
                    g.take();
                }
                shared.times.end(StreamTimes::VIDEO);
            }
            if !linked.contains(&Modality::Audio) && !mic {
                if let Ok(mut g) = as_.lock() {
                    g.take();
                }
                shared.times.end(StreamTimes::AUDIO);
            }
        });
    }

    fn build_test(
        &self,
        pipeline: &gst::Pipeline,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) -> Result<(), gst::glib::BoolError> {
        let stream: Arc<str> = Arc::from(self.cfg.name.as_str());
        let live = self.cfg.live;
        let fps = 30u64;
        if self.cfg.video {
            let mut b = gst::ElementFactory::make("videotestsrc")
                .property_from_str("pattern", "ball")
                .property("is-live", live);
            if let Some(d) = self.cfg.duration {
                b = b.property("num-buffers", (d * fps as f64).round().max(1.0) as i32);
            }
            let src = b.build()?;
            let caps = gst::ElementFactory::make("capsfilter")
                .property(
                    "caps",
                    gst::Caps::builder("video/x-raw")
                        .field("width", 640i32)
                        .field("height", 480i32)
                        .field("framerate", gst::Fraction::new(fps as i32, 1))
                        .build(),
                )
                .build()?;
            pipeline.add_many([&src, &caps])?;
            src.link(&caps)?;
            let head = video::add_branch(
                pipeline,
                &self.spec,
                Arc::clone(&stream),
                Arc::clone(video_slot),
                Arc::clone(&self.shared),
            )?;
            caps.link(&head)?;
            if let Ok(mut l) = linked.lock() {
                l.push(Modality::Video);
            }
        } else if let Ok(mut g) = video_slot.lock() {
            g.take();
        }
        if self.cfg.audio {
            // 100 ms buffers at 48 kHz for a file-like run (num-buffers then gives the
            // duration exactly); 20 ms when live, like a sound card's period, so audio is not
            // held back by its own buffering.
            let per_s = if live { 50 } else { 10 };
            let mut b = gst::ElementFactory::make("audiotestsrc")
                .property_from_str("wave", "ticks")
                .property("samplesperbuffer", 48_000 / per_s)
                .property("is-live", live);
            if let Some(d) = self.cfg.duration {
                b = b.property(
                    "num-buffers",
                    (d * f64::from(per_s)).round().max(1.0) as i32,
                );
            }
            let src = b.build()?;
            let caps = gst::ElementFactory::make("capsfilter")
                .property(
                    "caps",
                    gst::Caps::builder("audio/x-raw")
                        .field("rate", 48_000i32)
                        .build(),
                )
                .build()?;
            pipeline.add_many([&src, &caps])?;
            src.link(&caps)?;
            if !self.gst_audio() {
                let sink =
                    fakesink(pipeline).ok_or_else(|| gst::glib::bool_error!("no fakesink"))?;
                caps.link(&sink)?;
                return Ok(());
            }
            let head = audio_gst::add_branch(
                pipeline,
                Arc::clone(&stream),
                Arc::clone(audio_slot),
                Arc::clone(&self.shared),
            )?;
            caps.link(&head)?;
            if let Ok(mut l) = linked.lock() {
                l.push(Modality::Audio);
            }
        } else if let Ok(mut g) = audio_slot.lock() {
            g.take();
        }
        Ok(())
    }

    /// Whether the audio comes from GStreamer (not from a configured microphone).
    fn gst_audio(&self) -> bool {
        self.cfg.audio && self.cfg.microphone.is_none()
    }
}

impl GstSource {
    /// `kind = "gst"`: the launch description as a bin whose unlinked source pads are
    /// ghosted; each pad is linked by its caps to the video or the audio branch (the first of
    /// each; a modality the config disables, or a second pad of one, goes to a fakesink).
    fn build_launch(
        &self,
        pipeline: &gst::Pipeline,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) -> Result<(), String> {
        let launch = self.cfg.launch.as_deref().unwrap_or_default();
        let bin = gst::parse::bin_from_description(launch, false)
            .map_err(|e| format!("launch description {launch:?}: {e}"))?;
        // Ghost every unlinked source pad (parse's own ghosting takes only the first).
        let mut unlinked: Vec<gst::Pad> = Vec::new();
        for el in bin.iterate_recurse().into_iter().flatten() {
            for pad in el.src_pads() {
                if pad.peer().is_none() {
                    unlinked.push(pad);
                }
            }
        }
        for (i, target) in unlinked.iter().enumerate() {
            let ghost = gst::GhostPad::builder_with_target(target)
                .map_err(|e| format!("launch description {launch:?}: {e}"))?
                .name(format!("src_{i}"))
                .build();
            bin.add_pad(&ghost)
                .map_err(|e| format!("launch description {launch:?}: {e}"))?;
        }
        pipeline
            .add(&bin)
            .map_err(|e| format!("launch description {launch:?}: {e}"))?;
        let stream: Arc<str> = Arc::from(self.cfg.name.as_str());
        let pads: Vec<gst::Pad> = bin.src_pads();
        if pads.is_empty() {
            return Err(format!(
                "launch description {launch:?} has no unlinked source pad (expected it to end in raw video or audio, e.g. \"v4l2src ! videoconvert\")"
            ));
        }
        for pad in pads {
            let caps = pad.query_caps(None);
            let name = caps
                .structure(0)
                .map(|st| st.name().to_string())
                .unwrap_or_default();
            let modality = if caps.is_any() {
                None
            } else if name.starts_with("video/x-raw") {
                Some(Modality::Video)
            } else if name.starts_with("audio/x-raw") {
                Some(Modality::Audio)
            } else {
                None
            };
            let Some(m) = modality else {
                return Err(format!(
                    "launch description {launch:?}: a source pad gives {} (expected raw video or audio: end the branch in videoconvert / audioconvert, or decode with a decoder element; dynamic pads such as decodebin's are not supported here)",
                    if caps.is_any() { "ANY caps".to_string() } else { name }
                ));
            };
            let taken = linked.lock().map(|l| l.contains(&m)).unwrap_or(true);
            let wanted = match m {
                Modality::Video => self.cfg.video,
                Modality::Audio => self.gst_audio(),
            };
            let head = if wanted && !taken {
                let head = match m {
                    Modality::Video => video::add_branch(
                        pipeline,
                        &self.spec,
                        Arc::clone(&stream),
                        Arc::clone(video_slot),
                        Arc::clone(&self.shared),
                    ),
                    Modality::Audio => audio_gst::add_branch(
                        pipeline,
                        Arc::clone(&stream),
                        Arc::clone(audio_slot),
                        Arc::clone(&self.shared),
                    ),
                }
                .map_err(|e| format!("{m:?} branch: {e}"))?;
                if let Ok(mut l) = linked.lock() {
                    l.push(m);
                }
                head
            } else {
                fakesink(pipeline).ok_or_else(|| "cannot add a fakesink".to_string())?
            };
            let sink_pad = head
                .static_pad("sink")
                .ok_or_else(|| format!("{m:?} branch has no sink pad"))?;
            pad.link(&sink_pad).map_err(|e| {
                format!("launch description {launch:?}: cannot link its {m:?} pad: {e:?}")
            })?;
        }
        let l = linked.lock().map(|l| l.clone()).unwrap_or_default();
        if !l.contains(&Modality::Video) {
            if let Ok(mut g) = video_slot.lock() {
                g.take();
            }
        }
        if !l.contains(&Modality::Audio) && self.cfg.microphone.is_none() {
            if let Ok(mut g) = audio_slot.lock() {
                g.take();
            }
        }
        Ok(())
    }
}

fn fakesink(pipeline: &gst::Pipeline) -> Option<gst::Element> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .ok()?;
    pipeline.add(&sink).ok()?;
    sink.sync_state_with_parent().ok()?;
    Some(sink)
}

/// A `file://` URI for `path`, after checking that the file can be opened.
fn file_uri(stream: &str, path: &Path) -> Result<String, SourceError> {
    let open = |reason: String| SourceError::Open {
        stream: stream.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| open(e.to_string()))?;
    if !meta.is_file() {
        return Err(open("not a regular file (expected a media file)".into()));
    }
    std::fs::File::open(path).map_err(|e| open(e.to_string()))?;
    let abs = std::fs::canonicalize(path).map_err(|e| open(e.to_string()))?;
    gst::glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|e| open(format!("cannot make a URI: {e}")))
}
