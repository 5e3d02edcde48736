//! A small TensorFlow.js graph-model executor on candle.
//!
//! Loads a TF.js `model.json` (`format: graph-model`: a TensorFlow `GraphDef` as JSON plus a
//! weights manifest) and its `.bin` shards, and evaluates the graph with candle ops:
//!
//! - **Weights**: the manifest's groups are read in order, each group's shards concatenated;
//!   every entry takes `∏shape × bytes` in that stream. float32/int32/bool are stored as is;
//!   `quantization` entries are dequantised as TF.js does: `float16` exactly (bit
//!   conversion), `uint8`/`uint16` affinely (`q · scale + min`, rounded for int32).
//! - **Graph**: nodes are sorted topologically once; a data input `name:k` is output `k` of
//!   node `name`; `^name` control inputs are dropped (these graphs have no side effects).
//!   Every node whose inputs are all constant is evaluated once at load (the ONNX→TF
//!   converter leaves shape arithmetic such as `SparseToDense` + `AddV2` in the graph), and
//!   convolution filters are converted to candle's layout once at load.
//! - **Run**: [`TfjsGraph::run`] evaluates only the ancestors of the requested outputs, so
//!   a graph whose tail is post-processing (CenterNet's `TopKV2`/`GatherV2`) runs to its raw
//!   heads without those ops; each intermediate value is dropped after its last use.
//!
//! ## Layout: TF's logical layout, candle's strided views
//!
//! Values keep exactly the logical shape TensorFlow gives them (NHWC where the graph says
//! NHWC, NCHW where an ONNX-converted graph transposes to NCHW), so every op implements
//! TF's semantics on TF's axes and nothing in the executor re-interprets axes. Their
//! *memory* order is free: `Tensor::permute` is a zero-copy strided view, so a `Transpose`
//! costs nothing, and each op reads its input in whatever order it lies in. Converting the
//! whole graph to NCHW instead would mean rewriting every axis attribute (concat, split,
//! mean, pad, reshape, strided slice) and could silently go wrong on reshapes; the view
//! approach is correct by construction.
//!
//! On the CPU the data stays in TF's channels-last order end to end. A regular conv on
//! an NHWC graph runs [`crate::ops::conv2d_nhwc_cpu`]: TF's filter read in place,
//! one gemm per block of output pixels writing NHWC rows directly, bias and activation
//! applied to each block while in cache. So in BlazeFace the residual adds, the depthwise
//! convs (the direct NHWC kernel of [`crate::ops::depthwise_conv2d`]) and the max
//! pools after a conv all read contiguous NHWC data, and in NanoDet, whose ONNX→TF
//! converter wraps every conv in NCHW→NHWC and NHWC→NCHW `Transpose`s, the next conv's
//! input is again the contiguous NHWC buffer seen through two views. (Returning the
//! NCHW-contiguous `conv2d_cpu` result instead, as this executor first did, left every
//! element-wise op of BlazeFace mixing two memory orders on candle's slow strided path:
//! 9 ms of 40 for the residual adds alone.) Where an op still meets a permuted view it
//! works in the view's memory order rather than candle's logical one: element-wise binary
//! ops on operands of one shape and order ([`crate::ops::zip_map_f32`]), unary
//! activations, channel concatenations and max pools (which also take NCHW views).
//!
//! At load, chains are folded so that no pass over memory is spent on them: the
//! converter's `Conv2D → Add(bias) → Transpose → LeakyRelu` into the conv's epilogue (in
//! TF.js's order and precision); `Add → Relu` into one pass (BlazeFace's residual blocks);
//! a spatial `Pad` (→ `Transpose`) before a VALID conv or max pool into that op's padding
//! (NanoDet pads every 3×3 conv's input so). On other devices the same graph runs on
//! candle's NCHW convolution with the same views and folds.
//!
//! ## Why an executor rather than hand-written model structs
//!
//! The TF.js models avsense uses (NanoDet, CenterNet, BlazeFace) share one small op set
//! (convolutions, element-wise arithmetic and activations, resize, concat/split, pad, pool,
//! reshape/transpose), and their weights are addressed by graph-node names that the
//! converter generated (`PartitionedCall/split_12`, `unknown_24`), not by a module
//! hierarchy a `VarBuilder` could follow. One executor of a few dozen ops runs all three straight
//! from the published files, keeps their parity with TF.js a matter of op semantics (tested
//! once per op), and leaves model-specific code to pre- and post-processing.
//!
//! ## Supported ops
//!
//! [`SUPPORTED_OPS`]. Anything else fails with [`TfjsError::UnsupportedOp`] naming the node
//! and op — at run time, and only if the requested outputs depend on it.
//!
//! Batching: graphs declare batch 1, and reshape targets are baked for batch 1
//! (NanoDet: `[1, 80, -1]`). When the fed batch `B` differs from the declared batch, a
//! `Reshape` whose target starts with the declared batch while its input starts with `B`
//! gets `B` instead (axis 0 is the batch axis in every graph this runs).

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// The ops the executor implements.
pub const SUPPORTED_OPS: &[&str] = &[
    "Const",
    "Placeholder",
    "Identity",
    "NoOp",
    "Conv2D",
    "_FusedConv2D",
    "DepthwiseConv2dNative",
    "FusedDepthwiseConv2dNative",
    "BiasAdd",
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "RealDiv",
    "Maximum",
    "Minimum",
    "FloorDiv",
    "FloorMod",
    "Relu",
    "Relu6",
    "LeakyRelu",
    "Sigmoid",
    "ResizeBilinear",
    "ConcatV2",
    "Pad",
    "PadV2",
    "MaxPool",
    "AvgPool",
    "Mean",
    "Reshape",
    "Transpose",
    "Squeeze",
    "ExpandDims",
    "SplitV",
    "Split",
    "StridedSlice",
    "SparseToDense",
    "Cast",
];

