//! Per-model latency of our candle models on the CPU, on the inputs that
//! `benches/models.sh` extracts (and times the reference runtimes on): the Rust side of
//! that script. Run it through the script, which also builds the reference environments
//! and prints the comparison table:
//!
//! ```text
//! benches/models.sh                     # everything, ours at 1 and 2 threads
//! RAYON_NUM_THREADS=1 cargo bench --bench models -- --inputs target/bench/inputs
//! ```
//!
//! A plain `harness = false` bench with its own timer rather than criterion: each side of
//! the comparison (this file, the Python and Node harnesses in `models.sh`) runs the same
//! protocol — the same calls on the same inputs, one warm-up pass, then the median of the
//! individual call times — so that the ratios compare like with like; criterion's minimum
//! of 10 samples and its linear sampling would cost minutes on NanoDet at batch 8.
//!
//! Protocol (the thread count is candle's, i.e. `RAYON_NUM_THREADS`):
//! * Silero VAD (`silero_vad.jit`): `process_chunk` on each 512-sample chunk of
//!   `espeak_sentence.f32` in order (last chunk zero-padded), state carried, from a fresh
//!   stream per pass; median over every chunk of `--reps` passes.
//! * YAMNet (`yamnet.tflite`): the 0.96 s patches of `espeak_sentence.f32` cut as upstream
//!   (zero-padded to 15600 + (P−1)·7680 samples, a patch every 7680). `net`: `infer` on
//!   one patch's log-mel (computed beforehand); `mel+net`: `LogMelFrontEnd` over the patch's
//!   15600 samples (96 frames) then `infer`, as the .tflite does both; `net b8`: `infer` on
//!   8 patches in one call.
//! * NanoDet (`nanodet.json`): `prepare` + `forward` (raw outputs copied to the host, no
//!   box decoding, no embedding feature: what the TF.js harness times) on the 416×416 RGB
//!   frames `nanodet_*.rgb`, batch 1 (frames in turn) and batch 8 (frames repeated).
//!
//! Output: one line per measurement, `RESULT\t<key>\t<batch>\t<median s per call>\t<calls>\t<threads>`,
//! read by `models.sh`.

use avsense::core::clock::Timestamp;
use avsense::core::media::AudioChunk;
use avsense::encode::audio::logmel::LogMelFrontEnd;
use avsense_nn::models::nanodet::{NanoDet, NanoDetConfig, Resize, RgbImage, INPUT_SIZE};
use avsense_nn::models::silero::{SileroVad, CHUNK_SAMPLES};
use avsense_nn::models::yamnet::{
    Yamnet, MEL_BANDS, PATCH_FRAMES, PATCH_HOP_SAMPLES, PATCH_SAMPLES,
};
use candle_core::Device;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

struct Args {
    inputs: Option<PathBuf>,
    models: PathBuf,
    only: Vec<String>,
    reps: usize,
    nanodet_reps: usize,
}

