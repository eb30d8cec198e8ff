//! Bad input, each case through the real binary: one error line `fairy2i: <file>: <problem>`, exit
//! code 2, and nothing (no output, no temp file) left in the output folder.

mod common;

use std::path::{Path, PathBuf};

struct Case {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    out_dir: PathBuf,
}

/// A copy of fixture `name` in a fresh temp dir, and an empty output folder beside it.
fn case(fx: &Path, name: &str) -> Case {
    let tmp = tempfile::tempdir().expect("temp dir");
    let model = common::copy_dir(&fx.join(name), tmp.path());
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).expect("out dir");
    Case {
        _tmp: tmp,
        model,
        out_dir,
    }
}

/// Runs `convert` and checks the failure contract; returns the error line.
fn convert_fails(model: &Path, out: &Path, out_dir: &Path, expect: &[&str]) -> String {
    let o = common::run(&[
        "convert".as_ref(),
        model.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--type".as_ref(),
        "f16".as_ref(),
        "-q".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("fairy2i: "), "{line}");
    for e in expect {
        assert!(line.contains(e), "'{line}' should contain '{e}'");
    }
    if out_dir.exists() {
        assert!(
            common::entries(out_dir).is_empty(),
            "left behind: {:?}",
            common::entries(out_dir)
        );
    }
    line.to_string()
}

macro_rules! fixture_or_skip {
    () => {
        match common::fixtures() {
            Some(f) => f,
            None => return,
        }
    };
}

#[test]
fn missing_config_json() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "qwen2-tiny");
    std::fs::remove_file(c.model.join("config.json")).expect("rm");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["config.json", "missing"],
    );
}

#[test]
fn invalid_config_json() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "qwen2-tiny");
    std::fs::write(
        c.model.join("config.json"),
        "{\"architectures\": [\"Qwen2ForCausalLM\",",
    )
    .expect("write");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["config.json", "invalid JSON"],
    );
}

#[test]
fn config_field_of_wrong_type() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "qwen2-tiny");
    let p = c.model.join("config.json");
    let text = std::fs::read_to_string(&p)
        .expect("read")
        .replace("\"hidden_size\": 16", "\"hidden_size\": \"16\"");
    std::fs::write(&p, text).expect("write");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["config.json", "hidden_size"],
    );
}

#[test]
fn unsupported_architecture() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "qwen2-tiny");
    let p = c.model.join("config.json");
    let text = std::fs::read_to_string(&p)
        .expect("read")
        .replace("Qwen2ForCausalLM", "GPT2LMHeadModel");
    std::fs::write(&p, text).expect("write");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["config.json", "unsupported architecture 'GPT2LMHeadModel'"],
    );
}

#[test]
fn missing_tokenizer() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "qwen2-tiny");
    std::fs::remove_file(c.model.join("tokenizer.json")).expect("rm");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["qwen2-tiny", "no tokenizer"],
    );
}

#[test]
fn shard_listed_in_the_index_but_absent() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "llama-tiny");
    std::fs::remove_file(c.model.join("model-00002-of-00003.safetensors")).expect("rm");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &[
            "model.safetensors.index.json",
            "'model-00002-of-00003.safetensors'",
            "missing",
        ],
    );
}

#[test]
fn tensor_shape_disagreeing_with_config() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "llama-tiny");
    let p = c.model.join("config.json");
    let text = std::fs::read_to_string(&p)
        .expect("read")
        .replace("\"intermediate_size\": 256", "\"intermediate_size\": 128");
    std::fs::write(&p, text).expect("write");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &[
            "model-00003-of-00003.safetensors",
            "model.layers.0.mlp.down_proj.weight",
            "[32, 256]",
            "[32, 128]",
        ],
    );
}

#[test]
fn truncated_safetensors() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "qwen2-tiny");
    let p = c.model.join("model.safetensors");
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).expect("write");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["model.safetensors", "invalid safetensors"],
    );
}

#[test]
fn output_path_not_writable() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "llama-spm-tiny");
    // The parent of the output is a regular file: no directory to create the temp file in
    // (a permission test would pass as root).
    let blocker = c.out_dir.join("file");
    std::fs::write(&blocker, b"x").expect("write");
    let out = blocker.join("o.gguf");
    let line = convert_fails(
        &c.model,
        &out,
        &c.out_dir.join("nonexistent"),
        &["o.gguf", "cannot write the output", "folder does not exist"],
    );
    assert_eq!(common::entries(&c.out_dir), ["file"], "{line}");
}

#[test]
fn no_weights() {
    let fx = fixture_or_skip!();
    let c = case(&fx, "llama-spm-tiny");
    std::fs::remove_file(c.model.join("model.safetensors")).expect("rm");
    convert_fails(
        &c.model,
        &c.out_dir.join("o.gguf"),
        &c.out_dir,
        &["llama-spm-tiny", "no model*.safetensors"],
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
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("fairy2i: ")
            && stderr.contains("in.gguf")
            && stderr.contains("not a GGUF file"),
        "{stderr}"
    );
    assert!(common::entries(&out_dir).is_empty());
}