/// Errors of the TF.js loader and executor. Each names the model file and, where one is
/// concerned, the node, its op and the weight or tensor.
#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The model JSON does not parse or is not a graph model.
    #[error("{path}: not a TF.js graph model: {reason}")]
    Format {
        /// The model.json.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A weight cannot be decoded (short shard, unknown dtype or quantisation).
    #[error("{path}: weight `{weight}`: {reason}")]
    Weight {
        /// The model.json.
        path: PathBuf,
        /// The weight (= node) name.
        weight: String,
        /// What is wrong.
        reason: String,
    },
    /// A node's op is not implemented.
    #[error("{path}: node `{node}`: op `{op}` is not supported (supported: {})", SUPPORTED_OPS.join(", "))]
    UnsupportedOp {
        /// The model.json.
        path: PathBuf,
        /// The node name.
        node: String,
        /// Its op.
        op: String,
    },
    /// A node failed: bad attributes, shapes that do not fit, or a candle error.
    #[error("{path}: node `{node}` ({op}): {reason}")]
    Node {
        /// The model.json.
        path: PathBuf,
        /// The node name.
        node: String,
        /// Its op.
        op: String,
        /// What went wrong (with the shapes concerned).
        reason: String,
    },
    /// A requested tensor is not in the graph.
    #[error("{path}: no tensor `{name}` in the graph")]
    UnknownTensor {
        /// The model.json.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A fed input does not match its placeholder, or a placeholder was not fed.
    #[error("{path}: input `{name}`: {reason}")]
    Input {
        /// The model.json.
        path: PathBuf,
        /// The placeholder.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, TfjsError>;

/// Time spent per op type: (op, total time, node count), most expensive first.
pub type OpProfile = Vec<(String, std::time::Duration, usize)>;

/// A tensor's name and shape as the model's signature declares them (`-1`: any size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name without the `:0` suffix (a node name).
    pub name: String,
    /// Declared shape; `-1` where the size is free.
    pub shape: Vec<i64>,
}

// ---------------------------------------------------------------------------------------
// model.json

#[derive(Deserialize)]
struct ModelJson {
    format: Option<String>,
    #[serde(rename = "modelTopology")]
    model_topology: Topology,
    #[serde(rename = "weightsManifest", default)]
    weights_manifest: Vec<WeightGroup>,
    #[serde(default)]
    signature: Option<serde_json::Value>,
    #[serde(rename = "userDefinedMetadata", default)]
    user_defined_metadata: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Topology {
    #[serde(default)]
    node: Vec<NodeJson>,
}

#[derive(Deserialize)]
struct NodeJson {
    name: String,
    op: String,
    #[serde(default)]
    input: Vec<String>,
    #[serde(default)]
    attr: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct WeightGroup {
    paths: Vec<String>,
    weights: Vec<WeightEntry>,
}

#[derive(Deserialize)]
struct WeightEntry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    #[serde(default)]
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    min: Option<f64>,
}

/// A decoded weight, on the host.
enum HostWeight {
    F32(Vec<f32>, Vec<usize>),
    I64(Vec<i64>, Vec<usize>),
}

/// Exact IEEE half → single conversion (subnormals, infinities and NaN included).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: shift the mantissa up until its leading 1 is the implicit bit.
            let mut e: u32 = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn decode_weights(path: &Path, groups: &[WeightGroup]) -> Result<HashMap<String, HostWeight>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = HashMap::new();
    for group in groups {
        let mut data = Vec::new();
        for shard in &group.paths {
            let p = dir.join(shard);
            let mut bytes =
                std::fs::read(&p).map_err(|source| TfjsError::Io { path: p, source })?;
            data.append(&mut bytes);
        }
        let mut off = 0usize;
        for w in &group.weights {
            let n: usize = w.shape.iter().product();
            let bad = |reason: String| TfjsError::Weight {
                path: path.to_path_buf(),
                weight: w.name.clone(),
                reason,
            };
            let (elem, stored) = match &w.quantization {
                Some(q) => match q.dtype.as_str() {
                    "uint8" => (1, q.dtype.as_str()),
                    "uint16" | "float16" => (2, q.dtype.as_str()),
                    other => return Err(bad(format!("unknown quantization dtype `{other}`"))),
                },
                None => match w.dtype.as_str() {
                    "float32" | "int32" => (4, w.dtype.as_str()),
                    "bool" => (1, "bool"),
                    other => return Err(bad(format!("unsupported dtype `{other}`"))),
                },
            };
            let len = n * elem;
            let bytes = data.get(off..off + len).ok_or_else(|| {
                bad(format!(
                    "needs bytes {off}..{} but the shards of its group hold {} bytes (truncated .bin?)",
                    off + len,
                    data.len()
                ))
            })?;
            off += len;
            let shape = w.shape.clone();
            let affine = |q: &Quantization| -> Result<(f64, f64)> {
                match (q.scale, q.min) {
                    (Some(s), Some(m)) => Ok((s, m)),
                    _ => Err(bad(format!(
                        "{} quantization without scale and min",
                        q.dtype
                    ))),
                }
            };
            let weight = match (w.dtype.as_str(), stored, &w.quantization) {
                ("float32", "float32", None) => HostWeight::F32(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    shape,
                ),
                ("int32", "int32", None) => HostWeight::I64(
                    bytes
                        .chunks_exact(4)
                        .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                        .collect(),
                    shape,
                ),
                ("bool", "bool", None) => {
                    HostWeight::I64(bytes.iter().map(|&b| i64::from(b != 0)).collect(), shape)
                }
                ("float32", "float16", Some(_)) => HostWeight::F32(
                    bytes
                        .chunks_exact(2)
                        .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                        .collect(),
                    shape,
                ),
                (dt @ ("float32" | "int32"), "uint8" | "uint16", Some(q)) => {
                    let (scale, min) = affine(q)?;
                    let raw: Vec<f64> = if elem == 1 {
                        bytes.iter().map(|&b| f64::from(b)).collect()
                    } else {
                        bytes
                            .chunks_exact(2)
                            .map(|b| f64::from(u16::from_le_bytes([b[0], b[1]])))
                            .collect()
                    };
                    if dt == "float32" {
                        HostWeight::F32(
                            raw.iter().map(|&v| (v * scale + min) as f32).collect(),
                            shape,
                        )
                    } else {
                        HostWeight::I64(
                            raw.iter()
                                .map(|&v| (v * scale + min).round() as i64)
                                .collect(),
                            shape,
                        )
                    }
                }
                (dt, st, _) => {
                    return Err(bad(format!("dtype {dt} stored as {st} is not supported")))
                }
            };
            out.insert(w.name.clone(), weight);
        }
        if off != data.len() {
            return Err(TfjsError::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "weights group {:?} describes {off} bytes but its shards hold {}",
                    group.paths,
                    data.len()
                ),
            });
        }
    }
    Ok(out)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s
        .as_bytes()
        .iter()
        .filter(|&&c| c != b'=' && !c.is_ascii_whitespace())
    {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn spec_list(v: Option<&serde_json::Value>) -> Vec<TensorSpec> {
    let Some(map) = v.and_then(|v| v.as_object()) else {
        return Vec::new();
    };
    let mut out: Vec<TensorSpec> = map
        .iter()
        .map(|(key, spec)| {
            let name = spec.get("name").and_then(|n| n.as_str()).unwrap_or(key);
            let name = name.strip_suffix(":0").unwrap_or(name).to_string();
            let shape = spec
                .pointer("/tensorShape/dim")
                .and_then(|d| d.as_array())
                .map(|dims| {
                    dims.iter()
                        .map(|d| json_i64(d.get("size")).unwrap_or(-1))
                        .collect()
                })
                .unwrap_or_default();
            TensorSpec { name, shape }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// TF's JSON writes int64 attributes as strings ("3") and int32 as numbers.
fn json_i64(v: Option<&serde_json::Value>) -> Option<i64> {
    let v = v?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

// ---------------------------------------------------------------------------------------
// The graph

/// A value flowing through the graph: floats on the executor's device; integers (shapes,
/// axes, permutations, paddings) as I64 tensors on the CPU.
#[derive(Clone, Debug)]
enum Val {
    F(Tensor),
    I(Tensor),
}

impl Val {
    fn tensor(&self) -> &Tensor {
        match self {
            Val::F(t) | Val::I(t) => t,
        }
    }
}

struct Node {
    name: String,
    op: String,
    /// (producer node, output index)
    inputs: Vec<(usize, usize)>,
    attr: serde_json::Map<String, serde_json::Value>,
}

/// A loaded TF.js graph model, ready to run on one device.
pub struct TfjsGraph {
    path: PathBuf,
    device: Device,
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    /// All nodes, topologically sorted.
    order: Vec<usize>,
    /// Values of constant nodes (Const and everything folded from constants).
    consts: Vec<Option<Vec<Val>>>,
    /// Convolution filters in candle's layout, per conv node.
    kernels: HashMap<usize, Tensor>,
    /// Bias + activation folded into a plain conv from the nodes after it (see `fuse`).
    epilogues: HashMap<usize, Epilogue>,
    /// Nodes whose work a conv's epilogue already did: they pass input 0 through.
    passthrough: HashSet<usize>,
    /// Nodes inside a fused chain, whose own values no longer exist (cannot be fetched).
    fused_inner: HashSet<usize>,
    /// `Add`s that also apply the activation after them (see `fuse_add_activation`).
    add_acts: HashMap<usize, Act>,
    /// Zero padding `[top, bottom, left, right]` a conv applies itself, taken over from
    /// the `Pad` before it (see `fuse_pads`).
    conv_pads: HashMap<usize, [usize; 4]>,
    /// The same for a `MaxPool`, with the `Pad`'s constant (see `fuse_pads`).
    pool_pads: HashMap<usize, ([usize; 4], f32)>,
    placeholders: Vec<TensorSpec>,
    signature_inputs: Vec<TensorSpec>,
    signature_outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for TfjsGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfjsGraph")
            .field("path", &self.path)
            .field("nodes", &self.nodes.len())
            .field("inputs", &self.placeholders)
            .finish()
    }
}

/// How an op failed, before the node's name is attached.
enum OpError {
    Unsupported,
    Msg(String),
}

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        OpError::Msg(e.to_string())
    }
}

type OpResult<T> = std::result::Result<T, OpError>;

fn msg<T>(s: impl Into<String>) -> OpResult<T> {
    Err(OpError::Msg(s.into()))
}

/// What a run needs to know besides the node's inputs.
#[derive(Clone, Copy)]
struct Ctx {
    batch: usize,
    declared_batch: usize,
}

impl TfjsGraph {
    /// Loads `model.json` and the weight shards it lists (paths relative to its folder),
    /// folds constant sub-graphs and prepares convolution filters for `device`.
    pub fn load(model_json: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = model_json.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|source| TfjsError::Io {
            path: path.clone(),
            source,
        })?;
        let json: ModelJson = serde_json::from_str(&text).map_err(|e| TfjsError::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(f) = &json.format {
            if f != "graph-model" {
                return Err(TfjsError::Format {
                    path,
                    reason: format!("format is `{f}`, expected `graph-model`"),
                });
            }
        }
        let mut weights = decode_weights(&path, &json.weights_manifest)?;

        let mut index = HashMap::new();
        for (i, n) in json.model_topology.node.iter().enumerate() {
            if index.insert(n.name.clone(), i).is_some() {
                return Err(TfjsError::Format {
                    path,
                    reason: format!("two nodes are named `{}`", n.name),
                });
            }
        }
        let mut nodes = Vec::with_capacity(json.model_topology.node.len());
        for n in json.model_topology.node {
            let mut inputs = Vec::new();
            for inp in &n.input {
                if inp.starts_with('^') {
                    continue; // control dependency
                }
                let (name, k) = split_output(inp);
                let Some(&src) = index.get(name) else {
                    return Err(TfjsError::Format {
                        path,
                        reason: format!(
                            "node `{}` reads `{inp}`, which is not in the graph",
                            n.name
                        ),
                    });
                };
                inputs.push((src, k));
            }
            nodes.push(Node {
                name: n.name,
                op: n.op,
                inputs,
                attr: n.attr,
            });
        }

        // Kahn's algorithm; ties keep file order.
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
        if order.len() != nodes.len() {
            let stuck = (0..nodes.len())
                .find(|&i| indeg[i] > 0)
                .map(|i| nodes[i].name.clone());
            return Err(TfjsError::Format {
                path,
                reason: format!(
                    "the graph has a cycle (through `{}`); control flow is not supported",
                    stuck.unwrap_or_default()
                ),
            });
        }

        let placeholders: Vec<TensorSpec> = nodes
            .iter()
            .filter(|n| n.op == "Placeholder")
            .map(|n| TensorSpec {
                name: n.name.clone(),
                shape: n
                    .attr
                    .get("shape")
                    .and_then(|s| s.pointer("/shape/dim"))
                    .and_then(|d| d.as_array())
                    .map(|dims| {
                        dims.iter()
                            .map(|d| json_i64(d.get("size")).unwrap_or(-1))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let signature = json.signature.or_else(|| {
            json.user_defined_metadata
                .and_then(|m| m.get("signature").cloned())
        });
        let signature_inputs = spec_list(signature.as_ref().and_then(|s| s.get("inputs")));
        let signature_outputs = spec_list(signature.as_ref().and_then(|s| s.get("outputs")));

        let mut graph = TfjsGraph {
            path,
            device: device.clone(),
            consts: (0..nodes.len()).map(|_| None).collect(),
            nodes,
            index,
            order,
            kernels: HashMap::new(),
            epilogues: HashMap::new(),
            passthrough: HashSet::new(),
            fused_inner: HashSet::new(),
            add_acts: HashMap::new(),
            conv_pads: HashMap::new(),
            pool_pads: HashMap::new(),
            placeholders,
            signature_inputs,
            signature_outputs,
        };
        let declared_batch = graph.declared_batch();
        let ctx = Ctx {
            batch: declared_batch,
            declared_batch,
        };

        // Constants, then everything computable from constants alone.
        for k in 0..graph.order.len() {
            let i = graph.order[k];
            let node = &graph.nodes[i];
            if node.op == "Const" {
                let w = weights
                    .remove(&node.name)
                    .ok_or_else(|| TfjsError::Weight {
                        path: graph.path.clone(),
                        weight: node.name.clone(),
                        reason: "Const node without an entry in weightsManifest".into(),
                    })?;
                let val = match w {
                    HostWeight::F32(v, s) => Tensor::from_vec(v, s, device).map(Val::F),
                    HostWeight::I64(v, s) => Tensor::from_vec(v, s, &Device::Cpu).map(Val::I),
                }
                .map_err(|e| TfjsError::Weight {
                    path: graph.path.clone(),
                    weight: node.name.clone(),
                    reason: e.to_string(),
                })?;
                graph.consts[i] = Some(vec![val]);
                continue;
            }
            if node.op == "Placeholder" || node.inputs.is_empty() {
                continue;
            }
            if node.inputs.iter().all(|&(s, _)| graph.consts[s].is_some()) {
                let ins: Option<Vec<&Val>> = node
                    .inputs
                    .iter()
                    .map(|&(s, k)| graph.consts[s].as_ref().and_then(|v| v.get(k)))
                    .collect();
                // An op that cannot be folded is left for run time, where its error (if
                // the requested outputs need it) names the node.
                let folded = match ins {
                    Some(ins) => graph.eval(i, &ins, ctx).ok(),
                    None => None,
                };
                graph.consts[i] = folded;
            }
        }

        // Convolution filters → candle layout, once.
        for i in 0..graph.nodes.len() {
            let node = &graph.nodes[i];
            let depthwise = match node.op.as_str() {
                "Conv2D" | "_FusedConv2D" => false,
                "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative" => true,
                _ => continue,
            };
            let Some(&(src, k)) = node.inputs.get(1) else {
                continue;
            };
            let Some(Val::F(filter)) = graph.consts[src].as_ref().and_then(|v| v.get(k)) else {
                continue;
            };
            let prepared = prepare_filter(filter, depthwise).map_err(|e| TfjsError::Node {
                path: graph.path.clone(),
                node: node.name.clone(),
                op: node.op.clone(),
                reason: match e {
                    OpError::Msg(m) => format!("filter: {m}"),
                    OpError::Unsupported => "filter layout".into(),
                },
            })?;
            graph.kernels.insert(i, prepared);
        }
        graph.fuse(&users);
        graph.fuse_add_activation(&users);
        graph.fuse_pads(&users);
        Ok(graph)
    }

    /// Folds `Conv2D → Add(const bias[C]) [→ Transpose] → Relu|Relu6|LeakyRelu|Sigmoid`
    /// chains (each link the only user of the previous) into the conv's epilogue, which
    /// runs in one pass over the result (over each block of output rows, on the CPU's NHWC
    /// path). The ONNX→TF converter emits exactly
    /// this for every conv layer; unfused, the bias add and the activation each run on a
    /// strided NHWC view, which costs as much as a third of the convolutions. The
    /// activation commutes with the transpose, so the chain's output is unchanged.
    fn fuse(&mut self, users: &[Vec<usize>]) {
        let only_user = |i: usize| match users[i][..] {
            [u] => Some(u),
            _ => None,
        };
        for conv in 0..self.nodes.len() {
            let node = &self.nodes[conv];
            if !matches!(node.op.as_str(), "Conv2D" | "DepthwiseConv2dNative")
                || self.attr_s(conv, "data_format").as_deref() == Some("NCHW")
            {
                continue;
            }
            let Some(kernel) = self.kernels.get(&conv) else {
                continue;
            };
            let c_out = kernel.dims()[0];
            let Some(add) = only_user(conv) else { continue };
            let add_node = &self.nodes[add];
            if !matches!(add_node.op.as_str(), "Add" | "AddV2" | "BiasAdd")
                || add_node.inputs.len() != 2
            {
                continue;
            }
            let other = match (add_node.inputs[0], add_node.inputs[1]) {
                ((a, 0), b) if a == conv => b,
                (b, (a, 0)) if a == conv && add_node.op != "BiasAdd" => b,
                _ => continue,
            };
            let bias = match self.consts[other.0].as_ref().and_then(|v| v.get(other.1)) {
                Some(Val::F(t)) if t.dims() == [c_out] => t.clone(),
                _ => continue,
            };
            let bias_host = match bias.to_vec1::<f32>() {
                Ok(v) => v,
                Err(_) => continue,
            };
            let mut ep = Epilogue {
                bias: Some((bias, bias_host)),
                act: Act::None,
            };
            let mut inner = vec![conv];
            let mut pass = vec![add];
            // An activation right after, or after one Transpose.
            let mut chain = vec![add];
            if let Some(u) = only_user(add) {
                if self.nodes[u].op == "Transpose" && self.consts[u].is_none() {
                    if let Some(v) = only_user(u) {
                        chain.push(u);
                        chain.push(v);
                    }
                } else {
                    chain.push(u);
                }
            }
            if let Some(&act_node) = chain.last().filter(|&&a| a != add) {
                let act = match self.nodes[act_node].op.as_str() {
                    "Relu" => Some(Act::Relu),
                    "Relu6" => Some(Act::Relu6),
                    "Sigmoid" => Some(Act::Sigmoid),
                    "LeakyRelu" => Some(Act::Leaky(self.attr_f(act_node, "alpha").unwrap_or(0.2))),
                    _ => None,
                };
                if let Some(act) = act {
                    ep.act = act;
                    inner.extend(&chain[..chain.len() - 1]);
                    pass.push(act_node);
                }
            }
            self.epilogues.insert(conv, ep);
            self.passthrough.extend(pass);
            self.fused_inner.extend(inner);
        }
    }

    /// Folds `Add|AddV2 → Relu|Relu6` (the activation the add's only user) into the add,
    /// when neither operand is a constant: BlazeFace's residual blocks end this way 31
    /// times. The add then computes `act(a + b)` in the same pass (on the CPU, for two
    /// contiguous operands of one shape, one read of each and one write), instead of
    /// writing the sum and reading it back for the activation.
    fn fuse_add_activation(&mut self, users: &[Vec<usize>]) {
        for (add, add_users) in users.iter().enumerate() {
            let node = &self.nodes[add];
            if !matches!(node.op.as_str(), "Add" | "AddV2")
                || node.inputs.len() != 2
                || self.consts[add].is_some()
                || self.passthrough.contains(&add)
                || self.fused_inner.contains(&add)
                || node.inputs.iter().any(|&(s, _)| self.consts[s].is_some())
            {
                continue;
            }
            let [act_node] = add_users[..] else {
                continue;
            };
            let act = match self.nodes[act_node].op.as_str() {
                "Relu" => Act::Relu,
                "Relu6" => Act::Relu6,
                _ => continue,
            };
            if self.nodes[act_node].inputs[..] != [(add, 0)] {
                continue;
            }
            self.add_acts.insert(add, act);
            self.passthrough.insert(act_node);
            self.fused_inner.insert(add);
        }
    }

    /// Folds a spatial `Pad` (constant paddings) into the VALID convolution (zero pad) or
    /// max pool (any constant) it feeds, directly on NHWC or through a `Transpose` NCHW →
    /// NHWC, each link the only user of the previous. NanoDet's ONNX→TF graph pads every
    /// 3×3 conv's input this way (28 times) and its max pool's with a `PadV2`; the padded
    /// copies (in NCHW, before the transpose) cost ≈ 10 % of the run, while the convs and
    /// the pool pad for free while gathering their input.
    fn fuse_pads(&mut self, users: &[Vec<usize>]) {
        for conv in 0..self.nodes.len() {
            let node = &self.nodes[conv];
            let pool = node.op == "MaxPool";
            if !(pool
                || matches!(
                    node.op.as_str(),
                    "Conv2D"
                        | "_FusedConv2D"
                        | "DepthwiseConv2dNative"
                        | "FusedDepthwiseConv2dNative"
                ))
                || self.attr_s(conv, "data_format").as_deref() == Some("NCHW")
                || self.attr_s(conv, "padding").as_deref() != Some("VALID")
                || self.consts[conv].is_some()
            {
                continue;
            }
            let Some(&(src, 0)) = node.inputs.first() else {
                continue;
            };
            let only_user = |i: usize, u: usize| users[i][..] == [u];
            // Optional Transpose with permutation [0, 2, 3, 1]; then the spatial axes of
            // the padding are 2 and 3, else 1 and 2.
            let (pad_node, transpose, axes) = if self.nodes[src].op == "Transpose" {
                let perm = self.nodes[src]
                    .inputs
                    .get(1)
                    .and_then(|&(q, k)| self.consts[q].as_ref().and_then(|v| v.get(k)))
                    .and_then(|v| ints(v).ok());
                match (perm.as_deref(), self.nodes[src].inputs.first()) {
                    (Some([0, 2, 3, 1]), Some(&(p, 0))) if only_user(src, conv) => {
                        (p, Some(src), (2, 3))
                    }
                    _ => continue,
                }
            } else {
                (src, None, (1, 2))
            };
            let pnode = &self.nodes[pad_node];
            if !matches!(pnode.op.as_str(), "Pad" | "PadV2")
                || self.consts[pad_node].is_some()
                || !only_user(pad_node, transpose.unwrap_or(conv))
            {
                continue;
            }
            let konst = |k: usize| {
                pnode
                    .inputs
                    .get(k)
                    .and_then(|&(q, j)| self.consts[q].as_ref().and_then(|v| v.get(j)))
            };
            let value = if pnode.op == "PadV2" {
                match konst(2).map(scalar_f32) {
                    Some(Ok(v)) if pool || v == 0.0 => v,
                    _ => continue,
                }
            } else {
                0.0
            };
            let Some(Ok(p)) = konst(1).map(ints) else {
                continue;
            };
            if p.len() != 8 || p.iter().any(|&v| v < 0) {
                continue;
            }
            let other = (0..4).filter(|&d| d != axes.0 && d != axes.1);
            if other.clone().any(|d| p[2 * d] != 0 || p[2 * d + 1] != 0) {
                continue;
            }
            let (a, b) = (2 * axes.0, 2 * axes.1);
            let pads = [p[a], p[a + 1], p[b], p[b + 1]].map(|v| v as usize);
            if pool {
                self.pool_pads.insert(conv, (pads, value));
            } else {
                self.conv_pads.insert(conv, pads);
            }
            self.passthrough.insert(pad_node);
            self.fused_inner.insert(pad_node);
            self.fused_inner.extend(transpose);
        }
    }

    /// A conv node's zero padding `[top, bottom, left, right]` on an (h, w) input: its own
    /// (`padding`), plus what `fuse_pads` folded in.
    #[allow(clippy::too_many_arguments)]
    fn conv_padding(
        &self,
        i: usize,
        h: usize,
        w: usize,
        k: (usize, usize),
        s: (usize, usize),
        d: (usize, usize),
        nchw: bool,
    ) -> OpResult<[usize; 4]> {
        let mut pad = self.padding(i, h, w, k, s, d, nchw)?;
        if let Some(extra) = self.conv_pads.get(&i) {
            for (p, e) in pad.iter_mut().zip(extra) {
                *p += e;
            }
        }
        Ok(pad)
    }

    /// The model.json this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The graph's placeholders (inputs), with their declared shapes.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.placeholders
    }

    /// The signature's inputs (names without `:0`), when the model.json has a signature.
    pub fn signature_inputs(&self) -> &[TensorSpec] {
        &self.signature_inputs
    }

    /// The signature's outputs (names without `:0`), when the model.json has a signature.
    pub fn signature_outputs(&self) -> &[TensorSpec] {
        &self.signature_outputs
    }

    /// Whether the graph has a tensor (`node` or `node:k`) of this name.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.index.contains_key(split_output(name).0)
    }

    /// Every op in the graph with its node count, sorted by op name.
    pub fn op_counts(&self) -> Vec<(String, usize)> {
        let mut m: HashMap<&str, usize> = HashMap::new();
        for n in &self.nodes {
            *m.entry(n.op.as_str()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = m.into_iter().map(|(k, c)| (k.to_string(), c)).collect();
        v.sort();
        v
    }

    /// The ops that `outputs` depend on and that are not implemented (empty: it can run).
    pub fn unsupported_ops(&self, outputs: &[&str]) -> Result<Vec<(String, String)>> {
        let needed = self.needed(outputs)?;
        Ok(self
            .order
            .iter()
            .filter(|&&i| needed[i] && self.consts[i].is_none())
            .map(|&i| &self.nodes[i])
            .filter(|n| !SUPPORTED_OPS.contains(&n.op.as_str()))
            .map(|n| (n.name.clone(), n.op.clone()))
            .collect())
    }

    fn declared_batch(&self) -> usize {
        self.placeholders
            .first()
            .and_then(|p| p.shape.first())
            .and_then(|&b| usize::try_from(b).ok())
            .filter(|&b| b > 0)
            .unwrap_or(1)
    }

    fn resolve(&self, name: &str) -> Result<(usize, usize)> {
        let (n, k) = split_output(name);
        self.index
            .get(n)
            .map(|&i| (i, k))
            .ok_or_else(|| TfjsError::UnknownTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    fn needed(&self, outputs: &[&str]) -> Result<Vec<bool>> {
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

    /// Runs the graph: `feeds` are (placeholder name, tensor) — F32, any batch size on axis
    /// 0, the other axes as declared; returns the tensors named in `fetches` (`node` or
    /// `node:k`), in order. Only what the fetches depend on is computed.
    pub fn run(&self, feeds: &[(&str, &Tensor)], fetches: &[&str]) -> Result<Vec<Tensor>> {
        self.run_inner(feeds, fetches, None)
    }

    /// [`run`](Self::run), also returning the time spent per op type (sorted, most first)
    /// with the node count. Meaningful on the CPU, where candle ops are synchronous.
    pub fn run_profiled(
        &self,
        feeds: &[(&str, &Tensor)],
        fetches: &[&str],
    ) -> Result<(Vec<Tensor>, OpProfile)> {
        let mut prof: HashMap<String, (std::time::Duration, usize)> = HashMap::new();
        let out = self.run_inner(feeds, fetches, Some(&mut prof))?;
        let mut v: Vec<(String, std::time::Duration, usize)> =
            prof.into_iter().map(|(k, (d, n))| (k, d, n)).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        Ok((out, v))
    }

    fn run_inner(
        &self,
        feeds: &[(&str, &Tensor)],
        fetches: &[&str],
        mut prof: Option<&mut HashMap<String, (std::time::Duration, usize)>>,
    ) -> Result<Vec<Tensor>> {
        let mut fed: HashMap<usize, Tensor> = HashMap::new();
        let mut batch = None;
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
                let fits = dims.len() == spec.shape.len()
                    && dims
                        .iter()
                        .zip(&spec.shape)
                        .skip(1)
                        .all(|(&d, &s)| s < 0 || d as i64 == s);
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
        let ctx = Ctx {
            batch: batch.unwrap_or(1),
            declared_batch: self.declared_batch(),
        };

        let targets: Vec<(usize, usize)> = fetches
            .iter()
            .map(|f| self.resolve(f))
            .collect::<Result<_>>()?;
        if let Some((_, name)) = targets
            .iter()
            .zip(fetches)
            .find(|((i, _), _)| self.fused_inner.contains(i))
        {
            return Err(TfjsError::UnknownTensor {
                path: self.path.clone(),
                name: format!("{name} (fused into a convolution's bias/activation; fetch the activation's output)"),
            });
        }
        let needed = self.needed(fetches)?;
        // Remaining uses of each node's outputs, so intermediates are dropped early.
        let mut uses = vec![0usize; self.nodes.len()];
        for &i in &self.order {
            if needed[i] && self.consts[i].is_none() {
                for &(s, _) in &self.nodes[i].inputs {
                    uses[s] += 1;
                }
            }
        }
        for &(i, _) in &targets {
            uses[i] += 1; // keep the fetched ones
        }
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
            let out = {
                let mut ins = Vec::with_capacity(node.inputs.len());
                for &(s, k) in &node.inputs {
                    let v = self.consts[s]
                        .as_ref()
                        .or(vals[s].as_ref())
                        .and_then(|v| v.get(k))
                        .ok_or_else(|| TfjsError::Node {
                            path: self.path.clone(),
                            node: node.name.clone(),
                            op: node.op.clone(),
                            reason: format!("input `{}:{k}` has no value", self.nodes[s].name),
                        })?;
                    ins.push(v);
                }
                let t0 = prof.is_some().then(std::time::Instant::now);
                let out = if self.passthrough.contains(&i) {
                    vec![ins[0].clone()]
                } else {
                    self.eval(i, &ins, ctx).map_err(|e| self.op_error(i, e))?
                };
                if let (Some(p), Some(t0)) = (prof.as_deref_mut(), t0) {
                    let e = p.entry(node.op.clone()).or_default();
                    e.0 += t0.elapsed();
                    e.1 += 1;
                }
                out
            };
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
            .map(|(&(i, k), name)| {
                self.consts[i]
                    .as_ref()
                    .or(vals[i].as_ref())
                    .and_then(|v| v.get(k))
                    .map(|v| v.tensor().clone())
                    .ok_or_else(|| TfjsError::UnknownTensor {
                        path: self.path.clone(),
                        name: name.to_string(),
                    })
            })
            .collect()
    }

    fn op_error(&self, i: usize, e: OpError) -> TfjsError {
        let node = &self.nodes[i];
        match e {
            OpError::Unsupported => TfjsError::UnsupportedOp {
                path: self.path.clone(),
                node: node.name.clone(),
                op: node.op.clone(),
            },
            OpError::Msg(reason) => TfjsError::Node {
                path: self.path.clone(),
                node: node.name.clone(),
                op: node.op.clone(),
                reason,
            },
        }
    }

    // -----------------------------------------------------------------------------------
    // Attributes

    fn attr(&self, i: usize, key: &str) -> Option<&serde_json::Value> {
        self.nodes[i].attr.get(key)
    }
    fn attr_s(&self, i: usize, key: &str) -> Option<String> {
        let s = self.attr(i, key)?.get("s")?.as_str()?;
        base64_decode(s).and_then(|b| String::from_utf8(b).ok())
    }
    fn attr_i(&self, i: usize, key: &str) -> Option<i64> {
        json_i64(self.attr(i, key)?.get("i"))
    }
    fn attr_f(&self, i: usize, key: &str) -> Option<f64> {
        self.attr(i, key)?.get("f")?.as_f64()
    }
    fn attr_b(&self, i: usize, key: &str) -> Option<bool> {
        self.attr(i, key)?.get("b")?.as_bool()
    }
    fn attr_ints(&self, i: usize, key: &str) -> Vec<i64> {
        self.attr(i, key)
            .and_then(|a| a.pointer("/list/i"))
            .and_then(|l| l.as_array())
            .map(|l| l.iter().filter_map(|v| json_i64(Some(v))).collect())
            .unwrap_or_default()
    }
    fn attr_strs(&self, i: usize, key: &str) -> Vec<String> {
        self.attr(i, key)
            .and_then(|a| a.pointer("/list/s"))
            .and_then(|l| l.as_array())
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str())
                    .filter_map(|s| base64_decode(s).and_then(|b| String::from_utf8(b).ok()))
                    .collect()
            })
            .unwrap_or_default()
    }

    // -----------------------------------------------------------------------------------
    // Ops

    fn eval(&self, i: usize, ins: &[&Val], ctx: Ctx) -> OpResult<Vec<Val>> {
        let op = self.nodes[i].op.as_str();
        let arity = |n: usize| -> OpResult<()> {
            if ins.len() < n {
                msg(format!("{} inputs, expected {n}", ins.len()))
            } else {
                Ok(())
            }
        };
        let one = |v: Val| Ok(vec![v]);
        match op {
            "Identity" => {
                arity(1)?;
                one(ins[0].clone())
            }
            "NoOp" => Ok(Vec::new()),
            "Conv2D" | "_FusedConv2D" | "DepthwiseConv2dNative" | "FusedDepthwiseConv2dNative" => {
                arity(2)?;
                one(Val::F(self.conv(i, ins)?))
            }
            "BiasAdd" => {
                arity(2)?;
                let x = float(ins[0], &self.device)?;
                let b = float(ins[1], &self.device)?;
                let nchw = self.attr_s(i, "data_format").as_deref() == Some("NCHW");
                let b = if nchw && x.rank() >= 2 {
                    let mut shape = vec![1usize; x.rank()];
                    shape[1] = b.elem_count();
                    b.reshape(shape)?
                } else {
                    b
                };
                one(Val::F(x.broadcast_add(&b)?))
            }
            "Add" | "AddV2" if self.add_acts.contains_key(&i) => {
                arity(2)?;
                let (a, b) = (float(ins[0], &self.device)?, float(ins[1], &self.device)?);
                let act = self.add_acts.get(&i).unwrap_or(&Act::None);
                let fused = match act {
                    Act::Relu => crate::ops::zip_map_f32(&a, &b, |x, y| (x + y).max(0.0))?,
                    Act::Relu6 => {
                        crate::ops::zip_map_f32(&a, &b, |x, y| (x + y).clamp(0.0, 6.0))?
                    }
                    _ => None,
                };
                if let Some(t) = fused {
                    return one(Val::F(t));
                }
                let s = a.broadcast_add(&b)?;
                one(Val::F(match act {
                    Act::Relu => s.relu()?,
                    Act::Relu6 => s.clamp(0f32, 6f32)?,
                    _ => s,
                }))
            }
            "Add" | "AddV2" | "Sub" | "Mul" | "RealDiv" | "Maximum" | "Minimum" | "FloorDiv"
            | "FloorMod" => {
                arity(2)?;
                self.binary(op, ins[0], ins[1]).map(|v| vec![v])
            }
            "Relu" => one(Val::F(in_memory_order(
                &float(first(ins)?, &self.device)?,
                |x| x.relu(),
            )?)),
            "Relu6" => one(Val::F(in_memory_order(
                &float(first(ins)?, &self.device)?,
                |x| x.clamp(0f32, 6f32),
            )?)),
            "LeakyRelu" => {
                let alpha = self.attr_f(i, "alpha").unwrap_or(0.2);
                let x = float(first(ins)?, &self.device)?;
                if matches!(self.device, Device::Cpu) {
                    return one(Val::F(in_memory_order(&x, |x| {
                        // TF.js: `x < 0 ? alpha · x : x`, alpha a JS double.
                        let mut v = x.flatten_all()?.to_vec1::<f32>()?;
                        v.iter_mut()
                            .filter(|x| **x < 0.0)
                            .for_each(|x| *x = (alpha * f64::from(*x)) as f32);
                        Tensor::from_vec(v, x.dims(), x.device())
                    })?));
                }
                one(Val::F(leaky_relu(&x, alpha as f32)?))
            }
            "Sigmoid" => one(Val::F(in_memory_order(
                &float(first(ins)?, &self.device)?,
                candle_nn::ops::sigmoid,
            )?)),
            "ResizeBilinear" => {
                arity(2)?;
                let x = float(ins[0], &self.device)?;
                let size = ints(ins[1])?;
                let [oh, ow] = size[..] else {
                    return msg(format!("size {size:?}, expected [height, width]"));
                };
                let align = self.attr_b(i, "align_corners").unwrap_or(false);
                let half = self.attr_b(i, "half_pixel_centers").unwrap_or(false);
                one(Val::F(resize_bilinear_nhwc(
                    &x,
                    to_usize(oh)?,
                    to_usize(ow)?,
                    align,
                    half,
                )?))
            }
            "ConcatV2" => {
                arity(2)?;
                let (axis_v, parts) = ins.split_last().ok_or(OpError::Msg("no inputs".into()))?;
                let axis = scalar_int(axis_v)?;
                if parts.iter().all(|p| matches!(p, Val::I(_))) {
                    let ts: Vec<&Tensor> = parts.iter().map(|p| p.tensor()).collect();
                    let axis = norm_axis(axis, ts[0].rank())?;
                    return one(Val::I(Tensor::cat(&ts, axis)?));
                }
                let ts: Vec<Tensor> = parts
                    .iter()
                    .map(|p| float(p, &self.device))
                    .collect::<OpResult<_>>()?;
                let axis = norm_axis(axis, ts[0].rank())?;
                one(Val::F(cat_in_memory_order(&ts, axis)?))
            }
            "Pad" | "PadV2" => {
                arity(2)?;
                let x = float(ins[0], &self.device)?;
                let pads = ints(ins[1])?;
                let value = match ins.get(2) {
                    Some(v) if op == "PadV2" => scalar_f32(v)?,
                    _ => 0.0,
                };
                if pads.len() != 2 * x.rank() {
                    return msg(format!("paddings {pads:?} for a rank-{} input", x.rank()));
                }
                let pads: Vec<(usize, usize)> = pads
                    .chunks(2)
                    .map(|p| Ok((to_usize(p[0])?, to_usize(p[1])?)))
                    .collect::<OpResult<_>>()?;
                one(Val::F(pad_const(&x, &pads, value)?))
            }
            "MaxPool" | "AvgPool" => one(Val::F(self.pool(
                i,
                float(first(ins)?, &self.device)?,
                op == "MaxPool",
            )?)),
            "Mean" => {
                arity(2)?;
                let x = float(ins[0], &self.device)?;
                let mut axes: Vec<usize> = ints(ins[1])?
                    .into_iter()
                    .map(|a| norm_axis(a, x.rank()))
                    .collect::<OpResult<_>>()?;
                axes.sort_unstable();
                axes.dedup();
                let keep = self.attr_b(i, "keep_dims").unwrap_or(false);
                let mut y = x.mean_keepdim(axes.clone())?;
                if !keep {
                    for &a in axes.iter().rev() {
                        y = y.squeeze(a)?;
                    }
                }
                one(Val::F(y))
            }
            "Reshape" => {
                arity(2)?;
                let x = ins[0].tensor();
                let mut target = ints(ins[1])?;
                if ctx.batch != ctx.declared_batch
                    && target.first() == Some(&(ctx.declared_batch as i64))
                    && x.dims().first() == Some(&ctx.batch)
                {
                    target[0] = ctx.batch as i64;
                }
                let shape = resolve_shape(&target, x.elem_count()).ok_or_else(|| {
                    OpError::Msg(format!("cannot reshape {:?} to {target:?}", x.dims()))
                })?;
                let y = x.reshape(shape)?;
                one(rewrap(ins[0], y))
            }
            "Transpose" => {
                arity(2)?;
                let x = ins[0].tensor();
                let perm: Vec<usize> = ints(ins[1])?
                    .into_iter()
                    .map(|a| norm_axis(a, x.rank()))
                    .collect::<OpResult<_>>()?;
                one(rewrap(ins[0], x.permute(perm)?))
            }
            "Squeeze" => {
                let x = first(ins)?.tensor();
                let dims = self.attr_ints(i, "squeeze_dims");
                let mut axes: Vec<usize> = if dims.is_empty() {
                    (0..x.rank()).filter(|&d| x.dims()[d] == 1).collect()
                } else {
                    dims.into_iter()
                        .map(|a| norm_axis(a, x.rank()))
                        .collect::<OpResult<_>>()?
                };
                axes.sort_unstable();
                let mut y = x.clone();
                for &a in axes.iter().rev() {
                    y = y.squeeze(a)?;
                }
                one(rewrap(ins[0], y))
            }
            "ExpandDims" => {
                arity(2)?;
                let x = ins[0].tensor();
                let a = scalar_int(ins[1])?;
                let a = norm_axis(a, x.rank() + 1)?;
                one(rewrap(ins[0], x.unsqueeze(a)?))
            }
            "SplitV" => {
                arity(3)?;
                let x = ins[0].tensor();
                let axis = norm_axis(scalar_int(ins[2])?, x.rank())?;
                let mut sizes = ints(ins[1])?;
                let dim = x.dims()[axis] as i64;
                if let Some(p) = sizes.iter().position(|&s| s < 0) {
                    let rest: i64 = sizes.iter().filter(|&&s| s >= 0).sum();
                    sizes[p] = dim - rest;
                }
                if sizes.iter().sum::<i64>() != dim || sizes.iter().any(|&s| s < 0) {
                    return msg(format!(
                        "size_splits {sizes:?} do not add up to {dim} on axis {axis}"
                    ));
                }
                let mut start = 0usize;
                let mut out = Vec::with_capacity(sizes.len());
                for s in sizes {
                    let s = to_usize(s)?;
                    out.push(rewrap(ins[0], x.narrow(axis, start, s)?));
                    start += s;
                }
                Ok(out)
            }
            "Split" => {
                arity(2)?;
                let x = ins[1].tensor();
                let axis = norm_axis(scalar_int(ins[0])?, x.rank())?;
                let n = self.attr_i(i, "num_split").unwrap_or(1).max(1) as usize;
                let dim = x.dims()[axis];
                if dim % n != 0 {
                    return msg(format!("axis {axis} of size {dim} does not split into {n}"));
                }
                (0..n)
                    .map(|k| Ok(rewrap(ins[1], x.narrow(axis, k * dim / n, dim / n)?)))
                    .collect()
            }
            "StridedSlice" => {
                arity(4)?;
                self.strided_slice(i, ins).map(|v| vec![v])
            }
            "SparseToDense" => {
                arity(4)?;
                sparse_to_dense(ins, &self.device).map(|v| vec![v])
            }
            "Cast" => {
                let x = first(ins)?;
                let to = self
                    .attr(i, "DstT")
                    .and_then(|a| a.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                match to {
                    "DT_FLOAT" => one(Val::F(float(x, &self.device)?)),
                    "DT_INT32" | "DT_INT64" | "DT_BOOL" => {
                        let t = x.tensor().to_device(&Device::Cpu)?;
                        let t = match x {
                            // TF truncates toward zero; candle's f32 → i64 is `as`, which does.
                            Val::F(_) => t.to_dtype(DType::I64)?,
                            Val::I(_) => t,
                        };
                        let t = if to == "DT_BOOL" {
                            t.ne(0i64)?.to_dtype(DType::I64)?
                        } else {
                            t
                        };
                        one(Val::I(t))
                    }
                    other => msg(format!("cast to {other} is not supported")),
                }
            }
            _ => Err(OpError::Unsupported),
        }
    }

    fn binary(&self, op: &str, a: &Val, b: &Val) -> OpResult<Val> {
        if let (Val::I(x), Val::I(y)) = (a, b) {
            let r = match op {
                "Add" | "AddV2" => x.broadcast_add(y)?,
                "Sub" => x.broadcast_sub(y)?,
                "Mul" => x.broadcast_mul(y)?,
                "Maximum" => x.broadcast_maximum(y)?,
                "Minimum" => x.broadcast_minimum(y)?,
                "FloorDiv" | "FloorMod" => {
                    // Small integer tensors only (shape arithmetic): on the host.
                    let shape = broadcast_shape(x.dims(), y.dims()).ok_or_else(|| {
                        OpError::Msg(format!(
                            "shapes {:?} and {:?} do not broadcast",
                            x.dims(),
                            y.dims()
                        ))
                    })?;
                    let xs = x
                        .broadcast_as(shape.clone())?
                        .flatten_all()?
                        .to_vec1::<i64>()?;
                    let ys = y
                        .broadcast_as(shape.clone())?
                        .flatten_all()?
                        .to_vec1::<i64>()?;
                    let mut out = Vec::with_capacity(xs.len());
                    for (p, d) in xs.into_iter().zip(ys) {
                        if d == 0 {
                            return msg("integer division by zero");
                        }
                        // Rounds toward −∞, as TF's FloorDiv; FloorMod takes the divisor's sign.
                        let q = if p % d != 0 && ((p < 0) != (d < 0)) {
                            p / d - 1
                        } else {
                            p / d
                        };
                        out.push(if op == "FloorMod" { p - q * d } else { q });
                    }
                    Tensor::from_vec(out, shape, &Device::Cpu)?
                }
                _ => return Err(OpError::Unsupported),
            };
            return Ok(Val::I(r));
        }
        let x = float(a, &self.device)?;
        let y = float(b, &self.device)?;
        // Same shape, same memory order (NHWC buffers seen as NCHW): one pass over memory.
        let same: Option<fn(f32, f32) -> f32> = match op {
            "Add" | "AddV2" => Some(|p, q| p + q),
            "Sub" => Some(|p, q| p - q),
            "Mul" => Some(|p, q| p * q),
            "RealDiv" => Some(|p, q| p / q),
            _ => None,
        };
        if let Some(f) = same {
            if let Some(r) = crate::ops::zip_map_f32(&x, &y, f)? {
                return Ok(Val::F(r));
            }
        }
        let r = match op {
            "Add" | "AddV2" => x.broadcast_add(&y)?,
            "Sub" => x.broadcast_sub(&y)?,
            "Mul" => x.broadcast_mul(&y)?,
            "RealDiv" => x.broadcast_div(&y)?,
            "Maximum" => x.broadcast_maximum(&y)?,
            "Minimum" => x.broadcast_minimum(&y)?,
            "FloorDiv" => x.broadcast_div(&y)?.floor()?,
            "FloorMod" => {
                let q = x.broadcast_div(&y)?.floor()?;
                x.broadcast_sub(&q.broadcast_mul(&y)?)?
            }
            _ => return Err(OpError::Unsupported),
        };
        Ok(Val::F(r))
    }

    /// Strides, dilations and data format of a conv/pool node: (sh, sw), (dh, dw), nchw.
    fn spatial_attrs(&self, i: usize, key: &str) -> OpResult<((usize, usize), bool)> {
        let nchw = self.attr_s(i, "data_format").as_deref() == Some("NCHW");
        let v = self.attr_ints(i, key);
        if v.is_empty() {
            return Ok(((1, 1), nchw));
        }
        if v.len() != 4 {
            return msg(format!("{key} {v:?}, expected 4 values"));
        }
        let (h, w) = if nchw { (v[2], v[3]) } else { (v[1], v[2]) };
        Ok(((to_usize(h)?, to_usize(w)?), nchw))
    }

    /// [top, bottom, left, right] zero padding of a conv/pool node on an (h, w) input.
    #[allow(clippy::too_many_arguments)]
    fn padding(
        &self,
        i: usize,
        h: usize,
        w: usize,
        k: (usize, usize),
        s: (usize, usize),
        d: (usize, usize),
        nchw: bool,
    ) -> OpResult<[usize; 4]> {
        let mode = self.attr_s(i, "padding").unwrap_or_else(|| "VALID".into());
        match mode.as_str() {
            "VALID" => Ok([0; 4]),
            "SAME" => {
                let same = |n: usize, k: usize, s: usize, d: usize| {
                    let out = n.div_ceil(s);
                    let eff = (k - 1) * d + 1;
                    let total = ((out.saturating_sub(1)) * s + eff).saturating_sub(n);
                    (total / 2, total - total / 2)
                };
                let (t, b) = same(h, k.0, s.0, d.0);
                let (l, r) = same(w, k.1, s.1, d.1);
                Ok([t, b, l, r])
            }
            "EXPLICIT" => {
                let p = self.attr_ints(i, "explicit_paddings");
                if p.len() != 8 {
                    return msg(format!("explicit_paddings {p:?}, expected 8 values"));
                }
                let (hh, ww) = if nchw { (4, 6) } else { (2, 4) };
                Ok([
                    to_usize(p[hh])?,
                    to_usize(p[hh + 1])?,
                    to_usize(p[ww])?,
                    to_usize(p[ww + 1])?,
                ])
            }
            other => msg(format!("padding `{other}` is not supported")),
        }
    }

    fn conv(&self, i: usize, ins: &[&Val]) -> OpResult<Tensor> {
        let op = self.nodes[i].op.as_str();
        let depthwise = op.contains("Depthwise");
        let x = float(ins[0], &self.device)?;
        let kernel = match self.kernels.get(&i) {
            Some(k) => k.clone(),
            None => prepare_filter(&float(ins[1], &self.device)?, depthwise)?,
        };
        let ((sh, sw), nchw) = self.spatial_attrs(i, "strides")?;
        let ((dh, dw), _) = self.spatial_attrs(i, "dilations")?;
        if sh != sw || dh != dw {
            return msg(format!(
                "strides ({sh},{sw}) / dilations ({dh},{dw}) differ between height and width"
            ));
        }
        if x.rank() != 4 {
            return msg(format!(
                "input of rank {} ({:?}), expected 4",
                x.rank(),
                x.dims()
            ));
        }
        // Physically NHWC input of a regular conv on the CPU: convolve in that order.
        if let Val::F(w_tf) = ins[1] {
            let fits = !depthwise
                && !nchw
                && matches!(self.device, Device::Cpu)
                && x.dtype() == DType::F32
                && w_tf.rank() == 4
                && w_tf.dims()[2] == x.dims()[3]
                && w_tf.dims()[..2] == kernel.dims()[2..];
            if fits {
                let (_, h, w, _) = x.dims4()?;
                let (kh, kw) = (w_tf.dims()[0], w_tf.dims()[1]);
                let pad = self.conv_padding(i, h, w, (kh, kw), (sh, sw), (dh, dw), nchw)?;
                return self.conv_nhwc(i, ins, &x, w_tf, pad, (sh, sw), (dh, dw));
            }
        }
        // candle wants NCHW: a view for NHWC input.
        let xc = if nchw { x } else { x.permute((0, 3, 1, 2))? };
        let (_, c, h, w) = xc.dims4()?;
        let (kh, kw) = (kernel.dims()[2], kernel.dims()[3]);
        if !depthwise && c != kernel.dims()[1] {
            return msg(format!(
                "input {:?} has {c} channels, the filter {:?} expects {}",
                xc.dims(),
                kernel.dims(),
                kernel.dims()[1]
            ));
        }
        let pad = self.conv_padding(i, h, w, (kh, kw), (sh, sw), (dh, dw), nchw)?;
        let mut y = if depthwise {
            if kernel.dims()[0] % c.max(1) != 0 || kernel.dims()[1] != 1 {
                return msg(format!(
                    "input has {c} channels, the depthwise filter {:?}",
                    kernel.dims()
                ));
            }
            let tf_filter = match ins[1] {
                Val::F(t) if t.rank() == 4 => Some(t),
                _ => None,
            };
            depthwise_conv2d(&xc, &kernel, tf_filter, pad, (sh, sw), (dh, dw))?
        } else {
            let symmetric = pad[0] == pad[1] && pad[2] == pad[3] && pad[0] == pad[2];
            let (xc, p) = if symmetric {
                (xc, pad[0])
            } else {
                (
                    pad_const(
                        &xc,
                        &[(0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])],
                        0.0,
                    )?,
                    0,
                )
            };
            if matches!(self.device, Device::Cpu) && xc.dtype() == candle_core::DType::F32 {
                crate::ops::conv2d_cpu(&xc, &kernel, p, sh, dh)?
            } else {
                xc.contiguous()?.conv2d(&kernel, p, sh, dh, 1)?
            }
        };
        // Bias and activation, on the result (any memory order; see `apply_epilogue`).
        let (bias, acts) = self.conv_epilogue(i, ins)?;
        let work = bias.is_some() || acts.iter().any(|a| !matches!(a, Act::None));
        let mut acts = acts.into_iter();
        if work {
            y = apply_epilogue(&y, bias.as_ref(), &acts.next().unwrap_or(Act::None))?;
        }
        for act in acts {
            y = apply_epilogue(&y, None, &act)?;
        }
        Ok(if nchw { y } else { y.permute((0, 2, 3, 1))? })
    }

    /// A conv node's bias and activations: from a fused op's attributes (`fused_ops`, the
    /// extra inputs after the filter), or from the nodes `fuse` folded in; none otherwise.
    fn conv_epilogue(&self, i: usize, ins: &[&Val]) -> OpResult<ConvEpilogue> {
        let op = self.nodes[i].op.as_str();
        if !(op.starts_with('_') || op.starts_with("Fused")) {
            return Ok(match self.epilogues.get(&i) {
                Some(ep) => (ep.bias.clone(), vec![ep.act.clone()]),
                None => (None, Vec::new()),
            });
        }
        let fused: Vec<String> = self
            .attr_strs(i, "fused_ops")
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut next = 2;
        let mut ops = fused.iter().map(String::as_str).peekable();
        let mut bias = None;
        if ops.peek() == Some(&"biasadd") {
            ops.next();
            let b = float(
                ins.get(next)
                    .ok_or(OpError::Msg("BiasAdd without a bias input".into()))?,
                &self.device,
            )?;
            next += 1;
            let host = if matches!(self.device, Device::Cpu) {
                b.flatten_all()?.to_vec1::<f32>()?
            } else {
                Vec::new()
            };
            bias = Some((b, host));
        } else if ops.peek() == Some(&"fusedbatchnorm") {
            return msg("fused batch norm is not supported");
        }
        let mut acts: Vec<Act> = Vec::new();
        for op in ops {
            acts.push(match op {
                "relu" => Act::Relu,
                "relu6" => Act::Relu6,
                "sigmoid" => Act::Sigmoid,
                "leakyrelu" => Act::Leaky(self.attr_f(i, "leakyrelu_alpha").unwrap_or(0.2)),
                "elu" => Act::Elu,
                "prelu" => {
                    let a = float(
                        ins.get(next)
                            .ok_or(OpError::Msg("Prelu without alpha".into()))?,
                        &self.device,
                    )?;
                    next += 1;
                    Act::Prelu(a)
                }
                other => return msg(format!("fused op `{other}` is not supported")),
            });
        }
        Ok((bias, acts))
    }

    /// A regular convolution of a physically NHWC input (contiguous in TF's order) on the
    /// CPU: [`crate::ops::conv2d_nhwc_cpu`] with TF's filter as stored, and the
    /// bias and a host activation applied to each block of output rows while it is in
    /// cache. The result is contiguous NHWC, so the element-wise ops, depthwise convs and
    /// pools after it read plain contiguous data.
    #[allow(clippy::too_many_arguments)]
    fn conv_nhwc(
        &self,
        i: usize,
        ins: &[&Val],
        x: &Tensor,
        w_tf: &Tensor,
        pad: [usize; 4],
        stride: (usize, usize),
        dilation: (usize, usize),
    ) -> OpResult<Tensor> {
        use crate::ops::conv2d_nhwc_cpu;
        let co = w_tf.dims().get(3).copied().unwrap_or(0);
        let (bias, acts) = self.conv_epilogue(i, ins)?;
        let bias_host = match &bias {
            Some((_, h)) if h.len() == co => Some(h.as_slice()),
            Some(_) => None,
            None => Some(&[][..]),
        };
        let one_host_act = match acts.as_slice() {
            [] => Some(&Act::None),
            [a] if !matches!(a, Act::Prelu(_) | Act::Elu) => Some(a),
            _ => None,
        };
        if let (Some(b), Some(act)) = (bias_host, one_host_act) {
            let ep = |rows: &mut [f32]| epilogue_rows(rows, b, act);
            return Ok(conv2d_nhwc_cpu(x, w_tf, pad, stride, dilation, &ep)?);
        }
        // Device-side activations (or a bias of an odd size): the generic epilogue on the
        // NCHW view of the NHWC result.
        let mut y =
            conv2d_nhwc_cpu(x, w_tf, pad, stride, dilation, &|_| {})?.permute((0, 3, 1, 2))?;
        let mut acts = acts.into_iter();
        y = apply_epilogue(&y, bias.as_ref(), &acts.next().unwrap_or(Act::None))?;
        for act in acts {
            y = apply_epilogue(&y, None, &act)?;
        }
        Ok(y.permute((0, 2, 3, 1))?)
    }

    fn pool(&self, i: usize, x: Tensor, max: bool) -> OpResult<Tensor> {
        let ((kh, kw), nchw) = self.spatial_attrs(i, "ksize")?;
        let ((sh, sw), _) = self.spatial_attrs(i, "strides")?;
        if x.rank() != 4 {
            return msg(format!("input of rank {}, expected 4", x.rank()));
        }
        let xc = if nchw {
            x.clone()
        } else {
            x.permute((0, 3, 1, 2))?
        };
        let (_, _, h, w) = xc.dims4()?;
        // Own padding (SAME: takes no part, −∞), or the `Pad` folded in with its constant.
        let (pad, value) = match self.pool_pads.get(&i) {
            Some(&(p, v)) if max => (p, v),
            _ => (
                self.padding(i, h, w, (kh, kw), (sh, sw), (1, 1), nchw)?,
                f32::NEG_INFINITY,
            ),
        };
        if max && !nchw && matches!(self.device, Device::Cpu) && x.dtype() == DType::F32 {
            // NHWC, or an NHWC view of NCHW data: pooled in its memory order, padding
            // included, with no padded copy.
            return Ok(crate::ops::max_pool2d_nhwc_cpu(
                &x,
                (kh, kw),
                (sh, sw),
                pad,
                value,
            )?);
        }
        let y = if max {
            let xc = if pad.iter().any(|&p| p > 0) {
                pad_const(
                    &xc,
                    &[(0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])],
                    value,
                )?
            } else {
                xc
            };
            xc.max_pool2d_with_stride((kh, kw), (sh, sw))?
        } else {
            if pad.iter().any(|&p| p > 0) {
                // TF's SAME average excludes the padding from the count; candle's does not.
                return msg("AvgPool with SAME padding is not supported");
            }
            xc.avg_pool2d_with_stride((kh, kw), (sh, sw))?
        };
        Ok(if nchw { y } else { y.permute((0, 2, 3, 1))? })
    }

    fn strided_slice(&self, i: usize, ins: &[&Val]) -> OpResult<Val> {
        let x = ins[0].tensor();
        let (begin, end, strides) = (ints(ins[1])?, ints(ins[2])?, ints(ins[3])?);
        let mask = |k: &str| self.attr_i(i, k).unwrap_or(0);
        if mask("ellipsis_mask") != 0 || mask("new_axis_mask") != 0 {
            return msg("ellipsis_mask / new_axis_mask are not supported");
        }
        let (bm, em, sm) = (
            mask("begin_mask"),
            mask("end_mask"),
            mask("shrink_axis_mask"),
        );
        let mut y = x.clone();
        let mut shrink = Vec::new();
        for (d, &begin_d) in begin.iter().enumerate().take(x.rank()) {
            let n = x.dims()[d] as i64;
            let s = strides.get(d).copied().unwrap_or(1);
            if s <= 0 {
                return msg(format!("stride {s} on axis {d} is not supported"));
            }
            let fix = |v: i64| if v < 0 { (v + n).max(0) } else { v.min(n) };
            let b = if bm >> d & 1 == 1 { 0 } else { fix(begin_d) };
            let e = if sm >> d & 1 == 1 {
                b + 1
            } else if em >> d & 1 == 1 {
                n
            } else {
                fix(end.get(d).copied().unwrap_or(n))
            };
            if sm >> d & 1 == 1 {
                shrink.push(d);
            }
            let len = (e - b).max(0);
            if s == 1 {
                y = y.narrow(d, b as usize, len as usize)?;
            } else {
                let idx: Vec<u32> = (0..len)
                    .step_by(s as usize)
                    .map(|k| (b + k) as u32)
                    .collect();
                let idx = Tensor::from_vec(idx.clone(), idx.len(), y.device())?;
                y = y.contiguous()?.index_select(&idx, d)?;
            }
        }
        for &d in shrink.iter().rev() {
            y = y.squeeze(d)?;
        }
        Ok(rewrap(ins[0], y))
    }
}

fn split_output(name: &str) -> (&str, usize) {
    match name.rsplit_once(':') {
        Some((n, k)) => match k.parse() {
            Ok(k) => (n, k),
            Err(_) => (name, 0),
        },
        None => (name, 0),
    }
}

fn first<'a>(ins: &[&'a Val]) -> OpResult<&'a Val> {
    ins.first().copied().ok_or(OpError::Msg("no input".into()))
}

fn rewrap(like: &Val, t: Tensor) -> Val {
    match like {
        Val::F(_) => Val::F(t),
        Val::I(_) => Val::I(t),
    }
}

fn float(v: &Val, device: &Device) -> OpResult<Tensor> {
    match v {
        Val::F(t) => Ok(t.clone()),
        Val::I(t) => Ok(t.to_dtype(DType::F32)?.to_device(device)?),
    }
}

fn ints(v: &Val) -> OpResult<Vec<i64>> {
    match v {
        Val::I(t) => Ok(t.flatten_all()?.to_vec1::<i64>()?),
        Val::F(t) => msg(format!(
            "expected an integer tensor, got float {:?}",
            t.dims()
        )),
    }
}

fn scalar_int(v: &Val) -> OpResult<i64> {
    match ints(v)?[..] {
        [a] => Ok(a),
        ref other => msg(format!("expected one integer, got {other:?}")),
    }
}

fn scalar_f32(v: &Val) -> OpResult<f32> {
    let t = match v {
        Val::F(t) => t.flatten_all()?.to_dtype(DType::F32)?,
        Val::I(t) => t.flatten_all()?.to_dtype(DType::F32)?,
    };
    match t.to_vec1::<f32>()?[..] {
        [a] => Ok(a),
        ref other => msg(format!("expected one value, got {} values", other.len())),
    }
}

fn to_usize(v: i64) -> OpResult<usize> {
    usize::try_from(v).map_err(|_| OpError::Msg(format!("negative size {v}")))
}

fn norm_axis(a: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a2 = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&a2) {
        Ok(a2 as usize)
    } else {
        msg(format!("axis {a} out of range for rank {rank}"))
    }
}

fn resolve_shape(target: &[i64], count: usize) -> Option<Vec<usize>> {
    let known: i64 = target.iter().filter(|&&d| d >= 0).product();
    let holes = target.iter().filter(|&&d| d < 0).count();
    let mut out = Vec::with_capacity(target.len());
    for &d in target {
        if d >= 0 {
            out.push(d as usize);
        } else {
            if holes != 1 || known == 0 || count as i64 % known != 0 {
                return None;
            }
            out.push((count as i64 / known) as usize);
        }
    }
    (out.iter().product::<usize>() == count).then_some(out)
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for k in 0..n {
        let x = if k + a.len() >= n {
            a[k + a.len() - n]
        } else {
            1
        };
        let y = if k + b.len() >= n {
            b[k + b.len() - n]
        } else {
            1
        };
        out[k] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// TF filter → candle: conv `[kh, kw, cin, cout]` → `[cout, cin, kh, kw]`; depthwise
/// `[kh, kw, c, m]` → `[c·m, 1, kh, kw]` (output channel `c·m + j`, as TF orders them).
fn prepare_filter(f: &Tensor, depthwise: bool) -> OpResult<Tensor> {
    let (kh, kw, c, m) = f.dims4()?;
    Ok(if depthwise {
        f.reshape((kh, kw, c * m))?
            .permute((2, 0, 1))?
            .unsqueeze(1)?
            .contiguous()?
    } else {
        f.permute((3, 2, 0, 1))?.contiguous()?
    })
}

/// Depthwise 2-D convolution of `xn`, a logical-NCHW view of any physical layout, with
/// [`crate::ops::depthwise_conv2d`] (a direct kernel on the CPU; candle's grouped
/// conv elsewhere). When the data is physically NHWC (on the CPU, every conv, add and
/// pool output of an NHWC graph) it runs the kernel's NHWC form with TF's filter `[kh, kw, C, M]`, so the
/// input is never transposed; otherwise the NCHW form with the `[C·M, 1, kh, kw]` filter.
/// Returns logical NCHW (a view when computed in NHWC). Bias and activation are left to
/// the epilogue, which adds them after the sum as TF.js does.
fn depthwise_conv2d(
    xn: &Tensor,
    w_nchw: &Tensor,
    w_tf: Option<&Tensor>,
    pad: [usize; 4],
    stride: (usize, usize),
    dilation: (usize, usize),
) -> candle_core::Result<Tensor> {
    use crate::ops::{self, ConvLayout, DepthwiseConv2dConfig, Padding};
    let padding = Padding::Explicit {
        top: pad[0],
        bottom: pad[1],
        left: pad[2],
        right: pad[3],
    };
    let nhwc = xn.permute((0, 2, 3, 1))?;
    if let Some(w_tf) = w_tf.filter(|_| !xn.is_contiguous() && nhwc.is_contiguous()) {
        let cfg = DepthwiseConv2dConfig {
            layout: ConvLayout::Nhwc,
            stride,
            dilation,
            padding,
        };
        return ops::depthwise_conv2d(&nhwc, w_tf, None, &cfg)?.permute((0, 3, 1, 2));
    }
    let cfg = DepthwiseConv2dConfig {
        layout: ConvLayout::Nchw,
        stride,
        dilation,
        padding,
    };
    ops::depthwise_conv2d(xn, w_nchw, None, &cfg)
}

/// A conv's bias (device tensor, and host copy on the CPU) and activation.
struct Epilogue {
    bias: Option<(Tensor, Vec<f32>)>,
    act: Act,
}

/// A conv's bias (device tensor and host copy) and its activations, in order.
type ConvEpilogue = (Option<(Tensor, Vec<f32>)>, Vec<Act>);

/// Activations a conv epilogue applies.
#[derive(Clone)]
enum Act {
    None,
    Relu,
    Relu6,
    /// TF.js multiplies by the attribute as a JS double: `alpha · x` in f64, stored as f32.
    Leaky(f64),
    Sigmoid,
    Elu,
    Prelu(Tensor),
}

/// `act(y + bias[c])` on an NCHW conv result: one host pass on the CPU; candle ops elsewhere.
fn apply_epilogue(
    y: &Tensor,
    bias: Option<&(Tensor, Vec<f32>)>,
    act: &Act,
) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = y.dims4()?;
    let host_ok = matches!(y.device(), Device::Cpu)
        && !matches!(act, Act::Prelu(_) | Act::Elu)
        && bias.map_or(true, |b| b.1.len() == c);
    if host_ok {
        let f = |x: f32, b: f32| -> f32 { host_act(act, x + b) };
        let bias_of = |k: usize| bias.map_or(0.0, |b| b.1[k]);
        let nhwc = y.permute((0, 2, 3, 1))?;
        if !y.is_contiguous() && nhwc.is_contiguous() {
            // Physically NHWC (the depthwise kernel's NHWC form): channel = index mod C.
            let mut v = nhwc.flatten_all()?.to_vec1::<f32>()?;
            for px in v.chunks_mut(c.max(1)) {
                for (k, x) in px.iter_mut().enumerate() {
                    *x = f(*x, bias_of(k));
                }
            }
            return Tensor::from_vec(v, (n, h, w, c), y.device())?.permute((0, 3, 1, 2));
        }
        let mut v = y.flatten_all()?.to_vec1::<f32>()?;
        for (k, plane) in v.chunks_mut((h * w).max(1)).enumerate() {
            let b = bias_of(k % c.max(1));
            plane.iter_mut().for_each(|x| *x = f(*x, b));
        }
        return Tensor::from_vec(v, (n, c, h, w), y.device());
    }
    let y = match bias {
        Some((b, _)) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y.clone(),
    };
    match act {
        Act::None => Ok(y),
        Act::Relu => y.relu(),
        Act::Relu6 => y.clamp(0f32, 6f32),
        Act::Leaky(a) => leaky_relu(&y, *a as f32),
        Act::Sigmoid => candle_nn::ops::sigmoid(&y),
        Act::Elu => y.elu(1.0),
        Act::Prelu(a) => {
            let a = a.reshape((1, a.elem_count(), 1, 1))?;
            let neg = y.minimum(0f32)?.broadcast_mul(&a)?;
            y.relu()?.add(&neg)
        }
    }
}

/// A host activation on one value (TF.js's arithmetic; Elu/Prelu are device-side only and
/// pass the value through here).
#[inline(always)]
fn host_act(act: &Act, t: f32) -> f32 {
    match act {
        Act::Relu => t.max(0.0),
        Act::Relu6 => t.clamp(0.0, 6.0),
        Act::Leaky(a) => {
            if t < 0.0 {
                (a * f64::from(t)) as f32
            } else {
                t
            }
        }
        Act::Sigmoid => (1.0 / (1.0 + (-f64::from(t)).exp())) as f32,
        Act::None | Act::Elu | Act::Prelu(_) => t,
    }
}

/// `act(x + bias[c])` in place on `[n, C]` rows of NHWC values (`bias` empty: 0), the
/// activation chosen once outside the loop so that each case is a plain vectorisable loop.
fn epilogue_rows(rows: &mut [f32], bias: &[f32], act: &Act) {
    fn each(rows: &mut [f32], bias: &[f32], f: impl Fn(f32) -> f32) {
        if bias.is_empty() {
            rows.iter_mut().for_each(|v| *v = f(*v + 0.0));
            return;
        }
        for px in rows.chunks_exact_mut(bias.len()) {
            for (v, &b) in px.iter_mut().zip(bias) {
                *v = f(*v + b);
            }
        }
    }
    match act {
        Act::None | Act::Elu | Act::Prelu(_) => each(rows, bias, |t| t),
        Act::Relu => each(rows, bias, |t| t.max(0.0)),
        Act::Relu6 => each(rows, bias, |t| t.clamp(0.0, 6.0)),
        other => each(rows, bias, |t| host_act(other, t)),
    }
}

fn leaky_relu(x: &Tensor, alpha: f32) -> candle_core::Result<Tensor> {
    let scaled = x.affine(f64::from(alpha), 0.0)?;
    if (0.0..=1.0).contains(&alpha) {
        x.maximum(&scaled)
    } else {
        x.ge(0f32)?.where_cond(x, &scaled)
    }
}

/// An element-wise `f` applied to `x` seen in its memory order (axes sorted by stride),
/// the result returned in `x`'s logical order again (so in the same memory order). candle
/// runs unary ops on contiguous runs of the *logical* innermost axes, so on the NCHW view
/// of an NHWC buffer (or a channel slice of one) it would step one element at a time and
/// return a transposed copy.
fn in_memory_order(
    x: &Tensor,
    f: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let stride = x.stride();
    let mut p: Vec<usize> = (0..x.rank()).collect();
    p.sort_by_key(|&d| std::cmp::Reverse(stride[d]));
    if x.is_contiguous() || p.iter().enumerate().all(|(i, &d)| i == d) {
        return f(x);
    }
    f(&x.permute(p.clone())?)?.permute(crate::ops::inverse_permutation(&p))
}

/// `Tensor::cat` along `axis`, done in the parts' memory order when they all share a
/// permuted one (the NCHW views of NHWC conv outputs that an ONNX-converted graph
/// concatenates on channels): then the result keeps that order and the copy is one run
/// per row, where candle's `cat` would gather the views element by element into a
/// contiguous NCHW result that the next convolution has to transpose back.
fn cat_in_memory_order(ts: &[Tensor], axis: usize) -> candle_core::Result<Tensor> {
    use crate::ops::{dense_order, inverse_permutation};
    let order = ts
        .first()
        .filter(|t| !t.is_contiguous() && matches!(t.device(), Device::Cpu))
        .and_then(dense_order);
    if let Some(p) = order {
        let phys: Vec<Tensor> = ts
            .iter()
            .map(|t| t.permute(p.clone()))
            .collect::<candle_core::Result<_>>()?;
        let q = p.iter().position(|&d| d == axis);
        if let (Some(q), true) = (q, phys.iter().all(Tensor::is_contiguous)) {
            return Tensor::cat(&phys, q)?.permute(inverse_permutation(&p));
        }
    }
    Tensor::cat(ts, axis)
}

/// Pads every axis by (before, after) with `value` (zeros through candle's pad).
fn pad_const(x: &Tensor, pads: &[(usize, usize)], value: f32) -> candle_core::Result<Tensor> {
    let mut y = x.clone();
    for (d, &(b, a)) in pads.iter().enumerate() {
        if b == 0 && a == 0 {
            continue;
        }
        if value == 0.0 {
            y = y.pad_with_zeros(d, b, a)?;
            continue;
        }
        let mut parts = Vec::with_capacity(3);
        let mut shape = y.dims().to_vec();
        if b > 0 {
            shape[d] = b;
            parts.push(Tensor::full(value, shape.clone(), y.device())?);
        }
        parts.push(y.clone());
        if a > 0 {
            shape[d] = a;
            parts.push(Tensor::full(value, shape.clone(), y.device())?);
        }
        y = Tensor::cat(&parts, d)?;
    }
    Ok(y)
}

/// TF's bilinear resize on NHWC, with TF.js's CPU kernel's arithmetic: source coordinate
/// `(o + 0.5)·scale − 0.5` with half-pixel centres or `o·scale` without, `scale` =
/// `(in − 1)/(out − 1)` with aligned corners or `in/out`; lower index `max(floor(src), 0)`,
/// upper `min(ceil(src), in − 1)`, weight `src − lower`; columns first, then rows.
pub fn resize_bilinear_nhwc(
    x: &Tensor,
    oh: usize,
    ow: usize,
    align_corners: bool,
    half_pixel: bool,
) -> candle_core::Result<Tensor> {
    if matches!(x.device(), Device::Cpu) {
        resize_bilinear_nhwc_cpu(x, oh, ow, align_corners, half_pixel)
    } else {
        resize_bilinear_nhwc_ops(x, oh, ow, align_corners, half_pixel)
    }
}

/// Per output index along one axis: (lower, upper, weight), TF.js's arithmetic in f64.
fn resize_axis(
    n_in: usize,
    n_out: usize,
    align_corners: bool,
    half_pixel: bool,
) -> Vec<(usize, usize, f64)> {
    let scale = if align_corners && n_out > 1 {
        (n_in as f64 - 1.0) / (n_out as f64 - 1.0)
    } else {
        n_in as f64 / n_out as f64
    };
    (0..n_out)
        .map(|o| {
            let src = if half_pixel {
                (o as f64 + 0.5) * scale - 0.5
            } else {
                o as f64 * scale
            };
            let l = src.floor().max(0.0);
            let u = src.ceil().min(n_in as f64 - 1.0).max(0.0);
            (
                (l as usize).min(n_in.saturating_sub(1)),
                u as usize,
                src - l,
            )
        })
        .collect()
}

/// The CPU kernel: TF.js's loop (values read as doubles, interpolated, stored as f32).
fn resize_bilinear_nhwc_cpu(
    x: &Tensor,
    oh: usize,
    ow: usize,
    align_corners: bool,
    half_pixel: bool,
) -> candle_core::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    if h == 0 || w == 0 {
        candle_core::bail!("resize of an empty image {:?}", x.dims());
    }
    let v = x.flatten_all()?.to_vec1::<f32>()?;
    let rows = resize_axis(h, oh, align_corners, half_pixel);
    let cols = resize_axis(w, ow, align_corners, half_pixel);
    let mut out = Vec::with_capacity(n * oh * ow * c);
    let at = |b: usize, y: usize, x: usize, ch: usize| f64::from(v[((b * h + y) * w + x) * c + ch]);
    for b in 0..n {
        for &(t, btm, fy) in &rows {
            for &(l, r, fx) in &cols {
                for ch in 0..c {
                    let top = at(b, t, l, ch) + (at(b, t, r, ch) - at(b, t, l, ch)) * fx;
                    let bottom = at(b, btm, l, ch) + (at(b, btm, r, ch) - at(b, btm, l, ch)) * fx;
                    out.push((top + (bottom - top) * fy) as f32);
                }
            }
        }
    }
    Tensor::from_vec(out, (n, oh, ow, c), x.device())
}

/// The same with candle ops (any device): gathers and lerps along W, then H.
fn resize_bilinear_nhwc_ops(
    x: &Tensor,
    oh: usize,
    ow: usize,
    align_corners: bool,
    half_pixel: bool,
) -> candle_core::Result<Tensor> {
    let (_, h, w, _) = x.dims4()?;
    let dev = x.device();
    let x = x.contiguous()?;
    let gather =
        |t: &Tensor, axis: usize, table: Vec<(usize, usize, f64)>| -> candle_core::Result<Tensor> {
            let n = table.len();
            let lo: Vec<u32> = table.iter().map(|e| e.0 as u32).collect();
            let hi: Vec<u32> = table.iter().map(|e| e.1 as u32).collect();
            let fr: Vec<f32> = table.iter().map(|e| e.2 as f32).collect();
            let a = t.index_select(&Tensor::from_vec(lo, n, dev)?, axis)?;
            let b = t.index_select(&Tensor::from_vec(hi, n, dev)?, axis)?;
            let mut shape = vec![1usize; 4];
            shape[axis] = n;
            let fr = Tensor::from_vec(fr, shape, dev)?;
            a.add(&b.sub(&a)?.broadcast_mul(&fr)?)
        };
    let cols = gather(&x, 2, resize_axis(w, ow, align_corners, half_pixel))?;
    gather(&cols, 1, resize_axis(h, oh, align_corners, half_pixel))
}

fn sparse_to_dense(ins: &[&Val], device: &Device) -> OpResult<Val> {
    let indices = ins[0].tensor();
    let shape: Vec<usize> = ints(ins[1])?
        .into_iter()
        .map(to_usize)
        .collect::<OpResult<_>>()?;
    let n: usize = shape.iter().product();
    let rank = shape.len();
    let idx = ints(ins[0])?;
    let rows = if indices.rank() == 0 {
        1
    } else {
        indices.dims()[0]
    };
    let width = if indices.rank() <= 1 {
        1
    } else {
        indices.dims()[1]
    };
    if width != rank.max(1) && rows != 0 {
        return msg(format!(
            "indices {:?} for an output of rank {rank}",
            indices.dims()
        ));
    }
    let values = ins[2].tensor().elem_count();
    if values != 1 && values != rows {
        return msg(format!("{values} values for {rows} indices"));
    }
    let flat = |r: usize| -> OpResult<usize> {
        let mut off = 0usize;
        for d in 0..rank.max(1) {
            let v = to_usize(idx[r * width + d])?;
            let dim = shape.get(d).copied().unwrap_or(1);
            if v >= dim {
                return msg(format!("index {v} out of range {dim}"));
            }
            off = off * dim + v;
        }
        Ok(off)
    };
    match (ins[2], ins[3]) {
        (Val::I(vals), Val::I(_)) => {
            let def = scalar_int(ins[3])?;
            let vals = vals.flatten_all()?.to_vec1::<i64>()?;
            let mut out = vec![def; n];
            for r in 0..rows {
                out[flat(r)?] = if vals.len() == 1 { vals[0] } else { vals[r] };
            }
            Ok(Val::I(Tensor::from_vec(out, shape, &Device::Cpu)?))
        }
        _ => {
            let def = scalar_f32(ins[3])?;
            let vals = float(ins[2], device)?.flatten_all()?.to_vec1::<f32>()?;
            let mut out = vec![def; n];
            for r in 0..rows {
                out[flat(r)?] = if vals.len() == 1 { vals[0] } else { vals[r] };
            }
            Ok(Val::F(Tensor::from_vec(out, shape, device)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        // Every half agrees with candle's conversion.
        let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let t = Tensor::from_raw_buffer(&all, DType::F16, &[65536], &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32));
        let v = t
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| e.to_string());
        assert!(v.is_ok(), "{v:?}");
        for (h, c) in v.unwrap_or_default().into_iter().enumerate() {
            let ours = f16_to_f32(h as u16);
            assert!(
                ours.to_bits() == c.to_bits() || (ours.is_nan() && c.is_nan()),
                "{h:#06x}: {ours} vs {c}"
            );
        }
    }

    #[test]
    fn base64_attributes() {
        assert_eq!(base64_decode("VkFMSUQ=").as_deref(), Some(&b"VALID"[..]));
        assert_eq!(base64_decode("TkhXQw==").as_deref(), Some(&b"NHWC"[..]));
        assert_eq!(base64_decode("U0FNRQ==").as_deref(), Some(&b"SAME"[..]));
    }

    #[test]
    fn output_names() {
        assert_eq!(split_output("a/b"), ("a/b", 0));
        assert_eq!(split_output("a/b:1"), ("a/b", 1));
    }

    #[test]
    fn shapes() {
        assert_eq!(
            resolve_shape(&[1, 80, -1], 80 * 169),
            Some(vec![1, 80, 169])
        );
        assert_eq!(resolve_shape(&[2, -1], 7), None);
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
    }

    fn t(v: Vec<f32>, s: &[usize]) -> Tensor {
        Tensor::from_vec(v, s, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
    }

    fn resize_both(
        x: &Tensor,
        oh: usize,
        ow: usize,
        align: bool,
        half: bool,
    ) -> candle_core::Result<Tensor> {
        let a = resize_bilinear_nhwc_cpu(x, oh, ow, align, half)?;
        let b = resize_bilinear_nhwc_ops(x, oh, ow, align, half)?;
        let d = a
            .sub(&b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(d < 1e-6, "cpu and ops resize differ by {d}");
        Ok(a)
    }

    #[test]
    fn resize_matches_tf_half_pixel() {
        // 1×2×2×1 → 4×4, half-pixel centres: TF gives rows/cols weights 0, .25, .75, 1.
        let x = t(vec![0.0, 1.0, 2.0, 3.0], &[1, 2, 2, 1]);
        let y = resize_both(&x, 4, 4, false, true)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>());
        let y = y.unwrap_or_else(|e| panic!("{e}"));
        let expect = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // Downscale 4 → 2 with half-pixel centres averages pairs.
        let x = t((0..4).map(|v| v as f32).collect(), &[1, 1, 4, 1]);
        let y = resize_both(&x, 1, 2, false, true)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>());
        assert_eq!(y.unwrap_or_else(|e| panic!("{e}")), vec![0.5, 2.5]);
        // Legacy (no half-pixel, no aligned corners): o·in/out.
        let y = resize_both(&x, 1, 2, false, false)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>());
        assert_eq!(y.unwrap_or_else(|e| panic!("{e}")), vec![0.0, 2.0]);
    }

    #[test]
    fn pads_with_a_constant() {
        let x = t(vec![1.0, 2.0], &[1, 2]);
        let y = pad_const(&x, &[(0, 0), (1, 2)], -1.0)
            .and_then(|y| y.flatten_all())
            .and_then(|y| y.to_vec1::<f32>());
        assert_eq!(
            y.unwrap_or_else(|e| panic!("{e}")),
            vec![-1.0, 1.0, 2.0, -1.0, -1.0]
        );
    }

    /// A tiny graph written to a temp dir: NHWC input [1,5,6,2]; a fused conv (SAME,
    /// stride 2: asymmetric padding, bias, relu); a depthwise conv (SAME) + bias Add +
    /// LeakyRelu (folded into the conv's epilogue); an unknown op off the outputs' path.
    fn tiny_graph(dir: &Path, truncate: bool) -> PathBuf {
        let vals = |n: usize, k: f32| {
            (0..n)
                .map(|i| (i as f32 * 0.37 + k).sin())
                .collect::<Vec<f32>>()
        };
        let weights: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
            ("w", vec![3, 3, 2, 3], vals(54, 0.1)),
            ("b", vec![3], vals(3, 0.7)),
            ("dw", vec![3, 3, 2, 1], vals(18, 1.3)),
            ("b2", vec![2], vals(2, 2.1)),
        ];
        let mut bin = Vec::new();
        for (_, _, v) in &weights {
            for x in v {
                bin.extend_from_slice(&x.to_le_bytes());
            }
        }
        if truncate {
            bin.truncate(bin.len() - 4);
        }
        let ints = |v: &[i64]| serde_json::json!({"list": {"i": v.iter().map(|x| x.to_string()).collect::<Vec<_>>()}});
        let s = |v: &str| serde_json::json!({ "s": v });
        let konst = |name: &str| serde_json::json!({"name": name, "op": "Const", "attr": {}});
        let json = serde_json::json!({
            "format": "graph-model",
            "modelTopology": {"node": [
                {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "-1"}, {"size": "5"}, {"size": "6"}, {"size": "2"}]}}}},
                konst("w"), konst("b"), konst("dw"), konst("b2"),
                {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"], "attr": {
                    "strides": ints(&[1, 2, 2, 1]), "padding": s("U0FNRQ=="), "data_format": s("TkhXQw=="),
                    "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}}, "num_args": {"i": "1"}}},
                {"name": "dconv", "op": "DepthwiseConv2dNative", "input": ["x", "dw", "^conv"], "attr": {
                    "strides": ints(&[1, 1, 1, 1]), "padding": s("U0FNRQ=="), "data_format": s("TkhXQw==")}},
                {"name": "dadd", "op": "AddV2", "input": ["dconv", "b2"]},
                {"name": "lrelu", "op": "LeakyRelu", "input": ["dadd"], "attr": {"alpha": {"f": 0.1}}},
                {"name": "weird", "op": "FancyOp", "input": ["x"]},
            ]},
            "weightsManifest": [{"paths": ["tiny.bin"], "weights": weights.iter().map(|(n, sh, _)|
                serde_json::json!({"name": n, "shape": sh, "dtype": "float32"})).collect::<Vec<_>>()}],
        });
        let path = dir.join("tiny.json");
        std::fs::write(&path, json.to_string()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("tiny.bin"), bin).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// Direct NHWC convolution with TF's SAME padding, in f64. `depthwise`: filter
    /// [kh, kw, C, 1], output channel c reads input channel c.
    fn naive_conv(
        x: &[f32],
        (n, h, w, c): (usize, usize, usize, usize),
        f: &[f32],
        co: usize,
        stride: usize,
        depthwise: bool,
    ) -> (Vec<f64>, usize, usize) {
        let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
        let pad = |i: usize, o: usize| ((o - 1) * stride + 3).saturating_sub(i) / 2;
        let (pt, pl) = (pad(h, oh), pad(w, ow));
        let mut out = vec![0f64; n * oh * ow * co];
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for o in 0..co {
                        let mut acc = 0f64;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = (
                                    (oy * stride + ky) as i64 - pt as i64,
                                    (ox * stride + kx) as i64 - pl as i64,
                                );
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                let base = ((b * h + iy as usize) * w + ix as usize) * c;
                                if depthwise {
                                    acc += f64::from(x[base + o])
                                        * f64::from(f[(ky * 3 + kx) * c + o]);
                                } else {
                                    for ci in 0..c {
                                        acc += f64::from(x[base + ci])
                                            * f64::from(f[((ky * 3 + kx) * c + ci) * co + o]);
                                    }
                                }
                            }
                        }
                        out[((b * oh + oy) * ow + ox) * co + o] = acc;
                    }
                }
            }
        }
        (out, oh, ow)
    }

    #[test]
    fn tiny_graph_matches_a_direct_convolution() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g = TfjsGraph::load(tiny_graph(dir.path(), false), &Device::Cpu)
            .unwrap_or_else(|e| panic!("{e}"));
        let (n, h, w, c) = (2, 5, 6, 2); // batch 2 against a declared -1
        let xs: Vec<f32> = (0..n * h * w * c)
            .map(|i| ((i as f32) * 0.61).cos())
            .collect();
        let x = t(xs.clone(), &[n, h, w, c]);
        let out = g
            .run(&[("x", &x)], &["conv", "lrelu"])
            .unwrap_or_else(|e| panic!("{e}"));
        let get = |t: &Tensor| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let vals = |k: usize, p: f32| {
            (0..k)
                .map(|i| (i as f32 * 0.37 + p).sin())
                .collect::<Vec<f32>>()
        };

        let (want, oh, ow) = naive_conv(&xs, (n, h, w, c), &vals(54, 0.1), 3, 2, false);
        assert_eq!(out[0].dims(), [n, oh, ow, 3]);
        assert_eq!((oh, ow), (3, 3));
        let b = vals(3, 0.7);
        for (i, (got, want)) in get(&out[0]).iter().zip(&want).enumerate() {
            let want = (want + f64::from(b[i % 3])).max(0.0);
            assert!(
                (f64::from(*got) - want).abs() < 1e-5,
                "conv[{i}]: {got} vs {want}"
            );
        }

        let (want, _, _) = naive_conv(&xs, (n, h, w, c), &vals(18, 1.3), 2, 1, true);
        assert_eq!(out[1].dims(), [n, h, w, c]);
        let b2 = vals(2, 2.1);
        for (i, (got, want)) in get(&out[1]).iter().zip(&want).enumerate() {
            let v = want + f64::from(b2[i % 2]);
            let want = if v < 0.0 { 0.1 * v } else { v };
            assert!(
                (f64::from(*got) - want).abs() < 1e-5,
                "depthwise[{i}]: {got} vs {want}"
            );
        }
        // The bias add and the activation were folded into the depthwise conv.
        assert!(g.epilogues.contains_key(&g.index["dconv"]));
        assert!(g.passthrough.contains(&g.index["lrelu"]));
        let fused = g
            .run(&[("x", &x)], &["dadd"])
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            fused
                .as_ref()
                .is_err_and(|e| e.contains("dadd") && e.contains("fused")),
            "{fused:?}"
        );
    }

    /// NHWC input [1,5,6,2]: `Pad` (NHWC) → VALID conv, and `Transpose` to NCHW → `Pad`
    /// (NCHW) → `Transpose` back → VALID conv (the pads folded into the convs); the first
    /// conv's output added to itself → `Relu` (folded into the add); a `PadV2` (−1) →
    /// VALID 3×3/2 `MaxPool` (folded into the pool).
    #[test]
    fn folded_pads_and_add_activations_give_the_unfolded_values() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let vals = |n: usize, k: f32| {
            (0..n)
                .map(|i| (i as f32 * 0.37 + k).sin())
                .collect::<Vec<f32>>()
        };
        let mut bin = Vec::new();
        for x in vals(54, 0.1) {
            bin.extend_from_slice(&x.to_le_bytes());
        }
        let int_weights: [(&str, Vec<usize>, Vec<i32>); 5] = [
            ("pad_nhwc", vec![4, 2], vec![0, 0, 1, 1, 1, 1, 0, 0]),
            ("pad_nchw", vec![4, 2], vec![0, 0, 0, 0, 1, 1, 1, 1]),
            ("to_nchw", vec![4], vec![0, 3, 1, 2]),
            ("to_nhwc", vec![4], vec![0, 2, 3, 1]),
            ("pad_pool", vec![4, 2], vec![0, 0, 1, 1, 0, 1, 0, 0]),
        ];
        for (_, _, v) in &int_weights {
            for x in v {
                bin.extend_from_slice(&x.to_le_bytes());
            }
        }
        bin.extend_from_slice(&(-1f32).to_le_bytes());
        let mut manifest =
            vec![serde_json::json!({"name": "w", "shape": [3, 3, 2, 3], "dtype": "float32"})];
        for (n, sh, _) in &int_weights {
            manifest.push(serde_json::json!({"name": n, "shape": sh, "dtype": "int32"}));
        }
        manifest.push(serde_json::json!({"name": "minus_one", "shape": [], "dtype": "float32"}));
        let ints = |v: &[i64]| serde_json::json!({"list": {"i": v.iter().map(|x| x.to_string()).collect::<Vec<_>>()}});
        let s = |v: &str| serde_json::json!({ "s": v });
        let konst = |name: &str| serde_json::json!({"name": name, "op": "Const", "attr": {}});
        let valid_conv = |name: &str, input: &str| {
            serde_json::json!({"name": name, "op": "Conv2D", "input": [input, "w"], "attr": {
                "strides": ints(&[1, 1, 1, 1]), "padding": s("VkFMSUQ="), "data_format": s("TkhXQw==")}})
        };
        let json = serde_json::json!({
            "format": "graph-model",
            "modelTopology": {"node": [
                {"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "1"}, {"size": "5"}, {"size": "6"}, {"size": "2"}]}}}},
                konst("w"), konst("pad_nhwc"), konst("pad_nchw"), konst("to_nchw"), konst("to_nhwc"),
                konst("pad_pool"), konst("minus_one"),
                {"name": "p1", "op": "Pad", "input": ["x", "pad_nhwc"]},
                valid_conv("c1", "p1"),
                {"name": "t1", "op": "Transpose", "input": ["x", "to_nchw"]},
                {"name": "p2", "op": "Pad", "input": ["t1", "pad_nchw"]},
                {"name": "t2", "op": "Transpose", "input": ["p2", "to_nhwc"]},
                valid_conv("c2", "t2"),
                {"name": "twice", "op": "AddV2", "input": ["c1", "c1"]},
                {"name": "relu", "op": "Relu", "input": ["twice"]},
                {"name": "p3", "op": "PadV2", "input": ["x", "pad_pool", "minus_one"]},
                {"name": "pool", "op": "MaxPool", "input": ["p3"], "attr": {
                    "ksize": ints(&[1, 3, 3, 1]), "strides": ints(&[1, 2, 2, 1]),
                    "padding": s("VkFMSUQ="), "data_format": s("TkhXQw==")}},
            ]},
            "weightsManifest": [{"paths": ["fold.bin"], "weights": manifest}],
        });
        let path = dir.path().join("fold.json");
        std::fs::write(&path, json.to_string()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("fold.bin"), bin).unwrap_or_else(|e| panic!("{e}"));
        let g = TfjsGraph::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"));
        for (node, pads) in [("c1", [1, 1, 1, 1]), ("c2", [1, 1, 1, 1])] {
            assert_eq!(g.conv_pads.get(&g.index[node]), Some(&pads), "{node}");
        }
        assert_eq!(
            g.pool_pads.get(&g.index["pool"]),
            Some(&([1, 1, 0, 1], -1.0))
        );
        assert!(g.add_acts.contains_key(&g.index["twice"]));

        let (h, w, c) = (5, 6, 2);
        let xs: Vec<f32> = (0..h * w * c).map(|i| ((i as f32) * 0.61).cos()).collect();
        let x = t(xs.clone(), &[1, h, w, c]);
        let out = g
            .run(&[("x", &x)], &["c1", "c2", "relu", "pool"])
            .unwrap_or_else(|e| panic!("{e}"));
        let get = |t: &Tensor| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        // Stride 1, 3×3, SAME = one pixel of zeros on every side.
        let (want, _, _) = naive_conv(&xs, (1, h, w, c), &vals(54, 0.1), 3, 1, false);
        for (k, name) in [(0, "c1"), (1, "c2")] {
            assert_eq!(out[k].dims(), [1, h, w, 3], "{name}");
            for (got, want) in get(&out[k]).iter().zip(&want) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-5,
                    "{name}: {got} vs {want}"
                );
            }
        }
        for (got, c1) in get(&out[2]).iter().zip(get(&out[0])) {
            assert_eq!(*got, (c1 + c1).max(0.0));
        }
        // The pool over the −1-padded input: rows −1..5 (one row each side), columns
        // 0..6 (one column on the right), windows 3×3 at stride 2.
        assert_eq!(out[3].dims(), [1, 3, 3, 2]);
        let at = |y: i64, xx: i64, ch: usize| {
            if y < 0 || y >= h as i64 || xx >= w as i64 {
                -1.0
            } else {
                xs[((y as usize) * w + xx as usize) * c + ch]
            }
        };
        let pooled = get(&out[3]);
        for oy in 0..3 {
            for ox in 0..3 {
                for ch in 0..c {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            m = m.max(at((oy * 2 + ky) as i64 - 1, (ox * 2 + kx) as i64, ch));
                        }
                    }
                    assert_eq!(pooled[(oy * 3 + ox) * c + ch], m, "pool ({oy}, {ox}, {ch})");
                }
            }
        }
        // The folded pads' and the add's own values no longer exist.
        for name in ["p1", "p2", "t2", "twice"] {
            let e = g
                .run(&[("x", &x)], &[name])
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert!(
                e.as_ref().is_err_and(|e| e.contains("fused")),
                "{name}: {e:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_node_the_op_and_the_weight() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let g = TfjsGraph::load(tiny_graph(dir.path(), false), &Device::Cpu)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            g.unsupported_ops(&["weird"]).ok(),
            Some(vec![("weird".to_string(), "FancyOp".to_string())])
        );
        assert_eq!(g.unsupported_ops(&["conv"]).ok(), Some(vec![]));
        let x = t(vec![0.0; 60], &[1, 5, 6, 2]);
        let e = g
            .run(&[("x", &x)], &["weird"])
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|e| e.contains("`weird`")
                && e.contains("FancyOp")
                && e.contains("tiny.json")),
            "{e:?}"
        );
        let e = g
            .run(&[("x", &x)], &["nothing"])
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(e.as_ref().is_err_and(|e| e.contains("nothing")), "{e:?}");
        let bad = t(vec![0.0; 50], &[1, 5, 5, 2]);
        let e = g
            .run(&[("x", &bad)], &["conv"])
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("input `x`") && e.contains("[1, 5, 5, 2]")),
            "{e:?}"
        );
        let e = g.run(&[], &["conv"]).map(|_| ()).map_err(|e| e.to_string());
        assert!(e.as_ref().is_err_and(|e| e.contains("not fed")), "{e:?}");

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let e = TfjsGraph::load(tiny_graph(dir.path(), true), &Device::Cpu)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            e.as_ref()
                .is_err_and(|e| e.contains("weight `b2`") && e.contains("truncated")),
            "{e:?}"
        );
        let e = TfjsGraph::load(dir.path().join("absent.json"), &Device::Cpu)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            e.as_ref().is_err_and(|e| e.contains("absent.json")),
            "{e:?}"
        );
    }
}
