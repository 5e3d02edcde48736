//! The face encoder: faces detected, tracked, tied to the person track they belong to, and
//! cropped the way the active-speaker model (Light-ASD) reads them, at its 25 fps.
//!
//! Per frame:
//! 1. On the frames that are due (`[speaker] face_fps`, 0 = every frame; [`Schedule`]) a
//!    [`FaceDetector`] (BlazeFace) finds faces; a ByteTrack-style [`Tracker`] of its own
//!    gives them stable ids (face ids are their own namespace, apart from object tracks).
//! 2. Each face keeps a smoothed box (exponential moving average of centre and size, so
//!    the crops do not jitter with the detector's few pixels of noise; upstream smooths
//!    with a 13-frame median filter, which needs 6 frames of look-ahead). A face missed by
//!    the detector keeps its last box for `hold` seconds, then its crop sequence ends.
//! 3. Each face is tied to the person track (COCO `person`, from the object encoder that
//!    runs before this one on the same frames) whose box holds the face's centre — the
//!    smallest such box.
//! 4. Crops ([`CropMode`]), sampled straight into 112×112 (bilinear, gray = 0.299 R +
//!    0.587 G + 0.114 B as OpenCV's `BGR2GRAY`; outside the frame the value upstream pads
//!    with, 110). `columbia`: Light-ASD's own demo pipeline (Columbia_test.py) frames a face
//!    box of half-size `bs` and centre `(mx, my)` by a square of side `2·bs·(1 + cs)`
//!    reaching from `my − bs` down (`cs` = `crop_scale`, 0.4), resizes it to 224², converts
//!    to gray and feeds the centre 112²: the square of side `bs·(1 + cs)` centred at
//!    `(mx, my + cs·bs)`, mouth-centred. `box`: the face box itself, stretched to 112², as
//!    the AVA training crops were cut.
//! 5. Frame-rate resampling: the model reads 25 fps. Each frame stands for the 25 fps
//!    ticks `k` (time `k × 40 ms`) it is the nearest frame of ([`Faces::ticks`]):
//!    one tick per frame at 25 fps, every other 30 fps frame dropped… every 10 fps frame
//!    repeated 2–3 times. Crops are made only for frames that stand for a tick.

use super::objects::{Schedule, Tracks};
use super::tracker::{Detection, Tracker, TrackerConfig};
use crate::core::clock::{Duration, Timestamp};
use crate::core::features::VisionFeatures;
use crate::core::media::{Frame, PixelFormat, VideoSpec};
use crate::encode::{EncodeError, StreamInfo, VideoEncoder, VideoEncoderKind};
use avsense_nn::models::blazeface::BlazeFace;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Side of a face crop, pixels.
pub const CROP: usize = avsense_nn::models::lightasd::CROP;
/// The active-speaker model's frame period (25 fps), nanoseconds.
pub const TICK_NS: u64 = 40_000_000;
/// The gray value outside the frame (upstream pads its frames with 110).
const PAD_VALUE: f32 = 110.0;
/// COCO class id of `person`.
const PERSON: usize = 0;

/// A face found in one frame, in the frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    /// `[x0, y0, x1, y1]`, pixels.
    pub bbox: [f32; 4],
    /// Detection score, 0–1.
    pub score: f32,
}

