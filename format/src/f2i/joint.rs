//! Joint multi-stage refinement of one block ([`super::ScaleMode::Joint`], `docs/quantizer.md` §10).
//!
//! The greedy stages of [`super::block`] fit stage k to the residual of stages 1..k−1 and never revisit
//! them. Here all stages of a block are refined together, starting from the block-mode result:
//! 1. **codes**: each entry takes the combination of its t stage codes whose summed value is nearest to
//!    the entry (exhaustive over the 4^t combinations; the per-entry weight does not change an entry's
//!    best combination);
//! 2. **scales**: the 2t scales are refitted jointly by weighted least squares for those codes. The real
//!    part of the reconstruction depends only on the real-axis scales and the imaginary part only on the
//!    imaginary-axis ones, so the 2t × 2t normal equations split into two t × t systems. A singular
//!    system keeps the previous scales of that axis; scales are rounded to f16, and a negative one is
//!    stored as its magnitude with the stage's codes on that axis flipped (the same values).
//!
//! Every candidate is scored by the exact weighted error of the f16 values; a round is kept only if it
//! lowers that error, and the loop stops at the first round that does not (at most [`ROUNDS`] by stage count).

// Small dense numeric loops over stages, entries and equation rows read best with indices.
#![allow(clippy::needless_range_loop)]

use half::f16;

use super::QK_COMPLEX;

/// Most rounds of (codes, scales) refinement per block, by stage count (index t − 1). Every round still
/// lowers the error at 8 (b_normal_64x256 T4: 0.121 after 2 rounds, 0.109 after 4, 0.099 after 8, 0.094
/// after 16); W4 is capped at 4 to keep a 1.5B-parameter model's conversion near 5 minutes on 2 cores.
const ROUNDS: [usize; 4] = [8, 8, 8, 4];

/// The codes and f16 scales (`[real-axis, imaginary-axis]`) of every stage of one block part.
#[derive(Clone, Copy)]
pub(crate) struct BlockState {
    pub(crate) codes: [[u8; QK_COMPLEX]; 4],
    pub(crate) d: [[f16; 2]; 4],
}

impl Default for BlockState {
    fn default() -> BlockState {
        BlockState {
            codes: [[0; QK_COMPLEX]; 4],
            d: [[f16::ZERO; 2]; 4],
        }
    }
}

/// Weighted squared error Σ_e h_e |x_e − Σ_k q_k,e|² of the state's values (exact f16 sums, f64).
pub(crate) fn weighted_error(
    x: &[[f32; QK_COMPLEX]; 2],
    h: &[f32; QK_COMPLEX],
    t: usize,
    st: &BlockState,
) -> f64 {
    let (vr, vi) = stage_values(t, st);
    let mut err = 0f64;
    for e in 0..QK_COMPLEX {
        let (mut r, mut i) = (f64::from(x[0][e]), f64::from(x[1][e]));
        for k in 0..t {
            let c = usize::from(st.codes[k][e] & 3);
            r -= vr[k][c];
            i -= vi[k][c];
        }
        err += f64::from(h[e]) * (r * r + i * i);
    }
    err
}

/// The real and imaginary parts of each stage's four code values (exact, from the f16 scales).
fn stage_values(t: usize, st: &BlockState) -> ([[f64; 4]; 4], [[f64; 4]; 4]) {
    let mut vr = [[0f64; 4]; 4];
    let mut vi = [[0f64; 4]; 4];
    for k in 0..t {
        let (a, b) = (
            f64::from(st.d[k][0].to_f32()),
            f64::from(st.d[k][1].to_f32()),
        );
        vr[k] = [a, 0.0, -a, 0.0];
        vi[k] = [0.0, b, 0.0, -b];
    }
    (vr, vi)
}

/// Refines `st` (the block-mode result of `t` stages for the entries `x` = [re, im] with weights `h`)
/// in place; never returns a state with a larger weighted error.
pub(crate) fn refine(
    x: &[[f32; QK_COMPLEX]; 2],
    h: &[f32; QK_COMPLEX],
    t: usize,
    st: &mut BlockState,
) {
    let mut best = weighted_error(x, h, t, st);
    for _ in 0..ROUNDS[t - 1] {
        if best == 0.0 {
            break;
        }
        let mut cand = *st;
        pick_codes(x, t, &mut cand);
        let after_codes = weighted_error(x, h, t, &cand);
        let codes_only = cand;
        fit_scales(x, h, t, &mut cand);
        let after_fit = weighted_error(x, h, t, &cand);
        let (err, next) = if after_fit <= after_codes {
            (after_fit, cand)
        } else {
            (after_codes, codes_only)
        };
        if err < best {
            let gain = best - err;
            best = err;
            *st = next;
            if gain <= best * 1e-6 {
                break;
            }
        } else {
            break;
        }
    }
}

