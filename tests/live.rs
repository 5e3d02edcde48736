//! Live sources: GStreamer test sources with is-live (real-time pacing), the live edge
//! policy, and capture → event latency with wall-clock times on events.
mod common;

use avsense::core::edge::EdgePolicy;
use avsense::PipelineConfig;
use common::*;
use std::path::Path;

#[test]
fn live_test_source_events_carry_latency_and_wall_time() {
    let cfg = PipelineConfig::parse(
        "[[source]]\nname = \"live\"\nkind = \"test\"\nlive = true\nduration = 4.0\n",
        Path::new("live.toml"),
    )
    .expect("config");
    assert_eq!(cfg.sources[0].effective_policy(), EdgePolicy::DropOldest);
    let out = run_ok(cfg, Path::new("live.toml"));
    let s = &out.report.streams[0];
    // Real-time pacing: 4 s of media, 30 fps.
    assert!(
        (s.media_seconds - 4.0).abs() < 0.2,
        "media {}",
        s.media_seconds
    );
    assert!(s.frames >= 100, "frames {}", s.frames);
    // The ticks (one per second) give sound events; every event is stamped.
    assert!(out.of_kind("sound").len() >= 3, "{:?}", out.events);
    for e in &out.events {
        let l = e
            .latency_ms
            .unwrap_or_else(|| panic!("no latency_ms on {e:?}"));
        // An event is emitted after its last data was captured. Its `end` is the end of
        // its last frame (PTS + one frame): an event closed by the end of the stream right
        // at that frame can read up to one frame interval (33.3 ms) early, never more.
        assert!(l > -34.0, "latency {l} ms on {e:?}");
        let w = e
            .wall_time
            .as_deref()
            .unwrap_or_else(|| panic!("no wall_time on {e:?}"));
        assert!(
            w.len() == 24 && w.ends_with('Z') && w.as_bytes()[10] == b'T',
            "{w}"
        );
    }
    // Wall times follow stream times (ISO 8601 strings of equal length sort as times).
    let mut by_start: Vec<_> = out.events.iter().collect();
    by_start.sort_by(|a, b| a.start.total_cmp(&b.start));
    let walls: Vec<&str> = by_start
        .iter()
        .map(|e| e.wall_time.as_deref().unwrap())
        .collect();
    assert!(walls.windows(2).all(|w| w[0] <= w[1]), "{walls:?}");
    let lat = s.latency.expect("latency percentiles for a live stream");
    // Every lifecycle message is measured (a `start` too: how soon an alert goes out).
    assert_eq!(lat.count, out.messages.len() as u64);
    assert!(lat.p50_ms <= lat.p95_ms && lat.p95_ms <= lat.p99_ms && lat.p99_ms <= lat.max_ms);
    // Live edges are bounded and drop the oldest item when full; every edge reports.
    for e in &out.report.edges {
        assert!(e.high_water <= e.capacity as u64, "{e:?}");
    }
}

#[test]
fn file_sources_have_no_latency_stamps() {
    let cfg = PipelineConfig::parse(
        "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 2.0\n",
        Path::new("t.toml"),
    )
    .expect("config");
    let out = run(cfg);
    assert!(!out.events.is_empty());
    assert!(out
        .events
        .iter()
        .all(|e| e.latency_ms.is_none() && e.wall_time.is_none()));
    assert!(out.report.streams[0].latency.is_none());
}

#[test]
fn gst_launch_source_feeds_video_and_audio_branches_by_caps() {
    let toml = r#"
[[source]]
name = "cam"
kind = "gst"
live = true
launch = "videotestsrc is-live=true num-buffers=60 pattern=ball ! capsfilter caps=video/x-raw,format=I420,width=320,height=240,framerate=30/1 audiotestsrc is-live=true num-buffers=20 samplesperbuffer=4800 wave=ticks ! capsfilter caps=audio/x-raw,rate=48000,channels=1"
"#;
    let cfg = PipelineConfig::parse(toml, Path::new("gst.toml")).expect("config");
    let out = run_ok(cfg, Path::new("gst.toml"));
    let s = &out.report.streams[0];
    assert_eq!(s.frames, 60);
    assert!(
        (s.audio_seconds - 2.0).abs() < 0.05,
        "audio {}",
        s.audio_seconds
    );
    assert!(s.latency.is_some(), "a live gst source is stamped");
    assert!(!out.of_kind("sound").is_empty());
}

#[test]
fn gst_launch_source_errors_name_the_description_and_what_was_expected() {
    for (launch, want) in [
        ("nosuchelement123 ! fakesink", "nosuchelement123"),
        (
            "videotestsrc num-buffers=5 ! x264enc",
            "expected raw video or audio",
        ),
    ] {
        let toml = format!("[[source]]\nname = \"bad\"\nkind = \"gst\"\nlaunch = \"{launch}\"\n");
        let cfg = PipelineConfig::parse(&toml, Path::new("bad.toml")).expect("config");
        let out = run(cfg);
        let err = out.report.first_error().expect("an error");
        assert!(err.contains(want) && err.contains("bad"), "{launch}: {err}");
    }
    let e = PipelineConfig::parse(
        "[[source]]\nname = \"g\"\nkind = \"gst\"\n",
        Path::new("g.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source[0].launch") && e.contains("g.toml"),
        "{e}"
    );
}

