//! Did every track decode completely? Gaps inside the media (a decoder that skipped a
//! corrupt stretch) and tracks that end well before the container's declared duration
//! (an edit list, a damaged audio track) become [`SourceWarning`]s: `source_warning` events
//! and lines in the summary (a failure with `--strict`). A file whose *every* track ends
//! early is a [`super::SourceError::Truncated`] instead.

use crate::core::clock::{Duration, Timestamp};
pub use crate::core::event::SourceWarning;
use crate::core::media::Modality;

/// Video jumps shorter than this are not gaps (variable frame rates, a dropped frame).
const MIN_VIDEO_GAP: Duration = Duration(250_000_000);
/// Audio jumps shorter than this are not gaps (encoder priming, rounding).
const MIN_AUDIO_GAP: Duration = Duration(100_000_000);
/// Gaps listed one by one; more are counted only.
const MAX_LISTED: usize = 16;

/// Gaps seen per modality while decoding.
#[derive(Debug, Default)]
pub struct Gaps {
    count: [u32; 2],
    seconds: [f64; 2],
    listed: Vec<(Modality, Timestamp, Timestamp)>,
}

fn modality(which: usize) -> Modality {
    if which == 0 {
        Modality::Video
    } else {
        Modality::Audio
    }
}

impl Gaps {
    /// Notes that modality `which` (0 video, 1 audio) was expected to continue at
    /// `expected` and continued at `actual`; `frame` is the nominal frame duration (0 for
    /// audio). Small jumps and overlaps are not gaps.
    pub(crate) fn note(
        &mut self,
        which: usize,
        expected: Timestamp,
        actual: Timestamp,
        frame: Duration,
    ) {
        let min = if which == 0 {
            MIN_VIDEO_GAP.0.max(frame.0.saturating_mul(3))
        } else {
            MIN_AUDIO_GAP.0
        };
        let gap = actual.0.saturating_sub(expected.0);
        if gap < min {
            return;
        }
        self.count[which] += 1;
        self.seconds[which] += gap as f64 / 1e9;
        if self.listed.len() < MAX_LISTED {
            self.listed.push((modality(which), expected, actual));
        }
    }

    /// The warnings: one per listed gap, one summing the rest, and one per track (of
    /// `tracks`, with where each ended) that ends more than `slack` before `declared`.
    pub fn warnings(
        &self,
        tracks: &[(Modality, Timestamp)],
        declared: Option<f64>,
        slack: f64,
    ) -> Vec<SourceWarning> {
        let name = |m: Modality| match m {
            Modality::Video => "video",
            Modality::Audio => "audio",
        };
        let mut out: Vec<SourceWarning> = self
            .listed
            .iter()
            .map(|&(m, from, to)| SourceWarning {
                start: from.as_secs_f64(),
                end: to.as_secs_f64(),
                message: format!(
                    "{} gap: nothing decoded from {:.3} s to {:.3} s ({:.3} s missing; a corrupt or skipped stretch)",
                    name(m),
                    from.as_secs_f64(),
                    to.as_secs_f64(),
                    (to.0 - from.0) as f64 / 1e9
                ),
            })
            .collect();
        let listed = self.listed.len() as u32;
        let total: u32 = self.count.iter().sum();
        if total > listed {
            let end = self.listed.last().map(|l| l.2.as_secs_f64()).unwrap_or(0.0);
            out.push(SourceWarning {
                start: end,
                end,
                message: format!(
                    "{} more gaps (video: {} gaps, {:.2} s missing; audio: {} gaps, {:.2} s missing in all)",
                    total - listed,
                    self.count[0],
                    self.seconds[0],
                    self.count[1],
                    self.seconds[1]
                ),
            });
        }
        if let Some(declared) = declared {
            for &(m, ended) in tracks {
                let at = ended.as_secs_f64();
                if at + slack < declared {
                    out.push(SourceWarning {
                        start: at,
                        end: declared,
                        message: format!(
                            "{} track ends at {at:.3} s but the container declares {declared:.3} s ({:.3} s not decoded)",
                            name(m),
                            declared - at
                        ),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn small_jumps_are_not_gaps_and_large_ones_are_listed() {
        let mut g = Gaps::default();
        let frame = Duration(S / 30);
        g.note(0, Timestamp(S), Timestamp(S + 2 * frame.0), frame);
        g.note(1, Timestamp(S), Timestamp(S + S / 20), Duration(0));
        assert!(g.warnings(&[], None, 1.0).is_empty());
        g.note(0, Timestamp(2 * S), Timestamp(3 * S + S / 10), frame);
        g.note(1, Timestamp(4 * S), Timestamp(7 * S), Duration(0));
        let w = g.warnings(&[], None, 1.0);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].message.starts_with("video gap"), "{}", w[0].message);
        assert!((w[1].end - w[1].start - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_track_ending_early_is_a_warning() {
        let g = Gaps::default();
        let tracks = [
            (Modality::Video, Timestamp(10 * S)),
            (Modality::Audio, Timestamp(5 * S + S / 5)),
        ];
        let w = g.warnings(&tracks, Some(10.0), 1.0);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].message.starts_with("audio track ends at 5.200 s"),
            "{}",
            w[0].message
        );
        assert!(g.warnings(&tracks, None, 1.0).is_empty());
    }

    #[test]
    fn gaps_beyond_the_list_are_summed() {
        let mut g = Gaps::default();
        for i in 0..(MAX_LISTED as u64 + 3) {
            g.note(
                1,
                Timestamp(i * 10 * S),
                Timestamp(i * 10 * S + S),
                Duration(0),
            );
        }
        let w = g.warnings(&[], None, 1.0);
        assert_eq!(w.len(), MAX_LISTED + 1);
        assert!(
            w[MAX_LISTED].message.starts_with("3 more gaps"),
            "{}",
            w[MAX_LISTED].message
        );
    }
}