/// A batch face detector.
pub trait FaceDetector: Send {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;
    /// Faces per frame (RGB frames), boxes in each frame's pixels.
    fn detect(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<FaceBox>>, EncodeError>;
}

/// One face in one frame.
#[derive(Debug, Clone)]
pub struct FaceObservation {
    /// Face track id (stable for the life of the track; its own namespace).
    pub track_id: u64,
    /// The person track (object tracker id) the face belongs to, if one holds it.
    pub person: Option<u64>,
    /// The smoothed box, normalised to the frame (`[x0, y0, x1, y1]` in 0–1).
    pub bbox: [f32; 4],
    /// Score of the last detection matched to the track.
    pub score: f32,
    /// Whether a detection matched the track in this frame (false: its box was held).
    pub detected: bool,
    /// The 112×112 gray crop (row-major) for the ticks of this frame; None when the frame
    /// stands for no tick.
    pub crop: Option<Arc<[u8]>>,
    /// Mouth motion: mean absolute change of the crop's mouth window
    /// ([`CropMode::mouth_window`]) since the face's previous crop, gray levels; None for a
    /// face's first crop (or after a gap) and for frames without a crop.
    pub mouth_motion: Option<f32>,
}

/// The face encoder's result for one frame.
#[derive(Debug, Clone, Default)]
pub struct Faces {
    /// Face tracks in this frame with their active-speaker crops.
    pub faces: Vec<FaceObservation>,
    /// The 25 fps ticks (`k` stands for `k × 40 ms`) this frame is the nearest frame of:
    /// one per frame at 25 fps, none or several at other rates (the face crops are
    /// resampled to the active-speaker model's rate this way).
    pub ticks: std::ops::Range<u64>,
}

/// Face encoder settings (`[speaker]` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceConfig {
    /// Face detections per second of video while faces are in view (0: every frame).
    pub fps: f64,
    /// Face detections per second while none is (0: every frame): looking for faces costs
    /// less than following them.
    pub idle_fps: f64,
    /// How the face box becomes the crop.
    pub crop: CropMode,
    /// Upstream's `cropScale`: how much of the face's surroundings the crop takes
    /// ([`CropMode::Columbia`]).
    pub crop_scale: f32,
    /// Scale applied to the detector's box before cropping (about its centre): lets a
    /// detector whose boxes are tighter or looser than the training data's be matched.
    pub box_scale: f32,
    /// Seconds a face missed by the detector keeps its last box.
    pub hold: f64,
    /// Weight of the newest detection in the smoothed box (1: no smoothing).
    pub smoothing: f32,
    /// Most faces cropped per frame (the largest win).
    pub max_faces: usize,
    /// Smallest face cropped, as a fraction of the frame's width.
    pub min_size: f32,
    /// The face tracker.
    pub tracker: TrackerConfig,
}

impl Default for FaceConfig {
    fn default() -> Self {
        Self {
            fps: 0.0,
            idle_fps: 0.0,
            crop: CropMode::Columbia,
            crop_scale: 0.4,
            box_scale: 1.0,
            hold: 0.25,
            smoothing: 0.5,
            max_faces: 4,
            min_size: 0.03,
            tracker: TrackerConfig {
                high_score: 0.5,
                low_score: 0.3,
                new_track_score: 0.5,
                match_iou: 0.3,
                low_match_iou: 0.3,
                min_hits: 2,
                lost_timeout: 1.0,
            },
        }
    }
}

/// Counters of the face encoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct FaceStats {
    /// Frames the face detector ran on.
    pub detected_frames: u64,
    /// Faces it found (before tracking).
    pub detections: u64,
    /// Crops made (one per face per frame that stands for a tick).
    pub crops: u64,
    /// Faces left out because more than `max_faces` were in a frame.
    pub capped: u64,
}

/// A face's running state.
#[derive(Debug, Clone)]
struct FaceState {
    /// Smoothed centre and half-width / half-height, pixels of the analysis frame.
    cx: f32,
    cy: f32,
    hw: f32,
    hh: f32,
    /// Smoothed velocity of the centre, pixels per second (boxes between detections move
    /// with it).
    vx: f32,
    vy: f32,
    score: f32,
    last_seen: f64,
    /// The previous crop, for the mouth motion.
    last_crop: Option<Arc<[u8]>>,
}

/// Detector + tracker + crops as a [`VideoEncoder`].
pub struct FaceEncoder {
    detector: Box<dyn FaceDetector>,
    tracker: Tracker,
    cfg: FaceConfig,
    schedule: Schedule,
    /// The schedule's rates: (while faces are in view, while none is).
    intervals: (Duration, Duration),
    /// Whether the schedule runs at the in-view rate.
    active: bool,
    /// Faces the last detection found (before tracking).
    last_found: usize,
    faces: BTreeMap<u64, FaceState>,
    next_tick: Option<u64>,
    width: u32,
    stats: Arc<std::sync::Mutex<FaceStats>>,
}

impl FaceEncoder {
    /// Crops the faces `detector` finds; frames come `width` pixels wide (RGB).
    pub fn new(detector: Box<dyn FaceDetector>, cfg: FaceConfig, width: u32) -> Self {
        let every = |fps: f64| {
            if fps > 0.0 {
                Duration::from_secs_f64(1.0 / fps)
            } else {
                Duration(0)
            }
        };
        let intervals = (every(cfg.fps), every(cfg.idle_fps));
        // Between detections every face is held: the hold must outlast the interval.
        let mut cfg = cfg;
        if cfg.fps > 0.0 {
            cfg.hold = cfg.hold.max(1.5 / cfg.fps);
        }
        Self {
            detector,
            tracker: Tracker::new(cfg.tracker),
            cfg,
            schedule: Schedule::new(intervals.1),
            intervals,
            active: false,
            last_found: 0,
            faces: BTreeMap::new(),
            next_tick: None,
            width,
            stats: Arc::default(),
        }
    }

