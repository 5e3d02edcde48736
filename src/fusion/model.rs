//! The fusion network: GATv2 layers over a scene graph, and its three heads —
//! per cross-modal edge *association* (this track makes this sound), per audio node
//! *off-screen* (no visible source), per graph *audio-visual event class*.
//!
//! Weights live in a safetensors file beside a JSON config ([`FusionNetConfig`]); loading
//! checks every tensor's presence, shape and dtype against the config and names the file
//! and the tensor in its errors, so a wrong or truncated file stops the pipeline at start.

use super::gnn::{EdgeIndex, GatV2, GatV2Config};
use candle_core::{DType, Device, Module, Result as CResult, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Shape of the network (stored as JSON beside the weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionNetConfig {
    /// Node feature size.
    pub node_dim: usize,
    /// Edge feature size.
    pub edge_dim: usize,
    /// Hidden size per head.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// GATv2 layers (2–3).
    pub layers: usize,
    /// Window-level event classes.
    pub event_classes: usize,
}

impl Default for FusionNetConfig {
    fn default() -> Self {
        Self {
            node_dim: 12,
            edge_dim: 8,
            hidden: 16,
            heads: 2,
            layers: 2,
            event_classes: 4,
        }
    }
}

/// Errors of loading fusion weights.
#[derive(Debug, thiserror::Error)]
pub enum FusionModelError {
    /// The file is missing, unreadable or not a safetensors file (e.g. truncated).
    #[error("fusion weights {path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A tensor the config needs is absent.
    #[error("fusion weights {path}: tensor `{tensor}` is missing (expected shape {expected:?})")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its expected shape.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("fusion weights {path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shape found.
        found: Vec<usize>,
        /// Shape expected.
        expected: Vec<usize>,
    },
    /// Building the network failed.
    #[error("fusion weights {path}: {reason}")]
    Build {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What the network says about one graph.
#[derive(Debug, Clone)]
pub struct FusionOutput {
    /// Association logit per cross-modal edge (in the order given).
    pub association: Tensor,
    /// Off-screen logit per audio node (in the order given).
    pub offscreen: Tensor,
    /// Event-class logits of the graph, `[event_classes]`.
    pub event: Tensor,
}

/// The network.
#[derive(Debug, Clone)]
pub struct FusionNet {
    layers: Vec<GatV2>,
    assoc: Linear,
    offscreen: Linear,
    event: Linear,
    cfg: FusionNetConfig,
}

impl FusionNet {
    /// Every tensor name with its shape, for `cfg`.
    pub fn expected_tensors(cfg: &FusionNetConfig) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        let hc = cfg.heads * cfg.hidden;
        for l in 0..cfg.layers {
            let in_dim = if l == 0 { cfg.node_dim } else { hc };
            let p = format!("gnn.{l}");
            v.push((format!("{p}.lin_l.weight"), vec![hc, in_dim]));
            v.push((format!("{p}.lin_l.bias"), vec![hc]));
            v.push((format!("{p}.lin_r.weight"), vec![hc, in_dim]));
            v.push((format!("{p}.lin_r.bias"), vec![hc]));
            v.push((format!("{p}.lin_edge.weight"), vec![hc, cfg.edge_dim]));
            v.push((format!("{p}.att"), vec![cfg.heads, cfg.hidden]));
            v.push((format!("{p}.bias"), vec![hc]));
        }
        v.push(("assoc.weight".into(), vec![1, 2 * hc + cfg.edge_dim]));
        v.push(("assoc.bias".into(), vec![1]));
        v.push(("offscreen.weight".into(), vec![1, 2 * hc]));
        v.push(("offscreen.bias".into(), vec![1]));
        v.push(("event.weight".into(), vec![cfg.event_classes, 2 * hc]));
        v.push(("event.bias".into(), vec![cfg.event_classes]));
        v
    }

    /// The network from `vb` (names as [`FusionNet::expected_tensors`]).
    pub fn new(vb: VarBuilder, cfg: FusionNetConfig) -> CResult<Self> {
        let hc = cfg.heads * cfg.hidden;
        let layers = (0..cfg.layers)
            .map(|l| {
                GatV2::new(
                    vb.pp(format!("gnn.{l}")),
                    GatV2Config {
                        in_dim: if l == 0 { cfg.node_dim } else { hc },
                        head_dim: cfg.hidden,
                        heads: cfg.heads,
                        edge_dim: cfg.edge_dim,
                        concat: true,
                        negative_slope: 0.2,
                    },
                )
            })
            .collect::<CResult<Vec<_>>>()?;
        Ok(Self {
            layers,
            assoc: candle_nn::linear(2 * hc + cfg.edge_dim, 1, vb.pp("assoc"))?,
            offscreen: candle_nn::linear(2 * hc, 1, vb.pp("offscreen"))?,
            event: candle_nn::linear(2 * hc, cfg.event_classes, vb.pp("event"))?,
            cfg,
        })
    }

    /// Loads weights from a safetensors file, checking each tensor first.
    pub fn load(
        path: &Path,
        cfg: FusionNetConfig,
        device: &Device,
    ) -> Result<Self, FusionModelError> {
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|e| FusionModelError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        for (name, expected) in Self::expected_tensors(&cfg) {
            match tensors.get(&name) {
                None => {
                    return Err(FusionModelError::Missing {
                        path: path.to_path_buf(),
                        tensor: name,
                        expected,
                    })
                }
                Some(t) if t.dims() != expected.as_slice() => {
                    return Err(FusionModelError::Shape {
                        path: path.to_path_buf(),
                        tensor: name,
                        found: t.dims().to_vec(),
                        expected,
                    })
                }
                Some(_) => {}
            }
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(vb, cfg).map_err(|e| FusionModelError::Build {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The network's shape.
    pub fn config(&self) -> FusionNetConfig {
        self.cfg
    }

    /// Runs the layers on `x [N, node_dim]` with `edge_attr [E, edge_dim]`; `cross` lists
    /// the cross-modal edges `(edge index, audio node, track node)` to score, `audio` the
    /// audio nodes to score for off-screen.
    pub fn forward(
        &self,
        x: &Tensor,
        edges: &EdgeIndex,
        edge_attr: &Tensor,
        cross: &[(u32, u32, u32)],
        audio: &[u32],
    ) -> CResult<FusionOutput> {
        let mut h = x.clone();
        for layer in &self.layers {
            let (out, _) = layer.forward(&h, edges, Some(edge_attr))?;
            h = out.relu()?;
        }
        let dev = x.device();
        let hc = self.cfg.heads * self.cfg.hidden;
        // Graph summary: mean of the nodes (permutation-invariant).
        let mean = h.mean(0)?; // [hc]
        let idx = |v: Vec<u32>| Tensor::from_vec(v.clone(), v.len(), dev);
        let association = if cross.is_empty() {
            Tensor::zeros(0, h.dtype(), dev)?
        } else {
            let ha = h.index_select(&idx(cross.iter().map(|c| c.1).collect())?, 0)?;
            let ht = h.index_select(&idx(cross.iter().map(|c| c.2).collect())?, 0)?;
            let ea = edge_attr.index_select(&idx(cross.iter().map(|c| c.0).collect())?, 0)?;
            self.assoc
                .forward(&Tensor::cat(&[&ha, &ht, &ea], D::Minus1)?)?
                .squeeze(D::Minus1)?
        };
        let offscreen = if audio.is_empty() {
            Tensor::zeros(0, h.dtype(), dev)?
        } else {
            let ha = h.index_select(&idx(audio.to_vec())?, 0)?;
            let ctx = mean.unsqueeze(0)?.broadcast_as((audio.len(), hc))?;
            self.offscreen
                .forward(&Tensor::cat(&[&ha, &ctx.contiguous()?], D::Minus1)?)?
                .squeeze(D::Minus1)?
        };
        let max = h.max(0)?;
        let event = self
            .event
            .forward(&Tensor::cat(&[&mean, &max], 0)?.unsqueeze(0)?)?
            .squeeze(0)?;
        Ok(FusionOutput {
            association,
            offscreen,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn small() -> FusionNetConfig {
        FusionNetConfig {
            node_dim: 4,
            edge_dim: 3,
            hidden: 4,
            heads: 2,
            layers: 2,
            event_classes: 3,
        }
    }

    /// 0: audio, 1–2: tracks, 3: scene; cross edges 0↔1, 0↔2; self-loops; scene → audio.
    const EDGES: [(u32, u32); 9] = [
        (0, 1),
        (1, 0),
        (0, 2),
        (2, 0),
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (3, 0),
    ];

    fn graph(dev: &Device) -> (Tensor, EdgeIndex, Tensor) {
        // 0: audio, 1–2: tracks, 3: scene; cross edges 0↔1, 0↔2; self-loops.
        let x = Tensor::new(
            &[
                [1f32, 0., 0.2, 0.1],
                [0., 1., 0.5, 0.3],
                [0., 1., 0.1, 0.9],
                [0., 0., 1., 0.],
            ],
            dev,
        )
        .unwrap();
        let edges = EDGES;
        let ea: Vec<f32> = (0..edges.len() * 3)
            .map(|i| ((i * 7) % 5) as f32 / 5.0)
            .collect();
        (
            x,
            EdgeIndex::new(&edges, 4, dev).unwrap(),
            Tensor::from_vec(ea, (edges.len(), 3), dev).unwrap(),
        )
    }

    #[test]
    fn heads_have_the_shapes_of_the_graph() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net = FusionNet::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), small()).unwrap();
        let (x, e, ea) = graph(&dev);
        let out = net
            .forward(&x, &e, &ea, &[(1, 0, 1), (3, 0, 2)], &[0])
            .unwrap();
        assert_eq!(out.association.dims(), &[2]);
        assert_eq!(out.offscreen.dims(), &[1]);
        assert_eq!(out.event.dims(), &[3]);
        // The varmap holds exactly the tensors `expected_tensors` lists.
        let mut names: Vec<String> = vm.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        let mut want: Vec<String> = FusionNet::expected_tensors(&small())
            .into_iter()
            .map(|t| t.0)
            .collect();
        want.sort();
        assert_eq!(names, want);
    }

    /// A saved network loads back to the same outputs; a wrong shape, a missing tensor and a
    /// truncated file are errors that name the file and the tensor.
    #[test]
    fn loading_checks_every_tensor_and_names_file_and_tensor() {
        let dev = Device::Cpu;
        let dir = std::env::temp_dir().join(format!("avsense-fusion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vm = VarMap::new();
        let net = FusionNet::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), small()).unwrap();
        let good = dir.join("fusion.safetensors");
        vm.save(&good).unwrap();
        let back = FusionNet::load(&good, small(), &dev).unwrap();
        let (x, e, ea) = graph(&dev);
        let a: Vec<f32> = net
            .forward(&x, &e, &ea, &[(1, 0, 1)], &[0])
            .unwrap()
            .event
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = back
            .forward(&x, &e, &ea, &[(1, 0, 1)], &[0])
            .unwrap()
            .event
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);

        let wider = FusionNetConfig {
            hidden: 8,
            ..small()
        };
        let err = FusionNet::load(&good, wider, &dev).unwrap_err().to_string();
        assert!(
            err.contains("fusion.safetensors")
                && err.contains("gnn.0.lin_l.weight")
                && err.contains("expected [16, 4]"),
            "{err}"
        );
        let deeper = FusionNetConfig {
            layers: 3,
            ..small()
        };
        let err = FusionNet::load(&good, deeper, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gnn.2.") && err.contains("missing"), "{err}");

        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.join("truncated.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = FusionNet::load(&cut, small(), &dev)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("truncated.safetensors") && err.contains("cannot read"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Relabelling the nodes leaves the graph's event logits and each edge's association
    /// logit unchanged.
    #[test]
    fn outputs_do_not_depend_on_node_order() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let net = FusionNet::new(VarBuilder::from_varmap(&vm, DType::F32, &dev), small()).unwrap();
        let (x, e, ea) = graph(&dev);
        let out = net
            .forward(&x, &e, &ea, &[(0, 0, 1), (2, 0, 2)], &[0])
            .unwrap();
        // Reverse the node order: new id = 3 − old.
        let xr = Tensor::stack(
            &(0..4).rev().map(|i| x.get(i).unwrap()).collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let edges = EDGES;
        let er: Vec<(u32, u32)> = edges.iter().map(|(s, d)| (3 - s, 3 - d)).collect();
        let er = EdgeIndex::new(&er, 4, &dev).unwrap();
        let outr = net
            .forward(&xr, &er, &ea, &[(0, 3, 2), (2, 3, 1)], &[3])
            .unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let a: Vec<f32> = a.to_vec1().unwrap();
            let b: Vec<f32> = b.to_vec1().unwrap();
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5)
        };
        assert!(close(&out.event, &outr.event));
        assert!(close(&out.association, &outr.association));
        assert!(close(&out.offscreen, &outr.offscreen));
    }
}
