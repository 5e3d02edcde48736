//! The learned fusion strategies (`gnn`, `attention`, `concat`) in the running pipeline.
//!
//! Every aligned window becomes a scene graph ([`super::graph::GraphBuilder`]); the model
//! scores each (segment, track) pair, each segment's off-screen-ness and the window's event
//! class. Segment verdicts are kept for a bounded time; when a `sound` event closes, the
//! pair probabilities of the segments it overlaps are averaged per track (weighted by the
//! overlap; a track missing from a segment counts 0 there), and the best track at or above
//! the model's threshold is the source. Window classes drive `av_event` with onset/offset
//! hysteresis.
//!
//! Windows without an audio segment are not run through the model (nothing to associate;
//! their class is `background`), which keeps the cost near zero on silent stretches.

use super::batch::GraphBatch;
use super::graph::{GraphBuilder, GraphConfig};
use super::model::{LearnedModel, ModelSpec};
use super::ontology::Ontology;
use crate::align::Window;
use crate::event::{Event, EventKind, Label};
use candle_core::{Device, D};
use std::collections::VecDeque;
use std::sync::Arc;

/// The window-level audio-visual event classes, in the models' output order.
pub const EVENT_CLASSES: [&str; 5] = [
    "background",
    "speech_in_view",
    "speech_offscreen",
    "sound_in_view",
    "sound_offscreen",
];

/// A loaded model with its spec, shared by the streams of a pipeline.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The model.
    pub model: Arc<LearnedModel>,
    /// Its spec.
    pub spec: Arc<ModelSpec>,
    /// The device it runs on.
    pub device: Device,
}

/// One pair's verdict in one segment.
#[derive(Debug, Clone)]
struct PairVerdict {
    track: u64,
    prob: f32,
}

/// What the model said about one audio segment (a tagger patch).
#[derive(Debug, Clone)]
struct SegmentVerdict {
    start: f64,
    end: f64,
    offscreen: f32,
    pairs: Vec<PairVerdict>,
}

/// A learned model's aggregate verdict on a sound.
#[derive(Debug, Clone, PartialEq)]
pub struct SoundVerdict {
    /// Per track: mean association probability over the sound's segments.
    pub tracks: Vec<(u64, f32)>,
    /// Mean off-screen probability.
    pub offscreen: f32,
    /// Segments that overlapped the sound.
    pub segments: usize,
}

/// Onset/offset hysteresis over window classes.
#[derive(Debug, Clone)]
pub struct AvEventTracker {
    on: f32,
    off: f32,
    /// (class, start, end of the last window at or above `off`, sum of probs, windows, misses)
    active: Option<(usize, f64, f64, f32, u32, u32)>,
    /// Tracks the model made sources of sounds during the open event.
    objects: Vec<u64>,
}

impl AvEventTracker {
    /// Opens at `on`, holds while the class stays at or above `off`, closes after two
    /// windows below.
    pub fn new(on: f32, off: f32) -> Self {
        Self {
            on,
            off,
            active: None,
            objects: Vec::new(),
        }
    }

    fn close(&mut self, stream: &str, out: &mut Vec<Event>) {
        if let Some((c, s, e, sum, n, _)) = self.active.take() {
            let score = sum / n.max(1) as f32;
            let mut ev = Event::new(EventKind::AvEvent, stream, s, e, score);
            ev.labels.push(Label {
                name: EVENT_CLASSES.get(c).unwrap_or(&"unknown").to_string(),
                score,
            });
            // In-view classes name the tracks the model took for sources.
            if matches!(c, 1 | 3) {
                ev.objects = std::mem::take(&mut self.objects);
            }
            out.push(ev);
        }
        self.objects.clear();
    }

    /// One window `[start, end)` with its class probabilities and the tracks the model took
    /// for sound sources in it.
    pub fn push(
        &mut self,
        stream: &str,
        start: f64,
        end: f64,
        probs: &[f32],
        sources: &[u64],
        out: &mut Vec<Event>,
    ) {
        let best = probs
            .iter()
            .enumerate()
            .skip(1)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(c, p)| (c, *p));
        if let Some((c, s, e, sum, n, miss)) = self.active {
            let p = probs.get(c).copied().unwrap_or(0.0);
            let switch = best.is_some_and(|(b, pb)| b != c && pb >= self.on && pb > p);
            if p >= self.off && !switch {
                self.active = Some((c, s, end, sum + p, n + 1, 0));
                self.add_sources(sources);
                return;
            }
            if miss + 1 < 2 && !switch {
                self.active = Some((c, s, e, sum, n, miss + 1));
                return;
            }
            self.close(stream, out);
        }
        if let Some((c, p)) = best.filter(|(_, p)| *p >= self.on) {
            self.active = Some((c, start, end, p, 1, 0));
            self.add_sources(sources);
        }
    }

    fn add_sources(&mut self, sources: &[u64]) {
        for t in sources {
            if !self.objects.contains(t) {
                self.objects.push(*t);
            }
        }
    }

    /// Closes an open event at the end of the stream.
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.close(stream, out);
    }
}

