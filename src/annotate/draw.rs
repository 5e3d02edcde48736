//! A scene → a transparent overlay the size of the frame (BGRA, straight alpha: GStreamer's
//! overlay-composition format on little-endian machines): a box per track with its class,
//! id and score; the speaking person's box thicker, in its own colour; a caption strip at the
//! bottom with the sounds heard, each with a line to its source's box or "off-screen".

use super::scene::{Scene, TrackBox};
use crate::timeline::raster::{glyph_pixels, text_width};

/// A person's box.
pub const PERSON: [u8; 3] = [0, 230, 255];
/// Any other class's box.
pub const OTHER: [u8; 3] = [255, 200, 0];
/// A speaking person's (or face's) box.
pub const SPEAKING: [u8; 3] = [255, 0, 200];
/// The line from a sound's caption to its source.
pub const SOURCE: [u8; 3] = [60, 255, 60];
const WHITE: [u8; 3] = [255, 255, 255];
const CAPTION_BG: [u8; 4] = [0, 0, 0, 170];

/// Where the caption strip is, as a fraction of the frame's height from the bottom.
pub const CAPTION_FRACTION: f32 = 0.09;

/// A BGRA picture with straight alpha.
pub struct Overlay {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// 4 bytes a pixel: B, G, R, A.
    pub bgra: Vec<u8>,
}

impl Overlay {
    fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bgra: vec![0; width as usize * height as usize * 4],
        }
    }

    fn put(&mut self, x: i64, y: i64, c: [u8; 3], a: u8) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) || a == 0 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 4;
        let old_a = self.bgra[i + 3];
        if a == 255 || old_a == 0 {
            self.bgra[i..i + 4].copy_from_slice(&[c[2], c[1], c[0], a]);
            return;
        }
        // "Over" in straight alpha.
        let (fa, fb) = (f32::from(a) / 255.0, f32::from(old_a) / 255.0);
        let out_a = fa + fb * (1.0 - fa);
        let mix = |new: u8, old: u8| {
            ((f32::from(new) * fa + f32::from(old) * fb * (1.0 - fa)) / out_a).round() as u8
        };
        let px = [
            mix(c[2], self.bgra[i]),
            mix(c[1], self.bgra[i + 1]),
            mix(c[0], self.bgra[i + 2]),
            (out_a * 255.0).round() as u8,
        ];
        self.bgra[i..i + 4].copy_from_slice(&px);
    }

    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3], a: u8) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, c, a);
            }
        }
    }

    fn frame(&mut self, b: [i64; 4], t: i64, c: [u8; 3]) {
        let [x0, y0, x1, y1] = b;
        self.fill(x0, y0, x1, y0 + t, c, 255);
        self.fill(x0, y1 - t, x1, y1, c, 255);
        self.fill(x0, y0, x0 + t, y1, c, 255);
        self.fill(x1 - t, y0, x1, y1, c, 255);
    }

    fn text(
        &mut self,
        font: &fontdue::Font,
        x: f32,
        baseline: f32,
        size: f32,
        s: &str,
        c: [u8; 3],
    ) -> f32 {
        glyph_pixels(font, x, baseline, size, s, |px, py, a| {
            self.put(px, py, c, a)
        })
    }
}

fn pixels(b: [f32; 4], w: u32, h: u32) -> [i64; 4] {
    let (w, h) = (w as f32, h as f32);
    [
        (b[0].clamp(0.0, 1.0) * w).round() as i64,
        (b[1].clamp(0.0, 1.0) * h).round() as i64,
        (b[2].clamp(0.0, 1.0) * w).round() as i64,
        (b[3].clamp(0.0, 1.0) * h).round() as i64,
    ]
}

fn colour(t: &TrackBox, speaking: bool) -> [u8; 3] {
    if speaking {
        SPEAKING
    } else if t.class == "person" {
        PERSON
    } else {
        OTHER
    }
}

