//! The HTTP API (cargo feature `http`): live stats, the recent events, live events as
//! Server-Sent Events, snapshots, Prometheus metrics and a health check, served by `axum`
//! on a thread of its own.
//!
//! ```text
//! sink stage ──every message──▶ HubSink ─▶ Hub (ring of recent messages, live broadcast, counters)
//! Running::monitor() ─────────────────────▶ Hub (fps, edges, latency, model times)
//! HttpServer (axum) ◀── GET /api/stats, /api/events, /api/events/stream, /api/events/{id}/snapshot.jpg, /metrics, /healthz
//! Pipeline::with_frame_tap(hub.frame_tap()) ──▶ LiveView ◀── GET /, /api/streams/{name}/frame.jpg, /mjpeg
//! ```
//!
//! [`HttpConfig`] (`[http]`) is always compiled so that every build reads the same configs;
//! a build without the feature refuses a config that sets `listen`.

#[cfg(feature = "http")]
mod hub;
#[cfg(feature = "http")]
mod metrics;
#[cfg(feature = "http")]
mod server;
#[cfg(feature = "http")]
pub mod view;

#[cfg(feature = "http")]
pub use hub::{Hub, HubSink, Stats, StreamStats};
#[cfg(feature = "http")]
pub use server::{HttpError, HttpServer};

use crate::core::settings::{check, Invalid};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `[http]`: the HTTP API (off unless `listen` is set).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to serve on, e.g. `"127.0.0.1:5000"`; a bare port (`"5000"`) binds
    /// 127.0.0.1. Unset: no HTTP server.
    pub listen: Option<String>,
    /// The environment variable holding a bearer token; when set, every endpoint but
    /// `/healthz` needs `Authorization: Bearer <token>`.
    pub token_env: Option<String>,
    /// Messages kept for `/api/events` (the newest; default 1000).
    pub ring: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            token_env: None,
            ring: 1000,
        }
    }
}

impl HttpConfig {
    /// The address to bind, when the server is on.
    pub fn addr(&self) -> Option<Result<SocketAddr, String>> {
        let l = self.listen.as_deref()?.trim();
        Some(match l.parse::<u16>() {
            Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
            Err(_) => l.parse::<SocketAddr>().map_err(|e| e.to_string()),
        })
    }

    /// Checks the keys of `[http]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(addr) = self.addr() {
            check(
                addr.is_ok(),
                "listen",
                format!("{:?}", self.listen.as_deref().unwrap_or("")),
                "an address and port such as \"127.0.0.1:5000\" (or a port)",
            )?;
            check(
                cfg!(feature = "http"),
                "listen",
                format!("{:?}", self.listen.as_deref().unwrap_or("")),
                "a build with the HTTP API: rebuild with the cargo feature `http` (on by default)",
            )?;
        }
        if let Some(v) = &self.token_env {
            check(
                !v.is_empty() && !v.contains('='),
                "token_env",
                format!("{v:?}"),
                "the name of an environment variable",
            )?;
        }
        check(
            (1..=1_000_000).contains(&self.ring),
            "ring",
            self.ring,
            "1 to 1000000 messages",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_a_port() {
        let mut c = HttpConfig::default();
        assert!(c.addr().is_none());
        c.listen = Some("5000".into());
        assert_eq!(c.addr().unwrap().unwrap().to_string(), "127.0.0.1:5000");
        c.listen = Some("0.0.0.0:8080".into());
        assert_eq!(c.addr().unwrap().unwrap().to_string(), "0.0.0.0:8080");
        c.listen = Some("localhost:x".into());
        assert_eq!(c.validate().unwrap_err().key, "listen");
        c.listen = None;
        c.ring = 0;
        assert!(c.validate().is_err());
    }
}
