//! NATS JetStream sink (cargo feature `nats`, [async-nats]): every lifecycle message is
//! stored in a JetStream stream, on the subject
//!
//! ```text
//! avsense.<site>.<stream>.<kind>      e.g. avsense.lobby.front_door.sound
//! ```
//!
//! with a JetStream message id (`Nats-Msg-Id`) made from the event's id and phase
//! (`<prefix><id>:start`, `<prefix><id>:end`, `<prefix><id>:update:<end ms>`), so that the
//! server stores a message once however often it is sent: a retry after a lost
//! acknowledgement, a spool replayed after a crash, or the same recorded file run again by
//! another worker (a file's event ids are reproducible) are dropped as duplicates within the
//! stream's duplicate window (`dedup_window`, default one hour).
//!
//! Every message goes through the on-disk [`Spool`] first, in order; a publisher thread
//! (a single-threaded tokio runtime) sends the spool's records in windows and marks them
//! done when JetStream acknowledges that it stored them. While the cluster is away the spool
//! grows (bounded by `spool_size`; beyond that new messages are dropped and counted) and
//! the backlog goes out in order when it is back. The stream is created when missing
//! (`AVSENSE_EVENTS`, subjects `avsense.>`, file storage, `replicas`).

use super::spool::Spool;
use super::{EventSink, Phases, SinkError};
use crate::core::event::{Event, Phase};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Records sent ahead of their acknowledgements.
const WINDOW: usize = 64;
/// How long one publish waits for JetStream's acknowledgement before it is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The NATS sink's settings (`[[sink]] kind = "nats"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NatsSettings {
    /// Server URLs (`nats://127.0.0.1:4222`; several, comma-separated, for a cluster).
    pub url: String,
    /// The site: the second subject token.
    pub site: String,
    /// The JetStream stream that stores the events (created when missing).
    pub stream: String,
    /// Its replicas when created (1, or 3 on a 3-node cluster).
    pub replicas: usize,
    /// Its duplicate window: a message id seen within it is stored once.
    pub dedup_window: Duration,
    /// Prefix of every message id (a worker puts its job id here).
    pub msg_id_prefix: String,
    /// User name, when the server wants one.
    pub username: Option<String>,
    /// The environment variable that holds the password (or, without `username`, a token).
    pub password_env: Option<String>,
    /// PEM file of the CA certificates for TLS (`tls://` URLs, or this set, mean TLS).
    pub ca_file: Option<PathBuf>,
    /// The spool directory.
    pub spool: PathBuf,
    /// The spool's bound, bytes.
    pub spool_bytes: u64,
    /// At the end of a run, how long to wait for JetStream to take the backlog (what is left
    /// stays in the spool for the next run).
    pub drain_timeout: Duration,
}

impl NatsSettings {
    /// Settings for `url` and `site` with every other key at its default; the spool under
    /// `spool`.
    pub fn new(url: &str, site: &str, spool: PathBuf) -> Self {
        Self {
            url: url.into(),
            site: site.into(),
            stream: "AVSENSE_EVENTS".into(),
            replicas: 1,
            dedup_window: Duration::from_secs(3600),
            msg_id_prefix: String::new(),
            username: None,
            password_env: None,
            ca_file: None,
            spool,
            spool_bytes: 64 << 20,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors of the NATS side (not the spool's).
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The password's (or token's) environment variable is not set.
    #[error("password_env {0}: the environment variable is not set")]
    Password(String),
    /// The tokio runtime of the publisher could not start.
    #[error("cannot start the publisher's runtime")]
    Runtime(#[source] std::io::Error),
}

/// A subject token from a stream name, a site or a kind: lower case, `[a-z0-9_-]` only
/// (no `.`, `*`, `>` or white space, which NATS subjects reserve).
pub fn subject_token(s: &str) -> String {
    super::topic_level(s)
}

/// The JetStream message id of a lifecycle message: unique per message, the same when the
/// same message is produced again.
pub fn message_id(prefix: &str, e: &Event) -> String {
    match e.phase {
        Phase::Start => format!("{prefix}{}:start", e.id),
        Phase::End => format!("{prefix}{}:end", e.id),
        Phase::Update => format!(
            "{prefix}{}:update:{}",
            e.id,
            (e.end * 1000.0).round() as i64
        ),
    }
}

/// The server URLs of a comma-separated list.
pub fn server_list(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// The connect options for `s` (credentials from the environment, TLS).
pub fn connect_options(
    username: Option<&str>,
    password_env: Option<&str>,
    ca_file: Option<&std::path::Path>,
) -> Result<async_nats::ConnectOptions, NatsError> {
    let secret = match password_env {
        Some(var) => Some(std::env::var(var).map_err(|_| NatsError::Password(var.into()))?),
        None => None,
    };
    let mut o = match (username, secret) {
        (Some(u), Some(p)) => async_nats::ConnectOptions::with_user_and_password(u.into(), p),
        (None, Some(t)) => async_nats::ConnectOptions::with_token(t),
        _ => async_nats::ConnectOptions::new(),
    };
    if let Some(ca) = ca_file {
        o = o.add_root_certificates(ca.to_path_buf()).require_tls(true);
    }
    Ok(o.retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2)))
}

/// What the publisher and the sink share.
struct Shared {
    spool: Spool,
    stop: bool,
    /// The first spool error (the sink reports it on its next write).
    error: Option<String>,
}

/// How many messages are still waiting for JetStream (for a worker that must not ack its
/// job before its events are stored).
#[derive(Clone)]
pub struct Backlog(Arc<(Mutex<Shared>, Condvar)>);

impl Backlog {
    /// Messages spooled and not yet stored by JetStream.
    pub fn pending(&self) -> usize {
        self.0
             .0
            .lock()
            .map(|g| g.spool.pending().len())
            .unwrap_or(0)
    }

    /// Waits up to `timeout` for the backlog to empty; whether it did.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let (lock, cv) = &*self.0;
        let deadline = Instant::now() + timeout;
        let Ok(mut g) = lock.lock() else {
            return false;
        };
        while !g.spool.pending().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = match cv.wait_timeout(g, left.min(Duration::from_millis(100))) {
                Ok(r) => r.0,
                Err(_) => return false,
            };
        }
        true
    }
}

