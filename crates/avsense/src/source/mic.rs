//! Microphones through cpal, on the pipeline's one clock.
//!
//! The capture callback converts to mono `f32` and hands the chunk to a forwarding loop
//! (on the source's thread), which resamples to the encoders' rate in one step and stamps
//! each chunk from the device's own sample count mapped onto GStreamer's monotonic system
//! clock, the clock live GStreamer pipelines run on:
//!
//! * the mapping starts from the capture time cpal reports for the first chunk;
//! * it follows the device's drift: once per second of audio the earliest observed capture
//!   time in that second (scheduling only ever delays a callback) is compared with the
//!   mapping, and a phase-locked loop slews the rate (±2000 ppm at most) and phase so the
//!   timeline stays continuous and tracks the clock;
//! * a device that delivers faster than real time (ALSA's `file`/`null` plugins, virtual
//!   devices) is paced to the clock: no real microphone can deliver audio from the future.

use super::resample::Resampler;
use super::state::{Shared, StreamTimes};
use super::{AudioChunk, AUDIO_RATE};
use crate::core::clock::Timestamp;
use crate::core::edge::EdgeSender;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

/// Errors of microphone capture.
#[derive(Debug, thiserror::Error)]
pub enum MicError {
    /// No input device matches the configured one.
    #[error("microphone {wanted:?}: no such input device (available: {available})")]
    NotFound {
        /// What the config asked for.
        wanted: String,
        /// The inputs cpal lists.
        available: String,
    },
    /// cpal could not open or start the device.
    #[error("microphone {device:?}: {stage}: {reason}")]
    Device {
        /// The device's name.
        device: String,
        /// What was being done.
        stage: &'static str,
        /// cpal's error.
        reason: String,
    },
}

/// Largest rate correction the drift loop applies (parts per million).
pub const MAX_DRIFT_PPM: f64 = 2000.0;
/// Device audio per drift observation block, seconds.
const BLOCK_S: f64 = 1.0;
/// Blocks the drift fit looks back over.
const FIT_BLOCKS: usize = 60;
/// Time constant of the phase correction, seconds.
const PHASE_TC_S: f64 = 10.0;

/// Maps a device's sample count onto pipeline time (ns) and follows its drift.
#[derive(Debug, Clone)]
pub struct MicClock {
    rate: f64,
    /// Pipeline time (ns) the mapping gives device sample 0.
    anchor_ns: f64,
    /// Pipeline ns per nominal device ns (1 + drift).
    ratio: f64,
    /// Earliest (observed − nominal device time) in the current block, ns.
    block_min: Option<f64>,
    block_end_s: f64,
    /// Per finished block: (device seconds, earliest observed − nominal device time, ns).
    points: VecDeque<(f64, f64)>,
}

impl MicClock {
    /// A mapping for a device at `rate` Hz whose sample 0 was captured at `first_ns`
    /// (pipeline time).
    pub fn new(rate: u32, first_ns: f64) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            anchor_ns: first_ns,
            ratio: 1.0,
            block_min: None,
            block_end_s: BLOCK_S,
            points: VecDeque::new(),
        }
    }

    /// Pipeline time (ns) of device sample `n`.
    pub fn time_of(&self, n: f64) -> f64 {
        self.anchor_ns + n / self.rate * 1e9 * self.ratio
    }

    /// The drift in force, parts per million (positive: the device clock runs slow
    /// against the pipeline clock, so each device second lasts longer).
    pub fn drift_ppm(&self) -> f64 {
        (self.ratio - 1.0) * 1e6
    }

    /// Notes that device sample `n` was observed captured at `observed_ns` (pipeline time).
    pub fn observe(&mut self, n: u64, observed_ns: f64) {
        let dev_s = n as f64 / self.rate;
        let y = observed_ns - dev_s * 1e9;
        self.block_min = Some(self.block_min.map_or(y, |m| m.min(y)));
        if dev_s < self.block_end_s {
            return;
        }
        self.block_end_s = dev_s + BLOCK_S;
        if let Some(m) = self.block_min.take() {
            self.points.push_back((dev_s, m));
        }
        while self.points.len() > FIT_BLOCKS {
            self.points.pop_front();
        }
        // The fitted line y = a + b·t: where the clock says device time t really is.
        let k = self.points.len() as f64;
        if k < 3.0 {
            return;
        }
        let mt = self.points.iter().map(|p| p.0).sum::<f64>() / k;
        let my = self.points.iter().map(|p| p.1).sum::<f64>() / k;
        let sxx: f64 = self.points.iter().map(|p| (p.0 - mt).powi(2)).sum();
        let sxy: f64 = self.points.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
        let slope_ns_per_s = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let fitted_now = my + slope_ns_per_s * (dev_s - mt) + dev_s * 1e9;
        let mapped_now = self.time_of(n as f64);
        // Rate: the fitted drift, plus a term that closes the phase error over PHASE_TC_S.
        let phase_err_ns = fitted_now - mapped_now;
        let max = MAX_DRIFT_PPM * 1e-6;
        let ratio = (1.0 + slope_ns_per_s / 1e9 + phase_err_ns / (PHASE_TC_S * 1e9))
            .clamp(1.0 - max, 1.0 + max);
        // Keep the timeline continuous at sample n.
        self.anchor_ns = mapped_now - dev_s * 1e9 * ratio;
        self.ratio = ratio;
    }
}

