//! AVX-512 (F/BW/VL) kernel (docs/backend.md §2.3). Chosen at run time by [`super::Kernel`].
//!
//! Sixteen entries per step: the 16 code bytes q[16h..16h+16) widened to 32-bit lanes serve the four
//! groups g = 0..3 (entries 32g + 16h ..). Two mask registers per group select the negative codes
//! (bit 2g+1) and the imaginary-axis codes (bit 2g); masked subtract and add do the rest.

use std::arch::x86_64::*;

use super::{stage_scales, QC, STAGE_BYTES};

/// Sums of one stage of the U row and of the W row over one block, as 16-lane vectors:
/// `[A, B, C, D]` for U, then for W (see [`super`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn stage_sums(
    uq: &[u8; 32],
    wq: &[u8; 32],
    xr: &[f32; QC],
    xi: &[f32; QC],
) -> ([__m512; 4], [__m512; 4]) {
    let z = _mm512_setzero_ps();
    let (mut ut_r, mut ui_r, mut ut_i, mut ui_i) = (z, z, z, z);
    let (mut wt_r, mut wi_r, mut wt_i, mut wi_i) = (z, z, z, z);
    for h in 0..2 {
        // SAFETY: bytes 16h..16h+16 lie inside the 32-byte arrays (h < 2).
        let (uc, wc) = unsafe {
            (
                _mm512_cvtepu8_epi32(_mm_loadu_si128(uq.as_ptr().add(16 * h).cast())),
                _mm512_cvtepu8_epi32(_mm_loadu_si128(wq.as_ptr().add(16 * h).cast())),
            )
        };
        for g in 0..4 {
            let e = 32 * g + 16 * h;
            // SAFETY: e + 16 <= 96 + 16 + 16 = 128 = QC, inside both arrays.
            let (vr, vi) = unsafe {
                (
                    _mm512_loadu_ps(xr.as_ptr().add(e)),
                    _mm512_loadu_ps(xi.as_ptr().add(e)),
                )
            };
            let neg_bit = _mm512_set1_epi32(2 << (2 * g));
            let axis_bit = _mm512_set1_epi32(1 << (2 * g));

            let neg = _mm512_test_epi32_mask(uc, neg_bit);
            let imag = _mm512_test_epi32_mask(uc, axis_bit);
            let sr = _mm512_mask_sub_ps(vr, neg, z, vr);
            let si = _mm512_mask_sub_ps(vi, neg, z, vi);
            ut_r = _mm512_add_ps(ut_r, sr);
            ut_i = _mm512_add_ps(ut_i, si);
            ui_r = _mm512_mask_add_ps(ui_r, imag, ui_r, sr);
            ui_i = _mm512_mask_add_ps(ui_i, imag, ui_i, si);

            let neg = _mm512_test_epi32_mask(wc, neg_bit);
            let imag = _mm512_test_epi32_mask(wc, axis_bit);
            let sr = _mm512_mask_sub_ps(vr, neg, z, vr);
            let si = _mm512_mask_sub_ps(vi, neg, z, vi);
            wt_r = _mm512_add_ps(wt_r, sr);
            wt_i = _mm512_add_ps(wt_i, si);
            wi_r = _mm512_mask_add_ps(wi_r, imag, wi_r, sr);
            wi_i = _mm512_mask_add_ps(wi_i, imag, wi_i, si);
        }
    }
    (
        [
            _mm512_sub_ps(ut_r, ui_r),
            _mm512_sub_ps(ut_i, ui_i),
            ui_i,
            ui_r,
        ],
        [
            _mm512_sub_ps(wt_r, wi_r),
            _mm512_sub_ps(wt_i, wi_i),
            wi_i,
            wi_r,
        ],
    )
}

/// See [`super::Kernel::pair_dot`].
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VL. Lengths are as checked by `Kernel::pair_dot`
/// (the slices are only read through bounds-checked conversions, so wrong lengths panic, not UB).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub unsafe fn pair_dot(
    u: &[u8],
    w: &[u8],
    stages: usize,
    x_re: &[f32],
    x_im: &[f32],
) -> (f32, f32) {
    let block_bytes = stages * STAGE_BYTES;
    let mut y_re = _mm512_setzero_ps();
    let mut y_im = _mm512_setzero_ps();
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
            y_re = _mm512_fmadd_ps(_mm512_set1_ps(ud_re), ua, y_re);
            y_re = _mm512_fnmadd_ps(_mm512_set1_ps(ud_im), uc, y_re);
            y_im = _mm512_fmadd_ps(_mm512_set1_ps(ud_re), ub_, y_im);
            y_im = _mm512_fmadd_ps(_mm512_set1_ps(ud_im), ud, y_im);
            y_re = _mm512_fmadd_ps(_mm512_set1_ps(wd_re), wa, y_re);
            y_re = _mm512_fmadd_ps(_mm512_set1_ps(wd_im), wc, y_re);
            y_im = _mm512_fnmadd_ps(_mm512_set1_ps(wd_re), wb_, y_im);
            y_im = _mm512_fmadd_ps(_mm512_set1_ps(wd_im), wd, y_im);
        }
    }
    (_mm512_reduce_add_ps(y_re), _mm512_reduce_add_ps(y_im))
}
