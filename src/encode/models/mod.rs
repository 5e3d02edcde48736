//! Neural models written for candle, one file each.

pub mod silero;
pub mod tflite;
pub mod yamnet;
