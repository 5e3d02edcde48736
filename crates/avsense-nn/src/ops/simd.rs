//! Lane loads for the vectorised kernels and the CPU-feature token that unlocks their AVX2
//! builds.

/// Values per vector in the NHWC kernels (8 f32 = one AVX2 register, two SSE2 ones).
pub(super) const LANES: usize = 8;

/// The [`LANES`] values of `s` from `at` (bounds-checked).
#[inline(always)]
pub(super) fn load_lanes(s: &[f32], at: usize) -> [f32; LANES] {
    let mut v = [0f32; LANES];
    v.copy_from_slice(&s[at..at + LANES]);
    v
}

/// [`load_lanes`] without the bounds test, for inner loops whose indices were proven in
/// range once, outside the loop.
///
/// # Safety
///
/// The caller must make sure that `at + LANES <= s.len()`.
#[inline(always)]
pub(super) unsafe fn load_lanes_unchecked(s: &[f32], at: usize) -> [f32; LANES] {
    debug_assert!(at + LANES <= s.len());
    // SAFETY: the caller guarantees that the LANES values from `at` are inside `s`;
    // read_unaligned has no alignment requirement.
    unsafe { s.as_ptr().add(at).cast::<[f32; LANES]>().read_unaligned() }
}

/// Proof that the running CPU executes AVX2 instructions: the only way to reach a kernel
/// compiled with `#[target_feature(enable = "avx2")]`. Its field is private, so the one way
/// to get a value is [`Avx2::detect`], which asks the CPU; safe code therefore cannot run an
/// AVX2 build on a CPU without AVX2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx2(());

impl Avx2 {
    /// `Some` when this CPU has AVX2 (detected once and cached by std), `None` elsewhere
    /// (and always off x86-64).
    #[inline]
    pub(super) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Self(()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_loads_agree() {
        let v: Vec<f32> = (0..20).map(|i| i as f32).collect();
        for at in 0..=v.len() - LANES {
            // SAFETY: at + LANES ≤ v.len() by the loop's range.
            let u = unsafe { load_lanes_unchecked(&v, at) };
            assert_eq!(u, load_lanes(&v, at));
        }
    }

    #[test]
    fn avx2_token_follows_the_cpu() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            Avx2::detect().is_some(),
            std::arch::is_x86_feature_detected!("avx2")
        );
        #[cfg(not(target_arch = "x86_64"))]
        assert!(Avx2::detect().is_none());
    }
}
