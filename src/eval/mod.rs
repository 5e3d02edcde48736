//! `avsense eval`: scores a run's events against a labels file in the format of
//! `../shared/media/av/person_sounds_dev.json`.
//!
//! Per labelled sound: **detected** — a `sound` event starts within ±0.5 s of the label's
//! start; **class** — that event's labels (top 3) contain one of the label's AudioSet names;
//! **source** — the association event for that sound says `person` (a `sound_source` whose
//! track is a person) or `offscreen` (`offscreen_sound`) as the label does; labels with
//! `source: null` are not scored for source.
//!
//! Labels in the format of `../shared/media/talking/labels.json` (speaking intervals per
//! face) score the `active_speaker` events instead ([`speaker`]).

pub mod speaker;

use avsense::core::event::{Event, EventKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How far a detected sound's start may be from the label's, seconds.
pub const START_TOLERANCE_S: f64 = 0.5;

/// Errors of reading a labels file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    /// The file could not be read.
    #[error("labels {path}: cannot read")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Malformed JSON, a missing or unknown field, or a bad value.
    #[error("labels {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (serde names the field, line and column).
        message: String,
    },
}

/// A labels file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// The clip's file name.
    pub clip: String,
    /// Free text.
    #[serde(default)]
    pub about: Option<String>,
    /// What is visible when.
    #[serde(default)]
    pub visible: Vec<Visible>,
    /// The sounds.
    pub sounds: Vec<LabelledSound>,
}

/// A visible class and its intervals.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Visible {
    /// COCO class.
    pub class: String,
    /// `[start, end]` seconds.
    pub intervals: Vec<[f64; 2]>,
}

/// One labelled sound.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledSound {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Acceptable AudioSet names.
    pub audioset: Vec<String>,
    /// `person`, `offscreen`, or null (not scored).
    pub source: Option<String>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

impl Labels {
    /// Reads and checks a labels file.
    pub fn load(path: &Path) -> Result<Self, LabelsError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let labels: Labels = serde_json::from_str(&text).map_err(|e| LabelsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for (i, s) in labels.sounds.iter().enumerate() {
            let bad = |m: String| LabelsError::Invalid {
                path: path.to_path_buf(),
                message: format!("sounds[{i}]: {m}"),
            };
            if !(s.start.is_finite() && s.end.is_finite() && s.start >= 0.0 && s.end > s.start) {
                return Err(bad(format!(
                    "start {} / end {}: expected 0 ≤ start < end",
                    s.start, s.end
                )));
            }
            if s.audioset.is_empty() {
                return Err(bad("audioset: expected at least one AudioSet name".into()));
            }
            if let Some(src) = &s.source {
                if avsense_nn::models::coco::id(src).is_none() && src != "offscreen" {
                    return Err(bad(format!(
                        "source {src:?}: expected a COCO class, \"offscreen\" or null"
                    )));
                }
            }
        }
        Ok(labels)
    }
}

/// The verdict on one labelled sound.
#[derive(Debug, Clone, Serialize)]
pub struct SoundResult {
    /// Label start / end.
    pub start: f64,
    /// Label end.
    pub end: f64,
    /// The labelled names.
    pub audioset: Vec<String>,
    /// The labelled source.
    pub source: Option<String>,
    /// The matched `sound` event's start, if any.
    pub detected_at: Option<f64>,
    /// Its labels.
    pub predicted_labels: Vec<String>,
    /// The association's verdict: a COCO class or `offscreen` (None: no association).
    pub predicted_source: Option<String>,
    /// The association event's confidence (source: the pair's score; off-screen: the
    /// strategy's off-screen confidence).
    pub predicted_score: Option<f32>,
    /// Detected within the tolerance.
    pub detected: bool,
    /// A labelled name is in the top 3.
    pub class_correct: bool,
    /// The source matches (None when not scored).
    pub source_correct: Option<bool>,
}

