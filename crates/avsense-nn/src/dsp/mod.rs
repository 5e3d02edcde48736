//! Audio front ends that models expect exactly as they were trained with.

pub mod mfcc;
