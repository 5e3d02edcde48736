#!/usr/bin/env bash
# Regenerates docs/web-view.png (README's picture of the live web view): the shared dev clip
# (../shared/media/av/person_sounds_dev.mp4) played as a live source (a GStreamer launch
# description that decodes it at real time), avsense serving its HTTP API, and headless
# Chromium (chromium + chromium-driver) driven by tests/web_view.py, 40 s into the clip.
#
#   bash scripts/web-view-docs.sh          # BIN=target/debug/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/avsense}
CLIP=$(realpath "${CLIP:-../shared/media/av/person_sounds_dev.mp4}")
OUT=target/web-view-docs
mkdir -p "$OUT" docs
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
DRIVER=$(free_port)
cat > "$OUT/live.toml" <<TOML
[[source]]
name = "dev"
kind = "gst"
live = true
launch = "filesrc location=$CLIP ! qtdemux name=m m.video_0 ! queue ! h264parse ! avdec_h264 ! identity sync=true ! videoconvert m.audio_0 ! queue ! aacparse ! avdec_aac ! identity sync=true ! audioconvert"

[[sink]]
kind = "jsonl"
path = "/dev/null"
TOML
"$BIN" run -q --force --http "$HTTP" "$OUT/live.toml" > "$OUT/run.log" 2>&1 &
RUN=$!
chromedriver --port="$DRIVER" > "$OUT/driver.log" 2>&1 &
DRV=$!
trap 'kill $RUN $DRV 2>/dev/null || true' EXIT
sleep 40
python3 tests/web_view.py "http://127.0.0.1:$DRIVER" "http://127.0.0.1:$HTTP/" docs/web-view.png 60
