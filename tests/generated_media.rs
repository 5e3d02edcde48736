//! Media generated with GStreamer test sources, with known truth.
mod common;

use avsense::{
    source::{SourceConfig, SourceKind},
    PipelineConfig,
};
use common::*;
use std::path::{Path, PathBuf};

const FPS: f64 = 30.0;
/// Beeps (start, length) in seconds, over pink noise.
const BEEPS: [(f64, f64); 2] = [(1.0, 0.3), (2.5, 0.5)];
/// The ball appears at this time (frame 60 at 30 fps) after a still black picture.
const BALL_AT: f64 = 2.0;

/// A 5 s MP4 (H.264 without B-frames + AAC, moov first): 2 s of black then a moving ball;
/// pink noise with 1 kHz beeps at known times. Segments are joined with `concat`, and
/// `num-buffers` at 100 ms per audio buffer / 1 frame per video buffer fixes the times.
fn beeps_and_ball() -> PathBuf {
    let path = scratch("generated").join("beeps_and_ball.mp4");
    generate_once(&path, make_beeps_and_ball)
}

fn make_beeps_and_ball(path: &Path) {
    let a = |wave: &str, n: u32| {
        format!("audiotestsrc wave={wave} freq=1000 volume=0.5 samplesperbuffer=4800 num-buffers={n} ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! beeps. ")
    };
    // silence 1.0 s, beep 0.3 s, silence 1.2 s, beep 0.5 s, silence 2.0 s = 5.0 s
    let beeps = [
        a("silence", 10),
        a("sine", 3),
        a("silence", 12),
        a("sine", 5),
        a("silence", 20),
    ]
    .concat();
    let v = |pattern: &str, n: u32| {
        format!("videotestsrc pattern={pattern} num-buffers={n} ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! frames. ")
    };
    let desc = format!(
        "concat name=frames ! x264enc speed-preset=ultrafast bframes=0 key-int-max=30 ! h264parse ! queue ! mp4mux faststart=true name=mux ! filesink location={out} \
         {v1}{v2} \
         concat name=beeps ! audiomixer name=mix ! audioconvert ! avenc_aac ! aacparse ! queue ! mux. \
         {beeps} \
         audiotestsrc wave=pink-noise volume=0.02 samplesperbuffer=4800 num-buffers=50 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! mix.",
        out = path.display(),
        v1 = v("black", 60),
        v2 = v("ball", 90),
    );
    gst_launch(&desc);
}

#[test]
fn sound_and_motion_events_match_the_generated_truth() {
    let clip = beeps_and_ball();
    let out = run_input(&clip);
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
    let sounds = out.of_kind("sound");
    assert_eq!(sounds.len(), BEEPS.len(), "one event per beep: {sounds:#?}");
    for (e, (t, len)) in sounds.iter().zip(BEEPS) {
        assert!(
            (e.start - t).abs() <= 0.05,
            "beep at {t}: event starts at {}",
            e.start
        );
        assert!(
            (e.end - (t + len)).abs() <= 0.1,
            "beep ends at {}: event ends at {}",
            t + len,
            e.end
        );
    }
    let motion = out.of_kind("motion");
    assert!(!motion.is_empty(), "the ball must produce motion");
    let first = motion[0];
    assert!(
        (first.start - BALL_AT).abs() <= 1.0 / FPS + 1e-6,
        "ball appears at {BALL_AT} s: motion starts at {} (±1 frame)",
        first.start
    );
    assert!(
        motion.iter().all(|e| e.start >= BALL_AT - 1.0 / FPS),
        "no motion while the picture is still"
    );
    assert_eq!(out.report.streams[0].frames, 150);
}

#[test]
fn windows_hold_only_their_own_time_span_and_cover_the_clip() {
    let out = run_input(&beeps_and_ball());
    assert!(!out.windows.is_empty());
    for w in &out.windows {
        assert!(w.end.0 - w.start.0 == 1_000_000_000, "1.0 s windows");
        for v in &w.vision {
            assert!(
                v.pts >= w.start && v.pts < w.end,
                "frame {} outside [{}, {})",
                v.pts,
                w.start,
                w.end
            );
        }
        for a in &w.audio {
            assert!(
                a.pts < w.end && a.end() > w.start,
                "audio run outside its window"
            );
        }
        assert!(!w.partial, "both modalities run the whole clip");
    }
    let starts: Vec<f64> = out.windows.iter().map(|w| w.start.as_secs_f64()).collect();
    assert!(
        starts.windows(2).all(|p| (p[1] - p[0] - 0.5).abs() < 1e-9),
        "0.5 s hop, in order"
    );
    // Every frame is in exactly the windows that cover its PTS (two, with hop = length / 2).
    let total: usize = out.windows.iter().map(|w| w.vision.len()).sum();
    assert!((total as i64 - 2 * 150).abs() <= 30, "{total}");
}