/// Step 1: every entry takes the combination of stage codes nearest to it, for the current scales
/// (exhaustive: no combination is skipped that could be nearer). Combination index = stage 1's code in the
/// lowest bits. A tie keeps the entry's current combination.
///
/// The 4^t values are the sums of a prefix value (stages 1..t−2, 4^(t−2) of them) and a suffix value
/// (the last two stages, 16). A prefix whose distance to the entry exceeds the current best by more than
/// the largest suffix magnitude cannot hold the nearest value and is skipped (a triangle-inequality
/// bound); the current combination is the first best. For t = 4 this visits a few prefixes of 16.
fn pick_codes(x: &[[f32; QK_COMPLEX]; 2], t: usize, st: &mut BlockState) {
    const SUF: usize = 16;
    let (vr, vi) = stage_values(t, st);
    let (p, s0) = if t >= 2 { (t - 2, t - 2) } else { (0, 0) };
    let n_pre = 1usize << (2 * p);
    let n_suf = 1usize << (2 * (t - s0));
    // Prefix values (f64 sums rounded once) and suffix values, padded to 16 with a far point.
    let mut ar = [0f32; 64];
    let mut ai = [0f32; 64];
    for c in 0..n_pre {
        let (mut sr, mut si) = (0f64, 0f64);
        for k in 0..p {
            let code = (c >> (2 * k)) & 3;
            sr += vr[k][code];
            si += vi[k][code];
        }
        (ar[c], ai[c]) = (sr as f32, si as f32);
    }
    let mut br = [f32::MAX; SUF];
    let mut bi = [f32::MAX; SUF];
    let mut radius = 0f32;
    for c in 0..n_suf {
        let (mut sr, mut si) = (0f64, 0f64);
        for k in s0..t {
            let code = (c >> (2 * (k - s0))) & 3;
            sr += vr[k][code];
            si += vi[k][code];
        }
        (br[c], bi[c]) = (sr as f32, si as f32);
        radius = radius.max((sr * sr + si * si).sqrt() as f32);
    }
    // Slack for the f32 roundings of the bound: never skips a prefix that could win by more than that.
    let radius = radius * (1.0 + 1e-5) + f32::MIN_POSITIVE;
    for e in 0..QK_COMPLEX {
        let (xr, xi) = (x[0][e], x[1][e]);
        let cur = (0..t).fold(0usize, |c, k| {
            c | (usize::from(st.codes[k][e] & 3) << (2 * k))
        });
        let (cp, cs) = (cur & (n_pre - 1), cur >> (2 * p));
        let mut best = {
            let (dr, di) = (xr - ar[cp] - br[cs], xi - ai[cp] - bi[cs]);
            dr * dr + di * di
        };
        if !best.is_finite() {
            continue; // an overflowing distance: keep the current codes of this entry
        }
        let mut pick = cur;
        // A prefix at squared distance > (radius + √best)² cannot beat `best`.
        let bound = |best: f32| (radius + best.sqrt()).powi(2);
        let mut skip = bound(best);
        for pre in 0..n_pre {
            let (yr, yi) = (xr - ar[pre], xi - ai[pre]);
            if yr * yr + yi * yi > skip {
                continue;
            }
            let mut d = [0f32; SUF];
            for l in 0..SUF {
                let (dr, di) = (yr - br[l], yi - bi[l]);
                d[l] = dr * dr + di * di;
            }
            if min16(&d) >= best {
                continue;
            }
            for (l, &dl) in d.iter().enumerate() {
                if dl < best {
                    best = dl;
                    pick = pre | (l << (2 * p));
                }
            }
            skip = bound(best);
        }
        for k in 0..t {
            st.codes[k][e] = ((pick >> (2 * k)) & 3) as u8;
        }
    }
}

/// The smallest of 16 values (NaN-free inputs), as a tree of lane-wise minima.
#[inline]
fn min16(d: &[f32; 16]) -> f32 {
    let mut m8 = [0f32; 8];
    for l in 0..8 {
        m8[l] = if d[l] < d[l + 8] { d[l] } else { d[l + 8] };
    }
    let mut m4 = [0f32; 4];
    for l in 0..4 {
        m4[l] = if m8[l] < m8[l + 4] { m8[l] } else { m8[l + 4] };
    }
    let a = if m4[0] < m4[2] { m4[0] } else { m4[2] };
    let b = if m4[1] < m4[3] { m4[1] } else { m4[3] };
    if a < b {
        a
    } else {
        b
    }
}

