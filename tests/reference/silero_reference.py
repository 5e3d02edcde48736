#!/usr/bin/env python3
"""Reference speech probabilities of Silero VAD v6 (PyPI silero-vad 6.2.3) from onnxruntime.

Writes tests/reference/data/silero_<input>.json, read by tests/parity_silero.rs.

Set up (once):
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install onnxruntime==1.30.0 numpy==2.4.6 onnx==1.23.1
    python3 -m pip download --no-deps silero-vad==6.2.3 -d /tmp/silero
    cd /tmp/silero && python3 -m zipfile -e silero_vad-6.2.3-py3-none-any.whl wheel
Needs `ffmpeg` on PATH (Debian package ffmpeg) and ../shared/media beside the checkout.

Run (from the repository root):
    /tmp/ref/bin/python tests/reference/silero_reference.py --data /tmp/silero/wheel/silero_vad/data
    /tmp/ref/bin/python tests/reference/silero_reference.py --data ... --time   # timing only, writes nothing

Why two runs per input: the wheel's silero_vad_16k.safetensors does NOT hold the weights of
the wheel's ONNX/JIT model (only the STFT basis is the same; upstream issue #768). So each
input gets
  * "onnx": silero_vad.onnx exactly as shipped (the model `load_silero_vad(onnx=True)` runs);
  * "onnx_with_safetensors_weights": the 16 kHz graph silero_vad_16k_op15.onnx with every
    initializer replaced by the tensor of the same role in silero_vad_16k.safetensors.
    onnxruntime's graph optimisations are switched off for this run: with them on it
    constant-folds the LSTM's gate reordering before the override and keeps the ONNX's
    own LSTM weights.
Each run records `weights_digest`: sha256 over the f32 little-endian bytes of the 15
tensors in WEIGHT_ORDER, under the safetensors names; the Rust test picks the run whose
digest equals that of the weights it loaded.

Streaming protocol (the same in the Rust test): the decoded input is cut into 512-sample
chunks, the last partial chunk zero-padded to 512 (as upstream's audio_forward does); each
chunk is fed with the 64 samples before it (zeros before the first chunk) and the LSTM
state (2, 1, 128) of the previous chunk; one probability per chunk.
"""

import argparse
import hashlib
import json
import os
import platform
import struct
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

CHUNK = 512
CONTEXT = 64
SR = 16000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_MEDIA = os.path.join(ROOT, "..", "shared", "media")
OUT_DIR = os.path.join(ROOT, "tests", "reference", "data")

# name in silero_vad_16k.safetensors -> initializer name in silero_vad_16k_op15.onnx
WEIGHT_ORDER = [
    ("stft_conv.weight", "model.stft.forward_basis_buffer"),
    ("conv1.weight", "model.encoder.0.reparam_conv.weight"),
    ("conv1.bias", "model.encoder.0.reparam_conv.bias"),
    ("conv2.weight", "model.encoder.1.reparam_conv.weight"),
    ("conv2.bias", "model.encoder.1.reparam_conv.bias"),
    ("conv3.weight", "model.encoder.2.reparam_conv.weight"),
    ("conv3.bias", "model.encoder.2.reparam_conv.bias"),
    ("conv4.weight", "model.encoder.3.reparam_conv.weight"),
    ("conv4.bias", "model.encoder.3.reparam_conv.bias"),
    ("lstm_cell.weight_ih", "model.decoder.rnn.weight_ih"),
    ("lstm_cell.weight_hh", "model.decoder.rnn.weight_hh"),
    ("lstm_cell.bias_ih", "model.decoder.rnn.bias_ih"),
    ("lstm_cell.bias_hh", "model.decoder.rnn.bias_hh"),
    ("final_conv.weight", "model.decoder.decoder.2.weight"),
    ("final_conv.bias", "model.decoder.decoder.2.bias"),
]

INPUTS = [
    ("espeak_sentence", "sounds/espeak_sentence.wav"),
    ("person_sounds_dev", "av/person_sounds_dev.mp4"),
]


