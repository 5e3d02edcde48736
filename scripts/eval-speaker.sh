#!/usr/bin/env bash
# Scores the active speaker on every talking clip with labels: the shared ones
# (../shared/media/talking, labels.json) and the off-screen-voice clips that
# scripts/compose-offscreen.sh makes (target/offscreen). One line per face:
# clip, face, precision, recall, F1, share of frames marked speaking.
#
#   bash scripts/eval-speaker.sh [CONFIG.toml]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/avsense}
T=${SHARED:-../shared}/media/talking
[ -f target/offscreen/labels.json ] || bash scripts/compose-offscreen.sh > /dev/null
CFG=()
[ -n "${1:-}" ] && CFG=(--config "$1")
run() { # clip labels
  "$BIN" eval "${CFG[@]}" --json "$1" "$2" | python3 -c '
import json, sys
r = json.load(sys.stdin)
for f in r.get("faces", []):
    print("%-24s %-6s P %.3f R %.3f F1 %.3f speaking %5.1f%%" % (sys.argv[1], f["position"], f["precision"], f["recall"], f["f1"], 100 * f["predicted_fraction"]))
' "$(basename "$1")"
}
for c in one_face_speaking two_faces_dev person_a_speaking person_b_speaking person_a_dubbed; do
  run "$T/$c.mp4" "$T/labels.json"
done
for c in target/offscreen/*.mp4; do
  run "$c" target/offscreen/labels.json
done
