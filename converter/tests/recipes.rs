//! `fairy2i quantize`'s per-tensor types: the `--recipe` mixtures, `--output-type`, `--embd-type`,
//! `--tensor-type` (precedence and llama-quantize's matching rules), tied embeddings, the k-quant
//! fallback, the per-tensor summary, and clear errors for bad arguments. The k-quant bytes themselves
//! are checked against llama-quantize in `tests/tests/kquants.rs` and `format/tests/kquants_golden.rs`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fairy2i_format::convert::tensor_to_f32;
use fairy2i_format::gguf::{GgufWriter, MappedGguf, Metadata, TensorSpec, Value};
use fairy2i_format::GgmlType;

/// A small f32 qwen2-like GGUF: 2 layers, hidden 256, 4 query heads and 1 key/value head (so
/// n_head / n_head_kv = 4), ffn 512, vocab 64; with or without output.weight; `extra` tensors
/// appended. Values are pseudo-random, roughly N(0, 0.02).
fn model(path: &Path, tied: bool, extra: &[(&str, Vec<u64>)]) {
    let mut md = Metadata::new();
    md.set("general.architecture", Value::str("qwen2"));
    md.set("general.name", Value::str("Tiny"));
    md.set("general.file_type", Value::U32(0));
    md.set("qwen2.block_count", Value::U32(2));
    md.set("qwen2.attention.head_count", Value::U32(4));
    md.set("qwen2.attention.head_count_kv", Value::U32(1));
    let mut tensors: Vec<(String, Vec<u64>)> = vec![("token_embd.weight".into(), vec![256, 64])];
    for l in 0..2 {
        for (n, dims) in [
            ("attn_norm.weight", vec![256]),
            ("attn_q.weight", vec![256, 256]),
            ("attn_q.bias", vec![256]),
            ("attn_k.weight", vec![256, 64]),
            ("attn_v.weight", vec![256, 64]),
            ("attn_output.weight", vec![256, 256]),
            ("ffn_norm.weight", vec![256]),
            ("ffn_gate.weight", vec![256, 512]),
            ("ffn_up.weight", vec![256, 512]),
            ("ffn_down.weight", vec![512, 256]),
        ] {
            tensors.push((format!("blk.{l}.{n}"), dims));
        }
    }
    tensors.push(("output_norm.weight".into(), vec![256]));
    if !tied {
        tensors.push(("output.weight".into(), vec![256, 64]));
    }
    for (n, d) in extra {
        tensors.push((n.to_string(), d.clone()));
    }
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, dims)| TensorSpec {
            name: name.clone(),
            dims: dims.clone(),
            ty: GgmlType::F32,
        })
        .collect();
    let mut w = GgufWriter::create(path, &md, specs).expect("create");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (_, dims) in &tensors {
        let n: u64 = dims.iter().product();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07).to_le_bytes()
            })
            .collect();
        w.write_tensor(&bytes).expect("write");
    }
    w.finish().expect("finish");
}

