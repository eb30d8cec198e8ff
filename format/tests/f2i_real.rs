//! Issue 8 on real weights: 3 weight matrices of the registry models (`scripts/fetch-models.sh`),
//! dequantized by `convert::tensor_to_f32`, quantized at W1..W4 in every scale mode, and the weighted
//! reconstruction error Σ_rows Σ_col h_col (A − Â)² computed here from `dequantize_tensor` of the bytes
//! (independently of the quantizer). h = the real llama.cpp imatrix of Qwen2.5-Coder-1.5B
//! (`~/.cache/fairy2i/bench/qwen1.5b-imatrix-wiki-20ch.gguf`, made by scripts/bench) when present,
//! else 1. Checks: block ≤ tensor, joint ≤ tensor, joint ≤ block (all with the weights), and that the
//! imatrix reads the same from its GGUF and legacy `.dat` forms.
//!
//! Without the cached models the test prints SKIPPED and passes, unless `FAIRY2I_REQUIRE_FIXTURES=1`.
//! The imatrix files are outputs of `scripts/bench` and `scripts/quality`, which `scripts/test` does not
//! run: their absence is never a failure.
//! Run with `--nocapture` for the table.

mod common;

use std::time::Instant;

use fairy2i_format::convert;
use fairy2i_format::f2i::{dequantize_tensor, quantize_tensor, QuantOptions, ScaleMode};
use fairy2i_format::imatrix::{Imatrix, ImatrixFormat};

use common::fixtures::{cache_dir, optional, test_name};
use common::{QWEN, SMOLLM as SMOL};

const IMATRIX: &str = "bench/qwen1.5b-imatrix-wiki-20ch.gguf";

/// (model, tensor, use the Qwen imatrix)
const TENSORS: [(&str, &str, bool); 3] = [
    (QWEN, "blk.0.attn_k.weight", true),
    (QWEN, "blk.14.attn_output.weight", true),
    (SMOL, "blk.0.ffn_down.weight", false),
];

fn weighted_error(a: &[f32], back: &[f32], k: usize, h: &[f32]) -> f64 {
    a.chunks_exact(k)
        .zip(back.chunks_exact(k))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .zip(h)
                .map(|((p, q), w)| f64::from(*w) * (f64::from(*p) - f64::from(*q)).powi(2))
                .sum::<f64>()
        })
        .sum()
}

#[test]
fn refined_modes_beat_paper_exact_on_real_tensors() {
    let imatrix_path = cache_dir().join(IMATRIX);
    let imatrix = if imatrix_path.exists() {
        Some(Imatrix::load(&imatrix_path).unwrap())
    } else {
        eprintln!(
            "NOTE: {} not found (scripts/bench makes it); uniform weights",
            imatrix_path.display()
        );
        None
    };
    let mut checked = 0;
    for (model, name, use_imatrix) in TENSORS {
        let Some(file) = common::open_model(model) else {
            continue;
        };
        let g = file.parse().unwrap();
        let t = g
            .tensor(name)
            .unwrap_or_else(|| panic!("{model}: no {name}"));
        let a = convert::tensor_to_f32(t.ty, &t.dims, g.tensor_data(t)).unwrap();
        let (k, rows) = (t.ne0() as usize, t.n_rows() as usize);
        let imp = if use_imatrix {
            imatrix
                .as_ref()
                .and_then(|m| m.importance(name, k).unwrap())
        } else {
            None
        };
        let ones = vec![1f32; k];
        let h = imp.unwrap_or(&ones);
        let total = weighted_error(&a, &vec![0.0; a.len()], k, h);
        eprintln!(
            "{model} {name} ({rows}×{k}), weights: {}; relative weighted error sqrt(Σh(A−Â)²/ΣhA²):",
            if imp.is_some() { "imatrix" } else { "uniform" }
        );
        for stages in 1..=4 {
            let run = |mode, importance| {
                let opts = QuantOptions {
                    stages,
                    mode,
                    bf16_rounding: false,
                    importance,
                };
                let t0 = Instant::now();
                let bytes = quantize_tensor(&a, k, rows, &opts).unwrap();
                let secs = t0.elapsed().as_secs_f64();
                let back = dequantize_tensor(&bytes, k, rows, stages).unwrap();
                ((weighted_error(&a, &back, k, h) / total).sqrt(), secs)
            };
            let (tensor, _) = run(ScaleMode::Tensor, None);
            let (block, _) = run(ScaleMode::Block, imp);
            let (joint, secs) = run(ScaleMode::Joint, imp);
            let (block_plain, _) = run(ScaleMode::Block, None);
            let (joint_plain, _) = run(ScaleMode::Joint, None);
            eprintln!(
                "  W{stages}: tensor {tensor:.4} | unweighted: block {block_plain:.4} joint {joint_plain:.4} | weighted: block {block:.4} joint {joint:.4} ({secs:.2} s)"
            );
            assert!(
                block <= tensor,
                "{name} W{stages}: block {block} > tensor {tensor}"
            );
            assert!(
                joint <= tensor,
                "{name} W{stages}: joint {joint} > tensor {tensor}"
            );
            assert!(
                joint <= block,
                "{name} W{stages}: joint {joint} > block {block}"
            );
        }
        checked += 1;
    }
    eprintln!("checked {checked} real tensors");
}

/// The real imatrix reads the same from the GGUF and from the legacy `.dat` that
/// `llama-imatrix --in-file <gguf> --output-format dat` makes of it (scripts/quality caches it), and
/// every entry of a 2-D weight has the weight's row length.
#[test]
fn the_real_imatrix_reads_alike_in_both_formats() {
    let test = test_name();
    let Some(gguf_path) = optional(&test, cache_dir().join(IMATRIX), "scripts/bench makes it")
    else {
        return;
    };
    let g = Imatrix::load(&gguf_path).unwrap();
    assert_eq!(g.format, ImatrixFormat::Gguf);
    assert!(g.entries.len() >= 196, "{} entries", g.entries.len());
    assert_eq!(
        g.importance("blk.0.ffn_down.weight", 8960)
            .unwrap()
            .map(<[f32]>::len),
        Some(8960)
    );
    let e = g
        .importance("blk.0.ffn_down.weight", 1536)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("8960 values") && e.contains("1536 inputs"),
        "{e}"
    );
    let dat = cache_dir().join("quality/qwen1.5b-imatrix-wiki-20ch.dat");
    let Some(dat_path) = optional(&test, dat, "scripts/quality makes it") else {
        return;
    };
    let d = Imatrix::load(&dat_path).unwrap();
    assert_eq!(d.format, ImatrixFormat::Legacy);
    assert_eq!(d.entries.len(), g.entries.len());
    for (name, ge) in &g.entries {
        let de = &d.entries[name];
        assert_eq!(de.values.len(), ge.values.len(), "{name}");
        for (i, (x, y)) in ge.values.iter().zip(&de.values).enumerate() {
            // The .dat stores (sum / count) · ncall in f32, read back / ncall: a few f32 ulps apart.
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1e-30),
                "{name}[{i}]: gguf {x} vs dat {y}"
            );
        }
    }
    eprintln!("{} entries agree between GGUF and .dat", g.entries.len());
    // A truncated copy is an error that names the file.
    let bytes = std::fs::read(&dat_path).unwrap();
    let cut = std::env::temp_dir().join(format!("f2i-imatrix-cut-{}.dat", std::process::id()));
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Imatrix::load(&cut).unwrap_err().to_string();
    std::fs::remove_file(&cut).unwrap();
    assert!(
        e.contains(&*cut.to_string_lossy()) && e.contains("truncated"),
        "{e}"
    );
}
