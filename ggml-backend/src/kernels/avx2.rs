//! AVX2 + FMA kernel (docs/backend.md §2.2). Chosen at run time by [`super::Kernel`].
//!
//! Eight entries per step: the 8 code bytes q[8r..8r+8) widened to 32-bit lanes serve the four
//! groups g = 0..3 (entries 32g + 8r ..): shifting a lane left by 30 − 2g puts the sign bit of the
//! code at bit 31, by 31 − 2g its axis bit. The sign is xor-ed into x_re and x_im; every signed
//! value goes into a total, the imaginary-axis ones (blend on the axis bit) also into a second sum,
//! and real-axis sums are total − imaginary.

use std::arch::x86_64::*;

use super::{stage_scales, QC, QK, STAGE_BYTES};

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

/// The byte-shuffle tables of the int8 path: code c ↦ a+1 (real axis: 2, 1, 0, 1) and b+1
/// (imaginary axis: 1, 2, 1, 0), indexed by a nibble of two codes: `[re_lo, re_hi, im_lo, im_hi]`,
/// where `*_lo` maps the code in bits 0–1 and `*_hi` the code in bits 2–3 (both 128-bit lanes).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibble_luts() -> [__m256i; 4] {
    const RE: [i8; 4] = [2, 1, 0, 1];
    const IM: [i8; 4] = [1, 2, 1, 0];
    const fn table(axis: [i8; 4], hi: bool) -> [i8; 32] {
        let mut t = [0i8; 32];
        let mut n = 0;
        while n < 32 {
            let nib = n % 16;
            t[n] = axis[if hi { nib >> 2 } else { nib & 3 }];
            n += 1;
        }
        t
    }
    const T: [[i8; 32]; 4] = [
        table(RE, false),
        table(RE, true),
        table(IM, false),
        table(IM, true),
    ];
    // SAFETY: each table is 32 bytes.
    T.map(|t| unsafe { _mm256_loadu_si256(t.as_ptr().cast()) })
}

/// Most columns [`pair_dot_q8_cols`] takes at once.
pub const MAX_COLS: usize = 16;

/// The decoded weights of one stage record, int8 path (docs/backend.md §2.4): for each group g
/// (entries 32g..32g+32) the unsigned weights a+1 (real axis: 2, 1, 0, 1 for codes 0..3) and b+1
/// (imaginary axis: 1, 2, 1, 0), as `[a0, b0, a1, b1, a2, b2, a3, b3]`. Codes of group g are
/// `(qs >> 2g) & 3` per byte; a byte shuffle of each nibble maps them ([`nibble_luts`]).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn decode(rec: &[u8; STAGE_BYTES]) -> [__m256i; 8] {
    let [re_lo, re_hi, im_lo, im_hi] = nibble_luts();
    let m15 = _mm256_set1_epi8(0x0f);
    // SAFETY: bytes 4..36 of a 36-byte record.
    let qs = unsafe { _mm256_loadu_si256(rec.as_ptr().add(4).cast()) };
    // nibbles of groups 0–1 and of groups 2–3
    let (n01, n23) = (
        _mm256_and_si256(qs, m15),
        _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m15),
    );
    [
        _mm256_shuffle_epi8(re_lo, n01),
        _mm256_shuffle_epi8(im_lo, n01),
        _mm256_shuffle_epi8(re_hi, n01),
        _mm256_shuffle_epi8(im_hi, n01),
        _mm256_shuffle_epi8(re_lo, n23),
        _mm256_shuffle_epi8(im_lo, n23),
        _mm256_shuffle_epi8(re_hi, n23),
        _mm256_shuffle_epi8(im_hi, n23),
    ]
}

/// Integer sums `[A, B, C, D]` (see [`super`]) of one decoded stage record over one block of a
/// quantized column, as sixteen 16-bit lanes each ([`row_epilogue`] widens them). `maddubs`
/// multiplies the unsigned a+1 / b+1 by the int8 activations; a left shift by log2 m_g brings group g
/// to the block's common step; the 16-bit accumulators (no overflow: see `q8::MAX_SHIFT`) start at
/// −Σ m_g·q (`neg_re`, `neg_im`, precomputed per block by `Q8Cols`), which cancels the +1.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn sums<const SHIFT: bool>(
    dec: &[__m256i; 8],
    q: &[i8; 256],
    shift: &[__m128i; 4],
    neg_re: __m256i,
    neg_im: __m256i,
) -> [__m256i; 4] {
    let mut acc = [neg_re, neg_im, neg_im, neg_re];
    for g in 0..4 {
        // SAFETY: 32·g + 32 ≤ 128 and 128 + 32·g + 32 ≤ 256: inside the 256-byte block.
        let (xr, xi) = unsafe {
            (
                _mm256_loadu_si256(q.as_ptr().add(32 * g).cast()),
                _mm256_loadu_si256(q.as_ptr().add(128 + 32 * g).cast()),
            )
        };
        madd4::<SHIFT>(&mut acc, dec[2 * g], dec[2 * g + 1], xr, xi, shift[g]);
    }
    acc
}

