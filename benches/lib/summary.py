"""Reads the run summary that `avsense run --json-summary` prints as the last JSON line on
stderr; shared by the bench scripts (import with sys.path.insert(0, "benches/lib"))."""
import json


def last_summary(path):
    """The last JSON object line of the log at `path`; SystemExit when there is none."""
    report = None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                pass
    if report is None:
        raise SystemExit(f"no JSON summary in {path}")
    return report


def detector(path):
    """The first stream's detector counters ({} when the detector did not run)."""
    return last_summary(path).get("streams", [{}])[0].get("detector") or {}
