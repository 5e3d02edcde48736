#!/usr/bin/env python3
"""Reference outputs of upstream Light-ASD (PyTorch, CPU) on a real talking-head clip.

Writes tests/reference/data/lightasd_one_face_speaking.json, read by tests/parity_mfcc.rs
(the MFCC front end, src/encode/mfcc.rs) and by the Light-ASD model's parity test.

Upstream model: Junhua-Liao/Light-ASD (MIT). Its code is NOT copied here: the script imports
`model.Model.ASD_Model` and `loss.lossAV` from a checkout given with --upstream, builds them
on the CPU (upstream's ASD.py calls .cuda(), so it is not used) and loads each weight file's
`model.*` keys into ASD_Model and its `lossAV.*` keys into lossAV (prefix stripped; nothing
else is touched; `lossV.*`, the visual-only training head, is not needed).

Set up (once; the versions below are the ones that made the committed JSON):
    python3 -m venv .cache/lightasd-venv                  # .cache/ is git-ignored
    .cache/lightasd-venv/bin/pip install torch==2.15.0 numpy==2.4.6 scipy==1.17.1 \\
        python_speech_features==0.6                       # = tests/reference/requirements-lightasd.txt
  PyPI's Linux torch wheel is the CUDA build (torch 2.15.0+cu132, 539 MB) and its shared
  libraries are linked against the CUDA runtime, cuBLAS, cuDNN, NCCL, ... (readelf: NEEDED
  libcudart.so.13 etc.), so `pip install --no-deps torch` does NOT import; with its nvidia-*
  dependencies the venv is 5.5 GB, installs in ~1 min 40 s here, and runs fine on a machine
  without a GPU (torch.cuda.is_available() is False; everything below runs on the CPU).
    mkdir -p /tmp/lightasd-upstream && git --git-dir=<mirror of Junhua-Liao/Light-ASD> \\
        archive ed38c232de5efe0261dbd68627c0ade7cdfe14eb | tar -x -C /tmp/lightasd-upstream
Needs `ffmpeg` on PATH (Debian 12 package ffmpeg 5.1) and ../shared beside the checkout.

Run (from the repository root; ~25 s on one core):
    .cache/lightasd-venv/bin/python tests/reference/lightasd_reference.py \\
        --upstream /tmp/lightasd-upstream --upstream-commit ed38c232de5efe0261dbd68627c0ade7cdfe14eb

Inputs (real data, decoded with ffmpeg run from the repository root with the relative paths
recorded in the JSON, so a test can regenerate the same bytes and check their sha256):
  * face crops: grayscale 112x112 uint8, one per video frame (-fps_mode passthrough; 153
    frames). The crop follows Light-ASD's demo (Columbia_test.py): from a face box of
    half-size bs = max(w, h)/2 and centre (mx, my), crop_video cuts y in [my-bs, my+1.8bs],
    x in [mx-1.4bs, mx+1.4bs] and resizes it to 224x224; evaluate_network keeps the centre
    112x112 of that, i.e. the source region y in [my-0.3bs, my+1.1bs], x in
    [mx-0.7bs, mx+0.7bs] (a 1.4bs square around the mouth). The head barely moves in this
    clip, so one fixed box is used for every frame (chosen by looking at frames 0, 40, 75,
    150: x 132..262, y 50..190, so bs = 70, crop 98x98 at (148, 99)). The model is
    sensitive to the framing: moving the region by 10 px or scaling it by 20 % moves the
    AVA model's mean score over the speech frames by up to +-1. The region is rounded to whole pixels for ffmpeg's crop filter and scaled
    bilinearly to 112x112. Gray is taken through rgb24 (`format=rgb24,format=gray`):
    upstream converts decoded BGR frames with cv2.COLOR_BGR2GRAY, i.e. full-range luma;
    ffmpeg's direct yuv420p->gray keeps the limited-range Y plane (36..214 here instead of
    33..212).
  * audio: 16 kHz mono s16le, as upstream's `ffmpeg ... -acodec pcm_s16le -ar 16000` +
    scipy wavfile.read give it (int16 samples).

MFCC exactly as upstream's evaluate_network:
    python_speech_features.mfcc(audio_int16, 16000, numcep=13, winlen=0.025, winstep=0.010)
on the raw int16 values (not normalised floats). The dtype does not matter (its
pre-emphasis computes signal[1:] - 0.97*signal[:-1] in float64, so int16 in == float64 of
the same values in; checked below, `int16_vs_float64_max_abs_diff`), but the SCALE does:
feeding x/32768 leaves c1..c12 unchanged and shifts c0 (log frame energy) by -2 ln 32768 =
-20.79, except in digitally silent frames where the eps floor takes over (checked below,
`normalised_float_input`).

Length handling as upstream's evaluate_network:
    length = min((nA - nA % 4) / 100, nV)    # nA MFCC frames, nV video frames
    audio = mfcc[:round(length * 100)];  video = faces[:round(length * 25)]
(upstream compares seconds with a frame count there — `nV` is not divided by 25 — so in
practice length = (nA - nA % 4) / 100 s. Here the audio track is 98304 samples (6.144 s,
AAC padding included), psf gives nA = 613 frames, length = 6.12 s, and the video's 153
frames are all used: T = 153, 4T = 612 MFCC frames.)

Model runs (per weight file; eval, torch.no_grad, float32, CPU, torch.set_num_threads(1)):
  * whole: the trimmed clip as one chunk (B = 1): per-frame score = lossAV.forward(out,
    labels=None), i.e. the lossAV.FC logit of class 1 (>= 0: speaking); and intermediates:
    audio front-end embedding (1, T, 128), visual front-end embedding (1, T, 128), BGRU
    output (T, 128) (after the reshape of forward_audio_visual_backend).
  * chunk: video frames 25..75 with MFCC frames 100..300 (2 s) as one chunk.
  * demo: Columbia_test.evaluate_network's scoring: for each duration d of its durationSet
    `{1,1,1,2,2,2,3,3,4,5,6}` — a Python set, so really {1,2,3,4,5,6} — the trimmed clip is
    cut into chunks of d seconds (the last one shorter) and scored chunk by chunk; the
    per-frame mean over durations is stored unrounded (upstream then rounds it to 0.1).

JSON layout (floats rounded to 7 significant digits):
  schema, generated_by, tools {python, torch, numpy, scipy, python_speech_features, ffmpeg},
  upstream {repo, commit, files_sha256 {path: sha256 of the imported upstream files}},
  weights {name: {file, sha256}},
  media ("talking/one_face_speaking.mp4", relative to ../shared/media),
  video {ffmpeg: argv (without the leading "ffmpeg"), cwd: "repository root", width, height,
         frames, sha256 (of the raw gray bytes), face_box {x0, y0, x1, y1, bs, mx, my},
         model_region {x0, y0, x1, y1} (exact, from the box), crop {w, h, x, y} (ffmpeg's)},
  audio {ffmpeg: argv, samples, sample_rate, sha256 (of the raw s16le bytes)},
  mfcc {call, params {...}, frames (nA, untrimmed, incl. psf's zero-padded last frame),
        values [nA][13] (the full untrimmed psf output), int16_vs_float64_max_abs_diff,
        normalised_float_input {c0_shift_expected, c0_max_abs_dev_from_shift,
        c1_c12_max_abs_diff, eps_frames}},
  trim {video_frames_decoded, mfcc_frames, length_s, T, mfcc_frames_used, rule},
  runs {weight name: {
        whole {T, scores [T], audio_embed, visual_embed, bgru},
        chunk {video_frames [25, 75], mfcc_frames [100, 300], scores [50]},
        demo {durations [1..6], mean_scores [T]}}},
  where each intermediate is {shape, digest {sum, sum_abs, max}, first [3][128], last [3][128]}.
"""

