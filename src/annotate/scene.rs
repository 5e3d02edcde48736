//! What a run saw, frame by frame: the tracks of every frame (from the tracks tap) and the
//! events (sounds, their sources, active speakers) — and what one frame's picture shows.

use avsense::encode::video::objects::Tracks;
use avsense::{Event, EventKind};
use std::sync::{Arc, Mutex};

/// One track in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackBox {
    /// Track id.
    pub id: u64,
    /// Class name.
    pub class: String,
    /// Score of its detection.
    pub score: f32,
    /// Box, normalised `[x0, y0, x1, y1]`.
    pub bbox: [f32; 4],
}

/// A run's frames and events (one stream).
#[derive(Debug, Default)]
pub struct Recording {
    /// (frame time in seconds, its tracks), in time order.
    pub frames: Vec<(f64, Vec<TrackBox>)>,
    /// The final message of every event.
    pub events: Vec<Event>,
}

/// Collects a [`Recording`] from a running pipeline: the tap for the tracks, the sink for
/// the events (one stream: the first one seen).
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<(Option<String>, Recording)>>);

impl Recorder {
    /// For [`avsense::Pipeline::with_tracks_tap`].
    pub fn tap(&self) -> avsense::encode::video::objects::TracksTap {
        let me = self.clone();
        Arc::new(move |stream: &str, t: f64, tracks: &Tracks| {
            let Ok(mut g) = me.0.lock() else {
                return;
            };
            let (name, rec) = &mut *g;
            if name.get_or_insert_with(|| stream.to_string()) != stream {
                return;
            }
            let boxes = tracks
                .objects
                .iter()
                .map(|o| TrackBox {
                    id: o.track_id,
                    class: avsense_nn::models::coco::name(o.class_id),
                    score: o.score,
                    bbox: o.bbox,
                })
                .collect();
            rec.frames.push((t, boxes));
        })
    }

    /// A sink that keeps each event's final message.
    pub fn sink(&self) -> avsense::sink::CallbackSink<impl FnMut(&Event) + Send> {
        let me = self.clone();
        avsense::sink::CallbackSink(move |e: &Event| {
            if e.phase != avsense::core::event::Phase::End {
                return;
            }
            if let Ok(mut g) = me.0.lock() {
                g.1.events.push(e.clone());
            }
        })
    }

    /// What was collected (for the stream seen first).
    pub fn take(&self) -> Recording {
        match self.0.lock() {
            Ok(mut g) => {
                let mut r = std::mem::take(&mut g.1);
                if let Some(s) = &g.0 {
                    r.events.retain(|e| &e.stream == s);
                }
                r.frames.sort_by(|a, b| a.0.total_cmp(&b.0));
                r
            }
            Err(_) => Recording::default(),
        }
    }
}

/// A sound heard at a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// Its first label and score ("Speech 0.93"), or "sound" when unlabelled.
    pub label: String,
    /// The track it was given to (`sound_source`), if any.
    pub source: Option<u64>,
    /// An `offscreen_sound`.
    pub offscreen: bool,
}

/// What one frame's picture shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene {
    /// The tracks in view.
    pub tracks: Vec<TrackBox>,
    /// Tracks (person ids) speaking now.
    pub speaking: Vec<u64>,
    /// Faces speaking with no person track (normalised boxes).
    pub speaking_faces: Vec<[f32; 4]>,
    /// Sounds heard now.
    pub heard: Vec<Heard>,
}

impl Recording {
    /// The scene at time `t` (seconds): the tracks of the frame at or just before `t` (within
    /// `tolerance`), and the events whose span holds `t`.
    pub fn scene(&self, t: f64, tolerance: f64) -> Scene {
        let i = self.frames.partition_point(|(ft, _)| *ft <= t + 1e-3);
        let tracks = match i.checked_sub(1).map(|j| &self.frames[j]) {
            Some((ft, boxes)) if t - ft <= tolerance => boxes.clone(),
            _ => Vec::new(),
        };
        let now = |e: &&Event| e.start <= t && t < e.end.max(e.start + 1e-3);
        let mut scene = Scene {
            tracks,
            ..Scene::default()
        };
        for e in self.events.iter().filter(now) {
            let label = e
                .labels
                .first()
                .map(|l| format!("{} {:.2}", l.name, l.score))
                .unwrap_or_else(|| "sound".into());
            match e.kind {
                EventKind::ActiveSpeaker => match (e.objects.first(), &e.evidence.speaker) {
                    (Some(&id), _) => scene.speaking.push(id),
                    (None, Some(s)) => scene.speaking_faces.push(s.bbox),
                    (None, None) => {}
                },
                EventKind::SoundSource => scene.heard.push(Heard {
                    label,
                    source: e.objects.first().copied(),
                    offscreen: false,
                }),
                EventKind::OffscreenSound => scene.heard.push(Heard {
                    label,
                    source: None,
                    offscreen: true,
                }),
                _ => {}
            }
        }
        // A sound with neither (no fusion ran): its own label.
        for e in self.events.iter().filter(now) {
            if e.kind != EventKind::Sound {
                continue;
            }
            let judged = self.events.iter().any(|o| {
                matches!(o.kind, EventKind::SoundSource | EventKind::OffscreenSound)
                    && o.evidence.sound_id.is_some()
                    && o.evidence.sound_id == e.evidence.sound_id
            });
            if !judged {
                scene.heard.push(Heard {
                    label: e
                        .labels
                        .first()
                        .map(|l| format!("{} {:.2}", l.name, l.score))
                        .unwrap_or_else(|| "sound".into()),
                    source: None,
                    offscreen: false,
                });
            }
        }
        scene
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, start: f64, end: f64, objects: &[u64], sound_id: u64) -> Event {
        serde_json::from_str(&format!(
            r#"{{"schema":"avsense.event/2","id":"x","kind":"{kind}","stream":"s","start":{start},"end":{end},"confidence":0.9,"labels":[{{"name":"Speech","score":0.93}}],"objects":{objects:?},"audio":null,"evidence":{{"sound_id":{sound_id}}}}}"#
        ))
        .expect("event")
    }

    #[test]
    fn a_frame_gets_its_own_tracks_and_the_sounds_of_its_time() {
        let b = |id| TrackBox {
            id,
            class: "person".into(),
            score: 0.9,
            bbox: [0.1, 0.1, 0.5, 0.9],
        };
        let rec = Recording {
            frames: vec![(0.0, vec![b(1)]), (0.1, vec![b(1), b(2)]), (0.2, vec![])],
            events: vec![
                event("sound", 0.05, 0.3, &[], 1),
                event("sound_source", 0.05, 0.3, &[2], 1),
                event("sound", 1.0, 2.0, &[], 2),
            ],
        };
        let s = rec.scene(0.1, 0.2);
        assert_eq!(s.tracks.len(), 2);
        assert_eq!(
            s.heard,
            [Heard {
                label: "Speech 0.93".into(),
                source: Some(2),
                offscreen: false
            }],
            "the sound is told once, by its source"
        );
        assert_eq!(rec.scene(0.15, 0.2).tracks.len(), 2, "the frame before");
        assert!(rec.scene(0.25, 0.2).tracks.is_empty());
        assert!(
            rec.scene(5.0, 0.2).tracks.is_empty(),
            "no frame near: nothing"
        );
        let later = rec.scene(1.5, 2.0);
        assert_eq!(later.heard.len(), 1, "an unjudged sound: its own label");
        assert_eq!(later.heard[0].source, None);
    }
}
