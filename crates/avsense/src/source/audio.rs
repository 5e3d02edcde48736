//! The audio branch for audio inside files and streams:
//! `queue ! audioconvert ! audioresample ! appsink(F32LE, mono, 16 kHz)`.
//!
//! Mixdown and resampling happen once, here, in GStreamer; every audio encoder downstream
//! reads the same 16 kHz mono samples.

use super::state::{Shared, StreamTimes};
use super::{AudioChunk, AUDIO_RATE};
use crate::core::clock::Timestamp;
use crate::core::edge::EdgeSender;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};

/// A gap or overlap larger than this between consecutive buffers marks a discontinuity.
const DISCONT_TOLERANCE_NS: u64 = 10_000_000;

/// The caps the appsink accepts.
pub fn caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
        .field("rate", AUDIO_RATE as i32)
        .field("channels", 1i32)
        .build()
}

/// Adds the branch to `pipeline` and returns its first element.
pub(crate) fn add_branch(
    pipeline: &gst::Pipeline,
    stream: Arc<str>,
    tx: Arc<Mutex<Option<EdgeSender<AudioChunk>>>>,
    shared: Arc<Shared>,
) -> Result<gst::Element, gst::glib::BoolError> {
    let queue = gst::ElementFactory::make("queue")
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", 200_000_000u64)
        .build()?;
    let convert = gst::ElementFactory::make("audioconvert").build()?;
    let resample = gst::ElementFactory::make("audioresample").build()?;
    let sink = gst_app::AppSink::builder()
        .caps(&caps())
        // Never wait for the clock: live sources already deliver in real time, and a
        // synchronised sink would hold every buffer for the pipeline's whole latency (the
        // largest of all its live sources', e.g. 100 ms audio buffers delaying video).
        .sync(false)
        .max_buffers(8)
        .build();
    let elements = [&queue, &convert, &resample, sink.upcast_ref()];
    pipeline.add_many(elements)?;
    gst::Element::link_many(elements)?;

    let tx_eos = Arc::clone(&tx);
    let shared_eos = Arc::clone(&shared);
    let mut expected: Option<Timestamp> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    shared.note_error("audio appsink: a sample without a buffer".into());
                    return Err(gst::FlowError::Error);
                };
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let samples: Vec<f32> = map
                    .as_slice()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                drop(map);
                shared.note_base_time(sink.upcast_ref());
                let pts = match buffer.pts() {
                    Some(pts) => {
                        let st = sample
                            .segment()
                            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
                            .and_then(|s| s.to_stream_time(pts));
                        // Reconnected sessions continue the source's timeline.
                        Timestamp(st.unwrap_or(pts).nseconds() + shared.session_offset())
                    }
                    None => expected.unwrap_or(Timestamp::ZERO),
                };
                let discont = buffer.flags().contains(gst::BufferFlags::DISCONT)
                    || expected.is_some_and(|e| e.0.abs_diff(pts.0) > DISCONT_TOLERANCE_NS);
                if let (true, Some(e)) = (discont, expected) {
                    if let Ok(mut g) = shared.gaps.lock() {
                        g.note(StreamTimes::AUDIO, e, pts, crate::core::clock::Duration(0));
                    }
                }
                // Follow the sample count, not the buffer PTS, while the stream is
                // continuous: PTS rounding would otherwise jitter the timeline.
                let pts = match (discont, expected) {
                    (false, Some(e)) => e,
                    _ => pts,
                };
                let n = samples.len() as u64;
                let end = pts.plus_samples(n, AUDIO_RATE);
                expected = Some(end);
                shared.times.note(StreamTimes::AUDIO, end);
                shared.count_samples(n);
                // The A/V offset moves what the encoders see; progress and the truncation
                // check keep the media's own times. Audio moved before 0 is cut off there.
                let mut samples = samples;
                let start = pts.0 as i128 + shared.av_offset_ns as i128;
                let shifted = if start >= 0 {
                    Timestamp(start as u64)
                } else {
                    let skip = ((-start) as u128 * u128::from(AUDIO_RATE)).div_ceil(1_000_000_000)
                        as usize;
                    if skip >= samples.len() {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    samples.drain(..skip);
                    Timestamp(
                        (start + skip as i128 * 1_000_000_000 / AUDIO_RATE as i128).max(0) as u64,
                    )
                };
                let chunk = AudioChunk {
                    stream: Arc::clone(&stream),
                    pts: shifted,
                    sample_rate: AUDIO_RATE,
                    channels: 1,
                    samples,
                    discont,
                };
                shared.deliver(StreamTimes::AUDIO, &tx, chunk)
            })
            .eos(move |_| {
                // A reconnecting source keeps its edges across sessions.
                if shared_eos.keep_edges {
                    return;
                }
                if let Ok(mut g) = tx_eos.lock() {
                    g.take();
                }
                shared_eos.times.end(StreamTimes::AUDIO);
            })
            .build(),
    );
    for e in elements {
        e.sync_state_with_parent()?;
    }
    Ok(queue)
}
