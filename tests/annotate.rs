//! `avsense run --annotate`: 10 s of the dev clip written again with its boxes and captions,
//! checked on decoded frames.
mod common;

use avsense::PipelineConfig;
use avsense_cli::annotate::draw::{PERSON, SOURCE};
use avsense_cli::annotate::scene::Recorder;
use common::*;
use std::path::Path;
use std::process::Command;

/// One decoded RGB frame of `clip` at `t` seconds.
fn frame_at(clip: &Path, t: f64) -> Vec<u8> {
    ffmpeg(&[
        "-v".as_ref(),
        "error".as_ref(),
        "-ss".as_ref(),
        std::ffi::OsStr::new(&format!("{t}")),
        "-i".as_ref(),
        clip.as_os_str(),
        "-frames:v".as_ref(),
        "1".as_ref(),
        "-f".as_ref(),
        "rawvideo".as_ref(),
        "-pix_fmt".as_ref(),
        "rgb24".as_ref(),
        "-".as_ref(),
    ])
}

/// Close to `c` after H.264 and 4:2:0 chroma (a thin line's colour is smeared over two
/// pixels).
fn near(p: [u8; 3], c: [u8; 3]) -> bool {
    p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 80)
}

#[test]
fn the_annotated_dev_clip_has_boxes_on_the_tracks_and_a_caption_for_the_speech() {
    let Some(dev) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    let dir = scratch("annotate");
    let clip = dir.join("dev10.mp4");
    if !clip.exists() {
        ffmpeg(&[
            "-v".as_ref(),
            "error".as_ref(),
            "-y".as_ref(),
            "-i".as_ref(),
            dev.as_os_str(),
            "-t".as_ref(),
            "10".as_ref(),
            "-c".as_ref(),
            "copy".as_ref(),
            clip.as_os_str(),
        ]);
    }
    let out = dir.join("annotated.mp4");
    let _ = std::fs::remove_file(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q", "--input"])
        .arg(&clip)
        .arg("--annotate")
        .arg(&out)
        .output()
        .expect("avsense run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The output decodes: every frame, the duration, an audio track.
    // (The cut keeps the source's packets: its edit list hides one frame from ffprobe's
    // count that GStreamer decodes, so the counts may differ by that frame.)
    let (n_out, n_in) = (ffprobe_frames(&out), ffprobe_frames(&clip));
    assert!(
        n_out.abs_diff(n_in) <= 1 && n_out >= 100,
        "{n_out} frames vs the input's {n_in}"
    );
    assert!(
        (ffprobe_audio_seconds(&out) - ffprobe_audio_seconds(&clip)).abs() < 0.2,
        "audio {} s vs the input's {} s",
        ffprobe_audio_seconds(&out),
        ffprobe_audio_seconds(&clip)
    );

    // The same run in this process, for the boxes of each frame (a file's run is
    // reproducible: the same tracks as the command's).
    let rec = Recorder::default();
    let cfg = PipelineConfig::for_input(&clip.to_string_lossy(), None).expect("config");
    avsense::Pipeline::new(cfg)
        .expect("pipeline")
        .with_tracks_tap(rec.tap())
        .start(vec![Box::new(rec.sink())])
        .expect("start")
        .wait()
        .expect("run");
    let rec = rec.take();
    let (w, h) = (768usize, 432usize);
    // 7.2 s: the person walks in, no sound; 9.0 s: she speaks (a sound_source, 8.0–10.0 s).
    let quiet = rec.scene(7.2, 0.2);
    let speech = rec.scene(9.0, 0.2);
    assert!(quiet.heard.is_empty(), "{quiet:?}");
    assert!(
        speech.heard.iter().any(|s| s.source.is_some()),
        "{speech:?}"
    );
    let person = speech
        .tracks
        .iter()
        .find(|t| t.class == "person")
        .expect("a person at 9 s");
    let f9 = frame_at(&out, 9.0);
    let f7 = frame_at(&out, 7.2);
    assert_eq!(f9.len(), w * h * 3);
    let px = |f: &[u8], x: usize, y: usize| {
        let i = (y * w + x) * 3;
        [f[i], f[i + 1], f[i + 2]]
    };
    let [x0, y0, x1, y1] = person.bbox;
    let (x0, y0, x1, y1) = (
        (x0 * w as f32).round() as usize,
        (y0 * h as f32).round() as usize,
        (x1 * w as f32).round() as usize,
        (y1 * h as f32).round() as usize,
    );
    // Its left and right borders are the person colour, its inside and the frame
    // elsewhere mostly not.
    let rows = y0 + 20..y1.saturating_sub(5).min(h - 45);
    // (Within 2 pixels of the rounded edge: scaling and chroma smear a 2-pixel line.)
    let edge =
        |x: usize, y: usize| (x.saturating_sub(2)..=x + 2).any(|x| near(px(&f9, x, y), PERSON));
    let on_border = rows
        .clone()
        .filter(|&y| edge(x0, y) && edge(x1 - 1, y))
        .count();
    assert!(
        on_border * 10 >= rows.len() * 8,
        "border pixels in the box colour: {on_border} of {}",
        rows.len()
    );
    let inside = rows
        .clone()
        .filter(|&y| near(px(&f9, (x0 + x1) / 2, y), PERSON))
        .count();
    assert!(
        inside * 10 <= rows.len(),
        "inside the box: {inside} of {}",
        rows.len()
    );
    let elsewhere = (0..h - 45)
        .filter(|&y| near(px(&f9, x0.saturating_sub(30), y), PERSON))
        .count();
    assert!(elsewhere <= 5, "a column left of the box: {elsewhere}");
    // The caption strip (bottom 9 %) is there with speech and not without.
    let strip = (h * 91 / 100 + 2)..h;
    let diff: f64 = strip
        .clone()
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let (a, b) = (px(&f9, x, y), px(&f7, x, y));
            a.iter()
                .zip(b)
                .map(|(p, q)| f64::from(p.abs_diff(q)))
                .sum::<f64>()
                / 3.0
        })
        .sum::<f64>()
        / (strip.len() * w) as f64;
    assert!(
        diff > 30.0,
        "caption strip: mean difference {diff:.1} between 9.0 s and 7.2 s"
    );
    // The line from the caption to the speaker's box.
    let green = (0..w * h)
        .filter(|i| near(px(&f9, i % w, i / w), SOURCE) && px(&f9, i % w, i / w)[1] > 180)
        .count();
    assert!(green >= 50, "the source line: {green} pixels");

    // No annotation of what cannot be re-read.
    let e = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q", "pipelines/live-test.toml", "--annotate"])
        .arg(dir.join("x.mp4"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success());
    assert!(
        err.contains("--annotate") && err.contains("recorded file"),
        "{err}"
    );
}
