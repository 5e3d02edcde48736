//! The register-blocked NHWC depthwise rows: the same sums as the generic rows of the
//! parent module, bit for bit, vectorised over channels with the filter taps held in
//! registers, for depth multiplier 1, whole vectors of channels and 3×3 or 5×5 filters
//! (every depthwise layer of BlazeFace, NanoDet-style and MobileNet graphs). On x86-64 CPUs
//! with AVX2 the rows run a build of the same code compiled for AVX2, reached only through
//! an [`Avx2`] token.

use super::Geometry;
use crate::ops::geometry::tap;
use crate::ops::simd::{load_lanes, load_lanes_unchecked, Avx2, LANES};

/// Whether [`nhwc_row_fast`] handles this geometry: depth multiplier 1, channels in whole
/// vectors, a 3×3 or 5×5 filter.
pub(super) fn fits(g: &Geometry) -> bool {
    g.m == 1 && g.c.is_multiple_of(LANES) && matches!((g.kh, g.kw), (3, 3) | (5, 5))
}

/// What one output row of the fast kernel reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row<'a> {
    /// The image, `[H, W, C]`.
    pub(super) image: &'a [f32],
    /// The filter, `[KH, KW, C]` (depth multiplier 1).
    pub(super) w: &'a [f32],
    /// The bias, `[C]`.
    pub(super) bias: Option<&'a [f32]>,
    /// The geometry.
    pub(super) g: &'a Geometry,
    /// The output row.
    pub(super) oy: usize,
}

