//! The block-scale quantizer ([`super::ScaleMode::Block`], `docs/quantizer.md` "Block scales"): the
//! residual stages of [`super::stages`] with the same PhaseQuant code rule, but each stage's two scales
//! are fitted per block (128 complex entries of one stored row) to that stage's residual.
//!
//! For a fixed code assignment the least-squares scale of an axis is the mean magnitude of the entries
//! on that axis; it is rounded to f16 (what the file stores) before the residual is formed, so that later
//! stages correct the stored value. An axis with no entries gets scale 0 (it multiplies nothing). Then up
//! to [`REFINE`] rounds of alternating refinement: each entry takes the nearest of the four stage values,
//! and the scales are refitted.
//! Arithmetic is f32 (sums in f64); `bf16_rounding` only rounds the input to bf16 before the split.
//!
//! Each block is independent: one parallel task per pair of real rows (j, n + j), which yields stored
//! rows `U[j]` and `W[j]`.

use half::f16;
use rayon::prelude::*;

use super::joint::{refine, BlockState};
use super::layout::{code_value, pack_codes, row_bytes, F2iStage, Part};
use super::phase::code_from_bits;
use super::split::{split_rows, SplitRows};
use super::stages::{first_bad, validate};
use super::{QuantOptions, ScaleMode, QK_COMPLEX, STAGE_BYTES};
use crate::error::{Error, Result};

/// Most rounds of alternating refinement per stage and block (Lloyd iterations: re-pick each entry's code
/// as the nearest of the four stage values, then refit the scales); it stops early once no code changes.
/// On SmolLM2-135M W4, perplexity was 1424 with 0 rounds, 303 with 2, 103 with 6, 59 with 16 or 40.
const REFINE: usize = 16;

/// Quantizes a real matrix (row-major, `n_rows` rows of `k`; `k % 256 == 0`, `n_rows` even) with block
/// scales into the bytes of an F2I tensor of `opts.stages` stages.
pub(crate) fn quantize_block(
    w: &[f32],
    k: usize,
    n_rows: usize,
    opts: &QuantOptions<'_>,
) -> Result<Vec<u8>> {
    validate(w, k, n_rows, opts)?;
    super::check_shape(k, n_rows)?;
    let stages = opts.stages;
    let joint = opts.mode == ScaleMode::Joint;
    let weights = opts.importance.map(|imp| entry_weights(imp, k / 2));
    let weights = weights.as_deref();
    let n = n_rows / 2;
    let rb = row_bytes(k, stages);
    let mut out = vec![0u8; n_rows * rb];
    let (top, bot) = out.split_at_mut(n * rb);
    let results: Vec<Result<bool>> = top
        .par_chunks_mut(rb)
        .zip(bot.par_chunks_mut(rb))
        .enumerate()
        .map(|(j, (u_row, w_row))| {
            let src = [&w[j * k..(j + 1) * k], &w[(n + j) * k..(n + j + 1) * k]];
            let job = RowJob {
                stages,
                weights,
                joint,
            };
            if opts.bf16_rounding {
                row_pair::<true>(src, &job, [u_row, w_row])
            } else {
                row_pair::<false>(src, &job, [u_row, w_row])
            }
        })
        .collect();
    let mut finite = true;
    for r in results {
        finite &= r?;
    }
    if !finite {
        let (row, col) = first_bad(w, k, n, opts.bf16_rounding);
        return Err(Error::F2iNotFinite { row, col });
    }
    Ok(out)
}

/// The smallest entry weight, relative to the tensor's mean: a column the calibration data never excited
/// still counts a little, so that every block's least-squares problem stays well posed.
const MIN_WEIGHT: f32 = 1e-3;

/// The per-entry weights of the complex columns (`docs/quantizer.md` §10): h_c = (imp[c] + imp[m + c]) / 2,
/// divided by its mean over the tensor and floored at [`MIN_WEIGHT`]. A constant importance gives weights
/// of exactly 1 (the unweighted quantizer, byte for byte); an all-zero one is treated as constant.
pub(crate) fn entry_weights(imp: &[f32], m: usize) -> Vec<f32> {
    let raw: Vec<f64> = (0..m)
        .map(|c| 0.5 * (f64::from(imp[c]) + f64::from(imp[m + c])))
        .collect();
    let mean = raw.iter().sum::<f64>() / m as f64;
    if !(mean > 0.0 && mean.is_finite()) {
        return vec![1.0; m];
    }
    raw.iter()
        .map(|&h| ((h / mean) as f32).max(MIN_WEIGHT))
        .collect()
}

/// What every row pair of a tensor shares.
struct RowJob<'a> {
    stages: usize,
    /// Per complex column (length m); `None` = all 1.
    weights: Option<&'a [f32]>,
    /// Run the joint refinement of [`super::joint`] after the greedy stages.
    joint: bool,
}

