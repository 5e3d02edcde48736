#!/usr/bin/env bash
# Regenerates docs/timeline.png (README's picture): the shared dev clip
# (../shared/media/av/person_sounds_dev.mp4) run with default settings, its events drawn by
# `avsense timeline`.
#
#   bash scripts/timeline-docs.sh          # BIN=target/debug/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
CLIP=${CLIP:-../shared/media/av/person_sounds_dev.mp4}
OUT=target/timeline-docs
mkdir -p "$OUT" docs
"$BIN" run -q --force --input "$CLIP" --events "$OUT/dev.jsonl"
"$BIN" timeline "$OUT/dev.jsonl" -o docs/timeline.png --width 1400
"$BIN" timeline "$OUT/dev.jsonl" -o "$OUT/dev.svg" --width 1400
