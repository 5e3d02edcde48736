//! Audio-visual association on the real dev clip (`../shared/media/av/person_sounds_dev.mp4`,
//! labels in `person_sounds_dev.json`), scored the way `avsense eval` scores it, and the
//! fusion stage's refusal of a bad ontology map.
mod common;

use avsense::fusion::av::FusionStrategy;
use avsense::PipelineConfig;
use avsense_cli::eval::{evaluate, Labels};
use common::*;
use std::process::Command;

fn dev_clip() -> Option<(std::path::PathBuf, Labels)> {
    let clip = shared_media("av/person_sounds_dev.mp4")?;
    let labels = Labels::load(&clip.with_extension("json")).expect("labels");
    model_file("yamnet/yamnet.tflite")?;
    model_file("human-models/nanodet.json")?;
    Some((clip, labels))
}

/// `fusion = "rules"`: every scored sound's source is right (speech with a person in view →
/// that person; telephone, speech in the empty room, alarm → off-screen), every sound is
/// detected; `off` emits no association events.
#[test]
fn rules_fusion_gets_every_scored_source_on_the_dev_clip() {
    let Some((clip, labels)) = dev_clip() else {
        return;
    };
    let cfg = PipelineConfig::for_input(&clip.to_string_lossy(), None).expect("config");
    assert_eq!(
        cfg.fusion.strategy,
        FusionStrategy::Rules,
        "rules is the default"
    );
    let out = run(cfg.clone());
    assert!(
        out.report.first_error().is_none(),
        "{:?}",
        out.report.first_error()
    );
    let r = evaluate(&out.events, &labels);
    eprintln!("{}", r.table());
    assert_eq!(r.detected, [5, 5]);
    assert_eq!(r.source_correct, [4, 4], "{}", r.table());
    // False positives count too: measured 5 of 5 sound events on a labelled sound.
    assert!(
        r.precision[0] * 5 >= r.precision[1] * 4,
        "precision below 0.8: {}",
        r.table()
    );
    // Each association event mirrors a sound event and explains itself.
    let assoc: Vec<_> = out
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                avsense::EventKind::SoundSource | avsense::EventKind::OffscreenSound
            )
        })
        .collect();
    assert_eq!(assoc.len(), out.of_kind("sound").len());
    for e in out.of_kind("sound_source") {
        let a = e.evidence.association.as_ref().expect("evidence");
        assert_eq!(e.objects, vec![a.track]);
        // `rules` explains its score: compatibility × co-presence, from evidence of its own.
        assert_eq!(a.strategy, "rules");
        assert!(
            (a.score - a.compatibility * a.co_presence).abs() < 1e-5,
            "score is not compatibility × co-presence: {a:?}"
        );
        assert!(a.candidates >= 1 && a.co_presence <= 1.0, "{a:?}");
    }

    let mut off = cfg;
    off.fusion.strategy = FusionStrategy::Off;
    let out = run(off);
    assert!(out.of_kind("sound_source").is_empty() && out.of_kind("offscreen_sound").is_empty());
}

