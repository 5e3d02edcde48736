//! The HTTP API of `avsense run`, driven over real loopback connections: stats, the events
//! ring with its filters and cursor, the live Server-Sent Events, a snapshot (decoded, its
//! box checked in the pixels), Prometheus metrics (parsed by a text-format parser, counters
//! increasing), the bearer token, and JSON errors for bad requests.
#![cfg(feature = "http")]
mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN_VAR: &str = "AVSENSE_TEST_HTTP_TOKEN";
const TOKEN: &str = "s3cret-token";

/// One HTTP/1.1 exchange: (status, headers lower-cased, body).
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read reply");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, Some(TOKEN))
}

/// `avsense run` on `cfg` with the token in its environment; stderr to a file.
fn start(cfg: &Path, extra: &[&str], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q"])
        .arg(cfg)
        .args(extra)
        .env(TOKEN_VAR, TOKEN)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("run avsense")
}

fn wait_listening(port: u16, child: &mut Child, log: &Path) {
    wait_for(Duration::from_secs(60), "the HTTP API to listen", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "avsense ended ({st:?}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Ctrl-C, then the exit status and stderr.
fn interrupt(mut child: Child, log: &Path) -> String {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let st = child.wait().expect("avsense");
    let err = std::fs::read_to_string(log).unwrap_or_default();
    assert!(st.success(), "{st:?}: {err}");
    err
}

fn config(dir: &Path, port: u16, source: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("serve.toml");
    std::fs::write(
        &cfg,
        format!(
            "[pipeline]\nname = \"http-test\"\n\n{source}\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"{TOKEN_VAR}\"\n\n[[sink]]\nkind = \"jsonl\"\npath = \"{}\"\n{extra}",
            dir.join("events.jsonl").display()
        ),
    )
    .expect("config");
    cfg
}

fn metric(port: u16, name: &str, stream: &str) -> f64 {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"].contains("openmetrics-text"),
        "{:?}",
        r.headers
    );
    let text = String::from_utf8(r.body).expect("utf-8");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the Prometheus text-format parser reads /metrics");
    let value = |v: &prometheus_parse::Value| match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        _ => f64::NAN,
    };
    // Every family this build documents is there.
    for want in [
        "avsense_uptime_seconds",
        "avsense_stream_fps",
        "avsense_edge_sent_total",
        "avsense_messages_total",
        "avsense_process_resident_memory_bytes",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == want),
            "{want} missing:\n{text}"
        );
    }
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("stream") == Some(stream))
        .map(|s| value(&s.value))
        .unwrap_or_else(|| panic!("{name}{{stream={stream}}} missing:\n{text}"))
}

