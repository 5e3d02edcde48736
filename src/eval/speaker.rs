//! Scoring `active_speaker` events against speaking intervals in the format of
//! `../shared/media/talking/labels.json`: per clip, per labelled face (by its position in
//! the frame: `left`, `right`, `center`), the intervals in which it speaks.
//!
//! Frame level, on the model's 25 fps ticks over the clip: a tick is *labelled speaking*
//! for a face when its centre lies in one of the face's intervals, *predicted speaking*
//! when it lies in an `active_speaker` event of a face track at that position (the track's
//! box centre, from the event's `evidence.speaker.bbox`: left half, right half; `center`
//! takes every track). Reported per face: precision, recall, F1, and the fraction of all
//! ticks predicted speaking.

use super::LabelsError;
use avsense::core::event::{Event, EventKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tick length, seconds (Light-ASD's 25 fps).
const TICK_S: f64 = 0.04;

/// A speaker labels file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpeakerLabels {
    /// Free text.
    #[serde(default)]
    pub about: Option<String>,
    /// Per clip file name.
    pub clips: BTreeMap<String, ClipLabels>,
}

/// The faces of one clip.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClipLabels {
    /// The faces.
    pub faces: Vec<FaceLabel>,
}

/// One labelled face.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaceLabel {
    /// `left`, `right` or `center`.
    pub position: String,
    /// `[start, end]` seconds in which it speaks.
    pub speaking: Vec<[f64; 2]>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

impl SpeakerLabels {
    /// Whether `text` is a speaker labels file (it has `clips`).
    pub fn sniff(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("clips").is_some())
    }

    /// Reads and checks a labels file.
    pub fn load(path: &Path) -> Result<Self, LabelsError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks labels read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LabelsError> {
        let bad = |message: String| LabelsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let labels: SpeakerLabels = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        for (clip, c) in &labels.clips {
            for (i, f) in c.faces.iter().enumerate() {
                if !["left", "right", "center"].contains(&f.position.as_str()) {
                    return Err(bad(format!(
                        "clips.{clip}.faces[{i}].position {:?}: expected left, right or center",
                        f.position
                    )));
                }
                for (k, iv) in f.speaking.iter().enumerate() {
                    if !(iv[0].is_finite() && iv[1].is_finite() && iv[0] >= 0.0 && iv[1] > iv[0]) {
                        return Err(bad(format!(
                            "clips.{clip}.faces[{i}].speaking[{k}] {iv:?}: expected 0 ≤ start < end"
                        )));
                    }
                }
            }
        }
        Ok(labels)
    }

    /// The labels of the clip at `clip` (by file name).
    pub fn for_clip(&self, clip: &Path) -> Result<&ClipLabels, LabelsError> {
        let name = clip
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.clips.get(&name).ok_or_else(|| LabelsError::Invalid {
            path: PathBuf::from(&name),
            message: format!(
                "no labels for clip {name:?} (the file labels {})",
                self.clips.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// The scores of one labelled face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceScore {
    /// Its position.
    pub position: String,
    /// Ticks labelled speaking.
    pub labelled: u32,
    /// Ticks predicted speaking.
    pub predicted: u32,
    /// Ticks both.
    pub both: u32,
    /// `both / predicted` (1 when nothing is predicted).
    pub precision: f64,
    /// `both / labelled` (1 when nothing is labelled).
    pub recall: f64,
    /// Frame-level F1 (1 when nothing is labelled nor predicted).
    pub f1: f64,
    /// Ticks predicted speaking / all ticks of the clip.
    pub predicted_fraction: f64,
    /// Face tracks that were put at this position.
    pub tracks: Vec<u64>,
}

/// The scores of a clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpeakerReport {
    /// Ticks in the clip.
    pub ticks: u32,
    /// Per labelled face.
    pub faces: Vec<FaceScore>,
    /// `active_speaker` events seen.
    pub events: usize,
}

fn position_of(bbox: &[f32; 4]) -> &'static str {
    if (bbox[0] + bbox[2]) / 2.0 < 0.5 {
        "left"
    } else {
        "right"
    }
}

/// Scores `events` of a run over a clip of `duration` seconds against `labels`.
pub fn evaluate(events: &[Event], labels: &ClipLabels, duration: f64) -> SpeakerReport {
    let ticks = (duration / TICK_S).floor().max(0.0) as u32;
    let centre = |k: u32| (f64::from(k) + 0.5) * TICK_S;
    let speakers: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::ActiveSpeaker)
        .collect();
    let faces = labels
        .faces
        .iter()
        .map(|f| {
            let mine: Vec<&&Event> = speakers
                .iter()
                .filter(|e| {
                    f.position == "center"
                        || e.evidence
                            .speaker
                            .as_ref()
                            .is_some_and(|s| position_of(&s.bbox) == f.position)
                })
                .collect();
            let mut tracks: Vec<u64> = mine
                .iter()
                .filter_map(|e| e.evidence.speaker.as_ref().map(|s| s.face_track))
                .collect();
            tracks.sort_unstable();
            tracks.dedup();
            let (mut labelled, mut predicted, mut both) = (0u32, 0u32, 0u32);
            for k in 0..ticks {
                let t = centre(k);
                let l = f.speaking.iter().any(|iv| iv[0] <= t && t < iv[1]);
                let p = mine.iter().any(|e| e.start <= t && t < e.end);
                labelled += u32::from(l);
                predicted += u32::from(p);
                both += u32::from(l && p);
            }
            let ratio = |a: u32, b: u32| {
                if b == 0 {
                    1.0
                } else {
                    f64::from(a) / f64::from(b)
                }
            };
            let f1 = if labelled + predicted == 0 {
                1.0
            } else {
                2.0 * f64::from(both) / f64::from(labelled + predicted)
            };
            FaceScore {
                position: f.position.clone(),
                labelled,
                predicted,
                both,
                precision: ratio(both, predicted),
                recall: ratio(both, labelled),
                f1,
                predicted_fraction: ratio(predicted, ticks),
                tracks,
            }
        })
        .collect();
    SpeakerReport {
        ticks,
        faces,
        events: speakers.len(),
    }
}

