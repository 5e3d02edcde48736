//! Test helpers shared by the ops' unit tests: deterministic inputs and the difference of
//! two tensors.

use candle_core::{Device, Tensor};

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
pub(super) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A CPU tensor of `shape` whose element `i` (in memory order) is `f(i)`.
pub(super) fn from_fn(shape: &[usize], f: impl Fn(f32) -> f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| f(i as f32)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("a tensor of its own size")
}

/// Multiples of ½ in [−1, 1] along a sine: sums of products of them are exact in f32, so
/// two correct kernels agree to rounding of the final sums only.
pub(super) fn halves(shape: &[usize], seed: f32) -> Tensor {
    from_fn(shape, |i| ((i * 0.37 + seed).sin() * 1.7).round() / 2.0)
}

/// [`halves`] plus a slow cosine of amplitude 0.1 (no two taps alike).
pub(super) fn halves_jittered(shape: &[usize], seed: f32) -> Tensor {
    from_fn(shape, |i| {
        ((i * 0.37 + seed).sin() * 1.7).round() / 2.0 + (i * 0.011).cos() * 0.1
    })
}

/// `amplitude · sin(i · step + seed)`.
pub(super) fn sine(shape: &[usize], step: f32, amplitude: f32, seed: f32) -> Tensor {
    from_fn(shape, |i| (i * step + seed).sin() * amplitude)
}

/// The largest `|a − b|` over all elements (f32 tensors of one shape).
pub(super) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("difference of two tensors of one shape")
}

/// Median wall time of 15 calls of `f` after one warm-up call, in milliseconds (for the
/// ignored timing tests, which print and assert nothing on time).
pub(super) fn median_ms(f: &dyn Fn()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..15)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
