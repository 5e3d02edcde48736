//! A ByteTrack-style multi-object tracker.
//!
//! Per frame, detections are split into *high* (score ≥ `high_score`) and *low*
//! (`low_score` ≤ score < `high_score`) confidence:
//! 1. tracks (confirmed and recently lost) are matched to high detections by IoU with their
//!    predicted box (constant-velocity), same class only;
//! 2. tracks still unmatched and not lost are matched to the low detections (occluded or
//!    blurred objects keep their id instead of being dropped);
//! 3. unmatched high detections above `new_track_score` start tentative tracks, confirmed
//!    after `min_hits` consecutive matches (a one-frame false positive never gets an id);
//! 4. unmatched confirmed tracks become lost; a track lost for longer than `lost_timeout`
//!    seconds ends.
//!
//! Matching is greedy on IoU (highest pair first) rather than Hungarian: with the few
//! objects of a surveillance scene the two agree almost always, and greedy needs no solver.
//! Ids are stable for the life of a track and never reused.

use crate::core::settings::{check, in_range, Invalid};
use serde::{Deserialize, Serialize};

/// A detection in source-frame pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Class index (COCO-80 for the detectors here).
    pub class_id: usize,
    /// Score in [0, 1].
    pub score: f32,
    /// Box `[x0, y0, x1, y1]` in pixels.
    pub bbox: [f32; 4],
    /// Optional appearance embedding (pooled backbone features inside the box).
    pub embedding: Option<Vec<f32>>,
}

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Detections at or above this score are "high".
    pub high_score: f32,
    /// Detections below this score are ignored.
    pub low_score: f32,
    /// A new track needs a detection at least this confident.
    pub new_track_score: f32,
    /// IoU needed to match a high detection.
    pub match_iou: f32,
    /// IoU needed to match a low detection (second pass).
    pub low_match_iou: f32,
    /// Consecutive matches before a track is confirmed.
    pub min_hits: u32,
    /// Seconds a confirmed track may go unmatched before it ends.
    pub lost_timeout: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score: 0.5,
            low_score: 0.1,
            new_track_score: 0.6,
            match_iou: 0.3,
            low_match_iou: 0.5,
            min_hits: 3,
            lost_timeout: 1.5,
        }
    }
}

impl TrackerConfig {
    /// Checks the keys of `[tracker]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let t = self;
        for (k, v) in [
            ("high_score", t.high_score),
            ("low_score", t.low_score),
            ("new_track_score", t.new_track_score),
            ("match_iou", t.match_iou),
            ("low_match_iou", t.low_match_iou),
        ] {
            check(
                in_range(f64::from(v), 0.0, 1.0),
                k,
                v,
                "a value from 0 to 1",
            )?;
        }
        check(
            t.low_score <= t.high_score,
            "low_score",
            t.low_score,
            "≤ tracker.high_score",
        )?;
        check(
            (1..=100).contains(&t.min_hits),
            "min_hits",
            t.min_hits,
            "1 to 100 consecutive detections",
        )?;
        check(
            in_range(t.lost_timeout, 0.0, 600.0),
            "lost_timeout",
            t.lost_timeout,
            "seconds, 0 to 600",
        )
    }
}

/// A track as reported for one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedObject {
    /// Stable id.
    pub track_id: u64,
    /// Class index.
    pub class_id: usize,
    /// Score of the detection matched in this frame.
    pub score: f32,
    /// Box of the detection matched in this frame.
    pub bbox: [f32; 4],
    /// Embedding of that detection, when the detector gives one.
    pub embedding: Option<Vec<f32>>,
}

/// Summary of a track that has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSummary {
    /// Stable id.
    pub track_id: u64,
    /// Class index.
    pub class_id: usize,
    /// First time it was detected, seconds.
    pub first_seen: f64,
    /// Last time it was detected, seconds.
    pub last_seen: f64,
    /// Highest detection score.
    pub max_score: f32,
    /// Last box.
    pub last_bbox: [f32; 4],
    /// Frames with a matched detection.
    pub hits: u32,
}

/// A change in the set of tracks.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    /// A track was confirmed (its first detection was at `first_seen`).
    Appeared(TrackSummary),
    /// A track ended (lost for longer than the timeout, or end of stream).
    Left(TrackSummary),
}

#[derive(Debug, Clone)]
struct Track {
    id: u64,
    class_id: usize,
    bbox: [f32; 4],
    velocity: [f32; 4],
    last_t: f64,
    first_seen: f64,
    last_seen: f64,
    max_score: f32,
    hits: u32,
    streak: u32,
    confirmed: bool,
}

impl Track {
    fn predicted(&self, t: f64) -> [f32; 4] {
        let dt = (t - self.last_t) as f32;
        let mut b = self.bbox;
        for (x, v) in b.iter_mut().zip(self.velocity) {
            *x += v * dt;
        }
        b
    }

