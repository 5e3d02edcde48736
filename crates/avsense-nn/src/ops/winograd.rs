//! [`conv3x3_winograd_nhwc`]: 3×3 stride-1 convolution of channels-last data by Winograd's
//! minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016).
//!
//! Each 2×2 block of output pixels (a tile) is computed from the 4×4 input patch around it:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, with
//!
//! ```text
//!       ⎡1  0 −1  0⎤        ⎡ 1   0   0⎤
//! Bᵀ =  ⎢0  1  1  0⎥   G =  ⎢ ½   ½   ½⎥   Aᵀ = ⎡1  1  1  0⎤
//!       ⎢0 −1  1  0⎥        ⎢ ½  −½   ½⎥        ⎣0  1 −1 −1⎦
//!       ⎣0  1  0 −1⎦        ⎣ 0   0   1⎦
//! ```
//!
//! Summed over the input channels, the element-wise product becomes 16 matrix products per
//! block of tiles, `M_ξ [T, CO] = V_ξ [T, C] · U_ξ [C, CO]` (ξ = one of the 4×4 positions,
//! `V` the transformed input patches, `U = G g Gᵀ` the transformed filter, made once by
//! [`WinogradFilter::new`]). That is 16 multiply-adds per tile (4 pixels) and input–output
//! channel pair instead of 36: 2.25× less arithmetic than im2col + gemm, for transforms
//! that only add and subtract. The transforms' coefficients are 0, ±1 and ±½, so the result
//! differs from the direct sum by rounding only (≈ 1e-6 relative; the unit tests bound it).
//!
//! Work is cut into bands of whole tile rows (a band's output rows are contiguous in NHWC),
//! sized so that one band's transformed inputs and products stay in the L2 cache; the
//! bands are shared out among the threads, each with its own scratch, and the caller's
//! epilogue runs over each band's output right after it was written.

use super::cpu::{cpu_f32, parallel_parts};
use super::matmul::{self, MatMut, MatRef};
use super::simd::{Avx2, LANES};
use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;

const OP: &str = "conv3x3_winograd_nhwc";

/// `G`, the filter transform.
const G: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// A 3×3 filter from `C` to `CO` channels in Winograd's domain: `U_ξ = G g Gᵀ`, stored as
/// 16 matrices `[C, CO]` (ξ = 4·row + column of the 4×4 transform).
#[derive(Debug, Clone)]
pub struct WinogradFilter {
    u: Vec<f32>,
    c: usize,
    co: usize,
}

impl WinogradFilter {
    /// Transforms TF's filter `[3, 3, C, CO]` (any device and float dtype; the values are
    /// read to the host), computing in f64.
    pub fn new(w: &Tensor) -> candle_core::Result<Self> {
        let (kh, kw, c, co) = w.dims4()?;
        if (kh, kw) != (3, 3) || c == 0 || co == 0 {
            candle_core::bail!(
                "{OP}: the filter must be [3, 3, C, CO] with C, CO > 0, not {:?}",
                w.dims()
            );
        }
        let wv = w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut u = vec![0f32; 16 * c * co];
        let g = |ky: usize, kx: usize, ci: usize, o: usize| {
            f64::from(wv[((ky * 3 + kx) * c + ci) * co + o])
        };
        for ci in 0..c {
            for o in 0..co {
                // t = G g (4 × 3), then U = t Gᵀ (4 × 4).
                let mut t = [[0f64; 3]; 4];
                for (a, row) in t.iter_mut().enumerate() {
                    for (kx, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|ky| G[a][ky] * g(ky, kx, ci, o)).sum();
                    }
                }
                for (a, row) in t.iter().enumerate() {
                    for (b, gb) in G.iter().enumerate() {
                        let v: f64 = row.iter().zip(gb).map(|(x, y)| x * y).sum();
                        u[((a * 4 + b) * c + ci) * co + o] = v as f32;
                    }
                }
            }
        }
        Ok(Self { u, c, co })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.c
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.co
    }

    /// `U_ξ` as a `[C, CO]` matrix.
    fn matrix(&self, xi: usize) -> candle_core::Result<MatRef<'_>> {
        let n = self.c * self.co;
        MatRef::new(&self.u[xi * n..(xi + 1) * n], self.c, self.co, self.co, 1)
    }
}

