//! TQ2_0, the 2-bit ternary type (`block_tq2_0` in `ggml-common.h`): codes 0..=2 stand for -1, 0, 1.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::kquants::QK_K;
use super::BlockType;
use crate::types::GgmlType;

/// TQ2_0: 256 values as 2-bit codes; byte `m` of each 32-byte chunk holds the values `m`, `m + 32`,
/// `m + 64`, `m + 96` of that chunk's 128, low bits first.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BlockTQ2_0 {
    /// Codes.
    pub qs: [u8; QK_K / 4],
    /// Scale.
    pub d: f16,
}
const _: () = assert!(std::mem::size_of::<BlockTQ2_0>() == 66);

impl BlockType for BlockTQ2_0 {
    const TYPE: GgmlType = GgmlType::TQ2_0;
    const BLCK_SIZE: usize = QK_K;

    fn to_float(&self, y: &mut [f32]) {
        let d = self.d.to_f32();
        for (qs, y) in self.qs.chunks_exact(32).zip(y.chunks_exact_mut(128)) {
            for (s, y) in y.chunks_exact_mut(32).enumerate() {
                for (&q, y) in qs.iter().zip(y) {
                    let c = i32::from((q >> (2 * s)) & 3) - 1;
                    *y = d * c as f32;
                }
            }
        }
    }
}
