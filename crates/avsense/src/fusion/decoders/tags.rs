//! Audio tags over time: temporal smoothing and per-class hysteresis of the tagger's patch
//! scores, and the labels of `sound` events drawn from them.
//!
//! YAMNet scores a 0.96 s patch every 0.48 s, and single patches flicker (a phone ring
//! scored "Telephone" 0.48 in one patch and "Turkey" in the next when half of it is room
//! noise). Each class's score is smoothed over patches with an exponential moving average
//! (`smoothing` = weight of the newest patch), and a class is *on* from the patch where its
//! smoothed score reaches `on` until it falls below `off` (hysteresis, so a class hovering
//! at the threshold is not switched on and off every patch). A gap in the patch sequence
//! (a discontinuity in the audio) restarts the smoothing.
//!
//! A `sound` event is labelled with the classes that were on in the patches lying mostly
//! inside it (at least half of a patch; for a sound shorter than that, the patch that
//! overlaps it most), ranked by their mean smoothed score over those patches. When no class was on,
//! the event falls back to the classes with the highest mean raw score over those patches,
//! so a short or unusual sound still carries YAMNet's best guesses.
//!
//! Labels a person would act on: a class in [`NEVER_LABELS`] ("Silence": a `sound` event is
//! by definition not silent) never labels a sound, and a label after the first is kept only
//! when its score is at least [`TAIL_RATIO`] of the first's (so "Telephone 0.37" does not
//! drag a "Vehicle 0.06" along). Tails that score close to the first stay: YAMNet's own
//! confusions (a phone ring that is also "Turkey") are not filtered by score alone.

use crate::core::clock::Timestamp;
use crate::core::event::{Event, Label};
use crate::core::settings::{check, in_range, Invalid};
use crate::encode::audio::tagger::TagPatch;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// Labels attached to a `sound` event.
pub const SOUND_LABELS: usize = 3;
/// Lowest mean raw score for a class to label a sound in the fallback.
pub const SOUND_LABEL_MIN: f32 = 0.05;
/// Classes that never label a `sound` event.
pub const NEVER_LABELS: [&str; 1] = ["Silence"];
/// A label after the first is kept only at this fraction of the first's score or above.
pub const TAIL_RATIO: f32 = 0.5;
/// Seconds of patches kept to label sounds that end later.
const HISTORY_S: f64 = 30.0;

/// `[tagger]`: the audio tagger and how its scores become labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaggerConfig {
    /// `auto` (runs when fetched), `on` or `off`.
    pub mode: crate::core::settings::Toggle,
    /// Smoothed score at which a class switches on.
    pub on: f32,
    /// Smoothed score below which it switches off again (≤ `on`).
    pub off: f32,
    /// Weight of the newest patch in the moving average (1 = no smoothing).
    pub smoothing: f32,
}

impl Default for TaggerConfig {
    fn default() -> Self {
        Self {
            mode: crate::core::settings::Toggle::Auto,
            on: 0.25,
            off: 0.15,
            smoothing: 0.6,
        }
    }
}

impl TaggerConfig {
    /// Checks the keys of `[tagger]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        for (k, v) in [
            ("on", self.on),
            ("off", self.off),
            ("smoothing", self.smoothing),
        ] {
            check(
                in_range(f64::from(v), 0.0, 1.0),
                k,
                v,
                "a value from 0 to 1",
            )?;
        }
        check(self.off <= self.on, "off", self.off, "≤ tagger.on")?;
        check(
            self.smoothing != 0.0,
            "smoothing",
            "0",
            "> 0 (the weight of the newest patch; 1 = no smoothing)",
        )
    }
}

/// One patch with its smoothed scores and the classes on at it.
#[derive(Debug, Clone)]
pub struct TrackedPatch {
    /// The tagger's patch (raw scores, names, embedding).
    pub patch: TagPatch,
    /// Smoothed score per class.
    pub smoothed: Arc<Vec<f32>>,
    /// Ids of the classes on at this patch.
    pub active: Vec<usize>,
}

/// Smoothing and hysteresis over a stream's patches, and the recent history for labelling.
#[derive(Debug)]
pub struct TagTracker {
    cfg: TaggerConfig,
    smoothed: Vec<f32>,
    on: Vec<bool>,
    last_start: Option<Timestamp>,
    history: VecDeque<TrackedPatch>,
}

