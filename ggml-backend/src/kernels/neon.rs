//! ARM NEON kernels for aarch64 (docs/backend.md §2.6). Chosen at run time by [`super::Kernel`].
//!
//! **Exact path.** Four code bytes q[4j..4j+4) widened to 32-bit lanes serve the four groups
//! g = 0..3 (entries 32g + 4j ..): `vtstq_u32` against bit 2g+1 (sign) and bit 2g (axis) gives lane
//! masks; the sign bit is xor-ed into x_re and x_im, every signed value goes into a total and,
//! masked by the axis, into the imaginary-axis sum; real-axis sums are total − imaginary (as in the
//! other kernels). The scales are applied with FMA into two 4-lane accumulators.
//!
//! **Int8 path.** A table lookup (`vqtbl1q_s8`) maps each nibble of the code bytes (two codes) to the
//! signed weight of one group on one axis: a ∈ {1, 0, −1, 0} on the real axis and b ∈ {0, 1, 0, −1}
//! on the imaginary axis for codes 0..3. A group factor m_g shifts the weights left by log2 m_g
//! (|a·m_g| ≤ 8), and the weights times the int8 activations are summed in one of two forms
//! ([`Q8Form`]): `sdot` (FEAT_DotProd) into 32-bit lanes, or, on any NEON CPU, `smull`/`smlal`
//! into 16-bit lanes widened once per stage record. Both give exactly the integers of the scalar
//! reference (`q8::stage_sums`), and the float epilogue does the scalar kernel's operations in its
//! order, so every NEON int8 result equals the scalar int8 result bit for bit (tested).
//!
//! NEON is part of every aarch64 Linux target; `sdot` is detected at run time and, because its
//! intrinsic is not stable Rust yet, issued through `asm!`.

use std::arch::aarch64::*;
use std::arch::asm;

use super::q8::Q8Col;
use super::{QC, QK, STAGE_BYTES};

// ---------------------------------------------------------------- loads

/// The 16 bytes of `a` as a vector.
#[target_feature(enable = "neon")]
#[inline]
fn ld_u8(a: &[u8; 16]) -> uint8x16_t {
    // SAFETY: reads the 16 bytes of `a`.
    unsafe { vld1q_u8(a.as_ptr()) }
}

/// The 16 signed bytes of `a` as a vector.
#[target_feature(enable = "neon")]
#[inline]
fn ld_s8(a: &[i8; 16]) -> int8x16_t {
    // SAFETY: reads the 16 bytes of `a`.
    unsafe { vld1q_s8(a.as_ptr()) }
}

/// The 4 floats of `a` as a vector.
#[target_feature(enable = "neon")]
#[inline]
fn ld_f32(a: &[f32; 4]) -> float32x4_t {
    // SAFETY: reads the 16 bytes of `a`.
    unsafe { vld1q_f32(a.as_ptr()) }
}

/// A stage record from a slice of exactly [`STAGE_BYTES`] bytes.
#[inline]
fn record(rec: &[u8]) -> &[u8; STAGE_BYTES] {
    rec.try_into().expect("36-byte record")
}

/// The 32 code bytes of a record as two vectors (bytes 0..16 and 16..32 of `qs`).
#[target_feature(enable = "neon")]
#[inline]
fn codes(rec: &[u8; STAGE_BYTES]) -> [uint8x16_t; 2] {
    let (halves, _) = rec[4..].as_chunks::<16>();
    [ld_u8(&halves[0]), ld_u8(&halves[1])]
}

/// The two f16 scales of a record, converted exactly: lanes `[d_re, d_im, d_re, d_im]`.
#[target_feature(enable = "neon")]
#[inline]
fn scales(rec: &[u8; STAGE_BYTES]) -> float32x4_t {
    // (the f16 → f32 NEON conversion intrinsics are stable only from Rust 1.94; `half` is exact too)
    let re = half::f16::from_le_bytes([rec[0], rec[1]]).to_f32();
    let im = half::f16::from_le_bytes([rec[2], rec[3]]).to_f32();
    let v = [re, im, re, im];
    // SAFETY: `v` holds 4 floats.
    unsafe { vld1q_f32(v.as_ptr()) }
}

// ---------------------------------------------------------------- exact path

