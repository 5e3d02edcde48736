//! The parser: `model.json` (topology, signature, weights manifest) into [`Node`]s and
//! [`TensorSpec`]s, and the `.bin` shards into host weights, dequantised as TF.js does.

use super::node::{json_i64, split_output, Node};
use super::ops;
use super::value::Val;
use super::{Result, TensorSpec, TfjsError};
use crate::formats::files::{sibling, ModelFiles};
use candle_core::{Device, Tensor};
use half::f16;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

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
#[derive(Debug, PartialEq)]
pub(super) enum HostWeight {
    F32(Vec<f32>, Vec<usize>),
    I64(Vec<i64>, Vec<usize>),
}

/// A parsed model.json with its weights decoded.
pub(super) struct Model {
    pub(super) nodes: Vec<Node>,
    pub(super) index: HashMap<String, usize>,
    pub(super) placeholders: Vec<TensorSpec>,
    pub(super) signature_inputs: Vec<TensorSpec>,
    pub(super) signature_outputs: Vec<TensorSpec>,
    pub(super) weights: HashMap<String, HostWeight>,
}

/// Reads and parses `name` from `files` (a TF.js graph model) and decodes the weight shards
/// it lists (paths relative to its folder).
pub(super) fn parse(files: &dyn ModelFiles, name: &str) -> Result<Model> {
    let path = &files.origin(name);
    let format_error = |reason: String| TfjsError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let text = files.read(name).map_err(|source| TfjsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let json: ModelJson = serde_json::from_slice(&text).map_err(|e| format_error(e.to_string()))?;
    if let Some(f) = json.format.as_deref().filter(|&f| f != "graph-model") {
        return Err(format_error(format!(
            "format is `{f}`, expected `graph-model`"
        )));
    }
    let weights = decode_weights(files, name, &json.weights_manifest)?;

    let mut index = HashMap::new();
    for (i, n) in json.model_topology.node.iter().enumerate() {
        if index.insert(n.name.clone(), i).is_some() {
            return Err(format_error(format!("two nodes are named `{}`", n.name)));
        }
    }
    let mut nodes = Vec::with_capacity(json.model_topology.node.len());
    for n in json.model_topology.node {
        let mut inputs = Vec::new();
        for inp in n.input.iter().filter(|i| !i.starts_with('^')) {
            let (name, k) = split_output(inp);
            let src = index.get(name).ok_or_else(|| {
                format_error(format!(
                    "node `{}` reads `{inp}`, which is not in the graph",
                    n.name
                ))
            })?;
            inputs.push((*src, k));
        }
        nodes.push(Node {
            op_id: ops::lookup(&n.op),
            name: n.name,
            op: n.op,
            inputs,
            attr: n.attr,
        });
    }

    let placeholders = nodes
        .iter()
        .filter(|n| n.op == "Placeholder")
        .map(|n| TensorSpec {
            name: n.name.clone(),
            shape: dims(n.attr.get("shape").and_then(|s| s.pointer("/shape/dim"))),
        })
        .collect();
    let signature = json.signature.or_else(|| {
        json.user_defined_metadata
            .and_then(|m| m.get("signature").cloned())
    });
    let signature_inputs = spec_list(signature.as_ref().and_then(|s| s.get("inputs")));
    let signature_outputs = spec_list(signature.as_ref().and_then(|s| s.get("outputs")));
    Ok(Model {
        nodes,
        index,
        placeholders,
        signature_inputs,
        signature_outputs,
        weights,
    })
}

/// The values of the `Const` nodes, from their weights (floats on `device`, integers on the
/// CPU); `None` for every other node.
pub(super) fn const_values(
    path: &Path,
    nodes: &[Node],
    mut weights: HashMap<String, HostWeight>,
    device: &Device,
) -> Result<Vec<Option<Vec<Val>>>> {
    let mut consts: Vec<Option<Vec<Val>>> = (0..nodes.len()).map(|_| None).collect();
    for (node, slot) in nodes.iter().zip(&mut consts) {
        if node.op != "Const" {
            continue;
        }
        let bad = |reason: String| TfjsError::Weight {
            path: path.to_path_buf(),
            weight: node.name.clone(),
            reason,
        };
        let w = weights
            .remove(&node.name)
            .ok_or_else(|| bad("Const node without an entry in weightsManifest".into()))?;
        let val = match w {
            HostWeight::F32(v, s) => Tensor::from_vec(v, s, device).map(Val::F),
            HostWeight::I64(v, s) => Tensor::from_vec(v, s, &Device::Cpu).map(Val::I),
        }
        .map_err(|e| bad(e.to_string()))?;
        *slot = Some(vec![val]);
    }
    Ok(consts)
}

/// Reads each group's shards (concatenated, in order) and decodes its weights.
fn decode_weights(
    files: &dyn ModelFiles,
    name: &str,
    groups: &[WeightGroup],
) -> Result<HashMap<String, HostWeight>> {
    let path = files.origin(name);
    let mut out = HashMap::new();
    for group in groups {
        let mut data = Vec::new();
        for shard in &group.paths {
            let shard = sibling(name, shard);
            let bytes = files.read(&shard).map_err(|source| TfjsError::Io {
                path: files.origin(&shard),
                source,
            })?;
            data.extend_from_slice(&bytes);
        }
        decode_group(&path, group, &data, &mut out)?;
    }
    Ok(out)
}

/// Decodes the weights of one group from its shards' bytes `data`: each entry takes
/// `∏shape × bytes` of the stream, in order, and the entries must use all of it.
fn decode_group(
    path: &Path,
    group: &WeightGroup,
    data: &[u8],
    out: &mut HashMap<String, HostWeight>,
) -> Result<()> {
    let mut off = 0usize;
    for w in &group.weights {
        let bad = |reason: String| TfjsError::Weight {
            path: path.to_path_buf(),
            weight: w.name.clone(),
            reason,
        };
        let stored = match &w.quantization {
            Some(q) => q.dtype.as_str(),
            None => w.dtype.as_str(),
        };
        let elem = match (stored, &w.quantization) {
            ("uint8", Some(_)) | ("bool", None) => 1,
            ("uint16" | "float16", Some(_)) => 2,
            ("float32" | "int32", None) => 4,
            (other, Some(_)) => return Err(bad(format!("unknown quantization dtype `{other}`"))),
            (other, None) => return Err(bad(format!("unsupported dtype `{other}`"))),
        };
        let len = w.shape.iter().product::<usize>() * elem;
        let bytes = data.get(off..off + len).ok_or_else(|| {
            bad(format!(
                "needs bytes {off}..{} but the shards of its group hold {} bytes (truncated .bin?)",
                off + len,
                data.len()
            ))
        })?;
        off += len;
        let weight = decode_weight(w, stored, bytes).map_err(bad)?;
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
    Ok(())
}

/// One weight from its bytes, stored as `stored`: float32/int32/bool as they are; float16
/// exactly; uint8/uint16 affinely (`q · scale + min`, in f64, rounded for int32).
fn decode_weight(
    w: &WeightEntry,
    stored: &str,
    bytes: &[u8],
) -> std::result::Result<HostWeight, String> {
    let shape = w.shape.clone();
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
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            shape,
        ),
        (dt @ ("float32" | "int32"), "uint8" | "uint16", Some(q)) => {
            let (Some(scale), Some(min)) = (q.scale, q.min) else {
                return Err(format!("{} quantization without scale and min", q.dtype));
            };
            let raw: Vec<f64> = if stored == "uint8" {
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
        (dt, st, _) => return Err(format!("dtype {dt} stored as {st} is not supported")),
    };
    Ok(weight)
}

/// The signature's tensors (`inputs` or `outputs`), sorted by name.
fn spec_list(v: Option<&serde_json::Value>) -> Vec<TensorSpec> {
    let Some(map) = v.and_then(|v| v.as_object()) else {
        return Vec::new();
    };
    let mut out: Vec<TensorSpec> = map
        .iter()
        .map(|(key, spec)| {
            let name = spec.get("name").and_then(|n| n.as_str()).unwrap_or(key);
            let name = name.strip_suffix(":0").unwrap_or(name).to_string();
            let shape = dims(spec.pointer("/tensorShape/dim"));
            TensorSpec { name, shape }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A TF `TensorShapeProto`'s `dim` list: each `size`, `-1` where absent.
fn dims(dim: Option<&serde_json::Value>) -> Vec<i64> {
    dim.and_then(|d| d.as_array())
        .map(|dims| {
            dims.iter()
                .map(|d| json_i64(d.get("size")).unwrap_or(-1))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::tfjs::fixtures::{assert_fails, tiny_graph};
    use crate::formats::tfjs::TfjsGraph;

    /// Decodes the weights described by the manifest entries `weights` from `data`, as
    /// one group's shards.
    fn decode(weights: serde_json::Value, data: &[u8]) -> Result<HashMap<String, HostWeight>> {
        let group = WeightGroup {
            paths: vec!["m.bin".into()],
            weights: serde_json::from_value(weights).unwrap_or_else(|e| panic!("{e}")),
        };
        let mut out = HashMap::new();
        decode_group(Path::new("m.json"), &group, data, &mut out)?;
        Ok(out)
    }

    #[test]
    fn half_floats_convert_exactly() {
        // Every half, stored as float16 quantisation, agrees with candle's conversion.
        let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
        let got = decode(
            serde_json::json!([{"name": "h", "shape": [65536], "dtype": "float32",
                "quantization": {"dtype": "float16"}}]),
            &all,
        );
        let Ok(Some(HostWeight::F32(ours, shape))) = got.map(|mut m| m.remove("h")) else {
            panic!("float16 weight not decoded");
        };
        assert_eq!(shape, [65536]);
        assert_eq!(ours[0x3c00], 1.0);
        assert_eq!(ours[0xc000], -2.0);
        assert_eq!(ours[0x7bff], 65504.0);
        assert_eq!(ours[0x0001], 2f32.powi(-24));
        assert_eq!(ours[0x03ff], 1023.0 * 2f32.powi(-24));
        assert_eq!(ours[0xfc00], f32::NEG_INFINITY);
        assert!(ours[0x7e00].is_nan());
        assert_eq!(ours[0x8000].to_bits(), 0x8000_0000);
        let t = Tensor::from_raw_buffer(&all, candle_core::DType::F16, &[65536], &Device::Cpu)
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap_or_else(|e| panic!("{e}"));
        for (h, (o, c)) in ours.iter().zip(t).enumerate() {
            assert!(
                o.to_bits() == c.to_bits() || (o.is_nan() && c.is_nan()),
                "{h:#06x}: {o} vs {c}"
            );
        }
    }

    #[test]
    fn dequantises_affinely_and_checks_lengths() {
        let data = [0u8, 1, 255, 2, 0, 3, 0];
        let got = decode(
            serde_json::json!([
                {"name": "f", "shape": [3], "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
                {"name": "i", "shape": [2], "dtype": "int32",
                    "quantization": {"dtype": "uint16", "scale": 0.75, "min": 0.0}},
            ]),
            &data,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got["f"], HostWeight::F32(vec![-1.0, -0.5, 126.5], vec![3]));
        // 2 · 0.75 = 1.5 → 2; 3 · 0.75 = 2.25 → 2.
        assert_eq!(got["i"], HostWeight::I64(vec![2, 2], vec![2]));

        let short = serde_json::json!([{"name": "f", "shape": [2], "dtype": "float32"}]);
        assert_fails(decode(short, &[0; 12]), &["m.json", "describes 8 bytes"]);
        let no_scale = serde_json::json!([{"name": "q", "shape": [1], "dtype": "float32",
            "quantization": {"dtype": "uint8"}}]);
        assert_fails(
            decode(no_scale, &[0]),
            &["weight `q`", "without scale and min"],
        );
        let string = serde_json::json!([{"name": "s", "shape": [1], "dtype": "string"}]);
        assert_fails(decode(string, &[0]), &["unsupported dtype `string`"]);
    }

    #[test]
    fn load_errors_name_the_file_and_the_weight() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let truncated = TfjsGraph::load(tiny_graph(dir.path(), true), &Device::Cpu);
        assert_fails(truncated, &["tiny.json", "weight `b2`", "truncated"]);
        let absent = TfjsGraph::load(dir.path().join("absent.json"), &Device::Cpu);
        assert_fails(absent, &["absent.json", "cannot read"]);
    }
}
