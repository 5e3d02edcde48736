//! Numerical parity of our YAMNet (log-mel front end + candle network) with LiteRT.
//!
//! References: tests/reference/data/yamnet_<input>.json, written by
//! tests/reference/yamnet_reference.py (set-up and protocol in its header). Per patch
//! (15600 samples every 7680, the last zero-padded; 4 WAVs whole, 3 windows of the dev clip,
//! 30 patches) they hold:
//! * "litert": yamnet.tflite as shipped (int8 weights, hybrid kernels, XNNPACK, 1 thread):
//!   its own log-mel (every frame) and scores;
//! * "float": the same graph run by LiteRT with the int8 weights dequantised and the front
//!   end's DFT and mel matrices exact (upstream's float YAMNet): log-mel (first 144 frames
//!   of each segment) and scores;
//! * "float64": upstream's front-end formulas in float64 numpy (first 144 frames).
//!
//! What is asserted, and why those bounds (measured values in brackets):
//! * Front end vs "float64" log-mel: max |Δ| ≤ 1e-3 [4.8e-7, the f32 storage]; vs LiteRT's
//!   f32 "float" run ≤ 2e-3 [8.0e-4: that run's own f32 DFT rounding, magnified by
//!   ln(mel + 0.001) in quiet bands].
//! * Front end vs "litert" log-mel: NOT within 1e-3, and it cannot be [max 5.87, mean 0.38]:
//!   yamnet.tflite computes its STFT and mel projection with FULLY_CONNECTED ops whose
//!   hybrid kernels quantise each frame's input to int8 on the fly (XNNPACK: asymmetric,
//!   one scale and zero point per row), on top of int8 DFT and mel weights; quiet bins fall
//!   to the floor ln(0.001) = −6.91. The test proves this is the whole difference: the
//!   file's window, padding, log offset and int8 matrices are upstream's exact ones (to half
//!   a quantisation step), and emulating XNNPACK's kernels with them on our framing
//!   reproduces the "litert" log-mel [bit-exact but for 2 of 113 664 values, 0.056, where
//!   LiteRT's inexact SQRT moves a magnitude across an int8 rounding boundary]. The raw gap
//!   is asserted at LITERT_LOG_MEL_BOUND only as a regression guard.
//! * Network alone, fed the reference's own log-mel (front-end and network errors apart):
//!   "float" log-mel → vs "float" scores max |Δ| ≤ 1e-4 [2.3e-6]; "litert" log-mel → vs
//!   "litert" scores max |Δ| ≤ 0.075 [0.042; ≤ 0.02 on 27 of 30 patches; a regression guard
//!   that allows for XNNPACK's CPU-dependent int8 kernels, ±0.013], top-1 and top-5
//!   the same up to near-ties within 0.02 [top-1 same on 29/30, top-5 on 27/30]. The rest is
//!   LiteRT's int8 activations in the 1×1 convolutions and the classifier, which we do not
//!   reproduce (f32 activations here).
//! * Whole model (our front end + network) vs "float" scores: max |Δ| ≤ 1e-3 [1.1e-5], same
//!   top-5 on every patch. Vs "litert" scores: printed only [max 0.56; same top-5 on 5/30]:
//!   the int8 front end of the shipped file moves scores that much; LiteRT's own two CPU
//!   paths (XNNPACK and builtin) differ from each other by up to 0.40 on these inputs.

mod common;

use avsense::core::clock::Timestamp;
use avsense::core::media::AudioChunk;
use avsense::encode::audio::logmel::{
    tf_mel_weight_matrix, LogMelFrontEnd, HOP, MEL_BINS, N_FFT, WINDOW,
};
use avsense_nn::formats::tflite::{BuiltinOp, TfliteModel};
use avsense_nn::models::yamnet::{
    load_class_names, patch_starts, Yamnet, EMBEDDING_DIM, NUM_CLASSES, PATCH_FRAMES,
};
use candle_core::{Device, Tensor};
use std::sync::Arc;

