//! Scene graphs as plain data ([`GraphParts`], what the dataset stores) and many of them as
//! one disjoint graph on a device ([`GraphBatch`], what the fusion models run on): windows
//! and streams are batched by offsetting node ids, so one forward pass scores them all.

use super::gatv2::EdgeIndex;
use super::{EDGE_DIM, NODE_DIM};
use candle_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

/// One window's graph without its bookkeeping: what a fusion model needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphParts {
    /// Node features.
    pub x: Vec<[f32; NODE_DIM]>,
    /// Edges `(src, dst)`.
    pub edges: Vec<(u32, u32)>,
    /// Edge features, one row per edge.
    pub edge_attr: Vec<[f32; EDGE_DIM]>,
    /// Cross-modal pairs to score: (edge index of segment → track, segment node, track node).
    pub cross: Vec<(u32, u32, u32)>,
    /// The current window's audio segment nodes.
    pub segments: Vec<u32>,
    /// The current window's video and audio scene nodes.
    pub scenes: (u32, u32),
}

impl GraphParts {
    /// Checks that every index is in range (a stored graph may be damaged).
    pub fn check(&self) -> std::result::Result<(), String> {
        let n = self.x.len() as u32;
        if self.edges.len() != self.edge_attr.len() {
            return Err(format!(
                "{} edges but {} edge feature rows",
                self.edges.len(),
                self.edge_attr.len()
            ));
        }
        if let Some((s, d)) = self.edges.iter().find(|(s, d)| *s >= n || *d >= n) {
            return Err(format!("edge ({s}, {d}) outside the {n} nodes"));
        }
        let e = self.edges.len() as u32;
        if let Some(c) = self
            .cross
            .iter()
            .find(|(k, s, t)| *k >= e || *s >= n || *t >= n)
        {
            return Err(format!("cross pair {c:?} outside the graph"));
        }
        if self.segments.iter().any(|s| *s >= n) || self.scenes.0 >= n || self.scenes.1 >= n {
            return Err("a segment or scene node outside the graph".into());
        }
        if let Some((_, s, _)) = self.cross.iter().find(|c| !self.segments.contains(&c.1)) {
            return Err(format!("cross pair from node {s}, which is not a segment"));
        }
        Ok(())
    }
}

/// Graphs stacked into one disjoint graph on a device.
#[derive(Debug, Clone)]
pub struct GraphBatch {
    /// Node features `[N, NODE_DIM]`.
    pub x: Tensor,
    /// All edges.
    pub edges: EdgeIndex,
    /// Edge features `[E, EDGE_DIM]`.
    pub edge_attr: Tensor,
    /// Cross-modal pairs (batch-wide ids).
    pub cross: Vec<(u32, u32, u32)>,
    /// Segment nodes (batch-wide ids).
    pub segments: Vec<u32>,
    /// For each cross pair, the row of its segment in `segments`.
    pub cross_segment: Vec<u32>,
    /// For each segment, its graph.
    pub segment_graph: Vec<u32>,
    /// Per graph: its video and audio scene nodes.
    pub scenes: Vec<(u32, u32)>,
}

impl GraphBatch {
    /// Stacks `graphs` (each checked with [`GraphParts::check`] by whoever built or read it).
    pub fn new(graphs: &[&GraphParts], device: &Device) -> Result<Self> {
        let mut x: Vec<f32> = Vec::new();
        let mut edges = Vec::new();
        let mut ea: Vec<f32> = Vec::new();
        let mut cross = Vec::new();
        let mut segments = Vec::new();
        let mut cross_segment = Vec::new();
        let mut segment_graph = Vec::new();
        let mut scenes = Vec::new();
        let (mut n0, mut e0) = (0u32, 0u32);
        for (gi, g) in graphs.iter().enumerate() {
            x.extend(g.x.iter().flatten());
            edges.extend(g.edges.iter().map(|(s, d)| (s + n0, d + n0)));
            ea.extend(g.edge_attr.iter().flatten());
            let seg0 = segments.len() as u32;
            for s in &g.segments {
                segments.push(s + n0);
                segment_graph.push(gi as u32);
            }
            for (k, s, t) in &g.cross {
                cross.push((k + e0, s + n0, t + n0));
                let row = g.segments.iter().position(|q| q == s).unwrap_or(0) as u32;
                cross_segment.push(seg0 + row);
            }
            scenes.push((g.scenes.0 + n0, g.scenes.1 + n0));
            n0 += g.x.len() as u32;
            e0 += g.edges.len() as u32;
        }
        let n = n0 as usize;
        Ok(Self {
            x: Tensor::from_vec(x, (n, NODE_DIM), device)?,
            edges: EdgeIndex::new(&edges, n, device)?,
            edge_attr: Tensor::from_vec(ea, (edges.len(), EDGE_DIM), device)?,
            cross,
            segments,
            cross_segment,
            segment_graph,
            scenes,
        })
    }

    /// Number of graphs.
    pub fn graphs(&self) -> usize {
        self.scenes.len()
    }

    /// Node ids as a `u32` tensor.
    pub fn ids(&self, ids: impl Iterator<Item = u32>) -> Result<Tensor> {
        let v: Vec<u32> = ids.collect();
        let n = v.len();
        Tensor::from_vec(v, n, self.x.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(seed: f32) -> GraphParts {
        // 0: track, 1: segment, 2: video scene, 3: audio scene.
        let mut x = vec![[0f32; NODE_DIM]; 4];
        for (i, r) in x.iter_mut().enumerate() {
            r[i] = 1.0;
            r[11] = seed;
        }
        GraphParts {
            x,
            edges: vec![(1, 0), (0, 1), (0, 0), (1, 1), (2, 2), (3, 3)],
            edge_attr: vec![[seed; EDGE_DIM]; 6],
            cross: vec![(0, 1, 0)],
            segments: vec![1],
            scenes: (2, 3),
        }
    }

    #[test]
    fn batching_offsets_every_index() {
        let (a, b) = (tiny(0.1), tiny(0.2));
        assert!(a.check().is_ok());
        let batch = GraphBatch::new(&[&a, &b], &Device::Cpu).unwrap();
        assert_eq!(batch.x.dims(), &[8, NODE_DIM]);
        assert_eq!(batch.edges.len(), 12);
        assert_eq!(batch.cross, vec![(0, 1, 0), (6, 5, 4)]);
        assert_eq!(batch.segments, vec![1, 5]);
        assert_eq!(batch.cross_segment, vec![0, 1]);
        assert_eq!(batch.segment_graph, vec![0, 1]);
        assert_eq!(batch.scenes, vec![(2, 3), (6, 7)]);
    }

    #[test]
    fn damaged_graphs_are_refused() {
        let mut g = tiny(0.0);
        g.edges.push((9, 0));
        g.edge_attr.push([0.0; EDGE_DIM]);
        assert!(g.check().unwrap_err().contains("outside"));
        let mut g = tiny(0.0);
        g.edge_attr.pop();
        assert!(g.check().unwrap_err().contains("edge feature rows"));
        let mut g = tiny(0.0);
        g.cross = vec![(0, 0, 1)];
        assert!(g.check().unwrap_err().contains("not a segment"));
    }
}
