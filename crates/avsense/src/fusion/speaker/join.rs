//! Joining the speaker decisions with the audio events: a `speech` event names the faces
//! that spoke in it, and a speech-like `sound` is given to the speaking person.

use super::SpeakerStage;
use crate::core::event::{Event, EventKind, SpeakerEvidence};

/// Least fraction of an event's span a face must speak to be listed in its evidence.
pub const MIN_LISTED: f32 = 0.1;
/// Least fraction of an event's span a face must speak to be its source (`objects`,
/// `sound_source`).
pub const MIN_SOURCE: f32 = 0.3;

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
                match speech_sound
                    .as_ref()
                    .and_then(|s| speaker_source(sp, s, &e))
                {
                    Some(src) => {
                        sourced = true;
                        out.push(src);
                    }
                    None => out.push(e),
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
