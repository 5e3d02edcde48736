//! `object` events: a confirmed track appeared or left.

use crate::core::event::{Event, EventKind, Label};
use crate::encode::video::tracker::{TrackEvent, TrackSummary};

/// An `object` event for a track change.
pub fn object_event(stream: &str, ev: &TrackEvent) -> Event {
    let (s, phase, end): (&TrackSummary, &str, f64) = match ev {
        TrackEvent::Appeared(s) => (s, "appeared", s.last_seen),
        TrackEvent::Left(s) => (s, "left", s.last_seen),
    };
    let mut e = Event::new(EventKind::Object, stream, s.first_seen, end, s.max_score);
    e.labels.push(Label {
        name: avsense_nn::models::coco::name(s.class_id),
        score: s.max_score,
    });
    e.objects.push(s.track_id);
    e.evidence.phase = Some(phase.into());
    e.evidence.bbox = Some(s.last_bbox);
    e.evidence.active_frames = Some(s.hits);
    e
}
