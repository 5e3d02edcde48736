//! The audio tagger: YAMNet over the log-mel front end's frames, one patch of 96 frames
//! (0.96 s) every 48 frames (0.48 s), as upstream cuts them. Patches completed by one audio
//! run are scored in one batch. A discontinuity in the front end's frames restarts the
//! patching (the frames either side do not belong to one patch).

use crate::core::clock::{Duration, Timestamp};
use crate::core::features::AudioFeatures;
use crate::core::media::AudioChunk;
use crate::core::settings::Toggle;
use crate::encode::{AudioEncoder, AudioEncoderKind, EncodeError, StreamInfo};
use crate::model_files::ModelsConfig;
use avsense_nn::formats::files::ModelFiles;
use avsense_nn::models::yamnet::{Yamnet, MEL_BANDS, PATCH_FRAMES, PATCH_HOP_FRAMES};
use std::sync::Arc;

/// Audio tags of one patch (YAMNet: 0.96 s every 0.48 s).
#[derive(Debug, Clone)]
pub struct TagPatch {
    /// Start of the patch.
    pub start: Timestamp,
    /// End of the patch.
    pub end: Timestamp,
    /// Scores of every class (index = class id).
    pub scores: Arc<Vec<f32>>,
    /// Class names (index = class id).
    pub names: Arc<Vec<String>>,
    /// The patch embedding (YAMNet: 1024-d).
    pub embedding: Arc<Vec<f32>>,
}

/// The tagger patches completed with one audio run (the tagger's result in
/// [`AudioFeatures`]).
#[derive(Debug, Clone, Default)]
pub struct TagPatches(pub Vec<TagPatch>);

/// YAMNet as an [`AudioEncoder`].
pub struct TaggerEncoder {
    model: Yamnet,
    names: Arc<Vec<String>>,
    /// Log-mel frames not yet past the last patch start, and the time of the first.
    frames: Vec<f32>,
    first: Option<Timestamp>,
    /// Where the next frame is expected (to detect a restart of the front end).
    next: Option<Timestamp>,
    hop: Duration,
}

impl TaggerEncoder {
    /// Wraps a loaded model and its class names.
    pub fn new(model: Yamnet, names: Arc<Vec<String>>) -> Self {
        Self {
            model,
            names,
            frames: Vec::new(),
            first: None,
            next: None,
            hop: Duration(10_000_000),
        }
    }
}

impl AudioEncoder for TaggerEncoder {
    fn name(&self) -> &'static str {
        "yamnet"
    }

    fn encode(&mut self, chunk: &AudioChunk, feats: &mut AudioFeatures) -> Result<(), EncodeError> {
        if feats.frames() == 0 {
            return Ok(());
        }
        if self.next != Some(feats.pts) {
            self.frames.clear();
            self.first = Some(feats.pts);
        }
        self.hop = feats.hop;
        self.next = Some(feats.end());
        self.frames.extend_from_slice(&feats.log_mel);
        let Some(first) = self.first else {
            return Ok(());
        };
        let per = PATCH_FRAMES * MEL_BANDS;
        let n_frames = self.frames.len() / MEL_BANDS;
        if n_frames < PATCH_FRAMES {
            return Ok(());
        }
        let n_patches = (n_frames - PATCH_FRAMES) / PATCH_HOP_FRAMES + 1;
        let mut batch = Vec::with_capacity(n_patches * per);
        for p in 0..n_patches {
            let s = p * PATCH_HOP_FRAMES * MEL_BANDS;
            batch.extend_from_slice(&self.frames[s..s + per]);
        }
        let out = self
            .model
            .infer(&batch)
            .map_err(|e| EncodeError::BadInput {
                encoder: "yamnet",
                stream: chunk.stream.to_string(),
                pts: first,
                reason: e.to_string(),
            })?;
        // A patch spans its 96 frames' windows: from its first frame's start to 0.96 s on
        // (15600 samples = 95 hops + one 25 ms window).
        let span = Duration(self.hop.0 * (PATCH_FRAMES as u64 - 1) + feats.window.0);
        let mut patches = Vec::with_capacity(out.len());
        for (p, o) in out.into_iter().enumerate() {
            let start = Timestamp(first.0 + (p * PATCH_HOP_FRAMES) as u64 * self.hop.0);
            patches.push(TagPatch {
                start,
                end: start + span,
                scores: Arc::new(o.scores),
                names: Arc::clone(&self.names),
                embedding: Arc::new(o.embedding),
            });
        }
        feats.ext.insert(TagPatches(patches));
        let consumed = n_patches * PATCH_HOP_FRAMES;
        self.frames.drain(..consumed * MEL_BANDS);
        self.first = Some(Timestamp(first.0 + consumed as u64 * self.hop.0));
        Ok(())
    }
}

/// YAMNet as the pipeline registers it: the model and its class names loaded once.
pub struct TaggerKind {
    model: Yamnet,
    names: Arc<Vec<String>>,
}

impl TaggerKind {
    /// Loads YAMNet and its class map under `[tagger] mode` (`None`: off, or `auto` without
    /// the file).
    pub fn load(mode: Toggle, models: &ModelsConfig) -> Result<Option<Self>, EncodeError> {
        let Some(file) = models.file(mode, "yamnet", "yamnet/yamnet.tflite")? else {
            return Ok(None);
        };
        models.verified("yamnet", "yamnet/yamnet_class_map.csv")?;
        let device = models.device()?;
        let origin = file.origin().display().to_string();
        let bytes = file
            .read()
            .map_err(|e| EncodeError::read("yamnet", &origin, e))?;
        let model = Yamnet::from_tflite_bytes(bytes.into_owned(), &origin, &device)
            .map_err(|e| EncodeError::load("yamnet", e))?;
        let map = "yamnet_class_map.csv";
        let map_origin = file.folder.origin(map).display().to_string();
        let text = file
            .folder
            .read(map)
            .map_err(|e| EncodeError::read("yamnet", &map_origin, e))?;
        let names = avsense_nn::models::yamnet::parse_class_names(&text, &map_origin)
            .map_err(|e| EncodeError::load("yamnet", e))?;
        Ok(Some(Self {
            model,
            names: Arc::new(names),
        }))
    }

    /// The AudioSet class names, in score order.
    pub fn class_names(&self) -> &Arc<Vec<String>> {
        &self.names
    }
}

impl AudioEncoderKind for TaggerKind {
    fn name(&self) -> &'static str {
        "yamnet"
    }

    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn AudioEncoder>>, EncodeError> {
        Ok(stream.audio.then(|| {
            Box::new(TaggerEncoder::new(
                self.model.clone(),
                Arc::clone(&self.names),
            )) as Box<dyn AudioEncoder>
        }))
    }
}