const INPUTS: [&str; 5] = [
    "alarm_clock_elapsed",
    "camera_shutter",
    "espeak_sentence",
    "phone_incoming_call",
    "person_sounds_dev",
];
const FRONT_END_TOL: f32 = 1e-3;
/// Vs LiteRT's f32 run of the float graph: its DFT is a 512-term f32 dot product whose
/// rounding ln(mel + 0.001) magnifies in quiet bands (it is itself 8e-4 from float64 on
/// phone-incoming-call); ours computes the STFT and mel projection in f64.
const FRONT_END_VS_F32_TOL: f32 = 2e-3;
const EMULATION_TOL: f32 = 1e-3;
/// The emulation is bit-exact up to the magnitude: LiteRT's SQRT is not correctly rounded
/// (it differs from `f32::sqrt` by an ulp on ~13 % of bins), and where such an ulp lands on
/// a rounding boundary of the next int8 quantisation one value moves by one step. Measured:
/// 2 values of 105 000, max 0.056. Asserted: at most 1 in 10 000 values off, by ≤ 0.1.
const EMULATION_FLIP_BOUND: f32 = 0.1;
/// Measured max |Δ| of our float log-mel vs the shipped model's quantised one (5.87 on
/// phone-incoming-call), with headroom: a regression guard, not a parity claim.
const LITERT_LOG_MEL_BOUND: f32 = 6.5;
const NET_VS_FLOAT: f32 = 1e-4;
/// Our f32 network on litert's own log-mel vs litert's scores: LiteRT quantises the input
/// of every 1×1 convolution and of the classifier to int8 (per row), we do not. Measured
/// max |Δ| 0.042 (phone-incoming-call, patch 1), ≤ 0.02 on 27 of 30 patches; the top-1
/// agrees everywhere and the top-5 on 27 of 30 patches, the 3 others swap a 5th/6th class
/// whose scores are within 0.02 of each other. (LiteRT's own builtin and XNNPACK kernels
/// differ from each other by up to 0.40 on the same inputs.)
///
/// The parity claim rests on the "float" reference (NET_VS_FLOAT, PIPELINE_VS_FLOAT): LiteRT
/// runs that graph with plain f32 kernels, which give the same numbers on every x86 CPU. The
/// "litert" scores are not that stable — XNNPACK picks different int8 kernels on AMD and
/// Intel CPUs, and they move by up to 0.013 between the two — so this bound is a regression
/// guard with room for that: 0.042 measured + 2 × 0.013 + headroom.
const NET_VS_LITERT: f32 = 0.075;
const NET_VS_LITERT_TIE: f32 = 0.02;
const PIPELINE_VS_FLOAT: f32 = 1e-3;

fn reference(stem: &str) -> serde_json::Value {
    common::reference_json(&format!("yamnet_{stem}.json"))
}

fn f32s_b64(v: &serde_json::Value) -> Vec<f32> {
    common::f32_le(&base64::decode(v.as_str().expect("base64 string")).expect("base64"))
}

