//! Two processes over zenoh on loopback, no router: this test publishes the frames and audio
//! of a clip (decoded by the test itself) in the wire format; `avsense run` subscribes with a
//! `zenoh` source and publishes its events and tracks with a `zenoh` sink; the test receives
//! them. The events equal those of the file run on the same clip.
#![cfg(feature = "zenoh")]
mod common;

use avsense::source::push::PushFormat;
use avsense::source::wire;
use common::clip::{decode, ten_seconds, Item};
use common::*;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zenoh::Wait;

#[test]
fn frames_published_over_zenoh_give_the_file_runs_events_back_over_zenoh() {
    let Some(clip) = ten_seconds() else {
        return;
    };
    let items = decode(&clip);
    let file = run_ok(
        avsense::PipelineConfig::for_input(clip.to_str().unwrap(), None).expect("config"),
        &clip,
    );

    // This process listens; avsense connects (its source and its sink).
    let port = free_port();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let mut zc = zenoh::Config::default();
    zc.insert_json5("mode", "\"peer\"").unwrap();
    zc.insert_json5("listen/endpoints", &format!("[\"{endpoint}\"]"))
        .unwrap();
    zc.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    let session = zenoh::open(zc).wait().expect("zenoh session");
    let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let tracks: Arc<Mutex<usize>> = Arc::default();
    let (ev, tr) = (Arc::clone(&events), Arc::clone(&tracks));
    let _events_sub = session
        .declare_subscriber("robot/clip/events")
        .callback(move |s| {
            if let Ok(v) = serde_json::from_slice(&s.payload().to_bytes()) {
                ev.lock().unwrap().push(v);
            }
        })
        .wait()
        .expect("subscribe events");
    let _tracks_sub = session
        .declare_subscriber("robot/clip/tracks")
        .callback(move |_| *tr.lock().unwrap() += 1)
        .wait()
        .expect("subscribe tracks");
    let publisher = session
        .declare_publisher("cams/clip/media")
        .congestion_control(zenoh::qos::CongestionControl::Block)
        .wait()
        .expect("publisher");

    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("zenoh.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[pipeline]
name = "zenoh-node"

[[source]]
name = "clip"
kind = "zenoh"
connect = ["{endpoint}"]
key = "cams/clip"

[[sink]]
kind = "zenoh"
connect = ["{endpoint}"]
topic_prefix = "robot"
phases = ["end"]
"#
        ),
    )
    .expect("config");
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run avsense");
    // Publish once avsense's subscriber is there (nothing is stored for late joiners).
    wait_for(
        Duration::from_secs(120),
        "avsense's zenoh subscriber",
        || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "avsense ended early ({st:?}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            publisher
                .matching_status()
                .wait()
                .map(|m| m.matching())
                .unwrap_or(false)
        },
    );
    for it in &items {
        let msg = match it {
            Item::Video { pts, w, h, data } => {
                wire::encode_video(*pts, *w, *h, PushFormat::I420, data)
            }
            Item::Audio {
                pts,
                rate,
                channels,
                samples,
            } => wire::encode_audio_f32(*pts, *rate, *channels, samples),
        };
        publisher.put(msg).wait().expect("put");
    }
    publisher.put(wire::encode_end()).wait().expect("end");
    let st = child.wait().expect("avsense");
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(st.success(), "{st:?}: {err}");
    // The last events can still be on the way.
    std::thread::sleep(Duration::from_millis(500));
    let got = events.lock().unwrap().clone();
    let pick = |kinds: Vec<(String, Option<String>, f64, f64)>| kinds;
    let want = pick(
        file.events
            .iter()
            .filter(|e| {
                matches!(
                    serde_json::to_value(e.kind).unwrap().as_str(),
                    Some("object" | "speech" | "sound_source")
                )
            })
            .map(|e| {
                (
                    serde_json::to_value(e.kind)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string(),
                    e.labels.first().map(|l| l.name.clone()),
                    e.start,
                    e.end,
                )
            })
            .collect(),
    );
    let have = pick(
        got.iter()
            .filter(|e| {
                matches!(
                    e["kind"].as_str(),
                    Some("object" | "speech" | "sound_source")
                )
            })
            .map(|e| {
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["labels"][0]["name"].as_str().map(str::to_string),
                    e["start"].as_f64().unwrap(),
                    e["end"].as_f64().unwrap(),
                )
            })
            .collect(),
    );
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(
        want.iter().map(|w| (&w.0, &w.1)).collect::<Vec<_>>(),
        have.iter().map(|h| (&h.0, &h.1)).collect::<Vec<_>>(),
        "file: {want:?}\nzenoh: {have:?}\n{err}"
    );
    for (a, b) in want.iter().zip(&have) {
        assert!(
            (a.2 - b.2).abs() <= 0.1 + 1e-6 && (a.3 - b.3).abs() <= 0.1 + 1e-6,
            "{a:?} vs {b:?}"
        );
    }
    assert!(*tracks.lock().unwrap() > 10, "tracks were published");
    eprintln!(
        "zenoh = file: {} object/speech/sound_source events; {} tracks messages",
        want.len(),
        tracks.lock().unwrap()
    );
}
