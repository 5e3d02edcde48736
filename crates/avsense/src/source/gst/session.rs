//! One GStreamer pipeline from start to end of stream, error, stall or stop: the bus loop.

use super::build::file_uri;
use super::{GstSource, SessionEnd};
use crate::core::errors::fold;
use crate::source::state::{clock_now, Slot, StreamTimes};
use crate::source::{AudioChunk, Frame, Modality, SourceError, SourceKind};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

impl GstSource {
    /// One GStreamer pipeline from start to end of stream, error, stall or stop.
    /// `on_data` is called once, when the session's first buffer has arrived.
    pub(super) fn run_session(
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
            SourceKind::Push | SourceKind::Zenoh => {
                self.build_push(&pipeline, video_slot, audio_slot, &linked)
                    .map_err(|e| build_err(format!("push source: {e}")))?;
            }
        }

        let bus = pipeline
            .bus()
            .ok_or_else(|| build_err("the pipeline has no bus".into()))?;
        if self.cfg.start.is_some() || self.cfg.end.is_some() {
            if let Err(e) = self.seek_to_range(&pipeline, &bus) {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(e);
            }
        }
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
        let mut stopped_downstream = false;
        let session_start = clock_now();
        let stall_ns = (self.cfg.stall_timeout * 1e9) as u64;
        loop {
            if !data_seen && self.shared.session_buffers.load(Ordering::Acquire) > 0 {
                data_seen = true;
                on_data();
            }
            if self.cfg.kind == SourceKind::Rtsp && !eos_sent {
                // A network stream that stops delivering is lost even if no element says so
                // (a server that hangs, a cable pulled without a TCP reset).
                let since = match self.shared.last_arrival.load(Ordering::Acquire) {
                    // Before this session's first buffer, connecting may take one stall
                    // period more (a last arrival from an earlier session does not count).
                    t if data_seen && t >= session_start => t,
                    _ => session_start + stall_ns,
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
            if self.shared.stop.is_set() && !eos_sent {
                // A stop is an end of stream: every element flushes, open events close.
                pipeline.send_event(gst::event::Eos::new());
                eos_sent = true;
            }
            if self.shared.downstream_gone() {
                // Every stage behind the source has stopped (a failed encoder, every sink
                // gone): nothing decoded from here on can go anywhere.
                stopped_downstream = true;
                break;
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
        *declared = (dur > 0).then(|| {
            // A range ends where it says (or at the file's end, if that comes first).
            let dur = dur as f64 / 1e9;
            self.cfg.end.map_or(dur, |e| e.min(dur))
        });
        if result.is_ok() && modalities.is_empty() && !eos_sent {
            result = Err(SourceError::NoStreams {
                stream: stream.clone(),
                input: input.clone(),
            });
        }
        let stopped = eos_sent || stopped_downstream;
        if !stopped && !self.cfg.is_live() {
            self.check_completeness(&mut result, modalities, *declared, &stream, &input);
        }
        let _ = got_eos;
        result.map(|()| {
            if stopped {
                SessionEnd::Stopped
            } else {
                SessionEnd::Eos
            }
        })
    }

    /// A recorded input that ran to its end: a file whose every track ends well before the
    /// declared duration is truncated (an error); one track ending early, or gaps inside the
    /// media, are warnings (see [`crate::source::completeness`]).
    fn check_completeness(
        &self,
        result: &mut Result<(), SourceError>,
        modalities: &[Modality],
        declared: Option<f64>,
        stream: &str,
        input: &str,
    ) {
        let slack = declared.map(|d| (0.02 * d).max(1.0)).unwrap_or(1.0);
        if let (Ok(()), Some(declared)) = (&result, declared) {
            let ended_at = self.shared.times.position().as_secs_f64();
            if ended_at + slack < declared {
                *result = Err(SourceError::Truncated {
                    stream: stream.to_string(),
                    input: input.to_string(),
                    ended_at,
                    declared,
                });
            }
        }
        let tracks: Vec<(Modality, crate::core::clock::Timestamp)> = if result.is_ok() {
            modalities
                .iter()
                .map(|&m| {
                    let which = match m {
                        Modality::Video => StreamTimes::VIDEO,
                        Modality::Audio => StreamTimes::AUDIO,
                    };
                    (m, self.shared.times.end_of(which))
                })
                .collect()
        } else {
            Vec::new()
        };
        let warnings = match self.shared.gaps.lock() {
            Ok(g) => g.warnings(&tracks, declared, slack),
            Err(_) => Vec::new(),
        };
        if let Ok(mut w) = self.shared.warnings.lock() {
            w.extend(warnings);
        }
    }

    /// A recorded input with `start`/`end`: prerolls the pipeline (paused), then seeks to
    /// the range, frame-accurately (decoders drop what comes before `start`, so the first
    /// frame and audio sample are at `start` in the file's time).
    fn seek_to_range(&self, pipeline: &gst::Pipeline, bus: &gst::Bus) -> Result<(), SourceError> {
        let failed = |message: String| SourceError::Stream {
            stream: self.cfg.name.clone(),
            input: self.input_name(),
            element: "seek".into(),
            message,
            debug: String::new(),
        };
        let bus_error = |bus: &gst::Bus| {
            bus.pop_filtered(&[gst::MessageType::Error])
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(err) => Some(self.stream_error(err)),
                    _ => None,
                })
        };
        if let Err(e) = pipeline.set_state(gst::State::Paused) {
            return Err(bus_error(bus).unwrap_or_else(|| failed(format!("cannot start: {e}"))));
        }
        // Preroll: every pad linked and a first buffer at every sink (a file opens in well
        // under a second; a remote URI may take longer; a stop ends the wait).
        let deadline = clock_now() + 60_000_000_000;
        loop {
            if self.shared.stop.is_set() {
                return Ok(());
            }
            if clock_now() > deadline {
                return Err(failed(
                    "the input did not preroll within 60 s, so it cannot seek".into(),
                ));
            }
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::AsyncDone, gst::MessageType::Error],
            ) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(err) => return Err(self.stream_error(err)),
                _ => break,
            }
        }
        self.update_duration(pipeline);
        let secs = |s: f64| gst::ClockTime::from_nseconds((s * 1e9).round() as u64);
        let start = secs(self.cfg.start.unwrap_or(0.0));
        let known = self.shared.duration_ns.load(Ordering::Relaxed);
        if known > 0 && start.nseconds() >= known {
            return Err(failed(format!(
                "start = {:.3} s is at or after the input's end ({:.3} s)",
                start.seconds_f64(),
                known as f64 / 1e9
            )));
        }
        let (stop_type, stop) = match self.cfg.end {
            Some(e) => (gst::SeekType::Set, Some(secs(e))),
            None => (gst::SeekType::None, gst::ClockTime::NONE),
        };
        pipeline
            .seek(
                1.0,
                gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
                gst::SeekType::Set,
                Some(start),
                stop_type,
                stop,
            )
            .map_err(|e| failed(format!("the input cannot seek to {start}: {e}")))
    }

    /// Notes the container's duration, once the pipeline knows it.
    pub(super) fn update_duration(&self, pipeline: &gst::Pipeline) {
        if let Some(d) = pipeline.query_duration::<gst::ClockTime>() {
            self.shared
                .duration_ns
                .store(d.nseconds(), Ordering::Relaxed);
        }
    }

    /// The source's error for an element's error message.
    pub(super) fn stream_error(&self, err: &gst::message::Error) -> SourceError {
        let mut message = err.error().to_string();
        // souphttpsrc reports a refused or unreachable server only as "Internal data
        // stream error"; the socket's own error says what happened.
        if self.cfg.kind == SourceKind::Uri && message.contains("Internal data stream error") {
            if let Some(why) = self.cfg.uri.as_deref().and_then(http_unreachable) {
                message = format!("{message} ({why})");
            }
        }
        SourceError::Stream {
            stream: self.cfg.name.clone(),
            input: self.input_name(),
            element: err
                .src()
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| "?".into()),
            message,
            debug: err.debug().map(|d| fold(&d)).unwrap_or_default(),
        }
    }
}

/// For an `http://` or `https://` URI: why a TCP connection to its server fails, if it does
/// (within 3 s); None when it connects or the URI is not HTTP.
fn http_unreachable(uri: &str) -> Option<String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let (scheme, rest) = uri.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(port) => (h, port),
            Err(_) => (host_port, default_port), // "[::1]" without a port
        },
        None => (host_port, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Some(format!("cannot resolve {host}: {e}")),
    };
    let mut last = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, std::time::Duration::from_secs(3)) {
            Ok(_) => return None,
            Err(e) => last = Some(format!("connecting to {a}: {e}")),
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::http_unreachable;

    #[test]
    fn a_refused_http_server_is_named() {
        // Port 9 (discard) has no listener here.
        let why = http_unreachable("http://127.0.0.1:9/clip.mp4").expect("refused");
        assert!(
            why.contains("127.0.0.1:9") && why.to_lowercase().contains("refused"),
            "{why}"
        );
        assert!(http_unreachable("rtsp://127.0.0.1:9/x").is_none());
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(http_unreachable(&format!("http://127.0.0.1:{port}/x")).is_none());
    }
}
