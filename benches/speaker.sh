#!/usr/bin/env bash
# Active speaker: cost and accuracy in one invocation (release build, CPU).
#
#     bash benches/speaker.sh            # REPS=3 runs per clip; prints Markdown tables
#
# 1. Model costs per call (benches/speaker.rs, RAYON_NUM_THREADS=1).
# 2. End to end: ../shared/media/talking/{one_face_speaking,two_faces_dev}.mp4 looped to
#    30 s (ffmpeg concat, stream copy), `avsense run --json-summary` with every encoder
#    (NanoDet 5/s, BlazeFace 12.5/s, Light-ASD, YAMNet, VAD): realtime factor and the
#    event thread's Light-ASD time per face per second of video, from the summary.
# 3. Accuracy on the two clips (`avsense eval … talking/labels.json`) with the defaults and
#    with parts of the face graph switched off, and with the TalkSet weights.
#
# Needs ../shared/media, the models (`avsense models fetch`), ffmpeg, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
OUT=target/bench/speaker
mkdir -p "$OUT"
MEDIA=../shared/media/talking
cargo build --release --locked -q
BIN=./target/release/avsense

echo "## Model costs (1 thread)"
RAYON_NUM_THREADS=1 cargo bench --locked -q --bench speaker 2>/dev/null | awk -F'\t' '/^RESULT/ {printf "| %s | %.2f ms |\n", $2, $3}'

echo
echo "## End to end, 30 s loops, every encoder ($REPS runs, median)"
echo "| clip | faces | realtime | Light-ASD ms per face per s (event thread) | visual front end ms per face-frame |"
echo "|---|---|---|---|---|"
for clip in one_face_speaking two_faces_dev; do
  loop="$OUT/${clip}_30s.mp4"
  if [ ! -f "$loop" ]; then
    for _ in 1 2 3 4 5 6; do echo "file '$(realpath "$MEDIA/$clip.mp4")'"; done > "$OUT/$clip.txt"
    ffmpeg -nostdin -v error -y -f concat -safe 0 -i "$OUT/$clip.txt" -c copy "$loop"
  fi
  for r in $(seq 1 "$REPS"); do
    "$BIN" run --input "$loop" -q --json-summary 2> "$OUT/$clip.$r.json" > /dev/null
  done
  python3 - "$clip" "$OUT" "$REPS" <<'EOF'
import json, sys, statistics
clip, out, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for r in range(1, reps + 1):
    t = open(f"{out}/{clip}.{r}.json").read()
    j = json.loads(t[t.index("{"):t.rindex("}") + 1])
    s = j["streams"][0]
    a = s["events"]["speaker"]["asd"]
    faces = a["segments"]
    face_seconds = a["scored_ticks"] * 0.04 + a["unheard_ticks"] * 0.04
    per_face = (a["visual_seconds"] + a["backend_seconds"]) * 1e3 / max(face_seconds, 1e-9)
    per_frame = a["visual_seconds"] * 1e3 / max(a["visual_frames"], 1)
    rows.append((s["media_seconds"] / j["wall_seconds"], per_face, per_frame, faces))
med = lambda k: statistics.median(x[k] for x in rows)
print(f"| {clip} | {rows[0][3]} | {med(0):.2f}x | {med(1):.1f} | {med(2):.2f} |")
EOF
done

echo
echo "## Accuracy (talking/labels.json; frame-level, 25 fps)"
echo "| config | one face F1 | two faces: left recall | two faces: right marked speaking |"
echo "|---|---|---|---|"
SRC='[[source]]
name = "input"
kind = "test"
duration = 1.0'
declare -A CFG=(
  ["defaults"]=""
  ["Light-ASD alone (graph off, threshold 0)"]=$'temporal = 0.0\ncompetition = 0.0\nvad_weight = 0.0\nsync_weight = 0.0\nmin_gap = 0.0\nmin_duration = 0.0\noff = 0.5'
  ["no synchrony edge"]="sync_weight = 0.0"
  ["no same-frame competition"]="competition = 0.0"
  ["no VAD gate"]="vad_weight = 0.0"
  ["TalkSet weights"]='weights = "talkset"'
  ["box crop"]='crop = "box"'
  ["face_fps = 25"]="face_fps = 25.0"
)
for name in "defaults" "Light-ASD alone (graph off, threshold 0)" "no synchrony edge" "no same-frame competition" "no VAD gate" "TalkSet weights" "box crop" "face_fps = 25"; do
  printf '[speaker]\n%s\n%s\n' "${CFG[$name]}" "$SRC" > "$OUT/eval.toml"
  one=$("$BIN" eval "$MEDIA/one_face_speaking.mp4" "$MEDIA/labels.json" --config "$OUT/eval.toml" --json 2>/dev/null)
  two=$("$BIN" eval "$MEDIA/two_faces_dev.mp4" "$MEDIA/labels.json" --config "$OUT/eval.toml" --json 2>/dev/null)
  python3 - "$name" "$one" "$two" <<'EOF'
import json, sys
name, one, two = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
f = {x["position"]: x for x in two["faces"]}
print(f"| {name} | {one['faces'][0]['f1']:.3f} | {f['left']['recall']:.3f} | {100 * f['right']['predicted_fraction']:.1f} % |")
EOF
done
