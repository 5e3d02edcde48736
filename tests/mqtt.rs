//! The MQTT sink against a real broker: Debian's `mosquitto`, started by each test on a
//! free loopback port, and a real subscriber (`mosquitto_sub` with a persistent session).
//! Checks the lifecycle messages against the JSONL sink of the same run, the state topics,
//! Home Assistant discovery, the last will on `kill -9`, and that a broker stopped for 10 s
//! in the middle of a live run loses nothing.
#![cfg(feature = "mqtt")]
mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether mosquitto and its clients are installed; panics under CI=true when not.
fn mosquitto_ready() -> bool {
    tool_ready(
        have("mosquitto") && have("mosquitto_sub") && have("mosquitto_pub"),
        "mosquitto / mosquitto-clients are not installed (.ci/install-system-packages installs them)",
    )
}

/// A mosquitto broker with persistence (a subscriber's session and its queued messages
/// survive a restart).
struct Broker {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let port = free_port();
        let data = dir.join("broker-data");
        std::fs::create_dir_all(&data).expect("broker dir");
        // Started as root, mosquitto drops to its own user: let it write its sessions.
        use std::os::unix::fs::PermissionsExt;
        for d in [dir, data.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\n",
                data.display()
            ),
        )
        .expect("broker config");
        let mut b = Broker {
            child: None,
            port,
            conf,
        };
        b.restart();
        b
    }

    fn restart(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(10), "mosquitto to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops it the way a service manager does (SIGTERM: it saves its sessions).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A message as the subscriber saw it.
#[derive(Debug, Clone)]
struct Msg {
    retained: bool,
    topic: String,
    payload: String,
}

/// `mosquitto_sub` on `#` with a persistent session (QoS 1, clean session off): it
/// reconnects by itself after a broker restart and gets what was queued for it meanwhile.
struct Subscriber {
    child: Child,
    got: Arc<Mutex<Vec<Msg>>>,
}

impl Subscriber {
    fn start(b: &Broker, id: &str) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &b.port.to_string()])
            .args(["-t", "#", "-q", "1", "-c", "-i", id, "-F", "%r\t%t\t%p"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto_sub");
        let out = child.stdout.take().expect("sub stdout");
        let got: Arc<Mutex<Vec<Msg>>> = Arc::default();
        let g = Arc::clone(&got);
        std::thread::spawn(move || {
            // Bytes, not text: snapshot payloads are JPEGs (their lines are noise here).
            for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line);
                let mut it = line.splitn(3, '\t');
                let (Some(r), Some(t), Some(p)) = (it.next(), it.next(), it.next()) else {
                    continue;
                };
                g.lock().unwrap().push(Msg {
                    retained: r == "1",
                    topic: t.into(),
                    payload: p.into(),
                });
            }
        });
        let s = Subscriber { child, got };
        // Subscribed once a probe published after it arrives.
        let port = b.port.to_string();
        wait_for(Duration::from_secs(10), "the subscriber", || {
            let _ = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "probe", "-m", "x"])
                .status();
            s.got.lock().unwrap().iter().any(|m| m.topic == "probe")
        });
        s
    }

    fn messages(&self) -> Vec<Msg> {
        self.got.lock().unwrap().clone()
    }

    fn on(&self, topic: &str) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// 9 s of the dev clip from 5 s: a person appears (~1.6 s), someone speaks (~3 s).
fn dev_excerpt() -> Option<PathBuf> {
    let clip = shared_media("av/person_sounds_dev.mp4")?;
    let out = scratch("mqtt").join("dev_5_14.mp4");
    generate_once(&out, |tmp| {
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-ss", "5", "-t", "9", "-i"])
            .arg(&clip)
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-f",
                "mp4",
            ])
            .arg(tmp)
            .status()
            .expect("ffmpeg");
        assert!(st.success(), "ffmpeg cut");
    });
    Some(out)
}

