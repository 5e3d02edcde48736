//! Push input: frames and audio decoded by the test itself (GStreamer, in the decoder's own
//! formats) and pushed through `Running::input` give the same events as the file run on
//! the same media; bad pushes are errors that leave the input running; a pusher that goes
//! away mid-stream ends the input cleanly.
mod common;

use avsense::sink::{CallbackSink, EventSink};
use avsense::source::push::{PushError, PushFormat, PushInput, PushSamples};
use avsense::source::{SourceConfig, SourceKind};
use avsense::{Event, Pipeline, PipelineConfig};
use common::clip::{decode, ten_seconds, Item, CALLER_ORIGIN_NS};
use common::*;
use std::sync::{Arc, Mutex};

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
