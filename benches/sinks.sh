#!/usr/bin/env bash
# The cost of snapshots and of the HTTP API on the dev clip (../shared/media/av/person_sounds_dev.mp4,
# every encoder the model directory has): CPU (user+sys) and peak RSS of `avsense run`,
# medians of RUNS runs (default 3), in three modes:
#   off        a JSON Lines sink only
#   snapshots  + [snapshots] enabled (best frames kept, JPEGs written)
#   http       + snapshots + [http] on a free loopback port, scraped once a second
#              (/api/stats and /metrics, as a dashboard and Prometheus would)
#
#   bash benches/sinks.sh                      # BIN=target/debug/avsense by default
#   BIN=target/release/avsense RUNS=5 bash benches/sinks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
RUNS=${RUNS:-3}
CLIP=${CLIP:-../shared/media/av/person_sounds_dev.mp4}
OUT=target/bench-sinks
rm -rf "$OUT" && mkdir -p "$OUT"
SRC=$(printf '[[source]]\nname = "dev"\nkind = "file"\npath = "%s"' "$(realpath "$CLIP")")

config() { # mode port
  {
    printf '[pipeline]\nname = "sinks-%s"\n\n%s\n\n[[sink]]\nkind = "jsonl"\npath = "%s/%s.jsonl"\n' "$1" "$SRC" "$PWD/$OUT" "$1"
    [ "$1" = off ] || printf '\n[snapshots]\nenabled = true\ndir = "%s/snap-%s"\n' "$PWD/$OUT" "$1"
    [ "$1" != http ] || printf '\n[http]\nlisten = "127.0.0.1:%s"\n' "$2"
  } > "$OUT/$1.toml"
}

for mode in off snapshots http; do
  for run in $(seq "$RUNS"); do
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    config "$mode" "$PORT"
    rm -rf "$OUT/snap-$mode"
    SCRAPER=
    if [ "$mode" = http ]; then
      ( while sleep 1; do
          curl -s -o /dev/null "http://127.0.0.1:$PORT/api/stats" || true
          curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics" || true
        done ) &
      SCRAPER=$!
    fi
    /usr/bin/time -f "%U %S %M %e" -o "$OUT/time-$mode-$run" "$BIN" run -q "$OUT/$mode.toml" 2> "$OUT/err-$mode" > /dev/null
    [ -z "$SCRAPER" ] || kill "$SCRAPER" 2>/dev/null || true
    read -r u s m e < "$OUT/time-$mode-$run"
    n=0; kb=0
    if [ -d "$OUT/snap-$mode" ]; then
      n=$(find "$OUT/snap-$mode" -name '*.jpg' | wc -l)
      kb=$(du -sk "$OUT/snap-$mode" | cut -f1)
    fi
    printf '%s run %s: CPU %.2f s, max RSS %.1f MB, wall %.1f s, %s snapshots (%s KB)\n' \
      "$mode" "$run" "$(echo "$u + $s" | bc)" "$(echo "scale=1; $m / 1024" | bc)" "$e" "$n" "$kb"
  done
done | tee "$OUT/runs.txt"

python3 - "$OUT/runs.txt" <<'PY'
import re, sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) run \d+: CPU ([\d.]+) s, max RSS ([\d.]+) MB, wall ([\d.]+) s, (\d+) snapshots", line)
    if m:
        rows.setdefault(m[1], []).append((float(m[2]), float(m[3]), float(m[4]), int(m[5])))
for mode, v in rows.items():
    print(f"{mode:10s} median CPU {st.median(x[0] for x in v):.2f} s (range {min(x[0] for x in v):.2f}–{max(x[0] for x in v):.2f}), "
          f"median max RSS {st.median(x[1] for x in v):.1f} MB, wall {st.median(x[2] for x in v):.1f} s, snapshots {v[0][3]}")
PY