#[test]
fn mqtt_carries_the_lifecycle_the_states_and_home_assistant_discovery() {
    if !mosquitto_ready() {
        return;
    }
    let Some(clip) = dev_excerpt() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start(dir.path());
    let sub = Subscriber::start(&broker, "sub-lifecycle");
    let events = dir.path().join("events.jsonl");
    let cfg = dir.path().join("mqtt.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[pipeline]
name = "mqtt-test"

[[source]]
name = "Front Door"
kind = "file"
path = "{clip}"

[[sink]]
kind = "jsonl"
path = "{events}"

[[sink]]
kind = "mqtt"
port = {port}
discovery = true
spool = "{spool}"

[snapshots]
enabled = true
dir = "{snaps}"
"#,
            clip = clip.display(),
            events = events.display(),
            port = broker.port,
            spool = dir.path().join("spool").display(),
            snaps = dir.path().join("snapshots").display(),
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q"])
        .arg(&cfg)
        .output()
        .expect("run avsense");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let want = lines(&events);
    assert!(want.len() >= 10, "too few events: {want:?}");
    wait_for(
        Duration::from_secs(10),
        "every event on avsense/events",
        || sub.on("avsense/events").len() >= want.len(),
    );
    // The same messages, in the same order, none twice.
    let got: Vec<String> = sub
        .on("avsense/events")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(got, want);
    eprintln!(
        "{} lifecycle messages on avsense/events = the JSONL sink's",
        got.len()
    );
    // Lifecycle: every event with a start has it before its end, with the same id.
    let msgs: Vec<serde_json::Value> = got.iter().map(|l| json(l)).collect();
    let mut started = HashSet::new();
    for m in &msgs {
        let id = m["id"].as_str().expect("id").to_string();
        match m["phase"].as_str() {
            Some("start") => assert!(started.insert(id), "two starts: {m}"),
            Some("end") => {
                if ["object", "sound", "speech", "motion", "active_speaker"]
                    .contains(&m["kind"].as_str().unwrap_or(""))
                {
                    assert!(started.remove(&id), "an end without its start: {m}");
                }
            }
            other => panic!("phase {other:?}: {m}"),
        }
    }
    assert!(started.is_empty(), "starts without an end: {started:?}");
    // A sound and its association name each other.
    let by_id: HashMap<&str, &serde_json::Value> = msgs
        .iter()
        .filter(|m| m["phase"] == "end")
        .map(|m| (m["id"].as_str().unwrap_or(""), m))
        .collect();
    let assoc = msgs
        .iter()
        .find(|m| m["kind"] == "sound_source" || m["kind"] == "offscreen_sound")
        .expect("an association");
    let sound = by_id[assoc["related"][0].as_str().expect("related")];
    assert_eq!(sound["kind"], "sound");
    assert_eq!(sound["related"][0], assoc["id"]);
    // State topics: retained ON → OFF for the person and the speech.
    for topic in ["avsense/front_door/person", "avsense/front_door/speech"] {
        let states = sub.on(topic);
        assert!(!states.is_empty(), "no {topic}");
        for (i, m) in states.iter().enumerate() {
            let want = if i % 2 == 0 { "ON" } else { "OFF" };
            assert_eq!(m.payload, want, "{topic}: {states:?}");
        }
        assert_eq!(
            states.last().map(|m| m.payload.as_str()),
            Some("OFF"),
            "{topic}"
        );
    }
    // Retained: a subscriber that comes later gets the last state.
    let late = Subscriber::start(&broker, "sub-late-states");
    wait_for(Duration::from_secs(5), "the retained person state", || {
        late.on("avsense/front_door/person")
            .iter()
            .any(|m| m.retained && m.payload == "OFF")
    });
    assert!(!sub.on("avsense/front_door/audio/dBFS").is_empty());
    // Home Assistant discovery: the keys its MQTT binary_sensor / sensor schemas require
    // (state_topic; the others are what makes the entities usable and unique).
    let disc = sub.on("homeassistant/binary_sensor/avsense_front_door_person/config");
    let d = json(&disc.first().expect("person discovery").payload);
    for k in [
        "name",
        "unique_id",
        "state_topic",
        "payload_on",
        "payload_off",
        "availability_topic",
        "device_class",
    ] {
        assert!(d.get(k).is_some(), "discovery lacks {k}: {d}");
    }
    assert_eq!(d["state_topic"], "avsense/front_door/person");
    assert!(d["device"]["identifiers"].is_array());
    let level = sub.on("homeassistant/sensor/avsense_front_door_sound_level/config");
    let l = json(&level.first().expect("sensor discovery").payload);
    assert_eq!(l["state_topic"], "avsense/front_door/audio/dBFS");
    assert_eq!(l["unit_of_measurement"], "dBFS");
    for id in ["speech", "active_speaker", "offscreen_sound", "motion"] {
        assert!(
            !sub.on(&format!(
                "homeassistant/binary_sensor/avsense_front_door_{id}/config"
            ))
            .is_empty(),
            "no discovery for {id}"
        );
    }
    // Snapshots: the newest person snapshot, retained on <stream>/person/snapshot, is the
    // JPEG file the last such end message names.
    let newest = want
        .iter()
        .rev()
        .map(|l| json(l))
        .find(|m| {
            m["phase"] == "end"
                && m["snapshot"].is_object()
                && (m["kind"] == "object" && m["labels"][0]["name"] == "person"
                    || m["kind"] == "sound_source"
                        && m["evidence"]["association"]["class"] == "person")
        })
        .expect("a person's end message with a snapshot");
    let file = std::fs::read(newest["snapshot"]["path"].as_str().unwrap()).expect("the snapshot");
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args([
            "-t",
            "avsense/front_door/person/snapshot",
            "-C",
            "1",
            "-W",
            "10",
            "-F",
            "%x",
        ])
        .output()
        .expect("mosquitto_sub");
    let hex = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let retained: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert!(
        retained == file,
        "the retained snapshot ({} bytes) is the newest file ({} bytes)",
        retained.len(),
        file.len()
    );
    assert_eq!(&retained[..2], &[0xFF, 0xD8], "a JPEG");
    // Availability: online while running, offline after a clean stop.
    let avail: Vec<String> = sub
        .on("avsense/available")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(avail.first().map(String::as_str), Some("online"));
    assert_eq!(avail.last().map(String::as_str), Some("offline"));
    drop(broker);
}

fn live_config(dir: &Path, port: u16, seconds: f64) -> PathBuf {
    let cfg = dir.join("live.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[pipeline]
name = "outage"

[[source]]
name = "cam"
kind = "test"
live = true
duration = {seconds}

[[sink]]
kind = "jsonl"
path = "{events}"

[[sink]]
kind = "mqtt"
port = {port}
client_id = "avsense-outage"
spool = "{spool}"
drain_timeout = 30
"#,
            events = dir.join("events.jsonl").display(),
            spool = dir.join("spool").display(),
        ),
    )
    .expect("config");
    cfg
}

