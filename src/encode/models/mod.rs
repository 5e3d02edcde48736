//! Neural models written for candle, one file each.

pub mod blazeface;
pub mod lightasd;
pub mod nanodet;
pub mod silero;
pub mod tfjs;
pub mod tflite;
pub mod yamnet;
