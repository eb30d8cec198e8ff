//! F2I output of `convert` and `quantize`. Expected values come from the reference GGUFs (llama.cpp's
//! own converter): everything that stays standard must equal the reference, F2I tensors must
//! dequantize close to the reference's f32 weights, and the selection rules of
//! `docs/format.md` §7 must hold. On a synthetic checkpoint with K = 256, F2I of the Hugging Face
//! matrix permuted (convert) must equal F2I of llama.cpp's permuted matrix (quantize of the f32
//! GGUF): the row pairing commutes with the Q/K permutation for even head counts.

mod common;

use std::collections::HashMap;
use std::path::Path;

use fairy2i_format::convert::tensor_to_f32;
use fairy2i_format::gguf::{Gguf, MappedGguf, Value};
use fairy2i_format::GgmlType;

fn fairy2i(args: &[&str], paths: &[&Path]) {
    let mut cmd = common::bin();
    cmd.args(args).args(paths).arg("-q");
    let o = cmd.output().expect("runs");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn f32s(g: &Gguf<'_>, name: &str) -> Vec<f32> {
    let t = g.tensor(name).unwrap_or_else(|| panic!("tensor {name}"));
    tensor_to_f32(t.ty, &t.dims, g.tensor_data(t)).expect("dequantize")
}

/// ‖a − b‖ / ‖b‖.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += f64::from(x - y).powi(2);
        den += f64::from(*y).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn llama_tiny_f2i_against_the_f32_reference() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let model = common::copy_dir(&fx.join("llama-tiny"), tmp.path());
    let mut errs = HashMap::new();
    for ty in ["f2i_w1", "f2i_w2", "f2i_w4"] {
        let out = tmp.path().join(format!("{ty}.gguf"));
        fairy2i(&["convert", "--type", ty, "-o"], &[&out, &model]);
        let r = MappedGguf::open(fx.join("reference/llama-tiny.f32.gguf")).expect("ref");
        let r = r.parse().expect("ref");
        let o = MappedGguf::open(&out).expect("out");
        let o = o.parse().expect("out");

        // KVs: the reference's, with the F2I file type and fairy2i.* after quantization_version.
        let stages = ty
            .trim_start_matches("f2i_w")
            .parse::<u32>()
            .expect("stages");
        let mut want: Vec<(String, Value)> = Vec::new();
        for (k, v) in r.metadata.iter() {
            let v = if k == "general.file_type" {
                Value::U32(63 + stages)
            } else {
                v.clone()
            };
            want.push((k.to_string(), v));
            if k == "general.quantization_version" {
                want.push(("fairy2i.format_version".into(), Value::U32(1)));
                want.push(("fairy2i.stages".into(), Value::U32(stages)));
                want.push(("fairy2i.scale_mode".into(), Value::str("tensor")));
                want.push(("fairy2i.source".into(), Value::str("hf")));
            }
        }
        let got: Vec<(String, Value)> = o
            .metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }

        // Tensors: same names, order and shapes; types by the selection rules.
        assert_eq!(o.tensors.len(), r.tensors.len());
        for (t, rt) in o.tensors.iter().zip(&r.tensors) {
            assert_eq!((&t.name, &t.dims), (&rt.name, &rt.dims));
            let expected_ty = if rt.dims.len() == 1 {
                GgmlType::F32
            } else if t.name.ends_with("ffn_down.weight") {
                // K = 256: the only matrices of llama-tiny F2I can hold.
                GgmlType::from_name(ty).expect("type")
            } else {
                GgmlType::Q8_0 // token_embd (--embd-type) and the K = 32 fallbacks
            };
            assert_eq!(t.ty, expected_ty, "{}", t.name);
            if t.ty == GgmlType::F32 {
                assert_eq!(o.tensor_data(t), r.tensor_data(rt), "{}", t.name);
            } else {
                let e = rel_err(&f32s(&o, &t.name), &f32s(&r, &rt.name));
                if t.ty == GgmlType::Q8_0 {
                    assert!(e < 0.01, "{}: q8_0 relative error {e}", t.name);
                } else {
                    errs.entry(ty).or_insert_with(Vec::new).push(e);
                }
            }
        }
    }
    // F2I: more stages, smaller error; all of them well below the weights' own size.
    eprintln!("F2I relative errors of ffn_down vs the reference f32: {errs:?}");
    let worst = |ty: &str| errs[ty].iter().cloned().fold(0.0, f64::max);
    assert!(worst("f2i_w1") < 0.7, "w1 {:?}", errs["f2i_w1"]);
    assert!(worst("f2i_w2") < worst("f2i_w1"), "{errs:?}");
    assert!(worst("f2i_w4") < worst("f2i_w2"), "{errs:?}");
    assert!(worst("f2i_w4") < 0.25, "w4 {:?}", errs["f2i_w4"]);
}