/// A broker, a subscriber (`sub_id`) and `avsense run` on a live test source of `seconds`
/// publishing to it (stderr piped).
fn live_run(dir: &Path, sub_id: &str, seconds: f64) -> (Broker, Subscriber, Child) {
    let broker = Broker::start(dir);
    let sub = Subscriber::start(&broker, sub_id);
    let cfg = live_config(dir, broker.port, seconds);
    let child = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run avsense");
    (broker, sub, child)
}

#[test]
fn a_broker_down_for_ten_seconds_loses_nothing() {
    if !mosquitto_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (mut broker, sub, mut child) = live_run(dir.path(), "sub-outage", 24.0);
    let events = dir.path().join("events.jsonl");
    // Some events through the broker, then 10 s without it while events keep coming.
    wait_for(Duration::from_secs(60), "events before the outage", || {
        sub.on("avsense/events").len() >= 3
    });
    broker.stop();
    let during_from = lines(&events).len();
    std::thread::sleep(Duration::from_secs(10));
    let during = lines(&events).len() - during_from;
    broker.restart();
    let st = child.wait().expect("avsense");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(st.success(), "{st:?}: {err}");
    assert!(
        during >= 3,
        "the outage must have had events: {during}\n{err}"
    );
    let want = lines(&events);
    let key = |l: &str| {
        let v = json(l);
        (
            v["id"].as_str().unwrap_or("").to_string(),
            v["phase"].as_str().unwrap_or("").to_string(),
        )
    };
    let distinct = |v: &[String]| v.iter().map(|l| key(l)).collect::<HashSet<_>>().len();
    wait_for(Duration::from_secs(30), "the backlog", || {
        let got: Vec<String> = sub
            .on("avsense/events")
            .into_iter()
            .map(|m| m.payload)
            .collect();
        distinct(&got) >= want.len()
    });
    std::thread::sleep(Duration::from_millis(500));
    let got: Vec<String> = sub
        .on("avsense/events")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    // At-least-once (QoS 1): a message in flight when the broker went away may come twice;
    // consumers drop a repeated (id, phase). After that: every message, once, in order.
    let mut seen = HashSet::new();
    let once: Vec<String> = got
        .iter()
        .filter(|l| seen.insert(key(l)))
        .cloned()
        .collect();
    let repeats = got.len() - once.len();
    assert_eq!(once, want, "every message, in order");
    // Only messages already published before the stop (in flight when it went away) can
    // come twice: each one produced while the broker was down, or after, arrives once.
    let mut count: HashMap<(String, String), usize> = HashMap::new();
    for l in &got {
        *count.entry(key(l)).or_insert(0) += 1;
    }
    for (i, l) in want.iter().enumerate().skip(during_from) {
        assert_eq!(
            count[&key(l)],
            1,
            "message {i} (produced at or after the stop, {during_from} before it) arrived more than once: {l}"
        );
    }
    assert!(
        repeats <= 64,
        "{repeats} repeats: more than could have been in flight (the publisher's window is 64)"
    );
    eprintln!(
        "outage: {} messages in all, {during} produced while the broker was down; all delivered in order, each produced at or after the stop exactly once; {repeats} published before the stop (in flight) delivered twice",
        want.len()
    );
    assert!(
        err.contains("messages wait in the spool"),
        "the outage is reported: {err}"
    );
}

