//! The face graph: who, of the faces in view, is speaking — Light-ASD's per-face scores
//! reconciled with each other, over time and with the audio.
//!
//! Structure (after SPELL, Min et al., ECCV 2022: a node per face per time step, edges in
//! time along each face and between the faces of one time step):
//! * **face nodes**, one per face per 25 fps tick, holding the face's Light-ASD logit `ℓ`;
//! * **temporal edges** between the nodes of one face within ±`radius` ticks, weighted by a
//!   Gaussian of the tick distance (σ = radius / 2) and normalised per node;
//! * **same-frame edges** between every pair of faces at the same tick;
//! * one **audio node** per tick (the voice-activity probability `p`), joined to every face
//!   of that tick; the edge carries the **synchrony** of that face's mouth motion with the
//!   audio's energy (`s`, a Fisher z statistic: ≈ 0 for a mouth that moves independently of
//!   what is heard, positive for the mouth the sound comes from; see
//!   [`crate::av_encode::asd::Sync`]).
//!
//! Inference is mean-field message passing on the binary "speaking" variable of each face
//! node (a pairwise conditional random field), `iterations` rounds of
//!
//! ```text
//! u_i   = ℓ_i + β · clamp(logit p_t, −6, 0) + γ · s_i            (unary: model + audio node
//!             + η · min(0, logit q_i − logit τ)                    + the sync head's veto)
//! m_i  ← σ( u_i + λ_t · Σ_temporal w_ij (2 m_j − 1)              (neighbours in time agree)
//!              − λ_c · max(0, Σ_same-frame m_j − (K − 1)) )      (at most K speak at once)
//! ```
//!
//! with damping ½ (the competition term would otherwise oscillate between two equal
//! faces). Each round is one message-passing layer on candle: `index_select` of the
//! senders' states, weighted, `index_add` onto the receivers.
//!
//! Unlike SPELL's, these weights are not learned: they are the fixed potentials of the
//! `[speaker]` config (no labelled multi-face audio-visual data is reachable here to fit
//! them). `λ_t` (`temporal`), `λ_c` (`competition`), `β` (`vad_weight`), `γ`
//! (`sync_weight`), `K` (`max_speakers`). With `λ_t = λ_c = β = γ = 0` the output is σ(ℓ):
//! Light-ASD alone.

use candle_core::{DType, Device, Tensor};

/// Settings of the face graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GraphConfig {
    /// Ticks either side joined by temporal edges.
    pub radius: usize,
    /// `λ_t`: pull of a face's neighbours in time.
    pub temporal: f32,
    /// `λ_c`: push between faces of the same tick beyond `max_speakers`.
    pub competition: f32,
    /// `β`: weight of the voice-activity log-odds.
    pub vad_weight: f32,
    /// `γ`: weight of the audio-visual synchrony statistic on the audio edge.
    pub sync_weight: f32,
    /// `z₀`: the synchrony statistic at which its evidence is neutral.
    pub sync_offset: f32,
    /// `η`: weight of the sync head's log-odds against its threshold.
    pub head_weight: f32,
    /// `τ`: the sync head's probability at which its evidence is neutral.
    pub head_threshold: f32,
    /// `K`: faces that may plausibly speak at once.
    pub max_speakers: usize,
    /// Mean-field rounds.
    pub iterations: usize,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            radius: 3,
            temporal: 2.0,
            competition: 3.0,
            vad_weight: 0.5,
            sync_weight: 2.0,
            sync_offset: 0.25,
            head_weight: 2.0,
            head_threshold: 0.4,
            max_speakers: 1,
            iterations: 10,
        }
    }
}

/// One face at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceNode {
    /// Which face (any id; nodes of one face are joined in time).
    pub face: u64,
    /// The 25 fps tick.
    pub tick: u64,
    /// Light-ASD's speaking logit.
    pub logit: f32,
    /// The voice-activity probability at the tick, when a VAD runs.
    pub vad: Option<f32>,
    /// The synchrony of the face's mouth motion with the audio (Fisher z), when measured.
    pub sync: Option<f32>,
    /// The sync head's probability that this face makes the sound, when scored.
    pub head: Option<f32>,
}

