#!/usr/bin/env bash
# End-to-end throughput and memory of `avsense run` on a 60 s 1080p30 H.264 + AAC clip,
# against GStreamer's decode-only rate of the same file. Run from the repository root:
#
#     bash benches/e2e.sh            # RUNS=3 by default; the table shows medians
#     RUNS=1 bash benches/e2e.sh     # quicker
#     ENCODERS=all bash benches/e2e.sh   # every encoder whose model is fetched (detector too)
#     BIN=path/to/avsense bash benches/e2e.sh   # another build (e.g. target/compare/<rev>/…)
#
# ENCODERS=cheap (default) runs the pipeline the runtime issue's target is about: motion,
# log-mel/level/onset with `sound` events and Silero VAD; the object detector, YAMNet and
# the active speaker are switched off through a generated config. ENCODERS=all runs `avsense run --input`
# with the defaults (NanoDet at 5 detections/s, YAMNet, and the active speaker — BlazeFace
# at 2 detections/s while no face is in view — too, when fetched).
#
# Targets (issue): pipeline fps >= 0.8 x decode-only fps; peak RSS < 500 MB.
# Needs: cargo, gst-launch-1.0 (x264enc from plugins-ugly, avdec_h264 from gst-libav,
# voaacenc or avenc_aac), GNU time at /usr/bin/time, python3 (JSON parsing).
set -euo pipefail

RUNS=${RUNS:-3}
BENCH_DIR=target/bench
CLIP=$BENCH_DIR/e2e_1080p30_60s.mp4
FRAMES=1800 # 60 s at 30 fps
SECONDS_OF_MEDIA=60
BIN=${BIN:-target/release/avsense}
ENCODERS=${ENCODERS:-cheap}

die() { echo "e2e: $*" >&2; exit 1; }

[ -f Cargo.toml ] || die "run from the repository root"
command -v gst-launch-1.0 >/dev/null || die "gst-launch-1.0 not found"
command -v python3 >/dev/null || die "python3 not found"
[ -x /usr/bin/time ] || die "GNU time not found at /usr/bin/time (apt-get install -y time)"

# (a) Build (unless BIN names another binary, e.g. an older build to compare with).
if [ "$BIN" = target/release/avsense ]; then
    echo "== cargo build --release" >&2
    cargo build --release --locked >&2
fi

# (b) The clip, generated once. A moving SMPTE pattern (horizontal-speed) so that motion
# has work and the encoder produces P-frames with real content; I420 so that decoding is
# the common 4:2:0 profile; one keyframe every 2 s; 48 kHz stereo ticks for audio.
mkdir -p "$BENCH_DIR"
if [ ! -s "$CLIP" ]; then
    if gst-inspect-1.0 voaacenc >/dev/null 2>&1; then
        AAC=voaacenc
    elif gst-inspect-1.0 avenc_aac >/dev/null 2>&1; then
        AAC=avenc_aac
    else
        die "no AAC encoder (voaacenc or avenc_aac)"
    fi
    echo "== generating $CLIP (1080p30 H.264 + $AAC, 60 s)" >&2
    tmp=$CLIP.part
    gst-launch-1.0 -q -e \
        videotestsrc pattern=smpte horizontal-speed=4 num-buffers=$FRAMES \
        ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
        ! x264enc speed-preset=ultrafast tune=zerolatency bitrate=8000 key-int-max=60 \
        ! h264parse ! queue ! mp4mux name=m \
        ! filesink location="$tmp" \
        audiotestsrc wave=ticks samplesperbuffer=1600 num-buffers=$FRAMES \
        ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! $AAC bitrate=128000 \
        ! aacparse ! queue ! m. >&2
    mv "$tmp" "$CLIP"
fi

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

