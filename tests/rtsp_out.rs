//! RTSP out: a live test source served at rtsp://127.0.0.1:PORT/live, read by a GStreamer
//! client (rtspsrc → depay → decode) for 5 s; its frames are counted.
#![cfg(feature = "rtsp-out")]
mod common;

use common::*;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_gstreamer_client_reads_the_live_picture_over_rtsp() {
    gst::init().expect("gstreamer");
    let dir = scratch("rtsp-out");
    let port = free_port();
    let cfg = dir.join("live.toml");
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"live\"\nkind = \"test\"\nlive = true\nduration = 60.0\n\n[[sink]]\nkind = \"jsonl\"\npath = \"/dev/null\"\n\n[rtsp_out]\nfps = 10\n",
    )
    .expect("config");
    let _run = Killed(
        Command::new(env!("CARGO_BIN_EXE_avsense"))
            .args(["run", "-q", "--force", "--rtsp-out", &port.to_string()])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("avsense run"),
    );
    wait_for(Duration::from_secs(60), "the RTSP server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let client = gst::parse::launch(&format!(
        "rtspsrc location=rtsp://127.0.0.1:{port}/live protocols=tcp latency=200 \
         ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert \
         ! fakesink name=sink signal-handoffs=true sync=false"
    ))
    .expect("client pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let frames = Arc::new(AtomicU64::new(0));
    let sink = client.by_name("sink").expect("sink");
    let n = Arc::clone(&frames);
    sink.connect("handoff", false, move |_| {
        n.fetch_add(1, Ordering::Relaxed);
        None
    });
    client.set_state(gst::State::Playing).expect("play");
    let bus = client.bus().expect("bus");
    // Until the first decoded frame (the server prepares the media for its first client),
    // then 5 s of frames.
    let t0 = Instant::now();
    let mut counting_since: Option<(Instant, u64)> = None;
    let mut error = None;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(e) = msg.view() {
                error = Some(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
        }
        let now = frames.load(Ordering::Relaxed);
        match counting_since {
            None if now > 0 => counting_since = Some((Instant::now(), now)),
            Some((at, _)) if at.elapsed() >= Duration::from_secs(5) => break,
            _ => {}
        }
    }
    let _ = client.set_state(gst::State::Null);
    assert!(error.is_none(), "client error: {error:?}");
    let (_, first) = counting_since.expect("no frame came over RTSP within 60 s");
    let counted = frames.load(Ordering::Relaxed) - first;
    eprintln!("RTSP out: {counted} frames in 5 s (fps = 10 configured)");
    // 10 pictures a second are sent; a loaded machine may send fewer, but the stream flows.
    assert!(counted >= 10, "{counted} frames in 5 s");
}
