//! ggml's standard block types: dequantize to f32, and quantize the fallback types.
//! Contract used by the converter; bodies are being written.

use crate::error::Result;
use crate::types::GgmlType;

/// Whether [`dequantize`] handles `ty` (row-independent types only; F2I goes through
/// [`crate::f2i::dequantize_tensor`]).
pub fn can_dequantize(ty: GgmlType) -> bool {
    let _ = ty;
    todo!("blocks::can_dequantize")
}

/// Whether [`quantize`] handles `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    let _ = ty;
    todo!("blocks::can_quantize")
}

/// Dequantizes `data` (a whole number of blocks of `ty`) into `out` (one f32 per element).
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    let _ = (ty, data, out);
    todo!("blocks::dequantize")
}

/// Quantizes `src` (a whole number of blocks) to `ty`, appending the bytes to `out`.
pub fn quantize(ty: GgmlType, src: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let _ = (ty, src, out);
    todo!("blocks::quantize")
}