fn scores(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("scores")
        .iter()
        .map(|p| {
            p.as_array()
                .expect("patch scores")
                .iter()
                .map(|x| x.as_f64().expect("score") as f32)
                .collect()
        })
        .collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

fn top5(s: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    let mut t = idx[..5].to_vec();
    t.sort_unstable();
    t
}

fn argmax(s: &[f32]) -> usize {
    (0..s.len()).fold(0, |b, i| if s[i] > s[b] { i } else { b })
}

/// The same top-5 set, except for near-ties at its edge: every class in one top-5 and not in
/// the other has a reference score within `tie` of the reference's 5th-best score.
fn top5_up_to_ties(ours: &[f32], reference: &[f32], tie: f32) -> bool {
    let (a, b) = (top5(ours), top5(reference));
    let fifth = b
        .iter()
        .map(|&i| reference[i])
        .fold(f32::INFINITY, f32::min);
    a.iter()
        .filter(|i| !b.contains(i))
        .chain(b.iter().filter(|i| !a.contains(i)))
        .all(|&i| (reference[i] - fifth).abs() <= tie)
}

/// Our front end over one padded segment, fed in chunks of 1000 samples.
fn our_log_mel(samples: &[f32]) -> Vec<f32> {
    let mut fe = LogMelFrontEnd::new();
    let mut out = Vec::new();
    let mut pts = Timestamp(0);
    for part in samples.chunks(1000) {
        let chunk = AudioChunk {
            stream: Arc::from("parity"),
            pts,
            sample_rate: 16_000,
            channels: 1,
            samples: part.to_vec(),
            discont: false,
        };
        if let Some(f) = fe.push(&chunk).expect("front end") {
            out.extend_from_slice(&f.log_mel);
        }
        pts = pts.plus_samples(part.len() as u64, 16_000);
    }
    out
}

/// One segment of a reference file, with the input samples it covers (zero-padded).
struct Segment {
    padded: Vec<f32>,
    patches: usize,
    frames: usize,
    litert_log_mel: Vec<f32>,
    litert_scores: Vec<Vec<f32>>,
    float_log_mel: Vec<f32>,
    float_scores: Vec<Vec<f32>>,
    float64_log_mel: Vec<f32>,
}

/// The segments of one input, or None when ../shared is absent (skip).
fn segments(stem: &str) -> Option<(String, Vec<Segment>)> {
    let doc = reference(stem);
    let rel = doc["input"].as_str().expect("input");
    let media = common::shared_media(rel)?;
    let (samples, sha) = common::decode_mono_16k(&media);
    assert_eq!(
        sha,
        doc["pcm_sha256"].as_str().expect("pcm_sha256"),
        "{rel}: ffmpeg decoded different samples from the reference's (another ffmpeg version?)"
    );
    let segs = doc["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| {
            let start = s["start_sample"].as_u64().expect("start") as usize;
            let n = s["samples"].as_u64().expect("samples") as usize;
            let mut padded = samples[start..start + n].to_vec();
            padded.resize(s["padded_samples"].as_u64().expect("padded") as usize, 0.0);
            Segment {
                padded,
                patches: s["patches"].as_u64().expect("patches") as usize,
                frames: s["frames"].as_u64().expect("frames") as usize,
                litert_log_mel: f32s_b64(&s["litert"]["log_mel_f32le_base64"]),
                litert_scores: scores(&s["litert"]["scores"]),
                float_log_mel: f32s_b64(&s["float"]["log_mel_f32le_base64"]),
                float_scores: scores(&s["float"]["scores"]),
                float64_log_mel: f32s_b64(&s["float64"]["log_mel_f32le_base64"]),
            }
        })
        .collect();
    Some((rel.to_string(), segs))
}

fn model_path() -> Option<std::path::PathBuf> {
    common::model_file("yamnet/yamnet.tflite")
}

/// The front-end constants of yamnet.tflite, found by walking back from its log-mel output
/// (a subgraph output written by LOG).
struct TfliteFrontEnd {
    /// Window (MUL constant), 400 values.
    window: Vec<f32>,
    /// Zero padding of each frame inside the 512-point DFT, (before, after).
    pad: (usize, usize),
    /// DFT weights [257, 512] as int8 with their scale: real, imaginary.
    dft: [(Vec<i8>, f32); 2],
    /// Mel weights [64, 257] as int8 with their scale, and the FULLY_CONNECTED bias.
    mel: (Vec<i8>, f32),
    mel_bias: Vec<f32>,
}

