//! Event sinks: where perception events go — JSON Lines on stdout or into a file, MQTT
//! (cargo feature `mqtt`), or a callback of an embedding program.

pub mod jsonl;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
pub mod spool;
#[cfg(feature = "zenoh")]
pub mod zenoh;

use crate::core::event::{Event, Phase};
use crate::core::settings::{check, check_endpoints, Invalid};
pub use jsonl::JsonlSink;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where events go.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON Lines on standard output.
    Stdout,
    /// JSON Lines appended to a file (`path`).
    Jsonl,
    /// An MQTT broker (`host`, `port`, …; cargo feature `mqtt`).
    Mqtt,
    /// zenoh (`listen` / `connect`, `topic_prefix`; cargo feature `zenoh`): events on
    /// `<prefix>/<stream>/events`, tracks on `<prefix>/<stream>/tracks`.
    Zenoh,
    /// NATS JetStream (`url`, `site`, …; cargo feature `nats`): events on
    /// `avsense.<site>.<stream>.<kind>`, de-duplicated by message id.
    Nats,
}

/// `[[sink]]`: one event sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `stdout` or `jsonl`.
    pub kind: SinkKind,
    /// Output file for `jsonl`; relative paths are relative to the working directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Overwrite an existing file that is not an avsense JSON Lines file (default false:
    /// such a file is refused, so a typo cannot destroy a video or a config).
    #[serde(default)]
    pub force: bool,
    /// The lifecycle messages this sink takes (default all: `["start", "update", "end"]`;
    /// `["end"]`: one line per finished event, as schema 1 wrote them).
    #[serde(default)]
    pub phases: Phases,
    /// `mqtt`: the broker's host (default `127.0.0.1`).
    #[serde(default)]
    pub host: Option<String>,
    /// `mqtt`: the broker's port (default 1883, 8883 with `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `mqtt`: TLS to the broker.
    #[serde(default)]
    pub tls: bool,
    /// `mqtt`: PEM file of the CA certificates for TLS (default: the system's bundle,
    /// `/etc/ssl/certs/ca-certificates.crt`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `mqtt`: client id (default `avsense-<pipeline name>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `mqtt`: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// `mqtt`: the environment variable holding the password (never the password itself).
    #[serde(default)]
    pub password_env: Option<String>,
    /// `mqtt`: topic prefix (default `avsense`).
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// `mqtt`: QoS, 0 or 1 (default 1: at-least-once).
    #[serde(default)]
    pub qos: Option<u8>,
    /// `mqtt`: publish Home Assistant discovery configs (default false).
    #[serde(default)]
    pub discovery: bool,
    /// `mqtt`: Home Assistant's discovery prefix (default `homeassistant`).
    #[serde(default)]
    pub discovery_prefix: Option<String>,
    /// `mqtt`: the spool directory (default `avsense-spool/<client id>` in the working
    /// directory); relative paths are relative to the working directory.
    #[serde(default)]
    pub spool: Option<PathBuf>,
    /// `mqtt`: the spool's bound in MB (default 64).
    #[serde(default)]
    pub spool_size: Option<f64>,
    /// `mqtt`: seconds to wait at the end of a run for the broker to take the backlog
    /// (default 10; what is left stays in the spool).
    #[serde(default)]
    pub drain_timeout: Option<f64>,
    /// `zenoh`: endpoints to listen on (e.g. `["tcp/127.0.0.1:7447"]`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// `zenoh`: endpoints to connect to.
    #[serde(default)]
    pub connect: Vec<String>,
    /// `nats`: server URLs, comma-separated (default `nats://127.0.0.1:4222`).
    #[serde(default)]
    pub url: Option<String>,
    /// `nats`: the site, the subjects' second token (default `default`).
    #[serde(default)]
    pub site: Option<String>,
    /// `nats`: the JetStream stream storing the events (default `AVSENSE_EVENTS`; created
    /// with subjects `avsense.>` when missing).
    #[serde(default)]
    pub jetstream: Option<String>,
    /// `nats`: the stream's replicas when it is created (default 1; 3 on a 3-node cluster).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// `nats`: the stream's duplicate window in seconds when it is created (default 3600):
    /// a message id seen again within it is stored once.
    #[serde(default)]
    pub dedup_window: Option<f64>,
}

