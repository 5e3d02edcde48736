//! The executor: the topological order, and a run — the fed inputs checked and bound,
//! only the ancestors of the requested outputs evaluated (each with its op from the
//! registry, or passed through where a load-time fold already did its work), and each
//! intermediate value dropped after its last use.

use super::node::{split_output, Batch, Node};
use super::ops;
use super::value::{OpError, Val};
use super::{Result, TfjsError, TfjsGraph};
use candle_core::{DType, Tensor};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Time per op type: op → (total time, node count).
pub(super) type Profile = HashMap<String, (Duration, usize)>;

/// The nodes in topological order (Kahn's algorithm; ties keep file order), and the users
/// of each node's outputs. `Err(i)`: the graph has a cycle through node `i`.
pub(super) fn topological_order(
    nodes: &[Node],
) -> std::result::Result<(Vec<usize>, Vec<Vec<usize>>), usize> {
    let mut indeg: Vec<usize> = nodes.iter().map(|n| n.inputs.len()).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for &(src, _) in &n.inputs {
            users[src].push(i);
        }
    }
    let mut queue: VecDeque<usize> = (0..nodes.len()).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                queue.push_back(u);
            }
        }
    }
    match (0..nodes.len()).find(|&i| indeg[i] > 0) {
        Some(stuck) => Err(stuck),
        None => Ok((order, users)),
    }
}

impl TfjsGraph {
    /// Axis 0 of the first placeholder as declared; 1 where it is free or absent.
    pub(super) fn declared_batch(&self) -> usize {
        self.placeholders
            .first()
            .and_then(|p| p.shape.first())
            .and_then(|&b| usize::try_from(b).ok())
            .filter(|&b| b > 0)
            .unwrap_or(1)
    }

    /// The constant value of output `k` of node `i`, if it has one.
    pub(super) fn const_of(&self, (i, k): (usize, usize)) -> Option<&Val> {
        self.consts[i].as_ref().and_then(|v| v.get(k))
    }

