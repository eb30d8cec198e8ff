//! Whole tensors to and from f32, whatever their type: the standard types through [`crate::blocks`]
//! (in parallel, over runs of whole blocks), the F2I types through [`crate::f2i::dequantize_tensor`]
//! (their rows pair up, so they are dequantized as a whole). F2I quantization takes options and is
//! called directly (`f2i::quantize_tensor`).

use rayon::prelude::*;

use crate::blocks;
use crate::error::{Error, Result};
use crate::f2i;
use crate::types::GgmlType;

/// Values per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK_VALUES: usize = 1 << 16;

/// Number of elements of a tensor with these dims (ggml order), overflow-checked.
fn n_elements(dims: &[u64]) -> Result<usize> {
    dims.iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(Error::Overflow("tensor element count"))
}

/// `(ne0, product of the other dims)` as usize.
fn rows(dims: &[u64]) -> Result<(usize, usize)> {
    let ne0 = dims.first().copied().unwrap_or(1);
    let n_rows = dims
        .iter()
        .skip(1)
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or(Error::Overflow("tensor row count"))?;
    match (usize::try_from(ne0), usize::try_from(n_rows)) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err(Error::Overflow("tensor shape")),
    }
}

/// Blocks per parallel task for `ty`.
fn blocks_per_task(ty: GgmlType) -> usize {
    (CHUNK_VALUES / ty.block_size().max(1) as usize).max(1)
}

/// Dequantizes a whole tensor of type `ty` and shape `dims` (ggml order, `ne[0]` first) to f32,
/// row-major. `data` must be exactly the tensor's bytes.
pub fn tensor_to_f32(ty: GgmlType, dims: &[u64], data: &[u8]) -> Result<Vec<f32>> {
    let size = ty.tensor_size(dims)?;
    if data.len() as u64 != size {
        return Err(Error::LengthMismatch {
            what: "tensor data bytes",
            expected: size,
            got: data.len() as u64,
        });
    }
    if let Some(stages) = ty.f2i_stages() {
        let (ne0, n_rows) = rows(dims)?;
        return f2i::dequantize_tensor(data, ne0, n_rows, stages);
    }
    if !blocks::can_dequantize(ty) {
        return Err(Error::UnsupportedConversion {
            from: ty.name(),
            to: "f32",
        });
    }
    let mut out = vec![0f32; n_elements(dims)?];
    let per_task = blocks_per_task(ty);
    let values = per_task * ty.block_size() as usize;
    let bytes = per_task * ty.type_size() as usize;
    out.par_chunks_mut(values)
        .zip(data.par_chunks(bytes))
        .try_for_each(|(y, x)| blocks::dequantize(ty, x, y))?;
    Ok(out)
}

/// Quantizes a row-major f32 tensor of shape `dims` (ggml order) to `ty`, one of the types for
/// which [`blocks::can_quantize`] holds. F2I types are refused: they take options, so callers use
/// [`crate::f2i::quantize_tensor`].
pub fn f32_to_tensor(ty: GgmlType, dims: &[u64], src: &[f32]) -> Result<Vec<u8>> {
    if !blocks::can_quantize(ty) {
        return Err(Error::UnsupportedConversion {
            from: "f32",
            to: ty.name(),
        });
    }
    let n = n_elements(dims)?;
    if src.len() != n {
        return Err(Error::LengthMismatch {
            what: "f32 values for the tensor shape",
            expected: n as u64,
            got: src.len() as u64,
        });
    }
    let size =
        usize::try_from(ty.tensor_size(dims)?).map_err(|_| Error::Overflow("tensor size"))?;
    let mut out = vec![0u8; size];
    let per_task = blocks_per_task(ty);
    let values = per_task * ty.block_size() as usize;
    let bytes = per_task * ty.type_size() as usize;
    out.par_chunks_mut(bytes)
        .zip(src.par_chunks(values))
        .try_for_each(|(o, x)| blocks::quantize_into(ty, x, o))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_float_types() {
        // Eighths below 32 in magnitude have at most 8 significant bits: exact in bf16 and f16.
        let src: Vec<f32> = (0..3 * 1000)
            .map(|i| ((i % 511) as f32 - 255.0) / 8.0)
            .collect();
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let bytes = f32_to_tensor(ty, &[1000, 3], &src).unwrap();
            assert_eq!(bytes.len() as u64, ty.tensor_size(&[1000, 3]).unwrap());
            let back = tensor_to_f32(ty, &[1000, 3], &bytes).unwrap();
            assert_eq!(back, src, "{ty}");
        }
    }

    #[test]
    fn parallel_chunks_match_one_call() {
        // Several tasks' worth of Q8_0, with a last partial task.
        let (ne0, n_rows) = (160, 1240);
        let n = ne0 * n_rows;
        assert!(n > 3 * CHUNK_VALUES && n % CHUNK_VALUES != 0);
        let src: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        let dims = [ne0 as u64, n_rows as u64];
        let par = f32_to_tensor(GgmlType::Q8_0, &dims, &src).unwrap();
        let mut one = Vec::new();
        blocks::quantize(GgmlType::Q8_0, &src, &mut one).unwrap();
        assert_eq!(par, one);
        let deq = tensor_to_f32(GgmlType::Q8_0, &dims, &par).unwrap();
        let mut deq_one = vec![0f32; n];
        blocks::dequantize(GgmlType::Q8_0, &one, &mut deq_one).unwrap();
        assert_eq!(deq, deq_one);
    }

    #[test]
    fn rejects_bad_inputs() {
        let e = tensor_to_f32(GgmlType::Q8_0, &[32, 2], &[0u8; 34]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    expected: 68,
                    got: 34,
                    ..
                }
            ),
            "{e}"
        );
        let e = tensor_to_f32(GgmlType::Q8_0, &[30, 2], &[]).unwrap_err();
        assert!(matches!(e, Error::RowNotBlockAligned { .. }), "{e}");
        let e = tensor_to_f32(GgmlType::IQ4_NL, &[32], &[0u8; 18]).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedConversion { from: "iq4_nl", .. }),
            "{e}"
        );
        let e = f32_to_tensor(GgmlType::F2I_W2, &[256, 2], &[0.0; 512]).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedConversion { to: "f2i_w2", .. }),
            "{e}"
        );
        let e = f32_to_tensor(GgmlType::F16, &[4, 2], &[0.0; 7]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::LengthMismatch {
                    expected: 8,
                    got: 7,
                    ..
                }
            ),
            "{e}"
        );
        let e = f32_to_tensor(GgmlType::F32, &[u64::MAX, 3], &[]).unwrap_err();
        assert!(matches!(e, Error::Overflow(_)), "{e}");
    }
}
