//! `avsense worker`: takes jobs from the site's durable pull consumer one at a time, runs
//! the pipeline on each with the NATS sink, keeps the job's ack deadline alive with
//! "in progress" acks while it works, and acks only once every event is stored. A job that
//! fails is delivered again (after a short delay) until the consumer's `max_deliver`; the
//! last failure goes to the dead-letter subject with its error.

use super::{FleetError, Job, JobRecord, JobState, Store, WorkerOptions};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use avsense::sink::nats::{NatsSettings, NatsSink};
use avsense::sink::{EventSink, Phases};
use avsense::PipelineConfig;
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs it completed.
    pub done: u64,
    /// Jobs it gave back for another try.
    pub retried: u64,
    /// Jobs it dead-lettered.
    pub failed: u64,
}

/// How a job's run ended.
enum Outcome {
    /// Every event was stored; how many were published.
    Stored(u64),
    /// The run failed (or its events could not all be stored): why.
    Failed(String),
}

/// Runs `job`'s pipeline to the end with a NATS sink; blocking.
fn run_job(job: &Job, o: &WorkerOptions) -> Outcome {
    let cfg = match &job.pipeline {
        Some(p) => PipelineConfig::load(std::path::Path::new(p)).map(|mut cfg| {
            if let Some(s) = cfg.sources.first_mut() {
                if job.input.contains("://") {
                    s.kind = avsense::source::SourceKind::Uri;
                    s.uri = Some(job.input.clone());
                    s.path = None;
                } else {
                    s.kind = avsense::source::SourceKind::File;
                    s.path = Some(PathBuf::from(&job.input));
                    s.uri = None;
                }
            }
            cfg.sinks.clear();
            cfg
        }),
        None => PipelineConfig::for_input(&job.input, None),
    };
    let cfg = cfg.and_then(|mut c| {
        if let Some(s) = c.sources.first_mut() {
            s.start = job.start;
            s.end = job.end;
        }
        c.validate(std::path::Path::new(&job.input)).map(|()| c)
    });
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("{e}")),
    };
    let mut settings = NatsSettings::new(&o.fleet.url, &o.fleet.site, o.spool.clone());
    settings.replicas = o.fleet.replicas.max(1);
    settings.msg_id_prefix = format!("{}/", job.id);
    settings.username = o.fleet.username.clone();
    settings.password_env = o.fleet.password_env.clone();
    // The worker waits for the cluster as long as the job may take: the ack deadline is
    // kept alive meanwhile.
    settings.drain_timeout = Duration::from_secs(3600);
    let sink = match NatsSink::open(settings, Phases::ALL) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("{e}")),
    };
    let backlog = sink.backlog();
    let counted = Counted {
        inner: sink,
        n: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let n = Arc::clone(&counted.n);
    let report = avsense::Pipeline::new(cfg)
        .and_then(|p| p.start(vec![Box::new(counted)]))
        .and_then(|r| r.wait());
    let report = match report {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(error_chain(&e)),
    };
    if let Some(err) = report.first_error() {
        return Outcome::Failed(err);
    }
    if let Some(err) = &report.sink_error {
        return Outcome::Failed(err.clone());
    }
    if backlog.pending() > 0 {
        return Outcome::Failed(format!(
            "{} event(s) not stored by JetStream (they stay in the spool {})",
            backlog.pending(),
            o.spool.display()
        ));
    }
    Outcome::Stored(n.load(Ordering::SeqCst))
}

/// The NATS sink, counting what it publishes.
struct Counted {
    inner: NatsSink,
    n: Arc<std::sync::atomic::AtomicU64>,
}

