//! The live web view in a real browser: headless Chromium (Debian's `chromium` +
//! `chromium-driver`) driven by tests/web_view.py over WebDriver opens `/` of a running
//! `avsense run` (a live test source, `--http`), waits for events in the list and new
//! pictures of the stream, and takes a screenshot.
#![cfg(feature = "http")]
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_web_view_shows_live_events_and_pictures_in_chromium() {
    let have =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !tool_ready(
        have,
        "chromium and chromedriver are needed (Debian packages chromium, chromium-driver)",
    ) {
        return;
    }
    let dir = scratch("web-view");
    let http = free_port();
    let cfg = dir.join("live.toml");
    // A live test source (a moving ball, ticks), 60 s at most; the detector runs, so the
    // picture has boxes when it finds something, and the ticks give sound events.
    std::fs::write(
        &cfg,
        "[[source]]\nname = \"live\"\nkind = \"test\"\nlive = true\nduration = 60.0\n\n[[sink]]\nkind = \"jsonl\"\npath = \"/dev/null\"\n",
    )
    .expect("config");
    let _run = Killed(
        Command::new(env!("CARGO_BIN_EXE_avsense"))
            .args(["run", "-q", "--force", "--http", &http.to_string()])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("avsense run"),
    );
    let driver_port = free_port();
    let _driver = Killed(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver"),
    );
    wait_for(
        Duration::from_secs(60),
        "the HTTP API and chromedriver",
        || port_open(http) && port_open(driver_port),
    );
    let shot = dir.join("web-view.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web_view.py"))
        .arg(format!("http://127.0.0.1:{driver_port}"))
        .arg(format!("http://127.0.0.1:{http}/"))
        .arg(&shot)
        .arg("90")
        .output()
        .expect("python3 tests/web_view.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "web_view.py printed no result ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{v}");
    // The DOM: the stream's picture, at least 3 events listed, the pictures advancing, the
    // live connection up.
    assert_eq!(v["streams"], serde_json::json!(["live"]), "{v}");
    assert!(v["events"].as_u64().is_some_and(|n| n >= 3), "{v}");
    let (a, b) = (v["frames_first"].as_u64(), v["frames_last"].as_u64());
    assert!(
        a.zip(b).is_some_and(|(a, b)| b >= a + 3),
        "pictures advance: {v}"
    );
    assert_eq!(v["status"], "live", "{v}");
    // The same pictures as MJPEG, for players (VLC, ffplay) and <img> tags.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", http)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    c.write_all(b"GET /api/streams/live/mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got.len() < 64 * 1024 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if text.matches("--frame").count() >= 2 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("multipart/x-mixed-replace; boundary=frame"),
        "{}",
        &text[..text.len().min(300)]
    );
    assert!(
        text.matches("Content-Type: image/jpeg").count() >= 2,
        "two pictures"
    );
    // The screenshot: a PNG of the window's size.
    let png = std::fs::read(&shot).expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dec = png::Decoder::new(std::io::Cursor::new(&png));
    let info = dec.read_info().expect("png").info().clone();
    assert!(
        info.width >= 1000 && info.height >= 600,
        "{}×{}",
        info.width,
        info.height
    );
}