/// What a sink may need to know about the pipeline it serves.
#[derive(Debug, Clone, Default)]
pub struct SinkContext {
    /// The pipeline's name.
    pub pipeline: String,
    /// Its stream names.
    pub streams: Vec<String>,
}

/// Which lifecycle messages ([`Phase`]) a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Phase>", into = "Vec<Phase>")]
pub struct Phases {
    start: bool,
    update: bool,
    end: bool,
}

impl Default for Phases {
    fn default() -> Self {
        Self::ALL
    }
}

impl Phases {
    /// Every message.
    pub const ALL: Self = Self {
        start: true,
        update: true,
        end: true,
    };
    /// `end` messages only: one per finished event.
    pub const END: Self = Self {
        start: false,
        update: false,
        end: true,
    };

    /// Whether messages of `phase` pass.
    pub fn takes(self, phase: Phase) -> bool {
        match phase {
            Phase::Start => self.start,
            Phase::Update => self.update,
            Phase::End => self.end,
        }
    }

    /// Parses a comma-separated list (`end`, `start,end`, `all`).
    pub fn parse(list: &str) -> Option<Self> {
        if list.trim() == "all" {
            return Some(Self::ALL);
        }
        let phases: Option<Vec<Phase>> = list.split(',').map(|p| Phase::parse(p.trim())).collect();
        Self::try_from(phases?).ok()
    }
}

impl TryFrom<Vec<Phase>> for Phases {
    type Error = String;
    fn try_from(v: Vec<Phase>) -> Result<Self, String> {
        if v.is_empty() {
            return Err("an empty list of phases: give at least one of start, update, end".into());
        }
        Ok(Self {
            start: v.contains(&Phase::Start),
            update: v.contains(&Phase::Update),
            end: v.contains(&Phase::End),
        })
    }
}

impl From<Phases> for Vec<Phase> {
    fn from(p: Phases) -> Self {
        [Phase::Start, Phase::Update, Phase::End]
            .into_iter()
            .filter(|&x| p.takes(x))
            .collect()
    }
}

/// A topic (key) level from a stream name or a label: lower case, `[a-z0-9_-]` only
/// (MQTT topics, zenoh keys).
pub fn topic_level(s: &str) -> String {
    let t: String = s
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

/// Whether `a` and `b` name the same file (both exist and resolve to one path).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses to truncate `path` when it exists, is not empty and does not start like an
/// avsense JSON Lines file, unless `force`.
fn check_overwrite(path: &Path, force: bool) -> Result<(), SinkError> {
    if force {
        return Ok(());
    }
    let refused = |reason: &str| SinkError::Refused {
        target: path.display().to_string(),
        reason: reason.to_string(),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(()), // nothing there yet
    };
    if meta.is_dir() {
        return Err(refused("it is a directory"));
    }
    if !meta.is_file() || meta.len() == 0 {
        return Ok(()); // a device (/dev/null, a FIFO) or an empty file
    }
    let mut head = [0u8; 64];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|source| SinkError::Io {
            target: path.display().to_string(),
            source,
        })?;
    if head[..n].starts_with(b"{\"schema\":\"avsense.event/") {
        return Ok(());
    }
    Err(refused(
        "the file exists and is not an avsense JSON Lines file (pass --force, or force = true in its [[sink]], to overwrite it)",
    ))
}

