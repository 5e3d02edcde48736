//! The encoder threads of one stream: video (batches of frames) and audio (runs of chunks).

use super::audio::logmel::LogMelFrontEnd;
use super::{AudioEncoder, EncodeError, VideoEncoder};
use crate::core::edge::{EdgeReceiver, EdgeSender};
use crate::core::features::{Feature, VisionFeatures};
use crate::core::media::{AudioChunk, Frame, Modality};
use std::sync::Arc;

/// Most frames taken from the edge for one batch.
pub const MAX_VIDEO_BATCH: usize = 8;

/// The video encoder stage: batches what is waiting, runs every encoder, forwards the
/// features; at the end of the edge it tells the aligner that video has ended.
pub fn run_video_stage(
    mut encoders: Vec<Box<dyn VideoEncoder>>,
    rx: EdgeReceiver<Frame>,
    tx: EdgeSender<Feature>,
    mut observe: impl FnMut(&VisionFeatures),
) -> Result<(), EncodeError> {
    let mut batch = Vec::with_capacity(MAX_VIDEO_BATCH);
    let mut out = Vec::with_capacity(MAX_VIDEO_BATCH);
    // The newest frame's features wait for the next batch, so that at the end of the
    // stream the encoders can still add to them (tracks that end with the stream).
    let mut held: Option<VisionFeatures> = None;
    while let Some(first) = rx.recv() {
        batch.clear();
        batch.push(first);
        rx.drain_ready(MAX_VIDEO_BATCH, &mut batch);
        out.clear();
        out.extend(batch.iter().map(VisionFeatures::for_frame));
        for enc in encoders.iter_mut() {
            enc.encode(&batch, &mut out)?;
        }
        let newest = out.pop();
        for f in held.take().into_iter().chain(out.drain(..)) {
            observe(&f);
            if tx.send(Feature::Vision(Arc::new(f))).is_err() {
                return Ok(()); // downstream stopped: nothing left to do
            }
        }
        held = newest;
    }
    if let Some(mut last) = held {
        for enc in encoders.iter_mut() {
            enc.finish(&mut last)?;
        }
        let _ = tx.send(Feature::Vision(Arc::new(last)));
    }
    let _ = tx.send(Feature::End(Modality::Video));
    Ok(())
}

/// Most audio chunks joined into one batch.
pub const MAX_AUDIO_BATCH: usize = 64;

/// Joins runs of chunks that follow each other without a discontinuity.
fn join_contiguous(chunks: &mut Vec<AudioChunk>) -> Vec<AudioChunk> {
    let mut out: Vec<AudioChunk> = Vec::new();
    for c in chunks.drain(..) {
        match out.last_mut() {
            Some(last)
                if !c.discont
                    && last.sample_rate == c.sample_rate
                    && last.channels == c.channels =>
            {
                last.samples.extend_from_slice(&c.samples);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The audio encoder stage: log-mel front end, then every audio encoder, per chunk.
pub fn run_audio_stage(
    mut front: LogMelFrontEnd,
    mut encoders: Vec<Box<dyn AudioEncoder>>,
    rx: EdgeReceiver<AudioChunk>,
    tx: EdgeSender<Feature>,
) -> Result<(), EncodeError> {
    let mut waiting = Vec::with_capacity(MAX_AUDIO_BATCH);
    // Samples the front end took without completing a frame (small live chunks): the
    // encoders get them with the next chunk, so every sample reaches them exactly once and
    // their sample-count timelines stay true.
    let mut carry: Option<AudioChunk> = None;
    while let Some(first) = rx.recv() {
        // Batch what is waiting: GStreamer delivers ~20 ms buffers, and every encoder call
        // has a fixed cost (a VAD forward per call, tensor set-up), so contiguous chunks are
        // joined into one before encoding. A discontinuity starts a new batch.
        waiting.clear();
        waiting.push(first);
        rx.drain_ready(MAX_AUDIO_BATCH, &mut waiting);
        for chunk in join_contiguous(&mut waiting) {
            let feats = front.push(&chunk)?;
            let chunk = match carry.take() {
                Some(mut c) if !chunk.discont => {
                    c.samples.extend_from_slice(&chunk.samples);
                    c
                }
                _ => chunk,
            };
            let Some(mut feats) = feats else {
                carry = Some(chunk);
                continue;
            };
            for enc in encoders.iter_mut() {
                enc.encode(&chunk, &mut feats)?;
            }
            if tx.send(Feature::Audio(Arc::new(feats))).is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx.send(Feature::End(Modality::Audio));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::Timestamp;

    fn chunk(n: usize, pts: u64, discont: bool) -> AudioChunk {
        AudioChunk {
            stream: Arc::from("s"),
            pts: Timestamp(pts),
            sample_rate: crate::core::media::AUDIO_RATE,
            channels: 1,
            samples: vec![0.0; n],
            discont,
        }
    }

    #[test]
    fn contiguous_chunks_are_joined_and_a_discontinuity_splits() {
        let mut v = vec![
            chunk(100, 0, true),
            chunk(50, 1, false),
            chunk(30, 9, true),
            chunk(20, 10, false),
        ];
        let j = join_contiguous(&mut v);
        assert_eq!(
            j.iter().map(|c| c.samples.len()).collect::<Vec<_>>(),
            vec![150, 50]
        );
        assert_eq!(
            (j[0].pts, j[1].pts, j[1].discont),
            (Timestamp(0), Timestamp(9), true)
        );
    }
}
