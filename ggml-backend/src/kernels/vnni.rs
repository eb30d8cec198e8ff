//! int8-path kernels with `vpdpbusd` (docs/backend.md §2.5): AVX-512 VNNI on 512-bit registers and
//! AVX-VNNI on 256-bit ones. Chosen at run time by [`super::Kernel`].
//!
//! The arithmetic is that of the AVX2 int8 kernel (`avx2.rs`): a byte shuffle maps each code to the
//! unsigned weights a+1 (real axis: 2, 1, 0, 1) and b+1 (imaginary axis: 1, 2, 1, 0), and the sums
//! `[A, B, C, D]` of a stage record are dot products of those with the int8 activations. What
//! differs: `vpdpbusd` multiplies four u8·i8 pairs and adds them to a 32-bit lane in one
//! instruction (AVX2 needs `vpmaddubsw`, a 16-bit add and a widening `vpmaddwd`), and the "+1" is
//! cancelled by starting lane 0 of each sum at −S, the block's Σ m_g·Σ q of the activations it
//! meets ([`super::q8::Q8Col::sum`]), instead of per-lane 16-bit offsets. Group factors m_g ≠ 1 are
//! applied by shifting the 32-bit partial sums of each group (per lane with `vpsllvd` on 512 bits).
//!
//! On 512 bits a register holds two groups: the 32 code bytes are broadcast to both halves and
//! the shuffle tables differ per half (low half: the code in bits 0–1 of a nibble, high half: bits
//! 2–3), so one shuffle decodes groups g and g+1, which line up with 64 contiguous activations.

use std::arch::x86_64::*;

use super::q8::Q8Col;
use super::{QK, STAGE_BYTES};

/// Code ↦ a+1 (real axis) and b+1 (imaginary axis).
const RE: [i8; 4] = [2, 1, 0, 1];
const IM: [i8; 4] = [1, 2, 1, 0];

/// A 16-entry nibble table: entry `nib` maps the code in bits 0–1 (`hi` false) or 2–3 of `nib`.
const fn nibble_table(axis: [i8; 4], hi: bool) -> [i8; 16] {
    let mut t = [0i8; 16];
    let mut n = 0;
    while n < 16 {
        t[n] = axis[if hi { n >> 2 } else { n & 3 }];
        n += 1;
    }
    t
}

/// Four 16-byte tables laid out as the four 128-bit lanes of a 512-bit register.
const fn lanes4(t: [[i8; 16]; 4]) -> [i8; 64] {
    let mut out = [0i8; 64];
    let mut i = 0;
    while i < 64 {
        out[i] = t[i / 16][i % 16];
        i += 1;
    }
    out
}

/// Most columns [`pair_dot_q8_cols_512`] and [`pair_dot_q8_cols_256`] take at once.
pub const MAX_COLS: usize = 16;

// ---------------------------------------------------------------- shared per-block column data

/// Block `b` of a quantized column as the VNNI kernels read it.
struct Blk {
    /// The block's 256 activation bytes: 128 real parts, then 128 imaginary parts.
    q: *const i8,
    /// Σ m_g·Σ q of the real and of the imaginary parts (what the "+1" adds).
    s_re: i32,
    s_im: i32,
    /// log2 m_g of the four groups; `None` when all factors are 1.
    shift: Option<[u32; 4]>,
    /// The unit step.
    d: f32,
}

/// # Safety
/// `b` is below the column's block count and the column's lengths agree (`q8_lengths_agree`).
#[inline(always)]
unsafe fn blk(x: &Q8Col<'_>, b: usize) -> Blk {
    // SAFETY: the caller's contract: q holds 256 bytes, sum 2 and mul 4 values per block.
    unsafe {
        let mul = x
            .mul
            .as_ptr()
            .add(4 * b)
            .cast::<[i16; 4]>()
            .read_unaligned();
        Blk {
            q: x.q.as_ptr().add(b * QK),
            s_re: *x.sum.get_unchecked(2 * b),
            s_im: *x.sum.get_unchecked(2 * b + 1),
            shift: (mul != [1; 4]).then(|| mul.map(|m| m.trailing_zeros())),
            d: *x.d.get_unchecked(b),
        }
    }
}

