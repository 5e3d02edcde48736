//! The object encoder: a detector on each batch of frames, then the tracker.
//!
//! Any [`Detector`] plugs in (NanoDet today). Boxes are reported normalised to the frame
//! (`[x0, y0, x1, y1]` in 0–1), so they do not depend on the analysis resolution.

use super::tracker::{Detection, TrackEvent, Tracker, TrackerConfig};
use super::{EncodeError, VideoEncoder, VisionFeatures};
use crate::source::{Frame, VideoSpec};

/// A batch object detector.
pub trait Detector: Send {
    /// Its name in logs and errors.
    fn name(&self) -> &'static str;
    /// The frames it takes (the source scales and converts to this).
    fn input_spec(&self) -> VideoSpec;
    /// Detections per frame, boxes in the frame's pixels.
    fn detect(&mut self, frames: &[Frame]) -> Result<Vec<Vec<Detection>>, EncodeError>;
}

/// Detector + tracker as a [`VideoEncoder`].
pub struct ObjectEncoder {
    detector: Box<dyn Detector>,
    tracker: Tracker,
    classes: Option<Vec<usize>>,
}

impl ObjectEncoder {
    /// Tracks what `detector` finds; `classes` keeps only those class ids (None: all).
    pub fn new(
        detector: Box<dyn Detector>,
        tracker: TrackerConfig,
        classes: Option<Vec<usize>>,
    ) -> Self {
        Self {
            detector,
            tracker: Tracker::new(tracker),
            classes,
        }
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
        let dets = self.detector.detect(frames)?;
        if dets.len() != frames.len() {
            return Err(EncodeError::BadInput {
                encoder: self.detector.name(),
                stream: frames
                    .first()
                    .map(|f| f.stream.to_string())
                    .unwrap_or_default(),
                pts: frames.first().map(|f| f.pts).unwrap_or_default(),
                reason: format!("{} results for {} frames", dets.len(), frames.len()),
            });
        }
        for ((frame, feats), mut d) in frames.iter().zip(out.iter_mut()).zip(dets) {
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
            feats.objects = self
                .tracker
                .update(&d, frame.pts.as_secs_f64(), &mut events);
            feats.track_events = events;
        }
        Ok(())
    }

    fn finish(&mut self, last: &mut VisionFeatures) -> Result<(), EncodeError> {
        self.tracker.finish(&mut last.track_events);
        Ok(())
    }
}