impl SinkConfig {
    /// A sink of `kind` with every other key at its default.
    pub fn new(kind: SinkKind) -> Self {
        Self {
            kind,
            path: None,
            force: false,
            phases: Phases::ALL,
            host: None,
            port: None,
            tls: false,
            ca_file: None,
            client_id: None,
            username: None,
            password_env: None,
            topic_prefix: None,
            qos: None,
            discovery: false,
            discovery_prefix: None,
            spool: None,
            spool_size: None,
            drain_timeout: None,
            listen: Vec::new(),
            connect: Vec::new(),
            url: None,
            site: None,
            jetstream: None,
            replicas: None,
            dedup_window: None,
        }
    }

    /// Checks this sink's keys (named relative to the sink, e.g. `path`).
    pub fn validate(&self) -> Result<(), Invalid> {
        check(
            self.kind != SinkKind::Jsonl || self.path.is_some(),
            "path",
            "(missing)",
            "an output file for kind = \"jsonl\"",
        )?;
        if self.kind != SinkKind::Zenoh {
            if let Some(k) = [
                ("listen", !self.listen.is_empty()),
                ("connect", !self.connect.is_empty()),
            ]
            .iter()
            .find(|(_, on)| *on)
            {
                return Err(Invalid::new(k.0, "(set)", "only for kind = \"zenoh\""));
            }
        } else {
            check(
                cfg!(feature = "zenoh"),
                "kind",
                "\"zenoh\"",
                "a sink this build has: rebuild with the cargo feature `zenoh` (on by default)",
            )?;
            check_endpoints([("listen", &self.listen), ("connect", &self.connect)])?;
        }
        if self.kind != SinkKind::Nats {
            let set = [
                ("url", self.url.is_some()),
                ("site", self.site.is_some()),
                ("jetstream", self.jetstream.is_some()),
                ("replicas", self.replicas.is_some()),
                ("dedup_window", self.dedup_window.is_some()),
            ];
            if let Some((k, _)) = set.iter().find(|(_, on)| *on) {
                return Err(Invalid::new(*k, "(set)", "only for kind = \"nats\""));
            }
        } else {
            self.validate_nats()?;
        }
        let broker = matches!(self.kind, SinkKind::Mqtt | SinkKind::Nats);
        if self.kind != SinkKind::Mqtt {
            let set = [
                ("host", self.host.is_some()),
                ("port", self.port.is_some()),
                ("tls", self.tls),
                ("client_id", self.client_id.is_some()),
                (
                    "topic_prefix",
                    self.topic_prefix.is_some() && self.kind != SinkKind::Zenoh,
                ),
                ("qos", self.qos.is_some()),
                ("discovery", self.discovery),
                ("discovery_prefix", self.discovery_prefix.is_some()),
            ];
            let shared = [
                ("ca_file", self.ca_file.is_some()),
                ("username", self.username.is_some()),
                ("password_env", self.password_env.is_some()),
                ("spool", self.spool.is_some()),
                ("spool_size", self.spool_size.is_some()),
                ("drain_timeout", self.drain_timeout.is_some()),
            ];
            if let Some((k, _)) = set.iter().find(|(_, on)| *on) {
                return Err(Invalid::new(*k, "(set)", "only for kind = \"mqtt\""));
            }
            if let Some((k, _)) = shared.iter().find(|(_, on)| *on && !broker) {
                return Err(Invalid::new(
                    *k,
                    "(set)",
                    "only for kind = \"mqtt\" or \"nats\"",
                ));
            }
            return self.validate_spool();
        }
        check(
            cfg!(feature = "mqtt"),
            "kind",
            "\"mqtt\"",
            "a sink this build has: rebuild with the cargo feature `mqtt` (on by default)",
        )?;
        check(
            self.qos.is_none_or(|q| q <= 1),
            "qos",
            format!("{:?}", self.qos),
            "0 or 1 (at-least-once; QoS 2 is not offered: README)",
        )?;
        if let Some(p) = &self.topic_prefix {
            check(
                !p.is_empty() && !p.contains(['#', '+']) && !p.ends_with('/'),
                "topic_prefix",
                format!("{p:?}"),
                "a topic without wildcards or a trailing /",
            )?;
        }
        self.validate_spool()?;
        check(
            self.host.as_deref().is_none_or(|h| !h.trim().is_empty()),
            "host",
            "\"\"",
            "a host name or address",
        )
    }

