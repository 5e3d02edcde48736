//! # avsense-nn
//!
//! The neural side of avsense, on candle and nothing else: no GStreamer, no pipeline types.
//! Every model takes tensors or plain pixel/sample buffers and returns plain values, so it
//! can be tested against its reference runtime on its own and reused outside the pipeline.
//!
//! ```text
//! ops/       tensor ops candle 0.11 lacks or runs slowly on the CPU (depthwise and
//!            channels-last convolutions, pools, temporal convolutions, SIMD rows)
//! formats/   readers of published weight files: TF.js graph models (an executor),
//!            TFLite flatbuffers, TorchScript archives
//! dsp/       audio front ends that models were trained with (python_speech_features' MFCC)
//! models/    NanoDet, BlazeFace, YAMNet, Silero VAD, Light-ASD, the fusion networks
//!            (GATv2 GNN, attention, concat), COCO labels
//! ```

pub mod dsp;
pub mod formats;
pub mod models;
pub mod ops;

/// Sets candle's intra-op thread count to one unless the process chose one
/// (`RAYON_NUM_THREADS` set); once per process, later calls do nothing.
///
/// Why one: avsense runs a thread per stage and stream, and on 2 cores every model measured
/// slower with 2 intra-op threads than with 1 (NanoDet 69 vs 59 ms, YAMNet 1.66 vs 1.30 ms;
/// dev clip end to end 3.17× vs 2.70–2.91× realtime). And without the variable candle 0.11
/// works out the physical core count (reading `/proc/cpuinfo`) on every matrix multiply:
/// −0.4 CPU s of kernel time per minute of media with the VAD on.
///
/// candle reads its matrix-multiply thread count only from that variable, so this sets
/// `RAYON_NUM_THREADS`. Call it before the process starts threads that read the
/// environment from C (GStreamer's, say): `avsense::Pipeline::new` calls it before it
/// initialises GStreamer.
pub fn set_default_threads() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_none_or(|v| v.is_empty()) {
            std::env::set_var("RAYON_NUM_THREADS", "1");
        }
    });
}
