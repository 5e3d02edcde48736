//! Event decoding with onset/offset hysteresis, so one sound is one event and one walk
//! through the room is one motion event, not thirty.
//!
//! - [`MotionDetector`]: a frame is *active* when at least `min_cells` grid cells changed by
//!   `cell_threshold`; an event starts on the first active frame and ends `hangover`
//!   seconds after the last one (its `end` is the end of that last active frame).
//! - [`SoundDetector`]: a running noise floor follows the quiet parts of the *smoothed*
//!   level (the power mean of the last 50 ms; down with a 0.3 s time constant but never below
//!   the 20th percentile of the last 3 s of quiet, up with `floor_rise`, nearly frozen while a
//!   sound is on); a sound starts when a frame's level
//!   exceeds the floor by `on_db` and ends once the smoothed level has stayed below
//!   `off_db` above the floor (and above the median of the last 3 s of quiet) for `hangover`
//!   seconds; its end is the last frame whose own level was
//!   above `floor + off_db`. The first `warmup` seconds of a stream only learn the floor.
//!
//!   Why smoothed: 25 ms frames of ordinary background noise scatter by ±1.5 dB (σ) with
//!   dips of −10 dB and more. A floor that followed single frames down sat on those dips,
//!   so plain noise then read +6 dB "above the floor" and a sound never ended (measured on
//!   generated pink noise: two beeps 1.2 s apart merged into one event in 6 of 8 runs).

use crate::config::{MotionConfig, SoundConfig};
use crate::encode::{AudioFeatures, VisionFeatures};
use crate::event::{AudioSummary, Event, EventKind};
use std::collections::BTreeSet;

struct OpenMotion {
    start: f64,
    last_active_end: f64,
    cells: BTreeSet<usize>,
    peak_area: f32,
    peak_cell: f32,
    active_frames: u32,
}

/// Turns per-frame motion into `motion` events (see the module doc).
pub struct MotionDetector {
    cfg: MotionConfig,
    open: Option<OpenMotion>,
}

impl MotionDetector {
    /// A detector with the given settings.
    pub fn new(cfg: MotionConfig) -> Self {
        Self { cfg, open: None }
    }

    /// Takes one frame's features (in time order); appends finished events to `out`.
    pub fn push(&mut self, f: &VisionFeatures, out: &mut Vec<Event>) {
        let Some(m) = &f.motion else { return };
        let t = f.pts.as_secs_f64();
        let t_end = f.end().as_secs_f64();
        let active: Vec<usize> = if m.reset {
            Vec::new()
        } else {
            m.active_cells(self.cfg.cell_threshold).collect()
        };
        let is_active = active.len() >= self.cfg.min_cells as usize;
        if let Some(open) = &self.open {
            if t - open.last_active_end > self.cfg.hangover {
                self.close(&f.stream, out);
            }
        }
        if !is_active {
            return;
        }
        let peak_cell = active.iter().map(|&i| m.cells[i]).fold(0.0, f32::max);
        let open = self.open.get_or_insert_with(|| OpenMotion {
            start: t,
            last_active_end: t_end,
            cells: BTreeSet::new(),
            peak_area: 0.0,
            peak_cell: 0.0,
            active_frames: 0,
        });
        open.last_active_end = t_end;
        open.cells.extend(active);
        open.peak_area = open.peak_area.max(m.changed);
        open.peak_cell = open.peak_cell.max(peak_cell);
        open.active_frames += 1;
    }

