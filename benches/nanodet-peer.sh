#!/usr/bin/env bash
# NanoDet: ours against onnxruntime on the same weights and the same inputs, at 1 and 2
# threads each, in one run (issue "camera density", item 4; benches/models.sh's TF.js peers
# are weak ones — nobody deploys tfjs-wasm on a server CPU).
#
# The peer's model is made here from the very files we load (models/cache/human-models/
# nanodet.json + shards): benches/peers/tfjs_graph_to_onnx.py puts the shards' values back
# into the JSON GraphDef and converts it with tf2onnx; benches/peers/nanodet_ort.py checks the
# result against the TF.js parity references before timing it. Inputs: the two real 416×416
# frames of benches/models.sh (bottle 5 s, person_sounds 44 s). Ours: `cargo bench --bench
# models -- --only nanodet` (prepare + forward, batch 1) with RAYON_NUM_THREADS = 1 and 2.
#
#     bash benches/nanodet-peer.sh          # REPS=5 passes over the two frames
#
# Bench-only Python environment (PyPI, created once): $BENCH_ENV/onnxconv with
# tensorflow==2.19.0 tf2onnx==1.17.0 onnxruntime==1.32.0 (TensorFlow only converts).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_ENV=${BENCH_ENV:-target/bench-env}
OUT=target/bench/nanodet-peer
MEDIA=${MEDIA:-../shared/media}
MODELS=${MODELS:-models/cache}
REPS=${REPS:-5}
mkdir -p "$OUT/inputs" "$BENCH_ENV"
VENV=$BENCH_ENV/onnxconv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q tensorflow==2.19.0 tf2onnx==1.17.0 onnxruntime==1.32.0 >&2
fi
ONNX=$OUT/nanodet.onnx
if [ ! -s "$ONNX" ]; then
    "$VENV/bin/python" benches/peers/tfjs_graph_to_onnx.py "$MODELS/human-models/nanodet.json" "$ONNX" \
        2>"$OUT/convert.log" >&2 || { tail -5 "$OUT/convert.log" >&2; exit 1; }
fi
for spec in "bottles_5s videos/bottle-detection.mp4 5" "person_sounds_44s av/person_sounds_dev.mp4 44"; do
    set -- $spec
    ffmpeg -v error -nostdin -ss "$3" -i "$MEDIA/$2" -frames:v 1 -vf scale=416:416 \
        -f rawvideo -pix_fmt rgb24 - >"$OUT/inputs/nanodet_$1.rgb"
done
RESULTS=$OUT/results.tsv
: >"$RESULTS"
cargo bench -q --bench models --no-run >&2
for t in 1 2; do
    RAYON_NUM_THREADS=$t cargo bench -q --bench models -- --only nanodet \
        --inputs "$OUT/inputs" --models "$MODELS" --nanodet-reps $((REPS * 2)) |
        awk -F'\t' -v t="$t" '$1 == "RESULT" && $2 == "nanodet" && $3 == 1 { print "ours\tnanodet_t" t "\t1\t" $4 "\t" $5 "\t" t }' \
            >>"$RESULTS"
    OMP_NUM_THREADS=$t "$VENV/bin/python" benches/peers/nanodet_ort.py "$ONNX" "$OUT/inputs" \
        tests/reference/data "$t" "$REPS" >>"$RESULTS"
done
python3 - "$RESULTS" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) == 6:
        rows[f[1]] = float(f[3])
print("| threads | ours (prepare + forward) | onnxruntime (normalise + run) | ours / onnxruntime |")
print("|---|---|---|---|")
for t in (1, 2):
    o, r = rows.get(f"nanodet_t{t}"), rows.get(f"onnxruntime_nanodet_t{t}")
    if o is None or r is None:
        print(f"| {t} | {o} | {r} | – |")
        continue
    print(f"| {t} | {o * 1e3:.1f} ms | {r * 1e3:.1f} ms | {o / r:.2f} |")
PY
