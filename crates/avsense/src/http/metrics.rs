//! `GET /metrics`: the hub's and the pipeline's counters in the Prometheus/OpenMetrics text
//! format, read at each scrape (a `prometheus-client` collector).
//!
//! ```text
//! avsense_uptime_seconds                      gauge
//! avsense_stream_frames_total{stream}         counter   frames decoded
//! avsense_stream_detector_frames_total{stream} counter  frames the detector ran on
//! avsense_stream_skipped_total{stream}        counter   frames/audio dropped on input edges
//! avsense_stream_fps{stream}                  gauge
//! avsense_stream_media_seconds{stream}        gauge     media analysed
//! avsense_edge_sent_total{edge}               counter
//! avsense_edge_dropped_total{edge}            counter
//! avsense_edge_high_water{edge}               gauge
//! avsense_events_total{stream,kind,label}     counter   end messages
//! avsense_messages_total{phase}               counter   lifecycle messages
//! avsense_inference_seconds{model}            histogram one encoder call
//! avsense_process_resident_memory_bytes       gauge
//! ```

use super::hub::Hub;
use crate::core::timing::BOUNDS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The collector behind `/metrics`.
#[derive(Clone)]
pub(super) struct Metrics(pub Hub);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn family<'a, T: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, T)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counts = self.0.counts();
        ConstGauge::new(stats.uptime_seconds).encode(enc.encode_descriptor(
            "avsense_uptime_seconds",
            "Seconds since the pipeline started",
            None,
            MetricType::Gauge,
        )?)?;
        let per_stream = |f: fn(&super::hub::StreamStats) -> u64| {
            stats
                .streams
                .iter()
                .map(move |s| {
                    (
                        vec![("stream", s.stream.name.as_str())],
                        ConstCounter::new(f(s)),
                    )
                })
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "avsense_stream_frames",
            "Frames decoded",
            MetricType::Counter,
            per_stream(|s| s.stream.frames),
        )?;
        family(
            &mut enc,
            "avsense_stream_detector_frames",
            "Frames the object detector ran on",
            MetricType::Counter,
            per_stream(|s| s.stream.detector_frames),
        )?;
        family(
            &mut enc,
            "avsense_stream_skipped",
            "Frames and audio chunks dropped on the stream's input edges",
            MetricType::Counter,
            per_stream(|s| s.stream.skipped),
        )?;
        family(
            &mut enc,
            "avsense_stream_fps",
            "Frames per second over the last second or more",
            MetricType::Gauge,
            stats.streams.iter().map(|s| {
                (
                    vec![("stream", s.stream.name.as_str())],
                    ConstGauge::new(s.fps),
                )
            }),
        )?;
        family(
            &mut enc,
            "avsense_stream_media_seconds",
            "Seconds of media analysed",
            MetricType::Gauge,
            stats.streams.iter().map(|s| {
                (
                    vec![("stream", s.stream.name.as_str())],
                    ConstGauge::new(s.stream.media_seconds),
                )
            }),
        )?;
        let edge = |f: fn(&crate::core::edge::EdgeStats) -> u64| {
            stats
                .edges
                .iter()
                .map(move |e| (vec![("edge", e.name.as_str())], ConstCounter::new(f(e))))
                .collect::<Vec<_>>()
        };
        family(
            &mut enc,
            "avsense_edge_sent",
            "Items sent on an edge",
            MetricType::Counter,
            edge(|e| e.sent),
        )?;
        family(
            &mut enc,
            "avsense_edge_dropped",
            "Items a drop-oldest edge discarded",
            MetricType::Counter,
            edge(|e| e.dropped),
        )?;
        family(
            &mut enc,
            "avsense_edge_high_water",
            "Most items ever queued on an edge",
            MetricType::Gauge,
            stats.edges.iter().map(|e| {
                (
                    vec![("edge", e.name.as_str())],
                    ConstGauge::new(e.high_water as i64),
                )
            }),
        )?;
        family(
            &mut enc,
            "avsense_events",
            "Finished events (end messages)",
            MetricType::Counter,
            counts.events.iter().map(|((stream, kind, label), n)| {
                (
                    vec![
                        ("stream", stream.as_str()),
                        ("kind", kind.as_str()),
                        ("label", label.as_str()),
                    ],
                    ConstCounter::new(*n),
                )
            }),
        )?;
        family(
            &mut enc,
            "avsense_messages",
            "Lifecycle messages by phase",
            MetricType::Counter,
            counts
                .messages
                .iter()
                .map(|(phase, n)| (vec![("phase", *phase)], ConstCounter::new(*n))),
        )?;
        let mut m = enc.encode_descriptor(
            "avsense_inference_seconds",
            "Time of one encoder call (a batch of frames or a run of audio)",
            None,
            MetricType::Histogram,
        )?;
        for t in &stats.models {
            let labels: Labels<'_> = vec![("model", t.model.as_str())];
            let buckets: Vec<(f64, u64)> = BOUNDS
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(t.buckets.iter().copied())
                .collect();
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                t.sum_seconds,
                t.count,
                &buckets,
                None,
            )?;
        }
        if let Some(rss) = stats.rss_bytes {
            ConstGauge::new(rss as i64).encode(enc.encode_descriptor(
                "avsense_process_resident_memory_bytes",
                "Resident memory of the avsense process",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}