/// Quantizes real rows j (`src[0]`) and n + j (`src[1]`) into stored rows `U[j]` (`out[0]`) and `W[j]`
/// (`out[1]`). Returns false if the split met a non-finite value.
fn row_pair<const BF16: bool>(
    src: [&[f32]; 2],
    job: &RowJob<'_>,
    out: [&mut [u8]; 2],
) -> Result<bool> {
    let [top, bot] = src;
    let m = top.len() / 2;
    let [out_u, out_w] = out;
    let block_bytes = job.stages * STAGE_BYTES;
    let mut ok = true;
    for (b, (bu, bw)) in out_u
        .chunks_exact_mut(block_bytes)
        .zip(out_w.chunks_exact_mut(block_bytes))
        .enumerate()
    {
        let c0 = b * QK_COMPLEX;
        let mut buf = [[0f32; QK_COMPLEX]; 4];
        let [ur, ui, wr, wi] = &mut buf;
        let a = [
            &top[c0..c0 + QK_COMPLEX],
            &top[m + c0..m + c0 + QK_COMPLEX],
            &bot[c0..c0 + QK_COMPLEX],
            &bot[m + c0..m + c0 + QK_COMPLEX],
        ];
        ok &= split_rows::<BF16>(
            a,
            SplitRows {
                u_re: ur,
                u_im: ui,
                w_re: wr,
                w_im: wi,
            },
        );
        if !ok {
            continue;
        }
        let mut h = [1f32; QK_COMPLEX];
        if let Some(wt) = job.weights {
            h.copy_from_slice(&wt[c0..c0 + QK_COMPLEX]);
        }
        block_stages(ur, ui, &h, job, bu, Part::U)?;
        block_stages(wr, wi, &h, job, bw, Part::W)?;
    }
    Ok(ok)
}

/// Runs the residual stages on one block's entries `re`, `im` (overwritten by the final residual), with
/// entry weights `h`, then (joint mode) the joint refinement, and writes the stage records into `out`
/// (`stages × 36` bytes).
fn block_stages(
    re: &mut [f32; QK_COMPLEX],
    im: &mut [f32; QK_COMPLEX],
    h: &[f32; QK_COMPLEX],
    job: &RowJob<'_>,
    out: &mut [u8],
    part: Part,
) -> Result<()> {
    let x = [*re, *im];
    let mut state = BlockState::default();
    for s in 0..job.stages {
        let (codes, d_re, d_im) = stage_fit(re, im, h);
        for (axis, d) in [("real-axis", d_re), ("imaginary-axis", d_im)] {
            if !d.is_finite() {
                return Err(Error::F2iScaleRange {
                    part: part.name(),
                    stage: s + 1,
                    axis,
                    value: d.to_f32(),
                });
            }
        }
        state.codes[s] = codes;
        state.d[s] = [d_re, d_im];
    }
    if job.joint {
        refine(&x, h, job.stages, &mut state);
    }
    for (s, rec) in out.chunks_exact_mut(STAGE_BYTES).enumerate() {
        let stage = F2iStage {
            d_re: state.d[s][0],
            d_im: state.d[s][1],
            qs: pack_codes(&state.codes[s]),
        };
        rec.copy_from_slice(bytemuck::bytes_of(&stage));
    }
    Ok(())
}

