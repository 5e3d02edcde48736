#!/usr/bin/env bash
# Per-model latency of our candle models beside their reference runtimes, on the same
# inputs and at the same thread count (1 each side), in one invocation. Run from anywhere:
#
#     bash benches/models.sh                 # prints a Markdown table, also target/bench/models.md
#     REPS=5 NANODET_REPS=2 THREADS2=0 bash benches/models.sh   # quicker
#
# Models (models/cache, `avsense models fetch`) and their references:
#   Silero VAD   silero_vad.jit (ours)  vs onnxruntime 1.30.0 on silero_vad.onnx of the PyPI
#                wheel silero-vad 6.2.3 (the same 16 kHz weights, bit for bit).
#   YAMNet       yamnet.tflite (ours)   vs ai-edge-litert 2.3.0 on the same file: "litert"
#                (default: XNNPACK, int8-hybrid kernels), "litert_builtin" (no delegate) and
#                "float" (the graph rebuilt in f32 by tests/reference/yamnet_reference.py).
#                The .tflite computes its own log-mel from 15600 samples: compare it with
#                our "log-mel + net"; "net" is our network alone on a precomputed log-mel.
#   NanoDet      nanodet.json (ours)    vs @tensorflow/tfjs 4.22.0 in node: the pure-JS
#                "cpu" backend (the parity reference) and @tensorflow/tfjs-backend-wasm 4.22.0
#                (XNNPACK in WebAssembly; SIMD when node supports it; 1 thread), and
#                onnxruntime 1.32.0 on the same weights (the fair server-CPU peer): our very
#                TF.js files converted by benches/peers/tfjs_graph_to_onnx.py (tf2onnx) and
#                checked against the TF.js parity references by benches/peers/nanodet_ort.py
#                before timing, at 1 thread and (THREADS2=1) 2 threads, as
#                benches/nanodet-peer.sh does alone.
#
# Inputs (extracted once into $OUT/inputs, read by every side): espeak_sentence.wav as
# 16 kHz mono f32 (Silero: its 512-sample chunks in order, state carried; YAMNet: its
# 0.96 s patches, zero-padded as upstream); two real 416x416 RGB frames decoded with the
# parity test's ffmpeg argv (videos/bottle-detection.mp4 at 5 s, av/person_sounds_dev.mp4
# at 44 s; sha256 checked against tests/reference/data/nanodet_*.json).
#
# Protocol, the same on every side: one untimed warm-up pass, then the median of the
# individual call times (Silero, YAMNet: REPS passes over all chunks/patches; NanoDet:
# at least NANODET_REPS calls; TF.js: 1 warm-up call, then TFJS_CPU_REPS / TFJS_WASM_REPS).
# Ours runs with RAYON_NUM_THREADS=1 (candle's CPU thread count follows it) and, with
# THREADS2=1, again at 2 threads as an extra column; the references with 1 thread
# (onnxruntime intra/inter-op 1, LiteRT num_threads=1, tfjs-wasm setThreadsCount(1); the
# tfjs cpu backend is single-threaded JS).
#
# Environments (created on first use, then reused; needs network to PyPI and npm once):
#   $BENCH_ENV/py        venv: onnxruntime==1.30.0 numpy==2.4.6 ai-edge-litert==2.3.0
#                        flatbuffers==25.12.19   (BENCH_PYTHON=/path/to/python: use that one)
#   $BENCH_ENV/silero-vad-6.2.3   the unpacked wheel (pip download --no-deps)
#   $BENCH_ENV/tfjs      tests/reference/package{,-lock}.json + npm ci, plus
#                        npm install --no-save @tensorflow/tfjs-backend-wasm@4.22.0
#   $BENCH_ENV/onnxconv  venv: tensorflow==2.19.0 tf2onnx==1.17.0 onnxruntime==1.32.0
#                        (TensorFlow only converts NanoDet; ORT_NANODET=0 skips this peer)
# Needs: cargo, python3 (3.9-3.12 for ai-edge-litert wheels), node >= 18 + npm, ffmpeg.
#
# Variables: BENCH_ENV (default target/bench-env), BENCH_OUT (default target/bench),
# MEDIA (default ../shared/media), MODELS (default models/cache), REPS (20), NANODET_REPS
# (5), TFJS_CPU_REPS (2), TFJS_WASM_REPS (5), THREADS2 (1), SKIP_TFJS_CPU (0: the cpu
# backend takes ~10 s a frame).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_ENV=$(mkdir -p "${BENCH_ENV:-target/bench-env}" && cd "${BENCH_ENV:-target/bench-env}" && pwd)
BENCH_OUT=$(mkdir -p "${BENCH_OUT:-target/bench}" && cd "${BENCH_OUT:-target/bench}" && pwd)
MEDIA=${MEDIA:-$ROOT/../shared/media}
MODELS=${MODELS:-$ROOT/models/cache}
REPS=${REPS:-20}
NANODET_REPS=${NANODET_REPS:-5}
TFJS_CPU_REPS=${TFJS_CPU_REPS:-2}
TFJS_WASM_REPS=${TFJS_WASM_REPS:-5}
THREADS2=${THREADS2:-1}
SKIP_TFJS_CPU=${SKIP_TFJS_CPU:-0}
ORT_NANODET=${ORT_NANODET:-1}

