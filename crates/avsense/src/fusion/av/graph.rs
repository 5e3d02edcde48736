//! The scene graph of one aligned window, with the previous `context` windows as temporal
//! context — the input of the fusion network ([`avsense_nn::models::fusion::FusionNet`]).
//!
//! Nodes (features: [`NODE_DIM`], layout in [`node_features`]):
//! * one per object track visible in the window (class, mean box, presence, motion inside
//!   the box, detector score), at most `max_tracks` (the most visible; the rest counted);
//! * one per audio segment — a tagger patch lying mostly inside the window (level, speech
//!   probability, top tag score), at most `max_segments`;
//! * one scene node per modality.
//!
//! Edges (features: [`EDGE_DIM`] = compatibility, co-presence, correlation, offset, and
//! one-hot cross / temporal / scene / self):
//! * cross-modal, every segment ↔ every track, with the same evidence the `rules` strategy
//!   uses ([`super::EdgeFeatures`]);
//! * temporal, from the same track / the same scene node in each of the previous `context`
//!   windows to this window's (offset = how many seconds back);
//! * scene node ↔ the nodes of its modality; a self-loop on every node.

use super::ontology::Ontology;
use crate::core::window::Window;
use crate::encode::audio::speech::SpeechProbs;
use crate::encode::audio::tagger::TagPatches;
use crate::encode::video::motion::MotionFeatures;
use crate::encode::video::objects::Tracks;
use std::collections::VecDeque;
use std::sync::Arc;

pub use avsense_nn::models::fusion::{EDGE_DIM, NODE_DIM};

/// Bounds of the graph.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphConfig {
    /// Previous windows kept as temporal context (K).
    pub context: usize,
    /// Most track nodes per window.
    pub max_tracks: usize,
    /// Most audio segment nodes per window.
    pub max_segments: usize,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            context: 2,
            max_tracks: 16,
            max_segments: 8,
        }
    }
}

/// What a node stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// An object track.
    Track {
        /// Track id.
        track: u64,
        /// COCO class.
        class: usize,
    },
    /// An audio segment (tagger patch) `[start, end]` seconds.
    Segment {
        /// Start.
        start: f64,
        /// End.
        end: f64,
    },
    /// The video scene.
    VideoScene,
    /// The audio scene.
    AudioScene,
}

/// One node: which window it belongs to (0: the current one, k: k windows back), its kind
/// and its features.
#[derive(Debug, Clone)]
pub struct Node {
    /// Windows back (0 = current).
    pub back: usize,
    /// What it stands for.
    pub kind: NodeKind,
    /// Features.
    pub x: [f32; NODE_DIM],
}

/// A built graph.
#[derive(Debug, Clone, Default)]
pub struct SceneGraph {
    /// The window's index.
    pub window: u64,
    /// Nodes: the current window's first, then the context windows'.
    pub nodes: Vec<Node>,
    /// Edges `(src, dst)`.
    pub edges: Vec<(u32, u32)>,
    /// Edge features, one row per edge.
    pub edge_attr: Vec<[f32; EDGE_DIM]>,
    /// Cross-modal edges to score: (edge index of segment → track, segment node, track node).
    pub cross: Vec<(u32, u32, u32)>,
    /// The current window's segment nodes.
    pub segments: Vec<u32>,
    /// Tracks left out by `max_tracks` in this window.
    pub capped_tracks: u32,
    /// Segments left out by `max_segments` in this window.
    pub capped_segments: u32,
}

impl SceneGraph {
    /// The graph as a fusion model's input.
    pub fn parts(&self) -> avsense_nn::models::fusion::batch::GraphParts {
        let scene = |k: NodeKind| {
            self.nodes
                .iter()
                .position(|n| n.back == 0 && n.kind == k)
                .unwrap_or(0) as u32
        };
        avsense_nn::models::fusion::batch::GraphParts {
            x: self.nodes.iter().map(|n| n.x).collect(),
            edges: self.edges.clone(),
            edge_attr: self.edge_attr.clone(),
            cross: self.cross.clone(),
            segments: self.segments.clone(),
            scenes: (scene(NodeKind::VideoScene), scene(NodeKind::AudioScene)),
        }
    }

