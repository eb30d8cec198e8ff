//! PhaseQuant, one stage (`docs/quantizer.md` §2, `docs/fairy2i-math.md` §2): the code of each complex entry
//! (comparison rule with the exact tie and signed-zero rules, no atan2) and the per-tensor scales (the
//! exact mean of the magnitudes on each axis, rounded once to bf16, floored at bf16(1e-6)).

use super::round::{SCALE_EMPTY, SCALE_FLOOR};

/// The PhaseQuant code (i^c, `c ∈ {0,1,2,3}`) of the complex value `re + i·im`.
///
/// The larger of |re|, |im| picks the axis and its sign the direction. Ties |re| = |im| ≠ 0 go to the
/// imaginary axis when re and im have the same sign (θ = π/4 → +i, −3π/4 → −i), else to the real axis
/// (sign of re). (±0, ±0) is +1, except (−0, −0), which is −1 (torch.angle gives π there).
/// A NaN lands on the real axis; the quantizer rejects non-finite input before this is reached.
#[inline(always)]
pub fn phase_code(re: f32, im: f32) -> u8 {
    code_from_bits(re.to_bits(), im.to_bits()) as u8
}

/// [`phase_code`] on raw bits, branch-free (the hot loops use this).
#[inline(always)]
pub(crate) fn code_from_bits(rb: u32, ib: u32) -> u32 {
    let ar = rb & 0x7fff_ffff;
    let ai = ib & 0x7fff_ffff;
    let sr = rb >> 31;
    let si = ib >> 31;
    // For non-negative finite floats the bit patterns order like the values.
    let imag = (ai > ar) | ((ai == ar) & (ai != 0) & (sr == si));
    let code_im = 1 | (si << 1);
    let code_re = (sr & (u32::from(ar != 0) | si)) << 1;
    if imag {
        code_im
    } else {
        code_re
    }
}

/// Interleaved copies of the bins, so that consecutive entries with the same exponent do not wait on
/// each other's store.
const LANES: usize = 4;
/// Entries handled by one [`classify_batch`] call.
pub(crate) const BATCH: usize = 256;

/// Exact sums of the on-axis magnitudes of a stage, per axis (0 = real, 1 = imaginary).
///
/// Magnitudes are binned by axis and f32 exponent and their 24-bit significands added as integers, so
/// the total is exact whatever the order of addition (threads merge their bins). A bin overflows only
/// after 2^40 entries; the quantizer refuses tensors that large.
#[derive(Clone)]
pub(crate) struct AxisSums {
    /// `bins[lane][axis * 256 + exponent]`, on the heap (the sums travel through rayon's reductions).
    bins: Box<[[u64; 512]; LANES]>,
    counts: [u64; 2],
}

impl Default for AxisSums {
    fn default() -> Self {
        AxisSums {
            bins: Box::new([[0; 512]; LANES]),
            counts: [0; 2],
        }
    }
}

/// Bin index (`axis·256 + exponent`) and integer significand of magnitude bits `mag` on axis `axis`.
#[cfg(test)]
fn bin_of(axis: u32, mag: u32) -> (usize, u32) {
    let e = (mag >> 23) & 0xff;
    let sig = (mag & 0x7f_ffff) | (u32::from(e != 0) << 23);
    ((((axis & 1) << 8) | e) as usize, sig)
}

impl AxisSums {
    /// Adds the magnitude with bits `mag` (sign bit clear) on axis `axis` (0 or 1); the one-entry form
    /// of [`classify_batch`], for tests.
    #[cfg(test)]
    pub(crate) fn add(&mut self, axis: usize, mag: u32) {
        let (i, sig) = bin_of(axis as u32, mag);
        self.bins[0][i] += u64::from(sig);
        self.counts[axis & 1] += 1;
    }

    /// Adds the classification of one entry with bits `rb`, `ib` and returns its code (tests).
    #[cfg(test)]
    pub(crate) fn classify(&mut self, rb: u32, ib: u32) -> u32 {
        let c = code_from_bits(rb, ib);
        let mag = if c & 1 == 0 { rb } else { ib } & 0x7fff_ffff;
        self.add((c & 1) as usize, mag);
        c
    }

