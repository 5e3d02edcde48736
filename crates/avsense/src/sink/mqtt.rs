//! MQTT sink (cargo feature `mqtt`, [rumqttc]): Frigate-style topics, Home Assistant
//! discovery, and an on-disk spool so that nothing is lost while the broker is away.
//!
//! ```text
//! <prefix>/events                      every lifecycle message (JSON, as the JSONL sink)
//! <prefix>/<stream>/<class>            ON/OFF, retained: an object of that class is in view
//!                                      (person, car, …)
//! <prefix>/<stream>/sound              ON/OFF, retained: a sound is going on
//! <prefix>/<stream>/audio/<label>      ON/OFF, retained: a sound with that top label (speech,
//!                                      dog, …) is going on
//! <prefix>/<stream>/speech             ON/OFF, retained: someone speaks (VAD)
//! <prefix>/<stream>/active_speaker     ON/OFF, retained: a visible face speaks
//! <prefix>/<stream>/motion             ON/OFF, retained
//! <prefix>/<stream>/offscreen_sound    ON (not retained) when a sound has no visible source
//!                                      (Home Assistant turns it off after `off_delay`)
//! <prefix>/<stream>/audio/dBFS         the peak level of each sound message, dBFS
//! <prefix>/available                   online / offline (the broker's last will), retained
//! <discovery prefix>/…/config          Home Assistant discovery (`discovery = true`), retained
//! ```
//!
//! Every message goes through the [`Spool`] first, in order; one publisher thread sends
//! the spool's records and marks them done when the broker acknowledges them. While the
//! broker is down the spool grows (bounded by `spool_size` MB; beyond that new messages are
//! dropped and counted), and when it comes back the publisher sends the backlog in order
//! before anything newer.
//!
//! With `qos = 1` (the default, as Frigate and Home Assistant use it) delivery is
//! at-least-once: a message the broker took but whose acknowledgement was lost when the
//! connection broke is sent again, so a consumer may see a message that was in flight at
//! that moment twice (de-duplicate by `id` + `phase`; every message carries both). QoS 2
//! is not offered: tried with a persistent session against mosquitto 2.0.11 with
//! `persistence true`, the restarted broker restored in-flight QoS 2 state from its last
//! autosave and dropped new messages that reused those packet ids as duplicates (13 of 48
//! lost in one run) — worse than a duplicate.

use super::spool::Spool;
use super::{EventSink, Phases, SinkError};
use crate::core::event::{Event, EventKind, Phase};
use rumqttc::{
    Client, Connection, Event as MqttEvent, LastWill, MqttOptions, Outgoing, Packet, QoS,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Records sent ahead of their acknowledgements.
const WINDOW: usize = 64;

/// The MQTT sink's settings (`[[sink]] kind = "mqtt"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MqttSettings {
    /// Host of the broker.
    pub host: String,
    /// Port (1883; 8883 with TLS).
    pub port: u16,
    /// TLS (rustls) with the CA certificates of `ca_file`.
    pub tls: bool,
    /// PEM file of the CA certificates that sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client id (default `avsense-<pipeline name>`).
    pub client_id: String,
    /// User name, when the broker wants one.
    pub username: Option<String>,
    /// The environment variable that holds the password (the password itself is never
    /// in a config file or a log line).
    pub password_env: Option<String>,
    /// Topic prefix.
    pub topic_prefix: String,
    /// QoS of every message: 0 or 1.
    pub qos: u8,
    /// Publish Home Assistant discovery configs.
    pub discovery: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// The spool directory.
    pub spool: PathBuf,
    /// The spool's bound, bytes.
    pub spool_bytes: u64,
    /// At the end of a run, how long to wait for the broker to take the spool's backlog
    /// (what is left stays in the spool for the next run).
    pub drain_timeout: Duration,
    /// The streams of the pipeline (for discovery).
    pub streams: Vec<String>,
}

