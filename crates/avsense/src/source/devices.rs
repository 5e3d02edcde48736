//! Capture devices: cameras (and other video/audio sources GStreamer's `DeviceMonitor` sees)
//! and microphones (cpal), with their capabilities.

use cpal::traits::{DeviceTrait, HostTrait};
use gstreamer as gst;
use gstreamer::prelude::*;

/// One device as listed by `avsense devices`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    /// `gstreamer` or `cpal`.
    pub backend: String,
    /// Device class, e.g. `Video/Source`, `Audio/Source`, `input`.
    pub class: String,
    /// Display name.
    pub name: String,
    /// How to use it in a pipeline (e.g. the v4l2 device path), when known.
    pub address: Option<String>,
    /// Capabilities, one per line (caps or sample formats/rates).
    pub caps: Vec<String>,
    /// The host's default input.
    pub default: bool,
}

/// Errors of device listing.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// GStreamer could not start a device monitor.
    #[error("devices: GStreamer device monitor: {0}")]
    Monitor(String),
}

/// Cameras and other capture sources seen by GStreamer.
pub fn gstreamer_devices() -> Result<Vec<DeviceInfo>, DeviceError> {
    crate::source::gst::init().map_err(DeviceError::Monitor)?;
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    monitor.add_filter(Some("Audio/Source"), None);
    monitor
        .start()
        .map_err(|e| DeviceError::Monitor(e.to_string()))?;
    let devices = monitor.devices();
    monitor.stop();
    Ok(devices
        .iter()
        .map(|d| {
            let props = d.properties();
            let address = props.as_ref().and_then(|p| {
                [
                    "device.path",
                    "api.v4l2.path",
                    "object.path",
                    "device.bus_path",
                ]
                .iter()
                .find_map(|k| p.get::<String>(*k).ok())
            });
            DeviceInfo {
                backend: "gstreamer".into(),
                class: d.device_class().to_string(),
                name: d.display_name().to_string(),
                address,
                caps: d
                    .caps()
                    .map(|c| c.iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default(),
                default: false,
            }
        })
        .collect())
}

/// Microphones seen by cpal on the default host.
pub fn cpal_inputs() -> Vec<DeviceInfo> {
    let host = cpal::default_host();
    let default_id = host.default_input_device().and_then(|d| d.id().ok());
    let Ok(devices) = host.input_devices() else {
        return Vec::new();
    };
    devices
        .map(|d| {
            let name = d
                .description()
                .map(|desc| desc.name().to_string())
                .unwrap_or_else(|_| "(unnamed)".into());
            let caps = d
                .supported_input_configs()
                .map(|cfgs| {
                    cfgs.map(|c| {
                        format!(
                            "{} ch, {}–{} Hz, {:?}",
                            c.channels(),
                            c.min_sample_rate(),
                            c.max_sample_rate(),
                            c.sample_format()
                        )
                    })
                    .collect()
                })
                .unwrap_or_default();
            let id = d.id().ok();
            DeviceInfo {
                backend: format!("cpal/{:?}", host.id()),
                class: "input".into(),
                name,
                address: id.as_ref().map(|i| i.to_string()),
                caps,
                default: id.is_some() && id == default_id,
            }
        })
        .collect()
}
