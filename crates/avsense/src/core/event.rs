//! Perception events: the public output, one JSON object per line.
//!
//! The schema is versioned (`schema`); a consumer can rely on every field listed in
//! README's event reference for a given version. Times are seconds on the stream's
//! timeline (files: from the start of the file).
//!
//! Every event has an `id` and a `phase`: an event with a duration (an object in view, a
//! sound, speech, an active speaker, motion) is published as a `start` message when it is
//! confirmed and an `end` message with its final fields, both with the same `id`; events
//! decided only when complete (`sound_source`, `offscreen_sound`, `av_event`, the source
//! reports) have an `end` message only. `related` links a sound and its association, and
//! speech and its active speakers.

use serde::{Deserialize, Serialize};

/// The schema version written into every event.
pub const SCHEMA: &str = "avsense.event/2";

/// Where in its lifecycle an event message is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The event is confirmed and still going on (`end`: the time so far).
    Start,
    /// The event's labels, score or source changed while it goes on.
    Update,
    /// The event is over; every field is final.
    #[default]
    End,
}

impl Phase {
    /// `start`, `update` or `end`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Update => "update",
            Phase::End => "end",
        }
    }

    /// Parses `start`, `update` or `end`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Phase::Start),
            "update" => Some(Phase::Update),
            "end" => Some(Phase::End),
            _ => None,
        }
    }
}

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Something moved in view (motion grid cells).
    Motion,
    /// A sound rose above the running noise floor.
    Sound,
    /// Someone speaks (voice activity).
    Speech,
    /// A tracked object appeared or left.
    Object,
    /// A source failed; the other sources keep running.
    SourceError,
    /// A visible track makes a sound (`objects`: the track; `evidence.association`: why).
    SoundSource,
    /// A sound with no visible source (`evidence.association`: the best, rejected candidate).
    OffscreenSound,
    /// A live source was lost and came back: `start`–`end` is the outage on the stream's
    /// timeline (the timeline runs on across it).
    StreamGap,
    /// A window-level audio-visual event from a learned fusion model (`labels[0]`: the class,
    /// e.g. `speech_in_view`), with onset/offset hysteresis over windows.
    AvEvent,
    /// A visible face is speaking (Light-ASD over the face graph): `objects` holds the
    /// person track the face belongs to (when one does), `evidence.speaker` the face.
    ActiveSpeaker,
    /// Part of a recorded input did not decode (a gap inside a track, a track that ends
    /// before the container's duration): `start`–`end` is what is missing,
    /// `evidence.warning` says what. The run went on (`--strict` makes it fail).
    SourceWarning,
}

impl EventKind {
    /// Its name in events and subjects (`sound_source`), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Motion => "motion",
            Self::Sound => "sound",
            Self::Speech => "speech",
            Self::Object => "object",
            Self::SourceError => "source_error",
            Self::SoundSource => "sound_source",
            Self::OffscreenSound => "offscreen_sound",
            Self::StreamGap => "stream_gap",
            Self::AvEvent => "av_event",
            Self::ActiveSpeaker => "active_speaker",
            Self::SourceWarning => "source_warning",
        }
    }
}

/// Something incomplete about a source's media, found when it ended; the run went on.
/// It becomes a `source_warning` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceWarning {
    /// Where it starts on the stream's timeline, seconds.
    pub start: f64,
    /// Where it ends, seconds.
    pub end: f64,
    /// What happened, one line.
    pub message: String,
}

/// How a source ended, as the event stage reports it after the stream's last events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceVerdict {
    /// Why it failed (a `source_error` event).
    pub error: Option<String>,
    /// What was incomplete (`source_warning` events).
    pub warnings: Vec<SourceWarning>,
}

/// A label with its score (AudioSet or COCO names as the models give them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Class name.
    pub name: String,
    /// Score in [0, 1].
    pub score: f32,
}

/// Audio measurements of a `sound` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioSummary {
    /// Peak RMS level inside the event, dBFS (full-scale sine = 0 dBFS).
    pub peak_dbfs: f32,
    /// The running noise floor when the sound began, dBFS.
    pub floor_dbfs: f32,
    /// `peak_dbfs − floor_dbfs`.
    pub snr_db: f32,
    /// Strongest onset (mean positive log-mel flux) inside the event.
    pub peak_onset: f32,
}

/// Why the event was emitted: the measurements behind it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Motion grid `[columns, rows]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<[u32; 2]>,
    /// Grid cells `[column, row]` that were active at any time during the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<Vec<[u32; 2]>>,
    /// Largest fraction of the frame that changed on one frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_area: Option<f32>,
    /// Frames (motion) or 10 ms audio frames (sound) above threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_frames: Option<u32>,
    /// `appeared` or `left` (`object`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Box `[x0, y0, x1, y1]` in source-frame pixels (`object`: the last box).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f32; 4]>,
    /// Tagger patches the labels were averaged over (`sound`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<u32>,
    /// `sound`, `sound_source`, `offscreen_sound`: the id shared by a sound and its
    /// association event (per stream, counting from 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound_id: Option<u64>,
    /// `sound_source` / `offscreen_sound`: the sound–track evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association: Option<Association>,
    /// Connection attempts before the stream came back (`stream_gap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The error message (`source_error`; `stream_gap`: why the stream was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was incomplete (`source_warning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// `active_speaker`: the speaking face; `sound_source` decided by the active speaker:
    /// the face whose speech it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<SpeakerEvidence>,
    /// `speech`: the visible faces that spoke during it (empty: nobody in view spoke);
    /// `sound_source` / `offscreen_sound` of speech: the faces the active speaker judged
    /// over it (speaking or not), with their sync scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speakers: Option<Vec<SpeakerEvidence>>,
}

