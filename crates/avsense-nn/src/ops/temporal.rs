//! Temporal convolutions over frames (3-D convolutions with `(K, 1, 1)` kernels, which
//! candle 0.11 lacks): [`temporal_conv`] on any device, and the fused channels-last
//! [`temporal_conv_sum_nhwc`] that Light-ASD runs on the CPU.

use super::cpu::{cpu_f32, parallel_chunks};
use super::matmul::{self, MatMut, MatRef};
use candle_core::{DType, Device, Tensor};
use gemm::Parallelism;

/// Temporal convolution over frames: `x` `[N, T, CI, S]` (N sequences of T frames, CI
/// channels of S = H·W pixels each), `w` `[K, CO, CI]` (tap-major), `bias` `[CO]`, `pad`
/// zero frames before and after (the same on both sides); returns `[N, T + 2·pad − K + 1,
/// CO, S]`, with ReLU applied when `relu` is set.
///
/// This is a 3-D convolution with a `(K, 1, 1)` kernel (PyTorch's `Conv3d` on `[N, C, T,
/// H, W]` data), held frame-major so that the spatial convolutions around it see plain
/// `[N·T, C, H, W]` images; candle 0.11 has no 3-D convolution. Every output frame is
/// `bias + Σ_k W_k · X[t + k − pad]`, computed as candle matrix products over shifted
/// views of the zero-padded input, so it runs on any device. (On the CPU Light-ASD takes
/// the channels-last [`temporal_conv_sum_nhwc`] instead, which also fuses the ReLU and the
/// sum of a block's two branches.)
pub fn temporal_conv(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    pad: usize,
    relu: bool,
) -> candle_core::Result<Tensor> {
    let (n, t, ci, s) = x.dims4()?;
    let (k, co, wci) = w.dims3()?;
    if wci != ci || bias.dims1()? != co || k == 0 {
        candle_core::bail!(
            "temporal_conv: input {:?}, filter {:?}, bias {:?}",
            x.dims(),
            w.dims(),
            bias.dims()
        );
    }
    if t + 2 * pad < k {
        candle_core::bail!(
            "temporal_conv: {t} frames + 2×{pad} padding is shorter than the kernel ({k})"
        );
    }
    let ot = t + 2 * pad - k + 1;
    let xp = if pad > 0 {
        x.pad_with_zeros(1, pad, pad)?
    } else {
        x.clone()
    };
    let mut acc = bias
        .reshape((1, co, 1))?
        .broadcast_as((n * ot, co, s))?
        .contiguous()?;
    for kk in 0..k {
        let xs = xp
            .narrow(1, kk, ot)?
            .contiguous()?
            .reshape((n * ot, ci, s))?;
        let wk = w.get(kk)?;
        acc = (acc + wk.broadcast_matmul(&xs)?)?;
    }
    let acc = if relu { acc.relu()? } else { acc };
    acc.reshape((n, ot, co, s))
}

/// One branch of [`temporal_conv_sum_nhwc`]: its input `[N, T, S, CI]`, filter
/// `[K, CI, CO]` (tap-major, each tap the `CI × CO` matrix), bias `[CO]` and padding.
pub struct TemporalBranch<'a> {
    /// Input frames, channels last.
    pub x: &'a Tensor,
    /// Filter.
    pub w: &'a Tensor,
    /// Bias.
    pub bias: &'a Tensor,
    /// Zero frames before and after.
    pub pad: usize,
}

/// One branch's contiguous operands and sizes, checked against the first branch.
struct Branch {
    x: Tensor,
    w: Tensor,
    bias: Tensor,
    pad: usize,
    /// Input frames.
    t: usize,
    /// Input channels.
    ci: usize,
    /// Taps.
    k: usize,
}

/// A branch's values, read in place.
struct BranchSlices<'a> {
    x: &'a [f32],
    w: &'a [f32],
    bias: &'a [f32],
    pad: usize,
    t: usize,
    ci: usize,
    k: usize,
}

