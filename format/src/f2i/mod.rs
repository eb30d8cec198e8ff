//! The F2I tensor types (`docs/format.md`) and the Fairy2i quantizer (`docs/quantizer.md`,
//! restating the official arithmetic of PKULab1806/Fairy2i-W2).
//!
//! Contract used by the converter and the backend; bodies are being written.

use crate::error::Result;

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
}

impl ScaleMode {
    /// The name written to `fairy2i.scale_mode` and accepted by `--scale-mode`.
    pub fn name(self) -> &'static str {
        match self {
            ScaleMode::Tensor => "tensor",
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
    pub bf16_rounding: bool,
    /// Optional importance per input column (length K), e.g. from an imatrix.
    pub importance: Option<&'a [f32]>,
}

/// Checks that a real matrix of `n_rows` rows of `k` inputs (ggml ne0 = k, ne1 = n_rows) fits F2I:
/// `k % 256 == 0`, `n_rows` even and non-zero.
pub fn check_shape(k: usize, n_rows: usize) -> Result<()> {
    let _ = (k, n_rows);
    todo!("f2i::check_shape")
}

/// Quantizes a real matrix (row-major, `n_rows` rows of `k` values; row = one output) into the bytes
/// of an F2I tensor with `opts.stages` stages (ggml type `f2i_w<stages>`, same ne0/ne1).
pub fn quantize_tensor(w: &[f32], k: usize, n_rows: usize, opts: &QuantOptions<'_>) -> Result<Vec<u8>> {
    let _ = (w, k, n_rows, opts);
    todo!("f2i::quantize_tensor")
}

/// Rebuilds the real f32 matrix (row-major, `n_rows` × `k`) from a whole F2I tensor's bytes: the exact
/// sum of the stages, then the inverse widely-linear split.
pub fn dequantize_tensor(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Result<Vec<f32>> {
    let _ = (data, k, n_rows, stages);
    todo!("f2i::dequantize_tensor")
}
