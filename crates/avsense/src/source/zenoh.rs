//! `kind = "zenoh"`: frames and audio another process publishes over zenoh, in the
//! [`super::wire`] format on `<key>/media`, fed into the source's push input (so they go
//! through the same GStreamer branches as every source).

use super::config::SourceConfig;
use super::push::{PushInput, PushSamples};
use super::wire::{decode, WireMessage};
use super::SourceError;
use crate::core::stop::StopFlag;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::Wait;

/// A peer-mode zenoh config with these endpoints (multicast scouting off when any is given,
/// so that two processes on loopback find each other without a router or a network).
pub fn config(listen: &[String], connect: &[String]) -> Result<zenoh::Config, String> {
    let mut c = zenoh::Config::default();
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    c.insert_json5("mode", "\"peer\"")
        .map_err(|e| e.to_string())?;
    if !listen.is_empty() {
        c.insert_json5("listen/endpoints", &json(listen))
            .map_err(|e| e.to_string())?;
    }
    if !connect.is_empty() {
        c.insert_json5("connect/endpoints", &json(connect))
            .map_err(|e| e.to_string())?;
    }
    if !listen.is_empty() || !connect.is_empty() {
        c.insert_json5("scouting/multicast/enabled", "false")
            .map_err(|e| e.to_string())?;
    }
    Ok(c)
}

/// The key prefix of a zenoh source (`key`, else `avsense/<name>`).
pub fn source_key(cfg: &SourceConfig) -> String {
    cfg.key
        .clone()
        .unwrap_or_else(|| format!("avsense/{}", cfg.name))
}

/// Opens the session and subscribes (errors name the stream), then feeds `input` from a
/// thread until an end message, a stop, or `done`.
pub(crate) fn spawn(
    cfg: &SourceConfig,
    input: PushInput,
    stop: StopFlag,
    done: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, SourceError> {
    let stream = cfg.name.clone();
    let err = |reason: String| SourceError::Build {
        stream: stream.clone(),
        reason: format!("zenoh: {reason}"),
    };
    let zc = config(&cfg.listen, &cfg.connect).map_err(err)?;
    let session = zenoh::open(zc).wait().map_err(|e| err(e.to_string()))?;
    let key = format!("{}/media", source_key(cfg));
    let sub = session
        .declare_subscriber(&key)
        .wait()
        .map_err(|e| err(format!("{key}: {e}")))?;
    tracing::info!("source {stream}: zenoh subscribed to {key}");
    std::thread::Builder::new()
        .name(format!("{stream}-zenoh"))
        .spawn(move || {
            let _session = session; // kept open while the subscriber runs
            let mut bad = 0u64;
            while !stop.is_set() && !done.load(Ordering::Relaxed) {
                let sample = match sub.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(s)) => s,
                    Ok(None) => continue,
                    Err(_) => break, // the subscriber is gone
                };
                let bytes = sample.payload().to_bytes();
                let pushed = match decode(&bytes) {
                    Ok(WireMessage::Video {
                        pts,
                        width,
                        height,
                        format,
                        data,
                    }) => input.push_video(pts, width, height, format, data),
                    Ok(WireMessage::Audio {
                        pts,
                        rate,
                        channels,
                        samples,
                    }) => input.push_audio(pts, rate, channels, PushSamples::F32(&samples)),
                    Ok(WireMessage::End) => {
                        input.finish();
                        break;
                    }
                    Err(e) => {
                        bad += 1;
                        if bad.is_power_of_two() {
                            tracing::warn!(
                                "source {stream}: zenoh {key}: {e} ({bad} bad messages so far)"
                            );
                        }
                        continue;
                    }
                };
                if let Err(e) = pushed {
                    if matches!(e, super::push::PushError::Ended { .. }) {
                        break;
                    }
                    bad += 1;
                    if bad.is_power_of_two() {
                        tracing::warn!("source {stream}: {e} ({bad} refused so far)");
                    }
                }
            }
            // Whatever ended the loop, the input ends too.
            input.finish();
        })
        .map_err(|e| SourceError::Build {
            stream: cfg.name.clone(),
            reason: format!("cannot start the zenoh thread: {e}"),
        })
}
