//! The F2I tensor types (`docs/format.md`) and the Fairy2i quantizer (`docs/quantizer.md`,
//! restating the official arithmetic of PKULab1806/Fairy2i-W2).
//!
//! One file per section of the math spec: [`split`] (§1 widely-linear split), [`phase`] (§2 PhaseQuant),
//! [`stages`] (§3 residual stages), [`round`] (§4 precision), [`dequant`] (the inverse); [`layout`] is
//! the block layout of `docs/format.md`.

use crate::error::{Error, Result};

mod block;
pub mod dequant;
mod joint;
pub mod layout;
pub mod phase;
pub mod round;
pub mod split;
pub mod stages;

pub use dequant::validate_tensor;
pub use layout::{
    code_value, pack_codes, unpack_codes, BlockF2iW1, BlockF2iW2, BlockF2iW3, BlockF2iW4, F2iStage,
    Part,
};
pub use phase::phase_code;
pub use round::round_bf16;
pub use stages::{quantize, Quantized, Scales};

/// Real weights per F2I block (128 complex entries).
pub const QK_F2I: usize = 256;
/// Complex entries per block.
pub const QK_COMPLEX: usize = 128;
/// Bytes of one stage record of a block.
pub const STAGE_BYTES: usize = 36;

/// How scales are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleMode {
    /// Paper-exact: the official quantizer's per-tensor scales (per U, per W, per stage), written into
    /// every block.
    #[default]
    Tensor,
    /// Per block (128 complex entries of one stored row) and stage: the same PhaseQuant codes, with each
    /// axis's scale fitted by least squares (the mean on-axis magnitude of the block's residual), stored
    /// as f16, then up to 16 rounds of per-stage Lloyd refinement. Same file format; much lower error
    /// than [`ScaleMode::Tensor`]. With `importance`, the scale fits minimise the weighted error.
    Block,
    /// [`ScaleMode::Block`], then a joint refinement of all stages of each block: every entry's codes of
    /// all stages chosen together (exhaustive over 4^t), and all 2t scales of the block refitted together
    /// by (weighted) least squares, alternated while the weighted error decreases. Same file format.
    Joint,
}

impl ScaleMode {
    /// The name written to `fairy2i.scale_mode` and accepted by `--scale-mode`.
    pub fn name(self) -> &'static str {
        match self {
            ScaleMode::Tensor => "tensor",
            ScaleMode::Block => "block",
            ScaleMode::Joint => "joint",
        }
    }
}

/// Options of [`quantize_tensor`].
#[derive(Debug, Clone, Default)]
pub struct QuantOptions<'a> {
    /// Residual stages, 1..=4.
    pub stages: usize,
    /// Scale mode.
    pub mode: ScaleMode,
    /// Emulate the bf16 rounding of the official code after every operation (right for bf16 sources).
    /// The input is then taken as bf16 (each value rounded to bf16 first, a no-op for bf16 sources).
    pub bf16_rounding: bool,
    /// Optional importance per real input column (length K, finite, ≥ 0), e.g. the mean squared
    /// activation from an imatrix. [`ScaleMode::Block`] and [`ScaleMode::Joint`] minimise the error
    /// weighted by it (`docs/quantizer.md` §10); [`ScaleMode::Tensor`] (the official quantizer) checks it
    /// and does not use it.
    pub importance: Option<&'a [f32]>,
}

/// Checks that a real matrix of `n_rows` rows of `k` inputs (ggml ne0 = k, ne1 = n_rows) fits F2I:
/// `k % 256 == 0`, `n_rows` even and non-zero.
pub fn check_shape(k: usize, n_rows: usize) -> Result<()> {
    if k == 0 || !k.is_multiple_of(QK_F2I) {
        return Err(Error::F2iShape(format!(
            "F2I needs a row length that is a non-zero multiple of {QK_F2I}, got {k}"
        )));
    }
    if n_rows == 0 || !n_rows.is_multiple_of(2) {
        return Err(Error::F2iShape(format!(
            "F2I needs an even, non-zero number of rows (outputs), got {n_rows}"
        )));
    }
    Ok(())
}

/// Quantizes a real matrix (row-major, `n_rows` rows of `k` values; row = one output) into the bytes
/// of an F2I tensor with `opts.stages` stages (ggml type `f2i_w<stages>`, same ne0/ne1), with the scales
/// of `opts.mode`.
pub fn quantize_tensor(
    w: &[f32],
    k: usize,
    n_rows: usize,
    opts: &QuantOptions<'_>,
) -> Result<Vec<u8>> {
    check_shape(k, n_rows)?;
    match opts.mode {
        ScaleMode::Tensor => quantize(w, k, n_rows, opts)?.to_f2i_bytes(),
        ScaleMode::Block | ScaleMode::Joint => block::quantize_block(w, k, n_rows, opts),
    }
}

/// Rebuilds the real f32 matrix (row-major, `n_rows` × `k`) from a whole F2I tensor's bytes: the exact
/// sum of the stages, then the inverse widely-linear split.
pub fn dequantize_tensor(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Result<Vec<f32>> {
    dequant::dequantize(data, k, n_rows, stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked() {
        check_shape(256, 2).unwrap();
        check_shape(8960, 1536).unwrap();
        for (k, n) in [(0, 2), (128, 2), (300, 2), (256, 0), (256, 3)] {
            let e = check_shape(k, n).unwrap_err();
            assert!(matches!(e, Error::F2iShape(_)), "{k} {n}: {e}");
        }
        let e = quantize_tensor(&[0.0; 16], 8, 2, &QuantOptions::default()).unwrap_err();
        assert!(e.to_string().contains("multiple of 256"), "{e}");
    }

    #[test]
    fn quantize_then_dequantize_round_trips_the_layout() {
        let (k, rows) = (512, 6);
        let a: Vec<f32> = (0..k * rows)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 4096.0)
            .collect();
        for stages in 1..=4 {
            let opts = QuantOptions {
                stages,
                bf16_rounding: true,
                ..Default::default()
            };
            let q = quantize(&a, k, rows, &opts).unwrap();
            let bytes = quantize_tensor(&a, k, rows, &opts).unwrap();
            assert_eq!(bytes.len(), rows * (k / 256) * stages * 36);
            assert_eq!(bytes, q.to_f2i_bytes().unwrap());
            let back = dequantize_tensor(&bytes, k, rows, stages).unwrap();
            assert_eq!(back, q.dequantize());
            // Stored row 1 is U[1]; its block 1, stage 1 holds codes of entries 128..256 of U[1].
            let rec = F2iStage::read(&bytes[(k / 256 * stages + stages) * 36..]).unwrap();
            let codes = &q.codes(0, Part::U)[(k / 2) + 128..(k / 2) + 256];
            assert_eq!(&unpack_codes(&rec.qs)[..], codes);
            let s = q.scales(0, Part::U).unwrap();
            assert_eq!((rec.d_re, rec.d_im), s.to_f16());
        }
    }
}
