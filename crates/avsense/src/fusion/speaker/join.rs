//! Joining the speaker decisions with the audio events: a `speech` event names the faces
//! that spoke in it, and a speech-like `sound` is given to the speaking person.
//!
//! The active speaker has the last word on speech for every fusion strategy: when a visible
//! face spoke enough of a speech-like sound, that face's person is its `sound_source`; when
//! the strategy gave the sound to a person whose face was in view for most of it but did
//! not speak (its mouth did not move with the voice heard: a TV, a dubbed clip, someone
//! just outside the frame), the sound becomes an `offscreen_sound`. Both list the faces
//! considered, with their speaking fraction and sync scores, in `evidence.speakers`.

use super::SpeakerStage;
use crate::core::event::{Event, EventKind, SpeakerEvidence};

/// Least fraction of an event's span a face must speak to be listed in its evidence.
pub const MIN_LISTED: f32 = 0.1;
/// Least fraction of an event's span a face must speak to be its source (`objects`,
/// `sound_source`).
pub const MIN_SOURCE: f32 = 0.3;
/// Least fraction of a sound's span a face must be in view (and judged) for its silence to
/// overrule a strategy that gave the sound to its person.
pub const MIN_JUDGED: f32 = 0.5;

/// AudioSet classes (YAMNet's names) that are someone speaking.
const SPEECH_CLASSES: [&str; 8] = [
    "Speech",
    "Male speech, man speaking",
    "Female speech, woman speaking",
    "Child speech, kid speaking",
    "Conversation",
    "Narration, monologue",
    "Babbling",
    "Whispering",
];

/// Whether a `sound` is speech by its labels (any of its top three).
pub fn is_speech(sound: &Event) -> bool {
    sound
        .labels
        .iter()
        .take(3)
        .any(|l| SPEECH_CLASSES.contains(&l.name.as_str()))
}

/// The group's events with the speakers over their spans (see the module doc).
pub fn annotate(sp: &SpeakerStage, group: Vec<Event>) -> Vec<Event> {
    let speech_sound = group
        .iter()
        .find(|e| e.kind == EventKind::Sound && is_speech(e))
        .cloned();
    let mut out = Vec::with_capacity(group.len() + 1);
    let mut sourced = false;
    for mut e in group {
        match e.kind {
            EventKind::Speech => {
                let speakers: Vec<SpeakerEvidence> = sp
                    .speakers_during(e.start, e.end)
                    .into_iter()
                    .filter(|s| s.overlap >= MIN_LISTED)
                    .collect();
                for s in speakers.iter().filter(|s| s.overlap >= MIN_SOURCE) {
                    if let Some(p) = s.person_track {
                        if !e.objects.contains(&p) {
                            e.objects.push(p);
                        }
                    }
                }
                e.evidence.speakers = Some(speakers);
                out.push(e);
            }
            EventKind::SoundSource | EventKind::OffscreenSound => {
                let Some(s) = speech_sound.as_ref() else {
                    out.push(e);
                    continue;
                };
                match speaker_source(sp, s, &e) {
                    Some(src) => {
                        sourced = true;
                        out.push(src);
                    }
                    None => out.push(unspoken(sp, s, e)),
                }
            }
            _ => out.push(e),
        }
    }
    // No association ran (fusion off): the speaker alone says whose speech it is.
    if !sourced {
        let has_assoc = out
            .iter()
            .any(|e| matches!(e.kind, EventKind::SoundSource | EventKind::OffscreenSound));
        if let (false, Some(s)) = (has_assoc, &speech_sound) {
            let none = Event::new(EventKind::OffscreenSound, &s.stream, s.start, s.end, 0.0);
            if let Some(src) = speaker_source(sp, s, &none) {
                out.push(src);
            }
        }
    }
    out
}

/// The `sound_source` of a speech-like `sound` when a visible face spoke in it (replacing
/// the association event `old`); None when no face spoke enough of it.
fn speaker_source(sp: &SpeakerStage, sound: &Event, old: &Event) -> Option<Event> {
    let best = sp
        .speakers_during(sound.start, sound.end)
        .into_iter()
        .find(|s| s.overlap >= MIN_SOURCE)?;
    let mut e = Event::new(
        EventKind::SoundSource,
        &sound.stream,
        sound.start,
        sound.end,
        best.probability,
    );
    e.labels = sound.labels.clone();
    e.audio = sound.audio.clone();
    e.evidence.sound_id = sound.evidence.sound_id;
    e.evidence.speakers = Some(considered(sp, sound));
    if let Some(p) = best.person_track {
        e.objects.push(p);
        // The association's evidence stays when it had picked the same person.
        if old.kind == EventKind::SoundSource && old.objects.first() == Some(&p) {
            e.evidence.association = old.evidence.association.clone();
        }
    }
    e.evidence.speaker = Some(best);
    Some(e)
}

/// The faces judged over a sound's span (in view for at least [`MIN_JUDGED`] of it, or
/// speaking in it), with their speaking fraction and sync scores.
fn considered(sp: &SpeakerStage, sound: &Event) -> Vec<SpeakerEvidence> {
    judged(sp, sound).into_iter().map(|f| f.evidence).collect()
}

/// [`considered`] with each face's share of the span in view.
fn judged(sp: &SpeakerStage, sound: &Event) -> Vec<super::FaceInSpan> {
    sp.faces_during(sound.start, sound.end)
        .into_iter()
        .filter(|f| f.visible >= MIN_JUDGED || f.evidence.overlap >= MIN_LISTED)
        .collect()
}

/// The association event `e` of a speech-like `sound` no visible face spoke enough of:
/// when `e` gave the sound to a person whose face was judged over it, the face's silence
/// wins and the sound is off-screen; otherwise `e` stands. Either way the faces
/// considered are listed.
fn unspoken(sp: &SpeakerStage, sound: &Event, mut e: Event) -> Event {
    let judged = judged(sp, sound);
    // Only a face in view for most of the sound can say its person was silent in it (one
    // that spoke a little of it while briefly in view is no evidence against its person).
    let silent_person = e.kind == EventKind::SoundSource
        && e.evidence
            .association
            .as_ref()
            .is_some_and(|a| a.class == "person")
        && e.objects.first().is_some_and(|track| {
            judged.iter().any(|f| {
                f.evidence.person_track == Some(*track)
                    && f.visible >= MIN_JUDGED
                    && f.evidence.overlap < MIN_SOURCE
            })
        });
    let faces: Vec<SpeakerEvidence> = judged.into_iter().map(|f| f.evidence).collect();
    if silent_person {
        let loudest = faces.iter().map(|f| f.probability).fold(0.0f32, f32::max);
        let mut off = Event::new(
            EventKind::OffscreenSound,
            &sound.stream,
            sound.start,
            sound.end,
            (1.0 - loudest).clamp(0.0, 1.0),
        );
        off.labels = e.labels;
        off.audio = e.audio;
        // The rejected candidate stays as evidence of what the strategy had said.
        off.evidence.association = e.evidence.association;
        off.evidence.sound_id = sound.evidence.sound_id;
        off.evidence.speakers = Some(faces);
        return off;
    }
    if !faces.is_empty() {
        e.evidence.speakers = Some(faces);
    }
    e
}
