//! [`conv2d_nhwc_cpu`]: regular convolution on channels-last data with TF's filter as
//! stored, on the im2col skeleton, with an epilogue fused over each block of output rows.

use super::cpu::cpu_f32;
use super::im2col::{ConvGeometry, ConvParams};
use super::matmul::{self, MatMut, MatRef};
use candle_core::{Device, Tensor};
use gemm::Parallelism;

/// Regular (groups = 1) 2-D convolution on channels-last data, f32 on the CPU: `x`
/// `[B, H, W, C]` (read in place when contiguous), `w` TF's filter `[KH, KW, C, CO]` as
/// stored in the graph, zero padding `[top, bottom, left, right]` (may differ per side),
/// stride and dilation `(rows, columns)`. Returns a contiguous `[B, OH, OW, CO]` after
/// `epilogue` has run, in place, over every block of output rows (`n × CO` values, whole
/// pixels) right after that block was computed, while it is still in cache.
///
/// Why beside [`conv2d_cpu`](super::conv2d_cpu): that one returns NCHW, so in a graph held
/// as NHWC every convolution's output is a permuted view, and each element-wise op after it
/// (bias, activation, a residual add) then either copies or mixes two memory orders, which
/// candle runs on its slow strided path (in BlazeFace the residual adds cost ⅓ as much
/// as the convolutions). Here nothing is transposed: TF's filter already is the `[K, CO]`
/// matrix for `k = (ky·KW + kx)·C + c`, the im2col row of an output pixel is `KH` runs of
/// `KW·C` contiguous input values (one copy each when inside the image), a 1×1 stride-1
/// convolution reads the input itself as the `[HW, C]` matrix, and one `gemm` per block of
/// output pixels writes the `[n, CO]` rows of the NHWC output directly. Asymmetric
/// padding (TF's SAME at stride 2) is applied while copying, never as a padded copy.
pub fn conv2d_nhwc_cpu(
    x: &Tensor,
    w: &Tensor,
    pad: [usize; 4],
    stride: (usize, usize),
    dilation: (usize, usize),
    epilogue: &(dyn Fn(&mut [f32]) + Sync),
) -> candle_core::Result<Tensor> {
    let params = ConvParams {
        pad,
        stride,
        dilation,
    };
    conv2d_nhwc_tiled(x, w, params, epilogue, None)
}

