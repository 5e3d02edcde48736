//! The encoder registry: which encoders a pipeline runs, each loaded once for every stream.
//!
//! To add an encoder: write it in its own file under `encode/video/` or `encode/audio/`
//! (the encoder, the result type it adds to the features, and an `…Kind` that loads its
//! model and makes one encoder per stream), then add one line below. Video encoders run in
//! the order they are registered (later ones may read earlier ones' results of the same
//! frame); audio encoders all read the shared log-mel front end's output.

use crate::av_encode::SpeakerModels;
use crate::config::PipelineConfig;
use crate::core::settings::Toggle;
use crate::encode::audio::mfcc::MfccKind;
use crate::encode::audio::speech::SpeechKind;
use crate::encode::audio::tagger::TaggerKind;
use crate::encode::video::faces::FacesKind;
use crate::encode::video::motion::MotionKind;
use crate::encode::video::nanodet::NanoDetKind;
use crate::encode::{AudioEncoderKind, EncodeError, VideoEncoderKind};
use avsense_nn::models::blazeface::BlazeFaceConfig;
use avsense_nn::models::lightasd::LightAsd;
use std::sync::Arc;

/// The encoders of a pipeline, loaded.
#[derive(Default)]
pub struct Registry {
    /// Video encoders, in the order they run.
    pub video: Vec<Box<dyn VideoEncoderKind>>,
    /// Audio encoders.
    pub audio: Vec<Box<dyn AudioEncoderKind>>,
    /// Light-ASD for the audio-visual encoder stage (the active speaker).
    pub asd: Option<LightAsd>,
    /// The audio-visual sync head scoring Light-ASD's embeddings (built in).
    pub sync: Option<avsense_nn::models::sync::SyncHead>,
    /// YAMNet's class names (the association's ontology map is checked against them).
    pub tagger_names: Option<Arc<Vec<String>>>,
    /// Whether a VAD runs (the face graph uses it).
    pub has_vad: bool,
    /// Encoders an `auto` mode switched off because a model file is missing: one line each,
    /// naming the file and the command that fetches it (for the run's summary).
    pub models_off: Vec<String>,
}

fn add<K>(list: &mut Vec<K>, kind: Option<K>) {
    list.extend(kind);
}

impl Registry {
    /// Notes `encoder` as off for the first of `rels` that is missing under `toggle`.
    fn note_missing(&mut self, cfg: &PipelineConfig, toggle: Toggle, encoder: &str, rels: &[&str]) {
        if let Some(path) = rels.iter().find_map(|rel| cfg.models.missing(toggle, rel)) {
            self.models_off.push(format!(
                "{encoder} is off: {} not found (run `avsense models fetch`, or set [models] dir)",
                path.display()
            ));
        }
    }
}

/// Loads every encoder the config enables and some source can use.
pub fn register(cfg: &PipelineConfig) -> Result<Registry, EncodeError> {
    let video = cfg.sources.iter().any(|s| s.video);
    let audio = cfg.audio.enabled && cfg.sources.iter().any(|s| s.audio);
    // The active speaker needs video and audio in one source, and both of its models.
    let av = cfg.audio.enabled && cfg.sources.iter().any(|s| s.video && s.audio);
    let mut r = Registry::default();

    if audio {
        let vad = SpeechKind::load(cfg.vad.mode, &cfg.models)?;
        r.has_vad = vad.is_some();
        if vad.is_none() {
            r.note_missing(
                cfg,
                cfg.vad.mode,
                "silero-vad (speech)",
                &["silero-vad/silero_vad.jit"],
            );
        }
        add(
            &mut r.audio,
            vad.map(|k| Box::new(k) as Box<dyn AudioEncoderKind>),
        );
        let tagger = TaggerKind::load(cfg.tagger.mode, &cfg.models)?;
        r.tagger_names = tagger.as_ref().map(|t| Arc::clone(t.class_names()));
        if tagger.is_none() {
            r.note_missing(
                cfg,
                cfg.tagger.mode,
                "yamnet (sound labels, fusion)",
                &["yamnet/yamnet.tflite", "yamnet/yamnet_class_map.csv"],
            );
        }
        add(
            &mut r.audio,
            tagger.map(|k| Box::new(k) as Box<dyn AudioEncoderKind>),
        );
    }
    if video {
        // Motion first: the detector's motion gate reads its result of the same frame.
        let motion = MotionKind::new(&cfg.motion);
        let gate_motion = motion.is_some().then_some(&cfg.motion);
        add(
            &mut r.video,
            motion.map(|k| Box::new(k) as Box<dyn VideoEncoderKind>),
        );
        let det = NanoDetKind::load(&cfg.detector, &cfg.tracker, gate_motion, &cfg.models)?;
        if det.is_none() {
            r.note_missing(
                cfg,
                cfg.detector.mode,
                "nanodet (objects)",
                &["human-models/nanodet.json", "human-models/nanodet.bin"],
            );
        }
        add(
            &mut r.video,
            det.map(|k| Box::new(k) as Box<dyn VideoEncoderKind>),
        );
    }
    if av && cfg.speaker.mode != crate::core::settings::Toggle::Off {
        let faces = BlazeFaceConfig {
            score_threshold: cfg.speaker.face_score,
            max_faces: cfg.speaker.max_faces.max(1) * 2,
            ..Default::default()
        };
        let sp = SpeakerModels::load(
            cfg.speaker.mode,
            cfg.speaker.weights.file(),
            faces,
            &cfg.models,
        )?;
        if let Some(sp) = sp {
            let kind = FacesKind::new(sp.faces, cfg.speaker.face_config(), cfg.speaker.width);
            r.video.push(Box::new(kind));
            r.audio.push(Box::new(MfccKind));
            if cfg.speaker.sync_head != crate::core::settings::Toggle::Off {
                let device = cfg.models.device()?;
                let head = avsense_nn::models::sync::SyncHead::builtin(&device)
                    .map_err(|e| EncodeError::load("sync-head", e))?;
                r.sync = Some(head);
            }
            r.asd = Some(sp.asd);
        } else {
            r.note_missing(
                cfg,
                cfg.speaker.mode,
                "blazeface + light-asd (active speaker)",
                &[
                    "human-models/blazeface.json",
                    "human-models/blazeface.bin",
                    cfg.speaker.weights.file(),
                ],
            );
        }
    }
    Ok(r)
}
