//! What the HTTP API serves: the recent messages, the live broadcast, the event counters,
//! and the running pipeline's counters.

use crate::core::event::{Event, Phase};
use crate::core::latency::{LatencyRecorder, LatencyStats};
use crate::core::live::{LiveStats, LiveStream};
use crate::sink::{EventSink, SinkError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// A message as the API serves it: its arrival number and its JSON.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// Arrival number (from 1), the cursor of `/api/events?after=`.
    pub seq: u64,
    pub event: Arc<Event>,
    pub json: Arc<str>,
}

/// Event counters by (stream, kind, label) of `end` messages; messages by phase.
#[derive(Debug, Default, Clone)]
pub(super) struct Counts {
    pub events: BTreeMap<(String, String, String), u64>,
    pub messages: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct Rate {
    at: Option<Instant>,
    frames: u64,
    detector: u64,
    fps: f64,
    detector_fps: f64,
}

pub(super) struct Inner {
    ring: Mutex<VecDeque<Item>>,
    cap: usize,
    seq: Mutex<u64>,
    pub live: tokio::sync::broadcast::Sender<Item>,
    pub counts: Mutex<Counts>,
    latency: Mutex<HashMap<String, LatencyRecorder>>,
    monitor: OnceLock<Box<dyn Fn() -> LiveStats + Send + Sync>>,
    rates: Mutex<HashMap<String, Rate>>,
    started: Instant,
    pub view: super::view::LiveView,
}

/// The HTTP API's state: fed by a [`HubSink`] and the pipeline's counters; cheap to
/// clone (shared).
#[derive(Clone)]
pub struct Hub(pub(super) Arc<Inner>);

/// Per stream, with the rates.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStats {
    /// The stream's counters.
    #[serde(flatten)]
    pub stream: LiveStream,
    /// Frames per second over the last second or more.
    pub fps: f64,
    /// Detector frames per second, likewise.
    pub detector_fps: f64,
    /// Live: capture → event latency of the messages so far.
    pub event_latency: Option<LatencyStats>,
    /// `end` messages so far by kind.
    pub events: BTreeMap<String, u64>,
}

/// `GET /api/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Seconds since the pipeline started (since the server did, before that).
    pub uptime_seconds: f64,
    /// Whether the pipeline has been attached (it has started).
    pub running: bool,
    /// Per stream.
    pub streams: Vec<StreamStats>,
    /// Per edge.
    pub edges: Vec<crate::core::edge::EdgeStats>,
    /// Inference time per model.
    pub models: Vec<crate::core::timing::ModelTime>,
    /// Messages so far by phase.
    pub messages: BTreeMap<&'static str, u64>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
}

impl Hub {
    /// A hub keeping the newest `ring` messages.
    pub fn new(ring: usize) -> Self {
        let (live, _) = tokio::sync::broadcast::channel(1024);
        Hub(Arc::new(Inner {
            ring: Mutex::new(VecDeque::with_capacity(ring.min(4096))),
            cap: ring.max(1),
            seq: Mutex::new(0),
            live,
            counts: Mutex::default(),
            latency: Mutex::default(),
            monitor: OnceLock::new(),
            rates: Mutex::default(),
            started: Instant::now(),
            view: super::view::LiveView::default(),
        }))
    }

    /// The sink that feeds this hub (every lifecycle message).
    pub fn sink(&self) -> HubSink {
        HubSink(self.clone())
    }

    /// The tap that feeds the live view's pictures: give it to
    /// [`crate::Pipeline::with_frame_tap`] (frames are drawn and encoded only while the view
    /// is watched).
    pub fn frame_tap(&self) -> crate::core::features::FrameTap {
        self.0.view.tap()
    }

    /// Attaches the running pipeline's counters (once), e.g.
    /// `hub.attach(move || monitor.stats())` with [`crate::Running::monitor`].
    pub fn attach(&self, stats: impl Fn() -> LiveStats + Send + Sync + 'static) {
        let _ = self.0.monitor.set(Box::new(stats));
    }

    fn push(&self, e: &Event) {
        let json: Arc<str> = Arc::from(e.to_json_line());
        let item = {
            let mut seq = self.0.seq.lock().unwrap_or_else(|p| p.into_inner());
            *seq += 1;
            Item {
                seq: *seq,
                event: Arc::new(e.clone()),
                json,
            }
        };
        if let Ok(mut r) = self.0.ring.lock() {
            if r.len() >= self.0.cap {
                r.pop_front();
            }
            r.push_back(item.clone());
        }
        if let Ok(mut c) = self.0.counts.lock() {
            *c.messages.entry(e.phase.as_str()).or_insert(0) += 1;
            if e.phase == Phase::End {
                let label = e.labels.first().map(|l| l.name.clone()).unwrap_or_default();
                let kind = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *c.events.entry((e.stream.clone(), kind, label)).or_insert(0) += 1;
            }
        }
        if let Some(ms) = e.latency_ms {
            if let Ok(mut l) = self.0.latency.lock() {
                l.entry(e.stream.clone()).or_default().record(ms);
            }
        }
        // No receiver (no SSE client) is not an error.
        let _ = self.0.live.send(item);
    }