/// The sink (see the module doc).
pub struct NatsSink {
    target: String,
    settings: NatsSettings,
    phases: Phases,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    wake: Arc<tokio::sync::Notify>,
    publisher: Option<std::thread::JoinHandle<()>>,
    reported_drops: u64,
}

impl NatsSink {
    /// Opens the spool and starts the publisher (it connects in the background: a cluster
    /// that is down at start is not an error, its messages wait in the spool).
    pub fn open(settings: NatsSettings, phases: Phases) -> Result<Self, SinkError> {
        let target = format!("nats {} ({})", settings.url, settings.stream);
        let other = |e: Box<dyn std::error::Error + Send + Sync>| SinkError::Other {
            target: target.clone(),
            source: e,
        };
        let spool =
            Spool::open(&settings.spool, settings.spool_bytes).map_err(|e| other(Box::new(e)))?;
        let options = connect_options(
            settings.username.as_deref(),
            settings.password_env.as_deref(),
            settings.ca_file.as_deref(),
        )
        .map_err(|e| other(Box::new(e)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| other(Box::new(NatsError::Runtime(e))))?;
        let shared = Arc::new((
            Mutex::new(Shared {
                spool,
                stop: false,
                error: None,
            }),
            Condvar::new(),
        ));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (sh, wk, st) = (Arc::clone(&shared), Arc::clone(&wake), settings.clone());
        let handle = std::thread::Builder::new()
            .name("nats-publisher".into())
            .spawn(move || runtime.block_on(publish_loop(options, st, sh, wk)))
            .map_err(|source| SinkError::Io {
                target: target.clone(),
                source,
            })?;
        Ok(Self {
            target,
            settings,
            phases,
            shared,
            wake,
            publisher: Some(handle),
            reported_drops: 0,
        })
    }

    /// A handle on the backlog, to wait until JetStream has stored everything.
    pub fn backlog(&self) -> Backlog {
        Backlog(Arc::clone(&self.shared))
    }

    fn subject(&self, e: &Event) -> String {
        format!(
            "avsense.{}.{}.{}",
            subject_token(&self.settings.site),
            subject_token(&e.stream),
            e.kind.as_str()
        )
    }

    fn poisoned(&self) -> SinkError {
        SinkError::Other {
            target: self.target.clone(),
            source: "the publisher thread panicked".into(),
        }
    }

    fn stop_publisher(&mut self) {
        if let Ok(mut g) = self.shared.0.lock() {
            g.stop = true;
        }
        self.shared.1.notify_all();
        self.wake.notify_one();
        if let Some(h) = self.publisher.take() {
            let _ = h.join();
        }
    }
}

/// A spool record's topic carries the subject and the message id: `<subject> <msg id>`
/// (neither contains a space).
fn record_topic(subject: &str, msg_id: &str) -> String {
    format!("{subject} {msg_id}")
}

impl EventSink for NatsSink {
    fn target(&self) -> String {
        self.target.clone()
    }

    fn takes(&self, event: &Event) -> bool {
        self.phases.takes(event.phase)
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        let topic = record_topic(
            &self.subject(event),
            &message_id(&self.settings.msg_id_prefix, event),
        );
        let dropped = {
            let (lock, cv) = &*self.shared;
            let mut g = lock.lock().map_err(|_| self.poisoned())?;
            if let Some(err) = g.error.take() {
                return Err(SinkError::Other {
                    target: self.target.clone(),
                    source: err.into(),
                });
            }
            g.spool
                .push(&topic, event.to_json_line().as_bytes(), false)
                .map_err(|e| SinkError::Other {
                    target: self.target.clone(),
                    source: Box::new(e),
                })?;
            cv.notify_all();
            g.spool.dropped()
        };
        self.wake.notify_one();
        super::spool::warn_drops(
            &self.target,
            self.settings.spool_bytes,
            dropped,
            &mut self.reported_drops,
        );
        Ok(())
    }

