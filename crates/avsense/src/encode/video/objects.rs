//! The object encoder: a detector on the frames that are due, then the tracker.
//!
//! Any [`Detector`] plugs in (NanoDet today). The detector runs on a subset of frames —
//! `interval` apart in stream time, like Frigate's `detect.fps` — batched: every due frame
//! of the batch the video stage hands over goes through one forward pass. Frames in between
//! carry the confirmed tracks of the last detected frame (flagged `detected = false`), so
//! every frame has objects for fusion while the detector's cost scales with its rate, not
//! the camera's. Boxes are reported normalised to the frame (`[x0, y0, x1, y1]` in 0–1), so
//! they do not depend on the analysis resolution.
//!
//! **Motion gate** (`[detector] motion_gate`, on by default; Frigate's idea): a due frame
//! goes to the detector only when something may have changed since the detector last ran —
//! the motion encoder saw motion in a frame since then (or reset its background: a cut, a
//! lighting change), or a track is still settling (tentative, or lost and not yet timed
//! out) — or when `refresh` seconds have passed since the last run (a full pass that
//! catches what entered too slowly for the motion grid). A skipped frame carries the last
//! tracks, like the frames between two due ones; the tracker is not updated, so a track
//! that stands still keeps its id. Without a motion encoder the gate never closes.

use super::motion::{MotionConfig, MotionFeatures};
use super::tracker::{Detection, TrackEvent, TrackedObject, Tracker, TrackerConfig};
use crate::core::clock::{Duration, Timestamp};
use crate::core::features::VisionFeatures;
use crate::core::media::{Frame, VideoSpec};
use crate::core::settings::{check, in_range, Invalid, Toggle};
use crate::encode::{EncodeError, VideoEncoder};
use serde::{Deserialize, Serialize};

/// Default detections per second (the detector skips the frames in between; tracks carry).
pub const DEFAULT_DETECT_FPS: f64 = 5.0;

/// Default seconds between two detector runs at most when the motion gate is on.
pub const DEFAULT_REFRESH: f64 = 5.0;

/// `[detector]`: the object detector.
///
/// Like Frigate's `detect.fps`, the detector runs on a subset of frames (`fps` per second,
/// 0 = every frame); motion still sees every frame, and the frames in between carry the
/// tracks of the last detection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// `auto` (runs when its model is fetched), `on` or `off`.
    pub mode: Toggle,
    /// Detections per second of video (0: every frame).
    pub fps: f64,
    /// Minimum detection score the detector reports (the tracker's `low_score` applies
    /// on top of it).
    pub score_threshold: f32,
    /// Class-aware NMS IoU threshold.
    pub iou_threshold: f32,
    /// COCO class names to keep (empty: all 80).
    pub classes: Vec<String>,
    /// Attach pooled backbone features to each detection (appearance embedding).
    pub embeddings: bool,
    /// `letterbox` (keep the aspect ratio; default) or `stretch` the frame into the
    /// detector's square input.
    pub resize: avsense_nn::models::nanodet::Resize,
    /// With `letterbox`: run the network on the letterboxed picture only (its size rounded
    /// up to 32: 416×256 for 16:9) instead of the whole 416² square with black bars —
    /// about a fifth less CPU for a 16:9 stream, but detections near the score threshold
    /// change (off by default; BENCHMARKS.md "Camera density").
    pub trim_bars: bool,
    /// Run the detector on a due frame only when motion was seen since its last run, a
    /// track is still settling, or `refresh` seconds have passed (see the module doc).
    pub motion_gate: bool,
    /// With the motion gate: seconds after which the detector runs on a due frame even
    /// without motion.
    pub refresh: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        let n = avsense_nn::models::nanodet::NanoDetConfig::default();
        Self {
            mode: Toggle::Auto,
            fps: DEFAULT_DETECT_FPS,
            score_threshold: n.score_threshold,
            iou_threshold: n.iou_threshold,
            classes: Vec::new(),
            embeddings: true,
            resize: n.resize,
            trim_bars: false,
            motion_gate: true,
            refresh: DEFAULT_REFRESH,
        }
    }
}

impl DetectorConfig {
    /// The class ids of `classes` (None: all). Names were checked by `validate`.
    pub fn class_ids(&self) -> Option<Vec<usize>> {
        if self.classes.is_empty() {
            return None;
        }
        Some(
            self.classes
                .iter()
                .filter_map(|c| avsense_nn::models::coco::id(c))
                .collect(),
        )
    }
}