def ffmpeg_args(path):
    """The decode command; tests/parity_silero.rs runs the same one."""
    return ["ffmpeg", "-nostdin", "-v", "error", "-i", path,
            "-vn", "-ac", "1", "-ar", str(SR), "-f", "f32le", "-"]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        if spec["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {spec['dtype']}, expected F32")
        a, b = spec["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(spec["shape"])
    return out


def onnx_weights(path):
    """The 16 kHz graph's own initializers, under the safetensors names."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    out = {}
    for st_name, onnx_name in WEIGHT_ORDER:
        if onnx_name not in inits:
            sys.exit(f"{path}: initializer {onnx_name} missing")
        out[st_name] = inits[onnx_name]
    return out


def weights_digest(tensors):
    h = hashlib.sha256()
    for name, _ in WEIGHT_ORDER:
        h.update(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return h.hexdigest()


def run_stream(session, samples):
    n_chunks = -(-len(samples) // CHUNK)
    padded = np.zeros(n_chunks * CHUNK + CONTEXT, dtype=np.float32)
    padded[CONTEXT:CONTEXT + len(samples)] = samples
    state = np.zeros((2, 1, 128), dtype=np.float32)
    sr = np.array(SR, dtype=np.int64)
    probs = []
    for k in range(n_chunks):
        x = padded[k * CHUNK: k * CHUNK + CONTEXT + CHUNK][None, :]
        out, state = session.run(None, {"input": x, "state": state, "sr": sr})
        probs.append(float(out[0, 0]))
    return probs


def session(path, overrides=None):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    keep = []
    if overrides is not None:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        for st_name, onnx_name in WEIGHT_ORDER:
            v = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(overrides[st_name]))
            keep.append(v)
            opts.add_initializer(onnx_name, v)
    s = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    s._keep_alive = keep  # the overrides must outlive the session
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True,
                    help="silero_vad/data of the unpacked silero-vad 6.2.3 wheel")
    ap.add_argument("--time", action="store_true",
                    help="time one chunk (single thread) instead of writing references")
    args = ap.parse_args()

    onnx_path = os.path.join(args.data, "silero_vad.onnx")
    op15_path = os.path.join(args.data, "silero_vad_16k_op15.onnx")
    st_path = os.path.join(args.data, "silero_vad_16k.safetensors")
    st = read_safetensors(st_path)
    for name, _ in WEIGHT_ORDER:
        if name not in st:
            sys.exit(f"{st_path}: tensor {name} missing")

    shipped = session(onnx_path)
    swapped = session(op15_path, overrides=st)

    if args.time:
        rng = np.random.default_rng(0)
        x = (0.1 * rng.standard_normal((1, CONTEXT + CHUNK))).astype(np.float32)
        state = np.zeros((2, 1, 128), dtype=np.float32)
        sr = np.array(SR, dtype=np.int64)
        for name, s in [("silero_vad.onnx (default optimisations)", shipped),
                        ("op15 + safetensors weights (optimisations off)", swapped)]:
            for _ in range(200):
                s.run(None, {"input": x, "state": state, "sr": sr})
            n = 3000
            t = time.perf_counter()
            for _ in range(n):
                _, state = s.run(None, {"input": x, "state": state, "sr": sr})
            dt = (time.perf_counter() - t) / n
            print(f"onnxruntime {ort.__version__}, 1 thread, {name}: {dt * 1e6:.1f} us per 512-sample chunk")
        return

    os.makedirs(OUT_DIR, exist_ok=True)
    for stem, rel in INPUTS:
        path = os.path.join(SHARED_MEDIA, rel)
        raw = subprocess.run(ffmpeg_args(path), check=True, capture_output=True).stdout
        samples = np.frombuffer(raw, dtype="<f4")
        p_onnx = run_stream(shipped, samples)
        p_swap = run_stream(swapped, samples)
        doc = {
            "generator": "tests/reference/silero_reference.py",
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "package": "silero-vad==6.2.3 (PyPI, MIT)",
            "input": {
                "path": "media/" + rel,
                "decode": " ".join(ffmpeg_args("<path>")),
                "samples": int(len(samples)),
                "sha256_f32le": sha256(raw),
            },
            "chunk": CHUNK,
            "context": CONTEXT,
            "last_partial_chunk": "zero-padded",
            "runs": {
                "onnx": {
                    "model": "silero_vad.onnx",
                    "model_sha256": sha256(open(onnx_path, "rb").read()),
                    # digest of silero_vad_16k_op15.onnx's initializers: the 16 kHz
                    # weights of silero_vad.onnx and silero_vad.jit alike
                    "weights_digest": weights_digest(onnx_weights(op15_path)),
                    "probs": [round(p, 6) for p in p_onnx],
                },
                "onnx_with_safetensors_weights": {
                    "model": "silero_vad_16k_op15.onnx, initializers from silero_vad_16k.safetensors, graph optimisations off",
                    "model_sha256": sha256(open(op15_path, "rb").read()),
                    "safetensors_sha256": sha256(open(st_path, "rb").read()),
                    "weights_digest": weights_digest(st),
                    "probs": [round(p, 6) for p in p_swap],
                },
            },
        }
        out = os.path.join(OUT_DIR, f"silero_{stem}.json")
        with open(out, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        d = np.abs(np.array(p_onnx) - np.array(p_swap)).max()
        print(f"{out}: {len(p_onnx)} chunks; max |onnx - onnx_with_safetensors_weights| = {d:.4f}")


if __name__ == "__main__":
    main()
