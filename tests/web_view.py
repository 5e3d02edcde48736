#!/usr/bin/env python3
"""Drives headless Chromium through chromedriver (the W3C WebDriver protocol, Python's
standard library only) to avsense's live view, for tests/web_view.rs.

    web_view.py DRIVER_URL PAGE_URL SCREENSHOT.png [TIMEOUT_S]

Opens PAGE_URL, waits until the page lists at least 3 events and a stream's picture has
changed at least 3 times, saves a screenshot, and prints one JSON object on stdout:
{"events": N, "kinds": [...], "frames_first": A, "frames_last": B, "streams": [...],
"status": "...", "waited_s": S}. Exits 1 (with the same JSON plus "error") on a timeout.
"""
import base64
import json
import sys
import time
import urllib.request


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read().decode())["value"]


def main():
    driver, page, shot = sys.argv[1], sys.argv[2], sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 90.0
    caps = {"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,820"],
        },
    }}}
    session = call("POST", f"{driver}/session", caps)["sessionId"]
    base = f"{driver}/session/{session}"
    probe = """
        const imgs = [...document.querySelectorAll('img[id^="frame-"]')];
        return {
          events: document.querySelectorAll('#events li.event').length,
          kinds: [...new Set([...document.querySelectorAll('#events li.event')].map(li => li.dataset.kind))],
          frames: imgs.map(i => Number(i.dataset.frames || 0)),
          streams: imgs.map(i => i.id.slice(6)),
          status: document.getElementById('status').textContent,
        };
    """
    out = {}
    try:
        call("POST", f"{base}/url", {"url": page})
        t0 = time.time()
        first = None
        while True:
            s = call("POST", f"{base}/execute/sync", {"script": probe, "args": []})
            frames = max(s["frames"] or [0])
            if first is None and s["frames"]:
                first = frames
            out = {"events": s["events"], "kinds": s["kinds"], "frames_first": first,
                   "frames_last": frames, "streams": s["streams"], "status": s["status"],
                   "waited_s": round(time.time() - t0, 1)}
            if s["events"] >= 3 and first is not None and frames >= first + 3:
                break
            if time.time() - t0 > timeout:
                out["error"] = "timed out waiting for 3 events and 3 new pictures"
                break
            time.sleep(0.5)
        # Let the timeline redraw with what is listed, then take the picture.
        time.sleep(1.2)
        png = base64.b64decode(call("GET", f"{base}/screenshot"))
        with open(shot, "wb") as f:
            f.write(png)
    finally:
        try:
            call("DELETE", base)
        except Exception:  # the session may be gone already
            pass
    print(json.dumps(out))
    sys.exit(1 if "error" in out else 0)


if __name__ == "__main__":
    main()