/// Adds one group's products to the sums `[A, B, C, D]`: the real-axis weights `r` (a+1) against x_re
/// and x_im, the imaginary-axis weights `i` (b+1) against x_im and x_re, each 16-bit pair sum shifted
/// left by the group's `sh` when `SHIFT`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn madd4<const SHIFT: bool>(
    acc: &mut [__m256i; 4],
    r: __m256i,
    i: __m256i,
    xr: __m256i,
    xi: __m256i,
    sh: __m128i,
) {
    let scale = |v| if SHIFT { _mm256_sll_epi16(v, sh) } else { v };
    acc[0] = _mm256_add_epi16(acc[0], scale(_mm256_maddubs_epi16(r, xr)));
    acc[1] = _mm256_add_epi16(acc[1], scale(_mm256_maddubs_epi16(r, xi)));
    acc[2] = _mm256_add_epi16(acc[2], scale(_mm256_maddubs_epi16(i, xi)));
    acc[3] = _mm256_add_epi16(acc[3], scale(_mm256_maddubs_epi16(i, xr)));
}

/// Block `b` of a quantized column, as both int8 kernels read it.
struct ColBlock<'a> {
    /// The block's 256 activation bytes (128 real, then 128 imaginary parts).
    q: &'a [i8; QK],
    /// The offsets the 16-bit sums start from (see [`sums`]).
    neg_re: __m256i,
    neg_im: __m256i,
    /// Shift counts log2 m_g of the four groups; `None` when all factors are 1 (`Q8Cols::quantize`
    /// folds equal factors into `d`), so the kernels skip the shifts.
    shift: Option<[__m128i; 4]>,
    /// The unit step.
    d: f32,
}

/// Block `b` of column `x`.
///
/// # Safety
/// `b` is below the column's block count and the column's lengths agree (`q8_lengths_agree`): q holds
/// 256 bytes, neg 32 i16 and mul 4 i16 per block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn col_block<'a>(x: &super::q8::Q8Col<'a>, b: usize) -> ColBlock<'a> {
    // SAFETY: the caller's contract.
    unsafe {
        let neg = x.neg.as_ptr().add(b * 32);
        let mul = x
            .mul
            .as_ptr()
            .add(b * 4)
            .cast::<[i16; 4]>()
            .read_unaligned();
        ColBlock {
            q: &*x.q.as_ptr().add(b * QK).cast::<[i8; QK]>(),
            neg_re: _mm256_loadu_si256(neg.cast()),
            neg_im: _mm256_loadu_si256(neg.add(16).cast()),
            // m_g is a power of two ≤ 8: its exponent is the shift count
            shift: (mul != [1; 4])
                .then(|| mul.map(|m| _mm_cvtsi32_si128(m.trailing_zeros() as i32))),
            d: *x.d.get_unchecked(b),
        }
    }
}

/// See [`super::Kernel::pair_dot_q8`].
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and the lengths must be as `Kernel::pair_dot_q8`
/// checks them (`q8_lengths_agree`): the kernel reads through raw pointers.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pair_dot_q8(
    u: &[u8],
    w: &[u8],
    stages: usize,
    x: super::q8::Q8Col<'_>,
) -> (f32, f32) {
    // SAFETY: forwarded from the caller's contract; `stages` is 1..=4 there.
    unsafe {
        match stages {
            1 => pair_dot_q8_t::<1>(u, w, x),
            2 => pair_dot_q8_t::<2>(u, w, x),
            3 => pair_dot_q8_t::<3>(u, w, x),
            _ => pair_dot_q8_t::<4>(u, w, x),
        }
    }
}

