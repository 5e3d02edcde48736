//! Scale-out on NATS JetStream (cargo feature `nats`): a fleet of `avsense worker`s takes
//! jobs (recorded files) from a work-queue stream, runs the pipeline on each and publishes
//! the events through the NATS sink; `avsense submit` puts jobs, `avsense jobs` shows
//! their states.
//!
//! ```text
//! avsense submit ──▶ AVSENSE_JOBS      avsense_jobs.<site>   work queue, replicas R,
//!                     (job JSON, msg id = job id)            de-duplicated by job id
//!                          │ durable pull consumer "workers-<site>" (explicit ack,
//!                          ▼ ack wait, max deliver N)
//!                    avsense worker ×K ── runs the pipeline ──▶ AVSENSE_EVENTS
//!                     · "in progress" acks while it works       avsense.<site>.<stream>.<kind>
//!                     · acks after every event is stored        msg id = <job id>/<event id>:<phase>
//!                     · fails N times ──▶ AVSENSE_DEAD  avsense_dead.<site> (job + error)
//!                    KV avsense_jobs: <job id> → {state, file, worker, deliveries, error, …}
//! ```
//!
//! Live cameras: `avsense submit --live NAME` records a camera; workers with `--live-slots`
//! hold cameras under leases that expire when not renewed (see [`live`]).
//!
//! A worker killed mid-job never acks it: JetStream delivers it again after the ack wait,
//! to whichever worker asks next, which runs the file from the start. Its events are the
//! same (a recorded file's event ids are reproducible, and the message id carries the job
//! id), so the ones the dead worker had already published are dropped by the events
//! stream's duplicate window: a consumer of the event stream sees every event once.

pub mod jobs;
pub mod live;
pub mod worker;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the fleet commands.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The NATS connection or a JetStream request failed.
    #[error("nats {url}: {what}")]
    Nats {
        /// The server URL(s).
        url: String,
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// Connect options (credentials) are wrong.
    #[error("nats options")]
    Options(#[from] avsense::sink::nats::NatsError),
    /// A submitted input does not exist or matches nothing.
    #[error("submit {input}: {reason}")]
    Input {
        /// The input as given.
        input: String,
        /// Why.
        reason: String,
    },
    /// The tokio runtime could not start.
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
}

/// Where the fleet lives: the servers, the site, the replicas of what it creates.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Server URLs, comma-separated.
    pub url: String,
    /// The site: jobs on `avsense_jobs.<site>`, events on `avsense.<site>.…`.
    pub site: String,
    /// Replicas of the streams and buckets it creates (1, or 3 on a 3-node cluster).
    pub replicas: usize,
    /// User name, when the server wants one.
    pub username: Option<String>,
    /// The environment variable with the password (or, without a user, a token).
    pub password_env: Option<String>,
    /// A camera lease's time to live (set when the lease bucket is made).
    pub lease_ttl: Duration,
}

impl FleetConfig {
    /// The jobs subject of the site.
    pub fn jobs_subject(&self) -> String {
        format!(
            "avsense_jobs.{}",
            avsense::sink::nats::subject_token(&self.site)
        )
    }

    /// The dead-letter subject of the site.
    pub fn dead_subject(&self) -> String {
        format!(
            "avsense_dead.{}",
            avsense::sink::nats::subject_token(&self.site)
        )
    }