impl EventSink for Counted {
    fn target(&self) -> String {
        self.inner.target()
    }
    fn takes(&self, e: &avsense::Event) -> bool {
        self.inner.takes(e)
    }
    fn write(&mut self, e: &avsense::Event) -> Result<(), avsense::sink::SinkError> {
        self.inner.write(e)?;
        self.n.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), avsense::sink::SinkError> {
        self.inner.flush()
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The worker loop (see the module doc); returns when idle for `exit_when_idle` or when
/// `stop` is set.
pub async fn work(o: &WorkerOptions, stop: Arc<AtomicBool>) -> Result<WorkerReport, FleetError> {
    let f = &o.fleet;
    let js = f.connect().await?;
    let store = f.ensure(&js).await?;
    let consumer = loop {
        let stream = js.get_stream("AVSENSE_JOBS").await;
        let made = match stream {
            Ok(s) => s
                .get_or_create_consumer(
                    &f.consumer_name(),
                    pull::Config {
                        durable_name: Some(f.consumer_name()),
                        filter_subject: f.jobs_subject(),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: o.ack_wait,
                        max_deliver: o.max_deliver,
                        max_ack_pending: 1024,
                        ..Default::default()
                    },
                )
                .await
                .map_err(async_nats::Error::from),
            Err(e) => Err(e.into()),
        };
        match made {
            Ok(c) => break c,
            Err(e) => {
                tracing::debug!("worker {}: consumer: {e}", o.name);
                if stop.load(Ordering::SeqCst) {
                    return Ok(WorkerReport::default());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cameras_stop = Arc::new(AtomicBool::new(false));
    let cameras = if o.live_slots > 0 {
        let b = f.live_buckets(&js).await?;
        Some(tokio::spawn(super::live::hold_cameras(
            o.clone(),
            b,
            Arc::clone(&cameras_stop),
            Arc::clone(&held),
        )))
    } else {
        None
    };
    let mut report = WorkerReport::default();
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        if held.load(Ordering::SeqCst) > 0 {
            idle_since = Instant::now();
        }
        if o.exit_when_idle.is_some_and(|d| idle_since.elapsed() >= d) {
            break;
        }
        let batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        // Idle means the queue answered and had nothing: time the cluster cannot answer
        // (a leader being elected, an outage) does not count.
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("worker {}: fetch: {e}", o.name);
                idle_since = Instant::now();
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let msg = match batch.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!("worker {}: fetch: {e}", o.name);
                idle_since = Instant::now();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => continue,
        };
        handle(o, &js, &store, msg, &mut report).await;
        idle_since = Instant::now();
    }
    cameras_stop.store(true, Ordering::SeqCst);
    if let Some(t) = cameras {
        let _ = t.await;
    }
    Ok(report)
}

/// Runs one delivered job to its ack, retry or dead letter.
async fn handle(
    o: &WorkerOptions,
    js: &jetstream::Context,
    store: &Store,
    msg: jetstream::Message,
    report: &mut WorkerReport,
) {
    let patience = Duration::from_secs(60);
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let job: Job = match serde_json::from_slice(&msg.payload) {
        Ok(j) => j,
        Err(e) => {
            // Not a job: nothing can make it one. Dead-letter it as it is.
            let body = serde_json::json!({
                "job": String::from_utf8_lossy(&msg.payload),
                "error": format!("not a job: {e}"),
                "worker": o.name,
            });
            dead_letter(o, js, &body).await;
            let _ = msg.ack_with(AckKind::Term).await;
            report.failed += 1;
            return;
        }
    };
    let mut rec = JobRecord::new(&job, JobState::Running);
    rec.worker = Some(o.name.clone());
    rec.deliveries = delivered;
    if let Err(e) = store.put(&rec, patience).await {
        tracing::warn!("worker {}: job {}: state: {e}", o.name, job.id);
    }
    tracing::info!(
        "worker {}: job {} ({}), delivery {delivered}",
        o.name,
        job.id,
        job.input
    );

    let (tx, mut rx) = tokio::sync::oneshot::channel();
    {
        let (job, o) = (job.clone(), o.clone());
        std::thread::spawn(move || {
            let _ = tx.send(run_job(&job, &o));
        });
    }
    let mut tick = tokio::time::interval((o.ack_wait / 3).max(Duration::from_millis(200)));
    let outcome = loop {
        tokio::select! {
            r = &mut rx => break r.unwrap_or_else(|_| Outcome::Failed("the run panicked".into())),
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!("worker {}: job {}: in-progress ack: {e}", o.name, job.id);
                }
            }
        }
    };
    match outcome {
        Outcome::Stored(events) => {
            rec.state = JobState::Done;
            rec.events = Some(events);
            rec.error = None;
            rec.updated = super::now();
            if let Err(e) = store.put(&rec, patience).await {
                tracing::warn!("worker {}: job {}: state: {e}", o.name, job.id);
            }
            // The events are stored; a lost ack only means the job runs again, and its
            // events are duplicates the stream drops.
            let t0 = Instant::now();
            while let Err(e) = msg.double_ack().await {
                if t0.elapsed() > patience {
                    tracing::warn!("worker {}: job {}: ack: {e}", o.name, job.id);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            report.done += 1;
        }
        Outcome::Failed(error) => {
            tracing::warn!("worker {}: job {} failed: {error}", o.name, job.id);
            rec.error = Some(error.clone());
            rec.updated = super::now();
            if delivered >= o.max_deliver {
                rec.state = JobState::Failed;
                let body = serde_json::json!({
                    "job": job,
                    "error": error,
                    "deliveries": delivered,
                    "worker": o.name,
                });
                dead_letter(o, js, &body).await;
                let _ = store.put(&rec, patience).await;
                let _ = msg.ack_with(AckKind::Term).await;
                report.failed += 1;
            } else {
                rec.state = JobState::Pending;
                let _ = store.put(&rec, patience).await;
                let _ = msg
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                report.retried += 1;
            }
        }
    }
}

/// Stores `body` on the site's dead-letter subject (retried for a minute).
async fn dead_letter(o: &WorkerOptions, js: &jetstream::Context, body: &serde_json::Value) {
    let payload = body.to_string().into_bytes();
    let t0 = Instant::now();
    loop {
        let sent = match js
            .publish(o.fleet.dead_subject(), payload.clone().into())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
            Err(e) => Err(e.into()),
        };
        match sent {
            Ok(()) => return,
            Err(e) if t0.elapsed() < Duration::from_secs(60) => {
                tracing::debug!("worker {}: dead letter: {e}", o.name);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                tracing::warn!("worker {}: dead letter lost: {e}", o.name);
                return;
            }
        }
    }
}
