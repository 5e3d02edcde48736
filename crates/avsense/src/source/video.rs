//! The video branch: `queue ! videoscale ! videoconvert ! appsink(caps of the VideoSpec)`.
//!
//! Scaling runs before colour conversion: on 1080p H.264 that is ≈ 30 % faster than the
//! other order (FACTS.md), because the conversion then touches the small frame only.

use super::state::{Shared, StreamTimes};
use super::{Frame, PixelFormat, VideoSpec};
use crate::core::clock::{Duration, Timestamp};
use crate::core::edge::EdgeSender;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::sync::{Arc, Mutex};

/// Builds the caps the appsink accepts for `spec`.
///
/// Luma-only specs ask for I420 and read its first plane: decoders output 4:2:0, so this
/// skips the colour conversion entirely (measured: about half the CPU of scale + convert to
/// GRAY8 on 1080p H.264).
pub fn caps_for(spec: &VideoSpec) -> gst::Caps {
    let format = match spec.format {
        PixelFormat::Gray8 => "I420",
        other => other.gst_name(),
    };
    let b = gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", spec.width as i32);
    match spec.height {
        // Both sides fixed (a detector's input): the picture is stretched to fit.
        Some(h) => b.field("height", h as i32).build(),
        // Width only: square pixels, the height follows the display aspect ratio.
        None => b
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    }
}

/// Adds the branch to `pipeline` and returns its first element (to link the decoder to).
pub(crate) fn add_branch(
    pipeline: &gst::Pipeline,
    spec: &VideoSpec,
    stream: Arc<str>,
    tx: Arc<Mutex<Option<EdgeSender<Frame>>>>,
    shared: Arc<Shared>,
) -> Result<gst::Element, gst::glib::BoolError> {
    let queue = gst::ElementFactory::make("queue")
        .property("max-size-buffers", 4u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", 0u64)
        .build()?;
    // No black borders: analysis sees the whole picture (stretched when both sides are fixed).
    let scale = gst::ElementFactory::make("videoscale")
        .property("add-borders", false)
        .build()?;
    if spec.format == PixelFormat::Gray8 {
        // Luma for motion only: nearest-neighbour sampling. Motion compares each pixel with
        // its own running background, so the same source pixels are sampled every frame and
        // aliasing does not show up as change; on 1080p it costs ≈ 0.3 CPU s less per minute
        // than bilinear (FACTS.md: +0.15 vs +0.45 CPU s on top of decode).
        scale.set_property_from_str("method", "nearest-neighbour");
    }
    let convert = gst::ElementFactory::make("videoconvert").build()?;
    let sink = gst_app::AppSink::builder()
        .caps(&caps_for(spec))
        // Never wait for the clock: live sources already deliver in real time, and a
        // synchronised sink would hold every buffer for the pipeline's whole latency (the
        // largest of all its live sources', e.g. 100 ms audio buffers delaying video).
        .sync(false)
        .max_buffers(2)
        .build();
    let elements = [&queue, &scale, &convert, sink.upcast_ref()];
    pipeline.add_many(elements)?;
    gst::Element::link_many(elements)?;

    let format = spec.format;
    let tx_eos = Arc::clone(&tx);
    let shared_eos = Arc::clone(&shared);
    let mut index = 0u64;
    let mut last: Option<(Timestamp, Duration)> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                shared.note_base_time(sink.upcast_ref());
                let frame = match to_frame(&sample, format, &stream, index, last) {
                    Some(mut f) => {
                        // Reconnected sessions continue the source's timeline.
                        f.pts = Timestamp(f.pts.0 + shared.session_offset());
                        f
                    }
                    None => {
                        shared.note_error(format!(
                            "video appsink: a sample without caps or buffer (frame {index})"
                        ));
                        return Err(gst::FlowError::Error);
                    }
                };
                index += 1;
                if let Some((p, d)) = last {
                    // A jump past the expected next frame: frames the decoder skipped.
                    if let Ok(mut g) = shared.gaps.lock() {
                        g.note(StreamTimes::VIDEO, p + d, frame.pts, d);
                    }
                }
                last = Some((frame.pts, frame.duration));
                shared
                    .times
                    .note(StreamTimes::VIDEO, frame.pts + frame.duration);
                shared.count_frame();
                // The lock guards only the Option; it is uncontended (this streaming thread
                // and the EOS callback below run one after the other).
                shared.deliver(StreamTimes::VIDEO, &tx, frame)
            })
            .eos(move |_| {
                // End of video: dropping the sender closes the edge, which is how the
                // encoders and the aligner learn that this modality has ended.
                // A reconnecting source keeps its edges across sessions.
                if shared_eos.keep_edges {
                    return;
                }
                if let Ok(mut g) = tx_eos.lock() {
                    g.take();
                }
                shared_eos.times.end(StreamTimes::VIDEO);
            })
            .build(),
    );
    for e in elements {
        e.sync_state_with_parent()?;
    }
    Ok(queue)
}

fn to_frame(
    sample: &gst::Sample,
    format: PixelFormat,
    stream: &Arc<str>,
    index: u64,
    last: Option<(Timestamp, Duration)>,
) -> Option<Frame> {
    let caps = sample.caps()?;
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    let buffer = sample.buffer_owned()?;
    let fps = info.fps();
    let nominal = if fps.numer() > 0 {
        Duration(1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64)
    } else {
        Duration(0)
    };
    let duration = buffer
        .duration()
        .map(|d| Duration(d.nseconds()))
        .unwrap_or(nominal);
    let pts = match buffer.pts() {
        Some(pts) => {
            // Report times on the stream's own timeline (files: from the start of the file).
            let stream_time = sample
                .segment()
                .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                .and_then(|s| s.to_stream_time(pts));
            Timestamp(stream_time.unwrap_or(pts).nseconds())
        }
        None => last.map(|(p, d)| p + d).unwrap_or(Timestamp::ZERO),
    };
    // The first plane (RGB's only one, I420's luma) must start the buffer: Frame::row reads
    // from offset 0.
    if info.offset().first().copied() != Some(0) {
        return None;
    }
    let stride = usize::try_from(*info.stride().first()?).ok()?;
    let data = buffer.into_mapped_buffer_readable().ok()?;
    Some(Frame::from_mapped(
        Arc::clone(stream),
        pts,
        duration,
        info.width(),
        info.height(),
        stride,
        format,
        index,
        data,
    ))
}