/// A bad ontology map (a class YAMNet does not have): the pipeline refuses to start and the
/// error names the file, the entry and the class.
#[test]
fn a_bad_ontology_map_refuses_to_start() {
    if model_file("yamnet/yamnet.tflite").is_none() {
        return;
    }
    let dir = scratch("ontology");
    let map = dir.join("bad_ontology.toml");
    std::fs::write(
        &map,
        "[[map]]\ncoco = [\"dog\"]\naudioset = [\"Barking loudly\"]\n",
    )
    .expect("write");
    let text = format!(
        "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 1.0\n\n[fusion]\nontology = \"{}\"\n",
        map.display()
    );
    let cfg = PipelineConfig::parse(&text, std::path::Path::new("f.toml")).expect("config");
    let err = match avsense::Pipeline::new(cfg) {
        Ok(_) => panic!("started with a bad ontology map"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("bad_ontology.toml")
            && err.contains("map[0]")
            && err.contains("Barking loudly"),
        "{err}"
    );
}

/// `avsense eval` with a labels file that has a misspelt field: a clear error, exit ≠ 0.
#[test]
fn eval_rejects_a_labels_file_with_a_wrong_field() {
    let dir = scratch("eval-labels");
    let bad = dir.join("labels_typo.json");
    std::fs::write(
        &bad,
        r#"{"clip":"x.mp4","sounds":[{"start":1.0,"end":2.0,"audioset":["Speech"],"sourse":"person"}]}"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["eval", "no-clip.mp4"])
        .arg(&bad)
        .output()
        .expect("run avsense");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("labels_typo.json") && stderr.contains("sourse"),
        "{stderr}"
    );
}

/// The learned strategies with the weights shipped in `models/fusion/` (built into the
/// binary): each gets every scored source right on the dev clip and gives one
/// association event per sound; every strategy's `av_event`s carry a
/// known class.
#[test]
fn learned_fusion_on_the_dev_clip() {
    let Some((clip, labels)) = dev_clip() else {
        return;
    };
    let base = PipelineConfig::for_input(&clip.to_string_lossy(), None).expect("config");
    for strategy in [
        FusionStrategy::Gnn,
        FusionStrategy::Attention,
        FusionStrategy::Concat,
    ] {
        let mut cfg = base.clone();
        cfg.fusion.strategy = strategy;
        let out = run(cfg);
        assert!(
            out.report.first_error().is_none(),
            "{:?}",
            out.report.first_error()
        );
        let r = evaluate(&out.events, &labels);
        eprintln!("{strategy:?}\n{}", r.table());
        let assoc = out.of_kind("sound_source").len() + out.of_kind("offscreen_sound").len();
        assert_eq!(assoc, out.of_kind("sound").len(), "{strategy:?}");
        for e in out.of_kind("av_event") {
            assert!(
                avsense_nn::models::fusion::EVENT_CLASSES[1..].contains(&e.labels[0].name.as_str()),
                "{e:?}"
            );
            assert!(e.end > e.start);
        }
        // Every window with an audio segment went through the model; nothing was capped.
        let f = out.report.streams[0].events.fusion;
        assert!(f.windows_scored >= 100, "{f:?}");
        assert_eq!((f.model_failures, f.capped_tracks), (0, 0), "{f:?}");
        // Every strategy finds every scored source (the weights never heard the clip's
        // phone, shutter or alarm: those sounds are held out of the dataset).
        assert_eq!(r.source_correct, [4, 4], "{strategy:?}\n{}", r.table());
        if strategy == FusionStrategy::Gnn {
            for e in out.of_kind("sound_source") {
                let a = e.evidence.association.as_ref().expect("evidence");
                assert_eq!(a.strategy, "gnn");
                assert_eq!(e.objects, vec![a.track]);
                // Speech with a person in view: the ontology compatibility is what mattered.
                let imp = a.importance.expect("importance");
                assert!(
                    imp.compatibility > imp.co_presence.max(imp.correlation).max(imp.offset),
                    "{imp:?}"
                );
            }
            // One `av_event` per scored sound, of the right class; none elsewhere.
            let av = out.of_kind("av_event");
            for l in labels.sounds.iter().filter(|l| l.source.is_some()) {
                let want = match (
                    l.audioset.contains(&"Speech".to_string()),
                    l.source.as_deref(),
                ) {
                    (true, Some("person")) => "speech_in_view",
                    (true, _) => "speech_offscreen",
                    (false, Some("person")) => "sound_in_view",
                    (false, _) => "sound_offscreen",
                };
                let hit: Vec<&str> = av
                    .iter()
                    .filter(|e| e.start < l.end && e.end > l.start)
                    .map(|e| e.labels[0].name.as_str())
                    .collect();
                assert_eq!(hit, vec![want], "{} s: {av:?}", l.start);
            }
            for e in &av {
                assert!(
                    labels
                        .sounds
                        .iter()
                        .any(|l| e.start < l.end + 0.5 && e.end > l.start - 0.5),
                    "an av_event away from every sound: {e:?}"
                );
            }
        }
    }
}

/// Weights that do not fit: the pipeline refuses to start and the error names the file and
/// the tensor (wrong shape), or the file (truncated).
#[test]
fn bad_fusion_weights_refuse_to_start() {
    if model_file("yamnet/yamnet.tflite").is_none() {
        return;
    }
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fusion");
    let dir = scratch("bad-weights");
    // A spec that asks for a wider network than the weights hold.
    let spec = std::fs::read_to_string(shipped.join("gnn.json")).expect("gnn.json");
    let mut v: serde_json::Value = serde_json::from_str(&spec).expect("json");
    let hidden = v["net"]["hidden"].as_u64().expect("hidden");
    v["net"]["hidden"] = serde_json::json!(hidden * 2);
    std::fs::write(dir.join("gnn.json"), v.to_string()).expect("write");
    let weights = std::fs::read(shipped.join("gnn.safetensors")).expect("weights");
    std::fs::write(dir.join("gnn.safetensors"), &weights).expect("write");
    let start = |dir: &std::path::Path| {
        let text = format!(
            "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 1.0\n\n[fusion]\nstrategy = \"gnn\"\nweights = \"{}\"\n",
            dir.display()
        );
        let cfg = PipelineConfig::parse(&text, std::path::Path::new("f.toml")).expect("config");
        match avsense::Pipeline::new(cfg) {
            Ok(_) => panic!("started with bad weights in {}", dir.display()),
            Err(e) => e.to_string(),
        }
    };
    let err = start(&dir);
    assert!(
        err.contains("gnn.safetensors") && err.contains("tensor `") && err.contains("expected"),
        "{err}"
    );
    // Truncated.
    std::fs::write(dir.join("gnn.json"), &spec).expect("write");
    std::fs::write(dir.join("gnn.safetensors"), &weights[..weights.len() / 3]).expect("write");
    let err = start(&dir);
    assert!(
        err.contains("gnn.safetensors") && err.contains("cannot read"),
        "{err}"
    );
}

/// The training commands end to end on a tiny set (CI checks the commands, not the model):
/// `dataset build` on 12 s of a real clip with 2 mixes, `train --model gnn --epochs 2`, and
/// the written weights load into a pipeline.
#[test]
fn dataset_build_and_train_commands_run() {
    let Some(car) = shared_media("videos/car-detection.mp4") else {
        return;
    };
    if model_file("yamnet/yamnet.tflite").is_none()
        || model_file("human-models/nanodet.json").is_none()
    {
        return;
    }
    if !std::path::Path::new("/usr/share/sounds/freedesktop/stereo").is_dir() {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "sound-theme-freedesktop is missing under CI=true"
        );
        eprintln!("SKIP: sound-theme-freedesktop is not installed");
        return;
    }
    let dir = scratch("tiny-training");
    let data = dir.join("data");
    let bin = env!("CARGO_BIN_EXE_avsense");
    let out = Command::new(bin)
        .args(["dataset", "build", "--mixes", "2", "--speech", "2", "--out"])
        .arg(&data)
        .arg("--clip")
        .arg(format!("{}@0-12", car.display()))
        .output()
        .expect("run avsense");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let records = avsense_cli::dataset::read_records(&data.join("graphs.jsonl")).expect("graphs");
    // 12 s, hop 0.5, window 1: 23 windows per mix.
    assert!(records.len() >= 40, "{}", records.len());
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["mixes"].as_array().map(|m| m.len()), Some(2));

    let weights = dir.join("weights");
    let out = Command::new(bin)
        .args(["train", "--model", "gnn", "--epochs", "2", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&weights)
        .output()
        .expect("run avsense");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("epoch   2"), "{stderr}");
    let text = format!(
        "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 1.0\n\n[fusion]\nstrategy = \"gnn\"\nweights = \"{}\"\n",
        weights.display()
    );
    let cfg = PipelineConfig::parse(&text, std::path::Path::new("f.toml")).expect("config");
    avsense::Pipeline::new(cfg).expect("the trained weights load");
    // A test clip is refused as training input.
    let out = Command::new(bin)
        .args(["dataset", "build", "--out"])
        .arg(dir.join("never"))
        .arg("--clip")
        .arg("../shared/media/av/person_sounds_dev.mp4")
        .output()
        .expect("run avsense");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("test clip"));
}
