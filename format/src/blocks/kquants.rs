//! The k-quants Q2_K … Q6_K (`block_q2_K` … `block_q6_K` in `ggml-common.h`): 256-value super-blocks
//! of 16- or 32-value sub-blocks, each with a small integer scale (and min) relative to `d` (`dmin`).
//! Both directions: the encoders are ggml's reference quantizers (`quantize_row_<t>_ref`, what
//! llama-quantize runs without an imatrix) and its imatrix-weighted ones (`quantize_row_<t>_impl`),
//! restated from their formulas (the scale searches are in `ksearch.rs`); `tests/kquants_golden.rs`
//! and the end-to-end test `kquants_llama_quantize` check them byte for byte against llama-quantize.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::ksearch::{
    fp16, make_q3_quants, make_qkx_quants, make_qp_quants, make_qx_quants, nearest_int, Grid, Qkx,
    GROUP_MAX_EPS,
};
use super::BlockType;
use crate::types::GgmlType;

/// Values per k-quant super-block.
pub const QK_K: usize = 256;
/// Bytes of the packed 6-bit scales and mins of Q4_K and Q5_K (and of Q3_K's 6-bit scales).
pub const K_SCALE_SIZE: usize = 12;

/// Q2_K: 16 sub-blocks of 16; `x = d * (sc & 15) * q - dmin * (sc >> 4)`, q in 0..=3.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ2_K {
    /// Per sub-block: scale (low nibble) and min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit codes.
    pub qs: [u8; QK_K / 4],
    /// Scale of the scales.
    pub d: f16,
    /// Scale of the mins.
    pub dmin: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == 84);

/// Q3_K: 16 sub-blocks of 16; `x = d * (sc - 32) * (q - 4 * !hbit)`, q in 0..=3.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ3_K {
    /// High bits (set means no offset of -4).
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits.
    pub qs: [u8; QK_K / 4],
    /// 16 packed 6-bit scales.
    pub scales: [u8; K_SCALE_SIZE],
    /// Scale of the scales.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == 110);

/// Q4_K: 8 sub-blocks of 32; `x = d * sc * q - dmin * m`, q in 0..=15.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_K {
    /// Scale of the scales.
    pub d: f16,
    /// Scale of the mins.
    pub dmin: f16,
    /// 8 packed 6-bit scales and 8 mins.
    pub scales: [u8; K_SCALE_SIZE],
    /// Nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == 144);

/// Q5_K: 8 sub-blocks of 32; `x = d * sc * q - dmin * m`, q in 0..=31.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_K {
    /// Scale of the scales.
    pub d: f16,
    /// Scale of the mins.
    pub dmin: f16,
    /// 8 packed 6-bit scales and 8 mins.
    pub scales: [u8; K_SCALE_SIZE],
    /// 5th bits.
    pub qh: [u8; QK_K / 8],
    /// Low nibbles.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == 176);

/// Q6_K: 16 sub-blocks of 16; `x = d * sc * (q - 32)`, q in 0..=63, sc an i8.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ6_K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Scale of the scales.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == 210);

impl BlockType for BlockQ2_K {
    const TYPE: GgmlType = GgmlType::Q2_K;
    const BLCK_SIZE: usize = QK_K;

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        (x.len() == QK_K).then(|| q2k_ref(x))
    }

    fn from_float_weighted(x: &[f32], qw: &[f32]) -> Option<Self> {
        (x.len() == QK_K && qw.len() == QK_K).then(|| q2k_weighted(x, qw))
    }

    /// Value `128 h + 32 s + l` is bits `2s..2s+2` of `qs[32 h + l]`, in sub-block `8 h + 2 s + l / 16`.
    fn to_float(&self, y: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        let mut sub = y.chunks_exact_mut(16).zip(self.scales);
        for qs in self.qs.chunks_exact(32) {
            for s in 0..4 {
                for part in qs.chunks_exact(16) {
                    let Some((y, sc)) = sub.next() else { return };
                    let dl = d * f32::from(sc & 0x0f);
                    let ml = dmin * f32::from(sc >> 4);
                    for (&q, y) in part.iter().zip(y) {
                        *y = dl * f32::from((q >> (2 * s)) & 3) - ml;
                    }
                }
            }
        }
    }
}

