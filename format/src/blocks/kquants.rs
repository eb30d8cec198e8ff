//! The k-quants Q2_K … Q6_K (`block_q2_K` … `block_q6_K` in `ggml-common.h`): 256-value super-blocks
//! of 16- or 32-value sub-blocks, each with a small integer scale (and min) relative to `d` (`dmin`).
//! Only dequantization: the k-quant reference quantizers search per sub-block, and gguf-py (our
//! reference) does not implement them.

use bytemuck::{Pod, Zeroable};
use half::f16;

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
