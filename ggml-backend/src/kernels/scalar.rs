//! Portable kernel: the straightforward loop over codes (docs/backend.md §2.1). Always available;
//! the SIMD kernels are tested against it.

use super::{stage_scales, QC, STAGE_BYTES};

/// The four sums of one stage record over one block: (A, B, C, D) as in the module docs of
/// [`super`]: real-axis Σ s·x_re, real-axis Σ s·x_im, imaginary-axis Σ s·x_im, imaginary-axis Σ s·x_re.
///
/// Branch-free (codes are random, so branches would mispredict): the sign is xor-ed into the float,
/// every signed value goes into a total and, times the axis bit (0 or 1), into the imaginary sum;
/// real-axis sums are total − imaginary. The inner loop over 32 entries vectorises.
#[inline]
fn stage_sums(codes: &[u8], x_re: &[f32], x_im: &[f32]) -> [f32; 4] {
    let (mut t_r, mut t_i, mut i_r, mut i_i) =
        ([0.0f32; 32], [0.0f32; 32], [0.0f32; 32], [0.0f32; 32]);
    for (g, (xr, xi)) in x_re.chunks_exact(32).zip(x_im.chunks_exact(32)).enumerate() {
        for i in 0..32 {
            let code = u32::from(codes[i] >> (2 * g));
            let sign = (code & 2) << 30;
            let imag = (code & 1) as f32;
            let sr = f32::from_bits(xr[i].to_bits() ^ sign);
            let si = f32::from_bits(xi[i].to_bits() ^ sign);
            t_r[i] += sr;
            t_i[i] += si;
            i_r[i] += sr * imag;
            i_i[i] += si * imag;
        }
    }
    let sum = |v: [f32; 32]| v.iter().sum::<f32>();
    let (t_r, t_i, i_r, i_i) = (sum(t_r), sum(t_i), sum(i_r), sum(i_i));
    [t_r - i_r, t_i - i_i, i_i, i_r]
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