/// Q3_K's 16 signed 6-bit scales: low 4 bits are nibble `i / 8` of `scales[i % 8]`, high 2 bits are
/// bits `2 (i / 4)..` of `scales[8 + i % 4]`.
fn q3k_scales(s: &[u8; K_SCALE_SIZE]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let lo = (s[i % 8] >> (4 * (i / 8))) & 0x0f;
        let hi = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        *o = i32::from(lo | (hi << 4)) - 32;
    }
    out
}

impl BlockType for BlockQ3_K {
    const TYPE: GgmlType = GgmlType::Q3_K;
    const BLCK_SIZE: usize = QK_K;

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        (x.len() == QK_K).then(|| q3k_ref(x))
    }

    fn from_float_weighted(x: &[f32], qw: &[f32]) -> Option<Self> {
        (x.len() == QK_K && qw.len() == QK_K).then(|| q3k_weighted(x, qw))
    }

    /// Value `128 h + 32 s + l` is bits `2s..2s+2` of `qs[32 h + l]` with high bit `4 h + s` of
    /// `hmask[l]`, in sub-block `8 h + 2 s + l / 16`.
    fn to_float(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let scales = q3k_scales(&self.scales);
        let mut sub = y.chunks_exact_mut(16).zip(scales);
        for (h, qs) in self.qs.chunks_exact(32).enumerate() {
            for s in 0..4 {
                let bit = 4 * h + s;
                for (qs, hm) in qs.chunks_exact(16).zip(self.hmask.chunks_exact(16)) {
                    let Some((y, sc)) = sub.next() else { return };
                    let dl = d * sc as f32;
                    for ((&q, &m), y) in qs.iter().zip(hm).zip(y) {
                        let low = i32::from((q >> (2 * s)) & 3);
                        let offset = if (m >> bit) & 1 == 1 { 0 } else { 4 };
                        *y = dl * (low - offset) as f32;
                    }
                }
            }
        }
    }
}

/// Q4_K's and Q5_K's 6-bit scale and min of sub-block `j` (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

impl BlockType for BlockQ4_K {
    const TYPE: GgmlType = GgmlType::Q4_K;
    const BLCK_SIZE: usize = QK_K;

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        (x.len() == QK_K).then(|| {
            let (l, scales, d, dmin) = k4_ref(
                x,
                15,
                Grid {
                    rmin: -1.0,
                    rdelta: 0.1,
                    nstep: 20,
                },
            );
            q4k_pack(&l, scales, d, dmin)
        })
    }

    fn from_float_weighted(x: &[f32], qw: &[f32]) -> Option<Self> {
        (x.len() == QK_K && qw.len() == QK_K).then(|| {
            let (l, scales, d, dmin) = k4_weighted(x, qw, 15, false);
            q4k_pack(&l, scales, d, dmin)
        })
    }

    /// Value `64 c + 32 k + l` is nibble `k` of `qs[32 c + l]`, in sub-block `2 c + k`.
    fn to_float(&self, y: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (c, (qs, y)) in self
            .qs
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            for (k, y) in y.chunks_exact_mut(32).enumerate() {
                let (sc, m) = scale_min_k4(2 * c + k, &self.scales);
                let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
                for (&q, y) in qs.iter().zip(y) {
                    *y = dl * f32::from((q >> (4 * k)) & 0x0f) - ml;
                }
            }
        }
    }
}

impl BlockType for BlockQ5_K {
    const TYPE: GgmlType = GgmlType::Q5_K;
    const BLCK_SIZE: usize = QK_K;

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        (x.len() == QK_K).then(|| {
            let (l, scales, d, dmin) = k4_ref(
                x,
                31,
                Grid {
                    rmin: -0.5,
                    rdelta: 0.1,
                    nstep: 15,
                },
            );
            q5k_pack(&l, scales, d, dmin)
        })
    }

    fn from_float_weighted(x: &[f32], qw: &[f32]) -> Option<Self> {
        (x.len() == QK_K && qw.len() == QK_K).then(|| {
            let (l, scales, d, dmin) = k4_weighted(x, qw, 31, true);
            q5k_pack(&l, scales, d, dmin)
        })
    }

    /// As Q4_K, plus the 5th bit of value `32 j + l`: bit `j` of `qh[l]`.
    fn to_float(&self, y: &mut [f32]) {
        let (d, dmin) = (self.d.to_f32(), self.dmin.to_f32());
        for (c, (qs, y)) in self
            .qs
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            for (k, y) in y.chunks_exact_mut(32).enumerate() {
                let j = 2 * c + k;
                let (sc, m) = scale_min_k4(j, &self.scales);
                let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
                for ((&q, &h), y) in qs.iter().zip(&self.qh).zip(y) {
                    let v = ((q >> (4 * k)) & 0x0f) | (((h >> j) & 1) << 4);
                    *y = dl * f32::from(v) - ml;
                }
            }
        }
    }
}

