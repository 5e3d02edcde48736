//! A clip decoded by the test itself into frames and audio in the decoder's own layouts
//! (what a program with its own decoder would push or publish).

use super::*;
use avsense::source::push::PushFormat;
use gstreamer_app as gst_app;

/// The caller's clock: pushed timestamps start here (any monotonic origin works).
pub const CALLER_ORIGIN_NS: u64 = 7_000_000_000;

pub enum Item {
    Video {
        pts: u64,
        w: u32,
        h: u32,
        data: Vec<u8>,
    },
    Audio {
        pts: u64,
        rate: u32,
        channels: u16,
        samples: Vec<f32>,
    },
}

impl Item {
    pub fn pts(&self) -> u64 {
        match self {
            Item::Video { pts, .. } | Item::Audio { pts, .. } => *pts,
        }
    }
}

/// Decodes `clip` to I420 frames and interleaved F32 audio (the decoder's own layouts, so the
/// pushed data is what the file source would have had), ordered by time.
pub fn decode(clip: &Path) -> Vec<Item> {
    gst::init().expect("gst");
    let desc = format!(
        "uridecodebin uri={uri} name=d \
         d. ! queue ! videoconvert ! video/x-raw,format=I420 ! appsink name=v sync=false \
         d. ! queue ! audioconvert ! audio/x-raw,format=F32LE,layout=interleaved ! appsink name=a sync=false",
        uri = gst::glib::filename_to_uri(clip, None).expect("uri")
    );
    let pipeline = gst::parse::launch(&desc)
        .expect("decode pipeline")
        .downcast::<gst::Pipeline>()
        .expect("pipeline");
    let items: Arc<Mutex<Vec<Item>>> = Arc::default();
    for name in ["v", "a"] {
        let sink = pipeline
            .by_name(name)
            .expect("appsink")
            .downcast::<gst_app::AppSink>()
            .expect("appsink");
        let items = Arc::clone(&items);
        let video = name == "v";
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let caps = sample
                        .caps()
                        .expect("caps")
                        .structure(0)
                        .expect("s")
                        .to_owned();
                    let buf = sample.buffer().expect("buffer");
                    // Presentation time as a player shows it (the segment's running time:
                    // an MP4 edit list starts the video at 0 like the file source does).
                    let raw = buf.pts().expect("pts");
                    let running = sample
                        .segment()
                        .and_then(|seg| seg.downcast_ref::<gst::ClockTime>())
                        .and_then(|seg| seg.to_running_time(raw))
                        .unwrap_or(raw);
                    let pts = running.nseconds() + CALLER_ORIGIN_NS;
                    let map = buf.map_readable().expect("map");
                    let item = if video {
                        let (w, h) = (
                            caps.get::<i32>("width").unwrap() as u32,
                            caps.get::<i32>("height").unwrap() as u32,
                        );
                        // Tight planes (the decoder's strides may pad rows).
                        let info =
                            gstreamer_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
                        let mut data = Vec::with_capacity(PushFormat::I420.size(w, h));
                        for (p, (cw, ch)) in [
                            (w, h),
                            (w.div_ceil(2), h.div_ceil(2)),
                            (w.div_ceil(2), h.div_ceil(2)),
                        ]
                        .into_iter()
                        .enumerate()
                        {
                            let (off, stride) = (info.offset()[p], info.stride()[p] as usize);
                            for r in 0..ch as usize {
                                data.extend_from_slice(
                                    &map[off + r * stride..off + r * stride + cw as usize],
                                );
                            }
                        }
                        Item::Video { pts, w, h, data }
                    } else {
                        Item::Audio {
                            pts,
                            rate: caps.get::<i32>("rate").unwrap() as u32,
                            channels: caps.get::<i32>("channels").unwrap() as u16,
                            samples: map
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                .collect(),
                        }
                    };
                    items.lock().unwrap().push(item);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).expect("play");
    let bus = pipeline.bus().expect("bus");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("decode: {}", e.error()),
            _ => {}
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let mut items = std::mem::take(&mut *items.lock().unwrap());
    items.sort_by_key(Item::pts);
    items
}

/// The dev clip's first 10 s, copied (no re-encode).
pub fn ten_seconds() -> Option<PathBuf> {
    let clip = shared_media("av/person_sounds_dev.mp4")?;
    Some(generate_once(&scratch("push").join("dev10.mp4"), |p| {
        ffmpeg(&[
            "-y",
            "-i",
            clip.to_str().unwrap(),
            "-t",
            "10",
            "-c",
            "copy",
            "-f",
            "mp4",
            p.to_str().unwrap(),
        ]);
    }))
}
