//! Window geometry shared by the convolutions and the pool: the output size and padding of
//! one axis, and the input index of one filter tap.

/// Padding of one axis, as [`axis`] resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AxisPad {
    /// TensorFlow's `SAME`: output size `⌈len / stride⌉`, the odd pixel after.
    Same,
    /// None.
    Valid,
    /// Zeros before and after, as given.
    Explicit(usize, usize),
}

/// One axis of a window of `k` taps `dilation` apart moved by `stride`: the output size and
/// the padding before and after. `op` and `name` (e.g. "height") name the axis in errors:
/// a zero kernel, stride or dilation, a padded axis shorter than the window, or sizes that
/// overflow.
pub(super) fn axis(
    op: &str,
    name: &str,
    len: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: AxisPad,
) -> candle_core::Result<(usize, usize, usize)> {
    if k == 0 || stride == 0 || dilation == 0 {
        candle_core::bail!(
            "{op}: {name} kernel {k}, stride {stride} and dilation {dilation} must be ≥ 1"
        );
    }
    let overflow = || candle_core::Error::Msg(format!("{op}: {name} geometry overflows"));
    let eff = (k - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    match pad {
        AxisPad::Same => {
            let out = len.div_ceil(stride);
            let total = out
                .saturating_sub(1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(eff))
                .ok_or_else(overflow)?
                .saturating_sub(len);
            Ok((out, total / 2, total - total / 2))
        }
        AxisPad::Valid => {
            if len < eff {
                candle_core::bail!(
                    "{op}: VALID padding needs {name} ≥ effective kernel {eff}, got {len}"
                );
            }
            Ok(((len - eff) / stride + 1, 0, 0))
        }
        AxisPad::Explicit(before, after) => {
            let padded = len
                .checked_add(before)
                .and_then(|v| v.checked_add(after))
                .ok_or_else(overflow)?;
            if padded < eff {
                candle_core::bail!(
                    "{op}: padded {name} {padded} is smaller than the effective kernel {eff}"
                );
            }
            Ok(((padded - eff) / stride + 1, before, after))
        }
    }
}

/// Input index along one axis for output position `o` and tap `k`, if inside the input.
#[inline(always)]
pub(super) fn tap(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    let i = (o * stride + k * dilation).checked_sub(pad)?;
    (i < len).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_skips_the_padding_and_the_far_side() {
        // Stride 2, dilation 1, one row of padding on a length-5 axis.
        let taps: Vec<_> = (0..3).map(|k| tap(0, k, 2, 1, 1, 5)).collect();
        assert_eq!(taps, vec![None, Some(0), Some(1)]);
        assert_eq!(tap(2, 2, 2, 1, 1, 5), None);
        assert_eq!(tap(2, 1, 2, 1, 1, 5), Some(4));
    }

    #[test]
    fn same_valid_and_explicit_axes() {
        // TF SAME, stride 2 on an even size: nothing before, one after.
        assert_eq!(
            axis("t", "h", 96, 3, 2, 1, AxisPad::Same).unwrap(),
            (48, 0, 1)
        );
        assert_eq!(
            axis("t", "h", 7, 3, 1, 2, AxisPad::Same).unwrap(),
            (7, 2, 2)
        );
        assert_eq!(
            axis("t", "h", 7, 3, 2, 1, AxisPad::Valid).unwrap(),
            (3, 0, 0)
        );
        assert_eq!(
            axis("t", "h", 8, 3, 2, 1, AxisPad::Explicit(0, 2)).unwrap(),
            (4, 0, 2)
        );
        for bad in [
            axis("t", "h", 2, 3, 1, 1, AxisPad::Valid),
            axis("t", "h", 1, 3, 1, 1, AxisPad::Explicit(0, 1)),
            axis("t", "h", 4, 0, 1, 1, AxisPad::Same),
            axis("t", "h", 4, 3, 0, 1, AxisPad::Same),
            axis("t", "h", 4, usize::MAX, 1, 2, AxisPad::Same),
        ] {
            let e = bad.unwrap_err().to_string();
            assert!(e.starts_with("t: "), "{e}");
        }
    }
}
