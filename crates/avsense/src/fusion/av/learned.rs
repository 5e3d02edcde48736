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

use super::graph::{GraphBuilder, GraphConfig};
use super::ontology::Ontology;
use crate::core::event::{Event, EventKind, Label};
use crate::core::window::Window;
use avsense_nn::models::fusion::batch::GraphBatch;
use candle_core::D;
use std::collections::VecDeque;
use std::sync::Arc;

pub use avsense_nn::models::fusion::EVENT_CLASSES;

pub use avsense_nn::models::fusion::Loaded;

/// One pair's verdict in one segment.
#[derive(Debug, Clone)]
struct PairVerdict {
    track: u64,
    prob: f32,
    /// Probability drop with each of the four cross-edge features zeroed.
    drop: [f32; 4],
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
    /// Per track: mean association probability over the sound's segments, and the mean
    /// probability drop with each cross-edge feature zeroed.
    pub tracks: Vec<(u64, f32, [f32; 4])>,
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
    /// A class one window has called (class, window start, prob, sources): it opens (or
    /// takes over) when the next window calls it too.
    pending: Option<(usize, f64, f32, Vec<u64>)>,
}

impl AvEventTracker {
    /// Opens when two consecutive windows call a class at `on` or above (from the first of
    /// them), holds while the class stays at or above `off`, closes after two windows below;
    /// another class confirmed the same way and stronger takes over at once.
    pub fn new(on: f32, off: f32) -> Self {
        Self {
            on,
            off,
            active: None,
            objects: Vec::new(),
            pending: None,
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
        let cand = best.filter(|(_, p)| *p >= self.on);
        let confirmed = match (cand, self.pending.take()) {
            (Some((c, _)), Some(pend)) if pend.0 == c => Some(pend),
            _ => None,
        };
        let mut next = match confirmed {
            None => cand.map(|(c, p)| (c, start, p, sources.to_vec())),
            Some(_) => None,
        };
        if let Some((c, s, e, sum, n, miss)) = self.active {
            let p = probs.get(c).copied().unwrap_or(0.0);
            let switch = confirmed.as_ref().is_some_and(|pd| pd.0 != c)
                && cand.is_some_and(|(_, pb)| pb > p);
            if !switch {
                // The open class never waits as pending.
                if next.as_ref().is_some_and(|pd| pd.0 == c) {
                    next = None;
                }
                if p >= self.off {
                    self.active = Some((c, s, end, sum + p, n + 1, 0));
                    self.add_sources(sources);
                } else if miss + 1 < 2 {
                    self.active = Some((c, s, e, sum, n, miss + 1));
                } else {
                    self.close(stream, out);
                }
                self.pending = next;
                return;
            }
            self.close(stream, out);
        }
        if let Some((c, s0, p0, src0)) = confirmed {
            let p = probs.get(c).copied().unwrap_or(0.0);
            self.active = Some((c, s0, end, p0 + p, 2, 0));
            self.add_sources(&src0);
            self.add_sources(sources);
        }
        self.pending = next;
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
    /// Time spent building and scoring graphs.
    pub busy: std::time::Duration,
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
            busy: std::time::Duration::ZERO,
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
        let t0 = std::time::Instant::now();
        self.score_window(stream, w, out);
        self.busy += t0.elapsed();
    }

    fn score_window(&mut self, stream: &str, w: &Window, out: &mut Vec<Event>) {
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
        // The graph, and four copies with one cross-edge feature zeroed each (occlusion: which
        // features mattered), scored in one batch.
        let mut copies = vec![parts.clone()];
        for k in 0..4 {
            let mut c = parts.clone();
            for f in c.edge_attr.iter_mut().filter(|f| f[4] == 1.0) {
                f[k] = 0.0;
            }
            copies.push(c);
        }
        let n_cross = parts.cross.len();
        let n_seg = parts.segments.len();
        let scored = (|| -> candle_core::Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
            let refs: Vec<&avsense_nn::models::fusion::batch::GraphParts> = copies.iter().collect();
            let b = GraphBatch::new(&refs, &self.loaded.device)?;
            let o = self.loaded.model.forward(&b)?;
            let sig = |t: &candle_core::Tensor| -> candle_core::Result<Vec<f32>> {
                candle_nn::ops::sigmoid(t)?.to_vec1()
            };
            let ev = candle_nn::ops::softmax(&o.event.get(0)?, D::Minus1)?.to_vec1()?;
            Ok((sig(&o.association)?, sig(&o.offscreen)?, ev))
        })();
        let (assoc_all, off_all, ev) = match scored {
            Ok(v) => v,
            Err(e) => {
                self.failures += 1;
                tracing::warn!("{stream}: fusion model failed on window {}: {e}", w.index);
                return;
            }
        };
        self.windows_scored += 1;
        let assoc = &assoc_all[..n_cross.min(assoc_all.len())];
        let off = &off_all[..n_seg.min(off_all.len())];
        let drop = |pair: usize| -> [f32; 4] {
            let mut d = [0f32; 4];
            for (k, x) in d.iter_mut().enumerate() {
                let occluded = assoc_all
                    .get((k + 1) * n_cross + pair)
                    .copied()
                    .unwrap_or(assoc[pair]);
                *x = assoc[pair] - occluded;
            }
            d
        };
        for (si, s_node) in g.segments.iter().enumerate() {
            let super::graph::NodeKind::Segment { start, end } = g.nodes[*s_node as usize].kind
            else {
                continue;
            };
            let pairs = g
                .cross
                .iter()
                .zip(assoc)
                .enumerate()
                .filter(|(_, ((_, s, _), _))| s == s_node)
                .filter_map(|(k, ((_, _, t), p))| match g.nodes[*t as usize].kind {
                    super::graph::NodeKind::Track { track, .. } => Some(PairVerdict {
                        track,
                        prob: *p,
                        drop: drop(k),
                    }),
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
        for ((_, _, t), p) in g.cross.iter().zip(assoc) {
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
        let mut tracks: Vec<(u64, f32, [f32; 4])> = Vec::new();
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
                    tracks.push((p.track, 0.0, [0.0; 4]));
                }
            }
        }
        if n == 0 || wsum <= 0.0 {
            return None;
        }
        for (track, score, drop) in tracks.iter_mut() {
            for (v, w) in &overlapping {
                if let Some(p) = v.pairs.iter().find(|p| p.track == *track) {
                    *score += w * p.prob / wsum;
                    for (d, x) in drop.iter_mut().zip(p.drop) {
                        *d += w * x / wsum;
                    }
                }
            }
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
    use avsense_nn::models::fusion::{LearnedModel, ModelSpec};
    use candle_core::Device;

    fn fusion() -> LearnedFusion {
        let dev = Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let spec = ModelSpec {
            kind: avsense_nn::models::fusion::LearnedKind::Gnn,
            net: avsense_nn::models::fusion::FusionNetConfig::default(),
            event_names: EVENT_CLASSES.iter().map(|s| s.to_string()).collect(),
            threshold: 0.5,
            training: serde_json::Value::Null,
        };
        let model = LearnedModel::new(
            candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
            spec.kind,
            spec.net,
        )
        .unwrap();
        let names = vec!["Speech".to_string()];
        let ontology = Arc::new(
            Ontology::parse(
                "[[map]]\ncoco = [\"person\"]\naudioset = [\"Speech\"]\n",
                std::path::Path::new("o.toml"),
                &names,
            )
            .unwrap(),
        );
        LearnedFusion::new(
            Loaded {
                model: Arc::new(model),
                spec: Arc::new(spec),
                device: dev,
            },
            GraphConfig::default(),
            ontology,
            30.0,
            0.6,
            0.4,
        )
    }

    /// A sound's verdict averages its segments weighted by overlap; a track missing from a
    /// segment counts 0 there; segments outside the sound do not count.
    #[test]
    fn sound_verdicts_weight_segments_by_overlap() {
        let mut f = fusion();
        let pair = |track, prob, d: f32| PairVerdict {
            track,
            prob,
            drop: [d, 0.0, 0.0, 0.0],
        };
        f.verdicts.push_back(SegmentVerdict {
            start: 0.0,
            end: 1.0,
            offscreen: 0.2,
            pairs: vec![pair(1, 0.9, 0.5), pair(2, 0.4, 0.1)],
        });
        f.verdicts.push_back(SegmentVerdict {
            start: 1.0,
            end: 2.0,
            offscreen: 0.6,
            pairs: vec![pair(1, 0.5, 0.3)],
        });
        f.verdicts.push_back(SegmentVerdict {
            start: 5.0,
            end: 6.0,
            offscreen: 1.0,
            pairs: vec![pair(3, 1.0, 1.0)],
        });
        // The sound covers all of the first segment and half of the second: weights 1, ½.
        let v = f.verdict(0.0, 1.5).unwrap();
        assert_eq!(v.segments, 2);
        let w = 1.5f32;
        assert!((v.offscreen - (0.2 + 0.5 * 0.6) / w).abs() < 1e-6);
        let t1 = v.tracks.iter().find(|t| t.0 == 1).unwrap();
        assert!((t1.1 - (0.9 + 0.5 * 0.5) / w).abs() < 1e-6, "{t1:?}");
        assert!((t1.2[0] - (0.5 + 0.5 * 0.3) / w).abs() < 1e-6, "{t1:?}");
        let t2 = v.tracks.iter().find(|t| t.0 == 2).unwrap();
        assert!((t2.1 - 0.4 / w).abs() < 1e-6, "{t2:?}");
        assert_eq!(v.tracks[0].0, 1, "best first");
        assert!(v.tracks.iter().all(|t| t.0 != 3));
        assert!(f.verdict(10.0, 11.0).is_none());
    }

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
        // Below `on`: nothing opens; one window at `on` is only pending.
        t.push("s", 0.0, 1.0, &p(1, 0.5), &[], &mut out);
        t.push("s", 0.5, 1.5, &p(2, 0.7), &[], &mut out);
        t.push("s", 1.0, 2.0, &p(1, 0.7), &[4], &mut out); // another class: pending again
        assert!(t.active.is_none());
        t.push("s", 1.5, 2.5, &p(1, 0.65), &[9], &mut out); // confirmed: open from 1.0
        t.push("s", 2.0, 3.0, &p(1, 0.45), &[4], &mut out); // holds (≥ off)
        t.push("s", 2.5, 3.5, &p(1, 0.1), &[7], &mut out); // one miss: still open
        assert!(out.is_empty());
        t.push("s", 3.0, 4.0, &p(1, 0.1), &[], &mut out); // second miss: closes
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.kind, EventKind::AvEvent);
        assert_eq!(e.labels[0].name, "speech_in_view");
        assert!(
            (e.start - 1.0).abs() < 1e-9 && (e.end - 3.0).abs() < 1e-9,
            "{e:?}"
        );
        // The sources of the windows it held (not of the missed one).
        assert_eq!(e.objects, vec![4, 9]);
        // A stronger other class confirmed by two windows takes over; off-screen classes
        // name no track.
        t.push("s", 4.0, 5.0, &p(2, 0.8), &[3], &mut out);
        t.push("s", 4.5, 5.5, &p(2, 0.8), &[3], &mut out);
        t.push("s", 5.0, 6.0, &p(4, 0.9), &[], &mut out); // pending: class 2 holds
        assert_eq!(t.active.as_ref().map(|a| a.0), Some(2));
        t.push("s", 5.5, 6.5, &p(4, 0.9), &[], &mut out); // confirmed: switch
        t.finish("s", &mut out);
        let names: Vec<&str> = out.iter().map(|e| e.labels[0].name.as_str()).collect();
        assert_eq!(
            names,
            ["speech_in_view", "speech_offscreen", "sound_offscreen"]
        );
        assert!((out[2].start - 5.0).abs() < 1e-9, "{:?}", out[2]);
        assert!(out[1].objects.is_empty() && out[2].objects.is_empty());
    }
}
