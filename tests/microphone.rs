//! The microphone source through real ALSA: cpal opens ALSA's default PCM, which an
//! `asoundrc` (in a scratch HOME) defines as the `file` plugin over the `null` plugin with a
//! raw PCM `infile`. That device delivers faster than real time, so this also checks that
//! the source paces it to the clock.
//!
//! The avsense binary runs as a child process: alsa-lib reads `~/.asoundrc` once per
//! process.
mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The sentence from ../shared with 2 s of silence before it, as raw S16LE 48 kHz stereo.
fn sentence_raw(dir: &Path) -> Option<PathBuf> {
    let wav = shared_media("sounds/espeak_sentence.wav")?;
    let raw = dir.join("sentence_48k_s16_stereo.raw");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-t", "2", "-i"])
        .arg("anullsrc=r=48000:cl=stereo")
        .arg("-i")
        .arg(&wav)
        .args([
            "-filter_complex",
            "[1]aresample=48000,pan=stereo|c0=c0|c1=c0[s];[0][s]concat=n=2:v=0:a=1",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-f",
            "s16le",
        ])
        .arg(&raw)
        .status()
        .expect("ffmpeg (installed by .ci/install-system-packages)");
    assert!(status.success(), "ffmpeg failed to make {}", raw.display());
    Some(raw)
}

/// A scratch HOME whose `.asoundrc` makes the default PCM read `infile`.
fn alsa_home(dir: &Path, infile: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".asoundrc"),
        format!(
            "pcm.!default {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n}}\n",
            infile.display()
        ),
    )
    .expect("asoundrc");
    home
}

fn run_avsense(
    home: &Path,
    cfg: &Path,
) -> (std::process::ExitStatus, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .env("HOME", home)
        .arg("run")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run avsense");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status,
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kind<'a>(ev: &'a [serde_json::Value], k: &str) -> Vec<&'a serde_json::Value> {
    ev.iter()
        .filter(|e| e["kind"] == k && e["phase"] == "end")
        .collect()
}

#[test]
fn microphone_through_alsa_gives_speech_and_sound_at_the_right_offsets() {
    let dir = scratch("mic-alsa");
    let Some(raw) = sentence_raw(&dir) else {
        return;
    };
    let home = alsa_home(&dir, &raw);
    let cfg = dir.join("mic.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"mic\"\nkind = \"microphone\"\ndevice = \"default\"\nduration = 9.0\n\
         mic_rate = 48000\nmic_channels = 2\nmic_format = \"i16\"\n\n[tagger]\nmode = \"off\"\n\n[[sink]]\nkind = \"stdout\"\n",
    )
    .expect("config");
    let (status, ev, stderr) = run_avsense(&home, &cfg);
    assert!(status.success(), "{stderr}");
    // The sentence starts at 2.013 s of the device's audio (ffmpeg silencedetect at
    // −40 dB) and its loud part ends at 7.316 s.
    let sounds = kind(&ev, "sound");
    assert_eq!(sounds.len(), 1, "{ev:#?}");
    let (s, e) = (
        sounds[0]["start"].as_f64().unwrap(),
        sounds[0]["end"].as_f64().unwrap(),
    );
    assert!(
        (s - 2.013).abs() < 0.05 && (e - 7.316).abs() < 0.1,
        "sound {s}–{e}"
    );
    let speech = kind(&ev, "speech");
    if model_file("silero-vad/silero_vad.jit").is_some() || !speech.is_empty() {
        assert!(!speech.is_empty(), "no speech events: {ev:#?}");
        let first = speech[0]["start"].as_f64().unwrap();
        let last = speech[speech.len() - 1]["end"].as_f64().unwrap();
        assert!(
            (first - 2.013).abs() < 0.3 && (last - 7.316).abs() < 0.3,
            "speech {first}–{last}"
        );
    }
    // Live stamps, and the device's pacing is reported.
    assert!(ev
        .iter()
        .all(|e| e["latency_ms"].is_number() && e["wall_time"].is_string()));
    assert!(stderr.contains("paced to the clock"), "{stderr}");
    assert!(stderr.contains("9.00 s audio"), "{stderr}");
}

