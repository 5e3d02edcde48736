//! Numerical parity of our candle Silero VAD with onnxruntime.
//!
//! References: tests/reference/data/silero_<input>.json, written by
//! tests/reference/silero_reference.py (how to set it up is in its header). Each holds the
//! per-chunk probabilities of two onnxruntime runs over the same decoded input: the
//! package's ONNX model as shipped ("onnx", the v6.2 weights) and its 16 kHz graph with
//! the weights of the package's silero_vad_16k.safetensors ("onnx_with_safetensors_weights";
//! the two checkpoints differ, upstream issue #768). A test compares with the run whose
//! `weights_digest` equals the digest of the weights it loaded.
//!
//! Protocol (as the script): ffmpeg decodes to 16 kHz mono f32; the whole file streams
//! through one model state in 512-sample chunks with 64 samples of context; the last
//! partial chunk is zero-padded. Here the samples go in by 1000 at a time, so the
//! stream buffering is exercised too. Tolerance: max |Δprob| ≤ 1e-3 over every chunk.

mod common;

use avsense_nn::models::silero::{read_jit_weights, SileroVad, CHUNK_SAMPLES, WEIGHTS};
use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const TOLERANCE: f32 = 1e-3;
/// Samples handed to the model per call (not a multiple of 512 on purpose).
const FEED: usize = 1000;

const INPUTS: [(&str, &str); 2] = [
    ("espeak_sentence", "sounds/espeak_sentence.wav"),
    ("person_sounds_dev", "av/person_sounds_dev.mp4"),
];

fn reference(stem: &str) -> serde_json::Value {
    common::reference_json(&format!("silero_{stem}.json"))
}

/// sha256 over the f32 little-endian bytes of every weight, in the order of WEIGHTS
/// (the script's `weights_digest`).
fn weights_digest(tensors: &HashMap<String, Tensor>) -> String {
    let mut h = Sha256::new();
    for (name, _) in WEIGHTS {
        let t = tensors
            .get(name)
            .unwrap_or_else(|| panic!("weights lack {name}"));
        let v = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    common::hex(&h.finalize())
}

/// The reference run made with these weights.
fn run_for_digest(doc: &serde_json::Value, digest: &str) -> (String, Vec<f32>) {
    let runs = doc["runs"].as_object().expect("runs");
    for (name, run) in runs {
        if run["weights_digest"].as_str() == Some(digest) {
            let probs = run["probs"]
                .as_array()
                .expect("probs")
                .iter()
                .map(|p| p.as_f64().expect("prob") as f32)
                .collect();
            return (name.clone(), probs);
        }
    }
    let known: Vec<String> = runs
        .iter()
        .map(|(k, r)| format!("{k}: {}", r["weights_digest"]))
        .collect();
    panic!(
        "no reference run was made with weights of digest {digest}; the references have {known:?}"
    );
}

/// Streams the whole input through one state, FEED samples at a time, then flushes.
fn stream(vad: &mut SileroVad, samples: &[f32]) -> Vec<f32> {
    vad.reset().expect("reset");
    let mut probs = Vec::new();
    for part in samples.chunks(FEED) {
        probs.extend(vad.process(part).expect("process"));
    }
    probs.extend(vad.flush().expect("flush"));
    probs
}

/// Runs `vad` over both inputs against the reference run made with `digest`'s weights.
fn check(vad: &mut SileroVad, digest: &str, what: &str) {
    for (stem, rel) in INPUTS {
        let Some(media) = common::shared_media(rel) else {
            continue;
        };
        let doc = reference(stem);
        let (samples, sha) = common::decode_mono_16k(&media);
        assert_eq!(
            samples.len() as u64,
            doc["input"]["samples"].as_u64().expect("samples"),
            "{rel}: decoded sample count differs from the reference's"
        );
        assert_eq!(
            sha,
            doc["input"]["sha256_f32le"].as_str().expect("sha256_f32le"),
            "{rel}: ffmpeg decoded different samples from the reference's (another ffmpeg version?)"
        );
        let (run, expected) = run_for_digest(&doc, digest);
        let got = stream(vad, &samples);
        assert_eq!(
            got.len(),
            samples.len().div_ceil(CHUNK_SAMPLES),
            "{rel}: one probability per started chunk"
        );
        assert_eq!(got.len(), expected.len(), "{rel}: chunk count vs reference");
        let (worst, max_d) = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        println!(
            "silero parity [{what}] {rel}: {} chunks vs onnxruntime run \"{run}\": max |Δprob| = {max_d:.2e} (chunk {worst}: ours {} ref {})",
            got.len(),
            got[worst],
            expected[worst]
        );
        assert!(
            max_d <= TOLERANCE,
            "{rel}: max |Δprob| {max_d} at chunk {worst} (ours {}, reference {}) exceeds {TOLERANCE}",
            got[worst],
            expected[worst]
        );
    }
}

/// The weights `avsense models fetch` installs.
#[test]
fn silero_safetensors_matches_onnxruntime() {
    let Some(path) = common::model_file("silero-vad/silero_vad_16k.safetensors") else {
        return;
    };
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let digest = weights_digest(&tensors);
    let mut vad = SileroVad::load(&path, &Device::Cpu).expect("load silero safetensors");
    check(&mut vad, &digest, "safetensors");
}

/// The official v6.2 weights (the default that `avsense models fetch` installs), read from
/// the package's TorchScript archive.
#[test]
fn silero_jit_weights_match_onnxruntime() {
    let Some(path) = common::model_file("silero-vad/silero_vad.jit") else {
        return;
    };
    let tensors = read_jit_weights(&path, &Device::Cpu).expect("read jit");
    let digest = weights_digest(&tensors);
    let doc = reference(INPUTS[0].0);
    assert_eq!(
        Some(digest.as_str()),
        doc["runs"]["onnx"]["weights_digest"].as_str(),
        "the JIT's 16 kHz weights should be bit-identical to silero_vad_16k_op15.onnx's initializers"
    );
    let mut vad = SileroVad::load_jit(&path, &Device::Cpu).expect("load silero jit");
    check(&mut vad, &digest, "jit");
}

/// Timing of one 32 ms chunk, streaming (not a check; prints only). Run with
/// `RAYON_NUM_THREADS=1 cargo test --release --test parity_silero -- --ignored --nocapture`.
#[test]
#[ignore]
fn silero_timing() {
    let Some(path) = common::model_file("silero-vad/silero_vad_16k.safetensors") else {
        return;
    };
    let mut vad = SileroVad::load(&path, &Device::Cpu).expect("load");
    let x: Vec<f32> = (0..CHUNK_SAMPLES * 2000)
        .map(|i| 0.1 * ((i as f32 * 0.37).sin() + (i as f32 * 0.011).sin()))
        .collect();
    for c in x.chunks_exact(CHUNK_SAMPLES).take(200) {
        vad.process_chunk(c).expect("warm up");
    }
    let t = std::time::Instant::now();
    for c in x.chunks_exact(CHUNK_SAMPLES) {
        vad.process_chunk(c).expect("chunk");
    }
    let per_chunk = t.elapsed().as_secs_f64() / 2000.0;
    vad.reset().expect("reset");
    let t = std::time::Instant::now();
    let n = vad.process(&x).expect("batch").len();
    let batched = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "silero candle CPU (RAYON_NUM_THREADS={:?}): process_chunk {:.1} us/chunk; process over {n} chunks {:.1} us/chunk",
        std::env::var("RAYON_NUM_THREADS").ok(),
        per_chunk * 1e6,
        batched * 1e6
    );
}
