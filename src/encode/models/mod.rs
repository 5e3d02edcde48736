//! Neural models written for candle, one file each.

pub mod silero;
pub mod tfjs;
pub mod nanodet;
pub mod tflite;
pub mod yamnet;