    fn edge(&mut self, s: u32, d: u32, f: [f32; EDGE_DIM]) -> u32 {
        self.edges.push((s, d));
        self.edge_attr.push(f);
        (self.edges.len() - 1) as u32
    }
}

/// Builds one graph per window, remembering the last `context` windows' nodes.
#[derive(Debug)]
pub struct GraphBuilder {
    cfg: GraphConfig,
    ontology: Arc<Ontology>,
    /// Nodes of past windows (newest first) and their window start (s).
    past: VecDeque<(f64, Vec<Node>)>,
}

struct TrackAcc {
    track: u64,
    class: usize,
    frames: usize,
    bbox: [f32; 4],
    score: f32,
    /// Per window frame: motion inside the box (None: not visible).
    motion: Vec<Option<f32>>,
}

impl GraphBuilder {
    /// A builder with the given bounds and ontology map.
    pub fn new(cfg: GraphConfig, ontology: Arc<Ontology>) -> Self {
        Self {
            cfg,
            ontology,
            past: VecDeque::new(),
        }
    }

    /// The graph of window `w` (and its context).
    pub fn build(&mut self, w: &Window) -> SceneGraph {
        let start = w.start.as_secs_f64();
        let end = w.end.as_secs_f64();
        let mut g = SceneGraph {
            window: w.index,
            ..SceneGraph::default()
        };
        let frame_t: Vec<f64> = w.vision.iter().map(|v| v.pts.as_secs_f64()).collect();

        // Tracks.
        let mut tracks: Vec<TrackAcc> = Vec::new();
        for (k, v) in w.vision.iter().enumerate() {
            for o in Tracks::objects_of(v) {
                let i = match tracks.iter().position(|t| t.track == o.track_id) {
                    Some(i) => i,
                    None => {
                        tracks.push(TrackAcc {
                            track: o.track_id,
                            class: o.class_id,
                            frames: 0,
                            bbox: [0.0; 4],
                            score: 0.0,
                            motion: vec![None; w.vision.len()],
                        });
                        tracks.len() - 1
                    }
                };
                let t = &mut tracks[i];
                t.frames += 1;
                for (b, x) in t.bbox.iter_mut().zip(o.bbox) {
                    *b += x;
                }
                t.score = t.score.max(o.score);
                t.motion[k] = Some(
                    v.get::<MotionFeatures>()
                        .map(|m| super::motion_in_box(m, o.bbox))
                        .unwrap_or(0.0),
                );
            }
        }
        tracks.sort_by(|a, b| b.frames.cmp(&a.frames).then(a.track.cmp(&b.track)));
        if tracks.len() > self.cfg.max_tracks {
            g.capped_tracks = (tracks.len() - self.cfg.max_tracks) as u32;
            tracks.truncate(self.cfg.max_tracks);
        }

        // Audio: level per frame, speech chunks, patches mostly inside the window.
        let mut level: Vec<(f64, f32)> = Vec::new();
        let mut speech: Vec<(f64, f64, f32)> = Vec::new();
        let mut patches: Vec<&crate::encode::audio::tagger::TagPatch> = Vec::new();
        for a in &w.audio {
            for k in 0..a.frames() {
                let t = a.frame_time(k).as_secs_f64();
                if t >= start && t < end && !level.iter().any(|(s, _)| (s - t).abs() < 1e-6) {
                    level.push((t, a.level_db[k]));
                }
            }
            for s in a.get::<SpeechProbs>().map_or(&[][..], |p| &p.0) {
                speech.push((
                    s.start.as_secs_f64(),
                    (s.start + s.duration).as_secs_f64(),
                    s.prob,
                ));
            }
            for p in a.get::<TagPatches>().map_or(&[][..], |t| &t.0) {
                let (ps, pe) = (p.start.as_secs_f64(), p.end.as_secs_f64());
                let inside = (pe.min(end) - ps.max(start)).max(0.0) / (pe - ps).max(1e-9);
                if inside >= 0.5 && !patches.iter().any(|q| q.start == p.start) {
                    patches.push(p);
                }
            }
        }
        level.sort_by(|a, b| a.0.total_cmp(&b.0));
        if patches.len() > self.cfg.max_segments {
            g.capped_segments = (patches.len() - self.cfg.max_segments) as u32;
            // Keep the loudest.
            patches.sort_by(|a, b| {
                mean_level(&level, b.start.as_secs_f64(), b.end.as_secs_f64()).total_cmp(
                    &mean_level(&level, a.start.as_secs_f64(), a.end.as_secs_f64()),
                )
            });
            patches.truncate(self.cfg.max_segments);
        }
        let level_at = |t: f64| -> f32 {
            level
                .iter()
                .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
                .map(|x| x.1)
                .unwrap_or(-100.0)
        };

        // Current window's nodes: tracks, segments, video scene, audio scene.
        let n_frames = w.vision.len().max(1) as f32;
        for t in &tracks {
            let n = t.frames as f32;
            let b = t.bbox.map(|x| x / n);
            let moving: Vec<f32> = t.motion.iter().flatten().copied().collect();
            let motion = moving.iter().sum::<f32>() / moving.len().max(1) as f32;
            g.nodes.push(Node {
                back: 0,
                kind: NodeKind::Track {
                    track: t.track,
                    class: t.class,
                },
                x: node_features(NodeRole::Track {
                    cx: 0.5 * (b[0] + b[2]),
                    cy: 0.5 * (b[1] + b[3]),
                    w: b[2] - b[0],
                    h: b[3] - b[1],
                    presence: n / n_frames,
                    motion,
                    score: t.score,
                }),
            });
        }
        let first_segment = g.nodes.len();
        for p in &patches {
            let (ps, pe) = (p.start.as_secs_f64(), p.end.as_secs_f64());
            let sp: Vec<f32> = speech
                .iter()
                .filter(|s| s.1 > ps && s.0 < pe)
                .map(|s| s.2)
                .collect();
            g.nodes.push(Node {
                back: 0,
                kind: NodeKind::Segment { start: ps, end: pe },
                x: node_features(NodeRole::Segment {
                    coverage: ((pe.min(end) - ps.max(start)) / (end - start).max(1e-9)) as f32,
                    level: mean_level(&level, ps, pe),
                    speech: sp.iter().sum::<f32>() / sp.len().max(1) as f32,
                    top_score: p.scores.iter().copied().fold(0.0, f32::max),
                }),
            });
        }
        let vscene = g.nodes.len() as u32;
        let changed: Vec<f32> = w
            .vision
            .iter()
            .filter_map(|v| v.get::<MotionFeatures>().map(|m| m.changed))
            .collect();
        g.nodes.push(Node {
            back: 0,
            kind: NodeKind::VideoScene,
            x: node_features(NodeRole::VideoScene {
                tracks: tracks.len() as f32,
                motion: changed.iter().sum::<f32>() / changed.len().max(1) as f32,
            }),
        });
        let ascene = vscene + 1;
        g.nodes.push(Node {
            back: 0,
            kind: NodeKind::AudioScene,
            x: node_features(NodeRole::AudioScene {
                level: mean_level(&level, start, end),
            }),
        });

        // Cross-modal edges.
        for (si, p) in patches.iter().enumerate() {
            let s_node = (first_segment + si) as u32;
            let (ps, pe) = (p.start.as_secs_f64(), p.end.as_secs_f64());
            let in_span: Vec<usize> = (0..frame_t.len())
                .filter(|k| frame_t[*k] >= ps && frame_t[*k] <= pe)
                .collect();
            for (ti, t) in tracks.iter().enumerate() {
                let t_node = ti as u32;
                let times: Vec<f64> = in_span.iter().map(|k| frame_t[*k]).collect();
                let motion: Vec<Option<f32>> = in_span.iter().map(|k| t.motion[*k]).collect();
                let lv: Vec<f32> = times.iter().map(|t| level_at(*t)).collect();
                let ev = super::EdgeFeatures::from_frames(
                    &times,
                    &motion,
                    &lv,
                    0.5 * (ps + pe),
                    self.ontology.compatibility(&p.scores, t.class),
                );
                let f = [
                    ev.compatibility,
                    ev.co_presence,
                    ev.correlation,
                    ev.offset,
                    1.0,
                    0.0,
                    0.0,
                    0.0,
                ];
                let e = g.edge(s_node, t_node, f);
                g.edge(t_node, s_node, f);
                g.cross.push((e, s_node, t_node));
            }
            g.segments.push(s_node);
            // Audio scene ↔ segment.
            let sc = scene_edge();
            g.edge(ascene, s_node, sc);
            g.edge(s_node, ascene, sc);
        }
        for ti in 0..tracks.len() as u32 {
            let sc = scene_edge();
            g.edge(vscene, ti, sc);
            g.edge(ti, vscene, sc);
        }

        // Temporal context: past windows' nodes, linked to this window's by identity.
        let current: Vec<Node> = g.nodes.clone();
        for (back, (past_start, nodes)) in self.past.iter().enumerate().take(self.cfg.context) {
            let base = g.nodes.len() as u32;
            let dt = (start - past_start) as f32;
            for (i, n) in nodes.iter().enumerate() {
                g.nodes.push(Node {
                    back: back + 1,
                    kind: n.kind.clone(),
                    x: n.x,
                });
                let src = base + i as u32;
                let same = current.iter().position(|c| match (&c.kind, &n.kind) {
                    (NodeKind::Track { track: a, .. }, NodeKind::Track { track: b, .. }) => a == b,
                    (NodeKind::VideoScene, NodeKind::VideoScene) => true,
                    (NodeKind::AudioScene, NodeKind::AudioScene) => true,
                    _ => false,
                });
                if let Some(dst) = same {
                    g.edge(src, dst as u32, [0.0, 0.0, 0.0, dt, 0.0, 1.0, 0.0, 0.0]);
                }
            }
        }
        // Self-loops: every node has an incoming edge.
        for i in 0..g.nodes.len() as u32 {
            g.edge(i, i, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        }

        self.past.push_front((start, current));
        while self.past.len() > self.cfg.context {
            self.past.pop_back();
        }
        g
    }
}

fn scene_edge() -> [f32; EDGE_DIM] {
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
}

fn mean_level(level: &[(f64, f32)], s: f64, e: f64) -> f32 {
    // Power mean in dB of the frames in [s, e].
    let p: Vec<f64> = level
        .iter()
        .filter(|(t, _)| *t >= s && *t <= e)
        .map(|(_, l)| 10f64.powf(f64::from(*l) / 10.0))
        .collect();
    if p.is_empty() {
        return -100.0;
    }
    (10.0 * (p.iter().sum::<f64>() / p.len() as f64).max(1e-10).log10()) as f32
}

/// What a node's features describe.
#[derive(Debug, Clone, Copy)]
pub enum NodeRole {
    /// A track: mean box centre and size (normalised), fraction of the window's frames it is
    /// in, mean motion inside its box, best detector score.
    Track {
        /// Box centre x.
        cx: f32,
        /// Box centre y.
        cy: f32,
        /// Box width.
        w: f32,
        /// Box height.
        h: f32,
        /// Fraction of frames.
        presence: f32,
        /// Mean motion in the box.
        motion: f32,
        /// Best score.
        score: f32,
    },
    /// A segment: fraction of the window it covers, level (dBFS), speech probability, top
    /// tag score.
    Segment {
        /// Coverage of the window.
        coverage: f32,
        /// Level, dBFS.
        level: f32,
        /// Mean speech probability.
        speech: f32,
        /// Top tag score.
        top_score: f32,
    },
    /// The video scene: number of tracks, mean changed fraction.
    VideoScene {
        /// Tracks in the window.
        tracks: f32,
        /// Mean changed fraction.
        motion: f32,
    },
    /// The audio scene: the window's level (dBFS).
    AudioScene {
        /// Level.
        level: f32,
    },
}

/// The node feature layout (levels mapped from dBFS to 0–1 as `(dB + 100) / 100`):
///
/// | index | 0–3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 |
/// |---|---|---|---|---|---|---|---|---|---|
/// | track | one-hot kind | cx | cy | w | h | presence | motion | 0 | score |
/// | segment | one-hot kind | 0 | 0 | top tag score | 0 | coverage | speech | level | 0 |
/// | video scene | one-hot kind | 0 | 0 | 0 | 0 | tracks / 10 | changed | 0 | 0 |
/// | audio scene | one-hot kind | 0 | 0 | 0 | 0 | 0 | 0 | level | 0 |
pub fn node_features(role: NodeRole) -> [f32; NODE_DIM] {
    let lv = |db: f32| ((db + 100.0) / 100.0).clamp(0.0, 1.0);
    match role {
        NodeRole::Track {
            cx,
            cy,
            w,
            h,
            presence,
            motion,
            score,
        } => [
            1.0, 0.0, 0.0, 0.0, cx, cy, w, h, presence, motion, 0.0, score,
        ],
        NodeRole::Segment {
            coverage,
            level,
            speech,
            top_score,
        } => [
            0.0,
            1.0,
            0.0,
            0.0,
            0.0,
            0.0,
            top_score,
            0.0,
            coverage,
            speech,
            lv(level),
            0.0,
        ],
        NodeRole::VideoScene { tracks, motion } => [
            0.0,
            0.0,
            1.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            (tracks / 10.0).min(1.0),
            motion,
            0.0,
            0.0,
        ],
        NodeRole::AudioScene { level } => [
            0.0,
            0.0,
            0.0,
            1.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            lv(level),
            0.0,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};
    use crate::core::features::{AudioFeatures, VisionFeatures};
    use crate::encode::audio::tagger::TagPatch;
    use crate::encode::video::tracker::TrackedObject;
    use std::path::Path;

    fn ontology() -> Arc<Ontology> {
        let names: Vec<String> = ["Speech", "Bark"].iter().map(|s| s.to_string()).collect();
        Arc::new(
            Ontology::parse(
                "[[map]]\ncoco = [\"person\"]\naudioset = [\"Speech\"]\n[[map]]\ncoco = [\"dog\"]\naudioset = [\"Bark\"]\n",
                Path::new("o.toml"),
                &names,
            )
            .unwrap(),
        )
    }

    fn obj(track: u64, class: &str) -> TrackedObject {
        TrackedObject {
            track_id: track,
            class_id: avsense_nn::models::coco::id(class).unwrap(),
            score: 0.8,
            bbox: [0.2, 0.2, 0.4, 0.8],
            embedding: None,
        }
    }

    /// Window k spans [k·0.5, k·0.5 + 1) s: 10 frames; a person in all, a dog in the first
    /// half; one speech patch over the whole window.
    fn window(k: u64) -> Window {
        let t0 = k as f64 * 0.5;
        let vision = (0..10)
            .map(|i| {
                let mut objects = vec![obj(1, "person")];
                if i < 5 {
                    objects.push(obj(2, "dog"));
                }
                Arc::new(
                    VisionFeatures {
                        stream: Arc::from("s"),
                        pts: Timestamp::from_secs_f64(t0 + i as f64 * 0.1),
                        duration: Duration(100_000_000),
                        index: i,
                        ext: Default::default(),
                    }
                    .with(crate::encode::video::objects::Tracks {
                        detected: true,
                        objects,
                        events: Vec::new(),
                    }),
                )
            })
            .collect();
        let names = Arc::new(vec!["Speech".to_string(), "Bark".to_string()]);
        let audio = Arc::new(
            AudioFeatures {
                stream: Arc::from("s"),
                pts: Timestamp::from_secs_f64(t0),
                hop: Duration(10_000_000),
                window: Duration(25_000_000),
                log_mel: vec![0.0; 100 * 64],
                level_db: vec![-20.0; 100],
                onset: vec![0.0; 100],
                ext: Default::default(),
            }
            .with(crate::encode::audio::tagger::TagPatches(vec![TagPatch {
                start: Timestamp::from_secs_f64(t0 + 0.02),
                end: Timestamp::from_secs_f64(t0 + 0.98),
                scores: Arc::new(vec![0.9, 0.1]),
                names,
                embedding: Arc::new(vec![0.0; 4]),
            }])),
        );
        Window {
            stream: Arc::from("s"),
            index: k,
            start: Timestamp::from_secs_f64(t0),
            end: Timestamp::from_secs_f64(t0 + 1.0),
            vision,
            audio: vec![audio],
            partial: false,
            ext: Default::default(),
        }
    }

    #[test]
    fn nodes_edges_and_cross_modal_evidence() {
        let mut b = GraphBuilder::new(GraphConfig::default(), ontology());
        let g = b.build(&window(0));
        // 2 tracks, 1 segment, 2 scene nodes.
        assert_eq!(g.nodes.len(), 5);
        assert_eq!(g.cross.len(), 2);
        let (person, dog) = (
            &g.edge_attr[g.cross[0].0 as usize],
            &g.edge_attr[g.cross[1].0 as usize],
        );
        // Speech 0.9 / Bark 0.1: compatibility 0.9 with the person, 0.1 with the dog.
        assert!((person[0] - 0.9).abs() < 1e-6 && (dog[0] - 0.1).abs() < 1e-6);
        // The patch spans frames 1–9: the person is in all, the dog in frames 1–4.
        assert!((person[1] - 1.0).abs() < 1e-6, "{person:?}");
        assert!((dog[1] - 4.0 / 9.0).abs() < 1e-6, "{dog:?}");
        assert_eq!(&person[4..], &[1.0, 0.0, 0.0, 0.0]);
        // Every node has a self-loop; cross edges go both ways.
        for i in 0..g.nodes.len() as u32 {
            assert!(g.edges.contains(&(i, i)));
        }
        let (_, s, t) = g.cross[0];
        assert!(g.edges.contains(&(s, t)) && g.edges.contains(&(t, s)));
        // The graph runs through the fusion network.
        let dev = candle_core::Device::Cpu;
        let vm = candle_nn::VarMap::new();
        let net = avsense_nn::models::fusion::FusionNet::new(
            candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &dev),
            avsense_nn::models::fusion::FusionNetConfig::default(),
        )
        .unwrap();
        let parts = g.parts();
        parts.check().unwrap();
        assert_eq!(parts.scenes, (3, 4));
        let batch = avsense_nn::models::fusion::batch::GraphBatch::new(&[&parts], &dev).unwrap();
        let out = net.forward(&batch).unwrap();
        assert_eq!(out.association.dims(), &[2]);
    }

    #[test]
    fn temporal_edges_link_the_same_track_across_context_windows() {
        let mut b = GraphBuilder::new(GraphConfig::default(), ontology());
        b.build(&window(0));
        b.build(&window(1));
        let g = b.build(&window(2));
        // Current 5 nodes + 2 context windows of 5.
        assert_eq!(g.nodes.len(), 15);
        let temporal: Vec<&(u32, u32)> = g
            .edges
            .iter()
            .zip(&g.edge_attr)
            .filter(|(_, f)| f[5] == 1.0)
            .map(|(e, _)| e)
            .collect();
        // Per context window: person, dog, both scene nodes → 4 edges into the current window.
        assert_eq!(temporal.len(), 8);
        for (s, d) in &temporal {
            assert!(g.nodes[*s as usize].back > 0 && g.nodes[*d as usize].back == 0);
            assert_eq!(
                std::mem::discriminant(&g.nodes[*s as usize].kind),
                std::mem::discriminant(&g.nodes[*d as usize].kind)
            );
        }
    }

    #[test]
    fn caps_bound_the_graph_and_are_counted() {
        let cfg = GraphConfig {
            context: 0,
            max_tracks: 1,
            max_segments: 1,
        };
        let mut b = GraphBuilder::new(cfg, ontology());
        let g = b.build(&window(0));
        assert_eq!(g.capped_tracks, 1);
        // The most visible track (the person) is kept.
        assert!(matches!(g.nodes[0].kind, NodeKind::Track { track: 1, .. }));
        assert_eq!(g.nodes.len(), 4);
    }
}