/// The issue's live video check: `videotestsrc is-live=true` at 640×480@30 with every CPU
/// encoder that is fetched (motion, NanoDet + tracker, Silero VAD, YAMNet) for 2 minutes.
/// Queues stay bounded, drops are counted, per-frame and per-event latency percentiles are
/// reported. (Latency targets are benchmarks — BENCHMARKS.md — not asserted here.)
#[test]
fn live_video_two_minutes_with_every_encoder_stays_bounded() {
    let detector = model_file("human-models/nanodet.json").is_some();
    let cfg = PipelineConfig::parse(
        "[[source]]\nname = \"live\"\nkind = \"test\"\nlive = true\nduration = 120.0\n",
        Path::new("live-2min.toml"),
    )
    .expect("config");
    let out = run_ok(cfg, Path::new("live-2min.toml"));
    let s = &out.report.streams[0];
    assert!(
        (s.media_seconds - 120.0).abs() < 0.5,
        "media {}",
        s.media_seconds
    );
    let mut dropped = 0;
    for e in &out.report.edges {
        assert!(e.high_water <= e.capacity as u64, "unbounded edge {e:?}");
        dropped += e.dropped;
        eprintln!(
            "edge {}: sent {}, dropped {}, high-water {}/{}",
            e.name, e.sent, e.dropped, e.high_water, e.capacity
        );
    }
    // Every captured frame is either analysed or counted as dropped on its edge.
    let frames_edge = out
        .report
        .edges
        .iter()
        .find(|e| e.name == "live/frames")
        .expect("the frames edge");
    assert_eq!(frames_edge.sent, s.frames, "frames delivered vs sent");
    assert!(
        frames_edge.sent >= 3590,
        "{} frames in 120 s at 30 fps",
        frames_edge.sent
    );
    let fl = s
        .frame_latency
        .expect("per-frame latency for a live stream");
    assert!(fl.count + dropped >= 3000, "{fl:?}");
    assert!(fl.p50_ms > 0.0 && fl.p50_ms <= fl.p95_ms && fl.p95_ms <= fl.max_ms);
    if detector {
        // How many of the 600 scheduled detector frames run depends on the machine's speed
        // (a busy 2-core CI box ran 482 once): the rate is a benchmark (BENCHMARKS.md), not
        // asserted. What must hold anywhere: the detector keeps running through the whole
        // two minutes instead of stalling behind the dropped frames.
        let dl = s.detect_latency.expect("detector frames ran");
        assert!(dl.count >= 120, "the detector stalled: {dl:?}");
        eprintln!("detector frame latency {dl:?}");
    }
    let el = s.latency.expect("event latency");
    eprintln!("frame latency {fl:?}\nevent latency {el:?}\ndropped {dropped}");
    assert!(out.of_kind("sound").len() >= 100, "ticks every second");
    assert!(!out.of_kind("motion").is_empty());
}

#[test]
fn v4l2_without_a_camera_is_a_clear_source_error() {
    let cfg = PipelineConfig::parse(
        "[[source]]\nname = \"cam\"\nkind = \"v4l2\"\ndevice = \"/dev/video-avsense-none\"\nwidth = 640\nheight = 480\nfps = 30\nformat = \"mjpeg\"\n\n[detector]\nmode = \"off\"\n",
        Path::new("v4l2.toml"),
    )
    .expect("config");
    let out = run(cfg);
    let err = out.report.first_error().expect("no camera: an error");
    assert!(
        err.contains("/dev/video-avsense-none") && err.contains("cam"),
        "{err}"
    );
}

#[test]
fn live_source_keys_are_validated_with_the_key_and_what_was_expected() {
    let cases = [
        ("kind = \"rtsp\"\nuri = \"http://x/y\"", "uri", "rtsp://"),
        ("kind = \"rtsp\"\nuri = \"rtsp://h/p\"\nreconnect_delay = 0.0", "reconnect_delay", "seconds"),
        ("kind = \"rtsp\"\nuri = \"rtsp://h/p\"\nreconnect_delay = 2.0\nreconnect_max_delay = 1.0", "reconnect_max_delay", "≥ reconnect_delay"),
        ("kind = \"v4l2\"\nwidth = 0", "width", "1 to"),
        ("kind = \"v4l2\"\nformat = \"h265\"", "format", "mjpeg"),
        ("kind = \"microphone\"\nmic_format = \"s24\"", "mic_format", "i16"),
        ("kind = \"file\"\npath = \"x.mp4\"\nmicrophone = \"default\"", "microphone", "live video source"),
    ];
    for (keys, key, expected) in cases {
        let text = format!("[[source]]\nname = \"s\"\n{keys}\n");
        let err = PipelineConfig::parse(&text, Path::new("bad.toml"))
            .expect_err(keys)
            .to_string();
        assert!(
            err.contains("bad.toml") && err.contains(key) && err.contains(expected),
            "{keys}: {err}"
        );
    }
    // A microphone source has no video, whatever `video` says.
    let cfg = PipelineConfig::parse(
        "[[source]]\nname = \"m\"\nkind = \"microphone\"\n",
        Path::new("m.toml"),
    )
    .expect("config");
    assert!(!cfg.sources[0].video && cfg.sources[0].is_live());
}