/// A speaking face and how much of an event's span it spoke.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpeakerEvidence {
    /// The face track (its own namespace, not an object track id).
    pub face_track: u64,
    /// The person track holding the face, when one does.
    pub person_track: Option<u64>,
    /// Fraction of the span's 25 fps ticks in which the face was speaking.
    pub overlap: f32,
    /// Mean speaking probability (face graph) over the ticks it spoke.
    pub probability: f32,
    /// Mean Light-ASD logit over those ticks (≥ 0: speaking by the model alone).
    pub logit: f32,
    /// The face's box (normalised, `[x0, y0, x1, y1]`) at the last of those ticks.
    pub bbox: [f32; 4],
    /// Mean probability from the audio-visual sync head that this face's mouth makes the
    /// sound heard, over the span's ticks it scored (None: no head, or no scored tick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<f32>,
}

/// Why a sound was given to a visible track (or not): the fusion graph's edge features
/// between them and the strategy's score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Association {
    /// The fusion strategy that decided (`rules`, …).
    pub strategy: String,
    /// The track.
    pub track: u64,
    /// Its COCO class.
    pub class: String,
    /// The strategy's score for the pair, 0–1.
    pub score: f32,
    /// Ontology compatibility of the sound's classes with the track's class, 0–1.
    pub compatibility: f32,
    /// Fraction of the sound's frames in which the track was visible, 0–1.
    pub co_presence: f32,
    /// Correlation of the motion in the track's box with the audio level, −1–1.
    pub correlation: f32,
    /// Seconds between the sound's centre and the centre of the track's presence in it.
    pub offset: f32,
    /// Visible tracks considered.
    pub candidates: u32,
    /// Learned strategies: which edge features mattered — how much the pair's association
    /// probability drops when each feature is zeroed on the cross-modal edges (occlusion),
    /// averaged over the sound's segments like the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<EdgeImportance>,
}

/// Drop of the association probability when one edge feature is zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EdgeImportance {
    /// Ontology compatibility.
    pub compatibility: f32,
    /// Co-presence.
    pub co_presence: f32,
    /// Motion–level correlation.
    pub correlation: f32,
    /// Time offset.
    pub offset: f32,
}

/// A JPEG snapshot of an event: the best-scored frame of its track with the box drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The JPEG file, as written (relative paths are relative to avsense's working
    /// directory).
    pub path: String,
    /// The object track it shows.
    pub track: u64,
    /// The frame's time, seconds on the stream's timeline.
    pub time: f64,
    /// Image width, pixels (the detector's input size).
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// The drawn box in the image's pixels: `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
}

/// One perception event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version, [`SCHEMA`].
    pub schema: String,
    /// The event's id (a UUIDv7), shared by its lifecycle messages (see the module doc).
    #[serde(default)]
    pub id: String,
    /// Event kind.
    pub kind: EventKind,
    /// `start`, `update` or `end`.
    #[serde(default)]
    pub phase: Phase,
    /// Stream (source name).
    pub stream: String,
    /// Start, seconds on the stream's timeline.
    pub start: f64,
    /// End, seconds on the stream's timeline.
    pub end: f64,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// Class labels with scores (empty when no classifier has run).
    pub labels: Vec<Label>,
    /// Object track ids involved (filled once detectors run).
    pub objects: Vec<u64>,
    /// Audio measurements (`sound`).
    pub audio: Option<AudioSummary>,
    /// The measurements behind the event.
    pub evidence: Evidence,
    /// Wall-clock time (RFC 3339, UTC) of `start`, for live streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<String>,
    /// Live streams: milliseconds from the capture of the event's `end` to the event
    /// reaching the sinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Ids of related events: a `sound` and its `sound_source` / `offscreen_sound`;
    /// `speech` and the `active_speaker` events inside it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// `end` messages of objects, sound sources and active speakers with `[snapshots]`
    /// on: the JPEG of the track's best frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRef>,
}

impl Event {
    /// A new event with the common fields set and the rest empty.
    /// Times are rounded to the microsecond (finer is noise, and `12.377500000000001` is
    /// not what a person wants to read).
    pub fn new(kind: EventKind, stream: &str, start: f64, end: f64, confidence: f32) -> Self {
        let us = |t: f64| (t * 1e6).round() / 1e6;
        Self {
            schema: SCHEMA.to_string(),
            id: String::new(),
            kind,
            phase: Phase::End,
            stream: stream.to_string(),
            start: us(start),
            end: us(end),
            confidence: confidence.clamp(0.0, 1.0),
            labels: Vec::new(),
            objects: Vec::new(),
            audio: None,
            evidence: Evidence::default(),
            wall_time: None,
            latency_ms: None,
            related: Vec::new(),
            snapshot: None,
        }
    }

    /// The event as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serialising plain data with string keys cannot fail; an empty object would only
        // appear if serde_json itself broke.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_the_serialised_names() {
        for k in [
            EventKind::Motion,
            EventKind::Sound,
            EventKind::Speech,
            EventKind::Object,
            EventKind::SourceError,
            EventKind::SoundSource,
            EventKind::OffscreenSound,
            EventKind::StreamGap,
            EventKind::AvEvent,
            EventKind::ActiveSpeaker,
            EventKind::SourceWarning,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn serialises_with_schema_and_round_trips() {
        let mut e = Event::new(EventKind::Motion, "cam", 1.5, 2.0, 0.7);
        e.evidence.cells = Some(vec![[1, 2]]);
        let line = e.to_json_line();
        assert!(
            line.starts_with(
                "{\"schema\":\"avsense.event/2\",\"id\":\"\",\"kind\":\"motion\",\"phase\":\"end\""
            ),
            "{line}"
        );
        assert!(!line.contains("wall_time") && !line.contains('\n'));
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}
