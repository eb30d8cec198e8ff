//! Residual stages (`docs/quantizer.md` §3, `docs/fairy2i-math.md` §3): q1 = PQ(w), e1 = w − q1, q2 = PQ(e1), …
//! with fresh per-tensor scales per stage and per part (U, W).
//!
//! One parallel pass per stage over the input: the scales of a stage are means over the whole tensor, so
//! stage s + 1 can start only when stage s is done. No residual is stored: each pass splits the input
//! again, a batch of 256 entries at a time, replays the residuals of the earlier stages from their codes
//! and scales (cheap, branch-free, in L1), and classifies. Reading the input once per stage costs less
//! than writing and re-reading a residual buffer of the same size.

use half::f16;
use rayon::prelude::*;

use super::layout::{pack_codes, row_bytes, F2iStage, Part, QS_BYTES};
use super::phase::{classify_batch, AxisSums, BATCH};
use super::round::bf16;
use super::split::{split_entry, split_rows, SplitRows};
use super::{QuantOptions, QK_COMPLEX};
use crate::error::{Error, Result};

/// Entries per parallel task of the stage passes.
const TASK_ENTRIES: usize = 1 << 15;
/// The quantizer's exact scale sums count up to 2^40 entries per part.
const MAX_ENTRIES: usize = 1 << 40;

/// The two scales of one part and stage: the official bf16 values (held exactly in f32), or the f32 1e-6
/// of an empty axis. The file stores them rounded to f16, see [`Scales::to_f16`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scales {
    /// Scale of the entries on the real axis.
    pub re: f32,
    /// Scale of the entries on the imaginary axis.
    pub im: f32,
}

impl Scales {
    /// The scales as stored in an F2I block: f16, rounded to nearest (ties to even).
    pub fn to_f16(self) -> (f16, f16) {
        (f16::from_f32(self.re), f16::from_f32(self.im))
    }
}

/// The result of the quantizer before packing: codes and scales of every stage of U and W.
#[derive(Debug, Clone)]
pub struct Quantized {
    n: usize,
    m: usize,
    /// Per stage, `2·n·m` codes: U row-major, then W row-major.
    codes: Vec<Vec<u8>>,
    /// Per stage, the scales of U and of W.
    scales: Vec<[Scales; 2]>,
}

