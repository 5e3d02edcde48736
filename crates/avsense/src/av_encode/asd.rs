//! Light-ASD over a stream: each face's crops and the stream's MFCC in, a speaking logit per
//! face per 25 fps tick out, with bounded memory and bounded delay.
//!
//! * **Audio**: MFCC frames are grouped by tick (4 per tick); the audio front end embeds
//!   them in blocks of `block` ticks with [`AUDIO_CONTEXT`] ticks of real context either
//!   side, which makes every embedding equal to that of one pass over the whole contiguous
//!   audio (see [`avsense_nn::models::lightasd`]). A gap in the audio ends a run; ticks
//!   in a gap have no audio embedding.
//! * **Faces**: each face track's crops form *segments* of consecutive ticks (a face lost
//!   for longer than the face encoder's hold starts a new segment). The visual front end
//!   embeds a segment in blocks the same way ([`VISUAL_CONTEXT`]); blocks of the same shape
//!   from different faces go through one batched forward.
//! * **Back end**: like upstream's evaluation (which averages the scores of chunks of 1, 2,
//!   3, 4, 5 and 6 s), each segment is cut into chunks of every length in `durations`,
//!   on grids from the segment's first tick; each chunk runs the GRU back end on
//!   `audio + visual` embeddings; a tick's logit is the mean over the durations. Chunks of
//!   one length from every face go through one batched call. Ticks without audio get no
//!   logit (nobody is heard, so nobody is an active speaker there).
//!
//! A tick's logit is final once every duration's chunk that holds it has run; the delay is
//! the longest duration (plus one embedding block while a face is still in view).

use crate::encode::audio::mfcc::MfccRun;
use avsense_nn::models::lightasd::{
    LightAsd, LightAsdError, AUDIO_CONTEXT, CROP, EMBED, MFCC_DIM, MFCC_PER_FRAME, VISUAL_CONTEXT,
};
use avsense_nn::models::sync::{SyncHead, SyncInput};
use candle_core::Tensor;
use std::collections::VecDeque;
use std::sync::Arc;

/// An embedding.
type Emb = [f32; EMBED];
/// The MFCC of one tick (4 frames × 13).
type TickMfcc = [f32; MFCC_PER_FRAME * MFCC_DIM];

/// Items indexed by tick from `base`.
#[derive(Debug, Clone)]
struct TickBuf<T> {
    base: u64,
    items: VecDeque<T>,
}

impl<T> TickBuf<T> {
    fn new(base: u64) -> Self {
        Self {
            base,
            items: VecDeque::new(),
        }
    }
    fn end(&self) -> u64 {
        self.base + self.items.len() as u64
    }
    fn get(&self, tick: u64) -> Option<&T> {
        tick.checked_sub(self.base)
            .and_then(|i| self.items.get(i as usize))
    }
    fn get_mut(&mut self, tick: u64) -> Option<&mut T> {
        tick.checked_sub(self.base)
            .and_then(|i| self.items.get_mut(i as usize))
    }
    fn push(&mut self, v: T) {
        self.items.push_back(v);
    }
    /// Drops the items before `tick` (never moves past the last item: `end` stays).
    fn forget_before(&mut self, tick: u64) {
        while self.base < tick && !self.items.is_empty() {
            self.items.pop_front();
            self.base += 1;
        }
    }
}

/// Settings of the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct AsdConfig {
    /// Back-end chunk lengths, ticks.
    pub durations: Vec<usize>,
    /// Front-end block length, ticks.
    pub block: usize,
}

impl Default for AsdConfig {
    fn default() -> Self {
        Self {
            durations: vec![25, 50, 75],
            block: 50,
        }
    }
}

/// Counters and time spent, for the summary and the benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct AsdStats {
    /// Face-ticks through the visual front end (context included).
    pub visual_frames: u64,
    /// Visual front-end calls.
    pub visual_calls: u64,
    /// Ticks through the audio front end (context included).
    pub audio_frames: u64,
    /// Back-end chunks scored.
    pub chunks: u64,
    /// Back-end calls.
    pub backend_calls: u64,
    /// Face-ticks given a final logit.
    pub scored_ticks: u64,
    /// Face-ticks without audio (no logit).
    pub unheard_ticks: u64,
    /// Face segments started.
    pub segments: u64,
    /// Seconds in the visual front end, the audio front end and the back end.
    pub visual_seconds: f64,
    /// Seconds in the audio front end.
    pub audio_seconds: f64,
    /// Seconds in the back end.
    pub backend_seconds: f64,
    /// Seconds in the sync head.
    pub sync_seconds: f64,
}

/// One face in one frame, as the runner takes it.
#[derive(Debug, Clone)]
pub struct FaceInput {
    /// The face track.
    pub track: u64,
    /// The person track holding it.
    pub person: Option<u64>,
    /// Its box (normalised).
    pub bbox: [f32; 4],
    /// The 112×112 crop.
    pub crop: Arc<[u8]>,
    /// Mouth motion since the previous crop (see [`crate::encode::video::faces::FaceObservation`]).
    pub motion: Option<f32>,
}

