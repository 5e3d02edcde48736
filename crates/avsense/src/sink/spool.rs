//! An on-disk, bounded, ordered spool of messages for a network sink: nothing the pipeline
//! perceives is lost while the broker is away, and what was not acknowledged when avsense
//! stopped is sent by the next run with the same spool directory.
//!
//! Layout of the directory: segment files `<first seq, 20 digits>.seg` of records
//! (`u32` length of the rest, `u64` seq, `u8` retain, `u16` topic length, topic, payload;
//! little-endian), and `acked`: the highest sequence number the broker acknowledged (all
//! below it were acknowledged too; written through a temporary file and a rename). A
//! segment whose records are all acknowledged is deleted. On open, the unacknowledged
//! records of every segment are read back in order; a torn record at the end of the last
//! segment (a crash mid-write) is cut off.
//!
//! The unacknowledged records are also kept in memory (the spool is bounded by `max_bytes`,
//! so memory is too). When a new record would go past `max_bytes` it is dropped and counted.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes per segment file before a new one starts.
const SEGMENT_BYTES: u64 = 4 << 20;

/// Errors of the spool; each names the directory or file.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file of the spool could not be read or written.
    #[error("spool {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its place in the order, from 1.
    pub seq: u64,
    /// Whether the broker retains it.
    pub retain: bool,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Record {
    fn size(&self) -> u64 {
        (4 + 8 + 1 + 2 + self.topic.len() + self.payload.len()) as u64
    }
}

/// The spool (see the module doc).
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Unacknowledged records, in order.
    pending: VecDeque<Record>,
    pending_bytes: u64,
    /// The segment being written: (first seq, writer, bytes).
    current: Option<(u64, BufWriter<File>, u64)>,
    /// Segments on disk, oldest first: (first seq, last seq written to it).
    segments: VecDeque<(u64, u64)>,
    next_seq: u64,
    acked: u64,
    dropped: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, bounded by `max_bytes` of unacknowledged
    /// records, and reads back what a previous run left unacknowledged.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let acked_path = dir.join("acked");
        let acked = match std::fs::read_to_string(&acked_path) {
            Ok(t) => t.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&acked_path)(e)),
        };
        let mut firsts: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".seg").and_then(|n| n.parse().ok())
            })
            .collect();
        firsts.sort_unstable();
        let mut s = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            pending: VecDeque::new(),
            pending_bytes: 0,
            current: None,
            segments: VecDeque::new(),
            next_seq: acked + 1,
            acked,
            dropped: 0,
        };
        for first in firsts {
            let path = s.segment_path(first);
            let (records, good_len) = read_segment(&path)?;
            let last = records.last().map_or(first.saturating_sub(1), |r| r.seq);
            // Cut a torn tail (a crash mid-write) so later appends stay readable.
            let len = std::fs::metadata(&path).map_err(io(&path))?.len();
            if good_len < len {
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(good_len))
                    .map_err(io(&path))?;
            }
            if last <= acked {
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            for r in records.into_iter().filter(|r| r.seq > acked) {
                s.pending_bytes += r.size();
                s.next_seq = s.next_seq.max(r.seq + 1);
                s.pending.push_back(r);
            }
            s.segments.push_back((first, last));
        }
        Ok(s)
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.seg"))
    }

    /// Appends a message; returns false (and counts it) when the spool is full.
    pub fn push(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<bool, SpoolError> {
        let r = Record {
            seq: self.next_seq,
            retain,
            topic: topic.to_string(),
            payload: payload.to_vec(),
        };
        if self.pending_bytes + r.size() > self.max_bytes {
            self.dropped += 1;
            return Ok(false);
        }
        let rotate = self
            .current
            .as_ref()
            .is_none_or(|(_, _, bytes)| *bytes >= SEGMENT_BYTES);
        if rotate {
            if let Some((_, mut w, _)) = self.current.take() {
                let path = self.dir.clone();
                w.flush().map_err(io(&path))?;
            }
            let path = self.segment_path(r.seq);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            self.current = Some((r.seq, BufWriter::new(f), 0));
            self.segments.push_back((r.seq, r.seq));
        }
        let first = self.current.as_ref().map_or(r.seq, |c| c.0);
        let path = self.segment_path(first);
        if let Some((_, w, bytes)) = &mut self.current {
            let topic = r.topic.as_bytes();
            let body = 8 + 1 + 2 + topic.len() + r.payload.len();
            let mut buf = Vec::with_capacity(4 + body);
            buf.extend_from_slice(&(body as u32).to_le_bytes());
            buf.extend_from_slice(&r.seq.to_le_bytes());
            buf.push(u8::from(r.retain));
            buf.extend_from_slice(&(topic.len() as u16).to_le_bytes());
            buf.extend_from_slice(topic);
            buf.extend_from_slice(&r.payload);
            // Flushed per record: a crash of avsense (not of the machine) loses nothing.
            w.write_all(&buf)
                .and_then(|_| w.flush())
                .map_err(io(&path))?;
            *bytes += buf.len() as u64;
        }
        if let Some(s) = self.segments.back_mut() {
            s.1 = r.seq;
        }
        self.next_seq += 1;
        self.pending_bytes += r.size();
        self.pending.push_back(r);
        Ok(true)
    }

    /// The unacknowledged records, oldest first.
    pub fn pending(&self) -> &VecDeque<Record> {
        &self.pending
    }

    /// Records that did not fit (since open).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The broker acknowledged every record up to `seq`: forget them, persist the mark,
    /// delete segments with nothing unacknowledged left.
    pub fn ack_through(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq <= self.acked {
            return Ok(());
        }
        while self.pending.front().is_some_and(|r| r.seq <= seq) {
            if let Some(r) = self.pending.pop_front() {
                self.pending_bytes -= r.size();
            }
        }
        self.acked = seq;
        let tmp = self.dir.join("acked.tmp");
        let path = self.dir.join("acked");
        std::fs::write(&tmp, seq.to_string()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let current = self.current.as_ref().map(|c| c.0);
        while let Some(&(first, last)) = self.segments.front() {
            if last > seq || Some(first) == current {
                break;
            }
            self.segments.pop_front();
            let p = self.segment_path(first);
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
        Ok(())
    }
}

/// The records of a segment file and the length of its readable part.
fn read_segment(path: &Path) -> Result<(Vec<Record>, u64), SpoolError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(len) = bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(|b| u32::from_le_bytes(b) as usize)
    {
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            break;
        };
        if len < 11 {
            break;
        }
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or([0; 8]));
        let retain = body[8] != 0;
        let tl = u16::from_le_bytes([body[9], body[10]]) as usize;
        let Some(topic) = body.get(11..11 + tl) else {
            break;
        };
        let Ok(topic) = String::from_utf8(topic.to_vec()) else {
            break;
        };
        out.push(Record {
            seq,
            retain,
            topic,
            payload: body[11 + tl..].to_vec(),
        });
        at += 4 + len;
    }
    Ok((out, at as u64))
}

