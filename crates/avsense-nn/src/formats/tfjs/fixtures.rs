//! Test fixtures shared by the unit tests of this module's files: small graph models
//! written to a temp dir, and a direct convolution to check them against.

use super::{Result, TfjsGraph};
use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A CPU tensor.
pub(super) fn t(v: Vec<f32>, s: &[usize]) -> Tensor {
    Tensor::from_vec(v, s, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}

/// A tensor's values, flattened.
pub(super) fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `n` smooth test values, `sin(0.37·i + k)`.
pub(super) fn vals(n: usize, k: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37 + k).sin()).collect()
}

/// [`tiny_graph`] loaded on the CPU (its files are read at load, then removed).
pub(super) fn load_tiny() -> TfjsGraph {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    TfjsGraph::load(tiny_graph(dir.path(), false), &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that `r` failed with a message that contains each of `parts`.
pub(super) fn assert_fails<T>(r: Result<T>, parts: &[&str]) {
    match r {
        Ok(_) => panic!("expected an error mentioning {parts:?}"),
        Err(e) => {
            let e = e.to_string();
            assert!(parts.iter().all(|p| e.contains(p)), "{e}");
        }
    }
}

/// A `list.i` attribute.
fn ints(v: &[i64]) -> Value {
    json!({"list": {"i": v.iter().map(|x| x.to_string()).collect::<Vec<_>>()}})
}

/// An `s` attribute (base64, as TF writes it).
fn s(v: &str) -> Value {
    json!({ "s": v })
}

/// A `Const` node (its value is the weight of the same name).
fn konst(name: &str) -> Value {
    json!({"name": name, "op": "Const", "attr": {}})
}

/// A placeholder `x` of shape `dims`.
fn placeholder(dims: &[&str]) -> Value {
    let dim: Vec<Value> = dims.iter().map(|d| json!({ "size": d })).collect();
    json!({"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": dim}}}})
}