    /// Adds another thread's sums.
    pub(crate) fn merge(mut self, other: AxisSums) -> AxisSums {
        for (a, b) in self.bins.iter_mut().zip(other.bins.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += *y;
            }
        }
        for (x, y) in self.counts.iter_mut().zip(other.counts) {
            *x += y;
        }
        self
    }

    /// The scale of axis `axis` (0 = real, 1 = imaginary): bf16(exact mean) floored at bf16(1e-6), or
    /// the f32 1e-6 when the axis has no entries.
    pub(crate) fn scale(&self, axis: usize) -> f32 {
        let axis = axis & 1;
        let count = self.counts[axis];
        if count == 0 {
            return SCALE_EMPTY;
        }
        let mut bins = [0u64; 256];
        for lane in self.bins.iter() {
            for (b, x) in bins.iter_mut().zip(&lane[axis * 256..axis * 256 + 256]) {
                *b += *x;
            }
        }
        mean_bf16(&bins, count).max(SCALE_FLOOR)
    }
}

/// Codes of `re[i] + i·im[i]` into `codes` and their magnitudes into `acc`, for up to [`BATCH`] entries
/// (the shortest slice decides). A branch-free pass that the compiler vectorizes fills the bin indices
/// and significands; a short scalar loop then adds them to the bins.
#[inline(always)]
pub(crate) fn classify_batch(re: &[f32], im: &[f32], codes: &mut [u8], acc: &mut AxisSums) {
    let n = re.len().min(im.len()).min(codes.len()).min(BATCH);
    let (re, im, codes) = (&re[..n], &im[..n], &mut codes[..n]);
    let mut idx = [0u16; BATCH];
    let mut sig = [0u32; BATCH];
    let mut n_im = 0u32;
    for i in 0..n {
        let (rb, ib) = (re[i].to_bits(), im[i].to_bits());
        let c = code_from_bits(rb, ib);
        let axis = c & 1;
        let mag = if axis == 0 { rb } else { ib } & 0x7fff_ffff;
        let e = mag >> 23;
        idx[i] = ((axis << 8) | e) as u16;
        sig[i] = (mag & 0x7f_ffff) | (u32::from(e != 0) << 23);
        codes[i] = c as u8;
        n_im += axis;
    }
    let (idx, sig) = (&idx[..n], &sig[..n]);
    let [b0, b1, b2, b3] = &mut *acc.bins;
    let mut chunks = idx.chunks_exact(LANES).zip(sig.chunks_exact(LANES));
    for (i, s) in &mut chunks {
        b0[usize::from(i[0]) & 511] += u64::from(s[0]);
        b1[usize::from(i[1]) & 511] += u64::from(s[1]);
        b2[usize::from(i[2]) & 511] += u64::from(s[2]);
        b3[usize::from(i[3]) & 511] += u64::from(s[3]);
    }
    let tail = n - n % LANES;
    for (i, s) in idx[tail..].iter().zip(&sig[tail..]) {
        b0[usize::from(*i) & 511] += u64::from(*s);
    }
    acc.counts[1] += u64::from(n_im);
    acc.counts[0] += (n as u64) - u64::from(n_im);
}

/// 384-bit unsigned integer, little-endian limbs.
type Big = [u64; 6];

fn add_shifted(big: &mut Big, v: u64, shift: usize) {
    let word = shift / 64;
    let bit = shift % 64;
    let lo = v << bit;
    let hi = if bit == 0 { 0 } else { v >> (64 - bit) };
    let mut carry = 0u64;
    for (i, add) in [(word, lo), (word + 1, hi)] {
        if let Some(limb) = big.get_mut(i) {
            let (s1, c1) = limb.overflowing_add(add);
            let (s2, c2) = s1.overflowing_add(carry);
            *limb = s2;
            carry = u64::from(c1) + u64::from(c2);
        }
    }
    let mut i = word + 2;
    while carry != 0 && i < big.len() {
        let (s, c) = big[i].overflowing_add(carry);
        big[i] = s;
        carry = u64::from(c);
        i += 1;
    }
}