/// [`conv2d_nhwc_cpu`] with the number of output pixels per gemm given (`None`: chosen).
pub(super) fn conv2d_nhwc_tiled(
    x: &Tensor,
    w: &Tensor,
    params: ConvParams,
    epilogue: &(dyn Fn(&mut [f32]) + Sync),
    tile: Option<usize>,
) -> candle_core::Result<Tensor> {
    const OP: &str = "conv2d_nhwc_cpu";
    let (b, h, wd, c) = x.dims4()?;
    let (kh, kw, ci, co) = w.dims4()?;
    let g = ConvGeometry::new(OP, x, w, [b, h, wd, c], [kh, kw, ci, co], params)?;
    let wc = w.contiguous()?;
    let (ws, wl) = wc.storage_and_layout();
    let wv = cpu_f32(&ws, wl, OP, "filter")?;
    let (k, hw) = (g.k(), g.hw());
    let filter = MatRef::new(wv, k, co, co, 1)?;
    let mut out = vec![0f32; b * hw * co];
    // Output pixels per gemm: 1024 as in `conv2d_cpu`, but 256 for long rows (K ≥ 1024,
    // NanoDet's 3×3 convs on 128–256 channels), whose 1024-row im2col block (≥ 4 MB) falls
    // out of L2 before the gemm reads it: measured 5–30 % faster on those layers, the same
    // elsewhere (`layer_timings`).
    let tile = tile.unwrap_or(if k >= 1024 { 256 } else { 1024 });
    g.par_blocks_nhwc(OP, x, tile, &mut out, |rows, dst| {
        let n = rows.rows();
        matmul::gemm(
            MatMut::new(&mut *dst, n, co, co, 1)?,
            rows,
            filter,
            false,
            Parallelism::None,
        )?;
        epilogue(dst);
        Ok(())
    })?;
    Tensor::from_vec(out, (b, g.oh, g.ow, co), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d_cpu;
    use crate::ops::test_util::{halves_jittered as ramp, max_abs_diff, median_ms};

    #[test]
    fn conv2d_nhwc_matches_conv2d_cpu_with_asymmetric_padding_strides_and_dilation() {
        for &(c, co, k, pad, stride, dil, h, w) in &[
            (3, 24, 5, [1, 2, 1, 2], (2, 2), (1, 1), 20, 18),
            (24, 24, 1, [0, 0, 0, 0], (1, 1), (1, 1), 9, 11),
            (8, 5, 1, [0, 0, 0, 0], (2, 2), (1, 1), 7, 6),
            (16, 12, 3, [1, 1, 1, 1], (1, 1), (1, 1), 9, 7),
            (4, 6, 3, [2, 2, 2, 2], (1, 1), (2, 2), 10, 10),
            (5, 7, 3, [0, 1, 2, 0], (2, 1), (1, 1), 11, 9),
            (5, 7, 5, [0, 0, 0, 0], (1, 1), (1, 1), 40, 40), // more than one tile
        ] {
            let x = ramp(&[2, h, w, c], 0.1);
            let wt = ramp(&[k, k, c, co], 1.3);
            let bias = ramp(&[co], 2.0).to_vec1::<f32>().unwrap();
            let xn = x.permute((0, 3, 1, 2)).unwrap();
            let xp = xn
                .pad_with_zeros(2, pad[0], pad[1])
                .unwrap()
                .pad_with_zeros(3, pad[2], pad[3])
                .unwrap();
            let wn = wt.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
            let want = if stride.0 == stride.1 {
                conv2d_cpu(&xp, &wn, 0, stride.0, dil.0).unwrap()
            } else {
                xp.contiguous()
                    .unwrap()
                    .conv2d(&wn, 0, 1, dil.0, 1)
                    .unwrap()
                    .index_select(
                        &Tensor::new(
                            (0..xp.dims()[2] - (k - 1) * dil.0)
                                .step_by(stride.0)
                                .map(|v| v as u32)
                                .collect::<Vec<_>>(),
                            &Device::Cpu,
                        )
                        .unwrap(),
                        2,
                    )
                    .unwrap()
            };
            let want = want
                .broadcast_add(
                    &Tensor::new(&bias[..], &Device::Cpu)
                        .unwrap()
                        .reshape((1, co, 1, 1))
                        .unwrap(),
                )
                .unwrap()
                .relu()
                .unwrap()
                .permute((0, 2, 3, 1))
                .unwrap();
            let ep = |rows: &mut [f32]| {
                for px in rows.chunks_exact_mut(co) {
                    for (v, b) in px.iter_mut().zip(&bias) {
                        *v = (*v + b).max(0.0);
                    }
                }
            };
            let got = conv2d_nhwc_cpu(&x, &wt, pad, stride, dil, &ep).unwrap();
            assert_eq!(
                got.dims(),
                want.dims(),
                "c{c} co{co} k{k} {pad:?} {stride:?}"
            );
            assert!(got.is_contiguous());
            let d = max_abs_diff(&got, &want.contiguous().unwrap());
            assert!(
                d <= 1e-4,
                "c{c} co{co} k{k} {pad:?} {stride:?} {dil:?}: max |Δ| {d}"
            );
        }
        // Channels that do not match; a kernel larger than the input.
        let x = ramp(&[1, 4, 4, 3], 0.0);
        for w in [ramp(&[3, 3, 2, 4], 0.0), ramp(&[5, 5, 3, 4], 0.0)] {
            let e = conv2d_nhwc_cpu(&x, &w, [0; 4], (1, 1), (1, 1), &|_| {}).unwrap_err();
            assert!(e.to_string().contains("conv2d_nhwc_cpu"), "{e}");
        }
    }

    /// Per-layer timings of BlazeFace- and NanoDet-sized convolutions (prints; asserts
    /// nothing on time).
    /// `cargo test --release -p avsense-nn --lib layer_timings -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn layer_timings() {
        let params = |pad, s| ConvParams {
            pad,
            stride: (s, s),
            dilation: (1, 1),
        };
        {
            let x = ramp(&[1, 256, 256, 3], 0.1);
            let w5 = ramp(&[5, 5, 3, 24], 0.2);
            let t = median_ms(&|| {
                conv2d_nhwc_cpu(&x, &w5, [1, 2, 1, 2], (2, 2), (1, 1), &|_| {}).unwrap();
            });
            let w1 = ramp(&[5, 5, 3, 1], 0.2);
            let t1 = median_ms(&|| {
                conv2d_nhwc_cpu(&x, &w1, [1, 2, 1, 2], (2, 2), (1, 1), &|_| {}).unwrap();
            });
            eprintln!("256²×3 → 5×5/2 → 128²×24: {t:.3} ms (1 output channel: {t1:.3} ms)");
        }
        // NanoDet-sized 3×3 convolutions, by pixels per gemm.
        for &(hw, c, co, s) in &[
            (416, 3, 32, 2),
            (104, 32, 32, 1),
            (104, 32, 16, 1),
            (52, 64, 64, 1),
            (52, 128, 128, 1),
            (26, 256, 128, 1),
            (26, 256, 256, 2),
        ] {
            let x = ramp(&[1, hw, hw, c], 0.1);
            let w3 = ramp(&[3, 3, c, co], 0.2);
            let pad = if s == 2 { [0, 1, 0, 1] } else { [1, 1, 1, 1] };
            let mut line = format!("{hw}²×{c} → 3×3/{s} → {co}:");
            for tile in [64, 128, 256, 512, 1024, 4096] {
                let t = median_ms(&|| {
                    conv2d_nhwc_tiled(&x, &w3, params(pad, s), &|_| {}, Some(tile)).unwrap();
                });
                line += &format!(" {tile}: {t:.3}");
            }
            eprintln!("{line} ms");
        }
        // 1×1 convolutions, NCHW out against NHWC out.
        for &(hw, c) in &[(128, 24), (64, 48), (32, 96)] {
            let x = ramp(&[1, hw, hw, c], 0.1);
            let w1 = ramp(&[1, 1, c, c], 0.2);
            let wn = w1.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
            let xn = x.permute((0, 3, 1, 2)).unwrap();
            let t_nchw = median_ms(&|| {
                conv2d_cpu(&xn, &wn, 0, 1, 1).unwrap();
            });
            let t_nhwc = median_ms(&|| {
                conv2d_nhwc_cpu(&x, &w1, [0; 4], (1, 1), (1, 1), &|_| {}).unwrap();
            });
            eprintln!("{hw}²×{c}: 1×1 conv NCHW-out {t_nchw:.3} ms, NHWC-out {t_nhwc:.3} ms");
        }
    }
}