/// One stage on one block: PhaseQuant codes of the residual `re + i·im`, per-axis (weighted) least-squares
/// scales (weighted mean magnitude, rounded to f16), up to [`REFINE`] rounds of refinement, then the
/// residual minus the stored stage value. Returns the codes and the real- and imaginary-axis scales.
#[inline]
fn stage_fit(
    re: &mut [f32; QK_COMPLEX],
    im: &mut [f32; QK_COMPLEX],
    h: &[f32; QK_COMPLEX],
) -> ([u8; QK_COMPLEX], f16, f16) {
    let mut codes = [0u8; QK_COMPLEX];
    let mut sum = [0f64; 2];
    let mut count = [0f64; 2];
    for (((c, &r), &i), &hw) in codes.iter_mut().zip(re.iter()).zip(im.iter()).zip(h) {
        let code = code_from_bits(r.to_bits(), i.to_bits());
        let axis = (code & 1) as usize;
        let mag = if axis == 0 { r.abs() } else { i.abs() };
        sum[axis] += f64::from(hw) * f64::from(mag);
        count[axis] += f64::from(hw);
        *c = code as u8;
    }
    let scale = |sum: [f64; 2], count: [f64; 2], a: usize| {
        if count[a] == 0.0 {
            f16::ZERO
        } else {
            f16::from_f64(sum[a] / count[a])
        }
    };
    let (mut d_re, mut d_im) = (scale(sum, count, 0), scale(sum, count, 1));
    for _ in 0..REFINE {
        if !(d_re.is_finite() && d_im.is_finite()) {
            break; // out of f16's range: reported by the caller, not refined away
        }
        let (fr, fi) = (d_re.to_f32(), d_im.to_f32());
        let kept = codes;
        let mut changed = false;
        sum = [0.0; 2];
        count = [0.0; 2];
        for (((c, &r), &i), &hw) in codes.iter_mut().zip(re.iter()).zip(im.iter()).zip(h) {
            // Squared distance to the nearest point on each axis; ties keep the current code.
            let on_re = (r.abs() - fr).powi(2) + i * i;
            let on_im = r * r + (i.abs() - fi).powi(2);
            let axis = match on_re.partial_cmp(&on_im) {
                Some(std::cmp::Ordering::Less) => 0,
                Some(std::cmp::Ordering::Greater) => 1,
                _ => *c & 1,
            };
            let (v, neg) = if axis == 0 {
                (r, r.is_sign_negative())
            } else {
                (i, i.is_sign_negative())
            };
            if axis != *c & 1 || v != 0.0 {
                let code = axis | (u8::from(neg) << 1);
                changed |= code != *c;
                *c = code;
            }
            sum[axis as usize] += f64::from(hw) * f64::from(v.abs());
            count[axis as usize] += f64::from(hw);
        }
        let (r2, i2) = (scale(sum, count, 0), scale(sum, count, 1));
        if !(r2.is_finite() && i2.is_finite()) {
            codes = kept; // a refit past f16's range: keep the last fitting round
            break;
        }
        (d_re, d_im) = (r2, i2);
        if !changed {
            break;
        }
    }
    let (fr, fi) = (d_re.to_f32(), d_im.to_f32());
    for ((&c, r), i) in codes.iter().zip(re.iter_mut()).zip(im.iter_mut()) {
        let (qr, qi) = code_value(c, fr, fi);
        *r -= qr;
        *i -= qi;
    }
    (codes, d_re, d_im)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::f2i::dequantize_tensor;

    #[test]
    fn a_block_of_one_magnitude_is_one_stage_exact() {
        // Every entry of U is ±s or ±i·s (exactly f16): the block scales are s and the error is 0.
        let (k, rows) = (256, 2);
        let s = 0.375f32;
        let mut a = vec![0f32; k * rows];
        for i in 0..128 {
            // U = (a11 + a22)/2 + i(a21 − a12)/2 with W = 0: a11 = a22 = u_re, a21 = −a12 = u_im.
            let (ur, ui) = match i % 4 {
                0 => (s, 0.0),
                1 => (0.0, s),
                2 => (-s, 0.0),
                _ => (0.0, -s),
            };
            a[i] = ur;
            a[128 + i] = -ui;
            a[k + i] = ui;
            a[k + 128 + i] = ur;
        }
        let opts = QuantOptions {
            stages: 1,
            mode: ScaleMode::Block,
            ..Default::default()
        };
        let bytes = quantize_block(&a, k, rows, &opts).unwrap();
        let rec = F2iStage::read(&bytes).unwrap();
        assert_eq!((rec.d_re.to_f32(), rec.d_im.to_f32()), (s, s));
        assert_eq!(dequantize_tensor(&bytes, k, rows, 1).unwrap(), a);
        // W = 0: both axes of its stage scale to 0 (code +1 everywhere, empty imaginary axis).
        let w_rec = F2iStage::read(&bytes[36..]).unwrap();
        assert_eq!((w_rec.d_re, w_rec.d_im), (f16::ZERO, f16::ZERO));
    }

    #[test]
    fn bad_inputs_are_named() {
        let opts = QuantOptions {
            stages: 2,
            mode: ScaleMode::Block,
            ..Default::default()
        };
        let mut a = vec![0f32; 512 * 4];
        a[512 * 2 + 300] = f32::INFINITY;
        let e = quantize_block(&a, 512, 4, &opts).unwrap_err();
        assert!(matches!(e, Error::F2iNotFinite { row: 2, col: 300 }), "{e}");
        let mut b = vec![0f32; 512 * 4];
        b[0] = 1e8; // the block mean 5e7 / 128 is past f16's range
        let e = quantize_block(&b, 512, 4, &opts).unwrap_err();
        assert!(e.to_string().contains("does not fit f16"), "{e}");
        let o5 = QuantOptions { stages: 5, ..opts };
        assert!(matches!(
            quantize_block(&b, 512, 4, &o5),
            Err(Error::F2iStages(5))
        ));
    }
}
