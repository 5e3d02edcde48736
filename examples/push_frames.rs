//! Feeding avsense from a program's own sensors: frames and audio pushed through a `push`
//! source (here generated: a bright square crossing a dark frame, and a beep every second),
//! events printed as they come, per-frame tracks through the tracks tap.
//!
//!     cargo run --example push_frames [-- SECONDS]
use avsense::source::push::{PushFormat, PushSamples};
use avsense::source::{SourceConfig, SourceKind};
use std::time::Instant;

const W: u32 = 320;
const H: u32 = 240;
const FPS: u64 = 25;
const RATE: u32 = 16_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    // A recorded-style input: the push blocks while the pipeline is behind (nothing lost).
    // For a live sensor set `live = true`: old frames are dropped instead.
    let cam = SourceConfig::new("robot", SourceKind::Push);
    let running = avsense::Pipeline::builder()
        .source(cam)
        .on_event(|e| println!("{}", e.to_json_line()))
        .tracks_tap(|stream, t, tracks| {
            if !tracks.objects.is_empty() {
                eprintln!("{stream} {t:.2} s: {} tracks", tracks.objects.len());
            }
        })
        .build()?
        .spawn()?;
    let input = running.input("robot").ok_or("no push input")?;

    let t0 = Instant::now();
    let origin = 1_000_000_000u64; // the caller's clock, ns (any monotonic origin)
    let mut frame = vec![0u8; PushFormat::Rgb.size(W, H)];
    let per_frame = (RATE as u64 / FPS) as usize;
    for i in 0..seconds * FPS {
        let pts = origin + i * 1_000_000_000 / FPS;
        // A 40-px square moving left to right.
        frame.fill(20);
        let x0 = (i * 8 % (W as u64 - 40)) as u32;
        for y in 100..140 {
            for x in x0..x0 + 40 {
                let p = ((y * W + x) * 3) as usize;
                frame[p..p + 3].copy_from_slice(&[230, 230, 230]);
            }
        }
        input.push_video(pts, W, H, PushFormat::Rgb, &frame)?;
        // A 1 kHz beep for the first 200 ms of every second, silence otherwise.
        let samples: Vec<f32> = (0..per_frame)
            .map(|k| {
                let n = i as usize * per_frame + k;
                if (n % RATE as usize) < RATE as usize / 5 {
                    0.5 * (n as f32 * 2.0 * std::f32::consts::PI * 1000.0 / RATE as f32).sin()
                } else {
                    0.0
                }
            })
            .collect();
        input.push_audio(pts, RATE, 1, PushSamples::F32(&samples))?;
    }
    input.finish();
    let report = running.wait()?;
    eprintln!(
        "{} s pushed in {:.1} s: {} frames analysed, {} events",
        seconds,
        t0.elapsed().as_secs_f64(),
        report.streams[0].frames,
        report.events_written
    );
    Ok(())
}