/// `V = Bᵀ d B` for `L` channels at once; `d[4·i + j]` holds the patch's row `i`, column `j`.
#[inline(always)]
fn input_transform<const L: usize>(d: &[[f32; L]; 16]) -> [[f32; L]; 16] {
    let mut t = [[0f32; L]; 16];
    for j in 0..4 {
        for l in 0..L {
            let (d0, d1, d2, d3) = (d[j][l], d[4 + j][l], d[8 + j][l], d[12 + j][l]);
            t[j][l] = d0 - d2;
            t[4 + j][l] = d1 + d2;
            t[8 + j][l] = d2 - d1;
            t[12 + j][l] = d1 - d3;
        }
    }
    let mut v = [[0f32; L]; 16];
    for i in 0..4 {
        for l in 0..L {
            let (t0, t1, t2, t3) = (
                t[4 * i][l],
                t[4 * i + 1][l],
                t[4 * i + 2][l],
                t[4 * i + 3][l],
            );
            v[4 * i][l] = t0 - t2;
            v[4 * i + 1][l] = t1 + t2;
            v[4 * i + 2][l] = t2 - t1;
            v[4 * i + 3][l] = t1 - t3;
        }
    }
    v
}

/// `Y = Aᵀ m A` for `L` channels at once: the tile's 2×2 outputs, `y[2·i + j]`.
#[inline(always)]
fn output_transform<const L: usize>(m: &[[f32; L]; 16]) -> [[f32; L]; 4] {
    let mut s = [[0f32; L]; 8];
    for j in 0..4 {
        for l in 0..L {
            let (m0, m1, m2, m3) = (m[j][l], m[4 + j][l], m[8 + j][l], m[12 + j][l]);
            s[j][l] = m0 + m1 + m2;
            s[4 + j][l] = m1 - m2 - m3;
        }
    }
    let mut y = [[0f32; L]; 4];
    for i in 0..2 {
        for l in 0..L {
            let (s0, s1, s2, s3) = (
                s[4 * i][l],
                s[4 * i + 1][l],
                s[4 * i + 2][l],
                s[4 * i + 3][l],
            );
            y[2 * i][l] = s0 + s1 + s2;
            y[2 * i + 1][l] = s1 - s2 - s3;
        }
    }
    y
}

/// Geometry of one convolution: input `[H, W, C]` per image, padding, output and tiles.
#[derive(Debug, Clone, Copy)]
struct Plan {
    h: usize,
    w: usize,
    c: usize,
    co: usize,
    top: usize,
    left: usize,
    ow: usize,
    /// Tiles per row.
    tw: usize,
    /// Tile rows per band.
    band: usize,
}

impl Plan {
    /// Transforms the input patches of the tiles of `rows` tile rows from `ty0` of image
    /// `xb` into `v` (16 matrices `[n, C]`, `n` = `rows` × tiles per row).
    #[inline(always)]
    fn gather_body(&self, xb: &[f32], ty0: usize, rows: usize, v: &mut [f32], zeros: &[f32]) {
        let (c, nt) = (self.c, rows * self.tw);
        for r in 0..rows {
            for tx in 0..self.tw {
                let t = r * self.tw + tx;
                // The 16 input pixels of the patch (zeros outside the image).
                let y0 = 2 * (ty0 + r) as isize - self.top as isize;
                let x0 = 2 * tx as isize - self.left as isize;
                let px: [&[f32]; 16] = std::array::from_fn(|k| {
                    let (iy, ix) = (y0 + (k / 4) as isize, x0 + (k % 4) as isize);
                    if iy < 0 || ix < 0 || iy as usize >= self.h || ix as usize >= self.w {
                        zeros
                    } else {
                        let at = (iy as usize * self.w + ix as usize) * c;
                        &xb[at..at + c]
                    }
                });
                let mut at = 0;
                while at + LANES <= c {
                    let mut d = [[0f32; LANES]; 16];
                    for (dk, p) in d.iter_mut().zip(&px) {
                        dk.copy_from_slice(&p[at..at + LANES]);
                    }
                    let out = input_transform(&d);
                    for (xi, o) in out.iter().enumerate() {
                        let dst = (xi * nt + t) * c + at;
                        v[dst..dst + LANES].copy_from_slice(o);
                    }
                    at += LANES;
                }
                for ch in at..c {
                    let d: [[f32; 1]; 16] = std::array::from_fn(|k| [px[k][ch]]);
                    let out = input_transform(&d);
                    for (xi, o) in out.iter().enumerate() {
                        v[(xi * nt + t) * c + ch] = o[0];
                    }
                }
            }
        }
    }

