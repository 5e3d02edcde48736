//! The live view's pictures: per stream, the latest frame with its track boxes drawn, as a
//! JPEG — made only while someone watches (a request for a stream's frame in the last
//! [`WATCH_SECONDS`]), at most [`MAX_FPS`] a second per stream.

use crate::core::features::{FrameTap, VisionFeatures};
use crate::core::media::{Frame, PixelFormat};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Frames a second the view encodes per stream, at most.
pub const MAX_FPS: f64 = 5.0;
/// Seconds after the last request during which frames are still made.
pub const WATCH_SECONDS: u64 = 10;

/// One stream's latest picture.
#[derive(Clone)]
pub struct Picture {
    /// Its number (from 1): a client sees whether it changed.
    pub seq: u64,
    /// The frame's time on the stream's timeline, seconds.
    pub pts: f64,
    /// JPEG bytes.
    pub jpeg: Arc<[u8]>,
}

#[derive(Default)]
struct Inner {
    pictures: Mutex<HashMap<String, Picture>>,
    /// Milliseconds since `started` of the last request (0: none yet).
    asked: AtomicU64,
    started: Option<Instant>,
}

/// The live view's state, shared by the pipeline's frame tap and the server.
#[derive(Clone)]
pub struct LiveView(Arc<Inner>);

impl Default for LiveView {
    fn default() -> Self {
        Self(Arc::new(Inner {
            started: Some(Instant::now()),
            ..Inner::default()
        }))
    }
}

impl LiveView {
    fn now_ms(&self) -> u64 {
        self.0
            .started
            .map(|s| s.elapsed().as_millis() as u64 + 1)
            .unwrap_or(1)
    }

    /// Notes a request: frames are made for the next [`WATCH_SECONDS`].
    pub fn asked(&self) {
        self.0.asked.store(self.now_ms(), Ordering::Relaxed);
    }

    fn watched(&self) -> bool {
        let a = self.0.asked.load(Ordering::Relaxed);
        a > 0 && self.now_ms().saturating_sub(a) <= WATCH_SECONDS * 1000
    }

    /// The latest picture of `stream`.
    pub fn picture(&self, stream: &str) -> Option<Picture> {
        self.0.pictures.lock().ok()?.get(stream).cloned()
    }

    /// The tap that makes the pictures (give it to [`crate::Pipeline::with_frame_tap`]).
    pub fn tap(&self) -> FrameTap {
        let view = self.clone();
        Arc::new(move |frame: &Frame, f: &VisionFeatures| view.offer(frame, f))
    }

    fn offer(&self, frame: &Frame, f: &VisionFeatures) {
        if frame.format != PixelFormat::Rgb || !self.watched() {
            return;
        }
        let pts = frame.pts.as_secs_f64();
        let (seq, due) = match self.0.pictures.lock() {
            Ok(g) => match g.get(&*frame.stream) {
                Some(p) => (
                    p.seq + 1,
                    pts < p.pts || pts - p.pts >= 1.0 / MAX_FPS - 1e-6,
                ),
                None => (1, true),
            },
            Err(_) => return,
        };
        if !due {
            return;
        }
        let Some(rgb) = crate::snapshot::boxed_rgb(frame, f) else {
            return;
        };
        let Ok(jpeg) = crate::snapshot::encode_jpeg(&rgb, frame.width, frame.height) else {
            return;
        };
        if let Ok(mut g) = self.0.pictures.lock() {
            g.insert(
                frame.stream.to_string(),
                Picture {
                    seq,
                    pts,
                    jpeg: Arc::from(jpeg),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pts_ms: u64) -> Frame {
        Frame::from_pixels(
            "s",
            crate::core::clock::Timestamp(pts_ms * 1_000_000),
            crate::core::clock::Duration(100_000_000),
            16,
            8,
            PixelFormat::Rgb,
            vec![0u8; 16 * 8 * 3],
            0,
        )
        .expect("frame")
    }

    #[test]
    fn pictures_are_made_only_while_watched_and_at_most_max_fps() {
        let v = LiveView::default();
        let f = VisionFeatures::for_frame(&frame(0));
        v.offer(&frame(0), &f);
        assert!(v.picture("s").is_none(), "nobody watches yet");
        v.asked();
        v.offer(&frame(0), &f);
        let p = v.picture("s").expect("a picture");
        assert_eq!(p.seq, 1);
        assert_eq!(&p.jpeg[..2], &[0xFF, 0xD8], "a JPEG");
        v.offer(&frame(100), &f);
        assert_eq!(
            v.picture("s").map(|p| p.seq),
            Some(1),
            "100 ms later: not due"
        );
        v.offer(&frame(200), &f);
        assert_eq!(v.picture("s").map(|p| p.seq), Some(2));
    }
}