/// Ticks before a tick over which its audio-visual synchrony is measured (5 s).
pub const SYNC_PAST: u64 = 125;
/// Ticks after it (3 s: the longest default back-end chunk, so no extra delay).
pub const SYNC_FUTURE: u64 = 75;
/// Lags (ticks, either way) the synchrony averages over: tolerates A/V offsets of ±160 ms.
pub const SYNC_LAGS: i64 = 4;
/// Fewest paired samples for a correlation.
const SYNC_MIN_PAIRS: usize = 12;

/// Autocorrelation lags used for the effective sample size.
const SYNC_ACF_LAGS: usize = 10;

/// Pearson correlation of two equally long series; None when too short or one is flat.
fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < SYNC_MIN_PAIRS || a.len() != b.len() {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    let d = (saa * sbb).sqrt();
    (d > 1e-12).then(|| sab / d)
}

/// Autocorrelation of `x` at lag `k`.
fn acf(x: &[f64], k: usize) -> f64 {
    if k >= x.len() {
        return 0.0;
    }
    pearson(&x[..x.len() - k], &x[k..]).unwrap_or(0.0)
}

/// The synchrony of a mouth-motion series with the audio energy: the correlation `r`
/// (averaged over the lags), the effective number of independent samples (Bartlett:
/// `N / (1 + 2 Σ_k ρ_m(k) ρ_e(k))`, both series being smooth in time) and the Fisher
/// statistic `z = atanh(r) · √(N_eff − 3)` — about standard normal for unrelated series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sync {
    /// Mean correlation over the lags.
    pub r: f32,
    /// Effective samples.
    pub n_eff: f32,
    /// Fisher z statistic.
    pub z: f32,
}

/// One face's logit at one tick, final.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceTick {
    /// The face track.
    pub track: u64,
    /// The person track holding the face (the latest seen in the segment).
    pub person: Option<u64>,
    /// The segment (unique within the runner).
    pub segment: u64,
    /// The tick.
    pub tick: u64,
    /// Light-ASD's logit (mean over the durations); None where there was no audio.
    pub logit: Option<f32>,
    /// The sync head's probability that this face makes the sound heard around the tick
    /// (Light-ASD's embeddings over ± the head's half window); None without a head, audio
    /// or enough ticks.
    pub av_sync: Option<f32>,
    /// Audio-visual synchrony of the face's mouth motion with the audio's log energy from
    /// [`SYNC_PAST`] ticks before to [`SYNC_FUTURE`] after, averaged over lags of
    /// ±[`SYNC_LAGS`] ticks; None where too little of either was there.
    pub sync: Option<Sync>,
    /// The face's box (normalised) at that tick.
    pub bbox: [f32; 4],
}

/// A face track's run of consecutive ticks.
#[derive(Debug)]
struct Segment {
    id: u64,
    track: u64,
    person: Option<u64>,
    first: u64,
    closed: bool,
    crops: TickBuf<Arc<[u8]>>,
    boxes: TickBuf<[f32; 4]>,
    motion: TickBuf<Option<f32>>,
    emb: TickBuf<Emb>,
    /// Per duration: the first tick of the next chunk to score.
    next_chunk: Vec<u64>,
    /// Per tick: (sum of logits, logits, durations done).
    acc: TickBuf<(f32, u16, u16)>,
    /// Ticks before this were handed out.
    emitted: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.crops.end()
    }
}

/// Light-ASD's embeddings as they were computed, for training the sync head
/// ([`AsdRunner::capture`]).
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// Per audio tick: its embedding.
    pub audio: Vec<(u64, [f32; EMBED])>,
    /// Per face tick: (segment, face track, tick, embedding).
    pub visual: Vec<(u64, u64, u64, [f32; EMBED])>,
}

/// The per-stream runner (see the module doc).
pub struct AsdRunner {
    model: LightAsd,
    sync: Option<SyncHead>,
    capture: Option<Captured>,
    cfg: AsdConfig,
    // Audio.
    partial: Vec<[f32; MFCC_DIM]>,
    next_mfcc: Option<u64>,
    run_start: u64,
    mfcc: TickBuf<TickMfcc>,
    audio_emb: TickBuf<Option<Emb>>,
    /// Log frame energy (MFCC c0, mean of the tick's 4 frames) per tick; None in gaps.
    energy: TickBuf<Option<f32>>,
    audio_closed: bool,
    audio_ended: bool,
    // Faces.
    segments: Vec<Segment>,
    next_segment: u64,
    video_progress: u64,
    video_ended: bool,
    stats: AsdStats,
}

impl AsdRunner {
    /// A runner of `model` with `cfg`.
    pub fn new(model: LightAsd, cfg: AsdConfig) -> Self {
        Self {
            model,
            sync: None,
            capture: None,
            cfg,
            partial: Vec::new(),
            next_mfcc: None,
            run_start: 0,
            mfcc: TickBuf::new(0),
            audio_emb: TickBuf::new(0),
            energy: TickBuf::new(0),
            audio_closed: false,
            audio_ended: false,
            segments: Vec::new(),
            next_segment: 1,
            video_progress: 0,
            video_ended: false,
            stats: AsdStats::default(),
        }
    }

