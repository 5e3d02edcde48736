//! Encoder micro-benchmarks (criterion): the log-mel front end per second of audio and the
//! motion encoder per frame, at 720p and at the analysis size the pipeline really runs
//! (320×180). Run with `cargo bench --bench encoders`; see BENCHMARKS.md.

use avsense::core::clock::{Duration, Timestamp};
use avsense::core::media::{AudioChunk, Frame, PixelFormat};
use avsense::encode::video::motion::MotionConfig;
use avsense::encode::{audio::logmel::LogMelFrontEnd, video::motion::MotionEncoder};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;

const RATE: u32 = 16_000;

/// A small xorshift generator: deterministic noise without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 32) as u32
    }

    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

/// One second of 16 kHz mono: a 440 Hz tone plus white noise.
fn one_second_of_audio() -> Vec<f32> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    (0..RATE)
        .map(|n| {
            let t = n as f32 / RATE as f32;
            0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin() + 0.05 * rng.next_f32()
        })
        .collect()
}

fn bench_log_mel(c: &mut Criterion) {
    let samples = one_second_of_audio();
    let stream: Arc<str> = Arc::from("bench");
    let mut group = c.benchmark_group("log_mel");
    // One element = one sample, so criterion's rate divided by 16 000 is seconds of audio
    // per second of CPU (the realtime factor of the front end alone).
    group.throughput(Throughput::Elements(u64::from(RATE)));
    group.bench_function("push_1s_16k_mono", |b| {
        let mut fe = LogMelFrontEnd::new();
        let mut pts = 0u64;
        b.iter(|| {
            // Contiguous chunks: the front end carries the partial window over, as in a
            // stream. Building the chunk copies 64 KB, which is negligible next to 98 FFTs.
            let chunk = AudioChunk {
                stream: Arc::clone(&stream),
                pts: Timestamp(pts),
                sample_rate: RATE,
                channels: 1,
                samples: samples.clone(),
                discont: false,
            };
            pts += 1_000_000_000;
            black_box(fe.push(black_box(&chunk)).unwrap())
        });
    });
    group.finish();
}

/// A synthetic luma frame: a gradient with a bright square at `offset`, plus light noise,
/// so that consecutive frames differ in a region (motion) and everywhere slightly (noise).
fn synthetic_frame(w: u32, h: u32, offset: u32, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed);
    let side = h / 4;
    let mut data = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let base = ((x * 200 / w) + (y * 40 / h)) as i32;
            let in_square = x >= offset && x < offset + side && y >= h / 3 && y < h / 3 + side;
            let v = if in_square { 230 } else { base } + (rng.next_u32() % 9) as i32 - 4;
            data.push(v.clamp(0, 255) as u8);
        }
    }
    data
}

fn make_frames(w: u32, h: u32) -> [Frame; 2] {
    let period = Duration(33_333_333);
    let a = Frame::from_pixels(
        "bench",
        Timestamp(0),
        period,
        w,
        h,
        PixelFormat::Gray8,
        synthetic_frame(w, h, w / 8, 1),
        0,
    )
    .unwrap();
    let b = Frame::from_pixels(
        "bench",
        Timestamp(period.0),
        period,
        w,
        h,
        PixelFormat::Gray8,
        synthetic_frame(w, h, w / 2, 2),
        1,
    )
    .unwrap();
    [a, b]
}

fn bench_motion(c: &mut Criterion) {
    let mut group = c.benchmark_group("motion");
    // One element = one frame.
    group.throughput(Throughput::Elements(1));
    for (w, h) in [(1280u32, 720u32), (320, 180)] {
        let frames = make_frames(w, h);
        let mut enc = MotionEncoder::new(MotionConfig {
            width: w,
            ..Default::default()
        });
        // The first frame initialises the background; the measured calls all take the
        // differencing path.
        enc.measure(&frames[0]).unwrap();
        let check = enc.measure(&frames[1]).unwrap();
        assert!(!check.reset, "the bench frames must not look like a cut");
        assert!(check.changed > 0.0, "the bench frames must differ");
        let mut i = 0usize;
        group.bench_with_input(
            BenchmarkId::new("measure_gray8", format!("{w}x{h}")),
            &frames,
            |b, frames| {
                b.iter(|| {
                    i ^= 1;
                    black_box(enc.measure(black_box(&frames[i])).unwrap())
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_log_mel, bench_motion);
criterion_main!(benches);
