#!/usr/bin/env bash
# Motion-gated vs full-frame detection, quality side by side: every labelled clip of
# ../shared/media/av and ../shared/media/videos is run twice (defaults with
# [detector] motion_gate = true, and = false), capacity 1 so that both runs batch alike, and
# their finished events are compared: object tracks (id, class, start, end), the
# associations (sound_source / offscreen_sound / av_event / active_speaker), every event
# kind's count, and the detector's runs / held-back frames from the summary.
#
#     bash benches/gate-quality.sh        # BIN=target/release/avsense by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/avsense}
SHARED=${SHARED:-../shared}
OUT=target/bench/gate-quality
mkdir -p "$OUT"
if [ "$BIN" = target/release/avsense ]; then
    cargo build --release --locked -q -p avsense-cli >&2
fi
for clip in "$SHARED"/media/av/*.mp4 "$SHARED"/media/videos/*.mp4; do
    name=$(basename "$clip" .mp4)
    for gate in true false; do
        printf '[pipeline]\nname = "gate"\n[[source]]\nname = "input"\nkind = "file"\npath = "%s"\ncapacity = 1\n[detector]\nmotion_gate = %s\n' \
            "$(realpath "$clip")" "$gate" >"$OUT/$name.$gate.toml"
        "$BIN" run "$OUT/$name.$gate.toml" --events "$OUT/$name.$gate.jsonl" --force -q --json-summary \
            2>"$OUT/$name.$gate.log"
    done
done
python3 - "$OUT" <<'EOF'
import collections, glob, json, os, sys
out = sys.argv[1]

def summary(path):
    rep = None
    for line in open(path, encoding="utf-8", errors="replace"):
        if line.startswith("{"):
            try:
                rep = json.loads(line)
            except ValueError:
                pass
    return (rep or {}).get("streams", [{}])[0].get("detector") or {}

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

print("| clip | detector runs full → gated (held back) | object tracks full / gated | same ids and classes | largest start / end shift | associations equal | event kinds equal |")
print("|---|---|---|---|---|---|---|")
for full in sorted(glob.glob(f"{out}/*.false.jsonl")):
    name = os.path.basename(full)[:-len(".false.jsonl")]
    gated = f"{out}/{name}.true.jsonl"
    a, b = ends(full), ends(gated)
    oa, ob = objects(a), objects(b)
    same_ids = [(o[0], o[1]) for o in oa] == [(o[0], o[1]) for o in ob]
    shift = max((max(abs(x[2] - y[2]), abs(x[3] - y[3])) for x, y in zip(oa, ob)), default=0.0)
    ka = collections.Counter(e["kind"] for e in a)
    kb = collections.Counter(e["kind"] for e in b)
    sf, sg = summary(f"{out}/{name}.false.log"), summary(f"{out}/{name}.true.log")
    print(f"| {name} | {sf.get('runs')} → {sg.get('runs')} ({sg.get('gated')}) | {len(oa)} / {len(ob)} | "
          f"{'yes' if same_ids else 'NO'} | {shift:.2f} s | {'yes' if assoc(a) == assoc(b) else 'NO'} | "
          f"{'yes' if ka == kb else f'NO: {dict(ka)} vs {dict(kb)}'} |")
    if not same_ids or shift > 0:
        for x, y in zip(oa, ob):
            if x != y:
                print(f"  full {x} / gated {y}", file=sys.stderr)
EOF
