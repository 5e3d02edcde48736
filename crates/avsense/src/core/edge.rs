//! Bounded edges between stages, each with an explicit overflow policy and counters.
//!
//! Every arrow of the pipeline is a bounded `crossbeam-channel`. What happens when the
//! consumer falls behind is a per-edge decision:
//! - [`EdgePolicy::Block`]: the producer waits. Files use it: nothing is lost, and the
//!   back-pressure reaches GStreamer, which then decodes only as fast as we consume.
//! - [`EdgePolicy::DropOldest`]: the oldest queued item is discarded to make room. Live
//!   sources use it so the pipeline always works on the newest data.
//!
//! Shutdown is a closed channel: dropping every [`EdgeSender`] ends the receiver's loop.

use crossbeam_channel::{Receiver, RecvError, SendError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What a full edge does with a new item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgePolicy {
    /// Wait for room (lose nothing).
    Block,
    /// Discard the oldest queued item (stay current).
    DropOldest,
}

/// Counters of one edge, shared between its ends and the metrics.
#[derive(Debug, Default)]
pub struct EdgeCounters {
    sent: AtomicU64,
    dropped: AtomicU64,
    high_water: AtomicU64,
    /// Set when the receiving end is dropped (a `DropOldest` sender keeps a receiver of its
    /// own, so the channel alone cannot tell).
    receiver_gone: AtomicBool,
}

/// A snapshot of an edge's counters, for the end-of-run summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeStats {
    /// The edge's name, e.g. `cam1/frames`.
    pub name: String,
    /// Its policy.
    pub policy: EdgePolicy,
    /// Its capacity in items.
    pub capacity: usize,
    /// Items accepted onto the edge.
    pub sent: u64,
    /// Items discarded by `DropOldest`.
    pub dropped: u64,
    /// The most items ever queued at once.
    pub high_water: u64,
}

/// A handle that reads an edge's counters while the pipeline runs.
#[derive(Debug, Clone)]
pub struct EdgeProbe {
    name: String,
    policy: EdgePolicy,
    capacity: usize,
    counters: Arc<EdgeCounters>,
}

impl EdgeProbe {
    /// The counters now.
    pub fn stats(&self) -> EdgeStats {
        EdgeStats {
            name: self.name.clone(),
            policy: self.policy,
            capacity: self.capacity,
            sent: self.counters.sent.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            high_water: self.counters.high_water.load(Ordering::Relaxed),
        }
    }
}

/// The producing end of an edge.
#[derive(Debug)]
pub struct EdgeSender<T> {
    tx: Sender<T>,
    /// Kept only by `DropOldest` edges, to pop the oldest item when full.
    evict: Option<Receiver<T>>,
    counters: Arc<EdgeCounters>,
}

impl<T> Clone for EdgeSender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            evict: self.evict.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

/// The receiver went away: the downstream stage has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the downstream stage has stopped")]
pub struct Disconnected;

impl<T> EdgeSender<T> {
    /// Puts `item` on the edge following its policy. Fails only when the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), Disconnected> {
        if self.counters.receiver_gone.load(Ordering::Acquire) {
            return Err(Disconnected);
        }
        match &self.evict {
            None => self.tx.send(item).map_err(|SendError(_)| Disconnected)?,
            Some(evict) => {
                let mut item = item;
                loop {
                    match self.tx.try_send(item) {
                        Ok(()) => break,
                        Err(TrySendError::Disconnected(_)) => return Err(Disconnected),
                        Err(TrySendError::Full(back)) => {
                            item = back;
                            // Another consumer may have emptied the slot meanwhile; only a
                            // successful pop counts as a drop.
                            if evict.try_recv().is_ok() {
                                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let queued = self.tx.len() as u64;
        self.counters
            .high_water
            .fetch_max(queued, Ordering::Relaxed);
        Ok(())
    }
}

/// The consuming end of an edge.
#[derive(Debug)]
pub struct EdgeReceiver<T> {
    rx: Receiver<T>,
    counters: Arc<EdgeCounters>,
}

impl<T> Drop for EdgeReceiver<T> {
    fn drop(&mut self) {
        self.counters.receiver_gone.store(true, Ordering::Release);
    }
}

impl<T> EdgeReceiver<T> {
    /// Waits for the next item; `None` once every sender is gone and the edge is empty.
    pub fn recv(&self) -> Option<T> {
        self.rx.recv().map_err(|RecvError| ()).ok()
    }

    /// Takes what is queued now without waiting (for batching), at most `max` items.
    pub fn drain_ready(&self, max: usize, into: &mut Vec<T>) {
        while into.len() < max {
            match self.rx.try_recv() {
                Ok(item) => into.push(item),
                Err(_) => break,
            }
        }
    }

    /// The underlying receiver, for `select!`.
    pub fn inner(&self) -> &Receiver<T> {
        &self.rx
    }
}

/// Makes a bounded edge named `name` with `capacity` slots and `policy`.
pub fn edge<T>(
    name: impl Into<String>,
    capacity: usize,
    policy: EdgePolicy,
) -> (EdgeSender<T>, EdgeReceiver<T>, EdgeProbe) {
    let capacity = capacity.max(1);
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let counters = Arc::new(EdgeCounters::default());
    let evict = match policy {
        EdgePolicy::Block => None,
        EdgePolicy::DropOldest => Some(rx.clone()),
    };
    let probe = EdgeProbe {
        name: name.into(),
        policy,
        capacity,
        counters: Arc::clone(&counters),
    };
    let receiver = EdgeReceiver {
        rx,
        counters: Arc::clone(&counters),
    };
    (
        EdgeSender {
            tx,
            evict,
            counters,
        },
        receiver,
        probe,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_oldest_keeps_newest_and_counts() {
        let (tx, rx, probe) = edge::<u32>("t", 3, EdgePolicy::DropOldest);
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        drop(tx);
        let got: Vec<u32> = std::iter::from_fn(|| rx.recv()).collect();
        assert_eq!(got, vec![7, 8, 9]);
        let s = probe.stats();
        assert_eq!((s.sent, s.dropped, s.high_water), (10, 7, 3));
    }

    #[test]
    fn block_loses_nothing_across_threads() {
        let (tx, rx, probe) = edge::<u32>("t", 2, EdgePolicy::Block);
        let h = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u32> = std::iter::from_fn(|| rx.recv()).collect();
        h.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        let s = probe.stats();
        assert_eq!(s.dropped, 0);
        assert!(s.high_water <= 2);
    }

    #[test]
    fn send_after_receiver_drop_is_an_error() {
        for policy in [EdgePolicy::Block, EdgePolicy::DropOldest] {
            let (tx, rx, _) = edge::<u32>("t", 2, policy);
            drop(rx);
            assert_eq!(tx.send(1), Err(Disconnected), "{policy:?}");
        }
    }
}