impl SpeakerReport {
    /// A table for the terminal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} ticks (25 fps), {} active_speaker events\n{:<8} {:>9} {:>9} {:>6} {:>9} {:>7} {:>6} {:>10}  tracks\n",
            self.ticks, self.events, "face", "labelled", "predicted", "both", "precision", "recall", "F1", "predicted%"
        );
        for f in &self.faces {
            s.push_str(&format!(
                "{:<8} {:>9} {:>9} {:>6} {:>9.3} {:>7.3} {:>6.3} {:>9.1}%  {:?}\n",
                f.position,
                f.labelled,
                f.predicted,
                f.both,
                f.precision,
                f.recall,
                f.f1,
                100.0 * f.predicted_fraction,
                f.tracks
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use avsense::core::event::SpeakerEvidence;

    fn speaker(start: f64, end: f64, track: u64, x: f32) -> Event {
        let mut e = Event::new(EventKind::ActiveSpeaker, "s", start, end, 0.9);
        e.evidence.speaker = Some(SpeakerEvidence {
            face_track: track,
            person_track: None,
            overlap: 1.0,
            probability: 0.9,
            logit: 1.0,
            bbox: [x, 0.2, x + 0.2, 0.6],
            sync: None,
        });
        e
    }

    #[test]
    fn frame_level_scores_per_position() {
        let labels = SpeakerLabels::parse(
            r#"{"clips": {"c.mp4": {"faces": [
                {"position": "left", "speaking": [[0.0, 1.0]]},
                {"position": "right", "speaking": []}]}}}"#,
            Path::new("l.json"),
        )
        .unwrap();
        let clip = labels.for_clip(Path::new("/x/c.mp4")).unwrap();
        // Left speaks 0.2–1.2 (20 of 25 labelled ticks found, 5 extra); right 1.0–1.4.
        let ev = vec![speaker(0.2, 1.2, 1, 0.1), speaker(1.0, 1.4, 2, 0.7)];
        let r = evaluate(&ev, clip, 2.0);
        assert_eq!(r.ticks, 50);
        let left = &r.faces[0];
        assert_eq!((left.labelled, left.predicted, left.both), (25, 25, 20));
        assert!((left.f1 - 0.8).abs() < 1e-9 && left.tracks == vec![1]);
        let right = &r.faces[1];
        assert_eq!((right.labelled, right.predicted), (0, 10));
        assert!((right.predicted_fraction - 0.2).abs() < 1e-9);
        assert!(labels.for_clip(Path::new("other.mp4")).is_err());
    }

    #[test]
    fn a_bad_position_or_interval_names_the_field() {
        let e = SpeakerLabels::parse(
            r#"{"clips": {"c.mp4": {"faces": [{"position": "top", "speaking": []}]}}}"#,
            Path::new("l.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("l.json") && e.contains("position"), "{e}");
        let e = SpeakerLabels::parse(
            r#"{"clips": {"c.mp4": {"faces": [{"position": "left", "speaking": [[2.0, 1.0]]}]}}}"#,
            Path::new("l.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("speaking[0]"), "{e}");
        assert!(
            SpeakerLabels::sniff(r#"{"clips": {}}"#) && !SpeakerLabels::sniff(r#"{"clip": "x"}"#)
        );
    }
}
