//! The int8-activation path (docs/backend.md §2.4): activations quantized once per product to int8,
//! then integer sums of ±q inside a block. Still no multiplications by weights: a code only selects
//! and negates. The scalar code here is the reference the SIMD versions are tested against.
//!
//! Scales: a block (the 128 real and 128 imaginary parts a weight block meets) has an f32 unit `d`;
//! each of its four groups g (real and imaginary parts 32g..32g+32) has the scale `d·m_g` with
//! `m_g = 2^(3−k_g) ∈ {1, 2, 4, 8}`, k_g the largest k ≤ 3 with max|x_g| ≤ max|x_block|·2^−k. So a
//! group without the block's outliers keeps up to 3 more bits of resolution (LLM activations have a
//! few huge channels; one scale per 256 values rounds much of such a block to 0), and the group
//! factors are shifts of the kernels' 16-bit sums.
//!
//! Error bound (tested in `tests::q8_error_is_within_the_bound`): with `x = d·m_g·q + δ`,
//! `|δ| ≤ d·m_g/2` per element, an output differs from the exact product by at most
//! `Σ_blocks Σ_groups d·m_g/2 · Σ_stages Σ_rows (n_re·|d_re| + n_im·|d_im|)` plus f32 rounding, where
//! `n_re` and `n_im` count the group's entries on each axis.

use super::{stage_scales, QC, QK, STAGE_BYTES};

/// Largest quantized magnitude.
const QMAX: f32 = 127.0;
/// Most doublings of resolution a group gets over its block (m_g ≤ 2^MAX_SHIFT). With 3, the SIMD
/// kernels' 16-bit sums cannot overflow: |Σ_g m_g·Σ (a+1)·q| ≤ 4·8·508 + the offset 4·8·254 < 2^15.
const MAX_SHIFT: i32 = 3;

/// Rounds `v` to the nearest integer (ties to even) for |v| < 2^22: adding and subtracting 1.5·2^23
/// leaves no fraction bits. Baseline x86-64 has no rounding instruction, and `f32::round` would be a
/// `roundf` call per value (measured: 0.5 % of generation time).
#[inline(always)]
fn round_small(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// Quantized activation columns: per column `k` int8 values, per block of 128 complex entries the
/// 128 real parts then the 128 imaginary parts; per block a unit scale, four group factors and the
/// offsets the SIMD kernels start from.
#[derive(Debug, Default)]
pub struct Q8Cols {
    /// Real inputs per column.
    k: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    mul: Vec<i16>,
    neg: Vec<i16>,
    sum: Vec<i32>,
}

/// One quantized column, as the kernels read it.
#[derive(Clone, Copy, Debug)]
pub struct Q8Col<'a> {
    /// `k` values: block b holds q_re[128b..128b+128) then q_im[128b..128b+128).
    pub q: &'a [i8],
    /// One unit scale per block.
    pub d: &'a [f32],
    /// Four group factors m_g per block.
    pub mul: &'a [i16],
    /// Per block 32 values: lane l < 16 is −Σ_g m_g·(q_re[32g+2l] + q_re[32g+2l+1]), lane 16 + l
    /// the same of q_im (the per-lane offsets the SIMD kernels start from; see avx2.rs).
    pub neg: &'a [i16],
    /// Per block Σ_g m_g·Σ q_re of group g, then the same of q_im (what the VNNI kernels' "+1"
    /// adds to a sum; see vnni.rs).
    pub sum: &'a [i32],
}

