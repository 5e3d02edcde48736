//! Drawing a box on tight RGB rows.

/// Draws the outline of `bbox` (`[x1, y1, x2, y2]`, pixels, clamped to the image) in
/// `rgb` colour, `max(2, width / 160)` pixels thick, inside the box. Returns the box as
/// drawn (after clamping).
pub fn draw_box(
    pixels: &mut [u8],
    width: u32,
    height: u32,
    bbox: [f32; 4],
    rgb: [u8; 3],
) -> [f32; 4] {
    let (w, h) = (width as i64, height as i64);
    if w == 0 || h == 0 || pixels.len() < (w * h * 3) as usize {
        return bbox;
    }
    let clamp = |v: f32, hi: i64| (v.round() as i64).clamp(0, hi - 1);
    let (x1, y1) = (clamp(bbox[0], w), clamp(bbox[1], h));
    let (x2, y2) = (clamp(bbox[2], w).max(x1), clamp(bbox[3], h).max(y1));
    let t = (w / 160).max(2);
    let mut put = |x: i64, y: i64| {
        let i = ((y * w + x) * 3) as usize;
        pixels[i..i + 3].copy_from_slice(&rgb);
    };
    for y in y1..=y2 {
        for x in x1..=x2 {
            let edge = x - x1 < t || x2 - x < t || y - y1 < t || y2 - y < t;
            if edge {
                put(x, y);
            }
        }
    }
    [x1 as f32, y1 as f32, x2 as f32, y2 as f32]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_outline_only_and_clamps() {
        let (w, h) = (10u32, 8u32);
        let mut px = vec![0u8; (w * h * 3) as usize];
        let drawn = draw_box(&mut px, w, h, [2.0, 1.0, 7.0, 6.0], [0, 255, 0]);
        assert_eq!(drawn, [2.0, 1.0, 7.0, 6.0]);
        let g = |x: u32, y: u32| px[((y * w + x) * 3 + 1) as usize] == 255;
        assert!(g(2, 1) && g(7, 6) && g(4, 1) && g(2, 4) && g(3, 3));
        assert!(!g(4, 3) && !g(0, 0) && !g(9, 7) && !g(8, 3));
        let drawn = draw_box(&mut px, w, h, [-5.0, -5.0, 50.0, 50.0], [1, 2, 3]);
        assert_eq!(drawn, [0.0, 0.0, 9.0, 7.0]);
    }
}