/// Finds the cpal input device `wanted` (a name, an index into the input list, or
/// `default`/none for the host's default input).
pub fn find_device(wanted: Option<&str>) -> Result<(cpal::Device, String), MicError> {
    let host = cpal::default_host();
    let name_of = |d: &cpal::Device| {
        d.description()
            .map(|x| x.name().to_string())
            .unwrap_or_else(|_| "(unnamed)".into())
    };
    let want = wanted.map(str::trim).filter(|w| !w.is_empty());
    if want.is_none_or(|w| w.eq_ignore_ascii_case("default")) {
        return host
            .default_input_device()
            .map(|d| {
                let n = name_of(&d);
                (d, n)
            })
            .ok_or_else(|| MicError::NotFound {
                wanted: "default".into(),
                available: "no default input device".into(),
            });
    }
    let want = want.unwrap_or_default();
    let devices: Vec<cpal::Device> = host
        .input_devices()
        .map(|it| it.collect())
        .unwrap_or_default();
    let names: Vec<String> = devices.iter().map(name_of).collect();
    let pick = if let Ok(i) = want.parse::<usize>() {
        devices.get(i).cloned().map(|d| (d, names[i].clone()))
    } else {
        names
            .iter()
            .position(|n| n == want)
            .or_else(|| {
                let w = want.to_lowercase();
                names.iter().position(|n| n.to_lowercase().contains(&w))
            })
            .map(|i| (devices[i].clone(), names[i].clone()))
    };
    pick.ok_or_else(|| MicError::NotFound {
        wanted: want.to_string(),
        available: if names.is_empty() {
            "none".into()
        } else {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{i}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    })
}

/// One callback's audio: mono samples at the device rate and when the first was captured
/// (ns on GStreamer's system clock).
struct Captured {
    samples: Vec<f32>,
    captured_ns: u64,
}

/// What ended a microphone capture.
#[derive(Debug)]
pub enum MicEnd {
    /// Stopped on request or after `duration`.
    Stopped,
    /// The device failed or stopped delivering audio.
    Failed(String),
}

/// Capture statistics, for the report.
#[derive(Debug, Clone, Default)]
pub struct MicStats {
    /// The device's name.
    pub device: String,
    /// The device rate.
    pub rate: u32,
    /// The drift correction in force at the end, ppm.
    pub drift_ppm: f64,
    /// Device samples lost because the forwarder fell behind.
    pub dropped_samples: u64,
    /// Whether the device delivered faster than real time and was paced.
    pub paced: bool,
}

/// Settings of one capture.
pub struct MicRun<'a> {
    /// Device name/index/`default`.
    pub device: Option<&'a str>,
    /// Stream name.
    pub stream: Arc<str>,
    /// Stop after this much audio (seconds of pipeline time).
    pub duration: Option<f64>,
    /// Seconds without audio after which the device counts as gone.
    pub stall_timeout: f64,
    /// Whether another (GStreamer) part of the same source sets the clock origin.
    pub origin_from_video: bool,
    /// Set when the rest of the source has ended.
    pub stop: &'a std::sync::atomic::AtomicBool,
    /// Capture rate to ask for (None: the device's default).
    pub rate: Option<u32>,
    /// Channels to ask for.
    pub channels: Option<u16>,
    /// Sample format to ask for (`i16`, `f32`, …).
    pub format: Option<&'a str>,
    /// Called at once when the device fails, before the stream is torn down (tearing down
    /// a hung device can block until it returns).
    pub on_failure: &'a (dyn Fn(&str) + Sync),
}

fn format_name(f: cpal::SampleFormat) -> String {
    format!("{f:?}").to_lowercase()
}