/// Sums of one stage of the U row and of the W row over one block, as 4-lane vectors:
/// `[A, B, C, D]` for U, then for W (see [`super`]).
#[target_feature(enable = "neon")]
#[inline]
fn stage_sums(
    uq: [uint8x16_t; 2],
    wq: [uint8x16_t; 2],
    xr: &[f32; QC],
    xi: &[f32; QC],
) -> ([float32x4_t; 4], [float32x4_t; 4]) {
    let (xr4, _) = xr.as_chunks::<4>();
    let (xi4, _) = xi.as_chunks::<4>();
    let msb = vdupq_n_u32(0x8000_0000);
    let z = vdupq_n_f32(0.0);
    // per row: totals t_r, t_i and imaginary-axis sums i_r, i_i
    let mut acc = [[z; 4]; 2];
    // the four 32-bit lanes of bytes 4j..4j+4 of a 16-byte half
    let widen = |c: uint8x16_t| {
        let (lo, hi) = (vmovl_u8(vget_low_u8(c)), vmovl_high_u8(c));
        [
            vmovl_u16(vget_low_u16(lo)),
            vmovl_high_u16(lo),
            vmovl_u16(vget_low_u16(hi)),
            vmovl_high_u16(hi),
        ]
    };
    for h in 0..2 {
        let (uc, wc) = (widen(uq[h]), widen(wq[h]));
        for j in 0..4 {
            for g in 0..4 {
                // entries 32g + 16h + 4j ..: code bytes 16h + 4j ..
                let e4 = 8 * g + 4 * h + j;
                let (vr, vi) = (
                    vreinterpretq_u32_f32(ld_f32(&xr4[e4])),
                    vreinterpretq_u32_f32(ld_f32(&xi4[e4])),
                );
                let (neg_bit, axis_bit) = (vdupq_n_u32(2 << (2 * g)), vdupq_n_u32(1 << (2 * g)));
                for (acc, c) in acc.iter_mut().zip([uc[j], wc[j]]) {
                    let sign = vandq_u32(vtstq_u32(c, neg_bit), msb);
                    let imag = vtstq_u32(c, axis_bit);
                    let (sr, si) = (veorq_u32(vr, sign), veorq_u32(vi, sign));
                    acc[0] = vaddq_f32(acc[0], vreinterpretq_f32_u32(sr));
                    acc[1] = vaddq_f32(acc[1], vreinterpretq_f32_u32(si));
                    acc[2] = vaddq_f32(acc[2], vreinterpretq_f32_u32(vandq_u32(sr, imag)));
                    acc[3] = vaddq_f32(acc[3], vreinterpretq_f32_u32(vandq_u32(si, imag)));
                }
            }
        }
    }
    let abcd = |[t_r, t_i, i_r, i_i]: [float32x4_t; 4]| {
        [vsubq_f32(t_r, i_r), vsubq_f32(t_i, i_i), i_i, i_r]
    };
    (abcd(acc[0]), abcd(acc[1]))
}

/// See [`super::Kernel::pair_dot`].
///
/// # Safety
/// The CPU must support NEON (every aarch64 Linux CPU does). Lengths are as checked by
/// `Kernel::pair_dot` (the slices are only read through bounds-checked conversions, so wrong
/// lengths panic, not UB).
#[target_feature(enable = "neon")]
pub unsafe fn pair_dot(
    u: &[u8],
    w: &[u8],
    stages: usize,
    x_re: &[f32],
    x_im: &[f32],
) -> (f32, f32) {
    let block_bytes = stages * STAGE_BYTES;
    let mut y_re = vdupq_n_f32(0.0);
    let mut y_im = vdupq_n_f32(0.0);
    let blocks = u.chunks_exact(block_bytes).zip(w.chunks_exact(block_bytes));
    for ((ub, wb), (xr, xi)) in blocks.zip(x_re.chunks_exact(QC).zip(x_im.chunks_exact(QC))) {
        let xr: &[f32; QC] = xr.try_into().expect("chunks_exact(QC)");
        let xi: &[f32; QC] = xi.try_into().expect("chunks_exact(QC)");
        for (us, ws) in ub
            .chunks_exact(STAGE_BYTES)
            .zip(wb.chunks_exact(STAGE_BYTES))
        {
            let (us, ws) = (record(us), record(ws));
            let ([ua, ub_, uc, ud], [wa, wb_, wc, wd]) = stage_sums(codes(us), codes(ws), xr, xi);
            let (su, sw) = (vget_low_f32(scales(us)), vget_low_f32(scales(ws)));
            y_re = vfmaq_lane_f32::<0>(y_re, ua, su);
            y_re = vfmsq_lane_f32::<1>(y_re, uc, su);
            y_im = vfmaq_lane_f32::<0>(y_im, ub_, su);
            y_im = vfmaq_lane_f32::<1>(y_im, ud, su);
            y_re = vfmaq_lane_f32::<0>(y_re, wa, sw);
            y_re = vfmaq_lane_f32::<1>(y_re, wc, sw);
            y_im = vfmsq_lane_f32::<0>(y_im, wb_, sw);
            y_im = vfmaq_lane_f32::<1>(y_im, wd, sw);
        }
    }
    (vaddvq_f32(y_re), vaddvq_f32(y_im))
}

// ---------------------------------------------------------------- int8 path: forms

/// How the int8 path forms its integer sums; both forms give the same integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Q8Form {
    /// `smull`/`smlal` into 16-bit lanes, `saddlp` to 32 bits once per stage record: any NEON CPU.
    Mull,
    /// `sdot` into 32-bit lanes: CPUs with FEAT_DotProd (optional from Armv8.2, e.g. Cortex-A55/A76,
    /// Neoverse N1, Apple M1; mandatory from Armv8.4).
    Sdot,
}

