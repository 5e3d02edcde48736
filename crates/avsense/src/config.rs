//! The pipeline configuration: TOML → serde structs (`deny_unknown_fields`), then validation
//! whose errors name the file, the key and the value that was expected.
//!
//! This module only assembles: every section's type, defaults (`DEFAULT_*` constants) and
//! `validate()` live with the stage that reads it (`[motion]` in `encode::video::motion`,
//! `[speaker]` in `fusion::speaker`, …), and no stage imports this module. A config built in
//! code is checked like a TOML one: `Pipeline::new` validates it.

use crate::align::{DEFAULT_HOP_S, DEFAULT_LATENESS_S, DEFAULT_WINDOW_S};
use crate::core::settings::{check, in_range, EncoderToggle, Invalid};
use crate::encode::audio::AudioConfig;
use crate::encode::video::motion::MotionConfig;
use crate::encode::video::objects::DetectorConfig;
use crate::encode::video::tracker::TrackerConfig;
use crate::fusion::av::FusionConfig;
use crate::fusion::decoders::{SoundConfig, SpeechConfig, TaggerConfig};
use crate::fusion::speaker::SpeakerConfig;
use crate::model_files::ModelsConfig;
use crate::sink::{SinkConfig, SinkKind};
use crate::source::config::{SourceConfig, SourceKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors of loading or validating a pipeline config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown/mistyped key.
    #[error("config {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// toml's message (names the key, the line and what was expected).
        message: String,
    },
    /// A key has a value outside what the runtime accepts.
    #[error("config {path}: `{key}` = {value}: expected {expected}")]
    Invalid {
        /// The config file (or `<command line>`).
        path: PathBuf,
        /// The dotted key, e.g. `pipeline.window`.
        key: String,
        /// The value found.
        value: String,
        /// What was expected.
        expected: String,
    },
}

/// A whole pipeline: sources, encoder settings, event detectors and sinks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Windowing and naming.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// One entry per input (`[[source]]`).
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// The motion encoder and its events.
    #[serde(default)]
    pub motion: MotionConfig,
    /// The audio front end (log-mel, level, onset).
    #[serde(default)]
    pub audio: AudioConfig,
    /// The `sound` event detector.
    #[serde(default)]
    pub sound: SoundConfig,
    /// Where model files are and which device runs them.
    #[serde(default)]
    pub models: ModelsConfig,
    /// The voice activity detector (Silero VAD).
    #[serde(default)]
    pub vad: EncoderToggle,
    /// The audio tagger (YAMNet): AudioSet labels on `sound` events.
    #[serde(default)]
    pub tagger: TaggerConfig,
    /// `speech` events from the VAD.
    #[serde(default)]
    pub speech: SpeechConfig,
    /// Audio-visual association (`sound_source` / `offscreen_sound`).
    #[serde(default)]
    pub fusion: FusionConfig,
    /// The object detector (NanoDet, COCO-80) and how often it runs.
    #[serde(default)]
    pub detector: DetectorConfig,
    /// The multi-object tracker behind the detector.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// Active speaker detection: faces, Light-ASD, the face graph.
    #[serde(default)]
    pub speaker: SpeakerConfig,
    /// Where events go (`[[sink]]`); stdout when none is given.
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkConfig>,
    /// JPEG snapshots of objects, sound sources and active speakers.
    #[serde(default)]
    pub snapshots: crate::snapshot::SnapshotConfig,
    /// The HTTP API (off unless `listen` is set).
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// RTSP out (off unless `listen` is set).
    #[serde(default)]
    pub rtsp_out: crate::rtsp_out::RtspOutConfig,
}

/// `[pipeline]`: windowing for the aligner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// A name for logs and the summary.
    pub name: String,
    /// Window length in seconds (0.01 to 60).
    pub window: f64,
    /// Hop between window starts in seconds (0.01 ≤ hop ≤ window, window / hop ≤ 100).
    pub hop: f64,
    /// How far (seconds) one modality may lag the other before windows close without it.
    pub lateness: f64,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            name: "avsense".into(),
            window: DEFAULT_WINDOW_S,
            hop: DEFAULT_HOP_S,
            lateness: DEFAULT_LATENESS_S,
        }
    }
}

/// Shortest hop (and window) between analysis windows, seconds.
pub const MIN_HOP_S: f64 = 0.01;
/// Most windows that may overlap one instant (`window / hop`).
pub const MAX_OVERLAP: f64 = 100.0;

