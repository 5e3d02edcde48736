//! Snapshots: a JPEG of the best frame of each object, sound source and active speaker,
//! with its box drawn, written next to the events and named in the event
//! ([`crate::core::event::SnapshotRef`]).
//!
//! ```text
//! video stage ──(frame, tracks)──▶ BestFrames (per stream: each track's best-scored frame)
//! sink stage  ──end message──▶ Snapshotter: the track's best frame + box → JPEG → file, event.snapshot
//! ```
//!
//! The frame is the one the detector analysed (the detector's input size, e.g. 416 px
//! wide), copied when a track's detection score beats its best so far. Memory is bounded:
//! at most `max_tracks` frames per stream (the least recently improved are dropped first).

mod draw;
mod jpeg;

pub use draw::draw_box;
pub use jpeg::{encode_jpeg, JpegError};

use crate::core::event::{Event, EventKind, Phase, SnapshotRef};
use crate::core::features::VisionFeatures;
use crate::core::media::{Frame, PixelFormat};
use crate::core::settings::{check, Invalid};
use crate::encode::video::objects::Tracks;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `[snapshots]`: JPEG snapshots of objects, sound sources and active speakers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Write snapshots (default false).
    pub enabled: bool,
    /// Where (default: `snapshots/` beside the first `jsonl` sink's file, else in the working
    /// directory); one folder per stream, one `<event id>.jpg` per event.
    pub dir: Option<PathBuf>,
    /// Most best frames kept per stream (default 64; each is one detector frame, e.g.
    /// 416×234 RGB = 292 KB).
    pub max_tracks: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: None,
            max_tracks: 64,
        }
    }
}

impl SnapshotConfig {
    /// Checks the keys of `[snapshots]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        check(
            (1..=4096).contains(&self.max_tracks),
            "max_tracks",
            self.max_tracks,
            "1 to 4096 frames per stream",
        )
    }
}

/// The colour boxes are drawn in (RGB).
pub const BOX_RGB: [u8; 3] = [0, 255, 0];

/// One track's best frame so far.
#[derive(Clone)]
struct Best {
    score: f32,
    time: f64,
    bbox: [f32; 4],
    width: u32,
    height: u32,
    /// Tight RGB rows.
    rgb: Arc<[u8]>,
    /// When it was last improved (a counter), for eviction.
    touched: u64,
}

#[derive(Default)]
struct StreamBest {
    tracks: HashMap<u64, Best>,
    clock: u64,
}

/// Each stream's tracks' best frames, shared by the video stages (which offer frames) and
/// the sink stage (which takes them).
#[derive(Clone)]
pub struct BestFrames {
    inner: Arc<Mutex<HashMap<String, StreamBest>>>,
    max_tracks: usize,
}

impl BestFrames {
    /// A store keeping at most `max_tracks` frames per stream.
    pub fn new(max_tracks: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_tracks: max_tracks.max(1),
        }
    }

    /// Offers a frame with its features: each confirmed track detected on it whose score
    /// beats its best so far keeps a copy of the frame.
    pub fn offer(&self, frame: &Frame, features: &VisionFeatures) {
        let Some(t) = features.get::<Tracks>() else {
            return;
        };
        if !t.detected || t.objects.is_empty() || frame.format != PixelFormat::Rgb {
            return;
        }
        let Ok(mut all) = self.inner.lock() else {
            return;
        };
        let sb = all.entry(frame.stream.to_string()).or_default();
        let mut copy: Option<Arc<[u8]>> = None;
        for o in &t.objects {
            if sb
                .tracks
                .get(&o.track_id)
                .is_some_and(|b| b.score >= o.score)
            {
                continue;
            }
            let Some(rgb) = copy.clone().or_else(|| tight_rgb(frame)) else {
                return;
            };
            copy = Some(Arc::clone(&rgb));
            sb.clock += 1;
            sb.tracks.insert(
                o.track_id,
                Best {
                    score: o.score,
                    time: frame.pts.as_secs_f64(),
                    // Tracks are normalised to the frame; the snapshot is in pixels.
                    bbox: [
                        o.bbox[0] * frame.width as f32,
                        o.bbox[1] * frame.height as f32,
                        o.bbox[2] * frame.width as f32,
                        o.bbox[3] * frame.height as f32,
                    ],
                    width: frame.width,
                    height: frame.height,
                    rgb,
                    touched: sb.clock,
                },
            );
        }
        while sb.tracks.len() > self.max_tracks {
            let Some(oldest) = sb
                .tracks
                .iter()
                .min_by_key(|(_, b)| b.touched)
                .map(|(k, _)| *k)
            else {
                break;
            };
            sb.tracks.remove(&oldest);
        }
    }

    fn get(&self, stream: &str, track: u64) -> Option<Best> {
        self.inner
            .lock()
            .ok()?
            .get(stream)?
            .tracks
            .get(&track)
            .cloned()
    }

    /// Frames kept now, over every stream.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|a| a.values().map(|s| s.tracks.len()).sum())
            .unwrap_or(0)
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The frame's pixels as tight rows (no padding), or None when the buffer is short.
/// A person's box in live pictures (the view, RTSP out).
pub const PERSON_BOX: [u8; 3] = [0, 230, 255];
/// Any other class's box in live pictures.
pub const OTHER_BOX: [u8; 3] = [255, 200, 0];

