//! The shortest embedding: a file in, its events out (JSON Lines on stdout).
//!
//!     cargo run --example file_to_events -- clip.mp4
use avsense::source::{SourceConfig, SourceKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: file_to_events CLIP")?;
    let mut clip = SourceConfig::new("clip", SourceKind::File);
    clip.path = Some(path.into());
    let (builder, events) = avsense::Pipeline::builder().source(clip).event_channel(256);
    let running = builder.build()?.spawn()?;
    for event in events {
        println!("{}", event.to_json_line());
    }
    let report = running.wait()?;
    eprintln!(
        "{} events, {:.1}× realtime",
        report.events_written,
        report.realtime_factor()
    );
    Ok(())
}
