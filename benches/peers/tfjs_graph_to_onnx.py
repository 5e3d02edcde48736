#!/usr/bin/env python3
"""Converts a TF.js graph model (model.json + weight shards) into ONNX, for benchmark peers
only (the fair onnxruntime peer of NanoDet in benches/models.sh's issue): the JSON
`modelTopology` is a TensorFlow GraphDef in JSON form whose Const nodes lack their values;
the values are read from the shards as `weightsManifest` lists them (float32, int32, and
the uint8/uint16/float16 quantised forms), put back into the Consts, and the GraphDef goes
through tf2onnx. The result is the same graph with the same weights, nothing retrained.

    python tfjs_graph_to_onnx.py models/cache/human-models/nanodet.json out.onnx [--opset 17]

Needs (a bench-only venv from PyPI): tensorflow, tf2onnx, onnx, numpy.
"""
import argparse
import json
import os

import numpy as np
import tensorflow as tf
import tf2onnx
from google.protobuf import json_format


def weights(model_json):
    model = json.load(open(model_json))
    base = os.path.dirname(model_json)
    out = {}
    for group in model["weightsManifest"]:
        data = b"".join(open(os.path.join(base, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = w["shape"]
            n = int(np.prod(shape)) if shape else 1
            dtype = np.dtype({"float32": np.float32, "int32": np.int32, "bool": np.bool_}[w["dtype"]])
            q = w.get("quantization")
            if q:
                qd = np.dtype({"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}[q["dtype"]])
                raw = np.frombuffer(data, qd, n, off)
                off += n * qd.itemsize
                if q["dtype"] == "float16":
                    v = raw.astype(np.float32)
                else:
                    v = raw.astype(np.float32) * q["scale"] + q["min"]
            else:
                v = np.frombuffer(data, dtype, n, off).copy()
                off += n * dtype.itemsize
            out[w["name"]] = v.astype(dtype).reshape(shape)
    return model, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_json")
    ap.add_argument("out")
    ap.add_argument("--opset", type=int, default=17)
    a = ap.parse_args()
    model, values = weights(a.model_json)
    graph = json_format.ParseDict(model["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    for node in graph.node:
        if node.op == "Const" and node.name in values:
            # TF.js stores int64 constants as int32: back to the node's own dtype.
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            v = values[node.name].astype(dtype)
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(v))
    sig = model.get("signature") or model.get("userDefinedMetadata", {}).get("signature", {})
    inputs = [k for k in sig.get("inputs", {})] or [n.name for n in graph.node if n.op == "Placeholder"]
    outputs = [v["name"] for v in sig.get("outputs", {}).values()]
    inputs = [i if ":" in i else i + ":0" for i in inputs]
    outputs = [o if ":" in o else o + ":0" for o in outputs]
    tf2onnx.convert.from_graph_def(graph, input_names=inputs, output_names=outputs,
                                   opset=a.opset, output_path=a.out)
    print(a.out, "inputs", inputs, "outputs", outputs)


if __name__ == "__main__":
    main()