impl BlockType for BlockQ6_K {
    const TYPE: GgmlType = GgmlType::Q6_K;
    const BLCK_SIZE: usize = QK_K;

    fn from_float_ref(x: &[f32]) -> Option<Self> {
        (x.len() == QK_K).then(|| q6k(x, None))
    }

    fn from_float_weighted(x: &[f32], qw: &[f32]) -> Option<Self> {
        (x.len() == QK_K && qw.len() == QK_K).then(|| q6k(x, Some(qw)))
    }

    /// Value `128 h + 32 s + l`: low bits are nibble `s / 2` of `ql[64 h + 32 (s % 2) + l]`, high bits
    /// are bits `2s..2s+2` of `qh[32 h + l]`; sub-block `8 h + 2 s + l / 16`.
    fn to_float(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let mut scales = self.scales.iter();
        for ((ql, qh), y) in self
            .ql
            .chunks_exact(64)
            .zip(self.qh.chunks_exact(32))
            .zip(y.chunks_exact_mut(128))
        {
            for (s, y) in y.chunks_exact_mut(32).enumerate() {
                let lo = &ql[32 * (s % 2)..32 * (s % 2) + 32];
                for ((lo, hi), y) in lo
                    .chunks_exact(16)
                    .zip(qh.chunks_exact(16))
                    .zip(y.chunks_exact_mut(16))
                {
                    let Some(&sc) = scales.next() else { return };
                    let dl = d * f32::from(sc);
                    for ((&l, &h), y) in lo.iter().zip(hi).zip(y) {
                        let q = ((l >> (4 * (s / 2))) & 0x0f) | (((h >> (2 * s)) & 3) << 4);
                        *y = dl * (i32::from(q) - 32) as f32;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoders. Each takes one super-block `x` (QK_K values) and, for the imatrix path, the importance
// `qw` of those QK_K values (the imatrix entries of the columns they sit in).

/// The shared last step of Q2_K and Q3_K: codes `l[i]` (2 bits each) packed four to a byte, byte
/// `32 h + k` holding values `128 h + k + 32 s` at bits `2 s`.
fn pack_2bit(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for (qs, l) in qs.chunks_exact_mut(32).zip(l.chunks_exact(128)) {
        for (k, q) in qs.iter_mut().enumerate() {
            *q = l[k] | (l[k + 32] << 2) | (l[k + 64] << 4) | (l[k + 96] << 6);
        }
    }
    qs
}

/// Q2_K's last steps, shared by both encoders: with the block's `d`, `dmin` and packed `scales`
/// fixed, each value's code is recomputed as `round((x + dmin·m) / (d·s))` clamped to 0..=3 (sub-blocks
/// whose step is 0 keep their search codes).
fn q2k_finish(x: &[f32], mut l: [u8; QK_K], scales: [u8; 16], d: f16, dmin: f16) -> BlockQ2_K {
    let (df, mf) = (d.to_f32(), dmin.to_f32());
    for (j, &sc) in scales.iter().enumerate() {
        let step = df * f32::from(sc & 0x0f);
        if step == 0.0 {
            continue;
        }
        let m = mf * f32::from(sc >> 4);
        for i in 16 * j..16 * j + 16 {
            l[i] = nearest_int((x[i] + m) / step).clamp(0, 3) as u8;
        }
    }
    BlockQ2_K {
        scales,
        qs: pack_2bit(&l),
        d,
        dmin,
    }
}

/// ggml's `quantize_row_q2_K_ref` for one block: per 16 values an asymmetric 2-bit fit weighted by
/// |x| with absolute error, then the 16 scales and 16 mins each quantized to 4 bits against their
/// maximum.
fn q2k_ref(x: &[f32]) -> BlockQ2_K {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    let grid = Grid {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
    };
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let mut w = [0f32; 16];
        for (w, v) in w.iter_mut().zip(xs) {
            *w = v.abs();
        }
        let (s, m) = make_qkx_quants(
            3,
            xs,
            &w,
            &mut l[16 * j..16 * j + 16],
            grid,
            Qkx::V2 { mad: true },
        );
        (scales[j], mins[j]) = (s, m);
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let mut packed = [0u8; 16];
    let d = if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (p, &s) in packed.iter_mut().zip(&scales) {
            *p = nearest_int(iscale * s) as u8;
        }
        fp16(max_scale / 15.0)
    } else {
        fp16(0.0)
    };
    let dmin = if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (p, &m) in packed.iter_mut().zip(&mins) {
            *p |= (nearest_int(iscale * m) << 4) as u8;
        }
        fp16(max_min / 15.0)
    } else {
        fp16(0.0)
    };
    q2k_finish(x, l, packed, d, dmin)
}

/// `sqrt(sigma2 + x²)`-scaled importance of the imatrix quantizers: `qw[i] · sqrt(sigma2 + x[i]²)`,
/// and the sum of each `n`-value group of it.
fn imatrix_weights<const N: usize>(x: &[f32], qw: &[f32], sigma2: f32) -> ([f32; QK_K], [f32; N]) {
    let mut w = [0f32; QK_K];
    for i in 0..QK_K {
        w[i] = qw[i] * (sigma2 + x[i] * x[i]).sqrt();
    }
    let mut sw = [0f32; N];
    for (s, g) in sw.iter_mut().zip(w.chunks_exact(QK_K / N)) {
        for &v in g {
            *s += v;
        }
    }
    (w, sw)
}

/// Σ x² over the block, in order.
fn sum_sq(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// ggml's `quantize_row_q2_K_impl` (imatrix) for one block: per 16 values an asymmetric fit weighted
/// by `qw · sqrt(σ² + x²)`, then scales and mins each fitted to 4 bits by [`make_qp_quants`].
fn q2k_weighted(x: &[f32], qw: &[f32]) -> BlockQ2_K {
    let sigma2 = sum_sq(x) / QK_K as f32;
    let (w, sw) = imatrix_weights::<16>(x, qw, sigma2);
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    let grid = Grid {
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
    };
    for j in 0..16 {
        let r = 16 * j..16 * j + 16;
        (scales[j], mins[j]) =
            make_qkx_quants(3, &x[r.clone()], &w[r.clone()], &mut l[r], grid, Qkx::V3);
    }
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    let mut packed = [0u8; 16];
    for ((p, &s), &m) in packed.iter_mut().zip(&ls).zip(&lm) {
        *p = s | (m << 4);
    }
    q2k_finish(x, l, packed, fp16(dm), fp16(mm))
}

/// Q3_K's 6-bit scale `l` (0..=63) of sub-block `j` into the packed bytes (inverse of
/// `q3k_scales`); `s` starts zeroed.
fn pack_q3k_scale(s: &mut [u8; K_SCALE_SIZE], j: usize, l: u8) {
    if j < 8 {
        s[j] = l & 0x0f;
    } else {
        s[j - 8] |= (l & 0x0f) << 4;
    }
    s[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
}

/// Q3_K's last steps, shared by both encoders: codes recomputed against the packed scales and `d`
/// (`round(x / (d·s))` clamped to −4..=3; zero steps keep the search codes, already offset by 4),
/// then split into the high-bit mask and the low 2 bits.
fn q3k_finish(x: &[f32], search: [i8; QK_K], scales: [u8; K_SCALE_SIZE], d: f16) -> BlockQ3_K {
    let mut l = [0u8; QK_K];
    for (o, &c) in l.iter_mut().zip(&search) {
        *o = c as u8;
    }
    let df = d.to_f32();
    for (j, &sc) in q3k_scales(&scales).iter().enumerate() {
        let step = df * sc as f32;
        if step == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / step).clamp(-4, 3) + 4) as u8;
        }
    }
    let mut hmask = [0u8; QK_K / 8];
    for (i, v) in l.iter_mut().enumerate() {
        if *v > 3 {
            hmask[i % 32] |= 1 << (i / 32);
            *v -= 4;
        }
    }
    BlockQ3_K {
        hmask,
        qs: pack_2bit(&l),
        scales,
        d,
    }
}

/// ggml's `quantize_row_q3_K_ref` for one block: per 16 values a symmetric 3-bit fit
/// ([`make_q3_quants`]), then the 16 scales to 6 bits against the one of largest magnitude.
fn q3k_ref(x: &[f32]) -> BlockQ3_K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for (j, s) in scales.iter_mut().enumerate() {
        *s = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        if s.abs() > amax {
            amax = s.abs();
            max_scale = *s;
        }
    }
    let mut packed = [0u8; K_SCALE_SIZE];
    let d = if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            let q = i32::from(nearest_int(iscale * s) as i8);
            pack_q3k_scale(&mut packed, j, (q.clamp(-32, 31) + 32) as u8);
        }
        fp16(1.0 / iscale)
    } else {
        fp16(0.0)
    };
    q3k_finish(x, l, packed, d)
}