ORT_VERSION=1.30.0
NUMPY_VERSION=2.4.6
LITERT_VERSION=2.3.0
FLATBUFFERS_VERSION=25.12.19
SILERO_VERSION=6.2.3
TFJS_WASM_VERSION=4.22.0

INPUTS=$BENCH_OUT/inputs
RESULTS=$BENCH_OUT/models.tsv
TABLE=$BENCH_OUT/models.md

die() { echo "models.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

for tool in cargo python3 node npm ffmpeg; do
    command -v "$tool" >/dev/null || die "$tool not found on PATH"
done
for f in silero-vad/silero_vad.jit yamnet/yamnet.tflite human-models/nanodet.json; do
    [ -f "$MODELS/$f" ] || die "$MODELS/$f missing (avsense models fetch)"
done
[ -d "$MEDIA" ] || die "$MEDIA missing (the shared test media)"

LOAD_START=$(uptime)
say "load at start: $LOAD_START"

# ---------------------------------------------------------------------------------------
# Environments.

PY_REQS="onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION ai-edge-litert==$LITERT_VERSION flatbuffers==$FLATBUFFERS_VERSION"
if [ -n "${BENCH_PYTHON:-}" ]; then
    PY=$BENCH_PYTHON
else
    PY=$BENCH_ENV/py/bin/python
    if [ "$(cat "$BENCH_ENV/py/.reqs" 2>/dev/null)" != "$PY_REQS" ]; then
        say "python venv $BENCH_ENV/py ($PY_REQS)"
        rm -rf "$BENCH_ENV/py"
        python3 -m venv "$BENCH_ENV/py"
        # shellcheck disable=SC2086
        "$PY" -m pip install -q --disable-pip-version-check $PY_REQS >&2
        echo "$PY_REQS" >"$BENCH_ENV/py/.reqs"
    fi
fi
"$PY" -c "import onnxruntime, ai_edge_litert, flatbuffers, numpy" ||
    die "$PY lacks onnxruntime / ai-edge-litert / flatbuffers / numpy ($PY_REQS)"

SILERO_DATA=$BENCH_ENV/silero-vad-$SILERO_VERSION/silero_vad/data
if [ ! -f "$SILERO_DATA/silero_vad.onnx" ]; then
    say "silero-vad $SILERO_VERSION wheel"
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --disable-pip-version-check --no-deps "silero-vad==$SILERO_VERSION" -d "$tmp" >&2
    "$PY" -m zipfile -e "$tmp"/silero_vad-"$SILERO_VERSION"-*.whl "$BENCH_ENV/silero-vad-$SILERO_VERSION"
    rm -rf "$tmp"
    [ -f "$SILERO_DATA/silero_vad.onnx" ] || die "no silero_vad.onnx in the silero-vad wheel"
fi

TFJS_DIR=$BENCH_ENV/tfjs
TFJS_STAMP="$(cat tests/reference/package-lock.json | sha256sum | cut -c1-16) wasm $TFJS_WASM_VERSION"
if [ "$(cat "$TFJS_DIR/.stamp" 2>/dev/null)" != "$TFJS_STAMP" ]; then
    say "node environment $TFJS_DIR (tfjs from tests/reference/package-lock.json + tfjs-backend-wasm $TFJS_WASM_VERSION)"
    rm -rf "$TFJS_DIR"
    mkdir -p "$TFJS_DIR"
    cp tests/reference/package.json tests/reference/package-lock.json "$TFJS_DIR/"
    (cd "$TFJS_DIR" &&
        npm ci --no-audit --no-fund --loglevel=error >&2 &&
        npm install --no-save --no-audit --no-fund --loglevel=error \
            "@tensorflow/tfjs-backend-wasm@$TFJS_WASM_VERSION" >&2)
    echo "$TFJS_STAMP" >"$TFJS_DIR/.stamp"
fi

# ---------------------------------------------------------------------------------------
# Inputs, extracted once: every side reads these bytes.

mkdir -p "$INPUTS"
ffmpeg -nostdin -v error -i "$MEDIA/sounds/espeak_sentence.wav" -vn -ac 1 -ar 16000 -f f32le - \
    >"$INPUTS/espeak_sentence.f32"
# name, media, time: as in tests/reference/tfjs_reference.mjs (ND_FRAMES)
for spec in "bottles_5s videos/bottle-detection.mp4 5" "person_sounds_44s av/person_sounds_dev.mp4 44"; do
    set -- $spec
    ffmpeg -v error -nostdin -ss "$3" -i "$MEDIA/$2" -frames:v 1 -vf scale=416:416 \
        -f rawvideo -pix_fmt rgb24 - >"$INPUTS/nanodet_$1.rgb"
    python3 - "$INPUTS/nanodet_$1.rgb" "tests/reference/data/nanodet_$1.json" <<'EOF' >&2
import hashlib, json, sys
got = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()
want = json.load(open(sys.argv[2]))["frame"]["sha256"]
if got != want:
    print(f"warning: {sys.argv[1]} differs from the parity reference's frame ({sys.argv[2]})")
EOF
done

: >"$RESULTS"

# ---------------------------------------------------------------------------------------
# Ours.

run_ours() {
    say "ours, $1 thread(s): cargo bench --bench models"
    RAYON_NUM_THREADS=$1 cargo bench -q --bench models -- \
        --inputs "$INPUTS" --models "$MODELS" --reps "$REPS" --nanodet-reps "$NANODET_REPS" |
        awk -F'\t' -v t="$1" '$1 == "RESULT" { print "ours" t "\t" $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 }' \
            >>"$RESULTS"
}
say "building the bench (cargo bench --bench models --no-run)"
cargo bench -q --bench models --no-run >&2
run_ours 1
[ "$THREADS2" = 1 ] && run_ours 2

# ---------------------------------------------------------------------------------------
# onnxruntime and LiteRT (reusing the reference scripts' session/interpreter set-up).

cat >"$BENCH_OUT/ref_bench.py" <<'EOF'
"""Silero VAD on onnxruntime and YAMNet on LiteRT, 1 thread; written by benches/models.sh."""
import os, sys, time
from importlib.metadata import version
import numpy as np

root, inputs, silero_data, model, reps = sys.argv[1:6]
reps = int(reps)
sys.path.insert(0, os.path.join(root, "tests", "reference"))
import silero_reference as sr   # noqa: E402  (session(): 1 intra-op, 1 inter-op thread)
import yamnet_reference as yr   # noqa: E402  (interpreter(): num_threads=1; float_model())
from ai_edge_litert.interpreter import OpResolverType  # noqa: E402


def passes(items, reset, f):
    times = []
    for p in range(reps + 1):
        reset()
        for x in items:
            t = time.perf_counter()
            f(x)
            dt = time.perf_counter() - t
            if p > 0:
                times.append(dt)
    return times


def report(key, times, threads=1):
    print(f"ref\t{key}\t1\t{float(np.median(times)):.9f}\t{len(times)}\t{threads}", flush=True)
    print(f"  {key:24} median {np.median(times) * 1e3:9.3f} ms per call over {len(times)} calls",
          file=sys.stderr)


samples = np.fromfile(os.path.join(inputs, "espeak_sentence.f32"), dtype="<f4")

# Silero: the wheel's silero_vad.onnx, default graph optimisations, as load_silero_vad(onnx=True).
s = sr.session(os.path.join(silero_data, "silero_vad.onnx"))
n_chunks = -(-len(samples) // sr.CHUNK)
padded = np.zeros(n_chunks * sr.CHUNK + sr.CONTEXT, dtype=np.float32)
padded[sr.CONTEXT:sr.CONTEXT + len(samples)] = samples
xs = [np.ascontiguousarray(padded[k * sr.CHUNK: k * sr.CHUNK + sr.CONTEXT + sr.CHUNK][None, :])
      for k in range(n_chunks)]
rate = np.array(sr.SR, dtype=np.int64)
st = {"state": None}


def silero_reset():
    st["state"] = np.zeros((2, 1, 128), dtype=np.float32)


def silero_chunk(x):
    _, st["state"] = s.run(None, {"input": x, "state": st["state"], "sr": rate})


report("onnxruntime_silero", passes(xs, silero_reset, silero_chunk))

# YAMNet: the same patches as ours (upstream's padding), one invoke per patch.
n = len(samples)
count = 1 + (max(0, n - yr.PATCH) + yr.HOP - 1) // yr.HOP
pad = np.zeros(yr.PATCH + (count - 1) * yr.HOP, np.float32)
pad[:n] = samples
patches = [np.ascontiguousarray(pad[k * yr.HOP: k * yr.HOP + yr.PATCH]) for k in range(count)]
buf = open(model, "rb").read()
fbuf, _ = yr.float_model(buf)
for key, runner in [
    ("litert_yamnet", yr.interpreter(buf)),
    ("litert_builtin_yamnet", yr.interpreter(buf, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)),
    ("litert_float_yamnet", yr.interpreter(fbuf)),
]:
    report(key, passes(patches, lambda: None, lambda p: yr.run(runner, p)))

print(f"info\tonnxruntime\t{version('onnxruntime')}")
print(f"info\tlitert\t{version('ai-edge-litert')}")
print(f"info\tpython\t{sys.version.split()[0]}")
print(f"info\tsilero_chunks\t{n_chunks}")
print(f"info\tyamnet_patches\t{count}")
EOF
say "onnxruntime + LiteRT ($PY)"
OMP_NUM_THREADS=1 "$PY" "$BENCH_OUT/ref_bench.py" "$ROOT" "$INPUTS" "$SILERO_DATA" \
    "$MODELS/yamnet/yamnet.tflite" "$REPS" >>"$RESULTS"

# ---------------------------------------------------------------------------------------
# TF.js (the script lives beside node_modules so that node resolves the packages).

cat >"$TFJS_DIR/bench_models.mjs" <<'EOF'
// NanoDet on TF.js in node, 1 thread: written by benches/models.sh. Times what
// tests/reference/tfjs_reference.mjs runs per frame: the normalisation (BGR, mean/std),
// NCHW transpose, execute, and dataSync of the six outputs.
import * as tf from '@tensorflow/tfjs';
import wasmPkg from '@tensorflow/tfjs-backend-wasm';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';

const [backend, inputs, modelJson, warmup, reps] = process.argv.slice(2);
if (backend === 'wasm') {
  wasmPkg.setThreadsCount(1); // before setBackend, as the package documents
}
await tf.setBackend(backend);
await tf.ready();
let threads = 1;
let detail = `@tensorflow/tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}`;
if (backend === 'wasm') {
  threads = wasmPkg.getThreadsCount();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const mt = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  detail += ` ${wasmPkg.version_wasm}, simd ${simd}, multithread build ${mt}, threads ${threads}`;
}
console.error(`  ${detail}, node ${process.version}`);

const json = JSON.parse(readFileSync(modelJson, 'utf8'));
const specs = [];
const parts = [];
for (const g of json.weightsManifest) {
  for (const p of g.paths) parts.push(readFileSync(join(dirname(modelJson), p)));
  specs.push(...g.weights);
}
const buf = Buffer.concat(parts);
const model = await tf.loadGraphModel(tf.io.fromMemory({
  modelTopology: json.modelTopology,
  weightSpecs: specs,
  weightData: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength),
  format: json.format,
  generatedBy: json.generatedBy,
  convertedBy: json.convertedBy,
  signature: json.signature,
  userDefinedMetadata: json.userDefinedMetadata,
}));

const frames = readdirSync(inputs).filter((n) => n.startsWith('nanodet_') && n.endsWith('.rgb')).sort()
  .map((n) => new Uint8Array(readFileSync(join(inputs, n))));
const once = (rgb) => {
  const outs = tf.tidy(() => {
    const x = tf.tensor3d(rgb, [416, 416, 3], 'int32').toFloat()
      .reverse(2).sub([103.53, 116.28, 123.675]).div([57.375, 57.12, 58.395]);
    return model.execute(x.transpose([2, 0, 1]).expandDims(0));
  });
  for (const o of outs) o.dataSync();
  tf.dispose(outs);
};
for (let i = 0; i < Number(warmup); i++) once(frames[i % frames.length]);
const times = [];
for (let i = 0; i < Number(reps); i++) {
  const t = process.hrtime.bigint();
  once(frames[i % frames.length]);
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
}
times.sort((a, b) => a - b);
const m = times.length % 2 ? times[(times.length - 1) / 2]
  : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
console.error(`  tfjs_${backend}_nanodet median ${(m * 1e3).toFixed(1)} ms per call over ${times.length} calls`);
console.log(`ref\ttfjs_${backend}_nanodet\t1\t${m.toFixed(9)}\t${times.length}\t${threads}`);
console.log(`info\ttfjs\t${tf.version.tfjs}`);
console.log(`info\tnode\t${process.version}`);
if (backend === 'wasm') {
  console.log(`info\ttfjs_wasm\t${wasmPkg.version_wasm}`);
  console.log(`info\ttfjs_wasm_simd\t${await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')}`);
  console.log(`info\ttfjs_wasm_threads\t${threads}`);
}
EOF
run_tfjs() {
    say "TF.js $1 backend (1 warm-up + $2 calls)"
    node "$TFJS_DIR/bench_models.mjs" "$1" "$INPUTS" "$MODELS/human-models/nanodet.json" 1 "$2" >>"$RESULTS"
}
run_tfjs wasm "$TFJS_WASM_REPS"
[ "$SKIP_TFJS_CPU" = 1 ] || run_tfjs cpu "$TFJS_CPU_REPS"

# ---------------------------------------------------------------------------------------
# onnxruntime on NanoDet: the same weights, converted from our TF.js files.

if [ "$ORT_NANODET" = 1 ]; then
    CONV=$BENCH_ENV/onnxconv
    if [ ! -x "$CONV/bin/python" ]; then
        say "python venv $CONV (tensorflow 2.19.0, tf2onnx 1.17.0, onnxruntime 1.32.0)"
        python3 -m venv "$CONV"
        "$CONV/bin/pip" install -q --disable-pip-version-check tensorflow==2.19.0 tf2onnx==1.17.0 \
            onnxruntime==1.32.0 >&2
    fi
    ONNX=$BENCH_OUT/nanodet.onnx
    if [ ! -s "$ONNX" ]; then
        say "converting nanodet.json to ONNX ($ONNX)"
        "$CONV/bin/python" benches/peers/tfjs_graph_to_onnx.py "$MODELS/human-models/nanodet.json" \
            "$ONNX" 2>"$BENCH_OUT/nanodet-convert.log" >&2 ||
            { tail -5 "$BENCH_OUT/nanodet-convert.log" >&2; die "NanoDet → ONNX failed"; }
    fi
    ort_threads=1
    [ "$THREADS2" = 1 ] && ort_threads="1 2"
    for t in $ort_threads; do
        say "onnxruntime NanoDet, $t thread(s)"
        OMP_NUM_THREADS=$t "$CONV/bin/python" benches/peers/nanodet_ort.py "$ONNX" "$INPUTS" \
            tests/reference/data "$t" "$NANODET_REPS" >>"$RESULTS"
    done
fi

LOAD_END=$(uptime)
say "load at end: $LOAD_END"

# ---------------------------------------------------------------------------------------
# The table.

python3 - "$RESULTS" "$LOAD_START" "$LOAD_END" "$(nproc)" >"$TABLE" <<'EOF'
import sys

path, load_start, load_end, cpus = sys.argv[1:5]
res, info = {}, {}
for line in open(path):
    f = line.rstrip("\n").split("\t")
    if f[0] == "info":
        info[f[1]] = f[2]
    elif len(f) == 6:
        res[(f[0], f[1], int(f[2]))] = (float(f[3]), int(f[4]), int(f[5]))


def t(s):
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"


def ours(threads, key, batch, per):
    r = res.get((f"ours{threads}", key, batch))
    if r is None:
        return None, "–"
    s = r[0] / per
    if per == 1:
        return s, f"{t(s)} (b{batch}, n={r[1]})"
    return s, f"{t(s)}/{'patch' if 'yamnet' in key else 'frame'} ({t(r[0])}/call, b{batch}, n={r[1]})"


def ref(key, label):
    if key is None:
        return None, label
    r = res.get(("ref", key, 1))
    if r is None:
        return None, f"{label}: not run"
    return r[0], f"{label}: {t(r[0])} (b1, n={r[1]})"


ort = info.get("onnxruntime", "?")
lrt = info.get("litert", "?")
simd = info.get("tfjs_wasm_simd") == "true"
tfjs_wasm = (f"tfjs-backend-wasm {info.get('tfjs_wasm', '?')} "
             f"({'SIMD' if simd else 'no SIMD'}, {info.get('tfjs_wasm_threads', '?')} thread)")
tfjs_cpu = f"tfjs {info.get('tfjs', '?')} cpu backend (pure JS)"
lrt_x = f"LiteRT {lrt} XNNPACK, int8-hybrid file (incl. its log-mel)"
chunks = info.get("silero_chunks", "?")
patches = info.get("yamnet_patches", "?")
yin = f"espeak_sentence.wav, {patches} patches of 0.96 s, per patch"
nin = "2 real 416×416 frames (bottle 5 s, person_sounds 44 s), per frame"
rows = [
    ("Silero VAD", f"espeak_sentence.wav, {chunks} chunks × 512 samples, state carried, per chunk",
     ("silero", 1, 1, "process_chunk"), ("onnxruntime_silero", f"onnxruntime {ort}, silero_vad.onnx")),
    ("YAMNet", yin, ("yamnet_net", 1, 1, "net only"), ("litert_yamnet", lrt_x)),
    ("YAMNet", yin, ("yamnet_mel_net", 1, 1, "log-mel + net"), ("litert_yamnet", lrt_x)),
    ("YAMNet", yin, ("yamnet_mel_net", 1, 1, "log-mel + net"),
     ("litert_builtin_yamnet", f"LiteRT {lrt} builtin kernels, int8-hybrid file")),
    ("YAMNet", yin, ("yamnet_mel_net", 1, 1, "log-mel + net"),
     ("litert_float_yamnet", f"LiteRT {lrt} XNNPACK, float graph (our math)")),
    ("YAMNet", yin, ("yamnet_net", 8, 8, "net only"), ("litert_yamnet", lrt_x)),
    ("YAMNet", yin, ("yamnet_mel", 1, 1, "log-mel front end alone"), (None, "–")),
    ("NanoDet", nin, ("nanodet", 1, 1, "prepare + forward"),
     ("onnxruntime_nanodet_t1", f"onnxruntime {info.get('onnxruntime_nanodet', '?')}, same weights (tf2onnx)")),
    ("NanoDet", nin, ("nanodet", 1, 1, "prepare + forward"), ("tfjs_wasm_nanodet", tfjs_wasm)),
    ("NanoDet", nin, ("nanodet", 1, 1, "prepare + forward"), ("tfjs_cpu_nanodet", tfjs_cpu)),
    ("NanoDet", nin, ("nanodet", 8, 8, "prepare + forward"), ("tfjs_wasm_nanodet", tfjs_wasm)),
]
out = [
    "| model | input | ours, 1 thread (median) | ours, 2 threads | reference, 1 thread (median) | ratio ours/ref (1 thread) |",
    "|---|---|---|---|---|---|",
]
for model, inp, (key, batch, per, what), (rkey, rlabel) in rows:
    o1, s1 = ours(1, key, batch, per)
    _, s2 = ours(2, key, batch, per)
    r, sr = ref(rkey, rlabel)
    ratio = f"{o1 / r:.2f}" if o1 is not None and r is not None else "–"
    out.append(f"| {model} | {inp} | {what}: {s1} | {s2} | {sr} | {ratio} |")
# Two threads on both sides (ours: RAYON_NUM_THREADS=2; onnxruntime: 2 intra-op threads).
o2 = res.get(("ours2", "nanodet", 1))
r2 = res.get(("ref", "onnxruntime_nanodet_t2", 1))
if o2 is not None and r2 is not None:
    out.append(f"| NanoDet | {nin} | prepare + forward, **2 threads**: {t(o2[0])} (b1, n={o2[1]}) | | "
               f"onnxruntime, **2 threads**: {t(r2[0])} (b1, n={r2[1]}) | {o2[0] / r2[0]:.2f} (2 threads) |")
out += [
    "",
    f"CPUs: {cpus}. Load at start: `{load_start.strip()}`; at end: `{load_end.strip()}`.",
    f"Python {info.get('python', '?')}, node {info.get('node', '?')}. Ours: candle 0.11, "
    "RAYON_NUM_THREADS=1 (2 for the extra column). References: 1 thread.",
    "n = timed calls; medians of single-call times after a warm-up pass. Batch-8 rows: per item, vs the reference at batch 1.",
]
print("\n".join(out))
EOF
cat "$TABLE"
echo >&2
say "table written to $TABLE (raw results: $RESULTS)"
