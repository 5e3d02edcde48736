//! `sound` events from the audio level.
//!
//! [`SoundDetector`]: a running noise floor follows the quiet parts of the *smoothed*
//! level (the power mean of the last 50 ms; down with a 0.3 s time constant but never below
//! the 20th percentile of the last 3 s of quiet, up with `floor_rise`, nearly frozen while a
//! sound is on); a sound starts when a frame's level
//! exceeds the floor by `on_db` and ends once the smoothed level has stayed below
//! `off_db` above the floor (and above the median of the last 3 s of quiet) for `hangover`
//! seconds; its end is the last frame whose own level was
//! above `floor + off_db`. The first `warmup` seconds of a stream only learn the floor.
//!
//! Why smoothed: 25 ms frames of ordinary background noise scatter by ±1.5 dB (σ) with
//! dips of −10 dB and more. A floor that followed single frames down sat on those dips,
//! so plain noise then read +6 dB "above the floor" and a sound never ended (measured on
//! generated pink noise: two beeps 1.2 s apart merged into one event in 6 of 8 runs).

use super::INPUT_GAP_S;
use crate::core::event::{AudioSummary, Event, EventKind};
use crate::core::features::AudioFeatures;
use crate::core::settings::{check, in_range, Invalid};
use serde::{Deserialize, Serialize};

/// `[sound]`: `sound` events from level above a running noise floor, with hysteresis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SoundConfig {
    /// Emit `sound` events.
    pub enabled: bool,
    /// dB above the noise floor that starts a sound.
    pub on_db: f32,
    /// dB above the noise floor below which a sound may end.
    pub off_db: f32,
    /// Seconds below `off_db` before the sound ends (bridges gaps inside one sound).
    pub hangover: f64,
    /// Minimum sound length in seconds.
    pub min_duration: f64,
    /// Lowest noise floor assumed, in dBFS (digital silence is not a floor).
    pub floor_min_db: f32,
    /// Time constant in seconds with which the floor rises towards a louder background.
    pub floor_rise: f64,
    /// Seconds at the start of a stream that only learn the noise floor (no onsets), so
    /// an encoder's leading silence does not make the first noise look like a sound.
    pub warmup: f64,
}

impl Default for SoundConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            on_db: 10.0,
            off_db: 6.0,
            hangover: 0.75,
            min_duration: 0.02,
            floor_min_db: -80.0,
            floor_rise: 5.0,
            warmup: 0.5,
        }
    }
}

impl SoundConfig {
    /// Checks the keys of `[sound]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let snd = self;
        for (k, v) in [
            ("hangover", snd.hangover),
            ("min_duration", snd.min_duration),
            ("warmup", snd.warmup),
        ] {
            check(in_range(v, 0.0, 600.0), k, v, "seconds, 0 to 600")?;
        }
        check(
            snd.on_db.is_finite() && snd.on_db > 0.0,
            "on_db",
            snd.on_db,
            "dB > 0",
        )?;
        check(
            snd.off_db.is_finite() && snd.off_db >= 0.0 && snd.off_db <= snd.on_db,
            "off_db",
            snd.off_db,
            "dB, 0 ≤ off_db ≤ sound.on_db",
        )?;
        check(
            snd.floor_min_db.is_finite() && snd.floor_min_db < 0.0,
            "floor_min_db",
            snd.floor_min_db,
            "dBFS < 0",
        )?;
        check(
            snd.floor_rise.is_finite() && snd.floor_rise > 0.0,
            "floor_rise",
            snd.floor_rise,
            "seconds > 0",
        )
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
    /// The audio features' hop, seconds (the last seen).
    hop: f64,
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
            hop: 0.01,
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
        self.hop = hop;
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
        if let Some(e) = self.event_of(stream, hop) {
            out.push(e);
        }
        self.open = None;
    }

    /// The sound going on now, once long enough to be reported (`end`: its last loud frame
    /// so far), for its `start` message.
    pub fn opened(&self, stream: &str) -> Option<Event> {
        self.event_of(stream, self.hop)
    }

    fn event_of(&self, stream: &str, hop: f64) -> Option<Event> {
        let open = self.open.as_ref()?;
        let end = open.last_above + hop / 2.0;
        if end - open.start < self.cfg.min_duration {
            return None;
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
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};
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
            ext: Default::default(),
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
        use super::super::speech::{SpeechConfig, SpeechDetector};
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
}
