//! Motion: per-frame luma difference against a running background, reported per cell of
//! a grid.
//!
//! GStreamer delivers small grayscale frames (`motion.width`, default 320 px wide), so this
//! costs a few hundred thousand byte operations per frame. When a detector runs, the frames
//! are the detector's RGB input instead and motion reads their luma. A pixel is *changed* when it
//! differs from the background by more than `pixel_threshold`; a cell's value is the
//! fraction of its pixels that changed. The background follows the scene with rate
//! `background_alpha`; when most of the frame changes at once (a cut, lights switched) the
//! background is reset instead of reporting motion everywhere.

use crate::core::features::VisionFeatures;
use crate::core::media::{Frame, PixelFormat, VideoSpec};
use crate::core::settings::{check, in_range, Invalid};
use crate::encode::{EncodeError, StreamInfo, VideoEncoder, VideoEncoderKind};
use serde::{Deserialize, Serialize};

/// Default width of the frames the motion encoder analyses (height keeps the aspect ratio).
pub const DEFAULT_MOTION_WIDTH: u32 = 320;

/// `[motion]`: the motion encoder and `motion` events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MotionConfig {
    /// Run the motion encoder.
    pub enabled: bool,
    /// Width of the grayscale frames GStreamer scales to for analysis (height keeps aspect).
    pub width: u32,
    /// Grid of cells `[columns, rows]` that motion is reported on.
    pub grid: [u32; 2],
    /// Luma difference (0–255) from the background that counts a pixel as changed.
    pub pixel_threshold: u8,
    /// Background update rate per frame (0 < alpha ≤ 1).
    pub background_alpha: f32,
    /// Fraction of a cell's pixels that must change for the cell to be active.
    pub cell_threshold: f32,
    /// Number of active cells needed for a frame to count as motion.
    pub min_cells: u32,
    /// Fraction of the frame that, changed at once, is a lighting change or a cut: the
    /// background is reset instead of reporting motion.
    pub global_change: f32,
    /// Seconds without motion before a `motion` event ends.
    pub hangover: f64,
    /// Minimum event length in seconds (shorter bursts are not reported).
    pub min_duration: f64,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            width: DEFAULT_MOTION_WIDTH,
            grid: [8, 6],
            pixel_threshold: 25,
            background_alpha: 0.05,
            cell_threshold: 0.02,
            min_cells: 1,
            global_change: 0.8,
            hangover: 1.0,
            min_duration: 0.0,
        }
    }
}

impl MotionConfig {
    /// The frames motion asks for: grayscale, `width` wide (it reads the luma of RGB frames
    /// too, when another encoder asks for those).
    pub fn input_spec(&self) -> VideoSpec {
        VideoSpec {
            width: self.width,
            height: None,
            format: PixelFormat::Gray8,
        }
    }

    /// Checks the keys of `[motion]` (named without the section).
    pub fn validate(&self) -> Result<(), Invalid> {
        let m = self;
        check(
            (16..=3840).contains(&m.width),
            "width",
            m.width,
            "16 to 3840 pixels",
        )?;
        check(
            m.grid[0] != 0 && m.grid[1] != 0 && m.grid[0] <= 64 && m.grid[1] <= 64,
            "grid",
            format!("{:?}", m.grid),
            "[columns, rows], each 1 to 64",
        )?;
        check(
            m.background_alpha > 0.0 && m.background_alpha <= 1.0,
            "background_alpha",
            m.background_alpha,
            "0 < alpha ≤ 1",
        )?;
        for (k, v) in [
            ("cell_threshold", m.cell_threshold),
            ("global_change", m.global_change),
        ] {
            check(v > 0.0 && v <= 1.0, k, v, "a fraction, 0 < x ≤ 1")?;
        }
        check(
            m.min_cells != 0 && m.min_cells <= m.grid[0] * m.grid[1],
            "min_cells",
            m.min_cells,
            "1 to columns × rows of motion.grid",
        )?;
        for (k, v) in [("hangover", m.hangover), ("min_duration", m.min_duration)] {
            check(in_range(v, 0.0, 600.0), k, v, "seconds, 0 to 600")?;
        }
        Ok(())
    }
}

/// Motion measured on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionFeatures {
    /// Grid size `[columns, rows]`.
    pub grid: [u32; 2],
    /// Per cell (row-major), the fraction of pixels that changed.
    pub cells: Vec<f32>,
    /// Fraction of the whole frame that changed.
    pub changed: f32,
    /// Mean absolute luma difference from the background (0–255).
    pub energy: f32,
    /// The background was (re)initialised on this frame: no motion is reported.
    pub reset: bool,
}