impl DetectorConfig {
    /// Checks the keys of `[detector]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let d = self;
        check(
            in_range(d.fps, 0.0, 240.0),
            "fps",
            d.fps,
            "detections per second, 0 (every frame) to 240",
        )?;
        check(
            in_range(d.refresh, 0.0, 3600.0),
            "refresh",
            d.refresh,
            "seconds between detector runs without motion, 0 (none) to 3600",
        )?;
        for (k, v) in [
            ("score_threshold", d.score_threshold),
            ("iou_threshold", d.iou_threshold),
        ] {
            check(
                in_range(f64::from(v), 0.0, 1.0),
                k,
                v,
                "a value from 0 to 1",
            )?;
        }
        for (i, c) in d.classes.iter().enumerate() {
            check(
                avsense_nn::models::coco::id(c).is_some(),
                &format!("classes[{i}]"),
                format!("{c:?}"),
                "a COCO-80 class name such as \"person\", \"car\", \"dog\"",
            )?;
        }
        Ok(())
    }

    /// The time between two detections (zero: every frame).
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(if self.fps > 0.0 { 1.0 / self.fps } else { 0.0 })
    }
}

/// The object encoder's result for one frame.
#[derive(Debug, Clone, Default)]
pub struct Tracks {
    /// Whether the detector ran on this frame (it runs `detector.fps` times a second; the
    /// frames in between carry the tracks of the last detection).
    pub detected: bool,
    /// Confirmed object tracks in this frame: matched by this frame's detections, or carried
    /// from the last detected frame when `detected` is false.
    pub objects: Vec<TrackedObject>,
    /// Tracks that appeared or ended at this frame.
    pub events: Vec<TrackEvent>,
}

impl Tracks {
    /// The confirmed tracks of `v` (none when no detector runs).
    pub fn objects_of(v: &VisionFeatures) -> &[TrackedObject] {
        v.get::<Tracks>().map_or(&[], |t| &t.objects)
    }
}

/// A callback that sees each video frame's tracks as soon as the video encoders are done
/// with it (before any window): the stream, the frame's time in seconds, its tracks
/// (boxes normalised to the frame). Keep it cheap: it runs on the stream's video thread.
pub type TracksTap = std::sync::Arc<dyn Fn(&str, f64, &Tracks) + Send + Sync>;

/// A batch object detector.
pub trait Detector: Send {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;
    /// The frames it takes (the source scales and converts to this).
    fn input_spec(&self) -> VideoSpec;
    /// Detections per frame, boxes in the frame's pixels.
    fn detect(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<Detection>>, EncodeError>;
}

/// When a detector that runs at a fixed rate is due (Frigate's `detect.fps`).
///
/// The schedule is a grid from the first frame (`first + k·interval`), and a frame is due
/// when it reaches the next grid point less half a frame, so 30 fps at 5 Hz picks every 6th
/// frame exactly. A jump in time (a gap in a live stream) restarts the grid. A zero
/// interval makes every frame due.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    interval: Duration,
    next_due: Option<Timestamp>,
}

impl Schedule {
    /// Every `interval` of stream time (zero: every frame).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_due: None,
        }
    }

    /// Whether the frame at `pts` is due; advances the schedule if so.
    pub fn take_if_due(&mut self, pts: Timestamp, frame_duration: Duration) -> bool {
        if self.interval.0 == 0 {
            return true;
        }
        let slack = frame_duration.0 / 2;
        match self.next_due {
            None => {
                self.next_due = Some(Timestamp(pts.0 + self.interval.0));
                true
            }
            Some(next) if pts.0 + slack >= next.0 => {
                let mut n = next.0 + self.interval.0;
                if n + slack <= pts.0 {
                    n = pts.0 + self.interval.0; // fell behind (gap): restart from here
                }
                self.next_due = Some(Timestamp(n));
                true
            }
            Some(_) => false,
        }
    }
}

/// What the motion gate calls motion in a frame's [`MotionFeatures`] (the motion decoder's
/// own rule: at least `min_cells` cells changed by `cell_threshold`), and how often the
/// detector runs without it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionGate {
    /// Fraction of a cell's pixels that must change for the cell to count.
    pub cell_threshold: f32,
    /// Cells that must count for the frame to have motion.
    pub min_cells: u32,
    /// The longest time between two detector runs without motion (zero: no periodic run,
    /// only motion or a settling track opens the gate).
    pub refresh: Duration,
}