/// Runs `fairy2i quantize IN OUT args…`: (success, stderr).
fn quantize(input: &Path, output: &Path, args: &[&str]) -> (bool, String) {
    let o = common::bin()
        .arg("quantize")
        .arg(input)
        .arg(output)
        .args(args)
        .output()
        .expect("runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Tensor name → type, in file order.
fn types(path: &Path) -> Vec<(String, GgmlType)> {
    let m = MappedGguf::open(path).expect("open");
    let g = m.parse().expect("parse");
    g.tensors.iter().map(|t| (t.name.clone(), t.ty)).collect()
}

fn type_map(path: &Path) -> HashMap<String, GgmlType> {
    types(path).into_iter().collect()
}

struct Files {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Files {
    fn new() -> Files {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().to_path_buf();
        Files { _tmp: tmp, dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The per-tensor lines of the summary (everything before the per-type table).
fn tensor_lines(stderr: &str) -> String {
    stderr
        .lines()
        .take_while(|l| !l.starts_with("type "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn default_w2_is_the_mix_and_the_summary_lists_every_tensor() {
    let f = Files::new();
    let (src, out) = (f.path("tiny.gguf"), f.path("w2.gguf"));
    model(&src, false, &[]);
    let (ok, err) = quantize(&src, &out, &["--type", "f2i_w2"]);
    assert!(ok, "{err}");
    let t = type_map(&out);
    assert_eq!(t["output.weight"], GgmlType::Q6_K);
    assert_eq!(t["token_embd.weight"], GgmlType::Q2_K);
    for l in 0..2 {
        let ty = |n: &str| t[&format!("blk.{l}.{n}.weight")];
        assert_eq!(ty("attn_v"), GgmlType::F2I_W4, "n_head / n_head_kv = 4");
        assert_eq!(ty("ffn_down"), GgmlType::F2I_W3);
        assert_eq!(ty("attn_output"), GgmlType::F2I_W3);
        for n in ["attn_q", "attn_k", "ffn_gate", "ffn_up"] {
            assert_eq!(ty(n), GgmlType::F2I_W2, "{n}");
        }
        assert_eq!(ty("attn_norm"), GgmlType::F32);
    }
    let m = MappedGguf::open(&out).expect("open");
    let g = m.parse().expect("parse");
    assert_eq!(g.metadata.get_u64("general.file_type"), Some(65));
    assert_eq!(g.metadata.get_u64("fairy2i.stages"), Some(2));
    // The k-quant tensors hold the weights.
    let src_m = MappedGguf::open(&src).expect("open");
    let s = src_m.parse().expect("parse");
    for name in ["output.weight", "token_embd.weight"] {
        let (a, b) = (g.tensor(name).expect("out"), s.tensor(name).expect("src"));
        let (x, y) = (
            tensor_to_f32(a.ty, &a.dims, g.tensor_data(a)).expect("dequantize"),
            tensor_to_f32(b.ty, &b.dims, s.tensor_data(b)).expect("read"),
        );
        let num: f32 = x.iter().zip(&y).map(|(p, q)| (p - q) * (p - q)).sum();
        let den: f32 = y.iter().map(|q| q * q).sum();
        let bound = if a.ty == GgmlType::Q6_K { 0.05 } else { 0.5 };
        assert!((num / den).sqrt() < bound, "{name}: {}", (num / den).sqrt());
    }
    // Every tensor, in file order, with its type and why.
    let lines = tensor_lines(&err);
    for (name, ty) in types(&out) {
        assert!(
            lines.lines().any(
                |l| l.starts_with(&name) && l.contains(&format!(" {} ", ty.name()))
                    || l.starts_with(&name) && l.ends_with(ty.name())
            ),
            "{name} {ty} missing from the summary:\n{lines}"
        );
    }
    insta::assert_snapshot!("default_w2_summary", lines);
    // --dry-run: the same plan and sizes, nothing written.
    let o = common::bin()
        .args(["quantize", "--dry-run", "--type", "f2i_w2"])
        .arg(&src)
        .output()
        .expect("runs");
    assert!(o.status.success());
    let dry = String::from_utf8_lossy(&o.stderr);
    assert_eq!(tensor_lines(&dry), lines);
    let total = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("total"))
            .map(str::to_string)
    };
    assert_eq!(total(&dry), total(&err));
    assert!(
        dry.contains("dry run: nothing quantized or written"),
        "{dry}"
    );
    assert_eq!(common::entries(&f.dir), ["tiny.gguf", "w2.gguf"]);
}

#[test]
fn tied_embeddings() {
    let f = Files::new();
    let src = f.path("tied.gguf");
    model(&src, true, &[]);
    // mix: token_embd serves as the output projection at Q6_K; no output.weight is written.
    let out = f.path("mix.gguf");
    let (ok, err) = quantize(&src, &out, &["--type", "f2i_w2", "-q"]);
    assert!(ok, "{err}");
    let t = types(&out);
    assert_eq!(t[0], ("token_embd.weight".into(), GgmlType::Q6_K));
    assert!(!t.iter().any(|(n, _)| n == "output.weight"));
    // pure: an F2I output.weight right after token_embd (q8_0), as before recipes.
    let out = f.path("pure.gguf");
    let (ok, err) = quantize(&src, &out, &["--type", "f2i_w2", "--recipe", "pure", "-q"]);
    assert!(ok, "{err}");
    let t = types(&out);
    assert_eq!(t[0], ("token_embd.weight".into(), GgmlType::Q8_0));
    assert_eq!(t[1], ("output.weight".into(), GgmlType::F2I_W2));
    let out2 = f.path("pure2.gguf");
    let (ok, err) = quantize(&src, &out2, &["--type", "f2i_w2", "--pure", "-q"]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&out).expect("read"),
        std::fs::read(&out2).expect("read"),
        "--pure is --recipe pure"
    );
    // Types that disagree: both written.
    let out = f.path("split.gguf");
    let (ok, err) = quantize(
        &src,
        &out,
        &[
            "--type",
            "f2i_w2",
            "--output-type",
            "q5_k",
            "--embd-type",
            "q4_k",
            "-q",
        ],
    );
    assert!(ok, "{err}");
    let t = types(&out);
    assert_eq!(t[0], ("token_embd.weight".into(), GgmlType::Q4_K));
    assert_eq!(t[1], ("output.weight".into(), GgmlType::Q5_K));
}

#[test]
fn flags_patterns_and_recipes_in_llama_quantize_order() {
    let f = Files::new();
    let src = f.path("tiny.gguf");
    model(&src, false, &[]);
    let out = f.path("o.gguf");
    let (ok, err) = quantize(
        &src,
        &out,
        &[
            "--type",
            "f2i_w3",
            "--output-type",
            "q4_k",
            "--embd-type",
            "F16",
            "--tensor-type",
            "BLK\\.0\\.=f2i_w1",
            "--tensor-type",
            "attn=Q8_0",
            "--tensor-type",
            "output=q2_k",
            "--tensor-type",
            "token_embd=q2_k",
            "-q",
        ],
    );
    assert!(ok, "{err}");
    let t = type_map(&out);
    // Explicit flags beat patterns for output.weight and token_embd.
    assert_eq!(t["output.weight"], GgmlType::Q4_K);
    assert_eq!(t["token_embd.weight"], GgmlType::F16);
    // The first matching pattern wins (patterns are lower-cased, types in any case).
    assert_eq!(t["blk.0.attn_v.weight"], GgmlType::F2I_W1);
    assert_eq!(t["blk.0.ffn_up.weight"], GgmlType::F2I_W1);
    assert_eq!(t["blk.1.attn_v.weight"], GgmlType::Q8_0);
    assert_eq!(t["blk.1.attn_q.weight"], GgmlType::Q8_0);
    // No pattern: the W3 mix (ffn_down Q5_K in the first 1/16 of 2 layers = none, so W4).
    assert_eq!(t["blk.1.ffn_down.weight"], GgmlType::F2I_W4);
    assert_eq!(t["blk.1.ffn_up.weight"], GgmlType::F2I_W3);
    // Patterns never touch 1-D tensors.
    assert_eq!(t["blk.1.attn_q.bias"], GgmlType::F32);

    // uniform: only output.weight and token_embd change.
    let (ok, err) = quantize(
        &src,
        &out,
        &["--type", "f2i_w2", "--recipe", "uniform", "-q"],
    );
    assert!(ok, "{err}");
    let t = type_map(&out);
    assert_eq!(t["output.weight"], GgmlType::Q6_K);
    assert_eq!(t["token_embd.weight"], GgmlType::Q2_K);
    assert_eq!(t["blk.0.attn_v.weight"], GgmlType::F2I_W2);
    assert_eq!(t["blk.0.ffn_down.weight"], GgmlType::F2I_W2);

    // A standard --type: no recipe, patterns still apply.
    let (ok, err) = quantize(
        &src,
        &out,
        &["--type", "q8_0", "--tensor-type", "ffn_down=q6_k", "-q"],
    );
    assert!(ok, "{err}");
    let t = type_map(&out);
    assert_eq!(t["output.weight"], GgmlType::Q8_0);
    assert_eq!(t["token_embd.weight"], GgmlType::Q8_0);
    assert_eq!(t["blk.0.ffn_down.weight"], GgmlType::Q6_K);
    let m = MappedGguf::open(&out).expect("open");
    let g = m.parse().expect("parse");
    assert_eq!(g.metadata.get_u64("general.file_type"), Some(7));
    assert_eq!(g.metadata.get_u64("fairy2i.stages"), None);
}

#[test]
fn k_quants_that_do_not_fit_fall_back() {
    let f = Files::new();
    let src = f.path("odd.gguf");
    model(&src, false, &[("blk.1.extra.weight", vec![320, 4])]);
    let out = f.path("o.gguf");
    let (ok, err) = quantize(
        &src,
        &out,
        &[
            "--type",
            "f2i_w2",
            "--tensor-type",
            "extra=q6_k",
            "--fallback",
            "q4_0",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(type_map(&out)["blk.1.extra.weight"], GgmlType::Q4_0);
    let line = err
        .lines()
        .find(|l| l.starts_with("blk.1.extra.weight"))
        .unwrap_or_default();
    assert!(
        line.contains("q4_0")
            && line.contains("q6_K wanted by --tensor-type extra=q6_k")
            && line.contains("K = 320 is not a multiple of the q6_K block (256)"),
        "{line}"
    );
    assert!(err.contains("fallbacks: 1"), "{err}");
}

/// A legacy llama.cpp `.dat` imatrix (ncall 1).
fn legacy_imatrix(path: &Path, entries: &[(&str, Vec<f32>)]) {
    let mut b = (entries.len() as i32).to_le_bytes().to_vec();
    for (name, vals) in entries {
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend(1i32.to_le_bytes());
        b.extend((vals.len() as i32).to_le_bytes());
        for v in vals {
            b.extend(v.to_le_bytes());
        }
    }
    std::fs::write(path, b).expect("write imatrix");
}

#[test]
fn the_imatrix_weights_k_quant_tensors() {
    let f = Files::new();
    let src = f.path("tiny.gguf");
    model(&src, false, &[]);
    let imat = f.path("im.dat");
    let skewed: Vec<f32> = (0..256)
        .map(|c| if c % 7 == 0 { 40.0 } else { 0.5 })
        .collect();
    legacy_imatrix(&imat, &[("output.weight", skewed)]);
    let (plain, weighted) = (f.path("plain.gguf"), f.path("weighted.gguf"));
    let base = ["--type", "f2i_w2", "--scale-mode", "block"];
    let (ok, err) = quantize(&src, &plain, &base);
    assert!(ok, "{err}");
    let imat_s = imat.to_str().expect("utf-8 path");
    let mut args = base.to_vec();
    args.extend(["--imatrix", imat_s]);
    let (ok, err) = quantize(&src, &weighted, &args);
    assert!(ok, "{err}");
    assert!(err.contains("1 tensors weighted"), "{err}");
    let (p, w) = (
        MappedGguf::open(&plain).expect("p"),
        MappedGguf::open(&weighted).expect("w"),
    );
    let (p, w) = (p.parse().expect("p"), w.parse().expect("w"));
    for (a, b) in p.tensors.iter().zip(&w.tensors) {
        let same = p.tensor_data(a) == w.tensor_data(b);
        assert_eq!(same, a.name != "output.weight", "{}", a.name);
    }
}

/// Runs a command line that must fail before writing anything: non-zero exit, one error naming
/// `needle`, no output file.
fn refused(f: &Files, args: &[&str], needle: &str) {
    let src = f.path("tiny.gguf");
    let out = f.path("never.gguf");
    let (ok, err) = quantize(&src, &out, args);
    assert!(!ok, "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{args:?}: one error\n{err}"
    );
    assert!(!out.exists(), "{args:?} left {}", out.display());
    let leftovers = common::entries(&f.dir);
    assert_eq!(leftovers, ["tiny.gguf"], "{args:?}: partial output");
}

#[test]
fn bad_type_arguments_are_one_clear_error() {
    let f = Files::new();
    model(&f.path("tiny.gguf"), false, &[]);
    refused(
        &f,
        &["--tensor-type", "attn_(v=q8_0"],
        "'attn_(v' is not a valid regular expression",
    );
    refused(
        &f,
        &["--tensor-type", "attn_v=q7_k"],
        "unknown type 'q7_k' (known: f2i_w1",
    );
    refused(&f, &["--tensor-type", "attn_v"], "found no '='");
    refused(
        &f,
        &["--tensor-type", "=q8_0"],
        "missing tensor name pattern",
    );
    refused(&f, &["--tensor-type", "attn_v="], "missing type after '='");
    refused(
        &f,
        &["--output-type", "q7_k"],
        "invalid value 'q7_k' for '--output-type",
    );
    refused(
        &f,
        &["--embd-type", "f2i_w2"],
        "invalid value 'f2i_w2' for '--embd-type",
    );
    refused(
        &f,
        &["--recipe", "max"],
        "invalid value 'max' for '--recipe",
    );
    refused(
        &f,
        &["--pure", "--recipe", "mix"],
        "'--pure' cannot be used with '--recipe <RECIPE>'",
    );
    // OUTPUT may only be left out with --dry-run.
    let o = common::bin()
        .args(["quantize", "--type", "f2i_w2"])
        .arg(f.path("tiny.gguf"))
        .output()
        .expect("runs");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("<OUTPUT>"));
    assert_eq!(common::entries(&f.dir), ["tiny.gguf"]);
}