    /// The spool keys of a broker sink.
    fn validate_spool(&self) -> Result<(), Invalid> {
        check(
            self.spool_size
                .is_none_or(|m| m.is_finite() && (0.01..=1_000_000.0).contains(&m)),
            "spool_size",
            format!("{:?}", self.spool_size),
            "MB, 0.01 to 1000000",
        )?;
        check(
            self.drain_timeout
                .is_none_or(|t| t.is_finite() && (0.0..=3600.0).contains(&t)),
            "drain_timeout",
            format!("{:?}", self.drain_timeout),
            "seconds, 0 to 3600",
        )
    }

    /// The keys of `kind = "nats"`.
    fn validate_nats(&self) -> Result<(), Invalid> {
        check(
            cfg!(feature = "nats"),
            "kind",
            "\"nats\"",
            "a sink this build has: rebuild with the cargo feature `nats` (on by default)",
        )?;
        if let Some(u) = &self.url {
            check(
                !u.trim().is_empty()
                    && u.split(',').all(|a| {
                        let a = a.trim();
                        !a.is_empty() && !a.contains(char::is_whitespace)
                    }),
                "url",
                format!("{u:?}"),
                "server URLs, comma-separated (nats://host:4222)",
            )?;
        }
        for (key, v) in [("site", &self.site), ("jetstream", &self.jetstream)] {
            if let Some(v) = v {
                check(
                    !v.is_empty()
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                    key,
                    format!("{v:?}"),
                    "letters, digits, _ and - only",
                )?;
            }
        }
        check(
            self.replicas.is_none_or(|r| (1..=5).contains(&r)),
            "replicas",
            format!("{:?}", self.replicas),
            "1 to 5",
        )?;
        check(
            self.dedup_window
                .is_none_or(|t| t.is_finite() && (1.0..=7.0 * 86400.0).contains(&t)),
            "dedup_window",
            format!("{:?}", self.dedup_window),
            "seconds, 1 to 604800",
        )
    }

    /// Opens the sink for a pipeline.
    pub fn open_for(&self, ctx: &SinkContext) -> Result<Box<dyn EventSink>, SinkError> {
        match self.kind {
            SinkKind::Mqtt => self.open_mqtt(ctx),
            SinkKind::Nats => self.open_nats(ctx),
            _ => self.open(),
        }
    }

    /// `nats`: its settings for a pipeline named `pipeline`.
    #[cfg(feature = "nats")]
    pub fn nats_settings(&self, pipeline: &str) -> nats::NatsSettings {
        let site = self.site.clone().unwrap_or_else(|| "default".into());
        let mut s = nats::NatsSettings::new(
            self.url.as_deref().unwrap_or("nats://127.0.0.1:4222"),
            &site,
            self.spool.clone().unwrap_or_else(|| {
                PathBuf::from("avsense-spool").join(format!(
                    "nats-{}-{}",
                    topic_level(&site),
                    topic_level(pipeline)
                ))
            }),
        );
        if let Some(j) = &self.jetstream {
            s.stream = j.clone();
        }
        s.replicas = self.replicas.unwrap_or(1);
        if let Some(w) = self.dedup_window {
            s.dedup_window = std::time::Duration::from_secs_f64(w);
        }
        s.username = self.username.clone();
        s.password_env = self.password_env.clone();
        s.ca_file = self.ca_file.clone();
        s.spool_bytes = (self.spool_size.unwrap_or(64.0) * 1024.0 * 1024.0) as u64;
        s.drain_timeout = std::time::Duration::from_secs_f64(self.drain_timeout.unwrap_or(10.0));
        s
    }