fn int8_weights(m: &TfliteModel, t: usize) -> (Vec<i8>, f32) {
    let info = &m.tensors[t];
    let q = info
        .quantization
        .as_ref()
        .expect("int8 weights carry a scale");
    assert_eq!(
        q.scale.len(),
        1,
        "per-tensor scale expected for `{}`",
        info.name
    );
    assert!(
        q.zero_point.iter().all(|&z| z == 0),
        "symmetric weights expected"
    );
    let bytes = m.tensor_bytes(t).expect("tensor").expect("constant");
    (bytes.iter().map(|&b| b as i8).collect(), q.scale[0])
}

fn tflite_front_end(m: &TfliteModel) -> TfliteFrontEnd {
    let producer = |t: i32, op: BuiltinOp| -> usize {
        let p = m.producer(t as usize).expect("producer");
        assert_eq!(
            m.operators[p].op, op,
            "tensor {t} `{}`",
            m.tensors[t as usize].name
        );
        p
    };
    let log = m
        .outputs
        .iter()
        .find_map(|&o| {
            m.producer(o)
                .filter(|&p| m.operators[p].op == BuiltinOp::Log)
        })
        .expect("a subgraph output written by LOG (the log-mel)");
    assert_eq!(
        m.tensors[m.operators[log].outputs[0] as usize].shape,
        [96, 64]
    );
    let mel_fc = producer(m.operators[log].inputs[0], BuiltinOp::FullyConnected);
    let sqrt = producer(m.operators[mel_fc].inputs[0], BuiltinOp::Sqrt);
    let add = producer(m.operators[sqrt].inputs[0], BuiltinOp::Add);
    let mut dft = Vec::new();
    let mut pad_op = None;
    for &sq in &m.operators[add].inputs {
        let mul = producer(sq, BuiltinOp::Mul);
        assert_eq!(
            m.operators[mul].inputs[0], m.operators[mul].inputs[1],
            "a square"
        );
        let fc = producer(m.operators[mul].inputs[0], BuiltinOp::FullyConnected);
        dft.push(int8_weights(m, m.operators[fc].inputs[1] as usize));
        pad_op = Some(producer(m.operators[fc].inputs[0], BuiltinOp::Pad));
    }
    let pad_op = pad_op.expect("pad");
    let pads = m
        .tensor_i64(m.operators[pad_op].inputs[1] as usize)
        .expect("paddings");
    let win_mul = producer(m.operators[pad_op].inputs[0], BuiltinOp::Mul);
    let window = m
        .tensor_f32(m.operators[win_mul].inputs[1] as usize)
        .expect("window constant");
    let mel = int8_weights(m, m.operators[mel_fc].inputs[1] as usize);
    let mel_bias = m
        .tensor_f32(m.operators[mel_fc].inputs[2] as usize)
        .expect("mel bias");
    // Which of the two DFT matrices is the real part: the one whose DC row is all +1.
    let (a, b) = (dft.remove(0), dft.remove(0));
    let dft = if a.0[..512].iter().all(|&q| q > 0) {
        [a, b]
    } else {
        [b, a]
    };
    assert_eq!(
        pads,
        [0, 0, 56, 56],
        "frames are centred in the 512-point DFT"
    );
    TfliteFrontEnd {
        window,
        pad: (pads[2] as usize, pads[3] as usize),
        dft,
        mel,
        mel_bias,
    }
}