    /// The kept messages with `seq > after` that pass `keep`, oldest first, at most
    /// `limit` (the newest of them).
    pub(super) fn recent(
        &self,
        after: u64,
        limit: usize,
        keep: impl Fn(&Event) -> bool,
    ) -> Vec<Item> {
        let Ok(r) = self.0.ring.lock() else {
            return Vec::new();
        };
        let mut out: Vec<Item> = r
            .iter()
            .rev()
            .filter(|i| i.seq > after && keep(&i.event))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// The newest kept message with `id` that has a snapshot.
    pub(super) fn snapshot_of(&self, id: &str) -> Option<Arc<Event>> {
        let r = self.0.ring.lock().ok()?;
        r.iter()
            .rev()
            .find(|i| i.event.id == id && i.event.snapshot.is_some())
            .map(|i| Arc::clone(&i.event))
    }

    /// Whether any kept message has `id`.
    pub(super) fn knows(&self, id: &str) -> bool {
        self.0
            .ring
            .lock()
            .is_ok_and(|r| r.iter().any(|i| i.event.id == id))
    }

    pub(super) fn counts(&self) -> Counts {
        self.0.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The pipeline's counters now (None before it is attached).
    pub(super) fn live(&self) -> Option<LiveStats> {
        self.0.monitor.get().map(|f| f())
    }

    /// Everything `/api/stats` shows.
    pub fn stats(&self) -> Stats {
        let live = self.live();
        let counts = self.counts();
        let lat = self.0.latency.lock().ok();
        let mut rates = self.0.rates.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let streams = live
            .as_ref()
            .map(|l| {
                l.streams
                    .iter()
                    .map(|s| {
                        let r = rates.entry(s.name.clone()).or_default();
                        match r.at {
                            None => {
                                let up = l.uptime_seconds.max(1e-3);
                                r.fps = s.frames as f64 / up;
                                r.detector_fps = s.detector_frames as f64 / up;
                                r.at = Some(now);
                            }
                            Some(at) if now.duration_since(at).as_secs_f64() >= 1.0 => {
                                let dt = now.duration_since(at).as_secs_f64();
                                r.fps = s.frames.saturating_sub(r.frames) as f64 / dt;
                                r.detector_fps =
                                    s.detector_frames.saturating_sub(r.detector) as f64 / dt;
                                r.at = Some(now);
                            }
                            Some(_) => {}
                        }
                        if r.at == Some(now) {
                            r.frames = s.frames;
                            r.detector = s.detector_frames;
                        }
                        let mut events = BTreeMap::new();
                        for ((st, kind, _), n) in &counts.events {
                            if *st == s.name {
                                *events.entry(kind.clone()).or_insert(0) += n;
                            }
                        }
                        StreamStats {
                            stream: s.clone(),
                            fps: r.fps,
                            detector_fps: r.detector_fps,
                            event_latency: lat
                                .as_ref()
                                .and_then(|l| l.get(&s.name).and_then(LatencyRecorder::stats)),
                            events,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Stats {
            uptime_seconds: live
                .as_ref()
                .map_or(self.0.started.elapsed().as_secs_f64(), |l| l.uptime_seconds),
            running: live.is_some(),
            streams,
            edges: live.as_ref().map(|l| l.edges.clone()).unwrap_or_default(),
            models: live.as_ref().map(|l| l.models.clone()).unwrap_or_default(),
            messages: counts.messages,
            rss_bytes: crate::core::live::rss_bytes(),
        }
    }
}

/// The sink that feeds a [`Hub`].
pub struct HubSink(Hub);

impl EventSink for HubSink {
    fn target(&self) -> String {
        "http".into()
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        self.0.push(event);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::EventKind;

    fn ev(kind: EventKind, id: &str, phase: Phase) -> Event {
        let mut e = Event::new(kind, "cam", 1.0, 2.0, 0.5);
        e.id = id.into();
        e.phase = phase;
        e
    }

    #[test]
    fn the_ring_is_bounded_and_filters_page_by_cursor() {
        let hub = Hub::new(3);
        let mut sink = hub.sink();
        for (i, k) in [
            EventKind::Sound,
            EventKind::Object,
            EventKind::Sound,
            EventKind::Speech,
        ]
        .into_iter()
        .enumerate()
        {
            sink.write(&ev(k, &format!("e{i}"), Phase::End)).unwrap();
        }
        let all = hub.recent(0, 10, |_| true);
        assert_eq!(all.iter().map(|i| i.seq).collect::<Vec<_>>(), [2, 3, 4]);
        let sounds = hub.recent(0, 10, |e| e.kind == EventKind::Sound);
        assert_eq!(sounds.len(), 1);
        assert_eq!(hub.recent(3, 10, |_| true).len(), 1);
        assert_eq!(hub.recent(0, 1, |_| true)[0].seq, 4, "the newest");
        assert!(hub.knows("e3") && !hub.knows("e0"));
        let c = hub.counts();
        assert_eq!(c.messages["end"], 4);
        assert_eq!(c.events[&("cam".into(), "sound".into(), String::new())], 2);
    }
}