    #[cfg(feature = "nats")]
    fn open_nats(&self, ctx: &SinkContext) -> Result<Box<dyn EventSink>, SinkError> {
        Ok(Box::new(nats::NatsSink::open(
            self.nats_settings(&ctx.pipeline),
            self.phases,
        )?))
    }

    #[cfg(not(feature = "nats"))]
    fn open_nats(&self, _ctx: &SinkContext) -> Result<Box<dyn EventSink>, SinkError> {
        Err(SinkError::Refused {
            target: "nats".into(),
            reason: "this build has no NATS sink (cargo feature `nats`)".into(),
        })
    }

    /// `zenoh`: where it publishes.
    #[cfg(feature = "zenoh")]
    pub fn zenoh_settings(&self) -> zenoh::ZenohSettings {
        zenoh::ZenohSettings {
            listen: self.listen.clone(),
            connect: self.connect.clone(),
            prefix: self
                .topic_prefix
                .clone()
                .unwrap_or_else(|| "avsense".into()),
        }
    }

    #[cfg(feature = "zenoh")]
    fn open_zenoh(&self) -> Result<Box<dyn EventSink>, SinkError> {
        Ok(Box::new(zenoh::ZenohSink::open(
            self.zenoh_settings(),
            self.phases,
        )?))
    }

    #[cfg(not(feature = "zenoh"))]
    fn open_zenoh(&self) -> Result<Box<dyn EventSink>, SinkError> {
        Err(SinkError::Refused {
            target: "zenoh".into(),
            reason: "this build has no zenoh sink (cargo feature `zenoh`)".into(),
        })
    }

    #[cfg(feature = "mqtt")]
    fn open_mqtt(&self, ctx: &SinkContext) -> Result<Box<dyn EventSink>, SinkError> {
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| format!("avsense-{}", mqtt::topic_level(&ctx.pipeline)));
        let settings = mqtt::MqttSettings {
            host: self.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            port: self.port.unwrap_or(if self.tls { 8883 } else { 1883 }),
            tls: self.tls,
            ca_file: self.ca_file.clone(),
            spool: self
                .spool
                .clone()
                .unwrap_or_else(|| PathBuf::from("avsense-spool").join(&client_id)),
            client_id,
            username: self.username.clone(),
            password_env: self.password_env.clone(),
            topic_prefix: self
                .topic_prefix
                .clone()
                .unwrap_or_else(|| "avsense".into()),
            qos: self.qos.unwrap_or(1),
            discovery: self.discovery,
            discovery_prefix: self
                .discovery_prefix
                .clone()
                .unwrap_or_else(|| "homeassistant".into()),
            spool_bytes: (self.spool_size.unwrap_or(64.0) * 1024.0 * 1024.0) as u64,
            drain_timeout: std::time::Duration::from_secs_f64(self.drain_timeout.unwrap_or(10.0)),
            streams: ctx.streams.clone(),
        };
        Ok(Box::new(mqtt::MqttSink::open(settings, self.phases)?))
    }

    #[cfg(not(feature = "mqtt"))]
    fn open_mqtt(&self, _ctx: &SinkContext) -> Result<Box<dyn EventSink>, SinkError> {
        Err(SinkError::Refused {
            target: "mqtt".into(),
            reason: "this build has no MQTT sink (cargo feature `mqtt`)".into(),
        })
    }

    /// Opens a sink that needs nothing from the pipeline (`stdout`, `jsonl`; `mqtt`:
    /// [`SinkConfig::open_for`]).
    pub fn open(&self) -> Result<Box<dyn EventSink>, SinkError> {
        Ok(match (self.kind, &self.path) {
            (SinkKind::Mqtt, _) => return self.open_mqtt(&SinkContext::default()),
            (SinkKind::Nats, _) => return self.open_nats(&SinkContext::default()),
            (SinkKind::Zenoh, _) => return self.open_zenoh(),
            (SinkKind::Stdout, _) | (SinkKind::Jsonl, None) => {
                Box::new(JsonlSink::stdout().with_phases(self.phases))
            }
            (SinkKind::Jsonl, Some(p)) => {
                check_overwrite(p, self.force)?;
                Box::new(JsonlSink::create(p)?.with_phases(self.phases))
            }
        })
    }
}