import argparse
import hashlib
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "reference", "data", "lightasd_one_face_speaking.json")
MEDIA = "talking/one_face_speaking.mp4"
MEDIA_ARG = "../shared/media/" + MEDIA  # relative to the repository root (ffmpeg's cwd)
WEIGHTS_DIR = os.path.join(ROOT, "..", "shared", "models", "lightasd")
WEIGHTS = ["pretrain_AVA_CVPR", "finetuning_TalkSet"]
SR = 16000
SIZE = 112
# The face box (pixels of the 360x360 frame; x0, y0, x1, y1), fixed for the clip: ear to
# ear x 132..262, hairline y 50 to just below the chin y 190, as a face detector frames it.
# bs = 70 and (mx, my) = (197, 120) make the model's region whole pixels: crop 98x98+148+99.
FACE_BOX = (132, 50, 262, 190)
CHUNK_VIDEO = (25, 75)
CHUNK_MFCC = (100, 300)
# Columbia_test.evaluate_network: `durationSet = {1,1,1,2,2,2,3,3,4,5,6}` is a set.
DEMO_DURATIONS = sorted({1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6})
UPSTREAM_FILES = ["model/Model.py", "model/Encoder.py", "model/Classifier.py", "loss.py"]


def r7(x):
    return float(f"{float(x):.7g}")