    /// A handle on the counters (read them after the stage has ended).
    pub fn stats(&self) -> Arc<std::sync::Mutex<FaceStats>> {
        Arc::clone(&self.stats)
    }

    /// The 25 fps ticks the frame at `pts` lasting `dur` is the nearest frame of.
    fn ticks_of(&mut self, pts: Timestamp, dur: Duration) -> std::ops::Range<u64> {
        let half = dur.0 / 2;
        let lo = pts.0.saturating_sub(half).div_ceil(TICK_NS);
        let hi = (pts.0 + dur.0 - half).div_ceil(TICK_NS);
        // Ticks already given to the previous frame stay with it (irregular durations).
        let lo = self.next_tick.map_or(lo, |n| lo.max(n));
        let hi = hi.max(lo);
        if hi > lo {
            self.next_tick = Some(hi);
        }
        lo..hi
    }

    /// Updates the face states with this frame's matched tracks (pixels).
    fn update_faces(&mut self, tracks: &[super::tracker::TrackedObject], t: f64) {
        let a = self.cfg.smoothing.clamp(0.0, 1.0);
        for tr in tracks {
            let b = tr.bbox;
            let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            let (hw, hh) = (
                ((b[2] - b[0]) / 2.0).max(0.0),
                ((b[3] - b[1]) / 2.0).max(0.0),
            );
            let s = self.faces.entry(tr.track_id).or_insert(FaceState {
                cx,
                cy,
                hw,
                hh,
                vx: 0.0,
                vy: 0.0,
                score: tr.score,
                last_seen: t,
                last_crop: None,
            });
            // A face seen again after its hold ran out starts from its new box.
            let fresh = t - s.last_seen > self.cfg.hold;
            if fresh {
                s.last_crop = None;
                s.vx = 0.0;
                s.vy = 0.0;
            }
            let w = if fresh { 1.0 } else { a };
            let dt = (t - s.last_seen) as f32;
            let (px, py) = (s.cx + s.vx * dt, s.cy + s.vy * dt);
            let (nx, ny) = (px + w * (cx - px), py + w * (cy - py));
            if dt > 1e-4 && !fresh {
                s.vx = 0.5 * s.vx + 0.5 * (nx - s.cx) / dt;
                s.vy = 0.5 * s.vy + 0.5 * (ny - s.cy) / dt;
            }
            s.cx = nx;
            s.cy = ny;
            s.hw += w * (hw - s.hw);
            s.hh += w * (hh - s.hh);
            s.score = tr.score;
            s.last_seen = t;
        }
        let horizon = self.cfg.tracker.lost_timeout.max(self.cfg.hold);
        self.faces.retain(|_, s| t - s.last_seen <= horizon);
    }
}

/// Bilinear gray sample at `(x, y)` (pixel-centre coordinates) of an RGB frame; outside
/// the frame, [`PAD_VALUE`].
fn gray_at(frame: &Frame, x: f32, y: f32) -> f32 {
    let (w, h) = (frame.width as i64, frame.height as i64);
    let data = frame.data();
    let px = |xi: i64, yi: i64| -> f32 {
        if xi < 0 || yi < 0 || xi >= w || yi >= h {
            return PAD_VALUE;
        }
        let o = yi as usize * frame.stride + xi as usize * 3;
        match data.get(o..o + 3) {
            Some(p) => 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]),
            None => PAD_VALUE,
        }
    };
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (xi, yi) = (x0 as i64, y0 as i64);
    let top = px(xi, yi) * (1.0 - fx) + px(xi + 1, yi) * fx;
    let bottom = px(xi, yi + 1) * (1.0 - fx) + px(xi + 1, yi + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// How a face box becomes the model's input square.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// The face box itself, stretched to 112×112: how Light-ASD's AVA training data was
    /// cut (`utils/tools.py` `extract_video_clips`: `frame[y1:y2, x1:x2]`, resized).
    Box,
    /// Light-ASD's demo framing (Columbia_test.py, also TalkSet's): the square of side
    /// `bs·(1 + cs)` centred at `(mx, my + cs·bs)`, `bs` half the box's longer side.
    #[default]
    Columbia,
}

