//! A picture → pixels (RGB, 8 bits) and PNG: rectangles, lines and triangles filled with
//! coverage-free edges, text through `fontdue` from a TrueType font of the system.

use super::picture::{Anchor, Picture, Shape, BACKGROUND};
use super::TimelineError;
use std::path::{Path, PathBuf};

/// Where a sans-serif TrueType font usually is (Debian/Ubuntu, Fedora, Arch, macOS,
/// Windows), regular then bold.
const FONTS: [(&str, &str); 5] = [
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    ),
    (
        "/Library/Fonts/Arial Unicode.ttf",
        "/Library/Fonts/Arial Unicode.ttf",
    ),
];

/// The fonts text is drawn with.
pub struct Fonts {
    regular: fontdue::Font,
    bold: fontdue::Font,
}

fn load(path: &Path) -> Result<fontdue::Font, TimelineError> {
    let bytes = std::fs::read(path).map_err(|source| TimelineError::FontRead {
        path: path.to_path_buf(),
        source,
    })?;
    fontdue::Font::from_bytes(bytes, fontdue::FontSettings::default()).map_err(|reason| {
        TimelineError::FontParse {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    })
}

impl Fonts {
    /// `font` (for both weights), or the first system sans font found (DejaVu Sans,
    /// Liberation Sans, …).
    pub fn find(font: Option<&Path>) -> Result<Self, TimelineError> {
        if let Some(f) = font {
            let regular = load(f)?;
            let bold = load(f)?;
            return Ok(Self { regular, bold });
        }
        for (r, b) in FONTS {
            if Path::new(r).is_file() {
                let regular = load(Path::new(r))?;
                let bold = if Path::new(b).is_file() {
                    load(Path::new(b))?
                } else {
                    load(Path::new(r))?
                };
                return Ok(Self { regular, bold });
            }
        }
        Err(TimelineError::NoFont {
            tried: FONTS.iter().map(|(r, _)| PathBuf::from(r)).collect(),
        })
    }
}

impl Fonts {
    /// The regular weight.
    pub fn regular(&self) -> &fontdue::Font {
        &self.regular
    }
}

/// An RGB image.
pub struct Pixels {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Rows top to bottom, 3 bytes a pixel.
    pub rgb: Vec<u8>,
}

impl Pixels {
    fn new(width: u32, height: u32) -> Self {
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..width as usize * height as usize {
            rgb.extend_from_slice(&BACKGROUND);
        }
        Self { width, height, rgb }
    }

    /// The pixel at (x, y).
    pub fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Blends `c` into (x, y) with coverage `a` in [0, 1]; outside the image: nothing.
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f32) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) || a <= 0.0 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let a = a.min(1.0);
        for (dst, &src) in self.rgb[i..i + 3].iter_mut().zip(&c) {
            let old = f32::from(*dst);
            *dst = (old + (f32::from(src) - old) * a).round() as u8;
        }
    }

    fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, c: [u8; 3]) {
        let (x0, x1) = (x.round() as i64, (x + w).round() as i64);
        let (y0, y1) = (y.round() as i64, (y + h).round() as i64);
        for yy in y0..y1.max(y0 + 1) {
            for xx in x0..x1.max(x0 + 1) {
                self.blend(xx, yy, c, 1.0);
            }
        }
    }

    fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, width: f32, c: [u8; 3]) {
        let half = (width / 2.0).max(0.5);
        // Rows and columns (every line of a timeline): one rectangle, no gaps from rounding
        // the steps of a walk along it.
        if y1 == y2 || x1 == x2 {
            let (lo_x, hi_x) = (x1.min(x2), x1.max(x2));
            let (lo_y, hi_y) = (y1.min(y2), y1.max(y2));
            self.fill_rect(
                lo_x - half,
                lo_y - half,
                hi_x - lo_x + 2.0 * half,
                hi_y - lo_y + 2.0 * half,
                c,
            );
            return;
        }
        let len = ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt();
        let steps = (2.0 * len).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let (cx, cy) = (x1 + (x2 - x1) * t, y1 + (y2 - y1) * t);
            self.fill_rect(cx - half, cy - half, 2.0 * half, 2.0 * half, c);
        }
    }

    fn triangle(&mut self, p: [(f32, f32); 3], c: [u8; 3]) {
        let edge = |a: (f32, f32), b: (f32, f32), x: f32, y: f32| {
            (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0)
        };
        let xs = p.iter().map(|q| q.0);
        let ys = p.iter().map(|q| q.1);
        let (x0, x1) = (
            xs.clone().fold(f32::MAX, f32::min),
            xs.fold(f32::MIN, f32::max),
        );
        let (y0, y1) = (
            ys.clone().fold(f32::MAX, f32::min),
            ys.fold(f32::MIN, f32::max),
        );
        for y in y0.floor() as i64..=y1.ceil() as i64 {
            for x in x0.floor() as i64..=x1.ceil() as i64 {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let e = [
                    edge(p[0], p[1], fx, fy),
                    edge(p[1], p[2], fx, fy),
                    edge(p[2], p[0], fx, fy),
                ];
                if e.iter().all(|v| *v >= 0.0) || e.iter().all(|v| *v <= 0.0) {
                    self.blend(x, y, c, 1.0);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn text(
        &mut self,
        font: &fontdue::Font,
        x: f32,
        y: f32,
        size: f32,
        anchor: Anchor,
        s: &str,
        c: [u8; 3],
    ) {
        let width = text_width(font, size, s);
        let left = match anchor {
            Anchor::Start => x,
            Anchor::End => x - width,
            Anchor::Middle => x - width / 2.0,
        };
        glyph_pixels(font, left, y, size, s, |px, py, a| {
            self.blend(px, py, c, f32::from(a) / 255.0)
        });
    }
}

/// The advance of `s` at `size` pixels.
pub fn text_width(font: &fontdue::Font, size: f32, s: &str) -> f32 {
    s.chars()
        .map(|ch| font.metrics(ch, size).advance_width)
        .sum()
}

/// Rasterises `s` from `x` on the baseline `y`: calls `f(x, y, coverage)` for every pixel
/// of every glyph; returns the advance.
pub fn glyph_pixels(
    font: &fontdue::Font,
    x: f32,
    y: f32,
    size: f32,
    s: &str,
    mut f: impl FnMut(i64, i64, u8),
) -> f32 {
    let mut pen = x;
    for ch in s.chars() {
        let (m, coverage) = font.rasterize(ch, size);
        let left = (pen + m.xmin as f32).round() as i64;
        let top = (y - m.height as f32 - m.ymin as f32).round() as i64;
        for row in 0..m.height {
            for col in 0..m.width {
                f(
                    left + col as i64,
                    top + row as i64,
                    coverage[row * m.width + col],
                );
            }
        }
        pen += m.advance_width;
    }
    pen - x
}

/// Draws `p`.
pub fn rasterise(p: &Picture, fonts: &Fonts) -> Pixels {
    let mut px = Pixels::new(p.width, p.height);
    for s in &p.shapes {
        match s {
            Shape::Rect { x, y, w, h, fill } => px.fill_rect(*x, *y, *w, *h, *fill),
            Shape::Line {
                x1,
                y1,
                x2,
                y2,
                width,
                color,
            } => px.line(*x1, *y1, *x2, *y2, *width, *color),
            Shape::Triangle { points, fill } => px.triangle(*points, *fill),
            Shape::Text {
                x,
                y,
                size,
                color,
                bold,
                anchor,
                text,
            } => {
                let f = if *bold { &fonts.bold } else { &fonts.regular };
                px.text(f, *x, *y, *size, *anchor, text, *color);
            }
        }
    }
    px
}

/// Writes `px` as a PNG file.
pub fn write_png(px: &Pixels, path: &Path) -> Result<(), TimelineError> {
    let err = |source: png::EncodingError| TimelineError::Png {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(|source| TimelineError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), px.width, px.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(err)?;
    w.write_image_data(&px.rgb).map_err(err)?;
    w.finish().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_fill_their_pixels_only() {
        let mut px = Pixels::new(20, 20);
        px.fill_rect(2.0, 2.0, 5.0, 3.0, [255, 0, 0]);
        assert_eq!(px.at(2, 2), [255, 0, 0]);
        assert_eq!(px.at(6, 4), [255, 0, 0]);
        assert_eq!(px.at(7, 4), BACKGROUND);
        assert_eq!(px.at(6, 5), BACKGROUND);
        px.triangle([(10.0, 10.0), (18.0, 10.0), (14.0, 18.0)], [0, 0, 255]);
        assert_eq!(px.at(14, 12), [0, 0, 255]);
        assert_eq!(px.at(10, 17), BACKGROUND);
        px.line(0.0, 19.0, 19.0, 19.0, 1.0, [0, 255, 0]);
        assert!(
            (0..19).all(|x| px.at(x, 19) == [0, 255, 0]),
            "a row without gaps"
        );
        assert_eq!(px.at(9, 18), BACKGROUND, "one pixel thick");
        px.line(0.0, 0.0, 12.0, 9.0, 1.0, [0, 255, 0]);
        assert_eq!(px.at(4, 3), [0, 255, 0]);
        // Off the image: clipped, no panic.
        px.fill_rect(-5.0, -5.0, 100.0, 6.0, [1, 2, 3]);
        assert_eq!(px.at(0, 0), [1, 2, 3]);
    }
}
