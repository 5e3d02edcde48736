//! The sink stage: every event of every stream goes to every sink that is still open.
//!
//! Sinks fail one by one: a sink whose reader went away (stdout piped into `head`) is
//! closed — a normal stop for that sink only; a sink that cannot write (a full disk) is
//! failed, with its error in the report; the other sinks keep receiving every event. When
//! no sink is left open, nothing the pipeline perceives can go anywhere: every source is
//! asked to stop and the run ends.

use super::report::{SinkReport, SinkState, StreamProbe};
use crate::core::edge::EdgeReceiver;
use crate::core::errors::one_line;
use crate::core::event::{Event, EventKind, Phase};
use crate::core::ids::{EventIds, IdClock};
use crate::core::latency::{stamp, LatencyRecorder};
use crate::sink::{EventSink, SinkError};
use crate::snapshot::Snapshotter;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// What the sink stage returns.
pub(super) struct SinkOutcome {
    /// Events (their `end` messages) that reached at least one sink.
    pub written: u64,
    /// Per sink.
    pub sinks: Vec<SinkReport>,
    /// Capture → event latency per live stream.
    pub latency: HashMap<String, LatencyRecorder>,
}

struct Slot {
    sink: Box<dyn EventSink>,
    report: SinkReport,
}

impl Slot {
    fn open(&self) -> bool {
        self.report.state == SinkState::Open
    }

    fn fail(&mut self, err: SinkError) {
        self.report.state = match err {
            SinkError::Closed { .. } => SinkState::Closed,
            other => {
                let line = one_line(&other);
                tracing::error!("{line}; this sink stops, any other sink goes on");
                SinkState::Failed(line)
            }
        };
    }
}

/// Runs the sink stage until the event edge closes or no sink is left open.
pub(super) fn run_sink_stage(
    sinks: Vec<Box<dyn EventSink>>,
    rx: EdgeReceiver<Event>,
    streams: Arc<OnceLock<Vec<StreamProbe>>>,
    mut snapshots: Option<Snapshotter>,
) -> SinkOutcome {
    let mut slots: Vec<Slot> = sinks
        .into_iter()
        .map(|sink| Slot {
            report: SinkReport {
                target: sink.target(),
                written: 0,
                state: SinkState::Open,
            },
            sink,
        })
        .collect();
    let mut written = 0u64;
    let mut latency: HashMap<String, LatencyRecorder> = HashMap::new();
    // Ids for what the sources report straight to the sinks (`stream_gap`).
    let mut ids: HashMap<String, EventIds> = HashMap::new();
    while let Some(mut e) = rx.recv() {
        if e.id.is_empty() {
            e.id = ids
                .entry(e.stream.clone())
                .or_insert_with(|| EventIds::new(&EventIds::random_key(), &e.stream, IdClock::Wall))
                .next(e.start);
        }
        let origin = streams.get().and_then(|l| {
            l.iter()
                .find(|p| p.live && p.name == e.stream)
                .and_then(|p| p.source.clock_origin())
        });
        if let Some(origin) = origin {
            let ms = stamp(&mut e, origin);
            // Perception latency only: a source's own reports are not detections.
            if !matches!(
                e.kind,
                EventKind::SourceError | EventKind::StreamGap | EventKind::SourceWarning
            ) {
                latency.entry(e.stream.clone()).or_default().record(ms);
            }
        }
        if let Some(snap) = snapshots.as_mut() {
            snap.attach(&mut e);
        }
        let mut delivered = false;
        for s in slots.iter_mut().filter(|s| s.open() && s.sink.takes(&e)) {
            match s.sink.write(&e) {
                Ok(()) => {
                    s.report.written += 1;
                    delivered = true;
                }
                Err(err) => s.fail(err),
            }
        }
        if delivered && e.phase == Phase::End {
            written += 1;
        }
        if !slots.iter().any(Slot::open) {
            // Nobody can receive anything any more: stop every source; the stages behind
            // them see the closed edges and wind down.
            if let Some(l) = streams.get() {
                for p in l {
                    p.source.stop();
                }
            }
            break;
        }
    }
    for s in slots.iter_mut().filter(|s| s.open()) {
        if let Err(err) = s.sink.flush() {
            s.fail(err);
        }
    }
    SinkOutcome {
        written,
        sinks: slots.into_iter().map(|s| s.report).collect(),
        latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::edge::{edge, EdgePolicy};
    use crate::sink::JsonlSink;
    use std::io::Write;
    use std::sync::Mutex;

    /// A writer that fails with `kind` once it has taken `ok` lines, and records them.
    struct Failing {
        ok: usize,
        kind: std::io::ErrorKind,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            if got.iter().filter(|&&b| b == b'\n').count() >= self.ok {
                return Err(std::io::Error::from(self.kind));
            }
            got.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn sink(
        name: &str,
        ok: usize,
        kind: std::io::ErrorKind,
    ) -> (Box<dyn EventSink>, Arc<Mutex<Vec<u8>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let w = Failing {
            ok,
            kind,
            got: Arc::clone(&got),
        };
        (Box::new(JsonlSink::to_writer(name, Box::new(w))), got)
    }

    fn run(sinks: Vec<Box<dyn EventSink>>, n: usize) -> SinkOutcome {
        let (tx, rx, _) = edge("events", 64, EdgePolicy::Block);
        for i in 0..n {
            tx.send(Event::new(
                EventKind::Sound,
                "s",
                i as f64,
                i as f64 + 1.0,
                0.5,
            ))
            .unwrap();
        }
        drop(tx);
        run_sink_stage(sinks, rx, Arc::new(OnceLock::new()), None)
    }

    #[test]
    fn a_closed_pipe_stops_that_sink_only() {
        let (pipe, _) = sink("stdout", 1, std::io::ErrorKind::BrokenPipe);
        let (file, got) = sink("events.jsonl", usize::MAX, std::io::ErrorKind::Other);
        let out = run(vec![pipe, file], 8);
        assert_eq!(out.written, 8);
        assert_eq!(out.sinks[0].state, SinkState::Closed);
        assert_eq!(out.sinks[0].written, 1);
        assert_eq!(
            (out.sinks[1].written, &out.sinks[1].state),
            (8, &SinkState::Open)
        );
        let lines = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(lines.lines().count(), 8);
    }

    #[test]
    fn a_failed_sink_is_reported_and_the_last_one_ends_the_stage() {
        let (full, _) = sink("/dev/full", 2, std::io::ErrorKind::StorageFull);
        let out = run(vec![full], 8);
        assert_eq!(out.written, 2);
        match &out.sinks[0].state {
            SinkState::Failed(e) => assert!(e.contains("/dev/full"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
