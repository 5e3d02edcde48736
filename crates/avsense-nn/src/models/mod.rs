//! The networks: each a small struct built from its weights, with a typed `forward`.

pub mod blazeface;
pub mod coco;
pub mod fusion;
pub mod lightasd;
pub mod nanodet;
pub mod silero;
pub mod sync;
pub mod yamnet;