fn parse_args() -> Args {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        inputs: None,
        models: root.join("models/cache"),
        only: vec!["silero".into(), "yamnet".into(), "nanodet".into()],
        reps: 20,
        nanodet_reps: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--inputs" => a.inputs = Some(PathBuf::from(val("--inputs"))),
            "--models" => a.models = PathBuf::from(val("--models")),
            "--only" => a.only = val("--only").split(',').map(str::to_string).collect(),
            "--reps" => a.reps = val("--reps").parse().expect("--reps N"),
            "--nanodet-reps" => {
                a.nanodet_reps = val("--nanodet-reps").parse().expect("--nanodet-reps N")
            }
            // cargo bench passes --bench; criterion-style filters are ignored.
            _ => {}
        }
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn report(key: &str, batch: usize, times: Vec<f64>) {
    let n = times.len();
    let m = median(times);
    println!(
        "RESULT\t{key}\t{batch}\t{m:.9}\t{n}\t{}",
        candle_core::utils::get_num_threads()
    );
    eprintln!(
        "  {key:24} batch {batch}: median {:9.3} ms per call over {n} calls",
        m * 1e3
    );
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Times `f` once per item of every pass (one warm-up pass first, `reset` untimed before
/// each pass); all call times of the timed passes.
fn passes<S, T>(
    state: &mut S,
    items: &[T],
    reps: usize,
    mut reset: impl FnMut(&mut S),
    mut f: impl FnMut(&mut S, &T),
) -> Vec<f64> {
    let mut times = Vec::with_capacity(items.len() * reps);
    for pass in 0..=reps {
        reset(state);
        for x in items {
            let t = Instant::now();
            f(state, x);
            let dt = t.elapsed().as_secs_f64();
            if pass > 0 {
                times.push(dt);
            }
        }
    }
    times
}

fn bench_silero(a: &Args, inputs: &Path) {
    let samples = read_f32(&inputs.join("espeak_sentence.f32"));
    let mut chunks: Vec<Vec<f32>> = samples.chunks(CHUNK_SAMPLES).map(<[f32]>::to_vec).collect();
    if let Some(last) = chunks.last_mut() {
        last.resize(CHUNK_SAMPLES, 0.0);
    }
    let vad = SileroVad::load_jit(&a.models.join("silero-vad/silero_vad.jit"), &Device::Cpu)
        .expect("load silero_vad.jit");
    let mut stream = vad.new_stream().expect("stream");
    let times = passes(
        &mut stream,
        &chunks,
        a.reps,
        |s| s.reset().expect("reset"),
        |s, c| {
            black_box(s.process_chunk(c).expect("silero chunk"));
        },
    );
    report("silero", 1, times);
}

/// Upstream's patches of a clip: zero-padded, one every 7680 samples.
fn yamnet_patches(samples: &[f32]) -> Vec<Vec<f32>> {
    let n = samples.len();
    let count = 1 + n.saturating_sub(PATCH_SAMPLES).div_ceil(PATCH_HOP_SAMPLES);
    let mut padded = vec![0f32; PATCH_SAMPLES + (count - 1) * PATCH_HOP_SAMPLES];
    padded[..n].copy_from_slice(samples);
    (0..count)
        .map(|k| padded[k * PATCH_HOP_SAMPLES..k * PATCH_HOP_SAMPLES + PATCH_SAMPLES].to_vec())
        .collect()
}

fn log_mel(fe: &mut LogMelFrontEnd, patch: &[f32]) -> Vec<f32> {
    let chunk = AudioChunk {
        stream: Arc::from("bench"),
        pts: Timestamp(0),
        sample_rate: 16_000,
        channels: 1,
        samples: patch.to_vec(),
        // Restart the framing: the 96 frames of this patch alone, as the .tflite computes.
        discont: true,
    };
    let f = fe
        .push(&chunk)
        .expect("log-mel")
        .expect("a patch completes frames");
    assert_eq!(f.log_mel.len(), PATCH_FRAMES * MEL_BANDS);
    f.log_mel
}

fn bench_yamnet(a: &Args, inputs: &Path) {
    let samples = read_f32(&inputs.join("espeak_sentence.f32"));
    let patches = yamnet_patches(&samples);
    let model = Yamnet::from_tflite(&a.models.join("yamnet/yamnet.tflite"), &Device::Cpu)
        .expect("load yamnet.tflite");
    let mut fe = LogMelFrontEnd::new();
    let mels: Vec<Vec<f32>> = patches.iter().map(|p| log_mel(&mut fe, p)).collect();
    eprintln!("yamnet: {} patches of espeak_sentence", patches.len());

    let t = passes(
        &mut fe,
        &mels,
        a.reps,
        |_| {},
        |_, m| {
            black_box(model.infer(m).expect("yamnet"));
        },
    );
    report("yamnet_net", 1, t);

    let t = passes(
        &mut fe,
        &patches,
        a.reps,
        |_| {},
        |fe, p| {
            let m = log_mel(fe, p);
            black_box(model.infer(&m).expect("yamnet"));
        },
    );
    report("yamnet_mel_net", 1, t);

    let t = passes(
        &mut fe,
        &patches,
        a.reps,
        |_| {},
        |fe, p| {
            black_box(log_mel(fe, p));
        },
    );
    report("yamnet_mel", 1, t);

    let batch: Vec<f32> = mels.iter().cycle().take(8).flatten().copied().collect();
    let t = passes(
        &mut fe,
        &[batch],
        a.reps,
        |_| {},
        |_, b| {
            black_box(model.infer(b).expect("yamnet"));
        },
    );
    report("yamnet_net", 8, t);
}

fn bench_nanodet(a: &Args, inputs: &Path) {
    let mut frames: Vec<(String, Vec<u8>)> = std::fs::read_dir(inputs)
        .expect("inputs dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nanodet_") && n.ends_with(".rgb"))
        })
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("frame")))
        .collect();
    frames.sort();
    assert!(
        !frames.is_empty(),
        "no nanodet_*.rgb in {}",
        inputs.display()
    );
    for (p, f) in &frames {
        assert_eq!(f.len(), INPUT_SIZE * INPUT_SIZE * 3, "{p}: not 416×416 RGB");
    }
    let cfg = NanoDetConfig {
        embeddings: false,
        // The frames are 416² already: no fitting (as the parity test runs it).
        resize: Resize::Stretch,
        ..NanoDetConfig::default()
    };
    let det = NanoDet::load_with(
        a.models.join("human-models/nanodet.json"),
        &Device::Cpu,
        cfg,
    )
    .expect("load nanodet.json");
    let run = |imgs: &[RgbImage]| {
        let x = det.prepare(imgs).expect("prepare");
        black_box(det.forward(&x).expect("forward"));
    };
    // Batch 1: frames in turn, until at least nanodet_reps calls.
    let per_pass = frames.len();
    let pass_count = a.nanodet_reps.div_ceil(per_pass).max(1);
    let t = passes(
        &mut (),
        &frames,
        pass_count,
        |_| {},
        |_, (_, f)| {
            run(&[RgbImage::packed(INPUT_SIZE, INPUT_SIZE, f)]);
        },
    );
    report("nanodet", 1, t);
    let imgs: Vec<RgbImage> = frames
        .iter()
        .cycle()
        .take(8)
        .map(|(_, f)| RgbImage::packed(INPUT_SIZE, INPUT_SIZE, f))
        .collect();
    let t = passes(&mut (), &[()], a.nanodet_reps, |_| {}, |_, _| run(&imgs));
    report("nanodet", 8, t);
}

fn main() {
    let a = parse_args();
    let Some(inputs) = a.inputs.clone() else {
        eprintln!(
            "models bench: no --inputs given; run benches/models.sh (it extracts the inputs and \
             times the reference runtimes beside this bench). Skipping."
        );
        return;
    };
    eprintln!(
        "ours (candle 0.11), {} thread(s), inputs {}",
        candle_core::utils::get_num_threads(),
        inputs.display()
    );
    for m in &a.only {
        match m.as_str() {
            "silero" => bench_silero(&a, &inputs),
            "yamnet" => bench_yamnet(&a, &inputs),
            "nanodet" => bench_nanodet(&a, &inputs),
            other => panic!("unknown model {other} (silero, yamnet, nanodet)"),
        }
    }
}