impl PipelineSection {
    /// Checks the keys of `[pipeline]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let p = self;
        // Every window holds its features and is decoded on its own: the hop sets how many
        // windows a second of media makes, the window how much each holds. Bounds keep both
        // sane (a hop of 1e-9 s would make a billion windows per second).
        check(
            in_range(p.window, MIN_HOP_S, 60.0),
            "window",
            p.window,
            "seconds, 0.01 to 60",
        )?;
        check(
            in_range(p.hop, MIN_HOP_S, p.window) && p.window / p.hop <= MAX_OVERLAP,
            "hop",
            p.hop,
            "seconds, ≥ 0.01, ≤ pipeline.window and ≥ window / 100",
        )?;
        check(
            in_range(p.lateness, 0.0, 60.0),
            "lateness",
            p.lateness,
            "seconds, 0 to 60",
        )
    }
}

impl PipelineConfig {
    /// Reads, parses and validates `path`. Relative source paths are resolved against the
    /// config file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for s in &mut cfg.sources {
            if let Some(p) = &s.path {
                if p.is_relative() {
                    s.path = Some(base.join(p));
                }
            }
        }
        Ok(cfg)
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut cfg: PipelineConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        // A microphone has no video track, whatever `video` says.
        for s in &mut cfg.sources {
            if s.kind == SourceKind::Microphone {
                s.video = false;
            }
        }
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// A one-source pipeline for `avsense run --input X`: a path or a URI.
    pub fn for_input(input: &str, events: Option<PathBuf>) -> Result<Self, ConfigError> {
        let is_uri = input.contains("://");
        let source = SourceConfig {
            name: "input".into(),
            kind: if is_uri {
                SourceKind::Uri
            } else {
                SourceKind::File
            },
            path: (!is_uri).then(|| PathBuf::from(input)),
            uri: is_uri.then(|| input.to_string()),
            ..SourceConfig::new("input", SourceKind::File)
        };
        let sinks = match events {
            Some(path) => vec![SinkConfig {
                path: Some(path),
                ..SinkConfig::new(SinkKind::Jsonl)
            }],
            None => vec![SinkConfig {
                path: None,
                ..SinkConfig::new(SinkKind::Stdout)
            }],
        };
        let cfg = PipelineConfig {
            sources: vec![source],
            sinks,
            ..PipelineConfig::default()
        };
        cfg.validate(Path::new("<command line>"))?;
        Ok(cfg)
    }
}

impl Default for PipelineConfig {
    /// Every section at its default, no source (add one: [`crate::Pipeline::builder`]) and
    /// no sink (events go to stdout unless the program gives its own).
    fn default() -> Self {
        PipelineConfig {
            pipeline: PipelineSection::default(),
            sources: Vec::new(),
            motion: MotionConfig::default(),
            audio: AudioConfig::default(),
            sound: SoundConfig::default(),
            models: ModelsConfig::default(),
            vad: EncoderToggle::default(),
            tagger: TaggerConfig::default(),
            speech: SpeechConfig::default(),
            fusion: FusionConfig::default(),
            detector: DetectorConfig::default(),
            tracker: TrackerConfig::default(),
            speaker: SpeakerConfig::default(),
            sinks: Vec::new(),
            snapshots: Default::default(),
            http: Default::default(),
            rtsp_out: Default::default(),
        }
    }
}

impl PipelineConfig {
    /// Where snapshots go: `[snapshots] dir`, else `snapshots/` beside the first `jsonl`
    /// sink's file, else `snapshots/` in the working directory.
    pub fn snapshot_dir(&self) -> std::path::PathBuf {
        if let Some(d) = &self.snapshots.dir {
            return d.clone();
        }
        self.sinks
            .iter()
            .find_map(|s| s.path.as_deref().filter(|_| s.kind == SinkKind::Jsonl))
            .and_then(Path::parent)
            .map_or_else(|| "snapshots".into(), |p| p.join("snapshots"))
    }