impl MotionGate {
    /// The gate of `[detector]` with `[motion]`'s thresholds; None when the gate is off.
    pub fn of(detector: &DetectorConfig, motion: &MotionConfig) -> Option<Self> {
        detector.motion_gate.then(|| Self {
            cell_threshold: motion.cell_threshold,
            min_cells: motion.min_cells,
            refresh: Duration::from_secs_f64(detector.refresh),
        })
    }

    /// Whether `m` shows motion (a background reset counts: the scene may have changed).
    fn moved(&self, m: &MotionFeatures) -> bool {
        m.reset || m.active_cells(self.cell_threshold).count() >= self.min_cells as usize
    }
}

/// Counters of the object encoder (published in the stream's counters for the run's
/// report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DetectorStats {
    /// Frames the detector ran on.
    pub runs: u64,
    /// Due frames the motion gate held back (their tracks were carried).
    pub gated: u64,
}

/// Detector + tracker as a [`VideoEncoder`].
pub struct ObjectEncoder {
    detector: Box<dyn Detector>,
    tracker: Tracker,
    classes: Option<Vec<usize>>,
    schedule: Schedule,
    carried: Vec<TrackedObject>,
    due: Vec<usize>,
    gate: Option<MotionGate>,
    /// Motion (or no motion measurement) since the detector last ran.
    moved: bool,
    last_run: Option<Timestamp>,
    stats: std::sync::Arc<std::sync::Mutex<DetectorStats>>,
}

impl ObjectEncoder {
    /// Tracks what `detector` finds; `classes` keeps only those class ids (None: all);
    /// the detector runs on frames at least `interval` apart (zero: every frame).
    pub fn new(
        detector: Box<dyn Detector>,
        tracker: TrackerConfig,
        classes: Option<Vec<usize>>,
        interval: Duration,
    ) -> Self {
        Self {
            detector,
            tracker: Tracker::new(tracker),
            classes,
            schedule: Schedule::new(interval),
            carried: Vec::new(),
            due: Vec::new(),
            gate: None,
            moved: true,
            last_run: None,
            stats: Default::default(),
        }
    }

    /// With the motion gate `gate` (None: the detector runs on every due frame).
    pub fn with_gate(mut self, gate: Option<MotionGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Frames the detector has run on so far.
    pub fn detections(&self) -> u64 {
        self.stats.lock().map_or(0, |s| s.runs)
    }

    /// A handle on the counters.
    pub fn stats(&self) -> std::sync::Arc<std::sync::Mutex<DetectorStats>> {
        std::sync::Arc::clone(&self.stats)
    }

    /// Whether the detector runs on the due frame at `pts` lasting `dur` (see the module
    /// doc); `pending`: an earlier frame of the batch runs, so the tracker's state after it
    /// is not known yet.
    fn gate_open(&self, pts: Timestamp, dur: Duration, pending: bool) -> bool {
        let Some(g) = &self.gate else {
            return true;
        };
        self.moved
            || pending
            || !self.tracker.settled()
            || self.last_run.is_none_or(|l| {
                g.refresh.0 > 0 && pts.0.saturating_sub(l.0) + dur.0 / 2 >= g.refresh.0
            })
    }
}

impl VideoEncoder for ObjectEncoder {
    fn name(&self) -> &'static str {
        self.detector.name()
    }

    fn input_spec(&self) -> VideoSpec {
        self.detector.input_spec()
    }