    /// Closes an open event at its true end (end of input).
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.close(stream, out);
    }

    fn close(&mut self, stream: &str, out: &mut Vec<Event>) {
        let Some(open) = self.open.take() else { return };
        if open.last_active_end - open.start < self.cfg.min_duration {
            return;
        }
        let cols = self.cfg.grid[0];
        // Confidence: how clearly the busiest cell changed (a whole cell = 1).
        let mut e = Event::new(
            EventKind::Motion,
            stream,
            open.start,
            open.last_active_end,
            open.peak_cell,
        );
        e.labels.push(crate::event::Label {
            name: "motion".into(),
            score: e.confidence,
        });
        e.evidence.grid = Some(self.cfg.grid);
        e.evidence.cells = Some(
            open.cells
                .iter()
                .map(|&i| [i as u32 % cols, i as u32 / cols])
                .collect(),
        );
        e.evidence.peak_area = Some(open.peak_area);
        e.evidence.active_frames = Some(open.active_frames);
        out.push(e);
    }
}

/// Frames in the smoothed level (50 ms at the 10 ms hop).
const SMOOTH_FRAMES: usize = 5;
/// Time constant in seconds with which the floor falls towards a quieter background.
const FLOOR_FALL_S: f64 = 0.3;
/// Smoothed levels of the last quiet frames (no sound on) kept for the floor's lower bound
/// (3 s at the 10 ms hop).
const QUIET_FRAMES: usize = 300;
/// The floor never sits below this quantile of the recent quiet levels.
const FLOOR_QUANTILE: f64 = 0.2;

struct OpenSound {
    start: f64,
    /// The last frame whose own level was above the offset threshold (the event's end).
    last_above: f64,
    /// The last frame whose smoothed level was above the offset threshold (keeps it open).
    last_alive: f64,
    floor_at_start: f32,
    peak_db: f32,
    peak_onset: f32,
    active_frames: u32,
}

/// A jump in audio time larger than this (seconds) is a gap in the input.
const INPUT_GAP_S: f64 = 0.25;

/// Turns per-frame audio level into `sound` events (see the module doc).
pub struct SoundDetector {
    cfg: SoundConfig,
    floor: Option<f32>,
    first_t: Option<f64>,
    /// Time of the last frame seen (a jump means the input had a gap).
    last_t: Option<f64>,
    /// Smoothed levels of recent quiet frames (ring), for the floor's lower bound.
    quiet: std::collections::VecDeque<f32>,
    open: Option<OpenSound>,
    /// Linear power of the last frames, oldest first (ring).
    recent: [f64; SMOOTH_FRAMES],
    recent_n: usize,
}

impl SoundDetector {
    /// A detector with the given settings.
    pub fn new(cfg: SoundConfig) -> Self {
        Self {
            cfg,
            floor: None,
            first_t: None,
            last_t: None,
            quiet: std::collections::VecDeque::with_capacity(QUIET_FRAMES),
            open: None,
            recent: [0.0; SMOOTH_FRAMES],
            recent_n: 0,
        }
    }

    /// Adds a frame's level to the smoothing ring; returns the smoothed level in dB.
    fn smooth(&mut self, level: f32) -> f32 {
        self.recent[self.recent_n % SMOOTH_FRAMES] = 10f64.powf(f64::from(level) / 10.0);
        self.recent_n += 1;
        let n = self.recent_n.min(SMOOTH_FRAMES);
        let mean = self.recent[..n].iter().sum::<f64>() / n as f64;
        (10.0 * mean.max(1e-30).log10()) as f32
    }

    /// The noise floor now, dBFS.
    pub fn floor(&self) -> Option<f32> {
        self.floor
    }

    /// Takes the frames of `a` with time ≥ `from` (in order); appends finished events.
    pub fn push(&mut self, a: &AudioFeatures, from: f64, out: &mut Vec<Event>) {
        let hop = a.hop.as_secs_f64();
        for k in 0..a.frames() {
            let t = a.frame_time(k).as_secs_f64();
            if t < from {
                continue;
            }
            self.step(&a.stream, t, hop, a.level_db[k], a.onset[k], out);
        }
    }