impl Quantized {
    /// Complex rows n of U and of W (half the real rows).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Complex columns m (half the real columns).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.codes.len()
    }

    /// Codes (0..4, i^c) of stage `stage` (0-based) of `part`, `n × m` row-major; empty when `stage` is
    /// out of range.
    pub fn codes(&self, stage: usize, part: Part) -> &[u8] {
        let nm = self.n * self.m;
        self.codes
            .get(stage)
            .and_then(|c| c.get(part.index() * nm..(part.index() + 1) * nm))
            .unwrap_or(&[])
    }

    /// Scales of stage `stage` (0-based) of `part`, as the official code computes them (bf16 values).
    pub fn scales(&self, stage: usize, part: Part) -> Option<Scales> {
        self.scales.get(stage).map(|s| s[part.index()])
    }

    /// The real `2n × 2m` matrix these codes stand for with the scales an F2I file stores (f16): the exact
    /// sum of the stages, then the inverse split, rounded once to f32. For block-aligned shapes this is
    /// what [`super::dequantize_tensor`] returns for the bytes of [`Quantized::to_f2i_bytes`].
    pub fn dequantize(&self) -> Vec<f32> {
        let (n, m) = (self.n, self.m);
        let k = 2 * m;
        let mut out = vec![0f32; 2 * n * k];
        let (top, bot) = out.split_at_mut(n * k);
        let scales: Vec<[(f64, f64); 2]> = self
            .scales
            .iter()
            .map(|s| {
                s.map(|p| {
                    let (a, b) = p.to_f16();
                    (f64::from(a.to_f32()), f64::from(b.to_f32()))
                })
            })
            .collect();
        top.par_chunks_mut(k.max(1))
            .zip(bot.par_chunks_mut(k.max(1)))
            .enumerate()
            .for_each(|(j, (t, b))| {
                for i in 0..m {
                    let mut v = [0f64; 4];
                    for (codes, sc) in self.codes.iter().zip(&scales) {
                        for (p, part) in Part::ALL.iter().enumerate() {
                            let c = codes[part.index() * n * m + j * m + i];
                            let (d_re, d_im) = sc[p];
                            let d = if c & 1 == 0 { d_re } else { d_im };
                            let d = if c & 2 == 0 { d } else { -d };
                            v[2 * p + (c & 1) as usize] += d;
                        }
                    }
                    let a = super::split::merge_entry(v[0], v[1], v[2], v[3]);
                    t[i] = a[0] as f32;
                    t[m + i] = a[1] as f32;
                    b[i] = a[2] as f32;
                    b[m + i] = a[3] as f32;
                }
            });
        out
    }

    /// The bytes of the F2I tensor (`docs/format.md`): stored row j = `U[j]`, row n + j = `W[j]`, each row
    /// `m/128` blocks of `stages` stage records. Needs `m % 128 == 0`.
    pub fn to_f2i_bytes(&self) -> Result<Vec<u8>> {
        let (n, m) = (self.n, self.m);
        let k = 2 * m;
        super::check_shape(k, 2 * n)?;
        let stages = self.stages();
        let rb = row_bytes(k, stages);
        let mut out = vec![0u8; 2 * n * rb];
        let scales: Vec<[(f16, f16); 2]> =
            self.scales.iter().map(|s| s.map(Scales::to_f16)).collect();
        let nm = n * m;
        out.par_chunks_mut(rb).enumerate().for_each(|(row, bytes)| {
            let (p, j) = if row < n { (0, row) } else { (1, row - n) };
            for (b, block) in bytes
                .chunks_exact_mut(stages * super::STAGE_BYTES)
                .enumerate()
            {
                for (s, rec) in block.chunks_exact_mut(super::STAGE_BYTES).enumerate() {
                    let start = p * nm + j * m + b * QK_COMPLEX;
                    let mut codes = [0u8; QK_COMPLEX];
                    codes.copy_from_slice(&self.codes[s][start..start + QK_COMPLEX]);
                    let (d_re, d_im) = scales[s][p];
                    let stage = F2iStage {
                        d_re,
                        d_im,
                        qs: pack_codes(&codes),
                    };
                    rec.copy_from_slice(bytemuck::bytes_of(&stage));
                }
            }
        });
        debug_assert_eq!(QS_BYTES * 4, QK_COMPLEX);
        Ok(out)
    }
}

/// Runs the quantizer on a real matrix of `n_rows` rows of `k` values (both even and non-zero), any
/// width: the F2I block layout is not needed here (see [`Quantized::to_f2i_bytes`]).
///
/// This is the paper-exact [`super::ScaleMode::Tensor`] quantizer whatever `opts.mode` says (its scales
/// are per tensor); [`super::quantize_tensor`] dispatches on the mode.
pub fn quantize(w: &[f32], k: usize, n_rows: usize, opts: &QuantOptions<'_>) -> Result<Quantized> {
    validate(w, k, n_rows, opts)?;
    if opts.bf16_rounding {
        run::<true>(w, k, n_rows, opts.stages)
    } else {
        run::<false>(w, k, n_rows, opts.stages)
    }
}

