//! Cost of the active-speaker models on the CPU: what one face costs per second of video.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench speaker            # or: bash benches/speaker.sh
//! ```
//!
//! A plain `harness = false` bench with its own timer (as `benches/models.rs`): one
//! untimed warm-up call, then the median of `REPS` (default 5) call times. Measured, each on
//! the shapes the stream runner actually uses (see `src/fusion/speaker/asd.rs`):
//! * Light-ASD visual front end on one embedding block: 50 ticks + 2 × 6 ticks of context
//!   = 62 crops of 112×112, for 1 face and for 2 faces in one batch;
//! * Light-ASD audio front end on the same block (62 ticks = 248 MFCC frames; shared by
//!   every face of the stream);
//! * the GRU back end + head on one second of one face at every default duration (chunks
//!   of 25, 50 and 75 ticks: one tick is scored once per duration);
//! * BlazeFace (`prepare` + `forward` + decoding) on one 640×640 RGB frame — a real frame
//!   of ../shared/media/talking/one_face_speaking.mp4 when ffmpeg and the media are there;
//! * the face graph (mean-field, 10 rounds) on a window of 2 faces × 25 ticks.
//!
//! Then the per-face cost per second of video (25 fps): visual × 25 × 62/50 + back end,
//! and the shared costs per second: audio front end × 25/50 and BlazeFace × `face_fps`.
//! Output lines: `RESULT\t<key>\t<ms>` (for the script) and a summary on stderr.

use avsense::fusion::speaker::graph::{FaceGraph, FaceNode, GraphConfig};
use avsense_nn::models::blazeface::BlazeFace;
use avsense_nn::models::lightasd::{LightAsd, CROP, EMBED, MFCC_DIM, MFCC_PER_FRAME};
use avsense_nn::models::nanodet::RgbImage;
use candle_core::{Device, Tensor};
use std::path::Path;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median seconds of `f` over `reps` calls after one warm-up call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn report(key: &str, secs: f64) -> f64 {
    println!("RESULT\t{key}\t{:.4}", secs * 1e3);
    eprintln!("  {key:36} {:9.3} ms", secs * 1e3);
    secs * 1e3
}

/// A real 640×640 RGB frame of the talking clip, or a synthetic one.
fn frame() -> (Vec<u8>, &'static str) {
    let clip =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media/talking/one_face_speaking.mp4");
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-ss", "1", "-i"])
        .arg(&clip)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=640:640",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() && o.stdout.len() == 640 * 640 * 3 => (o.stdout, "real frame"),
        _ => (
            (0..640 * 640 * 3).map(|i| (i % 251) as u8).collect(),
            "synthetic frame (../shared or ffmpeg absent)",
        ),
    }
}

fn main() {
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let face_fps: f64 = std::env::var("FACE_FPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12.5);
    let dir = std::env::var_os("AVSENSE_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cache"));
    let dev = Device::Cpu;
    eprintln!(
        "speaker bench: {} thread(s), median of {reps} calls",
        candle_core::utils::get_num_threads()
    );
    let asd = match LightAsd::load(&dir.join("lightasd/pretrain_AVA_CVPR.model"), &dev) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP: {e}");
            return;
        }
    };
    let (block, ctx) = (50usize, 12usize);
    let t_in = block + ctx;
    let crops =
        |faces: usize| Tensor::rand(0f32, 255f32, (faces, t_in, CROP, CROP), &dev).expect("crops");
    let (c1, c2) = (crops(1), crops(2));
    let v1 = report(
        "light-asd visual, 1 face x 62 ticks",
        time(reps, || {
            asd.visual_embed(&c1).expect("visual");
        }),
    );
    let v2 = report(
        "light-asd visual, 2 faces x 62 ticks",
        time(reps, || {
            asd.visual_embed(&c2).expect("visual");
        }),
    );
    let mfcc = Tensor::randn(0f32, 5f32, (1, t_in * MFCC_PER_FRAME, MFCC_DIM), &dev).expect("mfcc");
    let a = report(
        "light-asd audio, 62 ticks",
        time(reps, || {
            asd.audio_embed(&mfcc).expect("audio");
        }),
    );
    let back = report(
        "light-asd back end, 1 face-second",
        time(reps, || {
            // One second of one face is one 25-tick chunk, half a 50-tick chunk and a third
            // of a 75-tick chunk: score all three and divide by their lengths in seconds.
            for len in [25usize, 50, 75] {
                let x = Tensor::randn(0f32, 1f32, (1, len, EMBED), &dev).expect("emb");
                let h = asd.backend(&x, &x).expect("backend");
                asd.av_scores(&h).expect("head");
            }
        }) / (1.0 + 2.0 + 3.0)
            * 3.0,
    );
    let (pixels, what) = frame();
    let bf = BlazeFace::load(dir.join("human-models/blazeface.json"), &dev);
    let blaze = match &bf {
        Ok(bf) => {
            let img = RgbImage {
                width: 640,
                height: 640,
                stride: 640 * 3,
                data: &pixels,
            };
            report(
                "blazeface, 1 frame",
                time(reps, || {
                    bf.detect(&[img]).expect("blazeface");
                }),
            )
        }
        Err(e) => {
            eprintln!("  blazeface: SKIP: {e}");
            0.0
        }
    };
    eprintln!("  (blazeface input: {what})");
    let nodes: Vec<FaceNode> = (0..2u64)
        .flat_map(|f| {
            (0..25u64).map(move |t| FaceNode {
                face: f,
                tick: t,
                logit: (t as f32 * 0.3 + f as f32).sin(),
                vad: Some(0.9),
                sync: Some(1.0 - f as f32),
                head: Some(0.3 + 0.4 * f as f32),
            })
        })
        .collect();
    let cfg = GraphConfig::default();
    let g = report(
        "face graph, 2 faces x 25 ticks",
        time(reps, || {
            FaceGraph::build(&nodes, &cfg)
                .infer(&cfg, &dev)
                .expect("graph");
        }),
    );
    let per_face = v1 / t_in as f64 * 25.0 * (t_in as f64 / block as f64) + back;
    let per_face_batched = v2 / 2.0 / t_in as f64 * 25.0 * (t_in as f64 / block as f64) + back;
    let shared = a / block as f64 * 25.0 + blaze * face_fps + g;
    println!("RESULT\tper-face ms per s\t{per_face:.2}");
    println!("RESULT\tper-face ms per s, 2 batched\t{per_face_batched:.2}");
    println!("RESULT\tshared ms per s\t{shared:.2}");
    eprintln!(
        "per face per second of video: {per_face:.1} ms ({per_face_batched:.1} ms with 2 faces \
         batched); shared per second: {shared:.1} ms (audio front end, BlazeFace at \
         {face_fps}/s, face graph)"
    );
}
