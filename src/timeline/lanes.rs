//! Events → lanes: per stream, one lane per kind of thing on a common time axis, one lane
//! per object track, and the arrows from each sound to the track that made it.

use avsense::{Event, EventKind};
use std::collections::{BTreeMap, HashMap};

/// What a lane shows (its colour and how its bars are labelled follow from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneKind {
    /// Motion in view.
    Motion,
    /// One object track (`object` events of one track id).
    Track,
    /// Voice activity.
    Speech,
    /// Sounds, with their labels.
    Sound,
    /// Sounds with no visible source.
    Offscreen,
    /// Active speakers (bars labelled with the person track, or the face).
    Speaker,
    /// Window-level audio-visual events of a learned fusion model.
    AvEvent,
    /// Gaps, decode warnings and source errors.
    Health,
}

/// A span on a lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Start, seconds on the stream's timeline.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Text drawn with the bar (empty: none).
    pub text: String,
    /// The class the colour is keyed on (an object's class; empty otherwise).
    pub class: String,
}

/// One row of the picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// The name written left of the lane.
    pub name: String,
    /// What it shows.
    pub kind: LaneKind,
    /// Its bars, in time order.
    pub bars: Vec<Bar>,
}

/// A sound given to a visible track: an arrow from the sound's bar to the track's lane.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceArrow {
    /// Where on the time axis (the middle of the sound).
    pub at: f64,
    /// The index of the sound lane in the stream's lanes.
    pub from_lane: usize,
    /// The index of the track's lane.
    pub to_lane: usize,
}

/// One stream's lanes.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLanes {
    /// The stream's name.
    pub stream: String,
    /// Its lanes, top to bottom.
    pub lanes: Vec<Lane>,
    /// Sound → track arrows.
    pub arrows: Vec<SourceArrow>,
}

/// Every stream of an events file on one time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The time axis, seconds: from the first event's start (0 when it is within the first
    /// quarter of the span) to the last event's end.
    pub span: (f64, f64),
    /// The streams, in the order they first appear.
    pub streams: Vec<StreamLanes>,
}

/// The final message of each event: the `end` when there is one, else the last message with
/// its id (a run cut short leaves `start`s only). Messages without an id (schema 1) are
/// events of their own.
fn final_messages(events: &[Event]) -> Vec<&Event> {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<&Event> = Vec::new();
    for e in events {
        if e.id.is_empty() {
            out.push(e);
            continue;
        }
        match by_id.get(e.id.as_str()) {
            Some(&i) => out[i] = e,
            None => {
                by_id.insert(&e.id, out.len());
                out.push(e);
            }
        }
    }
    out
}

fn first_label(e: &Event) -> String {
    match e.labels.first() {
        Some(l) => format!("{} {:.2}", l.name, l.score),
        None => String::new(),
    }
}

fn bar(e: &Event, text: String) -> Bar {
    Bar {
        start: e.start,
        end: e.end.max(e.start),
        text,
        class: String::new(),
    }
}

