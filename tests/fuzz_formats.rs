//! Mutation fuzzing of every reader of untrusted bytes: the pipeline config, the labels
//! files, the TF.js graph loader, the TFLite reader, the TorchScript readers (Silero VAD,
//! Light-ASD) and the event schema. Each target starts from a real, valid input and applies
//! random byte mutations (overwrites, inserts, deletions, truncation); the reader must
//! return `Ok` or an error — never panic, hang or allocate without bound.
//!
//! Not coverage-guided (that is `cargo fuzz`'s job): proptest with a fixed seed, so a
//! failure reproduces. `FUZZ_CASES` sets the cases per target (default 24 in the test
//! suite), `FUZZ_SECONDS` runs each target that long instead; RELIABILITY.md records the
//! long local runs (`FUZZ_SECONDS=600 cargo test --release --test fuzz_formats -- --test-threads=1 --nocapture`).
mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite the byte at a position (a fraction of the length) with a value.
    Set(f64, u8),
    /// Insert bytes at a position.
    Insert(f64, Vec<u8>),
    /// Delete a run of up to N bytes at a position.
    Delete(f64, usize),
    /// Cut the input at a position.
    Truncate(f64),
    /// Copy a run from one position over another (duplicated structure).
    Splice(f64, f64, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        6 => (at.clone(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        2 => (at.clone(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        2 => (at.clone(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => at.clone().prop_map(Mutation::Truncate),
        1 => (at.clone(), at, 1usize..256).prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
    ]
}

fn apply(seed: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let pos = |b: &Vec<u8>, f: f64| ((b.len() as f64) * f) as usize;
    for m in ms {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Set(p, v) => {
                let i = pos(&b, *p).min(b.len() - 1);
                b[i] = *v;
            }
            Mutation::Insert(p, v) => {
                let i = pos(&b, *p);
                b.splice(i..i, v.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let i = pos(&b, *p).min(b.len() - 1);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Truncate(p) => {
                let i = pos(&b, *p);
                b.truncate(i);
            }
            Mutation::Splice(a, c, n) => {
                let (i, j) = (pos(&b, *a).min(b.len() - 1), pos(&b, *c).min(b.len() - 1));
                let n = (*n).min(b.len() - i).min(b.len() - j);
                let run = b[i..i + n].to_vec();
                b[j..j + n].copy_from_slice(&run);
            }
        }
    }
    b
}

/// Runs `target` on mutations of `seed` (1 to 8 mutations each): `FUZZ_CASES` cases
/// (default 24), or, with `FUZZ_SECONDS`, batches of 1000 cases with successive seeds until
/// that many seconds have passed. `target` may return anything; a panic inside it fails the
/// test with the mutations that caused it.
fn fuzz(name: &str, seed: &[u8], target: impl Fn(&[u8])) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = env("FUZZ_SECONDS");
    let cases = match seconds {
        Some(_) => 1000,
        None => env("FUZZ_CASES").unwrap_or(24) as u32,
    };
    let t0 = std::time::Instant::now();
    let mut executions = 0u64;
    for batch in 0u64.. {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&batch.to_le_bytes());
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &key),
        );
        let result = runner.run(&prop::collection::vec(mutation(), 1..8), |ms| {
            let bytes = apply(seed, &ms);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&bytes)));
            prop_assert!(r.is_ok(), "{name}: the reader panicked on mutations {ms:?}");
            Ok(())
        });
        executions += u64::from(cases);
        if let Err(e) = result {
            panic!("batch {batch}: {e}");
        }
        if seconds.is_none_or(|s| t0.elapsed().as_secs() >= s) {
            break;
        }
    }
    eprintln!(
        "{name}: {executions} cases in {:.1} s, no panic",
        t0.elapsed().as_secs_f64()
    );
}

/// Every JSON pointer in `v` (objects' members and arrays' items, depth first).
fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

/// Replaces 1 to 4 values of `doc` (chosen among `paths`) by awkward ones and hands the
/// serialised result to `target`.
fn fuzz_json_values(name: &str, doc: &serde_json::Value, paths: &[String], target: impl Fn(&[u8])) {
    use serde_json::json;
    let awkward = [
        json!(null),
        json!(0),
        json!(-1),
        json!(1e12),
        json!(4294967297u64),
        json!(""),
        json!("float64"),
        json!("int32"),
        json!([]),
        json!({}),
        json!([0]),
        json!([-1, 3]),
        json!([1, 100000, 100000, 3]),
        json!([1, 1, 1, 1, 1, 1, 1, 1, 1]),
    ];
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24u32);
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let picks = prop::collection::vec((0..paths.len(), 0..awkward.len()), 1..5);
    let result = runner.run(&picks, |picks| {
        let mut d = doc.clone();
        for &(p, a) in &picks {
            if let Some(slot) = d.pointer_mut(&paths[p]) {
                *slot = awkward[a].clone();
            }
        }
        let bytes = serde_json::to_vec(&d).expect("serialise");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&bytes)));
        let what: Vec<(&str, &serde_json::Value)> = picks
            .iter()
            .map(|&(p, a)| (paths[p].as_str(), &awkward[a]))
            .collect();
        prop_assert!(r.is_ok(), "{name}: the reader panicked with {what:?}");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A scratch file for readers that take a path.
fn scratch_file(name: &str) -> PathBuf {
    common::scratch("fuzz").join(name)
}

