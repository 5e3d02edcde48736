#!/usr/bin/env bash
# The fault probes of issue 19, run against a built avsense: prints one Markdown table row per
# probe (input → exit status, seconds, what it said) for RELIABILITY.md. Fixtures are made
# with gst-launch-1.0 and ffmpeg under target/probes; model probes copy the model directory.
#
#   bash scripts/fault-probes.sh                      # builds the release binary first
#   BIN=target/release/avsense bash scripts/fault-probes.sh
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -q -p avsense-cli || exit 1
  BIN=target/release/avsense
fi
BIN=$(realpath "$BIN")
MODELS=${AVSENSE_MODELS:-models/cache}
P=target/probes
mkdir -p "$P"
LIMIT=120

clip() { # name seconds audio_seconds
  local out="$P/$1"
  [ -f "$out" ] && return
  gst-launch-1.0 -q videotestsrc pattern=ball num-buffers=$(( $2 * 30 )) \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! x264enc speed-preset=ultrafast bframes=0 key-int-max=30 ! h264parse ! queue ! mp4mux name=mux ! filesink location="$out.part" \
    audiotestsrc wave=ticks samplesperbuffer=4800 num-buffers=$(awk -v s="$3" 'BEGIN{printf "%d", s*10}') \
    ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! audioconvert ! avenc_aac ! aacparse ! queue ! mux. >/dev/null \
    && mv "$out.part" "$out"
}
clip c10.mp4 10 10
clip c60.mp4 60 60
clip short_audio.mp4 10 5.2
if [ ! -f "$P/corrupt_middle.mp4" ]; then
  cp "$P/c10.mp4" "$P/corrupt_middle.mp4"
  size=$(stat -c %s "$P/corrupt_middle.mp4")
  head -c 65536 /dev/urandom | dd of="$P/corrupt_middle.mp4" bs=1 seek=$(( size / 2 )) conv=notrunc status=none
fi
CHEAP=$'[detector]\nmode = "off"\n[tagger]\nmode = "off"\n[vad]\nmode = "off"\n[speaker]\nmode = "off"\n'

row() { # probe, then the command's status/time/message
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(echo "$4" | tr '\n' ' ' | cut -c1-220)"
}
run() { # probe, command...
  local probe=$1; shift
  local t0 t1 rc err
  t0=$(date +%s.%N)
  err=$(timeout -s KILL $LIMIT "$@" 2>&1 >/dev/null); rc=$?
  t1=$(date +%s.%N)
  [ $rc -eq 137 ] && rc="HANG (killed after ${LIMIT} s)"
  row "$probe" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')" "$(echo "$err" | grep -E 'avsense: error|warning:|sink ' | tail -n 2)"
}
cfg() { # name, toml body → path
  printf '%s' "$2" > "$P/$1"; echo "$P/$1"
}

echo "| probe | exit | s | what it said |"
echo "|---|---|---|---|"
run "\`--events /dev/full\`" "$BIN" run -q --input "$P/c10.mp4" --events /dev/full
hangs=0; for i in 1 2 3 4 5 6 7 8; do
  timeout -s KILL 60 bash -c "'$BIN' run -q --input '$P/c10.mp4' | head -1 >/dev/null" || hangs=$((hangs + 1))