/// Log-odds of a probability, clamped to ±6.
fn log_odds(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln().clamp(-6.0, 6.0)
}

/// The graph of a set of face nodes, as edge lists.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceGraph {
    /// Unary term per node.
    pub unary: Vec<f32>,
    /// Temporal edges: sender, receiver, weight (weights into a node sum to 1).
    pub temporal: Vec<(u32, u32, f32)>,
    /// Same-frame edges: sender, receiver (both directions listed).
    pub same_frame: Vec<(u32, u32)>,
}

impl FaceGraph {
    /// Builds the graph of `nodes` (any order).
    pub fn build(nodes: &[FaceNode], cfg: &GraphConfig) -> Self {
        let unary = nodes
            .iter()
            .map(|n| {
                // Speech heard is necessary, not sufficient, for a face to speak: the audio
                // node only pulls faces down where the VAD hears no speech (its log-odds
                // below 0); where it does, it says nothing about which face.
                let audio = n.vad.map_or(0.0, |p| {
                    let p = p.clamp(1e-6, 1.0 - 1e-6);
                    (p / (1.0 - p)).ln().clamp(-6.0, 0.0)
                });
                let sync = n.sync.map_or(0.0, |z| z - cfg.sync_offset);
                // The sync head's absolute evidence: does this mouth make the sound heard?
                // It can only speak against a face (a veto): a mouth in sync with the audio
                // is what Light-ASD already scores; one out of sync is what it misses.
                let head = n.head.map_or(0.0, |q| {
                    (log_odds(q) - log_odds(cfg.head_threshold)).min(0.0)
                });
                n.logit + cfg.vad_weight * audio + cfg.sync_weight * sync + cfg.head_weight * head
            })
            .collect();
        // Index nodes by (face, tick) and by tick.
        let mut by_face: std::collections::HashMap<(u64, u64), u32> =
            std::collections::HashMap::with_capacity(nodes.len());
        let mut by_tick: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
        for (i, n) in nodes.iter().enumerate() {
            by_face.insert((n.face, n.tick), i as u32);
            by_tick.entry(n.tick).or_default().push(i as u32);
        }
        let sigma = (cfg.radius as f32 / 2.0).max(0.5);
        let mut temporal = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let mut edges: Vec<(u32, f32)> = Vec::new();
            for d in 1..=cfg.radius as u64 {
                let w = (-((d * d) as f32) / (2.0 * sigma * sigma)).exp();
                for t in [n.tick.checked_sub(d), n.tick.checked_add(d)]
                    .into_iter()
                    .flatten()
                {
                    if let Some(&j) = by_face.get(&(n.face, t)) {
                        edges.push((j, w));
                    }
                }
            }
            // Normalised over the full neighbourhood (a face's first and last ticks have
            // fewer neighbours, so less pull).
            let full: f32 = (1..=cfg.radius)
                .map(|d| 2.0 * (-((d * d) as f32) / (2.0 * sigma * sigma)).exp())
                .sum();
            for (j, w) in edges {
                temporal.push((j, i as u32, w / full.max(f32::MIN_POSITIVE)));
            }
        }
        let mut same_frame = Vec::new();
        for ids in by_tick.values() {
            for &a in ids {
                for &b in ids {
                    if a != b {
                        same_frame.push((b, a));
                    }
                }
            }
        }
        Self {
            unary,
            temporal,
            same_frame,
        }
    }

    /// Speaking probability per node (mean-field, see the module doc), on `device`.
    pub fn infer(&self, cfg: &GraphConfig, device: &Device) -> candle_core::Result<Vec<f32>> {
        let n = self.unary.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let unary = Tensor::from_slice(&self.unary, n, device)?;
        let edges =
            |list: Vec<(u32, u32, f32)>| -> candle_core::Result<Option<(Tensor, Tensor, Tensor)>> {
                if list.is_empty() {
                    return Ok(None);
                }
                let src: Vec<u32> = list.iter().map(|e| e.0).collect();
                let dst: Vec<u32> = list.iter().map(|e| e.1).collect();
                let w: Vec<f32> = list.iter().map(|e| e.2).collect();
                let k = list.len();
                Ok(Some((
                    Tensor::from_vec(src, k, device)?,
                    Tensor::from_vec(dst, k, device)?,
                    Tensor::from_vec(w, k, device)?,
                )))
            };
        let temporal = edges(self.temporal.clone())?;
        let same = edges(self.same_frame.iter().map(|&(a, b)| (a, b, 1.0)).collect())?;
        let zeros = Tensor::zeros(n, DType::F32, device)?;
        let mut m = candle_nn::ops::sigmoid(&unary)?;
        for _ in 0..cfg.iterations {
            let mut field = unary.clone();
            if let (Some((src, dst, w)), true) = (&temporal, cfg.temporal != 0.0) {
                // Σ_j w_ij (2 m_j − 1) onto each receiver.
                let msg = ((m.index_select(src, 0)? * 2.0)? - 1.0)?.mul(w)?;
                let agg = zeros.index_add(dst, &msg, 0)?;
                field = (field + (agg * f64::from(cfg.temporal))?)?;
            }
            if let (Some((src, dst, _)), true) = (&same, cfg.competition != 0.0) {
                let others = zeros.index_add(dst, &m.index_select(src, 0)?, 0)?;
                let excess = (others - (cfg.max_speakers.max(1) as f64 - 1.0))?.relu()?;
                field = (field - (excess * f64::from(cfg.competition))?)?;
            }
            let next = candle_nn::ops::sigmoid(&field)?;
            m = ((m + next)? * 0.5)?;
        }
        m.to_vec1::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(face: u64, logits: &[f32], vad: Option<f32>) -> Vec<FaceNode> {
        logits
            .iter()
            .enumerate()
            .map(|(t, &logit)| FaceNode {
                face,
                tick: t as u64,
                logit,
                vad,
                sync: None,
                head: None,
            })
            .collect()
    }

    fn sig(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn with_every_weight_zero_it_is_the_model_alone() {
        let cfg = GraphConfig {
            temporal: 0.0,
            competition: 0.0,
            vad_weight: 0.0,
            sync_weight: 0.0,
            ..Default::default()
        };
        let mut n = nodes(1, &[2.0, -1.0, 0.5], Some(0.9));
        n.extend(nodes(2, &[-3.0, 1.0, 0.0], Some(0.9)));
        let p = FaceGraph::build(&n, &cfg)
            .infer(&cfg, &Device::Cpu)
            .unwrap();
        for (node, p) in n.iter().zip(p) {
            assert!((p - sig(node.logit)).abs() < 1e-6);
        }
    }

    #[test]
    fn a_one_tick_dip_is_smoothed_over_and_edges_stay_within_a_face() {
        let cfg = GraphConfig {
            competition: 0.0,
            vad_weight: 0.0,
            ..Default::default()
        };
        let mut logits = vec![2.0; 11];
        logits[5] = -1.0;
        let mut n = nodes(1, &logits, None);
        n.extend(nodes(2, &[-2.0; 11], None));
        let g = FaceGraph::build(&n, &cfg);
        // No temporal edge between faces; each interior node has 2·radius senders whose
        // weights sum to 1.
        assert!(g
            .temporal
            .iter()
            .all(|&(a, b, _)| n[a as usize].face == n[b as usize].face));
        let into5: f32 = g.temporal.iter().filter(|e| e.1 == 5).map(|e| e.2).sum();
        assert!((into5 - 1.0).abs() < 1e-5);
        let p = g.infer(&cfg, &Device::Cpu).unwrap();
        assert!(
            sig(-1.0) < 0.5 && p[5] > 0.5,
            "the dip stays below 0.5: {}",
            p[5]
        );
        assert!(
            p[11..].iter().all(|&x| x < 0.5),
            "the silent face stays silent"
        );
    }

    #[test]
    fn of_two_faces_at_once_the_stronger_one_speaks() {
        let cfg = GraphConfig {
            temporal: 0.0,
            vad_weight: 0.0,
            ..Default::default()
        };
        let mut n = nodes(1, &[3.0; 4], None);
        n.extend(nodes(2, &[1.0; 4], None));
        let g = FaceGraph::build(&n, &cfg);
        assert_eq!(g.same_frame.len(), 8);
        let p = g.infer(&cfg, &Device::Cpu).unwrap();
        assert!(p[..4].iter().all(|&x| x > 0.5), "{p:?}");
        assert!(p[4..].iter().all(|&x| x < 0.5), "{p:?}");
        // Two may speak when max_speakers = 2.
        let cfg2 = GraphConfig {
            max_speakers: 2,
            ..cfg
        };
        let p = FaceGraph::build(&n, &cfg2)
            .infer(&cfg2, &Device::Cpu)
            .unwrap();
        assert!(p.iter().all(|&x| x > 0.5), "{p:?}");
    }

    #[test]
    fn silence_on_the_audio_node_lowers_every_face_and_speech_raises_none() {
        let cfg = GraphConfig::default();
        let run = |logit: f32, vad: f32| {
            FaceGraph::build(&nodes(1, &[logit; 5], Some(vad)), &cfg)
                .infer(&cfg, &Device::Cpu)
                .unwrap()
        };
        assert!(run(0.5, 0.95).iter().all(|&p| p > 0.5));
        assert!(run(0.5, 0.02).iter().all(|&p| p < 0.5));
        // Speech heard does not make a silent-looking face speak.
        assert!(run(-0.5, 0.99).iter().all(|&p| p < 0.5));
    }

    #[test]
    fn the_face_in_sync_with_the_audio_wins_the_competition() {
        let cfg = GraphConfig {
            temporal: 0.0,
            vad_weight: 0.0,
            ..Default::default()
        };
        // Light-ASD slightly prefers face 2; face 1's mouth follows the audio (z = 2).
        let mut n = nodes(1, &[1.0; 4], None);
        n.iter_mut().for_each(|x| x.sync = Some(2.0));
        let mut m = nodes(2, &[1.5; 4], None);
        m.iter_mut().for_each(|x| x.sync = Some(-0.3));
        n.extend(m);
        let p = FaceGraph::build(&n, &cfg)
            .infer(&cfg, &Device::Cpu)
            .unwrap();
        assert!(
            p[..4].iter().all(|&x| x > 0.5) && p[4..].iter().all(|&x| x < 0.5),
            "{p:?}"
        );
    }

    #[test]
    fn node_order_does_not_matter() {
        let cfg = GraphConfig::default();
        let mut n = nodes(1, &[1.0, -0.5, 2.0, 0.3], Some(0.7));
        n.extend(nodes(2, &[0.2, 0.9, -1.0, 0.0], Some(0.7)));
        let p = FaceGraph::build(&n, &cfg)
            .infer(&cfg, &Device::Cpu)
            .unwrap();
        let mut r = n.clone();
        r.reverse();
        let q = FaceGraph::build(&r, &cfg)
            .infer(&cfg, &Device::Cpu)
            .unwrap();
        for (i, &pi) in p.iter().enumerate() {
            assert!((pi - q[n.len() - 1 - i]).abs() < 1e-5);
        }
        assert!(FaceGraph::build(&[], &cfg)
            .infer(&cfg, &Device::Cpu)
            .unwrap()
            .is_empty());
    }
}
