//! The audio-visual encoder stage: networks that need both modalities of a window, run on
//! the aligner's windows before the event stage decides anything.
//!
//! ```text
//! aligner ─Window─▶ av_encode (Light-ASD per face: front ends + back end) ─Window + AsdScores─▶ events
//! ```
//!
//! Today it runs Light-ASD ([`asd::AsdRunner`]): each new frame's face crops and each new
//! audio run's MFCC go in; every window leaves with the face-ticks whose logits became final
//! ([`AsdScores`] in the window's extensions). The event stage's face graph and hysteresis
//! turn those into `active_speaker` decisions — decisions only, no network passes on the
//! event thread. At the end of the stream the last scores go to the event stage through
//! the stage's final channel (`run_av_encode_stage`).

pub mod asd;

use crate::core::edge::{EdgeReceiver, EdgeSender};
use crate::core::features::{AudioFeatures, VisionFeatures};
use crate::core::settings::Toggle;
use crate::core::window::{ReadCursor, Window};
use crate::encode::audio::mfcc::MfccRun;
use crate::encode::video::faces::{Faces, TICK_NS};
use crate::encode::EncodeError;
use crate::model_files::ModelsConfig;
use asd::{AsdConfig, AsdRunner, AsdStats, FaceInput, FaceTick};
use avsense_nn::models::blazeface::{BlazeFace, BlazeFaceConfig};
use avsense_nn::models::lightasd::{LightAsd, LightAsdError};
use std::sync::Arc;

/// How far behind a closed window's end the MFCC and face crops may still arrive (framing
/// of the audio front end, the face encoder's tick assignment), nanoseconds.
const WINDOW_MARGIN_NS: u64 = 500_000_000;

/// The active speaker's two networks, loaded together: BlazeFace for the face encoder and
/// Light-ASD for this stage. With either file missing under `auto`, neither runs.
pub struct SpeakerModels {
    /// The face detector.
    pub faces: BlazeFace,
    /// The active-speaker network.
    pub asd: LightAsd,
}

impl SpeakerModels {
    /// Loads both under `[speaker] mode`; `weights`: Light-ASD's file under the model
    /// directory.
    pub fn load(
        mode: Toggle,
        weights: &str,
        faces: BlazeFaceConfig,
        models: &ModelsConfig,
    ) -> Result<Option<Self>, EncodeError> {
        let face = models.file(mode, "blazeface", "human-models/blazeface.json")?;
        let asd = models.file(mode, "light-asd", weights)?;
        let (Some(face), Some(asd)) = (face, asd) else {
            return Ok(None);
        };
        let device = models.device()?;
        let faces = BlazeFace::load_from(&face.folder, &face.name, &device, faces)
            .map_err(|e| EncodeError::load("blazeface", e))?;
        let origin = asd.origin();
        let bytes = asd
            .read()
            .map_err(|e| EncodeError::read("light-asd", &origin.display().to_string(), e))?;
        let asd = LightAsd::load_bytes(&bytes, &origin, &device)
            .map_err(|e| EncodeError::load("light-asd", e))?;
        Ok(Some(Self { faces, asd }))
    }
}

/// What Light-ASD made final with one window (or at the end of the stream).
#[derive(Debug, Clone, Default)]
pub struct AsdScores {
    /// Face-ticks whose logits are final, in the runner's order.
    pub ticks: Vec<FaceTick>,
    /// Face segments that ended.
    pub ended: Vec<u64>,
    /// Every face-tick before this tick is final (`u64::MAX` at the end of the stream).
    pub frontier: u64,
    /// The runner's counters so far.
    pub stats: AsdStats,
    /// Model failures so far (the stream goes on without scores there).
    pub failures: u64,
}

/// The per-stream Light-ASD stage (see the module doc).
pub struct AsdStage {
    stream: String,
    runner: AsdRunner,
    cursor: ReadCursor,
    failures: u64,
}

impl AsdStage {
    /// A stage running `model` over chunks of `durations` ticks; `has_audio`: the stream
    /// has audio (without it nobody is heard and no tick is scored).
    pub fn new(stream: &str, model: LightAsd, durations: Vec<usize>, has_audio: bool) -> Self {
        let mut runner = AsdRunner::new(
            model,
            AsdConfig {
                durations,
                ..Default::default()
            },
        );
        if !has_audio {
            // Cannot fail: no audio run is open, so nothing is embedded.
            let _ = runner.end_audio();
        }
        Self {
            stream: stream.to_string(),
            runner,
            cursor: ReadCursor::default(),
            failures: 0,
        }
    }