/// The two f16 scales of a stage record times the column block's unit `d`: (d·d_re, d·d_im).
///
/// # Safety
/// `rec` points at a 36-byte stage record; the CPU has F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scales(rec: *const u8, d: f32) -> (f32, f32) {
    // SAFETY: bytes 0..4 of the record.
    let h = unsafe { rec.cast::<i32>().read_unaligned() };
    let s = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(h)), _mm_set1_ps(d));
    (_mm_cvtss_f32(s), _mm_cvtss_f32(_mm_movehdup_ps(s)))
}

// ---------------------------------------------------------------- 512 bits

/// Shuffle tables: real axis and imaginary axis, lanes 0–1 for the low code of a nibble (group g)
/// and lanes 2–3 for the high code (group g+1).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
fn luts512() -> (__m512i, __m512i) {
    const T_RE: [i8; 64] = lanes4([
        nibble_table(RE, false),
        nibble_table(RE, false),
        nibble_table(RE, true),
        nibble_table(RE, true),
    ]);
    const T_IM: [i8; 64] = lanes4([
        nibble_table(IM, false),
        nibble_table(IM, false),
        nibble_table(IM, true),
        nibble_table(IM, true),
    ]);
    // SAFETY: each table is 64 bytes.
    unsafe {
        (
            _mm512_loadu_si512(T_RE.as_ptr().cast()),
            _mm512_loadu_si512(T_IM.as_ptr().cast()),
        )
    }
}

/// One stage record decoded for 512 bits: `[r01, i01, r23, i23]`, the real- and imaginary-axis
/// weights of groups 0–1 and of groups 2–3.
///
/// # Safety
/// `rec` points at a 36-byte stage record.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn decode512(rec: *const u8, t_re: __m512i, t_im: __m512i) -> [__m512i; 4] {
    // SAFETY: bytes 4..36 of the record.
    let qs = unsafe { _mm256_loadu_si256(rec.add(4).cast()) };
    let q = _mm512_broadcast_i64x4(qs);
    let m15 = _mm512_set1_epi8(0x0f);
    let n01 = _mm512_and_si512(q, m15);
    let n23 = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m15);
    [
        _mm512_shuffle_epi8(t_re, n01),
        _mm512_shuffle_epi8(t_im, n01),
        _mm512_shuffle_epi8(t_re, n23),
        _mm512_shuffle_epi8(t_im, n23),
    ]
}

/// A block's activations for 512 bits: `[xr01, xr23, xi01, xi23]`.
///
/// # Safety
/// `q` points at the block's 256 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn acts512(q: *const i8) -> [__m512i; 4] {
    // SAFETY: four 64-byte loads inside the 256 bytes.
    unsafe {
        [
            _mm512_loadu_si512(q.cast()),
            _mm512_loadu_si512(q.add(64).cast()),
            _mm512_loadu_si512(q.add(128).cast()),
            _mm512_loadu_si512(q.add(192).cast()),
        ]
    }
}

/// The sums `[A, B, C, D]` of one decoded record against one block's activations, as 16 lanes
/// each, already including the −S start values. `sh` holds the per-lane shift counts of groups
/// (0, 1) and (2, 3) when the factors are not all 1.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
fn sums512(
    [r01, i01, r23, i23]: [__m512i; 4],
    [xr01, xr23, xi01, xi23]: [__m512i; 4],
    init: [__m512i; 2],
    sh: Option<[__m512i; 2]>,
) -> [__m512i; 4] {
    let [s_re, s_im] = init;
    match sh {
        None => [
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s_re, r01, xr01), r23, xr23),
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s_im, r01, xi01), r23, xi23),
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s_im, i01, xi01), i23, xi23),
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s_re, i01, xr01), i23, xr23),
        ],
        Some([sh01, sh23]) => {
            let z = _mm512_setzero_si512();
            let two = |acc, w01, x01, w23, x23| {
                let a = _mm512_sllv_epi32(_mm512_dpbusd_epi32(z, w01, x01), sh01);
                let b = _mm512_sllv_epi32(_mm512_dpbusd_epi32(z, w23, x23), sh23);
                _mm512_add_epi32(acc, _mm512_add_epi32(a, b))
            };
            [
                two(s_re, r01, xr01, r23, xr23),
                two(s_im, r01, xi01, r23, xi23),
                two(s_im, i01, xi01, i23, xi23),
                two(s_re, i01, xr01, i23, xr23),
            ]
        }
    }
}