/// Lanes from events (any order; lifecycle messages folded to each event's last).
pub fn timeline(events: &[Event]) -> Timeline {
    let events = final_messages(events);
    let mut order: Vec<&str> = Vec::new();
    for e in &events {
        if !order.contains(&e.stream.as_str()) {
            order.push(&e.stream);
        }
    }
    let streams = order
        .iter()
        .map(|s| {
            let mine: Vec<&Event> = events.iter().copied().filter(|e| e.stream == *s).collect();
            stream_lanes(s, &mine)
        })
        .collect();
    let lo = events.iter().map(|e| e.start).fold(f64::INFINITY, f64::min);
    let hi = events
        .iter()
        .map(|e| e.end)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if lo.is_finite() && hi.is_finite() && hi > lo {
        // A file run from its start begins at 0 even if its first event comes later.
        let lo = if lo <= 0.25 * hi { 0.0 } else { lo };
        (lo, hi)
    } else if lo.is_finite() {
        (lo, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    Timeline { span, streams }
}

fn stream_lanes(stream: &str, events: &[&Event]) -> StreamLanes {
    let of = |k: EventKind| -> Vec<&Event> {
        let mut v: Vec<&Event> = events.iter().copied().filter(|e| e.kind == k).collect();
        v.sort_by(|a, b| a.start.total_cmp(&b.start));
        v
    };
    let mut lanes: Vec<Lane> = Vec::new();
    let push = |lanes: &mut Vec<Lane>, name: &str, kind: LaneKind, bars: Vec<Bar>| {
        if !bars.is_empty() {
            lanes.push(Lane {
                name: name.into(),
                kind,
                bars,
            });
        }
    };
    push(
        &mut lanes,
        "motion",
        LaneKind::Motion,
        of(EventKind::Motion)
            .iter()
            .map(|e| bar(e, String::new()))
            .collect(),
    );
    // One lane per track, ordered by the track's first appearance.
    /// A track's first start, class and bars.
    type TrackBars = (f64, String, Vec<Bar>);
    let mut tracks: BTreeMap<u64, TrackBars> = BTreeMap::new();
    for e in of(EventKind::Object) {
        let Some(&id) = e.objects.first() else {
            continue;
        };
        let class = e.labels.first().map(|l| l.name.clone()).unwrap_or_default();
        let t = tracks
            .entry(id)
            .or_insert_with(|| (e.start, class.clone(), Vec::new()));
        t.2.push(Bar {
            class: class.clone(),
            ..bar(e, first_label(e))
        });
    }
    let mut tracks: Vec<(u64, TrackBars)> = tracks.into_iter().collect();
    tracks.sort_by(|a, b| a.1 .0.total_cmp(&b.1 .0).then(a.0.cmp(&b.0)));
    let mut track_lane: HashMap<u64, usize> = HashMap::new();
    for (id, (_, class, bars)) in tracks {
        track_lane.insert(id, lanes.len());
        let name = if class.is_empty() {
            format!("#{id}")
        } else {
            format!("{class} #{id}")
        };
        push(&mut lanes, &name, LaneKind::Track, bars);
    }
    push(
        &mut lanes,
        "speech",
        LaneKind::Speech,
        of(EventKind::Speech)
            .iter()
            .map(|e| bar(e, String::new()))
            .collect(),
    );
    let sound_lane = lanes.len();
    push(
        &mut lanes,
        "sounds",
        LaneKind::Sound,
        of(EventKind::Sound)
            .iter()
            .map(|e| bar(e, first_label(e)))
            .collect(),
    );
    let has_sounds = lanes.len() > sound_lane;
    push(
        &mut lanes,
        "off-screen",
        LaneKind::Offscreen,
        of(EventKind::OffscreenSound)
            .iter()
            .map(|e| bar(e, first_label(e)))
            .collect(),
    );
    push(
        &mut lanes,
        "active speaker",
        LaneKind::Speaker,
        of(EventKind::ActiveSpeaker)
            .iter()
            .map(|e| {
                let who = match (e.objects.first(), &e.evidence.speaker) {
                    (Some(t), _) => format!("#{t}"),
                    (None, Some(s)) => format!("face {}", s.face_track),
                    (None, None) => String::new(),
                };
                bar(e, who)
            })
            .collect(),
    );
    push(
        &mut lanes,
        "av events",
        LaneKind::AvEvent,
        of(EventKind::AvEvent)
            .iter()
            .map(|e| bar(e, first_label(e)))
            .collect(),
    );
    let mut health: Vec<&Event> = [
        EventKind::StreamGap,
        EventKind::SourceWarning,
        EventKind::SourceError,
    ]
    .into_iter()
    .flat_map(&of)
    .collect();
    health.sort_by(|a, b| a.start.total_cmp(&b.start));
    push(
        &mut lanes,
        "stream",
        LaneKind::Health,
        health
            .iter()
            .map(|e| bar(e, e.kind.as_str().replace('_', " ")))
            .collect(),
    );
    let arrows = if has_sounds {
        of(EventKind::SoundSource)
            .iter()
            .filter_map(|e| {
                let to = *track_lane.get(e.objects.first()?)?;
                Some(SourceArrow {
                    at: 0.5 * (e.start + e.end),
                    from_lane: sound_lane,
                    to_lane: to,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    StreamLanes {
        stream: stream.into(),
        lanes,
        arrows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(json: &str) -> Event {
        serde_json::from_str(json).expect("event json")
    }

    fn line(kind: &str, id: &str, phase: &str, start: f64, end: f64, extra: &str) -> Event {
        ev(&format!(
            r#"{{"schema":"avsense.event/2","id":"{id}","kind":"{kind}","phase":"{phase}","stream":"s","start":{start},"end":{end},"confidence":0.9,"labels":[{{"name":"person","score":0.9}}],"objects":[],"audio":null,"evidence":{{}}{extra}}}"#
        ))
    }

    #[test]
    fn lifecycle_messages_fold_to_the_last_and_sources_point_at_their_track() {
        let mut obj_start = line("object", "a", "start", 1.0, 1.5, "");
        obj_start.objects = vec![7];
        let mut obj_end = line("object", "a", "end", 1.0, 9.0, "");
        obj_end.objects = vec![7];
        let snd = line("sound", "b", "end", 2.0, 4.0, "");
        let mut src = line("sound_source", "c", "end", 2.0, 4.0, "");
        src.objects = vec![7];
        let t = timeline(&[obj_start, snd, obj_end, src]);
        assert_eq!(t.span, (0.0, 9.0), "a run from its start begins at 0");
        let s = &t.streams[0];
        let names: Vec<&str> = s.lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["person #7", "sounds"]);
        assert_eq!(
            s.lanes[0].bars.len(),
            1,
            "start and end of one event: one bar"
        );
        assert_eq!(s.lanes[0].bars[0].end, 9.0, "the end message's times");
        assert_eq!(
            s.arrows,
            [SourceArrow {
                at: 3.0,
                from_lane: 1,
                to_lane: 0
            }]
        );
    }

    #[test]
    fn a_range_starts_at_its_first_event_and_empty_lanes_are_left_out() {
        let t = timeline(&[line("speech", "x", "end", 600.0, 602.0, "")]);
        assert_eq!(t.span, (600.0, 602.0));
        assert_eq!(t.streams[0].lanes.len(), 1);
        assert_eq!(t.streams[0].lanes[0].kind, LaneKind::Speech);
        assert!(timeline(&[]).streams.is_empty());
    }
}