#[test]
fn tflite_front_end_is_upstreams_float_front_end_quantised() {
    let Some(path) = model_path() else { return };
    let m = TfliteModel::load(&path).expect("load");
    let fe = tflite_front_end(&m);
    // Periodic Hann, as our front end (to f32 rounding).
    for (n, &w) in fe.window.iter().enumerate() {
        let want = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / 400.0).cos();
        assert!(
            (f64::from(w) - want).abs() < 1e-7,
            "window[{n}] = {w}, periodic Hann {want}"
        );
    }
    assert_eq!(fe.window.len(), WINDOW);
    assert_eq!(fe.pad.0 + WINDOW + fe.pad.1, N_FFT);
    // The log offset is the mel projection's bias.
    assert!(
        fe.mel_bias.iter().all(|&b| b == 0.001),
        "{:?}",
        &fe.mel_bias[..4]
    );
    // DFT weights: cos / sin of 2πkn/512 to within half a quantisation step.
    for (part, (q, scale)) in fe.dft.iter().enumerate() {
        let mut worst = 0f64;
        for k in 0..257 {
            for n in 0..512 {
                let a = 2.0 * std::f64::consts::PI * (k * n) as f64 / 512.0;
                let exact = if part == 0 { a.cos() } else { a.sin() };
                worst = worst.max((f64::from(q[k * 512 + n]) * f64::from(*scale) - exact).abs());
            }
        }
        assert!(
            worst <= f64::from(*scale) / 2.0 + 1e-6,
            "DFT part {part}: {worst} vs step {scale}"
        );
    }
    // Mel weights: TensorFlow's linear_to_mel_weight_matrix (ours) to within half a step.
    let ours = tf_mel_weight_matrix(MEL_BINS, 257, 16000.0, 125.0, 7500.0);
    let (q, scale) = &fe.mel;
    let mut worst = 0f32;
    for j in 0..MEL_BINS {
        for i in 0..257 {
            worst = worst.max((f32::from(q[j * 257 + i]) * scale - ours[i * MEL_BINS + j]).abs());
        }
    }
    eprintln!(
        "yamnet.tflite mel matrix vs tf_mel_weight_matrix: max |Δ| {worst:.5} (half step {:.5})",
        scale / 2.0
    );
    assert!(
        worst <= scale / 2.0 + 1e-6,
        "mel matrix: {worst} vs half step {}",
        scale / 2.0
    );
}

/// XNNPACK's dynamically quantised FULLY_CONNECTED (what LiteRT's default CPU path runs for
/// yamnet.tflite's int8 weights; XNNPACK's `xnn_f32_qd8_asymmetric_quantization_params` and
/// its qd8-f32-qc8w GEMM): each input row is quantised asymmetrically to int8 with
/// `scale = 255 / (max − min)` over the row (0 included) and a zero point nudged from the
/// side with the smaller error, multiplied in integers with the int8 weights, and scaled back
/// as `fma(acc · (1 / scale), weight_scale, bias)`. Bit-exact against LiteRT's FULLY_CONNECTED
/// outputs (checked with the interpreter's intermediate tensors while writing this test).
fn hybrid_fc(x: &[f32], w: &[i8], w_scale: f32, outputs: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let inputs = x.len();
    let rmin = x.iter().cloned().fold(0f32, f32::min);
    let rmax = x.iter().cloned().fold(0f32, f32::max);
    let scale = if rmin == rmax {
        1.0
    } else {
        255.0 / (rmax - rmin)
    };
    let (rmin_s, rmax_s) = (rmin * scale, rmax * scale);
    let zp = if (-128.0 + rmin_s) + (127.0 + rmax_s) > 0.0 {
        -128.0 - rmin_s
    } else {
        127.0 - rmax_s
    };
    let zp = zp.clamp(-128.0, 127.0).round_ties_even() as i32;
    let q: Vec<i32> = x
        .iter()
        .map(|&v| ((v * scale).round_ties_even() as i32 + zp).clamp(-128, 127) - zp)
        .collect();
    let inv = 1.0 / scale;
    (0..outputs)
        .map(|o| {
            let row = &w[o * inputs..(o + 1) * inputs];
            let acc: i32 = row.iter().zip(&q).map(|(&a, &b)| i32::from(a) * b).sum();
            (acc as f32 * inv).mul_add(w_scale, bias.map_or(0.0, |b| b[o]))
        })
        .collect()
}

