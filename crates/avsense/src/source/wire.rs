//! The wire format of frames and audio sent to avsense over a network (the `zenoh` source):
//! a fixed 24-byte little-endian header, then the bytes — simple enough to write from any
//! language without a schema compiler.
//!
//! ```text
//! offset size  field
//!  0     4     magic "AVS1"
//!  4     1     kind: 1 video frame, 2 audio buffer, 3 end of stream
//!  5     1     format: video 1 RGB, 2 BGR, 3 GRAY8, 4 NV12, 5 I420 (tight rows, planes in order);
//!              audio 1 F32LE, 2 S16LE (interleaved)
//!  6     2     reserved, 0
//!  8     8     pts, ns on the sender's monotonic clock (video and audio on the same clock)
//! 16     4     video: width;  audio: sample rate (Hz)
//! 20     4     video: height; audio: channels (u16) + 2 reserved bytes
//! 24     …     the pixels / samples
//! ```
//!
//! Why not CDR `sensor_msgs/Image`: a ROS 2 message needs its IDL type support on both
//! sides and carries no audio type in the core message set; this header carries both
//! modalities on one key in their timing order, which is what the pipeline's alignment
//! needs. A ROS 2 bridge can re-wrap `sensor_msgs/Image` payloads into it.

use super::push::PushFormat;

/// The magic bytes.
pub const MAGIC: &[u8; 4] = b"AVS1";
/// Header length.
pub const HEADER: usize = 24;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum WireMessage<'a> {
    /// A video frame.
    Video {
        /// ns.
        pts: u64,
        /// Pixels.
        width: u32,
        /// Pixels.
        height: u32,
        /// Layout.
        format: PushFormat,
        /// Tight planes.
        data: &'a [u8],
    },
    /// Interleaved audio.
    Audio {
        /// ns of the first sample.
        pts: u64,
        /// Hz.
        rate: u32,
        /// Channels.
        channels: u16,
        /// Samples, converted to f32.
        samples: Vec<f32>,
    },
    /// The sender has finished.
    End,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header or without the magic.
    #[error("not an AVS1 message ({len} bytes)")]
    NotWire {
        /// Its length.
        len: usize,
    },
    /// A kind or format this version does not know.
    #[error("unknown {what} {value}")]
    Unknown {
        /// `kind` or `format`.
        what: &'static str,
        /// The byte.
        value: u8,
    },
    /// The payload's length does not fit the header.
    #[error("a payload of {got} bytes, expected {expected}")]
    Length {
        /// Got.
        got: usize,
        /// Expected.
        expected: usize,
    },
}

fn video_code(f: PushFormat) -> u8 {
    match f {
        PushFormat::Rgb => 1,
        PushFormat::Bgr => 2,
        PushFormat::Gray8 => 3,
        PushFormat::Nv12 => 4,
        PushFormat::I420 => 5,
    }
}

fn header(kind: u8, format: u8, pts: u64, a: u32, b: u32, payload: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload);
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.push(format);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&pts.to_le_bytes());
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    out
}

/// A video frame message.
pub fn encode_video(pts: u64, width: u32, height: u32, format: PushFormat, data: &[u8]) -> Vec<u8> {
    let mut out = header(1, video_code(format), pts, width, height, data.len());
    out.extend_from_slice(data);
    out
}

/// An audio message (f32 samples, interleaved).
pub fn encode_audio_f32(pts: u64, rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
    let mut out = header(2, 1, pts, rate, u32::from(channels), samples.len() * 4);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// An audio message (i16 samples, interleaved).
pub fn encode_audio_i16(pts: u64, rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let mut out = header(2, 2, pts, rate, u32::from(channels), samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The end-of-stream message.
pub fn encode_end() -> Vec<u8> {
    header(3, 0, 0, 0, 0, 0)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Reads one message.
pub fn decode(bytes: &[u8]) -> Result<WireMessage<'_>, WireError> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(WireError::NotWire { len: bytes.len() });
    }
    let (kind, format) = (bytes[4], bytes[5]);
    let mut p = [0u8; 8];
    p.copy_from_slice(&bytes[8..16]);
    let pts = u64::from_le_bytes(p);
    let (a, b) = (u32_at(bytes, 16), u32_at(bytes, 20));
    let payload = &bytes[HEADER..];
    match kind {
        1 => {
            let format = match format {
                1 => PushFormat::Rgb,
                2 => PushFormat::Bgr,
                3 => PushFormat::Gray8,
                4 => PushFormat::Nv12,
                5 => PushFormat::I420,
                v => {
                    return Err(WireError::Unknown {
                        what: "video format",
                        value: v,
                    })
                }
            };
            let expected = format.size(a, b);
            if payload.len() != expected {
                return Err(WireError::Length {
                    got: payload.len(),
                    expected,
                });
            }
            Ok(WireMessage::Video {
                pts,
                width: a,
                height: b,
                format,
                data: payload,
            })
        }
        2 => {
            let samples: Vec<f32> = match format {
                1 if payload.len().is_multiple_of(4) => payload
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                2 if payload.len().is_multiple_of(2) => payload
                    .chunks_exact(2)
                    .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
                    .collect(),
                1 | 2 => {
                    let w = if format == 1 { 4 } else { 2 };
                    return Err(WireError::Length {
                        got: payload.len(),
                        expected: payload.len() / w * w,
                    });
                }
                v => {
                    return Err(WireError::Unknown {
                        what: "audio format",
                        value: v,
                    })
                }
            };
            Ok(WireMessage::Audio {
                pts,
                rate: a,
                channels: (b & 0xFFFF) as u16,
                samples,
            })
        }
        3 => Ok(WireMessage::End),
        v => Err(WireError::Unknown {
            what: "kind",
            value: v,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_ones_are_named() {
        let px = vec![7u8; PushFormat::I420.size(4, 2)];
        let v = encode_video(42, 4, 2, PushFormat::I420, &px);
        assert_eq!(v.len(), HEADER + px.len());
        assert_eq!(
            decode(&v).unwrap(),
            WireMessage::Video {
                pts: 42,
                width: 4,
                height: 2,
                format: PushFormat::I420,
                data: &px
            }
        );
        let a = encode_audio_f32(9, 48_000, 2, &[0.5, -0.25]);
        assert_eq!(
            decode(&a).unwrap(),
            WireMessage::Audio {
                pts: 9,
                rate: 48_000,
                channels: 2,
                samples: vec![0.5, -0.25]
            }
        );
        let i = encode_audio_i16(1, 16_000, 1, &[16384, -32768]);
        match decode(&i).unwrap() {
            WireMessage::Audio { samples, .. } => assert_eq!(samples, vec![0.5, -1.0]),
            other => panic!("{other:?}"),
        }
        assert_eq!(decode(&encode_end()).unwrap(), WireMessage::End);
        assert!(matches!(
            decode(b"AVS1"),
            Err(WireError::NotWire { len: 4 })
        ));
        let mut bad = v.clone();
        bad.pop();
        assert!(matches!(decode(&bad), Err(WireError::Length { .. })));
        bad = v.clone();
        bad[5] = 9;
        assert_eq!(
            decode(&bad).unwrap_err().to_string(),
            "unknown video format 9"
        );
    }
}