decode_fps=()
decode_av_fps=()
decode_cpu=()
pipe_fps=()
pipe_rtf=()
pipe_rss=()
pipe_wall=()
pipe_cpu=()
pair_ratio=()
for i in $(seq 1 "$RUNS"); do
    # (c) Decode-only: demux + parse + avdec_h264 (its default threading) into a fakesink
    # that does not sync to the clock. Video only: the decode the pipeline cannot avoid.
    t0=$(now)
    /usr/bin/time -f '%U %S' -o "$BENCH_DIR/decode$i.time" \
        gst-launch-1.0 -q filesrc location="$CLIP" ! qtdemux name=d \
        d.video_0 ! queue ! h264parse ! avdec_h264 ! fakesink sync=false >/dev/null
    t1=$(now)
    fps=$(echo "$FRAMES $t0 $t1" | awk '{printf "%.1f", $1 / ($3 - $2)}')
    decode_fps+=("$fps")
    decode_cpu+=("$(awk '{printf "%.2f", $1 + $2}' "$BENCH_DIR/decode$i.time")")
    # Video and audio decode (what uridecodebin does for the pipeline), for reference.
    t0=$(now)
    gst-launch-1.0 -q filesrc location="$CLIP" ! qtdemux name=d \
        d.video_0 ! queue ! h264parse ! avdec_h264 ! fakesink sync=false \
        d.audio_0 ! queue ! aacparse ! avdec_aac ! fakesink sync=false >/dev/null
    t1=$(now)
    fps_av=$(echo "$FRAMES $t0 $t1" | awk '{printf "%.1f", $1 / ($3 - $2)}')
    decode_av_fps+=("$fps_av")
    echo "decode-only run $i: video ${fps} fps (${decode_cpu[-1]} CPU s), video+audio ${fps_av} fps" >&2

    # (d) The pipeline under GNU time: wall time, CPU time and peak RSS; frames and wall
    # time from the JSON summary. Interleaved with (c) so that both see the same load.
    log=$BENCH_DIR/e2e_run$i.stderr
    tv=$BENCH_DIR/e2e_run$i.time
    if [ "$ENCODERS" = all ]; then
        run_args=(run --input "$CLIP" --events /dev/null)
    else
        cfg=$BENCH_DIR/e2e_cheap.toml
        printf '%s\n' '[[source]]' 'name = "input"' 'kind = "file"' "path = \"$(pwd)/$CLIP\"" \
            '[detector]' 'mode = "off"' '[tagger]' 'mode = "off"' '[speaker]' 'mode = "off"' \
            '[[sink]]' 'kind = "jsonl"' 'path = "/dev/null"' >"$cfg"
        run_args=(run "$cfg")
    fi
    /usr/bin/time -v -o "$tv" "$BIN" "${run_args[@]}" -q --json-summary \
        2>"$log" || die "avsense run failed (see $log)"
    # The summary is the last JSON line on stderr.
    summary=$(python3 - "$log" <<'EOF'
import sys
sys.path.insert(0, "benches/lib")
from summary import last_summary
report = last_summary(sys.argv[1])
frames = sum(s.get("frames", 0) for s in report.get("streams", []))
# Edge high-water marks: an edge that reaches its capacity has a slow consumer.
edges = " ".join(f"{e['name']}={e['high_water']}/{e['capacity']}" for e in report.get("edges", []))
print("  edges (high-water/capacity):", edges, file=sys.stderr)
print(frames, report["wall_seconds"])
EOF
) || die "no run summary (see $log)"
    read -r frames wall <<<"$summary"
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")
    elapsed=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$tv")
    cpu=$(awk -F': ' '/User time|System time/ {t += $2} END {printf "%.2f", t}' "$tv")
    [ "$frames" -eq "$FRAMES" ] || echo "warning: run $i saw $frames frames, expected $FRAMES" >&2
    fps=$(echo "$frames $wall" | awk '{printf "%.1f", $1 / $2}')
    rtf=$(echo "$SECONDS_OF_MEDIA $wall" | awk '{printf "%.2f", $1 / $2}')
    rss=$(echo "$rss_kb" | awk '{printf "%.0f", $1 / 1024}')
    pipe_fps+=("$fps"); pipe_rtf+=("$rtf"); pipe_rss+=("$rss"); pipe_wall+=("$wall"); pipe_cpu+=("$cpu")
    pair_ratio+=("$(echo "$fps ${decode_fps[-1]}" | awk '{printf "%.2f", $1 / $2}')")
    echo "pipeline run $i: $frames frames in ${wall} s (process ${elapsed}), ${fps} fps, ${rtf}x realtime, ${cpu} CPU s, peak RSS ${rss} MB" >&2
done

# (e) Table of medians.
m_dec=$(printf '%s\n' "${decode_fps[@]}" | median)
m_dec_av=$(printf '%s\n' "${decode_av_fps[@]}" | median)
m_fps=$(printf '%s\n' "${pipe_fps[@]}" | median)
m_rtf=$(printf '%s\n' "${pipe_rtf[@]}" | median)
m_rss=$(printf '%s\n' "${pipe_rss[@]}" | median)
max_rss=$(printf '%s\n' "${pipe_rss[@]}" | sort -g | tail -1)
ratio=$(echo "$m_fps $m_dec" | awk '{printf "%.2f", $1 / $2}')
m_pair=$(printf '%s\n' "${pair_ratio[@]}" | median)
m_dec_cpu=$(printf '%s\n' "${decode_cpu[@]}" | median)
m_cpu=$(printf '%s\n' "${pipe_cpu[@]}" | median)
# CPU seconds are far less sensitive to other load on the machine than wall time: on a
# CPU-bound box, decode CPU / pipeline CPU bounds the fps ratio the pipeline can reach.
cpu_ratio=$(echo "$m_dec_cpu $m_cpu" | awk '{printf "%.2f", $1 / $2}')
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {ok = (op == ">=") ? (v >= t) : (v < t); print ok ? "ok" : "MISSED"}'; }

echo
echo "clip: $CLIP (1920x1080 30 fps H.264 + AAC, ${SECONDS_OF_MEDIA} s, $FRAMES frames); runs: $RUNS (medians)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-36s %12s  %s\n' "measure" "value" "target"
printf '%-36s %12s  %s\n' "decode-only fps (video)" "$m_dec" ""
printf '%-36s %12s  %s\n' "decode-only fps (video+audio)" "$m_dec_av" ""
printf '%-36s %12s  %s\n' "pipeline fps" "$m_fps" ""
printf '%-36s %12s  %s\n' "ratio pipeline / decode (video)" "$ratio" ">= 0.8 $(verdict "$ratio" 0.8 '>=')"
printf '%-36s %12s  %s\n' "  same ratio, median of paired runs" "$m_pair" "(${pair_ratio[*]})"
printf '%-36s %12s  %s\n' "CPU s: decode-only / pipeline" "$m_dec_cpu / $m_cpu" ""
printf '%-36s %12s  %s\n' "CPU ratio decode / pipeline" "$cpu_ratio" ""
printf '%-36s %12s  %s\n' "realtime factor" "${m_rtf}x" ""
printf '%-36s %12s  %s\n' "peak RSS MB (median / max)" "$m_rss / $max_rss" "< 500 $(verdict "$max_rss" 500 '<')"
