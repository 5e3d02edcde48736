//! The encoder threads of one stream: video (batches of frames) and audio (runs of chunks).

use super::audio::logmel::LogMelFrontEnd;
use super::{AudioEncoder, EncodeError, VideoEncoder};
use crate::core::edge::{EdgeReceiver, EdgeSender};
use crate::core::features::{Feature, VisionFeatures};
use crate::core::media::{AudioChunk, Frame, Modality};
use crate::core::stop::StopFlag;
use crate::core::timing::ModelTimes;
use std::sync::Arc;

/// Most frames taken from the edge for one batch.
pub const MAX_VIDEO_BATCH: usize = 8;

/// How a stage forms its batches.
#[derive(Debug, Clone)]
pub struct Batching {
    /// Recorded input (edges that block): batches are fixed by frame index (frames
    /// `8k .. 8k+8` together; audio in fixed runs of samples), so the same input gives
    /// the same batches — and the same numbers — however fast each stage runs. Live input
    /// takes whatever is waiting, to stay current.
    pub fixed: bool,
    /// The stream's stop request: once set, queued input is dropped, not analysed.
    pub stop: StopFlag,
    /// Where each encoder call's time goes (by encoder name).
    pub times: ModelTimes,
}

/// The next batch of frames: in fixed mode the frames of `first`'s index block (the frame
/// that starts the next block waits in `pending`), else what is waiting now.
fn next_video_batch(
    rx: &EdgeReceiver<Frame>,
    pending: &mut Option<Frame>,
    fixed: bool,
    batch: &mut Vec<Frame>,
) -> bool {
    batch.clear();
    let Some(first) = pending.take().or_else(|| rx.recv()) else {
        return false;
    };
    let block = first.index / MAX_VIDEO_BATCH as u64;
    batch.push(first);
    if !fixed {
        rx.drain_ready(MAX_VIDEO_BATCH, batch);
        return true;
    }
    while batch.len() < MAX_VIDEO_BATCH {
        match rx.recv() {
            Some(f) if f.index / MAX_VIDEO_BATCH as u64 == block => batch.push(f),
            Some(f) => {
                *pending = Some(f);
                break;
            }
            None => break,
        }
    }
    true
}