/// One NHWC output row of a depthwise convolution, as [`nhwc_row`](super::nhwc_row) computes it (bias,
/// then the taps row by row, each a multiply then an add: the same values bit for bit),
/// but vectorised over channels: for each group of [`LANES`] channels the filter's taps
/// stay in registers while the accumulators walk along the row, and the output columns
/// whose taps are all inside the image (all but the borders) run without bounds tests.
/// `nhwc_row` instead updates the whole channel row once per tap (a load and a store of
/// the accumulators each time) and tests every tap, which ran at ≈ 5 GFLOP/s.
///
/// `S` > 0 compiles the interior for stride `S` and dilation 1, so that the tap offsets are
/// constants (a geometry without them runs no interior); 0 reads them from `g`.
#[inline(always)]
fn nhwc_row_fast_body<const KH: usize, const KW: usize, const S: usize>(
    row: Row<'_>,
    dst: &mut [f32],
) {
    let Row {
        image,
        w,
        bias,
        g,
        oy,
    } = row;
    let c = g.c;
    let mut rows = [None; KH];
    for (ky, r) in rows.iter_mut().enumerate() {
        *r = tap(oy, ky, g.sh, g.dh, g.pad_top, g.h);
    }
    let mut iys = [0usize; KH];
    let mut all_rows = true;
    for (iy, r) in iys.iter_mut().zip(&rows) {
        match r {
            Some(v) => *iy = *v,
            None => all_rows = false,
        }
    }
    // Columns ox with ox·sw ≥ pad_left and ox·sw − pad_left + (KW − 1)·dw < W.
    let hi = (g.w + g.pad_left)
        .checked_sub((KW - 1) * g.dw)
        .map_or(0, |v| v.div_ceil(g.sw))
        .min(g.ow);
    let lo = g.pad_left.div_ceil(g.sw).min(hi);
    // The interior reads unchecked (a bounds test per load cost more than the arithmetic),
    // so it runs only where that is proven here, once per row: every tap row inside the
    // image, whole vectors of channels, the compiled stride equal to the geometry's, and
    // the furthest value read — the last channel of the last tap of column hi − 1 on the
    // lowest tap row — inside `image`. Otherwise (no geometry that `fits` fails it but a
    // row near the top or bottom edge) every column takes the checked edge path.
    let furthest = (hi > lo)
        .then(|| {
            let lowest = iys.iter().max().copied().unwrap_or(0);
            lowest
                .checked_mul(g.w)?
                .checked_add((hi - 1).checked_mul(g.sw)?)?
                .checked_add((KW - 1).checked_mul(g.dw)?)
        })
        .flatten();
    let interior = all_rows
        && c.is_multiple_of(LANES)
        && (S == 0 || (g.sw, g.dw) == (S, 1))
        && furthest.is_some_and(|f| {
            f.checked_sub(g.pad_left)
                .and_then(|px| px.checked_add(1)?.checked_mul(c))
                .is_some_and(|end| end <= image.len())
        });
    let (lo, hi) = if interior { (lo, hi) } else { (0, 0) };
    for cc in (0..c).step_by(LANES) {
        let mut wk = [[[0f32; LANES]; KW]; KH];
        for (ky, wrow) in wk.iter_mut().enumerate() {
            for (kx, wt) in wrow.iter_mut().enumerate() {
                *wt = load_lanes(w, (ky * KW + kx) * c + cc);
            }
        }
        let b0 = bias.map_or([0f32; LANES], |b| load_lanes(b, cc));
        let edge = |ox: usize, acc: &mut [f32; LANES]| {
            for (ky, r) in rows.iter().enumerate() {
                let Some(iy) = *r else { continue };
                for (kx, wt) in wk[ky].iter().enumerate() {
                    let Some(ix) = tap(ox, kx, g.sw, g.dw, g.pad_left, g.w) else {
                        continue;
                    };
                    let xv = load_lanes(image, (iy * g.w + ix) * c + cc);
                    for l in 0..LANES {
                        acc[l] += xv[l] * wt[l];
                    }
                }
            }
        };
        let mut store = |ox: usize, acc: &[f32; LANES]| {
            dst[ox * c + cc..ox * c + cc + LANES].copy_from_slice(acc);
        };
        for ox in 0..lo {
            let mut acc = b0;
            edge(ox, &mut acc);
            store(ox, &acc);
        }
        // Interior, PIX output columns at a time: independent accumulators, so the
        // additions of one column do not wait on each other's latency.
        const PIX: usize = 4;
        let mut ox = lo;
        while ox + PIX <= hi {
            let mut acc = [b0; PIX];
            let (sw, dw) = if S > 0 { (S, 1) } else { (g.sw, g.dw) };
            let ix0 = ox * sw - g.pad_left;
            for (ky, &iy) in iys.iter().enumerate() {
                let base = (iy * g.w + ix0) * c + cc;
                for (kx, wt) in wk[ky].iter().enumerate() {
                    for (p, a) in acc.iter_mut().enumerate() {
                        // SAFETY: this loop runs only when `interior` held (else lo = hi
                        // = 0), so sw, dw are the geometry's and ox ≥ lo keeps ix0 ≥ 0; with
                        // ox + p < hi, iy ≤ the lowest tap row and kx < KW the pixel is at
                        // most `furthest` − pad_left, and cc + LANES ≤ c, so the LANES
                        // values lie below (furthest − pad_left + 1)·c ≤ image.len().
                        let xv =
                            unsafe { load_lanes_unchecked(image, base + (p * sw + kx * dw) * c) };
                        for l in 0..LANES {
                            a[l] += xv[l] * wt[l];
                        }
                    }
                }
            }
            for (p, a) in acc.iter().enumerate() {
                store(ox + p, a);
            }
            ox += PIX;
        }
        for ox in ox..hi {
            let mut acc = b0;
            let ix0 = ox * g.sw - g.pad_left;
            for (ky, &iy) in iys.iter().enumerate() {
                let base = (iy * g.w + ix0) * c + cc;
                for (kx, wt) in wk[ky].iter().enumerate() {
                    // SAFETY: as in the block loop above (`interior` held, lo ≤ ox < hi).
                    let xv = unsafe { load_lanes_unchecked(image, base + kx * g.dw * c) };
                    for l in 0..LANES {
                        acc[l] += xv[l] * wt[l];
                    }
                }
            }
            store(ox, &acc);
        }
        for ox in hi.max(lo)..g.ow {
            let mut acc = b0;
            edge(ox, &mut acc);
            store(ox, &acc);
        }
    }
}

