//! Shared helpers of the integration tests: where ../shared is, generating media with
//! GStreamer test sources, and running a pipeline into memory.
#![allow(dead_code)]

pub mod clip;

use avsense::core::window::Window;
use avsense::sink::{CallbackSink, EventSink};
use avsense::{Event, Pipeline, PipelineConfig, RunReport};
use gstreamer as gst;
use gstreamer::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `../shared/media/<rel>` if present. Absent: skip (returns None) — except under CI=true,
/// where a missing ../shared is a failure.
pub fn shared_media(rel: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media");
    let p = root.join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing: under CI=true the shared test media must be beside the checkout",
            p.display()
        );
    }
    eprintln!(
        "SKIP: {} not found (../shared is absent); this test needs the shared test media",
        p.display()
    );
    None
}

/// Whether a system tool a test needs is there: true if so; if not, a SKIP line — or, under
/// CI=true (where `.ci/install-system-packages` installs it), a panic with `msg`.
pub fn tool_ready(ok: bool, msg: &str) -> bool {
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIP: {msg}");
    }
    ok
}

/// A child process killed (and reaped) when this drops: servers and clients a test starts.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `limit`. Returns how
/// long it took.
pub fn wait_for(
    limit: std::time::Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    t0.elapsed()
}

/// A scratch directory under target/ (kept small; tests clean up what they make).
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-media")
        .join(name);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Runs a gst-launch description to EOS (fixture generation), panicking with the bus error.
pub fn gst_launch(desc: &str) {
    gst::init().expect("gst init");
    let pipeline = gst::parse::launch(desc).unwrap_or_else(|e| panic!("parse {desc}: {e}"));
    let bus = pipeline.bus().expect("bus");
    pipeline.set_state(gst::State::Playing).expect("play");
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                let _ = pipeline.set_state(gst::State::Null);
                panic!(
                    "fixture pipeline failed: {} ({:?})\n{desc}",
                    e.error(),
                    e.debug()
                );
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).expect("stop");
}

/// Makes `path` once with `make` (which writes the file it is given): under a lock, into
/// a `.part` file renamed at the end, so tests running in parallel never read a half-written
/// fixture.
pub fn generate_once(path: &Path, make: impl FnOnce(&Path)) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let part = path.with_extension("part");
        make(&part);
        std::fs::rename(&part, path)
            .unwrap_or_else(|e| panic!("rename {} → {}: {e}", part.display(), path.display()));
    }
    path.to_path_buf()
}

/// A generated clip: `seconds` of a moving ball (H.264, `width`×`height` at `fps`) and
/// `audio_seconds` of ticks (AAC, 48 kHz mono), muxed into MP4 under target/test-media.
pub fn ball_and_ticks(
    name: &str,
    seconds: u32,
    audio_seconds: f64,
    width: u32,
    height: u32,
    fps: u32,
) -> PathBuf {
    let path = scratch("generated").join(name);
    generate_once(&path, |out| {
        let samples = (audio_seconds * 48_000.0).round() as u64;
        gst_launch(&format!(
            "videotestsrc pattern=ball num-buffers={frames} ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
             ! x264enc speed-preset=ultrafast bframes=0 key-int-max={fps} ! h264parse ! queue ! mp4mux name=mux ! filesink location={out} \
             audiotestsrc wave=ticks samplesperbuffer=4800 num-buffers={bufs} ! audio/x-raw,format=S16LE,rate=48000,channels=1 \
             ! audioconvert ! avenc_aac ! aacparse ! queue ! mux.",
            frames = seconds * fps,
            bufs = samples / 4800,
            out = out.display(),
        ));
    })
}

/// What a run produced.
pub struct Outcome {
    /// The finished events (`end` messages), as one-line-per-event consumers see them.
    pub events: Vec<Event>,
    /// Every lifecycle message, in order.
    pub messages: Vec<Event>,
    pub windows: Vec<Window>,
    pub report: RunReport,
}

impl Outcome {
    pub fn of_kind(&self, kind: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| {
                serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .as_deref()
                    == Some(kind)
            })
            .collect()
    }
}

/// Runs `cfg` with an in-memory sink and a window tap.
pub fn run(cfg: PipelineConfig) -> Outcome {
    let events = Arc::new(Mutex::new(Vec::new()));
    let windows = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    let sink: Box<dyn EventSink> = Box::new(CallbackSink(move |e: &Event| {
        ev.lock().unwrap().push(e.clone())
    }));
    let w = Arc::clone(&windows);
    let pipeline = Pipeline::new(cfg)
        .expect("pipeline")
        .with_window_tap(Arc::new(move |win: &Window| {
            w.lock().unwrap().push(win.clone())
        }));
    let report = pipeline
        .start(vec![sink])
        .expect("start")
        .wait()
        .expect("wait");
    let messages = std::mem::take(&mut *events.lock().unwrap());
    let windows = std::mem::take(&mut *windows.lock().unwrap());
    let events = messages
        .iter()
        .filter(|e| e.phase == avsense::core::event::Phase::End)
        .cloned()
        .collect();
    Outcome {
        events,
        messages,
        windows,
        report,
    }
}

