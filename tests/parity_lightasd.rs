//! Light-ASD on candle against the upstream PyTorch model, on real face crops and audio.
//!
//! The reference (`tests/reference/data/lightasd_one_face_speaking.json`, written by
//! `tests/reference/lightasd_reference.py` with torch 2.15.0 on the CPU, importing the
//! upstream model code from a checkout of Junhua-Liao/Light-ASD) holds, for
//! ../shared/media/talking/one_face_speaking.mp4: the ffmpeg argvs that decode its face
//! crops (112×112 gray, Light-ASD's framing of a fixed face box) and its audio (s16le 16
//! kHz) with the bytes' sha256; python_speech_features' MFCC of that audio; and per weight
//! file the per-frame logits of the whole clip as one chunk (153 frames, 612 MFCC frames),
//! of a 2 s chunk (frames 25–75), the front ends' embeddings (first and last 3 frames and
//! digests) and the back end's output.
//!
//! Here the same argvs run (sha256 checked), and our model runs on the same crops with
//! (a) the reference's MFCC — the model alone: every logit and every saved embedding value
//! within |Δ| ≤ 1e-3; and (b) our own MFCC front end (src/encode/mfcc.rs) on the decoded
//! audio — the whole audio path: logits within |Δ| ≤ 1e-3 too.
//!
//! Needs the weights (`avsense models fetch` → models/cache/lightasd/), ../shared/media and
//! ffmpeg; skips without the first two (fails without them under CI=true).

mod common;

use avsense_nn::dsp::mfcc::Mfcc;
use avsense_nn::models::lightasd::{LightAsd, CROP, MFCC_DIM, MFCC_PER_FRAME};
use candle_core::{Device, Tensor};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f64 = 1e-3;

fn reference() -> Value {
    common::reference_json("lightasd_one_face_speaking.json")
}