#[test]
fn a_live_run_serves_stats_events_live_events_metrics_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = config(
        dir.path(),
        port,
        "[[source]]\nname = \"cam\"\nkind = \"test\"\nlive = true\nduration = 120\n",
        "",
    );
    let log = dir.path().join("stderr.log");
    let mut child = start(&cfg, &[], &log);
    wait_listening(port, &mut child, &log);

    // Health needs no token; everything else does.
    let h = request(port, "GET", "/healthz", None);
    assert_eq!((h.status, h.json()["status"].as_str()), (200, Some("ok")));
    for (tok, what) in [(None, "no token"), (Some("wrong-token!"), "a wrong token")] {
        let r = request(port, "GET", "/api/stats", tok);
        assert_eq!(r.status, 401, "{what}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("bearer"),
            "{what}"
        );
        assert_eq!(request(port, "GET", "/metrics", tok).status, 401);
    }

    // Live events over SSE: at least three, each a JSON lifecycle message with an id.
    let mut sse = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sse.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        sse,
        "GET /api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(sse);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let mut live = Vec::new();
    let mut line = String::new();
    while live.len() < 3 {
        line.clear();
        assert!(
            reader.read_line(&mut line).expect("SSE line") > 0,
            "the stream ended"
        );
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).expect("JSON event");
            assert_eq!(v["schema"], "avsense.event/2");
            assert_eq!(v["id"].as_str().map(str::len), Some(36), "{v}");
            live.push(v);
        }
    }

    // The ring has them (filters, cursor paging).
    let all = get(port, "/api/events?limit=10000").json();
    let events = all["events"].as_array().unwrap().clone();
    assert!(events.len() >= 3, "{all}");
    for v in &live {
        assert!(
            events
                .iter()
                .any(|e| e["id"] == v["id"] && e["phase"] == v["phase"]),
            "{v} not in the ring"
        );
    }
    let cursor = all["cursor"].as_u64().unwrap();
    let first = get(port, "/api/events?limit=1&after=0").json();
    assert_eq!(first["events"].as_array().unwrap().len(), 1);
    let later = get(port, &format!("/api/events?after={cursor}")).json();
    assert!(later["cursor"].as_u64().unwrap() >= cursor);
    let kind = events[0]["kind"].as_str().unwrap();
    let only = get(
        port,
        &format!("/api/events?kind={kind}&stream=cam&limit=10000"),
    )
    .json();
    let only = only["events"].as_array().unwrap();
    assert!(!only.is_empty() && only.iter().all(|e| e["kind"] == kind));
    assert!(get(port, "/api/events?stream=nobody").json()["events"]
        .as_array()
        .unwrap()
        .is_empty());

    // Stats: the stream, its frames, the models' times, the edges.
    let s = get(port, "/api/stats").json();
    assert_eq!(s["running"], true);
    let cam = &s["streams"][0];
    assert_eq!(cam["name"], "cam");
    assert!(
        cam["frames"].as_u64().unwrap() > 0 && cam["live"] == true,
        "{s}"
    );
    assert!(cam["fps"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["edges"].as_array().unwrap().len() >= 3, "{s}");
    assert!(
        s["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["count"].as_u64() > Some(0)),
        "{s}"
    );

    // Metrics parse and their counters grow while the source runs.
    let a = metric(port, "avsense_stream_frames_total", "cam");
    std::thread::sleep(Duration::from_millis(1500));
    let b = metric(port, "avsense_stream_frames_total", "cam");
    assert!(b > a && a > 0.0, "frames {a} → {b}");

    // Bad requests: JSON errors with a 4xx status.
    for (method, path, status) in [
        ("GET", "/api/events?limit=abc", 400),
        ("GET", "/api/events?limit=0", 400),
        ("GET", "/api/events?after=-1", 400),
        ("GET", "/api/events?kind=unicorn", 400),
        ("GET", "/api/events?colour=red", 400),
        ("GET", "/api/events/stream?limit=3", 400),
        ("GET", "/api/events/no-such-id/snapshot.jpg", 404),
        ("GET", "/api/nothing", 404),
        ("POST", "/api/events", 405),
        ("DELETE", "/api/stats", 405),
    ] {
        let r = request(port, method, path, Some(TOKEN));
        assert_eq!(r.status, status, "{method} {path}");
        assert!(r.json()["error"].is_string(), "{method} {path}");
    }
    // Still serving after all that.
    assert_eq!(get(port, "/api/stats").status, 200);
    interrupt(child, &log);
}

#[test]
fn a_snapshot_is_served_with_the_box_where_the_event_says() {
    let Some(clip) = shared_media("av/person_sounds_dev.mp4") else {
        return;
    };
    // The dev clip's first 12 s: a person and a dog are confirmed by 7 s.
    let short = generate_once(&scratch("http").join("dev12.mp4"), |p| {
        ffmpeg(&[
            "-y",
            "-i",
            clip.to_str().unwrap(),
            "-t",
            "12",
            "-c",
            "copy",
            "-f",
            "mp4",
            p.to_str().unwrap(),
        ]);
    });
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = config(
        dir.path(),
        port,
        &format!(
            "[[source]]\nname = \"dev\"\nkind = \"file\"\npath = \"{}\"\n",
            short.display()
        ),
        "\n[snapshots]\nenabled = true\n",
    );
    let log = dir.path().join("stderr.log");
    let mut child = start(&cfg, &["--serve"], &log);
    wait_listening(port, &mut child, &log);
    wait_for(Duration::from_secs(240), "the run to end", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("serving http://"))
    });

    let ends = get(port, "/api/events?kind=object&phase=end").json();
    let ends = ends["events"].as_array().unwrap().clone();
    let person = ends
        .iter()
        .find(|e| e["labels"][0]["name"] == "person")
        .unwrap_or_else(|| panic!("a person's end message: {ends:?}"));
    let snap = &person["snapshot"];
    let (w, h) = (
        snap["width"].as_u64().unwrap(),
        snap["height"].as_u64().unwrap(),
    );
    assert!(Path::new(snap["path"].as_str().unwrap()).starts_with(dir.path().join("snapshots")));
    let id = person["id"].as_str().unwrap();
    let r = get(port, &format!("/api/events/{id}/snapshot.jpg"));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "image/jpeg");
    let mut dec = jpeg_decoder::Decoder::new(&r.body[..]);
    let px = dec.decode().expect("a JPEG");
    let info = dec.info().unwrap();
    assert_eq!((info.width as u64, info.height as u64), (w, h));
    // The box is drawn where the event says: green on its edges, not inside it.
    let b: Vec<f64> = snap["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let at = |x: f64, y: f64| {
        let i =
            ((y as usize).min(h as usize - 1) * w as usize + (x as usize).min(w as usize - 1)) * 3;
        [px[i], px[i + 1], px[i + 2]]
    };
    let green = |p: [u8; 3]| p[1] > 170 && p[0] < 100 && p[2] < 100;
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    let edges = [
        (cx, b[1] + 1.0),
        (cx, b[3] - 1.0),
        (b[0] + 1.0, cy),
        (b[2] - 1.0, cy),
    ];
    for (x, y) in edges {
        assert!(
            green(at(x, y)),
            "no box at ({x}, {y}): {:?} (bbox {b:?})",
            at(x, y)
        );
    }
    let inside = (0..20)
        .filter(|i| green(at(b[0] + (b[2] - b[0]) * (0.3 + 0.02 * *i as f64), cy)))
        .count();
    assert!(
        inside < 4,
        "the box's inside is not painted ({inside} of 20 green)"
    );
    // The same file, in the ring and on disk; the JSONL sink names it too.
    let jsonl = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    assert!(jsonl.contains(&format!("{id}.jpg")));
    // An event without a snapshot says so.
    let sound = get(port, "/api/events?kind=sound&phase=end&limit=1").json();
    if let Some(s) = sound["events"].as_array().unwrap().first() {
        let r = get(
            port,
            &format!("/api/events/{}/snapshot.jpg", s["id"].as_str().unwrap()),
        );
        assert_eq!(r.status, 404);
        assert!(r.json()["error"].as_str().unwrap().contains("no snapshot"));
    }
    interrupt(child, &log);
}

#[test]
fn the_serve_example_pipeline_runs_and_serves() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/serve.toml");
    let log = dir.path().join("stderr.log");
    // The example as shipped, on a free port instead of 5000 (and its snapshots here).
    let mut child = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q"])
        .arg(&cfg)
        .args(["--http", &port.to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("run avsense");
    wait_listening(port, &mut child, &log);
    wait_for(Duration::from_secs(60), "frames in /api/stats", || {
        let r = request(port, "GET", "/api/stats", None);
        r.status == 200 && r.json()["streams"][0]["frames"].as_u64() > Some(0)
    });
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains(&format!("HTTP API on http://127.0.0.1:{port}")));
    interrupt(child, &log);
}
