//! F2I product kernels (docs/backend.md §2; math: docs/fairy2i-math.md §1 and §5; bytes: docs/format.md).
//!
//! The unit of work is one output pair for one activation column: stored rows j (U row j) and n+j
//! (W row j) against x = (x_re | x_im) = (x[0..m) | x[m..2m)) give y[j] = Re(y_c[j]) and
//! y[j+n] = Im(y_c[j]), where y_c = U z + W conj(z) and z = x_re + i·x_im.
//!
//! Per block (128 complex entries), stage and row, a kernel forms four sums of ±x only:
//! A = Σ_real s·x_re, B = Σ_real s·x_im, C = Σ_imag s·x_im, D = Σ_imag s·x_re, where "real" are
//! the entries with code 0/2 (±1), "imag" those with code 1/3 (±i) and s the sign (code 2/3 → −1).
//! The two f16 scales of the stage are applied once to these sums:
//!
//! ```text
//! U row: y_re += d_re·A − d_im·C    y_im += d_re·B + d_im·D
//! W row: y_re += d_re·A + d_im·C    y_im += −d_re·B + d_im·D
//! ```

pub mod q8;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;
#[cfg(target_arch = "x86_64")]
pub mod vnni;

/// Bytes of one stage record: `d_re`, `d_im` (f16) and 32 bytes of codes.
pub const STAGE_BYTES: usize = 36;
/// Complex entries per block.
pub const QC: usize = 128;
/// Real weights per block (the ggml block size of the F2I types).
pub const QK: usize = 256;

/// An instruction set a kernel is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, always available; the reference the SIMD kernels are tested against.
    Scalar,
    /// AVX2 + FMA.
    Avx2,
    /// AVX2 + FMA with AVX-VNNI (256-bit `vpdpbusd`) for the int8 path.
    AvxVnni,
    /// AVX-512 F/BW/VL.
    Avx512,
    /// AVX-512 F/BW/VL with VNNI (512-bit `vpdpbusd`) for the int8 path.
    Avx512Vnni,
    /// ARM NEON (aarch64); the int8 path uses `sdot` where the CPU has it.
    Neon,
}

impl Isa {
    /// Every instruction set, best last.
    pub const ALL: [Isa; 6] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::AvxVnni,
        Isa::Avx512,
        Isa::Avx512Vnni,
        Isa::Neon,
    ];

    /// Lower-case name (`scalar`, `avx2`, `avxvnni`, `avx512`, `avx512vnni`, `neon`), as accepted
    /// by `FAIRY2I_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    /// Parses a name written by [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU runs the instruction set (detected at run time).
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => is_x86_feature_detected!("avxvnni") && Isa::Avx2.is_available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && Isa::Avx2.is_available()
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => is_x86_feature_detected!("avx512vnni") && Isa::Avx512.is_available(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false,
        }
    }
}

/// A kernel whose instruction set this CPU was found to support; the only way to run one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernel {
    isa: Isa,
}

impl Kernel {
    /// The kernel for `isa`, if this CPU supports it.
    pub fn new(isa: Isa) -> Option<Kernel> {
        isa.is_available().then_some(Kernel { isa })
    }

    /// The best kernel this CPU supports.
    pub fn best() -> Kernel {
        Isa::ALL
            .into_iter()
            .rev()
            .find_map(Kernel::new)
            .unwrap_or(Kernel { isa: Isa::Scalar })
    }

    /// The portable kernel.
    pub fn scalar() -> Kernel {
        Kernel { isa: Isa::Scalar }
    }

    /// Every kernel this CPU supports.
    pub fn available() -> Vec<Kernel> {
        Isa::ALL.into_iter().filter_map(Kernel::new).collect()
    }

    /// The instruction set.
    pub fn isa(self) -> Isa {
        self.isa
    }

