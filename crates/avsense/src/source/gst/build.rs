//! Building a session's pipeline for each kind of input, and linking decoded pads to the
//! video and audio branches.

use super::GstSource;
use crate::source::config::{CameraFormat, RtspTransport};
use crate::source::state::{Slot, StreamTimes};
use crate::source::{audio, video, AudioChunk, Frame, Modality, SourceError};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::Path;
use std::sync::{Arc, Mutex};

impl GstSource {
    /// rtspsrc settings (transport, jitter-buffer latency, timeouts), applied when
    /// uridecodebin creates it.
    pub(super) fn configure_rtsp(&self, decode: &gst::Element) {
        let transport = match self.cfg.transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
            RtspTransport::Auto => "udp+udp-mcast+tcp",
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
    pub(super) fn build_v4l2(&self, pipeline: &gst::Pipeline) -> Result<gst::Element, String> {
        let device = self.v4l2_device();
        let mut structures = Vec::new();
        let raw = matches!(self.cfg.format, CameraFormat::Any | CameraFormat::Yuyv);
        let jpeg = matches!(self.cfg.format, CameraFormat::Any | CameraFormat::Mjpeg);
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
            if self.cfg.format == CameraFormat::Yuyv {
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

    /// Links each decoded pad to its branch as it appears; unwanted or duplicate tracks go
    /// to a fakesink (an unlinked pad would stop the decoder); modalities that never
    /// appear are closed when the decoder says it has no more pads.
    pub(super) fn connect_decoder(
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
                    _ => audio::add_branch(
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

    pub(super) fn build_test(
        &self,
        pipeline: &gst::Pipeline,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) -> Result<(), gst::glib::BoolError> {
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
            self.video_branch(pipeline, &caps, video_slot, linked)?;
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
            self.audio_branch(pipeline, &caps, audio_slot, linked)?;
        } else if let Ok(mut g) = audio_slot.lock() {
            g.take();
        }
        Ok(())
    }

    /// `kind = "push"`: an appsrc per pushed modality into its branch; the appsrcs are
    /// handed to the [`PushInput`](crate::source::push::PushInput) once the branches exist.
    pub(super) fn build_push(
        &self,
        pipeline: &gst::Pipeline,
        video_slot: &Slot<Frame>,
        audio_slot: &Slot<AudioChunk>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) -> Result<(), gst::glib::BoolError> {
        let live = self.cfg.is_live();
        let block = self.cfg.effective_policy() == crate::core::edge::EdgePolicy::Block;
        let appsrc = |max_buffers: u64| {
            let src = gstreamer_app::AppSrc::builder()
                .format(gst::Format::Time)
                .is_live(live)
                .block(block)
                .max_bytes(0)
                .build();
            if src.find_property("max-buffers").is_some() {
                src.set_property("max-buffers", max_buffers);
            }
            if !block && src.find_property("leaky-type").is_some() {
                // Live: a full queue drops its oldest buffer instead of blocking the caller.
                src.set_property_from_str("leaky-type", "downstream");
            }
            src
        };
        let video = if self.cfg.video {
            let src = appsrc(4);
            let convert = gst::ElementFactory::make("videoconvert").build()?;
            pipeline.add_many([src.upcast_ref(), &convert])?;
            src.link(&convert)?;
            self.video_branch(pipeline, &convert, video_slot, linked)?;
            Some(src)
        } else {
            if let Ok(mut g) = video_slot.lock() {
                g.take();
            }
            None
        };
        let audio = if self.gst_audio() {
            let src = appsrc(64);
            pipeline.add(src.upcast_ref::<gst::Element>())?;
            self.audio_branch(pipeline, src.upcast_ref(), audio_slot, linked)?;
            Some(src)
        } else {
            if let Ok(mut g) = audio_slot.lock() {
                g.take();
            }
            None
        };
        if let Some(p) = &self.push {
            p.attach(video, audio);
        }
        Ok(())
    }

    /// A new video branch fed by `upstream`; the modality is recorded as linked.
    fn video_branch(
        &self,
        pipeline: &gst::Pipeline,
        upstream: &gst::Element,
        video_slot: &Slot<Frame>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) -> Result<(), gst::glib::BoolError> {
        let head = video::add_branch(
            pipeline,
            &self.spec,
            Arc::from(self.cfg.name.as_str()),
            Arc::clone(video_slot),
            Arc::clone(&self.shared),
        )?;
        upstream.link(&head)?;
        if let Ok(mut l) = linked.lock() {
            l.push(Modality::Video);
        }
        Ok(())
    }

    /// A new audio branch fed by `upstream`; the modality is recorded as linked.
    fn audio_branch(
        &self,
        pipeline: &gst::Pipeline,
        upstream: &gst::Element,
        audio_slot: &Slot<AudioChunk>,
        linked: &Arc<Mutex<Vec<Modality>>>,
    ) -> Result<(), gst::glib::BoolError> {
        let head = audio::add_branch(
            pipeline,
            Arc::from(self.cfg.name.as_str()),
            Arc::clone(audio_slot),
            Arc::clone(&self.shared),
        )?;
        upstream.link(&head)?;
        if let Ok(mut l) = linked.lock() {
            l.push(Modality::Audio);
        }
        Ok(())
    }

    /// Whether the audio comes from GStreamer (not from a configured microphone).
    pub(super) fn gst_audio(&self) -> bool {
        self.cfg.audio && self.cfg.microphone.is_none()
    }

    /// `kind = "gst"`: the launch description as a bin whose unlinked source pads are
    /// ghosted; each pad is linked by its caps to the video or the audio branch (the first of
    /// each; a modality the config disables, or a second pad of one, goes to a fakesink).
    pub(super) fn build_launch(
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
                    Modality::Audio => audio::add_branch(
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

pub(super) fn fakesink(pipeline: &gst::Pipeline) -> Option<gst::Element> {
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
pub(super) fn file_uri(stream: &str, path: &Path) -> Result<String, SourceError> {
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