impl TagTracker {
    /// A tracker with the given settings.
    pub fn new(cfg: TaggerConfig) -> Self {
        Self {
            cfg,
            smoothed: Vec::new(),
            on: Vec::new(),
            last_start: None,
            history: VecDeque::new(),
        }
    }

    /// Takes the next patch (in time order).
    pub fn push(&mut self, p: &TagPatch) {
        let n = p.scores.len();
        let hop = (p.end.as_secs_f64() - p.start.as_secs_f64()) / 2.0;
        let contiguous = self.last_start.is_some_and(|s| {
            let d = p.start.as_secs_f64() - s.as_secs_f64();
            d > 0.0 && d <= hop * 1.5
        });
        if !contiguous || self.smoothed.len() != n {
            self.smoothed = p.scores.as_ref().clone();
            self.on = vec![false; n];
        } else {
            let a = self.cfg.smoothing.clamp(0.0, 1.0);
            for (s, &x) in self.smoothed.iter_mut().zip(p.scores.iter()) {
                *s = a * x + (1.0 - a) * *s;
            }
        }
        self.last_start = Some(p.start);
        let mut active = Vec::new();
        for (i, (&s, on)) in self.smoothed.iter().zip(self.on.iter_mut()).enumerate() {
            *on = if *on {
                s >= self.cfg.off
            } else {
                s >= self.cfg.on
            };
            if *on {
                active.push(i);
            }
        }
        self.history.push_back(TrackedPatch {
            patch: p.clone(),
            smoothed: Arc::new(self.smoothed.clone()),
            active,
        });
        let newest = p.end.as_secs_f64();
        while self
            .history
            .front()
            .is_some_and(|q| newest - q.patch.end.as_secs_f64() > HISTORY_S)
        {
            self.history.pop_front();
        }
    }

    /// The patches lying mostly (≥ half) inside `[start, end]`, or the most-overlapping
    /// one when none does.
    fn patches_over(&self, start: f64, end: f64) -> Vec<&TrackedPatch> {
        let overlap = |q: &TrackedPatch| {
            let (s, t) = (q.patch.start.as_secs_f64(), q.patch.end.as_secs_f64());
            if t > s {
                (t.min(end) - s.max(start)).max(0.0) / (t - s)
            } else {
                0.0
            }
        };
        let mut over: Vec<&TrackedPatch> =
            self.history.iter().filter(|q| overlap(q) >= 0.5).collect();
        if over.is_empty() {
            over.extend(
                self.history
                    .iter()
                    .filter(|q| overlap(q) > 0.0)
                    .max_by(|a, b| overlap(a).total_cmp(&overlap(b))),
            );
        }
        over
    }

    /// Mean raw scores of `patches_over` `[start, end]`; None when no patch overlaps.
    pub fn mean_scores(&self, start: f64, end: f64) -> Option<Vec<f32>> {
        let over = self.patches_over(start, end);
        let first = over.first()?;
        let mut mean = vec![0.0f32; first.patch.scores.len()];
        for q in &over {
            for (m, s) in mean.iter_mut().zip(q.patch.scores.iter()) {
                *m += s / over.len() as f32;
            }
        }
        Some(mean)
    }