    /// One output pair for one column: `u` and `w` are stored rows j and n+j (`k/256` blocks of
    /// `stages` records each), `x_re` = x[0..m) and `x_im` = x[m..2m) with m = k/2.
    /// Returns (y[j], y[j+n]).
    ///
    /// # Panics
    /// If the lengths do not match each other (a bug in the caller, never bad input: shapes are
    /// validated by `supports.rs` before any slice is made).
    pub fn pair_dot(
        self,
        u: &[u8],
        w: &[u8],
        stages: usize,
        x_re: &[f32],
        x_im: &[f32],
    ) -> (f32, f32) {
        let blocks = x_re.len() / QC;
        assert!(
            (1..=4).contains(&stages)
                && x_re.len() == blocks * QC
                && x_im.len() == x_re.len()
                && u.len() == blocks * stages * STAGE_BYTES
                && w.len() == u.len(),
            "pair_dot: inconsistent lengths"
        );
        match self.isa {
            Isa::Scalar => scalar::pair_dot(u, w, stages, x_re, x_im),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel with this isa exists only when the CPU supports AVX2+FMA
            // (Kernel::new); the lengths were checked above.
            Isa::Avx2 | Isa::AvxVnni => unsafe { avx2::pair_dot(u, w, stages, x_re, x_im) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel with this isa exists only when the CPU supports AVX-512 F/BW/VL
            // (Kernel::new); the lengths were checked above.
            Isa::Avx512 | Isa::Avx512Vnni => unsafe { avx512::pair_dot(u, w, stages, x_re, x_im) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Kernel with this isa exists only when the CPU supports NEON (Kernel::new);
            // the lengths were checked above.
            Isa::Neon => unsafe { neon::pair_dot(u, w, stages, x_re, x_im) },
            _ => scalar::pair_dot(u, w, stages, x_re, x_im),
        }
    }

    /// The int8-activation form of [`Kernel::pair_dot`] (docs/backend.md §2.4): the same output pair
    /// against one column quantized by [`q8::Q8Cols::quantize`]; its error bound is in [`q8`].
    ///
    /// # Panics
    /// If the lengths do not match each other (a caller bug, as for `pair_dot`).
    pub fn pair_dot_q8(self, u: &[u8], w: &[u8], stages: usize, x: q8::Q8Col<'_>) -> (f32, f32) {
        assert!(
            q8_lengths_agree(u, w, stages, &x),
            "pair_dot_q8: inconsistent lengths"
        );
        match self.isa {
            Isa::Scalar => q8::pair_dot(u, w, stages, x),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel with isa Avx2 or Avx512 exists only when the CPU supports AVX2, FMA
            // and F16C (Kernel::new, Isa::is_available); the lengths were checked above.
            Isa::Avx2 | Isa::Avx512 => unsafe { avx2::pair_dot_q8(u, w, stages, x) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel with isa AvxVnni exists only when the CPU supports AVX-VNNI, AVX2,
            // FMA and F16C; the lengths were checked above.
            Isa::AvxVnni => unsafe { vnni::pair_dot_q8_256(u, w, stages, x) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a Kernel with isa Avx512Vnni exists only when the CPU supports AVX-512
            // F/BW/VL/VNNI and AVX2, FMA, F16C; the lengths were checked above.
            Isa::Avx512Vnni => unsafe { vnni::pair_dot_q8_512(u, w, stages, x) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: a Kernel with this isa exists only when the CPU supports NEON (Kernel::new);
            // the lengths were checked above.
            Isa::Neon => unsafe { neon::pair_dot_q8(u, w, stages, x) },
            _ => q8::pair_dot(u, w, stages, x),
        }
    }

    /// [`Kernel::pair_dot_q8`] for several columns: `out[c]` is the output pair for `cols[c]`.
    /// SIMD kernels decode each weight record once for up to 16 columns.
    ///
    /// # Panics
    /// If the lengths do not match each other (a caller bug, as for `pair_dot`).
    pub fn pair_dot_q8_cols(
        self,
        u: &[u8],
        w: &[u8],
        stages: usize,
        cols: &[q8::Q8Col<'_>],
        out: &mut [(f32, f32)],
    ) {
        assert_eq!(
            cols.len(),
            out.len(),
            "pair_dot_q8_cols: inconsistent lengths"
        );
        if let ([x], [o]) = (cols, &mut *out) {
            // one column: the fused kernel keeps its decoded codes in registers
            *o = self.pair_dot_q8(u, w, stages, *x);
            return;
        }
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => {
                for (cs, os) in cols
                    .chunks(avx2::MAX_COLS)
                    .zip(out.chunks_mut(avx2::MAX_COLS))
                {
                    assert!(
                        cs.iter().all(|x| q8_lengths_agree(u, w, stages, x)),
                        "pair_dot_q8_cols: inconsistent lengths"
                    );
                    // SAFETY: a Kernel with isa Avx2 or Avx512 exists only when the CPU supports
                    // AVX2, FMA and F16C; the lengths were checked above.
                    unsafe { avx2::pair_dot_q8_cols(u, w, stages, cs, os) };
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni | Isa::Avx512Vnni => {
                for (cs, os) in cols
                    .chunks(vnni::MAX_COLS)
                    .zip(out.chunks_mut(vnni::MAX_COLS))
                {
                    assert!(
                        cs.iter().all(|x| q8_lengths_agree(u, w, stages, x)),
                        "pair_dot_q8_cols: inconsistent lengths"
                    );
                    if self.isa == Isa::AvxVnni {
                        // SAFETY: a Kernel with isa AvxVnni exists only when the CPU supports
                        // AVX-VNNI, AVX2, FMA and F16C; the lengths were checked above.
                        unsafe { vnni::pair_dot_q8_cols_256(u, w, stages, cs, os) };
                    } else {
                        // SAFETY: a Kernel with isa Avx512Vnni exists only when the CPU supports
                        // AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; the lengths were checked above.
                        unsafe { vnni::pair_dot_q8_cols_512(u, w, stages, cs, os) };
                    }
                }
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => {
                for (cs, os) in cols
                    .chunks(neon::MAX_COLS)
                    .zip(out.chunks_mut(neon::MAX_COLS))
                {
                    assert!(
                        cs.iter().all(|x| q8_lengths_agree(u, w, stages, x)),
                        "pair_dot_q8_cols: inconsistent lengths"
                    );
                    // SAFETY: a Kernel with isa Neon exists only when the CPU supports NEON; the
                    // lengths were checked above.
                    unsafe { neon::pair_dot_q8_cols(u, w, stages, cs, os) };
                }
            }
            _ => {
                for (x, o) in cols.iter().zip(out.iter_mut()) {
                    *o = self.pair_dot_q8(u, w, stages, *x);
                }
            }
        }
    }
}

/// Whether a pair of stored rows and a quantized column fit each other (the int8 kernels' contract).
fn q8_lengths_agree(u: &[u8], w: &[u8], stages: usize, x: &q8::Q8Col<'_>) -> bool {
    let blocks = x.d.len();
    (1..=4).contains(&stages)
        && x.q.len() == blocks * QK
        && x.neg.len() == blocks * 32
        && x.mul.len() == blocks * 4
        && x.sum.len() == blocks * 2
        && u.len() == blocks * stages * STAGE_BYTES
        && w.len() == u.len()
}

/// The two scales of a stage record.
#[inline(always)]
pub(crate) fn stage_scales(rec: &[u8]) -> (f32, f32) {
    let d_re = half::f16::from_bits(u16::from_le_bytes([rec[0], rec[1]])).to_f32();
    let d_im = half::f16::from_bits(u16::from_le_bytes([rec[2], rec[3]])).to_f32();
    (d_re, d_im)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Random F2I rows and an independent reference: dequantize per the spec, then dot.
    use super::{QC, QK, STAGE_BYTES};

    /// A small deterministic generator (xorshift64*), enough for test data.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [-1, 1).
        pub fn unit(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// Random F2I tensor bytes: `n_rows` rows of `k` real weights, random codes and positive or
    /// negative f16 scales (any f16 value is valid data).
    pub fn random_f2i(rng: &mut Rng, k: usize, n_rows: usize, stages: usize) -> Vec<u8> {
        let blocks = k / QK;
        let mut out = Vec::with_capacity(n_rows * blocks * stages * STAGE_BYTES);
        for _ in 0..n_rows * blocks * stages {
            let d_re = half::f16::from_f32(rng.unit() * 0.05);
            let d_im = half::f16::from_f32(rng.unit() * 0.05);
            out.extend_from_slice(&d_re.to_bits().to_le_bytes());
            out.extend_from_slice(&d_im.to_bits().to_le_bytes());
            for _ in 0..32 {
                out.push(rng.next_u64() as u8);
            }
        }
        out
    }

    /// The complex value of entry `e` (0..m) of a stored row: the exact sum of its stages, in f64.
    fn entry(row: &[u8], stages: usize, e: usize) -> (f64, f64) {
        let rec_bytes = stages * STAGE_BYTES;
        let (b, i) = (e / QC, e % QC);
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for s in 0..stages {
            let rec = &row[b * rec_bytes + s * STAGE_BYTES..][..STAGE_BYTES];
            let d_re = half::f16::from_bits(u16::from_le_bytes([rec[0], rec[1]])).to_f64();
            let d_im = half::f16::from_bits(u16::from_le_bytes([rec[2], rec[3]])).to_f64();
            let code = (rec[4 + i % 32] >> (2 * (i / 32))) & 3;
            match code {
                0 => re += d_re,
                1 => im += d_im,
                2 => re -= d_re,
                _ => im -= d_im,
            }
        }
        (re, im)
    }

    /// Rebuilds the real matrix (row-major, `n_rows` × `k`, f64) per docs/fairy2i-math.md §1:
    /// A11 = U_re + W_re, A12 = W_im − U_im, A21 = U_im + W_im, A22 = U_re − W_re.
    pub fn dequantize(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Vec<f64> {
        let row_bytes = k / QK * stages * STAGE_BYTES;
        let (m, n) = (k / 2, n_rows / 2);
        let mut a = vec![0.0f64; n_rows * k];
        for j in 0..n {
            let u = &data[j * row_bytes..][..row_bytes];
            let w = &data[(n + j) * row_bytes..][..row_bytes];
            for e in 0..m {
                let (u_re, u_im) = entry(u, stages, e);
                let (w_re, w_im) = entry(w, stages, e);
                a[j * k + e] = u_re + w_re;
                a[j * k + m + e] = w_im - u_im;
                a[(n + j) * k + e] = u_im + w_im;
                a[(n + j) * k + m + e] = u_re - w_re;
            }
        }
        a
    }

    /// y = A x for a real matrix from [`dequantize`], in f64.
    pub fn matvec(a: &[f64], k: usize, x: &[f32]) -> Vec<f64> {
        a.chunks_exact(k)
            .map(|row| row.iter().zip(x).map(|(&w, &v)| w * v as f64).sum())
            .collect()
    }

    /// Σ |d|·|x| over a pair: the scale of the rounding error of any summation order.
    pub fn magnitude(u: &[u8], w: &[u8], stages: usize, x_re: &[f32], x_im: &[f32]) -> f64 {
        let rec_bytes = stages * STAGE_BYTES;
        let mut mag = 0.0f64;
        for row in [u, w] {
            for (b, blk) in row.chunks_exact(rec_bytes).enumerate() {
                let xs: f64 = (0..QC)
                    .map(|e| (x_re[b * QC + e].abs() + x_im[b * QC + e].abs()) as f64)
                    .sum();
                for rec in blk.chunks_exact(STAGE_BYTES) {
                    let (d_re, d_im) = super::stage_scales(rec);
                    mag += (d_re.abs() + d_im.abs()) as f64 * xs;
                }
            }
        }
        mag
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{dequantize, magnitude, matvec, random_f2i, Rng};
    use super::*;

    /// Every available kernel against the spec's dequantize-then-dot, all stage counts, several K.
    #[test]
    fn kernels_match_dequantized_reference() {
        let mut rng = Rng::new(1);
        for kernel in Kernel::available() {
            for stages in 1..=4 {
                for &k in &[256usize, 512, 1280] {
                    let n_rows = 6;
                    let data = random_f2i(&mut rng, k, n_rows, stages);
                    let x: Vec<f32> = (0..k).map(|_| rng.unit()).collect();
                    let a = dequantize(&data, k, n_rows, stages);
                    let want = matvec(&a, k, &x);
                    let row_bytes = k / QK * stages * STAGE_BYTES;
                    let (m, n) = (k / 2, n_rows / 2);
                    for j in 0..n {
                        let u = &data[j * row_bytes..][..row_bytes];
                        let w = &data[(n + j) * row_bytes..][..row_bytes];
                        let (re, im) = kernel.pair_dot(u, w, stages, &x[..m], &x[m..]);
                        let tol = 1e-5 * magnitude(u, w, stages, &x[..m], &x[m..]) + 1e-12;
                        assert!(
                            (re as f64 - want[j]).abs() <= tol && (im as f64 - want[n + j]).abs() <= tol,
                            "{:?} t={stages} k={k} j={j}: got ({re}, {im}), want ({}, {}), tol {tol}",
                            kernel.isa(),
                            want[j],
                            want[n + j]
                        );
                    }
                }
            }
        }
    }

    /// SIMD kernels against the scalar kernel on random data, including extreme codes.
    #[test]
    fn simd_kernels_match_scalar() {
        let mut rng = Rng::new(7);
        let scalar = Kernel::scalar();
        for kernel in Kernel::available() {
            for stages in 1..=4 {
                for blocks in 1..=5 {
                    let k = blocks * QK;
                    let mut data = random_f2i(&mut rng, k, 2, stages);
                    if blocks == 2 {
                        // all codes equal: one axis and sign only
                        for (i, byte) in data.iter_mut().enumerate() {
                            if i % STAGE_BYTES >= 4 {
                                *byte = [0x00, 0x55, 0xaa, 0xff][stages - 1];
                            }
                        }
                    }
                    let x: Vec<f32> = (0..k).map(|_| rng.unit() * 3.0).collect();
                    let half_len = data.len() / 2;
                    let (u, w) = data.split_at(half_len);
                    let m = k / 2;
                    let got = kernel.pair_dot(u, w, stages, &x[..m], &x[m..]);
                    let want = scalar.pair_dot(u, w, stages, &x[..m], &x[m..]);
                    let tol = 1e-5 * magnitude(u, w, stages, &x[..m], &x[m..]) as f32;
                    assert!(
                        (got.0 - want.0).abs() <= tol && (got.1 - want.1).abs() <= tol,
                        "{:?} t={stages} blocks={blocks}: {got:?} vs {want:?}",
                        kernel.isa()
                    );
                }
            }
        }
    }

    #[test]
    fn isa_names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::from_name("sse"), None);
        assert!(Kernel::new(Isa::Scalar).is_some());
    }

    #[test]
    #[should_panic(expected = "inconsistent lengths")]
    fn pair_dot_rejects_mismatched_lengths() {
        let row = vec![0u8; STAGE_BYTES];
        let x = vec![0.0f32; QC];
        Kernel::best().pair_dot(&row, &row, 1, &x, &x[..64]);
    }
}