/// The video encoder stage: batches frames (see [`Batching`]), runs every encoder,
/// forwards the features; at the end of the edge it tells the aligner that video has ended.
/// `look` sees each frame with its features right after the encoders (snapshots);
/// `observe` each frame's features as they leave the stage (latency).
pub fn run_video_stage(
    mut encoders: Vec<Box<dyn VideoEncoder>>,
    rx: EdgeReceiver<Frame>,
    tx: EdgeSender<Feature>,
    batching: Batching,
    mut look: impl FnMut(&Frame, &VisionFeatures),
    mut observe: impl FnMut(&VisionFeatures),
) -> Result<(), EncodeError> {
    let mut batch = Vec::with_capacity(MAX_VIDEO_BATCH);
    let mut out = Vec::with_capacity(MAX_VIDEO_BATCH);
    let mut pending = None;
    // The newest frame's features wait for the next batch, so that at the end of the
    // stream the encoders can still add to them (tracks that end with the stream).
    let mut held: Option<VisionFeatures> = None;
    while next_video_batch(&rx, &mut pending, batching.fixed, &mut batch) {
        if batching.stop.is_set() {
            continue; // stopping: drop the backlog until the source's end of stream
        }
        out.clear();
        out.extend(batch.iter().map(VisionFeatures::for_frame));
        for enc in encoders.iter_mut() {
            batching
                .times
                .time(enc.name(), || enc.encode(&batch, &mut out))?;
        }
        for (frame, f) in batch.iter().zip(out.iter()) {
            look(frame, f);
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

/// Samples per audio batch on recorded input (0.5 s at 16 kHz).
pub const FIXED_AUDIO_RUN: usize = 8000;

/// Cuts contiguous audio into runs of [`FIXED_AUDIO_RUN`] samples counted from the start of
/// each contiguous stretch, whatever the sizes the chunks arrived in; a discontinuity ends
/// the run early.
#[derive(Default)]
struct FixedRuns {
    cur: Option<AudioChunk>,
}

impl FixedRuns {
    fn push(&mut self, c: AudioChunk, out: &mut Vec<AudioChunk>) {
        match self.cur.as_mut() {
            Some(cur)
                if !c.discont && cur.sample_rate == c.sample_rate && cur.channels == c.channels =>
            {
                cur.samples.extend_from_slice(&c.samples);
            }
            _ => {
                out.extend(self.cur.take());
                self.cur = Some(c);
            }
        }
        while let Some(cur) = self.cur.as_mut() {
            if cur.samples.len() < FIXED_AUDIO_RUN {
                break;
            }
            let rest = cur.samples.split_off(FIXED_AUDIO_RUN);
            let next = AudioChunk {
                stream: Arc::clone(&cur.stream),
                pts: cur
                    .pts
                    .plus_samples(FIXED_AUDIO_RUN as u64, cur.sample_rate),
                sample_rate: cur.sample_rate,
                channels: cur.channels,
                samples: rest,
                discont: false,
            };
            out.extend(self.cur.replace(next));
        }
        if self.cur.as_ref().is_some_and(|c| c.samples.is_empty()) {
            self.cur = None;
        }
    }

    fn finish(&mut self, out: &mut Vec<AudioChunk>) {
        out.extend(self.cur.take());
    }
}

/// The audio encoder stage: log-mel front end, then every audio encoder, per batch of
/// contiguous audio (see [`Batching`]).
pub fn run_audio_stage(
    mut front: LogMelFrontEnd,
    mut encoders: Vec<Box<dyn AudioEncoder>>,
    rx: EdgeReceiver<AudioChunk>,
    tx: EdgeSender<Feature>,
    batching: Batching,
) -> Result<(), EncodeError> {
    let mut waiting = Vec::with_capacity(MAX_AUDIO_BATCH);
    let mut runs = FixedRuns::default();
    // Samples the front end took without completing a frame (small live chunks): the
    // encoders get them with the next chunk, so every sample reaches them exactly once and
    // their sample-count timelines stay true.
    let mut carry: Option<AudioChunk> = None;
    let mut ended = false;
    while !ended {
        waiting.clear();
        let mut ready = Vec::new();
        match rx.recv() {
            Some(first) if batching.fixed => runs.push(first, &mut ready),
            Some(first) => {
                // Batch what is waiting: GStreamer delivers ~20 ms buffers, and every
                // encoder call has a fixed cost (a VAD forward per call, tensor set-up), so
                // contiguous chunks are joined into one before encoding. A discontinuity
                // starts a new batch.
                waiting.push(first);
                rx.drain_ready(MAX_AUDIO_BATCH, &mut waiting);
                ready = join_contiguous(&mut waiting);
            }
            None => {
                runs.finish(&mut ready);
                ended = true;
            }
        }
        if batching.stop.is_set() {
            continue; // stopping: drop the backlog until the source's end of stream
        }
        for chunk in ready {
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
                batching
                    .times
                    .time(enc.name(), || enc.encode(&chunk, &mut feats))?;
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

    #[test]
    fn fixed_runs_do_not_depend_on_how_chunks_arrive() {
        let cut = |sizes: &[usize]| {
            let mut r = FixedRuns::default();
            let mut out = Vec::new();
            let mut pts = 0u64;
            for &n in sizes {
                r.push(chunk(n, pts, pts == 0), &mut out);
                pts += n as u64 * 1_000_000_000 / 16_000;
            }
            r.finish(&mut out);
            out.iter()
                .map(|c| (c.pts, c.samples.len(), c.discont))
                .collect::<Vec<_>>()
        };
        let a = cut(&[320; 100]);
        let b = cut(&[20_000, 12_000]);
        let c = cut(&[7_999, 1, 24_000]);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 4);
        assert_eq!(a[1].0, Timestamp(500_000_000));
        assert!(a[0].2 && !a[1].2);
    }
}