/// The checks of [`quantize`] on the stage count, shape, input length and importance length.
pub(crate) fn validate(w: &[f32], k: usize, n_rows: usize, opts: &QuantOptions<'_>) -> Result<()> {
    if !(1..=4).contains(&opts.stages) {
        return Err(Error::F2iStages(opts.stages));
    }
    if k == 0 || n_rows == 0 || !k.is_multiple_of(2) || !n_rows.is_multiple_of(2) {
        return Err(Error::F2iShape(format!(
            "F2I needs an even, non-zero number of rows and columns, got {n_rows} rows of {k}"
        )));
    }
    let len = k
        .checked_mul(n_rows)
        .ok_or(Error::Overflow("F2I tensor size"))?;
    if len / 4 > MAX_ENTRIES {
        return Err(Error::F2iShape(format!(
            "F2I tensor of {n_rows} × {k} values is too large (at most 2^42)"
        )));
    }
    if w.len() != len {
        return Err(Error::F2iShape(format!(
            "F2I input has {} values, {n_rows} rows of {k} need {len}",
            w.len()
        )));
    }
    if let Some(imp) = opts.importance {
        if imp.len() != k {
            return Err(Error::F2iImportanceLen {
                expected: k,
                got: imp.len(),
            });
        }
        if let Some((col, &value)) = imp
            .iter()
            .enumerate()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return Err(Error::F2iImportanceValue { col, value });
        }
    }
    Ok(())
}

fn run<const BF16: bool>(w: &[f32], k: usize, n_rows: usize, stages: usize) -> Result<Quantized> {
    let n = n_rows / 2;
    let m = k / 2;
    let nm = n * m;
    let rows = (TASK_ENTRIES / m).max(1);
    let chunk = rows * m;
    let mut codes: Vec<Vec<u8>> = Vec::with_capacity(stages);
    let mut scales: Vec<[Scales; 2]> = Vec::with_capacity(stages);
    for stage in 1..=stages {
        let mut cs = vec![0u8; 2 * nm];
        let (prev, sc) = (&codes, &scales);
        let (c_u, c_w) = cs.split_at_mut(nm);
        let (ok, acc) = c_u
            .par_chunks_mut(chunk)
            .zip(c_w.par_chunks_mut(chunk))
            .enumerate()
            .map(|(t, (cu, cw))| {
                let mut acc = [AxisSums::default(), AxisSums::default()];
                let mut ok = true;
                for (r, (cu, cw)) in cu.chunks_mut(m).zip(cw.chunks_mut(m)).enumerate() {
                    let row = RowPair {
                        w,
                        k,
                        n,
                        j: t * rows + r,
                    };
                    ok &= stage_row::<BF16>(row, prev, sc, [cu, cw], &mut acc);
                }
                (ok, acc)
            })
            .reduce(
                || (true, [AxisSums::default(), AxisSums::default()]),
                |(oa, [ua, wa]), (ob, [ub, wb])| (oa && ob, [ua.merge(ub), wa.merge(wb)]),
            );
        if !ok {
            let (row, col) = first_bad(w, k, n, BF16);
            return Err(Error::F2iNotFinite { row, col });
        }
        scales.push(stage_scales(&acc, stage)?);
        codes.push(cs);
    }
    Ok(Quantized {
        n,
        m,
        codes,
        scales,
    })
}

/// Real rows j and n + j of the input (row length k), the source of complex row j of U and W.
#[derive(Clone, Copy)]
struct RowPair<'a> {
    w: &'a [f32],
    k: usize,
    n: usize,
    j: usize,
}

/// Codes of stage `prev.len() + 1` of complex row j of U (`out[0]`) and W (`out[1]`), a batch at a time:
/// split the real rows, replay the residuals of the earlier stages from their codes and scales, classify.
/// Returns false if the split met a non-finite value.
#[inline(always)]
fn stage_row<const BF16: bool>(
    row: RowPair<'_>,
    prev: &[Vec<u8>],
    sc: &[[Scales; 2]],
    out: [&mut [u8]; 2],
    acc: &mut [AxisSums; 2],
) -> bool {
    let RowPair { w, k, n, j } = row;
    let m = k / 2;
    let nm = n * m;
    let top = &w[j * k..(j + 1) * k];
    let bot = &w[(n + j) * k..(n + j + 1) * k];
    let [out_u, out_w] = out;
    let mut ok = true;
    let mut buf = [[0f32; BATCH]; 4];
    for b0 in (0..m).step_by(BATCH) {
        let len = BATCH.min(m - b0);
        let [ur, ui, wr, wi] = &mut buf;
        let (ur, ui, wr, wi) = (
            &mut ur[..len],
            &mut ui[..len],
            &mut wr[..len],
            &mut wi[..len],
        );
        let src = [
            &top[b0..b0 + len],
            &top[m + b0..m + b0 + len],
            &bot[b0..b0 + len],
            &bot[m + b0..m + b0 + len],
        ];
        let split_out = SplitRows {
            u_re: ur,
            u_im: ui,
            w_re: wr,
            w_im: wi,
        };
        ok &= split_rows::<BF16>(src, split_out);
        for (codes, s) in prev.iter().zip(sc) {
            let at = j * m + b0;
            residual::<BF16>(ur, ui, &codes[at..at + len], s[0]);
            residual::<BF16>(wr, wi, &codes[nm + at..nm + at + len], s[1]);
        }
        let [acc_u, acc_w] = acc;
        classify_batch(ur, ui, &mut out_u[b0..b0 + len], acc_u);
        classify_batch(wr, wi, &mut out_w[b0..b0 + len], acc_w);
    }
    ok
}