/// yamnet.tflite's front end, emulated: our framing, the file's window and int8 matrices.
fn emulated_litert_log_mel(fe: &TfliteFrontEnd, samples: &[f32], frames: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames * MEL_BINS);
    let mut buf = vec![0f32; N_FFT];
    for f in 0..frames {
        for (n, dst) in buf[fe.pad.0..fe.pad.0 + WINDOW].iter_mut().enumerate() {
            *dst = samples[f * HOP + n] * fe.window[n];
        }
        let re = hybrid_fc(&buf, &fe.dft[0].0, fe.dft[0].1, 257, None);
        let im = hybrid_fc(&buf, &fe.dft[1].0, fe.dft[1].1, 257, None);
        let mag: Vec<f32> = re
            .iter()
            .zip(&im)
            .map(|(a, b)| (a * a + b * b).sqrt())
            .collect();
        let mel = hybrid_fc(&mag, &fe.mel.0, fe.mel.1, MEL_BINS, Some(&fe.mel_bias));
        out.extend(mel.iter().map(|m| m.ln()));
    }
    out
}

#[test]
fn log_mel_parity() {
    let Some(path) = model_path() else { return };
    let m = TfliteModel::load(&path).expect("load");
    let fe = tflite_front_end(&m);
    let (mut worst_exact, mut worst_float, mut worst_emul, mut worst_litert) =
        (0f32, 0f32, 0f32, 0f32);
    let (mut sum_litert, mut n_litert, mut emul_off) = (0f64, 0usize, 0usize);
    for stem in INPUTS {
        let Some((rel, segs)) = segments(stem) else {
            return;
        };
        for (k, s) in segs.iter().enumerate() {
            let ours = our_log_mel(&s.padded);
            assert_eq!(
                ours.len(),
                s.frames * MEL_BINS,
                "{rel} segment {k}: frame count"
            );
            let exact = max_abs(&ours[..s.float64_log_mel.len()], &s.float64_log_mel);
            let float = max_abs(&ours[..s.float_log_mel.len()], &s.float_log_mel);
            let emulated = emulated_litert_log_mel(&fe, &s.padded, s.frames);
            let emul = max_abs(&emulated, &s.litert_log_mel);
            let off = emulated
                .iter()
                .zip(&s.litert_log_mel)
                .filter(|(a, b)| (*a - *b).abs() > EMULATION_TOL)
                .count();
            emul_off += off;
            let litert = max_abs(&ours, &s.litert_log_mel);
            sum_litert += ours
                .iter()
                .zip(&s.litert_log_mel)
                .map(|(a, b)| f64::from((a - b).abs()))
                .sum::<f64>();
            n_litert += ours.len();
            eprintln!(
                "{rel} segment {k} ({} frames): ours vs float64 max |Δ| {exact:.2e}, vs float (LiteRT f32) {float:.2e}; emulated int8 \
                 front end vs litert {emul:.2e}; ours vs litert {litert:.3}",
                s.frames
            );
            assert!(
                exact <= FRONT_END_TOL,
                "{rel} segment {k}: ours vs float64 log-mel {exact}"
            );
            assert!(
                float <= FRONT_END_VS_F32_TOL,
                "{rel} segment {k}: ours vs float (LiteRT f32) log-mel {float}"
            );
            worst_exact = worst_exact.max(exact);
            assert!(
                off * 10_000 <= ours.len() && emul <= EMULATION_FLIP_BOUND,
                "{rel} segment {k}: emulated vs litert log-mel: {off} values off by > {EMULATION_TOL}, max {emul}"
            );
            assert!(
                litert <= LITERT_LOG_MEL_BOUND,
                "{rel} segment {k}: ours vs litert {litert}"
            );
            worst_float = worst_float.max(float);
            worst_emul = worst_emul.max(emul);
            worst_litert = worst_litert.max(litert);
        }
    }
    eprintln!(
        "log-mel: ours vs float64 max |Δ| {worst_exact:.2e}, vs float (LiteRT f32) {worst_float:.2e}; emulated vs litert max {worst_emul:.2e} \
         ({emul_off} of {n_litert} values off by > {EMULATION_TOL}); ours vs litert max {worst_litert:.3}, mean {:.4}",
        sum_litert / n_litert.max(1) as f64
    );
}