    fn step(
        &mut self,
        stream: &str,
        t: f64,
        hop: f64,
        level: f32,
        onset: f32,
        out: &mut Vec<Event>,
    ) {
        // A hole in the audio (a live source lost and reconnected): whatever was sounding
        // ended with the last audio heard; nothing is assumed about the gap.
        if self.last_t.is_some_and(|prev| t - prev > INPUT_GAP_S) {
            self.close(stream, hop, out);
            self.recent_n = 0;
        }
        self.last_t = Some(t);
        let smoothed = self.smooth(level);
        let cfg = &self.cfg;
        let first_t = *self.first_t.get_or_insert(t);
        let floor = *self.floor.get_or_insert(smoothed.max(cfg.floor_min_db));
        if t - first_t < cfg.warmup {
            // Learning the floor: follow the smoothed level both ways (0.1 s time constant).
            if self.quiet.len() < QUIET_FRAMES {
                self.quiet.push_back(smoothed);
            }
            let f = floor + (smoothed - floor) * (hop / 0.1).min(1.0) as f32;
            self.floor = Some(f.max(cfg.floor_min_db));
            return;
        }
        // Floor tracking on the smoothed level: down with FLOOR_FALL_S, up with floor_rise;
        // nearly frozen while a sound is on so that a long sound does not raise its floor.
        let rise_tc = if self.open.is_some() {
            cfg.floor_rise * 12.0
        } else {
            cfg.floor_rise
        };
        let tc = if smoothed < floor {
            FLOOR_FALL_S
        } else {
            rise_tc
        };
        let mut new_floor = floor + (smoothed - floor) * (hop / tc).min(1.0) as f32;
        // …but not below the 20th percentile of the last 3 s of quiet: pink or babble
        // noise has deep 50 ms dips, and a floor resting on them reads the noise itself as
        // +6–8 dB "above the floor", so a sound would never end (two beeps 1.2 s apart
        // merged into one event on a regenerated fixture).
        if self.open.is_none() {
            if self.quiet.len() == QUIET_FRAMES {
                self.quiet.pop_front();
            }
            self.quiet.push_back(smoothed);
        }
        // A sound stays alive while its smoothed level is `off_db` above the floor *and* above
        // the median of the recent quiet: single noise bursts (2σ of pink noise at 50 ms is
        // +6 dB) then do not hold a finished sound open.
        let mut alive_ref = floor;
        if self.quiet.len() >= 20 {
            let mut v: Vec<f32> = self.quiet.iter().copied().collect();
            let k = ((v.len() - 1) as f64 * FLOOR_QUANTILE).round() as usize;
            let (_, q, _) = v.select_nth_unstable_by(k, f32::total_cmp);
            new_floor = new_floor.max(*q);
            let m = (v.len() - 1) / 2;
            let (_, median, _) = v.select_nth_unstable_by(m, f32::total_cmp);
            alive_ref = alive_ref.max(*median);
        }
        self.floor = Some(new_floor.max(cfg.floor_min_db));

        match &mut self.open {
            None => {
                if level - floor >= cfg.on_db {
                    self.open = Some(OpenSound {
                        start: t,
                        last_above: t,
                        last_alive: t,
                        floor_at_start: floor,
                        peak_db: level,
                        peak_onset: onset,
                        active_frames: 1,
                    });
                }
            }
            Some(open) => {
                if smoothed - alive_ref >= cfg.off_db {
                    open.last_alive = t;
                    if level - floor >= cfg.off_db {
                        open.last_above = t;
                        open.active_frames += 1;
                    }
                    open.peak_db = open.peak_db.max(level);
                    open.peak_onset = open.peak_onset.max(onset);
                } else if t - open.last_alive > cfg.hangover {
                    self.close(stream, hop, out);
                }
            }
        }
    }