    /// Waits up to `drain_timeout` for JetStream to store the backlog, then stops the
    /// publisher; what is left stays in the spool.
    fn flush(&mut self) -> Result<(), SinkError> {
        let drained = self.backlog().wait_empty(self.settings.drain_timeout);
        let (left, dropped) = {
            let g = self.shared.0.lock().map_err(|_| self.poisoned())?;
            (g.spool.pending().len(), g.spool.dropped())
        };
        self.stop_publisher();
        let left = if drained { 0 } else { left };
        super::spool::warn_leftovers(&self.target, &self.settings.spool, left, dropped);
        Ok(())
    }
}

impl Drop for NatsSink {
    fn drop(&mut self) {
        self.stop_publisher();
    }
}

/// The events stream's config.
fn stream_config(s: &NatsSettings) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: s.stream.clone(),
        subjects: vec!["avsense.>".into()],
        storage: jetstream::stream::StorageType::File,
        num_replicas: s.replicas.max(1),
        duplicate_window: s.dedup_window,
        ..Default::default()
    }
}

/// Connects, makes sure the stream exists, and sends the spool's records in order, a
/// window at a time, until stopped.
async fn publish_loop(
    options: async_nats::ConnectOptions,
    s: NatsSettings,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    wake: Arc<tokio::sync::Notify>,
) {
    let stopped = || shared.0.lock().map(|g| g.stop).unwrap_or(true);
    let client = loop {
        match options.clone().connect(server_list(&s.url)).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::debug!("nats {}: {e}", s.url);
                if stopped() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let js = jetstream::new(client);
    let mut stream_ready = false;
    loop {
        if stopped() {
            return;
        }
        if !stream_ready {
            match js.get_or_create_stream(stream_config(&s)).await {
                Ok(_) => stream_ready = true,
                Err(e) => {
                    tracing::debug!("nats {}: stream {}: {e}", s.url, s.stream);
                    pause(&wake, Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let batch: Vec<(u64, String, String, Vec<u8>)> = match shared.0.lock() {
            Ok(g) => g
                .spool
                .pending()
                .iter()
                .take(WINDOW)
                .map(|r| {
                    let (subject, id) = r.topic.split_once(' ').unwrap_or((&r.topic, ""));
                    (
                        r.seq,
                        subject.to_string(),
                        id.to_string(),
                        r.payload.clone(),
                    )
                })
                .collect(),
            Err(_) => return,
        };
        if batch.is_empty() {
            pause(&wake, Duration::from_millis(200)).await;
            continue;
        }
        match send_window(&js, &batch).await {
            Ok(()) => {
                let last = batch.last().map(|b| b.0).unwrap_or(0);
                let (lock, cv) = &*shared;
                if let Ok(mut g) = lock.lock() {
                    if let Err(e) = g.spool.ack_through(last) {
                        g.error.get_or_insert_with(|| e.to_string());
                    }
                }
                cv.notify_all();
            }
            Err(e) => {
                // Sent again from the first unstored record: the message ids make the
                // repeats that JetStream already stored into duplicates it drops.
                tracing::debug!("nats {}: {e}", s.url);
                pause(&wake, Duration::from_millis(300)).await;
            }
        }
    }
}

/// Publishes `batch` and waits for every acknowledgement, in order.
async fn send_window(
    js: &jetstream::Context,
    batch: &[(u64, String, String, Vec<u8>)],
) -> Result<(), String> {
    let mut acks = Vec::with_capacity(batch.len());
    for (_, subject, id, payload) in batch {
        let msg = jetstream::message::PublishMessage::build()
            .payload(payload.clone().into())
            .message_id(id);
        let ack = js
            .send_publish(subject.clone(), msg)
            .await
            .map_err(|e| format!("publish {subject}: {e}"))?;
        acks.push(ack);
    }
    for ack in acks {
        match tokio::time::timeout(ACK_TIMEOUT, ack.into_future()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("acknowledgement: {e}")),
            Err(_) => return Err("no acknowledgement in time".into()),
        }
    }
    Ok(())
}

async fn pause(wake: &tokio::sync::Notify, d: Duration) {
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::EventKind;

    #[test]
    fn message_ids_are_unique_per_message_and_stable() {
        let mut e = Event::new(EventKind::Sound, "front door", 1.0, 2.5, 0.9);
        e.id = "0190-abc".into();
        e.phase = Phase::Start;
        assert_eq!(message_id("job1/", &e), "job1/0190-abc:start");
        e.phase = Phase::Update;
        assert_eq!(message_id("", &e), "0190-abc:update:2500");
        e.phase = Phase::End;
        assert_eq!(message_id("", &e), "0190-abc:end");
        assert_eq!(subject_token("Front Door.1>*"), "front_door_1__");
    }
}
