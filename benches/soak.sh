#!/usr/bin/env bash
# Soak: a live test source (videotestsrc ball 640×480@30 + audiotestsrc ticks, is-live)
# through every encoder the model directory has, the fusion and a JSON Lines sink, for
# DURATION seconds (default 3600). Every 10 s it records the process's RSS (MB) and thread
# count into target/soak/samples.csv, then prints the RSS slope (least squares, MB/h) over
# the run after the first minute (warm-up), the threads' range and the run's summary.
#
#   bash benches/soak.sh            # 1 hour
#   DURATION=600 bash benches/soak.sh
#   BIN=target/release/avsense bash benches/soak.sh   # skip the build
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3600}
OUT=target/soak
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q -p avsense-cli
  BIN=target/release/avsense
fi
cat > "$OUT/soak.toml" <<TOML
[pipeline]
name = "soak"

[[source]]
name = "live"
kind = "test"
live = true
duration = $DURATION

[[sink]]
kind = "jsonl"
path = "$OUT/events.jsonl"
force = true
TOML
"$BIN" run -q --json-summary "$OUT/soak.toml" 2> "$OUT/stderr.txt" &
PID=$!
echo "t_s,rss_mb,threads,cpu_s,events" > "$OUT/samples.csv"
: > "$OUT/threads.log"
TCK=$(getconf CLK_TCK)
T0=$(date +%s)
while kill -0 "$PID" 2>/dev/null; do
  if [ -r "/proc/$PID/status" ]; then
    T=$(( $(date +%s) - T0 ))
    CPU=$(awk -v k="$TCK" '{printf "%.1f", ($14+$15)/k}' "/proc/$PID/stat" 2>/dev/null || echo 0)
    EV=$(wc -l < "$OUT/events.jsonl" 2>/dev/null || echo 0)
    awk -v t="$T" -v c="$CPU" -v e="$EV" '/^VmRSS:/{r=$2/1024} /^Threads:/{n=$2} END{if (r) printf "%d,%.1f,%d,%s,%d\n", t, r, n, c, e}' \
      "/proc/$PID/status" >> "$OUT/samples.csv" || true
    # Per-thread name, state and CPU ticks: a stalled stage shows as a thread whose
    # ticks stop while the others go on (or one spinning alone).
    for tdir in /proc/$PID/task/*; do
      awk -v t="$T" '{s=$0; sub(/^[^(]*\(/, "", s); name=substr(s, 1, index(s, ")")-1); sub(/^[^)]*\) /, "", s); split(s, f, " ");
        printf "%d %s %s %d\n", t, name, f[1], f[12]+f[13]}' "$tdir/stat" 2>/dev/null
    done >> "$OUT/threads.log" || true
  fi
  sleep 10
done
wait "$PID"
awk -F, 'NR>1 && $1>=60 {n++; sx+=$1; sy+=$2; sxx+=$1*$1; sxy+=$1*$2;
           if (min==""||$2<min) min=$2; if ($2>max) max=$2;
           if (tmin==""||$3<tmin) tmin=$3; if ($3>tmax) tmax=$3}
         END {if (n<2) {print "too few samples"; exit}
              b=(n*sxy-sx*sy)/(n*sxx-sx*sx);
              printf "samples %d, RSS %.1f–%.1f MB, slope %+.2f MB/h, threads %d–%d\n", n, min, max, b*3600, tmin, tmax}' \
  "$OUT/samples.csv"
echo "events: $(wc -l < "$OUT/events.jsonl")"
tail -n 1 "$OUT/stderr.txt" | head -c 600; echo