/// ggml's `quantize_row_q3_K_impl` (imatrix) for one block: per 16 values a symmetric fit weighted by
/// `qw · sqrt(σ² + x²)` ([`make_qx_quants`]), then the scales fitted the same way (6 bits, weighted
/// by each sub-block's total weight).
fn q3k_weighted(x: &[f32], qw: &[f32]) -> BlockQ3_K {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let (w, sw) = imatrix_weights::<16>(x, qw, sigma2);
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    for (j, s) in scales.iter_mut().enumerate() {
        let r = 16 * j..16 * j + 16;
        *s = make_qx_quants(4, &x[r.clone()], &mut l[r.clone()], Some(&w[r]));
    }
    let mut ls = [0i8; 16];
    let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
    let mut packed = [0u8; K_SCALE_SIZE];
    for (j, &q) in ls.iter().enumerate() {
        pack_q3k_scale(&mut packed, j, q as u8);
    }
    q3k_finish(x, l, packed, fp16(d_block))
}

/// Q4_K's and Q5_K's 6-bit scale `ls` and min `lm` of sub-block `j` into the packed bytes (inverse of
/// [`scale_min_k4`]); call for j = 0..8 in order.
fn pack_scale_min_k4(s: &mut [u8; K_SCALE_SIZE], j: usize, ls: u8, lm: u8) {
    if j < 4 {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
        s[j - 4] |= (ls >> 4) << 6;
        s[j] |= (lm >> 4) << 6;
    }
}

