//! Video encoders, run in this order on every batch of frames (later ones read the results of
//! earlier ones in the same frame's features):
//!
//! - [`objects`]: the object detector at its own rate (NanoDet through [`nanodet`]) and the
//!   multi-object [`tracker`] → [`objects::Tracks`]
//! - [`faces`]: BlazeFace, face tracks tied to person tracks, the active-speaker model's
//!   crops → [`faces::Faces`]
//! - [`motion`]: the motion grid → [`motion::MotionFeatures`]

pub mod faces;
pub mod motion;
pub mod nanodet;
pub mod objects;
pub mod tracker;