    fn update(&mut self, d: &Detection, t: f64) {
        let dt = (t - self.last_t) as f32;
        if dt > 1e-6 {
            for i in 0..4 {
                let v = (d.bbox[i] - self.bbox[i]) / dt;
                // Smoothed velocity (alpha 0.5): detections jitter by a few pixels.
                self.velocity[i] = 0.5 * self.velocity[i] + 0.5 * v;
            }
        }
        self.bbox = d.bbox;
        self.last_t = t;
        self.last_seen = t;
        self.max_score = self.max_score.max(d.score);
        self.hits += 1;
        self.streak += 1;
    }

    fn summary(&self) -> TrackSummary {
        TrackSummary {
            track_id: self.id,
            class_id: self.class_id,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            max_score: self.max_score,
            last_bbox: self.bbox,
            hits: self.hits,
        }
    }
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// The tracker of one stream (see the module doc).
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// A tracker with the given settings.
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Greedy IoU matching of `tracks` (indices) to `dets` (indices), same class only.
    fn greedy(
        &self,
        tracks: &[usize],
        dets: &[(usize, &Detection)],
        t: f64,
        min_iou: f32,
    ) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for &ti in tracks {
            let tr = &self.tracks[ti];
            let pred = tr.predicted(t);
            for (k, (_, d)) in dets.iter().enumerate() {
                if d.class_id != tr.class_id {
                    continue;
                }
                let v = iou(&pred, &d.bbox).max(iou(&tr.bbox, &d.bbox));
                if v >= min_iou {
                    pairs.push((v, ti, k));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut used_t, mut used_d) = (Vec::new(), Vec::new());
        let mut out = Vec::new();
        for (_, ti, k) in pairs {
            if used_t.contains(&ti) || used_d.contains(&k) {
                continue;
            }
            used_t.push(ti);
            used_d.push(k);
            out.push((ti, k));
        }
        out
    }

    /// Takes the detections of the frame at `t` seconds; returns the confirmed tracks seen in
    /// this frame, and appends appear/leave changes to `events`.
    pub fn update(
        &mut self,
        dets: &[Detection],
        t: f64,
        events: &mut Vec<TrackEvent>,
    ) -> Vec<TrackedObject> {
        let high: Vec<(usize, &Detection)> = dets
            .iter()
            .enumerate()
            .filter(|(_, d)| d.score >= self.cfg.high_score)
            .collect();
        let low: Vec<(usize, &Detection)> = dets
            .iter()
            .enumerate()
            .filter(|(_, d)| d.score >= self.cfg.low_score && d.score < self.cfg.high_score)
            .collect();
        let all: Vec<usize> = (0..self.tracks.len()).collect();
        let mut matched_track = vec![false; self.tracks.len()];
        let mut matched: Vec<(usize, usize)> = Vec::new(); // (track, detection index in dets)

        for (ti, k) in self.greedy(&all, &high, t, self.cfg.match_iou) {
            matched_track[ti] = true;
            matched.push((ti, high[k].0));
        }
        let high_used: Vec<usize> = matched.iter().map(|(_, d)| *d).collect();
        // Second pass: tracks seen in the previous frame(s), not yet matched, vs low detections.
        let remaining: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&ti| !matched_track[ti] && self.tracks[ti].streak > 0)
            .collect();
        for (ti, k) in self.greedy(&remaining, &low, t, self.cfg.low_match_iou) {
            matched_track[ti] = true;
            matched.push((ti, low[k].0));
        }

        let mut out = Vec::new();
        for &(ti, di) in &matched {
            let d = &dets[di];
            let tr = &mut self.tracks[ti];
            tr.update(d, t);
            if !tr.confirmed && tr.streak >= self.cfg.min_hits {
                tr.confirmed = true;
                events.push(TrackEvent::Appeared(tr.summary()));
            }
            if tr.confirmed {
                out.push(TrackedObject {
                    track_id: tr.id,
                    class_id: tr.class_id,
                    score: d.score,
                    bbox: d.bbox,
                    embedding: d.embedding.clone(),
                });
            }
        }
        // Unmatched tracks: tentative ones die, confirmed ones are lost until the timeout.
        let timeout = self.cfg.lost_timeout;
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (ti, mut tr) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if matched_track[ti] {
                keep.push(tr);
                continue;
            }
            tr.streak = 0;
            if !tr.confirmed {
                continue;
            }
            if t - tr.last_seen > timeout {
                events.push(TrackEvent::Left(tr.summary()));
            } else {
                keep.push(tr);
            }
        }
        self.tracks = keep;
        // New tentative tracks from unmatched confident detections.
        for (di, d) in high {
            if high_used.contains(&di) || d.score < self.cfg.new_track_score {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut tr = Track {
                id,
                class_id: d.class_id,
                bbox: d.bbox,
                velocity: [0.0; 4],
                last_t: t,
                first_seen: t,
                last_seen: t,
                max_score: d.score,
                hits: 1,
                streak: 1,
                confirmed: self.cfg.min_hits <= 1,
            };
            tr.last_t = t;
            if tr.confirmed {
                events.push(TrackEvent::Appeared(tr.summary()));
                out.push(TrackedObject {
                    track_id: id,
                    class_id: d.class_id,
                    score: d.score,
                    bbox: d.bbox,
                    embedding: d.embedding.clone(),
                });
            }
            self.tracks.push(tr);
        }
        out
    }

