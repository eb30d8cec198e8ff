//! Rounding helpers for `docs/quantizer.md` §4 (precision): bf16 round-to-nearest-even as torch does it,
//! done on the bit pattern so that the hot loops stay integer-only and vectorizable.

/// Rounds an f32 to the nearest bf16 value (ties to even) and returns it as an f32. NaN stays NaN (quiet);
/// values beyond bf16's range become ±infinity. This is torch's (and `half`'s) f32 → bf16 conversion.
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return f32::from_bits((x.to_bits() | 0x0040_0000) & 0xffff_0000);
    }
    f32::from_bits(round_bf16_bits(x.to_bits()))
}

/// [`round_bf16`] on the bits of a value that is not NaN.
#[inline(always)]
pub(crate) fn round_bf16_bits(bits: u32) -> u32 {
    bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000
}

/// `bf16(x)` for a non-NaN x, as an f32.
#[inline(always)]
pub(crate) fn bf16(x: f32) -> f32 {
    f32::from_bits(round_bf16_bits(x.to_bits()))
}

/// bf16(1e-6) = 9.98377799987793e-07: the floor of every scale.
pub const SCALE_FLOOR: f32 = f32::from_bits(0x3586_0000);

/// The scale of an axis with no entries: the f32 1e-6 of the official code (it multiplies only zeros).
pub const SCALE_EMPTY: f32 = 1e-6;

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16 as Bf16;

    #[test]
    fn floor_is_bf16_of_1e_minus_6() {
        // The value quoted by format/tests/data/golden/README.md fact 3.
        assert_eq!(SCALE_FLOOR as f64, 9.98377799987793e-07);
        assert_eq!(Bf16::from_f32(1e-6).to_f32(), SCALE_FLOOR);
        assert_eq!(SCALE_EMPTY as f64, 9.999999974752427e-07);
    }

    #[test]
    fn rounding_agrees_with_the_half_crate() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            let want = Bf16::from_f32(v).to_f32();
            let got = round_bf16(v);
            if v.is_nan() {
                assert!(got.is_nan());
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{v:e}");
            }
        }
        // Ties go to even.
        assert_eq!(round_bf16(f32::from_bits(0x3f80_8000)), 1.0);
        assert_eq!(
            round_bf16(f32::from_bits(0x3f81_8000)).to_bits(),
            0x3f82_0000
        );
        assert_eq!(round_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}