fn patches_of(log_mel: &[f32], patches: usize) -> Vec<f32> {
    let per = PATCH_FRAMES * MEL_BINS;
    let starts: Vec<usize> = patch_starts(log_mel.len() / MEL_BINS)
        .take(patches)
        .collect();
    assert_eq!(starts.len(), patches);
    starts
        .iter()
        .flat_map(|&f| log_mel[f * MEL_BINS..f * MEL_BINS + per].iter().copied())
        .collect()
}

#[test]
fn scores_parity() {
    let Some(path) = model_path() else { return };
    let model = Yamnet::from_tflite(&path, &Device::Cpu).expect("load yamnet");
    let (mut w_net_float, mut w_net_litert, mut w_pipe_float, mut w_pipe_litert) =
        (0f32, 0f32, 0f32, 0f32);
    let (mut patches_total, mut pipe_litert_top5_same, mut net_litert_top5_same) =
        (0usize, 0usize, 0usize);
    let mut net_litert_top1_same = 0usize;
    for stem in INPUTS {
        let Some((rel, segs)) = segments(stem) else {
            return;
        };
        for (k, s) in segs.iter().enumerate() {
            // Network alone on the reference's own log-mel.
            let lit = model
                .infer(&patches_of(&s.litert_log_mel, s.patches))
                .expect("infer");
            let n_float = s.float_log_mel.len() / MEL_BINS;
            let float_patches = patch_starts(n_float).count();
            let flt = model
                .infer(&patches_of(&s.float_log_mel, float_patches))
                .expect("infer");
            // The whole model: our front end, then the network.
            let ours = model
                .infer(&patches_of(&our_log_mel(&s.padded), s.patches))
                .expect("infer");
            for p in 0..s.patches {
                let a = max_abs(&lit[p].scores, &s.litert_scores[p]);
                let same = top5(&lit[p].scores) == top5(&s.litert_scores[p]);
                net_litert_top5_same += usize::from(same);
                let (ours1, ref1) = (argmax(&lit[p].scores), argmax(&s.litert_scores[p]));
                assert!(
                    s.litert_scores[p][ref1] - s.litert_scores[p][ours1] <= NET_VS_LITERT_TIE,
                    "{rel} segment {k} patch {p}: top-1 on litert's log-mel: ours {ours1}, litert {ref1}"
                );
                net_litert_top1_same += usize::from(ours1 == ref1);
                assert!(
                    top5_up_to_ties(&lit[p].scores, &s.litert_scores[p], NET_VS_LITERT_TIE),
                    "{rel} segment {k} patch {p}: top-5 on litert's log-mel: ours {:?}, litert {:?}",
                    top5(&lit[p].scores),
                    top5(&s.litert_scores[p])
                );
                assert!(
                    a <= NET_VS_LITERT,
                    "{rel} segment {k} patch {p}: network vs litert {a}"
                );
                w_net_litert = w_net_litert.max(a);
                if p < float_patches {
                    let b = max_abs(&flt[p].scores, &s.float_scores[p]);
                    assert!(
                        b <= NET_VS_FLOAT,
                        "{rel} segment {k} patch {p}: network vs float {b}"
                    );
                    w_net_float = w_net_float.max(b);
                }
                let c = max_abs(&ours[p].scores, &s.float_scores[p]);
                assert_eq!(
                    top5(&ours[p].scores),
                    top5(&s.float_scores[p]),
                    "{rel} segment {k} patch {p}: whole-model top-5 vs float"
                );
                assert!(
                    c <= PIPELINE_VS_FLOAT,
                    "{rel} segment {k} patch {p}: whole model vs float {c}"
                );
                w_pipe_float = w_pipe_float.max(c);
                w_pipe_litert = w_pipe_litert.max(max_abs(&ours[p].scores, &s.litert_scores[p]));
                pipe_litert_top5_same +=
                    usize::from(top5(&ours[p].scores) == top5(&s.litert_scores[p]));
                patches_total += 1;
                assert_eq!(ours[p].embedding.len(), EMBEDDING_DIM);
            }
        }
    }
    eprintln!(
        "scores over {patches_total} patches: network on float log-mel vs float max |Δ| {w_net_float:.2e}; \
         network on litert log-mel vs litert {w_net_litert:.4} (same top-1 on {net_litert_top1_same}, same top-5 on {net_litert_top5_same} of {patches_total}); \
         whole model vs float {w_pipe_float:.2e}; \
         whole model vs litert {w_pipe_litert:.3} (same top-5 on {pipe_litert_top5_same}/{patches_total})"
    );
}