impl CropMode {
    /// Where the mouth lies in this mode's crop, `[x0, y0, x1, y1]` as fractions of the
    /// crop: in a face box (BlazeFace: brows to chin) the mouth is at about 75–85 % of the
    /// height; in the Columbia square (from `my − 0.3·bs` to `my + 1.1·bs`) at about 60 %.
    pub fn mouth_window(self) -> [f32; 4] {
        match self {
            CropMode::Box => [0.25, 0.60, 0.75, 0.95],
            CropMode::Columbia => [0.20, 0.40, 0.80, 0.85],
        }
    }
}

/// Mean absolute difference of two crops inside `window` (fractions of the crop).
pub fn window_change(a: &[u8], b: &[u8], window: [f32; 4]) -> Option<f32> {
    if a.len() != CROP * CROP || b.len() != CROP * CROP {
        return None;
    }
    let px = |f: f32| ((f * CROP as f32).round() as usize).min(CROP);
    let (x0, y0, x1, y1) = (px(window[0]), px(window[1]), px(window[2]), px(window[3]));
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in y0..y1 {
        let (ra, rb) = (
            &a[y * CROP + x0..y * CROP + x1],
            &b[y * CROP + x0..y * CROP + x1],
        );
        for (p, q) in ra.iter().zip(rb) {
            sum += u64::from(p.abs_diff(*q));
            n += 1;
        }
    }
    (n > 0).then(|| sum as f32 / n as f32)
}

/// The source region `(left, top, width, height)` (pixels) of a face at centre `(cx, cy)`
/// with half-width `hw` and half-height `hh`, `cs` = crop scale.
pub fn crop_region(mode: CropMode, cx: f32, cy: f32, hw: f32, hh: f32, cs: f32) -> [f32; 4] {
    match mode {
        CropMode::Box => [cx - hw, cy - hh, 2.0 * hw, 2.0 * hh],
        CropMode::Columbia => {
            let bs = hw.max(hh);
            let side = bs * (1.0 + cs);
            [cx - side / 2.0, cy + cs * bs - side / 2.0, side, side]
        }
    }
}

