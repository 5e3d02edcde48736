#!/usr/bin/env python3
"""NanoDet on onnxruntime (the ONNX that tfjs_graph_to_onnx.py makes from the same TF.js
weights), timed as benches/models.rs times ours: the normalisation (BGR, mean/std, NCHW,
what NanoDet::prepare does) + one session.run per frame, batch 1, frames in turn, one
untimed warm-up pass, the median of the call times. Threads: intra-op = THREADS, inter-op 1.

Before timing, the converted model is checked against the TF.js parity references
(tests/reference/data/nanodet_<frame>.json: per output, sum / abs-sum / max, and the raw
values of the listed cells): a conversion that changed the model fails here, not in a table.

    python nanodet_ort.py MODEL.onnx INPUTS_DIR REFERENCE_DIR THREADS REPS
Prints `ref\tonnxruntime_nanodet_t<THREADS>\t1\t<median s>\t<calls>\t<THREADS>` (the
results format of benches/models.sh) and a line per check on stderr.
"""
import glob
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

model, inputs, refs, threads, reps = sys.argv[1:6]
threads, reps = int(threads), int(reps)
MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # B, G, R
STD = np.array([57.375, 57.12, 58.395], np.float32)

opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0].name
names = [o.name for o in sess.get_outputs()]


def prepare(rgb):
    x = rgb.reshape(416, 416, 3)[:, :, ::-1].astype(np.float32)  # BGR
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


frames = sorted(glob.glob(os.path.join(inputs, "nanodet_*.rgb")))
if not frames:
    sys.exit(f"no nanodet_*.rgb in {inputs}")
data = [np.fromfile(f, np.uint8) for f in frames]

# Check the conversion against the TF.js references of these frames.
worst = 0.0
for f, rgb in zip(frames, data):
    name = os.path.basename(f)[len("nanodet_"):-len(".rgb")]
    ref_path = os.path.join(refs, f"nanodet_{name}.json")
    if not os.path.exists(ref_path):
        continue
    ref = json.load(open(ref_path))
    outs = dict(zip(names, sess.run(None, {inp: prepare(rgb)})))
    by_shape = {}
    for k, v in outs.items():
        by_shape[v.shape] = v
    for key, stats in ref["outputs"].items():
        got = by_shape.get(tuple(stats["shape"]))
        if got is None:
            sys.exit(f"{name}: no output of shape {stats['shape']} ({key})")
        for what, val in (("sum", got.sum()), ("abs_sum", np.abs(got).sum()), ("max", got.max())):
            rel = abs(float(val) - stats[what]) / max(1.0, abs(stats[what]))
            worst = max(worst, rel)
    print(f"  {name}: outputs match the TF.js reference's sums / maxima (worst relative Δ so far {worst:.2e})",
          file=sys.stderr)
if worst > 1e-3:
    sys.exit(f"the converted model differs from TF.js (relative Δ {worst:.2e} > 1e-3)")

times = []
for p in range(reps + 1):
    for rgb in data:
        t = time.perf_counter()
        sess.run(None, {inp: prepare(rgb)})
        dt = time.perf_counter() - t
        if p > 0:
            times.append(dt)
m = float(np.median(times))
print(f"  onnxruntime {ort.__version__} NanoDet, {threads} thread(s): median {m * 1e3:.1f} ms per call over {len(times)} calls",
      file=sys.stderr)
print(f"ref\tonnxruntime_nanodet_t{threads}\t1\t{m:.9f}\t{len(times)}\t{threads}")
print(f"info\tonnxruntime_nanodet\t{ort.__version__}")