/// A copy of an RGB `frame` (tight rows) with the boxes of its tracks drawn (persons
/// [`PERSON_BOX`], others [`OTHER_BOX`]); None for a frame that is not RGB.
pub(crate) fn boxed_rgb(frame: &Frame, f: &VisionFeatures) -> Option<Vec<u8>> {
    if frame.format != PixelFormat::Rgb {
        return None;
    }
    let mut rgb = tight_rgb(frame)?.to_vec();
    let (w, h) = (frame.width, frame.height);
    if let Some(t) = f.get::<crate::encode::video::objects::Tracks>() {
        for o in &t.objects {
            let b = [
                o.bbox[0] * w as f32,
                o.bbox[1] * h as f32,
                o.bbox[2] * w as f32,
                o.bbox[3] * h as f32,
            ];
            let c = if o.class_id == 0 {
                PERSON_BOX
            } else {
                OTHER_BOX
            };
            draw_box(&mut rgb, w, h, b, c);
        }
    }
    Some(rgb)
}

pub(crate) fn tight_rgb(frame: &Frame) -> Option<Arc<[u8]>> {
    let row = frame.width as usize * 3;
    let mut out = Vec::with_capacity(row * frame.height as usize);
    for y in 0..frame.height {
        out.extend_from_slice(frame.row(y)?.get(..row)?);
    }
    Some(Arc::from(out))
}

/// The track a message's snapshot shows, for the kinds that have one.
fn track_of(e: &Event) -> Option<u64> {
    match e.kind {
        EventKind::Object => e.objects.first().copied(),
        EventKind::SoundSource => e.evidence.association.as_ref().map(|a| a.track),
        EventKind::ActiveSpeaker => e.evidence.speaker.as_ref().and_then(|s| s.person_track),
        _ => None,
    }
}

/// Errors of a snapshot (logged and counted; the event goes on without one).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The JPEG encoder failed.
    #[error("snapshot {path}")]
    Encode {
        /// The file it was for.
        path: String,
        /// Why.
        source: JpegError,
    },
    /// The file could not be written.
    #[error("snapshot {path}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Writes the snapshots of end messages (in the sink stage).
pub struct Snapshotter {
    frames: BestFrames,
    dir: PathBuf,
    /// Snapshots written.
    pub written: u64,
    /// Snapshots that failed (encoder or disk).
    pub failed: u64,
}

impl Snapshotter {
    /// Writes into `dir/<stream>/` from `frames`.
    pub fn new(frames: BestFrames, dir: &Path) -> Self {
        Self {
            frames,
            dir: dir.to_path_buf(),
            written: 0,
            failed: 0,
        }
    }

    /// For an object / sound source / active speaker `end` message whose track has a best
    /// frame: draws the box, writes `<dir>/<stream>/<id>.jpg` and names it in the event.
    /// A failure is logged and counted; the event goes on without a snapshot.
    pub fn attach(&mut self, e: &mut Event) {
        if e.phase != Phase::End || e.id.is_empty() {
            return;
        }
        let Some(track) = track_of(e) else {
            return;
        };
        let Some(best) = self.frames.get(&e.stream, track) else {
            return;
        };
        match self.write(e, track, &best) {
            Ok(r) => {
                self.written += 1;
                e.snapshot = Some(r);
            }
            Err(err) => {
                self.failed += 1;
                tracing::warn!(
                    "{}; the event goes on without it",
                    crate::core::errors::one_line(&err)
                );
            }
        }
    }

    fn write(&self, e: &Event, track: u64, best: &Best) -> Result<SnapshotRef, SnapshotError> {
        let folder = self.dir.join(file_safe(&e.stream));
        let path = folder.join(format!("{}.jpg", file_safe(&e.id)));
        let shown = path.display().to_string();
        let mut rgb = best.rgb.to_vec();
        let drawn = draw_box(&mut rgb, best.width, best.height, best.bbox, BOX_RGB);
        let jpeg =
            encode_jpeg(&rgb, best.width, best.height).map_err(|source| SnapshotError::Encode {
                path: shown.clone(),
                source,
            })?;
        std::fs::create_dir_all(&folder)
            .and_then(|_| std::fs::write(&path, &jpeg))
            .map_err(|source| SnapshotError::Write {
                path: shown.clone(),
                source,
            })?;
        Ok(SnapshotRef {
            path: shown,
            track,
            time: (best.time * 1e6).round() / 1e6,
            width: best.width,
            height: best.height,
            bbox: drawn,
        })
    }
}