    fn encode(&mut self, frames: &[Frame], out: &mut [VisionFeatures]) -> Result<(), EncodeError> {
        self.due.clear();
        let mut gated = 0;
        for (i, f) in frames.iter().enumerate() {
            if let Some(g) = self.gate {
                // Motion in any frame since the last run opens the gate; a frame without a
                // motion measurement (no motion encoder) always does.
                let moved = out
                    .get(i)
                    .and_then(|o| o.get::<MotionFeatures>())
                    .is_none_or(|m| g.moved(m));
                self.moved |= moved;
            }
            if self.schedule.take_if_due(f.pts, f.duration) {
                if self.gate_open(f.pts, f.duration, !self.due.is_empty()) {
                    self.due.push(i);
                    self.moved = false;
                    self.last_run = Some(f.pts);
                } else {
                    // Nothing moved: the carried tracks are still there.
                    self.tracker.hold(f.pts.as_secs_f64());
                    gated += 1;
                }
            }
        }
        let dets = if self.due.is_empty() {
            Vec::new()
        } else {
            // Only the due frames go through the detector, as one batch.
            let batch: Vec<&Frame> = self.due.iter().map(|&i| &frames[i]).collect();
            self.detector.detect(&batch)?
        };
        if dets.len() != self.due.len() {
            return Err(EncodeError::BadInput {
                encoder: self.detector.name(),
                stream: frames
                    .first()
                    .map(|f| f.stream.to_string())
                    .unwrap_or_default(),
                pts: frames.first().map(|f| f.pts).unwrap_or_default(),
                reason: format!("{} results for {} frames", dets.len(), self.due.len()),
            });
        }
        if let Ok(mut s) = self.stats.lock() {
            s.runs += dets.len() as u64;
            s.gated += gated;
        }
        let mut dets = dets.into_iter();
        let mut next_due = self.due.iter().copied().peekable();
        for (i, (frame, feats)) in frames.iter().zip(out.iter_mut()).enumerate() {
            if next_due.peek() != Some(&i) {
                feats.ext.insert(Tracks {
                    detected: false,
                    objects: self.carried.clone(),
                    events: Vec::new(),
                });
                continue;
            }
            next_due.next();
            let mut d = dets.next().unwrap_or_default();
            let (w, h) = (frame.width.max(1) as f32, frame.height.max(1) as f32);
            if let Some(keep) = &self.classes {
                d.retain(|x| keep.contains(&x.class_id));
            }
            for x in d.iter_mut() {
                x.bbox = [
                    (x.bbox[0] / w).clamp(0.0, 1.0),
                    (x.bbox[1] / h).clamp(0.0, 1.0),
                    (x.bbox[2] / w).clamp(0.0, 1.0),
                    (x.bbox[3] / h).clamp(0.0, 1.0),
                ];
            }
            let mut events: Vec<TrackEvent> = Vec::new();
            let objects = self
                .tracker
                .update(&d, frame.pts.as_secs_f64(), &mut events);
            self.carried.clone_from(&objects);
            feats.ext.insert(Tracks {
                detected: true,
                objects,
                events,
            });
        }
        Ok(())
    }

