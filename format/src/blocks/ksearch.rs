//! The scale searches of ggml's k-quant quantizers (`ggml-quants.c` of the pinned llama.cpp b11434),
//! restated from their formulas so that the k-quant encoders give llama-quantize's bytes exactly.
//!
//! Exactness rules, kept throughout: every sum runs in f32, in index order, starting from zero or
//! from the value ggml starts from; every product and sum is grouped as ggml writes it (`w * x * l`
//! is `(w * x) * l`); no fused multiply-add (the reference build targets baseline x86-64, which has
//! none, and Rust never contracts); integers reach f32 through `as f32` (exact for the small values
//! involved); codes are stored through the same integer widths as ggml (a `u8` code of a negative
//! value wraps as C's conversion does). Comparisons keep ggml's strictness and operand order, so
//! NaN inputs take the same branches.

/// Maxima below this count as an all-zero group (`GROUP_MAX_EPS`).
pub(super) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: `v` rounded to the nearest integer, ties to even, read off the mantissa of
/// `v + 1.5 · 2²³`. Exact for |v| ≤ 2²² − 1; beyond that (and for NaN) the same bit arithmetic gives
/// the same wrapped value ggml's release build gives.
#[inline]
pub(super) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `MIN(a, b)`: `a < b ? a : b` (so a NaN `a` gives `b`).
#[inline]
fn min_f(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// ggml's `MAX(a, b)`: `a > b ? a : b`.
#[inline]
fn max_f(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// ggml's f32 → f16 conversion (`GGML_FP32_TO_FP16`): round to nearest even like `half`, except that
/// every NaN becomes the quiet NaN 0x7e00 with the input's sign.
#[inline]
pub(super) fn fp16(v: f32) -> half::f16 {
    if v.is_nan() {
        let sign = ((v.to_bits() >> 16) & 0x8000) as u16;
        half::f16::from_bits(sign | 0x7e00)
    } else {
        half::f16::from_f32(v)
    }
}

/// The value of largest magnitude (the first such), and that magnitude.
#[inline]
fn signed_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        let a = v.abs();
        if a > amax {
            amax = a;
            max = v;
        }
    }
    (max, amax)
}

/// Weight of value `i` in [`make_qx_quants`] with `rmse_type` 1: the importance if given, else x².
#[inline]
fn qx_weight(x: &[f32], qw: Option<&[f32]>, i: usize) -> f32 {
    match qw {
        Some(q) => q[i],
        None => x[i] * x[i],
    }
}

