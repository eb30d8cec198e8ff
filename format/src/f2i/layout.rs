//! The F2I block layout (`docs/format.md` §3–§5): the 36-byte stage record, the 2-bit code packing of
//! ggml's TQ2_0 and the pairing of stored rows with the real matrix.

use half::f16;

use super::{QK_COMPLEX, STAGE_BYTES};

/// Code of +1 (real axis, positive).
pub const CODE_POS_RE: u8 = 0;
/// Code of +i (imaginary axis, positive).
pub const CODE_POS_IM: u8 = 1;
/// Code of −1 (real axis, negative).
pub const CODE_NEG_RE: u8 = 2;
/// Code of −i (imaginary axis, negative).
pub const CODE_NEG_IM: u8 = 3;

/// Bytes of the packed codes of one stage of one block (128 codes × 2 bits).
pub const QS_BYTES: usize = QK_COMPLEX / 4;

/// One stage of one F2I block: two ggml_half scales and 128 two-bit codes (`struct f2i_stage`).
///
/// Code c ∈ {0,1,2,3} stands for i^c; entry e of the block is `(qs[e % 32] >> (2 * (e / 32))) & 3`.
/// The stage value of entry e is +d_re, +i·d_im, −d_re or −i·d_im for c = 0, 1, 2, 3.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct F2iStage {
    /// Scale of the entries on the real axis (codes 0 and 2).
    pub d_re: f16,
    /// Scale of the entries on the imaginary axis (codes 1 and 3).
    pub d_im: f16,
    /// 128 codes, byte k holding entries k, k+32, k+64, k+96 (lowest bits first).
    pub qs: [u8; QS_BYTES],
}

const _: () = assert!(std::mem::size_of::<F2iStage>() == STAGE_BYTES);
const _: () = assert!(std::mem::align_of::<F2iStage>() == 2);

/// A block of `f2i_w1`: one stage record.
pub type BlockF2iW1 = [F2iStage; 1];
/// A block of `f2i_w2`: stage 1 then stage 2.
pub type BlockF2iW2 = [F2iStage; 2];
/// A block of `f2i_w3`.
pub type BlockF2iW3 = [F2iStage; 3];
/// A block of `f2i_w4`.
pub type BlockF2iW4 = [F2iStage; 4];

impl F2iStage {
    /// The code of entry `e` (0..128) of this stage; `e` is taken modulo 128.
    #[inline]
    pub fn code(&self, e: usize) -> u8 {
        let e = e % QK_COMPLEX;
        (self.qs[e % QS_BYTES] >> (2 * (e / QS_BYTES))) & 3
    }

    /// The complex value (re, im) of entry `e` of this stage, in f32 (exact: f16 widens exactly).
    #[inline]
    pub fn value(&self, e: usize) -> (f32, f32) {
        code_value(self.code(e), self.d_re.to_f32(), self.d_im.to_f32())
    }

    /// Reads a stage record from the first [`STAGE_BYTES`] of `bytes`, if there are that many.
    pub fn read(bytes: &[u8]) -> Option<F2iStage> {
        let b = bytes.get(..STAGE_BYTES)?;
        Some(bytemuck::pod_read_unaligned(b))
    }
}

/// The complex value (re, im) of `code` with scales `d_re`, `d_im`; off its axis a value is +0.
#[inline]
pub fn code_value(code: u8, d_re: f32, d_im: f32) -> (f32, f32) {
    match code & 3 {
        CODE_POS_RE => (d_re, 0.0),
        CODE_POS_IM => (0.0, d_im),
        CODE_NEG_RE => (-d_re, 0.0),
        _ => (0.0, -d_im),
    }
}

/// Packs 128 codes (only their low two bits are used) into the 32 bytes of [`F2iStage::qs`].
#[inline]
pub fn pack_codes(codes: &[u8; QK_COMPLEX]) -> [u8; QS_BYTES] {
    let mut qs = [0u8; QS_BYTES];
    for (p, group) in codes.chunks_exact(QS_BYTES).enumerate() {
        for (q, &c) in qs.iter_mut().zip(group) {
            *q |= (c & 3) << (2 * p);
        }
    }
    qs
}

