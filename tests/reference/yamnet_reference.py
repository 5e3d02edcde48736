#!/usr/bin/env python3
"""Reference log-mel spectrograms and scores of YAMNet (yamnet.tflite) from LiteRT.

Writes tests/reference/data/yamnet_<input>.json, read by tests/parity_yamnet.rs.

Set up (once):
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install ai-edge-litert==2.3.0 numpy==2.4.6 flatbuffers==25.12.19
Needs `ffmpeg` on PATH (Debian package ffmpeg), ../shared/media beside the checkout and the
model at models/cache/yamnet/yamnet.tflite (`avsense models fetch`, or copy it from
../shared/models).

Run (from the repository root):
    /tmp/ref/bin/python tests/reference/yamnet_reference.py            # writes the JSON files
    /tmp/ref/bin/python tests/reference/yamnet_reference.py --time     # timing only, writes nothing

The model. yamnet.tflite takes one patch of 15600 samples (0.975 s at 16 kHz) and computes
its own log-mel [96, 64] (output Identity_1) and the 521 scores (Identity). Its front end is
the TFLite-compatible one of upstream yamnet/features.py: 96 frames of 400 samples every 160
(a GATHER; no padding of the waveform), times a periodic Hann window, each frame zero-padded
by 56 on both sides to 512, the real and imaginary DFT as FULLY_CONNECTED with [257, 512]
weights, sqrt(re^2 + im^2), the mel projection as FULLY_CONNECTED with [64, 257] weights and a
bias of 0.001, LOG. The DFT and mel weights are int8 (weight-only quantisation), and so are
the pointwise convolutions, the deeper depthwise filters and the classifier.

Three runs per patch:
  * "litert": the model as shipped, default interpreter (XNNPACK delegate), 1 thread. Its
    hybrid int8 kernels quantise every FULLY_CONNECTED/CONV_2D input to int8 on the fly
    (XNNPACK: asymmetric, one scale and zero point per row); this coarsens the log-mel a lot.
  * "litert_builtin": the same model on the builtin kernels without delegate (symmetric
    per-row input quantisation). Only a summary is stored: how far its scores are from
    "litert" (the two LiteRT kernels disagree with each other by up to ~0.1).
  * "float": the same graph rebuilt in float: every int8 weight dequantised as
    scale * (q - zero_point) (as avsense loads it), the DEQUANTIZE ops folded, and in the front
    end the DFT weights replaced by exact cos/sin and the mel weights by TensorFlow's
    linear_to_mel_weight_matrix (computed below; the script checks that each is within half
    a quantisation step of the shipped int8 matrix, i.e. these are the matrices the converter
    quantised). This is upstream's float YAMNet, run by LiteRT's float kernels.

Patches: the input is decoded to 16 kHz mono f32 (`ffmpeg -ac 1 -ar 16000 -f f32le`) and
zero-padded at the end to 15600 + (P - 1) * 7680 samples with P = 1 + ceil(max(0, n - 15600)
/ 7680) (upstream's pad_waveform); patch k starts at sample 7680 k. Frames of overlapping
patches are the same frames (each frame is quantised on its own; the script asserts it), so
the log-mel is stored once per frame: frame f starts at sample 160 f of the padded segment,
patch k is frames 48 k .. 48 k + 96. For the dev clip only a few separate windows are taken.

Also stored, "float64": the log-mel of the same frames computed in float64 numpy by the
formulas of upstream's features.py (periodic Hann, |rfft| of 512, TF mel matrix, log(+0.001)),
the precise target for the front end.

Storage: log-mel frames as base64 of little-endian f32, "litert" for every frame, "float" and
"float64" for at most the first FLOAT_FRAMES frames of a segment (to keep the files small);
scores rounded to 6 decimals.
"""

import argparse
import base64
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as S
from ai_edge_litert.interpreter import Interpreter, OpResolverType

SR = 16000
PATCH = 15600
HOP = 7680
FRAME_HOP = 160
PATCH_FRAMES = 96
PATCH_HOP_FRAMES = 48
MEL = 64
FLOAT_FRAMES = 144
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_MEDIA = os.path.join(ROOT, "..", "shared", "media")
OUT_DIR = os.path.join(ROOT, "tests", "reference", "data")
MODEL = os.path.join(ROOT, "models", "cache", "yamnet", "yamnet.tflite")

# (stem, file under ../shared/media, None = whole file | list of window starts in seconds)
INPUTS = [
    ("alarm_clock_elapsed", "sounds/alarm-clock-elapsed.wav", None),
    ("camera_shutter", "sounds/camera-shutter.wav", None),
    ("espeak_sentence", "sounds/espeak_sentence.wav", None),
    ("phone_incoming_call", "sounds/phone-incoming-call.wav", None),
    # speech over room noise, the telephone, room noise only
    ("person_sounds_dev", "av/person_sounds_dev.mp4", [8.0, 20.5, 35.0]),
]


