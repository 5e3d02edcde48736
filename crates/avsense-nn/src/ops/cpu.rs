//! CPU building blocks shared by the kernels: the f32 slice of a tensor's storage and row
//! threading.

use candle_core::{CpuStorage, Layout, Storage};
use rayon::prelude::*;

/// The values of contiguous f32 CPU storage, in place; `op` names the caller in errors and
/// `what` the operand.
pub(super) fn cpu_storage_f32<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: {what} must be f32 on the CPU path");
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: {what} is not contiguous");
    };
    match data.get(start..end) {
        Some(v) => Ok(v),
        None => candle_core::bail!(
            "{op}: {what} spans {start}..{end}, past its storage of {} values",
            data.len()
        ),
    }
}

/// [`cpu_storage_f32`] for a tensor's storage, which must live on the CPU.
pub(super) fn cpu_f32<'a>(
    s: &'a Storage,
    l: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => cpu_storage_f32(c, l, op, what),
        _ => candle_core::bail!("{op}: {what} must be on the CPU"),
    }
}

/// Runs `f(index, chunk)` over `out.chunks_mut(chunk)`, on several threads when `work`
/// (multiply-adds) is large enough to pay for them. Returns the first error `f` gave (the
/// other chunks still run).
pub(super) fn parallel_chunks<F>(
    out: &mut [f32],
    chunk: usize,
    work: usize,
    f: F,
) -> candle_core::Result<()>
where
    F: Fn(usize, &mut [f32]) -> candle_core::Result<()> + Sync,
{
    parallel_parts(out, chunk, work, |first, part| {
        let mut result = Ok(());
        for (i, dst) in part.chunks_mut(chunk).enumerate() {
            let r = f(first + i, dst);
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Splits `out` into one part per thread, each a run of whole `chunk`s (the last chunk of
/// `out` may be shorter), and runs `f(index of the part's first chunk, part)` on each: on
/// several threads when `work` (multiply-adds) is large enough to pay for them, else once
/// over all of `out`. A part's caller can keep scratch buffers across its chunks. Returns
/// the first error `f` gave (the other parts still run).
pub(super) fn parallel_parts<F>(
    out: &mut [f32],
    chunk: usize,
    work: usize,
    f: F,
) -> candle_core::Result<()>
where
    F: Fn(usize, &mut [f32]) -> candle_core::Result<()> + Sync,
{
    if chunk == 0 || out.is_empty() {
        return Ok(());
    }
    let n = out.len().div_ceil(chunk);
    // Below ~1 M multiply-adds (< 1 ms) a thread costs more than it saves.
    let threads = if work < (1 << 20) {
        1
    } else {
        candle_core::utils::get_num_threads().clamp(1, n.max(1))
    };
    if threads <= 1 {
        return f(0, out);
    }
    let per = n.div_ceil(threads);
    // rayon's pool: its threads persist across calls (a thread spawned per call started
    // cold, and NanoDet at 2 threads ran no faster than at 1). A panic in a kernel is a
    // bug: rayon carries it on to the caller's thread.
    let results: Vec<candle_core::Result<()>> = out
        .par_chunks_mut(per * chunk)
        .enumerate()
        .map(|(t, part)| f(t * per, part))
        .collect();
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_chunks_visits_every_chunk_once_and_returns_the_first_error() {
        for work in [0, 1 << 24] {
            let mut out = vec![0f32; 40];
            parallel_chunks(&mut out, 4, work, |i, dst| {
                dst.fill(i as f32);
                Ok(())
            })
            .unwrap();
            let want: Vec<f32> = (0..40).map(|e| (e / 4) as f32).collect();
            assert_eq!(out, want, "work {work}");
            let r = parallel_chunks(&mut out, 4, work, |i, _| {
                if i == 3 {
                    candle_core::bail!("chunk {i}")
                }
                Ok(())
            });
            assert!(r.is_err(), "work {work}");
        }
    }

    #[test]
    fn storage_slices_name_the_op() {
        let t =
            candle_core::Tensor::zeros((2, 3), candle_core::DType::F64, &candle_core::Device::Cpu)
                .unwrap();
        let (s, l) = t.storage_and_layout();
        let e = cpu_f32(&s, l, "some_op", "input").unwrap_err().to_string();
        assert!(e.contains("some_op") && e.contains("input"), "{e}");
    }
}