/// [`pair_dot_q8`] for `T` stages: block by block, each stage's U and W records go through
/// [`pair_sums`] (the activations are read from L1 for every stage).
///
/// # Safety
/// As [`pair_dot_q8`], with `T` the stage count the lengths were checked for.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn pair_dot_q8_t<const T: usize>(u: &[u8], w: &[u8], x: super::q8::Q8Col<'_>) -> (f32, f32) {
    let block_bytes = T * STAGE_BYTES;
    let z = _mm256_setzero_ps();
    let mut y = [z, z];
    let zero = [_mm_setzero_si128(); 4];
    for b in 0..x.d.len() {
        // SAFETY: b < blocks and the lengths agree (q8_lengths_agree): the column's block b, and
        // block_bytes of u and w per block.
        unsafe {
            let c = col_block(&x, b);
            let q = c.q.as_ptr();
            let (ub, wb) = (
                u.as_ptr().add(b * block_bytes),
                w.as_ptr().add(b * block_bytes),
            );
            match &c.shift {
                None => {
                    for s in 0..T {
                        let (ur, wr) = (ub.add(s * STAGE_BYTES), wb.add(s * STAGE_BYTES));
                        pair_sums::<false>(&mut y, ur, wr, q, c.neg_re, c.neg_im, &zero, c.d);
                    }
                }
                Some(sh) => {
                    for s in 0..T {
                        let (ur, wr) = (ub.add(s * STAGE_BYTES), wb.add(s * STAGE_BYTES));
                        pair_sums::<true>(&mut y, ur, wr, q, c.neg_re, c.neg_im, sh, c.d);
                    }
                }
            }
        }
    }
    (hsum(y[0]), hsum(y[1]))
}

/// The U and the W record of one stage against one block of a quantized column, added to `y`
/// (see [`row_epilogue`]): the sums A, B, C, D of [`sums`] for each row, decoded group by group so the
/// codes stay in registers, the activation loads shared by both rows.
///
/// # Safety
/// `ur` and `wr` point at 36-byte stage records, `q` at the block's 256 activation bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pair_sums<const SHIFT: bool>(
    y: &mut [__m256; 2],
    ur: *const u8,
    wr: *const u8,
    q: *const i8,
    neg_re: __m256i,
    neg_im: __m256i,
    sh: &[__m128i; 4],
    d: f32,
) {
    let [re_lo, re_hi, im_lo, im_hi] = nibble_luts();
    let m15 = _mm256_set1_epi8(0x0f);
    let q = std::hint::black_box(q);
    // SAFETY: bytes 4..36 of the records; the 256 bytes at q (caller's contract).
    let (uq, wq) = unsafe {
        (
            _mm256_loadu_si256(ur.add(4).cast()),
            _mm256_loadu_si256(wr.add(4).cast()),
        )
    };
    // [U, W]: each row's sums A, B, C, D
    let mut acc = [[neg_re, neg_im, neg_im, neg_re]; 2];
    macro_rules! group {
        ($g:literal, $lut_re:ident, $lut_im:ident) => {{
            // SAFETY: 32·g + 32 ≤ 128 and 128 + 32·g + 32 ≤ 256: inside the block.
            let (xr, xi) = unsafe {
                (
                    _mm256_loadu_si256(q.add(32 * $g).cast()),
                    _mm256_loadu_si256(q.add(128 + 32 * $g).cast()),
                )
            };
            for (acc, qs) in acc.iter_mut().zip([uq, wq]) {
                let code = if $g < 2 {
                    _mm256_and_si256(qs, m15)
                } else {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m15)
                };
                let (r, i) = (
                    _mm256_shuffle_epi8($lut_re, code),
                    _mm256_shuffle_epi8($lut_im, code),
                );
                madd4::<SHIFT>(acc, r, i, xr, xi, sh[$g]);
            }
        }};
    }
    group!(0, re_lo, im_lo);
    group!(1, re_hi, im_hi);
    group!(2, re_lo, im_lo);
    group!(3, re_hi, im_hi);
    // SAFETY: bytes 0..4 of the records: the two f16 scales.
    let (uh, wh) = unsafe {
        (
            ur.cast::<i32>().read_unaligned(),
            wr.cast::<i32>().read_unaligned(),
        )
    };
    row_epilogue::<false>(y, acc[0], _mm_cvtph_ps(_mm_cvtsi32_si128(uh)), d);
    row_epilogue::<true>(y, acc[1], _mm_cvtph_ps(_mm_cvtsi32_si128(wh)), d);
}

/// Adds one row's 16-bit sums `[A, B, C, D]` of one stage and block to `y = [y_re, y_im]`: U row
/// (`W` false): y_re += d_re·A − d_im·C, y_im += d_re·B + d_im·D; W row: y_re += d_re·A + d_im·C,
/// y_im += −d_re·B + d_im·D. `scales` holds (d_re, d_im) in its first two lanes; every scale is
/// multiplied by the column block's unit step `d`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn row_epilogue<const W: bool>(
    y: &mut [__m256; 2],
    [a, b, c, dd]: [__m256i; 4],
    scales: __m128,
    d: f32,
) {
    let ones = _mm256_set1_epi16(1);
    let f = |v| _mm256_cvtepi32_ps(_mm256_madd_epi16(v, ones));
    let s = _mm_mul_ps(scales, _mm_set1_ps(d));
    let (s_re, s_im) = (
        _mm256_broadcastss_ps(s),
        _mm256_broadcastss_ps(_mm_movehdup_ps(s)),
    );
    let [mut y_re, mut y_im] = *y;
    if W {
        y_re = _mm256_fmadd_ps(s_re, f(a), y_re);
        y_re = _mm256_fmadd_ps(s_im, f(c), y_re);
        y_im = _mm256_fnmadd_ps(s_re, f(b), y_im);
    } else {
        y_re = _mm256_fmadd_ps(s_re, f(a), y_re);
        y_re = _mm256_fnmadd_ps(s_im, f(c), y_re);
        y_im = _mm256_fmadd_ps(s_re, f(b), y_im);
    }
    y_im = _mm256_fmadd_ps(s_im, f(dd), y_im);
    *y = [y_re, y_im];
}