    /// Labels `e` (see the module doc); leaves it unlabelled when no patch overlaps it.
    pub fn label(&self, e: &mut Event) {
        let over = self.patches_over(e.start, e.end);
        let Some(first) = over.first() else { return };
        let names = Arc::clone(&first.patch.names);
        let name = |i: usize| {
            names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class_{i}"))
        };
        // Classes on at some patch inside, by their mean smoothed score over those patches
        // (a class that spiked in one patch ranks below one that held throughout).
        let mut best: Vec<(usize, f32)> = Vec::new();
        for q in &over {
            for &i in &q.active {
                if !best.iter().any(|(c, _)| *c == i) {
                    let mean = over
                        .iter()
                        .map(|r| r.smoothed.get(i).copied().unwrap_or(0.0))
                        .sum::<f32>()
                        / over.len() as f32;
                    best.push((i, mean));
                }
            }
        }
        if best.is_empty() {
            // Fallback: the highest mean raw scores.
            let n = first.patch.scores.len();
            let mut mean = vec![0f32; n];
            for q in &over {
                for (m, s) in mean.iter_mut().zip(q.patch.scores.iter()) {
                    *m += s / over.len() as f32;
                }
            }
            best = (0..n)
                .filter(|&i| mean[i] >= SOUND_LABEL_MIN)
                .map(|i| (i, mean[i]))
                .collect();
        }
        best.retain(|(i, _)| !NEVER_LABELS.contains(&name(*i).as_str()));
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = best.first().map_or(0.0, |b| b.1);
        e.labels = best
            .into_iter()
            .take(SOUND_LABELS)
            .filter(|(_, score)| *score >= TAIL_RATIO * top)
            .map(|(i, score)| Label {
                name: name(i),
                score,
            })
            .collect();
        e.evidence.patches = Some(over.len() as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::Duration;
    use crate::core::event::EventKind;

    fn patch(k: u64, scores: Vec<f32>) -> TagPatch {
        let start = Timestamp(k * 480_000_000);
        TagPatch {
            start,
            end: start + Duration(975_000_000),
            scores: Arc::new(scores),
            names: Arc::new(vec!["A".into(), "B".into(), "C".into()]),
            embedding: Arc::new(Vec::new()),
        }
    }

    #[test]
    fn smoothing_and_hysteresis_keep_a_flickering_class_on_and_ignore_a_blip() {
        let cfg = TaggerConfig {
            smoothing: 0.5,
            ..Default::default()
        };
        let mut t = TagTracker::new(cfg);
        // A: 0.6, 0.1 (flicker), 0.6, 0.6, then 0; B: one blip of 0.4 among zeros.
        let a = [0.6, 0.1, 0.6, 0.6, 0.0, 0.0, 0.0];
        let b = [0.0, 0.0, 0.0, 0.0, 0.0, 0.4, 0.0];
        for k in 0..a.len() {
            t.push(&patch(k as u64, vec![a[k], b[k], 0.0]));
        }
        let on: Vec<Vec<usize>> = t.history.iter().map(|q| q.active.clone()).collect();
        // A smoothed: 0.6 (on), 0.35 (stays on: ≥ off 0.15, though its raw score fell to 0.1),
        // 0.475, 0.5375, 0.269 (still on), 0.134 (off). B's blip smoothes to 0.2 < on 0.25.
        let want: [&[usize]; 7] = [&[0], &[0], &[0], &[0], &[0], &[], &[]];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(on[k], w.to_vec(), "patch {k}");
        }
    }

    #[test]
    fn labels_prefer_classes_on_inside_the_event_and_fall_back_to_mean_scores() {
        let mut t = TagTracker::new(TaggerConfig::default());
        for k in 0..6 {
            let s = if (2..4).contains(&k) {
                vec![0.05, 0.7, 0.2]
            } else {
                vec![0.02, 0.01, 0.1]
            };
            t.push(&patch(k, s));
        }
        // Patches 2 and 3 (0.96–1.935 s, 1.44–2.415 s) lie inside; 1 and 4 less than half.
        let mut e = Event::new(EventKind::Sound, "s", 1.0, 2.4, 1.0);
        t.label(&mut e);
        assert_eq!(e.labels.first().map(|l| l.name.as_str()), Some("B"));
        assert_eq!(e.evidence.patches, Some(2));
        // A short sound overlapping only patch 5, where nothing is on (B has fallen to 0.10,
        // C at 0.11): fallback to its raw scores, where only C reaches SOUND_LABEL_MIN.
        let mut quiet = Event::new(EventKind::Sound, "s", 2.9, 3.375, 1.0);
        t.label(&mut quiet);
        assert_eq!(
            quiet
                .labels
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>(),
            vec!["C"]
        );
    }

    #[test]
    fn silence_never_labels_a_sound_and_weak_tails_are_dropped() {
        let mut t = TagTracker::new(TaggerConfig::default());
        let names = Arc::new(vec![
            "Silence".to_string(),
            "Telephone".into(),
            "Alarm".into(),
            "Vehicle".into(),
        ]);
        for k in 0..4 {
            let mut p = patch(k, vec![0.9, 0.6, 0.35, 0.27]);
            p.names = Arc::clone(&names);
            t.push(&p);
        }
        let mut e = Event::new(EventKind::Sound, "s", 0.0, 2.0, 1.0);
        t.label(&mut e);
        let got: Vec<&str> = e.labels.iter().map(|l| l.name.as_str()).collect();
        // Silence is on and the highest, but never a label; Vehicle (0.27 < 0.5 × 0.6) is a
        // weak tail; Alarm (0.35 ≥ 0.3) stays.
        assert_eq!(got, vec!["Telephone", "Alarm"]);
    }
}
