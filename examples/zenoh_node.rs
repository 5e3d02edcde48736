//! avsense as a zenoh node: subscribes to frames and audio on `<key>/media` (the
//! `avsense::source::wire` format) and publishes events on `avsense/<stream>/events` and
//! tracks on `avsense/<stream>/tracks`. Peer mode: it connects to the endpoint the
//! publishing process (or a zenoh router) listens on; no router is needed on one machine.
//!
//!     cargo run --example zenoh_node -- tcp/127.0.0.1:7447 cams/front
use avsense::sink::{SinkConfig, SinkKind};
use avsense::source::{SourceConfig, SourceKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "tcp/127.0.0.1:7447".into());
    let key = args.next().unwrap_or_else(|| "cams/front".into());
    let mut cam = SourceConfig::new("front", SourceKind::Zenoh);
    cam.connect = vec![endpoint.clone()];
    cam.key = Some(key.clone());
    let mut out = SinkConfig::new(SinkKind::Zenoh);
    out.connect = vec![endpoint.clone()];
    let pipeline = avsense::Pipeline::builder()
        .source(cam)
        .configure(|c| c.sinks.push(out))
        .build()?;
    eprintln!("connected to {endpoint}: frames on {key}/media → events on avsense/front/events (Ctrl-C to stop)");
    let report = pipeline.spawn()?.wait()?;
    eprintln!("{} events", report.events_written);
    Ok(())
}