/// Adds one row's sums of one stage and block to `y = [y_re, y_im]` with the scales
/// (s_re, s_im) = d·(d_re, d_im): U row (`W` false): y_re += s_re·A − s_im·C, y_im += s_re·B + s_im·D;
/// W row: y_re += s_re·A + s_im·C, y_im += −s_re·B + s_im·D.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
fn epilogue512<const W: bool>(y: &mut [__m512; 2], [a, b, c, dd]: [__m512i; 4], s: (f32, f32)) {
    let (s_re, s_im) = (_mm512_set1_ps(s.0), _mm512_set1_ps(s.1));
    let f = _mm512_cvtepi32_ps;
    let [mut y_re, mut y_im] = *y;
    y_re = _mm512_fmadd_ps(s_re, f(a), y_re);
    if W {
        y_re = _mm512_fmadd_ps(s_im, f(c), y_re);
        y_im = _mm512_fnmadd_ps(s_re, f(b), y_im);
    } else {
        y_re = _mm512_fnmadd_ps(s_im, f(c), y_re);
        y_im = _mm512_fmadd_ps(s_re, f(b), y_im);
    }
    y_im = _mm512_fmadd_ps(s_im, f(dd), y_im);
    *y = [y_re, y_im];
}

/// (y[j], y[j+n]) from the U and W rows' accumulators.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
fn finish512([[ur, ui], [wr, wi]]: [[__m512; 2]; 2]) -> (f32, f32) {
    (
        _mm512_reduce_add_ps(_mm512_add_ps(ur, wr)),
        _mm512_reduce_add_ps(_mm512_add_ps(ui, wi)),
    )
}

/// Start values and shift vectors of a block for 512 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
fn block_consts512(c: &Blk) -> ([__m512i; 2], Option<[__m512i; 2]>) {
    let lane0 = |v: i32| _mm512_zextsi128_si512(_mm_cvtsi32_si128(v.wrapping_neg()));
    let sh = c.shift.map(|s| {
        let pair = |lo: u32, hi: u32| {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi32(lo as i32)),
                _mm256_set1_epi32(hi as i32),
            )
        };
        [pair(s[0], s[1]), pair(s[2], s[3])]
    });
    ([lane0(c.s_re), lane0(c.s_im)], sh)
}

/// See [`super::Kernel::pair_dot_q8`].
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VNNI, AVX2, FMA and F16C, and the lengths must be as
/// `Kernel::pair_dot_q8` checks them (`q8_lengths_agree`): the kernel reads through raw pointers.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn pair_dot_q8_512(u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> (f32, f32) {
    // SAFETY: forwarded; `stages` is 1..=4 there.
    unsafe {
        match stages {
            1 => pair_dot_q8_512_t::<1>(u, w, x),
            2 => pair_dot_q8_512_t::<2>(u, w, x),
            3 => pair_dot_q8_512_t::<3>(u, w, x),
            _ => pair_dot_q8_512_t::<4>(u, w, x),
        }
    }
}

/// # Safety
/// As [`pair_dot_q8_512`], with `T` the stage count the lengths were checked for.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn pair_dot_q8_512_t<const T: usize>(u: &[u8], w: &[u8], x: Q8Col<'_>) -> (f32, f32) {
    let block_bytes = T * STAGE_BYTES;
    let (t_re, t_im) = luts512();
    let z = _mm512_setzero_ps();
    // [U, W] rows accumulate apart (two independent FMA chains), added at the end
    let mut y = [[z, z]; 2];
    for b in 0..x.d.len() {
        // SAFETY: b < blocks and the lengths agree: the column's block b and block_bytes of u and w
        // per block.
        unsafe {
            let c = blk(&x, b);
            let xs = acts512(c.q);
            let (init, sh) = block_consts512(&c);
            let (ub, wb) = (
                u.as_ptr().add(b * block_bytes),
                w.as_ptr().add(b * block_bytes),
            );
            for s in 0..T {
                let (ur, wr) = (ub.add(s * STAGE_BYTES), wb.add(s * STAGE_BYTES));
                let su = sums512(decode512(ur, t_re, t_im), xs, init, sh);
                epilogue512::<false>(&mut y[0], su, scales(ur, c.d));
                let sw = sums512(decode512(wr, t_re, t_im), xs, init, sh);
                epilogue512::<true>(&mut y[1], sw, scales(wr, c.d));
            }
        }
    }
    finish512(y)
}