/// The scales of one stage from its sums, checked against f16's range.
fn stage_scales(acc: &[AxisSums; 2], stage: usize) -> Result<[Scales; 2]> {
    let mut out = [Scales::default(); 2];
    for (part, (a, o)) in Part::ALL.iter().zip(acc.iter().zip(out.iter_mut())) {
        *o = Scales {
            re: a.scale(0),
            im: a.scale(1),
        };
        for (axis, v) in [("real-axis", o.re), ("imaginary-axis", o.im)] {
            if !f16::from_f32(v).is_finite() {
                return Err(Error::F2iScaleRange {
                    part: part.name(),
                    stage,
                    axis,
                    value: v,
                });
            }
        }
    }
    Ok(out)
}

/// `re − q_re`, `im − q_im` for the stage value q of code `prev` (branch-free; the value off its axis
/// is +0, built from bits so that it is never −0: `x − (+0)` keeps the sign of a zero x).
#[inline(always)]
fn residual<const BF16: bool>(re: &mut [f32], im: &mut [f32], prev: &[u8], s: Scales) {
    let n = re.len().min(im.len()).min(prev.len());
    let (re, im, prev) = (&mut re[..n], &mut im[..n], &prev[..n]);
    let (sr, si) = (s.re.to_bits(), s.im.to_bits());
    for i in 0..n {
        let p = u32::from(prev[i]);
        let keep_re = (p & 1).wrapping_sub(1); // all ones on the real axis, 0 on the imaginary one
        let sign = (p & 2) << 30;
        let q_re = f32::from_bits((sr | sign) & keep_re);
        let q_im = f32::from_bits((si | sign) & !keep_re);
        let (vr, vi) = (re[i] - q_re, im[i] - q_im);
        re[i] = if BF16 { bf16(vr) } else { vr };
        im[i] = if BF16 { bf16(vi) } else { vi };
    }
}