#[test]
fn the_last_will_says_offline_when_avsense_is_killed() {
    if !mosquitto_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, sub, mut child) = live_run(dir.path(), "sub-will", 60.0);
    wait_for(Duration::from_secs(60), "online", || {
        sub.on("avsense/available")
            .last()
            .is_some_and(|m| m.payload == "online")
    });
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    wait_for(Duration::from_secs(20), "the last will", || {
        sub.on("avsense/available")
            .last()
            .is_some_and(|m| m.payload == "offline")
    });
    // Retained: a subscriber that comes later learns it too.
    let late = Subscriber::start(&broker, "sub-late");
    wait_for(Duration::from_secs(5), "the retained offline", || {
        late.on("avsense/available")
            .iter()
            .any(|m| m.retained && m.payload == "offline")
    });
}

/// Runs `cmd`, panicking with its stderr when it fails (fixture generation).
fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run a fixture command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_and_credentials_from_the_environment() {
    if !mosquitto_ready() || !have("openssl") || !have("mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A CA and a server certificate for 127.0.0.1 (an IP SAN: rustls checks it).
    sh(Command::new("openssl")
        .current_dir(d)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=avsense test CA",
        ]));
    sh(Command::new("openssl")
        .current_dir(d)
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
        ])
        .args(["-out", "server.csr", "-subj", "/CN=127.0.0.1"]));
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    sh(Command::new("openssl")
        .current_dir(d)
        .args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
        ])
        .args([
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]));
    sh(Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(d.join("passwd"))
        .args(["cam", "s3cret-pw"]));
    for f in ["server.key", "passwd"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let port = free_port();
    let conf = d.join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nallow_anonymous false\npassword_file {d}/passwd\n",
            d = d.display()
        ),
    )
    .expect("conf");
    let mut broker = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    wait_for(Duration::from_secs(10), "the TLS listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cafile"])
        .arg(d.join("ca.crt"))
        .args([
            "-u",
            "cam",
            "-P",
            "s3cret-pw",
            "-t",
            "avsense/events",
            "-q",
            "1",
            "-C",
            "3",
            "-W",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(500));
    let config = |password_env: &str| {
        let cfg = d.join(format!("{password_env}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[[source]]\nname = \"t\"\nkind = \"test\"\nduration = 4.0\n\n[[sink]]\nkind = \"mqtt\"\nport = {port}\ntls = true\nca_file = \"{ca}\"\nusername = \"cam\"\npassword_env = \"{password_env}\"\nspool = \"{spool}\"\ndrain_timeout = 2\n",
                ca = d.join("ca.crt").display(),
                spool = d.join(format!("spool-{password_env}")).display(),
            ),
        )
        .expect("config");
        cfg
    };
    let run = |var: &str, value: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_avsense"));
        cmd.args(["run", "-q"]).arg(config(var));
        match value {
            Some(v) => cmd.env(var, v),
            None => cmd.env_remove(var),
        };
        let out = cmd.output().expect("avsense");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The right password (from the environment): events arrive over TLS.
    let (st, err) = run("AVSENSE_TEST_MQTT_PW", Some("s3cret-pw"));
    assert!(st.success(), "{err}");
    let got = sub.wait_with_output().expect("sub");
    let lines = String::from_utf8_lossy(&got.stdout).lines().count();
    assert_eq!(lines, 3, "three events over TLS: {err}");
    // A wrong one: the run goes on, says why it cannot connect, never prints the password.
    let (st, err) = run("AVSENSE_TEST_MQTT_BAD", Some("wrong-pw-123"));
    assert!(
        st.success(),
        "the broker refusing is not a failed run: {err}"
    );
    assert!(err.contains("cannot connect"), "{err}");
    assert!(err.contains("in the spool"), "{err}");
    assert!(
        !err.contains("wrong-pw-123") && !err.contains("s3cret"),
        "{err}"
    );
    // No variable at all: refused at start, naming it.
    let (st, err) = run("AVSENSE_TEST_MQTT_UNSET", None);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("AVSENSE_TEST_MQTT_UNSET"), "{err}");
    let _ = broker.kill();
    let _ = broker.wait();
}

