//! The object encoder: a detector on the frames that are due, then the tracker.
//!
//! Any [`Detector`] plugs in (NanoDet today). The detector runs on a subset of frames —
//! `interval` apart in stream time, like Frigate's `detect.fps` — batched: every due frame
//! of the batch the video stage hands over goes through one forward pass. Frames in between
//! carry the confirmed tracks of the last detected frame (flagged `detected = false`), so
//! every frame has objects for fusion while the detector's cost scales with its rate, not
//! the camera's. Boxes are reported normalised to the frame (`[x0, y0, x1, y1]` in 0–1), so
//! they do not depend on the analysis resolution.

use super::tracker::{Detection, TrackEvent, TrackedObject, Tracker, TrackerConfig};
use super::{EncodeError, VideoEncoder, VisionFeatures};
use crate::clock::{Duration, Timestamp};
use crate::source::{Frame, VideoSpec};

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

/// Detector + tracker as a [`VideoEncoder`].
pub struct ObjectEncoder {
    detector: Box<dyn Detector>,
    tracker: Tracker,
    classes: Option<Vec<usize>>,
    schedule: Schedule,
    carried: Vec<TrackedObject>,
    due: Vec<usize>,
    detections: u64,
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
            detections: 0,
        }
    }

    /// Frames the detector has run on so far.
    pub fn detections(&self) -> u64 {
        self.detections
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
        for (i, f) in frames.iter().enumerate() {
            if self.schedule.take_if_due(f.pts, f.duration) {
                self.due.push(i);
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
        self.detections += dets.len() as u64;
        let mut dets = dets.into_iter();
        let mut next_due = self.due.iter().copied().peekable();
        for (i, (frame, feats)) in frames.iter().zip(out.iter_mut()).enumerate() {
            if next_due.peek() != Some(&i) {
                feats.detected = false;
                feats.objects = self.carried.clone();
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
            feats.detected = true;
            feats.objects = self
                .tracker
                .update(&d, frame.pts.as_secs_f64(), &mut events);
            feats.track_events = events;
            self.carried.clone_from(&feats.objects);
        }
        Ok(())
    }

    fn finish(&mut self, last: &mut VisionFeatures) -> Result<(), EncodeError> {
        self.tracker.finish(&mut last.track_events);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::PixelFormat;

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
                if f.detected {
                    detected.push(f.index);
                }
                with_objects += usize::from(!f.objects.is_empty());
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
}