/// Q4_K's and Q5_K's code recomputation: `round((x + dmin·m) / (d·sc))` clamped to 0..=nmax per
/// 32-value sub-block (zero steps keep the search codes).
fn k4_requantize(
    x: &[f32],
    l: &mut [u8; QK_K],
    scales: &[u8; K_SCALE_SIZE],
    d: f16,
    dmin: f16,
    nmax: i32,
) {
    let (df, mf) = (d.to_f32(), dmin.to_f32());
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, scales);
        let step = df * f32::from(sc);
        if step == 0.0 {
            continue;
        }
        let dm = mf * f32::from(m);
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / step).clamp(0, nmax) as u8;
        }
    }
}

/// The reference search of Q4_K and Q5_K (`quantize_row_q{4,5}_K_ref`): per 32 values an asymmetric
/// fit weighted by `rms(x) + |x|`, then scales and mins to 6 bits against their maxima. Returns the
/// codes, packed scales, d and dmin.
fn k4_ref(x: &[f32], nmax: i32, grid: Grid) -> ([u8; QK_K], [u8; K_SCALE_SIZE], f16, f16) {
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let av_x = (sum_sq(xs) / 32.0).sqrt();
        let mut w = [0f32; 32];
        for (w, v) in w.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx_quants(
            nmax,
            xs,
            &w,
            &mut l[32 * j..32 * j + 32],
            grid,
            Qkx::V2 { mad: false },
        );
        (scales[j], mins[j]) = (s, m);
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        pack_scale_min_k4(&mut packed, j, ls, lm);
    }
    let (d, dmin) = (fp16(max_scale / 63.0), fp16(max_min / 63.0));
    k4_requantize(x, &mut l, &packed, d, dmin, nmax);
    (l, packed, d, dmin)
}

