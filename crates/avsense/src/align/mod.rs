//! Time alignment: per-stream windows of audio and video features.
//!
//! Windows have a fixed length and hop (default 1.0 s / 0.5 s) on the stream's timeline.
//! Each modality has a *watermark*: the end of the latest feature it delivered (every
//! modality delivers in time order). Window `[s, e)` closes when, for every modality the
//! stream has, the watermark has passed `e` or the modality has ended. So a file without
//! audio, or whose audio ends early, yields video-only (partial) windows instead of a stall.
//!
//! Lateness is bounded for live streams: a modality lagging the leading one by more than
//! `lateness` no longer holds windows open; what it delivers later for a window that has
//! closed is counted as late and dropped. Recorded input (edges that block) waits instead,
//! since nothing is to be lost there and GStreamer's queues bound how far tracks drift.

use crate::core::clock::{Duration, Timestamp};
use crate::core::edge::{EdgeReceiver, EdgeSender};
use crate::core::features::{AudioFeatures, Feature, VisionFeatures};
use crate::core::media::Modality;
use crate::core::stop::StopFlag;
use crate::core::window::Window;
use std::collections::VecDeque;
use std::sync::Arc;

/// Default analysis window length in seconds (`[pipeline] window`).
pub const DEFAULT_WINDOW_S: f64 = 1.0;
/// Default hop between window starts in seconds (`[pipeline] hop`).
pub const DEFAULT_HOP_S: f64 = 0.5;
/// Default bounded lateness in seconds (`[pipeline] lateness`).
pub const DEFAULT_LATENESS_S: f64 = 2.0;

/// Aligner settings.
#[derive(Debug, Clone, Copy)]
pub struct AlignConfig {
    /// Window length.
    pub window: Duration,
    /// Hop between window starts.
    pub hop: Duration,
    /// How far a live modality may lag before windows close without it.
    pub lateness: Duration,
    /// Whether the stream is live (lateness applies) or recorded (wait for every modality).
    pub live: bool,
}

/// Counters of the aligner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlignStats {
    /// Windows emitted.
    pub windows: u64,
    /// Windows missing at least one modality.
    pub partial_windows: u64,
    /// Features that arrived after their windows had closed.
    pub late_dropped: u64,
}

#[derive(Debug, Default)]
struct Track {
    expected: bool,
    ended: bool,
    watermark: Option<Timestamp>,
}

/// The aligner of one stream (see the module doc).
#[derive(Debug)]
pub struct Aligner {
    cfg: AlignConfig,
    stream: Arc<str>,
    next: Option<u64>,
    video: Track,
    audio: Track,
    vision_buf: VecDeque<Arc<VisionFeatures>>,
    audio_buf: VecDeque<Arc<AudioFeatures>>,
    stats: AlignStats,
}