impl Q8Cols {
    /// Quantizes columns of `k` floats (x_re = x[0..k/2), x_im = x[k/2..k)); `k % 256 == 0`.
    /// A block with a non-finite value gets a NaN scale, so the products it feeds come out NaN, as
    /// the exact path's would.
    pub fn quantize(cols: &[&[f32]], k: usize) -> Q8Cols {
        assert!(k.is_multiple_of(QK), "q8: k must be a multiple of 256");
        let (m, blocks) = (k / 2, k / QK);
        let n = blocks * cols.len();
        let mut out = Q8Cols {
            k,
            q: vec![0i8; k * cols.len()],
            d: vec![0.0f32; n],
            mul: vec![1i16; 4 * n],
            neg: vec![0i16; 32 * n],
            sum: vec![0i32; 2 * n],
        };
        let mut b_all = 0;
        for (x, qc) in cols.iter().zip(out.q.chunks_exact_mut(k)) {
            assert_eq!(x.len(), k, "q8: column length");
            let (x_re, x_im) = x.split_at(m);
            for (b, qb) in qc.chunks_exact_mut(QK).enumerate() {
                let xr = &x_re[b * QC..][..QC];
                let xi = &x_im[b * QC..][..QC];
                let group_max: [f32; 4] = std::array::from_fn(|g| {
                    let (r, i) = (&xr[32 * g..][..32], &xi[32 * g..][..32]);
                    r.iter().chain(i).fold(0.0f32, |a, v| a.max(v.abs()))
                });
                let amax = group_max.iter().fold(0.0f32, |a, &v| a.max(v));
                let has_nan = xr.iter().chain(xi).any(|v| v.is_nan());
                let bi = b_all + b;
                if !amax.is_finite() || has_nan {
                    out.d[bi] = f32::NAN;
                    continue;
                }
                if amax == 0.0 {
                    continue;
                }
                let unit = amax / QMAX / (1 << MAX_SHIFT) as f32;
                out.d[bi] = unit;
                let (qr, qi) = qb.split_at_mut(QC);
                for g in 0..4 {
                    // largest k ≤ 7 with group_max ≤ amax·2^−k (powers of two scale exactly)
                    let shift = (0..=MAX_SHIFT)
                        .rev()
                        .find(|&sh| group_max[g] <= amax / (1u32 << sh) as f32)
                        .unwrap_or(0);
                    let mul = 1i16 << (MAX_SHIFT - shift);
                    out.mul[4 * bi + g] = mul;
                    let inv = 1.0 / (unit * f32::from(mul));
                    let (qr, qi) = (&mut qr[32 * g..][..32], &mut qi[32 * g..][..32]);
                    let (xr, xi) = (&xr[32 * g..][..32], &xi[32 * g..][..32]);
                    for (dst, src) in qr.iter_mut().zip(xr).chain(qi.iter_mut().zip(xi)) {
                        // |src·inv| ≤ 127 up to rounding; the clamp keeps the cast in range
                        *dst = round_small(src * inv).clamp(-QMAX, QMAX) as i8;
                    }
                }
            }
            b_all += blocks;
        }
        // a block whose four factors are equal (the common case) moves its factor m into the unit
        // (d·m, factors 1): the same values, and the kernels skip the shifts
        for (d, mb) in out.d.iter_mut().zip(out.mul.chunks_exact_mut(4)) {
            let m = mb[0];
            if m > 1 && mb.iter().all(|&v| v == m) {
                *d *= f32::from(m);
                mb.fill(1);
            }
        }
        for (((qb, nb), mb), sb) in out
            .q
            .chunks_exact(QK)
            .zip(out.neg.chunks_exact_mut(32))
            .zip(out.mul.chunks_exact(4))
            .zip(out.sum.chunks_exact_mut(2))
        {
            for (half, s) in qb.chunks_exact(QC).zip(sb.iter_mut()) {
                *s = half
                    .chunks_exact(32)
                    .zip(mb)
                    .map(|(g, &m)| i32::from(m) * g.iter().map(|&v| i32::from(v)).sum::<i32>())
                    .sum();
            }
            for (half, lanes) in qb.chunks_exact(QC).zip(nb.chunks_exact_mut(16)) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    // |value| ≤ 4·8·254 = 8128: fits i16
                    *lane = -(0..4)
                        .map(|g| {
                            mb[g]
                                * (i16::from(half[32 * g + 2 * l])
                                    + i16::from(half[32 * g + 2 * l + 1]))
                        })
                        .sum::<i16>();
                }
            }
        }
        out
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.q.len().checked_div(self.k).unwrap_or(0)
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Column `c`.
    pub fn col(&self, c: usize) -> Q8Col<'_> {
        let blocks = self.k / QK;
        Q8Col {
            q: &self.q[c * self.k..][..self.k],
            d: &self.d[c * blocks..][..blocks],
            mul: &self.mul[c * 4 * blocks..][..4 * blocks],
            neg: &self.neg[c * 32 * blocks..][..32 * blocks],
            sum: &self.sum[c * 2 * blocks..][..2 * blocks],
        }
    }
}