/// See [`super::Kernel::pair_dot_q8_cols`]: up to [`MAX_COLS`] columns; each stage record is decoded
/// once per block, and each column gets exactly what [`pair_dot_q8_512`] gives it.
///
/// # Safety
/// As [`pair_dot_q8_512`], for every column.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
pub unsafe fn pair_dot_q8_cols_512(
    u: &[u8],
    w: &[u8],
    stages: usize,
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    assert!(
        cols.len() <= MAX_COLS && out.len() == cols.len(),
        "pair_dot_q8_cols: columns"
    );
    // SAFETY: forwarded; `stages` is 1..=4 there.
    unsafe {
        match stages {
            1 => pair_dot_q8_cols_512_t::<1>(u, w, cols, out),
            2 => pair_dot_q8_cols_512_t::<2>(u, w, cols, out),
            3 => pair_dot_q8_cols_512_t::<3>(u, w, cols, out),
            _ => pair_dot_q8_cols_512_t::<4>(u, w, cols, out),
        }
    }
}

/// # Safety
/// As [`pair_dot_q8_cols_512`], with `T` the stage count the lengths were checked for.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
#[inline]
unsafe fn pair_dot_q8_cols_512_t<const T: usize>(
    u: &[u8],
    w: &[u8],
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    let block_bytes = T * STAGE_BYTES;
    let (t_re, t_im) = luts512();
    let z = _mm512_setzero_ps();
    let mut acc = [[[z, z]; 2]; MAX_COLS];
    let zi = _mm512_setzero_si512();
    let mut dec = [[[zi; 4]; 2]; T];
    let blocks = cols.first().map_or(0, |x| x.d.len());
    for b in 0..blocks {
        let (ub, wb) = (
            u.as_ptr().wrapping_add(b * block_bytes),
            w.as_ptr().wrapping_add(b * block_bytes),
        );
        for (s, dec) in dec.iter_mut().enumerate() {
            // SAFETY: b < blocks and s < T: records inside u and w (lengths checked by the caller).
            unsafe {
                dec[0] = decode512(ub.add(s * STAGE_BYTES), t_re, t_im);
                dec[1] = decode512(wb.add(s * STAGE_BYTES), t_re, t_im);
            }
        }
        for (y, x) in acc.iter_mut().zip(cols) {
            // SAFETY: b < blocks and the lengths agree for every column.
            unsafe {
                let c = blk(x, b);
                let xs = acts512(c.q);
                let (init, sh) = block_consts512(&c);
                for (s, dec) in dec.iter().enumerate() {
                    let (ur, wr) = (ub.add(s * STAGE_BYTES), wb.add(s * STAGE_BYTES));
                    epilogue512::<false>(&mut y[0], sums512(dec[0], xs, init, sh), scales(ur, c.d));
                    epilogue512::<true>(&mut y[1], sums512(dec[1], xs, init, sh), scales(wr, c.d));
                }
            }
        }
    }
    for (o, y) in out.iter_mut().zip(acc) {
        *o = finish512(y);
    }
}

// ---------------------------------------------------------------- 256 bits (AVX-VNNI)

/// Shuffle tables for 256 bits: `[re_lo, re_hi, im_lo, im_hi]` (both 128-bit lanes alike).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn luts256() -> [__m256i; 4] {
    const fn two(t: [i8; 16]) -> [i8; 32] {
        let mut out = [0i8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = t[i % 16];
            i += 1;
        }
        out
    }
    const T: [[i8; 32]; 4] = [
        two(nibble_table(RE, false)),
        two(nibble_table(RE, true)),
        two(nibble_table(IM, false)),
        two(nibble_table(IM, true)),
    ];
    // SAFETY: each table is 32 bytes.
    T.map(|t| unsafe { _mm256_loadu_si256(t.as_ptr().cast()) })
}

/// One stage record decoded for 256 bits: per group g `[r_g, i_g]`, flattened as
/// `[r0, i0, r1, i1, r2, i2, r3, i3]`.
///
/// # Safety
/// `rec` points at a 36-byte stage record.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn decode256(rec: *const u8, t: &[__m256i; 4]) -> [__m256i; 8] {
    let [re_lo, re_hi, im_lo, im_hi] = *t;
    // SAFETY: bytes 4..36 of the record.
    let qs = unsafe { _mm256_loadu_si256(rec.add(4).cast()) };
    let m15 = _mm256_set1_epi8(0x0f);
    let n01 = _mm256_and_si256(qs, m15);
    let n23 = _mm256_and_si256(_mm256_srli_epi16::<4>(qs), m15);
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