impl Q8Form {
    /// `mull` or `sdot`.
    pub fn name(self) -> &'static str {
        match self {
            Q8Form::Mull => "mull",
            Q8Form::Sdot => "sdot",
        }
    }

    /// Whether this CPU runs the form (NEON itself is assumed, as for every NEON kernel).
    pub fn is_available(self) -> bool {
        match self {
            Q8Form::Mull => true,
            Q8Form::Sdot => Sdot::detect().is_some(),
        }
    }

    /// The forms this CPU runs, best last.
    pub fn available() -> Vec<Q8Form> {
        [Q8Form::Mull, Q8Form::Sdot]
            .into_iter()
            .filter(|f| f.is_available())
            .collect()
    }

    /// The best form this CPU runs.
    pub fn best() -> Q8Form {
        if Q8Form::Sdot.is_available() {
            Q8Form::Sdot
        } else {
            Q8Form::Mull
        }
    }
}

/// The form of the integer sums, as a type: the kernels are generic over it.
trait Form: Copy {
    /// Whether the form is `sdot` (only [`Sdot`] is).
    const SDOT: bool;
}

/// Proof that the CPU has FEAT_DotProd: a value is only made by [`Sdot::detect`].
#[derive(Clone, Copy)]
struct Sdot(());

impl Sdot {
    /// `Some` when this CPU has FEAT_DotProd (std caches the detection).
    #[inline]
    fn detect() -> Option<Sdot> {
        std::arch::is_aarch64_feature_detected!("dotprod").then_some(Sdot(()))
    }
}

impl Form for Sdot {
    const SDOT: bool = true;
}

/// The widening-multiply form (baseline NEON).
#[derive(Clone, Copy)]
struct Mull;

impl Form for Mull {
    const SDOT: bool = false;
}

/// `acc[i] += Σ_{k<4} a[4i+k]·b[4i+k]` (signed bytes, 32-bit lanes): the `sdot` instruction.
///
/// # Safety
/// The CPU must support FEAT_DotProd.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction; the caller guarantees the CPU has it. The directive
    // lets the assembler accept the mnemonic in a function compiled for baseline NEON.
    unsafe {
        asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Adds `w · x` over 32 entries (`w = [w0, w1]`, `x = [x0, x1]`) to a sum register: for [`Sdot`]
/// four 32-bit lanes, for [`Mull`] eight 16-bit lanes (reinterpreted; [`finish`] widens them).
///
/// 16-bit lanes cannot overflow: a lane takes 4 products per group, |w·x| ≤ 8·127, so at most
/// 4 groups · 4 · 1016 = 16256 per stage record (the group factor is at most 8: `q8::MAX_SHIFT`).
#[target_feature(enable = "neon")]
#[inline]
fn dot<F: Form>(
    _form: F,
    acc: int32x4_t,
    [w0, w1]: [int8x16_t; 2],
    [x0, x1]: [int8x16_t; 2],
) -> int32x4_t {
    if F::SDOT {
        // SAFETY: F::SDOT holds only for `Sdot`, and `_form` is an `Sdot` value, which exists only
        // when the CPU has FEAT_DotProd (`Sdot::detect`).
        unsafe { sdot(sdot(acc, w0, x0), w1, x1) }
    } else {
        let a = vreinterpretq_s16_s32(acc);
        let a = vmlal_s8(a, vget_low_s8(w0), vget_low_s8(x0));
        let a = vmlal_high_s8(a, w0, x0);
        let a = vmlal_s8(a, vget_low_s8(w1), vget_low_s8(x1));
        let a = vmlal_high_s8(a, w1, x1);
        vreinterpretq_s32_s16(a)
    }
}

/// A sum register of [`dot`] as four 32-bit lanes.
#[target_feature(enable = "neon")]
#[inline]
fn finish<F: Form>(acc: int32x4_t) -> int32x4_t {
    if F::SDOT {
        acc
    } else {
        vpaddlq_s16(vreinterpretq_s16_s32(acc))
    }
}

// ---------------------------------------------------------------- int8 path: decoding

/// Signed weights per code 0..3 on the real axis (±1) and on the imaginary axis (±i).
const RE: [i8; 4] = [1, 0, -1, 0];
const IM: [i8; 4] = [0, 1, 0, -1];

/// A lookup table indexed by a nibble (two codes): the weight of the code in bits 0–1 (`hi` false)
/// or in bits 2–3 (`hi` true).
const fn table(axis: [i8; 4], hi: bool) -> [i8; 16] {
    let mut t = [0i8; 16];
    let mut n = 0;
    while n < 16 {
        t[n] = axis[if hi { n >> 2 } else { n & 3 }];
        n += 1;
    }
    t
}

/// `[re_lo, re_hi, im_lo, im_hi]`.
const TABLES: [[i8; 16]; 4] = [
    table(RE, false),
    table(RE, true),
    table(IM, false),
    table(IM, true),
];

#[target_feature(enable = "neon")]
#[inline]
fn luts() -> [int8x16_t; 4] {
    [
        ld_s8(&TABLES[0]),
        ld_s8(&TABLES[1]),
        ld_s8(&TABLES[2]),
        ld_s8(&TABLES[3]),
    ]
}

/// The nibbles of a record's code bytes: `[lo0, lo1, hi0, hi1]`; a low nibble holds the codes of
/// groups 0 and 1, a high nibble those of groups 2 and 3 (byte e holds entries e, e+32, e+64, e+96).
#[target_feature(enable = "neon")]
#[inline]
fn nibbles([c0, c1]: [uint8x16_t; 2]) -> [uint8x16_t; 4] {
    let m = vdupq_n_u8(0x0f);
    [
        vandq_u8(c0, m),
        vandq_u8(c1, m),
        vshrq_n_u8::<4>(c0),
        vshrq_n_u8::<4>(c1),
    ]
}

/// The signed weights of group g (entries 32g..32g+32) of a record:
/// `[re0, re1, im0, im1]`, each 16 entries (re0: 32g..32g+16), from its [`nibbles`].
#[target_feature(enable = "neon")]
#[inline]
fn decode_group(nib: &[uint8x16_t; 4], luts: &[int8x16_t; 4], g: usize) -> [int8x16_t; 4] {
    let (n0, n1) = if g < 2 {
        (nib[0], nib[1])
    } else {
        (nib[2], nib[3])
    };
    let (tr, ti) = if g & 1 == 0 {
        (luts[0], luts[2])
    } else {
        (luts[1], luts[3])
    };
    [
        vqtbl1q_s8(tr, n0),
        vqtbl1q_s8(tr, n1),
        vqtbl1q_s8(ti, n0),
        vqtbl1q_s8(ti, n1),
    ]
}

/// The weights times the group factor 2^sh when `SHIFT` (|w| ≤ 8 fits a byte).
#[target_feature(enable = "neon")]
#[inline]
fn shifted<const SHIFT: bool>(wt: [int8x16_t; 4], sh: int8x16_t) -> [int8x16_t; 4] {
    if SHIFT {
        wt.map(|v| vshlq_s8(v, sh))
    } else {
        wt
    }
}

/// Block `b` of a quantized column.
struct ColBlock<'a> {
    /// 128 real then 128 imaginary parts.
    q: &'a [[i8; 16]; 16],
    /// log2 m_g of the four groups as byte shift counts; `None` when all factors are 1
    /// (`Q8Cols::quantize` folds equal factors into `d`).
    shift: Option<[int8x16_t; 4]>,
    /// The unit step.
    d: f32,
}

