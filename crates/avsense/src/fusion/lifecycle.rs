//! Event lifecycle: ids, `start` / `end` messages and links between related events.
//!
//! The decoders emit an event when it ends (its fields are final only then). This stage
//! turns that into a lifecycle a live consumer can act on:
//!
//! * an event with a duration (`object`, `sound`, `speech`, `active_speaker`, `motion`) gets
//!   a `start` message as soon as its decoder has confirmed it (the object's track is
//!   confirmed; the sound, speech, speaker interval or motion is longer than its
//!   `min_duration`), and an `end` message with the final fields, both with one `id`. An
//!   event whose confirmation and end fall in the same window gets its `start` right
//!   before its `end`, so every such event has both;
//! * events decided only when complete (`sound_source`, `offscreen_sound`, `av_event`, the
//!   source's reports) have one `end` message;
//! * `related`: a `sound`'s `end` and its `sound_source` / `offscreen_sound` name each other;
//!   `speech` names the `active_speaker` events of its speaking faces that overlap it, and
//!   an `active_speaker` the `speech` it overlaps;
//! * recorded input with a time origin: `wall_time` = origin + `start`.

use crate::core::event::{Event, EventKind, Phase};
use crate::core::ids::EventIds;
use crate::core::latency::rfc3339;
use std::collections::{HashMap, VecDeque};

/// Seconds of closed spans kept for links.
const KEEP_S: f64 = 120.0;

/// What identifies an event with a duration across its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Object(u64),
    Sound(i64),
    Speech(i64),
    Speaker(u64, i64),
    Motion(i64),
}

fn micros(t: f64) -> i64 {
    (t * 1e6).round() as i64
}

fn key(e: &Event) -> Option<Key> {
    Some(match e.kind {
        EventKind::Object => Key::Object(*e.objects.first()?),
        EventKind::Sound => Key::Sound(micros(e.start)),
        EventKind::Speech => Key::Speech(micros(e.start)),
        EventKind::ActiveSpeaker => {
            Key::Speaker(e.evidence.speaker.as_ref()?.face_track, micros(e.start))
        }
        EventKind::Motion => Key::Motion(micros(e.start)),
        _ => return None,
    })
}

/// A span seen for links: an active speaker's face or a speech.
#[derive(Debug, Clone)]
struct Span {
    face: Option<u64>,
    start: f64,
    end: f64,
    open: bool,
    id: String,
}

/// The lifecycle of one stream's events (see the module doc).
pub struct Lifecycle {
    ids: EventIds,
    /// Recorded input: Unix seconds at stream time 0, for `wall_time`.
    origin: Option<f64>,
    /// Events with a `start` out and no `end` yet.
    open: HashMap<Key, String>,
    /// `sound_id` → the sound's id, for its association.
    sounds: VecDeque<(u64, String, f64)>,
    speakers: VecDeque<Span>,
    speech: VecDeque<Span>,
}

impl Lifecycle {
    /// A lifecycle with these ids; `origin`: Unix seconds at stream time 0 of recorded
    /// input (sets `wall_time`).
    pub fn new(ids: EventIds, origin: Option<f64>) -> Self {
        Self {
            ids,
            origin,
            open: HashMap::new(),
            sounds: VecDeque::new(),
            speakers: VecDeque::new(),
            speech: VecDeque::new(),
        }
    }

    /// Stamps the events the stage emitted (`done`, in order) and the events going on now
    /// (`going`: the decoders' open, confirmed events); appends the messages to `out`.
    pub fn stamp(
        &mut self,
        done: impl IntoIterator<Item = Event>,
        going: Vec<Event>,
        out: &mut Vec<Event>,
    ) {
        let first = out.len();
        let mut latest = f64::NEG_INFINITY;
        for mut e in done {
            latest = latest.max(e.end);
            let k = key(&e);
            let appeared =
                e.kind == EventKind::Object && e.evidence.phase.as_deref() == Some("appeared");
            match k {
                Some(k) if appeared => {
                    e.id = self.ids.next(e.start);
                    e.phase = Phase::Start;
                    self.open.insert(k, e.id.clone());
                }
                Some(k) => {
                    e.phase = Phase::End;
                    e.id = match self.open.remove(&k) {
                        Some(id) => id,
                        None => {
                            // Confirmed and ended in the same window: its start first.
                            let mut s = e.clone();
                            s.id = self.ids.next(e.start);
                            s.phase = Phase::Start;
                            self.opened(&s);
                            self.finish(&mut s);
                            out.push(s.clone());
                            s.id
                        }
                    };
                }
                None => {
                    e.phase = Phase::End;
                    e.id = self.ids.next(e.start);
                }
            }
            self.link_end(&mut e, first, out);
            self.finish(&mut e);
            out.push(e);
        }
        for mut e in going {
            let Some(k) = key(&e) else { continue };
            if self.open.contains_key(&k) {
                continue;
            }
            latest = latest.max(e.end);
            e.id = self.ids.next(e.start);
            e.phase = Phase::Start;
            self.open.insert(k, e.id.clone());
            self.opened(&e);
            self.finish(&mut e);
            out.push(e);
        }
        if latest.is_finite() {
            let old = |s: &Span| !s.open && s.end < latest - KEEP_S;
            while self.speakers.front().is_some_and(old) {
                self.speakers.pop_front();
            }
            while self.speech.front().is_some_and(old) {
                self.speech.pop_front();
            }
            while self.sounds.front().is_some_and(|s| s.2 < latest - KEEP_S) {
                self.sounds.pop_front();
            }
        }
    }