#[test]
fn the_mqtt_example_pipeline_runs() {
    if !mosquitto_ready() {
        return;
    }
    let Some(clip) = dev_excerpt() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start(dir.path());
    let sub = Subscriber::start(&broker, "sub-example");
    // pipelines/mqtt.toml as shipped, but for the broker's port, a short clip instead of
    // the example film, and the spool in the test's directory.
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/mqtt.toml"))
            .expect("pipelines/mqtt.toml");
    let mut text = String::new();
    for line in shipped.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        text.push_str(&match key {
            "port" => format!("port = {}", broker.port),
            "path" => format!("path = \"{}\"", clip.display()),
            "spool" => format!("spool = \"{}\"", dir.path().join("spool").display()),
            _ => line.to_string(),
        });
        text.push('\n');
    }
    assert!(text.contains(&format!("port = {}", broker.port)) && text.contains("discovery = true"));
    let cfg = dir.path().join("mqtt.toml");
    std::fs::write(&cfg, text).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_avsense"))
        .args(["run", "-q"])
        .arg(&cfg)
        .output()
        .expect("run avsense");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its stdout sink: one line per finished event; the broker got those and more.
    let ends = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(ends >= 3, "{ends} end lines");
    wait_for(Duration::from_secs(10), "the example's messages", || {
        sub.on("avsense/events").len() > ends
    });
    assert!(!sub
        .on("homeassistant/binary_sensor/avsense_bunny_person/config")
        .is_empty());
    drop(broker);
}