fn bit_len(big: &Big) -> usize {
    for i in (0..big.len()).rev() {
        if big[i] != 0 {
            return 64 * i + 64 - big[i].leading_zeros() as usize;
        }
    }
    0
}

fn bit(big: &Big, i: usize) -> u128 {
    big.get(i / 64)
        .map_or(0, |w| u128::from((w >> (i % 64)) & 1))
}

/// The exact mean `Σ bins[e]·2^(max(e,1)−150) / count`, rounded once to bf16 (ties to even) and returned
/// as an f32. Means below f32's normal range come back as 0 (the caller's floor is far above them).
pub(crate) fn mean_bf16(bins: &[u64; 256], count: u64) -> f32 {
    if count == 0 {
        return 0.0;
    }
    let mut big: Big = [0; 6];
    for (e, &s) in bins.iter().enumerate() {
        if s != 0 {
            add_shifted(&mut big, s, e.max(1) - 1);
        }
    }
    // big · 2^-149 is the exact sum. Take its top 127 bits as `head` with `big = head·2^shift + rest`.
    let len = bit_len(&big);
    if len == 0 {
        return 0.0;
    }
    let (head, shift, mut sticky): (u128, i64, bool) = if len <= 127 {
        let v = u128::from(big[0]) | (u128::from(big[1]) << 64);
        (v << (127 - len), len as i64 - 127, false)
    } else {
        let shift = len - 127;
        let mut head = 0u128;
        for i in (shift..len).rev() {
            head = (head << 1) | bit(&big, i);
        }
        let rest = (0..shift).any(|i| bit(&big, i) != 0);
        (head, shift as i64, rest)
    };
    // mean = (head / count) · 2^(shift − 149); head / count = q + frac, 0 ≤ frac < 1.
    let count = u128::from(count);
    let q = head / count;
    sticky |= head % count != 0;
    // q ≥ 2^126 / 2^64 = 2^62: plenty of bits below the 8 kept ones.
    let qb = 128 - q.leading_zeros() as i64;
    let mut drop = qb - 8;
    let mut kept = q >> drop;
    let rem = q & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    if rem > half || (rem == half && (sticky || kept & 1 == 1)) {
        kept += 1;
        if kept == 256 {
            kept = 128;
            drop += 1;
        }
    }
    // value = kept · 2^(drop + shift − 149), kept in [2^7, 2^8).
    let exp = drop + shift - 149 + 7;
    if exp < -126 {
        return 0.0;
    }
    if exp > 127 {
        return f32::INFINITY;
    }
    let bits = (((exp + 127) as u32) << 23) | (((kept as u32) - 128) << 16);
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of(values: &[f32]) -> f32 {
        let mut acc = AxisSums::default();
        for v in values {
            acc.add(0, v.abs().to_bits());
        }
        let mut bins = [0u64; 256];
        bins.copy_from_slice(&acc.bins[0][..256]);
        mean_bf16(&bins, acc.counts[0])
    }

    #[test]
    fn codes_follow_the_comparison_rule() {
        // docs/fairy2i-math.md §2 and format/tests/data/golden/README.md facts 1-2.
        let a = 0.375f32;
        assert_eq!(phase_code(1.0, 0.5), 0);
        assert_eq!(phase_code(-1.0, 0.5), 2);
        assert_eq!(phase_code(0.5, 1.0), 1);
        assert_eq!(phase_code(0.5, -1.0), 3);
        assert_eq!(phase_code(a, a), 1);
        assert_eq!(phase_code(-a, -a), 3);
        assert_eq!(phase_code(a, -a), 0);
        assert_eq!(phase_code(-a, a), 2);
        assert_eq!(phase_code(0.0, 0.0), 0);
        assert_eq!(phase_code(-0.0, 0.0), 0);
        assert_eq!(phase_code(0.0, -0.0), 0);
        assert_eq!(phase_code(-0.0, -0.0), 2);
        assert_eq!(phase_code(0.0, 1e-30), 1);
        assert_eq!(phase_code(-0.0, -1e-30), 3);
        assert_eq!(phase_code(-1e-30, 0.0), 2);
    }

    #[test]
    fn codes_agree_with_the_angle_away_from_boundaries() {
        let mut s: u64 = 99;
        for _ in 0..100_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let re = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            let im = ((s >> 16 & 0xff_ffff) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            let th = (im as f64).atan2(re as f64);
            let q = std::f64::consts::FRAC_PI_4;
            if ((th / q).round() - th / q).abs() < 1e-6 && (th / q).round() as i64 % 2 != 0 {
                continue;
            }
            let want = if (-q..q).contains(&th) {
                0
            } else if (q..3.0 * q).contains(&th) {
                1
            } else if (-3.0 * q..-q).contains(&th) {
                3
            } else {
                2
            };
            assert_eq!(phase_code(re, im), want, "{re} {im}");
        }
    }

    #[test]
    fn mean_is_exact_then_rounded_once() {
        // Values picked by hand: bf16 has 8 significant bits, ulp(1) = 2^-7.
        let u = 2f32.powi(-7);
        assert_eq!(mean_of(&[1.0, 1.0 + u]), 1.0); // exact tie 1 + 2^-8 → even (1.0)
        assert_eq!(mean_of(&[1.0 + u, 1.0 + 2.0 * u]), 1.0 + 2.0 * u); // tie 1 + 3·2^-8 → even
                                                                       // Just above the tie: the sticky bit decides.
        assert_eq!(mean_of(&[1.0, 1.0 + u + 2f32.powi(-20)]), 1.0 + u);
        // A mean of 1/3 (bf16(1/3) = 0.333984375).
        assert_eq!(mean_of(&[0.0, 0.0, 1.0]), 171.0 / 512.0);
        // Widely spread exponents: 2^100 and 2^-100, mean 2^99 (+ tiny) → 2^99.
        assert_eq!(mean_of(&[2f32.powi(100), 2f32.powi(-100)]), 2f32.powi(99));
        // Subnormal inputs count exactly: mean of 4 × 2^-149 = 2^-149 → below normal range → 0.
        assert_eq!(mean_of(&[f32::from_bits(1); 4]), 0.0);
        assert_eq!(mean_of(&[3.0; 1000]), 3.0);
        // 0.1 (f32) ten times: the exact mean is f32(0.1), whose bf16 is 0.10009765625.
        assert_eq!(mean_of(&[0.1; 10]), 205.0 / 2048.0);
        // Rounding up across a power of two.
        assert_eq!(mean_of(&[2.0 - 2f32.powi(-9)]), 2.0);
    }

    #[test]
    fn batches_bin_like_single_entries() {
        let mut x: u32 = 5;
        let mut vals = Vec::new();
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            vals.push(f32::from_bits(x & 0xbfff_ffff)); // finite, any sign
        }
        vals.extend([0.0, -0.0, 1.0, -1.0, 1e-40, -1e-40]);
        let (re, im) = vals.split_at(vals.len() / 2);
        let (mut one, mut batch) = (AxisSums::default(), AxisSums::default());
        let mut codes = vec![0u8; re.len()];
        for ((r, i), c) in re
            .chunks(BATCH)
            .zip(im.chunks(BATCH))
            .zip(codes.chunks_mut(BATCH))
        {
            classify_batch(r, i, c, &mut batch);
        }
        for (k, (r, i)) in re.iter().zip(im).enumerate() {
            assert_eq!(one.classify(r.to_bits(), i.to_bits()) as u8, codes[k]);
            assert_eq!(codes[k], phase_code(*r, *i));
        }
        assert_eq!(one.counts, batch.counts);
        for axis in 0..2 {
            assert_eq!(one.scale(axis).to_bits(), batch.scale(axis).to_bits());
        }
    }

    #[test]
    fn scales_are_floored_or_empty() {
        let mut acc = AxisSums::default();
        acc.add(0, 0);
        acc.add(0, 0);
        assert_eq!(acc.scale(0), SCALE_FLOOR);
        assert_eq!(acc.scale(1), SCALE_EMPTY);
        assert_eq!(acc.counts, [2, 0]);
        let mut b = AxisSums::default();
        b.add(1, 0.5f32.to_bits());
        let acc = acc.merge(b);
        assert_eq!(acc.scale(1), 0.5);
    }
}