    /// Scores every final tick with `head` too ([`FaceTick::av_sync`]); a tick is then
    /// final once the head's window is embedded as well.
    pub fn with_sync(mut self, head: SyncHead) -> Self {
        self.sync = Some(head);
        self
    }

    /// Keeps every embedding computed from now on (training data for the sync head; the
    /// memory grows with the input, so only for clips).
    pub fn capture(&mut self) {
        self.capture = Some(Captured::default());
    }

    /// The embeddings captured so far (empty unless [`Self::capture`] was called).
    pub fn take_captured(&mut self) -> Captured {
        self.capture
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The sync head's half window and offset reach, ticks (0, 0 without a head).
    fn sync_span(&self) -> (u64, u64) {
        self.sync.as_ref().map_or((0, 0), |h| {
            (h.spec().half_window as u64, h.spec().reach() as u64)
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> AsdStats {
        self.stats
    }

    /// Ticks before this have been seen by video and audio (or will never come).
    pub fn input_progress(&self) -> u64 {
        let audio = if self.audio_ended {
            u64::MAX
        } else {
            self.mfcc.end().max(self.audio_emb.end())
        };
        let video = if self.video_ended {
            u64::MAX
        } else {
            self.video_progress
        };
        audio.min(video)
    }

    /// Ticks before this have every face's final logit: nothing before it can change.
    pub fn settled(&self) -> u64 {
        let mut s = if self.video_ended {
            u64::MAX
        } else {
            self.video_progress
        };
        for seg in &self.segments {
            s = s.min(seg.emitted.max(seg.first));
        }
        s
    }

    /// Adds MFCC frames (the audio stage's run).
    pub fn push_mfcc(&mut self, run: &MfccRun) -> Result<(), LightAsdError> {
        if run.frames.is_empty() {
            return Ok(());
        }
        if self.next_mfcc != Some(run.first) {
            // A discontinuity (or the first run): close the run so far and start anew at
            // the next tick boundary.
            self.close_audio_run()?;
            self.partial.clear();
            let start_tick = run.first.div_ceil(MFCC_PER_FRAME as u64);
            let skip = (start_tick * MFCC_PER_FRAME as u64 - run.first) as usize;
            // Ticks between the last audio and this run have no audio.
            if self.audio_emb.items.is_empty() && self.audio_emb.base == 0 {
                self.audio_emb = TickBuf::new(start_tick);
                self.energy = TickBuf::new(start_tick);
            }
            while self.audio_emb.end() < start_tick {
                self.audio_emb.push(None);
            }
            while self.energy.end() < start_tick {
                self.energy.push(None);
            }
            self.mfcc = TickBuf::new(start_tick);
            self.run_start = start_tick;
            self.audio_closed = false;
            self.partial.extend(run.frames.iter().skip(skip).copied());
        } else {
            self.partial.extend_from_slice(&run.frames);
        }
        self.next_mfcc = Some(run.first + run.frames.len() as u64);
        let whole = self.partial.len() / MFCC_PER_FRAME * MFCC_PER_FRAME;
        for four in self.partial[..whole].chunks_exact(MFCC_PER_FRAME) {
            let mut t = [0f32; MFCC_PER_FRAME * MFCC_DIM];
            for (k, f) in four.iter().enumerate() {
                t[k * MFCC_DIM..(k + 1) * MFCC_DIM].copy_from_slice(f);
            }
            self.mfcc.push(t);
            // c0 is the log frame energy (python_speech_features' appendEnergy).
            let c0 = four.iter().map(|f| f[0]).sum::<f32>() / MFCC_PER_FRAME as f32;
            if self.energy.end() < self.mfcc.end() {
                self.energy.push(Some(c0));
            }
        }
        self.partial.drain(..whole);
        self.embed_audio()
    }

    /// The audio has ended (or is absent): every later tick is unheard.
    pub fn end_audio(&mut self) -> Result<(), LightAsdError> {
        self.close_audio_run()?;
        self.audio_ended = true;
        Ok(())
    }

    fn close_audio_run(&mut self) -> Result<(), LightAsdError> {
        self.audio_closed = true;
        self.embed_audio()
    }

    /// Embeds the audio ticks whose context is complete.
    fn embed_audio(&mut self) -> Result<(), LightAsdError> {
        loop {
            let a = self.audio_emb.end().max(self.mfcc.base);
            let avail = self.mfcc.end();
            let limit = if self.audio_closed {
                avail
            } else {
                avail.saturating_sub(AUDIO_CONTEXT as u64)
            };
            let b = (a + self.cfg.block as u64).min(limit);
            // Whole blocks only while the run goes on: each block recomputes its context.
            if b <= a || (!self.audio_closed && b < a + self.cfg.block as u64) {
                return Ok(());
            }
            let lo = a
                .saturating_sub(AUDIO_CONTEXT as u64)
                .max(self.run_start)
                .max(self.mfcc.base);
            let hi = (b + AUDIO_CONTEXT as u64).min(avail);
            let n = (hi - lo) as usize;
            let mut v = Vec::with_capacity(n * MFCC_PER_FRAME * MFCC_DIM);
            for t in lo..hi {
                if let Some(m) = self.mfcc.get(t) {
                    v.extend_from_slice(m);
                }
            }
            let started = std::time::Instant::now();
            let x = Tensor::from_vec(v, (1, n * MFCC_PER_FRAME, MFCC_DIM), self.model.device())
                .map_err(tensor("audio input"))?;
            let e = self.model.audio_embed(&x)?;
            let rows = rows_of(&e.squeeze(0).map_err(tensor("audio output"))?)?;
            self.stats.audio_seconds += started.elapsed().as_secs_f64();
            self.stats.audio_frames += n as u64;
            while self.audio_emb.end() < a {
                self.audio_emb.push(None);
            }
            for t in a..b {
                let row = rows.get((t - lo) as usize).copied();
                if let (Some(c), Some(r)) = (self.capture.as_mut(), row) {
                    c.audio.push((t, r));
                }
                self.audio_emb.push(row);
            }
            // MFCC before the next block's left context is no longer needed.
            self.mfcc
                .forget_before(b.saturating_sub(AUDIO_CONTEXT as u64));
        }
    }

    /// Adds one frame's faces for its ticks.
    pub fn push_faces(&mut self, ticks: std::ops::Range<u64>, faces: &[FaceInput]) {
        for (k, tick) in ticks.clone().enumerate() {
            for seg in self.segments.iter_mut().filter(|s| !s.closed) {
                // A face not in this frame, or one that skipped ticks, ends its segment.
                let present = faces.iter().any(|f| f.track == seg.track);
                if !present || seg.end() != tick {
                    seg.closed = true;
                }
            }
            for f in faces {
                let (track, person, bbox, crop) = (&f.track, &f.person, &f.bbox, &f.crop);
                if crop.len() != CROP * CROP {
                    continue;
                }
                let idx = self
                    .segments
                    .iter()
                    .position(|s| !s.closed && s.track == *track);
                let seg = match idx {
                    Some(i) => &mut self.segments[i],
                    None => {
                        self.stats.segments += 1;
                        self.segments.push(Segment {
                            id: self.next_segment,
                            track: *track,
                            person: *person,
                            first: tick,
                            closed: false,
                            crops: TickBuf::new(tick),
                            boxes: TickBuf::new(tick),
                            motion: TickBuf::new(tick),
                            emb: TickBuf::new(tick),
                            next_chunk: vec![tick; self.cfg.durations.len()],
                            acc: TickBuf::new(tick),
                            emitted: tick,
                        });
                        self.next_segment += 1;
                        let n = self.segments.len() - 1;
                        &mut self.segments[n]
                    }
                };
                if person.is_some() {
                    seg.person = *person;
                }
                // A frame repeated for several ticks did not move in between.
                let new_segment = seg.first == tick;
                seg.motion.push(match (k, new_segment) {
                    (_, true) => None,
                    (0, false) => f.motion,
                    _ => Some(0.0),
                });
                seg.crops.push(Arc::clone(crop));
                seg.boxes.push(*bbox);
                seg.acc.push((0.0, 0, 0));
            }
        }
        if ticks.end > self.video_progress {
            self.video_progress = ticks.end;
        }
        // A tick with no faces at all also ends every open segment.
        if ticks.is_empty() {
            return;
        }
        for seg in self.segments.iter_mut() {
            if !seg.closed && seg.end() < self.video_progress {
                seg.closed = true;
            }
        }
    }

    /// No MFCC will come any more for the ticks before `tick` (the aligner has passed them):
    /// an audio run that stopped short of it ends, and the ticks up to it are unheard.
    pub fn audio_absent_before(&mut self, tick: u64) -> Result<(), LightAsdError> {
        if self.audio_ended || self.audio_emb.end() >= tick || self.mfcc.end() >= tick {
            return Ok(());
        }
        self.close_audio_run()?;
        while self.audio_emb.end() < tick {
            self.audio_emb.push(None);
        }
        while self.energy.end() < tick {
            self.energy.push(None);
        }
        self.next_mfcc = None;
        self.partial.clear();
        Ok(())
    }

    /// No frame will come any more for the ticks before `tick`: faces that did not go on
    /// end their segments.
    pub fn video_absent_before(&mut self, tick: u64) {
        if tick > self.video_progress {
            self.video_progress = tick;
        }
        for seg in self.segments.iter_mut() {
            if !seg.closed && seg.end() < self.video_progress {
                seg.closed = true;
            }
        }
    }

    /// The video has ended: every open segment ends.
    pub fn end_video(&mut self) {
        self.video_ended = true;
        for seg in self.segments.iter_mut() {
            seg.closed = true;
        }
    }

    /// Runs what is ready; returns the ticks that became final (in tick order per face)
    /// and the segments that ended (every tick of theirs handed out).
    pub fn poll(&mut self) -> Result<(Vec<FaceTick>, Vec<u64>), LightAsdError> {
        self.embed_audio()?;
        self.embed_faces()?;
        self.score_chunks()?;
        self.take_final()
    }

    /// Visual embeddings of every segment whose context is complete, batched by shape.
    fn embed_faces(&mut self) -> Result<(), LightAsdError> {
        loop {
            // (segment index, input range, output range) per ready block.
            let mut jobs: Vec<(usize, u64, u64, u64, u64)> = Vec::new();
            for (i, s) in self.segments.iter().enumerate() {
                let a = s.emb.end();
                let avail = s.end();
                let limit = if s.closed {
                    avail
                } else {
                    avail.saturating_sub(VISUAL_CONTEXT as u64)
                };
                let b = (a + self.cfg.block as u64).min(limit);
                // Whole blocks only while the face is in view: each block recomputes its
                // context frames.
                if b <= a || (!s.closed && b < a + self.cfg.block as u64) {
                    continue;
                }
                let lo = a
                    .saturating_sub(VISUAL_CONTEXT as u64)
                    .max(s.first)
                    .max(s.crops.base);
                let hi = (b + VISUAL_CONTEXT as u64).min(avail);
                jobs.push((i, lo, hi, a, b));
            }
            if jobs.is_empty() {
                return Ok(());
            }
            // Group blocks of one shape (input length, output offset and length).
            let shape = |j: &(usize, u64, u64, u64, u64)| (j.2 - j.1, j.3 - j.1, j.4 - j.3);
            let first = shape(&jobs[0]);
            let group: Vec<_> = jobs.iter().filter(|j| shape(j) == first).copied().collect();
            let (n_in, off, n_out) = first;
            let mut pixels: Vec<f32> =
                Vec::with_capacity(group.len() * n_in as usize * CROP * CROP);
            for &(i, lo, hi, _, _) in &group {
                for t in lo..hi {
                    match self.segments[i].crops.get(t) {
                        Some(c) => pixels.extend(c.iter().map(|&p| f32::from(p))),
                        None => pixels.extend(std::iter::repeat_n(0.0, CROP * CROP)),
                    }
                }
            }
            let started = std::time::Instant::now();
            let x = Tensor::from_vec(
                pixels,
                (group.len(), n_in as usize, CROP, CROP),
                self.model.device(),
            )
            .map_err(tensor("visual input"))?;
            let e = self.model.visual_embed(&x)?;
            self.stats.visual_seconds += started.elapsed().as_secs_f64();
            self.stats.visual_frames += group.len() as u64 * n_in;
            self.stats.visual_calls += 1;
            for (g, &(i, _, _, _, b)) in group.iter().enumerate() {
                let rows = rows_of(
                    &e.get(g)
                        .and_then(|t| t.narrow(0, off as usize, n_out as usize))
                        .map_err(tensor("visual output"))?,
                )?;
                let s = &mut self.segments[i];
                for r in rows {
                    if let Some(c) = self.capture.as_mut() {
                        c.visual.push((s.id, s.track, s.emb.end(), r));
                    }
                    s.emb.push(r);
                }

                debug_assert_eq!(s.emb.end(), b);
                s.crops
                    .forget_before(b.saturating_sub(VISUAL_CONTEXT as u64));
            }
        }
    }

    /// Whether the audio of every tick before `tick` is known (embedded or missing).
    fn audio_known_until(&self, tick: u64) -> bool {
        self.audio_ended || self.audio_emb.end() >= tick
    }

    /// Runs the back end on every chunk whose embeddings are complete, batched by length.
    fn score_chunks(&mut self) -> Result<(), LightAsdError> {
        // (segment, duration index, chunk start, chunk end) of every ready chunk.
        let mut ready: Vec<(usize, usize, u64, u64)> = Vec::new();
        for (i, s) in self.segments.iter().enumerate() {
            for (d, &len) in self.cfg.durations.iter().enumerate() {
                let mut cs = s.next_chunk[d];
                loop {
                    let full = cs + len as u64;
                    let ce = if s.closed { full.min(s.end()) } else { full };
                    if ce <= cs || s.emb.end() < ce || !self.audio_known_until(ce) {
                        break;
                    }
                    ready.push((i, d, cs, ce));
                    cs = ce;
                }
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        // Pieces of consecutive heard ticks: (segment, duration, start, end).
        let mut pieces: Vec<(usize, usize, u64, u64)> = Vec::new();
        for &(i, d, cs, ce) in &ready {
            let mut start: Option<u64> = None;
            for t in cs..ce {
                let heard = matches!(self.audio_emb.get(t), Some(Some(_)));
                match (heard, start) {
                    (true, None) => start = Some(t),
                    (false, Some(s0)) => {
                        pieces.push((i, d, s0, t));
                        start = None;
                    }
                    _ => {}
                }
                if !heard {
                    if let Some(acc) = self.segments[i].acc.get_mut(t) {
                        acc.2 += 1;
                    }
                }
            }
            if let Some(s0) = start {
                pieces.push((i, d, s0, ce));
            }
            self.segments[i].next_chunk[d] = ce;
            self.stats.chunks += 1;
        }
        let mut lengths: Vec<u64> = pieces.iter().map(|p| p.3 - p.2).collect();
        lengths.sort_unstable();
        lengths.dedup();
        for len in lengths {
            let group: Vec<_> = pieces
                .iter()
                .filter(|p| p.3 - p.2 == len)
                .copied()
                .collect();
            let (mut av, mut vv) = (Vec::new(), Vec::new());
            for &(i, _, s0, s1) in &group {
                for t in s0..s1 {
                    let a = self.audio_emb.get(t).and_then(|x| x.as_ref());
                    let v = self.segments[i].emb.get(t);
                    match (a, v) {
                        (Some(a), Some(v)) => {
                            av.extend_from_slice(a);
                            vv.extend_from_slice(v);
                        }
                        _ => {
                            return Err(LightAsdError::Input(format!(
                                "tick {t}: embedding missing for a ready chunk"
                            )))
                        }
                    }
                }
            }
            let started = std::time::Instant::now();
            let dev = self.model.device();
            let shape = (group.len(), len as usize, EMBED);
            let a = Tensor::from_vec(av, shape, dev).map_err(tensor("back-end input"))?;
            let v = Tensor::from_vec(vv, shape, dev).map_err(tensor("back-end input"))?;
            let h = self.model.backend(&a, &v)?;
            let logits = self
                .model
                .av_scores(&h)?
                .to_vec2::<f32>()
                .map_err(tensor("back-end output"))?;
            self.stats.backend_seconds += started.elapsed().as_secs_f64();
            self.stats.backend_calls += 1;
            for (row, &(i, _, s0, _)) in logits.iter().zip(&group) {
                let seg = &mut self.segments[i];
                for (k, &l) in row.iter().enumerate() {
                    if let Some(acc) = seg.acc.get_mut(s0 + k as u64) {
                        acc.0 += l;
                        acc.1 += 1;
                        acc.2 += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands out the ticks every duration has scored; forgets what is no longer needed.
    fn take_final(&mut self) -> Result<(Vec<FaceTick>, Vec<u64>), LightAsdError> {
        let n_d = self.cfg.durations.len() as u16;
        let (half, reach) = self.sync_span();
        let scoring = self.sync.is_some();
        let mut out = Vec::new();
        // Per tick handed out: its sync window's embeddings.
        let mut windows: Vec<SyncInput> = Vec::new();
        let energy_known = if self.audio_ended {
            u64::MAX
        } else {
            self.energy.end()
        };
        for seg in self.segments.iter_mut() {
            while let Some(&(sum, n, done)) = seg.acc.get(seg.emitted) {
                if done < n_d {
                    break;
                }
                let t = seg.emitted;
                // The synchrony needs its window: motion and energy up to t + half + lags.
                let needed = t + SYNC_FUTURE + SYNC_LAGS as u64;
                if !(seg.closed || seg.end() > needed) || energy_known <= needed {
                    break;
                }
                // The sync head's window: visual embeddings to t + half (or the segment's
                // end) and the audio known to t + half + reach.
                let last = (t + half).min(seg.end().saturating_sub(1));
                if scoring
                    && (seg.emb.end() <= last
                        || !(self.audio_ended || self.audio_emb.end() > t + half + reach))
                {
                    break;
                }
                let logit = (n > 0).then(|| sum / f32::from(n));
                let sync = synchrony(seg, &self.energy, t);
                if logit.is_some() {
                    self.stats.scored_ticks += 1;
                } else {
                    self.stats.unheard_ticks += 1;
                }
                if scoring {
                    let at =
                        |s: Option<u64>| s.and_then(|s| self.audio_emb.get(s).copied().flatten());
                    let visual = (0..=2 * half)
                        .map(|k| {
                            (t + k)
                                .checked_sub(half)
                                .and_then(|s| seg.emb.get(s).copied())
                        })
                        .collect();
                    let audio = (0..=2 * (half + reach))
                        .map(|k| at((t + k).checked_sub(half + reach)))
                        .collect();
                    windows.push(SyncInput { visual, audio });
                }
                out.push(FaceTick {
                    track: seg.track,
                    person: seg.person,
                    segment: seg.id,
                    tick: t,
                    logit,
                    av_sync: None,
                    sync,
                    bbox: seg.boxes.get(t).copied().unwrap_or_default(),
                });
                seg.emitted += 1;
            }
            let oldest_chunk = seg.next_chunk.iter().copied().min().unwrap_or(seg.emitted);
            seg.emb
                .forget_before(oldest_chunk.min(seg.emitted.saturating_sub(half)));
            seg.acc.forget_before(seg.emitted);
            seg.boxes.forget_before(seg.emitted);
            let keep = seg.emitted.saturating_sub(SYNC_PAST + SYNC_LAGS as u64);
            seg.motion.forget_before(keep);
        }
        // Finished segments go; audio older than every open segment's oldest chunk goes.
        let mut ended = Vec::new();
        self.segments.retain(|s| {
            let done = s.closed && s.emitted >= s.end();
            if done {
                ended.push(s.id);
            }
            !done
        });
        let keep_audio = self
            .segments
            .iter()
            .map(|s| {
                s.next_chunk
                    .iter()
                    .copied()
                    .min()
                    .unwrap_or(s.emitted)
                    .min(s.emitted.saturating_sub(half + reach))
            })
            .min()
            .unwrap_or(self.video_progress)
            .min(self.video_progress.saturating_sub(half + reach));
        self.audio_emb.forget_before(keep_audio);
        let keep_energy = self
            .segments
            .iter()
            .map(|s| s.emitted)
            .min()
            .unwrap_or(self.video_progress)
            .min(self.video_progress)
            .saturating_sub(SYNC_PAST + SYNC_LAGS as u64);
        self.energy.forget_before(keep_energy);
        if let Some(head) = &self.sync {
            let started = std::time::Instant::now();
            let probs = head.score(&windows).map_err(|e| match e {
                // Scoring fails only in a tensor operation; the head's error keeps its cause.
                avsense_nn::models::sync::SyncError::Tensor { stage, source } => {
                    LightAsdError::Tensor { stage, source }
                }
                other => LightAsdError::Input(other.to_string()),
            })?;
            for (f, p) in out.iter_mut().zip(probs) {
                f.av_sync = p;
            }
            self.stats.sync_seconds += started.elapsed().as_secs_f64();
        }
        Ok((out, ended))
    }
}

/// The synchrony of a segment's tick `t` (see [`FaceTick::sync`]).
fn synchrony(seg: &Segment, energy: &TickBuf<Option<f32>>, t: u64) -> Option<Sync> {
    let lo = t.saturating_sub(SYNC_PAST).max(seg.first);
    let hi = (t + SYNC_FUTURE + 1).min(seg.end());
    let (mut rs, mut n_eff) = (Vec::new(), f64::INFINITY);
    let (mut m, mut e) = (Vec::new(), Vec::new());
    for lag in -SYNC_LAGS..=SYNC_LAGS {
        m.clear();
        e.clear();
        for s in lo..hi {
            let Some(Some(mv)) = seg.motion.get(s) else {
                continue;
            };
            let Some(a) = s.checked_add_signed(lag) else {
                continue;
            };
            if let Some(Some(ev)) = energy.get(a) {
                m.push(f64::from(*mv));
                e.push(f64::from(*ev));
            }
        }
        if let Some(r) = pearson(&m, &e) {
            rs.push(r);
            let inflation: f64 = (1..=SYNC_ACF_LAGS).map(|k| acf(&m, k) * acf(&e, k)).sum();
            n_eff = n_eff.min(m.len() as f64 / (1.0 + 2.0 * inflation).max(1.0));
        }
    }
    if rs.is_empty() {
        return None;
    }
    let r = rs.iter().sum::<f64>() / rs.len() as f64;
    let z = r.clamp(-0.999, 0.999).atanh() * (n_eff - 3.0).max(0.0).sqrt();
    Some(Sync {
        r: r as f32,
        n_eff: n_eff as f32,
        z: z as f32,
    })
}

fn tensor(stage: &'static str) -> impl Fn(candle_core::Error) -> LightAsdError {
    move |source| LightAsdError::Tensor { stage, source }
}

/// The rows of a `[T, 128]` tensor.
fn rows_of(t: &Tensor) -> Result<Vec<Emb>, LightAsdError> {
    let v = t.to_vec2::<f32>().map_err(tensor("embedding rows"))?;
    Ok(v.into_iter()
        .map(|r| {
            let mut e = [0f32; EMBED];
            for (d, s) in e.iter_mut().zip(r) {
                *d = s;
            }
            e
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use avsense_nn::models::lightasd::testing::{crops, mfcc, synthetic_vb};

    fn model() -> LightAsd {
        LightAsd::new(synthetic_vb()).unwrap()
    }

    /// MFCC frames of ticks `[from, to)` from the synthetic sequence of `n` ticks.
    fn mfcc_run(all: &[f32], from: u64, to: u64) -> MfccRun {
        let per = MFCC_PER_FRAME * MFCC_DIM;
        let frames = all[from as usize * per..to as usize * per]
            .chunks_exact(MFCC_DIM)
            .map(|c| {
                let mut f = [0f32; MFCC_DIM];
                f.copy_from_slice(c);
                f
            })
            .collect();
        MfccRun {
            first: from * MFCC_PER_FRAME as u64,
            frames,
        }
    }

    fn crop_of(all: &[f32], t: u64) -> Arc<[u8]> {
        let n = CROP * CROP;
        all[t as usize * n..(t as usize + 1) * n]
            .iter()
            .map(|&v| v as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    fn face(track: u64, crop: Arc<[u8]>) -> FaceInput {
        FaceInput {
            track,
            person: Some(9),
            bbox: [0.1, 0.1, 0.3, 0.4],
            crop,
            motion: Some(1.0),
        }
    }

    /// Feeds `ticks` ticks of audio (where `heard`) and of one face (where `seen`), a
    /// frame at a time, polling as the event stage does; returns every tick handed out.
    fn feed(
        runner: &mut AsdRunner,
        ticks: u64,
        heard: impl Fn(u64) -> bool,
        seen: impl Fn(u64) -> bool,
    ) -> (Vec<FaceTick>, Vec<u64>) {
        let c = crops(ticks as usize)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let m = mfcc(ticks as usize)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (mut out, mut ended) = (Vec::new(), Vec::new());
        for t in 0..ticks {
            if heard(t) {
                runner.push_mfcc(&mfcc_run(&m, t, t + 1)).unwrap();
            } else {
                runner.audio_absent_before(t + 1).unwrap();
            }
            let faces: Vec<FaceInput> = if seen(t) {
                vec![face(1, crop_of(&c, t))]
            } else {
                Vec::new()
            };
            runner.push_faces(t..t + 1, &faces);
            if t % 12 == 0 {
                let (a, b) = runner.poll().unwrap();
                out.extend(a);
                ended.extend(b);
            }
        }
        runner.end_video();
        runner.end_audio().unwrap();
        let (a, b) = runner.poll().unwrap();
        out.extend(a);
        ended.extend(b);
        (out, ended)
    }

    #[test]
    fn streaming_logits_equal_the_model_on_the_whole_chunk() {
        // One duration of 20 ticks: the first chunk's logits must equal the back end run on
        // that chunk of embeddings computed over the whole sequence in one pass.
        let mut r = AsdRunner::new(
            model(),
            AsdConfig {
                durations: vec![20],
                block: 16,
            },
        );
        let (ticks, ended) = feed(&mut r, 40, |_| true, |_| true);
        assert_eq!(ticks.len(), 40);
        assert_eq!(ended.len(), 1);
        let m = model();
        let a = m.audio_embed(&mfcc(40)).unwrap();
        let v = m.visual_embed(&crops(40)).unwrap();
        let want = m
            .av_scores(
                &m.backend(&a.narrow(1, 0, 20).unwrap(), &v.narrow(1, 0, 20).unwrap())
                    .unwrap(),
            )
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (t, w) in ticks.iter().take(20).zip(&want) {
            let got = t.logit.unwrap();
            assert!((got - w).abs() < 1e-4, "tick {}: {got} vs {w}", t.tick);
        }
    }

    #[test]
    fn a_gap_in_the_face_splits_it_and_every_tick_comes_out_once() {
        let mut r = AsdRunner::new(model(), AsdConfig::default());
        let (ticks, ended) = feed(&mut r, 160, |_| true, |t| !(80..90).contains(&t));
        assert_eq!(ticks.len(), 150);
        let mut seen: Vec<u64> = ticks.iter().map(|t| t.tick).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 150, "a tick came out twice");
        let segs: std::collections::BTreeSet<u64> = ticks.iter().map(|t| t.segment).collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(ended.len(), 2);
        assert!(ticks
            .iter()
            .all(|t| t.logit.is_some() && t.person == Some(9)));
        assert_eq!(r.stats().segments, 2);
    }

    #[test]
    fn ticks_without_audio_get_no_logit_and_the_rest_still_do() {
        let mut r = AsdRunner::new(model(), AsdConfig::default());
        let (ticks, _) = feed(&mut r, 120, |t| t < 60, |_| true);
        assert_eq!(ticks.len(), 120);
        for t in &ticks {
            assert_eq!(t.logit.is_some(), t.tick < 60, "tick {}", t.tick);
        }
        let s = r.stats();
        assert_eq!((s.scored_ticks, s.unheard_ticks), (60, 60));
    }

    #[test]
    fn buffers_stay_bounded_and_the_delay_is_bounded() {
        let mut r = AsdRunner::new(model(), AsdConfig::default());
        let n = 400u64;
        let c = crops(n as usize)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let m = mfcc(n as usize)
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut largest = 0usize;
        let mut out = 0u64;
        for t in 0..n {
            r.push_mfcc(&mfcc_run(&m, t, t + 1)).unwrap();
            r.push_faces(t..t + 1, &[face(1, crop_of(&c, t))]);
            if t % 12 == 0 {
                out += r.poll().unwrap().0.len() as u64;
                let s = &r.segments[0];
                let held = s.crops.items.len()
                    + s.emb.items.len()
                    + s.acc.items.len()
                    + s.motion.items.len()
                    + r.audio_emb.items.len()
                    + r.energy.items.len()
                    + r.mfcc.items.len();
                largest = largest.max(held);
                // Handed out up to the longest chunk + a block + the synchrony window.
                if t > 300 {
                    assert!(
                        t - out <= 75 + 50 + SYNC_FUTURE + 2 * 12,
                        "tick {t}: {out} out"
                    );
                }
            }
        }
        // Every buffer holds at most a few hundred ticks, whatever the stream's length.
        assert!(largest < 7 * 260, "{largest} items held");
        assert!(r.settled() > n - 250);
    }
}