/// Logs newly dropped messages of a full spool (once per increase of the count).
pub fn warn_drops(target: &str, spool_bytes: u64, dropped: u64, reported: &mut u64) {
    if dropped > *reported {
        tracing::warn!(
            "{target}: the spool is full ({} MB): {dropped} message(s) dropped so far",
            spool_bytes >> 20
        );
        *reported = dropped;
    }
}

/// Logs what a network sink leaves behind at the end of a run: messages still in the spool
/// (sent by the next run with the same spool directory) and messages a full spool dropped.
pub fn warn_leftovers(target: &str, spool: &Path, left: usize, dropped: u64) {
    if left > 0 {
        tracing::warn!(
            "{target}: {left} message(s) not taken by the server stay in the spool {} for the next run",
            spool.display()
        );
    }
    if dropped > 0 {
        tracing::warn!("{target}: {dropped} message(s) dropped: the spool was full");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_restart_in_order_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            assert!(s.push("a/b", format!("m{i}").as_bytes(), i == 0).unwrap());
        }
        s.ack_through(2).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let left: Vec<(u64, Vec<u8>)> = s
            .pending()
            .iter()
            .map(|r| (r.seq, r.payload.clone()))
            .collect();
        assert_eq!(
            left,
            vec![
                (3, b"m2".to_vec()),
                (4, b"m3".to_vec()),
                (5, b"m4".to_vec())
            ]
        );
        // New records continue the order.
        s.push("a/b", b"m5", false).unwrap();
        assert_eq!(s.pending().back().map(|r| r.seq), Some(6));
        s.ack_through(6).unwrap();
        assert!(s.pending().is_empty());
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.pending().is_empty());
    }

    #[test]
    fn a_full_spool_drops_and_counts_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100).unwrap();
        let mut kept = 0;
        for _ in 0..10 {
            kept += u32::from(s.push("t", &[7u8; 20], false).unwrap());
        }
        assert_eq!((kept, s.dropped()), (2, 8));
        drop(s);
        // A crash mid-write: half a record at the end of the segment.
        let seg = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .unwrap()
            .path();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1000).unwrap();
        assert_eq!(s.pending().len(), 2);
        s.push("t", b"after", false).unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1000).unwrap();
        assert_eq!(s.pending().len(), 3);
        assert_eq!(s.pending()[2].payload, b"after");
    }
}
