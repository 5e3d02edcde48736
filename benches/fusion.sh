#!/usr/bin/env bash
# The fusion strategies on the dev clip: the eval table of each (rules, gnn, attention,
# concat, off) and the cost of each against `off` (wall time of the whole run, every
# encoder, RUNS runs each, alternating). Run from the repository root with ../shared beside
# it and the models fetched:
#
#     bash benches/fusion.sh          # RUNS=3
#     TABLES= bash benches/fusion.sh  # the cost only
#
# Target (issue): fusion adds <= 5 % to end-to-end time on the dev clip.
set -euo pipefail
RUNS=${RUNS:-3}
CLIP=../shared/media/av/person_sounds_dev.mp4
LABELS=../shared/media/av/person_sounds_dev.json
BIN=target/release/avsense
[ -f "$CLIP" ] || { echo "fusion: $CLIP not found (../shared beside the checkout?)" >&2; exit 1; }
cargo build --release --locked -q
for s in ${TABLES-rules gnn attention concat off}; do
  echo "### --fusion $s"
  "$BIN" eval "$CLIP" "$LABELS" --fusion "$s"
  echo
done
echo "### cost (wall seconds of \`avsense eval\`, $RUNS runs each, alternating)"
for r in $(seq "$RUNS"); do
  for s in off rules gnn attention concat; do
    t0=$(date +%s.%N)
    "$BIN" eval "$CLIP" "$LABELS" --fusion "$s" --json >/dev/null
    t1=$(date +%s.%N)
    echo "$s $(python3 -c "print(f'{$t1-$t0:.3f}')")"
  done
done | python3 -c '
import sys, statistics
t = {}
for line in sys.stdin:
    s, v = line.split()
    t.setdefault(s, []).append(float(v))
base = statistics.median(t["off"])
print("| strategy | wall s (runs) | median | vs off |")
print("|---|---|---|---|")
for s, v in t.items():
    m = statistics.median(v)
    runs = " / ".join("%.2f" % x for x in v)
    print("| %s | %s | %.2f | %+.1f %% |" % (s, runs, m, 100 * (m / base - 1)))
'