impl MotionFeatures {
    /// Indices of the cells whose changed fraction is at least `threshold`.
    pub fn active_cells(&self, threshold: f32) -> impl Iterator<Item = usize> + '_ {
        self.cells
            .iter()
            .enumerate()
            .filter(move |(_, v)| **v >= threshold)
            .map(|(i, _)| i)
    }
}

/// Row `y` of `frame` as luma: GRAY8 rows as they are, RGB rows converted (BT.601 weights,
/// integer arithmetic) into `buf`.
fn luma_row<'a>(frame: &'a Frame, y: u32, buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let row = frame.row(y)?;
    match frame.format {
        PixelFormat::Gray8 => Some(row),
        PixelFormat::Rgb => {
            buf.clear();
            buf.extend(
                row.chunks_exact(3).map(|p| {
                    ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8
                }),
            );
            Some(buf.as_slice())
        }
    }
}

/// The motion encoder (see the module doc).
pub struct MotionEncoder {
    cfg: MotionConfig,
    background: Vec<f32>,
    size: (u32, u32),
    counts: Vec<u32>,
    cell_pixels: Vec<u32>,
    luma: Vec<u8>,
}

impl MotionEncoder {
    /// A motion encoder with the given settings.
    pub fn new(cfg: MotionConfig) -> Self {
        Self {
            cfg,
            background: Vec::new(),
            size: (0, 0),
            counts: Vec::new(),
            cell_pixels: Vec::new(),
            luma: Vec::new(),
        }
    }

    /// Measures one frame and updates the background.
    pub fn measure(&mut self, frame: &Frame) -> Result<MotionFeatures, EncodeError> {
        let bad = |reason: String| EncodeError::BadInput {
            encoder: "motion",
            stream: frame.stream.to_string(),
            pts: frame.pts,
            reason,
        };
        let (w, h) = (frame.width, frame.height);
        let bpp = frame.format.bytes_per_pixel();
        if w == 0
            || h == 0
            || frame.data().len() < (h as usize - 1) * frame.stride + w as usize * bpp
        {
            return Err(bad(format!(
                "frame {}×{} with stride {} does not fit its {} bytes",
                w,
                h,
                frame.stride,
                frame.data().len()
            )));
        }
        let [cols, rows] = self.cfg.grid;
        let n_cells = (cols * rows) as usize;
        if self.size != (w, h) {
            // First frame (or a size change): the frame becomes the background.
            self.size = (w, h);
            self.background.clear();
            for y in 0..h {
                let row = luma_row(frame, y, &mut self.luma)
                    .ok_or_else(|| bad(format!("row {y} missing")))?;
                self.background.extend(row.iter().map(|&p| p as f32));
            }
            self.cell_pixels = vec![0; n_cells];
            for y in 0..h {
                let cy = (y * rows / h) as usize;
                for x in 0..w {
                    let cx = (x * cols / w) as usize;
                    self.cell_pixels[cy * cols as usize + cx] += 1;
                }
            }
            return Ok(MotionFeatures {
                grid: self.cfg.grid,
                cells: vec![0.0; n_cells],
                changed: 0.0,
                energy: 0.0,
                reset: true,
            });
        }

        self.counts.clear();
        self.counts.resize(n_cells, 0);
        let thr = f32::from(self.cfg.pixel_threshold);
        let alpha = self.cfg.background_alpha;
        let mut changed_total = 0u64;
        let mut abs_sum = 0f64;
        // Cell boundaries along x, computed once per frame.
        let col_of: Vec<u32> = (0..w).map(|x| x * cols / w).collect();
        for y in 0..h {
            let row = luma_row(frame, y, &mut self.luma)
                .ok_or_else(|| bad(format!("row {y} missing")))?;
            let bg = &mut self.background[(y * w) as usize..((y + 1) * w) as usize];
            let cell_row = (y * rows / h) * cols;
            let mut row_abs = 0f32;
            for ((&p, b), &cx) in row.iter().zip(bg.iter_mut()).zip(&col_of) {
                let p = p as f32;
                let d = p - *b;
                let ad = d.abs();
                row_abs += ad;
                if ad > thr {
                    self.counts[(cell_row + cx) as usize] += 1;
                }
                *b += alpha * d;
            }
            abs_sum += row_abs as f64;
        }
        let mut cells = Vec::with_capacity(n_cells);
        for (c, n) in self.counts.iter().zip(&self.cell_pixels) {
            changed_total += u64::from(*c);
            cells.push(*c as f32 / (*n).max(1) as f32);
        }
        let pixels = (w as u64 * h as u64) as f32;
        let changed = changed_total as f32 / pixels;
        let energy = (abs_sum / pixels as f64) as f32;
        if changed >= self.cfg.global_change {
            // A cut or a lighting change: adopt the new frame as the background.
            for y in 0..h {
                if let Some(row) = luma_row(frame, y, &mut self.luma) {
                    let bg = &mut self.background[(y * w) as usize..((y + 1) * w) as usize];
                    for (b, &p) in bg.iter_mut().zip(row) {
                        *b = p as f32;
                    }
                }
            }
            return Ok(MotionFeatures {
                grid: self.cfg.grid,
                cells: vec![0.0; n_cells],
                changed,
                energy,
                reset: true,
            });
        }
        Ok(MotionFeatures {
            grid: self.cfg.grid,
            cells,
            changed,
            energy,
            reset: false,
        })
    }
}