impl Aligner {
    /// An aligner for `stream` expecting the given modalities.
    pub fn new(stream: Arc<str>, cfg: AlignConfig, expect: &[Modality]) -> Self {
        Self {
            cfg,
            stream,
            next: None,
            video: Track {
                expected: expect.contains(&Modality::Video),
                ..Track::default()
            },
            audio: Track {
                expected: expect.contains(&Modality::Audio),
                ..Track::default()
            },
            vision_buf: VecDeque::new(),
            audio_buf: VecDeque::new(),
            stats: AlignStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AlignStats {
        self.stats
    }

    fn window_start(&self, k: u64) -> Timestamp {
        Timestamp(k * self.cfg.hop.0)
    }

    /// Takes one feature; appends every window it allows to close to `out`.
    pub fn push(&mut self, f: Feature, out: &mut Vec<Window>) {
        let first_pts = match &f {
            Feature::Vision(v) => Some(v.pts),
            Feature::Audio(a) => Some(a.pts),
            Feature::End(_) => None,
        };
        if let (None, Some(p)) = (self.next, first_pts) {
            // Start at the window containing the first feature (the newest window that
            // starts at or before it), not at zero: a live stream's clock need not be small.
            let k = p.0 / self.cfg.hop.0.max(1);
            let back = self
                .cfg
                .window
                .0
                .div_ceil(self.cfg.hop.0.max(1))
                .saturating_sub(1);
            self.next = Some(k.saturating_sub(back));
        }
        let closed_before = self.next.map(|k| self.window_start(k)).unwrap_or_default();
        match f {
            Feature::Vision(v) => {
                let wm = self.video.watermark.get_or_insert(v.end());
                *wm = (*wm).max(v.end());
                if v.pts < closed_before {
                    self.stats.late_dropped += 1;
                } else {
                    self.vision_buf.push_back(v);
                }
            }
            Feature::Audio(a) => {
                let wm = self.audio.watermark.get_or_insert(a.end());
                *wm = (*wm).max(a.end());
                if a.end() <= closed_before {
                    self.stats.late_dropped += 1;
                } else {
                    self.audio_buf.push_back(a);
                }
            }
            Feature::End(Modality::Video) => self.video.ended = true,
            Feature::End(Modality::Audio) => self.audio.ended = true,
        }
        self.close_ready(out, false, None);
    }

    /// Closes every remaining window that holds data (end of input).
    pub fn finish(&mut self, out: &mut Vec<Window>) {
        self.video.ended = true;
        self.audio.ended = true;
        self.close_ready(out, true, None);
    }

    /// Closes the remaining windows that every expected modality has reached (a stopped
    /// run: what one modality decoded ahead of the other is not analysed alone).
    pub fn finish_common(&mut self, out: &mut Vec<Window>) {
        let common = [&self.video, &self.audio]
            .into_iter()
            .filter(|t| t.expected)
            .map(|t| t.watermark.unwrap_or_default())
            .min();
        self.video.ended = true;
        self.audio.ended = true;
        self.close_ready(out, true, common);
    }

    /// Recorded input: the modality that lags the other by more than `window + lateness`
    /// (both expected and running), which the stage then reads alone.
    pub fn lagging(&self) -> Option<Modality> {
        if self.cfg.live
            || !(self.video.expected && self.audio.expected)
            || self.video.ended
            || self.audio.ended
        {
            return None;
        }
        let bound = self.cfg.window.0 + self.cfg.lateness.0;
        let v = self.video.watermark.unwrap_or_default().0;
        let a = self.audio.watermark.unwrap_or_default().0;
        if a > v.saturating_add(bound) {
            Some(Modality::Video)
        } else if v > a.saturating_add(bound) {
            Some(Modality::Audio)
        } else {
            None
        }
    }

    /// Features buffered now (video, audio), for tests and metrics.
    pub fn buffered(&self) -> (usize, usize) {
        (self.vision_buf.len(), self.audio_buf.len())
    }

    fn leading(&self) -> Option<Timestamp> {
        [self.video.watermark, self.audio.watermark]
            .into_iter()
            .flatten()
            .max()
    }

    fn track_allows(&self, t: &Track, end: Timestamp, leading: Option<Timestamp>) -> bool {
        if !t.expected || t.ended {
            return true;
        }
        match t.watermark {
            Some(wm) if wm >= end => true,
            wm => {
                // Live: a track lagging the leading one by more than `lateness` is not
                // waited for — but only for windows the leading track's data reaches. (Without
                // `end <= lead`, a lagging video with the audio already ended let every
                // window close: the loop built empty windows without end until the process
                // ran out of memory — seen at the end of a live run under CPU load.)
                self.cfg.live
                    && leading.is_some_and(|lead| {
                        end <= lead
                            && lead.0.saturating_sub(wm.map(|w| w.0).unwrap_or(0))
                                > self.cfg.lateness.0
                    })
            }
        }
    }

    fn close_ready(&mut self, out: &mut Vec<Window>, flushing: bool, limit: Option<Timestamp>) {
        let Some(mut k) = self.next else { return };
        loop {
            let start = self.window_start(k);
            let end = start + self.cfg.window;
            let leading = match (self.leading(), limit) {
                (Some(l), Some(m)) => Some(l.min(m)),
                (l, _) => l,
            };
            if flushing {
                // Only windows that start before the last data still buffered: a window
                // with nothing left to hold is not built (a watermark far ahead of the
                // buffered features must not make the flush build windows without end).
                let buffered_end = self
                    .vision_buf
                    .back()
                    .map(|v| v.end())
                    .max(self.audio_buf.back().map(|a| a.end()));
                match leading.zip(buffered_end).map(|(l, b)| l.min(b)) {
                    Some(lead) if start < lead => {}
                    _ => break,
                }
            } else if !(self.track_allows(&self.video, end, leading)
                && self.track_allows(&self.audio, end, leading))
            {
                break;
            }
            let all_ended = (!self.video.expected || self.video.ended)
                && (!self.audio.expected || self.audio.ended);
            if !flushing && all_ended {
                // Everything has ended: only windows before the last data remain.
                match leading {
                    Some(lead) if start < lead => {}
                    _ => break,
                }
            }
            let vision: Vec<_> = self
                .vision_buf
                .iter()
                .filter(|v| v.pts >= start && v.pts < end)
                .cloned()
                .collect();
            let audio: Vec<_> = self
                .audio_buf
                .iter()
                .filter(|a| a.pts < end && a.end() > start)
                .cloned()
                .collect();
            let partial = (self.video.expected && vision.is_empty())
                || (self.audio.expected && audio.is_empty());
            self.stats.windows += 1;
            if partial {
                self.stats.partial_windows += 1;
            }
            out.push(Window {
                stream: Arc::clone(&self.stream),
                index: k,
                start,
                end,
                vision,
                audio,
                partial,
                ext: Default::default(),
            });
            k += 1;
            let next_start = self.window_start(k);
            while self.vision_buf.front().is_some_and(|v| v.pts < next_start) {
                self.vision_buf.pop_front();
            }
            while self
                .audio_buf
                .front()
                .is_some_and(|a| a.end() <= next_start)
            {
                self.audio_buf.pop_front();
            }
        }
        self.next = Some(k);
    }
}

/// How long the aligner waits for a lagging modality before it reads the leading one
/// anyway: a GStreamer graph that feeds both branches from one thread without queues (a
/// hand-written launch line) would otherwise deadlock on the bounded skew.
const SKEW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The aligner stage: features in (video and audio on their own edges), windows out,
/// until every encoder has finished.
///
/// Recorded input is read with a bounded skew: when one modality runs more than
/// `window + lateness` ahead of the other, only the lagging one is read, so the leading
/// one's edge fills and its back-pressure reaches GStreamer. What the aligner buffers is
/// then O(window + lateness + edge capacity) whatever the file's length. After a stop
/// (`stop`), the windows still open are closed only up to where every modality got.
pub fn run_align_stage(
    mut aligner: Aligner,
    video: Option<EdgeReceiver<Feature>>,
    audio: Option<EdgeReceiver<Feature>>,
    tx: EdgeSender<Window>,
    stop: StopFlag,
) -> AlignStats {
    let mut out = Vec::new();
    let mut inputs = [video, audio];
    let never = crossbeam_channel::never::<Feature>();
    loop {
        let (v, a) = (inputs[0].as_ref(), inputs[1].as_ref());
        let rx = |r: Option<&EdgeReceiver<Feature>>| {
            r.map(|r| r.inner().clone())
                .unwrap_or_else(|| never.clone())
        };
        let (vr, ar) = (rx(v), rx(a));
        if v.is_none() && a.is_none() {
            break;
        }
        // Which input to read: the lagging one alone while the skew is too large.
        let lagging = match aligner.lagging() {
            Some(Modality::Video) if v.is_some() && a.is_some() => Some(0),
            Some(Modality::Audio) if v.is_some() && a.is_some() => Some(1),
            _ => None,
        };
        let got = match lagging {
            Some(i) => {
                let r = if i == 0 { &vr } else { &ar };
                match r.recv_timeout(SKEW_WAIT) {
                    Ok(f) => Some((i, Ok(f))),
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Some((i, Err(()))),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                }
            }
            None => None,
        };
        let (i, msg) = match got {
            Some(g) => g,
            None => crossbeam_channel::select! {
                recv(vr) -> m => (0, m.map_err(|_| ())),
                recv(ar) -> m => (1, m.map_err(|_| ())),
            },
        };
        match msg {
            Ok(f) => aligner.push(f, &mut out),
            Err(()) => inputs[i] = None,
        }
        for w in out.drain(..) {
            if tx.send(w).is_err() {
                return aligner.stats();
            }
        }
    }
    if stop.is_set() {
        aligner.finish_common(&mut out);
    } else {
        aligner.finish(&mut out);
    }
    for w in out.drain(..) {
        if tx.send(w).is_err() {
            break;
        }
    }
    aligner.stats()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn vis(ms: u64) -> Feature {
        Feature::Vision(Arc::new(VisionFeatures {
            stream: Arc::from("s"),
            pts: Timestamp(ms * MS),
            duration: Duration(100 * MS),
            index: ms / 100,
            ext: Default::default(),
        }))
    }

    fn aud(ms: u64, frames: usize) -> Feature {
        Feature::Audio(Arc::new(AudioFeatures {
            stream: Arc::from("s"),
            pts: Timestamp(ms * MS),
            hop: Duration(10 * MS),
            window: Duration(25 * MS),
            log_mel: vec![0.0; frames * 64],
            level_db: vec![0.0; frames],
            onset: vec![0.0; frames],
            ext: Default::default(),
        }))
    }

    fn cfg(live: bool) -> AlignConfig {
        AlignConfig {
            window: Duration(1000 * MS),
            hop: Duration(500 * MS),
            lateness: Duration(2000 * MS),
            live,
        }
    }

    #[test]
    fn windows_wait_for_the_slower_modality_and_hold_only_their_span() {
        let mut a = Aligner::new(
            Arc::from("s"),
            cfg(false),
            &[Modality::Video, Modality::Audio],
        );
        let mut out = Vec::new();
        for t in (0..3000).step_by(100) {
            a.push(vis(t), &mut out);
        }
        assert!(out.is_empty(), "audio has not arrived: nothing may close");
        for t in (0..3000).step_by(100) {
            a.push(aud(t, 10), &mut out);
        }
        a.push(Feature::End(Modality::Video), &mut out);
        a.push(Feature::End(Modality::Audio), &mut out);
        let starts: Vec<u64> = out.iter().map(|w| w.start.0 / MS).collect();
        assert_eq!(starts, vec![0, 500, 1000, 1500, 2000, 2500]);
        for w in &out {
            assert!(w.vision.iter().all(|v| v.pts >= w.start && v.pts < w.end));
            assert!(w.audio.iter().all(|x| x.pts < w.end && x.end() > w.start));
        }
        assert_eq!(out[0].vision.len(), 10);
        assert!(!out[0].partial);
        assert!(out[5].end.0 / MS == 3500 && out[5].vision.len() == 5);
    }

    /// An audio-only stream (a microphone): its end closes the last windows and stops;
    /// the video track it never expected must not keep windows coming.
    #[test]
    fn audio_only_stream_ends_when_its_audio_ends() {
        let mut a = Aligner::new(Arc::from("s"), cfg(true), &[Modality::Audio]);
        let mut out = Vec::new();
        for t in (0..2000).step_by(100) {
            a.push(aud(t, 10), &mut out);
        }
        a.push(Feature::End(Modality::Audio), &mut out);
        let starts: Vec<u64> = out.iter().map(|w| w.start.0 / MS).collect();
        assert_eq!(starts, vec![0, 500, 1000, 1500]);
        a.finish(&mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn a_missing_modality_gives_partial_windows_not_a_stall() {
        let mut a = Aligner::new(
            Arc::from("s"),
            cfg(false),
            &[Modality::Video, Modality::Audio],
        );
        let mut out = Vec::new();
        a.push(Feature::End(Modality::Audio), &mut out);
        for t in (0..2000).step_by(100) {
            a.push(vis(t), &mut out);
        }
        assert_eq!(out.len(), 3, "windows close on the video watermark alone");
        assert!(out.iter().all(|w| w.partial && w.audio.is_empty()));
        a.finish(&mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn live_lateness_bounds_the_wait_and_counts_late_data() {
        let mut a = Aligner::new(
            Arc::from("s"),
            cfg(true),
            &[Modality::Video, Modality::Audio],
        );
        let mut out = Vec::new();
        a.push(aud(0, 10), &mut out);
        for t in (0..4000).step_by(100) {
            a.push(vis(t), &mut out);
        }
        // Audio stalled at 0.1 s; video leads by > 2 s, so windows closed without it.
        assert!(!out.is_empty());
        let closed = out.len();
        a.push(aud(100, 10), &mut out); // belongs to window 0, already closed
        assert_eq!(a.stats().late_dropped, 1);
        assert!(out.len() >= closed);
    }

    /// Live: the audio ends while the video lags more than `lateness` behind (a slow
    /// video encoder on a loaded machine). Windows close up to the audio's last data, not
    /// beyond: before the fix this call never returned (windows without end, 24 GB).
    #[test]
    fn live_windows_never_run_past_the_leading_data() {
        let mut a = Aligner::new(
            Arc::from("s"),
            cfg(true),
            &[Modality::Video, Modality::Audio],
        );
        let mut out = Vec::new();
        for t in (0..1000).step_by(100) {
            a.push(vis(t), &mut out);
        }
        for t in (0..4000).step_by(100) {
            a.push(aud(t, 10), &mut out);
        }
        a.push(Feature::End(Modality::Audio), &mut out);
        assert!(!out.is_empty(), "the lagging video is not waited for");
        assert!(
            out.iter().all(|w| w.end.0 <= 4010 * MS),
            "windows past the last audio: {:?}",
            out.iter().map(|w| w.end.0 / MS).collect::<Vec<_>>()
        );
        // The video catches up and ends: the rest closes, bounded by its data.
        for t in (1000..6000).step_by(100) {
            a.push(vis(t), &mut out);
        }
        a.push(Feature::End(Modality::Video), &mut out);
        a.finish(&mut out);
        assert!(out.iter().all(|w| w.start.0 < 6000 * MS), "{}", out.len());
        assert!(out.len() <= 12, "{}", out.len());
    }

    /// Recorded input whose audio runs far ahead of a slow video: the stage stops reading
    /// audio once it leads by window + lateness, so the audio encoder is held back by the
    /// full edge instead of the aligner buffering the whole file's audio.
    #[test]
    fn recorded_audio_far_ahead_of_video_is_held_back() {
        use crate::core::edge::{edge, EdgePolicy};
        let (vtx, vrx, _) = edge("v", 4, EdgePolicy::Block);
        let (atx, arx, aprobe) = edge("a", 4, EdgePolicy::Block);
        let (wtx, wrx, _) = edge("w", 1024, EdgePolicy::Block);
        let stage = std::thread::spawn(move || {
            let a = Aligner::new(
                Arc::from("s"),
                cfg(false),
                &[Modality::Video, Modality::Audio],
            );
            run_align_stage(a, Some(vrx), Some(arx), wtx, StopFlag::new())
        });
        // 100 s of audio in 100 ms features, as fast as the edge takes them.
        let audio = std::thread::spawn(move || {
            for i in 0..1000u64 {
                if atx.send(aud(i * 100, 10)).is_err() {
                    break;
                }
            }
            let _ = atx.send(Feature::End(Modality::Audio));
        });
        // Video up to 1 s, then nothing for a while (a slow detector).
        for i in 0..10u64 {
            vtx.send(vis(i * 100)).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Read: audio up to video (1 s) + window + lateness (3 s), plus the edge's 4 slots
        // and the one item in flight.
        let sent = aprobe.stats().sent;
        assert!(sent <= 40 + 4 + 2, "audio ran ahead: {sent} features sent");
        for i in 10..1000u64 {
            vtx.send(vis(i * 100)).unwrap();
        }
        vtx.send(Feature::End(Modality::Video)).unwrap();
        drop(vtx);
        audio.join().unwrap();
        let stats = stage.join().unwrap();
        let windows: Vec<Window> = std::iter::from_fn(|| wrx.recv()).collect();
        assert_eq!(stats.partial_windows, 0);
        assert_eq!(windows.len() as u64, stats.windows);
        assert!(windows.len() >= 198, "{}", windows.len());
    }
}