/// Block `b` of column `x` (lengths as `q8_lengths_agree` checks them; wrong ones panic).
#[target_feature(enable = "neon")]
#[inline]
fn col_block<'a>(x: &Q8Col<'a>, b: usize) -> ColBlock<'a> {
    let q: &[i8; QK] = x.q[b * QK..][..QK]
        .try_into()
        .expect("256 values per block");
    let mul: [i16; 4] = x.mul[4 * b..][..4].try_into().expect("4 factors per block");
    ColBlock {
        q: q.as_chunks::<16>().0.try_into().expect("16 vectors"),
        // m_g is a power of two ≤ 8: its exponent is the shift count
        shift: (mul != [1; 4]).then(|| mul.map(|m| vdupq_n_s8(m.trailing_zeros() as i8))),
        d: x.d[b],
    }
}

/// The activations group g meets: `[re0, re1, im0, im1]` (parts 32g..32g+16, 32g+16..32g+32).
#[target_feature(enable = "neon")]
#[inline]
fn group_x(q: &[[i8; 16]; 16], g: usize) -> [int8x16_t; 4] {
    [
        ld_s8(&q[2 * g]),
        ld_s8(&q[2 * g + 1]),
        ld_s8(&q[8 + 2 * g]),
        ld_s8(&q[8 + 2 * g + 1]),
    ]
}

/// Adds one group's products to a row's sum registers `[A, B, C, D]`: real-axis weights against
/// x_re and x_im, imaginary-axis weights against x_im and x_re.
#[target_feature(enable = "neon")]
#[inline]
fn group_sums<F: Form>(
    form: F,
    acc: &mut [int32x4_t; 4],
    [re0, re1, im0, im1]: [int8x16_t; 4],
    [xr0, xr1, xi0, xi1]: [int8x16_t; 4],
) {
    acc[0] = dot(form, acc[0], [re0, re1], [xr0, xr1]);
    acc[1] = dot(form, acc[1], [re0, re1], [xi0, xi1]);
    acc[2] = dot(form, acc[2], [im0, im1], [xi0, xi1]);
    acc[3] = dot(form, acc[3], [im0, im1], [xr0, xr1]);
}

