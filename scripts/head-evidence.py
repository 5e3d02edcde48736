#!/usr/bin/env python3
"""How well the sync head's evidence separates own-voice faces from off-screen faces, per
tick and averaged over windows of a face's voice-active ticks (the measurement behind the
"next lever" of issue 15).

Runs `avsense run` with the speaker's debug log on the labelled talking clips (the shared
ones and the off-screen composites of scripts/compose-offscreen.sh), then reports the AUC
of own-voice speaking face-ticks vs off-screen face-ticks for the raw head probability and
for its mean over causal windows (the past W ticks and the face graph's 3-tick look-ahead)
and centred windows (±W ticks), voice-active ticks only (VAD ≥ 0.5).

    python3 scripts/head-evidence.py            # BIN=target/release/avsense by default
"""
import glob
import json
import os
import re
import subprocess
import sys

BIN = os.environ.get("BIN", "target/release/avsense")
SHARED = os.environ.get("SHARED", "../shared")
TALK = f"{SHARED}/media/talking"
OUT = "target/head-evidence"
OWN = {"one_face_speaking": "center", "person_a_speaking": "center",
       "person_b_speaking": "center", "two_faces_dev": "left"}
TICK = re.compile(r"tick (\d+) face (\d+) logit \S+ head (?:Some\(([-\d.e]+)\)|None) .* vad (?:Some\(([-\d.e]+)\)|None) p ")


def run(clip):
    name = os.path.splitext(os.path.basename(clip))[0]
    log, events = f"{OUT}/{name}.log", f"{OUT}/{name}.jsonl"
    if not os.path.exists(log):
        env = dict(os.environ, AVSENSE_LOG="avsense::speaker=debug")
        with open(log, "w") as err:
            subprocess.run([BIN, "run", "--input", clip, "--events", events, "--force", "-q"],
                           stderr=err, env=env, check=True)
    faces = {}
    for line in open(log):
        m = TICK.search(line)
        if m:
            head = float(m.group(3)) if m.group(3) else None
            vad = float(m.group(4)) if m.group(4) else None
            faces.setdefault(int(m.group(2)), {})[int(m.group(1))] = (head, vad)
    # Face track → left/right from the active_speaker events' boxes.
    side = {}
    for line in open(events):
        sp = json.loads(line)["evidence"].get("speaker")
        if sp:
            side[sp["face_track"]] = "left" if sp["bbox"][0] < 0.5 else "right"
    return name, faces, side


def auc(pos, neg):
    ranked = sorted([(x, 1) for x in pos] + [(x, 0) for x in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid = (i + j + 1) / 2
        rank_sum += mid * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def main():
    os.makedirs(OUT, exist_ok=True)
    labels = json.load(open(f"{TALK}/labels.json"))["clips"]
    clips = [f"{TALK}/{c}.mp4" for c in list(OWN) + ["person_a_dubbed"]]
    if not glob.glob("target/offscreen/*.mp4"):
        subprocess.run(["bash", "scripts/compose-offscreen.sh"], check=True, stdout=subprocess.DEVNULL)
    clips += sorted(glob.glob("target/offscreen/*.mp4"))
    windows = [("tick", None, 0)] + [("past", w, 3) for w in (12, 25, 50, 75, 100)] + \
        [("centred", w, w) for w in (25, 50, 100)]
    pos = {k: [] for k in windows}
    neg = {k: [] for k in windows}
    for clip in clips:
        name, faces, side = run(clip)
        for face, ticks in faces.items():
            where = OWN.get(name)
            if where == "left":
                where = "left" if side.get(face) == "left" else "right-of-own"
            own = name in OWN and where == OWN[name]
            spoken = labels.get(f"{name}.mp4", {}).get("faces", [])
            spans = [s for f in spoken if f["position"] == OWN.get(name) for s in f["speaking"]]
            for t, (head, vad) in ticks.items():
                if head is None or vad is None or vad < 0.5:
                    continue
                if own and not any(a <= (t + 0.5) * 0.04 < b for a, b in spans):
                    continue
                for k in windows:
                    _, back, ahead = k
                    back = back or 0
                    vals = [ticks[u][0] for u in range(t - back, t + ahead + 1)
                            if u in ticks and ticks[u][0] is not None
                            and ticks[u][1] is not None and ticks[u][1] >= 0.5]
                    (pos if own else neg)[k].append(sum(vals) / len(vals))
    print(f"own-voice speaking face-ticks {len(pos[windows[0]])}, off-screen face-ticks {len(neg[windows[0]])}")
    for k in windows:
        kind, w, ahead = k
        what = "per tick" if kind == "tick" else (
            f"mean over the past {w} ticks + {ahead} ahead" if kind == "past" else f"mean over ±{w} ticks")
        print(f"{what:40s} AUC {auc(pos[k], neg[k]):.3f}")


if __name__ == "__main__":
    sys.exit(main())