/// [`nhwc_row_fast_body`] compiled for AVX2 (8 channels per instruction instead of
/// SSE2's 4 in the baseline x86-64 build). Multiplies and adds stay separate (Rust never
/// contracts them into FMAs), so the results equal the portable build's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn nhwc_row_avx2<const KH: usize, const KW: usize, const S: usize>(row: Row<'_>, dst: &mut [f32]) {
    nhwc_row_fast_body::<KH, KW, S>(row, dst)
}

/// [`nhwc_row_avx2`] for safe code: the token proves that the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
fn nhwc_row_with_avx2<const KH: usize, const KW: usize, const S: usize>(
    _proof: Avx2,
    row: Row<'_>,
    dst: &mut [f32],
) {
    // SAFETY: an `Avx2` value exists only when `Avx2::detect` found AVX2 on the running CPU,
    // so every instruction the AVX2 build may use is available here.
    unsafe { nhwc_row_avx2::<KH, KW, S>(row, dst) }
}

/// Calls `$row::<KH, KW, S>($args)` for the filter size of `$g` and the interior stride `$s`
/// (1 or 2: compiled in; 0: read from the geometry).
macro_rules! by_shape {
    ($row:ident, $g:expr, $s:expr, $($arg:expr),* $(,)?) => {
        match ($g.kh, $s) {
            (3, 1) => $row::<3, 3, 1>($($arg),*),
            (3, 2) => $row::<3, 3, 2>($($arg),*),
            (3, _) => $row::<3, 3, 0>($($arg),*),
            (_, 1) => $row::<5, 5, 1>($($arg),*),
            (_, 2) => $row::<5, 5, 2>($($arg),*),
            _ => $row::<5, 5, 0>($($arg),*),
        }
    };
}