def decode(path):
    out = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vn", "-ac", "1", "-ar", str(SR),
         "-f", "f32le", "-"],
        check=True, capture_output=True).stdout
    return np.frombuffer(out, np.float32), hashlib.sha256(out).hexdigest()


def hertz_to_mel(f):
    return 1127.0 * np.log1p(f / 700.0)


def tf_linear_to_mel_weight_matrix(num_mel_bins=64, num_spectrogram_bins=257, sample_rate=16000.0,
                                   lower_edge_hertz=125.0, upper_edge_hertz=7500.0):
    """tf.signal.linear_to_mel_weight_matrix (HTK mel, triangles in mel space, DC bin zeroed)."""
    nyquist = sample_rate / 2.0
    linear = np.linspace(0.0, nyquist, num_spectrogram_bins)[1:]
    spec_mel = hertz_to_mel(linear)[:, None]
    edges = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz),
                        num_mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    lower_slopes = (spec_mel - lower) / (center - lower)
    upper_slopes = (upper - spec_mel) / (upper - center)
    w = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(w, [[1, 0], [0, 0]])  # [num_spectrogram_bins, num_mel_bins]


def builtin_code(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def dequantize(model, t):
    q = np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8).reshape(t.shape)
    qp = t.quantization
    scale = np.asarray(qp.scale, np.float32)
    zp = np.asarray(qp.zeroPoint, np.int64)
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[qp.quantizedDimension] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (scale * (q.astype(np.int64) - zp).astype(np.float32)).astype(np.float32)


def float_model(buf):
    """The shipped graph with float weights (see the module doc). Returns (bytes, report)."""
    m = S.ModelT.InitFromPackedBuf(buf, 0)
    sg = m.subgraphs[0]
    report = {}

    def set_const(ti, arr):
        t = sg.tensors[ti]
        b = S.BufferT()
        b.data = np.frombuffer(np.ascontiguousarray(arr, np.float32).tobytes(), np.uint8)
        m.buffers.append(b)
        t.buffer = len(m.buffers) - 1
        t.type = S.TensorType.FLOAT32
        t.quantization = None

    kept = []
    for op in sg.operators:
        if builtin_code(m, op) == S.BuiltinOperator.DEQUANTIZE:
            src = sg.tensors[op.inputs[0]]
            set_const(op.outputs[0], dequantize(m, src))
            continue
        kept.append(op)
    sg.operators = kept
    exact_mel = tf_linear_to_mel_weight_matrix().T  # [64, 257], FULLY_CONNECTED is [out, in]
    n = np.arange(512)[None, :]
    k = np.arange(257)[:, None]
    exact_cos = np.cos(2 * np.pi * k * n / 512)
    exact_sin = np.sin(2 * np.pi * k * n / 512)
    for op in sg.operators:
        for ti in op.inputs:
            if ti < 0:
                continue
            t = sg.tensors[ti]
            if t.type != S.TensorType.INT8 or t.buffer == 0 or m.buffers[t.buffer].data is None:
                continue
            w = dequantize(m, t)
            step = float(np.max(t.quantization.scale))
            if builtin_code(m, op) == S.BuiltinOperator.FULLY_CONNECTED and w.shape != (521, 1024):
                candidates = {"dft_real_cos": exact_cos, "dft_imag_sin": exact_sin,
                              "mel_tf_linear_to_mel": exact_mel}
                name, exact = min(((n_, e) for n_, e in candidates.items() if e.shape == w.shape),
                                  key=lambda ne: np.abs(ne[1] - w).max())
                err = float(np.abs(exact - w).max())
                assert err <= step / 2 + 1e-6, (name, err, step)
                report[name] = {"max_abs_diff_to_int8": err, "half_step": step / 2}
                w = exact
            set_const(ti, w)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), report


def interpreter(content, resolver=OpResolverType.AUTO):
    it = Interpreter(model_content=content, num_threads=1, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    outs = {d["name"]: d["index"] for d in it.get_output_details()}
    return it, inp, outs["Identity"], outs["Identity_1"]


def run(runner, patch):
    it, inp, scores, log_mel = runner
    it.set_tensor(inp, patch[None, :])
    it.invoke()
    return it.get_tensor(log_mel).copy(), it.get_tensor(scores)[0].copy()


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, "<f4").tobytes()).decode()