/// The weights file, or None (skip) when not fetched — a failure under CI=true.
fn weights(name: &str) -> Option<PathBuf> {
    common::model_file(&format!("lightasd/{name}.model"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn max_abs(ours: &[f32], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "lengths differ");
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max)
}

struct Inputs {
    /// `[frames, 112, 112]` gray.
    crops: Vec<u8>,
    frames: usize,
    /// python_speech_features' MFCC (untrimmed).
    psf: Vec<[f32; MFCC_DIM]>,
    /// Ours, from the decoded audio (untrimmed).
    ours: Vec<[f32; MFCC_DIM]>,
    t: usize,
}

fn inputs(doc: &Value) -> Option<Inputs> {
    common::shared_media(doc["media"].as_str().expect("media"))?;
    let crops = common::ffmpeg_recorded(&doc["video"]);
    let frames = crops.len() / (CROP * CROP);
    assert_eq!(
        frames,
        doc["video"]["frames"].as_u64().expect("frames") as usize
    );
    let pcm = common::ffmpeg_recorded(&doc["audio"]);
    let samples: Vec<f32> = pcm
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let mut m = Mfcc::new();
    let mut ours = Vec::new();
    for c in samples.chunks(1000) {
        ours.extend(m.push(c));
    }
    ours.extend(m.finish());
    let psf: Vec<[f32; MFCC_DIM]> = doc["mfcc"]["values"]
        .as_array()
        .expect("mfcc values")
        .iter()
        .map(|row| {
            let r = floats(row);
            let mut a = [0f32; MFCC_DIM];
            for (d, s) in a.iter_mut().zip(r) {
                *d = s as f32;
            }
            a
        })
        .collect();
    let t = doc["trim"]["T"].as_u64().expect("T") as usize;
    Some(Inputs {
        crops,
        frames,
        psf,
        ours,
        t,
    })
}

fn crop_tensor(inp: &Inputs, from: usize, to: usize) -> Tensor {
    assert!(to <= inp.frames);
    let v: Vec<f32> = inp.crops[from * CROP * CROP..to * CROP * CROP]
        .iter()
        .map(|&p| f32::from(p))
        .collect();
    Tensor::from_vec(v, (1, to - from, CROP, CROP), &Device::Cpu).expect("crops")
}

fn mfcc_tensor(m: &[[f32; MFCC_DIM]], from: usize, to: usize) -> Tensor {
    let v: Vec<f32> = m[from..to].iter().flatten().copied().collect();
    Tensor::from_vec(v, (1, to - from, MFCC_DIM), &Device::Cpu).expect("mfcc")
}

fn scores(model: &LightAsd, mfcc: &Tensor, crops: &Tensor) -> Vec<f32> {
    model
        .forward(mfcc, crops)
        .expect("forward")
        .squeeze(0)
        .expect("squeeze")
        .to_vec1::<f32>()
        .expect("scores")
}

/// Checks a saved intermediate ({shape, digest, first, last}) against ours `[T, 128]`.
fn check_intermediate(what: &str, ours: &Tensor, saved: &Value) -> f64 {
    let rows = ours.to_vec2::<f32>().expect("rows");
    let first = saved["first"].as_array().expect("first");
    let last = saved["last"].as_array().expect("last");
    let mut worst = 0.0f64;
    for (k, r) in first.iter().enumerate() {
        worst = worst.max(max_abs(&rows[k], &floats(r)));
    }
    let n = rows.len();
    for (k, r) in last.iter().enumerate() {
        worst = worst.max(max_abs(&rows[n - last.len() + k], &floats(r)));
    }
    let sum: f64 = rows.iter().flatten().map(|&x| f64::from(x)).sum();
    let want = saved["digest"]["sum"].as_f64().expect("digest sum");
    let per = (sum - want).abs() / (rows.len() * rows[0].len()) as f64;
    assert!(
        per <= 1e-5,
        "{what}: mean differs by {per} (sum {sum} vs {want})"
    );
    assert!(worst <= TOL, "{what}: max |Δ| {worst} > {TOL}");
    worst
}

#[test]
fn light_asd_matches_pytorch_on_real_crops_and_mfcc() {
    let doc = reference();
    let Some(inp) = inputs(&doc) else {
        return;
    };
    let t = inp.t;
    let crops = crop_tensor(&inp, 0, t);
    for (name, run) in doc["runs"].as_object().expect("runs") {
        let Some(path) = weights(name) else {
            return;
        };
        let model = LightAsd::load(&path, &Device::Cpu).expect("load");
        // (a) The model alone, on the reference's own MFCC.
        let psf = mfcc_tensor(&inp.psf, 0, MFCC_PER_FRAME * t);
        let got = scores(&model, &psf, &crops);
        let d_whole = max_abs(&got, &floats(&run["whole"]["scores"]));
        let a = model
            .audio_embed(&psf)
            .expect("audio")
            .squeeze(0)
            .expect("sq");
        let v = model
            .visual_embed(&crops)
            .expect("visual")
            .squeeze(0)
            .expect("sq");
        let d_a = check_intermediate("audio embedding", &a, &run["whole"]["audio_embed"]);
        let d_v = check_intermediate("visual embedding", &v, &run["whole"]["visual_embed"]);
        let h = model
            .backend(&a.unsqueeze(0).expect("u"), &v.unsqueeze(0).expect("u"))
            .expect("backend")
            .squeeze(0)
            .expect("sq");
        let d_h = check_intermediate("back end", &h, &run["whole"]["bgru"]);
        // The 2 s chunk.
        let c = &run["chunk"];
        let vf = floats(&c["video_frames"]);
        let mf = floats(&c["mfcc_frames"]);
        let got_chunk = scores(
            &model,
            &mfcc_tensor(&inp.psf, mf[0] as usize, mf[1] as usize),
            &crop_tensor(&inp, vf[0] as usize, vf[1] as usize),
        );
        let d_chunk = max_abs(&got_chunk, &floats(&c["scores"]));
        // (b) Our MFCC front end on the decoded audio.
        let ours = mfcc_tensor(&inp.ours, 0, MFCC_PER_FRAME * t);
        let got_ours = scores(&model, &ours, &crops);
        let d_ours = max_abs(&got_ours, &floats(&run["whole"]["scores"]));
        eprintln!(
            "{name}: logits max |Δ| whole {d_whole:.2e}, 2 s chunk {d_chunk:.2e}, with our MFCC \
             {d_ours:.2e}; embeddings audio {d_a:.2e}, visual {d_v:.2e}, back end {d_h:.2e}"
        );
        assert!(
            d_whole <= TOL,
            "{name}: whole-clip logits max |Δ| {d_whole}"
        );
        assert!(d_chunk <= TOL, "{name}: chunk logits max |Δ| {d_chunk}");
        assert!(
            d_ours <= TOL,
            "{name}: logits with our MFCC max |Δ| {d_ours}"
        );
    }
}