    /// Ends every confirmed track (end of stream).
    pub fn finish(&mut self, events: &mut Vec<TrackEvent>) {
        for tr in self.tracks.drain(..) {
            if tr.confirmed {
                events.push(TrackEvent::Left(tr.summary()));
            }
        }
    }

    /// Whether every track is confirmed and was matched by the last detections: nothing
    /// waits for more detections to be confirmed, dropped or timed out.
    pub fn settled(&self) -> bool {
        self.tracks.iter().all(|t| t.confirmed && t.streak > 0)
    }

    /// Marks every confirmed, matched track as still seen at `t` without new detections
    /// (the motion gate held the detector back: nothing in view changed).
    pub fn hold(&mut self, t: f64) {
        for tr in self
            .tracks
            .iter_mut()
            .filter(|t| t.confirmed && t.streak > 0)
        {
            tr.last_seen = tr.last_seen.max(t);
        }
    }

    /// Tracks alive now (confirmed or tentative).
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track is alive.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: usize, score: f32, x: f32) -> Detection {
        Detection {
            class_id,
            score,
            bbox: [x, 10.0, x + 40.0, 90.0],
            embedding: None,
        }
    }

    #[test]
    fn a_moving_object_keeps_one_id_through_a_low_score_dip() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ev = Vec::new();
        let mut ids = Vec::new();
        for i in 0..30 {
            let t = i as f64 * 0.1;
            // Moves 5 px per frame; frames 10–14 are blurred (score 0.3: a "low" detection).
            let s = if (10..15).contains(&i) { 0.3 } else { 0.9 };
            for o in tr.update(&[det(0, s, 5.0 * i as f32)], t, &mut ev) {
                ids.push(o.track_id);
            }
        }
        tr.finish(&mut ev);
        ids.dedup();
        assert_eq!(ids, vec![1], "one id for the whole visit");
        assert!(matches!(ev[0], TrackEvent::Appeared(ref s) if s.first_seen == 0.0));
        match &ev[1] {
            TrackEvent::Left(s) => {
                assert!(s.hits == 30 && (s.last_seen - 2.9).abs() < 1e-9 && s.max_score == 0.9)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_frame_false_positives_never_get_an_id() {
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ev = Vec::new();
        let out = tr.update(&[det(0, 0.9, 0.0)], 0.0, &mut ev);
        assert!(out.is_empty());
        tr.update(&[], 0.1, &mut ev);
        tr.update(&[], 0.2, &mut ev);
        tr.finish(&mut ev);
        assert!(ev.is_empty() && tr.is_empty());
    }

    #[test]
    fn a_lost_track_ends_after_the_timeout_and_ids_are_not_reused() {
        let cfg = TrackerConfig {
            lost_timeout: 0.5,
            ..TrackerConfig::default()
        };
        let mut tr = Tracker::new(cfg);
        let mut ev = Vec::new();
        for i in 0..5 {
            tr.update(&[det(0, 0.9, 0.0)], i as f64 * 0.1, &mut ev);
        }
        for i in 5..12 {
            tr.update(&[], i as f64 * 0.1, &mut ev);
        }
        assert!(
            matches!(ev.last(), Some(TrackEvent::Left(s)) if s.track_id == 1 && (s.last_seen - 0.4).abs() < 1e-9)
        );
        let mut last = Vec::new();
        for i in 12..16 {
            last = tr.update(&[det(0, 0.9, 0.0)], i as f64 * 0.1, &mut ev);
        }
        assert_eq!(last[0].track_id, 2);
    }

    #[test]
    fn classes_do_not_swap_ids_and_iou_is_right() {
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 15.0, 10.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut ev = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..6 {
            for o in tr.update(
                &[det(0, 0.9, 0.0), det(2, 0.9, 1.0)],
                i as f64 * 0.1,
                &mut ev,
            ) {
                seen.entry(o.class_id)
                    .or_insert_with(Vec::new)
                    .push(o.track_id);
            }
        }
        assert!(seen[&0].iter().all(|&id| id == seen[&0][0]));
        assert!(seen[&2].iter().all(|&id| id == seen[&2][0]));
        assert_ne!(seen[&0][0], seen[&2][0]);
    }
}
