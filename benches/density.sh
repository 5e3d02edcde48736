#!/usr/bin/env bash
# Camera density: N live-paced 1080p30 streams with every encoder and the fusion in one
# `avsense run`, for N in $COUNTS (default 1 2 4 8). Each stream replays a real clip at real
# time with its audio — a `kind = "gst"` source, `live = true`, whose launch line demuxes
# and decodes the file (qtdemux, avdec_h264, avdec_aac) and paces each branch with
# `identity sync=true` — alternating the shared people clip
# scaled to 1080p30 (target/bench/people_1080p30.mp4, made by benches/cpu-ratio.sh's
# recipe) and the 1080p bench clip of benches/e2e.sh (generated if absent).
#
# Real time is judged per run from the summary (`--json-summary`):
#   drops    every edge's `dropped` (live edges drop the oldest when a consumer is behind)
#   latency  each stream's capture→event p95 (≤ 2 s)
#   detector the detector's runs per second of media per stream (the gate may hold frames
#            back on still footage; the table shows it next to the configured 5/s)
# and the CPU seconds of the process per stream and per second (GNU time).
#
#     bash benches/density.sh                     # DURATION=60 s per N
#     COUNTS="1 2" DURATION=30 bash benches/density.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${COUNTS:-1 2 4 8}
DURATION=${DURATION:-60}
BIN=${BIN:-target/release/avsense}
SHARED=${SHARED:-../shared}
OUT=target/bench/density
die() { echo "density: $*" >&2; exit 1; }
[ -x /usr/bin/time ] || die "GNU time not found at /usr/bin/time"
if [ "$BIN" = target/release/avsense ]; then
    cargo build --release --locked -q -p avsense-cli >&2
fi
mkdir -p "$OUT"
PEOPLE=target/bench/people_1080p30.mp4
if [ ! -s "$PEOPLE" ]; then
    [ -f "$SHARED/media/av/person_sounds_dev.mp4" ] || die "../shared/media/av/person_sounds_dev.mp4 not found"
    ffmpeg -nostdin -v error -y -i "$SHARED/media/av/person_sounds_dev.mp4" \
        -vf "scale=1920:1080:flags=bicubic,fps=30" -c:v libx264 -preset veryfast -crf 20 -g 60 \
        -c:a aac -b:a 128k "$PEOPLE.part.mp4"
    mv "$PEOPLE.part.mp4" "$PEOPLE"
fi
SYNTH=target/bench/e2e_1080p30_60s.mp4
if [ ! -s "$SYNTH" ]; then
    gst-launch-1.0 -q -e videotestsrc pattern=smpte horizontal-speed=4 num-buffers=1800 \
        ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
        ! x264enc speed-preset=ultrafast tune=zerolatency bitrate=8000 key-int-max=60 \
        ! h264parse ! queue ! mp4mux name=m ! filesink location="$SYNTH.part" \
        audiotestsrc wave=ticks samplesperbuffer=1600 num-buffers=1800 \
        ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac \
        ! aacparse ! queue ! m. >&2
    mv "$SYNTH.part" "$SYNTH"
fi

rows=()
for n in $COUNTS; do
    cfg=$OUT/density-$n.toml
    {
        printf '[pipeline]\nname = "density-%s"\n' "$n"
        for k in $(seq 1 "$n"); do
            clip=$PWD/$PEOPLE
            [ $((k % 2)) = 0 ] && clip=$PWD/$SYNTH
            printf '[[source]]\nname = "cam%s"\nkind = "gst"\nlive = true\n' "$k"
            printf 'launch = "filesrc location=%s ! qtdemux name=d d.video_0 ! queue ! h264parse ! avdec_h264 ! identity sync=true ! videoconvert d.audio_0 ! queue ! aacparse ! avdec_aac ! identity sync=true ! audioresample ! audioconvert"\n' "$clip"
        done
        printf '[[sink]]\nkind = "jsonl"\npath = "/dev/null"\n'
    } >"$cfg"
    echo "== N = $n ($DURATION s)" >&2
    /usr/bin/time -f '%U %S' -o "$OUT/density-$n.time" timeout -s INT "$((DURATION + 5))" \
        "$BIN" run "$cfg" -q --json-summary 2>"$OUT/density-$n.log" || true
    cpu=$(tail -1 "$OUT/density-$n.time" | awk '{printf "%.2f", $1 + $2}')
    row=$(python3 - "$OUT/density-$n.log" "$n" "$cpu" <<'EOF'
import sys
sys.path.insert(0, "benches/lib")
from summary import last_summary
log, n, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rep = last_summary(log)
streams = rep["streams"]
drops = sum(e.get("dropped", 0) for e in rep.get("edges", []))
p95 = [s["latency"]["p95_ms"] / 1e3 for s in streams if s.get("latency")]
media = [s.get("media_seconds") or 0 for s in streams]
det = [(s.get("detector") or {}).get("runs", 0) / m for s, m in zip(streams, media) if m > 0]
wall = rep.get("wall_seconds") or 1
per = float(cpu) / n if cpu != "?" else float("nan")
ok = drops == 0 and p95 and max(p95) <= 2.0
print(f"| {n} | {min(media):.1f} | {per:.2f} | {per / wall:.2f} | {drops} | "
      f"{max(p95) if p95 else float('nan'):.2f} | {min(det) if det else 0:.2f}–{max(det) if det else 0:.2f} | "
      f"{'yes' if ok else 'no'} |")
EOF
) || row="| $n | run failed: see $OUT/density-$n.log |"
    echo "$row" >&2
    rows+=("$row")
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $DURATION s per run"
echo "| streams | media s (min) | CPU s per stream | cores per stream | edge drops | worst p95 capture→event s | detector runs/s per stream | real time |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
