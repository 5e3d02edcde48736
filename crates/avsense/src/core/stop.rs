//! A stream's stop request, shared by its source and the stages behind it.
//!
//! A stop (Ctrl-C, [`crate::Running::stop`]) is an end of stream at the source; the stages
//! behind it see the flag and drop what is still queued instead of analysing it, so a run
//! with a backlog (a file decoded ahead of a slow detector) ends at once with every event
//! up to the stop written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared, one-way stop flag (cheap to clone and to read).
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the flag (idempotent).
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let a = StopFlag::new();
        let b = a.clone();
        assert!(!b.is_set());
        a.set();
        assert!(b.is_set());
    }
}
