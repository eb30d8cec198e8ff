//! Rows of a source tensor (checkpoint bytes of any float dtype, optionally row-permuted) to the
//! bytes of a ggml tensor. Standard types are produced in parallel chunks of rows, so memory stays at
//! the output tensor plus one small f32 buffer per thread; F2I needs the whole f32 matrix (its rows
//! pair up).

use fairy2i_format::f2i::{self, QuantOptions, ScaleMode};
use fairy2i_format::{blocks, GgmlType};
use rayon::prelude::*;

use crate::hf::safetensors::SrcDtype;

/// Values per parallel task for the standard types.
const CHUNK_VALUES: usize = 1 << 16;

/// A matrix of `n_rows` rows of `ne0` elements in `data` (little-endian `dtype`); row `r` of the
/// result is source row `perm[r]` when a permutation is given.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    /// The source bytes.
    pub data: &'a [u8],
    /// Their element type.
    pub dtype: SrcDtype,
    /// Row length.
    pub ne0: usize,
    /// Number of rows.
    pub n_rows: usize,
    /// Optional row permutation.
    pub perm: Option<&'a [usize]>,
}

impl Rows<'_> {
    /// Decodes rows `first..first + out.len() / ne0` into `out`.
    fn decode(&self, first: usize, out: &mut [f32]) {
        let rb = self.ne0 * self.dtype.size();
        for (i, row) in out.chunks_mut(self.ne0.max(1)).enumerate() {
            let r = first + i;
            let src = self.perm.and_then(|p| p.get(r).copied()).unwrap_or(r);
            let bytes = self.data.get(src * rb..(src + 1) * rb).unwrap_or(&[]);
            self.dtype.decode(bytes, row);
        }
    }

    /// The whole matrix as f32 (row-permuted), decoded in parallel.
    pub fn to_f32(self) -> Vec<f32> {
        let mut out = vec![0f32; self.ne0 * self.n_rows];
        let rows_per_task = (CHUNK_VALUES / self.ne0.max(1)).max(1);
        out.par_chunks_mut(rows_per_task * self.ne0.max(1))
            .enumerate()
            .for_each(|(ci, chunk)| self.decode(ci * rows_per_task, chunk));
        out
    }
}

/// F2I settings (the importance also weights the k-quants).
#[derive(Debug, Clone, Copy)]
pub struct F2iSettings<'a> {
    /// Scale mode.
    pub mode: ScaleMode,
    /// Emulate the official code's bf16 rounding (bf16 sources).
    pub bf16_rounding: bool,
    /// Importance per input column (length ne0), from an imatrix; used by F2I and the k-quants.
    pub importance: Option<&'a [f32]>,
}

/// Encodes `rows` as a tensor of type `ty`.
pub fn encode(
    rows: &Rows<'_>,
    ty: GgmlType,
    f2i_settings: F2iSettings<'_>,
) -> fairy2i_format::Result<Vec<u8>> {
    if let Some(stages) = ty.f2i_stages() {
        let w = rows.to_f32();
        let opts = QuantOptions {
            stages,
            mode: f2i_settings.mode,
            bf16_rounding: f2i_settings.bf16_rounding,
            importance: f2i_settings.importance,
        };
        return f2i::quantize_tensor(&w, rows.ne0, rows.n_rows, &opts);
    }
    if !blocks::can_quantize(ty) {
        return Err(fairy2i_format::Error::UnsupportedConversion {
            from: "f32",
            to: ty.name(),
        });
    }
    let row_bytes = usize::try_from(ty.row_size(rows.ne0 as u64)?)
        .map_err(|_| fairy2i_format::Error::Overflow("row size"))?;
    let total = row_bytes
        .checked_mul(rows.n_rows)
        .ok_or(fairy2i_format::Error::Overflow("tensor size"))?;
    let mut out = vec![0u8; total];
    if total == 0 {
        return Ok(out);
    }
    let importance = f2i_settings
        .importance
        .filter(|_| blocks::can_quantize_weighted(ty));
    let rows_per_task = (CHUNK_VALUES / rows.ne0.max(1)).max(1);
    out.par_chunks_mut(rows_per_task * row_bytes)
        .enumerate()
        .try_for_each_init(Vec::new, |buf: &mut Vec<f32>, (ci, chunk)| {
            let n = chunk.len() / row_bytes;
            buf.clear();
            buf.resize(n * rows.ne0, 0.0);
            rows.decode(ci * rows_per_task, buf);
            if ty == GgmlType::F16 {
                // IEEE round to nearest even like `blocks` (and numpy), but with F16C when the CPU
                // has it (`half` detects it at run time).
                f32_to_f16_bytes(buf, chunk);
                return Ok(());
            }
            match importance {
                Some(qw) => blocks::quantize_weighted_into(ty, buf, qw, chunk),
                None => blocks::quantize_into(ty, buf, chunk),
            }
        })?;
    Ok(out)
}

/// f32 → little-endian IEEE half, round to nearest even, in slices of 4096 values.
fn f32_to_f16_bytes(src: &[f32], out: &mut [u8]) {
    use half::slice::HalfFloatSliceExt;
    let mut tmp = [half::f16::ZERO; 4096];
    for (x, o) in src.chunks(4096).zip(out.chunks_mut(2 * 4096)) {
        let t = &mut tmp[..x.len()];
        t.convert_from_f32_slice(x);
        for (h, b) in t.iter().zip(o.chunks_exact_mut(2)) {
            b.copy_from_slice(&h.to_bits().to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permuted_bf16_rows_to_f32_and_f16() {
        // 4 rows of 2 bf16 values: row r = [r, -r].
        let mut data = Vec::new();
        for r in 0..4u16 {
            for v in [r as f32, -(r as f32)] {
                data.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
            }
        }
        let perm = [0, 2, 1, 3];
        let rows = Rows {
            data: &data,
            dtype: SrcDtype::BF16,
            ne0: 2,
            n_rows: 4,
            perm: Some(&perm),
        };
        let settings = F2iSettings {
            mode: ScaleMode::Tensor,
            bf16_rounding: true,
            importance: None,
        };
        let f32s = encode(&rows, GgmlType::F32, settings).unwrap();
        let vals: Vec<f32> = f32s
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(vals, [0.0, -0.0, 2.0, -2.0, 1.0, -1.0, 3.0, -3.0]);
        let f16s = encode(&rows, GgmlType::F16, settings).unwrap();
        assert_eq!(f16s.len(), 16);
        assert_eq!(
            &f16s[4..6],
            &half::f16::from_f32(2.0).to_bits().to_le_bytes()
        );
    }

    #[test]
    fn fast_f16_matches_the_scalar_rounding() {
        // Ties, subnormals, overflow, tiny values, NaN and infinities.
        let mut vals = vec![
            0.0f32,
            -0.0,
            1.0,
            65504.0,
            65520.0,
            1e6,
            -1e6,
            6.0e-8,
            2.9e-8,
            3.0e-8,
            1e-10,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.000_488_3,
            1.001_464_8,
            5.960_464_5e-8,
        ];
        let mut s = 0x1234_5678u32;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let v = f32::from_bits(s);
            if !v.is_nan() {
                vals.push(v);
            }
        }
        let mut fast = vec![0u8; vals.len() * 2];
        f32_to_f16_bytes(&vals, &mut fast);
        let mut scalar = vec![0u8; vals.len() * 2];
        blocks::quantize_into(GgmlType::F16, &vals, &mut scalar).unwrap();
        assert_eq!(fast, scalar);
    }
}
