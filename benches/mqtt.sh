#!/usr/bin/env bash
# The MQTT sink's costs, against a real mosquitto on a free loopback port:
#
# 1. CPU and peak RSS of `avsense run` on the dev clip (../shared/media/av/person_sounds_dev.mp4,
#    every encoder the model directory has) with a JSON Lines sink only, then with the same
#    sink plus the MQTT sink (discovery on): /usr/bin/time's user+sys seconds and max RSS.
# 2. Publish latency on a live test source (DURATION s, default 30): for every message on
#    avsense/events, the subscriber's receive time (mosquitto_sub's %U) minus the time the
#    message reached the sinks (its wall_time of `start` + (end − start) + latency_ms);
#    p50 / p95 / max in ms.
#
#   bash benches/mqtt.sh                      # BIN=target/debug/avsense by default
#   BIN=target/release/avsense bash benches/mqtt.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
DURATION=${DURATION:-30}
CLIP=${CLIP:-../shared/media/av/person_sounds_dev.mp4}
OUT=target/bench-mqtt
rm -rf "$OUT" && mkdir -p "$OUT/broker" && chmod 777 "$OUT/broker"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" > "$OUT/broker/m.conf"
mosquitto -c "$OUT/broker/m.conf" > "$OUT/broker/log" 2>&1 &
BROKER=$!
trap 'kill $BROKER $SUB 2>/dev/null || true' EXIT
SUB=
sleep 0.5

config() { # name source-toml mqtt?
  {
    printf '[pipeline]\nname = "%s"\n\n%s\n\n[[sink]]\nkind = "jsonl"\npath = "%s/%s.jsonl"\n' "$1" "$2" "$PWD/$OUT" "$1"
    if [ "$3" = yes ]; then
      printf '\n[[sink]]\nkind = "mqtt"\nport = %s\ndiscovery = true\nspool = "%s/spool-%s"\n' "$PORT" "$PWD/$OUT" "$1"
    fi
  } > "$OUT/$1.toml"
}

FILE_SRC=$(printf '[[source]]\nname = "dev"\nkind = "file"\npath = "%s"' "$(realpath "$CLIP")")
for mode in no yes; do
  config "dev-mqtt-$mode" "$FILE_SRC" "$mode"
  /usr/bin/time -f "%U %S %M" -o "$OUT/time-$mode" "$BIN" run -q "$OUT/dev-mqtt-$mode.toml" 2> "$OUT/err-$mode" > /dev/null
  read -r u s m < "$OUT/time-$mode"
  printf 'dev clip, mqtt sink %-3s: CPU %.2f s (user %.2f + sys %.2f), max RSS %.1f MB, %s messages\n' \
    "$mode" "$(echo "$u + $s" | bc)" "$u" "$s" "$(echo "scale=1; $m / 1024" | bc)" "$(wc -l < "$OUT/dev-mqtt-$mode.jsonl")"
done

mosquitto_sub -h 127.0.0.1 -p "$PORT" -t avsense/events -q 1 -F '%U	%p' > "$OUT/received.tsv" &
SUB=$!
sleep 0.5
LIVE_SRC=$(printf '[[source]]\nname = "live"\nkind = "test"\nlive = true\nduration = %s' "$DURATION")
config live "$LIVE_SRC" yes
"$BIN" run -q "$OUT/live.toml" 2> "$OUT/err-live" > /dev/null
sleep 1
python3 - "$OUT/received.tsv" <<'PY'
import json, sys, datetime
lat = []
for line in open(sys.argv[1]):
    at, payload = line.rstrip("\n").split("\t", 1)
    e = json.loads(payload)
    if "wall_time" not in e or "latency_ms" not in e:
        continue
    start = datetime.datetime.fromisoformat(e["wall_time"].replace("Z", "+00:00")).timestamp()
    at_sink = start + (e["end"] - e["start"]) + e["latency_ms"] / 1000
    lat.append((float(at) - at_sink) * 1000)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, round((len(lat) - 1) * p))]
print(f"live test source: {len(lat)} messages, publish latency (sinks → subscriber) "
      f"p50 {q(0.5):.2f} ms, p95 {q(0.95):.2f} ms, max {lat[-1]:.2f} ms")
PY
