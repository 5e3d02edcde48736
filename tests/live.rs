//! Live sources: GStreamer test sources with is-live (real-time pacing), the live edge
//! policy, and capture → event latency with wall-clock times on events.
mod common;

use avsense::channel::EdgePolicy;
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
    let out = run(cfg);
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
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
        // An event is emitted after its end was captured: latency is positive, and it
        // includes the offset hysteresis (the event cannot close before `hangover`).
        assert!(l > 0.0, "latency {l} ms on {e:?}");
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
    assert_eq!(lat.count, out.events.len() as u64);
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
    let out = run(cfg);
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
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
