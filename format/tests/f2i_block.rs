//! `ScaleMode::Block` (docs/quantizer.md "Block scales"): on the block-aligned golden matrices and on
//! random heavy-tailed matrices, for T = 1..4,
//! 1. the reconstruction error (Frobenius, `dequantize_tensor` of the bytes vs the input) is at most
//!    that of the paper-exact tensor mode;
//! 2. the error does not grow with the stage count;
//! 3. the bytes are an ordinary F2I tensor (`dequantize_tensor` and `validate_tensor` accept them).
//!
//! Run with `--nocapture` to see the relative errors.

use std::path::PathBuf;

use fairy2i_format::f2i::{dequantize_tensor, quantize_tensor, QuantOptions, ScaleMode};
use half::bf16;
use safetensors::{Dtype, SafeTensors};

/// Block-aligned golden cases (cols % 256 == 0); c–e live in the shared fixtures and are skipped when
/// absent.
const GOLDEN: [&str; 4] = [
    "b_normal_64x256",
    "c_student_t3_256x512",
    "d_normal_512x256",
    "e_outlier_cols_128x1536",
];

fn golden(case: &str) -> Option<(Vec<f32>, usize, usize)> {
    let file = format!("{case}.safetensors");
    let shared = std::env::var_os("FAIRY2I_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(&file);
    let path = [local, shared.join("golden/quant").join(&file)]
        .into_iter()
        .find(|p| p.exists())?;
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let md = meta.metadata().clone().unwrap();
    let rows: usize = md["rows"].parse().unwrap();
    let cols: usize = md["cols"].parse().unwrap();
    let a = st.tensor("A").unwrap();
    assert_eq!(a.dtype(), Dtype::BF16);
    let w = a
        .data()
        .chunks_exact(2)
        .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    Some((w, rows, cols))
}

/// A heavy-tailed matrix: Student-t-like values (normal / sqrt(chi²/3)) with a few outlier columns.
fn heavy_tailed(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    let mut uniform = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let normal = |u: &mut dyn FnMut() -> f64| {
        (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()
    };
    let mut out = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        for c in 0..cols {
            let z = normal(&mut uniform);
            let chi: f64 = (0..3).map(|_| normal(&mut uniform).powi(2)).sum::<f64>() / 3.0;
            let col_gain = if c % 97 == 5 { 20.0 } else { 1.0 };
            out.push((0.02 * col_gain * z / chi.sqrt().max(1e-3)) as f32);
        }
    }
    out
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum();
    (num / den).sqrt()
}

fn errors(a: &[f32], rows: usize, cols: usize, mode: ScaleMode, bf16_rounding: bool) -> Vec<f64> {
    (1..=4)
        .map(|t| {
            let opts = QuantOptions {
                stages: t,
                mode,
                bf16_rounding,
                importance: None,
            };
            let bytes = quantize_tensor(a, cols, rows, &opts).unwrap();
            fairy2i_format::f2i::validate_tensor(&bytes, cols, rows, t).unwrap();
            let back = dequantize_tensor(&bytes, cols, rows, t).unwrap();
            rel_err(a, &back)
        })
        .collect()
}

fn check(name: &str, a: &[f32], rows: usize, cols: usize, bf16_rounding: bool) {
    let tensor = errors(a, rows, cols, ScaleMode::Tensor, bf16_rounding);
    let block = errors(a, rows, cols, ScaleMode::Block, bf16_rounding);
    eprintln!("{name}: relative Frobenius error, T = 1..4");
    eprintln!("  tensor: {tensor:.4?}");
    eprintln!("  block:  {block:.4?}");
    for t in 0..4 {
        assert!(
            block[t] <= tensor[t],
            "{name} T{}: block {} > tensor {}",
            t + 1,
            block[t],
            tensor[t]
        );
        if t > 0 {
            assert!(
                block[t] <= block[t - 1],
                "{name}: block error grows from T{} ({}) to T{} ({})",
                t,
                block[t - 1],
                t + 1,
                block[t]
            );
        }
    }
}

#[test]
fn block_scales_beat_tensor_scales_on_the_golden_matrices() {
    let mut done = 0;
    for case in GOLDEN {
        let Some((a, rows, cols)) = golden(case) else {
            eprintln!("SKIPPED: golden case {case} is absent");
            continue;
        };
        check(case, &a, rows, cols, true);
        done += 1;
    }
    assert!(
        done >= 1,
        "the bundled case b_normal_64x256 must always run"
    );
}

#[test]
fn block_scales_beat_tensor_scales_on_heavy_tailed_matrices() {
    for (i, (rows, cols)) in [(64, 512), (32, 1024), (128, 256)].into_iter().enumerate() {
        let a = heavy_tailed(rows, cols, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        check(
            &format!("heavy_tailed_{rows}x{cols}"),
            &a,
            rows,
            cols,
            false,
        );
    }
}

#[test]
fn the_scale_mode_is_named_block() {
    assert_eq!(ScaleMode::Block.name(), "block");
    assert_eq!(ScaleMode::default(), ScaleMode::Tensor);
}
