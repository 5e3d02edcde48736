#!/usr/bin/env bash
# Fleet throughput: the shared dev clip cut into 12 segments of 5 s (as tests/fleet.rs cuts
# it: target/test-media/fleet-media), run as jobs by 1, 2 and 3 `avsense worker`s on a local
# 3-node JetStream cluster (scripts/nats-cluster; replicas 3), every encoder but the active
# speaker (tests/fleet.rs's job pipeline). Prints, per worker count, the wall time from the
# submit to the last job done and media-seconds per wall-second. On one machine the workers
# (and the three servers) share its cores: the numbers say how much a machine's cores are
# used, not what one worker per machine would give.
#
#   bash benches/fleet.sh               # BIN=target/debug/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
SEGS=target/test-media/fleet-media
OUT=target/bench-fleet
[ -f "$SEGS/segments.done" ] || { echo "run tests/fleet.rs once first (it cuts the segments)" >&2; exit 1; }
rm -rf "$OUT" && mkdir -p "$OUT"
printf '[[source]]\nname = "clip"\nkind = "file"\npath = "placeholder.mp4"\n\n[speaker]\nmode = "off"\n' > "$OUT/job.toml"
media=$(for f in "$SEGS"/seg_*.mp4; do ffprobe -v error -show_entries format=duration -of csv=p=0 "$f"; done | awk '{s+=$1} END {printf "%.1f", s}')
echo "workers  jobs  media_s  wall_s  media_s_per_wall_s  cpu_s(user+sys, workers)"
for k in 1 2 3; do
  dir=$OUT/cluster-$k
  scripts/nats-cluster start "$dir" $((24222 + 10 * k)) >/dev/null
  urls=$(scripts/nats-cluster urls "$dir")
  pids=()
  for i in $(seq "$k"); do
    /usr/bin/time -f "%U %S" -o "$OUT/time-$k-$i" "$BIN" worker --nats "$urls" --site bench --replicas 3 \
      --name "w$i" --spool "$dir/spool-$i" --exit-when-idle 3 2>"$OUT/w-$k-$i.log" &
    pids+=($!)
  done
  t0=$(date +%s.%N)
  "$BIN" submit --nats "$urls" --site bench --replicas 3 --pipeline "$OUT/job.toml" "$SEGS"/seg_*.mp4 >/dev/null
  while :; do
    n=$("$BIN" jobs --nats "$urls" --site bench --json | python3 -c 'import json,sys; print(sum(j["state"]=="done" for j in json.load(sys.stdin)))')
    [ "$n" -ge 12 ] && break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  wait "${pids[@]}"
  cpu=$(cat "$OUT"/time-$k-* | awk '{s+=$1+$2} END {printf "%.1f", s}')
  scripts/nats-cluster stop "$dir"
  awk -v k="$k" -v m="$media" -v a="$t0" -v b="$t1" -v c="$cpu" \
    'BEGIN {w=b-a; printf "%7d  %4d  %7.1f  %6.1f  %18.2f  %s\n", k, 12, m, w, m/w, c}'
done
