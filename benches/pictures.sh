#!/usr/bin/env bash
# What the pictures cost.
# 1. `avsense run --annotate` on the dev clip (../shared/media/av/person_sounds_dev.mp4, every
#    encoder): CPU (user + sys) and wall of the run without and with --annotate (the render
#    pass after the run: decode, overlays, x264 veryfast, AAC, MP4).
# 2. The live web view: a 30 s live test source with the HTTP API, nobody watching vs a
#    client fetching the stream's picture 5 times a second (as the page does): CPU of the run.
#
#   bash benches/pictures.sh               # BIN=target/debug/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
CLIP=$(realpath "${CLIP:-../shared/media/av/person_sounds_dev.mp4}")
OUT=target/bench-pictures
rm -rf "$OUT" && mkdir -p "$OUT"
for mode in plain annotate; do
  extra=()
  [ "$mode" = annotate ] && extra=(--annotate "$OUT/annotated.mp4")
  /usr/bin/time -f "%U %S %e %M" -o "$OUT/time-$mode" "$BIN" run -q --force --input "$CLIP" --events "$OUT/$mode.jsonl" "${extra[@]}" 2> "$OUT/err-$mode"
  read -r u s e m < "$OUT/time-$mode"
  printf 'dev clip (60 s), %-8s: CPU %.2f s, wall %.2f s (realtime factor %.2f), max RSS %.1f MB\n' "$mode" "$(echo "$u + $s" | bc)" "$e" "$(echo "scale=3; 60 / $e" | bc)" "$(echo "scale=1; $m / 1024" | bc)"
done
grep "annotated video" "$OUT/err-annotate" || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
printf '[[source]]\nname = "live"\nkind = "test"\nlive = true\nduration = 30.0\n\n[[sink]]\nkind = "jsonl"\npath = "/dev/null"\n' > "$OUT/live.toml"
for mode in unwatched watched; do
  port=$(free_port)
  /usr/bin/time -f "%U %S %e" -o "$OUT/time-live-$mode" "$BIN" run -q --force --http "$port" "$OUT/live.toml" 2> "$OUT/err-live-$mode" &
  run=$!
  n=0
  if [ "$mode" = watched ]; then
    sleep 2
    while kill -0 "$run" 2>/dev/null; do
      curl -s -o /dev/null "http://127.0.0.1:$port/api/streams/live/frame.jpg" && n=$((n + 1)) || true
      sleep 0.2
    done
  fi
  wait "$run" || true
  read -r u s e < "$OUT/time-live-$mode"
  printf 'live test source 30 s, %-9s: CPU %.2f s (%d picture requests)\n' "$mode" "$(echo "$u + $s" | bc)" "$n"
done