    /// Writes the outputs of the band's tiles from the products `m` (16 matrices
    /// `[n, CO]`) into `dst`, the band's output rows (`2·rows` or, at the bottom, fewer).
    #[inline(always)]
    fn scatter_body(&self, m: &[f32], rows: usize, dst: &mut [f32]) {
        let (co, nt, ow) = (self.co, rows * self.tw, self.ow);
        let out_rows = dst.len() / (ow * co);
        for r in 0..rows {
            for tx in 0..self.tw {
                let t = r * self.tw + tx;
                // Where output pixel (i, j) of the tile starts in `dst`, if inside.
                let at: [Option<usize>; 4] = std::array::from_fn(|k| {
                    let (oy, ox) = (2 * r + k / 2, 2 * tx + k % 2);
                    (oy < out_rows && ox < ow).then_some((oy * ow + ox) * co)
                });
                let mut o = 0;
                while o + LANES <= co {
                    let mut s = [[0f32; LANES]; 16];
                    for (xi, sk) in s.iter_mut().enumerate() {
                        let from = (xi * nt + t) * co + o;
                        sk.copy_from_slice(&m[from..from + LANES]);
                    }
                    let y = output_transform(&s);
                    for (vals, a) in y.iter().zip(at) {
                        if let Some(a) = a {
                            dst[a + o..a + o + LANES].copy_from_slice(vals);
                        }
                    }
                    o += LANES;
                }
                for o in o..co {
                    let s: [[f32; 1]; 16] = std::array::from_fn(|xi| [m[(xi * nt + t) * co + o]]);
                    let y = output_transform(&s);
                    for (vals, a) in y.iter().zip(at) {
                        if let Some(a) = a {
                            dst[a + o] = vals[0];
                        }
                    }
                }
            }
        }
    }
}

/// Both transforms, in a build for the running CPU: [`Plan::gather_body`] and
/// [`Plan::scatter_body`] compiled for AVX2 when `avx2` carries the token (the same
/// additions and subtractions in the same order, so the same results), else portable.
#[derive(Debug, Clone, Copy)]
struct Transforms {
    plan: Plan,
    avx2: Option<Avx2>,
}

impl Transforms {
    /// Transforms the input patches of `rows` tile rows from `ty0` of image `xb` into `v`.
    fn gather(&self, xb: &[f32], ty0: usize, rows: usize, v: &mut [f32], zeros: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(proof) = self.avx2 {
            return gather_with_avx2(proof, &self.plan, xb, ty0, rows, v, zeros);
        }
        self.plan.gather_body(xb, ty0, rows, v, zeros);
    }

    /// Writes the band's outputs from the products `m` into `dst`.
    fn scatter(&self, m: &[f32], rows: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(proof) = self.avx2 {
            return scatter_with_avx2(proof, &self.plan, m, rows, dst);
        }
        self.plan.scatter_body(m, rows, dst);
    }
}

/// [`Plan::gather_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gather_avx2(plan: &Plan, xb: &[f32], ty0: usize, rows: usize, v: &mut [f32], zeros: &[f32]) {
    plan.gather_body(xb, ty0, rows, v, zeros)
}

/// [`gather_avx2`] for safe code: the token proves that the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
fn gather_with_avx2(
    _proof: Avx2,
    plan: &Plan,
    xb: &[f32],
    ty0: usize,
    rows: usize,
    v: &mut [f32],
    zeros: &[f32],
) {
    // SAFETY: an `Avx2` value exists only when `Avx2::detect` found AVX2 on the running CPU,
    // so every instruction the AVX2 build may use is available here.
    unsafe { gather_avx2(plan, xb, ty0, rows, v, zeros) }
}

/// [`Plan::scatter_body`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scatter_avx2(plan: &Plan, m: &[f32], rows: usize, dst: &mut [f32]) {
    plan.scatter_body(m, rows, dst)
}

/// [`scatter_avx2`] for safe code: the token proves that the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[inline]
fn scatter_with_avx2(_proof: Avx2, plan: &Plan, m: &[f32], rows: usize, dst: &mut [f32]) {
    // SAFETY: as in `gather_with_avx2`.
    unsafe { scatter_avx2(plan, m, rows, dst) }
}

/// Tile rows per band: enough for about 64 tiles (measured by `winograd_timings` on
/// NanoDet's layers: 16 products of 50–100 rows keep gemm efficient while a band's
/// transformed inputs and products stay near the L2 cache), at least one row.
fn band_rows(tw: usize) -> usize {
    const TILES: usize = 64;
    TILES.div_ceil(tw.max(1))
}