/// Errors of the MQTT sink that are not I/O on the spool.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The CA file could not be read.
    #[error("ca_file {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The password's environment variable is not set.
    #[error("password_env {0}: the environment variable is not set")]
    Password(String),
}

pub use super::topic_level;

/// The state topics behind the lifecycle messages of one stream.
#[derive(Default)]
struct StreamState {
    /// Open events per state topic.
    open: HashMap<String, u32>,
    /// Topics each open event turned on.
    by_event: HashMap<String, Vec<String>>,
}

/// What the publisher and the sink share.
struct Shared {
    spool: Spool,
    stop: bool,
    connected: bool,
    /// The first spool error (the sink reports it on its next write).
    error: Option<String>,
    /// Publishes handed to rumqttc and not yet acknowledged, oldest first.
    flights: VecDeque<Flight>,
    /// The next spool record to send.
    next_seq: u64,
}

impl Shared {
    /// Hands rumqttc the spool's next records while connected and the window allows. Called
    /// by the sink right after it spools (no wait for the publisher thread) and by the
    /// publisher after acknowledgements and reconnects.
    fn pump(&mut self, client: &Client, qos: QoS) {
        if !self.connected || self.stop {
            return;
        }
        let in_air = self.flights.iter().filter(|f| f.seq.is_some()).count();
        let next = self.next_seq;
        let to_send: Vec<_> = self
            .spool
            .pending()
            .iter()
            .filter(|r| r.seq >= next)
            .take(WINDOW.saturating_sub(in_air))
            .cloned()
            .collect();
        for r in to_send {
            // The request channel holds more than the window: this does not block.
            if client
                .try_publish(r.topic, qos, r.retain, r.payload)
                .is_err()
            {
                return;
            }
            self.next_seq = r.seq + 1;
            self.flights.push_back(Flight {
                seq: Some(r.seq),
                pkid: None,
                acked: qos == QoS::AtMostOnce,
            });
        }
    }
}

/// The MQTT sink (see the module doc).
pub struct MqttSink {
    target: String,
    settings: MqttSettings,
    phases: Phases,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    publisher: Option<std::thread::JoinHandle<()>>,
    client: Client,
    states: HashMap<String, StreamState>,
    reported_drops: u64,
}

impl MqttSink {
    /// Opens the spool and starts the publisher (it connects in the background: a broker
    /// that is down at start is not an error, its messages wait in the spool).
    pub fn open(settings: MqttSettings, phases: Phases) -> Result<Self, SinkError> {
        let target = format!("mqtt://{}:{}", settings.host, settings.port);
        let spool =
            Spool::open(&settings.spool, settings.spool_bytes).map_err(|e| SinkError::Other {
                target: target.clone(),
                source: Box::new(e),
            })?;
        let options = options(&settings).map_err(|e| SinkError::Other {
            target: target.clone(),
            source: Box::new(e),
        })?;
        let shared = Arc::new((
            Mutex::new(Shared {
                spool,
                stop: false,
                connected: false,
                error: None,
                flights: VecDeque::new(),
                next_seq: 0,
            }),
            Condvar::new(),
        ));
        let hello_len = 1 + 6 * settings.streams.len();
        let (client, conn) = Client::new(options, WINDOW * 2 + hello_len + 8);
        let mut sink = Self {
            target: target.clone(),
            settings,
            phases,
            shared: Arc::clone(&shared),
            publisher: None,
            client: client.clone(),
            states: HashMap::new(),
            reported_drops: 0,
        };
        let qos = sink.qos();
        let hello = sink.hello();
        let handle = std::thread::Builder::new()
            .name("mqtt-publisher".into())
            .spawn(move || publish_loop(client, conn, qos, hello, shared, target))
            .map_err(|source| SinkError::Io {
                target: sink.target.clone(),
                source,
            })?;
        sink.publisher = Some(handle);
        Ok(sink)
    }