/// The imatrix search of Q4_K and Q5_K (`quantize_row_q{4,5}_K_impl`): per 32 values an asymmetric
/// fit weighted by `qw · sqrt(σ² + x²)`, scales and mins fitted to 6 bits by [`make_qp_quants`]
/// (Q5_K clamps them to 63 as ggml does; Q4_K stores them as they come).
fn k4_weighted(
    x: &[f32],
    qw: &[f32],
    nmax: i32,
    clamp63: bool,
) -> ([u8; QK_K], [u8; K_SCALE_SIZE], f16, f16) {
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let (w, sw) = imatrix_weights::<8>(x, qw, sigma2);
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let grid = Grid {
        rmin: -0.9,
        rdelta: 0.05,
        nstep: 36,
    };
    for j in 0..QK_K / 32 {
        let r = 32 * j..32 * j + 32;
        (scales[j], mins[j]) =
            make_qkx_quants(nmax, &x[r.clone()], &w[r.clone()], &mut l[r], grid, Qkx::V3);
    }
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..QK_K / 32 {
        let (s, m) = if clamp63 {
            (ls[j].min(63), lm[j].min(63))
        } else {
            (ls[j], lm[j])
        };
        pack_scale_min_k4(&mut packed, j, s, m);
    }
    let (d, dmin) = (fp16(d_block), fp16(m_block));
    k4_requantize(x, &mut l, &packed, d, dmin, nmax);
    (l, packed, d, dmin)
}

fn q4k_pack(l: &[u8; QK_K], scales: [u8; K_SCALE_SIZE], d: f16, dmin: f16) -> BlockQ4_K {
    let mut qs = [0u8; QK_K / 2];
    for (q, l) in qs.chunks_exact_mut(32).zip(l.chunks_exact(64)) {
        for (k, q) in q.iter_mut().enumerate() {
            *q = l[k] | (l[k + 32] << 4);
        }
    }
    BlockQ4_K {
        d,
        dmin,
        scales,
        qs,
    }
}

fn q5k_pack(l: &[u8; QK_K], scales: [u8; K_SCALE_SIZE], d: f16, dmin: f16) -> BlockQ5_K {
    let mut qs = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 8];
    for (c, (q, l)) in qs.chunks_exact_mut(32).zip(l.chunks_exact(64)).enumerate() {
        let (m1, m2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for (k, q) in q.iter_mut().enumerate() {
            let (mut l1, mut l2) = (l[k], l[k + 32]);
            if l1 > 15 {
                l1 -= 16;
                qh[k] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                qh[k] |= m2;
            }
            *q = l1 | (l2 << 4);
        }
    }
    BlockQ5_K {
        d,
        dmin,
        scales,
        qh,
        qs,
    }
}

/// Q6_K for one block (`quantize_row_q6_K_ref`, or `_impl` with `qw`): per 16 values a symmetric
/// 6-bit fit ([`make_qx_quants`], weighted by x² or by the importance), the 16 scales to signed 8 bits
/// against the one of largest magnitude, codes recomputed against them.
fn q6k(x: &[f32], qw: Option<&[f32]>) -> BlockQ6_K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for (j, s) in scales.iter_mut().enumerate() {
        let r = 16 * j..16 * j + 16;
        *s = make_qx_quants(32, &x[r.clone()], &mut l[r.clone()], qw.map(|q| &q[r]));
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = *s;
        }
    }
    if max_abs < GROUP_MAX_EPS {
        return BlockQ6_K {
            d: fp16(0.0),
            ..bytemuck::Zeroable::zeroed()
        };
    }
    let iscale = -128.0 / max_scale;
    let d = fp16(1.0 / iscale);
    let mut sc = [0i8; 16];
    for (q, &s) in sc.iter_mut().zip(&scales) {
        *q = nearest_int(iscale * s).min(127) as i8;
    }
    let df = d.to_f32();
    for (j, &q) in sc.iter().enumerate() {
        let step = df * f32::from(q);
        if step == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            l[i] = (nearest_int(x[i] / step).clamp(-32, 31) + 32) as i8;
        }
    }
    let mut ql = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 4];
    for ((ql, qh), l) in ql
        .chunks_exact_mut(64)
        .zip(qh.chunks_exact_mut(32))
        .zip(l.chunks_exact(128))
    {
        for k in 0..32 {
            let c = |o: usize| l[k + o] as u8;
            ql[k] = (c(0) & 0x0f) | ((c(64) & 0x0f) << 4);
            ql[k + 32] = (c(32) & 0x0f) | ((c(96) & 0x0f) << 4);
            qh[k] = (c(0) >> 4) | ((c(32) >> 4) << 2) | ((c(64) >> 4) << 4) | ((c(96) >> 4) << 6);
        }
    }
    BlockQ6_K {
        ql,
        qh,
        scales: sc,
        d,
    }
}
