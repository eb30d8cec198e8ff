//! Property tests of the F2I layout and quantizer (issue 3, item 4). Expected values come from the
//! definitions (exact arithmetic, f64 atan2, the llama.cpp permutation), never from the code under test.

use fairy2i_format::f2i::{
    pack_codes, phase_code, quantize, quantize_tensor, split::merge_entry, split::split_entry,
    unpack_codes, QuantOptions,
};
use fairy2i_format::permute::{llama_qk_permutation, permute_rows, preserves_pairing};
use proptest::prelude::*;

/// A bf16 value with exponent in [-6, 6]: sums and differences of two of them are exact in f32.
fn moderate_bf16() -> impl Strategy<Value = f32> {
    (any::<bool>(), -6i32..=6, 0u32..128).prop_map(|(neg, e, mant)| {
        let v = (1.0 + mant as f32 / 128.0) * 2f32.powi(e);
        if neg {
            -v
        } else {
            v
        }
    })
}

/// Any finite bf16 value (as f32), zeros and subnormals included.
fn any_bf16() -> impl Strategy<Value = f32> {
    any::<u16>()
        .prop_filter("finite", |b| (b >> 7) & 0xff != 0xff)
        .prop_map(|b| f32::from_bits(u32::from(b) << 16))
}

fn xorshift_matrix(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // bf16 values in (-1, 1)
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            fairy2i_format::f2i::round_bf16(2.0 * u - 1.0)
        })
        .collect()
}

fn opts(stages: usize, bf16_rounding: bool) -> QuantOptions<'static> {
    QuantOptions {
        stages,
        bf16_rounding,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// docs/fairy2i-math.md §1: the inverse split rebuilds the real weights exactly.
    #[test]
    fn split_then_inverse_is_exact(a in [moderate_bf16(), moderate_bf16(), moderate_bf16(), moderate_bf16()]) {
        let [ur, ui, wr, wi] = split_entry(a[0], a[1], a[2], a[3], false);
        let back = merge_entry(ur.into(), ui.into(), wr.into(), wi.into());
        for (x, y) in a.iter().zip(back) {
            prop_assert_eq!(f64::from(*x), y);
        }
    }

    /// docs/format.md: byte k holds entries k, k+32, k+64, k+96; packing and unpacking are inverse.
    #[test]
    fn pack_unpack_round_trip(codes in prop::collection::vec(0u8..4, 128), qs in any::<[u8; 32]>()) {
        let codes: [u8; 128] = codes.try_into().unwrap();
        let packed = pack_codes(&codes);
        prop_assert_eq!(unpack_codes(&packed), codes);
        for (e, &c) in codes.iter().enumerate() {
            prop_assert_eq!((packed[e % 32] >> (2 * (e / 32))) & 3, c);
        }
        prop_assert_eq!(pack_codes(&unpack_codes(&qs)), qs);
    }

    /// The comparison rule is the angle rule of docs/fairy2i-math.md §2 on every bf16 pair off the ties
    /// (the angle taken with f64 atan2; bf16 pairs are never within rounding distance of a boundary).
    #[test]
    fn codes_follow_the_angle(re in any_bf16(), im in any_bf16()) {
        prop_assume!(re.abs() != im.abs());
        let th = f64::from(im).atan2(f64::from(re));
        let q = std::f64::consts::FRAC_PI_4;
        let want = if (-q..q).contains(&th) {
            0
        } else if (q..3.0 * q).contains(&th) {
            1
        } else if (-3.0 * q..-q).contains(&th) {
            3
        } else {
            2
        };
        prop_assert_eq!(phase_code(re, im), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// More stages never make the Frobenius error worse, beyond two documented effects: a residual
    /// already below the bf16(1e-6) scale floor can grow by the floor (4e-6 rms of slack), and with
    /// bf16 rounding each residual is rounded (relative 2^-8 per stage, 2^-7 of slack).
    #[test]
    fn error_does_not_grow_with_stages(
        n in 1usize..8,
        m in 1usize..24,
        seed in any::<u64>(),
        bf16_rounding in any::<bool>(),
    ) {
        let (rows, cols) = (2 * n, 2 * m);
        let a = xorshift_matrix(seed, rows * cols);
        let mut prev = f64::INFINITY;
        for t in 1..=4 {
            let q = quantize(&a, cols, rows, &opts(t, bf16_rounding)).unwrap();
            let back = q.dequantize();
            let sq: f64 = a.iter().zip(&back).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum();
            let rms = (sq / a.len() as f64).sqrt();
            let rel = if bf16_rounding { 2f64.powi(-7) } else { 1e-6 };
            prop_assert!(rms <= prev * (1.0 + rel) + 4e-6, "T{t}: rms {rms} after {prev}");
            prev = rms;
        }
    }

    /// docs/format.md §8 (head layouts): with an even head count the llama Q/K permutation maps row
    /// pairs to row pairs, so quantizing the permuted matrix gives the permuted rows of the quantized one.
    #[test]
    fn llama_permutation_commutes_with_quantization(
        half_heads in 1usize..4,
        half_dim in 1usize..5,
        blocks in 1usize..3,
        seed in any::<u64>(),
        stages in 1usize..5,
        bf16_rounding in any::<bool>(),
    ) {
        let (n_head, hd, cols) = (2 * half_heads, 2 * half_dim, 256 * blocks);
        let rows = n_head * hd;
        let a = xorshift_matrix(seed, rows * cols);
        let perm = llama_qk_permutation(rows, n_head).unwrap();
        prop_assert!(preserves_pairing(&perm));
        let o = opts(stages, bf16_rounding);
        let q_of_permuted = quantize_tensor(&permute_rows(&a, cols, &perm).unwrap(), cols, rows, &o).unwrap();
        let q = quantize_tensor(&a, cols, rows, &o).unwrap();
        let row_bytes = q.len() / rows;
        prop_assert_eq!(q_of_permuted, permute_rows(&q, row_bytes, &perm).unwrap());
    }
}
