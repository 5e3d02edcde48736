#!/usr/bin/env bash
# Two detector settings, quality side by side: every labelled clip of ../shared/media/av
# and ../shared/media/videos is run twice — with the `[detector]` lines A (the reference)
# and B — capacity 1 so that both runs batch alike, and their finished events are compared:
# object tracks (id, class, start, end), the associations (sound_source / offscreen_sound /
# av_event / active_speaker), every event kind's count, and the detector's runs /
# held-back frames from the summary.
#
#     bash benches/detector-ab.sh                 # A: motion_gate = false, B: the defaults
#     bash benches/detector-ab.sh "trim_bars = false" "trim_bars = true"
#     BIN=target/debug/avsense bash benches/detector-ab.sh ...   # another build
#     BIN_A=/tmp/avsense-old BIN_B=target/release/avsense bash benches/detector-ab.sh "" ""
#                                                  # two builds, the same settings
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/avsense}
BIN_A=${BIN_A:-$BIN}
BIN_B=${BIN_B:-$BIN}
SHARED=${SHARED:-../shared}
A=${1-motion_gate = false}
B=${2-motion_gate = true}
OUT=target/bench/detector-ab
mkdir -p "$OUT"
if [ "$BIN_A" = target/release/avsense ] || [ "$BIN_B" = target/release/avsense ]; then
    cargo build --release --locked -q -p avsense-cli >&2
fi
for clip in "$SHARED"/media/av/*.mp4 "$SHARED"/media/videos/*.mp4; do
    name=$(basename "$clip" .mp4)
    for side in a b; do
        lines=$A bin=$BIN_A
        [ "$side" = b ] && lines=$B bin=$BIN_B
        printf '[pipeline]\nname = "ab"\n[[source]]\nname = "input"\nkind = "file"\npath = "%s"\ncapacity = 1\n[detector]\n%s\n' \
            "$(realpath "$clip")" "$lines" >"$OUT/$name.$side.toml"
        "$bin" run "$OUT/$name.$side.toml" --events "$OUT/$name.$side.jsonl" --force -q --json-summary \
            2>"$OUT/$name.$side.log"
    done
done
echo "A: $BIN_A [detector] $A; B: $BIN_B [detector] $B"
python3 - "$OUT" <<'EOF'
import collections, glob, json, os, sys
sys.path.insert(0, "benches/lib")
from summary import detector as summary
out = sys.argv[1]

def ends(path):
    return [e for e in map(json.loads, open(path)) if e.get("phase") == "end"]

def objects(ev):
    return [(e["objects"][0] if e.get("objects") else None,
             e["labels"][0]["name"] if e.get("labels") else "", e["start"], e["end"])
            for e in ev if e["kind"] == "object"]

def assoc(ev):
    return [(e["kind"], e["labels"][0]["name"] if e.get("labels") else "", e.get("objects"),
             round(e["start"], 2)) for e in ev
            if e["kind"] in ("sound_source", "offscreen_sound", "av_event", "active_speaker")]

print("| clip | detector runs A → B (B held back) | object tracks A / B | same ids and classes | largest start / end shift | associations equal | event kinds equal |")
print("|---|---|---|---|---|---|---|")
for full in sorted(glob.glob(f"{out}/*.a.jsonl")):
    name = os.path.basename(full)[:-len(".a.jsonl")]
    gated = f"{out}/{name}.b.jsonl"
    a, b = ends(full), ends(gated)
    oa, ob = objects(a), objects(b)
    same_ids = [(o[0], o[1]) for o in oa] == [(o[0], o[1]) for o in ob]
    shift = max((max(abs(x[2] - y[2]), abs(x[3] - y[3])) for x, y in zip(oa, ob)), default=0.0)
    ka = collections.Counter(e["kind"] for e in a)
    kb = collections.Counter(e["kind"] for e in b)
    sf, sg = summary(f"{out}/{name}.a.log"), summary(f"{out}/{name}.b.log")
    print(f"| {name} | {sf.get('runs')} → {sg.get('runs')} ({sg.get('gated')}) | {len(oa)} / {len(ob)} | "
          f"{'yes' if same_ids else 'NO'} | {shift:.2f} s | {'yes' if assoc(a) == assoc(b) else 'NO'} | "
          f"{'yes' if ka == kb else f'NO: {dict(ka)} vs {dict(kb)}'} |")
    if not same_ids or shift > 0:
        for x, y in zip(oa, ob):
            if x != y:
                print(f"  A {x} / B {y}", file=sys.stderr)
EOF
