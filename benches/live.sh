#!/usr/bin/env bash
# Live-source benchmark: `pipelines/live-test.toml` (videotestsrc is-live 640×480@30 +
# audiotestsrc ticks, every encoder whose model is fetched) for DURATION seconds on the
# release build; samples the process's RSS every 10 s and prints the end-of-run summary
# (per-frame and per-event latency percentiles, edge drops). Run from the repository root:
#
#     bash benches/live.sh                 # DURATION=600 (10 minutes)
#     DURATION=120 bash benches/live.sh
#
# Targets (live-sensors issue, benchmark only): p95 capture→features latency per frame
# ≤ one frame interval (33 ms) + the vision encoder's own time; RSS flat (±5 %) after
# warm-up over the run.
set -euo pipefail
DURATION=${DURATION:-600}
OUT=target/bench/live
mkdir -p "$OUT"
[ -f Cargo.toml ] || { echo "run from the repository root" >&2; exit 1; }
cargo build --release --locked --quiet
sed "s/^live = true/live = true\nduration = $DURATION.0/" pipelines/live-test.toml > "$OUT/live.toml"
./target/release/avsense run "$OUT/live.toml" > "$OUT/events.jsonl" 2> "$OUT/stderr.txt" &
PID=$!
: > "$OUT/rss.txt"
while kill -0 "$PID" 2>/dev/null; do
  sleep 10
  awk -v t="$SECONDS" '/VmRSS/ {print t, $2}' "/proc/$PID/status" 2>/dev/null >> "$OUT/rss.txt" || true
done
wait "$PID"
grep -v WARN "$OUT/stderr.txt" | sed -n '/avsense summary/,$p'
python3 - "$OUT/rss.txt" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
if len(rows) < 4:
    sys.exit("too few RSS samples")
warm = rows[2:]  # skip the first 20 s (model load, allocator warm-up)
lo, hi = min(r[1] for r in warm), max(r[1] for r in warm)
print(f"RSS after warm-up: min {lo/1024:.1f} MB, max {hi/1024:.1f} MB, "
      f"first {warm[0][1]/1024:.1f} MB, last {warm[-1][1]/1024:.1f} MB, "
      f"spread {(hi-lo)/lo*100:.1f} % over {len(warm)} samples")
PY