/// Errors of a sink; the message names the sink and its target.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output could not be opened or written.
    #[error("sink {target}")]
    Io {
        /// The target (`stdout` or the file path).
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The target exists and is not ours to overwrite.
    #[error("sink {target}: refusing to overwrite: {reason}")]
    Refused {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// Any other failure of a sink (a broker's spool, its TLS files).
    #[error("sink {target}")]
    Other {
        /// The target.
        target: String,
        /// The error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The reader of stdout went away (`avsense … | head`): a normal stop, not a failure.
    #[error("sink {target}: the reader closed the pipe")]
    Closed {
        /// The target.
        target: String,
    },
}

/// Something that takes events.
pub trait EventSink: Send {
    /// What the sink writes to (`stdout`, a path), for reports and errors.
    fn target(&self) -> String {
        "callback".into()
    }
    /// Whether the sink takes this message (default: every lifecycle message).
    fn takes(&self, event: &Event) -> bool {
        let _ = event;
        true
    }
    /// Writes one event.
    fn write(&mut self, event: &Event) -> Result<(), SinkError>;
    /// Flushes buffered output.
    fn flush(&mut self) -> Result<(), SinkError>;
}

/// A callback sink, for applications that embed the pipeline (every lifecycle message:
/// filter on [`Event::phase`]).
pub struct CallbackSink<F: FnMut(&Event) + Send>(pub F);

impl<F: FnMut(&Event) + Send> EventSink for CallbackSink<F> {
    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        (self.0)(event);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(toml_text: &str) -> Result<(), Invalid> {
        let s: SinkConfig = toml::from_str(toml_text).expect("toml");
        s.validate()
    }

    #[test]
    fn broker_keys_are_checked_per_kind() {
        // The other kinds refuse the NATS keys whatever the build.
        for (text, key) in [
            ("kind = \"mqtt\"\nurl = \"nats://a:4222\"", "url"),
            ("kind = \"jsonl\"\npath = \"x\"\nsite = \"s\"", "site"),
            ("kind = \"stdout\"\nspool_size = 1", "spool_size"),
        ] {
            let e = sink(text).expect_err(text).to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        if !cfg!(feature = "nats") {
            let e = sink("kind = \"nats\"").expect_err("no nats").to_string();
            assert!(e.contains("cargo feature `nats`"), "{e}");
            return;
        }
        assert!(sink("kind = \"nats\"\nurl = \"nats://a:4222,nats://b:4222\"\nsite = \"lobby\"\nreplicas = 3\nspool_size = 8\n").is_ok());
        for (text, key) in [
            ("kind = \"nats\"\nqos = 1", "qos"),
            ("kind = \"nats\"\nreplicas = 7", "replicas"),
            ("kind = \"nats\"\nsite = \"a.b\"", "site"),
            ("kind = \"nats\"\nurl = \"nats://a b\"", "url"),
            ("kind = \"nats\"\ndedup_window = 0", "dedup_window"),
        ] {
            let e = sink(text).expect_err(text).to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        // The spool and credential keys serve both brokers.
        if cfg!(feature = "mqtt") {
            assert!(sink(
                "kind = \"mqtt\"\nusername = \"u\"\npassword_env = \"P\"\nspool_size = 2"
            )
            .is_ok());
        }
        assert!(
            sink("kind = \"nats\"\nusername = \"u\"\npassword_env = \"P\"\ndrain_timeout = 2")
                .is_ok()
        );
    }
}