/// A name made safe as one path component.
fn file_safe(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() || t.starts_with('.') {
        format!("_{t}")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};
    use crate::core::event::{Association, SpeakerEvidence};
    use crate::encode::video::tracker::TrackedObject;

    fn frame(stream: &str, t: f64, w: u32, h: u32, fill: u8) -> Frame {
        Frame::from_pixels(
            stream,
            Timestamp::from_secs_f64(t),
            Duration::from_secs_f64(0.04),
            w,
            h,
            PixelFormat::Rgb,
            vec![fill; (w * h * 3) as usize],
            (t * 25.0) as u64,
        )
        .unwrap()
    }

    fn features(f: &Frame, objs: &[(u64, f32)]) -> VisionFeatures {
        let mut v = VisionFeatures::for_frame(f);
        v.ext.insert(Tracks {
            detected: true,
            objects: objs
                .iter()
                .map(|&(id, score)| TrackedObject {
                    track_id: id,
                    class_id: 0,
                    score,
                    bbox: [0.0625, 0.125, 0.3125, 0.625],
                    embedding: None,
                })
                .collect(),
            events: Vec::new(),
        });
        v
    }

    #[test]
    fn keeps_each_tracks_best_frame_and_bounds_the_store() {
        let store = BestFrames::new(2);
        let a = frame("cam", 1.0, 32, 24, 10);
        store.offer(&a, &features(&a, &[(1, 0.5)]));
        let b = frame("cam", 2.0, 32, 24, 20);
        store.offer(&b, &features(&b, &[(1, 0.9), (2, 0.4)]));
        let c = frame("cam", 3.0, 32, 24, 30);
        store.offer(&c, &features(&c, &[(1, 0.7)])); // worse: kept frame stays b
        let best = store.get("cam", 1).unwrap();
        assert_eq!((best.time, best.rgb[0]), (2.0, 20));
        assert_eq!(store.get("cam", 2).unwrap().time, 2.0);
        let d = frame("cam", 4.0, 32, 24, 40);
        store.offer(&d, &features(&d, &[(3, 0.6)]));
        assert_eq!(store.len(), 2, "bounded");
        assert!(store.get("cam", 3).is_some());
        assert!(store.get("other", 1).is_none());
    }

    #[test]
    fn end_messages_of_tracked_kinds_get_a_jpeg_with_their_box() {
        let dir = tempfile::tempdir().unwrap();
        let store = BestFrames::new(8);
        let f = frame("cam", 1.5, 64, 48, 90);
        store.offer(&f, &features(&f, &[(7, 0.8)]));
        let mut snap = Snapshotter::new(store, dir.path());
        let mut obj = Event::new(EventKind::Object, "cam", 1.0, 3.0, 0.8);
        obj.id = "0190-a".into();
        obj.objects = vec![7];
        let mut start = obj.clone();
        start.phase = Phase::Start;
        snap.attach(&mut start);
        assert!(start.snapshot.is_none(), "end messages only");
        snap.attach(&mut obj);
        let r = obj.snapshot.clone().expect("a snapshot");
        assert_eq!((r.width, r.height, r.track, r.time), (64, 48, 7, 1.5));
        assert_eq!(r.bbox, [4.0, 6.0, 20.0, 30.0]);
        let bytes = std::fs::read(&r.path).unwrap();
        let mut dec = jpeg_decoder::Decoder::new(&bytes[..]);
        let px = dec.decode().unwrap();
        let info = dec.info().unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        let at = |x: usize, y: usize| &px[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        let green = |p: &[u8]| p[1] > 180 && p[0] < 90 && p[2] < 90;
        assert!(green(at(12, 6)) && green(at(4, 18)), "the box's edges");
        assert!(!green(at(12, 18)) && !green(at(40, 40)), "nothing else");
        // A sound source names its track through the association; an active speaker
        // through its person track; other kinds get none.
        let mut src = Event::new(EventKind::SoundSource, "cam", 1.0, 2.0, 0.6);
        src.id = "0190-b".into();
        src.evidence.association = Some(Association {
            track: 7,
            ..Default::default()
        });
        snap.attach(&mut src);
        assert!(src.snapshot.is_some());
        let mut sp = Event::new(EventKind::ActiveSpeaker, "cam", 1.0, 2.0, 0.6);
        sp.id = "0190-c".into();
        sp.evidence.speaker = Some(SpeakerEvidence {
            person_track: Some(7),
            ..Default::default()
        });
        snap.attach(&mut sp);
        assert!(sp.snapshot.is_some());
        let mut sound = Event::new(EventKind::Sound, "cam", 1.0, 2.0, 0.6);
        sound.id = "0190-d".into();
        snap.attach(&mut sound);
        assert!(sound.snapshot.is_none());
        assert_eq!((snap.written, snap.failed), (3, 0));
    }

    #[test]
    fn names_become_safe_file_names() {
        assert_eq!(file_safe("cam/../x"), "cam_.._x");
        assert_eq!(file_safe(".."), "_..");
        assert_eq!(file_safe(""), "_");
    }
}
