//! NanoDet as the object encoder's [`Detector`]: frames in, tracker detections out.

use super::motion::MotionConfig;
use super::objects::{Detector, DetectorConfig, MotionGate, ObjectEncoder};
use super::tracker::{Detection, TrackerConfig};
use crate::core::media::{Frame, PixelFormat, VideoSpec};
use crate::encode::{EncodeError, StreamInfo, VideoEncoder, VideoEncoderKind};
use crate::model_files::ModelsConfig;
use avsense_nn::models::nanodet::{
    self, NanoDet, NanoDetConfig, NanoDetError, Resize, RgbImage, INPUT_SIZE,
};

/// The object encoder with NanoDet, as the pipeline registers it: the model loaded once,
/// shared by every stream's [`ObjectEncoder`].
pub struct NanoDetKind {
    model: NanoDet,
    detector: DetectorConfig,
    tracker: TrackerConfig,
    gate: Option<MotionGate>,
}

impl NanoDetKind {
    /// Loads NanoDet under `[detector] mode` (`None`: off, or `auto` without the file);
    /// `motion` (None: no motion encoder runs) gives the motion gate its thresholds.
    pub fn load(
        detector: &DetectorConfig,
        tracker: &TrackerConfig,
        motion: Option<&MotionConfig>,
        models: &ModelsConfig,
    ) -> Result<Option<Self>, EncodeError> {
        let Some(file) = models.file(detector.mode, "nanodet", "human-models/nanodet.json")? else {
            return Ok(None);
        };
        let device = models.device()?;
        let cfg = NanoDetConfig {
            score_threshold: detector.score_threshold,
            iou_threshold: detector.iou_threshold,
            embeddings: detector.embeddings,
            resize: detector.resize,
            trim_bars: detector.trim_bars,
            ..Default::default()
        };
        let model = NanoDet::load_from(&file.folder, &file.name, &device, cfg)
            .map_err(|e| EncodeError::load("nanodet", e))?;
        Ok(Some(Self {
            model,
            detector: detector.clone(),
            tracker: *tracker,
            gate: motion.and_then(|m| MotionGate::of(detector, m)),
        }))
    }
}

impl VideoEncoderKind for NanoDetKind {
    fn name(&self) -> &'static str {
        "nanodet"
    }

    fn input_spec(&self) -> VideoSpec {
        Detector::input_spec(&self.model)
    }

    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn VideoEncoder>>, EncodeError> {
        if !stream.video {
            return Ok(None);
        }
        let enc = ObjectEncoder::new(
            Box::new(self.model.clone()),
            self.tracker,
            self.detector.class_ids(),
            self.detector.interval(),
        )
        .with_gate(self.gate);
        if let Ok(mut c) = stream.counters.lock() {
            c.insert(enc.stats());
        }
        Ok(Some(Box::new(enc)))
    }
}

impl From<nanodet::Detection> for Detection {
    fn from(d: nanodet::Detection) -> Self {
        Self {
            class_id: d.class_id,
            score: d.score,
            bbox: d.bbox,
            embedding: d.embedding,
        }
    }
}

impl Detector for NanoDet {
    fn name(&self) -> &'static str {
        "nanodet"
    }

    /// RGB, scaled by the source so that it fits the input: 416 wide with the aspect ratio
    /// kept when letterboxing (a landscape frame then needs no resize here, only the black
    /// bars), 416×416 when stretching.
    fn input_spec(&self) -> VideoSpec {
        VideoSpec {
            width: INPUT_SIZE as u32,
            height: match self.config().resize {
                Resize::Letterbox => None,
                Resize::Stretch => Some(INPUT_SIZE as u32),
            },
            format: PixelFormat::Rgb,
        }
    }

    fn detect(
        &mut self,
        frames: &[&Frame],
    ) -> std::result::Result<Vec<Vec<Detection>>, EncodeError> {
        let bad = |f: &Frame, reason: String| EncodeError::BadInput {
            encoder: "nanodet",
            stream: f.stream.to_string(),
            pts: f.pts,
            reason,
        };
        let mut images = Vec::with_capacity(frames.len());
        for &f in frames {
            if f.format != PixelFormat::Rgb {
                return Err(bad(f, format!("{:?} frame, expected RGB", f.format)));
            }
            images.push(RgbImage {
                width: f.width as usize,
                height: f.height as usize,
                stride: f.stride,
                data: f.data(),
            });
        }
        let dets = NanoDet::detect(self, &images).map_err(|e| {
            let index = match &e {
                NanoDetError::Input { index, .. } => *index,
                _ => 0,
            };
            match frames.get(index) {
                Some(&f) => bad(f, e.to_string()),
                None => EncodeError::BadInput {
                    encoder: "nanodet",
                    stream: String::new(),
                    pts: Default::default(),
                    reason: e.to_string(),
                },
            }
        })?;
        Ok(dets
            .into_iter()
            .map(|d| d.into_iter().map(Into::into).collect())
            .collect())
    }
}