/// Unpacks the 32 bytes of [`F2iStage::qs`] into 128 codes, the inverse of [`pack_codes`].
#[inline]
pub fn unpack_codes(qs: &[u8; QS_BYTES]) -> [u8; QK_COMPLEX] {
    let mut codes = [0u8; QK_COMPLEX];
    for (p, group) in codes.chunks_exact_mut(QS_BYTES).enumerate() {
        for (c, &q) in group.iter_mut().zip(qs) {
            *c = (q >> (2 * p)) & 3;
        }
    }
    codes
}

/// Which half of the widely-linear pair a stored row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The linear part U (stored rows 0..n).
    U,
    /// The conjugate-linear part W (stored rows n..2n).
    W,
}

impl Part {
    /// Both parts, U first (the order of the stored rows).
    pub const ALL: [Part; 2] = [Part::U, Part::W];

    /// "U" or "W".
    pub fn name(self) -> &'static str {
        match self {
            Part::U => "U",
            Part::W => "W",
        }
    }

    /// 0 for U, 1 for W.
    pub fn index(self) -> usize {
        match self {
            Part::U => 0,
            Part::W => 1,
        }
    }
}

/// The part and complex row held by stored row `row` of a tensor with `n_rows` real rows (`n = n_rows/2`):
/// row j < n holds `U[j]`, row n + j holds `W[j]`. `None` when `row >= n_rows`.
pub fn stored_row(row: usize, n_rows: usize) -> Option<(Part, usize)> {
    let n = n_rows / 2;
    if row >= 2 * n {
        None
    } else if row < n {
        Some((Part::U, row))
    } else {
        Some((Part::W, row - n))
    }
}

/// The two real input columns paired by complex entry `e` of block `b` of a row with `k` real inputs
/// (`m = k/2`): `(128b + e, m + 128b + e)`, the real and imaginary parts of complex input 128b + e.
pub fn block_inputs(k: usize, b: usize, e: usize) -> (usize, usize) {
    let col = QK_COMPLEX * b + e;
    (col, k / 2 + col)
}

/// Bytes of one stored row of `k` real inputs with `stages` stages.
pub fn row_bytes(k: usize, stages: usize) -> usize {
    k / super::QK_F2I * stages * STAGE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_follows_tq2_0() {
        // docs/format.md §4: byte k holds entries k, k+32, k+64, k+96, lowest bits first.
        let mut codes = [0u8; 128];
        codes[0] = 1;
        codes[32] = 2;
        codes[64] = 3;
        codes[96] = 1;
        codes[31] = 3;
        codes[127] = 2;
        let qs = pack_codes(&codes);
        assert_eq!(qs[0], 0b01_11_10_01);
        assert_eq!(qs[31], 0b10_00_00_11);
        assert!(qs[1..31].iter().all(|&b| b == 0));
        let stage = F2iStage {
            d_re: f16::from_f32(0.5),
            d_im: f16::from_f32(0.25),
            qs,
        };
        assert_eq!(stage.code(64), 3);
        assert_eq!(stage.value(64), (0.0, -0.25));
        assert_eq!(stage.value(32), (-0.5, 0.0));
        assert_eq!(stage.value(0), (0.0, 0.25));
        assert_eq!(stage.value(1), (0.5, 0.0));
        assert_eq!(unpack_codes(&qs), codes);
    }

    #[test]
    fn stage_bytes_are_little_endian_halves_then_codes() {
        let stage = F2iStage {
            d_re: f16::from_bits(0x1234),
            d_im: f16::from_bits(0xabcd),
            qs: [7; 32],
        };
        let bytes = bytemuck::bytes_of(&stage);
        assert_eq!(bytes.len(), 36);
        assert_eq!(&bytes[..4], &[0x34, 0x12, 0xcd, 0xab]);
        assert!(bytes[4..].iter().all(|&b| b == 7));
        assert_eq!(F2iStage::read(bytes), Some(stage));
        assert_eq!(F2iStage::read(&bytes[1..]), None);
    }

    #[test]
    fn rows_and_inputs_pair_as_specified() {
        assert_eq!(stored_row(0, 8), Some((Part::U, 0)));
        assert_eq!(stored_row(3, 8), Some((Part::U, 3)));
        assert_eq!(stored_row(4, 8), Some((Part::W, 0)));
        assert_eq!(stored_row(7, 8), Some((Part::W, 3)));
        assert_eq!(stored_row(8, 8), None);
        assert_eq!(block_inputs(1536, 0, 0), (0, 768));
        assert_eq!(block_inputs(1536, 2, 5), (261, 1029));
        assert_eq!(row_bytes(1536, 2), 6 * 72);
    }
}