/// Runs `cfg` (see [`run`]) and asserts that no stream or sink failed; `what` names the run
/// in the failure.
pub fn run_ok(cfg: PipelineConfig, what: &Path) -> Outcome {
    let out = run(cfg);
    assert!(
        out.report.first_error().is_none(),
        "{}: {:?}",
        what.display(),
        out.report.first_error()
    );
    out
}

/// Runs one input with the default settings and asserts that no stream or sink failed.
pub fn run_input_ok(path: &Path) -> Outcome {
    run_ok(
        PipelineConfig::for_input(path.to_str().expect("utf-8 path"), None).expect("config"),
        path,
    )
}

/// The JSON labels beside a clip (`x.mp4` → `x.json`).
pub fn labels_of(clip: &Path) -> serde_json::Value {
    let path = clip.with_extension("json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs one input with the default settings.
pub fn run_input(path: &Path) -> Outcome {
    run(PipelineConfig::for_input(path.to_str().expect("utf-8 path"), None).expect("config"))
}

/// ffprobe's frame count of the first video stream (decoding every frame).
pub fn ffprobe_frames(path: &Path) -> u64 {
    ffprobe_value(
        path,
        &["-count_frames", "-select_streams", "v:0"],
        "stream=nb_read_frames",
    )
}

/// ffprobe's duration of the first audio stream, seconds.
pub fn ffprobe_audio_seconds(path: &Path) -> f64 {
    ffprobe_value(path, &["-select_streams", "a:0"], "stream=duration")
}

/// ffprobe's sample rate of the first audio stream, Hz.
pub fn ffprobe_audio_rate(path: &Path) -> f64 {
    ffprobe_value(path, &["-select_streams", "a:0"], "stream=sample_rate")
}

/// One value that ffprobe prints for `entry` (e.g. `stream=duration`), parsed.
fn ffprobe_value<T: std::str::FromStr>(path: &Path, select: &[&str], entry: &str) -> T {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error"])
        .args(select)
        .args(["-show_entries", entry, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe (Debian package ffmpeg) is needed for this test");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {entry} of {}: {text:?}", path.display()))
}

/// A fetched model file, `<models dir>/<rel>` (models dir: $AVSENSE_MODELS or models/cache).
/// Absent: skip with a message — except under CI=true, where `.ci/run` has fetched them.
pub fn model_file(rel: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("AVSENSE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cache"));
    let p = dir.join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing: under CI=true `avsense models fetch` must have run",
            p.display()
        );
    }
    eprintln!(
        "SKIP: {} not found; run `avsense models fetch` first",
        p.display()
    );
    None
}

/// Runs ffmpeg with `args` from the repository root (where the relative paths recorded by
/// the reference scripts hold) and returns its stdout; panics with its stderr on failure.
pub fn ffmpeg<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("ffmpeg (Debian package ffmpeg) is needed for this test");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The bytes a reference recorded: `spec["ffmpeg"]` (argv) run from the repository root,
/// checked against `spec["sha256"]`.
pub fn ffmpeg_recorded(spec: &serde_json::Value) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let args: Vec<&str> = spec["ffmpeg"]
        .as_array()
        .expect("ffmpeg argv")
        .iter()
        .map(|a| a.as_str().expect("ffmpeg arg"))
        .collect();
    let bytes = ffmpeg(&args);
    assert_eq!(
        hex(&Sha256::digest(&bytes)),
        spec["sha256"].as_str().expect("sha256"),
        "ffmpeg {args:?} decoded other bytes than the reference's (another ffmpeg build?): \
         regenerate the reference with its script in tests/reference"
    );
    bytes
}

/// A reference file of tests/reference/data, parsed.
pub fn reference_json(name: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference/data")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Process CPU time (user + system) in seconds, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `f` once to warm up, then `runs` times, and prints the wall and CPU
/// milliseconds per item (`items` per call) under `label`. Latency helpers only:
/// prints, asserts nothing on time.
pub fn print_time_per_item(label: &str, runs: usize, items: usize, mut f: impl FnMut()) {
    f();
    let (c0, t0) = (cpu_seconds(), std::time::Instant::now());
    for _ in 0..runs {
        f();
    }
    let n = (runs * items.max(1)) as f64;
    eprintln!(
        "{label}: {:.2} ms wall, {:.2} ms CPU per item ({} threads available)",
        t0.elapsed().as_secs_f64() * 1e3 / n,
        (cpu_seconds() - c0) * 1e3 / n,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes like the audio reference scripts: `ffmpeg … -vn -ac 1 -ar 16000 -f f32le -`.
/// Returns the samples and the sha256 of their bytes.
pub fn decode_mono_16k(path: &Path) -> (Vec<f32>, String) {
    use sha2::Digest;
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-vn", "-ac", "1", "-ar", "16000", "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg (Debian package ffmpeg) is needed for this test");
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (f32_le(&out.stdout), hex(&sha2::Sha256::digest(&out.stdout)))
}

/// Little-endian f32 values of `bytes` (a trailing partial value is ignored).
pub fn f32_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