/// The four integer sums of one stage record over one block (see [`super`]): (A, B, C, D).
///
/// Branch-free and multiplication-free (codes are random, so branches would mispredict): the sign
/// bit of the code makes a mask m (0 or −1) and `(q ^ m) − m` negates; the axis bit makes a second
/// mask that routes the signed value into the imaginary-axis sums; real-axis sums are total −
/// imaginary. The loop over 32 lanes vectorises with baseline SSE2.
#[inline]
fn stage_sums(codes: &[u8], q_re: &[i8], q_im: &[i8], mul: &[i16]) -> [i32; 4] {
    let (mut t_r, mut t_i, mut i_r, mut i_i) = ([0i32; 32], [0i32; 32], [0i32; 32], [0i32; 32]);
    for (g, (qr, qi)) in q_re.chunks_exact(32).zip(q_im.chunks_exact(32)).enumerate() {
        let mg = i32::from(mul[g]);
        for l in 0..32 {
            let code = i32::from(codes[l] >> (2 * g));
            let neg = -((code >> 1) & 1);
            let imag = -(code & 1);
            // the group factor is a power of two: a shift, not a product
            let sr = ((i32::from(qr[l]) ^ neg) - neg) * mg;
            let si = ((i32::from(qi[l]) ^ neg) - neg) * mg;
            t_r[l] += sr;
            t_i[l] += si;
            i_r[l] += sr & imag;
            i_i[l] += si & imag;
        }
    }
    let sum = |v: [i32; 32]| v.iter().sum::<i32>();
    let (t_r, t_i, i_r, i_i) = (sum(t_r), sum(t_i), sum(i_r), sum(i_i));
    [t_r - i_r, t_i - i_i, i_i, i_r]
}