/// Whether Winograd pays for a 3×3 stride-1 convolution from `c` to `co` channels: its
/// transforms cost about as much per channel as they save in the products when either side
/// has fewer than 32 channels (`winograd_timings`: 16 → 16 at 104² is 1.2 ms against
/// im2col's 0.8 ms; 32 → 32 about even; 64 → 32 and up 1.4–1.8× faster).
pub fn winograd_pays(c: usize, co: usize) -> bool {
    c.min(co) >= 32
}

/// 3×3, stride-1, dilation-1 convolution of NHWC `x` `[B, H, W, C]` (f32 on the CPU) with a
/// filter already in Winograd's domain, zero padding `[top, bottom, left, right]` (may
/// differ per side). Returns a contiguous `[B, OH, OW, CO]` after `epilogue` has run, in
/// place, over each band of output rows (whole pixels) right after it was computed; the
/// same contract as [`conv2d_nhwc_cpu`](super::conv2d_nhwc_cpu), whose result it equals to
/// rounding.
pub fn conv3x3_winograd_nhwc(
    x: &Tensor,
    f: &WinogradFilter,
    pad: [usize; 4],
    epilogue: &(dyn Fn(&mut [f32]) + Sync),
) -> candle_core::Result<Tensor> {
    conv3x3_winograd_banded(x, f, pad, epilogue, None)
}

