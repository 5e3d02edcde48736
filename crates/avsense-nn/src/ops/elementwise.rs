//! Element-wise helpers that work in a tensor's memory order: which axis order is dense,
//! inverse permutations, and [`zip_map_f32`].

use super::cpu::cpu_f32;
use candle_core::{DType, Device, Tensor};

/// The axis order in which `t`'s elements lie densely in memory: a permutation `p` with
/// `t.permute(p)` contiguous (the identity for a contiguous tensor, `[0, 2, 3, 1]` for the
/// NCHW view of an NHWC buffer), or `None` for a view with gaps or broadcast axes.
pub fn dense_order(t: &Tensor) -> Option<Vec<usize>> {
    let stride = t.stride();
    let mut p: Vec<usize> = (0..t.rank()).collect();
    p.sort_by_key(|&d| std::cmp::Reverse(stride[d]));
    let dense = t.permute(p.clone()).is_ok_and(|v| v.is_contiguous());
    dense.then_some(p)
}

/// The inverse of a permutation.
pub fn inverse_permutation(p: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; p.len()];
    for (i, &d) in p.iter().enumerate() {
        if let Some(slot) = inv.get_mut(d) {
            *slot = i;
        }
    }
    inv
}

/// `f(a, b)` element by element, in one pass over memory, when `a` and `b` are f32 CPU
/// tensors of one shape laid out densely in the same axis order (both contiguous, or both
/// the same permuted view of contiguous buffers); `Ok(None)` otherwise (the caller then
/// uses candle's broadcasting ops). The result has that same memory order. Why: candle's
/// binary ops take their fast path only for contiguous operands and index every element
/// through the strides otherwise (≈ 10× slower on the NCHW views of NHWC buffers that
/// TF.js graphs pass around), and this also lets an executor fuse an activation into the
/// op (a residual `Add` then `Relu`) instead of writing and re-reading the sum.
pub fn zip_map_f32(
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32,
) -> candle_core::Result<Option<Tensor>> {
    let fits = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    if a.dims() != b.dims() || !fits(a) || !fits(b) {
        return Ok(None);
    }
    let Some(p) = dense_order(a) else {
        return Ok(None);
    };
    let (pa, pb) = (a.permute(p.clone())?, b.permute(p.clone())?);
    if !pb.is_contiguous() {
        return Ok(None);
    }
    let out: Vec<f32> = {
        let (sa, la) = pa.storage_and_layout();
        let (sb, lb) = pb.storage_and_layout();
        let (va, vb) = (
            cpu_f32(&sa, la, "zip_map_f32", "a")?,
            cpu_f32(&sb, lb, "zip_map_f32", "b")?,
        );
        va.iter().zip(vb).map(|(&x, &y)| f(x, y)).collect()
    };
    Tensor::from_vec(out, pa.dims(), &Device::Cpu)?
        .permute(inverse_permutation(&p))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{halves_jittered as ramp, max_abs_diff, median_ms};

    #[test]
    fn zip_map_takes_equal_shapes_in_one_memory_order() {
        let a = ramp(&[2, 3, 4], 0.0);
        let b = ramp(&[2, 3, 4], 1.0);
        let got = zip_map_f32(&a, &b, |x, y| (x + y).max(0.0))
            .unwrap()
            .unwrap();
        let want = (&a + &b).unwrap().relu().unwrap();
        assert_eq!(max_abs_diff(&got, &want), 0.0);
        // The same values held with axes 1 and 2 swapped in memory, seen in a's order.
        let swapped = |t: &Tensor| {
            t.transpose(1, 2)
                .and_then(|t| t.contiguous())
                .and_then(|t| t.transpose(1, 2))
                .unwrap()
        };
        let t = swapped(&b);
        assert!(zip_map_f32(&a, &t, |x, y| x + y).unwrap().is_none());
        // Both the same view of transposed buffers: computed in memory order, kept in it.
        let u = swapped(&a);
        assert_eq!(dense_order(&u), Some(vec![0, 2, 1]));
        let got = zip_map_f32(&u, &t, |x, y| x - y).unwrap().unwrap();
        assert!(!got.is_contiguous() && got.transpose(1, 2).unwrap().is_contiguous());
        assert_eq!(max_abs_diff(&got, &(&a - &b).unwrap()), 0.0);
        assert_eq!(dense_order(&a.narrow(2, 0, 2).unwrap()), None);
        let c = ramp(&[2, 3, 1], 0.0);
        assert!(zip_map_f32(&a, &c, |x, y| x + y).unwrap().is_none());
    }

    /// Residual add + ReLU on BlazeFace-sized activations: candle's ops, the fused map, and
    /// candle on mixed memory orders (prints; asserts nothing on time).
    /// `cargo test --release -p avsense-nn --lib layer_timings -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn layer_timings() {
        for &(hw, c) in &[(128, 24), (64, 48), (32, 96)] {
            let a = ramp(&[1, hw, hw, c], 0.1);
            let b = a.affine(0.5, 0.1).unwrap();
            let t_add = median_ms(&|| {
                (&a + &b).unwrap().relu().unwrap();
            });
            let t_zip = median_ms(&|| {
                zip_map_f32(&a, &b, |p, q| (p + q).max(0.0)).unwrap();
            });
            let t_mixed = median_ms(&|| {
                a.broadcast_add(
                    &b.permute((0, 3, 1, 2))
                        .unwrap()
                        .contiguous()
                        .unwrap()
                        .permute((0, 2, 3, 1))
                        .unwrap(),
                )
                .unwrap();
            });
            eprintln!(
                "{hw}²×{c}: add+relu candle {t_add:.3} ms, fused {t_zip:.3} ms, mixed-layout add {t_mixed:.3} ms"
            );
        }
    }
}