/// The overlay of `scene` on a `width` × `height` frame.
pub fn draw(scene: &Scene, width: u32, height: u32, font: &fontdue::Font) -> Overlay {
    let mut o = Overlay::new(width, height);
    let line = (height as f32 / 240.0).round().max(1.0) as i64;
    let size = (height as f32 / 30.0).clamp(10.0, 40.0);
    for t in &scene.tracks {
        let speaking = scene.speaking.contains(&t.id);
        let c = colour(t, speaking);
        let b = pixels(t.bbox, width, height);
        o.frame(b, if speaking { 2 * line } else { line }, c);
        let tag = format!(
            "{} #{} {:.2}{}",
            t.class,
            t.id,
            t.score,
            if speaking { " speaking" } else { "" }
        );
        let tw = text_width(font, size, &tag) + 6.0;
        let th = size * 1.3;
        // Above the box, or inside its top when the box touches the frame's top.
        let ty = if (b[1] as f32) >= th {
            b[1] as f32 - th
        } else {
            b[1] as f32
        };
        o.fill(b[0], ty as i64, b[0] + tw as i64, (ty + th) as i64, c, 255);
        o.text(font, b[0] as f32 + 3.0, ty + size, size, &tag, [0, 0, 0]);
    }
    for f in &scene.speaking_faces {
        o.frame(pixels(*f, width, height), 2 * line, SPEAKING);
    }
    if !scene.heard.is_empty() {
        let strip = (height as f32 * CAPTION_FRACTION).max(size * 1.6);
        let top = height as f32 - strip;
        o.fill(
            0,
            top as i64,
            i64::from(width),
            i64::from(height),
            [CAPTION_BG[0], CAPTION_BG[1], CAPTION_BG[2]],
            CAPTION_BG[3],
        );
        let mut x = size * 0.5;
        let baseline = top + strip * 0.5 + size * 0.35;
        for h in &scene.heard {
            let what = match (h.source, h.offscreen) {
                (Some(id), _) => format!("{} ← #{id}", h.label),
                (None, true) => format!("{} (off-screen)", h.label),
                (None, false) => h.label.clone(),
            };
            let w = o.text(font, x, baseline, size, &what, WHITE);
            if let Some(b) = h
                .source
                .and_then(|id| scene.tracks.iter().find(|t| t.id == id))
                .map(|t| pixels(t.bbox, width, height))
            {
                // From the caption up to the bottom middle of the source's box.
                let (x0, y0) = ((x + w * 0.5) as i64, top as i64);
                let (x1, y1) = ((b[0] + b[2]) / 2, b[3]);
                let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
                for k in 0..=n {
                    let px = x0 + (x1 - x0) * k / n;
                    let py = y0 + (y1 - y0) * k / n;
                    o.fill(px - line, py - line, px + line, py + line, SOURCE, 255);
                }
            }
            x += w + size * 1.5;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotate::scene::Heard;

    fn font() -> Option<fontdue::Font> {
        crate::timeline::raster::Fonts::find(None)
            .ok()
            .map(|f| f.regular().clone())
    }

    #[test]
    fn boxes_are_drawn_on_their_border_only_and_the_caption_at_the_bottom() {
        let Some(font) = font() else {
            // .ci installs fonts-dejavu-core: there a missing font is a failure.
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "no system font under CI"
            );
            eprintln!("SKIP: no system font (install fonts-dejavu-core)");
            return;
        };
        let scene = Scene {
            tracks: vec![TrackBox {
                id: 2,
                class: "person".into(),
                score: 0.9,
                bbox: [0.25, 0.5, 0.75, 0.75],
            }],
            heard: vec![Heard {
                label: "Speech 0.93".into(),
                source: Some(2),
                offscreen: false,
            }],
            ..Scene::default()
        };
        let o = draw(&scene, 320, 240, &font);
        let at = |x: usize, y: usize| {
            let i = (y * 320 + x) * 4;
            [o.bgra[i + 2], o.bgra[i + 1], o.bgra[i], o.bgra[i + 3]]
        };
        // The box spans x 80..240, y 120..180: its left border, not its inside.
        assert_eq!(at(80, 150), [PERSON[0], PERSON[1], PERSON[2], 255]);
        assert_eq!(at(160, 150)[3], 0, "transparent inside the box");
        assert_eq!(at(10, 10)[3], 0, "transparent elsewhere");
        // The caption strip: the bottom rows are dark, half transparent.
        assert_eq!(at(300, 235)[3], CAPTION_BG[3]);
        // The source line reaches the box's bottom middle.
        assert_eq!(&at(160, 180)[..3], &SOURCE);
    }
}