/// The stream configuration: the device's default, or the supported one that matches what
/// the config asks for (rate, channels, format).
fn choose_config(
    device: &cpal::Device,
    cfg: &MicRun<'_>,
    name: &str,
) -> Result<(cpal::StreamConfig, cpal::SampleFormat), MicError> {
    let dev_err = |stage: &'static str, e: String| MicError::Device {
        device: name.to_string(),
        stage,
        reason: e,
    };
    let default = device
        .default_input_config()
        .map_err(|e| dev_err("reading its default configuration", e.to_string()))?;
    if cfg.rate.is_none() && cfg.channels.is_none() && cfg.format.is_none() {
        return Ok((default.config(), default.sample_format()));
    }
    let rate = cfg.rate.unwrap_or(default.sample_rate());
    let configs: Vec<_> = device
        .supported_input_configs()
        .map_err(|e| dev_err("listing its configurations", e.to_string()))?
        .collect();
    let pick = configs.iter().find(|c| {
        cfg.channels.is_none_or(|ch| c.channels() == ch)
            && cfg
                .format
                .is_none_or(|f| format_name(c.sample_format()) == f)
            && (c.min_sample_rate()..=c.max_sample_rate()).contains(&rate)
    });
    match pick {
        Some(c) => {
            let s = c.with_sample_rate(rate);
            Ok((s.config(), s.sample_format()))
        }
        None => Err(dev_err(
            "choosing a configuration",
            format!(
                "none matches rate {rate} Hz, channels {:?}, format {:?} (it offers: {})",
                cfg.channels,
                cfg.format,
                configs
                    .iter()
                    .take(12)
                    .map(|c| format!(
                        "{} ch {}–{} Hz {}",
                        c.channels(),
                        c.min_sample_rate(),
                        c.max_sample_rate(),
                        format_name(c.sample_format())
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

fn clock_now_ns() -> u64 {
    use gstreamer::prelude::ClockExt;
    gstreamer::SystemClock::obtain().time().nseconds()
}

/// Captures until stopped, `duration` is reached, or the device fails. Samples go to
/// `slot` (closed by the caller).
pub fn run(
    cfg: MicRun<'_>,
    shared: &Shared,
    slot: &Mutex<Option<EdgeSender<AudioChunk>>>,
) -> (Result<MicEnd, MicError>, MicStats) {
    let mut stats = MicStats::default();
    let r = run_inner(&cfg, shared, slot, &mut stats);
    (r, stats)
}

fn run_inner(
    cfg: &MicRun<'_>,
    shared: &Shared,
    slot: &Mutex<Option<EdgeSender<AudioChunk>>>,
    stats: &mut MicStats,
) -> Result<MicEnd, MicError> {
    let (device, name) = find_device(cfg.device)?;
    stats.device = name.clone();
    let dev_err = |stage: &'static str, e: String| MicError::Device {
        device: name.clone(),
        stage,
        reason: e,
    };
    let (config, sample_format) = choose_config(&device, cfg, &name)?;
    let rate = config.sample_rate;
    let channels = usize::from(config.channels.max(1));
    stats.rate = rate;
    let (tx, rx) = crossbeam_channel::bounded::<Captured>(64);
    let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let err_cb = {
        let error = Arc::clone(&error);
        move |e: cpal::Error| {
            if let Ok(mut g) = error.lock() {
                g.get_or_insert_with(|| e.to_string());
            }
        }
    };
    macro_rules! build {
        ($t:ty) => {{
            let tx = tx.clone();
            let dropped = Arc::clone(&dropped);
            device.build_input_stream::<$t, _, _>(
                config.clone(),
                move |data: &[$t], info: &cpal::InputCallbackInfo| {
                    let now = clock_now_ns();
                    let ts = info.timestamp();
                    // The capture→callback delay cpal reports; a device without a real
                    // clock (ALSA's null/file plugins) can report nonsense, so more than
                    // a second is taken as unknown.
                    let delay = ts.callback.duration_since(ts.capture).as_nanos() as u64;
                    let delay = if delay > 1_000_000_000 { 0 } else { delay };
                    let frames = data.len() / channels;
                    let mut mono = Vec::with_capacity(frames);
                    for f in data.chunks_exact(channels) {
                        let s: f32 = f
                            .iter()
                            .map(|v| <f32 as cpal::FromSample<$t>>::from_sample_(*v))
                            .sum();
                        mono.push(s / channels as f32);
                    }
                    let item = Captured {
                        samples: mono,
                        captured_ns: now.saturating_sub(delay),
                    };
                    // Waits only for a device that runs ahead of real time (it is then
                    // paced by the forwarder); a real device's forwarder never lags that far.
                    if tx
                        .send_timeout(item, StdDuration::from_millis(500))
                        .is_err()
                    {
                        dropped.fetch_add(frames as u64, Ordering::Relaxed);
                    }
                },
                err_cb.clone(),
                None,
            )
        }};
    }
    let stream = match sample_format {
        cpal::SampleFormat::F32 => build!(f32),
        cpal::SampleFormat::I16 => build!(i16),
        cpal::SampleFormat::I32 => build!(i32),
        cpal::SampleFormat::U8 => build!(u8),
        cpal::SampleFormat::U16 => build!(u16),
        cpal::SampleFormat::F64 => build!(f64),
        other => {
            return Err(dev_err(
                "choosing a sample format",
                format!("{other:?} is not supported (expected f32, f64, i16, i32, u8 or u16)"),
            ))
        }
    }
    .map_err(|e| dev_err("opening the input stream", e.to_string()))?;
    drop(tx);
    stream
        .play()
        .map_err(|e| dev_err("starting the input stream", e.to_string()))?;
    tracing::info!(stream = %cfg.stream, device = %name, rate, channels, "microphone started");

    let end = forward(cfg, shared, slot, &rx, &error, rate, stats);
    if let MicEnd::Failed(why) = &end {
        (cfg.on_failure)(why);
    }
    // The callback may be waiting on the channel: drop the receiver first so it returns,
    // then the stream (cpal joins its capture thread).
    drop(rx);
    if matches!(&end, MicEnd::Failed(_)) {
        // A device that stopped delivering may hold cpal's capture thread in a blocking
        // read for ever (a hung USB device, a FIFO whose writer went quiet): joining it
        // would hang the whole source. The stream is left to that thread, which sees the
        // closed channel once the read returns, and is reclaimed when the process ends.
        tracing::warn!(stream = %cfg.stream, device = %name, "abandoning the failed device's capture thread");
        std::mem::forget(stream);
    } else {
        drop(stream);
    }
    stats.dropped_samples = dropped.load(Ordering::Relaxed);
    Ok(end)
}

fn forward(
    cfg: &MicRun<'_>,
    shared: &Shared,
    slot: &Mutex<Option<EdgeSender<AudioChunk>>>,
    rx: &crossbeam_channel::Receiver<Captured>,
    error: &Mutex<Option<String>>,
    rate: u32,
    stats: &mut MicStats,
) -> MicEnd {
    let mut resampler = Resampler::new(rate, AUDIO_RATE);
    let mut clock: Option<MicClock> = None;
    let mut device_samples: u64 = 0;
    let mut first = true;
    let mut last_data = std::time::Instant::now();
    let stall = StdDuration::from_secs_f64(cfg.stall_timeout.max(0.1));
    let limit_ns = cfg.duration.map(|d| (d * 1e9) as i128);
    loop {
        if shared.stop.is_set() || cfg.stop.load(Ordering::Relaxed) {
            return MicEnd::Stopped;
        }
        if let Some(e) = error.lock().ok().and_then(|mut g| g.take()) {
            return MicEnd::Failed(format!("device {:?} failed: {e}", stats.device));
        }
        let item = match rx.recv_timeout(StdDuration::from_millis(100)) {
            Ok(i) => i,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if last_data.elapsed() > stall {
                    return MicEnd::Failed(format!(
                        "device {:?} delivered no audio for {:.1} s (disconnected or stopped)",
                        stats.device,
                        stall.as_secs_f64()
                    ));
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return MicEnd::Failed(format!("device {:?} stream ended", stats.device));
            }
        };
        last_data = std::time::Instant::now();
        // The clock origin: the video pipeline's base time when the mic joins one (samples
        // before it are dropped), else the first capture.
        let origin = match shared.base_time.load(Ordering::Relaxed) {
            0 if cfg.origin_from_video => {
                device_samples += item.samples.len() as u64;
                continue;
            }
            0 => {
                let o = item.captured_ns;
                let _ =
                    shared
                        .base_time
                        .compare_exchange(0, o, Ordering::Relaxed, Ordering::Relaxed);
                shared.base_time.load(Ordering::Relaxed)
            }
            o => o,
        };
        let observed = item.captured_ns as f64 - origin as f64;
        let clk = clock.get_or_insert_with(|| {
            // Sample 0 of the device, extrapolated back from this chunk.
            MicClock::new(
                rate,
                observed - device_samples as f64 / f64::from(rate) * 1e9,
            )
        });
        // A paced device's capture times are the pacing's, not a clock to follow.
        if !stats.paced {
            clk.observe(device_samples, observed);
        }
        let n = item.samples.len() as u64;
        let out = resampler.process(&item.samples);
        device_samples += n;
        if out.is_empty() {
            continue;
        }
        // Output sample k sits at device sample k·rate/16000.
        let first_out = resampler.produced() - out.len() as u64;
        let dev_pos = first_out as f64 * f64::from(rate) / f64::from(AUDIO_RATE);
        let start_ns = clk.time_of(dev_pos) as i128;
        let end_ns = clk.time_of(device_samples as f64) as i128;
        // A device ahead of the clock is not a real-time device: wait for the clock.
        let now = clock_now_ns() as i128 - origin as i128;
        if end_ns > now + 50_000_000 {
            if !stats.paced {
                tracing::warn!(stream = %cfg.stream, device = %stats.device,
                    "the microphone delivers audio faster than real time; pacing it to the clock");
            }
            stats.paced = true;
            let wait = (end_ns - now).min(1_000_000_000) as u64;
            std::thread::sleep(StdDuration::from_nanos(wait));
        }
        stats.drift_ppm = clk.drift_ppm();
        let mut samples = out;
        let mut start = start_ns + shared.av_offset_ns as i128;
        if start < 0 {
            let skip = ((-start) as u128 * u128::from(AUDIO_RATE)).div_ceil(1_000_000_000) as usize;
            if skip >= samples.len() {
                continue;
            }
            samples.drain(..skip);
            start += skip as i128 * 1_000_000_000 / i128::from(AUDIO_RATE);
        }
        let pts = Timestamp(start.max(0) as u64);
        let media_end = Timestamp(end_ns.max(0) as u64);
        if let Some(limit) = limit_ns {
            if start_ns >= limit {
                return MicEnd::Stopped;
            }
        }
        shared.times.note(StreamTimes::AUDIO, media_end);
        shared.count_samples(samples.len() as u64);
        let chunk = AudioChunk {
            stream: Arc::clone(&cfg.stream),
            pts,
            sample_rate: AUDIO_RATE,
            channels: 1,
            samples,
            discont: first,
        };
        first = false;
        let Ok(guard) = slot.lock() else {
            return MicEnd::Failed("the audio edge lock was poisoned".into());
        };
        match guard.as_ref() {
            Some(tx) => {
                if tx.send(chunk).is_err() {
                    return MicEnd::Stopped; // downstream has gone
                }
            }
            None => return MicEnd::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device whose clock runs 300 ppm slow, observed with up to 5 ms of scheduling
    /// delay: the mapping converges to the true capture times.
    #[test]
    fn clock_follows_drift_through_jitter() {
        let rate = 48_000u32;
        let drift = 300e-6;
        let mut c = MicClock::new(rate, 0.0);
        let chunk = 480u64;
        let mut worst_late = 0.0f64;
        let mut seed = 12345u64;
        for i in 0..(200 * 100) {
            let n = i * chunk;
            let truth = n as f64 / rate as f64 * 1e9 * (1.0 + drift);
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = (seed >> 33) as f64 / (1u64 << 31) as f64 * 5e6;
            c.observe(n, truth + jitter);
            if i > 100 * 100 {
                worst_late = worst_late.max((c.time_of(n as f64) - truth).abs());
            }
        }
        assert!((c.drift_ppm() - 300.0).abs() < 20.0, "{}", c.drift_ppm());
        assert!(
            worst_late < 2e6,
            "mapping error {worst_late} ns after 100 s"
        );
    }

    /// The mapping never jumps: consecutive samples stay consecutive in time.
    #[test]
    fn clock_is_continuous() {
        let mut c = MicClock::new(16_000, 1e9);
        let mut prev = c.time_of(0.0);
        for i in 1..5000u64 {
            let n = i * 160;
            c.observe(n, 1e9 + n as f64 / 16_000.0 * 1e9 * 1.001 + 3e6);
            let t = c.time_of(n as f64);
            let step = t - prev;
            assert!(
                step > 0.0 && (step - 1e7).abs() < 1e7 * 0.003,
                "step {step}"
            );
            prev = t;
        }
    }

    #[test]
    fn unknown_device_lists_what_exists() {
        match find_device(Some("no-such-microphone-xyz")) {
            Err(MicError::NotFound { wanted, .. }) => assert_eq!(wanted, "no-such-microphone-xyz"),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("found a device that does not exist"),
        }
    }
}
