//! Event lifecycle on the dev clip: ids, `start` before `end`, an object's `start` soon after
//! its track is confirmed (media time), related ids, and `--phases end` = the `end`
//! messages of a full run.
mod common;

use avsense::core::event::Phase;
use avsense::core::window::Window;
use avsense::sink::{CallbackSink, EventSink};
use avsense::{Event, Pipeline, PipelineConfig};
use common::*;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};

#[test]
fn dev_clip_messages_have_a_lifecycle_and_objects_start_within_a_second() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    // Each message with the end of the latest window the event stage had taken when the
    // message reached the sink (the window tap runs before a window's events are decoded,
    // so this is at least where the stage was when it emitted the message).
    let latest = Arc::new(Mutex::new(0.0f64));
    let got: Arc<Mutex<Vec<(Event, f64)>>> = Arc::default();
    let (l, g) = (Arc::clone(&latest), Arc::clone(&got));
    let sink: Box<dyn EventSink> = Box::new(CallbackSink(move |e: &Event| {
        let at = *l.lock().unwrap();
        g.lock().unwrap().push((e.clone(), at));
    }));
    let cfg = PipelineConfig::for_input(clip.to_str().unwrap(), None).expect("config");
    let l = Arc::clone(&latest);
    let report = Pipeline::new(cfg)
        .expect("pipeline")
        .with_window_tap(Arc::new(move |w: &Window| {
            let end = w.end.as_secs_f64();
            let mut x = l.lock().unwrap();
            *x = x.max(end);
        }))
        .start(vec![sink])
        .expect("start")
        .wait()
        .expect("wait");
    assert!(report.first_error().is_none());
    let msgs = std::mem::take(&mut *got.lock().unwrap());

    // Every event with a duration: one start, then one end, same id; ids unique per event.
    let mut open: HashMap<String, &Event> = HashMap::new();
    let mut ended = HashSet::new();
    for (e, _) in &msgs {
        assert_eq!(e.schema, "avsense.event/2");
        assert_eq!(e.id.len(), 36, "{e:?}");
        match e.phase {
            Phase::Start => {
                assert!(open.insert(e.id.clone(), e).is_none(), "two starts: {e:?}");
            }
            Phase::End => {
                let with_start = matches!(
                    serde_json::to_value(e.kind).unwrap().as_str(),
                    Some("object" | "sound" | "speech" | "motion" | "active_speaker")
                );
                if with_start {
                    let s = open
                        .remove(&e.id)
                        .unwrap_or_else(|| panic!("no start: {e:?}"));
                    assert_eq!((s.kind, s.start), (e.kind, e.start), "{s:?} / {e:?}");
                }
                assert!(ended.insert(e.id.clone()), "two ends: {e:?}");
            }
            Phase::Update => panic!("no updates are emitted yet: {e:?}"),
        }
    }
    assert!(open.is_empty(), "started, never ended: {open:?}");

    // The person's start: published at most 1 s of media after its confirmation.
    let (person, at) = msgs
        .iter()
        .find(|(e, _)| {
            e.phase == Phase::Start && e.labels.first().is_some_and(|l| l.name == "person")
        })
        .expect("a person start");
    let confirmed = person.end;
    eprintln!("person confirmed at {confirmed:.2} s, start message out by {at:.2} s (media time)");
    assert!(
        *at <= confirmed + 1.0,
        "start out by {at} s, confirmed at {confirmed} s"
    );

    // Related: each association names its sound and the sound names it back.
    let ends: HashMap<&str, &Event> = msgs
        .iter()
        .filter(|(e, _)| e.phase == Phase::End)
        .map(|(e, _)| (e.id.as_str(), e))
        .collect();
    let mut assoc = 0;
    for e in ends.values().filter(|e| {
        matches!(
            serde_json::to_value(e.kind).unwrap().as_str(),
            Some("sound_source" | "offscreen_sound")
        )
    }) {
        let sound = ends[e.related[0].as_str()];
        assert_eq!(sound.evidence.sound_id, e.evidence.sound_id);
        assert_eq!(sound.related, vec![e.id.clone()]);
        assoc += 1;
    }
    assert!(assoc >= 4, "{assoc} associations");
}

/// `--phases end` writes exactly the `end` messages of a full run, byte for byte (ids are
/// reproducible for a file), and a re-run gives the same ids.
#[test]
fn phases_end_is_the_end_messages_of_a_full_run() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let run = |name: &str, extra: &[&str]| -> Vec<String> {
        let out = dir.path().join(name);
        let st = Command::new(env!("CARGO_BIN_EXE_avsense"))
            .args(["run", "-q", "--input"])
            .arg(&clip)
            .arg("--events")
            .arg(&out)
            .args(extra)
            .status()
            .expect("avsense");
        assert!(st.success());
        std::fs::read_to_string(&out)
            .expect("events")
            .lines()
            .map(String::from)
            .collect()
    };
    let all = run("all.jsonl", &[]);
    let ends = run("end.jsonl", &["--phases", "end"]);
    let want: Vec<String> = all
        .iter()
        .filter(|l| l.contains("\"phase\":\"end\""))
        .cloned()
        .collect();
    assert!(all.len() > want.len(), "starts are there too");
    assert_eq!(ends, want);
}