    fn finish(&mut self, last: &mut VisionFeatures) -> Result<(), EncodeError> {
        let mut ended = Vec::new();
        self.tracker.finish(&mut ended);
        match last.ext.get_mut::<Tracks>() {
            Some(t) => t.events.extend(ended),
            None => last.ext.insert(Tracks {
                detected: false,
                objects: Vec::new(),
                events: ended,
            }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::media::PixelFormat;

    /// A detector that finds one object at a fixed box and counts its calls.
    struct Fixed {
        calls: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl Detector for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn input_spec(&self) -> VideoSpec {
            VideoSpec {
                width: 8,
                height: Some(8),
                format: PixelFormat::Rgb,
            }
        }
        fn detect(&mut self, frames: &[&Frame]) -> Result<Vec<Vec<Detection>>, EncodeError> {
            self.calls.lock().unwrap().push(frames.len());
            Ok(frames
                .iter()
                .map(|_| {
                    vec![Detection {
                        class_id: 0,
                        score: 0.9,
                        bbox: [2.0, 2.0, 6.0, 6.0],
                        embedding: None,
                    }]
                })
                .collect())
        }
    }

    fn frames(n: u64, fps: u64) -> Vec<Frame> {
        let d = Duration(1_000_000_000 / fps);
        (0..n)
            .map(|i| {
                Frame::from_pixels(
                    "s",
                    Timestamp(i * d.0),
                    d,
                    8,
                    8,
                    PixelFormat::Rgb,
                    vec![0u8; 8 * 8 * 3],
                    i,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn runs_at_its_rate_batches_due_frames_and_carries_tracks() {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut enc = ObjectEncoder::new(
            Box::new(Fixed {
                calls: calls.clone(),
            }),
            TrackerConfig::default(),
            None,
            Duration::from_secs_f64(0.2),
        );
        let fr = frames(60, 30); // 2 s at 30 fps, 5 Hz detection → every 6th frame
        let mut detected = Vec::new();
        let mut with_objects = 0;
        for chunk in fr.chunks(8) {
            let mut out: Vec<VisionFeatures> =
                chunk.iter().map(VisionFeatures::for_frame).collect();
            enc.encode(chunk, &mut out).unwrap();
            for f in &out {
                if f.get::<Tracks>().is_some_and(|t| t.detected) {
                    detected.push(f.index);
                }
                with_objects += usize::from(!Tracks::objects_of(f).is_empty());
            }
        }
        assert_eq!(detected, vec![0, 6, 12, 18, 24, 30, 36, 42, 48, 54]);
        assert_eq!(enc.detections(), 10);
        // One call per batch that had a due frame, with only the due frames in it.
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.iter().sum::<usize>(), 10);
        assert!(calls.iter().all(|&n| n <= 2), "{calls:?}");
        // Confirmed after min_hits = 3 detections (frame 12), carried on every frame after.
        assert_eq!(with_objects, 60 - 12);
    }

    #[test]
    fn zero_interval_detects_every_frame_and_a_gap_restarts_the_grid() {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut enc = ObjectEncoder::new(
            Box::new(Fixed { calls }),
            TrackerConfig::default(),
            None,
            Duration(0),
        );
        assert!((0..5).all(|k| enc.schedule.take_if_due(Timestamp(k * 10), Duration(10))));
        let mut s = Schedule::new(Duration(100));
        assert!(s.take_if_due(Timestamp(0), Duration(10)));
        assert!(!s.take_if_due(Timestamp(50), Duration(10)));
        assert!(s.take_if_due(Timestamp(95), Duration(10))); // within half a frame
        assert!(s.take_if_due(Timestamp(5_000), Duration(10)));
        assert_eq!(s.next_due, Some(Timestamp(5_100)));
    }

    /// Runs `enc` over `fr` in batches of 8; `moving(i)` says whether frame `i` has motion
    /// (None: no motion measurement). Returns the indices of the frames detected on.
    fn run_gated(
        enc: &mut ObjectEncoder,
        fr: &[Frame],
        moving: impl Fn(u64) -> Option<bool>,
    ) -> Vec<u64> {
        let mut detected = Vec::new();
        for chunk in fr.chunks(8) {
            let mut out: Vec<VisionFeatures> =
                chunk.iter().map(VisionFeatures::for_frame).collect();
            for o in out.iter_mut() {
                if let Some(m) = moving(o.index) {
                    o.ext.insert(MotionFeatures {
                        grid: [2, 1],
                        cells: vec![if m { 0.5 } else { 0.0 }, 0.0],
                        changed: 0.0,
                        energy: 0.0,
                        reset: false,
                    });
                }
            }
            enc.encode(chunk, &mut out).unwrap();
            for f in &out {
                if f.get::<Tracks>().is_some_and(|t| t.detected) {
                    detected.push(f.index);
                }
            }
        }
        detected
    }

    fn gated(refresh: f64) -> ObjectEncoder {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let detector = DetectorConfig {
            refresh,
            ..Default::default()
        };
        ObjectEncoder::new(
            Box::new(Fixed { calls }),
            TrackerConfig::default(),
            None,
            Duration::from_secs_f64(0.2),
        )
        .with_gate(MotionGate::of(&detector, &MotionConfig::default()))
    }

    #[test]
    fn the_motion_gate_runs_the_detector_on_motion_and_every_refresh() {
        let mut enc = gated(1.0);
        // 3 s at 30 fps: motion in the first second only.
        let fr = frames(90, 30);
        let detected = run_gated(&mut enc, &fr, |i| Some(i < 30));
        // While moving: every due frame. Frame 30 still sees the motion of frames 25–29.
        // Then nothing moves and the track is settled: one run per refresh (1 s).
        assert_eq!(detected, vec![0, 6, 12, 18, 24, 30, 60]);
        let s = *enc.stats().lock().unwrap();
        assert_eq!((s.runs, s.gated), (7, 8));
        // The held-back frames carry the confirmed track, and it is still seen at the end.
        let mut last = VisionFeatures::for_frame(&fr[89]);
        enc.finish(&mut last).unwrap();
        let ended = &last.get::<Tracks>().unwrap().events;
        assert!(
            matches!(ended.as_slice(), [TrackEvent::Left(t)] if (t.last_seen - 84.0 / 30.0).abs() < 1e-6),
            "{ended:?}"
        );
    }

    #[test]
    fn a_settling_track_keeps_the_gate_open_and_no_motion_measurement_never_closes_it() {
        // No motion at all and no refresh: the detector runs until the new track is
        // confirmed (3 hits), then never again.
        let mut enc = gated(0.0);
        let fr = frames(60, 30);
        assert_eq!(run_gated(&mut enc, &fr, |_| Some(false)), vec![0, 6, 12]);
        // Without a motion encoder the gate cannot judge: every due frame runs.
        let mut enc = gated(0.0);
        assert_eq!(run_gated(&mut enc, &fr, |_| None).len(), 10);
        // Gate off: the same.
        let mut enc = gated(0.0).with_gate(None);
        assert_eq!(run_gated(&mut enc, &fr, |_| Some(false)).len(), 10);
    }
}