/// Totals.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Per labelled sound.
    pub sounds: Vec<SoundResult>,
    /// Detected / labelled.
    pub detected: [usize; 2],
    /// Class right / labelled.
    pub class_correct: [usize; 2],
    /// Source right / scored.
    pub source_correct: [usize; 2],
    /// Precision: `sound` events that overlap a labelled sound (±0.5 s) / all `sound`
    /// events. The others are false positives (or sounds the labels leave out).
    pub precision: [usize; 2],
    /// The `sound` events that overlap no labelled sound, as (start, end).
    pub extra: Vec<(f64, f64)>,
}

/// Scores `events` (one stream's) against `labels`.
pub fn evaluate(events: &[Event], labels: &Labels) -> EvalReport {
    let sounds: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::Sound)
        .collect();
    let mut out = Vec::new();
    for l in &labels.sounds {
        let matched = sounds
            .iter()
            .filter(|e| (e.start - l.start).abs() <= START_TOLERANCE_S)
            .min_by(|a, b| {
                (a.start - l.start)
                    .abs()
                    .total_cmp(&(b.start - l.start).abs())
            });
        let predicted_labels: Vec<String> = matched
            .map(|e| e.labels.iter().take(3).map(|x| x.name.clone()).collect())
            .unwrap_or_default();
        let assoc_event = matched.and_then(|s| {
            events.iter().find(|e| {
                matches!(e.kind, EventKind::SoundSource | EventKind::OffscreenSound)
                    && (e.start - s.start).abs() < 1e-6
                    && (e.end - s.end).abs() < 1e-6
            })
        });
        let predicted_score = assoc_event.map(|e| e.confidence);
        let predicted_source = assoc_event.map(|e| match e.kind {
            EventKind::OffscreenSound => "offscreen".to_string(),
            _ => e
                .evidence
                .association
                .as_ref()
                .map(|a| a.class.clone())
                .unwrap_or_default(),
        });
        let class_correct = predicted_labels.iter().any(|p| l.audioset.contains(p));
        let source_correct = l
            .source
            .as_ref()
            .map(|want| predicted_source.as_deref() == Some(want.as_str()));
        out.push(SoundResult {
            start: l.start,
            end: l.end,
            audioset: l.audioset.clone(),
            source: l.source.clone(),
            detected_at: matched.map(|e| e.start),
            predicted_labels,
            predicted_source,
            predicted_score,
            detected: matched.is_some(),
            class_correct,
            source_correct,
        });
    }
    let n = out.len();
    let scored = out.iter().filter(|r| r.source_correct.is_some()).count();
    let extra: Vec<(f64, f64)> = sounds
        .iter()
        .filter(|e| {
            !labels.sounds.iter().any(|l| {
                e.start <= l.end + START_TOLERANCE_S && e.end >= l.start - START_TOLERANCE_S
            })
        })
        .map(|e| (e.start, e.end))
        .collect();
    EvalReport {
        precision: [sounds.len() - extra.len(), sounds.len()],
        extra,
        detected: [out.iter().filter(|r| r.detected).count(), n],
        class_correct: [out.iter().filter(|r| r.class_correct).count(), n],
        source_correct: [
            out.iter()
                .filter(|r| r.source_correct == Some(true))
                .count(),
            scored,
        ],
        sounds: out,
    }
}

