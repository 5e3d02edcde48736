//! Tensor ops that candle 0.11 lacks or runs slowly on the CPU: depthwise 2-D convolution,
//! regular convolution (NCHW [`conv2d_cpu`], channels-last [`conv2d_nhwc_cpu`]), channels-last
//! max pooling, temporal convolutions, and element-wise maps in a tensor's memory order.
//!
//! # Files
//!
//! ```text
//! mod.rs             this doc, the shared ConvLayout / Padding types, the public paths
//! depthwise/mod.rs   depthwise_conv2d: settings, geometry, the candle CustomOp2, the generic
//!                    NHWC rows and NCHW planes, the non-CPU fallback
//! depthwise/fast.rs  register-blocked NHWC depthwise rows (an AVX2 build where the CPU has it)
//! im2col.rs          the im2col + gemm skeleton and geometry shared by both convolutions
//! conv.rs            conv2d_cpu (NCHW in and out)
//! conv_nhwc.rs       conv2d_nhwc_cpu (channels last, TF's filter, fused epilogue)
//! pool.rs            max_pool2d_nhwc_cpu
//! temporal.rs        temporal_conv, temporal_conv_sum_nhwc (Light-ASD's (K,1,1) convolutions)
//! winograd.rs        conv3x3_winograd_nhwc (3×3 stride-1, Winograd F(2×2, 3×3)), WinogradFilter
//! elementwise.rs     dense_order, inverse_permutation, zip_map_f32
//! geometry.rs        one axis of a window (output size, TF SAME padding), the tap index
//! cpu.rs             CPU storage slices and row/part threading
//! matmul.rs          a bounds-checked call of `gemm::gemm` over strided matrix views
//! simd.rs            lane loads and the AVX2 CPU-feature token
//! test_util.rs       (tests only) inputs, max |Δ|, the timer of the ignored timing tests
//! ```
//!
//! # Unsafe code
//!
//! Three places, each guarded so that safe code cannot call it wrongly: the matrix products
//! go through `matmul::gemm`, which checks every operand's extent against its slice before
//! it calls `gemm::gemm`; the AVX2 kernels are reached only through a `simd::Avx2` token,
//! which only `simd::Avx2::detect` makes, after the CPU reported AVX2; and the unchecked
//! lane load `simd::load_lanes_unchecked` is an `unsafe fn` whose callers prove the bound.
//!
//! # `depthwise_conv2d` — signature and layouts
//!
//! ```text
//! pub fn depthwise_conv2d(
//!     x: &Tensor,                    // input, f32 (other float dtypes are converted and back)
//!     w: &Tensor,                    // filter, same dtype as x
//!     bias: Option<&Tensor>,         // [C·M] or None
//!     cfg: &DepthwiseConv2dConfig,   // layout, stride, dilation, padding
//! ) -> candle_core::Result<Tensor>
//! ```
//!
//! | `cfg.layout`        | `x`            | `w`                         | output              |
//! |---------------------|----------------|-----------------------------|---------------------|
//! | [`ConvLayout::Nhwc`] | `[B, H, W, C]` | `[KH, KW, C, M]` (TF, TF.js) | `[B, OH, OW, C·M]`  |
//! | [`ConvLayout::Nchw`] | `[B, C, H, W]` | `[C·M, 1, KH, KW]` (candle/PyTorch, `groups = C`) | `[B, C·M, OH, OW]` |
//!
//! `M` is the depth multiplier (1 in every MobileNet); output channel `o` reads input
//! channel `o / M` (TF's `c·M + m` order). A TFLite `DEPTHWISE_CONV_2D` filter
//! `[1, KH, KW, C·M]` is `w.reshape((KH, KW, C, M))`.
//!
//! Padding ([`Padding`]): `Same` is TensorFlow's (`OH = ⌈H / stride⌉`, total padding
//! `max((OH − 1)·stride + (KH − 1)·dilation + 1 − H, 0)`, the odd pixel at the bottom/right,
//! so a stride-2 layer on an even size pads 0 on top and 1 below); `Valid` pads nothing;
//! `Explicit { top, bottom, left, right }` pads zeros as given (TF.js explicit padding,
//! PyTorch's symmetric `padding = p`).
//!
//! On the CPU the op is a direct kernel over contiguous data (a candle
//! [`CustomOp2`](candle_core::CustomOp2)): for NHWC every tap is a multiply-add over a row of
//! `C` contiguous channels, for NCHW over a row of output pixels; rows are split over threads
//! when the layer is large. NHWC layers with depth multiplier 1, `C` a multiple of 8 and a
//! 3×3 or 5×5 filter (all of BlazeFace's) take a register-blocked form of the same sum
//! (`depthwise::fast`, AVX2 where the CPU has it), ≈ 4× faster and equal bit for bit.
//! candle's `conv2d` with `groups = C` instead runs one convolution per channel (≈ 15×
//! slower, FACTS.md). On other devices the op falls back to candle's grouped `conv2d`
//! (transposing NHWC to NCHW and back, padding explicitly; there stride and dilation must be
//! equal in both directions).
//!
//! The summation order is: bias (or 0), then the taps row by row. Results agree with
//! candle's grouped `conv2d` to ~1e-6 (unit tests assert ≤ 1e-5).

mod conv;
mod conv_nhwc;
mod cpu;
mod depthwise;
mod elementwise;
mod geometry;
mod im2col;
mod matmul;
mod pool;
mod simd;
mod temporal;
mod winograd;

#[cfg(test)]
mod test_util;

pub use conv::conv2d_cpu;
pub use conv_nhwc::conv2d_nhwc_cpu;
pub use depthwise::{depthwise_conv2d, DepthwiseConv2dConfig};
pub use elementwise::{dense_order, inverse_permutation, zip_map_f32};
pub use pool::max_pool2d_nhwc_cpu;
pub use temporal::{temporal_conv, temporal_conv_sum_nhwc, TemporalBranch};
pub use winograd::{conv3x3_winograd_nhwc, winograd_pays, WinogradFilter};

/// Memory order of the input and output tensors (see the module doc for the filter's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvLayout {
    /// `[B, C, H, W]`, candle's and PyTorch's order.
    #[default]
    Nchw,
    /// `[B, H, W, C]`, TensorFlow's, TF.js's and TFLite's order.
    Nhwc,
}

/// Spatial zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// TensorFlow's `SAME`: output size `⌈in / stride⌉`, extra pixel at the bottom/right.
    #[default]
    Same,
    /// No padding: output size `⌊(in − effective kernel) / stride⌋ + 1`.
    Valid,
    /// Explicit zero padding on each side.
    Explicit {
        /// Rows above.
        top: usize,
        /// Rows below.
        bottom: usize,
        /// Columns on the left.
        left: usize,
        /// Columns on the right.
        right: usize,
    },
}