#[test]
fn class_map_and_bad_model_files() {
    let Some(path) = model_path() else { return };
    let Some(map) = common::model_file("yamnet/yamnet_class_map.csv") else {
        return;
    };
    let names = load_class_names(&map).expect("class map");
    assert_eq!(names.len(), NUM_CLASSES);
    assert_eq!(names[0], "Speech");
    assert_eq!(names[1], "Child speech, kid speaking");

    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(&path).expect("read model");
    for (name, len) in [
        ("head.tflite", 64usize),
        ("half.tflite", bytes.len() / 2),
        ("short.tflite", bytes.len() - 1000),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes[..len]).expect("write");
        let e = Yamnet::from_tflite(&p, &Device::Cpu).expect_err("truncated model must fail");
        assert!(e.to_string().contains(name), "{name}: {e}");
        eprintln!("{name}: {e}");
    }
    // A text file (the class map) and a missing file.
    let e = Yamnet::from_tflite(&map, &Device::Cpu).expect_err("text");
    assert!(e.to_string().contains("yamnet_class_map.csv"), "{e}");
    let missing = dir.path().join("missing.tflite");
    let e = Yamnet::from_tflite(&missing, &Device::Cpu).expect_err("missing");
    assert!(e.to_string().contains("missing.tflite"), "{e}");
    let e = load_class_names(&path).expect_err("a model is not a class map");
    assert!(e.to_string().contains("yamnet.tflite"), "{e}");
}

/// Per-patch latency of the candle model (printed, never asserted). The test profile
/// builds dependencies at opt-level 3 but this crate (the depthwise kernel included) at
/// opt-level 1; see the report for release numbers.
#[test]
fn latency_per_patch() {
    let Some(path) = model_path() else { return };
    let model = Yamnet::from_tflite(&path, &Device::Cpu).expect("load yamnet");
    let patch: Vec<f32> = (0..PATCH_FRAMES * MEL_BINS)
        .map(|i| ((i % 61) as f32) * 0.1 - 5.0)
        .collect();
    let x = Tensor::from_slice(&patch, (1, PATCH_FRAMES, MEL_BINS), &Device::Cpu).expect("tensor");
    for _ in 0..3 {
        model.forward(&x).expect("forward");
    }
    let reps = 20;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        model.forward(&x).expect("forward");
    }
    let one = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    let batch: Vec<f32> = patch
        .iter()
        .cycle()
        .take(patch.len() * 8)
        .copied()
        .collect();
    let xb = Tensor::from_slice(&batch, (8, PATCH_FRAMES, MEL_BINS), &Device::Cpu).expect("tensor");
    let t = std::time::Instant::now();
    for _ in 0..5 {
        model.forward(&xb).expect("forward");
    }
    let eight = t.elapsed().as_secs_f64() * 1e3 / 5.0 / 8.0;
    eprintln!(
        "yamnet candle CPU ({} threads): {one:.2} ms per patch at batch 1, {eight:.2} ms per patch at batch 8",
        candle_core::utils::get_num_threads()
    );
}
