//! `motion` events from the motion encoder's grid.
//!
//! [`MotionDetector`]: a frame is *active* when at least `min_cells` grid cells changed by
//! `cell_threshold`; an event starts on the first active frame and ends `hangover`
//! seconds after the last one (its `end` is the end of that last active frame).

use crate::core::event::{Event, EventKind};
use crate::core::features::VisionFeatures;
use crate::encode::video::motion::{MotionConfig, MotionFeatures};
use std::collections::BTreeSet;

struct OpenMotion {
    start: f64,
    last_active_end: f64,
    cells: BTreeSet<usize>,
    peak_area: f32,
    peak_cell: f32,
    active_frames: u32,
}

/// Turns per-frame motion into `motion` events (see the module doc).
pub struct MotionDetector {
    cfg: MotionConfig,
    open: Option<OpenMotion>,
}

impl MotionDetector {
    /// A detector with the given settings.
    pub fn new(cfg: MotionConfig) -> Self {
        Self { cfg, open: None }
    }

    /// Takes one frame's features (in time order); appends finished events to `out`.
    pub fn push(&mut self, f: &VisionFeatures, out: &mut Vec<Event>) {
        let Some(m) = f.get::<MotionFeatures>() else {
            return;
        };
        let t = f.pts.as_secs_f64();
        let t_end = f.end().as_secs_f64();
        let active: Vec<usize> = if m.reset {
            Vec::new()
        } else {
            m.active_cells(self.cfg.cell_threshold).collect()
        };
        let is_active = active.len() >= self.cfg.min_cells as usize;
        if let Some(open) = &self.open {
            if t - open.last_active_end > self.cfg.hangover {
                self.close(&f.stream, out);
            }
        }
        if !is_active {
            return;
        }
        let peak_cell = active.iter().map(|&i| m.cells[i]).fold(0.0, f32::max);
        let open = self.open.get_or_insert_with(|| OpenMotion {
            start: t,
            last_active_end: t_end,
            cells: BTreeSet::new(),
            peak_area: 0.0,
            peak_cell: 0.0,
            active_frames: 0,
        });
        open.last_active_end = t_end;
        open.cells.extend(active);
        open.peak_area = open.peak_area.max(m.changed);
        open.peak_cell = open.peak_cell.max(peak_cell);
        open.active_frames += 1;
    }

    /// Closes an open event at its true end (end of input).
    pub fn finish(&mut self, stream: &str, out: &mut Vec<Event>) {
        self.close(stream, out);
    }

    fn close(&mut self, stream: &str, out: &mut Vec<Event>) {
        if let Some(e) = self.opened(stream) {
            out.push(e);
        }
        self.open = None;
    }

    /// The motion going on now, once long enough to be reported (`end`: the end of its
    /// last active frame so far), for its `start` message.
    pub fn opened(&self, stream: &str) -> Option<Event> {
        let open = self.open.as_ref()?;
        if open.last_active_end - open.start < self.cfg.min_duration {
            return None;
        }
        let cols = self.cfg.grid[0];
        // Confidence: how clearly the busiest cell changed (a whole cell = 1).
        let mut e = Event::new(
            EventKind::Motion,
            stream,
            open.start,
            open.last_active_end,
            open.peak_cell,
        );
        e.labels.push(crate::core::event::Label {
            name: "motion".into(),
            score: e.confidence,
        });
        e.evidence.grid = Some(self.cfg.grid);
        e.evidence.cells = Some(
            open.cells
                .iter()
                .map(|&i| [i as u32 % cols, i as u32 / cols])
                .collect(),
        );
        e.evidence.peak_area = Some(open.peak_area);
        e.evidence.active_frames = Some(open.active_frames);
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};
    use std::sync::Arc;

    #[test]
    fn motion_bridges_short_gaps_and_ends_at_the_last_active_frame() {
        let mut d = MotionDetector::new(MotionConfig {
            grid: [2, 1],
            hangover: 0.5,
            ..MotionConfig::default()
        });
        let mut out = Vec::new();
        let frame = |i: u64, active: bool| {
            VisionFeatures {
                stream: Arc::from("s"),
                pts: Timestamp(i * 100_000_000),
                duration: Duration(100_000_000),
                index: i,
                ext: Default::default(),
            }
            .with(MotionFeatures {
                grid: [2, 1],
                cells: vec![if active { 0.5 } else { 0.0 }, 0.0],
                changed: if active { 0.25 } else { 0.0 },
                energy: 0.0,
                reset: false,
            })
        };
        // Active 10–19, gap of 3 frames (< hangover), active 23–25, then quiet.
        for i in 0..40 {
            d.push(
                &frame(i, (10..20).contains(&i) || (23..26).contains(&i)),
                &mut out,
            );
        }
        d.finish("s", &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!((out[0].start - 1.0).abs() < 1e-9 && (out[0].end - 2.6).abs() < 1e-9);
        assert_eq!(out[0].evidence.cells, Some(vec![[0, 0]]));
    }
}
