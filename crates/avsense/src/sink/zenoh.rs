//! `[[sink]] kind = "zenoh"` (cargo feature `zenoh`): every lifecycle message as JSON on
//! `<prefix>/<stream>/events`, and (through the pipeline's tracks tap) each frame's tracks on
//! `<prefix>/<stream>/tracks`. Peer mode: with `listen` / `connect` endpoints two processes
//! on one machine need no router.

use super::{EventSink, Phases, SinkError};
use crate::core::event::Event;
use crate::encode::video::objects::Tracks;
use std::collections::HashMap;
use zenoh::Wait;

/// Where a zenoh sink publishes.
#[derive(Debug, Clone)]
pub struct ZenohSettings {
    /// Endpoints to listen on.
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    pub connect: Vec<String>,
    /// Key prefix (`avsense`).
    pub prefix: String,
}

impl ZenohSettings {
    fn open(&self) -> Result<zenoh::Session, SinkError> {
        let cfg = crate::source::zenoh::config(&self.listen, &self.connect).map_err(|e| {
            SinkError::Other {
                target: self.target(),
                source: e.into(),
            }
        })?;
        zenoh::open(cfg).wait().map_err(|e| SinkError::Other {
            target: self.target(),
            source: e.to_string().into(),
        })
    }

    fn target(&self) -> String {
        format!("zenoh {}/**", self.prefix)
    }

    fn key(&self, stream: &str, what: &str) -> String {
        format!("{}/{}/{what}", self.prefix, super::topic_level(stream))
    }
}

/// The zenoh event sink.
pub struct ZenohSink {
    settings: ZenohSettings,
    session: zenoh::Session,
    publishers: HashMap<String, zenoh::pubsub::Publisher<'static>>,
    phases: Phases,
}

impl ZenohSink {
    /// Opens a session.
    pub fn open(settings: ZenohSettings, phases: Phases) -> Result<Self, SinkError> {
        let session = settings.open()?;
        Ok(Self {
            settings,
            session,
            publishers: HashMap::new(),
            phases,
        })
    }
}

impl EventSink for ZenohSink {
    fn target(&self) -> String {
        self.settings.target()
    }

    fn takes(&self, event: &Event) -> bool {
        self.phases.takes(event.phase)
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        let key = self.settings.key(&event.stream, "events");
        if !self.publishers.contains_key(&key) {
            let p = self
                .session
                .declare_publisher(key.clone())
                .congestion_control(zenoh::qos::CongestionControl::Block)
                .wait()
                .map_err(|e| SinkError::Other {
                    target: key.clone(),
                    source: e.to_string().into(),
                })?;
            self.publishers.insert(key.clone(), p);
        }
        let p = &self.publishers[&key];
        p.put(event.to_json_line())
            .wait()
            .map_err(|e| SinkError::Other {
                target: key,
                source: e.to_string().into(),
            })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A tracks tap that publishes each frame's tracks as JSON on `<prefix>/<stream>/tracks`:
/// `{"stream":…,"time":s,"detected":bool,"tracks":[{"id":…,"class":…,"score":…,"bbox":[x0,y0,x1,y1]}]}`
/// (boxes normalised to the frame). Opens its own session.
pub fn tracks_tap(
    settings: &ZenohSettings,
) -> Result<crate::encode::video::objects::TracksTap, SinkError> {
    let session = settings.open()?;
    let settings = settings.clone();
    let publishers: std::sync::Mutex<HashMap<String, zenoh::pubsub::Publisher<'static>>> =
        std::sync::Mutex::default();
    Ok(std::sync::Arc::new(
        move |stream: &str, time: f64, t: &Tracks| {
            if !t.detected && t.objects.is_empty() {
                return;
            }
            let key = settings.key(stream, "tracks");
            let Ok(mut map) = publishers.lock() else {
                return;
            };
            if !map.contains_key(&key) {
                match session.declare_publisher(key.clone()).wait() {
                    Ok(p) => {
                        map.insert(key.clone(), p);
                    }
                    Err(e) => {
                        tracing::warn!("zenoh {key}: {e}");
                        return;
                    }
                }
            }
            let tracks: Vec<serde_json::Value> = t
                .objects
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "id": o.track_id,
                        "class": avsense_nn::models::coco::name(o.class_id),
                        "score": o.score,
                        "bbox": o.bbox,
                    })
                })
                .collect();
            let msg = serde_json::json!({
                "stream": stream,
                "time": (time * 1e6).round() / 1e6,
                "detected": t.detected,
                "tracks": tracks,
            });
            if let Some(p) = map.get(&key) {
                let _ = p.put(msg.to_string()).wait();
            }
        },
    ))
}
