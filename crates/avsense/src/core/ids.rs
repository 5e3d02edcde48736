//! Event ids: UUIDv7 (RFC 9562), one per event, shared by its lifecycle messages.
//!
//! The 48-bit time field is the event's time in Unix milliseconds: for live streams the
//! wall clock when the id is made; for recorded input the stream's `time_origin` (or the
//! Unix epoch when none is known) plus the event's start on the stream's timeline. The 74
//! other bits come from SHA-256 of the run key, the stream name and the event's ordinal.
//! The run key of a recorded file is the file's identity (path, size, modification time),
//! so running the same file with the same settings again gives the same ids — a consumer
//! that stores events by id (a broker's de-duplication, a database key) does not store a
//! re-run twice. A live run's key is random.

use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where an id's time comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdClock {
    /// The wall clock when the id is made (live streams).
    Wall,
    /// `origin` (Unix seconds) + the event's start (recorded input).
    Media {
        /// Unix seconds at stream time 0.
        origin: f64,
    },
}

/// Makes the ids of one stream's events.
#[derive(Debug, Clone)]
pub struct EventIds {
    key: [u8; 32],
    clock: IdClock,
    next: u64,
}

impl EventIds {
    /// Ids for `stream` of the run identified by `run_key`.
    pub fn new(run_key: &[u8], stream: &str, clock: IdClock) -> Self {
        let mut h = Sha256::new();
        h.update(b"avsense.event-id/1\0");
        h.update((run_key.len() as u64).to_le_bytes());
        h.update(run_key);
        h.update(stream.as_bytes());
        Self {
            key: h.finalize().into(),
            clock,
            next: 0,
        }
    }

    /// A random run key (live runs).
    pub fn random_key() -> [u8; 16] {
        use std::hash::{BuildHasher, Hasher};
        let mut out = [0u8; 16];
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            // RandomState is seeded from the OS's random source once per process (and
            // advanced per instance); mixing in the time and pid guards against a platform
            // where it is not.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(now_unix_ns());
            h.write_u32(std::process::id());
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        out
    }

    /// The id of the next event, which starts at `start` seconds on the stream's timeline.
    pub fn next(&mut self, start: f64) -> String {
        let ms = match self.clock {
            IdClock::Wall => (now_unix_ns() / 1_000_000) as u64,
            IdClock::Media { origin } => {
                ((origin + start.max(0.0)) * 1000.0).floor().max(0.0) as u64
            }
        };
        let n = self.next;
        self.next += 1;
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(n.to_le_bytes());
        let r: [u8; 32] = h.finalize().into();
        uuid_v7(ms, &r)
    }
}

fn now_unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A UUIDv7 string from a Unix millisecond time and random bytes.
fn uuid_v7(ms: u64, r: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&(ms & 0xFFFF_FFFF_FFFF).to_be_bytes()[2..]);
    b[6..].copy_from_slice(&r[..10]);
    b[6] = 0x70 | (b[6] & 0x0F); // version 7
    b[8] = 0x80 | (b[8] & 0x3F); // variant 10
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_ordered_by_time_and_reproducible_for_a_file() {
        let clock = IdClock::Media {
            origin: 1_796_000_000.0,
        };
        let mut a = EventIds::new(b"clip.mp4|123|456", "cam", clock);
        let mut b = EventIds::new(b"clip.mp4|123|456", "cam", clock);
        let (a1, a2) = (a.next(1.0), a.next(2.5));
        assert_eq!((a1.clone(), a2.clone()), (b.next(1.0), b.next(2.5)));
        assert_ne!(a1, a2);
        assert!(a1 < a2, "time-ordered: {a1} {a2}");
        assert_eq!(a1.len(), 36);
        assert_eq!(&a1[14..15], "7", "{a1}");
        assert!("89ab".contains(&a1[19..20]), "{a1}");
        // 1 796 000 001 000 ms = 0x1a2_2b6d_0668 → the first 12 hex digits.
        assert_eq!(
            &a1[..13].replace('-', ""),
            &format!("{:012x}", 1_796_000_001_000u64)
        );
        // Another stream, another file: other ids.
        assert_ne!(
            EventIds::new(b"clip.mp4|123|456", "mic", clock).next(1.0),
            a1
        );
        assert_ne!(EventIds::new(b"other.mp4|1|2", "cam", clock).next(1.0), a1);
    }

    #[test]
    fn live_keys_differ_between_runs() {
        assert_ne!(EventIds::random_key(), EventIds::random_key());
        let mut w = EventIds::new(&EventIds::random_key(), "cam", IdClock::Wall);
        let id = w.next(0.0);
        let ms = u64::from_str_radix(&id[..13].replace('-', ""), 16).unwrap();
        let now = (now_unix_ns() / 1_000_000) as u64;
        assert!(now >= ms && now - ms < 60_000, "{id}");
    }
}
