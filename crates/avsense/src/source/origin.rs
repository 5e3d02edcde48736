//! Where a recorded input sits in real time, and what identifies it: the time origin of
//! its events' `wall_time` and the key of their ids ([`crate::core::ids`]).

use super::config::{SourceConfig, SourceKind};
use crate::core::ids::{EventIds, IdClock};
use crate::core::latency::parse_rfc3339;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Seconds from 1904-01-01 (QuickTime's epoch) to 1970-01-01.
const QT_EPOCH_OFFSET: u64 = 2_082_844_800;

/// The ids and time origin of one source's events: live sources get wall-clock ids with a
/// random key and no origin (their `wall_time` comes from the capture clock); recorded
/// input gets ids from its identity and, when known, an origin: `time_origin` from the
/// config, else the container's creation time (MP4 / QuickTime `mvhd`).
pub fn event_ids(src: &SourceConfig) -> (EventIds, Option<f64>) {
    if src.is_live() {
        let key = EventIds::random_key();
        return (EventIds::new(&key, &src.name, IdClock::Wall), None);
    }
    let path = src.path.clone();
    let origin = src
        .time_origin
        .as_deref()
        .and_then(parse_rfc3339)
        .or_else(|| path.as_deref().and_then(creation_time));
    let mut key = format!("{:?}|", src.kind);
    match (&path, &src.uri, &src.launch) {
        (Some(p), _, _) => {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            key.push_str(&p.to_string_lossy());
            if let Ok(m) = std::fs::metadata(&p) {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                key.push_str(&format!("|{}|{mtime}", m.len()));
            }
        }
        (None, Some(u), _) => key.push_str(u),
        (None, None, Some(l)) => key.push_str(l),
        _ => key.push_str(&format!("{:?}", src.duration)),
    }
    if src.kind == SourceKind::Test {
        key.push_str(&format!("|{:?}", src.duration));
    }
    let clock = IdClock::Media {
        origin: origin.unwrap_or(0.0),
    };
    (EventIds::new(key.as_bytes(), &src.name, clock), origin)
}

/// The creation time (Unix seconds) an MP4 / QuickTime file declares in its movie header,
/// when set (None: another container, an unset time, or a file that cannot be read).
pub fn creation_time(path: &Path) -> Option<f64> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let moov = find_box(&mut f, 0, len, b"moov")?;
    let mvhd = find_box(&mut f, moov.0, moov.1, b"mvhd")?;
    f.seek(SeekFrom::Start(mvhd.0)).ok()?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).ok()?;
    let secs = if head[0] == 1 {
        u64::from_be_bytes(head[4..12].try_into().ok()?)
    } else {
        u64::from(u32::from_be_bytes(head[4..8].try_into().ok()?))
    };
    (secs > QT_EPOCH_OFFSET).then(|| (secs - QT_EPOCH_OFFSET) as f64)
}

/// The payload `(start, end)` of the first box of type `want` among the boxes in
/// `[from, to)`.
fn find_box(f: &mut std::fs::File, from: u64, to: u64, want: &[u8; 4]) -> Option<(u64, u64)> {
    let mut at = from;
    // A bounded walk: a corrupt size cannot make it loop for long.
    for _ in 0..4096 {
        if at + 8 > to {
            return None;
        }
        f.seek(SeekFrom::Start(at)).ok()?;
        let mut h = [0u8; 8];
        f.read_exact(&mut h).ok()?;
        let mut size = u64::from(u32::from_be_bytes(h[..4].try_into().ok()?));
        let mut header = 8;
        if size == 1 {
            let mut big = [0u8; 8];
            f.read_exact(&mut big).ok()?;
            size = u64::from_be_bytes(big);
            header = 16;
        } else if size == 0 {
            size = to - at;
        }
        if size < header || at + size > to {
            return None;
        }
        if &h[4..8] == want {
            return Some((at + header, at + size));
        }
        at += size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn box_of(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn reads_the_movie_headers_creation_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut mvhd = vec![0u8; 100];
        let t = QT_EPOCH_OFFSET as u32 + 1_796_000_000u32;
        mvhd[4..8].copy_from_slice(&t.to_be_bytes());
        let mut file = box_of(b"ftyp", b"isom0000");
        file.extend(box_of(b"mdat", &[7u8; 33]));
        let mut moov = box_of(b"trak", &[0u8; 20]);
        moov.extend(box_of(b"mvhd", &mvhd));
        file.extend(box_of(b"moov", &moov));
        let p = dir.path().join("a.mp4");
        std::fs::File::create(&p).unwrap().write_all(&file).unwrap();
        assert_eq!(creation_time(&p), Some(1_796_000_000.0));
        // Unset (0), truncated, or not an MP4 at all: none.
        mvhd[4..8].copy_from_slice(&[0; 4]);
        let mut unset = box_of(b"ftyp", b"isom0000");
        unset.extend(box_of(b"moov", &box_of(b"mvhd", &mvhd)));
        std::fs::write(&p, &unset).unwrap();
        assert_eq!(creation_time(&p), None);
        std::fs::write(&p, &file[..file.len() - 50]).unwrap();
        assert_eq!(creation_time(&p), None);
        std::fs::write(&p, b"not a movie at all, just text").unwrap();
        assert_eq!(creation_time(&p), None);
    }

    #[test]
    fn a_file_gets_the_same_ids_each_run_and_a_live_source_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clip.mp4");
        std::fs::write(&p, b"x").unwrap();
        let mut src = SourceConfig::new("cam", SourceKind::File);
        src.path = Some(p);
        src.time_origin = Some("2026-12-07T06:00:00Z".into());
        let (mut a, oa) = event_ids(&src);
        let (mut b, _) = event_ids(&src);
        assert_eq!(a.next(1.0), b.next(1.0));
        assert_eq!(oa, parse_rfc3339("2026-12-07T06:00:00Z"));
        let live = SourceConfig::new("cam", SourceKind::Rtsp);
        let (mut l1, o) = event_ids(&live);
        let (mut l2, _) = event_ids(&live);
        assert!(o.is_none());
        assert_ne!(l1.next(1.0), l2.next(1.0));
    }
}
