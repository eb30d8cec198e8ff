//! The float types as one-value "blocks": F32, F16 (IEEE half, round to nearest even like numpy's
//! `astype(np.float16)`) and BF16 (ggml's `ggml_compute_fp32_to_bf16` rounding, as in gguf-py).

use half::{bf16, f16};

use super::BlockType;
use crate::types::GgmlType;

impl BlockType for f32 {
    const TYPE: GgmlType = GgmlType::F32;
    const BLCK_SIZE: usize = 1;

    fn to_float(&self, y: &mut [f32]) {
        y[0] = *self;
    }

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        x.first().copied()
    }
}

impl BlockType for f16 {
    const TYPE: GgmlType = GgmlType::F16;
    const BLCK_SIZE: usize = 1;

    fn to_float(&self, y: &mut [f32]) {
        y[0] = self.to_f32();
    }

    /// IEEE round to nearest even, subnormals kept, overflow to infinity.
    fn from_float_ref(x: &[f32]) -> Option<Self> {
        x.first().map(|&v| f16::from_f32(v))
    }
}

/// f32 → bf16 as ggml and gguf-py round: NaN is quieted (keeping sign and the top of the payload),
/// everything else rounds to nearest even (overflowing to infinity).
pub fn fp32_to_bf16(v: f32) -> bf16 {
    let bits = v.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits(((bits >> 16) | 64) as u16);
    }
    let rounded = (u64::from(bits) + 0x7fff + u64::from((bits >> 16) & 1)) >> 16;
    bf16::from_bits(rounded as u16)
}

impl BlockType for bf16 {
    const TYPE: GgmlType = GgmlType::BF16;
    const BLCK_SIZE: usize = 1;

    fn to_float(&self, y: &mut [f32]) {
        y[0] = f32::from_bits(u32::from(self.to_bits()) << 16);
    }

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        x.first().map(|&v| fp32_to_bf16(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_ties_to_even_and_quiets_nan() {
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f80_8000)).to_bits(), 0x3f80);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f81_8000)).to_bits(), 0x3f82);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f80_8001)).to_bits(), 0x3f81);
        assert_eq!(fp32_to_bf16(f32::MAX).to_bits(), 0x7f80);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7fc0);
        assert_eq!(fp32_to_bf16(f32::from_bits(0xffff_ffff)).to_bits(), 0xffff);
    }
}