def rows(a):
    return [[r7(v) for v in row] for row in np.asarray(a)]


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def crop_geometry():
    x0, y0, x1, y1 = FACE_BOX
    bs = max(x1 - x0, y1 - y0) / 2
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    region = {"x0": mx - 0.7 * bs, "y0": my - 0.3 * bs, "x1": mx + 0.7 * bs, "y1": my + 1.1 * bs}
    side = math.floor(1.4 * bs + 0.5)
    crop = {"w": side, "h": side, "x": math.floor(region["x0"] + 0.5),
            "y": math.floor(region["y0"] + 0.5)}
    box = {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "bs": bs, "mx": mx, "my": my}
    return box, region, crop


def video_args(crop):
    vf = (f"crop={crop['w']}:{crop['h']}:{crop['x']}:{crop['y']},"
          f"scale={SIZE}:{SIZE}:flags=bilinear,format=rgb24,format=gray")
    return ["-nostdin", "-v", "error", "-i", MEDIA_ARG, "-an", "-vf", vf,
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"]


def audio_args():
    return ["-nostdin", "-v", "error", "-i", MEDIA_ARG, "-vn", "-ac", "1", "-ar", str(SR),
            "-f", "s16le", "-acodec", "pcm_s16le", "-"]


def ffmpeg(args):
    # From the repository root, so that the relative media path is the one the tests use.
    return subprocess.run(["ffmpeg"] + args, cwd=ROOT, check=True, capture_output=True).stdout


def ffmpeg_version():
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def upstream_commit(upstream, given):
    if given:
        return given
    if os.path.exists(os.path.join(upstream, ".git")):
        return subprocess.run(["git", "-C", upstream, "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    sys.exit(f"{upstream} is not a git work tree: pass --upstream-commit")


def load_model(torch, upstream, weights_path):
    """ASD_Model + lossAV from the upstream checkout, on the CPU, with the weights' keys."""
    sys.path.insert(0, upstream)
    Model = importlib.import_module("model.Model")
    loss = importlib.import_module("loss")
    model, head = Model.ASD_Model(), loss.lossAV()
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    parts = {"model.": {}, "lossAV.": {}}
    for k, v in state.items():
        for prefix, d in parts.items():
            if k.startswith(prefix):
                d[k[len(prefix):]] = v
    model.load_state_dict(parts["model."], strict=True)
    head.load_state_dict(parts["lossAV."], strict=True)
    return model.eval(), head.eval()


def stats(t, keep=3):
    a = t.detach().cpu().numpy().astype(np.float64)
    flat = a.reshape(-1, a.shape[-1])
    return {
        "shape": list(a.shape),
        "digest": {"sum": r7(a.sum()), "sum_abs": r7(np.abs(a).sum()), "max": r7(a.max())},
        "first": rows(flat[:keep]),
        "last": rows(flat[-keep:]),
    }


def forward(torch, model, head, mfcc, faces, with_intermediates=False):
    a = torch.FloatTensor(np.ascontiguousarray(mfcc)).unsqueeze(0)
    v = torch.FloatTensor(np.ascontiguousarray(faces)).unsqueeze(0)
    with torch.no_grad():
        embed_a = model.forward_audio_frontend(a)
        embed_v = model.forward_visual_frontend(v)
        out = model.forward_audio_visual_backend(embed_a, embed_v)
        scores = head.forward(out, labels=None)
    if not with_intermediates:
        return scores
    return scores, {"audio_embed": stats(embed_a), "visual_embed": stats(embed_v),
                    "bgru": stats(out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="checkout of Junhua-Liao/Light-ASD")
    ap.add_argument("--upstream-commit", default=None, help="its commit (when not a git tree)")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    upstream = os.path.abspath(args.upstream)
    for rel in UPSTREAM_FILES:
        if not os.path.exists(os.path.join(upstream, rel)):
            sys.exit(f"{upstream}: {rel} missing; is this a Light-ASD checkout?")

    import python_speech_features
    import scipy
    import torch

    torch.set_num_threads(1)
    started = time.time()

    # --- inputs -------------------------------------------------------------------------
    box, region, crop = crop_geometry()
    vargs = video_args(crop)
    raw_v = ffmpeg(vargs)
    frame_bytes = SIZE * SIZE
    if len(raw_v) % frame_bytes:
        sys.exit(f"ffmpeg gave {len(raw_v)} bytes, not a multiple of {frame_bytes}")
    faces = np.frombuffer(raw_v, dtype=np.uint8).reshape(-1, SIZE, SIZE).copy()
    print(f"video: {faces.shape[0]} face crops, sha256 {sha256_bytes(raw_v)[:16]}…")

    aargs = audio_args()
    raw_a = ffmpeg(aargs)
    audio = np.frombuffer(raw_a, dtype="<i2").astype(np.int16)  # as scipy's wavfile gives it
    print(f"audio: {audio.size} samples ({audio.size / SR:.3f} s)")

    # --- MFCC as upstream -----------------------------------------------------------------
    mfcc = python_speech_features.mfcc(audio, SR, numcep=13, winlen=0.025, winstep=0.010)
    as_f64 = python_speech_features.mfcc(audio.astype(np.float64), SR, numcep=13,
                                         winlen=0.025, winstep=0.010)
    normed = python_speech_features.mfcc(audio.astype(np.float64) / 32768.0, SR, numcep=13,
                                         winlen=0.025, winstep=0.010)
    shift = -2.0 * math.log(32768.0)
    eps_frames = int(np.sum(np.isclose(mfcc[:, 0], math.log(np.finfo(float).eps))))
    n_a = mfcc.shape[0]
    expected_frames = 1 + math.ceil((audio.size - 400) / 160)
    if n_a != expected_frames:
        sys.exit(f"psf gave {n_a} MFCC frames, framesig's rule says {expected_frames}")

    # --- trimming as Columbia_test.evaluate_network ------------------------------------------
    n_v = faces.shape[0]
    length = min((n_a - n_a % 4) / 100, n_v)
    mfcc_used = mfcc[: int(round(length * 100)), :]
    faces_used = faces[: int(round(length * 25)), :, :]
    t = faces_used.shape[0]
    if mfcc_used.shape[0] != 4 * t:
        sys.exit(f"trimmed to {mfcc_used.shape[0]} MFCC frames for {t} video frames")
    print(f"trim: length {length} s -> T = {t} video frames, {4 * t} MFCC frames")

    # --- model runs -----------------------------------------------------------------------
    runs, weights = {}, {}
    for name in WEIGHTS:
        path = os.path.join(WEIGHTS_DIR, name + ".model")
        weights[name] = {"file": os.path.basename(path), "sha256": sha256_file(path)}
        model, head = load_model(torch, upstream, path)
        scores, inter = forward(torch, model, head, mfcc_used, faces_used, True)
        (v0, v1), (a0, a1) = CHUNK_VIDEO, CHUNK_MFCC
        chunk = forward(torch, model, head, mfcc_used[a0:a1], faces_used[v0:v1])
        all_scores = []
        for d in DEMO_DURATIONS:
            per = []
            for i in range(int(math.ceil(length / d))):
                per.extend(forward(torch, model, head,
                                   mfcc_used[i * d * 100:(i + 1) * d * 100],
                                   faces_used[i * d * 25:(i + 1) * d * 25]))
            all_scores.append(per)
        demo = np.mean(np.array(all_scores), axis=0)
        runs[name] = {
            "whole": {"T": t, "scores": [r7(s) for s in scores], **inter},
            "chunk": {"video_frames": list(CHUNK_VIDEO), "mfcc_frames": list(CHUNK_MFCC),
                      "scores": [r7(s) for s in chunk]},
            "demo": {"durations": DEMO_DURATIONS, "mean_scores": [r7(s) for s in demo]},
        }
        speaking = int(np.sum(np.asarray(scores) >= 0))
        print(f"{name}: {speaking}/{t} frames speaking, scores {np.min(scores):.2f}.."
              f"{np.max(scores):.2f}")

    doc = {
        "schema": "avsense-lightasd-reference/1",
        "generated_by": "tests/reference/lightasd_reference.py",
        "tools": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python_speech_features": "0.6",
            "ffmpeg": ffmpeg_version(),
            "threads": 1,
        },
        "upstream": {
            "repo": "Junhua-Liao/Light-ASD",
            "commit": upstream_commit(upstream, args.upstream_commit),
            "files_sha256": {rel: sha256_file(os.path.join(upstream, rel))
                             for rel in UPSTREAM_FILES},
        },
        "weights": weights,
        "media": MEDIA,
        "video": {
            "ffmpeg": vargs, "cwd": "repository root", "width": SIZE, "height": SIZE,
            "frames": n_v, "sha256": sha256_bytes(raw_v),
            "face_box": box, "model_region": region, "crop": crop,
        },
        "audio": {"ffmpeg": aargs, "cwd": "repository root", "samples": int(audio.size),
                  "sample_rate": SR, "sha256": sha256_bytes(raw_a)},
        "mfcc": {
            "call": "python_speech_features.mfcc(audio_int16, 16000, numcep=13, "
                    "winlen=0.025, winstep=0.010)",
            "params": {"numcep": 13, "nfilt": 26, "nfft": 512, "winlen": 0.025,
                       "winstep": 0.01, "lowfreq": 0, "highfreq": 8000, "preemph": 0.97,
                       "ceplifter": 22, "appendEnergy": True, "window": "rectangular"},
            "frames": n_a,
            "values": rows(mfcc),
            "int16_vs_float64_max_abs_diff": float(np.abs(mfcc - as_f64).max()),
            "normalised_float_input": {
                "what": "psf on int16/32768 vs on int16",
                "c0_shift_expected": shift,
                "c0_max_abs_dev_from_shift": float(np.abs(normed[:, 0] - mfcc[:, 0] - shift).max()),
                "c1_c12_max_abs_diff": float(np.abs(normed[:, 1:] - mfcc[:, 1:]).max()),
                "eps_frames": eps_frames,
            },
        },
        "trim": {
            "video_frames_decoded": n_v, "mfcc_frames": n_a, "length_s": length, "T": t,
            "mfcc_frames_used": 4 * t,
            "rule": "length = min((nA - nA % 4) / 100, nV); mfcc[:round(100 length)], "
                    "video[:round(25 length)] (Columbia_test.evaluate_network)",
        },
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB) "
          f"in {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
