#!/usr/bin/env bash
# CPU seconds of `avsense run` (every encoder, defaults) against GStreamer's decode-only of
# the same file, side by side (issue "camera density", acceptance 1: ratio <= 4.4).
#
# The clip is real footage: ../shared/media/av/person_sounds_dev.mp4 (60 s, people walking
# through a room, real sounds) scaled to 1920x1080 at 30 fps with its audio (ffmpeg, made
# once into target/bench). Rows, interleaved per round so that each sees the same load:
#   decode-only   gst-launch-1.0 filesrc ! qtdemux ! h264parse ! avdec_h264 ! fakesink,
#                 and the AAC track through avdec_aac (what the pipeline must decode too)
#   gated         avsense run --input CLIP (defaults: the detector's motion gate on)
#   full-frame    the same with [detector] motion_gate = false
# Reported: median CPU seconds (user + sys, GNU time) per row, the ratios to decode-only,
# and the detector's runs / held-back frames from the run summary.
#
#     bash benches/cpu-ratio.sh            # RUNS=3 rounds by default
#     BIN=target/debug/avsense bash benches/cpu-ratio.sh   # another build
#     BIN_BASE=/tmp/avsense-old bash benches/cpu-ratio.sh  # + that build's defaults, interleaved
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
BIN=${BIN:-target/release/avsense}
SHARED=${SHARED:-../shared}
SRC=$SHARED/media/av/person_sounds_dev.mp4
OUT=target/bench
CLIP=$OUT/people_1080p30.mp4
die() { echo "cpu-ratio: $*" >&2; exit 1; }
[ -f "$SRC" ] || die "$SRC not found (../shared beside the checkout)"
[ -x /usr/bin/time ] || die "GNU time not found at /usr/bin/time"
command -v ffmpeg >/dev/null || die "ffmpeg not found (fixtures only)"
if [ "$BIN" = target/release/avsense ]; then
    cargo build --release --locked -q -p avsense-cli >&2
fi
mkdir -p "$OUT"
if [ ! -s "$CLIP" ]; then
    ffmpeg -nostdin -v error -y -i "$SRC" -vf "scale=1920:1080:flags=bicubic,fps=30" \
        -c:v libx264 -preset veryfast -crf 20 -g 60 -c:a aac -b:a 128k "$CLIP.part.mp4"
    mv "$CLIP.part.mp4" "$CLIP"
fi
FULL_CFG=$OUT/cpu-ratio-full.toml
printf '%s\n' '[pipeline]' 'name = "cpu-ratio"' '[[source]]' 'name = "input"' 'kind = "file"' \
    "path = \"$PWD/$CLIP\"" '[detector]' 'motion_gate = false' >"$FULL_CFG"

cpu_of() { awk '{printf "%.2f", $1 + $2}' "$1"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
detector_of() { # run summary → "runs/held"
    python3 -c 'import sys; sys.path.insert(0, "benches/lib"); from summary import detector
d = detector(sys.argv[1]); print("%s/%s" % (d.get("runs", "?"), d.get("gated", "?")))' "$1"
}
BIN_BASE=${BIN_BASE:-}
dec=(); decv=(); gated=(); full=(); base=(); det_g=""; det_f=""; det_b=""
for i in $(seq 1 "$RUNS"); do
    /usr/bin/time -f '%U %S' -o "$OUT/cr-decv.time" gst-launch-1.0 -q filesrc location="$CLIP" \
        ! qtdemux name=d d.video_0 ! queue ! h264parse ! avdec_h264 ! fakesink sync=false >/dev/null
    decv+=("$(cpu_of "$OUT/cr-decv.time")")
    /usr/bin/time -f '%U %S' -o "$OUT/cr-dec.time" gst-launch-1.0 -q filesrc location="$CLIP" \
        ! qtdemux name=d d.video_0 ! queue ! h264parse ! avdec_h264 ! fakesink sync=false \
        d.audio_0 ! queue ! aacparse ! avdec_aac ! fakesink sync=false >/dev/null
    dec+=("$(cpu_of "$OUT/cr-dec.time")")
    /usr/bin/time -f '%U %S' -o "$OUT/cr-gated.time" "$BIN" run --input "$CLIP" \
        --events /dev/null -q --json-summary 2>"$OUT/cr-gated.log" || die "run failed: $OUT/cr-gated.log"
    gated+=("$(cpu_of "$OUT/cr-gated.time")"); det_g=$(detector_of "$OUT/cr-gated.log")
    /usr/bin/time -f '%U %S' -o "$OUT/cr-full.time" "$BIN" run "$FULL_CFG" \
        --events /dev/null -q --json-summary 2>"$OUT/cr-full.log" || die "run failed: $OUT/cr-full.log"
    full+=("$(cpu_of "$OUT/cr-full.time")"); det_f=$(detector_of "$OUT/cr-full.log")
    if [ -n "$BIN_BASE" ]; then
        /usr/bin/time -f '%U %S' -o "$OUT/cr-base.time" "$BIN_BASE" run --input "$CLIP" \
            --events /dev/null -q --json-summary 2>"$OUT/cr-base.log" || die "run failed: $OUT/cr-base.log"
        base+=("$(cpu_of "$OUT/cr-base.time")"); det_b=$(detector_of "$OUT/cr-base.log")
        echo "round $i: $BIN_BASE defaults ${base[-1]} s ($det_b)" >&2
    fi
    echo "round $i: decode-only ${decv[-1]} s video, ${dec[-1]} s video + audio, gated ${gated[-1]} s (detector runs/held $det_g), full-frame ${full[-1]} s ($det_f)" >&2
done
md=$(printf '%s\n' "${dec[@]}" | median)
mv=$(printf '%s\n' "${decv[@]}" | median)
mg=$(printf '%s\n' "${gated[@]}" | median)
mf=$(printf '%s\n' "${full[@]}" | median)
echo
echo "clip: $CLIP (person_sounds_dev at 1920x1080 30 fps + AAC, 60 s); $RUNS rounds, medians"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
x() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
printf '| %-34s | %8s | %16s | %14s | %s |\n' "run" "CPU s" "× video decode" "× A+V decode" "detector runs / held back"
printf '| %-34s | %8s | %16s | %14s | %s |\n' "gst decode-only (video)" "$mv" "1.00" "" ""
printf '| %-34s | %8s | %16s | %14s | %s |\n' "gst decode-only (video + audio)" "$md" "$(x "$md" "$mv")" "1.00" ""
printf '| %-34s | %8s | %16s | %14s | %s |\n' "avsense, defaults (motion gate)" "$mg" "$(x "$mg" "$mv")" "$(x "$mg" "$md")" "$det_g"
printf '| %-34s | %8s | %16s | %14s | %s |\n' "avsense, full-frame detection" "$mf" "$(x "$mf" "$mv")" "$(x "$mf" "$md")" "$det_f"
if [ -n "$BIN_BASE" ]; then
    mb=$(printf '%s\n' "${base[@]}" | median)
    printf '| %-34s | %8s | %16s | %14s | %s |\n' "$BIN_BASE, defaults" "$mb" "$(x "$mb" "$mv")" "$(x "$mb" "$md")" "$det_b"
fi
