//! The annotated file: the input decoded again by GStreamer, each frame's overlay composed
//! on it by `overlaycomposition` (its `draw` signal asks us for the frame's overlay), then
//! H.264 (`x264enc`) and, when the input has audio, its audio as AAC, in MP4.

use super::draw::draw;
use super::scene::Recording;
use super::AnnotateError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What rendering did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rendered {
    /// Frames written.
    pub frames: u64,
    /// Overlays drawn (frames whose scene differed from the previous frame's).
    pub drawn: u64,
}

/// The annotation of one frame: the overlay of its scene, cached while the scene stays.
struct Painter {
    rec: Recording,
    font: fontdue::Font,
    tolerance: f64,
    last: Option<(
        super::scene::Scene,
        u32,
        u32,
        gst_video::VideoOverlayComposition,
    )>,
    stats: Rendered,
}

impl Painter {
    fn paint(&mut self, sample: &gst::Sample) -> Option<gst_video::VideoOverlayComposition> {
        let info = gst_video::VideoInfo::from_caps(sample.caps()?).ok()?;
        let buffer = sample.buffer()?;
        let pts = buffer.pts()?;
        let t = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
            .and_then(|s| s.to_stream_time(pts))
            .unwrap_or(pts)
            .nseconds() as f64
            / 1e9;
        self.stats.frames += 1;
        let scene = self.rec.scene(t, self.tolerance);
        let (w, h) = (info.width(), info.height());
        if let Some((s, lw, lh, comp)) = &self.last {
            if *s == scene && *lw == w && *lh == h {
                return Some(comp.clone());
            }
        }
        if scene == super::scene::Scene::default() {
            self.last = None;
            return None;
        }
        let o = draw(&scene, w, h, &self.font);
        let mut buf = gst::Buffer::from_mut_slice(o.bgra);
        let meta_buf = buf.get_mut()?;
        gst_video::VideoMeta::add(
            meta_buf,
            gst_video::VideoFrameFlags::empty(),
            gst_video::VideoFormat::Bgra,
            w,
            h,
        )
        .ok()?;
        let rect = gst_video::VideoOverlayRectangle::new_raw(
            &buf,
            0,
            0,
            w,
            h,
            gst_video::VideoOverlayFormatFlags::empty(),
        );
        let comp = gst_video::VideoOverlayComposition::new(Some(&rect)).ok()?;
        self.stats.drawn += 1;
        self.last = Some((scene, w, h, comp.clone()));
        Some(comp)
    }
}

/// Renders the whole of `input` with `rec`'s annotations into `out` (MP4); `audio`: the
/// input has an audio track to keep.
pub fn render(
    input: &Path,
    out: &Path,
    rec: Recording,
    font: fontdue::Font,
    audio: bool,
) -> Result<Rendered, AnnotateError> {
    let fail = |what: String| AnnotateError::Render {
        input: input.to_path_buf(),
        out: out.to_path_buf(),
        what,
    };
    gst::init().map_err(|e| fail(format!("GStreamer: {e}")))?;
    let uri = gst::glib::filename_to_uri(
        std::fs::canonicalize(input).map_err(|e| fail(format!("{e}")))?,
        None,
    )
    .map_err(|e| fail(format!("{e}")))?;
    let audio_branch = if audio {
        "d. ! audio/x-raw ! queue ! audioconvert ! audioresample ! avenc_aac ! queue ! mux."
    } else {
        ""
    };
    let desc = format!(
        "uridecodebin uri=\"{uri}\" name=d \
         d. ! video/x-raw ! queue ! videoconvert ! overlaycomposition name=ov ! videoconvert ! \
         x264enc speed-preset=veryfast ! h264parse ! queue ! mp4mux name=mux ! filesink location=\"{out}\" \
         {audio_branch}",
        out = out.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| {
            fail(format!(
                "{e} (install gstreamer1.0-plugins-ugly and -libav)"
            ))
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail("not a pipeline".into()))?;
    let ov = pipeline
        .by_name("ov")
        .ok_or_else(|| fail("no overlaycomposition element".into()))?;
    let painter = Arc::new(Mutex::new(Painter {
        rec,
        font,
        tolerance: 0.5,
        last: None,
        stats: Rendered::default(),
    }));
    {
        let painter = Arc::clone(&painter);
        ov.connect("draw", false, move |args| {
            let comp = args
                .get(1)
                .and_then(|v| v.get::<gst::Sample>().ok())
                .and_then(|s| painter.lock().ok()?.paint(&s));
            Some(match comp {
                Some(c) => c.to_value(),
                None => gst::glib::Value::from_type(
                    <gst_video::VideoOverlayComposition as StaticType>::static_type(),
                ),
            })
        });
    }
    let bus = pipeline.bus().ok_or_else(|| fail("no bus".into()))?;
    let wait = |until: gst::MessageType| -> Result<(), AnnotateError> {
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(600),
                &[until, gst::MessageType::Error],
            )
            .ok_or_else(|| fail("no progress for 600 s".into()))?;
        match msg.view() {
            gst::MessageView::Error(e) => Err(fail(format!(
                "{}: {}",
                e.src().map(|s| s.name().to_string()).unwrap_or_default(),
                e.error()
            ))),
            _ => Ok(()),
        }
    };
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        wait(gst::MessageType::Eos)
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let stats = painter.lock().map(|p| p.stats).unwrap_or_default();
    Ok(stats)
}