/// The sums `[A, B, C, D]` of one decoded record against one block (8 lanes each, −S included).
///
/// # Safety
/// `q` points at the block's 256 activation bytes.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn sums256(
    dec: &[__m256i; 8],
    q: *const i8,
    init: [__m256i; 2],
    shift: Option<[u32; 4]>,
) -> [__m256i; 4] {
    let [s_re, s_im] = init;
    let mut acc = [s_re, s_im, s_im, s_re];
    let z = _mm256_setzero_si256();
    for g in 0..4 {
        // SAFETY: 32·g + 32 ≤ 128 and 128 + 32·g + 32 ≤ 256: inside the block.
        let (xr, xi) = unsafe {
            (
                _mm256_loadu_si256(q.add(32 * g).cast()),
                _mm256_loadu_si256(q.add(128 + 32 * g).cast()),
            )
        };
        let (r, i) = (dec[2 * g], dec[2 * g + 1]);
        match shift {
            None => {
                acc[0] = _mm256_dpbusd_avx_epi32(acc[0], r, xr);
                acc[1] = _mm256_dpbusd_avx_epi32(acc[1], r, xi);
                acc[2] = _mm256_dpbusd_avx_epi32(acc[2], i, xi);
                acc[3] = _mm256_dpbusd_avx_epi32(acc[3], i, xr);
            }
            Some(sh) => {
                let n = _mm_cvtsi32_si128(sh[g] as i32);
                let part = |w, x| _mm256_sll_epi32(_mm256_dpbusd_avx_epi32(z, w, x), n);
                acc[0] = _mm256_add_epi32(acc[0], part(r, xr));
                acc[1] = _mm256_add_epi32(acc[1], part(r, xi));
                acc[2] = _mm256_add_epi32(acc[2], part(i, xi));
                acc[3] = _mm256_add_epi32(acc[3], part(i, xr));
            }
        }
    }
    acc
}

/// As [`epilogue512`], on 8 lanes.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn epilogue256<const W: bool>(y: &mut [__m256; 2], [a, b, c, dd]: [__m256i; 4], s: (f32, f32)) {
    let (s_re, s_im) = (_mm256_set1_ps(s.0), _mm256_set1_ps(s.1));
    let f = _mm256_cvtepi32_ps;
    let [mut y_re, mut y_im] = *y;
    y_re = _mm256_fmadd_ps(s_re, f(a), y_re);
    if W {
        y_re = _mm256_fmadd_ps(s_im, f(c), y_re);
        y_im = _mm256_fnmadd_ps(s_re, f(b), y_im);
    } else {
        y_re = _mm256_fnmadd_ps(s_im, f(c), y_re);
        y_im = _mm256_fmadd_ps(s_re, f(b), y_im);
    }
    y_im = _mm256_fmadd_ps(s_im, f(dd), y_im);
    *y = [y_re, y_im];
}

/// Start values of a block for 256 bits.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn init256(c: &Blk) -> [__m256i; 2] {
    let lane0 = |v: i32| _mm256_zextsi128_si256(_mm_cvtsi32_si128(v.wrapping_neg()));
    [lane0(c.s_re), lane0(c.s_im)]
}

/// Horizontal sum of eight floats.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// (y[j], y[j+n]) from the U and W rows' accumulators.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
fn finish256([[ur, ui], [wr, wi]]: [[__m256; 2]; 2]) -> (f32, f32) {
    (
        hsum256(_mm256_add_ps(ur, wr)),
        hsum256(_mm256_add_ps(ui, wi)),
    )
}