    fn qos(&self) -> QoS {
        if self.settings.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.settings.topic_prefix)
    }

    /// What every (re)connection publishes first, retained: availability and discovery.
    fn hello(&self) -> Vec<(String, Vec<u8>)> {
        let mut v = vec![(self.topic("available"), b"online".to_vec())];
        if self.settings.discovery {
            for s in &self.settings.streams {
                v.extend(discovery(&self.settings, s));
            }
        }
        v
    }

    /// The state-topic messages of one lifecycle message.
    fn states(&mut self, e: &Event) -> Vec<(String, Vec<u8>, bool)> {
        let stream = topic_level(&e.stream);
        let mut out = Vec::new();
        let on_topics: Vec<String> = match e.kind {
            EventKind::Object => e
                .labels
                .first()
                .map(|l| vec![format!("{stream}/{}", topic_level(&l.name))])
                .unwrap_or_default(),
            EventKind::Sound => {
                let mut t = vec![format!("{stream}/sound")];
                if let Some(l) = e.labels.first() {
                    t.push(format!("{stream}/audio/{}", topic_level(&l.name)));
                }
                t
            }
            EventKind::Speech => vec![format!("{stream}/speech")],
            EventKind::ActiveSpeaker => vec![format!("{stream}/active_speaker")],
            EventKind::Motion => vec![format!("{stream}/motion")],
            EventKind::OffscreenSound => {
                out.push((
                    self.topic(&format!("{stream}/offscreen_sound")),
                    b"ON".to_vec(),
                    false,
                ));
                Vec::new()
            }
            _ => Vec::new(),
        };
        if let Some(a) = &e.audio {
            out.push((
                self.topic(&format!("{stream}/audio/dBFS")),
                format!("{:.1}", a.peak_dbfs).into_bytes(),
                false,
            ));
        }
        let st = self.states.entry(stream).or_default();
        let mut changed: Vec<(String, &'static [u8])> = Vec::new();
        match e.phase {
            Phase::Start => {
                for t in &on_topics {
                    let n = st.open.entry(t.clone()).or_insert(0);
                    *n += 1;
                    if *n == 1 {
                        changed.push((t.clone(), b"ON"));
                    }
                }
                st.by_event.insert(e.id.clone(), on_topics);
            }
            Phase::Update => {}
            Phase::End => {
                let started = st.by_event.remove(&e.id).unwrap_or_default();
                // A label first known at the end: a short ON → OFF pulse.
                for t in on_topics.iter().filter(|t| !started.contains(t)) {
                    if st.open.get(t).copied().unwrap_or(0) == 0 {
                        changed.push((t.clone(), b"ON"));
                        changed.push((t.clone(), b"OFF"));
                    }
                }
                for t in started {
                    if let Some(n) = st.open.get_mut(&t) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            changed.push((t, b"OFF"));
                        }
                    }
                }
            }
        }
        for (t, v) in changed {
            out.push((self.topic(&t), v.to_vec(), true));
        }
        out
    }

    /// `<stream>/<label>/snapshot` (retained): the JPEG of an event's snapshot; the label
    /// is the object's class (the sound source's track class; `active_speaker`).
    fn snapshot(
        &self,
        e: &Event,
        snap: &crate::core::event::SnapshotRef,
    ) -> Option<(String, Vec<u8>, bool)> {
        let label = match e.kind {
            EventKind::Object => e.labels.first()?.name.clone(),
            EventKind::SoundSource => e.evidence.association.as_ref()?.class.clone(),
            EventKind::ActiveSpeaker => "active_speaker".into(),
            _ => return None,
        };
        match std::fs::read(&snap.path) {
            Ok(jpeg) => Some((
                self.topic(&format!(
                    "{}/{}/snapshot",
                    topic_level(&e.stream),
                    topic_level(&label)
                )),
                jpeg,
                true,
            )),
            Err(err) => {
                tracing::warn!(
                    "{}: snapshot {}: {err}; not published",
                    self.target,
                    snap.path
                );
                None
            }
        }
    }

    fn spool(&self, msgs: &[(String, Vec<u8>, bool)]) -> Result<(), SinkError> {
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().map_err(|_| self.poisoned())?;
        if let Some(err) = g.error.take() {
            return Err(SinkError::Other {
                target: self.target.clone(),
                source: err.into(),
            });
        }
        for (topic, payload, retain) in msgs {
            g.spool
                .push(topic, payload, *retain)
                .map_err(|e| SinkError::Other {
                    target: self.target.clone(),
                    source: Box::new(e),
                })?;
        }
        g.pump(&self.client, self.qos());
        cv.notify_all();
        Ok(())
    }

    fn poisoned(&self) -> SinkError {
        SinkError::Other {
            target: self.target.clone(),
            source: "the publisher thread panicked".into(),
        }
    }
}