/// Adds one stage (the U and the W record) to `y = [y_re, y_im]`: the sum registers are widened and
/// reduced to the exact integers A, B, C, D per row, and the float operations are those of the
/// scalar kernel `q8::pair_dot`, in its order: with s = (d_re·d, d_im·d) per row,
/// `y_re += ((s_re^U·A^U − s_im^U·C^U) + s_re^W·A^W) + s_im^W·C^W` and
/// `y_im += ((s_re^U·B^U + s_im^U·D^U) − s_re^W·B^W) + s_im^W·D^W` (no fused multiply-add).
#[target_feature(enable = "neon")]
#[inline]
fn stage_epilogue<F: Form>(
    y: float32x2_t,
    su: [int32x4_t; 4],
    sw: [int32x4_t; 4],
    scale_u: float32x4_t,
    scale_w: float32x4_t,
    d: f32,
) -> float32x2_t {
    // [ΣA, ΣB, ΣC, ΣD] (|Σ| < 2^24: exact as floats)
    let total = |s: [int32x4_t; 4]| {
        let [a, b, c, dd] = s.map(|v| finish::<F>(v));
        vcvtq_f32_s32(vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, dd)))
    };
    // [d_re, d_re, d_im, d_im]·d with the sign of lane `neg` flipped (negation is exact)
    let coef = |s: float32x4_t, neg: [u32; 4]| {
        let s = vmulq_n_f32(vzip1q_f32(s, s), d);
        // SAFETY: reads the 16 bytes of `neg`.
        let flip = unsafe { vld1q_u32(neg.as_ptr()) };
        vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(s), flip))
    };
    const MSB: u32 = 0x8000_0000;
    // U: [s_re·A, s_re·B, −s_im·C, s_im·D]; W: [s_re·A, −s_re·B, s_im·C, s_im·D]
    let pu = vmulq_f32(coef(scale_u, [0, 0, MSB, 0]), total(su));
    let pw = vmulq_f32(coef(scale_w, [0, MSB, 0, 0]), total(sw));
    let t = vadd_f32(vget_low_f32(pu), vget_high_f32(pu));
    let t = vadd_f32(t, vget_low_f32(pw));
    let t = vadd_f32(t, vget_high_f32(pw));
    vadd_f32(y, t)
}

// ---------------------------------------------------------------- int8 path: one column

