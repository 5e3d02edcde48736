//! Readers of published model files: each turns a file format into candle tensors (and, for
//! TF.js graph models, runs the graph).

pub mod files;
pub mod tfjs;
pub mod tflite;
pub mod torch;
