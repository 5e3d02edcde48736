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
//! applied to each block while in cache; a 3×3 stride-1 conv with ≥ 32 channels on both
//! sides (most of NanoDet) runs [`crate::ops::conv3x3_winograd_nhwc`] instead, with the
//! filter transformed once at load, under the same epilogue contract. So in BlazeFace the residual adds, the depthwise
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
//! [`SUPPORTED_OPS`], the names in the op registry (`ops.rs`): one table whose entries are
//! each an op name and the function that evaluates it, so the list is the implementation.
//! Anything else fails with [`TfjsError::UnsupportedOp`] naming the node and op — at run
//! time, and only if the requested outputs depend on it.
//!
//! Batching: graphs declare batch 1, and reshape targets are baked for batch 1
//! (NanoDet: `[1, 80, -1]`). When the fed batch `B` differs from the declared batch, a
//! `Reshape` whose target starts with the declared batch while its input starts with `B`
//! gets `B` instead (axis 0 is the batch axis in every graph this runs).

//!
//! ## Code layout
//!
//! - `mod.rs`: the public API ([`TfjsGraph`], [`TfjsError`], [`TensorSpec`]).
//! - `load.rs`: the parser — model.json, topology and signature; the weights manifest and
//!   the `.bin` shards, dequantised.
//! - `passes.rs`: the load-time passes — constant folding, filter layout, and the folds of
//!   conv epilogues, `Add → Relu` and `Pad`s into the ops after them.
//! - `exec.rs`: the executor — topological order, feeds, running what the fetches need,
//!   freeing each value after its last use.
//! - `ops.rs`: the op registry and the ops.
//! - `kernels.rs`: tensor kernels the ops share (epilogues, resize, pad, memory-order helpers).
//! - `value.rs`: the values flowing through the graph and the ops' error type.

mod exec;
#[cfg(test)]
mod fixtures;
mod kernels;
mod load;
mod node;
mod ops;
mod passes;
mod value;

pub use kernels::resize_bilinear_nhwc;

use crate::formats::files::{DirFiles, ModelFiles};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The ops the executor implements: the names in its op registry, in the registry's order.
pub const SUPPORTED_OPS: &[&str] = &ops::op_names::<{ ops::OPS.len() }>(ops::OPS);

/// Errors of the TF.js loader and executor. Each names the model file and, where one is
/// concerned, the node, its op and the weight or tensor.
#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    /// A file could not be read.
    #[error("{path}: cannot read")]
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

/// A loaded TF.js graph model, ready to run on one device.
pub struct TfjsGraph {
    path: PathBuf,
    device: Device,
    nodes: Vec<node::Node>,
    index: HashMap<String, usize>,
    /// All nodes, topologically sorted.
    order: Vec<usize>,
    /// Values of constant nodes (Const and everything folded from constants).
    consts: Vec<Option<Vec<value::Val>>>,
    /// What the load-time passes decided (prepared filters, folded chains).
    folds: passes::Folds,
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

impl TfjsGraph {
    /// Loads `model.json` and the weight shards it lists (paths relative to its folder),
    /// folds constant sub-graphs and prepares convolution filters for `device`.
    pub fn load(model_json: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let (files, name) = DirFiles::split(model_json.as_ref());
        Self::load_from(&files, &name, device)
    }

    /// Loads `name` (a model.json) and the shards it lists (relative to its folder) from
    /// `files`: a folder, or bytes in memory.
    pub fn load_from(files: &dyn ModelFiles, name: &str, device: &Device) -> Result<Self> {
        let path = files.origin(name);
        let model = load::parse(files, name)?;
        let (order, users) =
            exec::topological_order(&model.nodes).map_err(|stuck| TfjsError::Format {
                path: path.clone(),
                reason: format!(
                    "the graph has a cycle (through `{}`); control flow is not supported",
                    model.nodes[stuck].name
                ),
            })?;
        let consts = load::const_values(&path, &model.nodes, model.weights, device)?;
        let mut graph = TfjsGraph {
            path,
            device: device.clone(),
            nodes: model.nodes,
            index: model.index,
            order,
            consts,
            folds: passes::Folds::default(),
            placeholders: model.placeholders,
            signature_inputs: model.signature_inputs,
            signature_outputs: model.signature_outputs,
        };
        graph.run_passes(&users)?;
        Ok(graph)
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
        self.index.contains_key(node::split_output(name).0)
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
            .filter(|n| n.op_id.is_none())
            .map(|n| (n.name.clone(), n.op.clone()))
            .collect())
    }

    /// Runs the graph: `feeds` are (placeholder name, tensor) — F32, any batch size on axis
    /// 0, the other axes as declared; returns the tensors named in `fetches` (`node` or
    /// `node:k`), in order. Only what the fetches depend on is computed.
    pub fn run(&self, feeds: &[(&str, &Tensor)], fetches: &[&str]) -> Result<Vec<Tensor>> {
        self.run_inner(feeds, fetches, None, false)
    }

    /// [`run`](Self::run) for a fully convolutional graph fed at another spatial size than
    /// the one it was exported for: the first 4-D input may differ from its declaration in
    /// height and width, and every `ResizeBilinear` with a constant size (a feature pyramid's
    /// up- and down-sampling to the next level's size) scales that size by fed / declared.
    /// The sizes must scale to whole numbers (for a detector with strides up to 32: height
    /// and width multiples of 32), else the resize fails with an error naming the node.
    pub fn run_spatial(&self, feeds: &[(&str, &Tensor)], fetches: &[&str]) -> Result<Vec<Tensor>> {
        self.run_inner(feeds, fetches, None, true)
    }

    /// [`run`](Self::run), also returning the time spent per op type (sorted, most first)
    /// with the node count. Meaningful on the CPU, where candle ops are synchronous.
    pub fn run_profiled(
        &self,
        feeds: &[(&str, &Tensor)],
        fetches: &[&str],
    ) -> Result<(Vec<Tensor>, OpProfile)> {
        let mut prof = exec::Profile::new();
        let out = self.run_inner(feeds, fetches, Some(&mut prof), false)?;
        let mut v: OpProfile = prof.into_iter().map(|(k, (d, n))| (k, d, n)).collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        Ok((out, v))
    }
}
