#!/usr/bin/env python3
"""Reference MFCC of python_speech_features 0.6 on a synthetic signal defined by a formula.

Writes tests/reference/data/mfcc_synthetic.json, read by the unit tests of
src/encode/mfcc.rs, which generate the same signal in Rust (`synthetic_signal` there).

Set up: the environment of tests/reference/lightasd_reference.py (numpy 2.4.6, scipy
1.17.1, python_speech_features 0.6; torch is not needed here):
    python3 -m venv .cache/lightasd-venv
    .cache/lightasd-venv/bin/pip install numpy==2.4.6 scipy==1.17.1 python_speech_features==0.6
Run (from the repository root):
    .cache/lightasd-venv/bin/python tests/reference/mfcc_reference.py

The signal (int16 values, 16 kHz; N = 20077 samples, so psf's last frame is zero-padded):
    t = n / 16000
    lcg[0] = 12345, lcg[n+1] = (1103515245 lcg[n] + 12345) mod 2^31, noise = lcg[n] / 2^30 - 1
    env = 0.6 + 0.4 sin(2 pi 1.5 t)
    x = env (0.30 sin(2 pi 440 t) + 0.20 sin(2 pi 1234.5 t + 0.5)
             + 0.15 sin(2 pi (200 t + 1500 t^2))) + 0.05 noise
    x *= 0.001 for 15000 <= n < 16000          (a quiet stretch, ~20 LSB)
    x  = 0     for n < 800 or 9600 <= n < 10400 (digital silence: psf's eps floor)
    s[n] = clamp(floor(32767 x + 0.5), -32768, 32767)
The Rust side feeds s[n] / 32768 as f32 (exact), as our pipeline's audio would be.

MFCC as Light-ASD calls it: python_speech_features.mfcc(s_int16, 16000, numcep=13,
winlen=0.025, winstep=0.010), i.e. numcep 13, nfilt 26, nfft 512, preemph 0.97, ceplifter
22, appendEnergy, rectangular window. Also the prefixes of lengths SHORT (starting at
sample 2000) to check psf's framing of short inputs (one zero-padded frame when len <= 400).

JSON: {generated_by, tools, signal {samples, sum, sum_sq, first_nonzero}, bins (psf's 28
filterbank bin edges), mfcc [frames][13] (float64 as repr), short [{offset, len, mfcc}]}.
"""

import json
import math
import os
import platform

import numpy as np
import python_speech_features as psf
import scipy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "reference", "data", "mfcc_synthetic.json")
SR = 16000
N = 20077
SHORT = [1, 250, 400, 401, 559, 560, 561]
SHORT_OFFSET = 2000


def synthetic_signal(n_samples=N):
    """The formula of the header, sample by sample (plain Python floats, as Rust's f64)."""
    out = []
    lcg = 12345
    for n in range(n_samples):
        t = n / SR
        noise = lcg / 2.0**30 - 1.0
        lcg = (1103515245 * lcg + 12345) % 2**31
        env = 0.6 + 0.4 * math.sin(2 * math.pi * 1.5 * t)
        x = env * (0.30 * math.sin(2 * math.pi * 440 * t)
                   + 0.20 * math.sin(2 * math.pi * 1234.5 * t + 0.5)
                   + 0.15 * math.sin(2 * math.pi * (200 * t + 1500 * t * t))) + 0.05 * noise
        if 15000 <= n < 16000:
            x *= 0.001
        if n < 800 or 9600 <= n < 10400:
            x = 0.0
        out.append(max(-32768, min(32767, math.floor(32767 * x + 0.5))))
    return np.array(out, dtype=np.int16)


def mfcc(sig):
    return psf.mfcc(sig, SR, numcep=13, winlen=0.025, winstep=0.010)


def main():
    sig = synthetic_signal()
    melpoints = np.linspace(psf.base.hz2mel(0), psf.base.hz2mel(SR / 2), 26 + 2)
    bins = np.floor((512 + 1) * psf.base.mel2hz(melpoints) / SR).astype(int)
    doc = {
        "generated_by": "tests/reference/mfcc_reference.py",
        "tools": {"python": platform.python_version(), "numpy": np.__version__,
                  "scipy": scipy.__version__, "python_speech_features": "0.6"},
        "signal": {"samples": int(sig.size), "sum": int(sig.astype(np.int64).sum()),
                   "sum_sq": int((sig.astype(np.int64) ** 2).sum()),
                   "first_nonzero": [int(v) for v in sig[800:808]]},
        "bins": [int(b) for b in bins],
        "mfcc": [[float(v) for v in row] for row in mfcc(sig)],
        "short": [{"offset": SHORT_OFFSET, "len": k,
                   "mfcc": [[float(v) for v in row]
                            for row in mfcc(sig[SHORT_OFFSET:SHORT_OFFSET + k])]}
                  for k in SHORT],
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(doc['mfcc'])} frames, {os.path.getsize(OUT) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