/// [`conv3x3_winograd_nhwc`] with the tile rows per band given (`None`: chosen).
fn conv3x3_winograd_banded(
    x: &Tensor,
    f: &WinogradFilter,
    pad: [usize; 4],
    epilogue: &(dyn Fn(&mut [f32]) + Sync),
    band: Option<usize>,
) -> candle_core::Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        candle_core::bail!("{OP}: f32 input on the CPU only, not {:?}", x.dtype());
    }
    if c != f.c {
        candle_core::bail!(
            "{OP}: input {:?} has {c} channels, the filter expects {}",
            x.dims(),
            f.c
        );
    }
    let [top, bottom, left, right] = pad;
    let (ph, pw) = (h + top + bottom, w + left + right);
    if ph < 3 || pw < 3 {
        candle_core::bail!(
            "{OP}: input {:?} padded by {pad:?} is smaller than the 3×3 filter",
            x.dims()
        );
    }
    let (oh, ow, co) = (ph - 2, pw - 2, f.co);
    let tw = ow.div_ceil(2);
    let plan = Plan {
        h,
        w,
        c,
        co,
        top,
        left,
        ow,
        tw,
        band: band.unwrap_or_else(|| band_rows(tw)).max(1),
    };
    let xc = x.contiguous()?;
    let (xs, xl) = xc.storage_and_layout();
    let xv = cpu_f32(&xs, xl, OP, "input")?;
    let image = h * w * c;
    if xv.len() != b * image {
        candle_core::bail!("{OP}: input holds {} values, not {}", xv.len(), b * image);
    }
    let mut out = vec![0f32; b * oh * ow * co];
    let out_image = oh * ow * co;
    let band_len = 2 * plan.band * ow * co;
    let work = oh * ow * c * co * 4;
    let zeros = vec![0f32; c];
    let tf = Transforms {
        plan,
        avx2: Avx2::detect(),
    };
    for (xb, ob) in xv
        .chunks_exact(image)
        .zip(out.chunks_exact_mut(out_image.max(1)))
    {
        parallel_parts(ob, band_len, work, |first, part| {
            let nt = plan.band * tw;
            let mut v = vec![0f32; 16 * nt * c];
            let mut m = vec![0f32; 16 * nt * co];
            for (i, dst) in part.chunks_mut(band_len).enumerate() {
                let ty0 = (first + i) * plan.band;
                // The last band of an image may hold fewer tile rows.
                let rows = (dst.len() / (ow * co)).div_ceil(2);
                let n = rows * tw;
                tf.gather(xb, ty0, rows, &mut v[..16 * n * c], &zeros);
                for xi in 0..16 {
                    // Mᵀ [CO, n] = Uᵀ [CO, C] · Vᵀ [C, n]: the same memory, read by gemm
                    // as column-major operands, which it multiplies without repacking
                    // the filter for every band.
                    matmul::gemm(
                        MatMut::new(&mut m[xi * n * co..(xi + 1) * n * co], co, n, 1, co)?,
                        f.matrix(xi)?.t(),
                        MatRef::new(&v[xi * n * c..(xi + 1) * n * c], n, c, c, 1)?.t(),
                        false,
                        Parallelism::None,
                    )?;
                }
                tf.scatter(&m[..16 * n * co], rows, dst);
                epilogue(dst);
            }
            Ok(())
        })?;
    }
    Tensor::from_vec(out, (b, oh, ow, co), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d_nhwc_cpu;
    use crate::ops::test_util::{max_abs_diff, median_ms, values};

    fn tensor(shape: &[usize], seed: u64) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(values(n, seed), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn winograd_matches_im2col_with_any_padding_size_and_band() {
        for &(h, w, c, co, pad) in &[
            (8, 8, 8, 8, [1, 1, 1, 1]),
            (9, 7, 5, 3, [1, 1, 1, 1]), // odd sizes, channels not a multiple of 8
            (13, 13, 16, 24, [0, 0, 0, 0]), // VALID: 11 × 11 out
            (12, 10, 8, 17, [0, 2, 1, 0]), // asymmetric (a folded Pad)
            (3, 3, 4, 4, [0, 0, 0, 0]), // one output pixel
            (26, 26, 32, 16, [1, 1, 1, 1]), // several bands
        ] {
            let x = tensor(&[2, h, w, c], 1 + h as u64);
            let wt = tensor(&[3, 3, c, co], 7 + c as u64);
            let bias = values(co, 3);
            let ep = |rows: &mut [f32]| {
                for px in rows.chunks_exact_mut(co) {
                    for (v, b) in px.iter_mut().zip(&bias) {
                        *v = (*v + b).max(0.0);
                    }
                }
            };
            let want = conv2d_nhwc_cpu(&x, &wt, pad, (1, 1), (1, 1), &ep).unwrap();
            let f = WinogradFilter::new(&wt).unwrap();
            for band in [None, Some(1), Some(2), Some(100)] {
                let got = conv3x3_winograd_banded(&x, &f, pad, &ep, band).unwrap();
                assert_eq!(got.dims(), want.dims(), "{h}×{w}×{c}→{co} {pad:?}");
                // Sums of 9·C products of values in [−1, 1]: |Δ| is rounding (≈ 1e-6).
                let d = max_abs_diff(&got, &want);
                assert!(
                    d <= 2e-5,
                    "{h}×{w}×{c}→{co} {pad:?} band {band:?}: max |Δ| {d}"
                );
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused_with_the_op_named() {
        assert!(WinogradFilter::new(&tensor(&[5, 5, 3, 4], 1)).is_err());
        let f = WinogradFilter::new(&tensor(&[3, 3, 4, 4], 1)).unwrap();
        for (x, pad) in [
            (tensor(&[1, 6, 6, 3], 2), [1, 1, 1, 1]), // channels
            (tensor(&[1, 2, 2, 4], 2), [0, 0, 0, 0]), // smaller than the filter
        ] {
            let e = conv3x3_winograd_nhwc(&x, &f, pad, &|_| {}).unwrap_err();
            assert!(e.to_string().contains(OP), "{e}");
        }
    }

    /// NanoDet's stride-1 3×3 layers: im2col + gemm against Winograd, by band size (prints;
    /// asserts nothing on time).
    /// `cargo test --release -p avsense-nn --lib winograd_timings -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn winograd_timings() {
        for &(hw, c, co) in &[
            (104, 32, 32),
            (104, 32, 16),
            (104, 16, 16),
            (52, 64, 64),
            (52, 64, 32),
            (52, 128, 128),
            (26, 256, 128),
            (26, 128, 128),
            (13, 256, 256),
            (13, 256, 128),
        ] {
            let x = tensor(&[1, hw, hw, c], 1);
            let wt = tensor(&[3, 3, c, co], 2);
            let f = WinogradFilter::new(&wt).unwrap();
            let pad = [1, 1, 1, 1];
            let im2col = median_ms(&|| {
                conv2d_nhwc_cpu(&x, &wt, pad, (1, 1), (1, 1), &|_| {}).unwrap();
            });
            let mut line = format!("{hw}²×{c} → {co}: im2col {im2col:.3} ms, winograd");
            let chosen = band_rows(hw.div_ceil(2));
            for band in [1, 2, 4, 8, chosen] {
                let t = median_ms(&|| {
                    conv3x3_winograd_banded(&x, &f, pad, &|_| {}, Some(band)).unwrap();
                });
                line += &format!(" {band}: {t:.3}");
            }
            eprintln!("{line} ms (chosen {chosen})");
        }
    }
}
