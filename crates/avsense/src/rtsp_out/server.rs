//! The gst-rtsp-server side: one shared media factory per stream, fed by the frame tap
//! through an `appsrc`, on a GLib main loop of its own thread.

use super::RtspOutConfig;
use crate::core::features::{FrameTap, VisionFeatures};
use crate::core::media::Frame;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Why RTSP out could not start.
#[derive(Debug, thiserror::Error)]
pub enum RtspOutError {
    /// `listen` is not an address.
    #[error("[rtsp_out] listen = {listen:?}: not an address and port ({reason})")]
    Address {
        /// The value.
        listen: String,
        /// Why.
        reason: String,
    },
    /// The server could not start (GStreamer, the port in use).
    #[error("[rtsp_out] cannot serve on {addr}: {reason}")]
    Start {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// What one stream's tap needs: the appsrc of its media while a client watches.
#[derive(Default)]
struct Slot {
    src: Option<gst_app::AppSrc>,
    /// The caps set on `src`.
    caps: Option<(u32, u32)>,
    /// The last frame size seen (for the caps of a media prepared before the next frame).
    size: Option<(u32, u32)>,
    /// The pts of the last picture sent, seconds.
    last: Option<f64>,
}

type Slots = Arc<Mutex<HashMap<String, Slot>>>;

/// A running RTSP server (stops when dropped).
pub struct RtspOut {
    slots: Slots,
    fps: u32,
    url: String,
    main_loop: gst::glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

const LAUNCH: &str = "( appsrc name=src is-live=true format=time do-timestamp=true \
    ! queue leaky=downstream max-size-buffers=4 ! videoconvert ! video/x-raw,format=I420 \
    ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bframes=0 \
    ! rtph264pay name=pay0 pt=96 config-interval=1 )";

fn caps(w: u32, h: u32, fps: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", w as i32)
        .field("height", h as i32)
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build()
}

impl RtspOut {
    /// Serves `streams` at `rtsp://<listen>/<stream>`.
    pub fn start(cfg: &RtspOutConfig, streams: &[String]) -> Result<Self, RtspOutError> {
        let (host, port) = match cfg.addr() {
            Some(Ok(a)) => a,
            Some(Err(reason)) => {
                return Err(RtspOutError::Address {
                    listen: cfg.listen.clone().unwrap_or_default(),
                    reason,
                })
            }
            None => ("127.0.0.1".into(), 8554),
        };
        let addr = format!("{host}:{port}");
        let fail = |reason: String| RtspOutError::Start {
            addr: addr.clone(),
            reason,
        };
        gst::init().map_err(|e| fail(e.to_string()))?;
        // gst-rtsp-server does not say when a port is taken until a client fails: ask first.
        std::net::TcpListener::bind((host.as_str(), port)).map_err(|e| fail(e.to_string()))?;
        let server = rtsp::RTSPServer::new();
        server.set_address(&host);
        server.set_service(&port.to_string());
        let mounts = server
            .mount_points()
            .ok_or_else(|| fail("the server has no mount points".into()))?;
        let slots: Slots = Arc::default();
        let fps = cfg.fps;
        for name in streams {
            slots
                .lock()
                .map_err(|_| fail("poisoned".into()))?
                .entry(name.clone())
                .or_default();
            let factory = rtsp::RTSPMediaFactory::new();
            factory.set_launch(LAUNCH);
            factory.set_shared(true);
            let (slots_cfg, stream) = (Arc::clone(&slots), name.clone());
            factory.connect_media_configure(move |_, media| {
                let Some(src) = media
                    .element()
                    .downcast_ref::<gst::Bin>()
                    .and_then(|b| b.by_name_recurse_up("src"))
                    .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                else {
                    tracing::warn!(stream = %stream, "[rtsp_out] the media has no appsrc");
                    return;
                };
                let Ok(mut g) = slots_cfg.lock() else {
                    return;
                };
                let slot = g.entry(stream.clone()).or_default();
                slot.caps = slot.size;
                if let Some((w, h)) = slot.size {
                    src.set_caps(Some(&caps(w, h, fps)));
                }
                slot.src = Some(src);
                slot.last = None;
                let (slots_gone, stream_gone) = (Arc::clone(&slots_cfg), stream.clone());
                media.connect_unprepared(move |_| {
                    if let Ok(mut g) = slots_gone.lock() {
                        if let Some(s) = g.get_mut(&stream_gone) {
                            s.src = None;
                        }
                    }
                });
            });
            mounts.add_factory(&format!("/{name}"), factory);
        }
        let ctx = gst::glib::MainContext::new();
        // The source stays attached to `ctx` until the loop's thread ends.
        let _source = server.attach(Some(&ctx)).map_err(|e| fail(e.to_string()))?;
        let main_loop = gst::glib::MainLoop::new(Some(&ctx), false);
        let run = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("avsense-rtsp-out".into())
            .spawn(move || {
                // The server lives as long as its loop runs.
                let _server = server;
                let _ = ctx.with_thread_default(|| run.run());
            })
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            slots,
            fps,
            url: format!("rtsp://{addr}/"),
            main_loop,
            thread: Some(thread),
        })
    }

    /// `rtsp://host:port/` (append a stream's name).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The tap that feeds the clients (give it to [`crate::Pipeline::with_frame_tap`]).
    pub fn frame_tap(&self) -> FrameTap {
        let (slots, fps) = (Arc::clone(&self.slots), self.fps);
        Arc::new(move |frame: &Frame, f: &VisionFeatures| offer(&slots, fps, frame, f))
    }
}

fn offer(slots: &Slots, fps: u32, frame: &Frame, f: &VisionFeatures) {
    let (w, h) = (frame.width, frame.height);
    let pts = frame.pts.as_secs_f64();
    let src = {
        let Ok(mut g) = slots.lock() else {
            return;
        };
        let Some(slot) = g.get_mut(&*frame.stream) else {
            return;
        };
        slot.size = Some((w, h));
        let due = slot
            .last
            .is_none_or(|l| pts < l || pts - l >= 1.0 / f64::from(fps) - 1e-6);
        let Some(src) = slot.src.clone().filter(|_| due) else {
            return;
        };
        if slot.caps != Some((w, h)) {
            src.set_caps(Some(&caps(w, h, fps)));
            slot.caps = Some((w, h));
        }
        slot.last = Some(pts);
        src
    };
    let Some(rgb) = crate::snapshot::boxed_rgb(frame, f) else {
        return;
    };
    if src.push_buffer(gst::Buffer::from_mut_slice(rgb)).is_err() {
        // The media is going away (its last client left): wait for the next one.
        if let Ok(mut g) = slots.lock() {
            if let Some(s) = g.get_mut(&*frame.stream) {
                s.src = None;
            }
        }
    }
}

impl Drop for RtspOut {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