/// Writes `<dir>/<name>.json` (the nodes, one weight group) and `<dir>/<name>.bin`.
fn write_model(
    dir: &Path,
    name: &str,
    nodes: Vec<Value>,
    weights: Vec<Value>,
    bin: &[u8],
) -> PathBuf {
    let json = json!({
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": [format!("{name}.bin")], "weights": weights}],
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json.to_string()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(format!("{name}.bin")), bin).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// A tiny graph written to `dir` (`tiny.json`): NHWC input [-1,5,6,2]; a fused conv (SAME,
/// stride 2: asymmetric padding, bias, relu); a depthwise conv (SAME) + bias Add +
/// LeakyRelu (folded into the conv's epilogue); an unknown op off the outputs' path.
/// `truncate`: the .bin is 4 bytes short.
pub(super) fn tiny_graph(dir: &Path, truncate: bool) -> PathBuf {
    let weights: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("w", vec![3, 3, 2, 3], vals(54, 0.1)),
        ("b", vec![3], vals(3, 0.7)),
        ("dw", vec![3, 3, 2, 1], vals(18, 1.3)),
        ("b2", vec![2], vals(2, 2.1)),
    ];
    let mut bin: Vec<u8> = weights
        .iter()
        .flat_map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    if truncate {
        bin.truncate(bin.len() - 4);
    }
    let nodes = vec![
        placeholder(&["-1", "5", "6", "2"]),
        konst("w"),
        konst("b"),
        konst("dw"),
        konst("b2"),
        json!({"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"], "attr": {
            "strides": ints(&[1, 2, 2, 1]), "padding": s("U0FNRQ=="), "data_format": s("TkhXQw=="),
            "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}}, "num_args": {"i": "1"}}}),
        json!({"name": "dconv", "op": "DepthwiseConv2dNative", "input": ["x", "dw", "^conv"], "attr": {
            "strides": ints(&[1, 1, 1, 1]), "padding": s("U0FNRQ=="), "data_format": s("TkhXQw==")}}),
        json!({"name": "dadd", "op": "AddV2", "input": ["dconv", "b2"]}),
        json!({"name": "lrelu", "op": "LeakyRelu", "input": ["dadd"], "attr": {"alpha": {"f": 0.1}}}),
        json!({"name": "weird", "op": "FancyOp", "input": ["x"]}),
    ];
    let manifest = weights
        .iter()
        .map(|(n, sh, _)| json!({"name": n, "shape": sh, "dtype": "float32"}))
        .collect();
    write_model(dir, "tiny", nodes, manifest, &bin)
}

/// A graph of foldable chains written to `dir` (`fold.json`), NHWC input [1,5,6,2]: `Pad`
/// (NHWC) → VALID conv `c1`, and `Transpose` to NCHW → `Pad` (NCHW) → `Transpose` back →
/// VALID conv `c2` (the same 3×3 filter `w`, `vals(54, 0.1)`); `c1 + c1` → `Relu`
/// (`twice`, `relu`); a `PadV2` (−1) → VALID 3×3/2 `MaxPool` (`pool`).
pub(super) fn fold_graph(dir: &Path) -> PathBuf {
    let mut bin: Vec<u8> = vals(54, 0.1).iter().flat_map(|x| x.to_le_bytes()).collect();
    let int_weights: [(&str, Vec<usize>, Vec<i32>); 5] = [
        ("pad_nhwc", vec![4, 2], vec![0, 0, 1, 1, 1, 1, 0, 0]),
        ("pad_nchw", vec![4, 2], vec![0, 0, 0, 0, 1, 1, 1, 1]),
        ("to_nchw", vec![4], vec![0, 3, 1, 2]),
        ("to_nhwc", vec![4], vec![0, 2, 3, 1]),
        ("pad_pool", vec![4, 2], vec![0, 0, 1, 1, 0, 1, 0, 0]),
    ];
    for (_, _, v) in &int_weights {
        bin.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    bin.extend_from_slice(&(-1f32).to_le_bytes());
    let mut manifest = vec![json!({"name": "w", "shape": [3, 3, 2, 3], "dtype": "float32"})];
    for (n, sh, _) in &int_weights {
        manifest.push(json!({"name": n, "shape": sh, "dtype": "int32"}));
    }
    manifest.push(json!({"name": "minus_one", "shape": [], "dtype": "float32"}));
    let valid_conv = |name: &str, input: &str| {
        json!({"name": name, "op": "Conv2D", "input": [input, "w"], "attr": {
            "strides": ints(&[1, 1, 1, 1]), "padding": s("VkFMSUQ="), "data_format": s("TkhXQw==")}})
    };
    let mut nodes = vec![placeholder(&["1", "5", "6", "2"])];
    for name in [
        "w",
        "pad_nhwc",
        "pad_nchw",
        "to_nchw",
        "to_nhwc",
        "pad_pool",
        "minus_one",
    ] {
        nodes.push(konst(name));
    }
    nodes.extend([
        json!({"name": "p1", "op": "Pad", "input": ["x", "pad_nhwc"]}),
        valid_conv("c1", "p1"),
        json!({"name": "t1", "op": "Transpose", "input": ["x", "to_nchw"]}),
        json!({"name": "p2", "op": "Pad", "input": ["t1", "pad_nchw"]}),
        json!({"name": "t2", "op": "Transpose", "input": ["p2", "to_nhwc"]}),
        valid_conv("c2", "t2"),
        json!({"name": "twice", "op": "AddV2", "input": ["c1", "c1"]}),
        json!({"name": "relu", "op": "Relu", "input": ["twice"]}),
        json!({"name": "p3", "op": "PadV2", "input": ["x", "pad_pool", "minus_one"]}),
        json!({"name": "pool", "op": "MaxPool", "input": ["p3"], "attr": {
            "ksize": ints(&[1, 3, 3, 1]), "strides": ints(&[1, 2, 2, 1]),
            "padding": s("VkFMSUQ="), "data_format": s("TkhXQw==")}}),
    ]);
    write_model(dir, "fold", nodes, manifest, &bin)
}

/// Direct NHWC convolution with TF's SAME padding, in f64. `depthwise`: filter
/// [kh, kw, C, 1], output channel c reads input channel c.
pub(super) fn naive_conv(
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
                                acc += f64::from(x[base + o]) * f64::from(f[(ky * 3 + kx) * c + o]);
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
