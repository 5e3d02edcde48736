#!/usr/bin/env bash
# The NATS sink's cost, against a real single-node JetStream server (nats-server -js) on a
# loopback port: CPU (user + sys) and peak RSS of `avsense run` on the dev clip
# (../shared/media/av/person_sounds_dev.mp4, every encoder the model directory has) with a
# JSON Lines sink only, then with the JSONL sink plus the NATS sink (JetStream publish with a
# message id per lifecycle message, spool on disk), RUNS runs each (default 2), alternating;
# then what the stream holds (the server's monitoring endpoint): a recorded file's event ids
# are reproducible, so every run after the first is de-duplicated (one run's messages).
#
#   bash benches/nats.sh                      # BIN=target/debug/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
RUNS=${RUNS:-2}
CLIP=${CLIP:-../shared/media/av/person_sounds_dev.mp4}
OUT=target/bench-nats
rm -rf "$OUT" && mkdir -p "$OUT/server"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
MPORT=$(free_port)
nats-server -a 127.0.0.1 -p "$PORT" -m "$MPORT" -js -sd "$OUT/server" > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 1

config() { # name nats?
  {
    printf '[[source]]\nname = "dev"\nkind = "file"\npath = "%s"\n\n' "$(realpath "$CLIP")"
    printf '[[sink]]\nkind = "jsonl"\npath = "%s/%s.jsonl"\n' "$PWD/$OUT" "$1"
    if [ "$2" = yes ]; then
      printf '\n[[sink]]\nkind = "nats"\nurl = "nats://127.0.0.1:%s"\nsite = "bench"\nspool = "%s/spool-%s"\n' "$PORT" "$PWD/$OUT" "$1"
    fi
  } > "$OUT/$1.toml"
}

for i in $(seq "$RUNS"); do
  for mode in no yes; do
    name="dev-nats-$mode-$i"
    config "$name" "$mode"
    /usr/bin/time -f "%U %S %M %e" -o "$OUT/time-$name" "$BIN" run -q --force "$OUT/$name.toml" 2> "$OUT/err-$name" > /dev/null
    read -r u s m e < "$OUT/time-$name"
    printf 'run %s, nats sink %-3s: CPU %.2f s (user %.2f + sys %.2f), max RSS %.1f MB, wall %.1f s, %s messages\n' \
      "$i" "$mode" "$(echo "$u + $s" | bc)" "$u" "$s" "$(echo "scale=1; $m / 1024" | bc)" "$e" "$(wc -l < "$OUT/$name.jsonl")"
  done
done
curl -s "http://127.0.0.1:$MPORT/jsz?streams=true" > "$OUT/jsz.json"
python3 - "$OUT/jsz.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for a in j.get("account_details", []):
    for st in a.get("stream_detail", []):
        s = st["state"]
        print("stream %s: %d messages, %d bytes" % (st["name"], s["messages"], s["bytes"]))
PY
