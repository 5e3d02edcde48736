//! The same input and config give the same events, byte for byte (apart from wall-clock
//! fields, which files do not have), however the stages happen to batch: the dev clip runs
//! with every encoder at three edge capacities (1, 8, 32 items), which changes how many
//! frames and chunks are waiting when a stage takes its next batch.
mod common;

use common::*;
use std::path::Path;

#[test]
fn events_do_not_depend_on_edge_capacity() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    // The first 20 s (people, speech and sounds), to keep the three runs short.
    let cut = generate_once(&scratch("determinism").join("dev_20s.mp4"), |out| {
        let st = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&clip)
            .args(["-t", "20", "-c", "copy", "-f", "mp4"])
            .arg(out)
            .status()
            .expect("ffmpeg (Debian package ffmpeg) makes this fixture");
        assert!(st.success(), "ffmpeg cut");
    });
    let lines = |capacity: usize| -> Vec<String> {
        let mut cfg =
            avsense::PipelineConfig::for_input(cut.to_str().expect("utf-8"), None).expect("config");
        cfg.sources[0].capacity = capacity;
        let out = run_ok(cfg, Path::new("determinism"));
        out.events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.wall_time = None;
                e.latency_ms = None;
                e.to_json_line()
            })
            .collect()
    };
    let base = lines(1);
    assert!(base.len() >= 5, "the clip gives events: {base:?}");
    for capacity in [8, 32] {
        let other = lines(capacity);
        let differing: Vec<(usize, &String, &String)> = base
            .iter()
            .zip(&other)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i, a, b))
            .collect();
        assert!(
            differing.is_empty() && base.len() == other.len(),
            "capacity {capacity}: {} of {} events differ from capacity 1 ({} vs {} events); first: {:#?}",
            differing.len(),
            base.len(),
            other.len(),
            base.len(),
            differing.first()
        );
    }
}