impl EventSink for MqttSink {
    fn target(&self) -> String {
        self.target.clone()
    }

    fn takes(&self, event: &Event) -> bool {
        self.phases.takes(event.phase)
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut msgs = vec![(
            self.topic("events"),
            event.to_json_line().into_bytes(),
            false,
        )];
        msgs.extend(self.states(event));
        if let Some(snap) = &event.snapshot {
            msgs.extend(self.snapshot(event, snap));
        }
        self.spool(&msgs)?;
        let dropped = self.shared.0.lock().map(|g| g.spool.dropped()).unwrap_or(0);
        super::spool::warn_drops(
            &self.target,
            self.settings.spool_bytes,
            dropped,
            &mut self.reported_drops,
        );
        Ok(())
    }

    /// Waits up to `drain_timeout` for the broker to take the backlog, then stops the
    /// publisher; what is left stays in the spool.
    fn flush(&mut self) -> Result<(), SinkError> {
        let (lock, cv) = &*self.shared;
        let deadline = Instant::now() + self.settings.drain_timeout;
        let mut g = lock.lock().map_err(|_| self.poisoned())?;
        while !g.spool.pending().is_empty() && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            g = cv
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .map_err(|_| self.poisoned())?
                .0;
        }
        let left = g.spool.pending().len();
        let dropped = g.spool.dropped();
        g.stop = true;
        cv.notify_all();
        drop(g);
        if let Some(h) = self.publisher.take() {
            let _ = h.join();
        }
        super::spool::warn_leftovers(&self.target, &self.settings.spool, left, dropped);
        Ok(())
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if let Ok(mut g) = self.shared.0.lock() {
            g.stop = true;
        }
        self.shared.1.notify_all();
        if let Some(h) = self.publisher.take() {
            let _ = h.join();
        }
    }
}

