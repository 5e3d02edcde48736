//! Push input: frames and audio decoded by the test itself (GStreamer, in the decoder's own
//! formats) and pushed through `Running::input` give the same events as the file run on
//! the same media; bad pushes are errors that leave the input running; a pusher that goes
//! away mid-stream ends the input cleanly.
mod common;

use avsense::sink::{CallbackSink, EventSink};
use avsense::source::push::{PushError, PushFormat, PushInput, PushSamples};
use avsense::source::{SourceConfig, SourceKind};
use avsense::{Event, Pipeline, PipelineConfig};
use common::*;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The caller's clock: pushed timestamps start here (any monotonic origin works).
const CALLER_ORIGIN_NS: u64 = 7_000_000_000;

enum Item {
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
    fn pts(&self) -> u64 {
        match self {
            Item::Video { pts, .. } | Item::Audio { pts, .. } => *pts,
        }
    }
}

/// Decodes `clip` to I420 frames and interleaved F32 audio (the decoder's own layouts, so the
/// pushed data is what the file source would have had), ordered by time.
fn decode(clip: &Path) -> Vec<Item> {
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

fn push_all(input: &PushInput, items: &[Item]) {
    for it in items {
        match it {
            Item::Video { pts, w, h, data } => input
                .push_video(*pts, *w, *h, PushFormat::I420, data)
                .expect("push video"),
            Item::Audio {
                pts,
                rate,
                channels,
                samples,
            } => input
                .push_audio(*pts, *rate, *channels, PushSamples::F32(samples))
                .expect("push audio"),
        }
    }
}

/// The dev clip's first 10 s, copied (no re-encode).
fn ten_seconds() -> Option<PathBuf> {
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

fn collect() -> (Box<dyn EventSink>, Arc<Mutex<Vec<Event>>>) {
    let got: Arc<Mutex<Vec<Event>>> = Arc::default();
    let g = Arc::clone(&got);
    (
        Box::new(CallbackSink(move |e: &Event| {
            if e.phase == avsense::core::event::Phase::End {
                g.lock().unwrap().push(e.clone())
            }
        })),
        got,
    )
}

fn push_config() -> PipelineConfig {
    let mut cfg = PipelineConfig::for_input("unused.mp4", None).expect("config");
    cfg.sources = vec![SourceConfig::new("input", SourceKind::Push)];
    cfg
}

#[test]
fn pushed_frames_and_audio_give_the_file_runs_events() {
    let Some(clip) = ten_seconds() else {
        return;
    };
    let items = decode(&clip);
    assert!(
        items
            .iter()
            .filter(|i| matches!(i, Item::Video { .. }))
            .count()
            >= 90
    );

    let file = run_ok(
        PipelineConfig::for_input(clip.to_str().unwrap(), None).expect("config"),
        &clip,
    );

    let (sink, got) = collect();
    let running = Pipeline::new(push_config())
        .expect("pipeline")
        .start(vec![sink])
        .expect("start");
    assert!(running.input("nope").is_none());
    let input = running.input("input").expect("the push input");
    push_all(&input, &items);

    // Bad pushes: errors, and the input goes on.
    let e = input
        .push_video(CALLER_ORIGIN_NS, 768, 432, PushFormat::I420, &[0u8; 7])
        .unwrap_err();
    assert!(matches!(e, PushError::Length { got: 7, .. }), "{e}");
    let e = input
        .push_video(
            CALLER_ORIGIN_NS,
            768,
            432,
            PushFormat::I420,
            &vec![0u8; PushFormat::I420.size(768, 432)],
        )
        .unwrap_err();
    assert!(matches!(e, PushError::PtsBackwards { .. }), "{e}");
    let e = input
        .push_audio(u64::MAX, 0, 1, PushSamples::F32(&[0.0; 4]))
        .unwrap_err();
    assert!(matches!(e, PushError::Unsupported { .. }), "{e}");
    let e = input
        .push_audio(u64::MAX, 48_000, 2, PushSamples::I16(&[0; 3]))
        .unwrap_err();
    assert!(matches!(e, PushError::Length { .. }), "{e}");
    input.finish();
    let e = input
        .push_audio(u64::MAX, 48_000, 1, PushSamples::F32(&[0.0; 4]))
        .unwrap_err();
    assert!(matches!(e, PushError::Ended { .. }), "{e}");
    let report = running.wait().expect("wait");
    assert!(report.first_error().is_none(), "{:?}", report.first_error());
    let pushed = std::mem::take(&mut *got.lock().unwrap());

    // The same object / speech / sound_source events, times within one frame (0.1 s).
    let pick = |events: &[Event]| -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                matches!(
                    serde_json::to_value(e.kind).unwrap().as_str(),
                    Some("object" | "speech" | "sound_source")
                )
            })
            .cloned()
            .collect()
    };
    let (want, have) = (pick(&file.events), pick(&pushed));
    assert!(
        want.len() >= 3,
        "the file run has events to compare: {want:?}"
    );
    assert_eq!(
        want.iter()
            .map(|e| (e.kind, e.labels.first().map(|l| l.name.clone())))
            .collect::<Vec<_>>(),
        have.iter()
            .map(|e| (e.kind, e.labels.first().map(|l| l.name.clone())))
            .collect::<Vec<_>>(),
        "file: {want:#?}\npushed: {have:#?}"
    );
    for (a, b) in want.iter().zip(&have) {
        assert!(
            (a.start - b.start).abs() <= 0.1 + 1e-6 && (a.end - b.end).abs() <= 0.1 + 1e-6,
            "{a:?}\n{b:?}"
        );
    }
    eprintln!(
        "push = file: {} object/speech/sound_source events",
        want.len()
    );
}

#[test]
fn a_pusher_that_goes_away_ends_the_input_cleanly() {
    let Some(clip) = ten_seconds() else {
        return;
    };
    let items = decode(&clip);
    let (sink, got) = collect();
    let running = Pipeline::new(push_config())
        .expect("pipeline")
        .start(vec![sink])
        .expect("start");
    let input = running.input("input").expect("the push input");
    let first = items[0].pts();
    // Four seconds, then the pusher's thread ends without finish().
    let part: Vec<Item> = items
        .into_iter()
        .filter(|i| i.pts() < first + 4_000_000_000)
        .collect();
    std::thread::spawn(move || push_all(&input, &part))
        .join()
        .expect("pusher");
    let report = running.wait().expect("the run ends");
    assert!(report.first_error().is_none(), "{:?}", report.first_error());
    let media = report.streams[0].media_seconds;
    assert!((3.5..=4.2).contains(&media), "media {media}");
    let events = got.lock().unwrap();
    assert!(events.iter().all(|e| e.end <= media + 0.5), "{events:?}");
}
