//! AVX2 + FMA kernel (docs/backend.md §2.2). Chosen at run time by [`super::Kernel`].
//!
//! Eight entries per step: the 8 code bytes q[8r..8r+8) widened to 32-bit lanes serve the four
//! groups g = 0..3 (entries 32g + 8r ..): shifting a lane left by 30 − 2g puts the sign bit of the
//! code at bit 31, by 31 − 2g its axis bit. The sign is xor-ed into x_re and x_im; every signed
//! value goes into a total, the imaginary-axis ones (blend on the axis bit) also into a second sum,
//! and real-axis sums are total − imaginary.

use std::arch::x86_64::*;

use super::{stage_scales, QC, STAGE_BYTES};

/// Adds the 8 signed activations of one group to the totals (`t_*`) and imaginary-axis sums (`i_*`).
macro_rules! group {
    ($codes:expr, $sh_sign:literal, $sh_axis:literal, $vr:expr, $vi:expr,
     $t_r:ident, $i_r:ident, $t_i:ident, $i_i:ident) => {{
        let sign = _mm256_castsi256_ps(_mm256_and_si256(
            _mm256_slli_epi32::<$sh_sign>($codes),
            _mm256_set1_epi32(i32::MIN),
        ));
        let axis = _mm256_castsi256_ps(_mm256_slli_epi32::<$sh_axis>($codes));
        let sr = _mm256_xor_ps($vr, sign);
        let si = _mm256_xor_ps($vi, sign);
        $t_r = _mm256_add_ps($t_r, sr);
        $t_i = _mm256_add_ps($t_i, si);
        $i_r = _mm256_add_ps($i_r, _mm256_blendv_ps(_mm256_setzero_ps(), sr, axis));
        $i_i = _mm256_add_ps($i_i, _mm256_blendv_ps(_mm256_setzero_ps(), si, axis));
    }};
}

/// Sums of one stage of the U row and of the W row over one block, as 8-lane vectors:
/// `[A, B, C, D]` for U, then for W (see [`super`]).
#[target_feature(enable = "avx2,fma")]
fn stage_sums(
    uq: &[u8; 32],
    wq: &[u8; 32],
    xr: &[f32; QC],
    xi: &[f32; QC],
) -> ([__m256; 4], [__m256; 4]) {
    let z = _mm256_setzero_ps();
    let (mut ut_r, mut ui_r, mut ut_i, mut ui_i) = (z, z, z, z);
    let (mut wt_r, mut wi_r, mut wt_i, mut wi_i) = (z, z, z, z);
    for r in 0..4 {
        // SAFETY: bytes 8r..8r+8 lie inside the 32-byte arrays (r < 4); loadl reads 8 bytes.
        let (uc, wc) = unsafe {
            (
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(uq.as_ptr().add(8 * r).cast())),
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(wq.as_ptr().add(8 * r).cast())),
            )
        };
        macro_rules! step {
            ($g:literal, $sh_sign:literal, $sh_axis:literal) => {{
                let e = 32 * $g + 8 * r;
                // SAFETY: e + 8 <= 32·3 + 8·3 + 8 = 128 = QC, inside both arrays.
                let (vr, vi) = unsafe {
                    (
                        _mm256_loadu_ps(xr.as_ptr().add(e)),
                        _mm256_loadu_ps(xi.as_ptr().add(e)),
                    )
                };
                group!(uc, $sh_sign, $sh_axis, vr, vi, ut_r, ui_r, ut_i, ui_i);
                group!(wc, $sh_sign, $sh_axis, vr, vi, wt_r, wi_r, wt_i, wi_i);
            }};
        }
        step!(0, 30, 31);
        step!(1, 28, 29);
        step!(2, 26, 27);
        step!(3, 24, 25);
    }
    (
        [
            _mm256_sub_ps(ut_r, ui_r),
            _mm256_sub_ps(ut_i, ui_i),
            ui_i,
            ui_r,
        ],
        [
            _mm256_sub_ps(wt_r, wi_r),
            _mm256_sub_ps(wt_i, wi_i),
            wi_i,
            wi_r,
        ],
    )
}

#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// See [`super::Kernel::pair_dot`].
///
/// # Safety
/// The CPU must support AVX2 and FMA. Lengths are as checked by `Kernel::pair_dot`
/// (the slices are only read through bounds-checked conversions, so wrong lengths panic, not UB).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pair_dot(
    u: &[u8],
    w: &[u8],
    stages: usize,
    x_re: &[f32],
    x_im: &[f32],
) -> (f32, f32) {
    let block_bytes = stages * STAGE_BYTES;
    let mut y_re = _mm256_setzero_ps();
    let mut y_im = _mm256_setzero_ps();
    let blocks = u.chunks_exact(block_bytes).zip(w.chunks_exact(block_bytes));
    for ((ub, wb), (xr, xi)) in blocks.zip(x_re.chunks_exact(QC).zip(x_im.chunks_exact(QC))) {
        let xr: &[f32; QC] = xr.try_into().expect("chunks_exact(QC)");
        let xi: &[f32; QC] = xi.try_into().expect("chunks_exact(QC)");
        for (us, ws) in ub
            .chunks_exact(STAGE_BYTES)
            .zip(wb.chunks_exact(STAGE_BYTES))
        {
            let uq: &[u8; 32] = us[4..].try_into().expect("36-byte record");
            let wq: &[u8; 32] = ws[4..].try_into().expect("36-byte record");
            let ([ua, ub_, uc, ud], [wa, wb_, wc, wd]) = stage_sums(uq, wq, xr, xi);
            let (ud_re, ud_im) = stage_scales(us);
            let (wd_re, wd_im) = stage_scales(ws);
            y_re = _mm256_fmadd_ps(_mm256_set1_ps(ud_re), ua, y_re);
            y_re = _mm256_fnmadd_ps(_mm256_set1_ps(ud_im), uc, y_re);
            y_im = _mm256_fmadd_ps(_mm256_set1_ps(ud_re), ub_, y_im);
            y_im = _mm256_fmadd_ps(_mm256_set1_ps(ud_im), ud, y_im);
            y_re = _mm256_fmadd_ps(_mm256_set1_ps(wd_re), wa, y_re);
            y_re = _mm256_fmadd_ps(_mm256_set1_ps(wd_im), wc, y_re);
            y_im = _mm256_fnmadd_ps(_mm256_set1_ps(wd_re), wb_, y_im);
            y_im = _mm256_fmadd_ps(_mm256_set1_ps(wd_im), wd, y_im);
        }
    }
    (hsum(y_re), hsum(y_im))
}