impl VideoEncoder for MotionEncoder {
    fn name(&self) -> &'static str {
        "motion"
    }

    fn input_spec(&self) -> VideoSpec {
        self.cfg.input_spec()
    }

    fn encode(&mut self, frames: &[Frame], out: &mut [VisionFeatures]) -> Result<(), EncodeError> {
        for (frame, feats) in frames.iter().zip(out.iter_mut()) {
            feats.ext.insert(self.measure(frame)?);
        }
        Ok(())
    }
}

/// The motion encoder as the pipeline registers it (nothing to load).
pub struct MotionKind {
    cfg: MotionConfig,
}

impl MotionKind {
    /// The kind for `[motion]`, or `None` when it is disabled.
    pub fn new(cfg: &MotionConfig) -> Option<Self> {
        cfg.enabled.then(|| Self { cfg: cfg.clone() })
    }
}

impl VideoEncoderKind for MotionKind {
    fn name(&self) -> &'static str {
        "motion"
    }

    fn input_spec(&self) -> VideoSpec {
        self.cfg.input_spec()
    }

    fn for_stream(
        &self,
        stream: &StreamInfo<'_>,
    ) -> Result<Option<Box<dyn VideoEncoder>>, EncodeError> {
        Ok(stream
            .video
            .then(|| Box::new(MotionEncoder::new(self.cfg.clone())) as Box<dyn VideoEncoder>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::{Duration, Timestamp};

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> u8, i: u64) -> Frame {
        let data: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Frame::from_pixels(
            "t",
            Timestamp(i * 33_333_333),
            Duration(33_333_333),
            w,
            h,
            PixelFormat::Gray8,
            data,
            i,
        )
        .unwrap()
    }

    #[test]
    fn a_square_appearing_lights_its_cells_only() {
        let mut m = MotionEncoder::new(MotionConfig {
            grid: [4, 4],
            ..MotionConfig::default()
        });
        let first = m.measure(&frame(64, 64, |_, _| 10, 0)).unwrap();
        assert!(first.reset);
        let still = m.measure(&frame(64, 64, |_, _| 10, 1)).unwrap();
        assert_eq!(still.changed, 0.0);
        // A bright 16×16 square in the top-left cell.
        let moved = m
            .measure(&frame(
                64,
                64,
                |x, y| if x < 16 && y < 16 { 200 } else { 10 },
                2,
            ))
            .unwrap();
        assert!(!moved.reset);
        assert_eq!(moved.cells[0], 1.0);
        assert!(moved.cells[1..].iter().all(|&c| c == 0.0));
        assert_eq!(moved.active_cells(0.5).collect::<Vec<_>>(), vec![0]);
        assert!((moved.changed - 1.0 / 16.0).abs() < 1e-6);
    }

    #[test]
    fn a_global_change_resets_instead_of_reporting() {
        let mut m = MotionEncoder::new(MotionConfig::default());
        m.measure(&frame(32, 32, |_, _| 10, 0)).unwrap();
        let cut = m.measure(&frame(32, 32, |_, _| 240, 1)).unwrap();
        assert!(cut.reset);
        let after = m.measure(&frame(32, 32, |_, _| 240, 2)).unwrap();
        assert_eq!(after.changed, 0.0);
    }

    #[test]
    fn rgb_frames_are_measured_on_their_luma() {
        let mut m = MotionEncoder::new(MotionConfig {
            grid: [2, 1],
            ..MotionConfig::default()
        });
        let f0 = Frame::from_pixels(
            "t",
            Timestamp(0),
            Duration(1),
            4,
            2,
            PixelFormat::Rgb,
            vec![10; 24],
            0,
        )
        .unwrap();
        m.measure(&f0).unwrap();
        let mut px = vec![10u8; 24];
        px[..6].copy_from_slice(&[250; 6]); // two bright pixels in the left cell, first row
        let f1 = Frame::from_pixels(
            "t",
            Timestamp(1),
            Duration(1),
            4,
            2,
            PixelFormat::Rgb,
            px,
            1,
        )
        .unwrap();
        assert_eq!(m.measure(&f1).unwrap().cells, vec![0.5, 0.0]);
    }
}
