//! `--help` texts and `inspect` output, snapshotted with insta (`tests/snapshots/`).

mod common;

use fairy2i_format::gguf::{GgufWriter, Metadata, TensorSpec, Value, ValueType};
use fairy2i_format::GgmlType;

fn help(args: &[&str]) -> String {
    let o = common::bin().args(args).output().expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 help")
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("help", help(&["--help"]));
    insta::assert_snapshot!("help_convert", help(&["convert", "--help"]));
    insta::assert_snapshot!("help_quantize", help(&["quantize", "--help"]));
    insta::assert_snapshot!("help_inspect", help(&["inspect", "--help"]));
}

#[test]
fn inspect_a_small_file() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("small.gguf");
    let mut md = Metadata::new();
    md.set("general.architecture", Value::str("llama"));
    md.set("general.name", Value::str("Small"));
    md.set("llama.block_count", Value::U32(1));
    md.set("llama.rope.freq_base", Value::F32(10000.0));
    md.set("general.file_type", Value::U32(65));
    md.set(
        "tokenizer.ggml.tokens",
        Value::str_array(["<s>", "</s>", "a", "b", "c", "d"]),
    );
    md.set(
        "tokenizer.ggml.token_type",
        Value::array(ValueType::I32, (0..6).map(Value::I32).collect()),
    );
    let tensors = vec![
        TensorSpec {
            name: "token_embd.weight".into(),
            dims: vec![256, 6],
            ty: GgmlType::Q8_0,
        },
        TensorSpec {
            name: "blk.0.attn_norm.weight".into(),
            dims: vec![256],
            ty: GgmlType::F32,
        },
        TensorSpec {
            name: "blk.0.ffn_down.weight".into(),
            dims: vec![256, 4],
            ty: GgmlType::F2I_W2,
        },
    ];
    let mut w = GgufWriter::create(&path, &md, tensors.clone()).expect("create");
    for t in &tensors {
        let size = t.size().expect("size") as usize;
        w.write_tensor(&vec![0u8; size]).expect("write");
    }
    w.finish().expect("finish");
    let o = common::bin()
        .arg("inspect")
        .arg(&path)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).expect("utf-8");
    assert!(
        !text.contains(tmp.path().to_string_lossy().as_ref()),
        "no paths in the listing"
    );
    insta::assert_snapshot!("inspect_small", text);
}
