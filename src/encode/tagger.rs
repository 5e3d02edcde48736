//! The audio tagger: YAMNet over the log-mel front end's frames, one patch of 96 frames
//! (0.96 s) every 48 frames (0.48 s), as upstream cuts them. Patches completed by one audio
//! run are scored in one batch. A discontinuity in the front end's frames restarts the
//! patching (the frames either side do not belong to one patch).

use super::models::yamnet::{Yamnet, MEL_BANDS, PATCH_FRAMES, PATCH_HOP_FRAMES};
use super::{AudioEncoder, AudioFeatures, EncodeError, TagPatch};
use crate::clock::{Duration, Timestamp};
use crate::source::AudioChunk;
use std::sync::Arc;

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
        for (p, o) in out.into_iter().enumerate() {
            let start = Timestamp(first.0 + (p * PATCH_HOP_FRAMES) as u64 * self.hop.0);
            feats.tags.push(TagPatch {
                start,
                end: start + span,
                scores: Arc::new(o.scores),
                names: Arc::clone(&self.names),
                embedding: Arc::new(o.embedding),
            });
        }
        let consumed = n_patches * PATCH_HOP_FRAMES;
        self.frames.drain(..consumed * MEL_BANDS);
        self.first = Some(Timestamp(first.0 + consumed as u64 * self.hop.0));
        Ok(())
    }
}