/// Per-stream state of a learned strategy.
#[derive(Debug)]
pub struct LearnedFusion {
    loaded: Loaded,
    builder: GraphBuilder,
    verdicts: VecDeque<SegmentVerdict>,
    history: f64,
    events: AvEventTracker,
    /// Windows run through the model.
    pub windows_scored: u64,
    /// Tracks left out of graphs by the cap, summed over windows.
    pub capped_tracks: u64,
    /// Segments left out of graphs by the cap, summed over windows.
    pub capped_segments: u64,
    /// Model failures (the window is skipped and counted; the stream goes on).
    pub failures: u64,
}

impl LearnedFusion {
    /// A stream's state: graphs bounded by `graph`, verdicts kept `history` seconds.
    pub fn new(
        loaded: Loaded,
        graph: GraphConfig,
        ontology: Arc<Ontology>,
        history: f64,
        event_on: f32,
        event_off: f32,
    ) -> Self {
        Self {
            loaded,
            builder: GraphBuilder::new(graph, ontology),
            verdicts: VecDeque::new(),
            history,
            events: AvEventTracker::new(event_on, event_off),
            windows_scored: 0,
            capped_tracks: 0,
            capped_segments: 0,
            failures: 0,
        }
    }

    /// The strategy's name (`gnn`, …).
    pub fn name(&self) -> &'static str {
        self.loaded.spec.kind.name()
    }

    /// The association threshold.
    pub fn threshold(&self) -> f32 {
        self.loaded.spec.threshold
    }

    /// Builds `w`'s graph, scores it, keeps the segment verdicts and feeds `av_event`.
    pub fn push_window(&mut self, stream: &str, w: &Window, out: &mut Vec<Event>) {
        let g = self.builder.build(w);
        self.capped_tracks += u64::from(g.capped_tracks);
        self.capped_segments += u64::from(g.capped_segments);
        let (start, end) = (w.start.as_secs_f64(), w.end.as_secs_f64());
        let mut background = vec![0f32; EVENT_CLASSES.len()];
        background[0] = 1.0;
        if g.segments.is_empty() {
            self.events.push(stream, start, end, &background, &[], out);
            return;
        }
        let parts = g.parts();
        let scored = (|| -> candle_core::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
            let b = GraphBatch::new(&[&parts], &self.loaded.device)?;
            let o = self.loaded.model.forward(&b)?;
            let sig = |t: &candle_core::Tensor| -> candle_core::Result<Vec<f32>> {
                candle_nn::ops::sigmoid(t)?.to_vec1()
            };
            let ev = candle_nn::ops::softmax(&o.event, D::Minus1)?
                .flatten_all()?
                .to_vec1()?;
            Ok((sig(&o.association)?, sig(&o.offscreen)?, ev))
        })();
        let (assoc, off, ev) = match scored {
            Ok(v) => v,
            Err(e) => {
                self.failures += 1;
                tracing::warn!("{stream}: fusion model failed on window {}: {e}", w.index);
                return;
            }
        };
        self.windows_scored += 1;
        for (si, s_node) in g.segments.iter().enumerate() {
            let super::graph::NodeKind::Segment { start, end } = g.nodes[*s_node as usize].kind
            else {
                continue;
            };
            let pairs = g
                .cross
                .iter()
                .zip(&assoc)
                .filter(|((_, s, _), _)| s == s_node)
                .filter_map(|((_, _, t), p)| match g.nodes[*t as usize].kind {
                    super::graph::NodeKind::Track { track, .. } => {
                        Some(PairVerdict { track, prob: *p })
                    }
                    _ => None,
                })
                .collect();
            let v = SegmentVerdict {
                start,
                end,
                offscreen: off.get(si).copied().unwrap_or(0.0),
                pairs,
            };
            // A patch seen by an earlier (overlapping) window: the later window, which has
            // more temporal context, replaces it.
            match self
                .verdicts
                .iter_mut()
                .find(|x| (x.start - start).abs() < 1e-6)
            {
                Some(old) => *old = v,
                None => self.verdicts.push_back(v),
            }
        }
        while self
            .verdicts
            .front()
            .is_some_and(|v| end - v.end > self.history)
        {
            self.verdicts.pop_front();
        }
        let threshold = self.loaded.spec.threshold;
        let mut sources: Vec<u64> = Vec::new();
        for ((_, _, t), p) in g.cross.iter().zip(&assoc) {
            if let super::graph::NodeKind::Track { track, .. } = g.nodes[*t as usize].kind {
                if *p >= threshold && !sources.contains(&track) {
                    sources.push(track);
                }
            }
        }
        self.events.push(stream, start, end, &ev, &sources, out);
    }

    /// The model's verdict on a sound `[start, end]`: `None` when no scored segment overlaps
    /// it.
    pub fn verdict(&self, start: f64, end: f64) -> Option<SoundVerdict> {
        let mut wsum = 0.0f32;
        let mut off = 0.0f32;
        let mut tracks: Vec<(u64, f32)> = Vec::new();
        let mut n = 0;
        let overlapping: Vec<(&SegmentVerdict, f32)> = self
            .verdicts
            .iter()
            .filter_map(|v| {
                let ov = (v.end.min(end) - v.start.max(start)).max(0.0);
                (ov > 0.0).then(|| (v, (ov / (v.end - v.start).max(1e-9)) as f32))
            })
            .collect();
        for (v, w) in &overlapping {
            n += 1;
            wsum += w;
            off += w * v.offscreen;
            for p in &v.pairs {
                if !tracks.iter().any(|t| t.0 == p.track) {
                    tracks.push((p.track, 0.0));
                }
            }
        }
        if n == 0 || wsum <= 0.0 {
            return None;
        }
        for (track, score) in tracks.iter_mut() {
            let s: f32 = overlapping
                .iter()
                .map(|(v, w)| {
                    w * v
                        .pairs
                        .iter()
                        .find(|p| p.track == *track)
                        .map(|p| p.prob)
                        .unwrap_or(0.0)
                })
                .sum();
            *score = s / wsum;
        }
        tracks.sort_by(|a, b| b.1.total_cmp(&a.1));
        Some(SoundVerdict {
            tracks,
            offscreen: off / wsum,
            segments: n,
        })
    }

    /// Closes an open `av_event`.
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.events.finish(stream, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn av_events_open_hold_and_close_with_hysteresis() {
        let mut t = AvEventTracker::new(0.6, 0.4);
        let mut out = Vec::new();
        let p = |c: usize, v: f32| {
            let mut x = vec![0.0f32; 5];
            x[0] = 1.0 - v;
            x[c] = v;
            x
        };
        // Below `on`: nothing opens.
        t.push("s", 0.0, 1.0, &p(1, 0.5), &[], &mut out);
        assert!(t.active.is_none());
        t.push("s", 0.5, 1.5, &p(1, 0.7), &[4], &mut out); // opens at 0.5
        t.push("s", 1.0, 2.0, &p(1, 0.45), &[4, 9], &mut out); // holds (≥ off)
        t.push("s", 1.5, 2.5, &p(1, 0.1), &[7], &mut out); // one miss: still open
        assert!(out.is_empty());
        t.push("s", 2.0, 3.0, &p(1, 0.1), &[], &mut out); // second miss: closes
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.kind, EventKind::AvEvent);
        assert_eq!(e.labels[0].name, "speech_in_view");
        assert!(
            (e.start - 0.5).abs() < 1e-9 && (e.end - 2.0).abs() < 1e-9,
            "{e:?}"
        );
        // The sources of the windows it held (not of the missed one).
        assert_eq!(e.objects, vec![4, 9]);
        // A stronger other class switches at once; off-screen classes name no track.
        t.push("s", 3.0, 4.0, &p(2, 0.8), &[3], &mut out);
        t.push("s", 3.5, 4.5, &p(4, 0.9), &[], &mut out);
        t.finish("s", &mut out);
        let names: Vec<&str> = out.iter().map(|e| e.labels[0].name.as_str()).collect();
        assert_eq!(
            names,
            ["speech_in_view", "speech_offscreen", "sound_offscreen"]
        );
        assert!(out[1].objects.is_empty() && out[2].objects.is_empty());
    }
}
