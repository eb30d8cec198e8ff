//! Dequantization (`docs/quantizer.md` §5, `docs/format.md` §4 "Meaning"): the exact sum of the stages of each
//! complex entry, then the inverse widely-linear split, rounded once to f32.
//!
//! Every stage value is ±d with d an f16, so the sum of up to four of them and the inverse split are
//! exact in f64 (at most ~43 significant bits); the only rounding is the final one to f32.

use rayon::prelude::*;

use super::layout::{row_bytes, unpack_codes, F2iStage, QS_BYTES};
use super::split::merge_entry;
use super::{check_shape, QK_COMPLEX, STAGE_BYTES};
use crate::error::{Error, Result};

/// Checks the stage count (1..=4) and the byte size of an F2I tensor; returns the bytes of one row.
fn check_data(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Result<usize> {
    check_shape(k, n_rows)?;
    if !(1..=4).contains(&stages) {
        return Err(Error::F2iStages(stages));
    }
    let rb = row_bytes(k, stages);
    let expected = rb
        .checked_mul(n_rows)
        .ok_or(Error::Overflow("F2I tensor size"))?;
    if data.len() != expected {
        return Err(Error::F2iDataSize {
            expected,
            got: data.len(),
        });
    }
    Ok(rb)
}

/// Rebuilds the real matrix (see [`super::dequantize_tensor`]).
pub(crate) fn dequantize(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Result<Vec<f32>> {
    let rb = check_data(data, k, n_rows, stages)?;
    let n = n_rows / 2;
    let m = k / 2;
    let mut out = vec![0f32; n_rows * k];
    let (top, bot) = out.split_at_mut(n * k);
    let (du, dw) = data.split_at(n * rb);
    (
        top.par_chunks_mut(k),
        bot.par_chunks_mut(k),
        du.par_chunks(rb),
        dw.par_chunks(rb),
    )
        .into_par_iter()
        .for_each(|(t, b, ru, rw)| dequantize_pair(t, b, ru, rw, m, stages));
    Ok(out)
}

/// Adds the values of one stage record to the complex accumulators `re`, `im`.
#[inline(always)]
fn add_stage(rec: &[u8], re: &mut [f64; QK_COMPLEX], im: &mut [f64; QK_COMPLEX]) {
    let Some(st) = F2iStage::read(rec) else {
        return;
    };
    let d_re = f64::from(st.d_re.to_f32());
    let d_im = f64::from(st.d_im.to_f32());
    let table = [(d_re, 0.0), (0.0, d_im), (-d_re, 0.0), (0.0, -d_im)];
    for (e, c) in unpack_codes(&st.qs).into_iter().enumerate() {
        let (a, b) = table[usize::from(c & 3)];
        re[e] += a;
        im[e] += b;
    }
}

/// Real rows j (`top`) and n + j (`bot`) from stored rows j (`ru`, U[j]) and n + j (`rw`, W[j]).
fn dequantize_pair(
    top: &mut [f32],
    bot: &mut [f32],
    ru: &[u8],
    rw: &[u8],
    m: usize,
    stages: usize,
) {
    let block = stages * STAGE_BYTES;
    let (a11, a12) = top.split_at_mut(m);
    let (a21, a22) = bot.split_at_mut(m);
    let blocks = ru
        .chunks_exact(block)
        .zip(rw.chunks_exact(block))
        .zip(a11.chunks_exact_mut(QK_COMPLEX))
        .zip(a12.chunks_exact_mut(QK_COMPLEX))
        .zip(a21.chunks_exact_mut(QK_COMPLEX))
        .zip(a22.chunks_exact_mut(QK_COMPLEX));
    for (((((bu, bw), o11), o12), o21), o22) in blocks {
        let mut u = ([0f64; QK_COMPLEX], [0f64; QK_COMPLEX]);
        let mut w = ([0f64; QK_COMPLEX], [0f64; QK_COMPLEX]);
        for (su, sw) in bu
            .chunks_exact(STAGE_BYTES)
            .zip(bw.chunks_exact(STAGE_BYTES))
        {
            add_stage(su, &mut u.0, &mut u.1);
            add_stage(sw, &mut w.0, &mut w.1);
        }
        for e in 0..QK_COMPLEX {
            let a = merge_entry(u.0[e], u.1[e], w.0[e], w.1[e]);
            o11[e] = a[0] as f32;
            o12[e] = a[1] as f32;
            o21[e] = a[2] as f32;
            o22[e] = a[3] as f32;
        }
    }
}

/// Checks an F2I tensor's bytes the way ggml's `ggml_validate_row_data` does for its types: the size
/// fits the shape and stage count, and no stored scale is NaN or infinite (the first bad one is named).
pub fn validate_tensor(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Result<()> {
    let rb = check_data(data, k, n_rows, stages)?;
    for (row, bytes) in data.chunks_exact(rb).enumerate() {
        for (b, block) in bytes.chunks_exact(stages * STAGE_BYTES).enumerate() {
            for (s, rec) in block.chunks_exact(STAGE_BYTES).enumerate() {
                let Some(st) = F2iStage::read(rec) else {
                    continue;
                };
                for (axis, d) in [("real-axis", st.d_re), ("imaginary-axis", st.d_im)] {
                    if !d.is_finite() {
                        return Err(Error::F2iBadScale {
                            row,
                            block: b,
                            stage: s + 1,
                            axis,
                        });
                    }
                }
            }
        }
    }
    debug_assert_eq!(QS_BYTES * 4, QK_COMPLEX);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn record(d_re: f32, d_im: f32, code: u8) -> F2iStage {
        F2iStage {
            d_re: f16::from_f32(d_re),
            d_im: f16::from_f32(d_im),
            qs: [code * 0x55; QS_BYTES],
        }
    }

    #[test]
    fn one_block_by_hand() {
        // k = 256 (m = 128), 2 rows: row 0 = U[0], row 1 = W[0]; 2 stages.
        // U: stage 1 all +i·0.5, stage 2 all −1·0.25 → U = −0.25 + 0.5i.
        // W: stage 1 all +1·0.125, stage 2 all −i·2^-20 (an f16 subnormal) → W = 0.125 − 2^-20·i.
        let tiny = 2f32.powi(-20);
        let mut data = Vec::new();
        for st in [record(9.0, 0.5, 1), record(0.25, 7.0, 2)] {
            data.extend_from_slice(bytemuck::bytes_of(&st));
        }
        for st in [record(0.125, 3.0, 0), record(5.0, tiny, 3)] {
            data.extend_from_slice(bytemuck::bytes_of(&st));
        }
        let a = dequantize(&data, 256, 2, 2).unwrap();
        let (ur, ui, wr, wi) = (-0.25f64, 0.5f64, 0.125f64, -(tiny as f64));
        for i in 0..128 {
            assert_eq!(a[i], (ur + wr) as f32); // A11
            assert_eq!(a[128 + i], (wi - ui) as f32); // A12
            assert_eq!(a[256 + i], (ui + wi) as f32); // A21
            assert_eq!(a[384 + i], (ur - wr) as f32); // A22
        }
        validate_tensor(&data, 256, 2, 2).unwrap();
        assert!(matches!(
            dequantize(&data[1..], 256, 2, 2),
            Err(Error::F2iDataSize {
                expected: 144,
                got: 143
            })
        ));
        assert!(matches!(
            dequantize(&data, 256, 2, 5),
            Err(Error::F2iStages(5))
        ));
        let mut bad = data.clone();
        bad[36 + 2..36 + 4].copy_from_slice(&f16::NAN.to_le_bytes());
        let e = validate_tensor(&bad, 256, 2, 2).unwrap_err();
        assert!(
            matches!(
                e,
                Error::F2iBadScale {
                    row: 0,
                    block: 0,
                    stage: 2,
                    ..
                }
            ),
            "{e}"
        );
    }
}