/// Step 2: the weighted least-squares scales of every stage for the current codes, one t × t system per
/// axis, rounded to f16 and made non-negative.
fn fit_scales(x: &[[f32; QK_COMPLEX]; 2], h: &[f32; QK_COMPLEX], t: usize, st: &mut BlockState) {
    for axis in 0..2 {
        let mut g = [[0f64; 4]; 4];
        let mut b = [0f64; 4];
        for e in 0..QK_COMPLEX {
            // Sign of each stage's unit value on this axis (0 off the axis).
            let mut s = [0f64; 4];
            for (k, sk) in s.iter_mut().enumerate().take(t) {
                let c = st.codes[k][e];
                if usize::from(c & 1) == axis {
                    *sk = if c & 2 == 0 { 1.0 } else { -1.0 };
                }
            }
            let hw = f64::from(h[e]);
            let xv = f64::from(x[axis][e]);
            for k in 0..t {
                if s[k] == 0.0 {
                    continue;
                }
                b[k] += hw * s[k] * xv;
                for l in 0..t {
                    g[k][l] += hw * s[k] * s[l];
                }
            }
        }
        // Stages with no entry on this axis keep their scale (it multiplies nothing).
        let vars: Vec<usize> = (0..t).filter(|&k| g[k][k] > 0.0).collect();
        let Some(sol) = solve(&g, &b, &vars) else {
            continue; // singular: keep the previous scales of this axis
        };
        let mut next = *st;
        let mut ok = true;
        for (&k, &v) in vars.iter().zip(&sol) {
            let d = f16::from_f64(v);
            if !d.is_finite() {
                ok = false;
                break;
            }
            next.d[k][axis] = d;
            if d.is_sign_negative() {
                // −d with the codes of this axis flipped: the same stage values, a non-negative scale.
                next.d[k][axis] = -d;
                for c in next.codes[k].iter_mut() {
                    if usize::from(*c & 1) == axis {
                        *c ^= 2;
                    }
                }
            }
        }
        if ok {
            *st = next;
        }
    }
}

/// Solves the sub-system of `g x = b` on the variables `vars` by Gaussian elimination with partial
/// pivoting; `None` when it is (numerically) singular.
fn solve(g: &[[f64; 4]; 4], b: &[f64; 4], vars: &[usize]) -> Option<Vec<f64>> {
    let n = vars.len();
    let mut a = [[0f64; 5]; 4];
    let mut scale = 0f64;
    for (r, &kr) in vars.iter().enumerate() {
        for (c, &kc) in vars.iter().enumerate() {
            a[r][c] = g[kr][kc];
        }
        a[r][n] = b[kr];
        scale = scale.max(g[kr][kr]);
    }
    for col in 0..n {
        let piv = (col..n).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))?;
        let pivot = a[piv][col].abs();
        if pivot.is_nan() || pivot <= scale * 1e-9 {
            return None;
        }
        a.swap(col, piv);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            for c in col..=n {
                a[r][c] -= f * a[col][c];
            }
        }
    }
    let mut x = vec![0f64; n];
    for r in (0..n).rev() {
        let mut v = a[r][n];
        for c in r + 1..n {
            v -= a[r][c] * x[c];
        }
        x[r] = v / a[r][r];
        if !x[r].is_finite() {
            return None;
        }
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn solve_handles_regular_and_singular_systems() {
        let g = [
            [4.0, 1.0, 0.0, 0.0],
            [1.0, 3.0, 0.0, 0.0],
            [0.0; 4],
            [0.0; 4],
        ];
        let b = [1.0, 2.0, 0.0, 0.0];
        let x = solve(&g, &b, &[0, 1]).unwrap();
        assert!((4.0 * x[0] + x[1] - 1.0).abs() < 1e-12);
        assert!((x[0] + 3.0 * x[1] - 2.0).abs() < 1e-12);
        let s = [
            [1.0, 1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0],
            [0.0; 4],
            [0.0; 4],
        ];
        assert!(solve(&s, &b, &[0, 1]).is_none());
        assert_eq!(solve(&s, &b, &[]), Some(vec![]));
    }

    #[test]
    fn refine_never_increases_the_error_and_keeps_scales_non_negative() {
        let mut seed = 7;
        for t in 1..=4 {
            let mut x = [[0f32; QK_COMPLEX]; 2];
            let mut h = [0f32; QK_COMPLEX];
            for e in 0..QK_COMPLEX {
                x[0][e] = lcg(&mut seed) * (1.0 + (e % 7) as f32);
                x[1][e] = lcg(&mut seed);
                h[e] = 0.01 + lcg(&mut seed).abs();
            }
            // A poor start: every stage +1 with small scales.
            let mut st = BlockState::default();
            for k in 0..t {
                st.d[k] = [f16::from_f32(0.1 / (k + 1) as f32), f16::from_f32(0.05)];
            }
            let before = weighted_error(&x, &h, t, &st);
            refine(&x, &h, t, &mut st);
            let after = weighted_error(&x, &h, t, &st);
            assert!(after <= before, "t={t}: {after} > {before}");
            assert!(after < 0.8 * before, "t={t}: {after} vs {before}");
            for k in 0..t {
                assert!(!st.d[k][0].is_sign_negative() && !st.d[k][1].is_sign_negative());
            }
        }
    }
}