    /// Closes an open sound at its true end (end of input).
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.close(stream, 0.01, out);
    }

    fn close(&mut self, stream: &str, hop: f64, out: &mut Vec<Event>) {
        let Some(open) = self.open.take() else { return };
        let end = open.last_above + hop / 2.0;
        if end - open.start < self.cfg.min_duration {
            return;
        }
        let snr = open.peak_db - open.floor_at_start;
        // Confidence grows with the margin above the onset threshold: on_db → 0.5, 3×on_db → 1.
        let conf = (0.5 + 0.25 * (snr - self.cfg.on_db) / self.cfg.on_db).clamp(0.0, 1.0);
        let mut e = Event::new(EventKind::Sound, stream, open.start, end, conf);
        e.audio = Some(AudioSummary {
            peak_dbfs: open.peak_db,
            floor_dbfs: open.floor_at_start,
            snr_db: snr,
            peak_onset: open.peak_onset,
        });
        e.evidence.active_frames = Some(open.active_frames);
        out.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Duration, Timestamp};
    use crate::encode::MotionFeatures;
    use std::sync::Arc;

    fn audio(levels: &[f32]) -> AudioFeatures {
        AudioFeatures {
            stream: Arc::from("s"),
            pts: Timestamp(0),
            hop: Duration(10_000_000),
            window: Duration(25_000_000),
            log_mel: vec![0.0; levels.len() * 64],
            level_db: levels.to_vec(),
            onset: vec![0.0; levels.len()],
            speech: Vec::new(),
            tags: Vec::new(),
            mfcc: None,
        }
    }

    #[test]
    fn one_sound_with_a_short_dip_is_one_event() {
        // 1 s of −60 dB floor (the first 0.5 s is the warm-up), 0.5 s at −20 dB with a 0.1 s dip, 1 s of floor.
        let mut lv = vec![-60.0; 100];
        lv.extend(vec![-20.0; 20]);
        lv.extend(vec![-58.0; 10]);
        lv.extend(vec![-20.0; 20]);
        lv.extend(vec![-60.0; 100]);
        let mut d = SoundDetector::new(SoundConfig::default());
        let mut out = Vec::new();
        d.push(&audio(&lv), 0.0, &mut out);
        d.finish("s", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        let e = &out[0];
        assert!((e.start - 1.0125).abs() < 0.011, "start {}", e.start);
        assert!((e.end - 1.5).abs() < 0.02, "end {}", e.end);
        let a = e.audio.as_ref().unwrap();
        assert!((a.floor_dbfs + 60.0).abs() < 0.5 && (a.snr_db - 40.0).abs() < 0.5);
    }

    #[test]
    fn noisy_background_with_dips_does_not_hold_a_sound_open() {
        // Background at −51 dB scattering ±1.5 dB (σ) with a −11 dB dip every ~0.3 s, as
        // 25 ms frames of pink noise do; beeps at 1.0–1.3 s and 2.5–3.0 s.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut gauss = move || {
            // Sum of 12 uniforms − 6: close enough to a standard normal for this purpose.
            (0..12)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 11) as f32 / (1u64 << 53) as f32
                })
                .sum::<f32>()
                - 6.0
        };
        let lv: Vec<f32> = (0..500)
            .map(|k| {
                let t = k as f64 * 0.01 + 0.0125;
                if (1.0..1.3).contains(&t) || (2.5..3.0).contains(&t) {
                    -9.0
                } else if k % 31 == 0 {
                    -62.0
                } else {
                    -51.0 + 1.5 * gauss()
                }
            })
            .collect();
        let mut d = SoundDetector::new(SoundConfig::default());
        let mut out = Vec::new();
        d.push(&audio(&lv), 0.0, &mut out);
        d.finish("s", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        for (e, (s, end)) in out.iter().zip([(1.0, 1.3), (2.5, 3.0)]) {
            assert!((e.start - s).abs() < 0.02, "start {} vs {s}", e.start);
            assert!((e.end - end).abs() < 0.03, "end {} vs {end}", e.end);
        }
    }

    /// Background noise with a lone +6 dB burst (a 2σ event of pink noise at 50 ms) between
    /// two beeps: the burst must not hold the first beep open until the second.
    #[test]
    fn a_noise_burst_between_two_sounds_does_not_merge_them() {
        // −48 dB noise with 50 ms dips to −54 dB every 200 ms (what a floor can rest on).
        let noise = |i: usize| if i % 20 < 5 { -54.0 } else { -48.0 };
        let mut lv: Vec<f32> = (0..100).map(noise).collect();
        lv.extend(vec![-6.0; 30]); // beep 1.0–1.3 s
        lv.extend((0..120).map(|i| {
            if (70..75).contains(&i) {
                -43.0
            } else {
                noise(i)
            }
        }));
        lv.extend(vec![-6.0; 50]); // beep 2.5–3.0 s
        lv.extend((0..100).map(noise));
        let mut d = SoundDetector::new(SoundConfig::default());
        let mut out = Vec::new();
        d.push(&audio(&lv), 0.0, &mut out);
        d.finish("s", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            (out[0].end - 1.3).abs() < 0.02 && (out[1].start - 2.5).abs() < 0.02,
            "{out:?}"
        );
    }

    /// A live source lost mid-sound: the sound ends with the last audio before the hole,
    /// and the loud audio after it is a new event, not a continuation.
    #[test]
    fn a_hole_in_the_audio_ends_an_open_sound() {
        let mut before = vec![-60.0; 100];
        before.extend(vec![-20.0; 30]); // loud from 1.0 s up to the hole at 1.3 s
        let mut d = SoundDetector::new(SoundConfig::default());
        let mut out = Vec::new();
        d.push(&audio(&before), 0.0, &mut out);
        let mut after = audio(&[vec![-20.0; 20], vec![-60.0; 100]].concat());
        after.pts = Timestamp(5_000_000_000); // 3.7 s later
        d.push(&after, 0.0, &mut out);
        d.finish("s", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            (out[0].start - 1.0).abs() < 0.02 && (out[0].end - 1.3).abs() < 0.02,
            "{:?}",
            out[0]
        );
        assert!(
            (out[1].start - 5.0).abs() < 0.02 && out[1].end < 5.25,
            "{:?}",
            out[1]
        );
    }

    #[test]
    fn speech_ends_at_a_hole_in_the_audio() {
        let mut d = SpeechDetector::new(SpeechConfig::default());
        let mut out = Vec::new();
        for i in 0..10 {
            d.push("s", i as f64 * 0.032, 0.032, 0.9, &mut out);
        }
        for i in 0..10 {
            d.push("s", 4.0 + i as f64 * 0.032, 0.032, 0.9, &mut out);
        }
        d.finish("s", &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!((out[0].end - 0.32).abs() < 1e-6 && (out[1].start - 4.0).abs() < 1e-6);
    }

    #[test]
    fn a_quiet_change_below_on_db_is_no_event() {
        let mut lv = vec![-60.0; 100];
        lv.extend(vec![-52.0; 50]);
        let mut d = SoundDetector::new(SoundConfig::default());
        let mut out = Vec::new();
        d.push(&audio(&lv), 0.0, &mut out);
        d.finish("s", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn motion_bridges_short_gaps_and_ends_at_the_last_active_frame() {
        let mut d = MotionDetector::new(MotionConfig {
            grid: [2, 1],
            hangover: 0.5,
            ..MotionConfig::default()
        });
        let mut out = Vec::new();
        let frame = |i: u64, active: bool| VisionFeatures {
            stream: Arc::from("s"),
            pts: Timestamp(i * 100_000_000),
            duration: Duration(100_000_000),
            index: i,
            motion: Some(MotionFeatures {
                grid: [2, 1],
                cells: vec![if active { 0.5 } else { 0.0 }, 0.0],
                changed: if active { 0.25 } else { 0.0 },
                energy: 0.0,
                reset: false,
            }),
            detected: false,
            objects: Vec::new(),
            track_events: Vec::new(),
            faces: Vec::new(),
            ticks: 0..0,
        };
        // Active 10–19, gap of 3 frames (< hangover), active 23–25, then quiet.
        for i in 0..40 {
            d.push(
                &frame(i, (10..20).contains(&i) || (23..26).contains(&i)),
                &mut out,
            );
        }
        d.finish("s", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!((out[0].start - 1.0).abs() < 1e-9 && (out[0].end - 2.6).abs() < 1e-9);
        assert_eq!(out[0].evidence.cells, Some(vec![[0, 0]]));
    }
}

/// Settings of `speech` events from per-chunk speech probability (Silero VAD's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// Probability that starts speech.
    pub on: f32,
    /// Probability below which speech may end.
    pub off: f32,
    /// Seconds below `off` before speech ends.
    pub min_silence: f64,
    /// Shortest speech reported, seconds.
    pub min_duration: f64,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            on: 0.5,
            off: 0.35,
            min_silence: 0.3,
            min_duration: 0.25,
        }
    }
}

