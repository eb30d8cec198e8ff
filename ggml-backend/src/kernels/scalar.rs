//! Portable kernel: the straightforward loop over codes (docs/backend.md §2.1). Always available;
//! the SIMD kernels are tested against it.

use super::{stage_scales, QC, STAGE_BYTES};

/// The four sums of one stage record over one block: (A, B, C, D) as in the module docs of
/// [`super`]: real-axis Σ s·x_re, real-axis Σ s·x_im, imaginary-axis Σ s·x_im, imaginary-axis Σ s·x_re.
#[inline]
fn stage_sums(codes: &[u8], x_re: &[f32], x_im: &[f32]) -> [f32; 4] {
    let (mut a, mut b, mut c, mut d) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for g in 0..4 {
        for (i, &byte) in codes.iter().enumerate() {
            let e = 32 * g + i;
            let (xr, xi) = (x_re[e], x_im[e]);
            match (byte >> (2 * g)) & 3 {
                0 => {
                    a += xr;
                    b += xi;
                }
                1 => {
                    c += xi;
                    d += xr;
                }
                2 => {
                    a -= xr;
                    b -= xi;
                }
                _ => {
                    c -= xi;
                    d -= xr;
                }
            }
        }
    }
    [a, b, c, d]
}

/// See [`super::Kernel::pair_dot`]; lengths are checked by the caller.
pub fn pair_dot(u: &[u8], w: &[u8], stages: usize, x_re: &[f32], x_im: &[f32]) -> (f32, f32) {
    let block_bytes = stages * STAGE_BYTES;
    let (mut y_re, mut y_im) = (0.0f32, 0.0f32);
    let blocks = u.chunks_exact(block_bytes).zip(w.chunks_exact(block_bytes));
    for ((ub, wb), (xr, xi)) in blocks.zip(x_re.chunks_exact(QC).zip(x_im.chunks_exact(QC))) {
        for (us, ws) in ub
            .chunks_exact(STAGE_BYTES)
            .zip(wb.chunks_exact(STAGE_BYTES))
        {
            let (ud_re, ud_im) = stage_scales(us);
            let [ua, ub_, uc, ud] = stage_sums(&us[4..], xr, xi);
            y_re += ud_re * ua - ud_im * uc;
            y_im += ud_re * ub_ + ud_im * ud;

            let (wd_re, wd_im) = stage_scales(ws);
            let [wa, wb_, wc, wd] = stage_sums(&ws[4..], xr, xi);
            y_re += wd_re * wa + wd_im * wc;
            y_im += wd_im * wd - wd_re * wb_;
        }
    }
    (y_re, y_im)
}