/// See [`super::Kernel::pair_dot_q8`].
///
/// # Safety
/// The CPU must support AVX-VNNI, AVX2, FMA and F16C, and the lengths must be as
/// `Kernel::pair_dot_q8` checks them (`q8_lengths_agree`).
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub unsafe fn pair_dot_q8_256(u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> (f32, f32) {
    // SAFETY: forwarded; `stages` is 1..=4 there.
    unsafe {
        match stages {
            1 => pair_dot_q8_256_t::<1>(u, w, x),
            2 => pair_dot_q8_256_t::<2>(u, w, x),
            3 => pair_dot_q8_256_t::<3>(u, w, x),
            _ => pair_dot_q8_256_t::<4>(u, w, x),
        }
    }
}

/// # Safety
/// As [`pair_dot_q8_256`], with `T` the stage count the lengths were checked for.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn pair_dot_q8_256_t<const T: usize>(u: &[u8], w: &[u8], x: Q8Col<'_>) -> (f32, f32) {
    let block_bytes = T * STAGE_BYTES;
    let t = luts256();
    let z = _mm256_setzero_ps();
    // [U, W] rows accumulate apart (two independent FMA chains), added at the end
    let mut y = [[z, z]; 2];
    for b in 0..x.d.len() {
        // SAFETY: b < blocks and the lengths agree.
        unsafe {
            let c = blk(&x, b);
            let init = init256(&c);
            let (ub, wb) = (
                u.as_ptr().add(b * block_bytes),
                w.as_ptr().add(b * block_bytes),
            );
            for s in 0..T {
                let (ur, wr) = (ub.add(s * STAGE_BYTES), wb.add(s * STAGE_BYTES));
                let su = sums256(&decode256(ur, &t), c.q, init, c.shift);
                epilogue256::<false>(&mut y[0], su, scales(ur, c.d));
                let sw = sums256(&decode256(wr, &t), c.q, init, c.shift);
                epilogue256::<true>(&mut y[1], sw, scales(wr, c.d));
            }
        }
    }
    finish256(y)
}

/// See [`super::Kernel::pair_dot_q8_cols`], 256-bit AVX-VNNI form.
///
/// # Safety
/// As [`pair_dot_q8_256`], for every column.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub unsafe fn pair_dot_q8_cols_256(
    u: &[u8],
    w: &[u8],
    stages: usize,
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    assert!(
        cols.len() <= MAX_COLS && out.len() == cols.len(),
        "pair_dot_q8_cols: columns"
    );
    // SAFETY: forwarded; `stages` is 1..=4 there.
    unsafe {
        match stages {
            1 => pair_dot_q8_cols_256_t::<1>(u, w, cols, out),
            2 => pair_dot_q8_cols_256_t::<2>(u, w, cols, out),
            3 => pair_dot_q8_cols_256_t::<3>(u, w, cols, out),
            _ => pair_dot_q8_cols_256_t::<4>(u, w, cols, out),
        }
    }
}

/// # Safety
/// As [`pair_dot_q8_cols_256`], with `T` the stage count the lengths were checked for.
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
#[inline]
unsafe fn pair_dot_q8_cols_256_t<const T: usize>(
    u: &[u8],
    w: &[u8],
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    let block_bytes = T * STAGE_BYTES;
    let t = luts256();
    let z = _mm256_setzero_ps();
    let mut acc = [[[z, z]; 2]; MAX_COLS];
    let zi = _mm256_setzero_si256();
    let mut dec = [[[zi; 8]; 2]; T];
    let blocks = cols.first().map_or(0, |x| x.d.len());
    for b in 0..blocks {
        let (ub, wb) = (
            u.as_ptr().wrapping_add(b * block_bytes),
            w.as_ptr().wrapping_add(b * block_bytes),
        );
        for (s, dec) in dec.iter_mut().enumerate() {
            // SAFETY: b < blocks and s < T: records inside u and w.
            unsafe {
                dec[0] = decode256(ub.add(s * STAGE_BYTES), &t);
                dec[1] = decode256(wb.add(s * STAGE_BYTES), &t);
            }
        }
        for (y, x) in acc.iter_mut().zip(cols) {
            // SAFETY: b < blocks and the lengths agree for every column.
            unsafe {
                let c = blk(x, b);
                let init = init256(&c);
                for (s, dec) in dec.iter().enumerate() {
                    let (ur, wr) = (ub.add(s * STAGE_BYTES), wb.add(s * STAGE_BYTES));
                    let su = sums256(&dec[0], c.q, init, c.shift);
                    epilogue256::<false>(&mut y[0], su, scales(ur, c.d));
                    let sw = sums256(&dec[1], c.q, init, c.shift);
                    epilogue256::<true>(&mut y[1], sw, scales(wr, c.d));
                }
            }
        }
    }
    for (o, y) in out.iter_mut().zip(acc) {
        *o = finish256(y);
    }
}