/// One output pair against up to [`MAX_COLS`] quantized columns: each stage record is decoded once
/// per block and used for every column. `out[c]` = (y[j], y[j+n]) for column c; each column gets
/// exactly what [`pair_dot_q8`] gives it (same integer sums, same float operations in the same order).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and the lengths must be as `Kernel::pair_dot_q8_cols`
/// checks them (`q8_lengths_agree` for every column): the kernel reads through raw pointers.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn pair_dot_q8_cols(
    u: &[u8],
    w: &[u8],
    stages: usize,
    cols: &[super::q8::Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    assert!(
        cols.len() <= MAX_COLS && out.len() == cols.len(),
        "pair_dot_q8_cols: columns"
    );
    // SAFETY: forwarded from the caller's contract; `stages` is 1..=4 there.
    unsafe {
        match stages {
            1 => pair_dot_q8_cols_t::<1>(u, w, cols, out),
            2 => pair_dot_q8_cols_t::<2>(u, w, cols, out),
            3 => pair_dot_q8_cols_t::<3>(u, w, cols, out),
            _ => pair_dot_q8_cols_t::<4>(u, w, cols, out),
        }
    }
}

/// [`pair_dot_q8_cols`] for `T` stages.
///
/// # Safety
/// As [`pair_dot_q8_cols`], with `T` the stage count the lengths were checked for.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn pair_dot_q8_cols_t<const T: usize>(
    u: &[u8],
    w: &[u8],
    cols: &[super::q8::Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    let block_bytes = T * STAGE_BYTES;
    let z = _mm256_setzero_ps();
    let mut acc = [[z, z]; MAX_COLS];
    let zi = _mm256_setzero_si256();
    // one block's records, decoded, and their scales: [stage][U, W]
    let mut dec = [[[zi; 8]; 2]; T];
    let mut scales = [[_mm_setzero_ps(); 2]; T];
    let blocks = cols.first().map_or(0, |x| x.d.len());
    for b in 0..blocks {
        for (s, (dec, sc)) in dec.iter_mut().zip(scales.iter_mut()).enumerate() {
            for (r, row) in [u, w].into_iter().enumerate() {
                let rec: &[u8; STAGE_BYTES] = row[b * block_bytes + s * STAGE_BYTES..]
                    [..STAGE_BYTES]
                    .try_into()
                    .expect("36-byte record");
                dec[r] = decode(rec);
                let halves = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                sc[r] = _mm_cvtph_ps(_mm_cvtsi32_si128(halves));
            }
        }
        for (y, x) in acc.iter_mut().zip(cols) {
            // SAFETY: b < blocks and the lengths agree for every column (q8_lengths_agree).
            let c = unsafe { col_block(x, b) };
            match &c.shift {
                None => {
                    let zero = [_mm_setzero_si128(); 4];
                    for (dec, sc) in dec.iter().zip(&scales) {
                        let su = sums::<false>(&dec[0], c.q, &zero, c.neg_re, c.neg_im);
                        row_epilogue::<false>(y, su, sc[0], c.d);
                        let sw = sums::<false>(&dec[1], c.q, &zero, c.neg_re, c.neg_im);
                        row_epilogue::<true>(y, sw, sc[1], c.d);
                    }
                }
                Some(sh) => {
                    for (dec, sc) in dec.iter().zip(&scales) {
                        let su = sums::<true>(&dec[0], c.q, sh, c.neg_re, c.neg_im);
                        row_epilogue::<false>(y, su, sc[0], c.d);
                        let sw = sums::<true>(&dec[1], c.q, sh, c.neg_re, c.neg_im);
                        row_epilogue::<true>(y, sw, sc[1], c.d);
                    }
                }
            }
        }
    }
    for (o, [y_re, y_im]) in out.iter_mut().zip(acc) {
        *o = (hsum(y_re), hsum(y_im));
    }
}