    /// Scores every face tick with the sync head too ([`FaceTick::av_sync`]).
    pub fn with_sync(mut self, head: avsense_nn::models::sync::SyncHead) -> Self {
        self.runner = self.runner.with_sync(head);
        self
    }

    /// Keeps Light-ASD's embeddings as they are computed (training the sync head).
    pub fn capture(&mut self) {
        self.runner.capture();
    }

    /// The embeddings kept so far.
    pub fn take_captured(&mut self) -> asd::Captured {
        self.runner.take_captured()
    }

    fn failed(&mut self, e: &LightAsdError) {
        self.failures += 1;
        tracing::warn!("stream {}: active speaker: {e}", self.stream);
    }

    /// One frame's faces.
    fn push_vision(&mut self, v: &VisionFeatures) {
        let Some(f) = v.get::<Faces>() else {
            self.runner.push_faces(0..0, &[]);
            return;
        };
        let faces: Vec<FaceInput> = f
            .faces
            .iter()
            .filter_map(|f| {
                f.crop.as_ref().map(|c| FaceInput {
                    track: f.track_id,
                    person: f.person,
                    bbox: f.bbox,
                    crop: Arc::clone(c),
                    motion: f.mouth_motion,
                })
            })
            .collect();
        self.runner.push_faces(f.ticks.clone(), &faces);
    }

    /// One audio run's MFCC.
    fn push_audio(&mut self, a: &AudioFeatures) {
        if let Some(m) = a.get::<MfccRun>() {
            if let Err(e) = self.runner.push_mfcc(m) {
                self.failed(&e);
            }
        }
    }

    /// Takes the window's new frames and audio, runs what is ready, and returns the scores
    /// made final.
    pub fn process(&mut self, w: &Window) -> AsdScores {
        let (vision, audio) = self.cursor.advance(w);
        for v in vision {
            self.push_vision(v);
        }
        for a in audio {
            self.push_audio(a.run);
        }
        // The aligner has closed the window: video and audio before its end (less a margin
        // for the front ends' framing) have all arrived or never will.
        let tick = w.end.0.saturating_sub(WINDOW_MARGIN_NS) / TICK_NS;
        if let Err(e) = self.runner.audio_absent_before(tick) {
            self.failed(&e);
        }
        self.runner.video_absent_before(tick);
        self.poll(false)
    }

    /// Scores what is ready; `end`: the stream has ended (everything is final).
    fn poll(&mut self, end: bool) -> AsdScores {
        let (ticks, ended) = match self.runner.poll() {
            Ok(r) => r,
            Err(e) => {
                self.failed(&e);
                (Vec::new(), Vec::new())
            }
        };
        AsdScores {
            ticks,
            ended,
            // What the scores made final is known after the poll.
            frontier: if end { u64::MAX } else { self.runner.settled() },
            stats: self.runner.stats(),
            failures: self.failures,
        }
    }

    /// End of the stream: everything left is scored.
    pub fn finish(&mut self) -> AsdScores {
        self.runner.end_video();
        if let Err(e) = self.runner.end_audio() {
            self.failed(&e);
        }
        self.poll(true)
    }
}

/// Runs the stage until the window edge closes: every window goes on with its
/// [`AsdScores`]; the final scores go to `last` before the output edge closes, so the event
/// stage finds them when it finishes. After a stop (`stop`), queued windows are dropped
/// instead of scored.
pub fn run_av_encode_stage(
    mut stage: AsdStage,
    rx: EdgeReceiver<Window>,
    tx: EdgeSender<Window>,
    last: crossbeam_channel::Sender<AsdScores>,
    stop: crate::core::stop::StopFlag,
    times: crate::core::timing::ModelTimes,
) {
    while let Some(mut w) = rx.recv() {
        if stop.is_set() {
            continue;
        }
        let scores = times.time("light-asd", || stage.process(&w));
        w.ext.insert(scores);
        if tx.send(w).is_err() {
            return; // downstream stopped
        }
    }
    let _ = last.send(stage.finish());
}