#[test]
fn permute_then_quantize_equals_quantize_of_the_permuted_gguf() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("synth-llama");
    common::Synth::new("LlamaForCausalLM", 4, 2).write(&model);
    let f32_gguf = tmp.path().join("a.f32.gguf");
    let direct = tmp.path().join("b.f2i.gguf");
    let via_gguf = tmp.path().join("c.f2i.gguf");
    fairy2i(
        &["convert", "--no-tokenizer", "--type", "f32", "-o"],
        &[&f32_gguf, &model],
    );
    fairy2i(
        &["convert", "--no-tokenizer", "--type", "f2i_w2", "-o"],
        &[&direct, &model],
    );
    // --recipe pure: every matrix F2I, token_embd q8_0, as `convert` writes.
    fairy2i(
        &["quantize", "--type", "f2i_w2", "--recipe", "pure"],
        &[&f32_gguf, &via_gguf],
    );
    let b = MappedGguf::open(&direct).expect("b");
    let b = b.parse().expect("b");
    let c = MappedGguf::open(&via_gguf).expect("c");
    let c = c.parse().expect("c");
    assert_eq!(b.tensors.len(), c.tensors.len());
    for (x, y) in b.tensors.iter().zip(&c.tensors) {
        assert_eq!((&x.name, &x.dims, x.ty), (&y.name, &y.dims, y.ty));
        assert_eq!(b.tensor_data(x), c.tensor_data(y), "{}", x.name);
    }
    let q = b.tensor("blk.0.attn_q.weight").expect("attn_q");
    assert_eq!(q.ty, GgmlType::F2I_W2);
    assert_eq!(c.metadata.get_str("fairy2i.source"), Some("gguf:f32"));
    assert_eq!(c.metadata.get_u64("general.file_type"), Some(65));
}

#[test]
fn odd_head_counts_fall_back_and_tied_embeddings_get_an_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    // llama with 1 head (odd): attn_q and attn_k fall back, attn_v does not.
    let model = tmp.path().join("synth-odd");
    common::Synth::new("LlamaForCausalLM", 1, 1).write(&model);
    let out = tmp.path().join("odd.gguf");
    fairy2i(
        &[
            "convert",
            "--no-tokenizer",
            "--type",
            "f2i_w2",
            "--fallback",
            "q4_0",
            "-o",
        ],
        &[&out, &model],
    );
    let g = MappedGguf::open(&out).expect("open");
    let g = g.parse().expect("parse");
    let ty = |n: &str| g.tensor(n).map(|t| t.ty);
    assert_eq!(ty("blk.0.attn_q.weight"), Some(GgmlType::Q4_0));
    assert_eq!(ty("blk.0.attn_k.weight"), Some(GgmlType::Q4_0));
    assert_eq!(ty("blk.0.attn_v.weight"), Some(GgmlType::F2I_W2));

    // qwen2, tied: an explicit output.weight (F2I) right after token_embd.
    let model = tmp.path().join("synth-tied");
    common::Synth::new("Qwen2ForCausalLM", 4, 2)
        .tied()
        .write(&model);
    let out = tmp.path().join("tied.gguf");
    fairy2i(
        &[
            "convert",
            "--no-tokenizer",
            "--type",
            "f2i_w3",
            "--embd-type",
            "f16",
            "-o",
        ],
        &[&out, &model],
    );
    let g = MappedGguf::open(&out).expect("open");
    let g = g.parse().expect("parse");
    let names: Vec<&str> = g.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(&names[..2], ["token_embd.weight", "output.weight"]);
    assert_eq!(g.tensors[0].ty, GgmlType::F16);
    assert_eq!(g.tensors[1].ty, GgmlType::F2I_W3);
    // The F2I output dequantizes close to the embedding it was made from.
    let e = rel_err(&f32s(&g, "output.weight"), &f32s(&g, "token_embd.weight"));
    assert!(e < 0.5, "relative error {e}");
}