fn options(s: &MqttSettings) -> Result<MqttOptions, MqttError> {
    let mut o = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
    o.set_keep_alive(Duration::from_secs(5));
    // A clean session: what was in flight when the connection broke is sent again from the
    // spool (see the module doc for why not QoS 2 with a persistent session).
    o.set_clean_session(true);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_last_will(LastWill::new(
        format!("{}/available", s.topic_prefix),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &s.username {
        let password = match &s.password_env {
            Some(var) => std::env::var(var).map_err(|_| MqttError::Password(var.clone()))?,
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if s.tls {
        // One process-wide provider (ring); another part of the process may have
        // installed one already, which is fine. (rustls deprecates ring's provider only
        // because it lacks post-quantum key exchange; aws-lc would add a CMake build.)
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let _ = provider.install_default();
        let path = s
            .ca_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let ca = std::fs::read(&path).map_err(|source| MqttError::CaFile { path, source })?;
        o.set_transport(rumqttc::Transport::tls(ca, None, None));
    }
    Ok(o)
}

/// Home Assistant discovery configs of one stream: binary sensors for person, speech,
/// active speaker, off-screen sound and motion, a sensor for the sound level.
fn discovery(s: &MqttSettings, stream: &str) -> Vec<(String, Vec<u8>)> {
    let st = topic_level(stream);
    let avail = format!("{}/available", s.topic_prefix);
    let device = serde_json::json!({
        "identifiers": [format!("avsense_{st}")],
        "name": format!("avsense {stream}"),
        "manufacturer": "avsense",
        "model": "audio-visual perception pipeline",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let mut out = Vec::new();
    let binary = [
        ("person", "person", "Person", "occupancy", None),
        ("speech", "speech", "Speech", "sound", None),
        (
            "active_speaker",
            "active_speaker",
            "Active speaker",
            "occupancy",
            None,
        ),
        (
            "offscreen_sound",
            "offscreen_sound",
            "Off-screen sound",
            "sound",
            Some(5),
        ),
        ("motion", "motion", "Motion", "motion", None),
    ];
    for (id, topic, name, class, off_delay) in binary {
        let uid = format!("avsense_{st}_{id}");
        let mut cfg = serde_json::json!({
            "name": name,
            "unique_id": uid,
            "object_id": uid,
            "state_topic": format!("{}/{st}/{topic}", s.topic_prefix),
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": class,
            "availability_topic": avail,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        });
        if let Some(d) = off_delay {
            cfg["off_delay"] = d.into();
        }
        out.push((
            format!("{}/binary_sensor/{uid}/config", s.discovery_prefix),
            cfg.to_string().into_bytes(),
        ));
    }
    let uid = format!("avsense_{st}_sound_level");
    let cfg = serde_json::json!({
        "name": "Sound level",
        "unique_id": uid,
        "object_id": uid,
        "state_topic": format!("{}/{st}/audio/dBFS", s.topic_prefix),
        "unit_of_measurement": "dBFS",
        "state_class": "measurement",
        "availability_topic": avail,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    });
    out.push((
        format!("{}/sensor/{uid}/config", s.discovery_prefix),
        cfg.to_string().into_bytes(),
    ));
    out
}

/// An outgoing publish and what it stands for.
struct Flight {
    /// The spool record (None: a hello message).
    seq: Option<u64>,
    /// Its packet id once rumqttc has sent it.
    pkid: Option<u16>,
    acked: bool,
}

/// The publisher thread (see the module doc): drives the one rumqttc connection of the
/// sink, which rumqttc reconnects after an error (with a clean session: the unacknowledged
/// records are sent again from the spool, in order), and keeps the flights' books.
fn publish_loop(
    client: Client,
    mut conn: Connection,
    qos: QoS,
    hello: Vec<(String, Vec<u8>)>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    target: String,
) {
    let (lock, cv) = &*shared;
    let mut connected = false;
    let mut warned = false;
    let mut backoff = Duration::from_millis(200);
    loop {
        if lock.lock().map(|g| g.stop).unwrap_or(true) {
            if connected {
                goodbye(&client, &mut conn, &hello);
            }
            return;
        }
        // rumqttc's poll wakes at once for a new request or packet; the timeout only bounds
        // how late a stop is seen. Connecting (TCP, TLS handshake, CONNECT/CONNACK) must not
        // be cut short: a poll abandoned by its timeout starts the connection over.
        let wait = if connected {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(10)
        };
        let event = conn.recv_timeout(wait);
        if let Ok(e) = &event {
            tracing::trace!(target: "avsense::mqtt", "{e:?}");
        }
        let Ok(mut g) = lock.lock() else { return };
        match event {
            Ok(Ok(MqttEvent::Incoming(Packet::ConnAck(ack)))) => {
                connected = true;
                backoff = Duration::from_millis(200);
                g.connected = true;
                if warned {
                    tracing::info!("{target}: connected again; sending the spool's backlog");
                }
                if !ack.session_present {
                    // A new session: rumqttc dropped what was in flight; the spool has it.
                    g.flights.clear();
                    g.next_seq = 0;
                }
                for (t, p) in &hello {
                    if client
                        .try_publish(t.clone(), QoS::AtLeastOnce, true, p.clone())
                        .is_err()
                    {
                        return;
                    }
                    g.flights.push_back(Flight {
                        seq: None,
                        pkid: None,
                        acked: false,
                    });
                }
            }
            Ok(Ok(MqttEvent::Outgoing(Outgoing::Publish(pkid)))) => {
                // rumqttc sends requests in order: the oldest flight not yet sent.
                if let Some(f) = g.flights.iter_mut().find(|f| f.pkid.is_none()) {
                    f.pkid = Some(pkid);
                    if pkid == 0 {
                        f.acked = true;
                    }
                }
            }
            Ok(Ok(MqttEvent::Incoming(Packet::PubAck(a)))) => ack(&mut g.flights, a.pkid),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if connected || !warned {
                    tracing::warn!(
                        "{target}: {}: {e}; messages wait in the spool, reconnecting",
                        if connected {
                            "connection lost"
                        } else {
                            "cannot connect"
                        }
                    );
                    warned = true;
                }
                connected = false;
                g.connected = false;
                // Back off before rumqttc's next attempt, waking early only to stop.
                let until = Instant::now() + backoff;
                while !g.stop && Instant::now() < until {
                    g = match cv.wait_timeout(g, until.saturating_duration_since(Instant::now())) {
                        Ok(r) => r.0,
                        Err(_) => return,
                    };
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {}
        }
        // Acknowledged from the front: done in the spool; then send what the window allows.
        let mut done = None;
        while g.flights.front().is_some_and(|f| f.acked) {
            if let Some(f) = g.flights.pop_front() {
                done = f.seq.or(done);
            }
        }
        if let Some(seq) = done {
            if let Err(e) = g.spool.ack_through(seq) {
                let line = crate::core::errors::one_line(&e);
                g.error.get_or_insert(line);
                g.stop = true;
            }
            cv.notify_all();
        }
        g.pump(&client, qos);
    }
}

/// Marks the flight with packet id `pkid` acknowledged.
fn ack(flights: &mut VecDeque<Flight>, pkid: u16) {
    if let Some(f) = flights
        .iter_mut()
        .find(|f| f.pkid == Some(pkid) && !f.acked)
    {
        f.acked = true;
    }
}

/// A clean stop: `offline` on the availability topic (retained), then DISCONNECT (the
/// broker then does not send the last will; the retained `offline` says the same).
fn goodbye(client: &Client, conn: &mut Connection, hello: &[(String, Vec<u8>)]) {
    let Some((avail, _)) = hello.first() else {
        return;
    };
    if client
        .publish(avail.clone(), QoS::AtLeastOnce, true, b"offline".to_vec())
        .is_err()
    {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match conn.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(MqttEvent::Incoming(Packet::PubAck(_)))) => break,
            Ok(Err(_)) => return,
            _ => {}
        }
    }
    if client.disconnect().is_ok() {
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match conn.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(MqttEvent::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MqttSettings {
        MqttSettings {
            host: "127.0.0.1".into(),
            port: 1,
            tls: false,
            ca_file: None,
            client_id: "t".into(),
            username: None,
            password_env: None,
            topic_prefix: "avsense".into(),
            qos: 1,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            spool: PathBuf::new(),
            spool_bytes: 1 << 20,
            drain_timeout: Duration::ZERO,
            streams: vec!["Front Door".into()],
        }
    }

    #[test]
    fn topic_levels_are_safe() {
        assert_eq!(topic_level("Front Door/#1"), "front_door__1");
        assert_eq!(topic_level("Speech"), "speech");
        assert_eq!(topic_level(""), "_");
    }

    #[test]
    fn discovery_has_home_assistants_required_keys() {
        let d = discovery(&settings(), "Front Door");
        assert_eq!(d.len(), 6);
        for (topic, payload) in &d {
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            assert!(topic.starts_with("homeassistant/") && topic.ends_with("/config"));
            for k in [
                "name",
                "unique_id",
                "state_topic",
                "availability_topic",
                "device",
            ] {
                assert!(v.get(k).is_some(), "{topic} lacks {k}");
            }
            assert!(v["state_topic"]
                .as_str()
                .unwrap()
                .starts_with("avsense/front_door/"));
        }
    }
}