#[test]
fn fuzz_pipeline_config() {
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/av-fusion.toml"))
            .expect("pipelines/av-fusion.toml");
    fuzz("config", &seed, |b| {
        let text = String::from_utf8_lossy(b);
        let _ = avsense::PipelineConfig::parse(&text, Path::new("fuzz.toml"));
    });
}

#[test]
fn fuzz_labels() {
    for (rel, speaker) in [
        ("av/person_sounds_dev.json", false),
        ("talking/labels.json", true),
    ] {
        let Some(path) = common::shared_media(rel) else {
            return;
        };
        let seed = std::fs::read(&path).expect("labels");
        let file = scratch_file("labels.json");
        fuzz(rel, &seed, |b| {
            if speaker {
                let text = String::from_utf8_lossy(b);
                let _ =
                    avsense_cli::eval::speaker::SpeakerLabels::parse(&text, Path::new("fuzz.json"));
            } else {
                std::fs::write(&file, b).expect("write");
                let _ = avsense_cli::eval::Labels::load(&file);
            }
        });
    }
}

#[test]
fn fuzz_event_schema() {
    let seed = br#"{"schema":"avsense.event/1","kind":"sound_source","stream":"s","start":1.5,"end":2.0,"confidence":0.7,"labels":[{"name":"Speech","score":0.9}],"objects":[3],"audio":{"peak_dbfs":-20.0,"floor_dbfs":-60.0,"snr_db":40.0,"peak_onset":1.0},"evidence":{"association":{"strategy":"rules","track":3,"class":"person","score":0.8,"compatibility":1.0,"co_presence":0.8,"correlation":0.2,"offset":0.0,"candidates":1}},"wall_time":"2026-12-03T10:00:00.000Z","latency_ms":120.0}"#;
    let ok: avsense::Event = serde_json::from_slice(seed).expect("the seed parses");
    assert_eq!(ok.objects, vec![3]);
    fuzz("event", seed, |b| {
        if let Ok(e) = serde_json::from_slice::<avsense::Event>(b) {
            // What parses also writes back.
            let _ = e.to_json_line();
        }
    });
}

#[test]
fn fuzz_tfjs_graph() {
    let Some(json) = common::model_file("human-models/blazeface.json") else {
        return;
    };
    let dir = common::scratch("fuzz").join("tfjs");
    std::fs::create_dir_all(&dir).expect("dir");
    let bin = json.with_file_name("blazeface.bin");
    std::fs::copy(&bin, dir.join("blazeface.bin")).expect("copy bin");
    let seed = std::fs::read(&json).expect("json");
    let target = dir.join("blazeface.json");
    fuzz("tfjs json", &seed, |b| {
        std::fs::write(&target, b).expect("write");
        let _ = avsense_nn::formats::tfjs::TfjsGraph::load(&target, &candle_core::Device::Cpu);
    });
    // Structure-aware: valid JSON whose values (shapes, dtypes, names, weight offsets,
    // attributes) are replaced, so the graph checks run, not just the JSON parser.
    let doc: serde_json::Value = serde_json::from_slice(&seed).expect("json");
    let mut paths = Vec::new();
    pointers(&doc, String::new(), &mut paths);
    let n = paths.len();
    fuzz_json_values("tfjs graph values", &doc, &paths, |b| {
        std::fs::write(&target, b).expect("write");
        let _ = avsense_nn::formats::tfjs::TfjsGraph::load(&target, &candle_core::Device::Cpu);
    });
    eprintln!("tfjs graph values: {n} mutable values in the seed");
    // The weights file, with the graph intact.
    std::fs::write(&target, &seed).expect("restore json");
    let weights = std::fs::read(&bin).expect("bin");
    fuzz("tfjs weights", &weights, |b| {
        std::fs::write(dir.join("blazeface.bin"), b).expect("write");
        let _ = avsense_nn::formats::tfjs::TfjsGraph::load(&target, &candle_core::Device::Cpu);
    });
}

#[test]
fn fuzz_tflite() {
    let Some(path) = common::model_file("yamnet/yamnet.tflite") else {
        return;
    };
    let seed = std::fs::read(&path).expect("tflite");
    fuzz("tflite", &seed, |b| {
        if let Ok(m) = avsense_nn::formats::tflite::TfliteModel::from_bytes(b.to_vec(), "fuzz") {
            // What parses can be walked: every tensor and its bytes.
            let mut i = 0;
            while m.tensor(i).is_ok() {
                let _ = m.tensor_bytes(i);
                i += 1;
            }
        }
    });
}

#[test]
fn fuzz_torchscript() {
    let device = candle_core::Device::Cpu;
    if let Some(path) = common::model_file("silero-vad/silero_vad.jit") {
        let seed = std::fs::read(&path).expect("jit");
        let file = scratch_file("silero.jit");
        fuzz("silero jit", &seed, |b| {
            std::fs::write(&file, b).expect("write");
            let _ = avsense_nn::models::silero::read_jit_weights(&file, &device);
        });
    }
    if let Some(path) = common::model_file("lightasd/pretrain_AVA_CVPR.model") {
        let seed = std::fs::read(&path).expect("light-asd");
        let file = scratch_file("lightasd.model");
        fuzz("light-asd", &seed, |b| {
            std::fs::write(&file, b).expect("write");
            let _ = avsense_nn::models::lightasd::LightAsd::load(&file, &device);
        });
    }
}
