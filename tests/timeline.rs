//! `avsense timeline`: the picture of the dev clip's events, checked by its pixels.
mod common;

use avsense_cli::timeline::{lanes::LaneKind, layout_file, TimelineOptions};
use common::*;
use std::path::Path;
use std::process::Command;

fn avsense() -> Command {
    Command::new(env!("CARGO_BIN_EXE_avsense"))
}

/// A pixel of a bar or an arrow: saturated (the page, the grid, the separators and the text
/// are white or grey).
fn coloured(p: [u8; 3]) -> bool {
    let (hi, lo) = (p.iter().max().copied(), p.iter().min().copied());
    hi.zip(lo).is_some_and(|(h, l)| h - l > 60)
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("png"),
    ));
    let mut r = dec.read_info().expect("png header");
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).expect("png frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn the_dev_clips_timeline_has_a_lane_per_track_and_kind_each_drawn() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    let dir = scratch("timeline");
    let events = dir.join("dev.jsonl");
    // The first 32 s: a dog, two people, speech given to one of them, off-screen sounds.
    let cfg = dir.join("dev.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[source]]\nname = \"dev\"\nkind = \"file\"\npath = {:?}\nend = 32.0\n\n[[sink]]\nkind = \"jsonl\"\npath = {:?}\n",
            clip.display().to_string(),
            events.display().to_string()
        ),
    )
    .expect("config");
    let run = avsense()
        .args(["run", "-q", "--force"])
        .arg(&cfg)
        .output()
        .expect("avsense run");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let png_path = dir.join("dev.png");
    let out = avsense()
        .args(["timeline"])
        .arg(&events)
        .arg("-o")
        .arg(&png_path)
        .output()
        .expect("avsense timeline");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let p = layout_file(&events, &TimelineOptions::default()).expect("layout");
    let (w, h, rgb) = decode_png(&png_path);
    assert_eq!((w, h), (p.width, p.height), "the PNG is the laid-out size");
    assert_eq!(w, 1600);
    let kinds: Vec<LaneKind> = p.lanes.iter().map(|l| l.kind).collect();
    let names: Vec<&str> = p.lanes.iter().map(|l| l.name.as_str()).collect();
    eprintln!("lanes: {names:?}");
    for k in [
        LaneKind::Track,
        LaneKind::Speech,
        LaneKind::Sound,
        LaneKind::Offscreen,
    ] {
        assert!(kinds.contains(&k), "{k:?} lane missing: {names:?}");
    }
    assert!(
        names.iter().filter(|n| n.starts_with("person #")).count() >= 2,
        "a lane per person track: {names:?}"
    );
    let px = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let (left, right) = (p.plot.0 as u32, p.plot.1 as u32);
    for l in &p.lanes {
        let n = (l.top as u32 + 1..l.bottom as u32 - 1)
            .flat_map(|y| (left..right).map(move |x| (x, y)))
            .filter(|&(x, y)| coloured(px(x, y)))
            .count();
        assert!(n >= 20, "lane {:?} has {n} drawn pixels", l.name);
    }
    // Nothing coloured in the margins around the plot (left of the axis: names only).
    let margin = (0..h)
        .flat_map(|y| (0..left - 8).map(move |x| (x, y)))
        .filter(|&(x, y)| coloured(px(x, y)))
        .count();
    assert_eq!(margin, 0, "coloured pixels left of the plot");
    // The speech's source: an arrow (green) from the sounds lane to a person's lane.
    let arrow = (0..h)
        .flat_map(|y| (left..right).map(move |x| (x, y)))
        .filter(|&(x, y)| px(x, y) == [20, 150, 60])
        .count();
    assert!(arrow >= 30, "the source arrow: {arrow} pixels");

    // SVG: the same lanes, as text.
    let svg_path = dir.join("dev.svg");
    let out = avsense()
        .args(["timeline"])
        .arg(&events)
        .arg("-o")
        .arg(&svg_path)
        .output()
        .expect("avsense timeline");
    assert!(out.status.success());
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    for n in &names {
        assert!(svg.contains(&format!(">{n}</text>")), "{n} in the SVG");
    }
}

#[test]
fn bad_events_and_outputs_get_one_line_errors() {
    let dir = scratch("timeline");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"kind\":\"sound\"}\n").expect("file");
    let out = avsense()
        .args(["timeline"])
        .arg(&bad)
        .args(["-o", "/tmp/x.svg"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.jsonl:1") && err.contains("not an avsense event"),
        "{err}"
    );
    let out = avsense()
        .args(["timeline"])
        .arg(&bad)
        .args(["-o", "/tmp/x.gif"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("x.gif") && err.contains(".png or an .svg"),
        "{err}"
    );
}
