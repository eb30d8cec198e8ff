//! Bad input, each case through the real binary: exactly one error line `fairy2i: <file>: <problem>`
//! (compared whole), exit code 2, and nothing (no output, no temp file) left in the output folder.
//!
//! The bad inputs are made from synthetic checkpoints that each test writes to its own temp dir
//! (`common::Synth`), so every case runs on a plain clone, without `../shared`. The expected lines are
//! written from the inputs' construction (which file, which field, which shape), not taken from a run.

mod common;

use std::path::{Path, PathBuf};

use common::{Synth, SYNTH_FF, SYNTH_HIDDEN};

struct Case {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    out_dir: PathBuf,
}

/// `synth` written to a fresh temp dir as `synth/`, and an empty output folder `out/` beside it.
fn case(synth: &Synth) -> Case {
    let tmp = tempfile::tempdir().expect("temp dir");
    let model = tmp.path().join("synth");
    synth.write(&model);
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    Case {
        _tmp: tmp,
        model,
        out_dir,
    }
}

fn llama() -> Synth {
    Synth::new("LlamaForCausalLM", 4, 2)
}

fn qwen2() -> Synth {
    Synth::new("Qwen2ForCausalLM", 4, 2)
}

/// `fairy2i convert <model> -o <out> --type <ty> -q`, with `--no-tokenizer` unless `tokenizer`.
fn convert(model: &Path, out: &Path, ty: &str, tokenizer: bool) -> std::process::Output {
    let mut cmd = common::bin();
    cmd.arg("convert")
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(["--type", ty, "-q"]);
    if !tokenizer {
        cmd.arg("--no-tokenizer");
    }
    cmd.output().expect("the fairy2i binary runs")
}

/// Checks the failure contract of `o`: exit code 2, standard error exactly `want` and a newline,
/// nothing on standard output, and `out_dir` (if it exists) empty.
fn fails(o: &std::process::Output, out_dir: &Path, want: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert_eq!(stderr, format!("{want}\n"), "the one error line");
    assert!(o.stdout.is_empty(), "stdout: {:?}", o.stdout);
    if out_dir.exists() {
        assert_eq!(
            common::entries(out_dir),
            Vec::<String>::new(),
            "left behind"
        );
    }
}

/// Runs `convert` (f16, without a tokenizer) on the case's model and checks the failure contract.
fn convert_fails(c: &Case, want: &str) {
    let o = convert(&c.model, &c.out_dir.join("o.gguf"), "f16", false);
    fails(&o, &c.out_dir, want);
}

/// Rewrites the case's `config.json` through `edit`.
fn edit_config(c: &Case, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = c.model.join("config.json");
    let text = std::fs::read_to_string(&p).expect("read config.json");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("synthetic config.json");
    edit(json.as_object_mut().expect("a JSON object"));
    std::fs::write(&p, json.to_string()).expect("write config.json");
}

/// The control: every unmodified synthetic checkpoint the cases start from converts with the very
/// arguments the cases use, so each failure below comes from its one modification.
#[test]
fn the_unmodified_checkpoints_convert() {
    for (synth, ty) in [
        (qwen2(), "f16"),
        (llama(), "f16"),
        (llama().sharded(3), "f16"),
        (llama(), "f2i_w2"),
    ] {
        let c = case(&synth);
        let out = c.out_dir.join("o.gguf");
        let o = convert(&c.model, &out, ty, false);
        assert!(
            o.status.success(),
            "{} ({} shards) → {ty}: {}",
            synth.arch,
            synth.shards,
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(common::entries(&c.out_dir), ["o.gguf"]);
    }
}

#[test]
fn missing_config_json() {
    let c = case(&qwen2());
    let config = c.model.join("config.json");
    std::fs::remove_file(&config).expect("rm");
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: missing config.json (not a Hugging Face model folder?)",
            config.display()
        ),
    );
}

#[test]
fn invalid_config_json() {
    let c = case(&qwen2());
    let config = c.model.join("config.json");
    let text = "{\"architectures\": [\"Qwen2ForCausalLM\",";
    std::fs::write(&config, text).expect("write");
    // serde_json's message: the text ends after a comma, where a value must follow; the column is
    // the text's length.
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: invalid JSON: EOF while parsing a value at line 1 column {}",
            config.display(),
            text.len()
        ),
    );
}

#[test]
fn config_field_of_wrong_type() {
    let c = case(&qwen2());
    edit_config(&c, |o| {
        o.insert("hidden_size".into(), SYNTH_HIDDEN.to_string().into());
    });
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: field 'hidden_size' must be a non-negative integer",
            c.model.join("config.json").display()
        ),
    );
}

#[test]
fn unsupported_architecture() {
    let c = case(&qwen2());
    edit_config(&c, |o| {
        o.insert(
            "architectures".into(),
            serde_json::json!(["GPT2LMHeadModel"]),
        );
    });
    let o = convert(&c.model, &c.out_dir.join("o.gguf"), "f16", false);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    // The list of supported architectures grows; the README's three must be in it.
    let prefix = format!(
        "fairy2i: {}: unsupported architecture 'GPT2LMHeadModel' (supported: ",
        c.model.join("config.json").display()
    );
    let line = stderr.strip_suffix(")\n").unwrap_or(&stderr);
    let listed = line.strip_prefix(&prefix).unwrap_or_else(|| {
        panic!("expected '{prefix}<list>)', got: {stderr}");
    });
    let listed: Vec<&str> = listed.split(", ").collect();
    for arch in ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"] {
        assert!(listed.contains(&arch), "{arch} not in {listed:?}");
    }
    assert!(!listed.contains(&"GPT2LMHeadModel"), "{listed:?}");
    fails(&o, &c.out_dir, stderr.trim_end());
}

