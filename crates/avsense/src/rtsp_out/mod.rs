//! RTSP out (`[rtsp_out]`, cargo feature `rtsp-out`): each stream's picture with its track
//! boxes, served by gst-rtsp-server at `rtsp://<listen>/<stream name>` as H.264, so VLC,
//! ffplay or any RTSP client can watch what the pipeline sees.
//!
//! ```text
//! video stage ─frame tap─▶ RtspOut (boxes drawn, ≤ fps) ─appsrc─▶ x264enc ─▶ rtph264pay ─▶ clients
//! ```
//!
//! A stream's encoder runs only while a client watches (gst-rtsp-server prepares the media
//! for the first client and, the factory being shared, serves every later one from it);
//! with no client the tap costs a lock and a lookup per frame.
//!
//! [`RtspOutConfig`] is always compiled so that every build reads the same configs; a build
//! without the feature refuses a config that sets `listen`.

use crate::core::settings::{check, Invalid};
use serde::{Deserialize, Serialize};

/// `[rtsp_out]`: serve each stream's picture over RTSP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtspOutConfig {
    /// Address and port (`127.0.0.1:8554`, or a port for 127.0.0.1); off when unset.
    pub listen: Option<String>,
    /// Pictures a second sent, at most (1 to 30).
    pub fps: u32,
}

impl Default for RtspOutConfig {
    fn default() -> Self {
        Self {
            listen: None,
            fps: 10,
        }
    }
}

impl RtspOutConfig {
    /// The address and port, when `listen` is set.
    pub fn addr(&self) -> Option<Result<(String, u16), String>> {
        let l = self.listen.as_deref()?;
        Some(match l.parse::<u16>() {
            Ok(p) => Ok(("127.0.0.1".into(), p)),
            Err(_) => match l.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() => port
                    .parse::<u16>()
                    .map(|p| (host.trim_matches(['[', ']']).to_string(), p))
                    .map_err(|e| e.to_string()),
                _ => Err("expected HOST:PORT or PORT".into()),
            },
        })
    }

    /// Checks the keys of `[rtsp_out]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(addr) = self.addr() {
            let shown = format!("{:?}", self.listen.as_deref().unwrap_or(""));
            check(
                addr.is_ok(),
                "listen",
                &shown,
                "an address and port such as \"127.0.0.1:8554\" (or a port)",
            )?;
            check(
                cfg!(feature = "rtsp-out"),
                "listen",
                &shown,
                "a build with RTSP out: rebuild with the cargo feature `rtsp-out` (on by default)",
            )?;
        }
        check(
            (1..=30).contains(&self.fps),
            "fps",
            self.fps,
            "1 to 30 pictures a second",
        )
    }
}

#[cfg(feature = "rtsp-out")]
mod server;
#[cfg(feature = "rtsp-out")]
pub use server::{RtspOut, RtspOutError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_a_port_and_fps_is_bounded() {
        let mut c = RtspOutConfig::default();
        assert!(c.addr().is_none());
        assert!(c.validate().is_ok());
        c.listen = Some("8554".into());
        assert_eq!(c.addr(), Some(Ok(("127.0.0.1".into(), 8554))));
        c.listen = Some("0.0.0.0:9000".into());
        assert_eq!(c.addr(), Some(Ok(("0.0.0.0".into(), 9000))));
        c.listen = Some("nowhere".into());
        assert_eq!(c.validate().unwrap_err().key, "listen");
        c.listen = None;
        c.fps = 0;
        assert_eq!(c.validate().unwrap_err().key, "fps");
    }
}