done
row "\`run --input X | head -1\` (8 tries)" "–" "–" "$hangs of 8 hung"
ref=$(cfg ref.toml "[[source]]
name = \"c\"
kind = \"file\"
path = \"$(realpath $P/c60.mp4)\"
$CHEAP[[sink]]
kind = \"jsonl\"
path = \"$(realpath $P)/ref.jsonl\"
force = true
")
"$BIN" run -q "$ref" 2>/dev/null
both=$(cfg both.toml "[[source]]
name = \"c\"
kind = \"file\"
path = \"$(realpath $P/c60.mp4)\"
$CHEAP[[sink]]
kind = \"stdout\"
[[sink]]
kind = \"jsonl\"
path = \"$(realpath $P)/both.jsonl\"
force = true
")
timeout -s KILL 60 bash -c "'$BIN' run -q '$both' | head -1 >/dev/null"; rc=$?
row "stdout + jsonl sinks, \`| head -1\`" "$rc" "–" "file holds $(wc -l < $P/both.jsonl) of $(wc -l < $P/ref.jsonl) events"
for sig in INT TERM; do
  "$BIN" run -q --json-summary --input "$P/c60.mp4" > /dev/null 2> "$P/sig.err" &
  pid=$!; sleep 3
  t0=$(date +%s.%N); kill -$sig $pid; wait $pid; rc=$?; t1=$(date +%s.%N)
  row "SIG$sig 3 s into a 60 s file (every encoder)" "$rc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') after the signal" \
    "$(grep -o '"media_seconds":[0-9.]*' $P/sig.err | head -1), summary $(grep -q '"streams"' $P/sig.err && echo printed || echo MISSING)"
done
for f in human-models/nanodet.bin yamnet/yamnet.tflite human-models/blazeface.bin lightasd/pretrain_AVA_CVPR.model; do
  [ -f "$MODELS/$f" ] || continue
  rm -rf "$P/models"; cp -r "$MODELS" "$P/models"; rm -f "$P/models/.verified.json"
  size=$(stat -c %s "$P/models/$f")
  head -c 4096 /dev/urandom | dd of="$P/models/$f" bs=1 seek=$(( size / 2 )) conv=notrunc status=none
  AVSENSE_MODELS="$P/models" run "4 KiB flipped in \`$f\`" "$BIN" run -q --input "$P/c10.mp4"
done
if [ -f "$MODELS/lightasd/finetuning_TalkSet.model" ]; then
  rm -rf "$P/models"; cp -r "$MODELS" "$P/models"
  cp "$P/models/lightasd/finetuning_TalkSet.model" "$P/models/lightasd/pretrain_AVA_CVPR.model"
  AVSENSE_MODELS="$P/models" run "TalkSet weights renamed as the AVA file" "$BIN" run -q --input "$P/c10.mp4"
fi
for probe in 'window = 1e-9\nhop = 1e-9' ; do
  run "\`[pipeline] window = hop = 1e-9\`" "$BIN" run -q "$(cfg p.toml "$(printf "[pipeline]\n$probe\n[[source]]\nname = \"c\"\nkind = \"file\"\npath = \"$(realpath $P/c10.mp4)\"\n")")"
done
for probe in 'on = 5.0' 'on = nan' 'on = 0.3\noff = 0.6' 'min_silence = -1.0'; do
  run "\`[speech] $(printf "$probe" | tr '\n' ' ')\`" "$BIN" run -q "$(cfg s.toml "$(printf "[speech]\n$probe\n[[source]]\nname = \"c\"\nkind = \"file\"\npath = \"$(realpath $P/c10.mp4)\"\n")")"
done
run "64 KiB of noise in the middle of a 10 s file (cheap encoders)" "$BIN" run -q "$(cfg cm.toml "[[source]]
name = \"c\"
kind = \"file\"
path = \"$(realpath $P/corrupt_middle.mp4)\"
$CHEAP")"
run "video 10 s, audio track 5.2 s (cheap encoders)" "$BIN" run -q "$(cfg sa.toml "[[source]]
name = \"c\"
kind = \"file\"
path = \"$(realpath $P/short_audio.mp4)\"
$CHEAP")"
run "the same with \`--strict\`" "$BIN" run -q --strict "$P/sa.toml"
cp "$P/c10.mp4" "$P/keep.mp4"; before=$(sha256sum < "$P/keep.mp4")
run "\`--events\` = the input" "$BIN" run -q --input "$P/keep.mp4" --events "$P/keep.mp4"
[ "$before" = "$(sha256sum < "$P/keep.mp4")" ] && row "… the input afterwards" "–" "–" "unchanged" || row "… the input afterwards" "–" "–" "CHANGED"
cp "$P/c10.mp4" "$P/other.mp4"
run "\`--events\` = another existing video" "$BIN" run -q --input "$P/c10.mp4" --events "$P/other.mp4"
run "a missing file" "$BIN" run -q --input /nonexistent/clip.mp4
run "an http source, connection refused" "$BIN" run -q --input http://127.0.0.1:9/clip.mp4