#[test]
fn missing_tokenizer() {
    // The synthetic checkpoint has no tokenizer; the control converts it with --no-tokenizer.
    let c = case(&qwen2());
    let o = convert(&c.model, &c.out_dir.join("o.gguf"), "f16", true);
    fails(
        &o,
        &c.out_dir,
        &format!(
            "fairy2i: {}: no tokenizer (tokenizer.json or tokenizer.model) in the model folder \
             (pass --no-tokenizer to convert without one)",
            c.model.display()
        ),
    );
}

#[test]
fn shard_listed_in_the_index_but_absent() {
    let synth = llama().sharded(3);
    let c = case(&synth);
    assert_eq!(
        synth.shard_names(),
        [
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors"
        ]
    );
    std::fs::remove_file(c.model.join("model-00002-of-00003.safetensors")).expect("rm");
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: shard 'model-00002-of-00003.safetensors' listed in the index is missing",
            c.model.join("model.safetensors.index.json").display()
        ),
    );
}

#[test]
fn tensor_in_the_index_but_in_no_shard() {
    let c = case(&llama().sharded(3));
    let index = c.model.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).expect("read");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("index");
    json["weight_map"]["model.layers.0.mlp.extra.weight"] =
        "model-00001-of-00003.safetensors".into();
    std::fs::write(&index, json.to_string()).expect("write");
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: index and shards disagree: tensor 'model.layers.0.mlp.extra.weight' \
             is in the index but in no shard",
            index.display()
        ),
    );
}

#[test]
fn tensor_shape_disagreeing_with_config() {
    // Shard 3 holds gate_proj, up_proj, down_proj and lm_head; tensors are checked in shard order,
    // sorted by name within a shard: lm_head (unaffected), then down_proj, the first to disagree.
    let synth = llama().sharded(3);
    let c = case(&synth);
    edit_config(&c, |o| {
        o.insert("intermediate_size".into(), (SYNTH_FF / 2).into());
    });
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: tensor 'model.layers.0.mlp.down_proj.weight' has shape [{SYNTH_HIDDEN}, \
             {SYNTH_FF}], config.json implies [{SYNTH_HIDDEN}, {}]",
            c.model.join("model-00003-of-00003.safetensors").display(),
            SYNTH_FF / 2
        ),
    );
}

#[test]
fn truncated_safetensors() {
    let c = case(&qwen2());
    let p = c.model.join("model.safetensors");
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).expect("write");
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: invalid safetensors file: the file size does not match its header \
             (truncated?)",
            p.display()
        ),
    );
}

#[test]
fn output_path_not_writable() {
    let c = case(&llama());
    // The parent of the output is a regular file: no directory to create the temp file in
    // (a permission test would pass as root).
    let blocker = c.out_dir.join("file");
    std::fs::write(&blocker, b"x").expect("write");
    let out = blocker.join("o.gguf");
    let o = convert(&c.model, &out, "f16", false);
    fails(
        &o,
        &c.out_dir.join("nonexistent"),
        &format!(
            "fairy2i: {}: cannot write the output: its folder does not exist",
            out.display()
        ),
    );
    assert_eq!(common::entries(&c.out_dir), ["file"]);
    assert_eq!(std::fs::read(&blocker).expect("read"), b"x");
}

#[test]
fn no_weights() {
    let c = case(&llama());
    std::fs::remove_file(c.model.join("model.safetensors")).expect("rm");
    convert_fails(
        &c,
        &format!(
            "fairy2i: {}: no model*.safetensors files in the model folder",
            c.model.display()
        ),
    );
}

/// A failure in the middle of writing: tensors before `ffn_down` have gone to the temp file when its
/// NaN stops the F2I quantizer. The temp file must go with the error.
#[test]
fn non_finite_weight_leaves_no_partial_output() {
    let c = case(&llama());
    let p = c.model.join("model.safetensors");
    let mut bytes = std::fs::read(&p).expect("read");
    let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let info = meta
        .info("model.layers.0.mlp.down_proj.weight")
        .expect("down_proj");
    assert_eq!(info.shape, [SYNTH_HIDDEN, SYNTH_FF]);
    let (row, col) = (3, 7);
    let at = 8 + header_len + info.data_offsets.0 + 4 * (row * SYNTH_FF + col);
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&p, &bytes).expect("write");
    let o = convert(&c.model, &c.out_dir.join("o.gguf"), "f2i_w2", false);
    fails(
        &o,
        &c.out_dir,
        &format!(
            "fairy2i: {}: tensor 'blk.0.ffn_down.weight': F2I input: the value at row {row}, \
             column {col} is not finite or its widely-linear split overflows f32",
            p.display()
        ),
    );
}

#[test]
fn quantize_of_a_file_that_is_not_gguf() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let input = tmp.path().join("in.gguf");
    std::fs::write(&input, b"not a gguf file at all").expect("write");
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let o = common::run(&[
        "quantize".as_ref(),
        input.as_os_str(),
        out_dir.join("o.gguf").as_os_str(),
        "--type".as_ref(),
        "q8_0".as_ref(),
    ]);
    // The magic is the file's first four bytes, "not ".
    fails(
        &o,
        &out_dir,
        &format!(
            "fairy2i: {}: not a GGUF file (magic [6e, 6f, 74, 20], expected \"GGUF\")",
            input.display()
        ),
    );
}