    /// Records a started span for links.
    fn opened(&mut self, e: &Event) {
        let span = |face| Span {
            face,
            start: e.start,
            end: e.end,
            open: true,
            id: e.id.clone(),
        };
        match e.kind {
            EventKind::ActiveSpeaker => {
                let face = e.evidence.speaker.as_ref().map(|s| s.face_track);
                self.speakers.push_back(span(face));
            }
            EventKind::Speech => self.speech.push_back(span(None)),
            _ => {}
        }
    }

    /// Closes the span of an ended event and fills its `related` ids.
    fn link_end(&mut self, e: &mut Event, first: usize, out: &mut [Event]) {
        let close = |spans: &mut VecDeque<Span>, e: &Event| {
            if let Some(s) = spans.iter_mut().find(|s| s.id == e.id) {
                s.end = e.end;
                s.open = false;
            }
        };
        let overlaps = |s: &Span, e: &Event| s.start < e.end && e.start < s.end;
        match e.kind {
            EventKind::Sound => {
                if let Some(n) = e.evidence.sound_id {
                    self.sounds.push_back((n, e.id.clone(), e.end));
                }
            }
            EventKind::SoundSource | EventKind::OffscreenSound => {
                let Some(n) = e.evidence.sound_id else { return };
                let Some((_, sound, _)) = self.sounds.iter().find(|s| s.0 == n) else {
                    return;
                };
                e.related.push(sound.clone());
                // The sound's `end` went out just before, in this batch.
                if let Some(s) = out[first..].iter_mut().rev().find(|s| s.id == *sound) {
                    s.related.push(e.id.clone());
                }
            }
            EventKind::ActiveSpeaker => {
                close(&mut self.speakers, e);
                let ids: Vec<String> = self
                    .speech
                    .iter()
                    .filter(|s| overlaps(s, e))
                    .map(|s| s.id.clone())
                    .collect();
                e.related.extend(ids);
            }
            EventKind::Speech => {
                close(&mut self.speech, e);
                let faces: Vec<u64> = e
                    .evidence
                    .speakers
                    .iter()
                    .flatten()
                    .filter(|s| s.overlap > 0.0)
                    .map(|s| s.face_track)
                    .collect();
                let ids: Vec<String> = self
                    .speakers
                    .iter()
                    .filter(|s| s.face.is_some_and(|f| faces.contains(&f)) && overlaps(s, e))
                    .map(|s| s.id.clone())
                    .collect();
                e.related.extend(ids);
            }
            _ => {}
        }
    }