#[test]
fn audio_only_and_audio_ending_early_do_not_stall() {
    let dir = scratch("generated");
    // Audio only (WAV).
    let wav = dir.join("tone.wav");
    gst_launch(&format!(
        "audiotestsrc wave=sine num-buffers=30 samplesperbuffer=4410 ! audio/x-raw,rate=44100,channels=2 ! wavenc ! filesink location={}",
        wav.display()
    ));
    let out = run_input(&wav);
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
    let s = &out.report.streams[0];
    assert_eq!(s.frames, 0);
    assert!((s.audio_seconds - 3.0).abs() < 0.01, "{}", s.audio_seconds);
    assert!(out
        .windows
        .iter()
        .all(|w| w.vision.is_empty() && !w.audio.is_empty()));

    // Video 4 s, audio ending after 2 s (Matroska, VP8 + Vorbis: another container and codecs).
    let mkv = dir.join("audio_ends_early.mkv");
    gst_launch(&format!(
        "matroskamux name=m ! filesink location={} \
         videotestsrc pattern=ball num-buffers=120 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! vp8enc deadline=1 ! queue ! m. \
         audiotestsrc wave=sine num-buffers=20 samplesperbuffer=4800 ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! vorbisenc ! queue ! m.",
        mkv.display()
    ));
    let out = run_input(&mkv);
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
    let s = &out.report.streams[0];
    assert_eq!(s.frames, 120);
    assert!((s.audio_seconds - 2.0).abs() < 0.05, "{}", s.audio_seconds);
    let last = out.windows.last().expect("windows");
    assert!(
        last.end.as_secs_f64() >= 4.0 && last.partial && last.audio.is_empty(),
        "video-only windows after the audio ends"
    );
}

#[test]
fn test_source_runs_for_its_duration() {
    let text = "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 3.0\n";
    let cfg = PipelineConfig::parse(text, std::path::Path::new("inline.toml")).expect("config");
    assert!(matches!(
        cfg.sources[0],
        SourceConfig {
            kind: SourceKind::Test,
            ..
        }
    ));
    let out = run(cfg);
    let s = &out.report.streams[0];
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
    assert_eq!(s.frames, 90);
    assert!((s.audio_seconds - 3.0).abs() < 0.01);
    assert!(!out.of_kind("motion").is_empty(), "the ball moves");
}

/// Containers and codecs beyond H.264/AAC-in-MP4: each decodes with the right frame count
/// and audio length.
#[test]
fn containers_and_codecs_decode_completely() {
    let dir = scratch("generated");
    // 2 s of video at 30 fps (60 frames) and 2 s of audio.
    let video = "videotestsrc pattern=ball num-buffers=60 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1";
    let audio = "audiotestsrc wave=sine num-buffers=20 samplesperbuffer=4800 ! audio/x-raw,rate=48000,channels=2 ! audioconvert";
    let cases = [
        ("webm_vp9_opus.webm", format!("{video} ! vp9enc deadline=1 ! queue ! webmmux name=m ! filesink location=@ {audio} ! audioresample ! opusenc ! queue ! m."), true),
        ("mkv_h265_mp3.mkv", format!("{video} ! x265enc speed-preset=ultrafast ! h265parse ! queue ! matroskamux name=m ! filesink location=@ {audio} ! lamemp3enc ! mpegaudioparse ! queue ! m."), true),
        ("audio_only.mp3", format!("{audio} ! lamemp3enc ! id3v2mux ! filesink location=@"), false),
    ];
    for (name, desc, has_video) in cases {
        let path = dir.join(name);
        gst_launch(&desc.replace('@', &path.display().to_string()));
        let out = run_input(&path);
        assert!(
            out.report.first_error().is_none(),
            "{name}: {:?}",
            out.report.first_error()
        );
        let s = &out.report.streams[0];
        assert_eq!(s.frames, if has_video { 60 } else { 0 }, "{name}: frames");
        // Opus and MP3 pad their first/last frames (encoder delay): allow one codec frame.
        assert!(
            (s.audio_seconds - 2.0).abs() < 0.06,
            "{name}: audio {} s",
            s.audio_seconds
        );
    }
}

