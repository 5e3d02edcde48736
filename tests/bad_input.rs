//! Bad input: each case gives a clear error naming the file/key and what was expected,
//! never a panic; a truncated file yields the events before the cut, then the error.
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn avsense(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(args)
        .output()
        .expect("run avsense")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn assert_clean_failure(o: &Output, must_contain: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "must fail: {err}");
    assert_ne!(o.status.code(), Some(101), "a panic: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    let line = err
        .lines()
        .rfind(|l| l.starts_with("avsense: error:"))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    for s in must_contain {
        assert!(line.contains(s), "error line lacks {s:?}: {line}");
    }
}

#[test]
fn missing_file() {
    let o = avsense(&["run", "--input", "/nonexistent/clip.mp4", "-q"]);
    assert_clean_failure(&o, &["/nonexistent/clip.mp4", "cannot open"]);
}

#[test]
fn text_file_renamed_mp4() {
    let p = scratch("bad").join("not_a_video.mp4");
    std::fs::write(&p, "this is a text file, not a video\n".repeat(200)).unwrap();
    let o = avsense(&["run", "--input", p.to_str().unwrap(), "-q"]);
    assert_clean_failure(&o, &["not_a_video.mp4", "GStreamer"]);
}

#[test]
fn unknown_config_key_and_zero_window() {
    let dir = scratch("bad");
    let unknown = dir.join("unknown_key.toml");
    std::fs::write(
        &unknown,
        "[[source]]\nname = \"a\"\nkind = \"test\"\nduration = 1.0\n[motion]\ngird = [4, 4]\n",
    )
    .unwrap();
    let o = avsense(&["run", unknown.to_str().unwrap(), "-q"]);
    assert_clean_failure(&o, &["unknown_key.toml", "gird", "expected"]);

    let zero = dir.join("zero_window.toml");
    std::fs::write(
        &zero,
        "[pipeline]\nwindow = 0.0\n[[source]]\nname = \"a\"\nkind = \"test\"\nduration = 1.0\n",
    )
    .unwrap();
    let o = avsense(&["run", zero.to_str().unwrap(), "-q"]);
    assert_clean_failure(&o, &["zero_window.toml", "pipeline.window", "0.01 to 60"]);

    let o = avsense(&["run", "/nonexistent/pipeline.toml", "-q"]);
    assert_clean_failure(&o, &["/nonexistent/pipeline.toml", "cannot read"]);
}

#[test]
fn unwritable_event_file() {
    let Some(clip) = shared_media("videos/bottle-detection.mp4") else {
        return;
    };
    let o = avsense(&[
        "run",
        "--input",
        clip.to_str().unwrap(),
        "--events",
        "/nonexistent/dir/ev.jsonl",
        "-q",
    ]);
    assert_clean_failure(&o, &["/nonexistent/dir/ev.jsonl"]);
}

/// Remuxes with the index first (so the first half is decodable), then cuts at half size.
fn truncated_copy(src: &Path) -> std::path::PathBuf {
    let dir = scratch("bad");
    let fast = dir.join("faststart.mp4");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(src)
        .args(["-c", "copy", "-movflags", "+faststart"])
        .arg(&fast)
        .status()
        .expect("ffmpeg (Debian package) makes this fixture");
    assert!(st.success());
    let bytes = std::fs::read(&fast).unwrap();
    let cut = dir.join("truncated_half.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    cut
}

#[test]
fn truncated_mp4_yields_events_before_the_cut_then_the_error() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    let cut = truncated_copy(&clip);
    let out = run_input(&cut);
    let err = out
        .report
        .first_error()
        .expect("a truncated file must be an error");
    assert!(
        err.contains("truncated_half.mp4") && err.contains("truncated"),
        "{err}"
    );
    let s = &out.report.streams[0];
    assert!(
        s.media_seconds > 10.0 && s.media_seconds < 50.0,
        "decoded up to the cut: {}",
        s.media_seconds
    );
    // The speech at 8.0 s lies before the cut: its event is there, and the error comes last.
    assert!(out
        .of_kind("sound")
        .iter()
        .any(|e| (e.start - 8.0).abs() < 0.25));
    let last = out.events.last().expect("events");
    assert_eq!(serde_json::to_value(last.kind).unwrap(), "source_error");
    assert!(last
        .evidence
        .error
        .as_deref()
        .unwrap_or("")
        .contains("truncated"));
    // The command line says so in one line, with a non-zero exit code.
    let o = avsense(&["run", "--input", cut.to_str().unwrap(), "-q"]);
    assert_clean_failure(&o, &["truncated_half.mp4", "truncated"]);
    assert!(String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l.contains("\"kind\":\"sound\"")));
}

#[test]
fn a_failing_source_does_not_stop_the_others() {
    let Some(good) = shared_media("videos/bottle-detection.mp4") else {
        return;
    };
    let text = format!(
        "[[source]]\nname = \"gone\"\nkind = \"file\"\npath = \"/nonexistent/cam.mp4\"\n\
         [[source]]\nname = \"good\"\nkind = \"file\"\npath = \"{}\"\n",
        good.display()
    );
    let cfg = avsense::PipelineConfig::parse(&text, Path::new("inline.toml")).unwrap();
    let out = run(cfg);
    let gone = &out.report.streams[0];
    let ok = &out.report.streams[1];
    assert!(gone
        .error
        .as_deref()
        .unwrap_or("")
        .contains("/nonexistent/cam.mp4"));
    assert!(
        ok.error.is_none() && ok.frames > 1000,
        "{:?} {}",
        ok.error,
        ok.frames
    );
    assert!(out
        .events
        .iter()
        .any(|e| e.stream == "gone" && e.evidence.error.is_some()));
}