impl EvalReport {
    /// A text table.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| label | detected | labels (top 3) | class | source: labelled → predicted | source |\n|---|---|---|---|---|---|\n",
        );
        let yn = |b: bool| if b { "yes" } else { "no" };
        for r in &self.sounds {
            s.push_str(&format!(
                "| {:.2}–{:.2} {} | {} | {} | {} | {} → {}{} | {} |\n",
                r.start,
                r.end,
                r.audioset.join(" / "),
                r.detected_at
                    .map(|t| format!("yes ({t:.2})"))
                    .unwrap_or_else(|| "no".into()),
                r.predicted_labels.join(", "),
                yn(r.class_correct),
                r.source.as_deref().unwrap_or("null"),
                r.predicted_source.as_deref().unwrap_or("—"),
                r.predicted_score
                    .map(|c| format!(" ({c:.2})"))
                    .unwrap_or_default(),
                match r.source_correct {
                    Some(b) => yn(b),
                    None => "not scored",
                }
            ));
        }
        s.push_str(&format!(
            "| **total** | {}/{} | | {}/{} | | {}/{} |\n",
            self.detected[0],
            self.detected[1],
            self.class_correct[0],
            self.class_correct[1],
            self.source_correct[0],
            self.source_correct[1]
        ));
        s.push_str(&format!(
            "\nprecision: {}/{} sound events overlap a labelled sound; extra: {}\n",
            self.precision[0],
            self.precision[1],
            self.extra
                .iter()
                .map(|(a, b)| format!("{a:.2}–{b:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avsense::core::event::{Association, Label};

    fn labels() -> Labels {
        serde_json::from_str(
            r#"{"clip":"x.mp4","sounds":[
              {"start":8.0,"end":12.0,"audioset":["Speech"],"source":"person"},
              {"start":20.0,"end":21.0,"audioset":["Telephone"],"source":"offscreen"},
              {"start":30.0,"end":31.0,"audioset":["Camera"],"source":null}]}"#,
        )
        .unwrap()
    }

    fn sound(start: f64, end: f64, label: &str) -> Event {
        let mut e = Event::new(EventKind::Sound, "s", start, end, 1.0);
        e.labels.push(Label {
            name: label.into(),
            score: 0.5,
        });
        e
    }

    #[test]
    fn scores_detection_class_and_source() {
        let mut src = Event::new(EventKind::SoundSource, "s", 8.2, 12.1, 0.9);
        src.evidence.association = Some(Association {
            strategy: "rules".into(),
            track: 1,
            class: "person".into(),
            score: 0.9,
            compatibility: 1.0,
            co_presence: 0.9,
            correlation: 0.1,
            offset: 0.0,
            candidates: 1,
            importance: None,
        });
        let events = vec![
            sound(8.2, 12.1, "Speech"),
            src,
            sound(20.9, 21.5, "Music"), // 0.9 s late: not detected
            sound(30.1, 30.5, "Camera"),
            sound(40.0, 41.0, "Dog"), // nothing labelled there: a false positive
        ];
        let r = evaluate(&events, &labels());
        assert_eq!(r.detected, [2, 3]);
        assert_eq!(r.precision, [3, 4]);
        assert_eq!(r.extra, vec![(40.0, 41.0)]);
        assert_eq!(r.class_correct, [2, 3]);
        assert_eq!(r.source_correct, [1, 2]);
        assert_eq!(r.sounds[0].predicted_source.as_deref(), Some("person"));
        assert!(r.sounds[2].source_correct.is_none());
        assert!(r.table().contains("| **total** | 2/3 |"));
    }

    #[test]
    fn a_wrong_field_is_an_error_naming_the_file_and_field() {
        let dir = std::env::temp_dir().join(format!("avsense-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.json");
        std::fs::write(
            &p,
            r#"{"clip":"x","sounds":[{"start":1,"end":2,"audioset":["Speech"],"sorce":"person"}]}"#,
        )
        .unwrap();
        let e = Labels::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("sorce"), "{e}");
        std::fs::write(
            &p,
            r#"{"clip":"x","sounds":[{"start":3,"end":2,"audioset":["Speech"],"source":null}]}"#,
        )
        .unwrap();
        let e = Labels::load(&p).unwrap_err().to_string();
        assert!(e.contains("sounds[0]") && e.contains("start < end"), "{e}");
        std::fs::write(
            &p,
            r#"{"clip":"x","sounds":[{"start":1,"end":2,"audioset":["Speech"],"source":"ghost"}]}"#,
        )
        .unwrap();
        let e = Labels::load(&p).unwrap_err().to_string();
        assert!(e.contains("\"ghost\""), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
