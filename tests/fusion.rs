//! Audio-visual association on the real dev clip (`../shared/media/av/person_sounds_dev.mp4`,
//! labels in `person_sounds_dev.json`), scored the way `avsense eval` scores it, and the
//! fusion stage's refusal of a bad ontology map.
mod common;

use avsense::eval::{evaluate, Labels};
use avsense::fusion::av::FusionStrategy;
use avsense::PipelineConfig;
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
        assert!(
            a.score >= 0.3 && a.compatibility > 0.0 && a.co_presence > 0.0,
            "{a:?}"
        );
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