    /// The durable consumer the site's workers share.
    pub fn consumer_name(&self) -> String {
        format!("workers-{}", avsense::sink::nats::subject_token(&self.site))
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> FleetError {
        let (url, what) = (self.url.clone(), what.into());
        move |source| FleetError::Nats { url, what, source }
    }

    /// Connects (waiting for the servers when they are not up yet).
    pub async fn connect(&self) -> Result<jetstream::Context, FleetError> {
        let options = avsense::sink::nats::connect_options(
            self.username.as_deref(),
            self.password_env.as_deref(),
            None,
        )?;
        let client = options
            .connect(avsense::sink::nats::server_list(&self.url))
            .await
            .map_err(|e| self.err("connect")(e.into()))?;
        Ok(jetstream::new(client))
    }

    /// Makes sure the jobs stream, the dead-letter stream and the job-state bucket exist.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<Store, FleetError> {
        let r = self.replicas.max(1);
        let retry = |d: u64| tokio::time::sleep(Duration::from_millis(d));
        // A cluster that has just started may not have elected its JetStream leader yet.
        let mut tries = 0;
        loop {
            let res = async {
                js.get_or_create_stream(jetstream::stream::Config {
                    name: "AVSENSE_JOBS".into(),
                    subjects: vec!["avsense_jobs.>".into()],
                    retention: jetstream::stream::RetentionPolicy::WorkQueue,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: r,
                    duplicate_window: Duration::from_secs(3600),
                    ..Default::default()
                })
                .await
                .map_err(async_nats::Error::from)?;
                js.get_or_create_stream(jetstream::stream::Config {
                    name: "AVSENSE_DEAD".into(),
                    subjects: vec!["avsense_dead.>".into()],
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: r,
                    ..Default::default()
                })
                .await
                .map_err(async_nats::Error::from)?;
                let kv = match js.get_key_value("avsense_jobs").await {
                    Ok(kv) => kv,
                    Err(_) => js
                        .create_key_value(jetstream::kv::Config {
                            bucket: "avsense_jobs".into(),
                            history: 1,
                            num_replicas: r,
                            storage: jetstream::stream::StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(async_nats::Error::from)?,
                };
                Ok::<_, async_nats::Error>(kv)
            }
            .await;
            match res {
                Ok(kv) => return Ok(Store { kv }),
                Err(e) if tries < 40 => {
                    tracing::debug!("fleet setup: {e}");
                    tries += 1;
                    retry(250).await;
                }
                Err(e) => return Err(self.err("creating the jobs stream and bucket")(e)),
            }
        }
    }
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The fleet.
    pub fleet: FleetConfig,
    /// This worker's name (in job records).
    pub name: String,
    /// The consumer's ack wait (set when the consumer is created).
    pub ack_wait: Duration,
    /// Deliveries of a job before it is dead-lettered (set when the consumer is created).
    pub max_deliver: i64,
    /// The NATS sink's spool directory (one per worker).
    pub spool: PathBuf,
    /// Stop after this long without a job and without a camera (`None`: run until
    /// stopped).
    pub exit_when_idle: Option<Duration>,
    /// Live cameras it may run at once (0: none).
    pub live_slots: usize,
}

/// One job: a recorded file to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Its id (UUIDv7).
    pub id: String,
    /// The file (absolute path, as the workers see it) or a URI.
    pub input: String,
    /// A pipeline config (TOML) whose first source is pointed at `input`; default settings
    /// without one.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Where in the file to start, seconds (the source's `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f64>,
    /// Where in the file to stop, seconds (the source's `end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<f64>,
}

/// A job's state, as `avsense jobs` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker (or for another try).
    Pending,
    /// A worker runs it.
    Running,
    /// Its events are stored.
    Done,
    /// It failed as often as the consumer allows; it is in the dead-letter stream.
    Failed,
}

/// The record of a job in the `avsense_jobs` bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// The input.
    pub input: String,
    /// The worker that last took it.
    #[serde(default)]
    pub worker: Option<String>,
    /// Deliveries so far.
    #[serde(default)]
    pub deliveries: i64,
    /// The last error.
    #[serde(default)]
    pub error: Option<String>,
    /// Events published by the run that completed it.
    #[serde(default)]
    pub events: Option<u64>,
    /// Unix seconds of the last change.
    pub updated: f64,
}

impl JobRecord {
    /// A record of `job` in `state`, stamped now.
    pub fn new(job: &Job, state: JobState) -> Self {
        Self {
            id: job.id.clone(),
            state,
            input: job.input.clone(),
            worker: None,
            deliveries: 0,
            error: None,
            events: None,
            updated: now(),
        }
    }
}

/// Unix seconds now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The job-state bucket.
pub struct Store {
    kv: jetstream::kv::Store,
}

impl Store {
    /// Writes `r` (retried while the cluster is away, up to `patience`).
    pub async fn put(&self, r: &JobRecord, patience: Duration) -> Result<(), async_nats::Error> {
        let bytes = serde_json::to_vec(r)?;
        let t0 = std::time::Instant::now();
        loop {
            match self.kv.put(&r.id, bytes.clone().into()).await {
                Ok(_) => return Ok(()),
                Err(e) if t0.elapsed() < patience => {
                    tracing::debug!("job {}: state: {e}", r.id);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every job record (retried while the cluster is slow to answer, up to 30 s).
    pub async fn all(&self) -> Result<Vec<JobRecord>, async_nats::Error> {
        retrying("listing jobs", Duration::from_secs(30), || self.all_once()).await
    }

    async fn all_once(&self) -> Result<Vec<JobRecord>, async_nats::Error> {
        use futures_util::StreamExt;
        let mut keys = self.kv.keys().await?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let k = k?;
            if let Some(v) = self.kv.get(&k).await? {
                if let Ok(r) = serde_json::from_slice::<JobRecord>(&v) {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// Runs `f` until it succeeds or `patience` has passed (a busy or recovering cluster
/// answers a request late: the client times out and the next try gets through).
pub async fn retrying<T, F, Fut>(
    what: &str,
    patience: Duration,
    mut f: F,
) -> Result<T, async_nats::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, async_nats::Error>>,
{
    let t0 = std::time::Instant::now();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if t0.elapsed() < patience => {
                tracing::debug!("{what}: {e} (trying again)");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A fresh job id (UUIDv7: time-ordered).
pub fn job_id() -> String {
    let mut ids = avsense::core::ids::EventIds::new(
        &avsense::core::ids::EventIds::random_key(),
        "jobs",
        avsense::core::ids::IdClock::Wall,
    );
    ids.next(0.0)
}

/// Runs `f` on a fresh single-threaded tokio runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T, FleetError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(FleetError::Runtime)?;
    Ok(rt.block_on(f))
}