/// `Σ_branches ReLU(bias + Σ_k X[t + k − pad] · W_k)` per output frame, channels last, on
/// the CPU (f32): every branch's input is `[N, T, S, CI]` (S = H·W pixels of CI channels,
/// contiguous), the result `[N, T, S, CO]` (all branches must give the same T).
///
/// This is the second half of a Light-ASD block — two `(K,1,1)` temporal convolutions
/// (K = 3 and 5), each followed by BatchNorm (folded into `w`, `bias`) and ReLU, summed —
/// done in one pass per output frame: each branch's `S × CO` frame is accumulated by one
/// `gemm` per tap into a scratch buffer (inputs read in place), then ReLU'd and added to
/// the output while both are in cache. Written as separate candle ops it would be two
/// convolutions, two bias adds, two ReLUs and an add over tensors of tens of MB.
pub fn temporal_conv_sum_nhwc(branches: &[TemporalBranch<'_>]) -> candle_core::Result<Tensor> {
    const OP: &str = "temporal_conv_sum_nhwc";
    let Some(first) = branches.first() else {
        candle_core::bail!("{OP}: no branch");
    };
    let (n, t, s, _) = first.x.dims4()?;
    let co = first.w.dims3()?.2;
    let mut checked = Vec::with_capacity(branches.len());
    let mut ot = None;
    for b in branches {
        let (bn, bt, bs, ci) = b.x.dims4()?;
        let (k, wci, wco) = b.w.dims3()?;
        if (bn, bs) != (n, s) || wci != ci || wco != co || b.bias.dims1()? != co || k == 0 {
            candle_core::bail!(
                "{OP}: input {:?}, filter {:?}, bias {:?} (first input {:?})",
                b.x.dims(),
                b.w.dims(),
                b.bias.dims(),
                first.x.dims()
            );
        }
        if bt + 2 * b.pad < k {
            candle_core::bail!("{OP}: {bt} frames + 2×{} < kernel {k}", b.pad);
        }
        let this_ot = bt + 2 * b.pad - k + 1;
        if *ot.get_or_insert(this_ot) != this_ot {
            candle_core::bail!("{OP}: branches give {this_ot} and {ot:?} frames");
        }
        for tt in [b.x, b.w, b.bias] {
            if !matches!(tt.device(), Device::Cpu) || tt.dtype() != DType::F32 {
                candle_core::bail!("{OP}: f32 tensors on the CPU only");
            }
        }
        checked.push(Branch {
            x: b.x.contiguous()?,
            w: b.w.contiguous()?,
            bias: b.bias.contiguous()?,
            pad: b.pad,
            t: bt,
            ci,
            k,
        });
    }
    let ot = ot.unwrap_or(t);
    let held: Vec<_> = checked
        .iter()
        .map(|b| {
            (
                b.x.storage_and_layout(),
                b.w.storage_and_layout(),
                b.bias.storage_and_layout(),
            )
        })
        .collect();
    let mut slices = Vec::with_capacity(held.len());
    for (((xs, xl), (ws, wl), (bs, bl)), b) in held.iter().zip(&checked) {
        slices.push(BranchSlices {
            x: cpu_f32(xs, xl, OP, "input")?,
            w: cpu_f32(ws, wl, OP, "filter")?,
            bias: cpu_f32(bs, bl, OP, "bias")?,
            pad: b.pad,
            t: b.t,
            ci: b.ci,
            k: b.k,
        });
    }
    let frame_out = s * co;
    let mut out = vec![0f32; n * ot * frame_out];
    let work: usize = slices.iter().map(|b| n * ot * b.k * b.ci * co * s).sum();
    thread_local! {
        /// One branch's output frame, reused from frame to frame.
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    parallel_chunks(&mut out, frame_out, work, |idx, dst| {
        let (seq, of) = (idx / ot, idx % ot);
        SCRATCH.with(|scratch| {
            let mut acc = scratch.borrow_mut();
            acc.resize(frame_out, 0.0);
            for b in &slices {
                for row in acc.chunks_exact_mut(co) {
                    row.copy_from_slice(b.bias);
                }
                for kk in 0..b.k {
                    let Some(inf) = (of + kk).checked_sub(b.pad).filter(|&f| f < b.t) else {
                        continue;
                    };
                    // acc (S × CO) += input frame (S × CI) · tap kk of the filter (CI × CO).
                    let frame = (seq * b.t + inf) * s * b.ci;
                    let tap = kk * b.ci * co;
                    let (Some(src), Some(wk)) = (
                        b.x.get(frame..frame + s * b.ci),
                        b.w.get(tap..tap + b.ci * co),
                    ) else {
                        candle_core::bail!(
                            "{OP}: frame {inf} of sequence {seq} or tap {kk} is missing"
                        );
                    };
                    matmul::gemm(
                        MatMut::new(&mut acc[..], s, co, co, 1)?,
                        MatRef::new(src, s, b.ci, b.ci, 1)?,
                        MatRef::new(wk, b.ci, co, co, 1)?,
                        true,
                        Parallelism::None,
                    )?;
                }
                for (d, a) in dst.iter_mut().zip(acc.iter()) {
                    *d += a.max(0.0);
                }
            }
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (n, ot, s, co), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{max_abs_diff, sine};

    /// Inputs of the `temporal_conv` tests.
    fn conv_input(shape: &[usize], seed: f32) -> Tensor {
        sine(shape, 0.731, 1.3, seed)
    }

    /// Inputs of the fused-sum tests.
    fn sum_input(shape: &[usize], seed: f32) -> Tensor {
        sine(shape, 0.613, 1.0, seed)
    }

    /// The same sum written out element by element.
    fn naive(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, relu: bool) -> Tensor {
        let (n, t, ci, s) = x.dims4().unwrap();
        let (k, co, _) = w.dims3().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wv = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = b.to_vec1::<f32>().unwrap();
        let ot = t + 2 * pad - k + 1;
        let mut out = vec![0f32; n * ot * co * s];
        for q in 0..n {
            for o in 0..ot {
                for c in 0..co {
                    for p in 0..s {
                        let mut acc = bv[c];
                        for kk in 0..k {
                            let f = o as isize + kk as isize - pad as isize;
                            if f < 0 || f as usize >= t {
                                continue;
                            }
                            for i in 0..ci {
                                acc += wv[(kk * co + c) * ci + i]
                                    * xv[((q * t + f as usize) * ci + i) * s + p];
                            }
                        }
                        out[((q * ot + o) * co + c) * s + p] =
                            if relu { acc.max(0.0) } else { acc };
                    }
                }
            }
        }
        Tensor::from_vec(out, (n, ot, co, s), &Device::Cpu).unwrap()
    }

    #[test]
    fn temporal_conv_matches_the_written_out_sum_in_f32_and_f64() {
        for &(n, t, ci, co, s, k, pad, relu) in &[
            (1, 7, 3, 4, 5, 3, 1, false),
            (2, 9, 4, 6, 10, 5, 2, true),
            (1, 4, 2, 3, 3, 5, 2, false), // fewer frames than taps
            (3, 6, 5, 2, 4, 1, 0, true),
        ] {
            let x = conv_input(&[n, t, ci, s], 0.3);
            let w = conv_input(&[k, co, ci], 1.1);
            let b = conv_input(&[co], 2.0);
            let want = naive(&x, &w, &b, pad, relu);
            let got = temporal_conv(&x, &w, &b, pad, relu).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert!(
                max_abs_diff(&got, &want) <= 1e-5,
                "f32 {n} {t} {ci} {co} {s} {k}"
            );
            // The same in f64.
            let g = temporal_conv(
                &x.to_dtype(DType::F64).unwrap(),
                &w.to_dtype(DType::F64).unwrap(),
                &b.to_dtype(DType::F64).unwrap(),
                pad,
                relu,
            )
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
            assert!(max_abs_diff(&g, &want) <= 1e-5, "f64");
        }
        // Too few frames for the kernel; filter channels that do not match the input's.
        let x = conv_input(&[1, 2, 3, 4], 0.0);
        let b = conv_input(&[2], 0.0);
        for w in [conv_input(&[5, 2, 3], 0.0), conv_input(&[3, 2, 4], 0.0)] {
            let e = temporal_conv(&x, &w, &b, 1, false).unwrap_err();
            assert!(e.to_string().contains("temporal_conv"), "{e}");
        }
    }

    #[test]
    fn the_fused_sum_equals_two_temporal_convs_relued_and_added() {
        let (n, t, s, ci, co) = (2, 7, 6, 3, 4);
        let x3 = sum_input(&[n, t, s, ci], 0.1);
        let x5 = sum_input(&[n, t, s, ci], 0.7);
        let w3 = sum_input(&[3, ci, co], 1.2);
        let w5 = sum_input(&[5, ci, co], 2.3);
        let b3 = sum_input(&[co], 3.1);
        let b5 = sum_input(&[co], 4.2);
        let got = temporal_conv_sum_nhwc(&[
            TemporalBranch {
                x: &x3,
                w: &w3,
                bias: &b3,
                pad: 1,
            },
            TemporalBranch {
                x: &x5,
                w: &w5,
                bias: &b5,
                pad: 2,
            },
        ])
        .unwrap();
        // The NCHW-style reference: [N, T, C, S] with filters [K, CO, CI].
        let reference = |x: &Tensor, w: &Tensor, b: &Tensor, pad| {
            let y = temporal_conv(
                &x.permute((0, 1, 3, 2)).unwrap().contiguous().unwrap(),
                &w.permute((0, 2, 1)).unwrap().contiguous().unwrap(),
                b,
                pad,
                true,
            )
            .unwrap();
            y.permute((0, 1, 3, 2)).unwrap().contiguous().unwrap()
        };
        let want = (reference(&x3, &w3, &b3, 1) + reference(&x5, &w5, &b5, 2)).unwrap();
        assert_eq!(got.dims(), want.dims());
        assert!(max_abs_diff(&got, &want) <= 1e-5);
        let bad = sum_input(&[n, t + 1, s, ci], 0.0);
        assert!(temporal_conv_sum_nhwc(&[
            TemporalBranch {
                x: &x3,
                w: &w3,
                bias: &b3,
                pad: 1
            },
            TemporalBranch {
                x: &bad,
                w: &w5,
                bias: &b5,
                pad: 2
            },
        ])
        .is_err());
    }
}