/// One NHWC output row through the fast kernel (only for geometries where [`fits`] holds):
/// the AVX2 build when `avx2` carries the token, the portable one otherwise.
pub(super) fn nhwc_row_fast(row: Row<'_>, dst: &mut [f32], avx2: Option<Avx2>) {
    let g = row.g;
    let s = match (g.sw, g.dw) {
        (1, 1) => 1,
        (2, 1) => 2,
        _ => 0,
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(proof) = avx2 {
        by_shape!(nhwc_row_with_avx2, g, s, proof, row, dst);
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2;
    by_shape!(nhwc_row_fast_body, g, s, row, dst);
}

#[cfg(test)]
mod tests {
    use super::super::{depthwise_conv2d, geometry, nhwc_row, DepthwiseConv2dConfig};
    use super::*;
    use crate::ops::test_util::{halves_jittered as ramp, max_abs_diff, median_ms};
    use crate::ops::{ConvLayout, Padding};

    /// The fast NHWC depthwise rows give exactly the generic rows' values.
    #[test]
    fn fast_depthwise_rows_equal_the_generic_ones_bit_for_bit() {
        for &(c, k, s, h, w, padding) in &[
            (24, 3, 1, 9, 11, Padding::Same),
            (24, 3, 2, 10, 12, Padding::Same),
            (16, 5, 1, 8, 7, Padding::Same),
            (8, 3, 2, 9, 9, Padding::Valid),
            (
                48,
                3,
                1,
                6,
                5,
                Padding::Explicit {
                    top: 2,
                    bottom: 0,
                    left: 0,
                    right: 3,
                },
            ),
            (8, 3, 1, 2, 2, Padding::Same), // smaller than the filter: no interior
            (8, 3, 3, 13, 14, Padding::Same), // stride 3: offsets read from the geometry
        ] {
            // Dilation 2 takes the interior with the offsets read from the geometry too.
            for d in [1, 2] {
                let x = ramp(&[2, h, w, c], 0.3);
                let wt = ramp(&[k, k, c, 1], 0.9);
                let bias = ramp(&[c], 1.7);
                let cfg = DepthwiseConv2dConfig {
                    layout: ConvLayout::Nhwc,
                    stride: (s, s),
                    dilation: (d, d),
                    padding,
                };
                let g = geometry(&x, &wt, &cfg).unwrap();
                assert!(fits(&g));
                let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let wv = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let bv = bias.to_vec1::<f32>().unwrap();
                let image = &xv[g.h * g.w * c..];
                for avx2 in [None, Avx2::detect()] {
                    for b in [None, Some(&bv[..])] {
                        for oy in 0..g.oh {
                            let mut want = vec![0f32; g.ow * c];
                            let mut got = vec![1f32; g.ow * c];
                            nhwc_row(&xv, &wv, b, &g, 1, oy, &mut want);
                            let row = Row {
                                image,
                                w: &wv,
                                bias: b,
                                g: &g,
                                oy,
                            };
                            nhwc_row_fast(row, &mut got, avx2);
                            assert_eq!(
                                got,
                                want,
                                "c{c} k{k} s{s} d{d} {padding:?} row {oy} avx2 {}",
                                avx2.is_some()
                            );
                        }
                    }
                }
                // And through the public op, against candle's grouped convolution.
                let want = depthwise_conv2d(
                    &x.permute((0, 3, 1, 2)).unwrap(),
                    &wt.reshape((k, k, c))
                        .unwrap()
                        .permute((2, 0, 1))
                        .unwrap()
                        .unsqueeze(1)
                        .unwrap()
                        .contiguous()
                        .unwrap(),
                    Some(&bias),
                    &DepthwiseConv2dConfig {
                        layout: ConvLayout::Nchw,
                        ..cfg
                    },
                )
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap();
                let got = depthwise_conv2d(&x, &wt, Some(&bias), &cfg).unwrap();
                assert!(max_abs_diff(&got, &want.contiguous().unwrap()) <= 1e-5);
            }
        }
    }

    /// Depthwise 3×3 timings on BlazeFace-sized layers: the op, the generic rows, the fast
    /// rows alone (prints; asserts nothing on time).
    /// `cargo test --release -p avsense-nn --lib layer_timings -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn layer_timings() {
        for &(hw, c) in &[(128, 24), (64, 48), (32, 96)] {
            let x = ramp(&[1, hw, hw, c], 0.1);
            let wd = ramp(&[3, 3, c, 1], 0.5);
            let cfg = DepthwiseConv2dConfig {
                layout: ConvLayout::Nhwc,
                ..Default::default()
            };
            let t_dw = median_ms(&|| {
                depthwise_conv2d(&x, &wd, None, &cfg).unwrap();
            });
            let g = geometry(&x, &wd, &cfg).unwrap();
            let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let wv = wd.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let row = vec![0f32; g.ow * c];
            let t_dw_old = median_ms(&|| {
                let mut row = row.clone();
                for oy in 0..g.oh {
                    nhwc_row(&xv, &wv, None, &g, 0, oy, &mut row);
                }
            });
            let avx2 = Avx2::detect();
            let t_dw_rows = median_ms(&|| {
                let mut row = row.clone();
                for oy in 0..g.oh {
                    let r = Row {
                        image: &xv,
                        w: &wv,
                        bias: None,
                        g: &g,
                        oy,
                    };
                    nhwc_row_fast(r, &mut row, avx2);
                }
            });
            let t_alloc = median_ms(&|| {
                let v = vec![0f32; g.oh * g.ow * c];
                std::hint::black_box(&v);
            });
            eprintln!(
                "{hw}²×{c}: depthwise 3×3 {t_dw:.3} ms (generic rows {t_dw_old:.3} ms, fast rows alone {t_dw_rows:.3} ms, AVX2 {}), zeroed output alloc {t_alloc:.3} ms",
                avx2.is_some()
            );
        }
    }
}