struct OpenSpeech {
    start: f64,
    last_on: f64,
    sum: f64,
    n: u32,
}

/// Turns speech probabilities (one per VAD chunk, in order) into `speech` events.
pub struct SpeechDetector {
    cfg: SpeechConfig,
    open: Option<OpenSpeech>,
    /// End of the last chunk seen.
    last_end: Option<f64>,
}

impl SpeechDetector {
    /// A detector with the given settings.
    pub fn new(cfg: SpeechConfig) -> Self {
        Self {
            cfg,
            open: None,
            last_end: None,
        }
    }

    /// Takes the probability of the chunk `[t, t + len)`; appends finished events.
    pub fn push(&mut self, stream: &str, t: f64, len: f64, prob: f32, out: &mut Vec<Event>) {
        // A hole in the audio closes open speech at the last audio heard.
        if self.last_end.is_some_and(|e| t - e > INPUT_GAP_S) {
            self.close(stream, out);
        }
        self.last_end = Some(t + len);
        match &mut self.open {
            None => {
                if prob >= self.cfg.on {
                    self.open = Some(OpenSpeech {
                        start: t,
                        last_on: t + len,
                        sum: f64::from(prob),
                        n: 1,
                    });
                }
            }
            Some(open) => {
                if prob >= self.cfg.off {
                    open.last_on = t + len;
                    open.sum += f64::from(prob);
                    open.n += 1;
                } else if t - open.last_on > self.cfg.min_silence {
                    self.close(stream, out);
                }
            }
        }
    }

