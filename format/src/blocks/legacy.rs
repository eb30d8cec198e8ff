//! The 32-value types Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (`block_q4_0` … `block_q8_0` in
//! `ggml-common.h`). In the 4- and 5-bit types byte `j` holds value `j` in its low nibble and value
//! `j + 16` in its high nibble; the 5th bits are bit `i` of the little-endian `qh`.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::{to_i32_like_numpy, BlockType};
use crate::types::GgmlType;

/// Values per Q4_0 block.
pub const QK4_0: usize = 32;
/// Values per Q4_1 block.
pub const QK4_1: usize = 32;
/// Values per Q5_0 block.
pub const QK5_0: usize = 32;
/// Values per Q5_1 block.
pub const QK5_1: usize = 32;
/// Values per Q8_0 block.
pub const QK8_0: usize = 32;

/// Q4_0: `x = d * (q - 8)`, q in 0..=15.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles.
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// Q4_1: `x = d * q + m`, q in 0..=15.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Nibbles.
    pub qs: [u8; QK4_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// Q5_0: `x = d * (q - 16)`, q in 0..=31.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// 5th bits (a little-endian u32).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_0 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

/// Q5_1: `x = d * q + m`, q in 0..=31.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// 5th bits (a little-endian u32).
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK5_1 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

/// Q8_0: `x = d * q`, q an i8.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK8_0],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// Splits a 32-value output into the values held by the low and the high nibbles.
fn halves(y: &mut [f32]) -> (&mut [f32], &mut [f32]) {
    y.split_at_mut(16)
}

impl BlockType for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;
    const BLCK_SIZE: usize = QK4_0;

    fn to_float(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let (lo, hi) = halves(y);
        for ((&q, lo), hi) in self.qs.iter().zip(lo).zip(hi) {
            *lo = d * (i32::from(q & 0x0f) - 8) as f32;
            *hi = d * (i32::from(q >> 4) - 8) as f32;
        }
    }

    /// `d = max / -8` where `max` is the first value of largest magnitude (the block's first value
    /// when all are zero, as gguf-py takes it); `q = min(15, trunc(x / d + 8.5))`.
    fn from_float_ref(x: &[f32]) -> Option<Self> {
        let first = *x.first()?;
        let (mut amax, mut max) = (first.abs(), first);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let code = |v: f32| (to_i32_like_numpy((v * id + 8.5).trunc()) as u8).min(15);
        let mut qs = [0u8; QK4_0 / 2];
        let (lo, hi) = x.split_at(QK4_0 / 2);
        for ((q, &a), &b) in qs.iter_mut().zip(lo).zip(hi) {
            *q = code(a) | (code(b) << 4);
        }
        Some(BlockQ4_0 {
            d: f16::from_f32(d),
            qs,
        })
    }
}

impl BlockType for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;
    const BLCK_SIZE: usize = QK4_1;

    fn to_float(&self, y: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let (lo, hi) = halves(y);
        for ((&q, lo), hi) in self.qs.iter().zip(lo).zip(hi) {
            *lo = d * f32::from(q & 0x0f) + m;
            *hi = d * f32::from(q >> 4) + m;
        }
    }
}

impl BlockType for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;
    const BLCK_SIZE: usize = QK5_0;

    fn to_float(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        let qh = u32::from_le_bytes(self.qh);
        let (lo, hi) = halves(y);
        for (j, ((&q, lo), hi)) in self.qs.iter().zip(lo).zip(hi).enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            *lo = d * ((u32::from(q & 0x0f) | h0) as i32 - 16) as f32;
            *hi = d * ((u32::from(q >> 4) | h1) as i32 - 16) as f32;
        }
    }
}

impl BlockType for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;
    const BLCK_SIZE: usize = QK5_1;

    fn to_float(&self, y: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        let qh = u32::from_le_bytes(self.qh);
        let (lo, hi) = halves(y);
        for (j, ((&q, lo), hi)) in self.qs.iter().zip(lo).zip(hi).enumerate() {
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            *lo = d * (u32::from(q & 0x0f) | h0) as f32 + m;
            *hi = d * (u32::from(q >> 4) | h1) as f32 + m;
        }
    }
}

impl BlockType for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;
    const BLCK_SIZE: usize = QK8_0;

    fn to_float(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (&q, y) in self.qs.iter().zip(y) {
            *y = f32::from(q) * d;
        }
    }

    /// `d = max|x| / 127`, `q = round(x / d)` (halves away from zero).
    fn from_float_ref(x: &[f32]) -> Option<Self> {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let mut qs = [0i8; QK8_0];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = to_i32_like_numpy((v * id).round()) as i8;
        }
        Some(BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        })
    }
}
