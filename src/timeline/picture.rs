//! Lanes → a picture: the layout (a time axis, a row per lane, a header per stream) as a list
//! of shapes that both writers draw (SVG as text, PNG through the rasteriser).

use super::lanes::{LaneKind, Timeline};

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// The page.
pub const BACKGROUND: Rgb = [255, 255, 255];
const INK: Rgb = [40, 40, 40];
const GRID: Rgb = [225, 225, 225];
const SEPARATOR: Rgb = [200, 200, 200];
const ARROW: Rgb = [20, 150, 60];

/// Where text is anchored on its x.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// x is the text's left end.
    Start,
    /// x is its right end.
    End,
    /// x is its middle.
    Middle,
}

/// One thing to draw (pixels; y downwards).
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A filled rectangle.
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Rgb,
    },
    /// A straight line.
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        color: Rgb,
    },
    /// A filled triangle (arrow heads).
    Triangle { points: [(f32, f32); 3], fill: Rgb },
    /// Text on a baseline.
    Text {
        x: f32,
        y: f32,
        size: f32,
        color: Rgb,
        bold: bool,
        anchor: Anchor,
        text: String,
    },
}

/// Where a lane is in the picture (for captions, tests, image maps).
#[derive(Debug, Clone, PartialEq)]
pub struct LaneBox {
    /// The stream.
    pub stream: String,
    /// The lane's name.
    pub name: String,
    /// What it shows.
    pub kind: LaneKind,
    /// Its rows of pixels, `top..bottom`.
    pub top: f32,
    /// The row below it.
    pub bottom: f32,
}

/// A laid-out timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The shapes, in drawing order.
    pub shapes: Vec<Shape>,
    /// The lanes' places.
    pub lanes: Vec<LaneBox>,
    /// The plot's columns of pixels, `left..right` (the time axis).
    pub plot: (f32, f32),
}

const LEFT: f32 = 170.0;
const RIGHT: f32 = 30.0;
const TITLE_H: f32 = 34.0;
const HEADER_H: f32 = 26.0;
const LANE_H: f32 = 22.0;
const BAR_PAD: f32 = 3.0;
const AXIS_H: f32 = 34.0;
const TEXT: f32 = 12.0;
/// Rough advance of a character of the sans font at size 1 (placing labels; both writers).
const CHAR_W: f32 = 0.58;

/// A colour per class name (stable across runs and pictures), saturated enough to read on
/// white and to tell from the greys of the grid.
fn class_colour(class: &str) -> Rgb {
    const PALETTE: [Rgb; 8] = [
        [31, 119, 180],
        [255, 127, 14],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [23, 190, 207],
        [188, 189, 34],
        [0, 128, 128],
    ];
    match class {
        "person" => PALETTE[0],
        "" => PALETTE[0],
        _ => {
            let h = class.bytes().fold(2166136261u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16777619)
            });
            PALETTE[1 + (h as usize) % (PALETTE.len() - 1)]
        }
    }
}

fn lane_colour(kind: LaneKind) -> Rgb {
    match kind {
        LaneKind::Motion => [120, 120, 200],
        LaneKind::Track => class_colour("person"),
        LaneKind::Speech => [44, 160, 44],
        LaneKind::Sound => [230, 150, 20],
        LaneKind::Offscreen => [214, 39, 40],
        LaneKind::Speaker => [200, 30, 150],
        LaneKind::AvEvent => [100, 60, 160],
        LaneKind::Health => [230, 90, 20],
    }
}

