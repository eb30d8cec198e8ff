//! The widely-linear split of `docs/quantizer.md` §1 (`docs/fairy2i-math.md` §1): a real 2n × 2m matrix A
//! becomes the complex n × m matrices U and W, and back.
//!
//! ```text
//! U_re = ½(A11 + A22)   U_im = ½(A21 − A12)   W_re = ½(A11 − A22)   W_im = ½(A12 + A21)
//! A11 = U_re + W_re     A12 = W_im − U_im     A21 = U_im + W_im     A22 = U_re − W_re
//! ```

use super::round::bf16;

/// Splits one group of four real weights into `[U_re, U_im, W_re, W_im]`.
///
/// `a11 = A[j][k]`, `a12 = A[j][m+k]`, `a21 = A[n+j][k]`, `a22 = A[n+j][m+k]`. Without
/// `bf16_rounding` each value is one f32 add or subtract and an exact halving; with it, the official
/// bf16 order `bf16(bf16(a ± b) · 0.5)` (the inputs should then be bf16 values).
#[inline(always)]
pub fn split_entry(a11: f32, a12: f32, a21: f32, a22: f32, bf16_rounding: bool) -> [f32; 4] {
    let h = |x: f32| {
        if bf16_rounding {
            bf16(bf16(x) * 0.5)
        } else {
            x * 0.5
        }
    };
    [h(a11 + a22), h(a21 - a12), h(a11 - a22), h(a12 + a21)]
}

/// The inverse split, `[A11, A12, A21, A22]` from `(U_re, U_im, W_re, W_im)`, in f64.
///
/// Exact when the inputs are sums of a few f16 values (what [`super::dequantize_tensor`] feeds it).
#[inline(always)]
pub fn merge_entry(u_re: f64, u_im: f64, w_re: f64, w_im: f64) -> [f64; 4] {
    [u_re + w_re, w_im - u_im, u_im + w_im, u_re - w_re]
}

/// Output rows of [`split_rows`]: U_re, U_im, W_re, W_im, each `m` long.
pub(crate) struct SplitRows<'a> {
    pub u_re: &'a mut [f32],
    pub u_im: &'a mut [f32],
    pub w_re: &'a mut [f32],
    pub w_im: &'a mut [f32],
}

/// Splits `[A11, A12, A21, A22]` slices (the same columns of the four quarters) into U and W values.
/// Returns false if any result is not finite (a non-finite input, or a sum past f32's range).
/// With `BF16` the inputs are first rounded to bf16 (a no-op for bf16 sources).
#[inline(always)]
pub(crate) fn split_rows<const BF16: bool>(a: [&[f32]; 4], out: SplitRows<'_>) -> bool {
    let [a11, a12, a21, a22] = a;
    let n = out
        .u_re
        .len()
        .min(out.u_im.len())
        .min(out.w_re.len())
        .min(out.w_im.len())
        .min(a11.len())
        .min(a12.len())
        .min(a21.len())
        .min(a22.len());
    let (a11, a12, a21, a22) = (&a11[..n], &a12[..n], &a21[..n], &a22[..n]);
    let (ur, ui, wr, wi) = (
        &mut out.u_re[..n],
        &mut out.u_im[..n],
        &mut out.w_re[..n],
        &mut out.w_im[..n],
    );
    let mut bad = 0u32;
    for i in 0..n {
        let r = |x: f32| if BF16 { bf16(x) } else { x };
        let v = split_entry(r(a11[i]), r(a12[i]), r(a21[i]), r(a22[i]), BF16);
        for x in v {
            bad |= u32::from((x.to_bits() & 0x7f80_0000) == 0x7f80_0000);
        }
        ur[i] = v[0];
        ui[i] = v[1];
        wr[i] = v[2];
        wi[i] = v[3];
    }
    bad == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_of_the_identity_block() {
        // A = [[1, 0], [0, 1]] is multiplication by 1: U = 1, W = 0.
        assert_eq!(split_entry(1.0, 0.0, 0.0, 1.0, false), [1.0, 0.0, 0.0, 0.0]);
        // A = [[0, -1], [1, 0]] is multiplication by i: U = i.
        assert_eq!(
            split_entry(0.0, -1.0, 1.0, 0.0, false),
            [0.0, 1.0, 0.0, 0.0]
        );
        // A = [[1, 0], [0, -1]] is conjugation: W = 1.
        assert_eq!(split_entry(1.0, 0.0, 0.0, -1.0, true), [0.0, 0.0, 1.0, 0.0]);
        assert_eq!(merge_entry(1.0, 0.0, 0.0, 0.0), [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(merge_entry(0.0, 0.0, 1.0, 0.0), [1.0, 0.0, 0.0, -1.0]);
    }

    #[test]
    fn bf16_split_rounds_the_sum_first() {
        // 1 + 2^-8 is a tie in bf16 and rounds to 1 before the halving; in f32 it stays.
        let a = 1.0f32;
        let b = f32::from_bits(0x3b80_0000); // 2^-8
        assert_eq!(split_entry(a, 0.0, 0.0, b, true)[0], 0.5);
        assert_eq!(split_entry(a, 0.0, 0.0, b, false)[0], 0.5 + 2f32.powi(-9));
    }

    #[test]
    fn split_rows_flags_non_finite_results() {
        let mut v = [[0f32; 1]; 4];
        let [a, b, c, d] = &mut v;
        let out = SplitRows {
            u_re: a,
            u_im: b,
            w_re: c,
            w_im: d,
        };
        assert!(split_rows::<false>(
            [&[1.0], &[f32::MAX], &[2.0], &[f32::MAX]],
            out
        ));
        assert_eq!(v[0][0], (1.0 + f32::MAX) * 0.5);
        let [a, b, c, d] = &mut v;
        let out = SplitRows {
            u_re: a,
            u_im: b,
            w_re: c,
            w_im: d,
        };
        assert!(!split_rows::<false>(
            [&[f32::MAX], &[0.0], &[0.0], &[f32::MAX]],
            out
        ));
    }
}