/// Symmetric codes `l ∈ [-nmax, nmax)` for `x ≈ scale · l`, weighted least squares over 19 trial
/// inverse scales `-(nmax + 0.1 k) / max`, k = 0, ±1 … ±9 (ggml's `make_qx_quants` with
/// `rmse_type` 1: weights `qw`, or x² without). Writes `l + nmax` to `codes`, returns the scale.
pub(super) fn make_qx_quants(nmax: i32, x: &[f32], codes: &mut [i8], qw: Option<&[f32]>) -> f32 {
    let n = x.len();
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        codes[..n].fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for i in 0..n {
            let l = code(iscale, x[i]) as f32;
            let w = qx_weight(x, qw, i);
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -nmax_f / max;
    for i in 0..n {
        codes[i] = (nmax + code(iscale, x[i])) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&k| k != 0) {
        iscale = -(nmax_f + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                codes[i] = (nmax + code(iscale, x[i])) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's symmetric codes (ggml's `make_q3_quants` with `do_rmse`): `l ∈ [-nmax, nmax)` from
/// `-nmax / max`, then up to 5 rounds of moving single codes to the value that the x²-weighted
/// least-squares scale of the others asks for, kept when the fit improves. Writes `l + nmax`,
/// returns the scale.
pub(super) fn make_q3_quants(nmax: i32, x: &[f32], codes: &mut [i8]) -> f32 {
    let n = x.len();
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        codes[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        codes[i] = l as i8;
        let w = x[i] * x[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let w = x[i] * x[i];
            let li = f32::from(codes[i]);
            let mut slx = sumlx - w * x[i] * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(codes[i]) {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        codes[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for c in codes[..n].iter_mut() {
        *c = (i32::from(*c) + nmax) as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The trial grid of [`make_qkx_quants`]: `nmax + rmin + rdelta · k` for k = 0..=nstep.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grid {
    /// First offset.
    pub rmin: f32,
    /// Step.
    pub rdelta: f32,
    /// Last k.
    pub nstep: i32,
}

/// Which of ggml's two asymmetric searches [`make_qkx_quants`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Qkx {
    /// `make_qkx2_quants` (reference quantizers): error |d| (`use_mad`) or d², codes of a trial
    /// clamped after rounding, "flat" when max == min.
    V2 {
        /// Absolute instead of squared error.
        mad: bool,
    },
    /// `make_qkx3_quants` (imatrix quantizers): squared error, trial values clamped to `nmax` before
    /// rounding (a trial min near max can make them infinite), "flat" when max <= min.
    V3,
}

/// Asymmetric codes `l ∈ [0, nmax]` for `x ≈ scale · l − the_min` (ggml's `make_qkx2_quants` /
/// `make_qkx3_quants`, as `kind` says): start from the range of `x` (its min clipped to ≤ 0), then try
/// the inverse scales `(nmax + rmin + rdelta k) / (max − min)` and keep the weighted least-squares
/// (scale, min) fit of each trial's codes when it lowers the weighted error. Returns `(scale,
/// the_min)` (`the_min` ≥ 0 is subtracted); codes go to `codes`.
pub(super) fn make_qkx_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    codes: &mut [u8],
    grid: Grid,
    kind: Qkx,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    let flat = match kind {
        Qkx::V2 { .. } => max == min,
        Qkx::V3 => max <= min,
    };
    if flat {
        codes[..n].fill(0);
        return (0.0, -min);
    }
    let mad = matches!(kind, Qkx::V2 { mad: true });
    let err = |d: f32| if mad { d.abs() } else { d * d };
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        codes[i] = l as u8;
        let diff = scale * f32::from(codes[i]) + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if grid.nstep < 1 {
        return (scale, -min);
    }
    let mut trial = [0u8; 32];
    let trial = &mut trial[..n];
    for is in 0..=grid.nstep {
        iscale = (grid.rmin + grid.rdelta * is as f32 + nmax_f) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = match kind {
                Qkx::V2 { .. } => nearest_int(iscale * (x[i] - min)).clamp(0, nmax),
                Qkx::V3 => {
                    let v = iscale * (x[i] - min);
                    if v > 0.0 {
                        nearest_int(min_f(v, nmax_f))
                    } else {
                        0
                    }
                }
            };
            trial[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(trial[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                codes[..n].copy_from_slice(trial);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Codes `l ∈ [0, nmax]` for non-negative `x ≈ scale · l` (ggml's `make_qp_quants`, used on the
/// sub-block scales and mins of the imatrix quantizers): the best of 9 inverse scales
/// `(nmax + 0.1 k) / max` by weighted squared error, then up to 5 rounds of single-code moves as in
/// [`make_q3_quants`]. Returns the weighted least-squares scale of the final codes.
pub(super) fn make_qp_quants(nmax: i32, x: &[f32], codes: &mut [u8], qw: &[f32]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    for &v in x {
        max = max_f(max, v);
    }
    if max < GROUP_MAX_EPS {
        codes[..n].fill(0);
        return 0.0;
    }
    let nmax_f = nmax as f32;
    let mut iscale = nmax_f / max;
    for i in 0..n {
        codes[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * f32::from(codes[i]);
        best_mse += qw[i] * diff * diff;
    }
    for is in (-4..=4).filter(|&k| k != 0) {
        let iscale_is = (0.1 * is as f32 + nmax_f) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        codes[i] = l as u8;
        let lf = l as f32;
        sumlx += qw[i] * x[i] * lf;
        suml2 += qw[i] * lf * lf;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let w = qw[i];
            let li = f32::from(codes[i]);
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(codes[i]) {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        codes[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even_and_wraps_like_ggml() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-2.4), -2);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        assert_eq!(nearest_int(-4_194_303.0), -4_194_303);
        // Out of range (values from the C expression compiled with gcc): 2²³ + 1.5·2²³ = 1.25·2²⁴,
        // whose mantissa bits read 2²¹; a quiet NaN reads 2²².
        assert_eq!(nearest_int(8_388_608.0), -2_097_152);
        assert_eq!(nearest_int(f32::NAN), 0);
    }

    #[test]
    fn fp16_nan_is_ggml_quiet_nan() {
        assert_eq!(fp16(f32::NAN).to_bits(), 0x7e00);
        assert_eq!(fp16(-f32::NAN).to_bits(), 0xfe00);
        assert_eq!(fp16(1.0).to_bits(), 0x3c00);
        assert_eq!(fp16(1e6).to_bits(), 0x7c00);
    }
}
