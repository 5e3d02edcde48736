//! Live cameras on the fleet: a camera (`avsense submit --live NAME …`) is a record in the
//! `avsense_cameras` bucket; a worker with free live slots takes one by creating its key in
//! the `avsense_leases` bucket (whose entries expire `lease_ttl` after their last write),
//! runs its pipeline with the NATS sink, and renews the lease every third of the TTL. A
//! worker that dies stops renewing: the entry expires and another worker's `create`
//! succeeds, so the camera is back within the TTL plus one scan (half a second) plus its
//! pipeline's start. The holder also writes when it last had the camera
//! (`avsense_camera_seen`); a worker that takes a camera someone had before publishes a
//! `stream_gap` event for the hole (wall-clock times, since the new run's timeline starts at
//! its own start).

use super::{FleetConfig, FleetError, WorkerOptions};
use async_nats::jetstream::{self, kv};
use avsense::sink::nats::{NatsSettings, NatsSink};
use avsense::sink::{EventSink, Phases};
use avsense::{Event, EventKind, PipelineConfig};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A live camera of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    /// Its name (the key).
    pub name: String,
    /// A URI (`rtsp://…`) run with default settings, when no pipeline is given.
    #[serde(default)]
    pub input: Option<String>,
    /// A pipeline config whose sources are the camera.
    #[serde(default)]
    pub pipeline: Option<String>,
}

/// A lease's value: who holds the camera, since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder.
    pub worker: String,
    /// Unix seconds when it took the camera.
    pub since: f64,
}

/// When a camera's holder last had it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    worker: String,
    at: f64,
}