/// The model's 112×112 gray crop of the source region `[left, top, width, height]`
/// (pixels; see [`crop_region`]): bilinear, gray as OpenCV's `BGR2GRAY`, `PAD_VALUE`
/// outside the frame.
pub fn crop_face(frame: &Frame, region: [f32; 4]) -> Vec<u8> {
    let [left, top, w, h] = region;
    let (sx, sy) = (w / CROP as f32, h / CROP as f32);
    let mut out = vec![0u8; CROP * CROP];
    for (v, row) in out.chunks_exact_mut(CROP).enumerate() {
        // Edge coordinates → pixel-centre coordinates: − 0.5.
        let y = top + (v as f32 + 0.5) * sy - 0.5;
        for (u, p) in row.iter_mut().enumerate() {
            let x = left + (u as f32 + 0.5) * sx - 0.5;
            *p = gray_at(frame, x, y).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// The person track whose box holds the face's centre (the smallest such box), boxes
/// normalised.
fn person_of(face: &[f32; 4], objects: &[super::tracker::TrackedObject]) -> Option<u64> {
    let (cx, cy) = ((face[0] + face[2]) / 2.0, (face[1] + face[3]) / 2.0);
    objects
        .iter()
        .filter(|o| o.class_id == PERSON)
        .filter(|o| o.bbox[0] <= cx && cx <= o.bbox[2] && o.bbox[1] <= cy && cy <= o.bbox[3])
        .min_by(|a, b| {
            let area = |o: &super::tracker::TrackedObject| {
                (o.bbox[2] - o.bbox[0]) * (o.bbox[3] - o.bbox[1])
            };
            area(a).total_cmp(&area(b))
        })
        .map(|o| o.track_id)
}

impl VideoEncoder for FaceEncoder {
    fn name(&self) -> &'static str {
        self.detector.name()
    }

    fn input_spec(&self) -> VideoSpec {
        VideoSpec {
            width: self.width,
            height: None,
            format: PixelFormat::Rgb,
        }
    }

    fn encode(&mut self, frames: &[Frame], out: &mut [VisionFeatures]) -> Result<(), EncodeError> {
        let bad = |f: &Frame, reason: String| EncodeError::BadInput {
            encoder: "faces",
            stream: f.stream.to_string(),
            pts: f.pts,
            reason,
        };
        // In-view rate while a face is tracked or was just found, idle rate otherwise; a
        // change of rate makes the next frame due.
        let active = !self.faces.is_empty() || self.last_found > 0;
        if active != self.active {
            self.active = active;
            let interval = if active {
                self.intervals.0
            } else {
                self.intervals.1
            };
            self.schedule = Schedule::new(interval);
        }
        let mut due = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if f.format != PixelFormat::Rgb {
                return Err(bad(f, format!("{:?} frame, expected RGB", f.format)));
            }
            if self.schedule.take_if_due(f.pts, f.duration) {
                due.push(i);
            }
        }
        let dets = if due.is_empty() {
            Vec::new()
        } else {
            let batch: Vec<&Frame> = due.iter().map(|&i| &frames[i]).collect();
            self.detector.detect(&batch)?
        };
        if dets.len() != due.len() {
            let f = &frames[due.first().copied().unwrap_or(0)];
            return Err(bad(
                f,
                format!("{} results for {} frames", dets.len(), due.len()),
            ));
        }
        let mut stats = FaceStats::default();
        let mut dets = dets.into_iter();
        let mut next_due = due.iter().copied().peekable();
        for (i, (frame, feats)) in frames.iter().zip(out.iter_mut()).enumerate() {
            let t = frame.pts.as_secs_f64();
            let (w, h) = (frame.width.max(1) as f32, frame.height.max(1) as f32);
            if next_due.peek() == Some(&i) {
                next_due.next();
                let found = dets.next().unwrap_or_default();
                self.last_found = found.len();
                stats.detected_frames += 1;
                stats.detections += found.len() as u64;
                let boxes: Vec<Detection> = found
                    .iter()
                    .filter(|f| (f.bbox[2] - f.bbox[0]) >= self.cfg.min_size * w)
                    .map(|f| Detection {
                        class_id: 0,
                        score: f.score,
                        bbox: f.bbox,
                        embedding: None,
                    })
                    .collect();
                // Face appear/leave changes are not reported as `object` events.
                let mut changes = Vec::new();
                let tracks = self.tracker.update(&boxes, t, &mut changes);
                self.update_faces(&tracks, t);
            }
            let ticks = self.ticks_of(frame.pts, frame.duration);
            // Faces seen within `hold`, largest first, at most `max_faces`.
            let mut live: Vec<(u64, FaceState)> = self
                .faces
                .iter()
                .filter(|(_, s)| t - s.last_seen <= self.cfg.hold && s.hw > 0.0 && s.hh > 0.0)
                .map(|(&id, s)| (id, s.clone()))
                .collect();
            live.sort_by(|a, b| {
                (b.1.hw * b.1.hh)
                    .total_cmp(&(a.1.hw * a.1.hh))
                    .then(a.0.cmp(&b.0))
            });
            if live.len() > self.cfg.max_faces {
                stats.capped += (live.len() - self.cfg.max_faces) as u64;
                live.truncate(self.cfg.max_faces);
            }
            live.sort_by_key(|f| f.0);
            // Between detections a face moves on with its velocity.
            for (_, s) in live.iter_mut() {
                let dt = (t - s.last_seen) as f32;
                s.cx += s.vx * dt;
                s.cy += s.vy * dt;
            }
            let (mode, cs) = (self.cfg.crop, self.cfg.crop_scale);
            let mouth = mode.mouth_window();
            let mut crops_now: Vec<(u64, Arc<[u8]>)> = Vec::new();
            let objects = Tracks::objects_of(feats);
            let faces: Vec<FaceObservation> = live
                .into_iter()
                .map(|(id, s)| {
                    let bbox = [
                        ((s.cx - s.hw) / w).clamp(0.0, 1.0),
                        ((s.cy - s.hh) / h).clamp(0.0, 1.0),
                        ((s.cx + s.hw) / w).clamp(0.0, 1.0),
                        ((s.cy + s.hh) / h).clamp(0.0, 1.0),
                    ];
                    let k = self.cfg.box_scale;
                    let region = crop_region(mode, s.cx, s.cy, k * s.hw, k * s.hh, cs);
                    let crop: Option<Arc<[u8]>> =
                        (!ticks.is_empty()).then(|| Arc::from(crop_face(frame, region)));
                    stats.crops += u64::from(crop.is_some());
                    let mouth_motion = match (&crop, &s.last_crop) {
                        (Some(c), Some(prev)) => window_change(c, prev, mouth),
                        _ => None,
                    };
                    if let Some(c) = &crop {
                        crops_now.push((id, Arc::clone(c)));
                    }
                    FaceObservation {
                        track_id: id,
                        person: person_of(&bbox, objects),
                        bbox,
                        score: s.score,
                        detected: (s.last_seen - t).abs() < 1e-9,
                        crop,
                        mouth_motion,
                    }
                })
                .collect();
            feats.ext.insert(Faces { faces, ticks });
            for (id, c) in crops_now {
                if let Some(s) = self.faces.get_mut(&id) {
                    s.last_crop = Some(c);
                }
            }
        }
        if let Ok(mut s) = self.stats.lock() {
            s.detected_frames += stats.detected_frames;
            s.detections += stats.detections;
            s.crops += stats.crops;
            s.capped += stats.capped;
        }
        Ok(())
    }
}

impl FaceDetector for BlazeFace {
    fn name(&self) -> &'static str {
        "blazeface"
    }

    fn detect(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<FaceBox>>, EncodeError> {
        use avsense_nn::models::nanodet::RgbImage;
        let images: Vec<RgbImage<'_>> = frames
            .iter()
            .map(|f| RgbImage {
                width: f.width as usize,
                height: f.height as usize,
                stride: f.stride,
                data: f.data(),
            })
            .collect();
        let found = BlazeFace::detect(self, &images).map_err(|e| {
            let index = match &e {
                avsense_nn::models::blazeface::BlazeFaceError::Input { index, .. } => *index,
                _ => 0,
            };
            let f = frames.get(index).or(frames.first());
            EncodeError::BadInput {
                encoder: "blazeface",
                stream: f.map(|f| f.stream.to_string()).unwrap_or_default(),
                pts: f.map(|f| f.pts).unwrap_or_default(),
                reason: e.to_string(),
            }
        })?;
        Ok(found
            .into_iter()
            .map(|faces| {
                faces
                    .into_iter()
                    .map(|d| FaceBox {
                        bbox: d.bbox,
                        score: d.score,
                    })
                    .collect()
            })
            .collect())
    }
}

/// The face encoder with BlazeFace, as the pipeline registers it (when the active speaker
/// runs): the model loaded once, shared by every stream's [`FaceEncoder`]. Each stream's
/// encoder publishes its [`FaceStats`] in the stream's counters.
pub struct FacesKind {
    model: BlazeFace,
    cfg: FaceConfig,
    width: u32,
}

impl FacesKind {
    /// The kind for a loaded BlazeFace; `width`: the width of the frames the crops are cut
    /// from (at least the detector's).
    pub fn new(model: BlazeFace, cfg: FaceConfig, width: u32) -> Self {
        Self { model, cfg, width }
    }
}

impl VideoEncoderKind for FacesKind {
    fn name(&self) -> &'static str {
        "faces"
    }

    fn input_spec(&self) -> VideoSpec {
        VideoSpec {
            width: self.width,
            height: None,
            format: PixelFormat::Rgb,
        }
    }

    /// Runs on streams with video and audio (a face speaks only where it is heard).
    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn VideoEncoder>>, EncodeError> {
        if !(stream.video && stream.audio) {
            return Ok(None);
        }
        let enc = FaceEncoder::new(Box::new(self.model.clone()), self.cfg, stream.spec.width);
        if let Ok(mut c) = stream.counters.lock() {
            c.insert(enc.stats());
        }
        Ok(Some(Box::new(enc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Faces at fixed boxes (pixels), on every frame but those listed as missed.
    struct Fixed {
        boxes: Vec<[f32; 4]>,
        missed: Vec<u64>,
    }

    impl FaceDetector for Fixed {
        fn name(&self) -> &'static str {
            "fixed-faces"
        }
        fn detect(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<FaceBox>>, EncodeError> {
            Ok(frames
                .iter()
                .map(|f| {
                    if self.missed.contains(&f.index) {
                        return Vec::new();
                    }
                    self.boxes
                        .iter()
                        .map(|&bbox| FaceBox { bbox, score: 0.9 })
                        .collect()
                })
                .collect())
        }
    }

    /// An RGB frame whose pixel (x, y) is (x, y, 0) (mod 256).
    fn frame(i: u64, fps: f64, w: u32, h: u32) -> Frame {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 0]);
            }
        }
        let d = Duration::from_secs_f64(1.0 / fps);
        Frame::from_pixels(
            "s",
            Timestamp((i as f64 / fps * 1e9).round() as u64),
            d,
            w,
            h,
            PixelFormat::Rgb,
            data,
            i,
        )
        .unwrap()
    }

    fn run(enc: &mut FaceEncoder, frames: &[Frame]) -> Vec<VisionFeatures> {
        let mut all = Vec::new();
        for chunk in frames.chunks(4) {
            let mut out: Vec<VisionFeatures> =
                chunk.iter().map(VisionFeatures::for_frame).collect();
            enc.encode(chunk, &mut out).unwrap();
            all.extend(out);
        }
        all
    }

    #[test]
    fn ticks_resample_any_frame_rate_to_25_fps() {
        for (fps, frames) in [
            (25.0, 50u64),
            (30.0, 60),
            (10.0, 20),
            (12.5, 25),
            (29.97, 60),
        ] {
            let mut enc = FaceEncoder::new(
                Box::new(Fixed {
                    boxes: vec![],
                    missed: vec![],
                }),
                FaceConfig::default(),
                8,
            );
            let mut ticks = Vec::new();
            for i in 0..frames {
                let f = frame(i, fps, 8, 8);
                let r = enc.ticks_of(f.pts, f.duration);
                // Each tick goes to the frame nearest to it.
                for k in r.clone() {
                    let tk = k as f64 * 0.04;
                    let d = (tk - f.pts.as_secs_f64()).abs();
                    assert!(
                        d <= 0.5 / fps + 1e-9,
                        "{fps} fps: tick {k} on frame {i} ({d} s away)"
                    );
                }
                ticks.extend(r);
            }
            // Every tick once, in order, none skipped.
            let want: Vec<u64> = (0..ticks.len() as u64).collect();
            assert_eq!(ticks, want, "{fps} fps");
            let secs = frames as f64 / fps;
            assert!(
                (ticks.len() as f64 - secs * 25.0).abs() <= 1.0,
                "{fps} fps: {} ticks",
                ticks.len()
            );
        }
    }

    #[test]
    fn the_crop_is_the_mouth_centred_square_of_upstream() {
        // Pixel (x, y) has R = x, G = y: gray = 0.299 x + 0.587 y, so the crop's corner
        // values tell where it was taken from.
        let f = frame(0, 25.0, 200, 200);
        let (cx, cy, half, cs) = (100.0, 80.0, 40.0, 0.4);
        let c = crop_face(&f, crop_region(CropMode::Columbia, cx, cy, 30.0, half, cs));
        let side = half * (1.0 + cs); // 56 px
        let (left, top) = (cx - side / 2.0, cy + cs * half - side / 2.0); // 72, 68
        let step = side / CROP as f32;
        let at = |u: usize, v: usize| {
            let x = left + (u as f32 + 0.5) * step - 0.5;
            let y = top + (v as f32 + 0.5) * step - 0.5;
            0.299 * x + 0.587 * y
        };
        for (u, v) in [(0, 0), (111, 0), (0, 111), (56, 56), (111, 111)] {
            let got = f32::from(c[v * CROP + u]);
            assert!(
                (got - at(u, v)).abs() <= 1.0,
                "({u},{v}): {got} vs {}",
                at(u, v)
            );
        }
        // Outside the frame: upstream's pad value.
        let c = crop_face(
            &f,
            crop_region(CropMode::Columbia, 0.0, 0.0, 40.0, 40.0, 0.4),
        );
        assert_eq!(c[0], 110);
        // The box mode stretches the box itself.
        assert_eq!(
            crop_region(CropMode::Box, 50.0, 60.0, 10.0, 20.0, 0.4),
            [40.0, 40.0, 20.0, 40.0]
        );
    }

    fn faces_of(f: &VisionFeatures) -> &[FaceObservation] {
        f.get::<Faces>().map_or(&[], |x| &x.faces)
    }

    fn ticks_of(f: &VisionFeatures) -> std::ops::Range<u64> {
        f.get::<Faces>().map_or(0..0, |x| x.ticks.clone())
    }

    #[test]
    fn faces_are_tracked_held_through_a_miss_and_tied_to_their_person() {
        let mut enc = FaceEncoder::new(
            Box::new(Fixed {
                boxes: vec![[20.0, 10.0, 40.0, 30.0], [120.0, 10.0, 150.0, 40.0]],
                missed: vec![5, 20, 21, 22, 23, 24, 25, 26, 27],
            }),
            FaceConfig::default(),
            160,
        );
        let frames: Vec<Frame> = (0..40).map(|i| frame(i, 25.0, 160, 90)).collect();
        let mut feats: Vec<VisionFeatures> = Vec::new();
        for chunk in frames.chunks(4) {
            let mut out: Vec<VisionFeatures> =
                chunk.iter().map(VisionFeatures::for_frame).collect();
            // A person track around the left face.
            for o in out.iter_mut() {
                o.ext.insert(Tracks {
                    detected: true,
                    objects: vec![super::super::tracker::TrackedObject {
                        track_id: 7,
                        class_id: PERSON,
                        score: 0.9,
                        bbox: [0.05, 0.0, 0.35, 1.0],
                        embedding: None,
                    }],
                    events: Vec::new(),
                });
            }
            enc.encode(chunk, &mut out).unwrap();
            feats.extend(out);
        }
        // Confirmed after min_hits = 2: frame 1 on.
        assert!(faces_of(&feats[0]).is_empty());
        assert_eq!(faces_of(&feats[1]).len(), 2);
        let ids: Vec<u64> = faces_of(&feats[10]).iter().map(|f| f.track_id).collect();
        assert_eq!(ids.len(), 2);
        // Frame 5 was missed: held with the same ids and a crop, flagged not detected.
        assert_eq!(
            faces_of(&feats[5])
                .iter()
                .map(|f| f.track_id)
                .collect::<Vec<_>>(),
            ids
        );
        assert!(faces_of(&feats[5])
            .iter()
            .all(|f| !f.detected && f.crop.is_some()));
        // Frames 20–27 missed (0.32 s > hold 0.25 s): crops stop after the hold.
        assert_eq!(faces_of(&feats[26]).len(), 0);
        assert_eq!(faces_of(&feats[28]).len(), 2);
        assert_eq!(
            faces_of(&feats[28])
                .iter()
                .map(|f| f.track_id)
                .collect::<Vec<_>>(),
            ids
        );
        // The left face is person 7's, the right one nobody's.
        let left = faces_of(&feats[10])
            .iter()
            .find(|f| f.bbox[0] < 0.5)
            .unwrap();
        let right = faces_of(&feats[10])
            .iter()
            .find(|f| f.bbox[0] > 0.5)
            .unwrap();
        assert_eq!((left.person, right.person), (Some(7), None));
        assert!(feats
            .iter()
            .all(|f| ticks_of(f).end - ticks_of(f).start == 1));
        let s = *enc.stats().lock().unwrap();
        assert_eq!(s.detected_frames, 40);
        assert_eq!(s.detections, 2 * (40 - 9));
    }

    #[test]
    fn more_faces_than_the_cap_keep_the_largest() {
        let cfg = FaceConfig {
            max_faces: 1,
            ..Default::default()
        };
        let mut enc = FaceEncoder::new(
            Box::new(Fixed {
                boxes: vec![[20.0, 10.0, 40.0, 30.0], [100.0, 10.0, 150.0, 60.0]],
                missed: vec![],
            }),
            cfg,
            160,
        );
        let frames: Vec<Frame> = (0..6).map(|i| frame(i, 25.0, 160, 90)).collect();
        let feats = run(&mut enc, &frames);
        assert_eq!(faces_of(&feats[4]).len(), 1);
        assert!(faces_of(&feats[4])[0].bbox[0] > 0.5);
        assert!(enc.stats().lock().unwrap().capped > 0);
    }

    #[test]
    fn a_gray_frame_is_refused_with_the_stream_and_time() {
        let mut enc = FaceEncoder::new(
            Box::new(Fixed {
                boxes: vec![],
                missed: vec![],
            }),
            FaceConfig::default(),
            8,
        );
        let f = Frame::from_pixels(
            "cam",
            Timestamp(0),
            Duration(40_000_000),
            4,
            4,
            PixelFormat::Gray8,
            vec![0; 16],
            0,
        )
        .unwrap();
        let mut out = vec![VisionFeatures::for_frame(&f)];
        let e = enc.encode(&[f], &mut out).unwrap_err().to_string();
        assert!(e.contains("cam") && e.contains("RGB"), "{e}");
    }
}
