//! The same input and config give the same events, byte for byte (apart from wall-clock
//! fields, which files do not have), however the stages happen to batch: the dev clip runs
//! with every encoder at three edge capacities (1, 8, 32 items), which changes how many
//! frames and chunks are waiting when a stage takes its next batch.
mod common;

use common::*;
use std::path::Path;

/// The dev clip's first 20 s (people, speech and sounds), to keep the runs short.
fn dev_20s() -> Option<std::path::PathBuf> {
    let clip = shared_media("av/person_sounds_dev.mp4")?;
    Some(generate_once(
        &scratch("determinism").join("dev_20s.mp4"),
        |out| {
            let st = std::process::Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-i"])
                .arg(&clip)
                .args(["-t", "20", "-c", "copy", "-f", "mp4"])
                .arg(out)
                .status()
                .expect("ffmpeg (Debian package ffmpeg) makes this fixture");
            assert!(st.success(), "ffmpeg cut");
        },
    ))
}

/// The run's events as JSON lines, without wall-clock fields.
fn lines_of(cfg: avsense::PipelineConfig) -> Vec<String> {
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
}

#[test]
fn events_do_not_depend_on_edge_capacity() {
    let Some(cut) = dev_20s() else {
        return;
    };
    let lines = |capacity: usize| -> Vec<String> {
        let mut cfg =
            avsense::PipelineConfig::for_input(cut.to_str().expect("utf-8"), None).expect("config");
        cfg.sources[0].capacity = capacity;
        lines_of(cfg)
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

/// Models given as bytes (an embedder's `include_bytes!`) load the same models as the
/// files: with every model file handed over in memory and the model directory empty, every
/// encoder is forced on (a model that did not load from the bytes would be an error) and
/// the events are the same, byte for byte, as with the files on disk.
#[test]
fn models_given_as_bytes_give_the_same_events_as_the_files() {
    use avsense::core::settings::Toggle;
    let Some(cut) = dev_20s() else {
        return;
    };
    let Some(dir) = model_file("yamnet").and_then(|p| p.parent().map(Path::to_path_buf)) else {
        return;
    };
    let config = || {
        let mut cfg =
            avsense::PipelineConfig::for_input(cut.to_str().expect("utf-8"), None).expect("config");
        cfg.detector.mode = Toggle::On;
        cfg.vad.mode = Toggle::On;
        cfg.tagger.mode = Toggle::On;
        cfg.speaker.mode = Toggle::On;
        cfg
    };
    let mut from_files = config();
    from_files.models.dir = Some(dir.clone());
    let files = lines_of(from_files);

    let empty = scratch("determinism").join("no-models");
    std::fs::create_dir_all(&empty).expect("scratch");
    let mut from_bytes = config();
    from_bytes.models.dir = Some(empty);
    let mut given = 0;
    for pin in avsense::model_files::verify::pins() {
        if let Ok(b) = std::fs::read(dir.join(&pin.rel)) {
            from_bytes.models = from_bytes.models.with_bytes(pin.rel.clone(), b);
            given += 1;
        }
    }
    assert!(given >= 8, "{given} model files found in {}", dir.display());
    let bytes = lines_of(from_bytes);
    assert!(files.len() >= 5, "{files:?}");
    assert!(
        files.iter().any(|l| l.contains("\"kind\":\"speech\""))
            && files.iter().any(|l| l.contains("\"kind\":\"object\"")),
        "speech and objects: {files:#?}"
    );
    assert_eq!(files, bytes);
}