/// See [`super::Kernel::pair_dot_q8`]; the best [`Q8Form`] of this CPU.
///
/// # Safety
/// The CPU must support NEON. Lengths are as `Kernel::pair_dot_q8` checks them
/// (`q8_lengths_agree`); the kernel reads through bounds-checked conversions, so wrong lengths
/// panic, not UB.
#[target_feature(enable = "neon")]
pub unsafe fn pair_dot_q8(u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> (f32, f32) {
    match Sdot::detect() {
        Some(form) => q8_one(form, u, w, stages, x),
        None => q8_one(Mull, u, w, stages, x),
    }
}

/// [`pair_dot_q8`] in a given form.
///
/// # Safety
/// As [`pair_dot_q8`].
///
/// # Panics
/// If the CPU does not run `form`.
#[target_feature(enable = "neon")]
pub unsafe fn pair_dot_q8_as(
    form: Q8Form,
    u: &[u8],
    w: &[u8],
    stages: usize,
    x: Q8Col<'_>,
) -> (f32, f32) {
    match form {
        Q8Form::Mull => q8_one(Mull, u, w, stages, x),
        Q8Form::Sdot => {
            let form = Sdot::detect().expect("this CPU has no sdot (FEAT_DotProd)");
            q8_one(form, u, w, stages, x)
        }
    }
}

#[target_feature(enable = "neon")]
#[inline]
fn q8_one<F: Form>(form: F, u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> (f32, f32) {
    match stages {
        1 => q8_one_t::<F, 1>(form, u, w, x),
        2 => q8_one_t::<F, 2>(form, u, w, x),
        3 => q8_one_t::<F, 3>(form, u, w, x),
        _ => q8_one_t::<F, 4>(form, u, w, x),
    }
}

/// One column, `T` stages: block by block, each stage's U and W records go through
/// [`pair_stage`] group by group, so the decoded codes stay in registers.
#[target_feature(enable = "neon")]
#[inline]
fn q8_one_t<F: Form, const T: usize>(form: F, u: &[u8], w: &[u8], x: Q8Col<'_>) -> (f32, f32) {
    let block_bytes = T * STAGE_BYTES;
    let luts = luts();
    let no_shift = [vdupq_n_s8(0); 4];
    let mut y = vdup_n_f32(0.0);
    let blocks = u.chunks_exact(block_bytes).zip(w.chunks_exact(block_bytes));
    for (b, (ub, wb)) in blocks.enumerate() {
        let c = col_block(&x, b);
        let records = ub
            .chunks_exact(STAGE_BYTES)
            .zip(wb.chunks_exact(STAGE_BYTES));
        match &c.shift {
            None => {
                for (ur, wr) in records {
                    let (ur, wr) = (record(ur), record(wr));
                    y = pair_stage::<F, false>(form, y, ur, wr, &c, &no_shift, &luts);
                }
            }
            Some(sh) => {
                for (ur, wr) in records {
                    let (ur, wr) = (record(ur), record(wr));
                    y = pair_stage::<F, true>(form, y, ur, wr, &c, sh, &luts);
                }
            }
        }
    }
    (vget_lane_f32::<0>(y), vget_lane_f32::<1>(y))
}

/// The U and the W record of one stage against one block of a quantized column, added to `y`.
#[target_feature(enable = "neon")]
#[inline]
fn pair_stage<F: Form, const SHIFT: bool>(
    form: F,
    y: float32x2_t,
    ur: &[u8; STAGE_BYTES],
    wr: &[u8; STAGE_BYTES],
    c: &ColBlock<'_>,
    sh: &[int8x16_t; 4],
    luts: &[int8x16_t; 4],
) -> float32x2_t {
    let (nu, nw) = (nibbles(codes(ur)), nibbles(codes(wr)));
    let z = vdupq_n_s32(0);
    let (mut su, mut sw) = ([z; 4], [z; 4]);
    for (g, &sh) in sh.iter().enumerate() {
        let x = group_x(c.q, g);
        let wt = shifted::<SHIFT>(decode_group(&nu, luts, g), sh);
        group_sums(form, &mut su, wt, x);
        let wt = shifted::<SHIFT>(decode_group(&nw, luts, g), sh);
        group_sums(form, &mut sw, wt, x);
    }
    stage_epilogue::<F>(y, su, sw, scales(ur), scales(wr), c.d)
}

// ---------------------------------------------------------------- int8 path: several columns

/// Most columns [`pair_dot_q8_cols`] takes at once.
pub const MAX_COLS: usize = 16;

/// One output pair against up to [`MAX_COLS`] quantized columns, the best [`Q8Form`] of this CPU:
/// each stage record is decoded once per block and used for every column. `out[c]` is exactly
/// what [`pair_dot_q8`] gives column c (same integers, same float operations in the same order).
///
/// # Safety
/// The CPU must support NEON. Lengths are as `Kernel::pair_dot_q8_cols` checks them
/// (`q8_lengths_agree` for every column); wrong ones panic, not UB.
#[target_feature(enable = "neon")]
pub unsafe fn pair_dot_q8_cols(
    u: &[u8],
    w: &[u8],
    stages: usize,
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    match Sdot::detect() {
        Some(form) => q8_cols(form, u, w, stages, cols, out),
        None => q8_cols(Mull, u, w, stages, cols, out),
    }
}

/// [`pair_dot_q8_cols`] in a given form.
///
/// # Safety
/// As [`pair_dot_q8_cols`].
///
/// # Panics
/// If the CPU does not run `form`.
#[target_feature(enable = "neon")]
pub unsafe fn pair_dot_q8_cols_as(
    form: Q8Form,
    u: &[u8],
    w: &[u8],
    stages: usize,
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    match form {
        Q8Form::Mull => q8_cols(Mull, u, w, stages, cols, out),
        Q8Form::Sdot => {
            let form = Sdot::detect().expect("this CPU has no sdot (FEAT_DotProd)");
            q8_cols(form, u, w, stages, cols, out)
        }
    }
}

#[target_feature(enable = "neon")]
#[inline]
fn q8_cols<F: Form>(
    form: F,
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
    match stages {
        1 => q8_cols_t::<F, 1>(form, u, w, cols, out),
        2 => q8_cols_t::<F, 2>(form, u, w, cols, out),
        3 => q8_cols_t::<F, 3>(form, u, w, cols, out),
        _ => q8_cols_t::<F, 4>(form, u, w, cols, out),
    }
}

/// The decoded weights of one record: per group `[re0, re1, im0, im1]`.
type Decoded = [[int8x16_t; 4]; 4];

/// Several columns, `T` stages.
#[target_feature(enable = "neon")]
#[inline]
fn q8_cols_t<F: Form, const T: usize>(
    form: F,
    u: &[u8],
    w: &[u8],
    cols: &[Q8Col<'_>],
    out: &mut [(f32, f32)],
) {
    let block_bytes = T * STAGE_BYTES;
    let luts = luts();
    let no_shift = [vdupq_n_s8(0); 4];
    let mut y = [vdup_n_f32(0.0); MAX_COLS];
    // one block's records decoded, and their scales: [stage][U, W]
    let mut dec: [[Decoded; 2]; T] = [[[[vdupq_n_s8(0); 4]; 4]; 2]; T];
    let mut sc = [[vdupq_n_f32(0.0); 2]; T];
    let blocks = u.chunks_exact(block_bytes).zip(w.chunks_exact(block_bytes));
    for (b, (ub, wb)) in blocks.enumerate() {
        for (s, (dec, sc)) in dec.iter_mut().zip(sc.iter_mut()).enumerate() {
            for (r, row) in [ub, wb].into_iter().enumerate() {
                let rec = record(&row[s * STAGE_BYTES..][..STAGE_BYTES]);
                let nib = nibbles(codes(rec));
                for (g, d) in dec[r].iter_mut().enumerate() {
                    *d = decode_group(&nib, &luts, g);
                }
                sc[r] = scales(rec);
            }
        }
        for (y, x) in y.iter_mut().zip(cols) {
            let c = col_block(x, b);
            *y = match &c.shift {
                None => cols_block::<F, false, T>(form, *y, &dec, &sc, &c, &no_shift),
                Some(sh) => cols_block::<F, true, T>(form, *y, &dec, &sc, &c, sh),
            };
        }
    }
    for (o, y) in out.iter_mut().zip(y) {
        *o = (vget_lane_f32::<0>(y), vget_lane_f32::<1>(y));
    }
}

/// One block of one column against a pair's decoded records: the integer sums of [`pair_stage`]
/// and the same [`stage_epilogue`], stage by stage.
#[target_feature(enable = "neon")]
#[inline]
fn cols_block<F: Form, const SHIFT: bool, const T: usize>(
    form: F,
    mut y: float32x2_t,
    dec: &[[Decoded; 2]; T],
    sc: &[[float32x4_t; 2]; T],
    c: &ColBlock<'_>,
    sh: &[int8x16_t; 4],
) -> float32x2_t {
    let z = vdupq_n_s32(0);
    for (dec, sc) in dec.iter().zip(sc) {
        let (mut su, mut sw) = ([z; 4], [z; 4]);
        for g in 0..4 {
            let x = group_x(c.q, g);
            group_sums(form, &mut su, shifted::<SHIFT>(dec[0][g], sh[g]), x);
            group_sums(form, &mut sw, shifted::<SHIFT>(dec[1][g], sh[g]), x);
        }
        y = stage_epilogue::<F>(y, su, sw, sc[0], sc[1], c.d);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::super::q8::{self, Q8Cols};
    use super::super::testutil::{dequantize, random_f2i, Rng};
    use super::*;

    /// Random codes and activations; `outliers` puts a large value into some groups, so blocks get
    /// different group factors (the shifted kernels) as well as folded ones.
    fn case(rng: &mut Rng, blocks: usize, stages: usize, outliers: bool) -> (Vec<u8>, Vec<f32>) {
        let k = blocks * QK;
        let data = random_f2i(rng, k, 2, stages);
        let x = (0..k)
            .map(|i| rng.unit() * if outliers && i % 89 == 3 { 60.0 } else { 1.0 })
            .collect();
        (data, x)
    }

    /// The int8 forms this CPU runs, each once (printed, so a test log shows what ran).
    fn forms() -> Vec<Q8Form> {
        let forms = Q8Form::available();
        eprintln!(
            "neon int8 forms on this CPU: {:?}",
            forms.iter().map(|f| f.name()).collect::<Vec<_>>()
        );
        forms
    }

    fn one(form: Q8Form, u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> (f32, f32) {
        // SAFETY: aarch64 Linux has NEON; pair_dot_q8_as checks the form; the lengths agree
        // (built for each other by `case`).
        unsafe { pair_dot_q8_as(form, u, w, stages, x) }
    }

    /// Each form equals the scalar int8 kernel bit for bit: the same integer sums, the same float
    /// operations in the same order.
    #[test]
    fn q8_forms_equal_scalar_q8_bit_for_bit() {
        let mut rng = Rng::new(31);
        for form in forms() {
            for stages in 1..=4 {
                for blocks in 1..=5 {
                    for outliers in [false, true] {
                        let (data, x) = case(&mut rng, blocks, stages, outliers);
                        let q = Q8Cols::quantize(&[&x], blocks * QK);
                        let (u, w) = data.split_at(data.len() / 2);
                        let want = q8::pair_dot(u, w, stages, q.col(0));
                        let got = one(form, u, w, stages, q.col(0));
                        assert_eq!(
                            (got.0.to_bits(), got.1.to_bits()),
                            (want.0.to_bits(), want.1.to_bits()),
                            "{form:?} t={stages} blocks={blocks} outliers={outliers}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }

    /// Each form against the spec's dequantize-then-dot applied to the dequantized activations
    /// d·m_g·q (so only f32 rounding separates them), in f64.
    #[test]
    fn q8_forms_match_dequantized_reference() {
        let mut rng = Rng::new(32);
        for form in forms() {
            for stages in 1..=4 {
                for (blocks, outliers) in [(1, false), (2, true), (5, true)] {
                    let k = blocks * QK;
                    let (data, x) = case(&mut rng, blocks, stages, outliers);
                    let q = Q8Cols::quantize(&[&x], k);
                    let col = q.col(0);
                    // x̂ = d·m_g·q, as x = (x_re | x_im)
                    let m = k / 2;
                    let mut xq = vec![0.0f64; k];
                    for b in 0..blocks {
                        for e in 0..QC {
                            let step = f64::from(col.d[b]) * f64::from(col.mul[4 * b + e / 32]);
                            xq[b * QC + e] = step * f64::from(col.q[b * QK + e]);
                            xq[m + b * QC + e] = step * f64::from(col.q[b * QK + QC + e]);
                        }
                    }
                    let a = dequantize(&data, k, 2, stages);
                    let dot = |row: &[f64]| row.iter().zip(&xq).map(|(a, x)| a * x).sum::<f64>();
                    let want = (dot(&a[..k]), dot(&a[k..]));
                    let mag: f64 = a
                        .iter()
                        .zip(xq.iter().cycle())
                        .map(|(a, x)| (a * x).abs())
                        .sum();
                    let (u, w) = data.split_at(data.len() / 2);
                    let got = one(form, u, w, stages, col);
                    let tol = 1e-5 * mag + 1e-12;
                    assert!(
                        (f64::from(got.0) - want.0).abs() <= tol
                            && (f64::from(got.1) - want.1).abs() <= tol,
                        "{form:?} t={stages} blocks={blocks}: {got:?} vs {want:?}, tol {tol}"
                    );
                }
            }
        }
    }

    /// The multi-column kernel gives each column exactly what the one-column kernel gives it (and
    /// so what the scalar kernel gives it), in each form; blocks with and without group factors.
    #[test]
    fn q8_forms_many_columns_equal_one_at_a_time() {
        let mut rng = Rng::new(33);
        for form in forms() {
            for stages in 1..=4 {
                let blocks = 3;
                let k = blocks * QK;
                let data = random_f2i(&mut rng, k, 2, stages);
                let (u, w) = data.split_at(data.len() / 2);
                let xs: Vec<Vec<f32>> = (0..MAX_COLS)
                    .map(|c| {
                        (0..k)
                            .map(|i| {
                                rng.unit() * if c % 2 == 1 && i % 61 == 5 { 50.0 } else { 1.0 }
                            })
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
                let q = Q8Cols::quantize(&refs, k);
                let cols: Vec<Q8Col<'_>> = (0..q.len()).map(|c| q.col(c)).collect();
                for n in [2, 7, MAX_COLS] {
                    let mut out = vec![(f32::NAN, f32::NAN); n];
                    // SAFETY: NEON on aarch64 Linux; the form is checked; lengths agree.
                    unsafe { pair_dot_q8_cols_as(form, u, w, stages, &cols[..n], &mut out) };
                    for (c, got) in out.iter().enumerate() {
                        let want = q8::pair_dot(u, w, stages, cols[c]);
                        assert_eq!(*got, one(form, u, w, stages, cols[c]), "{form:?} col {c}");
                        assert_eq!(*got, want, "{form:?} t={stages} n={n} col {c} vs scalar");
                    }
                }
            }
        }
    }

    /// Sums at their largest: all codes equal, every activation ±127 in its group, group factors
    /// 8, 8, 8, 1 (three groups hold the block maximum, one has 1/8 of it): the 16-bit lanes of the
    /// `mull` form get their largest values. Bit-equal to the scalar kernel in each form.
    #[test]
    fn q8_forms_exact_at_the_largest_sums() {
        for form in forms() {
            for code in [0x00u8, 0x55, 0xaa, 0xff] {
                for sign in [1.0f32, -1.0] {
                    let (k, stages) = (2 * QK, 4);
                    let mut rng = Rng::new(u64::from(code) + 40);
                    let mut data = random_f2i(&mut rng, k, 2, stages);
                    for (i, byte) in data.iter_mut().enumerate() {
                        if i % STAGE_BYTES >= 4 {
                            *byte = code;
                        }
                    }
                    let m = k / 2;
                    let x: Vec<f32> = (0..k)
                        .map(|i| sign * if (i % m) % QC >= 96 { 0.125 } else { 1.0 })
                        .collect();
                    let q = Q8Cols::quantize(&[&x], k);
                    assert_eq!(q.col(0).mul[..4], [8, 8, 8, 1]);
                    assert!(q.col(0).q.iter().all(|&v| v.unsigned_abs() == 127));
                    let (u, w) = data.split_at(data.len() / 2);
                    let want = q8::pair_dot(u, w, stages, q.col(0));
                    assert_eq!(
                        one(form, u, w, stages, q.col(0)),
                        want,
                        "{form:?} code {code:#x}"
                    );
                }
            }
        }
    }

    /// `FAIRY2I_NEON_FORMS=mull` or `mull,sdot` (set by scripts/test for each emulated CPU): the
    /// detected forms must be exactly these, so a run cannot silently skip a form.
    #[test]
    fn detected_forms_are_the_expected_ones() {
        let got: Vec<&str> = forms().into_iter().map(Q8Form::name).collect();
        if let Ok(want) = std::env::var("FAIRY2I_NEON_FORMS") {
            assert_eq!(got.join(","), want.trim(), "FAIRY2I_NEON_FORMS");
        }
        assert_eq!(Q8Form::best(), Q8Form::available().last().copied().unwrap());
    }
}