    fn finish(&self, e: &mut Event) {
        if let Some(o) = self.origin {
            e.wall_time = Some(rfc3339(o + e.start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::SpeakerEvidence;
    use crate::core::ids::IdClock;

    fn life(origin: Option<f64>) -> Lifecycle {
        Lifecycle::new(
            EventIds::new(b"k", "s", IdClock::Media { origin: 0.0 }),
            origin,
        )
    }

    fn speaker(face: u64, start: f64, end: f64) -> Event {
        let mut e = Event::new(EventKind::ActiveSpeaker, "s", start, end, 0.9);
        e.evidence.speaker = Some(SpeakerEvidence {
            face_track: face,
            person_track: None,
            overlap: 1.0,
            probability: 0.9,
            logit: 0.1,
            bbox: [0.0; 4],
            sync: None,
        });
        e
    }

    #[test]
    fn an_event_starts_once_and_ends_with_the_same_id() {
        let mut l = life(Some(1_800_000_000.0));
        let mut out = Vec::new();
        let going = Event::new(EventKind::Speech, "s", 1.0, 1.5, 0.8);
        l.stamp(Vec::new(), vec![going.clone()], &mut out);
        let mut later = going.clone();
        later.end = 2.0;
        l.stamp(Vec::new(), vec![later], &mut out);
        assert_eq!(out.len(), 1, "one start only: {out:?}");
        let end = Event::new(EventKind::Speech, "s", 1.0, 3.0, 0.9);
        l.stamp(vec![end], Vec::new(), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].phase, out[1].phase), (Phase::Start, Phase::End));
        assert_eq!(out[0].id, out[1].id);
        assert_eq!(out[1].end, 3.0);
        assert_eq!(
            out[0].wall_time.as_deref(),
            Some("2027-01-15T08:00:01.000Z")
        );
    }

    #[test]
    fn an_event_confirmed_and_ended_in_one_window_gets_its_start_first() {
        let mut l = life(None);
        let mut out = Vec::new();
        let mut m = Event::new(EventKind::Motion, "s", 0.5, 1.0, 0.5);
        m.labels.clear();
        l.stamp(vec![m], Vec::new(), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].phase, out[1].phase), (Phase::Start, Phase::End));
        assert_eq!(out[0].id, out[1].id);
        assert!(out[0].wall_time.is_none());
    }

    #[test]
    fn objects_start_when_they_appear_and_end_when_they_leave() {
        let mut l = life(None);
        let mut out = Vec::new();
        let obj = |phase: &str| {
            let mut e = Event::new(EventKind::Object, "s", 1.0, 2.0, 0.7);
            e.objects.push(4);
            e.evidence.phase = Some(phase.into());
            e
        };
        l.stamp(vec![obj("appeared")], Vec::new(), &mut out);
        l.stamp(vec![obj("left")], Vec::new(), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].phase, out[1].phase), (Phase::Start, Phase::End));
        assert_eq!(out[0].id, out[1].id);
    }

    #[test]
    fn a_sound_and_its_association_name_each_other() {
        let mut l = life(None);
        let mut out = Vec::new();
        let mut s = Event::new(EventKind::Sound, "s", 1.0, 2.0, 0.7);
        s.evidence.sound_id = Some(3);
        let mut a = Event::new(EventKind::SoundSource, "s", 1.0, 2.0, 0.9);
        a.evidence.sound_id = Some(3);
        l.stamp(vec![s, a], Vec::new(), &mut out);
        // start + end of the sound, then the association.
        assert_eq!(out.len(), 3);
        let (end, assoc) = (&out[1], &out[2]);
        assert_eq!(end.related, vec![assoc.id.clone()]);
        assert_eq!(assoc.related, vec![end.id.clone()]);
        assert_ne!(end.id, assoc.id);
    }

    #[test]
    fn speech_names_its_overlapping_speakers_and_they_name_it() {
        let mut l = life(None);
        let mut out = Vec::new();
        l.stamp(
            Vec::new(),
            vec![
                speaker(2, 1.0, 1.5),
                Event::new(EventKind::Speech, "s", 1.1, 1.5, 0.9),
            ],
            &mut out,
        );
        let (sp_id, speech_id) = (out[0].id.clone(), out[1].id.clone());
        // Face 2 stops; face 7 spoke long before (not overlapping); then the speech ends.
        let mut speech = Event::new(EventKind::Speech, "s", 1.1, 3.0, 0.9);
        let mut ev = speaker(2, 1.0, 2.9).evidence.speaker.unwrap();
        ev.overlap = 0.9;
        speech.evidence.speakers = Some(vec![ev]);
        l.stamp(
            vec![speaker(2, 1.0, 2.9), speaker(7, 0.0, 0.5), speech],
            Vec::new(),
            &mut out,
        );
        let by_id = |id: &str| out.iter().rev().find(|e| e.id == id).unwrap();
        assert_eq!(by_id(&sp_id).related, vec![speech_id.clone()]);
        assert_eq!(by_id(&speech_id).related, vec![sp_id.clone()]);
        let face7 = out
            .iter()
            .find(|e| {
                e.evidence
                    .speaker
                    .as_ref()
                    .is_some_and(|s| s.face_track == 7)
            })
            .unwrap();
        assert!(face7.related.is_empty());
    }
}
