//! `fairy2i convert` against the GGUF files llama.cpp b11434's own `convert_hf_to_gguf.py` wrote for
//! the shared fixtures (`shared/fixtures/README.md`). The fixture folder is copied under its own
//! name, so even the folder-dependent naming keys match and the files must be byte-identical.
//! Where they are not, the first difference is reported field by field.

mod common;

use std::path::Path;

use fairy2i_format::gguf::MappedGguf;

/// Keys that depend on the input folder's name (`compare_gguf.py --ignore-naming`).
const NAMING_KEYS: &[&str] = &[
    "general.name",
    "general.basename",
    "general.finetune",
    "general.version",
    "general.size_label",
    "general.organization",
];

/// Every reference file: (fixture folder, outtype).
const REFERENCES: &[(&str, &str)] = &[
    ("llama-tiny", "f16"),
    ("llama-tiny", "bf16"),
    ("llama-tiny", "f32"),
    ("qwen2-tiny", "f16"),
    ("qwen2-tiny", "bf16"),
    ("llama-spm-tiny", "f16"),
    ("llama-spm-tiny", "bf16"),
];

/// Describes how two GGUF files differ (KVs in order with types and values, tensor infos, data),
/// ignoring `ignore` keys; empty when they agree on everything compared.
fn differences(reference: &Path, ours: &Path, ignore: &[&str]) -> Vec<String> {
    let a = MappedGguf::open(reference).expect("reference parses");
    let b = MappedGguf::open(ours).expect("output parses");
    let (a, b) = (
        a.parse().expect("reference parses"),
        b.parse().expect("output parses"),
    );
    let mut d = Vec::new();
    let ka: Vec<_> = a
        .metadata
        .iter()
        .filter(|(k, _)| !ignore.contains(k))
        .collect();
    let kb: Vec<_> = b
        .metadata
        .iter()
        .filter(|(k, _)| !ignore.contains(k))
        .collect();
    let names_a: Vec<&str> = ka.iter().map(|(k, _)| *k).collect();
    let names_b: Vec<&str> = kb.iter().map(|(k, _)| *k).collect();
    if names_a != names_b {
        d.push(format!(
            "key order/set differs:\n  reference {names_a:?}\n  ours      {names_b:?}"
        ));
    }
    for (k, v) in &ka {
        match b.metadata.get(k) {
            Some(w) if w == *v => {}
            Some(w) => d.push(format!(
                "key {k}: reference {} ours {}",
                v.summary(6),
                w.summary(6)
            )),
            None => {}
        }
    }
    if a.tensors.len() != b.tensors.len() {
        d.push(format!(
            "{} tensors vs {}",
            a.tensors.len(),
            b.tensors.len()
        ));
    }
    for (ta, tb) in a.tensors.iter().zip(&b.tensors) {
        if (&ta.name, &ta.dims, ta.ty) != (&tb.name, &tb.dims, tb.ty) {
            d.push(format!(
                "tensor {} {:?} {} vs {} {:?} {}",
                ta.name, ta.dims, ta.ty, tb.name, tb.dims, tb.ty
            ));
        } else if a.tensor_data(ta) != b.tensor_data(tb) {
            let (x, y) = (a.tensor_data(ta), b.tensor_data(tb));
            let first = x.iter().zip(y).position(|(p, q)| p != q);
            d.push(format!(
                "tensor {} data differs (first differing byte {first:?})",
                ta.name
            ));
        }
    }
    d
}

fn convert(model: &Path, out: &Path, ty: &str) {
    let o = common::run(&[
        "convert".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--type".as_ref(),
        ty.as_ref(),
        "-q".as_ref(),
    ]);
    assert!(
        o.status.success(),
        "convert {} --type {ty} failed: {}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn convert_reproduces_every_reference_byte_for_byte() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for (model, ty) in REFERENCES {
        let reference = fx.join("reference").join(format!("{model}.{ty}.gguf"));
        let input = tmp.path().join(model);
        if !input.exists() {
            common::copy_dir(&fx.join(model), tmp.path());
        }
        let out = tmp.path().join(format!("{model}.{ty}.gguf"));
        convert(&input, &out, ty);
        let want = std::fs::read(&reference).expect("reference readable");
        let got = std::fs::read(&out).expect("output readable");
        if want != got {
            let diffs = differences(&reference, &out, &[]);
            failures.push(format!(
                "{model}.{ty}: {} bytes vs {}\n  {}",
                want.len(),
                got.len(),
                diffs.join("\n  ")
            ));
        } else {
            eprintln!("{model}.{ty}: byte-identical ({} bytes)", got.len());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn another_folder_name_changes_only_the_naming_keys() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let renamed = tmp.path().join("SmolLM2-135M-Instruct");
    std::fs::create_dir(&renamed).expect("mkdir");
    for e in std::fs::read_dir(fx.join("qwen2-tiny")).expect("fixture") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), renamed.join(e.file_name())).expect("copy");
    }
    let out = tmp.path().join("out.gguf");
    convert(&renamed, &out, "bf16");
    let reference = fx.join("reference/qwen2-tiny.bf16.gguf");
    let diffs = differences(&reference, &out, NAMING_KEYS);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let g = MappedGguf::open(&out).expect("open");
    let g = g.parse().expect("parse");
    assert_eq!(
        g.metadata.get_str("general.name"),
        Some("SmolLM2 135M Instruct")
    );
    assert_eq!(g.metadata.get_str("general.basename"), Some("SmolLM2"));
    // "135M" is far from the 2.5M parameters, so gguf-py reads it as a finetune tag, not a size.
    assert_eq!(
        g.metadata.get_str("general.finetune"),
        Some("135m-Instruct")
    );
    assert_eq!(g.metadata.get_str("general.size_label"), Some("2.5M"));
}

#[test]
fn quantize_of_the_f32_reference_reproduces_the_f16_and_bf16_references() {
    let Some(fx) = common::fixtures() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let f32_ref = fx.join("reference/llama-tiny.f32.gguf");
    for ty in ["f16", "bf16"] {
        let out = tmp.path().join(format!("{ty}.gguf"));
        let o = common::run(&[
            "quantize".as_ref(),
            f32_ref.as_os_str(),
            out.as_os_str(),
            "--type".as_ref(),
            ty.as_ref(),
            "-q".as_ref(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let reference = fx.join(format!("reference/llama-tiny.{ty}.gguf"));
        let diffs = differences(&reference, &out, &[]);
        assert!(diffs.is_empty(), "{ty}: {}", diffs.join("\n"));
        assert_eq!(
            std::fs::read(&reference).expect("ref"),
            std::fs::read(&out).expect("out"),
            "{ty}: bytes"
        );
    }
}