    /// Closes open speech at the end of the stream.
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.close(stream, out);
    }

    fn close(&mut self, stream: &str, out: &mut Vec<Event>) {
        let Some(open) = self.open.take() else { return };
        if open.last_on - open.start < self.cfg.min_duration {
            return;
        }
        let mean = (open.sum / f64::from(open.n.max(1))) as f32;
        let mut e = Event::new(EventKind::Speech, stream, open.start, open.last_on, mean);
        e.labels.push(crate::event::Label {
            name: "Speech".into(),
            score: mean,
        });
        e.evidence.active_frames = Some(open.n);
        out.push(e);
    }
}

#[cfg(test)]
mod speech_tests {
    use super::*;

    #[test]
    fn speech_with_a_short_pause_is_one_event_and_blips_are_ignored() {
        let mut d = SpeechDetector::new(SpeechConfig::default());
        let mut out = Vec::new();
        let chunk = 0.032;
        // 1 s silence, 1 s speech, 0.15 s pause, 0.5 s speech, 1 s silence, one 32 ms blip.
        let mut probs = vec![0.02f32; 31];
        probs.extend(vec![0.9; 31]);
        probs.extend(vec![0.1; 5]);
        probs.extend(vec![0.8; 16]);
        probs.extend(vec![0.05; 31]);
        probs.push(0.7);
        probs.extend(vec![0.05; 20]);
        for (i, p) in probs.iter().enumerate() {
            d.push("s", i as f64 * chunk, chunk, *p, &mut out);
        }
        d.finish("s", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!((out[0].start - 31.0 * chunk).abs() < 1e-6);
        assert!((out[0].end - 83.0 * chunk).abs() < 1e-6);
        assert!(out[0].confidence > 0.8);
    }
}
