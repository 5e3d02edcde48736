//! `speech` events from the voice-activity detector's per-chunk probabilities.

use super::INPUT_GAP_S;
use crate::core::event::{Event, EventKind};
use crate::core::settings::{check, in_range, Invalid};

/// Settings of `speech` events from per-chunk speech probability (Silero VAD's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// Probability that starts speech.
    pub on: f32,
    /// Probability below which speech may end.
    pub off: f32,
    /// Seconds below `off` before speech ends.
    pub min_silence: f64,
    /// Shortest speech reported, seconds.
    pub min_duration: f64,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            on: 0.5,
            off: 0.35,
            min_silence: 0.3,
            min_duration: 0.25,
        }
    }
}

impl SpeechConfig {
    /// Checks the keys of `[speech]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        for (k, v) in [("on", self.on), ("off", self.off)] {
            check(
                in_range(f64::from(v), 0.0, 1.0),
                k,
                v,
                "a probability from 0 to 1",
            )?;
        }
        check(self.off <= self.on, "off", self.off, "≤ speech.on")?;
        for (k, v) in [
            ("min_silence", self.min_silence),
            ("min_duration", self.min_duration),
        ] {
            check(in_range(v, 0.0, 600.0), k, v, "seconds, 0 to 600")?;
        }
        Ok(())
    }
}

struct OpenSpeech {
    start: f64,
    last_on: f64,
    sum: f64,
    n: u32,
}

/// Turns speech probabilities (one per VAD chunk, in order) into `speech` events.
pub struct SpeechDetector {
    cfg: SpeechConfig,
    open: Option<OpenSpeech>,
    /// End of the last chunk seen.
    last_end: Option<f64>,
}

impl SpeechDetector {
    /// A detector with the given settings.
    pub fn new(cfg: SpeechConfig) -> Self {
        Self {
            cfg,
            open: None,
            last_end: None,
        }
    }

    /// Takes the probability of the chunk `[t, t + len)`; appends finished events.
    pub fn push(&mut self, stream: &str, t: f64, len: f64, prob: f32, out: &mut Vec<Event>) {
        // A hole in the audio closes open speech at the last audio heard.
        if self.last_end.is_some_and(|e| t - e > INPUT_GAP_S) {
            self.close(stream, out);
        }
        self.last_end = Some(t + len);
        match &mut self.open {
            None => {
                if prob >= self.cfg.on {
                    self.open = Some(OpenSpeech {
                        start: t,
                        last_on: t + len,
                        sum: f64::from(prob),
                        n: 1,
                    });
                }
            }
            Some(open) => {
                if prob >= self.cfg.off {
                    open.last_on = t + len;
                    open.sum += f64::from(prob);
                    open.n += 1;
                } else if t - open.last_on > self.cfg.min_silence {
                    self.close(stream, out);
                }
            }
        }
    }

    /// Closes open speech at the end of the stream.
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.close(stream, out);
    }

    fn close(&mut self, stream: &str, out: &mut Vec<Event>) {
        if let Some(e) = self.opened(stream) {
            out.push(e);
        }
        self.open = None;
    }

    /// The speech going on now, once long enough to be reported (`end`: the last voiced
    /// chunk so far), for its `start` message.
    pub fn opened(&self, stream: &str) -> Option<Event> {
        let open = self.open.as_ref()?;
        if open.last_on - open.start < self.cfg.min_duration {
            return None;
        }
        let mean = (open.sum / f64::from(open.n.max(1))) as f32;
        let mut e = Event::new(EventKind::Speech, stream, open.start, open.last_on, mean);
        e.labels.push(crate::core::event::Label {
            name: "Speech".into(),
            score: mean,
        });
        e.evidence.active_frames = Some(open.n);
        Some(e)
    }
}

#[cfg(test)]
mod speech_tests {
    use super::*;

    #[test]
    fn speech_with_a_short_pause_is_one_event_and_blips_are_ignored() {
        let mut d = SpeechDetector::new(SpeechConfig::default());
        let mut out = Vec::new();
        let chunk = 0.032;
        // 1 s silence, 1 s speech, 0.15 s pause, 0.5 s speech, 1 s silence, one 32 ms blip.
        let mut probs = vec![0.02f32; 31];
        probs.extend(vec![0.9; 31]);
        probs.extend(vec![0.1; 5]);
        probs.extend(vec![0.8; 16]);
        probs.extend(vec![0.05; 31]);
        probs.push(0.7);
        probs.extend(vec![0.05; 20]);
        for (i, p) in probs.iter().enumerate() {
            d.push("s", i as f64 * chunk, chunk, *p, &mut out);
        }
        d.finish("s", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!((out[0].start - 31.0 * chunk).abs() < 1e-6);
        assert!((out[0].end - 83.0 * chunk).abs() < 1e-6);
        assert!(out[0].confidence > 0.8);
    }
}
