//! What the encoders learn from the media, as it travels to the aligner and the event stage.
//!
//! [`VisionFeatures`] and [`AudioFeatures`] hold the fields every stream has (times, the
//! log-mel front end's output) plus an open set of typed results, one per encoder
//! ([`Extensions`], keyed by type as `http::Extensions` is): the object encoder adds its
//! tracks, the motion encoder its grid, the VAD its speech probabilities, and so on. An
//! encoder adds its own type in its own file; a consumer asks for the type it reads
//! (`features.get::<MotionFeatures>()`). Adding an encoder touches no struct here.

use super::clock::{Duration, Timestamp};
use super::media::{Frame, Modality};
use std::any::{Any, TypeId};
use std::sync::Arc;

/// A callback that sees each video frame with its features as soon as the video encoders
/// are done with it (before any window): for live views and recorders. Keep it cheap: it
/// runs on the stream's video thread.
pub type FrameTap = Arc<dyn Fn(&Frame, &VisionFeatures) + Send + Sync>;

/// A typed map of per-encoder results: at most one value per type.
///
/// Values are reference-counted, so cloning the map (a window tap cloning a window) costs
/// one counter increment per entry, never a copy of the data.
#[derive(Clone, Default)]
pub struct Extensions {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    id: TypeId,
    name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl Extensions {
    /// Adds `value`, replacing any value of the same type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        let entry = Entry {
            id,
            name: std::any::type_name::<T>(),
            value: Arc::new(value),
        };
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.value.downcast_ref::<T>())
    }

    /// The value of type `T` for changing it in place; `None` when there is none, or when
    /// the map has been cloned and the value is shared (encoders change their results before
    /// the features leave their stage, while nothing else holds them).
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter_mut()
            .find(|e| e.id == id)
            .and_then(|e| Arc::get_mut(&mut e.value))
            .and_then(|v| v.downcast_mut::<T>())
    }

    /// Whether a value of type `T` is present.
    pub fn contains<T: Any + Send + Sync>(&self) -> bool {
        self.get::<T>().is_some()
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.entries.iter().map(|e| e.name))
            .finish()
    }
}

/// Everything the video encoders learnt from one frame.
#[derive(Debug, Clone)]
pub struct VisionFeatures {
    /// Stream name.
    pub stream: Arc<str>,
    /// Frame time.
    pub pts: Timestamp,
    /// Frame duration.
    pub duration: Duration,
    /// Frame number in the stream.
    pub index: u64,
    /// Each encoder's results (object tracks, motion grid, faces, …), by type.
    pub ext: Extensions,
}

impl VisionFeatures {
    /// Empty features for `frame`, to be filled by the encoders.
    pub fn for_frame(frame: &Frame) -> Self {
        Self {
            stream: Arc::clone(&frame.stream),
            pts: frame.pts,
            duration: frame.duration,
            index: frame.index,
            ext: Extensions::default(),
        }
    }

    /// Features of frame `index` of `stream` with no encoder results yet.
    pub fn new(stream: &str, pts: Timestamp, duration: Duration, index: u64) -> Self {
        Self {
            stream: Arc::from(stream),
            pts,
            duration,
            index,
            ext: Extensions::default(),
        }
    }

    /// The same features with an encoder's result added (builder style).
    pub fn with<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.ext.insert(value);
        self
    }

    /// The end of the frame's display interval.
    pub fn end(&self) -> Timestamp {
        self.pts + self.duration
    }

    /// An encoder's result of type `T`, if that encoder ran on this frame.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.ext.get::<T>()
    }
}

/// Audio features for a run of 10 ms hops (YAMNet's framing: 25 ms windows, 10 ms hop).
#[derive(Debug, Clone)]
pub struct AudioFeatures {
    /// Stream name.
    pub stream: Arc<str>,
    /// Start of the first analysis window.
    pub pts: Timestamp,
    /// Hop between frames.
    pub hop: Duration,
    /// Window length.
    pub window: Duration,
    /// Log-mel frames, `frames × mel bins`, row-major: ln(mel(|STFT|) + 0.001).
    pub log_mel: Vec<f32>,
    /// RMS level per frame in dBFS (a full-scale sine is 0 dBFS).
    pub level_db: Vec<f32>,
    /// Onset strength per frame: mean positive log-mel flux.
    pub onset: Vec<f32>,
    /// Each audio encoder's results completed with this run (speech probabilities, tags,
    /// MFCC frames, …), by type.
    pub ext: Extensions,
}

impl AudioFeatures {
    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.level_db.len()
    }
    /// The time a frame stands for: the centre of its window.
    pub fn frame_time(&self, k: usize) -> Timestamp {
        Timestamp(self.pts.0 + k as u64 * self.hop.0 + self.window.0 / 2)
    }
    /// The end of the span these frames cover (start of the first + frames × hop).
    pub fn end(&self) -> Timestamp {
        Timestamp(self.pts.0 + self.frames() as u64 * self.hop.0)
    }

    /// The same features with an encoder's result added (builder style).
    pub fn with<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.ext.insert(value);
        self
    }

    /// An encoder's result of type `T`, if that encoder completed one with this run.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.ext.get::<T>()
    }
}

/// What the encoders send the aligner.
#[derive(Debug, Clone)]
pub enum Feature {
    /// Features of one frame.
    Vision(Arc<VisionFeatures>),
    /// Features of a run of audio frames.
    Audio(Arc<AudioFeatures>),
    /// The modality has ended (its edge closed).
    End(Modality),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct A(u32);
    #[derive(Debug, PartialEq)]
    struct B(&'static str);

    #[test]
    fn one_value_per_type_replaced_on_insert_and_shared_values_are_not_changed() {
        let mut x = Extensions::default();
        assert!(x.is_empty() && x.get::<A>().is_none());
        x.insert(A(1));
        x.insert(B("b"));
        x.insert(A(2));
        assert_eq!(
            (x.len(), x.get::<A>(), x.get::<B>()),
            (2, Some(&A(2)), Some(&B("b")))
        );
        if let Some(a) = x.get_mut::<A>() {
            a.0 = 3;
        }
        assert_eq!(x.get::<A>(), Some(&A(3)));
        let y = x.clone();
        assert!(
            x.get_mut::<A>().is_none(),
            "a value shared with a clone is read-only"
        );
        assert_eq!(y.get::<A>(), Some(&A(3)));
        assert!(format!("{x:?}").contains("B"));
    }
}