#[test]
fn av_offset_moves_the_audio_timeline() {
    let run_with = |offset: f64| {
        let text = format!(
            "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 3.0\nav_offset = {offset}\n"
        );
        let cfg =
            PipelineConfig::parse(&text, std::path::Path::new("inline.toml")).expect("config");
        let out = run(cfg);
        assert!(
            out.report.first_error().is_none(),
            "{:?}",
            out.report.first_error()
        );
        out.of_kind("sound")
            .iter()
            .map(|e| e.start)
            .collect::<Vec<f64>>()
    };
    // audiotestsrc "ticks": one tick a second.
    let base = run_with(0.0);
    let later = run_with(0.25);
    let earlier = run_with(-0.25);
    eprintln!("sound starts: {base:?} / +0.25 s {later:?} / −0.25 s {earlier:?}");
    assert!(!base.is_empty(), "ticks give sound events");
    assert!(
        later.len() + 1 >= base.len() && !later.is_empty(),
        "moved later, the ticks stay (the last may leave the clip): base {base:?}, +0.25 s {later:?}"
    );
    for (b, l) in base.iter().zip(&later) {
        assert!(
            (l - b - 0.25).abs() < 0.011,
            "base {base:?}, +0.25 s {later:?}"
        );
    }
    // Moved earlier: the same ticks 0.25 s sooner (a tick within the first 0.25 s is cut).
    for e in &earlier {
        assert!(
            base.iter().any(|b| (b - 0.25 - e).abs() < 0.011),
            "base {base:?}, −0.25 s {earlier:?}"
        );
    }
    assert!(!earlier.is_empty());
    let e = PipelineConfig::parse(
        "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 1.0\nav_offset = 11.0\n",
        std::path::Path::new("o.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source[0].av_offset") && e.contains("o.toml"),
        "{e}"
    );
}

/// A time range inside a file (`start`/`end`): the decoder seeks, the events keep the file's
/// times, and nothing outside the range is analysed.
#[test]
fn a_time_range_inside_a_file_is_analysed_in_the_files_times() {
    let clip = beeps_and_ball();
    let text = format!(
        "[[source]]\nname = \"r\"\nkind = \"file\"\npath = {:?}\nstart = 1.5\nend = 4.0\n",
        clip.display().to_string()
    );
    let cfg = PipelineConfig::parse(&text, Path::new("range.toml")).expect("config");
    let out = run(cfg);
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
    // Frames 45..120 of the file (1.5 s to 4.0 s at 30 fps).
    let frames = out.report.streams[0].frames;
    assert!((74..=76).contains(&frames), "{frames} frames");
    assert!(
        (out.report.streams[0].audio_seconds - 2.5).abs() < 0.05,
        "{} s of audio",
        out.report.streams[0].audio_seconds
    );
    // The second beep (2.5–3.0 s) only, at its time in the file (the first half second of
    // a stream only learns the noise floor, as at a file's start).
    let sounds = out.of_kind("sound");
    assert_eq!(sounds.len(), 1, "{sounds:#?}");
    assert!((sounds[0].start - 2.5).abs() <= 0.05, "{}", sounds[0].start);
    for e in &out.events {
        assert!(
            e.start >= 1.5 - 1e-6 && e.end <= 4.0 + 0.05,
            "{} outside 1.5–4.0 s: {}–{}",
            e.kind.as_str(),
            e.start,
            e.end
        );
    }
    let motion = out.of_kind("motion");
    assert!(
        !motion.is_empty() && (motion[0].start - BALL_AT).abs() <= 1.0 / FPS + 1e-6,
        "the ball moves from {BALL_AT} s on: {motion:#?}"
    );

    // A range where none can be: on a test source, and past the end.
    let e = PipelineConfig::parse(
        "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 1.0\nstart = 1.0\n",
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source[0].start") && e.contains("recorded file"),
        "{e}"
    );
    let e = PipelineConfig::parse(
        &format!(
            "[[source]]\nname = \"r\"\nkind = \"file\"\npath = {:?}\nstart = 3.0\nend = 2.0\n",
            clip.display().to_string()
        ),
        Path::new("r.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source[0].end") && e.contains("after start"),
        "{e}"
    );
    let cfg = PipelineConfig::parse(
        &format!(
            "[[source]]\nname = \"r\"\nkind = \"file\"\npath = {:?}\nstart = 9.0\n",
            clip.display().to_string()
        ),
        Path::new("r.toml"),
    )
    .expect("config");
    let out = run(cfg);
    let err = out
        .report
        .first_error()
        .expect("a start past the end fails");
    assert!(
        err.contains("start = 9.000 s") && err.contains("beeps_and_ball.mp4"),
        "{err}"
    );
}