/// A microphone that stops delivering (a FIFO whose writer goes quiet: ALSA's read blocks,
/// like a hung USB device) is reported as a `source_error`; the stream's video goes on.
#[test]
fn a_microphone_that_stops_is_reported_and_the_video_goes_on() {
    let dir = scratch("mic-stall");
    let fifo = dir.join("mic.fifo");
    let _ = std::fs::remove_file(&fifo);
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo");
    let home = alsa_home(&dir, &fifo);
    // 1 s of silence and 1 s of a 440 Hz tone written in real time (20 ms blocks, like a
    // device), then
    // nothing while the FIFO stays open for 8 s.
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open FIFO for writing");
            let t0 = std::time::Instant::now();
            for block in 0..100u32 {
                let mut buf = Vec::with_capacity(960 * 4);
                for j in 0..960u32 {
                    let i = block * 960 + j;
                    // Quiet for the first second (the detector learns the floor), then a tone.
                    let amp = if block < 50 { 0.0 } else { 8000.0 };
                    let v =
                        ((i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin() * amp) as i16;
                    buf.extend_from_slice(&v.to_le_bytes());
                    buf.extend_from_slice(&v.to_le_bytes());
                }
                if f.write_all(&buf).is_err() {
                    return;
                }
                let due = std::time::Duration::from_millis(20 * (u64::from(block) + 1));
                std::thread::sleep(due.saturating_sub(t0.elapsed()));
            }
            std::thread::sleep(std::time::Duration::from_secs(8));
        })
    };
    let cfg = dir.join("stall.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"cam\"\nkind = \"test\"\nlive = true\nduration = 6.0\nmicrophone = \"default\"\n\
         mic_rate = 48000\nmic_channels = 2\nmic_format = \"i16\"\nstall_timeout = 1.0\n\n\
         [detector]\nmode = \"off\"\n[vad]\nmode = \"off\"\n[tagger]\nmode = \"off\"\n\n[[sink]]\nkind = \"stdout\"\n",
    )
    .expect("config");
    let (status, ev, stderr) = run_avsense(&home, &cfg);
    let _ = writer.join();
    assert!(
        status.success(),
        "avsense ended with {} (exit code {:?}, signal {:?}); stderr: {stderr}",
        status,
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status)
    );
    let errors = kind(&ev, "source_error");
    assert_eq!(errors.len(), 1, "{ev:#?}");
    let why = errors[0]["evidence"]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("microphone") && why.contains("no audio"),
        "{why}"
    );
    // The error came about 1 s (stall_timeout) after the audio stopped, not at the end.
    let at = errors[0]["start"].as_f64().unwrap();
    assert!(at > 2.0 && at < 4.5, "reported at {at} s");
    // Video: the ball moves for the whole 6 s.
    let motion = kind(&ev, "motion");
    assert!(!motion.is_empty(), "{ev:#?}");
    let last = motion
        .iter()
        .map(|e| e["end"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(last > 5.0, "motion ends at {last}");
    // The tone the microphone did deliver (from 1 s) is a sound event.
    let sounds = kind(&ev, "sound");
    assert_eq!(sounds.len(), 1, "{ev:#?}");
    let start = sounds[0]["start"].as_f64().unwrap();
    assert!((0.8..1.6).contains(&start), "tone heard from {start} s");
    assert!(
        stderr.contains("microphone") && stderr.contains("FAILED"),
        "{stderr}"
    );
}

/// A microphone name that does not exist: the error lists what does.
#[test]
fn an_unknown_microphone_is_a_clear_error() {
    let dir = scratch("mic-missing");
    let cfg = dir.join("missing.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"mic\"\nkind = \"microphone\"\ndevice = \"no-such-microphone\"\n\n[[sink]]\nkind = \"stdout\"\n",
    )
    .expect("config");
    let home = alsa_home(&dir, Path::new("/dev/null"));
    let (status, _ev, stderr) = run_avsense(&home, &cfg);
    assert!(!status.success());
    assert!(
        stderr.contains("no-such-microphone") && stderr.contains("no such input device"),
        "{stderr}"
    );
}