def segment(samples, runners):
    n = len(samples)
    patches = 1 + (max(0, n - PATCH) + HOP - 1) // HOP
    padded = np.zeros(PATCH + (patches - 1) * HOP, np.float32)
    padded[:n] = samples
    frames = PATCH_FRAMES + (patches - 1) * PATCH_HOP_FRAMES
    seg = {"samples": int(n), "padded_samples": len(padded), "patches": patches, "frames": frames}
    lm = {k: np.zeros((frames, MEL), np.float32) for k in ("litert", "float")}
    scores = {k: [] for k in ("litert", "litert_builtin", "float")}
    for p in range(patches):
        x = padded[p * HOP: p * HOP + PATCH]
        f0 = p * PATCH_HOP_FRAMES
        for name, runner in runners.items():
            mel, s = run(runner, x)
            scores[name].append(s)
            if name not in lm:
                continue
            if p > 0:  # overlapping frames: the same frames, computed again
                prev = lm[name][f0: f0 + PATCH_FRAMES - PATCH_HOP_FRAMES]
                diff = float(np.abs(prev - mel[: PATCH_FRAMES - PATCH_HOP_FRAMES]).max())
                tol = 0.0 if name == "litert" else 1e-5
                assert diff <= tol, f"{name}: patch {p} overlap differs by {diff}"
            lm[name][f0: f0 + PATCH_FRAMES] = mel
    kept = min(frames, FLOAT_FRAMES)
    builtin = np.array(scores["litert_builtin"])
    seg["litert"] = {
        "log_mel_frames": frames,
        "log_mel_f32le_base64": b64(lm["litert"]),
        "scores": [[round(float(v), 6) for v in s] for s in scores["litert"]],
    }
    seg["litert_builtin_vs_litert_max_abs_diff"] = float(
        np.abs(builtin - np.array(scores["litert"])).max())
    seg["float"] = {
        "log_mel_frames": kept,
        "log_mel_f32le_base64": b64(lm["float"][:kept]),
        "scores": [[round(float(v), 6) for v in s] for s in scores["float"]],
    }
    seg["float64"] = {
        "log_mel_frames": kept,
        "log_mel_f32le_base64": b64(float64_log_mel(padded, kept)),
    }
    return seg


def float64_log_mel(samples, frames):
    """Upstream's float front end in float64 numpy (the f32 runs carry rounding errors that
    ln(mel + 0.001) magnifies in quiet bands: up to 8e-4 for the "float" LiteRT run)."""
    x = samples.astype(np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    fr = np.stack([x[i * FRAME_HOP: i * FRAME_HOP + 400] for i in range(frames)]) * window
    mag = np.abs(np.fft.rfft(fr, 512))
    return np.log(mag @ tf_linear_to_mel_weight_matrix() + 0.001)


def timing(runners, samples, reps=200):
    x = np.zeros(PATCH, np.float32)
    x[: min(PATCH, len(samples))] = samples[:PATCH]
    for name, runner in runners.items():
        for _ in range(10):
            run(runner, x)
        t = time.perf_counter()
        for _ in range(reps):
            run(runner, x)
        dt = (time.perf_counter() - t) / reps
        print(f"{name}: {dt * 1e3:.3f} ms per patch (1 thread, mean of {reps})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--time", action="store_true", help="only time one patch per run kind")
    args = ap.parse_args()
    buf = open(args.model, "rb").read()
    fbuf, report = float_model(buf)
    runners = {
        "litert": interpreter(buf),
        "litert_builtin": interpreter(buf, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
        "float": interpreter(fbuf),
    }
    if args.time:
        samples, _ = decode(os.path.join(SHARED_MEDIA, INPUTS[2][1]))
        timing(runners, samples)
        return
    for stem, rel, starts in INPUTS:
        samples, digest = decode(os.path.join(SHARED_MEDIA, rel))
        doc = {
            "input": rel,
            "pcm_sha256": digest,
            "samples": int(len(samples)),
            "model_sha256": hashlib.sha256(buf).hexdigest(),
            "runtime": {"ai_edge_litert": "2.3.0", "numpy": np.__version__,
                        "python": platform.python_version(), "threads": 1},
            "float_model_front_end_check": report,
            "segments": [],
        }
        if starts is None:
            doc["segments"].append({"start_sample": 0, **segment(samples, runners)})
        else:
            for s in starts:
                a = int(round(s * SR))
                doc["segments"].append(
                    {"start_sample": a, **segment(samples[a: a + PATCH], runners)})
        path = os.path.join(OUT_DIR, f"yamnet_{stem}.json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        worst = max(s["litert_builtin_vs_litert_max_abs_diff"] for s in doc["segments"])
        print(f"{path}: {os.path.getsize(path)} bytes, "
              f"{sum(s['patches'] for s in doc['segments'])} patches, "
              f"builtin vs xnnpack scores max |d| {worst:.4f}")


if __name__ == "__main__":
    sys.exit(main())