/// A legacy llama.cpp `.dat` imatrix (documented layout) with the given entries and ncall 1.
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
fn imatrix_weights_the_named_tensors_and_bad_ones_are_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("synth-llama");
    common::Synth::new("LlamaForCausalLM", 4, 2).write(&model);
    let f32_gguf = tmp.path().join("a.f32.gguf");
    fairy2i(
        &["convert", "--no-tokenizer", "--type", "f32", "-o"],
        &[&f32_gguf, &model],
    );
    let imat = tmp.path().join("imat.dat");
    let skewed: Vec<f32> = (0..256)
        .map(|c| if c % 5 == 0 { 50.0 } else { 1.0 })
        .collect();
    legacy_imatrix(&imat, &[("blk.0.attn_q.weight", skewed)]);
    let run = |args: &[&str], out: &Path| {
        let o = common::bin()
            .arg("quantize")
            .args(args)
            .arg(&f32_gguf)
            .arg(out)
            .output()
            .expect("runs");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let plain = tmp.path().join("plain.gguf");
    let weighted = tmp.path().join("weighted.gguf");
    let imat_s = imat.to_str().expect("utf-8 path");
    let (ok, err) = run(&["--type", "f2i_w2", "--scale-mode", "joint"], &plain);
    assert!(ok, "{err}");
    let (ok, err) = run(
        &[
            "--type",
            "f2i_w2",
            "--scale-mode",
            "joint",
            "--imatrix",
            imat_s,
        ],
        &weighted,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("1 tensors weighted") && err.contains("without an entry"),
        "{err}"
    );
    let p = MappedGguf::open(&plain).expect("plain");
    let p = p.parse().expect("plain");
    let w = MappedGguf::open(&weighted).expect("weighted");
    let w = w.parse().expect("weighted");
    assert_eq!(w.metadata.get_str("fairy2i.imatrix"), Some("imat.dat"));
    assert_eq!(w.metadata.get_str("fairy2i.scale_mode"), Some("joint"));
    assert_eq!(p.metadata.get_str("fairy2i.imatrix"), None);
    for (x, y) in p.tensors.iter().zip(&w.tensors) {
        let same = p.tensor_data(x) == w.tensor_data(y);
        // Only the tensor with an entry changes.
        assert_eq!(same, x.name != "blk.0.attn_q.weight", "{}", x.name);
    }
    // --imatrix with the paper-exact mode, a wrong length, a truncated file: clear errors.
    let out = tmp.path().join("x.gguf");
    let (ok, err) = run(&["--type", "f2i_w2", "--imatrix", imat_s], &out);
    assert!(
        !ok && err.contains("--imatrix needs --scale-mode block or joint"),
        "{err}"
    );
    legacy_imatrix(&imat, &[("blk.0.attn_q.weight", vec![1.0; 100])]);
    let block_args = [
        "--type",
        "f2i_w2",
        "--scale-mode",
        "block",
        "--imatrix",
        imat_s,
    ];
    let (ok, err) = run(&block_args, &out);
    assert!(
        !ok && err.contains("imat.dat")
            && err.contains("has 100 values")
            && err.contains("256 inputs"),
        "{err}"
    );
    let bytes = std::fs::read(&imat).expect("read");
    std::fs::write(&imat, &bytes[..bytes.len() - 10]).expect("write");
    let (ok, err) = run(&block_args, &out);
    assert!(
        !ok && err.contains("imat.dat") && err.contains("truncated"),
        "{err}"
    );
}