/// A tick step of 1, 2 or 5 × 10ⁿ seconds giving about `n` ticks over `len` seconds.
fn tick_step(len: f64, n: f64) -> f64 {
    let raw = (len / n).max(1e-3);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn fmt_time(t: f64, step: f64) -> String {
    if t >= 3600.0 {
        let s = t.round() as u64;
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else if step < 1.0 {
        format!("{t:.1}")
    } else {
        format!("{t:.0}")
    }
}

/// Lays `t` out `width` pixels wide under `title`.
pub fn layout(t: &Timeline, width: u32, title: &str) -> Picture {
    let w = width as f32;
    let (t0, t1) = t.span;
    let plot_w = (w - LEFT - RIGHT).max(10.0);
    let x = |s: f64| LEFT + ((s - t0) / (t1 - t0)) as f32 * plot_w;
    let rows: usize = t.streams.iter().map(|s| s.lanes.len()).sum();
    let height = TITLE_H + t.streams.len() as f32 * HEADER_H + rows as f32 * LANE_H + AXIS_H;
    let mut shapes = Vec::new();
    let mut boxes = Vec::new();
    shapes.push(Shape::Text {
        x: 10.0,
        y: 22.0,
        size: 15.0,
        color: INK,
        bold: true,
        anchor: Anchor::Start,
        text: title.into(),
    });
    let plot_top = TITLE_H;
    let plot_bottom = height - AXIS_H;
    let step = tick_step(t1 - t0, (plot_w / 90.0).max(2.0) as f64);
    let mut tick = (t0 / step).ceil() * step;
    while tick <= t1 + 1e-9 {
        let tx = x(tick);
        shapes.push(Shape::Line {
            x1: tx,
            y1: plot_top,
            x2: tx,
            y2: plot_bottom,
            width: 1.0,
            color: GRID,
        });
        shapes.push(Shape::Text {
            x: tx,
            y: plot_bottom + 16.0,
            size: TEXT,
            color: INK,
            bold: false,
            anchor: Anchor::Middle,
            text: fmt_time(tick, step),
        });
        tick += step;
    }
    shapes.push(Shape::Text {
        x: LEFT + plot_w,
        y: plot_bottom + 30.0,
        size: TEXT,
        color: INK,
        bold: false,
        anchor: Anchor::End,
        text: "seconds on the stream's timeline".into(),
    });
    let mut y = plot_top;
    for s in &t.streams {
        shapes.push(Shape::Text {
            x: 10.0,
            y: y + 18.0,
            size: 13.0,
            color: INK,
            bold: true,
            anchor: Anchor::Start,
            text: format!("stream {}", s.stream),
        });
        y += HEADER_H;
        let first = y;
        for lane in &s.lanes {
            shapes.push(Shape::Line {
                x1: 10.0,
                y1: y,
                x2: w - RIGHT,
                y2: y,
                width: 1.0,
                color: SEPARATOR,
            });
            shapes.push(Shape::Text {
                x: LEFT - 8.0,
                y: y + LANE_H - 7.0,
                size: TEXT,
                color: INK,
                bold: false,
                anchor: Anchor::End,
                text: lane.name.clone(),
            });
            for b in &lane.bars {
                let (bx, bw) = (x(b.start), (x(b.end) - x(b.start)).max(2.0));
                let fill = match lane.kind {
                    LaneKind::Track => class_colour(&b.class),
                    k => lane_colour(k),
                };
                shapes.push(Shape::Rect {
                    x: bx,
                    y: y + BAR_PAD,
                    w: bw,
                    h: LANE_H - 2.0 * BAR_PAD,
                    fill,
                });
                if !b.text.is_empty() {
                    // Inside the bar when it fits (white on colour), else after it.
                    let need = b.text.chars().count() as f32 * CHAR_W * TEXT + 8.0;
                    let (tx, color) = if need <= bw {
                        (bx + 4.0, BACKGROUND)
                    } else {
                        (bx + bw + 4.0, INK)
                    };
                    shapes.push(Shape::Text {
                        x: tx,
                        y: y + LANE_H - 7.0,
                        size: TEXT - 1.0,
                        color,
                        bold: false,
                        anchor: Anchor::Start,
                        text: b.text.clone(),
                    });
                }
            }
            boxes.push(LaneBox {
                stream: s.stream.clone(),
                name: lane.name.clone(),
                kind: lane.kind,
                top: y,
                bottom: y + LANE_H,
            });
            y += LANE_H;
        }
        for a in &s.arrows {
            let centre = |i: usize| first + (i as f32 + 0.5) * LANE_H;
            let (from, to) = (centre(a.from_lane), centre(a.to_lane));
            let ax = x(a.at);
            let dir = if to < from { -1.0 } else { 1.0 };
            let tip = to - dir * (LANE_H / 2.0 - BAR_PAD);
            // From the sound bar's edge that faces the track.
            shapes.push(Shape::Line {
                x1: ax,
                y1: from + dir * (LANE_H / 2.0 - BAR_PAD),
                x2: ax,
                y2: tip - dir * 7.0,
                width: 2.0,
                color: ARROW,
            });
            shapes.push(Shape::Triangle {
                points: [
                    (ax - 5.0, tip - dir * 8.0),
                    (ax + 5.0, tip - dir * 8.0),
                    (ax, tip),
                ],
                fill: ARROW,
            });
        }
    }
    shapes.push(Shape::Line {
        x1: LEFT,
        y1: plot_bottom,
        x2: LEFT + plot_w,
        y2: plot_bottom,
        width: 1.0,
        color: INK,
    });
    Picture {
        width,
        height: height.ceil() as u32,
        shapes,
        lanes: boxes,
        plot: (LEFT, LEFT + plot_w),
    }
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The picture as an SVG document.
pub fn to_svg(p: &Picture) -> String {
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"{bg}\"/>\n",
        w = p.width,
        h = p.height,
        bg = hex(BACKGROUND)
    );
    for s in &p.shapes {
        let line = match s {
            Shape::Rect { x, y, w, h, fill } => format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                hex(*fill)
            ),
            Shape::Line { x1, y1, x2, y2, width, color } => format!(
                "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{}\" stroke-width=\"{width}\"/>",
                hex(*color)
            ),
            Shape::Triangle { points, fill } => format!(
                "<polygon points=\"{}\" fill=\"{}\"/>",
                points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                hex(*fill)
            ),
            Shape::Text { x, y, size, color, bold, anchor, text } => format!(
                "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" fill=\"{}\"{}{}>{}</text>",
                hex(*color),
                if *bold { " font-weight=\"bold\"" } else { "" },
                match anchor {
                    Anchor::Start => "",
                    Anchor::End => " text-anchor=\"end\"",
                    Anchor::Middle => " text-anchor=\"middle\"",
                },
                escape(text)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::lanes::{Bar, Lane, SourceArrow, StreamLanes};

    #[test]
    fn ticks_are_round_and_lanes_stack_under_their_stream() {
        assert_eq!(tick_step(60.0, 10.0), 10.0);
        assert_eq!(tick_step(4.8, 10.0), 0.5);
        assert_eq!(tick_step(7200.0, 12.0), 1000.0);
        let lane = |name: &str, kind| Lane {
            name: name.into(),
            kind,
            bars: vec![Bar {
                start: 1.0,
                end: 2.0,
                text: "Speech <0.9>".into(),
                class: String::new(),
            }],
        };
        let t = Timeline {
            span: (0.0, 10.0),
            streams: vec![StreamLanes {
                stream: "a".into(),
                lanes: vec![
                    lane("person #1", LaneKind::Track),
                    lane("sounds", LaneKind::Sound),
                ],
                arrows: vec![SourceArrow {
                    at: 1.5,
                    from_lane: 1,
                    to_lane: 0,
                }],
            }],
        };
        let p = layout(&t, 800, "t");
        assert_eq!(p.lanes.len(), 2);
        assert_eq!(p.lanes[0].bottom, p.lanes[1].top);
        assert!(p.lanes[0].top >= TITLE_H + HEADER_H);
        assert_eq!(p.height as f32, TITLE_H + HEADER_H + 2.0 * LANE_H + AXIS_H);
        // The bar from 1 to 2 s is a tenth of the plot.
        let plot_w = 800.0 - LEFT - RIGHT;
        assert!(p.shapes.iter().any(|s| matches!(s, Shape::Rect { x, w, .. }
            if (*x - (LEFT + 0.1 * plot_w)).abs() < 0.01 && (*w - 0.1 * plot_w).abs() < 0.01)));
        // The arrow points up, at the track lane.
        assert!(p
            .shapes
            .iter()
            .any(|s| matches!(s, Shape::Triangle { points, .. }
            if points[2].1 < points[0].1)));
        let svg = to_svg(&p);
        assert!(svg.contains("Speech &lt;0.9&gt;") && svg.starts_with("<svg"));
    }
}