    /// Output `k` of node `i`: constant, or computed in this run (`vals`).
    fn value<'a>(
        &'a self,
        vals: &'a [Option<Vec<Val>>],
        (i, k): (usize, usize),
    ) -> Option<&'a Val> {
        self.consts[i].as_ref().or(vals[i].as_ref())?.get(k)
    }

    /// (node, output index) of a tensor name (`node` or `node:k`).
    pub(super) fn resolve(&self, name: &str) -> Result<(usize, usize)> {
        let (n, k) = split_output(name);
        self.index
            .get(n)
            .map(|&i| (i, k))
            .ok_or_else(|| TfjsError::UnknownTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// Per node, whether `outputs` depend on it (constants end the walk up).
    pub(super) fn needed(&self, outputs: &[&str]) -> Result<Vec<bool>> {
        let mut needed = vec![false; self.nodes.len()];
        let mut stack = Vec::new();
        for o in outputs {
            stack.push(self.resolve(o)?.0);
        }
        while let Some(i) = stack.pop() {
            if needed[i] {
                continue;
            }
            needed[i] = true;
            if self.consts[i].is_none() {
                stack.extend(self.nodes[i].inputs.iter().map(|&(s, _)| s));
            }
        }
        Ok(needed)
    }

    /// Checks each feed against its placeholder and moves it to the graph's device:
    /// (placeholder node → tensor, the first feed's batch).
    /// The fed tensors by placeholder node, the fed batch, and — with `spatial` — the first
    /// 4-D input's fed and declared (height, width) when they differ (NCHW when its axis 1
    /// is declared as at most 4 channels, NHWC otherwise).
    #[allow(clippy::type_complexity)]
    fn bind_feeds(
        &self,
        feeds: &[(&str, &Tensor)],
        spatial: bool,
    ) -> Result<(
        HashMap<usize, Tensor>,
        Option<usize>,
        Option<[(usize, usize); 2]>,
    )> {
        let mut fed = HashMap::new();
        let mut batch = None;
        let mut sizes = None;
        for (name, t) in feeds {
            let (i, _) = self.resolve(name)?;
            let bad = |reason: String| TfjsError::Input {
                path: self.path.clone(),
                name: name.to_string(),
                reason,
            };
            let node = &self.nodes[i];
            if node.op != "Placeholder" {
                return Err(bad(format!("is a {} node, not a Placeholder", node.op)));
            }
            let spec = self.placeholders.iter().find(|p| p.name == node.name);
            if let Some(spec) = spec {
                let dims = t.dims();
                // The spatial axes may differ in a spatial run (4-D inputs only).
                let hw: Option<[usize; 2]> = (spatial && dims.len() == 4 && spec.shape.len() == 4)
                    .then(|| {
                        if (1..=4).contains(&spec.shape[1]) {
                            [2, 3]
                        } else {
                            [1, 2]
                        }
                    });
                let fits = dims.len() == spec.shape.len()
                    && dims
                        .iter()
                        .zip(&spec.shape)
                        .enumerate()
                        .skip(1)
                        .all(|(k, (&d, &s))| {
                            s < 0 || d as i64 == s || hw.is_some_and(|a| a.contains(&k) && d > 0)
                        });
                if let (true, Some([h, w]), None) = (fits, hw, sizes) {
                    let (dh, dw) = (spec.shape[h], spec.shape[w]);
                    if dh > 0 && dw > 0 && (dims[h] as i64, dims[w] as i64) != (dh, dw) {
                        sizes = Some([(dims[h], dh as usize), (dims[w], dw as usize)]);
                    }
                }
                if !fits {
                    return Err(bad(format!(
                        "shape {dims:?} does not fit the declared {:?}",
                        spec.shape
                    )));
                }
            }
            if t.dtype() != DType::F32 {
                return Err(bad(format!("dtype {:?}, expected F32", t.dtype())));
            }
            batch = batch.or(t.dims().first().copied());
            let t = t.to_device(&self.device).map_err(|e| bad(e.to_string()))?;
            fed.insert(i, t);
        }
        Ok((fed, batch, sizes))
    }

    /// Per node, how many times a run reads its outputs: once per needed, computed node
    /// that takes it as input, once more per fetch of it.
    fn use_counts(&self, needed: &[bool], targets: &[(usize, usize)]) -> Vec<usize> {
        let mut uses = vec![0usize; self.nodes.len()];
        for &i in &self.order {
            if needed[i] && self.consts[i].is_none() {
                for &(s, _) in &self.nodes[i].inputs {
                    uses[s] += 1;
                }
            }
        }
        for &(i, _) in targets {
            uses[i] += 1; // keep the fetched ones
        }
        uses
    }

    /// A run (see [`TfjsGraph::run`]), timing each op type into `prof` when given.
    pub(super) fn run_inner(
        &self,
        feeds: &[(&str, &Tensor)],
        fetches: &[&str],
        mut prof: Option<&mut Profile>,
        spatial: bool,
    ) -> Result<Vec<Tensor>> {
        let (mut fed, batch, sizes) = self.bind_feeds(feeds, spatial)?;
        let batch = Batch {
            fed: batch.unwrap_or(1),
            declared: self.declared_batch(),
            spatial: sizes,
        };
        let targets: Vec<(usize, usize)> = fetches
            .iter()
            .map(|f| self.resolve(f))
            .collect::<Result<_>>()?;
        if let Some((_, name)) = targets
            .iter()
            .zip(fetches)
            .find(|((i, _), _)| self.folds.fused_inner.contains(i))
        {
            return Err(TfjsError::UnknownTensor {
                path: self.path.clone(),
                name: format!("{name} (fused into a convolution's bias/activation; fetch the activation's output)"),
            });
        }
        let needed = self.needed(fetches)?;
        let mut uses = self.use_counts(&needed, &targets);
        let mut vals: Vec<Option<Vec<Val>>> = (0..self.nodes.len()).map(|_| None).collect();
        for &i in &self.order {
            if !needed[i] || self.consts[i].is_some() {
                continue;
            }
            let node = &self.nodes[i];
            if node.op == "Placeholder" {
                let t = fed.remove(&i).ok_or_else(|| TfjsError::Input {
                    path: self.path.clone(),
                    name: node.name.clone(),
                    reason: "not fed".into(),
                })?;
                vals[i] = Some(vec![Val::F(t)]);
                continue;
            }
            let ins = node
                .inputs
                .iter()
                .map(|&(s, k)| {
                    self.value(&vals, (s, k)).ok_or_else(|| {
                        self.node_error(
                            i,
                            format!("input `{}:{k}` has no value", self.nodes[s].name),
                        )
                    })
                })
                .collect::<Result<Vec<&Val>>>()?;
            let t0 = prof.is_some().then(Instant::now);
            let out = if self.folds.passthrough.contains(&i) {
                ins.first().map(|&v| vec![v.clone()]).ok_or_else(|| {
                    self.node_error(i, "a folded node without an input to pass on".into())
                })?
            } else {
                ops::eval(self, i, &ins, batch).map_err(|e| self.op_error(i, e))?
            };
            if let (Some(p), Some(t0)) = (prof.as_deref_mut(), t0) {
                let e = p.entry(node.op.clone()).or_default();
                e.0 += t0.elapsed();
                e.1 += 1;
            }
            vals[i] = Some(out);
            for &(s, _) in &node.inputs {
                if self.consts[s].is_none() {
                    uses[s] = uses[s].saturating_sub(1);
                    if uses[s] == 0 {
                        vals[s] = None;
                    }
                }
            }
        }
        targets
            .iter()
            .zip(fetches)
            .map(|(&target, name)| {
                self.value(&vals, target)
                    .map(|v| v.tensor().clone())
                    .ok_or_else(|| TfjsError::UnknownTensor {
                        path: self.path.clone(),
                        name: name.to_string(),
                    })
            })
            .collect()
    }

    /// A [`TfjsError::Node`] for node `i`.
    fn node_error(&self, i: usize, reason: String) -> TfjsError {
        let node = &self.nodes[i];
        TfjsError::Node {
            path: self.path.clone(),
            node: node.name.clone(),
            op: node.op.clone(),
            reason,
        }
    }

    /// An op's failure, with node `i`'s name and op attached.
    fn op_error(&self, i: usize, e: OpError) -> TfjsError {
        match e {
            OpError::Unsupported => TfjsError::UnsupportedOp {
                path: self.path.clone(),
                node: self.nodes[i].name.clone(),
                op: self.nodes[i].op.clone(),
            },
            OpError::Msg(reason) => self.node_error(i, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::tfjs::fixtures::{assert_fails, host, load_tiny, naive_conv, t, vals};
    use crate::formats::tfjs::TfjsGraph;
    use candle_core::Device;

    #[test]
    fn tiny_graph_matches_a_direct_convolution() {
        let g = load_tiny();
        let (n, h, w, c) = (2, 5, 6, 2); // batch 2 against a declared -1
        let xs: Vec<f32> = (0..n * h * w * c)
            .map(|i| ((i as f32) * 0.61).cos())
            .collect();
        let x = t(xs.clone(), &[n, h, w, c]);
        let out = g
            .run(&[("x", &x)], &["conv", "lrelu"])
            .unwrap_or_else(|e| panic!("{e}"));

        let (want, oh, ow) = naive_conv(&xs, (n, h, w, c), &vals(54, 0.1), 3, 2, false);
        assert_eq!(out[0].dims(), [n, oh, ow, 3]);
        assert_eq!((oh, ow), (3, 3));
        let b = vals(3, 0.7);
        for (i, (got, want)) in host(&out[0]).iter().zip(&want).enumerate() {
            let want = (want + f64::from(b[i % 3])).max(0.0);
            assert!(
                (f64::from(*got) - want).abs() < 1e-5,
                "conv[{i}]: {got} vs {want}"
            );
        }

        let (want, _, _) = naive_conv(&xs, (n, h, w, c), &vals(18, 1.3), 2, 1, true);
        assert_eq!(out[1].dims(), [n, h, w, c]);
        let b2 = vals(2, 2.1);
        for (i, (got, want)) in host(&out[1]).iter().zip(&want).enumerate() {
            let v = want + f64::from(b2[i % 2]);
            let want = if v < 0.0 { 0.1 * v } else { v };
            assert!(
                (f64::from(*got) - want).abs() < 1e-5,
                "depthwise[{i}]: {got} vs {want}"
            );
        }
        // The bias add was folded into the depthwise conv: its value cannot be fetched.
        assert_fails(g.run(&[("x", &x)], &["dadd"]), &["dadd", "fused"]);
    }

    #[test]
    fn run_errors_name_the_node_the_op_and_the_input() {
        let g = load_tiny();
        assert_eq!(
            g.unsupported_ops(&["weird"]).ok(),
            Some(vec![("weird".to_string(), "FancyOp".to_string())])
        );
        assert_eq!(g.unsupported_ops(&["conv"]).ok(), Some(vec![]));
        let x = t(vec![0.0; 60], &[1, 5, 6, 2]);
        // An unsupported op fails only when the outputs need it, naming node, op and file.
        assert!(g.run(&[("x", &x)], &["conv"]).is_ok());
        let weird = ["`weird`", "FancyOp", "not supported", "tiny.json"];
        assert_fails(g.run(&[("x", &x)], &["weird"]), &weird);
        assert_fails(g.run(&[("x", &x)], &["nothing"]), &["nothing"]);
        let bad = t(vec![0.0; 50], &[1, 5, 5, 2]);
        let bad_shape = ["input `x`", "[1, 5, 5, 2]"];
        assert_fails(g.run(&[("x", &bad)], &["conv"]), &bad_shape);
        assert_fails(g.run(&[("conv", &x)], &["conv"]), &["not a Placeholder"]);
        assert_fails(g.run(&[], &["conv"]), &["not fed"]);
    }

    #[test]
    fn order_is_topological_and_cycles_are_refused() {
        let g = load_tiny();
        let pos: Vec<usize> = {
            let mut p = vec![0; g.nodes.len()];
            for (k, &i) in g.order.iter().enumerate() {
                p[i] = k;
            }
            p
        };
        for (i, n) in g.nodes.iter().enumerate() {
            for &(s, _) in &n.inputs {
                assert!(pos[s] < pos[i], "{} before {}", g.nodes[s].name, n.name);
            }
        }
        let cyclic = serde_json::json!({
            "format": "graph-model",
            "modelTopology": {"node": [
                {"name": "a", "op": "Identity", "input": ["b"]},
                {"name": "b", "op": "Identity", "input": ["a"]},
            ]},
        });
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cycle.json");
        std::fs::write(&path, cyclic.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_fails(TfjsGraph::load(&path, &Device::Cpu), &["cycle", "`a`"]);
    }
}