/// The first real position whose value or split is not finite (for the error message).
pub(crate) fn first_bad(w: &[f32], k: usize, n: usize, bf16_rounding: bool) -> (usize, usize) {
    if let Some(p) = w.iter().position(|x| !x.is_finite()) {
        return (p / k, p % k);
    }
    let m = k / 2;
    for j in 0..n {
        for i in 0..m {
            let g = |r: usize, c: usize| w.get(r * k + c).copied().unwrap_or(0.0);
            let v = split_entry(
                g(j, i),
                g(j, m + i),
                g(n + j, i),
                g(n + j, m + i),
                bf16_rounding,
            );
            if v.iter().any(|x| !x.is_finite()) {
                return (j, i);
            }
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::f2i::ScaleMode;

    fn opts(stages: usize, bf16_rounding: bool) -> QuantOptions<'static> {
        QuantOptions {
            stages,
            mode: ScaleMode::Tensor,
            bf16_rounding,
            importance: None,
        }
    }

    #[test]
    fn a_pure_rotation_is_one_stage_exact() {
        // A = [[0, -s], [s, 0]] per 2×2 group is multiplication by i·s: U = i·s, W = 0.
        let s = 0.25f32;
        let (n, m) = (2, 3);
        let (k, rows) = (2 * m, 2 * n);
        let mut a = vec![0f32; rows * k];
        for j in 0..n {
            for i in 0..m {
                a[j * k + m + i] = -s;
                a[(n + j) * k + i] = s;
            }
        }
        let q = quantize(&a, k, rows, &opts(1, false)).unwrap();
        assert!(q.codes(0, Part::U).iter().all(|&c| c == 1));
        assert_eq!(q.scales(0, Part::U).unwrap().im, s);
        assert_eq!(
            q.scales(0, Part::U).unwrap().re,
            crate::f2i::round::SCALE_EMPTY
        );
        // W = 0 still gets stage 1 = +1 · floor (README fact 5), stored as f16(9.98e-7) = 17·2^-24.
        let floor16 = f16::from_f32(crate::f2i::round::SCALE_FLOOR).to_f32();
        assert_eq!(floor16, 17.0 * 2f32.powi(-24));
        let back = q.dequantize();
        assert_eq!(back[..m], vec![floor16; m][..]);
        assert_eq!(back[m..k], a[m..k]);
    }

    #[test]
    fn bad_inputs_are_named() {
        let a = vec![0f32; 16];
        assert!(matches!(
            quantize(&a, 4, 4, &opts(5, false)),
            Err(Error::F2iStages(5))
        ));
        assert!(matches!(
            quantize(&a, 3, 4, &opts(1, false)),
            Err(Error::F2iShape(_))
        ));
        assert!(matches!(
            quantize(&a[..15], 4, 4, &opts(1, false)),
            Err(Error::F2iShape(_))
        ));
        let mut b = a.clone();
        b[9] = f32::NAN;
        let e = quantize(&b, 4, 4, &opts(2, true)).unwrap_err();
        assert!(matches!(e, Error::F2iNotFinite { row: 2, col: 1 }), "{e}");
        let mut c = a.clone();
        c[0] = 1e6;
        let e = quantize(&c, 4, 4, &opts(1, false)).unwrap_err();
        assert!(e.to_string().contains("does not fit f16"), "{e}");
        let imp = [1f32; 3];
        let o = QuantOptions {
            importance: Some(&imp),
            ..opts(1, false)
        };
        assert!(matches!(
            quantize(&a, 4, 4, &o),
            Err(Error::F2iImportanceLen {
                expected: 4,
                got: 3
            })
        ));
    }

    #[test]
    fn tasks_straddling_u_and_w_use_each_part_s_scales() {
        // m·n not a multiple of the task size: the stage-2 task holding the U/W boundary splits it.
        let (n, m) = (7, 5000);
        let (k, rows) = (2 * m, 2 * n);
        let mut x: u32 = 7;
        let a: Vec<f32> = (0..rows * k)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) - 0.5
            })
            .collect();
        let q = quantize(&a, k, rows, &opts(2, false)).unwrap();
        // Recompute stage 2 of W serially from stage 1.
        let s1 = q.scales(0, Part::W).unwrap();
        let c1 = q.codes(0, Part::W);
        let mut acc = AxisSums::default();
        for j in 0..n {
            for i in 0..m {
                let g = |r: usize, c: usize| a[r * k + c];
                let v = split_entry(g(j, i), g(j, m + i), g(n + j, i), g(n + j, m + i), false);
                let (mut r, mut im) = (v[2], v[3]);
                let c = c1[j * m + i];
                let (qr, qi) = crate::f2i::layout::code_value(c, s1.re, s1.im);
                r -= qr;
                im -= qi;
                let code = acc.classify(r.to_bits(), im.to_bits()) as u8;
                assert_eq!(code, q.codes(1, Part::W)[j * m + i]);
            }
        }
        assert_eq!(q.scales(1, Part::W).unwrap().re, acc.scale(0));
        assert_eq!(q.scales(1, Part::W).unwrap().im, acc.scale(1));
    }
}