/// See [`super::Kernel::pair_dot_q8`]; lengths are checked by the caller.
pub fn pair_dot(u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> (f32, f32) {
    let block_bytes = stages * STAGE_BYTES;
    let (mut y_re, mut y_im) = (0.0f32, 0.0f32);
    let blocks = u.chunks_exact(block_bytes).zip(w.chunks_exact(block_bytes));
    let cols = x.q.chunks_exact(QK).zip(x.d).zip(x.mul.chunks_exact(4));
    for ((ub, wb), ((qb, &db), mul)) in blocks.zip(cols) {
        let (q_re, q_im) = qb.split_at(QC);
        for (us, ws) in ub
            .chunks_exact(STAGE_BYTES)
            .zip(wb.chunks_exact(STAGE_BYTES))
        {
            let (ud_re, ud_im) = stage_scales(us);
            let [ua, ub_, uc, ud] = stage_sums(&us[4..], q_re, q_im, mul).map(|v| v as f32);
            let (wd_re, wd_im) = stage_scales(ws);
            let [wa, wb_, wc, wd] = stage_sums(&ws[4..], q_re, q_im, mul).map(|v| v as f32);
            let (ur, ui, wr, wi) = (db * ud_re, db * ud_im, db * wd_re, db * wd_im);
            y_re += ur * ua - ui * uc + wr * wa + wi * wc;
            y_im += ur * ub_ + ui * ud - wr * wb_ + wi * wd;
        }
    }
    (y_re, y_im)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{dequantize, matvec, random_f2i, Rng};
    use super::super::Kernel;
    use super::*;

    /// The bound of the module docs for output pair j:
    /// Σ_b Σ_g d_b·m_g/2 · Σ_stages Σ_rows Σ_{e in g} |d_axis(e)|.
    fn bound(u: &[u8], w: &[u8], stages: usize, x: Q8Col<'_>) -> f64 {
        let block_bytes = stages * STAGE_BYTES;
        let mut total = 0.0f64;
        for row in [u, w] {
            for (b, blk) in row.chunks_exact(block_bytes).enumerate() {
                for rec in blk.chunks_exact(STAGE_BYTES) {
                    let (d_re, d_im) = stage_scales(rec);
                    for g in 0..4 {
                        let step = f64::from(x.d[b]) * f64::from(x.mul[4 * b + g]);
                        let imag = (32 * g..32 * g + 32)
                            .filter(|e| (rec[4 + e % 32] >> (2 * (e / 32))) & 1 == 1)
                            .count() as f64;
                        total += step / 2.0
                            * ((32.0 - imag) * f64::from(d_re.abs())
                                + imag * f64::from(d_im.abs()));
                    }
                }
            }
        }
        total
    }

    /// Every kernel's int8 path against the exact f64 product, within the stated bound.
    #[test]
    fn q8_error_is_within_the_bound() {
        let mut rng = Rng::new(11);
        for stages in 1..=4 {
            for &k in &[256usize, 768] {
                let n_rows = 8;
                let data = random_f2i(&mut rng, k, n_rows, stages);
                let x: Vec<f32> = (0..k)
                    .map(|i| rng.unit() * if i % 97 == 0 { 40.0 } else { 1.0 })
                    .collect();
                let want = matvec(&dequantize(&data, k, n_rows, stages), k, &x);
                let q = Q8Cols::quantize(&[&x], k);
                let row_bytes = k / QK * stages * STAGE_BYTES;
                let n = n_rows / 2;
                for kernel in Kernel::available() {
                    for j in 0..n {
                        let u = &data[j * row_bytes..][..row_bytes];
                        let w = &data[(n + j) * row_bytes..][..row_bytes];
                        let (re, im) = kernel.pair_dot_q8(u, w, stages, q.col(0));
                        let tol = bound(u, w, stages, q.col(0)) * 1.0001 + 1e-6;
                        for (got, want) in [(re, want[j]), (im, want[n + j])] {
                            assert!(
                                (f64::from(got) - want).abs() <= tol,
                                "{:?} t={stages} k={k} j={j}: {got} vs {want}, bound {tol}",
                                kernel.isa()
                            );
                        }
                    }
                }
            }
        }
    }

    /// SIMD int8 kernels equal the scalar int8 kernel up to f32 summation order.
    #[test]
    fn simd_q8_matches_scalar_q8() {
        let mut rng = Rng::new(12);
        for stages in 1..=4 {
            for blocks in 1..=5 {
                let k = blocks * QK;
                let data = random_f2i(&mut rng, k, 2, stages);
                let x: Vec<f32> = (0..k).map(|_| rng.unit() * 3.0).collect();
                let q = Q8Cols::quantize(&[&x], k);
                let (u, w) = data.split_at(data.len() / 2);
                let want = pair_dot(u, w, stages, q.col(0));
                let scale = bound(u, w, stages, q.col(0)) as f32 * 254.0;
                for kernel in Kernel::available() {
                    let got = kernel.pair_dot_q8(u, w, stages, q.col(0));
                    assert!(
                        (got.0 - want.0).abs() <= 1e-5 * scale
                            && (got.1 - want.1).abs() <= 1e-5 * scale,
                        "{:?} t={stages} blocks={blocks}: {got:?} vs {want:?}",
                        kernel.isa()
                    );
                }
            }
        }
    }

    /// The multi-column entry point gives each column what the one-column one gives it.
    #[test]
    fn many_columns_equal_one_at_a_time() {
        let mut rng = Rng::new(13);
        let (k, stages) = (768, 3);
        let data = random_f2i(&mut rng, k, 2, stages);
        let (u, w) = data.split_at(data.len() / 2);
        let xs: Vec<Vec<f32>> = (0..21)
            .map(|_| (0..k).map(|_| rng.unit()).collect())
            .collect();
        let refs: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let q = Q8Cols::quantize(&refs, k);
        let cols: Vec<Q8Col<'_>> = (0..q.len()).map(|c| q.col(c)).collect();
        for kernel in Kernel::available() {
            let mut out = vec![(f32::NAN, f32::NAN); cols.len()];
            kernel.pair_dot_q8_cols(u, w, stages, &cols, &mut out);
            for (c, got) in out.iter().enumerate() {
                assert_eq!(
                    *got,
                    kernel.pair_dot_q8(u, w, stages, cols[c]),
                    "{:?} col {c}",
                    kernel.isa()
                );
            }
        }
    }

    #[test]
    fn quantize_handles_zero_and_non_finite_blocks() {
        let k = 512;
        let mut x = vec![0.0f32; k];
        x[300] = f32::INFINITY; // block 0 of x_im (m = 256: index 300 is x_im[44])
        x[200] = 1.0; // block 1 of x_re
        let q = Q8Cols::quantize(&[&x], k);
        assert!(q.col(0).d[0].is_nan());
        assert_eq!(q.col(0).d[1], 1.0 / 127.0 / 8.0);
        // x_re[200] is entry 72 of block 1: group 2 holds the block maximum (factor 8), the
        // empty groups get the finest step (factor 1)
        assert_eq!(q.col(0).mul[4..8], [1, 1, 8, 1]);
        assert_eq!(q.col(0).q[QK + 200 - QC], 127);
        let zero = Q8Cols::quantize(&[&vec![0.0f32; k]], k);
        assert_eq!(zero.col(0).d, &[0.0, 0.0]);
    }
}