/// The live buckets.
#[derive(Clone)]
pub struct Buckets {
    cameras: kv::Store,
    leases: kv::Store,
    seen: kv::Store,
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    max_age: Duration,
) -> Result<kv::Store, async_nats::Error> {
    if let Ok(kv) = js.get_key_value(name).await {
        return Ok(kv);
    }
    Ok(js
        .create_key_value(kv::Config {
            bucket: name.into(),
            history: 1,
            max_age,
            num_replicas: replicas.max(1),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?)
}

impl FleetConfig {
    /// The live buckets (made when missing; the leases' TTL is set when they are made).
    pub async fn live_buckets(&self, js: &jetstream::Context) -> Result<Buckets, FleetError> {
        let mut tries = 0;
        loop {
            let made = async {
                Ok::<_, async_nats::Error>(Buckets {
                    cameras: bucket(js, "avsense_cameras", self.replicas, Duration::ZERO).await?,
                    leases: bucket(js, "avsense_leases", self.replicas, self.lease_ttl).await?,
                    seen: bucket(js, "avsense_camera_seen", self.replicas, Duration::ZERO).await?,
                })
            }
            .await;
            match made {
                Ok(b) => return Ok(b),
                Err(e) if tries < 40 => {
                    tracing::debug!("live buckets: {e}");
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(self.err("creating the live buckets")(e)),
            }
        }
    }
}

/// Adds (or replaces) a camera.
pub async fn add_camera(fleet: &FleetConfig, camera: &Camera) -> Result<(), FleetError> {
    let js = fleet.connect().await?;
    let b = fleet.live_buckets(&js).await?;
    let bytes = serde_json::to_vec(camera).map_err(|e| fleet.err("camera json")(e.into()))?;
    b.cameras
        .put(&camera.name, bytes.into())
        .await
        .map_err(|e| fleet.err(format!("camera {}", camera.name))(e.into()))?;
    Ok(())
}

/// Every camera with its lease, if held.
pub async fn cameras(fleet: &FleetConfig) -> Result<Vec<(Camera, Option<Lease>)>, FleetError> {
    let js = fleet.connect().await?;
    let b = fleet.live_buckets(&js).await?;
    let list = super::retrying("listing cameras", Duration::from_secs(30), || async {
        let mut out = Vec::new();
        let mut keys = b.cameras.keys().await?;
        while let Some(k) = keys.next().await {
            let k = k?;
            let Some(v) = b.cameras.get(&k).await? else {
                continue;
            };
            let Ok(cam) = serde_json::from_slice::<Camera>(&v) else {
                continue;
            };
            let lease = b
                .leases
                .get(&k)
                .await?
                .and_then(|v| serde_json::from_slice::<Lease>(&v).ok());
            out.push((cam, lease));
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok::<_, async_nats::Error>(out)
    })
    .await;
    list.map_err(fleet.err("listing cameras"))
}

/// A camera this worker runs.
struct Held {
    revision: u64,
    renew_at: Instant,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// Takes and renews camera leases beside the job loop until `stop`; `held` counts the
/// cameras it runs (the worker does not exit idle while it holds one).
pub async fn hold_cameras(
    o: WorkerOptions,
    b: Buckets,
    stop: Arc<AtomicBool>,
    held_count: Arc<AtomicUsize>,
) {
    let mut held: HashMap<String, Held> = HashMap::new();
    let renew_every = (o.fleet.lease_ttl / 3).max(Duration::from_millis(200));
    while !stop.load(Ordering::SeqCst) {
        // Renew (or notice the end of) what we hold.
        let names: Vec<String> = held.keys().cloned().collect();
        for name in names {
            let Some(h) = held.get_mut(&name) else {
                continue;
            };
            if h.thread.is_finished() {
                tracing::info!("worker {}: camera {name}: its pipeline ended", o.name);
                let _ = b.leases.delete(&name).await;
                held.remove(&name);
                continue;
            }
            if Instant::now() < h.renew_at {
                continue;
            }
            let lease = lease_bytes(&o.name);
            match b.leases.update(&name, lease.into(), h.revision).await {
                Ok(rev) => {
                    h.revision = rev;
                    h.renew_at = Instant::now() + renew_every;
                    let seen = serde_json::to_vec(&Seen {
                        worker: o.name.clone(),
                        at: super::now(),
                    })
                    .unwrap_or_default();
                    let _ = b.seen.put(&name, seen.into()).await;
                }
                Err(e) => {
                    // Expired (we were too slow) or taken: someone else may run it now.
                    tracing::warn!("worker {}: camera {name}: lease lost: {e}", o.name);
                    h.stop.store(true, Ordering::SeqCst);
                    held.remove(&name);
                }
            }
        }
        // Take free cameras while there are slots.
        if held.len() < o.live_slots {
            if let Ok(mut keys) = b.cameras.keys().await {
                let mut names = Vec::new();
                while let Some(Ok(k)) = keys.next().await {
                    names.push(k);
                }
                for name in names {
                    if held.len() >= o.live_slots || held.contains_key(&name) {
                        continue;
                    }
                    let Ok(rev) = b.leases.create(&name, lease_bytes(&o.name).into()).await else {
                        continue;
                    };
                    match start_camera(&o, &b, &name).await {
                        Ok((stop_flag, thread)) => {
                            tracing::info!("worker {}: camera {name}: taken", o.name);
                            held.insert(
                                name,
                                Held {
                                    revision: rev,
                                    renew_at: Instant::now() + renew_every,
                                    stop: stop_flag,
                                    thread,
                                },
                            );
                        }
                        Err(e) => {
                            tracing::warn!("worker {}: camera {name}: {e}", o.name);
                            let _ = b.leases.delete(&name).await;
                        }
                    }
                }
            }
        }
        held_count.store(held.len(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Stopping: end every camera's pipeline and give its lease back at once.
    for (name, h) in held.drain() {
        h.stop.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || h.thread.join()).await;
        let _ = b.leases.delete(&name).await;
    }
    held_count.store(0, Ordering::SeqCst);
}

fn lease_bytes(worker: &str) -> Vec<u8> {
    serde_json::to_vec(&Lease {
        worker: worker.into(),
        since: super::now(),
    })
    .unwrap_or_default()
}

/// Starts camera `name`'s pipeline on a thread (with a `stream_gap` first when someone
/// had it before); returns its stop flag and thread.
async fn start_camera(
    o: &WorkerOptions,
    b: &Buckets,
    name: &str,
) -> Result<(Arc<AtomicBool>, std::thread::JoinHandle<()>), String> {
    let cam: Camera = match b.cameras.get(name).await {
        Ok(Some(v)) => serde_json::from_slice(&v).map_err(|e| format!("camera record: {e}"))?,
        Ok(None) => return Err("removed".into()),
        Err(e) => return Err(e.to_string()),
    };
    let mut cfg = match (&cam.pipeline, &cam.input) {
        (Some(p), _) => PipelineConfig::load(std::path::Path::new(p)).map_err(|e| e.to_string())?,
        (None, Some(uri)) => PipelineConfig::for_input(uri, None).map_err(|e| e.to_string())?,
        (None, None) => return Err("neither a pipeline nor an input".into()),
    };
    cfg.sinks.clear();
    let seen: Option<Seen> = b
        .seen
        .get(name)
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice(&v).ok());
    let mut settings = NatsSettings::new(&o.fleet.url, &o.fleet.site, camera_spool(&o.spool, name));
    settings.replicas = o.fleet.replicas.max(1);
    settings.msg_id_prefix = format!("camera/{}/", avsense::sink::topic_level(name));
    settings.username = o.fleet.username.clone();
    settings.password_env = o.fleet.password_env.clone();
    let mut sink = NatsSink::open(settings, Phases::ALL).map_err(|e| e.to_string())?;
    if let Some(seen) = seen {
        let now = super::now();
        let stream = cfg
            .sources
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| name.to_string());
        let mut e = Event::new(EventKind::StreamGap, &stream, 0.0, 0.0, 1.0);
        e.id = super::job_id();
        e.wall_time = Some(avsense::core::latency::rfc3339(seen.at));
        e.evidence.error = Some(format!(
            "camera {name} taken over by worker {} from worker {}: no data from {} to {} ({:.1} s)",
            o.name,
            seen.worker,
            avsense::core::latency::rfc3339(seen.at),
            avsense::core::latency::rfc3339(now),
            now - seen.at
        ));
        sink.write(&e).map_err(|e| e.to_string())?;
    }
    let pipeline = avsense::Pipeline::new(cfg).map_err(|e| e.to_string())?;
    let running = pipeline
        .start(vec![Box::new(sink)])
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let label = format!("worker {} camera {name}", o.name);
    let thread = std::thread::spawn(move || {
        let mut stopping = false;
        while !running.is_finished() {
            if !stopping && flag.load(Ordering::SeqCst) {
                stopping = true;
                running.stop();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = running.wait() {
            tracing::warn!("{label}: {e}");
        }
    });
    Ok((stop, thread))
}

/// Where a worker's spool for camera `name` goes.
pub fn camera_spool(spool: &std::path::Path, name: &str) -> PathBuf {
    spool.join(format!("camera-{}", avsense::sink::topic_level(name)))
}