    /// Checks every value the runtime relies on: each section by its own `validate()`, then
    /// what spans sections (unique stream names).
    pub fn validate(&self, origin: &Path) -> Result<(), ConfigError> {
        let at = |section: &str| {
            let origin = origin.to_path_buf();
            let section = section.to_string();
            move |e: Invalid| {
                let e = e.within(&section);
                ConfigError::Invalid {
                    path: origin.clone(),
                    key: e.key,
                    value: e.value,
                    expected: e.expected,
                }
            }
        };
        self.pipeline.validate().map_err(at("pipeline"))?;
        if self.sources.is_empty() {
            return Err(at("source")(Invalid::new(
                "",
                "(none)",
                "at least one [[source]] table",
            )));
        }
        for (i, s) in self.sources.iter().enumerate() {
            let key = format!("source[{i}]");
            s.validate().map_err(at(&key))?;
            if self.sources[..i].iter().any(|o| o.name == s.name) {
                return Err(at(&key)(Invalid::new(
                    "name",
                    format!("{:?}", s.name),
                    "a name no other source uses",
                )));
            }
        }
        self.fusion.validate().map_err(at("fusion"))?;
        self.motion.validate().map_err(at("motion"))?;
        self.sound.validate().map_err(at("sound"))?;
        self.tagger.validate().map_err(at("tagger"))?;
        self.speech.validate().map_err(at("speech"))?;
        self.detector.validate().map_err(at("detector"))?;
        self.tracker.validate().map_err(at("tracker"))?;
        self.speaker.validate().map_err(at("speaker"))?;
        self.snapshots.validate().map_err(at("snapshots"))?;
        self.http.validate().map_err(at("http"))?;
        self.rtsp_out.validate().map_err(at("rtsp_out"))?;
        for (i, s) in self.sinks.iter().enumerate() {
            s.validate().map_err(at(&format!("sink[{i}]")))?;
            // A sink must never write over what a source reads.
            if let Some(src) = self.sources.iter().find(|src| {
                src.path
                    .as_deref()
                    .zip(s.path.as_deref())
                    .is_some_and(|(a, b)| crate::sink::same_file(a, b))
            }) {
                return Err(at(&format!("sink[{i}]"))(Invalid::new(
                    "path",
                    format!("{:?}", s.path.as_deref().unwrap_or(Path::new(""))),
                    format!("a file other than source {:?}'s input", src.name),
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edge::EdgePolicy;

    #[test]
    fn speaker_keys_are_checked_with_their_names() {
        for (text, key) in [
            ("[speaker]\ndurations = []\n", "speaker.durations"),
            (
                "[speaker]\ndurations = [1.0, -2.0]\n",
                "speaker.durations[1]",
            ),
            ("[speaker]\non = 0.3\noff = 0.4\n", "speaker.off"),
            ("[speaker]\nmax_speakers = 0\n", "speaker.max_speakers"),
            ("[speaker]\nwidth = 10\n", "speaker.width"),
        ] {
            let e = PipelineConfig::parse(&format!("{MIN}{text}"), Path::new("s.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("s.toml") && e.contains(key), "{text}: {e}");
        }
        let e = PipelineConfig::parse(
            &format!("{MIN}[speaker]\nweights = \"x\"\n"),
            Path::new("s.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("weights"), "{e}");
        let c = PipelineConfig::parse(
            &format!("{MIN}[speaker]\nweights = \"ava\"\n"),
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(c.speaker.weights, crate::fusion::speaker::AsdWeights::Ava);
    }

    const MIN: &str = "[[source]]\nname = \"a\"\nkind = \"test\"\nduration = 2.0\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = PipelineConfig::parse(MIN, Path::new("x.toml")).unwrap();
        assert_eq!(c.pipeline.window, DEFAULT_WINDOW_S);
        assert_eq!(c.sources[0].effective_policy(), EdgePolicy::Block);
        assert!(c.sinks.is_empty());
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = format!("{MIN}[motion]\ngird = [1, 2]\n");
        let e = PipelineConfig::parse(&text, Path::new("p/x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p/x.toml") && e.contains("gird"), "{e}");
    }

    #[test]
    fn zero_window_is_rejected_with_key_and_expectation() {
        let text = format!("[pipeline]\nwindow = 0.0\n{MIN}");
        let e = PipelineConfig::parse(&text, Path::new("w.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("w.toml") && e.contains("pipeline.window") && e.contains("0.01 to 60"),
            "{e}"
        );
    }

    #[test]
    fn live_test_source_defaults_to_drop_oldest() {
        let text = "[[source]]\nname = \"l\"\nkind = \"test\"\nlive = true\n";
        let c = PipelineConfig::parse(text, Path::new("l.toml")).unwrap();
        assert_eq!(c.sources[0].effective_policy(), EdgePolicy::DropOldest);
    }

    #[test]
    fn duplicate_source_names_are_rejected() {
        let text = format!("{MIN}{MIN}");
        let e = PipelineConfig::parse(&text, Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("source[1].name"), "{e}");
    }
}
