#!/usr/bin/env bash
# Regenerates docs/annotated-frame.jpg (README's picture of `avsense run --annotate`): the
# first 10 s of the shared dev clip (../shared/media/av/person_sounds_dev.mp4) annotated, its
# frame at 9.0 s (the person speaks: her box, the caption, the line to her box).
#
#   bash scripts/annotate-docs.sh          # BIN=target/debug/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
CLIP=${CLIP:-../shared/media/av/person_sounds_dev.mp4}
OUT=target/annotate-docs
mkdir -p "$OUT" docs
ffmpeg -v error -y -i "$CLIP" -t 10 -c copy "$OUT/dev10.mp4"
"$BIN" run -q --input "$OUT/dev10.mp4" --annotate "$OUT/annotated.mp4"
ffmpeg -v error -y -ss 9.0 -i "$OUT/annotated.mp4" -frames:v 1 -q:v 3 docs/annotated-frame.jpg
