//! The values flowing through a graph ([`Val`]), how an op fails before its node is named
//! ([`OpError`]), and the conversions and shape arithmetic the ops and passes share.

use candle_core::{DType, Device, Tensor};

/// A value flowing through the graph: floats on the executor's device; integers (shapes,
/// axes, permutations, paddings) as I64 tensors on the CPU.
#[derive(Clone, Debug)]
pub(super) enum Val {
    F(Tensor),
    I(Tensor),
}

impl Val {
    pub(super) fn tensor(&self) -> &Tensor {
        match self {
            Val::F(t) | Val::I(t) => t,
        }
    }

    /// `t` as a value of the same kind (float or integer) as `self`.
    pub(super) fn rewrap(&self, t: Tensor) -> Val {
        match self {
            Val::F(_) => Val::F(t),
            Val::I(_) => Val::I(t),
        }
    }
}

/// How an op failed, before the node's name is attached.
#[derive(Debug)]
pub(super) enum OpError {
    /// The node's op has no entry in the op registry.
    Unsupported,
    /// Bad attributes, shapes that do not fit, or a candle error.
    Msg(String),
}

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        OpError::Msg(e.to_string())
    }
}

/// Result of an op, before the node's name is attached.
pub(super) type OpResult<T> = std::result::Result<T, OpError>;

/// An [`OpError::Msg`].
pub(super) fn msg<T>(s: impl Into<String>) -> OpResult<T> {
    Err(OpError::Msg(s.into()))
}

/// The value as F32 on `device` (integers converted).
pub(super) fn float(v: &Val, device: &Device) -> OpResult<Tensor> {
    match v {
        Val::F(t) => Ok(t.clone()),
        Val::I(t) => Ok(t.to_dtype(DType::F32)?.to_device(device)?),
    }
}

/// An integer value's elements, flattened.
pub(super) fn ints(v: &Val) -> OpResult<Vec<i64>> {
    match v {
        Val::I(t) => Ok(t.flatten_all()?.to_vec1::<i64>()?),
        Val::F(t) => msg(format!(
            "expected an integer tensor, got float {:?}",
            t.dims()
        )),
    }
}

/// An integer value holding exactly one element.
pub(super) fn scalar_int(v: &Val) -> OpResult<i64> {
    match ints(v)?[..] {
        [a] => Ok(a),
        ref other => msg(format!("expected one integer, got {other:?}")),
    }
}

/// A value (float or integer) holding exactly one element, as f32.
pub(super) fn scalar_f32(v: &Val) -> OpResult<f32> {
    let t = v.tensor().flatten_all()?.to_dtype(DType::F32)?;
    match t.to_vec1::<f32>()?[..] {
        [a] => Ok(a),
        ref other => msg(format!("expected one value, got {} values", other.len())),
    }
}

/// A size or index that must not be negative.
pub(super) fn to_usize(v: i64) -> OpResult<usize> {
    usize::try_from(v).map_err(|_| OpError::Msg(format!("negative size {v}")))
}

/// TF's axis `a` (negative: from the end) on a tensor of rank `rank`.
pub(super) fn norm_axis(a: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a2 = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&a2) {
        Ok(a2 as usize)
    } else {
        msg(format!("axis {a} out of range for rank {rank}"))
    }
}

/// A `Reshape` target (one `-1` at most) for `count` elements; `None` if it does not fit.
pub(super) fn resolve_shape(target: &[i64], count: usize) -> Option<Vec<usize>> {
    let known: i64 = target.iter().filter(|&&d| d >= 0).product();
    let holes = target.iter().filter(|&&d| d < 0).count();
    let mut out = Vec::with_capacity(target.len());
    for &d in target {
        if d >= 0 {
            out.push(d as usize);
        } else {
            if holes != 1 || known == 0 || count as i64 % known != 0 {
                return None;
            }
            out.push((count as i64 / known) as usize);
        }
    }
    (out.iter().product::<usize>() == count).then_some(out)
}

/// NumPy broadcasting of two shapes; `None` if they do not broadcast.
pub(super) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    // Axis k of the result, read from a shape right-aligned to n axes (1 where it has none).
    let dim = |s: &[usize], k: usize| {
        if k + s.len() >= n {
            s[k + s.len() - n]
        } else {
            1
        }
    };
    (0..n)
        .map(|k| match (dim(a, k), dim(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            resolve_shape(&[1, 80, -1], 80 * 169),
            Some(vec![1, 80, 169])
        );
        assert_eq!(resolve_shape(&[2, -1], 7), None);
        assert_eq!(resolve_shape(&[-1, -1], 4), None);
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]), Some(vec![2, 4, 3]));
        assert_eq!(broadcast_shape(&[], &[4]), Some(vec![4]));
        assert_eq!(broadcast_shape(&[2, 3], &[4, 3]), None);
    }

    #[test]
    fn axes_and_scalars() {
        assert_eq!(norm_axis(-1, 4).ok(), Some(3));
        assert_eq!(norm_axis(0, 0).ok(), Some(0));
        assert!(norm_axis(4, 4).is_err());
        assert!(to_usize(-1).is_err());
        let i = |v: Vec<i64>| {
            let n = v.len();
            Val::I(Tensor::from_vec(v, n, &Device::Cpu).unwrap_or_else(|e| panic!("{e}")))
        };
        assert_eq!(scalar_int(&i(vec![7])).ok(), Some(7));
        assert!(scalar_int(&i(vec![7, 8])).is_err());
        assert_eq!(scalar_f32(&i(vec![-2])).ok(), Some(-2.0));
        let f = float(&i(vec![1, 2]), &Device::Cpu)
            .and_then(|t| Ok(t.to_vec1::<f32>()?))
            .ok();
        assert_eq!(f, Some(vec![1.0, 2.0]));
    }
}
